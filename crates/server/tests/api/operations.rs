use crate::app::{TestApp, read};
use clarion_testkit::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics_answer() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (status, body) = read(app.client.get(app.url("/health")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");

    let (status, body) = read(app.client.get(app.url("/ready")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["redis"], "ok");

    // A request to count, then the counter shows it.
    app.get("/api/v1/contacts").await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"clarion_http_requests_total{method="GET",route="/api/v1/contacts",status="200"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_says_which_dependency_is_down() {
    let app = TestApp::spawn_with(Backend::Sqlite, |settings| {
        // Nothing listens on port 1.
        settings.redis.url = secrecy::SecretString::from("redis://127.0.0.1:1".to_string());
    })
    .await;
    let (status, body) = read(app.client.get(app.url("/ready")).send().await.unwrap()).await;
    assert_eq!(status, 503);
    assert_eq!(body["database"], "ok");
    assert_ne!(body["redis"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_endpoint_and_the_reference_page_is_self_contained() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (status, spec) = read(
        app.client
            .get(app.url("/api/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/api/v1/contacts/batch",
        "/api/v1/contacts",
        "/api/v1/contacts/{external_id}",
        "/api/v1/contacts/{external_id}/events",
        "/api/v1/events/batch",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} is missing from the spec");
    }
    assert!(spec["components"]["securitySchemes"]["api_key"].is_object());

    let page = app
        .client
        .get(app.url("/api/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"src="/api/docs/redoc.standalone.js""#));
    assert!(
        !page.contains("https://"),
        "the page must not load anything from the network"
    );
    let script = app
        .client
        .get(app.url("/api/docs/redoc.standalone.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.bytes().await.unwrap().len() > 500_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_endpoints_answer_json_404() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (status, body) = app.get("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
}
