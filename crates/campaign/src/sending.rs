//! What the sending side shares: its settings (`[sending]`) and the two Redis queues (one per
//! channel) delivery jobs travel on. The job and the statuses a delivery and a run go through
//! are in the model ([`clarion_model::DeliveryJob`], [`clarion_model::DeliveryStatus`],
//! [`clarion_model::RunStatus`]), for every crate that reports on sending.

use std::time::Duration;

use clarion_model::{Channel, DeliveryJob};
use clarion_queue::{Queue, QueueConfig};

use crate::hits::Hit;
use serde::Deserialize;

/// `[sending]`: how launches write and enqueue, and how workers send.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendingSettings {
    /// Jobs a worker takes from a queue at once; contacts and variants are loaded once per
    /// batch (outcomes are recorded in small groups as sends complete).
    pub batch_size: usize,
    /// Messages one worker has in flight at once per channel, across all its batches (SMTP
    /// connections are further limited by `email.smtp.pool_size`). A message is in flight
    /// from its send until its outcome is recorded, so this also bounds the messages sent
    /// twice when a worker is killed.
    pub concurrency: usize,
    /// Attempts per delivery before it fails for good (transient errors only; a permanent
    /// error fails at once).
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; each further retry doubles it.
    pub backoff_base_ms: u64,
    /// Longest delay between two attempts, in milliseconds.
    pub backoff_max_ms: u64,
    /// A delivery claimed this long ago by a worker that never finished it (the worker died)
    /// is taken over by another worker, and a launch that wrote no page for this long (its
    /// process died) is finished by the supervisor, in seconds. Must exceed the time a batch
    /// takes.
    pub reclaim_after_secs: u64,
    /// Emails per second across all workers (0: no limit), enforced through Redis.
    pub email_per_second: u32,
    /// Webhook calls per second across all workers (0: no limit).
    pub webhook_per_second: u32,
    /// Where webhook deliveries are POSTed. Empty: campaigns cannot use the webhook channel.
    pub webhook_url: String,
    /// A run pauses itself when more than this share of its finished deliveries failed for
    /// good (0 to 1; 1 turns the guard off) ...
    pub pause_error_rate: f64,
    /// ... once at least this many of its deliveries have finished in one worker.
    pub pause_min_attempts: u64,
    /// Seconds between two supervision rounds: completing finished runs and re-enqueueing
    /// deliveries whose jobs were lost (e.g. Redis restarted without persistence).
    pub supervise_interval_secs: u64,
    /// Members read, delivery rows written and jobs enqueued per step of a launch.
    pub launch_page: u64,
    /// Batches one worker process works on at once per channel, each by a consumer of its
    /// own: while one batch waits for the database, another is sent.
    pub batches_in_flight: usize,
}

impl Default for SendingSettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            concurrency: 100,
            max_attempts: 5,
            backoff_base_ms: 5_000,
            backoff_max_ms: 30 * 60 * 1000,
            reclaim_after_secs: 300,
            email_per_second: 0,
            webhook_per_second: 0,
            webhook_url: String::new(),
            pause_error_rate: 0.25,
            pause_min_attempts: 200,
            supervise_interval_secs: 5,
            launch_page: 5_000,
            batches_in_flight: 2,
        }
    }
}

impl SendingSettings {
    /// Checks the values; the error names the key.
    ///
    /// # Errors
    /// A message naming the bad key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err(("sending.batch_size", "must be between 1 and 10000".into()));
        }
        if self.concurrency == 0 {
            return Err(("sending.concurrency", "must be at least 1".into()));
        }
        if self.max_attempts == 0 {
            return Err(("sending.max_attempts", "must be at least 1".into()));
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            return Err((
                "sending.backoff_base_ms",
                "must not exceed sending.backoff_max_ms".into(),
            ));
        }
        if self.reclaim_after_secs == 0 {
            return Err(("sending.reclaim_after_secs", "must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.pause_error_rate) {
            return Err(("sending.pause_error_rate", "must be between 0 and 1".into()));
        }
        if self.supervise_interval_secs == 0 {
            return Err((
                "sending.supervise_interval_secs",
                "must be at least 1".into(),
            ));
        }
        if self.batches_in_flight == 0 || self.batches_in_flight > 64 {
            return Err((
                "sending.batches_in_flight",
                "must be between 1 and 64".into(),
            ));
        }
        if self.launch_page == 0 || self.launch_page > 20_000 {
            return Err(("sending.launch_page", "must be between 1 and 20000".into()));
        }
        let url = &self.webhook_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err((
                "sending.webhook_url",
                "must be an http:// or https:// URL".into(),
            ));
        }
        Ok(())
    }

    /// How long a claimed delivery may stay unfinished before another worker takes it over.
    #[must_use]
    pub fn reclaim_after(&self) -> Duration {
        Duration::from_secs(self.reclaim_after_secs)
    }

    /// The messages-per-second limit of a channel, if any.
    #[must_use]
    pub fn rate_limit(&self, channel: Channel) -> Option<u32> {
        let limit = match channel {
            Channel::Email => self.email_per_second,
            Channel::Webhook => self.webhook_per_second,
        };
        (limit > 0).then_some(limit)
    }

    /// The queue configuration these settings describe.
    #[must_use]
    pub fn queue_config(&self) -> QueueConfig {
        QueueConfig {
            group: "delivery-workers".to_owned(),
            batch_size: self.batch_size,
            // Reclaims must not take jobs of a worker that is merely slow.
            reclaim_min_idle: self.reclaim_after(),
            reclaim_interval: self.reclaim_after().min(Duration::from_secs(30)),
            // Attempts are counted on the delivery row; the queue only needs to stop a job
            // that kills every worker touching it.
            max_attempts: self.max_attempts.saturating_mul(2).max(3),
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            ..QueueConfig::default()
        }
    }
}

