use clarion_template::{EmailContent, Engine, TemplateIssue, validate_email};
use serde_json::json;

use crate::{context, email};

fn issues(content: &EmailContent) -> Vec<TemplateIssue> {
    validate_email(content).unwrap_err()
}

#[test]
fn a_valid_variant_passes() {
    let mut content = email(
        "<p>Hi {{ contact.first_name|default('there') }}, {{ contact.clv|money('EUR') }}</p>\
         {% for p in extra.products %}<a href=\"{{ p.url }}\">{{ p.name }}</a>{% endfor %}\
         <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
    );
    content.subject =
        "{{ contact.first_name }}, {{ campaign.name }} for {{ segment.name }}".to_owned();
    assert_eq!(validate_email(&content), Ok(()));
}

#[test]
fn a_syntax_error_names_field_line_and_column() {
    let mut content = email("<p>ok</p>\n<p>{{ contact.name }</p>");
    content.subject = "Hi {% if %}".to_owned();
    let found = issues(&content);
    let html = found
        .iter()
        .find(|i| i.field == "html")
        .expect("html issue");
    assert_eq!(html.line, Some(2));
    assert_eq!(html.column, Some(20), "{html}");
    let subject = found
        .iter()
        .find(|i| i.field == "subject")
        .expect("subject issue");
    assert_eq!(subject.line, Some(1));
    assert_eq!(subject.column, Some(10), "{subject}");
}

#[test]
fn an_unknown_variable_is_refused_with_its_position() {
    let content = email("<p>a</p>\n  {% if vip %}{{ customer.name }}{% endif %}");
    let found = issues(&content);
    let names: Vec<_> = found
        .iter()
        .map(|i| (i.message.clone(), i.line, i.column))
        .collect();
    assert!(
        found
            .iter()
            .any(|i| i.message.contains("`customer`") && i.line == Some(2) && i.column == Some(18)),
        "{names:?}"
    );
    assert!(
        found
            .iter()
            .any(|i| i.message.contains("`vip`") && i.line == Some(2) && i.column == Some(9)),
        "{names:?}"
    );
}

#[test]
fn a_missing_subject_is_refused() {
    let mut content = email("<p>x</p>");
    content.subject = "   ".to_owned();
    let found = issues(&content);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "subject");
    assert!(found[0].message.contains("required"));
}

#[test]
fn javascript_and_data_links_are_refused_at_save_time() {
    let content = email(
        "<p>x</p>\n<a href=\"javascript:alert(1)\">a</a> <a href=\" DATA:text/html,x\">b</a>\
         <a href=\"vbscript&#58;x\">c</a><img src=\"data:image/png;base64,AAAA\">",
    );
    let found = issues(&content);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found
            .iter()
            .all(|i| i.field == "html" && i.message.contains("forbidden scheme"))
    );
    assert_eq!((found[0].line, found[0].column), (Some(2), Some(10)));
}

#[test]
fn an_endless_loop_is_refused_at_save_time() {
    let content =
        email("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}");
    let found = issues(&content);
    assert!(
        found
            .iter()
            .any(|i| i.field == "html" && i.message.contains("instructions")),
        "{found:?}"
    );
}

#[test]
fn a_huge_output_is_refused_at_save_time() {
    let content =
        email("{% for i in range(50000) %}{{ 'abcdefghijklmnopqrstuvwxyz' }}{% endfor %}");
    let found = issues(&content);
    assert!(
        found
            .iter()
            .any(|i| i.message.contains("cap") || i.message.contains("instructions")),
        "{found:?}"
    );
}

#[test]
fn loading_other_templates_is_refused() {
    let content = email("<p>x</p>{% include 'subject' %}");
    let found = issues(&content);
    assert!(
        found
            .iter()
            .any(|i| i.message.contains("`include`") && i.column == Some(9)),
        "{found:?}"
    );
}

#[test]
fn unknown_filters_are_refused() {
    let content = email("<p>{{ contact.name|shout }}</p>");
    let found = issues(&content);
    assert!(
        found
            .iter()
            .any(|i| i.field == "html" && i.message.contains("shout")
                || i.message.contains("unknown filter")),
        "{found:?}"
    );
}

#[test]
fn a_real_sample_contact_reports_data_problems() {
    let content = email("<p>{{ contact.nickname }}</p>");
    // Placeholders cannot know that real contacts lack a nickname...
    assert_eq!(validate_email(&content), Ok(()));
    // ...a real sample from the segment can.
    let found = Engine::default()
        .check_email(&content, Some(&context(json!({"name": "Ann"}))))
        .unwrap_err();
    assert!(found[0].message.contains("contact.nickname"), "{found:?}");
}
