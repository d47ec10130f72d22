//! The trigger round the scheduler role runs every `triggers.tick_ms`: read the segments' new
//! entries into pending sends, then move the sends that are due into deliveries and enqueue
//! them.
//!
//! Entries are read by a cursor over `segment_memberships.id`, per trigger: every path that
//! changes memberships (ingestion's listener, CSV imports, the sweep, saving a segment, an
//! upload) writes that table while holding the segment's row lock, so one segment's rows
//! commit in id order and a row below the cursor can never appear later. Each entry is
//! recorded once (unique per trigger and membership row); moving a send is a compare-and-set
//! from `pending` in the same transaction as its delivery rows, so nothing is sent twice,
//! whoever runs the round. The deliveries go into the trigger's run through the same outbox,
//! holdout assignment and suppression reasons as a launch; the delivery workers send them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use clarion_model::{
    Channel, ContactId, DeliveryJob, DeliveryStatus, SegmentId, SubscriptionStatus, TimeZone,
    Timestamp, WorkspaceId,
};
use clarion_segment::{compile, members, save as segments};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait, Query},
};

use super::{STOPPED, Stored, TriggerSettings, TriggerState};
use crate::{
    CampaignError,
    assign::{Group, assign_in_group, group_of, segment_ids},
    campaign::{Campaign, Status},
    launch::{Row, delivery_status, start_run, write_rows},
    schedule::{
        fire::{Clock, Lease},
        quiet::{self, QUIET_HOURS, QuietAction, QuietHours},
    },
    sending::Queues,
    suppression,
};

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Segment entries read (each one a pending or an ignored send).
    pub entries: u64,
    /// Due sends whose deliveries were written.
    pub sent: u64,
    /// Due sends skipped (condition not met, campaign paused, outside the audience, ...).
    pub skipped: u64,
    /// Delivery jobs enqueued.
    pub enqueued: u64,
    /// Due sends put off because quiet hours had begun for their contacts.
    pub delayed: u64,
}

impl std::ops::AddAssign for Round {
    fn add_assign(&mut self, other: Round) {
        self.entries += other.entries;
        self.sent += other.sent;
        self.skipped += other.skipped;
        self.enqueued += other.enqueued;
        self.delayed += other.delayed;
    }
}

/// Reasons a due send is skipped.
const PAUSED_AT_SEND: &str = "the campaign was paused when the send was due";
const PAUSED_AT_ENTRY: &str = "the campaign was paused when the contact entered";
const CONDITION: &str = "the condition was not met when the send was due";
const OUTSIDE: &str = "the contact is in none of the campaign's targets";
const DELETED: &str = "the contact was deleted";
const TWICE: &str = "entered again before its earlier entry was read";
const STILL_PENDING: &str = "a send for an earlier entry is still pending";
const ONCE: &str = "entered before; re-entry is not allowed (reentry_after)";
const COOLING: &str = "re-entered within the cool-down (reentry_after) of its last entry";

/// The trigger rounds of the scheduler role.
pub struct Triggers {
    db: DatabaseConnection,
    queues: Queues,
    settings: TriggerSettings,
    clock: Arc<dyn Clock>,
}

/// An active trigger as a round reads it.
struct Active {
    trigger: Stored,
    campaign_status: Option<Status>,
    newest: Option<i64>,
}

impl Triggers {
    #[must_use]
    pub fn new(
        db: DatabaseConnection,
        queues: Queues,
        settings: TriggerSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Triggers {
            db,
            queues,
            settings,
            clock,
        }
    }

