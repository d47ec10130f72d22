//! Opens and clicks, taken off the request path and recorded in batches.
//!
//! The tracking endpoints verify a link's signature, hand the request over as a [`Hit`] to
//! the `tracking-hits` Redis stream ([`HitQueue`], a clarion-queue queue) and answer at once
//! with the pixel or the redirect. A [`Recorder`] (run by `clarion serve --role worker`)
//! reads the stream in batches and records each batch the way ingestion records any events:
//! one lookup of the batch's deliveries, one insert of its `email_open` / `email_click`
//! events, the segment memberships and KPI roll-ups of its contacts, and one read of the
//! clicks stored around the batch's clicks to flag bursts and the neighbours of honeypot
//! clicks (see `clarion_kpi::machine`).
//!
//! # What is deferred, and what can be lost
//!
//! Reports and segments see a hit once its batch is recorded: the recorder blocks on the
//! stream and takes what is there, so the delay is about one batch's recording while it
//! keeps up, longer while it works through a backlog (`clarion bench tracking` prints how
//! long it took to catch up after a load).
//!
//! A hit is accepted once Redis holds it: the endpoint waits for the `XADD` before answering.
//! It stays pending in the stream until its batch is stored, so a recorder that stops or dies
//! mid-batch leaves it to the next one (reclaimed after [`RECLAIM_AFTER`]). Each hit carries
//! an id that becomes its event's idempotency key, so a batch stored and then delivered again
//! (the recorder died before acknowledging it) is stored once. Redis itself keeps accepted
//! hits as well as its persistence does: with AOF and `appendfsync everysec`, a crash of the
//! Redis server loses at most about the last second. When Redis does not take a hit, the
//! endpoint records it itself before answering, as it did before hits were queued.
//!
//! # Machine flags across batches
//!
//! Bots and Apple's privacy proxy are told by the request alone. A burst (different links of
//! one message within the burst window) and the clicks around a honeypot click need the
//! message's other clicks: after storing a batch, the recorder reads the stored clicks of the
//! batch's deliveries within two windows of the batch's clicks (one query), flags the ones
//! that now form a burst or lie near a honeypot click, earlier batches' included, and brings
//! the roll-ups of those contacts up to date. The check runs after the insert, so of two
//! batches recorded side by side (two recorders), the one that checks last sees both.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use clarion_contacts::{Ingest, events::IngestOptions};
use clarion_kpi::machine::{MachineFilter, MachineReason};
use clarion_model::{
    ContactId, EventInput, EventKind, IdempotencyKey, Timestamp, WorkspaceId, entity::event,
};
use clarion_queue::{Consumer, Outcome, Queue, Received};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement, Value as SqlValue,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::engagement::{EngagementError, Recipient, recipients};
use crate::sending::Queues;

/// The name of the queue of accepted hits, under the installation's key prefix.
pub const QUEUE: &str = "tracking-hits";

/// Hits one batch records at most.
pub const BATCH: usize = 1_000;

/// How long a read hit may stay unacknowledged before another recorder takes it over (a
/// batch takes well under this; a recorder that died leaves its batch this long).
pub const RECLAIM_AFTER: Duration = Duration::from_secs(60);

/// How far the clock of the process that accepted a hit may run ahead of the recorder's.
const CLOCK_SKEW_MS: i64 = 5 * 60_000;

/// One accepted open or click, as the endpoint saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Unique per accepted request; its event's idempotency key.
    pub id: String,
    /// The delivery the verified token names.
    pub delivery: i64,
    /// When the request was accepted (ms since the epoch): the event's time.
    pub at: i64,
    pub action: Action,
    pub user_agent: Option<String>,
    /// The client's address (as forwarded by a trusted proxy, or the peer's).
    pub address: Option<IpAddr>,
}

/// What the reader did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    Open,
    /// A click on `url`; `honeypot` when it is the message's hidden link.
    Click {
        url: String,
        honeypot: bool,
    },
}

impl Action {
    /// The metric label of the action: `open` or `click`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Action::Open => "open",
            Action::Click { .. } => "click",
        }
    }
}

impl Hit {
    /// A hit on `delivery` accepted now, with a fresh id.
    #[must_use]
    pub fn new(
        delivery: i64,
        action: Action,
        user_agent: Option<&str>,
        address: Option<IpAddr>,
    ) -> Self {
        Hit {
            id: format!("hit:{:032x}", rand::random::<u128>()),
            delivery,
            at: Timestamp::now().millis(),
            action,
            user_agent: user_agent.map(str::to_owned),
            address,
        }
    }
}

