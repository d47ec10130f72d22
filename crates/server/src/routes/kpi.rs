//! KPI reports under `/api/v1/kpi`: the campaign report (figures per run, variant, segment and
//! channel, series, uplift against the holdout) and the workspace's KPI settings. Every report
//! answers JSON, or CSV with `format=csv`; viewers may read them.

use actix_web::{HttpResponse, web};
use clarion_kpi::{
    KpiSettings,
    cac::{self, CacQuery, CacReport, Grouping},
    campaign::{self, CampaignReport, Step},
    churn::{self, ChurnReport, Period, RetentionReport},
    segment::{self, Basis, Breakdown, ConversionQuery, SegmentComparison, SegmentConversion},
    trend::{self, Trend},
};
use clarion_model::{CampaignId, ErrorCode, Role, Timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::IntoParams;

use super::parse_body;
use crate::{auth::Caller, error::ApiError, state::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/kpi/campaigns/{id}", web::get().to(campaign_report))
        .route(
            "/kpi/segments/{segment}/conversion",
            web::get().to(segment_conversion),
        )
        .route("/kpi/segments/compare", web::get().to(segment_comparison))
        .route("/kpi/churn", web::get().to(churn_report))
        .route("/kpi/retention", web::get().to(retention_report))
        .route("/kpi/trend", web::get().to(trend_report))
        .route("/kpi/cac", web::get().to(cac_report))
        .route("/kpi/settings", web::get().to(get_settings))
        .route("/kpi/settings", web::put().to(put_settings));
}

/// Query parameters of the campaign report.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CampaignReportQuery {
    /// The run (launch) to report on; the latest by default.
    #[param(minimum = 1)]
    pub run: Option<i64>,
    /// Add a series of the time-based figures per `hour` or `day` since launch (in CSV, the
    /// series is the export).
    pub series: Option<Step>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

/// Whether a report was asked for as CSV.
fn wants_csv(format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("format must be json or csv, not {other:?}"),
        )),
    }
}

fn csv_answer(name: &str, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{name}.csv\""),
        ))
        .body(body)
}

/// The report of one run of a campaign: audience, holdout, sent, failed, suppressed by reason,
/// bounces, unique opens and clicks, click-to-open rate, unsubscribes, complaints, attributed
/// conversions and revenue, conversion rate, revenue per recipient and average order value, in
/// total and per variant, target segment and channel; the intent-to-treat comparison against
/// the holdout (conversion rate and revenue per contact, with intervals, p-values and relative
/// lift); optionally a series per hour or day since launch. Read from roll-ups kept current as
/// events and deliveries arrive. A rate with an empty denominator is `null`.
#[utoipa::path(get, path = "/api/v1/kpi/campaigns/{id}", tag = "kpi",
    params(("id" = i64, Path, description = "The campaign's id"), CampaignReportQuery),
    responses((status = 200, description = "JSON, or text/csv with format=csv",
            content((CampaignReport = "application/json"), (String = "text/csv"))),
        (status = 400, body = ApiError), (status = 404, description = "No such campaign, or no such run of it", body = ApiError),
        (status = 409, description = "The campaign has not been launched", body = ApiError)),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(workspace = caller.workspace.0))]
pub async fn campaign_report(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    query: web::Query<CampaignReportQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let csv = wants_csv(query.format.as_deref())?;
    let id = path.into_inner();
    let report = campaign::report(
        &state.db,
        caller.workspace,
        CampaignId(id),
        query.run,
        query.series,
    )
    .await?;
    if csv {
        return Ok(csv_answer(
            &format!("campaign-{id}-run-{}", report.run_id),
            campaign::to_csv(&report)?,
        ));
    }
    Ok(HttpResponse::Ok().json(report))
}

/// How this workspace's KPIs are computed: the attribution model, the minimum sample of a
/// comparison and the confidence level.
#[utoipa::path(get, path = "/api/v1/kpi/settings", tag = "kpi",
    responses((status = 200, body = KpiSettings)),
    security(("api_key" = [])))]
