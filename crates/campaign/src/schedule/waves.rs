//! Waves: a run sent in each recipient's local time (and/or within quiet hours) goes out as
//! one wave per time zone of its audience, each due when the send time reaches that zone.
//!
//! * [`Planner`] decides, per time zone, when its deliveries are due (or that quiet hours drop
//!   them). It holds one decision per distinct zone, never the audience.
//! * [`preview`]: the waves of a campaign's next firing and their sizes, counted in the
//!   database (`GROUP BY` time zone) before launch.
//! * [`record`]: a run's waves, counted in the database from its delivery rows at launch.
//! * [`release_due`]: enqueues the deliveries of every wave that is due (the scheduler calls
//!   it on its clock; the supervisor on the system's).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use clarion_model::{
    CampaignId, Channel, DeliveryJob, DeliveryStatus, RunStatus, Timestamp, WorkspaceId,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, Statement,
    sea_query::{Expr, ExprTrait, Order, Query},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    quiet::{QUIET_HOURS, QuietAction, QuietHours, resolve},
    rfc3339,
    store::ScheduleState,
};
use crate::{CampaignError, assign::segment_ids, sending::Queues};

/// The first time zone to reach a local time: UTC+14 (Pacific/Kiritimati). A local-time run
/// fires when its send time reaches it; the last zone (UTC-12) follows 26 hours later.
pub const EARLIEST: Tz = Tz::Etc__GMTMinus14;

/// Rows enqueued per page when a wave is released.
const RELEASE_PAGE: u64 = 5_000;
/// Waves released per round.
const RELEASE_ROUND: u64 = 100;

/// When a run's deliveries are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendTime {
    /// At once (a launch by hand, a schedule in one zone).
    Now,
    /// When each recipient's clock shows this local date and time.
    Local(NaiveDateTime),
}

/// What becomes of the deliveries of one time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The zone the wave is planned in (the fallback for contacts without one).
    pub zone: Tz,
    /// When the wave is due.
    pub due: DateTime<Utc>,
    /// Quiet hours moved it later.
    pub delayed: bool,
    /// Quiet hours drop it.
    pub dropped: bool,
}

/// Decides each time zone's wave; one decision per distinct zone name.
#[derive(Debug, Clone)]
pub struct Planner {
    send: SendTime,
    now: DateTime<Utc>,
    quiet: Option<QuietHours>,
    fallback: Tz,
    decided: HashMap<Option<Tz>, Decision>,
}

impl Planner {
    /// `fallback` is the zone of contacts without one (or with a name no longer known).
    #[must_use]
    pub fn new(
        send: SendTime,
        now: DateTime<Utc>,
        quiet: Option<QuietHours>,
        fallback: Tz,
    ) -> Self {
        Planner {
            send,
            now,
            quiet,
            fallback,
            decided: HashMap::new(),
        }
    }

    /// Whether this run needs planning at all (otherwise every delivery is due at once).
    #[must_use]
    pub fn plans(&self) -> bool {
        matches!(self.send, SendTime::Local(_)) || self.quiet.is_some()
    }

    /// The wave of contacts whose time zone is `zone` (`None`: without one).
    pub fn decide(&mut self, zone: Option<Tz>) -> Decision {
        if let Some(decision) = self.decided.get(&zone) {
            return *decision;
        }
        let tz = zone.unwrap_or(self.fallback);
        let wanted = match self.send {
            SendTime::Now => self.now,
            SendTime::Local(local) => Ord::max(resolve(tz, local), self.now),
        };
        let mut decision = Decision {
            zone: tz,
            due: wanted,
            delayed: false,
            dropped: false,
        };
        if let Some(quiet) = &self.quiet
            && quiet.quiet_at(wanted.with_timezone(&tz).naive_local())
        {
            match quiet.action {
                QuietAction::Drop => decision.dropped = true,
                QuietAction::Delay => {
                    decision.due = quiet.next_allowed(tz, wanted);
                    decision.delayed = true;
                }
            }
        }
        self.decided.insert(zone, decision);
        decision
    }
}

