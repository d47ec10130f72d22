//! What a reader does with a message: clicks, opens and unsubscribes on a delivery, recorded
//! through ingestion as `email_click`, `email_open` and `unsubscribe` events of the delivery's
//! contact, like any other event (segments and KPI roll-ups follow).
//!
//! The tracking endpoints verify the signed token and call these; nothing here trusts a
//! delivery id or contact id that did not come out of a verified token. Opens and clicks are
//! recorded in batches, off the request path ([`crate::hits`]); an unsubscribe is rare and
//! must hold at once, so it is recorded while the request waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    /// A stored variant revision no longer parses.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
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
    Ok(recipients(db, &[id]).await?.remove(&id))
}

/// The recipients of deliveries `ids` by delivery id, in one query; deliveries that do not
/// exist, or whose contact has been deleted since, are left out.
pub async fn recipients(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<HashMap<i64, Recipient>, EngagementError> {
    let mut out = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(out);
    }
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let select = Query::select()
        .expr_as(Expr::col(("d", "id")), "id")
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
        .and_where(Expr::col(("d", "id")).is_in(ids))
        .to_owned();
    for row in db.query_all(&select).await? {
        let external_id: String = row.try_get("", "external_id")?;
        out.insert(
            row.try_get("", "id")?,
            Recipient {
                workspace: WorkspaceId(row.try_get("", "workspace_id")?),
                campaign_id: row.try_get("", "campaign_id")?,
                contact: ContactId(row.try_get("", "contact_id")?),
                external_id: ExternalId::parse(external_id)?,
            },
        );
    }
    Ok(out)
}

/// The name of a variant version's link table, as sent messages carry it in their signed
/// per-message link token (see `clarion_template::tracking`): `"{variant_id}.{version}"`.
#[must_use]
pub fn link_table_name(variant_id: i64, version: i64) -> String {
    format!("{variant_id}.{version}")
}

/// Link tables a process keeps before it starts its cache over.
const CACHED_LINK_TABLES: usize = 4_096;

/// The link tables of saved variant versions, as `/t/l/` reads them. A saved version never
/// changes (an edit adds a revision), so each table is read and parsed once per process
/// rather than once per click; the cache holds [`CACHED_LINK_TABLES`] and starts over when
/// full. A table is cached once found, so a campaign deleted after its links were followed
/// keeps redirecting in that process until the cache starts over or the process restarts.
#[derive(Debug, Default)]
pub struct LinkTables {
    tables: Mutex<HashMap<String, Arc<Vec<String>>>>,
}

impl LinkTables {
    /// The target of entry `index` of the link table named `link_table` (from a verified
    /// link token): the link written literally at that place in the HTML of that saved
    /// variant version. Editing a variant adds a revision and leaves the old one, so links
    /// of messages sent before the edit still resolve. `None` when the name is not one this
    /// server gives out, the revision is gone, the index is outside the table, or the entry
    /// is not an `http(s)` link: the caller refuses the request.
    pub async fn target(
        &self,
        db: &impl ConnectionTrait,
        link_table: &str,
        index: usize,
    ) -> Result<Option<String>, EngagementError> {
        let cached = self
            .tables
            .lock()
            .ok()
            .and_then(|tables| tables.get(link_table).cloned());
        let table = match cached {
            Some(table) => table,
            None => {
                let Some(table) = load_link_table(db, link_table).await? else {
                    return Ok(None);
                };
                let table = Arc::new(table);
                if let Ok(mut tables) = self.tables.lock() {
                    if tables.len() >= CACHED_LINK_TABLES {
                        tables.clear();
                    }
                    tables.insert(link_table.to_owned(), Arc::clone(&table));
                }
                table
            }
        };
        Ok(table
            .get(index)
            .filter(|target| clarion_template::is_http_url(target))
            .cloned())
    }
}

/// The link table of the saved variant version `link_table` names, derived from its stored
/// revision; `None` when the name is not one this server gives out or the revision is gone.
async fn load_link_table(
    db: &impl ConnectionTrait,
    link_table: &str,
) -> Result<Option<Vec<String>>, EngagementError> {
    let Some((variant, version)) = link_table
        .split_once('.')
        .and_then(|(v, n)| Some((v.parse::<i64>().ok()?, n.parse::<i64>().ok()?)))
    else {
        return Ok(None);
    };
    let select = Query::select()
        .column("email")
        .from("campaign_variant_revisions")
        .and_where(Expr::col("variant_id").eq(variant))
        .and_where(Expr::col("version").eq(version))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok(None);
    };
    let Some(email) = row.try_get::<Option<String>>("", "email")? else {
        return Ok(None);
    };
    let email: crate::campaign::EmailVariant = serde_json::from_str(&email)
        .map_err(|e| EngagementError::Corrupt(format!("variant revision {link_table}: {e}")))?;
    Ok(Some(clarion_template::link_table(&email.html)))
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
