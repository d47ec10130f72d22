//! HTML post-processing with a streaming rewriter (lol_html): tracking links, the open pixel,
//! link safety checks, and the plain-text body derived from HTML.
//!
//! * `links`: links and tracking, at compile time (instrumenting a template) or per message
//!   (rewriting a rendered body), and the link checks of save-time validation.
//! * `text`: the plain-text body derived from HTML.
//!
//! The selectors and link tests both use are here.

mod links;
mod text;

use std::borrow::Cow;
use std::sync::LazyLock;

use lol_html::{DocumentContentHandlers, ElementContentHandlers, Selector, Settings};

use crate::error::TemplateError;

pub use links::link_table;
pub(crate) use links::{
    CHECK_FILTER, DynamicLink, FORBIDDEN_DETAIL, HONEYPOT_ATTRIBUTE, HREF_FN, LINK_FILTER,
    LINKS_VAR, LinkContext, PIXEL_VAR, STATIC_LINK_FN, StaticLink, check_filter,
    forbidden_links_in_source, href_fn, instrument_links, link_filter, rewrite_for_tracking,
    static_link_fn, trailer_html,
};
pub(crate) use text::{derive_text_template, html_to_text, tidy_text};

/// Attribute that turns click tracking off for one link; it is removed from the output.
pub const NO_TRACK_ATTRIBUTE: &str = "data-notrack";

type ParsedSelector = LazyLock<Result<Selector, String>>;

fn selector(css: &str) -> Result<Selector, String> {
    css.parse()
        .map_err(|e| format!("internal selector {css:?} is invalid: {e}"))
}

/// The parsed selector, borrowed for a rewriter; parsing once keeps renders cheap.
fn sel(parsed: &'static ParsedSelector) -> Result<Cow<'static, Selector>, TemplateError> {
    match &**parsed {
        Ok(s) => Ok(Cow::Borrowed(s)),
        Err(e) => Err(TemplateError::Rewrite(e.clone())),
    }
}

static HREF: ParsedSelector = LazyLock::new(|| selector("[href]"));
static INSTRUMENTED: ParsedSelector =
    LazyLock::new(|| selector("[href], [action], [formaction], [data-notrack]"));
static BODY: ParsedSelector = LazyLock::new(|| selector("body"));
static LINK_OR_SRC: ParsedSelector = LazyLock::new(|| selector("[href], [src], [action]"));
static DROPPED: ParsedSelector =
    LazyLock::new(|| selector("head, style, script, title, template, noscript"));
static BLOCK: ParsedSelector = LazyLock::new(|| {
    selector(
        "p, div, h1, h2, h3, h4, h5, h6, tr, table, ul, ol, blockquote, section, article, \
         header, footer, hr, pre, address, center",
    )
});
static LIST_ITEM: ParsedSelector = LazyLock::new(|| selector("li"));
static BREAK: ParsedSelector = LazyLock::new(|| selector("br"));
static CELL: ParsedSelector = LazyLock::new(|| selector("td, th"));
static IMAGE: ParsedSelector = LazyLock::new(|| selector("img[alt]"));
static ANY: ParsedSelector = LazyLock::new(|| selector("*"));

type ElementHandlers<'h> = Vec<(Cow<'static, Selector>, ElementContentHandlers<'h>)>;

fn with_handlers<'h>(
    elements: ElementHandlers<'h>,
    documents: Vec<DocumentContentHandlers<'h>>,
) -> Settings<'h, 'static> {
    // Email HTML is often sloppy; a non-strict rewriter never refuses it for ambiguity.
    let settings = Settings::new().with_strict(false);
    let settings = elements
        .into_iter()
        .fold(settings, Settings::append_element_content_handler);
    documents
        .into_iter()
        .fold(settings, Settings::append_document_content_handler)
}

/// Whether `url` is an absolute `http:` or `https:` URL (case-insensitive scheme).
#[must_use]
pub fn is_http_url(url: &str) -> bool {
    let b = url.as_bytes();
    let starts = |p: &[u8]| b.len() > p.len() && b[..p.len()].eq_ignore_ascii_case(p);
    starts(b"https://") || starts(b"http://")
}

