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
//!
//! The types are here; the JSON form is read and written in `json`, the text form in `text`.

mod json;
mod text;

use std::fmt;

pub use text::{TextError, parse_text};

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
