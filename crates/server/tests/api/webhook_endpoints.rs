//! Webhook endpoints through the API, checked at the far end: real HTTP receivers started by
//! the test record what arrived, and the Standard Webhooks reference library for Python
//! (PyPI `standardwebhooks`, in the virtual environment `scripts/test` installs) verifies
//! each signature with nothing of Clarion's code.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clarion_campaign::Worker;
use clarion_model::{Channel, DEFAULT_WORKSPACE, Role};
use clarion_server::store;
use clarion_testkit::{Backend, on_both_backends};
use clarion_testpeers::{Recorded, Reply, WebhookReceiver};
use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::app::{TestApp, read};
use crate::campaigns::{contacts, create, segment};

/// The Python with `standardwebhooks` installed: `CLARION_STANDARDWEBHOOKS_PYTHON`, else the
/// virtual environment `scripts/test` makes under the workspace's `target/`.
fn verifier_python() -> String {
    std::env::var("CLARION_STANDARDWEBHOOKS_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/../../target/standardwebhooks-venv/bin/python",
            env!("CARGO_MANIFEST_DIR")
        )
    })
}

/// Reads `{"secret", "requests": [{"headers", "body"}]}` and prints, per request, whether
/// `standardwebhooks.Webhook(secret).verify` accepts it.
const VERIFIER: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
job = json.load(sys.stdin)
hook = Webhook(job["secret"])
verdicts = []
for request in job["requests"]:
    try:
        hook.verify(request["body"], request["headers"])
        verdicts.append(True)
    except WebhookVerificationError:
        verdicts.append(False)
print(json.dumps(verdicts))
"#;

