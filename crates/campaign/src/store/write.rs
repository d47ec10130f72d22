//! Writing campaigns: every change in one transaction, checked first, each changed variant
//! recorded as a revision.

use std::collections::{HashMap, HashSet};

use clarion_contacts::begin_write;
use clarion_model::{CampaignId, Timestamp, VariantId, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, QueryResult,
    sea_query::{Expr, ExprTrait, Query},
};

use super::load::{json_column, load, segments_by_slug};
use crate::{
    CampaignError,
    campaign::{
        Campaign, CampaignInput, EmailVariant, SegmentRef, Status, TargetInput, Variant,
        VariantInput, WebhookVariant,
    },
    senders,
    validate::{Issue, MAX_NAME_CHARS, check_campaign, check_variant, variants_with_paths},
};

/// Creates a campaign with its variants; each variant gets its first revision.
///
/// # Errors
/// [`CampaignError::Invalid`] with every problem found (nothing is stored then).
pub async fn create(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    input: &CampaignInput,
    saved_by: Option<i64>,
) -> Result<Campaign, CampaignError> {
    let mut issues = check_campaign(input);
    for (path, variant) in variants_with_paths(input) {
        if let Some(id) = variant.id {
            issues.push(Issue::in_variant(
                &path,
                &variant.name,
                "id",
                format!("a new campaign has no variants yet, so variant id {id} cannot be kept; leave id out"),
            ));
        }
    }
    let txn = begin_write(db).await?;
    let campaign = insert(&txn, workspace, input, issues, None, saved_by).await?;
    txn.commit().await?;
    Ok(campaign)
}

/// Replaces a campaign's settings, targets and variants. A variant that carries the `id` of
/// one of the campaign's variants keeps that id, and gets a new revision when it changed;
/// variants left out are deleted with their history.
///
/// # Errors
/// [`CampaignError::NotFound`], or [`CampaignError::Invalid`] with every problem found.
pub async fn update(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: CampaignId,
    input: &CampaignInput,
    saved_by: Option<i64>,
) -> Result<Campaign, CampaignError> {
    let mut issues = check_campaign(input);
    let txn = begin_write(db).await?;
    match load(&txn, workspace, id).await? {
        None => return Err(CampaignError::NotFound(format!("campaign {id}"))),
        Some(campaign) => editable(&campaign)?,
    }
    let existing = variant_rows(&txn, id).await?;
    for (path, variant) in variants_with_paths(input) {
        if let Some(variant_id) = variant.id
            && !existing.contains_key(&variant_id)
        {
            issues.push(Issue::in_variant(
                &path,
                &variant.name,
                "id",
                format!("variant {variant_id} is not a variant of campaign {id}; leave id out for a new variant"),
            ));
        }
    }
    let segments = resolve_segments(&txn, workspace, input, &mut issues).await?;
    resolve_endpoints(&txn, workspace, variants_with_paths(input), &mut issues).await?;
    check_senders(&txn, workspace, input, &mut issues).await?;
    if !issues.is_empty() {
        return Err(CampaignError::Invalid(issues));
    }
    let now = Timestamp::now().millis();
    let update = Query::update()
        .table("campaigns")
        .values(
            settings_values(input, &segments, now)
                .into_iter()
                .map(|(column, value)| (column, Expr::from(value))),
        )
        .and_where(Expr::col("id").eq(id.0))
        .to_owned();
    txn.execute(&update).await?;
    write_structure(&txn, id, input, &segments, &existing, saved_by, now).await?;
    let campaign = load(&txn, workspace, id)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {id}")))?;
    txn.commit().await?;
    Ok(campaign)
}

