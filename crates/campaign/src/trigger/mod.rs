//! Triggered campaigns: a campaign that sends to each contact when it enters a segment (a
//! welcome series, a win-back when a customer becomes `at_risk`).
//!
//! * [`TriggerInput`] is what the API takes; [`put`] checks it (every problem a 422 naming its
//!   field, a bad condition naming its rule node) and switches the trigger on: the campaign
//!   starts sending, with one run that the trigger's deliveries go into.
//! * Entries are read from the segment's membership history (`segment_memberships`), which
//!   every path that changes memberships writes: event batches and contact updates through
//!   ingestion, CSV imports, the periodic sweep, saving a segment. So every path counts, and
//!   is read in one place ([`fire`]).
//! * Each entry read becomes a row of `trigger_sends` with the moment its message is due
//!   (`entered_at` + delay): the database holds every pending send, so a restart or a lost
//!   Redis loses none. The scheduler role moves due sends into deliveries on a short tick
//!   ([`fire::Triggers`]), re-checking the condition then.
//! * A contact is sent once per trigger, unless `reentry_after` lets it enter again after a
//!   cool-down; contacts that were members when the trigger was switched on are not sent
//!   unless `include_existing` says so.

pub mod fire;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clarion_model::{CampaignId, RunStatus, Timestamp, WorkspaceId};
use clarion_segment::{SegmentError, save as segments, store::SegmentKind};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, QueryResult, Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait, Order, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{CampaignError, campaign::Status, sending::SendingSettings, validate::Issue};

/// The longest delay after entering, and the longest cool-down: a year.
pub const MAX_DELAY_SECS: i64 = 365 * 86_400;
/// Pending sends and decided ones a trigger's view lists.
const LISTED: u64 = 100;

/// `[triggers]`: how often the scheduler role looks for entries and due sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSettings {
    /// Milliseconds between two looks for new segment entries and due sends. A send due now
    /// is enqueued within about this time of the entry.
    pub tick_ms: u64,
    /// Due sends moved into deliveries per statement.
    pub batch: u64,
}

impl Default for TriggerSettings {
    fn default() -> Self {
        TriggerSettings {
            tick_ms: 200,
            batch: 1000,
        }
    }
}

impl TriggerSettings {
    /// The first setting that is out of range, with the reason.
    ///
    /// # Errors
    /// The key and why its value does not work.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(10..=60_000).contains(&self.tick_ms) {
            return Err(("triggers.tick_ms", "must be 10 to 60000".into()));
        }
        if !(1..=10_000).contains(&self.batch) {
            return Err(("triggers.batch", "must be 1 to 10000".into()));
        }
        Ok(())
    }
}

/// A campaign's trigger as written.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {
    /// The segment whose new members get the campaign (slug or id); a dynamic segment.
    #[schema(example = "at-risk")]
    pub segment: String,
    /// How long after entering the message goes out: `0` (default), or a number with a unit
    /// `s`, `m`, `h`, `d`, `w`, combined as in `1d12h`; at most a year.
    #[schema(example = "3d")]
    pub delay: Option<String>,
    /// A segment rule (JSON form, or the text form as a string) the contact must still
    /// satisfy when its message is due, e.g. "has not purchased since entering"; a contact
    /// that does not is skipped.
    #[schema(value_type = Option<Object>)]
    pub condition: Option<Value>,
    /// Lets a contact that leaves and enters again be sent again, when this long has passed
    /// since its last counted entry (same form as `delay`, at most a year). Without it a
    /// contact is sent at most once.
    #[schema(example = "30d")]
    pub reentry_after: Option<String>,
    /// Also send to the contacts that are members when the trigger is switched on (default
    /// false: only contacts entering from then on).
    pub include_existing: Option<bool>,
}

/// Where a trigger stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerState {
    /// Reads entries and sends due messages (unless the campaign is paused).
    Active,
    /// Switched off: reads nothing more; pending sends were skipped.
    Stopped,
}

impl TriggerState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerState::Active => "active",
            TriggerState::Stopped => "stopped",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(TriggerState::Active),
            "stopped" => Some(TriggerState::Stopped),
            _ => None,
        }
    }
}

