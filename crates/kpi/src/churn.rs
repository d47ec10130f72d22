//! Churn per period, active contacts over time, and retention by monthly cohort.
//!
//! # When a contact is active
//!
//! Per workspace ([`crate::KpiSettings::churn`]):
//!
//! - **inactivity** (default): a contact is active at instant `x` when it has an
//!   `activity_event` at some `t` with `t <= x < t + inactivity_days`. It churns at
//!   `t + inactivity_days` after its last such event; a later event makes it active again.
//! - **cancel**: a contact becomes active at its `start_event` (or, without one, at its first
//!   `activity_event`) and stays active until its `cancel_event`; a later start (or activity)
//!   makes it active again. Events at the same instant count starts before cancels.
//!
//! A churn moment that lies after the report is made does not count (the contact may still
//! come back): such a contact is active.
//!
//! # Churn report
//!
//! The periods are days, weeks (from Monday) or months in the workspace's time zone, from the
//! one containing `from` up to the one containing the day before `to`. For each period
//! `[start, end)`:
//!
//! - `active_at_start`: contacts active at `start` (the series of active contacts over time);
//! - `churned`: of those, contacts that stop being active before `end`;
//! - `churn_rate` = churned / active_at_start (`null` when nobody was active); contacts that
//!   became active during the period are not in the denominator;
//! - `became_active`: contacts that became active (for the first time or again) during it.
//!
//! With a segment, only its current members count.
//!
//! # Retention by monthly cohort
//!
//! A contact's cohort is the month (workspace time zone) in which it first became active.
//! For each cohort from `from`'s month on, over `months` months: its size, and for month
//! `k = 0, 1, ...` after it (up to the last month of the table) the contacts of the cohort
//! active at some moment of that month, and their share of the cohort.

use std::collections::HashMap;

use chrono::{Datelike, Duration, NaiveDate, TimeZone as _};
use chrono_tz::Tz;
use clarion_model::{Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DbBackend, Statement, Value,
    sea_query::{Expr, ExprTrait, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{KpiError, param, settings, settings::ChurnDefinition};

const DAY_MS: i64 = 86_400_000;
const PAGE: usize = 50_000;
const MAX_PERIODS: usize = 1_000;

/// The length of a churn report's periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Week,
    Month,
}

/// One period of the churn report; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChurnPeriod {
    pub start: Timestamp,
    pub end: Timestamp,
    pub active_at_start: u64,
    pub churned: u64,
    /// churned / active_at_start; null when nobody was active at the start.
    pub churn_rate: Option<f64>,
    pub became_active: u64,
}

/// Churn per period.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChurnReport {
    /// The segment whose current members count; null for every contact.
    pub segment: Option<String>,
    pub definition: ChurnDefinition,
    pub period: Period,
    pub time_zone: String,
    pub periods: Vec<ChurnPeriod>,
}

/// One cohort of the retention table.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Cohort {
    /// The cohort's month, `YYYY-MM`.
    pub month: String,
    /// Contacts first active in that month.
    pub size: u64,
    /// Contacts of the cohort active in month 0, 1, ... after it.
    pub retained: Vec<u64>,
    /// retained / size per month; null for an empty cohort.
    pub shares: Vec<Option<f64>>,
}

/// Retention by monthly cohort.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RetentionReport {
    pub segment: Option<String>,
    pub definition: ChurnDefinition,
    pub time_zone: String,
    pub cohorts: Vec<Cohort>,
}

/// One active spell of a contact: `[start, end)`. `end` is `None` while a cancel-defined
/// spell is open; an inactivity spell always has its end (last event + inactivity), and when
/// it is the contact's `last` spell and that end lies after the moment a report is made, the
/// contact is still active then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spell {
    pub start: i64,
    pub end: Option<i64>,
    pub last: bool,
}

/// How events make spells.
pub(crate) struct Rule {
    definition: ChurnDefinition,
    activity: String,
    start: String,
    cancel: String,
    inactivity_ms: i64,
}

impl Rule {
    /// The rule of a workspace's KPI settings.
    pub(crate) fn new(kpi: &settings::KpiSettings) -> Self {
        Rule {
            definition: kpi.churn,
            activity: kpi.activity_event.clone(),
            start: kpi.start_event.clone(),
            cancel: kpi.cancel_event.clone(),
            inactivity_ms: i64::from(kpi.inactivity_days) * DAY_MS,
        }
    }

    /// The spells of a contact from its events (time order, starts before cancels at the
    /// same instant).
    fn spells(&self, events: &mut [(i64, String)]) -> Vec<Spell> {
        self.spells_after(None, events)
    }

