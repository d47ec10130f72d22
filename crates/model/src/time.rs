use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone as _, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::ModelError;

/// A point in time, kept as milliseconds since the Unix epoch.
///
/// Both databases store it as a 64-bit integer, so time windows in segment rules and KPI
/// queries are plain integer arithmetic on SQLite and PostgreSQL alike. On the wire it is an
/// RFC 3339 string in UTC, e.g. `2026-11-22T08:15:00.000Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2026-11-22T08:15:00.000Z")]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }

    pub fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Parses an RFC 3339 timestamp with an explicit offset, the only form the API accepts.
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        DateTime::parse_from_rfc3339(value)
            .map(|dt| Timestamp(dt.timestamp_millis()))
            .map_err(|_| ModelError::Timestamp {
                value: value.to_string(),
                reason: "expected RFC 3339 with an offset, e.g. 2026-11-22T08:15:00Z",
            })
    }

    /// Parses the forms found in exported spreadsheets: RFC 3339, `YYYY-MM-DD HH:MM[:SS]`
    /// (or with a `T`) and `YYYY-MM-DD`. Forms without an offset are read in `zone`.
    pub fn parse_lenient(value: &str, zone: chrono_tz::Tz) -> Result<Self, ModelError> {
        let value = value.trim();
        if let Ok(ts) = Timestamp::parse(value) {
            return Ok(ts);
        }
        let naive = [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%dT%H:%M",
        ]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .and_then(|date| date.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| ModelError::Timestamp {
            value: value.to_string(),
            reason: "expected RFC 3339, YYYY-MM-DD HH:MM:SS or YYYY-MM-DD",
        })?;
        zone.from_local_datetime(&naive)
            .earliest()
            .map(|dt| Timestamp(dt.timestamp_millis()))
            .ok_or_else(|| ModelError::Timestamp {
                value: value.to_string(),
                reason: "that local time does not exist in the time zone",
            })
    }

    /// The RFC 3339 form used on the wire.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_in_utc() {
        let ts = Timestamp::parse("2026-11-22T09:15:00+01:00").unwrap();
        assert_eq!(ts.to_rfc3339(), "2026-11-22T08:15:00.000Z");
        assert!(Timestamp::parse("2026-11-22 08:15").is_err());
    }

    #[test]
    fn lenient_forms_are_read_in_the_given_zone() {
        let berlin = chrono_tz::Europe::Berlin;
        let ts = Timestamp::parse_lenient("2011-12-01 08:26:00", berlin).unwrap();
        assert_eq!(ts.to_rfc3339(), "2011-12-01T07:26:00.000Z");
        let day = Timestamp::parse_lenient("2011-06-01", chrono_tz::UTC).unwrap();
        assert_eq!(day.to_rfc3339(), "2011-06-01T00:00:00.000Z");
        assert!(Timestamp::parse_lenient("01/12/2011", chrono_tz::UTC).is_err());
    }
}
