//! `clarion bench bounces`: bounce and complaint webhooks of email providers, signed the way
//! each provider signs them, POSTed to a server started in this process on a fresh database
//! (SQLite and PostgreSQL), beside `bench ingest`. Two shapes: SendGrid's Event Webhook,
//! which carries many events per request (ECDSA P-256), and Mailgun's, one event per request
//! (HMAC-SHA256, each token accepted once). Every event is a new one (its own event id), so
//! each is verified, stored as an event, marks its contact and adds a suppression.
//!
//! The server queues verified requests in Redis and a writer (a worker's, run in this
//! process) writes them in batches: each line says how fast requests were answered and how
//! long until every event was stored.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clarion_model::{DEFAULT_WORKSPACE, Role};
use clarion_server::{AppState, Application, Settings, store};
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use rand::{Rng, SeedableRng, rngs::StdRng};
use sea_orm::ConnectionTrait;
use secrecy::SecretString;

use crate::bench::{BenchBackend, FreshDatabase};

/// What `bench bounces` measures.
pub struct FeedbackBench {
    pub backends: Vec<BenchBackend>,
    pub events: usize,
    pub contacts: usize,
    pub sendgrid_batch: usize,
    pub concurrency: usize,
    pub postgres_url: String,
}

const MAILGUN_KEY: &str = "bench-mailgun-signing-key";

/// One prepared request: headers and body, signed before the clock starts.
#[derive(Clone)]
struct Prepared {
    headers: Vec<(&'static str, String)>,
    body: Arc<Vec<u8>>,
    events: usize,
}

pub async fn run(bench: &FeedbackBench, base: &Settings) -> anyhow::Result<()> {
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32])
        .map_err(|e| anyhow::anyhow!("bench key: {e}"))?;
    let public = key
        .verifying_key()
        .to_public_key_der()
        .map_err(|e| anyhow::anyhow!("bench key: {e}"))?;
    let public = base64::engine::general_purpose::STANDARD.encode(public.as_bytes());
    println!(
        "bench bounces: {} events per provider over {} contacts; SendGrid {} per request, Mailgun 1 per request; {} requests in flight, {} cores",
        bench.events,
        bench.contacts,
        bench.sendgrid_batch,
        bench.concurrency,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    for &backend in &bench.backends {
        let mut settings = base.clone();
        settings.providers.sendgrid.public_key = public.clone();
        settings.providers.mailgun.signing_key = SecretString::from(MAILGUN_KEY);
        // Requests are signed before the clock starts; a slow run must not outlive them.
        settings.providers.mailgun.max_age_secs = 3_600;
        settings.providers.sendgrid.max_age_secs = 3_600;
        let server = Server::start(&settings, backend, &bench.postgres_url, bench.contacts).await?;
        let sendgrid = sendgrid_requests(&key, bench.events, bench.contacts, bench.sendgrid_batch);
        let line = server
            .send("sendgrid", &sendgrid, bench.events, bench.concurrency)
            .await?;
        println!("bounces {:<8} {line}", name(backend));
        let mailgun = mailgun_requests(bench.events, bench.contacts);
        let line = server
            .send("mailgun", &mailgun, bench.events, bench.concurrency)
            .await?;
        println!("bounces {:<8} {line}", name(backend));
        server.stop(2 * bench.events).await?;
    }
    Ok(())
}

fn name(backend: BenchBackend) -> &'static str {
    match backend {
        BenchBackend::Sqlite => "sqlite",
        BenchBackend::Postgres => "postgres",
    }
}

fn email(contact: usize) -> String {
    format!("bench-{contact}@customer.example")
}

