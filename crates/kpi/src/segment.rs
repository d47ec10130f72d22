//! Segment conversion: how many of a segment's members reached a goal in a period, and how
//! two segments compare.
//!
//! # Figures
//!
//! For a segment, a goal event kind and a period `[from, to)`:
//!
//! - `members`: the segment's current members (`basis=current`, the default), or with
//!   `basis=period_start` its members at `from` according to the membership history (entered
//!   at or before `from`, not exited by then).
//! - `converters`: members with at least one goal event with `from <= occurred_at < to`.
//! - `conversion_rate` = converters / members, with its Wilson interval at the workspace's
//!   confidence level.
//! - `orders`: the members' goal events in the period; `revenue`: the sum of their amounts
//!   (no amount counts 0).
//! - `revenue_per_member` = revenue / members; `average_order_value` = revenue / orders.
//!
//! A breakdown splits the members by their membership of another segment (`in` / `out`), by
//! the value of an attribute, or by a computed trait (`rfm_segment`, `rfm_recency`,
//! `rfm_frequency`, `rfm_monetary`); members without a value are under `null`. A contact in
//! two segments counts in each. The comparison of two segments puts the first as control:
//! the difference of the conversion rates (two proportions) and of the revenue per member
//! (Welch), with intervals and p-values (see [`crate::stats`]).
//!
//! Rates with an empty denominator are `null`.
//!
//! # Where the figures come from
//!
//! Members from `segment_memberships`; each member's goal events of the period from the goal
//! roll-up ([`crate::goal_days`]: events per contact, kind and UTC day, kept current at
//! ingestion) for the period's whole days and from the raw events for the partial days at its
//! edges. The figures are the same as over the raw events alone.

use clarion_model::{AttributeName, Timestamp, WorkspaceId};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    KpiError,
    goal_days::{self, Window},
    param, settings,
    stats::{self, Comparison, ConfidenceLevel, Interval, Proportion, Summary},
};

/// Whose members a segment report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The segment's members now.
    #[default]
    Current,
    /// Its members at the start of the period, from the membership history.
    PeriodStart,
}

/// How a report's members are split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breakdown {
    /// Member of this other segment (by slug) or not.
    Segment(String),
    /// The value of a contact attribute.
    Attribute(AttributeName),
    /// A computed trait.
    Trait(&'static str),
}

const TRAITS: [&str; 4] = [
    "rfm_segment",
    "rfm_recency",
    "rfm_frequency",
    "rfm_monetary",
];

impl Breakdown {
    /// Reads `segment:SLUG`, `attr:NAME` or `trait:NAME`.
    ///
    /// # Errors
    /// [`KpiError::Invalid`] naming `by`.
    pub fn parse(value: &str) -> Result<Self, KpiError> {
        let (kind, name) = value.split_once(':').ok_or_else(|| {
            KpiError::invalid(
                "by",
                format!("{value:?} is not segment:SLUG, attr:NAME or trait:NAME"),
            )
        })?;
        match kind {
            "segment" if !name.is_empty() => Ok(Breakdown::Segment(name.to_owned())),
            "attr" => AttributeName::parse(name)
                .map(Breakdown::Attribute)
                .map_err(|e| KpiError::invalid("by", e.to_string())),
            "trait" => TRAITS
                .iter()
                .find(|t| **t == name)
                .map(|t| Breakdown::Trait(t))
                .ok_or_else(|| {
                    KpiError::invalid(
                        "by",
                        format!("{name:?} is not a trait ({})", TRAITS.join(", ")),
                    )
                }),
            _ => Err(KpiError::invalid(
                "by",
                format!("{value:?} is not segment:SLUG, attr:NAME or trait:NAME"),
            )),
        }
    }
}

/// What a segment conversion report is about.
#[derive(Debug, Clone)]
pub struct ConversionQuery {
    pub event: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub basis: Basis,
}

impl ConversionQuery {
    fn check(&self) -> Result<(), KpiError> {
        if self.from >= self.to {
            return Err(KpiError::invalid("to", "must lie after from"));
        }
        Ok(())
    }
}

