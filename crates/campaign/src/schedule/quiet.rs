//! Quiet hours: times of day (and optionally weekends) in the recipient's own time zone when
//! a campaign sends nothing. A delivery that would fall inside is delayed to the next allowed
//! moment or dropped (`suppressed`, reason `quiet hours`), as the campaign says.

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use clarion_model::{CampaignId, Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{cron::end_of_gap, issue, zone};
use crate::CampaignError;

/// The reason on a delivery dropped by quiet hours.
pub const QUIET_HOURS: &str = "quiet hours";

/// What becomes of a delivery that would fall inside quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuietAction {
    /// Sent at the next allowed moment in the recipient's zone.
    Delay,
    /// Not sent: recorded `suppressed` with the reason `quiet hours`.
    Drop,
}

impl QuietAction {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            QuietAction::Delay => "delay",
            QuietAction::Drop => "drop",
        }
    }
}

/// `PUT /api/v1/campaigns/{id}/quiet-hours`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursInput {
    /// Local time quiet hours begin (`HH:MM`), e.g. `21:00`.
    #[schema(example = "21:00")]
    pub start: Option<String>,
    /// Local time they end (`HH:MM`), e.g. `08:00`; before `start` means overnight.
    #[schema(example = "08:00")]
    pub end: Option<String>,
    /// Also quiet all Saturday and Sunday (default false).
    pub weekends: Option<bool>,
    /// `delay` (default) or `drop`.
    pub action: Option<QuietAction>,
    /// The zone of contacts without one (IANA, default `UTC`).
    #[schema(value_type = Option<clarion_model::TimeZone>, example = "Europe/Berlin")]
    pub time_zone: Option<String>,
}

/// Checked quiet hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Minutes after local midnight.
    pub start: u32,
    pub end: u32,
    pub weekends: bool,
    pub action: QuietAction,
    /// The zone of contacts without one.
    pub fallback: Tz,
}

/// Quiet hours as the API shows them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuietHoursView {
    pub campaign_id: CampaignId,
    #[schema(example = "21:00")]
    pub start: String,
    #[schema(example = "08:00")]
    pub end: String,
    pub weekends: bool,
    pub action: QuietAction,
    pub time_zone: String,
    pub updated_at: Timestamp,
}

fn clock_time(
    field: &str,
    value: Option<&str>,
    issues: &mut Vec<crate::validate::Issue>,
) -> Option<u32> {
    let Some(value) = value else {
        issues.push(issue(field, "give a local time HH:MM, e.g. 21:00"));
        return None;
    };
    match NaiveTime::parse_from_str(value.trim(), "%H:%M") {
        Ok(time) => Some(time.hour() * 60 + time.minute()),
        Err(_) => {
            issues.push(issue(
                field,
                format!("{value:?} is not a local time HH:MM (00:00 to 23:59)"),
            ));
            None
        }
    }
}

fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

impl QuietHours {
    /// Checks quiet hours as written; every problem names its field.
    ///
    /// # Errors
    /// [`CampaignError::Invalid`]: a bad time or zone, or quiet hours that cover the whole day.
    pub fn parse(input: &QuietHoursInput) -> Result<QuietHours, CampaignError> {
        let mut issues = Vec::new();
        let start = clock_time("start", input.start.as_deref(), &mut issues);
        let end = clock_time("end", input.end.as_deref(), &mut issues);
        let fallback = zone(input.time_zone.as_deref())
            .map_err(|problem| issues.push(issue("time_zone", problem)));
        if let (Some(start), Some(end)) = (start, end)
            && start == end
        {
            issues.push(issue(
                "end",
                format!(
                    "quiet hours from {} to {} cover the whole day, so nothing could ever be sent",
                    hhmm(start),
                    hhmm(end)
                ),
            ));
        }
        match (start, end, fallback) {
            (Some(start), Some(end), Ok(fallback)) if issues.is_empty() => Ok(QuietHours {
                start,
                end,
                weekends: input.weekends.unwrap_or(false),
                action: input.action.unwrap_or(QuietAction::Delay),
                fallback,
            }),
            _ => Err(CampaignError::Invalid(issues)),
        }
    }

    /// Whether the local moment `local` is quiet.
    #[must_use]
    pub fn quiet_at(&self, local: NaiveDateTime) -> bool {
        if self.weekends && local.weekday().number_from_monday() >= 6 {
            return true;
        }
        let minute = local.hour() * 60 + local.minute();
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }

