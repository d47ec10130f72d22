//! Contacts: batch upsert by external id, read, patch, delete, list with filters.

use std::collections::{BTreeSet, HashMap};

use clarion_model::{
    Attributes, Contact, ContactId, ContactPatch, ContactUpsert, CountryCode, EmailAddress,
    ExternalId, Locale, PhoneNumber, ShortText, SubscriptionStatus, Subscriptions, TimeZone,
    Timestamp, WorkspaceId, entity::contact,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, OnConflict, Query, SimpleExpr},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    ContactsError, attributes::AttributeTypes, batch::ItemError, corrupt, rows_per_statement,
};

/// The outcome of a contact batch.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct UpsertReport {
    pub created: usize,
    pub updated: usize,
    pub rejected: usize,
    /// Why each rejected item was rejected.
    pub errors: Vec<ItemError>,
    /// The contacts created or updated, so that what listens to ingestion can follow them.
    #[serde(skip)]
    pub contacts: Vec<ContactId>,
}

/// Creates or updates the contacts of a batch. Items with errors are skipped and reported;
/// with `atomic`, any error stores nothing.
pub async fn upsert_batch(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    items: Vec<(usize, ContactUpsert)>,
    atomic: bool,
) -> Result<UpsertReport, ContactsError> {
    let mut report = UpsertReport::default();
    let mut seen: HashMap<ExternalId, usize> = HashMap::with_capacity(items.len());
    let names: BTreeSet<_> = items
        .iter()
        .flat_map(|(_, item)| item.attributes.keys().cloned())
        .collect();
    let mut types = AttributeTypes::load(db, workspace, names).await?;
    let mut accepted = Vec::with_capacity(items.len());
    for (index, item) in items {
        if let Some(first) = seen.get(&item.external_id) {
            report.errors.push(ItemError::new(
                index,
                Some("external_id".to_string()),
                format!(
                    "external_id {:?} appears twice in the batch (first at index {first})",
                    item.external_id.as_str()
                ),
            ));
            continue;
        }
        seen.insert(item.external_id.clone(), index);
        match check_attributes(&mut types, &item.attributes) {
            Ok(()) => accepted.push(item.into_parts()),
            Err((field, message)) => {
                report
                    .errors
                    .push(ItemError::new(index, Some(field), message))
            }
        }
    }
    report.rejected = report.errors.len();
    if atomic && !report.errors.is_empty() {
        return Ok(report);
    }

    // Rows are written in external-id order, so concurrent batches lock them in one order.
    accepted.sort_by(|a, b| a.0.cmp(&b.0));
    let now = Timestamp::now();
    let mut attempt = 1;
    let written = loop {
        match write_upserts(db, workspace, &types, &accepted, now).await {
            Err(ContactsError::Db(ref error)) if attempt < 3 && crate::is_retryable(error) => {
                tracing::warn!(attempt, "contact batch hit a deadlock; running it again");
                attempt += 1;
            }
            other => break other?,
        }
    };
    (report.created, report.updated, report.contacts) = written;
    Ok(report)
}

/// Merges the patches into the stored contacts and writes them in one transaction; returns
/// how many were created and updated, and the ids of all of them.
async fn write_upserts(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    types: &AttributeTypes,
    accepted: &[(ExternalId, ContactPatch)],
    now: Timestamp,
) -> Result<(usize, usize, Vec<ContactId>), ContactsError> {
    let txn = crate::begin_write(db).await?;
    types.save_new(&txn, workspace).await?;
    let ids: Vec<&ExternalId> = accepted.iter().map(|(id, _)| id).collect();
    let mut existing = load_by_external_ids(&txn, workspace, &ids).await?;
    let (mut created, mut updated) = (0, 0);
    let mut rows = Vec::with_capacity(accepted.len());
    for (external_id, patch) in accepted {
        let mut contact = match existing.remove(external_id) {
            Some(contact) => {
                updated += 1;
                contact
            }
            None => {
                created += 1;
                Contact::new(external_id.clone(), now)
            }
        };
        contact.apply(patch.clone(), now);
        rows.push(contact);
    }
    write_rows(&txn, workspace, &rows).await?;
    let external_ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
    let stored = select_ids(&txn, workspace, &external_ids).await?;
    txn.commit().await?;
    Ok((
        created,
        updated,
        stored.into_values().map(ContactId).collect(),
    ))
}

