//! Email providers' bounce and complaint webhooks, sent as each provider documents them and
//! signed here with keys this test makes: SES through SNS (RSA over SHA-1 and SHA-256 with a
//! certificate served by a local HTTP server standing in for sns.<region>.amazonaws.com),
//! SendGrid (ECDSA P-256), Postmark (basic auth and a token header), Mailgun (HMAC-SHA256).
//! What counts is what the API then says about the contact, its events and the suppression
//! list, and that a request that does not verify records nothing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clarion_model::Timestamp;
use clarion_testkit::{Backend, on_both_backends};
use clarion_testpeers::{Reply, WebhookReceiver};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::app::{TestApp, read};
use crate::campaigns::contacts;

async fn people(app: &TestApp) {
    contacts(
        app,
        json!([
            {"external_id": "hard", "email": "hard@customer.example"},
            {"external_id": "soft", "email": "soft@customer.example"},
            {"external_id": "spam", "email": "spam@customer.example"},
            {"external_id": "calm", "email": "calm@customer.example"},
        ]),
    )
    .await;
}

async fn status_of(app: &TestApp, id: &str) -> String {
    let (status, contact) = app.get(&format!("/api/v1/contacts/{id}")).await;
    assert_eq!(status, 200, "{contact}");
    contact["subscriptions"]["email"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn events(app: &TestApp, id: &str) -> Vec<Json> {
    let (status, page) = app.get(&format!("/api/v1/contacts/{id}/events")).await;
    assert_eq!(status, 200, "{page}");
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "email_bounce" || e["kind"] == "email_complaint")
        .cloned()
        .collect()
}

async fn listed(app: &TestApp, address: &str) -> Option<Json> {
    let (status, entry) = app
        .get(&format!("/api/v1/suppressions/email/{address}"))
        .await;
    (status == 200).then_some(entry)
}

async fn post(app: &TestApp, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Json) {
    let mut request = app
        .client
        .request(Method::POST, app.url(path))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let (status, answer) = read(request.send().await.unwrap()).await;
    // Accepted events wait in Redis until a worker's writer takes them; write them now.
    if answer.get("queued").is_some() {
        app.write_provider_reports().await;
    }
    (status, answer)
}

/// Nothing of the refused requests reached the contacts, nor waits to.
async fn untouched(app: &TestApp) {
    let written = app.write_provider_reports().await;
    assert_eq!(written.recorded + written.unknown, 0, "{written:?}");
    for id in ["hard", "soft", "spam", "calm"] {
        assert_eq!(status_of(app, id).await, "subscribed", "{id}");
        assert!(events(app, id).await.is_empty(), "{id}");
    }
    let (_, page) = app.get("/api/v1/suppressions").await;
    assert_eq!(page["suppressions"], json!([]), "{page}");
}

fn now_secs() -> i64 {
    Timestamp::now().millis() / 1000
}

// ---------------------------------------------------------------------------------------
// Mailgun

pub(crate) const MAILGUN_KEY: &str = "key-test-mailgun-signing-0123456789";

pub(crate) fn mailgun_body(key: &str, token: &str, event: Json) -> Vec<u8> {
    let timestamp = now_secs().to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    serde_json::to_vec(&json!({
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event,
    }))
    .unwrap()
}

pub(crate) fn mailgun_failed(id: &str, recipient: &str, severity: &str, code: u16) -> Json {
    json!({
        "event": "failed",
        "id": id,
        "timestamp": 1_764_700_000.5,
        "severity": severity,
        "reason": "bounce",
        "recipient": recipient,
        "log-level": "error",
        "delivery-status": {
            "code": code,
            "message": format!("{code} 5.1.1 The email account that you tried to reach does not exist"),
            "description": "",
            "attempt-no": 1,
        },
        "message": {"headers": {"message-id": "20261203.1@shop.example"}},
    })
}

async fn mailgun_webhooks_are_verified_applied_once_and_replays_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.providers.mailgun.signing_key = MAILGUN_KEY.to_owned().into();
    })
    .await;
    people(&app).await;

    // Wrong key, stale timestamp, tampered body: 401, nothing recorded.
    let forged = mailgun_body(
        "another-key",
        "token-0001",
        mailgun_failed("ev-1", "hard@customer.example", "permanent", 550),
    );
    let (status, body) = post(&app, "/webhooks/mailgun", &[], &forged).await;
    assert_eq!(status, 401, "{body}");
    // Mailgun signs the timestamp and token (not the body): a token other than the signed one
    // does not verify.
    let mut tampered: Json = serde_json::from_slice(&mailgun_body(
        MAILGUN_KEY,
        "token-0002",
        mailgun_failed("ev-1", "hard@customer.example", "permanent", 550),
    ))
    .unwrap();
    tampered["signature"]["token"] = json!("token-0002-replaced");
    let (status, body) = post(
        &app,
        "/webhooks/mailgun",
        &[],
        &serde_json::to_vec(&tampered).unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let mut stale: Json = serde_json::from_slice(&mailgun_body(
        MAILGUN_KEY,
        "token-0003",
        mailgun_failed("ev-1", "hard@customer.example", "permanent", 550),
    ))
    .unwrap();
    let old = (now_secs() - 3600).to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(MAILGUN_KEY.as_bytes()).unwrap();
    mac.update(old.as_bytes());
    mac.update(b"token-0003");
    stale["signature"]["timestamp"] = json!(old);
    stale["signature"]["signature"] = json!(hex::encode(mac.finalize().into_bytes()));
    let (status, body) = post(
        &app,
        "/webhooks/mailgun",
        &[],
        &serde_json::to_vec(&stale).unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    untouched(&app).await;

    // A permanent failure: bounced, listed, one event.
    let hard = mailgun_body(
        MAILGUN_KEY,
        "token-1000",
        mailgun_failed("ev-hard", "hard@customer.example", "permanent", 550),
    );
    let (status, body) = post(&app, "/webhooks/mailgun", &[], &hard).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["queued"], 1, "{body}");
    assert_eq!(status_of(&app, "hard").await, "bounced");
    let recorded = events(&app, "hard").await;
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    assert_eq!(recorded[0]["kind"], "email_bounce");
    assert_eq!(recorded[0]["properties"]["type"], "hard");
    assert_eq!(recorded[0]["properties"]["code"], 550);
    assert_eq!(recorded[0]["properties"]["source"], "mailgun");
    assert_eq!(
        listed(&app, "hard@customer.example").await.unwrap()["source"],
        "hard_bounce"
    );

    // The same request again is a replay (its token was used); the same event under a new
    // token is stored once.
    let (status, body) = post(&app, "/webhooks/mailgun", &[], &hard).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["details"]["errors"][0]["field"], "signature.token",
        "{body}"
    );
    let again = mailgun_body(
        MAILGUN_KEY,
        "token-1001",
        mailgun_failed("ev-hard", "hard@customer.example", "permanent", 550),
    );
    let (status, body) = post(&app, "/webhooks/mailgun", &[], &again).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["details"]["errors"][0]["field"], "event-data.id",
        "{body}"
    );
    assert_eq!(events(&app, "hard").await.len(), 1);

    // A temporary failure is a soft bounce: recorded, the contact stays subscribed.
    let soft = mailgun_body(
        MAILGUN_KEY,
        "token-2000",
        mailgun_failed("ev-soft", "soft@customer.example", "temporary", 452),
    );
    let (status, body) = post(&app, "/webhooks/mailgun", &[], &soft).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_of(&app, "soft").await, "subscribed");
    assert_eq!(events(&app, "soft").await[0]["properties"]["type"], "soft");

    // A complaint.
    let complaint = mailgun_body(
        MAILGUN_KEY,
        "token-3000",
        json!({"event": "complained", "id": "ev-spam", "timestamp": 1_764_700_001.0,
               "recipient": "spam@customer.example", "message": {"headers": {}}}),
    );
    let (status, body) = post(&app, "/webhooks/mailgun", &[], &complaint).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_of(&app, "spam").await, "complained");
    assert_eq!(events(&app, "spam").await[0]["kind"], "email_complaint");
    assert_eq!(
        listed(&app, "spam@customer.example").await.unwrap()["source"],
        "complaint"
    );
    assert_eq!(status_of(&app, "calm").await, "subscribed");
}

