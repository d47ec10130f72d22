//! `/api/v1/events`: batch ingestion.

use actix_web::{HttpResponse, web};
use clarion_model::{EventInput, Role};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::{BatchQuery, combine_refusals, parse_batch, refuse_if_atomic};
use clarion_contacts::events::{EventReport, IngestOptions};

use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/events/batch", web::post().to(insert_batch));
}

/// The body of `POST /events/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// Up to 10,000 events (see `ingest.max_batch`).
    #[schema(value_type = Vec<EventInput>)]
    pub events: Vec<Box<RawValue>>,
}

/// Stores up to 10,000 events.
///
/// Each event names its contact by `external_id`; unknown contacts are created or the event
/// refused, as `ingest.create_unknown_contacts` says. An event whose `idempotency_key` was
/// seen before is not stored again and is listed under `duplicates`. Bad items are reported by
/// index and field, and the valid ones are stored, unless `atomic=true`.
#[utoipa::path(post, path = "/api/v1/events/batch", tag = "events",
    request_body = EventBatch, params(BatchQuery),
    responses(
        (status = 200, description = "What was stored, what was a duplicate and what was refused", body = EventReport),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 413, body = ApiError), (status = 422, description = "atomic=true and an item was refused", body = ApiError)),
    security(("api_key" = [])))]
pub async fn insert_batch(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<BatchQuery>,
    body: web::Json<EventBatch>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let ingest = &state.settings.ingest;
    let (items, errors) = parse_batch::<EventInput>(&body.events, ingest.max_batch, "events")?;
    refuse_if_atomic(&errors, query.atomic)?;
    let options = IngestOptions {
        create_unknown_contacts: ingest.create_unknown_contacts,
        max_future_millis: i64::from(ingest.max_future_hours) * 3_600_000,
        atomic: query.atomic,
    };
    let mut report = state
        .ingest
        .events(caller.workspace, items, options)
        .await?;
    report.errors = combine_refusals(errors, std::mem::take(&mut report.errors), query.atomic)?;
    report.rejected = report.errors.len();
    let counter = &state.metrics.ingested;
    counter
        .with_label_values(&["event", "stored"])
        .inc_by(report.accepted as u64);
    counter
        .with_label_values(&["event", "duplicate"])
        .inc_by(report.duplicates.len() as u64);
    counter
        .with_label_values(&["event", "rejected"])
        .inc_by(report.rejected as u64);
    Ok(HttpResponse::Ok().json(report))
}