fn check_attributes(
    types: &mut AttributeTypes,
    attributes: &Attributes,
) -> Result<(), (String, String)> {
    for (name, value) in attributes {
        types
            .check(name, value)
            .map_err(|e| (format!("attributes.{name}"), e.to_string()))?;
    }
    Ok(())
}

/// Why a patch was refused.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("no contact with that external_id")]
    NotFound,
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Store(#[from] ContactsError),
}

impl clarion_model::Coded for PatchError {
    fn code(&self) -> clarion_model::ErrorCode {
        match self {
            PatchError::NotFound => clarion_model::ErrorCode::NotFound,
            PatchError::Invalid { .. } => clarion_model::ErrorCode::ValidationFailed,
            PatchError::Store(store) => store.code(),
        }
    }

    fn details(&self) -> Vec<clarion_model::FieldError> {
        match self {
            PatchError::Invalid { field, message } => {
                vec![clarion_model::FieldError::field(field, message.as_str())]
            }
            _ => Vec::new(),
        }
    }
}

/// Applies a patch to one contact and returns it as stored.
pub async fn patch(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    external_id: &ExternalId,
    patch: ContactPatch,
) -> Result<Contact, PatchError> {
    let names = patch.attributes.keys().cloned().collect();
    let txn = crate::begin_write(db).await.map_err(ContactsError::from)?;
    let mut types = AttributeTypes::load(&txn, workspace, names).await?;
    check_attributes(&mut types, &patch.attributes)
        .map_err(|(field, message)| PatchError::Invalid { field, message })?;
    let mut contact = load_by_external_ids(&txn, workspace, &[external_id])
        .await?
        .remove(external_id)
        .ok_or(PatchError::NotFound)?;
    types.save_new(&txn, workspace).await?;
    contact.apply(patch, Timestamp::now());
    write_rows(&txn, workspace, std::slice::from_ref(&contact)).await?;
    txn.commit().await.map_err(ContactsError::from)?;
    Ok(contact)
}

/// The workspace and external id of the contact with internal id `id`, if it exists.
pub async fn external_id_by_id(
    db: &impl ConnectionTrait,
    id: ContactId,
) -> Result<Option<(WorkspaceId, ExternalId)>, ContactsError> {
    let row: Option<(i64, String)> = contact::Entity::find()
        .select_only()
        .columns([contact::Column::WorkspaceId, contact::Column::ExternalId])
        .filter(contact::Column::Id.eq(id.0))
        .into_tuple()
        .one(db)
        .await?;
    row.map(|(workspace, external_id)| {
        ExternalId::parse(external_id)
            .map(|external_id| (WorkspaceId(workspace), external_id))
            .map_err(corrupt("external_id"))
    })
    .transpose()
}

