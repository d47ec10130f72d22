//! Sending campaigns through the API, checked at the far end: what a real SMTP server
//! (aiosmtpd) received and what a real HTTP receiver got and could verify.
//!
//! The delivery worker and the supervisor are the server's own, driven with `run_once` and
//! `supervise` so that nothing waits on a timer, except for retries, which wait out their
//! (short) backoff in the queue.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::app::{TestApp, read};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Timelike as _;
use clarion_campaign::{Worker, control};
use clarion_dispatch::SmtpConfig;
use clarion_model::Channel;
use clarion_queue::RunStats;
use clarion_server::Settings;
use clarion_testkit::{Backend, on_both_backends};
use clarion_testpeers::{Recorded, Reply, SmtpServer, WebhookReceiver};
use hmac::{Hmac, Mac};
use mail_parser::{MessageParser, MimeHeaders};
use reqwest::{Method, header};
use secrecy::SecretString;
use serde_json::{Value as Json, json};
use sha2::Sha256;

use crate::campaigns::{contacts, create, put, segment};

const TRACKING_KEY: &str = "sending-test-signing-key-0001";
/// The webhook signing key; `webhook.secret` is `whsec_` and its base64.
const WEBHOOK_KEY: &[u8] = b"a 32 byte key for the test suite";
const HOOK_PATH: &str = "/hooks/clarion";

/// A server wired to a real SMTP server and webhook receiver, and a delivery worker built
/// from the server's own state the way `clarion serve` builds it.
pub(crate) struct Sending {
    pub(crate) app: TestApp,
    pub(crate) smtp: SmtpServer,
    pub(crate) receiver: WebhookReceiver,
    pub(crate) worker: Worker,
}

impl Sending {
    pub(crate) async fn start(backend: Backend) -> Sending {
        Self::start_with(backend, |_| {}).await
    }

    pub(crate) async fn start_with(
        backend: Backend,
        change: impl FnOnce(&mut Settings),
    ) -> Sending {
        clarion_dispatch::install_crypto_provider();
        let smtp = SmtpServer::start().await;
        let receiver = WebhookReceiver::start(vec![]);
        let app = TestApp::spawn_with(backend, |settings| {
            settings.email.smtp = Some(SmtpConfig::plain(smtp.host(), smtp.port));
            settings.sending.webhook_url = receiver.url(HOOK_PATH);
            settings.webhook.secret =
                SecretString::from(format!("whsec_{}", BASE64.encode(WEBHOOK_KEY)));
            settings.webhook.allow_loopback = true;
            // Retries come back within a fraction of a second.
            settings.sending.backoff_base_ms = 50;
            settings.sending.backoff_max_ms = 200;
            settings.tracking.signing_keys = vec![SecretString::from(TRACKING_KEY)];
            change(settings);
        })
        .await;
        let worker = app.state.delivery_worker().await.unwrap();
        Sending {
            app,
            smtp,
            receiver,
            worker,
        }
    }

    /// One pass of the worker over `channel`'s queue.
    pub(crate) async fn drain(&self, channel: Channel) -> RunStats {
        self.worker
            .run_once(&self.app.state.queues, channel, "test-consumer")
            .await
            .unwrap()
    }

    /// Drains `channel` until campaign `id` has nothing queued or being sent, waiting out the
    /// backoff of retries between passes.
    pub(crate) async fn settle(&self, id: i64, channel: Channel) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.drain(channel).await;
            let progress = self.progress(id).await;
            if progress["remaining"] == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "deliveries never settled: {progress:#}"
            );
            // A retry waits 50 to 200 ms in the queue's delayed set before a pass takes it.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn supervise(&self) -> control::Supervised {
        let state = &self.app.state;
        control::supervise(&state.db, &state.queues, &state.settings.sending)
            .await
            .unwrap()
    }

    pub(crate) async fn launch(&self, id: i64) -> Json {
        let (status, report) = self
            .app
            .post(&format!("/api/v1/campaigns/{id}/launch"), &json!(null))
            .await;
        assert_eq!(status, 200, "{report}");
        report
    }

    pub(crate) async fn progress(&self, id: i64) -> Json {
        let (status, progress) = self
            .app
            .get(&format!("/api/v1/campaigns/{id}/progress"))
            .await;
        assert_eq!(status, 200, "{progress}");
        progress
    }

    /// A campaign action (`pause`, `resume`, `cancel`, `retry`) with an empty body.
    async fn action(&self, id: i64, action: &str) -> (u16, Json) {
        let response = self
            .app
            .request(Method::POST, &format!("/api/v1/campaigns/{id}/{action}"))
            .send()
            .await
            .unwrap();
        read(response).await
    }

    pub(crate) async fn deliveries(&self, path: &str) -> Vec<Json> {
        let (status, page) = self.app.get(path).await;
        assert_eq!(status, 200, "{page}");
        page["deliveries"].as_array().unwrap().clone()
    }

    /// The one delivery of a contact.
    pub(crate) async fn delivery_of(&self, contact: &str) -> Json {
        let mut found = self
            .deliveries(&format!("/api/v1/contacts/{contact}/deliveries"))
            .await;
        assert_eq!(found.len(), 1, "{found:#?}");
        found.remove(0)
    }

    async fn campaign_status(&self, id: i64) -> String {
        let (status, campaign) = self.app.get(&format!("/api/v1/campaigns/{id}")).await;
        assert_eq!(status, 200, "{campaign}");
        campaign["status"].as_str().unwrap().to_owned()
    }

    /// The requests the receiver got, grouped by `webhook-id`.
    fn webhooks_by_id(&self) -> BTreeMap<String, Vec<Recorded>> {
        let mut by_id: BTreeMap<String, Vec<Recorded>> = BTreeMap::new();
        for request in self.receiver.requests() {
            by_id
                .entry(request.headers["webhook-id"].clone())
                .or_default()
                .push(request);
        }
        by_id
    }
}

