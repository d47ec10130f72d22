//! Campaign pages: the list (sorted, paged), creating and editing a draft through
//! [`CampaignForm`], a campaign's page with a rendered preview of each variant for a sample
//! member of its segment, launching, pausing, resuming and cancelling (each after a
//! confirmation page), and live progress that htmx polls until the run is done.
//!
//! Viewers read every page; marketers see and use the buttons that change things. Every
//! change goes through the same domain calls as the JSON API, so both refuse the same input
//! with the same words.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use clarion_campaign::{
    Campaign, CampaignError, CampaignId, PreviewReport, PreviewRequest, RunStatus, Status,
    VariantId, control, deliveries, launch, store,
};
use clarion_model::Role;
use minijinja::{Value, context, value::Serde};
use serde::{Deserialize, Serialize};

use super::{
    PageError, SignedIn,
    campaign_form::{CampaignForm, FieldErrors, Op, errors_of},
    login::CsrfForm,
    render_page, see_other,
};
use crate::state::AppState;

/// Campaigns per page of the list.
const PAGE_SIZE: u64 = 25;

/// The list's query: `sort` (created, updated, name, status), `dir` (asc, desc), `page`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    sort: String,
    dir: String,
    page: String,
}

fn sort_key(name: &str) -> (store::SortKey, &'static str) {
    match name {
        "updated" => (store::SortKey::Updated, "updated"),
        "name" => (store::SortKey::Name, "name"),
        "status" => (store::SortKey::Status, "status"),
        _ => (store::SortKey::Created, "created"),
    }
}

/// `GET /campaigns`.
pub async fn list(
    state: web::Data<AppState>,
    signed: SignedIn,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    let (key, sort) = sort_key(&query.sort);
    // Newest first unless asked otherwise; names read best A to Z.
    let descending = match query.dir.as_str() {
        "asc" => false,
        "desc" => true,
        _ => key != store::SortKey::Name,
    };
    let page = query.page.parse::<u64>().unwrap_or(1).max(1);
    let (campaigns, total) = store::sorted(
        &state.db,
        signed.session.workspace,
        key,
        descending,
        (page - 1).saturating_mul(PAGE_SIZE),
        PAGE_SIZE,
    )
    .await
    .map_err(PageError::from_coded)?;
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    Ok(render_page(
        StatusCode::OK,
        "campaigns.html",
        context! {
            title => "Campaigns",
            active => "campaigns",
            user => Value::from(Serde(signed.user())),
            csrf => signed.session.csrf_token.clone(),
            campaigns => Value::from(Serde(&campaigns)),
            total, page, pages, sort,
            dir => if descending { "desc" } else { "asc" },
        },
    ))
}

/// A segment as the form's choice shows it.
#[derive(Serialize)]
struct SegmentChoice {
    slug: String,
    name: String,
    members: i64,
}

async fn segment_choices(
    state: &AppState,
    signed: &SignedIn,
) -> Result<Vec<SegmentChoice>, PageError> {
    Ok(
        clarion_segment::store::list(&state.db, signed.session.workspace)
            .await
            .map_err(PageError::from_coded)?
            .into_iter()
            .map(|s| SegmentChoice {
                slug: s.slug,
                name: s.name,
                members: s.member_count,
            })
            .collect(),
    )
}

/// The create or edit form, as typed, with its problems.
async fn form_page(
    state: &AppState,
    signed: &SignedIn,
    status: StatusCode,
    form: &CampaignForm,
    errors: &FieldErrors,
    campaign: Option<&Campaign>,
) -> Result<HttpResponse, PageError> {
    let segments = segment_choices(state, signed).await?;
    let (title, action) = match campaign {
        Some(c) => (
            format!("Edit {}", c.name),
            format!("/campaigns/{}/edit", c.id.0),
        ),
        None => ("New campaign".to_owned(), "/campaigns".to_owned()),
    };
    Ok(render_page(
        status,
        "campaign_form.html",
        context! {
            title, action,
            active => "campaigns",
            user => Value::from(Serde(signed.user())),
            csrf => signed.session.csrf_token.clone(),
            form => Value::from(Serde(form)),
            errors => Value::from(Serde(errors)),
            segments => Value::from(Serde(&segments)),
            campaign_id => campaign.map(|c| c.id.0),
        },
    ))
}

