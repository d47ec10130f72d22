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

/// An HTTP client for the served binary. It drops idle connections after two seconds, well
/// before actix-web closes them (five): a request sent on a connection the server is closing
/// at that moment fails with `IncompleteMessage`.
fn http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().pool_idle_timeout(std::time::Duration::from_secs(2))
}
