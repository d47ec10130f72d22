//! `/api/v1/segments`: define, preview, save and inspect segments, and a contact's segments.

use actix_web::{HttpRequest, HttpResponse, web};
use clarion_model::{ContactId, ErrorCode, ExternalId, Role, Timestamp, WorkspaceId};
use clarion_segment::{
    PreviewOptions, Rule,
    membership::{self, Upload},
    report::{self, Day, MemberRow, Overview, Stay},
    save,
    store::{self, Category, Segment, SegmentKind},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{cursor, page_limit, parse_body};
use crate::{auth::Caller, error::ApiError, state::AppState};
use clarion_contacts as contact_store;
use serde_json::value::RawValue;

pub use clarion_segment::save::{SegmentInput, SegmentPatch};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/segments", web::get().to(list))
        .route("/segments", web::post().to(create))
        .route("/segments/preview", web::post().to(preview))
        .route("/segments/{segment}", web::get().to(get))
        .route("/segments/{segment}", web::patch().to(update))
        .route("/segments/{segment}", web::delete().to(delete))
        .route("/segments/{segment}/health", web::get().to(health))
        .route("/segments/{segment}/members", web::get().to(members))
        .route("/segments/{segment}/members", web::put().to(upload_members))
        .route("/segments/{segment}/history", web::get().to(history))
        .route(
            "/contacts/{external_id}/segments",
            web::get().to(contact_segments),
        );
}

/// A segment as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentView {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub category: Category,
    pub kind: SegmentKind,
    /// The rule's JSON form (dynamic segments).
    #[schema(value_type = Option<Object>)]
    pub rule: Option<Value>,
    /// The same rule in the text form.
    pub rule_text: Option<String>,
    /// Current members.
    pub member_count: i64,
    /// When the members were last recomputed in full.
    pub computed_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<Segment> for SegmentView {
    fn from(s: Segment) -> Self {
        SegmentView {
            id: s.id.0,
            rule: s.rule.as_ref().map(Rule::to_json),
            rule_text: s.rule.as_ref().map(Rule::to_text),
            slug: s.slug,
            name: s.name,
            description: s.description,
            category: s.category,
            kind: s.kind,
            member_count: s.member_count,
            computed_at: s.computed_at,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// The body of `POST /segments/preview`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewInput {
    /// The unsaved rule: JSON form, or text form as one string.
    #[schema(value_type = Object)]
    pub rule: Value,
    /// How many sample members to list (0 to 100, default 10).
    #[schema(minimum = 0, maximum = 100)]
    pub sample: Option<u64>,
}

/// What a rule would select, before it is saved.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewView {
    /// The rule as understood, in both forms.
    #[schema(value_type = Object)]
    pub rule: Value,
    pub rule_text: String,
    #[serde(flatten)]
    pub overview: Overview,
    pub sample: Vec<MemberRow>,
    /// Milliseconds the preview took.
    pub took_ms: u64,
}

/// A segment's health: its definition and the same figures as a preview, from its current
/// members.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    pub segment: SegmentView,
    #[serde(flatten)]
    pub overview: Overview,
    /// Entries and exits over the last 30 days.
    pub last_30_days: Vec<Day>,
}

async fn find(state: &AppState, caller: &Caller, key: &str) -> Result<Segment, ApiError> {
    store::find(&state.db, caller.workspace, key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("segment {key:?}")))
}

fn preview_options(state: &AppState) -> PreviewOptions {
    PreviewOptions {
        timeout: Some(state.settings.segments.preview_timeout()),
    }
}

/// Lists the workspace's segments by slug.
#[utoipa::path(get, path = "/api/v1/segments", tag = "segments",
    responses((status = 200, body = Vec<SegmentView>), (status = 401, body = ApiError)),
    security(("api_key" = [])))]
pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let segments = store::list(&state.db, caller.workspace).await?;
    Ok(HttpResponse::Ok().json(
        segments
            .into_iter()
            .map(SegmentView::from)
            .collect::<Vec<_>>(),
    ))
}

