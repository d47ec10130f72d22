//! Signed tracking URLs: click redirects, the open pixel and unsubscribe links.
//!
//! A token is `base64url(payload) "." base64url(tag)` where the tag is the first 16 bytes of
//! HMAC-SHA256 over a one-byte kind (`c`, `o`, `u`) followed by the payload, so a token of one
//! kind never verifies as another. Payloads:
//!
//! * click: `delivery_id "\n" target_url`
//! * open: `delivery_id`
//! * unsubscribe: `delivery_id "\n" contact_id`
//!
//! URLs are `{base}/t/c/{token}`, `{base}/t/o/{token}` and `{base}/t/u/{token}`. The server
//! answers a click by redirecting only to the URL inside a token that verifies, so a changed
//! target fails verification and the endpoint is never an open redirect.
//!
//! Links written literally in a variant's HTML (whose target is the same in every message of
//! a variant version) use one token per message instead: kind `l`, payload
//! `delivery_id "\n" link_table`, where `link_table` names the variant version whose link
//! table holds the targets (see [`crate::link_table`]). Their URL is
//! `{base}/t/l/{token}/{index}`: one HMAC per message however many links it holds. The index
//! is not signed, but it can only pick another link of the same message's variant version; an
//! index outside the table, like any token that does not verify, is refused. Links whose
//! target comes from contact data keep a click token of their own.
//!
//! Keys come from the configuration. The first key signs; every key verifies, so a key can be
//! rotated by putting the new key first and removing the old one once its links have aged out.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::TemplateError;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC kept in a token: 128 bits, enough against forgery, short in a URL.
const TAG_LEN: usize = 16;
/// Shortest signing key accepted.
pub const MIN_KEY_LEN: usize = 16;

/// Path prefix of click-tracking URLs, after the base URL.
pub const CLICK_PATH: &str = "/t/c/";
/// Path of the honeypot target, after the base URL (reached only through a signed click URL).
pub const HONEYPOT_PATH: &str = "/t/trap";
/// Path prefix of the per-message link URLs (`{token}/{index}` follows), after the base URL.
pub const LINK_PATH: &str = "/t/l/";
/// Path prefix of open-pixel URLs, after the base URL.
pub const OPEN_PATH: &str = "/t/o/";
/// Path prefix of unsubscribe URLs (page and RFC 8058 one-click POST), after the base URL.
pub const UNSUBSCRIBE_PATH: &str = "/t/u/";

/// Value of the `List-Unsubscribe-Post` header (RFC 8058).
pub const LIST_UNSUBSCRIBE_POST: &str = "List-Unsubscribe=One-Click";

#[derive(Clone, Copy)]
enum Kind {
    Click,
    Open,
    Unsubscribe,
    Link,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Click => b'c',
            Kind::Open => b'o',
            Kind::Unsubscribe => b'u',
            Kind::Link => b'l',
        }
    }
}

/// Appends base64url (no padding) of `bytes`, through a stack buffer for the usual short
/// payloads: one contiguous encode, no allocation.
fn push_base64(bytes: &[u8], out: &mut String) {
    let mut buf = [0u8; 512];
    if let Ok(n) = URL_SAFE_NO_PAD.encode_slice(bytes, &mut buf)
        && let Ok(text) = std::str::from_utf8(&buf[..n])
    {
        out.push_str(text);
    } else {
        out.push_str(&URL_SAFE_NO_PAD.encode(bytes));
    }
}

/// The signing keys: the first signs, all verify.
#[derive(Clone)]
pub struct TrackingKeys {
    // Keyed HMAC states, cloned per token so the key schedule is computed once.
    macs: Vec<HmacSha256>,
}

impl std::fmt::Debug for TrackingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrackingKeys({} key(s), redacted)", self.macs.len())
    }
}

