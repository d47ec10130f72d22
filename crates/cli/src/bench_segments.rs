//! `clarion bench segments`: segment computation on a generated population.
//!
//! The generator is plain SQL over a number series, so the same `--contacts` always gives the
//! same contacts and events (no randomness), and 10,000,000 events are written in minutes
//! without leaving the database. Each size is measured on its own database, which is kept
//! (named after the size) so later runs skip the generation; `--fresh` makes it anew.
//!
//! Figures, each measured in the same run as its baseline:
//! - RFM and CLV for every contact recomputed, the first time and an hour later when 1 % of
//!   the contacts bought again, each beside the same ranks written by hand over the raw events
//!   (and checked against them);
//! - a segment combining an attribute filter, an event count in a 90-day window and an RFM
//!   trait, computed and materialized, beside the same query written by hand;
//! - a size preview of an unsaved rule;
//! - the latency from storing one event to its contact's memberships being current, p50 and
//!   p99 over `--events` single events;
//! - the latency from storing one purchase through ingestion to its contact's purchase
//!   traits, CLV predictions and memberships being current (the batch's answer), checked by
//!   the contact's revenue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clarion_campaign::traits::TraitsListener;
use clarion_contacts::{Ingest, events};
use clarion_kpi::{clv::ClvSettings, predictions};
use clarion_model::{DEFAULT_WORKSPACE, EventInput, Timestamp};
use clarion_segment::{
    PreviewOptions, membership, parse_text,
    store::{self, Category, NewSegment},
    sweep::Memberships,
    traits::{self, TraitSettings},
    validate, validate_segment,
};
use clarion_server::{Settings, db};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend};
use secrecy::SecretString;

/// What to measure.
pub struct SegmentBench {
    pub contacts: Vec<u64>,
    pub events_per_contact: u64,
    pub latency_events: usize,
    pub postgres_url: String,
    pub fresh: bool,
}

/// The instant the generated data is relative to: 2026-06-30T00:00:00Z.
pub(crate) const NOW: i64 = 1_782_777_600_000;
pub(crate) const DAY: i64 = 86_400_000;

/// The benchmark's segment rule and the same selection written by hand.
const RULE: &str = "country in (\"DE\", \"FR\", \"NL\") and purchase.count(90d) >= 2 and trait rfm_segment in (\"champions\", \"loyal\", \"potential_loyalists\", \"new\", \"promising\")";

fn hand_written(now: i64) -> String {
    format!(
        "INSERT INTO bench_hand (contact_id, entered_at) \
         SELECT c.id, {now} FROM contacts c JOIN contact_traits t ON t.contact_id = c.id \
         WHERE c.workspace_id = 1 AND c.country IN ('DE', 'FR', 'NL') \
           AND t.rfm_segment IN ('champions', 'loyal', 'potential_loyalists', 'new', 'promising') \
           AND (SELECT COUNT(*) FROM events e WHERE e.contact_id = c.id AND e.kind = 'purchase' \
                AND e.occurred_at >= {since} AND e.occurred_at <= {now}) >= 2",
        since = now - 90 * DAY
    )
}

