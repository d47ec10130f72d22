//! The one error type of the crate.

/// Everything that can go wrong while using a queue.
///
/// Redis failures carry the operation that was under way, so a log line says what the queue
/// was doing when the connection broke, not only that it broke.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Redis command or script failed (connection lost, timeout, server error).
    #[error("redis failed while {action}: {source}")]
    Redis {
        /// What the queue was doing, e.g. "enqueueing a batch".
        action: &'static str,
        /// The error reported by the Redis client.
        #[source]
        source: redis::RedisError,
    },

    /// Redis answered, but not in the shape the command promises.
    #[error("unexpected reply from redis to {command}: {detail}")]
    UnexpectedReply {
        /// The command whose reply could not be read.
        command: &'static str,
        /// What was wrong with it.
        detail: String,
    },

    /// A job could not be turned into JSON before enqueueing.
    #[error("job could not be serialized to JSON: {0}")]
    Serialize(#[source] serde_json::Error),

    /// A key prefix or queue name cannot be used to build hash-tagged keys.
    #[error("invalid queue {part} {value:?}: {why}")]
    InvalidName {
        /// Which part was wrong: "prefix" or "name".
        part: &'static str,
        /// The value that was given.
        value: String,
        /// Why it was refused.
        why: &'static str,
    },

    /// A [`QueueConfig`](crate::QueueConfig) value is out of range.
    #[error("invalid queue configuration: {0}")]
    InvalidConfig(String),

    /// A batch handler answered with a different number of outcomes than deliveries it got.
    ///
    /// The batch is left unacknowledged, so its jobs are redelivered after a reclaim.
    #[error("the handler returned {got} outcomes for a batch of {expected} deliveries")]
    OutcomeCount {
        /// Number of deliveries handed to the handler.
        expected: usize,
        /// Number of outcomes it returned.
        got: usize,
    },

    /// The benchmark could not run (only raised by [`bench`](crate::bench)).
    #[error("benchmark failed: {0}")]
    Bench(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the operation under way to a Redis error.
pub(crate) trait RedisContext<T> {
    fn during(self, action: &'static str) -> Result<T>;
}

impl<T> RedisContext<T> for redis::RedisResult<T> {
    fn during(self, action: &'static str) -> Result<T> {
        self.map_err(|source| Error::Redis { action, source })
    }
}
