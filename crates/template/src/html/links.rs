//! Links and tracking: signed click URLs, the open pixel, and the check that no link runs
//! code. Done once per variant where possible (instrumenting the template so each render
//! prints tracked links), else per message on the rendered HTML.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use lol_html::html_content::{ContentType, Element, EndTag};
use lol_html::{DocumentContentHandlers, ElementContentHandlers, rewrite_str};

use super::{
    BODY, HREF, INSTRUMENTED, LINK_OR_SRC, NO_TRACK_ATTRIBUTE, decode_entities, has_raw_block,
    is_forbidden_link, is_http_url, line_column, sel, with_handlers,
};
use crate::error::{TemplateError, TemplateIssue};
use crate::tracking::MessageTracking;

/// Rewrites rendered HTML for one message: `http(s)` links of `<a>` and `<area>` become
/// signed click URLs (unless marked `data-notrack`, which is removed), the open pixel and the
/// hidden honeypot link ([`trailer_html`]) are added before `</body>` (or at the end when
/// there is no body end tag), and any link with a forbidden scheme fails the message.
pub(crate) fn rewrite_for_tracking(
    html: &str,
    tracking: &MessageTracking<'_>,
) -> Result<String, TemplateError> {
    let forbidden: RefCell<Option<String>> = RefCell::new(None);
    let pixel_placed = Rc::new(Cell::new(false));
    let pixel = trailer_html(tracking);
    let own_base = tracking.tracker.base_url();

    let mut element_handlers = vec![(
        sel(&HREF)?,
        ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
            let Some(raw) = el.get_attribute("href") else {
                return Ok(());
            };
            let target = decode_entities(raw.trim());
            if is_forbidden_link(&target) {
                *forbidden.borrow_mut() = Some(target.into_owned());
                return Err("forbidden link".into());
            }
            let opted_out = el.has_attribute(NO_TRACK_ATTRIBUTE);
            if opted_out {
                el.remove_attribute(NO_TRACK_ATTRIBUTE);
            }
            let trackable = tracking.track_links
                && !opted_out
                && is_http_url(&target)
                && !target.starts_with(own_base)
                && matches!(el.tag_name().as_str(), "a" | "area");
            if trackable {
                let url = tracking.tracker.click_url(tracking.delivery_id, &target);
                el.set_attribute("href", &url)?;
            }
            Ok(())
        }),
    )];
    if let Some(pixel) = &pixel {
        let placed = Rc::clone(&pixel_placed);
        let pixel = pixel.clone();
        element_handlers.push((
            sel(&BODY)?,
            ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
                if placed.get() {
                    return Ok(());
                }
                if let Some(handlers) = el.end_tag_handlers() {
                    let placed = Rc::clone(&placed);
                    let pixel = pixel.clone();
                    handlers.push(Box::new(move |end: &mut EndTag<'_>| {
                        end.before(&pixel, ContentType::Html);
                        placed.set(true);
                        Ok(())
                    }));
                }
                Ok(())
            }),
        ));
    }
    let mut document_handlers = Vec::new();
    if let Some(pixel) = &pixel {
        let placed = Rc::clone(&pixel_placed);
        document_handlers.push(DocumentContentHandlers::default().end(
            move |end: &mut lol_html::html_content::DocumentEnd<'_>| {
                if !placed.get() {
                    end.append(pixel, ContentType::Html);
                }
                Ok(())
            },
        ));
    }

    let settings = with_handlers(element_handlers, document_handlers);
    rewrite_str(html, settings).map_err(|e| match forbidden.borrow_mut().take() {
        Some(url) => TemplateError::ForbiddenLink {
            field: "html".to_owned(),
            url,
        },
        None => TemplateError::Rewrite(e.to_string()),
    })
}

/// What goes at the end of a tracked HTML message: the open pixel (when opens are tracked)
/// and the honeypot link (when links are): an empty link hidden from people in every mail
/// client (no text, not displayed, out of the tab order and of screen readers, left out of
/// the text part), which only machines following every URL of a message click.
pub(crate) fn trailer_html(tracking: &MessageTracking<'_>) -> Option<String> {
    let mut out = String::new();
    if tracking.track_opens {
        out.push_str(&pixel_html(
            &tracking.tracker.open_url(tracking.delivery_id),
        ));
    }
    if tracking.track_links {
        out.push_str(&format!(
            "<a href=\"{}\" {HONEYPOT_ATTRIBUTE} aria-hidden=\"true\" tabindex=\"-1\" \
             style=\"display:none;font-size:0;line-height:0;max-height:0;overflow:hidden;mso-hide:all\"></a>",
            tracking.tracker.honeypot_url(tracking.delivery_id)
        ));
    }
    (!out.is_empty()).then_some(out)
}

