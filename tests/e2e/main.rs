//! The `clarion` binary as a user runs it: import, keys, migrate, serve, traits, the API
//! against its OpenAPI document, and sending through a killed worker or a lost queue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod conformance;
mod import;
mod sending;
mod traits;
