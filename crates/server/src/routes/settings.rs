//! Workspace settings under `/api/v1/settings`: the frequency caps across campaigns. Viewers
//! read them; admins change them.

use actix_web::{HttpResponse, web};
use clarion_campaign::frequency::{self, FrequencyCaps};
use clarion_model::Role;
use serde_json::value::RawValue;

use super::parse_body;
use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/settings/frequency-caps",
        web::get().to(get_frequency_caps),
    )
    .route(
        "/settings/frequency-caps",
        web::put().to(put_frequency_caps),
    );
}

/// This workspace's frequency caps: per channel, the most messages of non-transactional
/// campaigns a contact is sent within a window. A channel not listed is not capped.
#[utoipa::path(get, path = "/api/v1/settings/frequency-caps", tag = "settings",
    responses((status = 200, body = FrequencyCaps)),
    security(("api_key" = [])))]
pub async fn get_frequency_caps(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(frequency::get(&state.db, caller.workspace).await?))
}

/// Replaces this workspace's frequency caps (admins); `{"caps": []}` turns them off. A cap
/// of zero, a window outside 1 to 8784 hours or a channel given twice is refused with a 422
/// naming the field (`caps[0].max_messages`), and nothing is saved. Launches from now on and
/// every message a worker sends from now on are checked against the new caps.
#[utoipa::path(put, path = "/api/v1/settings/frequency-caps", tag = "settings",
    request_body = FrequencyCaps,
    responses((status = 200, body = FrequencyCaps), (status = 422, body = ApiError)),
    security(("api_key" = [])))]
pub async fn put_frequency_caps(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let caps: FrequencyCaps = parse_body(body.get())?;
    Ok(HttpResponse::Ok().json(frequency::put(&state.db, caller.workspace, caps).await?))
}
