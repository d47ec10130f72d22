//! Events: batch insert with idempotency keys, and a contact's event history.

use std::collections::{HashMap, HashSet};

use clarion_model::{
    ContactId, Currency, Event, EventId, EventInput, EventKind, ExternalId, IdempotencyKey,
    Timestamp, WorkspaceId, entity::event,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
    sea_query::{OnConflict, Query},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{ContactsError, batch::ItemError, contacts, corrupt, rows_per_statement};

/// How an event batch is taken in.
#[derive(Debug, Clone, Copy)]
pub struct IngestOptions {
    /// Create contacts for unknown external ids instead of rejecting their events.
    pub create_unknown_contacts: bool,
    /// Refuse events that claim to lie further in the future than this.
    pub max_future_millis: i64,
    /// Store nothing when any item is rejected.
    pub atomic: bool,
}

/// An event whose idempotency key was seen before; it was not stored again.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Duplicate {
    pub index: usize,
    #[schema(value_type = String)]
    pub idempotency_key: IdempotencyKey,
}

/// The outcome of an event batch.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct EventReport {
    /// Events stored.
    pub accepted: usize,
    /// Events not stored because their idempotency key was already known.
    pub duplicates: Vec<Duplicate>,
    /// Events refused.
    pub rejected: usize,
    /// Why each refused event was refused.
    pub errors: Vec<ItemError>,
    /// The contacts the stored events belong to, so their segments can be brought up to date.
    #[serde(skip)]
    pub contacts: Vec<ContactId>,
    /// The earliest stored event of each contact and kind, so roll-ups of the events can be
    /// computed again from that moment on rather than from each contact's first event.
    #[serde(skip)]
    pub earliest: Vec<Earliest>,
}

/// The earliest event of `kind` a batch stored for `contact` (its `occurred_at`, in
/// milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earliest {
    pub contact: ContactId,
    pub kind: String,
    pub occurred_at: i64,
}

/// Stores a batch of events. Bad items are reported and skipped (or, with `atomic`, stop the
/// whole batch); events whose idempotency key is already stored are answered as duplicates.
pub async fn insert_batch(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    items: Vec<(usize, EventInput)>,
    options: IngestOptions,
) -> Result<EventReport, ContactsError> {
    let mut report = EventReport::default();
    let now = Timestamp::now();
    let latest = now.millis().saturating_add(options.max_future_millis);
    let mut keys_in_batch: HashSet<IdempotencyKey> = HashSet::new();
    let mut checked = Vec::with_capacity(items.len());
    for (index, item) in items {
        if item.occurred_at.is_some_and(|t| t.millis() > latest) {
            report.errors.push(ItemError::new(
                index,
                Some("occurred_at".to_string()),
                "occurred_at lies too far in the future (see ingest.max_future_hours)",
            ));
            continue;
        }
        if item.currency.is_some() && item.amount.is_none() {
            report.errors.push(ItemError::new(
                index,
                Some("currency".to_string()),
                "currency is given without an amount",
            ));
            continue;
        }
        if let Some(key) = &item.idempotency_key
            && !keys_in_batch.insert(key.clone())
        {
            report.duplicates.push(Duplicate {
                index,
                idempotency_key: key.clone(),
            });
            continue;
        }
        checked.push((index, item));
    }

    // Contacts are looked up, created and referenced in external-id order, so concurrent
    // batches take their row locks in the same order.
    checked.sort_by(|a, b| a.1.external_id.cmp(&b.1.external_id));
    let mut attempt = 1;
    let written = loop {
        match write_events(db, workspace, &checked, options, now).await {
            Err(ContactsError::Db(ref error)) if attempt < 3 && crate::is_retryable(error) => {
                tracing::warn!(attempt, "event batch hit a deadlock; running it again");
                attempt += 1;
            }
            other => break other?,
        }
    };
    report.accepted = written.accepted;
    report.contacts = written.contacts;
    report.earliest = written.earliest;
    report.duplicates.extend(written.duplicates);
    report.errors.extend(written.errors);
    report.rejected = report.errors.len();
    report.duplicates.sort_by_key(|d| d.index);
    report.errors.sort_by_key(|e| e.index);
    Ok(report)
}

/// What one attempt at writing a batch stored.
#[derive(Default)]
struct Written {
    accepted: usize,
    contacts: Vec<ContactId>,
    earliest: Vec<Earliest>,
    duplicates: Vec<Duplicate>,
    errors: Vec<ItemError>,
}

