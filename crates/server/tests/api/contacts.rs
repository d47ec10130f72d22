use crate::app::{TestApp, read};
use clarion_testkit::{Backend, on_both_backends};
use serde_json::json;

async fn batch_upsert_creates_then_merges(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app
        .post(
            "/api/v1/contacts/batch",
            &json!({"contacts": [
                {"external_id": "c1", "email": "Ada@Example.COM", "first_name": "Ada", "country": "de",
                 "time_zone": "Europe/Berlin", "locale": "de_DE", "attributes": {"tier": "gold", "age": 36, "tags": ["cats"]}},
                {"external_id": "c2", "phone": "+49 30 1234567", "city": "Hamburg"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created"], 2);
    assert_eq!(body["updated"], 0);
    assert_eq!(body["rejected"], 0);

    // A second batch changes one field, clears another, removes an attribute, keeps the rest.
    let (status, body) = app
        .post(
            "/api/v1/contacts/batch",
            &json!({"contacts": [{"external_id": "c1", "last_name": "Lovelace", "locale": null, "attributes": {"tier": null}}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["updated"], 1);

    let (status, contact) = app.get("/api/v1/contacts/c1").await;
    assert_eq!(status, 200);
    assert_eq!(contact["email"], "Ada@example.com");
    assert_eq!(contact["first_name"], "Ada");
    assert_eq!(contact["last_name"], "Lovelace");
    assert_eq!(contact["locale"], serde_json::Value::Null);
    assert_eq!(contact["country"], "DE");
    assert_eq!(contact["time_zone"], "Europe/Berlin");
    assert_eq!(contact["attributes"], json!({"age": 36, "tags": ["cats"]}));
    assert_eq!(
        contact["subscriptions"],
        json!({"email": "subscribed", "webhook": "subscribed"})
    );
    assert_ne!(contact["created_at"], contact["updated_at"]);

    let (_, contact) = app.get("/api/v1/contacts/c2").await;
    assert_eq!(contact["phone"], "+49301234567");
}

async fn bad_items_are_named_and_the_good_ones_kept(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app
        .post(
            "/api/v1/contacts/batch",
            &json!({"contacts": [
                {"external_id": "ok-1", "email": "ok@example.com"},
                {"external_id": "bad-email", "email": "not-an-address"},
                {"external_id": "bad-zone", "time_zone": "Mars/Olympus"},
                {"external_id": "ok-1", "city": "again"},
                {"external_id": "typo", "emial": "x@example.com"},
                {"email": "no-id@example.com"},
                {"external_id": "ok-2", "attributes": {"age": 40}},
                {"external_id": "bad-type", "attributes": {"age": "forty"}},
                {"external_id": "bad-country", "country": "XX"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created"], 2);
    assert_eq!(body["rejected"], 7);
    let errors = body["errors"].as_array().unwrap();
    let by_index = |i: usize| {
        errors
            .iter()
            .find(|e| e["index"] == i)
            .unwrap_or_else(|| panic!("no error for {i}: {body}"))
    };
    assert_eq!(by_index(1)["field"], "email");
    assert!(
        by_index(1)["message"]
            .as_str()
            .unwrap()
            .contains("not-an-address")
    );
    assert_eq!(by_index(2)["field"], "time_zone");
    assert_eq!(by_index(3)["field"], "external_id");
    assert!(
        by_index(3)["message"]
            .as_str()
            .unwrap()
            .contains("first at index 0")
    );
    assert_eq!(by_index(4)["field"], "emial");
    assert_eq!(by_index(5)["field"], "external_id");
    assert_eq!(by_index(7)["field"], "attributes.age");
    assert!(
        by_index(7)["message"]
            .as_str()
            .unwrap()
            .contains("must be a number")
    );
    assert_eq!(by_index(8)["field"], "country");

    assert_eq!(app.get("/api/v1/contacts/ok-2").await.0, 200);
    assert_eq!(app.get("/api/v1/contacts/bad-email").await.0, 404);
}

async fn atomic_batches_store_all_or_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app
        .post(
            "/api/v1/contacts/batch?atomic=true",
            &json!({"contacts": [{"external_id": "a1"}, {"external_id": "a2", "email": "nope"}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "validation_failed");
    assert_eq!(body["details"]["errors"][0]["index"], 1);
    assert_eq!(app.get("/api/v1/contacts/a1").await.0, 404);

    let (status, _) = app
        .post(
            "/api/v1/contacts/batch?atomic=true",
            &json!({"contacts": [{"external_id": "a1"}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.get("/api/v1/contacts/a1").await.0, 200);
}

async fn malformed_and_oversized_bodies_get_clear_errors(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.ingest.max_batch = 3).await;
    let response = app
        .request(reqwest::Method::POST, "/api/v1/contacts/batch")
        .header("content-type", "application/json")
        .body("{\"contacts\": [ {\"external_id\": \"x\"} ")
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_json");
    assert!(
        body["message"].as_str().unwrap().contains("line 1"),
        "{body}"
    );

    let (status, body) = app
        .post("/api/v1/contacts/batch", &json!({"people": []}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("people"),
        "{body}"
    );

    let many: Vec<_> = (0..4)
        .map(|i| json!({"external_id": format!("c{i}")}))
        .collect();
    let (status, body) = app
        .post("/api/v1/contacts/batch", &json!({"contacts": many}))
        .await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "batch_too_large");

    let response = app
        .request(reqwest::Method::POST, "/api/v1/contacts/batch")
        .header("content-type", "text/csv")
        .body("external_id\nc1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(read(response).await.0, 415);
}

async fn patch_and_delete_a_contact(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.post(
        "/api/v1/contacts/batch",
        &json!({"contacts": [{"external_id": "p1", "email": "p1@example.com", "attributes": {"score": 3}}]}),
    )
    .await;
    let response = app
        .request(reqwest::Method::PATCH, "/api/v1/contacts/p1")
        .json(&json!({"city": "Köln", "subscriptions": {"email": "unsubscribed"}, "attributes": {"score": 4}}))
        .send()
        .await
        .unwrap();
    let (status, contact) = read(response).await;
    assert_eq!(status, 200, "{contact}");
    assert_eq!(contact["city"], "Köln");
    assert_eq!(contact["subscriptions"]["email"], "unsubscribed");
    assert_eq!(contact["attributes"]["score"], 4);
    assert_eq!(contact["email"], "p1@example.com");

    let response = app
        .request(reqwest::Method::PATCH, "/api/v1/contacts/p1")
        .json(&json!({"attributes": {"score": "high"}}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 422);
    assert_eq!(body["details"]["errors"][0]["field"], "attributes.score");

    let response = app
        .request(reqwest::Method::PATCH, "/api/v1/contacts/nobody")
        .json(&json!({"city": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(read(response).await.0, 404);

    app.post(
        "/api/v1/events/batch",
        &json!({"events": [{"external_id": "p1", "kind": "purchase", "amount": 10.0, "currency": "EUR"}]}),
    )
    .await;
    let response = app
        .request(reqwest::Method::DELETE, "/api/v1/contacts/p1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.get("/api/v1/contacts/p1").await.0, 404);
    assert_eq!(
        clarion_contacts::events::count(&app.db, clarion_model::DEFAULT_WORKSPACE)
            .await
            .unwrap(),
        0,
        "the contact's events go with it"
    );
    let response = app
        .request(reqwest::Method::DELETE, "/api/v1/contacts/p1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

async fn listing_pages_with_a_cursor_and_filters_by_attribute(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let contacts: Vec<_> = (0..25)
        .map(|i| {
            json!({
                "external_id": format!("l{i:02}"),
                "email": format!("l{i}@{}", if i % 2 == 0 { "even.example" } else { "odd.example" }),
                "country": if i < 10 { "DE" } else { "FR" },
                "attributes": {"tier": if i % 5 == 0 { "gold" } else { "silver" }, "score": i, "vip": i % 3 == 0,
                               "tags": if i % 4 == 0 { json!(["cats", "dogs"]) } else { json!(["fish"]) }}
            })
        })
        .collect();
    assert_eq!(
        app.post("/api/v1/contacts/batch", &json!({"contacts": contacts}))
            .await
            .0,
        200
    );

    let mut seen = Vec::new();
    let mut path = "/api/v1/contacts?limit=10".to_string();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for contact in page["contacts"].as_array().unwrap() {
            seen.push(contact["external_id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/contacts?limit=10&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("l{i:02}")).collect();
    assert_eq!(seen, expected, "every contact once, in order");

    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["external_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, page) = app.get("/api/v1/contacts?attr.tier=gold&country=FR").await;
    assert_eq!(ids(&page), ["l10", "l15", "l20"]);
    let (_, page) = app.get("/api/v1/contacts?attr.score=7").await;
    assert_eq!(ids(&page), ["l07"]);
    let (_, page) = app
        .get("/api/v1/contacts?attr.vip=true&email_domain=even.example")
        .await;
    assert_eq!(ids(&page), ["l00", "l06", "l12", "l18", "l24"]);
    let (_, page) = app.get("/api/v1/contacts?attr.tags=cats&country=DE").await;
    assert_eq!(ids(&page), ["l00", "l04", "l08"]);

    let (status, body) = app.get("/api/v1/contacts?attr.score=high").await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("attr.score"));
    let (status, body) = app.get("/api/v1/contacts?attr.nothing=1").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = app.get("/api/v1/contacts?colour=red").await;
    assert_eq!(status, 400);
    let (status, _) = app.get("/api/v1/contacts?cursor=@@@").await;
    assert_eq!(status, 400);
    let (status, _) = app.get("/api/v1/contacts?limit=5000").await;
    assert_eq!(status, 400);
}

on_both_backends!(
    batch_upsert_creates_then_merges,
    bad_items_are_named_and_the_good_ones_kept,
    atomic_batches_store_all_or_nothing,
    malformed_and_oversized_bodies_get_clear_errors,
    patch_and_delete_a_contact,
    listing_pages_with_a_cursor_and_filters_by_attribute
);
