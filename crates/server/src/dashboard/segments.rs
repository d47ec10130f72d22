//! Segments: the list (size, value, size over 30 days), a segment's health report and
//! members with their CSV export, the builder (a visual editor and the text form of the same
//! rule, previewed live), cross-tabs and suggested segments. Everyone may look; marketers
//! save. Every figure comes from the same domain calls as `/api/v1/segments`.

use std::collections::BTreeMap;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use clarion_model::{Coded, ContactId, ErrorCode, FieldError, Role, SegmentId, Timestamp};
use clarion_segment::{
    CrosstabRequest, Rule, SegmentError, SuggestOptions, crosstab, report,
    save::{self, SegmentInput, SegmentPatch},
    store::{self, Category, Segment, SegmentKind},
    suggest,
};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{PageError, SignedIn, page_error, render_page, see_other, signed_page, view};
use crate::{
    routes::{
        cursor,
        segments::{HealthView, figures_of, members_csv, preview_rule},
    },
    state::AppState,
};

/// Segments per page of the list.
const PAGE: usize = 25;
/// Members per page of a segment.
const MEMBERS: u64 = 50;
/// Days drawn by the list's sparklines.
const SPARK_DAYS: i64 = 30;
/// Members listed under a live preview.
const SAMPLE: u64 = 5;
const DAY: i64 = 86_400_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/segments", web::get().to(list))
        .route("/segments", web::post().to(create))
        .route("/segments/new", web::get().to(new_page))
        .route("/segments/preview", web::post().to(preview))
        .route("/segments/rule", web::post().to(convert))
        .route("/segments/crosstab", web::get().to(crosstab_page))
        .route("/segments/suggestions", web::get().to(suggestions_page))
        .route("/segments/suggestions", web::post().to(save_suggestion))
        .route("/segments/{segment}", web::get().to(detail))
        .route("/segments/{segment}", web::post().to(update))
        .route("/segments/{segment}/edit", web::get().to(edit_page))
        .route("/segments/{segment}/members.csv", web::get().to(export));
}

