//! Sending a campaign: launch, progress, pause, resume, cancel, retry, the deliveries of a
//! campaign or contact, and the dead letters of each channel's queue.

use actix_web::{HttpResponse, web};
use clarion_campaign::{
    CampaignId, DeliveryStatus, LaunchReport, control,
    control::Run,
    deliveries,
    deliveries::{DeliveryFilter, DeliveryView, Progress},
    launch::launch as start,
};
use clarion_model::{Channel, ContactId, ErrorCode, Role};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{cursor, page_limit};
use crate::{auth::Caller, error::ApiError, state::AppState};
use clarion_contacts as store;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/campaigns/{id}/launch", web::post().to(launch))
        .route("/campaigns/{id}/progress", web::get().to(progress))
        .route("/campaigns/{id}/pause", web::post().to(pause))
        .route("/campaigns/{id}/resume", web::post().to(resume))
        .route("/campaigns/{id}/cancel", web::post().to(cancel))
        .route("/campaigns/{id}/retry", web::post().to(retry))
        .route(
            "/campaigns/{id}/deliveries",
            web::get().to(campaign_deliveries),
        )
        .route(
            "/contacts/{external_id}/deliveries",
            web::get().to(contact_deliveries),
        )
        .route("/dead-letters/{channel}", web::get().to(dead_letters));
}

/// Launches a draft campaign now: its audience is written as delivery rows (holdout and
/// suppressed contacts recorded with the reason) and the rest is enqueued for the workers.
///
/// A campaign is launched once; duplicate it to send it again. With Redis down nothing
/// changes and the answer is 503.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/launch", tag = "sending",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = LaunchReport), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "Launched already, or a channel is not configured", body = ApiError),
        (status = 503, description = "The job queue does not answer; nothing changed", body = ApiError)),
    security(("api_key" = [])))]
pub async fn launch(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let id = path.into_inner();
    check_webhook_target(&state, caller.workspace, id).await?;
    let report = start(
        &state.db,
        &state.queues,
        &state.settings.sending,
        caller.workspace,
        CampaignId(id),
        Some(caller.key_id),
    )
    .await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Refuses a launch (from the API or the dashboard) whose webhooks could only fail: the receiver's address is one the
/// target policy forbids (private, loopback, link-local) or not an http(s) URL.
pub(crate) async fn check_webhook_target(
    state: &AppState,
    workspace: clarion_model::WorkspaceId,
    id: i64,
) -> Result<(), ApiError> {
    let settings = &state.settings;
    if settings.sending.webhook_url.is_empty() || settings.webhook.secret.expose_secret().is_empty()
    {
        return Ok(());
    }
    let Some(campaign) = clarion_campaign::store::get(&state.db, workspace, CampaignId(id)).await?
    else {
        return Ok(());
    };
    // Endpoints were checked when saved and are checked again at every send.
    if !campaign.sends(Channel::Webhook) || !campaign.uses_default_webhook_endpoint() {
        return Ok(());
    }
    let sender = clarion_dispatch::WebhookSender::new(&settings.webhook).map_err(|e| {
        ApiError::new(
            ErrorCode::Conflict,
            format!("the webhook channel is misconfigured: {e}"),
        )
    })?;
    match sender.check_target(&settings.sending.webhook_url).await {
        Err(error) if !error.is_transient() => Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "webhooks cannot be sent to sending.webhook_url: {}",
                error.reason()
            ),
        )),
        _ => Ok(()),
    }
}

/// Where a launched campaign stands: deliveries per status overall, per channel and per
/// variant; the sending rate over the last 30 seconds and the time left at that rate.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/progress", tag = "sending",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = Progress), (status = 401, body = ApiError),
        (status = 404, body = ApiError), (status = 409, description = "Not launched yet", body = ApiError)),
    security(("api_key" = [])))]
pub async fn progress(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = path.into_inner();
    let campaign = clarion_campaign::store::get(&state.db, caller.workspace, CampaignId(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("campaign {id}")))?;
    let report = deliveries::progress(&state.db, caller.workspace, &campaign)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Conflict,
                format!("campaign {id} has not been launched"),
            )
        })?;
    Ok(HttpResponse::Ok().json(report))
}

/// The optional body of a pause.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why, for whoever looks at the campaign next.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Pauses a sending campaign: workers stop taking its deliveries; those in flight finish.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pause", tag = "sending",
    params(("id" = i64, Path, description = "The campaign's id")),
    request_body(content = Option<PauseRequest>, description = "Optional; may be empty"),
    responses((status = 200, body = Run), (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 409, description = "Not sending", body = ApiError)),
    security(("api_key" = [])))]
