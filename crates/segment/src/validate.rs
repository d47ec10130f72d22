//! Checking a rule against a workspace before it runs: fields exist, operands fit their
//! types, windows are bounded, referenced segments exist and do not refer to each other in a
//! cycle.

use std::collections::BTreeMap;

use clarion_model::{AttributeName, AttributeType, EventKind, SegmentId, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, FromQueryResult,
    sea_query::{Expr, ExprTrait, Query},
};

use crate::{
    RuleError, SegmentError,
    rule::{
        Comparison, EventCondition, Literal, Measure, Op, Operand, PropertyFilter, Rule, Window,
    },
    traits::RFM_SEGMENTS,
};

/// Where a contact field lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A column of `contacts`; dates are epoch milliseconds.
    Column {
        column: &'static str,
        ty: AttributeType,
    },
    /// A key of `contacts.attributes`.
    Custom { ty: AttributeType },
}

impl Field {
    pub fn ty(self) -> AttributeType {
        match self {
            Field::Column { ty, .. } | Field::Custom { ty } => ty,
        }
    }
}

/// The built-in contact fields rules can use, with their types.
pub const BUILT_IN: &[(&str, AttributeType)] = &[
    ("external_id", AttributeType::String),
    ("email", AttributeType::String),
    ("email_domain", AttributeType::String),
    ("phone", AttributeType::String),
    ("first_name", AttributeType::String),
    ("last_name", AttributeType::String),
    ("locale", AttributeType::String),
    ("time_zone", AttributeType::String),
    ("country", AttributeType::String),
    ("region", AttributeType::String),
    ("city", AttributeType::String),
    ("email_status", AttributeType::String),
    ("webhook_status", AttributeType::String),
    ("created_at", AttributeType::Date),
    ("updated_at", AttributeType::Date),
];

/// The traits rules can name, with their types; each is the column of the same name in
/// [`trait_table`]: `contact_traits`, computed by [`crate::traits::recompute`] (see there
/// for what each means), or, for the predicted CLV traits, `contact_predictions`, written by
/// `clarion_kpi::predictions` (`p_alive`: the probability that the customer is still
/// active; `expected_purchases` and `predicted_clv`: purchases and discounted value expected
/// over the configured horizon; `expected_order_value`).
pub const TRAITS: &[(&str, AttributeType)] = &[
    ("orders", AttributeType::Number),
    ("revenue", AttributeType::Number),
    ("first_purchase_at", AttributeType::Date),
    ("last_purchase_at", AttributeType::Date),
    ("recency_days", AttributeType::Number),
    ("rfm_recency", AttributeType::Number),
    ("rfm_frequency", AttributeType::Number),
    ("rfm_monetary", AttributeType::Number),
    ("rfm_segment", AttributeType::String),
    ("clv", AttributeType::Number),
    ("p_alive", AttributeType::Number),
    ("expected_purchases", AttributeType::Number),
    ("expected_order_value", AttributeType::Number),
    ("predicted_clv", AttributeType::Number),
];

/// The traits stored by the CLV predictions rather than the trait recomputation.
pub const PREDICTED_TRAITS: [&str; 4] = [
    "p_alive",
    "expected_purchases",
    "expected_order_value",
    "predicted_clv",
];

/// The table holding a trait's column: one row per contact with the trait computed.
pub fn trait_table(name: &str) -> &'static str {
    if PREDICTED_TRAITS.contains(&name) {
        "contact_predictions"
    } else {
        "contact_traits"
    }
}

/// What a rule may refer to in one workspace: its custom attributes and its segments.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    attributes: BTreeMap<String, AttributeType>,
    segments: BTreeMap<String, Rule>,
    static_segments: BTreeMap<String, SegmentId>,
}

#[derive(FromQueryResult)]
struct DefinitionRow {
    name: String,
    attr_type: String,
}

impl Schema {
    /// A schema with the built-in fields only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a custom attribute.
    pub fn with_attribute(mut self, name: AttributeName, ty: AttributeType) -> Self {
        self.attributes.insert(name.to_string(), ty);
        self
    }

    /// Adds a segment other rules may refer to by slug.
    pub fn with_segment(mut self, slug: impl Into<String>, rule: Rule) -> Self {
        self.segments.insert(slug.into(), rule);
        self
    }

