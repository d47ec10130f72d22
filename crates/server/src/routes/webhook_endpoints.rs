//! `/api/v1/webhook-endpoints`: the receivers webhook variants send to, each with its own
//! secret (shown once, rotated with overlap), headers, rate limit, timeout and results, and
//! "send test". Admins manage them; every role may read them (never their secrets).

use actix_web::{HttpResponse, web};
use clarion_campaign::endpoints::{
    self, Endpoint, EndpointDefaults, EndpointInput, EndpointPatch, EndpointRef,
    EndpointWithSecret, RotateRequest, TestRequest, TestResult,
};
use clarion_model::Role;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::{parse_body, parse_optional_body};
use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhook-endpoints", web::post().to(create))
        .route("/webhook-endpoints", web::get().to(list))
        .route("/webhook-endpoints/{endpoint}", web::get().to(get))
        .route("/webhook-endpoints/{endpoint}", web::patch().to(update))
        .route("/webhook-endpoints/{endpoint}", web::delete().to(delete))
        .route(
            "/webhook-endpoints/{endpoint}/disable",
            web::post().to(disable),
        )
        .route(
            "/webhook-endpoints/{endpoint}/enable",
            web::post().to(enable),
        )
        .route(
            "/webhook-endpoints/{endpoint}/rotate-secret",
            web::post().to(rotate_secret),
        )
        .route(
            "/webhook-endpoints/{endpoint}/finish-rotation",
            web::post().to(finish_rotation),
        )
        .route("/webhook-endpoints/{endpoint}/test", web::post().to(test));
}

fn defaults(state: &AppState) -> EndpointDefaults {
    EndpointDefaults {
        timeout_ms: state.settings.webhook.timeout_ms,
        rotation_overlap_secs: state.settings.webhook.rotation_overlap_secs,
    }
}

/// Creates an endpoint; Clarion generates its secret, which this answer shows once.
///
/// The URL must be http(s) without credentials, and its host must resolve to addresses the
/// webhook target policy allows (public ones, unless `webhook.allow_*` says otherwise).
#[utoipa::path(post, path = "/api/v1/webhook-endpoints", tag = "webhook-endpoints",
    request_body = EndpointInput,
    responses((status = 201, description = "Created; the only answer that shows the secret", body = EndpointWithSecret),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 409, description = "The name is taken", body = ApiError),
        (status = 422, description = "A field is invalid (each named in details.errors); nothing was stored", body = ApiError)),
    security(("api_key" = [])))]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let input: EndpointInput = parse_body(body.get())?;
    let created = endpoints::create(
        &state.db,
        &state.webhooks,
        defaults(&state),
        caller.workspace,
        &input,
    )
    .await?;
    Ok(HttpResponse::Created().json(created))
}

/// The endpoints of the workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<Endpoint>,
}

/// Lists the workspace's endpoints with their last results; secrets are never listed.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints", tag = "webhook-endpoints",
    responses((status = 200, body = EndpointList), (status = 401, body = ApiError)),
    security(("api_key" = [])))]
pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let endpoints = endpoints::list(&state.db, caller.workspace).await?;
    Ok(HttpResponse::Ok().json(EndpointList { endpoints }))
}

/// One endpoint with its last results.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints/{endpoint}", tag = "webhook-endpoints",
    params(("endpoint" = String, Path, description = "Numeric id or name")),
    responses((status = 200, body = Endpoint), (status = 401, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let key = EndpointRef::parse(&path);
    let endpoint = endpoints::get(&state.db, caller.workspace, &key)
        .await?
        .ok_or_else(|| ApiError::not_found(&key))?;
    Ok(HttpResponse::Ok().json(endpoint))
}

/// Changes an endpoint; fields left out keep their value. A new URL is checked like a new
/// endpoint's. Variants that name the endpoint by its old name no longer find it: name
/// endpoints by id in campaigns to rename freely.
#[utoipa::path(patch, path = "/api/v1/webhook-endpoints/{endpoint}", tag = "webhook-endpoints",
    params(("endpoint" = String, Path, description = "Numeric id or name")),
    request_body = EndpointPatch,
    responses((status = 200, body = Endpoint), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 409, description = "The new name is taken", body = ApiError),
        (status = 422, description = "A field is invalid; nothing was changed", body = ApiError)),
    security(("api_key" = [])))]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let patch: EndpointPatch = parse_body(body.get())?;
    let key = EndpointRef::parse(&path);
    let endpoint =
        endpoints::update(&state.db, &state.webhooks, caller.workspace, &key, &patch).await?;
    Ok(HttpResponse::Ok().json(endpoint))
}

