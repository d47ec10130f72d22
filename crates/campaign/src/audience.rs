//! Who a campaign reaches: per variant, how many contacts get it, how many of them are held
//! out, and how many of the rest are reachable on each channel.
//!
//! The database answers membership and reachability: each target's segment is read a page of
//! current members at a time (with two flags: email means an address and `email_status =
//! 'subscribed'`, webhook means `webhook_status = 'subscribed'`), together with which of
//! those contacts are in an earlier target's segment (they get that target's message). Each
//! remaining contact is assigned with the same hash as at launch, so memory stays flat however
//! large the segment, and the counts agree with what launch will do.

use std::collections::{BTreeMap, HashSet};

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
    assign::{GroupPlan, assign_in_group, groups, segment_ids},
    campaign::{Campaign, SegmentRef, VariantId},
    contacts,
    preview::{Renderer, Warning, WarningKind, empty_segment, sample_members},
};

/// Segment members read per query.
pub(crate) const PAGE: u64 = 5_000;
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

    for GroupPlan {
        group,
        segment,
        earlier,
    } in groups(campaign)
    {
        let mut after = i64::MIN;
        loop {
            let rows = db
                .query_all(&members_page(workspace, segment.id, after, PAGE))
                .await?;
            let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
                break;
            };
            let (low, high): (i64, i64) = (
                first.try_get("", "contact_id")?,
                last.try_get("", "contact_id")?,
            );
            let taken = taken_earlier(db, &earlier, low, high).await?;
            for row in &rows {
                let id: i64 = row.try_get("", "contact_id")?;
                if taken.contains(&id) {
                    continue;
                }
                let email: i64 = row.try_get("", "email_ok")?;
                let webhook: i64 = row.try_get("", "webhook_ok")?;
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
                        assignment.holdout,
                        u64::from(email > 0),
                        u64::from(webhook > 0),
                    );
                }
            }
            if (rows.len() as u64) < PAGE {
                break;
            }
            after = high;
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

fn add(counts: &mut Counts, holdout: bool, email: u64, webhook: u64) {
    counts.contacts += 1;
    if holdout {
        counts.holdout += 1;
        return;
    }
    counts.recipients += 1;
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

/// A page of up to `limit` current members of `segment` after the contact `after`, in contact
/// id order, with their reachability flags (`email_ok`, `webhook_ok`) and what they are made
/// of (`has_email`, `email_status`, `webhook_status`). The `(segment_id, contact_id)` index
/// answers it.
pub(crate) fn members_page(
    workspace: WorkspaceId,
    segment: i64,
    after: i64,
    limit: u64,
) -> SelectStatement {
    Query::select()
        .column(("m", "contact_id"))
        .columns([("c", "email_status"), ("c", "webhook_status")])
        .expr_as(
            Expr::cust("CAST(CASE WHEN c.email IS NOT NULL THEN 1 ELSE 0 END AS BIGINT)"),
            "has_email",
        )
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
        .and_where(Expr::col(("m", "contact_id")).gt(after))
        // Said again of the contacts, so that a merge join starts the contacts' index there
        // too instead of scanning it from the beginning at every page.
        .and_where(Expr::col(("c", "id")).gt(after))
        .and_where(Expr::col(("c", "workspace_id")).eq(workspace.0))
        .order_by(("m", "contact_id"), Order::Asc)
        .limit(limit)
        .to_owned()
}

/// The contacts between `low` and `high` (inclusive) who are current members of one of the
/// `earlier` segments, and so get an earlier target's message.
///
/// A range read per page rather than a `NOT EXISTS` in the page query: with statistics that
/// lag behind a fresh materialization, PostgreSQL planned that anti-join as a scan of the
/// earlier segment per member (42 s for 10,000 members); the range read uses the
/// `(segment_id, contact_id)` index whatever the statistics say.
pub(crate) async fn taken_earlier(
    db: &impl ConnectionTrait,
    earlier: &[i64],
    low: i64,
    high: i64,
) -> Result<HashSet<i64>, DbErr> {
    if earlier.is_empty() {
        return Ok(HashSet::new());
    }
    let select = Query::select()
        .column("contact_id")
        .from("segment_memberships")
        .and_where(Expr::col("segment_id").is_in(earlier.iter().copied()))
        .and_where(Expr::col("exited_at").is_null())
        .and_where(Expr::col("contact_id").gte(low))
        .and_where(Expr::col("contact_id").lte(high))
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| row.try_get("", "contact_id"))
        .collect()
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