/// Whether a link target would run code or smuggle content: `javascript:`, `vbscript:` or
/// `data:`, checked the way browsers read it (ASCII whitespace and control characters
/// ignored, any case).
#[must_use]
pub fn is_forbidden_link(url: &str) -> bool {
    let mut scheme = [0u8; 10];
    let mut len = 0;
    for c in url.chars() {
        if c.is_ascii_whitespace() || c.is_ascii_control() {
            continue;
        }
        if c == ':' {
            return matches!(&scheme[..len], b"javascript" | b"vbscript" | b"data");
        }
        if len == scheme.len() || !c.is_ascii_alphanumeric() {
            return false;
        }
        // ASCII alphanumeric, so the cast keeps the character.
        #[allow(clippy::cast_possible_truncation)]
        {
            scheme[len] = c.to_ascii_lowercase() as u8;
        }
        len += 1;
    }
    false
}

/// 1-based line and column (in characters) of a byte offset in `source`.
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

/// Whether the source opens a `{% raw %}` block (in any whitespace-control spelling).
fn has_raw_block(source: &str) -> bool {
    source.match_indices("{%").any(|(i, _)| {
        source[i + 2..]
            .trim_start_matches(['-', '+', '~'])
            .trim_start()
            .starts_with("raw")
    })
}

/// Decodes HTML character references: numeric ones (`&#39;`, `&#x2F;`) and the named ones an
/// email is likely to hold. Unknown names are kept as written.
pub(crate) fn decode_entities(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    let Some(first) = bytes.iter().position(|&b| b == b'&') else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..first]);
    let mut i = first;
    while i < bytes.len() {
        if bytes[i] == b'&' {
            // `&` and `;` are ASCII, so both ends of the name are character boundaries.
            let semi = bytes[i + 1..].iter().take(12).position(|&b| b == b';');
            if let Some(len) = semi
                && let Some(c) = decode_reference(&s[i + 1..i + 1 + len])
            {
                out.push(c);
                i += len + 2;
                continue;
            }
            out.push('&');
            i += 1;
        } else {
            let next = bytes[i..]
                .iter()
                .position(|&b| b == b'&')
                .map_or(bytes.len(), |p| i + p);
            out.push_str(&s[i..next]);
            i = next;
        }
    }
    Cow::Owned(out)
}

fn decode_reference(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        return char::from_u32(code).filter(|c| *c != '\0');
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "middot" => '·',
        "bull" => '•',
        "times" => '×',
        "deg" => '°',
        "zwnj" => '\u{200c}',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_schemes_are_recognised_through_obfuscation() {
        assert!(is_forbidden_link("javascript:alert(1)"));
        assert!(is_forbidden_link(" JaVa\tScRiPt:alert(1)"));
        assert!(is_forbidden_link("vbscript:x"));
        assert!(is_forbidden_link("data:text/html;base64,xx"));
        assert!(!is_forbidden_link("https://javascript.example/"));
        assert!(!is_forbidden_link("/relative/javascript:"));
        assert!(!is_forbidden_link("mailto:a@b.c"));
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_column("ab\ncéd", 6), (2, 3));
    }

    #[test]
    fn entities_decode() {
        assert_eq!(
            decode_entities("https:&#x2f;&#x2f;a.b/?x=1&amp;y=2&unknown;"),
            "https://a.b/?x=1&y=2&unknown;"
        );
        assert_eq!(decode_entities("a &lt; b"), "a < b");
        assert_eq!(
            decode_entities("&ééééééé;&#x1F600;&#0;&"),
            "&ééééééé;😀&#0;&"
        );
    }

    #[test]
    fn raw_blocks_are_found_in_every_spelling() {
        assert!(has_raw_block("a {%raw%}"));
        assert!(has_raw_block("a {%-  raw %}"));
        assert!(has_raw_block("a {%+ raw %}"));
        assert!(!has_raw_block("a {% if raw %}"));
    }
}
