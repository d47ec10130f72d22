//! A running server for the API tests: its own database (SQLite or PostgreSQL), its own Redis
//! key prefix, and a marketer and a viewer key.

use std::time::Duration;

use clarion_model::{DEFAULT_WORKSPACE, Role};
use clarion_server::{AppState, Application, Settings, store};
use clarion_testkit::{Backend, TestDb, redis_prefix, redis_url};
use sea_orm::DatabaseConnection;
use secrecy::SecretString;

/// Settings for a test: the defaults, a free port, the test's database and Redis prefix.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut settings = Settings::defaults().expect("default settings");
    settings.server.port = 0;
    settings.server.workers = 1;
    settings.database.url = SecretString::from(db.url.clone());
    settings.database.max_connections = 5;
    settings.redis.url = SecretString::from(redis_url());
    settings.redis.key_prefix = redis_prefix();
    // Emails no test reads (invitations, for one) go to a directory of the test's own.
    settings.email.outbox_dir = std::env::temp_dir().join(format!(
        "clarion-outbox-{}",
        settings.redis.key_prefix.replace([':', '/'], "-")
    ));
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
        for role in [Role::Marketer, Role::Viewer] {
            let (key, _) = store::keys::create(&db, DEFAULT_WORKSPACE, "test", role)
                .await
                .unwrap();
            keys.push(key);
        }
        let client = http_client().build().unwrap();
        let [marketer_key, viewer_key]: [String; 2] = keys.try_into().unwrap();
        TestApp {
            address,
            db,
            client,
            marketer_key,
            viewer_key,
            settings,
            state,
            handle,
            _db: test_db,
        }
    }

    /// Records the opens and clicks the tracking endpoints queued, as a worker's recorder
    /// does, and says what that came to.
    pub async fn record_hits(&self) -> clarion_campaign::hits::Tally {
        let queue = self.state.hits.queue().await.expect("open the hits queue");
        let consumer = queue.consumer("test-recorder").await.unwrap();
        self.state.recorder.drain(&consumer).await.unwrap()
    }

    /// Writes the provider webhook requests (bounces, complaints) the server queued, as a
    /// worker's writer does, and says what that came to.
    pub async fn write_provider_reports(&self) -> clarion_campaign::feedback::Applied {
        let queue = self
            .state
            .providers
            .queue()
            .expect("a provider report queue");
        let queue = queue
            .queue()
            .await
            .expect("open the provider reports queue");
        let consumer = queue.consumer("test-writer").await.unwrap();
        self.state
            .providers
            .report_writer()
            .drain(&consumer)
            .await
            .unwrap()
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

/// An HTTP client for the test servers. It drops idle connections after two seconds, well
/// before actix-web closes them (five): a request sent on a connection the server is closing
/// at that moment fails with `IncompleteMessage`, which is what a test that paused for a few
/// seconds (running dkimpy, say) then met.
pub fn http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_idle_timeout(Duration::from_secs(2))
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