/// Saves a segment. A dynamic segment's rule is validated (422 with the path of each bad
/// node) and its members are computed before the answer.
#[utoipa::path(post, path = "/api/v1/segments", tag = "segments", request_body = SegmentInput,
    responses((status = 201, body = SegmentView), (status = 409, description = "slug taken", body = ApiError),
        (status = 422, body = ApiError), (status = 403, body = ApiError)),
    security(("api_key" = [])))]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let input: SegmentInput = parse_body(body.get())?;
    let segment = save::create(&state.db, caller.workspace, input, Timestamp::now()).await?;
    Ok(HttpResponse::Created().json(SegmentView::from(segment)))
}

/// One segment, by numeric id or slug.
#[utoipa::path(get, path = "/api/v1/segments/{segment}", tag = "segments",
    params(("segment" = String, Path, description = "Numeric id or slug")),
    responses((status = 200, body = SegmentView), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let segment = find(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(SegmentView::from(segment)))
}

/// Changes a segment. A new rule is validated and the members recomputed at once (entries
/// and exits recorded), and so are those of segments whose rules use this one.
#[utoipa::path(patch, path = "/api/v1/segments/{segment}", tag = "segments",
    params(("segment" = String, Path, description = "Numeric id or slug")),
    request_body = SegmentPatch,
    responses((status = 200, body = SegmentView), (status = 404, body = ApiError), (status = 422, body = ApiError)),
    security(("api_key" = [])))]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let patch: SegmentPatch = parse_body(body.get())?;
    let segment = find(&state, &caller, &path).await?;
    let updated = save::update(&state.db, &segment, patch, Timestamp::now()).await?;
    Ok(HttpResponse::Ok().json(SegmentView::from(updated)))
}

/// Deletes a segment and its membership history. Refused (409) while other segments' rules
/// use it.
#[utoipa::path(delete, path = "/api/v1/segments/{segment}", tag = "segments",
    params(("segment" = String, Path, description = "Numeric id or slug")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ApiError), (status = 409, body = ApiError)),
    security(("api_key" = [])))]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let segment = find(&state, &caller, &path).await?;
    store::delete(&state.db, &segment).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Previews an unsaved rule: size, share of the base, value, reach per channel, overlap with
/// the stored segments and a sample of members. Stopped with `query_timeout` after
/// `segments.preview_timeout_ms`.
#[utoipa::path(post, path = "/api/v1/segments/preview", tag = "segments", request_body = PreviewInput,
    responses((status = 200, body = PreviewView), (status = 422, description = "invalid rule or timeout", body = ApiError)),
    security(("api_key" = [])))]
