//! Cross-tabs: how the contacts of a workspace spread over two dimensions at once, e.g.
//! gender × purchased-in-90-days, with counts, row and column totals and percentages.
//!
//! A dimension is one of
//! - the values of a field: `{"attr": "country", "top": 10}` (a built-in field or a custom
//!   attribute) or `{"trait": "rfm_segment"}`; the `top` most frequent values get a row each,
//!   the rest are counted under `(other)`, contacts without a value under `(none)`;
//! - numeric buckets: `{"attr": "age", "edges": [18, 30, 50]}` or
//!   `{"trait": "revenue", "edges": [100, 500]}` give `< 18`, `18-30`, `30-50`, `50+` and
//!   `(none)`; a bucket holds its lower edge and not its upper one;
//! - membership of a stored segment: `{"segment": "vip-customers"}` gives `member` and
//!   `not member` (current members, whose stay has no exit time);
//! - any rule, as a yes/no flag: `{"rule": {"event": "purchase", "within": "90d"}}` or the
//!   text form `{"rule": "purchase(90d)"}`.
//!
//! The whole table is one `GROUP BY` query: each dimension becomes an integer key computed
//! per contact (a `CASE` over the value, a bucket, an `EXISTS` on memberships, or `IN` the
//! rule's compiled query), and every constant is a bound parameter. A values dimension first
//! asks for its most frequent values, so a field with a million distinct values never
//! reaches the client.

use clarion_model::{AttributeType, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend,
    sea_query::{Expr, ExprTrait, JoinType, Order, Query, SelectStatement},
};
use serde::Serialize;
use serde_json::Value;

use crate::{
    Rule, RuleError, Schema, SegmentError, compile, parse_text,
    validate::{Field, validate},
};

/// Most values a values dimension may list before `(other)`.
pub const MAX_TOP: usize = 100;
/// Values listed when `top` is left out.
pub const DEFAULT_TOP: usize = 10;
/// Most edges a buckets dimension may have.
pub const MAX_EDGES: usize = 50;

/// The traits a cross-tab can use, with whether their values are few enough to list
/// (the rest need `edges`).
pub const TRAIT_COLUMNS: &[(&str, bool)] = &[
    ("rfm_segment", true),
    ("rfm_recency", true),
    ("rfm_frequency", true),
    ("rfm_monetary", true),
    ("orders", false),
    ("revenue", false),
    ("recency_days", false),
    ("clv", false),
];

/// Where a values or buckets dimension reads its value.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A built-in contact field or a custom attribute.
    Attribute(String),
    /// A column of `contact_traits`; contacts without computed traits have no value.
    Trait(&'static str),
}

/// One axis of a cross-tab.
#[derive(Debug, Clone, PartialEq)]
pub enum Dimension {
    /// The `top` most frequent values, then `(other)` and `(none)`.
    Values { source: Source, top: usize },
    /// Numeric ranges split at `edges` (increasing), then `(none)`.
    Buckets { source: Source, edges: Vec<f64> },
    /// Current membership of the stored segment with this slug.
    Segment(String),
    /// Whether the contact satisfies a rule.
    Flag(Rule),
}

/// What to tabulate: rows × columns over the contacts of a workspace, optionally only those
/// satisfying `filter`.
#[derive(Debug, Clone, PartialEq)]
pub struct CrosstabRequest {
    pub rows: Dimension,
    pub columns: Dimension,
    pub filter: Option<Rule>,
}

/// One cell: its count and its share of its row, its column and the whole table, in percent
/// (0 when the row, column or table is empty).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub count: u64,
    pub row_pct: f64,
    pub column_pct: f64,
    pub total_pct: f64,
}

