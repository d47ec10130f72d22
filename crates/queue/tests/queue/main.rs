//! Integration tests of clarion-queue against the local Redis at 127.0.0.1:6379
//! (override with `REDIS_URL`). Every test uses its own key prefix and deletes its keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;
mod consume;
mod dead_letters;
mod groups;
mod keys;
mod retry;
mod stats;
mod worker;

use std::time::Duration;

use clarion_queue::{Queue, QueueConfig};
use serde::{Deserialize, Serialize};

/// A job as a caller would define it: its own id, for idempotency, plus data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendEmail {
    pub delivery_id: u64,
    pub to: String,
}

pub fn job(n: u64) -> SendEmail {
    SendEmail {
        delivery_id: n,
        to: format!("user{n}@example.com"),
    }
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Config for tests: small batches, quick blocking reads, a tiny backoff without jitter.
pub fn test_config() -> QueueConfig {
    QueueConfig {
        batch_size: 10,
        block: Duration::from_millis(100),
        max_attempts: 3,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(10),
        jitter: 0.0,
        ..QueueConfig::default()
    }
}

/// A queue under a unique prefix whose keys are deleted when the test ends, pass or fail.
pub struct TestQueue {
    pub queue: Queue<SendEmail>,
    keys: Vec<String>,
}

impl TestQueue {
    pub async fn new(config: QueueConfig) -> Self {
        let client = redis::Client::open(redis_url()).unwrap();
        let prefix = format!("clarion-test-{}", uuid::Uuid::new_v4());
        let queue = Queue::connect(client, &prefix, "emails", config)
            .await
            .unwrap();
        let keys = queue.keys().all().map(str::to_owned).to_vec();
        Self { queue, keys }
    }

    /// A raw connection for looking behind the queue's back.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl std::ops::Deref for TestQueue {
    type Target = Queue<SendEmail>;
    fn deref(&self) -> &Self::Target {
        &self.queue
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        // Drop cannot await; a blocking connection keeps cleanup independent of the runtime.
        if let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&self.keys).query(&mut conn);
        }
    }
}
