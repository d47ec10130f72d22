//! The `clarion` binary as a user runs it: import, keys, migrate, serve, traits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod import;
mod traits;
