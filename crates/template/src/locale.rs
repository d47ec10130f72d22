//! Locale- and time-zone-aware helpers for templates: `money`, `number`, `date`, `datetime`.
//!
//! Number and date conventions come from a small table of common locales (see
//! [`LocaleFormat::for_tag`]): a full tag such as `de-CH` is looked up first, then its language
//! (`de`), and anything else falls back to neutral conventions (`1,234.56`, `2024-03-01`,
//! 24-hour time). Currency symbols and decimals come from a table of common ISO 4217 codes;
//! other codes are printed as the code itself after the amount.
//!
//! Dates accept RFC 3339 timestamps, `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` (read as UTC) and
//! integer Unix seconds. Timestamps are shown in the recipient's time zone; plain dates are
//! shown as written. An optional strftime format overrides the locale's pattern (month and day
//! names are English).

use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

use crate::context::{LOCALE_VAR, RECIPIENT_VAR, RecipientFormat, TIME_ZONE_VAR};
use crate::validate::is_placeholder;

/// How numbers, amounts and dates are written in one locale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocaleFormat {
    /// Decimal separator.
    pub decimal: &'static str,
    /// Thousands separator.
    pub group: &'static str,
    /// Whether the currency symbol follows the amount (`12,00 €`) or precedes it (`€12.00`).
    pub symbol_after: bool,
    /// Whether a (no-break) space separates the symbol from the amount.
    pub symbol_space: bool,
    /// strftime pattern of a date.
    pub date: &'static str,
    /// strftime pattern of a time of day.
    pub time: &'static str,
}

const NBSP: &str = "\u{a0}";
const NNBSP: &str = "\u{202f}";

const NEUTRAL: LocaleFormat = LocaleFormat {
    decimal: ".",
    group: ",",
    symbol_after: false,
    symbol_space: false,
    date: "%Y-%m-%d",
    time: "%H:%M",
};

const fn lf(
    decimal: &'static str,
    group: &'static str,
    symbol_after: bool,
    symbol_space: bool,
    date: &'static str,
    time: &'static str,
) -> LocaleFormat {
    LocaleFormat {
        decimal,
        group,
        symbol_after,
        symbol_space,
        date,
        time,
    }
}

/// The locale table; full tags first, then bare languages.
const LOCALES: &[(&str, LocaleFormat)] = &[
    ("en-us", lf(".", ",", false, false, "%m/%d/%Y", "%-I:%M %p")),
    ("en-gb", lf(".", ",", false, false, "%d/%m/%Y", "%H:%M")),
    ("en-ie", lf(".", ",", false, false, "%d/%m/%Y", "%H:%M")),
    ("en-au", lf(".", ",", false, false, "%d/%m/%Y", "%-I:%M %p")),
    ("en-ca", lf(".", ",", false, false, "%Y-%m-%d", "%-I:%M %p")),
    ("en-in", lf(".", ",", false, false, "%d/%m/%Y", "%-I:%M %p")),
    ("de-ch", lf(".", "’", false, true, "%d.%m.%Y", "%H:%M")),
    ("fr-ca", lf(",", NBSP, true, true, "%Y-%m-%d", "%H:%M")),
    ("fr-ch", lf(",", NNBSP, true, true, "%d.%m.%Y", "%H:%M")),
    ("pt-br", lf(",", ".", false, true, "%d/%m/%Y", "%H:%M")),
    ("es-mx", lf(".", ",", false, false, "%d/%m/%Y", "%H:%M")),
    ("en", lf(".", ",", false, false, "%m/%d/%Y", "%-I:%M %p")),
    ("de", lf(",", ".", true, true, "%d.%m.%Y", "%H:%M")),
    ("fr", lf(",", NNBSP, true, true, "%d/%m/%Y", "%H:%M")),
    ("es", lf(",", ".", true, true, "%d/%m/%Y", "%H:%M")),
    ("it", lf(",", ".", true, true, "%d/%m/%Y", "%H:%M")),
    ("nl", lf(",", ".", false, true, "%d-%m-%Y", "%H:%M")),
    ("pt", lf(",", NBSP, true, true, "%d/%m/%Y", "%H:%M")),
    ("sv", lf(",", NBSP, true, true, "%Y-%m-%d", "%H:%M")),
    ("da", lf(",", ".", true, true, "%d.%m.%Y", "%H.%M")),
    ("nb", lf(",", NBSP, true, true, "%d.%m.%Y", "%H:%M")),
    ("no", lf(",", NBSP, true, true, "%d.%m.%Y", "%H:%M")),
    ("fi", lf(",", NBSP, true, true, "%-d.%-m.%Y", "%H.%M")),
    ("pl", lf(",", NBSP, true, true, "%d.%m.%Y", "%H:%M")),
    ("cs", lf(",", NBSP, true, true, "%d.%m.%Y", "%H:%M")),
    ("ja", lf(".", ",", false, false, "%Y/%m/%d", "%H:%M")),
    ("zh", lf(".", ",", false, false, "%Y/%m/%d", "%H:%M")),
    ("ko", lf(".", ",", false, false, "%Y.%m.%d", "%H:%M")),
];