pub async fn preview(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let started = std::time::Instant::now();
    let body: PreviewInput = parse_body(body.get())?;
    let sample = match body.sample {
        None => 10,
        Some(n @ 0..=100) => n,
        Some(n) => {
            return Err(ApiError::invalid_field(
                "sample",
                format!("must be 0 to 100, not {n}"),
            ));
        }
    };
    let rule = save::read_rule(&body.rule)?;
    let view = preview_rule(&state, caller.workspace, &rule, sample, started).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// What `rule` would select now in `workspace`: its figures and `sample` members. The API's
/// preview and the dashboard's builder both answer with it; `started` is when the request
/// came in, for `took_ms`.
pub(crate) async fn preview_rule(
    state: &AppState,
    workspace: WorkspaceId,
    rule: &Rule,
    sample: u64,
    started: std::time::Instant,
) -> Result<PreviewView, clarion_segment::SegmentError> {
    let valid = save::check_rule(&state.db, workspace, None, rule).await?;
    let now = Timestamp::now();
    let backend = state.db.get_database_backend();
    let members = clarion_segment::compile(&valid, workspace, backend, now)?;
    let options = preview_options(state);
    let overview = report::overview(&state.db, workspace, members, None, options).await?;
    let ids = if sample > 0 {
        clarion_segment::members(&state.db, workspace, &valid, now, None, sample, options).await?
    } else {
        Vec::new()
    };
    let sample = report::contacts_by_id(&state.db, workspace, &ids).await?;
    Ok(PreviewView {
        rule: rule.to_json(),
        rule_text: rule.to_text(),
        overview,
        sample,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// A stored segment's health: size, share of the base, value, reach per channel, overlap
/// with the other segments, and the last 30 days of entries and exits.
#[utoipa::path(get, path = "/api/v1/segments/{segment}/health", tag = "segments",
    params(("segment" = String, Path, description = "Numeric id or slug")),
    responses((status = 200, body = HealthView), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn health(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let segment = find(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(health_of(&state, caller.workspace, segment).await?))
}

/// A stored segment's health report, for the API and the dashboard's segment page.
pub(crate) async fn health_of(
    state: &AppState,
    workspace: WorkspaceId,
    segment: Segment,
) -> Result<HealthView, ApiError> {
    let figures = figures_of(state, workspace, &segment).await?;
    Ok(HealthView {
        segment: segment.into(),
        overview: figures.overview,
        last_30_days: figures.last_30_days,
    })
}

/// What the health report says of a segment's current members.
#[derive(Debug, Clone)]
pub(crate) struct SegmentFigures {
    pub overview: Overview,
    pub last_30_days: Vec<Day>,
}

/// The figures of [`health_of`]: aggregates over every current member, so a large segment's
/// take a while (3 s at 1,000,000 members).
pub(crate) async fn figures_of(
    state: &AppState,
    workspace: WorkspaceId,
    segment: &Segment,
) -> Result<SegmentFigures, ApiError> {
    let overview = report::overview(
        &state.db,
        workspace,
        report::members_of(segment.id),
        Some(segment.id),
        preview_options(state),
    )
    .await?;
    let now = Timestamp::now();
    let last_30_days = report::history(
        &state.db,
        segment,
        Timestamp::from_millis(now.millis() - 29 * 86_400_000),
        now,
    )
    .await?;
    Ok(SegmentFigures {
        overview,
        last_30_days,
    })
}

/// Query parameters of the member list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// `json` (default; paged) or `csv` (every member, as a download).
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
    /// 1 to 1,000 members per page (JSON), 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// The `next` cursor of the previous page.
    #[param(value_type = Option<super::cursor::Cursor>)]
    pub cursor: Option<String>,
}

/// A member of a stored segment.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    #[serde(flatten)]
    pub contact: MemberRow,
    pub entered_at: Option<Timestamp>,
}

/// A page of members.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembersPage {
    pub members: Vec<MemberView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next: Option<String>,
}

/// The current members of a segment: JSON pages, or all of them as CSV
/// (`external_id,email,first_name,last_name,country,entered_at`).
#[utoipa::path(get, path = "/api/v1/segments/{segment}/members", tag = "segments",
    params(("segment" = String, Path, description = "Numeric id or slug"), MembersQuery),
    responses((status = 200, description = "JSON page, or text/csv with format=csv",
            content((MembersPage = "application/json"), (String = "text/csv"))),
        (status = 400, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn members(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<MembersQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let segment = find(&state, &caller, &path).await?;
    match query.format.as_deref() {
        None | Some("json") => {}
        Some("csv") => return members_csv(&state, &segment).await,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("format must be json or csv, not {other:?}"),
            ));
        }
    }
    let limit = page_limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(cursor::decode)
        .transpose()?
        .map(ContactId);
    let rows = report::members_page(&state.db, &segment, after, limit).await?;
    let next = (rows.len() as u64 == limit)
        .then(|| rows.last().map(|r| cursor::encode(r.id)))
        .flatten();
    Ok(HttpResponse::Ok().json(MembersPage {
        members: rows
            .into_iter()
            .map(|row| MemberView {
                entered_at: row.entered_at.map(Timestamp::from_millis),
                contact: row,
            })
            .collect(),
        next,
    }))
}

/// Every current member of `segment` as a CSV download, read a page at a time; the API and
/// the dashboard's export answer the same file.
pub(crate) async fn members_csv(
    state: &AppState,
    segment: &Segment,
) -> Result<HttpResponse, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| ApiError::internal(&e);
    writer
        .write_record([
            "external_id",
            "email",
            "first_name",
            "last_name",
            "country",
            "entered_at",
        ])
        .map_err(csv_error)?;
    let mut after = None;
    loop {
        let rows = report::members_page(&state.db, segment, after, 5000).await?;
        for row in &rows {
            writer
                .write_record([
                    row.external_id.as_str(),
                    row.email.as_deref().unwrap_or(""),
                    row.first_name.as_deref().unwrap_or(""),
                    row.last_name.as_deref().unwrap_or(""),
                    row.country.as_deref().unwrap_or(""),
                    &row.entered_at
                        .map(|t| Timestamp::from_millis(t).to_rfc3339())
                        .unwrap_or_default(),
                ])
                .map_err(csv_error)?;
        }
        match rows.last() {
            Some(last) if rows.len() == 5000 => after = Some(ContactId(last.id)),
            _ => break,
        }
    }
    let body = writer
        .into_inner()
        .map_err(|e| ApiError::internal(e.error()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{}.csv\"", segment.slug),
        ))
        .body(body))
}

