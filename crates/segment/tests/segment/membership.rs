//! Membership computed by SQL against an independent computation in plain Rust over the
//! same fixture, for every operator and combinator, on SQLite and on PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clarion_model::{ContactId, DEFAULT_WORKSPACE, WorkspaceId};
use clarion_segment::{
    PreviewOptions, Rule, Schema, SegmentError, count, members, membership, report, store,
    validate, validate_segment,
};
use clarion_testkit::{Backend, on_both_backends};
use sea_orm::{ConnectionTrait, DatabaseConnection, sea_query::Query};
use serde_json::{Value, json};

use crate::fixture::{DAY, Fixture, Happening, Person, day, now};

type Keep = Box<dyn Fn(usize, &Person) -> bool>;

async fn ids_to_external(db: &DatabaseConnection) -> BTreeMap<i64, String> {
    let query = Query::select()
        .columns(["id", "external_id"])
        .from("contacts")
        .to_owned();
    db.query_all(&query)
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.try_get("", "id").unwrap(),
                row.try_get("", "external_id").unwrap(),
            )
        })
        .collect()
}

async fn schema(db: &DatabaseConnection) -> Schema {
    Schema::load(db, DEFAULT_WORKSPACE)
        .await
        .unwrap()
        .with_segment(
            "germans",
            Rule::from_json(&json!({"attr": "country", "op": "=", "value": "DE"})).unwrap(),
        )
}