pub(crate) fn email(subject: &str, html: &str) -> Json {
    json!({ "subject": subject, "html": html, "from": "Shop <news@shop.example>" })
}

/// A campaign sending `variant` on `channels` to the members of `segment`.
pub(crate) fn campaign(name: &str, channels: &[&str], segment: &str, variant: Json) -> Json {
    json!({
        "name": name,
        "goal": { "event": "purchase", "window_hours": 168 },
        "holdout_percent": 0,
        "channels": channels,
        "targets": [{ "segment": segment, "variants": [variant] }],
    })
}

fn webhook_variant(name: &str) -> Json {
    json!({
        "name": name,
        "webhook": {
            "payload": "{\"contact\": {{ contact.external_id }}, \"name\": {{ contact.first_name|default('') }}}",
            "headers": { "X-Campaign": "{{ campaign.name }}" },
        },
    })
}

/// Contacts `c1`..`cN` with addresses, all in segment `slug`.
pub(crate) async fn audience(app: &TestApp, slug: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (1..=n).map(|i| format!("c{i}")).collect();
    let items: Vec<Json> = ids
        .iter()
        .map(|id| json!({"external_id": id, "email": format!("{id}@customer.example"), "first_name": id.to_uppercase()}))
        .collect();
    contacts(app, json!(items)).await;
    let members: Vec<&str> = ids.iter().map(String::as_str).collect();
    segment(app, slug, &members).await;
    ids
}

/// A webhook campaign to `n` contacts of a fresh segment `slug`; returns its id.
async fn webhook_campaign(app: &TestApp, slug: &str, n: usize) -> i64 {
    audience(app, slug, n).await;
    let created = create(
        app,
        &campaign(
            &format!("Hooks for {slug}"),
            &["webhook"],
            slug,
            webhook_variant("Hook"),
        ),
    )
    .await;
    created["id"].as_i64().unwrap()
}

/// The unfolded value of header `name` as it arrived.
fn raw_header(raw: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let headers = raw.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
    headers
        .split("\r\n")
        .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
        .map(|line| line[prefix.len()..].trim().to_owned())
}

/// The first (web) address of a message's `List-Unsubscribe` header.
fn unsubscribe_url(raw: &str) -> String {
    let header = raw_header(raw, "List-Unsubscribe").unwrap();
    header
        .strip_prefix('<')
        .and_then(|rest| rest.split('>').next())
        .unwrap_or_else(|| panic!("List-Unsubscribe: {header}"))
        .to_owned()
}

/// Whether a request carries a valid Standard Webhooks signature, checked the way a
/// receiver's library does and with nothing of Clarion's signing code: a `v1,` value equal to
/// base64 of HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, with a timestamp of
/// now.
fn verifies(request: &Recorded) -> bool {
    let id = &request.headers["webhook-id"];
    let timestamp = &request.headers["webhook-timestamp"];
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_KEY).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&request.body);
    let expected = BASE64.encode(mac.finalize().into_bytes());
    let sent_at: i64 = timestamp.parse().unwrap();
    let now = clarion_model::Timestamp::now().millis() / 1000;
    (now - sent_at).abs() < 300
        && request.headers["webhook-signature"]
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .any(|s| s == expected)
}

