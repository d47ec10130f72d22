//! The tracking links of messages as a mail client follows them: the click redirect, the open
//! pixel and the unsubscribe page with its one-click POST, on links signed the way rendered
//! messages sign them.
//!
//! The campaign, its run and the delivery are written with SQL: the tests depend on the
//! tables' shape, not on a launch API.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::app::TestApp;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clarion_campaign::hits::Tally;
use clarion_queue::QueueConfig;
use clarion_server::{AppState, Settings};
use clarion_template::{Tracker, TrackingKeys};
use clarion_testkit::{Backend, on_both_backends};
use reqwest::{StatusCode, header};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

const KEY: &str = "tracking-test-signing-key-0001";
const TARGET: &str = "https://shop.example/sale?utm_source=clarion&x=1";
/// What a person's mail client sends when it shows images or follows a link.
const PERSON: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15";

/// A server, a tracker signing with its key, and one sent delivery to Anna (Ben has none).
struct Fixture {
    app: TestApp,
    tracker: Tracker,
    /// Does not follow redirects, so the test sees them.
    client: reqwest::Client,
    campaign: i64,
    run: i64,
    delivery: i64,
    anna: i64,
    ben: i64,
}

impl Fixture {
    async fn new(backend: Backend) -> Fixture {
        Self::with(backend, |_| {}).await
    }

