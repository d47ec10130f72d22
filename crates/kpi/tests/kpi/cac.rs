//! Marketing spend and the CAC report against a computation in plain Rust over the generated
//! rows, on SQLite and PostgreSQL.
//!
//! Three campaigns (two with the purchase goal and different windows, one with another goal),
//! one of them aimed at two target segments and one sent on two channels; deliveries of every
//! status; contacts who bought before the period (not new), whose first purchase falls after
//! every window (new, not attributed), exactly on a window's end (not attributed) or exactly at
//! the sending (attributed); spend in two currencies, partly outside the period (prorated),
//! for campaigns and channels, and spend of a campaign that acquired nobody (CAC null). The
//! report must equal the expected figures under last touch and first touch, by channel,
//! campaign and segment.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use clarion_contacts::Ingest;
use clarion_kpi::{
    Attribution, KpiError, KpiSettings,
    cac::{self, CacQuery, CacReport, Grouping},
    settings,
    spend::{self, SpendFilter, SpendInput},
};
use clarion_model::{DEFAULT_WORKSPACE, Timestamp};
use clarion_testkit::{Backend, TestDb, on_both_backends};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;

use crate::{add_contacts, exec, id_of};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn t0() -> i64 {
    Timestamp::parse("2026-06-01T00:00:00Z").unwrap().millis()
}

/// The report's period: [t0 - 2 days, t0 + 6 days).
fn period() -> (i64, i64) {
    (t0() - 2 * DAY, t0() + 6 * DAY)
}

/// xorshift64*: the same data on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

#[derive(Debug, Clone)]
struct Campaign {
    id: i64,
    name: &'static str,
    goal: &'static str,
    window: i64,
}

#[derive(Debug, Clone)]
struct Delivery {
    id: i64,
    campaign: i64,
    contact: i64,
    channel: &'static str,
    segment: i64,
    status: &'static str,
    sent_at: Option<i64>,
}

#[derive(Debug, Clone)]
struct Purchase {
    contact: i64,
    kind: &'static str,
    at: i64,
}

#[derive(Debug, Clone)]
struct SpendRow {
    campaign: Option<i64>,
    channel: Option<&'static str>,
    /// Minor units.
    minor: i64,
    currency: &'static str,
    from: i64,
    to: i64,
}

/// A campaign to generate: name, goal, window hours, start offset hours, channels, target
/// segments.
type Spec<'a> = (
    &'static str,
    &'static str,
    i64,
    i64,
    &'a [&'static str],
    &'a [i64],
);

struct World {
    db: DatabaseConnection,
    campaigns: Vec<Campaign>,
    segments: BTreeMap<i64, &'static str>,
    deliveries: Vec<Delivery>,
    purchases: Vec<Purchase>,
    spends: Vec<SpendRow>,
    /// Contacts built for one edge case each, by name.
    named: HashMap<&'static str, i64>,
    _test_db: TestDb,
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get("", "n")
    .unwrap()
}

fn input(value: serde_json::Value) -> SpendInput {
    serde_json::from_value(value).unwrap()
}

