//! The `clarion` binary as a user runs it: import, keys, migrate, serve, traits, the API
//! against its OpenAPI document, sending through a killed worker or a lost queue, schedules
//! fired by scheduler processes, and the dashboard in a real browser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod cli;
mod conformance;
mod import;
mod scheduling;
mod sending;
mod traits;
