//! The sandboxed template engine: compiling variants, rendering messages, caching compiled
//! variants.
//!
//! Sandbox: templates cannot load other templates (minijinja is built without
//! include/import/extends and no loader is set), so nothing reaches the file system or the
//! network. Each render of a field has an instruction budget (fuel), a recursion limit and an
//! output cap enforced while writing; undefined values fail when printed or iterated unless the
//! `default` filter supplies a value (an `{% if %}` on a missing value is false).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, PoisonError, RwLock};

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};

use crate::content::{EmailContent, RenderedEmail, RenderedWebhook, WebhookContent};
use crate::context::RenderContext;
use crate::error::{TemplateError, TemplateIssue};
use crate::html::{
    CHECK_FILTER, DynamicLink, FORBIDDEN_DETAIL, HREF_FN, LINK_FILTER, LinkContext, STATIC_LINK_FN,
    StaticLink, check_filter, derive_text_template, href_fn, html_to_text, instrument_links,
    line_column, link_filter, rewrite_for_tracking, static_link_fn, tidy_text, trailer_html,
};
use crate::locale::{date_filter, datetime_filter, money_filter, number_filter};
use crate::tracking::{LIST_UNSUBSCRIBE_POST, MessageTracking};
use crate::validate;

/// Resource limits applied to every render of every field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Instruction budget per field render; an endless loop stops here.
    pub fuel: u64,
    /// Maximum nesting of calls, loops and macros (capped at 500 by the engine).
    pub recursion_limit: usize,
    /// Maximum size of one rendered field in bytes.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    /// 200,000 instructions (a rich 20 KB email uses a few thousand), recursion depth 200 (a
    /// macro call counts about 10), 1 MiB per field.
    fn default() -> Self {
        Self {
            fuel: 200_000,
            recursion_limit: 200,
            max_output_bytes: 1024 * 1024,
        }
    }
}

/// Field names of an email variant, as reported in errors and issues.
pub(crate) const SUBJECT: &str = "subject";
pub(crate) const PREHEADER: &str = "preheader";
pub(crate) const HTML: &str = "html";
pub(crate) const TEXT: &str = "text";
pub(crate) const FROM: &str = "from";
pub(crate) const REPLY_TO: &str = "reply_to";
pub(crate) const PAYLOAD: &str = "payload";
pub(crate) const HEADER_PREFIX: &str = "headers.";

/// Compiles and checks variants under a set of [`Limits`].
#[derive(Debug, Clone)]
pub struct Engine {
    limits: Limits,
    base: Environment<'static>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Engine {
    /// An engine applying `limits` to every render.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_fuel(Some(limits.fuel));
        env.set_recursion_limit(limits.recursion_limit);
        // Spans are kept on errors without debug mode, which would only add cost per render.
        env.set_debug(false);
        env.set_auto_escape_callback(|name| match name {
            HTML => AutoEscape::Html,
            PAYLOAD => AutoEscape::Json,
            _ => AutoEscape::None,
        });
        env.add_filter("money", money_filter);
        env.add_filter("number", number_filter);
        env.add_filter("date", date_filter);
        env.add_filter("datetime", datetime_filter);
        env.add_filter(LINK_FILTER, link_filter);
        env.add_filter(CHECK_FILTER, check_filter);
        env.add_function(STATIC_LINK_FN, static_link_fn);
        env.add_function(HREF_FN, href_fn);
        // `debug()` would print the whole context, which a marketer has no use for in a message.
        env.remove_global("debug");
        Self { limits, base: env }
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles an email variant after checking it like [`Engine::check_email`].
    ///
    /// # Errors
    /// [`TemplateError::Invalid`] with every problem found.
    pub fn compile_email(&self, content: &EmailContent) -> Result<CompiledEmail, TemplateError> {
        self.check_email(content, None)
            .map_err(TemplateError::Invalid)?;
        self.compile_email_unchecked(content, true)
            .map_err(TemplateError::Invalid)
    }