/// Currency symbol and number of minor-unit digits of common ISO 4217 codes.
const CURRENCIES: &[(&str, &str, usize)] = &[
    ("USD", "$", 2),
    ("EUR", "€", 2),
    ("GBP", "£", 2),
    ("JPY", "¥", 0),
    ("CNY", "CN¥", 2),
    ("KRW", "₩", 0),
    ("INR", "₹", 2),
    ("CHF", "CHF", 2),
    ("SEK", "kr", 2),
    ("NOK", "kr", 2),
    ("DKK", "kr.", 2),
    ("PLN", "zł", 2),
    ("CZK", "Kč", 2),
    ("BRL", "R$", 2),
    ("CAD", "CA$", 2),
    ("AUD", "A$", 2),
    ("MXN", "MX$", 2),
];

impl LocaleFormat {
    /// The conventions of a BCP 47 tag such as `de-CH` or `fr_FR` (case and `_` tolerated).
    #[must_use]
    pub fn for_tag(tag: &str) -> LocaleFormat {
        let tag = tag.trim().replace('_', "-").to_ascii_lowercase();
        let find = |t: &str| LOCALES.iter().find(|(k, _)| *k == t).map(|(_, f)| *f);
        find(&tag)
            .or_else(|| tag.split('-').next().and_then(find))
            .unwrap_or(NEUTRAL)
    }

    /// `value` with `decimals` digits after the separator and grouped thousands.
    #[must_use]
    pub fn number(&self, value: f64, decimals: usize) -> String {
        let mut out = String::with_capacity(24);
        let unsigned = self.write_unsigned(&mut out, value.abs(), decimals);
        // Rounding can turn a tiny negative value into zero; do not print "-0".
        if value.is_sign_negative() && !unsigned {
            out.insert(0, '-');
        }
        out
    }

    /// Writes `value` (not negative) grouped, with `decimals` digits; returns whether the
    /// written number is zero.
    fn write_unsigned(&self, out: &mut String, value: f64, decimals: usize) -> bool {
        const POW10: [u64; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];
        match POW10.get(decimals) {
            // Integer arithmetic is exact here and far cheaper than float formatting; the
            // digits go through a stack buffer, as amounts are formatted many times a message.
            Some(&scale) if value < 1e12 => {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                let scaled = (value * scale as f64).round() as u64;
                let mut buf = [0u8; 20];
                let mut start = buf.len();
                let mut int = scaled / scale;
                loop {
                    start -= 1;
                    // A decimal digit, so the cast keeps the value.
                    #[allow(clippy::cast_possible_truncation)]
                    {
                        buf[start] = b'0' + (int % 10) as u8;
                    }
                    int /= 10;
                    if int == 0 {
                        break;
                    }
                }
                self.push_grouped(out, buf.get(start..).unwrap_or_default());
                if decimals > 0 {
                    out.push_str(self.decimal);
                    let _ = write!(out, "{:0width$}", scaled % scale, width = decimals);
                }
                scaled == 0
            }
            _ => {
                let fixed = format!("{value:.decimals$}");
                let (int, frac) = fixed.split_once('.').unwrap_or((&fixed, ""));
                self.push_grouped(out, int.as_bytes());
                if !frac.is_empty() {
                    out.push_str(self.decimal);
                    out.push_str(frac);
                }
                int.bytes().chain(frac.bytes()).all(|b| b == b'0')
            }
        }
    }