pub async fn run(bench: SegmentBench, settings: &Settings) -> anyhow::Result<()> {
    println!(
        "bench segments: PostgreSQL, {} events per contact, {} cores",
        bench.events_per_contact,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    for &contacts in &bench.contacts {
        let name = format!(
            "clarion_bench_segments_{contacts}_{}",
            bench.events_per_contact
        );
        let db = prepare(
            &bench.postgres_url,
            bench.fresh,
            settings,
            &name,
            contacts,
            bench.events_per_contact,
        )
        .await?;
        measure(&db, &bench, contacts).await?;
        db.close().await.ok();
    }
    Ok(())
}

/// Opens the kept benchmark database `name` on `postgres_url`, generating `contacts` contacts
/// with `per_contact` events each when it is missing, incomplete or `fresh` is asked for.
pub(crate) async fn prepare(
    postgres_url: &str,
    fresh: bool,
    settings: &Settings,
    name: &str,
    contacts: u64,
    per_contact: u64,
) -> anyhow::Result<DatabaseConnection> {
    let admin = Database::connect(postgres_url)
        .await
        .with_context(|| format!("cannot connect to {postgres_url}"))?;
    let exists = admin
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT 1 AS one FROM pg_database WHERE datname = '{name}'"),
        ))
        .await?
        .is_some();
    // A database from an interrupted generation is made anew. One that cannot be checked is
    // left alone: dropping a population that took minutes to generate over a failed count
    // is not the bench's call.
    let complete = exists && {
        let url = clarion_server::db::postgres_url_for_database(postgres_url, name);
        let db = Database::connect(url.as_str())
            .await
            .with_context(|| format!("cannot connect to the existing database {name}"))?;
        let counted = db
            .query_one_raw(sea_orm::Statement::from_string(
                DbBackend::Postgres,
                "SELECT (SELECT COUNT(*) FROM contacts) AS c, (SELECT COUNT(*) FROM events) AS e"
                    .to_string(),
            ))
            .await;
        db.close().await.ok();
        // No contacts table yet: the generation stopped before migrating.
        let n = match counted {
            Ok(row) => row.and_then(|row| {
                Some((
                    row.try_get::<i64>("", "c").ok()?,
                    row.try_get::<i64>("", "e").ok()?,
                ))
            }),
            Err(error) if error.to_string().contains("does not exist") => None,
            Err(error) => {
                bail!("cannot count the rows of {name} ({error}); pass --fresh to generate it anew")
            }
        };
        matches!(n, Some((c, e)) if c as u64 == contacts && (e > 0 || per_contact == 0))
    };
    if exists && (fresh || !complete) {
        admin
            .execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await?;
    }
    let generate = !exists || fresh || !complete;
    if generate {
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
    }
    admin.close().await.ok();
    let url = clarion_server::db::postgres_url_for_database(postgres_url, name);
    let mut database = settings.database.clone();
    database.url = SecretString::from(url);
    database.max_connections = 4;
    let db = db::connect(&database).await?;
    db::migrate(&db).await?;
    if generate {
        let started = Instant::now();
        generate_data(&db, contacts, per_contact).await?;
        println!(
            "  generated {contacts} contacts and {} events in {:.1} s (database {name}, kept for later runs)",
            contacts * per_contact,
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("  reusing database {name} (pass --fresh to generate it anew)");
    }
    // The generated contacts' custom attributes, as ingestion would have recorded them.
    db.execute_unprepared(
        "INSERT INTO attribute_definitions (workspace_id, name, attr_type, created_at) \
         VALUES (1, 'age', 'number', 0), (1, 'plan', 'string', 0) ON CONFLICT DO NOTHING",
    )
    .await?;
    Ok(db)
}

