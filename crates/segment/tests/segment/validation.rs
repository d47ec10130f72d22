//! Validation: each problem is reported with the path of its node.

use clarion_model::{AttributeName, AttributeType};
use clarion_segment::{Rule, RuleError, Schema, validate, validate_segment};
use serde_json::json;

fn schema() -> Schema {
    Schema::new()
        .with_attribute(AttributeName::parse("age").unwrap(), AttributeType::Number)
        .with_attribute(AttributeName::parse("vip").unwrap(), AttributeType::Boolean)
        .with_attribute(
            AttributeName::parse("birthday").unwrap(),
            AttributeType::Date,
        )
        .with_attribute(AttributeName::parse("tags").unwrap(), AttributeType::List)
        .with_segment(
            "germans",
            Rule::from_json(&json!({"attr": "country", "op": "=", "value": "DE"})).unwrap(),
        )
        .with_segment("a", Rule::from_json(&json!({"segment": "b"})).unwrap())
        .with_segment(
            "b",
            Rule::from_json(
                &json!({"any": [{"attr": "age", "op": ">", "value": 1}, {"segment": "a"}]}),
            )
            .unwrap(),
        )
        .with_segment(
            "broken",
            Rule::from_json(&json!({"attr": "shoe_size", "op": "exists"})).unwrap(),
        )
}

fn errors(value: serde_json::Value) -> Vec<RuleError> {
    validate(&Rule::from_json(&value).unwrap(), &schema()).unwrap_err()
}

fn assert_error(value: serde_json::Value, path: &str, message: &str) {
    let errors = errors(value.clone());
    assert!(
        errors
            .iter()
            .any(|e| e.path == path && e.message.contains(message)),
        "{value}: wanted {path}: {message}, got {errors:?}"
    );
}

#[test]
fn the_issue_example_is_valid_apart_from_its_unknown_segment() {
    let rule = json!({"all": [
        {"attr": "country", "op": "in", "value": ["DE", "AT", "CH"]},
        {"attr": "age", "op": "between", "value": [30, 50]},
        {"event": "purchase", "count": {"op": ">=", "value": 3}, "within": "90d"},
        {"event": "purchase", "sum": "amount", "op": ">=", "value": 500, "within": "365d"},
        {"not": {"event": "email_click", "within": "30d"}},
        {"trait": "rfm_segment", "op": "in", "value": ["champions", "loyal"]},
        {"interest": "cats", "op": ">=", "value": 0.4},
        {"segment": "vip-customers"}
    ]});
    let errors = errors(rule);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "all[7].segment");
    assert!(
        errors[0]
            .message
            .contains("no segment with slug \"vip-customers\"")
    );
}

#[test]
fn unknown_fields_and_traits_are_refused() {
    assert_error(
        json!({"all": [{"attr": "shoe_size", "op": "=", "value": 42}]}),
        "all[0].attr",
        "unknown field \"shoe_size\"",
    );
    assert_error(
        json!({"trait": "karma", "op": ">", "value": 1}),
        "trait",
        "unknown trait \"karma\"",
    );
    assert_error(
        json!({"trait": "rfm_segment", "op": "in", "value": ["champions", "vips"]}),
        "value[1]",
        "unknown RFM segment \"vips\"; the segments are champions, loyal,",
    );
    assert_error(
        json!({"trait": "last_purchase_at", "op": ">", "value": 3}),
        "value",
        "expected a date",
    );
    assert_error(
        json!({"event": "Purchase!"}),
        "event",
        "must start with a lower-case letter",
    );
    assert_error(
        json!({"event": "buy", "where": [{"prop": "a b", "op": "=", "value": 1}]}),
        "where[0].prop",
        "bad property name",
    );
}