/// One entry of a contact into the segment and what became of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SendView {
    pub contact_id: i64,
    pub entered_at: Timestamp,
    pub due_at: Timestamp,
    /// `pending`, `sent` (its deliveries were written), `skipped` (decided when due, see
    /// `reason`) or `ignored` (the entry did not count, see `reason`).
    pub state: String,
    pub reason: Option<String>,
    /// The run its deliveries went into.
    pub run_id: Option<i64>,
    pub decided_at: Option<Timestamp>,
}

/// How many entries are in each state.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct SendCounts {
    pub pending: i64,
    pub sent: i64,
    pub skipped: i64,
    pub ignored: i64,
}

/// A campaign's trigger as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TriggerView {
    pub campaign_id: CampaignId,
    /// The segment's slug.
    pub segment: String,
    pub segment_id: i64,
    /// As written in the canonical form, e.g. `3d`.
    pub delay: String,
    pub delay_secs: i64,
    /// The condition's rule in its JSON form.
    #[schema(value_type = Option<Object>)]
    pub condition: Option<Value>,
    pub reentry_after: Option<String>,
    pub reentry_after_secs: Option<i64>,
    pub include_existing: bool,
    pub state: TriggerState,
    /// The campaign's status: while it is `paused`, nothing is sent and entries are ignored.
    pub campaign_status: Status,
    /// The run its deliveries go into now.
    pub run_id: Option<i64>,
    /// When the trigger was switched on: members before that are "existing".
    pub armed_at: Timestamp,
    pub stopped_at: Option<Timestamp>,
    pub counts: SendCounts,
    /// Skipped and ignored entries by reason.
    pub reasons: BTreeMap<String, i64>,
    /// When the next pending send is due.
    pub next_due_at: Option<Timestamp>,
    /// The next pending sends (up to 100), earliest first.
    pub pending: Vec<SendView>,
    /// The latest decided entries (up to 100), latest first.
    pub history: Vec<SendView>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A stored trigger.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub id: i64,
    pub workspace: WorkspaceId,
    pub campaign: CampaignId,
    pub segment: i64,
    pub delay_secs: i64,
    pub condition: Option<String>,
    pub reentry_secs: Option<i64>,
    pub include_existing: bool,
    pub state: TriggerState,
    pub run: Option<i64>,
    pub cursor: i64,
    pub armed_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub stopped_at: Option<i64>,
}

pub(crate) const COLUMNS: [&str; 15] = [
    "id",
    "workspace_id",
    "campaign_id",
    "segment_id",
    "delay_secs",
    "condition",
    "reentry_secs",
    "include_existing",
    "state",
    "run_id",
    "entry_cursor",
    "armed_at",
    "created_at",
    "updated_at",
    "stopped_at",
];

pub(crate) fn read(row: &QueryResult) -> Result<Stored, CampaignError> {
    let state: String = row.try_get("", "state")?;
    Ok(Stored {
        id: row.try_get("", "id")?,
        workspace: WorkspaceId(row.try_get("", "workspace_id")?),
        campaign: CampaignId(row.try_get("", "campaign_id")?),
        segment: row.try_get("", "segment_id")?,
        delay_secs: row.try_get("", "delay_secs")?,
        condition: row.try_get("", "condition")?,
        reentry_secs: row.try_get("", "reentry_secs")?,
        include_existing: row.try_get("", "include_existing")?,
        state: TriggerState::parse(&state)
            .ok_or_else(|| CampaignError::Corrupt(format!("trigger state {state:?}")))?,
        run: row.try_get("", "run_id")?,
        cursor: row.try_get("", "entry_cursor")?,
        armed_at: row.try_get("", "armed_at")?,
        created_at: row.try_get("", "created_at")?,
        updated_at: row.try_get("", "updated_at")?,
        stopped_at: row.try_get("", "stopped_at")?,
    })
}

async fn stored(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    campaign: CampaignId,
) -> Result<Option<Stored>, CampaignError> {
    let select = Query::select()
        .columns(COLUMNS)
        .from("campaign_triggers")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("campaign_id").eq(campaign.0))
        .to_owned();
    db.query_one(&select)
        .await?
        .map(|row| read(&row))
        .transpose()
}

