//! Clarion's configuration: `config/default.toml` (built into the binary), then the file named
//! by `CLARION_CONFIG`, then `CLARION__SECTION__KEY` environment variables.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The defaults, documented line by line in the repository's `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The most items one batch request may ever carry.
pub const MAX_BATCH_LIMIT: usize = 10_000;

/// A configuration that could not be read; the message names the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub ingest: IngestSettings,
    pub segments: SegmentSettings,
    pub traits: TraitsSettings,
    pub log: LogSettings,
    pub tracking: TrackingSettings,
    /// `[engagement]`: which opens and clicks are machines'.
    #[serde(default)]
    pub engagement: clarion_kpi::machine::MachineSettings,
    pub sending: clarion_campaign::SendingSettings,
    pub scheduling: clarion_campaign::SchedulingSettings,
    /// `[triggers]`: how often the scheduler role reads segment entries and due sends.
    pub triggers: clarion_campaign::trigger::TriggerSettings,
    pub email: clarion_dispatch::EmailConfig,
    pub webhook: clarion_dispatch::WebhookConfig,
    /// `[bounces]`: when soft bounces make an address `bounced`.
    pub bounces: clarion_campaign::feedback::BounceSettings,
    /// `[providers.*]`: the email providers whose bounce and complaint webhooks are accepted.
    #[serde(default)]
    pub providers: clarion_campaign::providers::ProviderSettings,
    /// `[dashboard]`: sessions, login lockout and the lifetime of one-time links.
    pub dashboard: DashboardSettings,
}

/// `[dashboard]`: how long logins and one-time links last, and when failed logins lock out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSettings {
    /// Hours a login lasts.
    pub session_hours: u64,
    /// Failed logins of one account before it is locked.
    pub lockout_account_failures: u64,
    /// Failed logins from one client address before it is locked.
    pub lockout_address_failures: u64,
    /// Minutes a lockout lasts after the last failed login.
    pub lockout_minutes: u64,
    /// Minutes a password-reset link works.
    pub reset_link_minutes: u64,
    /// Hours an invitation (or first-admin) link works.
    pub invite_link_hours: u64,
    /// Password-reset links one account may ask for per hour from the login page.
    pub reset_requests_per_account_hour: u64,
    /// Password-reset links one client address may ask for per hour, whatever the account.
    pub reset_requests_per_address_hour: u64,
    /// The From mailbox of invitation and password-reset emails.
    pub mail_from: String,
}

impl DashboardSettings {
    pub fn session_lifetime(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.session_hours.saturating_mul(3600))
    }

    pub fn reset_link_lifetime(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.reset_link_minutes.saturating_mul(60))
    }

    pub fn invite_link_lifetime(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.invite_link_hours.saturating_mul(3600))
    }

    pub fn lockout(&self) -> crate::accounts::limiter::LockoutSettings {
        crate::accounts::limiter::LockoutSettings {
            account_failures: self.lockout_account_failures,
            address_failures: self.lockout_address_failures,
            minutes: self.lockout_minutes,
            reset_account_requests: self.reset_requests_per_account_hour,
            reset_address_requests: self.reset_requests_per_address_hour,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, u64, u64); 8] = [
            ("dashboard.session_hours", self.session_hours, 24 * 365),
            (
                "dashboard.lockout_account_failures",
                self.lockout_account_failures,
                1000,
            ),
            (
                "dashboard.lockout_address_failures",
                self.lockout_address_failures,
                100_000,
            ),
            ("dashboard.lockout_minutes", self.lockout_minutes, 24 * 60),
            (
                "dashboard.reset_link_minutes",
                self.reset_link_minutes,
                7 * 24 * 60,
            ),
            (
                "dashboard.invite_link_hours",
                self.invite_link_hours,
                30 * 24,
            ),
            (
                "dashboard.reset_requests_per_account_hour",
                self.reset_requests_per_account_hour,
                1000,
            ),
            (
                "dashboard.reset_requests_per_address_hour",
                self.reset_requests_per_address_hour,
                100_000,
            ),
        ];
        for (key, value, max) in checks {
            if !(1..=max).contains(&value) {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("must be between 1 and {max}"),
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub public_url: String,
    pub workers: usize,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: SecretString,
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    pub max_batch: usize,
    pub create_unknown_contacts: bool,
    pub max_future_hours: u32,
}

/// `[traits]`: how RFM, CLV and interest profiles are computed, and how often.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraitsSettings {
    /// Minutes between two recomputations of every workspace's traits; 0 turns periodic
    /// recomputation off (`clarion traits recompute` still works).
    pub recompute_interval_minutes: u64,
    pub purchases: clarion_segment::traits::PurchaseSettings,
    pub interests: clarion_segment::traits::InterestSettings,
    /// `[traits.clv]`: the horizon, discounting and time unit of predicted CLV.
    #[serde(default)]
    pub clv: clarion_kpi::clv::ClvSettings,
}

