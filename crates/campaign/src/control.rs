//! A launched campaign's lifecycle: pause, resume, cancel, retry what failed, and the
//! supervisor that completes finished runs and re-enqueues deliveries whose jobs were lost.
//!
//! Pausing only flips the run's status: workers claim deliveries of running runs only, and
//! drop the jobs of a paused run without touching its rows, which stay `queued`. Resuming
//! enqueues those rows again. So the queue never churns through a paused campaign's jobs,
//! and a job enqueued twice is harmless (the claim is a compare-and-set on the row).

use std::time::Duration;

use clarion_model::{
    CampaignId, Channel, DeliveryJob, DeliveryStatus, RunStatus, Timestamp, WorkspaceId,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr,
    sea_query::{Expr, ExprTrait, Order, Query},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    CampaignError,
    campaign::Status,
    sending::{Queues, SendingSettings},
};

/// Rows read per page when enqueueing a run's queued deliveries again.
const REQUEUE_PAGE: u64 = 5_000;

/// A run of a campaign: one launch, by hand or by its schedule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Run {
    pub id: i64,
    pub campaign_id: CampaignId,
    pub status: RunStatus,
    /// Why the run is paused, cancelled or was paused last (e.g. the error-rate guard).
    pub status_reason: Option<String>,
    pub audience: i64,
    pub queued: i64,
    pub suppressed: i64,
    pub holdout: i64,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

const RUN_COLUMNS: [&str; 10] = [
    "id",
    "status",
    "status_reason",
    "audience",
    "queued",
    "suppressed",
    "holdout",
    "started_at",
    "updated_at",
    "finished_at",
];

fn read_run(row: &sea_orm::QueryResult, id: CampaignId) -> Result<Run, CampaignError> {
    let status: String = row.try_get("", "status")?;
    Ok(Run {
        id: row.try_get("", "id")?,
        campaign_id: id,
        status: RunStatus::parse(&status)
            .ok_or_else(|| CampaignError::Corrupt(format!("run status {status:?}")))?,
        status_reason: row.try_get("", "status_reason")?,
        audience: row.try_get("", "audience")?,
        queued: row.try_get("", "queued")?,
        suppressed: row.try_get("", "suppressed")?,
        holdout: row.try_get("", "holdout")?,
        started_at: Timestamp::from_millis(row.try_get("", "started_at")?),
        updated_at: Timestamp::from_millis(row.try_get("", "updated_at")?),
        finished_at: row
            .try_get::<Option<i64>>("", "finished_at")?
            .map(Timestamp::from_millis),
    })
}

/// The latest run of campaign `id`, if it was launched.
///
/// # Errors
/// Database failures.
pub async fn latest_run(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: CampaignId,
) -> Result<Option<Run>, CampaignError> {
    let select = Query::select()
        .columns(RUN_COLUMNS)
        .from("campaign_runs")
        .and_where(Expr::col("campaign_id").eq(id.0))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .order_by("id", Order::Desc)
        .limit(1)
        .to_owned();
    db.query_one(&select)
        .await?
        .map(|row| read_run(&row, id))
        .transpose()
}

/// Every run of campaign `id` (a launch by hand, or one per fired schedule slot), the latest
/// first.
///
/// # Errors
/// [`CampaignError::NotFound`]; database failures.
pub async fn runs(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: CampaignId,
) -> Result<Vec<Run>, CampaignError> {
    if crate::store::get(db, workspace, id).await?.is_none() {
        return Err(CampaignError::NotFound(format!("campaign {id}")));
    }
    let select = Query::select()
        .columns(RUN_COLUMNS)
        .from("campaign_runs")
        .and_where(Expr::col("campaign_id").eq(id.0))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .order_by("id", Order::Desc)
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| read_run(row, id))
        .collect()
}

async fn launched_run(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: CampaignId,
) -> Result<Run, CampaignError> {
    if crate::store::get(db, workspace, id).await?.is_none() {
        return Err(CampaignError::NotFound(format!("campaign {id}")));
    }
    latest_run(db, workspace, id)
        .await?
        .ok_or_else(|| CampaignError::Conflict(format!("campaign {id} has not been launched")))
}

