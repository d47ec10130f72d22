//! Prometheus metrics served at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The server's metrics, registered in a registry of its own so that tests can run several
/// servers in one process.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by method, route pattern and status.
    pub http_requests: IntCounterVec,
    /// Request latency by method and route pattern.
    pub http_seconds: HistogramVec,
    /// Ingested items by kind (contact, event) and outcome (stored, duplicate, rejected).
    pub ingested: IntCounterVec,
    /// Tracking requests by kind (click, open, unsubscribe) and outcome: `accepted` (an open
    /// or click queued for the recorder), then, as the recorder of this process stores them,
    /// `recorded`, `repeated` or `unknown_delivery`; `preview`, `invalid`, `failed`.
    pub tracking: IntCounterVec,
    /// The delivery queues, read from Redis at each scrape: jobs by queue (email, webhook)
    /// and state (depth, lag, pending, delayed, dead), and totals since the queue was made
    /// (retried, dead_lettered).
    pub queue: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("clarion".to_string()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )?;
        let http_seconds = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0],
            ),
            &["method", "route"],
        )?;
        let ingested = IntCounterVec::new(
            Opts::new("ingested_total", "Contacts and events taken in, by outcome"),
            &["item", "outcome"],
        )?;
        let tracking = IntCounterVec::new(
            Opts::new(
                "tracking_requests_total",
                "Clicks, opens and unsubscribes received on tracking links, by outcome",
            ),
            &["kind", "outcome"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_seconds.clone()))?;
        registry.register(Box::new(ingested.clone()))?;
        let queue = IntGaugeVec::new(
            Opts::new(
                "delivery_queue_jobs",
                "Delivery jobs by queue and state (depth = lag + pending; retried and dead_lettered are totals)",
            ),
            &["queue", "state"],
        )?;
        registry.register(Box::new(tracking.clone()))?;
        registry.register(Box::new(queue.clone()))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_seconds,
            ingested,
            tracking,
            queue,
        })
    }

    /// Counts what the recorder did with a batch of opens and clicks.
    pub fn count_recorded(&self, tally: &clarion_campaign::hits::Tally) {
        for (action, outcome, n) in tally.iter() {
            self.tracking
                .with_label_values(&[action, outcome])
                .inc_by(n as u64);
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}
