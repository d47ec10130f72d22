//! Dead letters: jobs that will not be attempted again unless someone requeues them.

use std::fmt;
use std::time::SystemTime;

use serde::de::DeserializeOwned;

use crate::entry::EntryId;

/// Why a job ended up in the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// Every allowed attempt failed with a transient error.
    Exhausted,
    /// The handler reported a failure that retrying cannot fix.
    Permanent,
    /// The payload could not be decoded as the queue's job type.
    Malformed,
    /// Workers kept dying (or timing out) with the job in hand until its attempts ran out.
    Abandoned,
    /// A kind written by something else than this version of the crate.
    Other(String),
}

impl FailureKind {
    /// The word stored in Redis.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Exhausted => "exhausted",
            Self::Permanent => "permanent",
            Self::Malformed => "malformed",
            Self::Abandoned => "abandoned",
            Self::Other(other) => other,
        }
    }

    pub(crate) fn parse(word: &str) -> Self {
        match word {
            "exhausted" => Self::Exhausted,
            "permanent" => Self::Permanent,
            "malformed" => Self::Malformed,
            "abandoned" => Self::Abandoned,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the dead-letter stream.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Id in the dead-letter stream; pass it to requeue or delete the dead letter.
    pub id: EntryId,
    /// The id the job had in the job stream when it failed, if known.
    pub source_id: Option<EntryId>,
    /// Why it failed for good.
    pub kind: FailureKind,
    /// The error of the last attempt (or the decoding error for malformed payloads).
    pub error: String,
    /// The error of the attempt before the last one, if the job had been retried.
    pub previous_error: Option<String>,
    /// Attempts made, the last one included.
    pub attempts: u32,
    /// When the job was dead-lettered (server time).
    pub failed_at: Option<SystemTime>,
    /// The job as stored, JSON unless the job was malformed.
    pub payload: String,
}

impl DeadLetter {
    /// Decodes the payload as a job.
    pub fn decode<J: DeserializeOwned>(&self) -> Result<J, serde_json::Error> {
        serde_json::from_str(&self.payload)
    }
}