/// Marks the honeypot link, so that the text part leaves it out.
pub(crate) const HONEYPOT_ATTRIBUTE: &str = "data-clarion-trap";

pub(crate) fn pixel_html(url: &str) -> String {
    format!(
        "<img src=\"{url}\" width=\"1\" height=\"1\" alt=\"\" \
         style=\"display:block;width:1px;height:1px;border:0\">"
    )
}

/// Filter wrapped around `href` values of `<a>` and `<area>`: checks the rendered target and
/// turns it into a signed click URL.
pub(crate) const LINK_FILTER: &str = "__clarion_link";
/// Filter wrapped around other link-like attribute values: checks the rendered target only.
pub(crate) const CHECK_FILTER: &str = "__clarion_check";
/// Function printing a literal link of the template (see [`instrument_links`]).
pub(crate) const STATIC_LINK_FN: &str = "__clarion_static_link";
/// Function printing a link target made of literal text around one expression.
pub(crate) const HREF_FN: &str = "__clarion_href";
/// Context variable holding the per-message [`LinkContext`].
pub(crate) const LINKS_VAR: &str = "__clarion_links";
/// Context variable holding the open pixel's markup (empty when opens are not tracked).
pub(crate) const PIXEL_VAR: &str = "__clarion_pixel";
/// Start of the engine error detail raised for a forbidden link.
pub(crate) const FORBIDDEN_DETAIL: &str = "forbidden link: ";

