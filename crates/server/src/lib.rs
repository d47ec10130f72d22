//! Clarion's HTTP server and the stores behind it.
//!
//! [`startup::Application::build`] connects to the database and Redis, migrates, binds and
//! returns a server ready to run; [`routes::configure`] registers every route, for `main` and
//! for tests alike.

pub mod auth;
pub mod config;
pub mod db;
pub mod delivery;
pub mod error;
pub mod metrics;
pub mod realtime;
pub mod routes;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tracking;

pub use config::Settings;
pub use startup::{AppState, Application};
