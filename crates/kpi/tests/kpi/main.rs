//! The KPI tracker against independent computations over generated data, on SQLite and
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod campaign_report;