/// SendGrid batches: hard bounces, blocked (soft) bounces and spam reports, each with its own
/// `sg_event_id`.
fn sendgrid_requests(
    key: &p256::ecdsa::SigningKey,
    events: usize,
    contacts: usize,
    batch: usize,
) -> Vec<Prepared> {
    let mut rng = StdRng::seed_from_u64(0x5e_4d_91);
    let timestamp = (clarion_model::Timestamp::now().millis() / 1000).to_string();
    let mut requests = Vec::new();
    let mut made = 0;
    while made < events {
        let n = batch.max(1).min(events - made);
        let items: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let seq = made + i;
                let to = email(rng.random_range(0..contacts.max(1)));
                match rng.random_range(0..10) {
                    0..=6 => serde_json::json!({"email": to, "timestamp": 1_764_700_000, "event": "bounce", "type": "bounce",
                        "sg_event_id": format!("sg-{seq}"), "reason": "550 5.1.1 The email account does not exist", "status": "5.1.1"}),
                    7 => serde_json::json!({"email": to, "timestamp": 1_764_700_000, "event": "bounce", "type": "blocked",
                        "sg_event_id": format!("sg-{seq}"), "reason": "452 4.2.2 Mailbox full", "status": "4.2.2"}),
                    _ => serde_json::json!({"email": to, "timestamp": 1_764_700_000, "event": "spamreport",
                        "sg_event_id": format!("sg-{seq}")}),
                }
            })
            .collect();
        made += n;
        let body = serde_json::to_vec(&items).unwrap_or_default();
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(&body);
        let signature: p256::ecdsa::Signature = key.sign(&signed);
        requests.push(Prepared {
            headers: vec![
                (
                    "X-Twilio-Email-Event-Webhook-Signature",
                    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes()),
                ),
                ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp.clone()),
            ],
            body: Arc::new(body),
            events: n,
        });
    }
    requests
}

