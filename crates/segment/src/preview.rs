//! Running a compiled rule: how many contacts match, and who they are, page by page.

use std::time::Duration;

use clarion_model::{ContactId, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, TransactionTrait,
    sea_query::{Expr, ExprTrait, Order, Query, SelectStatement},
};

use crate::{SegmentError, ValidRule, compile};

/// How a preview runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreviewOptions {
    /// Stop the query after this long and answer [`SegmentError::Timeout`].
    ///
    /// PostgreSQL enforces it on the server (`SET LOCAL statement_timeout` in a transaction
    /// of the query's own), so the query really stops. SQLite offers no statement timeout
    /// through sea-orm, so the wait is bounded with a tokio timeout instead: the caller gets
    /// its answer in time, while the abandoned query runs to its end on SQLite's worker
    /// thread and its result is dropped.
    pub timeout: Option<Duration>,
}

/// How many contacts of `workspace` satisfy the rule at `now`.
pub async fn count(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    rule: &ValidRule,
    now: Timestamp,
    options: PreviewOptions,
) -> Result<u64, SegmentError> {
    let members = compile(rule, workspace, db.get_database_backend(), now)?;
    let query = Query::select()
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .from_subquery(members, "m")
        .to_owned();
    let rows = run(db, &query, options).await?;
    let n: i64 = match rows.first() {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Up to `limit` members in id order, after the contact `after` (the last id of the
/// previous page).
pub async fn members(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    rule: &ValidRule,
    now: Timestamp,
    after: Option<ContactId>,
    limit: u64,
    options: PreviewOptions,
) -> Result<Vec<ContactId>, SegmentError> {
    let mut query = compile(rule, workspace, db.get_database_backend(), now)?;
    if let Some(after) = after {
        query.and_where(Expr::col(("c", "id")).gt(after.0));
    }
    query.order_by(("c", "id"), Order::Asc).limit(limit);
    let rows = run(db, &query, options).await?;
    rows.iter()
        .map(|row| Ok(ContactId(row.try_get("", "id")?)))
        .collect()
}

pub(crate) async fn run(
    db: &DatabaseConnection,
    query: &SelectStatement,
    options: PreviewOptions,
) -> Result<Vec<QueryResult>, SegmentError> {
    let Some(limit) = options.timeout else {
        return Ok(db.query_all(query).await?);
    };
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let txn = db.begin().await?;
            // An integer of milliseconds; nothing from the rule is spliced in.
            let millis = limit.as_millis().clamp(1, i32::MAX as u128);
            txn.execute_unprepared(&format!("SET LOCAL statement_timeout = {millis}"))
                .await?;
            let rows = txn
                .query_all(query)
                .await
                .map_err(|e| timed_out(e, limit))?;
            txn.commit().await?;
            Ok(rows)
        }
        _ => match tokio::time::timeout(limit, db.query_all(query)).await {
            Ok(rows) => Ok(rows?),
            Err(_) => Err(SegmentError::Timeout(limit)),
        },
    }
}

/// PostgreSQL reports a statement timeout as SQLSTATE 57014 (query_canceled).
fn timed_out(error: DbErr, limit: Duration) -> SegmentError {
    let text = error.to_string();
    if text.contains("statement timeout") || text.contains("57014") {
        SegmentError::Timeout(limit)
    } else {
        SegmentError::Db(error)
    }
}
