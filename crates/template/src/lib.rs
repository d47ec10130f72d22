//! Per-segment message templating for Clarion.
//!
//! A campaign holds one message variant per segment. This crate turns a variant and a
//! contact into a message, safely:
//!
//! * [`Engine`] checks variants when they are saved ([`Engine::check_email`],
//!   [`Engine::check_webhook`]; every problem is a [`TemplateIssue`] naming the field, line
//!   and column) and compiles them ([`Engine::compile_email`] into a [`CompiledEmail`],
//!   [`Engine::compile_webhook`] into a [`CompiledWebhook`]). [`TemplateCache`] keeps compiled
//!   variants for workers.
//! * Rendering is sandboxed (no file or network access, an instruction budget, a recursion
//!   limit and an output cap, see [`Limits`]), strict about undefined values (unless
//!   `default` is used), autoescapes HTML and JSON-escapes webhook payload values. A failure
//!   caused by one contact's data is an `Err` for that message, never a panic.
//! * The render context ([`RenderContext`]) is built from any `serde::Serialize` contact,
//!   segment, campaign and extra data, plus the [`Recipient`]'s locale and time zone used by
//!   the `money`, `number`, `date` and `datetime` filters (see [`locale`]).
//! * [`tracking`]: links become signed click URLs (links written literally in the HTML share
//!   one signed token per message and carry their index into the variant version's
//!   [`link_table`]), an open pixel is added, and
//!   `List-Unsubscribe` / `List-Unsubscribe-Post` values are produced; the same [`Tracker`]
//!   verifies tokens for the tracking endpoints.
//! * [`emails_look_identical`] backs the "two variants are identical" warning.
//! * [`bench`](mod@bench): the rendering benchmark behind `clarion bench render`.
//!
//! The crate does not use the database.
//!
//! # Typical use
//!
//! ```
//! use clarion_template::*;
//! use serde_json::json;
//!
//! # fn main() -> Result<(), TemplateError> {
//! let variant = EmailContent {
//!     subject: "{{ contact.first_name|default('Hello') }}, {{ campaign.name }}".into(),
//!     html: "<p>Your CLV: {{ contact.clv|money('EUR') }}</p>\
//!            <a href=\"https://shop.example/\">Shop</a> <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>".into(),
//!     from: "Shop <news@shop.example>".into(),
//!     ..EmailContent::default()
//! };
//! // When the marketer saves: every issue names field, line and column.
//! validate_email(&variant).map_err(TemplateError::Invalid)?;
//!
//! // In a worker: compile once per variant version, render per contact.
//! let cache = TemplateCache::new(Engine::default(), 1_000);
//! let compiled = cache.email("variant-17:v3", &variant)?;
//! let tracker = Tracker::new("https://t.shop.example", TrackingKeys::new(&[b"secret-from-config-0123"])?)?;
//! let ctx = RenderContext::new(
//!     &json!({"first_name": "Anna", "clv": 1234.5}),
//!     &json!({"name": "Champions"}),
//!     &json!({"name": "Spring"}),
//!     Recipient::new("de-DE", "Europe/Berlin")?,
//! );
//! let email = compiled.render(&ctx, &MessageTracking::new(&tracker, "delivery-9", "contact-4"))?;
//! assert!(email.html.contains("1.234,50\u{a0}€"));
//! assert!(email.html.contains("https://t.shop.example/t/c/"));
//! assert_eq!(email.list_unsubscribe_post, "List-Unsubscribe=One-Click");
//! # Ok(()) }
//! ```
//!
//! # Decisions
//!
//! * **Undefined values.** Printing or iterating a missing value fails (at save time for
//!   unknown top-level names, at render time for a contact lacking a field), unless the
//!   `default` filter supplies one. A test such as `{% if contact.vip %}` is false for a
//!   missing value rather than an error (minijinja's "semi-strict" mode), because marketers
//!   branch on optional attributes all the time.
//! * **Sandbox.** No loader is configured and `include`/`import`/`extends` are refused at
//!   save time, so a template reads nothing but its context. Fuel bounds the instructions,
//!   the recursion limit bounds nesting, and the output cap is enforced while writing, so a
//!   runaway template stops early. Limitation: one expression can still build a large string
//!   in memory before the cap applies (minijinja caps a repeated string at 100 MB).
//! * **Tracking without re-parsing.** Links are found once per variant with lol_html on the
//!   template source, and their `href` values are wrapped in a filter that signs the rendered
//!   target; the open pixel is placed before `</body>` the same way. Each message therefore
//!   costs one template render, not a render plus an HTML pass. A template the HTML parser
//!   cannot read that way (template tags that split an attribute, `{% raw %}`) falls back to
//!   rewriting every rendered body with lol_html; both paths give the same output. Links
//!   inside values printed with `|safe` are neither tracked nor checked.
//! * **Text body.** When the text is left empty, a text template is derived once from the
//!   HTML template (tags dropped, blocks and `<br>` as line breaks, link targets in
//!   parentheses) and rendered per message; when that is impossible the text is derived from
//!   each rendered HTML body.
//! * **JSON payloads.** Payload templates are autoescaped as JSON: every printed value is a
//!   JSON literal, so data cannot change the structure. At save time the payload is rendered
//!   with placeholder values that print as a JSON string, and the result must parse; this
//!   catches unbalanced braces and quotes around values. `|safe` is refused in payloads. At
//!   render time the payload is parsed again and a failure fails that one message.
//! * **Locale formatting.** A small table of common locales (number separators, currency
//!   position, date and time patterns) in [`locale`], with neutral ISO-like fallbacks, keeps
//!   the crate free of ICU data.

pub mod bench;
mod content;
mod context;
mod engine;
mod error;
mod html;
pub mod locale;
pub mod tracking;
mod validate;

pub use content::{
    EmailContent, RenderedEmail, RenderedWebhook, WebhookContent, emails_look_identical,
    webhooks_look_identical,
};
pub use context::{KNOWN_NAMES, Recipient, RenderContext};
pub use engine::{CompiledEmail, CompiledWebhook, Engine, Limits, TemplateCache};
pub use error::{TemplateError, TemplateIssue};
pub use html::{NO_TRACK_ATTRIBUTE, is_forbidden_link, is_http_url, link_table};
pub use tracking::{LinkRef, MessageTracking, Tracker, TrackingKeys};

/// Checks an email variant at save time with the default [`Limits`] and placeholder values.
///
/// # Errors
/// Every problem found, each naming the field, line and column.
pub fn validate_email(content: &EmailContent) -> Result<(), Vec<TemplateIssue>> {
    Engine::default().check_email(content, None)
}

/// Checks a webhook variant at save time with the default [`Limits`] and placeholder values.
///
/// # Errors
/// Every problem found, each naming the field, line and column.
pub fn validate_webhook(content: &WebhookContent) -> Result<(), Vec<TemplateIssue>> {
    Engine::default().check_webhook(content, None)
}
