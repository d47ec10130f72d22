//! `clarion bench kpi`: KPI reports on a generated population on PostgreSQL, each beside a
//! straightforward SQL query of the same figures over the raw rows, in the same run.
//!
//! The population is the one of `clarion bench segments` (contacts with ten events each,
//! made by SQL from the contact's number; the database is kept per size). On it: a campaign
//! whose run went to every contact (one in ten held out, the unsubscribed suppressed, the rest
//! sent over the first hour), its roll-ups built the way launch builds them (set-based), the
//! activity roll-up of churn and retention built from the events, then p50/p95 of
//! the campaign report, segment conversion over 30 days, two-segment comparison, 12 months
//! of churn, the 12x12 cohort table and CAC by channel over 30 days (with a spend of the
//! campaign and one of the email channel). The goal roll-up segment conversion reads is
//! filled from the generated events the way a repair fills it (they bypassed ingestion).

use std::time::{Duration, Instant};

use clarion_kpi::{
    cac::{self, CacQuery, Grouping},
    campaign,
    churn::{self, Period},
    goal_days, rollup,
    segment::{self, Basis, ConversionQuery},
};
use clarion_model::{CampaignId, DEFAULT_WORKSPACE, Timestamp};
use clarion_server::Settings;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::bench_segments::{DAY, NOW, prepare};