    /// Adds a static segment (an uploaded list) other rules may refer to by slug; rules test
    /// its stored membership.
    pub fn with_static_segment(mut self, slug: impl Into<String>, id: SegmentId) -> Self {
        self.static_segments.insert(slug.into(), id);
        self
    }

    /// The workspace's custom attributes as recorded in `attribute_definitions`.
    pub async fn load(
        db: &impl ConnectionTrait,
        workspace: WorkspaceId,
    ) -> Result<Schema, SegmentError> {
        let query = Query::select()
            .columns(["name", "attr_type"])
            .from("attribute_definitions")
            .and_where(Expr::col("workspace_id").eq(workspace.0))
            .to_owned();
        let rows = DefinitionRow::find_by_statement(db.get_database_backend().build(&query))
            .all(db)
            .await?;
        let mut schema = Schema::new();
        for row in rows {
            if let Some(ty) = AttributeType::parse(&row.attr_type) {
                schema.attributes.insert(row.name, ty);
            }
        }
        Ok(schema)
    }

    /// The field a rule means by `name`.
    pub fn field(&self, name: &str) -> Option<Field> {
        if let Some((column, ty)) = BUILT_IN.iter().find(|(column, _)| *column == name) {
            return Some(Field::Column { column, ty: *ty });
        }
        self.attributes
            .get(name)
            .map(|ty| Field::Custom { ty: *ty })
    }
}

/// A rule that passed validation, with referenced segments inlined and every field
/// resolved. Only [`validate`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRule {
    rule: Rule,
    fields: BTreeMap<String, Field>,
    static_segments: BTreeMap<String, SegmentId>,
}

impl ValidRule {
    /// The rule with segment references replaced by the rules they name.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Where an attribute the rule uses lives.
    pub fn field(&self, name: &str) -> Option<Field> {
        self.fields.get(name).copied()
    }

    /// The id of a static segment the rule refers to.
    pub fn static_segment(&self, slug: &str) -> Option<SegmentId> {
        self.static_segments.get(slug).copied()
    }

    /// Whether the rule (after inlining) looks at events, so new events can change its
    /// members.
    pub fn uses_events(&self) -> bool {
        self.rule.any_node(&|rule| matches!(rule, Rule::Event(_)))
    }
}

/// Checks `rule` against `schema`; all problems are reported, each with its node's path.
pub fn validate(rule: &Rule, schema: &Schema) -> Result<ValidRule, Vec<RuleError>> {
    validate_inner(rule, schema, Vec::new())
}

/// Like [`validate`] for the rule of the segment `slug`, so that a reference to itself
/// counts as a cycle.
pub fn validate_segment(
    slug: &str,
    rule: &Rule,
    schema: &Schema,
) -> Result<ValidRule, Vec<RuleError>> {
    validate_inner(rule, schema, vec![slug.to_string()])
}

fn validate_inner(
    rule: &Rule,
    schema: &Schema,
    stack: Vec<String>,
) -> Result<ValidRule, Vec<RuleError>> {
    let mut checker = Checker {
        schema,
        stack,
        errors: Vec::new(),
        fields: BTreeMap::new(),
        static_segments: BTreeMap::new(),
    };
    let rule = checker.rule(rule, "");
    if checker.errors.is_empty() {
        Ok(ValidRule {
            rule,
            fields: checker.fields,
            static_segments: checker.static_segments,
        })
    } else {
        Err(checker.errors)
    }
}

struct Checker<'a> {
    schema: &'a Schema,
    /// The segments being inlined, outermost first.
    stack: Vec<String>,
    errors: Vec<RuleError>,
    fields: BTreeMap<String, Field>,
    static_segments: BTreeMap<String, SegmentId>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The instants a date literal covers, in epoch milliseconds, `[start, end)`: a whole UTC day
/// for `YYYY-MM-DD`, one millisecond for an RFC 3339 time or a relative date.
pub(crate) fn date_interval(literal: &Literal, now: Timestamp) -> Option<(i64, i64)> {
    match literal {
        Literal::String(text) => {
            if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                let start = day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
                Some((start, start + 86_400_000))
            } else {
                let at = Timestamp::parse(text).ok()?.millis();
                Some((at, at + 1))
            }
        }
        Literal::Ago(span) => {
            let at = now.millis() - span.millis();
            Some((at, at + 1))
        }
        _ => None,
    }
}