/// Marks a contact unsubscribed from email (the unsubscribe link). Returns whether its
/// status changed: an unsubscribed contact stays as it is, and so does one that complained,
/// since a complaint says more than an unsubscribe.
pub async fn unsubscribe_email(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    id: ContactId,
) -> Result<bool, ContactsError> {
    let result = contact::Entity::update_many()
        .col_expr(
            contact::Column::EmailStatus,
            Expr::value(SubscriptionStatus::Unsubscribed.as_str()),
        )
        .col_expr(
            contact::Column::UpdatedAt,
            Expr::value(Timestamp::now().millis()),
        )
        .filter(contact::Column::WorkspaceId.eq(workspace.0))
        .filter(contact::Column::Id.eq(id.0))
        .filter(contact::Column::EmailStatus.is_not_in([
            SubscriptionStatus::Unsubscribed.as_str(),
            SubscriptionStatus::Complained.as_str(),
        ]))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Sets the email status of contacts to `status` (`bounced` after a hard bounce or too many
/// soft ones, `complained` after a spam report). Returns the contacts whose status changed:
/// a complaint is never downgraded to a bounce, and a status is not written twice.
pub async fn mark_email(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    ids: &[ContactId],
    status: SubscriptionStatus,
) -> Result<Vec<ContactId>, ContactsError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keep: &[&str] = match status {
        SubscriptionStatus::Bounced => &[
            SubscriptionStatus::Bounced.as_str(),
            SubscriptionStatus::Complained.as_str(),
        ],
        other => &[other.as_str()],
    };
    let update = Query::update()
        .table("contacts")
        .value("email_status", status.as_str())
        .value("updated_at", Timestamp::now().millis())
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("id").is_in(ids.iter().map(|id| id.0)))
        .and_where(Expr::col("email_status").is_not_in(keep.iter().copied()))
        .returning_col("id")
        .to_owned();
    db.query_all(&update)
        .await?
        .iter()
        .map(|row| Ok(ContactId(row.try_get("", "id")?)))
        .collect()
}

/// The contacts of `workspace` with one of `emails` (as stored: the domain lower-case), with
/// their external id and address. An address may belong to several contacts.
pub async fn by_emails(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    emails: &[&str],
) -> Result<Vec<(ContactId, ExternalId, String)>, ContactsError> {
    if emails.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, String, Option<String>)> = contact::Entity::find()
        .select_only()
        .columns([
            contact::Column::Id,
            contact::Column::ExternalId,
            contact::Column::Email,
        ])
        .filter(contact::Column::WorkspaceId.eq(workspace.0))
        .filter(contact::Column::Email.is_in(emails.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    rows.into_iter()
        .filter_map(|(id, external_id, email)| Some((id, external_id, email?)))
        .map(|(id, external_id, email)| {
            ExternalId::parse(external_id)
                .map(|external_id| (ContactId(id), external_id, email))
                .map_err(corrupt("external_id"))
        })
        .collect()
}

/// One contact by external id.
pub async fn get(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    external_id: &ExternalId,
) -> Result<Option<Contact>, ContactsError> {
    Ok(load_by_external_ids(db, workspace, &[external_id])
        .await?
        .remove(external_id))
}

/// Deletes a contact and, with it, its events. Returns whether there was one.
pub async fn delete(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    external_id: &ExternalId,
) -> Result<bool, ContactsError> {
    let txn = crate::begin_write(db).await?;
    let found = select_ids(&txn, workspace, &[external_id.as_str()]).await?;
    let Some(&id) = found.get(external_id.as_str()) else {
        txn.rollback().await?;
        return Ok(false);
    };
    // What was derived from the contact goes with it (its events by foreign key): the
    // segments it is in lose a member, its stays and computed traits are removed.
    txn.execute(
        &Query::update()
            .table("segments")
            .value("member_count", Expr::col("member_count").sub(1))
            .and_where(
                Expr::col("id").in_subquery(
                    Query::select()
                        .column("segment_id")
                        .from("segment_memberships")
                        .and_where(Expr::col("contact_id").eq(id))
                        .and_where(Expr::col("exited_at").is_null())
                        .to_owned(),
                ),
            )
            .to_owned(),
    )
    .await?;
    for table in ["segment_memberships", "contact_traits", "contact_interests"] {
        txn.execute(
            &Query::delete()
                .from_table(table)
                .and_where(Expr::col("contact_id").eq(id))
                .to_owned(),
        )
        .await?;
    }
    let result = contact::Entity::delete_many()
        .filter(contact::Column::WorkspaceId.eq(workspace.0))
        .filter(contact::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(result.rows_affected > 0)
}

/// A filter of `GET /contacts`: built-in fields by equality, custom attributes by value (a
/// list attribute matches when it contains the value).
#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    pub country: Option<CountryCode>,
    pub city: Option<String>,
    pub email: Option<EmailAddress>,
    pub email_domain: Option<String>,
    pub attributes: Vec<(clarion_model::AttributeName, serde_json::Value)>,
}

/// A page of contacts in id order after `after` (a contact id from the previous page's cursor).
pub async fn list(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    filter: &ContactFilter,
    after: Option<ContactId>,
    limit: u64,
) -> Result<Vec<Contact>, ContactsError> {
    let backend = db.get_database_backend();
    let mut query = contact::Entity::find()
        .filter(contact::Column::WorkspaceId.eq(workspace.0))
        .order_by_asc(contact::Column::Id)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(contact::Column::Id.gt(after.0));
    }
    if let Some(country) = filter.country {
        query = query.filter(contact::Column::Country.eq(country.as_str()));
    }
    if let Some(city) = &filter.city {
        query = query.filter(contact::Column::City.eq(city.as_str()));
    }
    if let Some(email) = &filter.email {
        query = query.filter(contact::Column::Email.eq(email.as_str()));
    }
    if let Some(domain) = &filter.email_domain {
        query = query.filter(contact::Column::EmailDomain.eq(domain.to_ascii_lowercase()));
    }
    for (name, value) in &filter.attributes {
        query = query.filter(attribute_matches(backend, name.as_str(), value));
    }
    query
        .all(db)
        .await?
        .into_iter()
        .map(contact_from_row)
        .collect()
}

