//! Redis key names of one queue.

use crate::error::{Error, Result};

/// The Redis keys of one queue.
///
/// All of them start with the hash tag `{prefix:name}`, so Redis Cluster puts them in one slot
/// and the queue's scripts and transactions, which touch several of them, stay legal there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    /// The stream holding jobs waiting or in flight.
    pub stream: String,
    /// The sorted set of jobs waiting for a retry, scored by due time in Unix milliseconds.
    pub delayed: String,
    /// The dead-letter stream.
    pub dead: String,
    /// A hash of counters (`retried`, `postponed`, `dead_lettered`) kept by the queue's scripts.
    pub counters: String,
}

impl QueueKeys {
    /// Builds the keys of queue `name` under `prefix`.
    ///
    /// Neither part may be empty or contain `{` or `}`, which would move the hash tag.
    pub fn new(prefix: &str, name: &str) -> Result<Self> {
        check("prefix", prefix)?;
        check("name", name)?;
        let tag = format!("{{{prefix}:{name}}}");
        Ok(Self {
            stream: format!("{tag}:stream"),
            delayed: format!("{tag}:delayed"),
            dead: format!("{tag}:dead"),
            counters: format!("{tag}:counters"),
        })
    }

    /// Every key, for deleting a queue.
    pub fn all(&self) -> [&str; 4] {
        [&self.stream, &self.delayed, &self.dead, &self.counters]
    }
}

fn check(part: &'static str, value: &str) -> Result<()> {
    let why = if value.is_empty() {
        "must not be empty"
    } else if value.contains(['{', '}']) {
        "must not contain braces, which would break the cluster hash tag"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        part,
        value: value.to_owned(),
        why,
    })
}
