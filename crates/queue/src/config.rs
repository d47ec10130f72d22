//! Tuning of a queue: consumer group, batch sizes, timeouts and the retry policy.

use std::time::Duration;

use rand::Rng;

use crate::error::{Error, Result};

/// How a queue reads, retries and reclaims jobs.
///
/// Every process that uses the same queue should use the same group name; the other values
/// may differ per process (a worker with more memory may read larger batches).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Consumer-group name. One queue has exactly one group: settled entries are trimmed
    /// from the stream as this group progresses, so a second group would miss them.
    pub group: String,
    /// Most jobs one read hands to a handler.
    pub batch_size: usize,
    /// How long a blocking read waits for jobs before returning an empty batch. The reading
    /// connection's response timeout is this plus [`QueueConfig::read_timeout_margin`].
    pub block: Duration,
    /// Added to `block` to get the response timeout of the dedicated reading connection, so a
    /// read that legitimately waits the whole block time is never cut off.
    pub read_timeout_margin: Duration,
    /// Attempts a job gets before it goes to the dead-letter stream (at least 1). Attempts
    /// that ended because the worker died count too.
    pub max_attempts: u32,
    /// Delay before the first retry; every further retry doubles it.
    pub backoff_base: Duration,
    /// Upper bound for the delay between attempts (before jitter).
    pub backoff_max: Duration,
    /// Relative spread of retry delays, between 0 and 1: a delay `d` becomes a uniformly
    /// random value in `[d * (1 - jitter), d * (1 + jitter)]`, so jobs that failed together do
    /// not all come back at the same instant.
    pub jitter: f64,
    /// A job delivered this long ago and still unacknowledged is presumed abandoned by a dead
    /// worker and may be claimed by another one. Must exceed the longest time a handler needs
    /// for a batch, or a slow worker's jobs are processed twice.
    pub reclaim_min_idle: Duration,
    /// How often the long-running worker loop looks for abandoned jobs.
    pub reclaim_interval: Duration,
    /// Jobs per pipeline when enqueueing.
    pub enqueue_chunk: usize,
    /// Pipelines of one `enqueue_batch` call that may be in flight at once.
    pub enqueue_pipelines: usize,
    /// Response timeout of the shared connection that [`Queue::connect`](crate::Queue::connect)
    /// opens (redis-rs would otherwise use 500 ms, short for large pipelines on a busy server).
    pub command_timeout: Duration,
    /// When set, the dead-letter stream is trimmed to about this many entries (oldest first).
    /// `None` keeps every dead letter until it is requeued or deleted.
    pub dead_letter_max_len: Option<usize>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            group: "workers".to_owned(),
            batch_size: 100,
            block: Duration::from_secs(2),
            read_timeout_margin: Duration::from_secs(5),
            max_attempts: 5,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(30 * 60),
            jitter: 0.2,
            reclaim_min_idle: Duration::from_secs(5 * 60),
            reclaim_interval: Duration::from_secs(30),
            enqueue_chunk: 1_000,
            enqueue_pipelines: 4,
            command_timeout: Duration::from_secs(5),
            dead_letter_max_len: None,
        }
    }
}

impl QueueConfig {
    /// Checks the values a queue relies on; called when a queue is created.
    pub fn validate(&self) -> Result<()> {
        let fail = |why: String| Err(Error::InvalidConfig(why));
        if self.group.is_empty() {
            return fail("group must not be empty".to_owned());
        }
        if self.batch_size == 0 {
            return fail("batch_size must be at least 1".to_owned());
        }
        if self.max_attempts == 0 {
            return fail("max_attempts must be at least 1".to_owned());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return fail(format!(
                "jitter must be between 0 and 1, got {}",
                self.jitter
            ));
        }
        if self.backoff_base > self.backoff_max {
            return fail(format!(
                "backoff_base ({:?}) exceeds backoff_max ({:?})",
                self.backoff_base, self.backoff_max
            ));
        }
        if self.enqueue_chunk == 0 || self.enqueue_pipelines == 0 {
            return fail("enqueue_chunk and enqueue_pipelines must be at least 1".to_owned());
        }
        if self.block.is_zero() {
            // BLOCK 0 means "wait forever" to Redis, which would make shutdown hang.
            return fail("block must be longer than zero".to_owned());
        }
        Ok(())
    }

    /// The delay before the attempt after `failed_attempt` (1-based), jitter included.
    ///
    /// Attempt 1 failing waits about `backoff_base`, attempt 2 about twice that, and so on up
    /// to `backoff_max`.
    pub fn backoff(&self, failed_attempt: u32) -> Duration {
        let doublings = failed_attempt.saturating_sub(1).min(32);
        let base = self
            .backoff_base
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.backoff_max);
        if self.jitter <= 0.0 || base.is_zero() {
            return base;
        }
        let factor = rand::rng().random_range((1.0 - self.jitter)..=(1.0 + self.jitter));
        base.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(base_ms: u64, max_ms: u64) -> QueueConfig {
        QueueConfig {
            backoff_base: Duration::from_millis(base_ms),
            backoff_max: Duration::from_millis(max_ms),
            jitter: 0.0,
            ..QueueConfig::default()
        }
    }

    #[test]
    fn backoff_doubles_per_attempt_up_to_the_cap() {
        let config = exact(100, 1_000);
        let delays: Vec<u128> = (1..=6).map(|a| config.backoff(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(config.backoff(u32::MAX), Duration::from_millis(1_000));
    }

    #[test]
    fn jitter_spreads_delays_within_its_bounds() {
        let config = QueueConfig {
            jitter: 0.5,
            ..exact(1_000, 60_000)
        };
        let delays: Vec<Duration> = (0..200).map(|_| config.backoff(1)).collect();
        assert!(
            delays
                .iter()
                .all(|d| (500..=1_500).contains(&d.as_millis()))
        );
        assert!(delays.iter().any(|d| *d != delays[0]), "not all equal");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(QueueConfig::default().validate().is_ok());
        let bad = [
            QueueConfig {
                max_attempts: 0,
                ..QueueConfig::default()
            },
            QueueConfig {
                jitter: 1.5,
                ..QueueConfig::default()
            },
            QueueConfig {
                block: Duration::ZERO,
                ..QueueConfig::default()
            },
            exact(2_000, 1_000),
        ];
        for config in bad {
            assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))));
        }
    }
}