/// The conversion figures of a group of members; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Conversion {
    pub members: u64,
    pub converters: u64,
    pub conversion_rate: Option<f64>,
    pub conversion_interval: Option<Interval>,
    pub orders: u64,
    pub revenue: f64,
    pub revenue_per_member: Option<f64>,
    pub average_order_value: Option<f64>,
    /// Sample standard deviation of the revenue per member; null below two members.
    pub revenue_sd: Option<f64>,
}

/// One group of a breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Group {
    /// `in` / `out` for a segment, the value for an attribute or trait; null without one.
    pub key: Option<String>,
    #[serde(flatten)]
    pub figures: Conversion,
}

/// Conversion of one segment in a period.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SegmentConversion {
    pub segment: String,
    pub event: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub basis: Basis,
    #[serde(flatten)]
    pub figures: Conversion,
    /// Present when a breakdown was asked for (`by`), ordered by key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Vec<Group>>,
}

/// Two segments side by side; the first is the control.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SegmentComparison {
    pub first: SegmentConversion,
    pub second: SegmentConversion,
    /// Second minus first conversion rate; null below the minimum sample.
    pub conversion: Option<Comparison>,
    /// Second minus first revenue per member (Welch); null below the minimum sample.
    pub revenue_per_member: Option<Comparison>,
}

struct Sums {
    members: u64,
    converters: u64,
    orders: u64,
    revenue: f64,
    revenue_sq: f64,
}

impl Sums {
    fn figures(&self, level: ConfidenceLevel) -> Conversion {
        let summary = Summary::from_sums(self.members, self.revenue, self.revenue_sq);
        Conversion {
            members: self.members,
            converters: self.converters,
            conversion_rate: stats::rate(self.converters, self.members),
            conversion_interval: stats::wilson(self.converters, self.members, level),
            orders: self.orders,
            revenue: self.revenue,
            revenue_per_member: (self.members > 0).then(|| self.revenue / self.members as f64),
            average_order_value: (self.orders > 0).then(|| self.revenue / self.orders as f64),
            revenue_sd: summary.filter(|s| s.n > 1).map(|s| s.sd),
        }
    }
}

/// The id of segment `slug` of `workspace`.
async fn segment_id(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    slug: &str,
) -> Result<i64, KpiError> {
    let backend = db.get_database_backend();
    let mut values = Vec::new();
    let w = param(backend, &mut values, workspace.0.into());
    let s = param(backend, &mut values, slug.into());
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            format!("SELECT id FROM segments WHERE workspace_id = {w} AND slug = {s}"),
            values,
        ))
        .await?
        .ok_or_else(|| KpiError::NotFound(format!("segment {slug:?}")))?;
    Ok(row.try_get("", "id")?)
}