/// `attributes[name]` equals `value`, or contains it when the attribute is a list. The name
/// and value are bound parameters, never spliced into the SQL.
fn attribute_matches(backend: DbBackend, name: &str, value: &serde_json::Value) -> SimpleExpr {
    match backend {
        DbBackend::Postgres => {
            let scalar = serde_json::json!({ name: value });
            let in_list = serde_json::json!({ name: [value] });
            Expr::cust_with_values("(attributes @> $1 OR attributes @> $2)", [scalar, in_list])
        }
        _ => {
            let path = format!("$.{name}");
            let bound: sea_orm::Value = match value {
                serde_json::Value::Bool(b) => i64::from(*b).into(),
                serde_json::Value::Number(n) => n.as_f64().unwrap_or_default().into(),
                serde_json::Value::String(s) => s.clone().into(),
                other => other.to_string().into(),
            };
            Expr::cust_with_values(
                "(json_extract(attributes, ?) = ? OR EXISTS (SELECT 1 FROM json_each(attributes, ?) WHERE json_each.type = 'text' AND json_each.value = ?))",
                [path.clone().into(), bound.clone(), path.into(), bound],
            )
        }
    }
}

/// Contact ids for external ids; with `create_missing`, contacts that do not exist yet are
/// created empty. Returns the ids found or created.
pub async fn resolve_ids(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    external_ids: &[&str],
    create_missing: bool,
) -> Result<HashMap<String, i64>, ContactsError> {
    let mut found = select_ids(db, workspace, external_ids).await?;
    if create_missing && found.len() < external_ids.len() {
        // Sorted: concurrent batches then create overlapping contacts in the same order.
        let mut missing: Vec<&str> = external_ids
            .iter()
            .copied()
            .filter(|id| !found.contains_key(*id))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let now = Timestamp::now().millis();
        let empty = serde_json::Value::Object(Default::default());
        let per_statement = rows_per_statement(db.get_database_backend(), 7);
        for chunk in missing.chunks(per_statement) {
            let mut insert = Query::insert();
            insert.into_table(contact::Entity).columns([
                contact::Column::WorkspaceId,
                contact::Column::ExternalId,
                contact::Column::Attributes,
                contact::Column::EmailStatus,
                contact::Column::WebhookStatus,
                contact::Column::CreatedAt,
                contact::Column::UpdatedAt,
            ]);
            for id in chunk {
                insert
                    .values([
                        workspace.0.into(),
                        (*id).into(),
                        empty.clone().into(),
                        "subscribed".into(),
                        "subscribed".into(),
                        now.into(),
                        now.into(),
                    ])
                    .map_err(|e| ContactsError::Db(sea_orm::DbErr::Custom(e.to_string())))?;
            }
            insert.on_conflict(
                OnConflict::columns([contact::Column::WorkspaceId, contact::Column::ExternalId])
                    .do_nothing()
                    .to_owned(),
            );
            db.execute(&insert).await?;
        }
        // Read back rather than RETURNING: a concurrent batch may have created some of them.
        found.extend(select_ids(db, workspace, &missing).await?);
    }
    Ok(found)
}

