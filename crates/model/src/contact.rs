use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Attributes, ContactId, ExternalId, ModelError, Patch, ShortText, Timestamp};

/// A valid email address, as the mail system will use it: the domain part is lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = "email", example = "ada@example.com")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(value: impl Into<String>) -> Result<Self, ModelError> {
        let value = value.into();
        let trimmed = value.trim();
        let parsed =
            email_address::EmailAddress::from_str(trimmed).map_err(|e| ModelError::Email {
                value: value.clone(),
                reason: e.to_string(),
            })?;
        // Display names ("Ada <ada@example.com>") are not addresses of a contact.
        if parsed.email() != trimmed || !parsed.domain().contains('.') {
            return Err(ModelError::Email {
                value,
                reason: "expected a bare address such as name@example.com".to_string(),
            });
        }
        Ok(EmailAddress(format!(
            "{}@{}",
            parsed.local_part(),
            parsed.domain().to_ascii_lowercase()
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`, lower-case; segment rules select on it.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        EmailAddress::parse(value)
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.0
    }
}

/// An IANA time zone such as `Europe/Berlin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZone(chrono_tz::Tz);

/// The API document lists every zone name the parser takes.
impl utoipa::PartialSchema for TimeZone {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names = chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name());
        string_enum("An IANA time zone", names, "Europe/Berlin")
    }
}

impl utoipa::ToSchema for TimeZone {}

/// A string schema that takes only the given values.
fn string_enum(
    description: &str,
    values: impl Iterator<Item = &'static str>,
    example: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(description))
        .enum_values(Some(values))
        .examples([example])
        .into()
}

impl TimeZone {
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        value
            .trim()
            .parse::<chrono_tz::Tz>()
            .map(TimeZone)
            .map_err(|_| ModelError::TimeZone(value.to_string()))
    }

    pub fn tz(self) -> chrono_tz::Tz {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl TryFrom<String> for TimeZone {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        TimeZone::parse(&value)
    }
}

impl From<TimeZone> for String {
    fn from(value: TimeZone) -> Self {
        value.name().to_string()
    }
}

/// An ISO 3166-1 alpha-2 country code, upper-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct CountryCode(&'static str);

/// The API document lists every code the parser takes.
impl utoipa::PartialSchema for CountryCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let codes = celes::Country::get_countries().map(|country| country.alpha2);
        string_enum(
            "An ISO 3166-1 alpha-2 country code",
            codes.into_iter(),
            "DE",
        )
    }
}

impl utoipa::ToSchema for CountryCode {}

impl CountryCode {
    /// Parses a two-letter code, in any case.
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        let code = value.trim();
        if code.len() != 2 {
            return Err(ModelError::Country(value.to_string()));
        }
        celes::Country::from_alpha2(code)
            .map(|country| CountryCode(country.alpha2))
            .map_err(|_| ModelError::Country(value.to_string()))
    }

    /// Finds a country by its English name or a common alias ("Germany", "USA", "EIRE"),
    /// falling back to [`CountryCode::parse`]; used when importing spreadsheets.
    pub fn from_name(name: &str) -> Result<Self, ModelError> {
        let trimmed = name.trim();
        let alias = match trimmed.to_ascii_lowercase().as_str() {
            "eire" => Some("IE"),
            "rsa" => Some("ZA"),
            "usa" => Some("US"),
            "uk" | "great britain" => Some("GB"),
            "czech republic" => Some("CZ"),
            _ => None,
        };
        if let Some(code) = alias {
            return CountryCode::parse(code);
        }
        // celes keys its names lower-case without spaces ("unitedkingdom").
        let key: String = trimmed
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        CountryCode::parse(trimmed).or_else(|_| {
            celes::Country::from_str(&key)
                .or_else(|_| celes::Country::from_alias(&key))
                .map(|country| CountryCode(country.alpha2))
                .map_err(|_| ModelError::Country(name.to_string()))
        })
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

// Written by hand: derived, the `&'static str` inside would make serde borrow from the input.
impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        CountryCode::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl From<CountryCode> for String {
    fn from(value: CountryCode) -> Self {
        value.0.to_string()
    }
}

/// A BCP 47 language tag such as `de-DE`, `pt-BR` or `en`, normalised to `ll-RR` case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(
    value_type = String,
    pattern = r"^\s*[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*\s*$",
    example = "de-DE"
)]
pub struct Locale(String);

impl Locale {
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::Locale(value.to_string());
        let mut parts = value.trim().split(['-', '_']);
        let language = parts.next().ok_or_else(bad)?;
        if !(2..=3).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_alphabetic())
        {
            return Err(bad());
        }
        let mut tag = language.to_ascii_lowercase();
        for part in parts {
            if !(2..=8).contains(&part.len()) || !part.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(bad());
            }
            tag.push('-');
            if part.len() == 2 {
                tag.push_str(&part.to_ascii_uppercase());
            } else {
                tag.push_str(part);
            }
        }
        Ok(Locale(tag))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Locale {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Locale::parse(&value)
    }
}

impl From<Locale> for String {
    fn from(value: Locale) -> Self {
        value.0
    }
}

