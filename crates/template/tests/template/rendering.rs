use clarion_template::{EmailContent, Engine, Limits, MessageTracking, TemplateError};
use serde_json::json;

use crate::{context, context_in, email, render, tracker};

fn render_err(content: &EmailContent, contact: serde_json::Value, limits: Limits) -> TemplateError {
    let engine = Engine::new(limits);
    // Compile without the save-time sample render so data-dependent failures reach render.
    let compiled = clarion_template::TemplateCache::new(engine, 8)
        .email("k", content)
        .unwrap();
    let tracker = tracker();
    compiled
        .render(&context(contact), &MessageTracking::new(&tracker, "d", "c"))
        .unwrap_err()
}

#[test]
fn contact_data_is_html_escaped_in_the_body_but_not_in_the_subject() {
    let mut content = email("<p>Hi {{ contact.name }}</p>");
    content.subject = "For {{ contact.name }}".to_owned();
    let out = render(
        &content,
        &context(json!({"name": "<script>alert('x')</script> & co"})),
    );
    assert!(
        out.html
            .contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2f;script&gt; &amp; co")
    );
    assert!(!out.html.contains("<script>"));
    assert_eq!(out.subject, "For <script>alert('x')</script> & co");
}

#[test]
fn a_missing_value_fails_the_message_unless_a_default_is_given() {
    let content = email("<p>Hi {{ contact.nickname }}</p>");
    let err = render_err(&content, json!({"name": "Ann"}), Limits::default());
    match &err {
        TemplateError::Undefined {
            field,
            line,
            message,
        } => {
            assert_eq!(field, "html");
            assert_eq!(*line, Some(1));
            assert!(message.contains("contact.nickname"), "{message}");
        }
        other => panic!("expected Undefined, got {other:?}"),
    }

    let content = email(
        "<p>Hi {{ contact.nickname|default('friend') }}{% if contact.vip %} VIP{% endif %}</p>",
    );
    let out = render(&content, &context(json!({"name": "Ann"})));
    assert!(out.html.contains("Hi friend</p>"), "{}", out.html);
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let content =
        email("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}");
    let limits = Limits {
        fuel: 10_000,
        max_output_bytes: 100_000_000,
        ..Limits::default()
    };
    let err = render_err(&content, json!({}), limits);
    assert!(
        matches!(err, TemplateError::OutOfFuel { ref field, fuel: 10_000 } if field == "html"),
        "{err:?}"
    );
}

#[test]
fn runaway_recursion_is_stopped() {
    let content = email("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
    let err = render_err(&content, json!({}), Limits::default());
    assert!(
        matches!(&err, TemplateError::Render { message, .. } if message.contains("recursion")),
        "{err:?}"
    );
}

#[test]
fn output_beyond_the_cap_fails_the_message() {
    let content = email("{% for p in contact.items %}{{ p }}{% endfor %}");
    let limits = Limits {
        max_output_bytes: 1_000,
        ..Limits::default()
    };
    let items: Vec<String> = (0..100).map(|_| "y".repeat(50)).collect();
    let err = render_err(&content, json!({"items": items}), limits);
    assert!(
        matches!(err, TemplateError::OutputTooLarge { limit: 1_000, .. }),
        "{err:?}"
    );
}

#[test]
fn money_numbers_and_dates_follow_the_recipient_locale_and_time_zone() {
    let mut content = email("<p>x</p>");
    content.subject =
        "{{ contact.clv|money('EUR') }}|{{ contact.points|number }}|{{ contact.last|date }}|{{ contact.last|datetime }}|{{ contact.day|date('%d %b %Y') }}"
            .to_owned();
    let contact = json!({"clv": 1234.5, "points": 12840, "last": "2026-03-01T23:30:00Z", "day": "2026-03-01"});

    let de = render(
        &content,
        &context_in(contact.clone(), "de-DE", "Europe/Berlin"),
    );
    assert_eq!(
        de.subject,
        "1.234,50\u{a0}€|12.840|02.03.2026|02.03.2026 00:30|01 Mar 2026"
    );

    let us = render(&content, &context_in(contact, "en-US", "America/New_York"));
    assert_eq!(
        us.subject,
        "€1,234.50|12,840|03/01/2026|03/01/2026 6:30 PM|01 Mar 2026"
    );
}

#[test]
fn text_body_is_derived_from_the_html_when_empty() {
    let content = email(
        "<html><head><title>T</title><style>p{color:red}</style></head><body>\
         <h1>Spring &amp; summer</h1><p>Hi {{ contact.name }},<br>new arrivals.</p>\
         <ul><li>Shirts</li><li>Shoes</li></ul>\
         <p><a href=\"https://shop.example/new?a=1&amp;b=2\">See them</a></p></body></html>",
    );
    let out = render(&content, &context(json!({"name": "Ann"})));
    assert_eq!(
        out.text,
        "Spring & summer\n\nHi Ann,\nnew arrivals.\n\n- Shirts\n- Shoes\n\nSee them (https://shop.example/new?a=1&b=2)"
    );

    let mut with_text = content.clone();
    with_text.text = Some("Plain {{ contact.name }}".to_owned());
    assert_eq!(
        render(&with_text, &context(json!({"name": "Ann"}))).text,
        "Plain Ann"
    );
}

#[test]
fn identical_variants_are_detected() {
    let a = email("<p>Hello {{ contact.name }}</p>");
    let mut b = email("<p>Hello   {{ contact.name }}</p>");
    let ctx = context(json!({"name": "Ann"}));
    assert!(clarion_template::emails_look_identical(
        &render(&a, &ctx),
        &render(&b, &ctx)
    ));
    b.subject = "Other".to_owned();
    assert!(!clarion_template::emails_look_identical(
        &render(&a, &ctx),
        &render(&b, &ctx)
    ));
}

#[test]
fn a_contact_value_with_a_line_break_cannot_inject_headers() {
    let mut content = email("<p>x</p>");
    content.from = "{{ contact.name }} <news@shop.example>".to_owned();
    let err = render_err(
        &content,
        json!({"name": "Ann\r\nBcc: all@example.com"}),
        Limits::default(),
    );
    assert!(
        matches!(err, TemplateError::HeaderInjection { ref field } if field == "from"),
        "{err:?}"
    );

    content.from = "Shop <news@shop.example>".to_owned();
    content.subject = "Hi {{ contact.name }}".to_owned();
    let out = render(&content, &context(json!({"name": "Ann\r\nBcc: x"})));
    assert_eq!(out.subject, "Hi Ann Bcc: x");
}

#[test]
fn the_cache_compiles_each_variant_version_once() {
    let cache = clarion_template::TemplateCache::new(Engine::default(), 2);
    let a = cache.email("v1:1", &email("<p>a</p>")).unwrap();
    let again = cache
        .email("v1:1", &email("<p>ignored, already compiled</p>"))
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &again));
    assert_eq!(cache.len(), 1);
    cache.invalidate("v1:1");
    assert!(cache.is_empty());
    // Bounded: a full cache starts over instead of growing.
    for i in 0..5 {
        cache.email(&format!("v{i}:1"), &email("<p>x</p>")).unwrap();
    }
    assert!(cache.len() <= 2);
}
