//! Triggered campaigns: a campaign's trigger on segment entry (save, read with its pending
//! sends and history, stop).

use actix_web::{HttpResponse, web};
use clarion_campaign::{
    CampaignId,
    trigger::{self, TriggerInput, TriggerView},
};
use clarion_model::Role;
use serde_json::value::RawValue;

use super::parse_body;
use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/campaigns/{id}/trigger", web::put().to(put))
        .route("/campaigns/{id}/trigger", web::get().to(get))
        .route("/campaigns/{id}/trigger", web::delete().to(stop));
}

/// Triggers a campaign on segment entry: each contact entering `segment` gets the campaign
/// `delay` after entering, if it still satisfies `condition` then; once, or again after
/// `reentry_after`. The first save switches the trigger on (the draft campaign starts
/// sending); members before that are sent only with `include_existing`. A later save changes
/// it. Pause and resume the campaign to hold its trigger.
#[utoipa::path(put, path = "/api/v1/campaigns/{id}/trigger", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    request_body = TriggerInput,
    responses((status = 200, body = TriggerView), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 409, description = "The campaign was launched, or its trigger was stopped", body = ApiError),
        (status = 422, description = "A field is invalid (the segment, a duration, a node of the condition), or the campaign has a schedule (`segment`); nothing was saved", body = ApiError)),
    security(("api_key" = [])))]
pub async fn put(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let input: TriggerInput = parse_body(body.get())?;
    let view = trigger::put(
        &state.db,
        &state.settings.sending,
        caller.workspace,
        CampaignId(path.into_inner()),
        &input,
        chrono::Utc::now(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// A campaign's trigger: its settings, state, counts of pending, sent, skipped and ignored
/// entries (with the reasons), the next pending sends and the latest decided ones.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/trigger", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = TriggerView), (status = 401, body = ApiError),
        (status = 404, description = "No such campaign, or it has no trigger", body = ApiError)),
    security(("api_key" = [])))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = path.into_inner();
    let view = trigger::get(&state.db, caller.workspace, CampaignId(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("a trigger of campaign {id}")))?;
    Ok(HttpResponse::Ok().json(view))
}

/// Stops a campaign's trigger for good: no more entries are read, pending sends are skipped;
/// deliveries already queued go on.
#[utoipa::path(delete, path = "/api/v1/campaigns/{id}/trigger", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = TriggerView), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "Stopped already", body = ApiError)),
    security(("api_key" = [])))]
pub async fn stop(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let id = CampaignId(path.into_inner());
    let view = trigger::stop(&state.db, caller.workspace, id, chrono::Utc::now()).await?;
    Ok(HttpResponse::Ok().json(view))
}