/// One wave, before launch or of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Wave {
    /// The time zone (contacts without one are counted in the fallback zone).
    #[schema(example = "Europe/Berlin")]
    pub time_zone: String,
    /// When it is due (UTC, RFC 3339).
    #[schema(example = "2027-03-23T08:00:00Z")]
    pub due_at: String,
    /// Before launch: contacts of the audience in the zone. Of a run: deliveries queued.
    pub size: u64,
    /// Quiet hours moved the wave later.
    pub delayed: bool,
    /// Quiet hours drop the wave (`suppressed`, reason `quiet hours`): before launch, its
    /// contacts; of a run, its deliveries.
    pub dropped: u64,
    /// Of a run: when its deliveries were enqueued (absent until due).
    pub released_at: Option<String>,
}

/// The waves of a campaign's next firing, counted before launch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WavePlan {
    pub campaign_id: CampaignId,
    /// The firing the plan is for (UTC, RFC 3339).
    pub fire_at: String,
    /// For a local-time schedule, the local date and time each recipient gets it at.
    #[schema(example = "2027-03-23T09:00:00")]
    pub local_time: Option<String>,
    /// The zone of contacts without one.
    pub fallback_time_zone: String,
    /// In due order.
    pub waves: Vec<Wave>,
    /// Contacts in the audience (before holdout and suppression).
    pub contacts: u64,
    /// Milliseconds the database took to count the waves.
    pub elapsed_ms: u64,
}

/// A stored zone name; one no longer known counts as none (the fallback zone).
fn parse_zone(name: Option<&str>) -> Option<Tz> {
    name.and_then(|name| name.parse().ok())
}

/// Merges per-zone-name counts into waves keyed by the zone planned in.
fn merge(
    planner: &mut Planner,
    counts: Vec<(Option<String>, u64, u64)>,
    released: &BTreeMap<String, Option<i64>>,
) -> Vec<Wave> {
    let mut waves: BTreeMap<String, Wave> = BTreeMap::new();
    for (zone, size, dropped) in counts {
        let decision = planner.decide(parse_zone(zone.as_deref()));
        let name = decision.zone.name().to_owned();
        let wave = waves.entry(name.clone()).or_insert_with(|| Wave {
            time_zone: name.clone(),
            due_at: rfc3339(decision.due),
            size: 0,
            delayed: decision.delayed,
            dropped: 0,
            released_at: released
                .get(&name)
                .copied()
                .flatten()
                .and_then(DateTime::from_timestamp_millis)
                .map(rfc3339),
        });
        if decision.dropped {
            wave.dropped += size + dropped;
        } else {
            wave.size += size;
            wave.dropped += dropped;
        }
    }
    let mut waves: Vec<Wave> = waves.into_values().collect();
    waves.sort_by(|a, b| (&a.due_at, &a.time_zone).cmp(&(&b.due_at, &b.time_zone)));
    waves
}

/// The send time and fallback zone of a firing at `slot` of a schedule.
#[must_use]
pub fn send_time(local_time: bool, slot: DateTime<Utc>) -> SendTime {
    if local_time {
        SendTime::Local(slot.with_timezone(&EARLIEST).naive_local())
    } else {
        SendTime::Now
    }
}

/// The planner of a campaign's run fired at `now` (`local`: the schedule's local time and its
/// zone, which is then the fallback).
///
/// # Errors
/// Database failures.
pub async fn planner(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    campaign: CampaignId,
    local: Option<(NaiveDateTime, Tz)>,
    now: DateTime<Utc>,
) -> Result<Planner, CampaignError> {
    let quiet = super::quiet::stored(db, workspace, campaign)
        .await?
        .map(|(q, _)| q);
    let (send, fallback) = match local {
        Some((local, zone)) => (SendTime::Local(local), zone),
        None => (SendTime::Now, quiet.map_or(Tz::UTC, |q| q.fallback)),
    };
    Ok(Planner::new(send, now, quiet, fallback))
}