/// Moves a run from one of `from` to `to` (compare-and-set) and its campaign to `campaign`.
/// Returns whether the run was in one of `from`.
async fn transition(
    db: &DatabaseConnection,
    run: i64,
    from: &[RunStatus],
    to: RunStatus,
    campaign: Status,
    reason: Option<&str>,
) -> Result<bool, DbErr> {
    let now = Timestamp::now().millis();
    let mut update = Query::update();
    update
        .table("campaign_runs")
        .value("status", to.as_str())
        .value("updated_at", now)
        .and_where(Expr::col("id").eq(run))
        .and_where(Expr::col("status").is_in(from.iter().map(|s| s.as_str())));
    if let Some(reason) = reason {
        update.value("status_reason", reason);
    }
    if matches!(to, RunStatus::Completed | RunStatus::Cancelled) {
        update.value("finished_at", now);
    } else {
        update.value("finished_at", Option::<i64>::None);
    }
    if db.execute(&update).await?.rows_affected() == 0 {
        return Ok(false);
    }
    let select = Query::select()
        .column("campaign_id")
        .from("campaign_runs")
        .and_where(Expr::col("id").eq(run))
        .to_owned();
    if let Some(row) = db.query_one(&select).await? {
        let campaign_id: i64 = row.try_get("", "campaign_id")?;
        let update = Query::update()
            .table("campaigns")
            .value("status", campaign.as_str())
            .value("updated_at", now)
            .and_where(Expr::col("id").eq(campaign_id))
            .to_owned();
        db.execute(&update).await?;
    }
    Ok(true)
}

/// Pauses a sending campaign: workers stop claiming its deliveries; those in flight finish.
///
/// # Errors
/// [`CampaignError::Conflict`] unless the campaign is sending.
pub async fn pause(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: CampaignId,
    reason: &str,
) -> Result<Run, CampaignError> {
    let run = launched_run(db, workspace, id).await?;
    if !transition(
        db,
        run.id,
        &[RunStatus::Running],
        RunStatus::Paused,
        Status::Paused,
        Some(reason),
    )
    .await?
    {
        return Err(CampaignError::Conflict(format!(
            "campaign {id} is not sending (its run is {}), so it cannot be paused",
            run.status.as_str()
        )));
    }
    refreshed(db, workspace, id).await
}

/// Pauses run `run` because of `reason` if it is running (the error-rate guard). Returns
/// whether it did.
///
/// # Errors
/// Database failures.
pub async fn pause_run(db: &DatabaseConnection, run: i64, reason: &str) -> Result<bool, DbErr> {
    transition(
        db,
        run,
        &[RunStatus::Running],
        RunStatus::Paused,
        Status::Paused,
        Some(reason),
    )
    .await
}

/// Resumes a paused campaign and enqueues its queued deliveries again.
///
/// # Errors
/// [`CampaignError::Conflict`] unless the campaign is paused; [`CampaignError::Queue`].
pub async fn resume(
    db: &DatabaseConnection,
    queues: &Queues,
    workspace: WorkspaceId,
    id: CampaignId,
) -> Result<Run, CampaignError> {
    let run = launched_run(db, workspace, id).await?;
    if !transition(
        db,
        run.id,
        &[RunStatus::Paused],
        RunStatus::Running,
        Status::Sending,
        None,
    )
    .await?
    {
        return Err(CampaignError::Conflict(format!(
            "campaign {id} is not paused (its run is {})",
            run.status.as_str()
        )));
    }
    requeue(
        db,
        queues,
        run.id,
        DeliveryStatus::Queued,
        None,
        &Channel::ALL,
    )
    .await?;
    refreshed(db, workspace, id).await
}

