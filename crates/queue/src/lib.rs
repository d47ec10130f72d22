//! A typed job queue on Redis Streams with a consumer group.
//!
//! Jobs are any `serde` type, stored as JSON. Producers enqueue them in pipelined batches;
//! workers read batches, do the work, record results where they need them, and only then
//! settle each received job: acknowledge it, retry it later with exponential backoff and jitter,
//! or move it to a dead-letter stream. Jobs held by a worker that died are taken over by
//! another after a configurable idle time. The crate needs nothing else from Clarion.
//!
//! ```no_run
//! use clarion_queue::{Received, Outcome, Queue, QueueConfig};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendEmail {
//!     delivery_id: u64,
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = redis::Client::open("redis://127.0.0.1:6379")?;
//! let queue: Queue<SendEmail> =
//!     Queue::connect(client, "clarion", "email", QueueConfig::default()).await?;
//! queue.enqueue_batch(&[SendEmail { delivery_id: 1 }]).await?;
//!
//! let consumer = queue.consumer("worker-host1-4242").await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # drop(stop);
//! consumer
//!     .run(
//!         async |batch: Vec<Received<SendEmail>>| {
//!             // Do the work for the whole batch, record the results, then answer one
//!             // outcome per job, in order.
//!             batch.iter().map(|_| Outcome::Ack).collect()
//!         },
//!         async move {
//!             let _ = stopped.await;
//!         },
//!     )
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Redis layout
//!
//! A queue named `name` under `prefix` uses four keys, all starting with the hash tag
//! `{prefix:name}` so that Redis Cluster keeps them in one slot (the queue's Lua scripts
//! touch several of them at once, and name every key they touch):
//!
//! - `{prefix:name}:stream`: the job stream, read through one consumer group
//!   ([`QueueConfig::group`]);
//! - `{prefix:name}:delayed`: a sorted set of jobs waiting for a retry or for the time they
//!   were enqueued for, scored by due time;
//! - `{prefix:name}:dead`: the dead-letter stream;
//! - `{prefix:name}:counters`: totals of retries, postponements and dead letters.
//!
//! [`Queue::connect`] and [`Queue::new`] use one Redis server; [`Queue::connect_cluster`]
//! uses a Redis Cluster, where the node owning the queue's slot serves the whole queue
//! (spread the load over nodes by using several queues).
//!
//! # Delivery guarantees
//!
//! Delivery is at least once. A job stays pending in the group from the moment a consumer
//! reads it until it is settled; if the consumer dies in between, the job is delivered again
//! to another consumer by [`Consumer::reclaim`] once it has been idle for
//! [`QueueConfig::reclaim_min_idle`]. A handler that is slower than that may see its jobs
//! taken over and processed twice, so choose the idle time well above the longest batch.
//!
//! # Idempotency and repeated enqueues
//!
//! The queue does not deduplicate: enqueueing the same job twice (a producer retrying after a
//! timeout, or a reconciler re-enqueueing work it believes lost after Redis restarted without
//! persistence) creates two entries. Callers make this safe by carrying their own id in the
//! job (Clarion's delivery jobs carry the delivery id) and letting the handler claim the work
//! with a compare-and-set on their own store, e.g.
//! `UPDATE deliveries SET status = 'sending' WHERE id = $1 AND status = 'queued'`, and
//! acknowledging without doing anything when the claim fails. The same check makes a
//! redelivery after a crash harmless.
//!
//! # Attempts, retries and dead letters
//!
//! [`Received::attempt`] starts at 1. It counts failed attempts that were retried and
//! deliveries to workers that died without settling (the stream's delivery counter), so a
//! job that crashes every worker that touches it is not retried for ever: once it exceeds
//! [`QueueConfig::max_attempts`], a reclaim dead-letters it as
//! [`FailureKind::Abandoned`].
//!
//! A retry acknowledges the entry and adds the job to the delayed set, due after
//! `backoff_base * 2^(attempt - 1)` capped at `backoff_max`, spread by `jitter`. Due jobs are
//! moved back into the stream (as new entries) by a Lua script ([`Queue::promote_due`]) that
//! [`Consumer::next_batch`], [`Consumer::run_once`] and every round of [`Consumer::run`]
//! run; a retry therefore becomes visible at the first read after it is due, at most one
//! block time late. Scores use the Redis server's
//! clock, so workers with skewed clocks agree. A retry on the last allowed attempt
//! dead-letters the job as [`FailureKind::Exhausted`]; [`Outcome::DeadLetter`] does so at once
//! as [`FailureKind::Permanent`]; payloads that do not decode as `J` are dead-lettered as
//! [`FailureKind::Malformed`] when read and never reach a handler. Dead letters keep the
//! payload, the error, the error before it, the attempts made and the time, can be listed
//! with [`Queue::dead_letters`], and put back with a fresh set of attempts with
//! [`Queue::requeue_dead`].
//!
//! The same delayed set serves two cases that are not failures: [`Outcome::Postpone`] puts a
//! job back for later without using an attempt (quiet hours, throttles), and
//! [`Queue::enqueue_at`] adds jobs that become due at a given time.
//!
//! # Stream length and trimming
//!
//! The stream is never trimmed by length: `MAXLEN` (exact or approximate) removes the
//! oldest entries whether or not they were processed, so it could drop jobs. Instead, every
//! settling call (acknowledge, retry, dead-letter) runs a script that trims the stream by id
//! (`XTRIM MINID ~`) below the oldest entry still needed: the oldest pending entry, or when
//! nothing is pending, the last entry delivered to the group. Everything older has been
//! delivered and settled, and `~` only frees whole internal nodes, so the trim never reaches
//! a job in flight or a job not yet read; the stream holds the unfinished work plus at most
//! about one node (100 entries by default) of settled ones. A job held a long time by a slow
//! (or dead, until reclaimed) worker holds back trimming of everything after it.
//!
//! Deleting each settled entry with `XDEL` would keep the stream exact but costs Redis about
//! 5 µs per entry, more than the `XADD` that created it (1.5-2 µs); measured with the
//! benchmark, it halved the consumer rate (58,000 against 131,000 jobs/s on the same
//! machine), while trimming costs about 20 µs per batch of 1,000.
//!
//! Because the trim follows one group's progress, a queue has exactly one consumer group. The
//! dead-letter stream is kept whole unless [`QueueConfig::dead_letter_max_len`] asks for
//! approximate trimming.
//!
//! # Connections
//!
//! Commands that return at once share one connection that reconnects by itself (a
//! [`redis::aio::ConnectionManager`], or a cluster connection). [`Queue::connect`] and
//! [`Queue::connect_cluster`] give it a response timeout of
//! [`QueueConfig::command_timeout`] (redis-rs would use 500 ms); with [`Queue::new`] you pass
//! your own. Each [`Consumer`] opens one more connection used only for `XREADGROUP BLOCK`,
//! with a response timeout of [`QueueConfig::block`] plus
//! [`QueueConfig::read_timeout_margin`], so that a read that waits the whole block time is not
//! cut off, and so that a blocked read does not hold up other commands. If Redis loses the
//! stream, the next read recreates the consumer group.
//!
//! # Tests without sleeping
//!
//! [`Consumer::run_once`] drains what is there (due retries, abandoned jobs with
//! `reclaim_min_idle` zero, and every new entry) and returns counts; [`Queue::promote_due_at`]
//! brings retries forward by passing the time to compare against.
//!
//! # Metrics
//!
//! [`Queue::stats`] reports depth, consumer-group lag, pending, delayed and dead-letter
//! counts and the retry, postponement and dead-letter totals; feed them to your metrics
//! system.

mod config;
mod connection;
mod consumer;
mod dead;
mod entry;
mod error;
mod keys;
mod queue;
mod scripts;
mod stats;

pub mod bench;

pub use config::QueueConfig;
pub use consumer::{Consumer, RunStats, Settled};
pub use dead::{DeadLetter, FailureKind};
pub use entry::{EntryId, JobReceipt, Outcome, Received};
pub use error::{Error, Result};
pub use keys::QueueKeys;
pub use queue::Queue;
pub use stats::QueueStats;
