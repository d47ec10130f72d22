//! `clarion bench waves`: a recurring "09:00 local" campaign's firing to a generated
//! population (the contacts of `bench launch`, kept between runs) spread over 38 time zones,
//! on PostgreSQL.
//!
//! 1. plan: the waves of the next firing, counted in the database (`GROUP BY` time zone over
//!    the audience), as `GET /campaigns/{id}/schedule/waves` shows them before launch;
//! 2. fire: the scheduler fires the slot on a test clock; the launch writes every delivery
//!    row with its wave's due time and records the run's waves (a second `GROUP BY`, over
//!    the run's rows), enqueueing nothing because no zone has reached 09:00 yet.
//!
//! Both are timed; this process's peak resident memory (VmHWM) is read after each, so a plan
//! that held the audience in memory would show.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clarion_campaign::schedule::{
    self, ScheduleInput,
    fire::fire_due,
    waves::{self, EARLIEST},
};
use clarion_model::{Channel, DEFAULT_WORKSPACE};
use clarion_server::Settings;
use sea_orm::ConnectionTrait;

use crate::bench_sending::{SendingBench, drop_queues, queues, setup, status_kib};

/// 38 zones from UTC+14 to UTC-11, with and without daylight saving time, both hemispheres.
const ZONES: [&str; 38] = [
    "Pacific/Kiritimati",
    "Pacific/Tongatapu",
    "Pacific/Auckland",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Asia/Bangkok",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Karachi",
    "Asia/Dubai",
    "Asia/Tehran",
    "Europe/Moscow",
    "Europe/Istanbul",
    "Europe/Athens",
    "Africa/Cairo",
    "Africa/Johannesburg",
    "Europe/Berlin",
    "Europe/Paris",
    "Africa/Lagos",
    "Europe/London",
    "Europe/Lisbon",
    "Atlantic/Azores",
    "Atlantic/South_Georgia",
    "America/Sao_Paulo",
    "America/Argentina/Buenos_Aires",
    "America/St_Johns",
    "America/Halifax",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "Pacific/Pago_Pago",
];

fn own_kib(field: &str) -> u64 {
    status_kib(std::process::id(), field).unwrap_or(0)
}

pub async fn run(bench: &SendingBench, settings: &Settings) -> anyhow::Result<()> {
    println!(
        "bench waves: PostgreSQL, {} contacts over {} time zones (every 50th without one), {} cores",
        bench.contacts,
        ZONES.len(),
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let (db, campaign) = setup(bench, settings, Channel::Email).await?;
    // Setting up is not measured: the zones are spread by SQL.
    let list = ZONES
        .iter()
        .map(|z| format!("'{z}'"))
        .collect::<Vec<_>>()
        .join(",");
    db.execute_unprepared(&format!(
        "UPDATE contacts SET time_zone = CASE WHEN id % 50 = 0 THEN NULL \
         ELSE (ARRAY[{list}])[(id % {n}) + 1] END",
        n = ZONES.len()
    ))
    .await?;
    db.execute_unprepared("ANALYZE contacts").await?;
    let now = Utc::now();
    let input = ScheduleInput {
        cron: Some("0 9 * * MON".into()),
        time_zone: Some("Europe/Berlin".into()),
        local_time: Some(true),
        ..ScheduleInput::default()
    };
    let saved = schedule::store::put(&db, DEFAULT_WORKSPACE, campaign, &input, now).await?;
    let slot = saved
        .next_fire_at
        .and_then(|t| chrono::DateTime::from_timestamp_millis(t.millis()))
        .context("the schedule has no next firing")?;
    println!(
        "  schedule: every Monday 09:00 local; next firing {} (09:00 at UTC+14, {})",
        schedule::rfc3339(slot),
        slot.with_timezone(&EARLIEST).naive_local()
    );
    let before = own_kib("VmHWM:");

    let started = Instant::now();
    let plan = waves::preview(&db, DEFAULT_WORKSPACE, campaign, now).await?;
    let planned = started.elapsed();
    let first = plan
        .waves
        .first()
        .map(|w| w.due_at.clone())
        .unwrap_or_default();
    let last = plan
        .waves
        .last()
        .map(|w| w.due_at.clone())
        .unwrap_or_default();
    println!(
        "  plan (before launch): {} waves for {} contacts in {:.3} s (the GROUP BY: {} ms); first due {first}, last {last}; VmHWM {} MiB -> {} MiB",
        plan.waves.len(),
        plan.contacts,
        planned.as_secs_f64(),
        plan.elapsed_ms,
        before / 1024,
        own_kib("VmHWM:") / 1024,
    );

    let prefix = format!("clarion-bench-{}", uuid::Uuid::new_v4().simple());
    let queues = queues(settings, &prefix)?;
    let before = own_kib("VmHWM:");
    let started = Instant::now();
    let fired = fire_due(
        &db,
        &queues,
        &settings.sending,
        slot,
        Duration::from_secs(300),
        "bench",
    )
    .await?;
    let firing = started.elapsed();
    anyhow::ensure!(fired.launched == 1, "the slot did not launch: {fired:?}");
    let run: i64 = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT MAX(id) AS id FROM campaign_runs".to_owned(),
        ))
        .await?
        .context("no run")?
        .try_get("", "id")?;
    let started = Instant::now();
    let recorded = waves::of_run(&db, DEFAULT_WORKSPACE, campaign, run).await?;
    let read = started.elapsed();
    let depth = queues.open(Channel::Email).await?.stats().await?;
    let in_waves: u64 = recorded.iter().map(|w| w.size).sum();
    println!(
        "  firing (launch with waves): {} waves, {in_waves} deliveries due between {} and {}, {} jobs enqueued at the firing (the waves due by then; the others wait for theirs), in {:.2} s; the run's waves read back in {} ms; VmHWM {} MiB -> {} MiB",
        recorded.len(),
        recorded.first().map(|w| w.due_at.as_str()).unwrap_or(""),
        recorded.last().map(|w| w.due_at.as_str()).unwrap_or(""),
        depth.depth + depth.delayed,
        firing.as_secs_f64(),
        read.as_millis(),
        before / 1024,
        own_kib("VmHWM:") / 1024,
    );
    drop_queues(&queues).await?;
    db.execute_unprepared("DELETE FROM campaigns").await?;
    Ok(())
}
