//! Computed traits against an independent computation in plain Rust: orders, revenue,
//! recency, RFM scores and segments on the Online Retail sample, interest shares on the
//! segment fixture, and rule membership over both, on SQLite and on PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};

use clarion_contacts::{contacts, events};
use clarion_model::{ContactUpsert, DEFAULT_WORKSPACE, EventInput, Timestamp, WorkspaceId};
use clarion_segment::{
    PreviewOptions, Rule, Schema, SegmentError, TraitSettings, members, recompute,
    traits::{self, InterestSettings, PurchaseSettings},
    validate,
};
use clarion_testkit::{Backend, TestDb, on_both_backends};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

use crate::fixture::{DAY, Fixture, now};

/// One event as the independent computation sees it.
#[derive(Debug, Clone)]
struct Line {
    contact: String,
    kind: String,
    at: i64,
    amount: Option<f64>,
    order: Option<String>,
    category: Option<Value>,
}

/// What the test expects of one contact with purchases.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    orders: i64,
    cents: i64,
    first_at: i64,
    last_at: i64,
    recency_days: f64,
    r: i64,
    f: i64,
    m: i64,
    segment: &'static str,
}

/// The grid of the module documentation, written out again rather than taken from the crate.
fn segment_of(r: i64, fm: i64) -> &'static str {
    match (r, fm) {
        (5, 4 | 5) | (4, 5) => "champions",
        (4, 4) | (3, 4 | 5) => "loyal",
        (4 | 5, 2 | 3) => "potential_loyalists",
        (5, 1) => "new",
        (4, 1) => "promising",
        (3, 2 | 3) => "need_attention",
        (3, 1) | (2, 2) => "about_to_sleep",
        (2, 3 | 4) | (1, 3) => "at_risk",
        (2, 5) | (1, 4 | 5) => "cannot_lose",
        (2, 1) | (1, 2) => "hibernating",
        (1, 1) => "lost",
        _ => panic!("no segment for R={r}, FM={fm}"),
    }
}

/// Orders, revenue, recency and RFM as the module documentation defines them.
fn expected_purchases(lines: &[Line], now: i64) -> BTreeMap<String, Expected> {
    struct Sums {
        orders: BTreeSet<String>,
        unnamed: i64,
        net: f64,
        first: Option<i64>,
        last: Option<i64>,
    }
    let mut sums: BTreeMap<String, Sums> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.at <= now) {
        let sum = sums.entry(line.contact.clone()).or_insert(Sums {
            orders: BTreeSet::new(),
            unnamed: 0,
            net: 0.0,
            first: None,
            last: None,
        });
        let amount = line.amount.unwrap_or(0.0);
        match line.kind.as_str() {
            "purchase" => {
                match &line.order {
                    Some(order) => {
                        sum.orders.insert(order.clone());
                    }
                    None => sum.unnamed += 1,
                }
                sum.net += amount;
                sum.first = Some(sum.first.map_or(line.at, |f| f.min(line.at)));
                sum.last = Some(sum.last.map_or(line.at, |l| l.max(line.at)));
            }
            "refund" => sum.net -= amount.abs(),
            _ => {}
        }
    }
    let buyers: Vec<(String, i64, i64, i64, i64)> = sums
        .into_iter()
        .filter_map(|(contact, s)| {
            let (first, last) = (s.first?, s.last?);
            let orders = s.orders.len() as i64 + s.unnamed;
            Some((contact, orders, (s.net * 100.0).round() as i64, first, last))
        })
        .collect();
    let n = buyers.len() as i64;
    let score = |mine: i64, all: &mut dyn Iterator<Item = i64>| {
        let worse = all.filter(|other| *other < mine).count() as i64;
        1 + 5 * worse / n
    };
    buyers
        .iter()
        .map(|(contact, orders, cents, first, last)| {
            let r = score(*last, &mut buyers.iter().map(|b| b.4));
            let f = score(*orders, &mut buyers.iter().map(|b| b.1));
            let m = score(*cents, &mut buyers.iter().map(|b| b.2));
            let fm = (f + m + 1) / 2;
            (
                contact.clone(),
                Expected {
                    orders: *orders,
                    cents: *cents,
                    first_at: *first,
                    last_at: *last,
                    recency_days: (now - last) as f64 / DAY as f64,
                    r,
                    f,
                    m,
                    segment: segment_of(r, fm),
                },
            )
        })
        .collect()
}

/// Interest shares as the module documentation defines them, from ages at `now`.
fn expected_interests(
    lines: &[Line],
    now: i64,
    settings: &InterestSettings,
) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut raw: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.at <= now) {
        let weight = settings.weights.get(&line.kind).copied().unwrap_or(0.0);
        let Some(Value::String(category)) = &line.category else {
            continue;
        };
        if weight <= 0.0 || category.is_empty() {
            continue;
        }
        let age_days = (now - line.at) as f64 / DAY as f64;
        if age_days / settings.half_life_days > 60.0 {
            continue;
        }
        *raw.entry(line.contact.clone())
            .or_default()
            .entry(category.clone())
            .or_default() += weight * 0.5_f64.powf(age_days / settings.half_life_days);
    }
    raw.into_iter()
        .map(|(contact, categories)| {
            let total: f64 = categories.values().sum();
            let shares = categories
                .into_iter()
                .map(|(category, value)| (category, value / total))
                .collect();
            (contact, shares)
        })
        .collect()
}

/// The contact behind each database id.
async fn external_ids(db: &DatabaseConnection) -> BTreeMap<i64, String> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, external_id FROM contacts",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            (
                row.try_get("", "id").unwrap(),
                row.try_get("", "external_id").unwrap(),
            )
        })
        .collect()
}

/// What the database holds in `contact_traits`, by external id.
async fn stored_purchases(db: &DatabaseConnection) -> BTreeMap<String, (Expected, f64, f64)> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT c.external_id, t.orders, t.revenue, t.first_purchase_at, t.last_purchase_at, \
             CAST(t.rfm_recency AS BIGINT) AS r, CAST(t.rfm_frequency AS BIGINT) AS f, \
             CAST(t.rfm_monetary AS BIGINT) AS m, t.rfm_segment, t.clv \
             FROM contact_traits t JOIN contacts c ON c.id = t.contact_id",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let get_i = |name: &str| -> i64 { row.try_get("", name).unwrap() };
            let get_f = |name: &str| -> f64 { row.try_get("", name).unwrap() };
            let segment: String = row.try_get("", "rfm_segment").unwrap();
            let revenue = get_f("revenue");
            (
                row.try_get("", "external_id").unwrap(),
                (
                    Expected {
                        orders: get_i("orders"),
                        cents: (revenue * 100.0).round() as i64,
                        first_at: get_i("first_purchase_at"),
                        last_at: get_i("last_purchase_at"),
                        // Not stored: counted when read (the rules and `for_contact` tests
                        // check it).
                        recency_days: f64::NAN,
                        r: get_i("r"),
                        f: get_i("f"),
                        m: get_i("m"),
                        segment: traits::RFM_SEGMENTS
                            .iter()
                            .find(|s| **s == segment)
                            .copied()
                            .unwrap_or_else(|| panic!("unknown segment {segment:?}")),
                    },
                    revenue,
                    get_f("clv"),
                ),
            )
        })
        .collect()
}

