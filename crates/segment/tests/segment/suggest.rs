//! Suggested segments on a generated population with three planted groups of customers, on
//! SQLite and PostgreSQL: the groups found are the planted ones, their sizes add up, their
//! descriptions name what sets them apart, and their rules select them.

use std::collections::BTreeMap;

use clarion_contacts::contacts;
use clarion_model::{ContactUpsert, DEFAULT_WORKSPACE};
use clarion_segment::{
    Literal, Op, Operand, Rule, Schema, SegmentError, SuggestOptions, parse_text, suggest, validate,
};
use clarion_testkit::{Backend, TestDb, on_both_backends};
use sea_orm::{ConnectionTrait, DatabaseConnection, sea_query::Query};
use serde_json::json;

/// A planted customer: RFM scores and interest shares.
#[derive(Debug, Clone)]
struct Customer {
    group: &'static str,
    rfm: [i64; 3],
    interests: Vec<(&'static str, f64)>,
}

/// 50 recent, frequent, big-spending kitchen fans; 40 lapsed, small garden buyers; 30 average
/// book readers. Small deterministic jitter keeps the points apart.
fn population() -> Vec<Customer> {
    let mut people = Vec::new();
    let jitter = |i: usize| ((i * 37) % 11) as f64 / 100.0 - 0.05;
    for i in 0..50 {
        let kitchen = 0.70 + jitter(i);
        people.push(Customer {
            group: "kitchen",
            rfm: [
                4 + (i % 2) as i64,
                4 + (i % 3 == 0) as i64,
                5 - (i % 4 == 0) as i64,
            ],
            interests: vec![
                ("kitchen", kitchen),
                ("garden", 0.15),
                ("books", 0.15 - jitter(i)),
            ],
        });
    }
    for i in 0..40 {
        let garden = 0.75 + jitter(i);
        people.push(Customer {
            group: "garden",
            rfm: [
                1 + (i % 2) as i64,
                1 + (i % 3 == 0) as i64,
                2 - (i % 4 == 0) as i64,
            ],
            interests: vec![
                ("garden", garden),
                ("kitchen", 0.10),
                ("books", 0.15 - jitter(i)),
            ],
        });
    }
    for i in 0..30 {
        let books = 0.80 + jitter(i);
        people.push(Customer {
            group: "books",
            rfm: [3, 2 + (i % 3) as i64, 3],
            interests: vec![
                ("books", books),
                ("kitchen", 0.10),
                ("garden", 0.10 - jitter(i)),
            ],
        });
    }
    people
}

async fn store(db: &DatabaseConnection, people: &[Customer], browsers: usize) {
    let items = (0..people.len() + browsers)
        .map(|i| {
            let item: ContactUpsert =
                serde_json::from_value(json!({"external_id": format!("c{i:03}")})).unwrap();
            (i, item)
        })
        .collect();
    contacts::upsert_batch(db, DEFAULT_WORKSPACE, items, true)
        .await
        .unwrap();
    let rows = db
        .query_all(
            &Query::select()
                .columns(["id", "external_id"])
                .from("contacts")
                .to_owned(),
        )
        .await
        .unwrap();
    let ids: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "external_id").unwrap(),
                r.try_get("", "id").unwrap(),
            )
        })
        .collect();
    for i in 0..people.len() + browsers {
        let id = ids[&format!("c{i:03}")];
        let (rfm, interests) = match people.get(i) {
            Some(c) => (Some(c.rfm), c.interests.clone()),
            // Browsers: interests but no purchases, so no traits; they are not in the base.
            None => (None, vec![("garden", 1.0)]),
        };
        if let Some([r, f, m]) = rfm {
            let insert = Query::insert()
                .into_table("contact_traits")
                .columns([
                    "contact_id",
                    "workspace_id",
                    "orders",
                    "revenue",
                    "first_purchase_at",
                    "last_purchase_at",
                    "rfm_recency",
                    "rfm_frequency",
                    "rfm_monetary",
                    "rfm_segment",
                    "clv",
                    "computed_at",
                ])
                .values_panic([
                    id.into(),
                    DEFAULT_WORKSPACE.0.into(),
                    f.into(),
                    (m as f64 * 100.0).into(),
                    0_i64.into(),
                    0_i64.into(),
                    r.into(),
                    f.into(),
                    m.into(),
                    "loyal".into(),
                    0.0_f64.into(),
                    0_i64.into(),
                ])
                .to_owned();
            db.execute(&insert).await.unwrap();
        }
        for (category, score) in interests {
            let insert = Query::insert()
                .into_table("contact_interests")
                .columns(["contact_id", "workspace_id", "category", "score"])
                .values_panic([
                    id.into(),
                    DEFAULT_WORKSPACE.0.into(),
                    category.into(),
                    score.into(),
                ])
                .to_owned();
            db.execute(&insert).await.unwrap();
        }
    }
}

/// Evaluates a suggested rule on a planted customer, independently of the SQL compiler: the
/// rule is a conjunction of thresholds on RFM traits and interests.
fn selects(rule: &Rule, c: &Customer) -> bool {
    let number = |value: &Operand| match value {
        Operand::One(Literal::Number(n)) => n.as_f64().unwrap(),
        other => panic!("unexpected operand {other:?}"),
    };
    let compare = |actual: f64, op: Op, wanted: f64| match op {
        Op::Ge => actual >= wanted,
        Op::Le => actual <= wanted,
        other => panic!("unexpected operator {other:?}"),
    };
    match rule {
        Rule::All(rules) => rules.iter().all(|r| selects(r, c)),
        Rule::Trait(t) => {
            let at = ["rfm_recency", "rfm_frequency", "rfm_monetary"]
                .iter()
                .position(|n| *n == t.name)
                .unwrap();
            compare(c.rfm[at] as f64, t.op, number(&t.value))
        }
        Rule::Interest(i) => {
            let share = c
                .interests
                .iter()
                .find(|(name, _)| *name == i.name)
                .map_or(0.0, |(_, s)| *s);
            // A contact without a score for the category has none to compare.
            share > 0.0 && compare(share, i.op, number(&i.value))
        }
        other => panic!("unexpected rule {other}"),
    }
}

