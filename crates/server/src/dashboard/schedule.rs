//! A campaign's timing page: its schedule (one-off or recurring, in a zone or on each
//! recipient's own clock) with the next fire times and the firings so far, its quiet hours,
//! and its segment-entry trigger, each with a form for marketers and the buttons that pause,
//! resume or cancel a schedule, remove quiet hours and stop a trigger.
//!
//! The forms call the same domain functions as `/api/v1/campaigns/{id}/schedule`,
//! `.../quiet-hours` and `.../trigger`, so the page refuses what the API refuses, with the
//! problem beside the field it names and everything typed kept. Frequency caps apply across
//! campaigns and live on the settings page.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use clarion_campaign::{
    Campaign, CampaignError,
    schedule::{
        CatchUp, ScheduleInput,
        quiet::{self, QuietAction, QuietHoursInput, QuietHoursView},
        store::{self as schedules, ScheduleView},
    },
    trigger::{self, TriggerInput, TriggerView},
};
use clarion_model::Role;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{
    PageError, SignedIn,
    campaigns::load,
    forms::{FieldErrors, Refusal, Refused, number, value},
    login::CsrfForm,
    render_signed, see_other,
};
use crate::state::AppState;

const SCHEDULE_FIELDS: [&str; 6] = [
    "at",
    "cron",
    "time_zone",
    "local_time",
    "max_runs",
    "catch_up",
];
const QUIET_FIELDS: [&str; 5] = ["start", "end", "weekends", "action", "time_zone"];
const TRIGGER_FIELDS: [&str; 5] = [
    "segment",
    "delay",
    "condition",
    "reentry_after",
    "include_existing",
];

/// The schedule as typed: `kind` is `once` (then `at`) or `recurring` (then `cron`).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ScheduleForm {
    kind: String,
    at: String,
    cron: String,
    time_zone: String,
    /// A checkbox: present when ticked.
    local_time: Option<String>,
    max_runs: String,
    catch_up: String,
    #[serde(skip_serializing)]
    csrf: String,
}

/// Quiet hours as typed.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct QuietForm {
    start: String,
    end: String,
    weekends: Option<String>,
    action: String,
    time_zone: String,
    #[serde(skip_serializing)]
    csrf: String,
}

/// A trigger as typed; `condition` is a rule in the text form, or blank.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct TriggerForm {
    segment: String,
    delay: String,
    condition: String,
    reentry_after: String,
    include_existing: Option<String>,
    #[serde(skip_serializing)]
    csrf: String,
}

/// What a page shows beside the stored state: a form sent back with its problems, or a notice.
#[derive(Debug, Default, Serialize)]
struct Extra {
    notice: String,
    schedule_form: Option<ScheduleForm>,
    schedule_errors: FieldErrors,
    quiet_form: Option<QuietForm>,
    quiet_errors: FieldErrors,
    trigger_form: Option<TriggerForm>,
    trigger_errors: FieldErrors,
}

fn schedule_form(view: Option<&ScheduleView>) -> ScheduleForm {
    let Some(view) = view else {
        return ScheduleForm {
            kind: "once".into(),
            time_zone: "UTC".into(),
            catch_up: CatchUp::RunOnce.as_str().into(),
            ..ScheduleForm::default()
        };
    };
    ScheduleForm {
        kind: view.kind.clone(),
        at: view
            .at
            .and_then(|at| chrono::DateTime::from_timestamp_millis(at.millis()))
            .map(|at| at.format("%Y-%m-%dT%H:%M").to_string())
            .unwrap_or_default(),
        cron: view.cron.clone().unwrap_or_default(),
        time_zone: view.time_zone.clone(),
        local_time: view.local_time.then(|| "on".into()),
        max_runs: view.max_runs.map(|n| n.to_string()).unwrap_or_default(),
        catch_up: view.catch_up.as_str().into(),
        csrf: String::new(),
    }
}

