//! Campaigns through the HTTP API: CRUD with variants, save-time validation, previews,
//! assignment, audience counts, warnings, duplicates, history and roles.
//!
//! Segments and memberships are written with SQL here ([`segment`], [`join`]): the tests
//! depend on the tables' shape, not on the segment API.

use std::collections::HashMap;

use crate::app::{TestApp, read};
use clarion_testkit::{Backend, on_both_backends};
use reqwest::Method;
use sea_orm::{
    ConnectionTrait,
    sea_query::{Query, Value},
};
use serde_json::{Value as Json, json};

/// Stores contacts through the API.
pub(crate) async fn contacts(app: &TestApp, items: Json) {
    let (status, body) = app
        .post("/api/v1/contacts/batch", &json!({ "contacts": items }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejected"], 0, "{body}");
}

/// Inserts a segment of workspace 1 with the given current members (by external id).
pub(crate) async fn segment(app: &TestApp, slug: &str, members: &[&str]) -> i64 {
    let insert = Query::insert()
        .into_table("segments")
        .columns([
            "workspace_id",
            "slug",
            "name",
            "description",
            "category",
            "kind",
            "rule",
            "member_count",
            "created_at",
            "updated_at",
        ])
        .values([
            1_i64.into(),
            slug.into(),
            format!("Segment {slug}").into(),
            "".into(),
            "behavioural".into(),
            "static".into(),
            Value::String(None).into(),
            (members.len() as i64).into(),
            0_i64.into(),
            0_i64.into(),
        ])
        .unwrap()
        .returning_col("id")
        .to_owned();
    let row = app.db.query_one(&insert).await.unwrap().unwrap();
    let id: i64 = row.try_get("", "id").unwrap();
    join(app, id, members).await;
    id
}

/// Makes contacts current members of a segment.
async fn join(app: &TestApp, segment: i64, members: &[&str]) {
    if members.is_empty() {
        return;
    }
    let list = members
        .iter()
        .map(|m| format!("'{m}'"))
        .collect::<Vec<_>>()
        .join(", ");
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO segment_memberships (segment_id, contact_id, entered_at) \
             SELECT {segment}, id, 0 FROM contacts WHERE workspace_id = 1 AND external_id IN ({list})"
        ))
        .await
        .unwrap();
}

fn email(subject: &str, html: &str) -> Json {
    json!({ "subject": subject, "html": html, "from": "Shop <news@shop.example>" })
}

fn variant(name: &str, weight: i64, subject: &str) -> Json {
    json!({
        "name": name,
        "weight": weight,
        "email": email(subject, "<p>Hello {{ contact.first_name|default('friend') }}</p>"),
    })
}

fn campaign(targets: Json) -> Json {
    json!({
        "name": "Spring sale",
        "goal": { "event": "purchase", "window_hours": 168 },
        "holdout_percent": 0,
        "channels": ["email"],
        "targets": targets,
    })
}

pub(crate) async fn create(app: &TestApp, body: &Json) -> Json {
    let (status, created) = app.post("/api/v1/campaigns", body).await;
    assert_eq!(status, 201, "{created}");
    created
}

pub(crate) async fn put(app: &TestApp, path: &str, body: &Json) -> (u16, Json) {
    let response = app
        .request(Method::PUT, path)
        .json(body)
        .send()
        .await
        .unwrap();
    read(response).await
}

fn variant_id(campaign: &Json, target: usize, index: usize) -> i64 {
    campaign["targets"][target]["variants"][index]["id"]
        .as_i64()
        .unwrap()
}

fn errors(body: &Json) -> &Vec<Json> {
    body["details"]["errors"].as_array().unwrap()
}

/// The error naming `path` (a campaign issue's path, or the field of a body that did not
/// parse), or a panic listing them all.
fn error_at<'a>(body: &'a Json, path: &str) -> &'a Json {
    errors(body)
        .iter()
        .find(|e| e["path"] == path || e["field"] == path)
        .unwrap_or_else(|| panic!("no error at {path}: {body:#}"))
}

