//! `clarion bench launch` and `clarion bench worker`: a campaign to a generated population on
//! PostgreSQL (the contacts of `bench segments`' generator, kept between runs).
//!
//! - launch: the audience (every contact, through a materialized segment) becomes delivery
//!   rows and queued jobs, timed; beside it, in the same run, the same rows written by one
//!   hand-written `INSERT … SELECT` into a copy of the table, the floor for the database part.
//! - worker: the campaign is sent by a `clarion serve --role worker` child process to an
//!   HTTP receiver in this process (keep-alive, answers 204), timed from launch to the last
//!   delivery settled; the child's peak resident memory (VmHWM) is read from /proc.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use clarion_campaign::{
    CampaignInput, Queues, TargetInput, VariantInput, WebhookVariant, launch::launch,
    store as campaigns,
};
use clarion_model::{CampaignId, Channel, DEFAULT_WORKSPACE, Goal, Timestamp};
use clarion_segment::store::{self, Category, NewSegment};
use clarion_server::Settings;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use secrecy::ExposeSecret;

/// What to measure.
pub struct SendingBench {
    pub contacts: u64,
    pub postgres_url: String,
    pub fresh: bool,
    /// The channel `bench worker` sends on.
    pub channel: Channel,
    /// `bench worker` sends four times in the same run: a first send, then without a
    /// frequency cap, with one that every contact is under (so the check costs what it costs
    /// and suppresses nothing) and without again, the earlier sends' messages in the window.
    pub frequency_cap: bool,
}

pub(crate) fn name(contacts: u64) -> String {
    format!("clarion_bench_launch_{contacts}")
}

/// Prepares the population, a segment holding everyone and a fresh draft campaign on
/// `channel`; returns the database and the campaign.
pub(crate) async fn setup(
    bench: &SendingBench,
    settings: &Settings,
    channel: Channel,
) -> anyhow::Result<(DatabaseConnection, CampaignId)> {
    let db = crate::bench_segments::prepare(
        &bench.postgres_url,
        bench.fresh,
        settings,
        &name(bench.contacts),
        bench.contacts,
        0,
    )
    .await?;
    // Earlier runs' campaigns and deliveries go; the contacts stay.
    db.execute_unprepared("DELETE FROM campaigns").await?;
    let now = Timestamp::now();
    if store::find(&db, DEFAULT_WORKSPACE, "everyone")
        .await?
        .is_none()
    {
        // A static list of everyone, filled by SQL: setting up is not what is measured.
        let segment = store::create(
            &db,
            DEFAULT_WORKSPACE,
            NewSegment {
                slug: "everyone".into(),
                name: "Everyone".into(),
                description: String::new(),
                category: Category::Demographic,
                rule: None,
            },
            now,
        )
        .await?;
        db.execute_unprepared(&format!(
            "INSERT INTO segment_memberships (segment_id, contact_id, entered_at) \
             SELECT {}, id, {} FROM contacts WHERE workspace_id = 1",
            segment.id.0,
            now.millis()
        ))
        .await?;
        db.execute_unprepared("ANALYZE").await?;
    }
    let campaign = create_campaign(&db, channel).await?;
    Ok((db, campaign))
}

/// A draft campaign to everyone on `channel`.
async fn create_campaign(db: &DatabaseConnection, channel: Channel) -> anyhow::Result<CampaignId> {
    let now = Timestamp::now();
    let variant = VariantInput {
        id: None,
        name: "A".into(),
        weight: 1,
        email: (channel == Channel::Email).then(|| clarion_campaign::EmailVariant {
            subject: "Hello {{ contact.first_name|default('there') }}".into(),
            html: email_html(),
            from: "Shop <news@shop.example>".into(),
            ..Default::default()
        }),
        webhook: (channel == Channel::Webhook).then(|| WebhookVariant {
            payload: "{\"contact\": {{ contact.external_id }}, \"country\": {{ contact.country|default('') }}, \"offer\": \"winter\"}".into(),
            headers: Default::default(),
            endpoint: None,
        }),
    };
    let input = CampaignInput {
        name: format!("Bench {}", now.millis()),
        goal: Goal {
            event: "purchase".into(),
            window_hours: 168,
        },
        holdout_percent: 5.0,
        channels: vec![channel],
        targets: vec![TargetInput {
            segment: "everyone".into(),
            variants: vec![variant],
        }],
        audience_segment: None,
        fallback: None,
        transactional: false,
    };
    let campaign = campaigns::create(db, DEFAULT_WORKSPACE, &input, None).await?;
    Ok(campaign.id)
}