/// How the server writes what providers report.
#[derive(Clone, Copy, PartialEq)]
enum Writing {
    /// Queued in Redis and written by a worker (here the test) in batches: the default.
    Queued,
    /// Written before the answer, together with the other requests waiting: what happens
    /// while Redis does not answer.
    BeforeAnswering,
}

/// Many Mailgun requests at once, queued; each gets its own answer: its events queued, a
/// replayed token or an event id seen before refused. Once written, every contact has the
/// one event and status its requests call for.
async fn concurrent_mailgun_requests_are_each_answered_for_themselves(backend: Backend) {
    concurrent_mailgun_requests(backend, Writing::Queued).await;
}

/// The same while Redis is down: the requests are written together in batches before they
/// are answered, and each answer says what its own request came to.
async fn with_redis_down_concurrent_mailgun_requests_are_written_before_their_answers(
    backend: Backend,
) {
    concurrent_mailgun_requests(backend, Writing::BeforeAnswering).await;
}

/// The expected outcome is worked out here from the requests.
async fn concurrent_mailgun_requests(backend: Backend, writing: Writing) {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.providers.mailgun.signing_key = MAILGUN_KEY.to_owned().into();
        if writing == Writing::BeforeAnswering {
            settings.redis.url = "redis://127.0.0.1:1".to_owned().into();
        }
    })
    .await;
    let n = 60;
    let people: Vec<Json> = (0..n)
        .map(|i| json!({"external_id": format!("c{i}"), "email": format!("c{i}@customer.example")}))
        .collect();
    contacts(&app, json!(people)).await;
    let event = |i: usize, id: &str| match i % 3 {
        0 => mailgun_failed(id, &format!("c{i}@customer.example"), "permanent", 550),
        1 => json!({"event": "complained", "id": id, "timestamp": 1_764_700_001.0,
                    "recipient": format!("c{i}@customer.example")}),
        _ => mailgun_failed(id, &format!("c{i}@customer.example"), "temporary", 452),
    };
    let mut bodies: Vec<(&str, Vec<u8>)> = (0..n)
        .map(|i| {
            let body = mailgun_body(
                MAILGUN_KEY,
                &format!("tok-{i}"),
                event(i, &format!("ev-{i}")),
            );
            ("first", body)
        })
        .collect();
    // Five reuse a token (another event), five repeat an event id (under a new token): of
    // each pair, whichever comes second is the replay.
    for i in 0..5 {
        bodies.push((
            "token",
            mailgun_body(MAILGUN_KEY, &format!("tok-{i}"), event(i, "ev-other")),
        ));
        bodies.push((
            "event",
            mailgun_body(
                MAILGUN_KEY,
                &format!("tok-again-{i}"),
                event(10 + i, &format!("ev-{}", 10 + i)),
            ),
        ));
    }
    bodies.push((
        "unknown",
        mailgun_body(
            MAILGUN_KEY,
            "tok-unknown",
            mailgun_failed("ev-unknown", "nobody@customer.example", "permanent", 550),
        ),
    ));
    // A request that finds its twin still being queued is answered 503; like a provider,
    // each task sends it again until it gets a verdict.
    let mut tasks = Vec::new();
    for (kind, body) in bodies {
        let (client, url) = (app.client.clone(), app.url("/webhooks/mailgun"));
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let (status, answer) = read(response).await;
                if status != 503 {
                    return (kind, (status, answer));
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            panic!("{kind}: still 503 after 200 tries");
        }));
    }
    let mut answers: Vec<(&str, u16, Json)> = Vec::new();
    for task in tasks {
        let (kind, (status, body)) = task.await.unwrap();
        answers.push((kind, status, body));
    }
    let ok: Vec<&Json> = answers
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .map(|(_, _, body)| body)
        .collect();
    let refused: Vec<(&str, String)> = answers
        .iter()
        .filter(|(_, status, _)| *status != 200)
        .map(|(kind, status, body)| {
            assert_eq!(*status, 409, "{body}");
            (
                *kind,
                body["details"]["errors"][0]["field"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(refused.len(), 10, "{refused:?}");
    assert_eq!(
        refused
            .iter()
            .filter(|(_, field)| field == "signature.token")
            .count(),
        5,
        "{refused:?}"
    );
    assert_eq!(
        refused
            .iter()
            .filter(|(_, field)| field == "event-data.id")
            .count(),
        5,
        "{refused:?}"
    );
    // Of each pair one event is stored: one per contact (c0..c4 get "ev-other" instead of
    // their own when the token's second use came first), and the unknown address's.
    let sum = |field: &str| -> u64 { ok.iter().map(|b| b[field].as_u64().unwrap()).sum() };
    let unknown = answers
        .iter()
        .find(|(kind, _, _)| *kind == "unknown")
        .unwrap();
    assert_eq!(unknown.1, 200);
    let marked = (0..n).filter(|i| i % 3 != 2).count() as u64;
    match writing {
        Writing::Queued => {
            assert_eq!(sum("queued"), n as u64 + 1, "{answers:#?}");
            let written = app.write_provider_reports().await;
            assert_eq!(
                (written.recorded, written.unknown, written.marked),
                (n as u64, 1, marked),
                "{written:?}"
            );
        }
        Writing::BeforeAnswering => {
            assert_eq!(sum("recorded"), n as u64, "{answers:#?}");
            assert_eq!(unknown.2["unknown"].as_u64(), Some(1));
            assert_eq!(sum("marked"), marked);
        }
    }

    for i in 0..n {
        let id = format!("c{i}");
        let expected = ["bounced", "complained", "subscribed"][i % 3];
        assert_eq!(status_of(&app, &id).await, expected, "{id}");
        let source = listed(&app, &format!("c{i}@customer.example"))
            .await
            .map(|entry| entry["source"].as_str().unwrap().to_owned());
        let expected_source = ["hard_bounce", "complaint"]
            .get(i % 3)
            .map(|s| (*s).to_owned());
        assert_eq!(source, expected_source, "{id}");
        assert_eq!(events(&app, &id).await.len(), 1, "{id}");
    }
}

// ---------------------------------------------------------------------------------------
// SendGrid

/// A P-256 key made by the test from a random seed.
fn sendgrid_key() -> p256::ecdsa::SigningKey {
    loop {
        let seed: [u8; 32] = rand_bytes();
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&seed) {
            return key;
        }
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    out[..16].copy_from_slice(a.as_bytes());
    out[16..].copy_from_slice(b.as_bytes());
    out
}

fn sendgrid_headers(
    key: &p256::ecdsa::SigningKey,
    body: &[u8],
    timestamp: i64,
) -> Vec<(&'static str, String)> {
    use p256::ecdsa::signature::Signer as _;
    let timestamp = timestamp.to_string();
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let signature: p256::ecdsa::Signature = key.sign(&signed);
    vec![
        (
            "X-Twilio-Email-Event-Webhook-Signature",
            BASE64.encode(signature.to_der().as_bytes()),
        ),
        ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp),
    ]
}

async fn sendgrid_event_webhooks_are_verified_and_applied_once(backend: Backend) {
    use p256::pkcs8::EncodePublicKey as _;
    let key = sendgrid_key();
    let public = key.verifying_key().to_public_key_der().unwrap();
    let public = BASE64.encode(public.as_bytes());
    let app = TestApp::spawn_with(backend, |settings| {
        settings.providers.sendgrid.public_key = public;
    })
    .await;
    people(&app).await;

    // The format of SendGrid's Event Webhook: an array, mixed event types.
    let body = serde_json::to_vec(&json!([
        {"email": "hard@customer.example", "timestamp": 1_764_700_000, "smtp-id": "<1@shop.example>",
         "event": "bounce", "type": "bounce", "category": ["newsletter"], "sg_event_id": "sg-hard-1",
         "sg_message_id": "m1.filter0001", "reason": "550 5.1.1 The email account does not exist",
         "status": "5.1.1", "bounce_classification": "Invalid Address"},
        {"email": "soft@customer.example", "timestamp": 1_764_700_001, "event": "bounce",
         "type": "blocked", "sg_event_id": "sg-soft-1", "reason": "452 4.2.2 Mailbox full",
         "status": "4.2.2"},
        {"email": "spam@customer.example", "timestamp": 1_764_700_002, "event": "spamreport",
         "sg_event_id": "sg-spam-1", "sg_message_id": "m3.filter0001"},
        {"email": "calm@customer.example", "timestamp": 1_764_700_003, "event": "delivered",
         "sg_event_id": "sg-ok-1", "response": "250 OK"},
        {"email": "calm@customer.example", "timestamp": 1_764_700_004, "event": "open",
         "sg_event_id": "sg-open-1", "useragent": "Mozilla/5.0"},
    ]))
    .unwrap();

    // Signed by another key, signed over another body, or too old: 401, nothing recorded.
    let (status, reply) = post(
        &app,
        "/webhooks/sendgrid",
        &sendgrid_headers(&sendgrid_key(), &body, now_secs()),
        &body,
    )
    .await;
    assert_eq!(status, 401, "{reply}");
    let mut other = body.clone();
    other.push(b' ');
    let (status, reply) = post(
        &app,
        "/webhooks/sendgrid",
        &sendgrid_headers(&key, &other, now_secs()),
        &body,
    )
    .await;
    assert_eq!(status, 401, "{reply}");
    let (status, reply) = post(
        &app,
        "/webhooks/sendgrid",
        &sendgrid_headers(&key, &body, now_secs() - 3600),
        &body,
    )
    .await;
    assert_eq!(status, 401, "{reply}");
    let (status, reply) = post(&app, "/webhooks/sendgrid", &[], &body).await;
    assert_eq!(status, 401, "{reply}");
    untouched(&app).await;

    let headers = sendgrid_headers(&key, &body, now_secs());
    let (status, reply) = post(&app, "/webhooks/sendgrid", &headers, &body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["events"], 3, "{reply}");
    assert_eq!(reply["ignored"], 2, "{reply}");
    assert_eq!(reply["queued"], 3, "{reply}");
    assert_eq!(status_of(&app, "hard").await, "bounced");
    assert_eq!(status_of(&app, "soft").await, "subscribed");
    assert_eq!(status_of(&app, "spam").await, "complained");
    assert_eq!(status_of(&app, "calm").await, "subscribed");
    let hard = events(&app, "hard").await;
    assert_eq!(hard.len(), 1);
    assert_eq!(hard[0]["properties"]["code"], 550);
    assert_eq!(events(&app, "soft").await[0]["properties"]["type"], "soft");
    assert_eq!(
        listed(&app, "hard@customer.example").await.unwrap()["source"],
        "hard_bounce"
    );
    assert!(listed(&app, "soft@customer.example").await.is_none());

    // SendGrid retries a batch it thinks failed: stored once.
    let (status, reply) = post(
        &app,
        "/webhooks/sendgrid",
        &sendgrid_headers(&key, &body, now_secs()),
        &body,
    )
    .await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(
        reply["details"]["errors"][0]["field"], "sg_event_id",
        "{reply}"
    );
    assert_eq!(events(&app, "hard").await.len(), 1);
    assert_eq!(events(&app, "spam").await.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Postmark

async fn postmark_webhooks_need_their_credentials_and_are_applied_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.providers.postmark.username = "postmark".into();
        settings.providers.postmark.password = "hook-password-1".to_owned().into();
        settings.providers.postmark.token = "hook-token-1".to_owned().into();
    })
    .await;
    people(&app).await;
    // Postmark's documented bounce webhook.
    let bounce = serde_json::to_vec(&json!({
        "RecordType": "Bounce", "MessageStream": "outbound", "ID": 4_323_372_036_854_775_807_i64,
        "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "Tag": "Test",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Metadata": {"a_key": "a_value"},
        "ServerID": 23, "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "hard@customer.example", "From": "news@shop.example",
        "BouncedAt": "2026-12-03T10:33:54.9070259Z", "DumpAvailable": true, "Inactive": true,
        "CanActivate": true, "Subject": "Test subject", "Content": "Return-Path: <>"
    }))
    .unwrap();
    let auth = |user: &str, password: &str| {
        format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
    };
    let good = [
        ("Authorization", auth("postmark", "hook-password-1")),
        ("X-Webhook-Token", "hook-token-1".to_owned()),
    ];
    for bad in [
        vec![("X-Webhook-Token", "hook-token-1".to_owned())],
        vec![
            ("Authorization", auth("postmark", "wrong")),
            ("X-Webhook-Token", "hook-token-1".to_owned()),
        ],
        vec![
            ("Authorization", auth("postmark", "hook-password-1")),
            ("X-Webhook-Token", "hook-token-2".to_owned()),
        ],
    ] {
        let (status, reply) = post(&app, "/webhooks/postmark", &bad, &bounce).await;
        assert_eq!(status, 401, "{reply}");
    }
    untouched(&app).await;

    let (status, reply) = post(&app, "/webhooks/postmark", &good, &bounce).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(status_of(&app, "hard").await, "bounced");
    let hard = events(&app, "hard").await;
    assert_eq!(hard.len(), 1);
    assert_eq!(hard[0]["properties"]["code"], 550);
    assert_eq!(hard[0]["properties"]["source"], "postmark");
    let (status, reply) = post(&app, "/webhooks/postmark", &good, &bounce).await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["details"]["errors"][0]["field"], "ID", "{reply}");
    assert_eq!(events(&app, "hard").await.len(), 1);

    let complaint = serde_json::to_vec(&json!({
        "RecordType": "SpamComplaint", "MessageStream": "outbound", "ID": 42, "Type": "SpamComplaint",
        "TypeCode": 512, "Name": "Spam complaint", "Tag": "", "MessageID": "00000000-0000-0000-0000-000000000000",
        "ServerID": 1234, "Description": "The subscriber explicitly marked this message as spam.",
        "Details": "Test spam complaint details", "Email": "spam@customer.example",
        "From": "news@shop.example", "BouncedAt": "2026-12-03T10:35:00Z", "Subject": "Test subject"
    }))
    .unwrap();
    let (status, reply) = post(&app, "/webhooks/postmark", &good, &complaint).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(status_of(&app, "spam").await, "complained");
    assert_eq!(
        listed(&app, "spam@customer.example").await.unwrap()["source"],
        "complaint"
    );

    // Malformed after verifying: 422 naming the field.
    let broken = serde_json::to_vec(
        &json!({"RecordType": "Bounce", "ID": 7, "Type": "HardBounce", "Email": "nobody"}),
    )
    .unwrap();
    let (status, reply) = post(&app, "/webhooks/postmark", &good, &broken).await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["details"]["errors"][0]["field"], "Email", "{reply}");
}

