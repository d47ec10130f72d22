//! Who a campaign reaches: per variant, how many contacts get it, how many of them are held
//! out, and how many of the rest are reachable on each channel.
//!
//! The database decides group membership and reachability: for each target, one query reads
//! the current members of its segment who are in no earlier target's segment, with two flags
//! (email: an address and `email_status = 'subscribed'`; webhook: `webhook_status =
//! 'subscribed'`). When a group needs no split (one variant, no holdout) the query sums the
//! flags itself; otherwise it is read a page of contact ids at a time and each contact is
//! assigned with the same hash as at launch, so memory stays flat however large the segment.

use std::collections::BTreeMap;

use clarion_model::{Channel, ContactId, WorkspaceId};
use clarion_template::Tracker;
use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{Expr, ExprTrait, JoinType, Order, Query, SelectStatement},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    CampaignError,
    assign::{Group, assign_in_group, segment_ids},
    campaign::{Campaign, SegmentRef, Slot, VariantId},
    contacts,
    preview::{Renderer, Warning, WarningKind, empty_segment, sample_members},
};

/// Contact ids read per query when a group is split in Rust.
const PAGE: u64 = 5_000;
/// Members taken from each segment to look for identical variants.
const SAMPLE_PER_SEGMENT: u64 = 2;
/// Most contacts rendered for the identical-variants check.
const MAX_SAMPLE: usize = 10;

/// Counts for one variant (or for the whole campaign).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Counts {
    /// Contacts who get this variant, held-out ones included.
    pub contacts: u64,
    /// Of those, held out as control.
    pub holdout: u64,
    /// Contacts who would be sent the variant (`contacts - holdout`).
    pub recipients: u64,
    /// Of the recipients, how many each channel of the campaign reaches.
    pub reachable: BTreeMap<String, u64>,
}

/// The audience of one variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct VariantAudience {
    pub variant_id: VariantId,
    pub variant: String,
    /// The segment the variant is for, by slug.
    pub segment: String,
    /// Whether this is the fallback variant.
    pub fallback: bool,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Current size of a segment the campaign uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SegmentSize {
    pub segment: String,
    pub members: u64,
}

/// The answer to an audience request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AudienceReport {
    /// Targets' variants in priority order, then the fallback.
    pub variants: Vec<VariantAudience>,
    pub total: Counts,
    pub segments: Vec<SegmentSize>,
    pub warnings: Vec<Warning>,
}

