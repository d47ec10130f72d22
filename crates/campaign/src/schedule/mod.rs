//! Schedules: when a campaign launches by itself, once at a moment or again and again by a
//! cron expression in a time zone.
//!
//! * [`ScheduleInput`] is what the API takes; [`Plan::parse`] checks it once (every problem a
//!   422 naming its field) and the rest of the code trusts the [`Plan`].
//! * [`cron`]: the expressions and their fire times, daylight-saving changes included.
//! * [`store`]: a campaign's schedule, its next fire time and its history of firings; the
//!   tables are the source of truth.
//! * [`fire`]: the firing itself, with an injectable [`fire::Clock`], the Redis lease that
//!   makes one scheduler process fire, and the unique run key behind it.

pub mod cron;
pub mod fire;
pub mod quiet;
pub mod store;
pub mod waves;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{CampaignError, validate::Issue};
pub use cron::{Cron, CronError};

/// Most fire times a preview lists.
pub const MAX_PREVIEW: u32 = 100;

/// A campaign's schedule as written: either `at` (one-off) or `cron` (recurring).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    /// One-off: the moment to launch, RFC 3339 with an offset (`2027-03-23T10:00:00+01:00`) or
    /// a local date and time read in `time_zone` (`2027-03-23T10:00`). Must be in the future.
    #[schema(example = "2027-03-23T10:00")]
    pub at: Option<String>,
    /// Recurring: five cron fields (minute hour day-of-month month day-of-week) read in
    /// `time_zone`, e.g. `0 9 * * MON`.
    #[schema(example = "0 9 * * MON", max_length = 200)]
    pub cron: Option<String>,
    /// An IANA time zone (default `UTC`). With `local_time`, the zone of contacts without one.
    #[schema(value_type = Option<clarion_model::TimeZone>, example = "Europe/Berlin")]
    pub time_zone: Option<String>,
    /// Read `at` / `cron` on each recipient's own clock (`contacts.time_zone`): the run
    /// fires when the first zone (UTC+14) reaches it and goes out in one wave per time zone,
    /// each due when its clock shows that time (up to 26 hours later). `at` is then a local
    /// date and time without an offset. Default false.
    pub local_time: Option<bool>,
    /// Recurring: no firing before this moment (RFC 3339).
    pub starts_at: Option<String>,
    /// Recurring: no firing after this moment (RFC 3339); after `starts_at`.
    pub ends_at: Option<String>,
    /// Recurring: stop after this many runs.
    #[schema(minimum = 1)]
    pub max_runs: Option<i64>,
    /// What to do with a slot missed while no scheduler ran: `run_once` (default: the latest
    /// missed slot runs once at start, earlier ones are skipped) or `skip` (all are skipped).
    pub catch_up: Option<CatchUp>,
}

/// What happens to slots missed while Clarion was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// The latest missed slot runs once when the scheduler starts; earlier ones are skipped.
    RunOnce,
    /// Missed slots are skipped; the next one runs on time.
    Skip,
}

impl CatchUp {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::RunOnce => "run_once",
            CatchUp::Skip => "skip",
        }
    }

    pub(crate) fn parse(value: &str) -> Option<Self> {
        match value {
            "run_once" => Some(CatchUp::RunOnce),
            "skip" => Some(CatchUp::Skip),
            _ => None,
        }
    }
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timing {
    Once(DateTime<Utc>),
    Recurring {
        cron: Cron,
        starts_at: Option<DateTime<Utc>>,
        ends_at: Option<DateTime<Utc>>,
        max_runs: Option<u64>,
    },
}

/// A checked schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub timing: Timing,
    pub zone: Tz,
    pub catch_up: CatchUp,
    /// Read on each recipient's clock; fire times are when the first zone reaches it.
    pub local_time: bool,
}

fn issue(field: &str, message: impl Into<String>) -> Issue {
    let mut issue = Issue::at(field, message);
    issue.field = Some(field.to_owned());
    issue
}

/// Reads an instant: RFC 3339 with an offset, or (when `local` is allowed) a local date and
/// time in `zone`. The error says what is wrong with the value.
fn instant(value: &str, zone: Tz, local: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value.trim()) {
        return Ok(at.with_timezone(&Utc));
    }
    if !local {
        return Err(format!(
            "{value:?} is not RFC 3339 with an offset, e.g. 2027-03-23T10:00:00Z"
        ));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(value.trim(), format) {
            return match zone.from_local_datetime(&naive) {
                chrono::LocalResult::Single(at) | chrono::LocalResult::Ambiguous(at, _) => {
                    Ok(at.with_timezone(&Utc))
                }
                chrono::LocalResult::None => Err(format!(
                    "{value} does not exist in {zone} (the clocks skip it)"
                )),
            };
        }
    }
    Err(format!(
        "{value:?} is neither RFC 3339 (2027-03-23T10:00:00+01:00) nor a local date and time (2027-03-23T10:00)"
    ))
}