/// Prepares an HTML template for tracking once, when the variant is compiled, so that each
/// message needs no HTML pass: every `href` of `<a>` and `<area>` is wrapped in
/// `{% filter __clarion_link %}...{% endfilter %}`, other `href`, `action` and `formaction`
/// values in the checking filter, `data-notrack` attributes are removed (and their link left
/// alone), and `{{ __clarion_pixel }}` is placed before `</body>` (or at the end).
///
/// The edits add no line breaks, so line numbers of render errors stay those of the source.
/// `None` when the source holds `{% raw %}` (where the inserted tags would be printed); the
/// caller then rewrites each rendered body instead, as it also does when the instrumented
/// template does not compile (template tags splitting an attribute).
pub(crate) fn instrument_links(source: &str) -> Option<Instrumented> {
    if has_raw_block(source) {
        return None;
    }
    let edits: RefCell<Vec<(usize, usize, String)>> = RefCell::new(Vec::new());
    let statics: RefCell<Vec<StaticLink>> = RefCell::new(Vec::new());
    let dynamics: RefCell<Vec<DynamicLink>> = RefCell::new(Vec::new());
    let body_end: Rc<Cell<Option<usize>>> = Rc::new(Cell::new(None));
    let elements = vec![
        (
            sel(&INSTRUMENTED).ok()?,
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                let tag = el.tag_name();
                let opted_out = el.has_attribute(NO_TRACK_ATTRIBUTE);
                let mut edits = edits.borrow_mut();
                for attr in el.attributes() {
                    let name = attr.name();
                    if name == NO_TRACK_ATTRIBUTE {
                        let Some(name_at) = attr.name_source_location() else {
                            continue;
                        };
                        let mut end = name_at.bytes().end;
                        if let Some(value_at) = attr.value_source_location() {
                            end = value_at.bytes().end;
                            if source
                                .get(end..)
                                .is_some_and(|r| r.starts_with(['"', '\'']))
                            {
                                end += 1;
                            }
                        }
                        let start = source
                            .get(..name_at.bytes().start)
                            .unwrap_or_default()
                            .trim_end_matches(|c: char| c.is_ascii_whitespace())
                            .len();
                        edits.push((start, end, String::new()));
                    } else if matches!(name.as_str(), "href" | "action" | "formaction") {
                        let Some(value_at) = attr.value_source_location() else {
                            continue;
                        };
                        let range = value_at.bytes();
                        if range.is_empty() {
                            continue;
                        }
                        let track = name == "href" && matches!(tag.as_str(), "a" | "area");
                        let raw = source.get(range.clone()).unwrap_or_default();
                        let literal = !["{{", "{%", "{#"].iter().any(|t| raw.contains(t));
                        // A forbidden literal keeps the checking filter, so even a variant
                        // compiled without save-time checks fails at render.
                        if track
                            && !opted_out
                            && literal
                            && !is_forbidden_link(&decode_entities(raw))
                        {
                            // A literal target is decoded once here; each message only signs.
                            let mut statics = statics.borrow_mut();
                            edits.push((
                                range.start,
                                range.end,
                                format!("{{{{ {STATIC_LINK_FN}({}) }}}}", statics.len()),
                            ));
                            statics.push(StaticLink {
                                raw: raw.to_owned(),
                                target: decode_entities(raw.trim()).into_owned(),
                            });
                            continue;
                        }
                        if track
                            && !opted_out
                            && let Some((prefix, expr, suffix)) = single_expression(raw)
                        {
                            // The literal parts are kept per variant; the message only prints
                            // the expression, without capturing the attribute's output.
                            let mut dynamics = dynamics.borrow_mut();
                            edits.push((
                                range.start,
                                range.end,
                                format!("{{{{ {HREF_FN}({}, {expr}) }}}}", dynamics.len()),
                            ));
                            dynamics.push(DynamicLink::new(prefix, suffix));
                            continue;
                        }
                        let filter = if track && !opted_out {
                            LINK_FILTER
                        } else {
                            CHECK_FILTER
                        };
                        edits.push((range.start, range.start, format!("{{% filter {filter} %}}")));
                        edits.push((range.end, range.end, "{% endfilter %}".to_owned()));
                    }
                }
                Ok(())
            }),
        ),
        (
            sel(&BODY).ok()?,
            ElementContentHandlers::default().element({
                let body_end = Rc::clone(&body_end);
                move |el: &mut Element<'_, '_>| {
                    if let Some(handlers) = el.end_tag_handlers() {
                        let body_end = Rc::clone(&body_end);
                        handlers.push(Box::new(move |end: &mut EndTag<'_>| {
                            body_end.set(Some(end.source_location().bytes().start));
                            Ok(())
                        }));
                    }
                    Ok(())
                }
            }),
        ),
    ];
    rewrite_str(source, with_handlers(elements, Vec::new())).ok()?;
    let mut edits = edits.into_inner();
    let pixel = format!("{{{{ {PIXEL_VAR} }}}}");
    let at = body_end.get().unwrap_or(source.len());
    edits.push((at, at, pixel));
    // Stable sort keeps an end-of-value insertion before a pixel at the same offset.
    edits.sort_by_key(|(start, end, _)| (*start, *end));
    let mut out = String::with_capacity(source.len() + edits.len() * 24);
    let mut copied = 0;
    for (start, end, insert) in edits {
        if start < copied
            || end > source.len()
            || !source.is_char_boundary(start)
            || !source.is_char_boundary(end)
        {
            return None;
        }
        out.push_str(&source[copied..start]);
        out.push_str(&insert);
        copied = end;
    }
    out.push_str(&source[copied..]);
    Some(Instrumented {
        source: out,
        static_links: statics.into_inner().into(),
        dynamic_links: dynamics.into_inner().into(),
    })
}

/// Splits an attribute value made of literal text around exactly one `{{ expression }}`
/// (no other template syntax, no whitespace control) into prefix, expression and suffix.
fn single_expression(raw: &str) -> Option<(&str, &str, &str)> {
    if raw.contains("{%") || raw.contains("{#") {
        return None;
    }
    let open = raw.find("{{")?;
    let close = open + 2 + raw[open + 2..].find("}}")?;
    let (prefix, suffix) = (&raw[..open], &raw[close + 2..]);
    let expr = raw[open + 2..close].trim();
    let marked = |c: char| matches!(c, '-' | '+');
    if expr.is_empty()
        || expr.starts_with(marked)
        || expr.ends_with(marked)
        || expr.contains(['{', '}'])
        || prefix.contains("}}")
        || suffix.contains("{{")
        || suffix.contains("}}")
    {
        return None;
    }
    Some((prefix, expr, suffix))
}

