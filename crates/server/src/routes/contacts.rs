//! `/api/v1/contacts`: batch upsert, read, patch, delete, list, and a contact's events.

use actix_web::{HttpResponse, web};
use clarion_model::{
    AttributeName, AttributeType, Contact, ContactId, ContactPatch, ContactUpsert, CountryCode,
    EmailAddress, ErrorCode, Event, EventId, EventKind, Role, Timestamp, WorkspaceId,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::{
    BatchQuery, combine_refusals, cursor, external_id_in_path, page_limit, parse_batch, parse_body,
    refuse_if_atomic,
};
use clarion_contacts::{
    self as store,
    attributes::AttributeTypes,
    contacts::{ContactFilter, PatchError, UpsertReport},
    events::EventFilter,
};

use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/contacts/batch", web::post().to(upsert_batch))
        .route("/contacts", web::get().to(list))
        .route("/contacts/{external_id}", web::get().to(get))
        .route("/contacts/{external_id}", web::patch().to(patch))
        .route("/contacts/{external_id}", web::delete().to(delete))
        .route("/contacts/{external_id}/events", web::get().to(events));
}

/// The body of `POST /contacts/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactBatch {
    /// Up to 10,000 contacts (see `ingest.max_batch`).
    #[schema(value_type = Vec<ContactUpsert>)]
    pub contacts: Vec<Box<RawValue>>,
}

/// Creates or updates up to 10,000 contacts by `external_id`.
///
/// Fields left out keep their stored value, `null` clears one, attributes are merged. Bad
/// items are reported by index and field, and the valid ones are stored, unless `atomic=true`.
#[utoipa::path(post, path = "/api/v1/contacts/batch", tag = "contacts",
    request_body = ContactBatch, params(BatchQuery),
    responses(
        (status = 200, description = "What was stored and what was refused", body = UpsertReport),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 413, body = ApiError), (status = 422, description = "atomic=true and an item was refused", body = ApiError)),
    security(("api_key" = [])))]
pub async fn upsert_batch(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<BatchQuery>,
    body: web::Json<ContactBatch>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let (items, errors) =
        parse_batch::<ContactUpsert>(&body.contacts, state.settings.ingest.max_batch, "contacts")?;
    refuse_if_atomic(&errors, query.atomic)?;
    let mut report = state
        .ingest
        .contacts(caller.workspace, items, query.atomic)
        .await?;
    report.errors = combine_refusals(errors, std::mem::take(&mut report.errors), query.atomic)?;
    report.rejected = report.errors.len();
    let counter = &state.metrics.ingested;
    counter
        .with_label_values(&["contact", "created"])
        .inc_by(report.created as u64);
    counter
        .with_label_values(&["contact", "updated"])
        .inc_by(report.updated as u64);
    counter
        .with_label_values(&["contact", "rejected"])
        .inc_by(report.rejected as u64);
    Ok(HttpResponse::Ok().json(report))
}

/// One contact.
#[utoipa::path(get, path = "/api/v1/contacts/{external_id}", tag = "contacts",
    params(("external_id" = clarion_model::ExternalId, Path, description = "The contact's external id")),
    responses((status = 200, body = Contact), (status = 401, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = external_id_in_path(&path)?;
    let contact = store::contacts::get(&state.db, caller.workspace, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("contact {:?}", id.as_str())))?;
    Ok(HttpResponse::Ok().json(contact))
}

/// Changes some fields of a contact: fields left out keep their value, `null` clears one,
/// attributes are merged (an attribute set to `null` is removed).
#[utoipa::path(patch, path = "/api/v1/contacts/{external_id}", tag = "contacts",
    params(("external_id" = clarion_model::ExternalId, Path, description = "The contact's external id")),
    request_body = ContactPatch,
    responses((status = 200, body = Contact), (status = 400, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)),
    security(("api_key" = [])))]
pub async fn patch(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let id = external_id_in_path(&path)?;
    let changes: ContactPatch = parse_body(body.get())?;
    match state
        .ingest
        .patch_contact(caller.workspace, &id, changes)
        .await
    {
        Ok(contact) => Ok(HttpResponse::Ok().json(contact)),
        Err(PatchError::NotFound) => Err(ApiError::not_found(format!("contact {:?}", id.as_str()))),
        Err(other) => Err(other.into()),
    }
}

/// Deletes a contact and all its events.
#[utoipa::path(delete, path = "/api/v1/contacts/{external_id}", tag = "contacts",
    params(("external_id" = clarion_model::ExternalId, Path, description = "The contact's external id")),
    responses((status = 204, description = "Deleted"), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let id = external_id_in_path(&path)?;
    if store::contacts::delete(&state.db, caller.workspace, &id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(format!("contact {:?}", id.as_str())))
    }
}

/// A page of contacts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactPage {
    pub contacts: Vec<Contact>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Lists contacts in creation order, a page at a time.
///
/// Filters: `country`, `city`, `email`, `email_domain`, and `attr.NAME=VALUE` for custom
/// attributes (the value is read as the attribute's type; a list attribute matches when it
/// contains the value). Several filters all apply.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts",
    params(
        ("cursor" = Option<super::cursor::Cursor>, Query, description = "From the previous page's next_cursor"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100"),
        ("country" = Option<clarion_model::CountryCode>, Query, description = "ISO 3166-1 alpha-2 code"),
        ("city" = Option<String>, Query),
        ("email" = Option<clarion_model::EmailAddress>, Query),
        ("email_domain" = Option<String>, Query),
    ),
    responses((status = 200, body = ContactPage), (status = 400, body = ApiError), (status = 401, body = ApiError)),
    security(("api_key" = [])))]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let ContactQuery {
        filter,
        after,
        limit,
    } = read_contact_query(&state, caller.workspace, query.into_inner()).await?;
    let contacts =
        store::contacts::list(&state.db, caller.workspace, &filter, after, limit).await?;
    let next_cursor = (contacts.len() as u64 == limit)
        .then(|| contacts.last().map(|c| cursor::encode(c.id.0)))
        .flatten();
    Ok(HttpResponse::Ok().json(ContactPage {
        contacts,
        next_cursor,
    }))
}

