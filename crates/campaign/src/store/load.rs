//! Reading campaigns back as they were written, with their targets, variants and history.

use std::collections::HashMap;

use clarion_model::{CampaignId, Channel, Goal, Timestamp, VariantId, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DbErr, QueryResult,
    sea_query::{Expr, ExprTrait, JoinType, Order, Query},
};

use crate::{
    CampaignError,
    campaign::{Campaign, CampaignSummary, Revision, SegmentRef, Status, Target, Variant},
};

/// One campaign with its targets and variants.
///
/// # Errors
/// Database failures, or [`CampaignError::Corrupt`] for a row changed behind Clarion's back.
pub async fn get(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    id: CampaignId,
) -> Result<Option<Campaign>, CampaignError> {
    load(db, workspace, id).await
}

/// A page of campaigns in creation order, after the campaign `after`.
///
/// # Errors
/// Database failures.
pub async fn list(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    after: Option<CampaignId>,
    limit: u64,
) -> Result<Vec<CampaignSummary>, CampaignError> {
    let mut select = summaries(workspace);
    select.order_by(("c", "id"), Order::Asc).limit(limit);
    if let Some(after) = after {
        select.and_where(Expr::col(("c", "id")).gt(after.0));
    }
    read_summaries(db, &select).await
}

/// The column a list of campaigns is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Created,
    Updated,
    Name,
    Status,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            SortKey::Created => "id",
            SortKey::Updated => "updated_at",
            SortKey::Name => "name",
            SortKey::Status => "status",
        }
    }
}

/// A page of campaigns sorted by `key` (ties broken by creation), skipping `offset`, for
/// people paging through a table; with it the number of campaigns in the workspace. A
/// workspace has few campaigns, so an offset is cheap here.
///
/// # Errors
/// Database failures.
pub async fn sorted(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    key: SortKey,
    descending: bool,
    offset: u64,
    limit: u64,
) -> Result<(Vec<CampaignSummary>, u64), CampaignError> {
    let order = if descending { Order::Desc } else { Order::Asc };
    let mut select = summaries(workspace);
    select
        .order_by(("c", key.column()), order.clone())
        .order_by(("c", "id"), order)
        .offset(offset)
        .limit(limit);
    let page = read_summaries(db, &select).await?;
    let count = Query::select()
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .from("campaigns")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    let total: i64 = match db.query_one(&count).await? {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    Ok((page, u64::try_from(total).unwrap_or(0)))
}

/// The campaigns of a workspace as lists show them, unordered.
fn summaries(workspace: WorkspaceId) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .columns([
            ("c", "id"),
            ("c", "name"),
            ("c", "status"),
            ("c", "channels"),
            ("c", "transactional"),
            ("c", "created_at"),
            ("c", "updated_at"),
        ])
        .expr_as(
            Expr::cust("(SELECT COUNT(*) FROM campaign_variants v WHERE v.campaign_id = c.id)"),
            "variants",
        )
        .from_as("campaigns", "c")
        .and_where(Expr::col(("c", "workspace_id")).eq(workspace.0))
        .to_owned()
}

async fn read_summaries(
    db: &impl ConnectionTrait,
    select: &sea_orm::sea_query::SelectStatement,
) -> Result<Vec<CampaignSummary>, CampaignError> {
    db.query_all(select)
        .await?
        .iter()
        .map(|row| {
            let variants: i64 = row.try_get("", "variants")?;
            Ok(CampaignSummary {
                id: CampaignId(row.try_get("", "id")?),
                name: row.try_get("", "name")?,
                status: status(row)?,
                channels: channels(&row.try_get::<String>("", "channels")?)?,
                transactional: row.try_get("", "transactional")?,
                variants: u64::try_from(variants).unwrap_or(0),
                created_at: Timestamp::from_millis(row.try_get("", "created_at")?),
                updated_at: Timestamp::from_millis(row.try_get("", "updated_at")?),
            })
        })
        .collect()
}