/// About 20 KB of HTML with a few substitutions and tracked links, like a real newsletter.
fn email_html() -> String {
    use std::fmt::Write as _;
    let mut html = String::from(
        "<html><body><h1>Hello {{ contact.first_name|default('there') }}</h1>\
         <p>Our winter sale for {{ contact.country|default('you') }}.</p>",
    );
    let mut n = 0;
    while html.len() < 20_000 {
        n += 1;
        let _ = write!(
            html,
            "<p>Product {n}: a long description of what makes this item worth buying this \
             winter, with its materials, its sizes and its care instructions. \
             <a href=\"https://shop.example/p/{n}\">See product {n}</a></p>"
        );
    }
    html.push_str("</body></html>");
    html
}

pub(crate) fn queues(settings: &Settings, prefix: &str) -> anyhow::Result<Queues> {
    let url = settings.redis.url.expose_secret();
    let client = redis::Client::open(url)?;
    let conn = clarion_server::state::connect_redis(url)?;
    Ok(Queues::new(client, conn, prefix, &settings.sending))
}

pub(crate) async fn drop_queues(queues: &Queues) -> anyhow::Result<()> {
    for channel in Channel::ALL {
        queues.open(channel).await?.destroy().await?;
    }
    Ok(())
}

/// Launch: delivery rows and enqueue, beside the hand-written insert.
pub async fn run_launch(bench: &SendingBench, settings: &Settings) -> anyhow::Result<()> {
    println!(
        "bench launch: PostgreSQL, {} contacts, {} cores",
        bench.contacts,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let (db, campaign) = setup(bench, settings, Channel::Email).await?;
    let prefix = format!("clarion-bench-{}", uuid::Uuid::new_v4().simple());
    let queues = queues(settings, &prefix)?;
    let started = Instant::now();
    let report = launch(
        &db,
        &queues,
        &settings.sending,
        DEFAULT_WORKSPACE,
        campaign,
        None,
    )
    .await?;
    let elapsed = started.elapsed();
    let rows = report.queued + report.holdout + report.suppressed.values().sum::<u64>();
    let depth = queues.open(Channel::Email).await?.stats().await?.depth;
    println!(
        "  launch: {} contacts -> {rows} delivery rows ({} queued, {} held out, {} suppressed) and {depth} jobs enqueued in {:.2} s ({:.0} rows/s)",
        report.audience,
        report.queued,
        report.holdout,
        report.suppressed.values().sum::<u64>(),
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64().max(1e-9),
    );
    drop_queues(&queues).await?;

    // The floor: the same rows from one INSERT … SELECT, no assignment, no enqueue.
    db.execute_unprepared("DROP TABLE IF EXISTS bench_deliveries")
        .await?;
    db.execute_unprepared("CREATE TABLE bench_deliveries (LIKE deliveries INCLUDING ALL)")
        .await?;
    let run: i64 = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT MAX(id) AS id FROM campaign_runs".to_owned(),
        ))
        .await?
        .context("no run")?
        .try_get("", "id")?;
    let started = Instant::now();
    db.execute_unprepared(&format!(
        "INSERT INTO bench_deliveries (workspace_id, run_id, campaign_id, contact_id, channel, variant_id, segment_id, \
            status, reason, attempts, created_at, updated_at) \
         SELECT 1, {run}, {campaign}, m.contact_id, 'email', 1, m.segment_id, \
            CASE WHEN c.email_status = 'subscribed' THEN 'queued' ELSE 'suppressed' END, NULL, 0, 0, 0 \
         FROM segment_memberships m JOIN contacts c ON c.id = m.contact_id \
         WHERE m.exited_at IS NULL AND m.segment_id = (SELECT id FROM segments WHERE slug = 'everyone')",
        campaign = campaign.0
    ))
    .await?;
    let hand = started.elapsed();
    println!(
        "  hand-written INSERT … SELECT of the same rows (no assignment, no enqueue): {:.2} s; launch is {:.2}x of it",
        hand.as_secs_f64(),
        elapsed.as_secs_f64() / hand.as_secs_f64().max(1e-9)
    );
    db.execute_unprepared("DROP TABLE bench_deliveries").await?;
    db.execute_unprepared("DELETE FROM campaigns").await?;
    Ok(())
}