async fn each_recipient_gets_one_email_with_its_first_segments_variant(backend: Backend) {
    let s = Sending::start(backend).await;
    contacts(
        &s.app,
        json!([
            {"external_id": "anna", "email": "anna@customer.example", "first_name": "Anna"},
            {"external_id": "ben", "email": "ben@customer.example", "first_name": "Ben"},
            {"external_id": "cleo", "email": "cleo@customer.example"},
            {"external_id": "dan", "email": "dan@customer.example", "subscriptions": {"email": "unsubscribed"}},
            {"external_id": "eve", "first_name": "Eve"},
            {"external_id": "finn", "email": "finn@customer.example"},
        ]),
    )
    .await;
    // Anna is in both targets; Cleo only in the fallback's audience; Finn in nothing.
    segment(&s.app, "vip", &["anna", "dan"]).await;
    segment(&s.app, "regulars", &["anna", "ben", "eve"]).await;
    segment(&s.app, "everyone", &["anna", "ben", "cleo", "dan", "eve"]).await;
    let body = json!({
        "name": "Spring sale",
        "goal": { "event": "purchase", "window_hours": 168 },
        "holdout_percent": 0,
        "channels": ["email"],
        "targets": [
            { "segment": "vip", "variants": [{ "name": "VIP", "email": {
                "subject": "VIP doors open, {{ contact.first_name|default('friend') }}",
                "html": "<p>Hello {{ contact.first_name|default('friend') }}, the VIP sale starts now.</p><p><a href=\"https://shop.example/vip\">Shop</a></p>",
                "text": "Hello {{ contact.first_name|default('friend') }}, the VIP sale starts now.",
                "from": "Shop <news@shop.example>",
            }}] },
            { "segment": "regulars", "variants": [{ "name": "Regulars",
                "email": email("Spring news for regulars", "<p>Regulars: spring is here.</p>") }] },
        ],
        "audience_segment": "everyone",
        "fallback": { "name": "Everyone else",
            "email": email("Hello from the shop", "<p>Everyone else: new arrivals.</p>") },
    });
    let id = create(&s.app, &body).await["id"].as_i64().unwrap();

    let report = s.launch(id).await;
    assert_eq!(report["audience"], 5, "{report}");
    assert_eq!(report["queued"], 3, "{report}");
    assert_eq!(report["holdout"], 0, "{report}");
    assert_eq!(
        report["suppressed"],
        json!({"no email address": 1, "unsubscribed": 1}),
        "{report}"
    );
    let stats = s.drain(Channel::Email).await;
    assert_eq!(stats.handled, 3, "{stats:?}");

    let received = s.smtp.received();
    let mut by_recipient: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for message in &received {
        assert_eq!(message.mail_from, "news@shop.example");
        for to in &message.rcpt_tos {
            by_recipient
                .entry(to.clone())
                .or_default()
                .push(message.raw.clone());
        }
    }
    let mut recipients: Vec<&str> = by_recipient.keys().map(String::as_str).collect();
    recipients.sort_unstable();
    assert_eq!(
        recipients,
        [
            "anna@customer.example",
            "ben@customer.example",
            "cleo@customer.example"
        ]
    );
    assert_eq!(received.len(), 3, "one message per recipient");

    let expected = [
        ("anna", "VIP doors open, Anna", "the VIP sale starts now"),
        ("ben", "Spring news for regulars", "spring is here"),
        ("cleo", "Hello from the shop", "new arrivals"),
    ];
    for (contact, subject, words) in expected {
        let delivery = s.delivery_of(contact).await;
        assert_eq!(delivery["status"], "sent", "{delivery}");
        assert!(
            delivery["detail"].as_str().unwrap().starts_with("250"),
            "{delivery}"
        );
        let raw = &by_recipient[&format!("{contact}@customer.example")][0];
        let text = String::from_utf8(raw.clone()).unwrap();
        let parsed = MessageParser::default().parse(raw).unwrap();
        assert_eq!(parsed.subject().unwrap(), subject);
        // The Message-ID names the delivery, so bounces and complaints find their way back.
        assert_eq!(
            parsed.message_id().unwrap(),
            format!("{}@shop.example", delivery["id"])
        );
        let url = unsubscribe_url(&text);
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "{url}"
        );
        assert!(url.contains("/t/u/"), "{url}");
        assert_eq!(
            raw_header(&text, "List-Unsubscribe-Post").unwrap(),
            "List-Unsubscribe=One-Click"
        );
        let content_type = parsed.content_type().unwrap();
        assert_eq!(content_type.ctype(), "multipart");
        assert_eq!(content_type.subtype(), Some("alternative"));
        let plain = parsed.text_part(0).unwrap().content_type().unwrap();
        assert_eq!((plain.ctype(), plain.subtype()), ("text", Some("plain")));
        let html = parsed.html_part(0).unwrap().content_type().unwrap();
        assert_eq!((html.ctype(), html.subtype()), ("text", Some("html")));
        assert!(parsed.body_text(0).unwrap().contains(words), "{text}");
        assert!(parsed.body_html(0).unwrap().contains(words), "{text}");
    }

    // Anna's one-click link, as her mailbox provider would post it to this server,
    // unsubscribes her.
    let raw = String::from_utf8(by_recipient["anna@customer.example"][0].clone()).unwrap();
    let url = unsubscribe_url(&raw);
    let path = &url[url.find("/t/u/").unwrap()..];
    let response = s
        .app
        .client
        .post(s.app.url(path))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, anna) = s.app.get("/api/v1/contacts/anna").await;
    assert_eq!(anna["subscriptions"]["email"], "unsubscribed", "{anna}");

    let dan = s.delivery_of("dan").await;
    assert_eq!(
        (dan["status"].as_str(), dan["reason"].as_str()),
        (Some("suppressed"), Some("unsubscribed")),
        "{dan}"
    );
    let eve = s.delivery_of("eve").await;
    assert_eq!(
        (eve["status"].as_str(), eve["reason"].as_str()),
        (Some("suppressed"), Some("no email address")),
        "{eve}"
    );
    assert!(
        s.deliveries("/api/v1/contacts/finn/deliveries")
            .await
            .is_empty()
    );
    let suppressed = s
        .deliveries(&format!(
            "/api/v1/campaigns/{id}/deliveries?status=suppressed"
        ))
        .await;
    let mut who: Vec<&str> = suppressed
        .iter()
        .map(|d| d["contact"].as_str().unwrap())
        .collect();
    who.sort_unstable();
    assert_eq!(who, ["dan", "eve"]);

    let progress = s.progress(id).await;
    assert_eq!(progress["totals"]["sent"], 3, "{progress:#}");
    assert_eq!(progress["totals"]["suppressed"], 2, "{progress:#}");
    assert_eq!(progress["totals"]["queued"], 0, "{progress:#}");
    assert_eq!(progress["totals"]["failed"], 0, "{progress:#}");
    assert_eq!(progress["remaining"], 0, "{progress:#}");
    assert_eq!(progress["channels"]["email"]["sent"], 3, "{progress:#}");
    let per_variant: BTreeMap<&str, (u64, u64)> = progress["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["variant"].as_str().unwrap(),
                (
                    v["counts"]["sent"].as_u64().unwrap(),
                    v["counts"]["suppressed"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        per_variant,
        BTreeMap::from([
            ("VIP", (1, 1)),
            ("Regulars", (1, 1)),
            ("Everyone else", (1, 0))
        ])
    );
    assert_eq!(progress["run"]["audience"], 5);
    assert_eq!(s.campaign_status(id).await, "sending");

    assert_eq!(s.supervise().await.completed, 1);
    assert_eq!(s.campaign_status(id).await, "sent");
    assert_eq!(s.progress(id).await["run"]["status"], "completed");
    // Nothing is sent twice, however often the worker looks again.
    assert_eq!(s.drain(Channel::Email).await.handled, 0);
    assert_eq!(s.smtp.received().len(), 3);
}

async fn webhooks_arrive_signed_and_verifiable_by_the_receiver(backend: Backend) {
    let s = Sending::start(backend).await;
    let id = webhook_campaign(&s.app, "hooked", 2).await;
    let report = s.launch(id).await;
    assert_eq!(report["queued"], 2, "{report}");
    let stats = s.drain(Channel::Webhook).await;
    assert_eq!(stats.handled, 2, "{stats:?}");

    let requests = s.receiver.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let mut bodies = Vec::new();
    for request in &requests {
        assert_eq!(request.path, HOOK_PATH);
        assert!(verifies(request), "{request:#?}");
        assert_eq!(request.headers["x-campaign"], "Hooks for hooked");
        assert_eq!(request.headers["content-type"], "application/json");
        bodies.push(serde_json::from_slice::<Json>(&request.body).unwrap());
    }
    bodies.sort_by_key(|b| b["contact"].as_str().unwrap().to_owned());
    assert_eq!(
        bodies,
        [
            json!({"contact": "c1", "name": "C1"}),
            json!({"contact": "c2", "name": "C2"})
        ]
    );
    // Each delivery has its own webhook-id.
    assert_eq!(s.webhooks_by_id().len(), 2);
    for contact in ["c1", "c2"] {
        let delivery = s.delivery_of(contact).await;
        assert_eq!(delivery["status"], "sent", "{delivery}");
        assert_eq!(delivery["attempts"], 1, "{delivery}");
    }
    // A body changed on the way no longer verifies with the same headers.
    let mut forged = requests[0].clone();
    forged.body = br#"{"contact": "c1", "name": "Mallory"}"#.to_vec();
    assert!(!verifies(&forged), "a forged body must not verify");
}

async fn webhook_errors_are_retried_or_dead_lettered_by_kind(backend: Backend) {
    let s = Sending::start(backend).await;

    // A 500 is worth another try: the delivery comes back and goes through.
    let flaky = webhook_campaign(&s.app, "flaky", 1).await;
    s.receiver.answer_next(vec![
        Reply::status(500).body("database down"),
        Reply::status(200),
    ]);
    s.launch(flaky).await;
    let stats = s.drain(Channel::Webhook).await;
    assert_eq!(stats.retried, 1, "{stats:?}");
    let waiting = s.delivery_of("c1").await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    assert!(
        waiting["reason"].as_str().unwrap().contains("500"),
        "{waiting}"
    );
    s.settle(flaky, Channel::Webhook).await;
    let sent = s.delivery_of("c1").await;
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(sent["attempts"], 2, "{sent}");
    let by_id = s.webhooks_by_id();
    assert_eq!(by_id.len(), 1, "{by_id:#?}");
    let attempts = by_id.values().next().unwrap();
    assert_eq!(
        attempts.len(),
        2,
        "the receiver saw the first try and the retry"
    );
    assert_eq!(attempts[0].body, attempts[1].body);
    for attempt in attempts {
        assert!(verifies(attempt), "{attempt:#?}");
    }

    // A 400 will not pass on a retry: failed at once, with the status in the reason, and
    // dead-lettered.
    s.receiver
        .answer_otherwise(Reply::status(400).body(r#"{"error":"unknown contact"}"#));
    let rejected = webhook_campaign_for(&s.app, "rejected", "r1").await;
    s.launch(rejected).await;
    let stats = s.drain(Channel::Webhook).await;
    assert_eq!(stats.dead_lettered, 1, "{stats:?}");
    let failed = s
        .deliveries(&format!(
            "/api/v1/campaigns/{rejected}/deliveries?status=failed"
        ))
        .await;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(reason.contains("400"), "{reason}");
    assert_eq!(failed[0]["attempts"], 1);
    let requests_for_r1 = s
        .receiver
        .requests()
        .iter()
        .filter(|r| r.body.windows(4).any(|w| w == b"\"r1\""))
        .count();
    assert_eq!(requests_for_r1, 1, "a permanent failure is not retried");

    let (status, letters) = s.app.get("/api/v1/dead-letters/webhook").await;
    assert_eq!(status, 200, "{letters}");
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0]["delivery_id"], failed[0]["id"]);
    assert_eq!(letters[0]["kind"], "permanent");
    assert!(
        letters[0]["error"].as_str().unwrap().contains("400"),
        "{letters:#?}"
    );
}

/// A webhook campaign to one new contact `contact` in a new segment `slug`.
async fn webhook_campaign_for(app: &TestApp, slug: &str, contact: &str) -> i64 {
    webhook_campaign_in_zone(app, slug, contact, None).await
}

async fn emails_wait_out_a_relay_outage_and_arrive_once(backend: Backend) {
    let mut s = Sending::start(backend).await;
    let ids = audience(&s.app, "outage", 3).await;
    let id = create(
        &s.app,
        &campaign(
            "Outage",
            &["email"],
            "outage",
            json!({"name": "Only", "email": email("Still here", "<p>Hello</p>")}),
        ),
    )
    .await["id"]
        .as_i64()
        .unwrap();

    s.smtp.stop().await;
    let down_since = Instant::now();
    s.launch(id).await;
    let stats = s.drain(Channel::Email).await;
    assert_eq!(stats.retried, 3, "{stats:?}");
    for contact in &ids {
        let delivery = s.delivery_of(contact).await;
        assert_eq!(delivery["status"], "queued", "{delivery}");
        assert_eq!(delivery["attempts"], 1, "{delivery}");
        let reason = delivery["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("SMTP relay") && reason.contains(&s.smtp.port.to_string()),
            "a waiting delivery says why: {delivery}"
        );
    }
    assert!(s.smtp.received().is_empty());

    // The relay is down for about ten seconds.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down_since.elapsed())).await;
    s.smtp.start_again().await;
    s.settle(id, Channel::Email).await;

    let mut recipients: Vec<String> = s
        .smtp
        .received()
        .into_iter()
        .flat_map(|m| m.rcpt_tos)
        .collect();
    recipients.sort();
    let expected: Vec<String> = ids
        .iter()
        .map(|c| format!("{c}@customer.example"))
        .collect();
    assert_eq!(recipients, expected, "every message once");
    for contact in &ids {
        let delivery = s.delivery_of(contact).await;
        assert_eq!(delivery["status"], "sent", "{delivery}");
        assert_eq!(delivery["attempts"], 2, "{delivery}");
    }
    s.supervise().await;
    assert_eq!(s.campaign_status(id).await, "sent");
}

async fn a_campaign_failing_too_often_pauses_itself_and_resumes(backend: Backend) {
    let s = Sending::start_with(backend, |settings| {
        settings.sending.batch_size = 2;
        settings.sending.pause_min_attempts = 4;
        settings.sending.pause_error_rate = 0.25;
    })
    .await;
    let id = webhook_campaign(&s.app, "doomed", 8).await;
    // The receiver takes two, then breaks: every further call is refused for good.
    s.receiver
        .answer_next(vec![Reply::status(204), Reply::status(204)]);
    s.receiver
        .answer_otherwise(Reply::status(400).body("schema mismatch"));
    s.launch(id).await;
    s.drain(Channel::Webhook).await;

    // A batch of two went through, the next two failed, and the guard kept the other four
    // from being tried.
    assert_eq!(s.receiver.requests().len(), 4);
    let progress = s.progress(id).await;
    assert_eq!(progress["run"]["status"], "paused", "{progress:#}");
    let reason = progress["run"]["status_reason"].as_str().unwrap();
    assert!(reason.contains("sending.pause_error_rate"), "{reason}");
    assert!(reason.contains("2 of 4"), "{reason}");
    assert!(reason.contains("400"), "the last error is named: {reason}");
    assert_eq!(progress["totals"]["sent"], 2, "{progress:#}");
    assert_eq!(progress["totals"]["failed"], 2, "{progress:#}");
    assert_eq!(progress["totals"]["queued"], 4, "{progress:#}");
    assert_eq!(progress["remaining"], 4, "{progress:#}");
    assert_eq!(
        progress["eta_seconds"],
        Json::Null,
        "a paused campaign has no time left to run: {progress:#}"
    );
    assert_eq!(s.campaign_status(id).await, "paused");
    // Paused, the worker leaves the rest alone.
    s.drain(Channel::Webhook).await;
    assert_eq!(s.receiver.requests().len(), 4);

    // The receiver is fixed; resuming sends what was still queued.
    s.receiver.answer_otherwise(Reply::status(204));
    let (status, run) = s.action(id, "resume").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "running");
    s.settle(id, Channel::Webhook).await;
    let progress = s.progress(id).await;
    assert_eq!(progress["totals"]["sent"], 6, "{progress:#}");
    assert_eq!(progress["totals"]["failed"], 2, "{progress:#}");
    assert_eq!(s.receiver.requests().len(), 8);
}

