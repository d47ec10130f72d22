//! Predicted CLV as traits, end to end on SQLite and PostgreSQL: purchase events of simulated
//! BG/NBD customers go in through ingestion, the recomputation fits the models and stores
//! every buyer's predictions, and rules on `p_alive` and `predicted_clv` select exactly the
//! contacts an independent computation in this test says they should.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use clarion_campaign::traits::{TraitsListener, recompute};
use clarion_contacts::{Ingest, events};
use clarion_kpi::clv::{
    ClvSettings, CustomerSummary, TimeUnit, fit_bgnbd, fit_gamma_gamma, predict,
};
use clarion_kpi::predictions;
use clarion_model::{DEFAULT_WORKSPACE, EventInput, Timestamp};
use clarion_segment::{PreviewOptions, Rule, Schema, TraitSettings, members, validate};
use clarion_testkit::{Backend, TestDb, on_both_backends};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;

/// 2026-06-01T00:00:00Z, the end of the observation.
const NOW: i64 = 20_605 * DAY;

struct Purchase {
    contact: String,
    at: i64,
    amount: f64,
}

/// Exponential with mean 1.
fn exp1(rng: &mut StdRng) -> f64 {
    -(1.0 - rng.random::<f64>()).ln()
}

/// Customers who buy at a Poisson rate λ ~ Gamma(2, 1/40 days) while alive and drop out
/// after each purchase with probability p ~ Beta(1, 3), with order values Gamma(4, ν),
/// ν ~ Gamma(3, 60): the processes BG/NBD and Gamma-Gamma assume. First purchases fall
/// within the 300 days before `NOW`.
fn simulate(customers: usize, seed: u64) -> Vec<Purchase> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for i in 0..customers {
        let contact = format!("buyer-{i:04}");
        let lambda = (exp1(&mut rng) + exp1(&mut rng)) / 40.0;
        let dropout = 1.0 - (1.0 - rng.random::<f64>()).powf(1.0 / 3.0);
        let nu = (exp1(&mut rng) + exp1(&mut rng) + exp1(&mut rng)) / 60.0;
        let mut at = NOW - rng.random_range(1..300 * DAY);
        loop {
            let value = (0..4).map(|_| exp1(&mut rng)).sum::<f64>() / nu;
            out.push(Purchase {
                contact: contact.clone(),
                at,
                amount: (value * 100.0).round() / 100.0,
            });
            if rng.random::<f64>() < dropout {
                break;
            }
            at += (exp1(&mut rng) / lambda * DAY as f64) as i64;
            if at > NOW {
                break;
            }
        }
    }
    out
}

async fn ingest(db: &DatabaseConnection, items: Vec<Value>) {
    let count = items.len();
    let items = items
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i, serde_json::from_value::<EventInput>(v).unwrap()))
        .collect();
    let options = events::IngestOptions {
        create_unknown_contacts: true,
        max_future_millis: 3650 * DAY,
        atomic: true,
    };
    let report = events::insert_batch(db, DEFAULT_WORKSPACE, items, options)
        .await
        .unwrap();
    assert_eq!(report.accepted, count, "{:?}", report.errors);
}

fn purchase_event(p: &Purchase, n: usize) -> Value {
    json!({
        "external_id": p.contact,
        "kind": "purchase",
        "occurred_at": Timestamp::from_millis(p.at),
        "amount": p.amount,
        "idempotency_key": format!("order-{n}"),
    })
}

/// Each buyer's summary as the crate docs define it, computed here from the purchases:
/// distinct UTC purchase days, repeat days, days from first to last and to `now`, the mean
/// of the repeat days' totals.
fn expected_summaries(purchases: &[Purchase], now: i64) -> BTreeMap<String, CustomerSummary> {
    let mut days: BTreeMap<&str, BTreeMap<i64, f64>> = BTreeMap::new();
    for p in purchases.iter().filter(|p| p.at <= now) {
        *days
            .entry(&p.contact)
            .or_default()
            .entry(p.at / DAY)
            .or_default() += p.amount;
    }
    days.into_iter()
        .map(|(contact, days)| {
            let first = *days.keys().next().unwrap();
            let last = *days.keys().last().unwrap();
            let repeat: Vec<f64> = days.values().skip(1).copied().collect();
            let summary = CustomerSummary {
                frequency: repeat.len() as u32,
                recency: (last - first) as f64,
                age: (now - first * DAY) as f64 / DAY as f64,
                monetary: if repeat.is_empty() {
                    0.0
                } else {
                    repeat.iter().sum::<f64>() / repeat.len() as f64
                },
            };
            (contact.to_owned(), summary)
        })
        .collect()
}

