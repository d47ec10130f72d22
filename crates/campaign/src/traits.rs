//! Everything Clarion derives from purchases, recomputed together: the segment crate's traits
//! (orders, revenue, RFM, historic CLV, interests), then the KPI crate's CLV predictions
//! (`p_alive`, `expected_purchases`, `expected_order_value`, `predicted_clv`), then a sweep
//! of the saved segments so that rules on either see the new values. This lives here because
//! campaign is the first crate that sees both segment and kpi.
//!
//! Between two recomputations, [`TraitsListener`] follows ingestion: a batch with purchases,
//! refunds or weighted events rewrites its contacts' traits before it answers.

use std::time::Instant;

use clarion_contacts::{Change, Listener};
use clarion_kpi::KpiError;
use clarion_kpi::clv::ClvSettings;
use clarion_kpi::predictions::{self, PredictionSummary};
use clarion_model::{Coded, ContactId, ErrorCode, FieldError, Timestamp, WorkspaceId};
use clarion_segment::traits::{interest_kinds, refresh_contacts, refresh_interests};
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

/// The ingestion listener that keeps traits current between recomputations: when a batch
/// stored purchases or refunds, their contacts' orders, revenue, RFM scores and historic CLV
/// ([`clarion_segment::traits::refresh_contacts`]) and, after purchases, their CLV
/// predictions ([`predictions::refresh_contacts`]) are written again; when it stored events
/// of a kind with an interest weight, their contacts' interest profiles
/// ([`clarion_segment::traits::refresh_interests`]). All before the batch answers. Register
/// it before the segment listener, so that rules on these traits see the new values in the
/// same batch. A failure is logged; the next recomputation catches up.
pub struct TraitsListener {
    db: DatabaseConnection,
    settings: TraitSettings,
}

impl TraitsListener {
    pub fn new(db: DatabaseConnection, settings: TraitSettings) -> Self {
        TraitsListener { db, settings }
    }
}

#[async_trait::async_trait]
impl Listener for TraitsListener {
    async fn ingested(&self, workspace: WorkspaceId, _contacts: &[ContactId], change: Change<'_>) {
        let Change::Events(earliest) = change else {
            return;
        };
        let touched = |kinds: &[&str]| {
            let mut contacts: Vec<ContactId> = earliest
                .iter()
                .filter(|e| kinds.contains(&e.kind.as_str()))
                .map(|e| e.contact)
                .collect();
            contacts.sort_unstable_by_key(|c| c.0);
            contacts.dedup();
            contacts
        };
        let purchases = &self.settings.purchases;
        let buyers = touched(&[&purchases.kind, &purchases.refund_kind]);
        let interested = touched(&interest_kinds(&self.settings.interests).collect::<Vec<_>>());
        if buyers.is_empty() && interested.is_empty() {
            return;
        }
        let started = Instant::now();
        let now = Timestamp::now();
        let traits = refresh_contacts(&self.db, workspace, &buyers, now, purchases).await;
        let predictions = predictions::refresh_contacts(
            &self.db,
            workspace,
            &touched(&[&purchases.kind]),
            now,
            &purchases.kind,
        )
        .await;
        let interests = refresh_interests(
            &self.db,
            workspace,
            &interested,
            now,
            &self.settings.interests,
        )
        .await;
        match (traits, predictions, interests) {
            (Ok(traits), Ok(predictions), Ok(interests)) => tracing::debug!(
                buyers = buyers.len(),
                interested = interested.len(),
                traits,
                predictions,
                interests,
                ms = started.elapsed().as_secs_f64() * 1000.0,
                "traits updated"
            ),
            (traits, predictions, interests) => tracing::warn!(
                traits = traits.err().map(|e| e.to_string()),
                predictions = predictions.err().map(|e| e.to_string()),
                interests = interests.err().map(|e| e.to_string()),
                "traits could not be updated now; the next recomputation will"
            ),
        }
    }
}