    /// The spells a contact's `events` make when, before the first of them, it was active
    /// since `active.0` with an activity event at `active.1` (or not active: `None`).
    fn spells_after(&self, active: Option<(i64, i64)>, events: &mut [(i64, String)]) -> Vec<Spell> {
        let mut spells = Vec::new();
        match self.definition {
            ChurnDefinition::Inactivity => {
                let mut current: Option<(i64, i64)> = active;
                for (t, _) in events.iter().filter(|(_, k)| *k == self.activity) {
                    current = match current {
                        Some((start, last)) if *t <= last + self.inactivity_ms => Some((start, *t)),
                        Some((start, last)) => {
                            spells.push(Spell {
                                start,
                                end: Some(last + self.inactivity_ms),
                                last: false,
                            });
                            Some((*t, *t))
                        }
                        None => Some((*t, *t)),
                    };
                }
                if let Some((start, last)) = current {
                    spells.push(Spell {
                        start,
                        end: Some(last + self.inactivity_ms),
                        last: true,
                    });
                }
            }
            ChurnDefinition::Cancel => {
                events.sort_by_key(|(t, k)| (*t, *k == self.cancel));
                let mut active: Option<i64> = active.map(|(start, _)| start);
                for (t, kind) in events.iter() {
                    if active.is_none() && (*kind == self.start || *kind == self.activity) {
                        active = Some(*t);
                    } else if *kind == self.cancel
                        && let Some(start) = active.take()
                        // Started and cancelled at the same instant: never active.
                        && start < *t
                    {
                        spells.push(Spell {
                            start,
                            end: Some(*t),
                            last: false,
                        });
                    }
                }
                if let Some(start) = active {
                    spells.push(Spell {
                        start,
                        end: None,
                        last: false,
                    });
                }
                if let Some(last) = spells.last_mut() {
                    last.last = true;
                }
            }
        }
        spells
    }

    /// A contact's spells after events at `since` or later were added to those that made
    /// `stored` (its spells, in start order). The new events cannot change a spell that
    /// ended before `since`, so only the spell `since` falls in (if any) and those after it
    /// are computed again, from `events`: the contact's events of the rule's kinds at `since`
    /// or later, new and old, in time order. Answers the start from which the stored spells
    /// are replaced, and the spells that replace them.
    fn respelled(
        &self,
        stored: &[Spell],
        since: i64,
        events: &mut [(i64, String)],
    ) -> (i64, Vec<Spell>) {
        // Active just before the instant `since`: the latest spell starting before it has not
        // ended by then (an inactivity spell goes on through its end: an event exactly then
        // extends it; a cancel at `since` is among `events`).
        let open =
            stored
                .iter()
                .rev()
                .find(|s| s.start <= since)
                .filter(|s| match self.definition {
                    ChurnDefinition::Inactivity => s.end.is_some_and(|end| since <= end),
                    ChurnDefinition::Cancel => {
                        s.start < since && s.end.is_none_or(|end| since <= end)
                    }
                });
        if let Some(spell) = open {
            // The first event (at `since`) extends or keeps the open spell.
            return (
                spell.start,
                self.spells_after(Some((spell.start, since)), events),
            );
        }
        let mut fresh = self.spells_after(None, events);
        // The spells before `since` stay; the latest of them is the contact's last one exactly
        // when none follows it now.
        match stored.iter().rev().find(|s| s.start < since) {
            Some(kept) if kept.last != fresh.is_empty() => {
                let last = fresh.is_empty();
                fresh.insert(0, Spell { last, ..*kept });
                (kept.start, fresh)
            }
            _ => (since, fresh),
        }
    }

    pub(crate) fn kinds(&self) -> Vec<String> {
        match self.definition {
            ChurnDefinition::Inactivity => vec![self.activity.clone()],
            ChurnDefinition::Cancel => {
                vec![
                    self.activity.clone(),
                    self.start.clone(),
                    self.cancel.clone(),
                ]
            }
        }
    }
}

fn midnight(zone: Tz, date: NaiveDate) -> i64 {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    zone.from_local_datetime(&naive)
        .earliest()
        // Midnight skipped by a clock change: the first instant of that day.
        .or_else(|| {
            zone.from_local_datetime(&(naive + Duration::hours(1)))
                .earliest()
        })
        .map_or(naive.and_utc().timestamp_millis(), |t| t.timestamp_millis())
}