#[test]
fn wrong_operand_types_are_refused() {
    assert_error(
        json!({"attr": "age", "op": "=", "value": "thirty"}),
        "value",
        "expected a number",
    );
    assert_error(
        json!({"attr": "age", "op": "contains", "value": 3}),
        "op",
        "does not apply to a number",
    );
    assert_error(
        json!({"attr": "vip", "op": "<", "value": true}),
        "op",
        "does not apply to a boolean",
    );
    assert_error(
        json!({"attr": "country", "op": "between", "value": ["A"]}),
        "value",
        "two values",
    );
    assert_error(
        json!({"attr": "country", "op": "in", "value": []}),
        "value",
        "non-empty list",
    );
    assert_error(
        json!({"attr": "country", "op": "in", "value": ["DE", 3]}),
        "value[1]",
        "expected a string",
    );
    assert_error(
        json!({"attr": "email", "op": "exists", "value": "x"}),
        "value",
        "takes no value",
    );
    assert_error(
        json!({"attr": "birthday", "op": ">", "value": "yesterday"}),
        "value",
        "expected a date",
    );
    assert_error(
        json!({"attr": "tags", "op": "=", "value": "x"}),
        "op",
        "does not apply",
    );
    assert_error(
        json!({"all": [{"attr": "age", "op": ">", "value": 1}, {"event": "buy", "count": {"op": ">=", "value": "3"}, "within": "9d"}]}),
        "all[1].count.value",
        "expected a number",
    );
    assert_error(
        json!({"event": "buy", "first": {"op": "<", "value": 3}}),
        "first.value",
        "expected a date",
    );
    assert_error(
        json!({"event": "buy", "where": [{"prop": "p", "op": "in", "value": ["a", 1]}]}),
        "where[0].value",
        "all of one kind",
    );
    assert_error(
        json!({"interest": "cats", "op": "=", "value": "high"}),
        "value",
        "expected a number",
    );
}

#[test]
fn windows_must_be_bounded_and_ordered() {
    assert_error(
        json!({"event": "buy", "count": {"op": ">", "value": 1}}),
        "within",
        "bounded window",
    );
    assert_error(
        json!({"event": "buy", "sum": "amount", "op": ">", "value": 1}),
        "within",
        "bounded window",
    );
    assert_error(
        json!({"event": "buy", "within": "0d"}),
        "within",
        "zero length",
    );
    assert_error(
        json!({"event": "buy", "between": ["2026-02-01", "2026-01-01"]}),
        "between",
        "ends before it starts",
    );
    assert_error(
        json!({"event": "buy", "between": ["2026-02-01", "soon"]}),
        "between",
        "expected two dates",
    );
}

#[test]
fn empty_combinators_are_refused() {
    assert_error(json!({"not": {"any": []}}), "not.any", "at least one rule");
}

#[test]
fn missing_and_cyclic_segments_are_refused() {
    assert_error(
        json!({"not": {"segment": "nope"}}),
        "not.segment",
        "no segment with slug \"nope\"",
    );
    assert_error(json!({"segment": "a"}), "segment", "cycle: a -> b -> a");
    assert_error(
        json!({"segment": "broken"}),
        "segment",
        "in segment \"broken\", attr: unknown field",
    );
    let own =
        Rule::from_json(&json!({"any": [{"segment": "germans"}, {"segment": "mine"}]})).unwrap();
    let errors = validate_segment("mine", &own, &schema()).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "any[1].segment");
    assert!(
        errors[0].message.contains("cycle: mine -> mine"),
        "{errors:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let errors = errors(json!({"all": [
        {"attr": "shoe_size", "op": "exists"},
        {"attr": "age", "op": "=", "value": "x"},
        {"event": "buy", "count": {"op": ">", "value": 1}}
    ]}));
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["all[0].attr", "all[1].value", "all[2].within"]);
}

#[test]
fn referenced_segments_are_inlined() {
    let valid = validate(
        &Rule::from_json(&json!({"not": {"segment": "germans"}})).unwrap(),
        &schema(),
    )
    .unwrap();
    assert_eq!(
        valid.rule(),
        &Rule::from_json(&json!({"not": {"attr": "country", "op": "=", "value": "DE"}})).unwrap()
    );
}
