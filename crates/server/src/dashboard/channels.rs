//! Channels (admins only): the webhook endpoints campaigns send to and the sender identities
//! emails go out as. A new or rotated endpoint secret and the DKIM record to publish are shown
//! on the page; "send test" shows what the receiver answered. Handlers call the same domain
//! functions as `/api/v1/webhook-endpoints` and `/api/v1/senders`.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use clarion_campaign::{
    endpoints::{
        self, Endpoint, EndpointDefaults, EndpointInput, EndpointPatch, EndpointRef, RotateRequest,
        TestRequest, TestResult,
    },
    senders::{self, DkimInput, KeyAlgorithm, SenderInput},
};
use clarion_model::Role;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{
    PageError, SignedIn,
    forms::{FieldErrors, Refusal, Refused, number, value},
    login::CsrfForm,
    render_signed,
};
use crate::state::AppState;

/// The inputs of the endpoint forms, to find each field's error.
const ENDPOINT_FIELDS: [&str; 5] = [
    "name",
    "url",
    "headers",
    "rate_limit_per_second",
    "timeout_ms",
];
const SENDER_FIELDS: [&str; 5] = [
    "address",
    "reply_to",
    "return_path",
    "selector",
    "algorithm",
];

/// An endpoint form as typed (create, or edit of one endpoint).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct EndpointForm {
    name: String,
    url: String,
    /// One `Name: value` per line.
    headers: String,
    rate_limit_per_second: String,
    timeout_ms: String,
    #[serde(skip_serializing)]
    csrf: String,
}

/// A sender identity form as typed.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SenderForm {
    address: String,
    reply_to: String,
    return_path: String,
    selector: String,
    algorithm: String,
    #[serde(skip_serializing)]
    csrf: String,
}

/// The optional contact a "send test" renders its payload for.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TestForm {
    contact: String,
    csrf: String,
}

/// What the page shows besides the lists.
#[derive(Default, Serialize)]
struct Extra {
    notice: String,
    /// A secret just made: shown on this answer only.
    secret: Option<Shown>,
    test: Option<Tested>,
    endpoint_form: EndpointForm,
    endpoint_errors: FieldErrors,
    /// The endpoint whose edit form was refused, shown open with what was typed.
    edit_id: Option<i64>,
    edit_form: EndpointForm,
    edit_errors: FieldErrors,
    sender_form: SenderForm,
    sender_errors: FieldErrors,
}

#[derive(Serialize)]
struct Shown {
    endpoint: String,
    secret: String,
}

#[derive(Serialize)]
struct Tested {
    endpoint: String,
    result: TestResult,
}

/// An endpoint as listed, with its headers as the edit form shows them.
#[derive(Serialize)]
struct EndpointLine {
    #[serde(flatten)]
    endpoint: Endpoint,
    headers_text: String,
}

fn defaults(state: &AppState) -> EndpointDefaults {
    EndpointDefaults {
        timeout_ms: state.settings.webhook.timeout_ms,
        rotation_overlap_secs: state.settings.webhook.rotation_overlap_secs,
    }
}

async fn render(
    state: &AppState,
    signed: &SignedIn,
    status: StatusCode,
    extra: Extra,
) -> Result<HttpResponse, PageError> {
    let workspace = signed.session.workspace;
    let endpoints = endpoints::list(&state.db, workspace)
        .await
        .map_err(|e| Refusal::of(&e, &[]).page())?;
    let lines: Vec<EndpointLine> = endpoints
        .into_iter()
        .map(|endpoint| EndpointLine {
            headers_text: endpoint
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {value}"))
                .collect::<Vec<_>>()
                .join("\n"),
            endpoint,
        })
        .collect();
    let senders = senders::list(&state.db, workspace)
        .await
        .map_err(|e| Refusal::of(&e, &[]).page())?;
    Ok(render_signed(
        status,
        "channels.html",
        signed,
        context! {
            title => "Channels",
            active => "channels",
            endpoints => value(&lines),
            senders => value(&senders),
            algorithms => ["rsa", "ed25519"],
            extra => value(&extra),
        },
    ))
}

/// `GET /channels`.
pub async fn page(state: web::Data<AppState>, signed: SignedIn) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    render(&state, &signed, StatusCode::OK, Extra::default()).await
}

/// The page with a notice after an action.
async fn done(
    state: &AppState,
    signed: &SignedIn,
    notice: String,
) -> Result<HttpResponse, PageError> {
    let extra = Extra {
        notice,
        ..Extra::default()
    };
    render(state, signed, StatusCode::OK, extra).await
}

/// Reads `Name: value` lines into headers.
fn parse_headers(text: &str) -> Result<BTreeMap<String, String>, Refused> {
    let mut headers = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Refused::field(
                "headers",
                format!("Line {}: write each header as Name: value.", index + 1),
            ));
        };
        headers.insert(name.trim().to_string(), value.trim().to_string());
    }
    Ok(headers)
}