/// The waves of campaign `campaign`'s next firing (its schedule's next slot; without an active
/// schedule, a launch now), with the audience counted per time zone in the database.
///
/// # Errors
/// [`CampaignError::NotFound`]; database failures.
pub async fn preview(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
    now: DateTime<Utc>,
) -> Result<WavePlan, CampaignError> {
    let found = crate::store::get(db, workspace, campaign)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {campaign}")))?;
    let schedule = super::store::get(db, workspace, campaign).await?;
    let (fire_at, local) = match &schedule {
        Some(view) if view.state == ScheduleState::Active => {
            let at = view
                .next_fire_at
                .and_then(|t| DateTime::from_timestamp_millis(t.millis()))
                .unwrap_or(now);
            let zone: Tz = view.time_zone.parse().unwrap_or(Tz::UTC);
            let local = view
                .local_time
                .then(|| (at.with_timezone(&EARLIEST).naive_local(), zone));
            (at, local)
        }
        _ => (now, None),
    };
    let mut planner = planner(db, workspace, campaign, local, fire_at).await?;
    let started = std::time::Instant::now();
    let segments: Vec<i64> = segment_ids(&found)
        .into_iter()
        .filter(|s| found.fallback.is_some() || found.targets.iter().any(|t| t.segment.id == s.0))
        .map(|s| s.0)
        .collect();
    let counts = audience_by_zone(db, workspace, &segments).await?;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let contacts = counts.iter().map(|(_, n, _)| n).sum();
    let waves = merge(&mut planner, counts, &BTreeMap::new());
    Ok(WavePlan {
        campaign_id: campaign,
        fire_at: rfc3339(fire_at),
        local_time: local.map(|(l, _)| l.format("%Y-%m-%dT%H:%M:%S").to_string()),
        fallback_time_zone: planner.fallback.name().to_owned(),
        waves,
        contacts,
        elapsed_ms,
    })
}

/// The current members of any of `segments`, counted per time zone in one `GROUP BY`.
///
/// # Errors
/// Database failures.
pub async fn audience_by_zone(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    segments: &[i64],
) -> Result<Vec<(Option<String>, u64, u64)>, CampaignError> {
    if segments.is_empty() {
        return Ok(Vec::new());
    }
    let list = segments
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "SELECT c.time_zone AS time_zone, COUNT(*) AS n FROM contacts c \
         WHERE c.workspace_id = {} AND EXISTS (SELECT 1 FROM segment_memberships m \
         WHERE m.contact_id = c.id AND m.segment_id IN ({list}) AND m.exited_at IS NULL) \
         GROUP BY c.time_zone",
        workspace.0
    );
    let backend = db.get_database_backend();
    db.query_all_raw(Statement::from_string(backend, sql))
        .await?
        .iter()
        .map(|row| {
            let n: i64 = row.try_get("", "n")?;
            Ok((
                row.try_get("", "time_zone")?,
                u64::try_from(n).unwrap_or(0),
                0,
            ))
        })
        .collect()
}