    /// Compiles a webhook variant after checking it like [`Engine::check_webhook`].
    ///
    /// # Errors
    /// [`TemplateError::Invalid`] with every problem found.
    pub fn compile_webhook(
        &self,
        content: &WebhookContent,
    ) -> Result<CompiledWebhook, TemplateError> {
        self.check_webhook(content, None)
            .map_err(TemplateError::Invalid)?;
        self.compile_webhook_unchecked(content)
            .map_err(TemplateError::Invalid)
    }

    /// Save-time check of an email variant: required fields, syntax (with line and column),
    /// unknown top-level names, forbidden link schemes, and a sample render of every field
    /// (fuel, recursion and output limits, unknown filters). With `sample`, the sample render
    /// uses that real context and any failure is reported; without, every value is a
    /// placeholder and only failures a placeholder cannot cause are reported.
    ///
    /// # Errors
    /// Every problem found, in field order.
    pub fn check_email(
        &self,
        content: &EmailContent,
        sample: Option<&RenderContext>,
    ) -> Result<(), Vec<TemplateIssue>> {
        validate::check_email(self, content, sample)
    }

    /// Save-time check of a webhook variant: syntax, unknown names, header names, no `safe`
    /// filter in the payload, and a sample render whose payload must parse as JSON. See
    /// [`Engine::check_email`] for `sample`.
    ///
    /// # Errors
    /// Every problem found, in field order.
    pub fn check_webhook(
        &self,
        content: &WebhookContent,
        sample: Option<&RenderContext>,
    ) -> Result<(), Vec<TemplateIssue>> {
        validate::check_webhook(self, content, sample)
    }

    /// Compiles without the save-time checks. With `instrument`, the HTML is prepared for
    /// tracking inside the template and the text body template is derived from it (see
    /// [`instrument_links`] and [`derive_text_template`]); without, the templates are compiled
    /// as written, which is what save-time checks report positions against.
    pub(crate) fn compile_email_unchecked(
        &self,
        content: &EmailContent,
        instrument: bool,
    ) -> Result<CompiledEmail, Vec<TemplateIssue>> {
        let mut env = self.base.clone();
        let mut issues = Vec::new();
        let mut add = |name: &'static str, source: &str| {
            if let Err(e) = env.add_template_owned(name, source.to_owned()) {
                issues.push(compile_issue(name, source, &e));
            }
        };
        add(SUBJECT, &content.subject);
        add(PREHEADER, &content.preheader);
        add(FROM, &content.from);
        let reply_to = content.reply_to.as_deref().filter(|r| !r.trim().is_empty());
        if let Some(reply_to) = reply_to {
            add(REPLY_TO, reply_to);
        }
        let text = content.text.as_deref().filter(|t| !t.trim().is_empty());
        if let Some(text) = text {
            add(TEXT, text);
        }

        let mut static_links: Arc<[StaticLink]> = Arc::new([]);
        let mut dynamic_links: Arc<[DynamicLink]> = Arc::new([]);
        let instrumented = instrument
            && instrument_links(&content.html).is_some_and(|prepared| {
                static_links = prepared.static_links;
                dynamic_links = prepared.dynamic_links;
                env.add_template_owned(HTML, prepared.source).is_ok()
            });
        if !instrumented && let Err(e) = env.add_template_owned(HTML, content.html.clone()) {
            issues.push(compile_issue(HTML, &content.html, &e));
        }
        let text_mode = if text.is_some() {
            TextMode::Template
        } else if instrument
            && derive_text_template(&content.html)
                .is_some_and(|source| env.add_template_owned(TEXT, source).is_ok())
        {
            TextMode::Derived
        } else {
            TextMode::FromHtml
        };
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(CompiledEmail {
            env,
            limits: self.limits,
            links: if instrumented {
                LinkMode::InTemplate
            } else {
                LinkMode::RewriteRendered
            },
            text: text_mode,
            has_reply_to: reply_to.is_some(),
            static_links,
            dynamic_links,
            static_fields: [
                (SUBJECT, Some(content.subject.as_str())),
                (PREHEADER, Some(content.preheader.as_str())),
                (FROM, Some(content.from.as_str())),
                (REPLY_TO, reply_to),
                (TEXT, text),
            ]
            .into_iter()
            .filter_map(|(name, source)| {
                source
                    .filter(|s| !s.contains("{{") && !s.contains("{%") && !s.contains("{#"))
                    // minijinja drops one trailing newline; a static field does the same.
                    .map(|s| (name, s.strip_suffix('\n').unwrap_or(s).to_owned()))
            })
            .collect(),
        })
    }

    pub(crate) fn compile_webhook_unchecked(
        &self,
        content: &WebhookContent,
    ) -> Result<CompiledWebhook, Vec<TemplateIssue>> {
        let mut env = self.base.clone();
        let mut issues = Vec::new();
        if let Err(e) = env.add_template_owned(PAYLOAD, content.payload.clone()) {
            issues.push(compile_issue(PAYLOAD, &content.payload, &e));
        }
        let mut headers = Vec::with_capacity(content.headers.len());
        for (name, value) in &content.headers {
            let field = format!("{HEADER_PREFIX}{name}");
            if let Err(e) = env.add_template_owned(field.clone(), value.clone()) {
                issues.push(compile_issue(&field, value, &e));
            }
            headers.push((name.clone(), field));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(CompiledWebhook {
            env,
            limits: self.limits,
            headers,
        })
    }
}

