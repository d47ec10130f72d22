//! Reading and writing contacts, events and API keys. Batches are written with multi-row
//! statements inside one transaction; the same code runs on SQLite and PostgreSQL.

pub mod attributes;
pub mod batch;
pub mod contacts;
pub mod deliveries;
pub mod events;
pub mod keys;

use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

/// A failure of the store that is not the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    #[error("stored row is unreadable: column {column}: {reason}")]
    Corrupt {
        column: &'static str,
        reason: String,
    },
}

/// Maps a value that no longer parses to [`StoreError::Corrupt`] naming its column: values are
/// checked on the way in, so this means a row was changed behind Clarion's back.
pub(crate) fn corrupt(column: &'static str) -> impl Fn(clarion_model::ModelError) -> StoreError {
    move |e| StoreError::Corrupt {
        column,
        reason: e.to_string(),
    }
}

/// How many rows one multi-row statement carries: PostgreSQL takes at most 65,535 bound
/// parameters a statement and SQLite 32,766, and past a few thousand rows a longer statement
/// buys nothing.
pub(crate) fn rows_per_statement(backend: DbBackend, columns: usize) -> usize {
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
pub(crate) async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        isolation_level: None,
        access_mode: None,
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
    })
    .await
}

/// Whether a failed transaction may succeed when run again: PostgreSQL chose it as the victim
/// of a deadlock, or could not serialise it.
pub(crate) fn is_retryable(error: &StoreError) -> bool {
    let StoreError::Db(
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(inner))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(inner)),
    ) = error
    else {
        return false;
    };
    inner
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}
