//! The `clarion` binary as a user runs it: import, keys, migrate, serve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod import;