async fn world(backend: Backend) -> World {
    let mut rng = Rng(0x00C0_FFEE_1234_5678);
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let ingest = Ingest::new(db.clone());
    add_contacts(&ingest, (0..300).map(|i| format!("c{i:03}"))).await;
    let mut contact_ids = Vec::new();
    for row in db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id FROM contacts ORDER BY id".to_owned(),
        ))
        .await
        .unwrap()
    {
        contact_ids.push(row.try_get::<i64>("", "id").unwrap());
    }

    let mut segments = BTreeMap::new();
    for slug in ["alpha", "beta"] {
        exec(&db, &format!(
            "INSERT INTO segments (workspace_id, slug, name, description, category, kind, rule, created_at, updated_at) \
             VALUES (1, '{slug}', '{slug}', '', 'custom', 'static', NULL, 0, 0)"
        ))
        .await;
        let id = id_of(
            &db,
            &format!("SELECT id FROM segments WHERE slug = '{slug}'"),
        )
        .await;
        segments.insert(id, slug);
    }
    let segment_ids: Vec<i64> = segments.keys().copied().collect();

    // (name, goal, window hours, start offset hours, channels, target segments)
    let specs: [Spec<'_>; 3] = [
        (
            "spring",
            "purchase",
            48,
            0,
            &["email", "webhook"],
            &[segment_ids[0]],
        ),
        ("summer", "purchase", 24, 30, &["email"], &segment_ids),
        ("signup", "signup", 72, 10, &["email"], &[segment_ids[1]]),
    ];
    let mut campaigns = Vec::new();
    let mut deliveries = Vec::new();
    for (index, (name, goal, hours, offset, channels, targets)) in specs.into_iter().enumerate() {
        exec(&db, &format!(
            "INSERT INTO campaigns (workspace_id, name, status, goal_event, goal_window_hours, holdout_percent, channels, created_at, updated_at) \
             VALUES (1, '{name}', 'sent', '{goal}', {hours}, 10, '{}', 0, 0)", channels.join(",")
        ))
        .await;
        let id = id_of(
            &db,
            &format!("SELECT id FROM campaigns WHERE name = '{name}'"),
        )
        .await;
        exec(&db, &format!(
            "INSERT INTO campaign_variants (campaign_id, position, name, weight, version, created_at, updated_at) \
             VALUES ({id}, 0, 'A', 1, 1, 0, 0)"
        ))
        .await;
        let started = t0() + offset * HOUR;
        exec(&db, &format!(
            "INSERT INTO campaign_runs (workspace_id, campaign_id, status, audience, queued, suppressed, holdout, started_at, updated_at) \
             VALUES (1, {id}, 'finished', 0, 0, 0, 0, {started}, {started})"
        ))
        .await;
        campaigns.push(Campaign {
            id,
            name,
            goal,
            window: hours * HOUR,
        });
        // The first 40 contacts are kept for the named cases below.
        let share = [0.6, 0.5, 0.4][index];
        for &contact in &contact_ids[40..] {
            if !rng.chance(share) {
                continue;
            }
            // Two thirds of summer's audience in alpha, a third in beta.
            let segment = if targets.len() == 2 && rng.below(3) == 2 {
                targets[1]
            } else {
                targets[0]
            };
            let holdout = rng.chance(0.1);
            for &channel in channels {
                let status = if holdout {
                    "holdout"
                } else {
                    [
                        "sent",
                        "sent",
                        "sent",
                        "sent",
                        "failed",
                        "suppressed",
                        "queued",
                    ][rng.below(7) as usize]
                };
                let sent_at =
                    (status == "sent").then(|| started + rng.below(6 * HOUR as u64) as i64);
                deliveries.push(Delivery {
                    id: 0,
                    campaign: id,
                    contact,
                    channel,
                    segment,
                    status,
                    sent_at,
                });
            }
        }
    }

    // Named edge cases, each its own contact, all sent spring's email only.
    let spring = campaigns[0].clone();
    let spring_sent = t0() + 2 * HOUR;
    let mut named = HashMap::new();
    let mut purchases = Vec::new();
    let cases: [(&'static str, Vec<i64>); 6] = [
        // Bought before the period: never new, whatever it buys after the delivery.
        ("bought_before", vec![period().0 - DAY, spring_sent + HOUR]),
        // First purchase in the period but after the window: new, not attributed.
        ("after_window", vec![spring_sent + spring.window + HOUR]),
        // Exactly at the window's end (excluded): new, not attributed.
        ("window_end", vec![spring_sent + spring.window]),
        // Exactly at the sending (included): attributed.
        ("at_sending", vec![spring_sent]),
        // First purchase after the period: not new in it.
        ("after_period", vec![period().1 + HOUR]),
        // First purchase exactly at the period's start: new, but before the delivery.
        ("period_start", vec![period().0, spring_sent + HOUR]),
    ];
    for (i, (name, times)) in cases.into_iter().enumerate() {
        let contact = contact_ids[i];
        named.insert(name, contact);
        deliveries.push(Delivery {
            id: 0,
            campaign: spring.id,
            contact,
            channel: "email",
            segment: segment_ids[0],
            status: "sent",
            sent_at: Some(spring_sent),
        });
        for at in times {
            purchases.push(Purchase {
                contact,
                kind: "purchase",
                at,
            });
        }
    }

    // Purchases of everyone else: some bought long before, most have a first purchase spread
    // over and around the period; a few sign up (another goal).
    for &contact in &contact_ids[40..] {
        if rng.chance(0.15) {
            purchases.push(Purchase {
                contact,
                kind: "purchase",
                at: period().0 - (1 + rng.below(30) as i64) * DAY,
            });
        }
        if rng.chance(0.7) {
            let first = t0() - 3 * DAY + rng.below(10 * DAY as u64) as i64;
            purchases.push(Purchase {
                contact,
                kind: "purchase",
                at: first,
            });
            if rng.chance(0.3) {
                purchases.push(Purchase {
                    contact,
                    kind: "purchase",
                    at: first + rng.below(3 * DAY as u64) as i64,
                });
            }
        }
        if rng.chance(0.2) {
            purchases.push(Purchase {
                contact,
                kind: "signup",
                at: t0() + rng.below(3 * DAY as u64) as i64,
            });
        }
    }

    for d in &mut deliveries {
        let sent_at = d.sent_at.map_or("NULL".to_owned(), |s| s.to_string());
        let run = id_of(
            &db,
            &format!(
                "SELECT id FROM campaign_runs WHERE campaign_id = {}",
                d.campaign
            ),
        )
        .await;
        let variant = id_of(
            &db,
            &format!(
                "SELECT id FROM campaign_variants WHERE campaign_id = {}",
                d.campaign
            ),
        )
        .await;
        exec(&db, &format!(
            "INSERT INTO deliveries (workspace_id, run_id, campaign_id, contact_id, channel, variant_id, segment_id, status, reason, attempts, created_at, updated_at, sent_at) \
             VALUES (1, {run}, {}, {}, '{}', {variant}, {}, '{}', NULL, 1, 0, 0, {sent_at})",
            d.campaign, d.contact, d.channel, d.segment, d.status
        ))
        .await;
        d.id = id_of(&db, &format!(
            "SELECT id FROM deliveries WHERE run_id = {run} AND contact_id = {} AND channel = '{}'",
            d.contact, d.channel
        ))
        .await;
    }
    for p in &purchases {
        exec(&db, &format!(
            "INSERT INTO events (workspace_id, contact_id, kind, occurred_at, amount, currency, properties, idempotency_key, received_at) \
             VALUES (1, {}, '{}', {}, 10.0, 'EUR', '{{}}', NULL, 0)",
            p.contact, p.kind, p.at
        ))
        .await;
    }

    // Spend, through the domain functions.
    let (from, to) = period();
    let at = |millis: i64| Timestamp::from_millis(millis).to_rfc3339();
    let spend_specs = vec![
        // Half inside the period.
        (
            json!({"amount": "1000.00", "currency": "EUR", "from": at(from - 8 * DAY), "to": at(to), "campaign_id": campaigns[0].id}),
            SpendRow {
                campaign: Some(campaigns[0].id),
                channel: None,
                minor: 100_000,
                currency: "EUR",
                from: from - 8 * DAY,
                to,
            },
        ),
        (
            json!({"amount": 500.5, "currency": "EUR", "from": at(from), "to": at(from + 3 * DAY), "campaign_id": campaigns[1].id, "label": "summer design"}),
            SpendRow {
                campaign: Some(campaigns[1].id),
                channel: None,
                minor: 50_050,
                currency: "EUR",
                from,
                to: from + 3 * DAY,
            },
        ),
        // A campaign with another goal acquires nobody: CAC null.
        (
            json!({"amount": "200", "currency": "EUR", "from": at(from + DAY), "to": at(from + 2 * DAY), "campaign_id": campaigns[2].id}),
            SpendRow {
                campaign: Some(campaigns[2].id),
                channel: None,
                minor: 20_000,
                currency: "EUR",
                from: from + DAY,
                to: from + 2 * DAY,
            },
        ),
        (
            json!({"amount": "300.00", "currency": "EUR", "from": at(from), "to": at(to + 4 * DAY), "channel": "email"}),
            SpendRow {
                campaign: None,
                channel: Some("email"),
                minor: 30_000,
                currency: "EUR",
                from,
                to: to + 4 * DAY,
            },
        ),
        (
            json!({"amount": "99.99", "currency": "EUR", "from": at(from + DAY), "to": at(from + 5 * DAY), "channel": "webhook"}),
            SpendRow {
                campaign: None,
                channel: Some("webhook"),
                minor: 9_999,
                currency: "EUR",
                from: from + DAY,
                to: from + 5 * DAY,
            },
        ),
        // Outside the period: left out.
        (
            json!({"amount": "777", "currency": "EUR", "from": at(from - 5 * DAY), "to": at(from), "channel": "email"}),
            SpendRow {
                campaign: None,
                channel: Some("email"),
                minor: 77_700,
                currency: "EUR",
                from: from - 5 * DAY,
                to: from,
            },
        ),
        // Another currency.
        (
            json!({"amount": "50", "currency": "USD", "from": at(from), "to": at(to), "channel": "email"}),
            SpendRow {
                campaign: None,
                channel: Some("email"),
                minor: 5_000,
                currency: "USD",
                from,
                to,
            },
        ),
    ];
    let mut spends = Vec::new();
    for (body, row) in spend_specs {
        let stored = spend::create(&db, DEFAULT_WORKSPACE, input(body))
            .await
            .unwrap();
        assert_eq!(stored.currency, row.currency);
        spends.push(row);
    }

    World {
        db,
        campaigns,
        segments,
        deliveries,
        purchases,
        spends,
        named,
        _test_db: test_db,
    }
}