/// Deletes an endpoint. Deliveries still queued for it fail, naming it.
#[utoipa::path(delete, path = "/api/v1/webhook-endpoints/{endpoint}", tag = "webhook-endpoints",
    params(("endpoint" = String, Path, description = "Numeric id or name")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    endpoints::delete(&state.db, caller.workspace, &EndpointRef::parse(&path)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Disables an endpoint: its deliveries wait (queued, no attempt used) until it is enabled
/// again, or the campaign is cancelled.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{endpoint}/disable", tag = "webhook-endpoints",
    params(("endpoint" = String, Path, description = "Numeric id or name")),
    responses((status = 200, body = Endpoint), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn disable(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(caller, &state, &path, false).await
}

/// Enables an endpoint again; its waiting deliveries go out.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{endpoint}/enable", tag = "webhook-endpoints",
    params(("endpoint" = String, Path, description = "Numeric id or name")),
    responses((status = 200, body = Endpoint), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn enable(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(caller, &state, &path, true).await
}

async fn set_enabled(
    caller: Caller,
    state: &AppState,
    path: &str,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let patch = EndpointPatch {
        enabled: Some(enabled),
        ..EndpointPatch::default()
    };
    let endpoint = endpoints::update(
        &state.db,
        &state.webhooks,
        caller.workspace,
        &EndpointRef::parse(path),
        &patch,
    )
    .await?;
    Ok(HttpResponse::Ok().json(endpoint))
}

/// Gives the endpoint a new secret, shown once in this answer. The previous secret keeps
/// signing for the overlap (`overlap_secs`, default `webhook.rotation_overlap_secs`) or until
/// `finish-rotation`: meanwhile every delivery carries both signatures in
/// `webhook-signature` (`v1,<new> v1,<old>`).
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{endpoint}/rotate-secret", tag = "webhook-endpoints",
    params(("endpoint" = String, Path, description = "Numeric id or name")),
    request_body(content = Option<RotateRequest>, description = "Optional; may be empty"),
    responses((status = 200, description = "The new secret, shown once", body = EndpointWithSecret),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 422, body = ApiError)),
    security(("api_key" = [])))]
pub async fn rotate_secret(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let request: RotateRequest = parse_optional_body(&body)?;
    let rotated = endpoints::rotate_secret(
        &state.db,
        defaults(&state),
        caller.workspace,
        &EndpointRef::parse(&path),
        &request,
    )
    .await?;
    Ok(HttpResponse::Ok().json(rotated))
}

/// Ends a rotation now: deliveries are signed with the new secret only.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{endpoint}/finish-rotation", tag = "webhook-endpoints",
    params(("endpoint" = String, Path, description = "Numeric id or name")),
    responses((status = 200, body = Endpoint), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn finish_rotation(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let endpoint =
        endpoints::finish_rotation(&state.db, caller.workspace, &EndpointRef::parse(&path)).await?;
    Ok(HttpResponse::Ok().json(endpoint))
}

/// "Send test": renders a payload (the sample, or `payload`) for a contact (a sample one, or
/// `contact`), POSTs it signed to the endpoint as a delivery would go, and answers what the
/// receiver said: status code, latency and the start of its body. A receiver that fails is
/// still a 200 here, with `delivered: false` and the reason.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{endpoint}/test", tag = "webhook-endpoints",
    params(("endpoint" = String, Path, description = "Numeric id or name")),
    request_body(content = Option<TestRequest>, description = "Optional; may be empty"),
    responses((status = 200, body = TestResult), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError), (status = 404, description = "No such endpoint or contact", body = ApiError),
        (status = 422, description = "The payload template does not compile or render", body = ApiError)),
    security(("api_key" = [])))]
pub async fn test(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let request: TestRequest = parse_optional_body(&body)?;
    let result = endpoints::send_test(
        &state.db,
        &state.webhooks,
        &state.tracker,
        caller.workspace,
        &EndpointRef::parse(&path),
        &request,
    )
    .await?;
    Ok(HttpResponse::Ok().json(result))
}
