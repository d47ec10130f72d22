//! Webhooks to a real HTTP receiver on 127.0.0.1.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clarion_dispatch::{DispatchError, Sender, WebhookConfig, WebhookMessage, WebhookSender};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha2::Sha256;

use crate::peers::{Reply, free_port, receiver};

const KEY: &[u8] = b"a 32 byte key for the test suite";

fn secret() -> String {
    format!("whsec_{}", BASE64.encode(KEY))
}

/// Settings for a receiver on 127.0.0.1: loopback allowed, short timeouts.
fn config() -> WebhookConfig {
    let mut config = WebhookConfig::new(SecretString::from(secret()));
    config.allow_loopback = true;
    config.timeout_ms = 2_000;
    config
}

fn sender() -> WebhookSender {
    clarion_dispatch::install_crypto_provider();
    WebhookSender::new(&config()).unwrap()
}

fn delivery(url: String) -> WebhookMessage {
    WebhookMessage {
        url,
        webhook_id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
        body: r#"{"type":"campaign.message","data":{"contact":"c_42","text":"Grüße"}}"#
            .as_bytes()
            .to_vec(),
        headers: vec![("x-tenant".to_owned(), "shop".to_owned())],
        signing: None,
        timeout: None,
    }
}

/// Verifies a Standard Webhooks signature the way a receiver library does, independently of
/// the crate's signer.
fn verify(headers: &std::collections::HashMap<String, String>, body: &[u8]) -> bool {
    let id = &headers["webhook-id"];
    let timestamp = &headers["webhook-timestamp"];
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    headers["webhook-signature"]
        .split(' ')
        .any(|signature| signature == expected)
}

