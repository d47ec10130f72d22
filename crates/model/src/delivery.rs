//! What sending shares with everything that reports on it: the job a worker receives, and the
//! statuses a delivery and a run go through, as stored.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::DeliveryId;

/// The job a delivery worker receives: the id of one delivery row. Everything else is read
/// from the database, which is the source of truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    /// The delivery row.
    pub id: i64,
}

impl DeliveryJob {
    /// The delivery this job sends.
    #[must_use]
    pub fn delivery(self) -> DeliveryId {
        DeliveryId(self.id)
    }
}

impl From<DeliveryId> for DeliveryJob {
    fn from(id: DeliveryId) -> Self {
        Self { id: id.0 }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Written and enqueued (or waiting for a retry); nobody is sending it.
    Queued,
    /// Claimed by a worker, which is sending it now.
    Sending,
    /// The peer accepted it.
    Sent,
    /// It failed for good; `reason` says why.
    Failed,
    /// Not sent on purpose: unsubscribed, no address, contact deleted; `reason` says which.
    Suppressed,
    /// In the control group: never sent, counted for uplift.
    Holdout,
    /// Still queued when the campaign was cancelled.
    Cancelled,
}

impl DeliveryStatus {
    /// Every status, in the order reports list them.
    pub const ALL: [DeliveryStatus; 7] = [
        DeliveryStatus::Queued,
        DeliveryStatus::Sending,
        DeliveryStatus::Sent,
        DeliveryStatus::Failed,
        DeliveryStatus::Suppressed,
        DeliveryStatus::Holdout,
        DeliveryStatus::Cancelled,
    ];

    /// The status as stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Suppressed => "suppressed",
            DeliveryStatus::Holdout => "holdout",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    /// The status stored as `value`.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// Where a run (one launch) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [RunStatus; 4] = [
        RunStatus::Running,
        RunStatus::Paused,
        RunStatus::Completed,
        RunStatus::Cancelled,
    ];

    /// The status as stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Completed => "completed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// The status stored as `value`.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_as_stored() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeliveryStatus::parse("lost"), None);
    }

    #[test]
    fn a_job_is_the_delivery_id_alone() {
        let job = DeliveryJob::from(DeliveryId(42));
        assert_eq!(serde_json::to_string(&job).unwrap(), r#"{"id":42}"#);
        assert_eq!(job.delivery(), DeliveryId(42));
    }
}
