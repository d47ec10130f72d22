//! `clarion bench`: throughput on fresh databases, with deterministic generated data, so that
//! figures can be compared between commits and machines.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use clarion_dispatch::bench::{BenchOptions as DispatchBenchOptions, EmailFigures};
use clarion_model::{DEFAULT_WORKSPACE, Role};
use clarion_queue::bench::BenchOptions as QueueBenchOptions;
use clarion_server::{AppState, Application, Settings, store};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sea_orm::{ConnectionTrait, Database};
use secrecy::{ExposeSecret, SecretString};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Launch of a campaign to every generated contact on PostgreSQL: delivery rows and
    /// enqueued jobs, beside a hand-written INSERT … SELECT of the same rows.
    Launch(SendingArgs),
    /// A whole campaign sent by one `clarion serve --role worker` process to a local webhook
    /// receiver: deliveries per second end to end and the worker's peak memory.
    Worker(SendingArgs),
    /// A recurring "09:00 local" campaign's firing to every generated contact, spread over
    /// 38 time zones, on PostgreSQL: the waves planned before launch and at the firing, timed,
    /// with this process's peak memory.
    Waves(SendingArgs),
    /// Trigger latency: from the event that makes a contact enter a segment (through
    /// POST /api/v1/events/batch) to its triggered message (no delay) in the Redis stream,
    /// p50 and p99, against a server and trigger rounds started in this process on a fresh
    /// database.
    Triggers {
        /// Which databases to measure.
        #[arg(long, value_enum, default_values_t = [BenchBackend::Postgres, BenchBackend::Sqlite])]
        backend: Vec<BenchBackend>,
        /// Contacts, each entering the segment once.
        #[arg(long, default_value_t = 10_000)]
        entries: usize,
        /// Entries sent per second.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// Events per request.
        #[arg(long, default_value_t = 10)]
        per_request: usize,
        /// The PostgreSQL server to create the benchmark database on (it is dropped after).
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres_url: String,
    },
    /// Event ingestion through POST /api/v1/events/batch, against a server started in this
    /// process on a fresh database.
    Ingest {
        /// Which databases to measure.
        #[arg(long, value_enum, default_values_t = [BenchBackend::Sqlite, BenchBackend::Postgres])]
        backend: Vec<BenchBackend>,
        /// Events to send.
        #[arg(long, default_value_t = 400_000)]
        events: usize,
        /// Distinct contacts the events belong to (created by the first events).
        #[arg(long, default_value_t = 20_000)]
        contacts: usize,
        /// Events per request.
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// The PostgreSQL server to create the benchmark database on (it is dropped after).
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres_url: String,
    },
    /// Bounce and complaint webhooks of email providers (SendGrid's batched Event Webhook and
    /// Mailgun's one event per request), signed as each provider signs them, through
    /// /webhooks/sendgrid and /webhooks/mailgun of a server started in this process on a
    /// fresh database.
    Bounces {
        /// Which databases to measure.
        #[arg(long, value_enum, default_values_t = [BenchBackend::Sqlite, BenchBackend::Postgres])]
        backend: Vec<BenchBackend>,
        /// Events sent per provider.
        #[arg(long, default_value_t = 50_000)]
        events: usize,
        /// Contacts the events are about (created first).
        #[arg(long, default_value_t = 20_000)]
        contacts: usize,
        /// SendGrid events per request.
        #[arg(long, default_value_t = 100)]
        sendgrid_batch: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// The PostgreSQL server to create the benchmark database on (it is dropped after).
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres_url: String,
    },
    /// Tracking endpoints under load: a server started in this process on a fresh database
    /// with a sent campaign, its open pixel and click redirect driven by `wrk` (Debian package
    /// `wrk`; without it, by a load generator in this process) with valid signed links, each
    /// request another delivery, while this process's recorder stores the hits. Prints
    /// requests/s, how long the recorder took to catch up, and checks that the recorded
    /// events equal the accepted requests and the roll-ups the raw events.
    Tracking(crate::bench_tracking::TrackingArgs),
    /// Segment computation on PostgreSQL over a generated population: RFM/CLV recomputation,
    /// a materialized segment beside hand-written SQL, a size preview, and the latency from
    /// an event to current memberships.
    Segments {
        /// Population sizes to measure, each on its own kept database.
        #[arg(long, value_delimiter = ',', default_values_t = [100_000u64, 1_000_000])]
        contacts: Vec<u64>,
        /// Events per contact.
        #[arg(long, default_value_t = 10)]
        events_per_contact: u64,
        /// Single events whose membership latency is measured.
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        /// The PostgreSQL server to create the benchmark databases on.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres_url: String,
        /// Generate the data anew even when a database of that size exists.
        #[arg(long)]
        fresh: bool,
    },
    /// KPI reports on PostgreSQL over the population of `bench segments` and a campaign run
    /// to all of it: p50/p95 of each report beside a straightforward SQL query of the same
    /// figures over the raw rows.
    Kpi {
        /// Contacts (ten events each).
        #[arg(long, default_value_t = 100_000)]
        contacts: u64,
        /// Runs of each report.
        #[arg(long, default_value_t = 50)]
        iterations: usize,
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres_url: String,
        /// Generate the population anew even when a database of that size exists.
        #[arg(long)]
        fresh: bool,
    },
    /// Dashboard pages on PostgreSQL over the population of `bench segments`, logged in as an
    /// admin: p50/p95 of each page's GET (target p95 < 50 ms) and the bytes of the overview
    /// with its assets (target < 200 KB).
    Dashboard {
        /// Contacts (ten events each).
        #[arg(long, default_value_t = 1_000_000)]
        contacts: u64,
        /// GETs of each page.
        #[arg(long, default_value_t = 50)]
        iterations: usize,
        /// The pages to measure, as paths.
        #[arg(long, value_delimiter = ',', default_value = crate::bench_dashboard::PAGES)]
        pages: Vec<String>,
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres_url: String,
        /// Generate the population anew even when a database of that size exists.
        #[arg(long)]
        fresh: bool,
    },
    /// Rendering of the ~20 KB sample email on one thread: without link rewriting (the
    /// baseline), with it as workers render, with every link signed on its own, and with the
    /// text part derived from the HTML; renders per CPU second of the thread.
    Render {
        /// Seconds spent on each way of rendering.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Redis job queue: pipelined enqueue beside `redis-benchmark` XADD at the same pipeline
    /// depth, measured in the same run, then consumption with a no-op handler.
    ///
    /// Needs a Redis server and `redis-benchmark` (Debian package redis-tools). The keys are
    /// created under a unique prefix and deleted afterwards.
    Queue {
        /// Jobs to enqueue and then consume; also redis-benchmark's request count.
        #[arg(long, default_value_t = QueueBenchOptions::default().jobs)]
        jobs: usize,
        /// The Redis server to measure against [default: `url` of the `[redis]` settings].
        #[arg(long)]
        redis_url: Option<String>,
    },
    /// Email: rendered messages built and sent through a pooled SMTP sender to Postfix's
    /// smtp-sink, beside Postfix's smtp-source against the same sink in the same run.
    ///
    /// smtp-sink accepts and discards, writing nothing to disk. smtp-source sends the same
    /// number of messages of the same size over as many reused connections; the two alternate
    /// in three rounds so that other load on the machine weighs on both alike. Needs smtp-sink
    /// and smtp-source (Debian package postfix); no Postfix daemon is used.
    Email {
        /// Messages sent by Clarion, and again by smtp-source.
        #[arg(long, default_value_t = DispatchBenchOptions::default().email_messages)]
        messages: usize,
        /// SMTP connections: Clarion's pool size and smtp-source's sessions.
        #[arg(long, default_value_t = DispatchBenchOptions::default().email_connections)]
        connections: u32,
        /// Size of the rendered body (text and HTML together), in bytes.
        #[arg(long, default_value_t = DispatchBenchOptions::default().email_bytes)]
        bytes: usize,
    },
    /// Webhooks: signed POSTs to a keep-alive HTTP receiver started in this process, which
    /// answers 204 to each: rounds signed with `webhook.secret` alternate with rounds spread
    /// over webhook endpoints with their own secrets (half of them mid-rotation).
    Webhook {
        /// Deliveries to send per round.
        #[arg(long, default_value_t = DispatchBenchOptions::default().webhook_deliveries)]
        deliveries: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = DispatchBenchOptions::default().webhook_concurrency)]
        concurrency: usize,
        /// Endpoints of the per-endpoint rounds (0: only the single-secret rounds).
        #[arg(long, default_value_t = DispatchBenchOptions::default().webhook_endpoints)]
        endpoints: usize,
    },
}

