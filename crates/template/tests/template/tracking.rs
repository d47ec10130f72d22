use clarion_template::tracking::{CLICK_PATH, LIST_UNSUBSCRIBE_POST, OPEN_PATH, UNSUBSCRIBE_PATH};
use clarion_template::{Engine, MessageTracking, Tracker, TrackingKeys};
use serde_json::json;

use crate::{TRACKING_BASE, context, email, render, tracker};

/// Every `href` value in the HTML, in order.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].replace("&#x2f;", "/"))
        .collect()
}

fn token(url: &str, path: &str) -> String {
    url.strip_prefix(&format!("{TRACKING_BASE}{path}"))
        .unwrap_or_else(|| panic!("{url} is not a {path} URL"))
        .to_owned()
}

#[test]
fn links_become_signed_click_urls_except_opted_out_ones() {
    let content = email(
        "<html><body>\
         <a href=\"https://shop.example/a?x=1&amp;y=2\">A</a>\
         {% for p in contact.products %}<a href=\"{{ p }}\">P</a>{% endfor %}\
         <a href=\"https://shop.example/prefs\" data-notrack>Prefs</a>\
         <a href=\"mailto:care@shop.example\">Mail</a>\
         <a href=\"#top\">Top</a>\
         <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>\
         <link rel=\"stylesheet\" href=\"https://cdn.example/x.css\">\
         </body></html>",
    );
    let ctx = context(
        json!({"products": ["https://shop.example/p/1?ref=\"mail\"", "http://shop.example/p/2"]}),
    );
    let out = render(&content, &ctx);
    let links = hrefs(&out.html);
    assert_eq!(links.len(), 9, "{}", out.html);

    let t = tracker();
    let expected = [
        "https://shop.example/a?x=1&y=2",
        "https://shop.example/p/1?ref=\"mail\"",
        "http://shop.example/p/2",
    ];
    for (link, target) in links.iter().zip(expected) {
        let click = t.verify_click(&token(link, CLICK_PATH)).unwrap();
        assert_eq!(click.url, target);
        assert_eq!(click.delivery_id, "dlv-1");
    }
    assert_eq!(links[3], "https://shop.example/prefs");
    assert!(!out.html.contains("data-notrack"));
    assert_eq!(links[4], "mailto:care@shop.example");
    assert_eq!(links[5], "#top");
    let unsubscribe = t
        .verify_unsubscribe(&token(&links[6], UNSUBSCRIBE_PATH))
        .unwrap();
    assert_eq!(
        (
            unsubscribe.delivery_id.as_str(),
            unsubscribe.contact_id.as_str()
        ),
        ("dlv-1", "42")
    );
    assert_eq!(
        links[7], "https://cdn.example/x.css",
        "stylesheets are not links to track"
    );
    // Last, the hidden honeypot link: a signed click on the trap, absent from the text part.
    let trap = t.verify_click(&token(&links[8], CLICK_PATH)).unwrap();
    assert!(t.is_honeypot(&trap), "{}", trap.url);
    assert_eq!(trap.delivery_id, "dlv-1");
    assert!(
        out.html.contains("aria-hidden=\"true\"") && out.html.contains("display:none"),
        "{}",
        out.html
    );
    assert!(!out.text.contains("/t/c/"), "{}", out.text);
    assert!(!out.text.contains(&links[8]), "{}", out.text);
}

#[test]
fn every_tracked_html_message_has_one_honeypot_link() {
    let t = tracker();
    for html in [
        "<html><body><p>No links at all.</p></body></html>",
        "<p>No body tag, one <a href=\"https://shop.example/\">link</a>.</p>",
    ] {
        let out = render(&email(html), &context(json!({})));
        let traps: Vec<String> = hrefs(&out.html)
            .into_iter()
            .filter(|link| {
                link.starts_with(&format!("{TRACKING_BASE}{CLICK_PATH}"))
                    && t.is_honeypot(&t.verify_click(&token(link, CLICK_PATH)).unwrap())
            })
            .collect();
        assert_eq!(traps.len(), 1, "{}", out.html);
        assert!(!out.text.contains(&traps[0]), "{}", out.text);
    }
    // A link to the trap is never made for a person: not one of the message's own links.
    let own = t.click_url("dlv-1", "https://shop.example/");
    assert!(!t.is_honeypot(&t.verify_click(&token(&own, CLICK_PATH)).unwrap()));
}