/// A computed cross-tab. `cells[i][j]` is row `rows[i]` × column `columns[j]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crosstab {
    /// Row labels, in display order.
    pub rows: Vec<String>,
    /// Column labels, in display order.
    pub columns: Vec<String>,
    pub cells: Vec<Vec<Cell>>,
    pub row_totals: Vec<u64>,
    pub column_totals: Vec<u64>,
    pub total: u64,
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> SegmentError {
    SegmentError::InvalidRequest(vec![RuleError {
        path: path.into(),
        message: message.into(),
    }])
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A rule of the request that is invalid: [`SegmentError::Invalid`], like a bad rule
/// anywhere else, with `path` before the rule's own node path.
fn invalid_rule(path: String, message: impl Into<String>) -> SegmentError {
    SegmentError::Invalid(vec![RuleError {
        path,
        message: message.into(),
    }])
}

/// Reads a rule given as JSON or as a string in the text form; errors carry `path` before
/// the rule's own node path.
pub fn rule_from_request(value: &Value, path: &str) -> Result<Rule, SegmentError> {
    match value {
        Value::String(text) => parse_text(text).map_err(|e| {
            invalid_rule(path.to_string(), format!("the rule could not be read: {e}"))
        }),
        other => Rule::from_json(other).map_err(|e| {
            invalid_rule(
                join(path, &e.path),
                format!("the rule could not be read: {}", e.message),
            )
        }),
    }
}

impl CrosstabRequest {
    /// Reads `{"rows": dimension, "columns": dimension, "filter": rule?}`; an error names
    /// the bad field, e.g. `rows.edges[1]`.
    pub fn from_json(value: &Value) -> Result<CrosstabRequest, SegmentError> {
        let Value::Object(map) = value else {
            return Err(invalid(
                "",
                "expected an object with rows, columns and an optional filter",
            ));
        };
        if let Some(key) = map
            .keys()
            .find(|k| !["rows", "columns", "filter"].contains(&k.as_str()))
        {
            return Err(invalid(
                key.as_str(),
                "unknown field; expected rows, columns and filter",
            ));
        }
        let dimension = |key: &str| match map.get(key) {
            Some(value) => Dimension::from_json(value, key),
            None => Err(invalid(
                key,
                "missing; give a dimension such as {\"attr\": \"country\"}",
            )),
        };
        let rows = dimension("rows")?;
        let columns = dimension("columns")?;
        let filter = match map.get("filter") {
            None | Some(Value::Null) => None,
            Some(value) => Some(rule_from_request(value, "filter")?),
        };
        Ok(CrosstabRequest {
            rows,
            columns,
            filter,
        })
    }
}

impl Dimension {
    /// Reads one dimension; `path` (`rows` or `columns`) prefixes error paths.
    pub fn from_json(value: &Value, path: &str) -> Result<Dimension, SegmentError> {
        let Value::Object(map) = value else {
            return Err(invalid(
                path,
                "expected an object with one of attr, trait, segment or rule",
            ));
        };
        let kinds: Vec<&str> = ["attr", "trait", "segment", "rule"]
            .into_iter()
            .filter(|k| map.contains_key(*k))
            .collect();
        let kind = match kinds.as_slice() {
            [one] => *one,
            [] => {
                return Err(invalid(
                    path,
                    "expected one of attr, trait, segment or rule",
                ));
            }
            _ => {
                return Err(invalid(
                    path,
                    format!("give only one of {}", kinds.join(", ")),
                ));
            }
        };
        let allowed: &[&str] = match kind {
            "attr" | "trait" => &["attr", "trait", "top", "edges"],
            _ => &[kind],
        };
        if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(invalid(
                join(path, key),
                format!("unknown field for a {kind} dimension"),
            ));
        }
        let name = |key: &str| match map.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(invalid(join(path, key), "expected a non-empty string")),
        };
        match kind {
            "segment" => Ok(Dimension::Segment(name("segment")?)),
            "rule" => {
                let value = map.get("rule").unwrap_or(&Value::Null);
                Ok(Dimension::Flag(rule_from_request(
                    value,
                    &join(path, "rule"),
                )?))
            }
            _ => {
                let source = if kind == "attr" {
                    Source::Attribute(name("attr")?)
                } else {
                    let wanted = name("trait")?;
                    let (column, _) = TRAIT_COLUMNS
                        .iter()
                        .find(|(column, _)| *column == wanted)
                        .ok_or_else(|| {
                            invalid(
                                join(path, "trait"),
                                format!(
                                    "unknown trait {wanted:?}; known traits: {}",
                                    TRAIT_COLUMNS
                                        .iter()
                                        .map(|(c, _)| *c)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            )
                        })?;
                    Source::Trait(column)
                };
                match (map.get("edges"), map.get("top")) {
                    (Some(_), Some(_)) => Err(invalid(
                        join(path, "top"),
                        "top applies to values, edges to buckets; give one of them",
                    )),
                    (Some(edges), None) => Ok(Dimension::Buckets {
                        source,
                        edges: edges_from_json(edges, &join(path, "edges"))?,
                    }),
                    (None, top) => {
                        let top = match top {
                            None => DEFAULT_TOP,
                            Some(value) => match value.as_u64() {
                                Some(n @ 1..) if n as usize <= MAX_TOP => n as usize,
                                _ => {
                                    return Err(invalid(
                                        join(path, "top"),
                                        format!("expected a whole number from 1 to {MAX_TOP}"),
                                    ));
                                }
                            },
                        };
                        if let Source::Trait(column) = &source
                            && TRAIT_COLUMNS
                                .iter()
                                .any(|(c, listable)| c == column && !listable)
                        {
                            return Err(invalid(
                                join(path, "edges"),
                                format!(
                                    "the trait {column} is a number with many values: give edges, e.g. [100, 500]"
                                ),
                            ));
                        }
                        Ok(Dimension::Values { source, top })
                    }
                }
            }
        }
    }
}