/// Records run `run`'s waves, counted from its delivery rows per contact time zone in one
/// `GROUP BY`; waves due by `now` are marked released (launch enqueues them itself).
///
/// # Errors
/// Database failures.
pub async fn record(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    run: i64,
    planner: &mut Planner,
    now: DateTime<Utc>,
) -> Result<Vec<Wave>, CampaignError> {
    let sql = format!(
        "SELECT c.time_zone AS time_zone, \
         SUM(CASE WHEN d.status = '{queued}' THEN 1 ELSE 0 END) AS queued, \
         SUM(CASE WHEN d.reason = '{QUIET_HOURS}' THEN 1 ELSE 0 END) AS dropped \
         FROM deliveries d JOIN contacts c ON c.id = d.contact_id \
         WHERE d.run_id = {run} GROUP BY c.time_zone",
        queued = DeliveryStatus::Queued.as_str()
    );
    let backend = db.get_database_backend();
    let counts = db
        .query_all_raw(Statement::from_string(backend, sql))
        .await?
        .iter()
        .map(|row| {
            let queued: i64 = row.try_get("", "queued")?;
            let dropped: i64 = row.try_get("", "dropped")?;
            Ok((
                row.try_get::<Option<String>>("", "time_zone")?,
                u64::try_from(queued).unwrap_or(0),
                u64::try_from(dropped).unwrap_or(0),
            ))
        })
        .collect::<Result<Vec<_>, CampaignError>>()?;
    // Dropped zones' rows are counted as dropped already; `merge` would count them twice.
    let counts = counts
        .into_iter()
        .map(|(zone, queued, dropped)| {
            if planner.decide(parse_zone(zone.as_deref())).dropped {
                (zone, 0, dropped)
            } else {
                (zone, queued, dropped)
            }
        })
        .collect();
    let mut waves = merge(planner, counts, &BTreeMap::new());
    for wave in &mut waves {
        let due = DateTime::parse_from_rfc3339(&wave.due_at)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or(now);
        let released = (due <= now).then(|| now.timestamp_millis());
        wave.released_at = released.map(|_| rfc3339(now));
        let insert = Query::insert()
            .into_table("run_waves")
            .columns([
                "workspace_id",
                "run_id",
                "time_zone",
                "due_at",
                "deliveries",
                "dropped",
                "delayed",
                "released_at",
            ])
            .values_panic([
                workspace.0.into(),
                run.into(),
                wave.time_zone.clone().into(),
                due.timestamp_millis().into(),
                i64::try_from(wave.size).unwrap_or(i64::MAX).into(),
                i64::try_from(wave.dropped).unwrap_or(i64::MAX).into(),
                i64::from(wave.delayed).into(),
                released.into(),
            ])
            .to_owned();
        db.execute(&insert).await?;
    }
    Ok(waves)
}

/// Run `run`'s waves, in due order.
///
/// # Errors
/// [`CampaignError::NotFound`] when the run is not the campaign's; database failures.
pub async fn of_run(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
    run: i64,
) -> Result<Vec<Wave>, CampaignError> {
    let owner = Query::select()
        .column("id")
        .from("campaign_runs")
        .and_where(Expr::col("id").eq(run))
        .and_where(Expr::col("campaign_id").eq(campaign.0))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    if db.query_one(&owner).await?.is_none() {
        return Err(CampaignError::NotFound(format!(
            "run {run} of campaign {campaign}"
        )));
    }
    let select = Query::select()
        .columns([
            "time_zone",
            "due_at",
            "deliveries",
            "dropped",
            "delayed",
            "released_at",
        ])
        .from("run_waves")
        .and_where(Expr::col("run_id").eq(run))
        .order_by("due_at", Order::Asc)
        .order_by("time_zone", Order::Asc)
        .to_owned();
    let stamp = |millis: i64| DateTime::from_timestamp_millis(millis).map(rfc3339);
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| {
            let due: i64 = row.try_get("", "due_at")?;
            let size: i64 = row.try_get("", "deliveries")?;
            let dropped: i64 = row.try_get("", "dropped")?;
            let released: Option<i64> = row.try_get("", "released_at")?;
            Ok(Wave {
                time_zone: row.try_get("", "time_zone")?,
                due_at: stamp(due).unwrap_or_default(),
                size: u64::try_from(size).unwrap_or(0),
                delayed: row.try_get::<i64>("", "delayed")? != 0,
                dropped: u64::try_from(dropped).unwrap_or(0),
                released_at: released.and_then(stamp),
            })
        })
        .collect()
}