#[test]
fn tampered_or_foreign_tokens_are_rejected() {
    let t = tracker();
    let url = t.click_url("dlv-1", "https://shop.example/a");
    let good = token(&url, CLICK_PATH);
    assert!(t.verify_click(&good).is_ok());

    // Another target with the original signature: not an open redirect.
    let (_, sig) = good.split_once('.').unwrap();
    let forged_payload = base64_url("dlv-1\nhttps://evil.example/");
    assert!(t.verify_click(&format!("{forged_payload}.{sig}")).is_err());

    // One flipped character anywhere.
    for i in 0..good.len() {
        let mut bytes = good.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        if tampered != good {
            assert!(t.verify_click(&tampered).is_err(), "accepted {tampered}");
        }
    }
    assert!(t.verify_click("").is_err());
    assert!(t.verify_click("no-dot").is_err());

    // Signed with a key that is not configured.
    let other = Tracker::new(
        TRACKING_BASE,
        TrackingKeys::new(&[b"another-key-0123456789"]).unwrap(),
    )
    .unwrap();
    assert!(
        t.verify_click(&token(
            &other.click_url("dlv-1", "https://x.example/"),
            CLICK_PATH
        ))
        .is_err()
    );
}

#[test]
fn rotated_keys_still_verify_old_links() {
    let old = Tracker::new(
        TRACKING_BASE,
        TrackingKeys::new(&[b"old-key-0123456789abc"]).unwrap(),
    )
    .unwrap();
    let rotated = Tracker::new(
        TRACKING_BASE,
        TrackingKeys::new(&[
            b"new-key-0123456789abc".as_slice(),
            b"old-key-0123456789abc",
        ])
        .unwrap(),
    )
    .unwrap();
    let old_link = old.click_url("d", "https://shop.example/");
    assert_eq!(
        rotated
            .verify_click(&token(&old_link, CLICK_PATH))
            .unwrap()
            .url,
        "https://shop.example/"
    );
    let new_link = rotated.click_url("d", "https://shop.example/");
    assert!(old.verify_click(&token(&new_link, CLICK_PATH)).is_err());
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn the_open_pixel_goes_before_the_end_of_the_body() {
    let out = render(
        &email("<html><body><p>Hi</p></body></html>"),
        &context(json!({})),
    );
    let pixel_at = out
        .html
        .find("<img src=\"https://t.example.com/t/o/")
        .unwrap();
    assert!(pixel_at < out.html.find("</body>").unwrap());
    assert!(out.html.find("<p>Hi</p>").unwrap() < pixel_at);
    let src = out.html[pixel_at + 10..]
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        tracker().verify_open(&token(&src, OPEN_PATH)).unwrap(),
        "dlv-1"
    );

    let fragment = render(&email("<p>Hi</p>"), &context(json!({})));
    assert!(
        fragment
            .html
            .starts_with("<p>Hi</p><img src=\"https://t.example.com/t/o/"),
        "{}",
        fragment.html
    );
}

#[test]
fn tracking_can_be_turned_off_per_message() {
    let content = email("<body><a href=\"https://shop.example/\">x</a></body>");
    let compiled = Engine::default().compile_email(&content).unwrap();
    let t = tracker();
    let mut tracking = MessageTracking::new(&t, "d", "c");
    tracking.track_links = false;
    tracking.track_opens = false;
    let out = compiled.render(&context(json!({})), &tracking).unwrap();
    assert_eq!(
        out.html,
        "<body><a href=\"https://shop.example/\">x</a></body>"
    );
}

