//! Settings (admins only): API keys (the key shown once, revoking), the frequency caps across
//! campaigns and the KPI settings. Handlers call the same domain functions as the API and the
//! `clarion keys` command.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use clarion_campaign::frequency::{
    self, FrequencyCap, FrequencyCaps, MAX_MESSAGES, MAX_WINDOW_HOURS,
};
use clarion_kpi::KpiSettings;
use clarion_model::{Channel, Role};
use minijinja::context;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{
    PageError, SignedIn,
    forms::{FieldErrors, Refusal, Refused, number, value},
    login::CsrfForm,
    render_signed,
};
use crate::{state::AppState, store::keys};

const ROLES: [&str; 3] = ["viewer", "marketer", "admin"];
const KPI_FIELDS: [&str; 9] = [
    "attribution",
    "min_sample",
    "confidence_level",
    "churn",
    "activity_event",
    "start_event",
    "cancel_event",
    "inactivity_days",
    "time_zone",
];
/// The longest key name kept.
const MAX_KEY_NAME: usize = 100;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct KeyForm {
    name: String,
    role: String,
    #[serde(skip_serializing)]
    csrf: String,
}

/// The caps per channel as typed; both blank turns a channel's cap off.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CapsForm {
    email_max: String,
    email_window: String,
    webhook_max: String,
    webhook_window: String,
    #[serde(skip_serializing)]
    csrf: String,
}

/// The KPI settings as typed.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct KpiForm {
    attribution: String,
    min_sample: String,
    confidence_level: String,
    churn: String,
    activity_event: String,
    start_event: String,
    cancel_event: String,
    inactivity_days: String,
    time_zone: String,
    #[serde(skip_serializing)]
    csrf: String,
}

#[derive(Serialize)]
struct KeyLine {
    id: i64,
    name: String,
    role: &'static str,
    prefix: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

#[derive(Serialize)]
struct NewKey {
    name: String,
    key: String,
}

/// What the page shows besides the stored settings: a key just made, a notice, a refused
/// form as typed with its errors.
#[derive(Default, Serialize)]
struct Extra {
    notice: String,
    new_key: Option<NewKey>,
    key_form: KeyForm,
    key_errors: FieldErrors,
    caps_form: Option<CapsForm>,
    caps_errors: FieldErrors,
    kpi_form: Option<KpiForm>,
    kpi_errors: FieldErrors,
}

fn caps_form(caps: &FrequencyCaps) -> CapsForm {
    let text = |channel, pick: fn(&FrequencyCap) -> i64| {
        caps.of(channel)
            .map(|cap| pick(&cap).to_string())
            .unwrap_or_default()
    };
    CapsForm {
        email_max: text(Channel::Email, |cap| cap.max_messages),
        email_window: text(Channel::Email, |cap| cap.window_hours),
        webhook_max: text(Channel::Webhook, |cap| cap.max_messages),
        webhook_window: text(Channel::Webhook, |cap| cap.window_hours),
        csrf: String::new(),
    }
}

fn kpi_form(settings: &KpiSettings) -> KpiForm {
    KpiForm {
        attribution: settings.attribution.as_str().to_string(),
        min_sample: settings.min_sample.to_string(),
        confidence_level: settings.confidence_level.to_string(),
        churn: serde_json::to_value(settings.churn)
            .ok()
            .and_then(|churn| churn.as_str().map(str::to_string))
            .unwrap_or_default(),
        activity_event: settings.activity_event.clone(),
        start_event: settings.start_event.clone(),
        cancel_event: settings.cancel_event.clone(),
        inactivity_days: settings.inactivity_days.to_string(),
        time_zone: settings.time_zone.clone(),
        csrf: String::new(),
    }
}

async fn render(
    state: &AppState,
    signed: &SignedIn,
    status: StatusCode,
    mut extra: Extra,
) -> Result<HttpResponse, PageError> {
    let workspace = signed.session.workspace;
    let keys: Vec<KeyLine> = keys::list(&state.db, workspace)
        .await
        .map_err(|e| PageError::internal(&e))?
        .into_iter()
        .map(|key| KeyLine {
            id: key.id,
            name: key.name,
            role: key.role.as_str(),
            prefix: key.prefix,
            created_at: key.created_at.millis(),
            revoked_at: key.revoked_at.map(|at| at.millis()),
        })
        .collect();
    if extra.caps_form.is_none() {
        let caps = frequency::get(&state.db, workspace)
            .await
            .map_err(|e| Refusal::of(&e, &[]).page())?;
        extra.caps_form = Some(caps_form(&caps));
    }
    if extra.kpi_form.is_none() {
        let kpi = clarion_kpi::settings::get(&state.db, workspace)
            .await
            .map_err(|e| Refusal::of(&e, &[]).page())?;
        extra.kpi_form = Some(kpi_form(&kpi));
    }
    Ok(render_signed(
        status,
        "settings.html",
        signed,
        context! {
            title => "Settings",
            active => "settings",
            keys => value(&keys),
            roles => ROLES,
            attributions => ["last_touch", "first_touch"],
            churns => ["inactivity", "cancel"],
            extra => value(&extra),
        },
    ))
}

/// `GET /settings`.
pub async fn page(state: web::Data<AppState>, signed: SignedIn) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    render(&state, &signed, StatusCode::OK, Extra::default()).await
}