/// Conversion of segment `slug` for `query`, split by `by` when given.
///
/// # Errors
/// [`KpiError::NotFound`] for an unknown segment (also the one of a segment breakdown);
/// [`KpiError::Invalid`] for a period that ends before it starts; database errors.
#[tracing::instrument(skip_all, fields(segment = slug))]
pub async fn conversion(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    slug: &str,
    query: &ConversionQuery,
    by: Option<&Breakdown>,
) -> Result<SegmentConversion, KpiError> {
    query.check()?;
    let level = settings::get(db, workspace).await?.comparison().level;
    let segment = segment_id(db, workspace, slug).await?;
    let other = match by {
        Some(Breakdown::Segment(other)) => Some(segment_id(db, workspace, other).await?),
        _ => None,
    };
    let backend = db.get_database_backend();
    let mut values: Vec<Value> = Vec::new();
    let members = match query.basis {
        Basis::Current => {
            let s = param(backend, &mut values, segment.into());
            // A contact is a current member at most once (a unique index says so).
            format!(
                "SELECT contact_id FROM segment_memberships WHERE segment_id = {s} AND exited_at IS NULL"
            )
        }
        Basis::PeriodStart => {
            let s = param(backend, &mut values, segment.into());
            let at = param(backend, &mut values, query.from.millis().into());
            let at2 = param(backend, &mut values, query.from.millis().into());
            format!(
                "SELECT DISTINCT contact_id FROM segment_memberships WHERE segment_id = {s} \
                 AND entered_at <= {at} AND (exited_at IS NULL OR exited_at > {at2})"
            )
        }
    };
    let key = match by {
        None => "NULL".to_owned(),
        Some(Breakdown::Segment(_)) => {
            let o = param(backend, &mut values, other.unwrap_or_default().into());
            format!(
                "CASE WHEN EXISTS (SELECT 1 FROM segment_memberships o WHERE o.segment_id = {o} \
                 AND o.contact_id = p.contact_id AND o.exited_at IS NULL) THEN 'in' ELSE 'out' END"
            )
        }
        Some(Breakdown::Attribute(name)) => match backend {
            DbBackend::Postgres => {
                let k = param(backend, &mut values, name.as_str().into());
                format!("(SELECT c.attributes ->> {k} FROM contacts c WHERE c.id = p.contact_id)")
            }
            _ => {
                let path = format!("$.\"{}\"", name.as_str());
                let p1 = param(backend, &mut values, path.clone().into());
                let p2 = param(backend, &mut values, path.into());
                format!(
                    "(SELECT CASE json_type(c.attributes, {p1}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' \
                     ELSE CAST(json_extract(c.attributes, {p2}) AS TEXT) END FROM contacts c WHERE c.id = p.contact_id)"
                )
            }
        },
        Some(Breakdown::Trait(name)) => format!(
            "(SELECT CAST(t.{name} AS TEXT) FROM contact_traits t WHERE t.contact_id = p.contact_id)"
        ),
    };
    let goals = goal_days::per_contact(
        backend,
        &mut values,
        workspace,
        &query.event,
        Window::new(query.from.millis(), query.to.millis()),
    );
    // One pass over the members, each joined to its goal figures of the period (only
    // converters have a row), then grouped by the breakdown key.
    let sql = format!(
        "SELECT q.k AS k, COUNT(*) AS members, COUNT(g.contact_id) AS converters, \
                CAST(SUM(g.orders) AS BIGINT) AS orders, SUM(g.revenue) AS revenue, SUM(g.revenue * g.revenue) AS revenue_sq \
         FROM (SELECT p.contact_id AS contact_id, {key} AS k FROM ({members}) p) q \
         LEFT JOIN ({goals}) g ON g.contact_id = q.contact_id \
         GROUP BY q.k ORDER BY q.k"
    );
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut total = Sums {
        members: 0,
        converters: 0,
        orders: 0,
        revenue: 0.0,
        revenue_sq: 0.0,
    };
    let mut groups = Vec::new();
    for row in rows {
        let int = |name: &str| -> Result<u64, KpiError> {
            let v: Option<i64> = row.try_get("", name)?;
            Ok(u64::try_from(v.unwrap_or(0)).unwrap_or(0))
        };
        let float = |name: &str| -> Result<f64, KpiError> {
            let v: Option<f64> = row.try_get("", name)?;
            Ok(v.unwrap_or(0.0))
        };
        let sums = Sums {
            members: int("members")?,
            converters: int("converters")?,
            orders: int("orders")?,
            revenue: float("revenue")?,
            revenue_sq: float("revenue_sq")?,
        };
        total.members += sums.members;
        total.converters += sums.converters;
        total.orders += sums.orders;
        total.revenue += sums.revenue;
        total.revenue_sq += sums.revenue_sq;
        let key: Option<String> = row.try_get("", "k")?;
        groups.push(Group {
            key,
            figures: sums.figures(level),
        });
    }
    Ok(SegmentConversion {
        segment: slug.to_owned(),
        event: query.event.clone(),
        from: query.from,
        to: query.to,
        basis: query.basis,
        figures: total.figures(level),
        breakdown: by.map(|_| groups),
    })
}