/// The smallest batch PostgreSQL is sent by COPY. A COPY costs three round trips and waits
/// on the server's delayed acknowledgement (about 40 ms on loopback, measured with
/// `log_min_duration_statement`), so a provider webhook's batch of one event went at about
/// 150 a second; below this many rows one `INSERT ... SELECT FROM UNNEST` is faster.
pub const COPY_MIN_ROWS: usize = 256;

/// Writes checked events in one transaction (nothing with `atomic` when a contact is unknown).
async fn write_events(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    checked: &[(usize, EventInput)],
    options: IngestOptions,
    now: Timestamp,
) -> Result<Written, ContactsError> {
    let mut written = Written::default();
    let mut external_ids: Vec<&str> = checked
        .iter()
        .map(|(_, item)| item.external_id.as_str())
        .collect();
    external_ids.dedup();
    // Unless the batch is atomic, new contacts are committed before the events are written:
    // concurrent batches that need the same new contacts then wait for these few inserts,
    // not for this whole batch.
    let (txn, ids) = if options.atomic {
        let txn = crate::begin_write(db).await?;
        let ids = contacts::resolve_ids(
            &txn,
            workspace,
            &external_ids,
            options.create_unknown_contacts,
        )
        .await?;
        (Some(txn), ids)
    } else {
        let ids = contacts::resolve_ids(
            db,
            workspace,
            &external_ids,
            options.create_unknown_contacts,
        )
        .await?;
        (None, ids)
    };
    let mut rows = Vec::with_capacity(checked.len());
    for (index, item) in checked {
        match ids.get(item.external_id.as_str()) {
            Some(&contact_id) => rows.push((*index, contact_id, item)),
            None => written.errors.push(ItemError::new(
                *index,
                Some("external_id".to_string()),
                format!(
                    "no contact has external_id {:?} (create it first, or set ingest.create_unknown_contacts)",
                    item.external_id.as_str()
                ),
            )),
        }
    }
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    match txn {
        // The events of a large batch whose contacts are already committed travel by COPY on
        // a connection of their own; an atomic batch stays in the transaction that created
        // its contacts, which sea-orm does not let COPY into.
        None if postgres && rows.len() >= COPY_MIN_ROWS => {
            insert_copy(db, workspace, &rows, now, &mut written).await?
        }
        Some(txn) if !written.errors.is_empty() => {
            txn.rollback().await?;
            return Ok(written);
        }
        txn => {
            let txn = match txn {
                Some(txn) => txn,
                None => crate::begin_write(db).await?,
            };
            if postgres {
                insert_unnest(&txn, workspace, &rows, now, &mut written).await?;
            } else {
                insert_multi_row(&txn, workspace, &rows, now, &mut written).await?;
            }
            txn.commit().await?;
        }
    }
    // The contacts of events that were stored: a repeat of a known event changes nothing.
    let repeated: HashSet<usize> = written.duplicates.iter().map(|d| d.index).collect();
    let stored: Vec<&Row<'_>> = rows
        .iter()
        .filter(|(index, _, _)| !repeated.contains(index))
        .collect();
    written.contacts = stored.iter().map(|(_, id, _)| ContactId(*id)).collect();
    written.contacts.dedup();
    let mut earliest: HashMap<(i64, &str), i64> = HashMap::new();
    for (_, contact, item) in stored {
        let at = item.occurred_at.unwrap_or(now).millis();
        earliest
            .entry((*contact, item.kind.as_str()))
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }
    written.earliest = earliest
        .into_iter()
        .map(|((contact, kind), occurred_at)| Earliest {
            contact: ContactId(contact),
            kind: kind.to_owned(),
            occurred_at,
        })
        .collect();
    Ok(written)
}

/// An event ready to write: its index in the batch, its contact and the input.
type Row<'a> = (usize, i64, &'a EventInput);