/// What `bench launch` and `bench worker` take.
#[derive(clap::Args)]
pub struct SendingArgs {
    /// Contacts in the audience (generated once, kept in `clarion_bench_launch_N`).
    #[arg(long, default_value_t = 1_000_000)]
    contacts: u64,
    /// The PostgreSQL server to create the benchmark database on.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// Generate the contacts anew even when the database exists.
    #[arg(long)]
    fresh: bool,
    /// The channel `bench worker` sends on: webhooks to a receiver in this process, or 20 KB
    /// emails to Postfix's smtp-sink (Debian package `postfix`).
    #[arg(long, value_enum, default_value_t = BenchChannel::Webhook)]
    channel: BenchChannel,
    /// `bench worker` only: after a first send, send without, with and again without a
    /// frequency cap on the channel (one every contact is under), and print the capped rate
    /// beside the mean of the uncapped ones, and their ratio.
    #[arg(long)]
    frequency_cap: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchChannel {
    Email,
    Webhook,
}

impl SendingArgs {
    fn bench(&self) -> crate::bench_sending::SendingBench {
        crate::bench_sending::SendingBench {
            contacts: self.contacts,
            postgres_url: self.postgres_url.clone(),
            fresh: self.fresh,
            channel: match self.channel {
                BenchChannel::Email => clarion_model::Channel::Email,
                BenchChannel::Webhook => clarion_model::Channel::Webhook,
            },
            frequency_cap: self.frequency_cap,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    Sqlite,
    Postgres,
}

pub async fn run(command: BenchCommand, settings: Settings) -> anyhow::Result<()> {
    match command {
        BenchCommand::Launch(args) => {
            crate::bench_sending::run_launch(&args.bench(), &settings).await
        }
        BenchCommand::Worker(args) => {
            crate::bench_sending::run_worker(&args.bench(), &settings).await
        }
        BenchCommand::Waves(args) => crate::bench_waves::run(&args.bench(), &settings).await,
        BenchCommand::Triggers {
            backend,
            entries,
            rate,
            per_request,
            postgres_url,
        } => {
            let bench = crate::bench_triggers::TriggerBench {
                backends: backend,
                entries,
                rate,
                per_request,
                postgres_url,
            };
            crate::bench_triggers::run(&bench, &settings).await
        }
        BenchCommand::Ingest {
            backend,
            events,
            contacts,
            batch,
            concurrency,
            postgres_url,
        } => {
            let bodies = generate_batches(events, contacts, batch);
            println!(
                "bench ingest: {events} events of {contacts} contacts, {batch} per request, {concurrency} in flight, {} cores",
                std::thread::available_parallelism().map_or(1, usize::from)
            );
            for backend in backend {
                let line = ingest(
                    &settings,
                    backend,
                    &bodies,
                    events,
                    concurrency,
                    &postgres_url,
                )
                .await?;
                println!("{line}");
            }
            Ok(())
        }
        BenchCommand::Bounces {
            backend,
            events,
            contacts,
            sendgrid_batch,
            concurrency,
            postgres_url,
        } => {
            crate::bench_feedback::run(
                &crate::bench_feedback::FeedbackBench {
                    backends: backend,
                    events,
                    contacts,
                    sendgrid_batch,
                    concurrency,
                    postgres_url,
                },
                &settings,
            )
            .await
        }
        BenchCommand::Tracking(args) => crate::bench_tracking::run(&args, &settings).await,
        BenchCommand::Segments {
            contacts,
            events_per_contact,
            events,
            postgres_url,
            fresh,
        } => {
            crate::bench_segments::run(
                crate::bench_segments::SegmentBench {
                    contacts,
                    events_per_contact,
                    latency_events: events,
                    postgres_url,
                    fresh,
                },
                &settings,
            )
            .await
        }
        BenchCommand::Kpi {
            contacts,
            iterations,
            postgres_url,
            fresh,
        } => {
            crate::bench_kpi::run(
                crate::bench_kpi::KpiBench {
                    contacts,
                    iterations,
                    postgres_url,
                    fresh,
                },
                &settings,
            )
            .await
        }
        BenchCommand::Dashboard {
            contacts,
            iterations,
            pages,
            postgres_url,
            fresh,
        } => {
            crate::bench_dashboard::run(
                crate::bench_dashboard::DashboardBench {
                    contacts,
                    iterations,
                    pages,
                    postgres_url,
                    fresh,
                },
                &settings,
            )
            .await
        }
        BenchCommand::Render { seconds } => {
            let figures = clarion_template::bench::run(Duration::from_secs(seconds.max(1)))?;
            println!("{figures}");
            Ok(())
        }
        BenchCommand::Queue { jobs, redis_url } => {
            let options = QueueBenchOptions {
                jobs,
                redis_url: redis_url
                    .unwrap_or_else(|| settings.redis.url.expose_secret().to_owned()),
                ..QueueBenchOptions::default()
            };
            queue(&options).await
        }
        BenchCommand::Email {
            messages,
            connections,
            bytes,
        } => {
            let options = DispatchBenchOptions {
                email_messages: messages,
                email_connections: connections,
                email_bytes: bytes,
                ..DispatchBenchOptions::default()
            };
            email(&options).await
        }
        BenchCommand::Webhook {
            deliveries,
            concurrency,
            endpoints,
        } => {
            let options = DispatchBenchOptions {
                webhook_deliveries: deliveries,
                webhook_concurrency: concurrency,
                webhook_endpoints: endpoints,
                ..DispatchBenchOptions::default()
            };
            webhook(&options).await
        }
    }
}

/// Prints the queue figures; fails after printing them when the baseline is missing, since a
/// rate without it cannot be compared across machines.
async fn queue(options: &QueueBenchOptions) -> anyhow::Result<()> {
    let report = clarion_queue::bench::run(options)
        .await
        .context("the queue benchmark failed (does Redis answer at the --redis-url?)")?;
    println!("{report}");
    if let Err(why) = &report.baseline {
        anyhow::bail!("the redis-benchmark baseline is missing: {why}");
    }
    Ok(())
}

/// Prints the email figures; fails when they, or the smtp-source baseline, could not be taken
/// or when a message was not delivered.
async fn email(options: &DispatchBenchOptions) -> anyhow::Result<()> {
    let figures = clarion_dispatch::bench::run_email(options).await;
    match &figures {
        EmailFigures::Skipped { reason } => {
            anyhow::bail!("the email benchmark did not run: {reason}")
        }
        EmailFigures::Measured {
            messages,
            failed,
            baseline,
            ..
        } => {
            println!("{figures}");
            if let Err(why) = baseline {
                anyhow::bail!("the smtp-source baseline is missing: {why}");
            }
            anyhow::ensure!(*failed == 0, "{failed} of {messages} messages failed");
            Ok(())
        }
    }
}

/// Prints the webhook figures; fails when they could not be taken or a delivery failed.
async fn webhook(options: &DispatchBenchOptions) -> anyhow::Result<()> {
    let figures = clarion_dispatch::bench::run_webhook(options)
        .await
        .map_err(|reason| anyhow::anyhow!("the webhook benchmark did not run: {reason}"))?;
    println!("{figures}");
    anyhow::ensure!(
        figures.failed == 0,
        "{} of {} deliveries failed",
        figures.failed,
        figures.deliveries
    );
    Ok(())
}

/// Request bodies of a fixed, seeded event stream: purchases, page views and email clicks
/// with properties, over `contacts` customers; a tenth of the events carry an idempotency key.
fn generate_batches(events: usize, contacts: usize, batch: usize) -> Vec<bytes_body::Body> {
    let mut rng = StdRng::seed_from_u64(0x0c1a_7107);
    let start = 1_700_000_000_000i64;
    let kinds = ["purchase", "page_view", "email_click", "add_to_cart"];
    let categories = ["books", "garden", "kitchen", "toys", "cats"];
    let mut bodies = Vec::new();
    let mut produced = 0;
    while produced < events {
        let n = batch.min(events - produced);
        let mut items = Vec::with_capacity(n);
        for i in 0..n {
            let seq = produced + i;
            let kind = kinds[rng.random_range(0..kinds.len())];
            let occurred = start + rng.random_range(0..31_536_000_000i64);
            let mut event = serde_json::json!({
                "external_id": format!("bench-{}", rng.random_range(0..contacts.max(1))),
                "kind": kind,
                "occurred_at": clarion_model::Timestamp::from_millis(occurred).to_rfc3339(),
                "properties": {"category": categories[rng.random_range(0..categories.len())], "sku": rng.random_range(0..5000)},
            });
            if kind == "purchase" {
                event["amount"] = serde_json::json!((rng.random_range(100..50_000) as f64) / 100.0);
                event["currency"] = serde_json::json!("EUR");
            }
            if seq % 10 == 0 {
                event["idempotency_key"] = serde_json::json!(format!("bench-{seq}"));
            }
            items.push(event);
        }
        produced += n;
        bodies.push(bytes_body::Body::from_json(
            &serde_json::json!({ "events": items }),
        ));
    }
    bodies
}

mod bytes_body {
    /// A request body serialised once, so the benchmark measures the server, not the client.
    #[derive(Clone)]
    pub struct Body(pub std::sync::Arc<Vec<u8>>);

    impl Body {
        pub fn from_json(value: &serde_json::Value) -> Self {
            Body(std::sync::Arc::new(
                serde_json::to_vec(value).unwrap_or_default(),
            ))
        }
    }
}

async fn ingest(
    base: &Settings,
    backend: BenchBackend,
    bodies: &[bytes_body::Body],
    events: usize,
    concurrency: usize,
    postgres_url: &str,
) -> anyhow::Result<String> {
    let database = FreshDatabase::create(backend, postgres_url).await?;
    let settings = database.server_settings(base);
    let state = AppState::connect(settings).await?;
    let db = state.db.clone();
    let (key, _) = store::keys::create(&db, DEFAULT_WORKSPACE, "bench", Role::Marketer).await?;
    let application = Application::from_state(state)?;
    let url = format!(
        "http://127.0.0.1:{}/api/v1/events/batch",
        application.port()
    );
    let handle = application.handle();
    let server = tokio::spawn(application.run_until_stopped());

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let queue = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
        bodies.to_vec(),
    )));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, key, queue) = (client.clone(), url.clone(), key.clone(), queue.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(body) = next else { break };
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body.0.as_ref().clone())
                    .send()
                    .await?;
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
    let stored = clarion_contacts::events::count(&db, DEFAULT_WORKSPACE).await?;
    handle.stop(true).await;
    let _ = server.await;
    let baseline = if backend == BenchBackend::Postgres {
        Some(copy_baseline(database.url()).await?)
    } else {
        None
    };
    db.close().await?;
    database.drop().await?;
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    anyhow::ensure!(
        stored as usize == events,
        "{events} events sent but {stored} stored"
    );
    let rate = events as f64 / elapsed.as_secs_f64();
    let mut line = format!(
        "ingest {:<8} {:>9.0} events/s  ({events} events in {:.2} s; per request p50 {:.0} ms, p99 {:.0} ms)",
        format!("{backend:?}").to_lowercase(),
        rate,
        elapsed.as_secs_f64(),
        percentile(0.5),
        percentile(0.99),
    );
    if let Some((copied, seconds, bare)) = baseline {
        let copy_rate = copied as f64 / seconds;
        let bare_rate = copied as f64 / bare;
        line.push_str(&format!(
            "\ningest baseline  {copy_rate:>9.0} events/s  (psql-style COPY of the same {copied} rows into the same table, indexes and goal roll-up trigger in {seconds:.2} s); API / COPY = {:.2}\
             \ningest baseline  {bare_rate:>9.0} events/s  (the same COPY with the trigger disabled, in {bare:.2} s); API / bare COPY = {:.2}",
            rate / copy_rate,
            rate / bare_rate
        ));
    }
    Ok(line)
}