/// What `GET /contacts` was asked for: its filters and page.
pub(crate) struct ContactQuery {
    pub filter: ContactFilter,
    pub after: Option<ContactId>,
    pub limit: u64,
}

/// Reads the query parameters of a contact list (the API's, and the dashboard's search
/// form): each bad one is a 400 naming it; an attribute's value is read as its declared type.
pub(crate) async fn read_contact_query(
    state: &AppState,
    workspace: WorkspaceId,
    pairs: Vec<(String, String)>,
) -> Result<ContactQuery, ApiError> {
    let bad = |message: String| ApiError::new(ErrorCode::InvalidQuery, message);
    let mut filter = ContactFilter::default();
    let mut after = None;
    let mut limit = None;
    let mut attributes = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "cursor" => after = Some(ContactId(cursor::decode(&value)?)),
            "limit" => {
                limit = Some(
                    value
                        .parse()
                        .map_err(|_| bad(format!("limit must be a number, not {value:?}")))?,
                )
            }
            "country" => {
                filter.country =
                    Some(CountryCode::parse(&value).map_err(|e| bad(format!("country: {e}")))?)
            }
            "city" => filter.city = Some(value),
            "email" => {
                filter.email =
                    Some(EmailAddress::parse(value).map_err(|e| bad(format!("email: {e}")))?)
            }
            "email_domain" => filter.email_domain = Some(value),
            other => match other.strip_prefix("attr.") {
                Some(name) => attributes.push((
                    AttributeName::parse(name).map_err(|e| bad(format!("{other}: {e}")))?,
                    value,
                )),
                None => {
                    return Err(bad(format!(
                        "unknown query parameter `{other}` (use cursor, limit, country, city, email, email_domain or attr.NAME)"
                    )));
                }
            },
        }
    }
    let limit = page_limit(limit)?;
    let names = attributes.iter().map(|(name, _)| name.clone()).collect();
    let types = AttributeTypes::load(&state.db, workspace, names).await?;
    for (name, value) in attributes {
        let typed = match types.declared(&name) {
            None => {
                return Err(bad(format!(
                    "attr.{name}: no contact has an attribute named {name:?}"
                )));
            }
            Some(AttributeType::Number) => value
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .ok_or_else(|| bad(format!("attr.{name}: {value:?} is not a number")))?,
            Some(AttributeType::Boolean) => match value.as_str() {
                "true" => serde_json::Value::Bool(true),
                "false" => serde_json::Value::Bool(false),
                _ => {
                    return Err(bad(format!(
                        "attr.{name}: expected true or false, not {value:?}"
                    )));
                }
            },
            Some(_) => serde_json::Value::String(value),
        };
        filter.attributes.push((name, typed));
    }
    Ok(ContactQuery {
        filter,
        after,
        limit,
    })
}

/// A page of a contact's events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<u64>,
}

/// A contact's events, newest first.
#[utoipa::path(get, path = "/api/v1/contacts/{external_id}/events", tag = "contacts",
    params(
        ("external_id" = clarion_model::ExternalId, Path, description = "The contact's external id"),
        ("kind" = Option<clarion_model::EventKind>, Query, description = "Only events of this kind"),
        ("since" = Option<clarion_model::Timestamp>, Query, description = "RFC 3339; events at or after"),
        ("until" = Option<clarion_model::Timestamp>, Query, description = "RFC 3339; events before"),
        ("cursor" = Option<super::cursor::Cursor>, Query, description = "From the previous page's next_cursor"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100"),
    ),
    responses((status = 200, body = EventPage), (status = 400, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn events(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<EventQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = external_id_in_path(&path)?;
    let bad = |message: String| ApiError::new(ErrorCode::InvalidQuery, message);
    let query = query.into_inner();
    let filter = EventFilter {
        kind: query
            .kind
            .map(EventKind::parse)
            .transpose()
            .map_err(|e| bad(format!("kind: {e}")))?,
        since: query
            .since
            .as_deref()
            .map(Timestamp::parse)
            .transpose()
            .map_err(|e| bad(format!("since: {e}")))?,
        until: query
            .until
            .as_deref()
            .map(Timestamp::parse)
            .transpose()
            .map_err(|e| bad(format!("until: {e}")))?,
    };
    let before = query
        .cursor
        .as_deref()
        .map(cursor::decode)
        .transpose()?
        .map(EventId);
    let limit = page_limit(query.limit)?;
    let contact = store::contacts::get(&state.db, caller.workspace, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("contact {:?}", id.as_str())))?;
    let events = store::events::list_for_contact(
        &state.db,
        caller.workspace,
        contact.id,
        &id,
        &filter,
        before,
        limit,
    )
    .await?;
    let next_cursor = (events.len() as u64 == limit)
        .then(|| events.last().map(|e| cursor::encode(e.id.0)))
        .flatten();
    Ok(HttpResponse::Ok().json(EventPage {
        events,
        next_cursor,
    }))
}
