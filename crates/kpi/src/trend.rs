//! The workspace's customers month by month, as the dashboard's overview charts them: active
//! customers, churn, buyers, the share of active customers who bought, and revenue. Read from
//! the roll-ups kept at ingestion (activity spells, goal days), never from a scan of the raw
//! events.
//!
//! # Figures of one month `[start, end)` (workspace time zone; the current month ends now)
//!
//! - `active_at_start`, `churned`, `churn_rate`, `became_active`: as in the churn report
//!   ([`crate::churn`]), over every contact;
//! - `active` = `active_at_start` + `became_active`: the contacts active at some moment of the
//!   month;
//! - `buyers`: contacts with at least one `activity_event` (default `purchase`) in the month;
//!   `orders`: those events; `revenue`: the sum of their amounts (an event without an amount
//!   adds 0);
//! - `conversion_rate` = buyers / active (`null` when nobody was active). With the default
//!   inactivity definition an activity event makes its contact active, so a buyer is always
//!   counted among the active.

use clarion_model::{Timestamp, WorkspaceId};
use sea_orm::{ConnectionTrait, Statement};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    KpiError,
    churn::{self, Period},
    goal_days::{self, Window},
    settings,
};

/// One month of the trend; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TrendMonth {
    /// The month, `YYYY-MM`.
    pub month: String,
    pub start: Timestamp,
    /// The month's end, or now for the current month.
    pub end: Timestamp,
    pub active_at_start: u64,
    pub became_active: u64,
    pub active: u64,
    pub churned: u64,
    pub churn_rate: Option<f64>,
    pub buyers: u64,
    pub conversion_rate: Option<f64>,
    pub orders: u64,
    pub revenue: f64,
}

/// The last months of a workspace, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Trend {
    /// The event kind that makes a contact active and a buyer.
    pub event: String,
    pub time_zone: String,
    pub months: Vec<TrendMonth>,
}

/// The `months` months (1 to 120) up to and including the current one, at `now`.
///
/// # Errors
/// [`KpiError::Invalid`] for `months` out of range; database errors.
#[tracing::instrument(skip_all)]
pub async fn monthly(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    months: u32,
    now: Timestamp,
) -> Result<Trend, KpiError> {
    if !(1..=120).contains(&months) {
        return Err(KpiError::invalid("months", "must be between 1 and 120"));
    }
    let kpi = settings::get(db, workspace).await?;
    let zone = kpi.zone()?;
    // Any instant of the first month will do: the report starts at the month containing it.
    // A millisecond earlier, so that a one-month trend still spans an instant.
    let from = now.millis() - i64::from(months - 1) * 31 * 86_400_000 - 1;
    let report = churn::churn(
        db,
        workspace,
        None,
        Period::Month,
        Timestamp::from_millis(from),
        now,
    )
    .await?;
    let skip = report.periods.len().saturating_sub(months as usize);
    let periods: Vec<_> = report.periods.into_iter().skip(skip).collect();
    // Every month's buyers, orders and revenue in one statement: a part per month, each
    // reading the goal days of its window.
    let backend = db.get_database_backend();
    let mut values = Vec::new();
    let parts: Vec<String> = periods
        .iter()
        .enumerate()
        .map(|(i, period)| {
            let goals = goal_days::per_contact(
                backend,
                &mut values,
                workspace,
                &kpi.activity_event,
                Window::new(period.start.millis(), period.end.min(now).millis()),
            );
            format!(
                "SELECT CAST({i} AS BIGINT) AS i, CAST(COUNT(*) AS BIGINT) AS buyers, \
                        CAST(SUM(g.orders) AS BIGINT) AS orders, SUM(g.revenue) AS revenue \
                 FROM ({goals}) g"
            )
        })
        .collect();
    let mut sums = vec![(0u64, 0u64, 0.0f64); periods.len()];
    for row in db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            parts.join(" UNION ALL "),
            values,
        ))
        .await?
    {
        let i: i64 = row.try_get("", "i")?;
        let count = |name: &str| -> Result<u64, KpiError> {
            Ok(u64::try_from(row.try_get::<Option<i64>>("", name)?.unwrap_or(0)).unwrap_or(0))
        };
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| sums.get_mut(i)) {
            *slot = (
                count("buyers")?,
                count("orders")?,
                row.try_get::<Option<f64>>("", "revenue")?.unwrap_or(0.0),
            );
        }
    }
    let out = periods
        .into_iter()
        .zip(sums)
        .map(|(period, (buyers, orders, revenue))| {
            let active = period.active_at_start + period.became_active;
            TrendMonth {
                month: churn::local_date(zone, period.start.millis())
                    .format("%Y-%m")
                    .to_string(),
                start: period.start,
                end: period.end.min(now),
                active_at_start: period.active_at_start,
                became_active: period.became_active,
                active,
                churned: period.churned,
                churn_rate: period.churn_rate,
                buyers,
                conversion_rate: crate::stats::rate(buyers, active),
                orders,
                revenue,
            }
        })
        .collect();
    Ok(Trend {
        event: kpi.activity_event,
        time_zone: report.time_zone,
        months: out,
    })
}

/// The trend as CSV: one row per month, the columns of [`TrendMonth`] (empty cells for
/// `null` rates).
///
/// # Errors
/// [`KpiError::Csv`] (never for a trend this module made).
pub fn trend_csv(trend: &Trend) -> Result<String, KpiError> {
    let mut rows = vec![
        [
            "month",
            "start",
            "end",
            "active_at_start",
            "became_active",
            "active",
            "churned",
            "churn_rate",
            "buyers",
            "conversion_rate",
            "orders",
            "revenue",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    let rate = |r: Option<f64>| r.map(|r| r.to_string()).unwrap_or_default();
    for m in &trend.months {
        rows.push(vec![
            m.month.clone(),
            m.start.to_rfc3339(),
            m.end.to_rfc3339(),
            m.active_at_start.to_string(),
            m.became_active.to_string(),
            m.active.to_string(),
            m.churned.to_string(),
            rate(m.churn_rate),
            m.buyers.to_string(),
            rate(m.conversion_rate),
            m.orders.to_string(),
            m.revenue.to_string(),
        ]);
    }
    crate::write_csv(rows)
}
