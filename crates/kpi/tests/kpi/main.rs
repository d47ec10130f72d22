//! clarion-kpi's statistics and models against published figures and independent
//! computations (statsmodels and scipy over generated data), and its reports against
//! computations in plain Rust over generated rows, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cac;
mod campaign_report;
mod churn;
mod clv;
mod machine;
mod segment_conversion;
mod stats;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

/// Runs one statement of a test's setup; a failure names the statement.
async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Creates one contact per external id through ingestion (its listeners included), in one
/// batch.
async fn add_contacts(
    ingest: &clarion_contacts::Ingest,
    external_ids: impl IntoIterator<Item = String>,
) {
    let contacts: Vec<clarion_model::ContactUpsert> = external_ids
        .into_iter()
        .map(|id| serde_json::from_value(serde_json::json!({ "external_id": id })).unwrap())
        .collect();
    ingest
        .contacts(
            clarion_model::DEFAULT_WORKSPACE,
            contacts.into_iter().enumerate().collect(),
            true,
        )
        .await
        .unwrap();
}

/// The `id` column of the one row `sql` selects.
async fn id_of(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get("", "id")
    .unwrap()
}