/// Compares what the database holds with the independent computation, recency to 1e-9 days.
/// Asserts that `rfm_bounds` holds, per dimension and score given, the highest value that got
/// it among `expected`.
async fn assert_bounds_match(
    backend: Backend,
    db: &DatabaseConnection,
    expected: &BTreeMap<String, Expected>,
) {
    let mut want: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for e in expected.values() {
        for (dimension, score, value) in [
            ("recency", e.r, e.last_at),
            ("frequency", e.f, e.orders),
            ("monetary", e.m, e.cents),
        ] {
            let high = want.entry((dimension.to_string(), score)).or_insert(value);
            *high = (*high).max(value);
        }
    }
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT dimension, CAST(score AS BIGINT) AS score, high FROM rfm_bounds WHERE workspace_id = 1",
        ))
        .await
        .unwrap();
    let got: BTreeMap<(String, i64), i64> = rows
        .iter()
        .map(|row| {
            (
                (
                    row.try_get::<String>("", "dimension").unwrap(),
                    row.try_get::<i64>("", "score").unwrap(),
                ),
                row.try_get::<i64>("", "high").unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want, "{backend:?}: RFM score bounds");
}

fn assert_purchases_match(
    backend: Backend,
    stored: &BTreeMap<String, (Expected, f64, f64)>,
    expected: &BTreeMap<String, Expected>,
) {
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{backend:?}: contacts with purchase traits"
    );
    for (contact, want) in expected {
        let (got, revenue, clv) = &stored[contact];
        let got = Expected {
            recency_days: want.recency_days,
            ..got.clone()
        };
        assert_eq!(&got, want, "{backend:?} {contact}");
        assert_eq!(
            revenue, clv,
            "{backend:?} {contact}: historic CLV is net revenue"
        );
        assert_eq!(
            (revenue * 100.0).round() / 100.0,
            *revenue,
            "{backend:?} {contact}: revenue is rounded to hundredths"
        );
    }
}

async fn stored_interests(db: &DatabaseConnection) -> BTreeMap<String, BTreeMap<String, f64>> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT c.external_id, i.category, i.score \
             FROM contact_interests i JOIN contacts c ON c.id = i.contact_id",
        ))
        .await
        .unwrap();
    let mut all: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for row in rows {
        let contact: String = row.try_get("", "external_id").unwrap();
        all.entry(contact).or_default().insert(
            row.try_get("", "category").unwrap(),
            row.try_get("", "score").unwrap(),
        );
    }
    all
}

fn assert_interests_match(
    backend: Backend,
    stored: &BTreeMap<String, BTreeMap<String, f64>>,
    expected: &BTreeMap<String, BTreeMap<String, f64>>,
) {
    assert_eq!(
        stored
            .iter()
            .map(|(c, s)| (c, s.keys().collect::<Vec<_>>()))
            .collect::<Vec<_>>(),
        expected
            .iter()
            .map(|(c, s)| (c, s.keys().collect::<Vec<_>>()))
            .collect::<Vec<_>>(),
        "{backend:?}: contacts and categories with interests"
    );
    for (contact, shares) in expected {
        for (category, share) in shares {
            let got = stored[contact][category];
            assert!(
                (got - share).abs() < 1e-9,
                "{backend:?} {contact} {category}: {got} vs {share}"
            );
        }
        let sum: f64 = stored[contact].values().sum();
        assert!((sum - 1.0).abs() < 1e-9, "{backend:?} {contact}: sum {sum}");
    }
}

/// The members of a rule, by external id.
async fn members_of(
    db: &DatabaseConnection,
    names: &BTreeMap<i64, String>,
    at: Timestamp,
    rule: &Value,
) -> BTreeSet<String> {
    let rule = Rule::from_json(rule).unwrap();
    let valid = validate(&rule, &Schema::new()).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    members(
        db,
        DEFAULT_WORKSPACE,
        &valid,
        at,
        None,
        1_000,
        PreviewOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{rule}: {e}"))
    .iter()
    .map(|id| names[&id.0].clone())
    .collect()
}

/// Checks each rule, and its negation as the exact complement, against the expected members.
async fn assert_members(
    backend: Backend,
    db: &DatabaseConnection,
    at: Timestamp,
    cases: Vec<(Value, BTreeSet<String>)>,
) {
    let names = external_ids(db).await;
    let everyone: BTreeSet<String> = names.values().cloned().collect();
    let telling = cases
        .iter()
        .filter(|(_, expected)| !expected.is_empty() && expected.len() < everyone.len())
        .count();
    assert!(
        telling * 4 >= cases.len() * 3,
        "most cases should select some but not all contacts ({telling} of {})",
        cases.len()
    );
    for (rule, expected) in cases {
        let got = members_of(db, &names, at, &rule).await;
        assert_eq!(got, expected, "{backend:?} {rule}");
        let negated = members_of(db, &names, at, &json!({"not": rule})).await;
        let complement: BTreeSet<String> = everyone.difference(&expected).cloned().collect();
        assert_eq!(negated, complement, "{backend:?} not {rule}");
    }
}

/// The Online Retail sample as events: one per invoice line of a known customer, `refund`
/// for cancelled invoices, amount = quantity x price rounded to hundredths (as `clarion
/// import events --preset online-retail` writes them).
fn retail_lines() -> Vec<Line> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/online_retail_sample.csv"
    );
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (invoice, quantity, date, price, customer) = (
        column("InvoiceNo"),
        column("Quantity"),
        column("InvoiceDate"),
        column("UnitPrice"),
        column("CustomerID"),
    );
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        let contact = record[customer].trim_end_matches(".0").to_string();
        if contact.is_empty() {
            continue;
        }
        let number = |i: usize| record[i].parse::<f64>().unwrap();
        let at = chrono::NaiveDateTime::parse_from_str(&record[date], "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_millis();
        lines.push(Line {
            contact,
            kind: if record[invoice].starts_with('C') {
                "refund"
            } else {
                "purchase"
            }
            .to_string(),
            at,
            amount: Some((number(quantity) * number(price) * 100.0).round() / 100.0),
            order: Some(record[invoice].to_string()),
            category: None,
        });
    }
    lines
}

