//! Segment conversion against a computation in plain Rust over generated memberships and
//! events: current members and members at the period's start from the history, events exactly
//! on the period's edges, contacts in two segments, an empty segment, breakdowns and the
//! comparison of two segments.

use std::collections::BTreeMap;
use std::sync::Arc;

use clarion_contacts::{Ingest, events::IngestOptions};
use clarion_kpi::{
    KpiSettings,
    rollup::Rollups,
    segment::{self, Basis, Breakdown, Conversion, ConversionQuery},
    settings,
};
use clarion_model::{ContactUpsert, DEFAULT_WORKSPACE, EventInput, Timestamp};
use clarion_testkit::{Backend, TestDb, on_both_backends};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;

const DAY: i64 = 86_400_000;

fn from() -> i64 {
    Timestamp::parse("2026-05-01T00:00:00Z").unwrap().millis()
}

fn to() -> i64 {
    from() + 30 * DAY
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

/// A stay of a contact in a segment.
struct Stay {
    segment: &'static str,
    contact: usize,
    entered: i64,
    exited: Option<i64>,
}

struct Purchase {
    contact: usize,
    kind: &'static str,
    at: i64,
    amount: Option<f64>,
}

struct Data {
    db: DatabaseConnection,
    ingest: Ingest,
    /// Contact ids by the contact's number.
    ids: Vec<i64>,
    stays: Vec<Stay>,
    purchases: Vec<Purchase>,
    tiers: Vec<Option<&'static str>>,
    _test_db: TestDb,
}

async fn exec(db: &DatabaseConnection, sql: String) {
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
}

async fn data(backend: Backend) -> Data {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let ingest = Ingest::new(db.clone()).with_listener(Arc::new(Rollups::new(db.clone())));
    let mut rng = Rng(42);
    let n = 160;
    let tiers: Vec<Option<&str>> = (0..n)
        .map(|i| [Some("gold"), Some("silver"), None][i % 3])
        .collect();
    let items: Vec<(usize, ContactUpsert)> = (0..n)
        .map(|i| {
            let mut contact = json!({"external_id": format!("p{i:03}")});
            if let Some(tier) = tiers[i] {
                contact["attributes"] = json!({"tier": tier});
            }
            (i, serde_json::from_value(contact).unwrap())
        })
        .collect();
    ingest
        .contacts(DEFAULT_WORKSPACE, items, true)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT id FROM contacts WHERE external_id = 'p{i:03}'"),
            ))
            .await
            .unwrap()
            .unwrap();
        ids.push(row.try_get::<i64>("", "id").unwrap());
    }
    for slug in ["a", "b", "empty"] {
        exec(&db, format!(
            "INSERT INTO segments (workspace_id, slug, name, description, category, kind, rule, created_at, updated_at) \
             VALUES (1, '{slug}', '{slug}', '', 'custom', 'static', NULL, 0, 0)"
        ))
        .await;
    }
    let mut stays = Vec::new();
    for contact in 0..n {
        for segment in ["a", "b"] {
            match rng.below(6) {
                // Member since before the period, still.
                0 | 1 => stays.push(Stay {
                    segment,
                    contact,
                    entered: from() - 5 * DAY,
                    exited: None,
                }),
                // Entered during the period: a current member, not one at its start.
                2 => stays.push(Stay {
                    segment,
                    contact,
                    entered: from() + 3 * DAY,
                    exited: None,
                }),
                // Left during the period: a member at its start, not now.
                3 => stays.push(Stay {
                    segment,
                    contact,
                    entered: from() - 9 * DAY,
                    exited: Some(from() + 2 * DAY),
                }),
                // Entered exactly at the start: a member at it.
                4 => stays.push(Stay {
                    segment,
                    contact,
                    entered: from(),
                    exited: None,
                }),
                _ => {}
            }
        }
    }
    for stay in &stays {
        let exited = stay.exited.map_or("NULL".to_owned(), |e| e.to_string());
        exec(
            &db,
            format!(
                "INSERT INTO segment_memberships (segment_id, contact_id, entered_at, exited_at) \
             SELECT id, {}, {}, {exited} FROM segments WHERE slug = '{}'",
                ids[stay.contact], stay.entered, stay.segment
            ),
        )
        .await;
    }
    let mut purchases = Vec::new();
    for contact in 0..n {
        for _ in 0..rng.below(3) {
            let at =
                from() - 10 * DAY + (rng.below(50) as i64) * DAY + rng.below(DAY as u64) as i64;
            let amount = (rng.below(10) > 0).then(|| rng.below(50_000) as f64 / 100.0);
            purchases.push(Purchase {
                contact,
                kind: "purchase",
                at,
                amount,
            });
        }
        match rng.below(10) {
            0 => purchases.push(Purchase {
                contact,
                kind: "purchase",
                at: from(),
                amount: Some(5.0),
            }),
            1 => purchases.push(Purchase {
                contact,
                kind: "purchase",
                at: to(),
                amount: Some(6.0),
            }),
            2 => purchases.push(Purchase {
                contact,
                kind: "refund",
                at: from() + DAY,
                amount: Some(7.0),
            }),
            _ => {}
        }
    }
    let mut data = Data {
        db,
        ingest,
        ids,
        stays,
        purchases: Vec::new(),
        tiers,
        _test_db: test_db,
    };
    add_purchases(&mut data, purchases).await;
    data
}