/// The delivery queues of an installation: one per channel, so that a slow channel (or its
/// throttle) does not hold up the other. Opening a queue talks to Redis, so it happens when
/// a queue is first needed, not when the server starts.
#[derive(Clone)]
pub struct Queues {
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    prefix: String,
    config: QueueConfig,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Queues {
    /// The queues under `prefix` (the installation's Redis key prefix), on the shared
    /// connection `conn`; `client` opens the consumers' blocking connections.
    #[must_use]
    pub fn new(
        client: redis::Client,
        conn: redis::aio::ConnectionManager,
        prefix: &str,
        settings: &SendingSettings,
    ) -> Self {
        Self {
            client,
            conn,
            prefix: prefix.to_owned(),
            config: settings.queue_config(),
        }
    }

    /// The queue of `channel`, its consumer group created if needed.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn open(&self, channel: Channel) -> Result<Queue<DeliveryJob>, clarion_queue::Error> {
        Queue::new(
            self.client.clone(),
            self.conn.clone(),
            &self.prefix,
            &format!("deliveries-{}", channel.as_str()),
            self.config.clone(),
        )
        .await
    }

    /// The queue of accepted opens and clicks ([`crate::hits`]), its consumer group created
    /// if needed, with `config` (normally [`Queues::hits_config`]).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn hits(&self, config: QueueConfig) -> Result<Queue<Hit>, clarion_queue::Error> {
        Queue::new(
            self.client.clone(),
            self.conn.clone(),
            &self.prefix,
            crate::hits::QUEUE,
            config,
        )
        .await
    }

    /// How the hits queue is read: large batches (one insert each), and a short reclaim
    /// time, since a batch takes well under a second and a dead recorder's hits should not
    /// wait minutes.
    #[must_use]
    pub fn hits_config(&self) -> QueueConfig {
        QueueConfig {
            group: "hit-recorders".to_owned(),
            batch_size: crate::hits::BATCH,
            reclaim_min_idle: crate::hits::RECLAIM_AFTER,
            reclaim_interval: crate::hits::RECLAIM_AFTER / 4,
            ..self.config.clone()
        }
    }

    /// The queue of verified provider requests ([`crate::providers::queued`]), its consumer
    /// group created if needed, with `config` (normally [`Queues::provider_reports_config`]).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn provider_reports(
        &self,
        config: QueueConfig,
    ) -> Result<Queue<crate::providers::queued::QueuedRequest>, clarion_queue::Error> {
        Queue::new(
            self.client.clone(),
            self.conn.clone(),
            &self.prefix,
            crate::providers::queued::QUEUE,
            config,
        )
        .await
    }

    /// How the provider reports queue is read: large batches (one write each) and a short
    /// reclaim time, like the hits queue.
    #[must_use]
    pub fn provider_reports_config(&self) -> QueueConfig {
        use crate::providers::queued::{BATCH, RECLAIM_AFTER};
        QueueConfig {
            group: "provider-report-writers".to_owned(),
            batch_size: BATCH,
            reclaim_min_idle: RECLAIM_AFTER,
            reclaim_interval: RECLAIM_AFTER / 4,
            ..self.config.clone()
        }
    }

    /// The shared Redis connection (for the throttle).
    #[must_use]
    pub fn connection(&self) -> redis::aio::ConnectionManager {
        self.conn.clone()
    }

    /// The installation's key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}