fn type_name(ty: AttributeType) -> &'static str {
    match ty {
        AttributeType::String => "a string",
        AttributeType::Number => "a number",
        AttributeType::Boolean => "a boolean",
        AttributeType::Date => "a date (YYYY-MM-DD, RFC 3339 or {\"ago\": \"30d\"})",
        AttributeType::List => "a string (an item of the list)",
    }
}

/// The operators that make sense for values of a type.
pub(crate) fn ops_for(ty: AttributeType) -> &'static [Op] {
    match ty {
        AttributeType::String => &Op::ALL,
        AttributeType::Number => &[
            Op::Eq,
            Op::Ne,
            Op::Lt,
            Op::Le,
            Op::Gt,
            Op::Ge,
            Op::Between,
            Op::In,
            Op::NotIn,
            Op::Exists,
            Op::NotExists,
        ],
        AttributeType::Boolean => &[Op::Eq, Op::Ne, Op::Exists, Op::NotExists],
        AttributeType::Date => &[
            Op::Eq,
            Op::Ne,
            Op::Lt,
            Op::Le,
            Op::Gt,
            Op::Ge,
            Op::Between,
            Op::Exists,
            Op::NotExists,
        ],
        AttributeType::List => &[Op::Contains, Op::In, Op::NotIn, Op::Exists, Op::NotExists],
    }
}

fn literal_fits(literal: &Literal, ty: AttributeType) -> bool {
    match (ty, literal) {
        (AttributeType::String | AttributeType::List, Literal::String(_)) => true,
        (AttributeType::Number, Literal::Number(n)) => n.as_f64().is_some_and(f64::is_finite),
        (AttributeType::Boolean, Literal::Bool(_)) => true,
        (AttributeType::Date, literal) => {
            date_interval(literal, Timestamp::from_millis(0)).is_some()
        }
        _ => false,
    }
}

