//! The Contacts and Segments pages over real HTTP, as a browser without JavaScript sees
//! them, on SQLite and PostgreSQL: what each role may see and do, the figures checked
//! against an independent count of the data the test wrote, the builder's preview and its
//! answer to a bad rule, CSRF on saves, and the CSV export against the API's.

use std::collections::BTreeSet;

use clarion_model::{DEFAULT_WORKSPACE, Role, Timestamp};
use clarion_testkit::{Backend, on_both_backends};
use serde_json::json;

use crate::app::TestApp;
use crate::dashboard::{PASSWORD, Visitor, user};

const DAY: i64 = 86_400_000;

/// 60 contacts: every third on the pro plan, countries alternating DE / FR, and purchases by
/// the first ten (contact i spends 10 × (i + 1)); traits computed.
async fn shop(app: &TestApp) {
    let contacts: Vec<_> = (0..60)
        .map(|i| {
            json!({"external_id": format!("c{i}"), "email": format!("c{i}@example.com"),
                   "first_name": format!("Name{i}"),
                   "country": if i % 2 == 0 { "DE" } else { "FR" },
                   "attributes": {"plan": if i % 3 == 0 { "pro" } else { "free" }, "gender": if i % 4 == 0 { "f" } else { "m" }}})
        })
        .collect();
    let (status, body) = app
        .post("/api/v1/contacts/batch", &json!({ "contacts": contacts }))
        .await;
    assert_eq!(status, 200, "{body}");
    let now = Timestamp::now().millis();
    let events: Vec<_> = (0..10)
        .map(|i| {
            json!({"external_id": format!("c{i}"), "kind": "purchase",
                   "occurred_at": Timestamp::from_millis(now - (i + 1) * DAY),
                   "amount": 10.0 * (i + 1) as f64, "properties": {"invoice": format!("I{i}")}})
        })
        .collect();
    let (status, body) = app
        .post("/api/v1/events/batch", &json!({ "events": events }))
        .await;
    assert_eq!(status, 200, "{body}");
    clarion_segment::recompute(
        &app.db,
        DEFAULT_WORKSPACE,
        Timestamp::now(),
        &app.settings.traits.computation(),
    )
    .await
    .unwrap();
}

async fn signed_in(app: &TestApp, email: &str, role: Role) -> Visitor {
    user(app, email, role, PASSWORD).await;
    let mut visitor = Visitor::new(app);
    assert_eq!(visitor.login(email, PASSWORD).await.status, 303);
    visitor
}

/// The external ids linked from a page's table rows.
fn linked_contacts(body: &str) -> BTreeSet<String> {
    body.split("href=\"/contacts/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

async fn a_viewer_searches_contacts_and_reads_a_profile(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    shop(&app).await;
    let mut viewer = signed_in(&app, "vera@example.com", Role::Viewer).await;

    let all = viewer.get("/contacts").await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(
        all.body
            .contains("href=\"/contacts\" aria-current=\"page\"")
    );
    // 60 contacts, 50 a page: the next page holds the other 10, with no overlap.
    let first = linked_contacts(&all.body);
    assert_eq!(first.len(), 50);
    let next = all
        .body
        .split("href=\"/contacts?")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a next-page link")
        .replace("&amp;", "&");
    let second = linked_contacts(&viewer.get(&format!("/contacts?{next}")).await.body);
    assert_eq!(second.len(), 10);
    assert!(first.is_disjoint(&second));

    // Filters are the API's: independently, the pro plan in DE is i % 6 == 0.
    let pro_de = viewer.get("/contacts?country=DE&attr=plan&value=pro").await;
    let expected: BTreeSet<String> = (0..60)
        .filter(|i| i % 6 == 0)
        .map(|i| format!("c{i}"))
        .collect();
    assert_eq!(linked_contacts(&pro_de.body), expected);
    assert!(pro_de.body.contains("value=\"pro\""), "the search is kept");

    // A bad filter says what is wrong and keeps what was typed.
    let bad = viewer.get("/contacts?country=Germany").await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("country"), "{}", bad.body);
    assert!(bad.body.contains("value=\"Germany\""));
    let unknown = viewer.get("/contacts?attr=nosuch&value=1").await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.body.contains("nosuch"));

    // An external id opens the profile.
    let open = viewer.get("/contacts?id=c3").await;
    assert_eq!(open.location.as_deref(), Some("/contacts/c3"));
    assert_eq!(viewer.get("/contacts?id=nobody").await.status, 404);

    // The profile: attributes, traits as the API reports them, stays, events.
    let (status, segment) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "Buyers", "category": "behavioural", "rule": "purchase()"}),
        )
        .await;
    assert_eq!(status, 201, "{segment}");
    let (_, traits) = app.get("/api/v1/contacts/c3/traits").await;
    let profile = viewer.get("/contacts/c3").await;
    assert_eq!(profile.status, 200, "{}", profile.body);
    assert!(profile.body.contains("c3@example.com"));
    assert!(profile.body.contains("<code>plan</code></dt><dd>pro</dd>"));
    let rfm = traits["purchases"]["rfm"]["segment"].as_str().unwrap();
    assert!(
        profile.body.contains(&format!("id=\"rfm-segment\">{rfm}<")),
        "{}",
        profile.body
    );
    assert!(profile.body.contains("id=\"clv\">40.00<"), "c3 spent 40");
    assert!(profile.body.contains(">Buyers</a>"), "the stay in Buyers");
    assert!(profile.body.contains("<strong>purchase</strong> 40.00"));
    // A contact without purchases says so; an unknown one is a 404 page.
    let quiet = viewer.get("/contacts/c42").await;
    assert!(quiet.body.contains("No purchase as of"));
    assert!(quiet.body.contains("Never in a segment."));
    let missing = viewer.get("/contacts/nobody").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("nobody"));
}

