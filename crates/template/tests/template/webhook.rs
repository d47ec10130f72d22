use clarion_template::{Engine, MessageTracking, TemplateError, WebhookContent, validate_webhook};
use serde_json::json;

use crate::{context, tracker};

fn webhook(payload: &str) -> WebhookContent {
    WebhookContent {
        payload: payload.to_owned(),
        headers: vec![("X-Segment".to_owned(), "{{ segment.name }}".to_owned())],
    }
}

#[test]
fn contact_data_cannot_break_the_payload_structure() {
    let content = webhook(
        r#"{"name": {{ contact.name }}, "clv": {{ contact.clv }}, "tags": {{ contact.tags }}, "first": {{ contact.name|upper }}}"#,
    );
    let compiled = Engine::default().compile_webhook(&content).unwrap();
    let nasty = "Ann \"The\" O'Neil\n\\\", \"admin\": true, \"x\": \"\u{2028}</script>";
    let t = tracker();
    let out = compiled
        .render(
            &context(json!({"name": nasty, "clv": 12.5, "tags": ["a", "b\"c"]})),
            &MessageTracking::new(&t, "d", "c"),
        )
        .unwrap();
    assert_eq!(out.payload["name"], json!(nasty));
    assert_eq!(out.payload["clv"], json!(12.5));
    assert_eq!(out.payload["tags"], json!(["a", "b\"c"]));
    assert!(out.payload.get("admin").is_none());
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out.body).unwrap(),
        out.payload
    );
    assert_eq!(
        out.headers,
        vec![("X-Segment".to_owned(), "Loyal".to_owned())]
    );
}

#[test]
fn payload_templates_that_cannot_produce_json_are_refused_at_save_time() {
    let quoted = validate_webhook(&webhook(r#"{"name": "{{ contact.name }}"}"#)).unwrap_err();
    assert!(
        quoted
            .iter()
            .any(|i| i.field == "payload" && i.message.contains("valid JSON")),
        "{quoted:?}"
    );

    let broken = validate_webhook(&webhook(r#"{"name": {{ contact.name }}"#)).unwrap_err();
    assert!(
        broken.iter().any(|i| i.message.contains("valid JSON")),
        "{broken:?}"
    );

    let safe = validate_webhook(&webhook(r#"{"name": {{ contact.name|safe }}}"#)).unwrap_err();
    assert!(
        safe.iter()
            .any(|i| i.message.contains("`safe`") && i.column == Some(26)),
        "{safe:?}"
    );

    let mut bad_header = webhook(r#"{"ok": true}"#);
    bad_header.headers = vec![("Bad Header".to_owned(), "x".to_owned())];
    assert!(validate_webhook(&bad_header).is_err());

    assert_eq!(
        validate_webhook(&webhook(
            r#"{"name": {{ contact.name }}, "n": {{ extra.items|length }}}"#
        )),
        Ok(())
    );
}

#[test]
fn a_header_value_with_a_line_break_fails_the_message() {
    let mut content = webhook(r#"{"ok": true}"#);
    content.headers = vec![("X-Name".to_owned(), "{{ contact.name }}".to_owned())];
    let compiled = Engine::default().compile_webhook(&content).unwrap();
    let t = tracker();
    let err = compiled
        .render(
            &context(json!({"name": "a\r\nX-Evil: 1"})),
            &MessageTracking::new(&t, "d", "c"),
        )
        .unwrap_err();
    assert!(
        matches!(err, TemplateError::HeaderInjection { .. }),
        "{err:?}"
    );
}