impl Checker<'_> {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(RuleError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn rule(&mut self, rule: &Rule, path: &str) -> Rule {
        match rule {
            Rule::All(rules) | Rule::Any(rules) => {
                let key = if matches!(rule, Rule::All(_)) {
                    "all"
                } else {
                    "any"
                };
                let list_path = join(path, key);
                if rules.is_empty() {
                    self.fail(&list_path, format!("`{key}` needs at least one rule"));
                }
                let checked = rules
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.rule(item, &format!("{list_path}[{i}]")))
                    .collect();
                if key == "all" {
                    Rule::All(checked)
                } else {
                    Rule::Any(checked)
                }
            }
            Rule::Not(inner) => Rule::Not(Box::new(self.rule(inner, &join(path, "not")))),
            Rule::Attr(c) => {
                match self.schema.field(&c.attr) {
                    Some(field) => {
                        self.fields.insert(c.attr.clone(), field);
                        self.operand(path, field.ty(), c.op, &c.value);
                    }
                    None => self.fail(
                        join(path, "attr"),
                        format!(
                            "unknown field {:?}: neither a built-in field ({}) nor an attribute of this workspace",
                            c.attr,
                            BUILT_IN
                                .iter()
                                .map(|(name, _)| *name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                }
                rule.clone()
            }
            Rule::Trait(c) => {
                self.named_trait(c, path);
                rule.clone()
            }
            Rule::Interest(c) => {
                let valid_name = c.name.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                    && c.name.len() <= 64
                    && c.name.chars().all(|ch| {
                        ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.' | ':')
                    });
                if !valid_name {
                    self.fail(
                        join(path, "interest"),
                        format!(
                            "bad interest name {:?}: 1 to 64 of a-z, 0-9, _, -, . and :",
                            c.name
                        ),
                    );
                }
                self.operand(path, AttributeType::Number, c.op, &c.value);
                rule.clone()
            }
            Rule::Event(e) => {
                self.event(e, path);
                rule.clone()
            }
            Rule::Segment(slug) => self.segment(slug, path).unwrap_or_else(|| rule.clone()),
        }
    }

    fn named_trait(&mut self, c: &Comparison<String>, path: &str) {
        match TRAITS.iter().find(|(name, _)| *name == c.name) {
            Some((_, ty)) => {
                let before = self.errors.len();
                self.operand(path, *ty, c.op, &c.value);
                if c.name == "rfm_segment"
                    && self.errors.len() == before
                    && matches!(c.op, Op::Eq | Op::Ne | Op::In | Op::NotIn)
                {
                    self.rfm_segment_names(path, &c.value);
                }
            }
            None => self.fail(
                join(path, "trait"),
                format!(
                    "unknown trait {:?}; known traits: {}",
                    c.name,
                    TRAITS
                        .iter()
                        .map(|(name, _)| *name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }

    /// An exact comparison with an RFM segment that does not exist is a typo, not a rule that
    /// matches no one.
    fn rfm_segment_names(&mut self, path: &str, value: &Operand) {
        let (items, many): (&[Literal], bool) = match value {
            Operand::None => return,
            Operand::One(literal) => (std::slice::from_ref(literal), false),
            Operand::List(items) => (items, true),
        };
        for (i, item) in items.iter().enumerate() {
            if let Literal::String(name) = item
                && !RFM_SEGMENTS.contains(&name.as_str())
            {
                let value_path = join(path, "value");
                self.fail(
                    if many {
                        format!("{value_path}[{i}]")
                    } else {
                        value_path
                    },
                    format!(
                        "unknown RFM segment {name:?}; the segments are {}",
                        RFM_SEGMENTS.join(", ")
                    ),
                );
            }
        }
    }

    fn segment(&mut self, slug: &str, path: &str) -> Option<Rule> {
        let key_path = join(path, "segment");
        if let Some(start) = self.stack.iter().position(|s| s == slug) {
            let mut cycle = self.stack[start..].to_vec();
            cycle.push(slug.to_string());
            self.fail(
                key_path,
                format!(
                    "segments refer to each other in a cycle: {}",
                    cycle.join(" -> ")
                ),
            );
            return None;
        }
        if let Some(id) = self.schema.static_segments.get(slug) {
            self.static_segments.insert(slug.to_string(), *id);
            return Some(Rule::Segment(slug.to_string()));
        }
        let Some(referenced) = self.schema.segments.get(slug) else {
            self.fail(key_path, format!("no segment with slug {slug:?}"));
            return None;
        };
        let mut stack = self.stack.clone();
        stack.push(slug.to_string());
        match validate_inner(referenced, self.schema, stack) {
            Ok(valid) => {
                self.fields.extend(valid.fields);
                self.static_segments.extend(valid.static_segments);
                Some(valid.rule)
            }
            Err(errors) => {
                for error in errors {
                    // A cycle found deeper down is reported once, where it starts.
                    let message = if error.message.starts_with("segments refer to each other") {
                        error.message
                    } else {
                        format!("in segment {slug:?}, {error}")
                    };
                    self.fail(&key_path, message);
                }
                None
            }
        }
    }

    /// Checks `op` and its operand against a value type; `path` is the node holding `op`
    /// and `value`.
    fn operand(&mut self, path: &str, ty: AttributeType, op: Op, value: &Operand) {
        if !ops_for(ty).contains(&op) {
            self.fail(
                join(path, "op"),
                format!(
                    "operator {} does not apply to {}; use one of {}",
                    op.as_str(),
                    type_name(ty),
                    ops_for(ty)
                        .iter()
                        .map(|op| op.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            );
            return;
        }
        let value_path = join(path, "value");
        let items: &[Literal] = match (op, value) {
            (op, Operand::None) if op.is_unary() => return,
            (op, _) if op.is_unary() => {
                return self.fail(value_path, format!("{} takes no value", op.as_str()));
            }
            (Op::Between, Operand::List(items)) if items.len() == 2 => items,
            (Op::Between, _) => {
                return self.fail(value_path, "between takes two values, e.g. [30, 50]");
            }
            (Op::In | Op::NotIn, Operand::List(items)) if !items.is_empty() => items,
            (Op::In | Op::NotIn, _) => {
                return self.fail(
                    value_path,
                    format!("{} takes a non-empty list of values", op.as_str()),
                );
            }
            (_, Operand::One(literal)) => std::slice::from_ref(literal),
            (_, _) => {
                return self.fail(value_path, format!("{} takes one value", op.as_str()));
            }
        };
        if let (Op::Between, [Literal::Number(low), Literal::Number(high)]) = (op, items)
            && low.as_f64() > high.as_f64()
        {
            self.fail(&value_path, "between needs the lower bound first");
        }
        let many = items.len() > 1 || matches!(value, Operand::List(_));
        for (i, item) in items.iter().enumerate() {
            if !literal_fits(item, ty) {
                let item_path = if many {
                    format!("{value_path}[{i}]")
                } else {
                    value_path.clone()
                };
                self.fail(item_path, format!("expected {}", type_name(ty)));
            }
        }
    }

    fn event(&mut self, e: &EventCondition, path: &str) {
        if let Err(error) = EventKind::parse(e.event.clone()) {
            self.fail(join(path, "event"), error.to_string());
        }
        match &e.window {
            Some(Window::Within(span)) if span.amount == 0 => self.fail(
                join(path, "within"),
                "a window of zero length holds no events",
            ),
            Some(Window::Between(from, to)) => {
                let now = Timestamp::from_millis(0);
                let from = date_interval(&Literal::String(from.clone()), now);
                let to = date_interval(&Literal::String(to.clone()), now);
                match (from, to) {
                    (Some((start, _)), Some((_, end))) if start < end => {}
                    (Some(_), Some(_)) => {
                        self.fail(join(path, "between"), "the window ends before it starts")
                    }
                    _ => self.fail(
                        join(path, "between"),
                        "expected two dates (YYYY-MM-DD or RFC 3339 with an offset)",
                    ),
                }
            }
            _ => {}
        }
        let needs_window = !matches!(
            e.measure,
            Measure::Performed | Measure::First { .. } | Measure::Last { .. }
        );
        if needs_window && e.window.is_none() {
            self.fail(
                join(path, "within"),
                "counts and aggregates need a bounded window: add within (e.g. \"90d\") or between",
            );
        }
        let numeric = AttributeType::Number;
        match &e.measure {
            Measure::Performed => {}
            Measure::Count { op, value } => self.operand(&join(path, "count"), numeric, *op, value),
            Measure::First { op, value } => {
                self.operand(&join(path, "first"), AttributeType::Date, *op, value)
            }
            Measure::Last { op, value } => {
                self.operand(&join(path, "last"), AttributeType::Date, *op, value)
            }
            Measure::Aggregate {
                func,
                field,
                op,
                value,
            } => {
                if !is_property_name(field) {
                    self.fail(
                        join(path, func.as_str()),
                        format!(
                            "expected amount or the name of a numeric event property, found {field:?}"
                        ),
                    );
                }
                self.operand(path, numeric, *op, value);
            }
        }
        for (i, filter) in e.filters.iter().enumerate() {
            self.property_filter(filter, &format!("{}[{i}]", join(path, "where")));
        }
    }

    fn property_filter(&mut self, filter: &PropertyFilter, path: &str) {
        if !is_property_name(&filter.prop) {
            self.fail(
                join(path, "prop"),
                format!(
                    "bad property name {:?}: 1 to 64 of letters, digits and _",
                    filter.prop
                ),
            );
        }
        match property_type(&filter.value) {
            Some(ty) => self.operand(path, ty, filter.op, &filter.value),
            None => self.fail(
                join(path, "value"),
                "property values are strings, numbers or booleans, all of one kind",
            ),
        }
    }
}

/// Property names are bound as parameters, but are also part of JSON paths on SQLite, so
/// they are kept to plain identifiers.
pub(crate) fn is_property_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The type a property filter compares as, from its operand; `None` when the operand mixes
/// kinds or uses relative dates.
pub(crate) fn property_type(value: &Operand) -> Option<AttributeType> {
    let items: &[Literal] = match value {
        Operand::None => return Some(AttributeType::String),
        Operand::One(literal) => std::slice::from_ref(literal),
        Operand::List(items) => items,
    };
    let kind = |literal: &Literal| match literal {
        Literal::String(_) => Some(AttributeType::String),
        Literal::Number(_) => Some(AttributeType::Number),
        Literal::Bool(_) => Some(AttributeType::Boolean),
        Literal::Ago(_) => None,
    };
    let first = items.first().map_or(Some(AttributeType::String), kind)?;
    items
        .iter()
        .all(|item| kind(item) == Some(first))
        .then_some(first)
}