async fn find(state: &AppState, signed: &SignedIn, key: &str) -> Result<Segment, PageError> {
    store::find(&state.db, signed.session.workspace, key)
        .await
        .map_err(page_error)?
        .ok_or_else(|| PageError::NotFound(format!("There is no segment {key:?}.")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// 1-based.
    page: usize,
}

#[derive(Serialize)]
struct ListLine {
    id: i64,
    slug: String,
    name: String,
    category: Category,
    kind: SegmentKind,
    members: i64,
    revenue: f64,
    /// Polyline points of the size over the last days, in a 100 × 24 box.
    spark: String,
    first_size: u64,
    last_size: u64,
}

/// The slow figures of a page of the segment list.
pub(crate) struct ListFigures {
    /// Each segment's size per day over the last [`SPARK_DAYS`], by segment id.
    histories: BTreeMap<i64, Vec<report::Day>>,
    /// Each segment's members' revenue, by segment id.
    revenues: BTreeMap<i64, f64>,
}

/// `GET /segments`: a page of segments by slug, each with its size, its members' revenue and
/// its size over the last 30 days (three grouped queries for the whole page, kept a while
/// when they are slow: see [`super::PageFigures`]).
pub async fn list(
    state: web::Data<AppState>,
    signed: SignedIn,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    let all = store::list(&state.db, signed.session.workspace)
        .await
        .map_err(page_error)?;
    let pages = all.len().div_ceil(PAGE).max(1);
    let page = query.page.clamp(1, pages);
    let shown: Vec<Segment> = all.into_iter().skip((page - 1) * PAGE).take(PAGE).collect();
    let ids: Vec<SegmentId> = shown.iter().map(|s| s.id).collect();
    let compute = {
        let (db, ids) = (state.db.clone(), ids.clone());
        move || async move { list_figures(&db, &ids).await }
    };
    let (figures, _) = state
        .pages
        .segment_lists
        .get(ids, compute)
        .await
        .map_err(page_error)?;
    let (histories, revenues) = (&figures.histories, &figures.revenues);
    let lines: Vec<ListLine> = shown
        .into_iter()
        .map(|s| {
            let sizes: Vec<u64> = histories
                .get(&s.id.0)
                .map(|days| days.iter().map(|d| d.size).collect())
                .unwrap_or_default();
            ListLine {
                id: s.id.0,
                revenue: revenues.get(&s.id.0).copied().unwrap_or(0.0),
                spark: sparkline(&sizes),
                first_size: sizes.first().copied().unwrap_or(0),
                last_size: sizes.last().copied().unwrap_or(0),
                slug: s.slug,
                name: s.name,
                category: s.category,
                kind: s.kind,
                members: s.member_count,
            }
        })
        .collect();
    Ok(signed_page(
        StatusCode::OK,
        "segments.html",
        &signed,
        ("Segments", "segments"),
        context! { segments => view(&lines), page, pages, days => SPARK_DAYS },
    ))
}

async fn list_figures(
    db: &sea_orm::DatabaseConnection,
    ids: &[SegmentId],
) -> Result<ListFigures, SegmentError> {
    let now = Timestamp::now();
    let since = Timestamp::from_millis(now.millis() - (SPARK_DAYS - 1) * DAY);
    Ok(ListFigures {
        histories: report::histories(db, ids, since, now).await?,
        revenues: report::revenues(db, ids).await?,
    })
}

/// Segments at least this large have their figures computed at start ([`warm`]).
const WARM_FROM_MEMBERS: i64 = 100_000;

/// Computes, in turn, the figures of the list's first page and of every segment of at least
/// [`WARM_FROM_MEMBERS`] members of every workspace, so that their first views after a start
/// do not wait (seconds at a million members). Failures are logged and left to those views.
pub(crate) async fn warm(state: &AppState) {
    let figures = &state.pages;
    let workspaces = match clarion_segment::sweep::workspace_ids(&state.db).await {
        Ok(workspaces) => workspaces,
        Err(error) => {
            tracing::warn!(%error, "the segments' figures were not computed at start");
            return;
        }
    };
    for workspace in workspaces {
        let all = match store::list(&state.db, workspace).await {
            Ok(all) => all,
            Err(error) => {
                tracing::warn!(%error, workspace = workspace.0, "the segments' figures were not computed at start");
                continue;
            }
        };
        let first: Vec<SegmentId> = all.iter().take(PAGE).map(|s| s.id).collect();
        figures
            .segment_lists
            .warm(first.clone(), list_figures(&state.db, &first))
            .await;
        for segment in all.iter().filter(|s| s.member_count >= WARM_FROM_MEMBERS) {
            figures
                .segments
                .warm(
                    (segment.id, segment.updated_at),
                    figures_of(state, workspace, segment),
                )
                .await;
        }
    }
}

/// The points of a polyline drawing `sizes` left to right in a 100 × 24 box, the largest
/// size at the top (a flat line at the bottom when all are zero).
fn sparkline(sizes: &[u64]) -> String {
    let top = sizes.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = 100.0 / (sizes.len().max(2) - 1) as f64;
    sizes
        .iter()
        .enumerate()
        .map(|(i, size)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                23.0 - 22.0 * (*size as f64) / top
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MembersQuery {
    cursor: String,
}

/// `GET /segments/{segment}`: the health report (size, share, value, reach, overlap, 30 days
/// of entries and exits) and a page of members.
pub async fn detail(
    state: web::Data<AppState>,
    signed: SignedIn,
    path: web::Path<String>,
    query: web::Query<MembersQuery>,
) -> Result<HttpResponse, PageError> {
    let segment = find(&state, &signed, &path).await?;
    let after = match query.cursor.as_str() {
        "" => None,
        text => Some(ContactId(cursor::decode(text)?)),
    };
    let members = report::members_page(&state.db, &segment, after, MEMBERS)
        .await
        .map_err(page_error)?;
    let next = (members.len() as u64 == MEMBERS)
        .then(|| members.last().map(|m| cursor::encode(m.id)))
        .flatten();
    let members: Vec<_> = members
        .iter()
        .map(|m| context! { row => view(m), entered_at => m.entered_at })
        .collect();
    let title = segment.name.clone();
    let key = (segment.id, segment.updated_at);
    let compute = {
        let (state, segment) = (state.clone(), segment.clone());
        let workspace = signed.session.workspace;
        move || async move { figures_of(&state, workspace, &segment).await }
    };
    let (figures, figures_at) = state
        .pages
        .segments
        .get(key, compute)
        .await
        .map_err(page_error)?;
    let health = HealthView {
        segment: segment.into(),
        overview: figures.overview.clone(),
        last_30_days: figures.last_30_days.clone(),
    };
    let chart = json!({
        "x": health.last_30_days.iter().map(|d| day_seconds(&d.date)).collect::<Vec<_>>(),
        "size": health.last_30_days.iter().map(|d| d.size).collect::<Vec<_>>(),
        "entered": health.last_30_days.iter().map(|d| d.entered).collect::<Vec<_>>(),
        "exited": health.last_30_days.iter().map(|d| d.exited).collect::<Vec<_>>(),
    });
    Ok(signed_page(
        StatusCode::OK,
        "segment.html",
        &signed,
        (title.as_str(), "segments"),
        context! {
            health => view(&health),
            members,
            next,
            paged => !query.cursor.is_empty(),
            chart => view(&chart),
            figures_at => figures_at.millis(),
        },
    ))
}

/// `YYYY-MM-DD` as seconds since 1970 at midnight UTC, for charts.
fn day_seconds(date: &str) -> i64 {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |at| at.and_utc().timestamp())
}

/// `GET /segments/{segment}/members.csv`: every current member, the file the API exports.
pub async fn export(
    state: web::Data<AppState>,
    signed: SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let segment = find(&state, &signed, &path).await?;
    Ok(members_csv(&state, &segment).await?)
}

/// The builder's form as typed. The rule is read from the editor the person used last
/// (`mode`): the visual editor's JSON or the text form.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SegmentForm {
    name: String,
    slug: String,
    description: String,
    category: String,
    /// `visual` or `text`.
    mode: String,
    rule_text: String,
    rule_json: String,
    #[serde(skip_serializing)]
    csrf: String,
}

impl SegmentForm {
    fn of(segment: &Segment) -> Self {
        SegmentForm {
            name: segment.name.clone(),
            slug: segment.slug.clone(),
            description: segment.description.clone(),
            category: category_name(segment.category),
            mode: "visual".into(),
            rule_text: segment.rule.as_ref().map(Rule::to_text).unwrap_or_default(),
            rule_json: segment
                .rule
                .as_ref()
                .map(|rule| rule.to_json().to_string())
                .unwrap_or_default(),
            csrf: String::new(),
        }
    }

    fn is_text(&self) -> bool {
        self.mode == "text"
    }

    /// The rule the person wrote, from the editor they used.
    fn rule(&self) -> Result<Rule, SegmentError> {
        if self.is_text() {
            return save::read_rule(&Value::String(self.rule_text.clone()));
        }
        let value: Value = serde_json::from_str(&self.rule_json).map_err(|e| {
            SegmentError::Json(clarion_segment::RuleError {
                path: String::new(),
                message: format!("the visual rule could not be read: {e}"),
            })
        })?;
        save::read_rule(&value)
    }

    fn category(&self) -> Result<Category, String> {
        serde_json::from_value(Value::String(self.category.clone()))
            .map_err(|_| format!("choose one of {}", CATEGORIES.join(", ")))
    }
}

const CATEGORIES: [&str; 8] = [
    "demographic",
    "geographic",
    "psychographic",
    "firmographic",
    "technographic",
    "behavioural",
    "value",
    "needs",
];

fn category_name(category: Category) -> String {
    serde_json::to_value(category)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// What is wrong with a rule, for the page: the message, each bad node, and for the text
/// form the line cut at the bad column so the page can mark it.
#[derive(Debug, Default, Serialize)]
struct RuleProblem {
    message: String,
    errors: Vec<FieldError>,
    mark: Option<Mark>,
}

#[derive(Debug, Serialize)]
struct Mark {
    line: usize,
    column: usize,
    before: String,
    at: String,
    after: String,
}

impl RuleProblem {
    fn of(error: &SegmentError, text: Option<&str>) -> Self {
        let errors = error.details();
        let mark = errors.iter().find_map(|e| {
            let (line, column) = (e.line?, e.column?);
            mark(text?, line, column)
        });
        RuleProblem {
            message: error.to_string(),
            errors,
            mark,
        }
    }
}

/// `text`'s line `line` split around the character at `column` (both 1-based); past the end
/// of the line the mark is a blank.
fn mark(text: &str, line: usize, column: usize) -> Option<Mark> {
    let content = text.lines().nth(line.checked_sub(1)?).unwrap_or("");
    let chars: Vec<char> = content.chars().collect();
    let at = column.saturating_sub(1).min(chars.len());
    Some(Mark {
        line,
        column,
        before: chars[..at].iter().collect(),
        at: chars.get(at).map_or(" ".into(), |c| c.to_string()),
        after: chars
            .get(at + 1..)
            .map(|rest| rest.iter().collect())
            .unwrap_or_default(),
    })
}

/// Whether a segment error is about what was typed (answered on the form) rather than a
/// failure of the service.
fn is_about_input(error: &SegmentError) -> bool {
    matches!(
        error.code(),
        ErrorCode::InvalidRule | ErrorCode::ValidationFailed | ErrorCode::QueryTimeout
    )
}

/// The builder: a new segment, or changes to `editing`.
struct Builder<'a> {
    form: SegmentForm,
    editing: Option<&'a Segment>,
    problem: Option<RuleProblem>,
    errors: BTreeMap<String, String>,
}

impl Builder<'_> {
    fn render(self, signed: &SignedIn, status: StatusCode) -> HttpResponse {
        let (title, action) = match self.editing {
            Some(segment) => (
                format!("Edit {}", segment.name),
                format!("/segments/{}", segment.id.0),
            ),
            None => ("New segment".to_string(), "/segments".to_string()),
        };
        let is_static = self
            .editing
            .is_some_and(|segment| segment.kind == SegmentKind::Static);
        signed_page(
            status,
            "segment_form.html",
            signed,
            (title.as_str(), "segments"),
            context! {
                form => view(&self.form),
                text_mode => self.form.is_text(),
                action,
                editing => self.editing.map(|s| s.id.0),
                is_static,
                categories => CATEGORIES,
                problem => view(&self.problem),
                errors => view(&self.errors),
            },
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewQuery {
    /// A rule to start from, in the text form.
    rule: String,
}

/// `GET /segments/new`.
pub async fn new_page(
    signed: SignedIn,
    query: web::Query<NewQuery>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    let rule = match query.rule.as_str() {
        "" => Rule::All(Vec::new()),
        text => clarion_segment::parse_text(text).unwrap_or(Rule::All(Vec::new())),
    };
    let form = SegmentForm {
        category: "behavioural".into(),
        mode: "visual".into(),
        rule_text: rule.to_text(),
        rule_json: rule.to_json().to_string(),
        ..SegmentForm::default()
    };
    Ok(Builder {
        form,
        editing: None,
        problem: None,
        errors: BTreeMap::new(),
    }
    .render(&signed, StatusCode::OK))
}

/// `GET /segments/{segment}/edit`.
pub async fn edit_page(
    state: web::Data<AppState>,
    signed: SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    let segment = find(&state, &signed, &path).await?;
    Ok(Builder {
        form: SegmentForm::of(&segment),
        editing: Some(&segment),
        problem: None,
        errors: BTreeMap::new(),
    }
    .render(&signed, StatusCode::OK))
}

/// The builder again with what went wrong: field errors beside their fields, a rule problem
/// marked in the editor, what was typed kept.
fn refused(
    signed: &SignedIn,
    form: SegmentForm,
    editing: Option<&Segment>,
    error: &SegmentError,
) -> HttpResponse {
    let mut errors = BTreeMap::new();
    let mut problem = None;
    match error {
        SegmentError::InvalidRequest(fields) => {
            for field in fields {
                errors.insert(field.path.clone(), field.message.clone());
            }
        }
        SegmentError::Conflict(message) => {
            errors.insert("slug".to_string(), message.clone());
        }
        other => problem = Some(RuleProblem::of(other, Some(&form.rule_text))),
    }
    let status = if matches!(error, SegmentError::Conflict(_)) {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Builder {
        form,
        editing,
        problem,
        errors,
    }
    .render(signed, status)
}

/// `POST /segments`: saves a new dynamic segment and shows it.
pub async fn create(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<SegmentForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let form = form.into_inner();
    let (rule, category) = match (form.rule(), form.category()) {
        (Ok(rule), Ok(category)) => (rule, category),
        (Err(error), _) => return Ok(refused(&signed, form, None, &error)),
        (_, Err(message)) => {
            let error = SegmentError::InvalidRequest(vec![clarion_segment::RuleError {
                path: "category".into(),
                message,
            }]);
            return Ok(refused(&signed, form, None, &error));
        }
    };
    let input = SegmentInput {
        name: form.name.clone(),
        slug: Some(form.slug.trim().to_string()).filter(|slug| !slug.is_empty()),
        description: form.description.clone(),
        category,
        kind: None,
        rule: Some(rule.to_json()),
    };
    match save::create(&state.db, signed.session.workspace, input, Timestamp::now()).await {
        Ok(segment) => Ok(see_other(&format!("/segments/{}", segment.id.0)).finish()),
        Err(error) if is_about_input(&error) || matches!(error, SegmentError::Conflict(_)) => {
            Ok(refused(&signed, form, None, &error))
        }
        Err(error) => Err(page_error(error)),
    }
}

/// `POST /segments/{segment}`: saves changes to a segment; a new rule recomputes its
/// members.
pub async fn update(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    path: web::Path<String>,
    form: web::Form<SegmentForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let segment = find(&state, &signed, &path).await?;
    let form = form.into_inner();
    let rule = if segment.kind == SegmentKind::Static {
        None
    } else {
        match form.rule() {
            Ok(rule) => Some(rule.to_json()),
            Err(error) => return Ok(refused(&signed, form, Some(&segment), &error)),
        }
    };
    let category = match form.category() {
        Ok(category) => category,
        Err(message) => {
            let error = SegmentError::InvalidRequest(vec![clarion_segment::RuleError {
                path: "category".into(),
                message,
            }]);
            return Ok(refused(&signed, form, Some(&segment), &error));
        }
    };
    let patch = SegmentPatch {
        name: Some(form.name.clone()),
        description: Some(form.description.clone()),
        category: Some(category),
        rule,
    };
    match save::update(&state.db, &segment, patch, Timestamp::now()).await {
        Ok(saved) => Ok(see_other(&format!("/segments/{}", saved.id.0)).finish()),
        Err(error) if is_about_input(&error) => Ok(refused(&signed, form, Some(&segment), &error)),
        Err(error) => Err(page_error(error)),
    }
}

/// `POST /segments/preview`: the live preview under the builder, for htmx: size, share,
/// value, reach and a few members, or what is wrong with the rule (answered 200 so htmx
/// shows it in place).
pub async fn preview(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<SegmentForm>,
) -> Result<HttpResponse, PageError> {
    signed.check_form(&request, &form.csrf)?;
    let started = Instant::now();
    let text = form.is_text().then_some(form.rule_text.as_str());
    let outcome = match form.rule() {
        Ok(rule) => preview_rule(&state, signed.session.workspace, &rule, SAMPLE, started).await,
        Err(error) => Err(error),
    };
    let (preview, problem) = match outcome {
        Ok(preview) => (Some(preview), None),
        Err(error) if is_about_input(&error) => (None, Some(RuleProblem::of(&error, text))),
        Err(error) => return Err(page_error(error)),
    };
    Ok(render_page(
        StatusCode::OK,
        "segment_preview.html",
        context! { preview => view(&preview), problem => view(&problem) },
    ))
}

/// `POST /segments/rule`: the rule of the form in both forms, for the builder's switch
/// between the visual editor and the text; a rule that does not read answers 422 with the
/// problem, and the editor stays as it is.
pub async fn convert(
    request: HttpRequest,
    signed: SignedIn,
    form: web::Form<SegmentForm>,
) -> Result<HttpResponse, PageError> {
    signed.check_form(&request, &form.csrf)?;
    match form.rule() {
        Ok(rule) => Ok(HttpResponse::Ok().json(json!({
            "json": rule.to_json(),
            "text": rule.to_text(),
        }))),
        Err(error) => {
            let text = form.is_text().then_some(form.rule_text.as_str());
            Ok(HttpResponse::UnprocessableEntity()
                .json(json!({ "problem": RuleProblem::of(&error, text) })))
        }
    }
}

/// The cross-tab form: each dimension is an attribute, a trait, a segment or a rule, with
/// optional numeric bucket edges.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CrosstabForm {
    rows_kind: String,
    rows: String,
    rows_edges: String,
    columns_kind: String,
    columns: String,
    columns_edges: String,
    filter: String,
}

impl CrosstabForm {
    /// The `POST /api/v1/crosstab` body this form asks for; `None` before anything is asked.
    fn request(&self) -> Option<Value> {
        if self.rows.trim().is_empty() && self.columns.trim().is_empty() {
            return None;
        }
        let dimension = |kind: &str, name: &str, edges: &str| {
            let mut map = serde_json::Map::new();
            let key = match kind {
                "trait" | "segment" | "rule" => kind,
                _ => "attr",
            };
            map.insert(key.into(), Value::String(name.trim().to_string()));
            if !edges.trim().is_empty() {
                let edges: Vec<Value> = edges
                    .split(',')
                    .map(|edge| {
                        edge.trim()
                            .parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                            .map_or_else(|| Value::String(edge.trim().into()), Value::Number)
                    })
                    .collect();
                map.insert("edges".into(), Value::Array(edges));
            }
            Value::Object(map)
        };
        let mut body = json!({
            "rows": dimension(&self.rows_kind, &self.rows, &self.rows_edges),
            "columns": dimension(&self.columns_kind, &self.columns, &self.columns_edges),
        });
        if !self.filter.trim().is_empty() {
            body["filter"] = Value::String(self.filter.clone());
        }
        Some(body)
    }
}

/// `GET /segments/crosstab`: how the contacts spread over two dimensions.
pub async fn crosstab_page(
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Query<CrosstabForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    let mut problem = None;
    let mut table = None;
    if let Some(body) = form.request() {
        let outcome = match CrosstabRequest::from_json(&body) {
            Ok(request) => {
                crosstab(
                    &state.db,
                    signed.session.workspace,
                    &request,
                    Timestamp::now(),
                )
                .await
            }
            Err(error) => Err(error),
        };
        match outcome {
            Ok(computed) => table = Some(computed),
            Err(error) if is_about_input(&error) => problem = Some(RuleProblem::of(&error, None)),
            Err(error) => return Err(page_error(error)),
        }
    }
    let status = if problem.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(signed_page(
        status,
        "crosstab.html",
        &signed,
        ("Cross-tab", "segments"),
        context! { form => view(&form), table => view(&table), problem => view(&problem) },
    ))
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SuggestQuery {
    /// How many groups to look for; nothing is computed until it is given.
    clusters: Option<usize>,
}

/// `GET /segments/suggestions`: groups found by clustering the contacts on RFM and
/// interests, each with a rule that can be saved in one click. Clustering reads the whole
/// base, so it runs only when asked.
pub async fn suggestions_page(
    state: web::Data<AppState>,
    signed: SignedIn,
    query: web::Query<SuggestQuery>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    let mut found = None;
    let mut problem = None;
    if let Some(clusters) = query.clusters {
        let options = SuggestOptions {
            clusters,
            ..SuggestOptions::default()
        };
        match suggest(&state.db, signed.session.workspace, options).await {
            Ok(suggestions) => found = Some(suggestions),
            Err(error) if is_about_input(&error) => problem = Some(RuleProblem::of(&error, None)),
            Err(error) => return Err(page_error(error)),
        }
    }
    let status = if problem.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(signed_page(
        status,
        "suggestions.html",
        &signed,
        ("Suggested segments", "segments"),
        context! {
            found => view(&found),
            problem => view(&problem),
            clusters => query.clusters.unwrap_or(SuggestOptions::default().clusters),
        },
    ))
}

/// One suggestion as its "Save" button posts it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SuggestionForm {
    name: String,
    slug: String,
    category: String,
    description: String,
    rule: String,
    csrf: String,
}

/// `POST /segments/suggestions`: saves a suggestion as a segment and shows it; a name or slug
/// already taken opens the builder with the suggestion to rename it.
pub async fn save_suggestion(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<SuggestionForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let form = form.into_inner();
    let builder_form = SegmentForm {
        name: form.name.clone(),
        slug: form.slug.clone(),
        description: form.description.clone(),
        category: form.category.clone(),
        mode: "text".into(),
        rule_text: form.rule.clone(),
        rule_json: String::new(),
        csrf: String::new(),
    };
    let category = builder_form.category().unwrap_or(Category::Behavioural);
    let input = SegmentInput {
        name: form.name,
        slug: Some(form.slug).filter(|slug| !slug.is_empty()),
        description: form.description,
        category,
        kind: None,
        rule: Some(Value::String(form.rule)),
    };
    match save::create(&state.db, signed.session.workspace, input, Timestamp::now()).await {
        Ok(segment) => Ok(see_other(&format!("/segments/{}", segment.id.0)).finish()),
        Err(error) if is_about_input(&error) || matches!(error, SegmentError::Conflict(_)) => {
            Ok(refused(&signed, builder_form, None, &error))
        }
        Err(error) => Err(page_error(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bad_character_is_cut_out_of_its_line() {
        let marked = mark("country = \"DE\"\nand purchase(9x)", 2, 15).unwrap();
        assert_eq!(
            (
                marked.before.as_str(),
                marked.at.as_str(),
                marked.after.as_str()
            ),
            ("and purchase(9", "x", ")")
        );
        let past_end = mark("a =", 1, 4).unwrap();
        assert_eq!(
            (past_end.before.as_str(), past_end.at.as_str()),
            ("a =", " ")
        );
    }

    #[test]
    fn sparklines_span_the_box_with_the_largest_size_on_top() {
        assert_eq!(sparkline(&[0, 5, 10]), "0.0,23.0 50.0,12.0 100.0,1.0");
        assert_eq!(sparkline(&[0, 0]), "0.0,23.0 100.0,23.0");
    }
}
