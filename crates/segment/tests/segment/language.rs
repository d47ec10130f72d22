//! The JSON form, the text form, and that each reads back what the other writes.

use clarion_segment::{Rule, parse_text};
use serde_json::json;

fn from_json(value: serde_json::Value) -> Rule {
    Rule::from_json(&value).unwrap()
}

/// The issue's example rule, in JSON.
fn issue_example() -> serde_json::Value {
    json!({"all": [
        {"attr": "country", "op": "in", "value": ["DE", "AT", "CH"]},
        {"attr": "age", "op": "between", "value": [30, 50]},
        {"event": "purchase", "count": {"op": ">=", "value": 3}, "within": "90d"},
        {"event": "purchase", "sum": "amount", "op": ">=", "value": 500, "within": "365d"},
        {"not": {"event": "email_click", "within": "30d"}},
        {"trait": "rfm_segment", "op": "in", "value": ["champions", "loyal"]},
        {"interest": "cats", "op": ">=", "value": 0.4},
        {"segment": "vip-customers"}
    ]})
}

#[test]
fn the_issue_example_prints_as_text_and_reads_back() {
    let rule = from_json(issue_example());
    let text = rule.to_text();
    assert_eq!(
        text,
        "country in (\"DE\", \"AT\", \"CH\") and age between (30, 50) and purchase.count(90d) >= 3 \
         and purchase.sum(amount, 365d) >= 500 and not email_click(30d) \
         and trait rfm_segment in (\"champions\", \"loyal\") and interest cats >= 0.4 \
         and segment \"vip-customers\""
    );
    assert_eq!(parse_text(&text).unwrap(), rule);
    assert_eq!(rule.to_json(), issue_example());
}

#[test]
fn the_issue_text_example_parses() {
    let rule = parse_text(
        "country in (\"DE\", \"AT\") and purchase.count(90d) >= 3 and not email_click(30d)",
    )
    .unwrap();
    assert_eq!(
        rule.to_json(),
        json!({"all": [
            {"attr": "country", "op": "in", "value": ["DE", "AT"]},
            {"event": "purchase", "count": {"op": ">=", "value": 3}, "within": "90d"},
            {"not": {"event": "email_click", "within": "30d"}}
        ]})
    );
}

/// Rules covering every node, operator, literal and window shape, including names that
/// need quoting and degenerate combinators.
fn corpus() -> Vec<serde_json::Value> {
    let mut rules = vec![
        issue_example(),
        json!({"any": [{"attr": "city", "op": "=", "value": "Berlin"}, {"all": [{"attr": "a", "op": "<", "value": 1}, {"attr": "b", "op": ">", "value": -2.5}]}]}),
        json!({"all": [{"any": [{"attr": "x", "op": "exists"}, {"attr": "y", "op": "not_exists"}]}, {"attr": "z", "op": "!=", "value": true}]}),
        json!({"all": [{"attr": "a", "op": "=", "value": 1}, {"all": [{"attr": "b", "op": "=", "value": 2}, {"attr": "c", "op": "=", "value": 3}]}]}),
        json!({"any": [{"attr": "a", "op": "=", "value": 1}, {"any": [{"attr": "b", "op": "=", "value": 2}, {"attr": "c", "op": "=", "value": 3}]}]}),
        json!({"all": [{"attr": "a", "op": "=", "value": 1}]}),
        json!({"any": []}),
        json!({"not": {"not": {"all": [{"attr": "a", "op": "<=", "value": 1}, {"attr": "b", "op": ">=", "value": 2}]}}}),
        json!({"attr": "created_at", "op": "<", "value": {"ago": "30d"}}),
        json!({"attr": "birthday", "op": "between", "value": ["2000-01-01", {"ago": "52w"}]}),
        json!({"attr": "name", "op": "contains", "value": "an \"odd\" \\ name\n"}),
        json!({"attr": "email", "op": "ends_with", "value": "@example.com"}),
        json!({"attr": "email", "op": "starts_with", "value": "info"}),
        json!({"attr": "tags", "op": "not_in", "value": ["x"]}),
        json!({"attr": "and", "op": "=", "value": "keyword as a name"}),
        json!({"attr": "odd name`", "op": "=", "value": 1e20}),
        json!({"attr": "n", "op": "in", "value": []}),
        json!({"event": "page.view", "within": "12h"}),
        json!({"event": "purchase.count", "within": "1d"}),
        json!({"event": "all", "first": {"op": "<", "value": {"ago": "30d"}}}),
        json!({"event": "purchase", "last": {"op": ">=", "value": "2026-01-01"}, "between": ["2025-01-01", "2025-12-31T23:00:00Z"]}),
        json!({"event": "purchase", "avg": "price", "op": "between", "value": [10, 20.5], "within": "4w",
               "where": [{"prop": "category", "op": "=", "value": "books"}, {"prop": "gift", "op": "=", "value": false}]}),
        json!({"event": "purchase", "max": "amount", "op": ">", "value": 100}),
        json!({"event": "purchase", "min": "amount", "op": "<", "value": 5, "within": "30d"}),
        json!({"event": "purchase", "count": {"op": "=", "value": 0}, "within": "30d", "where": [{"prop": "coupon", "op": "exists"}]}),
        json!({"trait": "clv", "op": ">", "value": 1000}),
        json!({"segment": "a slug with \"quotes\""}),
    ];
    rules.push(json!({"all": rules.clone()}));
    rules
}

