//! What a reader does with a message: clicks, opens and unsubscribes on a delivery, recorded
//! through ingestion as `email_click`, `email_open` and `unsubscribe` events of the delivery's
//! contact, like any other event (segments follow at once; KPI roll-ups will too).
//!
//! The tracking endpoints verify the signed token and call these; nothing here trusts a
//! delivery id or contact id that did not come out of a verified token.

use clarion_contacts::{ContactsError, Ingest, events::IngestOptions};
use clarion_model::{
    ContactId, EventInput, EventKind, ExternalId, IdempotencyKey, ModelError, WorkspaceId,
};
use sea_orm::{
    ConnectionTrait,
    sea_query::{Expr, ExprTrait, JoinType, Query},
};
use serde_json::{Map, Value, json};

/// Why an engagement could not be recorded; never the reader's fault.
#[derive(Debug, thiserror::Error)]
pub enum EngagementError {
    #[error(transparent)]
    Store(#[from] ContactsError),
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    /// A stored external id no longer parses, or an event built here does not: a bug or a row
    /// changed behind Clarion's back.
    #[error("invalid value: {0}")]
    Model(#[from] ModelError),
}

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
) -> Result<Option<Recipient>, EngagementError> {
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
        external_id: ExternalId::parse(external_id)?,
    }))
}

/// What recording a click or an open came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The event was stored.
    Stored,
    /// The delivery or its contact no longer exists; nothing was stored.
    UnknownDelivery,
}

/// Records a click (`email_click`, with `properties` such as the `url`) or an open
/// (`email_open`) on delivery `id`. Opens and clicks repeat, and each one counts, so they carry
/// no idempotency key.
pub async fn record(
    ingest: &Ingest,
    id: i64,
    kind: &str,
    mut properties: Map<String, Value>,
) -> Result<Recorded, EngagementError> {
    let Some(recipient) = recipient(ingest.db(), id).await? else {
        return Ok(Recorded::UnknownDelivery);
    };
    properties.insert("campaign_id".to_owned(), json!(recipient.campaign_id));
    properties.insert("delivery_id".to_owned(), json!(id));
    let stored = store_event(
        ingest,
        recipient.workspace,
        recipient.external_id,
        kind,
        properties,
        None,
    )
    .await?;
    Ok(if stored {
        Recorded::Stored
    } else {
        Recorded::UnknownDelivery
    })
}

/// What an unsubscribe request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The contact is unsubscribed now; `changed` when this request did it or recorded it.
    Done { changed: bool },
    /// The contact no longer exists.
    NoContact,
    /// The delivery belongs to another contact than the token says.
    Mismatch,
}

/// Unsubscribes the contact a verified unsubscribe token names from email, and records an
/// `unsubscribe` event once per `key` (the token's delivery). `delivery` is the token's
/// delivery id when it names one; `contact` the token's contact. When the delivery is gone
/// (its campaign was deleted, say) the signed link still names the contact, who must still
/// be able to leave.
pub async fn unsubscribe(
    ingest: &Ingest,
    delivery: Option<i64>,
    contact: Option<ContactId>,
    key: &str,
) -> Result<Unsubscribed, EngagementError> {
    let recipient = match delivery {
        Some(id) => recipient(ingest.db(), id).await?,
        None => None,
    };
    let mut properties = Map::new();
    let (workspace, contact, external_id) = match recipient {
        Some(recipient) if Some(recipient.contact) == contact => {
            properties.insert("campaign_id".to_owned(), json!(recipient.campaign_id));
            (
                recipient.workspace,
                recipient.contact,
                recipient.external_id,
            )
        }
        Some(_) => return Ok(Unsubscribed::Mismatch),
        None => {
            let Some(contact) = contact else {
                return Ok(Unsubscribed::NoContact);
            };
            match clarion_contacts::contacts::external_id_by_id(ingest.db(), contact).await? {
                Some((workspace, external_id)) => (workspace, contact, external_id),
                None => return Ok(Unsubscribed::NoContact),
            }
        }
    };
    if let Some(id) = delivery {
        properties.insert("delivery_id".to_owned(), json!(id));
    }
    // Ingestion tells segments of both changes: the subscription (as with a contact PATCH)
    // and the `unsubscribe` event.
    let changed = ingest.unsubscribe_email(workspace, contact).await?;
    let recorded = store_event(
        ingest,
        workspace,
        external_id,
        "unsubscribe",
        properties,
        Some(key),
    )
    .await?;
    Ok(Unsubscribed::Done {
        changed: changed || recorded,
    })
}

/// Stores one event through ingestion. Returns whether it was stored: not when its
/// idempotency key was seen before or its contact was deleted meanwhile.
async fn store_event(
    ingest: &Ingest,
    workspace: WorkspaceId,
    external_id: ExternalId,
    kind: &str,
    properties: Map<String, Value>,
    idempotency_key: Option<&str>,
) -> Result<bool, EngagementError> {
    let event = EventInput {
        external_id,
        kind: EventKind::parse(kind)?,
        occurred_at: None,
        amount: None,
        currency: None,
        properties,
        idempotency_key: idempotency_key.map(IdempotencyKey::parse).transpose()?,
    };
    let options = IngestOptions {
        create_unknown_contacts: false,
        max_future_millis: 0,
        atomic: false,
    };
    let report = ingest.events(workspace, vec![(0, event)], options).await?;
    Ok(report.accepted > 0)
}