impl TrackingKeys {
    /// Builds the key set from raw secrets, newest (signing) key first.
    ///
    /// # Errors
    /// [`TemplateError::Config`] when no key is given or a key is shorter than
    /// [`MIN_KEY_LEN`] bytes.
    pub fn new<K: AsRef<[u8]>>(keys: &[K]) -> Result<Self, TemplateError> {
        if keys.is_empty() {
            return Err(TemplateError::Config(
                "at least one tracking signing key is required".to_owned(),
            ));
        }
        let mut macs = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let key = key.as_ref();
            if key.len() < MIN_KEY_LEN {
                return Err(TemplateError::Config(format!(
                    "tracking signing key #{} is {} bytes long; at least {MIN_KEY_LEN} are required",
                    i + 1,
                    key.len()
                )));
            }
            let mac = HmacSha256::new_from_slice(key)
                .map_err(|e| TemplateError::Config(format!("tracking signing key: {e}")))?;
            macs.push(mac);
        }
        Ok(Self { macs })
    }

    fn sign(&self, kind: Kind, payload: &[u8], out: &mut String) {
        // `new` guarantees at least one key.
        let Some(first) = self.macs.first() else {
            return;
        };
        let mut mac = first.clone();
        mac.update(&[kind.byte()]);
        mac.update(payload);
        let tag = mac.finalize().into_bytes();
        push_base64(payload, out);
        out.push('.');
        push_base64(&tag[..TAG_LEN], out);
    }

    fn verify(&self, kind: Kind, token: &str) -> Result<Vec<u8>, TemplateError> {
        let (payload_b64, tag_b64) = token.split_once('.').ok_or(TemplateError::InvalidToken(
            "the token has no signature part",
        ))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TemplateError::InvalidToken("the token payload is not base64url"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| TemplateError::InvalidToken("the token signature is not base64url"))?;
        if tag.len() != TAG_LEN {
            return Err(TemplateError::InvalidToken(
                "the token signature has the wrong length",
            ));
        }
        for mac in &self.macs {
            let mut mac = mac.clone();
            mac.update(&[kind.byte()]);
            mac.update(&payload);
            if mac.verify_truncated_left(&tag).is_ok() {
                return Ok(payload);
            }
        }
        Err(TemplateError::InvalidToken(
            "the signature does not match any configured key (altered or foreign token)",
        ))
    }
}

/// A verified click: which delivery was clicked and where to send the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickTarget {
    /// The delivery the link was sent in.
    pub delivery_id: String,
    /// The original link target (always `http` or `https`).
    pub url: String,
}

/// A verified unsubscribe request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeTarget {
    /// The delivery the link was sent in.
    pub delivery_id: String,
    /// The contact to unsubscribe.
    pub contact_id: String,
}

/// A verified per-message link: which delivery, which variant version's link table, and
/// which entry of it. The caller looks the entry up and refuses an index outside the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRef {
    /// The delivery the link was sent in.
    pub delivery_id: String,
    /// The link table the message was rendered with, as given in [`MessageTracking`].
    pub link_table: String,
    /// The entry of the link table.
    pub index: usize,
}

/// Builds and verifies the signed tracking URLs of one installation; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracker {
    inner: Arc<TrackerInner>,
}

#[derive(Debug, Clone)]
struct TrackerInner {
    base_url: String,
    keys: TrackingKeys,
    unsubscribe_mailto: Option<String>,
}