#[test]
fn every_rule_reads_back_from_its_text_and_its_json() {
    for value in corpus() {
        let rule = from_json(value.clone());
        let text = rule.to_text();
        assert_eq!(parse_text(&text).unwrap(), rule, "text: {text}");
        assert_eq!(rule.to_json(), value);
        let through_serde: Rule =
            serde_json::from_str(&serde_json::to_string(&rule).unwrap()).unwrap();
        assert_eq!(through_serde, rule);
    }
}

#[test]
fn text_reads_with_any_spacing_and_lines() {
    let rule = parse_text("(\n  age >= 30\n  or   city=\"Wien\")\nand not purchase[category=\"books\"].count( 90d )>=2").unwrap();
    assert_eq!(
        rule.to_text(),
        "(age >= 30 or city = \"Wien\") and not purchase[category = \"books\"].count(90d) >= 2"
    );
}

#[test]
fn text_errors_name_line_and_column() {
    let error = parse_text("country = \"DE\" and\n  age >> 3").unwrap_err();
    assert_eq!((error.line, error.column), (2, 8), "{error}");
    assert!(error.message.contains("expected a value"), "{error}");

    let error = parse_text("country in (\"DE\"").unwrap_err();
    assert_eq!((error.line, error.column), (1, 17), "{error}");
    assert!(error.message.contains("the end of the rule"), "{error}");

    let error = parse_text("purchase.count(90d)").unwrap_err();
    assert!(error.message.contains("expected an operator"), "{error}");

    let error = parse_text("a = 1 b = 2").unwrap_err();
    assert_eq!((error.line, error.column), (1, 7), "{error}");

    let error = parse_text("name = \"open").unwrap_err();
    assert_eq!((error.line, error.column), (1, 8), "{error}");
    assert!(error.message.contains("unterminated"), "{error}");
}

#[test]
fn json_errors_name_the_path_and_reject_unknown_keys() {
    let cases = [
        (
            json!({"all": [{"attr": "a", "op": "=", "value": 1, "colour": "red"}]}),
            "all[0].colour",
            "unknown key \"colour\"",
        ),
        (
            json!({"all": [{"attr": "a", "op": "=", "value": 1}, {"event": "buy", "count": {"op": "~", "value": 1}}]}),
            "all[1].count.op",
            "unknown operator \"~\"",
        ),
        (
            json!({"not": {"event": "buy", "within": "ninety days"}}),
            "not.within",
            "expected a span",
        ),
        (
            json!({"any": [{"event": "buy", "count": {"op": ">", "value": 1}, "sum": "amount"}]}),
            "any[0].sum",
            "measures one thing",
        ),
        (json!({"all": {"attr": "a"}}), "all", "expected an array"),
        (json!({"colour": "red"}), "", "expected one of all, any"),
        (
            json!({"attr": "a", "op": "=", "value": {"since": "3d"}}),
            "value.since",
            "unknown key \"since\"",
        ),
        (
            json!({"attr": "a", "op": "=", "value": null}),
            "value",
            "found null",
        ),
        (
            json!({"event": "buy", "where": [{"prop": "p", "op": "=", "value": 1, "x": 0}]}),
            "where[0].x",
            "unknown key",
        ),
    ];
    for (value, path, message) in cases {
        let error = Rule::from_json(&value).unwrap_err();
        assert_eq!(error.path, path, "{value}: {error}");
        assert!(error.message.contains(message), "{value}: {error}");
        let serde_error = serde_json::from_value::<Rule>(value)
            .unwrap_err()
            .to_string();
        assert!(serde_error.contains(message), "{serde_error}");
    }
}
