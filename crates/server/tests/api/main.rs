//! The API as a client sees it: a real server on a port, a fresh database per test (SQLite
//! and PostgreSQL), real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod auth;
mod campaigns;
mod contacts;
mod dashboard;
mod events;
mod frequency_caps;
mod insights;
mod kpi;
mod local_time;
mod operations;
mod providers;
mod schedules;
mod segments;
mod senders;
mod sending;
mod spend;
mod suppressions;
mod tracking;
mod traits;
mod triggers;
mod webhook_endpoints;