async fn segment_pages_show_size_value_members_and_the_apis_csv(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    shop(&app).await;
    let (status, body) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "Pro plan", "category": "firmographic",
                    "rule": {"attr": "plan", "op": "=", "value": "pro"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    let pro: Vec<usize> = (0..60).filter(|i| i % 3 == 0).collect();
    // Revenue of the pro members: those among the ten buyers (0, 3, 6, 9).
    let revenue: f64 = pro
        .iter()
        .filter(|i| **i < 10)
        .map(|i| 10.0 * (*i + 1) as f64)
        .sum();

    let mut viewer = signed_in(&app, "vera@example.com", Role::Viewer).await;
    let list = viewer.get("/segments").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("Pro plan"));
    assert!(
        list.body
            .contains(&format!("data-sort=\"{}\">{}<", pro.len(), pro.len()))
    );
    assert!(
        list.body.contains(&format!(">{revenue:.2}<")),
        "{}",
        list.body
    );
    assert!(list.body.contains("<polyline points="), "a sparkline");
    assert!(
        list.body.contains(&format!("from 0 to {}", pro.len())),
        "the segment was made today: {}",
        list.body
    );

    let page = viewer.get(&format!("/segments/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("id=\"figure-size\">{}<", pro.len()))
    );
    assert!(
        page.body
            .contains(&format!("id=\"figure-revenue\">{revenue:.2}<"))
    );
    assert!(
        page.body
            .contains(&format!("id=\"figure-email\">{}<", pro.len()))
    );
    let members = linked_contacts(&page.body);
    let expected: BTreeSet<String> = pro.iter().map(|i| format!("c{i}")).collect();
    assert_eq!(members, expected);

    // The export is the API's file, byte for byte, and lists exactly the members.
    let exported = viewer.get(&format!("/segments/{id}/members.csv")).await;
    assert_eq!(exported.status, 200);
    let api = app
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/segments/{id}/members?format=csv"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(exported.body, api);
    let ids: BTreeSet<String> = exported
        .body
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected);

    // A viewer sees no marketer actions and is refused them.
    assert!(!list.body.contains("href=\"/segments/new\""));
    assert!(!page.body.contains("/edit\""));
    for path in [
        "/segments/new".to_string(),
        format!("/segments/{id}/edit"),
        "/segments/suggestions".to_string(),
    ] {
        assert_eq!(viewer.get(&path).await.status, 403, "{path}");
    }
    let csrf = page.csrf();
    let refused = viewer
        .post(
            "/segments",
            &[
                ("csrf", csrf.as_str()),
                ("name", "Sneaky"),
                ("category", "value"),
                ("mode", "text"),
                ("rule_text", "plan = \"free\""),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    let (_, segments) = app.get("/api/v1/segments").await;
    assert_eq!(segments.as_array().unwrap().len(), 1, "nothing was saved");
    assert_eq!(viewer.get("/segments/999999").await.status, 404);

    // The cross-tab counts as the data says: gender × pro plan.
    let table = viewer
        .get("/segments/crosstab?rows_kind=attr&rows=gender&columns_kind=rule&columns=plan+%3D+%22pro%22")
        .await;
    assert_eq!(table.status, 200, "{}", table.body);
    let women_pro = (0..60).filter(|i| i % 4 == 0 && i % 3 == 0).count();
    assert!(table.body.contains("60 in all"), "{}", table.body);
    assert!(
        table.body.contains(&format!(">{women_pro}<br>")),
        "{}",
        table.body
    );
    let bad = viewer
        .get("/segments/crosstab?rows_kind=attr&rows=nosuch&columns_kind=rule&columns=purchase()")
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("nosuch"));
}