/// What the report should say, computed from the rows above.
fn expected(world: &World, by: Grouping, currency: &str, attribution: Attribution) -> Expected {
    let (from, to) = period();
    // First purchase ever of each contact.
    let mut first: BTreeMap<i64, i64> = BTreeMap::new();
    for p in world.purchases.iter().filter(|p| p.kind == "purchase") {
        let entry = first.entry(p.contact).or_insert(p.at);
        *entry = (*entry).min(p.at);
    }
    let new: BTreeMap<i64, i64> = first
        .into_iter()
        .filter(|(_, at)| from <= *at && *at < to)
        .collect();
    let goal_of: HashMap<i64, &Campaign> = world.campaigns.iter().map(|c| (c.id, c)).collect();
    let mut attributed: BTreeMap<i64, &Delivery> = BTreeMap::new();
    for (&contact, &at) in &new {
        let covering = world.deliveries.iter().filter(|d| {
            let c = goal_of[&d.campaign];
            d.contact == contact
                && d.status == "sent"
                && c.goal == "purchase"
                && d.sent_at.is_some_and(|s| s <= at && at < s + c.window)
        });
        let chosen = match attribution {
            Attribution::LastTouch => covering.max_by_key(|d| (d.sent_at, d.id)),
            Attribution::FirstTouch => covering.min_by_key(|d| (d.sent_at, d.id)),
        };
        if let Some(d) = chosen {
            attributed.insert(contact, d);
        }
    }
    let key_of = |d: &Delivery| match by {
        Grouping::Channel => Some(d.channel.to_owned()),
        Grouping::Campaign => Some(goal_of[&d.campaign].name.to_owned()),
        Grouping::Segment => Some(world.segments[&d.segment].to_owned()),
    };
    let mut groups: BTreeMap<Option<String>, (f64, u64)> = BTreeMap::new();
    for d in attributed.values() {
        groups.entry(key_of(d)).or_default().1 += 1;
    }
    // Recipients of each campaign per channel or segment.
    let recipients = |campaign: i64| {
        let mut sets: BTreeMap<Option<String>, BTreeSet<i64>> = BTreeMap::new();
        for d in world
            .deliveries
            .iter()
            .filter(|d| d.campaign == campaign && d.status == "sent")
        {
            sets.entry(key_of(d)).or_default().insert(d.contact);
        }
        sets
    };
    let mut total = 0.0;
    for s in world.spends.iter().filter(|s| s.currency == currency) {
        let overlap = s.to.min(to) - s.from.max(from);
        if overlap <= 0 {
            continue;
        }
        let amount = s.minor as f64 / 100.0 * overlap as f64 / (s.to - s.from) as f64;
        total += amount;
        match (by, s.campaign, s.channel) {
            (Grouping::Campaign, Some(c), _) => {
                groups
                    .entry(Some(goal_of[&c].name.to_owned()))
                    .or_default()
                    .0 += amount;
            }
            (Grouping::Channel, None, Some(channel)) => {
                groups.entry(Some(channel.to_owned())).or_default().0 += amount;
            }
            (Grouping::Channel | Grouping::Segment, Some(c), _) => {
                let sets = recipients(c);
                let all: usize = sets.values().map(BTreeSet::len).sum();
                if all == 0 {
                    groups.entry(None).or_default().0 += amount;
                }
                for (key, set) in sets {
                    groups.entry(key).or_default().0 += amount * set.len() as f64 / all as f64;
                }
            }
            _ => groups.entry(None).or_default().0 += amount,
        }
    }
    Expected {
        spend: total,
        new_customers: new.len() as u64,
        attributed: attributed.len() as u64,
        groups,
        new,
        attributed_contacts: attributed.keys().copied().collect(),
    }
}

