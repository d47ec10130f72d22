//! Cron expressions and their fire times in a time zone, computed here with chrono-tz.
//!
//! Five fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or JAN-DEC) and
//! day of week (0-7 or SUN-SAT, 0 and 7 both Sunday); each `*`, a value, a range `a-b`, a
//! step `*/n` or `a-b/n`, or a comma-separated list of these. When both day fields are
//! restricted, a day matching either fires (as in every Unix cron).
//!
//! Daylight-saving changes follow cronie (the cron of most Linux systems): a job at a set
//! hour whose local time does not exist that day (02:30 on a spring-forward day in
//! Europe/Berlin) fires once, at the moment the clocks jump (03:00 local); one whose local time
//! happens twice (01:30 on a fall-back day in America/New_York) fires once, at the first
//! occurrence. A job whose hour field is a wildcard or step (`*/15 * * * *`) runs by the
//! clock: times that do not exist are skipped and repeated ones fire both times. Clarion
//! computes these itself instead of asking tokio-cron-scheduler, which only wakes it up.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The fields of a cron expression, in order, as messages name them.
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// How far ahead fire times are looked for: long enough for `0 0 29 2 *` (a leap day).
const HORIZON_DAYS: i64 = 366 * 9;

/// Why a cron expression does not parse; the message names the position (1 to 5) and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

/// A parsed cron expression: the set of values each field allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    source: String,
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days: [bool; 32],
    months: [bool; 13],
    weekdays: [bool; 7],
    day_restricted: bool,
    weekday_restricted: bool,
    /// The hour field is `*` or a step over all hours: the job runs by the clock.
    hourly: bool,
}

