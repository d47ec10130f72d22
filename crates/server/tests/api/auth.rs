use crate::app::{TestApp, read};
use clarion_testkit::{Backend, on_both_backends};
use serde_json::json;

async fn requests_without_a_valid_key_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .get(app.url("/api/v1/contacts"))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthorized");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );

    let response = app
        .client
        .get(app.url("/api/v1/contacts"))
        .bearer_auth("clk_not-a-real-key")
        .send()
        .await
        .unwrap();
    assert_eq!(read(response).await.0, 401);
}

async fn roles_limit_what_a_key_may_do(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let batch = json!({"contacts": [{"external_id": "c1"}]});
    let response = app
        .client
        .post(app.url("/api/v1/contacts/batch"))
        .bearer_auth(&app.viewer_key)
        .json(&batch)
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "forbidden");

    // The viewer may read what the marketer wrote.
    assert_eq!(app.post("/api/v1/contacts/batch", &batch).await.0, 200);
    let response = app
        .client
        .get(app.url("/api/v1/contacts/c1"))
        .bearer_auth(&app.viewer_key)
        .send()
        .await
        .unwrap();
    assert_eq!(read(response).await.0, 200);
}

async fn revoked_keys_stop_working(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let prefix: String = app.viewer_key.chars().take(12).collect();
    assert_eq!(
        clarion_server::store::keys::revoke(&app.db, clarion_model::DEFAULT_WORKSPACE, &prefix)
            .await
            .unwrap(),
        1
    );
    let response = app
        .client
        .get(app.url("/api/v1/contacts"))
        .bearer_auth(&app.viewer_key)
        .send()
        .await
        .unwrap();
    assert_eq!(read(response).await.0, 401);
}

on_both_backends!(
    requests_without_a_valid_key_are_refused,
    roles_limit_what_a_key_may_do,
    revoked_keys_stop_working
);