pub async fn get_settings(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(clarion_kpi::settings::get(&state.db, caller.workspace).await?))
}

/// Changes this workspace's KPI settings (admins). A change of the attribution model
/// recomputes every run's roll-ups before the answer.
#[utoipa::path(put, path = "/api/v1/kpi/settings", tag = "kpi",
    request_body = KpiSettings,
    responses((status = 200, body = KpiSettings), (status = 422, body = ApiError)),
    security(("api_key" = [])))]
pub async fn put_settings(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Admin)?;
    let settings: KpiSettings = parse_body(body.get())?;
    Ok(HttpResponse::Ok()
        .json(clarion_kpi::settings::put(&state.db, caller.workspace, settings).await?))
}

/// Query parameters of segment conversion.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConversionParams {
    /// The goal event kind, e.g. `purchase`.
    #[param(min_length = 1, max_length = 100)]
    pub event: String,
    /// The period's start (RFC 3339), included.
    #[param(value_type = String, format = DateTime)]
    pub from: String,
    /// The period's end (RFC 3339), excluded; after `from`.
    #[param(value_type = String, format = DateTime)]
    pub to: String,
    /// `current` members (default) or the members at `from` (`period_start`).
    pub basis: Option<Basis>,
    /// Split by `segment:SLUG`, `attr:NAME` or `trait:NAME` (rfm_segment, rfm_recency,
    /// rfm_frequency, rfm_monetary).
    #[param(pattern = "^(segment|attr|trait):.+$")]
    pub by: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

/// Query parameters of the comparison of two segments.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CompareParams {
    /// The first segment's slug: the control.
    #[param(min_length = 1)]
    pub first: String,
    /// The second segment's slug.
    #[param(min_length = 1)]
    pub second: String,
    #[param(min_length = 1, max_length = 100)]
    pub event: String,
    #[param(value_type = String, format = DateTime)]
    pub from: String,
    #[param(value_type = String, format = DateTime)]
    pub to: String,
    pub basis: Option<Basis>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

fn period(
    event: &str,
    from: &str,
    to: &str,
    basis: Option<Basis>,
) -> Result<ConversionQuery, ApiError> {
    let time = |field: &str, value: &str| {
        Timestamp::parse(value).map_err(|e| ApiError::invalid_field(field, e.to_string()))
    };
    let query = ConversionQuery {
        event: event.to_owned(),
        from: time("from", from)?,
        to: time("to", to)?,
        basis: basis.unwrap_or_default(),
    };
    if query.from >= query.to {
        return Err(ApiError::invalid_field("to", "must lie after from"));
    }
    Ok(query)
}

/// Conversion of a segment for a goal event kind in a period `[from, to)`: members (current,
/// or at `from` with `basis=period_start`), converters (members with a goal event in the
/// period), the conversion rate with its Wilson interval, orders, revenue, revenue per member
/// and average order value; optionally broken down by another segment, an attribute or a
/// trait. A rate with an empty denominator is `null`.
#[utoipa::path(get, path = "/api/v1/kpi/segments/{segment}/conversion", tag = "kpi",
    params(("segment" = String, Path, description = "The segment's slug"), ConversionParams),
    responses((status = 200, description = "JSON, or text/csv with format=csv",
            content((SegmentConversion = "application/json"), (String = "text/csv"))),
        (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(workspace = caller.workspace.0))]
pub async fn segment_conversion(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ConversionParams>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let csv = wants_csv(query.format.as_deref())?;
    let period = period(&query.event, &query.from, &query.to, query.basis)?;
    let by = query.by.as_deref().map(Breakdown::parse).transpose()?;
    let slug = path.into_inner();
    let report =
        segment::conversion(&state.db, caller.workspace, &slug, &period, by.as_ref()).await?;
    if csv {
        return Ok(csv_answer(
            &format!("{slug}-conversion"),
            segment::conversion_csv(&report)?,
        ));
    }
    Ok(HttpResponse::Ok().json(report))
}

