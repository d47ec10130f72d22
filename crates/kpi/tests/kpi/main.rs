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