/// Contacts with countries, ages and plans, and for each `per_contact` events over the last
/// year: views, carts, searches, email clicks and purchases with amounts, categories and
/// invoice numbers. One contact in five never buys. Everything follows from the contact's
/// number by fixed arithmetic.
async fn generate_data(
    db: &DatabaseConnection,
    contacts: u64,
    per_contact: u64,
) -> anyhow::Result<()> {
    db.execute_unprepared(&format!(
        "INSERT INTO contacts (workspace_id, external_id, email, email_domain, country, city, time_zone, \
            attributes, email_status, webhook_status, created_at, updated_at) \
         SELECT 1, 'c' || n, 'c' || n || '@example.com', 'example.com', \
            (ARRAY['DE','FR','GB','US','ES','IT','NL','AT','CH','SE'])[1 + (n * 7) % 10], \
            (ARRAY['Berlin','Paris','London','Austin','Madrid','Rome','Utrecht','Graz'])[1 + (n * 3) % 8], \
            'Europe/Berlin', \
            jsonb_build_object('age', 18 + (n * 31) % 60, 'plan', (ARRAY['free','pro','team'])[1 + n % 3]), \
            CASE WHEN n % 17 = 0 THEN 'unsubscribed' ELSE 'subscribed' END, 'subscribed', \
            {now} - (n % 1000) * {DAY}, {now} - (n % 1000) * {DAY} \
         FROM generate_series(1::bigint, {contacts}) AS n",
        now = NOW
    ))
    .await?;
    if per_contact == 0 {
        db.execute_unprepared("ANALYZE").await?;
        return Ok(());
    }
    db.execute_unprepared(&format!(
        "INSERT INTO events (workspace_id, contact_id, kind, occurred_at, amount, currency, properties, received_at) \
         SELECT 1, c.id, k.kind, {now} - ((c.id * 7919 + j * 104729) % (365 * 86400)) * 1000, \
            CASE WHEN k.kind = 'purchase' THEN 5 + ((c.id * 37 + j * 11) % 200) END, \
            CASE WHEN k.kind = 'purchase' THEN 'GBP' END, \
            jsonb_build_object('category', (ARRAY['kitchen','garden','toys','books','fashion','sports','pets','beauty'])[1 + (c.id * 5 + j * (1 + c.id % 3)) % 8], \
                               'invoice', 'inv-' || c.id || '-' || (j / 2)), \
            {now} \
         FROM contacts c CROSS JOIN generate_series(1::bigint, {per_contact}) AS j \
         CROSS JOIN LATERAL (SELECT CASE \
            WHEN c.id % 5 = 0 AND (c.id * 3 + j) % 10 IN (4, 7) THEN 'view' \
            ELSE (ARRAY['view','view','cart','search','purchase','view','email_click','purchase','view','cart'])[1 + (c.id * 3 + j) % 10] END AS kind) AS k \
         WHERE c.workspace_id = 1",
        now = NOW
    ))
    .await?;
    db.execute_unprepared("ANALYZE").await?;
    Ok(())
}

/// The same RFM scores written by hand: every buyer's aggregates over the raw events as of
/// `now`, ranked three times, into an unindexed table; best of 3, printed beside Clarion's
/// figure, and every buyer's orders, revenue, last purchase and three scores checked against
/// what Clarion stored.
async fn rfm_baseline(
    db: &DatabaseConnection,
    contacts: u64,
    what: &str,
    clarion: Duration,
    now: i64,
) -> anyhow::Result<()> {
    db.execute_unprepared("DROP TABLE IF EXISTS bench_rfm_hand")
        .await?;
    db.execute_unprepared(
        "CREATE TABLE bench_rfm_hand (contact_id BIGINT NOT NULL, orders BIGINT NOT NULL, \
         cents BIGINT NOT NULL, last_at BIGINT NOT NULL, r BIGINT NOT NULL, f BIGINT NOT NULL, m BIGINT NOT NULL)",
    )
    .await?;
    let hand = format!(
        "INSERT INTO bench_rfm_hand (contact_id, orders, cents, last_at, r, f, m) \
         SELECT contact_id, orders, cents, last_at, \
            1 + 5 * (RANK() OVER (ORDER BY last_at) - 1) / COUNT(*) OVER (), \
            1 + 5 * (RANK() OVER (ORDER BY orders) - 1) / COUNT(*) OVER (), \
            1 + 5 * (RANK() OVER (ORDER BY cents) - 1) / COUNT(*) OVER () \
         FROM (SELECT contact_id, \
                 COUNT(DISTINCT properties ->> 'invoice') FILTER (WHERE kind = 'purchase') \
                   + COUNT(*) FILTER (WHERE kind = 'purchase' AND properties ->> 'invoice' IS NULL) AS orders, \
                 ROUND(SUM(CASE WHEN kind = 'purchase' THEN COALESCE(amount, 0) \
                                ELSE -ABS(COALESCE(amount, 0)) END) * 100) AS cents, \
                 MAX(occurred_at) FILTER (WHERE kind = 'purchase') AS last_at \
               FROM events WHERE workspace_id = 1 AND kind IN ('purchase', 'refund') \
                 AND occurred_at <= {now} GROUP BY contact_id) AS buyers \
         WHERE last_at IS NOT NULL"
    );
    let mut times = Vec::new();
    for _ in 0..3 {
        db.execute_unprepared("TRUNCATE bench_rfm_hand").await?;
        let started = Instant::now();
        db.execute_unprepared(&hand).await?;
        times.push(started.elapsed());
    }
    let best = times.iter().min().copied().unwrap_or_default();
    let buyers = count(db, "SELECT COUNT(*) AS n FROM bench_rfm_hand").await?;
    let stored = count(
        db,
        "SELECT COUNT(*) AS n FROM contact_traits WHERE workspace_id = 1",
    )
    .await?;
    let differ = count(
        db,
        "SELECT COUNT(*) AS n FROM bench_rfm_hand h LEFT JOIN contact_traits t ON t.contact_id = h.contact_id \
         WHERE t.contact_id IS NULL OR t.orders <> h.orders OR CAST(ROUND(t.revenue * 100) AS BIGINT) <> h.cents \
            OR t.last_purchase_at <> h.last_at OR t.rfm_recency <> h.r OR t.rfm_frequency <> h.f \
            OR t.rfm_monetary <> h.m",
    )
    .await?;
    println!(
        "  [{contacts}] RFM + CLV recomputed, {what}: {:.0} ms; the same ranks written by hand over the raw events: {:.0} ms (best of 3); ratio {:.2}x",
        ms(clarion),
        ms(best),
        clarion.as_secs_f64() / best.as_secs_f64().max(1e-9)
    );
    anyhow::ensure!(
        buyers == stored && differ == 0,
        "the hand-written ranks found {buyers} buyers, Clarion stored {stored}; {differ} differ"
    );
    Ok(())
}

