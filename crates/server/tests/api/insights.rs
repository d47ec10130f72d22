//! `POST /api/v1/crosstab` and `POST /api/v1/segments/suggest` as a client sees them: roles,
//! answers, and bad input named by field.

use crate::app::{TestApp, read};
use clarion_model::DEFAULT_WORKSPACE;
use clarion_testkit::{Backend, on_both_backends};
use sea_orm::{ConnectionTrait, sea_query::Query};
use serde_json::{Value, json};

async fn post_as(app: &TestApp, key: Option<&str>, path: &str, body: &Value) -> (u16, Value) {
    let mut request = app.client.post(app.url(path)).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    read(request.send().await.unwrap()).await
}

async fn contacts(app: &TestApp) {
    let (status, body) = app
        .post(
            "/api/v1/contacts/batch",
            &json!({"contacts": [
                {"external_id": "a", "country": "DE", "attributes": {"gender": "f"}},
                {"external_id": "b", "country": "DE", "attributes": {"gender": "m"}},
                {"external_id": "c", "country": "AT", "attributes": {"gender": "f"}},
                {"external_id": "d"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .post(
            "/api/v1/events/batch",
            &json!({"events": [
                {"external_id": "a", "kind": "purchase", "amount": 10.0},
                {"external_id": "c", "kind": "purchase", "amount": 20.0}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn a_viewer_gets_a_crosstab(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    contacts(&app).await;
    let request = json!({"rows": {"attr": "gender"}, "columns": {"rule": "purchase(90d)"}});

    let (status, body) = post_as(&app, None, "/api/v1/crosstab", &request).await;
    assert_eq!(status, 401, "{body}");

    let (status, body) = post_as(&app, Some(&app.viewer_key), "/api/v1/crosstab", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!(["f", "m", "(none)"]));
    assert_eq!(body["columns"], json!(["yes", "no"]));
    assert_eq!(body["cells"][0][0]["count"], 2, "{body}");
    assert_eq!(body["cells"][0][1]["count"], 0);
    assert_eq!(body["cells"][1][1]["count"], 1);
    assert_eq!(body["cells"][2][1]["count"], 1);
    assert_eq!(body["row_totals"], json!([2, 1, 1]));
    assert_eq!(body["column_totals"], json!([2, 2]));
    assert_eq!(body["total"], 4);
    assert_eq!(body["cells"][0][0]["row_pct"], 100.0);
    assert_eq!(body["cells"][0][0]["column_pct"], 100.0);
    assert_eq!(body["cells"][0][0]["total_pct"], 50.0);

    // With a filter in the text form.
    let filtered = json!({"rows": {"attr": "country"}, "columns": {"attr": "gender"},
                          "filter": "country exists"});
    let (status, body) = post_as(&app, Some(&app.viewer_key), "/api/v1/crosstab", &filtered).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!(["DE", "AT", "(none)"]));
    assert_eq!(body["total"], 3);
}

async fn bad_crosstab_requests_name_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    contacts(&app).await;
    let cases = [
        (
            json!({"rows": {"attr": "shoe_size"}, "columns": {"attr": "country"}}),
            "rows.attr",
        ),
        (
            json!({"rows": {"attr": "country"}, "columns": {"segment": "missing"}}),
            "columns.segment",
        ),
        (
            json!({"rows": {"attr": "country"}, "columns": {"trait": "revenue", "edges": [5, 1]}}),
            "columns.edges[1]",
        ),
        (json!({"rows": {"attr": "country"}}), "columns"),
        (json!([1, 2]), ""),
    ];
    for (request, field) in cases {
        let (status, body) = app.post("/api/v1/crosstab", &request).await;
        assert_eq!(status, 422, "{request}: {body}");
        assert_eq!(body["code"], "validation_failed");
        assert_eq!(body["details"]["errors"][0]["field"], field, "{body}");
        if !field.is_empty() {
            assert!(body["message"].as_str().unwrap().contains(field), "{body}");
        }
    }

    // A bad rule inside the request answers as a bad rule does everywhere: invalid_rule,
    // with the path of its node.
    for (request, path) in [
        (
            json!({"rows": {"attr": "country"},
                   "columns": {"rule": {"event": "purchase", "count": {"op": ">=", "value": 2}}}}),
            "columns.rule.within",
        ),
        (
            json!({"rows": {"attr": "country"}, "columns": {"rule": "purchase(90d) and"}}),
            "columns.rule",
        ),
        (
            json!({"rows": {"attr": "country"}, "columns": {"attr": "gender"},
                   "filter": {"attr": "shoe_size", "op": "=", "value": 42}}),
            "filter.attr",
        ),
    ] {
        let (status, body) = app.post("/api/v1/crosstab", &request).await;
        assert_eq!(status, 422, "{request}: {body}");
        assert_eq!(body["code"], "invalid_rule", "{body}");
        assert_eq!(body["details"]["errors"][0]["path"], path, "{body}");
    }

    let response = app
        .client
        .post(app.url("/api/v1/crosstab"))
        .bearer_auth(&app.viewer_key)
        .header("content-type", "application/json")
        .body("{\"rows\": ")
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_json");
}

/// Two customer groups of 20: recent big-spending kitchen fans and lapsed garden fans, with
/// traits written directly (as the trait computation would).
pub async fn customers(app: &TestApp) {
    let items: Vec<Value> = (0..40)
        .map(|i| json!({"external_id": format!("k{i:02}")}))
        .collect();
    let (status, _) = app
        .post("/api/v1/contacts/batch", &json!({"contacts": items}))
        .await;
    assert_eq!(status, 200);
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
    for row in rows {
        let id: i64 = row.try_get("", "id").unwrap();
        let external: String = row.try_get("", "external_id").unwrap();
        let n: usize = external[1..].parse().unwrap();
        let kitchen = n.is_multiple_of(2);
        let score: i64 =
            if kitchen { 5 } else { 1 } - n.is_multiple_of(3) as i64 * if kitchen { 1 } else { -1 };
        let insert = Query::insert()
            .into_table("contact_traits")
            .columns([
                "contact_id",
                "workspace_id",
                "orders",
                "revenue",
                "first_purchase_at",
                "last_purchase_at",
                "rfm_recency",
                "rfm_frequency",
                "rfm_monetary",
                "rfm_segment",
                "clv",
                "computed_at",
            ])
            .values_panic([
                id.into(),
                DEFAULT_WORKSPACE.0.into(),
                1_i64.into(),
                1.0_f64.into(),
                0_i64.into(),
                0_i64.into(),
                score.into(),
                score.into(),
                score.into(),
                "loyal".into(),
                0.0_f64.into(),
                0_i64.into(),
            ])
            .to_owned();
        app.db.execute(&insert).await.unwrap();
        let (main, other) = if kitchen {
            ("kitchen", "garden")
        } else {
            ("garden", "kitchen")
        };
        let share = 0.82 + (n % 5) as f64 * 0.03;
        for (category, share) in [(main, share), (other, 1.0 - share)] {
            let insert = Query::insert()
                .into_table("contact_interests")
                .columns(["contact_id", "workspace_id", "category", "score"])
                .values_panic([
                    id.into(),
                    DEFAULT_WORKSPACE.0.into(),
                    category.into(),
                    share.into(),
                ])
                .to_owned();
            app.db.execute(&insert).await.unwrap();
        }
    }
}

async fn a_marketer_gets_suggestions(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    // Before traits are computed, the answer says so.
    let (status, body) = app.post("/api/v1/segments/suggest", &json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("compute traits"),
        "{body}"
    );

    customers(&app).await;
    let request = json!({"clusters": 2, "seed": 3});
    let (status, body) = post_as(
        &app,
        Some(&app.viewer_key),
        "/api/v1/segments/suggest",
        &request,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post_as(&app, None, "/api/v1/segments/suggest", &request).await;
    assert_eq!(status, 401, "{body}");

    let (status, body) = app.post("/api/v1/segments/suggest", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["base"], 40);
    let suggestions = body["suggestions"].as_array().unwrap();
    assert_eq!(suggestions.len(), 2);
    let mut seen = Vec::new();
    for s in suggestions {
        assert_eq!(s["size"], 20, "{s}");
        assert_eq!(s["share_pct"], 50.0);
        let description = s["description"].as_str().unwrap();
        let category = if description.contains("interest in kitchen") {
            "kitchen"
        } else {
            "garden"
        };
        seen.push(category);
        assert!(s["rule"].is_object(), "{s}");
        assert_eq!(s["rule_precision"], 1.0, "{s}");
        assert_eq!(s["rule_recall"], 1.0, "{s}");
        assert!(!s["rule_text"].as_str().unwrap().is_empty(), "{s}");
        assert!(["behavioural", "value"].contains(&s["category"].as_str().unwrap()));
    }
    seen.sort();
    assert_eq!(seen, ["garden", "kitchen"]);

    // An empty body takes the defaults; here 4 groups of 40 customers.
    let response = app
        .request(reqwest::Method::POST, "/api/v1/segments/suggest")
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    let total: u64 = body["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["size"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 40);
}

async fn bad_suggest_options_name_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    customers(&app).await;
    for (request, field) in [
        (json!({"clusters": 99}), "clusters"),
        (json!({"clusters": "many"}), "clusters"),
        (json!({"sample": 0}), "sample"),
        (json!({"categories": 31}), "categories"),
        (json!({"k": 3}), "k"),
    ] {
        let (status, body) = app.post("/api/v1/segments/suggest", &request).await;
        assert_eq!(status, 422, "{request}: {body}");
        assert_eq!(body["code"], "validation_failed");
        assert!(
            body["message"].as_str().unwrap().contains(field),
            "{request}: {body}"
        );
    }
    let response = app
        .request(reqwest::Method::POST, "/api/v1/segments/suggest")
        .header("content-type", "application/json")
        .body("{\"clusters\": ")
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_json");
}

on_both_backends!(
    a_viewer_gets_a_crosstab,
    bad_crosstab_requests_name_the_field,
    a_marketer_gets_suggestions,
    bad_suggest_options_name_the_field,
);