/// Saves one variant of a campaign (its name, weight and content); a change records a new
/// revision. Returns the whole campaign.
///
/// # Errors
/// [`CampaignError::NotFound`] when the campaign or the variant does not exist,
/// [`CampaignError::Invalid`] with every problem found.
pub async fn save_variant(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: CampaignId,
    variant_id: VariantId,
    input: &VariantInput,
    saved_by: Option<i64>,
) -> Result<Campaign, CampaignError> {
    let txn = begin_write(db).await?;
    let campaign = load(&txn, workspace, id)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {id}")))?;
    if campaign.variant(variant_id).is_none() {
        return Err(CampaignError::NotFound(format!(
            "variant {variant_id} of campaign {id}"
        )));
    }
    editable(&campaign)?;
    let mut issues = check_variant("", input, &campaign.channels);
    if let Some(given) = input.id
        && given != variant_id
    {
        issues.push(Issue::in_variant(
            "",
            &input.name,
            "id",
            format!("the body is for variant {given}, the path for variant {variant_id}"),
        ));
    }
    if let Some((_, other)) = campaign
        .variants()
        .find(|(_, v)| v.id != variant_id && v.name == input.name.trim())
    {
        issues.push(Issue::in_variant(
            "",
            &input.name,
            "name",
            format!(
                "the name {:?} is already used by variant {}; variant names are unique in a campaign",
                input.name, other.id
            ),
        ));
    }
    resolve_endpoints(
        &txn,
        workspace,
        std::iter::once((String::new(), input)),
        &mut issues,
    )
    .await?;
    if let Some(email) = &input.email {
        let froms = [(String::new(), input.name.as_str(), email.from.as_str())];
        senders::check_froms(&txn, workspace, froms, &mut issues).await?;
    }
    if !issues.is_empty() {
        return Err(CampaignError::Invalid(issues));
    }
    let existing = variant_rows(&txn, id).await?;
    let now = Timestamp::now().millis();
    if let Some(row) = existing.get(&variant_id)
        && row.differs(input)
    {
        update_variant_content(&txn, variant_id, row.version + 1, input, saved_by, now).await?;
        touch(&txn, id, now).await?;
    }
    let campaign = load(&txn, workspace, id)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {id}")))?;
    txn.commit().await?;
    Ok(campaign)
}

/// Copies a campaign under a new name (by default the old one with ` (copy)`); the copy is a
/// draft with variants of its own whose history starts anew.
///
/// # Errors
/// [`CampaignError::NotFound`], or [`CampaignError::Invalid`] when the new name is unusable or
/// a segment of the original no longer exists.
pub async fn duplicate(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: CampaignId,
    name: Option<&str>,
    saved_by: Option<i64>,
) -> Result<Campaign, CampaignError> {
    let txn = begin_write(db).await?;
    let original = load(&txn, workspace, id)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {id}")))?;
    let name = match name {
        Some(name) => name.trim().to_owned(),
        None => {
            let base: String = original
                .name
                .chars()
                .take(MAX_NAME_CHARS - " (copy)".len())
                .collect();
            format!("{base} (copy)")
        }
    };
    let input = CampaignInput {
        name,
        ..input_of(&original)
    };
    let issues = check_campaign(&input);
    let campaign = insert(&txn, workspace, &input, issues, Some(id), saved_by).await?;
    txn.commit().await?;
    Ok(campaign)
}

/// Only drafts change: what was sent must stay what the deliveries say was sent.
fn editable(campaign: &Campaign) -> Result<(), CampaignError> {
    if campaign.status == Status::Draft {
        Ok(())
    } else {
        Err(CampaignError::Conflict(format!(
            "campaign {} is {} and can no longer be edited; duplicate it to make a changed copy",
            campaign.id,
            campaign.status.as_str()
        )))
    }
}

/// Deletes a campaign with its variants, their history, its runs and deliveries. Returns
/// whether there was one. A campaign that is sending or paused must be cancelled first.
///
/// # Errors
/// [`CampaignError::Conflict`] for a campaign still sending or paused; database failures.
pub async fn delete(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: CampaignId,
) -> Result<bool, CampaignError> {
    if let Some(campaign) = load(db, workspace, id).await?
        && matches!(campaign.status, Status::Sending | Status::Paused)
    {
        return Err(CampaignError::Conflict(format!(
            "campaign {id} is {}; cancel it before deleting it",
            campaign.status.as_str()
        )));
    }
    let delete = Query::delete()
        .from_table("campaigns")
        .and_where(Expr::col("id").eq(id.0))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected() > 0)
}

/// The input that would recreate `campaign` as a new one (without variant ids).
#[must_use]
pub fn input_of(campaign: &Campaign) -> CampaignInput {
    let variant = |v: &Variant| VariantInput {
        id: None,
        name: v.name.clone(),
        weight: i64::from(v.weight),
        email: v.email.clone(),
        webhook: v.webhook.clone(),
    };
    CampaignInput {
        name: campaign.name.clone(),
        goal: campaign.goal.clone(),
        holdout_percent: campaign.holdout_percent,
        channels: campaign.channels.clone(),
        targets: campaign
            .targets
            .iter()
            .map(|t| TargetInput {
                segment: t.segment.slug.clone(),
                variants: t.variants.iter().map(variant).collect(),
            })
            .collect(),
        audience_segment: campaign.audience_segment.as_ref().map(|s| s.slug.clone()),
        fallback: campaign.fallback.as_ref().map(variant),
        transactional: campaign.transactional,
    }
}