/// A worker process sends a whole campaign: webhooks to a receiver in this process, or
/// emails to smtp-sink.
pub async fn run_worker(bench: &SendingBench, settings: &Settings) -> anyhow::Result<()> {
    let channel = bench.channel;
    println!(
        "bench worker: PostgreSQL, {} contacts, {}, one worker process, {} cores",
        bench.contacts,
        match channel {
            Channel::Email => "20 KB emails over 10 SMTP connections to smtp-sink",
            Channel::Webhook => "webhooks to a local keep-alive receiver",
        },
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        let counter = Arc::clone(&counter);
        // The body is read, as any receiver does: actix closes a connection whose request
        // body was left unread, so a receiver that ignores it makes every webhook open a
        // connection of its own (until the machine runs out of ephemeral ports).
        App::new().default_service(web::to(move |_body: web::Bytes| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { HttpResponse::NoContent().finish() }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let receiver = server.handle();
    tokio::spawn(server);
    let smtp_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _sink = match channel {
        Channel::Email => Some(
            clarion_dispatch::bench::start_smtp_sink(smtp_port)
                .await
                .map_err(|e| anyhow::anyhow!(e))?,
        ),
        Channel::Webhook => None,
    };

    let (db, first) = setup(bench, settings, channel).await?;
    db.execute_unprepared("DELETE FROM frequency_caps").await?;
    let prefix = format!("clarion-bench-{}", uuid::Uuid::new_v4().simple());
    let queues = queues(settings, &prefix)?;
    let mut sending = settings.sending.clone();
    sending.webhook_url = format!("http://127.0.0.1:{port}/hook");
    let url =
        clarion_server::db::postgres_url_for_database(&bench.postgres_url, &name(bench.contacts));
    let child = WorkerChild {
        url: &url,
        settings,
        prefix: &prefix,
        webhook_url: &sending.webhook_url,
        smtp_port,
    };

    // With `--frequency-cap`, the first send fills the window; then a send without a cap,
    // one with it and another without it run against the same, growing deliveries table,
    // so the capped send is compared with the uncapped sends on either side of it rather
    // than with a first send into an emptier table.
    let runs: &[Option<bool>] = if bench.frequency_cap {
        &[None, Some(false), Some(true), Some(false)]
    } else {
        &[None]
    };
    let autovacuum = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SHOW autovacuum",
        ))
        .await?
        .map(|row| row.try_get::<String>("", "autovacuum"))
        .transpose()?
        .unwrap_or_default();
    println!("  PostgreSQL autovacuum: {autovacuum} (the bench vacuums between sends either way)");
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for (i, &run) in runs.iter().enumerate() {
        let capped = run == Some(true);
        if capped {
            // Every contact got a message from each earlier send, inside the window; the cap
            // allows five, so each message is checked and none is suppressed.
            db.execute_unprepared(&format!(
                "INSERT INTO frequency_caps (workspace_id, channel, max_messages, window_hours, updated_at) \
                 VALUES ({}, '{}', 5, 168, 0)",
                DEFAULT_WORKSPACE.0,
                channel.as_str()
            ))
            .await?;
        } else {
            db.execute_unprepared("DELETE FROM frequency_caps").await?;
        }
        // Each send leaves dead rows behind (status updates, rewritten roll-up facts), and so
        // do the earlier runs' campaigns the set-up deleted from a kept database. Autovacuum
        // cleans them as it goes on a normal server; where it is off (as on some test
        // machines) they pile up and slow every later send (the facts' index lookups walk
        // millions of dead entries), so the bench vacuums before each send, outside the
        // timing.
        db.execute_unprepared("VACUUM ANALYZE deliveries, kpi_run_facts, kpi_run_counts")
            .await?;
        let campaign = if i == 0 {
            first
        } else {
            create_campaign(&db, channel).await?
        };
        let label = match run {
            None if bench.frequency_cap => "first send, no frequency cap",
            None => "no frequency cap",
            Some(false) => "no frequency cap (earlier sends in the table)",
            Some(true) => {
                "frequency cap on (5 in 168 h, every contact has earlier messages in the window)"
            }
        };
        let started = Instant::now();
        let report = launch(&db, &queues, &sending, DEFAULT_WORKSPACE, campaign, None).await?;
        println!(
            "  {label}: launched {} deliveries in {:.2} s",
            report.queued,
            started.elapsed().as_secs_f64()
        );
        let rate = child
            .send_all(&db, campaign, channel, &received, label)
            .await?;
        match run {
            Some(true) => on.push(rate),
            Some(false) => off.push(rate),
            None => {}
        }
    }
    if let ([on], [_, _]) = (&on[..], &off[..]) {
        let off = off.iter().sum::<f64>() / off.len() as f64;
        println!(
            "  frequency cap check: {on:.0} vs {off:.0} deliveries/s (mean of the uncapped sends before and after) = {:.3}x ({:+.1}% throughput)",
            on / off.max(1e-9),
            (on / off.max(1e-9) - 1.0) * 100.0
        );
    }
    receiver.stop(false).await;
    drop_queues(&queues).await?;
    db.execute_unprepared("DELETE FROM frequency_caps").await?;
    db.execute_unprepared("DELETE FROM campaigns").await?;
    Ok(())
}

/// How the worker process is started.
struct WorkerChild<'a> {
    url: &'a str,
    settings: &'a Settings,
    prefix: &'a str,
    webhook_url: &'a str,
    smtp_port: u16,
}