/// Conversion of two segments for the same query, and their comparison (the first is the
/// control).
///
/// # Errors
/// As [`conversion`].
pub async fn compare(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    first: &str,
    second: &str,
    query: &ConversionQuery,
) -> Result<SegmentComparison, KpiError> {
    let settings = settings::get(db, workspace).await?.comparison();
    let a = conversion(db, workspace, first, query, None).await?;
    let b = conversion(db, workspace, second, query, None).await?;
    let proportion = |c: &Conversion| Proportion::new(c.converters, c.members);
    let summary = |c: &Conversion| {
        Summary::new(
            c.revenue_per_member.unwrap_or(0.0),
            c.revenue_sd.unwrap_or(0.0),
            c.members,
        )
    };
    Ok(SegmentComparison {
        conversion: stats::compare_proportions(
            proportion(&a.figures),
            proportion(&b.figures),
            &settings,
        ),
        revenue_per_member: stats::compare_means(
            summary(&a.figures),
            summary(&b.figures),
            &settings,
        ),
        first: a,
        second: b,
    })
}

const CSV_COLUMNS: [&str; 11] = [
    "members",
    "converters",
    "conversion_rate",
    "conversion_low",
    "conversion_high",
    "orders",
    "revenue",
    "revenue_per_member",
    "average_order_value",
    "revenue_sd",
    "basis",
];

fn cells(c: &Conversion, basis: Basis) -> Vec<String> {
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    vec![
        c.members.to_string(),
        c.converters.to_string(),
        opt(c.conversion_rate),
        opt(c.conversion_interval.map(|i| i.low)),
        opt(c.conversion_interval.map(|i| i.high)),
        c.orders.to_string(),
        c.revenue.to_string(),
        opt(c.revenue_per_member),
        opt(c.average_order_value),
        opt(c.revenue_sd),
        match basis {
            Basis::Current => "current",
            Basis::PeriodStart => "period_start",
        }
        .to_owned(),
    ]
}

/// A conversion report as CSV: `segment,group,` then the figures; the first row is the
/// whole segment (empty group), then one row per group of the breakdown. Empty cells are
/// `null`s.
///
/// # Errors
/// [`KpiError::Csv`] (never for a report this module made).
pub fn conversion_csv(report: &SegmentConversion) -> Result<String, KpiError> {
    let mut header = vec!["segment".to_owned(), "group".to_owned()];
    header.extend(CSV_COLUMNS.iter().map(|c| (*c).to_owned()));
    let mut rows = vec![header];
    let mut total = vec![report.segment.clone(), String::new()];
    total.extend(cells(&report.figures, report.basis));
    rows.push(total);
    for group in report.breakdown.iter().flatten() {
        let mut row = vec![
            report.segment.clone(),
            group.key.clone().unwrap_or_else(|| "null".to_owned()),
        ];
        row.extend(cells(&group.figures, report.basis));
        rows.push(row);
    }
    crate::write_csv(rows)
}

/// A comparison as CSV: one row per segment, then a `difference` row with the differences
/// (second minus first) of the conversion rate and of the revenue per member with their
/// intervals and p-values.
///
/// # Errors
/// [`KpiError::Csv`] (never for a report this module made).
pub fn comparison_csv(report: &SegmentComparison) -> Result<String, KpiError> {
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut header = vec!["segment".to_owned()];
    header.extend(CSV_COLUMNS.iter().map(|c| (*c).to_owned()));
    header.extend(
        [
            "conversion_difference",
            "conversion_difference_low",
            "conversion_difference_high",
            "conversion_p_value",
            "revenue_per_member_difference",
            "revenue_per_member_difference_low",
            "revenue_per_member_difference_high",
            "revenue_per_member_p_value",
        ]
        .iter()
        .map(|c| (*c).to_owned()),
    );
    let mut rows = vec![header];
    for side in [&report.first, &report.second] {
        let mut row = vec![side.segment.clone()];
        row.extend(cells(&side.figures, side.basis));
        row.extend(std::iter::repeat_n(String::new(), 8));
        rows.push(row);
    }
    let mut row = vec!["difference".to_owned()];
    row.extend(std::iter::repeat_n(String::new(), CSV_COLUMNS.len()));
    for comparison in [&report.conversion, &report.revenue_per_member] {
        row.push(opt(comparison.map(|c| c.difference)));
        row.push(opt(comparison.map(|c| c.difference_interval.low)));
        row.push(opt(comparison.map(|c| c.difference_interval.high)));
        row.push(opt(comparison.map(|c| c.p_value)));
    }
    rows.push(row);
    crate::write_csv(rows)
}