#[derive(Debug)]
struct Stored {
    frequency: i64,
    recency: f64,
    age: f64,
    p_alive: f64,
    expected_purchases: f64,
    expected_order_value: Option<f64>,
    predicted_clv: Option<f64>,
}

async fn stored(db: &DatabaseConnection) -> BTreeMap<String, Stored> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT c.external_id, p.frequency, p.recency, p.age, p.p_alive, p.expected_purchases, \
             p.expected_order_value, p.predicted_clv FROM contact_predictions p JOIN contacts c ON c.id = p.contact_id",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get("", "external_id").unwrap(),
                Stored {
                    frequency: r.try_get("", "frequency").unwrap(),
                    recency: r.try_get("", "recency").unwrap(),
                    age: r.try_get("", "age").unwrap(),
                    p_alive: r.try_get("", "p_alive").unwrap(),
                    expected_purchases: r.try_get("", "expected_purchases").unwrap(),
                    expected_order_value: r.try_get("", "expected_order_value").unwrap(),
                    predicted_clv: r.try_get("", "predicted_clv").unwrap(),
                },
            )
        })
        .collect()
}

async fn members_of(db: &DatabaseConnection, rule: Value) -> BTreeSet<String> {
    let rule = Rule::from_json(&rule).unwrap();
    let valid = validate(&rule, &Schema::new()).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    let ids = members(
        db,
        DEFAULT_WORKSPACE,
        &valid,
        Timestamp::from_millis(NOW),
        None,
        10_000,
        PreviewOptions::default(),
    )
    .await
    .unwrap();
    let names: BTreeMap<i64, String> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, external_id FROM contacts",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "id").unwrap(),
                r.try_get("", "external_id").unwrap(),
            )
        })
        .collect();
    ids.iter().map(|id| names[&id.0].clone()).collect()
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
        "{what}: stored {got}, expected {want}"
    );
}