/// Enqueues the deliveries of every wave due at `now` that was not released yet. Each due
/// time of a run is released once (compare-and-set on its waves); if Redis fails after that,
/// the rows stay `queued` and the supervisor enqueues them. Returns the deliveries enqueued.
///
/// # Errors
/// Database and Redis failures.
pub async fn release_due(
    db: &DatabaseConnection,
    queues: &Queues,
    now: DateTime<Utc>,
) -> Result<u64, CampaignError> {
    let mut total = 0;
    loop {
        let select = Query::select()
            .columns(["run_id", "due_at"])
            .distinct()
            .from("run_waves")
            .and_where(Expr::col("released_at").is_null())
            .and_where(Expr::col("due_at").lte(now.timestamp_millis()))
            .order_by("due_at", Order::Asc)
            .limit(RELEASE_ROUND)
            .to_owned();
        let due: Vec<(i64, i64)> = db
            .query_all(&select)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("", "run_id")?, row.try_get("", "due_at")?)))
            .collect::<Result<_, CampaignError>>()?;
        if due.is_empty() {
            return Ok(total);
        }
        for (run, due_at) in due {
            let claim = Query::update()
                .table("run_waves")
                .value("released_at", now.timestamp_millis())
                .and_where(Expr::col("run_id").eq(run))
                .and_where(Expr::col("due_at").eq(due_at))
                .and_where(Expr::col("released_at").is_null())
                .to_owned();
            if db.execute(&claim).await?.rows_affected() == 0 {
                continue;
            }
            total += enqueue_due(db, queues, run, due_at).await?;
        }
    }
}

/// Enqueues run `run`'s queued deliveries due at `due_at`, a page at a time.
async fn enqueue_due(
    db: &DatabaseConnection,
    queues: &Queues,
    run: i64,
    due_at: i64,
) -> Result<u64, CampaignError> {
    let status = Query::select()
        .column("status")
        .from("campaign_runs")
        .and_where(Expr::col("id").eq(run))
        .to_owned();
    let running = match db.query_one(&status).await? {
        Some(row) => row.try_get::<String>("", "status")? == RunStatus::Running.as_str(),
        None => false,
    };
    // A paused run's rows stay queued; resuming enqueues those that are due.
    if !running {
        return Ok(0);
    }
    let mut total = 0;
    for channel in Channel::ALL {
        let mut queue = None;
        let mut after = 0i64;
        loop {
            let select = Query::select()
                .column("id")
                .from("deliveries")
                .and_where(Expr::col("run_id").eq(run))
                .and_where(Expr::col("due_at").eq(due_at))
                .and_where(Expr::col("channel").eq(channel.as_str()))
                .and_where(Expr::col("status").eq(DeliveryStatus::Queued.as_str()))
                .and_where(Expr::col("id").gt(after))
                .order_by("id", Order::Asc)
                .limit(RELEASE_PAGE)
                .to_owned();
            let ids: Vec<i64> = db
                .query_all(&select)
                .await?
                .iter()
                .map(|row| row.try_get("", "id"))
                .collect::<Result<_, _>>()?;
            let Some(&last) = ids.last() else {
                break;
            };
            if queue.is_none() {
                queue = Some(queues.open(channel).await?);
            }
            if let Some(queue) = &queue {
                let jobs: Vec<DeliveryJob> = ids.iter().map(|&id| DeliveryJob { id }).collect();
                queue.enqueue_batch(&jobs).await?;
            }
            total += ids.len() as u64;
            if (ids.len() as u64) < RELEASE_PAGE {
                break;
            }
            after = last;
        }
    }
    tracing::info!(run, due = %DateTime::from_timestamp_millis(due_at).map(rfc3339).unwrap_or_default(), enqueued = total, "wave released");
    Ok(total)
}

/// Deliveries due by `now` (a wave not yet due stays out of requeues).
#[must_use]
pub fn due_by(now: Timestamp) -> sea_orm::sea_query::SimpleExpr {
    Expr::col("due_at")
        .is_null()
        .or(Expr::col("due_at").lte(now.millis()))
}
