//! Churn, active contacts and retention against a brute-force reading of the definitions over
//! generated events: activity exactly at period starts, churn moments exactly on boundaries,
//! contacts that come back, cancels, an empty segment, months in a time zone with daylight
//! saving time.

use chrono::TimeZone as _;
use clarion_contacts::{Ingest, events::IngestOptions};
use clarion_kpi::{
    ChurnDefinition, KpiSettings,
    churn::{self, Period},
    rollup::Rollups,
    settings, stats, trend,
};
use clarion_model::{ContactUpsert, DEFAULT_WORKSPACE, EventInput, Timestamp};
use clarion_testkit::{Backend, TestDb, on_both_backends};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;
use std::sync::Arc;

const DAY: i64 = 86_400_000;
const ZONE: chrono_tz::Tz = chrono_tz::Europe::Berlin;

fn berlin(y: i32, m: u32, d: u32) -> i64 {
    ZONE.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .unwrap()
        .timestamp_millis()
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

struct Data {
    db: DatabaseConnection,
    /// Per contact: (time, kind), and whether it is in segment `some`.
    events: Vec<Vec<(i64, &'static str)>>,
    members: Vec<bool>,
    /// Events that arrive later, through ingestion and its roll-up listener: two batches.
    late: Vec<Vec<(usize, i64, &'static str)>>,
    ingest: Ingest,
    _test_db: TestDb,
}

/// The amount a purchase at `at` carries: none for one in seven, else up to 99.99.
fn amount(at: i64) -> Option<f64> {
    (at.rem_euclid(7) != 0).then(|| (at.rem_euclid(10_000) as f64) / 100.0)
}

/// An event as the API receives it; purchases carry [`amount`].
fn input(i: usize, at: i64, kind: &str) -> EventInput {
    let amount = if kind == "purchase" { amount(at) } else { None };
    serde_json::from_value(json!({"external_id": format!("k{i:03}"), "kind": kind, "occurred_at": Timestamp::from_millis(at).to_rfc3339(), "amount": amount})).unwrap()
}

const OPTIONS: IngestOptions = IngestOptions {
    create_unknown_contacts: false,
    max_future_millis: 0,
    atomic: true,
};

impl Data {
    /// Ingests the next batch of late events and records them as the contacts' events.
    async fn arrive(&mut self) {
        let batch = self.late.remove(0);
        let items: Vec<(usize, EventInput)> = batch
            .iter()
            .enumerate()
            .map(|(index, (i, at, kind))| (index, input(*i, *at, kind)))
            .collect();
        self.ingest
            .events(DEFAULT_WORKSPACE, items, OPTIONS)
            .await
            .unwrap();
        for (i, at, kind) in batch {
            self.events[i].push((at, kind));
        }
    }
}

/// Month starts in Berlin from January 2025 (13 of them: 12 months).
fn months() -> Vec<i64> {
    (0..13)
        .map(|i| berlin(2025 + (i / 12), (i % 12) as u32 + 1, 1))
        .collect()
}

async fn data(backend: Backend) -> Data {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let ingest = Ingest::new(db.clone()).with_listener(Arc::new(Rollups::new(db.clone())));
    // The first definition's settings are in place before anything arrives, so its activity
    // roll-up is the one ingestion keeps.
    settings::put(
        &db,
        DEFAULT_WORKSPACE,
        settings_for(ChurnDefinition::Inactivity),
    )
    .await
    .unwrap();
    let mut rng = Rng(5);
    let n = 120;
    let bounds = months();
    let mut events = Vec::new();
    for _ in 0..n {
        let mut mine = Vec::new();
        for _ in 0..rng.below(6) {
            let kind = [
                "purchase",
                "purchase",
                "subscription_started",
                "subscription_cancelled",
                "page_view",
            ][rng.below(5) as usize];
            let at = match rng.below(8) {
                // Exactly at a month start, or 30 days before one (churn exactly on it).
                0 => bounds[rng.below(12) as usize],
                1 => bounds[1 + rng.below(12) as usize] - 30 * DAY,
                _ => {
                    berlin(2024, 12, 1) + rng.below(400) as i64 * DAY + rng.below(DAY as u64) as i64
                }
            };
            mine.push((at, kind));
        }
        events.push(mine);
    }
    // Late arrivals: dated among the others (some on month starts, some exactly 30 days
    // before one), ingested after them.
    let mut late = vec![Vec::new(), Vec::new()];
    for i in 0..n {
        for _ in 0..rng.below(3) {
            let kind = ["purchase", "subscription_started", "subscription_cancelled"]
                [rng.below(3) as usize];
            let at = match rng.below(4) {
                0 => bounds[rng.below(12) as usize],
                1 => bounds[1 + rng.below(12) as usize] - 30 * DAY,
                _ => {
                    berlin(2024, 12, 1) + rng.below(400) as i64 * DAY + rng.below(DAY as u64) as i64
                }
            };
            late[rng.below(2) as usize].push((i, at, kind));
        }
    }
    let members: Vec<bool> = (0..n).map(|i| i % 3 != 0).collect();
    let contacts: Vec<(usize, ContactUpsert)> = (0..n)
        .map(|i| {
            (
                i,
                serde_json::from_value(json!({"external_id": format!("k{i:03}")})).unwrap(),
            )
        })
        .collect();
    ingest
        .contacts(DEFAULT_WORKSPACE, contacts, true)
        .await
        .unwrap();
    let items: Vec<(usize, EventInput)> = events
        .iter()
        .enumerate()
        .flat_map(|(i, mine)| mine.iter().map(move |(at, kind)| (i, *at, *kind)))
        .enumerate()
        .map(|(index, (i, at, kind))| (index, input(i, at, kind)))
        .collect();
    ingest
        .events(DEFAULT_WORKSPACE, items, OPTIONS)
        .await
        .unwrap();
    for slug in ["some", "none"] {
        db.execute_raw(Statement::from_string(db.get_database_backend(), format!(
            "INSERT INTO segments (workspace_id, slug, name, description, category, kind, rule, created_at, updated_at) \
             VALUES (1, '{slug}', '{slug}', '', 'custom', 'static', NULL, 0, 0)"
        )))
        .await
        .unwrap();
    }
    for (i, member) in members.iter().enumerate() {
        if *member {
            db.execute_raw(Statement::from_string(db.get_database_backend(), format!(
                "INSERT INTO segment_memberships (segment_id, contact_id, entered_at, exited_at) \
                 SELECT s.id, c.id, 0, NULL FROM segments s, contacts c WHERE s.slug = 'some' AND c.external_id = 'k{i:03}'"
            )))
            .await
            .unwrap();
        }
    }
    Data {
        db,
        events,
        members,
        late,
        ingest,
        _test_db: test_db,
    }
}

fn settings_for(definition: ChurnDefinition) -> KpiSettings {
    KpiSettings {
        churn: definition,
        inactivity_days: 30,
        time_zone: "Europe/Berlin".into(),
        ..KpiSettings::default()
    }
}

/// The activity roll-up holds exactly the spells the raw events give.
async fn assert_rollup_current(db: &DatabaseConnection, what: &str) {
    let (stored, computed) = churn::spells_against_events(db, DEFAULT_WORKSPACE)
        .await
        .unwrap();
    assert!(!computed.is_empty(), "{what}");
    assert_eq!(stored, computed, "{what}");
}

/// Whether a contact is active at `x`, read straight from the definition.
fn active(events: &[(i64, &str)], definition: ChurnDefinition, x: i64) -> bool {
    match definition {
        ChurnDefinition::Inactivity => events
            .iter()
            .any(|(t, k)| *k == "purchase" && *t <= x && x < t + 30 * DAY),
        ChurnDefinition::Cancel => {
            let mut seen: Vec<&(i64, &str)> = events.iter().filter(|(t, _)| *t <= x).collect();
            seen.sort_by_key(|(t, k)| (*t, *k == "subscription_cancelled"));
            let mut on = false;
            for (_, kind) in seen {
                match *kind {
                    "subscription_started" | "purchase" => on = true,
                    "subscription_cancelled" => on = false,
                    _ => {}
                }
            }
            on
        }
    }
}

/// The moments a contact may stop being active: 30 days after each activity, or its cancels.
fn ends(events: &[(i64, &str)], definition: ChurnDefinition) -> Vec<i64> {
    match definition {
        ChurnDefinition::Inactivity => events
            .iter()
            .filter(|(_, k)| *k == "purchase")
            .map(|(t, _)| t + 30 * DAY)
            .collect(),
        ChurnDefinition::Cancel => events
            .iter()
            .filter(|(_, k)| *k == "subscription_cancelled")
            .map(|(t, _)| *t)
            .collect(),
    }
}

/// The moments a contact may become active.
fn starts(events: &[(i64, &str)], definition: ChurnDefinition) -> Vec<i64> {
    events
        .iter()
        .filter(|(_, k)| {
            *k == "purchase"
                || (definition == ChurnDefinition::Cancel && *k == "subscription_started")
        })
        .map(|(t, _)| *t)
        .collect()
}

async fn churn_and_retention_follow_the_definitions(backend: Backend) {
    let mut data = data(backend).await;
    let bounds = months();
    for definition in [ChurnDefinition::Inactivity, ChurnDefinition::Cancel] {
        // Inactivity: the roll-up ingestion kept; cancel: the one rebuilt when the setting
        // changed. Then late events arrive through ingestion.
        assert_rollup_current(&data.db, "before the late events").await;
        settings::put(&data.db, DEFAULT_WORKSPACE, settings_for(definition))
            .await
            .unwrap();
        assert_rollup_current(&data.db, "after the settings").await;
        data.arrive().await;
        assert_rollup_current(&data.db, "after late events").await;
        for segment in [None, Some("some")] {
            let report = churn::churn(
                &data.db,
                DEFAULT_WORKSPACE,
                segment,
                Period::Month,
                Timestamp::from_millis(bounds[0] + 5 * DAY),
                Timestamp::from_millis(bounds[12]),
            )
            .await
            .unwrap();
            assert_eq!(report.periods.len(), 12, "{definition:?}");
            // The data exercises what is counted.
            assert!(
                report
                    .periods
                    .iter()
                    .any(|p| p.churned > 0 && p.became_active > 0),
                "{report:?}"
            );
            for (p, period) in report.periods.iter().enumerate() {
                let (s, e) = (bounds[p], bounds[p + 1]);
                assert_eq!(
                    (period.start.millis(), period.end.millis()),
                    (s, e),
                    "month {p} in Berlin"
                );
                let (mut at_start, mut churned, mut became) = (0, 0, 0);
                for (i, events) in data.events.iter().enumerate() {
                    if segment.is_some() && !data.members[i] {
                        continue;
                    }
                    if active(events, definition, s) {
                        at_start += 1;
                        if ends(events, definition)
                            .iter()
                            .any(|&c| s <= c && c < e && !active(events, definition, c))
                        {
                            churned += 1;
                        }
                    }
                    let wakes = starts(events, definition).iter().any(|&a| {
                        s <= a
                            && a < e
                            && active(events, definition, a)
                            && !active(events, definition, a - 1)
                    });
                    became += u64::from(wakes);
                }
                let what = format!("{definition:?} {segment:?} month {p}");
                assert_eq!(
                    (period.active_at_start, period.churned, period.became_active),
                    (at_start, churned, became),
                    "{what}"
                );
                assert_eq!(
                    period.churn_rate,
                    (at_start > 0).then(|| churned as f64 / at_start as f64),
                    "{what}"
                );
            }
        }
        // Retention: cohorts of first activity, active in months after.
        let report = churn::retention(
            &data.db,
            DEFAULT_WORKSPACE,
            None,
            Timestamp::from_millis(bounds[0]),
            12,
        )
        .await
        .unwrap();
        assert_eq!(report.cohorts.len(), 12);
        for (c, cohort) in report.cohorts.iter().enumerate() {
            let mut size = 0;
            let mut retained = vec![0u64; 12 - c];
            for events in &data.events {
                let first = starts(events, definition)
                    .into_iter()
                    .filter(|&a| active(events, definition, a))
                    .min();
                let Some(first) = first else { continue };
                if !(bounds[c] <= first && first < bounds[c + 1]) {
                    continue;
                }
                size += 1;
                for (k, slot) in retained.iter_mut().enumerate() {
                    let (s, e) = (bounds[c + k], bounds[c + k + 1]);
                    let during = active(events, definition, s)
                        || starts(events, definition)
                            .iter()
                            .any(|&a| s <= a && a < e && active(events, definition, a));
                    *slot += u64::from(during);
                }
            }
            assert_eq!(
                (cohort.size, &cohort.retained),
                (size, &retained),
                "{definition:?} cohort {}",
                cohort.month
            );
            assert_eq!(cohort.shares.len(), 12 - c);
        }
        assert_eq!(report.cohorts[2].month, "2025-03");
        assert!(
            report
                .cohorts
                .iter()
                .any(|c| c.size > 0 && c.retained.iter().skip(1).any(|&r| r > 0 && r < c.size))
        );
    }
    // An empty segment: nobody active, every rate null.
    let report = churn::churn(
        &data.db,
        DEFAULT_WORKSPACE,
        Some("none"),
        Period::Week,
        Timestamp::from_millis(bounds[0]),
        Timestamp::from_millis(bounds[2]),
    )
    .await
    .unwrap();
    assert!(
        report
            .periods
            .iter()
            .all(|p| p.active_at_start == 0 && p.churn_rate.is_none())
    );
    // Weeks begin on Monday: 2025-01-01 was a Wednesday.
    assert_eq!(report.periods[0].start.millis(), berlin(2024, 12, 30));
    let csv = churn::churn_csv(&report).unwrap();
    assert_eq!(csv.lines().count(), report.periods.len() + 1);
}

async fn bad_periods_are_named(backend: Backend) {
    let data = data(backend).await;
    let t = Timestamp::from_millis(berlin(2025, 1, 1));
    let error = churn::churn(&data.db, DEFAULT_WORKSPACE, None, Period::Day, t, t)
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "to: must lie after from");
    let far = Timestamp::from_millis(berlin(2030, 1, 1));
    let error = churn::churn(&data.db, DEFAULT_WORKSPACE, None, Period::Day, t, far)
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "to: at most 1000 periods per report");
    let error = churn::retention(&data.db, DEFAULT_WORKSPACE, None, t, 0)
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "months: must be 1 to 120, not 0");
    let next = Timestamp::from_millis(t.millis() + DAY);
    let error = churn::churn(
        &data.db,
        DEFAULT_WORKSPACE,
        Some("nope"),
        Period::Day,
        t,
        next,
    )
    .await
    .unwrap_err();
    assert_eq!(error.to_string(), "segment \"nope\" not found");
}

