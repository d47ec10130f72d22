//! Cross-tabs against an independent count in plain Rust over the same fixture, on SQLite and
//! PostgreSQL: attribute values with top N, `(other)` and `(none)`, numeric buckets, a stored
//! segment, an event flag, traits, a filter, an empty workspace, and errors naming the field.

use std::collections::BTreeMap;

use clarion_model::DEFAULT_WORKSPACE;
use clarion_segment::{CrosstabRequest, SegmentError, crosstab};
use clarion_testkit::{Backend, TestDb, on_both_backends};
use sea_orm::{ConnectionTrait, DatabaseConnection, sea_query::Query};
use serde_json::{Value, json};

use crate::fixture::{DAY, Fixture, Person, now};

/// The traits the test gives a person, or none (no purchases).
fn traits_of(i: usize) -> Option<(&'static str, i64, f64)> {
    // (rfm_segment, rfm_recency, revenue)
    if i % 4 == 3 {
        return None;
    }
    let segment = ["champions", "loyal", "at_risk"][i % 3];
    Some((segment, (i % 5) as i64 + 1, (i * 17 % 200) as f64))
}

/// When a person with traits last bought: between 3 hours and 39 days before `now()`.
fn last_purchase_of(i: usize) -> i64 {
    now().millis() - (i as i64 * 7 % 40) * DAY - 3 * 3_600_000
}

async fn ids(db: &DatabaseConnection) -> BTreeMap<String, i64> {
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
                row.try_get("", "external_id").unwrap(),
                row.try_get("", "id").unwrap(),
            )
        })
        .collect()
}

/// Stores traits, the segment `germans` with its current members, and a past member.
async fn prepare(fx: &Fixture) {
    let ids = ids(&fx.db).await;
    for (i, p) in fx.people.iter().enumerate() {
        let Some((segment, recency, revenue)) = traits_of(i) else {
            continue;
        };
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
                ids[&p.external_id].into(),
                DEFAULT_WORKSPACE.0.into(),
                1_i64.into(),
                revenue.into(),
                0_i64.into(),
                last_purchase_of(i).into(),
                recency.into(),
                3_i64.into(),
                3_i64.into(),
                segment.into(),
                revenue.into(),
                0_i64.into(),
            ])
            .to_owned();
        fx.db.execute(&insert).await.unwrap();
    }
    let insert = Query::insert()
        .into_table("segments")
        .columns([
            "workspace_id",
            "slug",
            "name",
            "description",
            "category",
            "kind",
            "rule",
            "created_at",
            "updated_at",
        ])
        .values_panic([
            DEFAULT_WORKSPACE.0.into(),
            "germans".into(),
            "Germans".into(),
            "".into(),
            "geographic".into(),
            "dynamic".into(),
            json!({"attr": "country", "op": "=", "value": "DE"})
                .to_string()
                .into(),
            0_i64.into(),
            0_i64.into(),
        ])
        .to_owned();
    fx.db.execute(&insert).await.unwrap();
    let segment: i64 = fx
        .db
        .query_one(&Query::select().column("id").from("segments").to_owned())
        .await
        .unwrap()
        .unwrap()
        .try_get("", "id")
        .unwrap();
    for (i, p) in fx.people.iter().enumerate() {
        let current = p.country == Some("DE");
        // p01 (AT) was a member once and left: not a member now.
        if !current && i != 1 {
            continue;
        }
        let insert = Query::insert()
            .into_table("segment_memberships")
            .columns(["segment_id", "contact_id", "entered_at", "exited_at"])
            .values_panic([
                segment.into(),
                ids[&p.external_id].into(),
                0_i64.into(),
                if current { None } else { Some(5_i64) }.into(),
            ])
            .to_owned();
        fx.db.execute(&insert).await.unwrap();
    }
}

type Label = Box<dyn Fn(usize, &Person) -> String>;