/// Reads an IANA time zone name (default UTC); the error says what is wrong.
pub(crate) fn zone(value: Option<&str>) -> Result<Tz, String> {
    match value {
        None => Ok(Tz::UTC),
        Some(name) => name
            .trim()
            .parse::<Tz>()
            .map_err(|_| format!("{name:?} is not a known IANA time zone, e.g. Europe/Berlin")),
    }
}

impl Plan {
    /// Checks a schedule as written at `now`; every problem names its field.
    ///
    /// # Errors
    /// [`CampaignError::Invalid`] with one [`Issue`] per problem.
    pub fn parse(input: &ScheduleInput, now: DateTime<Utc>) -> Result<Plan, CampaignError> {
        let mut issues = Vec::new();
        let zone = zone(input.time_zone.as_deref()).unwrap_or_else(|problem| {
            issues.push(issue("time_zone", problem));
            Tz::UTC
        });
        let local_time = input.local_time.unwrap_or(false);
        // A local-time schedule is read on the clock of the first zone to reach it.
        let fire_zone = if local_time { waves::EARLIEST } else { zone };
        let timing = match (&input.at, &input.cron) {
            (Some(_), Some(_)) => {
                issues.push(issue(
                    "cron",
                    "give either at (one-off) or cron (recurring), not both",
                ));
                None
            }
            (None, None) => {
                issues.push(issue(
                    "cron",
                    "give at (a one-off moment) or cron (a recurring schedule)",
                ));
                None
            }
            (Some(at), None) => {
                for (field, given) in [
                    ("starts_at", input.starts_at.is_some()),
                    ("ends_at", input.ends_at.is_some()),
                    ("max_runs", input.max_runs.is_some()),
                ] {
                    if given {
                        issues.push(issue(field, "only a recurring schedule (cron) takes it"));
                    }
                }
                let parsed = if local_time && DateTime::parse_from_rfc3339(at.trim()).is_ok() {
                    Err(issue(
                        "at",
                        format!(
                            "{at:?} has an offset; with local_time give a local date and time, e.g. 2027-03-23T09:00"
                        ),
                    ))
                } else {
                    instant(at, fire_zone, true).map_err(|problem| issue("at", problem))
                };
                match parsed {
                    Ok(at) if at <= now => {
                        issues.push(issue(
                            "at",
                            format!(
                                "{} is in the past; a one-off schedule needs a moment after now ({})",
                                rfc3339(at),
                                rfc3339(now)
                            ),
                        ));
                        None
                    }
                    Ok(at) => Some(Timing::Once(at)),
                    Err(problem) => {
                        issues.push(problem);
                        None
                    }
                }
            }
            (None, Some(expression)) => recurring(input, expression, zone, &mut issues),
        };
        match timing {
            Some(timing) if issues.is_empty() => Ok(Plan {
                timing,
                zone,
                catch_up: input.catch_up.unwrap_or(CatchUp::RunOnce),
                local_time,
            }),
            _ => Err(CampaignError::Invalid(issues)),
        }
    }

    /// The first slot strictly after `after`, given that `fired` runs have been launched;
    /// `None` when the schedule has no more.
    #[must_use]
    pub fn next_after(&self, after: DateTime<Utc>, fired: u64) -> Option<DateTime<Utc>> {
        match &self.timing {
            Timing::Once(at) => (fired == 0 && *at > after).then_some(*at),
            Timing::Recurring {
                cron,
                starts_at,
                ends_at,
                max_runs,
            } => {
                if max_runs.is_some_and(|max| fired >= max) {
                    return None;
                }
                let from = match starts_at {
                    Some(start) if *start > after => *start - chrono::Duration::milliseconds(1),
                    _ => after,
                };
                let zone = if self.local_time {
                    waves::EARLIEST
                } else {
                    self.zone
                };
                let next = cron.next_after(from, zone)?;
                ends_at.is_none_or(|end| next <= end).then_some(next)
            }
        }
    }

    /// The next `count` fire times after `from`, assuming every one is launched.
    #[must_use]
    pub fn fire_times(&self, from: DateTime<Utc>, fired: u64, count: u32) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut at = from;
        let mut fired = fired;
        while out.len() < count as usize {
            let Some(next) = self.next_after(at, fired) else {
                break;
            };
            out.push(next);
            at = next;
            fired += 1;
        }
        out
    }
}