/// An HTML template prepared for tracking by [`instrument_links`].
pub(crate) struct Instrumented {
    /// The template source to compile.
    pub(crate) source: String,
    /// Literal link targets, indexed by the `__clarion_static_link` calls in the source.
    pub(crate) static_links: Arc<[StaticLink]>,
    /// Literal parts of single-expression links, indexed by the `__clarion_href` calls.
    pub(crate) dynamic_links: Arc<[DynamicLink]>,
}

/// The literal text around the one expression of a link target such as
/// `https://shop.example/p?c={{ contact.id }}`.
#[derive(Debug)]
pub(crate) struct DynamicLink {
    /// Template text before the expression (as written, entity-encoded).
    prefix: String,
    /// Template text after the expression.
    suffix: String,
    /// The decoded prefix and suffix, when decoding the parts separately gives the same target
    /// as decoding the whole printed value: no character reference of the prefix can run into
    /// the expression's output, and no whitespace at the ends would be trimmed.
    decoded: Option<(String, String)>,
}

impl DynamicLink {
    fn new(prefix: &str, suffix: &str) -> Self {
        let prefix_closed = prefix
            .rfind('&')
            .is_none_or(|amp| prefix[amp..].contains(';'));
        let separable = prefix_closed
            && !prefix.starts_with(char::is_whitespace)
            && !suffix.ends_with(char::is_whitespace);
        Self {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
            decoded: separable.then(|| {
                (
                    decode_entities(prefix).into_owned(),
                    decode_entities(suffix).into_owned(),
                )
            }),
        }
    }

    /// The attribute text as the template prints it with `value` under HTML autoescaping.
    fn print(&self, value: &minijinja::Value) -> String {
        let mut raw = String::with_capacity(self.prefix.len() + self.suffix.len() + 96);
        raw.push_str(&self.prefix);
        if value.is_safe()
            || value.is_number()
            || value.is_none()
            || value.kind() == minijinja::value::ValueKind::Bool
        {
            let _ = write!(raw, "{value}");
        } else if let Some(s) = value.as_str() {
            let _ = write!(raw, "{}", minijinja::HtmlEscape(s));
        } else {
            let _ = write!(raw, "{}", minijinja::HtmlEscape(&value.to_string()));
        }
        raw.push_str(&self.suffix);
        raw
    }

    /// The decoded link target for a plain (not safe) string value, without printing and
    /// decoding the escaped value; `None` when only the full path gives the exact result.
    fn target_for(&self, value: &str) -> Option<String> {
        let (prefix, suffix) = self.decoded.as_ref()?;
        // An empty side lets trimming reach into the value (or past it when it is blank).
        let value = match (self.prefix.is_empty(), self.suffix.is_empty()) {
            (false, false) => value,
            _ if value.trim().is_empty() => return None,
            (true, true) => value.trim(),
            (true, false) => value.trim_start(),
            (false, true) => value.trim_end(),
        };
        let mut target = String::with_capacity(prefix.len() + value.len() + suffix.len());
        target.push_str(prefix);
        target.push_str(value);
        target.push_str(suffix);
        Some(target)
    }
}

/// A link target written literally in the template.
#[derive(Debug)]
pub(crate) struct StaticLink {
    /// As written in the attribute (entity-encoded), printed when the link is not tracked.
    raw: String,
    /// The decoded target, which is signed.
    target: String,
}

impl StaticLink {
    /// The decoded target.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }
}

/// The per-message data the link filter needs.
#[derive(Debug)]
pub(crate) struct LinkContext {
    pub(crate) tracker: crate::tracking::Tracker,
    pub(crate) delivery_id: String,
    pub(crate) track_links: bool,
    pub(crate) static_links: Arc<[StaticLink]>,
    pub(crate) dynamic_links: Arc<[DynamicLink]>,
    /// Click URLs signed so far in this message, by target: a target linked twice (a
    /// product's image and its name) is signed once.
    pub(crate) signed: Mutex<Vec<(String, minijinja::Value)>>,
    /// `{base}/t/l/{token}/` when literal links point into the variant version's link table:
    /// the message's one signed token, to which each literal link appends its index.
    pub(crate) link_prefix: Option<String>,
}

