//! Running the built `clarion` binary in tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use clarion_testkit::TestDb;

/// The `clarion` binary of this build (`cargo test --workspace` builds it before any test
/// runs).
pub fn clarion_binary() -> PathBuf {
    let mut dir = std::env::current_exe().expect("test executable path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join(format!("clarion{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} does not exist: build it with `cargo build --workspace --bins` (scripts/test does)",
        binary.display()
    );
    binary
}

/// A `clarion` command on the test's own database and Redis prefix, logging quietly.
pub fn clarion(db: &TestDb) -> Command {
    let mut command = Command::new(clarion_binary());
    command
        .env("CLARION__DATABASE__URL", &db.url)
        .env("CLARION__REDIS__URL", clarion_testkit::redis_url())
        .env("CLARION__LOG__LEVEL", "warn")
        .env_remove("CLARION_CONFIG")
        .env_remove("RUST_LOG");
    command
}

/// Runs a command and returns its output, with stdout and stderr as text for assertions.
pub fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("run clarion");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}
