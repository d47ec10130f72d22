//! `/api/v1/spend`: marketing spend per campaign or channel, the numerator of customer
//! acquisition cost (`/api/v1/kpi/cac`). Marketers and admins record it, viewers read it.

use actix_web::{HttpResponse, web};
use clarion_kpi::spend::{self, Spend, SpendFilter, SpendInput};
use clarion_model::{Channel, ErrorCode, Role, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::{cursor, page_limit, parse_body};
use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/spend", web::post().to(create))
        .route("/spend", web::get().to(list))
        .route("/spend/{id}", web::get().to(get))
        .route("/spend/{id}", web::put().to(update))
        .route("/spend/{id}", web::delete().to(delete));
}

/// A page of spends.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpendPage {
    pub spend: Vec<Spend>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this campaign's spend.
    #[param(minimum = 1)]
    campaign_id: Option<i64>,
    /// Only this channel's spend (not the spend of campaigns sent on it).
    #[param(value_type = Option<Channel>)]
    channel: Option<String>,
    /// Only spend in this currency.
    #[param(pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
    /// Only spend whose period ends after this moment (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Only spend whose period starts before this moment (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// From `next_cursor`.
    #[param(value_type = Option<super::cursor::Cursor>)]
    cursor: Option<String>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

fn query_time(field: &str, value: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    value
        .map(|v| {
            Timestamp::parse(v)
                .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, format!("{field}: {e}")))
        })
        .transpose()
}

/// Records what was paid for a campaign (`campaign_id`) or a channel (`channel`) over a
/// period `[from, to)`: an amount greater than 0 in an ISO 4217 currency, exact to the
/// currency's decimal places.
#[utoipa::path(post, path = "/api/v1/spend", tag = "kpi",
    request_body = SpendInput,
    responses((status = 201, body = Spend),
        (status = 422, description = "A field is refused (details name it): amount not above 0 or with too many decimals, a currency ISO 4217 does not list, `to` not after `from`, an unknown campaign, both or neither of campaign_id and channel; nothing was stored", body = ApiError)),
    security(("api_key" = [])))]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let input: SpendInput = parse_body(body.get())?;
    let spend = spend::create(&state.db, caller.workspace, input).await?;
    Ok(HttpResponse::Created().json(spend))
}

/// The workspace's spend, oldest first; filter by campaign, channel, currency and period,
/// page with `cursor` and `limit`.
#[utoipa::path(get, path = "/api/v1/spend", tag = "kpi",
    params(ListQuery),
    responses((status = 200, body = SpendPage),
        (status = 400, description = "A filter does not read: a campaign_id below 1, a channel other than email or webhook, a currency that is not three capital letters, a time that is not RFC 3339, a bad cursor or limit", body = ApiError)),
    security(("api_key" = [])))]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let channel = query
        .channel
        .as_deref()
        .map(|value| {
            Channel::parse(value).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("channel {value:?} is not one of email, webhook"),
                )
            })
        })
        .transpose()?;
    if let Some(id) = query.campaign_id.filter(|id| *id < 1) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("campaign_id {id} is not a campaign id (ids start at 1)"),
        ));
    }
    if let Some(currency) = query.currency.as_deref()
        && !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("currency {currency:?} is not an ISO 4217 code (three capital letters)"),
        ));
    }
    let filter = SpendFilter {
        campaign_id: query.campaign_id,
        channel,
        currency: query.currency.clone(),
        from: query_time("from", query.from.as_deref())?,
        to: query_time("to", query.to.as_deref())?,
    };
    let limit = page_limit(query.limit)?;
    let after = query.cursor.as_deref().map(cursor::decode).transpose()?;
    let spend = spend::list(&state.db, caller.workspace, &filter, after, limit).await?;
    let next_cursor = (spend.len() as u64 == limit)
        .then(|| spend.last().map(|s| cursor::encode(s.id)))
        .flatten();
    Ok(HttpResponse::Ok().json(SpendPage { spend, next_cursor }))
}

/// One spend.
#[utoipa::path(get, path = "/api/v1/spend/{id}", tag = "kpi",
    params(("id" = i64, Path, description = "The spend's id")),
    responses((status = 200, body = Spend), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = path.into_inner();
    let spend = spend::get(&state.db, caller.workspace, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("spend {id}")))?;
    Ok(HttpResponse::Ok().json(spend))
}

/// Replaces a spend's amount, currency, period, campaign or channel and label.
#[utoipa::path(put, path = "/api/v1/spend/{id}", tag = "kpi",
    params(("id" = i64, Path, description = "The spend's id")),
    request_body = SpendInput,
    responses((status = 200, body = Spend), (status = 404, body = ApiError),
        (status = 422, description = "A field is refused (details name it), as when recording; nothing was changed", body = ApiError)),
    security(("api_key" = [])))]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let id = path.into_inner();
    let input: SpendInput = parse_body(body.get())?;
    let spend = spend::update(&state.db, caller.workspace, id, input)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("spend {id}")))?;
    Ok(HttpResponse::Ok().json(spend))
}

/// Deletes a spend.
#[utoipa::path(delete, path = "/api/v1/spend/{id}", tag = "kpi",
    params(("id" = i64, Path, description = "The spend's id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let id = path.into_inner();
    if spend::delete(&state.db, caller.workspace, id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(format!("spend {id}")))
    }
}
