//! `POST /api/v1/templates/validate`: checks variant content while it is written, with the
//! same rules as saving a campaign.

use actix_web::{HttpResponse, web};
use clarion_campaign::{EmailVariant, Issue, WebhookVariant};
use clarion_model::Role;
use clarion_template::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::parse_body;
use crate::{auth::Caller, error::ApiError};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/templates/validate", web::post().to(validate));
}

/// Content to check: an email, a webhook call, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateCheck {
    #[serde(default)]
    pub email: Option<EmailVariant>,
    #[serde(default)]
    pub webhook: Option<WebhookVariant>,
}

/// The outcome of a check.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateReport {
    /// Whether the content would be accepted when saved.
    pub valid: bool,
    /// Every problem, naming the field (`email.subject`, `webhook.payload`, ...), the line and
    /// the column.
    pub issues: Vec<Issue>,
}

/// Compiles and checks templates without saving anything: syntax errors, unknown variables
/// (unless a `default` is given), a missing subject or sender, `javascript:` links, payloads
/// that do not render to JSON, endless loops and oversized output. Answers 200 with
/// `valid: false` and the issues when the content has problems.
#[utoipa::path(post, path = "/api/v1/templates/validate", tag = "templates",
    request_body = TemplateCheck,
    responses((status = 200, body = TemplateReport), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 422, description = "Neither email nor webhook given, or a body of the wrong shape", body = ApiError)),
    security(("api_key" = [])))]
pub async fn validate(
    caller: Caller,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let check: TemplateCheck = parse_body(body.get())?;
    if check.email.is_none() && check.webhook.is_none() {
        return Err(ApiError::invalid_field(
            "",
            "send an email, a webhook or both to check",
        ));
    }
    let engine = Engine::default();
    let mut issues = Vec::new();
    let mut collect = |channel: &str, found: Vec<clarion_template::TemplateIssue>| {
        issues.extend(found.into_iter().map(|i| {
            let field = format!("{channel}.{}", i.field);
            Issue {
                path: field.clone(),
                variant: None,
                field: Some(field),
                line: i.line,
                column: i.column,
                message: i.message,
            }
        }));
    };
    if let Some(email) = &check.email
        && let Err(found) = engine.check_email(&email.content(), None)
    {
        collect("email", found);
    }
    if let Some(webhook) = &check.webhook
        && let Err(found) = engine.check_webhook(&webhook.content(), None)
    {
        collect("webhook", found);
    }
    Ok(HttpResponse::Ok().json(TemplateReport {
        valid: issues.is_empty(),
        issues,
    }))
}
