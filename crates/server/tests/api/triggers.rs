//! Campaigns triggered on segment entry, through the API: contacts enter a segment by an
//! event batch, a contact update, a contact batch or the sweep; the trigger round the
//! scheduler role runs (on a test clock) moves due sends into deliveries; a real SMTP server
//! receives what the worker sends.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clarion_campaign::schedule::fire::ManualClock;
use clarion_campaign::trigger::fire::{Round, Triggers};
use clarion_model::{Channel, ContactId, DEFAULT_WORKSPACE};
use clarion_testkit::{Backend, on_both_backends};
use reqwest::Method;
use sea_orm::ConnectionTrait;
use serde_json::{Value as Json, json};

use crate::app::{TestApp, read};
use crate::campaigns::{contacts, create, put, segment};
use crate::sending::Sending;

/// The trigger round as `serve --role scheduler` builds it, on `clock`.
fn triggers(app: &TestApp, clock: &ManualClock) -> Triggers {
    let state = &app.state;
    Triggers::new(
        state.db.clone(),
        state.queues.clone(),
        state.settings.triggers.clone(),
        Arc::new(clock.clone()),
    )
}

pub(crate) async fn dynamic_segment(app: &TestApp, slug: &str, rule: Json) {
    let (status, body) = app
        .post(
            "/api/v1/segments",
            &json!({"name": slug, "slug": slug, "category": "behavioural", "rule": rule}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// An email campaign to the members of `slug`, with `subject`; returns its id.
async fn email_campaign(app: &TestApp, subject: &str, slug: &str) -> i64 {
    let body = json!({
        "name": subject,
        "goal": { "event": "purchase", "window_hours": 168 },
        "holdout_percent": 0,
        "channels": ["email"],
        "targets": [{ "segment": slug, "variants": [{ "name": "A", "email": {
            "subject": subject,
            "html": "<p>Hello {{ contact.first_name|default('you') }}</p>",
            "from": "Shop <news@shop.example>",
        }}]}],
    });
    create(app, &body).await["id"].as_i64().unwrap()
}

async fn trigger(app: &TestApp, id: i64, body: Json) -> Json {
    let (status, view) = put(app, &format!("/api/v1/campaigns/{id}/trigger"), &body).await;
    assert_eq!(status, 200, "{view}");
    view
}

async fn view(app: &TestApp, id: i64) -> Json {
    let (status, view) = app.get(&format!("/api/v1/campaigns/{id}/trigger")).await;
    assert_eq!(status, 200, "{view}");
    view
}

async fn events(app: &TestApp, items: Json) {
    let (status, body) = app
        .post("/api/v1/events/batch", &json!({ "events": items }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejected"], 0, "{body}");
}

async fn patch_contact(app: &TestApp, external_id: &str, body: Json) {
    let response = app
        .request(Method::PATCH, &format!("/api/v1/contacts/{external_id}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
}

/// Recipients of the messages with `subject` the SMTP server received, sorted.
fn received(s: &Sending, subject: &str) -> Vec<String> {
    let mut to: Vec<String> = s
        .smtp
        .received()
        .iter()
        .filter(|m| String::from_utf8_lossy(&m.raw).contains(&format!("Subject: {subject}")))
        .flat_map(|m| m.rcpt_tos.clone())
        .collect();
    to.sort();
    to
}

async fn contact_id(app: &TestApp, external_id: &str) -> i64 {
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            format!("SELECT id FROM contacts WHERE external_id = '{external_id}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "id").unwrap()
}

fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap()
}

async fn round(runner: &Triggers) -> Round {
    runner.run_once().await.unwrap()
}

/// Sign-ups get a welcome three days after entering, unless they purchased meanwhile; each
/// once; members from before the trigger only where the trigger asks for them; a restarted
/// scheduler (a new round object) finds the pending sends in the database.
async fn entries_fire_once_after_the_delay_with_the_condition_rechecked(backend: Backend) {
    let s = Sending::start(backend).await;
    let app = &s.app;
    let people: Vec<Json> = ["old", "e1", "e2", "e3"]
        .iter()
        .map(|id| json!({"external_id": id, "email": format!("{id}@customer.example")}))
        .collect();
    contacts(app, json!(people)).await;
    events(app, json!([{"external_id": "old", "kind": "signup"}])).await;
    dynamic_segment(
        app,
        "signed-up",
        json!({"event": "signup", "within": "365d", "count": {"op": ">=", "value": 1}}),
    )
    .await;
    let welcome = email_campaign(app, "Welcome", "signed-up").await;
    let everyone = email_campaign(app, "Everyone", "signed-up").await;
    let armed = trigger(
        app,
        welcome,
        json!({"segment": "signed-up", "delay": "3d",
               "condition": {"not": {"event": "purchase", "within": "365d", "count": {"op": ">=", "value": 1}}}}),
    )
    .await;
    assert_eq!(armed["state"], "active");
    assert_eq!(armed["delay"], "3d");
    assert_eq!(armed["campaign_status"], "sending");
    trigger(
        app,
        everyone,
        json!({"segment": "signed-up", "include_existing": true}),
    )
    .await;

    events(
        app,
        json!([{"external_id": "e1", "kind": "signup"}, {"external_id": "e2", "kind": "signup"}]),
    )
    .await;
    let now = Utc::now();
    let clock = ManualClock::at(now);
    let first = round(&triggers(app, &clock)).await;
    assert_eq!(first.entries, 4, "two entries for each trigger: {first:?}");
    // The existing member and the two sign-ups, at once: no delay.
    assert_eq!((first.sent, first.enqueued), (3, 3), "{first:?}");
    let pending = view(app, welcome).await;
    assert_eq!(pending["counts"]["pending"], 2, "{pending}");
    assert_eq!(pending["pending"].as_array().unwrap().len(), 2);
    let entered = pending["pending"][0]["entered_at"].as_str().unwrap();
    let entered = DateTime::parse_from_rfc3339(entered)
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        pending["next_due_at"]
            .as_str()
            .map(|d| DateTime::parse_from_rfc3339(d).unwrap()),
        Some((entered + chrono::Duration::days(3)).into())
    );

    events(
        app,
        json!([{"external_id": "e2", "kind": "purchase"}, {"external_id": "e1", "kind": "signup"}]),
    )
    .await;
    clock.set(entered + chrono::Duration::days(3) - chrono::Duration::minutes(1));
    let early = round(&triggers(app, &clock)).await;
    assert_eq!(early, Round::default(), "nothing is due yet");

    // A new round object, as after a restart: the pending sends are in the database.
    clock.set(entered + chrono::Duration::days(3) + chrono::Duration::minutes(1));
    let due = round(&triggers(app, &clock)).await;
    assert_eq!((due.sent, due.skipped, due.enqueued), (1, 1, 1), "{due:?}");
    assert_eq!(round(&triggers(app, &clock)).await, Round::default());
    s.settle(welcome, Channel::Email).await;
    s.settle(everyone, Channel::Email).await;
    assert_eq!(received(&s, "Welcome"), ["e1@customer.example"]);
    assert_eq!(
        received(&s, "Everyone"),
        [
            "e1@customer.example",
            "e2@customer.example",
            "old@customer.example"
        ]
    );

    let done = view(app, welcome).await;
    assert_eq!(
        done["counts"],
        json!({"pending": 0, "sent": 1, "skipped": 1, "ignored": 0})
    );
    assert_eq!(
        done["reasons"],
        json!({"the condition was not met when the send was due": 1})
    );
    let e2 = contact_id(app, "e2").await;
    let skipped = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["state"] == "skipped")
        .unwrap();
    assert_eq!(skipped["contact_id"], e2);
    // The run stays open while the trigger lives; the supervisor does not complete it.
    let run = done["run_id"].as_i64().unwrap();
    control_supervise(app).await;
    let (_, runs) = app.get(&format!("/api/v1/campaigns/{welcome}/runs")).await;
    assert_eq!(runs["runs"][0]["id"], run);
    assert_eq!(runs["runs"][0]["status"], "running", "{runs}");
    assert_eq!(runs["runs"][0]["queued"], 1, "{runs}");

    // Stopping skips nothing already decided and lets the run complete.
    let response = app
        .request(
            Method::DELETE,
            &format!("/api/v1/campaigns/{welcome}/trigger"),
        )
        .send()
        .await
        .unwrap();
    let (status, stopped) = read(response).await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["state"], "stopped");
    let (_, runs) = app.get(&format!("/api/v1/campaigns/{welcome}/runs")).await;
    assert_eq!(runs["runs"][0]["status"], "completed", "{runs}");
}

async fn control_supervise(app: &TestApp) {
    clarion_campaign::control::supervise(
        &app.state.db,
        &app.state.queues,
        &app.state.settings.sending,
    )
    .await
    .unwrap();
}

/// Entering by an event batch, a contact update, a contact batch (what CSV import calls) and
/// the sweep all count, each read by the same round.
async fn every_way_of_entering_counts(backend: Backend) {
    let s = Sending::start(backend).await;
    let app = &s.app;
    let people: Vec<Json> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| json!({"external_id": id, "email": format!("{id}@customer.example"), "country": "DE"}))
        .collect();
    contacts(app, json!(people)).await;
    dynamic_segment(
        app,
        "kiwis-or-buyers",
        json!({"any": [
            {"attr": "country", "op": "=", "value": "NZ"},
            {"event": "purchase", "within": "365d", "count": {"op": ">=", "value": 1}},
        ]}),
    )
    .await;
    dynamic_segment(
        app,
        "quiet",
        json!({"not": {"event": "visit", "within": "30d", "count": {"op": ">=", "value": 1}}}),
    )
    .await;
    let entry = email_campaign(app, "Entered", "kiwis-or-buyers").await;
    trigger(app, entry, json!({"segment": "kiwis-or-buyers"})).await;
    let clock = ManualClock::at(Utc::now());
    let runner = triggers(app, &clock);

    events(app, json!([{"external_id": "a", "kind": "purchase"}])).await;
    clock.set(Utc::now());
    assert_eq!(round(&runner).await.enqueued, 1, "event batch");
    patch_contact(app, "b", json!({"country": "NZ"})).await;
    clock.set(Utc::now());
    assert_eq!(round(&runner).await.enqueued, 1, "contact update");
    contacts(app, json!([{"external_id": "c", "country": "NZ"}])).await;
    clock.set(Utc::now());
    assert_eq!(round(&runner).await.enqueued, 1, "contact batch");
    s.settle(entry, Channel::Email).await;
    assert_eq!(
        received(&s, "Entered"),
        [
            "a@customer.example",
            "b@customer.example",
            "c@customer.example"
        ]
    );

    // The sweep: a visit 30 days old expires, and the contact enters `quiet`.
    let now = Utc::now();
    let old = (now - chrono::Duration::days(29)).to_rfc3339();
    events(
        app,
        json!([{"external_id": "d", "kind": "visit", "occurred_at": old}]),
    )
    .await;
    let winback = email_campaign(app, "Miss you", "quiet").await;
    trigger(app, winback, json!({"segment": "quiet"})).await;
    let later = now + chrono::Duration::days(2);
    clarion_segment::membership::sweep(
        &app.db,
        DEFAULT_WORKSPACE,
        clarion_model::Timestamp::from_millis(later.timestamp_millis()),
    )
    .await
    .unwrap();
    clock.set(later);
    assert_eq!(round(&runner).await.enqueued, 1, "sweep");
    s.settle(winback, Channel::Email).await;
    assert_eq!(received(&s, "Miss you"), ["d@customer.example"]);
}

/// With `reentry_after`, a contact that leaves and enters again is sent again once the
/// cool-down passed (into a new run: a run holds one delivery per contact); without it,
/// never. A paused campaign sends nothing and ignores entries meanwhile.
async fn reentry_after_the_cool_down_and_paused_campaigns(backend: Backend) {
    let s = Sending::start(backend).await;
    let app = &s.app;
    contacts(
        app,
        json!([{"external_id": "k", "email": "k@customer.example", "country": "DE"},
               {"external_id": "p", "email": "p@customer.example", "country": "DE"}]),
    )
    .await;
    dynamic_segment(
        app,
        "kiwis",
        json!({"attr": "country", "op": "=", "value": "NZ"}),
    )
    .await;
    let again = email_campaign(app, "Again", "kiwis").await;
    let once = email_campaign(app, "Once", "kiwis").await;
    let paused = email_campaign(app, "Paused", "kiwis").await;
    trigger(
        app,
        again,
        json!({"segment": "kiwis", "reentry_after": "7d"}),
    )
    .await;
    trigger(app, once, json!({"segment": "kiwis"})).await;
    trigger(app, paused, json!({"segment": "kiwis"})).await;
    let (status, body) = app
        .post(
            &format!("/api/v1/campaigns/{paused}/pause"),
            &json!({"reason": "holiday"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let k = contact_id(app, "k").await;
    let start = Utc::now().timestamp_millis();
    let enter = |country: &'static str, when: i64| {
        let db = app.db.clone();
        async move {
            db.execute_unprepared(&format!(
                "UPDATE contacts SET country = '{country}' WHERE id = {k}"
            ))
            .await
            .unwrap();
            clarion_segment::membership::refresh_contacts(
                &db,
                DEFAULT_WORKSPACE,
                &[ContactId(k)],
                clarion_model::Timestamp::from_millis(when),
                false,
            )
            .await
            .unwrap();
        }
    };
    let day = 86_400_000;
    let clock = ManualClock::at(at(start));
    let runner = triggers(app, &clock);
    enter("NZ", start).await;
    let first = round(&runner).await;
    assert_eq!(
        (first.entries, first.sent, first.enqueued),
        (3, 2, 2),
        "{first:?}"
    );
    // Out and in again a day later: within the cool-down.
    enter("DE", start + day).await;
    enter("NZ", start + day + 1).await;
    clock.set(at(start + day + 2));
    let inside = round(&runner).await;
    assert_eq!((inside.entries, inside.sent), (3, 0), "{inside:?}");
    // Out and in again after eight days: past the cool-down.
    enter("DE", start + 8 * day).await;
    enter("NZ", start + 8 * day + 1).await;
    clock.set(at(start + 8 * day + 2));
    let after = round(&runner).await;
    assert_eq!(
        (after.entries, after.sent, after.enqueued),
        (3, 1, 1),
        "{after:?}"
    );

    s.settle(again, Channel::Email).await;
    s.settle(once, Channel::Email).await;
    assert_eq!(
        received(&s, "Again"),
        ["k@customer.example", "k@customer.example"]
    );
    assert_eq!(received(&s, "Once"), ["k@customer.example"]);
    assert!(received(&s, "Paused").is_empty());
    let (_, runs) = app.get(&format!("/api/v1/campaigns/{again}/runs")).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "{runs}");

    let counts = |v: &Json| v["counts"].clone();
    assert_eq!(
        counts(&view(app, again).await),
        json!({"pending": 0, "sent": 2, "skipped": 0, "ignored": 1})
    );
    let once_view = view(app, once).await;
    assert_eq!(
        counts(&once_view),
        json!({"pending": 0, "sent": 1, "skipped": 0, "ignored": 2})
    );
    assert_eq!(
        once_view["reasons"],
        json!({"entered before; re-entry is not allowed (reentry_after)": 2})
    );
    let paused_view = view(app, paused).await;
    assert_eq!(paused_view["campaign_status"], "paused");
    assert_eq!(
        counts(&paused_view),
        json!({"pending": 0, "sent": 0, "skipped": 0, "ignored": 3})
    );

    // Resumed, it sends again to whoever enters from then on.
    let (status, body) = app
        .post(&format!("/api/v1/campaigns/{paused}/resume"), &json!(null))
        .await;
    assert_eq!(status, 200, "{body}");
    patch_contact(app, "p", json!({"country": "NZ"})).await;
    clock.set(Utc::now());
    let resumed = round(&runner).await;
    assert_eq!(resumed.entries, 3, "{resumed:?}");
    s.settle(paused, Channel::Email).await;
    assert_eq!(received(&s, "Paused"), ["p@customer.example"]);
}

/// A trigger on a static segment, an unknown segment, a delay beyond a year, a bad duration
/// or a condition naming an unknown attribute is refused naming the field or rule node, and
/// nothing is saved; a viewer may read but not write.
async fn bad_triggers_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    contacts(
        &app,
        json!([{"external_id": "x", "email": "x@customer.example"}]),
    )
    .await;
    segment(&app, "uploaded", &["x"]).await;
    dynamic_segment(
        &app,
        "everyone",
        json!({"attr": "country", "op": "=", "value": "DE"}),
    )
    .await;
    let id = email_campaign(&app, "Bad", "everyone").await;
    let path = format!("/api/v1/campaigns/{id}/trigger");
    let cases: BTreeMap<&str, (Json, &str)> = BTreeMap::from([
        ("static", (json!({"segment": "uploaded"}), "segment")),
        ("unknown", (json!({"segment": "nope"}), "segment")),
        (
            "long",
            (json!({"segment": "everyone", "delay": "366d"}), "delay"),
        ),
        (
            "unit",
            (json!({"segment": "everyone", "delay": "3 days"}), "delay"),
        ),
        (
            "cool-down",
            (
                json!({"segment": "everyone", "reentry_after": "2y"}),
                "reentry_after",
            ),
        ),
        (
            "condition",
            (
                json!({"segment": "everyone", "condition": {"all": [{"attr": "shoe_size", "op": "=", "value": 3}]}}),
                "condition.all[0].attr",
            ),
        ),
    ]);
    for (name, (body, field)) in &cases {
        let (status, answer) = put(&app, &path, body).await;
        assert_eq!(status, 422, "{name}: {answer}");
        let details = answer["details"]["errors"].as_array().unwrap();
        assert!(
            details
                .iter()
                .any(|d| d["path"] == *field || d["field"] == *field),
            "{name}: {answer}"
        );
    }
    let (status, _) = app.get(&path).await;
    assert_eq!(status, 404, "nothing was saved");
    let (_, campaign) = app.get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(campaign["status"], "draft");

    let response = app
        .client
        .put(app.url(&path))
        .bearer_auth(&app.viewer_key)
        .json(&json!({"segment": "everyone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    trigger(&app, id, json!({"segment": "everyone", "delay": "1d12h"})).await;
    let response = app
        .client
        .get(app.url(&path))
        .bearer_auth(&app.viewer_key)
        .send()
        .await
        .unwrap();
    let (status, seen) = read(response).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["delay_secs"], 36 * 3600);
    // A launched campaign cannot be launched again by hand.
    let (status, _) = app
        .post(&format!("/api/v1/campaigns/{id}/launch"), &json!(null))
        .await;
    assert_eq!(status, 409);
}

/// The first moment at or after `from` whose UTC clock shows `hour`:00.
fn next_utc_hour(from: DateTime<Utc>, hour: u32) -> DateTime<Utc> {
    let today = from.date_naive().and_hms_opt(hour, 0, 0).unwrap().and_utc();
    if today >= from {
        today
    } else {
        today + chrono::Duration::days(1)
    }
}

/// The first moment after `after` that `zone`'s clocks show as `hour`:00.
fn next_local_hour(after: DateTime<Utc>, zone: chrono_tz::Tz, hour: u32) -> DateTime<Utc> {
    use chrono::TimeZone as _;
    let date = after.with_timezone(&zone).date_naive();
    (0..3)
        .map(|days| date + chrono::Duration::days(days))
        .filter_map(|d| {
            zone.from_local_datetime(&d.and_hms_opt(hour, 0, 0).unwrap())
                .earliest()
        })
        .map(|at| at.with_timezone(&Utc))
        .find(|at| *at > after)
        .unwrap()
}

/// Quiet hours (21:00-08:00 on each contact's clock) hold a triggered send that falls due
/// inside them: with `delay` it stays pending until they end in the contact's zone (the
/// quiet hours' zone for a contact without one) and its delivery shows when it went; with
/// `drop` it is recorded `suppressed` with the reason `quiet hours`. Checked at 20:00 UTC,
/// evening in Berlin, afternoon in New York and early morning in Tokyo.
async fn quiet_hours_hold_triggered_sends(backend: Backend) {
    let s = Sending::start(backend).await;
    let app = &s.app;
    contacts(
        app,
        json!([
            {"external_id": "ber", "email": "ber@customer.example", "time_zone": "Europe/Berlin"},
            {"external_id": "ny", "email": "ny@customer.example", "time_zone": "America/New_York"},
            {"external_id": "none", "email": "none@customer.example"},
        ]),
    )
    .await;
    dynamic_segment(
        app,
        "signed-up",
        json!({"event": "signup", "within": "365d", "count": {"op": ">=", "value": 1}}),
    )
    .await;
    let delayed = email_campaign(app, "Delayed", "signed-up").await;
    let dropped = email_campaign(app, "Dropped", "signed-up").await;
    for (id, action) in [(delayed, "delay"), (dropped, "drop")] {
        let (status, body) = put(
            app,
            &format!("/api/v1/campaigns/{id}/quiet-hours"),
            &json!({"start": "21:00", "end": "08:00", "weekends": false,
                    "action": action, "time_zone": "Asia/Tokyo"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        trigger(app, id, json!({"segment": "signed-up"})).await;
    }
    events(
        app,
        json!(["ber", "ny", "none"].map(|id| json!({"external_id": id, "kind": "signup"}))),
    )
    .await;

    let evening = next_utc_hour(Utc::now(), 20);
    let clock = ManualClock::at(evening);
    let first = round(&triggers(app, &clock)).await;
    assert_eq!(first.entries, 6, "{first:?}");
    // New York for both campaigns, plus the dropped campaign's two quiet ones.
    assert_eq!(
        (first.sent, first.delayed, first.enqueued),
        (4, 2, 2),
        "{first:?}"
    );
    let waiting = view(app, delayed).await;
    assert_eq!(waiting["counts"]["pending"], 2, "{waiting}");
    let tokyo_morning = next_local_hour(evening, chrono_tz::Asia::Tokyo, 8);
    let berlin_morning = next_local_hour(evening, chrono_tz::Europe::Berlin, 8);
    assert_eq!(
        waiting["next_due_at"]
            .as_str()
            .map(|d| DateTime::parse_from_rfc3339(d).unwrap()),
        Some(tokyo_morning.into()),
        "{waiting}"
    );

    clock.set(tokyo_morning - chrono::Duration::minutes(1));
    assert_eq!(round(&triggers(app, &clock)).await, Round::default());
    clock.set(tokyo_morning + chrono::Duration::minutes(1));
    let tokyo = round(&triggers(app, &clock)).await;
    assert_eq!((tokyo.sent, tokyo.enqueued), (1, 1), "{tokyo:?}");
    clock.set(berlin_morning + chrono::Duration::minutes(1));
    let berlin = round(&triggers(app, &clock)).await;
    assert_eq!((berlin.sent, berlin.enqueued), (1, 1), "{berlin:?}");

    s.settle(delayed, Channel::Email).await;
    s.settle(dropped, Channel::Email).await;
    assert_eq!(
        received(&s, "Delayed"),
        [
            "ber@customer.example",
            "none@customer.example",
            "ny@customer.example"
        ]
    );
    assert_eq!(received(&s, "Dropped"), ["ny@customer.example"]);

    // The delay shows on the deliveries: each went when its contact's morning came.
    let sent = s
        .deliveries(&format!(
            "/api/v1/campaigns/{delayed}/deliveries?status=sent"
        ))
        .await;
    let due_of = |contact: &str| {
        sent.iter()
            .find(|d| d["contact"] == contact)
            .map(|d| d["due_at"].clone())
            .unwrap_or_else(|| panic!("no delivery to {contact}: {sent:#?}"))
    };
    assert_eq!(due_of("ny"), Json::Null, "New York was not quiet");
    for (contact, morning) in [("none", tokyo_morning), ("ber", berlin_morning)] {
        let due = due_of(contact);
        let due = DateTime::parse_from_rfc3339(due.as_str().unwrap()).unwrap();
        assert_eq!(due, morning, "{contact}");
    }
    let suppressed = s
        .deliveries(&format!(
            "/api/v1/campaigns/{dropped}/deliveries?status=suppressed"
        ))
        .await;
    let mut quiet: Vec<&str> = suppressed
        .iter()
        .filter(|d| d["reason"] == "quiet hours")
        .map(|d| d["contact"].as_str().unwrap())
        .collect();
    quiet.sort_unstable();
    assert_eq!(quiet, ["ber", "none"], "{suppressed:#?}");
}

/// A campaign is scheduled or triggered, never both: saving the other answers 422 naming
/// the field, and nothing is saved.
async fn a_campaign_is_scheduled_or_triggered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    contacts(
        &app,
        json!([{"external_id": "x", "email": "x@customer.example"}]),
    )
    .await;
    dynamic_segment(
        &app,
        "germans",
        json!({"attr": "country", "op": "=", "value": "DE"}),
    )
    .await;
    let year = Utc::now().format("%Y").to_string().parse::<i32>().unwrap() + 1;

    let triggered = email_campaign(&app, "Triggered", "germans").await;
    trigger(&app, triggered, json!({"segment": "germans"})).await;
    for (body, field) in [
        (
            json!({"cron": "0 9 * * MON", "time_zone": "Europe/Berlin"}),
            "cron",
        ),
        (
            json!({"at": format!("{year}-03-23T10:00"), "time_zone": "Europe/Berlin"}),
            "at",
        ),
    ] {
        let (status, answer) = put(
            &app,
            &format!("/api/v1/campaigns/{triggered}/schedule"),
            &body,
        )
        .await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["details"]["errors"][0]["field"], field, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("trigger")
                || answer["details"].to_string().contains("trigger"),
            "{answer}"
        );
    }
    let (status, _) = app
        .get(&format!("/api/v1/campaigns/{triggered}/schedule"))
        .await;
    assert_eq!(status, 404, "no schedule was saved");

    let scheduled = email_campaign(&app, "Scheduled", "germans").await;
    let (status, body) = put(
        &app,
        &format!("/api/v1/campaigns/{scheduled}/schedule"),
        &json!({"cron": "0 9 * * MON", "time_zone": "Europe/Berlin"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, answer) = put(
        &app,
        &format!("/api/v1/campaigns/{scheduled}/trigger"),
        &json!({"segment": "germans"}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["details"]["errors"][0]["field"], "segment",
        "{answer}"
    );
    let (status, _) = app
        .get(&format!("/api/v1/campaigns/{scheduled}/trigger"))
        .await;
    assert_eq!(status, 404, "no trigger was saved");
    let (_, campaign) = app.get(&format!("/api/v1/campaigns/{scheduled}")).await;
    assert_eq!(campaign["status"], "draft");
}

on_both_backends!(
    entries_fire_once_after_the_delay_with_the_condition_rechecked,
    every_way_of_entering_counts,
    reentry_after_the_cool_down_and_paused_campaigns,
    bad_triggers_are_refused_naming_the_field,
    quiet_hours_hold_triggered_sends,
    a_campaign_is_scheduled_or_triggered,
);
