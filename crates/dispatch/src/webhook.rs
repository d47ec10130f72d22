//! Webhooks: a signed JSON POST per delivery, over pooled keep-alive connections, to targets
//! the [`TargetPolicy`] allows.

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{StatusCode, Url, redirect};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::DispatchError;
use crate::sender::{SendReceipt, SendResult, Sender};
use crate::signature::{WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, WebhookSecret};
use crate::target::{BlockedTarget, GuardedResolver, TargetPolicy, resolve_checked};

/// How webhooks leave Clarion: the `[webhook]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The signing secret, `whsec_` + base64 of the key. Never logged or printed.
    pub secret: SecretString,
    /// Limit for opening the connection (TCP and TLS), in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Limit for the whole request, from connecting to reading the response, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Allow targets on this host (127.0.0.0/8, ::1). Off by default.
    #[serde(default)]
    pub allow_loopback: bool,
    /// Allow targets in private networks (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7).
    #[serde(default)]
    pub allow_private: bool,
    /// Allow link-local targets (169.254/16, fe80::/10), e.g. cloud metadata. Off by default.
    #[serde(default)]
    pub allow_link_local: bool,
    /// The most bytes of a response body read; the rest is ignored, not an error.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// The `User-Agent` header of every delivery.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// Idle keep-alive connections kept per receiver host.
    #[serde(default = "default_max_idle_per_host")]
    pub max_idle_per_host: usize,
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_timeout_ms() -> u64 {
    15_000
}

fn default_max_response_bytes() -> usize {
    64 * 1024
}

fn default_user_agent() -> String {
    format!("Clarion-Webhooks/{}", env!("CARGO_PKG_VERSION"))
}

fn default_max_idle_per_host() -> usize {
    256
}

impl WebhookConfig {
    /// Defaults for everything but the secret: public targets only, 5 s to connect, 15 s per
    /// request, 64 KiB of response read.
    pub fn new(secret: SecretString) -> Self {
        Self {
            secret,
            connect_timeout_ms: default_connect_timeout_ms(),
            timeout_ms: default_timeout_ms(),
            allow_loopback: false,
            allow_private: false,
            allow_link_local: false,
            max_response_bytes: default_max_response_bytes(),
            user_agent: default_user_agent(),
            max_idle_per_host: default_max_idle_per_host(),
        }
    }

    /// The address rules these settings describe.
    pub fn policy(&self) -> TargetPolicy {
        TargetPolicy {
            allow_loopback: self.allow_loopback,
            allow_private: self.allow_private,
            allow_link_local: self.allow_link_local,
        }
    }
}

/// One rendered webhook delivery, independent of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookMessage {
    /// Where to POST; `http` or `https` only.
    pub url: String,
    /// The `webhook-id` header: the delivery id, the same on every retry, so receivers can
    /// drop duplicates.
    pub webhook_id: String,
    /// The rendered JSON, sent as is with `Content-Type: application/json`.
    pub body: Vec<u8>,
    /// Further headers (name, value), e.g. an API key the receiver expects. The signature
    /// headers, `Content-Type`, `User-Agent` and framing headers cannot be set this way: the
    /// delivery fails permanently.
    pub headers: Vec<(String, String)>,
}

/// Headers the sender sets itself, in lower case.
const RESERVED_HEADERS: &[&str] = &[
    WEBHOOK_ID,
    WEBHOOK_TIMESTAMP,
    WEBHOOK_SIGNATURE,
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "user-agent",
];

/// POSTs [`WebhookMessage`]s signed per Standard Webhooks.
///
/// Redirects are never followed, proxies from the environment are ignored, and every target
/// address is checked against the [`TargetPolicy`] before connecting. Connections are kept
/// alive and reused; share one sender per process.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    secret: Arc<WebhookSecret>,
    policy: TargetPolicy,
    max_response_bytes: usize,
}