async fn members_of(
    fx: &Fixture,
    schema: &Schema,
    names: &BTreeMap<i64, String>,
    rule: &Value,
) -> BTreeSet<String> {
    let rule = Rule::from_json(rule).unwrap();
    let valid = validate(&rule, schema).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    let ids = members(
        &fx.db,
        DEFAULT_WORKSPACE,
        &valid,
        now(),
        None,
        1_000,
        PreviewOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{rule}: {e}"));
    ids.iter().map(|id| names[&id.0].clone()).collect()
}

fn in_window(h: &Happening, days: i64) -> bool {
    h.at >= now().millis() - days * DAY && h.at <= now().millis()
}

/// Every case: a rule and the people it must select, computed without SQL.
fn cases(fx: &Fixture) -> Vec<(Value, BTreeSet<String>)> {
    let now = now().millis();
    let day_start = |text: &str| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    };
    let events: Vec<Vec<Happening>> = (0..fx.people.len())
        .map(|i| fx.of(i).cloned().collect())
        .collect();
    let purchases = move |i: usize, days: i64| -> Vec<Happening> {
        events[i]
            .iter()
            .filter(|h| h.kind == "purchase" && in_window(h, days))
            .cloned()
            .collect()
    };
    let all_events: Vec<Vec<Happening>> = (0..fx.people.len())
        .map(|i| fx.of(i).cloned().collect())
        .collect();
    let amounts = {
        let purchases = purchases.clone();
        move |i: usize, days: i64| -> Vec<f64> {
            purchases(i, days).iter().filter_map(|h| h.amount).collect()
        }
    };
    let birthday = |p: &Person| p.birthday.as_ref().map(|b| b[..10].to_string());
    let d100 = day(now - 100 * DAY);
    let b160 = day(now - 160 * DAY);
    let b400 = day(now - 400 * DAY);

    let p = purchases.clone();
    let a = amounts.clone();
    let e = all_events.clone();
    let mut cases: Vec<(Value, Keep)> = vec![
        // Built-in string fields.
        (
            json!({"attr": "country", "op": "=", "value": "DE"}),
            Box::new(|_, p| p.country == Some("DE")),
        ),
        (
            json!({"attr": "country", "op": "!=", "value": "DE"}),
            Box::new(|_, p| p.country.is_some_and(|c| c != "DE")),
        ),
        (
            json!({"attr": "country", "op": "in", "value": ["DE", "AT"]}),
            Box::new(|_, p| p.country.is_some_and(|c| ["DE", "AT"].contains(&c))),
        ),
        (
            json!({"attr": "country", "op": "not_in", "value": ["DE", "AT"]}),
            Box::new(|_, p| p.country.is_some_and(|c| !["DE", "AT"].contains(&c))),
        ),
        (
            json!({"attr": "country", "op": "exists"}),
            Box::new(|_, p| p.country.is_some()),
        ),
        (
            json!({"attr": "country", "op": "not_exists"}),
            Box::new(|_, p| p.country.is_none()),
        ),
        (
            json!({"attr": "city", "op": "<", "value": "Paris"}),
            Box::new(|_, p| p.city.is_some_and(|c| c < "Paris")),
        ),
        (
            json!({"attr": "city", "op": "<=", "value": "Paris"}),
            Box::new(|_, p| p.city.is_some_and(|c| c <= "Paris")),
        ),
        (
            json!({"attr": "city", "op": ">", "value": "Paris"}),
            Box::new(|_, p| p.city.is_some_and(|c| c > "Paris")),
        ),
        (
            json!({"attr": "city", "op": ">=", "value": "Paris"}),
            Box::new(|_, p| p.city.is_some_and(|c| c >= "Paris")),
        ),
        (
            json!({"attr": "city", "op": "between", "value": ["Bern", "Wien"]}),
            Box::new(|_, p| p.city.is_some_and(|c| ("Bern"..="Wien").contains(&c))),
        ),
        (
            json!({"attr": "city", "op": "contains", "value": "ü"}),
            Box::new(|_, p| p.city.is_some_and(|c| c.contains('ü'))),
        ),
        (
            json!({"attr": "email", "op": "ends_with", "value": "@mail.de"}),
            Box::new(|_, p| p.email.as_ref().is_some_and(|e| e.ends_with("@mail.de"))),
        ),
        (
            json!({"attr": "email", "op": "starts_with", "value": "user1"}),
            Box::new(|_, p| p.email.as_ref().is_some_and(|e| e.starts_with("user1"))),
        ),
        (
            json!({"attr": "email", "op": "contains", "value": "shop"}),
            Box::new(|_, p| p.email.as_ref().is_some_and(|e| e.contains("shop"))),
        ),
        (
            json!({"attr": "email_domain", "op": "=", "value": "example.com"}),
            Box::new(|_, p| {
                p.email
                    .as_ref()
                    .is_some_and(|e| e.ends_with("@example.com"))
            }),
        ),
        (
            json!({"attr": "time_zone", "op": "=", "value": "Asia/Tokyo"}),
            Box::new(|_, p| p.time_zone == Some("Asia/Tokyo")),
        ),
        // Built-in dates, to the millisecond; contact p03 was created exactly 30 days ago.
        (
            json!({"attr": "created_at", "op": "<", "value": {"ago": "30d"}}),
            Box::new(move |_, p| p.created_at < now - 30 * DAY),
        ),
        (
            json!({"attr": "created_at", "op": "<=", "value": {"ago": "30d"}}),
            Box::new(move |_, p| p.created_at <= now - 30 * DAY),
        ),
        (
            json!({"attr": "created_at", "op": ">", "value": {"ago": "30d"}}),
            Box::new(move |_, p| p.created_at > now - 30 * DAY),
        ),
        (
            json!({"attr": "created_at", "op": ">=", "value": {"ago": "30d"}}),
            Box::new(move |_, p| p.created_at >= now - 30 * DAY),
        ),
        (
            json!({"attr": "created_at", "op": "=", "value": {"ago": "30d"}}),
            Box::new(move |_, p| p.created_at == now - 30 * DAY),
        ),
        (
            json!({"attr": "created_at", "op": ">=", "value": "2026-05-01"}),
            Box::new(move |_, p| p.created_at >= day_start("2026-05-01")),
        ),
        (
            json!({"attr": "created_at", "op": "<=", "value": "2026-05-01"}),
            Box::new(move |_, p| p.created_at < day_start("2026-05-02")),
        ),
        (json!({"attr": "created_at", "op": "=", "value": d100}), {
            let d = d100.clone();
            Box::new(move |_, p| day(p.created_at) == d)
        }),
        (json!({"attr": "created_at", "op": "!=", "value": d100}), {
            let d = d100.clone();
            Box::new(move |_, p| day(p.created_at) != d)
        }),
        (
            json!({"attr": "created_at", "op": "between", "value": ["2026-01-01", "2026-03-31"]}),
            Box::new(move |_, p| {
                p.created_at >= day_start("2026-01-01") && p.created_at < day_start("2026-04-01")
            }),
        ),
        (
            json!({"attr": "created_at", "op": "<", "value": "2026-04-01T00:00:00+02:00"}),
            Box::new(move |_, p| p.created_at < day_start("2026-03-31") + 22 * 3_600_000),
        ),
        // Custom numbers, booleans, dates, lists and strings.
        (
            json!({"attr": "age", "op": ">", "value": 40}),
            Box::new(|_, p| p.age.is_some_and(|a| a > 40.0)),
        ),
        (
            json!({"attr": "age", "op": "<=", "value": 30.5}),
            Box::new(|_, p| p.age.is_some_and(|a| a <= 30.5)),
        ),
        (
            json!({"attr": "age", "op": "=", "value": 18.5}),
            Box::new(|_, p| p.age == Some(18.5)),
        ),
        (
            json!({"attr": "age", "op": "!=", "value": 25}),
            Box::new(|_, p| p.age.is_some_and(|a| a != 25.0)),
        ),
        (
            json!({"attr": "age", "op": "between", "value": [30, 50]}),
            Box::new(|_, p| p.age.is_some_and(|a| (30.0..=50.0).contains(&a))),
        ),
        (
            json!({"attr": "age", "op": "in", "value": [25, 32, 39]}),
            Box::new(|_, p| p.age.is_some_and(|a| [25.0, 32.0, 39.0].contains(&a))),
        ),
        (
            json!({"attr": "age", "op": "not_in", "value": [25, 32]}),
            Box::new(|_, p| p.age.is_some_and(|a| ![25.0, 32.0].contains(&a))),
        ),
        (
            json!({"attr": "age", "op": "not_exists"}),
            Box::new(|_, p| p.age.is_none()),
        ),
        (
            json!({"attr": "vip", "op": "=", "value": true}),
            Box::new(|_, p| p.vip == Some(true)),
        ),
        (
            json!({"attr": "vip", "op": "!=", "value": true}),
            Box::new(|_, p| p.vip == Some(false)),
        ),
        (
            json!({"attr": "vip", "op": "exists"}),
            Box::new(|_, p| p.vip.is_some()),
        ),
        (
            json!({"attr": "birthday", "op": "<", "value": "2025-06-01"}),
            Box::new(move |_, p| birthday(p).is_some_and(|b| b.as_str() < "2025-06-01")),
        ),
        (
            json!({"attr": "birthday", "op": ">=", "value": {"ago": "400d"}}),
            {
                let d = b400.clone();
                Box::new(move |_, p| birthday(p).is_some_and(|b| b >= d))
            },
        ),
        (json!({"attr": "birthday", "op": "=", "value": b160}), {
            let d = b160.clone();
            Box::new(move |_, p| birthday(p) == Some(d.clone()))
        }),
        (
            json!({"attr": "birthday", "op": "between", "value": ["2025-01-01", "2025-12-31"]}),
            Box::new(move |_, p| {
                birthday(p).is_some_and(|b| {
                    ("2025-01-01".to_string()..="2025-12-31".to_string()).contains(&b)
                })
            }),
        ),
        (
            json!({"attr": "tags", "op": "contains", "value": "a"}),
            Box::new(|_, p| p.tags.as_ref().is_some_and(|t| t.contains(&"a"))),
        ),
        (
            json!({"attr": "tags", "op": "in", "value": ["b", "c"]}),
            Box::new(|_, p| {
                p.tags
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|x| ["b", "c"].contains(x)))
            }),
        ),
        (
            json!({"attr": "tags", "op": "not_in", "value": ["a"]}),
            Box::new(|_, p| p.tags.as_ref().is_some_and(|t| !t.contains(&"a"))),
        ),
        (
            json!({"attr": "tags", "op": "exists"}),
            Box::new(|_, p| p.tags.is_some()),
        ),
        (
            json!({"attr": "nickname", "op": "starts_with", "value": "Ann"}),
            Box::new(|_, p| p.nickname.is_some_and(|n| n.starts_with("Ann"))),
        ),
        (
            json!({"attr": "nickname", "op": "ends_with", "value": "na"}),
            Box::new(|_, p| p.nickname.is_some_and(|n| n.ends_with("na"))),
        ),
        (
            json!({"attr": "nickname", "op": "ends_with", "value": "xanna-lena"}),
            Box::new(|_, _| false),
        ),
        (
            json!({"attr": "nickname", "op": "contains", "value": "-"}),
            Box::new(|_, p| p.nickname.is_some_and(|n| n.contains('-'))),
        ),
        (
            json!({"attr": "nickname", "op": "<", "value": "B"}),
            Box::new(|_, p| p.nickname.is_some_and(|n| n < "B")),
        ),
        (
            json!({"attr": "nickname", "op": "in", "value": ["Bob", "Ann"]}),
            Box::new(|_, p| p.nickname.is_some_and(|n| ["Bob", "Ann"].contains(&n))),
        ),
        // Events.
        (json!({"event": "purchase", "within": "90d"}), {
            let p = p.clone();
            Box::new(move |i, _| !p(i, 90).is_empty())
        }),
        (json!({"event": "purchase"}), {
            let e = e.clone();
            Box::new(move |i, _| e[i].iter().any(|h| h.kind == "purchase"))
        }),
        (json!({"not": {"event": "email_click", "within": "30d"}}), {
            let e = e.clone();
            Box::new(move |i, _| {
                !e[i]
                    .iter()
                    .any(|h| h.kind == "email_click" && in_window(h, 30))
            })
        }),
        (
            json!({"event": "purchase", "count": {"op": ">=", "value": 2}, "within": "90d"}),
            {
                let p = p.clone();
                Box::new(move |i, _| p(i, 90).len() >= 2)
            },
        ),
        (
            json!({"event": "purchase", "count": {"op": "=", "value": 0}, "within": "90d"}),
            {
                let p = p.clone();
                Box::new(move |i, _| p(i, 90).is_empty())
            },
        ),
        (
            json!({"event": "purchase", "count": {"op": "between", "value": [1, 2]}, "within": "365d"}),
            {
                let p = p.clone();
                Box::new(move |i, _| (1..=2).contains(&p(i, 365).len()))
            },
        ),
        (
            json!({"event": "purchase", "sum": "amount", "op": ">=", "value": 50, "within": "365d"}),
            {
                let a = a.clone();
                Box::new(move |i, _| a(i, 365).iter().sum::<f64>() >= 50.0)
            },
        ),
        (
            json!({"event": "purchase", "sum": "amount", "op": "<", "value": 1, "within": "365d"}),
            {
                let a = a.clone();
                Box::new(move |i, _| a(i, 365).iter().sum::<f64>() < 1.0)
            },
        ),
        (
            json!({"event": "purchase", "avg": "amount", "op": ">", "value": 30, "within": "365d"}),
            {
                let a = a.clone();
                Box::new(move |i, _| {
                    let v = a(i, 365);
                    !v.is_empty() && v.iter().sum::<f64>() / v.len() as f64 > 30.0
                })
            },
        ),
        (
            json!({"event": "purchase", "min": "amount", "op": "<", "value": 25, "within": "365d"}),
            {
                let a = a.clone();
                Box::new(move |i, _| a(i, 365).iter().any(|x| *x < 25.0))
            },
        ),
        (
            json!({"event": "purchase", "max": "amount", "op": "between", "value": [20, 60], "within": "365d"}),
            {
                let a = a.clone();
                Box::new(move |i, _| {
                    a(i, 365)
                        .into_iter()
                        .reduce(f64::max)
                        .is_some_and(|m| (20.0..=60.0).contains(&m))
                })
            },
        ),
        (
            json!({"event": "purchase", "sum": "price", "op": ">", "value": 20, "within": "365d"}),
            {
                let p = p.clone();
                Box::new(move |i, _| p(i, 365).iter().filter_map(|h| h.price).sum::<f64>() > 20.0)
            },
        ),
        (
            json!({"event": "purchase", "count": {"op": ">=", "value": 1}, "within": "365d", "where": [{"prop": "category", "op": "=", "value": "toys"}]}),
            {
                let p = p.clone();
                Box::new(move |i, _| p(i, 365).iter().any(|h| h.category == Some("toys")))
            },
        ),
        (
            json!({"event": "purchase", "within": "365d", "where": [{"prop": "gift", "op": "=", "value": true}]}),
            {
                let p = p.clone();
                Box::new(move |i, _| p(i, 365).iter().any(|h| h.gift == Some(true)))
            },
        ),
        (
            json!({"event": "purchase", "within": "365d", "where": [{"prop": "gift", "op": "not_exists"}, {"prop": "price", "op": ">", "value": 20}]}),
            {
                let p = p.clone();
                Box::new(move |i, _| {
                    p(i, 365)
                        .iter()
                        .any(|h| h.gift.is_none() && h.price.is_some_and(|x| x > 20.0))
                })
            },
        ),
        (
            json!({"event": "purchase", "within": "365d", "where": [{"prop": "category", "op": "in", "value": ["toys", "games"]}]}),
            {
                let p = p.clone();
                Box::new(move |i, _| p(i, 365).iter().any(|h| h.category == Some("toys")))
            },
        ),
        (
            json!({"event": "purchase", "first": {"op": "<", "value": {"ago": "60d"}}}),
            {
                let e = e.clone();
                Box::new(move |i, _| {
                    e[i].iter()
                        .filter(|h| h.kind == "purchase")
                        .map(|h| h.at)
                        .min()
                        .is_some_and(|t| t < now - 60 * DAY)
                })
            },
        ),
        (
            json!({"event": "purchase", "last": {"op": ">=", "value": {"ago": "10d"}}}),
            {
                let e = e.clone();
                Box::new(move |i, _| {
                    e[i].iter()
                        .filter(|h| h.kind == "purchase")
                        .map(|h| h.at)
                        .max()
                        .is_some_and(|t| t >= now - 10 * DAY)
                })
            },
        ),
        (
            json!({"event": "purchase", "between": ["2026-03-01", "2026-04-30"]}),
            {
                let e = e.clone();
                Box::new(move |i, _| {
                    e[i].iter().any(|h| {
                        h.kind == "purchase"
                            && h.at >= day_start("2026-03-01")
                            && h.at < day_start("2026-05-01")
                    })
                })
            },
        ),
        (json!({"event": "email_click", "within": "30d"}), {
            let e = e.clone();
            Box::new(move |i, _| {
                e[i].iter()
                    .any(|h| h.kind == "email_click" && in_window(h, 30))
            })
        }),
        // Combinators and segment references.
        (
            json!({"all": [{"attr": "country", "op": "in", "value": ["DE", "AT"]}, {"event": "purchase", "within": "90d"}]}),
            {
                let p = p.clone();
                Box::new(move |i, q| {
                    q.country.is_some_and(|c| ["DE", "AT"].contains(&c)) && !p(i, 90).is_empty()
                })
            },
        ),
        (
            json!({"any": [{"attr": "vip", "op": "=", "value": true}, {"not": {"attr": "age", "op": ">", "value": 30}}]}),
            Box::new(|_, p| p.vip == Some(true) || !p.age.is_some_and(|a| a > 30.0)),
        ),
        (
            json!({"not": {"any": [{"attr": "country", "op": "=", "value": "DE"}, {"all": [{"attr": "city", "op": "exists"}, {"not": {"attr": "vip", "op": "=", "value": false}}]}]}}),
            Box::new(|_, p| {
                !(p.country == Some("DE") || (p.city.is_some() && p.vip != Some(false)))
            }),
        ),
        (
            json!({"all": [{"attr": "age", "op": "exists"}]}),
            Box::new(|_, p| p.age.is_some()),
        ),
        (
            json!({"not": {"segment": "germans"}}),
            Box::new(|_, p| p.country != Some("DE")),
        ),
    ];
    cases
        .drain(..)
        .map(|(rule, keep)| {
            let expected = fx.expected(|i, p| keep(i, p));
            (rule, expected)
        })
        .collect()
}

