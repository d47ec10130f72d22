//! Save-time checks of variants.
//!
//! 1. Required fields (subject, sender, HTML body, payload) are present.
//! 2. Every field compiles; a syntax error names its line and column.
//! 3. Top-level names are limited to the render context's ([`crate::KNOWN_NAMES`]); an unknown
//!    name is refused even behind an `{% if %}`, because static analysis sees every lookup.
//! 4. Literal links in the HTML with `javascript:`, `vbscript:` or `data:` are refused.
//! 5. `include`, `import`, `from` and `extends` are refused: a variant is self-contained.
//! 6. Payload templates may not use the `safe` filter, which would let data bypass JSON
//!    escaping.
//! 7. Every field is rendered once with a sample context: the caller's real one if given,
//!    otherwise a placeholder context where every value exists, prints as `sample`, and
//!    iterates as one item. This catches endless loops, runaway output, runaway recursion,
//!    unknown filters and, for webhooks, payloads that do not render to valid JSON (for
//!    example `"{{ contact.name }}"` with quotes around a JSON-escaped value). With
//!    placeholders, type errors are not reported since a placeholder is not a number.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{Environment, ErrorKind, Value};

use crate::content::{EmailContent, WebhookContent};
use crate::context::{KNOWN_NAMES, RenderContext};
use crate::engine::{
    Engine, FROM, FieldFailure, HTML, PAYLOAD, PREHEADER, REPLY_TO, SUBJECT, TEXT, render_raw,
};
use crate::error::TemplateIssue;
use crate::html::{forbidden_links_in_source, line_column};

/// Names a template may use that are declared by the engine itself.
const ENGINE_NAMES: &[&str] = &["loop", "caller", "varargs", "kwargs", "self"];

/// Stand-in for every value of the context during a save-time check without a real sample.
#[derive(Debug)]
pub(crate) struct Placeholder;

impl Object for Placeholder {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from_dyn_object(Arc::clone(self)))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(vec![Value::from_dyn_object(Arc::clone(self))])
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sample")
    }
}

/// Whether a value is the save-time placeholder (formatting filters then print `sample`).
pub(crate) fn is_placeholder(value: &Value) -> bool {
    value.downcast_object_ref::<Placeholder>().is_some()
}

fn placeholder_context() -> Value {
    let p = Value::from_object(Placeholder);
    minijinja::context! {
        contact => p.clone(),
        segment => p.clone(),
        campaign => p.clone(),
        extra => p,
        locale => "en",
        time_zone => "UTC",
        unsubscribe_url => "https://tracking.invalid/t/u/sample",
    }
}

fn issue(
    field: &str,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
) -> TemplateIssue {
    TemplateIssue {
        field: field.to_owned(),
        line,
        column,
        message,
    }
}

fn required(issues: &mut Vec<TemplateIssue>, field: &str, source: &str, what: &str) {
    if source.trim().is_empty() {
        issues.push(issue(field, None, None, format!("{what} is required")));
    }
}