/// `GET /campaigns/new`.
pub async fn new_form(
    state: web::Data<AppState>,
    signed: SignedIn,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    form_page(
        &state,
        &signed,
        StatusCode::OK,
        &CampaignForm::default(),
        &FieldErrors::new(),
        None,
    )
    .await
}

/// `POST /campaigns`: saves a new draft, or adds a row the form asked for.
pub async fn create(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    pairs: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    let (form, op, csrf) = CampaignForm::parse(pairs.into_inner());
    signed.check_form(&request, &csrf)?;
    save(&state, &signed, form, op, None).await
}

pub(super) async fn load(
    state: &AppState,
    signed: &SignedIn,
    id: &str,
) -> Result<Campaign, PageError> {
    let missing = || PageError::NotFound("There is no such campaign.".into());
    let id = id.parse::<i64>().map_err(|_| missing())?;
    store::get(&state.db, signed.session.workspace, CampaignId(id))
        .await
        .map_err(PageError::from_coded)?
        .ok_or_else(missing)
}

/// `GET /campaigns/{id}/edit`.
pub async fn edit_form(
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    let campaign = load(&state, &signed, &id).await?;
    editable(&campaign)?;
    let form = CampaignForm::of(&campaign);
    form_page(
        &state,
        &signed,
        StatusCode::OK,
        &form,
        &FieldErrors::new(),
        Some(&campaign),
    )
    .await
}

/// `POST /campaigns/{id}/edit`.
pub async fn update(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    pairs: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    let (form, op, csrf) = CampaignForm::parse(pairs.into_inner());
    signed.check_form(&request, &csrf)?;
    let campaign = load(&state, &signed, &id).await?;
    editable(&campaign)?;
    save(&state, &signed, form, op, Some(campaign)).await
}

fn editable(campaign: &Campaign) -> Result<(), PageError> {
    if campaign.status == Status::Draft {
        Ok(())
    } else {
        Err(PageError::Conflict(format!(
            "campaign {:?} was launched; only drafts can be edited. Duplicate it through the API to change it.",
            campaign.name
        )))
    }
}

/// Saves the form (or grows it by the row a button asked for); a refused form comes back
/// as typed with each problem beside its field.
async fn save(
    state: &AppState,
    signed: &SignedIn,
    mut form: CampaignForm,
    op: Op,
    stored: Option<Campaign>,
) -> Result<HttpResponse, PageError> {
    if op != Op::Save {
        form.grow(op);
        return form_page(
            state,
            signed,
            StatusCode::OK,
            &form,
            &FieldErrors::new(),
            stored.as_ref(),
        )
        .await;
    }
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    let input = match form.input(stored.as_ref()) {
        Ok(input) => input,
        Err(errors) => {
            return form_page(state, signed, invalid, &form, &errors, stored.as_ref()).await;
        }
    };
    let workspace = signed.session.workspace;
    let saved = match &stored {
        None => store::create(&state.db, workspace, &input, None).await,
        Some(campaign) => store::update(&state.db, workspace, campaign.id, &input, None).await,
    };
    match saved {
        Ok(campaign) => {
            tracing::info!(
                campaign = campaign.id.0,
                user = signed.session.user_id,
                "campaign saved"
            );
            Ok(see_other(&format!("/campaigns/{}", campaign.id.0)).finish())
        }
        Err(CampaignError::Invalid(issues)) => {
            let errors = errors_of(&issues, &form.kept_rows());
            form_page(state, signed, invalid, &form, &errors, stored.as_ref()).await
        }
        Err(other) => Err(PageError::from_coded(other)),
    }
}

/// `GET /campaigns/{id}`: the campaign, its variants with previews, its progress and the
/// buttons the user's role allows.
pub async fn show(
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let campaign = load(&state, &signed, &id).await?;
    let progress = progress_of(&state, &signed, &campaign).await?;
    Ok(render_page(
        StatusCode::OK,
        "campaign.html",
        context! {
            title => campaign.name.clone(),
            active => "campaigns",
            user => Value::from(Serde(signed.user())),
            csrf => signed.session.csrf_token.clone(),
            campaign => Value::from(Serde(&campaign)),
            actions => Action::allowed(campaign.status).iter().map(|a| a.name()).collect::<Vec<_>>(),
            progress,
        },
    ))
}

