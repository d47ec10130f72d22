//! Verified provider requests, queued in Redis and written in large batches.
//!
//! A provider webhook is answered once its request is verified and Redis holds its events:
//! [`ReportQueue::submit`] claims the request's event ids (and Mailgun's signed token) in
//! Redis, so a replay is refused at once with 409, then adds the new events to the
//! `provider-reports` stream. A [`ReportWriter`] (run by `clarion serve --role worker`) reads
//! the stream in batches of up to [`BATCH`] requests and applies each batch with one
//! [`feedback::apply`]: a handful of statements for thousands of events, where writing each
//! request before answering costs them per request. Contacts are marked, addresses
//! suppressed and `email_bounce` / `email_complaint` events stored moments after the answer
//! (one batch's write while the writer keeps up).
//!
//! # Replays and what can be lost
//!
//! A claim is first held for [`PENDING`], then, once the request is queued, kept for
//! [`REMEMBER`] (event ids: longer than any provider retries a delivery) or as long as a
//! Mailgun signature stays fresh (tokens). A request that finds one of its claims still
//! pending (another request with the same event is being queued, or a process died between
//! claiming and queueing) is answered 503 with nothing claimed or queued, so the provider
//! sends it again: then it is refused as a replay if the other request was queued, or taken
//! once the dead process's claim has lapsed. An event is so never lost to a crash between
//! the two steps, whenever the provider retries. Past the claim's life a replay is accepted
//! again, and stored once all the same: the event's idempotency key is the provider's event
//! id. Claims cost Redis about 150 bytes per event.
//!
//! A queued request stays pending in the stream until its batch is written, so a writer that
//! dies mid-batch leaves it to the next one (reclaimed after [`RECLAIM_AFTER`]). Redis keeps
//! accepted requests as well as its persistence does (with AOF and `appendfsync everysec`, a
//! crash of the Redis server loses at most about the last second).
//!
//! When Redis does not answer, the request is written before answering, as without a queue
//! (see [`super::Receiver`]); its answer then says what was written.

use std::time::Duration;

use clarion_contacts::Ingest;
use clarion_model::{DEFAULT_WORKSPACE, EmailAddress, Timestamp};
use clarion_queue::{Consumer, Outcome, Queue, Received};
use serde::{Deserialize, Serialize};

use super::Provider;
use crate::feedback::{self, Applied, BounceSettings, FeedbackError, Kind, Recipient, Report};
use crate::sending::Queues;

/// The name of the queue of verified provider requests, under the installation's key prefix.
pub const QUEUE: &str = "provider-reports";

/// Requests one read takes at most (a SendGrid request carries up to about a thousand
/// events; Mailgun's, Postmark's and SES's one).
pub const BATCH: usize = 2_000;

/// Events written together at most: a read's requests are written in groups of about this
/// many events (a larger request alone).
pub const WRITE_EVENTS: usize = 10_000;

/// How long a read request may stay unacknowledged before another writer takes it over.
pub const RECLAIM_AFTER: Duration = Duration::from_secs(120);

/// How long an event id stays claimed once its request is queued: a replay within it is
/// refused with 409. Providers retry a delivery for up to three days (SendGrid), Mailgun for
/// 8 hours, SNS and Postmark for less.
pub const REMEMBER: Duration = Duration::from_secs(3 * 86_400);

/// How long a claim is held while its request is being queued. A process that dies in
/// between frees the claim after this; meanwhile its request's retries are answered 503.
pub const PENDING: Duration = Duration::from_secs(60);

/// A verified request's new events, as the stream holds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedRequest {
    pub provider: Provider,
    pub reports: Vec<QueuedReport>,
}

/// One bounce or complaint a provider reported about an address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedReport {
    pub address: EmailAddress,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    pub text: String,
    /// The provider's event id.
    pub id: String,
    /// The delivery the provider's copy of the Message-ID names, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<Timestamp>,
}

