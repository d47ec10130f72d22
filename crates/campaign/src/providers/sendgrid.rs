//! SendGrid's signed Event Webhook: a JSON array of events, signed with ECDSA P-256 over SHA-256
//! of the `X-Twilio-Email-Event-Webhook-Timestamp` header followed by the raw body; the
//! signature (base64 DER) is in `X-Twilio-Email-Event-Webhook-Signature`, the verification key
//! is the one SendGrid shows for the webhook (base64 DER, or PEM).
//!
//! `bounce` events of `type: bounce` are hard bounces, of `type: blocked` soft ones;
//! `spamreport` events are complaints. `sg_event_id` is the idempotency key.

use base64::Engine as _;
use clarion_model::Timestamp;
use p256::ecdsa::{Signature, VerifyingKey, signature::Verifier as _};
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;
use serde_json::Value;

use super::{Parsed, ProviderError, Request, address, delivery_of, smtp_code};
use crate::feedback::{Kind, Recipient, Report};

const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";

/// `[providers.sendgrid]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendgridSettings {
    /// The webhook's verification key (Mail Settings, Event Webhook, Signature Verification):
    /// base64 DER as SendGrid shows it, or PEM. Empty: the endpoint is off.
    pub public_key: String,
    /// A timestamp further than this from now is refused, in seconds.
    pub max_age_secs: u64,
}

impl Default for SendgridSettings {
    fn default() -> Self {
        Self {
            public_key: String::new(),
            max_age_secs: 600,
        }
    }
}

impl SendgridSettings {
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.public_key.trim().is_empty() {
            key(&self.public_key).map_err(|e| ("providers.sendgrid.public_key", e))?;
        }
        Ok(())
    }
}

fn key(text: &str) -> Result<VerifyingKey, String> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text)
            .map_err(|e| format!("not a P-256 public key in PEM: {e}"));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("not base64: {e}"))?;
    VerifyingKey::from_public_key_der(&der).map_err(|e| format!("not a P-256 public key: {e}"))
}

/// Checks the signature and reads the events.
///
/// # Errors
/// [`ProviderError::Unauthorized`] for a missing, malformed or wrong signature or a stale
/// timestamp.
pub fn verify_and_read(
    settings: &SendgridSettings,
    request: &Request,
) -> Result<Parsed, ProviderError> {
    if settings.public_key.trim().is_empty() {
        return Err(ProviderError::NotConfigured("sendgrid"));
    }
    let key = key(&settings.public_key).map_err(ProviderError::Unauthorized)?;
    let signature = request
        .header(SIGNATURE)
        .ok_or_else(|| ProviderError::Unauthorized(format!("the {SIGNATURE} header is missing")))?;
    let timestamp = request
        .header(TIMESTAMP)
        .ok_or_else(|| ProviderError::Unauthorized(format!("the {TIMESTAMP} header is missing")))?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .ok()
        .and_then(|der| Signature::from_der(&der).ok())
        .ok_or_else(|| {
            ProviderError::Unauthorized(format!("{SIGNATURE} is not a base64 DER ECDSA signature"))
        })?;
    let mut signed = Vec::with_capacity(timestamp.len() + request.body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(&request.body);
    key.verify(&signed, &signature).map_err(|_| {
        ProviderError::Unauthorized(format!(
            "{SIGNATURE} does not verify with providers.sendgrid.public_key"
        ))
    })?;
    let signed_at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| ProviderError::Unauthorized(format!("{TIMESTAMP} is not a Unix time")))?;
    let age = (Timestamp::now().millis() / 1000 - signed_at).unsigned_abs();
    if age > settings.max_age_secs {
        return Err(ProviderError::Unauthorized(format!(
            "{TIMESTAMP} is {age} s away from now, more than providers.sendgrid.max_age_secs ({})",
            settings.max_age_secs
        )));
    }
    read(&request.body)
}

#[derive(Deserialize)]
struct Event {
    email: Option<String>,
    event: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    sg_event_id: Option<String>,
    reason: Option<String>,
    status: Option<String>,
    timestamp: Option<Value>,
    /// The original Message-ID.
    #[serde(rename = "smtp-id")]
    smtp_id: Option<String>,
}

fn read(body: &[u8]) -> Result<Parsed, ProviderError> {
    let events: Vec<Event> = serde_json::from_slice(body).map_err(|e| {
        ProviderError::invalid("", format!("the body is not a SendGrid event array: {e}"))
    })?;
    let mut parsed = Parsed {
        id_field: "sg_event_id",
        ..Parsed::default()
    };
    for (index, event) in events.into_iter().enumerate() {
        let field = |name: &str| format!("[{index}].{name}");
        let kind = match (event.event.as_deref(), event.kind.as_deref()) {
            (Some("bounce"), Some("blocked")) => Kind::SoftBounce,
            (Some("bounce"), _) => Kind::HardBounce,
            (Some("spamreport"), _) => Kind::Complaint,
            (Some(_), _) => {
                parsed.ignored += 1;
                continue;
            }
            (None, _) => return Err(ProviderError::invalid(field("event"), "missing")),
        };
        let id = event
            .sg_event_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ProviderError::invalid(field("sg_event_id"), "missing"))?;
        let email = event
            .email
            .ok_or_else(|| ProviderError::invalid(field("email"), "missing"))?;
        let reason = event.reason.unwrap_or_default();
        let text = match event.status {
            Some(status) if !reason.contains(&status) => format!("{reason} ({status})"),
            _ => reason,
        };
        parsed.reports.push(Report {
            recipient: Recipient::Address(address(&field("email"), &email)?),
            kind,
            code: smtp_code(&text),
            text,
            source: "sendgrid",
            id,
            delivery: delivery_of(event.smtp_id.as_deref()),
            campaign: None,
            occurred_at: event
                .timestamp
                .as_ref()
                .and_then(Value::as_i64)
                .map(|secs| Timestamp::from_millis(secs.saturating_mul(1000))),
        });
    }
    Ok(parsed)
}
