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
//!   [`clarion_model::assign`], so preview, launch and reports agree).
//! * [`contacts`]: contacts as templates see them.
//! * [`render`]: a campaign's variants rendered into the messages workers send and previews
//!   show ([`render::MessageRenderer`]).
//! * [`preview`]: renders variants for chosen or sample contacts and warns about identical
//!   variants.
//! * [`audience`]: contacts, holdout and reachable counts per variant, over the current
//!   segment members a page at a time.
//! * [`launch`]: the audience written as delivery rows (the outbox) and enqueued on Redis.
//! * [`worker`]: delivery workers: claim, render, send, record, settle.
//! * [`control`]: pause, resume, cancel, retry, and the supervisor that completes runs and
//!   re-enqueues lost jobs.
//! * [`deliveries`]: progress of a run and the deliveries of a campaign or contact.
//! * [`sending`] and [`throttle`]: settings, queues, the shared per-channel rate limit.
//!
//! Ids, the delivery job, the delivery and run statuses, the goal, reachability and the
//! assignment hash are the model's ([`clarion_model`]); current segment members are read
//! through [`clarion_segment::members`].

pub mod assign;
pub mod audience;
pub mod campaign;
pub mod contacts;
pub mod control;
pub mod deliveries;
pub mod launch;
pub mod preview;
pub mod render;
pub mod sending;
pub mod store;
pub mod throttle;
pub mod validate;
pub mod worker;

pub use assign::Assignment;
pub use audience::{AudienceReport, VariantAudience};
pub use campaign::{
    Campaign, CampaignInput, CampaignSummary, EmailVariant, Revision, SegmentRef, Status, Target,
    TargetInput, Variant, VariantInput, WebhookVariant,
};
// The server's routes and API docs name these through this crate; they live in the model.
pub use clarion_model::{CampaignId, DeliveryJob, DeliveryStatus, Goal, RunStatus, VariantId};
pub use launch::LaunchReport;
pub use preview::{ContactPreview, PreviewReport, PreviewRequest, Warning, WarningKind};
pub use sending::{Queues, SendingSettings};
pub use validate::Issue;
pub use worker::{Worker, WorkerParts};

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
    /// The request does not fit the campaign's state, e.g. editing a launched campaign or
    /// launching one twice; the message says what to do instead.
    #[error("{0}")]
    Conflict(String),
    /// The job queue (Redis) did not answer; nothing that needs it was done.
    #[error("the job queue is unavailable: {0}")]
    Queue(#[from] clarion_queue::Error),
    /// Redis did not answer (the shared throttle).
    #[error("redis is unavailable: {0}")]
    Redis(#[from] redis::RedisError),
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