impl Tracker {
    /// A tracker whose URLs start with `base_url` (e.g. `https://t.shop.example`).
    ///
    /// # Errors
    /// [`TemplateError::Config`] when the base URL is not an absolute `http(s)` URL or carries a
    /// query or fragment.
    pub fn new(base_url: &str, keys: TrackingKeys) -> Result<Self, TemplateError> {
        let base = base_url.trim().trim_end_matches('/');
        let lower = base.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.starts_with('/') => {}
            _ => {
                return Err(TemplateError::Config(format!(
                    "tracking base URL {base_url:?} must be an absolute http:// or https:// URL"
                )));
            }
        }
        if base.contains(['?', '#', '"', '<', '>', ' ']) {
            return Err(TemplateError::Config(format!(
                "tracking base URL {base_url:?} must not contain a query, fragment, quotes or spaces"
            )));
        }
        Ok(Self {
            inner: Arc::new(TrackerInner {
                base_url: base.to_owned(),
                keys,
                unsubscribe_mailto: None,
            }),
        })
    }

    /// Also offer a `mailto:` unsubscribe in `List-Unsubscribe`, sent to `address` with the
    /// unsubscribe token as the subject.
    ///
    /// # Errors
    /// [`TemplateError::Config`] when the address is not a plain `local@domain`.
    pub fn with_unsubscribe_mailto(mut self, address: &str) -> Result<Self, TemplateError> {
        let address = address.trim();
        let plain = address
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            && !address.contains(|c: char| c.is_whitespace() || "<>?&\",;".contains(c));
        if !plain {
            return Err(TemplateError::Config(format!(
                "unsubscribe mailto address {address:?} is not a plain local@domain address"
            )));
        }
        Arc::make_mut(&mut self.inner).unsubscribe_mailto = Some(address.to_owned());
        Ok(self)
    }

    /// The base URL every tracking URL starts with.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The signed click URL that redirects to `target` and records a click on `delivery_id`.
    #[must_use]
    pub fn click_url(&self, delivery_id: &str, target: &str) -> String {
        // Usual payloads fit a stack buffer; a render signs many links.
        let len = delivery_id.len() + 1 + target.len();
        let mut stack = [0u8; 384];
        let mut heap = Vec::new();
        let payload = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, 0);
            &mut heap[..]
        };
        let (id, rest) = payload.split_at_mut(delivery_id.len());
        id.copy_from_slice(delivery_id.as_bytes());
        if let Some((newline, url)) = rest.split_first_mut() {
            *newline = b'\n';
            url.copy_from_slice(target.as_bytes());
        }
        self.url(CLICK_PATH, Kind::Click, payload)
    }

    /// Where the honeypot link of every tracked HTML message leads: a path under the base
    /// URL that no message links to otherwise. A click on it records a machine's click.
    #[must_use]
    pub fn honeypot_target(&self) -> String {
        format!("{}{HONEYPOT_PATH}", self.inner.base_url)
    }

    /// The signed click URL of `delivery_id`'s honeypot link.
    #[must_use]
    pub fn honeypot_url(&self, delivery_id: &str) -> String {
        self.click_url(delivery_id, &self.honeypot_target())
    }

    /// Whether a verified click's target is the honeypot: an origin followed by exactly the
    /// honeypot path. The origin is not compared, so links signed under an earlier base URL
    /// (or by another process's) are recognised too; the signature is what makes it ours.
    #[must_use]
    pub fn is_honeypot(&self, target: &ClickTarget) -> bool {
        let Some(origin) = target.url.strip_suffix(HONEYPOT_PATH) else {
            return false;
        };
        let host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        host.is_some_and(|host| !host.is_empty() && !host.contains(['/', '?', '#']))
    }

    /// The signed open-pixel URL of `delivery_id`.
    #[must_use]
    pub fn open_url(&self, delivery_id: &str) -> String {
        self.url(OPEN_PATH, Kind::Open, delivery_id.as_bytes())
    }

    /// The signed unsubscribe URL (page and one-click POST target) of a delivery's contact.
    #[must_use]
    pub fn unsubscribe_url(&self, delivery_id: &str, contact_id: &str) -> String {
        self.url(
            UNSUBSCRIBE_PATH,
            Kind::Unsubscribe,
            &unsubscribe_payload(delivery_id, contact_id),
        )
    }

    /// The `List-Unsubscribe` header value: the HTTPS one-click URL, then the mailto address
    /// when configured.
    #[must_use]
    pub fn list_unsubscribe(&self, delivery_id: &str, contact_id: &str) -> String {
        self.list_unsubscribe_for(&self.unsubscribe_url(delivery_id, contact_id))
    }

    /// `List-Unsubscribe` for an unsubscribe URL made by [`Tracker::unsubscribe_url`]; the
    /// mailto subject carries the same token.
    pub(crate) fn list_unsubscribe_for(&self, unsubscribe_url: &str) -> String {
        match &self.inner.unsubscribe_mailto {
            Some(address) => {
                let token = unsubscribe_url.rsplit('/').next().unwrap_or_default();
                format!("<{unsubscribe_url}>, <mailto:{address}?subject=unsubscribe%20{token}>")
            }
            None => format!("<{unsubscribe_url}>"),
        }
    }

    /// Checks a click token (the last path segment of a click URL).
    ///
    /// # Errors
    /// [`TemplateError::InvalidToken`] when the token is malformed, altered, signed by an unknown
    /// key, or does not carry an `http(s)` target.
    pub fn verify_click(&self, token: &str) -> Result<ClickTarget, TemplateError> {
        let payload = self.inner.keys.verify(Kind::Click, token)?;
        let text = String::from_utf8(payload)
            .map_err(|_| TemplateError::InvalidToken("the token payload is not UTF-8"))?;
        let (delivery_id, url) = text
            .split_once('\n')
            .ok_or(TemplateError::InvalidToken("the click token has no target"))?;
        if !crate::html::is_http_url(url) {
            return Err(TemplateError::InvalidToken(
                "the click target is not an http(s) URL",
            ));
        }
        Ok(ClickTarget {
            delivery_id: delivery_id.to_owned(),
            url: url.to_owned(),
        })
    }

    /// The start of every per-message link URL of `delivery_id` rendered with `link_table`:
    /// `{base}/t/l/{token}/`, to which a link appends its index. One HMAC.
    #[must_use]
    pub fn link_prefix(&self, delivery_id: &str, link_table: &str) -> String {
        let mut payload = Vec::with_capacity(delivery_id.len() + 1 + link_table.len());
        payload.extend_from_slice(delivery_id.as_bytes());
        payload.push(b'\n');
        payload.extend_from_slice(link_table.as_bytes());
        let mut url = self.url(LINK_PATH, Kind::Link, &payload);
        url.push('/');
        url
    }

    /// The per-message URL of entry `index` of `link_table` (see [`Tracker::link_prefix`]).
    #[must_use]
    pub fn link_url(&self, delivery_id: &str, link_table: &str, index: usize) -> String {
        format!("{}{index}", self.link_prefix(delivery_id, link_table))
    }

    /// Checks a per-message link: the token (the path segment after `/t/l/`) and the index
    /// (the segment after it, decimal digits only).
    ///
    /// # Errors
    /// [`TemplateError::InvalidToken`] when the token is malformed, altered, foreign or of
    /// another kind, or the index is not a plain decimal number.
    pub fn verify_link(&self, token: &str, index: &str) -> Result<LinkRef, TemplateError> {
        let payload = self.inner.keys.verify(Kind::Link, token)?;
        let text = String::from_utf8(payload)
            .map_err(|_| TemplateError::InvalidToken("the token payload is not UTF-8"))?;
        let (delivery_id, link_table) = text.split_once('\n').ok_or(
            TemplateError::InvalidToken("the link token has no link table"),
        )?;
        if index.is_empty() || index.len() > 6 || !index.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TemplateError::InvalidToken(
                "the link index is not a number",
            ));
        }
        let index = index
            .parse()
            .map_err(|_| TemplateError::InvalidToken("the link index is not a number"))?;
        Ok(LinkRef {
            delivery_id: delivery_id.to_owned(),
            link_table: link_table.to_owned(),
            index,
        })
    }

    /// Checks an open-pixel token and returns its delivery id.
    ///
    /// # Errors
    /// [`TemplateError::InvalidToken`] when the token is malformed, altered or foreign.
    pub fn verify_open(&self, token: &str) -> Result<String, TemplateError> {
        let payload = self.inner.keys.verify(Kind::Open, token)?;
        String::from_utf8(payload)
            .map_err(|_| TemplateError::InvalidToken("the token payload is not UTF-8"))
    }

    /// Checks an unsubscribe token.
    ///
    /// # Errors
    /// [`TemplateError::InvalidToken`] when the token is malformed, altered or foreign.
    pub fn verify_unsubscribe(&self, token: &str) -> Result<UnsubscribeTarget, TemplateError> {
        let payload = self.inner.keys.verify(Kind::Unsubscribe, token)?;
        let text = String::from_utf8(payload)
            .map_err(|_| TemplateError::InvalidToken("the token payload is not UTF-8"))?;
        let (delivery_id, contact_id) = text.split_once('\n').ok_or(
            TemplateError::InvalidToken("the unsubscribe token has no contact"),
        )?;
        Ok(UnsubscribeTarget {
            delivery_id: delivery_id.to_owned(),
            contact_id: contact_id.to_owned(),
        })
    }

    fn url(&self, path: &str, kind: Kind, payload: &[u8]) -> String {
        let mut url = String::with_capacity(
            self.inner.base_url.len() + path.len() + payload.len().div_ceil(3) * 4 + TAG_LEN * 2,
        );
        url.push_str(&self.inner.base_url);
        url.push_str(path);
        self.inner.keys.sign(kind, payload, &mut url);
        url
    }
}