/// Inserts with multi-row `INSERT ... VALUES` statements (SQLite).
async fn insert_multi_row(
    txn: &DatabaseTransaction,
    workspace: WorkspaceId,
    rows: &[Row<'_>],
    now: Timestamp,
    written: &mut Written,
) -> Result<(), ContactsError> {
    let per_statement = rows_per_statement(txn.get_database_backend(), 9);
    for chunk in rows.chunks(per_statement) {
        let mut insert = Query::insert();
        insert.into_table(event::Entity).columns([
            event::Column::WorkspaceId,
            event::Column::ContactId,
            event::Column::Kind,
            event::Column::OccurredAt,
            event::Column::Amount,
            event::Column::Currency,
            event::Column::Properties,
            event::Column::IdempotencyKey,
            event::Column::ReceivedAt,
        ]);
        let mut keyed = 0;
        for (_, contact_id, item) in chunk {
            keyed += usize::from(item.idempotency_key.is_some());
            insert
                .values([
                    workspace.0.into(),
                    (*contact_id).into(),
                    item.kind.as_str().into(),
                    item.occurred_at.unwrap_or(now).millis().into(),
                    item.amount.into(),
                    item.currency.map(|c| c.as_str().to_string()).into(),
                    serde_json::Value::Object(item.properties.clone()).into(),
                    item.idempotency_key
                        .as_ref()
                        .map(|k| k.as_str().to_string())
                        .into(),
                    now.millis().into(),
                ])
                .map_err(|e| ContactsError::Db(sea_orm::DbErr::Custom(e.to_string())))?;
        }
        insert.on_conflict(
            OnConflict::columns([event::Column::WorkspaceId, event::Column::IdempotencyKey])
                .do_nothing()
                .to_owned(),
        );
        if keyed == 0 {
            let result = txn.execute(&insert).await?;
            written.accepted += result.rows_affected() as usize;
            continue;
        }
        // Only keyed rows can conflict; the keys that come back were stored.
        insert.returning(Query::returning().column(event::Column::IdempotencyKey));
        let stored = txn.query_all(&insert).await?;
        written.accepted += stored.len();
        note_duplicates(chunk, &stored_keys(&stored), written);
    }
    Ok(())
}

/// Inserts the whole batch with one `INSERT ... SELECT FROM UNNEST(arrays)` (PostgreSQL):
/// nine array parameters instead of nine per row, which PostgreSQL parses and plans once.
async fn insert_unnest(
    txn: &DatabaseTransaction,
    workspace: WorkspaceId,
    rows: &[Row<'_>],
    now: Timestamp,
    written: &mut Written,
) -> Result<(), ContactsError> {
    use sea_orm::sea_query::ArrayType;
    let array = |kind: ArrayType, values: Vec<sea_orm::Value>| {
        sea_orm::Value::Array(kind, Some(Box::new(values)))
    };
    let column = |f: &dyn Fn(&EventInput) -> sea_orm::Value| {
        rows.iter().map(|(_, _, item)| f(item)).collect::<Vec<_>>()
    };
    let values = vec![
        workspace.0.into(),
        now.millis().into(),
        array(
            ArrayType::BigInt,
            rows.iter()
                .map(|(_, contact, _)| (*contact).into())
                .collect(),
        ),
        array(ArrayType::String, column(&|e| e.kind.as_str().into())),
        array(
            ArrayType::BigInt,
            column(&|e| e.occurred_at.unwrap_or(now).millis().into()),
        ),
        // sea-query cannot bind NULL array elements, so missing values travel as values that
        // valid input never has (amounts are finite, currencies and keys non-empty) and
        // become NULL again in the statement.
        array(
            ArrayType::Double,
            column(&|e| e.amount.unwrap_or(f64::NAN).into()),
        ),
        array(
            ArrayType::String,
            column(&|e| {
                e.currency
                    .map_or(String::new(), |c| c.as_str().to_string())
                    .into()
            }),
        ),
        array(
            ArrayType::Json,
            column(&|e| serde_json::Value::Object(e.properties.clone()).into()),
        ),
        array(
            ArrayType::String,
            column(&|e| {
                e.idempotency_key
                    .as_ref()
                    .map_or("", |k| k.as_str())
                    .to_string()
                    .into()
            }),
        ),
    ];
    let statement = sea_orm::Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO events (workspace_id, contact_id, kind, occurred_at, amount, currency, properties, idempotency_key, received_at) \
         SELECT $1, t.contact_id, t.kind, t.occurred_at, NULLIF(t.amount, 'NaN'), NULLIF(t.currency, ''), \
                t.properties, NULLIF(t.idempotency_key, ''), $2 \
         FROM UNNEST($3::bigint[], $4::text[], $5::bigint[], $6::float8[], $7::text[], $8::jsonb[], $9::text[]) \
           AS t(contact_id, kind, occurred_at, amount, currency, properties, idempotency_key) \
         ON CONFLICT (workspace_id, idempotency_key) DO NOTHING \
         RETURNING idempotency_key",
        values,
    );
    let stored = txn.query_all_raw(statement).await?;
    written.accepted += stored.len();
    note_duplicates(rows, &stored_keys(&stored), written);
    Ok(())
}

/// The staging table a connection's COPY fills: the batch's own columns, emptied at every
/// commit. It lives as long as its connection, so most batches find it made.
const STAGING_TABLE: &str = "SET LOCAL client_min_messages = warning; \
     CREATE TEMPORARY TABLE IF NOT EXISTS event_staging ( \
       contact_id bigint NOT NULL, kind text NOT NULL, occurred_at bigint NOT NULL, \
       amount float8, currency text, properties jsonb NOT NULL, idempotency_key text \
     ) ON COMMIT DELETE ROWS";

/// Inserts the whole batch by COPY (binary format) into the staging table and one
/// `INSERT ... SELECT` from it with the idempotency check, in one transaction (PostgreSQL):
/// the rows cross as bytes that need no parsing, escaping or array parameters.
async fn insert_copy(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    rows: &[Row<'_>],
    now: Timestamp,
    written: &mut Written,
) -> Result<(), ContactsError> {
    use sea_orm::sqlx::{self, Acquire, Executor};
    let data = copy_binary(rows, now)?;
    let mut connection = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(sqlx_error)?;
    let mut txn = connection.begin().await.map_err(sqlx_error)?;
    txn.execute(sqlx::raw_sql(STAGING_TABLE))
        .await
        .map_err(sqlx_error)?;
    let mut copy = txn
        .copy_in_raw("COPY event_staging FROM STDIN (FORMAT binary)")
        .await
        .map_err(sqlx_error)?;
    if let Err(error) = copy.send(data).await {
        // The connection is left out of copy mode before it goes back to the pool.
        let _ = copy.abort("the event batch could not be sent").await;
        return Err(sqlx_error(error));
    }
    copy.finish().await.map_err(sqlx_error)?;
    let stored: Vec<Option<String>> = sqlx::query_scalar(
        "INSERT INTO events (workspace_id, contact_id, kind, occurred_at, amount, currency, properties, idempotency_key, received_at) \
         SELECT $1, contact_id, kind, occurred_at, amount, currency, properties, idempotency_key, $2 \
         FROM event_staging \
         ON CONFLICT (workspace_id, idempotency_key) DO NOTHING \
         RETURNING idempotency_key",
    )
    .bind(workspace.0)
    .bind(now.millis())
    .fetch_all(&mut *txn)
    .await
    .map_err(sqlx_error)?;
    txn.commit().await.map_err(sqlx_error)?;
    written.accepted += stored.len();
    note_duplicates(rows, &stored.into_iter().flatten().collect(), written);
    Ok(())
}

/// A driver error as sea-orm reports it, so callers see (and retry) it like any other.
fn sqlx_error(error: sea_orm::sqlx::Error) -> ContactsError {
    ContactsError::Db(sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(
        std::sync::Arc::new(error),
    )))
}

/// The rows in PostgreSQL's binary COPY format, in the staging table's column order: a
/// header, then per row its field count and each field as a length (-1 for NULL) and bytes.
fn copy_binary(rows: &[Row<'_>], now: Timestamp) -> Result<Vec<u8>, ContactsError> {
    fn field(data: &mut Vec<u8>, bytes: &[u8]) {
        // Fields are a batch's strings and JSON documents, far below 2 GiB.
        data.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        data.extend_from_slice(bytes);
    }
    const NULL: [u8; 4] = (-1i32).to_be_bytes();
    let mut data = Vec::with_capacity(19 + rows.len() * 160);
    data.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    data.extend_from_slice(&0i32.to_be_bytes()); // flags
    data.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    let mut json = Vec::new();
    for (_, contact_id, item) in rows {
        data.extend_from_slice(&7i16.to_be_bytes());
        field(&mut data, &contact_id.to_be_bytes());
        field(&mut data, item.kind.as_str().as_bytes());
        let occurred_at = item.occurred_at.unwrap_or(now);
        field(&mut data, &occurred_at.millis().to_be_bytes());
        match item.amount {
            Some(amount) => field(&mut data, &amount.to_be_bytes()),
            None => data.extend_from_slice(&NULL),
        }
        match item.currency {
            Some(currency) => field(&mut data, currency.as_str().as_bytes()),
            None => data.extend_from_slice(&NULL),
        }
        // jsonb's binary form: a version byte, then the document as text.
        json.clear();
        json.push(1);
        serde_json::to_writer(&mut json, &item.properties)
            .map_err(|e| ContactsError::Db(sea_orm::DbErr::Custom(e.to_string())))?;
        field(&mut data, &json);
        match &item.idempotency_key {
            Some(key) => field(&mut data, key.as_str().as_bytes()),
            None => data.extend_from_slice(&NULL),
        }
    }
    data.extend_from_slice(&(-1i16).to_be_bytes()); // trailer
    Ok(data)
}

/// The idempotency keys an insert's `RETURNING idempotency_key` answered.
fn stored_keys(stored: &[sea_orm::QueryResult]) -> HashSet<String> {
    stored
        .iter()
        .filter_map(|row| row.try_get_by_index::<Option<String>>(0).ok().flatten())
        .collect()
}

/// Keyed events whose key did not come back from the insert were already stored.
fn note_duplicates(rows: &[Row<'_>], stored_keys: &HashSet<String>, written: &mut Written) {
    for (index, _, item) in rows {
        if let Some(key) = &item.idempotency_key
            && !stored_keys.contains(key.as_str())
        {
            written.duplicates.push(Duplicate {
                index: *index,
                idempotency_key: key.clone(),
            });
        }
    }
}

/// A filter of a contact's event history.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kind: Option<EventKind>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// A page of a contact's events, newest first, before `before` (an event id from the previous
/// page's cursor).
pub async fn list_for_contact(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    contact_id: clarion_model::ContactId,
    external_id: &ExternalId,
    filter: &EventFilter,
    before: Option<EventId>,
    limit: u64,
) -> Result<Vec<Event>, ContactsError> {
    let mut query = event::Entity::find()
        .filter(event::Column::WorkspaceId.eq(workspace.0))
        .filter(event::Column::ContactId.eq(contact_id.0))
        .order_by_desc(event::Column::OccurredAt)
        .order_by_desc(event::Column::Id)
        .limit(limit);
    if let Some(kind) = &filter.kind {
        query = query.filter(event::Column::Kind.eq(kind.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(event::Column::OccurredAt.gte(since.millis()));
    }
    if let Some(until) = filter.until {
        query = query.filter(event::Column::OccurredAt.lt(until.millis()));
    }
    if let Some(before) = before {
        // Pages follow (occurred_at, id) descending; the cursor's event marks where to go on.
        let Some(anchor) = event::Entity::find_by_id(before.0).one(db).await? else {
            return Ok(Vec::new());
        };
        query = query.filter(
            sea_orm::Condition::any()
                .add(event::Column::OccurredAt.lt(anchor.occurred_at))
                .add(
                    sea_orm::Condition::all()
                        .add(event::Column::OccurredAt.eq(anchor.occurred_at))
                        .add(event::Column::Id.lt(anchor.id)),
                ),
        );
    }
    let rows = query.all(db).await?;
    rows.into_iter()
        .map(|row| event_from_row(row, external_id.clone()))
        .collect()
}

fn event_from_row(row: event::Model, external_id: ExternalId) -> Result<Event, ContactsError> {
    Ok(Event {
        id: EventId(row.id),
        external_id,
        kind: EventKind::parse(row.kind).map_err(corrupt("kind"))?,
        occurred_at: Timestamp::from_millis(row.occurred_at),
        amount: row.amount,
        currency: row
            .currency
            .as_deref()
            .map(Currency::parse)
            .transpose()
            .map_err(corrupt("currency"))?,
        properties: match row.properties {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
        idempotency_key: row
            .idempotency_key
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(corrupt("idempotency_key"))?,
        received_at: Timestamp::from_millis(row.received_at),
    })
}

/// Counts of stored rows, for reports and tests.
pub async fn count(db: &DatabaseConnection, workspace: WorkspaceId) -> Result<u64, ContactsError> {
    let count: Option<i64> = event::Entity::find()
        .select_only()
        .column_as(event::Column::Id.count(), "n")
        .filter(event::Column::WorkspaceId.eq(workspace.0))
        .into_tuple()
        .one(db)
        .await?;
    Ok(count.unwrap_or(0).max(0) as u64)
}
