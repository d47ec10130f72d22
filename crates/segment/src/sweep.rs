//! Keeping segment memberships current: [`Memberships`] follows ingestion and updates the
//! memberships of the contacts a batch touched before the batch answers; [`sweep_all`] lets
//! time windows expire and [`recompute_traits_all`] refreshes computed traits, each over every
//! workspace. How often the sweeps run is the scheduler's business, not this module's.

use std::time::Instant;

use clarion_contacts::{Change, Listener};
use clarion_model::{ContactId, Timestamp, WorkspaceId};
use sea_orm::{
    DatabaseConnection, FromQueryResult,
    sea_query::{Query, SelectStatement},
};

use crate::{SegmentError, TraitSettings, membership};

/// The ingestion listener that re-evaluates the dynamic segments of the contacts a batch
/// touched. The batch is stored before it runs, so a failure is logged and left to the next
/// sweep rather than failing the request.
pub struct Memberships {
    db: DatabaseConnection,
}

impl Memberships {
    pub fn new(db: DatabaseConnection) -> Self {
        Memberships { db }
    }
}

#[async_trait::async_trait]
impl Listener for Memberships {
    async fn ingested(&self, workspace: WorkspaceId, contacts: &[ContactId], change: Change<'_>) {
        let started = Instant::now();
        let events_only = matches!(change, Change::Events(_));
        match membership::refresh_contacts(
            &self.db,
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
}

#[derive(FromQueryResult)]
struct WorkspaceRow {
    id: i64,
}

fn workspaces() -> SelectStatement {
    Query::select().column("id").from("workspaces").to_owned()
}

/// The ids of every workspace.
pub async fn workspace_ids(db: &DatabaseConnection) -> Result<Vec<WorkspaceId>, SegmentError> {
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
    settings: &TraitSettings,
) -> Result<(), SegmentError> {
    for workspace in workspace_ids(db).await? {
        let started = Instant::now();
        let summary = crate::traits::recompute(db, workspace, Timestamp::now(), settings).await?;
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

/// Sweeps every workspace's segments once.
pub async fn sweep_all(db: &DatabaseConnection) -> Result<(), SegmentError> {
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