fn edges_from_json(value: &Value, path: &str) -> Result<Vec<f64>, SegmentError> {
    let Value::Array(items) = value else {
        return Err(invalid(
            path,
            "expected a list of increasing numbers, e.g. [100, 500]",
        ));
    };
    if items.is_empty() || items.len() > MAX_EDGES {
        return Err(invalid(
            path,
            format!("expected 1 to {MAX_EDGES} increasing numbers"),
        ));
    }
    let mut edges = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let edge = item
            .as_f64()
            .filter(|e| e.is_finite())
            .ok_or_else(|| invalid(format!("{path}[{i}]"), "expected a number"))?;
        if edges.last().is_some_and(|last| *last >= edge) {
            return Err(invalid(
                format!("{path}[{i}]"),
                "edges must increase strictly",
            ));
        }
        edges.push(edge);
    }
    Ok(edges)
}

/// A number as a label: `100`, `0.5`.
fn number_label(n: f64) -> String {
    format!("{n}")
}

/// The labels of buckets split at `edges`, lowest first.
pub fn bucket_labels(edges: &[f64]) -> Vec<String> {
    let mut labels = Vec::with_capacity(edges.len() + 1);
    if let Some(first) = edges.first() {
        labels.push(format!("< {}", number_label(*first)));
    }
    for pair in edges.windows(2) {
        labels.push(format!(
            "{}-{}",
            number_label(pair[0]),
            number_label(pair[1])
        ));
    }
    if let Some(last) = edges.last() {
        labels.push(format!("{}+", number_label(*last)));
    }
    labels
}

/// The label of contacts without a value.
pub const NONE_LABEL: &str = "(none)";
/// The label of the values after the top ones.
pub const OTHER_LABEL: &str = "(other)";

const NONE_KEY: i64 = -1;
const OTHER_KEY: i64 = -2;

/// A dimension ready to run: its per-contact key expression and its categories in display
/// order as (key, label, shown even when empty).
struct Resolved {
    key: Expr,
    categories: Vec<(i64, String, bool)>,
    needs_traits: bool,
}

use crate::compile::custom_sql as sql;

struct Context<'a> {
    db: &'a DatabaseConnection,
    backend: DbBackend,
    workspace: WorkspaceId,
    schema: &'a Schema,
    now: Timestamp,
    /// The contacts in scope: the filter's compiled query, or all of the workspace.
    base: SelectStatement,
}

fn validated(rule: &Rule, schema: &Schema, path: &str) -> Result<crate::ValidRule, SegmentError> {
    validate(rule, schema).map_err(|errors| {
        SegmentError::Invalid(
            errors
                .into_iter()
                .map(|e| RuleError {
                    path: join(path, &e.path),
                    message: e.message,
                })
                .collect(),
        )
    })
}

/// The contacts of `workspace` (those satisfying `filter` when there is one) as a query
/// over `contacts AS c` with no columns selected yet.
fn scope(
    schema: &Schema,
    workspace: WorkspaceId,
    backend: DbBackend,
    filter: Option<&Rule>,
    now: Timestamp,
) -> Result<SelectStatement, SegmentError> {
    let mut base = match filter {
        Some(rule) => compile(&validated(rule, schema, "filter")?, workspace, backend, now)
            .map_err(|e| prefix(e, "filter"))?,
        None => Query::select()
            .from_as("contacts", "c")
            .and_where(Expr::col(("c", "workspace_id")).eq(workspace.0))
            .to_owned(),
    };
    base.clear_selects();
    Ok(base)
}

