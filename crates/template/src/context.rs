//! The data a template sees, built from any `serde::Serialize` values.
//!
//! Top-level names available to every template:
//!
//! | name | content |
//! |------|---------|
//! | `contact` | the contact: fields, attributes, traits (RFM segment, CLV, ...) as serialized |
//! | `segment` | the segment the contact is targeted through |
//! | `campaign` | the campaign |
//! | `extra` | anything else the caller adds (recommended products, ...); `{}` when not set |
//! | `locale` | the recipient's locale tag, e.g. `de-CH` |
//! | `time_zone` | the recipient's IANA time zone, e.g. `Europe/Zurich` |
//! | `unsubscribe_url` | the signed unsubscribe URL of this message |
//!
//! plus the functions `range`, `dict`, `namespace` and the filters of minijinja, and `money`,
//! `number`, `date`, `datetime` of this crate.

use chrono_tz::Tz;
use std::sync::{Arc, LazyLock};

use minijinja::Value;
use minijinja::value::{Enumerator, Serde};
use serde::Serialize;

use crate::error::TemplateError;
use crate::html::{HREF_FN, LINKS_VAR, PIXEL_VAR, STATIC_LINK_FN, href_fn, static_link_fn};
use crate::locale::LocaleFormat;

pub(crate) const LOCALE_VAR: &str = "locale";
pub(crate) const TIME_ZONE_VAR: &str = "time_zone";
pub(crate) const UNSUBSCRIBE_VAR: &str = "unsubscribe_url";
/// Context variable holding the recipient's parsed formats for the filters.
pub(crate) const RECIPIENT_VAR: &str = "__clarion_recipient";

/// The recipient's conventions, parsed once per contact for the formatting filters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecipientFormat {
    pub(crate) locale: LocaleFormat,
    pub(crate) zone: Tz,
}

impl minijinja::value::Object for RecipientFormat {}

/// Every top-level name a template may use without declaring it; anything else is refused
/// at save time.
pub const KNOWN_NAMES: &[&str] = &[
    "contact",
    "segment",
    "campaign",
    "extra",
    LOCALE_VAR,
    TIME_ZONE_VAR,
    UNSUBSCRIBE_VAR,
    // minijinja's global functions.
    "range",
    "dict",
    "namespace",
];

/// Where and how a recipient reads: locale for numbers and dates, time zone for times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    locale: String,
    time_zone: Tz,
}

impl Recipient {
    /// A recipient reading in `locale` (BCP 47 tag such as `fr-FR`) in the IANA `time_zone`.
    ///
    /// # Errors
    /// [`TemplateError::Recipient`] when the time zone is unknown or the locale tag holds
    /// characters other than letters, digits, `-` and `_`.
    pub fn new(locale: &str, time_zone: &str) -> Result<Self, TemplateError> {
        let locale = locale.trim();
        if locale.is_empty()
            || locale.len() > 35
            || !locale
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(TemplateError::Recipient(format!(
                "{locale:?} is not a locale tag such as en-US"
            )));
        }
        let time_zone = time_zone.trim().parse::<Tz>().map_err(|_| {
            TemplateError::Recipient(format!(
                "{time_zone:?} is not an IANA time zone such as Europe/Paris"
            ))
        })?;
        Ok(Self {
            locale: locale.to_owned(),
            time_zone,
        })
    }

    /// English, UTC: the fallback for contacts without settings.
    #[must_use]
    pub fn fallback() -> Self {
        Self {
            locale: "en".to_owned(),
            time_zone: Tz::UTC,
        }
    }

    /// The locale tag.
    #[must_use]
    pub fn locale(&self) -> &str {
        &self.locale
    }

    /// The time zone.
    #[must_use]
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }
}

/// The render input for one contact, converted once and reused for every field and channel
/// of that contact's message.
#[derive(Debug, Clone)]
pub struct RenderContext {
    pub(crate) contact: Value,
    pub(crate) segment: Value,
    pub(crate) campaign: Value,
    pub(crate) extra: Value,
    pub(crate) recipient: Recipient,
    pub(crate) format: Value,
}