/// Reads a duration: `0`, or numbers with a unit (`s`, `m`, `h`, `d`, `w`) one after the
/// other, as in `45s`, `3d` or `1d12h`. Returns seconds.
///
/// # Errors
/// What is wrong with the text.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let value = text.trim();
    let bad = || format!("{text:?} is not a duration such as 0, 45s, 30m, 12h, 3d, 2w or 1d12h");
    if value == "0" {
        return Ok(0);
    }
    if value.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in value.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: i64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        if digits.is_empty() {
            return Err(bad());
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// Seconds written as [`parse_duration`] reads them, largest units first (`1d12h`, `0s`).
#[must_use]
pub fn format_duration(secs: i64) -> String {
    if secs <= 0 {
        return "0s".into();
    }
    let mut rest = secs;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

fn issue(field: &str, message: impl Into<String>) -> Issue {
    let mut issue = Issue::at(field, message);
    issue.field = Some(field.to_owned());
    issue
}

/// A trigger checked against the workspace.
struct Checked {
    segment: i64,
    delay_secs: i64,
    condition: Option<String>,
    reentry_secs: Option<i64>,
    include_existing: bool,
}

fn bounded(field: &str, text: &str, min: i64, issues: &mut Vec<Issue>) -> Option<i64> {
    match parse_duration(text) {
        Ok(secs) if secs > MAX_DELAY_SECS => {
            issues.push(issue(
                field,
                format!(
                    "{text} is more than a year ({} days); give at most 365d",
                    secs / 86_400
                ),
            ));
            None
        }
        Ok(secs) if secs < min => {
            issues.push(issue(
                field,
                format!(
                    "{text} is too short; give at least {}",
                    format_duration(min)
                ),
            ));
            None
        }
        Ok(secs) => Some(secs),
        Err(problem) => {
            issues.push(issue(field, problem));
            None
        }
    }
}

/// The problems of a condition's rule, each naming its node under `condition`.
fn condition_issues(error: SegmentError) -> Result<Vec<Issue>, CampaignError> {
    let node = |path: &str| {
        if path.is_empty() {
            "condition".to_owned()
        } else {
            format!("condition.{path}")
        }
    };
    let at = |path: String, message: String| {
        let mut issue = Issue::at(path, message);
        issue.field = Some("condition".into());
        issue
    };
    Ok(match error {
        SegmentError::Json(e) => vec![at(node(&e.path), e.message)],
        SegmentError::Invalid(errors) => errors
            .into_iter()
            .map(|e| at(node(&e.path), e.message))
            .collect(),
        SegmentError::Text(e) => {
            let mut issue = at("condition".into(), e.message);
            issue.line = Some(e.line);
            issue.column = Some(e.column);
            vec![issue]
        }
        SegmentError::NotYetComputed { path, what } => {
            vec![at(node(&path), format!("{what} is not computed yet"))]
        }
        SegmentError::Db(db) => return Err(CampaignError::Db(db)),
        other => return Err(CampaignError::Corrupt(other.to_string())),
    })
}

async fn check(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    input: &TriggerInput,
) -> Result<Checked, CampaignError> {
    let mut issues = Vec::new();
    let segment = match clarion_segment::store::find(db, workspace, input.segment.trim()).await {
        Ok(Some(segment)) if segment.kind == SegmentKind::Static => {
            issues.push(issue(
                "segment",
                format!(
                    "segment {:?} is a static list: its members change only by upload, so nobody enters it on their own; trigger on a dynamic segment",
                    segment.slug
                ),
            ));
            None
        }
        Ok(Some(segment)) => Some(segment.id.0),
        Ok(None) => {
            issues.push(issue(
                "segment",
                format!("no segment {:?} in this workspace", input.segment),
            ));
            None
        }
        Err(SegmentError::Db(error)) => return Err(CampaignError::Db(error)),
        Err(other) => return Err(CampaignError::Corrupt(other.to_string())),
    };
    let delay_secs = match input.delay.as_deref() {
        None => Some(0),
        Some(text) => bounded("delay", text, 0, &mut issues),
    };
    let reentry_secs = match input.reentry_after.as_deref() {
        None => None,
        Some(text) => bounded("reentry_after", text, 60, &mut issues),
    };
    let condition = match &input.condition {
        None | Some(Value::Null) => None,
        Some(value) => {
            let checked = match segments::read_rule(value) {
                Ok(rule) => segments::check_rule(db, workspace, None, &rule)
                    .await
                    .map(|_| rule),
                Err(error) => Err(error),
            };
            match checked {
                Ok(rule) => Some(rule.to_json().to_string()),
                Err(error) => {
                    issues.extend(condition_issues(error)?);
                    None
                }
            }
        }
    };
    match (segment, delay_secs) {
        (Some(segment), Some(delay_secs)) if issues.is_empty() => Ok(Checked {
            segment,
            delay_secs,
            condition,
            reentry_secs,
            include_existing: input.include_existing.unwrap_or(false),
        }),
        _ => Err(CampaignError::Invalid(issues)),
    }
}

/// The highest membership row of `segment` now: entries up to it are "existing".
async fn newest_entry(db: &impl ConnectionTrait, segment: i64) -> Result<i64, DbErr> {
    let select = Query::select()
        .expr_as(Expr::cust("MAX(id)"), "newest")
        .from("segment_memberships")
        .and_where(Expr::col("segment_id").eq(segment))
        .to_owned();
    Ok(match db.query_one(&select).await? {
        Some(row) => row.try_get::<Option<i64>>("", "newest")?.unwrap_or(0),
        None => 0,
    })
}

/// Records the current members of the segment (entries up to `cursor`) as pending sends,
/// due `delay` after they entered but not before `now`.
async fn include_existing(
    db: &impl ConnectionTrait,
    trigger: i64,
    workspace: WorkspaceId,
    campaign: CampaignId,
    checked: &Checked,
    cursor: i64,
    now: i64,
) -> Result<u64, DbErr> {
    let delay = checked.delay_secs * 1000;
    let sql = format!(
        "INSERT INTO trigger_sends (workspace_id, trigger_id, campaign_id, contact_id, \
         membership_id, entered_at, due_at, state, created_at) \
         SELECT {ws}, {trigger}, {campaign}, m.contact_id, m.id, m.entered_at, \
         CASE WHEN m.entered_at + {delay} > {now} THEN m.entered_at + {delay} ELSE {now} END, \
         'pending', {now} FROM segment_memberships m \
         WHERE m.segment_id = {segment} AND m.exited_at IS NULL AND m.id <= {cursor} \
         ON CONFLICT (trigger_id, membership_id) DO NOTHING",
        ws = workspace.0,
        campaign = campaign.0,
        segment = checked.segment,
    );
    Ok(db
        .execute_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .rows_affected())
}

/// Saves campaign `campaign`'s trigger. The first save switches it on: the campaign (a draft)
/// starts sending, with a run for the trigger's deliveries, and reads entries from now on
/// (with `include_existing`, the current members too). A later save changes delay,
/// condition and cool-down of what is pending too; a new segment starts from its members
/// of the moment.
///
/// # Errors
/// [`CampaignError::Invalid`] naming each bad field, or `segment` when the campaign has a
/// schedule (nothing is saved); [`CampaignError::NotFound`]; [`CampaignError::Conflict`] when
/// the campaign was launched or its trigger was stopped.
pub async fn put(
    db: &DatabaseConnection,
    sending: &SendingSettings,
    workspace: WorkspaceId,
    campaign: CampaignId,
    input: &TriggerInput,
    now: DateTime<Utc>,
) -> Result<TriggerView, CampaignError> {
    let current = crate::store::get(db, workspace, campaign)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {campaign}")))?;
    let checked = check(db, workspace, input).await?;
    let stamp = now.timestamp_millis();
    let existing = stored(db, workspace, campaign).await?;
    match existing {
        Some(old) if old.state == TriggerState::Stopped => {
            return Err(CampaignError::Conflict(format!(
                "campaign {campaign}'s trigger was stopped; duplicate the campaign to trigger it again"
            )));
        }
        Some(old) => {
            let txn = db.begin().await?;
            let mut update = Query::update();
            update
                .table("campaign_triggers")
                .value("delay_secs", checked.delay_secs)
                .value("condition", checked.condition.clone())
                .value("reentry_secs", checked.reentry_secs)
                .value("include_existing", checked.include_existing)
                .value("updated_at", stamp)
                .and_where(Expr::col("id").eq(old.id))
                .and_where(Expr::col("state").eq(TriggerState::Active.as_str()));
            if checked.segment != old.segment {
                let cursor = newest_entry(&txn, checked.segment).await?;
                update
                    .value("segment_id", checked.segment)
                    .value("entry_cursor", cursor)
                    .value("armed_at", stamp);
                if checked.include_existing {
                    include_existing(&txn, old.id, workspace, campaign, &checked, cursor, stamp)
                        .await?;
                }
            }
            if txn.execute(&update).await?.rows_affected() == 0 {
                return Err(CampaignError::Conflict(format!(
                    "campaign {campaign}'s trigger changed at the same moment; read it and try again"
                )));
            }
            // What is pending follows the new delay.
            let due = format!(
                "UPDATE trigger_sends SET due_at = entered_at + {} WHERE trigger_id = {} AND state = 'pending'",
                checked.delay_secs * 1000,
                old.id
            );
            txn.execute_raw(Statement::from_string(txn.get_database_backend(), due))
                .await?;
            txn.commit().await?;
        }
        None => {
            if current.status != Status::Draft {
                return Err(CampaignError::Conflict(format!(
                    "campaign {campaign} is {} and was launched already; duplicate it to trigger the copy",
                    current.status.as_str()
                )));
            }
            if has_schedule(db, campaign).await? {
                return Err(CampaignError::Invalid(vec![issue(
                    "segment",
                    format!(
                        "campaign {campaign} has a schedule, so it cannot also be triggered on segment entry; cancel the schedule (DELETE /api/v1/campaigns/{campaign}/schedule) or trigger a copy of the campaign"
                    ),
                )]));
            }
            crate::launch::launchable(db, sending, workspace, campaign, &[Status::Draft]).await?;
            arm(db, workspace, campaign, &checked, stamp).await?;
        }
    }
    get(db, workspace, campaign)
        .await?
        .ok_or_else(|| CampaignError::Corrupt("the saved trigger cannot be read".into()))
}

/// Whether campaign `campaign` has a trigger, switched on or stopped: such a campaign is sent
/// on segment entry and is never scheduled.
///
/// # Errors
/// Database failures.
pub async fn exists(db: &impl ConnectionTrait, campaign: CampaignId) -> Result<bool, DbErr> {
    let select = Query::select()
        .column("id")
        .from("campaign_triggers")
        .and_where(Expr::col("campaign_id").eq(campaign.0))
        .to_owned();
    Ok(db.query_one(&select).await?.is_some())
}

async fn has_schedule(db: &DatabaseConnection, campaign: CampaignId) -> Result<bool, DbErr> {
    let select = Query::select()
        .column("id")
        .from("campaign_schedules")
        .and_where(Expr::col("campaign_id").eq(campaign.0))
        .and_where(Expr::col("state").is_in(["active", "paused"]))
        .to_owned();
    Ok(db.query_one(&select).await?.is_some())
}

/// Switches a trigger on, in one transaction: the campaign becomes `sending`, its run starts,
/// the trigger reads entries after the segment's newest one.
async fn arm(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
    checked: &Checked,
    stamp: i64,
) -> Result<(), CampaignError> {
    let txn = db.begin().await?;
    let claim = Query::update()
        .table("campaigns")
        .value("status", Status::Sending.as_str())
        .value("updated_at", stamp)
        .and_where(Expr::col("id").eq(campaign.0))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("status").eq(Status::Draft.as_str()))
        .to_owned();
    if txn.execute(&claim).await?.rows_affected() != 1 {
        return Err(CampaignError::Conflict(format!(
            "campaign {campaign} was launched at the same moment by another request"
        )));
    }
    let run = crate::launch::start_run(&txn, workspace, campaign, None, None).await?;
    let cursor = newest_entry(&txn, checked.segment).await?;
    let insert = Query::insert()
        .into_table("campaign_triggers")
        .columns([
            "workspace_id",
            "campaign_id",
            "segment_id",
            "delay_secs",
            "condition",
            "reentry_secs",
            "include_existing",
            "state",
            "run_id",
            "entry_cursor",
            "armed_at",
            "created_at",
            "updated_at",
        ])
        .values_panic([
            workspace.0.into(),
            campaign.0.into(),
            checked.segment.into(),
            checked.delay_secs.into(),
            checked.condition.clone().into(),
            checked.reentry_secs.into(),
            checked.include_existing.into(),
            TriggerState::Active.as_str().into(),
            run.into(),
            cursor.into(),
            stamp.into(),
            stamp.into(),
            stamp.into(),
        ])
        .returning_col("id")
        .to_owned();
    let id: i64 = txn
        .query_one(&insert)
        .await?
        .ok_or_else(|| CampaignError::Corrupt("the new trigger has no id".into()))?
        .try_get("", "id")?;
    if checked.include_existing {
        include_existing(&txn, id, workspace, campaign, checked, cursor, stamp).await?;
    }
    txn.commit().await?;
    tracing::info!(
        campaign = campaign.0,
        segment = checked.segment,
        run,
        "trigger switched on"
    );
    Ok(())
}

/// Campaign `campaign`'s trigger with its counts, pending sends and history.
///
/// # Errors
/// [`CampaignError::NotFound`] when the campaign does not exist; database failures.
pub async fn get(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
) -> Result<Option<TriggerView>, CampaignError> {
    let status = crate::store::get(db, workspace, campaign)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {campaign}")))?
        .status;
    let Some(trigger) = stored(db, workspace, campaign).await? else {
        return Ok(None);
    };
    let slug =
        clarion_segment::store::get(db, workspace, clarion_model::SegmentId(trigger.segment))
            .await
            .map_err(|e| match e {
                SegmentError::Db(db) => CampaignError::Db(db),
                other => CampaignError::Corrupt(other.to_string()),
            })?
            .map_or_else(
                || format!("(deleted segment {})", trigger.segment),
                |s| s.slug,
            );

    let tally = Query::select()
        .columns(["state", "reason"])
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .from("trigger_sends")
        .and_where(Expr::col("trigger_id").eq(trigger.id))
        .group_by_columns(["state", "reason"])
        .to_owned();
    let mut counts = SendCounts::default();
    let mut reasons = BTreeMap::new();
    for row in db.query_all(&tally).await? {
        let state: String = row.try_get("", "state")?;
        let reason: Option<String> = row.try_get("", "reason")?;
        let n: i64 = row.try_get("", "n")?;
        match state.as_str() {
            "pending" => counts.pending += n,
            "sent" => counts.sent += n,
            "skipped" => counts.skipped += n,
            _ => counts.ignored += n,
        }
        if let Some(reason) = reason {
            *reasons.entry(reason).or_insert(0) += n;
        }
    }
    let sends = |pending: bool| {
        let mut select = Query::select();
        select
            .columns([
                "contact_id",
                "entered_at",
                "due_at",
                "state",
                "reason",
                "run_id",
                "decided_at",
            ])
            .from("trigger_sends")
            .and_where(Expr::col("trigger_id").eq(trigger.id))
            .limit(LISTED);
        if pending {
            select
                .and_where(Expr::col("state").eq("pending"))
                .order_by("due_at", Order::Asc);
        } else {
            select
                .and_where(Expr::col("state").ne("pending"))
                .order_by("id", Order::Desc);
        }
        select
    };
    let pending = list_sends(db, &sends(true)).await?;
    let history = list_sends(db, &sends(false)).await?;
    let condition = trigger
        .condition
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| CampaignError::Corrupt(format!("trigger condition: {e}")))?;
    Ok(Some(TriggerView {
        campaign_id: campaign,
        segment: slug,
        segment_id: trigger.segment,
        delay: format_duration(trigger.delay_secs),
        delay_secs: trigger.delay_secs,
        condition,
        reentry_after: trigger.reentry_secs.map(format_duration),
        reentry_after_secs: trigger.reentry_secs,
        include_existing: trigger.include_existing,
        state: trigger.state,
        campaign_status: status,
        run_id: trigger.run,
        armed_at: Timestamp::from_millis(trigger.armed_at),
        stopped_at: trigger.stopped_at.map(Timestamp::from_millis),
        counts,
        reasons,
        next_due_at: pending.first().map(|s| s.due_at),
        pending,
        history,
        created_at: Timestamp::from_millis(trigger.created_at),
        updated_at: Timestamp::from_millis(trigger.updated_at),
    }))
}

