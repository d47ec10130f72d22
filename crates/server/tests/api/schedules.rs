//! Scheduling through the API: previews of fire times, saving, changing, pausing and
//! cancelling schedules, and the scheduler firing them on a test clock, each slot once,
//! checked by the runs the API lists and the messages a real SMTP server received.
//!
//! The scheduler is the one `clarion serve --role scheduler` runs, built from the server's
//! state; its clock is a [`ManualClock`] so that weeks of slots pass in a second. The server
//! itself reads the system clock (a schedule saved now counts its first slot from now).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use clarion_campaign::schedule::fire::{Clock, Fired, Lease, ManualClock, Scheduler, fire_due};
use clarion_model::Channel;
use clarion_testkit::{Backend, on_both_backends};
use reqwest::Method;
use sea_orm::ConnectionTrait;
use serde_json::{Value as Json, json};

use crate::app::{TestApp, read};
use crate::campaigns::{contacts, create, put, segment};
use crate::sending::Sending;

fn utc(value: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value)
        .unwrap()
        .with_timezone(&Utc)
}

/// A scheduler as `serve` builds it, on `clock`, holding the lease as `owner`.
fn scheduler(app: &TestApp, owner: &str, clock: &ManualClock, lease: Duration) -> Scheduler {
    let state = &app.state;
    Scheduler::new(
        state.db.clone(),
        state.queues.clone(),
        state.settings.sending.clone(),
        state.settings.scheduling.clone(),
        Lease::new(
            state.redis.clone(),
            &state.settings.redis.key_prefix,
            owner,
            lease,
        ),
        Arc::new(clock.clone()),
    )
}

/// An email campaign to the members of `slug`; returns its id.
async fn email_campaign(app: &TestApp, name: &str, slug: &str) -> i64 {
    let body = json!({
        "name": name,
        "goal": { "event": "purchase", "window_hours": 168 },
        "holdout_percent": 0,
        "channels": ["email"],
        "targets": [{ "segment": slug, "variants": [{ "name": "A", "email": {
            "subject": format!("{name} for {{{{ contact.first_name|default('you') }}}}"),
            "html": "<p>Hello</p>",
            "from": "Shop <news@shop.example>",
        }}]}],
    });
    create(app, &body).await["id"].as_i64().unwrap()
}

/// Contacts `prefix1`..`prefixN` with addresses in a fresh segment `slug`.
async fn members(app: &TestApp, slug: &str, prefix: &str, n: usize) {
    let ids: Vec<String> = (1..=n).map(|i| format!("{prefix}{i}")).collect();
    let items: Vec<Json> = ids
        .iter()
        .map(|id| json!({"external_id": id, "email": format!("{id}@customer.example")}))
        .collect();
    contacts(app, json!(items)).await;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    segment(app, slug, &refs).await;
}

async fn schedule(app: &TestApp, id: i64, body: Json) -> Json {
    let (status, view) = put(app, &format!("/api/v1/campaigns/{id}/schedule"), &body).await;
    assert_eq!(status, 200, "{view}");
    view
}

async fn view(app: &TestApp, id: i64) -> Json {
    let (status, view) = app.get(&format!("/api/v1/campaigns/{id}/schedule")).await;
    assert_eq!(status, 200, "{view}");
    view
}

async fn runs(app: &TestApp, id: i64) -> Vec<Json> {
    let (status, body) = app.get(&format!("/api/v1/campaigns/{id}/runs")).await;
    assert_eq!(status, 200, "{body}");
    body["runs"].as_array().unwrap().clone()
}

