//! Everything Clarion derives from purchases, recomputed together: the segment crate's traits
//! (orders, revenue, RFM, historic CLV, interests), then the KPI crate's CLV predictions
//! (`p_alive`, `expected_purchases`, `expected_order_value`, `predicted_clv`), then a sweep
//! of the saved segments so that rules on either see the new values. This lives here because
//! campaign is the first crate that sees both segment and kpi.

use clarion_kpi::KpiError;
use clarion_kpi::clv::ClvSettings;
use clarion_kpi::predictions::{self, PredictionSummary};
use clarion_model::{Coded, ErrorCode, FieldError, Timestamp, WorkspaceId};
use clarion_segment::{SegmentError, TraitSettings, TraitSummary, sweep};
use sea_orm::DatabaseConnection;

/// What one workspace's recomputation produced.
#[derive(Debug, Clone)]
pub struct Recomputed {
    pub traits: TraitSummary,
    pub predictions: PredictionSummary,
}

/// A recomputation failed in the segment or the KPI step.
#[derive(Debug, thiserror::Error)]
pub enum RecomputeError {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Kpi(#[from] KpiError),
}

impl Coded for RecomputeError {
    fn code(&self) -> ErrorCode {
        match self {
            RecomputeError::Segment(e) => e.code(),
            RecomputeError::Kpi(e) => e.code(),
        }
    }

    fn details(&self) -> Vec<FieldError> {
        match self {
            RecomputeError::Segment(e) => e.details(),
            RecomputeError::Kpi(e) => e.details(),
        }
    }
}

/// Recomputes `workspace`'s traits and CLV predictions as of `now` (each in a transaction of
/// its own); purchases are what `traits.purchases.kind` names. Saved segments are not swept
/// here: [`recompute_all`] does it, or the next periodic sweep.
pub async fn recompute(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    now: Timestamp,
    traits: &TraitSettings,
    clv: &ClvSettings,
) -> Result<Recomputed, RecomputeError> {
    clv.check()?;
    let summary = clarion_segment::recompute(db, workspace, now, traits).await?;
    let predictions =
        predictions::recompute(db, workspace, now, &traits.purchases.kind, clv).await?;
    Ok(Recomputed {
        traits: summary,
        predictions,
    })
}

/// Recomputes every workspace as of now, then sweeps the saved segments of all of them.
pub async fn recompute_all(
    db: &DatabaseConnection,
    traits: &TraitSettings,
    clv: &ClvSettings,
) -> Result<(), RecomputeError> {
    for workspace in sweep::workspace_ids(db).await? {
        let done = recompute(db, workspace, Timestamp::now(), traits, clv).await?;
        tracing::info!(
            workspace = workspace.0,
            contacts = done.traits.contacts,
            interest_contacts = done.traits.interest_contacts,
            clv_customers = done.predictions.customers,
            clv_fitted = done.predictions.bg_nbd.is_some(),
            "traits and predictions recomputed"
        );
    }
    sweep::sweep_all(db).await?;
    Ok(())
}
