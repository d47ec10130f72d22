//! Test support for Clarion.
//!
//! Every test gets its own database (a temporary SQLite file, or a PostgreSQL database named
//! `clarion_test_<uuid>` that is dropped when the test ends) and its own Redis key prefix, so
//! the suite runs in parallel against the real local services. Write a database test once as
//! `async fn name(backend: Backend)` and list it in [`on_both_backends!`] to run it on SQLite
//! and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use clarion_model::{DEFAULT_WORKSPACE, Role};
use clarion_server::{AppState, Application, Settings, store};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use secrecy::SecretString;

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
                    url: clarion_server::db::postgres_url_for_database(&admin_url, &name),
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

/// Settings for a test: the defaults, a free port, the test's database and Redis prefix.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut settings = Settings::defaults().expect("default settings");
    settings.server.port = 0;
    settings.server.workers = 1;
    settings.database.url = SecretString::from(db.url.clone());
    settings.database.max_connections = 5;
    settings.redis.url = SecretString::from(redis_url());
    settings.redis.key_prefix = format!("clarion-test-{}", uuid::Uuid::new_v4().simple());
    if std::env::var("TEST_LOG").is_ok() {
        settings.log.level = "debug".to_string();
        clarion_server::telemetry::init(&settings.log);
    }
    settings
}

/// A running server on its own database, with a key of every role.
pub struct TestApp {
    pub address: String,
    pub db: DatabaseConnection,
    pub client: reqwest::Client,
    pub admin_key: String,
    pub marketer_key: String,
    pub viewer_key: String,
    pub settings: Settings,
    /// What the server's handlers share (database, queues, tracker), to build delivery
    /// workers and run the supervisor beside the server.
    pub state: actix_web::web::Data<AppState>,
    handle: actix_web::dev::ServerHandle,
    _db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns with changed settings.
    pub async fn spawn_with(backend: Backend, change: impl FnOnce(&mut Settings)) -> TestApp {
        let test_db = TestDb::new(backend).await;
        let mut settings = test_settings(&test_db);
        change(&mut settings);
        let state = AppState::connect(settings.clone())
            .await
            .expect("connect the app");
        let db = state.db.clone();
        let application = Application::from_state(state).expect("build the app");
        let address = format!("http://127.0.0.1:{}", application.port());
        let handle = application.handle();
        let state = application.state();
        tokio::spawn(application.run_until_stopped());
        let mut keys = Vec::new();
        for role in [Role::Admin, Role::Marketer, Role::Viewer] {
            let (key, _) = store::keys::create(&db, DEFAULT_WORKSPACE, "test", role)
                .await
                .unwrap();
            keys.push(key);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let [admin_key, marketer_key, viewer_key]: [String; 3] = keys.try_into().unwrap();
        TestApp {
            address,
            db,
            client,
            admin_key,
            marketer_key,
            viewer_key,
            settings,
            state,
            handle,
            _db: test_db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A request with the marketer key.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.marketer_key)
    }

    /// POSTs JSON with the marketer key and returns status and body.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// GETs with the marketer key and returns status and body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        read(response).await
    }
}

/// Status and JSON body (or `null` for an empty one) of a response.
pub async fn read(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON (status {status}): {text}"))
    };
    (status, body)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        drop(handle.stop(false));
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
