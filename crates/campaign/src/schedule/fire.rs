//! Firing schedules: every slot that is due becomes a run, exactly once.
//!
//! Three things keep a slot from running twice. A Redis lease ([`Lease`]) makes one scheduler
//! process fire at a time; if it dies, another takes over once the lease runs out. Behind
//! it, each slot is claimed by inserting its run key (campaign and slot) into
//! `schedule_firings`, unique in the database, before anything is launched: a second
//! scheduler, or the same one after a restart, finds the key taken and launches nothing. And
//! the schedule's `next_fire_at` moves on by compare-and-set.
//!
//! Time comes from a [`Clock`], so tests run a year of slots in a second.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection,
    sea_query::{Expr, ExprTrait, OnConflict, Order, Query},
};
use serde::Deserialize;

use super::{
    CatchUp, rfc3339,
    store::{COLUMNS, ScheduleState, Stored, read},
};
use crate::{
    CampaignError,
    campaign::Status,
    sending::{Queues, SendingSettings},
};

/// Schedules read per round.
const ROUND: u64 = 100;
/// Slots one schedule may pass through in one round (a minutely cron missed for a week).
const MAX_SLOTS: usize = 20_000;

/// `[scheduling]`: how scheduler processes share the firing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulingSettings {
    /// How long a scheduler holds the firing lease without renewing it, in seconds; when it
    /// dies another takes over within this time.
    pub lease_secs: u64,
    /// Seconds between two reads of the schedules (new or changed ones are picked up, the
    /// lease renewed). Must be below `lease_secs`.
    pub resync_interval_secs: u64,
    /// A slot this many seconds late counts as missed (Clarion was down), and the
    /// schedule's catch-up policy decides whether it runs.
    pub misfire_grace_secs: u64,
}

impl Default for SchedulingSettings {
    fn default() -> Self {
        Self {
            lease_secs: 30,
            resync_interval_secs: 10,
            misfire_grace_secs: 300,
        }
    }
}

impl SchedulingSettings {
    /// The first setting that is out of range, with the reason.
    ///
    /// # Errors
    /// The key and why its value does not work.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.resync_interval_secs == 0 {
            return Err((
                "scheduling.resync_interval_secs",
                "must be at least 1".into(),
            ));
        }
        if self.lease_secs <= self.resync_interval_secs {
            return Err((
                "scheduling.lease_secs",
                format!(
                    "must exceed scheduling.resync_interval_secs ({}), or the lease lapses between renewals",
                    self.resync_interval_secs
                ),
            ));
        }
        Ok(())
    }
}

/// Where the scheduler reads the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told (tests, benchmarks).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    #[must_use]
    pub fn at(now: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(now)))
    }

    pub fn set(&self, now: DateTime<Utc>) {
        if let Ok(mut time) = self.0.lock() {
            *time = now;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.lock().map_or_else(|_| Utc::now(), |time| *time)
    }
}

/// A lease on firing, held in Redis by one owner at a time and renewed while it lives.
#[derive(Clone)]
pub struct Lease {
    redis: redis::aio::ConnectionManager,
    key: String,
    owner: String,
    ttl: Duration,
}

impl Lease {
    #[must_use]
    pub fn new(
        redis: redis::aio::ConnectionManager,
        key_prefix: &str,
        owner: impl Into<String>,
        ttl: Duration,
    ) -> Self {
        Lease {
            redis,
            key: format!("{key_prefix}:lock:scheduler"),
            owner: owner.into(),
            ttl,
        }
    }