// ---------------------------------------------------------------------------------------
// Amazon SES through SNS

struct Sns {
    key: rsa::RsaPrivateKey,
    /// Serves the signing certificate (and records the subscription confirmation visit).
    peer: WebhookReceiver,
}

impl Sns {
    fn start() -> Sns {
        use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let pair =
            rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        let certificate =
            rcgen::CertificateParams::new(vec!["sns.us-east-1.amazonaws.com".to_owned()])
                .unwrap()
                .self_signed(&pair)
                .unwrap();
        let peer = WebhookReceiver::start(vec![]);
        peer.answer_otherwise(Reply::status(200).body(certificate.pem()));
        Sns { key, peer }
    }

    fn origin(&self) -> String {
        self.peer.url("")
    }

    /// An SNS message of `kind` with its fields signed as SNS signs them, version 1 (SHA-1)
    /// or 2 (SHA-256).
    fn message(&self, kind: &str, message: &str, version: u8, cert_url: &str) -> Json {
        use rsa::signature::{SignatureEncoding as _, Signer as _};
        let id = uuid::Uuid::new_v4().to_string();
        let topic = "arn:aws:sns:us-east-1:123456789012:ses-feedback";
        let timestamp = "2026-12-03T10:00:00.000Z";
        let subscribe = self.peer.url("/confirm-subscription");
        let mut text = format!("Message\n{message}\nMessageId\n{id}\n");
        if kind == "Notification" {
            text.push_str(&format!(
                "Timestamp\n{timestamp}\nTopicArn\n{topic}\nType\n{kind}\n"
            ));
        } else {
            text.push_str(&format!(
                "SubscribeURL\n{subscribe}\nTimestamp\n{timestamp}\nToken\ntoken-123\nTopicArn\n{topic}\nType\n{kind}\n"
            ));
        }
        let signature = match version {
            1 => rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(self.key.clone())
                .sign(text.as_bytes())
                .to_vec(),
            _ => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(self.key.clone())
                .sign(text.as_bytes())
                .to_vec(),
        };
        let mut body = json!({
            "Type": kind, "MessageId": id, "TopicArn": topic, "Message": message,
            "Timestamp": timestamp, "SignatureVersion": version.to_string(),
            "Signature": BASE64.encode(signature), "SigningCertURL": cert_url,
            "UnsubscribeURL": self.peer.url("/unsubscribe"),
        });
        if kind != "Notification" {
            body["Token"] = json!("token-123");
            body["SubscribeURL"] = json!(subscribe);
        }
        body
    }
}