/// `POST /settings/keys`: creates an API key and shows it once.
pub async fn create_key(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<KeyForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let form = form.into_inner();
    let mut errors = FieldErrors::new();
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > MAX_KEY_NAME {
        errors.insert(
            "name".into(),
            format!(
                "Name the key (1 to {MAX_KEY_NAME} characters), e.g. after the system that uses it."
            ),
        );
    }
    let role = Role::parse(form.role.trim());
    if role.is_err() {
        errors.insert("role".into(), "Choose viewer, marketer or admin.".into());
    }
    let Ok(role) = role else {
        return key_refused(&state, &signed, form, errors).await;
    };
    if !errors.is_empty() {
        return key_refused(&state, &signed, form, errors).await;
    }
    let (key, info) = keys::create(&state.db, signed.session.workspace, name, role)
        .await
        .map_err(|e| PageError::internal(&e))?;
    tracing::info!(
        key = info.id,
        by = signed.session.user_id,
        "API key created"
    );
    let extra = Extra {
        notice: format!("Key {} ({}) was created.", info.name, info.role),
        new_key: Some(NewKey {
            name: info.name,
            key,
        }),
        ..Extra::default()
    };
    render(&state, &signed, StatusCode::CREATED, extra).await
}

async fn key_refused(
    state: &AppState,
    signed: &SignedIn,
    form: KeyForm,
    errors: FieldErrors,
) -> Result<HttpResponse, PageError> {
    let extra = Extra {
        key_form: form,
        key_errors: errors,
        ..Extra::default()
    };
    render(state, signed, StatusCode::UNPROCESSABLE_ENTITY, extra).await
}

/// `POST /settings/keys/{id}/revoke`: the key stops working at once.
pub async fn revoke_key(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let missing =
        || PageError::NotFound("There is no such API key, or it was revoked already.".into());
    let id: i64 = id.parse().map_err(|_| missing())?;
    let revoked = keys::revoke(&state.db, signed.session.workspace, &id.to_string())
        .await
        .map_err(|e| PageError::internal(&e))?;
    if revoked == 0 {
        return Err(missing());
    }
    tracing::info!(key = id, by = signed.session.user_id, "API key revoked");
    let extra = Extra {
        notice: "The key was revoked; requests with it are refused from now on.".into(),
        ..Extra::default()
    };
    render(&state, &signed, StatusCode::OK, extra).await
}