    /// Appends ASCII `digits` with the group separator every three digits from the right.
    fn push_grouped(&self, out: &mut String, digits: &[u8]) {
        for (i, &d) in digits.iter().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push_str(self.group);
            }
            out.push(char::from(d));
        }
    }

    /// `amount` in `currency` (ISO 4217 code), e.g. `1.234,50 €` in `de`.
    #[must_use]
    pub fn money(&self, amount: f64, currency: &str) -> String {
        let code = currency.trim();
        let found = CURRENCIES
            .iter()
            .find(|(c, _, _)| c.eq_ignore_ascii_case(code));
        let upper;
        let (symbol, decimals) = match found {
            Some((_, s, d)) => (*s, *d),
            None => {
                upper = code.to_ascii_uppercase();
                (upper.as_str(), 2)
            }
        };
        let known = found.is_some();
        let space = if self.symbol_space || !known {
            NBSP
        } else {
            ""
        };
        let mut out = String::with_capacity(32);
        let negative = amount.is_sign_negative();
        if negative {
            out.push('-');
        }
        let zero = if self.symbol_after || !known {
            let zero = self.write_unsigned(&mut out, amount.abs(), decimals);
            out.push_str(space);
            out.push_str(symbol);
            zero
        } else {
            out.push_str(symbol);
            out.push_str(space);
            self.write_unsigned(&mut out, amount.abs(), decimals)
        };
        if negative && zero {
            out.remove(0);
        }
        out
    }
}

/// A point in time or a calendar date read from a template value.
enum When {
    Instant(DateTime<Utc>),
    Day(NaiveDate),
}

fn parse_when(value: &Value) -> Result<When, Error> {
    if let Some(s) = value.as_str() {
        let s = s.trim();
        if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
            return Ok(When::Instant(dt.with_timezone(&Utc)));
        }
        for pattern in [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ] {
            if let Ok(naive) = NaiveDateTime::parse_from_str(s, pattern) {
                return Ok(When::Instant(naive.and_utc()));
            }
        }
        if let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(When::Day(day));
        }
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot read {s:?} as a date (expected RFC 3339, YYYY-MM-DD or Unix seconds)"),
        ));
    }
    if let Ok(secs) = i64::try_from(value.clone()) {
        return DateTime::from_timestamp(secs, 0)
            .map(When::Instant)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{secs} is out of range for a Unix timestamp"),
                )
            });
    }
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("cannot read a {} as a date", value.kind()),
    ))
}

fn parsed(state: &State<'_, '_>) -> Option<RecipientFormat> {
    state
        .lookup(RECIPIENT_VAR)
        .and_then(|v| v.downcast_object_ref::<RecipientFormat>().copied())
}

fn recipient_locale(state: &State<'_, '_>) -> LocaleFormat {
    if let Some(format) = parsed(state) {
        return format.locale;
    }
    state
        .lookup(LOCALE_VAR)
        .and_then(|v| v.as_str().map(LocaleFormat::for_tag))
        .unwrap_or(NEUTRAL)
}

fn recipient_zone(state: &State<'_, '_>) -> Tz {
    if let Some(format) = parsed(state) {
        return format.zone;
    }
    state
        .lookup(TIME_ZONE_VAR)
        .and_then(|v| v.as_str().and_then(|s| s.parse::<Tz>().ok()))
        .unwrap_or(Tz::UTC)
}

fn to_f64(value: &Value, what: &str) -> Result<f64, Error> {
    if let Some(s) = value.as_str() {
        return s.trim().parse::<f64>().map_err(|_| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("{what}: {s:?} is not a number"),
            )
        });
    }
    if value.kind() == ValueKind::Number
        && let Ok(f) = f64::try_from(value.clone())
    {
        return Ok(f);
    }
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{what}: expected a number, got a {}", value.kind()),
    ))
}

/// Writes a strftime pattern without panicking on a bad specifier.
fn strftime<T>(value: &T, pattern: &str) -> Result<String, Error>
where
    T: FormatWith,
{
    let items: Vec<Item<'_>> = StrftimeItems::new(pattern).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{pattern:?} is not a valid date format"),
        ));
    }
    let mut out = String::new();
    value.write_with(&items, &mut out).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("the date cannot be written with format {pattern:?}"),
        )
    })?;
    Ok(out)
}

