//! The delivery worker: jobs in, messages out, statuses recorded.
//!
//! A batch of jobs (delivery ids) is handled in these steps, each one statement or one
//! concurrent burst whatever the batch size (recording: one statement per small group):
//!
//! 1. **Claim**: one `UPDATE … RETURNING` moves the batch's rows from `queued` to `sending`
//!    (compare-and-set), for runs that are running. A row another worker claimed, one that is
//!    finished, cancelled or belongs to a paused run is not returned, and its job is dropped
//!    (acknowledged). A row left in `sending` by a worker that died is taken over once its
//!    claim is older than `sending.reclaim_after_secs`. So a message is sent twice only if a
//!    worker died while it was in flight.
//! 2. **Load and render**: the batch's contacts in one query, the suppression list in one
//!    more, campaigns from a cache; each message is rendered with tracking links signed for
//!    its delivery (a webhook here, an email when a send slot is free for it, so a worker
//!    holds at most `sending.concurrency` rendered emails per channel). A contact deleted,
//!    unsubscribed or put on the suppression list since launch is suppressed; data that
//!    breaks the template fails that delivery with the template's message. Messages over a contact's frequency cap (sent by other campaigns
//!    since launch) are suppressed, one query for the batch ([`crate::frequency`]).
//! 3. **Send** concurrently over the pooled SMTP connections or keep-alive HTTP client, at
//!    most `sending.concurrency` messages of a channel in flight in the whole worker.
//! 4. **Record** outcomes as sends complete, in small groups (a few dozen, or what completed
//!    within a few milliseconds) of one `UPDATE … FROM (VALUES …)` each (again only rows
//!    still `sending`); a message counts as in flight until its outcome is recorded, so a
//!    worker killed at any moment has sent at most `sending.concurrency` messages per channel
//!    that will be sent again. Then settle the jobs: acknowledge, retry later (transient
//!    errors, status back to `queued` with the reason), or dead-letter (permanent errors and
//!    exhausted attempts, status `failed` with the reason).
//! 5. **Bounces**: recipients the SMTP relay refused are applied as bounces
//!    ([`crate::feedback`]): a 5xx marks the contact `bounced` and suppresses the address at
//!    once, 4xx answers are counted as soft bounces.
//!
//! After recording, a run whose share of failed deliveries passes `sending.pause_error_rate`
//! is paused with the reason, so a broken template or a dead receiver does not burn through
//! the whole audience.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clarion_contacts::Ingest;
use clarion_dispatch::{
    DispatchError, EmailMessage, EmailSender, ListUnsubscribe, SendReceipt, SendResult,
    WebhookMessage, WebhookSender,
};
use clarion_model::{
    CampaignId, Channel, ContactId, DeliveryJob, DeliveryStatus, RunStatus, SubscriptionStatus,
    Suppression, TimeZone, Timestamp, VariantId, WorkspaceId, reachability,
};
use clarion_queue::{Outcome, Received, RunStats};
use clarion_template::Tracker;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value,
    sea_query::{Expr, ExprTrait, Query},
};
use serde_json::Value as Json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    CampaignError,
    campaign::Campaign,
    contacts::{self, ContactData},
    control,
    endpoints::{self, EndpointRef, SendTarget, Tally},
    feedback::{self, BounceSettings},
    frequency,
    render::MessageRenderer,
    schedule::{
        quiet::{self, QUIET_HOURS, QuietAction, QuietHours},
        rfc3339,
    },
    senders::{Identities, IdentityCache},
    sending::{Queues, SendingSettings},
    store, suppression,
    throttle::Throttle,
};

/// The parts a worker sends with.
pub struct WorkerParts {
    pub db: DatabaseConnection,
    pub settings: SendingSettings,
    /// Signs tracking and unsubscribe links; must use the same keys as the tracking endpoints.
    pub tracker: Tracker,
    pub email: EmailSender,
    /// Sends webhooks to endpoints (with their own secrets) and to `sending.webhook_url`
    /// (with `webhook.secret`; without one those deliveries fail with that reason). None
    /// fails every webhook delivery.
    pub webhook: Option<WebhookSender>,
    /// Offered as a `mailto:` in `List-Unsubscribe` when set.
    pub unsubscribe_mailto: Option<String>,
    pub throttle: Throttle,
    /// Where bounces at send time are recorded (events, contact status, suppressions).
    pub ingest: Ingest,
    /// When soft bounces make an address `bounced`.
    pub bounces: BounceSettings,
}