/// A phone number in international (E.164) form: `+` and 7 to 15 digits. Spaces, dashes,
/// dots and brackets are removed when parsing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(
    value_type = String,
    pattern = r"^[ .()-]*\+[ .()-]*[1-9](?:[ .()-]*[0-9]){6,14}[ .()-]*$",
    example = "+4930123456"
)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        let compact: String = value
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+').unwrap_or("");
        if (7..=15).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_digit())
            && !digits.starts_with('0')
        {
            Ok(PhoneNumber(compact))
        } else {
            Err(ModelError::Phone(value.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        PhoneNumber::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

/// A way Clarion reaches a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    /// The channel stored or sent as `value` (`email`, `webhook`).
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == value)
    }
}

/// Whether a contact may be sent messages on a channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatus {
    #[default]
    Subscribed,
    Unsubscribed,
    /// The address bounced permanently.
    Bounced,
    /// The contact marked a message as spam.
    Complained,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Subscribed => "subscribed",
            SubscriptionStatus::Unsubscribed => "unsubscribed",
            SubscriptionStatus::Bounced => "bounced",
            SubscriptionStatus::Complained => "complained",
        }
    }

    pub fn parse(value: &str) -> Result<Self, ModelError> {
        Ok(match value {
            "subscribed" => SubscriptionStatus::Subscribed,
            "unsubscribed" => SubscriptionStatus::Unsubscribed,
            "bounced" => SubscriptionStatus::Bounced,
            "complained" => SubscriptionStatus::Complained,
            other => return Err(ModelError::SubscriptionStatus(other.to_string())),
        })
    }
}

/// A contact's subscription status on every channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Subscriptions {
    pub email: SubscriptionStatus,
    pub webhook: SubscriptionStatus,
}

/// A change to a contact's subscriptions; channels left out keep their status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(from = "SubscriptionsObject")]
pub struct SubscriptionsPatch {
    pub email: Option<SubscriptionStatus>,
    pub webhook: Option<SubscriptionStatus>,
}

/// [`SubscriptionsPatch`] as it arrives: only a JSON object, where serde would also read a
/// struct from an array (`[null, null]`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionsFields {
    email: Option<SubscriptionStatus>,
    webhook: Option<SubscriptionStatus>,
}

/// The object form of [`SubscriptionsFields`].
struct SubscriptionsObject(SubscriptionsFields);

impl<'de> Deserialize<'de> for SubscriptionsObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        SubscriptionsFields::deserialize(serde_json::Value::Object(value))
            .map(SubscriptionsObject)
            .map_err(serde::de::Error::custom)
    }
}

impl From<SubscriptionsObject> for SubscriptionsPatch {
    fn from(SubscriptionsObject(fields): SubscriptionsObject) -> Self {
        SubscriptionsPatch {
            email: fields.email,
            webhook: fields.webhook,
        }
    }
}

impl SubscriptionsPatch {
    pub fn apply(self, current: Subscriptions) -> Subscriptions {
        Subscriptions {
            email: self.email.unwrap_or(current.email),
            webhook: self.webhook.unwrap_or(current.webhook),
        }
    }
}

/// A customer as Clarion stores it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Contact {
    #[serde(skip)]
    pub id: ContactId,
    pub external_id: ExternalId,
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
    pub first_name: Option<ShortText>,
    pub last_name: Option<ShortText>,
    pub locale: Option<Locale>,
    pub time_zone: Option<TimeZone>,
    pub country: Option<CountryCode>,
    pub region: Option<ShortText>,
    pub city: Option<ShortText>,
    /// Custom attributes; each name keeps the type of its first value in the workspace.
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    pub subscriptions: Subscriptions,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Declares a struct holding the changeable fields of a contact, so that the PATCH body and
/// the batch-upsert item cannot drift apart (serde cannot combine `flatten` with
/// `deny_unknown_fields`, so one cannot embed the other).
macro_rules! contact_changes {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
            #[serde(default)]
            #[schema(value_type = Option<EmailAddress>)]
            pub email: Patch<EmailAddress>,
            #[serde(default)]
            #[schema(value_type = Option<PhoneNumber>)]
            pub phone: Patch<PhoneNumber>,
            #[serde(default)]
            #[schema(value_type = Option<ShortText>)]
            pub first_name: Patch<ShortText>,
            #[serde(default)]
            #[schema(value_type = Option<ShortText>)]
            pub last_name: Patch<ShortText>,
            #[serde(default)]
            #[schema(value_type = Option<Locale>)]
            pub locale: Patch<Locale>,
            #[serde(default)]
            #[schema(value_type = Option<TimeZone>)]
            pub time_zone: Patch<TimeZone>,
            #[serde(default)]
            #[schema(value_type = Option<CountryCode>)]
            pub country: Patch<CountryCode>,
            #[serde(default)]
            #[schema(value_type = Option<ShortText>)]
            pub region: Patch<ShortText>,
            #[serde(default)]
            #[schema(value_type = Option<ShortText>)]
            pub city: Patch<ShortText>,
            /// Custom attributes to set; `null` removes one.
            #[serde(default)]
            #[schema(schema_with = crate::attribute::attributes_schema)]
            pub attributes: Attributes,
            #[serde(default)]
            pub subscriptions: Option<SubscriptionsPatch>,
        }
    };
}

