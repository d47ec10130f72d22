use crate::app::TestApp;
use clarion_testkit::{Backend, on_both_backends};
use serde_json::json;

async fn events_are_stored_with_their_contact_and_listed_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app
        .post(
            "/api/v1/events/batch",
            &json!({"events": [
                {"external_id": "e1", "kind": "purchase", "occurred_at": "2026-01-02T10:00:00+01:00",
                 "amount": 49.9, "currency": "EUR", "properties": {"category": "cats", "sku": "A1"}},
                {"external_id": "e1", "kind": "page_view", "occurred_at": "2026-01-03T09:00:00Z"},
                {"external_id": "e1", "kind": "purchase", "occurred_at": "2026-01-04T09:00:00Z", "amount": 5}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 3);
    assert_eq!(body["rejected"], 0);

    // The unknown contact was created.
    assert_eq!(app.get("/api/v1/contacts/e1").await.0, 200);

    let (status, page) = app.get("/api/v1/contacts/e1/events").await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["occurred_at"], "2026-01-04T09:00:00.000Z");
    assert_eq!(events[2]["occurred_at"], "2026-01-02T09:00:00.000Z");
    assert_eq!(events[2]["amount"], 49.9);
    assert_eq!(events[2]["currency"], "EUR");
    assert_eq!(
        events[2]["properties"],
        json!({"category": "cats", "sku": "A1"})
    );

    let (_, page) = app
        .get("/api/v1/contacts/e1/events?kind=purchase&limit=1")
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["occurred_at"], "2026-01-04T09:00:00.000Z");
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, page) = app
        .get(&format!(
            "/api/v1/contacts/e1/events?kind=purchase&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(page["events"][0]["occurred_at"], "2026-01-02T09:00:00.000Z");

    let (_, page) = app
        .get("/api/v1/contacts/e1/events?since=2026-01-03T00:00:00Z&until=2026-01-04T00:00:00Z")
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert_eq!(page["events"][0]["kind"], "page_view");

    assert_eq!(app.get("/api/v1/contacts/nobody/events").await.0, 404);
    assert_eq!(
        app.get("/api/v1/contacts/e1/events?since=yesterday")
            .await
            .0,
        400
    );
}

async fn an_idempotency_key_is_stored_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let event = json!({"external_id": "k1", "kind": "purchase", "amount": 1.5, "currency": "EUR", "idempotency_key": "order-1"});
    let (status, body) = app
        .post(
            "/api/v1/events/batch",
            &json!({"events": [event.clone(), event.clone()]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["accepted"], 1);
    assert_eq!(
        body["duplicates"],
        json!([{"index": 1, "idempotency_key": "order-1"}])
    );

    let (status, body) = app
        .post("/api/v1/events/batch", &json!({"events": [event]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["duplicates"][0]["index"], 0);

    let (_, page) = app.get("/api/v1/contacts/k1/events").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
}

async fn bad_events_are_named_and_the_rest_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app
        .post(
            "/api/v1/events/batch",
            &json!({"events": [
                {"external_id": "b1", "kind": "purchase"},
                {"external_id": "b1", "kind": "Purchase"},
                {"external_id": "b1", "kind": "purchase", "occurred_at": "last tuesday"},
                {"external_id": "b1", "kind": "purchase", "amount": 3, "currency": "euro"},
                {"external_id": "b1", "kind": "purchase", "currency": "EUR"},
                {"external_id": "b1", "kind": "purchase", "occurred_at": "2999-01-01T00:00:00Z"},
                {"external_id": "b1"},
                {"external_id": "b1", "kind": "purchase", "amount": "12"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"], 7);
    let fields: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            (1, "kind".to_string()),
            (2, "occurred_at".to_string()),
            (3, "currency".to_string()),
            (4, "currency".to_string()),
            (5, "occurred_at".to_string()),
            (6, "kind".to_string()),
            (7, "amount".to_string()),
        ]
    );
}

async fn unknown_contacts_can_be_rejected_instead_of_created(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.ingest.create_unknown_contacts = false).await;
    app.post(
        "/api/v1/contacts/batch",
        &json!({"contacts": [{"external_id": "known"}]}),
    )
    .await;
    let (status, body) = app
        .post(
            "/api/v1/events/batch",
            &json!({"events": [{"external_id": "known", "kind": "login"}, {"external_id": "stranger", "kind": "login"}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["errors"][0]["index"], 1);
    assert_eq!(body["errors"][0]["field"], "external_id");
    assert_eq!(app.get("/api/v1/contacts/stranger").await.0, 404);

    let (status, body) = app
        .post(
            "/api/v1/events/batch?atomic=true",
            &json!({"events": [{"external_id": "known", "kind": "login"}, {"external_id": "stranger", "kind": "login"}]}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["details"]["errors"][0]["index"], 1);
    let (_, page) = app.get("/api/v1/contacts/known/events").await;
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        1,
        "the atomic batch stored nothing"
    );
}

async fn a_full_batch_of_ten_thousand_is_taken(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let events: Vec<_> = (0..10_000)
        .map(|i| json!({"external_id": format!("bulk-{}", i % 500), "kind": "page_view", "idempotency_key": format!("bulk-{i}")}))
        .collect();
    let (status, body) = app
        .post("/api/v1/events/batch", &json!({"events": events}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["accepted"], 10_000);
    assert_eq!(
        clarion_contacts::events::count(&app.db, clarion_model::DEFAULT_WORKSPACE)
            .await
            .unwrap(),
        10_000
    );
    let (_, page) = app.get("/api/v1/contacts?limit=1000").await;
    assert_eq!(page["contacts"].as_array().unwrap().len(), 500);
}

async fn concurrent_batches_all_land(backend: Backend) {
    let app = std::sync::Arc::new(TestApp::spawn(backend).await);
    let mut requests = Vec::new();
    for batch in 0..6 {
        let app = app.clone();
        requests.push(tokio::spawn(async move {
            // Overlapping contacts, so batches create and look up the same ones at once.
            let events: Vec<_> = (0..500)
                .map(|i| json!({"external_id": format!("c-{}", (batch * 100 + i) % 700), "kind": "page_view"}))
                .collect();
            app.post("/api/v1/events/batch", &json!({"events": events})).await
        }));
    }
    for request in requests {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], 500);
    }
    assert_eq!(
        clarion_contacts::events::count(&app.db, clarion_model::DEFAULT_WORKSPACE)
            .await
            .unwrap(),
        3_000
    );
}

on_both_backends!(
    concurrent_batches_all_land,
    events_are_stored_with_their_contact_and_listed_newest_first,
    an_idempotency_key_is_stored_once,
    bad_events_are_named_and_the_rest_stored,
    unknown_contacts_can_be_rejected_instead_of_created,
    a_full_batch_of_ten_thousand_is_taken
);