/// A delivery worker; share one per process (`Arc`) across its channel loops.
pub struct Worker {
    parts: WorkerParts,
    campaigns: Mutex<HashMap<(WorkspaceId, CampaignId), Arc<Campaign>>>,
    senders: IdentityCache,
    guard: Mutex<HashMap<i64, ErrorWindow>>,
    /// `sending.concurrency` slots per channel; see [`Worker::send_and_record`].
    email_slots: Arc<Semaphore>,
    webhook_slots: Arc<Semaphore>,
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
    /// Not sent yet and not an attempt: queued again after the delay (an endpoint's rate
    /// limit is used up for this second, or the endpoint is disabled).
    Postponed(String, Duration),
}

// One per claimed delivery, built once and moved into the send: boxing the email would only
// add an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Message {
    Email(EmailMessage),
    /// The call, and the endpoint it goes to (`None`: `sending.webhook_url`).
    Webhook(WebhookMessage, Option<Arc<SendTarget>>),
}

/// A delivery about to be sent: its message, or (emails) the promise to render it once a
/// send slot is free, so that a batch holds at most `sending.concurrency` rendered emails
/// (20 KB of HTML and its text each) rather than all of them.
enum Outgoing {
    Ready(Box<Message>),
    Render,
}

impl Outgoing {
    /// The webhook endpoint this message goes to, when that endpoint has a rate limit.
    fn limited_endpoint(&self) -> Option<&Arc<SendTarget>> {
        match self {
            Outgoing::Ready(message) => match message.as_ref() {
                Message::Webhook(_, Some(target)) if target.rate_limit.is_some() => Some(target),
                _ => None,
            },
            Outgoing::Render => None,
        }
    }
}

/// The webhook endpoints a batch's variants name, by the reference they use.
type Targets = HashMap<(WorkspaceId, EndpointRef), Arc<SendTarget>>;

/// Most campaigns a worker keeps compiled in memory.
const CAMPAIGN_CACHE: usize = 64;

/// Most outcomes recorded by one statement ...
const RECORD_GROUP: usize = 64;
/// ... and longest an outcome waits for others to be recorded with it.
const RECORD_WAIT: Duration = Duration::from_millis(5);