/// Two segments' conversion for the same goal and period, and their comparison (the first is
/// the control): the difference of the conversion rates and of the revenue per member, with
/// intervals, p-values and relative lift; `null` below the workspace's minimum sample.
#[utoipa::path(get, path = "/api/v1/kpi/segments/compare", tag = "kpi",
    params(CompareParams),
    responses((status = 200, description = "JSON, or text/csv with format=csv",
            content((SegmentComparison = "application/json"), (String = "text/csv"))),
        (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(workspace = caller.workspace.0))]
pub async fn segment_comparison(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<CompareParams>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let csv = wants_csv(query.format.as_deref())?;
    let period = period(&query.event, &query.from, &query.to, query.basis)?;
    let report = segment::compare(
        &state.db,
        caller.workspace,
        &query.first,
        &query.second,
        &period,
    )
    .await?;
    if csv {
        return Ok(csv_answer(
            "segment-comparison",
            segment::comparison_csv(&report)?,
        ));
    }
    Ok(HttpResponse::Ok().json(report))
}

/// Query parameters of the churn report.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChurnParams {
    /// Count only this segment's current members (its slug); every contact by default.
    pub segment: Option<String>,
    /// `day`, `week` (from Monday) or `month` in the workspace's time zone.
    pub period: Period,
    /// The first period is the one containing this moment (RFC 3339).
    #[param(value_type = String, format = DateTime)]
    pub from: String,
    /// Periods up to the one containing the moment before this one (RFC 3339); at most 1,000
    /// periods.
    #[param(value_type = String, format = DateTime)]
    pub to: String,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

/// Query parameters of the retention table.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RetentionParams {
    pub segment: Option<String>,
    /// The first cohort is the month containing this moment (RFC 3339).
    #[param(value_type = String, format = DateTime)]
    pub from: String,
    /// Cohorts and months after them (default 12).
    #[param(minimum = 1, maximum = 120)]
    pub months: Option<u32>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

fn moment(field: &str, value: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse(value).map_err(|e| ApiError::invalid_field(field, e.to_string()))
}

/// Churn per day, week or month: contacts active at each period's start, how many of them
/// churned before its end and the rate, and the contacts that became active in it (the
/// active contacts over time). Churn is defined per workspace (`/api/v1/kpi/settings`): by
/// inactivity after the last activity event, or by an explicit cancel event.
#[utoipa::path(get, path = "/api/v1/kpi/churn", tag = "kpi",
    params(ChurnParams),
    responses((status = 200, description = "JSON, or text/csv with format=csv",
            content((ChurnReport = "application/json"), (String = "text/csv"))),
        (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(workspace = caller.workspace.0))]
pub async fn churn_report(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ChurnParams>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let csv = wants_csv(query.format.as_deref())?;
    let from = moment("from", &query.from)?;
    let to = moment("to", &query.to)?;
    let report = churn::churn(
        &state.db,
        caller.workspace,
        query.segment.as_deref(),
        query.period,
        from,
        to,
    )
    .await?;
    if csv {
        return Ok(csv_answer("churn", churn::churn_csv(&report)?));
    }
    Ok(HttpResponse::Ok().json(report))
}

/// Retention by monthly cohort of first activity: for each cohort, its size and the share of
/// it active in each month after.
#[utoipa::path(get, path = "/api/v1/kpi/retention", tag = "kpi",
    params(RetentionParams),
    responses((status = 200, description = "JSON, or text/csv with format=csv",
            content((RetentionReport = "application/json"), (String = "text/csv"))),
        (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(workspace = caller.workspace.0))]