impl Cron {
    /// Parses a five-field expression.
    ///
    /// # Errors
    /// A [`CronError`] naming the position and field of the first problem.
    pub fn parse(source: &str) -> Result<Cron, CronError> {
        let parts: Vec<&str> = source.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(CronError(format!(
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week); this one has {}",
                parts.len()
            )));
        }
        let mut sets = Vec::with_capacity(5);
        for (position, (part, &(name, min, max))) in parts.iter().zip(FIELDS.iter()).enumerate() {
            let names: &[&str] = match position {
                3 => &MONTHS,
                4 => &DAYS,
                _ => &[],
            };
            let set = field(part, min, max, names).map_err(|reason| {
                CronError(format!(
                    "position {} ({name}) {part:?}: {reason}",
                    position + 1
                ))
            })?;
            sets.push(set);
        }
        let values = |i: usize| -> Vec<u32> { sets.get(i).cloned().unwrap_or_default() };
        let mut days = [false; 32];
        for d in values(2) {
            if let Some(slot) = days.get_mut(d as usize) {
                *slot = true;
            }
        }
        let mut months = [false; 13];
        for m in values(3) {
            if let Some(slot) = months.get_mut(m as usize) {
                *slot = true;
            }
        }
        let mut weekdays = [false; 7];
        for w in values(4) {
            if let Some(slot) = weekdays.get_mut((w % 7) as usize) {
                *slot = true;
            }
        }
        let starts_with_star = |i: usize| parts.get(i).is_some_and(|p| p.starts_with('*'));
        Ok(Cron {
            source: parts.join(" "),
            minutes: values(0),
            hours: values(1),
            days,
            months,
            weekdays,
            day_restricted: !starts_with_star(2),
            weekday_restricted: !starts_with_star(4),
            hourly: starts_with_star(1),
        })
    }

    /// The expression as written (fields separated by one space).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.source
    }

    fn matches_day(&self, date: NaiveDate) -> bool {
        if !self.months[date.month() as usize] {
            return false;
        }
        let day = self.days[date.day() as usize];
        let weekday = self.weekdays[date.weekday().num_days_from_sunday() as usize];
        match (self.day_restricted, self.weekday_restricted) {
            (true, true) => day || weekday,
            (true, false) => day,
            (false, true) => weekday,
            (false, false) => true,
        }
    }

    /// The instants at which the job fires on local day `date` in `zone`, in order.
    fn fire_times_on(&self, date: NaiveDate, zone: Tz) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        for &hour in &self.hours {
            for &minute in &self.minutes {
                let Some(local) = date.and_hms_opt(hour, minute, 0) else {
                    continue;
                };
                match zone.from_local_datetime(&local) {
                    LocalResult::Single(at) => out.push(at.with_timezone(&Utc)),
                    LocalResult::Ambiguous(first, second) => {
                        out.push(first.with_timezone(&Utc));
                        if self.hourly {
                            out.push(second.with_timezone(&Utc));
                        }
                    }
                    LocalResult::None => {
                        if !self.hourly
                            && let Some(after_gap) = end_of_gap(local, zone)
                        {
                            out.push(after_gap);
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The first fire time strictly after `after`, in `zone`.
    #[must_use]
    pub fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        // Start a day early: the local day of `after` may begin before a fold.
        let first = after.with_timezone(&zone).date_naive().pred_opt()?;
        (0..HORIZON_DAYS)
            .filter_map(|offset| first.checked_add_signed(Duration::days(offset)))
            .filter(|&date| self.matches_day(date))
            .find_map(|date| {
                self.fire_times_on(date, zone)
                    .into_iter()
                    .find(|&at| at > after)
            })
    }
}

/// The first instant after the local time `local` that does not exist in `zone` (the moment
/// the clocks jumped forward).
pub(crate) fn end_of_gap(local: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    // Gaps are at most a few hours (most are one); look minute by minute.
    (1..=24 * 60).find_map(|minutes| {
        let candidate = local.checked_add_signed(Duration::minutes(minutes))?;
        match zone.from_local_datetime(&candidate) {
            LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => Some(at.with_timezone(&Utc)),
            LocalResult::None => None,
        }
    })
}

/// The values one field allows, sorted and without repeats.
fn field(part: &str, min: u32, max: u32, names: &[&str]) -> Result<Vec<u32>, String> {
    let mut values = Vec::new();
    for item in part.split(',') {
        if item.is_empty() {
            return Err("an empty item in a list".into());
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("the step {step:?} is not a whole number"))?;
                if step == 0 {
                    return Err("a step must be at least 1".into());
                }
                (range, step)
            }
            None => (item, 1),
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else if let Some((low, high)) = range.split_once('-') {
            let (low, high) = (value(low, min, max, names)?, value(high, min, max, names)?);
            if low > high {
                return Err(format!("the range {range:?} runs backwards"));
            }
            (low, high)
        } else {
            let single = value(range, min, max, names)?;
            // `5/15` means from 5 to the end in steps of 15.
            (single, if item.contains('/') { max } else { single })
        };
        values.extend((low..=high).step_by(step as usize));
    }
    values.sort_unstable();
    values.dedup();
    Ok(values)
}

fn value(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(index) = names.iter().position(|n| *n == upper) {
        // Month names count from 1, day names from 0 (Sunday).
        let offset = if names.len() == 12 { 1 } else { 0 };
        return u32::try_from(index)
            .map(|i| i + offset)
            .map_err(|e| e.to_string());
    }
    let number: u32 = text.parse().map_err(|_| {
        if names.is_empty() {
            format!("{text:?} is not a number")
        } else {
            format!(
                "{text:?} is neither a number nor a name such as {}",
                names.first().copied().unwrap_or_default()
            )
        }
    })?;
    if number < min || number > max {
        return Err(format!("{number} is outside {min}-{max}"));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(cron: &str, zone: Tz, after: &str, count: usize) -> Vec<String> {
        let cron = Cron::parse(cron).unwrap();
        let mut at = utc(after);
        let mut out = Vec::new();
        for _ in 0..count {
            at = cron.next_after(at, zone).unwrap();
            out.push(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        out
    }

    #[test]
    fn errors_name_the_position_and_field() {
        let message = |s: &str| Cron::parse(s).unwrap_err().0;
        assert_eq!(
            message("0 25 * * *"),
            "position 2 (hour) \"25\": 25 is outside 0-23"
        );
        assert!(message("0 9 * * FUNDAY").starts_with("position 5 (day of week)"));
        assert!(message("*/0 * * * *").starts_with("position 1 (minute)"));
        assert!(message("0 9 * *").contains("this one has 4"));
        assert!(message("0 9 5-1 * *").starts_with("position 3 (day of month)"));
    }

    #[test]
    fn the_issue_example_in_berlin() {
        // Europe/Berlin moves to summer time on 2027-03-28.
        assert_eq!(
            next(
                "0 9 * * MON",
                chrono_tz::Europe::Berlin,
                "2027-03-20T00:00:00Z",
                3
            ),
            [
                "2027-03-22T08:00:00Z",
                "2027-03-29T07:00:00Z",
                "2027-04-05T07:00:00Z"
            ]
        );
    }

    #[test]
    fn names_lists_ranges_and_steps() {
        assert_eq!(
            next(
                "*/20 8-9 1,15 JAN *",
                chrono_tz::UTC,
                "2027-01-01T00:00:00Z",
                7
            ),
            [
                "2027-01-01T08:00:00Z",
                "2027-01-01T08:20:00Z",
                "2027-01-01T08:40:00Z",
                "2027-01-01T09:00:00Z",
                "2027-01-01T09:20:00Z",
                "2027-01-01T09:40:00Z",
                "2027-01-15T08:00:00Z",
            ]
        );
        // Day of month or day of week, when both are restricted; 7 is Sunday too.
        assert_eq!(
            next("0 0 13 * 7", chrono_tz::UTC, "2027-02-01T00:00:00Z", 3),
            [
                "2027-02-07T00:00:00Z",
                "2027-02-13T00:00:00Z",
                "2027-02-14T00:00:00Z"
            ]
        );
        assert_eq!(
            next("0 12 29 2 *", chrono_tz::UTC, "2027-01-01T00:00:00Z", 1),
            ["2028-02-29T12:00:00Z"]
        );
    }

    // Expected instants below are worked out by hand from each zone's offsets on both sides
    // of its 2027 changes.

    #[test]
    fn berlin_spring_forward_and_fall_back() {
        use chrono_tz::Europe::Berlin;
        // 28 March: 02:00 CET -> 03:00 CEST; 02:30 does not exist and runs at 03:00 CEST.
        assert_eq!(
            next("30 2 * * *", Berlin, "2027-03-26T12:00:00Z", 3),
            [
                "2027-03-27T01:30:00Z",
                "2027-03-28T01:00:00Z",
                "2027-03-29T00:30:00Z"
            ]
        );
        // 31 October: 03:00 CEST -> 02:00 CET; 02:30 happens twice and runs once, first.
        assert_eq!(
            next("30 2 * * *", Berlin, "2027-10-30T12:00:00Z", 3),
            [
                "2027-10-31T00:30:00Z",
                "2027-11-01T01:30:00Z",
                "2027-11-02T01:30:00Z"
            ]
        );
        // By the clock: every 30 minutes skips the missing hour.
        assert_eq!(
            next("*/30 * * * *", Berlin, "2027-03-28T00:00:00Z", 3),
            [
                "2027-03-28T00:30:00Z",
                "2027-03-28T01:00:00Z",
                "2027-03-28T01:30:00Z"
            ]
        );
    }

    #[test]
    fn new_york_spring_forward_and_fall_back() {
        use chrono_tz::America::New_York;
        // 14 March: 02:00 EST -> 03:00 EDT.
        assert_eq!(
            next("30 2 * * *", New_York, "2027-03-13T00:00:00Z", 3),
            [
                "2027-03-13T07:30:00Z",
                "2027-03-14T07:00:00Z",
                "2027-03-15T06:30:00Z"
            ]
        );
        // 7 November: 02:00 EDT -> 01:00 EST; 01:30 happens twice and runs once.
        assert_eq!(
            next("30 1 * * *", New_York, "2027-11-05T12:00:00Z", 3),
            [
                "2027-11-06T05:30:00Z",
                "2027-11-07T05:30:00Z",
                "2027-11-08T06:30:00Z"
            ]
        );
        // An hourly job runs in both 01:30s: every hour of real time has its run.
        assert_eq!(
            next("30 * * * *", New_York, "2027-11-07T04:00:00Z", 4),
            [
                "2027-11-07T04:30:00Z",
                "2027-11-07T05:30:00Z",
                "2027-11-07T06:30:00Z",
                "2027-11-07T07:30:00Z"
            ]
        );
    }

    #[test]
    fn sydney_in_the_southern_hemisphere() {
        use chrono_tz::Australia::Sydney;
        // 3 October: 02:00 AEST (+10) -> 03:00 AEDT (+11).
        assert_eq!(
            next("30 2 * * *", Sydney, "2027-10-01T00:00:00Z", 3),
            [
                "2027-10-01T16:30:00Z",
                "2027-10-02T16:00:00Z",
                "2027-10-03T15:30:00Z"
            ]
        );
        // 4 April: 03:00 AEDT -> 02:00 AEST; 02:30 happens twice and runs once.
        assert_eq!(
            next("30 2 * * *", Sydney, "2027-04-02T00:00:00Z", 3),
            [
                "2027-04-02T15:30:00Z",
                "2027-04-03T15:30:00Z",
                "2027-04-04T16:30:00Z"
            ]
        );
    }
}