contact_changes! {
    /// Changes to a contact, as sent to `PATCH /contacts/{external_id}`: a field left out keeps
    /// its value, `null` clears it. Attributes are merged one by one; an attribute set to
    /// `null` is removed.
    pub struct ContactPatch {}
}

contact_changes! {
    /// One item of `POST /contacts/batch`: the contact named by `external_id` is created, or
    /// updated with the same rules as [`ContactPatch`].
    pub struct ContactUpsert {
        pub external_id: ExternalId,
    }
}

impl ContactUpsert {
    /// Splits the item into the contact it names and the changes to make.
    pub fn into_parts(self) -> (ExternalId, ContactPatch) {
        (
            self.external_id,
            ContactPatch {
                email: self.email,
                phone: self.phone,
                first_name: self.first_name,
                last_name: self.last_name,
                locale: self.locale,
                time_zone: self.time_zone,
                country: self.country,
                region: self.region,
                city: self.city,
                attributes: self.attributes,
                subscriptions: self.subscriptions,
            },
        )
    }
}

impl Contact {
    /// A contact as it is before anything is known of it.
    pub fn new(external_id: ExternalId, now: Timestamp) -> Self {
        Contact {
            id: ContactId(0),
            external_id,
            email: None,
            phone: None,
            first_name: None,
            last_name: None,
            locale: None,
            time_zone: None,
            country: None,
            region: None,
            city: None,
            attributes: Attributes::new(),
            subscriptions: Subscriptions::default(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Applies a patch. Attribute types are checked by the caller, which knows the workspace's
    /// attribute definitions.
    pub fn apply(&mut self, patch: ContactPatch, now: Timestamp) {
        self.email = patch.email.apply(self.email.take());
        self.phone = patch.phone.apply(self.phone.take());
        self.first_name = patch.first_name.apply(self.first_name.take());
        self.last_name = patch.last_name.apply(self.last_name.take());
        self.locale = patch.locale.apply(self.locale.take());
        self.time_zone = patch.time_zone.apply(self.time_zone.take());
        self.country = patch.country.apply(self.country.take());
        self.region = patch.region.apply(self.region.take());
        self.city = patch.city.apply(self.city.take());
        for (name, value) in patch.attributes {
            if value.is_null() {
                self.attributes.remove(&name);
            } else {
                self.attributes.insert(name, value);
            }
        }
        if let Some(subscriptions) = patch.subscriptions {
            self.subscriptions = subscriptions.apply(self.subscriptions);
        }
        self.updated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses_are_bare_with_a_lower_case_domain() {
        let email = EmailAddress::parse("Ada.Lovelace@Example.COM").unwrap();
        assert_eq!(email.as_str(), "Ada.Lovelace@example.com");
        assert_eq!(email.domain(), "example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "Ada <ada@example.com>",
            "ada@localhost",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn countries_time_zones_locales_and_phones_are_checked() {
        assert_eq!(CountryCode::parse("de").unwrap().as_str(), "DE");
        assert!(CountryCode::parse("XX").is_err());
        assert_eq!(
            CountryCode::from_name("United Kingdom").unwrap().as_str(),
            "GB"
        );
        assert_eq!(CountryCode::from_name("EIRE").unwrap().as_str(), "IE");
        assert!(TimeZone::parse("Europe/Berlin").is_ok());
        assert!(TimeZone::parse("Mars/Olympus").is_err());
        assert_eq!(Locale::parse("pt_br").unwrap().as_str(), "pt-BR");
        assert!(Locale::parse("english!").is_err());
        assert_eq!(
            PhoneNumber::parse("+49 (30) 123-456").unwrap().as_str(),
            "+4930123456"
        );
        assert!(PhoneNumber::parse("030 123456").is_err());
    }

    #[test]
    fn patches_keep_clear_and_merge() {
        let mut contact = Contact::new(ExternalId::parse("c1").unwrap(), Timestamp::from_millis(0));
        let patch: ContactPatch = serde_json::from_value(serde_json::json!({
            "email": "a@example.com", "city": "Berlin", "attributes": {"tier": "gold", "age": 40}
        }))
        .unwrap();
        contact.apply(patch, Timestamp::from_millis(1));
        let patch: ContactPatch = serde_json::from_value(serde_json::json!({
            "city": null, "attributes": {"tier": null}
        }))
        .unwrap();
        contact.apply(patch, Timestamp::from_millis(2));
        assert_eq!(contact.email.unwrap().as_str(), "a@example.com");
        assert_eq!(contact.city, None);
        assert_eq!(contact.attributes.len(), 1);
        assert_eq!(contact.updated_at, Timestamp::from_millis(2));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let result: Result<ContactUpsert, _> =
            serde_json::from_value(serde_json::json!({"external_id": "c1", "emial": "x"}));
        assert!(result.is_err());
    }
}
