//! Ingestion against real databases: what is stored, and what listeners are told.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ingest;
