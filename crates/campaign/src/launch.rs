//! Launch: a campaign's audience becomes delivery rows and queued jobs.
//!
//! One streaming pass over the current members of each group (targets in priority order,
//! then the fallback's audience), a page at a time: each member is assigned a variant and the
//! holdout with the same hash as previews and audience counts, gets one row per channel —
//! `holdout` (with the reason it could not have been reached, if any), `suppressed` with the
//! reason ([`clarion_model::Suppression`], the suppression list's entry:
//! [`crate::suppression`], or a full frequency cap: [`crate::frequency`]), or `queued` — written with one multi-row INSERT per page, and the queued rows' ids are
//! enqueued in pipelined batches before the next page is read. Memory holds one page, however
//! large the audience. Rows are unique per run, contact and channel, so a repeated write is
//! harmless.
//!
//! The database is the source of truth: if Redis fails half-way, the rows written stay
//! `queued` and the supervisor ([`crate::control::supervise`]) enqueues them once the queue
//! answers again.
//!
//! A launch keeps its place in the run: each page's rows are written in one transaction with
//! the run's [`Cursor`] (the group and the last member written), its heartbeat and its counts,
//! on condition that the cursor is still the one this launch wrote last. A launch whose
//! process died (or lost the database) stops beating; the supervisor takes it over after
//! `sending.reclaim_after_secs` and writes the rest from the cursor ([`resume`]), and until
//! the cursor is cleared at the end the run is not completed, so the members written so far
//! are sent and the others follow, each once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use clarion_model::{
    CampaignId, Channel, ContactId, DeliveryJob, DeliveryStatus, RunStatus, SegmentId, Timestamp,
    VariantId, WorkspaceId,
};
use clarion_queue::Queue;
use clarion_segment::members::{self, Member};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    CampaignError,
    assign::{GroupPlan, groups, weights},
    campaign::{Campaign, Status},
    frequency,
    schedule::{
        quiet::QUIET_HOURS,
        waves::{self, Planner, Wave},
    },
    sending::{Queues, SendingSettings},
    store, suppression,
};

/// What a launch did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LaunchReport {
    /// The run this launch started.
    pub run_id: i64,
    pub campaign_id: CampaignId,
    /// Contacts in the campaign's audience, held-out ones included.
    pub audience: u64,
    /// Of those, held out as control (one row per channel, never sent).
    pub holdout: u64,
    /// Delivery rows queued for sending (one per recipient and channel).
    pub queued: u64,
    /// Delivery rows not sent on purpose, by reason.
    pub suppressed: BTreeMap<String, u64>,
    /// Jobs not enqueued because Redis failed during the launch; the supervisor enqueues
    /// them once it answers.
    pub enqueue_deferred: u64,
    /// With quiet hours or a local-time schedule, the run's waves (one per time zone, with
    /// its due time); empty when every delivery is due at once.
    pub waves: Vec<Wave>,
    pub elapsed_ms: u64,
}

/// Where a launch spent its time, for the debug log.
#[derive(Default)]
struct Phases {
    read: std::time::Duration,
    assign: std::time::Duration,
    write: std::time::Duration,
}

/// One member's rows, before they are written.
pub(crate) struct Row {
    pub(crate) contact: ContactId,
    pub(crate) channel: Channel,
    pub(crate) variant: VariantId,
    pub(crate) status: DeliveryStatus,
    pub(crate) reason: Option<&'static str>,
    /// Not before this moment (ms); `None`: at once.
    pub(crate) due: Option<i64>,
}

/// Launches campaign `id` now.
///
/// # Errors
/// [`CampaignError::NotFound`]; [`CampaignError::Conflict`] when the campaign is not a draft
/// (it was launched already) or uses a channel that is not configured;
/// [`CampaignError::Queue`] when Redis does not answer at the start (nothing is changed then).
#[tracing::instrument(skip_all, fields(campaign = id.0))]
pub async fn launch(
    db: &DatabaseConnection,
    queues: &Queues,
    settings: &SendingSettings,
    workspace: WorkspaceId,
    id: CampaignId,
    launched_by: Option<i64>,
) -> Result<LaunchReport, CampaignError> {
    launch_from(
        db,
        queues,
        settings,
        workspace,
        id,
        launched_by,
        &[Status::Draft],
        (None, chrono::Utc::now()),
    )
    .await
}