impl Worker {
    #[must_use]
    pub fn new(parts: WorkerParts) -> Self {
        let slots = || Arc::new(Semaphore::new(parts.settings.concurrency));
        Self {
            email_slots: slots(),
            webhook_slots: slots(),
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
        let mut to_send: Vec<(Claimed, Outgoing)> = Vec::with_capacity(claimed.len());
        let people = self.contacts(&claimed).await?;
        let suppressed = self.suppressed(channel, &claimed).await?;
        let quiet = self.quiet_hours_of_retries(&claimed).await?;
        let now = chrono::Utc::now();
        let mut campaigns: HashMap<CampaignId, Arc<Campaign>> = HashMap::new();
        for row in &claimed {
            if !campaigns.contains_key(&row.campaign)
                && let Some(campaign) = self.campaign(row.workspace, row.campaign).await?
            {
                campaigns.insert(row.campaign, campaign);
            }
        }
        let targets = match channel {
            Channel::Webhook => self.targets(&claimed, &campaigns).await?,
            Channel::Email => Targets::new(),
        };
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
        // Renders one claimed row's message (the rows below are checked for a campaign and a
        // contact first).
        let render = |row: &Claimed| {
            let (Some(campaign), Some(renderer), Some(contact)) = (
                campaigns.get(&row.campaign),
                renderers.get(&row.campaign),
                people.get(&row.contact),
            ) else {
                return Err(Fate::Suppressed(
                    "the campaign or the contact was deleted".into(),
                ));
            };
            let lookups = Lookups {
                targets: &targets,
                senders: identities.get(&row.workspace).map(Arc::as_ref),
            };
            self.message(channel, campaign, renderer, row, contact, lookups)
        };
        for row in claimed {
            if !campaigns.contains_key(&row.campaign) {
                decided.push((row, Fate::Suppressed("the campaign was deleted".into())));
                continue;
            }
            let Some(contact) = people.get(&row.contact) else {
                decided.push((row, Fate::Suppressed("the contact was deleted".into())));
                continue;
            };
            if let Some(source) = suppressed.get(&row.contact) {
                decided.push((row, Fate::Suppressed(source.delivery_reason().into())));
                continue;
            }
            if let Some(fate) = quiet
                .get(&row.campaign)
                .filter(|_| is_retry(&row))
                .and_then(|q| quiet_retry(q, contact, now))
            {
                decided.push((row, fate));
                continue;
            }
            // An email is rendered when a send slot is free for it (`send_and_record`); a
            // webhook now, as endpoint rate limits need its target.
            let outgoing = match channel {
                Channel::Email => Outgoing::Render,
                Channel::Webhook => match render(&row) {
                    Ok(message) => Outgoing::Ready(Box::new(message)),
                    Err(fate) => {
                        decided.push((row, fate));
                        continue;
                    }
                },
            };
            to_send.push((row, outgoing));
        }
        // Other campaigns may have sent to these contacts since launch: one query per batch.
        let (kept, over_cap) = frequency::split(
            &self.parts.db,
            channel,
            Timestamp::now(),
            to_send,
            |(row, _)| {
                let exempt = campaigns.get(&row.campaign).is_none_or(|c| c.transactional);
                (!exempt).then_some((row.workspace, row.contact))
            },
        )
        .await?;
        to_send = kept;
        decided.extend(
            over_cap
                .into_iter()
                .map(|(row, _)| (row, Fate::Suppressed(frequency::REASON.into()))),
        );
        if channel == Channel::Webhook {
            to_send = self.within_endpoint_limits(to_send, &mut decided).await?;
        }

        // What was decided without sending is recorded first, then each send as it completes.
        self.record(&decided).await?;
        let sent = self
            .send_and_record(channel, to_send, &people, &render)
            .await?;
        decided.extend(sent.decided);
        let bounces = sent.bounces;
        self.apply_bounces(bounces).await;
        self.roll_up(&decided).await;
        for (row, fate) in &decided {
            let outcome = match fate {
                Fate::Sent(_) | Fate::Suppressed(_) => Outcome::Ack,
                Fate::Failed(reason) => Outcome::dead_letter(reason.clone()),
                Fate::Retry(reason, after) => Outcome::Retry {
                    error: reason.clone(),
                    after: *after,
                },
                Fate::Postponed(_, after) => Outcome::Postpone { after: *after },
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

    /// The quiet hours in force now of the campaigns whose rows in `claimed` are retries
    /// (quiet hours were applied to first attempts at launch).
    async fn quiet_hours_of_retries(
        &self,
        claimed: &[Claimed],
    ) -> Result<HashMap<CampaignId, QuietHours>, CampaignError> {
        let mut found = HashMap::new();
        let retried: HashSet<(WorkspaceId, CampaignId)> = claimed
            .iter()
            .filter(|row| is_retry(row))
            .map(|row| (row.workspace, row.campaign))
            .collect();
        for (workspace, campaign) in retried {
            if let Some((quiet, _)) = quiet::stored(&self.parts.db, workspace, campaign).await? {
                found.insert(campaign, quiet);
            }
        }
        Ok(found)
    }

    /// The claimed rows' contacts that are on `channel`'s suppression list now.
    async fn suppressed(
        &self,
        channel: Channel,
        claimed: &[Claimed],
    ) -> Result<HashMap<ContactId, suppression::Source>, DbErr> {
        let mut by_workspace: HashMap<WorkspaceId, Vec<ContactId>> = HashMap::new();
        for row in claimed {
            by_workspace
                .entry(row.workspace)
                .or_default()
                .push(row.contact);
        }
        let mut found = HashMap::new();
        for (workspace, ids) in by_workspace {
            found.extend(suppression::of_contacts(&self.parts.db, workspace, channel, &ids).await?);
        }
        Ok(found)
    }

    /// Applies the bounces of a batch. Its outcomes are recorded already, so a failure here
    /// only logs: the delivery history keeps the relay's answer either way.
    async fn apply_bounces(&self, bounces: Vec<(WorkspaceId, feedback::Report)>) {
        let mut by_workspace: HashMap<WorkspaceId, Vec<feedback::Report>> = HashMap::new();
        for (workspace, report) in bounces {
            by_workspace.entry(workspace).or_default().push(report);
        }
        for (workspace, reports) in by_workspace {
            if let Err(error) =
                feedback::apply(&self.parts.ingest, &self.parts.bounces, workspace, &reports).await
            {
                tracing::warn!(%error, bounces = reports.len(), "recording bounces failed");
            }
        }
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

    /// The webhook endpoints the variants of the batch name, in one query per workspace:
    /// read for every batch, so a rotation, a new URL or a disabled endpoint counts at once.
    async fn targets(
        &self,
        claimed: &[Claimed],
        campaigns: &HashMap<CampaignId, Arc<Campaign>>,
    ) -> Result<Targets, CampaignError> {
        let mut wanted: HashMap<WorkspaceId, HashSet<EndpointRef>> = HashMap::new();
        for row in claimed {
            let Some((_, variant)) = campaigns
                .get(&row.campaign)
                .and_then(|campaign| campaign.variant(row.variant))
            else {
                continue;
            };
            if let Some(endpoint) = variant.webhook.as_ref().and_then(|w| w.endpoint.as_ref()) {
                wanted
                    .entry(row.workspace)
                    .or_default()
                    .insert(EndpointRef::parse(endpoint));
            }
        }
        let mut targets = Targets::new();
        for (workspace, refs) in wanted {
            let refs: Vec<EndpointRef> = refs.into_iter().collect();
            for (key, target) in endpoints::targets(&self.parts.db, workspace, &refs).await? {
                targets.insert((workspace, key), target);
            }
        }
        Ok(targets)
    }

    /// Keeps each rate-limited endpoint's messages within what its limit grants this second
    /// (shared by all workers through Redis); the rest wait for a later second without using
    /// up an attempt.
    async fn within_endpoint_limits(
        &self,
        to_send: Vec<(Claimed, Outgoing)>,
        decided: &mut Vec<(Claimed, Fate)>,
    ) -> Result<Vec<(Claimed, Outgoing)>, CampaignError> {
        let mut wanted: HashMap<i64, (u32, usize)> = HashMap::new();
        for (_, message) in &to_send {
            if let Some(target) = message.limited_endpoint()
                && let Some(limit) = target.rate_limit
            {
                wanted.entry(target.id).or_insert((limit, 0)).1 += 1;
            }
        }
        if wanted.is_empty() {
            return Ok(to_send);
        }
        let mut granted: HashMap<i64, usize> = HashMap::with_capacity(wanted.len());
        for (id, (limit, count)) in wanted {
            let scope = format!("webhook-endpoint-{id}");
            let got = self.parts.throttle.reserve_in(&scope, count, limit).await?;
            granted.insert(id, got);
        }
        let mut kept = Vec::with_capacity(to_send.len());
        for (row, message) in to_send {
            let limited = message.limited_endpoint().map(Arc::clone);
            let Some(target) = limited else {
                kept.push((row, message));
                continue;
            };
            match granted.get_mut(&target.id) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    kept.push((row, message));
                }
                _ => decided.push((
                    row,
                    Fate::Postponed(
                        format!(
                            "waiting for the rate limit of webhook endpoint {:?} ({}/s)",
                            target.name,
                            target.rate_limit.unwrap_or_default()
                        ),
                        crate::throttle::until_next_second(),
                    ),
                )),
            }
        }
        Ok(kept)
    }

    /// Renders the message of one delivery, or says why there is none.
    fn message(
        &self,
        channel: Channel,
        campaign: &Campaign,
        renderer: &MessageRenderer<'_>,
        row: &Claimed,
        contact: &ContactData,
        Lookups { targets, senders }: Lookups<'_>,
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
                let webhook_id = format!("msg_{delivery_id}");
                let endpoint = variant.webhook.as_ref().and_then(|w| w.endpoint.as_deref());
                let Some(endpoint) = endpoint else {
                    return Ok(Message::Webhook(
                        WebhookMessage {
                            url: self.parts.settings.webhook_url.clone(),
                            webhook_id,
                            body: webhook.body.into_bytes(),
                            headers: webhook.headers,
                            signing: None,
                            timeout: None,
                        },
                        None,
                    ));
                };
                let key = (row.workspace, EndpointRef::parse(endpoint));
                let Some(target) = targets.get(&key) else {
                    return Err(Fate::Failed(format!("{} no longer exists", key.1)));
                };
                if !target.enabled {
                    return Err(Fate::Postponed(
                        format!("webhook endpoint {:?} is disabled", target.name),
                        // Checked again after the first retry delay; a look is one query.
                        Duration::from_millis(self.parts.settings.backoff_base_ms),
                    ));
                }
                Ok(Message::Webhook(
                    target.message(webhook_id, webhook.body.into_bytes(), webhook.headers),
                    Some(Arc::clone(target)),
                ))
            }
        }
    }

    /// Sends the batch's messages (moved, not copied) and records each outcome soon after its
    /// send completes, returning the outcomes with the bounces the relay reported. An email
    /// is rendered by `render` once it has a slot (a template failure is recorded like an
    /// outcome): a batch of 500 rendered 20 KB emails held at once, two batches per worker,
    /// was most of a worker's memory.
    ///
    /// A message takes one of the channel's `sending.concurrency` slots of this worker
    /// before it is sent and gives it back once its outcome is recorded, so however many
    /// batches run at once, a worker killed at any moment leaves at most that many messages
    /// sent but not recorded: the ones the worker taking over sends again. Outcomes are
    /// recorded in groups of up to [`RECORD_GROUP`], one statement each, a group waiting at
    /// most [`RECORD_WAIT`] for its first outcome's company; one group is recorded while the
    /// next fills. Webhook results are added to their endpoints' results, one UPDATE per
    /// endpoint, at the end.
    async fn send_and_record(
        &self,
        channel: Channel,
        to_send: Vec<(Claimed, Outgoing)>,
        people: &HashMap<ContactId, ContactData>,
        render: &(dyn Fn(&Claimed) -> Result<Message, Fate> + Sync),
    ) -> Result<Sent, CampaignError> {
        let slots = Arc::clone(self.slots(channel));
        let mut waiting = to_send.into_iter();
        let mut in_flight = FuturesUnordered::new();
        let mut group = Group::default();
        let mut recording: Option<BoxFuture<'_, Recorded>> = None;
        let mut sent = Sent::default();
        let mut tallies: HashMap<i64, Tally> = HashMap::new();
        loop {
            let nothing_left = waiting.as_slice().is_empty() && in_flight.is_empty();
            if recording.is_none() && group.is_due(nothing_left) {
                recording = Some(Box::pin(self.record_group(std::mem::take(&mut group))));
            }
            if nothing_left && recording.is_none() && group.outcomes.is_empty() {
                break;
            }
            let wait_until = group.due_at();
            tokio::select! {
                permit = Arc::clone(&slots).acquire_owned(), if !waiting.as_slice().is_empty() => {
                    let (Ok(permit), Some((row, outgoing))) = (permit, waiting.next()) else {
                        continue;
                    };
                    let message = match outgoing {
                        Outgoing::Ready(message) => *message,
                        Outgoing::Render => match render(&row) {
                            Ok(message) => message,
                            Err(fate) => {
                                group.add(row, fate, permit);
                                continue;
                            }
                        },
                    };
                    in_flight.push(async move {
                        let (result, answer) = self.send_one(message).await;
                        (row, result, answer, permit)
                    });
                }
                Some((row, result, answer, permit)) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Some((endpoint, status)) = answer {
                        tally(tallies.entry(endpoint).or_default(), &result, status);
                    }
                    let fate = match result {
                        Ok(receipt) => Fate::Sent(receipt.detail),
                        Err(error) => {
                            if let Some(report) = bounce_report(&row, &error, people.get(&row.contact)) {
                                sent.bounces.push((row.workspace, report));
                            }
                            self.failure(&row, &error)
                        }
                    };
                    group.add(row, fate, permit);
                }
                Some(recorded) = async { match recording.as_mut() {
                    Some(future) => Some(future.await),
                    None => None,
                } }, if recording.is_some() => {
                    recording = None;
                    sent.decided.extend(recorded?);
                }
                () = tokio::time::sleep_until(wait_until), if recording.is_none() && !group.outcomes.is_empty() => {}
            }
        }
        endpoints::record_results(&self.parts.db, &tallies).await?;
        Ok(sent)
    }