/// The saved revisions of a variant, newest first.
///
/// # Errors
/// [`CampaignError::NotFound`] when the campaign has no such variant.
pub async fn history(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    id: CampaignId,
    variant_id: VariantId,
) -> Result<Vec<Revision>, CampaignError> {
    let select = Query::select()
        .columns([
            ("r", "version"),
            ("r", "name"),
            ("r", "weight"),
            ("r", "email"),
            ("r", "webhook"),
            ("r", "saved_by"),
            ("r", "saved_at"),
        ])
        .from_as("campaign_variant_revisions", "r")
        .join_as(
            JoinType::InnerJoin,
            "campaign_variants",
            "v",
            Expr::col(("v", "id")).equals(("r", "variant_id")),
        )
        .join_as(
            JoinType::InnerJoin,
            "campaigns",
            "c",
            Expr::col(("c", "id")).equals(("v", "campaign_id")),
        )
        .and_where(Expr::col(("v", "id")).eq(variant_id.0))
        .and_where(Expr::col(("c", "id")).eq(id.0))
        .and_where(Expr::col(("c", "workspace_id")).eq(workspace.0))
        .order_by(("r", "version"), Order::Desc)
        .to_owned();
    let revisions: Vec<Revision> = db
        .query_all(&select)
        .await?
        .iter()
        .map(|row| {
            Ok(Revision {
                version: row.try_get("", "version")?,
                name: row.try_get("", "name")?,
                weight: weight(row)?,
                email: json_column(row, "email")?,
                webhook: json_column(row, "webhook")?,
                saved_by: row.try_get("", "saved_by")?,
                saved_at: Timestamp::from_millis(row.try_get("", "saved_at")?),
            })
        })
        .collect::<Result<_, CampaignError>>()?;
    // Every variant has its first revision from the moment it is created.
    if revisions.is_empty() {
        return Err(CampaignError::NotFound(format!(
            "variant {variant_id} of campaign {id}"
        )));
    }
    Ok(revisions)
}

/// Segments of the workspace by slug.
///
/// # Errors
/// Database failures.
pub async fn segments_by_slug(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    slugs: &[&str],
) -> Result<HashMap<String, SegmentRef>, DbErr> {
    if slugs.is_empty() {
        return Ok(HashMap::new());
    }
    let select = Query::select()
        .columns(["id", "slug", "name"])
        .from("segments")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("slug").is_in(slugs.iter().map(|s| (*s).to_owned())))
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| {
            let segment = SegmentRef {
                id: row.try_get("", "id")?,
                slug: row.try_get("", "slug")?,
                name: row.try_get("", "name")?,
            };
            Ok((segment.slug.clone(), segment))
        })
        .collect()
}

