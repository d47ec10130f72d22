//! `POST /api/v1/crosstab`: how the contacts spread over two dimensions at once.

use actix_web::{HttpResponse, web};
use clarion_model::{ErrorCode, Role, Timestamp};
use clarion_segment::{Crosstab, CrosstabRequest, RuleError, SegmentError, crosstab};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/crosstab", web::post().to(compute));
}

/// The body of `POST /crosstab`.
///
/// A dimension is one of `{"attr": "country", "top": 10}` (the most frequent values, then
/// `(other)` and `(none)`), `{"attr": "age", "edges": [18, 30, 50]}` (numeric buckets),
/// `{"trait": "rfm_segment"}` or `{"trait": "revenue", "edges": [100, 500]}`,
/// `{"segment": "vip-customers"}` (member / not member) and `{"rule": <rule>}` (yes / no; a
/// rule in JSON or the text form, e.g. `"purchase(90d)"`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct CrosstabBody {
    /// The dimension of the rows.
    #[schema(value_type = Object, example = json!({"attr": "gender"}))]
    rows: Value,
    /// The dimension of the columns.
    #[schema(value_type = Object, example = json!({"rule": "purchase(90d)"}))]
    columns: Value,
    /// Only contacts satisfying this rule (JSON or text form) are counted.
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
}

/// One cell of a cross-tab; percentages are 0 to 100.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct CellDoc {
    count: u64,
    row_pct: f64,
    column_pct: f64,
    total_pct: f64,
}

/// A cross-tab: `cells[i][j]` is row `rows[i]` × column `columns[j]`.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct CrosstabDoc {
    rows: Vec<String>,
    columns: Vec<String>,
    cells: Vec<Vec<CellDoc>>,
    row_totals: Vec<u64>,
    column_totals: Vec<u64>,
    total: u64,
}

/// Counts the contacts per pair of dimension values, with row, column and grand totals and
/// row, column and total percentages (e.g. gender × purchased in the last 90 days).
#[utoipa::path(post, path = "/api/v1/crosstab", tag = "segments",
    request_body = CrosstabBody,
    responses(
        (status = 200, description = "The table", body = CrosstabDoc),
        (status = 400, description = "The body is not JSON", body = ApiError),
        (status = 401, body = ApiError),
        (status = 422, description = "A bad field, named by its path, e.g. rows.attr", body = ApiError)),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(workspace = caller.workspace.0))]
pub async fn compute(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let request = CrosstabRequest::from_json(&body).map_err(segment_error)?;
    let table: Crosstab = crosstab(&state.db, caller.workspace, &request, Timestamp::now())
        .await
        .map_err(segment_error)?;
    Ok(HttpResponse::Ok().json(table))
}

fn field_errors(errors: &[RuleError]) -> Value {
    serde_json::json!({
        "errors": errors
            .iter()
            .map(|e| serde_json::json!({"field": e.path, "message": e.message}))
            .collect::<Vec<_>>()
    })
}

/// The API answer to a segment error: bad input is a 422 naming the field, a database
/// failure a 500 (or 503) that reveals nothing.
pub(crate) fn segment_error(error: SegmentError) -> ApiError {
    match error {
        SegmentError::InvalidRequest(errors) | SegmentError::Invalid(errors) => {
            let details = field_errors(&errors);
            ApiError::new(ErrorCode::ValidationFailed, error_text(&errors)).with_details(details)
        }
        SegmentError::Json(e) => {
            let details = field_errors(std::slice::from_ref(&e));
            ApiError::new(ErrorCode::ValidationFailed, error_text(&[e])).with_details(details)
        }
        SegmentError::NotYetComputed { path, what } => ApiError::new(
            ErrorCode::ValidationFailed,
            format!("{path}: {what} is not computed yet, so rules cannot use it"),
        )
        .with_details(
            serde_json::json!({"errors": [{"field": path, "message": "not computed yet"}]}),
        ),
        other @ (SegmentError::Text(_) | SegmentError::TraitsMissing) => {
            ApiError::new(ErrorCode::ValidationFailed, other.to_string())
        }
        SegmentError::Timeout(limit) => ApiError::new(
            ErrorCode::ValidationFailed,
            format!("the query took longer than {limit:?} and was stopped; narrow it down"),
        ),
        SegmentError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
        SegmentError::Db(db) => db.into(),
        other @ (SegmentError::Clustering(_)
        | SegmentError::Corrupt(_)
        | SegmentError::Settings { .. }) => ApiError::internal(&other),
    }
}

fn error_text(errors: &[RuleError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
