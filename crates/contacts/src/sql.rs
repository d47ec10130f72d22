//! What every batch writer needs from the database, whichever crate it lives in.

use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

/// How many rows one multi-row statement carries: PostgreSQL takes at most 65,535 bound
/// parameters a statement and SQLite 32,766, and past a few thousand rows a longer statement
/// buys nothing.
pub fn rows_per_statement(backend: DbBackend, columns: usize) -> usize {
    let parameters = match backend {
        DbBackend::Postgres => 60_000,
        _ => 30_000,
    };
    (parameters / columns).clamp(1, 2_000)
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`): a transaction that reads first and then writes cannot wait for a busy
/// writer (SQLite answers "database is locked" at once), whereas one that starts as a writer
/// waits its turn under the busy timeout. PostgreSQL ignores the mode.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
    })
    .await
}

/// Whether a failed statement may succeed when run again: PostgreSQL chose its transaction as
/// the victim of a deadlock, or could not serialise it.
pub fn is_retryable(error: &DbErr) -> bool {
    let (DbErr::Exec(sea_orm::RuntimeErr::SqlxError(inner))
    | DbErr::Query(sea_orm::RuntimeErr::SqlxError(inner))) = error
    else {
        return false;
    };
    inner
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}
