//! The rule language: a tree of conditions on contacts, read from and written to JSON, and
//! printed to and parsed from a compact text form.
//!
//! A [`Rule`] here is only well-formed; whether its fields exist and its operands fit is
//! decided by [`crate::validate`].
//!
//! JSON form, one object per node:
//! - `{"all": [rule, ...]}`, `{"any": [rule, ...]}`, `{"not": rule}`
//! - `{"attr": "country", "op": "in", "value": ["DE", "AT"]}`; `exists` and `not_exists` take
//!   no `value`; `between` takes two values; a date value is `"2026-01-31"`, an RFC 3339 time,
//!   or relative: `{"ago": "30d"}` (spans count `h`, `d` or `w`), so "created more than 30
//!   days ago" is `{"attr": "created_at", "op": "<", "value": {"ago": "30d"}}`.
//! - `{"event": "purchase"}` (performed, ever), with an optional window
//!   `"within": "90d"` or `"between": ["2026-01-01", "2026-03-31"]`, optional property
//!   filters `"where": [{"prop": "category", "op": "=", "value": "books"}]`, and at most one
//!   measure: `"count": {"op": ">=", "value": 3}`, `"sum": "amount", "op": ">=", "value": 500`
//!   (also `avg`, `min`, `max`; the field is `amount` or a numeric property),
//!   `"first": {"op": "<", "value": {"ago": "60d"}}` or `"last": {...}`.
//! - `{"trait": "rfm_segment", "op": "in", "value": [...]}`,
//!   `{"interest": "cats", "op": ">=", "value": 0.4}`, `{"segment": "vip-customers"}`.
//!
//! Text form (`and` binds tighter than `or`; `not` tighter than both):
//! ```text
//! rule      := and ("or" and)*
//! and       := unary ("and" unary)*
//! unary     := "not" unary | "(" rule ")" | ("all" | "any") "(" [rule ("," rule)*] ")"
//!            | "segment" STRING | "trait" NAME cmp | "interest" NAME cmp
//!            | NAME cmp                                   -- attribute
//!            | NAME ["[" NAME cmp ("," NAME cmp)* "]"] event
//! event     := "(" [window] ")"                           -- performed
//!            | ".count(" [window] ")" cmp | ".first(" [window] ")" cmp | ".last(" ... ")" cmp
//!            | ".sum(" NAME ["," window] ")" cmp          -- also avg, min, max
//! window    := SPAN | "between" STRING "and" STRING
//! cmp       := ("exists" | "not_exists") | OP value | OP "(" [value ("," value)*] ")"
//! value     := STRING | NUMBER | "true" | "false" | "ago(" SPAN ")"
//! ```
//! e.g. `country in ("DE", "AT") and purchase.count(90d) >= 3 and not email_click(30d)`,
//! `purchase[category = "books"].sum(amount, 365d) >= 500`,
//! `created_at < ago(30d) or segment "vip-customers"`. Strings are JSON strings; a name that
//! is a keyword or holds other characters is written in backquotes: `` `and` = 1 ``.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::RuleError;

/// A condition on a contact, or a combination of conditions.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Every one of the rules holds.
    All(Vec<Rule>),
    /// At least one of the rules holds.
    Any(Vec<Rule>),
    /// The rule does not hold.
    Not(Box<Rule>),
    /// A built-in contact field or a custom attribute.
    Attr(AttrCondition),
    /// What the contact did: performed, how often, how much, when first or last.
    Event(EventCondition),
    /// A computed trait such as `rfm_segment` or `clv`.
    Trait(Comparison<String>),
    /// An interest score between 0 and 1.
    Interest(Comparison<String>),
    /// Membership of another segment, by slug.
    Segment(String),
}

/// `attr op value`, e.g. `country in ("DE", "AT")`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrCondition {
    pub attr: String,
    pub op: Op,
    pub value: Operand,
}

/// A named thing compared with an operand: a trait or an interest.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison<N> {
    pub name: N,
    pub op: Op,
    pub value: Operand,
}

/// A condition on the events of one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCondition {
    /// The event kind, e.g. `purchase`.
    pub event: String,
    /// Only events whose properties pass every filter count.
    pub filters: Vec<PropertyFilter>,
    /// Only events in this window count; `None` means the contact's whole history.
    pub window: Option<Window>,
    pub measure: Measure,
}

/// A filter on one event property, e.g. `category = "books"`.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyFilter {
    pub prop: String,
    pub op: Op,
    pub value: Operand,
}

/// The time span events are taken from.
#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    /// From `now - span` (inclusive) to `now` (inclusive).
    Within(Span),
    /// From the start of the first date to the end of the second (dates or RFC 3339 times).
    Between(String, String),
}

/// What an event condition measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// At least one event happened (negate with `not` for "not performed").
    Performed,
    /// The number of events compared with a number.
    Count { op: Op, value: Operand },
    /// sum / avg / min / max of a numeric field compared with a number.
    Aggregate {
        func: Aggregate,
        field: String,
        op: Op,
        value: Operand,
    },
    /// The time of the first event compared with a date.
    First { op: Op, value: Operand },
    /// The time of the last event compared with a date.
    Last { op: Op, value: Operand },
}

