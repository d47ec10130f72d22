//! Sending in each recipient's local time and quiet hours, through the API and the scheduler
//! on a test clock: the waves shown before launch, the run's waves, which messages a real SMTP
//! server has received at each moment of the clock, and bad input refused.
//!
//! Expected due times are computed here independently: a zone's 09:00 with chrono-tz, and a
//! quiet-hours delay by walking the clock forward a minute at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use clarion_campaign::schedule::fire::{Lease, ManualClock, Scheduler};
use clarion_model::Channel;
use clarion_testkit::{Backend, on_both_backends};
use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::app::{TestApp, read};
use crate::campaigns::{contacts, create, put, segment};
use crate::sending::Sending;

/// Five zones, each a hemisphere or continent apart, and how many contacts each has.
const ZONES: [(&str, usize); 5] = [
    ("Pacific/Auckland", 2),
    ("Asia/Tokyo", 1),
    ("Europe/Berlin", 2),
    ("America/New_York", 3),
    ("America/Los_Angeles", 1),
];

fn utc(value: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value)
        .unwrap()
        .with_timezone(&Utc)
}

fn scheduler(app: &TestApp, clock: &ManualClock) -> Scheduler {
    let state = &app.state;
    Scheduler::new(
        state.db.clone(),
        state.queues.clone(),
        state.settings.sending.clone(),
        state.settings.scheduling.clone(),
        Lease::new(
            state.redis.clone(),
            &state.settings.redis.key_prefix,
            "local-time-test",
            Duration::from_secs(30),
        ),
        Arc::new(clock.clone()),
    )
}

async fn email_campaign(app: &TestApp, name: &str, slug: &str) -> i64 {
    let body = json!({
        "name": name,
        "goal": { "event": "purchase", "window_hours": 168 },
        "holdout_percent": 0,
        "channels": ["email"],
        "targets": [{ "segment": slug, "variants": [{ "name": "A", "email": {
            "subject": format!("{name}"),
            "html": "<p>Hello</p>",
            "from": "Shop <news@shop.example>",
        }}]}],
    });
    create(app, &body).await["id"].as_i64().unwrap()
}

/// Contacts `<prefix>-<zone index>-<n>` in the given zones (`None`: no zone), in segment
/// `slug`; returns each address with its zone.
async fn people(
    app: &TestApp,
    slug: &str,
    prefix: &str,
    zones: &[(Option<&str>, usize)],
) -> BTreeMap<String, Option<String>> {
    let mut items = Vec::new();
    let mut ids = Vec::new();
    let mut by_address = BTreeMap::new();
    for (index, (zone, count)) in zones.iter().enumerate() {
        for n in 0..*count {
            let id = format!("{prefix}-{index}-{n}");
            let address = format!("{id}@customer.example");
            let mut item = json!({"external_id": id, "email": address});
            if let Some(zone) = zone {
                item["time_zone"] = json!(zone);
            }
            items.push(item);
            by_address.insert(address, zone.map(str::to_owned));
            ids.push(id);
        }
    }
    contacts(app, json!(items)).await;
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    segment(app, slug, &refs).await;
    by_address
}

fn received(s: &Sending) -> BTreeSet<String> {
    s.smtp
        .received()
        .into_iter()
        .flat_map(|m| m.rcpt_tos)
        .collect()
}

