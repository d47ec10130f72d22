//! Compiling a validated rule to one set-based SQL query per workspace:
//! `SELECT c.id FROM contacts AS c WHERE c.workspace_id = ? AND <predicate>`.
//!
//! Attribute conditions read columns or `contacts.attributes` (`->>` on PostgreSQL,
//! `json_extract` on SQLite); event conditions are correlated `EXISTS` or aggregate
//! subqueries on `events` that the `(contact_id, kind, occurred_at)` index answers. Every
//! constant of a rule, names included, is a bound parameter.
//!
//! Meaning, the same on both databases:
//! - A missing value (NULL column, absent attribute, no events for min/avg/max/first/last)
//!   satisfies no comparison, `!=` and `not_in` included; only `not_exists` matches it.
//!   `not` is the exact complement of the rule it wraps.
//! - A date written `YYYY-MM-DD` covers that whole UTC day: `created_at = "2026-01-05"` is
//!   any time that day, `< "2026-01-05"` is before it, `<= "2026-01-05"` is up to its end.
//!   An RFC 3339 time or `{"ago": "30d"}` is one instant.
//! - Custom date attributes are compared by the calendar date they were written with (their
//!   first ten characters), built-in dates to the millisecond.
//! - `within: "90d"` holds events with `now - 90d <= occurred_at <= now`; `between` holds
//!   events from the start of its first date to the end of its second.
//! - `sum` over no events is 0; `count` over none is 0.
//! - Traits read the contact's row of `contact_traits` (see [`crate::traits`]; `recency_days`
//!   counts from its `last_purchase_at` to `now`), the predicted
//!   CLV traits (`p_alive`, `expected_purchases`, `expected_order_value`, `predicted_clv`)
//!   its row of `contact_predictions`; a contact without one (no purchases) has missing
//!   traits, like a missing attribute. Interests read
//!   `contact_interests`, where a category without a row scores 0; `exists` asks for a
//!   score above 0 and `not_exists` for none.
//! - String operators are case-sensitive, and strings order by code point (PostgreSQL
//!   comparisons use `COLLATE "C"`), so both databases agree.

use chrono::{DateTime, Days};
use clarion_model::{AttributeType, Timestamp, WorkspaceId};
use sea_orm::{
    DbBackend,
    sea_query::{Condition, Expr, ExprTrait, Func, Query, SelectStatement, SimpleExpr},
};

use crate::{
    RuleError, SegmentError,
    rule::{Aggregate, EventCondition, Literal, Measure, Op, Operand, Rule, Window},
    validate::{Field, TRAITS, ValidRule, date_interval, property_type, trait_table},
};

/// The query listing the ids of the contacts of `workspace` that satisfy `rule` at `now`
/// (relative dates and windows count back from it). Unordered; callers add ORDER BY, LIMIT.
pub fn compile(
    rule: &ValidRule,
    workspace: WorkspaceId,
    backend: DbBackend,
    now: Timestamp,
) -> Result<SelectStatement, SegmentError> {
    let compiler = Compiler {
        backend,
        now,
        valid: rule,
    };
    let predicate = compiler.rule(rule.rule(), "", false)?;
    Ok(Query::select()
        .column(("c", "id"))
        .from_as("contacts", "c")
        .and_where(Expr::col(("c", "workspace_id")).eq(workspace.0))
        .cond_where(predicate)
        .to_owned())
}

/// Custom SQL with `?` for each argument, renumbered for PostgreSQL's `$n`.
pub(crate) fn custom_sql(backend: DbBackend, template: &str, args: Vec<Expr>) -> Expr {
    if backend == DbBackend::Postgres {
        let mut numbered = String::with_capacity(template.len() + 8);
        let mut n = 0;
        for c in template.chars() {
            if c == '?' {
                n += 1;
                numbered.push_str(&format!("${n}"));
            } else {
                numbered.push(c);
            }
        }
        Expr::cust_with_exprs(numbered, args)
    } else {
        Expr::cust_with_exprs(template.to_string(), args)
    }
}

