//! The `clarion` binary as a user runs it: import, keys, migrate, serve, traits, and sending
//! through a killed worker or a lost queue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod import;
mod sending;
mod traits;