fn assert_permanent(outcome: &Result<clarion_dispatch::SendReceipt, DispatchError>, needle: &str) {
    match outcome {
        Err(DispatchError::Permanent { reason }) => {
            assert!(reason.contains(needle), "{needle:?} not in {reason:?}");
        }
        other => panic!("expected a permanent failure about {needle:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn delivery_is_signed_per_standard_webhooks_with_the_delivery_id() {
    let receiver = receiver(vec![]);
    let message = delivery(receiver.url("/hooks/clarion"));

    let receipt = sender().send(&message).await.unwrap();

    assert_eq!(receipt.detail, "HTTP 204 No Content");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/hooks/clarion");
    assert_eq!(request.body, message.body);
    assert_eq!(request.headers["webhook-id"], message.webhook_id);
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(request.headers["x-tenant"], "shop");
    assert!(request.headers["user-agent"].starts_with("Clarion-Webhooks/"));
    let timestamp: i64 = request.headers["webhook-timestamp"].parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    assert!(
        verify(&request.headers, &request.body),
        "{:?}",
        request.headers
    );
}

#[tokio::test]
async fn server_error_is_transient_and_the_retry_keeps_the_webhook_id() {
    let receiver = receiver(vec![Reply::status(500).body("database down")]);
    let sender = sender();
    let message = delivery(receiver.url("/"));

    let first = sender.send(&message).await;
    let second = sender.send(&message).await;

    match first {
        Err(DispatchError::Transient {
            reason,
            retry_after,
        }) => {
            assert!(
                reason.contains("500") && reason.contains("database down"),
                "{reason}"
            );
            assert_eq!(retry_after, None);
        }
        other => panic!("500 must be transient, got {other:?}"),
    }
    assert!(second.is_ok(), "{second:?}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].headers["webhook-id"],
        requests[1].headers["webhook-id"]
    );
    assert!(
        requests
            .iter()
            .all(|request| verify(&request.headers, &request.body))
    );
}

#[tokio::test]
async fn too_many_requests_is_transient_with_retry_after() {
    let receiver = receiver(vec![
        Reply::status(429).header("Retry-After", "7"),
        Reply::status(503).header("Retry-After", "Fri, 01 Jan 2100 00:00:00 GMT"),
    ]);
    let sender = sender();

    let seconds = sender.send(&delivery(receiver.url("/"))).await.unwrap_err();
    let date = sender.send(&delivery(receiver.url("/"))).await.unwrap_err();

    assert!(seconds.is_transient());
    assert_eq!(seconds.retry_after(), Some(Duration::from_secs(7)));
    assert!(date.is_transient());
    assert!(date.retry_after().unwrap() > Duration::from_secs(365 * 24 * 3600));
}

#[tokio::test]
async fn client_error_is_permanent_with_the_receivers_reason() {
    let receiver = receiver(vec![
        Reply::status(400).body(r#"{"error":"missing field `email`"}"#),
    ]);

    let outcome = sender().send(&delivery(receiver.url("/"))).await;

    assert_permanent(&outcome, "400 Bad Request");
    assert_permanent(&outcome, "missing field `email`");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let receiver = receiver(vec![
        Reply::status(307).header("Location", "http://169.254.169.254/latest/meta-data/"),
    ]);

    let outcome = sender().send(&delivery(receiver.url("/moved"))).await;

    assert_permanent(&outcome, "169.254.169.254");
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn oversized_response_is_capped_without_error() {
    let receiver = receiver(vec![
        Reply::status(200).body(vec![b'x'; 8 * 1024 * 1024]),
        Reply::status(422).body(vec![b'y'; 8 * 1024 * 1024]),
    ]);
    let mut config = config();
    config.max_response_bytes = 1024;
    let sender = WebhookSender::new(&config).unwrap();

    let accepted = sender.send(&delivery(receiver.url("/"))).await;
    let refused = sender.send(&delivery(receiver.url("/"))).await;

    assert_eq!(accepted.unwrap().detail, "HTTP 200 OK");
    match refused {
        Err(DispatchError::Permanent { reason }) => assert!(reason.len() < 400, "{reason}"),
        other => panic!("422 must be permanent, got {other:?}"),
    }
}

#[tokio::test]
async fn slow_receiver_times_out_transiently() {
    let receiver = receiver(vec![Reply::status(200).delay(Duration::from_secs(5))]);
    let mut config = config();
    config.timeout_ms = 300;
    let sender = WebhookSender::new(&config).unwrap();

    let error = sender.send(&delivery(receiver.url("/"))).await.unwrap_err();

    assert!(error.is_transient(), "{error:?}");
    assert!(error.reason().contains("timed out"), "{error:?}");
}

#[tokio::test]
async fn refused_connection_is_transient() {
    let error = sender()
        .send(&delivery(format!("http://127.0.0.1:{}/", free_port())))
        .await
        .unwrap_err();

    assert!(error.is_transient(), "{error:?}");
    assert!(error.reason().contains("connect"), "{error:?}");
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let receiver = receiver(vec![]);
    clarion_dispatch::install_crypto_provider();
    let strict = WebhookSender::new(&WebhookConfig::new(SecretString::from(secret()))).unwrap();

    let by_ip = strict.send(&delivery(receiver.url("/"))).await;
    let by_name = strict
        .send(&delivery(format!("http://localhost:{}/", receiver.port)))
        .await;
    let mapped = strict
        .send(&delivery(format!(
            "http://[::ffff:127.0.0.1]:{}/",
            receiver.port
        )))
        .await;

    for disguised in [
        format!("http://2130706433:{}/", receiver.port),
        format!("http://0x7f.1:{}/", receiver.port),
        format!("http://0.0.0.0:{}/", receiver.port),
    ] {
        assert_permanent(&strict.send(&delivery(disguised)).await, "loopback");
    }
    assert_permanent(&by_ip, "127.0.0.1 is a loopback address");
    assert_permanent(&by_name, "localhost resolves to");
    assert_permanent(&mapped, "loopback");
    assert!(receiver.requests().is_empty());
    assert!(strict.check_target(&receiver.url("/")).await.is_err());
    assert!(sender().check_target(&receiver.url("/")).await.is_ok());
}

#[tokio::test]
async fn private_link_local_and_non_http_targets_are_refused() {
    let sender = sender();
    let cases = [
        ("http://10.0.0.7/hook", "private"),
        ("https://192.168.1.20/hook", "private"),
        ("http://[fd00::1]/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("ftp://hooks.example.com/upload", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("not a url", "invalid webhook URL"),
    ];
    for (url, needle) in cases {
        let outcome = sender.send(&delivery(url.to_owned())).await;
        assert_permanent(&outcome, needle);
        let checked = sender.check_target(url).await.unwrap_err();
        assert!(
            matches!(checked, DispatchError::Permanent { .. }),
            "{url}: {checked:?}"
        );
    }
}

#[tokio::test]
async fn extra_headers_cannot_replace_the_signature() {
    let receiver = receiver(vec![]);
    let mut message = delivery(receiver.url("/"));
    message.headers = vec![("Webhook-Signature".to_owned(), "v1,forged".to_owned())];

    let outcome = sender().send(&message).await;

    assert_permanent(&outcome, "Webhook-Signature");
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn send_many_returns_outcomes_in_order() {
    let receiver = receiver(vec![Reply::status(410)]);
    let sender = sender();
    let mut batch: Vec<WebhookMessage> = (0..30).map(|_| delivery(receiver.url("/"))).collect();
    batch[3].url = "gopher://example.com/".to_owned();

    let outcomes = sender.send_many(&batch, 8).await;

    assert_eq!(outcomes.len(), 30);
    assert_permanent(&outcomes[3], "http or https");
    let failed = outcomes.iter().filter(|outcome| outcome.is_err()).count();
    // One request got the scripted 410, the gopher URL never left.
    assert_eq!(failed, 2);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 29);
    let mut ids: Vec<&str> = requests
        .iter()
        .map(|request| request.headers["webhook-id"].as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 29);
}
