//! Keeping segment memberships current: right after contacts or events are stored, and in a
//! periodic sweep that lets time windows expire.

use std::time::{Duration, Instant};

use clarion_model::{ContactId, Timestamp, WorkspaceId};
use clarion_segment::membership;
use sea_orm::{
    DatabaseConnection, FromQueryResult,
    sea_query::{Query, SelectStatement},
};

use crate::{
    config::{SegmentSettings, TraitsSettings},
    startup::AppState,
};

/// Re-evaluates the workspace's dynamic segments for `contacts`, whose events
/// (`events_only`) or fields just changed. The data is stored already, so a failure here is
/// logged and left to the next sweep rather than failing the request.
pub async fn refresh(
    state: &AppState,
    workspace: WorkspaceId,
    contacts: &[ContactId],
    events_only: bool,
) {
    if !state.settings.segments.realtime || contacts.is_empty() {
        return;
    }
    let started = Instant::now();
    match membership::refresh_contacts(
        &state.db,
        workspace,
        contacts,
        Timestamp::now(),
        events_only,
    )
    .await
    {
        Ok(changes) => tracing::debug!(
            contacts = contacts.len(),
            entered = changes.entered,
            exited = changes.exited,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "segment memberships updated"
        ),
        Err(error) => tracing::warn!(
            %error,
            "segment memberships could not be updated now; the next sweep will"
        ),
    }
}

#[derive(FromQueryResult)]
struct WorkspaceRow {
    id: i64,
}

fn workspaces() -> SelectStatement {
    Query::select().column("id").from("workspaces").to_owned()
}

async fn workspace_ids(db: &DatabaseConnection) -> anyhow::Result<Vec<WorkspaceId>> {
    Ok(
        WorkspaceRow::find_by_statement(db.get_database_backend().build(&workspaces()))
            .all(db)
            .await?
            .into_iter()
            .map(|row| WorkspaceId(row.id))
            .collect(),
    )
}

/// Recomputes every workspace's traits (RFM, CLV, interests), then sweeps its segments so
/// that rules on traits see the new values.
pub async fn recompute_traits_all(
    db: &DatabaseConnection,
    settings: &TraitsSettings,
) -> anyhow::Result<()> {
    let computation = settings.computation();
    for workspace in workspace_ids(db).await? {
        let started = Instant::now();
        let summary =
            clarion_segment::traits::recompute(db, workspace, Timestamp::now(), &computation)
                .await?;
        tracing::info!(
            workspace = workspace.0,
            contacts = summary.contacts,
            interest_contacts = summary.interest_contacts,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "traits recomputed"
        );
    }
    sweep_all(db).await
}

/// Sweeps every workspace once.
pub async fn sweep_all(db: &DatabaseConnection) -> anyhow::Result<()> {
    for workspace in workspace_ids(db).await? {
        let started = Instant::now();
        let report = membership::sweep(db, workspace, Timestamp::now()).await?;
        for (slug, reason) in &report.failed {
            tracing::warn!(workspace = workspace.0, segment = %slug, %reason, "segment rule no longer valid; members kept as they were");
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let (segments, entered, exited) = (
            report.segments,
            report.changes.entered,
            report.changes.exited,
        );
        // A sweep that changed nothing is routine: it logs at debug, once a minute.
        if entered + exited > 0 {
            tracing::info!(
                workspace = workspace.0,
                segments,
                entered,
                exited,
                ms,
                "segments swept"
            );
        } else {
            tracing::debug!(
                workspace = workspace.0,
                segments,
                ms,
                "segments swept, nothing changed"
            );
        }
    }
    Ok(())
}

/// Runs the sweep every `segments.sweep_interval_secs` in the background, and every
/// `traits.recompute_interval_minutes` recomputes traits first. With several Clarion
/// processes on one Redis, a lock makes one of them do each job per interval.
pub fn spawn_sweeper(
    db: DatabaseConnection,
    settings: SegmentSettings,
    traits: TraitsSettings,
    redis: redis::aio::ConnectionManager,
    key_prefix: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let period = Duration::from_secs(settings.sweep_interval_secs);
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let traits_period = Duration::from_secs(traits.recompute_interval_minutes * 60);
        let mut traits_due = Instant::now() + traits_period;
        loop {
            ticker.tick().await;
            if !traits_period.is_zero() && Instant::now() >= traits_due {
                traits_due = Instant::now() + traits_period;
                if take_lock(&redis, &format!("{key_prefix}:lock:traits"), traits_period).await {
                    if let Err(error) = recompute_traits_all(&db, &traits).await {
                        tracing::warn!(%error, "trait recomputation failed; trying again next interval");
                    }
                    continue;
                }
            }
            if take_lock(&redis, &format!("{key_prefix}:lock:segment-sweep"), period).await
                && let Err(error) = sweep_all(&db).await
            {
                tracing::warn!(%error, "segment sweep failed; trying again next interval");
            }
        }
    })
}

/// Whether this process should do a periodic job now: it holds the job's Redis lock for a
/// little less than the period. Without Redis every process does the job (the database
/// keeps that correct; only the work is repeated).
async fn take_lock(redis: &redis::aio::ConnectionManager, key: &str, period: Duration) -> bool {
    let mut connection = redis.clone();
    let millis = u64::try_from(period.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_sub(100)
        .max(1);
    let taken: redis::RedisResult<Option<String>> = redis::cmd("SET")
        .arg(key)
        .arg(std::process::id())
        .arg("NX")
        .arg("PX")
        .arg(millis)
        .query_async(&mut connection)
        .await;
    match taken {
        Ok(taken) => taken.is_some(),
        Err(error) => {
            tracing::debug!(%error, key, "no lock (Redis does not answer); doing the job anyway");
            true
        }
    }
}