impl RenderContext {
    /// Builds the context from the contact, its segment and the campaign.
    pub fn new<C, S, K>(contact: &C, segment: &S, campaign: &K, recipient: Recipient) -> Self
    where
        C: Serialize + ?Sized,
        S: Serialize + ?Sized,
        K: Serialize + ?Sized,
    {
        Self {
            contact: Value::from(Serde(contact)),
            segment: Value::from(Serde(segment)),
            campaign: Value::from(Serde(campaign)),
            extra: Value::from(std::collections::BTreeMap::<String, Value>::new()),
            format: Value::from_object(RecipientFormat {
                locale: LocaleFormat::for_tag(&recipient.locale),
                zone: recipient.time_zone,
            }),
            recipient,
        }
    }

    /// Adds caller-defined data under `extra` (e.g. recommended products).
    #[must_use]
    pub fn with_extra<E: Serialize + ?Sized>(mut self, extra: &E) -> Self {
        self.extra = Value::from(Serde(extra));
        self
    }

    /// The recipient settings.
    #[must_use]
    pub fn recipient(&self) -> &Recipient {
        &self.recipient
    }

    /// The context with the per-message link-tracking values the instrumented HTML uses.
    pub(crate) fn to_tracked_value(
        &self,
        unsubscribe_url: &str,
        links: Value,
        pixel: Value,
    ) -> Value {
        Value::from_object(MessageRoot {
            base: self.root_fields(unsubscribe_url),
            tracking: Some((links, pixel)),
        })
    }

    pub(crate) fn to_value(&self, unsubscribe_url: &str) -> Value {
        Value::from_object(MessageRoot {
            base: self.root_fields(unsubscribe_url),
            tracking: None,
        })
    }

    fn root_fields(&self, unsubscribe_url: &str) -> RootFields {
        RootFields {
            contact: self.contact.clone(),
            segment: self.segment.clone(),
            campaign: self.campaign.clone(),
            extra: self.extra.clone(),
            locale: Value::from(self.recipient.locale.as_str()),
            time_zone: Value::from(self.recipient.time_zone.name()),
            unsubscribe_url: Value::from(unsubscribe_url),
            format: self.format.clone(),
        }
    }
}

/// The names every message context holds, in the order they are listed.
const ROOT_NAMES: &[&str] = &[
    "contact",
    "segment",
    "campaign",
    "extra",
    LOCALE_VAR,
    TIME_ZONE_VAR,
    UNSUBSCRIBE_VAR,
    RECIPIENT_VAR,
];

/// [`ROOT_NAMES`] plus the link-tracking values of instrumented HTML.
const TRACKED_ROOT_NAMES: &[&str] = &[
    "contact",
    "segment",
    "campaign",
    "extra",
    LOCALE_VAR,
    TIME_ZONE_VAR,
    UNSUBSCRIBE_VAR,
    RECIPIENT_VAR,
    LINKS_VAR,
    PIXEL_VAR,
];

static HREF_FN_VALUE: LazyLock<Value> = LazyLock::new(|| Value::from_function(href_fn));
static STATIC_LINK_FN_VALUE: LazyLock<Value> =
    LazyLock::new(|| Value::from_function(static_link_fn));

#[derive(Debug)]
struct RootFields {
    contact: Value,
    segment: Value,
    campaign: Value,
    extra: Value,
    locale: Value,
    time_zone: Value,
    unsubscribe_url: Value,
    format: Value,
}

/// The top-level names of one message's render. Every variable and filter lookup starts
/// here, so names are matched directly instead of scanning a generic map.
#[derive(Debug)]
struct MessageRoot {
    base: RootFields,
    // (links, pixel), for instrumented HTML.
    tracking: Option<(Value, Value)>,
}

impl minijinja::value::Object for MessageRoot {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        let b = &self.base;
        let value = match key {
            "contact" => &b.contact,
            "segment" => &b.segment,
            "campaign" => &b.campaign,
            "extra" => &b.extra,
            LOCALE_VAR => &b.locale,
            TIME_ZONE_VAR => &b.time_zone,
            UNSUBSCRIBE_VAR => &b.unsubscribe_url,
            RECIPIENT_VAR => &b.format,
            LINKS_VAR => &self.tracking.as_ref()?.0,
            PIXEL_VAR => &self.tracking.as_ref()?.1,
            // The link functions are also globals of the engine; found here, a call skips
            // the search through the globals.
            HREF_FN if self.tracking.is_some() => &HREF_FN_VALUE,
            STATIC_LINK_FN if self.tracking.is_some() => &STATIC_LINK_FN_VALUE,
            _ => return None,
        };
        Some(value.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(if self.tracking.is_some() {
            TRACKED_ROOT_NAMES
        } else {
            ROOT_NAMES
        })
    }
}
