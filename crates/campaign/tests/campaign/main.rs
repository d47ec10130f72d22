//! Tests of the campaign crate's parts that need only Redis. Launch, workers and the
//! lifecycle are tested end to end through the API (crates/server/tests/api/sending.rs) and
//! against the built binary (tests/e2e/sending.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod throttle;
