//! Mailgun's webhooks: a JSON body `{"signature": {"timestamp", "token", "signature"},
//! "event-data": {...}}`, where `signature` is the hex HMAC-SHA256 of `timestamp` followed by
//! `token`, keyed with the domain's webhook signing key. A token is accepted once (replays
//! are refused) and a timestamp only while it is recent.
//!
//! `failed` events with `severity: permanent` are hard bounces, with `temporary` soft ones;
//! `complained` events are complaints. `event-data.id` is the idempotency key.

use std::collections::HashSet;

use clarion_model::Timestamp;
use hmac::{Hmac, Mac};
use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{OnConflict, Query},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use super::{Parsed, ProviderError, Request, address, delivery_of, smtp_code};
use crate::feedback::{Kind, Recipient, Report};

/// `[providers.mailgun]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailgunSettings {
    /// The HTTP webhook signing key (Mailgun: Sending, Webhooks). Empty: the endpoint is off.
    pub signing_key: SecretString,
    /// A signature whose timestamp is further than this from now is refused, in seconds.
    pub max_age_secs: u64,
}

impl Default for MailgunSettings {
    fn default() -> Self {
        Self {
            signing_key: SecretString::from(String::new()),
            max_age_secs: 300,
        }
    }
}

/// A verified request: its signed token (to claim) and its events.
pub struct Verified {
    pub token: String,
    pub events: Parsed,
}

#[derive(Deserialize)]
struct Body {
    signature: Signature,
    #[serde(rename = "event-data")]
    event_data: Value,
}

#[derive(Deserialize)]
struct Signature {
    timestamp: String,
    token: String,
    signature: String,
}

/// Checks the signature and freshness and reads the event.
///
/// # Errors
/// [`ProviderError::Unauthorized`] for a missing or wrong signature or a stale timestamp.
pub fn verify(settings: &MailgunSettings, request: &Request) -> Result<Verified, ProviderError> {
    let key = settings.signing_key.expose_secret();
    if key.is_empty() {
        return Err(ProviderError::NotConfigured("mailgun"));
    }
    let body: Body = serde_json::from_slice(&request.body).map_err(|e| {
        ProviderError::Unauthorized(format!(
            "the body is not a signed Mailgun webhook (signature.timestamp, signature.token, signature.signature, event-data): {e}"
        ))
    })?;
    let signature = &body.signature;
    let expected = hex::decode(&signature.signature).map_err(|_| {
        ProviderError::Unauthorized("signature.signature is not hexadecimal".into())
    })?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
        .map_err(|_| ProviderError::Unauthorized("the signing key is unusable".into()))?;
    mac.update(signature.timestamp.as_bytes());
    mac.update(signature.token.as_bytes());
    mac.verify_slice(&expected).map_err(|_| {
        ProviderError::Unauthorized(
            "signature.signature does not match: not signed with the configured signing key".into(),
        )
    })?;
    let signed_at: i64 = signature.timestamp.parse().map_err(|_| {
        ProviderError::Unauthorized("signature.timestamp is not a Unix time".into())
    })?;
    let age = (Timestamp::now().millis() / 1000 - signed_at).unsigned_abs();
    if age > settings.max_age_secs {
        return Err(ProviderError::Unauthorized(format!(
            "signature.timestamp is {age} s away from now, more than providers.mailgun.max_age_secs ({})",
            settings.max_age_secs
        )));
    }
    Ok(Verified {
        token: signature.token.clone(),
        events: read(&body.event_data)?,
    })
}

/// Records tokens as used, in one statement; answers those that were not seen before. A
/// request whose token is not among them is a replay ([`replayed`]).
///
/// # Errors
/// Database failures; no token is recorded then.
pub async fn claim_tokens(
    db: &impl ConnectionTrait,
    tokens: &[&str],
) -> Result<HashSet<String>, DbErr> {
    let mut unique: Vec<&str> = tokens.to_vec();
    // One order for every writer, each token once.
    unique.sort_unstable();
    unique.dedup();
    let mut fresh = HashSet::with_capacity(unique.len());
    let now = Timestamp::now().millis();
    for chunk in unique.chunks(5_000) {
        let mut insert = Query::insert();
        insert
            .into_table("provider_tokens")
            .columns(["provider", "token", "seen_at"])
            .on_conflict(
                OnConflict::columns(["provider", "token"])
                    .do_nothing()
                    .to_owned(),
            )
            .returning_col("token");
        for token in chunk {
            insert.values_panic(["mailgun".into(), (*token).into(), now.into()]);
        }
        for row in db.query_all(&insert).await? {
            fresh.insert(row.try_get::<String>("", "token")?);
        }
    }
    Ok(fresh)
}

/// The answer to a request whose signed token was used before.
#[must_use]
pub fn replayed() -> ProviderError {
    ProviderError::Replayed {
        field: "signature.token".into(),
        message: "this signed token was used before: the request is a replay".into(),
    }
}

fn read(event: &Value) -> Result<Parsed, ProviderError> {
    let mut parsed = Parsed {
        id_field: "event-data.id",
        ..Parsed::default()
    };
    let kind = match (text(event, "event"), text(event, "severity")) {
        (Some("failed"), Some("permanent")) => Kind::HardBounce,
        (Some("failed"), Some("temporary")) => Kind::SoftBounce,
        (Some("complained"), _) => Kind::Complaint,
        (Some(_), _) => {
            parsed.ignored = 1;
            return Ok(parsed);
        }
        (None, _) => {
            return Err(ProviderError::invalid(
                "event-data.event",
                "missing: every Mailgun event names its type",
            ));
        }
    };
    let id = text(event, "id").ok_or_else(|| ProviderError::invalid("event-data.id", "missing"))?;
    let recipient = text(event, "recipient")
        .ok_or_else(|| ProviderError::invalid("event-data.recipient", "missing"))?;
    let status = event.get("delivery-status");
    let code = status
        .and_then(|s| s.get("code"))
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok());
    let message = status
        .and_then(|s| {
            text(s, "message")
                .filter(|m| !m.is_empty())
                .or(text(s, "description"))
        })
        .or(text(event, "reason"))
        .unwrap_or_default();
    let occurred_at = event
        .get("timestamp")
        .and_then(Value::as_f64)
        .map(|secs| Timestamp::from_millis((secs * 1000.0) as i64));
    parsed.reports.push(Report {
        recipient: Recipient::Address(address("event-data.recipient", recipient)?),
        kind,
        code: code.or_else(|| smtp_code(message)),
        text: message.to_owned(),
        source: "mailgun",
        id: id.to_owned(),
        delivery: delivery_of(
            event
                .pointer("/message/headers/message-id")
                .and_then(Value::as_str),
        ),
        campaign: None,
        occurred_at,
    });
    Ok(parsed)
}

/// The string at `key` of a JSON object, if there is one.
fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}
