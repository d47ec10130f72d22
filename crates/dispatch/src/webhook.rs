//! Webhooks: a signed JSON POST per delivery, over pooled keep-alive connections, to targets
//! the [`TargetPolicy`] allows.

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use reqwest::header::{CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{StatusCode, Url, redirect};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::DispatchError;
use crate::sender::{SendReceipt, SendResult, Sender};
use crate::signature::{
    SigningKeys, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, WebhookSecret,
};
use crate::target::{BlockedTarget, GuardedResolver, TargetPolicy, resolve_checked};

/// How webhooks leave Clarion: the `[webhook]` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The signing secret of the default endpoint (`sending.webhook_url`), `whsec_` + base64
    /// of the key; empty when only webhook endpoints with their own secrets are used. Never
    /// logged or printed.
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
    /// After a webhook endpoint's secret is rotated, how long deliveries are also signed with
    /// the old secret (unless the rotation is finished earlier), in seconds.
    #[serde(default = "default_rotation_overlap_secs")]
    pub rotation_overlap_secs: u64,
}

fn default_rotation_overlap_secs() -> u64 {
    24 * 60 * 60
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
            rotation_overlap_secs: default_rotation_overlap_secs(),
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
#[derive(Debug, Clone)]
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
    /// The endpoint's own secrets; `None` signs with `webhook.secret` (the default endpoint).
    pub signing: Option<Arc<SigningKeys>>,
    /// The endpoint's own limit for the whole request; `None` uses `webhook.timeout_ms`.
    pub timeout: Option<Duration>,
}

/// Headers the sender sets itself or that belong to the connection, not the message, in
/// lower case.
const RESERVED_HEADERS: &[&str] = &[
    WEBHOOK_ID,
    WEBHOOK_TIMESTAMP,
    WEBHOOK_SIGNATURE,
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// Checks an extra header a user configures for an endpoint: a valid HTTP name and value, and
/// not one of the headers Clarion sets itself or hop-by-hop ones (`webhook-signature`,
/// `content-length`, `host`, `connection`, ...). The error says why, for the user.
pub fn check_extra_header(name: &str, value: &str) -> Result<(), String> {
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("{name:?} is not a valid HTTP header name"));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "{name} is set by Clarion itself or belongs to the connection; it cannot be configured"
        ));
    }
    if reqwest::header::HeaderValue::from_str(value).is_err() {
        return Err(format!(
            "the value of {name} is not a valid HTTP header value (no line breaks or control characters)"
        ));
    }
    Ok(())
}

/// How much of an answer a [`WebhookAttempt`] keeps.
const ATTEMPT_BODY_BYTES: usize = 4 * 1024;

/// One webhook call as the receiver answered it: for the delivery's outcome, the endpoint's
/// last results and "send test".
#[derive(Debug, Clone)]
pub struct WebhookAttempt {
    /// The receiver's HTTP status, if it answered at all.
    pub status: Option<u16>,
    /// The first bytes of its answer (up to 4 KiB, and `webhook.max_response_bytes`).
    pub body: Vec<u8>,
    /// From sending the request to reading the answer.
    pub elapsed: Duration,
    /// Delivered, or why not and whether to retry.
    pub result: SendResult,
}

/// POSTs [`WebhookMessage`]s signed per Standard Webhooks.
///
/// Redirects are never followed, proxies from the environment are ignored, and every target
/// address is checked against the [`TargetPolicy`] before connecting. Connections are kept
/// alive and reused; share one sender per process.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    /// `webhook.secret`, for messages without secrets of their own.
    secret: Option<Arc<SigningKeys>>,
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
    /// Builds the sender; fails when the secret is set but not in `whsec_` form. Without a
    /// secret only messages that bring their own ([`WebhookMessage::signing`]) can be sent.
    pub fn new(config: &WebhookConfig) -> Result<Self, DispatchError> {
        let secret = match config.secret.expose_secret() {
            "" => None,
            text => Some(Arc::new(SigningKeys::new(WebhookSecret::parse(text)?))),
        };
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
            // Receivers commonly close idle connections after five seconds (Node, actix-web);
            // one reused just as the receiver closes it fails the message for nothing.
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|error| {
                DispatchError::invalid_config("webhook", format!("HTTP client: {error}"))
            })?;
        Ok(Self {
            client,
            secret,
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
        self.attempt(message).await.result
    }

    /// Signs and POSTs one delivery like [`WebhookSender::send_webhook`], and also says what the
    /// receiver answered and how long it took.
    pub async fn attempt(&self, message: &WebhookMessage) -> WebhookAttempt {
        let started = Instant::now();
        let mut status = None;
        let mut body = Vec::new();
        let result = self.post(message, &mut status, &mut body).await;
        WebhookAttempt {
            status,
            body,
            elapsed: started.elapsed(),
            result,
        }
    }

    /// Sends a batch like [`Sender::send_many`] (at most `concurrency` in flight, outcomes in
    /// the order given), with each receiver's answer.
    pub async fn attempt_many(
        &self,
        messages: &[WebhookMessage],
        concurrency: usize,
    ) -> Vec<WebhookAttempt> {
        let limit = concurrency.max(1);
        let mut waiting = messages.iter().enumerate();
        let mut in_flight = FuturesUnordered::new();
        let mut attempts = Vec::with_capacity(messages.len());
        loop {
            while in_flight.len() < limit {
                let Some((index, message)) = waiting.next() else {
                    break;
                };
                in_flight.push(attempt_indexed(self, index, message));
            }
            match in_flight.next().await {
                Some(attempt) => attempts.push(attempt),
                None => break,
            }
        }
        attempts.sort_unstable_by_key(|(index, _)| *index);
        attempts.into_iter().map(|(_, attempt)| attempt).collect()
    }

    async fn post(
        &self,
        message: &WebhookMessage,
        answered: &mut Option<u16>,
        answer: &mut Vec<u8>,
    ) -> SendResult {
        let url = self.parse_target(&message.url)?;
        let Some(keys) = message.signing.as_ref().or(self.secret.as_ref()) else {
            return Err(DispatchError::permanent(
                "no webhook secret is configured (webhook.secret)",
            ));
        };
        let timestamp = Utc::now().timestamp();
        let signature = keys.sign(&message.webhook_id, timestamp, &message.body);
        let mut request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(WEBHOOK_ID, message.webhook_id.as_str())
            .header(WEBHOOK_TIMESTAMP, timestamp)
            .header(WEBHOOK_SIGNATURE, signature);
        for (name, value) in &message.headers {
            if RESERVED_HEADERS
                .iter()
                .any(|r| r.eq_ignore_ascii_case(name))
            {
                return Err(DispatchError::permanent(format!(
                    "extra header {name} would replace one Clarion sets itself"
                )));
            }
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(timeout) = message.timeout {
            request = request.timeout(timeout);
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
        *answered = Some(status.as_u16());
        let body = read_capped(response, self.max_response_bytes).await;
        let result = classify_status(status, retry_after, location.as_deref(), &body);
        // A batch keeps its attempts until it is recorded: only the start of each answer.
        answer.extend_from_slice(&body[..body.len().min(ATTEMPT_BODY_BYTES)]);
        result
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
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(DispatchError::permanent(
                "webhook URL must not carry credentials (user:password@); send them as an extra header instead",
            ));
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

// A named async fn rather than a closure: the compiler cannot prove a closure-made future
// `Send` for every lifetime of the borrowed message.
async fn attempt_indexed(
    sender: &WebhookSender,
    index: usize,
    message: &WebhookMessage,
) -> (usize, WebhookAttempt) {
    (index, sender.attempt(message).await)
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