/// The issue describing a template that does not compile.
pub(crate) fn compile_issue(field: &str, source: &str, err: &minijinja::Error) -> TemplateIssue {
    let (line, column) = match err.range() {
        Some(range) => {
            let (l, c) = line_column(source, range.start);
            (Some(l), Some(c))
        }
        None => (err.line(), None),
    };
    TemplateIssue {
        field: field.to_owned(),
        line,
        column,
        message: err
            .detail()
            .map_or_else(|| err.kind().to_string(), ToOwned::to_owned),
    }
}

/// An `io::Write` that refuses to grow past a cap, so a runaway template stops early.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buf.len() + bytes.len() > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("output cap reached"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why rendering one field failed, before mapping to [`TemplateError`].
pub(crate) enum FieldFailure {
    /// The output cap was hit.
    TooLarge,
    /// The engine reported an error.
    Engine(minijinja::Error),
}

/// Renders one named template of `env` under the limits.
pub(crate) fn render_raw(
    env: &Environment<'static>,
    limits: Limits,
    field: &str,
    ctx: &Value,
) -> Result<String, FieldFailure> {
    let template = env.get_template(field).map_err(FieldFailure::Engine)?;
    let mut out = CappedWriter {
        // Output usually outgrows the source a little (substituted values, loops); one
        // generous allocation is cheaper than growing a 20 KB buffer.
        buf: Vec::with_capacity(
            (template.source().len() + template.source().len() / 2 + 256)
                .min(limits.max_output_bytes),
        ),
        limit: limits.max_output_bytes,
        exceeded: false,
    };
    match template.render_captured_to(ctx.clone(), &mut out) {
        Ok(_) => String::from_utf8(out.buf).map_err(|_| {
            FieldFailure::Engine(minijinja::Error::new(
                ErrorKind::WriteFailure,
                "the output is not valid UTF-8",
            ))
        }),
        Err(_) if out.exceeded => Err(FieldFailure::TooLarge),
        Err(e) => Err(FieldFailure::Engine(e)),
    }
}

/// Renders one named template of `env` under the limits and maps failures to
/// [`TemplateError`].
pub(crate) fn render_field(
    env: &Environment<'static>,
    limits: Limits,
    field: &str,
    ctx: &Value,
) -> Result<String, TemplateError> {
    render_raw(env, limits, field, ctx).map_err(|failure| match failure {
        FieldFailure::TooLarge => TemplateError::OutputTooLarge {
            field: field.to_owned(),
            limit: limits.max_output_bytes,
        },
        FieldFailure::Engine(e) => {
            let source = env
                .get_template(field)
                .map(|t| t.source().to_owned())
                .unwrap_or_default();
            map_render_error(field, &source, limits, &e)
        }
    })
}