/// An aggregate over a numeric event field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Avg,
    Min,
    Max,
}

impl Aggregate {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Sum => "sum",
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "sum" => Aggregate::Sum,
            "avg" => Aggregate::Avg,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            _ => return None,
        })
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Between,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Exists,
    NotExists,
}

impl Op {
    /// Every operator, for error messages and tests.
    pub const ALL: [Op; 14] = [
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::Between,
        Op::In,
        Op::NotIn,
        Op::Contains,
        Op::StartsWith,
        Op::EndsWith,
        Op::Exists,
        Op::NotExists,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Between => "between",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Contains => "contains",
            Op::StartsWith => "starts_with",
            Op::EndsWith => "ends_with",
            Op::Exists => "exists",
            Op::NotExists => "not_exists",
        }
    }

    pub fn parse(text: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == text)
    }

    /// Whether the operator takes no operand.
    pub fn is_unary(self) -> bool {
        matches!(self, Op::Exists | Op::NotExists)
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// For `exists` and `not_exists`.
    None,
    One(Literal),
    /// For `in`, `not_in` and `between`.
    List(Vec<Literal>),
}

/// A constant in a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A string; for dates `YYYY-MM-DD` or RFC 3339 with an offset.
    String(String),
    Number(serde_json::Number),
    Bool(bool),
    /// A moment relative to the evaluation time: `now - span`.
    Ago(Span),
}

/// A length of time: `12h`, `90d`, `4w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub amount: u32,
    pub unit: SpanUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanUnit {
    Hours,
    Days,
    Weeks,
}

impl Span {
    /// The span in milliseconds.
    pub fn millis(self) -> i64 {
        let hour = 3_600_000_i64;
        let per_unit = match self.unit {
            SpanUnit::Hours => hour,
            SpanUnit::Days => 24 * hour,
            SpanUnit::Weeks => 7 * 24 * hour,
        };
        i64::from(self.amount) * per_unit
    }

    /// Parses `<digits><h|d|w>`.
    pub fn parse(text: &str) -> Option<Span> {
        let unit = match text.chars().last()? {
            'h' => SpanUnit::Hours,
            'd' => SpanUnit::Days,
            'w' => SpanUnit::Weeks,
            _ => return None,
        };
        let digits = &text[..text.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Span {
            amount: digits.parse().ok()?,
            unit,
        })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            SpanUnit::Hours => 'h',
            SpanUnit::Days => 'd',
            SpanUnit::Weeks => 'w',
        };
        write!(f, "{}{unit}", self.amount)
    }
}

impl Rule {
    /// Whether `test` holds for this node or any node below it.
    pub fn any_node(&self, test: &dyn Fn(&Rule) -> bool) -> bool {
        test(self)
            || match self {
                Rule::All(rules) | Rule::Any(rules) => rules.iter().any(|r| r.any_node(test)),
                Rule::Not(rule) => rule.any_node(test),
                _ => false,
            }
    }

    /// Whether the rule names the segment `slug` (directly, not through other segments).
    pub fn refers_to(&self, slug: &str) -> bool {
        self.any_node(&|rule| matches!(rule, Rule::Segment(s) if s == slug))
    }
}

// ---------------------------------------------------------------------------------------
// JSON

impl Rule {
    /// Reads a rule from its JSON form; the error names the path of the bad node.
    pub fn from_json(value: &Value) -> Result<Rule, RuleError> {
        rule_from_json(value, "")
    }