/// Whether the reference library verifies each request with `secret`.
pub(crate) fn verified_with(secret: &str, requests: &[Recorded]) -> Vec<bool> {
    let job = json!({
        "secret": secret,
        "requests": requests.iter().map(|r| json!({
            "headers": r.headers,
            "body": String::from_utf8(r.body.clone()).unwrap(),
        })).collect::<Vec<_>>(),
    });
    let python = verifier_python();
    let mut child = Command::new(&python)
        .args(["-c", VERIFIER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} ({e}); scripts/test installs standardwebhooks there, or set CLARION_STANDARDWEBHOOKS_PYTHON")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the verifier failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A server whose webhook target policy allows this host (the receivers), an admin key, and
/// a delivery worker built from the server's own state.
struct Hooks {
    app: TestApp,
    admin_key: String,
    worker: Worker,
}

impl Hooks {
    async fn start(backend: Backend) -> Hooks {
        clarion_dispatch::install_crypto_provider();
        let app = TestApp::spawn_with(backend, |settings| {
            settings.webhook.allow_loopback = true;
            settings.sending.backoff_base_ms = 50;
            settings.sending.backoff_max_ms = 200;
        })
        .await;
        Self::with_app(app).await
    }

    async fn with_app(app: TestApp) -> Hooks {
        let (admin_key, _) = store::keys::create(&app.db, DEFAULT_WORKSPACE, "admin", Role::Admin)
            .await
            .unwrap();
        let worker = app.state.delivery_worker().await.unwrap();
        Hooks {
            app,
            admin_key,
            worker,
        }
    }

    /// A request with `key` and an optional JSON body: status and JSON answer.
    async fn call(&self, key: &str, method: Method, path: &str, body: Option<Json>) -> (u16, Json) {
        let mut request = self
            .app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.unwrap()).await
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Json>) -> (u16, Json) {
        let key = self.admin_key.clone();
        self.call(&key, method, path, body).await
    }

    /// Creates an endpoint; returns the answer (with its secret).
    async fn endpoint(&self, body: Json) -> Json {
        let (status, created) = self
            .admin(Method::POST, "/api/v1/webhook-endpoints", Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        created
    }

    /// Drains the webhook queue until campaign `id` has nothing left to send.
    async fn settle(&self, id: i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.worker
                .run_once(&self.app.state.queues, Channel::Webhook, "test-consumer")
                .await
                .unwrap();
            let (status, progress) = self
                .app
                .get(&format!("/api/v1/campaigns/{id}/progress"))
                .await;
            assert_eq!(status, 200, "{progress}");
            if progress["remaining"] == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "never settled: {progress:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn launch(&self, id: i64) {
        let (status, report) = self
            .app
            .post(&format!("/api/v1/campaigns/{id}/launch"), &json!(null))
            .await;
        assert_eq!(status, 200, "{report}");
    }
}

/// A webhook variant sending to `endpoint` (by id or name).
fn variant(name: &str, endpoint: &Json) -> Json {
    json!({
        "name": name,
        "webhook": {
            "payload": "{\"contact\": {{ contact.external_id }}, \"variant\": \"NAME\"}".replace("NAME", name),
            "endpoint": endpoint.as_str().map_or_else(|| endpoint.to_string(), str::to_owned),
        },
    })
}

fn campaign(name: &str, targets: Json) -> Json {
    json!({
        "name": name,
        "goal": { "event": "purchase", "window_hours": 168 },
        "holdout_percent": 0,
        "channels": ["webhook"],
        "targets": targets,
    })
}

/// Contacts with the given external ids, members of a new segment `slug`.
async fn audience(app: &TestApp, slug: &str, ids: &[&str]) {
    let items: Vec<Json> = ids
        .iter()
        .map(|id| json!({"external_id": id, "email": format!("{id}@customer.example")}))
        .collect();
    contacts(app, json!(items)).await;
    segment(app, slug, ids).await;
}

fn key_bytes(secret: &str) -> Vec<u8> {
    BASE64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 after whsec_")
}

async fn endpoints_are_managed_by_admins_and_secrets_are_shown_once(backend: Backend) {
    let h = Hooks::start(backend).await;
    let receiver = WebhookReceiver::start(vec![]);
    let body = json!({"name": "crm", "url": receiver.url("/crm"),
                      "headers": {"X-Api-Key": "crm-key-1"}, "rate_limit_per_second": 50});
    // Only admins manage endpoints.
    for key in [&h.app.marketer_key, &h.app.viewer_key] {
        let (status, answer) = h
            .call(
                key,
                Method::POST,
                "/api/v1/webhook-endpoints",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 403, "{answer}");
    }
    let created = h.endpoint(body).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(key_bytes(&secret).len() >= 24, "{secret}");
    assert_eq!(created["name"], "crm");
    assert_eq!(created["headers"], json!({"X-Api-Key": "crm-key-1"}));
    assert_eq!(created["rate_limit_per_second"], 50);
    assert_eq!(
        created["timeout_ms"], 15_000,
        "webhook.timeout_ms is the default"
    );
    assert_eq!(created["enabled"], true);
    assert_eq!(created["results"]["successes"], 0);
    let id = created["id"].as_i64().unwrap();
    // A second endpoint gets a secret of its own.
    let other = h
        .endpoint(json!({"name": "sms", "url": receiver.url("/sms")}))
        .await;
    assert_ne!(other["secret"], created["secret"]);

    // Viewers read, and no read shows a secret.
    for path in [
        "/api/v1/webhook-endpoints".to_owned(),
        format!("/api/v1/webhook-endpoints/{id}"),
        "/api/v1/webhook-endpoints/crm".to_owned(),
    ] {
        let response = h
            .app
            .client
            .get(h.app.url(&path))
            .bearer_auth(&h.app.viewer_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.unwrap();
        assert!(!text.contains(&secret), "{path} shows the secret: {text}");
        assert!(!text.contains("\"secret\""), "{path}: {text}");
    }
    let (_, listed) = h
        .call(
            &h.app.viewer_key,
            Method::GET,
            "/api/v1/webhook-endpoints",
            None,
        )
        .await;
    let names: Vec<&str> = listed["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["crm", "sms"]);
    let (_, by_id) = h.app.get(&format!("/api/v1/webhook-endpoints/{id}")).await;
    let (_, by_name) = h.app.get("/api/v1/webhook-endpoints/crm").await;
    assert_eq!(by_id, by_name);

    // Update, disable, enable.
    let (status, updated) = h
        .admin(
            Method::PATCH,
            &format!("/api/v1/webhook-endpoints/{id}"),
            Some(json!({"name": "crm-eu", "timeout_ms": 2500})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["name"], "crm-eu");
    assert_eq!(updated["timeout_ms"], 2500);
    assert_eq!(updated["url"], receiver.url("/crm"), "left out, kept");
    let (status, taken) = h
        .admin(
            Method::PATCH,
            "/api/v1/webhook-endpoints/crm-eu",
            Some(json!({"name": "sms"})),
        )
        .await;
    assert_eq!(status, 409, "{taken}");
    let (status, taken) = h
        .admin(
            Method::POST,
            "/api/v1/webhook-endpoints",
            Some(json!({"name": "sms", "url": receiver.url("/x")})),
        )
        .await;
    assert_eq!(status, 409, "{taken}");
    let (status, disabled) = h
        .admin(
            Method::POST,
            "/api/v1/webhook-endpoints/crm-eu/disable",
            None,
        )
        .await;
    assert_eq!((status, &disabled["enabled"]), (200, &json!(false)));
    let (status, enabled) = h
        .admin(
            Method::POST,
            &format!("/api/v1/webhook-endpoints/{id}/enable"),
            None,
        )
        .await;
    assert_eq!((status, &enabled["enabled"]), (200, &json!(true)));
    let (status, _) = h
        .call(
            &h.app.marketer_key,
            Method::POST,
            &format!("/api/v1/webhook-endpoints/{id}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(status, 403);

    // Delete.
    let (status, _) = h
        .call(
            &h.app.viewer_key,
            Method::DELETE,
            &format!("/api/v1/webhook-endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = h
        .admin(
            Method::DELETE,
            &format!("/api/v1/webhook-endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = h.app.get(&format!("/api/v1/webhook-endpoints/{id}")).await;
    assert_eq!(status, 404);
}

/// The one problem of a 422: its field.
fn refused_field(status: u16, answer: &Json) -> String {
    assert_eq!(status, 422, "{answer}");
    let errors = answer["details"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{answer}");
    errors[0]["field"].as_str().unwrap().to_owned()
}

async fn bad_endpoints_are_refused_naming_the_field_and_nothing_is_saved(backend: Backend) {
    // The default target policy: public addresses only.
    let app = TestApp::spawn(backend).await;
    let h = Hooks::with_app(app).await;
    let cases = [
        (
            json!({"name": "a", "url": "ftp://hooks.example.com/x"}),
            "url",
            "http",
        ),
        (
            json!({"name": "a", "url": "http://127.0.0.1:9/x"}),
            "url",
            "loopback",
        ),
        (
            json!({"name": "a", "url": "http://169.254.169.254/latest/meta-data"}),
            "url",
            "link-local",
        ),
        (
            json!({"name": "a", "url": "http://10.1.2.3/x"}),
            "url",
            "private",
        ),
        // A name is resolved when saved: localhost is this host.
        (
            json!({"name": "a", "url": "http://localhost:9/x"}),
            "url",
            "resolves to",
        ),
        (
            json!({"name": "a", "url": "https://user:pw@93.184.215.14/x"}),
            "url",
            "credentials",
        ),
        (json!({"name": "a", "url": "not a url"}), "url", "invalid"),
        (
            json!({"name": "a", "url": "https://93.184.215.14/x", "headers": {"Content-Length": "5"}}),
            "headers.Content-Length",
            "set by Clarion",
        ),
        (
            json!({"name": "a", "url": "https://93.184.215.14/x", "headers": {"webhook-signature": "v1,x"}}),
            "headers.webhook-signature",
            "set by Clarion",
        ),
        (
            json!({"name": "a", "url": "https://93.184.215.14/x", "headers": {"Host": "evil.example"}}),
            "headers.Host",
            "set by Clarion",
        ),
        (
            json!({"name": "a", "url": "https://93.184.215.14/x", "headers": {"Connection": "close"}}),
            "headers.Connection",
            "connection",
        ),
        (
            json!({"name": "a", "url": "https://93.184.215.14/x", "headers": {"X-Bad": "a\u{7f}b"}}),
            "headers.X-Bad",
            "header value",
        ),
        (
            json!({"name": "a", "url": "https://93.184.215.14/x", "timeout_ms": 5}),
            "timeout_ms",
            "100 to 60000",
        ),
        (
            json!({"name": "a", "url": "https://93.184.215.14/x", "rate_limit_per_second": 100_001}),
            "rate_limit_per_second",
            "100000",
        ),
        (
            json!({"name": "42", "url": "https://93.184.215.14/x"}),
            "name",
            "digits",
        ),
        (
            json!({"name": "", "url": "https://93.184.215.14/x"}),
            "name",
            "1 to 100",
        ),
    ];
    for (body, field, says) in cases {
        let (status, answer) = h
            .admin(
                Method::POST,
                "/api/v1/webhook-endpoints",
                Some(body.clone()),
            )
            .await;
        assert_eq!(refused_field(status, &answer), field, "{body}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (status, missing) = h
        .admin(
            Method::POST,
            "/api/v1/webhook-endpoints",
            Some(json!({"name": "a"})),
        )
        .await;
    assert_eq!(refused_field(status, &missing), "url", "{missing}");
    let (_, listed) = h.app.get("/api/v1/webhook-endpoints").await;
    assert_eq!(listed["endpoints"], json!([]), "nothing half-saved");

    // An IP literal on a public address needs no DNS; a change to a forbidden one is refused
    // and changes nothing.
    let created = h
        .endpoint(json!({"name": "public", "url": "https://93.184.215.14/hook"}))
        .await;
    let (status, answer) = h
        .admin(
            Method::PATCH,
            "/api/v1/webhook-endpoints/public",
            Some(json!({"url": "http://localhost/x", "timeout_ms": 1000})),
        )
        .await;
    assert_eq!(refused_field(status, &answer), "url");
    let (_, kept) = h.app.get("/api/v1/webhook-endpoints/public").await;
    assert_eq!(kept["url"], "https://93.184.215.14/hook");
    assert_eq!(kept["timeout_ms"], created["timeout_ms"]);
    let (status, answer) = h
        .admin(
            Method::POST,
            "/api/v1/webhook-endpoints/public/rotate-secret",
            Some(json!({"overlap_secs": 99_999_999})),
        )
        .await;
    assert_eq!(refused_field(status, &answer), "overlap_secs");
    // A campaign naming an endpoint that does not exist is refused at save time.
    audience(&h.app, "nobody-home", &["n1"]).await;
    let (status, answer) = h
        .app
        .post(
            "/api/v1/campaigns",
            &campaign(
                "Lost",
                json!([{"segment": "nobody-home", "variants": [variant("A", &json!("no-such-endpoint"))]}]),
            ),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["details"]["errors"][0]["field"], "webhook.endpoint",
        "{answer}"
    );
    assert_eq!(
        answer["details"]["errors"][0]["path"],
        "targets[0].variants[0].webhook.endpoint"
    );
}

async fn each_endpoint_gets_its_variants_signed_with_its_own_secret(backend: Backend) {
    let h = Hooks::start(backend).await;
    let crm_receiver = WebhookReceiver::start(vec![]);
    let sms_receiver = WebhookReceiver::start(vec![]);
    let crm = h
        .endpoint(json!({"name": "crm", "url": crm_receiver.url("/crm"),
                         "headers": {"X-Api-Key": "crm-key-1"}}))
        .await;
    let sms = h
        .endpoint(json!({"name": "sms", "url": sms_receiver.url("/sms")}))
        .await;
    let crm_secret = crm["secret"].as_str().unwrap();
    let sms_secret = sms["secret"].as_str().unwrap();
    audience(&h.app, "crm-people", &["a1", "a2"]).await;
    audience(&h.app, "sms-people", &["b1"]).await;
    // One variant names its endpoint by name, the other by id.
    let created = create(
        &h.app,
        &campaign(
            "Two receivers",
            json!([
                {"segment": "crm-people", "variants": [variant("ToCrm", &json!("crm"))]},
                {"segment": "sms-people", "variants": [variant("ToSms", &sms["id"])]},
            ]),
        ),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    h.launch(id).await;
    h.settle(id).await;

    let to_crm = crm_receiver.requests();
    let to_sms = sms_receiver.requests();
    assert_eq!(to_crm.len(), 2, "{to_crm:#?}");
    assert_eq!(to_sms.len(), 1, "{to_sms:#?}");
    assert_eq!(verified_with(crm_secret, &to_crm), [true, true]);
    assert_eq!(verified_with(sms_secret, &to_sms), [true]);
    // Neither secret opens the other endpoint's messages.
    assert_eq!(verified_with(sms_secret, &to_crm), [false, false]);
    assert_eq!(verified_with(crm_secret, &to_sms), [false]);
    let mut crm_contacts: Vec<String> = to_crm
        .iter()
        .map(|r| {
            assert_eq!(r.headers["x-api-key"], "crm-key-1");
            let body: Json = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["variant"], "ToCrm");
            body["contact"].as_str().unwrap().to_owned()
        })
        .collect();
    crm_contacts.sort();
    assert_eq!(crm_contacts, ["a1", "a2"]);
    let sms_body: Json = serde_json::from_slice(&to_sms[0].body).unwrap();
    assert_eq!(sms_body, json!({"contact": "b1", "variant": "ToSms"}));
    assert!(!to_sms[0].headers.contains_key("x-api-key"));

    // The results the workers recorded.
    let (_, crm_now) = h.app.get("/api/v1/webhook-endpoints/crm").await;
    assert_eq!(crm_now["results"]["successes"], 2, "{crm_now}");
    assert_eq!(crm_now["results"]["failures"], 0, "{crm_now}");
    assert_eq!(crm_now["results"]["last_status_code"], 204, "{crm_now}");
    assert!(crm_now["results"]["last_at"].is_string(), "{crm_now}");
    let (_, sms_now) = h.app.get("/api/v1/webhook-endpoints/sms").await;
    assert_eq!(sms_now["results"]["successes"], 1, "{sms_now}");

    // A receiver that fails shows in the results, and the delivery is retried.
    sms_receiver.answer_next(vec![Reply::status(503).body("down for maintenance")]);
    audience(&h.app, "sms-later", &["b2"]).await;
    let again = create(
        &h.app,
        &campaign(
            "Retry",
            json!([{"segment": "sms-later", "variants": [variant("ToSms", &json!("sms"))]}]),
        ),
    )
    .await;
    let again = again["id"].as_i64().unwrap();
    h.launch(again).await;
    h.settle(again).await;
    let (_, sms_now) = h.app.get("/api/v1/webhook-endpoints/sms").await;
    assert_eq!(sms_now["results"]["successes"], 2, "{sms_now}");
    assert_eq!(sms_now["results"]["failures"], 1, "{sms_now}");
    assert_eq!(sms_now["results"]["last_status_code"], 204, "{sms_now}");
    let last_error = sms_now["results"]["last_error"].as_str().unwrap();
    assert!(last_error.contains("503"), "{last_error}");
    assert!(last_error.contains("down for maintenance"), "{last_error}");
}

async fn receivers_with_the_old_or_the_new_secret_both_verify_during_a_rotation(backend: Backend) {
    let h = Hooks::start(backend).await;
    let receiver = WebhookReceiver::start(vec![]);
    let created = h
        .endpoint(json!({"name": "push", "url": receiver.url("/push")}))
        .await;
    let old = created["secret"].as_str().unwrap().to_owned();
    let (status, rotated) = h
        .admin(
            Method::POST,
            "/api/v1/webhook-endpoints/push/rotate-secret",
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    // The default overlap is webhook.rotation_overlap_secs (a day).
    let ends = rotated["rotation_ends_at"].as_str().unwrap();
    let ends = chrono::DateTime::parse_from_rfc3339(ends).unwrap();
    let left = ends.timestamp() - chrono::Utc::now().timestamp();
    assert!((86_000..=86_400).contains(&left), "{left}");

    // Messages sent during the overlap, by the workers and by "send test".
    audience(&h.app, "rotating", &["r1", "r2"]).await;
    let campaign_id = create(
        &h.app,
        &campaign(
            "During rotation",
            json!([{"segment": "rotating", "variants": [variant("A", &json!("push"))]}]),
        ),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    h.launch(campaign_id).await;
    h.settle(campaign_id).await;
    let (status, tested) = h
        .admin(Method::POST, "/api/v1/webhook-endpoints/push/test", None)
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["delivered"], true, "{tested}");
    let during = receiver.requests();
    assert_eq!(during.len(), 3);
    for request in &during {
        let signatures: Vec<&str> = request.headers["webhook-signature"].split(' ').collect();
        assert_eq!(signatures.len(), 2, "{signatures:?}");
    }
    // A receiver that still has only the old secret, and one that already has only the new.
    assert_eq!(verified_with(&old, &during), [true, true, true]);
    assert_eq!(verified_with(&new, &during), [true, true, true]);

    // After finishing the rotation only the new secret verifies.
    let (status, finished) = h
        .admin(
            Method::POST,
            "/api/v1/webhook-endpoints/push/finish-rotation",
            None,
        )
        .await;
    assert_eq!(status, 200, "{finished}");
    assert!(finished["rotation_ends_at"].is_null(), "{finished}");
    let (status, tested) = h
        .admin(Method::POST, "/api/v1/webhook-endpoints/push/test", None)
        .await;
    assert_eq!(status, 200, "{tested}");
    let after = &receiver.requests()[3..];
    assert_eq!(after.len(), 1);
    assert_eq!(verified_with(&new, after), [true]);
    assert_eq!(verified_with(&old, after), [false]);

    // A rotation without overlap replaces the secret at once.
    let (_, immediate) = h
        .admin(
            Method::POST,
            "/api/v1/webhook-endpoints/push/rotate-secret",
            Some(json!({"overlap_secs": 0})),
        )
        .await;
    let newest = immediate["secret"].as_str().unwrap().to_owned();
    assert!(immediate["rotation_ends_at"].is_null(), "{immediate}");
    h.admin(Method::POST, "/api/v1/webhook-endpoints/push/test", None)
        .await;
    let last = &receiver.requests()[4..];
    assert_eq!(verified_with(&newest, last), [true]);
    assert_eq!(verified_with(&new, last), [false]);
}

async fn send_test_posts_a_signed_sample_and_shows_the_answer(backend: Backend) {
    let h = Hooks::start(backend).await;
    let receiver = WebhookReceiver::start(vec![
        Reply::status(202).body("queued by the CRM"),
        Reply::status(500).body("the CRM is on fire"),
    ]);
    let created = h
        .endpoint(json!({"name": "crm", "url": receiver.url("/crm"),
                         "headers": {"Authorization": "Bearer crm-token"}}))
        .await;
    let secret = created["secret"].as_str().unwrap();
    contacts(
        &h.app,
        json!([{"external_id": "t1", "email": "ada@customer.example", "first_name": "Ada"}]),
    )
    .await;
    let (status, tested) = h
        .admin(
            Method::POST,
            "/api/v1/webhook-endpoints/crm/test",
            Some(json!({"contact": "t1"})),
        )
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["delivered"], true);
    assert_eq!(tested["status_code"], 202);
    assert_eq!(tested["body_excerpt"], "queued by the CRM");
    assert!(tested["error"].is_null());
    assert!(tested["latency_ms"].as_u64().is_some(), "{tested}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(verified_with(secret, &requests), [true]);
    assert_eq!(requests[0].headers["authorization"], "Bearer crm-token");
    assert_eq!(
        requests[0].headers["webhook-id"],
        tested["webhook_id"].as_str().unwrap()
    );
    let sent: Json = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(sent, tested["payload"]);
    assert_eq!(sent["type"], "clarion.test");
    assert_eq!(sent["endpoint"], "crm");
    assert_eq!(sent["contact"]["external_id"], "t1");
    assert_eq!(sent["contact"]["first_name"], "Ada");

    // A failing receiver is reported, not an error of the API; a payload of one's own.
    let (status, failed) = h
        .admin(
            Method::POST,
            "/api/v1/webhook-endpoints/crm/test",
            Some(json!({"payload": "{\"hello\": {{ contact.first_name }}}"})),
        )
        .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["delivered"], false);
    assert_eq!(failed["status_code"], 500);
    assert_eq!(failed["body_excerpt"], "the CRM is on fire");
    assert!(
        failed["error"].as_str().unwrap().contains("500"),
        "{failed}"
    );
    assert_eq!(
        failed["payload"],
        json!({"hello": "Sam"}),
        "the sample contact"
    );
    // Tests do not count as deliveries.
    let (_, now) = h.app.get("/api/v1/webhook-endpoints/crm").await;
    assert_eq!(now["results"]["successes"], 0, "{now}");

    let (status, answer) = h
        .admin(
            Method::POST,
            "/api/v1/webhook-endpoints/crm/test",
            Some(json!({"payload": "{\"x\": {{ contact.first_name "})),
        )
        .await;
    assert_eq!(refused_field(status, &answer), "payload");
    let (status, _) = h
        .admin(
            Method::POST,
            "/api/v1/webhook-endpoints/crm/test",
            Some(json!({"contact": "nobody"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = h
        .admin(Method::POST, "/api/v1/webhook-endpoints/nothing/test", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = h
        .call(
            &h.app.viewer_key,
            Method::POST,
            "/api/v1/webhook-endpoints/crm/test",
            None,
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(receiver.requests().len(), 2, "refused tests send nothing");

    // The endpoint's own timeout holds the request to it.
    let slow = WebhookReceiver::start(vec![]);
    slow.answer_otherwise(Reply::status(204).delay(Duration::from_secs(3)));
    h.endpoint(json!({"name": "slow", "url": slow.url("/slow"), "timeout_ms": 200}))
        .await;
    let (status, timed_out) = h
        .admin(Method::POST, "/api/v1/webhook-endpoints/slow/test", None)
        .await;
    assert_eq!(status, 200, "{timed_out}");
    assert_eq!(timed_out["delivered"], false, "{timed_out}");
    assert!(timed_out["status_code"].is_null(), "{timed_out}");
    let error = timed_out["error"].as_str().unwrap();
    assert!(error.contains("timed out"), "{error}");
}

async fn a_disabled_endpoint_holds_its_deliveries_until_enabled(backend: Backend) {
    let h = Hooks::start(backend).await;
    let receiver = WebhookReceiver::start(vec![]);
    h.endpoint(json!({"name": "slack", "url": receiver.url("/slack"), "enabled": false}))
        .await;
    audience(&h.app, "quiet", &["q1", "q2"]).await;
    let id = create(
        &h.app,
        &campaign(
            "Held",
            json!([{"segment": "quiet", "variants": [variant("A", &json!("slack"))]}]),
        ),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    h.launch(id).await;
    for _ in 0..3 {
        h.worker
            .run_once(&h.app.state.queues, Channel::Webhook, "test-consumer")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(receiver.requests().is_empty());
    let (_, progress) = h.app.get(&format!("/api/v1/campaigns/{id}/progress")).await;
    assert_eq!(progress["remaining"], 2, "{progress}");
    let (status, _) = h
        .admin(Method::POST, "/api/v1/webhook-endpoints/slack/enable", None)
        .await;
    assert_eq!(status, 200);
    h.settle(id).await;
    assert_eq!(receiver.requests().len(), 2);
    // Waiting used up no attempt.
    let (_, page) = h
        .app
        .get(&format!("/api/v1/campaigns/{id}/deliveries"))
        .await;
    for delivery in page["deliveries"].as_array().unwrap() {
        assert_eq!(delivery["status"], "sent", "{delivery}");
        assert_eq!(delivery["attempts"], 1, "{delivery}");
    }

    // A campaign whose endpoint was deleted after it was saved is not launched.
    audience(&h.app, "orphans", &["o1"]).await;
    let orphaned = create(
        &h.app,
        &campaign(
            "Orphaned",
            json!([{"segment": "orphans", "variants": [variant("A", &json!("slack"))]}]),
        ),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let (status, _) = h
        .admin(Method::DELETE, "/api/v1/webhook-endpoints/slack", None)
        .await;
    assert_eq!(status, 204);
    let (status, refused) = h
        .app
        .post(
            &format!("/api/v1/campaigns/{orphaned}/launch"),
            &json!(null),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{refused}"
    );
}

async fn a_rate_limited_endpoint_gets_its_deliveries_over_several_seconds(backend: Backend) {
    let h = Hooks::start(backend).await;
    let receiver = WebhookReceiver::start(vec![]);
    h.endpoint(json!({"name": "slow", "url": receiver.url("/slow"), "rate_limit_per_second": 2}))
        .await;
    let ids = ["s1", "s2", "s3", "s4", "s5"];
    audience(&h.app, "many", &ids).await;
    let id = create(
        &h.app,
        &campaign(
            "Throttled",
            json!([{"segment": "many", "variants": [variant("A", &json!("slow"))]}]),
        ),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    h.launch(id).await;
    // One pass sends what this second's allowance grants, and no more.
    h.worker
        .run_once(&h.app.state.queues, Channel::Webhook, "test-consumer")
        .await
        .unwrap();
    let first = receiver.requests().len();
    assert!((1..=2).contains(&first), "{first} sent in the first pass");
    h.settle(id).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 5, "each delivery once");
    let mut ids_seen: Vec<&str> = requests
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    ids_seen.sort_unstable();
    ids_seen.dedup();
    assert_eq!(ids_seen.len(), 5);
    let (_, page) = h
        .app
        .get(&format!("/api/v1/campaigns/{id}/deliveries"))
        .await;
    for delivery in page["deliveries"].as_array().unwrap() {
        assert_eq!(
            delivery["attempts"], 1,
            "waiting is not an attempt: {delivery}"
        );
    }
}

on_both_backends!(
    endpoints_are_managed_by_admins_and_secrets_are_shown_once,
    bad_endpoints_are_refused_naming_the_field_and_nothing_is_saved,
    each_endpoint_gets_its_variants_signed_with_its_own_secret,
    receivers_with_the_old_or_the_new_secret_both_verify_during_a_rotation,
    send_test_posts_a_signed_sample_and_shows_the_answer,
    a_disabled_endpoint_holds_its_deliveries_until_enabled,
    a_rate_limited_endpoint_gets_its_deliveries_over_several_seconds,
);