/// Query parameters of the upload.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// `replace` (default: the list becomes the members), `add` or `remove`.
    #[param(pattern = "^(replace|add|remove)$")]
    pub mode: Option<String>,
}

/// What an upload did.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadReport {
    pub entered: u64,
    pub exited: u64,
    pub member_count: i64,
    /// Lines naming no known contact (line numbers count the header as line 1).
    pub unknown: Vec<UnknownLine>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnknownLine {
    pub line: u64,
    pub external_id: String,
    pub reason: String,
}

/// Sets the members of a static segment from a CSV of external ids (`text/csv`: a header
/// row with an `external_id` column, or one id per line without a header). Lines naming
/// unknown contacts are reported and skipped; the rest are kept.
#[utoipa::path(put, path = "/api/v1/segments/{segment}/members", tag = "segments",
    params(("segment" = String, Path, description = "Numeric id or slug"), UploadQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = UploadReport), (status = 404, body = ApiError),
        (status = 409, description = "not a static segment", body = ApiError), (status = 422, body = ApiError)),
    security(("api_key" = [])))]
pub async fn upload_members(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<UploadQuery>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Marketer)?;
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("text/csv") && !content_type.starts_with("text/plain") {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("send the list as text/csv, not {content_type:?}"),
        ));
    }
    let mode = match query.mode.as_deref() {
        None | Some("replace") => Upload::Replace,
        Some("add") => Upload::Add,
        Some("remove") => Upload::Remove,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("mode must be replace, add or remove, not {other:?}"),
            ));
        }
    };
    let segment = find(&state, &caller, &path).await?;
    if segment.kind != SegmentKind::Static {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "segment {:?} is computed from its rule; only static segments take uploaded members",
                segment.slug
            ),
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::invalid_field(
            "body",
            format!("the list is not UTF-8 (byte {})", e.valid_up_to()),
        )
    })?;
    let (listed, mut unknown) = read_id_list(text)?;
    let ids: Vec<&str> = listed.iter().map(|(_, id)| id.as_str()).collect();
    let found =
        contact_store::contacts::resolve_ids(&state.db, caller.workspace, &ids, false).await?;
    let mut contacts = Vec::with_capacity(found.len());
    for (line, id) in &listed {
        match found.get(id.as_str()) {
            Some(contact) => contacts.push(ContactId(*contact)),
            None => unknown.push(UnknownLine {
                line: *line,
                external_id: id.as_str().to_string(),
                reason: "no contact has this external_id".into(),
            }),
        }
    }
    unknown.sort_by_key(|u| u.line);
    let changes =
        membership::replace_static_members(&state.db, &segment, &contacts, mode, Timestamp::now())
            .await?;
    let member_count = store::get(&state.db, caller.workspace, segment.id)
        .await?
        .map_or(0, |s| s.member_count);
    Ok(HttpResponse::Ok().json(UploadReport {
        entered: changes.entered,
        exited: changes.exited,
        member_count,
        unknown,
    }))
}

