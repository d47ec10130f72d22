//! Opens and clicks made by machines, so that engagement is not inflated.
//!
//! Mail providers, security scanners and privacy proxies fetch images and follow links
//! without a person reading anything. Each open or click is classified when it is recorded
//! and, when it is a machine's, stored with its [`MachineReason`] (the `machine` property of
//! the `email_open` / `email_click` event). Reports count them apart: unique opens and clicks
//! leave machine events out by default, and both figures are shown.
//!
//! - **bot_user_agent**: the request's `User-Agent` matches the maintained list of bots and
//!   crawlers of the `isbot` crate, or one of the configured patterns (case-insensitive
//!   substrings, [`MachineSettings::bot_patterns`]), e.g. the names security gateways put in
//!   their user agents. A request without a user agent is a machine's too. Gmail's image
//!   proxy (`GoogleImageProxy`) is not: it fetches images when the reader opens the message.
//! - **privacy_proxy**: Apple Mail Privacy Protection fetches every image of a message on
//!   delivery through Apple's proxies, whose requests carry the bare user agent
//!   `Mozilla/5.0` and come from Apple's network 17.0.0.0/8. Such an open says the message
//!   arrived, not that anyone read it: it is a "machine open".
//! - **click_burst**: several different links of one message clicked within
//!   [`MachineSettings::burst_window_ms`] (2 s by default): scanners follow every link at
//!   once, people do not. All clicks of the burst are flagged, earlier ones included.
//! - **honeypot**: every HTML message carries a link no person can see
//!   (clarion-template); whoever follows it is a machine, and so are the other clicks on the
//!   same message within the burst window around it.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::KpiError;

/// Why an open or a click was a machine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MachineReason {
    BotUserAgent,
    PrivacyProxy,
    ClickBurst,
    Honeypot,
}

impl MachineReason {
    /// The value stored in the event's `machine` property.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineReason::BotUserAgent => "bot_user_agent",
            MachineReason::PrivacyProxy => "privacy_proxy",
            MachineReason::ClickBurst => "click_burst",
            MachineReason::Honeypot => "honeypot",
        }
    }
}

/// `[engagement]`: what counts as a machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MachineSettings {
    /// More user-agent fragments that mark a machine, matched case-insensitively anywhere in
    /// the user agent (not regular expressions).
    pub bot_patterns: Vec<String>,
    /// Clicks on different links of one message closer together than this are a burst.
    pub burst_window_ms: i64,
    /// How many different links within the window make a burst (at least 2).
    pub burst_links: usize,
}

impl Default for MachineSettings {
    fn default() -> Self {
        MachineSettings {
            bot_patterns: Vec::new(),
            burst_window_ms: 2_000,
            burst_links: 2,
        }
    }
}

/// Classifies opens and clicks; built once from the settings and shared.
#[derive(Debug, Clone)]
pub struct MachineFilter {
    bots: Arc<isbot::Bots>,
    settings: MachineSettings,
}

/// `isbot`'s entry for Gmail's image proxy, which this filter does not treat as a bot.
const GMAIL_IMAGE_PROXY: &str = "googleimageproxy";

/// The user agent of Apple's Mail Privacy Protection image proxy.
const APPLE_PROXY_USER_AGENT: &str = "Mozilla/5.0";

impl MachineFilter {
    /// A filter with `isbot`'s list plus the configured patterns; refused when a pattern is
    /// empty or the burst settings are out of range (the error names the setting).
    pub fn new(settings: &MachineSettings) -> Result<Self, KpiError> {
        let mut bots = isbot::Bots::default();
        // Gmail fetches a message's images through its proxy when the reader opens it, not on
        // delivery: those opens are people's.
        bots.remove(&[GMAIL_IMAGE_PROXY]);
        let mut escaped = Vec::new();
        for (i, pattern) in settings.bot_patterns.iter().enumerate() {
            if pattern.trim().is_empty() {
                return Err(KpiError::invalid(
                    &format!("bot_patterns[{i}]"),
                    "must not be empty",
                ));
            }
            escaped.push(regex::escape(pattern.trim()));
        }
        let escaped: Vec<&str> = escaped.iter().map(String::as_str).collect();
        bots.append(&escaped);
        if !(1..=600_000).contains(&settings.burst_window_ms) {
            return Err(KpiError::invalid(
                "burst_window_ms",
                format!(
                    "must be between 1 and 600000, not {}",
                    settings.burst_window_ms
                ),
            ));
        }
        if settings.burst_links < 2 {
            return Err(KpiError::invalid(
                "burst_links",
                format!("must be at least 2, not {}", settings.burst_links),
            ));
        }
        Ok(MachineFilter {
            bots: Arc::new(bots),
            settings: settings.clone(),
        })
    }

    pub fn settings(&self) -> &MachineSettings {
        &self.settings
    }

    /// Whether a request's user agent is a bot's (a missing or blank one is).
    pub fn is_bot(&self, user_agent: Option<&str>) -> bool {
        match user_agent.map(str::trim) {
            None | Some("") => true,
            Some(agent) => self.bots.is_bot(agent),
        }
    }

    /// Why an open was a machine's, from what the request shows; `None` for a person.
    pub fn classify_open(
        &self,
        user_agent: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Option<MachineReason> {
        if is_apple_proxy(user_agent, peer) {
            return Some(MachineReason::PrivacyProxy);
        }
        self.is_bot(user_agent)
            .then_some(MachineReason::BotUserAgent)
    }

    /// Why a click was a machine's from the request alone (bursts and the honeypot need the
    /// message's other clicks, see [`burst`]); `None` for a person.
    pub fn classify_click(&self, user_agent: Option<&str>) -> Option<MachineReason> {
        self.is_bot(user_agent)
            .then_some(MachineReason::BotUserAgent)
    }

    /// Whether the clicks of one message at `(time in ms, url)` form a burst around the
    /// click at `at`: at least `burst_links` different URLs within `burst_window_ms` of it.
    pub fn is_burst(&self, at: i64, clicks: &[(i64, String)]) -> bool {
        burst(
            at,
            clicks,
            self.settings.burst_window_ms,
            self.settings.burst_links,
        )
    }
}

/// Apple Mail Privacy Protection's proxy: the bare `Mozilla/5.0` user agent, or a request
/// from Apple's 17.0.0.0/8.
fn is_apple_proxy(user_agent: Option<&str>, peer: Option<IpAddr>) -> bool {
    let apple_network = match peer {
        Some(IpAddr::V4(v4)) => v4.octets()[0] == 17,
        Some(IpAddr::V6(v6)) => v6.to_ipv4_mapped().is_some_and(|v4| v4.octets()[0] == 17),
        None => false,
    };
    apple_network || user_agent.map(str::trim) == Some(APPLE_PROXY_USER_AGENT)
}

/// At least `links` different URLs among the clicks within `window` ms of `at` (the click at
/// `at` itself included when it is in `clicks`).
pub fn burst(at: i64, clicks: &[(i64, String)], window: i64, links: usize) -> bool {
    let mut urls: Vec<&str> = clicks
        .iter()
        .filter(|(t, _)| (t - at).abs() <= window)
        .map(|(_, url)| url.as_str())
        .collect();
    urls.sort_unstable();
    urls.dedup();
    urls.len() >= links
}