pub async fn retention_report(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<RetentionParams>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let csv = wants_csv(query.format.as_deref())?;
    let from = moment("from", &query.from)?;
    let report = churn::retention(
        &state.db,
        caller.workspace,
        query.segment.as_deref(),
        from,
        query.months.unwrap_or(12),
    )
    .await?;
    if csv {
        return Ok(csv_answer("retention", churn::retention_csv(&report)?));
    }
    Ok(HttpResponse::Ok().json(report))
}

/// Query parameters of the monthly trend.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrendParams {
    /// Months up to and including the current one (default 12).
    #[param(minimum = 1, maximum = 120)]
    pub months: Option<u32>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

/// The workspace's last months at a glance, as the dashboard's overview charts them: per
/// month (workspace time zone; the current one up to now) the contacts active at its start
/// and those who became active in it, churned contacts and the churn rate (as in
/// `/api/v1/kpi/churn`), buyers (contacts with the activity event, default `purchase`), the
/// conversion rate (buyers / active), orders and revenue, from the roll-ups.
#[utoipa::path(get, path = "/api/v1/kpi/trend", tag = "kpi",
    params(TrendParams),
    responses((status = 200, description = "JSON, or text/csv with format=csv",
            content((Trend = "application/json"), (String = "text/csv"))),
        (status = 400, body = ApiError), (status = 422, body = ApiError)),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(workspace = caller.workspace.0))]
pub async fn trend_report(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<TrendParams>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let csv = wants_csv(query.format.as_deref())?;
    let report = trend::monthly(
        &state.db,
        caller.workspace,
        query.months.unwrap_or(12),
        Timestamp::now(),
    )
    .await?;
    if csv {
        return Ok(csv_answer("trend", trend::trend_csv(&report)?));
    }
    Ok(HttpResponse::Ok().json(report))
}

/// Query parameters of the CAC report.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CacParams {
    /// The period's start (RFC 3339), included.
    #[param(value_type = String, format = DateTime)]
    pub from: String,
    /// The period's end (RFC 3339), excluded; after `from`.
    #[param(value_type = String, format = DateTime)]
    pub to: String,
    /// Group by `channel` (default), `campaign` or (target) `segment`.
    pub by: Option<Grouping>,
    /// The report's currency (ISO 4217); needed when the period's spend is in several.
    #[param(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// The purchase event kind (default `purchase`).
    #[param(min_length = 1, max_length = 100)]
    pub event: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
}

/// Customer acquisition cost over a period `[from, to)`, per channel, campaign or target
/// segment: spend (`/api/v1/spend`, prorated to the period, a campaign's split over its
/// channels or target segments by recipients) divided by the new customers (contacts whose
/// first purchase ever lies in the period) attributed to the group's deliveries by the
/// workspace's attribution model within each campaign's window. Also the total and the
/// blended CAC (over every new customer, attributed or not). One currency per report. A CAC
/// without new customers is `null`.
#[utoipa::path(get, path = "/api/v1/kpi/cac", tag = "kpi",
    params(CacParams),
    responses((status = 200, description = "JSON, or text/csv with format=csv",
            content((CacReport = "application/json"), (String = "text/csv"))),
        (status = 422, description = "`to` not after `from`, an event kind that is not one, an unknown currency, or no currency given while the period's spend is in several (details name the parameter)", body = ApiError)),
    security(("api_key" = [])))]
#[tracing::instrument(skip_all, fields(workspace = caller.workspace.0))]
pub async fn cac_report(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<CacParams>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let csv = wants_csv(query.format.as_deref())?;
    let query = query.into_inner();
    let cac_query = CacQuery {
        from: moment("from", &query.from)?,
        to: moment("to", &query.to)?,
        by: query.by.unwrap_or_default(),
        currency: query.currency,
        event: query.event.unwrap_or_else(|| "purchase".to_owned()),
    };
    let report = cac::report(&state.db, caller.workspace, &cac_query).await?;
    if csv {
        return Ok(csv_answer(
            &format!("cac-by-{}", cac_query.by.as_str()),
            cac::to_csv(&report)?,
        ));
    }
    Ok(HttpResponse::Ok().json(report))
}