/// Counts the campaign's audience and looks for empty segments and identical variants.
///
/// # Errors
/// Database failures.
pub async fn audience(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    campaign: &Campaign,
    tracker: &Tracker,
) -> Result<AudienceReport, CampaignError> {
    let channels: Vec<Channel> = campaign.channels.clone();
    let empty_counts = || Counts {
        reachable: channels
            .iter()
            .map(|c| (c.as_str().to_owned(), 0))
            .collect(),
        ..Counts::default()
    };
    let mut variants: Vec<VariantAudience> = campaign
        .variants()
        .map(|(slot, v)| VariantAudience {
            variant_id: v.id,
            variant: v.name.clone(),
            segment: slot.segment().slug.clone(),
            fallback: campaign.fallback.as_ref().is_some_and(|f| f.id == v.id),
            counts: empty_counts(),
        })
        .collect();

    let mut groups: Vec<(Group, &SegmentRef)> = campaign
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| (Group::Target(i), &t.segment))
        .collect();
    if campaign.fallback.is_some()
        && let Some(audience) = &campaign.audience_segment
    {
        groups.push((Group::Fallback, audience));
    }
    let all_targets: Vec<i64> = campaign.targets.iter().map(|t| t.segment.id).collect();
    for (group, segment) in groups {
        let earlier: &[i64] = match group {
            Group::Target(i) => &all_targets[..i],
            Group::Fallback => &all_targets,
        };
        let query = group_query(workspace, segment.id, earlier);
        let variant_count = match group {
            Group::Target(i) => campaign.targets[i].variants.len(),
            Group::Fallback => 1,
        };
        if variant_count == 1 && campaign.holdout_percent <= 0.0 {
            let (contacts, email, webhook) = sum_group(db, query).await?;
            if let Some(first) = campaign
                .variants()
                .position(|(slot, _)| same_group(campaign, slot, group))
            {
                add(&mut variants[first].counts, contacts, false, email, webhook);
            }
            continue;
        }
        let mut after = 0_i64;
        loop {
            let mut page = query.clone();
            page.and_where(Expr::col(("m", "contact_id")).gt(after))
                .order_by(("m", "contact_id"), Order::Asc)
                .limit(PAGE);
            let rows = db.query_all(&page).await?;
            for row in &rows {
                let id: i64 = row.try_get("", "contact_id")?;
                let email: i64 = row.try_get("", "email_ok")?;
                let webhook: i64 = row.try_get("", "webhook_ok")?;
                after = id;
                let Some(assignment) = assign_in_group(campaign, group, ContactId(id)) else {
                    continue;
                };
                if let Some(counts) = variants
                    .iter_mut()
                    .find(|v| v.variant_id == assignment.variant_id)
                    .map(|v| &mut v.counts)
                {
                    add(
                        counts,
                        1,
                        assignment.holdout,
                        u64::from(email > 0),
                        u64::from(webhook > 0),
                    );
                }
            }
            if (rows.len() as u64) < PAGE {
                break;
            }
        }
    }
    let mut total = empty_counts();
    for v in &variants {
        total.contacts += v.counts.contacts;
        total.holdout += v.counts.holdout;
        total.recipients += v.counts.recipients;
        for (channel, n) in &v.counts.reachable {
            *total.reachable.entry(channel.clone()).or_default() += n;
        }
    }

    let sizes = segment_sizes(db, campaign).await?;
    let mut warnings = Vec::new();
    for (slot_segment, ids) in segments_with_variants(campaign) {
        let members = sizes.get(&slot_segment.id).copied().unwrap_or(0);
        if members == 0 {
            warnings.push(empty_segment(slot_segment, ids));
        } else {
            let silent: Vec<VariantId> = variants
                .iter()
                .filter(|v| ids.contains(&v.variant_id) && v.counts.contacts == 0)
                .map(|v| v.variant_id)
                .collect();
            if !silent.is_empty() {
                warnings.push(Warning {
                    kind: WarningKind::NoRecipients,
                    message: format!(
                        "all {members} member(s) of segment {:?} are in an earlier target's segment, so its variant(s) reach no one",
                        slot_segment.slug
                    ),
                    variants: silent,
                    segment: Some(slot_segment.slug.clone()),
                    contact: None,
                });
            }
        }
    }

    let mut sample = Vec::new();
    for segment in segment_ids(campaign) {
        for id in sample_members(db, segment, SAMPLE_PER_SEGMENT).await? {
            if !sample.contains(&id) && sample.len() < MAX_SAMPLE {
                sample.push(id);
            }
        }
    }
    let people = contacts::by_ids(db, workspace, &sample).await?;
    warnings.extend(Renderer::new(campaign, tracker).identical_variants(&people));

    let segments = campaign
        .targets
        .iter()
        .map(|t| &t.segment)
        .chain(campaign.audience_segment.as_ref())
        .map(|s| SegmentSize {
            segment: s.slug.clone(),
            members: sizes.get(&s.id).copied().unwrap_or(0),
        })
        .collect();
    Ok(AudienceReport {
        variants,
        total,
        segments,
        warnings,
    })
}

fn same_group(campaign: &Campaign, slot: Slot<'_>, group: Group) -> bool {
    match (slot, group) {
        (Slot::Target { position, .. }, Group::Target(i)) => position == i,
        (Slot::Fallback { .. }, Group::Fallback) => campaign.fallback.is_some(),
        _ => false,
    }
}

fn add(counts: &mut Counts, contacts: u64, holdout: bool, email: u64, webhook: u64) {
    counts.contacts += contacts;
    if holdout {
        counts.holdout += contacts;
        return;
    }
    counts.recipients += contacts;
    if let Some(n) = counts.reachable.get_mut(Channel::Email.as_str()) {
        *n += email;
    }
    if let Some(n) = counts.reachable.get_mut(Channel::Webhook.as_str()) {
        *n += webhook;
    }
}