async fn store_lines(db: &DatabaseConnection, lines: &[Line]) {
    let items = lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            let mut properties = serde_json::Map::new();
            if let Some(order) = &line.order {
                properties.insert("invoice".into(), json!(order));
            }
            if let Some(category) = &line.category {
                properties.insert("category".into(), category.clone());
            }
            let item: EventInput = serde_json::from_value(json!({
                "external_id": line.contact,
                "kind": line.kind,
                "occurred_at": Timestamp::from_millis(line.at),
                "amount": line.amount,
                "properties": properties,
            }))
            .unwrap();
            (index, item)
        })
        .collect();
    let options = events::IngestOptions {
        create_unknown_contacts: true,
        max_future_millis: 365 * DAY,
        atomic: true,
    };
    let report = events::insert_batch(db, DEFAULT_WORKSPACE, items, options)
        .await
        .unwrap();
    assert_eq!(report.accepted, lines.len(), "{:?}", report.errors);
}

async fn create_contacts(db: &DatabaseConnection, external_ids: &[&str]) {
    let items = external_ids
        .iter()
        .enumerate()
        .map(|(index, id)| {
            let item: ContactUpsert = serde_json::from_value(json!({"external_id": id})).unwrap();
            (index, item)
        })
        .collect();
    contacts::upsert_batch(db, DEFAULT_WORKSPACE, items, true)
        .await
        .unwrap();
}

fn retail_now() -> Timestamp {
    Timestamp::parse("2010-12-08T00:00:00Z").unwrap()
}

async fn rfm_on_the_online_retail_sample_matches_an_independent_computation(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let lines = retail_lines();
    store_lines(&db, &lines).await;
    // Contacts without any event have no traits either.
    create_contacts(&db, &["no-events-1", "no-events-2"]).await;

    let now = retail_now();
    let summary = recompute(&db, DEFAULT_WORKSPACE, now, &TraitSettings::default())
        .await
        .unwrap();
    let expected = expected_purchases(&lines, now.millis());
    assert_eq!(summary.contacts as usize, expected.len());
    assert_eq!(summary.segments.values().sum::<u64>(), summary.contacts);
    assert_eq!(summary.computed_at, now);
    // The sample has customers who only cancelled: they have no purchase traits.
    let customers: BTreeSet<&String> = lines.iter().map(|l| &l.contact).collect();
    assert!(customers.len() > expected.len(), "{}", customers.len());
    // Enough variety that the comparison below says something. The sample covers one day,
    // so most customers placed one order: they all share frequency 1, and the few with two
    // share the score of the first position their group takes.
    for (scores, least) in [
        (expected.values().map(|e| e.r).collect::<BTreeSet<_>>(), 3),
        (expected.values().map(|e| e.f).collect(), 2),
        (expected.values().map(|e| e.m).collect(), 5),
    ] {
        assert!(scores.len() >= least, "{scores:?}");
    }
    assert!(
        expected
            .values()
            .map(|e| e.segment)
            .collect::<BTreeSet<_>>()
            .len()
            >= 4
    );
    assert!(expected.values().any(|e| e.orders > 1));
    for (name, members) in &summary.segments {
        assert_eq!(
            *members as usize,
            expected.values().filter(|e| e.segment == name).count(),
            "{backend:?} {name}"
        );
    }

    let stored = stored_purchases(&db).await;
    assert_purchases_match(backend, &stored, &expected);

    // Rules over those traits select exactly the contacts the independent values say.
    let with = |keep: &dyn Fn(&Expected) -> bool| -> BTreeSet<String> {
        expected
            .iter()
            .filter(|(_, e)| keep(e))
            .map(|(c, _)| c.clone())
            .collect()
    };
    let everyone: BTreeSet<String> = external_ids(&db).await.into_values().collect();
    let without_purchases: BTreeSet<String> = everyone
        .iter()
        .filter(|c| !expected.contains_key(*c))
        .cloned()
        .collect();
    let noon = Timestamp::parse("2010-12-01T12:00:00Z").unwrap().millis();
    let mut cases = vec![
        (
            json!({"trait": "rfm_segment", "op": "in", "value": ["champions", "loyal"]}),
            with(&|e| matches!(e.segment, "champions" | "loyal")),
        ),
        (
            json!({"trait": "rfm_segment", "op": "!=", "value": "lost"}),
            with(&|e| e.segment != "lost"),
        ),
        (
            json!({"trait": "rfm_segment", "op": "not_in", "value": ["lost", "hibernating"]}),
            with(&|e| !matches!(e.segment, "lost" | "hibernating")),
        ),
        (
            json!({"trait": "rfm_segment", "op": "starts_with", "value": "pot"}),
            with(&|e| e.segment.starts_with("pot")),
        ),
        (
            json!({"trait": "rfm_recency", "op": ">=", "value": 4}),
            with(&|e| e.r >= 4),
        ),
        (
            json!({"trait": "rfm_frequency", "op": "=", "value": 1}),
            with(&|e| e.f == 1),
        ),
        (
            json!({"trait": "rfm_monetary", "op": "between", "value": [2, 4]}),
            with(&|e| (2..=4).contains(&e.m)),
        ),
        (
            json!({"trait": "orders", "op": ">=", "value": 2}),
            with(&|e| e.orders >= 2),
        ),
        (
            json!({"trait": "revenue", "op": ">", "value": 300}),
            with(&|e| e.cents > 30_000),
        ),
        (
            json!({"trait": "clv", "op": "<=", "value": 100}),
            with(&|e| e.cents <= 10_000),
        ),
        (
            json!({"trait": "recency_days", "op": "<", "value": 6.6}),
            with(&|e| e.recency_days < 6.6),
        ),
        (
            json!({"trait": "last_purchase_at", "op": ">", "value": "2010-12-01T12:00:00Z"}),
            with(&|e| e.last_at > noon),
        ),
        (
            json!({"trait": "first_purchase_at", "op": "<", "value": {"ago": "7d"}}),
            with(&|e| e.first_at < now.millis() - 7 * DAY),
        ),
        (json!({"trait": "clv", "op": "exists"}), with(&|_| true)),
        (
            json!({"trait": "rfm_segment", "op": "not_exists"}),
            without_purchases.clone(),
        ),
        (
            json!({"any": [{"trait": "rfm_recency", "op": "=", "value": 5}, {"trait": "orders", "op": "not_exists"}]}),
            with(&|e| e.r == 5)
                .union(&without_purchases)
                .cloned()
                .collect(),
        ),
    ];
    for name in traits::RFM_SEGMENTS {
        cases.push((
            json!({"trait": "rfm_segment", "op": "=", "value": name}),
            with(&|e| e.segment == name),
        ));
    }
    // Eleven single-segment cases are allowed to be empty in a sample this small.
    let (single, mixed): (Vec<_>, Vec<_>) = cases
        .into_iter()
        .partition(|(rule, _)| rule["op"] == "=" && rule["trait"] == "rfm_segment");
    assert_members(backend, &db, now, mixed).await;
    let names = external_ids(&db).await;
    for (rule, expected) in single {
        assert_eq!(
            members_of(&db, &names, now, &rule).await,
            expected,
            "{backend:?} {rule}"
        );
    }
}