impl TraitsSettings {
    /// What `clarion_segment::recompute` takes.
    pub fn computation(&self) -> clarion_segment::TraitSettings {
        clarion_segment::TraitSettings {
            purchases: self.purchases.clone(),
            interests: self.interests.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSettings {
    pub preview_timeout_ms: u64,
    pub sweep_interval_secs: u64,
    pub realtime: bool,
}

impl SegmentSettings {
    pub fn preview_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.preview_timeout_ms)
    }
}

/// Signed tracking links (clicks, opens, unsubscribes) in messages and previews.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingSettings {
    /// Base URL of the tracking endpoints; empty means `server.public_url`.
    pub base_url: String,
    /// HMAC keys, newest (signing) first; empty means a random key per process.
    pub signing_keys: Vec<SecretString>,
    /// Address offered as a `mailto:` unsubscribe in `List-Unsubscribe`; empty for none.
    pub unsubscribe_mailto: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

impl Settings {
    /// Reads the defaults, `CLARION_CONFIG` and the environment, and checks the result.
    pub fn load() -> Result<Self, ConfigError> {
        let file = std::env::var("CLARION_CONFIG").ok();
        Self::load_from(file.as_deref(), config::Environment::with_prefix("CLARION"))
    }

    /// The defaults alone, with no file or environment; what tests start from.
    pub fn defaults() -> Result<Self, ConfigError> {
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn load_from(
        file: Option<&str>,
        environment: config::Environment,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            builder = builder.add_source(config::File::with_name(path).required(true));
        }
        let settings: Settings = builder
            .add_source(
                environment
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("tracking.signing_keys"),
            )
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database.url.expose_secret();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid {
                key: "database.url",
                reason: "must start with sqlite: or postgres:// (the value is not shown: it may hold a password)".into(),
            });
        }
        if !self.redis.url.expose_secret().starts_with("redis://")
            && !self.redis.url.expose_secret().starts_with("rediss://")
        {
            return Err(ConfigError::Invalid {
                key: "redis.url",
                reason: "must start with redis:// or rediss://".into(),
            });
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "database.max_connections",
                reason: "must be at least 1".into(),
            });
        }
        if self.segments.preview_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "segments.preview_timeout_ms",
                reason: "must be at least 1 (milliseconds)".into(),
            });
        }
        if self.segments.sweep_interval_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "segments.sweep_interval_secs",
                reason: "must be at least 1 (seconds)".into(),
            });
        }
        if !(1..=MAX_BATCH_LIMIT).contains(&self.ingest.max_batch) {
            return Err(ConfigError::Invalid {
                key: "ingest.max_batch",
                reason: format!("must be between 1 and {MAX_BATCH_LIMIT}"),
            });
        }
        if !(self.server.public_url.starts_with("http://")
            || self.server.public_url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                key: "server.public_url",
                reason: "must be an http:// or https:// URL".into(),
            });
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(['{', '}', ' ']) {
            return Err(ConfigError::Invalid {
                key: "redis.key_prefix",
                reason: "must be non-empty, without braces or spaces".into(),
            });
        }
        let tracking_url = &self.tracking.base_url;
        if !(tracking_url.is_empty()
            || tracking_url.starts_with("http://")
            || tracking_url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                key: "tracking.base_url",
                reason: "must be empty or an http:// or https:// URL".into(),
            });
        }
        if let Some(position) = self
            .tracking
            .signing_keys
            .iter()
            .position(|key| key.expose_secret().len() < clarion_template::tracking::MIN_KEY_LEN)
        {
            return Err(ConfigError::Invalid {
                key: "tracking.signing_keys",
                reason: format!(
                    "key #{} is shorter than {} bytes (the value is not shown)",
                    position + 1,
                    clarion_template::tracking::MIN_KEY_LEN
                ),
            });
        }
        if let Err(clarion_segment::SegmentError::Settings { key, message }) =
            self.traits.computation().check()
        {
            return Err(ConfigError::Invalid {
                key: "traits",
                reason: format!("traits.{key}: {message}"),
            });
        }
        if let Err(clarion_kpi::KpiError::Invalid { field, message }) =
            clarion_kpi::machine::MachineFilter::new(&self.engagement)
        {
            return Err(ConfigError::Invalid {
                key: "engagement",
                reason: format!("engagement.{field}: {message}"),
            });
        }
        if let Err(clarion_kpi::KpiError::Invalid { field, message }) = self.traits.clv.check() {
            return Err(ConfigError::Invalid {
                key: "traits.clv",
                reason: format!("traits.clv.{field}: {message}"),
            });
        }
        if let Err((key, reason)) = self.sending.validate() {
            return Err(ConfigError::Invalid { key, reason });
        }
        if let Err((key, reason)) = self.bounces.validate() {
            return Err(ConfigError::Invalid { key, reason });
        }
        if let Err((key, reason)) = self.providers.validate() {
            return Err(ConfigError::Invalid { key, reason });
        }
        if let Err((key, reason)) = self.scheduling.validate() {
            return Err(ConfigError::Invalid { key, reason });
        }
        if let Err((key, reason)) = self.triggers.validate() {
            return Err(ConfigError::Invalid { key, reason });
        }
        if !self.sending.webhook_url.is_empty() && self.webhook.secret.expose_secret().is_empty() {
            return Err(ConfigError::Invalid {
                key: "webhook.secret",
                reason: "must be set (whsec_ + base64 of a key) when sending.webhook_url is".into(),
            });
        }
        if !self.webhook.secret.expose_secret().is_empty()
            && let Err(error) =
                clarion_dispatch::WebhookSecret::parse(self.webhook.secret.expose_secret())
        {
            return Err(ConfigError::Invalid {
                key: "webhook.secret",
                reason: format!("{} (the value is not shown)", error.reason()),
            });
        }
        if self.webhook.rotation_overlap_secs > clarion_campaign::endpoints::MAX_OVERLAP_SECS {
            return Err(ConfigError::Invalid {
                key: "webhook.rotation_overlap_secs",
                reason: format!(
                    "must be at most {} (30 days)",
                    clarion_campaign::endpoints::MAX_OVERLAP_SECS
                ),
            });
        }
        self.dashboard.validate()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            ConfigError::Invalid {
                key: "log.level",
                reason: e.to_string(),
            }
        })?;
        Ok(())
    }

    pub fn is_postgres(&self) -> bool {
        self.database.url.expose_secret().starts_with("postgres")
    }
}