async fn list_sends(
    db: &DatabaseConnection,
    select: &sea_orm::sea_query::SelectStatement,
) -> Result<Vec<SendView>, CampaignError> {
    db.query_all(select)
        .await?
        .iter()
        .map(|row| {
            Ok(SendView {
                contact_id: row.try_get("", "contact_id")?,
                entered_at: Timestamp::from_millis(row.try_get("", "entered_at")?),
                due_at: Timestamp::from_millis(row.try_get("", "due_at")?),
                state: row.try_get("", "state")?,
                reason: row.try_get("", "reason")?,
                run_id: row.try_get("", "run_id")?,
                decided_at: row
                    .try_get::<Option<i64>>("", "decided_at")?
                    .map(Timestamp::from_millis),
            })
        })
        .collect()
}

/// Why pending sends of a stopped trigger were skipped.
pub const STOPPED: &str = "the trigger was stopped";

/// Marks trigger `trigger` stopped and skips its pending sends; returns whether it was active.
pub(crate) async fn stop_trigger(
    db: &impl ConnectionTrait,
    trigger: i64,
    reason: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let update = Query::update()
        .table("campaign_triggers")
        .value("state", TriggerState::Stopped.as_str())
        .value("stopped_at", now)
        .value("updated_at", now)
        .and_where(Expr::col("id").eq(trigger))
        .and_where(Expr::col("state").eq(TriggerState::Active.as_str()))
        .to_owned();
    if db.execute(&update).await?.rows_affected() == 0 {
        return Ok(false);
    }
    let skip = Query::update()
        .table("trigger_sends")
        .value("state", "skipped")
        .value("reason", reason)
        .value("decided_at", now)
        .and_where(Expr::col("trigger_id").eq(trigger))
        .and_where(Expr::col("state").eq("pending"))
        .to_owned();
    db.execute(&skip).await?;
    Ok(true)
}