#[test]
fn list_unsubscribe_headers_follow_rfc_8058() {
    let out = render(&email("<p>x</p>"), &context(json!({})));
    assert_eq!(out.list_unsubscribe_post, LIST_UNSUBSCRIBE_POST);
    assert_eq!(LIST_UNSUBSCRIBE_POST, "List-Unsubscribe=One-Click");
    let url = out
        .list_unsubscribe
        .strip_prefix('<')
        .unwrap()
        .strip_suffix('>')
        .unwrap();
    assert!(url.starts_with("https://"));
    let target = tracker()
        .verify_unsubscribe(&token(url, UNSUBSCRIBE_PATH))
        .unwrap();
    assert_eq!(target.contact_id, "42");

    let with_mailto = tracker()
        .with_unsubscribe_mailto("unsub@shop.example")
        .unwrap();
    let header = with_mailto.list_unsubscribe("d", "c");
    let (https, mailto) = header.split_once(", ").unwrap();
    assert!(https.starts_with("<https://t.example.com/t/u/"));
    assert!(mailto.starts_with("<mailto:unsub@shop.example?subject=unsubscribe%20"));
    assert!(mailto.ends_with('>'));
}

#[test]
fn a_javascript_link_from_contact_data_fails_only_that_message() {
    let content = email("<a href=\"{{ contact.site }}\">site</a>");
    let compiled = Engine::default().compile_email(&content).unwrap();
    let t = tracker();
    let tracking = MessageTracking::new(&t, "d", "c");
    let err = compiled
        .render(&context(json!({"site": " JavaScript:alert(1)"})), &tracking)
        .unwrap_err();
    assert!(
        matches!(err, clarion_template::TemplateError::ForbiddenLink { .. }),
        "{err:?}"
    );
    assert!(
        compiled
            .render(&context(json!({"site": "https://ok.example/"})), &tracking)
            .is_ok()
    );
}

#[test]
fn templates_that_cannot_be_instrumented_are_still_tracked_after_rendering() {
    // A quote inside the expression ends the attribute for an HTML parser reading the
    // template, and `{% raw %}` would print inserted tags: both take the per-message
    // rewriting path, with the same result.
    for html in [
        "<body><a href=\"{{ contact.site|default(\"https://shop.example/\") }}\" data-notrack>x</a>\
         <a href=\"{{ contact.site|default(\"https://shop.example/\") }}\">y</a></body>",
        "<body>{% raw %}{{ literal }}{% endraw %}<a href=\"https://shop.example/\" data-notrack>x</a>\
         <a href=\"https://shop.example/\">y</a></body>",
    ] {
        let out = render(&email(html), &context(json!({})));
        let links = hrefs(&out.html);
        assert_eq!(links[0], "https://shop.example/", "{}", out.html);
        let click = tracker()
            .verify_click(&token(&links[1], CLICK_PATH))
            .unwrap();
        assert_eq!(click.url, "https://shop.example/");
        assert!(!out.html.contains("data-notrack"));
        assert!(out.html.contains("/t/o/"), "pixel missing: {}", out.html);
    }
}

#[test]
fn the_derived_text_keeps_readable_link_targets() {
    let content = email(
        "<body><p>Hi {{ contact.name }}</p>{% for p in contact.products %}<p><a href=\"{{ p }}\">Product</a></p>{% endfor %}\
         <p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></body>",
    );
    let out = render(
        &content,
        &context(json!({"name": "Ann & Bob", "products": ["https://shop.example/p/1?a=1&b=2"]})),
    );
    let lines: Vec<&str> = out.text.lines().collect();
    assert_eq!(lines[0], "Hi Ann & Bob");
    assert_eq!(lines[2], "Product (https://shop.example/p/1?a=1&b=2)");
    assert!(
        lines[4].starts_with("Unsubscribe (https://t.example.com/t/u/"),
        "{}",
        out.text
    );
}

