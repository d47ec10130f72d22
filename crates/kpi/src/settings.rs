//! A workspace's KPI settings: the attribution model, the minimum sample below which a
//! comparison says "not enough data", the confidence level, and how churn is defined. A workspace without a stored row uses
//! [`KpiSettings::default`].

use clarion_model::{Timestamp, WorkspaceId};
use sea_orm::{
    ConnectionTrait,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::KpiError;

/// Which delivery a goal event is credited to when several campaigns' attribution windows
/// cover it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Attribution {
    /// The most recent delivery sent before the event (ties: the higher delivery id).
    #[default]
    LastTouch,
    /// The earliest delivery whose window still covers the event (ties: the lower id).
    FirstTouch,
}

impl Attribution {
    pub fn as_str(self) -> &'static str {
        match self {
            Attribution::LastTouch => "last_touch",
            Attribution::FirstTouch => "first_touch",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "last_touch" => Some(Attribution::LastTouch),
            "first_touch" => Some(Attribution::FirstTouch),
            _ => None,
        }
    }
}

/// When a contact counts as churned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChurnDefinition {
    /// A contact churns `inactivity_days` after its last `activity_event` (default).
    #[default]
    Inactivity,
    /// A contact is active from its `start_event` (or its first `activity_event`) until its
    /// `cancel_event`.
    Cancel,
}

impl ChurnDefinition {
    fn as_str(self) -> &'static str {
        match self {
            ChurnDefinition::Inactivity => "inactivity",
            ChurnDefinition::Cancel => "cancel",
        }
    }
}

/// How a workspace's KPIs are computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KpiSettings {
    /// The attribution model of campaign conversions (default `last_touch`).
    #[serde(default)]
    pub attribution: Attribution,
    /// The fewest contacts each side of a comparison needs before a verdict is given
    /// (default 100, at least 2); below it the comparison answers `not_enough_data`.
    #[serde(default = "default_min_sample")]
    #[schema(minimum = 2, maximum = 1_000_000_000)]
    pub min_sample: u64,
    /// The confidence level of intervals and the significance of comparisons: a difference
    /// is significant when its p-value is below `1 - confidence_level` (0.5 to 0.999, default
    /// 0.95).
    #[serde(default = "default_level")]
    #[schema(minimum = 0.5, maximum = 0.999)]
    pub confidence_level: f64,
    /// How churn is defined (default `inactivity`).
    #[serde(default)]
    pub churn: ChurnDefinition,
    /// The event kind that makes a contact active (default `purchase`).
    #[serde(default = "default_activity")]
    #[schema(value_type = clarion_model::EventKind)]
    pub activity_event: String,
    /// With `churn = cancel`, the event kind that starts a subscription (default
    /// `subscription_started`).
    #[serde(default = "default_start")]
    #[schema(value_type = clarion_model::EventKind)]
    pub start_event: String,
    /// With `churn = cancel`, the event kind that ends it (default `subscription_cancelled`).
    #[serde(default = "default_cancel")]
    #[schema(value_type = clarion_model::EventKind)]
    pub cancel_event: String,
    /// With `churn = inactivity`, the days without an activity event after which a contact
    /// has churned (default 90).
    #[serde(default = "default_inactivity")]
    #[schema(minimum = 1, maximum = 3650)]
    pub inactivity_days: u32,
    /// The IANA time zone in which days, weeks (from Monday) and months of churn and
    /// retention reports begin (default `UTC`).
    #[serde(default = "default_zone")]
    #[schema(value_type = clarion_model::TimeZone)]
    pub time_zone: String,
}

fn default_activity() -> String {
    "purchase".to_owned()
}

fn default_start() -> String {
    "subscription_started".to_owned()
}

fn default_cancel() -> String {
    "subscription_cancelled".to_owned()
}

fn default_inactivity() -> u32 {
    90
}

fn default_zone() -> String {
    "UTC".to_owned()
}

fn default_level() -> f64 {
    0.95
}

fn default_min_sample() -> u64 {
    100
}

impl Default for KpiSettings {
    fn default() -> Self {
        KpiSettings {
            attribution: Attribution::default(),
            min_sample: default_min_sample(),
            confidence_level: default_level(),
            churn: ChurnDefinition::default(),
            activity_event: default_activity(),
            start_event: default_start(),
            cancel_event: default_cancel(),
            inactivity_days: default_inactivity(),
            time_zone: default_zone(),
        }
    }
}

impl KpiSettings {
    /// Checks the ranges the schema states.
    ///
    /// # Errors
    /// [`KpiError::Invalid`] naming the field.
    pub fn check(&self) -> Result<(), KpiError> {
        if !(2..=1_000_000_000).contains(&self.min_sample) {
            return Err(KpiError::invalid(
                "min_sample",
                format!("must be 2 to 1000000000, not {}", self.min_sample),
            ));
        }
        if !(0.5..=0.999).contains(&self.confidence_level) {
            return Err(KpiError::invalid(
                "confidence_level",
                format!("must be 0.5 to 0.999, not {}", self.confidence_level),
            ));
        }
        for (field, kind) in [
            ("activity_event", &self.activity_event),
            ("start_event", &self.start_event),
            ("cancel_event", &self.cancel_event),
        ] {
            clarion_model::EventKind::parse(kind)
                .map_err(|e| KpiError::invalid(field, e.to_string()))?;
        }
        if !(1..=3650).contains(&self.inactivity_days) {
            return Err(KpiError::invalid(
                "inactivity_days",
                format!("must be 1 to 3650, not {}", self.inactivity_days),
            ));
        }
        self.zone()?;
        Ok(())
    }

