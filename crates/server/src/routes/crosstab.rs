//! `POST /api/v1/crosstab`: how the contacts spread over two dimensions at once.

use actix_web::{HttpResponse, web};
use clarion_model::{Role, Timestamp};
use clarion_segment::{Crosstab, CrosstabRequest, crosstab};
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
    let request = CrosstabRequest::from_json(&body)?;
    let table: Crosstab = crosstab(&state.db, caller.workspace, &request, Timestamp::now()).await?;
    Ok(HttpResponse::Ok().json(table))
}