async fn pause_resume_cancel_and_retry_through_the_api(backend: Backend) {
    let s = Sending::start(backend).await;
    let id = webhook_campaign(&s.app, "steered", 3).await;
    let created = s.app.get(&format!("/api/v1/campaigns/{id}")).await.1;

    // A viewer may look but not launch.
    let response = s
        .app
        .client
        .post(s.app.url(&format!("/api/v1/campaigns/{id}/launch")))
        .bearer_auth(&s.app.viewer_key)
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(s.campaign_status(id).await, "draft");

    s.launch(id).await;
    let (status, body) = s
        .app
        .post(&format!("/api/v1/campaigns/{id}/launch"), &json!(null))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "conflict");
    let edit = json!({
        "name": "Changed after launch",
        "goal": created["goal"],
        "channels": ["webhook"],
        "targets": [{ "segment": "steered", "variants": [webhook_variant("Hook")] }],
    });
    let (status, body) = put(&s.app, &format!("/api/v1/campaigns/{id}"), &edit).await;
    assert_eq!(status, 409, "{body}");

    // Paused: the worker takes nothing.
    let (status, run) = s.action(id, "pause").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "paused");
    assert_eq!(run["status_reason"], "paused by a user");
    s.drain(Channel::Webhook).await;
    assert!(s.receiver.requests().is_empty());
    assert_eq!(s.progress(id).await["totals"]["queued"], 3);
    let (status, body) = s.action(id, "pause").await;
    assert_eq!(status, 409, "{body}");

    // Resumed: the rest goes out.
    let (status, run) = s.action(id, "resume").await;
    assert_eq!(status, 200, "{run}");
    s.drain(Channel::Webhook).await;
    assert_eq!(s.receiver.requests().len(), 3);
    assert_eq!(s.progress(id).await["totals"]["sent"], 3);

    // Cancelled before any worker ran: everything queued is cancelled and never sent.
    let cancelled = webhook_campaign_for(&s.app, "cancelled", "x1").await;
    s.launch(cancelled).await;
    let (status, run) = s.action(cancelled, "cancel").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "cancelled");
    s.drain(Channel::Webhook).await;
    assert_eq!(s.receiver.requests().len(), 3);
    let progress = s.progress(cancelled).await;
    assert_eq!(progress["totals"]["cancelled"], 1, "{progress:#}");
    assert_eq!(progress["remaining"], 0, "{progress:#}");
    assert_eq!(s.campaign_status(cancelled).await, "cancelled");
    let (status, body) = s.action(cancelled, "resume").await;
    assert_eq!(status, 409, "{body}");

    // Failed for good, then retried once the receiver is fixed.
    s.receiver.answer_otherwise(Reply::status(422));
    let retried = webhook_campaign_for(&s.app, "retried", "y1").await;
    s.launch(retried).await;
    s.drain(Channel::Webhook).await;
    s.supervise().await;
    assert_eq!(s.campaign_status(retried).await, "sent");
    assert_eq!(s.delivery_of("y1").await["status"], "failed");
    s.receiver.answer_otherwise(Reply::status(204));
    let (status, body) = s.action(retried, "retry").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["retried"], 1, "{body}");
    assert_eq!(body["run"]["status"], "running", "{body}");
    s.drain(Channel::Webhook).await;
    let delivery = s.delivery_of("y1").await;
    assert_eq!(delivery["status"], "sent", "{delivery}");
    assert_eq!(delivery["attempts"], 1, "fresh attempts: {delivery}");
    let to_y1: Vec<Recorded> = s
        .receiver
        .requests()
        .into_iter()
        .filter(|r| r.body.windows(4).any(|w| w == b"\"y1\""))
        .collect();
    assert_eq!(to_y1.len(), 2, "the failed try and the retry");
    assert_eq!(
        to_y1[0].headers["webhook-id"],
        to_y1[1].headers["webhook-id"]
    );
    s.supervise().await;
    assert_eq!(s.campaign_status(retried).await, "sent");
}