fn quiet_form(view: Option<&QuietHoursView>) -> QuietForm {
    match view {
        Some(view) => QuietForm {
            start: view.start.clone(),
            end: view.end.clone(),
            weekends: view.weekends.then(|| "on".into()),
            action: view.action.as_str().into(),
            time_zone: view.time_zone.clone(),
            csrf: String::new(),
        },
        None => QuietForm {
            start: "21:00".into(),
            end: "08:00".into(),
            action: QuietAction::Delay.as_str().into(),
            time_zone: "UTC".into(),
            ..QuietForm::default()
        },
    }
}

fn trigger_form(view: Option<&TriggerView>) -> TriggerForm {
    match view {
        Some(view) => TriggerForm {
            segment: view.segment.clone(),
            delay: view.delay.clone(),
            condition: view
                .condition
                .as_ref()
                .and_then(|rule| serde_json::from_value(rule.clone()).ok())
                .map(|rule: clarion_segment::Rule| rule.to_string())
                .unwrap_or_default(),
            reentry_after: view.reentry_after.clone().unwrap_or_default(),
            include_existing: view.include_existing.then(|| "on".into()),
            csrf: String::new(),
        },
        None => TriggerForm {
            delay: "0".into(),
            ..TriggerForm::default()
        },
    }
}

async fn render(
    state: &AppState,
    signed: &SignedIn,
    campaign: &Campaign,
    status: StatusCode,
    mut extra: Extra,
) -> Result<HttpResponse, PageError> {
    let workspace = signed.session.workspace;
    let schedule = schedules::get(&state.db, workspace, campaign.id)
        .await
        .map_err(PageError::from_coded)?;
    let quiet = quiet::get(&state.db, workspace, campaign.id)
        .await
        .map_err(PageError::from_coded)?;
    let trigger = trigger::get(&state.db, workspace, campaign.id)
        .await
        .map_err(PageError::from_coded)?;
    extra
        .schedule_form
        .get_or_insert_with(|| schedule_form(schedule.as_ref()));
    extra
        .quiet_form
        .get_or_insert_with(|| quiet_form(quiet.as_ref()));
    extra
        .trigger_form
        .get_or_insert_with(|| trigger_form(trigger.as_ref()));
    let segments: Vec<String> = clarion_segment::store::list(&state.db, workspace)
        .await
        .map_err(PageError::from_coded)?
        .into_iter()
        .map(|s| s.slug)
        .collect();
    Ok(render_signed(
        status,
        "schedule.html",
        signed,
        context! {
            title => format!("Timing of {}", campaign.name),
            active => "campaigns",
            campaign => value(campaign),
            schedule => value(&schedule),
            quiet => value(&quiet),
            trigger => value(&trigger),
            segments,
            catch_ups => [CatchUp::RunOnce.as_str(), CatchUp::Skip.as_str()],
            quiet_actions => [QuietAction::Delay.as_str(), QuietAction::Drop.as_str()],
            extra => value(&extra),
        },
    ))
}

/// `GET /campaigns/{id}/schedule`.
pub async fn page(
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let campaign = load(&state, &signed, &id).await?;
    render(&state, &signed, &campaign, StatusCode::OK, Extra::default()).await
}