async fn campaigns_round_trip_with_their_variants(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    segment(&app, "champions", &[]).await;
    segment(&app, "at-risk", &[]).await;
    segment(&app, "everyone", &[]).await;
    let mut body = campaign(json!([
        { "segment": "champions", "variants": [variant("Champions A", 3, "Thanks!"), variant("Champions B", 1, "You rock")] },
        { "segment": "at-risk", "variants": [{
            "name": "Win back",
            "email": {
                "subject": "We miss you",
                "preheader": "10% off",
                "html": "<p>Come back</p>",
                "text": "Come back",
                "from": "Shop <news@shop.example>",
                "reply_to": "help@shop.example",
            },
        }] },
    ]));
    body["holdout_percent"] = json!(12.5);
    body["audience_segment"] = json!("everyone");
    body["fallback"] = variant("Everyone else", 1, "Spring is here");
    let created = create(&app, &body).await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["status"], "draft");
    assert_eq!(created["name"], "Spring sale");
    assert_eq!(
        created["goal"],
        json!({"event": "purchase", "window_hours": 168})
    );
    assert_eq!(created["holdout_percent"], 12.5);
    assert_eq!(created["channels"], json!(["email"]));
    assert_eq!(created["audience_segment"]["slug"], "everyone");
    assert_eq!(created["targets"][0]["segment"]["slug"], "champions");
    assert_eq!(created["targets"][1]["segment"]["slug"], "at-risk");
    assert_eq!(created["targets"][0]["variants"][0]["weight"], 3);
    assert_eq!(created["targets"][0]["variants"][1]["name"], "Champions B");
    assert_eq!(created["targets"][1]["variants"][0]["weight"], 1);
    assert_eq!(
        created["targets"][1]["variants"][0]["email"]["reply_to"],
        "help@shop.example"
    );
    assert_eq!(created["fallback"]["name"], "Everyone else");
    assert_eq!(created["targets"][0]["variants"][0]["version"], 1);

    let (status, fetched) = app.get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, created);

    let (status, page) = app.get("/api/v1/campaigns").await;
    assert_eq!(status, 200);
    assert_eq!(page["campaigns"][0]["id"], id);
    assert_eq!(page["campaigns"][0]["variants"], 4);

    // Update: the first variant keeps its id under a new name and weight, the second is
    // dropped, a new one arrives, the targets swap places.
    let kept = variant_id(&created, 0, 0);
    let dropped = variant_id(&created, 0, 1);
    let mut changed = variant("Champions gold", 5, "Thanks, champion!");
    changed["id"] = json!(kept);
    let mut body = campaign(json!([
        { "segment": "at-risk", "variants": [created["targets"][1]["variants"][0].clone()] },
        { "segment": "champions", "variants": [changed, variant("Champions C", 2, "New")] },
    ]));
    // The stored variant carries read-only fields; a client sends back what it may write.
    for field in ["version", "created_at", "updated_at"] {
        body["targets"][0]["variants"][0]
            .as_object_mut()
            .unwrap()
            .remove(field);
    }
    let (status, updated) = put(&app, &format!("/api/v1/campaigns/{id}"), &body).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["targets"][0]["segment"]["slug"], "at-risk");
    assert_eq!(updated["targets"][0]["variants"][0]["version"], 1);
    assert_eq!(
        updated["targets"][0]["variants"][0]["id"],
        created["targets"][1]["variants"][0]["id"]
    );
    assert_eq!(updated["targets"][1]["variants"][0]["id"], kept);
    assert_eq!(
        updated["targets"][1]["variants"][0]["name"],
        "Champions gold"
    );
    assert_eq!(updated["targets"][1]["variants"][0]["weight"], 5);
    assert_eq!(updated["targets"][1]["variants"][0]["version"], 2);
    assert_eq!(updated["targets"][1]["variants"][1]["name"], "Champions C");
    assert_eq!(updated["fallback"], Json::Null);
    assert_eq!(updated["audience_segment"], Json::Null);
    assert_eq!(updated["holdout_percent"], 0.0);
    let (status, _) = app
        .get(&format!(
            "/api/v1/campaigns/{id}/variants/{dropped}/history"
        ))
        .await;
    assert_eq!(status, 404, "a dropped variant is gone with its history");

    // Two variants swap names in one save.
    let mut swapped = updated.clone();
    let variants = swapped["targets"][1]["variants"].as_array_mut().unwrap();
    variants[0]["name"] = json!("Champions C");
    variants[1]["name"] = json!("Champions gold");
    let body = json!({
        "name": "Spring sale",
        "goal": { "event": "purchase", "window_hours": 168 },
        "channels": ["email"],
        "targets": swapped["targets"].as_array().unwrap().iter().map(|t| json!({
            "segment": t["segment"]["slug"],
            "variants": t["variants"].as_array().unwrap().iter().map(|v| json!({
                "id": v["id"], "name": v["name"], "weight": v["weight"], "email": v["email"],
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let (status, renamed) = put(&app, &format!("/api/v1/campaigns/{id}"), &body).await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["targets"][1]["variants"][0]["name"], "Champions C");
    assert_eq!(renamed["targets"][1]["variants"][0]["id"], kept);

    let response = app
        .request(Method::DELETE, &format!("/api/v1/campaigns/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, body) = app.get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
}

async fn invalid_campaigns_name_the_variant_field_line_and_column(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    segment(&app, "champions", &[]).await;
    let body = json!({
        "name": "Broken",
        "goal": { "event": "purchase", "window_hours": 168 },
        "holdout_percent": 5,
        "channels": ["email", "webhook"],
        "targets": [
            { "segment": "champions", "variants": [
                {
                    "name": "Unknown variable",
                    "email": email("Hi", "<p>Hello</p>\n<p>Visit {{ shop_url }}</p>"),
                    "webhook": { "payload": "{\"a\": 1}" },
                },
                {
                    "name": "No subject",
                    "weight": 0,
                    "email": { "html": "<p>x</p>", "from": "news@shop.example" },
                    "webhook": { "payload": "{\"name\": \"{{ contact.first_name|default('') }}\"}" },
                },
            ]},
            { "segment": "nobody-knows", "variants": [
                {
                    "name": "Script link",
                    "email": email("Hi", "<a href=\"javascript:alert(1)\">x</a>"),
                    "webhook": { "payload": "{\"a\": {{ contact.first_name|default('') }}" },
                },
            ]},
        ],
    });
    let (status, body) = app.post("/api/v1/campaigns", &body).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "validation_failed");

    let unknown = error_at(&body, "targets[0].variants[0].email.html");
    assert_eq!(unknown["variant"], "Unknown variable");
    assert_eq!(unknown["field"], "email.html");
    assert_eq!(unknown["line"], 2);
    assert_eq!(unknown["column"], 13);
    assert!(
        unknown["message"].as_str().unwrap().contains("shop_url"),
        "{unknown}"
    );

    let subject = error_at(&body, "targets[0].variants[1].email.subject");
    assert_eq!(subject["variant"], "No subject");
    assert!(
        subject["message"].as_str().unwrap().contains("subject"),
        "{subject}"
    );
    let weight = error_at(&body, "targets[0].variants[1].weight");
    assert!(weight["message"].as_str().unwrap().contains("positive"));
    let quoted = error_at(&body, "targets[0].variants[1].webhook.payload");
    assert!(
        quoted["message"].as_str().unwrap().contains("JSON"),
        "{quoted}"
    );

    error_at(&body, "targets[1].segment");
    let script = error_at(&body, "targets[1].variants[0].email.html");
    assert_eq!(script["variant"], "Script link");
    assert_eq!(script["line"], 1);
    assert!(
        script["message"].as_str().unwrap().contains("javascript:"),
        "{script}"
    );
    let payload = error_at(&body, "targets[1].variants[0].webhook.payload");
    assert_eq!(payload["variant"], "Script link");

    // Nothing was stored.
    let (_, page) = app.get("/api/v1/campaigns").await;
    assert_eq!(page["campaigns"], json!([]));

    // A default makes a missing value acceptable.
    let ok = campaign(json!([{ "segment": "champions", "variants": [{
        "name": "Defaulted",
        "email": email("Hi {{ contact.attributes.nickname|default('there') }}", "<p>{{ contact.traits.rfm_segment|default('') }}</p>"),
    }]}]));
    create(&app, &ok).await;
}

async fn templates_validate_reports_issues_without_saving(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let check = |body: Json| {
        let app = &app;
        async move {
            let response = app
                .client
                .post(app.url("/api/v1/templates/validate"))
                .bearer_auth(&app.viewer_key)
                .json(&body)
                .send()
                .await
                .unwrap();
            read(response).await
        }
    };
    let (status, body) = check(json!({
        "email": email("Hi {{ contact.first_name|default('') }}", "<a href=\"https://shop.example\">Shop</a>"),
        "webhook": { "payload": "{\"id\": {{ contact.external_id }}}", "headers": {"X-Campaign": "{{ campaign.name }}"} },
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"valid": true, "issues": []}));

    let (status, body) = check(json!({
        "email": email("Hi", "<p>{% for x in y %}{{ x }}{% endfor %}</p>"),
        "webhook": { "payload": "{\"id\": {{ contact.external_id }}" },
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["valid"], false);
    let issues = body["issues"].as_array().unwrap();
    let html = issues.iter().find(|i| i["field"] == "email.html").unwrap();
    assert_eq!(
        (html["line"].clone(), html["column"].clone()),
        (json!(1), json!(16))
    );
    assert!(html["message"].as_str().unwrap().contains("`y`"), "{html}");
    assert!(issues.iter().any(|i| i["field"] == "webhook.payload"));

    let (status, body) =
        check(json!({"email": email("Hi {{ contact.first_name", "<p>x</p>")})).await;
    assert_eq!(status, 200, "{body}");
    let subject = &body["issues"][0];
    assert_eq!(subject["field"], "email.subject");
    assert_eq!(subject["line"], 1);
    assert!(subject["column"].as_u64().is_some(), "{subject}");

    let (status, body) = check(json!({})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = check(json!({"email": {"subjet": "typo"}})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(errors(&body)[0]["field"], "email.subjet");
}

/// Anna and Ben are champions (Anna also at risk), Cleo is only at risk, Dan is only in
/// the audience, Eve is in nothing.
async fn shop(app: &TestApp) -> (i64, i64, i64) {
    contacts(
        app,
        json!([
            {"external_id": "anna", "email": "anna@example.com", "first_name": "Anna", "locale": "de-DE", "time_zone": "Europe/Berlin", "attributes": {"tier": "gold"}},
            {"external_id": "ben", "email": "ben@example.com", "first_name": "Ben"},
            {"external_id": "cleo", "email": "cleo@example.com"},
            {"external_id": "dan", "email": "dan@example.com", "first_name": "Dan"},
            {"external_id": "eve", "email": "eve@example.com"},
        ]),
    )
    .await;
    app.db
        .execute_unprepared(
            "INSERT INTO contact_traits (contact_id, workspace_id, orders, revenue, first_purchase_at, \
             last_purchase_at, rfm_recency, rfm_frequency, rfm_monetary, rfm_segment, clv, computed_at) \
             SELECT id, 1, 3, 250.0, 0, 0, 5, 4, 5, 'champions', 1234.5, 0 FROM contacts WHERE external_id = 'anna'",
        )
        .await
        .unwrap();
    let champions = segment(app, "champions", &["anna", "ben"]).await;
    let at_risk = segment(app, "at-risk", &["anna", "cleo"]).await;
    let everyone = segment(app, "everyone", &["anna", "ben", "cleo", "dan"]).await;
    (champions, at_risk, everyone)
}

fn shop_campaign() -> Json {
    let mut body = json!({
        "name": "Spring sale",
        "goal": { "event": "purchase", "window_hours": 72 },
        "channels": ["email", "webhook"],
        "targets": [
            { "segment": "champions", "variants": [{
                "name": "Champions",
                "email": email(
                    "Danke {{ contact.first_name }}, {{ segment.name }}",
                    "<p>Your CLV: {{ contact.traits.clv|money('EUR') }}</p>\n<p><a href=\"https://shop.example/vip\">VIP</a></p>",
                ),
                "webhook": { "payload": "{\"who\": {{ contact.external_id }}, \"tier\": {{ contact.attributes.tier|default('none') }}}", "headers": {"X-Campaign": "{{ campaign.name }}"} },
            }]},
            { "segment": "at-risk", "variants": [{
                "name": "Win back",
                "email": email("We miss you", "<p>Come back, {{ contact.first_name|default('friend') }}</p>"),
                "webhook": { "payload": "{\"who\": {{ contact.external_id }}, \"offer\": 10}" },
            }]},
        ],
        "audience_segment": "everyone",
    });
    body["fallback"] = json!({
        "name": "Everyone else",
        "email": email("Spring is here", "<p>Hello {{ contact.first_name|default('friend') }}</p>"),
        "webhook": { "payload": "{\"who\": {{ contact.external_id }}}" },
    });
    body
}

async fn preview(app: &TestApp, id: i64, body: Json) -> (u16, Json) {
    app.post(&format!("/api/v1/campaigns/{id}/preview"), &body)
        .await
}

async fn preview_renders_for_a_contact_and_for_samples(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    shop(&app).await;
    let created = create(&app, &shop_campaign()).await;
    let id = created["id"].as_i64().unwrap();

    let (status, body) = preview(&app, id, json!({"contacts": ["anna"]})).await;
    assert_eq!(status, 200, "{body}");
    let anna = &body["previews"][0];
    assert_eq!(anna["contact"], "anna");
    assert_eq!(anna["assignment"]["variant"], "Champions");
    assert_eq!(anna["assignment"]["segment"], "champions");
    assert_eq!(anna["assignment"]["holdout"], false);
    assert_eq!(anna["variant_id"], variant_id(&created, 0, 0));
    let mail = &anna["email"];
    assert_eq!(mail["subject"], "Danke Anna, Segment champions");
    let html = mail["html"].as_str().unwrap();
    assert!(html.contains("1.234,50\u{a0}€"), "{html}");
    let tracked = format!("{}/t/c/", app.settings.server.public_url);
    assert!(html.contains(&tracked), "links are tracked: {html}");
    assert!(
        !html.contains("href=\"https://shop.example/vip\""),
        "{html}"
    );
    assert!(html.contains("/t/o/"), "an open pixel is added: {html}");
    let text = mail["text"].as_str().unwrap();
    assert!(
        text.contains("Your CLV: 1.234,50"),
        "text derived from the HTML: {text}"
    );
    assert_eq!(mail["from"], "Shop <news@shop.example>");
    assert_eq!(mail["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
    assert!(mail["list_unsubscribe"].as_str().unwrap().contains("/t/u/"));
    assert_eq!(
        anna["webhook"]["payload"],
        json!({"who": "anna", "tier": "gold"})
    );
    assert_eq!(
        anna["webhook"]["headers"],
        json!([["X-Campaign", "Spring sale"]])
    );
    assert_eq!(anna["errors"], json!([]));

    // Ben is a champion without traits: his email fails alone, with the reason; the webhook
    // still renders. Eve is outside the audience: nothing to render.
    let (status, body) = preview(&app, id, json!({"contacts": ["ben", "eve"]})).await;
    assert_eq!(status, 200, "{body}");
    let ben = &body["previews"][0];
    assert_eq!(ben["email"], Json::Null);
    assert_eq!(ben["errors"][0]["channel"], "email");
    assert!(
        ben["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("html: "),
        "the reason names the field: {ben}"
    );
    assert_eq!(
        ben["webhook"]["payload"],
        json!({"who": "ben", "tier": "none"})
    );
    let eve = &body["previews"][1];
    assert_eq!(eve["assignment"], Json::Null);
    assert_eq!(eve["variant_id"], Json::Null);

    // Any variant for a chosen contact.
    let win_back = variant_id(&created, 1, 0);
    let (status, body) = preview(
        &app,
        id,
        json!({"contacts": ["dan"], "variant_id": win_back}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previews"][0]["variant"], "Win back");
    assert_eq!(
        body["previews"][0]["assignment"]["variant"],
        "Everyone else"
    );
    assert!(
        body["previews"][0]["email"]["html"]
            .as_str()
            .unwrap()
            .contains("Come back, Dan")
    );

    // A sample of the variant's segment, in contact order.
    let (status, body) = preview(&app, id, json!({"variant_id": win_back, "sample": 5})).await;
    assert_eq!(status, 200, "{body}");
    let sampled: Vec<&str> = body["previews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["contact"].as_str().unwrap())
        .collect();
    assert_eq!(sampled, ["anna", "cleo"]);
    assert!(
        body["previews"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["variant"] == "Win back")
    );
    assert_eq!(body["previews"][0]["assignment"]["variant"], "Champions");
    assert_eq!(body["previews"][1]["assignment"]["variant"], "Win back");
    assert!(
        body["previews"][1]["email"]["html"]
            .as_str()
            .unwrap()
            .contains("Come back, friend")
    );
}

async fn tracking_links_are_signed_with_the_configured_keys(backend: Backend) {
    let key = "campaign-test-signing-key-0001";
    let app = TestApp::spawn_with(backend, |settings| {
        settings.tracking.signing_keys = vec![secrecy::SecretString::from(key)];
        settings.tracking.base_url = "https://t.shop.example".to_owned();
    })
    .await;
    shop(&app).await;
    let created = create(&app, &shop_campaign()).await;
    let (status, body) = preview(
        &app,
        created["id"].as_i64().unwrap(),
        json!({"contacts": ["anna"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let html = body["previews"][0]["email"]["html"].as_str().unwrap();
    let start = html
        .find("https://t.shop.example/t/c/")
        .expect("a tracked link");
    let token: String = html[start + "https://t.shop.example/t/c/".len()..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    let tracker = clarion_template::Tracker::new(
        "https://t.shop.example",
        clarion_template::TrackingKeys::new(&[key.as_bytes()]).unwrap(),
    )
    .unwrap();
    let click = tracker.verify_click(&token).unwrap();
    assert_eq!(click.url, "https://shop.example/vip");
    let other = clarion_template::Tracker::new(
        "https://t.shop.example",
        clarion_template::TrackingKeys::new(&[b"some-other-key-entirely"]).unwrap(),
    )
    .unwrap();
    assert!(other.verify_click(&token).is_err());
}

async fn the_first_matching_segment_wins(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    shop(&app).await;
    let created = create(&app, &shop_campaign()).await;
    let id = created["id"].as_i64().unwrap();
    let assigned = |body: &Json| -> HashMap<String, Json> {
        body["previews"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["contact"].as_str().unwrap().to_owned(),
                    p["assignment"]["variant"].clone(),
                )
            })
            .collect()
    };
    let everybody = json!({"contacts": ["anna", "ben", "cleo", "dan", "eve"]});
    let (status, body) = preview(&app, id, everybody.clone()).await;
    assert_eq!(status, 200, "{body}");
    let got = assigned(&body);
    assert_eq!(
        got["anna"], "Champions",
        "anna is in both; champions comes first"
    );
    assert_eq!(got["ben"], "Champions");
    assert_eq!(got["cleo"], "Win back");
    assert_eq!(got["dan"], "Everyone else");
    assert_eq!(got["eve"], Json::Null);

    let (status, audience) = app.get(&format!("/api/v1/campaigns/{id}/audience")).await;
    assert_eq!(status, 200, "{audience}");
    let contacts: Vec<u64> = audience["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["contacts"].as_u64().unwrap())
        .collect();
    assert_eq!(
        contacts,
        [2, 1, 1],
        "each contact is counted once: {audience}"
    );
    assert_eq!(audience["total"]["contacts"], 4);

    // With the order reversed, Anna gets the win-back message.
    let mut body = shop_campaign();
    let targets = body["targets"].as_array_mut().unwrap();
    targets.reverse();
    targets[0]["variants"][0]["id"] = json!(variant_id(&created, 1, 0));
    targets[1]["variants"][0]["id"] = json!(variant_id(&created, 0, 0));
    let (status, updated) = put(&app, &format!("/api/v1/campaigns/{id}"), &body).await;
    assert_eq!(status, 200, "{updated}");
    let (_, body) = preview(&app, id, everybody).await;
    let got = assigned(&body);
    assert_eq!(got["anna"], "Win back");
    assert_eq!(got["ben"], "Champions");
}

async fn ab_splits_are_deterministic_and_follow_the_weights(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let people: Vec<Json> = (0..2_000)
        .map(
            |i| json!({"external_id": format!("ab-{i:04}"), "email": format!("ab{i}@example.com")}),
        )
        .collect();
    contacts(&app, json!(people)).await;
    let id = segment(&app, "everybody", &[]).await;
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO segment_memberships (segment_id, contact_id, entered_at) \
             SELECT {id}, id, 0 FROM contacts WHERE external_id LIKE 'ab-%'"
        ))
        .await
        .unwrap();
    let mut body = campaign(json!([{ "segment": "everybody", "variants": [
        variant("A", 3, "Subject A"),
        variant("B", 1, "Subject B"),
    ]}]));
    body["holdout_percent"] = json!(10);
    let created = create(&app, &body).await;
    let campaign_id = created["id"].as_i64().unwrap();
    let (a, b) = (variant_id(&created, 0, 0), variant_id(&created, 0, 1));

    let path = format!("/api/v1/campaigns/{campaign_id}/audience");
    let (status, audience) = app.get(&path).await;
    assert_eq!(status, 200, "{audience}");
    let counts = |v: usize, field: &str| audience["variants"][v][field].as_u64().unwrap();
    assert_eq!(counts(0, "contacts") + counts(1, "contacts"), 2_000);
    // 3:1 weights: A about 1,500 of 2,000, B about 500 (binomial sd about 19).
    assert!(
        (1_420..=1_580).contains(&counts(0, "contacts")),
        "{audience}"
    );
    assert!((420..=580).contains(&counts(1, "contacts")), "{audience}");
    // 10% holdout: about 200 (sd about 13), taken from both variants.
    let holdout = audience["total"]["holdout"].as_u64().unwrap();
    assert!((150..=250).contains(&holdout), "{audience}");
    assert!(counts(0, "holdout") > 0 && counts(1, "holdout") > 0);
    assert_eq!(audience["total"]["recipients"], 2_000 - holdout);

    // The counts are exactly what the template crate's assignment gives each contact, the
    // same function launch will use.
    let rows = app
        .db
        .query_all(&Query::select().column("id").from("contacts").to_owned())
        .await
        .unwrap();
    let (mut expected_a, mut expected_b, mut expected_holdout) = (0, 0, 0);
    for row in rows {
        let contact: i64 = row.try_get("", "id").unwrap();
        let decision = clarion_model::assign::assign(campaign_id, contact, 10.0, &[3, 1]);
        match decision.variant {
            Some(0) => expected_a += 1,
            Some(1) => expected_b += 1,
            other => panic!("unexpected {other:?}"),
        }
        expected_holdout += u64::from(decision.holdout);
    }
    assert_eq!(counts(0, "contacts"), expected_a);
    assert_eq!(counts(1, "contacts"), expected_b);
    assert_eq!(holdout, expected_holdout);

    // Asking again gives the same answer, and previews agree with the counts.
    let (_, again) = app.get(&path).await;
    assert_eq!(again["variants"], audience["variants"]);
    let sample: Vec<String> = (0..50).map(|i| format!("ab-{i:04}")).collect();
    let (status, body) = preview(&app, campaign_id, json!({"contacts": sample})).await;
    assert_eq!(status, 200, "{body}");
    let (_, body_again) = preview(&app, campaign_id, json!({"contacts": sample})).await;
    for (p, q) in body["previews"]
        .as_array()
        .unwrap()
        .iter()
        .zip(body_again["previews"].as_array().unwrap())
    {
        assert_eq!(p["assignment"], q["assignment"]);
        let chosen = p["variant_id"].as_i64().unwrap();
        assert!(chosen == a || chosen == b);
        let subject = if chosen == a {
            "Subject A"
        } else {
            "Subject B"
        };
        assert_eq!(p["email"]["subject"], subject);
    }
}

async fn audience_counts_holdout_and_reachable_contacts_per_channel(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    contacts(
        &app,
        json!([
            {"external_id": "r1", "email": "r1@example.com"},
            {"external_id": "r2", "email": "r2@example.com", "subscriptions": {"webhook": "unsubscribed"}},
            {"external_id": "r3", "email": "r3@example.com", "subscriptions": {"email": "unsubscribed"}},
            {"external_id": "r4"},
            {"external_id": "r5", "email": "r5@example.com", "subscriptions": {"email": "bounced", "webhook": "complained"}},
            {"external_id": "r6", "email": "r6@example.com"},
        ]),
    )
    .await;
    segment(&app, "first", &["r1", "r2", "r3"]).await;
    segment(&app, "second", &["r3", "r4", "r5", "r6"]).await;
    segment(&app, "empty", &[]).await;
    segment(&app, "inside-first", &["r1", "r2"]).await;
    let webhook = json!({"payload": "{\"who\": {{ contact.external_id }}}"});
    let with_webhook = |name: &str, subject: &str| {
        let mut v = variant(name, 1, subject);
        v["webhook"] = webhook.clone();
        v
    };
    let mut body = campaign(json!([
        { "segment": "first", "variants": [with_webhook("First", "One")] },
        { "segment": "second", "variants": [with_webhook("Second", "Two")] },
        { "segment": "empty", "variants": [with_webhook("Nobody", "Three")] },
        { "segment": "inside-first", "variants": [with_webhook("Shadowed", "Four")] },
    ]));
    body["channels"] = json!(["email", "webhook"]);
    let created = create(&app, &body).await;
    let id = created["id"].as_i64().unwrap();
    let (status, audience) = app.get(&format!("/api/v1/campaigns/{id}/audience")).await;
    assert_eq!(status, 200, "{audience}");
    let first = &audience["variants"][0];
    assert_eq!(first["variant"], "First");
    assert_eq!(first["segment"], "first");
    assert_eq!(first["contacts"], 3);
    assert_eq!(first["holdout"], 0);
    assert_eq!(first["recipients"], 3);
    // r1 and r2 have a subscribed address; r1 and r3 a subscribed webhook.
    assert_eq!(first["reachable"], json!({"email": 2, "webhook": 2}));
    // r3 went to the first segment; r4 has no address, r5 bounced and complained.
    let second = &audience["variants"][1];
    assert_eq!(second["contacts"], 3);
    assert_eq!(second["reachable"], json!({"email": 1, "webhook": 2}));
    assert_eq!(audience["variants"][2]["contacts"], 0);
    assert_eq!(
        audience["total"],
        json!({"contacts": 6, "holdout": 0, "recipients": 6, "reachable": {"email": 3, "webhook": 4}})
    );
    assert_eq!(
        audience["segments"],
        json!([{"segment": "first", "members": 3}, {"segment": "second", "members": 4},
               {"segment": "empty", "members": 0}, {"segment": "inside-first", "members": 2}])
    );
    let kinds: Vec<(&str, &str)> = audience["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["kind"].as_str().unwrap(), w["segment"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("empty_segment", "empty"),
            ("no_recipients", "inside-first")
        ],
        "{audience:#}"
    );

    // With a holdout, held-out contacts are counted apart and reach no channel.
    let mut body = body.clone();
    body["holdout_percent"] = json!(50);
    for (t, target) in body["targets"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        target["variants"][0]["id"] = json!(variant_id(&created, t, 0));
    }
    let (status, updated) = put(&app, &format!("/api/v1/campaigns/{id}"), &body).await;
    assert_eq!(status, 200, "{updated}");
    let (_, audience) = app.get(&format!("/api/v1/campaigns/{id}/audience")).await;
    let rows = app
        .db
        .query_all(
            &Query::select()
                .columns(["id", "external_id"])
                .from("contacts")
                .to_owned(),
        )
        .await
        .unwrap();
    let held: Vec<String> = rows
        .iter()
        .filter(|row| {
            clarion_model::assign::in_holdout(id, row.try_get::<i64>("", "id").unwrap(), 50.0)
        })
        .map(|row| row.try_get::<String>("", "external_id").unwrap())
        .collect();
    let in_first = ["r1", "r2", "r3"]
        .iter()
        .filter(|c| held.contains(&(**c).to_owned()))
        .count() as u64;
    assert_eq!(audience["variants"][0]["holdout"], in_first, "{audience}");
    assert_eq!(audience["variants"][0]["recipients"], 3 - in_first);
    assert_eq!(audience["total"]["holdout"], held.len() as u64);
    let reachable_email = ["r1", "r2", "r6"]
        .iter()
        .filter(|c| !held.contains(&(**c).to_owned()))
        .count();
    assert_eq!(audience["total"]["reachable"]["email"], reachable_email);
}

async fn identical_variants_and_empty_segments_are_warned_about(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    shop(&app).await;
    segment(&app, "empty", &[]).await;
    let same = email(
        "Hello {{ contact.first_name|default('you') }}",
        "<p>Spring offers</p>",
    );
    let body = campaign(json!([
        { "segment": "champions", "variants": [{"name": "Champions", "email": same}] },
        { "segment": "at-risk", "variants": [{"name": "At risk", "email": same}] },
        { "segment": "empty", "variants": [{"name": "Empty", "email": email("Other", "<p>Other</p>")}] },
    ]));
    let created = create(&app, &body).await;
    let id = created["id"].as_i64().unwrap();
    let (status, audience) = app.get(&format!("/api/v1/campaigns/{id}/audience")).await;
    assert_eq!(status, 200, "{audience}");
    let warnings = audience["warnings"].as_array().unwrap();
    let identical = warnings
        .iter()
        .find(|w| w["kind"] == "identical_variants")
        .unwrap_or_else(|| panic!("{audience:#}"));
    assert_eq!(
        identical["variants"],
        json!([variant_id(&created, 0, 0), variant_id(&created, 1, 0)])
    );
    assert!(identical["contact"].is_string());
    let empty = warnings
        .iter()
        .find(|w| w["kind"] == "empty_segment")
        .unwrap_or_else(|| panic!("{audience:#}"));
    assert_eq!(empty["segment"], "empty");
    assert_eq!(empty["variants"], json!([variant_id(&created, 2, 0)]));
    assert_eq!(warnings.len(), 2, "{audience:#}");

    let (status, body) = preview(&app, id, json!({"contacts": ["cleo"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["warnings"][0]["kind"], "identical_variants");
    assert_eq!(body["warnings"][0]["contact"], "cleo");
    let (status, body) = preview(
        &app,
        id,
        json!({"variant_id": variant_id(&created, 2, 0), "sample": 3}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previews"], json!([]));
    assert_eq!(body["warnings"][0]["kind"], "empty_segment");

    // Variants that differ per segment raise no identical-variant warning.
    let created = create(&app, &shop_campaign()).await;
    let (_, audience) = app
        .get(&format!("/api/v1/campaigns/{}/audience", created["id"]))
        .await;
    assert_eq!(audience["warnings"], json!([]), "{audience:#}");
}

async fn duplicates_copy_campaigns_and_history_records_each_save(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    segment(&app, "champions", &[]).await;
    let created = create(
        &app,
        &campaign(json!([{ "segment": "champions", "variants": [variant("A", 1, "First")] }])),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    let vid = variant_id(&created, 0, 0);
    let path = format!("/api/v1/campaigns/{id}/variants/{vid}");

    let (status, saved) = put(&app, &path, &variant("A", 2, "Second")).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["targets"][0]["variants"][0]["version"], 2);
    assert_eq!(
        saved["targets"][0]["variants"][0]["email"]["subject"],
        "Second"
    );
    // Saving the same content again records nothing.
    let (status, _) = put(&app, &path, &variant("A", 2, "Second")).await;
    assert_eq!(status, 200);
    let (status, saved) = put(&app, &path, &variant("A renamed", 2, "Third")).await;
    assert_eq!(status, 200, "{saved}");
    // A bad save is refused and recorded nowhere.
    let (status, refused) = put(&app, &path, &variant("A", 2, "{{ oops")).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(errors(&refused)[0]["path"], "email.subject");

    let (status, history) = app.get(&format!("{path}/history")).await;
    assert_eq!(status, 200, "{history}");
    let revisions = history["revisions"].as_array().unwrap();
    let versions: Vec<i64> = revisions
        .iter()
        .map(|r| r["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [3, 2, 1]);
    let subjects: Vec<&str> = revisions
        .iter()
        .map(|r| r["email"]["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["Third", "Second", "First"]);
    assert_eq!(revisions[0]["name"], "A renamed");
    assert_eq!(revisions[2]["weight"], 1);
    assert!(revisions[0]["saved_at"].is_string());
    assert!(revisions[0]["saved_by"].is_i64());

    let (status, copy) = app
        .post(&format!("/api/v1/campaigns/{id}/duplicate"), &json!({}))
        .await;
    assert_eq!(status, 201, "{copy}");
    assert_ne!(copy["id"], created["id"]);
    assert_eq!(copy["name"], "Spring sale (copy)");
    assert_eq!(copy["duplicated_from"], id);
    assert_eq!(copy["status"], "draft");
    let copied = &copy["targets"][0]["variants"][0];
    assert_ne!(copied["id"], vid);
    assert_eq!(copied["name"], "A renamed");
    assert_eq!(copied["email"]["subject"], "Third");
    assert_eq!(copied["version"], 1);
    let (status, history) = app
        .get(&format!(
            "/api/v1/campaigns/{}/variants/{}/history",
            copy["id"], copied["id"]
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(history["revisions"].as_array().unwrap().len(), 1);

    let response = app
        .request(Method::POST, &format!("/api/v1/campaigns/{id}/duplicate"))
        .send()
        .await
        .unwrap();
    let (status, named) = read(response).await;
    assert_eq!(status, 201, "an empty body is fine: {named}");
    let (status, named) = app
        .post(
            &format!("/api/v1/campaigns/{id}/duplicate"),
            &json!({"name": "Autumn sale"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(named["name"], "Autumn sale");
    let (status, _) = app
        .post(
            &format!("/api/v1/campaigns/{id}/duplicate"),
            &json!({"name": " "}),
        )
        .await;
    assert_eq!(status, 422);
    let (_, page) = app.get("/api/v1/campaigns").await;
    assert_eq!(page["campaigns"].as_array().unwrap().len(), 4);

    // A variant of another campaign has no history here.
    let (status, _) = app
        .get(&format!(
            "/api/v1/campaigns/{}/variants/{vid}/history",
            copy["id"]
        ))
        .await;
    assert_eq!(status, 404);
}

async fn viewers_read_marketers_write_and_keys_are_required(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    shop(&app).await;
    let body = shop_campaign();
    let as_viewer = |method: Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .bearer_auth(&app.viewer_key)
    };
    let (status, refused) = read(
        as_viewer(Method::POST, "/api/v1/campaigns")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(refused["code"], "forbidden");

    let created = create(&app, &body).await;
    let id = created["id"].as_i64().unwrap();
    let vid = variant_id(&created, 0, 0);
    for (method, path) in [
        (Method::PUT, format!("/api/v1/campaigns/{id}")),
        (Method::DELETE, format!("/api/v1/campaigns/{id}")),
        (Method::POST, format!("/api/v1/campaigns/{id}/duplicate")),
        (
            Method::PUT,
            format!("/api/v1/campaigns/{id}/variants/{vid}"),
        ),
    ] {
        let response = as_viewer(method.clone(), &path)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{method} {path}");
    }
    for path in [
        format!("/api/v1/campaigns/{id}"),
        "/api/v1/campaigns".to_owned(),
        format!("/api/v1/campaigns/{id}/audience"),
        format!("/api/v1/campaigns/{id}/variants/{vid}/history"),
    ] {
        let response = as_viewer(Method::GET, &path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let response = as_viewer(Method::POST, &format!("/api/v1/campaigns/{id}/preview"))
        .json(&json!({"contacts": ["anna"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    for (method, path) in [
        (Method::GET, "/api/v1/campaigns".to_owned()),
        (Method::POST, "/api/v1/campaigns".to_owned()),
        (Method::GET, format!("/api/v1/campaigns/{id}/audience")),
        (Method::POST, format!("/api/v1/campaigns/{id}/preview")),
        (Method::POST, "/api/v1/templates/validate".to_owned()),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(&path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let (status, body) = read(response).await;
        assert_eq!(status, 401, "{method} {path}");
        assert_eq!(body["code"], "unauthorized");
    }

    // Another workspace's campaign is invisible.
    app.db
        .execute_unprepared(
            "INSERT INTO workspaces (id, slug, name, created_at) VALUES (2, 'other', 'Other', 0)",
        )
        .await
        .unwrap();
    let (other_key, _) = clarion_server::store::keys::create(
        &app.db,
        clarion_model::WorkspaceId(2),
        "other",
        clarion_model::Role::Admin,
    )
    .await
    .unwrap();
    let response = app
        .client
        .get(app.url(&format!("/api/v1/campaigns/{id}")))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

async fn bad_input_is_refused_with_422_not_500(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    shop(&app).await;
    let created = create(&app, &shop_campaign()).await;
    let id = created["id"].as_i64().unwrap();

    let mut wrong_type = shop_campaign();
    wrong_type["targets"][0]["variants"][0]["weight"] = json!("heavy");
    let (status, body) = app.post("/api/v1/campaigns", &wrong_type).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(errors(&body)[0]["field"], "targets[0].variants[0].weight");

    let mut unknown_field = shop_campaign();
    unknown_field["targets"][0]["variants"][0]["email"]["subjekt"] = json!("x");
    let (status, body) = app.post("/api/v1/campaigns", &unknown_field).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        errors(&body)[0]["field"],
        "targets[0].variants[0].email.subjekt"
    );

    let mut missing = shop_campaign();
    missing.as_object_mut().unwrap().remove("goal");
    let (status, body) = app.post("/api/v1/campaigns", &missing).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(errors(&body)[0]["field"], "goal");

    let mut numbers = shop_campaign();
    numbers["holdout_percent"] = json!(150);
    numbers["goal"] = json!({"event": "Bad Kind", "window_hours": 0});
    numbers["channels"] = json!([]);
    numbers["name"] = json!("");
    let (status, body) = app.post("/api/v1/campaigns", &numbers).await;
    assert_eq!(status, 422, "{body}");
    for path in [
        "name",
        "goal.event",
        "goal.window_hours",
        "holdout_percent",
        "channels",
    ] {
        error_at(&body, path);
    }

    let mut no_fallback_audience = shop_campaign();
    no_fallback_audience
        .as_object_mut()
        .unwrap()
        .remove("audience_segment");
    let (status, body) = app.post("/api/v1/campaigns", &no_fallback_audience).await;
    assert_eq!(status, 422, "{body}");
    error_at(&body, "audience_segment");

    // Templates that would hang or flood a worker are refused when saved.
    let mut endless = shop_campaign();
    endless["targets"][0]["variants"][0]["email"]["html"] =
        json!("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}");
    let (status, body) = app.post("/api/v1/campaigns", &endless).await;
    assert_eq!(status, 422, "{body}");
    error_at(&body, "targets[0].variants[0].email.html");

    let mut unknown_variant = shop_campaign();
    unknown_variant["targets"][0]["variants"][0]["id"] = json!(999_999);
    let (status, body) = put(&app, &format!("/api/v1/campaigns/{id}"), &unknown_variant).await;
    assert_eq!(status, 422, "{body}");
    error_at(&body, "targets[0].variants[0].id");
    let (status, body) = app.post("/api/v1/campaigns", &unknown_variant).await;
    assert_eq!(status, 422, "{body}");

    for (request, path) in [
        (json!({"contacts": ["nobody"]}), "contacts[0]"),
        (json!({}), "contacts"),
        (json!({"contacts": ["anna"], "sample": 2}), "sample"),
        (json!({"sample": 2}), "variant_id"),
        (
            json!({"variant_id": 424242, "contacts": ["anna"]}),
            "variant_id",
        ),
        (
            json!({"variant_id": variant_id(&created, 0, 0), "sample": 0}),
            "sample",
        ),
        (json!({"contacts": "anna"}), "contacts"),
    ] {
        let (status, body) = preview(&app, id, request.clone()).await;
        assert_eq!(status, 422, "{request}: {body}");
        error_at(&body, path);
    }

    let response = app
        .request(Method::POST, "/api/v1/campaigns")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_json");

    let (status, _) = app.get("/api/v1/campaigns/999999").await;
    assert_eq!(status, 404);
    let (status, _) = app.get("/api/v1/campaigns/999999/audience").await;
    assert_eq!(status, 404);
    let (status, _) = preview(&app, 999_999, json!({"contacts": ["anna"]})).await;
    assert_eq!(status, 404);
    let (status, body) = app.get("/api/v1/campaigns/not-a-number").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = put(
        &app,
        &format!("/api/v1/campaigns/{id}/variants/999999"),
        &variant("X", 1, "x"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = app.get("/api/v1/campaigns?limit=0").await;
    assert_eq!(status, 400, "{body}");
}

async fn the_api_reference_lists_the_campaign_endpoints(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, spec) = read(
        app.client
            .get(app.url("/api/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/api/v1/campaigns",
        "/api/v1/campaigns/{id}",
        "/api/v1/campaigns/{id}/duplicate",
        "/api/v1/campaigns/{id}/variants/{variant_id}",
        "/api/v1/campaigns/{id}/variants/{variant_id}/history",
        "/api/v1/campaigns/{id}/preview",
        "/api/v1/campaigns/{id}/audience",
        "/api/v1/templates/validate",
    ] {
        assert!(paths.contains_key(path), "{path} is missing from the spec");
    }
    assert!(spec["components"]["schemas"]["CampaignInput"].is_object());
}

async fn a_segment_a_campaign_uses_cannot_be_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    segment(&app, "vips", &[]).await;
    create(
        &app,
        &campaign(json!([{ "segment": "vips", "variants": [variant("Only", 1, "Hi")] }])),
    )
    .await;
    let response = app
        .request(Method::DELETE, "/api/v1/segments/vips")
        .send()
        .await
        .unwrap();
    let (status, error) = read(response).await;
    assert_eq!(status, 409, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("Spring sale"),
        "{error}"
    );
}

/// JSON has one kind of number: `168.0` is the integer 168, as the OpenAPI document says,
/// while `1.5` in an integer field is still refused, naming it.
async fn whole_numbers_written_with_a_fraction_are_integers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    segment(&app, "champions", &[]).await;
    let mut body = campaign(json!([
        { "segment": "champions", "variants": [variant("A", 1, "Hi")] },
    ]));
    body["goal"]["window_hours"] = json!(168.0);
    body["targets"][0]["variants"][0]["weight"] = json!(3.0);
    let created = create(&app, &body).await;
    assert_eq!(created["goal"]["window_hours"], 168, "{created}");
    assert_eq!(
        created["targets"][0]["variants"][0]["weight"], 3,
        "{created}"
    );

    body["goal"]["window_hours"] = json!(1.5);
    let (status, refused) = app.post("/api/v1/campaigns", &body).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["details"]["errors"][0]["field"], "goal.window_hours",
        "{refused}"
    );
}

on_both_backends!(
    whole_numbers_written_with_a_fraction_are_integers,
    a_segment_a_campaign_uses_cannot_be_deleted,
    campaigns_round_trip_with_their_variants,
    invalid_campaigns_name_the_variant_field_line_and_column,
    templates_validate_reports_issues_without_saving,
    preview_renders_for_a_contact_and_for_samples,
    tracking_links_are_signed_with_the_configured_keys,
    the_first_matching_segment_wins,
    ab_splits_are_deterministic_and_follow_the_weights,
    audience_counts_holdout_and_reachable_contacts_per_channel,
    identical_variants_and_empty_segments_are_warned_about,
    duplicates_copy_campaigns_and_history_records_each_save,
    viewers_read_marketers_write_and_keys_are_required,
    bad_input_is_refused_with_422_not_500,
    the_api_reference_lists_the_campaign_endpoints,
);