    /// How long to wait between rounds.
    #[must_use]
    pub fn tick(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.settings.tick_ms)
    }

    /// A round if this process holds the scheduler's lease (or Redis does not answer: the
    /// compare-and-sets in the database still send each entry once).
    ///
    /// # Errors
    /// Database failures.
    pub async fn tick_with(&self, lease: &Lease) -> Result<Round, CampaignError> {
        match lease.hold().await {
            Ok(true) => {}
            Ok(false) => return Ok(Round::default()),
            Err(error) => {
                tracing::debug!(%error, "no scheduler lease (Redis does not answer); running the trigger round anyway");
            }
        }
        self.run_once().await
    }

    /// Reads every active trigger's new entries, then moves every send due now on this
    /// round's clock into deliveries and enqueues them.
    ///
    /// # Errors
    /// Database failures; a failed enqueue is left to the supervisor (the rows are queued).
    pub async fn run_once(&self) -> Result<Round, CampaignError> {
        let now = self.clock.now().timestamp_millis();
        let mut round = Round::default();
        for active in self.active().await? {
            let trigger = &active.trigger;
            match active.campaign_status {
                None | Some(Status::Cancelled) => {
                    let txn = self.db.begin().await?;
                    stop_trigger(&txn, trigger.id, now).await?;
                    txn.commit().await?;
                    continue;
                }
                _ => {}
            }
            if let Some(newest) = active.newest.filter(|n| *n > trigger.cursor) {
                let paused = active.campaign_status == Some(Status::Paused);
                round.entries += collect(&self.db, trigger, newest, paused, now).await?;
            }
        }
        loop {
            let moved = self.move_due(now).await?;
            let done = moved.sent + moved.skipped + moved.delayed;
            round += moved;
            if done < self.settings.batch {
                return Ok(round);
            }
        }
    }

    async fn active(&self) -> Result<Vec<Active>, CampaignError> {
        let columns: Vec<String> = super::COLUMNS.iter().map(|c| format!("t.{c}")).collect();
        let sql = format!(
            "SELECT {}, c.status AS campaign_status, \
             (SELECT MAX(m.id) FROM segment_memberships m WHERE m.segment_id = t.segment_id) AS newest \
             FROM campaign_triggers t LEFT JOIN campaigns c ON c.id = t.campaign_id \
             WHERE t.state = 'active'",
            columns.join(", ")
        );
        let rows = self
            .db
            .query_all_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await?;
        rows.iter()
            .map(|row| {
                let status: Option<String> = row.try_get("", "campaign_status")?;
                Ok(Active {
                    trigger: super::read(row)?,
                    campaign_status: status.as_deref().and_then(Status::parse),
                    newest: row.try_get("", "newest")?,
                })
            })
            .collect()
    }

    /// Moves up to a batch of due sends; what it did.
    async fn move_due(&self, now: i64) -> Result<Round, CampaignError> {
        // Literal values, so that both databases use the partial index of pending sends.
        let sql = format!(
            "SELECT s.id, s.trigger_id, s.contact_id, \
             CASE WHEN s.due_at > s.entered_at + t.delay_secs * 1000 THEN s.due_at END AS put_off \
             FROM trigger_sends s JOIN campaign_triggers t ON t.id = s.trigger_id \
             WHERE s.state = 'pending' AND s.due_at <= {now} ORDER BY s.due_at LIMIT {}",
            self.settings.batch
        );
        let rows = self
            .db
            .query_all_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await?;
        let mut by_trigger: BTreeMap<i64, Vec<DueSend>> = BTreeMap::new();
        for row in &rows {
            by_trigger
                .entry(row.try_get("", "trigger_id")?)
                .or_default()
                .push(DueSend {
                    id: row.try_get("", "id")?,
                    contact: ContactId(row.try_get("", "contact_id")?),
                    put_off: row.try_get("", "put_off")?,
                });
        }
        let mut round = Round::default();
        for (trigger, sends) in by_trigger {
            round += self.move_sends(trigger, &sends, now).await?;
        }
        Ok(round)
    }

    /// Decides and moves the due `sends` of one trigger.
    async fn move_sends(
        &self,
        trigger_id: i64,
        sends: &[DueSend],
        now: i64,
    ) -> Result<Round, CampaignError> {
        let db = &self.db;
        let select = Query::select()
            .columns(super::COLUMNS)
            .from("campaign_triggers")
            .and_where(Expr::col("id").eq(trigger_id))
            .to_owned();
        let Some(row) = db.query_one(&select).await? else {
            return Ok(Round::default());
        };
        let trigger = super::read(&row)?;
        let campaign = crate::store::get(db, trigger.workspace, trigger.campaign).await?;
        let mut skipped: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let all = |reason: &str| {
            BTreeMap::from([(
                reason.to_owned(),
                sends.iter().map(|send| send.id).collect(),
            )])
        };
        let campaign = match (&campaign, trigger.state) {
            (_, TriggerState::Stopped) => {
                return self.settle(&trigger, all(STOPPED), now).await;
            }
            (None, _)
            | (
                Some(Campaign {
                    status: Status::Cancelled,
                    ..
                }),
                _,
            ) => {
                return self.settle(&trigger, all(STOPPED), now).await;
            }
            (Some(c), _) if c.status == Status::Paused => {
                return self.settle(&trigger, all(PAUSED_AT_SEND), now).await;
            }
            (Some(c), _) => c,
        };
        let contacts: Vec<ContactId> = sends.iter().map(|send| send.contact).collect();
        let passing = match self.condition(&trigger, &contacts, now).await {
            Ok(passing) => passing,
            Err(reason) => return self.settle(&trigger, all(&reason), now).await,
        };
        let reach = reachability(db, trigger.workspace, &contacts).await?;
        let quiet = quiet::stored(db, trigger.workspace, trigger.campaign)
            .await?
            .map(|(quiet, _)| quiet);
        let mut delayed: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        let mut member_of = members::of_contacts(db, &contacts, &segment_ids(campaign)).await?;
        let mut listed: HashMap<Channel, HashMap<ContactId, suppression::Source>> = HashMap::new();
        for &channel in &campaign.channels {
            if suppression::any(db, trigger.workspace, channel).await? {
                listed.insert(
                    channel,
                    suppression::of_contacts(db, trigger.workspace, channel, &contacts).await?,
                );
            }
        }

        let mut rows: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
        let mut sent: Vec<(i64, ContactId)> = Vec::new();
        let mut counts = RunCounts::default();
        for &DueSend {
            id,
            contact,
            put_off,
        } in sends
        {
            let reason = if passing.as_ref().is_some_and(|p| !p.contains(&contact)) {
                Some(CONDITION)
            } else if !reach.contains_key(&contact) {
                Some(DELETED)
            } else {
                None
            };
            if let Some(reason) = reason {
                skipped.entry(reason.to_owned()).or_default().push(id);
                continue;
            }
            // The contact entered the trigger's segment, whatever happened since.
            let groups = member_of.entry(contact).or_default();
            groups.insert(SegmentId(trigger.segment));
            let chosen = group_of(campaign, groups)
                .and_then(|group| Some((group, assign_in_group(campaign, group, contact)?)));
            let (Some((group, assignment)), Some(member)) = (chosen, reach.get(&contact)) else {
                skipped.entry(OUTSIDE.to_owned()).or_default().push(id);
                continue;
            };
            let quiet_now = quiet.as_ref().and_then(|q| quiet_decision(q, member, now));
            if let Some(QuietDecision::Delay(until)) = quiet_now {
                delayed.entry(until).or_default().push(id);
                continue;
            }
            let dropped = quiet_now == Some(QuietDecision::Drop);
            let segment = match group {
                Group::Target(position) => campaign.targets.get(position).map(|t| t.segment.id),
                Group::Fallback => campaign.audience_segment.as_ref().map(|s| s.id),
            };
            let Some(segment) = segment else {
                skipped.entry(OUTSIDE.to_owned()).or_default().push(id);
                continue;
            };
            counts.audience += 1;
            counts.holdout += i64::from(assignment.holdout);
            for &channel in &campaign.channels {
                let on_list = listed
                    .get(&channel)
                    .and_then(|sources| sources.get(&contact))
                    .copied();
                let (status, reason) =
                    match delivery_status(member, channel, assignment.holdout, on_list) {
                        (DeliveryStatus::Queued, _) if dropped => {
                            (DeliveryStatus::Suppressed, Some(QUIET_HOURS))
                        }
                        decided => decided,
                    };
                match status {
                    DeliveryStatus::Queued => counts.queued += 1,
                    DeliveryStatus::Suppressed => counts.suppressed += 1,
                    _ => {}
                }
                rows.entry(segment).or_default().push(Row {
                    contact,
                    channel,
                    variant: assignment.variant_id,
                    status,
                    reason,
                    due: put_off,
                });
            }
            sent.push((id, contact));
        }
        let mut round = postpone(db, &delayed).await?;
        round += self
            .write(&trigger, campaign, &sent, &rows, skipped, counts, now)
            .await?;
        Ok(round)
    }

    /// The contacts of `contacts` that satisfy the trigger's condition now (`None`: it has
    /// none). A condition that no longer checks out (an attribute it names was removed) is
    /// the reason to skip.
    async fn condition(
        &self,
        trigger: &Stored,
        contacts: &[ContactId],
        now: i64,
    ) -> Result<Option<HashSet<ContactId>>, String> {
        let Some(text) = &trigger.condition else {
            return Ok(None);
        };
        let problem = |e: &dyn std::fmt::Display| {
            format!("the condition no longer applies to this workspace: {e}")
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| problem(&e))?;
        let rule = segments::read_rule(&value).map_err(|e| problem(&e))?;
        let valid = segments::check_rule(&self.db, trigger.workspace, None, &rule)
            .await
            .map_err(|e| problem(&e))?;
        let mut query = compile(
            &valid,
            trigger.workspace,
            self.db.get_database_backend(),
            Timestamp::from_millis(now),
        )
        .map_err(|e| problem(&e))?;
        query.and_where(Expr::col(("c", "id")).is_in(contacts.iter().map(|c| c.0)));
        let rows = self.db.query_all(&query).await.map_err(|e| problem(&e))?;
        rows.iter()
            .map(|row| row.try_get::<i64>("", "id").map(ContactId))
            .collect::<Result<HashSet<_>, _>>()
            .map(Some)
            .map_err(|e| problem(&e))
    }

    /// Records skipped sends only.
    async fn settle(
        &self,
        trigger: &Stored,
        skipped: BTreeMap<String, Vec<i64>>,
        now: i64,
    ) -> Result<Round, CampaignError> {
        let txn = self.db.begin().await?;
        let mut round = Round::default();
        for (reason, ids) in &skipped {
            round.skipped += skip(&txn, ids, reason, now).await?;
        }
        txn.commit().await?;
        tracing::debug!(
            trigger = trigger.id,
            skipped = round.skipped,
            "due trigger sends skipped"
        );
        Ok(round)
    }

    /// Writes the deliveries of `sent` and marks every send decided, in one transaction;
    /// then enqueues the queued deliveries.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        trigger: &Stored,
        campaign: &Campaign,
        sent: &[(i64, ContactId)],
        rows: &BTreeMap<i64, Vec<Row>>,
        skipped: BTreeMap<String, Vec<i64>>,
        counts: RunCounts,
        now: i64,
    ) -> Result<Round, CampaignError> {
        let mut round = Round::default();
        let txn = self.db.begin().await?;
        let mut run = match trigger.run {
            Some(run) => run,
            None => new_run(&txn, trigger).await?,
        };
        if !sent.is_empty() {
            let ids: Vec<i64> = sent.iter().map(|(id, _)| *id).collect();
            let claimed = mark(&txn, &ids, "sent", None, Some(run), now).await?;
            if claimed != ids.len() as u64 {
                // Another round moved some of them first: leave the whole batch to it.
                txn.rollback().await?;
                return Ok(round);
            }
            // A contact sent before in this run (it re-entered) starts a new run: a run
            // holds one delivery per contact and channel.
            let contacts: Vec<i64> = sent.iter().map(|(_, c)| c.0).collect();
            let again = Query::select()
                .column("id")
                .from("deliveries")
                .and_where(Expr::col("run_id").eq(run))
                .and_where(Expr::col("contact_id").is_in(contacts))
                .limit(1)
                .to_owned();
            if txn.query_one(&again).await?.is_some() {
                run = new_run(&txn, trigger).await?;
                for chunk in ids.chunks(1000) {
                    let update = Query::update()
                        .table("trigger_sends")
                        .value("run_id", run)
                        .and_where(Expr::col("id").is_in(chunk.iter().copied()))
                        .to_owned();
                    txn.execute(&update).await?;
                }
            }
            round.sent = claimed;
        }
        let mut queued: Vec<(Channel, i64)> = Vec::new();
        for (segment, rows) in rows {
            queued.extend(
                write_rows(&txn, run, campaign.id, trigger.workspace, *segment, rows)
                    .await?
                    .into_iter()
                    .map(|(channel, id, _due)| (channel, id)),
            );
        }
        for (reason, ids) in &skipped {
            round.skipped += skip(&txn, ids, reason, now).await?;
        }
        if counts.audience > 0 {
            let add = |column: &str, n: i64| Expr::col(column.to_owned()).add(n);
            let update = Query::update()
                .table("campaign_runs")
                .value("audience", add("audience", counts.audience))
                .value("queued", add("queued", counts.queued))
                .value("suppressed", add("suppressed", counts.suppressed))
                .value("holdout", add("holdout", counts.holdout))
                .value("updated_at", now)
                .and_where(Expr::col("id").eq(run))
                .to_owned();
            txn.execute(&update).await?;
        }
        txn.commit().await?;

        for channel in Channel::ALL {
            let jobs: Vec<DeliveryJob> = queued
                .iter()
                .filter(|(c, _)| *c == channel)
                .map(|&(_, id)| DeliveryJob { id })
                .collect();
            if jobs.is_empty() {
                continue;
            }
            let enqueued = match self.queues.open(channel).await {
                Ok(queue) => queue.enqueue_batch(&jobs).await.map(|_| ()),
                Err(error) => Err(error),
            };
            match enqueued {
                Ok(()) => round.enqueued += jobs.len() as u64,
                Err(error) => {
                    tracing::warn!(%error, run, jobs = jobs.len(), "enqueueing triggered deliveries failed; the supervisor will enqueue them");
                }
            }
        }
        if !sent.is_empty() {
            let contacts: Vec<ContactId> = sent.iter().map(|(_, c)| *c).collect();
            if let Err(error) =
                clarion_kpi::rollup::refresh_runs(&self.db, trigger.workspace, &contacts).await
            {
                tracing::warn!(%error, run, "KPI roll-ups of triggered deliveries could not be updated");
            }
        }
        tracing::debug!(
            trigger = trigger.id,
            run,
            sent = round.sent,
            skipped = round.skipped,
            enqueued = round.enqueued,
            "due trigger sends moved"
        );
        Ok(round)
    }
}