pub(crate) fn map_render_error(
    field: &str,
    source: &str,
    limits: Limits,
    e: &minijinja::Error,
) -> TemplateError {
    let field = field.to_owned();
    match e.kind() {
        ErrorKind::OutOfFuel => TemplateError::OutOfFuel {
            field,
            fuel: limits.fuel,
        },
        ErrorKind::InvalidOperation
            if e.detail().is_some_and(|d| d.starts_with(FORBIDDEN_DETAIL)) =>
        {
            TemplateError::ForbiddenLink {
                field,
                url: e
                    .detail()
                    .and_then(|d| d.strip_prefix(FORBIDDEN_DETAIL))
                    .unwrap_or_default()
                    .to_owned(),
            }
        }
        ErrorKind::UndefinedError => {
            let expression = e
                .range()
                .and_then(|r| source.get(r))
                .map(|s| written_expression(s.trim()))
                .filter(|s| !s.is_empty());
            let message = match expression {
                Some(expr) => format!("`{expr}` is undefined for this contact"),
                None => e
                    .detail()
                    .unwrap_or("a value is undefined for this contact")
                    .to_owned(),
            };
            TemplateError::Undefined {
                field,
                line: e.line(),
                message,
            }
        }
        _ => TemplateError::Render {
            field,
            line: e.line(),
            message: e
                .detail()
                .map_or_else(|| e.kind().to_string(), ToOwned::to_owned),
        },
    }
}

/// The expression as the marketer wrote it: a link instrumented at compile time reads
/// `__clarion_href(n, expression)` in the compiled source.
fn written_expression(expression: &str) -> &str {
    expression
        .strip_prefix(HREF_FN)
        .and_then(|rest| rest.strip_prefix('('))
        .and_then(|rest| rest.split_once(", "))
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map_or(expression, str::trim)
}

/// Joins the lines of a rendered subject or preheader into one line and drops other control
/// characters; no-break spaces (used by number formats) are kept.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s
        .split(|c: char| (c.is_whitespace() || c.is_control()) && c != '\u{a0}' && c != '\u{202f}')
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// A rendered header value: trimmed, and refused if it holds a control character.
fn header_value(field: &str, s: &str) -> Result<String, TemplateError> {
    let s = s.trim();
    if s.chars().any(char::is_control) {
        return Err(TemplateError::HeaderInjection {
            field: field.to_owned(),
        });
    }
    Ok(s.to_owned())
}

/// How tracking links and the pixel get into the HTML body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkMode {
    /// The template was instrumented at compile time; rendering produces the final body.
    InTemplate,
    /// Each rendered body passes through the HTML rewriter (templates that cannot be
    /// instrumented).
    RewriteRendered,
}

/// Where the text body comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextMode {
    /// The marketer's text template.
    Template,
    /// A text template derived from the HTML template at compile time.
    Derived,
    /// Derived from each rendered HTML body.
    FromHtml,
}

/// A compiled email variant, cheap to share between threads and render many times.
#[derive(Debug, Clone)]
pub struct CompiledEmail {
    env: Environment<'static>,
    limits: Limits,
    links: LinkMode,
    text: TextMode,
    has_reply_to: bool,
    static_links: Arc<[StaticLink]>,
    dynamic_links: Arc<[DynamicLink]>,
    // Fields without template syntax, which need no render.
    static_fields: Vec<(&'static str, String)>,
}

impl CompiledEmail {
    /// Renders the message of one contact with tracking.
    ///
    /// # Errors
    /// A render-time [`TemplateError`] naming the field when this contact's data makes a
    /// template fail (undefined value, budget, size, forbidden link, header injection, blank
    /// subject).
    pub fn render(
        &self,
        ctx: &RenderContext,
        tracking: &MessageTracking<'_>,
    ) -> Result<RenderedEmail, TemplateError> {
        tracking.check_ids()?;
        let unsubscribe_url = tracking
            .tracker
            .unsubscribe_url(tracking.delivery_id, tracking.contact_id);
        let links = Value::from_object(LinkContext::new(
            tracking.tracker.clone(),
            tracking.delivery_id,
            tracking.track_links,
            Arc::clone(&self.static_links),
            Arc::clone(&self.dynamic_links),
            tracking
                .link_table
                .filter(|_| self.links == LinkMode::InTemplate),
        ));
        // The open pixel and the honeypot link.
        let pixel = match trailer_html(tracking) {
            Some(trailer) if self.links == LinkMode::InTemplate => Value::from_safe_string(trailer),
            _ => Value::from(""),
        };
        let value = ctx.to_tracked_value(&unsubscribe_url, links, pixel);
        let field = |name: &'static str| match self.static_fields.iter().find(|(f, _)| *f == name) {
            Some((_, text)) => Ok(text.clone()),
            None => render_field(&self.env, self.limits, name, &value),
        };

