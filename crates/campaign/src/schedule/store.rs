//! A campaign's schedule in the database: written, read with its next fire times and history,
//! cancelled, paused and resumed. The row's `next_fire_at` is what the scheduler fires by.

use chrono::{DateTime, Utc};
use clarion_model::{CampaignId, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, QueryResult,
    sea_query::{Expr, ExprTrait, Order, Query},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{CatchUp, Plan, ScheduleInput, Timing, rfc3339};
use crate::{CampaignError, campaign::Status};

/// Fire times a schedule's view lists ahead.
const UPCOMING: u32 = 5;
/// Firings a schedule's view lists, the latest first.
const HISTORY: u64 = 100;

/// Where a schedule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleState {
    /// Fires at `next_fire_at`.
    Active,
    /// Fires no more until resumed; slots in between are not caught up.
    Paused,
    /// Every slot it has was fired (a one-off that fired, or a recurring one past its end).
    Completed,
    /// Cancelled by a user, or its campaign was.
    Cancelled,
}

impl ScheduleState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleState::Active => "active",
            ScheduleState::Paused => "paused",
            ScheduleState::Completed => "completed",
            ScheduleState::Cancelled => "cancelled",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(ScheduleState::Active),
            "paused" => Some(ScheduleState::Paused),
            "completed" => Some(ScheduleState::Completed),
            "cancelled" => Some(ScheduleState::Cancelled),
            _ => None,
        }
    }
}

/// One slot of a schedule and what became of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Firing {
    /// The scheduled moment (with the campaign, the run key: unique).
    pub slot_at: Timestamp,
    /// `launching`, `launched`, `skipped` or `failed`.
    pub status: String,
    /// The run it launched.
    pub run_id: Option<i64>,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// The scheduler process that fired it.
    pub fired_by: String,
    pub fired_at: Timestamp,
}

/// A campaign's schedule as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleView {
    pub campaign_id: CampaignId,
    /// `once` or `recurring`.
    pub kind: String,
    /// A one-off's moment.
    pub at: Option<Timestamp>,
    pub cron: Option<String>,
    pub time_zone: String,
    /// Read on each recipient's clock (see the schedule's `local_time`); `time_zone` is then
    /// the zone of contacts without one.
    pub local_time: bool,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub max_runs: Option<i64>,
    pub catch_up: CatchUp,
    pub state: ScheduleState,
    /// The next slot; absent unless active.
    pub next_fire_at: Option<Timestamp>,
    /// The next few fire times (UTC, RFC 3339), absent unless active.
    pub upcoming: Vec<String>,
    /// Runs launched by the schedule so far.
    pub fired: i64,
    /// The latest firings, the latest first.
    pub history: Vec<Firing>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A stored schedule, as the scheduler reads it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub id: i64,
    pub workspace: WorkspaceId,
    pub campaign: CampaignId,
    pub plan: Plan,
    pub state: ScheduleState,
    pub next_fire_at: Option<DateTime<Utc>>,
    pub fired: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub(crate) const COLUMNS: [&str; 17] = [
    "local_time",
    "id",
    "workspace_id",
    "campaign_id",
    "kind",
    "at",
    "cron",
    "time_zone",
    "starts_at",
    "ends_at",
    "max_runs",
    "catch_up",
    "state",
    "next_fire_at",
    "fired",
    "created_at",
    "updated_at",
];

fn corrupt(what: &str, value: impl std::fmt::Debug) -> CampaignError {
    CampaignError::Corrupt(format!("schedule {what} {value:?}"))
}

fn datetime(millis: Option<i64>) -> Option<DateTime<Utc>> {
    millis.and_then(DateTime::from_timestamp_millis)
}

