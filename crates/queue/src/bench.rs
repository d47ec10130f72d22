//! Throughput benchmark of the queue against a real Redis, with `redis-benchmark` as the
//! baseline measured in the same run.
//!
//! Run it with `cargo run --release -p clarion-queue --example queue_bench` (arguments: job count,
//! Redis URL) or `clarion bench queue`. It creates keys under a unique prefix and deletes them
//! afterwards, also when a step fails.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::QueueConfig;
use crate::entry::{Outcome, Received};
use crate::error::{Error, RedisContext, Result};
use crate::queue::Queue;

/// What to measure and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// The Redis server to measure against.
    pub redis_url: String,
    /// Jobs to enqueue and then consume.
    pub jobs: usize,
    /// XADD commands per pipeline, for the queue and for `redis-benchmark -P`.
    pub pipeline_depth: usize,
    /// Pipelines the queue keeps in flight on its one connection.
    pub pipelines_in_flight: usize,
    /// Jobs handed to one `enqueue_batch` call.
    pub enqueue_batch: usize,
    /// Jobs per read of the consumer.
    pub consume_batch: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            jobs: 1_000_000,
            pipeline_depth: 64,
            // As many as redis-benchmark has clients, so both keep as many commands in flight.
            pipelines_in_flight: BASELINE_CLIENTS,
            enqueue_batch: 10_000,
            consume_batch: 1_000,
        }
    }
}

/// The figures of one benchmark run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// The options the run used.
    pub options: BenchOptions,
    /// Size of one job's JSON payload in bytes.
    pub payload_bytes: usize,
    /// Jobs enqueued per second.
    pub enqueue_per_sec: f64,
    /// Jobs read, handed to a no-op handler and acknowledged per second.
    pub consume_per_sec: f64,
    /// `redis-benchmark` XADD requests per second with the same payload and pipeline depth,
    /// or why it could not be measured.
    pub baseline: Result<f64, String>,
}

/// A job shaped like the delivery jobs Clarion enqueues.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BenchJob {
    delivery_id: u64,
    campaign_id: u64,
    channel: String,
}

/// Clients `redis-benchmark` uses (its default), each with `-P` commands in flight.
const BASELINE_CLIENTS: usize = 50;

/// Runs the benchmark: `redis-benchmark` XADD first, then enqueueing `options.jobs` jobs,
/// then consuming them all with a no-op handler. Deletes its keys before returning.
pub async fn run(options: &BenchOptions) -> Result<BenchReport> {
    let client = redis::Client::open(options.redis_url.as_str()).during("parsing the redis url")?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("clarion-bench-{}-{stamp}", std::process::id());
    let config = QueueConfig {
        batch_size: options.consume_batch,
        enqueue_chunk: options.pipeline_depth,
        enqueue_pipelines: options.pipelines_in_flight,
        block: Duration::from_millis(100),
        ..QueueConfig::default()
    };
    let queue: Queue<BenchJob> = Queue::connect(client, &prefix, "bench", config).await?;
    let sample = serde_json::to_string(&job(123_456)).map_err(Error::Serialize)?;
    let baseline_key = format!("{{{prefix}}}:redis-benchmark");

    let measured = measure(options, &queue, &sample, &baseline_key).await;
    let cleaned = cleanup(&queue, &baseline_key).await;
    let (baseline, enqueue_per_sec, consume_per_sec) = measured?;
    cleaned?;
    Ok(BenchReport {
        options: options.clone(),
        payload_bytes: sample.len(),
        enqueue_per_sec,
        consume_per_sec,
        baseline,
    })
}

fn job(n: u64) -> BenchJob {
    BenchJob {
        delivery_id: n,
        campaign_id: 42,
        channel: "email".to_owned(),
    }
}

