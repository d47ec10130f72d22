//! Tests of the campaign crate's own parts: the throttle (Redis), the recomputation of
//! traits with CLV predictions (SQLite and PostgreSQL) and cron fire times across
//! daylight-saving changes (against Python's zoneinfo). Launch, workers and the lifecycle are
//! tested end to end through the API (crates/server/tests/api/sending.rs) and against the
//! built binary (tests/e2e/sending.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod clv_traits;
mod cron_dst;
mod throttle;