    /// The rule's JSON form; [`Rule::from_json`] reads it back unchanged.
    pub fn to_json(&self) -> Value {
        match self {
            Rule::All(rules) => {
                json!({ "all": rules.iter().map(Rule::to_json).collect::<Vec<_>>() })
            }
            Rule::Any(rules) => {
                json!({ "any": rules.iter().map(Rule::to_json).collect::<Vec<_>>() })
            }
            Rule::Not(rule) => json!({ "not": rule.to_json() }),
            Rule::Attr(c) => comparison_json("attr", &c.attr, c.op, &c.value),
            Rule::Trait(c) => comparison_json("trait", &c.name, c.op, &c.value),
            Rule::Interest(c) => comparison_json("interest", &c.name, c.op, &c.value),
            Rule::Segment(slug) => json!({ "segment": slug }),
            Rule::Event(e) => event_json(e),
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Rule::from_json(&value).map_err(serde::de::Error::custom)
    }
}

fn comparison_json(key: &str, name: &str, op: Op, value: &Operand) -> Value {
    let mut map = Map::new();
    map.insert(key.to_string(), Value::String(name.to_string()));
    map.insert("op".to_string(), Value::String(op.as_str().to_string()));
    if let Some(value) = operand_json(value) {
        map.insert("value".to_string(), value);
    }
    Value::Object(map)
}

fn operand_json(operand: &Operand) -> Option<Value> {
    match operand {
        Operand::None => None,
        Operand::One(literal) => Some(literal_json(literal)),
        Operand::List(items) => Some(Value::Array(items.iter().map(literal_json).collect())),
    }
}

fn literal_json(literal: &Literal) -> Value {
    match literal {
        Literal::String(s) => Value::String(s.clone()),
        Literal::Number(n) => Value::Number(n.clone()),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Ago(span) => json!({ "ago": span.to_string() }),
    }
}

fn op_value_json(map: &mut Map<String, Value>, op: Op, value: &Operand) {
    map.insert("op".to_string(), Value::String(op.as_str().to_string()));
    if let Some(value) = operand_json(value) {
        map.insert("value".to_string(), value);
    }
}

fn event_json(e: &EventCondition) -> Value {
    let mut map = Map::new();
    map.insert("event".to_string(), Value::String(e.event.clone()));
    match &e.measure {
        Measure::Performed => {}
        Measure::Count { op, value } => {
            let mut inner = Map::new();
            op_value_json(&mut inner, *op, value);
            map.insert("count".to_string(), Value::Object(inner));
        }
        Measure::First { op, value } => {
            let mut inner = Map::new();
            op_value_json(&mut inner, *op, value);
            map.insert("first".to_string(), Value::Object(inner));
        }
        Measure::Last { op, value } => {
            let mut inner = Map::new();
            op_value_json(&mut inner, *op, value);
            map.insert("last".to_string(), Value::Object(inner));
        }
        Measure::Aggregate {
            func,
            field,
            op,
            value,
        } => {
            map.insert(func.as_str().to_string(), Value::String(field.clone()));
            op_value_json(&mut map, *op, value);
        }
    }
    match &e.window {
        None => {}
        Some(Window::Within(span)) => {
            map.insert("within".to_string(), Value::String(span.to_string()));
        }
        Some(Window::Between(from, to)) => {
            map.insert("between".to_string(), json!([from, to]));
        }
    }
    if !e.filters.is_empty() {
        let filters = e
            .filters
            .iter()
            .map(|f| comparison_json("prop", &f.prop, f.op, &f.value))
            .collect();
        map.insert("where".to_string(), Value::Array(filters));
    }
    Value::Object(map)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn error(path: impl Into<String>, message: impl Into<String>) -> RuleError {
    RuleError {
        path: path.into(),
        message: message.into(),
    }
}

/// The JSON kind of a value, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const NODE_KEYS: &str = "all, any, not, attr, event, trait, interest or segment";

fn rule_from_json(value: &Value, path: &str) -> Result<Rule, RuleError> {
    let Value::Object(map) = value else {
        return Err(error(
            path,
            format!(
                "expected an object with one of {NODE_KEYS}, found {}",
                kind(value)
            ),
        ));
    };
    let tag = [
        "all", "any", "not", "attr", "event", "trait", "interest", "segment",
    ]
    .into_iter()
    .find(|key| map.contains_key(*key))
    .ok_or_else(|| {
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        error(
            path,
            format!(
                "expected one of {NODE_KEYS}, found keys [{}]",
                keys.join(", ")
            ),
        )
    })?;
    match tag {
        "all" | "any" => {
            only_keys(map, path, &[tag], "a combinator")?;
            let items = map
                .get(tag)
                .and_then(Value::as_array)
                .ok_or_else(|| error(join(path, tag), "expected an array of rules"))?;
            let rules = items
                .iter()
                .enumerate()
                .map(|(i, item)| rule_from_json(item, &format!("{}[{i}]", join(path, tag))))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if tag == "all" {
                Rule::All(rules)
            } else {
                Rule::Any(rules)
            })
        }
        "not" => {
            only_keys(map, path, &["not"], "a not")?;
            let inner = map.get("not").unwrap_or(&Value::Null);
            Ok(Rule::Not(Box::new(rule_from_json(
                inner,
                &join(path, "not"),
            )?)))
        }
        "segment" => {
            only_keys(map, path, &["segment"], "a segment reference")?;
            Ok(Rule::Segment(string_at(map, path, "segment")?))
        }
        "attr" | "trait" | "interest" => {
            let what = match tag {
                "attr" => "an attribute condition",
                "trait" => "a trait condition",
                _ => "an interest condition",
            };
            only_keys(map, path, &[tag, "op", "value"], what)?;
            let name = string_at(map, path, tag)?;
            let (op, value) = op_value(map, path)?;
            Ok(match tag {
                "attr" => Rule::Attr(AttrCondition {
                    attr: name,
                    op,
                    value,
                }),
                "trait" => Rule::Trait(Comparison { name, op, value }),
                _ => Rule::Interest(Comparison { name, op, value }),
            })
        }
        _ => event_from_json(map, path).map(Rule::Event),
    }
}

fn only_keys(
    map: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
    what: &str,
) -> Result<(), RuleError> {
    match map.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(error(
            join(path, key),
            format!(
                "unknown key {key:?} in {what}; expected only {}",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn string_at(map: &Map<String, Value>, path: &str, key: &str) -> Result<String, RuleError> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(error(
            join(path, key),
            format!("expected a string, found {}", kind(other)),
        )),
        None => Err(error(join(path, key), "missing")),
    }
}

fn op_value(map: &Map<String, Value>, path: &str) -> Result<(Op, Operand), RuleError> {
    let op_text = string_at(map, path, "op")?;
    let op = Op::parse(&op_text).ok_or_else(|| {
        let known: Vec<&str> = Op::ALL.iter().map(|op| op.as_str()).collect();
        error(
            join(path, "op"),
            format!(
                "unknown operator {op_text:?}; expected one of {}",
                known.join(" ")
            ),
        )
    })?;
    let value = match map.get("value") {
        None => Operand::None,
        Some(Value::Array(items)) => Operand::List(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| literal_from_json(item, &format!("{}[{i}]", join(path, "value"))))
                .collect::<Result<_, _>>()?,
        ),
        Some(other) => Operand::One(literal_from_json(other, &join(path, "value"))?),
    };
    Ok((op, value))
}

fn literal_from_json(value: &Value, path: &str) -> Result<Literal, RuleError> {
    match value {
        Value::String(s) => Ok(Literal::String(s.clone())),
        Value::Number(n) => Ok(Literal::Number(n.clone())),
        Value::Bool(b) => Ok(Literal::Bool(*b)),
        Value::Object(map) => {
            only_keys(map, path, &["ago"], "a relative date")?;
            let text = string_at(map, path, "ago")?;
            let span = Span::parse(&text).ok_or_else(|| {
                error(
                    join(path, "ago"),
                    format!("expected a span such as \"30d\", \"12h\" or \"4w\", found {text:?}"),
                )
            })?;
            Ok(Literal::Ago(span))
        }
        other => Err(error(
            path,
            format!(
                "expected a string, number, boolean or {{\"ago\": \"30d\"}}, found {}",
                kind(other)
            ),
        )),
    }
}

fn event_from_json(map: &Map<String, Value>, path: &str) -> Result<EventCondition, RuleError> {
    let aggregate = ["sum", "avg", "min", "max"]
        .into_iter()
        .find(|key| map.contains_key(*key));
    let mut allowed = vec![
        "event", "within", "between", "where", "count", "first", "last",
    ];
    if let Some(key) = aggregate {
        allowed.extend([key, "op", "value"]);
    }
    only_keys(map, path, &allowed, "an event condition")?;
    let event = string_at(map, path, "event")?;
    let measures: Vec<&str> = ["count", "first", "last", "sum", "avg", "min", "max"]
        .into_iter()
        .filter(|key| map.contains_key(*key))
        .collect();
    if measures.len() > 1 {
        return Err(error(
            join(path, measures[1]),
            format!(
                "an event condition measures one thing; found {}",
                measures.join(" and ")
            ),
        ));
    }
    let nested = |key: &str| -> Result<(Op, Operand), RuleError> {
        let inner_path = join(path, key);
        match map.get(key) {
            Some(Value::Object(inner)) => {
                only_keys(inner, &inner_path, &["op", "value"], "a comparison")?;
                op_value(inner, &inner_path)
            }
            Some(other) => Err(error(
                inner_path,
                format!(
                    "expected {{\"op\": ..., \"value\": ...}}, found {}",
                    kind(other)
                ),
            )),
            None => Err(error(inner_path, "missing")),
        }
    };
    let measure = match measures.first().copied() {
        None => Measure::Performed,
        Some("count") => {
            let (op, value) = nested("count")?;
            Measure::Count { op, value }
        }
        Some("first") => {
            let (op, value) = nested("first")?;
            Measure::First { op, value }
        }
        Some("last") => {
            let (op, value) = nested("last")?;
            Measure::Last { op, value }
        }
        Some(key) => {
            let field = string_at(map, path, key)?;
            let (op, value) = op_value(map, path)?;
            Measure::Aggregate {
                func: Aggregate::parse(key).unwrap_or(Aggregate::Sum),
                field,
                op,
                value,
            }
        }
    };
    let window = match (map.get("within"), map.get("between")) {
        (Some(_), Some(_)) => {
            return Err(error(
                join(path, "between"),
                "an event condition has one window: within or between, not both",
            ));
        }
        (Some(_), None) => {
            let text = string_at(map, path, "within")?;
            let span = Span::parse(&text).ok_or_else(|| {
                error(
                    join(path, "within"),
                    format!("expected a span such as \"90d\", \"12h\" or \"4w\", found {text:?}"),
                )
            })?;
            Some(Window::Within(span))
        }
        (None, Some(value)) => {
            let bounds = value.as_array().filter(|items| items.len() == 2);
            match bounds.map(|b| (&b[0], &b[1])) {
                Some((Value::String(from), Value::String(to))) => {
                    Some(Window::Between(from.clone(), to.clone()))
                }
                _ => {
                    return Err(error(
                        join(path, "between"),
                        "expected two dates, e.g. [\"2026-01-01\", \"2026-03-31\"]",
                    ));
                }
            }
        }
        (None, None) => None,
    };
    let filters = match map.get("where") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let item_path = format!("{}[{i}]", join(path, "where"));
                let Value::Object(filter) = item else {
                    return Err(error(
                        item_path,
                        format!(
                            "expected {{\"prop\": ..., \"op\": ..., \"value\": ...}}, found {}",
                            kind(item)
                        ),
                    ));
                };
                only_keys(
                    filter,
                    &item_path,
                    &["prop", "op", "value"],
                    "a property filter",
                )?;
                let prop = string_at(filter, &item_path, "prop")?;
                let (op, value) = op_value(filter, &item_path)?;
                Ok(PropertyFilter { prop, op, value })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(error(
                join(path, "where"),
                format!(
                    "expected an array of property filters, found {}",
                    kind(other)
                ),
            ));
        }
    };
    Ok(EventCondition {
        event,
        filters,
        window,
        measure,
    })
}

