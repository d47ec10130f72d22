//! Clarion's HTTP server: the REST API, its OpenAPI document, the tracking endpoints, health
//! and metrics, and the dashboard for people ([`dashboard`], with the accounts and sessions of
//! [`accounts`]). Handlers parse the request, call one domain function (ingestion, segments,
//! campaigns) and map its error; the domain itself lives in the crates below this one.
//!
//! [`startup::Application::build`] connects to the database and Redis, migrates, binds and
//! returns a server ready to run; [`routes::configure`] registers every route, for `main` and
//! for tests alike; [`state::AppState`] is what the handlers share.

pub mod accounts;
pub mod auth;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod metrics;
pub mod recent;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tracking;

pub use config::Settings;
pub use startup::Application;
pub use state::AppState;
