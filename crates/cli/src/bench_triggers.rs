//! `clarion bench triggers`: the latency of a campaign triggered on segment entry, from the
//! event that makes a contact enter the segment to its triggered message being enqueued.
//!
//! A server is started in this process on a fresh database, with the scheduler role's trigger
//! rounds beside it (as `clarion serve` runs them, `triggers.tick_ms` apart). Contacts are
//! created first; a dynamic segment holds those with a `signup` event, and an email campaign
//! is triggered on entering it with no delay. Then one `signup` event per contact goes through
//! `POST /api/v1/events/batch` at a steady rate, each request's send time noted. No worker
//! runs, so every job stays in the Redis stream, whose entry ids carry the time Redis added
//! them: the latency of an entry is that time minus the send time of the request that made
//! the contact enter, read from the queue, not from the trigger's own clock.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clarion_model::{Channel, DEFAULT_WORKSPACE, DeliveryJob, Role};
use clarion_queue::EntryId;
use clarion_server::{AppState, Application, Settings, store};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value as Json, json};
use tokio::sync::watch;

use crate::bench::{BenchBackend, FreshDatabase};

/// What to measure.
pub struct TriggerBench {
    pub backends: Vec<BenchBackend>,
    /// Contacts, each entering the segment once.
    pub entries: usize,
    /// Entries per second sent.
    pub rate: u32,
    /// Events per request.
    pub per_request: usize,
    pub postgres_url: String,
}

/// Milliseconds since the Unix epoch, on the clock Redis stamps its entries with (this host's).
fn wall_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub async fn run(bench: &TriggerBench, settings: &Settings) -> anyhow::Result<()> {
    println!(
        "bench triggers: {} segment entries through POST /api/v1/events/batch, {} per request at {} entries/s; trigger rounds every {} ms; {} cores",
        bench.entries,
        bench.per_request,
        bench.rate,
        settings.triggers.tick_ms,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    for &backend in &bench.backends {
        let line = measure(bench, settings, backend).await?;
        println!("{line}");
    }
    Ok(())
}

/// The server under test: the API, and the trigger rounds beside it, on a fresh database.
struct Server {
    address: String,
    key: String,
    db: DatabaseConnection,
    queues: clarion_campaign::Queues,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: watch::Sender<bool>,
    triggers: tokio::task::JoinHandle<()>,
    database: FreshDatabase,
}

impl Server {
    async fn start(
        base: &Settings,
        backend: BenchBackend,
        postgres_url: &str,
    ) -> anyhow::Result<Self> {
        let database = FreshDatabase::create(backend, postgres_url).await?;
        let mut settings = database.server_settings(base);
        settings.redis.key_prefix = format!("clarion-bench-{}", uuid::Uuid::new_v4().simple());
        let state = AppState::connect(settings.clone()).await?;
        let db = state.db.clone();
        let queues = state.queues.clone();
        let (key, _) = store::keys::create(&db, DEFAULT_WORKSPACE, "bench", Role::Marketer).await?;
        // The trigger rounds run as a `--role scheduler` process runs them, with connections
        // of their own: requests waiting on a segment's lock cannot hold up a round.
        let (stop, stopped) = watch::channel(false);
        let triggers = crate::roles::spawn_triggers(&AppState::connect(settings).await?, &stopped);
        let application = Application::from_state(state)?;
        let address = format!("http://127.0.0.1:{}", application.port());
        let handle = application.handle();
        let task = tokio::spawn(application.run_until_stopped());
        Ok(Server {
            address,
            key,
            db,
            queues,
            handle,
            task,
            stop,
            triggers,
            database,
        })
    }

    /// Sends `body` to `path` with `method`; fails unless the answer is a success.
    async fn call(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: &Json,
    ) -> anyhow::Result<Json> {
        let response = client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "{path} answered {status}: {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Json::Null))
    }

    /// The contacts, the segment they will enter and the campaign triggered on it.
    async fn prepare(&self, client: &reqwest::Client, entries: usize) -> anyhow::Result<()> {
        let post = reqwest::Method::POST;
        for chunk in (0..entries).collect::<Vec<_>>().chunks(5_000) {
            let items: Vec<Json> = chunk
                .iter()
                .map(|i| json!({"external_id": format!("t{i}"), "email": format!("t{i}@bench.example")}))
                .collect();
            self.call(
                client,
                post.clone(),
                "/api/v1/contacts/batch",
                &json!({ "contacts": items }),
            )
            .await?;
        }
        self.call(
            client,
            post.clone(),
            "/api/v1/segments",
            &json!({"name": "Signed up", "slug": "signed-up", "category": "behavioural",
                    "rule": {"event": "signup", "within": "365d", "count": {"op": ">=", "value": 1}}}),
        )
        .await?;
        let campaign = self
            .call(
                client,
                post,
                "/api/v1/campaigns",
                &json!({
                    "name": "Welcome",
                    "goal": { "event": "purchase", "window_hours": 168 },
                    "holdout_percent": 0,
                    "channels": ["email"],
                    "targets": [{ "segment": "signed-up", "variants": [{ "name": "A", "email": {
                        "subject": "Welcome",
                        "html": "<p>Hello {{ contact.first_name|default('you') }}</p>",
                        "from": "Shop <news@shop.example>",
                    }}]}],
                }),
            )
            .await?;
        let id = campaign["id"].as_i64().context("the campaign has no id")?;
        self.call(
            client,
            reqwest::Method::PUT,
            &format!("/api/v1/campaigns/{id}/trigger"),
            &json!({"segment": "signed-up", "delay": "0"}),
        )
        .await?;
        Ok(())
    }

    /// Sends one `signup` per contact, `per_request` to a request, `rate` entries a second;
    /// returns when each contact's request was sent and when it was answered (Unix ms).
    async fn send_entries(
        &self,
        client: &reqwest::Client,
        bench: &TriggerBench,
    ) -> anyhow::Result<HashMap<String, (i64, i64)>> {
        let per_request = bench.per_request.max(1);
        let period = Duration::from_secs_f64(per_request as f64 / f64::from(bench.rate.max(1)));
        let mut ticker = tokio::time::interval(period);
        let mut requests = tokio::task::JoinSet::new();
        let ids: Vec<String> = (0..bench.entries).map(|i| format!("t{i}")).collect();
        for chunk in ids.chunks(per_request) {
            ticker.tick().await;
            let events: Vec<Json> = chunk
                .iter()
                .map(|id| json!({"external_id": id, "kind": "signup"}))
                .collect();
            let chunk = chunk.to_vec();
            let request = client
                .post(format!("{}/api/v1/events/batch", self.address))
                .bearer_auth(&self.key)
                .json(&json!({ "events": events }));
            requests.spawn(async move {
                let sent = wall_millis();
                let response = request.send().await?;
                let status = response.status();
                anyhow::ensure!(
                    status.is_success(),
                    "the event batch answered {status}: {}",
                    response.text().await?
                );
                let answered = wall_millis();
                anyhow::Ok(chunk.into_iter().map(move |id| (id, (sent, answered))))
            });
        }
        let mut times = HashMap::with_capacity(bench.entries);
        while let Some(done) = requests.join_next().await {
            times.extend(done??);
        }
        Ok(times)
    }

    /// Waits until `expected` jobs are in the email stream (or `patience` passes without a
    /// new one); returns each job's delivery id and the time Redis added it (Unix ms).
    async fn enqueued(
        &self,
        expected: usize,
        patience: Duration,
    ) -> anyhow::Result<Vec<(i64, i64)>> {
        let queue = self.queues.open(Channel::Email).await?;
        let stream = queue.keys().stream.clone();
        let mut conn = self.queues.connection();
        let mut seen = 0;
        let mut last_change = Instant::now();
        loop {
            let length: usize = redis::cmd("XLEN")
                .arg(&stream)
                .query_async(&mut conn)
                .await?;
            if length >= expected || last_change.elapsed() > patience {
                break;
            }
            if length > seen {
                seen = length;
                last_change = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await?;
        reply
            .ids
            .iter()
            .map(|entry| {
                let payload: Vec<u8> = entry.get("p").context("a stream entry without a job")?;
                let job: DeliveryJob = serde_json::from_slice(&payload)?;
                let added = EntryId::new(entry.id.clone())
                    .timestamp()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .context("a stream entry id without a time")?;
                Ok((job.id, i64::try_from(added.as_millis())?))
            })
            .collect()
    }

    /// The contact (external id) of each delivery.
    async fn recipients(&self) -> anyhow::Result<HashMap<i64, String>> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT d.id AS id, c.external_id AS external_id FROM deliveries d \
                 JOIN contacts c ON c.id = d.contact_id",
            ))
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("", "id")?, row.try_get("", "external_id")?)))
            .collect()
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let _ = self.triggers.await;
        self.handle.stop(true).await;
        let _ = self.task.await;
        for channel in Channel::ALL {
            self.queues.open(channel).await?.destroy().await?;
        }
        self.db.close().await?;
        self.database.drop().await
    }
}