// ---------------------------------------------------------------------------------------
// Text form

/// Words the text form reserves; names spelled like them are written in backquotes.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "all",
    "any",
    "segment",
    "trait",
    "interest",
    "ago",
    "true",
    "false",
    "between",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "ends_with",
    "exists",
    "not_exists",
];

const MEASURES: &[&str] = &["count", "sum", "avg", "min", "max", "first", "last"];

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// A name as the text form writes it: bare when it reads back as the same name, otherwise
/// in backquotes.
fn write_name(f: &mut fmt::Formatter<'_>, name: &str, is_event: bool) -> fmt::Result {
    let bare = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(is_name_char)
        && !KEYWORDS.contains(&name)
        && (is_event || !name.contains('.'))
        && !name
            .rsplit_once('.')
            .is_some_and(|(_, last)| MEASURES.contains(&last));
    if bare {
        return f.write_str(name);
    }
    f.write_str("`")?;
    for c in name.chars() {
        if matches!(c, '`' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("`")
}

fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str(&Value::String(s.to_string()).to_string())
}

fn write_literal(f: &mut fmt::Formatter<'_>, literal: &Literal) -> fmt::Result {
    match literal {
        Literal::String(s) => write_string(f, s),
        Literal::Number(n) => write!(f, "{n}"),
        Literal::Bool(b) => write!(f, "{b}"),
        Literal::Ago(span) => write!(f, "ago({span})"),
    }
}

fn write_op_value(f: &mut fmt::Formatter<'_>, op: Op, value: &Operand) -> fmt::Result {
    write!(f, " {}", op.as_str())?;
    match value {
        Operand::None => Ok(()),
        Operand::One(literal) => {
            f.write_str(" ")?;
            write_literal(f, literal)
        }
        Operand::List(items) => {
            f.write_str(" (")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_literal(f, item)?;
            }
            f.write_str(")")
        }
    }
}