/// A pending send that is due.
#[derive(Debug, Clone, Copy)]
struct DueSend {
    id: i64,
    contact: ContactId,
    /// When quiet hours put it off, the moment it was put off to (ms), which its delivery
    /// shows as its due time.
    put_off: Option<i64>,
}

/// What quiet hours make of a send due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuietDecision {
    /// Put off to this moment (ms), the first one outside them in the contact's zone.
    Delay(i64),
    /// Recorded `suppressed` with the reason `quiet hours`.
    Drop,
}

/// Whether it is quiet for `member` at `now` (ms) in its own time zone (the quiet hours' zone
/// for a contact without one), and what then becomes of its send.
fn quiet_decision(quiet: &QuietHours, member: &members::Member, now: i64) -> Option<QuietDecision> {
    let zone = member.time_zone.map_or(quiet.fallback, TimeZone::tz);
    let at = chrono::DateTime::from_timestamp_millis(now)?;
    if !quiet.quiet_at(at.with_timezone(&zone).naive_local()) {
        return None;
    }
    Some(match quiet.action {
        QuietAction::Drop => QuietDecision::Drop,
        QuietAction::Delay => QuietDecision::Delay(quiet.next_allowed(zone, at).timestamp_millis()),
    })
}

/// Puts off the pending sends of `delayed` (ids by the moment they are due again): each
/// stays pending with its later due time, which the trigger's view shows, and the delivery
/// written then carries it too.
async fn postpone(
    db: &impl ConnectionTrait,
    delayed: &BTreeMap<i64, Vec<i64>>,
) -> Result<Round, DbErr> {
    let mut round = Round::default();
    for (&until, ids) in delayed {
        for chunk in ids.chunks(1000) {
            let update = Query::update()
                .table("trigger_sends")
                .value("due_at", until)
                .and_where(Expr::col("id").is_in(chunk.iter().copied()))
                .and_where(Expr::col("state").eq("pending"))
                .to_owned();
            round.delayed += db.execute(&update).await?.rows_affected();
        }
    }
    Ok(round)
}