/// A database of its own for one benchmark run: a SQLite file in a temporary folder, or a
/// UUID-named PostgreSQL database, dropped by [`FreshDatabase::drop`].
pub(crate) struct FreshDatabase {
    url: String,
    /// The server it lives on and its name, on PostgreSQL.
    postgres: Option<(String, String)>,
    _folder: tempfile::TempDir,
}

impl FreshDatabase {
    pub(crate) async fn create(backend: BenchBackend, postgres_url: &str) -> anyhow::Result<Self> {
        let folder = tempfile::tempdir()?;
        let (url, postgres) = match backend {
            BenchBackend::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    folder.path().join("bench.db").display()
                ),
                None,
            ),
            BenchBackend::Postgres => {
                let name = format!("clarion_bench_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(postgres_url)
                    .await
                    .with_context(|| format!("PostgreSQL does not answer at {postgres_url}"))?;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await?;
                admin.close().await?;
                (
                    clarion_server::db::postgres_url_for_database(postgres_url, &name),
                    Some((postgres_url.to_owned(), name)),
                )
            }
        };
        Ok(FreshDatabase {
            url,
            postgres,
            _folder: folder,
        })
    }

    /// The connection URL of the database.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// `base` for a server on this database: on a port of its own on the loopback
    /// interface, migrating the database at start.
    pub(crate) fn server_settings(&self, base: &Settings) -> Settings {
        let mut settings = base.clone();
        settings.server.host = "127.0.0.1".into();
        settings.server.port = 0;
        settings.database.url = SecretString::from(self.url.clone());
        settings.database.migrate_on_start = true;
        settings.database.max_connections = 8;
        settings
    }

    /// Drops the PostgreSQL database (the SQLite folder goes with `self`).
    pub(crate) async fn drop(self) -> anyhow::Result<()> {
        if let Some((server, name)) = &self.postgres {
            let admin = Database::connect(server).await?;
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await?;
        }
        Ok(())
    }
}

