//! The API as a client sees it: a real server on a port, a fresh database per test (SQLite
//! and PostgreSQL), real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod audience_pages;
mod auth;
mod campaign_pages;
mod campaigns;
mod contacts;
mod dashboard;
mod dashboard_settings;
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