struct Compiler<'a> {
    backend: DbBackend,
    now: Timestamp,
    valid: &'a ValidRule,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Numbers are compared as doubles on both databases.
fn number(literal: &Literal) -> Expr {
    match literal {
        Literal::Number(n) => Expr::val(n.as_f64().unwrap_or(f64::NAN)),
        Literal::String(s) => Expr::val(s.clone()),
        Literal::Bool(b) => Expr::val(*b),
        Literal::Ago(_) => Expr::val(f64::NAN),
    }
}

fn items(operand: &Operand) -> &[Literal] {
    match operand {
        Operand::None => &[],
        Operand::One(literal) => std::slice::from_ref(literal),
        Operand::List(items) => items,
    }
}

/// Whether a score of 0 passes a numeric comparison, as the database would decide it.
fn zero_passes(op: Op, value: &Operand) -> bool {
    let numbers: Vec<f64> = items(value)
        .iter()
        .map(|literal| match literal {
            Literal::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            _ => f64::NAN,
        })
        .collect();
    let first = numbers.first().copied().unwrap_or(f64::NAN);
    match op {
        Op::Eq => 0.0 == first,
        Op::Ne => 0.0 != first,
        Op::Lt => 0.0 < first,
        Op::Le => 0.0 <= first,
        Op::Gt => 0.0 > first,
        Op::Ge => 0.0 >= first,
        Op::Between => matches!(numbers.as_slice(), [low, high] if *low <= 0.0 && 0.0 <= *high),
        Op::In => numbers.contains(&0.0),
        Op::NotIn => !numbers.contains(&0.0),
        _ => false,
    }
}

