//! Scheduling a campaign: the preview of fire times, a campaign's schedule (save, read,
//! cancel, pause, resume) with its history of firings, and the runs of a campaign.

use actix_web::{HttpResponse, web};
use clarion_campaign::{
    CampaignId, control,
    control::Run,
    schedule::{self, PreviewAnswer, PreviewInput, ScheduleInput, store::ScheduleView},
};
use clarion_model::Role;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::parse_body;
use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/schedules/preview", web::post().to(preview))
        .route("/campaigns/{id}/schedule", web::put().to(put))
        .route("/campaigns/{id}/schedule", web::get().to(get))
        .route("/campaigns/{id}/schedule", web::delete().to(cancel))
        .route("/campaigns/{id}/schedule/pause", web::post().to(pause))
        .route("/campaigns/{id}/schedule/resume", web::post().to(resume))
        .route("/campaigns/{id}/runs", web::get().to(runs));
}

/// The next fire times of a schedule before it is saved: `cron` (or `at`), `time_zone`,
/// `from` (default now) and `count` (default 5). Fire times are UTC, RFC 3339.
#[utoipa::path(post, path = "/api/v1/schedules/preview", tag = "scheduling",
    request_body = PreviewInput,
    responses((status = 200, body = PreviewAnswer), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 422, description = "A field is invalid (the cron position, the time zone, ...)", body = ApiError)),
    security(("api_key" = [])))]
pub async fn preview(
    caller: Caller,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let input: PreviewInput = parse_body(body.get())?;
    Ok(HttpResponse::Ok().json(schedule::preview(&input, chrono::Utc::now())?))
}

/// Schedules a campaign: once `at` a moment, or recurring by `cron` in `time_zone` (with an
/// optional `starts_at`, `ends_at`, `max_runs` and `catch_up`). Replaces the campaign's
/// schedule until a one-off one fired.
#[utoipa::path(put, path = "/api/v1/campaigns/{id}/schedule", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    request_body = ScheduleInput,
    responses((status = 200, body = ScheduleView), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 409, description = "The campaign is cancelled, or its one-off schedule fired already", body = ApiError),
        (status = 422, description = "A field is invalid, or the campaign has a trigger (`cron` or `at`); nothing was saved", body = ApiError)),
    security(("api_key" = [])))]
pub async fn put(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let input: ScheduleInput = parse_body(body.get())?;
    let view = schedule::store::put(
        &state.db,
        caller.workspace,
        CampaignId(path.into_inner()),
        &input,
        chrono::Utc::now(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// A campaign's schedule: its state, next fire times, and every firing with its run or the
/// reason it was skipped or failed.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/schedule", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = ScheduleView), (status = 401, body = ApiError),
        (status = 404, description = "No such campaign, or it has no schedule", body = ApiError)),
    security(("api_key" = [])))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = path.into_inner();
    let view = schedule::store::get(&state.db, caller.workspace, CampaignId(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("a schedule of campaign {id}")))?;
    Ok(HttpResponse::Ok().json(view))
}

/// Cancels a campaign's future firings; runs already launched go on.
#[utoipa::path(delete, path = "/api/v1/campaigns/{id}/schedule", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = ScheduleView), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "Completed or cancelled already", body = ApiError)),
    security(("api_key" = [])))]
pub async fn cancel(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let id = CampaignId(path.into_inner());
    let view = schedule::store::cancel(&state.db, caller.workspace, id, chrono::Utc::now()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Pauses a campaign's schedule: it fires no more until resumed.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/schedule/pause", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = ScheduleView), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "Not active", body = ApiError)),
    security(("api_key" = [])))]
pub async fn pause(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let id = CampaignId(path.into_inner());
    let view = schedule::store::pause(&state.db, caller.workspace, id, chrono::Utc::now()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Resumes a paused schedule from its next slot; slots that passed meanwhile do not run.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/schedule/resume", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = ScheduleView), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "Not paused", body = ApiError)),
    security(("api_key" = [])))]
pub async fn resume(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let id = CampaignId(path.into_inner());
    let view = schedule::store::resume(&state.db, caller.workspace, id, chrono::Utc::now()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Every run of a campaign, the latest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
}

/// The runs of a campaign (a launch by hand or one per fired slot), the latest first, with
/// their state and counts.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/runs", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = RunList), (status = 401, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn runs(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let runs = control::runs(&state.db, caller.workspace, CampaignId(path.into_inner())).await?;
    Ok(HttpResponse::Ok().json(RunList { runs }))
}