/// One backend's run; the line to print.
async fn measure(
    bench: &TriggerBench,
    settings: &Settings,
    backend: BenchBackend,
) -> anyhow::Result<String> {
    let server = Server::start(settings, backend, &bench.postgres_url).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    server.prepare(&client, bench.entries).await?;
    let started = Instant::now();
    let times = server.send_entries(&client, bench).await?;
    let sending = started.elapsed();
    let enqueued = server
        .enqueued(bench.entries, Duration::from_secs(30))
        .await?;
    let recipients = server.recipients().await?;
    server.stop().await?;

    // From the request's send (the event) and from its answer (the event stored, the
    // memberships current) to the job in the stream.
    let (mut from_event, mut from_answer): (Vec<i64>, Vec<i64>) = enqueued
        .iter()
        .filter_map(|(delivery, added)| {
            let (sent, answered) = times.get(recipients.get(delivery)?)?;
            Some((added - sent, added - answered))
        })
        .unzip();
    anyhow::ensure!(
        from_event.len() == bench.entries,
        "{} entries sent but {} triggered messages enqueued",
        bench.entries,
        from_event.len()
    );
    let mut answering: Vec<i64> = times
        .values()
        .map(|(sent, answered)| answered - sent)
        .collect();
    for values in [&mut from_event, &mut from_answer, &mut answering] {
        values.sort_unstable();
    }
    let quantiles = |values: &[i64]| {
        format!(
            "p50 {} ms, p99 {} ms, max {} ms",
            percentile(values, 0.5),
            percentile(values, 0.99),
            percentile(values, 1.0)
        )
    };
    Ok(format!(
        "triggers {:<8} entry -> enqueued: {} over {} entries ({} entries/s sent, in {:.1} s)\n\
         {:17} the event batch answered in: {}; from its answer to the stream (below 0: enqueued before the answer arrived): {}",
        format!("{backend:?}").to_lowercase(),
        quantiles(&from_event),
        from_event.len(),
        (bench.entries as f64 / sending.as_secs_f64()).round(),
        sending.as_secs_f64(),
        "",
        quantiles(&answering),
        quantiles(&from_answer),
    ))
}

/// The `q` quantile of the sorted `values` (nearest rank).
fn percentile(values: &[i64], q: f64) -> i64 {
    values
        .get(((values.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or_default()
}