    /// A fixture whose server runs with changed settings.
    async fn with(backend: Backend, change: impl FnOnce(&mut Settings)) -> Fixture {
        let app = TestApp::spawn_with(backend, |settings| {
            settings.tracking.signing_keys = vec![secrecy::SecretString::from(KEY)];
            change(settings);
        })
        .await;
        let (status, body) = app
            .post(
                "/api/v1/contacts/batch",
                &json!({"contacts": [
                    {"external_id": "anna", "email": "anna@example.com"},
                    {"external_id": "ben", "email": "ben@example.com"},
                ]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let anna = id(&app, "SELECT id FROM contacts WHERE external_id = 'anna'").await;
        let ben = id(&app, "SELECT id FROM contacts WHERE external_id = 'ben'").await;
        let now = clarion_model::Timestamp::now().millis();
        let campaign = id(
            &app,
            &format!(
                "INSERT INTO campaigns (workspace_id, name, status, goal_event, goal_window_hours, \
                 holdout_percent, channels, created_at, updated_at) \
                 VALUES (1, 'Spring sale', 'draft', 'purchase', 72, 0.0, 'email', {now}, {now}) RETURNING id"
            ),
        )
        .await;
        let run = id(
            &app,
            &format!(
                "INSERT INTO campaign_runs (workspace_id, campaign_id, status, audience, queued, \
                 suppressed, holdout, started_at, updated_at) \
                 VALUES (1, {campaign}, 'running', 1, 1, 0, 0, {now}, {now}) RETURNING id"
            ),
        )
        .await;
        let delivery = id(
            &app,
            &format!(
                "INSERT INTO deliveries (workspace_id, run_id, campaign_id, contact_id, channel, \
                 variant_id, segment_id, status, attempts, created_at, updated_at, sent_at) \
                 VALUES (1, {run}, {campaign}, {anna}, 'email', 1, 1, 'sent', 1, {now}, {now}, {now}) RETURNING id"
            ),
        )
        .await;
        // Links point at the test server; the key is what makes them the installation's.
        let tracker =
            Tracker::new(&app.address, TrackingKeys::new(&[KEY.as_bytes()]).unwrap()).unwrap();
        let client = crate::app::http_client()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(PERSON)
            .build()
            .unwrap();
        Fixture {
            app,
            tracker,
            client,
            campaign,
            run,
            delivery,
            anna,
            ben,
        }
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.client.get(url).send().await.unwrap()
    }

    /// A GET with other headers, as a bot, a scanner or a proxy sends it.
    async fn get_as(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// Another sent delivery of the fixture's run, to `contact`.
    async fn delivery_to(&self, contact: i64) -> i64 {
        let now = clarion_model::Timestamp::now().millis();
        id(
            &self.app,
            &format!(
                "INSERT INTO deliveries (workspace_id, run_id, campaign_id, contact_id, channel, \
                 variant_id, segment_id, status, attempts, created_at, updated_at, sent_at) \
                 VALUES (1, {}, {}, {contact}, 'email', 1, 1, 'sent', 1, {now}, {now}, {now}) RETURNING id",
                self.run, self.campaign
            ),
        )
        .await
    }

    /// The RFC 8058 one-click POST a mailbox provider sends.
    async fn one_click(&self, url: &str) -> reqwest::Response {
        self.client
            .post(url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap()
    }

    /// A contact's events of one kind, newest first, through the API.
    async fn events(&self, contact: &str, kind: &str) -> Vec<Value> {
        let (status, body) = self
            .app
            .get(&format!("/api/v1/contacts/{contact}/events?kind={kind}"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["events"].as_array().unwrap().clone()
    }

    async fn all_events(&self, contact: &str) -> Vec<Value> {
        let (status, body) = self
            .app
            .get(&format!("/api/v1/contacts/{contact}/events"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["events"].as_array().unwrap().clone()
    }

    async fn email_status(&self, contact: &str) -> String {
        let (status, body) = self.app.get(&format!("/api/v1/contacts/{contact}")).await;
        assert_eq!(status, 200, "{body}");
        body["subscriptions"]["email"].as_str().unwrap().to_owned()
    }
}

async fn id(app: &TestApp, sql: &str) -> i64 {
    let backend = app.db.get_database_backend();
    let row = app
        .db
        .query_one_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// The token of a tracking URL with its payload replaced and the signature kept.
fn forge(url: &str, payload: &str) -> String {
    let (base, token) = url.rsplit_once('/').unwrap();
    let (_, tag) = token.split_once('.').unwrap();
    format!("{base}/{}.{tag}", URL_SAFE_NO_PAD.encode(payload))
}

async fn assert_broken_page(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(header::LOCATION).is_none());
    let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains("broken or expired"), "{page}");
}

async fn assert_pixel(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/gif");
    let cache = response.headers()[header::CACHE_CONTROL].to_str().unwrap();
    assert!(cache.contains("no-store"), "{cache}");
    let image = response.bytes().await.unwrap();
    assert!(image.starts_with(b"GIF89a"));
    assert_eq!(image.len(), 43);
}

async fn clicks_redirect_to_the_target_and_are_recorded(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (status, body) = f
        .app
        .post(
            "/api/v1/segments",
            &json!({"name": "Clickers", "category": "behavioural",
                    "rule": "email_click.count(30d) >= 1"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let url = f.tracker.click_url(&f.delivery.to_string(), TARGET);

    for _ in 0..2 {
        let response = f.get(&url).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()[header::LOCATION], TARGET);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }
    // The answers came before the clicks were stored; the recorder stores them.
    assert!(f.events("anna", "email_click").await.is_empty());
    let tally = f.app.record_hits().await;
    assert_eq!(tally.count("click", "recorded"), 2, "{tally:?}");
    // Each click counts: a second one is not a duplicate.
    let clicks = f.events("anna", "email_click").await;
    assert_eq!(clicks.len(), 2, "{clicks:#?}");
    assert_eq!(
        clicks[0]["properties"],
        json!({"campaign_id": f.campaign, "delivery_id": f.delivery, "url": TARGET})
    );
    // The click brought Anna into the segment at once, as an ingested event would.
    let (status, page) = f.app.get("/api/v1/segments/clickers/members").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["members"][0]["external_id"], "anna", "{page}");

    // A link whose target was changed, or that was never signed, redirects nowhere.
    assert_broken_page(
        f.get(&forge(
            &url,
            &format!("{}\nhttps://evil.example/", f.delivery),
        ))
        .await,
    )
    .await;
    assert_broken_page(f.get(&f.app.url("/t/c/not-a-token")).await).await;
    assert_broken_page(f.get(&f.app.url("/t/c/AAAA.AAAA")).await).await;
    // An open token is not a click token.
    let open = f.tracker.open_url(&f.delivery.to_string());
    let open_token = open.rsplit('/').next().unwrap();
    assert_broken_page(f.get(&f.app.url(&format!("/t/c/{open_token}"))).await).await;
    assert_eq!(f.events("anna", "email_click").await.len(), 2);

    // A signed link whose delivery is gone still takes the reader where it promised.
    let response = f.get(&f.tracker.click_url("987654321", TARGET)).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[header::LOCATION], TARGET);
    let tally = f.app.record_hits().await;
    assert_eq!(tally.count("click", "unknown_delivery"), 1, "{tally:?}");
    assert_eq!(tally.count("click", "recorded"), 0, "{tally:?}");
    assert_eq!(f.events("anna", "email_click").await.len(), 2);

    let metrics = f.get(&f.app.url("/metrics")).await.text().await.unwrap();
    assert!(
        metrics.contains(r#"clarion_tracking_requests_total{kind="click",outcome="accepted"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"clarion_tracking_requests_total{kind="click",outcome="invalid"} 4"#),
        "{metrics}"
    );
}

async fn opens_answer_a_pixel_and_are_recorded(backend: Backend) {
    let f = Fixture::new(backend).await;
    assert_pixel(f.get(&f.tracker.open_url(&f.delivery.to_string())).await).await;
    f.app.record_hits().await;
    let opens = f.events("anna", "email_open").await;
    assert_eq!(opens.len(), 1, "{opens:#?}");
    assert_eq!(
        opens[0]["properties"],
        json!({"campaign_id": f.campaign, "delivery_id": f.delivery})
    );

    // A bad token still gets the image, so no broken picture shows, but records nothing.
    assert_pixel(f.get(&f.app.url("/t/o/garbage")).await).await;
    let forged = forge(
        &f.tracker.open_url(&f.delivery.to_string()),
        &(f.delivery + 1).to_string(),
    );
    assert_pixel(f.get(&forged).await).await;
    assert_eq!(f.app.record_hits().await, Default::default());
    assert_eq!(f.events("anna", "email_open").await.len(), 1);
    assert!(f.all_events("ben").await.is_empty());
}

/// The `machine` flags of a contact's events of one kind, oldest first.
async fn machine_flags(f: &Fixture, contact: &str, kind: &str) -> Vec<Option<String>> {
    let mut flags: Vec<Option<String>> = f
        .events(contact, kind)
        .await
        .iter()
        .map(|e| e["properties"]["machine"].as_str().map(str::to_owned))
        .collect();
    flags.reverse();
    flags
}

/// Opens and clicks by machines are recorded with the reason and people's are not: bots by
/// user agent, Apple's privacy proxy (by its user agent or its network), a scanner clicking
/// every link at once, and the honeypot link, which also flags the clicks around it.
async fn machine_opens_and_clicks_are_flagged(backend: Backend) {
    let f = Fixture::new(backend).await;
    let open = f.tracker.open_url(&f.delivery.to_string());
    assert_pixel(f.get(&open).await).await;
    let googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    assert_pixel(f.get_as(&open, &[("user-agent", googlebot)]).await).await;
    assert_pixel(f.get_as(&open, &[("user-agent", "Mozilla/5.0")]).await).await;
    assert_pixel(f.get_as(&open, &[("x-forwarded-for", "17.58.12.9")]).await).await;
    f.app.record_hits().await;
    assert_eq!(
        machine_flags(&f, "anna", "email_open").await,
        [
            None,
            Some("bot_user_agent".into()),
            Some("privacy_proxy".into()),
            Some("privacy_proxy".into())
        ]
    );

    // A person clicks one link twice: not a burst.
    let url = f.tracker.click_url(&f.delivery.to_string(), TARGET);
    for _ in 0..2 {
        assert_eq!(f.get(&url).await.status(), StatusCode::FOUND);
    }
    f.app.record_hits().await;
    assert_eq!(machine_flags(&f, "anna", "email_click").await, [None, None]);

    // A security scanner (a browser's user agent) follows all three links of Ben's message at once.
    let ben_delivery = f.delivery_to(f.ben).await.to_string();
    let links: Vec<String> = [
        "https://shop.example/a",
        "https://shop.example/b",
        "https://shop.example/c",
    ]
    .iter()
    .map(|target| f.tracker.click_url(&ben_delivery, target))
    .collect();
    let responses = futures::future::join_all(links.iter().map(|l| f.get(l))).await;
    assert!(responses.iter().all(|r| r.status() == StatusCode::FOUND));
    f.app.record_hits().await;
    assert_eq!(
        machine_flags(&f, "ben", "email_click").await,
        vec![Some("click_burst".to_owned()); 3]
    );

    // Cara's message: a click, then the hidden honeypot link, then another click.
    let (status, body) = f
        .app
        .post(
            "/api/v1/contacts/batch",
            &json!({"contacts": [{"external_id": "cara", "email": "cara@example.com"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let cara = id(&f.app, "SELECT id FROM contacts WHERE external_id = 'cara'").await;
    let cara_delivery = f.delivery_to(cara).await.to_string();
    let first = f
        .tracker
        .click_url(&cara_delivery, "https://shop.example/a");
    assert_eq!(f.get(&first).await.status(), StatusCode::FOUND);
    let trap = f.get(&f.tracker.honeypot_url(&cara_delivery)).await;
    assert_eq!(
        trap.status(),
        StatusCode::OK,
        "the honeypot redirects nowhere"
    );
    assert!(trap.headers().get(header::LOCATION).is_none());
    assert_eq!(trap.text().await.unwrap(), "");
    let after = f
        .tracker
        .click_url(&cara_delivery, "https://shop.example/b");
    assert_eq!(f.get(&after).await.status(), StatusCode::FOUND);
    f.app.record_hits().await;
    assert_eq!(
        machine_flags(&f, "cara", "email_click").await,
        vec![Some("honeypot".to_owned()); 3]
    );
    // Anna's clicks were never touched by the machines' flags on other messages.
    assert_eq!(machine_flags(&f, "anna", "email_click").await, [None, None]);

    // The run's roll-ups agree with the flags: of the three messages clicked only Anna's
    // has a person's click, and only Anna opened as a person.
    let everyone = ["anna", "ben", "cara"];
    for (metric, kind, people) in [("clicked", "email_click", 1), ("opened", "email_open", 1)] {
        assert_eq!(people_engaged(&f, &everyone, kind).await, people, "{kind}");
        assert_eq!(rolled_up(&f, metric).await, people, "{metric}");
    }
}

/// The run's roll-up total of `metric` on the email channel.
async fn rolled_up(f: &Fixture, metric: &str) -> i64 {
    id(
        &f.app,
        &format!(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM kpi_run_counts \
             WHERE run_id = {} AND channel = 'email' AND metric = '{metric}'",
            f.run
        ),
    )
    .await
}

/// Unique opens or clicks computed from the raw events, as the API lists them: the
/// deliveries with at least one event of `kind` that is not flagged as a machine's.
async fn people_engaged(f: &Fixture, contacts: &[&str], kind: &str) -> i64 {
    let mut deliveries = BTreeSet::new();
    for contact in contacts {
        for event in f.events(contact, kind).await {
            if event["properties"]["machine"].is_null() {
                deliveries.insert(event["properties"]["delivery_id"].as_i64().unwrap());
            }
        }
    }
    deliveries.len() as i64
}

/// A scanner's clicks on two links of one message, recorded in two batches: the second batch
/// flags both, the first one's click included, and the roll-ups drop the click again.
async fn a_burst_split_over_two_batches_is_flagged(backend: Backend) {
    // A window of a minute, so that recording between the clicks stays inside it.
    let f = Fixture::with(backend, |settings| {
        settings.engagement.burst_window_ms = 60_000;
    })
    .await;
    let delivery = f.delivery.to_string();
    let first = f.tracker.click_url(&delivery, "https://shop.example/a");
    assert_eq!(f.get(&first).await.status(), StatusCode::FOUND);
    assert_eq!(f.app.record_hits().await.count("click", "recorded"), 1);
    assert_eq!(machine_flags(&f, "anna", "email_click").await, [None]);
    assert_eq!(rolled_up(&f, "clicked").await, 1);

    let second = f.tracker.click_url(&delivery, "https://shop.example/b");
    assert_eq!(f.get(&second).await.status(), StatusCode::FOUND);
    assert_eq!(f.app.record_hits().await.count("click", "recorded"), 1);
    assert_eq!(
        machine_flags(&f, "anna", "email_click").await,
        vec![Some("click_burst".to_owned()); 2]
    );
    assert_eq!(people_engaged(&f, &["anna"], "email_click").await, 0);
    assert_eq!(rolled_up(&f, "clicked").await, 0);
}

/// Hits accepted before a restart are recorded after it, each once: those a dying recorder
/// had read and even stored but not acknowledged, and those nobody had read yet.
async fn hits_survive_a_restart_and_are_recorded_once(backend: Backend) {
    let f = Fixture::new(backend).await;
    let open = f.tracker.open_url(&f.delivery.to_string());
    for _ in 0..3 {
        assert_pixel(f.get(&open).await).await;
    }
    let click = f.tracker.click_url(&f.delivery.to_string(), TARGET);
    assert_eq!(f.get(&click).await.status(), StatusCode::FOUND);

    // The first process's recorder reads two hits, stores them and dies before acknowledging.
    let queue = f.app.state.hits.queue().await.unwrap();
    let dying = queue.consumer("dying").await.unwrap();
    let batch: Vec<_> = dying
        .next_batch(2)
        .await
        .unwrap()
        .into_iter()
        .map(|received| received.job)
        .collect();
    assert_eq!(batch.len(), 2);
    let stored = f.app.state.recorder.record(&batch).await.unwrap();
    assert_eq!(stored.count("open", "recorded"), 2, "{stored:?}");
    drop(dying);

    // Another process starts on the same database and Redis and takes the queue over.
    let restarted = AppState::connect(f.app.settings.clone()).await.unwrap();
    let queues = &restarted.queues;
    let config = QueueConfig {
        reclaim_min_idle: Duration::ZERO,
        ..queues.hits_config()
    };
    let consumer = queues
        .hits(config)
        .await
        .unwrap()
        .consumer("restarted")
        .await
        .unwrap();
    let tally = restarted.recorder.drain(&consumer).await.unwrap();
    assert_eq!(tally.count("open", "repeated"), 2, "{tally:?}");
    assert_eq!(tally.count("open", "recorded"), 1, "{tally:?}");
    assert_eq!(tally.count("click", "recorded"), 1, "{tally:?}");
    assert_eq!(
        restarted.recorder.drain(&consumer).await.unwrap(),
        Tally::default()
    );

    assert_eq!(f.events("anna", "email_open").await.len(), 3);
    assert_eq!(f.events("anna", "email_click").await.len(), 1);
    for (metric, kind) in [("opened", "email_open"), ("clicked", "email_click")] {
        assert_eq!(people_engaged(&f, &["anna"], kind).await, 1, "{kind}");
        assert_eq!(rolled_up(&f, metric).await, 1, "{metric}");
    }
}

/// While Redis does not answer, the endpoints record opens and clicks before answering.
async fn without_redis_hits_are_recorded_before_the_answer(backend: Backend) {
    let f = Fixture::with(backend, |settings| {
        settings.redis.url = secrecy::SecretString::from("redis://127.0.0.1:1");
    })
    .await;
    assert_pixel(f.get(&f.tracker.open_url(&f.delivery.to_string())).await).await;
    let opens = f.events("anna", "email_open").await;
    assert_eq!(opens.len(), 1, "{opens:#?}");
    assert_eq!(rolled_up(&f, "opened").await, 1);
    let metrics = f.get(&f.app.url("/metrics")).await.text().await.unwrap();
    assert!(
        metrics.contains(r#"clarion_tracking_requests_total{kind="open",outcome="recorded"} 1"#),
        "{metrics}"
    );
}

async fn one_click_unsubscribes_once_and_repeats_harmlessly(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (status, body) = f
        .app
        .post(
            "/api/v1/segments",
            &json!({"name": "Unsubscribed", "category": "behavioural",
                    "rule": "email_status = \"unsubscribed\""}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let url = f
        .tracker
        .unsubscribe_url(&f.delivery.to_string(), &f.anna.to_string());

    // The page only asks; it changes nothing.
    let response = f.get(&url).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("<form method=\"post\""), "{page}");
    assert_eq!(f.email_status("anna").await, "subscribed");

    let response = f.one_click(&url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("unsubscribed"));
    assert_eq!(f.email_status("anna").await, "unsubscribed");
    let events = f.events("anna", "unsubscribe").await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0]["properties"],
        json!({"campaign_id": f.campaign, "delivery_id": f.delivery})
    );
    assert_eq!(
        events[0]["idempotency_key"],
        format!("unsubscribe:{}", f.delivery)
    );
    // Segments follow at once, as after a contact PATCH.
    let (status, members) = f.app.get("/api/v1/segments/unsubscribed/members").await;
    assert_eq!(status, 200, "{members}");
    assert_eq!(members["members"][0]["external_id"], "anna", "{members}");

    // Again, and as the page's button posts it (or with no body): same answer, no new event.
    assert_eq!(f.one_click(&url).await.status(), StatusCode::OK);
    let response = f.client.post(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(f.events("anna", "unsubscribe").await.len(), 1);
    assert_eq!(f.email_status("anna").await, "unsubscribed");

    // A token whose contact is not the delivery's, or that was altered, changes nothing.
    let other = f
        .tracker
        .unsubscribe_url(&f.delivery.to_string(), &f.ben.to_string());
    assert_broken_page(f.one_click(&other).await).await;
    assert_broken_page(
        f.one_click(&forge(&url, &format!("{}\n{}", f.delivery, f.ben)))
            .await,
    )
    .await;
    assert_broken_page(f.get(&forge(&url, "x")).await).await;
    assert_eq!(f.email_status("ben").await, "subscribed");
    assert!(f.all_events("ben").await.is_empty());
}

async fn unsubscribing_works_after_the_delivery_is_gone(backend: Backend) {
    let f = Fixture::new(backend).await;
    f.app
        .db
        .execute_unprepared("DELETE FROM deliveries")
        .await
        .unwrap();
    let url = f
        .tracker
        .unsubscribe_url(&f.delivery.to_string(), &f.ben.to_string());
    assert_eq!(f.one_click(&url).await.status(), StatusCode::OK);
    assert_eq!(f.email_status("ben").await, "unsubscribed");
    let events = f.events("ben", "unsubscribe").await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["properties"], json!({"delivery_id": f.delivery}));
}

async fn preview_links_work_but_record_nothing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let preview = clarion_campaign::preview::PREVIEW_DELIVERY;

    let response = f.get(&f.tracker.click_url(preview, TARGET)).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[header::LOCATION], TARGET);
    assert_pixel(f.get(&f.tracker.open_url(preview)).await).await;

    let url = f.tracker.unsubscribe_url(preview, &f.anna.to_string());
    let response = f.get(&url).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("preview"), "{page}");
    assert!(!page.contains("<form"), "{page}");
    let response = f.one_click(&url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("preview"));
    assert_eq!(f.app.record_hits().await, Default::default());

    assert_eq!(f.email_status("anna").await, "subscribed");
    assert!(f.all_events("anna").await.is_empty());
}

/// A message's literal links as the worker renders them: one signed token per message and
/// each link's index into the link table of the variant version it was rendered from.
fn literal_links(f: &Fixture, html: &str, variant: i64, version: i64) -> Vec<String> {
    let content = clarion_template::EmailContent {
        subject: "Hello".to_owned(),
        html: html.to_owned(),
        from: "Shop <news@shop.example>".to_owned(),
        ..clarion_template::EmailContent::default()
    };
    let compiled = clarion_template::Engine::default()
        .compile_email(&content)
        .unwrap();
    let ctx = clarion_template::RenderContext::new(
        &json!({}),
        &json!({}),
        &json!({}),
        clarion_template::Recipient::new("en-US", "UTC").unwrap(),
    );
    let table = clarion_campaign::engagement::link_table_name(variant, version);
    let delivery = f.delivery.to_string();
    let anna = f.anna.to_string();
    let tracking = clarion_template::MessageTracking::new(&f.tracker, &delivery, &anna)
        .with_link_table(&table);
    let html = compiled.render(&ctx, &tracking).unwrap().html;
    html.split("href=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
        .filter(|url| url.contains("/t/l/"))
        .collect()
}

async fn assert_redirect(f: &Fixture, url: &str, target: &str) {
    let response = f.get(url).await;
    assert_eq!(response.status(), StatusCode::FOUND, "{url}");
    assert_eq!(response.headers()[header::LOCATION], target, "{url}");
}

async fn literal_links_resolve_in_their_variant_version_after_an_edit(backend: Backend) {
    let f = Fixture::new(backend).await;
    crate::campaigns::segment(&f.app, "everyone", &["anna"]).await;
    let first = "<p><a href=\"https://shop.example/spring\">Spring</a> \
                 <a href=\"https://shop.example/sale?x=1&amp;y=2\">Sale</a></p>";
    let created = crate::campaigns::create(
        &f.app,
        &json!({
            "name": "Links", "goal": {"event": "purchase", "window_hours": 72},
            "holdout_percent": 0, "channels": ["email"],
            "targets": [{"segment": "everyone", "variants": [{"name": "A", "weight": 1,
                "email": {"subject": "Hi", "html": first, "from": "Shop <news@shop.example>"}}]}],
        }),
    )
    .await;
    let campaign = created["id"].as_i64().unwrap();
    let variant = created["targets"][0]["variants"][0]["id"].as_i64().unwrap();
    assert_eq!(created["targets"][0]["variants"][0]["version"], 1);
    let sent_before = literal_links(&f, first, variant, 1);
    assert_eq!(sent_before.len(), 2, "{sent_before:?}");
    // One signature for the message; the links differ only in their index.
    let prefix = sent_before[0].strip_suffix("/0").unwrap();
    assert_eq!(sent_before[1], format!("{prefix}/1"));
    assert_redirect(&f, &sent_before[0], "https://shop.example/spring").await;

    // The marketer edits the variant: other links, in another order.
    let second = "<p><a href=\"https://shop.example/autumn\">Autumn</a></p>";
    let (status, saved) = crate::campaigns::put(
        &f.app,
        &format!("/api/v1/campaigns/{campaign}/variants/{variant}"),
        &json!({"name": "A", "weight": 1,
                "email": {"subject": "Hi", "html": second, "from": "Shop <news@shop.example>"}}),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["targets"][0]["variants"][0]["version"], 2);
    let sent_after = literal_links(&f, second, variant, 2);
    assert_eq!(sent_after.len(), 1, "{sent_after:?}");

    // Links sent before the edit still lead where they did; new ones to the new targets.
    assert_redirect(&f, &sent_before[1], "https://shop.example/sale?x=1&y=2").await;
    assert_redirect(&f, &sent_before[0], "https://shop.example/spring").await;
    assert_redirect(&f, &sent_after[0], "https://shop.example/autumn").await;
    f.app.record_hits().await;
    let clicks = f.events("anna", "email_click").await;
    let mut urls: Vec<&str> = clicks
        .iter()
        .map(|c| {
            assert_eq!(c["properties"]["delivery_id"], f.delivery, "{c}");
            c["properties"]["url"].as_str().unwrap()
        })
        .collect();
    urls.sort_unstable();
    assert_eq!(
        urls,
        [
            "https://shop.example/autumn",
            "https://shop.example/sale?x=1&y=2",
            "https://shop.example/spring",
            "https://shop.example/spring"
        ]
    );

    // An index outside the version's table, or not a number, redirects nowhere.
    let after_prefix = sent_after[0].strip_suffix("/0").unwrap();
    for index in ["1", "999999", "1000000000000", "-1", "x", "01x"] {
        assert_broken_page(f.get(&format!("{after_prefix}/{index}")).await).await;
    }
    // A token altered to name another version or delivery keeps its old signature: refused.
    let (base, token) = prefix.rsplit_once('/').unwrap();
    let (_, tag) = token.split_once('.').unwrap();
    for payload in [
        format!("{}\n{variant}.2", f.delivery),
        format!("{}\n{variant}.1", f.delivery + 1),
    ] {
        let forged = format!("{base}/{}.{tag}/0", URL_SAFE_NO_PAD.encode(payload));
        assert_broken_page(f.get(&forged).await).await;
    }
    // Signed by this installation, but for a version that was never saved.
    let unsaved = f.tracker.link_url(
        &f.delivery.to_string(),
        &clarion_campaign::engagement::link_table_name(variant, 3),
        0,
    );
    assert_broken_page(f.get(&unsaved).await).await;
    // A click token is not a link token.
    let click = f.tracker.click_url(&f.delivery.to_string(), TARGET);
    let click_token = click.rsplit('/').next().unwrap();
    assert_broken_page(f.get(&f.app.url(&format!("/t/l/{click_token}/0"))).await).await;
    assert_eq!(f.app.record_hits().await, Default::default());
    assert_eq!(f.events("anna", "email_click").await.len(), 4);
}

on_both_backends!(
    literal_links_resolve_in_their_variant_version_after_an_edit,
    clicks_redirect_to_the_target_and_are_recorded,
    opens_answer_a_pixel_and_are_recorded,
    machine_opens_and_clicks_are_flagged,
    one_click_unsubscribes_once_and_repeats_harmlessly,
    unsubscribing_works_after_the_delivery_is_gone,
    preview_links_work_but_record_nothing,
    a_burst_split_over_two_batches_is_flagged,
    hits_survive_a_restart_and_are_recorded_once,
    without_redis_hits_are_recorded_before_the_answer,
);