    /// The time zone of period boundaries.
    ///
    /// # Errors
    /// [`KpiError::Invalid`] naming `time_zone`.
    pub fn zone(&self) -> Result<chrono_tz::Tz, KpiError> {
        self.time_zone.parse::<chrono_tz::Tz>().map_err(|_| {
            KpiError::invalid(
                "time_zone",
                format!("{:?} is not an IANA time zone", self.time_zone),
            )
        })
    }

    /// The settings of a comparison under these settings.
    pub fn comparison(&self) -> crate::stats::ComparisonSettings {
        crate::stats::ConfidenceLevel::new(self.confidence_level)
            .and_then(|level| crate::stats::ComparisonSettings::new(level, self.min_sample))
            .unwrap_or_default()
    }
}

/// The settings of `workspace` (the defaults when none are stored).
pub async fn get(
    db: &impl ConnectionTrait,
    workspace: WorkspaceId,
) -> Result<KpiSettings, KpiError> {
    let select = Query::select()
        .columns([
            "attribution",
            "min_sample",
            "confidence_level",
            "churn",
            "activity_event",
            "start_event",
            "cancel_event",
            "inactivity_days",
            "time_zone",
        ])
        .from("kpi_settings")
        .and_where(Expr::col("workspace_id").eq(workspace.0))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok(KpiSettings::default());
    };
    let attribution: String = row.try_get("", "attribution")?;
    let min_sample: i64 = row.try_get("", "min_sample")?;
    Ok(KpiSettings {
        attribution: Attribution::parse(&attribution).unwrap_or_default(),
        min_sample: u64::try_from(min_sample).unwrap_or(2),
        confidence_level: row.try_get("", "confidence_level")?,
        churn: if row.try_get::<String>("", "churn")? == "cancel" {
            ChurnDefinition::Cancel
        } else {
            ChurnDefinition::Inactivity
        },
        activity_event: row.try_get("", "activity_event")?,
        start_event: row.try_get("", "start_event")?,
        cancel_event: row.try_get("", "cancel_event")?,
        inactivity_days: u32::try_from(row.try_get::<i64>("", "inactivity_days")?).unwrap_or(90),
        time_zone: row.try_get("", "time_zone")?,
    })
}

/// Stores the settings of `workspace`. When the attribution model changes, every run's
/// roll-ups are recomputed under the new one before this returns; when the churn definition
/// (or its events or inactivity) changes, so is the activity roll-up of churn and retention.
///
/// # Errors
/// [`KpiError::Invalid`] for a value out of range; database errors.
pub async fn put(
    db: &sea_orm::DatabaseConnection,
    workspace: WorkspaceId,
    settings: KpiSettings,
) -> Result<KpiSettings, KpiError> {
    settings.check()?;
    let before = get(db, workspace).await?;
    let insert = Query::insert()
        .into_table("kpi_settings")
        .columns([
            "workspace_id",
            "attribution",
            "min_sample",
            "confidence_level",
            "churn",
            "activity_event",
            "start_event",
            "cancel_event",
            "inactivity_days",
            "time_zone",
            "updated_at",
        ])
        .values([
            workspace.0.into(),
            settings.attribution.as_str().into(),
            i64::try_from(settings.min_sample)
                .unwrap_or(i64::MAX)
                .into(),
            settings.confidence_level.into(),
            settings.churn.as_str().into(),
            settings.activity_event.clone().into(),
            settings.start_event.clone().into(),
            settings.cancel_event.clone().into(),
            i64::from(settings.inactivity_days).into(),
            settings.time_zone.clone().into(),
            Timestamp::now().millis().into(),
        ])
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?
        .on_conflict(
            OnConflict::column("workspace_id")
                .update_columns([
                    "attribution",
                    "min_sample",
                    "confidence_level",
                    "churn",
                    "activity_event",
                    "start_event",
                    "cancel_event",
                    "inactivity_days",
                    "time_zone",
                    "updated_at",
                ])
                .to_owned(),
        )
        .to_owned();
    db.execute(&insert).await?;
    if before.attribution != settings.attribution {
        crate::rollup::rebuild_workspace(db, workspace).await?;
    }
    let activity = |k: &KpiSettings| {
        (
            k.churn,
            k.activity_event.clone(),
            k.start_event.clone(),
            k.cancel_event.clone(),
            k.inactivity_days,
        )
    };
    if activity(&before) != activity(&settings) {
        crate::churn::rebuild_spells(db, workspace).await?;
    }
    Ok(settings)
}