    /// The first moment at or after `at` that is not quiet in `zone`.
    #[must_use]
    pub fn next_allowed(&self, zone: Tz, at: DateTime<Utc>) -> DateTime<Utc> {
        let mut at = at;
        // A weekend and a night at most: a few steps always reach an allowed moment.
        for _ in 0..8 {
            let local = at.with_timezone(&zone).naive_local();
            if !self.quiet_at(local) {
                return at;
            }
            let date = local.date();
            let next_local = if self.weekends && local.weekday().number_from_monday() >= 6 {
                let days = 8 - i64::from(local.weekday().number_from_monday());
                (date + Duration::days(days)).and_time(NaiveTime::MIN)
            } else {
                let end = NaiveTime::from_hms_opt(self.end / 60, self.end % 60, 0)
                    .unwrap_or(NaiveTime::MIN);
                let minute = local.hour() * 60 + local.minute();
                if self.start > self.end && minute >= self.start {
                    (date + Duration::days(1)).and_time(end)
                } else {
                    date.and_time(end)
                }
            };
            at = Ord::max(resolve(zone, next_local), at + Duration::minutes(1));
        }
        at
    }
}

/// The instant the local time `local` shows in `zone`: the earlier of a repeated hour, the end
/// of the gap for a time the clocks skip.
#[must_use]
pub fn resolve(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        chrono::LocalResult::Single(at) | chrono::LocalResult::Ambiguous(at, _) => {
            at.with_timezone(&Utc)
        }
        chrono::LocalResult::None => {
            end_of_gap(local, zone).unwrap_or_else(|| Utc.from_utc_datetime(&local))
        }
    }
}

async fn campaign_exists(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
) -> Result<(), CampaignError> {
    crate::store::get(db, workspace, campaign)
        .await?
        .map(|_| ())
        .ok_or_else(|| CampaignError::NotFound(format!("campaign {campaign}")))
}

/// Sets campaign `campaign`'s quiet hours (replacing any); they apply to its next launches.
///
/// # Errors
/// [`CampaignError::Invalid`] naming each bad field (nothing is saved);
/// [`CampaignError::NotFound`].
pub async fn put(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
    input: &QuietHoursInput,
) -> Result<QuietHoursView, CampaignError> {
    campaign_exists(db, workspace, campaign).await?;
    let quiet = QuietHours::parse(input)?;
    let now = Timestamp::now().millis();
    let insert = Query::insert()
        .into_table("campaign_quiet_hours")
        .columns([
            "campaign_id",
            "workspace_id",
            "start_minute",
            "end_minute",
            "weekends",
            "action",
            "time_zone",
            "created_at",
            "updated_at",
        ])
        .values_panic([
            campaign.0.into(),
            workspace.0.into(),
            i64::from(quiet.start).into(),
            i64::from(quiet.end).into(),
            i64::from(quiet.weekends).into(),
            quiet.action.as_str().into(),
            quiet.fallback.name().into(),
            now.into(),
            now.into(),
        ])
        .on_conflict(
            OnConflict::column("campaign_id")
                .update_columns([
                    "start_minute",
                    "end_minute",
                    "weekends",
                    "action",
                    "time_zone",
                    "updated_at",
                ])
                .to_owned(),
        )
        .to_owned();
    db.execute(&insert).await?;
    get(db, workspace, campaign)
        .await?
        .ok_or_else(|| CampaignError::Corrupt("the saved quiet hours cannot be read".into()))
}

/// Campaign `campaign`'s quiet hours, if it has any.
///
/// # Errors
/// [`CampaignError::NotFound`]; database failures.
pub async fn get(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
) -> Result<Option<QuietHoursView>, CampaignError> {
    campaign_exists(db, workspace, campaign).await?;
    Ok(stored(db, workspace, campaign)
        .await?
        .map(|(quiet, updated_at)| QuietHoursView {
            campaign_id: campaign,
            start: hhmm(quiet.start),
            end: hhmm(quiet.end),
            weekends: quiet.weekends,
            action: quiet.action,
            time_zone: quiet.fallback.name().to_owned(),
            updated_at: Timestamp::from_millis(updated_at),
        }))
}

/// Removes campaign `campaign`'s quiet hours; whether it had any.
///
/// # Errors
/// [`CampaignError::NotFound`]; database failures.
pub async fn delete(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
    campaign: CampaignId,
) -> Result<bool, CampaignError> {
    campaign_exists(db, workspace, campaign).await?;
    let delete = Query::delete()
        .from_table("campaign_quiet_hours")
        .and_where(Expr::col("campaign_id").eq(campaign.0))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected() > 0)
}