impl LinkContext {
    /// The per-message link data for `delivery_id`.
    pub(crate) fn new(
        tracker: crate::tracking::Tracker,
        delivery_id: &str,
        track_links: bool,
        static_links: Arc<[StaticLink]>,
        dynamic_links: Arc<[DynamicLink]>,
        link_table: Option<&str>,
    ) -> Self {
        let link_prefix = link_table
            .filter(|_| track_links && !static_links.is_empty())
            .map(|table| tracker.link_prefix(delivery_id, table));
        Self {
            tracker,
            delivery_id: delivery_id.to_owned(),
            track_links,
            static_links,
            dynamic_links,
            signed: Mutex::new(Vec::new()),
            link_prefix,
        }
    }

    /// Whether links to `target` become tracking URLs in this message.
    fn tracks(&self, target: &str) -> bool {
        self.track_links && is_http_url(target) && !target.starts_with(self.tracker.base_url())
    }

    /// The signed click URL of `target` as a printable value, or `None` when the link is not
    /// tracked. The value is kept, so a repeated target costs a compare and a reference.
    fn click_url(&self, target: &str) -> Option<minijinja::Value> {
        if !self.tracks(target) {
            return None;
        }
        let mut signed = self.signed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, url)) = signed.iter().find(|(t, _)| t == target) {
            return Some(url.clone());
        }
        let url =
            minijinja::Value::from_safe_string(self.tracker.click_url(&self.delivery_id, target));
        signed.push((target.to_owned(), url.clone()));
        Some(url)
    }
}

/// `__clarion_static_link(n)`: the n-th literal link of the template, signed when tracked.
pub(crate) fn static_link_fn(
    state: &minijinja::State<'_, '_>,
    index: usize,
) -> Result<minijinja::Value, minijinja::Error> {
    let links = state.lookup(LINKS_VAR);
    let Some(links) = links
        .as_ref()
        .and_then(|l| l.downcast_object_ref::<LinkContext>())
    else {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "link tracking data is missing from the render context",
        ));
    };
    let Some(link) = links.static_links.get(index) else {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("no literal link number {index}"),
        ));
    };
    if let Some(prefix) = &links.link_prefix
        && links.tracks(&link.target)
    {
        let mut url = String::with_capacity(prefix.len() + 4);
        url.push_str(prefix);
        let _ = write!(url, "{index}");
        return Ok(minijinja::Value::from_safe_string(url));
    }
    Ok(links
        .click_url(&link.target)
        .unwrap_or_else(|| minijinja::Value::from_safe_string(link.raw.clone())))
}

/// The link table of an HTML template: the targets of the links written literally in it,
/// in the order that per-message link URLs index them (see [`crate::tracking`]). The same
/// source always gives the same table, so the table of a variant version can be kept or
/// derived again from the version's HTML. Entries that are not tracked (`mailto:`, links to
/// the tracking host) are listed too, and must be refused when a request names them.
#[must_use]
pub fn link_table(html: &str) -> Vec<String> {
    instrument_links(html)
        .map(|prepared| {
            prepared
                .static_links
                .iter()
                .map(|link| link.target.clone())
                .collect()
        })
        .unwrap_or_default()
}

impl minijinja::value::Object for LinkContext {}

fn forbidden_error(target: &str) -> minijinja::Error {
    minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        format!("{FORBIDDEN_DETAIL}{target}"),
    )
}

/// `__clarion_link`: the rendered `href` as a signed click URL when it is an `http(s)` link
/// elsewhere than the tracking host and links are tracked; unchanged otherwise; an error when
/// its scheme is forbidden.
pub(crate) fn link_filter(
    state: &minijinja::State<'_, '_>,
    value: minijinja::Value,
) -> Result<minijinja::Value, minijinja::Error> {
    let raw = value.as_str().unwrap_or_default();
    let target = decode_entities(raw.trim());
    if is_forbidden_link(&target) {
        return Err(forbidden_error(&target));
    }
    if let Some(links) = state.lookup(LINKS_VAR)
        && let Some(links) = links.downcast_object_ref::<LinkContext>()
        && let Some(url) = links.click_url(&target)
    {
        return Ok(url);
    }
    Ok(value)
}