impl QueuedReport {
    fn of(report: &Report) -> Self {
        QueuedReport {
            address: address_of(report).clone(),
            kind: report.kind,
            code: report.code,
            text: report.text.clone(),
            id: report.id.clone(),
            delivery: report.delivery,
            occurred_at: report.occurred_at,
        }
    }

    fn report(&self, provider: Provider) -> Report {
        Report {
            recipient: Recipient::Address(self.address.clone()),
            kind: self.kind,
            code: self.code,
            text: self.text.clone(),
            source: provider.as_str(),
            id: self.id.clone(),
            delivery: self.delivery,
            campaign: None,
            occurred_at: self.occurred_at,
        }
    }
}

/// The address a report is about.
fn address_of(report: &Report) -> &EmailAddress {
    match &report.recipient {
        Recipient::Address(address) => address,
        Recipient::Contact { email, .. } => email,
    }
}

/// What [`ReportQueue::submit`] did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// `queued` new events are in the stream; `duplicates` were claimed before.
    Queued { queued: u64, duplicates: u64 },
    /// Every event of the request was claimed before; nothing was queued.
    Replayed,
    /// The signed token was claimed before (Mailgun); nothing was queued.
    TokenReplayed,
    /// Another request holds a pending claim of one of its events (or its token): it is
    /// being queued, or its process died while queueing it. Nothing was claimed or queued;
    /// the provider should send the request again. `token`: the pending claim is the
    /// signed token's (Mailgun).
    InFlight { token: bool },
}

/// What claiming a key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// The key was free; this request holds it now.
    Mine,
    /// Another request holds it while it is being queued.
    Pending,
    /// A queued request held it.
    Taken,
}

/// Where verified provider requests go: the `provider-reports` queue (opened when the first
/// request comes, so a server starts while Redis is down) and the claims of their event ids.
/// Cheap to clone.
#[derive(Clone)]
pub struct ReportQueue {
    queues: Queues,
    queue: std::sync::Arc<tokio::sync::OnceCell<Queue<QueuedRequest>>>,
}

impl ReportQueue {
    #[must_use]
    pub fn new(queues: Queues) -> Self {
        ReportQueue {
            queues,
            queue: std::sync::Arc::default(),
        }
    }