struct Expected {
    spend: f64,
    new_customers: u64,
    attributed: u64,
    groups: BTreeMap<Option<String>, (f64, u64)>,
    new: BTreeMap<i64, i64>,
    attributed_contacts: BTreeSet<i64>,
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_matches(report: &CacReport, expected: &Expected, context: &str) {
    assert!(
        close(report.spend, expected.spend),
        "{context}: spend {} vs {}",
        report.spend,
        expected.spend
    );
    assert_eq!(report.new_customers, expected.new_customers, "{context}");
    assert_eq!(
        report.attributed_new_customers, expected.attributed,
        "{context}"
    );
    let blended =
        (expected.new_customers > 0).then(|| expected.spend / expected.new_customers as f64);
    assert_eq!(report.blended_cac.is_some(), blended.is_some(), "{context}");
    let got: BTreeMap<Option<String>, (f64, u64, Option<f64>)> = report
        .groups
        .iter()
        .map(|g| (g.name.clone(), (g.spend, g.new_customers, g.cac)))
        .collect();
    let keys: BTreeSet<_> = got.keys().chain(expected.groups.keys()).cloned().collect();
    for key in keys {
        let (spend, n, cac) = got.get(&key).copied().unwrap_or((0.0, 0, None));
        let (want_spend, want_n) = expected.groups.get(&key).copied().unwrap_or((0.0, 0));
        assert!(
            close(spend, want_spend),
            "{context} {key:?}: spend {spend} vs {want_spend}"
        );
        assert_eq!(n, want_n, "{context} {key:?}");
        match cac {
            None => assert_eq!(
                want_n, 0,
                "{context} {key:?}: CAC null only without new customers"
            ),
            Some(cac) => {
                assert!(want_n > 0, "{context} {key:?}");
                assert!(cac.is_finite());
                assert!(
                    close(cac, want_spend / want_n as f64),
                    "{context} {key:?}: {cac}"
                );
            }
        }
    }
    let sum: u64 = report.groups.iter().map(|g| g.new_customers).sum();
    assert_eq!(sum, report.attributed_new_customers, "{context}");
}

async fn the_report_matches_the_rows(backend: Backend) {
    let world = world(backend).await;
    let (from, to) = period();

    // The named edge cases, as the independent computation sees them.
    let check = expected(&world, Grouping::Channel, "EUR", Attribution::LastTouch);
    let named = |name: &str| world.named[name];
    assert!(!check.new.contains_key(&named("bought_before")));
    assert!(!check.new.contains_key(&named("after_period")));
    for name in ["after_window", "window_end", "at_sending", "period_start"] {
        assert!(check.new.contains_key(&named(name)), "{name}");
    }
    assert!(!check.attributed_contacts.contains(&named("after_window")));
    assert!(!check.attributed_contacts.contains(&named("window_end")));
    assert!(!check.attributed_contacts.contains(&named("period_start")));
    assert!(check.attributed_contacts.contains(&named("at_sending")));
    assert!(
        check.attributed > 10 && check.new_customers > check.attributed,
        "{} {}",
        check.attributed,
        check.new_customers
    );

    for attribution in [Attribution::LastTouch, Attribution::FirstTouch] {
        settings::put(
            &world.db,
            DEFAULT_WORKSPACE,
            KpiSettings {
                attribution,
                ..KpiSettings::default()
            },
        )
        .await
        .unwrap();
        for by in [Grouping::Channel, Grouping::Campaign, Grouping::Segment] {
            let query = CacQuery {
                from: Timestamp::from_millis(from),
                to: Timestamp::from_millis(to),
                by,
                currency: Some("EUR".to_owned()),
                event: "purchase".to_owned(),
            };
            let report = cac::report(&world.db, DEFAULT_WORKSPACE, &query)
                .await
                .unwrap();
            let context = format!("{attribution:?} by {by:?}");
            assert_eq!(report.currency.as_deref(), Some("EUR"));
            assert_eq!(report.attribution, attribution);
            assert_matches(&report, &expected(&world, by, "EUR", attribution), &context);
            if by == Grouping::Campaign {
                // The signup campaign spent and acquired nobody.
                let signup = report
                    .groups
                    .iter()
                    .find(|g| g.name.as_deref() == Some("signup"))
                    .unwrap();
                assert!(signup.spend > 0.0 && signup.new_customers == 0 && signup.cac.is_none());
            }
            if by == Grouping::Segment {
                // Summer's spend is split over alpha and beta by its recipients in each.
                let summer = world.campaigns[1].id;
                let mut per: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
                for d in world
                    .deliveries
                    .iter()
                    .filter(|d| d.campaign == summer && d.status == "sent")
                {
                    per.entry(d.segment).or_default().insert(d.contact);
                }
                assert_eq!(per.len(), 2, "summer reached both its segments");
            }
            let csv = cac::to_csv(&report).unwrap();
            let lines: Vec<&str> = csv.lines().collect();
            assert_eq!(lines[0], "scope,id,name,currency,spend,new_customers,cac");
            assert_eq!(lines.len(), 3 + report.groups.len(), "{csv}");
            assert!(lines[1].starts_with("total,,,EUR,"), "{csv}");
        }
    }

    // The other currency on its own; without a currency the mix is refused.
    let mut query = CacQuery {
        from: Timestamp::from_millis(from),
        to: Timestamp::from_millis(to),
        by: Grouping::Channel,
        currency: Some("USD".to_owned()),
        event: "purchase".to_owned(),
    };
    let usd = cac::report(&world.db, DEFAULT_WORKSPACE, &query)
        .await
        .unwrap();
    assert_matches(
        &usd,
        &expected(&world, Grouping::Channel, "USD", Attribution::FirstTouch),
        "USD",
    );
    query.currency = None;
    match cac::report(&world.db, DEFAULT_WORKSPACE, &query).await {
        Err(KpiError::Invalid { field, message }) => {
            assert_eq!(field, "currency");
            assert!(message.contains("EUR, USD"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A period with one currency needs none; a period without spend has a null currency and
    // a CAC of 0 for customers acquired for free, null without any.
    query.from = Timestamp::from_millis(to + 5 * DAY);
    query.to = Timestamp::from_millis(to + 30 * DAY);
    let quiet = cac::report(&world.db, DEFAULT_WORKSPACE, &query)
        .await
        .unwrap();
    assert_eq!(quiet.currency, None);
    assert_eq!(quiet.spend, 0.0);
    assert_eq!(quiet.cac, None);
    assert_eq!(quiet.blended_cac, None);
    query.from = Timestamp::from_millis(to);
    query.to = Timestamp::from_millis(to + 4 * DAY);
    let email_only = cac::report(&world.db, DEFAULT_WORKSPACE, &query)
        .await
        .unwrap();
    assert_eq!(email_only.currency.as_deref(), Some("EUR"));
    let one_new = email_only.new_customers;
    assert!(one_new >= 1, "the after_period contact bought then");
    assert!(close(
        email_only.blended_cac.unwrap(),
        300.0 * 4.0 / 12.0 / one_new as f64
    ));

    // Bad queries name their parameter.
    for (query, field) in [
        (
            CacQuery {
                from: Timestamp::from_millis(to),
                to: Timestamp::from_millis(from),
                by: Grouping::Channel,
                currency: None,
                event: "purchase".into(),
            },
            "to",
        ),
        (
            CacQuery {
                from: Timestamp::from_millis(from),
                to: Timestamp::from_millis(to),
                by: Grouping::Channel,
                currency: Some("EUX".into()),
                event: "purchase".into(),
            },
            "currency",
        ),
        (
            CacQuery {
                from: Timestamp::from_millis(from),
                to: Timestamp::from_millis(to),
                by: Grouping::Channel,
                currency: None,
                event: "no spaces".into(),
            },
            "event",
        ),
    ] {
        match cac::report(&world.db, DEFAULT_WORKSPACE, &query).await {
            Err(KpiError::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

on_both_backends!(the_report_matches_the_rows);

async fn spend_is_checked_and_nothing_bad_is_saved(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    exec(&db, "INSERT INTO campaigns (workspace_id, name, status, goal_event, goal_window_hours, holdout_percent, channels, created_at, updated_at) VALUES (1, 'one', 'draft', 'purchase', 24, 0, 'email', 0, 0)").await;
    let campaign = id_of(&db, "SELECT id FROM campaigns WHERE name = 'one'").await;
    let good = json!({"amount": "12.50", "currency": "EUR", "from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z", "campaign_id": campaign});
    let with = |field: &str, value: serde_json::Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let bad = [
        (with("amount", json!("-5")), "amount"),
        (with("amount", json!(-5)), "amount"),
        (with("amount", json!(0)), "amount"),
        (with("amount", json!("12.505")), "amount"),
        (with("currency", json!("EUX")), "currency"),
        (with("currency", json!("XAU")), "currency"),
        (with("to", json!("2026-02-01T00:00:00Z")), "to"),
        (with("to", json!("2026-03-01T00:00:00Z")), "to"),
        (with("campaign_id", json!(campaign + 1000)), "campaign_id"),
        (with("channel", json!("email")), "channel"),
        (without("campaign_id"), "campaign_id"),
        (with("label", json!("x".repeat(201))), "label"),
    ];
    for (body, field) in bad {
        match spend::create(&db, DEFAULT_WORKSPACE, input(body.clone())).await {
            Err(KpiError::Invalid { field: got, .. }) => assert_eq!(got, field, "{body}"),
            other => panic!("{body}: {other:?}"),
        }
    }
    assert_eq!(
        count(&db, "SELECT COUNT(*) AS n FROM marketing_spend").await,
        0
    );

    let created = spend::create(&db, DEFAULT_WORKSPACE, input(good.clone()))
        .await
        .unwrap();
    assert_eq!(created.amount, "12.50");
    assert_eq!(created.campaign_id, Some(campaign));
    let jpy = spend::create(
        &db,
        DEFAULT_WORKSPACE,
        input(json!({"amount": 9800, "currency": "JPY", "from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z", "channel": "webhook"})),
    )
    .await
    .unwrap();
    assert_eq!(jpy.amount, "9800");

    // A refused update changes nothing; a good one replaces the content.
    assert!(
        spend::update(
            &db,
            DEFAULT_WORKSPACE,
            created.id,
            input(with("amount", json!("-1")))
        )
        .await
        .is_err()
    );
    assert_eq!(
        spend::get(&db, DEFAULT_WORKSPACE, created.id)
            .await
            .unwrap()
            .unwrap(),
        created
    );
    let updated = spend::update(
        &db,
        DEFAULT_WORKSPACE,
        created.id,
        input(with("amount", json!(20))),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(updated.amount, "20.00");
    assert!(
        spend::update(
            &db,
            DEFAULT_WORKSPACE,
            created.id + 999,
            input(good.clone())
        )
        .await
        .unwrap()
        .is_none()
    );

    // Filters and paging.
    let all = spend::list(&db, DEFAULT_WORKSPACE, &SpendFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![created.id, jpy.id]
    );
    let page = spend::list(
        &db,
        DEFAULT_WORKSPACE,
        &SpendFilter::default(),
        Some(created.id),
        10,
    )
    .await
    .unwrap();
    assert_eq!(page.iter().map(|s| s.id).collect::<Vec<_>>(), vec![jpy.id]);
    let yen = SpendFilter {
        currency: Some("JPY".into()),
        ..SpendFilter::default()
    };
    assert_eq!(
        spend::list(&db, DEFAULT_WORKSPACE, &yen, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let late = SpendFilter {
        from: Some(Timestamp::parse("2026-03-10T00:00:00Z").unwrap()),
        ..SpendFilter::default()
    };
    assert_eq!(
        spend::list(&db, DEFAULT_WORKSPACE, &late, None, 10)
            .await
            .unwrap(),
        vec![updated.clone()]
    );
    let of_campaign = SpendFilter {
        campaign_id: Some(campaign),
        ..SpendFilter::default()
    };
    assert_eq!(
        spend::list(&db, DEFAULT_WORKSPACE, &of_campaign, None, 10)
            .await
            .unwrap(),
        vec![updated]
    );

    // Deleting the campaign deletes its spend.
    exec(&db, &format!("DELETE FROM campaigns WHERE id = {campaign}")).await;
    assert_eq!(
        count(&db, "SELECT COUNT(*) AS n FROM marketing_spend").await,
        1
    );
    assert!(spend::delete(&db, DEFAULT_WORKSPACE, jpy.id).await.unwrap());
    assert!(!spend::delete(&db, DEFAULT_WORKSPACE, jpy.id).await.unwrap());
}

on_both_backends!(spend_is_checked_and_nothing_bad_is_saved);