/// Switches campaign `campaign`'s trigger off: no entry is read any more, pending sends are
/// skipped, and its run completes once its deliveries are settled.
///
/// # Errors
/// [`CampaignError::NotFound`] without a trigger; [`CampaignError::Conflict`] when it was
/// stopped already.
pub async fn stop(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
    now: DateTime<Utc>,
) -> Result<TriggerView, CampaignError> {
    crate::store::get(db, workspace, campaign)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {campaign}")))?;
    let trigger = stored(db, workspace, campaign)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("a trigger of campaign {campaign}")))?;
    let txn = db.begin().await?;
    if !stop_trigger(&txn, trigger.id, STOPPED, now.timestamp_millis()).await? {
        return Err(CampaignError::Conflict(format!(
            "campaign {campaign}'s trigger is stopped already"
        )));
    }
    txn.commit().await?;
    if let Some(run) = trigger.run {
        crate::control::complete_if_done(db, run).await?;
    }
    get(db, workspace, campaign)
        .await?
        .ok_or_else(|| CampaignError::Corrupt("the trigger cannot be read".into()))
}

/// Whether `run` belongs to a campaign whose trigger is active: such a run stays open (the
/// trigger may add deliveries), even with nothing queued.
///
/// # Errors
/// Database failures.
pub async fn keeps_open(db: &impl ConnectionTrait, run: i64) -> Result<bool, DbErr> {
    let select = Query::select()
        .column(("t", "id"))
        .from_as("campaign_triggers", "t")
        .inner_join(
            "campaign_runs",
            Expr::col(("campaign_runs", "campaign_id")).equals(("t", "campaign_id")),
        )
        .and_where(Expr::col(("campaign_runs", "id")).eq(run))
        .and_where(Expr::col(("campaign_runs", "status")).ne(RunStatus::Cancelled.as_str()))
        .and_where(Expr::col(("t", "state")).eq(TriggerState::Active.as_str()))
        .limit(1)
        .to_owned();
    Ok(db.query_one(&select).await?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_write_back() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("45s"), Ok(45));
        assert_eq!(parse_duration("3d"), Ok(3 * 86_400));
        assert_eq!(parse_duration(" 1d12h "), Ok(86_400 + 12 * 3600));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        for bad in ["", "d", "3", "3x", "1.5d", "-1d", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(3 * 86_400), "3d");
        assert_eq!(format_duration(86_400 + 12 * 3600 + 61), "1d12h1m1s");
        for secs in [1, 59, 3600, 86_399, 365 * 86_400] {
            assert_eq!(parse_duration(&format_duration(secs)), Ok(secs));
        }
    }
}