/// Mailgun webhooks, one permanent failure or complaint each, each with its own token.
fn mailgun_requests(events: usize, contacts: usize) -> Vec<Prepared> {
    let mut rng = StdRng::seed_from_u64(0x3a_11_6e);
    let timestamp = (clarion_model::Timestamp::now().millis() / 1000).to_string();
    (0..events)
        .map(|seq| {
            let token = format!("{:050x}", rng.random::<u128>() ^ seq as u128);
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(MAILGUN_KEY.as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            mac.update(timestamp.as_bytes());
            mac.update(token.as_bytes());
            let signature = hex::encode(mac.finalize().into_bytes());
            let to = email(rng.random_range(0..contacts.max(1)));
            let event = if rng.random_range(0..10) < 8 {
                serde_json::json!({"event": "failed", "severity": "permanent", "id": format!("mg-{seq}"),
                    "timestamp": 1_764_700_000.0, "recipient": to, "reason": "bounce",
                    "delivery-status": {"code": 550, "message": "550 5.1.1 No such user"}})
            } else {
                serde_json::json!({"event": "complained", "id": format!("mg-{seq}"),
                    "timestamp": 1_764_700_000.0, "recipient": to})
            };
            let body = serde_json::json!({
                "signature": {"timestamp": timestamp, "token": token, "signature": signature},
                "event-data": event,
            });
            Prepared {
                headers: Vec::new(),
                body: Arc::new(serde_json::to_vec(&body).unwrap_or_default()),
                events: 1,
            }
        })
        .collect()
}

/// A server on a fresh database with the benchmark's contacts.
struct Server {
    url: String,
    db: sea_orm::DatabaseConnection,
    /// This run's Redis keys start with this.
    prefix: String,
    redis: redis::aio::ConnectionManager,
    /// Reports the writer has written (stored, seen before or about no contact).
    written: Arc<std::sync::atomic::AtomicU64>,
    /// Stops the report writer.
    stop_writer: tokio::sync::watch::Sender<bool>,
    writer: tokio::task::JoinHandle<anyhow::Result<()>>,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    database: FreshDatabase,
}

impl Server {
    async fn start(
        base: &Settings,
        backend: BenchBackend,
        postgres_url: &str,
        contacts: usize,
    ) -> anyhow::Result<Server> {
        let database = FreshDatabase::create(backend, postgres_url).await?;
        let mut settings = database.server_settings(base);
        // Keys of this run only (queue, claims of event ids), deleted at the end.
        settings.redis.key_prefix = format!(
            "{}-bench-bounces-{:08x}",
            settings.redis.key_prefix,
            rand::random::<u32>()
        );
        let prefix = settings.redis.key_prefix.clone();
        let state = AppState::connect(settings).await?;
        let redis = state.redis.clone();
        let db = state.db.clone();
        let (key, _) = store::keys::create(&db, DEFAULT_WORKSPACE, "bench", Role::Marketer).await?;
        let application = Application::from_state(state)?;
        let address = format!("http://127.0.0.1:{}", application.port());
        let handle = application.handle();
        let state = application.state();
        let task = tokio::spawn(application.run_until_stopped());
        let (stop_writer, stopped) = tokio::sync::watch::channel(false);
        let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = Arc::clone(&written);
        let writer = tokio::spawn(async move {
            let queue = state
                .providers
                .queue()
                .ok_or_else(|| anyhow::anyhow!("the server has no provider report queue"))?;
            let consumer = queue.queue().await?.consumer("bench-writer").await?;
            let mut stopped = stopped;
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            state
                .providers
                .report_writer()
                .run(&consumer, shutdown, move |applied| {
                    let n = applied.recorded + applied.duplicates + applied.unknown;
                    count.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                })
                .await?;
            anyhow::Ok(())
        });
        let client = reqwest::Client::new();
        for chunk in (0..contacts).collect::<Vec<_>>().chunks(5_000) {
            let items: Vec<serde_json::Value> = chunk
                .iter()
                .map(|&i| serde_json::json!({"external_id": format!("bench-{i}"), "email": email(i)}))
                .collect();
            let response = client
                .post(format!("{address}/api/v1/contacts/batch"))
                .bearer_auth(&key)
                .json(&serde_json::json!({ "contacts": items }))
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "creating the contacts failed: {}",
                response.text().await?
            );
        }
        Ok(Server {
            url: address,
            db,
            prefix,
            redis,
            written,
            stop_writer,
            writer,
            handle,
            task,
            database,
        })
    }

    /// Sends every request, `concurrency` at once; the line to print.
    async fn send(
        &self,
        provider: &str,
        requests: &[Prepared],
        events: usize,
        concurrency: usize,
    ) -> anyhow::Result<String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()?;
        let url = format!("{}/webhooks/{provider}", self.url);
        let queue = Arc::new(Mutex::new(VecDeque::from(requests.to_vec())));
        let expected = self.written() + events as u64;
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (client, url, queue) = (client.clone(), url.clone(), queue.clone());
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                    let Some(request) = next else { break };
                    let sent = Instant::now();
                    let mut post = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(request.body.as_ref().clone());
                    for (name, value) in &request.headers {
                        post = post.header(*name, value);
                    }
                    let response = post.send().await?;
                    let status = response.status();
                    let text = response.text().await?;
                    anyhow::ensure!(status.is_success(), "the server answered {status}: {text}");
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for worker in workers {
            latencies.extend(worker.await??);
        }
        let elapsed = started.elapsed();
        // Done once the writer has written every queued event (stored it, marked its
        // contact, suppressed its address).
        while self.written() < expected {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "the events were not all stored within 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let written = started.elapsed();
        latencies.sort();
        let percentile = |p: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let per_request = requests.first().map_or(1, |r| r.events);
        Ok(format!(
            "{provider:<8} {:>8.0} events/s written  ({events} events all written after {:.2} s; answered at {:.0} events/s, in {:.2} s; {per_request} per request; per request p50 {:.1} ms, p99 {:.1} ms)",
            events as f64 / written.as_secs_f64(),
            written.as_secs_f64(),
            events as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64(),
            percentile(0.5),
            percentile(0.99),
        ))
    }

    fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bounce and complaint events stored so far.
    async fn stored(&self) -> anyhow::Result<usize> {
        let stored = self
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM events WHERE kind IN ('email_bounce', 'email_complaint')",
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        Ok(usize::try_from(stored).unwrap_or(0))
    }

    /// Checks that every event was stored, then stops the server and drops the database.
    async fn stop(self, expected: usize) -> anyhow::Result<()> {
        let stored = self.stored().await?;
        let _ = self.stop_writer.send(true);
        self.writer.await??;
        self.handle.stop(true).await;
        let _ = self.task.await;
        delete_keys(self.redis, &self.prefix).await?;
        self.db.close().await?;
        self.database.drop().await?;
        anyhow::ensure!(
            stored == expected,
            "{expected} events sent but {stored} stored"
        );
        Ok(())
    }
}

/// Deletes the keys under `prefix` (and the queue keys, hash-tagged `{prefix:...}`).
async fn delete_keys(mut redis: redis::aio::ConnectionManager, prefix: &str) -> anyhow::Result<()> {
    for pattern in [format!("{prefix}:*"), format!("{{{prefix}:*")] {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut redis)
                .await?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<()>(&mut redis)
                    .await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}