/// The fixture's events plus views, carts and searches with categories, and events whose
/// category is missing, empty or not a string.
fn interest_lines(fx: &Fixture) -> (Vec<Line>, Vec<Line>) {
    let now = now().millis();
    let fixture: Vec<Line> = fx
        .happenings
        .iter()
        .map(|h| Line {
            contact: fx.people[h.person].external_id.clone(),
            kind: h.kind.to_string(),
            at: h.at,
            amount: h.amount,
            order: None,
            category: h.category.map(|c| json!(c)),
        })
        .collect();
    let mut extra = Vec::new();
    for i in 0..30_i64 {
        let contact = format!("p{i:02}");
        let mut add = |kind: &str, at: i64, category: Option<Value>| {
            extra.push(Line {
                contact: contact.clone(),
                kind: kind.to_string(),
                at,
                amount: None,
                order: None,
                category,
            })
        };
        if i % 3 != 2 {
            add(
                "view",
                now - i * DAY - 7 * 3_600_000,
                Some(json!(["books", "toys", "games"][(i % 3) as usize])),
            );
        }
        if i % 4 == 0 {
            add("cart", now - i * 3 * DAY, Some(json!("games")));
        }
        if i % 5 == 1 {
            add("search", now - 10 * DAY, Some(json!("toys")));
            add("view", now - 400 * DAY, Some(json!("garden")));
        }
        if i % 7 == 0 {
            add("view", now - DAY, None);
        }
    }
    let at = now - 2 * DAY;
    let odd = |contact: &str, kind: &str, category: Value| Line {
        contact: contact.to_string(),
        kind: kind.to_string(),
        at,
        amount: None,
        order: None,
        category: Some(category),
    };
    extra.push(odd("p04", "view", json!("")));
    extra.push(odd("p06", "view", json!(5)));
    extra.push(odd("p10", "email_click", json!("books")));
    // More than 60 half-lives old: faded out, so p29 has no interests at all.
    extra.push(Line {
        at: now - 1801 * DAY,
        ..odd("p29", "view", json!("garden"))
    });
    extra.push(Line {
        at: now - 1799 * DAY,
        ..odd("p28", "view", json!("garden"))
    });
    // After `now`: ignored.
    extra.push(Line {
        at: now + 3_600_000,
        ..odd("p11", "cart", json!("garden"))
    });
    (fixture, extra)
}

async fn interests_and_rules_match_an_independent_computation(backend: Backend) {
    let fx = Fixture::load(backend).await;
    let (fixture_lines, extra) = interest_lines(&fx);
    store_lines(&fx.db, &extra).await;
    let lines: Vec<Line> = fixture_lines.into_iter().chain(extra).collect();

    let settings = TraitSettings::default();
    let summary = recompute(&fx.db, DEFAULT_WORKSPACE, now(), &settings)
        .await
        .unwrap();
    let interests = expected_interests(&lines, now().millis(), &settings.interests);
    assert_eq!(summary.interest_contacts as usize, interests.len());
    assert_eq!(
        summary.interest_scores as usize,
        interests.values().map(BTreeMap::len).sum::<usize>()
    );
    assert!(interests.len() > 10 && interests.len() < 30);
    assert!(!interests.contains_key("p29"));
    assert!(interests["p28"].contains_key("garden"));
    assert!(interests.values().any(|shares| shares.len() >= 3));
    assert_interests_match(backend, &stored_interests(&fx.db).await, &interests);

    // Purchases without an order property are an order each; missing amounts count as 0.
    let purchases = expected_purchases(&lines, now().millis());
    assert_purchases_match(backend, &stored_purchases(&fx.db).await, &purchases);

    let share = |contact: &str, category: &str| -> f64 {
        interests
            .get(contact)
            .and_then(|shares| shares.get(category))
            .copied()
            .unwrap_or(0.0)
    };
    // No share sits so close to a threshold below that rounding could decide the case.
    let thresholds = [0.5, 0.99, 0.3, 0.1, 0.6, 0.2, 0.25];
    for shares in interests.values() {
        for value in shares.values() {
            for t in thresholds {
                assert!((value - t).abs() > 1e-6, "{value} is too close to {t}");
            }
        }
    }
    let people: Vec<String> = fx.people.iter().map(|p| p.external_id.clone()).collect();
    let with = |keep: &dyn Fn(&str) -> bool| -> BTreeSet<String> {
        people.iter().filter(|p| keep(p)).cloned().collect()
    };
    let cases = vec![
        (
            json!({"interest": "books", "op": ">=", "value": 0.5}),
            with(&|p| share(p, "books") >= 0.5),
        ),
        (
            json!({"interest": "books", "op": ">", "value": 0.99}),
            with(&|p| share(p, "books") > 0.99),
        ),
        (
            json!({"interest": "toys", "op": "<", "value": 0.3}),
            with(&|p| share(p, "toys") < 0.3),
        ),
        (
            json!({"interest": "toys", "op": "=", "value": 0}),
            with(&|p| share(p, "toys") == 0.0),
        ),
        (
            json!({"interest": "toys", "op": "!=", "value": 0}),
            with(&|p| share(p, "toys") != 0.0),
        ),
        (
            json!({"interest": "games", "op": "between", "value": [0.1, 0.6]}),
            with(&|p| (0.1..=0.6).contains(&share(p, "games"))),
        ),
        (
            json!({"interest": "games", "op": "between", "value": [0, 0.2]}),
            with(&|p| (0.0..=0.2).contains(&share(p, "games"))),
        ),
        (
            json!({"interest": "books", "op": "in", "value": [1, 0]}),
            with(&|p| [1.0, 0.0].contains(&share(p, "books"))),
        ),
        (
            json!({"interest": "books", "op": "not_in", "value": [1]}),
            with(&|p| share(p, "books") != 1.0),
        ),
        (
            json!({"interest": "garden", "op": "exists"}),
            with(&|p| share(p, "garden") > 0.0),
        ),
        (
            json!({"interest": "games", "op": "not_exists"}),
            with(&|p| share(p, "games") == 0.0),
        ),
        (
            json!({"all": [
                {"interest": "books", "op": ">=", "value": 0.25},
                {"trait": "orders", "op": ">=", "value": 2}
            ]}),
            with(&|p| share(p, "books") >= 0.25 && purchases.get(p).is_some_and(|e| e.orders >= 2)),
        ),
        (
            json!({"any": [
                {"not": {"trait": "rfm_segment", "op": "exists"}},
                {"interest": "toys", "op": ">", "value": 0.2}
            ]}),
            with(&|p| !purchases.contains_key(p) || share(p, "toys") > 0.2),
        ),
        (
            json!({"trait": "revenue", "op": "=", "value": 0}),
            with(&|p| purchases.get(p).is_some_and(|e| e.cents == 0)),
        ),
    ];
    assert_members(backend, &fx.db, now(), cases).await;
}

