//! The plain-text body derived from HTML: per message from the rendered HTML, or once per
//! variant as a text template.

use std::borrow::Cow;

use lol_html::html_content::{ContentType, Element};
use lol_html::{DocumentContentHandlers, ElementContentHandlers, rewrite_str};

use super::{
    ANY, BLOCK, BREAK, CELL, DROPPED, HONEYPOT_ATTRIBUTE, HREF, IMAGE, LIST_ITEM, decode_entities,
    has_raw_block, is_http_url, sel, with_handlers,
};
use crate::error::TemplateError;

/// Marks a structural line break while the text body is assembled; removed at the end.
pub(crate) const BREAK_MARK: char = '\u{1}';

/// Derives a readable plain-text body from HTML: scripts, styles and the head are dropped,
/// blocks and `<br>` become line breaks, list items get a dash, images their alt text, and
/// links keep their target in parentheses after the link text.
pub(crate) fn html_to_text(html: &str) -> Result<String, TemplateError> {
    let html = if html.contains(BREAK_MARK) {
        Cow::Owned(html.replace(BREAK_MARK, ""))
    } else {
        Cow::Borrowed(html)
    };
    Ok(tidy_text(&decode_entities(&mark_text(&html)?)))
}

/// Derives, once per variant, a plain-text *template* from an HTML template, so that each
/// message gets its text body from a cheap render plus [`tidy_text`] instead of an HTML
/// pass. `None` when the HTML template cannot be read this way (template tags split across
/// markup, `{% raw %}`, entities that would spell template syntax); the caller then derives
/// the text from each rendered HTML body.
pub(crate) fn derive_text_template(html_source: &str) -> Option<String> {
    if html_source.contains(BREAK_MARK) || has_raw_block(html_source) {
        return None;
    }
    let marked = mark_text(html_source).ok()?;
    let decoded = decode_entities(&marked);
    let syntax =
        |s: &str| s.matches("{{").count() + s.matches("{%").count() + s.matches("{#").count();
    if syntax(&decoded) != syntax(&marked) {
        return None;
    }
    Some(collapse_literal_whitespace(&decoded))
}

/// Shrinks each run of whitespace in literal text (outside template tags) to one space or
/// break mark, which [`tidy_text`] would do per message anyway; a much shorter template is
/// cheaper to render and tidy.
fn collapse_literal_whitespace(source: &str) -> String {
    let mut out = String::with_capacity(source.len() / 2);
    let mut rest = source;
    loop {
        let next_tag = ["{{", "{%", "{#"]
            .iter()
            .filter_map(|open| rest.find(open).map(|i| (i, *open)))
            .min_by_key(|(i, _)| *i);
        let literal_end = next_tag.map_or(rest.len(), |(i, _)| i);
        let mut pending: Option<char> = None;
        for c in rest[..literal_end].chars() {
            if c == BREAK_MARK {
                out.push(BREAK_MARK);
                pending = None;
            } else if c.is_ascii_whitespace() {
                pending.get_or_insert(' ');
            } else {
                if let Some(space) = pending.take() {
                    out.push(space);
                }
                out.push(c);
            }
        }
        if let Some(space) = pending {
            out.push(space);
        }
        let Some((start, open)) = next_tag else {
            return out;
        };
        let close = match open {
            "{{" => "}}",
            "{%" => "%}",
            _ => "#}",
        };
        let tag_end = rest[start + 2..]
            .find(close)
            .map_or(rest.len(), |i| start + 2 + i + 2);
        out.push_str(&rest[start..tag_end]);
        rest = &rest[tag_end..];
    }
}

/// Strips markup, leaving text with [`BREAK_MARK`]s where lines break; entities are still
/// encoded and template syntax in text and link targets is kept.
fn mark_text(html: &str) -> Result<String, TemplateError> {
    let mark = BREAK_MARK.to_string();
    let element_handlers = vec![
        (
            sel(&DROPPED)?,
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                el.remove();
                Ok(())
            }),
        ),
        (
            sel(&BLOCK)?,
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                el.before(&mark, ContentType::Html);
                el.after(&mark, ContentType::Html);
                Ok(())
            }),
        ),
        (
            sel(&LIST_ITEM)?,
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                el.before(&format!("{BREAK_MARK}- "), ContentType::Html);
                Ok(())
            }),
        ),
        (
            sel(&BREAK)?,
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                el.replace(&mark, ContentType::Html);
                Ok(())
            }),
        ),
        (
            sel(&CELL)?,
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                el.after(" ", ContentType::Html);
                Ok(())
            }),
        ),
        (
            sel(&IMAGE)?,
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                let alt = el.get_attribute("alt").unwrap_or_default();
                // The alt value is still entity-encoded, exactly like surrounding text.
                el.replace(&format!(" {alt} "), ContentType::Html);
                Ok(())
            }),
        ),
        (
            sel(&HREF)?,
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                if el.tag_name() != "a" {
                    return Ok(());
                }
                if el.has_attribute(HONEYPOT_ATTRIBUTE) {
                    el.remove();
                    return Ok(());
                }
                let raw = el.get_attribute("href").unwrap_or_default();
                let raw = raw.trim();
                let target = decode_entities(raw);
                let dynamic = raw.contains("{{");
                if is_http_url(&target) || target.starts_with("mailto:") || dynamic {
                    let shown = raw.strip_prefix("mailto:").unwrap_or(raw);
                    // Still entity-encoded like the surrounding text; decoded with it.
                    el.append(&format!(" ({shown})"), ContentType::Html);
                }
                Ok(())
            }),
        ),
        (
            sel(&ANY)?,
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                el.remove_and_keep_content();
                Ok(())
            }),
        ),
    ];
    let document_handlers = vec![
        DocumentContentHandlers::default()
            .comments(|c: &mut lol_html::html_content::Comment<'_>| {
                c.remove();
                Ok(())
            })
            .doctype(|d: &mut lol_html::html_content::Doctype<'_>| {
                d.remove();
                Ok(())
            }),
    ];
    let settings = with_handlers(element_handlers, document_handlers);
    rewrite_str(html, settings).map_err(|e| TemplateError::Rewrite(e.to_string()))
}

