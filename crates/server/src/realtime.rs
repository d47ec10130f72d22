//! Keeping segment memberships current: right after contacts or events are stored, and in a
//! periodic sweep that lets time windows expire.

use std::time::{Duration, Instant};

use clarion_model::{ContactId, Timestamp, WorkspaceId};
use clarion_segment::membership;
use sea_orm::{
    DatabaseConnection, FromQueryResult,
    sea_query::{Query, SelectStatement},
};

use crate::{config::SegmentSettings, startup::AppState};

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

/// Sweeps every workspace once.
pub async fn sweep_all(db: &DatabaseConnection) -> anyhow::Result<()> {
    let rows = WorkspaceRow::find_by_statement(db.get_database_backend().build(&workspaces()))
        .all(db)
        .await?;
    for row in rows {
        let started = Instant::now();
        let report = membership::sweep(db, WorkspaceId(row.id), Timestamp::now()).await?;
        for (slug, reason) in &report.failed {
            tracing::warn!(workspace = row.id, segment = %slug, %reason, "segment rule no longer valid; members kept as they were");
        }
        tracing::info!(
            workspace = row.id,
            segments = report.segments,
            entered = report.changes.entered,
            exited = report.changes.exited,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "segments swept"
        );
    }
    Ok(())
}

/// Runs the sweep every `segments.sweep_interval_secs` in the background. With several
/// Clarion processes on one Redis, a lock makes one of them sweep per interval; while Redis
/// does not answer, each process sweeps on its own (the database keeps that correct).
pub fn spawn_sweeper(
    db: DatabaseConnection,
    settings: SegmentSettings,
    redis: redis::aio::ConnectionManager,
    key_prefix: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let period = Duration::from_secs(settings.sweep_interval_secs);
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lock = format!("{key_prefix}:lock:segment-sweep");
        loop {
            ticker.tick().await;
            let mut connection = redis.clone();
            let taken: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(&lock)
                .arg(std::process::id())
                .arg("NX")
                .arg("PX")
                .arg(
                    u64::try_from(period.as_millis())
                        .unwrap_or(u64::MAX)
                        .saturating_sub(100)
                        .max(1),
                )
                .query_async(&mut connection)
                .await;
            match taken {
                Ok(None) => continue,
                Ok(Some(_)) => {}
                Err(error) => {
                    tracing::debug!(%error, "no sweep lock (Redis does not answer); sweeping anyway");
                }
            }
            if let Err(error) = sweep_all(&db).await {
                tracing::warn!(%error, "segment sweep failed; trying again next interval");
            }
        }
    })
}