/// The overview's monthly trend: churn figures as the churn report gives them, buyers,
/// orders and revenue against the raw events (months in Berlin, so every month edge is a
/// partial UTC day; purchases exactly on month starts; late events; purchases without an
/// amount), and the current month cut at "now".
async fn the_trend_counts_buyers_and_revenue_per_month(backend: Backend) {
    let mut data = data(backend).await;
    data.arrive().await;
    data.arrive().await;
    let bounds = months();
    let now = bounds[11] + 10 * DAY + 12_345;
    let trend = trend::monthly(&data.db, DEFAULT_WORKSPACE, 12, Timestamp::from_millis(now))
        .await
        .unwrap();
    assert_eq!(trend.event, "purchase");
    assert_eq!(trend.time_zone, "Europe/Berlin");
    assert_eq!(trend.months.len(), 12, "{trend:?}");
    let report = churn::churn(
        &data.db,
        DEFAULT_WORKSPACE,
        None,
        Period::Month,
        Timestamp::from_millis(bounds[0]),
        Timestamp::from_millis(now),
    )
    .await
    .unwrap();
    for (p, month) in trend.months.iter().enumerate() {
        let (s, e) = (bounds[p], bounds[p + 1].min(now));
        assert_eq!(
            (month.start.millis(), month.end.millis()),
            (s, e),
            "month {p}"
        );
        assert_eq!(month.month, format!("2025-{:02}", p + 1));
        let period = &report.periods[p];
        assert_eq!(
            (
                month.active_at_start,
                month.churned,
                month.churn_rate,
                month.became_active
            ),
            (
                period.active_at_start,
                period.churned,
                period.churn_rate,
                period.became_active
            ),
            "month {p}"
        );
        assert_eq!(month.active, period.active_at_start + period.became_active);
        let (mut buyers, mut orders, mut revenue) = (0u64, 0u64, 0.0f64);
        for events in &data.events {
            let bought: Vec<i64> = events
                .iter()
                .filter(|(t, k)| *k == "purchase" && s <= *t && *t < e)
                .map(|(t, _)| *t)
                .collect();
            buyers += u64::from(!bought.is_empty());
            orders += bought.len() as u64;
            revenue += bought.iter().filter_map(|&t| amount(t)).sum::<f64>();
        }
        assert_eq!((month.buyers, month.orders), (buyers, orders), "month {p}");
        assert!(
            (month.revenue - revenue).abs() < 1e-6,
            "month {p}: {} vs {revenue}",
            month.revenue
        );
        assert_eq!(month.conversion_rate, stats::rate(buyers, month.active));
    }
    // The data exercises what is counted.
    assert!(
        trend
            .months
            .iter()
            .any(|m| m.buyers > 0 && m.revenue > 0.0 && m.churned > 0),
        "{trend:?}"
    );
    let csv = trend::trend_csv(&trend).unwrap();
    assert_eq!(csv.lines().count(), 13);
    assert!(csv.starts_with("month,start,end,active_at_start,became_active,active,churned,"));
    // One month is the current one; at the very start of a month, the one that just ended.
    let one = trend::monthly(&data.db, DEFAULT_WORKSPACE, 1, Timestamp::from_millis(now))
        .await
        .unwrap();
    assert_eq!(one.months, trend.months[11..]);
    let at_start = trend::monthly(
        &data.db,
        DEFAULT_WORKSPACE,
        1,
        Timestamp::from_millis(bounds[11]),
    )
    .await
    .unwrap();
    assert_eq!(at_start.months.len(), 1);
    assert_eq!(at_start.months[0].month, "2025-11");
    let error = trend::monthly(&data.db, DEFAULT_WORKSPACE, 0, Timestamp::from_millis(now))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "months: must be between 1 and 120");
}

on_both_backends!(
    churn_and_retention_follow_the_definitions,
    bad_periods_are_named,
    the_trend_counts_buyers_and_revenue_per_month
);