#[test]
fn a_forbidden_literal_link_fails_even_without_save_time_checks() {
    let cache = clarion_template::TemplateCache::new(Engine::default(), 4);
    let compiled = cache
        .email("k", &email("<a href=\"javascript:alert(1)\">x</a>"))
        .unwrap();
    let t = tracker();
    let err = compiled
        .render(&context(json!({})), &MessageTracking::new(&t, "d", "c"))
        .unwrap_err();
    assert!(
        matches!(err, clarion_template::TemplateError::ForbiddenLink { .. }),
        "{err:?}"
    );
}

#[test]
fn a_link_around_one_expression_prints_like_the_template_when_not_tracked() {
    let content = email(
        "<body><a href=\"https://shop.example/p?c={{ contact.code }}&amp;n={{ contact.n }}\">a</a>\
         <a href=\"https://shop.example/q?c={{ contact.code }}&amp;x=1\">b</a>\
         <a href=\"{{ contact.n }}\">c</a></body>",
    );
    let compiled = Engine::default().compile_email(&content).unwrap();
    let t = tracker();
    let mut tracking = MessageTracking::new(&t, "d", "c");
    tracking.track_links = false;
    tracking.track_opens = false;
    let ctx = context(json!({"code": "a&b \"<'/", "n": 7}));
    let out = compiled.render(&ctx, &tracking).unwrap();
    assert_eq!(
        out.html,
        "<body><a href=\"https://shop.example/p?c=a&amp;b &quot;&lt;&#x27;&#x2f;&amp;n=7\">a</a>\
         <a href=\"https://shop.example/q?c=a&amp;b &quot;&lt;&#x27;&#x2f;&amp;x=1\">b</a>\
         <a href=\"7\">c</a></body>"
    );

    // Tracked, the signed target is the decoded URL the reader would have followed.
    let tracked = compiled
        .render(&ctx, &MessageTracking::new(&t, "d", "c"))
        .unwrap();
    let links = hrefs(&tracked.html);
    let click = t.verify_click(&token(&links[1], CLICK_PATH)).unwrap();
    assert_eq!(click.url, "https://shop.example/q?c=a&b \"<'/&x=1");
    assert_eq!(links[2], "7");
}

#[test]
fn a_missing_value_in_a_link_names_the_expression_as_written() {
    let content = email("<p>\n<a href=\"https://shop.example/p/{{ contact.sku }}\">x</a></p>");
    let compiled = Engine::default().compile_email(&content).unwrap();
    let t = tracker();
    let err = compiled
        .render(&context(json!({})), &MessageTracking::new(&t, "d", "c"))
        .unwrap_err();
    match err {
        clarion_template::TemplateError::Undefined {
            field,
            line,
            message,
        } => {
            assert_eq!(field, "html");
            assert_eq!(line, Some(2));
            assert!(message.contains("`contact.sku`"), "{message}");
            assert!(!message.contains("__clarion"), "{message}");
        }
        other => panic!("expected Undefined, got {other:?}"),
    }
}

#[test]
fn the_same_target_twice_in_a_message_gets_the_same_click_url() {
    let out = render(
        &email(
            "<body>{% for p in contact.products %}<a href=\"{{ p }}\">i</a><a href=\"{{ p }}\">n</a>{% endfor %}</body>",
        ),
        &context(json!({"products": ["https://shop.example/1", "https://shop.example/2"]})),
    );
    let links = hrefs(&out.html);
    // The four links, then the honeypot.
    assert_eq!(links.len(), 5);
    assert_eq!(links[0], links[1]);
    assert_eq!(links[2], links[3]);
    assert_ne!(links[0], links[2]);
    let click = tracker()
        .verify_click(&token(&links[3], CLICK_PATH))
        .unwrap();
    assert_eq!(click.url, "https://shop.example/2");
}

