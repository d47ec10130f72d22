//! What a reader does with a message: clicks, opens and unsubscribes on a delivery, recorded
//! through ingestion as `email_click`, `email_open` and `unsubscribe` events of the delivery's
//! contact, like any other event (segments follow at once; KPI roll-ups will too).
//!
//! The tracking endpoints verify the signed token and call these; nothing here trusts a
//! delivery id or contact id that did not come out of a verified token.
//!
//! Opens and clicks by machines are stored with the reason in the event's `machine`
//! property (`clarion_kpi::machine`): bots by user agent and Apple's privacy proxy when they
//! are recorded, and click bursts and honeypot clicks once the message's clicks around them
//! are known, which flags those clicks too. Reports leave flagged events out of unique
//! counts.

use std::net::IpAddr;

use clarion_contacts::{ContactsError, Ingest, events::IngestOptions};
use clarion_kpi::machine::{MachineFilter, MachineReason};
use clarion_model::{
    ContactId, EventInput, EventKind, ExternalId, IdempotencyKey, ModelError, Timestamp,
    WorkspaceId,
};
use sea_orm::{
    ConnectionTrait, DbBackend, Statement, Value as SqlValue,
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

/// The name of a variant version's link table, as sent messages carry it in their signed
/// per-message link token (see `clarion_template::tracking`): `"{variant_id}.{version}"`.
#[must_use]
pub fn link_table_name(variant_id: i64, version: i64) -> String {
    format!("{variant_id}.{version}")
}

/// The target of entry `index` of the link table named `link_table` (from a verified link
/// token): the link written literally at that place in the HTML of that saved variant
/// version, derived from the version's stored revision. Editing a variant adds a revision and
/// leaves the old one, so links of messages sent before the edit still resolve. `None` when
/// the name is not one this server gives out, the revision is gone, the index is outside the
/// table, or the entry is not an `http(s)` link: the caller refuses the request.
pub async fn link_target(
    db: &impl ConnectionTrait,
    link_table: &str,
    index: usize,
) -> Result<Option<String>, EngagementError> {
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
    Ok(clarion_template::link_table(&email.html)
        .into_iter()
        .nth(index)
        .filter(|target| clarion_template::is_http_url(target)))
}

/// What recording a click or an open came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The event was stored.
    Stored,
    /// The delivery or its contact no longer exists; nothing was stored.
    UnknownDelivery,
}

/// What the tracking request showed about who made it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requester<'a> {
    pub user_agent: Option<&'a str>,
    /// The client's address (as forwarded by a trusted proxy, or the peer's).
    pub address: Option<IpAddr>,
}

/// Records an open (`email_open`) on delivery `id`, flagged as a machine's when the request
/// is a bot's or Apple's privacy proxy. Opens repeat, and each one counts, so they carry no
/// idempotency key.
pub async fn record_open(
    ingest: &Ingest,
    filter: &MachineFilter,
    id: i64,
    requester: Requester<'_>,
) -> Result<Recorded, EngagementError> {
    let reason = filter.classify_open(requester.user_agent, requester.address);
    record(ingest, id, "email_open", Map::new(), reason)
        .await
        .map(|(recorded, _)| recorded)
}

/// Records a click (`email_click` with its `url`) on delivery `id`. A bot's click is flagged
/// at once; a click on the message's honeypot link (`honeypot`) is a machine's, and so are
/// the message's clicks within the burst window around it; several different links clicked
/// within that window are a burst, all of whose clicks are flagged. The burst check runs
/// after the click is stored, so of clicks arriving together the last one sees them all.
pub async fn record_click(
    ingest: &Ingest,
    filter: &MachineFilter,
    id: i64,
    url: &str,
    honeypot: bool,
    requester: Requester<'_>,
) -> Result<Recorded, EngagementError> {
    let reason = if honeypot {
        Some(MachineReason::Honeypot)
    } else {
        filter.classify_click(requester.user_agent)
    };
    let mut properties = Map::new();
    properties.insert("url".to_owned(), Value::String(url.to_owned()));
    let (recorded, recipient) = record(ingest, id, "email_click", properties, reason).await?;
    if let Some(recipient) = recipient
        && flag_bursts(ingest.db(), filter, &recipient, id).await?
    {
        // The roll-up listener counted the clicks before they were flagged: count again,
        // before answering, so the campaign report agrees with the flags.
        // Like the listener's, a failure is logged: the click and its flags are stored.
        if let Err(error) =
            clarion_kpi::rollup::refresh(ingest.db(), recipient.workspace, &[recipient.contact])
                .await
        {
            tracing::warn!(%error, "KPI roll-ups could not be updated after flagging clicks; rebuild the run");
        }
    }
    Ok(recorded)
}