/// A later computation replaces the earlier one: other settings, another `now`, another
/// workspace left alone, and one contact's traits read back.
async fn a_recomputation_replaces_the_previous_one(backend: Backend) {
    let fx = Fixture::load(backend).await;
    let names = external_ids(&fx.db).await;
    let id_of = |external: &str| {
        clarion_model::ContactId(
            *names
                .iter()
                .find(|(_, name)| name.as_str() == external)
                .unwrap()
                .0,
        )
    };
    let before = traits::for_contact(&fx.db, DEFAULT_WORKSPACE, id_of("p02"), now())
        .await
        .unwrap();
    assert_eq!(before.computed_at, None);
    assert_eq!(before.purchases, None);
    assert!(before.interests.is_empty());

    recompute(&fx.db, DEFAULT_WORKSPACE, now(), &TraitSettings::default())
        .await
        .unwrap();
    let first = traits::for_contact(&fx.db, DEFAULT_WORKSPACE, id_of("p02"), now())
        .await
        .unwrap();
    assert_eq!(first.computed_at, Some(now()));
    let purchases = first.purchases.clone().unwrap();
    assert_eq!(purchases.orders, 2);
    // Recency counts to the moment of reading, not to the computation.
    let days = |at: Timestamp| (at.millis() - purchases.last_purchase_at) as f64 / DAY as f64;
    assert!(days(now()) > 0.0);
    assert!((purchases.recency_days - days(now())).abs() < 1e-9);
    let later = Timestamp::from_millis(now().millis() + 36 * 3_600_000);
    let read_later = traits::for_contact(&fx.db, DEFAULT_WORKSPACE, id_of("p02"), later)
        .await
        .unwrap();
    let recency_later = read_later.purchases.unwrap().recency_days;
    assert!((recency_later - days(later)).abs() < 1e-9);
    assert!((recency_later - purchases.recency_days - 1.5).abs() < 1e-9);
    assert!(traits::RFM_SEGMENTS.contains(&purchases.rfm_segment.as_str()));
    assert_eq!(
        first
            .interests
            .iter()
            .map(|i| i.category.as_str())
            .collect::<Vec<_>>(),
        ["books", "toys"]
    );
    assert!(first.interests[0].score > first.interests[1].score);
    // p07's only purchase comes after now.
    let none = traits::for_contact(&fx.db, DEFAULT_WORKSPACE, id_of("p07"), now())
        .await
        .unwrap();
    assert_eq!(none.computed_at, Some(now()));
    assert_eq!(none.purchases, None);

    // Another workspace's computation leaves this one's rows alone.
    fx.db
        .execute_unprepared(
            "INSERT INTO workspaces (id, slug, name, created_at) VALUES (2, 'other', 'Other', 0)",
        )
        .await
        .unwrap();
    let other = recompute(&fx.db, WorkspaceId(2), now(), &TraitSettings::default())
        .await
        .unwrap();
    assert_eq!((other.contacts, other.interest_contacts), (0, 0));
    assert_eq!(
        stored_purchases(&fx.db).await.len(),
        expected_purchases(&interest_lines(&fx).0, now().millis()).len()
    );

    // A month earlier, with purchases only counting for interest: fewer buyers, other
    // shares, and none of the rows of the first computation left over.
    let earlier = Timestamp::from_millis(now().millis() - 30 * DAY);
    let settings = TraitSettings {
        interests: InterestSettings {
            weights: [("purchase".to_string(), 1.0), ("view".to_string(), 0.0)]
                .into_iter()
                .collect(),
            half_life_days: 7.0,
            ..InterestSettings::default()
        },
        ..TraitSettings::default()
    };
    recompute(&fx.db, DEFAULT_WORKSPACE, earlier, &settings)
        .await
        .unwrap();
    let lines = interest_lines(&fx).0;
    assert_purchases_match(
        backend,
        &stored_purchases(&fx.db).await,
        &expected_purchases(&lines, earlier.millis()),
    );
    assert_interests_match(
        backend,
        &stored_interests(&fx.db).await,
        &expected_interests(&lines, earlier.millis(), &settings.interests),
    );
}

#[test]
fn settings_out_of_range_name_their_key() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"interests": {"half_life_days": 0}}),
            "interests.half_life_days",
        ),
        (
            json!({"interests": {"weights": {"view": -1}}}),
            "interests.weights.view",
        ),
        (
            json!({"interests": {"weights": {"View": 1}}}),
            "interests.weights.View",
        ),
        (
            json!({"interests": {"category_property": "a.b"}}),
            "interests.category_property",
        ),
        (
            json!({"purchases": {"refund_kind": "purchase"}}),
            "purchases.refund_kind",
        ),
        (
            json!({"purchases": {"order_property": ""}}),
            "purchases.order_property",
        ),
    ];
    for (value, key) in cases {
        let settings: TraitSettings = serde_json::from_value(value.clone()).unwrap();
        match settings.check() {
            Err(SegmentError::Settings { key: got, .. }) => assert_eq!(got, key, "{value}"),
            other => panic!("{value}: {other:?}"),
        }
    }
    assert!(TraitSettings::default().check().is_ok());
    let typo = serde_json::from_value::<TraitSettings>(json!({"interests": {"halflife": 3}}));
    assert!(typo.unwrap_err().to_string().contains("halflife"));
}