async fn a_marketer_builds_previews_and_saves_a_segment(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    shop(&app).await;
    let mut marketer = signed_in(&app, "mara@example.com", Role::Marketer).await;
    let list = marketer.get("/segments").await;
    assert!(list.body.contains("href=\"/segments/new\""));
    let form = marketer.get("/segments/new").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("id=\"panel-visual\""));
    assert!(form.body.contains("hx-post=\"/segments/preview\""));
    let csrf = form.csrf();

    // The live preview of an unsaved rule: DE buyers are c0, c2, c4, c6, c8.
    let rule = "country = \"DE\" and purchase()";
    let preview = marketer
        .post(
            "/segments/preview",
            &[("csrf", &csrf), ("mode", "text"), ("rule_text", rule)],
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(
        preview.body.contains("id=\"preview-size\">5<"),
        "{}",
        preview.body
    );
    assert!(preview.body.contains("id=\"preview-revenue\">250.00<"));
    // The visual editor's JSON previews the same.
    let json_rule =
        json!({"all": [{"attr": "country", "op": "=", "value": "DE"}, {"event": "purchase"}]});
    let visual = marketer
        .post(
            "/segments/preview",
            &[
                ("csrf", &csrf),
                ("mode", "visual"),
                ("rule_json", &json_rule.to_string()),
            ],
        )
        .await;
    assert!(
        visual.body.contains("id=\"preview-size\">5<"),
        "{}",
        visual.body
    );

    // Switching forms converts without loss, both ways.
    let to_text = marketer
        .post(
            "/segments/rule",
            &[
                ("csrf", &csrf),
                ("mode", "visual"),
                ("rule_json", &json_rule.to_string()),
            ],
        )
        .await;
    assert_eq!(to_text.status, 200, "{}", to_text.body);
    let converted: serde_json::Value = serde_json::from_str(&to_text.body).unwrap();
    let text = converted["text"].as_str().unwrap().to_string();
    let back = marketer
        .post(
            "/segments/rule",
            &[("csrf", &csrf), ("mode", "text"), ("rule_text", &text)],
        )
        .await;
    let back: serde_json::Value = serde_json::from_str(&back.body).unwrap();
    assert_eq!(back["json"], json_rule);

    // A syntax error: the preview marks the position, the switch refuses with it, and a save
    // answers the form again with the text as typed.
    let typo = "country = \"DE\" and purchase(9x)";
    let preview = marketer
        .post(
            "/segments/preview",
            &[("csrf", &csrf), ("mode", "text"), ("rule_text", typo)],
        )
        .await;
    assert_eq!(preview.status, 200);
    assert!(
        preview.body.contains("id=\"rule-problem\""),
        "{}",
        preview.body
    );
    assert!(preview.body.contains("line 1, column"), "{}", preview.body);
    assert!(
        preview.body.contains("<mark>"),
        "the position is marked: {}",
        preview.body
    );
    let switch = marketer
        .post(
            "/segments/rule",
            &[("csrf", &csrf), ("mode", "text"), ("rule_text", typo)],
        )
        .await;
    assert_eq!(switch.status, 422);
    let problem: serde_json::Value = serde_json::from_str(&switch.body).unwrap();
    assert_eq!(problem["problem"]["mark"]["line"], 1);
    let saved = marketer
        .post(
            "/segments",
            &[
                ("csrf", &csrf),
                ("name", "DE buyers"),
                ("category", "behavioural"),
                ("mode", "text"),
                ("rule_text", typo),
            ],
        )
        .await;
    assert_eq!(saved.status, 422, "{}", saved.body);
    assert!(
        saved
            .body
            .contains("country = \"DE\" and purchase(9x)</textarea>")
            || saved
                .body
                .contains("country = &quot;DE&quot; and purchase(9x)</textarea>"),
        "the text is kept: {}",
        saved.body
    );
    assert!(
        saved.body.contains("value=\"DE buyers\""),
        "the name is kept"
    );
    assert!(saved.body.contains("<mark>"));
    // An unknown attribute names the node.
    let unknown = marketer
        .post(
            "/segments",
            &[
                ("csrf", &csrf),
                ("name", "Odd"),
                ("category", "value"),
                ("mode", "text"),
                ("rule_text", "shoe_size > 40"),
            ],
        )
        .await;
    assert_eq!(unknown.status, 422);
    assert!(unknown.body.contains("shoe_size"), "{}", unknown.body);

    // CSRF: without the token, or from another site, nothing is saved.
    let good = [
        ("name", "DE buyers"),
        ("category", "behavioural"),
        ("mode", "text"),
        ("rule_text", rule),
    ];
    let forged = marketer.post("/segments", &good).await;
    assert_eq!(forged.status, 403);
    let mut with_token = good.to_vec();
    with_token.push(("csrf", &csrf));
    let cross_site = marketer
        .post_from(
            "/segments",
            &with_token,
            Some("https://evil.example"),
            Some("cross-site"),
        )
        .await;
    assert_eq!(cross_site.status, 403);
    let (_, segments) = app.get("/api/v1/segments").await;
    assert!(segments.as_array().unwrap().is_empty());

    // Saved: the segment page shows its members.
    let saved = marketer.post("/segments", &with_token).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let location = saved.location.unwrap();
    let page = marketer.get(&location).await;
    assert!(page.body.contains("id=\"figure-size\">5<"), "{}", page.body);
    let (_, segments) = app.get("/api/v1/segments").await;
    let stored = &segments[0];
    assert_eq!(stored["rule"], json_rule);
    assert_eq!(stored["member_count"], 5);

    // Editing opens the builder with the rule; a new rule recomputes the members.
    let edit = marketer.get(&format!("{location}/edit")).await;
    assert_eq!(edit.status, 200);
    assert!(edit.body.contains("purchase()"), "{}", edit.body);
    let changed = marketer
        .post(
            &location,
            &[
                ("csrf", &csrf),
                ("name", "FR buyers"),
                ("category", "behavioural"),
                ("mode", "text"),
                ("rule_text", "country = \"FR\" and purchase()"),
            ],
        )
        .await;
    assert_eq!(changed.status, 303, "{}", changed.body);
    let (_, segments) = app.get("/api/v1/segments").await;
    assert_eq!(segments[0]["name"], "FR buyers");
    assert_eq!(segments[0]["member_count"], 5, "c1, c3, c5, c7, c9");
}