async fn get(app: &TestApp, path: &str) -> Json {
    let (status, body) = app.get(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// A date five to six weeks ahead, so a one-off schedule saved now is in the future.
fn send_date() -> NaiveDate {
    (Utc::now() + chrono::Duration::days(40)).date_naive()
}

/// 09:00 on `date` in `zone`, as chrono-tz reads it.
fn nine_in(zone: &str, date: NaiveDate) -> DateTime<Utc> {
    let tz: Tz = zone.parse().unwrap();
    tz.with_ymd_and_hms(date.year(), date.month(), date.day(), 9, 0, 0)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

/// A one-off "09:00 local" campaign to contacts in five zones (and one without a zone, who
/// gets the fallback Europe/Berlin): the waves are shown before launch, the run fires when
/// UTC+14 reaches 09:00, and each zone's messages reach the SMTP server exactly when the
/// clock passes 09:00 there, not a minute before.
async fn local_time_waves_arrive_at_nine_in_each_zone(backend: Backend) {
    let s = Sending::start(backend).await;
    let app = &s.app;
    let mut zones: Vec<(Option<&str>, usize)> = ZONES.iter().map(|(z, n)| (Some(*z), *n)).collect();
    zones.push((None, 1));
    let people = people(app, "everyone", "p", &zones).await;
    let id = email_campaign(app, "Morning", "everyone").await;
    let date = send_date();
    let (status, saved) = put(
        app,
        &format!("/api/v1/campaigns/{id}/schedule"),
        &json!({"at": format!("{date}T09:00"), "local_time": true, "time_zone": "Europe/Berlin"}),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["local_time"], true, "{saved}");
    // The run fires when the first zone on Earth (UTC+14) reaches 09:00: 19:00 UTC the day
    // before.
    let fire_at = utc(saved["next_fire_at"].as_str().unwrap());
    assert_eq!(
        fire_at,
        Utc.from_utc_datetime(&date.and_hms_opt(9, 0, 0).unwrap()) - chrono::Duration::hours(14)
    );

    // Before launch: one wave per zone, due at 09:00 there, sized by its contacts.
    let plan = get(app, &format!("/api/v1/campaigns/{id}/schedule/waves")).await;
    assert_eq!(plan["contacts"], 10, "{plan}");
    assert_eq!(plan["fallback_time_zone"], "Europe/Berlin", "{plan}");
    let mut expected: Vec<(String, DateTime<Utc>, u64)> = ZONES
        .iter()
        .map(|(zone, n)| {
            let n = *n as u64 + u64::from(*zone == "Europe/Berlin");
            ((*zone).to_owned(), nine_in(zone, date), n)
        })
        .collect();
    expected.sort_by_key(|(zone, due, _)| (*due, zone.clone()));
    let shown: Vec<(String, DateTime<Utc>, u64)> = plan["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["time_zone"].as_str().unwrap().to_owned(),
                utc(w["due_at"].as_str().unwrap()),
                w["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shown, expected, "{plan}");
    // The whole plan fits in 26 hours from the firing.
    let last = expected.last().unwrap().1;
    assert!(last - fire_at <= chrono::Duration::hours(26));

    // The firing launches the run; no zone has reached 09:00 yet, so nothing is enqueued.
    let clock = ManualClock::at(fire_at + chrono::Duration::seconds(1));
    let scheduler = scheduler(app, &clock);
    let fired = scheduler.tick().await.unwrap();
    let history = get(app, &format!("/api/v1/campaigns/{id}/schedule")).await["history"].clone();
    assert_eq!(
        (fired.launched, fired.released),
        (1, 0),
        "{fired:?} {history}"
    );
    s.drain(Channel::Email).await;
    assert!(received(&s).is_empty());
    let (_, runs) = app.get(&format!("/api/v1/campaigns/{id}/runs")).await;
    let run = runs["runs"][0]["id"].as_i64().unwrap();
    let waves = get(app, &format!("/api/v1/campaigns/{id}/runs/{run}/waves")).await;
    assert_eq!(waves["waves"].as_array().unwrap().len(), 5, "{waves}");
    assert!(
        waves["waves"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["released_at"].is_null()),
        "{waves}"
    );
    // Each delivery carries its zone's 09:00 as its due time.
    let (_, listed) = app
        .get(&format!("/api/v1/campaigns/{id}/deliveries?limit=100"))
        .await;
    for delivery in listed["deliveries"].as_array().unwrap() {
        let address = format!("{}@customer.example", delivery["contact"].as_str().unwrap());
        let zone = people[&address].as_deref().unwrap_or("Europe/Berlin");
        assert_eq!(
            utc(delivery["due_at"].as_str().unwrap()),
            nine_in(zone, date),
            "{delivery}"
        );
    }

    // At each zone's 09:00, exactly that zone's contacts (and the zone-less one with Berlin)
    // are received; a minute before, nobody new.
    let mut so_far = BTreeSet::new();
    for (zone, due, size) in &expected {
        clock.set(*due - chrono::Duration::minutes(1));
        scheduler.tick().await.unwrap();
        s.drain(Channel::Email).await;
        assert_eq!(received(&s), so_far, "before {zone}'s 09:00");
        clock.set(*due);
        let fired = scheduler.tick().await.unwrap();
        assert_eq!(fired.released, *size, "{zone}");
        s.drain(Channel::Email).await;
        let now = received(&s);
        let new: BTreeSet<String> = now.difference(&so_far).cloned().collect();
        let wanted: BTreeSet<String> = people
            .iter()
            .filter(|(_, z)| z.as_deref().unwrap_or("Europe/Berlin") == zone)
            .map(|(address, _)| address.clone())
            .collect();
        assert_eq!(new, wanted, "at {zone}'s 09:00");
        so_far = now;
    }
    assert_eq!(so_far.len(), 10);
    let waves = get(app, &format!("/api/v1/campaigns/{id}/runs/{run}/waves")).await;
    assert!(
        waves["waves"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["released_at"].is_string()),
        "{waves}"
    );
    let progress = s.progress(id).await;
    assert_eq!(progress["remaining"], 0, "{progress}");
}

/// The first moment at or after `at` whose local time in `zone` is outside 21:00-08:00,
/// found by walking forward a minute at a time.
fn after_quiet(zone: &str, at: DateTime<Utc>) -> DateTime<Utc> {
    let tz: Tz = zone.parse().unwrap();
    let mut t = at;
    loop {
        let hour = t.with_timezone(&tz).hour();
        if (8..21).contains(&hour) {
            return t;
        }
        t += chrono::Duration::minutes(1);
    }
}

/// Quiet hours 21:00-08:00 in each recipient's zone: a campaign fired at 12:00 UTC sends to
/// Berlin at once, holds Tokyo and New York until 08:00 there (the delay visible on the
/// deliveries and the waves), or, with `drop`, suppresses them with the reason.
async fn quiet_hours_delay_or_drop_deliveries(backend: Backend) {
    let s = Sending::start(backend).await;
    let app = &s.app;
    let zones = [
        (Some("Europe/Berlin"), 1),
        (Some("Asia/Tokyo"), 1),
        (Some("America/New_York"), 1),
    ];
    let people = people(app, "quiet", "q", &zones).await;
    let delayed = email_campaign(app, "Delayed", "quiet").await;
    let dropped = email_campaign(app, "Dropped", "quiet").await;
    for (id, action) in [(delayed, "delay"), (dropped, "drop")] {
        let (status, view) = put(
            app,
            &format!("/api/v1/campaigns/{id}/quiet-hours"),
            &json!({"start": "21:00", "end": "08:00", "action": action}),
        )
        .await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["action"], action, "{view}");
    }
    let date = send_date();
    let at = Utc.from_utc_datetime(&date.and_hms_opt(12, 0, 0).unwrap());
    for id in [delayed, dropped] {
        let (status, saved) = put(
            app,
            &format!("/api/v1/campaigns/{id}/schedule"),
            &json!({"at": at.to_rfc3339()}),
        )
        .await;
        assert_eq!(status, 200, "{saved}");
    }
    // Expected independently: who is inside 21:00-08:00 at 12:00 UTC, and until when.
    let due: BTreeMap<String, DateTime<Utc>> = people
        .iter()
        .map(|(address, zone)| (address.clone(), after_quiet(zone.as_deref().unwrap(), at)))
        .collect();
    let quiet: BTreeSet<String> = due
        .iter()
        .filter(|(_, d)| **d > at)
        .map(|(a, _)| a.clone())
        .collect();
    // Tokyo is at 21:00 and New York at 07:00 or 08:00 depending on daylight saving time.
    assert!(quiet.contains("q-1-0@customer.example"), "{due:?}");

    // Before launch, the plan shows the delayed and dropped waves.
    let plan = get(app, &format!("/api/v1/campaigns/{delayed}/schedule/waves")).await;
    let tokyo = plan["waves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["time_zone"] == "Asia/Tokyo")
        .unwrap()
        .clone();
    assert_eq!(tokyo["delayed"], true, "{plan}");
    assert_eq!(
        utc(tokyo["due_at"].as_str().unwrap()),
        due["q-1-0@customer.example"]
    );
    let plan = get(app, &format!("/api/v1/campaigns/{dropped}/schedule/waves")).await;
    let dropped_contacts: u64 = plan["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["dropped"].as_u64().unwrap())
        .sum();
    assert_eq!(dropped_contacts, quiet.len() as u64, "{plan}");

    let clock = ManualClock::at(at);
    let scheduler = scheduler(app, &clock);
    let fired = scheduler.tick().await.unwrap();
    assert_eq!(fired.launched, 2, "{fired:?}");
    s.drain(Channel::Email).await;
    // Those outside quiet hours got both campaigns at once; the others nothing yet.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for message in s.smtp.received() {
        for rcpt in message.rcpt_tos {
            *counts.entry(rcpt).or_default() += 1;
        }
    }
    let expected_now: BTreeMap<String, usize> = people
        .keys()
        .filter(|a| !quiet.contains(*a))
        .map(|a| (a.clone(), 2))
        .collect();
    assert_eq!(counts, expected_now);

    // The dropped campaign's quiet contacts are suppressed with the reason.
    let (_, listed) = app
        .get(&format!("/api/v1/campaigns/{dropped}/deliveries?limit=100"))
        .await;
    let suppressed: BTreeSet<String> = listed["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"] == "suppressed")
        .map(|d| {
            assert_eq!(d["reason"], "quiet hours", "{d}");
            format!("{}@customer.example", d["contact"].as_str().unwrap())
        })
        .collect();
    assert_eq!(suppressed, quiet);
    // The delayed campaign's deliveries carry their due time.
    let (_, listed) = app
        .get(&format!("/api/v1/campaigns/{delayed}/deliveries?limit=100"))
        .await;
    for d in listed["deliveries"].as_array().unwrap() {
        let address = format!("{}@customer.example", d["contact"].as_str().unwrap());
        assert_eq!(utc(d["due_at"].as_str().unwrap()), due[&address], "{d}");
    }

    // Each held contact arrives when its quiet hours end, not a minute before.
    let mut held: Vec<(DateTime<Utc>, String)> =
        quiet.iter().map(|a| (due[a], a.clone())).collect();
    held.sort();
    for (when, address) in held {
        clock.set(when - chrono::Duration::minutes(1));
        scheduler.tick().await.unwrap();
        s.drain(Channel::Email).await;
        assert!(!received(&s).contains(&address), "{address} before {when}");
        clock.set(when);
        scheduler.tick().await.unwrap();
        s.drain(Channel::Email).await;
        assert!(received(&s).contains(&address), "{address} at {when}");
    }
    let progress = s.progress(delayed).await;
    assert_eq!(progress["remaining"], 0, "{progress}");
    // The dropped campaign never sent to them.
    let total: usize = s.smtp.received().iter().map(|m| m.rcpt_tos.len()).sum();
    assert_eq!(total, 3 + (3 - quiet.len()));
}

async fn refused(app: &TestApp, path: &str, body: Json, field: &str) {
    let (status, answer) = put(app, path, &body).await;
    assert_eq!(status, 422, "{body}: {answer}");
    let fields: Vec<&str> = answer["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(fields.contains(&field), "{body}: {answer}");
}

/// Bad local times, zones and quiet hours covering the day are 422s naming the field, and
/// nothing is saved.
async fn bad_local_time_and_quiet_hours_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    people(&app, "bad", "b", &[(Some("Europe/Berlin"), 1)]).await;
    let id = email_campaign(&app, "Bad", "bad").await;
    let schedule = format!("/api/v1/campaigns/{id}/schedule");
    let date = send_date();
    refused(
        &app,
        &schedule,
        json!({"at": format!("{date}T25:00"), "local_time": true}),
        "at",
    )
    .await;
    refused(
        &app,
        &schedule,
        json!({"at": format!("{date}T09:00:00+01:00"), "local_time": true}),
        "at",
    )
    .await;
    refused(
        &app,
        &schedule,
        json!({"at": format!("{date}T09:00"), "local_time": true, "time_zone": "Mars/Olympus"}),
        "time_zone",
    )
    .await;
    refused(
        &app,
        &schedule,
        json!({"at": "2020-01-01T09:00", "local_time": true}),
        "at",
    )
    .await;
    let quiet = format!("/api/v1/campaigns/{id}/quiet-hours");
    refused(
        &app,
        &quiet,
        json!({"start": "08:00", "end": "08:00"}),
        "end",
    )
    .await;
    refused(&app, &quiet, json!({"start": "21:00", "end": "8h"}), "end").await;
    refused(
        &app,
        &quiet,
        json!({"start": "24:00", "end": "08:00"}),
        "start",
    )
    .await;
    refused(
        &app,
        &quiet,
        json!({"start": "21:00", "end": "08:00", "time_zone": "Mars/Olympus"}),
        "time_zone",
    )
    .await;
    let (status, _) = app.get(&schedule).await;
    assert_eq!(status, 404);
    let (status, _) = app.get(&quiet).await;
    assert_eq!(status, 404);
    // A viewer can read but not set them.
    let response = app
        .client
        .request(Method::PUT, app.url(&quiet))
        .bearer_auth(&app.viewer_key)
        .json(&json!({"start": "21:00", "end": "08:00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(read(response).await.0, 403);
    // Valid ones are saved, read back and removed.
    let (status, view) = put(
        &app,
        &quiet,
        &json!({"start": "21:30", "end": "07:45", "weekends": true}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (view["start"].as_str(), view["end"].as_str()),
        (Some("21:30"), Some("07:45"))
    );
    assert_eq!(get(&app, &quiet).await["weekends"], true);
    let response = app.request(Method::DELETE, &quiet).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let (status, _) = app.get(&quiet).await;
    assert_eq!(status, 404);
}

on_both_backends!(
    local_time_waves_arrive_at_nine_in_each_zone,
    quiet_hours_delay_or_drop_deliveries,
    bad_local_time_and_quiet_hours_are_refused,
);