type IdList = (Vec<(u64, ExternalId)>, Vec<UnknownLine>);

/// The external ids of an uploaded list, with their line numbers; malformed lines are
/// reported, not fatal.
fn read_id_list(text: &str) -> Result<IdList, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut column = 0;
    let mut listed = Vec::new();
    let mut bad = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index as u64 + 1;
        let record =
            record.map_err(|e| ApiError::invalid_field("body", format!("line {line}: {e}")))?;
        if index == 0 {
            if let Some(position) = record
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case("external_id"))
            {
                column = position;
                continue;
            }
            if record.len() > 1 {
                return Err(ApiError::invalid_field(
                    "body",
                    "the first line names no external_id column; send a header with external_id, or one id per line",
                ));
            }
        }
        let Some(value) = record.get(column) else {
            bad.push(UnknownLine {
                line,
                external_id: String::new(),
                reason: format!("no value in column {}", column + 1),
            });
            continue;
        };
        if value.trim().is_empty() && record.len() <= 1 {
            continue;
        }
        match ExternalId::parse(value.trim()) {
            Ok(id) => listed.push((line, id)),
            Err(e) => bad.push(UnknownLine {
                line,
                external_id: value.to_string(),
                reason: e.to_string(),
            }),
        }
    }
    Ok((listed, bad))
}

/// Query parameters of the history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// First day (RFC 3339 or YYYY-MM-DD); 30 days ago by default.
    pub since: Option<String>,
    /// Last day; today by default.
    pub until: Option<String>,
}

/// Entries, exits and size per UTC day.
#[utoipa::path(get, path = "/api/v1/segments/{segment}/history", tag = "segments",
    params(("segment" = String, Path, description = "Numeric id or slug"), HistoryQuery),
    responses((status = 200, body = Vec<Day>), (status = 400, body = ApiError), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn history(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let segment = find(&state, &caller, &path).await?;
    let now = Timestamp::now();
    let parse = |name: &str, value: &Option<String>, default: i64| match value {
        None => Ok(Timestamp::from_millis(default)),
        Some(text) => Timestamp::parse_lenient(text, chrono_tz::UTC)
            .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, format!("{name}: {e}"))),
    };
    let until = parse("until", &query.until, now.millis())?;
    let since = parse("since", &query.since, until.millis() - 29 * 86_400_000)?;
    if since > until {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "since must not be after until",
        ));
    }
    if until.millis() - since.millis() > 3660 * 86_400_000 {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "the history covers at most 10 years at a time",
        ));
    }
    let days = report::history(&state.db, &segment, since, until).await?;
    Ok(HttpResponse::Ok().json(days))
}

/// A contact's segments: current stays first, then past ones, each with entry and exit
/// times.
#[utoipa::path(get, path = "/api/v1/contacts/{external_id}/segments", tag = "segments",
    params(("external_id" = clarion_model::ExternalId, Path, description = "The contact's external id")),
    responses((status = 200, body = Vec<Stay>), (status = 404, body = ApiError)),
    security(("api_key" = [])))]
pub async fn contact_segments(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = super::external_id_in_path(&path)?;
    let found =
        contact_store::contacts::resolve_ids(&state.db, caller.workspace, &[id.as_str()], false)
            .await?;
    let contact = found
        .get(id.as_str())
        .ok_or_else(|| ApiError::not_found(format!("contact {:?}", id.as_str())))?;
    let stays = report::stays_of_contact(&state.db, ContactId(*contact)).await?;
    Ok(HttpResponse::Ok().json(stays))
}