/// Cancels a sending or paused campaign: every delivery still queued becomes `cancelled`;
/// those in flight finish.
///
/// # Errors
/// [`CampaignError::Conflict`] unless the campaign is sending or paused.
pub async fn cancel(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: CampaignId,
) -> Result<Run, CampaignError> {
    let run = launched_run(db, workspace, id).await?;
    if !transition(
        db,
        run.id,
        &[RunStatus::Running, RunStatus::Paused],
        RunStatus::Cancelled,
        Status::Cancelled,
        Some("cancelled by a user"),
    )
    .await?
    {
        return Err(CampaignError::Conflict(format!(
            "campaign {id} is not sending or paused (its run is {})",
            run.status.as_str()
        )));
    }
    let update = Query::update()
        .table("deliveries")
        .value("status", DeliveryStatus::Cancelled.as_str())
        .value("updated_at", Timestamp::now().millis())
        .and_where(Expr::col("run_id").eq(run.id))
        .and_where(Expr::col("status").eq(DeliveryStatus::Queued.as_str()))
        .to_owned();
    db.execute(&update).await?;
    clarion_kpi::rollup::build_run(db, run.id).await?;
    refreshed(db, workspace, id).await
}

/// Sends failed deliveries again: each becomes `queued` with fresh attempts and is enqueued;
/// a finished run runs again. Returns the run and how many deliveries were queued.
///
/// # Errors
/// [`CampaignError::Conflict`] for a cancelled campaign; [`CampaignError::Queue`].
pub async fn retry_failed(
    db: &DatabaseConnection,
    queues: &Queues,
    workspace: WorkspaceId,
    id: CampaignId,
    channel: Option<Channel>,
) -> Result<(Run, u64), CampaignError> {
    let run = launched_run(db, workspace, id).await?;
    if run.status == RunStatus::Cancelled {
        return Err(CampaignError::Conflict(format!(
            "campaign {id} was cancelled; duplicate it to send it again"
        )));
    }
    // Open the queues before changing rows, so a Redis outage changes nothing.
    for c in Channel::ALL {
        queues.open(c).await?;
    }
    // Rows first, then the run: a supervisor round between the two would otherwise find
    // the reopened run with nothing queued, complete it again, and leave the rows queued in
    // a completed run that no one enqueues.
    let mut update = Query::update();
    update
        .table("deliveries")
        .value("status", DeliveryStatus::Queued.as_str())
        .value("attempts", 0i64)
        .value("reason", Option::<String>::None)
        .value("updated_at", Timestamp::now().millis())
        .and_where(Expr::col("run_id").eq(run.id))
        .and_where(Expr::col("status").eq(DeliveryStatus::Failed.as_str()));
    if let Some(channel) = channel {
        update.and_where(Expr::col("channel").eq(channel.as_str()));
    }
    let retried = db.execute(&update).await?.rows_affected();
    if retried > 0 {
        clarion_kpi::rollup::build_run(db, run.id).await?;
    }
    transition(
        db,
        run.id,
        &[RunStatus::Completed],
        RunStatus::Running,
        Status::Sending,
        None,
    )
    .await?;
    let run = latest_run(db, workspace, id)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {id}")))?;
    if run.status == RunStatus::Running {
        requeue(
            db,
            queues,
            run.id,
            DeliveryStatus::Queued,
            None,
            &Channel::ALL,
        )
        .await?;
    }
    complete_if_done(db, run.id).await?;
    Ok((refreshed(db, workspace, id).await?, retried))
}

async fn refreshed(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: CampaignId,
) -> Result<Run, CampaignError> {
    latest_run(db, workspace, id)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {id}")))
}

/// Completes a running run when none of its deliveries is queued or being sent, unless an
/// active trigger of its campaign may still add some ([`crate::trigger`]). Returns whether
/// it did.
///
/// # Errors
/// Database failures.
pub async fn complete_if_done(db: &DatabaseConnection, run: i64) -> Result<bool, DbErr> {
    if crate::trigger::keeps_open(db, run).await? || launching(db, run).await? {
        return Ok(false);
    }
    let open = Query::select()
        .column("id")
        .from("deliveries")
        .and_where(Expr::col("run_id").eq(run))
        .and_where(Expr::col("status").is_in([
            DeliveryStatus::Queued.as_str(),
            DeliveryStatus::Sending.as_str(),
        ]))
        .limit(1)
        .to_owned();
    if db.query_one(&open).await?.is_some() {
        return Ok(false);
    }
    transition(
        db,
        run,
        &[RunStatus::Running],
        RunStatus::Completed,
        Status::Sent,
        None,
    )
    .await
}