/// Checks the database's table against counts made here: every cell, total and percentage.
async fn check(fx: &Fixture, request: Value, rows: Label, columns: Label, keep: Label) {
    let parsed = CrosstabRequest::from_json(&request).unwrap();
    let table = crosstab(&fx.db, DEFAULT_WORKSPACE, &parsed, now())
        .await
        .unwrap_or_else(|e| panic!("{request}: {e}"));
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut in_scope = 0;
    for (i, p) in fx.people.iter().enumerate() {
        if keep(i, p) != "yes" {
            continue;
        }
        in_scope += 1;
        *expected.entry((rows(i, p), columns(i, p))).or_default() += 1;
    }
    assert_eq!(table.total, in_scope, "{request}");
    for ((r, c), n) in &expected {
        assert!(
            table.rows.contains(r) && table.columns.contains(c),
            "{request}: {r} × {c} ({n}) missing from {:?} × {:?}",
            table.rows,
            table.columns
        );
    }
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    for (i, r) in table.rows.iter().enumerate() {
        let row_total: u64 = expected
            .iter()
            .filter(|((er, _), _)| er == r)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(table.row_totals[i], row_total, "{request}: row {r}");
        for (j, c) in table.columns.iter().enumerate() {
            let column_total: u64 = expected
                .iter()
                .filter(|((_, ec), _)| ec == c)
                .map(|(_, n)| n)
                .sum();
            assert_eq!(
                table.column_totals[j], column_total,
                "{request}: column {c}"
            );
            let n = expected.get(&(r.clone(), c.clone())).copied().unwrap_or(0);
            let cell = &table.cells[i][j];
            assert_eq!(cell.count, n, "{request}: {r} × {c}");
            let pct = |of: u64| {
                if of == 0 {
                    0.0
                } else {
                    100.0 * n as f64 / of as f64
                }
            };
            assert!(close(cell.row_pct, pct(row_total)), "{request}: {r} × {c}");
            assert!(
                close(cell.column_pct, pct(column_total)),
                "{request}: {r} × {c}"
            );
            assert!(close(cell.total_pct, pct(in_scope)), "{request}: {r} × {c}");
        }
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn all() -> Label {
    Box::new(|_, _| "yes".to_string())
}

async fn crosstabs_match_an_independent_count(backend: Backend) {
    let fx = Fixture::load(backend).await;
    prepare(&fx).await;
    let now = now().millis();
    let purchased_90d: Vec<bool> = (0..fx.people.len())
        .map(|i| {
            fx.of(i)
                .any(|h| h.kind == "purchase" && h.at >= now - 90 * DAY && h.at <= now)
        })
        .collect();

    // Countries tie at six contacts each: the top two are the first in code-point order,
    // the other two are (other), missing ones (none). Against an event flag.
    let flag = purchased_90d.clone();
    check(
        &fx,
        json!({"rows": {"attr": "country", "top": 2},
               "columns": {"rule": {"event": "purchase", "within": "90d"}}}),
        Box::new(|_, p| match p.country {
            None => "(none)".to_string(),
            Some(c @ ("AT" | "CH")) => c.to_string(),
            Some(_) => "(other)".to_string(),
        }),
        Box::new(move |i, _| yes_no(flag[i])),
        all(),
    )
    .await;

    // A custom number attribute in buckets, against a stored segment (p01 left it).
    check(
        &fx,
        json!({"rows": {"attr": "age", "edges": [30, 50]}, "columns": {"segment": "germans"}}),
        Box::new(|_, p| match p.age {
            None => "(none)".to_string(),
            Some(a) if a < 30.0 => "< 30".to_string(),
            Some(a) if a < 50.0 => "30-50".to_string(),
            Some(_) => "50+".to_string(),
        }),
        Box::new(|_, p| {
            if p.country == Some("DE") {
                "member"
            } else {
                "not member"
            }
            .to_string()
        }),
        all(),
    )
    .await;

    // A trait against a custom boolean, only for contacts matching a filter in text form.
    check(
        &fx,
        json!({"rows": {"trait": "rfm_segment"}, "columns": {"attr": "vip"},
               "filter": "country != \"FR\""}),
        Box::new(|i, _| {
            traits_of(i).map_or("(none)".to_string(), |(segment, _, _)| segment.to_string())
        }),
        Box::new(|_, p| p.vip.map_or("(none)".to_string(), |v| v.to_string())),
        Box::new(|_, p| yes_no(p.country.is_some_and(|c| c != "FR"))),
    )
    .await;

    // Trait buckets against trait scores; a segment rule as the filter.
    check(
        &fx,
        json!({"rows": {"trait": "revenue", "edges": [50, 100.5]},
               "columns": {"trait": "rfm_recency"},
               "filter": {"not": {"segment": "germans"}}}),
        Box::new(|i, _| match traits_of(i) {
            None => "(none)".to_string(),
            Some((_, _, r)) if r < 50.0 => "< 50".to_string(),
            Some((_, _, r)) if r < 100.5 => "50-100.5".to_string(),
            Some(_) => "100.5+".to_string(),
        }),
        Box::new(|i, _| traits_of(i).map_or("(none)".to_string(), |(_, r, _)| r.to_string())),
        Box::new(|_, p| yes_no(p.country != Some("DE"))),
    )
    .await;

    // Days since the last purchase, counted at the cross-tab's moment (not stored).
    check(
        &fx,
        json!({"rows": {"trait": "recency_days", "edges": [7.125, 21]},
               "columns": {"trait": "rfm_segment"}}),
        Box::new(move |i, _| match traits_of(i) {
            None => "(none)".to_string(),
            Some(_) => {
                let days = (now - last_purchase_of(i)) as f64 / DAY as f64;
                if days < 7.125 {
                    "< 7.125"
                } else if days < 21.0 {
                    "7.125-21"
                } else {
                    "21+"
                }
                .to_string()
            }
        }),
        Box::new(|i, _| {
            traits_of(i).map_or("(none)".to_string(), |(segment, _, _)| segment.to_string())
        }),
        all(),
    )
    .await;

    // Two flags: the classic gender × purchased-in-90-days shape, with rules both ways.
    let flag = purchased_90d;
    check(
        &fx,
        json!({"rows": {"rule": "vip = true"}, "columns": {"rule": "purchase(90d)"}}),
        Box::new(|_, p| yes_no(p.vip == Some(true))),
        Box::new(move |i, _| yes_no(flag[i])),
        all(),
    )
    .await;
}

async fn labels_and_order_are_stable(backend: Backend) {
    let fx = Fixture::load(backend).await;
    prepare(&fx).await;
    let request = CrosstabRequest::from_json(&json!({
        "rows": {"attr": "country", "top": 2},
        "columns": {"attr": "age", "edges": [30, 50]},
    }))
    .unwrap();
    let table = crosstab(&fx.db, DEFAULT_WORKSPACE, &request, now())
        .await
        .unwrap();
    assert_eq!(table.rows, ["AT", "CH", "(other)", "(none)"]);
    assert_eq!(table.columns, ["< 30", "30-50", "50+", "(none)"]);
    assert_eq!(table.total, 30);

    // All values listed: no (other) row.
    let request = CrosstabRequest::from_json(&json!({
        "rows": {"attr": "country"}, "columns": {"segment": "germans"},
    }))
    .unwrap();
    let table = crosstab(&fx.db, DEFAULT_WORKSPACE, &request, now())
        .await
        .unwrap();
    assert_eq!(table.rows, ["AT", "CH", "DE", "FR", "(none)"]);
    assert_eq!(table.columns, ["member", "not member"]);
    assert_eq!(table.cells[2][0].count, 6);
    assert_eq!(table.cells[2][0].row_pct, 100.0);
}

async fn an_empty_workspace_gives_an_empty_table(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let db = test_db.migrated().await;
    let request = CrosstabRequest::from_json(&json!({
        "rows": {"attr": "country"},
        "columns": {"rule": "purchase(90d)"},
    }))
    .unwrap();
    let table = crosstab(&db, DEFAULT_WORKSPACE, &request, now())
        .await
        .unwrap();
    assert_eq!(table.rows, ["(none)"]);
    assert_eq!(table.columns, ["yes", "no"]);
    assert_eq!(table.total, 0);
    assert_eq!(table.row_totals, [0]);
    assert_eq!(table.column_totals, [0, 0]);
    for cell in &table.cells[0] {
        assert_eq!(cell.count, 0);
        assert_eq!(cell.row_pct, 0.0);
        assert_eq!(cell.column_pct, 0.0);
        assert_eq!(cell.total_pct, 0.0);
    }
}

fn error_paths(error: SegmentError) -> Vec<String> {
    match error {
        // A bad rule inside the request is a bad rule (invalid_rule), the rest a bad field.
        SegmentError::InvalidRequest(errors) | SegmentError::Invalid(errors) => {
            errors.into_iter().map(|e| e.path).collect()
        }
        other => panic!("expected InvalidRequest or Invalid, got {other}"),
    }
}

#[test]
fn malformed_requests_name_the_field() {
    let cases = [
        (json!({"rows": {"attr": "country"}}), "columns"),
        (
            json!({"rows": {"attr": "age", "edges": [50, 30]}, "columns": {"segment": "x"}}),
            "rows.edges[1]",
        ),
        (
            json!({"rows": {"attr": "age", "edges": []}, "columns": {"segment": "x"}}),
            "rows.edges",
        ),
        (
            json!({"rows": {"attr": "age", "top": 0}, "columns": {"segment": "x"}}),
            "rows.top",
        ),
        (
            json!({"rows": {"trait": "shoe_size"}, "columns": {"segment": "x"}}),
            "rows.trait",
        ),
        (
            json!({"rows": {"trait": "clv"}, "columns": {"segment": "x"}}),
            "rows.edges",
        ),
        (
            json!({"rows": {"attr": "a", "segment": "b"}, "columns": {"segment": "x"}}),
            "rows",
        ),
        (
            json!({"rows": {"attr": "a", "colour": 1}, "columns": {"segment": "x"}}),
            "rows.colour",
        ),
        (
            json!({"rows": {"attr": "a"}, "columns": {"rule": {"all": [{"attr": 1}]}}}),
            "columns.rule.all[0].attr",
        ),
        (
            json!({"rows": {"attr": "a"}, "columns": {"rule": "country in"}}),
            "columns.rule",
        ),
        (
            json!({"rows": {"attr": "a"}, "columns": {"segment": "x"}, "where": {}}),
            "where",
        ),
    ];
    for (request, path) in cases {
        let error = CrosstabRequest::from_json(&request).unwrap_err();
        assert_eq!(error_paths(error), [path], "{request}");
    }
}

async fn unknown_names_are_refused_with_their_path(backend: Backend) {
    let fx = Fixture::load(backend).await;
    prepare(&fx).await;
    let cases = [
        (
            json!({"rows": {"attr": "gender"}, "columns": {"segment": "germans"}}),
            "rows.attr",
        ),
        (
            json!({"rows": {"attr": "country"}, "columns": {"segment": "nobody"}}),
            "columns.segment",
        ),
        (
            json!({"rows": {"attr": "country", "edges": [1]}, "columns": {"segment": "germans"}}),
            "rows.attr",
        ),
        (
            json!({"rows": {"attr": "tags"}, "columns": {"segment": "germans"}}),
            "rows.attr",
        ),
        (
            json!({"rows": {"attr": "country"},
                   "columns": {"rule": {"attr": "shoe", "op": "=", "value": 1}}}),
            "columns.rule.attr",
        ),
        (
            json!({"rows": {"attr": "country"}, "columns": {"segment": "germans"},
                   "filter": {"all": [{"attr": "age", "op": "=", "value": "old"}]}}),
            "filter.all[0].value",
        ),
    ];
    for (request, path) in cases {
        let parsed = CrosstabRequest::from_json(&request).unwrap();
        let error = crosstab(&fx.db, DEFAULT_WORKSPACE, &parsed, now())
            .await
            .unwrap_err();
        assert_eq!(error_paths(error), [path], "{request}");
    }
    // Nothing of a hostile name reaches the SQL text: it is a bound value and simply unknown.
    let hostile = json!({"rows": {"attr": "country"},
        "columns": {"rule": {"attr": "country", "op": "=", "value": "x'); DROP TABLE contacts; --"}}});
    let parsed = CrosstabRequest::from_json(&hostile).unwrap();
    let table = crosstab(&fx.db, DEFAULT_WORKSPACE, &parsed, now())
        .await
        .unwrap();
    assert_eq!(table.total, 30);
    assert_eq!(table.column_totals, [0, 30]);
}

on_both_backends!(
    crosstabs_match_an_independent_count,
    labels_and_order_are_stable,
    an_empty_workspace_gives_an_empty_table,
    unknown_names_are_refused_with_their_path,
);
