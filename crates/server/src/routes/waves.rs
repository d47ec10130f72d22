//! Sending in each recipient's local time and quiet hours: the waves of a campaign's next
//! firing before launch, the waves of a run, and a campaign's quiet hours.

use actix_web::{HttpResponse, web};
use clarion_campaign::{
    CampaignId,
    schedule::{
        quiet::{self, QuietHoursInput, QuietHoursView},
        waves::{self, Wave, WavePlan},
    },
};
use clarion_model::Role;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::parse_body;
use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/campaigns/{id}/schedule/waves", web::get().to(plan))
        .route(
            "/campaigns/{id}/runs/{run_id}/waves",
            web::get().to(run_waves),
        )
        .route("/campaigns/{id}/quiet-hours", web::put().to(put_quiet))
        .route("/campaigns/{id}/quiet-hours", web::get().to(get_quiet))
        .route(
            "/campaigns/{id}/quiet-hours",
            web::delete().to(delete_quiet),
        );
}

/// The waves of the campaign's next firing (its schedule's next slot; without an active
/// schedule, a launch now): one per time zone of the audience, with its due time and size,
/// counted in the database. Quiet hours show as delayed or dropped waves.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/schedule/waves", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = WavePlan), (status = 401, body = ApiError),
        (status = 404, description = "No such campaign", body = ApiError)),
    security(("api_key" = [])))]
pub async fn plan(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let plan = waves::preview(
        &state.db,
        caller.workspace,
        CampaignId(path.into_inner()),
        chrono::Utc::now(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(plan))
}

/// A run's waves.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunWaves {
    pub run_id: i64,
    /// In due order; empty when the run sent everything at once.
    pub waves: Vec<Wave>,
}

/// The waves of one run of a campaign: due time, deliveries queued or dropped, released.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/runs/{run_id}/waves", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id"),
        ("run_id" = i64, Path, description = "The run's id")),
    responses((status = 200, body = RunWaves), (status = 401, body = ApiError),
        (status = 404, description = "No such campaign or run", body = ApiError)),
    security(("api_key" = [])))]
pub async fn run_waves(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let (id, run_id) = path.into_inner();
    let waves = waves::of_run(&state.db, caller.workspace, CampaignId(id), run_id).await?;
    Ok(HttpResponse::Ok().json(RunWaves { run_id, waves }))
}

/// Sets a campaign's quiet hours in the recipient's local time (`start`, `end`, `weekends`,
/// `action` delay or drop, `time_zone` for contacts without one); they apply from its next
/// launch.
#[utoipa::path(put, path = "/api/v1/campaigns/{id}/quiet-hours", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    request_body = QuietHoursInput,
    responses((status = 200, body = QuietHoursView), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 422, description = "A field is invalid (a time, the zone, hours covering the whole day); nothing was saved", body = ApiError)),
    security(("api_key" = [])))]
pub async fn put_quiet(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let input: QuietHoursInput = parse_body(body.get())?;
    let view = quiet::put(
        &state.db,
        caller.workspace,
        CampaignId(path.into_inner()),
        &input,
    )
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// A campaign's quiet hours.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/quiet-hours", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = QuietHoursView), (status = 401, body = ApiError),
        (status = 404, description = "No such campaign, or it has no quiet hours", body = ApiError)),
    security(("api_key" = [])))]
pub async fn get_quiet(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = path.into_inner();
    let view = quiet::get(&state.db, caller.workspace, CampaignId(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("quiet hours of campaign {id}")))?;
    Ok(HttpResponse::Ok().json(view))
}

/// Removes a campaign's quiet hours.
#[utoipa::path(delete, path = "/api/v1/campaigns/{id}/quiet-hours", tag = "scheduling",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 204, description = "Removed"), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, description = "No such campaign, or it has no quiet hours", body = ApiError)),
    security(("api_key" = [])))]
pub async fn delete_quiet(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let id = path.into_inner();
    if quiet::delete(&state.db, caller.workspace, CampaignId(id)).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(format!("quiet hours of campaign {id}")))
    }
}
