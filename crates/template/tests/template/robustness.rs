//! No input makes the crate panic: arbitrary fragments of template syntax, HTML and contact
//! data go through save-time checks, compilation and rendering.

use clarion_template::{
    EmailContent, Engine, Limits, MessageTracking, TemplateCache, WebhookContent, validate_email,
    validate_webhook,
};
use serde_json::json;

use crate::{context, tracker};

const FRAGMENTS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "{{ contact.name }}",
    "{% for x in contact.list %}",
    "{% endfor %}",
    "{% if contact.name %}",
    "{% endif %}",
    "{% raw %}",
    "{% endraw %}",
    "<a href=\"",
    "\">",
    "</a>",
    "<a href='javascript:x'>",
    "<body>",
    "</body>",
    "<p>",
    "é&",
    "&#x110000;",
    "&#xD800;",
    "&amp",
    "{{ contact.name|money('EUR') }}",
    "{{ 1/0 }}",
    "{{ contact.list|date }}",
    "data-notrack",
    "<a data-notrack href=x>",
    "\"",
    "'",
    "\u{1}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{{ range(10000000)|list }}",
    "{{ 'x' * 1000000 }}",
    "{% include 'html' %}",
    "{{ unsubscribe_url }}",
    "<img alt=\"",
    "{{ contact.name|number(99) }}",
    "{{ contact.when|datetime('%Q%') }}",
    "ü",
    "\n",
    "{%- ",
    " -%}",
    "{{ contact.missing }}",
    "<style>",
    "</style>",
    "<![CDATA[",
    "<!--",
    "-->",
];

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from((self.0 >> 33) % n as u64).unwrap()
    }
}

#[test]
fn arbitrary_templates_and_data_never_panic() {
    let mut rng = Lcg(7);
    let engine = Engine::new(Limits {
        fuel: 20_000,
        max_output_bytes: 64 * 1024,
        ..Limits::default()
    });
    let cache = TemplateCache::new(engine.clone(), 16);
    let t = tracker();
    let tracking = MessageTracking::new(&t, "d", "c");
    let contacts = [
        json!({"name": "<x>\"'&é\r\n", "list": [1, "a", null], "when": "2026-01-01"}),
        json!({"name": 5, "list": "not a list", "when": -99_999_999_999_999_i64}),
        json!({"name": null, "list": [], "when": "garbage"}),
    ];
    for round in 0..400 {
        let pieces = 1 + rng.next(8);
        let source: String = (0..pieces)
            .map(|_| FRAGMENTS[rng.next(FRAGMENTS.len())])
            .collect();
        let content = EmailContent {
            subject: if round % 3 == 0 {
                source.clone()
            } else {
                "s".to_owned()
            },
            html: source.clone(),
            text: (round % 2 == 0).then(|| source.clone()),
            from: "a@b.example".to_owned(),
            ..EmailContent::default()
        };
        let _ = validate_email(&content);
        let _ = validate_webhook(&WebhookContent {
            payload: source.clone(),
            headers: vec![("X-A".to_owned(), source.clone())],
        });
        if let Ok(compiled) = cache.email(&format!("k{round}"), &content) {
            for contact in &contacts {
                let _ = compiled.render(&context(contact.clone()), &tracking);
            }
        }
        if let Ok(compiled) = cache.webhook(
            &format!("w{round}"),
            &WebhookContent {
                payload: source,
                headers: vec![],
            },
        ) {
            for contact in &contacts {
                let _ = compiled.render(&context(contact.clone()), &tracking);
            }
        }
    }
}
