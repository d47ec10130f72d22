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

on_both_backends!(keys_are_shown_once_and_open_the_api_of_a_served_instance);

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
