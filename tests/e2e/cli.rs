use std::time::Duration;

use clarion_e2e::{clarion, run, serve};
use clarion_testkit::{Backend, TestDb, on_both_backends};

async fn keys_are_shown_once_and_open_the_api_of_a_served_instance(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (output, _, stderr) = run(clarion(&db).arg("migrate"));
    assert!(output.status.success(), "{stderr}");

    let (output, key, stderr) =
        run(clarion(&db).args(["keys", "create", "--role", "viewer", "--name", "dashboard"]));
    assert!(output.status.success(), "{stderr}");
    let key = key.trim().to_string();
    assert!(key.starts_with("clk_"), "{key}");
    assert!(stderr.contains("shown only this once"));

    let (output, listing, _) = run(clarion(&db).args(["keys", "list"]));
    assert!(output.status.success());
    assert!(listing.contains("dashboard") && listing.contains("viewer"));
    assert!(!listing.contains(&key), "the secret is never listed");

    let (output, _, stderr) = run(clarion(&db).args(["keys", "create", "--role", "owner"]));
    assert!(!output.status.success());
    assert!(stderr.contains("owner"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let served = serve(&db, dir.path(), &[]);
    let client = crate::http_client()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = served.base_url();
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let listed = client
        .get(format!("{base}/api/v1/contacts"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let refused = client
        .get(format!("{base}/api/v1/contacts"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let (output, _, _) = run(clarion(&db).args(["keys", "revoke", &key[..12]]));
    assert!(output.status.success());
    let revoked = client
        .get(format!("{base}/api/v1/contacts"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);
}

/// A provider's bounce is answered once queued; the worker role of `clarion serve` writes it:
/// the contact becomes bounced and the address is suppressed, and a replay is refused.
async fn a_served_instance_writes_the_bounces_providers_report(backend: Backend) {
    use hmac::Mac as _;
    let db = TestDb::new(backend).await;
    let (output, _, stderr) = run(clarion(&db).arg("migrate"));
    assert!(output.status.success(), "{stderr}");
    let (output, key, stderr) = run(clarion(&db).args(["keys", "create", "--role", "admin"]));
    assert!(output.status.success(), "{stderr}");
    let key = key.trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let signing_key = "e2e-mailgun-signing-key";
    let served = serve(
        &db,
        dir.path(),
        &[("CLARION__PROVIDERS__MAILGUN__SIGNING_KEY", signing_key)],
    );
    let client = crate::http_client()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = served.base_url();
    let created = client
        .post(format!("{base}/api/v1/contacts/batch"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"contacts": [{"external_id": "gone", "email": "gone@customer.example"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200, "{:?}", created.text().await);

    let timestamp = (clarion_model::Timestamp::now().millis() / 1000).to_string();
    let token = "e2e-token-1";
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(signing_key.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    let body = serde_json::json!({
        "signature": {"timestamp": timestamp, "token": token,
                      "signature": hex::encode(mac.finalize().into_bytes())},
        "event-data": {"event": "failed", "severity": "permanent", "id": "e2e-event-1",
                       "timestamp": 1_764_700_000.0, "recipient": "gone@customer.example",
                       "delivery-status": {"code": 550, "message": "550 5.1.1 no such user"}},
    });
    let post = || {
        client
            .post(format!("{base}/webhooks/mailgun"))
            .json(&body)
            .send()
    };
    let answer = post().await.unwrap();
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(answer["queued"], 1, "{answer}");

    let get = async |path: &str| -> serde_json::Value {
        let response = client
            .get(format!("{base}{path}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    };
    // The worker role writes it within moments.
    let mut status = serde_json::Value::Null;
    for _ in 0..100 {
        status = get("/api/v1/contacts/gone").await["subscriptions"]["email"].clone();
        if status == "bounced" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "bounced");
    let listed = get("/api/v1/suppressions/email/gone@customer.example").await;
    assert_eq!(listed["source"], "hard_bounce", "{listed}");
    let replay = post().await.unwrap();
    assert_eq!(replay.status(), 409);
}

on_both_backends!(
    keys_are_shown_once_and_open_the_api_of_a_served_instance,
    a_served_instance_writes_the_bounces_providers_report,
);

#[test]
fn a_bad_configuration_stops_the_binary_with_the_key_and_the_reason() {
    let mut command = std::process::Command::new(clarion_e2e::clarion_binary());
    command
        .arg("migrate")
        .env("CLARION__SERVER__PORT", "eighty");
    let (output, _, stderr) = run(&mut command);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("server.port"), "{stderr}");

    let mut command = std::process::Command::new(clarion_e2e::clarion_binary());
    command
        .arg("migrate")
        .env("CLARION__DATABASE__URL", "mysql://user:hunter2@db/x");
    let (output, _, stderr) = run(&mut command);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("database.url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "secrets never print: {stderr}");
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["import", "contacts", "--help"],
        vec!["import", "events", "--help"],
        vec!["keys", "create", "--help"],
        vec!["bench", "ingest", "--help"],
        vec!["traits", "recompute", "--help"],
    ] {
        let mut command = std::process::Command::new(clarion_e2e::clarion_binary());
        let (output, stdout, _) = run(command.args(&args));
        assert!(output.status.success(), "{args:?}");
        assert!(stdout.contains("Usage:"), "{args:?}: {stdout}");
    }
}