impl WorkerChild<'_> {
    /// Starts a worker process, waits until nothing is queued or being sent, prints what it
    /// did and returns its deliveries per second.
    async fn send_all(
        &self,
        db: &DatabaseConnection,
        campaign: CampaignId,
        channel: Channel,
        received: &AtomicU64,
        label: &str,
    ) -> anyhow::Result<f64> {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let received_before = received.load(Ordering::Relaxed);
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["serve", "--role", "worker"])
            .env("CLARION__DATABASE__URL", self.url)
            .env(
                "CLARION__REDIS__URL",
                self.settings.redis.url.expose_secret(),
            )
            .env("CLARION__REDIS__KEY_PREFIX", self.prefix)
            .env("CLARION__SENDING__WEBHOOK_URL", self.webhook_url)
            .env("CLARION__WEBHOOK__SECRET", secret)
            .env("CLARION__WEBHOOK__ALLOW_LOOPBACK", "true")
            .env("CLARION__LOG__LEVEL", "warn")
            .env("CLARION__EMAIL__SMTP__HOST", "127.0.0.1")
            .env("CLARION__EMAIL__SMTP__PORT", self.smtp_port.to_string())
            .env("CLARION__EMAIL__SMTP__TLS", "none")
            .env("CLARION__EMAIL__SMTP__POOL_SIZE", "10")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the worker process")?;
        let pid = child.id().context("the worker process has no pid")?;
        let sending_started = Instant::now();
        let deadline = sending_started + Duration::from_secs(3600);
        let mut peak_rss = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak_rss = peak_rss.max(status_kib(pid, "VmRSS:").unwrap_or(0));
            let open = count(
                db,
                &format!(
                    "SELECT COUNT(*) AS n FROM deliveries WHERE campaign_id = {} AND status IN ('queued', 'sending')",
                    campaign.0
                ),
            )
            .await?;
            if open == 0 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the worker did not finish within an hour"
            );
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("the worker process exited early: {status}");
            }
        }
        let elapsed = sending_started.elapsed();
        let hwm = status_kib(pid, "VmHWM:").unwrap_or(peak_rss);
        let by_status = |status: &str| {
            format!(
                "SELECT COUNT(*) AS n FROM deliveries WHERE campaign_id = {} AND status = '{status}'",
                campaign.0
            )
        };
        let sent = count(db, &by_status("sent")).await?;
        let suppressed = count(db, &by_status("suppressed")).await?;
        child.kill().await.ok();
        let what = match channel {
            Channel::Email => "emails sent to smtp-sink".to_owned(),
            Channel::Webhook => format!(
                "webhooks sent ({} received)",
                received.load(Ordering::Relaxed) - received_before
            ),
        };
        let rate = sent as f64 / elapsed.as_secs_f64().max(1e-9);
        println!(
            "  {label}: worker: {sent} {what} ({suppressed} suppressed at launch or send) in {:.1} s: {rate:.0} deliveries/s end to end (claim, render, send, record); worker peak memory {:.0} MB (VmHWM)",
            elapsed.as_secs_f64(),
            hwm as f64 / 1024.0
        );
        Ok(rate)
    }
}

async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    Ok(db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await?
        .context("no count")?
        .try_get("", "n")?)
}

/// A `kB` figure from `/proc/PID/status`.
pub(crate) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