/// Launches campaign `id` for a slot of its schedule: a new run with its own deliveries,
/// whether the campaign is a draft or ran before (a recurring campaign runs again and again;
/// each run re-reads the segments).
///
/// `local`: the local date and time each recipient gets it at, and the zone of contacts
/// without one (a local-time schedule); `now` is the scheduler's clock.
///
/// # Errors
/// As [`launch`]; [`CampaignError::Conflict`] when the campaign is paused or cancelled.
#[tracing::instrument(skip_all, fields(campaign = id.0))]
#[allow(clippy::too_many_arguments)]
pub async fn launch_scheduled(
    db: &DatabaseConnection,
    queues: &Queues,
    settings: &SendingSettings,
    workspace: WorkspaceId,
    id: CampaignId,
    local: Option<(chrono::NaiveDateTime, chrono_tz::Tz)>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<LaunchReport, CampaignError> {
    let from = [Status::Draft, Status::Sending, Status::Sent];
    launch_from(
        db,
        queues,
        settings,
        workspace,
        id,
        None,
        &from,
        (local, now),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn launch_from(
    db: &DatabaseConnection,
    queues: &Queues,
    settings: &SendingSettings,
    workspace: WorkspaceId,
    id: CampaignId,
    launched_by: Option<i64>,
    from: &[Status],
    (local, now): (
        Option<(chrono::NaiveDateTime, chrono_tz::Tz)>,
        chrono::DateTime<chrono::Utc>,
    ),
) -> Result<LaunchReport, CampaignError> {
    let started = Instant::now();
    let campaign = launchable(db, settings, workspace, id, from).await?;
    let planner = waves::planner(db, workspace, id, local, now).await?;
    // Open the queues first: with Redis down, refuse before anything changes.
    let opened = open_queues(queues, &campaign).await?;
    claim(db, workspace, id, from).await?;
    let cursor = Cursor::start(local, now);
    let run_id = start_run(db, workspace, id, launched_by, Some(&cursor)).await?;
    let run = RunOf {
        id: run_id,
        workspace,
        campaign: &campaign,
    };
    let mut report = write_audience(db, settings, &run, planner, &opened, cursor).await?;
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        run = run_id,
        audience = report.audience,
        queued = report.queued,
        suppressed = report.suppressed.values().sum::<u64>(),
        holdout = report.holdout,
        ms = report.elapsed_ms,
        "campaign launched"
    );
    Ok(report)
}

/// Finishes the launch of run `run_id` from the cursor kept in the run, if its launch stopped
/// beating before `stale` (ms): the process writing it died, or lost the database. Another
/// process taking it over at the same moment finds it taken (`None`); so does a launch that
/// finished meanwhile. Returns what this process wrote.
///
/// # Errors
/// [`CampaignError::NotFound`] when the campaign was deleted; database and Redis failures
/// (the launch stays unfinished, to be taken over again).
#[tracing::instrument(skip_all, fields(run = run_id))]
pub async fn resume(
    db: &DatabaseConnection,
    queues: &Queues,
    settings: &SendingSettings,
    run_id: i64,
    stale: i64,
) -> Result<Option<LaunchReport>, CampaignError> {
    let Some((workspace, id, cursor)) = take_over(db, run_id, stale).await? else {
        return Ok(None);
    };
    let campaign = store::get(db, workspace, id)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {id}")))?;
    let planner = waves::planner(db, workspace, id, cursor.local()?, cursor.launched_at()?).await?;
    let opened = open_queues(queues, &campaign).await?;
    tracing::warn!(group = cursor.group, after = ?cursor.after, "a launch stopped half-way; writing the rest of its audience");
    let run = RunOf {
        id: run_id,
        workspace,
        campaign: &campaign,
    };
    let report = write_audience(db, settings, &run, planner, &opened, cursor).await?;
    tracing::info!(
        audience = report.audience,
        queued = report.queued,
        "the rest of an interrupted launch is written"
    );
    Ok(Some(report))
}

/// Takes over the launch of `run_id` if it stopped beating before `stale`: one process wins
/// (compare-and-set on the heartbeat). Returns the run's workspace, campaign and cursor.
async fn take_over(
    db: &DatabaseConnection,
    run_id: i64,
    stale: i64,
) -> Result<Option<(WorkspaceId, CampaignId, Cursor)>, CampaignError> {
    let select = Query::select()
        .columns([
            "workspace_id",
            "campaign_id",
            "launch_cursor",
            "launch_beat",
        ])
        .from("campaign_runs")
        .and_where(Expr::col("id").eq(run_id))
        .and_where(Expr::col("launch_beat").lt(stale))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok(None);
    };
    let (Some(cursor), Some(beat)) = (
        row.try_get::<Option<String>>("", "launch_cursor")?,
        row.try_get::<Option<i64>>("", "launch_beat")?,
    ) else {
        return Ok(None);
    };
    let take = Query::update()
        .table("campaign_runs")
        .value("launch_beat", Timestamp::now().millis())
        .and_where(Expr::col("id").eq(run_id))
        .and_where(Expr::col("launch_beat").eq(beat))
        .to_owned();
    if db.execute(&take).await?.rows_affected() != 1 {
        return Ok(None);
    }
    let cursor: Cursor = serde_json::from_str(&cursor).map_err(|error| {
        CampaignError::Corrupt(format!("launch cursor of run {run_id}: {error}"))
    })?;
    Ok(Some((
        WorkspaceId(row.try_get("", "workspace_id")?),
        CampaignId(row.try_get("", "campaign_id")?),
        cursor,
    )))
}

/// The queue of each of the campaign's channels.
async fn open_queues(
    queues: &Queues,
    campaign: &Campaign,
) -> Result<Vec<(Channel, Queue<DeliveryJob>)>, CampaignError> {
    let mut opened = Vec::new();
    for &channel in &campaign.channels {
        opened.push((channel, queues.open(channel).await?));
    }
    Ok(opened)
}

/// The run a launch writes, and its campaign.
struct RunOf<'a> {
    id: i64,
    workspace: WorkspaceId,
    campaign: &'a Campaign,
}