/// The progress fragment's values, or none before launch. A completed or cancelled run's
/// counts are kept between views when they are slow to count (a quarter of a second at a
/// million recipients: see [`super::PageFigures`]).
async fn progress_of(
    state: &AppState,
    signed: &SignedIn,
    campaign: &Campaign,
) -> Result<Value, PageError> {
    let Some(run) = control::latest_run(&state.db, signed.session.workspace, campaign.id)
        .await
        .map_err(PageError::from_coded)?
    else {
        return Ok(Value::from(()));
    };
    let progress = if matches!(run.status, RunStatus::Completed | RunStatus::Cancelled) {
        let key = (run.id, run.updated_at);
        let compute = {
            let (db, campaign) = (state.db.clone(), campaign.clone());
            move || async move { deliveries::run_progress(&db, &campaign, run).await }
        };
        state
            .pages
            .finished_runs
            .get(key, compute)
            .await
            .map_err(PageError::from_coded)?
            .0
    } else {
        std::sync::Arc::new(
            deliveries::run_progress(&state.db, campaign, run)
                .await
                .map_err(PageError::from_coded)?,
        )
    };
    let total: u64 = progress.totals.values().sum();
    let settled = total - progress.remaining.min(total);
    let done = matches!(
        progress.run.status,
        RunStatus::Completed | RunStatus::Cancelled
    );
    Ok(context! {
        campaign_id => campaign.id.0,
        status => campaign.status.as_str(),
        run => Value::from(Serde(&progress.run)),
        totals => Value::from(Serde(&progress.totals)),
        variants => Value::from(Serde(&progress.variants)),
        rate => progress.rate_per_second,
        eta => progress.eta_seconds,
        total, settled, done,
        percent => (settled * 100).checked_div(total).unwrap_or(100),
    })
}

/// `GET /campaigns/{id}/progress`: the progress fragment alone; it asks to be polled again
/// until the run is completed or cancelled.
pub async fn progress(
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let campaign = load(&state, &signed, &id).await?;
    let progress = progress_of(&state, &signed, &campaign).await?;
    Ok(render_page(
        StatusCode::OK,
        "progress.html",
        context! { progress },
    ))
}

