//! A messages-per-second limit per channel, shared by every worker through Redis.
//!
//! Each second of the (NTP-synchronised) wall clock has a counter key; a worker asks for as
//! many messages as its batch holds and a small Lua script grants what is left of the second's
//! allowance, atomically, handing back what it could not grant. A worker that got less than it
//! asked for sends that much and waits for the next second for the rest. Keys expire two
//! seconds after their second, so the throttle leaves nothing behind.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clarion_model::Channel;
use redis::Script;

const RESERVE: &str = r"
local asked = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local used = redis.call('INCRBY', KEYS[1], asked)
if used == asked then redis.call('PEXPIRE', KEYS[1], 2000) end
local granted = math.max(0, math.min(asked, limit - (used - asked)))
if granted < asked then redis.call('DECRBY', KEYS[1], asked - granted) end
return granted
";

/// The shared throttle of one installation.
#[derive(Clone)]
pub struct Throttle {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    script: Script,
}

impl Throttle {
    /// A throttle whose keys start with the installation's `prefix`.
    #[must_use]
    pub fn new(conn: redis::aio::ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            script: Script::new(RESERVE),
        }
    }

    /// Grants up to `wanted` messages on `channel` in the current second under `limit` per
    /// second; returns how many were granted (possibly 0).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn reserve(
        &self,
        channel: Channel,
        wanted: usize,
        limit: u32,
    ) -> redis::RedisResult<usize> {
        self.reserve_in(channel.as_str(), wanted, limit).await
    }

    /// Like [`Throttle::reserve`], for a limit of its own, e.g. one webhook endpoint's
    /// (`scope` names it; the channels use their names).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn reserve_in(
        &self,
        scope: &str,
        wanted: usize,
        limit: u32,
    ) -> redis::RedisResult<usize> {
        let second = now().as_secs();
        let key = format!("{{{}:throttle}}:{scope}:{second}", self.prefix);
        let mut conn = self.conn.clone();
        let granted: i64 = self
            .script
            .key(key)
            .arg(wanted)
            .arg(limit)
            .invoke_async(&mut conn)
            .await?;
        Ok(usize::try_from(granted).unwrap_or(0))
    }

    /// Waits until at least one of `wanted` messages is granted and returns how many were:
    /// the caller sends that part, then asks again for the rest.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn next_part(
        &self,
        channel: Channel,
        wanted: usize,
        limit: u32,
    ) -> redis::RedisResult<usize> {
        loop {
            let granted = self.reserve(channel, wanted, limit).await?;
            if granted > 0 {
                return Ok(granted);
            }
            tokio::time::sleep(until_next_second()).await;
        }
    }
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// How long until the next second of the wall clock begins, when throttles grant anew.
#[must_use]
pub fn until_next_second() -> Duration {
    let into = now().subsec_millis();
    Duration::from_millis(u64::from(1000 - into.min(999)) + 1)
}