/// Writes the campaign's audience into the run from `cursor` on, enqueues it, and closes the
/// launch: waves, KPI roll-ups, the cursor cleared (the run may complete now).
async fn write_audience(
    db: &DatabaseConnection,
    settings: &SendingSettings,
    run: &RunOf<'_>,
    planner: Planner,
    opened: &[(Channel, Queue<DeliveryJob>)],
    cursor: Cursor,
) -> Result<LaunchReport, CampaignError> {
    let (workspace, campaign, run_id) = (run.workspace, run.campaign, run.id);
    let now = cursor.launched_at()?;
    // Pages are checked against the suppression list only for channels that have one.
    let mut listed = Vec::new();
    for &channel in &campaign.channels {
        if suppression::any(db, workspace, channel).await? {
            listed.push(channel);
        }
    }
    // And against the frequency caps, unless the campaign is exempt.
    let capped: Vec<Channel> = if campaign.transactional {
        Vec::new()
    } else {
        let caps = frequency::get(db, workspace).await?;
        campaign
            .channels
            .iter()
            .copied()
            .filter(|&channel| caps.of(channel).is_some())
            .collect()
    };

    let first_group = cursor.group;
    let mut outbox = Outbox {
        db,
        workspace,
        campaign,
        run_id,
        opened,
        listed: &listed,
        capped: &capped,
        page: settings.launch_page,
        report: LaunchReport {
            run_id,
            campaign_id: campaign.id,
            audience: 0,
            holdout: 0,
            queued: 0,
            suppressed: BTreeMap::new(),
            enqueue_deferred: 0,
            waves: Vec::new(),
            elapsed_ms: 0,
        },
        planner,
        now: cursor.now,
        cursor,
        phases: Phases::default(),
        pending: Vec::new(),
        written_rows: 0,
        analyze_at: 10_000,
    };
    for (index, plan) in groups(campaign).iter().enumerate().skip(first_group) {
        outbox.write_group(index, plan).await?;
    }
    let (mut report, mut planner) = outbox.finish().await?;
    if planner.plans() {
        // A launch killed after recording its waves, before closing, records them anew.
        let recorded = Query::delete()
            .from_table("run_waves")
            .and_where(Expr::col("run_id").eq(run_id))
            .to_owned();
        db.execute(&recorded).await?;
        report.waves = waves::record(db, workspace, run_id, &mut planner, now).await?;
    }
    // The run's KPI roll-ups start from its rows; events that arrive meanwhile are merged
    // in by the ingestion listener, and refreshing a contact twice changes nothing.
    clarion_kpi::rollup::build_run(db, run_id).await?;
    close_launch(db, run_id).await?;
    crate::control::complete_if_done(db, run_id).await?;
    Ok(report)
}

/// Where a launch stands, kept in its run (`campaign_runs.launch_cursor`, JSON) with every
/// page written, so that another process can finish it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The group being written: its index in [`groups`].
    group: usize,
    /// The last member of that group written.
    after: Option<i64>,
    /// The launch's moment (ms since the epoch), which waves and due times are planned from.
    now: i64,
    /// A local-time schedule's slot, and the zone of contacts without one.
    local: Option<(chrono::NaiveDateTime, String)>,
}

impl Cursor {
    fn start(
        local: Option<(chrono::NaiveDateTime, chrono_tz::Tz)>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Self {
            group: 0,
            after: None,
            now: now.timestamp_millis(),
            local: local.map(|(at, zone)| (at, zone.name().to_owned())),
        }
    }