fn day_string(millis: i64) -> String {
    DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

impl Compiler<'_> {
    /// Custom SQL with `?` for each argument, renumbered for PostgreSQL's `$n`.
    fn sql(&self, template: &str, args: Vec<Expr>) -> Expr {
        custom_sql(self.backend, template, args)
    }

    fn bool_value(&self, b: bool) -> Expr {
        // SQLite's JSON functions read true and false as 1 and 0.
        match self.backend {
            DbBackend::Postgres => Expr::val(b),
            _ => Expr::val(i64::from(b)),
        }
    }

    fn rule(&self, rule: &Rule, path: &str, negated: bool) -> Result<Condition, SegmentError> {
        let leaf = |expr: Expr, nullable: bool| -> Condition {
            // Under `not`, a NULL leaf would make the whole branch NULL and drop the contact
            // from both a rule and its negation; a leaf is made plainly false instead. Leaves
            // that are never NULL stay bare so that PostgreSQL can plan `NOT EXISTS` as an
            // anti-join.
            let expr = if negated && nullable {
                self.sql("COALESCE(?, FALSE)", vec![expr])
            } else {
                expr
            };
            Condition::all().add(expr)
        };
        Ok(match rule {
            Rule::All(rules) | Rule::Any(rules) => {
                let (key, mut condition) = if matches!(rule, Rule::All(_)) {
                    ("all", Condition::all())
                } else {
                    ("any", Condition::any())
                };
                for (i, item) in rules.iter().enumerate() {
                    condition = condition.add(self.rule(
                        item,
                        &format!("{}[{i}]", join(path, key)),
                        negated,
                    )?);
                }
                condition
            }
            Rule::Not(inner) => Condition::all()
                .add(self.rule(inner, &join(path, "not"), true)?)
                .not(),
            Rule::Attr(c) => {
                let field = self.valid.field(&c.attr).ok_or_else(|| {
                    SegmentError::Invalid(vec![RuleError {
                        path: join(path, "attr"),
                        message: format!("unknown field {:?}", c.attr),
                    }])
                })?;
                leaf(self.attribute(&c.attr, field, c.op, &c.value), true)
            }
            Rule::Event(e) => {
                let nullable = !matches!(
                    e.measure,
                    Measure::Performed
                        | Measure::Count { .. }
                        | Measure::Aggregate {
                            func: Aggregate::Sum,
                            ..
                        }
                );
                leaf(self.event(e), nullable)
            }
            Rule::Trait(c) => {
                let (column, ty) = TRAITS
                    .iter()
                    .find(|(name, _)| *name == c.name)
                    .copied()
                    .ok_or_else(|| {
                        SegmentError::Invalid(vec![RuleError {
                            path: join(path, "trait"),
                            message: format!("unknown trait {:?}", c.name),
                        }])
                    })?;
                leaf(
                    self.computed_trait(trait_table(column), column, ty, c.op, &c.value),
                    false,
                )
            }
            Rule::Interest(c) => leaf(self.interest(&c.name, c.op, &c.value), false),
            Rule::Segment(slug) if self.valid.static_segment(slug).is_some() => {
                let id = self.valid.static_segment(slug).map_or(0, |id| id.0);
                // A static segment's members are its stored membership.
                let members = Query::select()
                    .expr(Expr::val(1))
                    .from_as("segment_memberships", "sm")
                    .and_where(Expr::col(("sm", "segment_id")).eq(id))
                    .and_where(Expr::col(("sm", "contact_id")).equals(("c", "id")))
                    .and_where(Expr::col(("sm", "exited_at")).is_null())
                    .to_owned();
                leaf(Expr::exists(members), false)
            }
            Rule::Segment(slug) => {
                return Err(SegmentError::Invalid(vec![RuleError {
                    path: join(path, "segment"),
                    message: format!("segment {slug:?} was not resolved by validation"),
                }]));
            }
        })
    }

    /// A trait, from the contact's row of `table` (`contact_traits`, or `contact_predictions`
    /// for the predicted CLV traits); a contact without one has no traits, which satisfies
    /// no comparison, only `not_exists`.
    fn computed_trait(
        &self,
        table: &'static str,
        column: &'static str,
        ty: AttributeType,
        op: Op,
        value: &Operand,
    ) -> Expr {
        let mut row = Query::select();
        row.expr(Expr::val(1))
            .from_as(table, "t")
            .and_where(Expr::col(("t", "contact_id")).equals(("c", "id")));
        match op {
            Op::Exists => Expr::exists(row),
            Op::NotExists => Expr::exists(row).not(),
            _ => {
                let value_of = crate::traits::trait_value(self.backend, "t", column, self.now);
                row.and_where(self.compare(value_of, ty, false, op, value));
                Expr::exists(row)
            }
        }
    }

    /// An interest score, from `contact_interests`, where a category without a row scores 0.
    /// A comparison 0 fails becomes "has a row whose score passes", one 0 passes becomes "has
    /// no row whose score fails", so that both are (anti-)joins on the primary key.
    fn interest(&self, category: &str, op: Op, value: &Operand) -> Expr {
        let mut row = Query::select();
        row.expr(Expr::val(1))
            .from_as("contact_interests", "i")
            .and_where(Expr::col(("i", "contact_id")).equals(("c", "id")))
            .and_where(Expr::col(("i", "category")).eq(category.to_string()));
        let score = || Expr::col(("i", "score"));
        match op {
            Op::Exists => Expr::exists(row),
            Op::NotExists => Expr::exists(row).not(),
            _ if zero_passes(op, value) => {
                row.and_where(
                    self.compare(score(), AttributeType::Number, false, op, value)
                        .not(),
                );
                Expr::exists(row).not()
            }
            _ => {
                row.and_where(self.compare(score(), AttributeType::Number, false, op, value));
                Expr::exists(row)
            }
        }
    }

    fn attribute(&self, name: &str, field: Field, op: Op, value: &Operand) -> Expr {
        match field {
            Field::Column { column, ty } => {
                self.compare(Expr::col(("c", column)), ty, false, op, value)
            }
            Field::Custom {
                ty: AttributeType::List,
            } => self.list_attribute(name, op, value),
            Field::Custom { ty } => {
                let extracted = self.custom_attribute(name, ty);
                self.compare(extracted, ty, true, op, value)
            }
        }
    }

    fn custom_attribute(&self, name: &str, ty: AttributeType) -> Expr {
        let key = Expr::val(name.to_string());
        match self.backend {
            DbBackend::Postgres => match ty {
                AttributeType::Number => {
                    self.sql("((c.attributes ->> ?)::double precision)", vec![key])
                }
                AttributeType::Boolean => self.sql("((c.attributes ->> ?)::boolean)", vec![key]),
                AttributeType::Date => self.sql("substr(c.attributes ->> ?, 1, 10)", vec![key]),
                _ => self.sql("(c.attributes ->> ?)", vec![key]),
            },
            _ => {
                let json_path = Expr::val(format!("$.\"{name}\""));
                match ty {
                    AttributeType::Date => self.sql(
                        "substr(json_extract(c.attributes, ?), 1, 10)",
                        vec![json_path],
                    ),
                    _ => self.sql("json_extract(c.attributes, ?)", vec![json_path]),
                }
            }
        }
    }

    /// A list attribute holds strings; `contains x` and `in (a, b)` ask whether it holds x,
    /// or any of a and b; `not_in` asks that it exists and holds none of them.
    fn list_attribute(&self, name: &str, op: Op, value: &Operand) -> Expr {
        let present = match self.backend {
            DbBackend::Postgres => self.sql(
                "((c.attributes -> ?) IS NOT NULL)",
                vec![Expr::val(name.to_string())],
            ),
            _ => self.sql(
                "(json_extract(c.attributes, ?) IS NOT NULL)",
                vec![Expr::val(format!("$.\"{name}\""))],
            ),
        };
        let wanted: Vec<String> = items(value)
            .iter()
            .filter_map(|literal| match literal {
                Literal::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        let holds_any = || match self.backend {
            DbBackend::Postgres => {
                let mut any = Condition::any();
                for item in &wanted {
                    any = any.add(self.sql(
                        "((c.attributes -> ?) @> ?)",
                        vec![
                            Expr::val(name.to_string()),
                            Expr::val(serde_json::json!([item])),
                        ],
                    ));
                }
                Expr::from(any)
            }
            _ => {
                let placeholders = vec!["?"; wanted.len()].join(", ");
                let mut args = vec![Expr::val(format!("$.\"{name}\""))];
                args.extend(wanted.iter().map(|item| Expr::val(item.clone())));
                self.sql(
                    &format!(
                        "EXISTS (SELECT 1 FROM json_each(c.attributes, ?) AS item WHERE item.value IN ({placeholders}))"
                    ),
                    args,
                )
            }
        };
        match op {
            Op::Exists => present,
            Op::NotExists => present.not(),
            Op::NotIn => present.and(holds_any().not()),
            _ => holds_any(),
        }
    }

    /// Compares `lhs`, a value of type `ty`, with the operand. `day_text` says a date is held
    /// as `YYYY-MM-DD` text rather than epoch milliseconds.
    fn compare(
        &self,
        lhs: Expr,
        ty: AttributeType,
        day_text: bool,
        op: Op,
        value: &Operand,
    ) -> Expr {
        let values = items(value);
        match op {
            Op::Exists => return lhs.is_not_null(),
            Op::NotExists => return lhs.is_null(),
            _ => {}
        }
        if ty == AttributeType::Date {
            return self.compare_date(lhs, day_text, op, values);
        }
        // Strings order by code point on both databases, whatever PostgreSQL's collation.
        let lhs = if ty == AttributeType::String
            && self.backend == DbBackend::Postgres
            && matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Between)
        {
            self.sql("(? COLLATE \"C\")", vec![lhs])
        } else {
            lhs
        };
        let one = || match values.first() {
            Some(Literal::Bool(b)) => self.bool_value(*b),
            Some(literal) => number(literal),
            None => Expr::val(Option::<String>::None),
        };
        match op {
            Op::Eq => lhs.eq(one()),
            Op::Ne => lhs.ne(one()),
            Op::Lt => lhs.lt(one()),
            Op::Le => lhs.lte(one()),
            Op::Gt => lhs.gt(one()),
            Op::Ge => lhs.gte(one()),
            Op::Between => match values {
                [low, high] => lhs.between(number(low), number(high)),
                _ => Expr::val(false),
            },
            Op::In => lhs.is_in(values.iter().map(number)),
            Op::NotIn => lhs.is_not_in(values.iter().map(number)),
            Op::Contains => match self.backend {
                DbBackend::Postgres => self.sql("(strpos(?, ?) > 0)", vec![lhs, one()]),
                _ => self.sql("(instr(?, ?) > 0)", vec![lhs, one()]),
            },
            Op::StartsWith => self.sql("(substr(?, 1, length(?)) = ?)", vec![lhs, one(), one()]),
            Op::EndsWith => self.sql(
                "(length(?) >= length(?) AND substr(?, length(?) - length(?) + 1) = ?)",
                vec![lhs.clone(), one(), lhs.clone(), lhs, one(), one()],
            ),
            Op::Exists | Op::NotExists => Expr::val(false),
        }
    }

    fn compare_date(&self, lhs: Expr, day_text: bool, op: Op, values: &[Literal]) -> Expr {
        let bound = |millis: i64, is_end: bool| -> Expr {
            if day_text {
                // The end of an interval is exclusive: the day after the last day it touches.
                let day = if is_end {
                    DateTime::from_timestamp_millis(millis - 1)
                        .unwrap_or_default()
                        .date_naive()
                        .checked_add_days(Days::new(1))
                        .map(|d| d.format("%Y-%m-%d").to_string())
                        .unwrap_or_else(|| day_string(millis))
                } else {
                    day_string(millis)
                };
                Expr::val(day)
            } else {
                Expr::val(millis)
            }
        };
        let interval = |literal: &Literal| date_interval(literal, self.now).unwrap_or((0, 0));
        let Some((start, end)) = values.first().map(interval) else {
            return Expr::val(false);
        };
        match op {
            Op::Eq => lhs
                .clone()
                .gte(bound(start, false))
                .and(lhs.lt(bound(end, true))),
            Op::Ne => lhs
                .clone()
                .lt(bound(start, false))
                .or(lhs.gte(bound(end, true))),
            Op::Lt => lhs.lt(bound(start, false)),
            Op::Le => lhs.lt(bound(end, true)),
            Op::Gt => lhs.gte(bound(end, true)),
            Op::Ge => lhs.gte(bound(start, false)),
            Op::Between => {
                let (_, last_end) = values.get(1).map(interval).unwrap_or((0, 0));
                lhs.clone()
                    .gte(bound(start, false))
                    .and(lhs.lt(bound(last_end, true)))
            }
            _ => Expr::val(false),
        }
    }

    /// A property of the event row `e` as a value of `ty`, or NULL when it holds another kind.
    fn property(&self, name: &str, ty: AttributeType) -> Expr {
        let key = || Expr::val(name.to_string());
        match self.backend {
            DbBackend::Postgres => {
                let (json_type, cast) = match ty {
                    AttributeType::Number => ("number", "::double precision"),
                    AttributeType::Boolean => ("boolean", "::boolean"),
                    _ => ("string", ""),
                };
                self.sql(
                    &format!(
                        "(CASE WHEN jsonb_typeof(e.properties -> ?) = ? THEN (e.properties ->> ?){cast} END)"
                    ),
                    vec![key(), Expr::val(json_type), key()],
                )
            }
            _ => {
                let path = || Expr::val(format!("$.\"{name}\""));
                let (first, second) = match ty {
                    AttributeType::Number => ("integer", "real"),
                    AttributeType::Boolean => ("true", "false"),
                    _ => ("text", "text"),
                };
                self.sql(
                    "(CASE WHEN json_type(e.properties, ?) IN (?, ?) THEN json_extract(e.properties, ?) END)",
                    vec![path(), Expr::val(first), Expr::val(second), path()],
                )
            }
        }
    }

    /// Whether the event row `e` has the property, whatever its value.
    fn property_present(&self, name: &str) -> Expr {
        match self.backend {
            DbBackend::Postgres => self.sql(
                "((e.properties -> ?) IS NOT NULL)",
                vec![Expr::val(name.to_string())],
            ),
            _ => self.sql(
                "(json_type(e.properties, ?) IS NOT NULL)",
                vec![Expr::val(format!("$.\"{name}\""))],
            ),
        }
    }

    /// The events of the condition's kind, window and filters, for one contact `c`.
    fn events(&self, e: &EventCondition) -> SelectStatement {
        let mut select = Query::select();
        select
            .from_as("events", "e")
            .and_where(Expr::col(("e", "contact_id")).equals(("c", "id")))
            .and_where(Expr::col(("e", "kind")).eq(e.event.clone()));
        let occurred = || Expr::col(("e", "occurred_at"));
        match &e.window {
            None => {}
            Some(Window::Within(span)) => {
                select
                    .and_where(occurred().gte(self.now.millis() - span.millis()))
                    .and_where(occurred().lte(self.now.millis()));
            }
            Some(Window::Between(from, to)) => {
                let (start, _) =
                    date_interval(&Literal::String(from.clone()), self.now).unwrap_or((0, 0));
                let (_, end) =
                    date_interval(&Literal::String(to.clone()), self.now).unwrap_or((0, 0));
                select
                    .and_where(occurred().gte(start))
                    .and_where(occurred().lt(end));
            }
        }
        for filter in &e.filters {
            let condition = match filter.op {
                // Presence does not depend on the kind of value the property holds.
                Op::Exists | Op::NotExists => {
                    let present = self.property_present(&filter.prop);
                    if filter.op == Op::Exists {
                        present
                    } else {
                        present.not()
                    }
                }
                _ => {
                    let ty = property_type(&filter.value).unwrap_or(AttributeType::String);
                    let value = self.property(&filter.prop, ty);
                    self.compare(value, ty, false, filter.op, &filter.value)
                }
            };
            select.and_where(condition);
        }
        select
    }

    fn event(&self, e: &EventCondition) -> Expr {
        let mut select = self.events(e);
        match &e.measure {
            Measure::Performed => {
                select.expr(Expr::val(1));
                Expr::exists(select)
            }
            Measure::Count { op, value } => {
                // COUNT(*) lets PostgreSQL count from the (contact_id, kind, occurred_at) index alone.
                select.expr(Expr::cust("COUNT(*)"));
                self.compare(Expr::from(select), AttributeType::Number, false, *op, value)
            }
            Measure::Aggregate {
                func,
                field,
                op,
                value,
            } => {
                let input = if field == "amount" {
                    Expr::col(("e", "amount"))
                } else {
                    self.property(field, AttributeType::Number)
                };
                let aggregated: SimpleExpr = match func {
                    Aggregate::Sum => {
                        Func::coalesce([Func::sum(input).into(), Expr::val(0.0)]).into()
                    }
                    Aggregate::Avg => Func::avg(input).into(),
                    Aggregate::Min => Func::min(input).into(),
                    Aggregate::Max => Func::max(input).into(),
                };
                select.expr(aggregated);
                self.compare(Expr::from(select), AttributeType::Number, false, *op, value)
            }
            Measure::First { op, value } | Measure::Last { op, value } => {
                let occurred = Expr::col(("e", "occurred_at"));
                let at: SimpleExpr = if matches!(e.measure, Measure::First { .. }) {
                    Func::min(occurred).into()
                } else {
                    Func::max(occurred).into()
                };
                select.expr(at);
                self.compare(Expr::from(select), AttributeType::Date, false, *op, value)
            }
        }
    }
}