/// Where the endpoints put hits: the `tracking-hits` queue, opened when the first hit comes
/// (so a server starts while Redis is down). Cheap to clone; clones share the queue.
#[derive(Clone)]
pub struct HitQueue {
    queues: Queues,
    queue: Arc<tokio::sync::OnceCell<Queue<Hit>>>,
}

impl HitQueue {
    #[must_use]
    pub fn new(queues: Queues) -> Self {
        HitQueue {
            queues,
            queue: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// The queue, opened with [`Queues::hits_config`] on first use.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn queue(&self) -> Result<&Queue<Hit>, clarion_queue::Error> {
        self.queue
            .get_or_try_init(|| self.queues.hits(self.queues.hits_config()))
            .await
    }

    /// Adds a hit to the stream; once this returns, Redis holds it.
    ///
    /// # Errors
    /// Redis failures: the hit is not queued, and the caller records it itself.
    pub async fn accept(&self, hit: &Hit) -> Result<(), clarion_queue::Error> {
        self.queue().await?.enqueue(hit).await.map(drop)
    }
}

/// What recording hits came to, by action (`open`, `click`) and outcome: `recorded`,
/// `repeated` (a hit stored before, delivered again) or `unknown_delivery` (the delivery or
/// its contact is gone).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    counts: BTreeMap<(&'static str, &'static str), usize>,
}

impl Tally {
    fn add(&mut self, action: &'static str, outcome: &'static str, n: usize) {
        if n > 0 {
            *self.counts.entry((action, outcome)).or_default() += n;
        }
    }

    /// Adds another tally's counts to this one.
    pub fn merge(&mut self, other: &Tally) {
        for (&(action, outcome), &n) in &other.counts {
            self.add(action, outcome, n);
        }
    }