/// Bytes that may start a separator for [`tidy_text`]: the break mark, ASCII whitespace and
/// the first byte of U+00A0.
static SEPARATOR_START: [bool; 256] = {
    let mut table = [false; 256];
    table[0x01] = true;
    table[b' ' as usize] = true;
    table[b'\t' as usize] = true;
    table[b'\n' as usize] = true;
    table[0x0C] = true;
    table[b'\r' as usize] = true;
    table[0xC2] = true;
    table
};

/// Collapses HTML whitespace (no-break spaces included) into single spaces, turns break
/// marks into line breaks, trims each line and keeps at most one empty line in a row; one
/// pass over the bytes, copying runs of visible text at once.
pub(crate) fn tidy_text(s: &str) -> String {
    const MARK: u8 = 0x01;
    let bytes = s.as_bytes();
    // U+00A0 is the only multi-byte character treated as a separator.
    let is_nbsp = |i: usize| bytes[i] == 0xC2 && bytes.get(i + 1) == Some(&0xA0);
    let mut out = String::with_capacity(s.len() / 2);
    let mut breaks = 0usize;
    let mut space = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == MARK {
            breaks += 1;
            space = false;
            i += 1;
        } else if b.is_ascii_whitespace() {
            space = true;
            i += 1;
        } else if is_nbsp(i) {
            space = true;
            i += 2;
        } else {
            let start = i;
            loop {
                // One table lookup a byte; a 0xC2 that does not start U+00A0 is text.
                while i < bytes.len() && !SEPARATOR_START[usize::from(bytes[i])] {
                    i += 1;
                }
                // A single space between two pieces of text is kept as it is, so the run
                // goes on: words are copied a line at a time, not one by one.
                let text_follows = |j: usize| {
                    j < bytes.len()
                        && (!SEPARATOR_START[usize::from(bytes[j])]
                            || (bytes[j] == 0xC2 && !is_nbsp(j)))
                };
                if i < bytes.len() && bytes[i] == 0xC2 && !is_nbsp(i) {
                    i += 1;
                } else if i < bytes.len() && bytes[i] == b' ' && text_follows(i + 1) {
                    i += 2;
                } else {
                    break;
                }
            }
            if !out.is_empty() {
                if breaks > 0 {
                    out.push_str(if breaks > 1 { "\n\n" } else { "\n" });
                } else if space {
                    out.push(' ');
                }
            }
            // Runs start and end next to ASCII bytes or a whole U+00A0, so both ends are
            // character boundaries.
            out.push_str(s.get(start..i).unwrap_or_default());
            breaks = 0;
            space = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_text_collapses_whitespace_and_limits_blank_lines() {
        let m = BREAK_MARK;
        assert_eq!(
            tidy_text(&format!("  a \u{a0} b{m} {m}{m}{m} c\u{202f}d{m}é  {m}")),
            "a b\n\nc\u{202f}d\né"
        );
        // Other characters starting with the byte 0xC2 are text, not separators.
        assert_eq!(tidy_text("a§b \u{a9}\u{a0}c\u{a0}"), "a§b \u{a9} c");
        assert_eq!(tidy_text("\u{a7}"), "\u{a7}");
        assert_eq!(
            tidy_text(&format!(
                "one two  three\tfour {m}five six {m} seven \u{a0}eight §x y"
            )),
            "one two three four\nfive six\nseven eight §x y"
        );
    }

    #[test]
    fn literal_whitespace_shrinks_outside_tags_only() {
        let m = BREAK_MARK;
        assert_eq!(
            collapse_literal_whitespace(&format!(
                "  a \n {m}  b{{{{ x  ~ '  ' }}}}  {{% if  y %}}\t{{# c  #}}"
            )),
            format!(" a{m} b{{{{ x  ~ '  ' }}}} {{% if  y %}} {{# c  #}}")
        );
    }
}