/// Text typed in an input, or `None` when blank.
fn typed(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn schedule_input(form: &ScheduleForm) -> Result<ScheduleInput, Refused> {
    let once = match form.kind.as_str() {
        "once" => true,
        "recurring" => false,
        _ => return Err(Refused::field("kind", "Choose once or recurring.")),
    };
    let catch_up = match form.catch_up.trim() {
        "" => None,
        text => Some(
            serde_json::from_value(serde_json::Value::String(text.to_owned()))
                .map_err(|_| Refused::field("catch_up", "Choose run_once or skip."))?,
        ),
    };
    let max_runs = if once {
        None
    } else {
        number("max_runs", &form.max_runs, 1..=1_000_000)?
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
    };
    let at = typed(&form.at);
    let cron = typed(&form.cron);
    if once && at.is_none() {
        return Err(Refused::field("at", "Enter the date and time to launch."));
    }
    if !once && cron.is_none() {
        return Err(Refused::field(
            "cron",
            "Enter five cron fields, for example 0 9 * * MON.",
        ));
    }
    Ok(ScheduleInput {
        at: if once { at } else { None },
        cron: if once { None } else { cron },
        time_zone: typed(&form.time_zone),
        local_time: Some(form.local_time.is_some()),
        max_runs,
        catch_up,
        ..ScheduleInput::default()
    })
}

/// `POST /campaigns/{id}/schedule`: saves the schedule (replacing one not fired yet).
pub async fn save_schedule(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<ScheduleForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let campaign = load(&state, &signed, &id).await?;
    let form = form.into_inner();
    let saved: Result<ScheduleView, Refusal> = async {
        let input = schedule_input(&form)?;
        schedules::put(
            &state.db,
            signed.session.workspace,
            campaign.id,
            &input,
            chrono::Utc::now(),
        )
        .await
        .map_err(|e| Refusal::of(&e, &SCHEDULE_FIELDS))
    }
    .await;
    match saved {
        Ok(view) => {
            let next = view
                .upcoming
                .first()
                .map(|at| format!(" It next fires at {}.", super::templates::moment(at)))
                .unwrap_or_default();
            let extra = Extra {
                notice: format!("The schedule was saved.{next}"),
                ..Extra::default()
            };
            render(&state, &signed, &campaign, StatusCode::OK, extra).await
        }
        Err(refusal) => {
            let refused = refusal.form()?;
            let extra = Extra {
                schedule_form: Some(form),
                schedule_errors: refused.errors,
                ..Extra::default()
            };
            render(&state, &signed, &campaign, refused.status, extra).await
        }
    }
}

/// `POST /campaigns/{id}/schedule/{action}`: `pause`, `resume` or `cancel` the schedule.
pub async fn schedule_action(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let (id, action) = path.into_inner();
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let campaign = load(&state, &signed, &id).await?;
    let (workspace, now) = (signed.session.workspace, chrono::Utc::now());
    let done = match action.as_str() {
        "pause" => schedules::pause(&state.db, workspace, campaign.id, now).await,
        "resume" => schedules::resume(&state.db, workspace, campaign.id, now).await,
        "cancel" => schedules::cancel(&state.db, workspace, campaign.id, now).await,
        _ => return Err(PageError::NotFound("There is no such page.".into())),
    };
    done.map_err(PageError::from_coded)?;
    tracing::info!(
        campaign = campaign.id.0,
        user = signed.session.user_id,
        action = action.as_str(),
        "schedule action"
    );
    Ok(see_other(&format!("/campaigns/{}/schedule", campaign.id.0)).finish())
}

fn quiet_input(form: &QuietForm) -> Result<QuietHoursInput, Refused> {
    let action = match form.action.trim() {
        "" => None,
        text => Some(
            serde_json::from_value(serde_json::Value::String(text.to_owned()))
                .map_err(|_| Refused::field("action", "Choose delay or drop."))?,
        ),
    };
    Ok(QuietHoursInput {
        start: typed(&form.start),
        end: typed(&form.end),
        weekends: Some(form.weekends.is_some()),
        action,
        time_zone: typed(&form.time_zone),
    })
}

/// `POST /campaigns/{id}/quiet-hours`: saves the campaign's quiet hours.
pub async fn save_quiet(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<QuietForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let campaign = load(&state, &signed, &id).await?;
    let form = form.into_inner();
    let saved: Result<QuietHoursView, Refusal> = async {
        let input = quiet_input(&form)?;
        quiet::put(&state.db, signed.session.workspace, campaign.id, &input)
            .await
            .map_err(|e| Refusal::of(&e, &QUIET_FIELDS))
    }
    .await;
    match saved {
        Ok(view) => {
            let extra = Extra {
                notice: format!(
                    "Quiet hours saved: nothing is sent from {} to {} on each recipient's clock.",
                    view.start, view.end
                ),
                ..Extra::default()
            };
            render(&state, &signed, &campaign, StatusCode::OK, extra).await
        }
        Err(refusal) => {
            let refused = refusal.form()?;
            let extra = Extra {
                quiet_form: Some(form),
                quiet_errors: refused.errors,
                ..Extra::default()
            };
            render(&state, &signed, &campaign, refused.status, extra).await
        }
    }
}

/// `POST /campaigns/{id}/quiet-hours/remove`.
pub async fn remove_quiet(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let campaign = load(&state, &signed, &id).await?;
    quiet::delete(&state.db, signed.session.workspace, campaign.id)
        .await
        .map_err(PageError::from_coded)?;
    Ok(see_other(&format!("/campaigns/{}/schedule", campaign.id.0)).finish())
}

fn trigger_input(form: &TriggerForm) -> TriggerInput {
    TriggerInput {
        segment: form.segment.trim().to_owned(),
        delay: typed(&form.delay),
        condition: typed(&form.condition).map(serde_json::Value::String),
        reentry_after: typed(&form.reentry_after),
        include_existing: Some(form.include_existing.is_some()),
    }
}

/// `POST /campaigns/{id}/trigger`: switches the segment-entry trigger on (or changes it).
pub async fn save_trigger(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<TriggerForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let campaign = load(&state, &signed, &id).await?;
    let form = form.into_inner();
    let saved: Result<TriggerView, CampaignError> = trigger::put(
        &state.db,
        &state.settings.sending,
        signed.session.workspace,
        campaign.id,
        &trigger_input(&form),
        chrono::Utc::now(),
    )
    .await;
    match saved {
        Ok(view) => {
            let extra = Extra {
                notice: format!(
                    "The trigger is on: contacts entering {} get this campaign{}.",
                    view.segment,
                    if view.delay_secs > 0 {
                        format!(" {} later", view.delay)
                    } else {
                        String::new()
                    }
                ),
                ..Extra::default()
            };
            render(&state, &signed, &campaign, StatusCode::OK, extra).await
        }
        Err(error) => {
            let refused = Refusal::of(&error, &TRIGGER_FIELDS).form()?;
            let extra = Extra {
                trigger_form: Some(form),
                trigger_errors: refused.errors,
                ..Extra::default()
            };
            render(&state, &signed, &campaign, refused.status, extra).await
        }
    }
}

/// `POST /campaigns/{id}/trigger/stop`: switches the trigger off; pending sends are skipped.
pub async fn stop_trigger(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Marketer)?;
    signed.check_form(&request, &form.csrf)?;
    let campaign = load(&state, &signed, &id).await?;
    trigger::stop(
        &state.db,
        signed.session.workspace,
        campaign.id,
        chrono::Utc::now(),
    )
    .await
    .map_err(PageError::from_coded)?;
    Ok(see_other(&format!("/campaigns/{}/schedule", campaign.id.0)).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_off_needs_its_moment_and_a_recurring_one_its_cron() {
        let once = ScheduleForm {
            kind: "once".into(),
            cron: "0 9 * * *".into(),
            ..ScheduleForm::default()
        };
        assert!(schedule_input(&once).unwrap_err().errors.contains_key("at"));
        let recurring = ScheduleForm {
            kind: "recurring".into(),
            at: "2027-01-01T09:00".into(),
            ..ScheduleForm::default()
        };
        assert!(
            schedule_input(&recurring)
                .unwrap_err()
                .errors
                .contains_key("cron")
        );
        let both = ScheduleForm {
            kind: "recurring".into(),
            at: "2027-01-01T09:00".into(),
            cron: "0 9 * * MON".into(),
            max_runs: "4".into(),
            local_time: Some("on".into()),
            ..ScheduleForm::default()
        };
        let input = schedule_input(&both).unwrap();
        assert_eq!(input.at, None, "the hidden one-off moment is not sent");
        assert_eq!(input.cron.as_deref(), Some("0 9 * * MON"));
        assert_eq!((input.max_runs, input.local_time), (Some(4), Some(true)));
    }
}
