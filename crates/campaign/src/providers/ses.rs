//! Amazon SES notifications, delivered by SNS over HTTPS.
//!
//! SNS signs each message with RSA (PKCS #1 v1.5, SHA-1 for `SignatureVersion` 1, SHA-256 for
//! 2) over a canonical string of its fields; the signing certificate is fetched from
//! `SigningCertURL`, which must be an `https` URL on `sns.<region>.amazonaws.com` (so the TLS
//! connection, checked against the web PKI, vouches for it). Certificates are cached by URL.
//! A `SubscriptionConfirmation` is confirmed by visiting its `SubscribeURL` (same host rule).
//! `topic_arns`, when set, lists the only topics accepted.
//!
//! The SES notification in `Message` (`notificationType`, or `eventType` for event
//! publishing): a `Bounce` of `bounceType: Permanent` is a hard bounce for each bounced
//! recipient, `Transient` a soft one (`Undetermined` is ignored); a `Complaint` is a complaint
//! for each complained recipient. `feedbackId` is the idempotency key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use clarion_model::Timestamp;
use rsa::RsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use serde::Deserialize;
use serde_json::Value;
use x509_cert::der::{DecodePem as _, Encode as _};

use super::{Parsed, ProviderError, Request, address, delivery_of, smtp_code};
use crate::feedback::{Kind, Recipient, Report};

/// `[providers.ses]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SesSettings {
    /// Accept SNS notifications at `/webhooks/ses`.
    pub enabled: bool,
    /// The SNS topic ARNs accepted; empty: any topic.
    pub topic_arns: Vec<String>,
    /// For tests only: an origin (`http://127.0.0.1:8125`) that certificate and subscription
    /// URLs must start with instead of `https://sns.<region>.amazonaws.com/`. Leave empty.
    pub test_cert_origin: String,
    /// Time allowed to fetch a certificate or confirm a subscription, in seconds.
    pub fetch_timeout_secs: u64,
}

impl Default for SesSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            topic_arns: Vec::new(),
            test_cert_origin: String::new(),
            fetch_timeout_secs: 10,
        }
    }
}

impl SesSettings {
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.fetch_timeout_secs == 0 {
            return Err((
                "providers.ses.fetch_timeout_secs",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// SNS signing certificates' public keys, by URL, and the client that fetches them.
pub struct Certificates {
    client: Option<reqwest::Client>,
    keys: Mutex<HashMap<String, RsaPublicKey>>,
}

impl Certificates {
    pub(crate) fn new(settings: &SesSettings) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.fetch_timeout_secs.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .ok();
        Self {
            client,
            keys: Mutex::new(HashMap::new()),
        }
    }

    async fn key(&self, settings: &SesSettings, url: &str) -> Result<RsaPublicKey, ProviderError> {
        if let Some(key) = self
            .keys
            .lock()
            .ok()
            .and_then(|keys| keys.get(url).cloned())
        {
            return Ok(key);
        }
        let pem = self.fetch(settings, url, "SigningCertURL").await?;
        let certificate = x509_cert::Certificate::from_pem(&pem).map_err(|e| {
            ProviderError::Unauthorized(format!("SigningCertURL: not a PEM certificate: {e}"))
        })?;
        let spki = certificate
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| ProviderError::Unauthorized(format!("SigningCertURL: {e}")))?;
        let key = <RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&spki)
            .map_err(|e| {
                ProviderError::Unauthorized(format!(
                    "SigningCertURL: the certificate has no RSA key: {e}"
                ))
            })?;
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() > 100 {
                keys.clear();
            }
            keys.insert(url.to_owned(), key.clone());
        }
        Ok(key)
    }