async fn every_condition_matches_an_independent_computation(backend: Backend) {
    let fx = Fixture::load(backend).await;
    let names = ids_to_external(&fx.db).await;
    let schema = schema(&fx.db).await;
    let everyone = fx.expected(|_, _| true);
    let cases = cases(&fx);
    // A case the fixture cannot tell apart from "nobody" or "everybody" proves little.
    let trivial: Vec<String> = cases
        .iter()
        .filter(|(_, expected)| expected.is_empty() || expected.len() == everyone.len())
        .map(|(rule, _)| rule.to_string())
        .collect();
    assert_eq!(
        trivial,
        [json!({"attr": "nickname", "op": "ends_with", "value": "xanna-lena"}).to_string()]
    );
    for (rule, expected) in cases {
        let got = members_of(&fx, &schema, &names, &rule).await;
        assert_eq!(got, expected, "{backend:?} {rule}");
        // The negation is the exact complement, missing values included.
        let negated = members_of(&fx, &schema, &names, &json!({"not": rule})).await;
        let complement: BTreeSet<String> = everyone.difference(&expected).cloned().collect();
        assert_eq!(negated, complement, "{backend:?} not {rule}");
    }
}

async fn counts_and_pages_agree_with_members(backend: Backend) {
    let fx = Fixture::load(backend).await;
    let schema = schema(&fx.db).await;
    let rule = clarion_segment::parse_text(
        "country in (\"DE\", \"AT\", \"CH\") or purchase.count(365d) >= 1",
    )
    .unwrap();
    let valid = validate(&rule, &schema).unwrap();
    let options = PreviewOptions {
        timeout: Some(Duration::from_secs(30)),
    };
    let all = members(
        &fx.db,
        DEFAULT_WORKSPACE,
        &valid,
        now(),
        None,
        1_000,
        options,
    )
    .await
    .unwrap();
    let total = count(&fx.db, DEFAULT_WORKSPACE, &valid, now(), options)
        .await
        .unwrap();
    assert_eq!(total as usize, all.len());
    assert!(total > 10 && total < 30, "{total}");

    let mut paged: Vec<ContactId> = Vec::new();
    let mut after = None;
    loop {
        let page = members(&fx.db, DEFAULT_WORKSPACE, &valid, now(), after, 4, options)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        after = page.last().copied();
        paged.extend(page);
    }
    assert_eq!(paged, all);

    // Another workspace sees none of these contacts.
    let other = count(&fx.db, WorkspaceId(2), &valid, now(), options)
        .await
        .unwrap();
    assert_eq!(other, 0);
}