pub(crate) fn read(row: &QueryResult) -> Result<Stored, CampaignError> {
    let kind: String = row.try_get("", "kind")?;
    let zone_name: String = row.try_get("", "time_zone")?;
    let zone = zone_name
        .parse()
        .map_err(|_| corrupt("time zone", &zone_name))?;
    let timing = match kind.as_str() {
        "once" => Timing::Once(
            datetime(row.try_get("", "at")?).ok_or_else(|| corrupt("moment", "missing"))?,
        ),
        "recurring" => {
            let cron: Option<String> = row.try_get("", "cron")?;
            let cron = cron.unwrap_or_default();
            Timing::Recurring {
                cron: super::Cron::parse(&cron).map_err(|_| corrupt("cron", &cron))?,
                starts_at: datetime(row.try_get("", "starts_at")?),
                ends_at: datetime(row.try_get("", "ends_at")?),
                max_runs: row
                    .try_get::<Option<i64>>("", "max_runs")?
                    .and_then(|n| u64::try_from(n).ok()),
            }
        }
        other => return Err(corrupt("kind", other)),
    };
    let catch_up: String = row.try_get("", "catch_up")?;
    let state: String = row.try_get("", "state")?;
    Ok(Stored {
        id: row.try_get("", "id")?,
        workspace: WorkspaceId(row.try_get("", "workspace_id")?),
        campaign: CampaignId(row.try_get("", "campaign_id")?),
        plan: Plan {
            timing,
            zone,
            catch_up: CatchUp::parse(&catch_up).ok_or_else(|| corrupt("catch-up", &catch_up))?,
            local_time: row.try_get::<i64>("", "local_time")? != 0,
        },
        state: ScheduleState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        next_fire_at: datetime(row.try_get("", "next_fire_at")?),
        fired: u64::try_from(row.try_get::<i64>("", "fired")?).unwrap_or(0),
        created_at: Timestamp::from_millis(row.try_get("", "created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("", "updated_at")?),
    })
}

async fn stored(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    campaign: CampaignId,
) -> Result<Option<Stored>, CampaignError> {
    let select = Query::select()
        .columns(COLUMNS)
        .from("campaign_schedules")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("campaign_id").eq(campaign.0))
        .to_owned();
    db.query_one(&select)
        .await?
        .map(|row| read(&row))
        .transpose()
}

async fn campaign_status(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
) -> Result<Status, CampaignError> {
    crate::store::get(db, workspace, campaign)
        .await?
        .map(|c| c.status)
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {campaign}")))
}

fn millis(at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(|at| at.timestamp_millis())
}

/// Saves campaign `campaign`'s schedule, replacing the one it had unless that one already
/// fired as a one-off. The next fire time counts from `now`.
///
/// # Errors
/// [`CampaignError::Invalid`] naming each bad field, or `cron`/`at` when the campaign has a
/// trigger (nothing is saved); [`CampaignError::NotFound`]; [`CampaignError::Conflict`] for a
/// cancelled campaign or a one-off that fired already.
pub async fn put(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
    input: &ScheduleInput,
    now: DateTime<Utc>,
) -> Result<ScheduleView, CampaignError> {
    let status = campaign_status(db, workspace, campaign).await?;
    let plan = Plan::parse(input, now)?;
    if status == Status::Cancelled {
        return Err(CampaignError::Conflict(format!(
            "campaign {campaign} is cancelled; duplicate it to schedule a copy"
        )));
    }
    if crate::trigger::exists(db, campaign).await? {
        let field = if input.cron.is_some() { "cron" } else { "at" };
        return Err(CampaignError::Invalid(vec![super::issue(
            field,
            format!(
                "campaign {campaign} is sent by a trigger on segment entry, so it cannot also be scheduled; schedule a copy of it (POST /api/v1/campaigns/{campaign}/duplicate)"
            ),
        )]));
    }
    let existing = stored(db, workspace, campaign).await?;
    if let Some(old) = &existing
        && matches!(old.plan.timing, Timing::Once(_))
        && old.fired > 0
    {
        return Err(CampaignError::Conflict(format!(
            "campaign {campaign}'s one-off schedule fired already; duplicate the campaign to send it again"
        )));
    }
    let fired = existing.as_ref().map_or(0, |s| s.fired);
    let next = plan.next_after(now, fired);
    let state = if next.is_some() {
        ScheduleState::Active
    } else {
        ScheduleState::Completed
    };
    let (kind, at, cron, starts_at, ends_at, max_runs) = match &plan.timing {
        Timing::Once(at) => ("once", Some(*at), None, None, None, None),
        Timing::Recurring {
            cron,
            starts_at,
            ends_at,
            max_runs,
        } => (
            "recurring",
            None,
            Some(cron.as_str().to_owned()),
            *starts_at,
            *ends_at,
            max_runs.and_then(|n| i64::try_from(n).ok()),
        ),
    };
    let stamp = now.timestamp_millis();
    let values: [(&str, sea_orm::Value); 12] = [
        ("kind", kind.into()),
        ("local_time", i64::from(plan.local_time).into()),
        ("at", millis(at).into()),
        ("cron", cron.into()),
        ("time_zone", plan.zone.name().into()),
        ("starts_at", millis(starts_at).into()),
        ("ends_at", millis(ends_at).into()),
        ("max_runs", max_runs.into()),
        ("catch_up", plan.catch_up.as_str().into()),
        ("state", state.as_str().into()),
        ("next_fire_at", millis(next).into()),
        ("updated_at", stamp.into()),
    ];
    if let Some(old) = existing {
        let mut update = Query::update();
        update.table("campaign_schedules");
        for (column, value) in values {
            update.value(column, value);
        }
        update.and_where(Expr::col("id").eq(old.id));
        db.execute(&update).await?;
    } else {
        let mut columns: Vec<&str> = values.iter().map(|(c, _)| *c).collect();
        columns.extend(["workspace_id", "campaign_id", "fired", "created_at"]);
        let mut row: Vec<sea_orm::sea_query::SimpleExpr> =
            values.into_iter().map(|(_, v)| v.into()).collect();
        row.extend([
            workspace.0.into(),
            campaign.0.into(),
            0i64.into(),
            stamp.into(),
        ]);
        let insert = Query::insert()
            .into_table("campaign_schedules")
            .columns(columns)
            .values_panic(row)
            .to_owned();
        db.execute(&insert).await?;
    }
    get(db, workspace, campaign)
        .await?
        .ok_or_else(|| CampaignError::Corrupt("the saved schedule cannot be read".into()))
}

/// Campaign `campaign`'s schedule with its next fire times and its history.
///
/// # Errors
/// [`CampaignError::NotFound`] when the campaign does not exist; database failures.
pub async fn get(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
) -> Result<Option<ScheduleView>, CampaignError> {
    campaign_status(db, workspace, campaign).await?;
    let Some(schedule) = stored(db, workspace, campaign).await? else {
        return Ok(None);
    };
    let history = firings(db, schedule.id).await?;
    let upcoming = match (schedule.state, schedule.next_fire_at) {
        (ScheduleState::Active, Some(next)) => {
            let mut times = vec![next];
            times.extend(
                schedule
                    .plan
                    .fire_times(next, schedule.fired + 1, UPCOMING - 1),
            );
            times.into_iter().map(rfc3339).collect()
        }
        _ => Vec::new(),
    };
    let stamp =
        |at: Option<DateTime<Utc>>| at.map(|at| Timestamp::from_millis(at.timestamp_millis()));
    let (kind, at, cron, starts_at, ends_at, max_runs) = match &schedule.plan.timing {
        Timing::Once(at) => ("once", Some(*at), None, None, None, None),
        Timing::Recurring {
            cron,
            starts_at,
            ends_at,
            max_runs,
        } => (
            "recurring",
            None,
            Some(cron.as_str().to_owned()),
            *starts_at,
            *ends_at,
            max_runs.and_then(|n| i64::try_from(n).ok()),
        ),
    };
    Ok(Some(ScheduleView {
        campaign_id: campaign,
        kind: kind.to_owned(),
        at: stamp(at),
        cron,
        time_zone: schedule.plan.zone.name().to_owned(),
        local_time: schedule.plan.local_time,
        starts_at: stamp(starts_at),
        ends_at: stamp(ends_at),
        max_runs,
        catch_up: schedule.plan.catch_up,
        state: schedule.state,
        next_fire_at: match schedule.state {
            ScheduleState::Active => stamp(schedule.next_fire_at),
            _ => None,
        },
        upcoming,
        fired: i64::try_from(schedule.fired).unwrap_or(i64::MAX),
        history,
        created_at: schedule.created_at,
        updated_at: schedule.updated_at,
    }))
}

async fn firings(db: &DatabaseConnection, schedule: i64) -> Result<Vec<Firing>, CampaignError> {
    let select = Query::select()
        .columns([
            "slot_at", "status", "run_id", "reason", "fired_by", "fired_at",
        ])
        .from("schedule_firings")
        .and_where(Expr::col("schedule_id").eq(schedule))
        .order_by("slot_at", Order::Desc)
        .limit(HISTORY)
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| {
            Ok(Firing {
                slot_at: Timestamp::from_millis(row.try_get("", "slot_at")?),
                status: row.try_get("", "status")?,
                run_id: row.try_get("", "run_id")?,
                reason: row.try_get("", "reason")?,
                fired_by: row.try_get("", "fired_by")?,
                fired_at: Timestamp::from_millis(row.try_get("", "fired_at")?),
            })
        })
        .collect()
}