/// The stored quiet hours of a campaign and when they were last changed.
pub(crate) async fn stored(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
    campaign: CampaignId,
) -> Result<Option<(QuietHours, i64)>, CampaignError> {
    let select = Query::select()
        .columns([
            "start_minute",
            "end_minute",
            "weekends",
            "action",
            "time_zone",
            "updated_at",
        ])
        .from("campaign_quiet_hours")
        .and_where(Expr::col("campaign_id").eq(campaign.0))
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok(None);
    };
    let corrupt = |what: &str| CampaignError::Corrupt(format!("quiet hours {what}"));
    let minutes = |column: &str| -> Result<u32, CampaignError> {
        let value: i64 = row.try_get("", column)?;
        u32::try_from(value).map_err(|_| corrupt(column))
    };
    let action: String = row.try_get("", "action")?;
    let zone_name: String = row.try_get("", "time_zone")?;
    let quiet = QuietHours {
        start: minutes("start_minute")?,
        end: minutes("end_minute")?,
        weekends: row.try_get::<i64>("", "weekends")? != 0,
        action: match action.as_str() {
            "delay" => QuietAction::Delay,
            "drop" => QuietAction::Drop,
            _ => return Err(corrupt("action")),
        },
        fallback: zone_name.parse().map_err(|_| corrupt("time zone"))?,
    };
    Ok(Some((quiet, row.try_get("", "updated_at")?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(start: &str, end: &str, weekends: bool) -> QuietHours {
        QuietHours::parse(&QuietHoursInput {
            start: Some(start.into()),
            end: Some(end.into()),
            weekends: Some(weekends),
            action: None,
            time_zone: None,
        })
        .unwrap()
    }

    fn at(value: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(value)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn overnight_quiet_hours_push_to_the_morning_in_the_recipients_zone() {
        let q = quiet("21:00", "08:00", false);
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Wednesday 2027-01-13 22:30 Berlin (21:30 UTC) -> Thursday 08:00 Berlin (07:00 UTC).
        assert_eq!(
            q.next_allowed(berlin, at("2027-01-13T21:30:00Z")),
            at("2027-01-14T07:00:00Z")
        );
        // 05:00 Berlin -> 08:00 the same day.
        assert_eq!(
            q.next_allowed(berlin, at("2027-01-14T04:00:00Z")),
            at("2027-01-14T07:00:00Z")
        );
        // 12:00 Berlin is allowed.
        assert_eq!(
            q.next_allowed(berlin, at("2027-01-14T11:00:00Z")),
            at("2027-01-14T11:00:00Z")
        );
        // 08:00 sharp is allowed, 21:00 sharp is not.
        assert!(!q.quiet_at(at("2027-01-14T08:00:00Z").naive_utc()));
        assert!(q.quiet_at(at("2027-01-14T21:00:00Z").naive_utc()));
    }

    #[test]
    fn weekends_push_to_monday_morning() {
        let q = quiet("21:00", "08:00", true);
        let new_york: Tz = "America/New_York".parse().unwrap();
        // Friday 2027-01-15 22:00 New York (03:00 UTC Saturday) -> Monday 08:00 (13:00 UTC).
        assert_eq!(
            q.next_allowed(new_york, at("2027-01-16T03:00:00Z")),
            at("2027-01-18T13:00:00Z")
        );
        // Saturday noon -> Monday 08:00.
        assert_eq!(
            q.next_allowed(new_york, at("2027-01-16T17:00:00Z")),
            at("2027-01-18T13:00:00Z")
        );
    }

    #[test]
    fn daytime_quiet_hours_and_whole_days_are_checked() {
        let q = quiet("12:00", "14:00", false);
        assert_eq!(
            q.next_allowed(Tz::UTC, at("2027-01-14T13:00:00Z")),
            at("2027-01-14T14:00:00Z")
        );
        let err = QuietHours::parse(&QuietHoursInput {
            start: Some("08:00".into()),
            end: Some("08:00".into()),
            ..QuietHoursInput::default()
        })
        .unwrap_err();
        let CampaignError::Invalid(issues) = err else {
            panic!()
        };
        assert_eq!(issues[0].field.as_deref(), Some("end"));
        let err = QuietHours::parse(&QuietHoursInput {
            start: Some("25:00".into()),
            end: Some("08:00".into()),
            time_zone: Some("Mars/Olympus".into()),
            ..QuietHoursInput::default()
        })
        .unwrap_err();
        let CampaignError::Invalid(issues) = err else {
            panic!()
        };
        let fields: Vec<_> = issues.iter().filter_map(|i| i.field.clone()).collect();
        assert_eq!(fields, ["start", "time_zone"]);
    }
}
