//! Campaigns for Clarion: a message per segment.
//!
//! A campaign has a goal (an event kind within an attribution window), a holdout share,
//! channels, and an ordered list of targets, each a segment with one or more weighted
//! variants (an A/B/n test), plus an optional fallback variant for the rest of an audience
//! segment. A contact in several targeted segments gets one message: the first target's.
//!
//! * [`campaign`]: the model, as written ([`CampaignInput`]) and as stored ([`Campaign`]).
//! * [`validate`]: save-time checks; every [`Issue`] names its path, variant, field, line and
//!   column.
//! * [`store`]: create, read, update, duplicate, delete; every change of a variant records a
//!   [`Revision`].
//! * [`assign`]: which variant a contact gets, deterministically (through
//!   [`clarion_template::assign`], so preview, launch and reports agree).
//! * [`contacts`]: contacts as templates see them.
//! * [`preview`]: renders variants for chosen or sample contacts and warns about identical
//!   variants.
//! * [`audience`]: contacts, holdout and reachable counts per variant, counted in SQL over the
//!   current segment memberships a page at a time.
//!
//! Segments and their memberships are read from the `segments` and `segment_memberships`
//! tables; a current member has `exited_at IS NULL`.

pub mod assign;
pub mod audience;
pub mod campaign;
pub mod contacts;
pub mod preview;
pub mod store;
pub mod validate;

pub use assign::Assignment;
pub use audience::{AudienceReport, VariantAudience};
pub use campaign::{
    Campaign, CampaignId, CampaignInput, CampaignSummary, EmailVariant, Goal, Revision, SegmentRef,
    Status, Target, TargetInput, Variant, VariantId, VariantInput, WebhookVariant,
};
pub use preview::{ContactPreview, PreviewReport, PreviewRequest, Warning, WarningKind};
pub use validate::Issue;

/// Everything that can go wrong with a campaign.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The campaign or request as written has problems; nothing was stored.
    #[error("{} problem(s): {}", .0.len(), list(.0))]
    Invalid(Vec<Issue>),
    /// The campaign, variant or contact does not exist in the workspace.
    #[error("{0} was not found")]
    NotFound(String),
    #[error("database error")]
    Db(#[from] sea_orm::DbErr),
    /// A stored row no longer reads as Clarion wrote it.
    #[error("stored campaign data is unreadable: {0}")]
    Corrupt(String),
}

fn list(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