/// Checks the segments, then stores a new campaign and its variants.
async fn insert(
    txn: &DatabaseTransaction,
    workspace: WorkspaceId,
    input: &CampaignInput,
    mut issues: Vec<Issue>,
    duplicated_from: Option<CampaignId>,
    saved_by: Option<i64>,
) -> Result<Campaign, CampaignError> {
    let segments = resolve_segments(txn, workspace, input, &mut issues).await?;
    resolve_endpoints(txn, workspace, variants_with_paths(input), &mut issues).await?;
    check_senders(txn, workspace, input, &mut issues).await?;
    if !issues.is_empty() {
        return Err(CampaignError::Invalid(issues));
    }
    let now = Timestamp::now().millis();
    let mut values: Vec<(&'static str, sea_orm::Value)> = vec![
        ("workspace_id", workspace.0.into()),
        ("status", Status::Draft.as_str().into()),
        ("created_at", now.into()),
        ("duplicated_from", duplicated_from.map(|c| c.0).into()),
    ];
    values.extend(settings_values(input, &segments, now));
    let (columns, values): (Vec<_>, Vec<sea_orm::Value>) = values.into_iter().unzip();
    let insert = Query::insert()
        .into_table("campaigns")
        .columns(columns)
        .values(values.into_iter().map(Expr::from))
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .returning_col("id")
        .to_owned();
    let id = CampaignId(returned_id(txn.query_one(&insert).await?)?);
    write_structure(txn, id, input, &segments, &HashMap::new(), saved_by, now).await?;
    load(txn, workspace, id)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {id}")))
}

/// When the workspace has sender identities, every email variant must send from one of them.
async fn check_senders(
    txn: &DatabaseTransaction,
    workspace: WorkspaceId,
    input: &CampaignInput,
    issues: &mut Vec<Issue>,
) -> Result<(), CampaignError> {
    let froms = variants_with_paths(input).filter_map(|(path, variant)| {
        variant
            .email
            .as_ref()
            .map(|email| (path, variant.name.as_str(), email.from.as_str()))
    });
    senders::check_froms(txn, workspace, froms, issues).await
}

fn returned_id(row: Option<QueryResult>) -> Result<i64, CampaignError> {
    let row = row.ok_or_else(|| CampaignError::Corrupt("an insert returned no id".into()))?;
    Ok(row.try_get("", "id")?)
}

/// The campaign columns an update changes.
fn settings_values(
    input: &CampaignInput,
    segments: &HashMap<String, SegmentRef>,
    now: i64,
) -> Vec<(&'static str, sea_orm::Value)> {
    let audience = input
        .audience_segment
        .as_deref()
        .and_then(|slug| segments.get(slug))
        .map(|s| s.id);
    vec![
        ("name", input.name.trim().to_owned().into()),
        ("goal_event", input.goal.event.clone().into()),
        ("goal_window_hours", input.goal.window_hours.into()),
        ("holdout_percent", input.holdout_percent.into()),
        (
            "channels",
            input
                .channels
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(",")
                .into(),
        ),
        ("audience_segment_id", audience.into()),
        ("transactional", input.transactional.into()),
        ("updated_at", now.into()),
    ]
}

/// Looks up every segment the input names; an unknown slug is an issue at its path.
async fn resolve_segments(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    input: &CampaignInput,
    issues: &mut Vec<Issue>,
) -> Result<HashMap<String, SegmentRef>, DbErr> {
    let mut named: Vec<(String, &str)> = input
        .targets
        .iter()
        .enumerate()
        .map(|(t, target)| (format!("targets[{t}].segment"), target.segment.as_str()))
        .collect();
    if let Some(audience) = &input.audience_segment {
        named.push(("audience_segment".to_owned(), audience.as_str()));
    }
    let slugs: Vec<&str> = named
        .iter()
        .map(|(_, s)| *s)
        .filter(|s| !s.trim().is_empty())
        .collect();
    let found = segments_by_slug(db, workspace, &slugs).await?;
    for (path, slug) in named {
        if !slug.trim().is_empty() && !found.contains_key(slug) {
            issues.push(Issue::at(
                path,
                format!("there is no segment with the slug {slug:?} in this workspace"),
            ));
        }
    }
    Ok(found)
}

