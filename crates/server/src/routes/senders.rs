//! `/api/v1/senders`: sender identities (from-addresses or domains with their DKIM keys), and
//! "send test" of a campaign's variant to one address.

use actix_web::{HttpResponse, web};
use clarion_campaign::{
    CampaignId, VariantId,
    senders::{self, Sender, SenderInput},
    store,
    test_send::{TestSendReport, TestSendRequest, send_test},
};
use clarion_dispatch::EmailSender;
use clarion_model::{ErrorCode, Role};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::parse_body;
use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/senders", web::post().to(create))
        .route("/senders", web::get().to(list))
        .route("/senders/{id}", web::get().to(get))
        .route("/senders/{id}", web::put().to(update))
        .route("/senders/{id}", web::delete().to(delete))
        .route(
            "/campaigns/{id}/variants/{variant_id}/send-test",
            web::post().to(test),
        );
}

/// Every sender identity of the workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct SenderList {
    pub senders: Vec<Sender>,
}

/// Creates a sender identity: a from-address or a whole domain. Clarion generates its DKIM
/// key (RSA-2048 unless `dkim.algorithm` is `ed25519`) unless `dkim.private_key` brings one;
/// publish the answer's `dkim.dns_record`. The private key is never shown.
///
/// Once a workspace has identities, every email variant's `from` must belong to one.
#[utoipa::path(post, path = "/api/v1/senders", tag = "senders",
    request_body = SenderInput,
    responses((status = 201, body = Sender), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError),
        (status = 409, description = "The address already has an identity", body = ApiError),
        (status = 422, description = "A field is unusable (details name it), e.g. a DKIM key that does not parse; nothing was stored", body = ApiError)),
    security(("api_key" = [])))]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let input: SenderInput = parse_body(body.get())?;
    let sender = senders::create(&state.db, caller.workspace, &input).await?;
    Ok(HttpResponse::Created().json(sender))
}

/// Lists the workspace's sender identities, by address.
#[utoipa::path(get, path = "/api/v1/senders", tag = "senders",
    responses((status = 200, body = SenderList), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("api_key" = [])))]
pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let senders = senders::list(&state.db, caller.workspace).await?;
    Ok(HttpResponse::Ok().json(SenderList { senders }))
}

/// One sender identity, with the DNS record of its DKIM key.
#[utoipa::path(get, path = "/api/v1/senders/{id}", tag = "senders",
    params(("id" = i64, Path, description = "The identity's id")),
    responses((status = 200, body = Sender), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = path.into_inner();
    let sender = senders::get(&state.db, caller.workspace, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("sender identity {id}")))?;
    Ok(HttpResponse::Ok().json(sender))
}

/// Replaces an identity's address, reply-to and return-path. With `dkim`, its key is replaced
/// too (generated, or the one given): publish the new DNS record before sending.
#[utoipa::path(put, path = "/api/v1/senders/{id}", tag = "senders",
    params(("id" = i64, Path, description = "The identity's id")),
    request_body = SenderInput,
    responses((status = 200, body = Sender), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 409, description = "Another identity has the address", body = ApiError),
        (status = 422, body = ApiError)),
    security(("api_key" = [])))]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let input: SenderInput = parse_body(body.get())?;
    let sender = senders::update(&state.db, caller.workspace, path.into_inner(), &input).await?;
    Ok(HttpResponse::Ok().json(sender))
}

/// Deletes a sender identity and its key.
#[utoipa::path(delete, path = "/api/v1/senders/{id}", tag = "senders",
    params(("id" = i64, Path, description = "The identity's id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let id = path.into_inner();
    if senders::delete(&state.db, caller.workspace, id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(format!("sender identity {id}")))
    }
}

/// Sends one variant's email to one address through the configured relay (or into the
/// outbox), rendered for the chosen contact or the first member of the variant's segment and
/// signed as a delivery would be. The answer says what the relay said; nothing is recorded.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/variants/{variant_id}/send-test", tag = "senders",
    params(("id" = i64, Path, description = "The campaign's id"), ("variant_id" = i64, Path, description = "The variant's id")),
    request_body = TestSendRequest,
    responses((status = 200, description = "Sent, or refused by the relay (see accepted and answer)", body = TestSendReport),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError),
        (status = 409, description = "The email channel is misconfigured", body = ApiError),
        (status = 422, description = "A bad address, an unknown contact, or a variant without email", body = ApiError)),
    security(("api_key" = [])))]
pub async fn test(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let (id, variant_id) = path.into_inner();
    let request: TestSendRequest = parse_body(body.get())?;
    let campaign = store::get(&state.db, caller.workspace, CampaignId(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("campaign {id}")))?;
    let sender = EmailSender::new(&state.settings.email)
        .await
        .map_err(|error| {
            ApiError::new(
                ErrorCode::Conflict,
                format!("the email channel is misconfigured: {error}"),
            )
        })?;
    let report = send_test(
        &state.db,
        caller.workspace,
        &campaign,
        VariantId(variant_id),
        &request,
        &state.tracker,
        &sender,
    )
    .await;
    sender.shutdown().await;
    Ok(HttpResponse::Ok().json(report?))
}