async fn predicted_clv_traits(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = test.migrated().await;
    let mut purchases = simulate(400, 7);
    // A purchase after `now` (a late-arriving future order) counts for nobody yet.
    purchases.push(Purchase {
        contact: "buyer-0000".into(),
        at: NOW + 5 * DAY,
        amount: 999.0,
    });
    let mut items: Vec<Value> = purchases
        .iter()
        .enumerate()
        .map(|(n, p)| purchase_event(p, n))
        .collect();
    // Contacts who only browse, and refunds, are not purchases.
    for i in 0..25 {
        items.push(json!({"external_id": format!("browser-{i}"), "kind": "view", "occurred_at": Timestamp::from_millis(NOW - i * DAY)}));
    }
    items.push(json!({"external_id": "buyer-0001", "kind": "refund", "occurred_at": Timestamp::from_millis(NOW - DAY), "amount": 50.0}));
    ingest(&db, items).await;

    let settings = ClvSettings {
        horizon_days: 180.0,
        step_days: 30.0,
        discount_rate: 0.01,
        unit: TimeUnit::Days,
    };
    let done = recompute(
        &db,
        DEFAULT_WORKSPACE,
        Timestamp::from_millis(NOW),
        &TraitSettings::default(),
        &settings,
    )
    .await
    .unwrap();

    let expected = expected_summaries(&purchases, NOW);
    let summaries: Vec<CustomerSummary> = expected.values().copied().collect();
    assert_eq!(done.predictions.customers, 400);
    assert_eq!(
        done.predictions.repeat_customers,
        summaries.iter().filter(|c| c.frequency > 0).count() as u64
    );
    assert!(
        done.predictions.repeat_customers > 100,
        "the simulation has repeat buyers"
    );
    let bg = fit_bgnbd(&summaries).unwrap().params;
    let gg = fit_gamma_gamma(&summaries).unwrap().params;
    let fit = done.predictions.bg_nbd.unwrap().params;
    for (got, want, name) in [
        (fit.r, bg.r, "r"),
        (fit.alpha, bg.alpha, "alpha"),
        (fit.a, bg.a, "a"),
        (fit.b, bg.b, "b"),
    ] {
        close(got, want, &format!("{backend:?} {name}"));
    }
    let fit_gg = done.predictions.gamma_gamma.unwrap().params;
    close(fit_gg.p, gg.p, "p");
    close(fit_gg.q, gg.q, "q");
    close(fit_gg.gamma, gg.gamma, "gamma");
    let kept = predictions::stored_fit(&db, DEFAULT_WORKSPACE)
        .await
        .unwrap()
        .unwrap();
    close(kept.r, fit.r, "stored r");
    assert_eq!(kept.customers, 400);
    assert_eq!(kept.unit, "days");

    let rows = stored(&db).await;
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{backend:?}: buyers with predictions"
    );
    let mut p_alive_low = BTreeSet::new();
    let mut valuable = BTreeSet::new();
    let mut clvs: Vec<f64> = Vec::new();
    for (contact, summary) in &expected {
        let row = &rows[contact];
        assert_eq!(
            row.frequency,
            i64::from(summary.frequency),
            "{backend:?} {contact}"
        );
        close(row.recency, summary.recency, &format!("{contact} recency"));
        close(row.age, summary.age, &format!("{contact} age"));
        let want = predict(&bg, &gg, summary, &settings);
        close(
            row.p_alive,
            want.p_alive,
            &format!("{backend:?} {contact} p_alive"),
        );
        close(
            row.expected_purchases,
            want.expected_purchases,
            &format!("{contact} expected purchases"),
        );
        close(
            row.expected_order_value.unwrap(),
            want.expected_order_value.unwrap(),
            &format!("{contact} order value"),
        );
        close(
            row.predicted_clv.unwrap(),
            want.predicted_clv.unwrap(),
            &format!("{contact} clv"),
        );
        clvs.push(want.predicted_clv.unwrap());
    }
    clvs.sort_by(f64::total_cmp);
    let threshold = clvs[clvs.len() / 2];
    for (contact, summary) in &expected {
        let want = predict(&bg, &gg, summary, &settings);
        if want.p_alive < 0.5 {
            p_alive_low.insert(contact.clone());
        }
        if want.predicted_clv.unwrap() >= threshold {
            valuable.insert(contact.clone());
        }
    }
    assert!(
        !p_alive_low.is_empty() && p_alive_low.len() < expected.len(),
        "{}",
        p_alive_low.len()
    );

    // Rules read the predictions as traits; contacts without a purchase have none.
    assert_eq!(
        members_of(&db, json!({"trait": "p_alive", "op": "<", "value": 0.5})).await,
        p_alive_low,
        "{backend:?}"
    );
    assert_eq!(
        members_of(
            &db,
            json!({"trait": "predicted_clv", "op": ">=", "value": threshold})
        )
        .await,
        valuable
    );
    let browsers: BTreeSet<String> = (0..25).map(|i| format!("browser-{i}")).collect();
    assert_eq!(
        members_of(&db, json!({"trait": "p_alive", "op": "not_exists"})).await,
        browsers
    );
    let both = members_of(
        &db,
        json!({"all": [{"trait": "p_alive", "op": "<", "value": 0.5}, {"trait": "rfm_recency", "op": ">=", "value": 1}]}),
    )
    .await;
    assert_eq!(both, p_alive_low, "prediction and segment traits combine");

    // Time passes and the future order arrives: the next recomputation sees it.
    let later = NOW + 10 * DAY;
    let done = recompute(
        &db,
        DEFAULT_WORKSPACE,
        Timestamp::from_millis(later),
        &TraitSettings::default(),
        &settings,
    )
    .await
    .unwrap();
    assert_eq!(done.predictions.customers, 400);
    let rows = stored(&db).await;
    let before = expected["buyer-0000"];
    let after = expected_summaries(&purchases, later)["buyer-0000"];
    assert_eq!(after.frequency, before.frequency + 1);
    assert_eq!(
        rows["buyer-0000"].frequency,
        i64::from(after.frequency),
        "{backend:?}"
    );
}

/// With no repeat purchase anywhere the models cannot be fitted: the old fit and
/// predictions are removed, and the summary says why.
async fn no_repeat_buyers_no_predictions(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = test.migrated().await;
    let purchases = simulate(300, 11);
    let items: Vec<Value> = purchases
        .iter()
        .enumerate()
        .map(|(n, p)| purchase_event(p, n))
        .collect();
    ingest(&db, items).await;
    let settings = ClvSettings::default();
    let at = Timestamp::from_millis(NOW);
    recompute(
        &db,
        DEFAULT_WORKSPACE,
        at,
        &TraitSettings::default(),
        &settings,
    )
    .await
    .unwrap();
    assert!(!stored(&db).await.is_empty());

    // Just after the very first purchase nobody has bought again yet.
    let earliest = purchases.iter().map(|p| p.at).min().unwrap();
    let early = Timestamp::from_millis(earliest + DAY / 2);
    let done = recompute(
        &db,
        DEFAULT_WORKSPACE,
        early,
        &TraitSettings::default(),
        &settings,
    )
    .await
    .unwrap();
    assert_eq!(done.predictions.bg_nbd, None);
    assert!(
        done.predictions
            .not_fitted
            .as_deref()
            .unwrap_or("")
            .contains("repeat purchase"),
        "{:?}",
        done.predictions.not_fitted
    );
    assert!(
        stored(&db).await.is_empty(),
        "{backend:?}: stale predictions were removed"
    );
    assert_eq!(
        predictions::stored_fit(&db, DEFAULT_WORKSPACE)
            .await
            .unwrap(),
        None
    );
}