    fn launched_at(&self) -> Result<chrono::DateTime<chrono::Utc>, CampaignError> {
        chrono::DateTime::from_timestamp_millis(self.now)
            .ok_or_else(|| CampaignError::Corrupt(format!("launch cursor time {}", self.now)))
    }

    fn local(&self) -> Result<Option<(chrono::NaiveDateTime, chrono_tz::Tz)>, CampaignError> {
        self.local
            .as_ref()
            .map(|(at, zone)| {
                zone.parse()
                    .map(|zone| (*at, zone))
                    .map_err(|_| CampaignError::Corrupt(format!("launch cursor zone {zone:?}")))
            })
            .transpose()
    }

    fn to_json(&self) -> String {
        // A struct of numbers and strings always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Marks the launch of `run_id` finished: the run may complete once its deliveries are done.
async fn close_launch(db: &DatabaseConnection, run_id: i64) -> Result<(), sea_orm::DbErr> {
    let close = Query::update()
        .table("campaign_runs")
        .value("launch_cursor", Option::<String>::None)
        .value("launch_beat", Option::<i64>::None)
        .value("updated_at", Timestamp::now().millis())
        .and_where(Expr::col("id").eq(run_id))
        .to_owned();
    db.execute(&close).await?;
    Ok(())
}

/// The campaign, if it may be launched now.
pub(crate) async fn launchable(
    db: &DatabaseConnection,
    settings: &SendingSettings,
    workspace: WorkspaceId,
    id: CampaignId,
    from: &[Status],
) -> Result<Campaign, CampaignError> {
    let campaign = store::get(db, workspace, id)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {id}")))?;
    if !from.contains(&campaign.status) {
        return Err(CampaignError::Conflict(format!(
            "campaign {id} is {} and was launched already; duplicate it to send it again",
            campaign.status.as_str()
        )));
    }
    if campaign.sends(Channel::Webhook)
        && settings.webhook_url.is_empty()
        && campaign.uses_default_webhook_endpoint()
    {
        return Err(CampaignError::Conflict(
            "the campaign sends webhooks, but a variant names no webhook endpoint and no default receiver is configured: name an endpoint in each variant's webhook.endpoint, or set sending.webhook_url and webhook.secret".into(),
        ));
    }
    if campaign.sends(Channel::Webhook) {
        missing_endpoints(db, workspace, &campaign).await?;
    }
    Ok(campaign)
}

/// Refuses a launch whose variants name webhook endpoints deleted since the campaign was
/// saved: every one of their deliveries could only fail.
async fn missing_endpoints(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: &Campaign,
) -> Result<(), CampaignError> {
    let named: Vec<(&str, crate::endpoints::EndpointRef)> = campaign
        .variants()
        .filter_map(|(_, variant)| {
            let endpoint = variant.webhook.as_ref()?.endpoint.as_deref()?;
            Some((
                variant.name.as_str(),
                crate::endpoints::EndpointRef::parse(endpoint),
            ))
        })
        .collect();
    let refs: Vec<_> = named.iter().map(|(_, key)| key.clone()).collect();
    let found = crate::endpoints::targets(db, workspace, &refs).await?;
    match named.iter().find(|(_, key)| !found.contains_key(key)) {
        Some((variant, key)) => Err(CampaignError::Conflict(format!(
            "variant {variant:?} sends to {key}, which no longer exists: name another endpoint in its webhook.endpoint"
        ))),
        None => Ok(()),
    }
}

/// Moves the campaign from one of `from` (a draft, for a launch by hand) to sending, unless
/// another request did so first.
pub(crate) async fn claim(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    id: CampaignId,
    from: &[Status],
) -> Result<(), CampaignError> {
    let claim = Query::update()
        .table("campaigns")
        .value("status", Status::Sending.as_str())
        .value("updated_at", Timestamp::now().millis())
        .and_where(Expr::col("id").eq(id.0))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("status").is_in(from.iter().map(|s| s.as_str())))
        .to_owned();
    if db.execute(&claim).await?.rows_affected() != 1 {
        return Err(CampaignError::Conflict(format!(
            "campaign {id} was launched at the same moment by another request"
        )));
    }
    Ok(())
}

/// Writes the run row, its counts still zero; returns its id. A launch gives its starting
/// `cursor`, which marks the run as being launched.
pub(crate) async fn start_run(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    id: CampaignId,
    launched_by: Option<i64>,
    cursor: Option<&Cursor>,
) -> Result<i64, CampaignError> {
    let now = Timestamp::now().millis();
    let insert = Query::insert()
        .into_table("campaign_runs")
        .columns([
            "workspace_id",
            "campaign_id",
            "status",
            "launched_by",
            "audience",
            "queued",
            "suppressed",
            "holdout",
            "started_at",
            "updated_at",
            "launch_cursor",
            "launch_beat",
        ])
        .values_panic([
            workspace.0.into(),
            id.0.into(),
            RunStatus::Running.as_str().into(),
            launched_by.into(),
            0i64.into(),
            0i64.into(),
            0i64.into(),
            0i64.into(),
            now.into(),
            now.into(),
            cursor.map(Cursor::to_json).into(),
            cursor.map(|_| now).into(),
        ])
        .returning_col("id")
        .to_owned();
    Ok(db
        .query_one(&insert)
        .await?
        .ok_or_else(|| CampaignError::Corrupt("the new run has no id".into()))?
        .try_get("", "id")?)
}

/// The streaming part of a launch: the audience, a page at a time, written as delivery rows
/// and enqueued.
struct Outbox<'a> {
    db: &'a DatabaseConnection,
    workspace: WorkspaceId,
    campaign: &'a Campaign,
    run_id: i64,
    opened: &'a [(Channel, Queue<DeliveryJob>)],
    /// Channels with a suppression list in this workspace.
    listed: &'a [Channel],
    /// Channels with a frequency cap that applies to this campaign.
    capped: &'a [Channel],
    page: u64,
    report: LaunchReport,
    /// When each time zone's deliveries are due (local time, quiet hours).
    planner: Planner,
    /// The launch's moment (ms): rows due later are held until their wave is released.
    now: i64,
    phases: Phases,
    /// Where the launch stands, as last written to the run.
    cursor: Cursor,
    /// Jobs written but not enqueued yet, by index into `opened`.
    pending: Vec<(usize, Vec<DeliveryJob>)>,
    /// Workers claim while the launch writes; see `refresh_statistics`.
    written_rows: u64,
    analyze_at: u64,
}