/// Moves the schedule from one of `from` to `to`, with its next fire time; returns the view.
async fn change_state(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
    from: &[ScheduleState],
    to: ScheduleState,
    now: DateTime<Utc>,
) -> Result<ScheduleView, CampaignError> {
    campaign_status(db, workspace, campaign).await?;
    let schedule = stored(db, workspace, campaign)
        .await?
        .ok_or_else(|| CampaignError::NotFound(format!("a schedule of campaign {campaign}")))?;
    if !from.contains(&schedule.state) {
        return Err(CampaignError::Conflict(format!(
            "campaign {campaign}'s schedule is {}, so it cannot become {}",
            schedule.state.as_str(),
            to.as_str()
        )));
    }
    // Resuming counts from now: slots that passed while paused are not caught up.
    let next = match to {
        ScheduleState::Active => schedule.plan.next_after(now, schedule.fired),
        _ => None,
    };
    let to = if to == ScheduleState::Active && next.is_none() {
        ScheduleState::Completed
    } else {
        to
    };
    let update = Query::update()
        .table("campaign_schedules")
        .value("state", to.as_str())
        .value("next_fire_at", millis(next))
        .value("updated_at", now.timestamp_millis())
        .and_where(Expr::col("id").eq(schedule.id))
        .and_where(Expr::col("state").eq(schedule.state.as_str()))
        .to_owned();
    if db.execute(&update).await?.rows_affected() == 0 {
        return Err(CampaignError::Conflict(format!(
            "campaign {campaign}'s schedule changed at the same moment; read it and try again"
        )));
    }
    get(db, workspace, campaign)
        .await?
        .ok_or_else(|| CampaignError::Corrupt("the schedule cannot be read".into()))
}