pub(crate) fn check_email(
    engine: &Engine,
    content: &EmailContent,
    sample: Option<&RenderContext>,
) -> Result<(), Vec<TemplateIssue>> {
    let mut issues = Vec::new();
    required(&mut issues, SUBJECT, &content.subject, "a subject");
    required(&mut issues, HTML, &content.html, "an HTML body");
    required(&mut issues, FROM, &content.from, "a sender (from)");

    let compiled = match engine.compile_email_unchecked(content, false) {
        Ok(c) => c,
        Err(mut compile_issues) => {
            issues.append(&mut compile_issues);
            return Err(issues);
        }
    };
    let env = compiled.env();
    let fields = [SUBJECT, PREHEADER, HTML, TEXT, FROM, REPLY_TO];
    for field in fields {
        loading_tags(env, field, &mut issues);
        unknown_names(env, field, &mut issues);
    }
    match forbidden_links_in_source(&content.html, HTML) {
        Ok(mut found) => issues.append(&mut found),
        Err(e) => issues.push(issue(HTML, None, None, e.to_string())),
    }

    let ctx = sample_value(sample);
    for field in fields {
        if env.get_template(field).is_err() {
            continue;
        }
        match render_raw(env, engine.limits(), field, &ctx) {
            Ok(out) => {
                if field == SUBJECT && out.trim().is_empty() && !content.subject.trim().is_empty() {
                    issues.push(issue(
                        field,
                        None,
                        None,
                        "the subject renders blank".to_owned(),
                    ));
                }
                if field == HTML && sample.is_some() {
                    match forbidden_links_in_source(&out, HTML) {
                        Ok(found) => issues.extend(found.into_iter().map(|mut i| {
                            i.line = None;
                            i.column = None;
                            i.message = format!("with the sample contact, {}", i.message);
                            i
                        })),
                        Err(e) => issues.push(issue(HTML, None, None, e.to_string())),
                    }
                }
            }
            Err(failure) => {
                if let Some(found) = render_issue(engine, env, field, failure, sample.is_some()) {
                    issues.push(found);
                }
            }
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(issues)
    }
}

pub(crate) fn check_webhook(
    engine: &Engine,
    content: &WebhookContent,
    sample: Option<&RenderContext>,
) -> Result<(), Vec<TemplateIssue>> {
    let mut issues = Vec::new();
    required(&mut issues, PAYLOAD, &content.payload, "a payload");
    for (name, _) in &content.headers {
        if let Some(problem) = header_name_problem(name) {
            issues.push(issue(&format!("headers.{name}"), None, None, problem));
        }
    }
    if let Some(offset) = safe_filter_offset(&content.payload) {
        let (line, column) = line_column(&content.payload, offset);
        issues.push(issue(
            PAYLOAD,
            Some(line),
            Some(column),
            "the `safe` filter is not allowed in a payload: it would let data break the JSON"
                .to_owned(),
        ));
    }
    let compiled = match engine.compile_webhook_unchecked(content) {
        Ok(c) => c,
        Err(mut compile_issues) => {
            issues.append(&mut compile_issues);
            return Err(issues);
        }
    };
    let env = compiled.env();
    let fields: Vec<&str> = std::iter::once(PAYLOAD)
        .chain(compiled.header_templates())
        .collect();
    for field in &fields {
        loading_tags(env, field, &mut issues);
        unknown_names(env, field, &mut issues);
    }
    let ctx = sample_value(sample);
    for field in &fields {
        match render_raw(env, engine.limits(), field, &ctx) {
            Ok(out) if *field == PAYLOAD => {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&out) {
                    issues.push(issue(
                        PAYLOAD,
                        None,
                        None,
                        format!(
                            "the payload does not render to valid JSON ({e}, in the rendered \
                             sample); values are inserted as JSON literals, so write \
                             {{{{ contact.name }}}} without quotes around it"
                        ),
                    ));
                }
            }
            Ok(_) => {}
            Err(failure) => {
                if let Some(found) = render_issue(engine, env, field, failure, sample.is_some()) {
                    issues.push(found);
                }
            }
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(issues)
    }
}

fn sample_value(sample: Option<&RenderContext>) -> Value {
    sample.map_or_else(placeholder_context, |ctx| {
        ctx.to_value("https://tracking.invalid/t/u/sample")
    })
}

/// The issue for a failed sample render, or none when a placeholder may have caused it.
fn render_issue(
    engine: &Engine,
    env: &Environment<'static>,
    field: &str,
    failure: FieldFailure,
    real_sample: bool,
) -> Option<TemplateIssue> {
    let limits = engine.limits();
    let e = match failure {
        FieldFailure::TooLarge => {
            return Some(issue(
                field,
                None,
                None,
                format!(
                    "the rendered output exceeds the cap of {} bytes",
                    limits.max_output_bytes
                ),
            ));
        }
        FieldFailure::Engine(e) => e,
    };
    let detail = e.detail().unwrap_or_default();
    let always = match e.kind() {
        ErrorKind::OutOfFuel
        | ErrorKind::UnknownFilter
        | ErrorKind::UnknownFunction
        | ErrorKind::UnknownTest
        | ErrorKind::UnknownMethod
        | ErrorKind::TooManyArguments
        | ErrorKind::MissingArgument
        | ErrorKind::SyntaxError
        | ErrorKind::BadEscape
        | ErrorKind::UndefinedError => true,
        ErrorKind::InvalidOperation => detail.contains("recursion limit"),
        _ => false,
    };
    if !always && !real_sample {
        return None;
    }
    let source = env
        .get_template(field)
        .map(|t| t.source().to_owned())
        .unwrap_or_default();
    let column = e.range().map(|r| line_column(&source, r.start).1);
    let message = crate::engine::map_render_error(field, &source, limits, &e).to_string();
    // The error text starts with the field name, which the issue carries already.
    let message = message
        .strip_prefix(&format!("{field}: "))
        .map_or(message.clone(), ToOwned::to_owned);
    Some(issue(field, e.line(), column, message))
}

/// Reports `include`, `import`, `from` and `extends` tags.
fn loading_tags(env: &Environment<'static>, field: &str, issues: &mut Vec<TemplateIssue>) {
    let Ok(template) = env.get_template(field) else {
        return;
    };
    let source = template.source();
    for (open, _) in source.match_indices("{%") {
        let rest = source[open + 2..].trim_start_matches(['-', '+', '~']);
        let rest = rest.trim_start();
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if matches!(word.as_str(), "include" | "import" | "from" | "extends") {
            let (line, column) = line_column(source, open);
            issues.push(issue(
                field,
                Some(line),
                Some(column),
                format!("`{word}` is not available: a variant cannot load other templates"),
            ));
        }
    }
}

/// Reports top-level names that are neither in the render context nor declared by the
/// template.
fn unknown_names(env: &Environment<'static>, field: &str, issues: &mut Vec<TemplateIssue>) {
    let Ok(template) = env.get_template(field) else {
        return;
    };
    let mut names: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|n| !KNOWN_NAMES.contains(&n.as_str()) && !ENGINE_NAMES.contains(&n.as_str()))
        .collect();
    names.sort();
    for name in names {
        let (line, column) = match name_offset(template.source(), &name) {
            Some(offset) => {
                let (l, c) = line_column(template.source(), offset);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        issues.push(issue(
            field,
            line,
            column,
            format!(
                "unknown variable `{name}`; available are {}",
                KNOWN_NAMES.join(", ")
            ),
        ));
    }
}

/// Byte offset of the first use of `name` as a whole word inside a `{{ }}` or `{% %}` tag.
fn name_offset(source: &str, name: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut pos = 0;
    while let Some(open) = source[pos..].find(['{']).map(|i| i + pos) {
        let rest = &source[open..];
        let close = if rest.starts_with("{{") {
            "}}"
        } else if rest.starts_with("{%") {
            "%}"
        } else {
            pos = open + 1;
            continue;
        };
        let end = rest.find(close).map_or(source.len(), |i| open + i);
        let tag = &source[open..end];
        let mut search = 0;
        while let Some(i) = tag[search..].find(name).map(|i| i + search) {
            let before = tag[..i].chars().next_back();
            let after = tag[i + name.len()..].chars().next();
            let starts_word = before.is_none_or(|c| !is_ident(c) && c != '.');
            if starts_word && after.is_none_or(|c| !is_ident(c)) {
                return Some(open + i);
            }
            search = i + name.len();
        }
        pos = end.max(open + 2);
        if pos >= source.len() {
            break;
        }
    }
    None
}

/// Offset of a `|safe` filter use, if any.
fn safe_filter_offset(source: &str) -> Option<usize> {
    source.match_indices('|').find_map(|(i, _)| {
        let after = &source[i + 1..];
        let trimmed = after.trim_start();
        let start = i + 1 + (after.len() - trimmed.len());
        let is_safe = trimmed.starts_with("safe")
            && trimmed[4..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        is_safe.then_some(start)
    })
}

/// Why a webhook header name is unusable, if it is.
fn header_name_problem(name: &str) -> Option<String> {
    let token = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
    if !token {
        return Some(format!("{name:?} is not a valid HTTP header name"));
    }
    let reserved = [
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    ];
    if reserved.contains(&name.to_ascii_lowercase().as_str()) {
        return Some(format!(
            "the {name} header is set by Clarion and cannot be overridden"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_names_inside_tags_only() {
        let src = "foo {{ x.foo }}\n{% if foo %}";
        assert_eq!(name_offset(src, "foo"), Some(22));
    }

    #[test]
    fn finds_safe_filter() {
        assert_eq!(safe_filter_offset("{{ a | safe }}"), Some(7));
        assert_eq!(safe_filter_offset("{{ a|safeish }}"), None);
    }
}
