//! Test support for Clarion's crates: a database and a Redis key prefix per test, and
//! independent reference computations in Python ([`python_reference`]).
//!
//! Every test gets its own database (a temporary SQLite file, or a PostgreSQL database named
//! `clarion_test_<uuid>` that is dropped when the test ends) and its own Redis key prefix, so
//! the suite runs in parallel against the real local services. Write a database test once as
//! `async fn name(backend: Backend)` and list it in [`on_both_backends!`] to run it on SQLite
//! and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clarion_migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// Where a test's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on: `CLARION_TEST_POSTGRES_URL`, or the
/// local server.
pub fn postgres_admin_url() -> String {
    std::env::var("CLARION_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The Redis server tests use: `CLARION_TEST_REDIS_URL`, or the local server.
pub fn redis_url() -> String {
    std::env::var("CLARION_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A Redis key prefix of one test's own.
pub fn redis_prefix() -> String {
    format!("clarion-test-{}", uuid::Uuid::new_v4().simple())
}

/// Runs the Python script `script` with Debian's python3 (the one whose packages, `needs`,
/// apt installs), `request` as JSON on its standard input, and returns the JSON it prints:
/// the independent computation a test compares Clarion's figures with.
pub fn python_reference(
    script: &str,
    request: &serde_json::Value,
    needs: &str,
) -> serde_json::Value {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run /usr/bin/python3 (Debian's python3 with {needs}): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the reference {script} failed (it needs {needs}): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A database of one test's own.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    postgres_name: Option<String>,
    _folder: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let folder = tempfile::tempdir().expect("temporary folder");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    folder.path().join("clarion.db").display()
                );
                TestDb {
                    url,
                    backend,
                    postgres_name: None,
                    _folder: Some(folder),
                }
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("clarion_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is not reachable at {admin_url} ({e}). The README's test command starts it; \
                         or set CLARION_TEST_POSTGRES_URL to a server where this user may create databases."
                    )
                });
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create the test database");
                admin.close().await.ok();
                TestDb {
                    url: clarion_migration::postgres_url_for_database(&admin_url, &name),
                    backend,
                    postgres_name: Some(name),
                    _folder: None,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs outside async code (and during panics), so the clean-up gets a runtime of
        // its own on a thread of its own.
        let admin_url = postgres_admin_url();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = Database::connect(&admin_url).await.ok()?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
    }
}

impl TestDb {
    /// A connection to the test's database with every migration applied.
    pub async fn migrated(&self) -> DatabaseConnection {
        let db = Database::connect(&self.url)
            .await
            .expect("connect to the test database");
        Migrator::up(&db, None).await.expect("migrate");
        db
    }
}

/// Runs each listed `async fn(Backend)` as two tests, `NAME::sqlite` and `NAME::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await
                }
            }
        )+
    };
}