/// Counts added to the run.
#[derive(Default)]
struct RunCounts {
    audience: i64,
    queued: i64,
    suppressed: i64,
    holdout: i64,
}

/// Starts a new run for the trigger and makes it the trigger's.
async fn new_run(txn: &impl ConnectionTrait, trigger: &Stored) -> Result<i64, CampaignError> {
    let run = start_run(txn, trigger.workspace, trigger.campaign, None, None).await?;
    let update = Query::update()
        .table("campaign_triggers")
        .value("run_id", run)
        .value("updated_at", Timestamp::now().millis())
        .and_where(Expr::col("id").eq(trigger.id))
        .to_owned();
    txn.execute(&update).await?;
    Ok(run)
}

/// Moves pending sends `ids` to `state`; how many were pending.
async fn mark(
    db: &impl ConnectionTrait,
    ids: &[i64],
    state: &str,
    reason: Option<&str>,
    run: Option<i64>,
    now: i64,
) -> Result<u64, DbErr> {
    let mut total = 0;
    for chunk in ids.chunks(1000) {
        let mut update = Query::update();
        update
            .table("trigger_sends")
            .value("state", state)
            .value("reason", reason)
            .value("run_id", run)
            .value("decided_at", now)
            .and_where(Expr::col("id").is_in(chunk.iter().copied()))
            .and_where(Expr::col("state").eq("pending"));
        total += db.execute(&update).await?.rows_affected();
    }
    Ok(total)
}

