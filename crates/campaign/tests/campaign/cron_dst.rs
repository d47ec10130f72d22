//! Fire times of daily cron jobs across daylight-saving changes, compared with an independent
//! computation: Python's zoneinfo over the system's tz database (`reference_cron.py`), with
//! the rule of cronie the schedule module documents.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use clarion_campaign::schedule::Cron;
use serde_json::{Value, json};

/// Zones with one-hour changes at 02:00 and 01:00 local, a 30-minute change (Lord Howe), a
/// 45-minute offset (Chatham), changes at midnight (Santiago) and none (Kolkata).
const ZONES: [&str; 6] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
    "Asia/Kolkata",
];
/// Set times around the changes, and two far from them.
const TIMES: [(u32, u32); 8] = [
    (0, 0),
    (0, 30),
    (1, 30),
    (2, 0),
    (2, 15),
    (2, 45),
    (3, 0),
    (23, 30),
];

fn reference(request: &Value) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/campaign/reference_cron.py"
    );
    // zoneinfo reads Debian's tzdata package.
    clarion_testkit::python_reference(script, request, "tzdata")
}

#[test]
fn daily_jobs_fire_as_an_independent_tz_computation_says_across_three_years() {
    let (from, to) = ("2026-01-01", "2029-01-01");
    let jobs: Vec<Value> = ZONES
        .iter()
        .flat_map(|zone| TIMES.iter().map(move |(h, m)| json!([zone, h, m])))
        .collect();
    let expected = reference(&json!({ "from": from, "to": to, "jobs": jobs }));
    let first_day: NaiveDate = from.parse().unwrap();
    let last_day: NaiveDate = to.parse().unwrap();
    let mut changed_days = 0;
    for zone_name in ZONES {
        let zone: Tz = zone_name.parse().unwrap();
        for (hour, minute) in TIMES {
            let cron = Cron::parse(&format!("{minute} {hour} * * *")).unwrap();
            // From two days before the first local day, keeping the fires of local days in
            // [from, to).
            let mut after: DateTime<Utc> = first_day
                .pred_opt()
                .unwrap()
                .pred_opt()
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc();
            let mut fires = Vec::new();
            while let Some(at) = cron.next_after(after, zone) {
                let day = at.with_timezone(&zone).date_naive();
                if day >= last_day {
                    break;
                }
                if day >= first_day {
                    fires.push(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
                }
                after = at;
            }
            let key = format!("{zone_name} {hour:02}:{minute:02}");
            let want: Vec<String> = serde_json::from_value(expected[&key].clone()).unwrap();
            assert_eq!(fires.len(), want.len(), "{key}: one fire per local day");
            for (got, want) in fires.iter().zip(&want) {
                assert_eq!(got, want, "{key}");
            }
            // The fires whose local time is not the set time: the days of a jump.
            changed_days += fires
                .iter()
                .filter(|at| {
                    let local = at
                        .parse::<DateTime<Utc>>()
                        .unwrap()
                        .with_timezone(&zone)
                        .format("%H:%M")
                        .to_string();
                    local != format!("{hour:02}:{minute:02}")
                })
                .count();
        }
    }
    // The comparison covers jobs that fell into gaps, not only ordinary days.
    assert!(changed_days > 0, "no job fell into a gap");
}