impl Outbox<'_> {
    /// Writes and enqueues every member of one group.
    ///
    /// Three things overlap at each step: page N is written, page N+1 is read, and the jobs
    /// of page N-1 are enqueued. The database works on two connections at once.
    /// The group is the `index`th of the campaign; a launch resumed in it starts after the
    /// cursor's member.
    async fn write_group(
        &mut self,
        index: usize,
        plan: &GroupPlan<'_>,
    ) -> Result<(), CampaignError> {
        let (db, workspace, page) = (self.db, self.workspace, self.page);
        let segment = SegmentId(plan.segment.id);
        let weights = weights(self.campaign, plan.group);
        let step = Instant::now();
        let resumed_after = (self.cursor.group == index)
            .then_some(self.cursor.after)
            .flatten()
            .map(ContactId);
        let mut page_members = members::page(db, workspace, segment, resumed_after, page).await?;
        self.phases.read += step.elapsed();
        while let (Some(first), Some(last)) = (page_members.first(), page_members.last()) {
            let step = Instant::now();
            let taken =
                members::in_any_between(db, &plan.earlier, first.contact, last.contact).await?;
            let mut listed = HashMap::new();
            let mut capped = HashMap::new();
            if !self.listed.is_empty() || !self.capped.is_empty() {
                let ids: Vec<ContactId> = page_members.iter().map(|m| m.contact).collect();
                for &channel in self.listed {
                    listed.insert(
                        channel,
                        suppression::of_contacts(db, workspace, channel, &ids).await?,
                    );
                }
                let now = Timestamp::now();
                for &channel in self.capped {
                    capped.insert(
                        channel,
                        frequency::counts(db, workspace, channel, now, &ids).await?,
                    );
                }
            }
            let counted = self.counted();
            let rows = self.rows(plan, &weights, &page_members, &taken, &listed, &capped);
            self.phases.assign += step.elapsed();

            let step = Instant::now();
            let more = page_members.len() as u64 == page;
            let after = Some(last.contact);
            let cursor = Cursor {
                group: index,
                after: Some(last.contact.0),
                ..self.cursor.clone()
            };
            let now_counted = self.counted();
            let written_page = Page {
                segment: plan.segment.id,
                rows: &rows,
                counts: std::array::from_fn(|i| now_counted[i] - counted[i]),
                from: self.cursor.to_json(),
                to: cursor.to_json(),
            };
            let (written, next, deferred) = tokio::join!(
                write_page(db, self.run_id, self.campaign.id, workspace, &written_page),
                async {
                    if more {
                        members::page(db, workspace, segment, after, page).await
                    } else {
                        Ok(Vec::new())
                    }
                },
                enqueue(self.opened, std::mem::take(&mut self.pending), self.run_id),
            );
            self.phases.write += step.elapsed();
            self.report.enqueue_deferred += deferred;
            let queued = written?;
            self.cursor = cursor;
            page_members = next?;
            self.written_rows += rows.len() as u64;
            if self.written_rows >= self.analyze_at {
                refresh_statistics(db).await?;
                self.analyze_at = self.analyze_at.saturating_mul(10);
            }
            self.hold_jobs(&queued);
        }
        Ok(())
    }

    /// Members, held-out members and suppressed rows counted so far.
    fn counted(&self) -> [u64; 3] {
        [
            self.report.audience,
            self.report.holdout,
            self.report.suppressed.values().sum(),
        ]
    }

    /// The rows of one page of members: each member not taken by an earlier group is assigned
    /// a variant and the holdout, and gets one row per channel.
    fn rows(
        &mut self,
        plan: &GroupPlan<'_>,
        weights: &[u32],
        page: &[Member],
        taken: &HashSet<ContactId>,
        listed: &HashMap<Channel, HashMap<ContactId, suppression::Source>>,
        capped: &HashMap<Channel, frequency::Counts>,
    ) -> Vec<Row> {
        let campaign = self.campaign;
        let mut rows = Vec::with_capacity(page.len() * campaign.channels.len());
        for member in page {
            if taken.contains(&member.contact) {
                continue;
            }
            let Some((variant, holdout)) = choose(campaign, plan, weights, member.contact) else {
                continue;
            };
            let wave = self.planner.plans().then(|| {
                self.planner
                    .decide(member.time_zone.map(clarion_model::TimeZone::tz))
            });
            self.report.audience += 1;
            self.report.holdout += u64::from(holdout);
            for &channel in &campaign.channels {
                // A held-out contact's reachability is recorded exactly as a treated one's
                // (the reason, on its `holdout` row), so that the KPI comparison takes the
                // same contacts from both groups: those reachable at launch.
                let on_list = listed
                    .get(&channel)
                    .and_then(|sources| sources.get(&member.contact));
                let full = capped
                    .get(&channel)
                    .is_some_and(|counts| counts.is_full(member.contact));
                let (status, reason) =
                    match delivery_status(member, channel, holdout, on_list.copied()) {
                        // Over the cap: suppressed, or recorded on the holdout row so both
                        // groups leave out the same contacts.
                        (DeliveryStatus::Queued, _) if full => {
                            (DeliveryStatus::Suppressed, Some(frequency::REASON))
                        }
                        (DeliveryStatus::Holdout, None) if full => {
                            (DeliveryStatus::Holdout, Some(frequency::REASON))
                        }
                        (DeliveryStatus::Queued, _) if wave.is_some_and(|w| w.dropped) => {
                            (DeliveryStatus::Suppressed, Some(QUIET_HOURS))
                        }
                        decided => decided,
                    };
                if status == DeliveryStatus::Suppressed
                    && let Some(reason) = reason
                {
                    *self.report.suppressed.entry(reason.to_owned()).or_default() += 1;
                }
                rows.push(Row {
                    contact: member.contact,
                    channel,
                    variant,
                    status,
                    reason,
                    due: wave.map(|w| w.due.timestamp_millis()),
                });
            }
        }
        rows
    }

    /// Keeps the jobs of rows just written queued, per channel, for the next step to enqueue;
    /// rows due later wait for their wave ([`waves::release_due`]).
    fn hold_jobs(&mut self, queued: &[(Channel, i64, Option<i64>)]) {
        self.report.queued += queued.len() as u64;
        for (index, (channel, _)) in self.opened.iter().enumerate() {
            let jobs: Vec<DeliveryJob> = queued
                .iter()
                .filter(|(c, _, due)| c == channel && due.is_none_or(|due| due <= self.now))
                .map(|&(_, id, _)| DeliveryJob { id })
                .collect();
            if !jobs.is_empty() {
                self.pending.push((index, jobs));
            }
        }
    }

    /// Enqueues what is still held, brings the statistics up to date, and returns the report.
    async fn finish(mut self) -> Result<(LaunchReport, Planner), CampaignError> {
        let pending = std::mem::take(&mut self.pending);
        self.report.enqueue_deferred += enqueue(self.opened, pending, self.run_id).await;
        refresh_statistics(self.db).await?;
        tracing::debug!(
            first_read_ms = self.phases.read.as_millis(),
            assign_ms = self.phases.assign.as_millis(),
            write_read_and_enqueue_ms = self.phases.write.as_millis(),
            "launch phases"
        );
        Ok((self.report, self.planner))
    }
}