async fn the_webhook_channel_needs_a_receiver_url(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = webhook_campaign(&app, "nowhere", 1).await;
    let (status, body) = app
        .post(&format!("/api/v1/campaigns/{id}/launch"), &json!(null))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("sending.webhook_url"),
        "{body}"
    );
    let (_, campaign) = app.get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(campaign["status"], "draft", "nothing changed");
}

/// A webhook campaign to one contact of a fresh segment `slug`, with `time_zone`.
async fn webhook_campaign_in_zone(
    app: &TestApp,
    slug: &str,
    contact: &str,
    zone: Option<&str>,
) -> i64 {
    contacts(
        app,
        json!([{"external_id": contact, "first_name": "R", "time_zone": zone}]),
    )
    .await;
    segment(app, slug, &[contact]).await;
    create(
        app,
        &campaign(
            &format!("Hooks for {slug}"),
            &["webhook"],
            slug,
            webhook_variant("Hook"),
        ),
    )
    .await["id"]
        .as_i64()
        .unwrap()
}

/// Quiet hours that began after a launch hold its retries: the worker checks each retry
/// against the quiet hours in force on the contact's clock when it comes due, and puts it
/// off until they end without using up an attempt (`delay`), or suppresses it (`drop`).
async fn retries_are_checked_against_quiet_hours_again(backend: Backend) {
    let s = Sending::start(backend).await;
    let app = &s.app;
    // Both first tries fail with a 500, a failure worth another try.
    s.receiver
        .answer_next(vec![Reply::status(500), Reply::status(500)]);
    let delayed = webhook_campaign_in_zone(app, "late-delay", "q1", Some("Asia/Tokyo")).await;
    let dropped = webhook_campaign_in_zone(app, "late-drop", "q2", None).await;
    s.launch(delayed).await;
    s.launch(dropped).await;
    let stats = s.drain(Channel::Webhook).await;
    assert_eq!(stats.retried, 2, "{stats:?}");

    // Quiet hours begin: from an hour ago to two hours from now, on each contact's clock
    // (Tokyo for q1; the quiet hours' own zone, UTC, for q2 without one).
    let now = chrono::Utc::now();
    let ends = (now + chrono::Duration::hours(2))
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    let window = |zone: chrono_tz::Tz| {
        (
            (now - chrono::Duration::hours(1))
                .with_timezone(&zone)
                .format("%H:%M")
                .to_string(),
            ends.with_timezone(&zone).format("%H:%M").to_string(),
        )
    };
    for (id, action, zone) in [
        (delayed, "delay", chrono_tz::Asia::Tokyo),
        (dropped, "drop", chrono_tz::UTC),
    ] {
        let (start, end) = window(zone);
        let (status, body) = put(
            app,
            &format!("/api/v1/campaigns/{id}/quiet-hours"),
            &json!({"start": start, "end": end, "action": action, "time_zone": "UTC"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.drain(Channel::Webhook).await;
        let q1 = s.delivery_of("q1").await;
        let q2 = s.delivery_of("q2").await;
        if q1["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("quiet hours")
            && q2["status"] == "suppressed"
        {
            break;
        }
        assert!(Instant::now() < deadline, "{q1}\n{q2}");
    }
    let q1 = s.delivery_of("q1").await;
    assert_eq!(q1["status"], "queued", "{q1}");
    assert_eq!(
        q1["attempts"], 1,
        "the put-off retry is not an attempt: {q1}"
    );
    let reason = q1["reason"].as_str().unwrap();
    let until = reason
        .strip_prefix("quiet hours: the retry waits until ")
        .unwrap_or_else(|| panic!("{reason}"));
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(until).unwrap(),
        ends,
        "{reason}"
    );
    let q2 = s.delivery_of("q2").await;
    assert_eq!(q2["reason"], "quiet hours", "{q2}");
    // The receiver saw the two first tries and nothing since.
    assert_eq!(s.receiver.requests().len(), 2);
    let queue = app.state.queues.open(Channel::Webhook).await.unwrap();
    assert_eq!(
        queue.stats().await.unwrap().delayed,
        1,
        "q1's retry waits in the queue"
    );
}

/// Emails are rendered as send slots free up, so a contact whose data breaks the template
/// fails alone, with the template's message, between contacts whose emails go out.
async fn an_email_whose_data_breaks_its_template_fails_alone(backend: Backend) {
    let s = Sending::start_with(backend, |settings| {
        settings.sending.batch_size = 3;
        settings.sending.concurrency = 1;
    })
    .await;
    contacts(
        &s.app,
        json!([
            {"external_id": "anna", "email": "anna@customer.example", "attributes": {"per_box": 3}},
            {"external_id": "ben", "email": "ben@customer.example", "attributes": {"per_box": 0}},
            {"external_id": "cleo", "email": "cleo@customer.example", "attributes": {"per_box": 4}},
        ]),
    )
    .await;
    segment(&s.app, "boxes", &["anna", "ben", "cleo"]).await;
    let body = campaign(
        "Boxes",
        &["email"],
        "boxes",
        json!({ "name": "Boxes", "email": email(
            "Your boxes",
            "<p>{{ 12 // contact.attributes.per_box|default(1) }} boxes each</p>",
        )}),
    );
    let id = create(&s.app, &body).await["id"].as_i64().unwrap();
    let report = s.launch(id).await;
    assert_eq!(report["queued"], 3, "{report}");
    s.drain(Channel::Email).await;

    let mut arrived: Vec<(String, bool)> = s
        .smtp
        .received()
        .iter()
        .map(|message| {
            let raw = String::from_utf8_lossy(&message.raw).into_owned();
            let expected = if message.rcpt_tos == ["anna@customer.example"] {
                "4 boxes each"
            } else {
                "3 boxes each"
            };
            (message.rcpt_tos.join(","), raw.contains(expected))
        })
        .collect();
    arrived.sort();
    assert_eq!(
        arrived,
        [
            ("anna@customer.example".to_owned(), true),
            ("cleo@customer.example".to_owned(), true)
        ]
    );
    for sent in ["anna", "cleo"] {
        let delivery = s.delivery_of(sent).await;
        assert_eq!(delivery["status"], "sent", "{delivery}");
    }
    let ben = s.delivery_of("ben").await;
    assert_eq!(ben["status"], "failed", "{ben}");
    let reason = ben["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("template:"), "{ben}");
    let progress = s.progress(id).await;
    assert_eq!(progress["totals"]["sent"], 2, "{progress:#}");
    assert_eq!(progress["totals"]["failed"], 1, "{progress:#}");
    assert_eq!(progress["remaining"], 0, "{progress:#}");
}

on_both_backends!(
    each_recipient_gets_one_email_with_its_first_segments_variant,
    webhooks_arrive_signed_and_verifiable_by_the_receiver,
    webhook_errors_are_retried_or_dead_lettered_by_kind,
    emails_wait_out_a_relay_outage_and_arrive_once,
    a_campaign_failing_too_often_pauses_itself_and_resumes,
    pause_resume_cancel_and_retry_through_the_api,
    the_webhook_channel_needs_a_receiver_url,
    retries_are_checked_against_quiet_hours_again,
    an_email_whose_data_breaks_its_template_fails_alone,
);