/// Looks up every webhook endpoint the variants name; an unknown one is an issue at its
/// variant's `webhook.endpoint`.
async fn resolve_endpoints<'a>(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    variants: impl Iterator<Item = (String, &'a VariantInput)>,
    issues: &mut Vec<Issue>,
) -> Result<(), CampaignError> {
    let named: Vec<(String, String, String)> = variants
        .filter_map(|(path, variant)| {
            let endpoint = variant.webhook.as_ref()?.endpoint.as_ref()?;
            Some((path, variant.name.clone(), endpoint.clone()))
        })
        .collect();
    crate::endpoints::check_references(db, workspace, &named, issues).await
}

/// A variant as stored, for comparing with what is saved.
struct VariantRow {
    name: String,
    weight: i64,
    email: Option<EmailVariant>,
    webhook: Option<WebhookVariant>,
    version: i64,
}

impl VariantRow {
    fn differs(&self, input: &VariantInput) -> bool {
        self.name != input.name.trim()
            || self.weight != input.weight
            || self.email != input.email
            || self.webhook != input.webhook
    }
}

async fn variant_rows(
    db: &impl ConnectionTrait,
    campaign: CampaignId,
) -> Result<HashMap<VariantId, VariantRow>, CampaignError> {
    let select = Query::select()
        .columns(["id", "name", "weight", "email", "webhook", "version"])
        .from("campaign_variants")
        .and_where(Expr::col("campaign_id").eq(campaign.0))
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| {
            Ok((
                VariantId(row.try_get("", "id")?),
                VariantRow {
                    name: row.try_get("", "name")?,
                    weight: row.try_get("", "weight")?,
                    email: json_column(row, "email")?,
                    webhook: json_column(row, "webhook")?,
                    version: row.try_get("", "version")?,
                },
            ))
        })
        .collect()
}

/// Brings the targets and variants of campaign `id` in line with `input`: targets are kept
/// per segment, variants per id; changed and new variants get a revision.
async fn write_structure(
    txn: &DatabaseTransaction,
    id: CampaignId,
    input: &CampaignInput,
    segments: &HashMap<String, SegmentRef>,
    existing: &HashMap<VariantId, VariantRow>,
    saved_by: Option<i64>,
    now: i64,
) -> Result<(), CampaignError> {
    let select = Query::select()
        .columns(["id", "segment_id"])
        .from("campaign_targets")
        .and_where(Expr::col("campaign_id").eq(id.0))
        .to_owned();
    let mut old_targets = HashMap::new();
    for row in txn.query_all(&select).await? {
        let segment: i64 = row.try_get("", "segment_id")?;
        let target: i64 = row.try_get("", "id")?;
        old_targets.insert(segment, target);
    }

    let mut target_ids = Vec::with_capacity(input.targets.len());
    for (position, target) in input.targets.iter().enumerate() {
        let segment = segments
            .get(&target.segment)
            .ok_or_else(|| CampaignError::NotFound(format!("segment {:?}", target.segment)))?;
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        let target_id = match old_targets.get(&segment.id) {
            Some(&target_id) => {
                let update = Query::update()
                    .table("campaign_targets")
                    .value("position", position)
                    .and_where(Expr::col("id").eq(target_id))
                    .to_owned();
                txn.execute(&update).await?;
                target_id
            }
            None => {
                let insert = Query::insert()
                    .into_table("campaign_targets")
                    .columns(["campaign_id", "position", "segment_id"])
                    .values([id.0.into(), position.into(), segment.id.into()])
                    .map_err(|e| DbErr::Custom(e.to_string()))?
                    .returning_col("id")
                    .to_owned();
                returned_id(txn.query_one(&insert).await?)?
            }
        };
        target_ids.push(target_id);
    }

    let kept: HashSet<VariantId> = variants_with_paths(input)
        .filter_map(|(_, v)| v.id)
        .collect();
    let mut delete = Query::delete()
        .from_table("campaign_variants")
        .and_where(Expr::col("campaign_id").eq(id.0))
        .to_owned();
    if !kept.is_empty() {
        delete.and_where(Expr::col("id").is_not_in(kept.iter().map(|v| v.0)));
    }
    txn.execute(&delete).await?;

    // Names are unique per campaign and checked per statement, so two variants swapping names
    // would collide halfway: renamed variants first get a name no input can have (control
    // characters are refused in names).
    for (_, variant) in variants_with_paths(input) {
        if let Some(variant_id) = variant.id
            && existing
                .get(&variant_id)
                .is_some_and(|row| row.name != variant.name.trim())
        {
            let update = Query::update()
                .table("campaign_variants")
                .value("name", format!("\u{1}renaming-{variant_id}"))
                .and_where(Expr::col("id").eq(variant_id.0))
                .to_owned();
            txn.execute(&update).await?;
        }
    }

    let placed = input
        .targets
        .iter()
        .zip(&target_ids)
        .flat_map(|(target, &target_id)| {
            target
                .variants
                .iter()
                .enumerate()
                .map(move |(position, v)| (Some(target_id), position, v))
        })
        .chain(input.fallback.iter().map(|v| (None, 0, v)));
    for (target_id, position, variant) in placed {
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        match variant
            .id
            .and_then(|vid| existing.get(&vid).map(|row| (vid, row)))
        {
            Some((variant_id, row)) => {
                let update = Query::update()
                    .table("campaign_variants")
                    .value("target_id", target_id)
                    .value("position", position)
                    .and_where(Expr::col("id").eq(variant_id.0))
                    .to_owned();
                txn.execute(&update).await?;
                if row.differs(variant) {
                    update_variant_content(
                        txn,
                        variant_id,
                        row.version + 1,
                        variant,
                        saved_by,
                        now,
                    )
                    .await?;
                }
            }
            None => {
                let insert = Query::insert()
                    .into_table("campaign_variants")
                    .columns([
                        "campaign_id",
                        "target_id",
                        "position",
                        "name",
                        "weight",
                        "email",
                        "webhook",
                        "version",
                        "created_at",
                        "updated_at",
                    ])
                    .values([
                        id.0.into(),
                        target_id.into(),
                        position.into(),
                        variant.name.trim().to_owned().into(),
                        variant.weight.into(),
                        to_json(variant.email.as_ref())?.into(),
                        to_json(variant.webhook.as_ref())?.into(),
                        1_i64.into(),
                        now.into(),
                        now.into(),
                    ])
                    .map_err(|e| DbErr::Custom(e.to_string()))?
                    .returning_col("id")
                    .to_owned();
                let variant_id = VariantId(returned_id(txn.query_one(&insert).await?)?);
                insert_revision(txn, variant_id, 1, variant, saved_by, now).await?;
            }
        }
    }

    let mut delete = Query::delete()
        .from_table("campaign_targets")
        .and_where(Expr::col("campaign_id").eq(id.0))
        .to_owned();
    if !target_ids.is_empty() {
        delete.and_where(Expr::col("id").is_not_in(target_ids));
    }
    txn.execute(&delete).await?;
    Ok(())
}