/// The status a member's delivery on `channel` starts in: `holdout` (with the reason it could
/// not have been reached, if any), `suppressed` with the reason (the contact's own status, or
/// the suppression list's entry `on_list`), or `queued`.
pub(crate) fn delivery_status(
    member: &Member,
    channel: Channel,
    holdout: bool,
    on_list: Option<suppression::Source>,
) -> (DeliveryStatus, Option<&'static str>) {
    let reachable = member
        .reachability(channel)
        .map_err(|why| why.reason())
        .and_then(|()| on_list.map_or(Ok(()), |s| Err(s.delivery_reason())));
    match reachable {
        _ if holdout => (DeliveryStatus::Holdout, reachable.err()),
        Ok(()) => (DeliveryStatus::Queued, None),
        Err(reason) => (DeliveryStatus::Suppressed, Some(reason)),
    }
}

/// Brings PostgreSQL's statistics of the outbox up to date. A launch can grow the table from
/// nothing to millions of rows in seconds, long before autovacuum looks at it; with the old
/// statistics the planner believes a run has a handful of rows and claims batches by
/// scanning the run's whole index instead of looking the ids up (4 s instead of 1 ms a batch
/// at a million rows). Run after 10,000, 100,000, ... rows and at the end; it samples, so it
/// costs little, and it does not block writers.
async fn refresh_statistics(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared("ANALYZE deliveries").await?;
    }
    Ok(())
}