/// Cancels the schedule's future firings (runs already launched go on).
///
/// # Errors
/// [`CampaignError::NotFound`] without a schedule; [`CampaignError::Conflict`] unless it is
/// active or paused.
pub async fn cancel(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
    now: DateTime<Utc>,
) -> Result<ScheduleView, CampaignError> {
    change_state(
        db,
        workspace,
        campaign,
        &[ScheduleState::Active, ScheduleState::Paused],
        ScheduleState::Cancelled,
        now,
    )
    .await
}

/// Pauses the schedule: it fires no more until resumed.
///
/// # Errors
/// As [`cancel`], unless it is active.
pub async fn pause(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
    now: DateTime<Utc>,
) -> Result<ScheduleView, CampaignError> {
    change_state(
        db,
        workspace,
        campaign,
        &[ScheduleState::Active],
        ScheduleState::Paused,
        now,
    )
    .await
}

/// Resumes a paused schedule from its next slot after `now`.
///
/// # Errors
/// As [`cancel`], unless it is paused.
pub async fn resume(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
    now: DateTime<Utc>,
) -> Result<ScheduleView, CampaignError> {
    change_state(
        db,
        workspace,
        campaign,
        &[ScheduleState::Paused],
        ScheduleState::Active,
        now,
    )
    .await
}