/// A preview that runs longer than its timeout answers `Timeout`, and the database stays
/// usable.
async fn a_preview_that_outlasts_its_timeout_is_stopped(backend: Backend) {
    let fx = Fixture::load(backend).await;
    let schema = schema(&fx.db).await;
    // Many events for one contact, written set-based, so that an aggregate over a JSON
    // property has real work to do.
    let insert = match backend {
        Backend::Postgres => format!(
            "INSERT INTO events (workspace_id, contact_id, kind, occurred_at, amount, properties, received_at) \
             SELECT 1, c.id, 'purchase', {now} - g, g, '{{\"price\": 1.5}}'::jsonb, 0 \
             FROM contacts c, generate_series(1, 50000) g WHERE c.external_id = 'p00'",
            now = now().millis()
        ),
        Backend::Sqlite => format!(
            "INSERT INTO events (workspace_id, contact_id, kind, occurred_at, amount, properties, received_at) \
             WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 50000) \
             SELECT 1, c.id, 'purchase', {now} - n, n, '{{\"price\": 1.5}}', 0 \
             FROM contacts c, g WHERE c.external_id = 'p00'",
            now = now().millis()
        ),
    };
    fx.db.execute_unprepared(&insert).await.unwrap();
    let rule = clarion_segment::parse_text("purchase[price > 1].sum(price, 52w) > 1000").unwrap();
    let valid = validate(&rule, &schema).unwrap();
    let hurried = PreviewOptions {
        timeout: Some(Duration::from_millis(1)),
    };
    let error = count(&fx.db, DEFAULT_WORKSPACE, &valid, now(), hurried)
        .await
        .unwrap_err();
    assert!(matches!(error, SegmentError::Timeout(_)), "{error}");

    let patient = PreviewOptions {
        timeout: Some(Duration::from_secs(60)),
    };
    let names = ids_to_external(&fx.db).await;
    let found = members(&fx.db, DEFAULT_WORKSPACE, &valid, now(), None, 10, patient)
        .await
        .unwrap();
    let found: Vec<&str> = found.iter().map(|id| names[&id.0].as_str()).collect();
    assert_eq!(found, ["p00"]);
}