/// A purchase stored through ingestion moves its contact's purchase traits and predictions
/// before the batch answers: the predictions with the stored fit, at the moment the row
/// says it was written, as this test computes them from the purchases.
async fn a_purchase_through_ingestion_moves_traits_and_predictions_at_once(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = test.migrated().await;
    let mut purchases = simulate(300, 5);
    let items: Vec<Value> = purchases
        .iter()
        .enumerate()
        .map(|(n, p)| purchase_event(p, n))
        .collect();
    ingest(&db, items).await;
    let settings = ClvSettings {
        horizon_days: 90.0,
        step_days: 30.0,
        discount_rate: 0.02,
        unit: TimeUnit::Weeks,
    };
    let done = recompute(
        &db,
        DEFAULT_WORKSPACE,
        Timestamp::from_millis(NOW),
        &TraitSettings::default(),
        &settings,
    )
    .await
    .unwrap();
    let bg = done.predictions.bg_nbd.unwrap().params;
    let gg = done.predictions.gamma_gamma.unwrap().params;
    let untouched = stored(&db).await;

    // The same settings the server passes: the default purchase kinds.
    let ingest = Ingest::new(db.clone()).with_listener(Arc::new(TraitsListener::new(
        db.clone(),
        TraitSettings::default(),
    )));
    let buyer = "buyer-0003";
    let new = Purchase {
        contact: buyer.into(),
        at: NOW + 2 * DAY,
        amount: 321.25,
    };
    let item: EventInput = serde_json::from_value(purchase_event(&new, purchases.len())).unwrap();
    purchases.push(new);
    let options = events::IngestOptions {
        create_unknown_contacts: false,
        max_future_millis: DAY,
        atomic: true,
    };
    let report = ingest
        .events(DEFAULT_WORKSPACE, vec![(0, item)], options)
        .await
        .unwrap();
    assert_eq!(report.accepted, 1, "{:?}", report.errors);

    // Purchase traits: revenue and the last purchase, as summed here.
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT t.revenue, t.last_purchase_at, CAST(t.rfm_recency AS BIGINT) AS r \
                 FROM contact_traits t JOIN contacts c ON c.id = t.contact_id WHERE c.external_id = '{buyer}'"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    let revenue: f64 = row.try_get("", "revenue").unwrap();
    let want: f64 = purchases
        .iter()
        .filter(|p| p.contact == buyer)
        .map(|p| p.amount)
        .sum();
    assert!(
        (revenue - (want * 100.0).round() / 100.0).abs() < 1e-9,
        "{backend:?}: {revenue} vs {want}"
    );
    assert_eq!(
        row.try_get::<i64>("", "last_purchase_at").unwrap(),
        NOW + 2 * DAY
    );
    assert_eq!(
        row.try_get::<i64>("", "r").unwrap(),
        5,
        "{backend:?}: the latest buyer"
    );

    // Predictions: the stored fit applied to the buyer's new summary.
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT p.computed_at FROM contact_predictions p JOIN contacts c ON c.id = p.contact_id \
                 WHERE c.external_id = '{buyer}'"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    let at: i64 = row.try_get("", "computed_at").unwrap();
    assert!(
        at > NOW + 2 * DAY,
        "{backend:?}: written at ingestion, {at}"
    );
    let days = expected_summaries(&purchases, at)[buyer];
    let weeks = CustomerSummary {
        recency: days.recency / 7.0,
        age: days.age / 7.0,
        ..days
    };
    assert_eq!(
        i64::from(weeks.frequency),
        i64::from(expected_summaries(&purchases, NOW)[buyer].frequency) + 1,
        "a new purchase day"
    );
    let want = predict(&bg, &gg, &weeks, &settings);
    let rows = stored(&db).await;
    let got = &rows[buyer];
    assert_eq!(got.frequency, i64::from(weeks.frequency), "{backend:?}");
    close(got.recency, weeks.recency, "recency in weeks");
    close(got.age, weeks.age, "age in weeks");
    close(got.p_alive, want.p_alive, &format!("{backend:?} p_alive"));
    close(
        got.expected_purchases,
        want.expected_purchases,
        "expected purchases",
    );
    close(
        got.expected_order_value.unwrap(),
        want.expected_order_value.unwrap(),
        "order value",
    );
    close(
        got.predicted_clv.unwrap(),
        want.predicted_clv.unwrap(),
        "clv",
    );
    // Nobody else's predictions moved.
    for (contact, row) in &rows {
        if contact != buyer {
            assert_eq!(
                row.p_alive, untouched[contact].p_alive,
                "{backend:?} {contact}"
            );
        }
    }
}

on_both_backends!(
    predicted_clv_traits,
    no_repeat_buyers_no_predictions,
    a_purchase_through_ingestion_moves_traits_and_predictions_at_once,
);