async fn measure(
    options: &BenchOptions,
    queue: &Queue<BenchJob>,
    sample: &str,
    baseline_key: &str,
) -> Result<(Result<f64, String>, f64, f64)> {
    let baseline = redis_benchmark_xadd(options, baseline_key, sample).await;

    let jobs: Vec<BenchJob> = (0..options.jobs as u64).map(job).collect();
    let started = Instant::now();
    for batch in jobs.chunks(options.enqueue_batch.max(1)) {
        queue.enqueue_batch(batch).await?;
    }
    let enqueue_per_sec = per_second(options.jobs, started.elapsed());
    drop(jobs);

    let consumer = queue.consumer("bench-consumer").await?;
    let started = Instant::now();
    let stats = consumer
        .run_once(async |batch: Vec<Received<BenchJob>>| vec![Outcome::Ack; batch.len()])
        .await?;
    let consume_per_sec = per_second(stats.acked, started.elapsed());
    if stats.acked != options.jobs {
        return Err(Error::Bench(format!(
            "the consumer acknowledged {} of {} jobs",
            stats.acked, options.jobs
        )));
    }
    Ok((baseline, enqueue_per_sec, consume_per_sec))
}

async fn cleanup(queue: &Queue<BenchJob>, baseline_key: &str) -> Result<()> {
    queue.destroy().await?;
    let mut conn = queue.conn.clone();
    redis::cmd("DEL")
        .arg(baseline_key)
        .query_async::<()>(&mut conn)
        .await
        .during("deleting the redis-benchmark key")
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// Runs `redis-benchmark -P <depth> XADD` with the queue's payload; returns requests per
/// second, or why there is no figure.
async fn redis_benchmark_xadd(
    options: &BenchOptions,
    key: &str,
    payload: &str,
) -> Result<f64, String> {
    let output = tokio::process::Command::new("redis-benchmark")
        .arg("-u")
        .arg(&options.redis_url)
        .arg("-c")
        .arg(BASELINE_CLIENTS.to_string())
        .arg("-P")
        .arg(options.pipeline_depth.to_string())
        .arg("-n")
        .arg(options.jobs.to_string())
        .arg("-q")
        .args(["XADD", key, "*", "p", payload])
        .output()
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "redis-benchmark is not on PATH: install the Debian package redis-tools".to_owned()
            }
            _ => format!("redis-benchmark could not be started: {e}"),
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_requests_per_second(&stdout).ok_or_else(|| {
        format!(
            "no rate in redis-benchmark output (status {}): {} {}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })
}

/// Reads the figure of `redis-benchmark -q` output: `<command>: 912345.67 requests per second`.
fn parse_requests_per_second(output: &str) -> Option<f64> {
    let before = &output[..output.rfind(" requests per second")?];
    before.rsplit([' ', ':', '\r', '\n']).next()?.parse().ok()
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let depth = o.pipeline_depth;
        match &self.baseline {
            Ok(baseline) => writeln!(
                f,
                "queue enqueue: {} jobs/s (redis-benchmark XADD -P {depth}: {}/s; {:.2}x)",
                thousands(self.enqueue_per_sec),
                thousands(*baseline),
                self.enqueue_per_sec / baseline
            )?,
            Err(why) => writeln!(
                f,
                "queue enqueue: {} jobs/s (no redis-benchmark baseline: {why})",
                thousands(self.enqueue_per_sec)
            )?,
        }
        writeln!(
            f,
            "queue consume: {} jobs/s (no-op handler, reads of {}, XACK and trim per batch; Sidekiq publishes 23,500/s)",
            thousands(self.consume_per_sec),
            thousands(o.consume_batch as f64)
        )?;
        write!(
            f,
            "queue bench setup: {} jobs of {} bytes; enqueue_batch calls of {}, pipelines of {depth} XADD with {} in flight on one connection; redis-benchmark -c {BASELINE_CLIENTS} -P {depth} -n {}",
            thousands(o.jobs as f64),
            self.payload_bytes,
            thousands(o.enqueue_batch as f64),
            o.pipelines_in_flight,
            thousands(o.jobs as f64),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rate_from_redis_benchmark_output() {
        let out = "XADD k * p x: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                   XADD k * p {\"a\":1}: 240096.03 requests per second, p50=11.639 msec\n";
        assert_eq!(parse_requests_per_second(out), Some(240_096.03));
        assert_eq!(parse_requests_per_second("nothing"), None);
    }

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(905_123.4), "905,123");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
    }
}