fn ses_bounce(feedback: &str, kind: &str, address: &str, diagnostic: &str) -> String {
    json!({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": kind, "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1",
                                   "diagnosticCode": diagnostic}],
            "timestamp": "2026-12-03T09:59:59.000Z", "feedbackId": feedback,
            "remoteMtaIp": "127.0.2.0", "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com"
        },
        "mail": {"timestamp": "2026-12-03T09:59:58.000Z", "source": "news@shop.example",
                 "messageId": "0000014a-deb3-4fd4-8c8a-e0bd6e10c0c0", "destination": [address]}
    })
    .to_string()
}

async fn ses_notifications_through_sns_are_verified_confirmed_and_applied_once(backend: Backend) {
    let sns = Sns::start();
    let origin = sns.origin();
    let app = TestApp::spawn_with(backend, |settings| {
        settings.providers.ses.enabled = true;
        settings.providers.ses.test_cert_origin = origin;
    })
    .await;
    people(&app).await;
    let cert = sns.peer.url("/SimpleNotificationService-test.pem");
    let send = |body: Json| {
        let app = &app;
        async move {
            let bytes = serde_json::to_vec(&body).unwrap();
            let kind = body["Type"].as_str().unwrap().to_owned();
            post(
                app,
                "/webhooks/ses",
                &[("x-amz-sns-message-type", kind)],
                &bytes,
            )
            .await
        }
    };

    // The subscription is confirmed by visiting SubscribeURL.
    let (status, reply) = send(sns.message(
        "SubscriptionConfirmation",
        "You have chosen to subscribe",
        1,
        &cert,
    ))
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["subscription_confirmed"], true, "{reply}");
    assert!(
        sns.peer
            .requests()
            .iter()
            .any(|r| r.path == "/confirm-subscription"),
        "SubscribeURL was not visited"
    );

    // Tampered, signed by another key, or with a certificate off the allowed host: 401.
    let hard = ses_bounce(
        "fb-hard-1",
        "Permanent",
        "hard@customer.example",
        "smtp; 550 5.1.1 user unknown",
    );
    let mut tampered = sns.message("Notification", &hard, 1, &cert);
    tampered["Message"] = json!(ses_bounce(
        "fb-hard-1",
        "Permanent",
        "calm@customer.example",
        "smtp; 550"
    ));
    let (status, reply) = send(tampered).await;
    assert_eq!(status, 401, "{reply}");
    let stranger = Sns::start();
    let (status, reply) = send(stranger.message("Notification", &hard, 2, &cert)).await;
    assert_eq!(status, 401, "{reply}");
    let (status, reply) =
        send(sns.message("Notification", &hard, 1, "https://evil.example/cert.pem")).await;
    assert_eq!(status, 401, "{reply}");
    untouched(&app).await;

    // A permanent bounce (SHA-1 signature) and a complaint (SHA-256).
    let (status, reply) = send(sns.message("Notification", &hard, 1, &cert)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["queued"], 1, "{reply}");
    assert_eq!(status_of(&app, "hard").await, "bounced");
    let recorded = events(&app, "hard").await;
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    assert_eq!(recorded[0]["properties"]["code"], 550);
    assert_eq!(recorded[0]["properties"]["source"], "ses");
    let complaint = json!({
        "notificationType": "Complaint",
        "complaint": {"userAgent": "ExampleCorp Feedback Loop (V0.01)",
                      "complainedRecipients": [{"emailAddress": "spam@customer.example"}],
                      "complaintFeedbackType": "abuse", "arrivalDate": "2026-12-03T10:00:00.000Z",
                      "timestamp": "2026-12-03T10:00:01.000Z", "feedbackId": "fb-spam-1"},
        "mail": {"timestamp": "2026-12-03T09:00:00.000Z", "messageId": "m-2",
                 "source": "news@shop.example", "destination": ["spam@customer.example"]}
    })
    .to_string();
    let (status, reply) = send(sns.message("Notification", &complaint, 2, &cert)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(status_of(&app, "spam").await, "complained");
    assert_eq!(
        listed(&app, "spam@customer.example").await.unwrap()["source"],
        "complaint"
    );
    let transient = ses_bounce(
        "fb-soft-1",
        "Transient",
        "soft@customer.example",
        "smtp; 452 4.2.2 mailbox full",
    );
    let (status, reply) = send(sns.message("Notification", &transient, 2, &cert)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(status_of(&app, "soft").await, "subscribed");
    assert_eq!(events(&app, "soft").await[0]["properties"]["type"], "soft");

    // SNS delivers at least once: the same notification again is stored once.
    let (status, reply) = send(sns.message("Notification", &hard, 2, &cert)).await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(events(&app, "hard").await.len(), 1);
    assert_eq!(status_of(&app, "calm").await, "subscribed");
}

async fn provider_endpoints_are_off_until_configured(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/webhooks/ses",
        "/webhooks/sendgrid",
        "/webhooks/postmark",
        "/webhooks/mailgun",
    ] {
        let (status, reply) = post(&app, path, &[], b"{}").await;
        assert_eq!(status, 404, "{path}: {reply}");
    }
}