/// Each segment of the campaign with the variants that depend on it.
fn segments_with_variants(campaign: &Campaign) -> Vec<(&SegmentRef, Vec<VariantId>)> {
    let mut out: Vec<(&SegmentRef, Vec<VariantId>)> = campaign
        .targets
        .iter()
        .map(|t| (&t.segment, t.variants.iter().map(|v| v.id).collect()))
        .collect();
    if let (Some(fallback), Some(audience)) = (&campaign.fallback, &campaign.audience_segment) {
        out.push((audience, vec![fallback.id]));
    }
    out
}

/// The members of `segment` in none of `earlier`, with their reachability flags.
fn group_query(workspace: WorkspaceId, segment: i64, earlier: &[i64]) -> SelectStatement {
    let mut select = Query::select();
    select
        .column(("m", "contact_id"))
        .expr_as(
            Expr::cust(
                "CAST(CASE WHEN c.email IS NOT NULL AND c.email_status = 'subscribed' THEN 1 ELSE 0 END AS BIGINT)",
            ),
            "email_ok",
        )
        .expr_as(
            Expr::cust(
                "CAST(CASE WHEN c.webhook_status = 'subscribed' THEN 1 ELSE 0 END AS BIGINT)",
            ),
            "webhook_ok",
        )
        .from_as("segment_memberships", "m")
        .join_as(
            JoinType::InnerJoin,
            "contacts",
            "c",
            Expr::col(("c", "id")).equals(("m", "contact_id")),
        )
        .and_where(Expr::col(("m", "segment_id")).eq(segment))
        .and_where(Expr::col(("m", "exited_at")).is_null())
        .and_where(Expr::col(("c", "workspace_id")).eq(workspace.0));
    if !earlier.is_empty() {
        let prior = Query::select()
            .expr(Expr::val(1))
            .from_as("segment_memberships", "p")
            .and_where(Expr::col(("p", "contact_id")).equals(("m", "contact_id")))
            .and_where(Expr::col(("p", "exited_at")).is_null())
            .and_where(Expr::col(("p", "segment_id")).is_in(earlier.iter().copied()))
            .to_owned();
        select.and_where(Expr::not_exists(prior));
    }
    select
}

/// Contacts, email-reachable and webhook-reachable counts of a group, summed in SQL.
async fn sum_group(
    db: &impl ConnectionTrait,
    group: SelectStatement,
) -> Result<(u64, u64, u64), DbErr> {
    // SUM of a BIGINT is NUMERIC on PostgreSQL; cast back so both databases give an i64.
    let select = Query::select()
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .expr_as(
            Expr::cust("CAST(COALESCE(SUM(g.email_ok), 0) AS BIGINT)"),
            "email",
        )
        .expr_as(
            Expr::cust("CAST(COALESCE(SUM(g.webhook_ok), 0) AS BIGINT)"),
            "webhook",
        )
        .from_subquery(group, "g")
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok((0, 0, 0));
    };
    let count = |column: &str| -> Result<u64, DbErr> {
        let n: i64 = row.try_get("", column)?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok((count("n")?, count("email")?, count("webhook")?))
}

/// Current members of each segment the campaign uses, by segment id.
async fn segment_sizes(
    db: &impl ConnectionTrait,
    campaign: &Campaign,
) -> Result<BTreeMap<i64, u64>, DbErr> {
    let ids = segment_ids(campaign);
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let select = Query::select()
        .column("segment_id")
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .from("segment_memberships")
        .and_where(Expr::col("exited_at").is_null())
        .and_where(Expr::col("segment_id").is_in(ids))
        .group_by_col("segment_id")
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| {
            let n: i64 = row.try_get("", "n")?;
            Ok((
                row.try_get("", "segment_id")?,
                u64::try_from(n).unwrap_or(0),
            ))
        })
        .collect()
}