/// Every case saved as a segment and materialized has exactly the expected current members;
/// materializing again, or refreshing every contact, changes nothing.
async fn materialized_segments_hold_the_same_members(backend: Backend) {
    let fx = Fixture::load(backend).await;
    let names = ids_to_external(&fx.db).await;
    let new = |slug: String, rule: Rule| store::NewSegment {
        name: slug.clone(),
        slug,
        description: String::new(),
        category: store::Category::Behavioural,
        rule: Some(rule),
    };
    let germans = Rule::from_json(&json!({"attr": "country", "op": "=", "value": "DE"})).unwrap();
    let stored = store::create(
        &fx.db,
        DEFAULT_WORKSPACE,
        new("germans".into(), germans.clone()),
        now(),
    )
    .await
    .unwrap();
    let schema = store::schema(&fx.db, DEFAULT_WORKSPACE).await.unwrap();
    let valid = validate_segment("germans", &germans, &schema).unwrap();
    membership::materialize(&fx.db, &stored, &valid, now())
        .await
        .unwrap();
    let all_contacts: Vec<ContactId> = names.keys().map(|id| ContactId(*id)).collect();
    for (i, (rule, expected)) in cases(&fx).into_iter().enumerate() {
        let rule = Rule::from_json(&rule).unwrap();
        let slug = format!("case-{i}");
        let schema = store::schema(&fx.db, DEFAULT_WORKSPACE).await.unwrap();
        let valid = validate_segment(&slug, &rule, &schema).unwrap();
        let segment = store::create(
            &fx.db,
            DEFAULT_WORKSPACE,
            new(slug.clone(), rule.clone()),
            now(),
        )
        .await
        .unwrap();
        let changes = membership::materialize(&fx.db, &segment, &valid, now())
            .await
            .unwrap();
        assert_eq!(
            changes.entered as usize,
            expected.len(),
            "{backend:?} {rule}"
        );
        let stored: BTreeSet<String> = fx
            .db
            .query_all(&report::members_of(segment.id))
            .await
            .unwrap()
            .iter()
            .map(|row| names[&row.try_get::<i64>("", "contact_id").unwrap()].clone())
            .collect();
        assert_eq!(stored, expected, "{backend:?} {rule}");
        let again = membership::materialize(&fx.db, &segment, &valid, now())
            .await
            .unwrap();
        assert_eq!(again, membership::Changes::default(), "{backend:?} {rule}");
        let segment = store::get(&fx.db, DEFAULT_WORKSPACE, segment.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(segment.member_count as usize, expected.len());
    }
    let refreshed =
        membership::refresh_contacts(&fx.db, DEFAULT_WORKSPACE, &all_contacts, now(), false)
            .await
            .unwrap();
    assert_eq!(refreshed, membership::Changes::default(), "{backend:?}");
}

on_both_backends!(
    materialized_segments_hold_the_same_members,
    every_condition_matches_an_independent_computation,
    a_preview_that_outlasts_its_timeout_is_stopped,
    counts_and_pages_agree_with_members,
);