    /// Records one group of outcomes, then gives their slots back.
    async fn record_group(&self, group: Group) -> Recorded {
        self.record(&group.outcomes).await?;
        drop(group.slots);
        Ok(group.outcomes)
    }

    /// The in-flight slots of `channel`.
    fn slots(&self, channel: Channel) -> &Arc<Semaphore> {
        match channel {
            Channel::Email => &self.email_slots,
            Channel::Webhook => &self.webhook_slots,
        }
    }

    /// Sends one message; for a webhook to an endpoint, also the endpoint and the HTTP status
    /// it answered, for its results.
    async fn send_one(&self, message: Message) -> (SendResult, Option<(i64, Option<u16>)>) {
        match message {
            Message::Email(email) => (self.parts.email.send_email(&email).await, None),
            Message::Webhook(webhook, target) => {
                let Some(sender) = &self.parts.webhook else {
                    return (
                        Err(DispatchError::permanent(
                            "no webhook secret is configured (webhook.secret)",
                        )),
                        None,
                    );
                };
                let attempt = sender.attempt(&webhook).await;
                (attempt.result, target.map(|t| (t.id, attempt.status)))
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
        let mut values: Vec<Value> = Vec::with_capacity(decided.len() * 6);
        let mut rows = Vec::with_capacity(decided.len());
        for (row, fate) in decided {
            // A postponed delivery was not attempted: its claim's attempt is given back.
            let (status, reason, detail, sent_at, given_back) = match fate {
                Fate::Sent(detail) => (DeliveryStatus::Sent, None, Some(detail), Some(now), 0),
                Fate::Failed(reason) => (DeliveryStatus::Failed, Some(reason), None, None, 0),
                Fate::Retry(reason, _) => (DeliveryStatus::Queued, Some(reason), None, None, 0),
                Fate::Suppressed(reason) => {
                    (DeliveryStatus::Suppressed, Some(reason), None, None, 0)
                }
                Fate::Postponed(reason, _) => (DeliveryStatus::Queued, Some(reason), None, None, 1),
            };
            let n = values.len();
            rows.push(format!(
                "(CAST({} AS BIGINT), {}, {}, {}, CAST({} AS BIGINT), CAST({} AS BIGINT))",
                placeholder(backend, n + 1),
                placeholder(backend, n + 2),
                placeholder(backend, n + 3),
                placeholder(backend, n + 4),
                placeholder(backend, n + 5),
                placeholder(backend, n + 6),
            ));
            values.push(row.id.into());
            values.push(status.as_str().into());
            values.push(reason.cloned().into());
            values.push(detail.map(|d| truncate(d, 1000)).into());
            values.push(sent_at.into());
            values.push(i64::from(given_back).into());
        }
        let sql = format!(
            "UPDATE deliveries SET status = v.column2, reason = v.column3, detail = v.column4, \
             sent_at = v.column5, attempts = deliveries.attempts - v.column6, updated_at = {now} \
             FROM (VALUES {}) AS v WHERE deliveries.id = v.column1 AND deliveries.status = 'sending'",
            rows.join(", ")
        );
        self.parts
            .db
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        Ok(())
    }

    /// Brings the KPI roll-ups of the settled deliveries' contacts up to date. The outcomes
    /// are recorded already, so a failure is logged (rebuilding the run repairs it).
    async fn roll_up(&self, decided: &[(Claimed, Fate)]) {
        let mut by_workspace: HashMap<WorkspaceId, Vec<ContactId>> = HashMap::new();
        for (row, fate) in decided {
            if !matches!(fate, Fate::Retry(..)) {
                by_workspace
                    .entry(row.workspace)
                    .or_default()
                    .push(row.contact);
            }
        }
        for (workspace, contacts) in by_workspace {
            if let Err(error) =
                clarion_kpi::rollup::refresh_runs(&self.parts.db, workspace, &contacts).await
            {
                tracing::warn!(%error, contacts = contacts.len(), "KPI roll-ups of sent deliveries could not be updated");
            }
        }
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
                    Fate::Retry(..) | Fate::Suppressed(_) | Fate::Postponed(..) => {}
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

/// Whether this claim of the row is not its first attempt: a retry, or a job taken over from
/// a worker that died.
fn is_retry(row: &Claimed) -> bool {
    row.attempts > 1
}

/// What the quiet hours `quiet` make of a retry of a message to `contact` at `now`, in the
/// contact's own time zone (the quiet hours' zone for a contact without one): put off until
/// they end (not counted as an attempt; the row's reason says until when), or suppressed.
fn quiet_retry(quiet: &QuietHours, contact: &ContactData, now: DateTime<Utc>) -> Option<Fate> {
    let zone = contact
        .value
        .get("time_zone")
        .and_then(Json::as_str)
        .and_then(|name| TimeZone::parse(name).ok())
        .map_or(quiet.fallback, TimeZone::tz);
    if !quiet.quiet_at(now.with_timezone(&zone).naive_local()) {
        return None;
    }
    Some(match quiet.action {
        QuietAction::Drop => Fate::Suppressed(QUIET_HOURS.into()),
        QuietAction::Delay => {
            let until = quiet.next_allowed(zone, now);
            Fate::Postponed(
                format!("{QUIET_HOURS}: the retry waits until {}", rfc3339(until)),
                (until - now).to_std().unwrap_or_default(),
            )
        }
    })
}

/// Adds one attempt (its result, and the HTTP status if the endpoint answered) to its
/// endpoint's tally.
fn tally(tally: &mut Tally, result: &SendResult, status: Option<u16>) {
    match result {
        Ok(SendReceipt { .. }) => tally.successes += 1,
        Err(error) => {
            tally.failures += 1;
            tally.last_error = Some(error.reason().to_owned());
        }
    }
    if status.is_some() {
        tally.last_status = status;
    }
}

/// Outcomes sent and recorded, and the bounces the relay reported, of one batch.
#[derive(Default)]
struct Sent {
    decided: Vec<(Claimed, Fate)>,
    bounces: Vec<(WorkspaceId, feedback::Report)>,
}

/// A recorded group's outcomes, or why it could not be recorded.
type Recorded = Result<Vec<(Claimed, Fate)>, DbErr>;

/// Outcomes of completed sends waiting to be recorded together, with the slots their
/// messages hold until then.
#[derive(Default)]
struct Group {
    outcomes: Vec<(Claimed, Fate)>,
    slots: Vec<OwnedSemaphorePermit>,
    /// When the first outcome arrived.
    since: Option<tokio::time::Instant>,
}

impl Group {
    fn add(&mut self, row: Claimed, fate: Fate, slot: OwnedSemaphorePermit) {
        self.since.get_or_insert_with(tokio::time::Instant::now);
        self.outcomes.push((row, fate));
        self.slots.push(slot);
    }

    /// Whether the group should be recorded now: it is full, its first outcome waited long
    /// enough, or no more outcomes will come (`last`).
    fn is_due(&self, last: bool) -> bool {
        !self.outcomes.is_empty()
            && (last
                || self.outcomes.len() >= RECORD_GROUP
                || self.due_at() <= tokio::time::Instant::now())
    }

    /// When the group is due at the latest.
    fn due_at(&self) -> tokio::time::Instant {
        self.since
            .map_or_else(tokio::time::Instant::now, |since| since + RECORD_WAIT)
    }
}

/// The bounce report of a send the relay refused for the recipient, if it was that.
fn bounce_report(
    row: &Claimed,
    error: &DispatchError,
    contact: Option<&ContactData>,
) -> Option<feedback::Report> {
    let (code, text) = error.bounce()?;
    let contact = contact?;
    let email = contact.value.get("email").and_then(Json::as_str)?;
    Some(feedback::Report {
        recipient: feedback::Recipient::Contact {
            contact: row.contact,
            external_id: clarion_model::ExternalId::parse(contact.external_id.clone()).ok()?,
            email: clarion_model::EmailAddress::parse(email).ok()?,
        },
        kind: if code >= 500 {
            feedback::Kind::HardBounce
        } else {
            feedback::Kind::SoftBounce
        },
        code: Some(code),
        text: text.to_owned(),
        source: "smtp",
        // Each attempt's answer is its own report; soft bounces of one delivery count once.
        id: format!("{}-{}", row.id, row.attempts),
        delivery: Some(row.id),
        campaign: Some(row.campaign.0),
        occurred_at: None,
    })
}

/// What a batch looked up once for all its messages: the webhook endpoints its variants name
/// and the sender identities (with their DKIM keys) of the workspace.
#[derive(Clone, Copy)]
struct Lookups<'a> {
    targets: &'a Targets,
    senders: Option<&'a Identities>,
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