pub(crate) fn local_date(zone: Tz, millis: i64) -> NaiveDate {
    zone.timestamp_millis_opt(millis)
        .single()
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

fn first_of_month(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

fn next_month(date: NaiveDate) -> NaiveDate {
    date.checked_add_months(chrono::Months::new(1))
        .unwrap_or(date)
}

/// The period boundaries (UTC millis) covering `[from, to)`.
fn boundaries(zone: Tz, period: Period, from: i64, to: i64) -> Result<Vec<i64>, KpiError> {
    if from >= to {
        return Err(KpiError::invalid("to", "must lie after from"));
    }
    let first = local_date(zone, from);
    let mut date = match period {
        Period::Day => first,
        Period::Week => first - Duration::days(i64::from(first.weekday().num_days_from_monday())),
        Period::Month => first_of_month(first),
    };
    let mut out = vec![midnight(zone, date)];
    while out.last().is_some_and(|&b| b < to) {
        date = match period {
            Period::Day => date + Duration::days(1),
            Period::Week => date + Duration::days(7),
            Period::Month => next_month(date),
        };
        out.push(midnight(zone, date));
        if out.len() > MAX_PERIODS + 1 {
            return Err(KpiError::invalid(
                "to",
                format!("at most {MAX_PERIODS} periods per report"),
            ));
        }
    }
    Ok(out)
}

/// Calls `each` with the spells of every contact of `workspace` that has any, reading the
/// raw events page by page.
async fn for_each_contact(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    rule: &Rule,
    mut each: impl FnMut(i64, Vec<Spell>),
) -> Result<(), KpiError> {
    let backend = db.get_database_backend();
    let mut after = i64::MIN;
    loop {
        let mut values = Vec::new();
        let (w, kinds) = workspace_and_kinds(backend, &mut values, workspace, rule);
        let a = param(backend, &mut values, after.into());
        let sql = format!(
            "SELECT e.contact_id, e.kind, e.occurred_at FROM events e \
             WHERE e.workspace_id = {w} AND e.kind IN ({}) AND e.contact_id > {a} \
             ORDER BY e.contact_id, e.occurred_at, e.id LIMIT {PAGE}",
            kinds
        );
        let mut events =
            read_events(db, Statement::from_sql_and_values(backend, sql, values)).await?;
        let full = events.len() == PAGE;
        let Some(&(last_contact, _, _)) = events.last() else {
            return Ok(());
        };
        let first_contact = events.first().map_or(last_contact, |e| e.0);
        // A full page may end inside a contact: that contact is read again with the next page,
        // unless it is the only one, which then is read on its own.
        let upto = if full && first_contact != last_contact {
            events.retain(|e| e.0 != last_contact);
            events.last().map_or(last_contact, |e| e.0)
        } else if full {
            events = contacts_events(db, workspace, rule, &[last_contact]).await?;
            last_contact
        } else {
            last_contact
        };
        for_each_group(&events, |contact, mut mine| {
            let spells = rule.spells(&mut mine);
            if !spells.is_empty() {
                each(contact, spells);
            }
        });
        if !full {
            return Ok(());
        }
        after = upto;
    }
}

/// The parameters every query of the rule's events starts with: the workspace's placeholder
/// and the list of the rule's kinds' placeholders, appended to `values`.
fn workspace_and_kinds(
    backend: DbBackend,
    values: &mut Vec<Value>,
    workspace: WorkspaceId,
    rule: &Rule,
) -> (String, String) {
    let w = param(backend, values, workspace.0.into());
    let kinds: Vec<String> = rule
        .kinds()
        .into_iter()
        .map(|k| param(backend, values, k.into()))
        .collect();
    (w, kinds.join(", "))
}

/// The rows of a query of events' `contact_id`, `occurred_at` and `kind`, in its order.
async fn read_events(
    db: &impl ConnectionTrait,
    query: Statement,
) -> Result<Vec<(i64, i64, String)>, KpiError> {
    let mut out = Vec::new();
    for row in db.query_all_raw(query).await? {
        out.push((
            row.try_get("", "contact_id")?,
            row.try_get("", "occurred_at")?,
            row.try_get("", "kind")?,
        ));
    }
    Ok(out)
}

/// Calls `each` with the events of each contact of `events` (ordered by contact).
fn for_each_group(events: &[(i64, i64, String)], mut each: impl FnMut(i64, Vec<(i64, String)>)) {
    let mut start = 0;
    while start < events.len() {
        let contact = events[start].0;
        let end = events[start..]
            .iter()
            .position(|e| e.0 != contact)
            .map_or(events.len(), |p| start + p);
        each(
            contact,
            events[start..end]
                .iter()
                .map(|e| (e.1, e.2.clone()))
                .collect(),
        );
        start = end;
    }
}

/// The events of `contacts` that the rule looks at, ordered by contact, time and id.
async fn contacts_events(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    rule: &Rule,
    contacts: &[i64],
) -> Result<Vec<(i64, i64, String)>, KpiError> {
    let backend = db.get_database_backend();
    let mut values = Vec::new();
    let (w, kinds) = workspace_and_kinds(backend, &mut values, workspace, rule);
    let ids: Vec<String> = contacts
        .iter()
        .map(|&c| param(backend, &mut values, c.into()))
        .collect();
    let sql = format!(
        "SELECT contact_id, kind, occurred_at FROM events WHERE workspace_id = {w} AND contact_id IN ({}) \
         AND kind IN ({}) ORDER BY contact_id, occurred_at, id",
        ids.join(", "),
        kinds
    );
    read_events(db, Statement::from_sql_and_values(backend, sql, values)).await
}

async fn write_spells(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    spells: &[(i64, Spell)],
) -> Result<(), KpiError> {
    let per_statement = clarion_contacts::rows_per_statement(db.get_database_backend(), 5);
    for chunk in spells.chunks(per_statement) {
        let mut insert = Query::insert();
        insert.into_table("kpi_spells").columns([
            "workspace_id",
            "contact_id",
            "started_at",
            "ended_at",
            "last",
        ]);
        for (contact, spell) in chunk {
            insert
                .values([
                    workspace.0.into(),
                    (*contact).into(),
                    spell.start.into(),
                    spell.end.into(),
                    i16::from(spell.last).into(),
                ])
                .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
        }
        db.execute(&insert).await?;
    }
    Ok(())
}

/// Brings the activity roll-up (`kpi_spells`) of contacts up to date after new events:
/// `since` holds each contact's earliest new event of a kind the rule looks at, and only its
/// spells from there on are computed again (see [`Rule::respelled`]), from its events at that
/// time or later. A batch of recent events so reads a few events per contact, not its
/// history. Runs inside the caller's transaction, which holds the contacts' refresh locks
/// (see [`crate::rollup::refresh_events`]).
///
/// # Errors
/// Database errors.
pub(crate) async fn refresh_spells_since(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    rule: &Rule,
    since: &[(i64, i64)],
) -> Result<(), KpiError> {
    if since.is_empty() {
        return Ok(());
    }
    let contacts: Vec<i64> = since.iter().map(|&(contact, _)| contact).collect();
    let mut stored = stored_spells(db, workspace, &contacts).await?;
    let mut events: HashMap<i64, Vec<(i64, String)>> = HashMap::new();
    for (contact, at, kind) in events_since(db, workspace, rule, since).await? {
        events.entry(contact).or_default().push((at, kind));
    }
    let mut gone: Vec<(i64, Vec<sea_orm::Value>)> = Vec::new();
    let mut written: Vec<(i64, Spell)> = Vec::new();
    for &(contact, at) in since {
        let mine = stored.remove(&contact).unwrap_or_default();
        let (from, fresh) = rule.respelled(
            &mine,
            at,
            events.get_mut(&contact).map_or(&mut [][..], |e| &mut e[..]),
        );
        gone.extend(
            mine.iter()
                .filter(|s| s.start >= from)
                .map(|s| (contact, vec![s.start.into()])),
        );
        written.extend(fresh.into_iter().map(|s| (contact, s)));
    }
    crate::delete_keys(db, "kpi_spells", &["started_at"], workspace, &gone).await?;
    write_spells(db, workspace, &written).await
}

/// The stored spells of `contacts`, each contact's in start order.
async fn stored_spells(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    contacts: &[i64],
) -> Result<HashMap<i64, Vec<Spell>>, KpiError> {
    let select = Query::select()
        .columns(["contact_id", "started_at", "ended_at", "last"])
        .from("kpi_spells")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .and_where(Expr::col("contact_id").is_in(contacts.iter().copied()))
        .order_by("contact_id", sea_orm::Order::Asc)
        .order_by("started_at", sea_orm::Order::Asc)
        .to_owned();
    let mut out: HashMap<i64, Vec<Spell>> = HashMap::new();
    for row in db.query_all(&select).await? {
        let last: i16 = row.try_get("", "last")?;
        out.entry(row.try_get("", "contact_id")?)
            .or_default()
            .push(Spell {
                start: row.try_get("", "started_at")?,
                end: row.try_get("", "ended_at")?,
                last: last != 0,
            });
    }
    Ok(out)
}

/// The events of the rule's kinds of each contact of `since` at or after its time, ordered
/// by contact, time and id: (contact, time, kind).
///
/// Each contact's events from its time on are one range of the index (contact, kind, time)
/// per kind, and the query is written so that both planners walk it contact by contact
/// whatever their statistics (measured on 400,000 events without `ANALYZE`): the unary plus
/// keeps them from looking each contact up in the index (workspace, kind, time) instead, a
/// range over every contact's events (18 s per batch on PostgreSQL, a minute on SQLite);
/// on PostgreSQL the `LATERAL ... OFFSET 0` keeps it from scanning the whole table into a
/// hash join.
async fn events_since(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    rule: &Rule,
    since: &[(i64, i64)],
) -> Result<Vec<(i64, i64, String)>, KpiError> {
    let backend = db.get_database_backend();
    let mut values = Vec::new();
    let (w, kinds) = workspace_and_kinds(backend, &mut values, workspace, rule);
    let sql = if backend == DbBackend::Postgres {
        let array = |items: Vec<Value>| {
            Value::Array(sea_orm::sea_query::ArrayType::BigInt, Some(Box::new(items)))
        };
        let contacts = param(
            backend,
            &mut values,
            array(since.iter().map(|s| s.0.into()).collect()),
        );
        let times = param(
            backend,
            &mut values,
            array(since.iter().map(|s| s.1.into()).collect()),
        );
        format!(
            "SELECT s.contact_id, e.kind, e.occurred_at \
             FROM unnest({contacts}::bigint[], {times}::bigint[]) AS s (contact_id, since) \
             CROSS JOIN LATERAL (SELECT e.id, e.kind, e.occurred_at FROM events e \
               WHERE e.contact_id = s.contact_id AND e.kind IN ({}) AND e.occurred_at >= s.since \
                 AND +e.workspace_id = {w} OFFSET 0) e \
             ORDER BY s.contact_id, e.occurred_at, e.id",
            kinds
        )
    } else {
        let rows: Vec<String> = since
            .iter()
            .map(|&(contact, at)| {
                let c = param(backend, &mut values, contact.into());
                format!("({c}, {})", param(backend, &mut values, at.into()))
            })
            .collect();
        format!(
            "WITH s (contact_id, since) AS (VALUES {}) \
             SELECT e.contact_id, e.kind, e.occurred_at FROM s \
             JOIN events e ON e.contact_id = s.contact_id AND e.occurred_at >= s.since \
             WHERE +e.workspace_id = {w} AND e.kind IN ({}) \
             ORDER BY e.contact_id, e.occurred_at, e.id",
            rows.join(", "),
            kinds
        )
    };
    read_events(db, Statement::from_sql_and_values(backend, sql, values)).await
}

/// Computes the activity roll-up of every contact of `workspace` again from the raw events
/// (after its churn settings changed, or to fill it for events loaded around ingestion).
/// Ingestion's roll-up refreshes wait meanwhile.
///
/// # Errors
/// Database errors; nothing is changed then.
pub async fn rebuild_spells(
    db: &sea_orm::DatabaseConnection,
    workspace: WorkspaceId,
) -> Result<(), KpiError> {
    let rule = Rule::new(&settings::get(db, workspace).await?);
    let txn = clarion_contacts::begin_write(db).await?;
    crate::rollup::lock_for_build(&txn).await?;
    let delete = Query::delete()
        .from_table("kpi_spells")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    txn.execute(&delete).await?;
    let mut pending: Vec<(i64, Spell)> = Vec::new();
    let mut batches: Vec<Vec<(i64, Spell)>> = Vec::new();
    // Spells are written page by page: the reader borrows the transaction, so full batches
    // wait in `batches` until its page is done.
    let mut after_page = |contact: i64, spells: Vec<Spell>| {
        pending.extend(spells.into_iter().map(|s| (contact, s)));
        if pending.len() >= 20_000 {
            batches.push(std::mem::take(&mut pending));
        }
    };
    for_each_contact(&txn, workspace, &rule, &mut after_page).await?;
    batches.push(pending);
    for batch in batches {
        write_spells(&txn, workspace, &batch).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// The stored activity roll-up of `workspace` and the same spells computed from the raw
/// events now, both ordered by contact and start: equal when the roll-up is current.
///
/// # Errors
/// Database errors.
pub async fn spells_against_events(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<
    (
        Vec<(i64, i64, Option<i64>, bool)>,
        Vec<(i64, i64, Option<i64>, bool)>,
    ),
    KpiError,
> {
    let rule = Rule::new(&settings::get(db, workspace).await?);
    let mut computed = Vec::new();
    for_each_contact(db, workspace, &rule, |contact, spells| {
        computed.extend(
            spells
                .into_iter()
                .map(|s| (contact, s.start, s.end, s.last)),
        );
    })
    .await?;
    let select = Query::select()
        .columns(["contact_id", "started_at", "ended_at", "last"])
        .from("kpi_spells")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .order_by("contact_id", sea_orm::Order::Asc)
        .order_by("started_at", sea_orm::Order::Asc)
        .to_owned();
    let mut stored = Vec::new();
    for row in db.query_all(&select).await? {
        let last: i16 = row.try_get("", "last")?;
        stored.push((
            row.try_get("", "contact_id")?,
            row.try_get("", "started_at")?,
            row.try_get("", "ended_at")?,
            last != 0,
        ));
    }
    Ok((stored, computed))
}

async fn segment_id(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    slug: Option<&str>,
) -> Result<Option<i64>, KpiError> {
    let Some(slug) = slug else {
        return Ok(None);
    };
    let backend = db.get_database_backend();
    let mut values = Vec::new();
    let w = param(backend, &mut values, workspace.0.into());
    let s = param(backend, &mut values, slug.into());
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            format!("SELECT id FROM segments WHERE workspace_id = {w} AND slug = {s}"),
            values,
        ))
        .await?
        .ok_or_else(|| KpiError::NotFound(format!("segment {slug:?}")))?;
    Ok(Some(row.try_get("", "id")?))
}

/// The parts of a spell query every report shares: the workspace, the optional segment and
/// "still active now", for spells aliased `sp`.
struct SpellSql {
    /// `sp.workspace_id = ... AND` the segment condition.
    filter: String,
    /// The spell is open when the report is made.
    open: String,
}

impl SpellSql {
    fn new(
        backend: DbBackend,
        values: &mut Vec<Value>,
        workspace: WorkspaceId,
        segment: Option<i64>,
        now: i64,
    ) -> Self {
        let w = param(backend, values, workspace.0.into());
        let members = match segment {
            Some(id) => {
                let s = param(backend, values, id.into());
                format!(
                    " AND sp.contact_id IN (SELECT contact_id FROM segment_memberships WHERE segment_id = {s} AND exited_at IS NULL)"
                )
            }
            None => String::new(),
        };
        let n = param(backend, values, now.into());
        SpellSql {
            filter: format!("sp.workspace_id = {w}{members}"),
            open: format!("(sp.ended_at IS NULL OR (sp.last = 1 AND sp.ended_at > {n}))"),
        }
    }
}

/// SQL for how many of `bounds` lie below `x` (`strict`), or at or below it: PostgreSQL's
/// `width_bucket` (a binary search over the array), on SQLite a `CASE` over the bounds. The
/// bounds are the report's own integers, written into the SQL.
fn bounds_below(backend: DbBackend, x: &str, bounds: &[i64], strict: bool) -> String {
    if backend == DbBackend::Postgres {
        let list: Vec<String> = bounds.iter().map(i64::to_string).collect();
        // For integers, "below x" is "at or below x - 1".
        let x = if strict {
            format!("{x} - 1")
        } else {
            x.to_owned()
        };
        return format!("width_bucket({x}, ARRAY[{}]::BIGINT[])", list.join(","));
    }
    let op = if strict { "<=" } else { "<" };
    let mut sql = String::from("CASE");
    for (i, bound) in bounds.iter().enumerate() {
        sql.push_str(&format!(" WHEN {x} {op} {bound} THEN {i}"));
    }
    sql.push_str(&format!(" ELSE {} END", bounds.len()));
    sql
}

/// The running totals of a difference array: how many are counted at each index.
fn running_counts(steps: &[i64]) -> impl Iterator<Item = u64> + '_ {
    steps.iter().scan(0i64, |running, step| {
        *running += step;
        Some(u64::try_from(*running).unwrap_or(0))
    })
}

fn count(row: &sea_orm::QueryResult, name: &str) -> Result<u64, KpiError> {
    let v: Option<i64> = row.try_get("", name)?;
    Ok(u64::try_from(v.unwrap_or(0)).unwrap_or(0))
}

fn index(row: &sea_orm::QueryResult, name: &str) -> Result<usize, KpiError> {
    let v: i64 = row.try_get("", name)?;
    Ok(usize::try_from(v).unwrap_or(usize::MAX))
}

async fn rule(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<(ChurnDefinition, Tz, String), KpiError> {
    let kpi = settings::get(db, workspace).await?;
    let zone = kpi.zone()?;
    Ok((kpi.churn, zone, kpi.time_zone))
}

/// Churn per `period` over `[from, to)` for the current members of `segment` (every contact
/// when `None`), from the activity roll-up.
///
/// # Errors
/// [`KpiError::Invalid`] for a period that ends before it starts or spans more than 1,000
/// periods; [`KpiError::NotFound`] for an unknown segment; database errors.
#[tracing::instrument(skip_all)]
pub async fn churn(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    segment: Option<&str>,
    period: Period,
    from: Timestamp,
    to: Timestamp,
) -> Result<ChurnReport, KpiError> {
    let (definition, zone, time_zone) = rule(db, workspace).await?;
    let bounds = boundaries(zone, period, from.millis(), to.millis())?;
    let segment_id = segment_id(db, workspace, segment).await?;
    let now = Timestamp::now().millis();
    let n = bounds.len() - 1;
    let mut churned = vec![0u64; n];
    let mut became = vec![0u64; n];
    let backend = db.get_database_backend();

    // One pass over the spells that meet the report: each spell is active at the starts of a
    // run of consecutive periods (from the first start at or after its own start, up to the
    // last start before its end), so it is grouped by where its start and end fall among
    // the boundaries and the runs are added up here.
    let mut values = Vec::new();
    let spell = SpellSql::new(backend, &mut values, workspace, segment_id, now);
    let (filter, open) = (&spell.filter, &spell.open);
    let below = |x: &str, strict: bool| bounds_below(backend, x, &bounds, strict);
    let sql = format!(
        "SELECT CAST(a AS BIGINT) AS a, CAST(e AS BIGINT) AS e, CAST(f AS BIGINT) AS f, \
                CAST(o AS BIGINT) AS o, CAST(COUNT(*) AS BIGINT) AS n \
         FROM (SELECT {} AS a, {} AS e, {} AS f, CASE WHEN {open} THEN 1 ELSE 0 END AS o \
               FROM kpi_spells sp \
               WHERE {filter} AND sp.started_at <= {} AND ({open} OR sp.ended_at > {})) AS runs \
         GROUP BY a, e, f, o",
        below("sp.started_at", true),
        below("sp.ended_at", true),
        below("sp.ended_at", false),
        bounds[n - 1],
        bounds[0],
    );
    // `diff[i]` is how many more spells are active at period i's start than at i - 1's.
    let mut diff = vec![0i64; n + 1];
    for row in db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
    {
        let spells: i64 = row.try_get("", "n")?;
        let first = index(&row, "a")?.min(n);
        let still_open = row.try_get::<i64>("", "o")? == 1;
        // How many boundaries lie before the end, and at or before it: the two differ when
        // the spell ends exactly on one, and then it is neither active at that start nor
        // churned in the period before it.
        let before_end: Option<i64> = row.try_get("", "e")?;
        let through_end: Option<i64> = row.try_get("", "f")?;
        let end = match (still_open, before_end) {
            (false, Some(e)) => usize::try_from(e).unwrap_or(0),
            _ => n + 1,
        };
        let last = end.min(n);
        if first >= last {
            continue;
        }
        diff[first] += spells;
        diff[last] -= spells;
        // A spell ending before the last period's end churns in the period it ends in.
        if end <= n && before_end == through_end {
            churned[end - 1] += u64::try_from(spells).unwrap_or(0);
        }
    }
    let active: Vec<u64> = running_counts(&diff[..n]).collect();

    // Contacts with a spell starting in each period.
    let mut values = Vec::new();
    let spell = SpellSql::new(backend, &mut values, workspace, segment_id, now);
    let filter = &spell.filter;
    let sql = format!(
        "SELECT CAST({} - 1 AS BIGINT) AS i, CAST(COUNT(DISTINCT sp.contact_id) AS BIGINT) AS became \
         FROM kpi_spells sp WHERE {filter} AND sp.started_at >= {} AND sp.started_at < {} GROUP BY 1",
        below("sp.started_at", false),
        bounds[0],
        bounds[n],
    );
    for row in db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
    {
        let i = index(&row, "i")?;
        if i < n {
            became[i] = count(&row, "became")?;
        }
    }
    Ok(ChurnReport {
        segment: segment.map(str::to_owned),
        definition,
        period,
        time_zone,
        periods: (0..n)
            .map(|p| ChurnPeriod {
                start: Timestamp::from_millis(bounds[p]),
                end: Timestamp::from_millis(bounds[p + 1]),
                active_at_start: active[p],
                churned: churned[p],
                churn_rate: crate::stats::rate(churned[p], active[p]),
                became_active: became[p],
            })
            .collect(),
    })
}

/// Retention of the monthly cohorts of first activity from `from`'s month on, over `months`
/// months (1 to 120), from the activity roll-up.
///
/// # Errors
/// [`KpiError::Invalid`] for `months` out of range; [`KpiError::NotFound`] for an unknown
/// segment; database errors.
#[tracing::instrument(skip_all)]
pub async fn retention(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    segment: Option<&str>,
    from: Timestamp,
    months: u32,
) -> Result<RetentionReport, KpiError> {
    if !(1..=120).contains(&months) {
        return Err(KpiError::invalid(
            "months",
            format!("must be 1 to 120, not {months}"),
        ));
    }
    let (definition, zone, time_zone) = rule(db, workspace).await?;
    let segment_id = segment_id(db, workspace, segment).await?;
    let mut date = first_of_month(local_date(zone, from.millis()));
    let mut names = Vec::new();
    let mut bounds = vec![midnight(zone, date)];
    for _ in 0..months {
        names.push(format!("{:04}-{:02}", date.year(), date.month()));
        date = next_month(date);
        bounds.push(midnight(zone, date));
    }
    let m = months as usize;
    let mut size = vec![0u64; m];
    // Per cohort, `diff[k]` is how many more of its contacts are active in month k than in
    // month k - 1.
    let mut diff = vec![vec![0i64; m + 1]; m];
    let backend = db.get_database_backend();
    let mut values = Vec::new();
    let spell = SpellSql::new(
        backend,
        &mut values,
        workspace,
        segment_id,
        Timestamp::now().millis(),
    );
    let (filter, open) = (&spell.filter, &spell.open);
    let below = |x: &str, strict: bool| bounds_below(backend, x, &bounds, strict);
    // One ordered pass over the spells. A spell overlaps the months from the one it starts
    // in to the last one starting before it ends: a run `[a, e)`. A contact is in a month
    // when any of its spells overlaps it; its spells follow one another without
    // overlapping, so the spells overlapping one month are consecutive, and counting each
    // spell's run minus the months it shares with the spell before it (`[a, q)`) counts
    // the contact once per month. The cohort is the month of the first spell's start.
    let sql = format!(
        "SELECT CAST(cohort AS BIGINT) AS cohort, CAST(a AS BIGINT) AS a, CAST(e AS BIGINT) AS e, \
                CAST(q AS BIGINT) AS q, CAST(p AS BIGINT) AS p, CAST(COUNT(*) AS BIGINT) AS n \
         FROM (SELECT {} - 1 AS cohort, {} - 1 AS a, \
                      CASE WHEN o = 1 THEN {m} ELSE {} END AS e, {} AS q, \
                      CASE WHEN prev_end IS NULL THEN 0 ELSE 1 END AS p \
               FROM (SELECT sp.started_at AS started_at, sp.ended_at AS ended_at, \
                            CASE WHEN {open} THEN 1 ELSE 0 END AS o, \
                            MIN(sp.started_at) OVER (PARTITION BY sp.contact_id) AS first, \
                            LAG(sp.ended_at) OVER (PARTITION BY sp.contact_id ORDER BY sp.started_at) AS prev_end \
                     FROM kpi_spells sp WHERE {filter}) AS spells \
               WHERE first >= {} AND first < {} AND started_at < {}) AS runs \
         GROUP BY cohort, a, e, q, p",
        below("first", false),
        below("started_at", false),
        below("ended_at", true),
        below("prev_end", true),
        bounds[0],
        bounds[m],
        bounds[m],
    );
    for row in db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
    {
        let cohort = index(&row, "cohort")?;
        if cohort >= m {
            continue;
        }
        let spells: i64 = row.try_get("", "n")?;
        let has_prev = row.try_get::<i64>("", "p")? == 1;
        if !has_prev {
            size[cohort] += u64::try_from(spells).unwrap_or(0);
        }
        // Months are counted from the cohort's on, up to the table's last.
        let start = index(&row, "a")?.clamp(cohort, m);
        let end = index(&row, "e")?.min(m);
        if start < end {
            diff[cohort][start] += spells;
            diff[cohort][end] -= spells;
        }
        if has_prev {
            let shared = index(&row, "q")?.min(end);
            if start < shared {
                diff[cohort][start] -= spells;
                diff[cohort][shared] += spells;
            }
        }
    }
    let retained: Vec<Vec<u64>> = diff
        .iter()
        .enumerate()
        .map(|(cohort, steps)| running_counts(&steps[..m]).skip(cohort).collect())
        .collect();
    Ok(RetentionReport {
        segment: segment.map(str::to_owned),
        definition,
        time_zone,
        cohorts: (0..m)
            .map(|i| {
                let counts: Vec<u64> = retained[i][..m - i].to_vec();
                Cohort {
                    month: names[i].clone(),
                    size: size[i],
                    shares: counts
                        .iter()
                        .map(|&r| crate::stats::rate(r, size[i]))
                        .collect(),
                    retained: counts,
                }
            })
            .collect(),
    })
}

/// The churn report as CSV: one row per period (`start,end,active_at_start,churned,
/// churn_rate,became_active`; an empty rate cell is `null`).
///
/// # Errors
/// [`KpiError::Csv`] (never for a report this module made).
pub fn churn_csv(report: &ChurnReport) -> Result<String, KpiError> {
    let mut rows = vec![
        [
            "start",
            "end",
            "active_at_start",
            "churned",
            "churn_rate",
            "became_active",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for p in &report.periods {
        rows.push(vec![
            p.start.to_rfc3339(),
            p.end.to_rfc3339(),
            p.active_at_start.to_string(),
            p.churned.to_string(),
            p.churn_rate.map(|r| r.to_string()).unwrap_or_default(),
            p.became_active.to_string(),
        ]);
    }
    crate::write_csv(rows)
}

/// The retention table as CSV: one row per cohort (`cohort,size,month_0,month_1,...` with
/// the shares; cells past the table's last month are empty).
///
/// # Errors
/// [`KpiError::Csv`] (never for a report this module made).
pub fn retention_csv(report: &RetentionReport) -> Result<String, KpiError> {
    let width = report.cohorts.len();
    let mut header = vec!["cohort".to_owned(), "size".to_owned()];
    header.extend((0..width).map(|k| format!("month_{k}")));
    let mut rows = vec![header];
    for cohort in &report.cohorts {
        let mut row = vec![cohort.month.clone(), cohort.size.to_string()];
        for k in 0..width {
            row.push(
                cohort
                    .shares
                    .get(k)
                    .copied()
                    .flatten()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            );
        }
        rows.push(row);
    }
    crate::write_csv(rows)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    fn rule(definition: ChurnDefinition) -> Rule {
        Rule::new(&settings::KpiSettings {
            churn: definition,
            inactivity_days: 3,
            ..settings::KpiSettings::default()
        })
    }

    /// A contact's events: (time, kind).
    type Events = Vec<(i64, String)>;

    /// Random histories on a coarse clock (so events often share an instant and fall
    /// exactly on spell ends), split into old events and a new batch at random.
    fn histories(seed: u64) -> impl Iterator<Item = (Events, Events)> {
        let mut rng = StdRng::seed_from_u64(seed);
        let kinds = [
            "purchase",
            "subscription_started",
            "subscription_cancelled",
            "page_view",
        ];
        (0..2_000).map(move |_| {
            let n = rng.random_range(0..14);
            let mut old = Vec::new();
            let mut new = Vec::new();
            for _ in 0..n {
                let event = (
                    rng.random_range(0..30) * DAY_MS / 2,
                    kinds[rng.random_range(0..kinds.len())].to_owned(),
                );
                if rng.random_bool(0.3) {
                    new.push(event);
                } else {
                    old.push(event);
                }
            }
            old.sort_by_key(|e| e.0);
            (old, new)
        })
    }

    #[test]
    fn spells_computed_again_from_the_earliest_new_event_equal_those_of_the_whole_history() {
        for definition in [ChurnDefinition::Inactivity, ChurnDefinition::Cancel] {
            let rule = rule(definition);
            let kinds = rule.kinds();
            for (old, new) in histories(7) {
                let mut all: Vec<(i64, String)> = old.iter().chain(&new).cloned().collect();
                all.sort_by_key(|e| e.0);
                let expected = rule.spells(&mut all.clone());
                let Some(since) = new
                    .iter()
                    .filter(|e| kinds.contains(&e.1))
                    .map(|e| e.0)
                    .min()
                else {
                    continue;
                };
                let stored = rule.spells(&mut old.clone());
                let mut tail: Vec<(i64, String)> = all
                    .iter()
                    .filter(|e| e.0 >= since && kinds.contains(&e.1))
                    .cloned()
                    .collect();
                let (from, fresh) = rule.respelled(&stored, since, &mut tail);
                let mut got: Vec<Spell> = stored.into_iter().filter(|s| s.start < from).collect();
                got.extend(fresh);
                assert_eq!(
                    got, expected,
                    "{definition:?}: old {old:?}, new {new:?}, since {since}"
                );
            }
        }
    }
}