/// Whether run `run`'s launch is still writing its audience (or stopped half-way, to be
/// resumed): until it is done, the deliveries written so far are not the whole run.
async fn launching(db: &DatabaseConnection, run: i64) -> Result<bool, DbErr> {
    let select = Query::select()
        .column("id")
        .from("campaign_runs")
        .and_where(Expr::col("id").eq(run))
        .and_where(Expr::col("launch_cursor").is_not_null())
        .to_owned();
    Ok(db.query_one(&select).await?.is_some())
}

/// Finishes the launches that stopped beating longer ago than `stale` (ms): the process
/// writing them died or lost the database. Returns how many this process finished; one that
/// fails is logged and tried again next round.
async fn resume_launches(
    db: &DatabaseConnection,
    queues: &Queues,
    settings: &SendingSettings,
    stale: i64,
) -> Result<u64, DbErr> {
    let select = Query::select()
        .column("id")
        .from("campaign_runs")
        .and_where(Expr::col("launch_cursor").is_not_null())
        .and_where(Expr::col("launch_beat").lt(stale))
        .and_where(
            Expr::col("status").is_in([RunStatus::Running.as_str(), RunStatus::Paused.as_str()]),
        )
        .to_owned();
    let runs: Vec<i64> = db
        .query_all(&select)
        .await?
        .iter()
        .map(|row| row.try_get("", "id"))
        .collect::<Result<_, _>>()?;
    let mut resumed = 0;
    for run in runs {
        match crate::launch::resume(db, queues, settings, run, stale).await {
            Ok(Some(_)) => resumed += 1,
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(run, %error, "an interrupted launch could not be finished; trying again next round");
            }
        }
    }
    Ok(resumed)
}

/// Enqueues again the deliveries of `run` on `channels` in `status` (with `claimed_before`:
/// only those claimed before that time, i.e. abandoned), a page at a time. Returns how many.
async fn requeue(
    db: &DatabaseConnection,
    queues: &Queues,
    run: i64,
    status: DeliveryStatus,
    claimed_before: Option<i64>,
    channels: &[Channel],
) -> Result<u64, CampaignError> {
    let mut total = 0;
    for &channel in channels {
        let mut queue = None;
        let mut after = 0i64;
        loop {
            let mut select = Query::select();
            select
                .column("id")
                .from("deliveries")
                .and_where(Expr::col("run_id").eq(run))
                .and_where(Expr::col("status").eq(status.as_str()))
                .and_where(Expr::col("channel").eq(channel.as_str()))
                .and_where(Expr::col("id").gt(after))
                .order_by("id", Order::Asc)
                .limit(REQUEUE_PAGE);
            if let Some(before) = claimed_before {
                select.and_where(Expr::col("claimed_at").lt(before));
            }
            // A wave not due yet is enqueued when it is released.
            if status == DeliveryStatus::Queued {
                select.and_where(crate::schedule::waves::due_by(Timestamp::now()));
            }
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
            if (ids.len() as u64) < REQUEUE_PAGE {
                break;
            }
            after = last;
        }
    }
    Ok(total)
}

/// What one supervision round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Supervised {
    /// Runs found finished and completed.
    pub completed: u64,
    /// Queued deliveries enqueued again because their channel's queue had lost them.
    pub requeued: u64,
    /// Deliveries claimed by a worker that never finished them, enqueued again.
    pub abandoned: u64,
    /// Deliveries abandoned by as many workers as they had attempts (each worker that took
    /// them died), failed for good.
    pub failed: u64,
    /// Deliveries enqueued because their wave (local time, quiet hours) came due.
    pub released: u64,
    /// Launches stopped half-way (their process died) whose audience was written to the end.
    pub resumed_launches: u64,
}

/// Fails the deliveries of `run` left in `sending` by dead workers as often as they have
/// attempts: such a message may be what kills the workers.
async fn fail_crashing(
    db: &DatabaseConnection,
    run: i64,
    stale: i64,
    max_attempts: u32,
) -> Result<u64, DbErr> {
    let update = Query::update()
        .table("deliveries")
        .value("status", DeliveryStatus::Failed.as_str())
        .value(
            "reason",
            format!(
                "abandoned: the worker sending it stopped without finishing, {max_attempts} times"
            ),
        )
        .value("updated_at", Timestamp::now().millis())
        .and_where(Expr::col("run_id").eq(run))
        .and_where(Expr::col("status").eq(DeliveryStatus::Sending.as_str()))
        .and_where(Expr::col("claimed_at").lt(stale))
        .and_where(Expr::col("attempts").gte(i64::from(max_attempts)))
        .to_owned();
    Ok(db.execute(&update).await?.rows_affected())
}