    /// The queue, opened with [`Queues::provider_reports_config`] on first use.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn queue(&self) -> Result<&Queue<QueuedRequest>, clarion_queue::Error> {
        self.queue
            .get_or_try_init(|| {
                self.queues
                    .provider_reports(self.queues.provider_reports_config())
            })
            .await
    }

    /// Claims the request's token, then its events (id and address), then queues the new
    /// ones. `token` comes with how long it stays claimed (its signature's freshness).
    ///
    /// # Errors
    /// Redis failures; no claim is left but a pending one, and nothing is queued, so the
    /// caller writes the request itself.
    pub async fn submit(
        &self,
        provider: Provider,
        token: Option<(&str, Duration)>,
        reports: &[Report],
    ) -> Result<Submitted, clarion_queue::Error> {
        let queue = self.queue().await?;
        // The token first: a replayed request claims nothing else, so it cannot make a
        // concurrent request's events look seen before.
        let mut mine: Vec<(String, Duration)> = Vec::new();
        if let Some((token, life)) = token {
            let key = self.claim_key(provider, &format!("token:{token}"));
            match self.claim(std::slice::from_ref(&key)).await?[..] {
                [Claim::Mine] => mine.push((key, life)),
                [Claim::Pending] => return Ok(Submitted::InFlight { token: true }),
                _ => return Ok(Submitted::TokenReplayed),
            }
        }
        // An event is one per id and address, as its idempotency key is one per id and
        // contact (an SES notification lists several recipients under one id).
        let keys: Vec<String> = reports
            .iter()
            .map(|report| {
                let address = address_of(report).as_str();
                self.claim_key(provider, &format!("event:{}:{address}", report.id))
            })
            .collect();
        let claims = match self.claim(&keys).await {
            Ok(claims) => claims,
            Err(error) => {
                self.release(&mine).await;
                return Err(error);
            }
        };
        mine.extend(
            keys.into_iter()
                .zip(&claims)
                .filter(|(_, claim)| **claim == Claim::Mine)
                .map(|(key, _)| (key, REMEMBER)),
        );
        if claims.contains(&Claim::Pending) {
            // Decided by the other request, or by its claim's lapse: the provider's retry
            // finds out which.
            self.release(&mine).await;
            return Ok(Submitted::InFlight { token: false });
        }
        let fresh: Vec<QueuedReport> = reports
            .iter()
            .zip(&claims)
            .filter(|(_, claim)| **claim == Claim::Mine)
            .map(|(report, _)| QueuedReport::of(report))
            .collect();
        let duplicates = (reports.len() - fresh.len()) as u64;
        if fresh.is_empty() {
            // The token is used up all the same, as when the request is written at once.
            self.keep(&mine).await;
            return Ok(if reports.is_empty() {
                Submitted::Queued {
                    queued: 0,
                    duplicates: 0,
                }
            } else {
                Submitted::Replayed
            });
        }
        let queued = fresh.len() as u64;
        let request = QueuedRequest {
            provider,
            reports: fresh,
        };
        if let Err(error) = queue.enqueue(&request).await {
            self.release(&mine).await;
            return Err(error);
        }
        self.keep(&mine).await;
        Ok(Submitted::Queued { queued, duplicates })
    }

    fn claim_key(&self, provider: Provider, what: &str) -> String {
        format!(
            "{}:provider-claims:{}:{what}",
            self.queues.prefix(),
            provider.as_str()
        )
    }

    /// Sets each key not set yet, for [`PENDING`]; what each key held (`SET ... NX GET`,
    /// Redis 7).
    async fn claim(&self, keys: &[String]) -> Result<Vec<Claim>, clarion_queue::Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("SET")
                .arg(key)
                .arg("pending")
                .arg("NX")
                .arg("GET")
                .arg("PX")
                .arg(millis(PENDING));
        }
        let answers: Vec<Option<String>> = pipe
            .query_async(&mut self.queues.connection())
            .await
            .map_err(|source| clarion_queue::Error::Redis {
                action: "claiming provider event ids",
                source,
            })?;
        Ok(answers
            .into_iter()
            .map(|before| match before.as_deref() {
                None => Claim::Mine,
                Some("pending") => Claim::Pending,
                Some(_) => Claim::Taken,
            })
            .collect())
    }

    /// Keeps the claims of a queued request for their lives. A failure only shortens them to
    /// [`PENDING`] (a later replay is then stored once by its idempotency key, but answered
    /// 200), so it is logged.
    async fn keep(&self, keys: &[(String, Duration)]) {
        if keys.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (key, life) in keys {
            pipe.cmd("SET")
                .arg(key)
                .arg("queued")
                .arg("XX")
                .arg("PX")
                .arg(millis(*life))
                .ignore();
        }
        if let Err(error) = pipe.query_async::<()>(&mut self.queues.connection()).await {
            tracing::warn!(%error, "provider event claims could not be kept; they lapse after a minute");
        }
    }

    /// Frees claims of a request that was not queued, so that the provider's retry is taken.
    async fn release(&self, keys: &[(String, Duration)]) {
        if keys.is_empty() {
            return;
        }
        let keys: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
        if let Err(error) = redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut self.queues.connection())
            .await
        {
            tracing::warn!(%error, "provider event claims could not be freed; they lapse after a minute");
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Writes queued provider requests in batches: the consumer of the `provider-reports` queue.
#[derive(Clone)]
pub struct ReportWriter {
    ingest: Ingest,
    bounces: BounceSettings,
}

impl ReportWriter {
    /// A writer that stores through `ingest` (so segments and roll-ups follow).
    #[must_use]
    pub fn new(ingest: Ingest, bounces: BounceSettings) -> Self {
        ReportWriter { ingest, bounces }
    }

    /// Writes every request waiting, due for a retry, or abandoned by a dead writer, without
    /// waiting for more (tests, the benchmark); what it came to.
    ///
    /// # Errors
    /// Redis failures; a batch that could not be written is left for a retry.
    pub async fn drain(
        &self,
        consumer: &Consumer<QueuedRequest>,
    ) -> Result<Applied, clarion_queue::Error> {
        let mut total = Applied::default();
        consumer
            .run_once(async |batch: Vec<Received<QueuedRequest>>| {
                let (outcomes, applied) = self.write(batch).await;
                total.add(&applied);
                outcomes
            })
            .await?;
        Ok(total)
    }

    /// Writes requests from the queue until `shutdown` completes, telling `report` what each
    /// batch came to. The batch in hand is finished first.
    ///
    /// # Errors
    /// Errors other than Redis failures (which are retried).
    pub async fn run<R>(
        &self,
        consumer: &Consumer<QueuedRequest>,
        shutdown: impl Future<Output = ()>,
        report: R,
    ) -> Result<(), clarion_queue::Error>
    where
        R: Fn(&Applied) + Clone + Send + 'static,
    {
        // An owning future per batch: see `hits::Recorder::run`.
        let writer = self.clone();
        consumer
            .run(
                move |batch: Vec<Received<QueuedRequest>>| {
                    let (writer, report) = (writer.clone(), report.clone());
                    async move {
                        let (outcomes, applied) = writer.write(batch).await;
                        report(&applied);
                        outcomes
                    }
                },
                shutdown,
            )
            .await
            .map(drop)
    }

    /// Writes a read's requests in groups of about [`WRITE_EVENTS`] events; each request's
    /// outcome, in order.
    async fn write(&self, batch: Vec<Received<QueuedRequest>>) -> (Vec<Outcome>, Applied) {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut total = Applied::default();
        let mut group = Vec::new();
        let mut events = 0;
        for received in batch {
            events += received.job.reports.len();
            group.push(received);
            if events >= WRITE_EVENTS {
                let (mut done, applied) = self.write_group(std::mem::take(&mut group)).await;
                outcomes.append(&mut done);
                total.add(&applied);
                events = 0;
            }
        }
        if !group.is_empty() {
            let (mut done, applied) = self.write_group(group).await;
            outcomes.append(&mut done);
            total.add(&applied);
        }
        (outcomes, total)
    }

    /// Applies a group of requests as one, and answers each request's outcome: acknowledged
    /// once written, retried when the database failed. A report that cannot become an event
    /// fails the group before anything is stored; then each request is written alone, and
    /// only the one carrying it is dead-lettered.
    async fn write_group(&self, batch: Vec<Received<QueuedRequest>>) -> (Vec<Outcome>, Applied) {
        let reports: Vec<Report> = batch
            .iter()
            .flat_map(|received| {
                let provider = received.job.provider;
                received.job.reports.iter().map(move |r| r.report(provider))
            })
            .collect();
        match feedback::apply(&self.ingest, &self.bounces, DEFAULT_WORKSPACE, &reports).await {
            Ok(applied) => (vec![Outcome::Ack; batch.len()], applied),
            Err(FeedbackError::Model(_)) if batch.len() > 1 => {
                let mut outcomes = Vec::with_capacity(batch.len());
                let mut total = Applied::default();
                for received in batch {
                    let (mut outcome, applied) = Box::pin(self.write_group(vec![received])).await;
                    total.add(&applied);
                    outcomes.append(&mut outcome);
                }
                (outcomes, total)
            }
            Err(error) => {
                let text = error.to_string();
                tracing::warn!(error = %text, requests = batch.len(), "provider events could not be written; retrying later");
                let outcome = match error {
                    FeedbackError::Model(_) => Outcome::dead_letter(text),
                    _ => Outcome::retry(text),
                };
                (vec![outcome; batch.len()], Applied::default())
            }
        }
    }
}