/// `external_id` is one of `ids`. On PostgreSQL this is a semi-join against `UNNEST($1)`, one
/// array parameter: a prepared `IN ($1, ..., $1000)` or `= ANY($1)` gets a generic plan after
/// five runs that scans the table and tests every row against the whole list (one to two
/// seconds at 20,000 contacts), while the join keeps using the unique index.
fn external_id_in<'a>(backend: DbBackend, ids: impl Iterator<Item = &'a str>) -> SimpleExpr {
    match backend {
        DbBackend::Postgres => {
            let ids: Vec<sea_orm::Value> = ids.map(|id| id.to_string().into()).collect();
            Expr::cust_with_values(
                r#""contacts"."external_id" IN (SELECT UNNEST($1::text[]))"#,
                [sea_orm::Value::Array(
                    sea_orm::sea_query::ArrayType::String,
                    Some(Box::new(ids)),
                )],
            )
        }
        _ => contact::Column::ExternalId.is_in(ids),
    }
}

async fn select_ids(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    external_ids: &[&str],
) -> Result<HashMap<String, i64>, ContactsError> {
    let mut found = HashMap::with_capacity(external_ids.len());
    for chunk in external_ids.chunks(1_000) {
        let rows: Vec<(i64, String)> = contact::Entity::find()
            .select_only()
            .columns([contact::Column::Id, contact::Column::ExternalId])
            .filter(contact::Column::WorkspaceId.eq(workspace.0))
            .filter(external_id_in(
                db.get_database_backend(),
                chunk.iter().copied(),
            ))
            .into_tuple()
            .all(db)
            .await?;
        found.extend(rows.into_iter().map(|(id, external_id)| (external_id, id)));
    }
    Ok(found)
}

async fn load_by_external_ids(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    external_ids: &[&ExternalId],
) -> Result<HashMap<ExternalId, Contact>, ContactsError> {
    let mut found = HashMap::with_capacity(external_ids.len());
    for chunk in external_ids.chunks(1_000) {
        let rows = contact::Entity::find()
            .filter(contact::Column::WorkspaceId.eq(workspace.0))
            .filter(external_id_in(
                db.get_database_backend(),
                chunk.iter().map(|id| id.as_str()),
            ))
            .all(db)
            .await?;
        for row in rows {
            let contact = contact_from_row(row)?;
            found.insert(contact.external_id.clone(), contact);
        }
    }
    Ok(found)
}

const WRITTEN_COLUMNS: [contact::Column; 18] = [
    contact::Column::WorkspaceId,
    contact::Column::ExternalId,
    contact::Column::Email,
    contact::Column::EmailDomain,
    contact::Column::Phone,
    contact::Column::FirstName,
    contact::Column::LastName,
    contact::Column::Locale,
    contact::Column::TimeZone,
    contact::Column::Country,
    contact::Column::Region,
    contact::Column::City,
    contact::Column::Attributes,
    contact::Column::EmailStatus,
    contact::Column::WebhookStatus,
    contact::Column::CreatedAt,
    contact::Column::UpdatedAt,
    contact::Column::Id,
];