/// The variant `variant` of campaign `id` rendered for the first member of its segment, as
/// the delivery worker would render it; or why it cannot be.
async fn render_preview(
    state: &AppState,
    signed: &SignedIn,
    id: &str,
    variant: &str,
) -> Result<(Campaign, VariantId, Result<PreviewReport, String>), PageError> {
    let campaign = load(state, signed, id).await?;
    let variant = variant
        .parse::<i64>()
        .ok()
        .map(VariantId)
        .filter(|v| campaign.variant(*v).is_some())
        .ok_or_else(|| PageError::NotFound("The campaign has no such variant.".into()))?;
    let request = PreviewRequest {
        variant_id: Some(variant),
        contacts: Vec::new(),
        sample: Some(1),
    };
    let report = clarion_campaign::preview::preview(
        &state.db,
        signed.session.workspace,
        &campaign,
        &request,
        &state.tracker,
    )
    .await;
    let report = match report {
        Ok(report) => Ok(report),
        Err(CampaignError::Invalid(issues)) => Err(issues
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")),
        Err(other) => return Err(PageError::from_coded(other)),
    };
    Ok((campaign, variant, report))
}

/// `GET /campaigns/{id}/preview/{variant}`: the preview fragment (sender, subject, the body
/// in a sandboxed frame, the text part, the webhook body).
pub async fn preview(
    state: web::Data<AppState>,
    signed: SignedIn,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (id, variant) = path.into_inner();
    let (campaign, variant, report) = render_preview(&state, &signed, &id, &variant).await?;
    let (report, problem) = match report {
        Ok(report) => (Some(report), None),
        Err(problem) => (None, Some(problem)),
    };
    Ok(render_page(
        StatusCode::OK,
        "preview.html",
        context! {
            report => Value::from(Serde(&report)),
            problem,
            body_url => format!("/campaigns/{}/preview/{}/body", campaign.id.0, variant.0),
        },
    ))
}

/// `GET /campaigns/{id}/preview/{variant}/body`: the rendered email's HTML on its own, for
/// the preview's frame. The email's own inline styles and remote images need a policy of
/// their own: this document may style itself and show images, runs no script (sandboxed),
/// sends no form and may be framed by the dashboard only.
pub async fn preview_body(
    state: web::Data<AppState>,
    signed: SignedIn,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (id, variant) = path.into_inner();
    let (_, _, report) = render_preview(&state, &signed, &id, &variant).await?;
    let html = report
        .ok()
        .and_then(|report| report.previews.into_iter().next())
        .and_then(|preview| preview.email)
        .map(|email| email.html)
        .ok_or_else(|| PageError::NotFound("This variant has no email body to show.".into()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .insert_header((actix_web::http::header::X_FRAME_OPTIONS, "SAMEORIGIN"))
        .insert_header((actix_web::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((actix_web::http::header::REFERRER_POLICY, "no-referrer"))
        .insert_header((
            actix_web::http::header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; font-src *; form-action 'none'; frame-ancestors 'self'; base-uri 'none'; sandbox",
        ))
        .body(html))
}

/// What a person may do to a campaign, each after a confirmation page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Launch,
    Pause,
    Resume,
    Cancel,
}

impl Action {
    fn parse(name: &str) -> Result<Self, PageError> {
        match name {
            "launch" => Ok(Action::Launch),
            "pause" => Ok(Action::Pause),
            "resume" => Ok(Action::Resume),
            "cancel" => Ok(Action::Cancel),
            _ => Err(PageError::NotFound("There is no such page.".into())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Action::Launch => "launch",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Cancel => "cancel",
        }
    }

    /// The actions that fit a campaign in `status`: buttons for others are not shown (the
    /// domain refuses them anyway, with a 409 page).
    fn allowed(status: Status) -> &'static [Action] {
        match status {
            Status::Draft => &[Action::Launch],
            Status::Sending => &[Action::Pause, Action::Cancel],
            Status::Paused => &[Action::Resume, Action::Cancel],
            Status::Sent | Status::Cancelled => &[],
        }
    }

    /// What the confirmation page says will happen.
    fn consequence(self) -> &'static str {
        match self {
            Action::Launch => {
                "Its segments are read now and every member gets their message; the holdout gets none. A campaign is launched once."
            }
            Action::Pause => {
                "Workers stop taking its deliveries; those in flight finish. Queued deliveries wait until you resume."
            }
            Action::Resume => "Its queued deliveries are sent again.",
            Action::Cancel => {
                "Deliveries still queued are cancelled for good. This cannot be undone."
            }
        }
    }
}

/// `GET /campaigns/{id}/{action}`: the confirmation page.
pub async fn confirm(
    state: web::Data<AppState>,
    signed: SignedIn,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (id, action) = path.into_inner();
    let action = Action::parse(&action)?;
    signed.require(Role::Marketer)?;
    let campaign = load(&state, &signed, &id).await?;
    Ok(render_page(
        StatusCode::OK,
        "confirm.html",
        context! {
            title => format!("{} {}?", super::capitalised(action.name()), campaign.name),
            active => "campaigns",
            user => Value::from(Serde(signed.user())),
            csrf => signed.session.csrf_token.clone(),
            campaign => Value::from(Serde(&campaign)),
            action => action.name(),
            consequence => action.consequence(),
        },
    ))
}

/// `POST /campaigns/{id}/{action}`: does it, then back to the campaign's page.
pub async fn act(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let (id, action) = path.into_inner();
    let action = Action::parse(&action)?;
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let campaign = load(&state, &signed, &id).await?;
    let workspace = signed.session.workspace;
    let done = match action {
        Action::Launch => {
            crate::routes::sending::check_webhook_target(&state, workspace, campaign.id.0)
                .await
                .map_err(|e| PageError::from_api(&e))?;
            launch::launch(
                &state.db,
                &state.queues,
                &state.settings.sending,
                workspace,
                campaign.id,
                None,
            )
            .await
            .map(|_| ())
        }
        Action::Pause => {
            let reason = format!("paused by {}", signed.session.email);
            control::pause(&state.db, workspace, campaign.id, &reason)
                .await
                .map(|_| ())
        }
        Action::Resume => control::resume(&state.db, &state.queues, workspace, campaign.id)
            .await
            .map(|_| ()),
        Action::Cancel => control::cancel(&state.db, workspace, campaign.id)
            .await
            .map(|_| ()),
    };
    done.map_err(PageError::from_coded)?;
    tracing::info!(
        campaign = campaign.id.0,
        user = signed.session.user_id,
        action = action.name(),
        "campaign action"
    );
    Ok(see_other(&format!("/campaigns/{}", campaign.id.0)).finish())
}
