//! `clarion bench tracking`: the open pixel and the click redirect under load, on a server
//! started in this process on a fresh database (SQLite and PostgreSQL) with a campaign sent
//! to every generated contact.
//!
//! Each request carries a valid signed link of another delivery (`/t/o/{token}` for opens,
//! `/t/l/{token}/0` for the variant's literal link) and a browser's user agent. `wrk` drives
//! the load when it is installed (Debian package `wrk`), else a load generator in this
//! process (which takes CPU from the server, so its figures are lower). The recorder runs in
//! this process as it does in `clarion serve` (API and worker roles in one process) and stores
//! the hits while the requests come in; after each round the benchmark waits until every
//! accepted hit is an event, prints how long that took after the load stopped, and checks
//! that the recorded events equal the accepted requests and that the run's roll-ups of
//! unique opens and clicks equal the distinct deliveries of the raw events.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clarion_campaign::{
    CampaignInput, EmailVariant, TargetInput, VariantInput, engagement::link_table_name,
    store as campaigns,
};
use clarion_model::{DEFAULT_WORKSPACE, Goal, Timestamp};
use clarion_segment::store::{self, Category, NewSegment};
use clarion_server::{AppState, Application, Settings};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use secrecy::SecretString;

use crate::bench::{BenchBackend, FreshDatabase};

/// What `bench tracking` takes.
#[derive(clap::Args)]
pub struct TrackingArgs {
    /// Which databases to measure.
    #[arg(long, value_enum, default_values_t = [BenchBackend::Sqlite, BenchBackend::Postgres])]
    backend: Vec<BenchBackend>,
    /// Sent deliveries (one contact each); requests cycle through them.
    #[arg(long, default_value_t = 10_000)]
    deliveries: u64,
    /// Seconds of load per endpoint.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Connections kept open by the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The PostgreSQL server to create the benchmark database on (it is dropped after).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
}

/// A person's mail client: neither a bot nor Apple's proxy, so every hit counts.
const PERSON: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15";

/// The shop link written in the variant: entry 0 of its link table.
const SHOP: &str = "https://shop.example/sale";

/// Longest wait for the recorder to catch up after a round.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(900);

pub async fn run(args: &TrackingArgs, base: &Settings) -> anyhow::Result<()> {
    let wrk = which_wrk();
    println!(
        "bench tracking: {} sent deliveries, {} s per endpoint, {} connections, load by {}, {} cores",
        args.deliveries,
        args.seconds,
        args.connections,
        if wrk.is_some() {
            "wrk"
        } else {
            "this process (install Debian package `wrk` for the reference figures)"
        },
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    for &backend in &args.backend {
        let database = FreshDatabase::create(backend, &args.postgres_url).await?;
        let outcome = measure(args, base, backend, database.url(), wrk.as_deref()).await;
        database.drop().await?;
        outcome?;
    }
    Ok(())
}

/// The `wrk` on the PATH, if any.
fn which_wrk() -> Option<String> {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .ok()
        .map(|_| "wrk".to_owned())
}

/// One backend: seed, serve, record, load both endpoints, check, tear down.
async fn measure(
    args: &TrackingArgs,
    base: &Settings,
    backend: BenchBackend,
    url: &str,
    wrk: Option<&str>,
) -> anyhow::Result<()> {
    let mut settings = base.clone();
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.database.url = SecretString::from(url.to_owned());
    settings.database.migrate_on_start = true;
    settings.database.max_connections = 16;
    settings.redis.key_prefix = format!("clarion-bench-{}", uuid::Uuid::new_v4().simple());
    let state = AppState::connect(settings).await?;
    let sent = seed(&state.db, args.deliveries).await?;
    let (opens, clicks) = links(&state, &sent);
    let application = Application::from_state(state)?;
    let address = format!("http://127.0.0.1:{}", application.port());
    let handle = application.handle();
    let state = application.state();
    let server = tokio::spawn(application.run_until_stopped());
    let queue = state.hits.queue().await?.clone();
    let consumer = queue.consumer("bench-recorder").await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let recorder = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut stopped = stopped;
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let metrics = state.metrics.clone();
            state
                .recorder
                .run(&consumer, shutdown, move |tally| {
                    metrics.count_recorded(tally)
                })
                .await
        })
    };

    let name = format!("{backend:?}").to_lowercase();
    let folder = tempfile::tempdir()?;
    let mut result = Ok(());
    for (action, kind, metric, paths) in [
        ("open", "email_open", "opened", &opens),
        ("click", "email_click", "clicked", &clicks),
    ] {
        let load = match wrk {
            Some(wrk) => run_wrk(wrk, args, &address, paths, &folder.path().join(action)).await?,
            None => generate(args, &address, paths).await?,
        };
        let caught_up = catch_up(&state, action, kind).await;
        let accepted = state
            .metrics
            .tracking
            .with_label_values(&[action, "accepted"])
            .get();
        println!(
            "tracking {name:<8} {action:<5} {:>9.0} requests/s  ({} requests, {} not 2xx/3xx; latency p50 {}, p99 {})",
            load.rate, load.requests, load.failed, load.p50, load.p99
        );
        match caught_up {
            Ok((recorded, waited)) => {
                let agree = rollups_agree(&state.db, kind, metric).await?;
                println!(
                    "tracking {name:<8} {action:<5} recorder caught up {:.2} s after the load: {recorded} events recorded of {accepted} accepted{}; roll-up of unique {action}s {} ({} deliveries)",
                    waited.as_secs_f64(),
                    if recorded == accepted {
                        " (equal)"
                    } else {
                        " (NOT EQUAL)"
                    },
                    if agree.0 == agree.1 {
                        "equals the raw events"
                    } else {
                        "DIFFERS from the raw events"
                    },
                    agree.1,
                );
                if recorded != accepted || agree.0 != agree.1 {
                    result = Err(anyhow::anyhow!(
                        "{name} {action}: {recorded} recorded of {accepted} accepted; roll-up {} against {} from the raw events",
                        agree.0,
                        agree.1
                    ));
                }
            }
            Err(error) => result = Err(error),
        }
    }
    let _ = stop.send(true);
    let _ = recorder.await;
    handle.stop(true).await;
    let _ = server.await;
    queue.destroy().await?;
    state.db.clone().close().await?;
    result
}

