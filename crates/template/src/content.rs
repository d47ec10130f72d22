//! What a marketer writes (variant content) and what a worker sends (rendered messages).

use serde::{Deserialize, Serialize};

/// The templates of one email variant, as saved by a marketer.
///
/// Every field is a minijinja template. `html` is autoescaped for HTML; the other fields are
/// plain text. When `text` is `None` or blank, the text body is derived from the rendered HTML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailContent {
    /// Subject line; required and must not render blank.
    pub subject: String,
    /// Preview text shown by mail clients after the subject; may be empty.
    #[serde(default)]
    pub preheader: String,
    /// HTML body.
    pub html: String,
    /// Plain-text body; derived from the HTML when absent or blank.
    #[serde(default)]
    pub text: Option<String>,
    /// `From` header, e.g. `Shop <news@shop.example>`.
    pub from: String,
    /// `Reply-To` header; none when absent or blank.
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// The templates of one webhook variant.
///
/// The payload is rendered with JSON autoescaping: `{{ contact.name }}` inserts a JSON string
/// literal (quotes included), so write `{"name": {{ contact.name }}}`, not
/// `{"name": "{{ contact.name }}"}`. Numbers, booleans, lists and maps are inserted as JSON too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookContent {
    /// JSON payload template; must render to one valid JSON value.
    pub payload: String,
    /// Extra HTTP headers, name to value template (plain text, no line breaks after rendering).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

/// One email ready to hand to the mail transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedEmail {
    /// Subject, on one line.
    pub subject: String,
    /// Preview text, on one line (empty when none).
    pub preheader: String,
    /// HTML body with tracking links and the open pixel.
    pub html: String,
    /// Plain-text body.
    pub text: String,
    /// `From` header value.
    pub from: String,
    /// `Reply-To` header value, if any.
    pub reply_to: Option<String>,
    /// `List-Unsubscribe` header value: `<https://...>` and optionally `, <mailto:...>`.
    pub list_unsubscribe: String,
    /// `List-Unsubscribe-Post` header value (RFC 8058): always `List-Unsubscribe=One-Click`.
    pub list_unsubscribe_post: &'static str,
}

/// One webhook call ready to send.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderedWebhook {
    /// The parsed payload (it was checked to be valid JSON).
    pub payload: serde_json::Value,
    /// The payload exactly as rendered; send these bytes so a signature covers what was
    /// rendered.
    pub body: String,
    /// Extra HTTP headers, name and rendered value.
    pub headers: Vec<(String, String)>,
}

/// Whether two rendered emails would look the same to the recipient.
///
/// Used for the "two variants render the same content" warning: render both variants for the
/// same contact with the same delivery and compare. Subject, preheader, HTML and text are
/// compared after collapsing runs of whitespace, since whitespace differences are invisible in
/// a mail client; sender headers are compared exactly.
#[must_use]
pub fn emails_look_identical(a: &RenderedEmail, b: &RenderedEmail) -> bool {
    same_words(&a.subject, &b.subject)
        && same_words(&a.preheader, &b.preheader)
        && same_words(&a.html, &b.html)
        && same_words(&a.text, &b.text)
        && a.from == b.from
        && a.reply_to == b.reply_to
}

/// Whether two rendered webhook calls carry the same payload and headers.
#[must_use]
pub fn webhooks_look_identical(a: &RenderedWebhook, b: &RenderedWebhook) -> bool {
    a.payload == b.payload && a.headers == b.headers
}

fn same_words(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}