fn unsubscribe_payload(delivery_id: &str, contact_id: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(delivery_id.len() + 1 + contact_id.len());
    payload.extend_from_slice(delivery_id.as_bytes());
    payload.push(b'\n');
    payload.extend_from_slice(contact_id.as_bytes());
    payload
}

/// Per-message tracking settings handed to a render.
#[derive(Debug, Clone, Copy)]
pub struct MessageTracking<'a> {
    /// The installation's tracker (base URL and keys).
    pub tracker: &'a Tracker,
    /// The delivery this message belongs to; must not contain a line break.
    pub delivery_id: &'a str,
    /// The contact receiving it; must not contain a line break.
    pub contact_id: &'a str,
    /// Rewrite `http(s)` links into signed click URLs.
    pub track_links: bool,
    /// Add the open pixel.
    pub track_opens: bool,
    /// The name of the variant version's link table (see [`crate::link_table`]), for
    /// example `"17.3"`: links written literally in the HTML then share one signed token per
    /// message and carry their index into that table. `None` signs every link on its own.
    /// Must not contain a line break.
    pub link_table: Option<&'a str>,
}

impl<'a> MessageTracking<'a> {
    /// Tracking of links and opens, both on (the default for campaigns).
    #[must_use]
    pub fn new(tracker: &'a Tracker, delivery_id: &'a str, contact_id: &'a str) -> Self {
        Self {
            tracker,
            delivery_id,
            contact_id,
            track_links: true,
            track_opens: true,
            link_table: None,
        }
    }