async fn skip(
    db: &impl ConnectionTrait,
    ids: &[i64],
    reason: &str,
    now: i64,
) -> Result<u64, DbErr> {
    mark(db, ids, "skipped", Some(reason), None, now).await
}

async fn stop_trigger(db: &impl ConnectionTrait, trigger: i64, now: i64) -> Result<bool, DbErr> {
    super::stop_trigger(db, trigger, STOPPED, now).await
}

/// What decides whether each of `contacts` can be sent to, for those that still exist.
async fn reachability(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    contacts: &[ContactId],
) -> Result<HashMap<ContactId, members::Member>, DbErr> {
    let mut found = HashMap::new();
    for chunk in contacts.chunks(1000) {
        let select = Query::select()
            .column("id")
            .columns(["email_status", "webhook_status", "time_zone"])
            .expr_as(
                Expr::cust("CAST(CASE WHEN email IS NOT NULL THEN 1 ELSE 0 END AS BIGINT)"),
                "has_email",
            )
            .from("contacts")
            .and_where(Expr::col("workspace_id").eq(workspace.0))
            .and_where(Expr::col("id").is_in(chunk.iter().map(|c| c.0)))
            .to_owned();
        for row in db.query_all(&select).await? {
            let status = |column: &str| -> Result<Option<SubscriptionStatus>, DbErr> {
                let value: String = row.try_get("", column)?;
                Ok(SubscriptionStatus::parse(&value).ok())
            };
            let contact = ContactId(row.try_get("", "id")?);
            let has_email: i64 = row.try_get("", "has_email")?;
            found.insert(
                contact,
                members::Member {
                    contact,
                    has_email: has_email != 0,
                    email_status: status("email_status")?,
                    webhook_status: status("webhook_status")?,
                    // For quiet hours: a triggered send goes when it is due, in no wave.
                    time_zone: row
                        .try_get::<Option<String>>("", "time_zone")?
                        .and_then(|name| TimeZone::parse(&name).ok()),
                },
            );
        }
    }
    Ok(found)
}

