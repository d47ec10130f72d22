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
//! * [`endpoints`]: webhook endpoints with their own secrets (rotated with overlap), headers,
//!   rate limits, timeouts and results; "send test".
//! * [`engagement`]: clicks, opens and unsubscribes on a delivery, recorded through
//!   ingestion.
//! * [`suppression`]: the suppression list of each workspace and channel, which launch and the
//!   workers honour.
//! * [`frequency`]: frequency caps per workspace and channel across campaigns (transactional
//!   campaigns exempt), checked at launch and again by the workers.
//! * [`feedback`]: bounces (SMTP answers at send time, provider reports) and complaints: the
//!   contact's status, the suppression list and `email_bounce` / `email_complaint` events.
//! * [`providers`]: the verified event webhooks of SES (SNS), SendGrid, Postmark and Mailgun.
//! * [`schedule`]: one-off and recurring schedules, their fire times in a time zone
//!   (daylight-saving changes included), and the scheduler that fires each slot once.
//! * [`sending`] and [`throttle`]: settings, queues, the shared per-channel rate limit.
//! * [`traits`]: computed traits and CLV predictions recomputed together (segment, then kpi).
//! * [`senders`]: sender identities (from-addresses or domains with their DKIM keys), the
//!   from-address check at save time and the keys the worker signs with.
//! * [`overview`]: the figures of the dashboard's overview page, one aggregate query each.
//! * [`test_send`]: one variant's email sent to one address, with the relay's answer.
//! * [`trigger`]: campaigns triggered by entering a segment, after a delay, with a condition
//!   re-checked at send time; pending sends live in the database.
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
pub mod endpoints;
pub mod engagement;
pub mod feedback;
pub mod frequency;
pub mod hits;
pub mod launch;
pub mod overview;
pub mod preview;
pub mod providers;
pub mod render;
pub mod schedule;
pub mod senders;
pub mod sending;
pub mod store;
pub mod suppression;
pub mod test_send;
pub mod throttle;
pub mod traits;
pub mod trigger;
pub mod validate;
pub mod worker;

use clarion_model::{Coded, ErrorCode, FieldError};

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
pub use schedule::fire::SchedulingSettings;
pub use sending::{Queues, SendingSettings};
pub use validate::Issue;
pub use worker::{Worker, WorkerParts};

/// Everything that can go wrong with a campaign.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The campaign or request as written has problems; nothing was stored. The message
    /// names the first; [`Coded::details`] lists them all.
    #[error("{}", summary(.0))]
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
    /// The KPI roll-ups of a run could not be written.
    #[error(transparent)]
    Kpi(#[from] clarion_kpi::KpiError),
}

fn summary(issues: &[Issue]) -> String {
    let first = issues.first().map(ToString::to_string).unwrap_or_default();
    match issues.len() {
        0 | 1 => first,
        n => format!("{first} (and {} more, see details.errors)", n - 1),
    }
}

impl Coded for CampaignError {
    fn code(&self) -> ErrorCode {
        match self {
            CampaignError::Invalid(_) => ErrorCode::ValidationFailed,
            CampaignError::NotFound(_) => ErrorCode::NotFound,
            CampaignError::Db(db) => db.code(),
            CampaignError::Conflict(_) => ErrorCode::Conflict,
            CampaignError::Queue(_) | CampaignError::Redis(_) => ErrorCode::Unavailable,
            CampaignError::Corrupt(_) => ErrorCode::Internal,
            CampaignError::Kpi(kpi) => kpi.code(),
        }
    }

    fn details(&self) -> Vec<FieldError> {
        let CampaignError::Invalid(issues) = self else {
            return Vec::new();
        };
        issues
            .iter()
            .map(|issue| FieldError {
                field: issue.field.clone(),
                path: Some(issue.path.clone()),
                variant: issue.variant.clone(),
                line: issue.line,
                column: issue.column,
                message: issue.message.clone(),
            })
            .collect()
    }
}
