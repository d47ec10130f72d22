//! Consumers: reading batches, settling them, reclaiming abandoned jobs and the worker loop.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use redis::Value;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::connection::Connection;
use crate::dead::FailureKind;
use crate::entry::{
    EntryId, JobReceipt, Outcome, RawEntry, Received, entries_of, read_reply_entries, string_of,
    unexpected,
};
use crate::error::{Error, RedisContext, Result};
use crate::queue::Queue;
use crate::scripts;

/// How long the worker loop waits before reading again after Redis failed.
const REDIS_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// One worker's membership in the queue's consumer group.
///
/// A consumer reads batches, hands them to your code, and settles each delivery: acknowledge
/// it, retry it later, or dead-letter it. Jobs it reads stay pending in Redis until settled,
/// so if the process dies, another consumer [reclaims](Consumer::reclaim) them.
pub struct Consumer<J> {
    queue: Queue<J>,
    name: String,
    /// Dedicated to `XREADGROUP BLOCK`, whose reply may take the whole block time; sharing
    /// the queue's connection would stall every other command behind it.
    blocking: Connection,
}

impl<J> std::fmt::Debug for Consumer<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How many deliveries one call settled, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Acknowledged.
    pub acked: usize,
    /// Scheduled for another attempt, or postponed.
    pub retried: usize,
    /// Moved to the dead-letter stream (failed for good or out of attempts).
    pub dead_lettered: usize,
}

/// What a [`Consumer::run_once`] or [`Consumer::run`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Batches handed to the handler.
    pub batches: usize,
    /// Deliveries handed to the handler.
    pub handled: usize,
    /// Deliveries acknowledged.
    pub acked: usize,
    /// Deliveries scheduled for a retry or postponed.
    pub retried: usize,
    /// Jobs dead-lettered: by the handler, out of attempts, malformed, or abandoned too often.
    pub dead_lettered: usize,
    /// Delayed retries moved back into the stream.
    pub promoted: usize,
    /// Deliveries taken over from consumers presumed dead.
    pub reclaimed: usize,
}

impl RunStats {
    fn add_settled(&mut self, settled: Settled) {
        self.acked += settled.acked;
        self.retried += settled.retried;
        self.dead_lettered += settled.dead_lettered;
    }
}

/// A job to dead-letter: entry, attempts made, why, and the error.
type DeadJob = (EntryId, u32, FailureKind, String);