pub async fn pause(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let request: PauseRequest = super::parse_optional_body(&body)?;
    let reason = request
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "paused by a user".to_owned());
    let reason: String = reason.chars().take(500).collect();
    let run = control::pause(
        &state.db,
        caller.workspace,
        CampaignId(path.into_inner()),
        &reason,
    )
    .await?;
    Ok(HttpResponse::Ok().json(run))
}

/// Resumes a paused campaign: its queued deliveries are enqueued again.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/resume", tag = "sending",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = Run), (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 409, description = "Not paused", body = ApiError), (status = 503, body = ApiError)),
    security(("api_key" = [])))]
pub async fn resume(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let run = control::resume(
        &state.db,
        &state.queues,
        caller.workspace,
        CampaignId(path.into_inner()),
    )
    .await?;
    Ok(HttpResponse::Ok().json(run))
}

/// Cancels a sending or paused campaign: deliveries still queued become `cancelled`.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/cancel", tag = "sending",
    params(("id" = i64, Path, description = "The campaign's id")),
    responses((status = 200, body = Run), (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 409, description = "Not sending or paused", body = ApiError)),
    security(("api_key" = [])))]
pub async fn cancel(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let run = control::cancel(&state.db, caller.workspace, CampaignId(path.into_inner())).await?;
    Ok(HttpResponse::Ok().json(run))
}

/// The optional body of a retry.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Retry only this channel's failed deliveries.
    #[serde(default)]
    pub channel: Option<Channel>,
}

/// The answer to a retry.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryReport {
    /// Failed deliveries queued again.
    pub retried: u64,
    pub run: Run,
}

/// Sends the failed deliveries of a campaign again, with fresh attempts.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/retry", tag = "sending",
    params(("id" = i64, Path, description = "The campaign's id")),
    request_body(content = Option<RetryRequest>, description = "Optional; may be empty"),
    responses((status = 200, body = RetryReport), (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError), (status = 503, body = ApiError)),
    security(("api_key" = [])))]
pub async fn retry(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let request: RetryRequest = super::parse_optional_body(&body)?;
    let (run, retried) = control::retry_failed(
        &state.db,
        &state.queues,
        caller.workspace,
        CampaignId(path.into_inner()),
        request.channel,
    )
    .await?;
    Ok(HttpResponse::Ok().json(RetryReport { retried, run }))
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    status: Option<String>,
    channel: Option<String>,
    cursor: Option<String>,
    limit: Option<u64>,
}

impl DeliveryQuery {
    fn filter(&self) -> Result<DeliveryFilter, ApiError> {
        let status = match &self.status {
            None => None,
            Some(value) => Some(DeliveryStatus::parse(value).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("status {value:?} is not one of queued, sending, sent, failed, suppressed, holdout, cancelled"),
                )
            })?),
        };
        let channel = self.channel.as_deref().map(parse_channel).transpose()?;
        Ok(DeliveryFilter {
            status,
            channel,
            after: self.cursor.as_deref().map(cursor::decode).transpose()?,
            limit: page_limit(self.limit)?,
            ..DeliveryFilter::default()
        })
    }
}

fn parse_channel(value: &str) -> Result<Channel, ApiError> {
    Channel::parse(value).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!("channel {value:?} is not one of email, webhook"),
        )
    })
}

fn page(deliveries: Vec<DeliveryView>, limit: u64) -> DeliveryPage {
    let next_cursor = (deliveries.len() as u64 == limit)
        .then(|| deliveries.last().map(|d| cursor::encode(d.id)))
        .flatten();
    DeliveryPage {
        deliveries,
        next_cursor,
    }
}

