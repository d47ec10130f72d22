//! Email providers' event webhooks, outside `/api` (they carry the provider's own
//! credentials, not an API key): `/webhooks/ses`, `/webhooks/sendgrid`, `/webhooks/postmark`,
//! `/webhooks/mailgun`. Each verifies the request the provider's way and records its bounces
//! and complaints; see `clarion_campaign::providers`.

use actix_web::{HttpRequest, HttpResponse, web};
use clarion_campaign::providers::{Provider, Received, Request};

use crate::{error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks/ses", web::post().to(ses))
        .route("/webhooks/sendgrid", web::post().to(sendgrid))
        .route("/webhooks/postmark", web::post().to(postmark))
        .route("/webhooks/mailgun", web::post().to(mailgun));
}

async fn receive(
    state: &AppState,
    provider: Provider,
    request: &HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let request = Request {
        headers: request
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    name.as_str().to_ascii_lowercase(),
                    value.to_str().ok()?.to_owned(),
                ))
            })
            .collect(),
        body: body.to_vec(),
    };
    let received = state.providers.receive(provider, &request).await?;
    Ok(HttpResponse::Ok().json(received))
}

/// Amazon SES notifications through SNS: bounces and complaints. The SNS signature is verified
/// with the certificate at `SigningCertURL` (https on `sns.<region>.amazonaws.com`);
/// subscription confirmations are confirmed.
#[utoipa::path(post, path = "/webhooks/ses", tag = "provider webhooks",
    request_body(content = String, content_type = "text/plain", description = "An SNS message (JSON)"),
    responses((status = 200, body = Received),
        (status = 401, description = "The SNS signature does not verify; nothing was recorded", body = ApiError),
        (status = 404, description = "providers.ses is not enabled", body = ApiError),
        (status = 409, description = "Every event was received before", body = ApiError),
        (status = 422, description = "Verified, but not an SES notification", body = ApiError),
        (status = 503, description = "The signing certificate could not be fetched", body = ApiError)))]
pub async fn ses(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    receive(&state, Provider::Ses, &request, body).await
}

/// SendGrid's signed Event Webhook: `bounce` and `spamreport` events (ECDSA P-256 signature
/// over the timestamp and the body).
#[utoipa::path(post, path = "/webhooks/sendgrid", tag = "provider webhooks",
    request_body(content = String, content_type = "application/json", description = "A JSON array of SendGrid events"),
    params(
        ("X-Twilio-Email-Event-Webhook-Signature" = String, Header, description = "base64 DER ECDSA signature"),
        ("X-Twilio-Email-Event-Webhook-Timestamp" = String, Header, description = "Unix time of signing")),
    responses((status = 200, body = Received),
        (status = 401, description = "The signature does not verify; nothing was recorded", body = ApiError),
        (status = 404, description = "providers.sendgrid is not configured", body = ApiError),
        (status = 409, description = "Every event was received before", body = ApiError),
        (status = 422, description = "Verified, but not SendGrid events", body = ApiError)))]
pub async fn sendgrid(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    receive(&state, Provider::Sendgrid, &request, body).await
}

/// Postmark's bounce and spam-complaint webhooks (basic auth and/or a token header).
#[utoipa::path(post, path = "/webhooks/postmark", tag = "provider webhooks",
    request_body(content = String, content_type = "application/json", description = "A Postmark Bounce or SpamComplaint record"),
    responses((status = 200, body = Received),
        (status = 401, description = "The credentials are missing or wrong; nothing was recorded", body = ApiError),
        (status = 404, description = "providers.postmark is not configured", body = ApiError),
        (status = 409, description = "The event was received before", body = ApiError),
        (status = 422, description = "Not a Postmark record", body = ApiError)))]
pub async fn postmark(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    receive(&state, Provider::Postmark, &request, body).await
}

/// Mailgun's signed webhooks: `failed` (permanent or temporary) and `complained` events
/// (HMAC-SHA256 of timestamp and token; each token is accepted once).
#[utoipa::path(post, path = "/webhooks/mailgun", tag = "provider webhooks",
    request_body(content = String, content_type = "application/json", description = "A Mailgun webhook: signature and event-data"),
    responses((status = 200, body = Received),
        (status = 401, description = "The signature does not verify or is stale; nothing was recorded", body = ApiError),
        (status = 404, description = "providers.mailgun is not configured", body = ApiError),
        (status = 409, description = "The signed token was used before, or the event was received before", body = ApiError),
        (status = 422, description = "Verified, but not a Mailgun event", body = ApiError)))]
pub async fn mailgun(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    receive(&state, Provider::Mailgun, &request, body).await
}