async fn suggestions_find_the_planted_groups(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let people = population();
    store(&db, &people, 10).await;

    let options = SuggestOptions {
        clusters: 3,
        // Fitted on half the base; everyone is assigned in pages of 16.
        sample: 60,
        seed: 7,
        categories: 5,
        page_size: 16,
    };
    let result = suggest(&db, DEFAULT_WORKSPACE, options).await.unwrap();
    assert_eq!(result.base, 120);
    assert_eq!(result.sampled, 60);
    assert_eq!(
        result.suggestions.iter().map(|s| s.size).sum::<u64>(),
        120,
        "sizes add up to the base"
    );
    let sizes: Vec<u64> = result.suggestions.iter().map(|s| s.size).collect();
    assert_eq!(sizes, [50, 40, 30]);
    let share_sum: f64 = result.suggestions.iter().map(|s| s.share_pct).sum();
    assert!((share_sum - 100.0).abs() < 1e-9);

    for (suggestion, planted) in result
        .suggestions
        .iter()
        .zip(["kitchen", "garden", "books"])
    {
        // The group's strongest interest is the planted one, and the description says so.
        let (top, _) = suggestion
            .profile
            .interests
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        assert_eq!(top, planted, "{suggestion:?}");
        assert!(
            suggestion
                .description
                .contains(&format!("interest in {planted}")),
            "{}",
            suggestion.description
        );
        // The rule selects exactly the planted group, judged here without SQL.
        let selected: Vec<&str> = people
            .iter()
            .filter(|c| selects(&suggestion.rule, c))
            .map(|c| c.group)
            .collect();
        let hits = selected.iter().filter(|g| **g == planted).count();
        let members = people.iter().filter(|c| c.group == planted).count();
        assert_eq!(hits, members, "{}: {selected:?}", suggestion.rule_text);
        assert_eq!(
            selected.len(),
            members,
            "{}: {selected:?}",
            suggestion.rule_text
        );
        assert_eq!(suggestion.rule_precision, 1.0);
        assert_eq!(suggestion.rule_recall, 1.0);
        // The rule is valid and its text form reads back as the same rule.
        validate(&suggestion.rule, &Schema::new()).unwrap();
        assert_eq!(parse_text(&suggestion.rule_text).unwrap(), suggestion.rule);
        assert!(
            suggestion.slug.starts_with("suggested-"),
            "{}",
            suggestion.slug
        );
    }
    let kitchen = &result.suggestions[0];
    assert!(
        kitchen
            .description
            .starts_with("recent, frequent, high-spending buyers"),
        "{}",
        kitchen.description
    );
    assert_eq!(kitchen.name, "Recent kitchen fans");
    let garden = &result.suggestions[1];
    assert!(
        garden
            .description
            .starts_with("lapsed, infrequent, low-spending buyers"),
        "{}",
        garden.description
    );
    assert_eq!(kitchen.category, "behavioural");

    // The same data and seed give the same answer.
    let again = suggest(&db, DEFAULT_WORKSPACE, options).await.unwrap();
    assert_eq!(again, result);
}

async fn suggestions_need_traits(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    // Contacts with interests but no traits.
    store(&db, &[], 5).await;
    let error = suggest(&db, DEFAULT_WORKSPACE, SuggestOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, SegmentError::TraitsMissing), "{error}");
    assert!(error.to_string().contains("compute traits"), "{error}");

    // More groups than customers, and options out of bounds, name the option.
    store_few(&db).await;
    for (options, path) in [
        (
            SuggestOptions {
                clusters: 4,
                ..SuggestOptions::default()
            },
            "clusters",
        ),
        (
            SuggestOptions {
                clusters: 1,
                ..SuggestOptions::default()
            },
            "clusters",
        ),
        (
            SuggestOptions {
                sample: 0,
                ..SuggestOptions::default()
            },
            "sample",
        ),
    ] {
        match suggest(&db, DEFAULT_WORKSPACE, options).await {
            Err(SegmentError::InvalidRequest(errors)) => assert_eq!(errors[0].path, path),
            other => panic!("{options:?}: {other:?}"),
        }
    }
}

/// Three customers in a workspace that had none.
async fn store_few(db: &DatabaseConnection) {
    let rows = db
        .query_all(&Query::select().column("id").from("contacts").to_owned())
        .await
        .unwrap();
    for (i, row) in rows.iter().take(3).enumerate() {
        let id: i64 = row.try_get("", "id").unwrap();
        let insert = Query::insert()
            .into_table("contact_traits")
            .columns([
                "contact_id",
                "workspace_id",
                "orders",
                "revenue",
                "first_purchase_at",
                "last_purchase_at",
                "rfm_recency",
                "rfm_frequency",
                "rfm_monetary",
                "rfm_segment",
                "clv",
                "computed_at",
            ])
            .values_panic([
                id.into(),
                DEFAULT_WORKSPACE.0.into(),
                1_i64.into(),
                1.0_f64.into(),
                0_i64.into(),
                0_i64.into(),
                (i as i64 + 1).into(),
                1_i64.into(),
                1_i64.into(),
                "new".into(),
                0.0_f64.into(),
                0_i64.into(),
            ])
            .to_owned();
        db.execute(&insert).await.unwrap();
    }
}

on_both_backends!(suggestions_find_the_planted_groups, suggestions_need_traits);
