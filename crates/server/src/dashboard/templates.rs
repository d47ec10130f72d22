//! The dashboard's page templates, built into the binary and parsed once. Undefined values
//! are errors (not blanks), so a page that names a value its handler does not give fails in
//! the tests that render every template.

use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};

/// Every template, by name: the layout and one file per page.
pub const TEMPLATES: [(&str, &str); 29] = [
    ("layout.html", include_str!("../../templates/layout.html")),
    ("login.html", include_str!("../../templates/login.html")),
    (
        "password.html",
        include_str!("../../templates/password.html"),
    ),
    ("message.html", include_str!("../../templates/message.html")),
    (
        "overview.html",
        include_str!("../../templates/overview.html"),
    ),
    ("queues.html", include_str!("../../templates/queues.html")),
    (
        "sessions.html",
        include_str!("../../templates/sessions.html"),
    ),
    ("users.html", include_str!("../../templates/users.html")),
    (
        "contacts.html",
        include_str!("../../templates/contacts.html"),
    ),
    ("contact.html", include_str!("../../templates/contact.html")),
    (
        "segments.html",
        include_str!("../../templates/segments.html"),
    ),
    ("segment.html", include_str!("../../templates/segment.html")),
    (
        "segment_form.html",
        include_str!("../../templates/segment_form.html"),
    ),
    (
        "segment_preview.html",
        include_str!("../../templates/segment_preview.html"),
    ),
    (
        "crosstab.html",
        include_str!("../../templates/crosstab.html"),
    ),
    (
        "suggestions.html",
        include_str!("../../templates/suggestions.html"),
    ),
    ("forgot.html", include_str!("../../templates/forgot.html")),
    ("fields.html", include_str!("../../templates/fields.html")),
    (
        "schedule.html",
        include_str!("../../templates/schedule.html"),
    ),
    (
        "channels.html",
        include_str!("../../templates/channels.html"),
    ),
    (
        "settings.html",
        include_str!("../../templates/settings.html"),
    ),
    (
        "suppressions.html",
        include_str!("../../templates/suppressions.html"),
    ),
    (
        "campaigns.html",
        include_str!("../../templates/campaigns.html"),
    ),
    (
        "campaign.html",
        include_str!("../../templates/campaign.html"),
    ),
    (
        "campaign_form.html",
        include_str!("../../templates/campaign_form.html"),
    ),
    ("confirm.html", include_str!("../../templates/confirm.html")),
    (
        "progress.html",
        include_str!("../../templates/progress.html"),
    ),
    ("preview.html", include_str!("../../templates/preview.html")),
    ("report.html", include_str!("../../templates/report.html")),
];

fn build() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    env.add_filter("datetime", datetime_filter);
    env.add_filter("thousands", thousands);
    env.add_filter("moment", moment);
    Ok(env)
}

/// The templates, parsed on first use.
///
/// # Errors
/// A template that does not parse (caught by the tests before it ships).
pub fn environment() -> Result<&'static Environment<'static>, String> {
    static ENV: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();
    ENV.get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(Clone::clone)
}

/// Renders a page.
pub fn render(name: &str, context: minijinja::Value) -> Result<String, String> {
    let env = environment()?;
    env.get_template(name)
        .and_then(|template| template.render(context))
        .map_err(|e| format!("template {name}: {e:#}"))
}

/// Milliseconds since 1970, or an RFC 3339 time as the API writes them, as
/// `2026-12-04 05:12 UTC` (the `datetime` filter).
fn datetime_filter(value: minijinja::Value) -> String {
    match value.as_i64() {
        Some(millis) => datetime(millis),
        None => value.as_str().map(moment).unwrap_or_default(),
    }
}

/// Milliseconds since 1970 as `2026-12-04 05:12 UTC`.
pub(crate) fn datetime(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// An RFC 3339 time as the API gives it (`2026-12-04T05:12:09.123Z`) read like
/// [`datetime`]'s; anything else as it is.
pub(crate) fn moment(value: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|at| at.to_utc().format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| value.to_owned())
}

/// 1234567 as `1,234,567`.
fn thousands(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if value < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        environment().unwrap();
    }

    #[test]
    fn figures_are_grouped_and_times_read_in_utc() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1000), "-1,000");
        assert_eq!(datetime_filter(0.into()), "1970-01-01 00:00 UTC");
        assert_eq!(
            datetime_filter("2026-12-04T05:12:09.120Z".into()),
            "2026-12-04 05:12 UTC"
        );
        assert_eq!(datetime(0), "1970-01-01 00:00 UTC");
        assert_eq!(
            moment("2026-12-04T06:12:09.5+01:00"),
            "2026-12-04 05:12 UTC"
        );
        assert_eq!(moment("soon"), "soon");
    }
}