    /// The same tracking, with literal links pointing into `link_table` (see
    /// [`MessageTracking::link_table`]).
    #[must_use]
    pub fn with_link_table(mut self, link_table: &'a str) -> Self {
        self.link_table = Some(link_table);
        self
    }

    pub(crate) fn check_ids(&self) -> Result<(), TemplateError> {
        if self.delivery_id.contains(['\n', '\r'])
            || self.contact_id.contains(['\n', '\r'])
            || self.link_table.is_some_and(|t| t.contains(['\n', '\r']))
        {
            return Err(TemplateError::Context(
                "delivery and contact ids must not contain line breaks".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Tracker {
        Tracker::new(
            "https://t.example.com/",
            TrackingKeys::new(&[b"0123456789abcdef0123"]).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn token_kinds_do_not_cross_verify() {
        let t = tracker();
        let open = t.open_url("d1");
        let token = open.rsplit('/').next().unwrap();
        assert_eq!(t.verify_open(token).unwrap(), "d1");
        assert!(t.verify_click(token).is_err());
        assert!(t.verify_unsubscribe(token).is_err());
        assert!(t.verify_link(token, "0").is_err());
    }

    #[test]
    fn link_tokens_carry_delivery_table_and_index() {
        let t = tracker();
        let url = t.link_url("d1", "17.3", 12);
        let rest = url.strip_prefix("https://t.example.com/t/l/").unwrap();
        let (token, index) = rest.split_once('/').unwrap();
        assert_eq!(
            t.verify_link(token, index).unwrap(),
            LinkRef {
                delivery_id: "d1".to_owned(),
                link_table: "17.3".to_owned(),
                index: 12
            }
        );
        for bad in ["", "-1", "+1", "1x", "0x1", "99999999"] {
            assert!(t.verify_link(token, bad).is_err(), "{bad:?}");
        }
        // Not a click token, and a click token is not a link token.
        assert!(t.verify_click(token).is_err());
        let click = t.click_url("d1", "https://a.example/");
        assert!(
            t.verify_link(click.rsplit('/').next().unwrap(), "0")
                .is_err()
        );
    }

    #[test]
    fn rejects_short_keys_and_bad_base_urls() {
        assert!(TrackingKeys::new(&[b"short"]).is_err());
        assert!(TrackingKeys::new::<&[u8]>(&[]).is_err());
        let keys = TrackingKeys::new(&[b"0123456789abcdef"]).unwrap();
        assert!(Tracker::new("ftp://x", keys.clone()).is_err());
        assert!(Tracker::new("https://x/?a=1", keys.clone()).is_err());
        assert!(Tracker::new("https://", keys).is_err());
    }
}