    /// GETs `url` once it passed the host rule; the body, capped at 64 KB.
    async fn fetch(
        &self,
        settings: &SesSettings,
        url: &str,
        field: &str,
    ) -> Result<Vec<u8>, ProviderError> {
        allowed(settings, url).map_err(|e| ProviderError::Unauthorized(format!("{field}: {e}")))?;
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| ProviderError::Upstream("no HTTP client".into()))?;
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| ProviderError::Upstream(format!("{field}: fetching failed: {e}")))?;
        if !response.status().is_success() {
            return Err(ProviderError::Upstream(format!(
                "{field}: answered {}",
                response.status()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::Upstream(format!("{field}: reading failed: {e}")))?;
        if body.len() > 64 * 1024 {
            return Err(ProviderError::Upstream(format!(
                "{field}: the answer is too large"
            )));
        }
        Ok(body.to_vec())
    }
}

/// Whether SNS may have sent `url`: https on `sns.<region>.amazonaws.com` (or `.com.cn`), or
/// the test origin when one is set.
fn allowed(settings: &SesSettings, url: &str) -> Result<(), String> {
    if !settings.test_cert_origin.is_empty() {
        let origin = settings.test_cert_origin.trim_end_matches('/');
        return if url.starts_with(&format!("{origin}/")) {
            Ok(())
        } else {
            Err(format!("{url:?} is not on the configured test origin"))
        };
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if parsed.scheme() != "https" {
        return Err(format!("{url:?} is not an https URL"));
    }
    if parsed.port().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{url:?} names a port or credentials"));
    }
    let host = parsed.host_str().unwrap_or_default();
    let region = host
        .strip_prefix("sns.")
        .and_then(|rest| {
            rest.strip_suffix(".amazonaws.com")
                .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))
        })
        .unwrap_or_default();
    let region_ok = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !region_ok {
        return Err(format!("{url:?} is not on sns.<region>.amazonaws.com"));
    }
    Ok(())
}

/// An SNS message as POSTed.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope {
    #[serde(rename = "Type")]
    kind: String,
    message_id: String,
    topic_arn: String,
    subject: Option<String>,
    message: String,
    timestamp: String,
    signature_version: String,
    signature: String,
    #[serde(rename = "SigningCertURL")]
    signing_cert_url: String,
    token: Option<String>,
    #[serde(rename = "SubscribeURL")]
    subscribe_url: Option<String>,
}

impl Envelope {
    /// The canonical string SNS signs: field names and values, one per line, in this order.
    fn signed_text(&self) -> Result<String, ProviderError> {
        let mut fields: Vec<(&str, &str)> =
            vec![("Message", &self.message), ("MessageId", &self.message_id)];
        match self.kind.as_str() {
            "Notification" => {
                if let Some(subject) = &self.subject {
                    fields.push(("Subject", subject));
                }
                fields.push(("Timestamp", &self.timestamp));
                fields.push(("TopicArn", &self.topic_arn));
            }
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
                let subscribe = self
                    .subscribe_url
                    .as_deref()
                    .ok_or_else(|| ProviderError::invalid("SubscribeURL", "missing"))?;
                let token = self
                    .token
                    .as_deref()
                    .ok_or_else(|| ProviderError::invalid("Token", "missing"))?;
                fields.push(("SubscribeURL", subscribe));
                fields.push(("Timestamp", &self.timestamp));
                fields.push(("Token", token));
                fields.push(("TopicArn", &self.topic_arn));
            }
            other => {
                return Err(ProviderError::invalid(
                    "Type",
                    format!("{other:?} is not an SNS message type"),
                ));
            }
        }
        fields.push(("Type", &self.kind));
        let mut text = String::new();
        for (name, value) in fields {
            text.push_str(name);
            text.push('\n');
            text.push_str(value);
            text.push('\n');
        }
        Ok(text)
    }
}

/// What a verified SNS request was.
pub enum Read {
    /// A subscription confirmation, confirmed.
    Confirmed,
    /// A notification with its bounces and complaints.
    Events(Parsed),
}

/// Verifies an SNS request and reads it; confirms subscriptions.
///
/// # Errors
/// [`ProviderError::Unauthorized`] for a signature that does not verify, a certificate URL
/// off the allowed host or a topic not accepted; [`ProviderError::Upstream`] when the
/// certificate cannot be fetched.
pub async fn verify_and_read(
    settings: &SesSettings,
    certificates: &Certificates,
    request: &Request,
) -> Result<Read, ProviderError> {
    if !settings.enabled {
        return Err(ProviderError::NotConfigured("ses"));
    }
    let envelope: Envelope = serde_json::from_slice(&request.body).map_err(|e| {
        ProviderError::Unauthorized(format!("the body is not a signed SNS message: {e}"))
    })?;
    if !settings.topic_arns.is_empty() && !settings.topic_arns.contains(&envelope.topic_arn) {
        return Err(ProviderError::Unauthorized(format!(
            "TopicArn: {:?} is not in providers.ses.topic_arns",
            envelope.topic_arn
        )));
    }
    let text = envelope.signed_text()?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(envelope.signature.trim())
        .ok()
        .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| ProviderError::Unauthorized("Signature is not base64".into()))?;
    let key = certificates
        .key(settings, &envelope.signing_cert_url)
        .await?;
    let verified = match envelope.signature_version.as_str() {
        "1" => VerifyingKey::<sha1::Sha1>::new(key).verify(text.as_bytes(), &signature),
        "2" => VerifyingKey::<sha2::Sha256>::new(key).verify(text.as_bytes(), &signature),
        other => {
            return Err(ProviderError::Unauthorized(format!(
                "SignatureVersion {other:?} is not 1 or 2"
            )));
        }
    };
    verified.map_err(|_| {
        ProviderError::Unauthorized(
            "Signature does not verify with the certificate at SigningCertURL".into(),
        )
    })?;
    match envelope.kind.as_str() {
        "SubscriptionConfirmation" => {
            let url = envelope.subscribe_url.as_deref().unwrap_or_default();
            certificates.fetch(settings, url, "SubscribeURL").await?;
            tracing::info!(topic = %envelope.topic_arn, "SNS subscription confirmed");
            Ok(Read::Confirmed)
        }
        "UnsubscribeConfirmation" => Ok(Read::Events(Parsed::default())),
        _ => {
            let message: Value = serde_json::from_str(&envelope.message).map_err(|e| {
                ProviderError::invalid("Message", format!("not an SES notification: {e}"))
            })?;
            Ok(Read::Events(read(&message)?))
        }
    }
}