fn recurring(
    input: &ScheduleInput,
    expression: &str,
    zone: Tz,
    issues: &mut Vec<Issue>,
) -> Option<Timing> {
    let cron = Cron::parse(expression)
        .map_err(|CronError(message)| issues.push(issue("cron", message)))
        .ok();
    let bound = |field: &str, value: &Option<String>, issues: &mut Vec<Issue>| {
        value.as_deref().and_then(|v| {
            instant(v, zone, false)
                .map_err(|problem| issues.push(issue(field, problem)))
                .ok()
        })
    };
    let starts_at = bound("starts_at", &input.starts_at, issues);
    let ends_at = bound("ends_at", &input.ends_at, issues);
    if let (Some(start), Some(end)) = (starts_at, ends_at)
        && end <= start
    {
        issues.push(issue(
            "ends_at",
            format!(
                "{} is not after starts_at ({})",
                rfc3339(end),
                rfc3339(start)
            ),
        ));
    }
    let max_runs = match input.max_runs {
        Some(n) if n < 1 => {
            issues.push(issue(
                "max_runs",
                format!("{n} runs: give at least 1, or leave it out for no limit"),
            ));
            None
        }
        Some(n) => u64::try_from(n).ok(),
        None => None,
    };
    let cron = cron?;
    let timing = Timing::Recurring {
        cron,
        starts_at,
        ends_at,
        max_runs,
    };
    Some(timing)
}

/// An instant as the API writes fire times: RFC 3339 in UTC, whole seconds.
#[must_use]
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `POST /api/v1/schedules/preview`: the next fire times of a schedule not saved yet.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewInput {
    /// A recurring schedule's cron expression (or give `at`).
    #[schema(example = "0 9 * * MON", max_length = 200)]
    pub cron: Option<String>,
    /// A one-off moment (or give `cron`), as in a schedule.
    pub at: Option<String>,
    /// An IANA time zone (default `UTC`).
    #[schema(value_type = Option<clarion_model::TimeZone>, example = "Europe/Berlin")]
    pub time_zone: Option<String>,
    /// As in a schedule: fire times are when the first zone (UTC+14) reaches the time.
    pub local_time: Option<bool>,
    /// List fire times after this moment (RFC 3339; default now).
    #[schema(example = "2027-03-20T00:00:00Z")]
    pub from: Option<String>,
    /// How many fire times to list (1 to 100, default 5).
    #[schema(minimum = 1, maximum = 100)]
    pub count: Option<i64>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    #[schema(minimum = 1)]
    pub max_runs: Option<i64>,
}

/// The fire times a preview lists.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PreviewAnswer {
    /// In UTC, RFC 3339, in order.
    #[schema(example = json!(["2027-03-22T08:00:00Z", "2027-03-29T07:00:00Z"]))]
    pub fire_times: Vec<String>,
}

/// The next fire times of an unsaved schedule.
///
/// # Errors
/// [`CampaignError::Invalid`] naming the field of each problem.
pub fn preview(input: &PreviewInput, now: DateTime<Utc>) -> Result<PreviewAnswer, CampaignError> {
    let mut issues = Vec::new();
    let zone_for_from = zone(input.time_zone.as_deref()).unwrap_or(Tz::UTC);
    let from = match input.from.as_deref() {
        Some(value) => instant(value, zone_for_from, false)
            .map_err(|problem| issues.push(issue("from", problem)))
            .ok(),
        None => Some(now),
    };
    let count = match input.count {
        None => 5,
        Some(n) if (1..=i64::from(MAX_PREVIEW)).contains(&n) => u32::try_from(n).unwrap_or(5),
        Some(n) => {
            issues.push(issue("count", format!("{n}: give 1 to {MAX_PREVIEW}")));
            5
        }
    };
    let schedule = ScheduleInput {
        at: input.at.clone(),
        cron: input.cron.clone(),
        time_zone: input.time_zone.clone(),
        local_time: input.local_time,
        starts_at: input.starts_at.clone(),
        ends_at: input.ends_at.clone(),
        max_runs: input.max_runs,
        catch_up: None,
    };
    let plan = match Plan::parse(&schedule, now) {
        Ok(plan) => Some(plan),
        Err(CampaignError::Invalid(more)) => {
            issues.extend(more);
            None
        }
        Err(other) => return Err(other),
    };
    match (plan, from) {
        (Some(plan), Some(from)) if issues.is_empty() => Ok(PreviewAnswer {
            fire_times: plan
                .fire_times(from, 0, count)
                .into_iter()
                .map(rfc3339)
                .collect(),
        }),
        _ => Err(CampaignError::Invalid(issues)),
    }
}