/// Reads a whole campaign: its row, its targets with their segments, its variants.
pub(super) async fn load(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    id: CampaignId,
) -> Result<Option<Campaign>, CampaignError> {
    let select = Query::select()
        .columns([
            ("c", "id"),
            ("c", "name"),
            ("c", "status"),
            ("c", "goal_event"),
            ("c", "goal_window_hours"),
            ("c", "holdout_percent"),
            ("c", "channels"),
            ("c", "transactional"),
            ("c", "duplicated_from"),
            ("c", "created_at"),
            ("c", "updated_at"),
        ])
        .expr_as(Expr::col(("s", "id")), "audience_id")
        .expr_as(Expr::col(("s", "slug")), "audience_slug")
        .expr_as(Expr::col(("s", "name")), "audience_name")
        .from_as("campaigns", "c")
        .join_as(
            JoinType::LeftJoin,
            "segments",
            "s",
            Expr::col(("s", "id")).equals(("c", "audience_segment_id")),
        )
        .and_where(Expr::col(("c", "id")).eq(id.0))
        .and_where(Expr::col(("c", "workspace_id")).eq(workspace.0))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok(None);
    };
    let audience_id: Option<i64> = row.try_get("", "audience_id")?;
    let audience_segment = match audience_id {
        Some(audience_id) => Some(SegmentRef {
            id: audience_id,
            slug: row.try_get("", "audience_slug")?,
            name: row.try_get("", "audience_name")?,
        }),
        None => None,
    };

    let select = Query::select()
        .columns([("s", "slug"), ("s", "name")])
        .expr_as(Expr::col(("t", "id")), "target_id")
        .expr_as(Expr::col(("s", "id")), "segment_id")
        .from_as("campaign_targets", "t")
        .join_as(
            JoinType::InnerJoin,
            "segments",
            "s",
            Expr::col(("s", "id")).equals(("t", "segment_id")),
        )
        .and_where(Expr::col(("t", "campaign_id")).eq(id.0))
        .order_by(("t", "position"), Order::Asc)
        .to_owned();
    let mut targets = Vec::new();
    let mut target_index = HashMap::new();
    for row in db.query_all(&select).await? {
        target_index.insert(row.try_get::<i64>("", "target_id")?, targets.len());
        targets.push(Target {
            segment: SegmentRef {
                id: row.try_get("", "segment_id")?,
                slug: row.try_get("", "slug")?,
                name: row.try_get("", "name")?,
            },
            variants: Vec::new(),
        });
    }

    let select = Query::select()
        .columns([
            "id",
            "target_id",
            "name",
            "weight",
            "email",
            "webhook",
            "version",
            "created_at",
            "updated_at",
        ])
        .from("campaign_variants")
        .and_where(Expr::col("campaign_id").eq(id.0))
        .order_by("position", Order::Asc)
        .order_by("id", Order::Asc)
        .to_owned();
    let mut fallback = None;
    for row in db.query_all(&select).await? {
        let variant = Variant {
            id: VariantId(row.try_get("", "id")?),
            name: row.try_get("", "name")?,
            weight: weight(&row)?,
            version: row.try_get("", "version")?,
            email: json_column(&row, "email")?,
            webhook: json_column(&row, "webhook")?,
            created_at: Timestamp::from_millis(row.try_get("", "created_at")?),
            updated_at: Timestamp::from_millis(row.try_get("", "updated_at")?),
        };
        let target: Option<i64> = row.try_get("", "target_id")?;
        match target.and_then(|t| target_index.get(&t)) {
            Some(&index) => targets[index].variants.push(variant),
            None => fallback = Some(variant),
        }
    }

    Ok(Some(Campaign {
        id: CampaignId(row.try_get("", "id")?),
        name: row.try_get("", "name")?,
        status: status(&row)?,
        goal: Goal {
            event: row.try_get("", "goal_event")?,
            window_hours: row.try_get("", "goal_window_hours")?,
        },
        holdout_percent: row.try_get("", "holdout_percent")?,
        channels: channels(&row.try_get::<String>("", "channels")?)?,
        targets,
        audience_segment,
        fallback,
        transactional: row.try_get("", "transactional")?,
        duplicated_from: row
            .try_get::<Option<i64>>("", "duplicated_from")?
            .map(CampaignId),
        created_at: Timestamp::from_millis(row.try_get("", "created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("", "updated_at")?),
    }))
}

fn status(row: &QueryResult) -> Result<Status, CampaignError> {
    let value: String = row.try_get("", "status")?;
    Status::parse(&value).ok_or_else(|| CampaignError::Corrupt(format!("status {value:?}")))
}

fn weight(row: &QueryResult) -> Result<u32, CampaignError> {
    let value: i64 = row.try_get("", "weight")?;
    u32::try_from(value).map_err(|_| CampaignError::Corrupt(format!("weight {value}")))
}

fn channels(value: &str) -> Result<Vec<Channel>, CampaignError> {
    value
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| Channel::parse(c).ok_or_else(|| CampaignError::Corrupt(format!("channel {c:?}"))))
        .collect()
}

pub(super) fn json_column<T: serde::de::DeserializeOwned>(
    row: &QueryResult,
    column: &str,
) -> Result<Option<T>, CampaignError> {
    let text: Option<String> = row.try_get("", column)?;
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| CampaignError::Corrupt(format!("column {column}: {e}")))
}
