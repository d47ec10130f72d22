//! The suppression list: addresses (email) and contacts (webhook, by external id) that are
//! never sent anything. Marketers manage it, viewers read it.

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use clarion_campaign::suppression::{self, Address, Entry, ImportReport, NewEntry, Source};
use clarion_model::{Channel, ErrorCode, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{cursor, page_limit, parse_body};
use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/suppressions", web::get().to(list))
        .route("/suppressions", web::post().to(add))
        .route("/suppressions/export", web::get().to(export))
        .route("/suppressions/import", web::post().to(import))
        .route("/suppressions/{channel}/{address}", web::get().to(get))
        .route(
            "/suppressions/{channel}/{address}",
            web::delete().to(remove),
        );
}

/// An address to put on the list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionInput {
    /// `email` (default) or `webhook`.
    #[serde(default)]
    #[schema(value_type = Option<Channel>)]
    pub channel: Option<Channel>,
    /// An email address, or a contact's external id on the webhook channel.
    #[schema(min_length = 1, max_length = 320, example = "ada@example.com")]
    pub address: String,
    /// Why it is suppressed; `added by hand` when left out.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// A page of the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionPage {
    pub suppressions: Vec<Entry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this channel's entries.
    #[param(value_type = Option<Channel>)]
    channel: Option<String>,
    /// From `next_cursor`.
    #[param(value_type = Option<super::cursor::Cursor>)]
    cursor: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChannelQuery {
    /// The channel (`email` unless given; a `channel` column in the file overrides it).
    #[param(value_type = Option<Channel>)]
    channel: Option<String>,
}

fn channel(value: Option<&str>) -> Result<Option<Channel>, ApiError> {
    value
        .map(|value| {
            Channel::parse(value).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("channel {value:?} is not one of email, webhook"),
                )
            })
        })
        .transpose()
}

fn path_address(channel_text: &str, address: &str) -> Result<Address, ApiError> {
    let channel = Channel::parse(channel_text).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!("channel {channel_text:?} is not one of email, webhook"),
        )
    })?;
    Address::parse(channel, address)
        .map_err(|message| ApiError::new(ErrorCode::InvalidQuery, format!("address: {message}")))
}

/// The list, oldest first; filter by `channel`, page with `cursor` and `limit`.
#[utoipa::path(get, path = "/api/v1/suppressions", tag = "suppressions",
    params(ListQuery),
    responses((status = 200, body = SuppressionPage), (status = 400, body = ApiError),
        (status = 401, body = ApiError)),
    security(("api_key" = [])))]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let channel = channel(query.channel.as_deref())?;
    let limit = page_limit(query.limit)?;
    let after = query.cursor.as_deref().map(cursor::decode).transpose()?;
    let suppressions =
        suppression::list(&state.db, caller.workspace, channel, after, limit).await?;
    let next_cursor = (suppressions.len() as u64 == limit)
        .then(|| suppressions.last().map(|e| cursor::encode(e.id)))
        .flatten();
    Ok(HttpResponse::Ok().json(SuppressionPage {
        suppressions,
        next_cursor,
    }))
}

/// Puts an address on the list (source `manual`). An address already there keeps its entry,
/// answered with 200; a new one is 201.
#[utoipa::path(post, path = "/api/v1/suppressions", tag = "suppressions",
    request_body = SuppressionInput,
    responses((status = 201, body = Entry), (status = 200, description = "Already on the list", body = Entry),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 422, description = "The address is not one of its channel, or the reason is too long", body = ApiError)),
    security(("api_key" = [])))]
pub async fn add(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Box<serde_json::value::RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let input: SuppressionInput = parse_body(body.get())?;
    let channel = input.channel.unwrap_or(Channel::Email);
    let address = Address::parse(channel, &input.address)
        .map_err(|message| ApiError::invalid_field("address", message))?;
    let reason = input.reason.unwrap_or_else(|| "added by hand".to_owned());
    suppression::check_reason(&reason).map_err(|m| ApiError::invalid_field("reason", m))?;
    let added = suppression::add(
        &state.db,
        caller.workspace,
        &[NewEntry {
            address: address.clone(),
            reason,
            source: Source::Manual,
        }],
    )
    .await?;
    let entry = suppression::get(&state.db, caller.workspace, &address)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("suppression of {}", address.as_str())))?;
    Ok(if added > 0 {
        HttpResponse::Created().json(entry)
    } else {
        HttpResponse::Ok().json(entry)
    })
}

/// One address's entry.
#[utoipa::path(get, path = "/api/v1/suppressions/{channel}/{address}", tag = "suppressions",
    params(("channel" = Channel, Path, description = "email or webhook"),
        ("address" = String, Path, description = "The email address, or the contact's external id")),
    responses((status = 200, body = Entry), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let (channel_text, address_text) = path.into_inner();
    let address = path_address(&channel_text, &address_text)?;
    let entry = suppression::get(&state.db, caller.workspace, &address)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("suppression of {}", address.as_str())))?;
    Ok(HttpResponse::Ok().json(entry))
}

/// Takes an address off the list; it receives messages again if its contact is subscribed.
#[utoipa::path(delete, path = "/api/v1/suppressions/{channel}/{address}", tag = "suppressions",
    params(("channel" = Channel, Path, description = "email or webhook"),
        ("address" = String, Path, description = "The email address, or the contact's external id")),
    responses((status = 204, description = "Removed"), (status = 400, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn remove(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let (channel_text, address_text) = path.into_inner();
    let address = path_address(&channel_text, &address_text)?;
    if suppression::remove(&state.db, caller.workspace, &address).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(format!(
            "suppression of {}",
            address.as_str()
        )))
    }
}

/// Imports a CSV file (`text/csv`): a header with `address` (or `email`) and optionally
/// `channel`, `reason` and `source`. Bad rows are reported with their line and skipped; the
/// others are added (source `import` unless the file says).
#[utoipa::path(post, path = "/api/v1/suppressions/import", tag = "suppressions",
    params(ChannelQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportReport), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError), (status = 415, body = ApiError),
        (status = 422, description = "No address column, or the body is not UTF-8", body = ApiError)),
    security(("api_key" = [])))]
pub async fn import(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ChannelQuery>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("text/csv") && !content_type.starts_with("text/plain") {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("send the list as text/csv, not {content_type:?}"),
        ));
    }
    let channel = channel(query.channel.as_deref())?.unwrap_or(Channel::Email);
    if let Err(error) = std::str::from_utf8(&body) {
        return Err(ApiError::invalid_field(
            "body",
            format!("the file is not UTF-8 (byte {})", error.valid_up_to()),
        ));
    }
    let report = suppression::import(&state.db, caller.workspace, channel, &body)
        .await
        .map_err(|e| ApiError::from_error(&e))?;
    Ok(HttpResponse::Ok().json(report))
}

/// The list as CSV (`channel,address,reason,source,created_at`), of one channel or all.
#[utoipa::path(get, path = "/api/v1/suppressions/export", tag = "suppressions",
    params(ChannelQuery),
    responses((status = 200, description = "The list as CSV", content_type = "text/csv", body = String),
        (status = 400, body = ApiError), (status = 401, body = ApiError)),
    security(("api_key" = [])))]
pub async fn export(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let channel = channel(query.channel.as_deref())?;
    let csv = suppression::export(&state.db, caller.workspace, channel).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"suppressions.csv\"",
        ))
        .body(csv))
}