fn write_window(f: &mut fmt::Formatter<'_>, window: &Option<Window>) -> fmt::Result {
    match window {
        None => Ok(()),
        Some(Window::Within(span)) => write!(f, "{span}"),
        Some(Window::Between(from, to)) => {
            f.write_str("between ")?;
            write_string(f, from)?;
            f.write_str(" and ")?;
            write_string(f, to)
        }
    }
}

fn write_event(f: &mut fmt::Formatter<'_>, e: &EventCondition) -> fmt::Result {
    write_name(f, &e.event, true)?;
    if !e.filters.is_empty() {
        f.write_str("[")?;
        for (i, filter) in e.filters.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write_name(f, &filter.prop, false)?;
            write_op_value(f, filter.op, &filter.value)?;
        }
        f.write_str("]")?;
    }
    let (measure, field, comparison) = match &e.measure {
        Measure::Performed => (None, None, None),
        Measure::Count { op, value } => (Some("count"), None, Some((*op, value))),
        Measure::First { op, value } => (Some("first"), None, Some((*op, value))),
        Measure::Last { op, value } => (Some("last"), None, Some((*op, value))),
        Measure::Aggregate {
            func,
            field,
            op,
            value,
        } => (Some(func.as_str()), Some(field), Some((*op, value))),
    };
    if let Some(measure) = measure {
        write!(f, ".{measure}")?;
    }
    f.write_str("(")?;
    if let Some(field) = field {
        write_name(f, field, false)?;
        if e.window.is_some() {
            f.write_str(", ")?;
        }
    }
    write_window(f, &e.window)?;
    f.write_str(")")?;
    if let Some((op, value)) = comparison {
        write_op_value(f, op, value)?;
    }
    Ok(())
}

/// How tightly a node binds when printed, so parentheses appear only where needed.
fn precedence(rule: &Rule) -> u8 {
    match rule {
        Rule::Any(rules) if rules.len() >= 2 => 0,
        Rule::All(rules) if rules.len() >= 2 => 1,
        _ => 2,
    }
}