/// A job to put in the delayed set: entry, attempts made, delay, error (empty keeps the
/// previous one), and the counter to increment.
type Scheduled = (EntryId, u32, Duration, String, &'static str);

/// Counter of retries in the queue's counters hash.
const RETRIED: &str = "retried";
/// Counter of postponements in the queue's counters hash.
const POSTPONED: &str = "postponed";

impl<J> Consumer<J> {
    /// The consumer's name in the group.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue this consumer reads.
    pub fn queue(&self) -> &Queue<J> {
        &self.queue
    }

    /// Acknowledges deliveries. Returns how many were still pending.
    ///
    /// The entries leave the stream with the next trim of its settled prefix (part of this
    /// call), so they are never delivered again.
    pub async fn ack(&self, ids: &[EntryId]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut invocation = scripts::ACK.key(&self.queue.keys.stream);
        invocation.arg(&self.queue.config.group);
        for id in ids {
            invocation.arg(id.as_str());
        }
        let mut conn = self.queue.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .during("acknowledging a batch")
    }

    /// Schedules another attempt of a delivery after the backoff, or dead-letters it when it
    /// was the last allowed attempt.
    pub async fn retry(&self, delivery: &Received<J>, error: impl Into<String>) -> Result<Settled> {
        self.settle(vec![(delivery.receipt(), Outcome::retry(error))])
            .await
    }

    /// Moves a delivery to the dead-letter stream at once.
    pub async fn dead_letter(
        &self,
        delivery: &Received<J>,
        error: impl Into<String>,
    ) -> Result<Settled> {
        self.settle(vec![(delivery.receipt(), Outcome::dead_letter(error))])
            .await
    }

    /// Settles a batch: acknowledges, schedules retries and dead-letters as the outcomes say,
    /// with at most three round trips.
    ///
    /// Retries and dead letters apply only to entries this consumer still holds: if another
    /// consumer reclaimed a job in the meantime, it is that consumer's to settle.
    pub async fn settle(&self, results: Vec<(JobReceipt, Outcome)>) -> Result<Settled> {
        let config = &self.queue.config;
        let mut acks = Vec::new();
        let mut retries = Vec::new();
        let mut dead: Vec<DeadJob> = Vec::new();
        for (receipt, outcome) in results {
            match outcome {
                Outcome::Ack => acks.push(receipt.id),
                Outcome::Retry { error, after } if receipt.attempt < config.max_attempts => {
                    let delay = after.unwrap_or_else(|| config.backoff(receipt.attempt));
                    retries.push((receipt.id, receipt.attempt, delay, error, RETRIED));
                }
                Outcome::Postpone { after } => {
                    // The attempt did not happen, so the next delivery gets the same number.
                    let made = receipt.attempt.saturating_sub(1);
                    retries.push((receipt.id, made, after, String::new(), POSTPONED));
                }
                Outcome::Retry { error, .. } => {
                    dead.push((receipt.id, receipt.attempt, FailureKind::Exhausted, error));
                }
                Outcome::DeadLetter { error } => {
                    dead.push((receipt.id, receipt.attempt, FailureKind::Permanent, error));
                }
            }
        }
        Ok(Settled {
            acked: self.ack(&acks).await?,
            retried: self.schedule_retries(&retries).await?,
            dead_lettered: self.move_to_dead(&dead).await?,
        })
    }

    async fn schedule_retries(&self, jobs: &[Scheduled]) -> Result<usize> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let keys = &self.queue.keys;
        let mut invocation = scripts::RETRY.key(&keys.stream);
        invocation
            .key(&keys.delayed)
            .key(&keys.counters)
            .arg(&self.queue.config.group)
            .arg(&self.name);
        for (id, attempts_made, delay, error, counter) in jobs {
            let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            invocation
                .arg(id.as_str())
                .arg(attempts_made)
                .arg(delay_ms)
                .arg(error)
                .arg(*counter);
        }
        let mut conn = self.queue.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .during("scheduling retries")
    }

    async fn move_to_dead(&self, jobs: &[DeadJob]) -> Result<usize> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let keys = &self.queue.keys;
        let mut invocation = scripts::DEAD_LETTER.key(&keys.stream);
        invocation
            .key(&keys.dead)
            .key(&keys.counters)
            .arg(&self.queue.config.group)
            .arg(&self.name)
            .arg(self.queue.config.dead_letter_max_len.unwrap_or(0));
        for (id, attempts, kind, error) in jobs {
            invocation
                .arg(id.as_str())
                .arg(attempts)
                .arg(kind.as_str())
                .arg(error);
        }
        let mut conn = self.queue.conn.clone();
        let moved = invocation
            .invoke_async(&mut conn)
            .await
            .during("dead-lettering jobs")?;
        if moved > 0 {
            tracing::warn!(
                queue = %keys.stream,
                consumer = %self.name,
                count = moved,
                "jobs moved to the dead-letter stream"
            );
        }
        Ok(moved)
    }
}

impl<J: DeserializeOwned> Consumer<J> {
    pub(crate) async fn open(queue: Queue<J>, name: String) -> Result<Self> {
        if name.is_empty() {
            return Err(Error::InvalidName {
                part: "consumer name",
                value: name,
                why: "must not be empty",
            });
        }
        let timeout = queue.config.block + queue.config.read_timeout_margin;
        let blocking = queue
            .connector
            .open(timeout)
            .await
            .during("opening the blocking read connection")?;
        Ok(Self {
            queue,
            name,
            blocking,
        })
    }

