//! Deliveries as the tracking endpoints see them: whose message a delivery id names.

use clarion_model::{ContactId, ExternalId, WorkspaceId};
use sea_orm::{
    ConnectionTrait,
    sea_query::{Expr, ExprTrait, JoinType, Query},
};

use super::{StoreError, corrupt};

/// The recipient of one delivery: where a click, open or unsubscribe on it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub workspace: WorkspaceId,
    pub campaign_id: i64,
    pub contact: ContactId,
    pub external_id: ExternalId,
}

/// The recipient of delivery `id`, or `None` when there is no such delivery or its contact
/// has been deleted since.
pub async fn recipient(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<Recipient>, StoreError> {
    let select = Query::select()
        .expr_as(Expr::col(("d", "workspace_id")), "workspace_id")
        .expr_as(Expr::col(("d", "campaign_id")), "campaign_id")
        .expr_as(Expr::col(("d", "contact_id")), "contact_id")
        .expr_as(Expr::col(("c", "external_id")), "external_id")
        .from_as("deliveries", "d")
        // The workspace is part of the join: a contact only ever receives its own
        // workspace's deliveries.
        .join_as(
            JoinType::InnerJoin,
            "contacts",
            "c",
            Expr::col(("c", "id"))
                .equals(("d", "contact_id"))
                .and(Expr::col(("c", "workspace_id")).equals(("d", "workspace_id"))),
        )
        .and_where(Expr::col(("d", "id")).eq(id))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok(None);
    };
    let external_id: String = row.try_get("", "external_id")?;
    Ok(Some(Recipient {
        workspace: WorkspaceId(row.try_get("", "workspace_id")?),
        campaign_id: row.try_get("", "campaign_id")?,
        contact: ContactId(row.try_get("", "contact_id")?),
        external_id: ExternalId::parse(external_id).map_err(corrupt("external_id"))?,
    }))
}
