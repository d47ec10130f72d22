//! Figures about a queue for dashboards and alerts.

use std::fmt;

/// A snapshot of one queue, taken with a few Redis calls.
///
/// `depth` is the work not yet finished: `lag` jobs nobody has read plus `pending` jobs in
/// the hands of workers. The stream itself may be a little longer (`stream_len`) because
/// settled entries leave it in whole internal nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Jobs waiting or in flight: `lag + pending`.
    pub depth: u64,
    /// Entries in the job stream, including settled ones not yet trimmed.
    pub stream_len: u64,
    /// Jobs not yet delivered to any worker.
    pub lag: u64,
    /// Jobs delivered and not yet settled (being worked on, or held by a dead worker).
    pub pending: u64,
    /// Jobs waiting for a retry in the delayed set.
    pub delayed: u64,
    /// Entries in the dead-letter stream.
    pub dead: u64,
    /// Consumers known to the group (including dead ones that were never removed).
    pub consumers: u64,
    /// Retries scheduled since the queue was created.
    pub retried_total: u64,
    /// Postponements (not counted as attempts) since the queue was created.
    pub postponed_total: u64,
    /// Jobs dead-lettered since the queue was created.
    pub dead_lettered_total: u64,
}

impl fmt::Display for QueueStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "depth {}, lag {}, pending {}, delayed {}, dead {}, consumers {}, retried {}, postponed {}, dead-lettered {}, stream length {}",
            self.depth,
            self.lag,
            self.pending,
            self.delayed,
            self.dead,
            self.consumers,
            self.retried_total,
            self.postponed_total,
            self.dead_lettered_total,
            self.stream_len
        )
    }
}
