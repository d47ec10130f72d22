//! Marketing spend and the CAC report through the API: roles, refusals that name the field
//! and store nothing, paging, CSV.

use clarion_testkit::{Backend, on_both_backends};
use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::app::{TestApp, read};
use crate::campaigns::{contacts, create, segment};

async fn send(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<&Json>,
) -> (u16, Json) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(body);
    }
    read(request.send().await.unwrap()).await
}

async fn spend_is_recorded_and_reported(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let marketer = app.marketer_key.clone();
    let viewer = app.viewer_key.clone();
    contacts(
        &app,
        json!([{"external_id": "ada", "email": "ada@example.com"}]),
    )
    .await;
    segment(&app, "buyers", &["ada"]).await;
    let campaign = create(
        &app,
        &json!({
            "name": "Spring",
            "goal": { "event": "purchase", "window_hours": 48 },
            "channels": ["email"],
            "targets": [{ "segment": "buyers", "variants": [{ "name": "A", "email": {
                "subject": "Hi", "from": "Shop <news@shop.example>", "html": "<p>Hi</p>" } }] }],
        }),
    )
    .await;
    let campaign_id = campaign["id"].as_i64().unwrap();
    let good = json!({"amount": "1200.00", "currency": "EUR", "from": "2026-03-01T00:00:00Z",
        "to": "2026-04-01T00:00:00Z", "campaign_id": campaign_id, "label": "agency"});

    // Viewers read, marketers write.
    let (status, body) = send(&app, &viewer, Method::POST, "/api/v1/spend", Some(&good)).await;
    assert_eq!(status, 403, "{body}");

    // Refusals name the field and store nothing.
    let with = |field: &str, value: Json| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    for (body, field) in [
        (with("amount", json!(-10)), "amount"),
        (with("amount", json!("12.345")), "amount"),
        (with("currency", json!("ABC")), "currency"),
        (with("to", json!("2026-02-01T00:00:00Z")), "to"),
        (with("campaign_id", json!(campaign_id + 100)), "campaign_id"),
        (with("channel", json!("email")), "channel"),
        (with("channel", json!("sms")), "channel"),
    ] {
        let (status, answer) =
            send(&app, &marketer, Method::POST, "/api/v1/spend", Some(&body)).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        assert_eq!(answer["details"]["errors"][0]["field"], field, "{answer}");
    }
    let (status, page) = send(&app, &viewer, Method::GET, "/api/v1/spend", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["spend"], json!([]));

    let (status, created) = send(&app, &marketer, Method::POST, "/api/v1/spend", Some(&good)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["amount"], "1200.00");
    let id = created["id"].as_i64().unwrap();
    let channel_spend = json!({"amount": 300, "currency": "EUR", "from": "2026-03-01T00:00:00Z",
        "to": "2026-03-31T00:00:00Z", "channel": "email"});
    let (status, email) = send(
        &app,
        &marketer,
        Method::POST,
        "/api/v1/spend",
        Some(&channel_spend),
    )
    .await;
    assert_eq!(status, 201, "{email}");
    assert_eq!(email["amount"], "300.00");

    // Paging and filters.
    let (status, first) = send(&app, &viewer, Method::GET, "/api/v1/spend?limit=1", None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["spend"][0]["id"], id);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = send(
        &app,
        &viewer,
        Method::GET,
        &format!("/api/v1/spend?limit=1&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(second["spend"][0]["id"], email["id"]);
    let (_, of_campaign) = send(
        &app,
        &viewer,
        Method::GET,
        &format!("/api/v1/spend?campaign_id={campaign_id}"),
        None,
    )
    .await;
    assert_eq!(of_campaign["spend"].as_array().unwrap().len(), 1);
    let (_, by_channel) = send(
        &app,
        &viewer,
        Method::GET,
        "/api/v1/spend?channel=email&currency=EUR",
        None,
    )
    .await;
    assert_eq!(by_channel["spend"][0]["id"], email["id"]);

    // A customer whose first purchase is in March, never sent anything: new, not attributed.
    let (status, events) = app
        .post("/api/v1/events/batch", &json!({"events": [
            {"external_id": "ada", "kind": "purchase", "occurred_at": "2026-03-10T12:00:00Z", "amount": 40.0}]}))
        .await;
    assert_eq!(status, 200, "{events}");

    let path = "/api/v1/kpi/cac?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z&by=campaign";
    let (status, report) = send(&app, &viewer, Method::GET, path, None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["currency"], "EUR");
    assert_eq!(report["new_customers"], 1);
    assert_eq!(report["attributed_new_customers"], 0);
    assert_eq!(
        report["cac"],
        Json::Null,
        "no attributed customer: null, not 0"
    );
    assert!(
        (report["spend"].as_f64().unwrap() - 1500.0).abs() < 1e-9,
        "{report}"
    );
    assert!(
        (report["blended_cac"].as_f64().unwrap() - 1500.0).abs() < 1e-9,
        "{report}"
    );
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups[0]["name"], "Spring");
    assert_eq!(groups[0]["cac"], Json::Null);
    assert_eq!(
        groups[1]["name"],
        Json::Null,
        "the channel's spend is unallocated by campaign"
    );

    let response = app
        .client
        .get(app.url(&format!("{path}&format=csv")))
        .bearer_auth(&viewer)
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
    assert!(csv.starts_with("scope,id,name,currency,spend,new_customers,cac\ntotal,,,EUR,1500,0,\nblended,,,EUR,1500,1,1500\n"), "{csv}");

    // Another currency in the period: the report needs one named.
    let usd = json!({"amount": "10", "currency": "USD", "from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z", "channel": "webhook"});
    let (status, _) = send(&app, &marketer, Method::POST, "/api/v1/spend", Some(&usd)).await;
    assert_eq!(status, 201);
    let (status, refused) = send(&app, &viewer, Method::GET, path, None).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["details"]["errors"][0]["field"], "currency");
    let (status, refused) = send(
        &app,
        &viewer,
        Method::GET,
        "/api/v1/kpi/cac?from=2026-04-01T00:00:00Z&to=2026-03-01T00:00:00Z",
        None,
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["details"]["errors"][0]["field"], "to");

    // Update, then delete.
    let (status, answer) = send(
        &app,
        &viewer,
        Method::PUT,
        &format!("/api/v1/spend/{id}"),
        Some(&good),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = send(
        &app,
        &marketer,
        Method::PUT,
        &format!("/api/v1/spend/{id}"),
        Some(&with("amount", json!(0))),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    let (_, unchanged) = send(
        &app,
        &viewer,
        Method::GET,
        &format!("/api/v1/spend/{id}"),
        None,
    )
    .await;
    assert_eq!(unchanged, created);
    let (status, updated) = send(
        &app,
        &marketer,
        Method::PUT,
        &format!("/api/v1/spend/{id}"),
        Some(&with("amount", json!("99.5"))),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["amount"], "99.50");
    let (status, _) = send(
        &app,
        &viewer,
        Method::DELETE,
        &format!("/api/v1/spend/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = send(
        &app,
        &marketer,
        Method::DELETE,
        &format!("/api/v1/spend/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(
        &app,
        &viewer,
        Method::GET,
        &format!("/api/v1/spend/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(
        &app,
        &marketer,
        Method::PUT,
        &format!("/api/v1/spend/{id}"),
        Some(&good),
    )
    .await;
    assert_eq!(status, 404);
}

on_both_backends!(spend_is_recorded_and_reported);