        let subject = one_line(&field(SUBJECT)?);
        if subject.is_empty() {
            return Err(TemplateError::Render {
                field: SUBJECT.to_owned(),
                line: None,
                message: "the subject rendered blank for this contact".to_owned(),
            });
        }
        let preheader = one_line(&field(PREHEADER)?);
        let html = field(HTML)?;
        let text = match self.text {
            TextMode::Template => field(TEXT)?,
            TextMode::Derived => tidy_text(&field(TEXT)?),
            TextMode::FromHtml => html_to_text(&html)?,
        };
        let html = match self.links {
            LinkMode::InTemplate => html,
            LinkMode::RewriteRendered => rewrite_for_tracking(&html, tracking)?,
        };
        if html.len() > self.limits.max_output_bytes {
            return Err(TemplateError::OutputTooLarge {
                field: HTML.to_owned(),
                limit: self.limits.max_output_bytes,
            });
        }
        let from = header_value(FROM, &field(FROM)?)?;
        let reply_to = if self.has_reply_to {
            Some(header_value(REPLY_TO, &field(REPLY_TO)?)?).filter(|r| !r.is_empty())
        } else {
            None
        };
        Ok(RenderedEmail {
            subject,
            preheader,
            html,
            text,
            from,
            reply_to,
            list_unsubscribe: tracking.tracker.list_unsubscribe_for(&unsubscribe_url),
            list_unsubscribe_post: LIST_UNSUBSCRIBE_POST,
        })
    }

    pub(crate) fn env(&self) -> &Environment<'static> {
        &self.env
    }

    /// The link table its messages index when rendered with a
    /// [`MessageTracking::link_table`]: [`crate::link_table`] of its HTML (empty when its HTML
    /// is rewritten per message, whose links are then each signed on their own).
    #[must_use]
    pub fn link_table(&self) -> Vec<String> {
        self.static_links
            .iter()
            .map(|link| link.target().to_owned())
            .collect()
    }
}

/// A compiled webhook variant.
#[derive(Debug, Clone)]
pub struct CompiledWebhook {
    env: Environment<'static>,
    limits: Limits,
    // (header name, template name)
    headers: Vec<(String, String)>,
}

impl CompiledWebhook {
    /// Renders the webhook call of one contact.
    ///
    /// # Errors
    /// A render-time [`TemplateError`]; [`TemplateError::InvalidPayload`] when the payload
    /// does not parse as JSON.
    pub fn render(
        &self,
        ctx: &RenderContext,
        tracking: &MessageTracking<'_>,
    ) -> Result<RenderedWebhook, TemplateError> {
        tracking.check_ids()?;
        let unsubscribe_url = tracking
            .tracker
            .unsubscribe_url(tracking.delivery_id, tracking.contact_id);
        let value = ctx.to_value(&unsubscribe_url);
        let body = render_field(&self.env, self.limits, PAYLOAD, &value)?;
        let payload = serde_json::from_str(&body)
            .map_err(|e| TemplateError::InvalidPayload(e.to_string()))?;
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, template) in &self.headers {
            let rendered = render_field(&self.env, self.limits, template, &value)?;
            headers.push((name.clone(), header_value(template, &rendered)?));
        }
        Ok(RenderedWebhook {
            payload,
            body,
            headers,
        })
    }

    pub(crate) fn env(&self) -> &Environment<'static> {
        &self.env
    }

    pub(crate) fn header_templates(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(_, t)| t.as_str())
    }
}

