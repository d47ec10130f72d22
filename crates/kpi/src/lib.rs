//! Clarion's KPI tracker.
//!
//! A KPI is only worth showing if it is right, so every figure this crate computes says how:
//! numerator, denominator, time window, what is excluded, and the formula of its interval or
//! test.
//!
//! - [`stats`]: the statistics behind every reported rate and comparison: rates that are
//!   `None` on an empty denominator, Wilson intervals for proportions, the comparison of two
//!   proportions (conversion against the holdout, two segments) and of two means (revenue per
//!   contact, Welch's t-test), each with the absolute difference, its interval and two-sided
//!   p-value, and the relative lift with its delta-method interval. Below a minimum sample a
//!   comparison gives no verdict.
//! - [`clv`]: customer lifetime value: historic (net revenue to date) and predicted, with the
//!   BG/NBD model of repeat purchases and the Gamma-Gamma model of order value fitted by
//!   maximum likelihood; per customer the probability of being alive, the expected purchases
//!   and order value, and the discounted CLV over a horizon.
//! - [`machine`]: opens and clicks by machines (bots and scanners by user agent, Apple's
//!   privacy proxy, click bursts, the honeypot link) told apart from people's.
//! - [`predictions`]: the CLV models fitted on a workspace's purchases and every buyer's
//!   predictions stored, for reports and for the traits rules read (`p_alive`,
//!   `predicted_clv`, ...).
//!
//! - [`rollup`]: the roll-ups reports read instead of raw events, kept current by an
//!   ingestion [`clarion_contacts::Listener`] and by the delivery workers as they record
//!   outcomes.
//! - [`goal_days`]: each contact's events per kind and day, the roll-up segment conversion
//!   reads.
//! - [`campaign`]: the campaign report (per run, variant, segment, channel, series), with
//!   attribution and the intent-to-treat comparison against the holdout.
//! - [`segment`]: conversion of any segment for any goal and period, breakdowns, and the
//!   comparison of two segments.
//! - [`churn`]: churn per day, week or month in the workspace's time zone (by inactivity or
//!   by an explicit cancel event), active contacts over time, retention by monthly cohort.
//! - [`trend`]: the workspace's last months at a glance (active customers, churn, buyers,
//!   conversion, revenue), for the dashboard's overview.
//! - [`spend`]: marketing spend per campaign or channel, in an ISO 4217 currency, exact.
//! - [`cac`]: customer acquisition cost per channel, campaign or target segment: prorated
//!   spend divided by the new customers (first purchase ever in the period) attributed to
//!   the group's deliveries.
//! - [`settings`]: each workspace's attribution model, minimum sample, confidence level and
//!   churn definition.
//!
//! The crate depends on the model and the database only, never on campaigns or the server:
//! it reads the outbox (`deliveries`, `campaign_runs`, `campaigns`), `events` and
//! `segment_memberships` tables as they are, and owns `marketing_spend`.
//!
//! Every [`KpiError`] carries its API error code ([`Coded`]).

pub mod cac;
pub mod campaign;
pub mod churn;
pub mod clv;
pub mod goal_days;
pub mod machine;
pub mod predictions;
pub mod rollup;
pub mod segment;
pub mod settings;
pub mod spend;
pub mod stats;
pub mod trend;

use clarion_model::{Coded, ErrorCode, FieldError};

pub use settings::{Attribution, ChurnDefinition, KpiSettings};

/// Everything that can go wrong in the KPI tracker.
#[derive(Debug, thiserror::Error)]
pub enum KpiError {
    /// A setting or request parameter is out of range; `field` names it.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A model cannot be fitted to the data it was given (too few customers, no repeat
    /// purchase, no finite optimum); `model` names it (`bg_nbd`, `gamma_gamma`).
    #[error("cannot fit {model}: {message}")]
    Model { model: String, message: String },
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// What a report is about does not exist, e.g. `campaign 7`.
    #[error("{0} not found")]
    NotFound(String),
    /// The report cannot be made yet, e.g. of a campaign that was never launched.
    #[error("{0}")]
    Conflict(String),
    /// CSV could not be written (only ever into memory, so a bug if it happens).
    #[error("CSV export failed: {0}")]
    Csv(String),
}

/// Appends `value` to a raw statement's parameters and gives its placeholder. Numbered on
/// both backends (SQLite reads `?NNN`), so a statement may be assembled out of the order its
/// parameters are collected in.
pub(crate) fn param(
    backend: sea_orm::DbBackend,
    values: &mut Vec<sea_orm::Value>,
    value: sea_orm::Value,
) -> String {
    values.push(value);
    match backend {
        sea_orm::DbBackend::Postgres => format!("${}", values.len()),
        _ => format!("?{}", values.len()),
    }
}

/// Deletes the rows of `table` (keyed by `workspace_id`, `contact_id`, then `columns`) whose
/// contact and `columns` values are one of `keys` (contact, the values in `columns`' order).
pub(crate) async fn delete_keys(
    db: &impl sea_orm::ConnectionTrait,
    table: &str,
    columns: &[&str],
    workspace: clarion_model::WorkspaceId,
    keys: &[(i64, Vec<sea_orm::Value>)],
) -> Result<(), KpiError> {
    let backend = db.get_database_backend();
    let per_statement = clarion_contacts::rows_per_statement(backend, columns.len() + 2);
    for chunk in keys.chunks(per_statement) {
        let mut values: Vec<sea_orm::Value> = Vec::new();
        let in_workspace = param(backend, &mut values, workspace.0.into());
        let rows: Vec<String> = chunk
            .iter()
            .map(|(contact, rest)| {
                let mut row = vec![param(backend, &mut values, (*contact).into())];
                row.extend(
                    rest.iter()
                        .map(|value| param(backend, &mut values, value.clone())),
                );
                format!("({})", row.join(", "))
            })
            .collect();
        let mut contacts: Vec<i64> = chunk.iter().map(|(contact, _)| *contact).collect();
        contacts.sort_unstable();
        contacts.dedup();
        let contacts: Vec<String> = contacts
            .into_iter()
            .map(|contact| param(backend, &mut values, contact.into()))
            .collect();
        // The contact list lets the planner walk the primary key (workspace, contact, ...);
        // the row value IN a VALUES list picks the keys (SQLite takes no list of row values
        // after IN).
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            format!(
                "DELETE FROM {table} WHERE workspace_id = {in_workspace} AND contact_id IN ({}) \
                 AND (contact_id, {}) IN (VALUES {})",
                contacts.join(", "),
                columns.join(", "),
                rows.join(", ")
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

/// Writes a report's rows (the header first) as CSV.
pub(crate) fn write_csv(rows: Vec<Vec<String>>) -> Result<String, KpiError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    for row in rows {
        out.write_record(&row)
            .map_err(|e| KpiError::Csv(e.to_string()))?;
    }
    let bytes = out.into_inner().map_err(|e| KpiError::Csv(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| KpiError::Csv(e.to_string()))
}

impl KpiError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        KpiError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl Coded for KpiError {
    fn code(&self) -> ErrorCode {
        match self {
            KpiError::Invalid { .. } | KpiError::Model { .. } => ErrorCode::ValidationFailed,
            KpiError::Db(db) => db.code(),
            KpiError::NotFound(_) => ErrorCode::NotFound,
            KpiError::Conflict(_) => ErrorCode::Conflict,
            KpiError::Csv(_) => ErrorCode::Internal,
        }
    }

    fn details(&self) -> Vec<FieldError> {
        match self {
            KpiError::Invalid { field, message } => vec![FieldError::field(field, message)],
            _ => Vec::new(),
        }
    }
}