async fn update_variant_content(
    txn: &DatabaseTransaction,
    variant_id: VariantId,
    version: i64,
    variant: &VariantInput,
    saved_by: Option<i64>,
    now: i64,
) -> Result<(), CampaignError> {
    let update = Query::update()
        .table("campaign_variants")
        .value("name", variant.name.trim())
        .value("weight", variant.weight)
        .value("email", to_json(variant.email.as_ref())?)
        .value("webhook", to_json(variant.webhook.as_ref())?)
        .value("version", version)
        .value("updated_at", now)
        .and_where(Expr::col("id").eq(variant_id.0))
        .to_owned();
    txn.execute(&update).await?;
    insert_revision(txn, variant_id, version, variant, saved_by, now).await
}

async fn insert_revision(
    txn: &DatabaseTransaction,
    variant_id: VariantId,
    version: i64,
    variant: &VariantInput,
    saved_by: Option<i64>,
    now: i64,
) -> Result<(), CampaignError> {
    let insert = Query::insert()
        .into_table("campaign_variant_revisions")
        .columns([
            "variant_id",
            "version",
            "name",
            "weight",
            "email",
            "webhook",
            "saved_by",
            "saved_at",
        ])
        .values([
            variant_id.0.into(),
            version.into(),
            variant.name.trim().to_owned().into(),
            variant.weight.into(),
            to_json(variant.email.as_ref())?.into(),
            to_json(variant.webhook.as_ref())?.into(),
            saved_by.into(),
            now.into(),
        ])
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .to_owned();
    txn.execute(&insert).await?;
    Ok(())
}

async fn touch(txn: &DatabaseTransaction, id: CampaignId, now: i64) -> Result<(), DbErr> {
    let update = Query::update()
        .table("campaigns")
        .value("updated_at", now)
        .and_where(Expr::col("id").eq(id.0))
        .to_owned();
    txn.execute(&update).await.map(|_| ())
}

fn to_json<T: serde::Serialize>(value: Option<&T>) -> Result<Option<String>, CampaignError> {
    value
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| CampaignError::Corrupt(format!("variant content: {e}")))
}