fn read(message: &Value) -> Result<Parsed, ProviderError> {
    let mut parsed = Parsed {
        id_field: "Message.feedbackId",
        ..Parsed::default()
    };
    let kind = text(message, "notificationType")
        .or_else(|| text(message, "eventType"))
        .ok_or_else(|| ProviderError::invalid("Message.notificationType", "missing"))?;
    let (body, list, report_kind) = match kind {
        "Bounce" => {
            let bounce = message
                .get("bounce")
                .ok_or_else(|| ProviderError::invalid("Message.bounce", "missing"))?;
            let kind = match text(bounce, "bounceType") {
                Some("Permanent") => Kind::HardBounce,
                Some("Transient") => Kind::SoftBounce,
                _ => {
                    parsed.ignored = 1;
                    return Ok(parsed);
                }
            };
            (bounce, "bouncedRecipients", kind)
        }
        "Complaint" => {
            let complaint = message
                .get("complaint")
                .ok_or_else(|| ProviderError::invalid("Message.complaint", "missing"))?;
            (complaint, "complainedRecipients", Kind::Complaint)
        }
        _ => {
            parsed.ignored = 1;
            return Ok(parsed);
        }
    };
    let section = if report_kind == Kind::Complaint {
        "complaint"
    } else {
        "bounce"
    };
    let id = text(body, "feedbackId").ok_or_else(|| {
        ProviderError::invalid(format!("Message.{section}.feedbackId"), "missing")
    })?;
    let occurred_at = text(body, "timestamp").and_then(|at| Timestamp::parse(at).ok());
    let recipients = body
        .get(list)
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::invalid(format!("Message.{section}.{list}"), "missing"))?;
    for (index, recipient) in recipients.iter().enumerate() {
        let field = format!("Message.{section}.{list}[{index}].emailAddress");
        let email = text(recipient, "emailAddress")
            .ok_or_else(|| ProviderError::invalid(field.clone(), "missing"))?;
        let diagnostic = text(recipient, "diagnosticCode")
            .or_else(|| text(body, "complaintFeedbackType"))
            .unwrap_or_default();
        parsed.reports.push(Report {
            recipient: Recipient::Address(address(&field, email)?),
            kind: report_kind,
            code: smtp_code(diagnostic),
            text: diagnostic.to_owned(),
            source: "ses",
            id: id.to_owned(),
            delivery: delivery_of(
                message
                    .pointer("/mail/commonHeaders/messageId")
                    .and_then(Value::as_str),
            ),
            campaign: None,
            occurred_at,
        });
    }
    Ok(parsed)
}

/// The string at `key` of a JSON object, if there is one.
fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sns_hosts_over_https_may_sign() {
        let settings = SesSettings::default();
        for good in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
        ] {
            assert!(allowed(&settings, good).is_ok(), "{good}");
        }
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://s3.amazonaws.com/x.pem",
        ] {
            assert!(allowed(&settings, bad).is_err(), "{bad}");
        }
        let test = SesSettings {
            test_cert_origin: "http://127.0.0.1:9".into(),
            ..SesSettings::default()
        };
        assert!(allowed(&test, "http://127.0.0.1:9/cert.pem").is_ok());
        assert!(allowed(&test, "http://127.0.0.1:90/cert.pem").is_err());
    }
}
