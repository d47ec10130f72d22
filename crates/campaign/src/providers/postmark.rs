//! Postmark's bounce and spam-complaint webhooks. Postmark does not sign its webhooks; it
//! sends the credentials of the webhook URL as HTTP basic auth and any custom header the
//! webhook is given, so Clarion checks either or both: `username`/`password` (basic auth) and
//! `token` (a header, `X-Webhook-Token` unless `token_header` says otherwise). At least one
//! must be configured.
//!
//! `RecordType: Bounce` with `Type` HardBounce, BadEmailAddress or ManuallyDeactivated is a
//! hard bounce; SoftBounce, Transient or DnsError a soft one; `RecordType: SpamComplaint` a
//! complaint. `ID` is the idempotency key.

use base64::Engine as _;
use clarion_model::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::{Parsed, ProviderError, Request, address, same_secret, smtp_code};
use crate::feedback::{Kind, Recipient, Report};

/// `[providers.postmark]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostmarkSettings {
    /// Basic-auth user name put in the webhook URL (`https://user:password@host/...`).
    pub username: String,
    pub password: SecretString,
    /// The value of the custom header `token_header` set on the webhook.
    pub token: SecretString,
    pub token_header: String,
}

impl Default for PostmarkSettings {
    fn default() -> Self {
        Self {
            username: String::new(),
            password: SecretString::from(String::new()),
            token: SecretString::from(String::new()),
            token_header: "X-Webhook-Token".into(),
        }
    }
}

/// Checks the credentials and reads the bounce or complaint.
///
/// # Errors
/// [`ProviderError::Unauthorized`] when a configured credential is missing or wrong.
pub fn verify_and_read(
    settings: &PostmarkSettings,
    request: &Request,
) -> Result<Parsed, ProviderError> {
    let password = settings.password.expose_secret();
    let token = settings.token.expose_secret();
    if settings.username.is_empty() && token.is_empty() {
        return Err(ProviderError::NotConfigured("postmark"));
    }
    if !settings.username.is_empty() {
        let given = request
            .header("authorization")
            .and_then(|value| value.strip_prefix("Basic "))
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
            })
            .ok_or_else(|| {
                ProviderError::Unauthorized("Authorization: basic credentials are required".into())
            })?;
        let expected = format!("{}:{password}", settings.username);
        if !same_secret(&given, expected.as_bytes()) {
            return Err(ProviderError::Unauthorized(
                "Authorization: the basic credentials are wrong".into(),
            ));
        }
    }
    if !token.is_empty() {
        let header = settings.token_header.to_ascii_lowercase();
        let given = request.header(&header).ok_or_else(|| {
            ProviderError::Unauthorized(format!(
                "{}: the header is required",
                settings.token_header
            ))
        })?;
        if !same_secret(given.as_bytes(), token.as_bytes()) {
            return Err(ProviderError::Unauthorized(format!(
                "{}: the token is wrong",
                settings.token_header
            )));
        }
    }
    read(&request.body)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Record {
    record_type: Option<String>,
    #[serde(rename = "ID")]
    id: Option<Value>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    email: Option<String>,
    description: Option<String>,
    details: Option<String>,
    bounced_at: Option<String>,
}

fn read(body: &[u8]) -> Result<Parsed, ProviderError> {
    let record: Record = serde_json::from_slice(body).map_err(|e| {
        ProviderError::invalid("", format!("the body is not a Postmark webhook: {e}"))
    })?;
    let mut parsed = Parsed {
        id_field: "ID",
        ..Parsed::default()
    };
    let kind = match (record.record_type.as_deref(), record.kind.as_deref()) {
        (Some("Bounce"), Some("HardBounce" | "BadEmailAddress" | "ManuallyDeactivated")) => {
            Kind::HardBounce
        }
        (Some("Bounce"), Some("SoftBounce" | "Transient" | "DnsError")) => Kind::SoftBounce,
        (Some("SpamComplaint"), _) => Kind::Complaint,
        (Some(_), _) => {
            parsed.ignored = 1;
            return Ok(parsed);
        }
        (None, _) => return Err(ProviderError::invalid("RecordType", "missing")),
    };
    let id = match record.id {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(ProviderError::invalid("ID", "missing")),
    };
    let email = record
        .email
        .ok_or_else(|| ProviderError::invalid("Email", "missing"))?;
    let details = record.details.unwrap_or_default();
    let text = match record.description {
        Some(description) if details.is_empty() => description,
        Some(description) => format!("{description} {details}"),
        None => details,
    };
    parsed.reports.push(Report {
        recipient: Recipient::Address(address("Email", &email)?),
        kind,
        code: smtp_code(&text),
        text,
        source: "postmark",
        id,
        delivery: None,
        campaign: None,
        occurred_at: record
            .bounced_at
            .as_deref()
            .and_then(|at| Timestamp::parse(at).ok()),
    });
    Ok(parsed)
}