/// Compiled variants shared by a worker's threads, keyed by a caller-chosen key such as
/// `"{variant_id}:{version}"`, so each variant version is compiled once.
///
/// The cache holds at most `capacity` entries per channel; when full it is emptied and
/// refilled, which bounds memory without bookkeeping (variants of running campaigns are few).
#[derive(Debug)]
pub struct TemplateCache {
    engine: Engine,
    capacity: usize,
    emails: RwLock<HashMap<String, Arc<CompiledEmail>>>,
    webhooks: RwLock<HashMap<String, Arc<CompiledWebhook>>>,
}

impl TemplateCache {
    /// A cache compiling with `engine`, holding at most `capacity` variants per channel.
    #[must_use]
    pub fn new(engine: Engine, capacity: usize) -> Self {
        Self {
            engine,
            capacity: capacity.max(1),
            emails: RwLock::new(HashMap::new()),
            webhooks: RwLock::new(HashMap::new()),
        }
    }

    /// The engine used to compile.
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The compiled email variant under `key`, compiling `content` on first use.
    ///
    /// Variants were checked when saved, so this compiles without the sample render.
    ///
    /// # Errors
    /// [`TemplateError::Invalid`] when the content does not compile.
    pub fn email(
        &self,
        key: &str,
        content: &EmailContent,
    ) -> Result<Arc<CompiledEmail>, TemplateError> {
        get_or_insert(&self.emails, self.capacity, key, || {
            self.engine
                .compile_email_unchecked(content, true)
                .map_err(TemplateError::Invalid)
        })
    }

    /// The compiled webhook variant under `key`, compiling `content` on first use.
    ///
    /// # Errors
    /// [`TemplateError::Invalid`] when the content does not compile.
    pub fn webhook(
        &self,
        key: &str,
        content: &WebhookContent,
    ) -> Result<Arc<CompiledWebhook>, TemplateError> {
        get_or_insert(&self.webhooks, self.capacity, key, || {
            self.engine
                .compile_webhook_unchecked(content)
                .map_err(TemplateError::Invalid)
        })
    }

    /// Forgets the variant compiled under `key` (after an edit, if keys are not versioned).
    pub fn invalidate(&self, key: &str) {
        self.emails
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        self.webhooks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Number of compiled variants held (both channels).
    #[must_use]
    pub fn len(&self) -> usize {
        self.emails
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            + self
                .webhooks
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
    }

    /// Whether nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn get_or_insert<T>(
    map: &RwLock<HashMap<String, Arc<T>>>,
    capacity: usize,
    key: &str,
    compile: impl FnOnce() -> Result<T, TemplateError>,
) -> Result<Arc<T>, TemplateError> {
    if let Some(found) = map.read().unwrap_or_else(PoisonError::into_inner).get(key) {
        return Ok(Arc::clone(found));
    }
    // Compile outside the lock; two threads may both compile once, which is harmless.
    let compiled = Arc::new(compile()?);
    let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= capacity {
        map.clear();
    }
    Ok(Arc::clone(map.entry(key.to_owned()).or_insert(compiled)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_email_is_instrumented_and_gets_a_derived_text_template() {
        let compiled = Engine::default()
            .compile_email(&crate::bench::sample_email(true))
            .unwrap();
        assert_eq!(compiled.links, LinkMode::InTemplate);
        assert_eq!(compiled.text, TextMode::Derived);
    }

    #[test]
    fn compiled_variants_can_be_shared_between_worker_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<CompiledEmail>();
        shareable::<CompiledWebhook>();
        shareable::<TemplateCache>();
        shareable::<crate::Tracker>();
        shareable::<crate::RenderContext>();
    }

    #[test]
    fn subjects_become_one_clean_line() {
        assert_eq!(one_line(" a\r\n\u{0}b\t 12\u{a0}€ "), "a b 12\u{a0}€");
    }
}