    /// How many hits of `action` came to `outcome`.
    #[must_use]
    pub fn count(&self, action: &str, outcome: &str) -> usize {
        self.counts
            .iter()
            .filter(|((a, o), _)| *a == action && *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every (action, outcome, count), for metrics.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &'static str, usize)> + '_ {
        self.counts.iter().map(|(&(a, o), &n)| (a, o, n))
    }
}

/// Records hits in batches: the consumer of the `tracking-hits` queue, and the endpoints'
/// fallback when Redis does not take a hit.
#[derive(Clone)]
pub struct Recorder {
    ingest: Ingest,
    filter: MachineFilter,
}

/// A click of one delivery as the burst check reads it.
struct StoredClick {
    id: i64,
    at: i64,
    url: String,
    machine: Option<String>,
}

impl Recorder {
    /// A recorder that stores through `ingest` (so segments and roll-ups follow) and flags
    /// machines with `filter`.
    #[must_use]
    pub fn new(ingest: Ingest, filter: MachineFilter) -> Self {
        Recorder { ingest, filter }
    }

    /// Records a batch of hits: their events in one insert per workspace (hits stored before
    /// are left out by their idempotency key), then the burst and honeypot flags of their
    /// messages' clicks.
    ///
    /// # Errors
    /// Database errors; the batch can be recorded again as a whole.
    #[tracing::instrument(skip_all, fields(hits = hits.len()))]
    pub async fn record(&self, hits: &[Hit]) -> Result<Tally, EngagementError> {
        let ids: Vec<i64> = hits.iter().map(|h| h.delivery).collect();
        let recipients = recipients(self.ingest.db(), &ids).await?;
        let mut tally = Tally::default();
        let mut by_workspace: BTreeMap<i64, Vec<(usize, EventInput)>> = BTreeMap::new();
        for (index, hit) in hits.iter().enumerate() {
            match recipients.get(&hit.delivery) {
                Some(recipient) => by_workspace
                    .entry(recipient.workspace.0)
                    .or_default()
                    .push((index, self.event(hit, recipient)?)),
                None => tally.add(hit.action.label(), "unknown_delivery", 1),
            }
        }
        let options = IngestOptions {
            create_unknown_contacts: false,
            max_future_millis: CLOCK_SKEW_MS,
            atomic: false,
        };
        for (workspace, items) in by_workspace {
            let labels: Vec<(usize, &'static str)> = items
                .iter()
                .map(|(index, _)| (*index, hits[*index].action.label()))
                .collect();
            let report = self
                .ingest
                .events(WorkspaceId(workspace), items, options)
                .await?;
            let repeated: HashSet<usize> = report.duplicates.iter().map(|d| d.index).collect();
            // A contact deleted since the lookup: its events are refused.
            let gone: HashSet<usize> = report.errors.iter().map(|e| e.index).collect();
            for (index, label) in labels {
                let outcome = if repeated.contains(&index) {
                    "repeated"
                } else if gone.contains(&index) {
                    "unknown_delivery"
                } else {
                    "recorded"
                };
                tally.add(label, outcome, 1);
            }
        }
        self.flag_bursts(hits, &recipients).await?;
        Ok(tally)
    }

    /// The event of one hit on `recipient`'s delivery, flagged when the request was a bot's,
    /// Apple's privacy proxy's, or a click on the honeypot link.
    fn event(&self, hit: &Hit, recipient: &Recipient) -> Result<EventInput, EngagementError> {
        let user_agent = hit.user_agent.as_deref();
        let mut properties = Map::new();
        let (kind, machine) = match &hit.action {
            Action::Open => (
                "email_open",
                self.filter.classify_open(user_agent, hit.address),
            ),
            Action::Click { url, honeypot } => {
                properties.insert("url".to_owned(), Value::String(url.clone()));
                let machine = if *honeypot {
                    Some(MachineReason::Honeypot)
                } else {
                    self.filter.classify_click(user_agent)
                };
                ("email_click", machine)
            }
        };
        properties.insert("campaign_id".to_owned(), json!(recipient.campaign_id));
        properties.insert("delivery_id".to_owned(), json!(hit.delivery));
        if let Some(reason) = machine {
            properties.insert("machine".to_owned(), json!(reason.as_str()));
        }
        Ok(EventInput {
            external_id: recipient.external_id.clone(),
            kind: EventKind::parse(kind)?,
            occurred_at: Some(Timestamp::from_millis(hit.at)),
            amount: None,
            currency: None,
            properties,
            idempotency_key: Some(IdempotencyKey::parse(hit.id.as_str())?),
        })
    }

    /// Flags the stored clicks of the batch's messages that form a burst or lie within the
    /// burst window of a honeypot click, reading them in one query, and brings the roll-ups
    /// of the contacts concerned up to date.
    async fn flag_bursts(
        &self,
        hits: &[Hit],
        recipients: &HashMap<i64, Recipient>,
    ) -> Result<(), EngagementError> {
        let clicks: Vec<&Hit> = hits
            .iter()
            .filter(|h| matches!(h.action, Action::Click { .. }))
            .filter(|h| recipients.contains_key(&h.delivery))
            .collect();
        let (Some(first), Some(last)) = (
            clicks.iter().map(|h| h.at).min(),
            clicks.iter().map(|h| h.at).max(),
        ) else {
            return Ok(());
        };
        let window = self.filter.settings().burst_window_ms;
        let deliveries: HashSet<i64> = clicks.iter().map(|h| h.delivery).collect();
        let mut contacts: Vec<i64> = deliveries
            .iter()
            .filter_map(|d| recipients.get(d))
            .map(|r| r.contact.0)
            .collect();
        contacts.sort_unstable();
        contacts.dedup();
        let rows = event::Entity::find()
            .filter(event::Column::ContactId.is_in(contacts))
            .filter(event::Column::Kind.eq("email_click"))
            .filter(event::Column::OccurredAt.gte(first - 2 * window))
            .filter(event::Column::OccurredAt.lte(last + 2 * window))
            .all(self.ingest.db())
            .await?;
        let mut by_delivery: HashMap<i64, Vec<StoredClick>> = HashMap::new();
        for row in rows {
            let properties = &row.properties;
            let Some(delivery) = properties.get("delivery_id").and_then(Value::as_i64) else {
                continue;
            };
            if !deliveries.contains(&delivery) {
                continue;
            }
            by_delivery.entry(delivery).or_default().push(StoredClick {
                id: row.id,
                at: row.occurred_at,
                url: properties
                    .get("url")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                machine: properties
                    .get("machine")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
        let mut flags: Vec<(i64, MachineReason)> = Vec::new();
        let mut touched: BTreeMap<i64, Vec<ContactId>> = BTreeMap::new();
        for (delivery, stored) in &by_delivery {
            let found = machine_clicks(&self.filter, stored);
            if found.is_empty() {
                continue;
            }
            if let Some(recipient) = recipients.get(delivery) {
                touched
                    .entry(recipient.workspace.0)
                    .or_default()
                    .push(recipient.contact);
            }
            flags.extend(found);
        }
        if flags.is_empty() {
            return Ok(());
        }
        set_machine(self.ingest.db(), &flags).await?;
        // Ingestion's roll-up listener counted these clicks before they were flagged.
        for (workspace, contacts) in touched {
            if let Err(error) = clarion_kpi::rollup::refresh_runs(
                self.ingest.db(),
                WorkspaceId(workspace),
                &contacts,
            )
            .await
            {
                tracing::warn!(%error, "KPI roll-ups could not be updated after flagging clicks; rebuild the run");
            }
        }
        Ok(())
    }

    /// Drains the queue once without waiting (tests, the benchmark, a catch-up): records
    /// every hit waiting, due for a retry, or abandoned by a dead recorder for longer than
    /// the queue's `reclaim_min_idle`.
    ///
    /// # Errors
    /// Redis failures; a batch that could not be stored is left for a retry.
    pub async fn drain(&self, consumer: &Consumer<Hit>) -> Result<Tally, clarion_queue::Error> {
        let mut tally = Tally::default();
        consumer
            .run_once(async |batch: Vec<Received<Hit>>| {
                self.settle(batch, &mut |done: &Tally| tally.merge(done))
                    .await
            })
            .await?;
        Ok(tally)
    }

    /// Records hits from the queue until `shutdown` completes, telling `report` what each
    /// batch came to (for metrics). The batch in hand is finished first.
    ///
    /// # Errors
    /// Errors other than Redis failures (which are retried).
    pub async fn run<R>(
        &self,
        consumer: &Consumer<Hit>,
        shutdown: impl Future<Output = ()>,
        report: R,
    ) -> Result<(), clarion_queue::Error>
    where
        R: Fn(&Tally) + Clone + Send + 'static,
    {
        // A plain closure returning an owning future: the future of an async closure borrows
        // the closure, which `tokio::spawn`'s `Send` check cannot see through.
        let recorder = self.clone();
        consumer
            .run(
                move |batch: Vec<Received<Hit>>| {
                    let recorder = recorder.clone();
                    let report = report.clone();
                    async move {
                        recorder
                            .settle(batch, &mut |tally: &Tally| report(tally))
                            .await
                    }
                },
                shutdown,
            )
            .await
            .map(drop)
    }

    /// Records a batch read from the queue and answers its outcomes: all acknowledged once
    /// stored, all retried later when the database failed.
    async fn settle(
        &self,
        batch: Vec<Received<Hit>>,
        report: &mut impl FnMut(&Tally),
    ) -> Vec<Outcome> {
        let n = batch.len();
        let hits: Vec<Hit> = batch.into_iter().map(|received| received.job).collect();
        match self.record(&hits).await {
            Ok(tally) => {
                report(&tally);
                vec![Outcome::Ack; n]
            }
            Err(error) => {
                let error = with_causes(&error);
                tracing::warn!(%error, hits = n, "tracking hits could not be recorded; retrying later");
                vec![Outcome::retry(error); n]
            }
        }
    }
}

/// An error with its causes, for the log and the retry note.
fn with_causes(error: &EngagementError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The clicks of one message (oldest first or not) that a machine made and are not flagged
/// yet: within the burst window of a honeypot click, or part of a burst.
fn machine_clicks(filter: &MachineFilter, clicks: &[StoredClick]) -> Vec<(i64, MachineReason)> {
    let window = filter.settings().burst_window_ms;
    let timeline: Vec<(i64, String)> = clicks.iter().map(|c| (c.at, c.url.clone())).collect();
    let honeypots: Vec<i64> = clicks
        .iter()
        .filter(|c| c.machine.as_deref() == Some(MachineReason::Honeypot.as_str()))
        .map(|c| c.at)
        .collect();
    clicks
        .iter()
        .filter(|c| c.machine.is_none())
        .filter_map(|click| {
            if honeypots.iter().any(|h| (h - click.at).abs() <= window) {
                Some((click.id, MachineReason::Honeypot))
            } else if filter.is_burst(click.at, &timeline) {
                Some((click.id, MachineReason::ClickBurst))
            } else {
                None
            }
        })
        .collect()
}

/// Sets the `machine` property of the events `flags` name, one statement per reason.
async fn set_machine(
    db: &impl ConnectionTrait,
    flags: &[(i64, MachineReason)],
) -> Result<(), EngagementError> {
    let backend = db.get_database_backend();
    let placeholder = |n: usize| match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    for reason in [MachineReason::Honeypot, MachineReason::ClickBurst] {
        let ids: Vec<i64> = flags
            .iter()
            .filter(|(_, r)| *r == reason)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let set = match backend {
            DbBackend::Postgres => format!(
                "properties = jsonb_set(properties, '{{machine}}', to_jsonb(CAST({} AS TEXT)))",
                placeholder(1)
            ),
            _ => "properties = json_set(properties, '$.machine', ?)".to_owned(),
        };
        let list: Vec<String> = (0..ids.len()).map(|i| placeholder(i + 2)).collect();
        let mut values = vec![SqlValue::from(reason.as_str().to_owned())];
        values.extend(ids.iter().map(|id| SqlValue::from(*id)));
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("UPDATE events SET {set} WHERE id IN ({})", list.join(", ")),
            values,
        ))
        .await?;
    }
    Ok(())
}