/// `__clarion_href(n, value)`: the n-th single-expression link of the template with `value`
/// printed (and HTML-escaped) between its literal parts, then treated like
/// [`link_filter`] treats a rendered `href`.
pub(crate) fn href_fn(
    state: &minijinja::State<'_, '_>,
    index: usize,
    value: &minijinja::Value,
) -> Result<minijinja::Value, minijinja::Error> {
    let links = state.lookup(LINKS_VAR);
    let links = links
        .as_ref()
        .and_then(|l| l.downcast_object_ref::<LinkContext>());
    let Some(link) = links.and_then(|l| l.dynamic_links.get(index)) else {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "link tracking data is missing from the render context",
        ));
    };
    if value.is_undefined() {
        return Err(minijinja::Error::from(minijinja::ErrorKind::UndefinedError));
    }
    // For a plain string the decoded target is the string itself between the decoded
    // literal parts; the escaped attribute text is only built when the link stays as is.
    let direct = (!value.is_safe())
        .then(|| value.as_str().and_then(|v| link.target_for(v)))
        .flatten();
    let (target, raw) = match direct {
        Some(target) => (target, None),
        None => {
            let raw = link.print(value);
            (decode_entities(raw.trim()).into_owned(), Some(raw))
        }
    };
    if is_forbidden_link(&target) {
        return Err(forbidden_error(&target));
    }
    if let Some(links) = links
        && let Some(url) = links.click_url(&target)
    {
        return Ok(url);
    }
    Ok(minijinja::Value::from_safe_string(
        raw.unwrap_or_else(|| link.print(value)),
    ))
}

/// `__clarion_check`: the rendered value unchanged, or an error when its scheme is forbidden.
pub(crate) fn check_filter(value: minijinja::Value) -> Result<minijinja::Value, minijinja::Error> {
    let target = decode_entities(value.as_str().unwrap_or_default().trim());
    if is_forbidden_link(&target) {
        return Err(forbidden_error(&target));
    }
    Ok(value)
}

/// Checks the links written literally in an HTML template source; returns one issue per
/// forbidden link, with its position.
pub(crate) fn forbidden_links_in_source(
    source: &str,
    field: &str,
) -> Result<Vec<TemplateIssue>, TemplateError> {
    let found: RefCell<Vec<(usize, String)>> = RefCell::new(Vec::new());
    let element_handlers = vec![(
        sel(&LINK_OR_SRC)?,
        ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
            for attr in el.attributes() {
                let name = attr.name();
                if !matches!(name.as_str(), "href" | "src" | "action" | "formaction") {
                    continue;
                }
                let value = attr.value();
                let target = decode_entities(value.trim());
                // Inline images (`<img src="data:image/png...">`) are common and harmless.
                let inline_image = name == "src" && target.trim_start().starts_with("data:image/");
                if is_forbidden_link(&target) && !inline_image {
                    let offset = attr
                        .value_source_location()
                        .map_or_else(|| el.source_location().bytes().start, |l| l.bytes().start);
                    found.borrow_mut().push((offset, target.into_owned()));
                }
            }
            Ok(())
        }),
    )];
    let settings = with_handlers(element_handlers, Vec::new());
    // The source may hold template syntax the HTML parser does not understand; problems it
    // cannot parse are left to the render check.
    let _ = rewrite_str(source, settings);
    Ok(found
        .into_inner()
        .into_iter()
        .map(|(offset, url)| {
            let (line, column) = line_column(source, offset);
            TemplateIssue {
                field: field.to_owned(),
                line: Some(line),
                column: Some(column),
                message: format!(
                    "link {url:?} uses a forbidden scheme (javascript:, vbscript: and data: are refused)"
                ),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_target_decoded_in_parts_equals_the_decoded_printed_link() {
        let prefixes = [
            "",
            " https://a.example/",
            "https://a.example/?x=1&amp;y=",
            "https://a.example/?x=&am",
            "&nbsp;https://a.example/",
            "https://a.example/&#x2f;",
        ];
        let values = ["p;", " x ", "", "  ", "a&b/\"'<>", "\u{a0}x", "amp;"];
        let suffixes = ["", "&amp;z=1", " ", "&nbsp;", "x;", "/"];
        let mut fast = 0;
        for prefix in prefixes {
            for suffix in suffixes {
                let link = DynamicLink::new(prefix, suffix);
                for value in values {
                    let printed = format!("{prefix}{}{suffix}", minijinja::HtmlEscape(value));
                    let expected = decode_entities(printed.trim());
                    if let Some(target) = link.target_for(value) {
                        fast += 1;
                        assert_eq!(target, expected, "{prefix:?} {value:?} {suffix:?}");
                    }
                }
            }
        }
        assert!(
            fast > 50,
            "the direct path should cover most links ({fast})"
        );
    }
}