/// The schedule's firings, oldest first, as (slot, status).
async fn history(app: &TestApp, id: i64) -> Vec<(String, String)> {
    let mut firings: Vec<(String, String)> = view(app, id).await["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["slot_at"].as_str().unwrap().to_owned(),
                f["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    firings.sort();
    firings
}

fn millis_form(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn the_preview_answers_as_the_issue_shows(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app
        .post(
            "/api/v1/schedules/preview",
            &json!({"cron": "0 9 * * MON", "time_zone": "Europe/Berlin", "from": "2027-03-20T00:00:00Z", "count": 3}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // 09:00 in Berlin is 08:00 UTC in winter (CET, +1) and 07:00 from 28 March (CEST, +2).
    assert_eq!(
        body,
        json!({"fire_times": ["2027-03-22T08:00:00Z", "2027-03-29T07:00:00Z", "2027-04-05T07:00:00Z"]})
    );
    let (status, body) = app
        .post(
            "/api/v1/schedules/preview",
            &json!({"at": "2027-03-23T10:00", "time_zone": "Europe/Berlin"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"fire_times": ["2027-03-23T09:00:00Z"]}));
    // A viewer may preview too.
    let response = app
        .client
        .post(app.url("/api/v1/schedules/preview"))
        .bearer_auth(&app.viewer_key)
        .json(&json!({"cron": "*/30 * * * *", "from": "2027-01-01T00:10:00Z", "count": 2}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["fire_times"],
        json!(["2027-01-01T00:30:00Z", "2027-01-01T01:00:00Z"])
    );
}

/// Each bad schedule answers 422 naming the field; nothing is saved.
async fn bad_schedules_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    members(&app, "bad", "b", 1).await;
    let id = email_campaign(&app, "Bad input", "bad").await;
    let cases = [
        (json!({"cron": "0 25 * * *"}), "cron", "position 2 (hour)"),
        (
            json!({"cron": "0 9 * * FUNDAY"}),
            "cron",
            "position 5 (day of week)",
        ),
        (json!({"cron": "0 9 * *"}), "cron", "5 fields"),
        (
            json!({"cron": "0 9 * * *", "time_zone": "Mars/Olympus"}),
            "time_zone",
            "Mars/Olympus",
        ),
        (json!({"at": "2020-01-01T10:00:00Z"}), "at", "in the past"),
        (json!({"at": "next tuesday"}), "at", "neither RFC 3339"),
        (
            json!({"cron": "0 9 * * *", "starts_at": "2027-06-01T00:00:00Z", "ends_at": "2027-05-01T00:00:00Z"}),
            "ends_at",
            "not after starts_at",
        ),
        (
            json!({"cron": "0 9 * * *", "max_runs": 0}),
            "max_runs",
            "at least 1",
        ),
        (
            json!({"at": "2027-06-01T10:00:00Z", "cron": "0 9 * * *"}),
            "cron",
            "not both",
        ),
        (json!({}), "cron", "give at"),
    ];
    for (body, field, message) in cases {
        let (status, answer) = put(&app, &format!("/api/v1/campaigns/{id}/schedule"), &body).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        assert_eq!(answer["code"], "validation_failed", "{answer}");
        let errors = answer["details"]["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["message"].as_str().unwrap().contains(message)),
            "{body} -> {answer}"
        );
    }
    let (status, _) = app.get(&format!("/api/v1/campaigns/{id}/schedule")).await;
    assert_eq!(status, 404, "a refused schedule was saved");
    let (status, answer) = app
        .post(
            "/api/v1/schedules/preview",
            &json!({"cron": "61 * * * *", "count": 0}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    let fields: Vec<&str> = answer["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["count", "cron"], "{answer}");
    // A viewer may not schedule.
    let response = app
        .client
        .put(app.url(&format!("/api/v1/campaigns/{id}/schedule")))
        .bearer_auth(&app.viewer_key)
        .json(&json!({"cron": "0 9 * * *"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

/// A weekly campaign: every slot runs once, with two schedulers at the same moment, after
/// a scheduler dies (another takes over when its lease runs out) and when a slot's run key
/// is already taken; each run sends every member one email.
async fn recurring_runs_fire_once_per_slot(backend: Backend) {
    let s = Sending::start(backend).await;
    let app = &s.app;
    members(app, "weekly", "w", 3).await;
    let id = email_campaign(app, "Weekly", "weekly").await;
    let saved = schedule(
        app,
        id,
        json!({"cron": "0 9 * * MON", "time_zone": "Europe/Berlin"}),
    )
    .await;
    assert_eq!(saved["state"], "active", "{saved}");
    assert_eq!(saved["kind"], "recurring", "{saved}");
    let first = utc(saved["next_fire_at"].as_str().unwrap());
    // Checked independently: the next Monday 09:00 on a Berlin wall clock, within a week.
    let local = first.with_timezone(&chrono_tz::Europe::Berlin);
    assert_eq!(local.weekday(), chrono::Weekday::Mon, "{saved}");
    assert_eq!((local.hour(), local.minute()), (9, 0), "{saved}");
    assert!(first > Utc::now() && first - Utc::now() <= chrono::Duration::days(7));
    let upcoming: Vec<DateTime<Utc>> = saved["upcoming"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| utc(t.as_str().unwrap()))
        .collect();
    assert_eq!(upcoming.len(), 5, "{saved}");
    assert_eq!(upcoming[0], first);

    let clock = ManualClock::at(first - chrono::Duration::minutes(1));
    let a = scheduler(app, "scheduler-a", &clock, Duration::from_secs(2));
    let b = scheduler(app, "scheduler-b", &clock, Duration::from_secs(2));
    // Nothing is due a minute before the slot.
    assert_eq!(a.tick().await.unwrap(), Fired::default());
    clock.set(first + chrono::Duration::seconds(1));
    let (fa, fb) = tokio::join!(a.tick(), b.tick());
    let (fa, fb) = (fa.unwrap(), fb.unwrap());
    assert_eq!(fa.launched + fb.launched, 1, "{fa:?} {fb:?}");
    s.drain(Channel::Email).await;
    assert_eq!(s.smtp.received().len(), 3);

    // Two more processes fire at the same slot without the lease (a restart, Redis gone):
    // the slot ran, so nothing does.
    let state = &app.state;
    let grace = Duration::from_secs(300);
    let (fc, fd) = tokio::join!(
        fire_due(
            &state.db,
            &state.queues,
            &state.settings.sending,
            clock.now(),
            grace,
            "c"
        ),
        fire_due(
            &state.db,
            &state.queues,
            &state.settings.sending,
            clock.now(),
            grace,
            "d"
        ),
    );
    assert_eq!(fc.unwrap().launched + fd.unwrap().launched, 0);
    // A scheduler that claimed the slot and died before moving the schedule on leaves
    // next_fire_at behind: the unique run key keeps the slot from running again.
    app.db
        .execute_unprepared(&format!(
            "UPDATE campaign_schedules SET next_fire_at = {} WHERE campaign_id = {id}",
            first.timestamp_millis()
        ))
        .await
        .unwrap();
    let again = fire_due(
        &state.db,
        &state.queues,
        &state.settings.sending,
        clock.now(),
        grace,
        "e",
    )
    .await
    .unwrap();
    assert_eq!((again.launched, again.taken), (0, 1), "{again:?}");

    // A week later the scheduler that held the lease is gone (it renewed the lease, then
    // died without releasing it): the other fires once the lease has run out.
    assert_eq!(a.tick().await.unwrap(), Fired::default());
    drop(a);
    let (second, third) = (upcoming[1], upcoming[2]);
    let local = second.with_timezone(&chrono_tz::Europe::Berlin);
    assert_eq!((local.weekday(), local.hour()), (chrono::Weekday::Mon, 9));
    assert_eq!(
        (local.date_naive() - first.with_timezone(&chrono_tz::Europe::Berlin).date_naive())
            .num_days(),
        7
    );
    clock.set(second + chrono::Duration::seconds(1));
    assert_eq!(
        b.tick().await.unwrap().launched,
        0,
        "b fired under a's lease"
    );
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(b.tick().await.unwrap().launched, 1);
    s.drain(Channel::Email).await;

    let received = s.smtp.received();
    assert_eq!(received.len(), 6);
    let mut per_recipient: BTreeMap<String, usize> = BTreeMap::new();
    for message in &received {
        for to in &message.rcpt_tos {
            *per_recipient.entry(to.clone()).or_default() += 1;
        }
    }
    assert_eq!(
        per_recipient,
        BTreeMap::from([
            ("w1@customer.example".to_owned(), 2),
            ("w2@customer.example".to_owned(), 2),
            ("w3@customer.example".to_owned(), 2),
        ])
    );
    let listed = runs(app, id).await;
    assert_eq!(listed.len(), 2, "{listed:#?}");
    assert!(listed.iter().all(|r| r["queued"] == 3), "{listed:#?}");
    assert_eq!(
        history(app, id).await,
        [
            (millis_form(first), "launched".to_owned()),
            (millis_form(second), "launched".to_owned()),
        ]
    );
    let now = view(app, id).await;
    assert_eq!(now["fired"], 2, "{now}");
    assert_eq!(now["next_fire_at"], json!(millis_form(third)));
}

/// Slots missed while no scheduler ran: `run_once` runs the latest once, `skip` none.
async fn missed_slots_follow_the_catch_up_policy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    members(&app, "daily", "d", 2).await;
    let run_once = email_campaign(&app, "Run once", "daily").await;
    let skip = email_campaign(&app, "Skip", "daily").await;
    let first = utc(schedule(
        &app,
        run_once,
        json!({"cron": "0 9 * * *", "catch_up": "run_once"}),
    )
    .await["next_fire_at"]
        .as_str()
        .unwrap());
    schedule(&app, skip, json!({"cron": "0 9 * * *", "catch_up": "skip"})).await;
    // Clarion was down for the first three slots; it starts an hour after the third.
    let clock = ManualClock::at(first + chrono::Duration::days(2) + chrono::Duration::hours(1));
    let fired = scheduler(&app, "late", &clock, Duration::from_secs(30))
        .tick()
        .await
        .unwrap();
    assert_eq!((fired.launched, fired.skipped), (1, 5), "{fired:?}");
    let day = |n: i64| millis_form(first + chrono::Duration::days(n));
    assert_eq!(
        history(&app, run_once).await,
        [
            (day(0), "skipped".to_owned()),
            (day(1), "skipped".to_owned()),
            (day(2), "launched".to_owned()),
        ]
    );
    assert_eq!(
        history(&app, skip).await,
        [
            (day(0), "skipped".to_owned()),
            (day(1), "skipped".to_owned()),
            (day(2), "skipped".to_owned()),
        ]
    );
    assert_eq!(runs(&app, run_once).await.len(), 1);
    assert_eq!(runs(&app, skip).await.len(), 0);
    for id in [run_once, skip] {
        assert_eq!(view(&app, id).await["next_fire_at"], json!(day(3)));
    }
}

/// Pausing a schedule or its campaign stops its firings; resuming starts them again.
async fn paused_campaigns_do_not_fire(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    members(&app, "paused", "p", 2).await;
    let id = email_campaign(&app, "Paused", "paused").await;
    let first = utc(schedule(
        &app,
        id,
        json!({"cron": "0 12 * * *", "time_zone": "America/New_York"}),
    )
    .await["next_fire_at"]
        .as_str()
        .unwrap());
    let (status, paused) = app
        .post(
            &format!("/api/v1/campaigns/{id}/schedule/pause"),
            &json!(null),
        )
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["next_fire_at"], Json::Null);
    let clock = ManualClock::at(first + chrono::Duration::seconds(1));
    let sched = scheduler(&app, "p", &clock, Duration::from_secs(30));
    assert_eq!(sched.tick().await.unwrap(), Fired::default());
    assert!(runs(&app, id).await.is_empty());

    let (status, resumed) = app
        .post(
            &format!("/api/v1/campaigns/{id}/schedule/resume"),
            &json!(null),
        )
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["state"], "active");
    assert_eq!(sched.tick().await.unwrap().launched, 1);
    // The campaign itself paused (its run is sending): the next slot is skipped, and says why.
    let (status, body) = app
        .post(
            &format!("/api/v1/campaigns/{id}/pause"),
            &json!({"reason": "holiday"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    clock.set(first + chrono::Duration::days(1) + chrono::Duration::seconds(1));
    let fired = sched.tick().await.unwrap();
    assert_eq!((fired.launched, fired.skipped), (0, 1), "{fired:?}");
    let latest = &view(&app, id).await["history"][0];
    assert_eq!(latest["status"], "skipped");
    assert_eq!(latest["reason"], "the campaign is paused");
    assert_eq!(runs(&app, id).await.len(), 1);
}

/// A one-off schedule can be changed until it fires, fires once, and then is done; a
/// cancelled one never fires.
async fn one_off_schedules_fire_once_and_can_be_cancelled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    members(&app, "once", "o", 2).await;
    let id = email_campaign(&app, "Once", "once").await;
    let other = email_campaign(&app, "Cancelled", "once").await;
    let year = Utc::now().year() + 1;
    // Tuesday 10:00 Berlin, given as a local time, is 09:00 UTC in winter.
    let local = format!("{year}-01-12T10:00");
    let expected = chrono_tz::Europe::Berlin
        .with_ymd_and_hms(year, 1, 12, 10, 0, 0)
        .unwrap()
        .with_timezone(&Utc);
    let saved = schedule(
        &app,
        id,
        json!({"at": format!("{year}-01-11T10:00"), "time_zone": "Europe/Berlin"}),
    )
    .await;
    assert_eq!(saved["kind"], "once");
    let changed = schedule(&app, id, json!({"at": local, "time_zone": "Europe/Berlin"})).await;
    assert_eq!(
        changed["next_fire_at"],
        json!(millis_form(expected)),
        "{changed}"
    );
    assert_eq!(
        changed["upcoming"],
        json!([expected.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)])
    );
    schedule(
        &app,
        other,
        json!({"at": local, "time_zone": "Europe/Berlin"}),
    )
    .await;
    let response = app
        .request(
            Method::DELETE,
            &format!("/api/v1/campaigns/{other}/schedule"),
        )
        .send()
        .await
        .unwrap();
    let (status, cancelled) = read(response).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");

    let clock = ManualClock::at(expected + chrono::Duration::seconds(5));
    let sched = scheduler(&app, "once", &clock, Duration::from_secs(30));
    assert_eq!(sched.tick().await.unwrap().launched, 1);
    clock.set(expected + chrono::Duration::days(30));
    assert_eq!(sched.tick().await.unwrap(), Fired::default());
    let done = view(&app, id).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["fired"], 1);
    assert_eq!(runs(&app, id).await.len(), 1);
    assert!(runs(&app, other).await.is_empty());
    let (status, answer) = put(
        &app,
        &format!("/api/v1/campaigns/{id}/schedule"),
        &json!({"at": format!("{}-01-12T10:00", year + 1), "time_zone": "Europe/Berlin"}),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
}

/// Daily jobs across daylight-saving changes, fired on the test clock: in Berlin a 02:30 job
/// on the day 02:30 does not exist runs when the clocks jump (03:00 CEST); in New York a
/// 01:30 job on the day 01:30 happens twice runs once, at the first. Expected instants are
/// worked out from the zones' offsets by hand.
async fn daily_jobs_fire_once_across_daylight_saving_changes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    members(&app, "dst", "t", 1).await;
    let berlin = email_campaign(&app, "Berlin 02:30", "dst").await;
    let new_york = email_campaign(&app, "New York 01:30", "dst").await;
    schedule(
        &app,
        berlin,
        json!({"cron": "30 2 * * *", "time_zone": "Europe/Berlin", "starts_at": "2027-03-27T00:00:00Z", "max_runs": 3}),
    )
    .await;
    schedule(
        &app,
        new_york,
        json!({"cron": "30 1 * * *", "time_zone": "America/New_York", "starts_at": "2027-11-06T00:00:00Z", "max_runs": 3}),
    )
    .await;
    let clock = ManualClock::at(utc("2027-03-27T00:00:00Z"));
    let sched = scheduler(&app, "dst", &clock, Duration::from_secs(30));
    // Tick every 30 minutes of the test clock through both changes.
    let mut launched = 0;
    let mut at = utc("2027-03-27T00:00:00Z");
    while at < utc("2027-03-30T00:00:00Z") {
        clock.set(at);
        launched += sched.tick().await.unwrap().launched;
        at += chrono::Duration::minutes(30);
    }
    let mut at = utc("2027-11-06T00:00:00Z");
    while at < utc("2027-11-09T12:00:00Z") {
        clock.set(at);
        launched += sched.tick().await.unwrap().launched;
        at += chrono::Duration::minutes(30);
    }
    assert_eq!(launched, 6);
    let launched = |slots: &[&str]| -> Vec<(String, String)> {
        slots
            .iter()
            .map(|s| (s.to_string(), "launched".to_owned()))
            .collect()
    };
    // 02:30 CET is 01:30Z; 28 March has no 02:30 (02:00 CET -> 03:00 CEST = 01:00Z); then
    // 02:30 CEST is 00:30Z.
    assert_eq!(
        history(&app, berlin).await,
        launched(&[
            "2027-03-27T01:30:00.000Z",
            "2027-03-28T01:00:00.000Z",
            "2027-03-29T00:30:00.000Z"
        ])
    );
    // 01:30 EDT is 05:30Z; on 7 November 01:30 comes twice (05:30Z EDT, 06:30Z EST): once;
    // then 01:30 EST is 06:30Z.
    assert_eq!(
        history(&app, new_york).await,
        launched(&[
            "2027-11-06T05:30:00.000Z",
            "2027-11-07T05:30:00.000Z",
            "2027-11-08T06:30:00.000Z"
        ])
    );
    assert_eq!(view(&app, berlin).await["state"], "completed");
}

on_both_backends!(
    the_preview_answers_as_the_issue_shows,
    bad_schedules_are_refused_naming_the_field,
    recurring_runs_fire_once_per_slot,
    missed_slots_follow_the_catch_up_policy,
    paused_campaigns_do_not_fire,
    one_off_schedules_fire_once_and_can_be_cancelled,
    daily_jobs_fire_once_across_daylight_saving_changes,
);