/// Interest shares do not move as time passes without events, so refreshing the contacts a
/// batch touched keeps every profile equal to the independent computation at a later time.
async fn interest_profiles_follow_new_events_before_the_next_computation(backend: Backend) {
    let fx = Fixture::load(backend).await;
    let (fixture_lines, extra) = interest_lines(&fx);
    store_lines(&fx.db, &extra).await;
    let mut lines: Vec<Line> = fixture_lines.into_iter().chain(extra).collect();
    let settings = TraitSettings::default();
    recompute(&fx.db, DEFAULT_WORKSPACE, now(), &settings)
        .await
        .unwrap();
    let before = expected_interests(&lines, now().millis(), &settings.interests);

    // A minute later: one contact with a profile views a new category and buys in an old one,
    // one without a profile searches; an unweighted kind changes nothing.
    // Events stored with times after `now` would count at the later time: their contacts
    // are left out of the case, and so are those events from the independent computation.
    let later = now().millis() + 60_000;
    let future: BTreeSet<String> = lines
        .iter()
        .filter(|l| l.at > now().millis())
        .map(|l| l.contact.clone())
        .collect();
    lines.retain(|l| l.at <= now().millis());
    let known = before
        .keys()
        .find(|c| !future.contains(*c))
        .unwrap()
        .clone();
    let blank = fx
        .people
        .iter()
        .map(|p| p.external_id.clone())
        .find(|p| !before.contains_key(p) && !future.contains(p))
        .unwrap();
    let old_category = before[&known].keys().next().unwrap().clone();
    let line = |contact: &str, kind: &str, at: i64, category: &str| Line {
        contact: contact.to_string(),
        kind: kind.to_string(),
        at,
        amount: None,
        order: None,
        category: Some(json!(category)),
    };
    let new_lines = vec![
        line(&known, "view", later - DAY, "astronomy"),
        line(&known, "purchase", later - 3_600_000, &old_category),
        line(&blank, "search", later - 60_000, "astronomy"),
        line(&blank, "unweighted_kind", later - 60_000, "garden"),
    ];
    store_lines(&fx.db, &new_lines).await;
    lines.extend(new_lines);
    let ids = external_ids(&fx.db).await;
    let touched: Vec<_> = ids
        .iter()
        .filter(|(_, c)| **c == known || **c == blank)
        .map(|(id, _)| clarion_model::ContactId(*id))
        .collect();
    let written = traits::refresh_interests(
        &fx.db,
        DEFAULT_WORKSPACE,
        &touched,
        Timestamp::from_millis(later),
        &settings.interests,
    )
    .await
    .unwrap();
    let after = expected_interests(&lines, later, &settings.interests);
    assert_eq!(
        written as usize,
        after[&known].len() + after[&blank].len(),
        "{backend:?}"
    );
    assert_ne!(after[&known], before[&known], "the case says something");
    assert_eq!(after[&blank].len(), 1);
    assert_interests_match(backend, &stored_interests(&fx.db).await, &after);
}

/// The score a value gets when it is placed among the buyers of the last full computation
/// (`before`), as `traits::refresh_contacts` documents it: the score of the smallest value
/// of those buyers at or above it; above all of them the top score 5; no buyers, 1.
fn placed(value: i64, before: &mut dyn Iterator<Item = (i64, i64)>) -> i64 {
    let mut seen = false;
    let mut best: Option<(i64, i64)> = None;
    for (other, score) in before {
        seen = true;
        if other >= value && best.is_none_or(|(b, _)| other < b) {
            best = Some((other, score));
        }
    }
    match best {
        Some((_, score)) => score,
        None if seen => 5,
        None => 1,
    }
}

async fn a_purchase_moves_its_contacts_traits_before_the_next_computation(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let mut lines = retail_lines();
    store_lines(&db, &lines).await;
    let now = retail_now();
    recompute(&db, DEFAULT_WORKSPACE, now, &TraitSettings::default())
        .await
        .unwrap();
    let before = expected_purchases(&lines, now.millis());

    // The biggest spender buys again; a customer who only cancelled buys for the first time;
    // the most recent buyer is refunded more than it spent; a new contact buys twice in one
    // order, and another one later than `now` (not counted yet).
    let biggest = before
        .iter()
        .max_by_key(|(_, e)| e.cents)
        .unwrap()
        .0
        .clone();
    let canceller = lines
        .iter()
        .map(|l| &l.contact)
        .find(|c| !before.contains_key(*c))
        .unwrap()
        .clone();
    let latest = before
        .iter()
        .filter(|(c, _)| **c != biggest)
        .max_by_key(|(_, e)| e.last_at)
        .unwrap()
        .0
        .clone();
    let later = now.millis() + DAY / 2;
    let line = |contact: &str, kind: &str, at: i64, amount: f64, order: Option<&str>| Line {
        contact: contact.to_string(),
        kind: kind.to_string(),
        at,
        amount: Some(amount),
        order: order.map(str::to_string),
        category: None,
    };
    let new_lines = vec![
        line(&biggest, "purchase", later - 3_600_000, 1_250.5, Some("N1")),
        line(&canceller, "purchase", later - 7_200_000, 12.0, Some("N2")),
        line(&latest, "refund", later - 60_000, 1_000_000.0, Some("C9")),
        line("newcomer", "purchase", later - 1_000, 30.0, Some("N3")),
        line("newcomer", "purchase", later - 1_000, 20.0, Some("N3")),
        line("future", "purchase", later + DAY, 99.0, None),
    ];
    store_lines(&db, &new_lines).await;
    lines.extend(new_lines);
    let ids = external_ids(&db).await;
    let touched: Vec<_> = ids
        .iter()
        .filter(|(_, c)| {
            [&biggest, &canceller, &latest, "newcomer", "future"].contains(&c.as_str())
        })
        .map(|(id, _)| clarion_model::ContactId(*id))
        .collect();
    let written = traits::refresh_contacts(
        &db,
        DEFAULT_WORKSPACE,
        &touched,
        Timestamp::from_millis(later),
        &TraitSettings::default().purchases,
    )
    .await
    .unwrap();
    assert_eq!(
        written, 4,
        "{backend:?}: the future buyer has no purchase yet"
    );

    let after = expected_purchases(&lines, later);
    let stored = stored_purchases(&db).await;
    assert!(!stored.contains_key("future"), "{backend:?}");
    assert_eq!(stored.len(), before.len() + 2, "{backend:?}");
    for (contact, (got, revenue, clv)) in &stored {
        let fresh = [&biggest, &canceller, &latest, "newcomer"].contains(&contact.as_str());
        if !fresh {
            // Everyone else keeps what the last full computation gave them.
            let want = &before[contact];
            let got = Expected {
                recency_days: want.recency_days,
                ..got.clone()
            };
            assert_eq!(&got, want, "{backend:?} {contact}");
            continue;
        }
        let want = &after[contact];
        let r = placed(want.last_at, &mut before.values().map(|e| (e.last_at, e.r)));
        let f = placed(want.orders, &mut before.values().map(|e| (e.orders, e.f)));
        let m = placed(want.cents, &mut before.values().map(|e| (e.cents, e.m)));
        let want = Expected {
            r,
            f,
            m,
            segment: segment_of(r, (f + m + 1) / 2),
            ..want.clone()
        };
        let got = Expected {
            recency_days: want.recency_days,
            ..got.clone()
        };
        assert_eq!(got, want, "{backend:?} {contact}");
        assert_eq!(revenue, clv, "{backend:?} {contact}");
    }
    // The cases say something: the biggest spender stays on top, the refunded buyer falls to
    // the bottom of monetary, the newcomer is the most recent.
    assert_eq!(stored[&biggest].0.m, 5, "{backend:?}");
    assert_eq!(stored[&latest].0.m, 1, "{backend:?}");
    assert!(stored[&latest].0.cents < 0, "{backend:?}");
    assert_eq!(stored["newcomer"].0.r, 5, "{backend:?}");
    assert_eq!(
        stored["newcomer"].0.orders, 1,
        "{backend:?}: two lines of one order"
    );

    // The next full computation ranks everyone again, as the independent computation does.
    recompute(
        &db,
        DEFAULT_WORKSPACE,
        Timestamp::from_millis(later),
        &TraitSettings::default(),
    )
    .await
    .unwrap();
    assert_purchases_match(backend, &stored_purchases(&db).await, &after);
}