/// What to measure.
pub struct KpiBench {
    pub contacts: u64,
    pub iterations: usize,
    pub postgres_url: String,
    pub fresh: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50 and p95 of `iterations` runs of `f`, in milliseconds.
async fn percentiles<F, Fut>(iterations: usize, mut f: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        f().await?;
        times.push(ms(started.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    Ok((at(0.5), at(0.95)))
}

async fn raw(db: &DatabaseConnection, sql: &str) -> anyhow::Result<()> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await?;
    Ok(())
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row: {sql}"))?;
    Ok(row.try_get("", "v")?)
}

/// The campaign, its run and delivery rows, and two segments, unless already there.
async fn campaign_run(db: &DatabaseConnection) -> anyhow::Result<(i64, i64, bool)> {
    let started = NOW - 30 * DAY;
    let existing = scalar(
        db,
        "SELECT COALESCE(MAX(id), 0) AS v FROM campaigns WHERE name = 'bench-kpi'",
    )
    .await?;
    if existing > 0 {
        let run = scalar(
            db,
            &format!("SELECT MAX(id) AS v FROM campaign_runs WHERE campaign_id = {existing}"),
        )
        .await?;
        let built = scalar(
            db,
            &format!("SELECT COUNT(*) AS v FROM kpi_run_counts WHERE run_id = {run}"),
        )
        .await?
            > 0;
        return Ok((existing, run, built));
    }
    for (slug, condition) in [
        ("bench-all", "TRUE"),
        ("bench-pro", "c.attributes ->> 'plan' = 'pro'"),
    ] {
        db.execute_unprepared(&format!(
            "INSERT INTO segments (workspace_id, slug, name, description, category, kind, rule, created_at, updated_at) \
             VALUES (1, '{slug}', '{slug}', '', 'value', 'static', NULL, 0, 0)"
        ))
        .await?;
        db.execute_unprepared(&format!(
            "INSERT INTO segment_memberships (segment_id, contact_id, entered_at, exited_at) \
             SELECT s.id, c.id, {}, NULL FROM segments s, contacts c WHERE s.slug = '{slug}' AND {condition}",
            NOW - 400 * DAY
        ))
        .await?;
    }
    let segment = scalar(db, "SELECT id AS v FROM segments WHERE slug = 'bench-all'").await?;
    let campaign = scalar(db, &format!(
        "INSERT INTO campaigns (workspace_id, name, status, goal_event, goal_window_hours, holdout_percent, channels, created_at, updated_at) \
         VALUES (1, 'bench-kpi', 'sent', 'purchase', 720, 10, 'email', {started}, {started}) RETURNING id AS v"
    ))
    .await?;
    let mut variants = Vec::new();
    for name in ["A", "B"] {
        variants.push(scalar(db, &format!(
            "INSERT INTO campaign_variants (campaign_id, position, name, weight, version, created_at, updated_at) \
             VALUES ({campaign}, 0, '{name}', 1, 1, 0, 0) RETURNING id AS v"
        ))
        .await?);
    }
    let run = scalar(db, &format!(
        "INSERT INTO campaign_runs (workspace_id, campaign_id, status, audience, queued, suppressed, holdout, started_at, updated_at) \
         VALUES (1, {campaign}, 'completed', 0, 0, 0, 0, {started}, {started}) RETURNING id AS v"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "INSERT INTO deliveries (workspace_id, run_id, campaign_id, contact_id, channel, variant_id, segment_id, status, reason, attempts, created_at, updated_at, sent_at) \
         SELECT 1, {run}, {campaign}, c.id, 'email', CASE WHEN c.id % 2 = 0 THEN {a} ELSE {b} END, {segment}, \
                CASE WHEN c.id % 10 = 0 THEN 'holdout' WHEN c.email_status <> 'subscribed' THEN 'suppressed' ELSE 'sent' END, \
                CASE WHEN c.id % 10 <> 0 AND c.email_status <> 'subscribed' THEN 'unsubscribed' END, \
                CASE WHEN c.id % 10 = 0 OR c.email_status <> 'subscribed' THEN 0 ELSE 1 END, {started}, {started}, \
                CASE WHEN c.id % 10 <> 0 AND c.email_status = 'subscribed' THEN {started} + (c.id % 3600) * 1000 END \
         FROM contacts c",
        a = variants[0],
        b = variants[1],
    ))
    .await?;
    db.execute_unprepared("ANALYZE").await?;
    Ok((campaign, run, false))
}

/// A spend of the bench campaign over the 60 days before now and one of the email channel
/// over the last 30, unless already there.
async fn spends(db: &DatabaseConnection, campaign: i64) -> anyhow::Result<()> {
    if scalar(db, "SELECT COUNT(*) AS v FROM marketing_spend").await? > 0 {
        return Ok(());
    }
    db.execute_unprepared(&format!(
        "INSERT INTO marketing_spend (workspace_id, campaign_id, channel, amount_minor, currency, period_from, period_to, label, created_at, updated_at) \
         VALUES (1, {campaign}, NULL, 500000, 'GBP', {c}, {NOW}, 'bench', 0, 0), \
                (1, NULL, 'email', 120000, 'GBP', {e}, {NOW}, 'bench', 0, 0)",
        c = NOW - 60 * DAY,
        e = NOW - 30 * DAY,
    ))
    .await?;
    Ok(())
}

pub async fn run(bench: KpiBench, settings: &Settings) -> anyhow::Result<()> {
    let n = bench.contacts;
    println!("kpi reports on PostgreSQL, {n} contacts, {} events", n * 10);
    let name = format!("clarion_bench_segments_{n}");
    let db = prepare(&bench.postgres_url, bench.fresh, settings, &name, n, 10).await?;
    let (campaign, run, built) = campaign_run(&db).await?;
    if !built {
        let started = Instant::now();
        rollup::build_run(&db, run).await?;
        println!(
            "  roll-ups of the run built (as launch builds them, set-based): {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // This server may run without autovacuum (and so without autoanalyze).
        db.execute_unprepared("VACUUM ANALYZE kpi_run_facts, kpi_run_counts")
            .await?;
    }
    // The generated events bypassed ingestion, so the activity roll-up is filled the way a
    // change of the churn settings fills it.
    if scalar(&db, "SELECT COUNT(*) AS v FROM kpi_spells").await? == 0 {
        let started = Instant::now();
        churn::rebuild_spells(&db, DEFAULT_WORKSPACE).await?;
        println!(
            "  activity roll-up built from the raw events (as a settings change rebuilds it): {:.1} s",
            started.elapsed().as_secs_f64()
        );
        db.execute_unprepared("ANALYZE kpi_spells").await?;
    }
    if scalar(&db, "SELECT COUNT(*) AS v FROM kpi_goal_days").await? == 0 {
        let started = Instant::now();
        goal_days::rebuild(&db, DEFAULT_WORKSPACE).await?;
        println!(
            "  goal roll-up built from the raw events (as a repair rebuilds it): {:.1} s",
            started.elapsed().as_secs_f64()
        );
        db.execute_unprepared("VACUUM ANALYZE kpi_goal_days")
            .await?;
    }
    spends(&db, campaign).await?;
    let k = bench.iterations;
    let line = |what: &str, ours: (f64, f64), baseline: Option<(f64, f64)>| match baseline {
        Some(b) => println!(
            "  {what}: p50 {:.1} ms, p95 {:.1} ms | raw SQL p50 {:.1} ms, p95 {:.1} ms",
            ours.0, ours.1, b.0, b.1
        ),
        None => println!("  {what}: p50 {:.1} ms, p95 {:.1} ms", ours.0, ours.1),
    };

    let ours = percentiles(k, || async {
        campaign::report(&db, DEFAULT_WORKSPACE, CampaignId(campaign), None, None).await?;
        Ok(())
    })
    .await?;
    let window = 720 * 3_600_000i64;
    let raw_report = format!(
        "SELECT d.variant_id, d.status, d.reason, COUNT(*) AS n, \
                COUNT(DISTINCT CASE WHEN d.status = 'sent' AND EXISTS (SELECT 1 FROM events e WHERE e.contact_id = d.contact_id \
                      AND e.kind = 'purchase' AND e.occurred_at >= d.sent_at AND e.occurred_at < d.sent_at + {window}) THEN d.contact_id END) AS converters, \
                COUNT(DISTINCT CASE WHEN EXISTS (SELECT 1 FROM events e WHERE e.contact_id = d.contact_id AND e.kind = 'purchase' \
                      AND e.occurred_at >= r.started_at AND e.occurred_at < r.started_at + {window}) THEN d.contact_id END) AS itt_converters \
         FROM deliveries d JOIN campaign_runs r ON r.id = d.run_id WHERE d.run_id = {run} GROUP BY 1, 2, 3"
    );
    let baseline = percentiles(k.min(5), || raw(&db, &raw_report)).await?;
    line(
        &format!("campaign report of a {n}-recipient run"),
        ours,
        Some(baseline),
    );

    let period = ConversionQuery {
        event: "purchase".into(),
        from: Timestamp::from_millis(NOW - 30 * DAY),
        to: Timestamp::from_millis(NOW),
        basis: Basis::Current,
    };
    let ours = percentiles(k.min(10), || async {
        segment::conversion(&db, DEFAULT_WORKSPACE, "bench-pro", &period, None).await?;
        Ok(())
    })
    .await?;
    let raw_conversion = format!(
        "SELECT COUNT(DISTINCT m.contact_id) AS members, COUNT(DISTINCT e.contact_id) AS converters, SUM(e.amount) AS revenue \
         FROM segment_memberships m JOIN segments s ON s.id = m.segment_id AND s.slug = 'bench-pro' \
         LEFT JOIN events e ON e.contact_id = m.contact_id AND e.kind = 'purchase' AND e.occurred_at >= {} AND e.occurred_at < {NOW} \
         WHERE m.exited_at IS NULL",
        NOW - 30 * DAY
    );
    let baseline = percentiles(k.min(10), || raw(&db, &raw_conversion)).await?;
    line(
        "segment conversion over 30 days (plan = pro)",
        ours,
        Some(baseline),
    );

    let ours = percentiles(k.min(5), || async {
        segment::compare(&db, DEFAULT_WORKSPACE, "bench-all", "bench-pro", &period).await?;
        Ok(())
    })
    .await?;
    let raw_all = raw_conversion.replace("'bench-pro'", "'bench-all'");
    let baseline = percentiles(k.min(5), || async {
        raw(&db, &raw_all).await?;
        raw(&db, &raw_conversion).await
    })
    .await?;
    line("two-segment comparison over 30 days", ours, Some(baseline));
    // Straightforward SQL over the raw events for the activity reports, doing less than
    // they do: the churn baseline counts only the contacts active at each month start (a
    // purchase in the 90 days before), the cohort baseline approximates months as 30 days.
    let starts: Vec<String> = (0..12)
        .map(|i| format!("({})", NOW - (365 - 30 * i) * DAY))
        .collect();
    let raw_churn = format!(
        "SELECT p.s, COUNT(DISTINCT e.contact_id) AS active \
         FROM (VALUES {}) AS p(s) JOIN events e ON e.kind = 'purchase' AND e.occurred_at <= p.s AND e.occurred_at > p.s - {q} \
         GROUP BY p.s",
        starts.join(", "),
        q = 90 * DAY,
    );
    let raw_retention = format!(
        "WITH f AS (SELECT contact_id, MIN(occurred_at) AS first FROM events WHERE kind = 'purchase' GROUP BY contact_id) \
         SELECT (f.first - {b}) / {m} AS cohort, (e.occurred_at - {b}) / {m} AS month, COUNT(DISTINCT e.contact_id) AS n \
         FROM f JOIN events e ON e.contact_id = f.contact_id AND e.kind = 'purchase' \
         WHERE f.first >= {b} GROUP BY 1, 2",
        b = NOW - 365 * DAY,
        m = 30 * DAY,
    );

    let ours = percentiles(k.min(3), || async {
        churn::churn(
            &db,
            DEFAULT_WORKSPACE,
            None,
            Period::Month,
            Timestamp::from_millis(NOW - 365 * DAY),
            Timestamp::from_millis(NOW),
        )
        .await?;
        Ok(())
    })
    .await?;
    let baseline = percentiles(k.min(3), || raw(&db, &raw_churn)).await?;
    line(
        "churn, 12 months (inactivity 90 days)",
        ours,
        Some(baseline),
    );
    let ours = percentiles(k.min(3), || async {
        churn::retention(
            &db,
            DEFAULT_WORKSPACE,
            None,
            Timestamp::from_millis(NOW - 365 * DAY),
            12,
        )
        .await?;
        Ok(())
    })
    .await?;
    let baseline = percentiles(k.min(3), || raw(&db, &raw_retention)).await?;
    line("retention, 12x12 cohort table", ours, Some(baseline));

    let cac_query = CacQuery {
        from: Timestamp::from_millis(NOW - 30 * DAY),
        to: Timestamp::from_millis(NOW),
        by: Grouping::Channel,
        currency: Some("GBP".into()),
        event: "purchase".into(),
    };
    let ours = percentiles(k.min(5), || async {
        cac::report(&db, DEFAULT_WORKSPACE, &cac_query).await?;
        Ok(())
    })
    .await?;
    // New customers (first purchase ever in the period) attributed to a sent delivery of a
    // purchase-goal campaign within its window, per channel, from every contact's purchases.
    let raw_cac = format!(
        "WITH firsts AS (SELECT contact_id, MIN(occurred_at) AS first_at FROM events WHERE kind = 'purchase' GROUP BY contact_id) \
         SELECT d.channel, COUNT(DISTINCT f.contact_id) AS n, \
                (SELECT SUM(amount_minor) FROM marketing_spend WHERE period_from < {NOW} AND period_to > {from}) AS spend \
         FROM firsts f JOIN deliveries d ON d.contact_id = f.contact_id AND d.status = 'sent' \
         JOIN campaigns c ON c.id = d.campaign_id AND c.goal_event = 'purchase' \
         WHERE f.first_at >= {from} AND f.first_at < {NOW} AND d.sent_at <= f.first_at \
               AND f.first_at < d.sent_at + c.goal_window_hours * 3600000 \
         GROUP BY d.channel",
        from = NOW - 30 * DAY,
    );
    let baseline = percentiles(k.min(5), || raw(&db, &raw_cac)).await?;
    line("CAC by channel over 30 days", ours, Some(baseline));
    db.close().await.ok();
    Ok(())
}