/// Enqueues each channel's jobs; returns how many could not be (Redis failed), which stay
/// queued in the database for the supervisor.
async fn enqueue(
    opened: &[(Channel, Queue<DeliveryJob>)],
    jobs: Vec<(usize, Vec<DeliveryJob>)>,
    run_id: i64,
) -> u64 {
    let mut deferred = 0;
    for (index, jobs) in jobs {
        let Some((_, queue)) = opened.get(index) else {
            continue;
        };
        if let Err(error) = queue.enqueue_batch(&jobs).await {
            tracing::warn!(%error, run = run_id, jobs = jobs.len(), "enqueue failed during launch; the supervisor will enqueue these deliveries");
            deferred += jobs.len() as u64;
        }
    }
    deferred
}

/// The variant and holdout of `contact` in `plan`'s group: the same hash as
/// [`crate::assign::assign_in_group`], without building an [`crate::Assignment`] per member.
fn choose(
    campaign: &Campaign,
    plan: &GroupPlan<'_>,
    weights: &[u32],
    contact: ContactId,
) -> Option<(VariantId, bool)> {
    let decision =
        clarion_model::assign::assign(campaign.id.0, contact.0, campaign.holdout_percent, weights);
    let index = decision.variant?;
    let variant = match plan.group {
        crate::assign::Group::Target(position) => {
            campaign.targets.get(position)?.variants.get(index)?.id
        }
        crate::assign::Group::Fallback => campaign.fallback.as_ref()?.id,
    };
    Some((variant, decision.holdout))
}

/// One page of a launch, to be written with the run's progress.
struct Page<'r> {
    segment: i64,
    rows: &'r [Row],
    /// Members, held-out members and suppressed rows on the page (queued rows are counted as
    /// they are written).
    counts: [u64; 3],
    /// The run's cursor before and after the page (JSON).
    from: String,
    to: String,
}

/// Writes a page's rows and moves the run's cursor past it, adding its counts, in one
/// transaction: a launch killed at any moment leaves its run's counts and cursor exactly at
/// the last page written. The cursor moves only from where this launch left it, so a launch
/// taken over by another process (it was thought dead) stops at its next page.
async fn write_page(
    db: &DatabaseConnection,
    run_id: i64,
    campaign: CampaignId,
    workspace: WorkspaceId,
    page: &Page<'_>,
) -> Result<Vec<(Channel, i64, Option<i64>)>, CampaignError> {
    let txn = db.begin().await?;
    let queued = write_rows(&txn, run_id, campaign, workspace, page.segment, page.rows).await?;
    let add =
        |column: &'static str, n: u64| Expr::col(column).add(i64::try_from(n).unwrap_or(i64::MAX));
    let [audience, holdout, suppressed] = page.counts;
    let now = Timestamp::now().millis();
    let progress = Query::update()
        .table("campaign_runs")
        .value("launch_cursor", page.to.clone())
        .value("launch_beat", now)
        .value("audience", add("audience", audience))
        .value("holdout", add("holdout", holdout))
        .value("suppressed", add("suppressed", suppressed))
        .value("queued", add("queued", queued.len() as u64))
        .value("updated_at", now)
        .and_where(Expr::col("id").eq(run_id))
        .and_where(Expr::col("launch_cursor").eq(page.from.clone()))
        .to_owned();
    if txn.execute(&progress).await?.rows_affected() != 1 {
        // Dropping the transaction rolls the page back.
        return Err(CampaignError::Conflict(format!(
            "the launch of run {run_id} was taken over by another process"
        )));
    }
    txn.commit().await?;
    Ok(queued)
}