/// Puts `path` before the node path of a compilation error.
fn prefix(error: SegmentError, path: &str) -> SegmentError {
    match error {
        SegmentError::NotYetComputed { path: inner, what } => SegmentError::NotYetComputed {
            path: join(path, &inner),
            what,
        },
        SegmentError::Invalid(errors) => SegmentError::Invalid(
            errors
                .into_iter()
                .map(|e| RuleError {
                    path: join(path, &e.path),
                    message: e.message,
                })
                .collect(),
        ),
        other => other,
    }
}

fn with_traits(mut select: SelectStatement, needs: bool) -> SelectStatement {
    if needs {
        select.join_as(
            JoinType::LeftJoin,
            "contact_traits",
            "t",
            Expr::col(("t", "contact_id")).equals(("c", "id")),
        );
    }
    select
}

impl Context<'_> {
    /// The value of a source per contact: text for a values dimension, a number for buckets.
    fn source(
        &self,
        source: &Source,
        path: &str,
        numeric: bool,
    ) -> Result<(Expr, bool), SegmentError> {
        let backend = self.backend;
        match source {
            Source::Trait(column) => {
                let col = crate::traits::trait_value(backend, "t", column, self.now);
                let expr = if numeric || *column == "rfm_segment" {
                    col
                } else {
                    sql(backend, "CAST(? AS TEXT)", vec![col])
                };
                Ok((expr, true))
            }
            Source::Attribute(name) => {
                let key_path = join(path, "attr");
                let field = self.schema.field(name).ok_or_else(|| {
                    invalid(
                        &key_path,
                        format!(
                            "unknown field {name:?}: neither a built-in field nor an attribute of this workspace"
                        ),
                    )
                })?;
                let ty = field.ty();
                if numeric && ty != AttributeType::Number {
                    return Err(invalid(
                        &key_path,
                        format!(
                            "{name} is not a number, so it cannot be split at edges; leave edges out to list its values"
                        ),
                    ));
                }
                if matches!(ty, AttributeType::Date | AttributeType::List) {
                    return Err(invalid(
                        &key_path,
                        format!(
                            "{name} is a {}; cross-tab its values through a rule instead, e.g. {{\"rule\": {{\"attr\": \"{name}\", ...}}}}",
                            if ty == AttributeType::Date {
                                "date"
                            } else {
                                "list"
                            }
                        ),
                    ));
                }
                let expr = match field {
                    Field::Column { column, .. } => Expr::col(("c", column)),
                    Field::Custom { .. } => match backend {
                        DbBackend::Postgres if numeric => sql(
                            backend,
                            "((c.attributes ->> ?)::double precision)",
                            vec![Expr::val(name.clone())],
                        ),
                        DbBackend::Postgres => sql(
                            backend,
                            "(c.attributes ->> ?)",
                            vec![Expr::val(name.clone())],
                        ),
                        _ => {
                            let json_path = || Expr::val(format!("$.\"{name}\""));
                            if numeric {
                                sql(backend, "json_extract(c.attributes, ?)", vec![json_path()])
                            } else {
                                // SQLite reads JSON true/false as 1/0; spell them as
                                // PostgreSQL's ->> does, so both agree.
                                sql(
                                    backend,
                                    "(CASE json_type(c.attributes, ?) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(json_extract(c.attributes, ?) AS TEXT) END)",
                                    vec![json_path(), json_path()],
                                )
                            }
                        }
                    },
                };
                Ok((expr, false))
            }
        }
    }

    async fn resolve(&self, dimension: &Dimension, path: &str) -> Result<Resolved, SegmentError> {
        let backend = self.backend;
        match dimension {
            Dimension::Values { source, top } => {
                let (value, needs_traits) = self.source(source, path, false)?;
                let top_values = self.top_values(value.clone(), needs_traits, *top).await?;
                let mut categories: Vec<(i64, String, bool)> = top_values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as i64, v.clone(), true))
                    .collect();
                categories.push((OTHER_KEY, OTHER_LABEL.to_string(), false));
                categories.push((NONE_KEY, NONE_LABEL.to_string(), true));
                let missing_or_other = "(CASE WHEN ? IS NULL THEN ? ELSE ? END)";
                let (template, args) = if top_values.is_empty() {
                    (
                        missing_or_other.to_string(),
                        vec![value, Expr::val(NONE_KEY), Expr::val(OTHER_KEY)],
                    )
                } else {
                    // A simple CASE evaluates the value once per contact.
                    let mut template = String::from("(CASE ?");
                    let mut args = vec![value.clone()];
                    for (i, v) in top_values.iter().enumerate() {
                        template.push_str(" WHEN ? THEN ?");
                        args.push(Expr::val(v.clone()));
                        args.push(Expr::val(i as i64));
                    }
                    template.push_str(&format!(" ELSE {missing_or_other} END)"));
                    args.extend([value, Expr::val(NONE_KEY), Expr::val(OTHER_KEY)]);
                    (template, args)
                };
                Ok(Resolved {
                    key: sql(backend, &template, args),
                    categories,
                    needs_traits,
                })
            }
            Dimension::Buckets { source, edges } => {
                let (value, needs_traits) = self.source(source, path, true)?;
                let mut template = String::from("(CASE WHEN ? IS NULL THEN ?");
                let mut args = vec![value.clone(), Expr::val(NONE_KEY)];
                for (i, edge) in edges.iter().enumerate() {
                    template.push_str(" WHEN ? < ? THEN ?");
                    args.extend([value.clone(), Expr::val(*edge), Expr::val(i as i64)]);
                }
                template.push_str(" ELSE ? END)");
                args.push(Expr::val(edges.len() as i64));
                let mut categories: Vec<(i64, String, bool)> = bucket_labels(edges)
                    .into_iter()
                    .enumerate()
                    .map(|(i, label)| (i as i64, label, true))
                    .collect();
                categories.push((NONE_KEY, NONE_LABEL.to_string(), true));
                Ok(Resolved {
                    key: sql(backend, &template, args),
                    categories,
                    needs_traits,
                })
            }
            Dimension::Segment(slug) => {
                let id = self.segment_id(slug).await?.ok_or_else(|| {
                    invalid(
                        join(path, "segment"),
                        format!("no segment with slug {slug:?} in this workspace"),
                    )
                })?;
                let member = Query::select()
                    .expr(Expr::val(1))
                    .from_as("segment_memberships", "m")
                    .and_where(Expr::col(("m", "segment_id")).eq(id))
                    .and_where(Expr::col(("m", "contact_id")).equals(("c", "id")))
                    .and_where(Expr::col(("m", "exited_at")).is_null())
                    .to_owned();
                Ok(Resolved {
                    key: sql(
                        backend,
                        "(CASE WHEN ? THEN ? ELSE ? END)",
                        vec![Expr::exists(member), Expr::val(1_i64), Expr::val(0_i64)],
                    ),
                    categories: vec![
                        (1, "member".to_string(), true),
                        (0, "not member".to_string(), true),
                    ],
                    needs_traits: false,
                })
            }
            Dimension::Flag(rule) => {
                let rule_path = join(path, "rule");
                let valid = validated(rule, self.schema, &rule_path)?;
                let matching = compile(&valid, self.workspace, backend, self.now)
                    .map_err(|e| prefix(e, &rule_path))?;
                Ok(Resolved {
                    key: sql(
                        backend,
                        "(CASE WHEN ? THEN ? ELSE ? END)",
                        vec![
                            Expr::col(("c", "id")).in_subquery(matching),
                            Expr::val(1_i64),
                            Expr::val(0_i64),
                        ],
                    ),
                    categories: vec![(1, "yes".to_string(), true), (0, "no".to_string(), true)],
                    needs_traits: false,
                })
            }
        }
    }

    async fn segment_id(&self, slug: &str) -> Result<Option<i64>, SegmentError> {
        let query = Query::select()
            .column("id")
            .from("segments")
            .and_where(Expr::col("workspace_id").eq(self.workspace.0))
            .and_where(Expr::col("slug").eq(slug))
            .to_owned();
        let row = self.db.query_one(&query).await?;
        Ok(match row {
            Some(row) => Some(row.try_get("", "id")?),
            None => None,
        })
    }

    /// The `top` most frequent non-missing values in scope, most frequent first, ties in
    /// code-point order (the same on both databases).
    async fn top_values(
        &self,
        value: Expr,
        needs_traits: bool,
        top: usize,
    ) -> Result<Vec<String>, SegmentError> {
        let mut inner = with_traits(self.base.clone(), needs_traits);
        inner.expr_as(value, "v");
        let ordered_value = match self.backend {
            DbBackend::Postgres => Expr::cust("x.v COLLATE \"C\""),
            _ => Expr::cust("x.v"),
        };
        let query = Query::select()
            .column(("x", "v"))
            .expr_as(Expr::cust("COUNT(*)"), "n")
            .from_subquery(inner, "x")
            .and_where(Expr::col(("x", "v")).is_not_null())
            .group_by_col(("x", "v"))
            .order_by_expr(Expr::cust("COUNT(*)"), Order::Desc)
            .order_by_expr(ordered_value, Order::Asc)
            .limit(top as u64)
            .to_owned();
        let rows = self.db.query_all(&query).await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String>("", "v")?))
            .collect()
    }
}

