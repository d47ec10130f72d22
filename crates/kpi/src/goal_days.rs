//! The goal roll-up: each contact's events per kind and UTC day (`kpi_goal_days`: how many,
//! and the sum of their amounts, none counting 0), read by segment conversion instead of the
//! raw events. The database keeps it: a trigger on `events` adds every inserted event to its
//! day's row in the inserting transaction (migration `m20261206_000030_goal_days_trigger`),
//! so it is current whatever path stored the event and costs a batch only its own rows.
//!
//! A period `[from, to)` is read as its whole UTC days from the roll-up and its partial first
//! and last days from the raw events ([`Window`]), so a report is exact to the millisecond
//! whatever its edges, and reads the raw events of at most two days.
//!
//! A late event (dated in the past) lands on its own day like any other.

use clarion_model::WorkspaceId;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value,
    sea_query::{Expr, ExprTrait, Query},
};

use crate::{KpiError, param};

const DAY_MS: i64 = 86_400_000;

/// The UTC day number of `occurred_at`, rounding down before 1970 too (both databases
/// truncate integer division toward zero); the same as [`i64::div_euclid`] by a day.
const DAY_OF_EVENT: &str = "CASE WHEN occurred_at >= 0 THEN occurred_at / 86400000 \
                            ELSE (occurred_at - 86399999) / 86400000 END";

/// How a period splits between the roll-up and the raw events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Whole UTC days `[first, end)` read from the roll-up; empty when equal.
    pub days: (i64, i64),
    /// Instants `[start, end)` read from the raw events; an empty range has start == end.
    pub edges: [(i64, i64); 2],
}

impl Window {
    /// The split of `[from, to)`: the days wholly inside it, and the parts of the days at
    /// either end that are not. A period within two days is read from the raw events alone.
    pub(crate) fn new(from: i64, to: i64) -> Self {
        let first = from.div_euclid(DAY_MS) + i64::from(from.rem_euclid(DAY_MS) != 0);
        let end = to.div_euclid(DAY_MS);
        if first < end {
            Window {
                days: (first, end),
                edges: [
                    (from, first.saturating_mul(DAY_MS)),
                    (end.saturating_mul(DAY_MS), to),
                ],
            }
        } else {
            Window {
                days: (0, 0),
                edges: [(from, to), (0, 0)],
            }
        }
    }
}

/// Computes the roll-up of every contact of `workspace` again from the raw events (to repair
/// it, e.g. after events were changed by hand). New events wait meanwhile: on PostgreSQL the
/// events table is locked against writes until the roll-up is rebuilt.
///
/// # Errors
/// Database errors; nothing is changed then.
pub async fn rebuild(db: &DatabaseConnection, workspace: WorkspaceId) -> Result<(), KpiError> {
    let txn = clarion_contacts::begin_write(db).await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("LOCK TABLE events IN SHARE MODE")
            .await?;
    }
    let delete = Query::delete()
        .from_table("kpi_goal_days")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    txn.execute(&delete).await?;
    let backend = txn.get_database_backend();
    let mut values = Vec::new();
    let w = param(backend, &mut values, workspace.0.into());
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        insert_from_events(&format!("workspace_id = {w}")),
        values,
    ))
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The INSERT of the roll-up rows of the events matching `filter`.
fn insert_from_events(filter: &str) -> String {
    format!(
        "INSERT INTO kpi_goal_days (workspace_id, contact_id, kind, day, orders, revenue) \
         SELECT workspace_id, contact_id, kind, {DAY_OF_EVENT}, COUNT(*), SUM(COALESCE(amount, 0.0)) \
         FROM events WHERE {filter} GROUP BY workspace_id, contact_id, kind, {DAY_OF_EVENT}"
    )
}

/// A query of each contact's goal events of kind `kind` in `window`: `contact_id`, `orders`
/// (their number) and `revenue` (their amount sum), one row per contact with at least one.
/// Parameters are appended to `values`.
pub(crate) fn per_contact(
    backend: DbBackend,
    values: &mut Vec<Value>,
    workspace: WorkspaceId,
    kind: &str,
    window: Window,
) -> String {
    let mut p = |v: Value| param(backend, values, v);
    let (w, k) = (p(workspace.0.into()), p(kind.into()));
    let (d1, d2) = (p(window.days.0.into()), p(window.days.1.into()));
    let mut parts = vec![format!(
        "SELECT d.contact_id AS contact_id, d.orders AS orders, d.revenue AS revenue FROM kpi_goal_days d \
         WHERE d.workspace_id = {w} AND d.kind = {k} AND d.day >= {d1} AND d.day < {d2}"
    )];
    for (start, end) in window.edges {
        let (s, e) = (p(start.into()), p(end.into()));
        parts.push(format!(
            "SELECT e.contact_id, 1, COALESCE(e.amount, 0.0) FROM events e \
             WHERE e.workspace_id = {w} AND e.kind = {k} AND e.occurred_at >= {s} AND e.occurred_at < {e}"
        ));
    }
    format!(
        "SELECT x.contact_id AS contact_id, SUM(x.orders) AS orders, SUM(x.revenue) AS revenue \
         FROM ({}) x GROUP BY x.contact_id",
        parts.join(" UNION ALL ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_days_come_from_the_rollup_and_partial_ones_from_the_events() {
        let day = DAY_MS;
        // Midnight to midnight: days only, empty edges.
        assert_eq!(
            Window::new(10 * day, 40 * day),
            Window {
                days: (10, 40),
                edges: [(10 * day, 10 * day), (40 * day, 40 * day)]
            }
        );
        // Mid-day edges: the partial days from the events.
        assert_eq!(
            Window::new(10 * day + 5, 40 * day + 7),
            Window {
                days: (11, 40),
                edges: [(10 * day + 5, 11 * day), (40 * day, 40 * day + 7)]
            }
        );
        // Within one day, or across one midnight only: events alone.
        for (from, to) in [(day + 1, 2 * day - 1), (day + 1, 2 * day + 1)] {
            assert_eq!(
                Window::new(from, to),
                Window {
                    days: (0, 0),
                    edges: [(from, to), (0, 0)]
                }
            );
        }
        // Before 1970 days round down, as the SQL day of an event does.
        assert_eq!(Window::new(-day - 1, 0).days, (-1, 0));
        assert_eq!(Window::new(-day - 1, 0).edges[0], (-day - 1, -day));
    }
}
