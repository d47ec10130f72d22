//! Stored segments through the API: save, members kept current by events, contact changes
//! and the sweep, previews, health, history, static uploads and bad input.

use crate::app::{TestApp, read};
use clarion_model::{DEFAULT_WORKSPACE, Timestamp};
use clarion_segment::membership;
use clarion_testkit::{Backend, on_both_backends};
use reqwest::Method;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;

fn iso(millis: i64) -> String {
    Timestamp::from_millis(millis).to_rfc3339()
}

/// Six contacts: three in DE (two of them subscribed to email), two in FR, one without a
/// country; ages 20..70.
async fn people(app: &TestApp) {
    let (status, body) = app
        .post(
            "/api/v1/contacts/batch",
            &json!({"contacts": [
                {"external_id": "p1", "email": "p1@example.com", "country": "DE", "attributes": {"age": 20}},
                {"external_id": "p2", "email": "p2@example.com", "country": "DE", "attributes": {"age": 30}},
                {"external_id": "p3", "country": "DE", "attributes": {"age": 40}},
                {"external_id": "p4", "email": "p4@example.com", "country": "FR", "attributes": {"age": 50}},
                {"external_id": "p5", "email": "p5@example.com", "country": "FR", "attributes": {"age": 60}},
                {"external_id": "p6", "email": "p6@example.com", "attributes": {"age": 70}}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn send(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app.request(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.unwrap()).await
}

async fn members(app: &TestApp, segment: &str) -> Vec<String> {
    let (status, page) = app
        .get(&format!("/api/v1/segments/{segment}/members"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["external_id"].as_str().unwrap().to_string())
        .collect()
}

async fn a_saved_segment_keeps_its_members_and_history(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    people(&app).await;
    let (status, created) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "Germans over 25", "category": "geographic",
                    "description": "DACH core market",
                    "rule": {"all": [{"attr": "country", "op": "=", "value": "DE"},
                                     {"attr": "age", "op": ">", "value": 25}]}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["slug"], "germans-over-25");
    assert_eq!(created["kind"], "dynamic");
    assert_eq!(created["member_count"], 2);
    assert_eq!(
        created["rule_text"], "country = \"DE\" and age > 25",
        "{created}"
    );
    assert!(created["computed_at"].is_string());
    assert_eq!(members(&app, "germans-over-25").await, ["p2", "p3"]);

    // By id as well as by slug; in the list.
    let id = created["id"].as_i64().unwrap();
    let (status, by_id) = app.get(&format!("/api/v1/segments/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(by_id["slug"], "germans-over-25");
    let (_, list) = app.get("/api/v1/segments").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // A new rule (text form) recomputes the members: p2 and p3 leave, p4 and p5 enter.
    let (status, updated) = send(
        &app,
        Method::PATCH,
        "/api/v1/segments/germans-over-25",
        Some(json!({"name": "French", "rule": "country = \"FR\""})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["name"], "French");
    assert_eq!(updated["slug"], "germans-over-25", "the slug stays");
    assert_eq!(updated["member_count"], 2);
    assert_eq!(members(&app, "germans-over-25").await, ["p4", "p5"]);

    // Today's history holds four entries and two exits; the size at the end is two.
    let (status, days) = app.get("/api/v1/segments/germans-over-25/history").await;
    assert_eq!(status, 200, "{days}");
    let days = days.as_array().unwrap();
    assert_eq!(days.len(), 30);
    let today = days.last().unwrap();
    assert_eq!(today["entered"], 4, "{today}");
    assert_eq!(today["exited"], 2);
    assert_eq!(today["size"], 2);
    assert_eq!(days[0]["size"], 0);

    // p2's stays: one past stay in the segment.
    let (status, stays) = app.get("/api/v1/contacts/p2/segments").await;
    assert_eq!(status, 200, "{stays}");
    assert_eq!(stays.as_array().unwrap().len(), 1);
    assert!(stays[0]["exited_at"].is_string());
    let (_, stays) = app.get("/api/v1/contacts/p4/segments").await;
    assert_eq!(stays[0]["slug"], "germans-over-25");
    assert!(stays[0]["exited_at"].is_null());
    let (status, _) = app.get("/api/v1/contacts/nobody/segments").await;
    assert_eq!(status, 404);

    // CSV export of every member.
    let response = app
        .request(
            Method::GET,
            "/api/v1/segments/germans-over-25/members?format=csv",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "external_id,email,first_name,last_name,country,entered_at"
    );
    assert_eq!(lines.len(), 3);
    assert!(lines[1].starts_with("p4,p4@example.com,,,FR,20"), "{csv}");

    // Paging with a cursor.
    let (_, page) = app
        .get("/api/v1/segments/germans-over-25/members?limit=1")
        .await;
    assert_eq!(page["members"][0]["external_id"], "p4");
    let next = page["next"].as_str().unwrap();
    let (_, page) = app
        .get(&format!(
            "/api/v1/segments/germans-over-25/members?limit=1&cursor={next}"
        ))
        .await;
    assert_eq!(page["members"][0]["external_id"], "p5");

    // Delete, then it is gone.
    let (status, _) = send(
        &app,
        Method::DELETE,
        "/api/v1/segments/germans-over-25",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = app.get("/api/v1/segments/germans-over-25").await;
    assert_eq!(status, 404, "{body}");
}

async fn events_and_contact_changes_update_memberships_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    people(&app).await;
    let (status, body) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "Repeat buyers", "category": "behavioural",
                    "rule": "purchase.count(30d) >= 2"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["member_count"], 0);
    let (status, body) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "Seniors", "category": "demographic", "rule": "age >= 65"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["member_count"], 1);

    let now = Timestamp::now().millis();
    let (status, body) = app
        .post(
            "/api/v1/events/batch",
            &json!({"events": [
                {"external_id": "p1", "kind": "purchase", "occurred_at": iso(now - 3 * DAY), "amount": 10.0},
                {"external_id": "p1", "kind": "purchase", "occurred_at": iso(now - DAY), "amount": 20.0},
                {"external_id": "p2", "kind": "purchase", "occurred_at": iso(now - DAY), "amount": 5.0}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The answer comes after the memberships are current.
    assert_eq!(members(&app, "repeat-buyers").await, ["p1"]);
    let (_, segment) = app.get("/api/v1/segments/repeat-buyers").await;
    assert_eq!(segment["member_count"], 1);

    // A second purchase brings p2 in; a new contact created by its event joins too.
    let (status, body) = app
        .post(
            "/api/v1/events/batch",
            &json!({"events": [
                {"external_id": "p2", "kind": "purchase", "occurred_at": iso(now - 2 * DAY)},
                {"external_id": "new-1", "kind": "purchase", "occurred_at": iso(now - 2 * DAY)},
                {"external_id": "new-1", "kind": "purchase", "occurred_at": iso(now - DAY)}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(members(&app, "repeat-buyers").await, ["p1", "p2", "new-1"]);

    // A contact change moves people in and out of attribute segments.
    let (status, body) = app
        .post(
            "/api/v1/contacts/batch",
            &json!({"contacts": [{"external_id": "p1", "attributes": {"age": 80}},
                                 {"external_id": "p6", "attributes": {"age": 40}}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(members(&app, "seniors").await, ["p1"]);

    // The sweep lets windows expire: 27.5 days on, p1's first purchase has left the window.
    let later = Timestamp::from_millis(now + 27 * DAY + DAY / 2);
    let report = membership::sweep(&app.db, DEFAULT_WORKSPACE, later)
        .await
        .unwrap();
    assert_eq!(report.segments, 2);
    assert!(report.failed.is_empty());
    assert_eq!(members(&app, "repeat-buyers").await, ["p2", "new-1"]);
    let (_, segment) = app.get("/api/v1/segments/repeat-buyers").await;
    assert_eq!(segment["member_count"], 2);
    let (_, stays) = app.get("/api/v1/contacts/p1/segments").await;
    let repeat: Vec<&Value> = stays
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["slug"] == "repeat-buyers")
        .collect();
    assert_eq!(repeat.len(), 1);
    assert!(repeat[0]["exited_at"].is_string());

    // A deleted contact leaves its segments at once.
    let (status, _) = send(&app, Method::DELETE, "/api/v1/contacts/p2", None).await;
    assert_eq!(status, 204);
    assert_eq!(members(&app, "repeat-buyers").await, ["new-1"]);
    let (_, segment) = app.get("/api/v1/segments/repeat-buyers").await;
    assert_eq!(segment["member_count"], 1);
}

async fn preview_reports_size_value_reach_overlap_and_sample(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    people(&app).await;
    // p4 has unsubscribed from email.
    let (status, body) = send(
        &app,
        Method::PATCH,
        "/api/v1/contacts/p4",
        Some(json!({"subscriptions": {"email": "unsubscribed"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Computed traits: revenue and CLV for p1, p2 and p4.
    let ids = clarion_contacts::contacts::resolve_ids(
        &app.db,
        DEFAULT_WORKSPACE,
        &["p1", "p2", "p4"],
        false,
    )
    .await
    .unwrap();
    for (external, revenue) in [("p1", 100.0), ("p2", 300.0), ("p4", 600.0)] {
        app.db
            .execute_unprepared(&format!(
                "INSERT INTO contact_traits (contact_id, workspace_id, orders, revenue, first_purchase_at, last_purchase_at, rfm_recency, rfm_frequency, rfm_monetary, rfm_segment, clv, computed_at) \
                 VALUES ({}, 1, 1, {revenue}, 0, 0, 3, 3, 3, 'loyal', {revenue}, 0)",
                ids[external]
            ))
            .await
            .unwrap();
    }
    let (status, _) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "France", "category": "geographic", "rule": {"attr": "country", "op": "=", "value": "FR"}}),
        )
        .await;
    assert_eq!(status, 201);

    // Viewers may preview. Everyone under 55: p1, p2, p3, p4.
    let response = app
        .client
        .post(app.url("/api/v1/segments/preview"))
        .bearer_auth(&app.viewer_key)
        .json(&json!({"rule": "age < 55", "sample": 2}))
        .send()
        .await
        .unwrap();
    let (status, preview) = read(response).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["size"], 4);
    assert_eq!(preview["base"], 6);
    assert!((preview["share"].as_f64().unwrap() - 4.0 / 6.0).abs() < 1e-9);
    assert_eq!(
        preview["reachable"]["email"], 2,
        "p3 has no address, p4 unsubscribed"
    );
    assert_eq!(preview["reachable"]["webhook"], 4);
    assert_eq!(preview["value"]["revenue"], 1000.0);
    assert_eq!(preview["value"]["revenue_share"], 1.0);
    let average = preview["value"]["average_clv"].as_f64().unwrap();
    assert!((average - 1000.0 / 3.0).abs() < 1e-9, "{average}");
    assert_eq!(preview["overlap"][0]["slug"], "france");
    assert_eq!(preview["overlap"][0]["both"], 1);
    assert_eq!(preview["overlap"][0]["share_of_other"], 0.5);
    assert_eq!(preview["sample"].as_array().unwrap().len(), 2);
    assert_eq!(preview["sample"][0]["external_id"], "p1");
    assert_eq!(
        preview["rule"],
        json!({"attr": "age", "op": "<", "value": 55})
    );

    // The health of a stored segment gives the same figures from its members.
    let (status, health) = app.get("/api/v1/segments/france/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["size"], 2);
    assert_eq!(health["value"]["revenue"], 600.0);
    assert_eq!(health["value"]["revenue_share"], 0.6);
    assert_eq!(health["reachable"]["email"], 1);
    assert_eq!(
        health["overlap"],
        json!([]),
        "a segment does not overlap itself"
    );
    assert_eq!(health["last_30_days"].as_array().unwrap().len(), 30);
}

async fn bad_rules_and_requests_are_named(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    people(&app).await;
    let cases = [
        (
            json!({"rule": {"all": [{"attr": "country", "op": "=", "value": "DE"}, {"attr": "shoe_size", "op": ">", "value": 3}]}}),
            "all[1].attr",
        ),
        (
            json!({"rule": {"attr": "age", "op": "starts_with", "value": "4"}}),
            "op",
        ),
        (json!({"rule": {"segment": "missing"}}), "segment"),
        (
            json!({"rule": {"event": "purchase", "count": {"op": ">=", "value": 1}}}),
            "",
        ),
    ];
    for (body, path) in cases {
        let (status, error) = app.post("/api/v1/segments/preview", &body).await;
        assert_eq!(status, 422, "{body} -> {error}");
        assert_eq!(error["code"], "invalid_rule", "{error}");
        let paths: Vec<&str> = error["details"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        assert!(
            paths.iter().any(|p| p.starts_with(path)),
            "{path} in {paths:?}"
        );
    }
    // The text form points at line and column.
    let (status, error) = app
        .post(
            "/api/v1/segments/preview",
            &json!({"rule": "country = \"DE\" and\n  age >>> 3"}),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["details"]["errors"][0]["line"], 2, "{error}");
    assert!(error["details"]["errors"][0]["column"].as_u64().unwrap() >= 7);

    // Saving: bad slug, unknown category, dynamic without rule, static with rule.
    for (body, field) in [
        (
            json!({"name": "x", "slug": "Bad Slug", "category": "value", "rule": "age > 1"}),
            "slug",
        ),
        (
            json!({"name": "x", "category": "value", "kind": "dynamic"}),
            "rule",
        ),
        (
            json!({"name": "x", "category": "value", "kind": "static", "rule": "age > 1"}),
            "rule",
        ),
        (
            json!({"name": "  ", "category": "value", "rule": "age > 1"}),
            "name",
        ),
    ] {
        let (status, error) = app.post("/api/v1/segments", &body).await;
        assert_eq!(status, 422, "{body} -> {error}");
        assert_eq!(error["details"]["errors"][0]["field"], field, "{error}");
    }
    let (status, error) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "x", "category": "lifestyle", "rule": "age > 1"}),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(
        error["details"]["errors"][0]["field"], "category",
        "{error}"
    );
    assert!(
        error["message"].as_str().unwrap().contains("lifestyle"),
        "{error}"
    );

    // A taken slug is a conflict; cycles between segments are refused with their path.
    let (status, _) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "A", "slug": "a", "category": "value", "rule": "age > 30"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, error) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "A again", "slug": "a", "category": "value", "rule": "age > 1"}),
        )
        .await;
    assert_eq!(status, 409, "{error}");
    let (status, b) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "B", "slug": "b", "category": "value", "rule": {"all": [{"segment": "a"}, {"attr": "country", "op": "=", "value": "FR"}]}}),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["member_count"], 2);
    let (status, error) = send(
        &app,
        Method::PATCH,
        "/api/v1/segments/a",
        Some(json!({"rule": {"any": [{"segment": "b"}]}})),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("cycle"),
        "{error}"
    );
    // A segment in use cannot be deleted.
    let (status, error) = send(&app, Method::DELETE, "/api/v1/segments/a", None).await;
    assert_eq!(status, 409, "{error}");
    assert!(error["message"].as_str().unwrap().contains("b"));
    // Changing A's rule recomputes B, which uses it.
    let (status, _) = send(
        &app,
        Method::PATCH,
        "/api/v1/segments/a",
        Some(json!({"rule": "age > 55"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(members(&app, "b").await, ["p5"]);

    // Roles: viewers read but do not write; no key is 401.
    let response = app
        .client
        .post(app.url("/api/v1/segments"))
        .bearer_auth(&app.viewer_key)
        .json(&json!({"name": "v", "category": "value", "rule": "age > 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = app
        .client
        .get(app.url("/api/v1/segments"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

async fn static_segments_take_uploaded_lists(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    people(&app).await;
    let (status, created) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "Trade fair leads", "category": "needs", "kind": "static"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["kind"], "static");
    let upload = |body: &'static str, mode: &'static str| {
        let request = app
            .request(
                Method::PUT,
                &format!("/api/v1/segments/trade-fair-leads/members?mode={mode}"),
            )
            .header("content-type", "text/csv")
            .body(body);
        async move { read(request.send().await.unwrap()).await }
    };
    let (status, report) = upload("name,external_id\nAda,p1\nBob,ghost\nCy,p4\n", "replace").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["entered"], 2);
    assert_eq!(report["member_count"], 2);
    assert_eq!(report["unknown"][0]["line"], 3);
    assert_eq!(report["unknown"][0]["external_id"], "ghost");
    assert_eq!(members(&app, "trade-fair-leads").await, ["p1", "p4"]);

    let (status, report) = upload("p5\np6\n", "add").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["member_count"], 4);
    let (status, report) = upload("external_id\np1\n", "remove").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["exited"], 1);
    assert_eq!(members(&app, "trade-fair-leads").await, ["p4", "p5", "p6"]);

    // Rules may use a static segment.
    let (status, body) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "French leads", "category": "needs",
                    "rule": {"all": [{"segment": "trade-fair-leads"}, {"attr": "country", "op": "=", "value": "FR"}]}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(members(&app, "french-leads").await, ["p4", "p5"]);

    // Uploading to a dynamic segment, a bad mode, or the wrong content type is refused.
    let (status, _) = app
        .request(Method::PUT, "/api/v1/segments/french-leads/members")
        .header("content-type", "text/csv")
        .body("p1\n")
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 409);
    let (status, _) = upload("p1\n", "merge").await;
    assert_eq!(status, 400);
    let response = app
        .request(Method::PUT, "/api/v1/segments/trade-fair-leads/members")
        .json(&json!(["p1"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}

async fn a_slow_preview_is_stopped_with_a_clear_error(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.segments.preview_timeout_ms = 1).await;
    // 30,000 contacts with an event each, written by SQL.
    let series = match backend {
        Backend::Postgres => "SELECT g AS n FROM generate_series(1, 30000) AS g",
        Backend::Sqlite => {
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 30000) SELECT n FROM s"
        }
    };
    app.db
        .execute_unprepared(&format!(
            "INSERT INTO contacts (workspace_id, external_id, attributes, email_status, webhook_status, created_at, updated_at) \
             SELECT 1, 'bulk-' || n, '{{}}', 'subscribed', 'subscribed', 0, 0 FROM ({series}) AS q"
        ))
        .await
        .unwrap();
    app.db
        .execute_unprepared(
            "INSERT INTO events (workspace_id, contact_id, kind, occurred_at, properties, received_at) \
             SELECT 1, id, 'view', 1000 * id, '{}', 0 FROM contacts",
        )
        .await
        .unwrap();
    let (status, error) = app
        .post(
            "/api/v1/segments/preview",
            &json!({"rule": "not view.count(3650d) >= 3 and not purchase(3650d) and view.sum(amount, 3650d) < 5"}),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["code"], "query_timeout");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("segments.preview_timeout_ms")
    );
}

/// One problem answers one code and one shape of details, whichever endpoint finds it.
async fn one_problem_answers_one_code_everywhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    people(&app).await;
    let (status, body) = app
        .post(
            "/api/v1/segments",
            &json!({"name": "Germans", "category": "geographic", "rule": "country = \"DE\""}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // The same bad rule, previewed, saved and patched in.
    let rule = json!({"all": [{"attr": "country", "op": "=", "value": "DE"}, {"attr": "shoe_size", "op": ">", "value": 3}]});
    let answers = [
        app.post("/api/v1/segments/preview", &json!({"rule": rule}))
            .await,
        app.post(
            "/api/v1/segments",
            &json!({"name": "x", "category": "value", "rule": rule}),
        )
        .await,
        send(
            &app,
            Method::PATCH,
            "/api/v1/segments/germans",
            Some(json!({"rule": rule})),
        )
        .await,
    ];
    for (status, error) in answers {
        assert_eq!(status, 422, "{error}");
        assert_eq!(error["code"], "invalid_rule", "{error}");
        assert_eq!(
            error["details"]["errors"][0]["path"], "all[1].attr",
            "{error}"
        );
    }

    // A body of the wrong shape names its field the same way on every endpoint.
    let bodies = [
        ("/api/v1/segments", json!({"name": "x", "category": 7})),
        (
            "/api/v1/segments/preview",
            json!({"rule": "age > 1", "sample": "ten"}),
        ),
        ("/api/v1/segments/suggest", json!({"clusters": "many"})),
        (
            "/api/v1/templates/validate",
            json!({"email": {"subjekt": "x"}}),
        ),
    ];
    for (path, body) in bodies {
        let (status, error) = app.post(path, &body).await;
        assert_eq!(status, 422, "{path}: {error}");
        assert_eq!(error["code"], "validation_failed", "{path}: {error}");
        let field = error["details"]["errors"][0]["field"].as_str().unwrap();
        assert!(
            error["message"].as_str().unwrap().starts_with(field),
            "{path}: {error}"
        );
    }
}

on_both_backends!(
    one_problem_answers_one_code_everywhere,
    a_saved_segment_keeps_its_members_and_history,
    events_and_contact_changes_update_memberships_at_once,
    preview_reports_size_value_reach_overlap_and_sample,
    bad_rules_and_requests_are_named,
    static_segments_take_uploaded_lists,
    a_slow_preview_is_stopped_with_a_clear_error
);
