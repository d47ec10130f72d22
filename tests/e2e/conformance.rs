//! The API answers what its OpenAPI document says: schemathesis (from PyPI; `scripts/test`
//! installs it under `target/`) runs against the live `/api/openapi.json` of a served
//! instance with an admin key, through its examples, coverage, fuzzing and stateful phases
//! with every check: no 5xx, no status code the document does not list, no response that
//! does not match its schema, no schema-valid request refused, no invalid one accepted.
//!
//! What the document cannot state (refusals that depend on stored data, such as a rule naming
//! an unknown attribute) is listed, with the reason, in `schemathesis.toml` next to this file.
//!
//! The instance has a little data (contacts, events, a segment, a campaign) so that examples
//! and the links of the stateful phase reach real objects. Nothing leaves the machine: email
//! goes to a file outbox and no webhook URL is configured.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clarion_e2e::{clarion, run, serve, target_dir};
use clarion_testkit::{Backend, TestDb};
use serde_json::{Value as Json, json};

/// The schemathesis version `scripts/test` installs; the flags below are those of its CLI.
const SCHEMATHESIS: &str = "schemathesis 4.32.5";

/// Test cases per operation and phase: enough to reach every documented status and
/// constraint, few enough that the whole check takes a minute or two on two cores.
const MAX_EXAMPLES: &str = "15";

/// The schemathesis executable: `CLARION_SCHEMATHESIS`, else the virtual environment
/// `scripts/test` makes next to the build.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("CLARION_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    target_dir()
        .join("conformance-venv")
        .join("bin")
        .join("schemathesis")
}

/// POSTs JSON with the key and asserts the status.
async fn post(client: &reqwest::Client, base: &str, key: &str, path: &str, body: Json, want: u16) {
    let response = client
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, want, "POST {path}: {text}");
}

/// Contacts, events, a dynamic segment and a campaign on it.
async fn seed(base: &str, key: &str) {
    let client = crate::http_client()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let contacts: Vec<Json> = (1..=6)
        .map(|n| {
            json!({
                "external_id": format!("c{n}"),
                "email": format!("person{n}@example.test"),
                "first_name": format!("Person {n}"),
                "country": if n % 2 == 0 { "DE" } else { "FR" },
                "attributes": { "tier": if n < 4 { "gold" } else { "silver" }, "age": 20 + n },
            })
        })
        .collect();
    post(
        &client,
        base,
        key,
        "/api/v1/contacts/batch",
        json!({ "contacts": contacts }),
        200,
    )
    .await;
    let events: Vec<Json> = (1..=6)
        .map(|n| {
            json!({
                "external_id": format!("c{n}"),
                "kind": "purchase",
                "amount": 10.0 * n as f64,
                "currency": "EUR",
                "properties": { "category": "books", "invoice": format!("i{n}") },
                "idempotency_key": format!("seed-{n}"),
            })
        })
        .collect();
    post(
        &client,
        base,
        key,
        "/api/v1/events/batch",
        json!({ "events": events }),
        200,
    )
    .await;
    post(
        &client,
        base,
        key,
        "/api/v1/segments",
        json!({
            "name": "Gold customers",
            "category": "value",
            "rule": { "attr": "tier", "op": "=", "value": "gold" },
        }),
        201,
    )
    .await;
    post(
        &client,
        base,
        key,
        "/api/v1/campaigns",
        json!({
            "name": "Spring sale",
            "goal": { "event": "purchase", "window_hours": 168 },
            "holdout_percent": 0,
            "channels": ["email"],
            "targets": [{ "segment": "gold-customers", "variants": [{
                "name": "Gold",
                "email": {
                    "subject": "Hello {{ contact.first_name|default('friend') }}",
                    "html": "<p>Spring is here.</p>",
                    "from": "Shop <news@shop.example>",
                },
            }]}],
        }),
        201,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_what_its_openapi_document_says() {
    let schemathesis = schemathesis();
    assert!(
        schemathesis.exists(),
        "{} is missing: the API conformance check needs {SCHEMATHESIS}; run scripts/test (it \
         installs it into target/conformance-venv), or set CLARION_SCHEMATHESIS to its path",
        schemathesis.display()
    );
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (output, _, stderr) = run(clarion(&db).arg("migrate"));
    assert!(output.status.success(), "{stderr}");
    let (output, key, stderr) =
        run(clarion(&db).args(["keys", "create", "--role", "admin", "--name", "conformance"]));
    assert!(output.status.success(), "{stderr}");
    let key = key.trim().to_string();

    // Launched campaigns send at once, to the outbox; webhooks stay unconfigured.
    let served = serve(
        &db,
        dir.path(),
        &[
            ("CLARION__SENDING__WEBHOOK_URL", ""),
            ("CLARION__SENDING__BACKOFF_BASE_MS", "100"),
        ],
    );
    let base = served.base_url();
    seed(&base, &key).await;

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/schemathesis.toml");
    let mut command = Command::new(&schemathesis);
    command
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/api/openapi.json"))
        .args(["--url", &base])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--request-timeout", "20"])
        // One worker: the Python of some machines (3.11) fails in parallel schema walks.
        .args(["--workers", "1"])
        // The same cases every run, so a failure reproduces and a pass stays a pass.
        .args(["--generation-database", "none"])
        .args(["--seed", "1"])
        .arg("--no-color")
        .env("SCHEMATHESIS_TELEMETRY", "false");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{} did not run: {e}", schemathesis.display()));
    let report = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found the API and its OpenAPI document disagree:\n{report}\n{errors}"
    );
    drop(served);
}