/// The baseline of the PostgreSQL figure: the rows the API stored, exported with
/// `COPY ... TO STDOUT` and written back after `TRUNCATE` with one `COPY ... FROM STDIN` in
/// text format, as `psql -c "\copy"` does, into the same table with its indexes, foreign
/// keys and the trigger that keeps the goal roll-up (emptied too, as the API found it); then
/// once more with that trigger disabled: the table's bare insert rate. Answers the rows
/// copied and the seconds each COPY in took.
async fn copy_baseline(url: &str) -> anyhow::Result<(u64, f64, f64)> {
    use futures::TryStreamExt;
    use sea_orm::sqlx::{Connection, Executor};
    const COLUMNS: &str = "workspace_id, contact_id, kind, occurred_at, amount, currency, properties, idempotency_key, received_at";
    // A connection of its own: the server's pool connections live on its runtimes, gone once it stops.
    let mut connection = sea_orm::sqlx::PgConnection::connect(url).await?;
    let mut data = Vec::new();
    {
        let mut out = connection
            .copy_out_raw(&format!(
                "COPY (SELECT {COLUMNS} FROM events ORDER BY id) TO STDOUT"
            ))
            .await?;
        while let Some(chunk) = out.try_next().await? {
            data.extend_from_slice(&chunk);
        }
    }
    let mut seconds = Vec::new();
    for setup in [
        "TRUNCATE events, kpi_goal_days",
        "TRUNCATE events, kpi_goal_days; ALTER TABLE events DISABLE TRIGGER events_kpi_goal_days",
    ] {
        connection.execute(setup).await?;
        let started = Instant::now();
        let mut copy = connection
            .copy_in_raw(&format!("COPY events ({COLUMNS}) FROM STDIN"))
            .await?;
        copy.send(data.clone()).await?;
        let copied = copy.finish().await?;
        seconds.push((copied, started.elapsed().as_secs_f64()));
    }
    Ok((seconds[0].0, seconds[0].1, seconds[1].1))
}
