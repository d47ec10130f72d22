//! The queue handle: enqueueing, delayed retries, dead letters and statistics.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use redis::aio::ConnectionManager;
use redis::cluster::ClusterClient;
use redis::streams::{StreamInfoConsumersReply, StreamInfoGroupsReply};
use redis::{Client, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::QueueConfig;
use crate::connection::{Connection, Connector};
use crate::consumer::Consumer;
use crate::dead::{DeadLetter, FailureKind};
use crate::entry::{EntryId, string_of, unexpected};
use crate::error::{Error, RedisContext, Result};
use crate::keys::QueueKeys;
use crate::scripts;
use crate::stats::QueueStats;

/// Most delayed jobs one promotion script call moves, so one call never blocks Redis long.
const PROMOTE_CHUNK: usize = 1_000;

/// A typed job queue on one Redis stream.
///
/// Cheap to clone: clones share the connection and the configuration. Every method that does
/// not block uses the shared connection; consumers open their own connection for blocking
/// reads.
pub struct Queue<J> {
    pub(crate) connector: Connector,
    pub(crate) conn: Connection,
    pub(crate) keys: Arc<QueueKeys>,
    pub(crate) config: Arc<QueueConfig>,
    job: PhantomData<fn() -> J>,
}

impl<J> Clone for Queue<J> {
    fn clone(&self) -> Self {
        Self {
            connector: self.connector.clone(),
            conn: self.conn.clone(),
            keys: Arc::clone(&self.keys),
            config: Arc::clone(&self.config),
            job: PhantomData,
        }
    }
}

impl<J> std::fmt::Debug for Queue<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("keys", &self.keys)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<J> Queue<J> {
    /// Opens a queue on one Redis server with its own shared connection (response timeout
    /// [`QueueConfig::command_timeout`]) and creates its consumer group if needed.
    pub async fn connect(
        client: Client,
        prefix: &str,
        name: &str,
        config: QueueConfig,
    ) -> Result<Self> {
        Self::open(Connector::Single(client), prefix, name, config).await
    }

    /// Opens a queue on a Redis Cluster, like [`connect`](Self::connect). The queue's keys
    /// share one hash slot, so the node owning that slot serves the whole queue.
    pub async fn connect_cluster(
        client: ClusterClient,
        prefix: &str,
        name: &str,
        config: QueueConfig,
    ) -> Result<Self> {
        Self::open(Connector::Cluster(Box::new(client)), prefix, name, config).await
    }

    async fn open(
        connector: Connector,
        prefix: &str,
        name: &str,
        config: QueueConfig,
    ) -> Result<Self> {
        config.validate()?;
        let conn = connector
            .open(config.command_timeout)
            .await
            .during("connecting to redis")?;
        Self::assemble(connector, conn, prefix, name, config).await
    }

    /// Opens a queue on an existing shared connection to one Redis server and creates its
    /// consumer group if needed.
    ///
    /// `client` is used only to open the dedicated blocking connection of each consumer.
    pub async fn new(
        client: Client,
        conn: ConnectionManager,
        prefix: &str,
        name: &str,
        config: QueueConfig,
    ) -> Result<Self> {
        let conn = Connection::Single(conn);
        Self::assemble(Connector::Single(client), conn, prefix, name, config).await
    }

    async fn assemble(
        connector: Connector,
        conn: Connection,
        prefix: &str,
        name: &str,
        config: QueueConfig,
    ) -> Result<Self> {
        config.validate()?;
        let queue = Self {
            connector,
            conn,
            keys: Arc::new(QueueKeys::new(prefix, name)?),
            config: Arc::new(config),
            job: PhantomData,
        };
        queue.ensure_group().await?;
        Ok(queue)
    }

    /// The Redis keys of this queue.
    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    /// The configuration the queue was opened with.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Creates the stream and its consumer group unless they exist.
    ///
    /// The group starts at the beginning of the stream, so jobs enqueued before the first
    /// worker started are delivered too. Consumers call this again when Redis lost the stream
    /// (a restart without persistence).
    pub async fn ensure_group(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(&self.config.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other.during("creating the consumer group"),
        }
    }

    /// Moves every delayed job (retry, postponement, or job enqueued for later) that is due
    /// by the server's clock into the stream. Returns how many jobs were moved.
    pub async fn promote_due(&self) -> Result<usize> {
        self.promote(None).await
    }

    /// Moves every delayed job due at `now` into the stream, whatever the clocks say; meant
    /// for tests and tools that need to bring retries forward.
    pub async fn promote_due_at(&self, now: SystemTime) -> Result<usize> {
        self.promote(Some(unix_millis(now))).await
    }

    async fn promote(&self, now_ms: Option<u64>) -> Result<usize> {
        let mut conn = self.conn.clone();
        let mut total = 0;
        loop {
            let moved: usize = scripts::PROMOTE
                .key(&self.keys.stream)
                .key(&self.keys.delayed)
                .key(&self.keys.dead)
                .arg(now_ms.map(|n| n.to_string()).unwrap_or_default())
                .arg(PROMOTE_CHUNK)
                .invoke_async(&mut conn)
                .await
                .during("promoting due retries")?;
            total += moved;
            if moved < PROMOTE_CHUNK {
                return Ok(total);
            }
        }
    }

    /// Reads the queue's figures: depth, lag, pending, delayed, dead letters and counters.
    pub async fn stats(&self) -> Result<QueueStats> {
        let mut conn = self.conn.clone();
        let (stream_len, delayed, dead, counters): (u64, u64, u64, HashMap<String, u64>) =
            redis::pipe()
                .cmd("XLEN")
                .arg(&self.keys.stream)
                .cmd("ZCARD")
                .arg(&self.keys.delayed)
                .cmd("XLEN")
                .arg(&self.keys.dead)
                .cmd("HGETALL")
                .arg(&self.keys.counters)
                .query_async(&mut conn)
                .await
                .during("reading queue sizes")?;
        let groups: redis::RedisResult<StreamInfoGroupsReply> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.keys.stream)
            .query_async(&mut conn)
            .await;
        let group = match groups {
            Ok(reply) => reply
                .groups
                .into_iter()
                .find(|g| g.name == self.config.group),
            // The stream vanished (Redis lost it): there is no group and nothing pending.
            Err(e) if is_missing_key(&e) => None,
            Err(e) => return Err(e).during("reading consumer-group info"),
        };
        let (pending, consumers, lag) = group.map_or((0, 0, None), |g| {
            (
                g.pending as u64,
                g.consumers as u64,
                g.lag.map(|l| l as u64),
            )
        });
        // Redis answers nil when deletions in the stream keep it from counting; the queue never
        // deletes single entries, but another client might. The fallback counts settled
        // entries not yet trimmed as waiting, so it errs on the high side.
        let lag = lag.unwrap_or_else(|| stream_len.saturating_sub(pending));
        Ok(QueueStats {
            depth: lag + pending,
            stream_len,
            lag,
            pending,
            delayed,
            dead,
            consumers,
            retried_total: counters.get("retried").copied().unwrap_or(0),
            postponed_total: counters.get("postponed").copied().unwrap_or(0),
            dead_lettered_total: counters.get("dead_lettered").copied().unwrap_or(0),
        })
    }

    /// Removes consumers of the group that hold no jobs and have not read for `min_idle`,
    /// so the names of workers that exited do not pile up. Returns how many were removed.
    ///
    /// Safe for live consumers too: one that reads again is re-registered by Redis.
    pub async fn remove_idle_consumers(&self, min_idle: std::time::Duration) -> Result<usize> {
        let mut conn = self.conn.clone();
        let reply: redis::RedisResult<StreamInfoConsumersReply> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.keys.stream)
            .arg(&self.config.group)
            .query_async(&mut conn)
            .await;
        let consumers = match reply {
            Ok(reply) => reply.consumers,
            Err(e) if e.code() == Some("NOGROUP") || is_missing_key(&e) => return Ok(0),
            Err(e) => return Err(e).during("listing consumers"),
        };
        let min_idle_ms = usize::try_from(min_idle.as_millis()).unwrap_or(usize::MAX);
        let idle: Vec<&str> = consumers
            .iter()
            .filter(|c| c.pending == 0 && c.idle >= min_idle_ms)
            .map(|c| c.name.as_str())
            .collect();
        if idle.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for name in &idle {
            pipe.cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(&self.keys.stream)
                .arg(&self.config.group)
                .arg(*name)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .during("removing idle consumers")?;
        tracing::info!(queue = %self.keys.stream, removed = idle.len(), "removed idle consumers");
        Ok(idle.len())
    }

    /// Lists up to `count` dead letters, oldest first, starting after `after` (exclusive) so
    /// a caller can page through them.
    pub async fn dead_letters(
        &self,
        after: Option<&EntryId>,
        count: usize,
    ) -> Result<Vec<DeadLetter>> {
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let mut conn = self.conn.clone();
        let reply: Value = redis::cmd("XRANGE")
            .arg(&self.keys.dead)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .during("listing dead letters")?;
        parse_dead_letters(reply)
    }

    /// Puts dead letters back into the job stream with a fresh set of attempts and removes
    /// them from the dead-letter stream. Returns how many were requeued (unknown ids are
    /// skipped).
    pub async fn requeue_dead(&self, ids: &[EntryId]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let mut invocation = scripts::REQUEUE.key(&self.keys.stream);
        invocation.key(&self.keys.dead);
        for id in ids {
            invocation.arg(id.as_str());
        }
        invocation
            .invoke_async(&mut conn)
            .await
            .during("requeueing dead letters")
    }

    /// Deletes dead letters for good. Returns how many existed.
    pub async fn delete_dead(&self, ids: &[EntryId]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        redis::cmd("XDEL")
            .arg(&self.keys.dead)
            .arg(ids.iter().map(EntryId::as_str).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await
            .during("deleting dead letters")
    }

    /// Deletes every key of the queue: jobs, retries, dead letters and counters.
    pub async fn destroy(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(&self.keys.all()[..])
            .query_async::<()>(&mut conn)
            .await
            .during("deleting the queue")
    }
}

impl<J: Serialize> Queue<J> {
    /// Adds one job. Returns its stream id.
    pub async fn enqueue(&self, job: &J) -> Result<EntryId> {
        let mut ids = self.enqueue_batch(std::slice::from_ref(job)).await?;
        ids.pop()
            .ok_or_else(|| unexpected("XADD", "no id returned for the enqueued job".to_owned()))
    }

    /// Adds jobs in pipelines of [`QueueConfig::enqueue_chunk`], with up to
    /// [`QueueConfig::enqueue_pipelines`] pipelines in flight. Returns the stream ids in the
    /// order of `jobs`.
    ///
    /// Not atomic: if it fails half-way, some jobs are in the queue. Calling it again with the
    /// same jobs is safe only if handlers recognise repeats, see the crate docs on
    /// idempotency.
    pub async fn enqueue_batch(&self, jobs: &[J]) -> Result<Vec<EntryId>> {
        let pipes = jobs
            .chunks(self.config.enqueue_chunk)
            .map(|chunk| self.enqueue_pipe(chunk))
            .collect::<Result<Vec<_>>>()?;
        // Each pipeline's future owns its pipeline and connection handle, so the whole call
        // stays `Send` for any caller, including tasks given to `tokio::spawn`.
        let conn = self.conn.clone();
        let chunks = futures::stream::iter(pipes.into_iter().map(move |pipe| {
            let mut conn = conn.clone();
            async move {
                let ids: Vec<String> = pipe
                    .query_async(&mut conn)
                    .await
                    .during("enqueueing a batch")?;
                Ok::<_, Error>(ids.into_iter().map(EntryId::new).collect::<Vec<_>>())
            }
        }))
        .buffered(self.config.enqueue_pipelines);
        let ids: Vec<Vec<EntryId>> = chunks.try_collect().await?;
        Ok(ids.into_iter().flatten().collect())
    }

    /// Adds jobs that become due at `at`: they wait in the delayed set and enter the stream
    /// like due retries, without using an attempt. Returns how many were added.
    ///
    /// `at` is compared with the Redis server's clock when promoting, so a producer whose
    /// clock is off shifts its jobs by the same amount.
    pub async fn enqueue_at(&self, jobs: &[J], at: SystemTime) -> Result<usize> {
        let due_ms = unix_millis(at);
        let mut conn = self.conn.clone();
        for chunk in jobs.chunks(self.config.enqueue_chunk) {
            let mut pipe = redis::Pipeline::with_capacity(chunk.len());
            for job in chunk {
                let payload = serde_json::to_string(job).map_err(Error::Serialize)?;
                // Members must be unique; a random token stands in for the stream id a
                // retried job would carry.
                let token = format!("at-{:032x}", rand::random::<u128>());
                let member = serde_json::to_string(&DelayedMember {
                    s: &token,
                    a: "0",
                    e: "",
                    p: &payload,
                })
                .map_err(Error::Serialize)?;
                pipe.cmd("ZADD")
                    .arg(&self.keys.delayed)
                    .arg(due_ms)
                    .arg(member)
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .during("enqueueing delayed jobs")?;
        }
        Ok(jobs.len())
    }

    fn enqueue_pipe(&self, chunk: &[J]) -> Result<redis::Pipeline> {
        let mut pipe = redis::Pipeline::with_capacity(chunk.len());
        for job in chunk {
            let payload = serde_json::to_vec(job).map_err(Error::Serialize)?;
            pipe.cmd("XADD")
                .arg(&self.keys.stream)
                .arg("*")
                .arg("p")
                .arg(payload);
        }
        Ok(pipe)
    }
}

impl<J: DeserializeOwned> Queue<J> {
    /// Opens a consumer named `name` in the queue's group, with its own connection for
    /// blocking reads.
    ///
    /// Give every worker a name of its own (host and process id, or a UUID): two live
    /// consumers sharing a name would settle each other's jobs.
    pub async fn consumer(&self, name: impl Into<String>) -> Result<Consumer<J>> {
        Consumer::open(self.clone(), name.into()).await
    }
}

/// A member of the delayed set, as the promotion script reads it: source id, attempts made,
/// last error and payload.
#[derive(Serialize)]
struct DelayedMember<'a> {
    s: &'a str,
    a: &'a str,
    e: &'a str,
    p: &'a str,
}

/// Milliseconds since the Unix epoch (0 for earlier times).
fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether Redis refused a command because the stream does not exist.
fn is_missing_key(error: &redis::RedisError) -> bool {
    error.detail().is_some_and(|d| d.contains("no such key"))
}

fn parse_dead_letters(reply: Value) -> Result<Vec<DeadLetter>> {
    const COMMAND: &str = "XRANGE";
    let Value::Array(entries) = reply else {
        return Err(unexpected(COMMAND, format!("entry list {reply:?}")));
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else {
            return Err(unexpected(COMMAND, format!("entry {entry:?}")));
        };
        let mut parts = parts.into_iter();
        let (Some(id), Some(Value::Array(fields))) = (parts.next(), parts.next()) else {
            return Err(unexpected(COMMAND, "entry without fields".to_owned()));
        };
        let id = EntryId::new(string_of(COMMAND, id)?);
        let mut map: HashMap<String, String> = HashMap::new();
        let mut fields = fields.into_iter();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            let name = string_of(COMMAND, name)?;
            let value = match value {
                Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                Value::SimpleString(s) => s,
                other => format!("{other:?}"),
            };
            map.insert(name, value);
        }
        out.push(DeadLetter {
            failed_at: id.timestamp(),
            id,
            source_id: map.remove("s").filter(|s| !s.is_empty()).map(EntryId::new),
            kind: FailureKind::parse(map.get("k").map_or("", String::as_str)),
            error: map.remove("e").unwrap_or_default(),
            previous_error: map.remove("l").filter(|s| !s.is_empty()),
            attempts: map.get("a").and_then(|a| a.parse().ok()).unwrap_or(0),
            payload: map.remove("p").unwrap_or_default(),
        });
    }
    Ok(out)
}