/// A computation after an earlier one with the same purchase settings starts from the stored
/// rows instead of grouping every purchase again, and still equals the independent
/// computation: it catches up what ingestion did not write in between (here nothing went
/// through ingestion's refresh), events stored late for times before the first computation
/// and events dated after it whose time has come, and leaves out a buyer deleted since. A
/// day after the last full computation, and with other purchase settings, everything is
/// grouped again.
async fn a_later_computation_catches_up_what_was_stored_since(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let lines = retail_lines();
    let mut times: Vec<i64> = lines.iter().map(|l| l.at).collect();
    times.sort_unstable();
    let first = Timestamp::from_millis(times[times.len() * 2 / 3]);
    let second = Timestamp::from_millis(first.millis() + 20 * 3_600_000);
    // A third of the customers' lines up to `first` arrive only after the first computation.
    let arrives_late = |line: &Line| {
        line.at <= first.millis() && line.contact.bytes().map(u64::from).sum::<u64>() % 3 == 0
    };
    let (late, early): (Vec<Line>, Vec<Line>) = lines.iter().cloned().partition(arrives_late);
    assert!(
        early
            .iter()
            .any(|l| l.at > first.millis() && l.at <= second.millis() && l.kind == "purchase")
    );
    store_lines(&db, &early).await;

    let summary = recompute(&db, DEFAULT_WORKSPACE, first, &TraitSettings::default())
        .await
        .unwrap();
    assert!(summary.full, "the first computation groups every purchase");
    assert_purchases_match(
        backend,
        &stored_purchases(&db).await,
        &expected_purchases(&early, first.millis()),
    );

    store_lines(&db, &late).await;
    let before = expected_purchases(&lines, second.millis());
    let deleted = before
        .iter()
        .find(|(contact, e)| e.orders > 1 && !late.iter().any(|l| &l.contact == *contact))
        .map(|(contact, _)| contact.clone())
        .unwrap();
    let external = clarion_model::ExternalId::parse(deleted.clone()).unwrap();
    assert!(
        contacts::delete(&db, DEFAULT_WORKSPACE, &external)
            .await
            .unwrap()
    );
    let remaining: Vec<Line> = lines
        .iter()
        .filter(|l| l.contact != deleted)
        .cloned()
        .collect();
    let expected = expected_purchases(&remaining, second.millis());
    // What changed since the first computation moves scores, so the comparison below
    // says something about the ranks as well as the sums.
    let moved = expected
        .iter()
        .filter(|(contact, e)| {
            expected_purchases(&early, first.millis())
                .get(*contact)
                .is_none_or(|old| {
                    (old.orders, old.cents, old.r, old.f, old.m)
                        != (e.orders, e.cents, e.r, e.f, e.m)
                })
        })
        .count();
    assert!(moved * 4 > expected.len(), "{moved} of {}", expected.len());

    let summary = recompute(&db, DEFAULT_WORKSPACE, second, &TraitSettings::default())
        .await
        .unwrap();
    assert!(
        !summary.full,
        "a later computation starts from the stored rows"
    );
    assert_eq!(summary.contacts as usize, expected.len());
    assert_purchases_match(backend, &stored_purchases(&db).await, &expected);
    assert_bounds_match(backend, &db, &expected).await;
    for (name, members) in &summary.segments {
        assert_eq!(
            *members as usize,
            expected.values().filter(|e| e.segment == name).count(),
            "{backend:?} {name}"
        );
    }

    // A day after the last full computation, the next one is full again. Before it, two
    // zero-amount lines of existing orders move a buyer's last purchase and another's first
    // without moving their orders or revenue (stored without a refresh, as a failed one).
    let third = Timestamp::from_millis(first.millis() + 25 * 3_600_000);
    let order_line = |not: &str| {
        remaining
            .iter()
            .find(|l| l.kind == "purchase" && l.order.is_some() && l.contact != not)
            .cloned()
            .unwrap()
    };
    let moved_last = Line {
        at: third.millis() - 60_000,
        amount: Some(0.0),
        ..order_line("")
    };
    let moved_first = Line {
        at: times[0] - DAY,
        amount: Some(0.0),
        ..order_line(&moved_last.contact)
    };
    let extra = [moved_last.clone(), moved_first.clone()];
    store_lines(&db, &extra).await;
    let unmoved = expected_purchases(&remaining, third.millis());
    let remaining: Vec<Line> = remaining.iter().chain(&extra).cloned().collect();
    let moved = expected_purchases(&remaining, third.millis());
    for (line, what) in [(&moved_last, "last"), (&moved_first, "first")] {
        let (was, is) = (&unmoved[&line.contact], &moved[&line.contact]);
        assert_eq!((was.orders, was.cents), (is.orders, is.cents), "{what}");
        assert_ne!(
            (was.first_at, was.last_at),
            (is.first_at, is.last_at),
            "{what}"
        );
    }
    let summary = recompute(&db, DEFAULT_WORKSPACE, third, &TraitSettings::default())
        .await
        .unwrap();
    assert!(summary.full, "a day after the last full computation");
    assert_purchases_match(
        backend,
        &stored_purchases(&db).await,
        &expected_purchases(&remaining, third.millis()),
    );

    // Refunds of another kind (there are none): every purchase is grouped again.
    let settings = TraitSettings {
        purchases: PurchaseSettings {
            refund_kind: "return".to_string(),
            ..PurchaseSettings::default()
        },
        ..TraitSettings::default()
    };
    let summary = recompute(&db, DEFAULT_WORKSPACE, third, &settings)
        .await
        .unwrap();
    assert!(summary.full, "other purchase settings group every purchase");
    let purchases_only: Vec<Line> = remaining
        .iter()
        .filter(|l| l.kind == "purchase")
        .cloned()
        .collect();
    assert_purchases_match(
        backend,
        &stored_purchases(&db).await,
        &expected_purchases(&purchases_only, third.millis()),
    );
}