/// Ingests `purchases` through the API's path (the roll-up listener included) and adds them
/// to what the test expects.
async fn add_purchases(data: &mut Data, purchases: Vec<Purchase>) {
    let events: Vec<(usize, EventInput)> = purchases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let input = json!({"external_id": format!("p{:03}", p.contact), "kind": p.kind,
                "occurred_at": Timestamp::from_millis(p.at).to_rfc3339(), "amount": p.amount});
            (i, serde_json::from_value(input).unwrap())
        })
        .collect();
    let options = IngestOptions {
        create_unknown_contacts: false,
        max_future_millis: 0,
        atomic: true,
    };
    let report = data
        .ingest
        .events(DEFAULT_WORKSPACE, events, options)
        .await
        .unwrap();
    assert_eq!(report.accepted, purchases.len());
    data.purchases.extend(purchases);
}

/// The goal roll-up holds, per contact, kind and UTC day, exactly the count and amount sum
/// of the events the test ingested.
async fn assert_rollup_current(data: &Data, what: &str) {
    let mut want: BTreeMap<(i64, String, i64), (i64, f64)> = BTreeMap::new();
    for p in &data.purchases {
        let cell = want
            .entry((data.ids[p.contact], p.kind.to_owned(), p.at.div_euclid(DAY)))
            .or_default();
        cell.0 += 1;
        cell.1 += p.amount.unwrap_or(0.0);
    }
    let rows = data
        .db
        .query_all_raw(Statement::from_string(
            data.db.get_database_backend(),
            "SELECT contact_id, kind, day, orders, revenue FROM kpi_goal_days ORDER BY contact_id, kind, day",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), want.len(), "{what}: roll-up rows");
    for (row, (key, (orders, revenue))) in rows.iter().zip(&want) {
        let got: (i64, String, i64) = (
            row.try_get("", "contact_id").unwrap(),
            row.try_get("", "kind").unwrap(),
            row.try_get("", "day").unwrap(),
        );
        assert_eq!(&got, key, "{what}");
        assert_eq!(
            row.try_get::<i64>("", "orders").unwrap(),
            *orders,
            "{what}: {key:?}"
        );
        let amount: f64 = row.try_get("", "revenue").unwrap();
        assert!(
            close(amount, *revenue),
            "{what}: {key:?} {amount} vs {revenue}"
        );
    }
}

/// Conversion of the `a` segment's current members over `[start, end)` from the test's rows.
fn expected_a(data: &Data, start: i64, end: i64) -> Sums {
    let n = data.tiers.len();
    expected_in(
        data,
        (0..n).filter(|&c| is_member(data, "a", c, Basis::Current)),
        start,
        end,
    )
}