/// The number a query `SELECT ... AS n` answers (0 without a row).
async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let statement = sea_orm::Statement::from_string(DbBackend::Postgres, sql.to_string());
    let row = db.query_one_raw(statement).await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn measure(
    db: &DatabaseConnection,
    bench: &SegmentBench,
    contacts: u64,
) -> anyhow::Result<()> {
    let workspace = DEFAULT_WORKSPACE;
    let now = Timestamp::from_millis(NOW);

    // Earlier runs' rewrites leave dead rows behind (autovacuum may be off): start clean so
    // that runs compare.
    db.execute_unprepared(
        "VACUUM ANALYZE contact_traits, contact_interests, contact_predictions, rfm_bounds",
    )
    .await?;
    // The first computation groups every purchase event (without a previous computation of
    // the same settings, that is what it does).
    db.execute_unprepared("DELETE FROM trait_computations")
        .await?;
    let started = Instant::now();
    let summary = traits::recompute(db, workspace, now, &TraitSettings::default()).await?;
    let rfm = started.elapsed();
    println!(
        "  [{contacts}] RFM + CLV + interests recomputed for every contact: {:.0} ms ({summary:?})",
        ms(rfm)
    );
    rfm_baseline(
        db,
        contacts,
        "first computation",
        summary.purchases_elapsed,
        NOW,
    )
    .await?;
    // The next hour's computation, after 1 % of the contacts bought again (stored without
    // ingestion's refresh, so the computation has to catch them up), ranks the stored rows.
    let bought = NOW + 30 * 60_000;
    db.execute_unprepared(&format!(
        "DELETE FROM events WHERE workspace_id = 1 AND occurred_at = {bought}"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "INSERT INTO events (workspace_id, contact_id, kind, occurred_at, amount, currency, properties, received_at) \
         SELECT 1, c.id, 'purchase', {bought}, 25, 'GBP', jsonb_build_object('invoice', 'later-' || c.id), {bought} \
         FROM contacts c WHERE c.workspace_id = 1 AND c.id % 100 = 0"
    ))
    .await?;
    let later = NOW + 60 * 60_000;
    let summary = traits::recompute(
        db,
        workspace,
        Timestamp::from_millis(later),
        &TraitSettings::default(),
    )
    .await?;
    rfm_baseline(
        db,
        contacts,
        "an hour later (1 % of the contacts bought)",
        summary.purchases_elapsed,
        later,
    )
    .await?;
    println!(
        "  [{contacts}] interest profiles an hour later: {:.0} ms ({} contacts with a profile, {} scores rewritten; {})",
        ms(summary.interests_elapsed),
        summary.interest_contacts,
        summary.interest_scores,
        if summary.full {
            "from every event"
        } else {
            "the others kept"
        }
    );
    let started = Instant::now();
    let fitted = predictions::recompute(
        db,
        workspace,
        now,
        &TraitSettings::default().purchases.kind,
        &ClvSettings::default(),
    )
    .await?;
    println!(
        "  [{contacts}] CLV predictions (BG/NBD + Gamma-Gamma fitted on {} buyers, every buyer predicted): {:.0} ms",
        fitted.customers,
        ms(started.elapsed())
    );
    db.execute_unprepared("ANALYZE contact_traits").await?;

    // The segment, materialized by Clarion, beside the same selection written by hand.
    db.execute_unprepared("DELETE FROM segment_memberships")
        .await?;
    db.execute_unprepared("DELETE FROM segments").await?;
    db.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS bench_hand (contact_id BIGINT NOT NULL, entered_at BIGINT NOT NULL)",
    )
    .await?;
    let rule = parse_text(RULE)?;
    let schema = store::schema(db, workspace).await?;
    let valid = validate_segment("bench", &rule, &schema)
        .map_err(|e| anyhow::anyhow!("{}", clarion_segment::SegmentError::Invalid(e)))?;
    let segment = store::create(
        db,
        workspace,
        NewSegment {
            slug: "bench".into(),
            name: "Bench".into(),
            description: String::new(),
            category: Category::Behavioural,
            rule: Some(rule.clone()),
        },
        now,
    )
    .await?;
    let mut clarion = Vec::new();
    let mut hand = Vec::new();
    let mut size = 0;
    for _ in 0..3 {
        db.execute_unprepared("TRUNCATE bench_hand").await?;
        let started = Instant::now();
        db.execute_unprepared(&hand_written(NOW)).await?;
        hand.push(started.elapsed());

        // Emptied as the hand-written table is: a DELETE would leave the last round's rows
        // dead in the table and its indexes for this round to step over.
        db.execute_unprepared("TRUNCATE segment_memberships")
            .await?;
        let started = Instant::now();
        let changes = membership::materialize(db, &segment, &valid, now).await?;
        clarion.push(started.elapsed());
        size = changes.entered;
    }
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let hand_rows = count(db, "SELECT COUNT(*) AS n FROM bench_hand").await?;
    println!(
        "  [{contacts}] segment (attribute + purchase count in 90 days + RFM trait), {size} members: computed and materialized in {:.0} ms; hand-written SQL {:.0} ms ({hand_rows} rows); ratio {:.2}x (best of 3)",
        ms(best(&clarion)),
        ms(best(&hand)),
        best(&clarion).as_secs_f64() / best(&hand).as_secs_f64().max(1e-9)
    );
    anyhow::ensure!(
        hand_rows == size as i64,
        "the hand-written query found {hand_rows} contacts, Clarion {size}"
    );

    // A size preview of an unsaved rule.
    let preview_rule = parse_text("age between (30, 45) and cart(30d) and not purchase(30d)")?;
    let schema = store::schema(db, workspace).await?;
    let valid_preview = validate(&preview_rule, &schema)
        .map_err(|e| anyhow::anyhow!("{}", clarion_segment::SegmentError::Invalid(e)))?;
    let mut previews = Vec::new();
    let mut previewed = 0;
    for _ in 0..3 {
        let started = Instant::now();
        previewed = clarion_segment::count(
            db,
            workspace,
            &valid_preview,
            now,
            PreviewOptions::default(),
        )
        .await?;
        previews.push(started.elapsed());
    }
    println!(
        "  [{contacts}] size preview of an unsaved rule (age between 30 and 45, carted in 30 days, no purchase in 30 days): {previewed} contacts in {:.0} ms (best of 3)",
        ms(best(&previews))
    );

    // Two more event segments, so that each event re-evaluates three.
    for (slug, text) in [
        ("browsers", "view.count(7d) >= 2"),
        ("lapsed", "purchase() and not purchase(180d)"),
    ] {
        let rule = parse_text(text)?;
        let valid = validate_segment(slug, &rule, &store::schema(db, workspace).await?)
            .map_err(|e| anyhow::anyhow!("{}", clarion_segment::SegmentError::Invalid(e)))?;
        let segment = store::create(
            db,
            workspace,
            NewSegment {
                slug: slug.into(),
                name: slug.into(),
                description: String::new(),
                category: Category::Behavioural,
                rule: Some(rule),
            },
            now,
        )
        .await?;
        membership::materialize(db, &segment, &valid, now).await?;
    }
    let mut latencies = Vec::with_capacity(bench.latency_events);
    let options = events::IngestOptions {
        create_unknown_contacts: false,
        max_future_millis: i64::MAX / 4,
        atomic: false,
    };
    for i in 0..bench.latency_events {
        let contact = 1 + (i as u64 * 7_919) % contacts;
        let input: EventInput = serde_json::from_value(serde_json::json!({
            "external_id": format!("c{contact}"),
            "kind": "purchase",
            "occurred_at": Timestamp::from_millis(NOW - (i as i64 % 80) * DAY).to_rfc3339(),
            "amount": 25.0,
        }))?;
        let started = Instant::now();
        let report = events::insert_batch(db, workspace, vec![(0, input)], options).await?;
        anyhow::ensure!(
            report.accepted == 1,
            "the benchmark event was not stored: {report:?}"
        );
        membership::refresh_contacts(db, workspace, &report.contacts, now, true).await?;
        latencies.push(started.elapsed());
    }
    let (p50, p99, max) = quantiles(&mut latencies);
    println!(
        "  [{contacts}] event stored -> memberships of its contact current (3 event segments): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms over {} events",
        latencies.len()
    );

    // A purchase through ingestion as the server wires it: purchase traits (and CLV
    // predictions) first, then memberships, all before the batch answers.
    let ingest = Ingest::new(db.clone())
        .with_listener(Arc::new(TraitsListener::new(
            db.clone(),
            TraitSettings::default(),
        )))
        .with_listener(Arc::new(Memberships::new(db.clone())));
    let mut latencies = Vec::with_capacity(bench.latency_events);
    for i in 0..bench.latency_events {
        let contact = 1 + (i as u64 * 6_007) % contacts;
        let input: EventInput = serde_json::from_value(serde_json::json!({
            "external_id": format!("c{contact}"),
            "kind": "purchase",
            "occurred_at": Timestamp::now().to_rfc3339(),
            "amount": 40.0,
            "properties": {"invoice": format!("bench-{i}")},
        }))?;
        let started = Instant::now();
        let report = ingest.events(workspace, vec![(0, input)], options).await?;
        latencies.push(started.elapsed());
        anyhow::ensure!(
            report.accepted == 1,
            "the benchmark purchase was not stored: {report:?}"
        );
        // The stored revenue against the same sum written by hand over the raw events.
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT t.revenue, (SELECT CAST(SUM(CASE WHEN e.kind = 'purchase' THEN COALESCE(e.amount, 0) \
                     ELSE -ABS(COALESCE(e.amount, 0)) END) AS DOUBLE PRECISION) FROM events e WHERE e.contact_id = c.id \
                     AND e.kind IN ('purchase', 'refund')) AS want \
                     FROM contacts c LEFT JOIN contact_traits t ON t.contact_id = c.id WHERE c.workspace_id = 1 AND c.external_id = 'c{contact}'"
                ),
            ))
            .await?
            .context("the benchmark contact is gone")?;
        let got: Option<f64> = row.try_get("", "revenue")?;
        let want: f64 = row.try_get("", "want")?;
        anyhow::ensure!(
            got.is_some_and(|got| (got - want).abs() < 0.005),
            "c{contact}: stored revenue {got:?}, its events say {want}"
        );
    }
    let (p50, p99, max) = quantiles(&mut latencies);
    println!(
        "  [{contacts}] purchase stored -> its contact's revenue, RFM, CLV and predictions, then memberships, current when the batch answers: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms over {} purchases (each checked: stored revenue = the sum over its events)",
        latencies.len()
    );
    Ok(())
}

/// p50, p99 and max of `latencies` in milliseconds.
fn quantiles(latencies: &mut [Duration]) -> (f64, f64, f64) {
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    (ms(pick(0.5)), ms(pick(0.99)), ms(pick(1.0)))
}