/// One channel's cap from its two inputs: both blank is no cap.
fn cap(channel: Channel, max: &str, window: &str) -> Result<Option<FrequencyCap>, Refused> {
    let name = channel.as_str();
    let max_field = format!("{name}_max");
    let window_field = format!("{name}_window");
    let max_messages = number(&max_field, max, 1..=MAX_MESSAGES.unsigned_abs())?;
    let window_hours = number(&window_field, window, 1..=MAX_WINDOW_HOURS.unsigned_abs())?;
    match (max_messages, window_hours) {
        (None, None) => Ok(None),
        (Some(max), Some(window)) => Ok(Some(FrequencyCap {
            channel,
            max_messages: i64::try_from(max).unwrap_or(MAX_MESSAGES),
            window_hours: i64::try_from(window).unwrap_or(MAX_WINDOW_HOURS),
        })),
        (Some(_), None) => Err(Refused::field(
            &window_field,
            "Give the window too, in hours.",
        )),
        (None, Some(_)) => Err(Refused::field(&max_field, "Give the most messages too.")),
    }
}

/// `POST /settings/frequency-caps`.
pub async fn save_caps(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<CapsForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let form = form.into_inner();
    let saved = async {
        let caps = [
            cap(Channel::Email, &form.email_max, &form.email_window)?,
            cap(Channel::Webhook, &form.webhook_max, &form.webhook_window)?,
        ];
        let caps = FrequencyCaps {
            caps: caps.into_iter().flatten().collect(),
        };
        frequency::put(&state.db, signed.session.workspace, caps)
            .await
            .map_err(|e| Refusal::of(&e, &[]))
    }
    .await;
    match saved {
        Ok(caps) => {
            let notice = if caps.caps.is_empty() {
                "Frequency caps are off.".to_string()
            } else {
                "The frequency caps were saved; launches and sends from now on respect them."
                    .to_string()
            };
            let extra = Extra {
                notice,
                ..Extra::default()
            };
            render(&state, &signed, StatusCode::OK, extra).await
        }
        Err(refusal) => {
            let refused = refusal.form()?;
            let extra = Extra {
                caps_form: Some(form),
                caps_errors: refused.errors,
                ..Extra::default()
            };
            render(&state, &signed, refused.status, extra).await
        }
    }
}

/// A choice from a select, as the settings type names it.
fn choice<T: DeserializeOwned>(field: &str, text: &str, choices: &str) -> Result<T, Refused> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_string()))
        .map_err(|_| Refused::field(field, format!("Choose {choices}.")))
}

fn kpi_settings(form: &KpiForm) -> Result<KpiSettings, Refused> {
    let required = |field: &str, text: &str, range| {
        number(field, text, range)?.ok_or_else(|| Refused::field(field, "Enter a whole number."))
    };
    let confidence_level = form
        .confidence_level
        .trim()
        .parse::<f64>()
        .map_err(|_| Refused::field("confidence_level", "Enter a level such as 0.95."))?;
    Ok(KpiSettings {
        attribution: choice(
            "attribution",
            &form.attribution,
            "last_touch or first_touch",
        )?,
        min_sample: required("min_sample", &form.min_sample, 0..=u64::MAX)?,
        confidence_level,
        churn: choice("churn", &form.churn, "inactivity or cancel")?,
        activity_event: form.activity_event.trim().to_string(),
        start_event: form.start_event.trim().to_string(),
        cancel_event: form.cancel_event.trim().to_string(),
        inactivity_days: u32::try_from(required(
            "inactivity_days",
            &form.inactivity_days,
            0..=u64::from(u32::MAX),
        )?)
        .unwrap_or(u32::MAX),
        time_zone: form.time_zone.trim().to_string(),
    })
}

/// `POST /settings/kpi`: KPI roll-ups are recomputed under the new settings before the page
/// answers.
pub async fn save_kpi(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<KpiForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let form = form.into_inner();
    let saved = async {
        let settings = kpi_settings(&form)?;
        clarion_kpi::settings::put(&state.db, signed.session.workspace, settings)
            .await
            .map_err(|e| Refusal::of(&e, &KPI_FIELDS))
    }
    .await;
    match saved {
        Ok(_) => {
            let extra = Extra {
                notice: "The KPI settings were saved; reports use them from now on.".into(),
                ..Extra::default()
            };
            render(&state, &signed, StatusCode::OK, extra).await
        }
        Err(refusal) => {
            let refused = refusal.form()?;
            let extra = Extra {
                kpi_form: Some(form),
                kpi_errors: refused.errors,
                ..Extra::default()
            };
            render(&state, &signed, refused.status, extra).await
        }
    }
}