impl fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSender")
            .field("policy", &self.policy)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl WebhookSender {
    /// Builds the sender; fails when the secret is not in `whsec_` form.
    pub fn new(config: &WebhookConfig) -> Result<Self, DispatchError> {
        let secret = WebhookSecret::parse(config.secret.expose_secret())?;
        let policy = config.policy();
        let client = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            // A proxy would make the connection, bypassing the address checks.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.timeout_ms))
            .user_agent(config.user_agent.as_str())
            .pool_max_idle_per_host(config.max_idle_per_host)
            .build()
            .map_err(|error| {
                DispatchError::invalid_config("webhook", format!("HTTP client: {error}"))
            })?;
        Ok(Self {
            client,
            secret: Arc::new(secret),
            policy,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// Checks a target URL as a delivery would, resolving its host: for validating a URL when
    /// a user saves it. Sending checks again, since DNS answers change.
    pub async fn check_target(&self, url: &str) -> Result<(), DispatchError> {
        let url = self.parse_target(url)?;
        if let Some(host) = url.host_str()
            && host_ip(host).is_none()
        {
            let port = url.port_or_known_default().unwrap_or(0);
            resolve_checked(host, port, self.policy)
                .await
                .map_err(|error| match error.downcast_ref::<BlockedTarget>() {
                    Some(blocked) => DispatchError::permanent(blocked.to_string()),
                    None => DispatchError::transient(format!("cannot resolve {host}: {error}")),
                })?;
        }
        Ok(())
    }

    /// Signs and POSTs one delivery. 2xx is success; 408, 429 and 5xx are transient (with the
    /// receiver's `Retry-After`); 3xx and other 4xx are permanent.
    pub async fn send_webhook(&self, message: &WebhookMessage) -> SendResult {
        let url = self.parse_target(&message.url)?;
        let timestamp = Utc::now().timestamp();
        let signature = self
            .secret
            .sign(&message.webhook_id, timestamp, &message.body);
        let mut request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(WEBHOOK_ID, message.webhook_id.as_str())
            .header(WEBHOOK_TIMESTAMP, timestamp)
            .header(WEBHOOK_SIGNATURE, signature);
        for (name, value) in &message.headers {
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(DispatchError::permanent(format!(
                    "extra header {name} would replace one Clarion sets itself"
                )));
            }
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request
            .body(message.body.clone())
            .send()
            .await
            .map_err(classify_request_error)?;

        let status = response.status();
        let retry_after = retry_after(response.headers());
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = read_capped(response, self.max_response_bytes).await;
        classify_status(status, retry_after, location.as_deref(), &body)
    }

    /// Checks the scheme and, for IP literals, the address. Host names are checked by the
    /// client's resolver when it connects.
    fn parse_target(&self, url: &str) -> Result<Url, DispatchError> {
        let parsed = Url::parse(url).map_err(|error| {
            DispatchError::permanent(format!("invalid webhook URL {url:?}: {error}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(DispatchError::permanent(format!(
                "webhook URL {url:?} must use http or https, not {}",
                parsed.scheme()
            )));
        }
        let Some(host) = parsed.host_str() else {
            return Err(DispatchError::permanent(format!(
                "webhook URL {url:?} has no host"
            )));
        };
        // The HTTP client skips the resolver for IP literals, so they are checked here.
        if let Some(ip) = host_ip(host) {
            self.policy
                .check_ip(ip)
                .map_err(|blocked| DispatchError::permanent(blocked.to_string()))?;
        }
        Ok(parsed)
    }
}

impl Sender for WebhookSender {
    type Message = WebhookMessage;

    fn send(&self, message: &WebhookMessage) -> impl Future<Output = SendResult> + Send {
        self.send_webhook(message)
    }
}

fn host_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Reads at most `limit` bytes of the body. The body only feeds the failure reason; a
/// receiver that streams too much, or stalls, must not hold the delivery up or fail it.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

fn classify_status(
    status: StatusCode,
    retry_after: Option<Duration>,
    location: Option<&str>,
    body: &[u8],
) -> SendResult {
    let reason = || {
        let mut reason = format!("webhook receiver answered HTTP {status}");
        let excerpt = String::from_utf8_lossy(body);
        let excerpt = excerpt.trim();
        if !excerpt.is_empty() {
            let excerpt: String = excerpt.chars().take(200).collect();
            reason.push_str(": ");
            reason.push_str(&excerpt);
        }
        reason
    };
    if status.is_success() {
        Ok(SendReceipt {
            detail: format!("HTTP {status}"),
        })
    } else if status.is_redirection() {
        Err(DispatchError::permanent(format!(
            "webhook receiver answered HTTP {status}, redirecting to {}; redirects are not \
             followed, update the webhook URL",
            location.unwrap_or("nowhere")
        )))
    } else if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        Err(DispatchError::Transient {
            reason: reason(),
            retry_after,
        })
    } else {
        Err(DispatchError::permanent(reason()))
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date in the past means
/// "now".
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (date.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

fn classify_request_error(error: reqwest::Error) -> DispatchError {
    if let Some(blocked) = find_source::<BlockedTarget>(&error) {
        return DispatchError::permanent(blocked.to_string());
    }
    let reason = error_chain(&error);
    if error.is_builder() {
        DispatchError::permanent(format!("invalid webhook request: {reason}"))
    } else if error.is_timeout() {
        DispatchError::transient(format!("webhook receiver timed out: {reason}"))
    } else if error.is_connect() {
        DispatchError::transient(format!("cannot connect to the webhook receiver: {reason}"))
    } else {
        DispatchError::transient(format!("webhook request failed: {reason}"))
    }
}

fn find_source<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// reqwest's own message ("error sending request") hides the cause; the chain names it.
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(source) = current {
        text.push_str(": ");
        text.push_str(&source.to_string());
        current = source.source();
    }
    text
}
