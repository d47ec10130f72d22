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

use chrono::{Datelike, Duration, NaiveDate, TimeZone as _};
use chrono_tz::Tz;
use clarion_model::{Timestamp, WorkspaceId};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{KpiError, settings, settings::ChurnDefinition};

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

/// The active spells of one contact: `[start, end)`, `end = None` while active.
type Spells = Vec<(i64, Option<i64>)>;

/// How events make spells.
struct Rule {
    definition: ChurnDefinition,
    activity: String,
    start: String,
    cancel: String,
    inactivity_ms: i64,
    now: i64,
}

impl Rule {
    /// The spells of a contact from its events (time order, starts before cancels at the
    /// same instant).
    fn spells(&self, events: &mut [(i64, String)]) -> Spells {
        let mut spells = Spells::new();
        match self.definition {
            ChurnDefinition::Inactivity => {
                let mut current: Option<(i64, i64)> = None;
                for (t, _) in events.iter().filter(|(_, k)| *k == self.activity) {
                    current = match current {
                        Some((start, last)) if *t <= last + self.inactivity_ms => Some((start, *t)),
                        Some((start, last)) => {
                            spells.push((start, Some(last + self.inactivity_ms)));
                            Some((*t, *t))
                        }
                        None => Some((*t, *t)),
                    };
                }
                if let Some((start, last)) = current {
                    let end = last + self.inactivity_ms;
                    spells.push((start, (end <= self.now).then_some(end)));
                }
            }
            ChurnDefinition::Cancel => {
                events.sort_by_key(|(t, k)| (*t, *k == self.cancel));
                let mut active: Option<i64> = None;
                for (t, kind) in events.iter() {
                    if active.is_none() && (*kind == self.start || *kind == self.activity) {
                        active = Some(*t);
                    } else if *kind == self.cancel
                        && let Some(start) = active.take()
                        // Started and cancelled at the same instant: never active.
                        && start < *t
                    {
                        spells.push((start, Some(*t)));
                    }
                }
                if let Some(start) = active {
                    spells.push((start, None));
                }
            }
        }
        spells
    }