async fn a_suggestion_is_saved_in_one_click(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    crate::insights::customers(&app).await;
    let mut marketer = signed_in(&app, "mara@example.com", Role::Marketer).await;
    let page = marketer.get("/segments/suggestions?clusters=2").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let (_, api) = app
        .post("/api/v1/segments/suggest", &json!({"clusters": 2}))
        .await;
    let first = &api["suggestions"][0];
    let name = first["name"].as_str().unwrap();
    assert!(page.body.contains(name), "{}", page.body);
    let csrf = page.csrf();
    // The row's one button posts what the page holds for it.
    let saved = marketer
        .post(
            "/segments/suggestions",
            &[
                ("csrf", &csrf),
                ("name", name),
                ("slug", first["slug"].as_str().unwrap()),
                ("category", first["category"].as_str().unwrap()),
                ("description", first["description"].as_str().unwrap()),
                ("rule", first["rule_text"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let (_, segment) = app
        .get(&format!(
            "/api/v1/segments/{}",
            first["slug"].as_str().unwrap()
        ))
        .await;
    assert_eq!(segment["rule"], first["rule"]);
    assert_eq!(segment["name"], name);
}

on_both_backends!(
    a_viewer_searches_contacts_and_reads_a_profile,
    segment_pages_show_size_value_members_and_the_apis_csv,
    a_marketer_builds_previews_and_saves_a_segment,
    a_suggestion_is_saved_in_one_click,
);