    /// This process's name in the lease and in the firings it records.
    #[must_use]
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Takes the lease, or renews it when this owner holds it; whether it is held now.
    ///
    /// # Errors
    /// Redis does not answer.
    pub async fn hold(&self) -> Result<bool, redis::RedisError> {
        let script = redis::Script::new(
            r"if redis.call('GET', KEYS[1]) == ARGV[1] then
                  redis.call('PEXPIRE', KEYS[1], ARGV[2])
                  return 1
              end
              if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
                  return 1
              end
              return 0",
        );
        let mut connection = self.redis.clone();
        let held: i64 = script
            .key(&self.key)
            .arg(&self.owner)
            .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut connection)
            .await?;
        Ok(held == 1)
    }

    /// Gives the lease up (at shutdown), if this owner holds it.
    ///
    /// # Errors
    /// Redis does not answer.
    pub async fn release(&self) -> Result<(), redis::RedisError> {
        let script = redis::Script::new(
            r"if redis.call('GET', KEYS[1]) == ARGV[1] then
                  return redis.call('DEL', KEYS[1])
              end
              return 0",
        );
        let mut connection = self.redis.clone();
        let _: i64 = script
            .key(&self.key)
            .arg(&self.owner)
            .invoke_async(&mut connection)
            .await?;
        Ok(())
    }
}

/// What a round of firing did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fired {
    /// Slots that launched a run.
    pub launched: u64,
    /// Slots skipped (catch-up policy, paused campaign).
    pub skipped: u64,
    /// Slots whose launch failed (the reason is on the firing).
    pub failed: u64,
    /// Slots another scheduler had claimed first.
    pub taken: u64,
    /// Deliveries enqueued because their wave (local time, quiet hours) came due.
    pub released: u64,
}

/// The scheduler: fires due slots when it holds the lease.
pub struct Scheduler {
    db: DatabaseConnection,
    queues: Queues,
    sending: SendingSettings,
    settings: SchedulingSettings,
    lease: Lease,
    clock: Arc<dyn Clock>,
}

impl Scheduler {
    #[must_use]
    pub fn new(
        db: DatabaseConnection,
        queues: Queues,
        sending: SendingSettings,
        settings: SchedulingSettings,
        lease: Lease,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Scheduler {
            db,
            queues,
            sending,
            settings,
            lease,
            clock,
        }
    }

    /// The time on this scheduler's clock.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The lease this scheduler fires under.
    #[must_use]
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// One round: takes or renews the lease and, holding it, fires every due slot and
    /// releases every wave that came due. Without
    /// Redis it fires anyway: the run key in the database still lets each slot run once.
    ///
    /// # Errors
    /// Database failures.
    pub async fn tick(&self) -> Result<Fired, CampaignError> {
        match self.lease.hold().await {
            Ok(true) => {}
            Ok(false) => return Ok(Fired::default()),
            Err(error) => {
                tracing::warn!(%error, "no scheduler lease (Redis does not answer); firing anyway, the run key keeps each slot once");
            }
        }
        let now = self.clock.now();
        let mut fired = fire_due(
            &self.db,
            &self.queues,
            &self.sending,
            now,
            Duration::from_secs(self.settings.misfire_grace_secs),
            self.lease.owner(),
        )
        .await?;
        fired.released = super::waves::release_due(&self.db, &self.queues, now).await?;
        Ok(fired)
    }

    /// The earliest next fire time of any active schedule or due time of a wave not released
    /// yet: when to wake up next.
    ///
    /// # Errors
    /// Database failures.
    pub async fn next_wake(&self) -> Result<Option<DateTime<Utc>>, CampaignError> {
        let select = Query::select()
            .column("next_fire_at")
            .from("campaign_schedules")
            .and_where(Expr::col("state").eq(ScheduleState::Active.as_str()))
            .and_where(Expr::col("next_fire_at").is_not_null())
            .order_by("next_fire_at", Order::Asc)
            .limit(1)
            .to_owned();
        let slot = self
            .db
            .query_one(&select)
            .await?
            .map(|row| row.try_get::<i64>("", "next_fire_at"))
            .transpose()?;
        // A wave (local time, quiet hours) due before the next slot wakes it too.
        let wave = Query::select()
            .column("due_at")
            .from("run_waves")
            .and_where(Expr::col("released_at").is_null())
            .order_by("due_at", Order::Asc)
            .limit(1)
            .to_owned();
        let wave = self
            .db
            .query_one(&wave)
            .await?
            .map(|row| row.try_get::<i64>("", "due_at"))
            .transpose()?;
        Ok(slot
            .into_iter()
            .chain(wave)
            .min()
            .and_then(DateTime::from_timestamp_millis))
    }
}