/// The token and index of a per-message link URL.
fn link_parts(url: &str) -> (String, String) {
    let rest = token(url, clarion_template::tracking::LINK_PATH);
    let (token, index) = rest.split_once('/').unwrap();
    (token.to_owned(), index.to_owned())
}

#[test]
fn literal_links_share_one_token_and_index_the_variant_link_table() {
    let content = email(
        "<html><body>\
         <a href=\"https://shop.example/a?x=1&amp;y=2\">A</a>\
         <a href=\"https://shop.example/p?c={{ contact.id }}\">Mine</a>\
         <a href=\"mailto:care@shop.example\">Mail</a>\
         <a href=\"https://shop.example/b\">B</a>\
         <a href=\"https://shop.example/a?x=1&amp;y=2\">A again</a>\
         </body></html>",
    );
    let compiled = Engine::default().compile_email(&content).unwrap();
    let table = compiled.link_table();
    // The table is the literal links in order, the same as derived from the HTML alone.
    assert_eq!(
        table,
        [
            "https://shop.example/a?x=1&y=2",
            "mailto:care@shop.example",
            "https://shop.example/b",
            "https://shop.example/a?x=1&y=2",
        ]
    );
    assert_eq!(clarion_template::link_table(&content.html), table);

    let t = tracker();
    let ctx = context(json!({"id": 7}));
    let out = compiled
        .render(
            &ctx,
            &MessageTracking::new(&t, "dlv-1", "42").with_link_table("17.3"),
        )
        .unwrap();
    let links = hrefs(&out.html);
    let (first_token, first_index) = link_parts(&links[0]);
    let mut resolved = Vec::new();
    for link in [&links[0], &links[3], &links[4]] {
        let (token, index) = link_parts(link);
        // One signature for the whole message.
        assert_eq!(token, first_token);
        let verified = t.verify_link(&token, &index).unwrap();
        assert_eq!(verified.delivery_id, "dlv-1");
        assert_eq!(verified.link_table, "17.3");
        resolved.push(table[verified.index].clone());
    }
    assert_eq!(
        resolved,
        [
            "https://shop.example/a?x=1&y=2",
            "https://shop.example/b",
            "https://shop.example/a?x=1&y=2"
        ]
    );
    assert_eq!(first_index, "0");
    // A link built from contact data is not in the table: it keeps its own click token.
    let own = t.verify_click(&token(&links[1], CLICK_PATH)).unwrap();
    assert_eq!(own.url, "https://shop.example/p?c=7");
    assert_eq!(links[2], "mailto:care@shop.example");

    // A token altered in any byte, or signed by another key, does not verify.
    let (tok, index) = link_parts(&links[3]);
    let (payload, tag) = tok.split_once('.').unwrap();
    let forged = format!("{}.{tag}", base64_url("dlv-2\n17.3"));
    assert!(t.verify_link(&forged, &index).is_err());
    let other_table = format!("{}.{tag}", base64_url("dlv-1\n17.2"));
    assert!(t.verify_link(&other_table, &index).is_err());
    let mut bad_tag = tag.to_owned();
    bad_tag.replace_range(0..1, if tag.starts_with('A') { "B" } else { "A" });
    assert!(
        t.verify_link(&format!("{payload}.{bad_tag}"), &index)
            .is_err()
    );
    let foreign = Tracker::new(
        TRACKING_BASE,
        TrackingKeys::new(&[b"another-installation-key"]).unwrap(),
    )
    .unwrap();
    assert!(foreign.verify_link(&tok, &index).is_err());

    // Without a link table (a preview) every link is signed on its own, as before.
    let preview = compiled
        .render(&ctx, &MessageTracking::new(&t, "dlv-1", "42"))
        .unwrap();
    let click = t
        .verify_click(&token(&hrefs(&preview.html)[3], CLICK_PATH))
        .unwrap();
    assert_eq!(click.url, "https://shop.example/b");
}