/// Records an open or a click (with `properties` such as the `url`) on delivery `id`,
/// with `machine` as its `machine` property when it is a machine's.
async fn record(
    ingest: &Ingest,
    id: i64,
    kind: &str,
    mut properties: Map<String, Value>,
    machine: Option<MachineReason>,
) -> Result<(Recorded, Option<Recipient>), EngagementError> {
    let Some(recipient) = recipient(ingest.db(), id).await? else {
        return Ok((Recorded::UnknownDelivery, None));
    };
    properties.insert("campaign_id".to_owned(), json!(recipient.campaign_id));
    properties.insert("delivery_id".to_owned(), json!(id));
    if let Some(reason) = machine {
        properties.insert("machine".to_owned(), json!(reason.as_str()));
    }
    let stored = store_event(
        ingest,
        recipient.workspace,
        recipient.external_id.clone(),
        kind,
        properties,
        None,
    )
    .await?;
    Ok(if stored {
        (Recorded::Stored, Some(recipient))
    } else {
        (Recorded::UnknownDelivery, None)
    })
}

/// A click of one delivery as the burst check reads it.
struct Click {
    id: i64,
    at: i64,
    url: String,
    machine: Option<String>,
}

/// Flags the delivery's recent clicks when they form a burst or surround a honeypot click:
/// looks at the clicks of the last two windows, and flags every click of a burst or within a
/// window of a honeypot click that is not flagged yet. Says whether it flagged any.
async fn flag_bursts(
    db: &impl ConnectionTrait,
    filter: &MachineFilter,
    recipient: &Recipient,
    delivery: i64,
) -> Result<bool, EngagementError> {
    let window = filter.settings().burst_window_ms;
    let now = Timestamp::now().millis();
    let backend = db.get_database_backend();
    let (property, delivery_value) = match backend {
        DbBackend::Postgres => (
            "properties ->> 'delivery_id'",
            SqlValue::from(delivery.to_string()),
        ),
        _ => (
            "json_extract(properties, '$.delivery_id')",
            SqlValue::from(delivery),
        ),
    };
    let machine = match backend {
        DbBackend::Postgres => "properties ->> 'machine'",
        _ => "json_extract(properties, '$.machine')",
    };
    let url = match backend {
        DbBackend::Postgres => "properties ->> 'url'",
        _ => "json_extract(properties, '$.url')",
    };
    let sql = format!(
        "SELECT id, occurred_at, {url} AS url, {machine} AS machine FROM events \
         WHERE contact_id = {p1} AND kind = 'email_click' AND occurred_at >= {p2} AND {property} = {p3} \
         ORDER BY occurred_at",
        p1 = placeholder(backend, 1),
        p2 = placeholder(backend, 2),
        p3 = placeholder(backend, 3),
    );
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [
                SqlValue::from(recipient.contact.0),
                SqlValue::from(now - 2 * window),
                delivery_value,
            ],
        ))
        .await?;
    let mut clicks = Vec::with_capacity(rows.len());
    for row in rows {
        clicks.push(Click {
            id: row.try_get("", "id")?,
            at: row.try_get("", "occurred_at")?,
            url: row
                .try_get::<Option<String>>("", "url")?
                .unwrap_or_default(),
            machine: row.try_get("", "machine")?,
        });
    }
    let timeline: Vec<(i64, String)> = clicks.iter().map(|c| (c.at, c.url.clone())).collect();
    let honeypots: Vec<i64> = clicks
        .iter()
        .filter(|c| c.machine.as_deref() == Some(MachineReason::Honeypot.as_str()))
        .map(|c| c.at)
        .collect();
    let mut flags: Vec<(i64, MachineReason)> = Vec::new();
    for click in clicks.iter().filter(|c| c.machine.is_none()) {
        if honeypots.iter().any(|h| (h - click.at).abs() <= window) {
            flags.push((click.id, MachineReason::Honeypot));
        } else if filter.is_burst(click.at, &timeline) {
            flags.push((click.id, MachineReason::ClickBurst));
        }
    }
    for reason in [MachineReason::Honeypot, MachineReason::ClickBurst] {
        let ids: Vec<i64> = flags
            .iter()
            .filter(|(_, r)| *r == reason)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let set = match backend {
            DbBackend::Postgres => format!(
                "properties = jsonb_set(properties, '{{machine}}', to_jsonb(CAST({} AS TEXT)))",
                placeholder(backend, 1)
            ),
            _ => "properties = json_set(properties, '$.machine', ?)".to_owned(),
        };
        let list: Vec<String> = (0..ids.len())
            .map(|i| placeholder(backend, i + 2))
            .collect();
        let mut values = vec![SqlValue::from(reason.as_str().to_owned())];
        values.extend(ids.iter().map(|id| SqlValue::from(*id)));
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("UPDATE events SET {set} WHERE id IN ({})", list.join(", ")),
            values,
        ))
        .await?;
    }
    Ok(!flags.is_empty())
}

/// The `n`th (1-based) bound parameter of a statement.
fn placeholder(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
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