/// A URL with any password replaced, for log lines and messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> config::Environment {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config::Environment::with_prefix("CLARION").source(Some(map))
    }

    #[test]
    fn defaults_load_and_environment_overrides_them() {
        let settings = Settings::load_from(
            None,
            env(&[
                ("CLARION__SERVER__PORT", "9999"),
                ("CLARION__INGEST__CREATE_UNKNOWN_CONTACTS", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.server.port, 9999);
        assert!(!settings.ingest.create_unknown_contacts);
        assert_eq!(settings.database.max_connections, 10);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let error = Settings::load_from(None, env(&[("CLARION__SERVER__PORT", "eighty")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("server.port"), "{error}");
        let error = Settings::load_from(None, env(&[("CLARION__INGEST__MAX_BATCH", "20000")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("ingest.max_batch"), "{error}");
        let error = Settings::load_from(
            None,
            env(&[("CLARION__WEBHOOK__ROTATION_OVERLAP_SECS", "99999999")]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("webhook.rotation_overlap_secs"), "{error}");
        let error = Settings::load_from(None, env(&[("CLARION__SERVER__PROT", "1")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("prot"), "{error}");
    }

    #[test]
    fn tracking_keys_come_from_the_environment_and_short_ones_are_refused() {
        let settings = Settings::load_from(
            None,
            env(&[(
                "CLARION__TRACKING__SIGNING_KEYS",
                "0123456789abcdef0123,fedcba9876543210fedc",
            )]),
        )
        .unwrap();
        assert_eq!(settings.tracking.signing_keys.len(), 2);
        assert_eq!(
            settings.tracking.signing_keys[1].expose_secret(),
            "fedcba9876543210fedc"
        );
        let error = Settings::load_from(
            None,
            env(&[(
                "CLARION__TRACKING__SIGNING_KEYS",
                "0123456789abcdef,tooshort",
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("tracking.signing_keys"), "{error}");
        assert!(error.contains("#2"), "{error}");
        assert!(!error.contains("tooshort"), "{error}");
        let error = Settings::load_from(None, env(&[("CLARION__TRACKING__BASE_URL", "t.example")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("tracking.base_url"), "{error}");
    }

    #[test]
    fn trait_settings_load_and_are_checked() {
        let settings = Settings::load_from(
            None,
            env(&[("CLARION__TRAITS__INTERESTS__WEIGHTS__WISHLIST", "4")]),
        )
        .unwrap();
        let computation = settings.traits.computation();
        assert_eq!(computation.interests.weights["wishlist"], 4.0);
        assert_eq!(computation.interests.weights["view"], 1.0);
        assert_eq!(computation.interests.half_life_days, 30.0);
        assert_eq!(computation.purchases.order_property, "invoice");
        assert_eq!(settings.traits.recompute_interval_minutes, 60);
        let error = Settings::load_from(
            None,
            env(&[("CLARION__TRAITS__INTERESTS__HALF_LIFE_DAYS", "-1")]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("traits.interests.half_life_days"), "{error}");
    }

    #[test]
    fn secrets_never_print() {
        let settings = Settings::load_from(
            None,
            env(&[("CLARION__DATABASE__URL", "postgres://u:hunter2@db/x")]),
        )
        .unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert_eq!(
            redact_url("postgres://u:hunter2@db/x"),
            "postgres://u:***@db/x"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