    fn kinds(&self) -> Vec<String> {
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

fn local_date(zone: Tz, millis: i64) -> NaiveDate {
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

fn param(backend: DbBackend, values: &mut Vec<Value>, value: Value) -> String {
    values.push(value);
    match backend {
        DbBackend::Postgres => format!("${}", values.len()),
        _ => format!("?{}", values.len()),
    }
}

/// Calls `each` with the spells of every contact (of `segment` when given) that has any.
async fn for_each_contact(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    segment: Option<i64>,
    rule: &Rule,
    mut each: impl FnMut(&Spells),
) -> Result<(), KpiError> {
    let backend = db.get_database_backend();
    let mut after = i64::MIN;
    loop {
        let mut values = Vec::new();
        let w = param(backend, &mut values, workspace.0.into());
        let kinds: Vec<String> = rule
            .kinds()
            .into_iter()
            .map(|k| param(backend, &mut values, k.into()))
            .collect();
        let a = param(backend, &mut values, after.into());
        let members = match segment {
            Some(id) => {
                let s = param(backend, &mut values, id.into());
                format!(
                    " AND e.contact_id IN (SELECT contact_id FROM segment_memberships WHERE segment_id = {s} AND exited_at IS NULL)"
                )
            }
            None => String::new(),
        };
        let sql = format!(
            "SELECT e.contact_id, e.kind, e.occurred_at FROM events e \
             WHERE e.workspace_id = {w} AND e.kind IN ({}) AND e.contact_id > {a}{members} \
             ORDER BY e.contact_id, e.occurred_at, e.id LIMIT {PAGE}",
            kinds.join(", ")
        );
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        let full = rows.len() == PAGE;
        let mut events: Vec<(i64, i64, String)> = Vec::with_capacity(rows.len());
        for row in rows {
            events.push((
                row.try_get("", "contact_id")?,
                row.try_get("", "occurred_at")?,
                row.try_get("", "kind")?,
            ));
        }
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
            events = contact_events(db, workspace, rule, last_contact).await?;
            last_contact
        } else {
            last_contact
        };
        let mut start = 0;
        while start < events.len() {
            let contact = events[start].0;
            let end = events[start..]
                .iter()
                .position(|e| e.0 != contact)
                .map_or(events.len(), |p| start + p);
            let mut mine: Vec<(i64, String)> = events[start..end]
                .iter()
                .map(|e| (e.1, e.2.clone()))
                .collect();
            let spells = rule.spells(&mut mine);
            if !spells.is_empty() {
                each(&spells);
            }
            start = end;
        }
        if !full {
            return Ok(());
        }
        after = upto;
    }
}

async fn contact_events(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    rule: &Rule,
    contact: i64,
) -> Result<Vec<(i64, i64, String)>, KpiError> {
    let backend = db.get_database_backend();
    let mut values = Vec::new();
    let w = param(backend, &mut values, workspace.0.into());
    let c = param(backend, &mut values, contact.into());
    let kinds: Vec<String> = rule
        .kinds()
        .into_iter()
        .map(|k| param(backend, &mut values, k.into()))
        .collect();
    let sql = format!(
        "SELECT contact_id, kind, occurred_at FROM events WHERE workspace_id = {w} AND contact_id = {c} \
         AND kind IN ({}) ORDER BY occurred_at, id",
        kinds.join(", ")
    );
    let mut out = Vec::new();
    for row in db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
    {
        out.push((
            contact,
            row.try_get("", "occurred_at")?,
            row.try_get("", "kind")?,
        ));
    }
    Ok(out)
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

async fn rule(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<(Rule, Tz, String), KpiError> {
    let kpi = settings::get(db, workspace).await?;
    let zone = kpi.zone()?;
    Ok((
        Rule {
            definition: kpi.churn,
            activity: kpi.activity_event,
            start: kpi.start_event,
            cancel: kpi.cancel_event,
            inactivity_ms: i64::from(kpi.inactivity_days) * DAY_MS,
            now: Timestamp::now().millis(),
        },
        zone,
        kpi.time_zone,
    ))
}

/// Churn per `period` over `[from, to)` for the current members of `segment` (every contact
/// when `None`).
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
    let (rule, zone, time_zone) = rule(db, workspace).await?;
    let bounds = boundaries(zone, period, from.millis(), to.millis())?;
    let segment_id = segment_id(db, workspace, segment).await?;
    let n = bounds.len() - 1;
    let mut active = vec![0u64; n];
    let mut churned = vec![0u64; n];
    let mut became = vec![0u64; n];
    for_each_contact(db, workspace, segment_id, &rule, |spells| {
        for (p, pair) in bounds.windows(2).enumerate() {
            let (s, e) = (pair[0], pair[1]);
            if let Some(&(_, end)) = spells
                .iter()
                .find(|(a, c)| *a <= s && c.is_none_or(|c| s < c))
            {
                active[p] += 1;
                if end.is_some_and(|c| c < e) {
                    churned[p] += 1;
                }
            }
            became[p] += u64::from(spells.iter().any(|(a, _)| s <= *a && *a < e));
        }
    })
    .await?;
    Ok(ChurnReport {
        segment: segment.map(str::to_owned),
        definition: rule.definition,
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
/// months (1 to 120).
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
    let (rule, zone, time_zone) = rule(db, workspace).await?;
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
    let mut retained = vec![vec![0u64; m]; m];
    for_each_contact(db, workspace, segment_id, &rule, |spells| {
        let Some(&(first, _)) = spells.first() else {
            return;
        };
        let Some(cohort) = (0..m).find(|&i| bounds[i] <= first && first < bounds[i + 1]) else {
            return;
        };
        size[cohort] += 1;
        for k in 0..(m - cohort) {
            let (s, e) = (bounds[cohort + k], bounds[cohort + k + 1]);
            if spells
                .iter()
                .any(|(a, c)| *a < e && c.is_none_or(|c| c > s))
            {
                retained[cohort][k] += 1;
            }
        }
    })
    .await?;
    Ok(RetentionReport {
        segment: segment.map(str::to_owned),
        definition: rule.definition,
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

fn write_csv(rows: Vec<Vec<String>>) -> Result<String, KpiError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    for row in rows {
        out.write_record(&row)
            .map_err(|e| KpiError::Csv(e.to_string()))?;
    }
    let bytes = out.into_inner().map_err(|e| KpiError::Csv(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| KpiError::Csv(e.to_string()))
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
    write_csv(rows)
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
    write_csv(rows)
}