trait FormatWith {
    fn write_with(&self, items: &[Item<'_>], out: &mut String) -> std::fmt::Result;
}

impl FormatWith for DateTime<Tz> {
    fn write_with(&self, items: &[Item<'_>], out: &mut String) -> std::fmt::Result {
        use std::fmt::Write;
        write!(out, "{}", self.format_with_items(items.iter()))
    }
}

impl FormatWith for NaiveDate {
    fn write_with(&self, items: &[Item<'_>], out: &mut String) -> std::fmt::Result {
        use std::fmt::Write;
        write!(out, "{}", self.format_with_items(items.iter()))
    }
}

const PLACEHOLDER_TEXT: &str = "sample";

/// `{{ amount|money("EUR") }}`: the amount in the currency, written the recipient's way.
pub(crate) fn money_filter(
    state: &State<'_, '_>,
    amount: &Value,
    currency: &str,
) -> Result<String, Error> {
    if is_placeholder(amount) {
        return Ok(PLACEHOLDER_TEXT.to_owned());
    }
    let amount = to_f64(amount, "money")?;
    Ok(recipient_locale(state).money(amount, currency))
}

/// `{{ n|number }}` or `{{ n|number(2) }}`: grouped digits with the recipient's separators.
pub(crate) fn number_filter(
    state: &State<'_, '_>,
    value: &Value,
    decimals: Option<usize>,
) -> Result<String, Error> {
    if is_placeholder(value) {
        return Ok(PLACEHOLDER_TEXT.to_owned());
    }
    let n = to_f64(value, "number")?;
    let decimals = decimals.unwrap_or_else(|| {
        if value.is_integer() || n.fract() == 0.0 {
            0
        } else {
            2
        }
    });
    if decimals > 20 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "number: at most 20 decimals",
        ));
    }
    Ok(recipient_locale(state).number(n, decimals))
}

fn format_when(
    state: &State<'_, '_>,
    value: &Value,
    format: Option<&str>,
    with_time: bool,
) -> Result<String, Error> {
    if is_placeholder(value) {
        return Ok(PLACEHOLDER_TEXT.to_owned());
    }
    let locale = recipient_locale(state);
    let default_pattern;
    let pattern = match format {
        Some(f) => f,
        None if with_time => {
            default_pattern = format!("{} {}", locale.date, locale.time);
            &default_pattern
        }
        None => locale.date,
    };
    match parse_when(value)? {
        When::Instant(utc) => strftime(&utc.with_timezone(&recipient_zone(state)), pattern),
        When::Day(day) => {
            if with_time && format.is_none() {
                strftime(&day, locale.date)
            } else {
                strftime(&day, pattern)
            }
        }
    }
}

/// `{{ t|date }}` or `{{ t|date("%d %B %Y") }}`: the date in the recipient's time zone.
pub(crate) fn date_filter(
    state: &State<'_, '_>,
    value: &Value,
    format: Option<&str>,
) -> Result<String, Error> {
    format_when(state, value, format, false)
}

/// `{{ t|datetime }}`: date and time of day in the recipient's time zone.
pub(crate) fn datetime_filter(
    state: &State<'_, '_>,
    value: &Value,
    format: Option<&str>,
) -> Result<String, Error> {
    format_when(state, value, format, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_group_and_round() {
        let en = LocaleFormat::for_tag("en-US");
        assert_eq!(en.number(1_234_567.891, 2), "1,234,567.89");
        assert_eq!(en.number(-0.001, 2), "0.00");
        assert_eq!(en.number(999.0, 0), "999");
        let de = LocaleFormat::for_tag("de_DE");
        assert_eq!(de.number(-1234.5, 2), "-1.234,50");
    }

    #[test]
    fn money_places_symbols() {
        assert_eq!(LocaleFormat::for_tag("en").money(-5.5, "usd"), "-$5.50");
        assert_eq!(
            LocaleFormat::for_tag("de").money(1234.5, "EUR"),
            "1.234,50\u{a0}€"
        );
        assert_eq!(LocaleFormat::for_tag("ja").money(1234.4, "JPY"), "¥1,234");
        assert_eq!(
            LocaleFormat::for_tag("xx").money(3.0, "XTS"),
            "3.00\u{a0}XTS"
        );
    }
}
