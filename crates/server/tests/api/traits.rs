use crate::app::{TestApp, read};
use clarion_model::{DEFAULT_WORKSPACE, Timestamp};
use clarion_testkit::{Backend, on_both_backends};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;

async fn get_as_viewer(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(&app.viewer_key)
        .send()
        .await
        .unwrap();
    read(response).await
}

async fn a_contacts_traits_are_read_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let now = Timestamp::now().millis();
    let at = |days: i64| Timestamp::from_millis(now - days * DAY);
    let (status, body) = app
        .post(
            "/api/v1/events/batch",
            &json!({"events": [
                // Two lines of one order, a second order and a refund.
                {"external_id": "ada", "kind": "purchase", "occurred_at": at(10), "amount": 40.0,
                 "properties": {"invoice": "A1", "category": "cats"}},
                {"external_id": "ada", "kind": "purchase", "occurred_at": at(10), "amount": 10.0,
                 "properties": {"invoice": "A1", "category": "dogs"}},
                {"external_id": "ada", "kind": "purchase", "occurred_at": at(2), "amount": 25.5,
                 "properties": {"invoice": "A2", "category": "cats"}},
                {"external_id": "ada", "kind": "refund", "occurred_at": at(1), "amount": -5.5,
                 "properties": {"invoice": "C1"}},
                {"external_id": "bob", "kind": "purchase", "occurred_at": at(200), "amount": 3.0,
                 "properties": {"invoice": "B1"}},
                {"external_id": "cleo", "kind": "view", "occurred_at": at(3),
                 "properties": {"category": "birds"}}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 6, "{body}");
    let (status, _) = app
        .post(
            "/api/v1/contacts/batch",
            &json!({"contacts": [{"external_id": "dora"}]}),
        )
        .await;
    assert_eq!(status, 200);

    // Before any computation the batch has written its buyers' traits and interests; with no
    // ranking yet, each buyer scores as a lone buyer would (1 on every measure).
    let asked = Timestamp::now().millis();
    let (status, ada) = get_as_viewer(&app, "/api/v1/contacts/ada/traits").await;
    let answered = Timestamp::now().millis();
    assert_eq!(status, 200, "{ada}");
    let written: Timestamp = serde_json::from_value(ada["computed_at"].clone()).unwrap();
    assert!(written.millis() >= now, "{ada}");
    let purchases = &ada["purchases"];
    assert_eq!(purchases["orders"], 2, "{ada}");
    assert_eq!(purchases["revenue"], 70.0);
    assert_eq!(purchases["clv"], 70.0);
    assert_eq!(purchases["last_purchase_at"], json!(at(2)));
    // Recency counts to the moment of the request.
    let days_to = |t: i64| (t - at(2).millis()) as f64 / DAY as f64;
    let recency = purchases["recency_days"].as_f64().unwrap();
    assert!(
        days_to(asked) <= recency && recency <= days_to(answered),
        "{recency} not within [{}, {}]",
        days_to(asked),
        days_to(answered)
    );
    assert_eq!(
        purchases["rfm"],
        json!({"recency": 1, "frequency": 1, "monetary": 1, "segment": "lost"})
    );
    let categories: Vec<&str> = ada["interests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["category"].as_str().unwrap())
        .collect();
    assert_eq!(categories, ["cats", "dogs"]);
    let (_, dora) = get_as_viewer(&app, "/api/v1/contacts/dora/traits").await;
    assert_eq!(
        dora,
        json!({"external_id": "dora", "computed_at": null, "purchases": null, "interests": []})
    );

    let computed_at = Timestamp::from_millis(now);
    clarion_segment::recompute(
        &app.db,
        DEFAULT_WORKSPACE,
        computed_at,
        &app.settings.traits.computation(),
    )
    .await
    .unwrap();

    let asked = Timestamp::now().millis();
    let (status, ada) = get_as_viewer(&app, "/api/v1/contacts/ada/traits").await;
    let answered = Timestamp::now().millis();
    assert_eq!(status, 200, "{ada}");
    assert_eq!(ada["computed_at"], json!(computed_at));
    let purchases = &ada["purchases"];
    assert_eq!(purchases["orders"], 2);
    assert_eq!(purchases["revenue"], 70.0);
    assert_eq!(purchases["clv"], 70.0);
    assert_eq!(purchases["first_purchase_at"], json!(at(10)));
    assert_eq!(purchases["last_purchase_at"], json!(at(2)));
    let recency = purchases["recency_days"].as_f64().unwrap();
    assert!(
        days_to(asked) <= recency && recency <= days_to(answered),
        "{recency}"
    );
    // Two buyers: ada ranks second of two on every measure, 1 + floor(5 x 1 / 2) = 3.
    assert_eq!(
        purchases["rfm"],
        json!({"recency": 3, "frequency": 3, "monetary": 3, "segment": "need_attention"})
    );
    let interests = ada["interests"].as_array().unwrap();
    let categories: Vec<&str> = interests
        .iter()
        .map(|i| i["category"].as_str().unwrap())
        .collect();
    assert_eq!(categories, ["cats", "dogs"]);
    let total: f64 = interests.iter().map(|i| i["score"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9, "{total}");

    let (_, bob) = get_as_viewer(&app, "/api/v1/contacts/bob/traits").await;
    assert_eq!(bob["purchases"]["rfm"]["segment"], "lost");
    assert_eq!(bob["interests"], json!([]));

    // Without purchases: no purchase traits, but an interest profile from views.
    let (status, cleo) = get_as_viewer(&app, "/api/v1/contacts/cleo/traits").await;
    assert_eq!(status, 200);
    assert_eq!(cleo["purchases"], Value::Null);
    assert_eq!(
        cleo["interests"],
        json!([{"category": "birds", "score": 1.0}])
    );
    let (_, dora) = get_as_viewer(&app, "/api/v1/contacts/dora/traits").await;
    assert_eq!(
        dora,
        json!({"external_id": "dora", "computed_at": computed_at, "purchases": null, "interests": []})
    );
}

async fn unknown_contacts_and_missing_keys_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = get_as_viewer(&app, "/api/v1/contacts/nobody/traits").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found");
    assert!(
        body["message"].as_str().unwrap().contains("\"nobody\""),
        "{body}"
    );

    let response = app
        .client
        .get(app.url("/api/v1/contacts/nobody/traits"))
        .send()
        .await
        .unwrap();
    assert_eq!(read(response).await.0, 401);

    let (_, spec) = app.get("/api/openapi.json").await;
    assert!(
        spec["paths"]["/api/v1/contacts/{external_id}/traits"]["get"].is_object(),
        "the route is documented"
    );
}

on_both_backends!(
    a_contacts_traits_are_read_back,
    unknown_contacts_and_missing_keys_are_refused,
);
