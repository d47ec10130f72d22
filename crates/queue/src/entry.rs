//! What a consumer receives (a [`Received`] job in a stream entry) and what a handler answers.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;

use crate::error::{Error, Result};

/// The id Redis gave a stream entry (`<milliseconds>-<sequence>`).
///
/// A job gets a new id each time it re-enters the stream (after a retry or a requeue), so the
/// id names one stay in the queue, not the job; carry your own id in the job to recognise it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(String);

impl EntryId {
    /// Wraps an id as Redis printed it.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as Redis prints it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the entry was added, from the milliseconds part of the id.
    pub fn timestamp(&self) -> Option<SystemTime> {
        let millis: u64 = self.0.split('-').next()?.parse().ok()?;
        UNIX_EPOCH.checked_add(Duration::from_millis(millis))
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One job handed to a consumer (a stay of the job in the stream, received by this consumer).
#[derive(Debug, Clone, PartialEq)]
pub struct Received<J> {
    /// The stream entry to acknowledge, retry or dead-letter.
    pub id: EntryId,
    /// Which attempt this is, starting at 1. Counts earlier failed attempts and hand-overs to
    /// workers that died before acknowledging.
    pub attempt: u32,
    /// The decoded job.
    pub job: J,
    /// The error the previous attempt reported, if it was retried.
    pub last_error: Option<String>,
}

impl<J> Received<J> {
    /// The part of the received job needed to settle it once the job itself has been consumed.
    pub fn receipt(&self) -> JobReceipt {
        JobReceipt {
            id: self.id.clone(),
            attempt: self.attempt,
        }
    }
}

/// Identifies a received job to settle: its entry and the attempt it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReceipt {
    /// The stream entry.
    pub id: EntryId,
    /// The attempt number.
    pub attempt: u32,
}

/// What became of one received job, as a handler reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: acknowledge the entry; it is never delivered again.
    Ack,
    /// Failed for a reason that may pass (timeout, 4xx from SMTP, 429/5xx from a webhook):
    /// try again after the backoff, or `after` when given; dead-letter when attempts are
    /// exhausted.
    Retry {
        /// Why the attempt failed; kept with the job and shown if it ends as a dead letter.
        error: String,
        /// Overrides the backoff, e.g. with a peer's `Retry-After`.
        after: Option<Duration>,
    },
    /// Not a failure: the job may not run yet (quiet hours, a throttle or frequency cap).
    /// Run it again after `after`, without using up an attempt.
    Postpone {
        /// How long to wait.
        after: Duration,
    },
    /// Failed for good (invalid address, 5xx from SMTP): dead-letter now.
    DeadLetter {
        /// Why the job cannot succeed.
        error: String,
    },
}

impl Outcome {
    /// A transient failure retried after the configured backoff.
    pub fn retry(error: impl Into<String>) -> Self {
        Self::Retry {
            error: error.into(),
            after: None,
        }
    }

    /// A permanent failure.
    pub fn dead_letter(error: impl Into<String>) -> Self {
        Self::DeadLetter {
            error: error.into(),
        }
    }
}

/// A stream entry as read, before its payload is decoded.
#[derive(Debug)]
pub(crate) struct RawEntry {
    pub id: EntryId,
    pub payload: Option<Vec<u8>>,
    /// Attempts made before the entry entered the stream (field `a`).
    pub attempts_before: u32,
    pub last_error: Option<String>,
}

/// Reads the entries of an `XREADGROUP` reply for one stream (nil when nothing arrived).
pub(crate) fn read_reply_entries(reply: Value) -> Result<Vec<RawEntry>> {
    const COMMAND: &str = "XREADGROUP";
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => Ok(pair.swap_remove(1)),
                other => Err(unexpected(COMMAND, format!("stream element {other:?}"))),
            })
            .collect::<Result<Vec<_>>>()?,
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        other => return Err(unexpected(COMMAND, format!("top level {other:?}"))),
    };
    let mut out = Vec::new();
    for entries in streams {
        out.extend(entries_of(COMMAND, entries)?);
    }
    Ok(out)
}

/// Reads a list of stream entries (`[[id, [field, value, ...]], ...]`), skipping entries
/// whose fields are nil (deleted while pending).
pub(crate) fn entries_of(command: &'static str, value: Value) -> Result<Vec<RawEntry>> {
    let Value::Array(entries) = value else {
        return Err(unexpected(command, format!("entry list {value:?}")));
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            return Err(unexpected(command, format!("entry {entry:?}")));
        };
        if parts.len() < 2 {
            return Err(unexpected(
                command,
                format!("entry with {} parts", parts.len()),
            ));
        }
        let fields = std::mem::take(&mut parts[1]);
        let id = EntryId(string_of(command, std::mem::take(&mut parts[0]))?);
        let fields = match fields {
            Value::Array(fields) => fields,
            Value::Nil => continue,
            other => return Err(unexpected(command, format!("fields {other:?}"))),
        };
        let mut raw = RawEntry {
            id,
            payload: None,
            attempts_before: 0,
            last_error: None,
        };
        let mut fields = fields.into_iter();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            match bytes_of(&name) {
                Some(b"p") => raw.payload = into_bytes(value),
                Some(b"a") => {
                    raw.attempts_before = into_bytes(value)
                        .and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
                        .unwrap_or(0);
                }
                Some(b"e") => {
                    raw.last_error = into_bytes(value)
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .filter(|e| !e.is_empty());
                }
                _ => {}
            }
        }
        out.push(raw);
    }
    Ok(out)
}

/// A Redis string reply as a Rust string.
pub(crate) fn string_of(command: &'static str, value: Value) -> Result<String> {
    into_bytes(value)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| unexpected(command, "a string that is not text".to_owned()))
}

fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn into_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

pub(crate) fn unexpected(command: &'static str, detail: String) -> Error {
    Error::UnexpectedReply { command, detail }
}