/// Writes whole contacts with multi-row upserts; `created_at` of existing rows is kept.
async fn write_rows(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    contacts: &[Contact],
) -> Result<(), ContactsError> {
    // Id is last in WRITTEN_COLUMNS so it can be left out: new rows get theirs from the database.
    let columns = &WRITTEN_COLUMNS[..WRITTEN_COLUMNS.len() - 1];
    let per_statement = rows_per_statement(db.get_database_backend(), columns.len());
    for chunk in contacts.chunks(per_statement) {
        let mut insert = Query::insert();
        insert
            .into_table(contact::Entity)
            .columns(columns.iter().copied());
        for c in chunk {
            let text = |t: &Option<ShortText>| t.as_ref().map(|t| t.as_str().to_string());
            insert
                .values([
                    workspace.0.into(),
                    c.external_id.as_str().into(),
                    c.email.as_ref().map(|e| e.as_str().to_string()).into(),
                    c.email.as_ref().map(|e| e.domain().to_string()).into(),
                    c.phone.as_ref().map(|p| p.as_str().to_string()).into(),
                    text(&c.first_name).into(),
                    text(&c.last_name).into(),
                    c.locale.as_ref().map(|l| l.as_str().to_string()).into(),
                    c.time_zone.map(|z| z.name().to_string()).into(),
                    c.country.map(|k| k.as_str().to_string()).into(),
                    text(&c.region).into(),
                    text(&c.city).into(),
                    attributes_json(&c.attributes).into(),
                    c.subscriptions.email.as_str().into(),
                    c.subscriptions.webhook.as_str().into(),
                    c.created_at.millis().into(),
                    c.updated_at.millis().into(),
                ])
                .map_err(|e| ContactsError::Db(sea_orm::DbErr::Custom(e.to_string())))?;
        }
        insert.on_conflict(
            OnConflict::columns([contact::Column::WorkspaceId, contact::Column::ExternalId])
                .update_columns(columns.iter().copied().filter(|c| {
                    !matches!(
                        c,
                        contact::Column::WorkspaceId
                            | contact::Column::ExternalId
                            | contact::Column::CreatedAt
                    )
                }))
                .to_owned(),
        );
        db.execute(&insert).await?;
    }
    Ok(())
}

fn attributes_json(attributes: &Attributes) -> serde_json::Value {
    serde_json::Value::Object(
        attributes
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect(),
    )
}

fn optional<T>(
    value: Option<String>,
    column: &'static str,
    parse: impl Fn(String) -> Result<T, clarion_model::ModelError>,
) -> Result<Option<T>, ContactsError> {
    value.map(parse).transpose().map_err(corrupt(column))
}

/// A stored row as a [`Contact`]; values were checked on the way in, so a failure here means
/// the row was changed behind Clarion's back.
pub(crate) fn contact_from_row(row: contact::Model) -> Result<Contact, ContactsError> {
    let attributes: Attributes = match row.attributes {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    clarion_model::AttributeName::parse(k).map_err(corrupt("attributes"))?,
                    v,
                ))
            })
            .collect::<Result<_, ContactsError>>()?,
        _ => Attributes::new(),
    };
    Ok(Contact {
        id: ContactId(row.id),
        external_id: ExternalId::parse(row.external_id).map_err(corrupt("external_id"))?,
        email: optional(row.email, "email", EmailAddress::parse)?,
        phone: optional(row.phone, "phone", |v| PhoneNumber::parse(&v))?,
        first_name: optional(row.first_name, "first_name", ShortText::parse)?,
        last_name: optional(row.last_name, "last_name", ShortText::parse)?,
        locale: optional(row.locale, "locale", |v| Locale::parse(&v))?,
        time_zone: optional(row.time_zone, "time_zone", |v| TimeZone::parse(&v))?,
        country: optional(row.country, "country", |v| CountryCode::parse(&v))?,
        region: optional(row.region, "region", ShortText::parse)?,
        city: optional(row.city, "city", ShortText::parse)?,
        attributes,
        subscriptions: Subscriptions {
            email: SubscriptionStatus::parse(&row.email_status).map_err(corrupt("email_status"))?,
            webhook: SubscriptionStatus::parse(&row.webhook_status)
                .map_err(corrupt("webhook_status"))?,
        },
        created_at: Timestamp::from_millis(row.created_at),
        updated_at: Timestamp::from_millis(row.updated_at),
    })
}