/// Contacts, a segment of everyone, a campaign whose variant has one literal link, a run and
/// `n` sent deliveries; answers the delivery ids with the variant's link table.
async fn seed(db: &DatabaseConnection, n: u64) -> anyhow::Result<(Vec<i64>, String)> {
    let now = Timestamp::now().millis();
    let backend = db.get_database_backend();
    let no_attributes = match backend {
        sea_orm::DbBackend::Postgres => "CAST('{}' AS jsonb)",
        _ => "'{}'",
    };
    db.execute_unprepared(&format!(
        "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {n}) \
         INSERT INTO contacts (workspace_id, external_id, email, email_domain, attributes, \
            email_status, webhook_status, created_at, updated_at) \
         SELECT 1, 'c' || n, 'c' || n || '@example.com', 'example.com', {no_attributes}, 'subscribed', \
            'subscribed', {now}, {now} FROM seq"
    ))
    .await
    .context("generating contacts")?;
    let segment = store::create(
        db,
        DEFAULT_WORKSPACE,
        NewSegment {
            slug: "everyone".into(),
            name: "Everyone".into(),
            description: String::new(),
            category: Category::Demographic,
            rule: None,
        },
        Timestamp::from_millis(now),
    )
    .await?;
    let input = CampaignInput {
        name: "Tracking bench".into(),
        goal: Goal {
            event: "purchase".into(),
            window_hours: 168,
        },
        holdout_percent: 0.0,
        channels: vec![clarion_model::Channel::Email],
        targets: vec![TargetInput {
            segment: "everyone".into(),
            variants: vec![VariantInput {
                id: None,
                name: "A".into(),
                weight: 1,
                email: Some(EmailVariant {
                    subject: "Sale".into(),
                    html: format!("<p>Sale! <a href=\"{SHOP}\">Shop now</a></p>"),
                    from: "Shop <news@shop.example>".into(),
                    ..Default::default()
                }),
                webhook: None,
            }],
        }],
        audience_segment: None,
        fallback: None,
        transactional: false,
    };
    let campaign = campaigns::create(db, DEFAULT_WORKSPACE, &input, None).await?;
    let variant = campaign
        .targets
        .first()
        .and_then(|t| t.variants.first())
        .context("the campaign has no variant")?;
    let table = link_table_name(variant.id.0, variant.version);
    let run = scalar(
        db,
        &format!(
            "INSERT INTO campaign_runs (workspace_id, campaign_id, status, audience, queued, \
             suppressed, holdout, started_at, updated_at) \
             VALUES (1, {}, 'running', {n}, 0, 0, 0, {now}, {now}) RETURNING id",
            campaign.id.0
        ),
    )
    .await?;
    db.execute_unprepared(&format!(
        "INSERT INTO deliveries (workspace_id, run_id, campaign_id, contact_id, channel, \
         variant_id, segment_id, status, attempts, created_at, updated_at, sent_at) \
         SELECT 1, {run}, {}, id, 'email', {}, {}, 'sent', 1, {now}, {now}, {now} FROM contacts",
        campaign.id.0, variant.id.0, segment.id.0
    ))
    .await?;
    clarion_kpi::rollup::build_run(db, run).await?;
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id FROM deliveries ORDER BY id".to_owned(),
        ))
        .await?;
    let ids = rows
        .iter()
        .map(|row| row.try_get_by_index::<i64>(0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((ids, table))
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await?
        .with_context(|| format!("no row from {sql}"))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// The paths of every delivery's open pixel and literal-link click, signed as sent messages
/// carry them.
fn links(state: &AppState, (ids, table): &(Vec<i64>, String)) -> (Vec<String>, Vec<String>) {
    let path = |url: String| {
        url.find("/t/")
            .map_or_else(|| url.clone(), |at| url[at..].to_owned())
    };
    let opens = ids
        .iter()
        .map(|id| path(state.tracker.open_url(&id.to_string())))
        .collect();
    let clicks = ids
        .iter()
        .map(|id| path(state.tracker.link_url(&id.to_string(), table, 0)))
        .collect();
    (opens, clicks)
}

/// What one round of load came to.
struct Load {
    rate: f64,
    requests: u64,
    failed: u64,
    p50: String,
    p99: String,
}

/// Runs wrk over `paths` (each thread starting elsewhere in the list) and reads its report.
async fn run_wrk(
    wrk: &str,
    args: &TrackingArgs,
    address: &str,
    paths: &[String],
    file: &Path,
) -> anyhow::Result<Load> {
    let list = file.with_extension("paths");
    tokio::fs::write(&list, paths.join("\n")).await?;
    let script = file.with_extension("lua");
    tokio::fs::write(
        &script,
        format!(
            "local paths = {{}}\n\
             for line in io.lines(\"{list}\") do paths[#paths + 1] = line end\n\
             local threads = 0\n\
             function setup(thread) threads = threads + 1; thread:set(\"offset\", threads * 7919) end\n\
             local i = 0\n\
             function request()\n\
               i = i + 1\n\
               return wrk.format(\"GET\", paths[((offset or 0) + i) % #paths + 1], {{[\"User-Agent\"] = \"{PERSON}\"}})\n\
             end\n",
            list = list.display()
        ),
    )
    .await?;
    let output = tokio::process::Command::new(wrk)
        .arg(format!("-t{}", args.threads.max(1)))
        .arg(format!("-c{}", args.connections.max(1)))
        .arg(format!("-d{}s", args.seconds.max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(address)
        .output()
        .await
        .context("running wrk")?;
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "wrk failed: {report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(|rest| rest.trim().to_owned())
    };
    let requests = report
        .lines()
        .find(|line| line.contains("requests in"))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no request count in wrk's report: {report}"))?;
    Ok(Load {
        rate: field("Requests/sec:")
            .and_then(|r| r.parse().ok())
            .with_context(|| format!("no rate in wrk's report: {report}"))?,
        requests,
        failed: field("Non-2xx or 3xx responses:")
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        p50: field("50%").unwrap_or_default(),
        p99: field("99%").unwrap_or_default(),
    })
}

/// The load generator used without wrk: `connections` tasks on keep-alive connections, each
/// sending GETs over `paths` one after the other for the round's duration.
async fn generate(args: &TrackingArgs, address: &str, paths: &[String]) -> anyhow::Result<Load> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(PERSON)
        .pool_max_idle_per_host(args.connections)
        .build()?;
    let paths: Arc<Vec<String>> = Arc::new(paths.iter().map(|p| format!("{address}{p}")).collect());
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds.max(1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..args.connections.max(1) {
        let (client, paths, failed) = (client.clone(), Arc::clone(&paths), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = task * 7919;
            while Instant::now() < deadline {
                i += 1;
                let sent = Instant::now();
                let response = client.get(&paths[i % paths.len()]).send().await?;
                let status = response.status();
                let _ = response.bytes().await?;
                if !(status.is_success() || status.is_redirection()) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or_else(String::new, |d| {
                format!("{:.2}ms", d.as_secs_f64() * 1000.0)
            })
    };
    Ok(Load {
        rate: latencies.len() as f64 / elapsed,
        requests: latencies.len() as u64,
        failed: failed.load(Ordering::Relaxed),
        p50: percentile(0.5),
        p99: percentile(0.99),
    })
}

/// Waits until the events of `kind` are as many as the hits of `action` accepted; answers
/// how many were recorded and how long the wait took.
async fn catch_up(state: &AppState, action: &str, kind: &str) -> anyhow::Result<(u64, Duration)> {
    let accepted = state
        .metrics
        .tracking
        .with_label_values(&[action, "accepted"])
        .get();
    let started = Instant::now();
    loop {
        let recorded = u64::try_from(
            scalar(
                &state.db,
                &format!("SELECT COUNT(*) FROM events WHERE kind = '{kind}'"),
            )
            .await?,
        )?;
        if recorded >= accepted {
            return Ok((recorded, started.elapsed()));
        }
        anyhow::ensure!(
            started.elapsed() < CATCH_UP_LIMIT,
            "the recorder stored {recorded} of {accepted} accepted {action}s in {} s",
            CATCH_UP_LIMIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The run's roll-up of `metric` beside the same figure computed from the raw events (the
/// deliveries with an event of `kind`; every hit came from a person).
async fn rollups_agree(
    db: &DatabaseConnection,
    kind: &str,
    metric: &str,
) -> anyhow::Result<(i64, i64)> {
    let delivery = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "properties ->> 'delivery_id'",
        _ => "json_extract(properties, '$.delivery_id')",
    };
    let rolled = scalar(
        db,
        &format!(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM kpi_run_counts \
             WHERE channel = 'email' AND metric = '{metric}'"
        ),
    )
    .await?;
    let raw = scalar(
        db,
        &format!("SELECT COUNT(DISTINCT {delivery}) FROM events WHERE kind = '{kind}'"),
    )
    .await?;
    Ok((rolled, raw))
}