/// Computes the cross-tab of `request` over the contacts of `workspace` at `now` (rules'
/// windows count back from it). Unknown fields, segments and bad rules answer
/// [`SegmentError::InvalidRequest`] naming the field, e.g. `rows.attr`.
pub async fn crosstab(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    request: &CrosstabRequest,
    now: Timestamp,
) -> Result<Crosstab, SegmentError> {
    let schema = crate::store::schema(db, workspace).await?;
    let backend = db.get_database_backend();
    let base = scope(&schema, workspace, backend, request.filter.as_ref(), now)?;
    let context = Context {
        db,
        backend,
        workspace,
        schema: &schema,
        now,
        base,
    };
    let rows = context.resolve(&request.rows, "rows").await?;
    let columns = context.resolve(&request.columns, "columns").await?;

    let mut inner = with_traits(
        context.base.clone(),
        rows.needs_traits || columns.needs_traits,
    );
    inner.expr_as(rows.key, "r").expr_as(columns.key, "k");
    let query = Query::select()
        .columns([("x", "r"), ("x", "k")])
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .from_subquery(inner, "x")
        .group_by_col(("x", "r"))
        .group_by_col(("x", "k"))
        .to_owned();
    let mut counts = Vec::new();
    for row in db.query_all(&query).await? {
        let r: i64 = row.try_get("", "r")?;
        let k: i64 = row.try_get("", "k")?;
        let n: i64 = row.try_get("", "n")?;
        counts.push((r, k, u64::try_from(n).unwrap_or(0)));
    }
    Ok(tabulate(&rows.categories, &columns.categories, &counts))
}