fn rate(text: &str) -> Result<Option<u32>, Refused> {
    let rate = number("rate_limit_per_second", text, 0..=100_000)?;
    Ok(rate.and_then(|rate| u32::try_from(rate).ok()))
}

fn timeout(text: &str) -> Result<Option<u64>, Refused> {
    number("timeout_ms", text, 100..=60_000)
}

/// `POST /channels/webhooks`: creates an endpoint and shows its secret once.
pub async fn create_endpoint(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<EndpointForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let form = form.into_inner();
    let created = async {
        let input = EndpointInput {
            name: form.name.clone(),
            url: form.url.trim().to_string(),
            headers: parse_headers(&form.headers)?,
            rate_limit_per_second: rate(&form.rate_limit_per_second)?.unwrap_or(0),
            timeout_ms: timeout(&form.timeout_ms)?,
            enabled: true,
        };
        let workspace = signed.session.workspace;
        endpoints::create(
            &state.db,
            &state.webhooks,
            defaults(&state),
            workspace,
            &input,
        )
        .await
        .map_err(|e| Refusal::of(&e, &ENDPOINT_FIELDS))
    }
    .await;
    match created {
        Ok(created) => {
            tracing::info!(
                endpoint = created.endpoint.id,
                by = signed.session.user_id,
                "webhook endpoint created"
            );
            let extra = Extra {
                notice: format!("Endpoint {} was created.", created.endpoint.name),
                secret: Some(Shown {
                    endpoint: created.endpoint.name.clone(),
                    secret: created.secret,
                }),
                ..Extra::default()
            };
            render(&state, &signed, StatusCode::CREATED, extra).await
        }
        Err(refusal) => {
            let refused = refusal.form()?;
            let extra = Extra {
                endpoint_form: form,
                endpoint_errors: refused.errors,
                ..Extra::default()
            };
            render(&state, &signed, refused.status, extra).await
        }
    }
}

fn endpoint_id(id: &str) -> Result<EndpointRef, PageError> {
    match EndpointRef::parse(id) {
        key @ EndpointRef::Id(_) => Ok(key),
        EndpointRef::Name(_) => Err(PageError::NotFound("There is no such endpoint.".into())),
    }
}

/// `POST /channels/webhooks/{id}`: changes an endpoint's name, URL, headers and limits.
pub async fn update_endpoint(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<EndpointForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let key = endpoint_id(&id)?;
    let form = form.into_inner();
    let updated = async {
        let patch = EndpointPatch {
            name: Some(form.name.clone()),
            url: Some(form.url.trim().to_string()),
            headers: Some(parse_headers(&form.headers)?),
            rate_limit_per_second: Some(rate(&form.rate_limit_per_second)?.unwrap_or(0)),
            timeout_ms: Some(
                timeout(&form.timeout_ms)?.unwrap_or(state.settings.webhook.timeout_ms),
            ),
            enabled: None,
        };
        let workspace = signed.session.workspace;
        endpoints::update(&state.db, &state.webhooks, workspace, &key, &patch)
            .await
            .map_err(|e| Refusal::of(&e, &ENDPOINT_FIELDS))
    }
    .await;
    match updated {
        Ok(endpoint) => {
            done(
                &state,
                &signed,
                format!("Endpoint {} was saved.", endpoint.name),
            )
            .await
        }
        Err(refusal) => {
            let refused = refusal.form()?;
            let extra = Extra {
                edit_id: Some(key_id(&key)),
                edit_form: form,
                edit_errors: refused.errors,
                ..Extra::default()
            };
            render(&state, &signed, refused.status, extra).await
        }
    }
}

fn key_id(key: &EndpointRef) -> i64 {
    match key {
        EndpointRef::Id(id) => *id,
        EndpointRef::Name(_) => 0,
    }
}

/// `POST /channels/webhooks/{id}/enable` and `/disable`.
async fn set_enabled(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
    enabled: bool,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let key = endpoint_id(&id)?;
    let patch = EndpointPatch {
        enabled: Some(enabled),
        ..EndpointPatch::default()
    };
    let endpoint = endpoints::update(
        &state.db,
        &state.webhooks,
        signed.session.workspace,
        &key,
        &patch,
    )
    .await
    .map_err(|e| Refusal::of(&e, &[]).page())?;
    let notice = if enabled {
        format!(
            "Endpoint {} is enabled; its waiting deliveries go out.",
            endpoint.name
        )
    } else {
        format!(
            "Endpoint {} is disabled; its deliveries wait until it is enabled.",
            endpoint.name
        )
    };
    done(&state, &signed, notice).await
}

/// `POST /channels/webhooks/{id}/enable`.
pub async fn enable_endpoint(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    set_enabled(request, state, signed, id, form, true).await
}

/// `POST /channels/webhooks/{id}/disable`.
pub async fn disable_endpoint(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    set_enabled(request, state, signed, id, form, false).await
}