/// What to do with one due slot.
enum Decision {
    Launch,
    Skip(String),
}

/// Fires every slot due at `now`, by anyone who calls it: the run key makes each slot run
/// once, even when two schedulers call this at the same moment.
///
/// # Errors
/// Database failures.
pub async fn fire_due(
    db: &DatabaseConnection,
    queues: &Queues,
    sending: &SendingSettings,
    now: DateTime<Utc>,
    grace: Duration,
    owner: &str,
) -> Result<Fired, CampaignError> {
    let mut fired = Fired::default();
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    loop {
        let select = Query::select()
            .columns(COLUMNS)
            .from("campaign_schedules")
            .and_where(Expr::col("state").eq(ScheduleState::Active.as_str()))
            .and_where(Expr::col("next_fire_at").lte(now.timestamp_millis()))
            .order_by("next_fire_at", Order::Asc)
            .limit(ROUND)
            .to_owned();
        let due = db.query_all(&select).await?;
        if due.is_empty() {
            return Ok(fired);
        }
        for row in &due {
            let schedule = read(row)?;
            fire_schedule(db, queues, sending, schedule, now, grace, owner, &mut fired).await?;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn fire_schedule(
    db: &DatabaseConnection,
    queues: &Queues,
    sending: &SendingSettings,
    mut schedule: Stored,
    now: DateTime<Utc>,
    grace: chrono::Duration,
    owner: &str,
    fired: &mut Fired,
) -> Result<(), CampaignError> {
    for _ in 0..MAX_SLOTS {
        let Some(slot) = schedule.next_fire_at.filter(|slot| *slot <= now) else {
            return Ok(());
        };
        let status = crate::store::get(db, schedule.workspace, schedule.campaign)
            .await?
            .map(|c| c.status);
        let decision = match status {
            None | Some(Status::Cancelled) => {
                end(db, &schedule, ScheduleState::Cancelled, now).await?;
                return Ok(());
            }
            Some(Status::Paused) => Decision::Skip("the campaign is paused".into()),
            Some(_) if now - slot <= grace => Decision::Launch,
            Some(_) => {
                match schedule.plan.catch_up {
                    CatchUp::Skip => Decision::Skip(format!(
                        "missed while no scheduler ran (catch_up is skip; now {})",
                        rfc3339(now)
                    )),
                    CatchUp::RunOnce => {
                        let later = schedule.plan.next_after(slot, schedule.fired);
                        if later.is_some_and(|later| later <= now) {
                            Decision::Skip("missed while no scheduler ran; a later missed slot runs once instead".into())
                        } else {
                            Decision::Launch
                        }
                    }
                }
            }
        };
        let launching = matches!(decision, Decision::Launch);
        let (status, reason) = match &decision {
            Decision::Launch => ("launching", None),
            Decision::Skip(reason) => ("skipped", Some(reason.clone())),
        };
        let firing = claim(db, &schedule, slot, status, reason.as_deref(), owner, now).await?;
        let counted = schedule.fired + u64::from(launching && firing.is_some());
        let next = schedule.plan.next_after(slot, counted);
        advance(db, &schedule, slot, next, counted, now).await?;
        schedule.next_fire_at = next;
        schedule.fired = counted;
        let Some(firing) = firing else {
            fired.taken += 1;
            continue;
        };
        if !launching {
            fired.skipped += 1;
            continue;
        }
        let local = schedule.plan.local_time.then(|| {
            (
                slot.with_timezone(&super::waves::EARLIEST).naive_local(),
                schedule.plan.zone,
            )
        });
        match crate::launch::launch_scheduled(
            db,
            queues,
            sending,
            schedule.workspace,
            schedule.campaign,
            local,
            now,
        )
        .await
        {
            Ok(report) => {
                fired.launched += 1;
                settle(db, firing, "launched", Some(report.run_id), None, now).await?;
                tracing::info!(campaign = schedule.campaign.0, slot = %rfc3339(slot), run = report.run_id, queued = report.queued, "scheduled run launched");
            }
            Err(CampaignError::Db(error)) => return Err(CampaignError::Db(error)),
            Err(error) => {
                fired.failed += 1;
                tracing::warn!(campaign = schedule.campaign.0, slot = %rfc3339(slot), %error, "scheduled run could not be launched");
                settle(db, firing, "failed", None, Some(&error.to_string()), now).await?;
            }
        }
    }
    Ok(())
}

/// Claims a slot by inserting its run key; the firing's id, or `None` when the key was taken.
async fn claim(
    db: &DatabaseConnection,
    schedule: &Stored,
    slot: DateTime<Utc>,
    status: &str,
    reason: Option<&str>,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<Option<i64>, CampaignError> {
    let stamp = now.timestamp_millis();
    let insert = Query::insert()
        .into_table("schedule_firings")
        .columns([
            "workspace_id",
            "schedule_id",
            "campaign_id",
            "slot_at",
            "status",
            "reason",
            "fired_by",
            "fired_at",
            "updated_at",
        ])
        .values_panic([
            schedule.workspace.0.into(),
            schedule.id.into(),
            schedule.campaign.0.into(),
            slot.timestamp_millis().into(),
            status.into(),
            reason.into(),
            owner.into(),
            stamp.into(),
            stamp.into(),
        ])
        .on_conflict(
            OnConflict::columns(["campaign_id", "slot_at"])
                .do_nothing()
                .to_owned(),
        )
        .returning_col("id")
        .to_owned();
    Ok(db
        .query_one(&insert)
        .await?
        .map(|row| row.try_get::<i64>("", "id"))
        .transpose()?)
}

/// Moves the schedule past `slot` unless someone else did.
async fn advance(
    db: &DatabaseConnection,
    schedule: &Stored,
    slot: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    fired: u64,
    now: DateTime<Utc>,
) -> Result<(), CampaignError> {
    let state = if next.is_some() {
        ScheduleState::Active
    } else {
        ScheduleState::Completed
    };
    let update = Query::update()
        .table("campaign_schedules")
        .value("next_fire_at", next.map(|at| at.timestamp_millis()))
        .value("state", state.as_str())
        .value("fired", i64::try_from(fired).unwrap_or(i64::MAX))
        .value("updated_at", now.timestamp_millis())
        .and_where(Expr::col("id").eq(schedule.id))
        .and_where(Expr::col("state").eq(ScheduleState::Active.as_str()))
        .and_where(Expr::col("next_fire_at").eq(slot.timestamp_millis()))
        .to_owned();
    db.execute(&update).await?;
    Ok(())
}

async fn end(
    db: &DatabaseConnection,
    schedule: &Stored,
    state: ScheduleState,
    now: DateTime<Utc>,
) -> Result<(), CampaignError> {
    let update = Query::update()
        .table("campaign_schedules")
        .value("state", state.as_str())
        .value("next_fire_at", Option::<i64>::None)
        .value("updated_at", now.timestamp_millis())
        .and_where(Expr::col("id").eq(schedule.id))
        .to_owned();
    db.execute(&update).await?;
    Ok(())
}

async fn settle(
    db: &DatabaseConnection,
    firing: i64,
    status: &str,
    run: Option<i64>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), CampaignError> {
    let update = Query::update()
        .table("schedule_firings")
        .value("status", status)
        .value("run_id", run)
        .value("reason", reason)
        .value("updated_at", now.timestamp_millis())
        .and_where(Expr::col("id").eq(firing))
        .to_owned();
    db.execute(&update).await?;
    Ok(())
}