fn tabulate(
    rows: &[(i64, String, bool)],
    columns: &[(i64, String, bool)],
    counts: &[(i64, i64, u64)],
) -> Crosstab {
    let total_of = |pick: &dyn Fn(&(i64, i64, u64)) -> bool| -> u64 {
        counts.iter().filter(|c| pick(c)).map(|c| c.2).sum()
    };
    let rows: Vec<&(i64, String, bool)> = rows
        .iter()
        .filter(|(key, _, always)| *always || total_of(&|c| c.0 == *key) > 0)
        .collect();
    let columns: Vec<&(i64, String, bool)> = columns
        .iter()
        .filter(|(key, _, always)| *always || total_of(&|c| c.1 == *key) > 0)
        .collect();
    let count = |r: i64, k: i64| -> u64 {
        counts
            .iter()
            .filter(|c| c.0 == r && c.1 == k)
            .map(|c| c.2)
            .sum()
    };
    let matrix: Vec<Vec<u64>> = rows
        .iter()
        .map(|(r, _, _)| columns.iter().map(|(k, _, _)| count(*r, *k)).collect())
        .collect();
    let row_totals: Vec<u64> = matrix.iter().map(|row| row.iter().sum()).collect();
    let column_totals: Vec<u64> = (0..columns.len())
        .map(|j| matrix.iter().map(|row| row[j]).sum())
        .collect();
    let total: u64 = row_totals.iter().sum();
    let pct = |n: u64, of: u64| {
        if of == 0 {
            0.0
        } else {
            n as f64 * 100.0 / of as f64
        }
    };
    let cells = matrix
        .iter()
        .enumerate()
        .map(|(i, row)| {
            row.iter()
                .enumerate()
                .map(|(j, n)| Cell {
                    count: *n,
                    row_pct: pct(*n, row_totals[i]),
                    column_pct: pct(*n, column_totals[j]),
                    total_pct: pct(*n, total),
                })
                .collect()
        })
        .collect();
    Crosstab {
        rows: rows.iter().map(|(_, label, _)| label.clone()).collect(),
        columns: columns.iter().map(|(_, label, _)| label.clone()).collect(),
        cells,
        row_totals,
        column_totals,
        total,
    }
}