/// Scores from ranking the stored rows equal the ranks for every number of buyers from 1 to
/// 12 (fewer than five, and each remainder of a division by five), with every buyer's
/// values distinct, so that a score boundary off by one position shows.
async fn later_computations_score_like_the_ranks_for_any_number_of_buyers(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let now = retail_now();
    let start = now.millis() - 30 * DAY;
    let mut lines = Vec::new();
    for buyer in 1..=12_i64 {
        // Buyer b places b orders, the last one b hours after the start, and spends less
        // the later it comes.
        let new: Vec<Line> = (0..buyer)
            .map(|order| Line {
                contact: format!("b{buyer:02}"),
                kind: "purchase".to_string(),
                at: start + buyer * 3_600_000 - order * 60_000,
                amount: Some(if order == 0 {
                    (13 - buyer) as f64 * 5.0
                } else {
                    0.0
                }),
                order: Some(format!("b{buyer}-{order}")),
                category: None,
            })
            .collect();
        store_lines(&db, &new).await;
        lines.extend(new);
        let summary = recompute(&db, DEFAULT_WORKSPACE, now, &TraitSettings::default())
            .await
            .unwrap();
        assert_eq!(summary.full, buyer == 1, "{backend:?} {buyer} buyers");
        let expected = expected_purchases(&lines, now.millis());
        assert_purchases_match(backend, &stored_purchases(&db).await, &expected);
        assert_bounds_match(backend, &db, &expected).await;
    }
}

/// Interest profiles are kept from one computation to the next with the same settings, and
/// the ones that can have changed are computed again: those of contacts with weighted events
/// stored since (here without ingestion's refresh), dated after the first computation's `now`
/// and come due, or aging past the 60 half-lives in between. The result equals computing
/// every profile.
async fn a_later_computation_catches_up_interest_profiles(backend: Backend) {
    let fx = Fixture::load(backend).await;
    let (fixture_lines, extra) = interest_lines(&fx);
    let mut lines: Vec<Line> = fixture_lines.into_iter().chain(extra.clone()).collect();
    // A half-life of an hour: events leave the profiles 60 hours after they happened.
    let settings = TraitSettings {
        interests: InterestSettings {
            half_life_days: 1.0 / 24.0,
            ..InterestSettings::default()
        },
        ..TraitSettings::default()
    };
    let first = now().millis();
    let later = first + 20 * 3_600_000;
    let line = |contact: &str, kind: &str, at: i64, category: &str| Line {
        contact: contact.to_string(),
        kind: kind.to_string(),
        at,
        amount: None,
        order: None,
        category: Some(json!(category)),
    };
    let [late, aging, due] = ["p01", "p02", "p03"];
    let before_first = vec![
        // Counted at the first computation (50 hours old), too old at the later one.
        line(aging, "cart", first - 50 * 3_600_000, "aging"),
        line(aging, "view", first - 3_600_000, "kitchen"),
        // Dated after the first computation.
        line(due, "search", first + 5 * 3_600_000, "garden"),
    ];
    store_lines(&fx.db, &extra).await;
    store_lines(&fx.db, &before_first).await;
    lines.extend(before_first);
    let summary = recompute(
        &fx.db,
        DEFAULT_WORKSPACE,
        Timestamp::from_millis(first),
        &settings,
    )
    .await
    .unwrap();
    assert!(summary.full);
    let then = expected_interests(&lines, first, &settings.interests);
    assert_interests_match(backend, &stored_interests(&fx.db).await, &then);

    // Stored after the first computation, dated before it.
    let after_first = vec![line(late, "cart", first - 2 * 3_600_000, "astronomy")];
    store_lines(&fx.db, &after_first).await;
    lines.extend(after_first);
    let summary = recompute(
        &fx.db,
        DEFAULT_WORKSPACE,
        Timestamp::from_millis(later),
        &settings,
    )
    .await
    .unwrap();
    assert!(
        !summary.full,
        "a later computation keeps the stored profiles"
    );
    let now_expected = expected_interests(&lines, later, &settings.interests);
    for contact in [late, aging, due] {
        assert_ne!(
            then.get(contact),
            now_expected.get(contact),
            "{contact}'s profile changes, so the case says something"
        );
    }
    assert_interests_match(backend, &stored_interests(&fx.db).await, &now_expected);
    assert_eq!(summary.interest_contacts as usize, now_expected.len());
}

on_both_backends!(
    a_later_computation_catches_up_interest_profiles,
    a_later_computation_catches_up_what_was_stored_since,
    later_computations_score_like_the_ranks_for_any_number_of_buyers,
    rfm_on_the_online_retail_sample_matches_an_independent_computation,
    interests_and_rules_match_an_independent_computation,
    a_recomputation_replaces_the_previous_one,
    a_purchase_moves_its_contacts_traits_before_the_next_computation,
    interest_profiles_follow_new_events_before_the_next_computation,
);
