//! The delivery worker: jobs in, messages out, statuses recorded.
//!
//! A batch of jobs (delivery ids) is handled in four steps, each one statement or one
//! concurrent burst whatever the batch size:
//!
//! 1. **Claim**: one `UPDATE … RETURNING` moves the batch's rows from `queued` to `sending`
//!    (compare-and-set), for runs that are running. A row another worker claimed, one that is
//!    finished, cancelled or belongs to a paused run is not returned, and its job is dropped
//!    (acknowledged). A row left in `sending` by a worker that died is taken over once its
//!    claim is older than `sending.reclaim_after_secs`. So a message is sent twice only if a
//!    worker died while it was in flight.
//! 2. **Load and render**: the batch's contacts in one query, campaigns from a cache; each
//!    message is rendered with tracking links signed for its delivery. A contact deleted or
//!    unsubscribed since launch is suppressed; data that breaks the template fails that
//!    delivery with the template's message.
//! 3. **Send** concurrently over the pooled SMTP connections or keep-alive HTTP client.
//! 4. **Record** every outcome with one `UPDATE … FROM (VALUES …)` (again only rows still
//!    `sending`), then settle the jobs: acknowledge, retry later (transient errors, status
//!    back to `queued` with the reason), or dead-letter (permanent errors and exhausted
//!    attempts, status `failed` with the reason).
//!
//! After recording, a run whose share of failed deliveries passes `sending.pause_error_rate`
//! is paused with the reason, so a broken template or a dead receiver does not burn through
//! the whole audience.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clarion_dispatch::{
    DispatchError, EmailMessage, EmailSender, ListUnsubscribe, SendResult, Sender as _,
    WebhookMessage, WebhookSender,
};
use clarion_model::{
    CampaignId, Channel, ContactId, DeliveryJob, DeliveryStatus, RunStatus, SubscriptionStatus,
    Suppression, Timestamp, VariantId, WorkspaceId, reachability,
};
use clarion_queue::{Outcome, Received, RunStats};
use clarion_template::Tracker;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value,
    sea_query::{Expr, ExprTrait, Query},
};
use serde_json::Value as Json;

use crate::{
    CampaignError,
    campaign::Campaign,
    contacts::{self, ContactData},
    control,
    render::MessageRenderer,
    senders::{Identities, IdentityCache},
    sending::{Queues, SendingSettings},
    store,
    throttle::Throttle,
};

/// The parts a worker sends with.
pub struct WorkerParts {
    pub db: DatabaseConnection,
    pub settings: SendingSettings,
    /// Signs tracking and unsubscribe links; must use the same keys as the tracking endpoints.
    pub tracker: Tracker,
    pub email: EmailSender,
    /// None when no webhook secret is configured; webhook deliveries then fail with that reason.
    pub webhook: Option<WebhookSender>,
    /// Offered as a `mailto:` in `List-Unsubscribe` when set.
    pub unsubscribe_mailto: Option<String>,
    pub throttle: Throttle,
}

/// A delivery worker; share one per process (`Arc`) across its channel loops.
pub struct Worker {
    parts: WorkerParts,
    campaigns: Mutex<HashMap<(WorkspaceId, CampaignId), Arc<Campaign>>>,
    senders: IdentityCache,
    guard: Mutex<HashMap<i64, ErrorWindow>>,
}

/// Finished deliveries of one run seen by this worker, for the error-rate guard.
#[derive(Debug, Default, Clone)]
struct ErrorWindow {
    finished: u64,
    failed: u64,
    last_error: String,
}

/// A claimed delivery row.
#[derive(Debug, Clone)]
struct Claimed {
    id: i64,
    workspace: WorkspaceId,
    run: i64,
    campaign: CampaignId,
    contact: ContactId,
    variant: VariantId,
    attempts: i64,
}

/// What becomes of one claimed delivery.
#[derive(Debug)]
enum Fate {
    Sent(String),
    Failed(String),
    Retry(String, Option<Duration>),
    Suppressed(String),
}

// One per claimed delivery, built once and moved into the send: boxing the email would only
// add an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Message {
    Email(EmailMessage),
    Webhook(WebhookMessage),
}

/// Most campaigns a worker keeps compiled in memory.
const CAMPAIGN_CACHE: usize = 64;