fn is_member(data: &Data, segment: &str, contact: usize, basis: Basis) -> bool {
    data.stays.iter().any(|s| {
        s.segment == segment
            && s.contact == contact
            && match basis {
                Basis::Current => s.exited.is_none(),
                Basis::PeriodStart => s.entered <= from() && s.exited.is_none_or(|e| e > from()),
            }
    })
}

/// members, converters, orders, revenue, revenue squared.
type Sums = (u64, u64, u64, f64, f64);

fn expected(data: &Data, members: impl Iterator<Item = usize>) -> Sums {
    expected_in(data, members, from(), to())
}

/// The figures of `members` over `[start, end)`.
fn expected_in(data: &Data, members: impl Iterator<Item = usize>, start: i64, end: i64) -> Sums {
    let mut out: Sums = (0, 0, 0, 0.0, 0.0);
    for contact in members {
        let mine: Vec<&Purchase> = data
            .purchases
            .iter()
            .filter(|p| p.contact == contact && p.kind == "purchase" && p.at >= start && p.at < end)
            .collect();
        let revenue: f64 = mine.iter().map(|p| p.amount.unwrap_or(0.0)).sum();
        out.0 += 1;
        out.1 += u64::from(!mine.is_empty());
        out.2 += mine.len() as u64;
        out.3 += revenue;
        out.4 += revenue * revenue;
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

/// The Wilson score interval at 95%, written out here.
fn wilson(x: u64, n: u64) -> (f64, f64) {
    let z: f64 = 1.959_963_984_540_054;
    let (x, n) = (x as f64, n as f64);
    let p = x / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn assert_conversion(what: &str, got: &Conversion, want: Sums) {
    assert_eq!(
        (got.members, got.converters, got.orders),
        (want.0, want.1, want.2),
        "{what}"
    );
    assert!(
        close(got.revenue, want.3),
        "{what}: revenue {} vs {}",
        got.revenue,
        want.3
    );
    if want.0 == 0 {
        assert_eq!(got.conversion_rate, None, "{what}: no members, no rate");
        assert_eq!(got.conversion_interval, None);
        assert_eq!(got.revenue_per_member, None);
    } else {
        assert!(
            close(got.conversion_rate.unwrap(), want.1 as f64 / want.0 as f64),
            "{what}"
        );
        let (low, high) = wilson(want.1, want.0);
        let interval = got.conversion_interval.unwrap();
        assert!(
            close(interval.low, low) && close(interval.high, high),
            "{what}: {interval:?} vs {low}, {high}"
        );
        assert!(
            close(got.revenue_per_member.unwrap(), want.3 / want.0 as f64),
            "{what}"
        );
    }
    match got.average_order_value {
        Some(aov) => assert!(close(aov, want.3 / want.2 as f64), "{what}"),
        None => assert_eq!(want.2, 0, "{what}: orders without an average"),
    }
}

fn query(basis: Basis) -> ConversionQuery {
    ConversionQuery {
        event: "purchase".into(),
        from: Timestamp::from_millis(from()),
        to: Timestamp::from_millis(to()),
        basis,
    }
}

async fn segment_conversion_matches_the_rows(backend: Backend) {
    let data = data(backend).await;
    let n = data.tiers.len();
    for basis in [Basis::Current, Basis::PeriodStart] {
        let q = query(basis);
        for slug in ["a", "b", "empty"] {
            let report = segment::conversion(&data.db, DEFAULT_WORKSPACE, slug, &q, None)
                .await
                .unwrap();
            let want = expected(&data, (0..n).filter(|&c| is_member(&data, slug, c, basis)));
            assert_conversion(&format!("{slug} {basis:?}"), &report.figures, want);
            assert!(report.breakdown.is_none());
        }
        // By membership of the other segment: contacts in both are `in`.
        let by = Breakdown::parse("segment:b").unwrap();
        let report = segment::conversion(&data.db, DEFAULT_WORKSPACE, "a", &q, Some(&by))
            .await
            .unwrap();
        let groups: BTreeMap<Option<String>, &Conversion> = report
            .breakdown
            .as_ref()
            .unwrap()
            .iter()
            .map(|g| (g.key.clone(), &g.figures))
            .collect();
        for (key, inside) in [("in", true), ("out", false)] {
            let want = expected(
                &data,
                (0..n).filter(|&c| {
                    is_member(&data, "a", c, basis)
                        && is_member(&data, "b", c, Basis::Current) == inside
                }),
            );
            assert_conversion(
                &format!("a by b {key}"),
                groups[&Some(key.to_owned())],
                want,
            );
        }
        // By attribute: members without the attribute are under null.
        let by = Breakdown::parse("attr:tier").unwrap();
        let report = segment::conversion(&data.db, DEFAULT_WORKSPACE, "a", &q, Some(&by))
            .await
            .unwrap();
        let groups: BTreeMap<Option<String>, &Conversion> = report
            .breakdown
            .as_ref()
            .unwrap()
            .iter()
            .map(|g| (g.key.clone(), &g.figures))
            .collect();
        for tier in [Some("gold"), Some("silver"), None] {
            let want = expected(
                &data,
                (0..n).filter(|&c| is_member(&data, "a", c, basis) && data.tiers[c] == tier),
            );
            assert_conversion(
                &format!("a by tier {tier:?}"),
                groups[&tier.map(str::to_owned)],
                want,
            );
        }
    }
    // An empty period converts nobody, and still counts the members.
    let empty = ConversionQuery {
        from: Timestamp::from_millis(to() + 400 * DAY),
        to: Timestamp::from_millis(to() + 401 * DAY),
        ..query(Basis::Current)
    };
    let report = segment::conversion(&data.db, DEFAULT_WORKSPACE, "a", &empty, None)
        .await
        .unwrap();
    let members = (0..n)
        .filter(|&c| is_member(&data, "a", c, Basis::Current))
        .count() as u64;
    assert_eq!(
        (report.figures.members, report.figures.converters),
        (members, 0)
    );
    assert_eq!(report.figures.conversion_rate, Some(0.0));
    assert_eq!(report.figures.average_order_value, None);
    assert_rollup_current(&data, "after the reports").await;
}

/// Periods that start and end mid-day (read partly from the raw events), events exactly on
/// those edges, and events that arrive late, dated inside a period already reported on.
async fn partial_days_and_late_events_count_exactly(backend: Backend) {
    let mut data = data(backend).await;
    let hour = 3_600_000;
    let (start, end) = (from() + 7 * hour, to() - 3 * hour);
    let period = ConversionQuery {
        from: Timestamp::from_millis(start),
        to: Timestamp::from_millis(end),
        ..query(Basis::Current)
    };
    let on_edges = |contact: usize| {
        [start - 1, start, start + 1, end - 1, end, end + 1]
            .into_iter()
            .enumerate()
            .map(move |(i, at)| Purchase {
                contact,
                kind: "purchase",
                at,
                amount: Some(10.0 + i as f64),
            })
    };
    add_purchases(&mut data, (0..4).flat_map(on_edges).collect()).await;
    let report = segment::conversion(&data.db, DEFAULT_WORKSPACE, "a", &period, None)
        .await
        .unwrap();
    assert_conversion(
        "mid-day edges",
        &report.figures,
        expected_a(&data, start, end),
    );

    // Late: dated on days already in the roll-up, whole and partial, and before the period.
    let late: Vec<Purchase> = (0..data.tiers.len())
        .step_by(3)
        .flat_map(|contact| {
            [
                start + 12 * hour,
                from() + 11 * DAY + 5,
                end - hour,
                start - DAY,
            ]
            .into_iter()
            .map(move |at| Purchase {
                contact,
                kind: "purchase",
                at,
                amount: Some(3.25),
            })
        })
        .collect();
    add_purchases(&mut data, late).await;
    let report = segment::conversion(&data.db, DEFAULT_WORKSPACE, "a", &period, None)
        .await
        .unwrap();
    assert_conversion(
        "after late events",
        &report.figures,
        expected_a(&data, start, end),
    );

    // Within one day, and across one midnight: the raw events alone.
    for (s, e) in [(start, start + 2 * hour), (start, start + 20 * hour)] {
        let short = ConversionQuery {
            from: Timestamp::from_millis(s),
            to: Timestamp::from_millis(e),
            ..query(Basis::Current)
        };
        let report = segment::conversion(&data.db, DEFAULT_WORKSPACE, "a", &short, None)
            .await
            .unwrap();
        assert_conversion("short period", &report.figures, expected_a(&data, s, e));
    }
    assert_rollup_current(&data, "after late events").await;
}

async fn two_segments_are_compared(backend: Backend) {
    let data = data(backend).await;
    let n = data.tiers.len();
    let q = query(Basis::Current);
    let a = expected(
        &data,
        (0..n).filter(|&c| is_member(&data, "a", c, Basis::Current)),
    );
    let b = expected(
        &data,
        (0..n).filter(|&c| is_member(&data, "b", c, Basis::Current)),
    );
    // Below the minimum sample there is no verdict.
    let large = KpiSettings {
        min_sample: a.0.max(b.0) + 1,
        ..KpiSettings::default()
    };
    settings::put(&data.db, DEFAULT_WORKSPACE, large)
        .await
        .unwrap();
    let report = segment::compare(&data.db, DEFAULT_WORKSPACE, "a", "b", &q)
        .await
        .unwrap();
    assert_conversion("first", &report.first.figures, a);
    assert_conversion("second", &report.second.figures, b);
    assert!(report.conversion.is_none() && report.revenue_per_member.is_none());

    let small = KpiSettings {
        min_sample: 10,
        ..KpiSettings::default()
    };
    settings::put(&data.db, DEFAULT_WORKSPACE, small)
        .await
        .unwrap();
    let report = segment::compare(&data.db, DEFAULT_WORKSPACE, "a", "b", &q)
        .await
        .unwrap();
    let conversion = report.conversion.unwrap();
    let (pa, pb) = (a.1 as f64 / a.0 as f64, b.1 as f64 / b.0 as f64);
    assert!(close(conversion.difference, pb - pa));
    // The unpooled standard error of two proportions, written out.
    let se = (pa * (1.0 - pa) / a.0 as f64 + pb * (1.0 - pb) / b.0 as f64).sqrt();
    assert!(
        close(conversion.standard_error, se),
        "{} vs {se}",
        conversion.standard_error
    );
    let revenue = report.revenue_per_member.unwrap();
    assert!(close(
        revenue.difference,
        b.3 / b.0 as f64 - a.3 / a.0 as f64
    ));
    assert_eq!(revenue.significant, revenue.p_value < 0.05);

    // An empty segment against another: no members, no comparison.
    let report = segment::compare(&data.db, DEFAULT_WORKSPACE, "empty", "a", &q)
        .await
        .unwrap();
    assert_eq!(report.first.figures.members, 0);
    assert!(report.conversion.is_none());
    let csv = segment::comparison_csv(&report).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert_rollup_current(&data, "after the comparisons").await;
}

async fn bad_queries_are_named(backend: Backend) {
    let data = data(backend).await;
    let backwards = ConversionQuery {
        from: Timestamp::from_millis(to()),
        to: Timestamp::from_millis(from()),
        ..query(Basis::Current)
    };
    let error = segment::conversion(&data.db, DEFAULT_WORKSPACE, "a", &backwards, None)
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "to: must lie after from");
    let error = segment::conversion(
        &data.db,
        DEFAULT_WORKSPACE,
        "nope",
        &query(Basis::Current),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(error.to_string(), "segment \"nope\" not found");
    assert_eq!(
        Breakdown::parse("trait:shoe_size").unwrap_err().to_string(),
        "by: \"shoe_size\" is not a trait (rfm_segment, rfm_recency, rfm_frequency, rfm_monetary)"
    );
    assert!(Breakdown::parse("colour").is_err());
}

on_both_backends!(
    segment_conversion_matches_the_rows,
    two_segments_are_compared,
    partial_days_and_late_events_count_exactly,
    bad_queries_are_named,
);
