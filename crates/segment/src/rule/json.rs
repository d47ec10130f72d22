//! The JSON form of a rule: one object per node (see the [module documentation](super)).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use super::{
    Aggregate, AttrCondition, Comparison, EventCondition, Literal, Measure, Op, Operand,
    PropertyFilter, Rule, Span, Window,
};
use crate::RuleError;

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