impl Worker {
    #[must_use]
    pub fn new(parts: WorkerParts) -> Self {
        Self {
            parts,
            campaigns: Mutex::new(HashMap::new()),
            senders: IdentityCache::default(),
            guard: Mutex::new(HashMap::new()),
        }
    }

    /// Handles one batch of jobs from `channel`'s queue; returns one outcome per job, in
    /// order. Never fails: a database or Redis error retries the whole batch later.
    pub async fn handle(
        &self,
        channel: Channel,
        batch: Vec<Received<DeliveryJob>>,
    ) -> Vec<Outcome> {
        let mut fates: HashMap<i64, Outcome> = HashMap::new();
        let ids: Vec<i64> = {
            let mut seen = HashSet::new();
            batch
                .iter()
                .map(|d| d.job.id)
                .filter(|id| seen.insert(*id))
                .collect()
        };
        if let Err(error) = self.handle_ids(channel, &ids, &mut fates).await {
            tracing::warn!(channel = channel.as_str(), %error, jobs = ids.len(), "delivery batch failed; its jobs are retried");
            let reason = error.to_string();
            for id in &ids {
                fates
                    .entry(*id)
                    .or_insert_with(|| Outcome::retry(reason.clone()));
            }
        }
        // A job whose delivery was claimed elsewhere, is finished or belongs to a paused or
        // cancelled run has nothing left to do.
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut given = HashSet::new();
        for delivery in &batch {
            let outcome = match fates.get(&delivery.job.id) {
                Some(outcome) if given.insert(delivery.job.id) => outcome.clone(),
                _ => Outcome::Ack,
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    async fn handle_ids(
        &self,
        channel: Channel,
        ids: &[i64],
        fates: &mut HashMap<i64, Outcome>,
    ) -> Result<(), CampaignError> {
        let mut rest = ids;
        while !rest.is_empty() {
            let take = match self.parts.settings.rate_limit(channel) {
                Some(limit) => {
                    self.parts
                        .throttle
                        .next_part(channel, rest.len(), limit)
                        .await?
                }
                None => rest.len(),
            };
            let (part, later) = rest.split_at(take.min(rest.len()));
            self.handle_part(channel, part, fates).await?;
            rest = later;
        }
        Ok(())
    }

    async fn handle_part(
        &self,
        channel: Channel,
        ids: &[i64],
        fates: &mut HashMap<i64, Outcome>,
    ) -> Result<(), CampaignError> {
        let claimed = self.claim(channel, ids).await?;
        if claimed.len() < ids.len() {
            self.postpone_held(ids, &claimed, fates).await?;
        }
        if claimed.is_empty() {
            return Ok(());
        }
        let mut decided: Vec<(Claimed, Fate)> = Vec::with_capacity(claimed.len());
        let mut to_send: Vec<(Claimed, Message)> = Vec::with_capacity(claimed.len());
        let people = self.contacts(&claimed).await?;
        let mut campaigns: HashMap<CampaignId, Arc<Campaign>> = HashMap::new();
        for row in &claimed {
            if !campaigns.contains_key(&row.campaign)
                && let Some(campaign) = self.campaign(row.workspace, row.campaign).await?
            {
                campaigns.insert(row.campaign, campaign);
            }
        }
        // The sender identities whose keys sign this batch's emails.
        let mut identities: HashMap<WorkspaceId, Arc<Identities>> = HashMap::new();
        if channel == Channel::Email {
            for row in &claimed {
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    identities.entry(row.workspace)
                {
                    slot.insert(self.senders.get(&self.parts.db, row.workspace).await?);
                }
            }
        }
        // One renderer per campaign and batch: each variant is compiled once per batch.
        let renderers: HashMap<CampaignId, MessageRenderer<'_>> = campaigns
            .iter()
            .map(|(&id, campaign)| (id, MessageRenderer::new(campaign, &self.parts.tracker)))
            .collect();
        for row in claimed {
            let Some((campaign, renderer)) = campaigns
                .get(&row.campaign)
                .zip(renderers.get(&row.campaign))
            else {
                decided.push((row, Fate::Suppressed("the campaign was deleted".into())));
                continue;
            };
            let Some(contact) = people.get(&row.contact) else {
                decided.push((row, Fate::Suppressed("the contact was deleted".into())));
                continue;
            };
            let senders = identities.get(&row.workspace).map(Arc::as_ref);
            match self.message(channel, campaign, renderer, &row, contact, senders) {
                Ok(message) => to_send.push((row, message)),
                Err(fate) => decided.push((row, fate)),
            }
        }

        let (rows, messages): (Vec<Claimed>, Vec<Message>) = to_send.into_iter().unzip();
        let results = self.send(channel, messages).await;
        for (row, result) in rows.into_iter().zip(results) {
            let fate = match result {
                Ok(receipt) => Fate::Sent(receipt.detail),
                Err(error) => self.failure(&row, &error),
            };
            decided.push((row, fate));
        }

        self.record(&decided).await?;
        for (row, fate) in &decided {
            let outcome = match fate {
                Fate::Sent(_) | Fate::Suppressed(_) => Outcome::Ack,
                Fate::Failed(reason) => Outcome::dead_letter(reason.clone()),
                Fate::Retry(reason, after) => Outcome::Retry {
                    error: reason.clone(),
                    after: *after,
                },
            };
            fates.insert(row.id, outcome);
        }
        self.watch_error_rate(&decided).await?;
        Ok(())
    }

    /// Claims the rows of `ids` that are queued (or abandoned in `sending`) in running runs.
    async fn claim(&self, channel: Channel, ids: &[i64]) -> Result<Vec<Claimed>, DbErr> {
        let now = Timestamp::now().millis();
        let stale = now
            - i64::try_from(self.parts.settings.reclaim_after().as_millis()).unwrap_or(i64::MAX);
        let running = Query::select()
            .column("id")
            .from("campaign_runs")
            .and_where(Expr::col("status").eq(RunStatus::Running.as_str()))
            .to_owned();
        let update = Query::update()
            .table("deliveries")
            .value("status", DeliveryStatus::Sending.as_str())
            .value("claimed_at", now)
            .value("updated_at", now)
            .value("attempts", Expr::col("attempts").add(1))
            .and_where(Expr::col("id").is_in(ids.iter().copied()))
            .and_where(Expr::col("channel").eq(channel.as_str()))
            .and_where(
                Expr::col("status")
                    .eq(DeliveryStatus::Queued.as_str())
                    .or(Expr::col("status")
                        .eq(DeliveryStatus::Sending.as_str())
                        .and(Expr::col("claimed_at").lt(stale))
                        // One that killed every worker that took it is failed by the supervisor.
                        .and(
                            Expr::col("attempts").lt(i64::from(self.parts.settings.max_attempts)),
                        )),
            )
            .and_where(Expr::col("run_id").in_subquery(running))
            .returning(Query::returning().columns([
                "id",
                "workspace_id",
                "run_id",
                "campaign_id",
                "contact_id",
                "variant_id",
                "attempts",
            ]))
            .to_owned();
        self.parts
            .db
            .query_all(&update)
            .await?
            .iter()
            .map(|row| {
                Ok(Claimed {
                    id: row.try_get("", "id")?,
                    workspace: WorkspaceId(row.try_get("", "workspace_id")?),
                    run: row.try_get("", "run_id")?,
                    campaign: CampaignId(row.try_get("", "campaign_id")?),
                    contact: ContactId(row.try_get("", "contact_id")?),
                    variant: VariantId(row.try_get("", "variant_id")?),
                    attempts: row.try_get("", "attempts")?,
                })
            })
            .collect()
    }

    /// Jobs whose row another worker holds in `sending` come back after the reclaim time
    /// instead of being dropped: if that worker died, its claim is stale by then and this
    /// job takes the delivery over (a job taken over from a dead worker can arrive a moment
    /// before the row's claim is old enough). Other unclaimed jobs (finished, cancelled,
    /// paused) are dropped.
    async fn postpone_held(
        &self,
        ids: &[i64],
        claimed: &[Claimed],
        fates: &mut HashMap<i64, Outcome>,
    ) -> Result<(), DbErr> {
        let claimed: HashSet<i64> = claimed.iter().map(|c| c.id).collect();
        let others: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !claimed.contains(id))
            .collect();
        let select = Query::select()
            .column("id")
            .from("deliveries")
            .and_where(Expr::col("id").is_in(others))
            .and_where(Expr::col("status").eq(DeliveryStatus::Sending.as_str()))
            .to_owned();
        for row in self.parts.db.query_all(&select).await? {
            let id: i64 = row.try_get("", "id")?;
            fates.insert(
                id,
                Outcome::Postpone {
                    after: self.parts.settings.reclaim_after(),
                },
            );
        }
        Ok(())
    }

    async fn contacts(
        &self,
        claimed: &[Claimed],
    ) -> Result<HashMap<ContactId, ContactData>, DbErr> {
        let mut by_workspace: HashMap<WorkspaceId, Vec<ContactId>> = HashMap::new();
        for row in claimed {
            by_workspace
                .entry(row.workspace)
                .or_default()
                .push(row.contact);
        }
        let mut found = HashMap::with_capacity(claimed.len());
        for (workspace, ids) in by_workspace {
            for contact in contacts::by_ids(&self.parts.db, workspace, &ids).await? {
                found.insert(contact.id, contact);
            }
        }
        Ok(found)
    }

    /// The campaign, from the cache; a launched campaign no longer changes.
    async fn campaign(
        &self,
        workspace: WorkspaceId,
        id: CampaignId,
    ) -> Result<Option<Arc<Campaign>>, CampaignError> {
        if let Some(found) = self
            .campaigns
            .lock()
            .ok()
            .and_then(|cache| cache.get(&(workspace, id)).cloned())
        {
            return Ok(Some(found));
        }
        let Some(campaign) = store::get(&self.parts.db, workspace, id).await? else {
            return Ok(None);
        };
        let campaign = Arc::new(campaign);
        if let Ok(mut cache) = self.campaigns.lock() {
            if cache.len() >= CAMPAIGN_CACHE {
                cache.clear();
            }
            cache.insert((workspace, id), Arc::clone(&campaign));
        }
        Ok(Some(campaign))
    }

    /// Renders the message of one delivery, or says why there is none.
    fn message(
        &self,
        channel: Channel,
        campaign: &Campaign,
        renderer: &MessageRenderer<'_>,
        row: &Claimed,
        contact: &ContactData,
        senders: Option<&Identities>,
    ) -> Result<Message, Fate> {
        // The contact may have changed since launch wrote the row as reachable.
        let status = contact
            .value
            .get("subscriptions")
            .and_then(|s| s.get(channel.as_str()))
            .and_then(Json::as_str)
            .map_or(Some(SubscriptionStatus::Subscribed), |s| {
                SubscriptionStatus::parse(s).ok()
            });
        let to = contact.value.get("email").and_then(Json::as_str);
        match reachability(channel, to.is_some(), status) {
            Ok(()) => {}
            Err(Suppression::NoAddress) => {
                return Err(Fate::Suppressed(Suppression::NoAddress.reason().into()));
            }
            Err(suppression) => {
                return Err(Fate::Suppressed(format!("{suppression} since launch")));
            }
        }
        let Some((slot, variant)) = campaign.variant(row.variant) else {
            return Err(Fate::Failed(format!(
                "variant {} no longer exists in campaign {}",
                row.variant, campaign.id
            )));
        };
        let delivery_id = row.id.to_string();
        let rendered = renderer.render_on(slot, variant, contact, &delivery_id, &[channel]);
        match channel {
            Channel::Email => {
                let Some(to) = to else {
                    return Err(Fate::Suppressed(Suppression::NoAddress.reason().into()));
                };
                let email = match rendered.email {
                    Some(Ok(email)) => email,
                    Some(Err(error)) => return Err(Fate::Failed(format!("template: {error}"))),
                    None => return Err(Fate::Failed("the variant has no email content".into())),
                };
                let contact_id = contact.id.to_string();
                let identity = senders.and_then(|senders| senders.for_from(&email.from));
                Ok(Message::Email(EmailMessage {
                    delivery_id: delivery_id.clone(),
                    campaign_id: Some(campaign.id.to_string()),
                    to: to.to_owned(),
                    reply_to: email
                        .reply_to
                        .or_else(|| identity.and_then(|i| i.reply_to.clone())),
                    subject: email.subject,
                    text: Some(email.text),
                    html: Some(with_preheader(&email.preheader, email.html)),
                    list_unsubscribe: Some(ListUnsubscribe {
                        url: self
                            .parts
                            .tracker
                            .unsubscribe_url(&delivery_id, &contact_id),
                        mailto: self.parts.unsubscribe_mailto.clone(),
                        one_click: true,
                    }),
                    headers: Vec::new(),
                    dkim: identity.map(|i| Arc::clone(&i.key)),
                    return_path: identity.and_then(|i| i.return_path.clone()),
                    from: email.from,
                }))
            }
            Channel::Webhook => {
                let webhook = match rendered.webhook {
                    Some(Ok(webhook)) => webhook,
                    Some(Err(error)) => return Err(Fate::Failed(format!("template: {error}"))),
                    None => {
                        return Err(Fate::Failed("the variant has no webhook content".into()));
                    }
                };
                Ok(Message::Webhook(WebhookMessage {
                    url: self.parts.settings.webhook_url.clone(),
                    webhook_id: format!("msg_{delivery_id}"),
                    body: webhook.body.into_bytes(),
                    headers: webhook.headers,
                }))
            }
        }
    }

    /// Sends the batch's messages (moved, not copied: a batch of 20 KB emails is megabytes).
    async fn send(&self, channel: Channel, batch: Vec<Message>) -> Vec<SendResult> {
        let concurrency = self.parts.settings.concurrency;
        match channel {
            Channel::Email => {
                let messages: Vec<EmailMessage> = batch
                    .into_iter()
                    .filter_map(|m| match m {
                        Message::Email(email) => Some(email),
                        Message::Webhook(_) => None,
                    })
                    .collect();
                self.parts.email.send_many(&messages, concurrency).await
            }
            Channel::Webhook => {
                let Some(sender) = &self.parts.webhook else {
                    return batch
                        .iter()
                        .map(|_| {
                            Err(DispatchError::permanent(
                                "no webhook secret is configured (webhook.secret)",
                            ))
                        })
                        .collect();
                };
                let messages: Vec<WebhookMessage> = batch
                    .into_iter()
                    .filter_map(|m| match m {
                        Message::Webhook(webhook) => Some(webhook),
                        Message::Email(_) => None,
                    })
                    .collect();
                sender.send_many(&messages, concurrency).await
            }
        }
    }

    /// What a failed send becomes: a retry while attempts remain and the error may pass,
    /// else a failure for good.
    fn failure(&self, row: &Claimed, error: &DispatchError) -> Fate {
        let max = i64::from(self.parts.settings.max_attempts);
        if error.is_transient() {
            if row.attempts < max {
                return Fate::Retry(error.reason().to_owned(), error.retry_after());
            }
            return Fate::Failed(format!(
                "gave up after {} attempts: {}",
                row.attempts,
                error.reason()
            ));
        }
        Fate::Failed(error.reason().to_owned())
    }

    /// Records every outcome in one statement, for rows still `sending` (a row a user
    /// cancelled meanwhile stays cancelled).
    async fn record(&self, decided: &[(Claimed, Fate)]) -> Result<(), DbErr> {
        if decided.is_empty() {
            return Ok(());
        }
        let backend = self.parts.db.get_database_backend();
        let now = Timestamp::now().millis();
        let mut values: Vec<Value> = Vec::with_capacity(decided.len() * 5);
        let mut rows = Vec::with_capacity(decided.len());
        for (row, fate) in decided {
            let (status, reason, detail, sent_at) = match fate {
                Fate::Sent(detail) => (DeliveryStatus::Sent, None, Some(detail), Some(now)),
                Fate::Failed(reason) => (DeliveryStatus::Failed, Some(reason), None, None),
                Fate::Retry(reason, _) => (DeliveryStatus::Queued, Some(reason), None, None),
                Fate::Suppressed(reason) => (DeliveryStatus::Suppressed, Some(reason), None, None),
            };
            let n = values.len();
            rows.push(format!(
                "(CAST({} AS BIGINT), {}, {}, {}, CAST({} AS BIGINT))",
                placeholder(backend, n + 1),
                placeholder(backend, n + 2),
                placeholder(backend, n + 3),
                placeholder(backend, n + 4),
                placeholder(backend, n + 5),
            ));
            values.push(row.id.into());
            values.push(status.as_str().into());
            values.push(reason.cloned().into());
            values.push(detail.map(|d| truncate(d, 1000)).into());
            values.push(sent_at.into());
        }
        let sql = format!(
            "UPDATE deliveries SET status = v.column2, reason = v.column3, detail = v.column4, \
             sent_at = v.column5, updated_at = {now} \
             FROM (VALUES {}) AS v WHERE deliveries.id = v.column1 AND deliveries.status = 'sending'",
            rows.join(", ")
        );
        self.parts
            .db
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        Ok(())
    }

    /// Pauses a run whose deliveries fail too often, saying why.
    async fn watch_error_rate(&self, decided: &[(Claimed, Fate)]) -> Result<(), DbErr> {
        let settings = &self.parts.settings;
        if settings.pause_error_rate >= 1.0 {
            return Ok(());
        }
        let mut to_pause = Vec::new();
        if let Ok(mut guard) = self.guard.lock() {
            for (row, fate) in decided {
                let window = guard.entry(row.run).or_default();
                match fate {
                    Fate::Sent(_) => window.finished += 1,
                    Fate::Failed(reason) => {
                        window.finished += 1;
                        window.failed += 1;
                        reason.clone_into(&mut window.last_error);
                    }
                    Fate::Retry(..) | Fate::Suppressed(_) => {}
                }
            }
            for (&run, window) in guard.iter_mut() {
                #[allow(clippy::cast_precision_loss)]
                let rate = window.failed as f64 / Ord::max(window.finished, 1) as f64;
                if window.finished >= settings.pause_min_attempts
                    && rate > settings.pause_error_rate
                {
                    to_pause.push((
                        run,
                        format!(
                            "paused automatically: {} of {} deliveries ({:.0}%) failed, over the {:.0}% limit (sending.pause_error_rate); last error: {}",
                            window.failed,
                            window.finished,
                            rate * 100.0,
                            settings.pause_error_rate * 100.0,
                            window.last_error
                        ),
                    ));
                    *window = ErrorWindow::default();
                }
            }
        }
        for (run, reason) in to_pause {
            if control::pause_run(&self.parts.db, run, &reason).await? {
                tracing::warn!(run, %reason, "campaign paused by the error-rate guard");
            }
        }
        Ok(())
    }

    /// Drains `channel`'s queue once (due retries, abandoned jobs, everything new) and
    /// returns what it did; for tests and one-shot runs.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn run_once(
        &self,
        queues: &Queues,
        channel: Channel,
        consumer: &str,
    ) -> Result<RunStats, CampaignError> {
        let queue = queues.open(channel).await?;
        let consumer = queue.consumer(consumer).await?;
        Ok(consumer
            .run_once(async |batch| self.handle(channel, batch).await)
            .await?)
    }

    /// Works `channel`'s queue until `shutdown` resolves. Redis outages are waited out.
    pub async fn run(
        self: Arc<Self>,
        queues: Queues,
        channel: Channel,
        consumer: String,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let consumer = loop {
            let opened = match queues.open(channel).await {
                Ok(queue) => {
                    queue
                        .consumer(format!("{consumer}-{}", channel.as_str()))
                        .await
                }
                Err(error) => Err(error),
            };
            match opened {
                Ok(consumer) => break consumer,
                Err(error) => {
                    tracing::warn!(channel = channel.as_str(), %error, "cannot open the delivery queue; trying again in 2 s");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            }
        };
        // A plain closure returning an owning future: the future of an async closure borrows
        // the closure, which `tokio::spawn`'s `Send` check cannot see through.
        let result = consumer
            .run(
                move |batch| {
                    let worker = Arc::clone(&self);
                    async move { worker.handle(channel, batch).await }
                },
                shutdown,
            )
            .await;
        match result {
            Ok(stats) => tracing::info!(
                channel = channel.as_str(),
                handled = stats.handled,
                "delivery worker stopped"
            ),
            Err(error) => {
                tracing::error!(channel = channel.as_str(), %error, "delivery worker stopped on an error")
            }
        }
    }
}

fn placeholder(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

/// The HTML with the preheader as the hidden first text mail clients show after the subject.
pub(crate) fn with_preheader(preheader: &str, html: String) -> String {
    if preheader.is_empty() {
        return html;
    }
    let escaped = preheader
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let hidden = format!(
        "<div style=\"display:none;max-height:0;overflow:hidden;mso-hide:all\">{escaped}</div>"
    );
    match html.find("<body") {
        Some(at) => match html[at..].find('>') {
            Some(end) => {
                let split = at + end + 1;
                format!("{}{hidden}{}", &html[..split], &html[split..])
            }
            None => format!("{hidden}{html}"),
        },
        None => format!("{hidden}{html}"),
    }
}