/// The deliveries of a campaign, with why any failed or was suppressed; filter by `status`
/// and `channel`, page with `cursor` and `limit`.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/deliveries", tag = "sending",
    params(("id" = i64, Path, description = "The campaign's id"),
        ("status" = Option<clarion_campaign::DeliveryStatus>, Query, description = "queued, sending, sent, failed, suppressed, holdout or cancelled"),
        ("channel" = Option<clarion_model::Channel>, Query, description = "email or webhook"),
        ("cursor" = Option<super::cursor::Cursor>, Query, description = "From next_cursor"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100")),
    responses((status = 200, body = DeliveryPage), (status = 400, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn campaign_deliveries(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    query: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = path.into_inner();
    if clarion_campaign::store::get(&state.db, caller.workspace, CampaignId(id))
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("campaign {id}")));
    }
    let filter = DeliveryFilter {
        campaign: Some(CampaignId(id)),
        ..query.filter()?
    };
    let found = deliveries::list(&state.db, caller.workspace, &filter).await?;
    Ok(HttpResponse::Ok().json(page(found, filter.limit)))
}

/// Every delivery to a contact, across campaigns, with why any failed or was suppressed.
#[utoipa::path(get, path = "/api/v1/contacts/{external_id}/deliveries", tag = "sending",
    params(("external_id" = clarion_model::ExternalId, Path, description = "The contact's external id"),
        ("status" = Option<clarion_campaign::DeliveryStatus>, Query, description = "queued, sending, sent, failed, suppressed, holdout or cancelled"),
        ("channel" = Option<clarion_model::Channel>, Query, description = "email or webhook"),
        ("cursor" = Option<super::cursor::Cursor>, Query, description = "From next_cursor"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100")),
    responses((status = 200, body = DeliveryPage), (status = 400, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn contact_deliveries(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = super::external_id_in_path(&path)?;
    let found =
        store::contacts::resolve_ids(&state.db, caller.workspace, &[id.as_str()], false).await?;
    let contact = found
        .get(id.as_str())
        .ok_or_else(|| ApiError::not_found(format!("contact {:?}", id.as_str())))?;
    let filter = DeliveryFilter {
        contact: Some(ContactId(*contact)),
        ..query.filter()?
    };
    let list = deliveries::list(&state.db, caller.workspace, &filter).await?;
    Ok(HttpResponse::Ok().json(page(list, filter.limit)))
}

/// One dead letter: a delivery job that failed for good or ran out of attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// The entry's id in the dead-letter stream.
    pub id: String,
    /// The delivery the job was for, when its payload reads.
    pub delivery_id: Option<i64>,
    /// permanent, exhausted, abandoned or malformed.
    pub kind: String,
    pub error: String,
    pub previous_error: Option<String>,
    pub attempts: u32,
    /// When it was dead-lettered, in milliseconds since 1970.
    pub failed_at_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    after: Option<String>,
    limit: Option<u64>,
}

/// The dead letters of a channel's delivery queue, oldest first (page with `after`, the last
/// id seen). Each names the delivery, why it failed and how many attempts were made; the
/// delivery row says the same and can be retried with `POST /campaigns/{id}/retry`.
#[utoipa::path(get, path = "/api/v1/dead-letters/{channel}", tag = "sending",
    params(("channel" = clarion_model::Channel, Path, description = "email or webhook"),
        ("after" = Option<String>, Query, pattern = "^[0-9]{1,19}-[0-9]{1,19}$", description = "The id of the last dead letter seen"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100")),
    responses((status = 200, body = Vec<DeadLetterView>), (status = 400, body = ApiError), (status = 403, body = ApiError),
        (status = 503, body = ApiError)),
    security(("api_key" = [])))]
pub async fn dead_letters(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<DeadLetterQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let channel = parse_channel(path.as_str())?;
    let limit = page_limit(query.limit)?;
    let queue = state
        .queues
        .open(channel)
        .await
        .map_err(clarion_campaign::CampaignError::from)?;
    let after = query.after.as_deref().map(dead_letter_id).transpose()?;
    let letters = queue
        .dead_letters(after.as_ref(), usize::try_from(limit).unwrap_or(100))
        .await
        .map_err(clarion_campaign::CampaignError::from)?;
    let views: Vec<DeadLetterView> = letters
        .into_iter()
        .map(|letter| DeadLetterView {
            delivery_id: letter
                .decode::<clarion_campaign::DeliveryJob>()
                .ok()
                .map(|job| job.id),
            id: letter.id.as_str().to_owned(),
            kind: letter.kind.as_str().to_owned(),
            error: letter.error,
            previous_error: letter.previous_error,
            attempts: letter.attempts,
            failed_at_ms: letter
                .failed_at
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| u64::try_from(d.as_millis()).ok()),
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// A dead letter's id as the stream gives them out (`<ms>-<seq>`, as documented); anything
/// else is the caller's mistake, answered 400 rather than sent to Redis to refuse.
fn dead_letter_id(text: &str) -> Result<clarion_queue::EntryId, ApiError> {
    let number =
        |part: &str| (1..=19).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    match text.split_once('-') {
        Some((ms, seq)) if number(ms) && number(seq) => Ok(clarion_queue::EntryId::new(text)),
        _ => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("after {text:?} is not a dead letter id such as 1764000000000-0"),
        )),
    }
}