    /// Promotes due retries, then waits up to [`QueueConfig::block`](crate::QueueConfig::block)
    /// for new jobs and returns at most `max` of them (an empty batch when none came).
    ///
    /// Entries whose payload does not decode are dead-lettered here and never returned.
    pub async fn next_batch(&self, max: usize) -> Result<Vec<Received<J>>> {
        self.queue.promote_due().await?;
        Ok(self.read(max, true).await?.0)
    }

    /// Returns at most `max` new jobs without waiting (an empty batch when there are none).
    /// Does not promote retries.
    pub async fn try_next_batch(&self, max: usize) -> Result<Vec<Received<J>>> {
        Ok(self.read(max, false).await?.0)
    }

    /// Takes over up to one batch of jobs that other consumers (or this one, in an earlier
    /// life under the same name) received at least
    /// [`QueueConfig::reclaim_min_idle`](crate::QueueConfig::reclaim_min_idle) ago and never
    /// settled. Such a delivery counts as an attempt; jobs that ran out of attempts this way
    /// are dead-lettered as abandoned instead of being returned.
    pub async fn reclaim(&self) -> Result<Vec<Received<J>>> {
        Ok(self
            .reclaim_idle(self.queue.config.reclaim_min_idle)
            .await?
            .0)
    }

    /// [`reclaim`](Self::reclaim) with an explicit idle time; returns the deliveries and how
    /// many jobs were dead-lettered instead.
    pub async fn reclaim_idle(&self, min_idle: Duration) -> Result<(Vec<Received<J>>, usize)> {
        let config = &self.queue.config;
        let keys = &self.queue.keys;
        let min_idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let mut conn = self.queue.conn.clone();
        let mut cursor = "0-0".to_owned();
        let mut raws = Vec::new();
        loop {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&keys.stream)
                .arg(&config.group)
                .arg(&self.name)
                .arg(min_idle_ms)
                .arg(&cursor)
                .arg("COUNT")
                .arg(config.batch_size - raws.len())
                .query_async(&mut conn)
                .await
                .during("reclaiming abandoned jobs")?;
            let Value::Array(parts) = reply else {
                return Err(unexpected("XAUTOCLAIM", format!("reply {reply:?}")));
            };
            let mut parts = parts.into_iter();
            let (Some(next), Some(entries)) = (parts.next(), parts.next()) else {
                return Err(unexpected("XAUTOCLAIM", "reply too short".to_owned()));
            };
            cursor = string_of("XAUTOCLAIM", next)?;
            raws.extend(entries_of("XAUTOCLAIM", entries)?);
            if cursor == "0-0" || raws.len() >= config.batch_size {
                break;
            }
        }
        if raws.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let delivered = self.delivery_counts(&raws).await?;
        let (deliveries, mut dead) = self.decode(raws, |raw| {
            let times = delivered.get(&raw.id).copied().unwrap_or(1);
            raw.attempts_before.saturating_add(times)
        });
        let (deliveries, abandoned): (Vec<_>, Vec<_>) = deliveries
            .into_iter()
            .partition(|d| d.attempt <= config.max_attempts);
        dead.extend(abandoned.into_iter().map(|d| {
            let error = format!(
                "attempt {} exceeds the {} allowed: its deliveries were never settled, so the \
                 workers holding it are presumed dead",
                d.attempt, config.max_attempts
            );
            (d.id, d.attempt, FailureKind::Abandoned, error)
        }));
        let dead_lettered = self.move_to_dead(&dead).await?;
        Ok((deliveries, dead_lettered))
    }

    /// How often each of the given pending entries has been delivered, in one round trip.
    async fn delivery_counts(&self, raws: &[RawEntry]) -> Result<HashMap<EntryId, u32>> {
        let keys = &self.queue.keys;
        let mut pipe = redis::Pipeline::with_capacity(raws.len());
        for raw in raws {
            pipe.cmd("XPENDING")
                .arg(&keys.stream)
                .arg(&self.queue.config.group)
                .arg(raw.id.as_str())
                .arg(raw.id.as_str())
                .arg(1);
        }
        let mut conn = self.queue.conn.clone();
        let pending: Vec<Vec<(String, String, u64, u32)>> = pipe
            .query_async(&mut conn)
            .await
            .during("reading delivery counts")?;
        Ok(pending
            .into_iter()
            .flatten()
            .map(|(id, _, _, count)| (EntryId::new(id), count))
            .collect())
    }

    /// Reads new entries; returns the decodable ones and how many were dead-lettered.
    async fn read(&self, max: usize, block: bool) -> Result<(Vec<Received<J>>, usize)> {
        let config = &self.queue.config;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&config.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(max.max(1));
        if block {
            cmd.arg("BLOCK")
                .arg(u64::try_from(config.block.as_millis()).unwrap_or(u64::MAX));
        }
        cmd.arg("STREAMS").arg(&self.queue.keys.stream).arg(">");
        let mut conn = if block {
            self.blocking.clone()
        } else {
            self.queue.conn.clone()
        };
        let reply: Value = match cmd.query_async(&mut conn).await {
            Err(e) if e.code() == Some("NOGROUP") => {
                // Redis lost the stream (restart without persistence, or a flush): recreate the
                // group so that re-enqueued jobs are read.
                tracing::warn!(queue = %self.queue.keys.stream, "consumer group missing; recreating it");
                self.queue.ensure_group().await?;
                cmd.query_async(&mut conn).await
            }
            other => other,
        }
        .during("reading a batch")?;
        let raws = read_reply_entries(reply)?;
        let (deliveries, dead) = self.decode(raws, |raw| raw.attempts_before.saturating_add(1));
        let dead_lettered = self.move_to_dead(&dead).await?;
        Ok((deliveries, dead_lettered))
    }

    /// Decodes payloads; entries that do not decode become dead letters.
    fn decode(
        &self,
        raws: Vec<RawEntry>,
        attempt: impl Fn(&RawEntry) -> u32,
    ) -> (Vec<Received<J>>, Vec<DeadJob>) {
        let mut deliveries = Vec::with_capacity(raws.len());
        let mut dead = Vec::new();
        for raw in raws {
            let attempt = attempt(&raw);
            let Some(payload) = raw.payload else {
                let error = "entry has no payload field 'p'".to_owned();
                dead.push((raw.id, attempt, FailureKind::Malformed, error));
                continue;
            };
            match serde_json::from_slice(&payload) {
                Ok(job) => deliveries.push(Received {
                    id: raw.id,
                    attempt,
                    job,
                    last_error: raw.last_error,
                }),
                Err(e) => {
                    let error = format!(
                        "payload does not decode as {}: {e}",
                        std::any::type_name::<J>()
                    );
                    dead.push((raw.id, attempt, FailureKind::Malformed, error));
                }
            }
        }
        (deliveries, dead)
    }

    /// Drains the queue once, without waiting: promotes due retries, takes over jobs abandoned
    /// for at least [`QueueConfig::reclaim_min_idle`](crate::QueueConfig::reclaim_min_idle),
    /// then reads batches until the stream has nothing new, handing each batch to `handler`
    /// and settling it with the outcomes it returns (one per delivery, in order).
    ///
    /// Retries scheduled during the call are not promoted again by it, so a failing job is
    /// attempted at most once per call.
    #[tracing::instrument(skip_all, fields(queue = %self.queue.keys.stream, consumer = %self.name))]
    pub async fn run_once<F>(&self, mut handler: F) -> Result<RunStats>
    where
        F: AsyncFnMut(Vec<Received<J>>) -> Vec<Outcome>,
    {
        let mut stats = RunStats {
            promoted: self.queue.promote_due().await?,
            ..RunStats::default()
        };
        self.reclaim_all(&mut handler, &mut stats).await?;
        loop {
            let (batch, dead) = self.read(self.queue.config.batch_size, false).await?;
            stats.dead_lettered += dead;
            if batch.is_empty() {
                if dead == 0 {
                    return Ok(stats);
                }
                continue;
            }
            self.handle(batch, &mut handler, &mut stats).await?;
        }
    }

    /// Runs a worker until `shutdown` completes, then returns what it did.
    ///
    /// Each round promotes due retries, reclaims abandoned jobs (and removes consumers idle
    /// for as long, see [`Queue::remove_idle_consumers`]) every
    /// [`QueueConfig::reclaim_interval`](crate::QueueConfig::reclaim_interval), and waits up
    /// to the block time for a batch. Shutdown is observed between rounds: the batch in hand
    /// is finished and settled first, so stopping never leaves jobs to be reclaimed; it takes
    /// at most the block time plus one batch's work. Redis failures are logged and retried
    /// after a pause (the connection reconnects by itself); any other error ends the loop.
    #[tracing::instrument(skip_all, fields(queue = %self.queue.keys.stream, consumer = %self.name))]
    pub async fn run<F, S>(&self, mut handler: F, shutdown: S) -> Result<RunStats>
    where
        F: AsyncFnMut(Vec<Received<J>>) -> Vec<Outcome>,
        S: Future<Output = ()>,
    {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut stats = RunStats::default();
        let mut next_reclaim = Instant::now();
        loop {
            if shutdown.as_mut().now_or_never().is_some() {
                return Ok(stats);
            }
            let round = self
                .round(&mut handler, &mut stats, &mut next_reclaim)
                .await;
            match round {
                Ok(()) => {}
                Err(error @ Error::Redis { .. }) => {
                    tracing::warn!(
                        queue = %self.queue.keys.stream,
                        consumer = %self.name,
                        %error,
                        "queue round failed; retrying"
                    );
                    tokio::select! {
                        () = shutdown.as_mut() => return Ok(stats),
                        () = tokio::time::sleep(REDIS_ERROR_PAUSE) => {}
                    }
                }
                Err(other) => return Err(other),
            }
        }
    }

    async fn round<F>(
        &self,
        handler: &mut F,
        stats: &mut RunStats,
        next_reclaim: &mut Instant,
    ) -> Result<()>
    where
        F: AsyncFnMut(Vec<Received<J>>) -> Vec<Outcome>,
    {
        stats.promoted += self.queue.promote_due().await?;
        if Instant::now() >= *next_reclaim {
            self.reclaim_all(handler, stats).await?;
            // A consumer idle for the reclaim time holds nothing worth waiting for.
            self.queue
                .remove_idle_consumers(self.queue.config.reclaim_min_idle)
                .await?;
            *next_reclaim = Instant::now() + self.queue.config.reclaim_interval;
        }
        let (batch, dead) = self.read(self.queue.config.batch_size, true).await?;
        stats.dead_lettered += dead;
        if !batch.is_empty() {
            self.handle(batch, handler, stats).await?;
        }
        Ok(())
    }

    async fn reclaim_all<F>(&self, handler: &mut F, stats: &mut RunStats) -> Result<()>
    where
        F: AsyncFnMut(Vec<Received<J>>) -> Vec<Outcome>,
    {
        loop {
            let (batch, dead) = self
                .reclaim_idle(self.queue.config.reclaim_min_idle)
                .await?;
            stats.dead_lettered += dead;
            if batch.is_empty() {
                if dead == 0 {
                    return Ok(());
                }
                continue;
            }
            stats.reclaimed += batch.len();
            self.handle(batch, handler, stats).await?;
        }
    }

    async fn handle<F>(
        &self,
        batch: Vec<Received<J>>,
        handler: &mut F,
        stats: &mut RunStats,
    ) -> Result<()>
    where
        F: AsyncFnMut(Vec<Received<J>>) -> Vec<Outcome>,
    {
        let receipts: Vec<JobReceipt> = batch.iter().map(Received::receipt).collect();
        stats.batches += 1;
        stats.handled += receipts.len();
        let outcomes = handler(batch).await;
        if outcomes.len() != receipts.len() {
            return Err(Error::OutcomeCount {
                expected: receipts.len(),
                got: outcomes.len(),
            });
        }
        let settled = self
            .settle(receipts.into_iter().zip(outcomes).collect())
            .await?;
        stats.add_settled(settled);
        Ok(())
    }
}