fn write_rule(f: &mut fmt::Formatter<'_>, rule: &Rule, min: u8) -> fmt::Result {
    let parens = precedence(rule) < min;
    if parens {
        f.write_str("(")?;
    }
    match rule {
        Rule::All(rules) | Rule::Any(rules) if rules.len() >= 2 => {
            let (word, level) = if matches!(rule, Rule::All(_)) {
                (" and ", 2)
            } else {
                (" or ", 1)
            };
            for (i, item) in rules.iter().enumerate() {
                if i > 0 {
                    f.write_str(word)?;
                }
                // A nested combinator of the same kind keeps its parentheses, so the tree
                // reads back with the same shape.
                write_rule(f, item, level)?;
            }
        }
        Rule::All(rules) | Rule::Any(rules) => {
            f.write_str(if matches!(rule, Rule::All(_)) {
                "all("
            } else {
                "any("
            })?;
            for (i, item) in rules.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_rule(f, item, 0)?;
            }
            f.write_str(")")?;
        }
        Rule::Not(inner) => {
            f.write_str("not ")?;
            write_rule(f, inner, 2)?;
        }
        Rule::Attr(c) => {
            write_name(f, &c.attr, false)?;
            write_op_value(f, c.op, &c.value)?;
        }
        Rule::Trait(c) => {
            f.write_str("trait ")?;
            write_name(f, &c.name, false)?;
            write_op_value(f, c.op, &c.value)?;
        }
        Rule::Interest(c) => {
            f.write_str("interest ")?;
            write_name(f, &c.name, false)?;
            write_op_value(f, c.op, &c.value)?;
        }
        Rule::Segment(slug) => {
            f.write_str("segment ")?;
            write_string(f, slug)?;
        }
        Rule::Event(e) => write_event(f, e)?,
    }
    if parens {
        f.write_str(")")?;
    }
    Ok(())
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_rule(f, self, 0)
    }
}

impl Rule {
    /// The compact text form; [`parse_text`] reads it back as the same rule.
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

/// Where a text-form rule went wrong: 1-based line and column, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct TextError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A bare word; may be a keyword.
    Word(String),
    /// A backquoted name; never a keyword.
    Quoted(String),
    Str(String),
    Number(serde_json::Number),
    Span(Span),
    Punct(&'static str),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("`{w}`"),
            Token::Quoted(w) => format!("name `{w}`"),
            Token::Str(s) => format!("string {s:?}"),
            Token::Number(n) => format!("number {n}"),
            Token::Span(s) => format!("span {s}"),
            Token::Punct(p) => format!("`{p}`"),
            Token::End => "the end of the rule".to_string(),
        }
    }
}

struct Located {
    token: Token,
    line: usize,
    column: usize,
}

fn tokenize(text: &str) -> Result<Vec<Located>, TextError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line, mut line_start) = (0, 1, 0);
    while i < chars.len() {
        let c = chars[i];
        let column = i - line_start + 1;
        let fail = |message: String| TextError {
            line,
            column,
            message,
        };
        if c == '\n' {
            line += 1;
            i += 1;
            line_start = i;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let token = if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            Token::Word(chars[start..i].iter().collect())
        } else if c == '`' {
            i += 1;
            let mut name = String::new();
            loop {
                match chars.get(i) {
                    None | Some('\n') => return Err(fail("unterminated `name`".to_string())),
                    Some('`') => break,
                    Some('\\') => {
                        let escaped = chars
                            .get(i + 1)
                            .ok_or_else(|| fail("unterminated `name`".to_string()))?;
                        name.push(*escaped);
                        i += 2;
                    }
                    Some(other) => {
                        name.push(*other);
                        i += 1;
                    }
                }
            }
            i += 1;
            Token::Quoted(name)
        } else if c == '"' {
            i += 1;
            loop {
                match chars.get(i) {
                    None | Some('\n') => return Err(fail("unterminated string".to_string())),
                    Some('"') => break,
                    Some('\\') => i += 2,
                    Some(_) => i += 1,
                }
            }
            i += 1;
            let literal: String = chars[start..i.min(chars.len())].iter().collect();
            let value: String = serde_json::from_str(&literal)
                .map_err(|e| fail(format!("bad string {literal}: {e}")))?;
            Token::Str(value)
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            if let Some(span) = Span::parse(&literal) {
                Token::Span(span)
            } else {
                let number: serde_json::Number = serde_json::from_str(&literal)
                    .map_err(|_| fail(format!("bad number or span {literal:?}")))?;
                Token::Number(number)
            }
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let punct = ["!=", "<=", ">="]
                .into_iter()
                .find(|p| *p == two)
                .or_else(|| {
                    ["(", ")", "[", "]", ",", ".", "=", "<", ">"]
                        .into_iter()
                        .find(|p| p.starts_with(c))
                })
                .ok_or_else(|| fail(format!("unexpected character {c:?}")))?;
            i += punct.len();
            Token::Punct(punct)
        };
        tokens.push(Located {
            token,
            line,
            column,
        });
    }
    let column = chars.len() - line_start + 1;
    tokens.push(Located {
        token: Token::End,
        line,
        column,
    });
    Ok(tokens)
}