/// One supervision round over every running run:
///
/// - a launch that stopped writing its audience longer ago than `sending.reclaim_after_secs`
///   (its process died) is finished from its cursor ([`crate::launch::resume`]);
/// - a run with nothing queued or being sent, and whose launch is finished, is completed;
/// - a delivery claimed longer ago than `sending.reclaim_after_secs` whose worker never
///   finished it is enqueued again (the claim takes such rows over);
/// - when a channel's queue holds nothing (no job waiting, in flight or delayed) while a run
///   still has deliveries queued on it, their jobs were lost (Redis restarted without
///   persistence, or was flushed): they are enqueued again.
///
/// # Errors
/// Database and Redis failures.
pub async fn supervise(
    db: &DatabaseConnection,
    queues: &Queues,
    settings: &SendingSettings,
) -> Result<Supervised, CampaignError> {
    let mut done = Supervised::default();
    let stale = Timestamp::now().millis()
        - i64::try_from(settings.reclaim_after().as_millis()).unwrap_or(i64::MAX);
    done.resumed_launches = resume_launches(db, queues, settings, stale).await?;
    let select = Query::select()
        .column("id")
        .from("campaign_runs")
        .and_where(Expr::col("status").eq(RunStatus::Running.as_str()))
        .to_owned();
    let runs: Vec<i64> = db
        .query_all(&select)
        .await?
        .iter()
        .map(|row| row.try_get("", "id"))
        .collect::<Result<_, _>>()?;
    if runs.is_empty() {
        return Ok(done);
    }
    // Waves are released by the scheduler on its clock; this keeps them going on the
    // system's clock when no scheduler runs.
    done.released = crate::schedule::waves::release_due(db, queues, chrono::Utc::now()).await?;
    let mut idle = Vec::new();
    for channel in Channel::ALL {
        let stats = queues.open(channel).await?.stats().await?;
        if stats.depth == 0 && stats.delayed == 0 {
            idle.push(channel);
        }
    }
    let now = Timestamp::now().millis();
    // Rows written in the last moments of a launch may not be enqueued yet: they get two
    // supervision rounds (at least 2 s) before their jobs count as lost.
    let grace_period =
        Duration::from_secs(settings.supervise_interval_secs * 2).max(Duration::from_secs(2));
    let grace = now - i64::try_from(grace_period.as_millis()).unwrap_or(0);
    for run in runs {
        if complete_if_done(db, run).await? {
            done.completed += 1;
            continue;
        }
        let crashed = fail_crashing(db, run, stale, settings.max_attempts).await?;
        if crashed > 0 {
            clarion_kpi::rollup::build_run(db, run).await?;
        }
        done.failed += crashed;
        done.abandoned += requeue(
            db,
            queues,
            run,
            DeliveryStatus::Sending,
            Some(stale),
            &Channel::ALL,
        )
        .await?;
        for &channel in &idle {
            let waiting = Query::select()
                .column("id")
                .from("deliveries")
                .and_where(Expr::col("run_id").eq(run))
                .and_where(Expr::col("channel").eq(channel.as_str()))
                .and_where(Expr::col("status").eq(DeliveryStatus::Queued.as_str()))
                .and_where(Expr::col("updated_at").lt(grace))
                .and_where(crate::schedule::waves::due_by(Timestamp::now()))
                .limit(1)
                .to_owned();
            if db.query_one(&waiting).await?.is_none() {
                continue;
            }
            let requeued =
                requeue(db, queues, run, DeliveryStatus::Queued, None, &[channel]).await?;
            if requeued > 0 {
                tracing::warn!(
                    run,
                    channel = channel.as_str(),
                    requeued,
                    "queue had lost the jobs of queued deliveries; enqueued them again"
                );
            }
            done.requeued += requeued;
        }
    }
    Ok(done)
}