/// A process killed between claiming a request's events and queueing it leaves their claims
/// pending for a minute. The provider's retries meanwhile are answered 503 with nothing
/// claimed (so not refused as replays and lost), and the first retry after the claim lapses
/// is taken.
async fn a_retry_that_finds_a_claim_left_pending_is_answered_503_until_it_lapses(backend: Backend) {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.providers.mailgun.signing_key = MAILGUN_KEY.to_owned().into();
    })
    .await;
    people(&app).await;
    let claims = format!("{}:provider-claims:mailgun", app.settings.redis.key_prefix);
    let mut redis = redis::Client::open(clarion_testkit::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let leave_pending = async |redis: &mut redis::aio::MultiplexedConnection, key: &str| {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("pending")
            .arg("PX")
            .arg(60_000)
            .query_async(redis)
            .await
            .unwrap();
    };

    // The event's claim was left by the killed process.
    let event_key = format!("{claims}:event:ev-cut:hard@customer.example");
    leave_pending(&mut redis, &event_key).await;
    let body = mailgun_body(
        MAILGUN_KEY,
        "token-cut",
        mailgun_failed("ev-cut", "hard@customer.example", "permanent", 550),
    );
    for _ in 0..2 {
        // Twice: the first answer freed the token it claimed, so the retry is not a replay.
        let (status, reply) = post(&app, "/webhooks/mailgun", &[], &body).await;
        assert_eq!(status, 503, "{reply}");
        assert_eq!(
            reply["details"]["errors"][0]["field"], "event-data.id",
            "{reply}"
        );
    }
    untouched(&app).await;

    // The claim lapses; the next retry is taken, and the one after that is a replay.
    let _: () = redis::cmd("DEL")
        .arg(&event_key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let (status, reply) = post(&app, "/webhooks/mailgun", &[], &body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["queued"], 1, "{reply}");
    app.write_provider_reports().await;
    assert_eq!(status_of(&app, "hard").await, "bounced");
    assert_eq!(events(&app, "hard").await.len(), 1);
    let (status, reply) = post(&app, "/webhooks/mailgun", &[], &body).await;
    assert_eq!(status, 409, "{reply}");

    // The same for a signed token left pending.
    leave_pending(&mut redis, &format!("{claims}:token:token-soft")).await;
    let soft = mailgun_body(
        MAILGUN_KEY,
        "token-soft",
        mailgun_failed("ev-soft", "soft@customer.example", "permanent", 550),
    );
    let (status, reply) = post(&app, "/webhooks/mailgun", &[], &soft).await;
    assert_eq!(status, 503, "{reply}");
    assert_eq!(
        reply["details"]["errors"][0]["field"], "signature.token",
        "{reply}"
    );
    assert_eq!(status_of(&app, "soft").await, "subscribed");
}

on_both_backends!(
    a_retry_that_finds_a_claim_left_pending_is_answered_503_until_it_lapses,
    concurrent_mailgun_requests_are_each_answered_for_themselves,
    with_redis_down_concurrent_mailgun_requests_are_written_before_their_answers,
    mailgun_webhooks_are_verified_applied_once_and_replays_refused,
    sendgrid_event_webhooks_are_verified_and_applied_once,
    postmark_webhooks_need_their_credentials_and_are_applied_once,
    ses_notifications_through_sns_are_verified_confirmed_and_applied_once,
    provider_endpoints_are_off_until_configured,
);