/// Parses the compact text form, e.g.
/// `country in ("DE", "AT") and purchase.count(90d) >= 3 and not email_click(30d)`.
pub fn parse_text(text: &str) -> Result<Rule, TextError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, at: 0 };
    let rule = parser.or()?;
    match parser.peek() {
        Token::End => Ok(rule),
        other => Err(parser.fail(format!(
            "expected `and`, `or` or the end, found {}",
            other.describe()
        ))),
    }
}

struct Parser {
    tokens: Vec<Located>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        let index = (self.at + ahead).min(self.tokens.len() - 1);
        &self.tokens[index].token
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        token
    }

    fn fail(&self, message: String) -> TextError {
        let located = &self.tokens[self.at.min(self.tokens.len() - 1)];
        TextError {
            line: located.line,
            column: located.column,
            message,
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Token::Word(w) if w == word)
    }

    fn eat_punct(&mut self, punct: &str) -> bool {
        if matches!(self.peek(), Token::Punct(p) if *p == punct) {
            self.next();
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, punct: &str) -> Result<(), TextError> {
        if self.eat_punct(punct) {
            Ok(())
        } else {
            Err(self.fail(format!(
                "expected `{punct}`, found {}",
                self.peek().describe()
            )))
        }
    }

    fn or(&mut self) -> Result<Rule, TextError> {
        let mut rules = vec![self.and()?];
        while self.is_word("or") {
            self.next();
            rules.push(self.and()?);
        }
        Ok(if rules.len() == 1 {
            rules.remove(0)
        } else {
            Rule::Any(rules)
        })
    }

    fn and(&mut self) -> Result<Rule, TextError> {
        let mut rules = vec![self.unary()?];
        while self.is_word("and") {
            self.next();
            rules.push(self.unary()?);
        }
        Ok(if rules.len() == 1 {
            rules.remove(0)
        } else {
            Rule::All(rules)
        })
    }

    fn unary(&mut self) -> Result<Rule, TextError> {
        if self.is_word("not") {
            self.next();
            return Ok(Rule::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Rule, TextError> {
        if self.eat_punct("(") {
            let rule = self.or()?;
            self.expect_punct(")")?;
            return Ok(rule);
        }
        let word = match self.peek() {
            Token::Word(w) => Some(w.clone()),
            _ => None,
        };
        match word.as_deref() {
            Some(combinator @ ("all" | "any")) if matches!(self.peek_at(1), Token::Punct("(")) => {
                let all = combinator == "all";
                self.next();
                self.next();
                let mut rules = Vec::new();
                if !self.eat_punct(")") {
                    loop {
                        rules.push(self.or()?);
                        if self.eat_punct(")") {
                            break;
                        }
                        self.expect_punct(",")?;
                    }
                }
                return Ok(if all {
                    Rule::All(rules)
                } else {
                    Rule::Any(rules)
                });
            }
            Some("segment") => {
                self.next();
                return match self.next() {
                    Token::Str(slug) => Ok(Rule::Segment(slug)),
                    other => {
                        self.at -= 1;
                        Err(self.fail(format!(
                            "expected the segment's slug in quotes, found {}",
                            other.describe()
                        )))
                    }
                };
            }
            Some(which @ ("trait" | "interest")) => {
                let is_trait = which == "trait";
                self.next();
                let name = self.name("a name")?;
                let (op, value) = self.op_value()?;
                let comparison = Comparison { name, op, value };
                return Ok(if is_trait {
                    Rule::Trait(comparison)
                } else {
                    Rule::Interest(comparison)
                });
            }
            Some(w) if KEYWORDS.contains(&w) => {
                return Err(self.fail(format!(
                    "expected a condition, found the keyword `{w}` (write a name spelled like it in backquotes)"
                )));
            }
            _ => {}
        }
        let quoted = matches!(self.peek(), Token::Quoted(_));
        let name = self.name("a condition")?;
        let follows_event = matches!(self.peek(), Token::Punct("(" | "[" | "."));
        if !follows_event {
            let (op, value) = self.op_value()?;
            return Ok(Rule::Attr(AttrCondition {
                attr: name,
                op,
                value,
            }));
        }
        // A bare `purchase.count(` names the measure inside the word itself.
        let (event, mut measure) = match name.rsplit_once('.') {
            Some((kind, last)) if !quoted && MEASURES.contains(&last) => {
                (kind.to_string(), Some(last.to_string()))
            }
            _ => (name, None),
        };
        let mut filters = Vec::new();
        if measure.is_none() && self.eat_punct("[") {
            loop {
                let prop = self.name("a property name")?;
                let (op, value) = self.op_value()?;
                filters.push(PropertyFilter { prop, op, value });
                if self.eat_punct("]") {
                    break;
                }
                self.expect_punct(",")?;
            }
        }
        if measure.is_none() && self.eat_punct(".") {
            match self.next() {
                Token::Word(w) if MEASURES.contains(&w.as_str()) => measure = Some(w),
                other => {
                    self.at -= 1;
                    return Err(self.fail(format!(
                        "expected one of {}, found {}",
                        MEASURES.join(", "),
                        other.describe()
                    )));
                }
            }
        }
        self.expect_punct("(")?;
        let aggregate = measure.as_deref().and_then(Aggregate::parse);
        let field = match aggregate {
            Some(_) => {
                let field = self.name("the field to aggregate, e.g. amount")?;
                if !matches!(self.peek(), Token::Punct(")")) {
                    self.expect_punct(",")?;
                }
                Some(field)
            }
            None => None,
        };
        let window = self.window()?;
        self.expect_punct(")")?;
        let measure = match (measure.as_deref(), aggregate, field) {
            (None, _, _) => Measure::Performed,
            (Some(_), Some(func), Some(field)) => {
                let (op, value) = self.op_value()?;
                Measure::Aggregate {
                    func,
                    field,
                    op,
                    value,
                }
            }
            (Some(which), _, _) => {
                let (op, value) = self.op_value()?;
                match which {
                    "first" => Measure::First { op, value },
                    "last" => Measure::Last { op, value },
                    _ => Measure::Count { op, value },
                }
            }
        };
        Ok(Rule::Event(EventCondition {
            event,
            filters,
            window,
            measure,
        }))
    }

    fn window(&mut self) -> Result<Option<Window>, TextError> {
        match self.peek().clone() {
            Token::Span(span) => {
                self.next();
                Ok(Some(Window::Within(span)))
            }
            Token::Word(w) if w == "between" => {
                self.next();
                let from = self.string("the first date of the window")?;
                if !self.is_word("and") {
                    return Err(self.fail(format!(
                        "expected `and`, found {}",
                        self.peek().describe()
                    )));
                }
                self.next();
                let to = self.string("the last date of the window")?;
                Ok(Some(Window::Between(from, to)))
            }
            Token::Punct(")") => Ok(None),
            other => Err(self.fail(format!(
                "expected a window such as 90d or between \"2026-01-01\" and \"2026-03-31\", found {}",
                other.describe()
            ))),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, TextError> {
        match self.peek().clone() {
            Token::Str(s) => {
                self.next();
                Ok(s)
            }
            other => Err(self.fail(format!(
                "expected {what} in quotes, found {}",
                other.describe()
            ))),
        }
    }

    fn name(&mut self, what: &str) -> Result<String, TextError> {
        match self.peek().clone() {
            Token::Word(w) if !KEYWORDS.contains(&w.as_str()) => {
                self.next();
                Ok(w)
            }
            Token::Quoted(w) => {
                self.next();
                Ok(w)
            }
            other => Err(self.fail(format!("expected {what}, found {}", other.describe()))),
        }
    }

    fn op_value(&mut self) -> Result<(Op, Operand), TextError> {
        let op = match self.peek().clone() {
            Token::Punct(p) => Op::parse(p),
            Token::Word(w) => Op::parse(&w),
            _ => None,
        }
        .ok_or_else(|| {
            self.fail(format!(
                "expected an operator (= != < <= > >= between in not_in contains starts_with ends_with exists not_exists), found {}",
                self.peek().describe()
            ))
        })?;
        self.next();
        if op.is_unary() {
            return Ok((op, Operand::None));
        }
        if self.eat_punct("(") {
            let mut items = Vec::new();
            if !self.eat_punct(")") {
                loop {
                    items.push(self.literal()?);
                    if self.eat_punct(")") {
                        break;
                    }
                    self.expect_punct(",")?;
                }
            }
            return Ok((op, Operand::List(items)));
        }
        Ok((op, Operand::One(self.literal()?)))
    }

    fn literal(&mut self) -> Result<Literal, TextError> {
        let literal = match self.peek().clone() {
            Token::Str(s) => Literal::String(s),
            Token::Number(n) => Literal::Number(n),
            Token::Word(w) if w == "true" => Literal::Bool(true),
            Token::Word(w) if w == "false" => Literal::Bool(false),
            Token::Word(w) if w == "ago" => {
                self.next();
                self.expect_punct("(")?;
                let span = match self.peek().clone() {
                    Token::Span(span) => span,
                    other => {
                        return Err(self.fail(format!(
                            "expected a span such as 30d, found {}",
                            other.describe()
                        )));
                    }
                };
                self.next();
                self.expect_punct(")")?;
                return Ok(Literal::Ago(span));
            }
            other => {
                return Err(self.fail(format!(
                    "expected a value (a string in quotes, a number, true, false or ago(30d)), found {}",
                    other.describe()
                )));
            }
        };
        self.next();
        Ok(literal)
    }
}