/// `POST /channels/webhooks/{id}/delete`.
pub async fn delete_endpoint(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let key = endpoint_id(&id)?;
    endpoints::delete(&state.db, signed.session.workspace, &key)
        .await
        .map_err(|e| Refusal::of(&e, &[]).page())?;
    tracing::info!(
        endpoint = key_id(&key),
        by = signed.session.user_id,
        "webhook endpoint deleted"
    );
    done(&state, &signed, "The endpoint was deleted.".into()).await
}

/// `POST /channels/webhooks/{id}/rotate`: a new secret, shown once; the previous one keeps
/// signing for the configured overlap.
pub async fn rotate_endpoint(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let key = endpoint_id(&id)?;
    let rotated = endpoints::rotate_secret(
        &state.db,
        defaults(&state),
        signed.session.workspace,
        &key,
        &RotateRequest::default(),
    )
    .await
    .map_err(|e| Refusal::of(&e, &[]).page())?;
    tracing::info!(
        endpoint = rotated.endpoint.id,
        by = signed.session.user_id,
        "webhook secret rotated"
    );
    let extra = Extra {
        notice: format!(
            "Endpoint {} has a new secret; the previous one keeps signing until {}.",
            rotated.endpoint.name,
            rotated
                .endpoint
                .rotation_ends_at
                .map(|at| super::templates::datetime(at.millis()))
                .unwrap_or_else(|| "now".into())
        ),
        secret: Some(Shown {
            endpoint: rotated.endpoint.name.clone(),
            secret: rotated.secret,
        }),
        ..Extra::default()
    };
    render(&state, &signed, StatusCode::OK, extra).await
}

/// `POST /channels/webhooks/{id}/test`: sends a sample delivery and shows the receiver's
/// answer.
pub async fn test_endpoint(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<TestForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let key = endpoint_id(&id)?;
    let contact = form.contact.trim();
    let test = TestRequest {
        contact: (!contact.is_empty()).then(|| contact.to_string()),
        payload: None,
    };
    let workspace = signed.session.workspace;
    let result = endpoints::send_test(
        &state.db,
        &state.webhooks,
        &state.tracker,
        workspace,
        &key,
        &test,
    )
    .await
    .map_err(|e| Refusal::of(&e, &[]).page())?;
    let endpoint = endpoints::get(&state.db, workspace, &key)
        .await
        .map_err(|e| Refusal::of(&e, &[]).page())?
        .map(|endpoint| endpoint.name)
        .unwrap_or_default();
    let extra = Extra {
        test: Some(Tested { endpoint, result }),
        ..Extra::default()
    };
    render(&state, &signed, StatusCode::OK, extra).await
}

/// `POST /channels/senders`: creates a sender identity with a generated DKIM key and shows
/// the DNS record to publish.
pub async fn create_sender(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    form: web::Form<SenderForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let form = form.into_inner();
    let created = async {
        let algorithm = match form.algorithm.trim() {
            "" | "rsa" => KeyAlgorithm::Rsa,
            "ed25519" => KeyAlgorithm::Ed25519,
            _ => return Err(Refused::field("algorithm", "Choose rsa or ed25519.").into()),
        };
        let optional = |text: &str| Some(text.trim().to_string()).filter(|text| !text.is_empty());
        let input = SenderInput {
            address: form.address.clone(),
            reply_to: optional(&form.reply_to),
            return_path: optional(&form.return_path),
            dkim: Some(DkimInput {
                selector: optional(&form.selector),
                algorithm,
                private_key: None,
            }),
        };
        senders::create(&state.db, signed.session.workspace, &input)
            .await
            .map_err(|e| Refusal::of(&e, &SENDER_FIELDS))
    }
    .await;
    match created {
        Ok(sender) => {
            tracing::info!(
                sender = sender.id,
                by = signed.session.user_id,
                "sender identity created"
            );
            let notice = format!(
                "{} can send once the DKIM record below is published at {}.",
                sender.address, sender.dkim.dns_record.name
            );
            let extra = Extra {
                notice,
                ..Extra::default()
            };
            render(&state, &signed, StatusCode::CREATED, extra).await
        }
        Err(refusal) => {
            let refused = refusal.form()?;
            let extra = Extra {
                sender_form: form,
                sender_errors: refused.errors,
                ..Extra::default()
            };
            render(&state, &signed, refused.status, extra).await
        }
    }
}

/// `POST /channels/senders/{id}/delete`.
pub async fn delete_sender(
    request: HttpRequest,
    state: web::Data<AppState>,
    signed: SignedIn,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    signed.require(Role::Admin)?;
    signed.check_form(&request, &form.csrf)?;
    let missing = || PageError::NotFound("There is no such sender identity.".into());
    let id: i64 = id.parse().map_err(|_| missing())?;
    let deleted = senders::delete(&state.db, signed.session.workspace, id)
        .await
        .map_err(|e| Refusal::of(&e, &[]).page())?;
    if !deleted {
        return Err(missing());
    }
    done(
        &state,
        &signed,
        "The sender identity and its key were deleted.".into(),
    )
    .await
}
