//! Clarion's KPI tracker.
//!
//! A KPI is only worth showing if it is right, so every figure this crate computes says how:
//! numerator, denominator, what is excluded, and the formula of its interval or test.
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
//! Every [`KpiError`] carries its API error code ([`Coded`]).

pub mod clv;
pub mod machine;
pub mod predictions;
pub mod stats;

use clarion_model::{Coded, ErrorCode, FieldError};

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
        }
    }

    fn details(&self) -> Vec<FieldError> {
        match self {
            KpiError::Invalid { field, message } => vec![FieldError::field(field, message)],
            KpiError::Model { .. } | KpiError::Db(_) => Vec::new(),
        }
    }
}