/// Writes a page of rows (all of `segment`) in one statement and returns the queued ones'
/// channel and id.
///
/// Every value is an integer or one of Clarion's own constant strings, so the statement is
/// written with its values inline rather than as 60,000 bind parameters (SQLite allows
/// 32,766 per statement). PostgreSQL gets one array literal per column, unnested: parsing a
/// 5,000-row `VALUES` list cost it more than the insert itself.
pub(crate) async fn write_rows(
    db: &impl ConnectionTrait,
    run_id: i64,
    campaign: CampaignId,
    workspace: WorkspaceId,
    segment: i64,
    rows: &[Row],
) -> Result<Vec<(Channel, i64, Option<i64>)>, sea_orm::DbErr> {
    use std::fmt::Write as _;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let now = Timestamp::now().millis();
    let backend = db.get_database_backend();
    let mut sql = String::with_capacity(400 + rows.len() * 64);
    sql.push_str(
        "INSERT INTO deliveries (workspace_id, run_id, campaign_id, contact_id, channel, \
         variant_id, segment_id, status, reason, due_at, attempts, created_at, updated_at) ",
    );
    let mut values: Vec<sea_orm::Value> = Vec::new();
    if backend == DbBackend::Postgres {
        // The arrays are bound as text and cast, so that every page runs the same statement
        // text: a text with the values in it would be prepared and cached anew per page,
        // and the connection's statement cache would hold megabytes of old pages.
        let array = |f: &dyn Fn(&Row, &mut String)| {
            let mut out = String::with_capacity(rows.len() * 12);
            out.push('{');
            for (i, row) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                f(row, &mut out);
            }
            out.push('}');
            sea_orm::Value::from(out)
        };
        values = vec![
            workspace.0.into(),
            run_id.into(),
            campaign.0.into(),
            segment.into(),
            now.into(),
            array(&|r, o| {
                let _ = write!(o, "{}", r.contact.0);
            }),
            array(&|r, o| o.push_str(r.channel.as_str())),
            array(&|r, o| {
                let _ = write!(o, "{}", r.variant.0);
            }),
            array(&|r, o| o.push_str(r.status.as_str())),
            array(&|r, o| match r.reason {
                Some(reason) => {
                    let _ = write!(o, "\"{reason}\"");
                }
                None => o.push_str("NULL"),
            }),
            array(&|r, o| match r.due {
                Some(due) => {
                    let _ = write!(o, "{due}");
                }
                None => o.push_str("NULL"),
            }),
        ];
        sql.push_str(
            "SELECT $1, $2, $3, u.contact_id, u.channel, u.variant_id, $4, u.status, u.reason, \
             u.due_at, 0, $5, $5 FROM UNNEST(CAST($6 AS bigint[]), CAST($7 AS text[]), \
             CAST($8 AS bigint[]), CAST($9 AS text[]), CAST($10 AS text[]), CAST($11 AS bigint[])) \
             AS u(contact_id, channel, variant_id, status, reason, due_at)",
        );
    } else {
        let constants = format!("{}, {run_id}, {}", workspace.0, campaign.0);
        sql.push_str("VALUES ");
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let reason = row.reason.map_or_else(
                || "NULL".to_owned(),
                |r| format!("'{}'", r.replace('\'', "''")),
            );
            let due = row
                .due
                .map_or_else(|| "NULL".to_owned(), |due| due.to_string());
            let _ = write!(
                sql,
                "({constants},{},'{}',{},{segment},'{}',{reason},{due},0,{now},{now})",
                row.contact.0,
                row.channel.as_str(),
                row.variant.0,
                row.status.as_str(),
            );
        }
    }
    sql.push_str(
        " ON CONFLICT (run_id, contact_id, channel) DO NOTHING RETURNING id, channel, status, due_at",
    );
    let written = db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let mut queued = Vec::new();
    for row in written {
        let status: String = row.try_get("", "status")?;
        if status != DeliveryStatus::Queued.as_str() {
            continue;
        }
        let channel: String = row.try_get("", "channel")?;
        let channel = Channel::parse(&channel)
            .ok_or_else(|| sea_orm::DbErr::Custom(format!("delivery channel {channel:?}")))?;
        queued.push((channel, row.try_get("", "id")?, row.try_get("", "due_at")?));
    }
    Ok(queued)
}
