//! Running the built `clarion` binary in tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

/// The build's target directory (`target/`, or `CARGO_TARGET_DIR`), where test tools that
/// `scripts/test` installs and test artifacts live.
pub fn target_dir() -> PathBuf {
    clarion_binary()
        .parent()
        .and_then(Path::parent)
        .expect("the binary lies in target/<profile>")
        .to_path_buf()
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

/// A served instance (`clarion serve` on a port of its own); dropping it stops it. When the
/// test panics, the end of the server's log is printed.
pub struct Served {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Served {
    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "--- server log (end) ---\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

/// Starts `clarion serve` on the test's database, on a free port, with a Redis key prefix
/// of its own, email to an outbox under `dir` and the log in `dir/serve.log`; `settings`
/// (environment variables such as `CLARION__SENDING__BACKOFF_BASE_MS`) come last and win.
/// Returns once the server listens.
pub fn serve(db: &TestDb, dir: &Path, settings: &[(&str, &str)]) -> Served {
    let log = dir.join("serve.log");
    let mut command = clarion(db);
    command
        .arg("serve")
        .env("CLARION__SERVER__PORT", "0")
        .env("CLARION__SERVER__WORKERS", "2")
        .env(
            "CLARION__REDIS__KEY_PREFIX",
            format!("clarion-e2e-{}", uuid::Uuid::new_v4().simple()),
        )
        .env("CLARION__EMAIL__OUTBOX_DIR", dir.join("outbox"));
    for (key, value) in settings {
        command.env(key, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on port") {
        line.clear();
        assert!(
            output.read_line(&mut line).unwrap() > 0,
            "serve exited before listening: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let port = line
        .split("port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    // The rest of stdout is not read; let it drain so the server never blocks on a write.
    std::thread::spawn(move || std::io::copy(&mut output, &mut std::io::sink()));
    Served { child, port, log }
}