/// Reads the trigger's segment entries after its cursor up to `newest` into sends, in one
/// transaction that first moves the cursor (compare-and-set). Returns how many it read.
async fn collect(
    db: &DatabaseConnection,
    trigger: &Stored,
    newest: i64,
    paused: bool,
    now: i64,
) -> Result<u64, CampaignError> {
    let txn = db.begin().await?;
    let advance = Query::update()
        .table("campaign_triggers")
        .value("entry_cursor", newest)
        .and_where(Expr::col("id").eq(trigger.id))
        .and_where(Expr::col("entry_cursor").eq(trigger.cursor))
        .and_where(Expr::col("state").eq(TriggerState::Active.as_str()))
        .to_owned();
    if txn.execute(&advance).await?.rows_affected() == 0 {
        txn.rollback().await?;
        return Ok(0);
    }
    let (t, s, old) = (trigger.id, trigger.segment, trigger.cursor);
    let earlier_in_round = format!(
        "EXISTS (SELECT 1 FROM segment_memberships e WHERE e.segment_id = {s} \
         AND e.contact_id = m.contact_id AND e.id > {old} AND e.id < m.id)"
    );
    let pending = format!(
        "EXISTS (SELECT 1 FROM trigger_sends p WHERE p.trigger_id = {t} \
         AND p.contact_id = m.contact_id AND p.state = 'pending')"
    );
    let counted = match trigger.reentry_secs {
        None => format!(
            "EXISTS (SELECT 1 FROM trigger_sends p WHERE p.trigger_id = {t} \
             AND p.contact_id = m.contact_id AND p.state IN ('sent', 'skipped'))"
        ),
        Some(secs) => format!(
            "EXISTS (SELECT 1 FROM trigger_sends p WHERE p.trigger_id = {t} \
             AND p.contact_id = m.contact_id AND p.state IN ('sent', 'skipped') \
             AND p.entered_at > m.entered_at - {})",
            secs * 1000
        ),
    };
    let cooling = if trigger.reentry_secs.is_some() {
        COOLING
    } else {
        ONCE
    };
    let (state, reason) = if paused {
        (
            "'ignored'".to_owned(),
            format!("'{}'", PAUSED_AT_ENTRY.replace('\'', "''")),
        )
    } else {
        let cases = [
            (&earlier_in_round, TWICE),
            (&pending, STILL_PENDING),
            (&counted, cooling),
        ];
        let mut state = String::from("CASE");
        let mut reason = String::from("CASE");
        for (condition, why) in cases {
            let _ = write!(state, " WHEN {condition} THEN 'ignored'");
            let _ = write!(
                reason,
                " WHEN {condition} THEN '{}'",
                why.replace('\'', "''")
            );
        }
        state.push_str(" ELSE 'pending' END");
        reason.push_str(" ELSE NULL END");
        (state, reason)
    };
    let sql = format!(
        "INSERT INTO trigger_sends (workspace_id, trigger_id, campaign_id, contact_id, \
         membership_id, entered_at, due_at, state, reason, created_at) \
         SELECT {ws}, {t}, {c}, m.contact_id, m.id, m.entered_at, m.entered_at + {delay}, \
         {state}, {reason}, {now} \
         FROM segment_memberships m \
         WHERE m.segment_id = {s} AND m.id > {old} AND m.id <= {newest} \
         ON CONFLICT (trigger_id, membership_id) DO NOTHING",
        ws = trigger.workspace.0,
        c = trigger.campaign.0,
        delay = trigger.delay_secs * 1000,
    );
    let read = txn
        .execute_raw(Statement::from_string(txn.get_database_backend(), sql))
        .await?
        .rows_affected();
    txn.commit().await?;
    if read > 0 {
        tracing::debug!(
            trigger = trigger.id,
            campaign = trigger.campaign.0,
            entries = read,
            "segment entries read"
        );
    }
    Ok(read)
}
