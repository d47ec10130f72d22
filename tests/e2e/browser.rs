//! The dashboard in a real browser: headless Debian Chromium driven by playwright-core, with
//! axe-core checking accessibility, against a served instance on SQLite and on PostgreSQL.
//!
//! The scenarios are ES modules under `tests/browser/scenarios/` (see
//! `tests/browser/README.md`); this test serves an instance that sends email to a real SMTP
//! server (aiosmtpd), gives it an admin, a marketer and a viewer with passwords set through
//! their one-time links, then runs every scenario with `node` and fails with the output of
//! each scenario that failed. `scripts/test`
//! installs the Debian packages `chromium` and `chromium-driver`, and the npm packages of
//! `tests/browser/package-lock.json` under `target/browser-node/`. Screenshots land in
//! `target/screenshots/<backend>/`.
//!
//! `CLARION_BROWSER_SCENARIOS=login,roles` runs only the scenarios named (file stems).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clarion_e2e::{Served, clarion, run, serve, target_dir};
use clarion_testkit::{Backend, TestDb, on_both_backends};
use clarion_testpeers::SmtpServer;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value as Json, json};

/// The roles a scenario finds an account of in `CLARION_USERS`.
const ROLES: [&str; 3] = ["admin", "marketer", "viewer"];

/// The folder of the scenario scripts, the harness and its npm manifest.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The npm packages (`playwright-core`, `axe-core`): `CLARION_BROWSER_NODE_MODULES`, else
/// where `scripts/test` installs them.
fn node_modules() -> PathBuf {
    std::env::var_os("CLARION_BROWSER_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("browser-node").join("node_modules"))
}

/// The browser: `CLARION_CHROMIUM`, else Debian's Chromium.
fn chromium() -> PathBuf {
    std::env::var_os("CLARION_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn assert_tools_installed() {
    let modules = node_modules();
    assert!(
        modules.join("playwright-core").is_dir() && modules.join("axe-core").is_dir(),
        "{} lacks playwright-core or axe-core: run scripts/test (it runs `npm ci` for \
         tests/browser there), or set CLARION_BROWSER_NODE_MODULES to a node_modules folder \
         holding the versions of tests/browser/package-lock.json",
        modules.display()
    );
    assert!(
        chromium().exists(),
        "{} is missing: install the Debian packages chromium and chromium-driver (scripts/test \
         does), or set CLARION_CHROMIUM",
        chromium().display()
    );
}

/// Sets a password through a one-time link the way a browser does: the form's page hands
/// out the CSRF cookie the form must repeat.
async fn set_password(client: &reqwest::Client, base: &str, link: &str, password: &str) {
    let path = &link[link.find("/password/").expect("a password link")..];
    let page = client.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(page.status(), 200, "GET {path}");
    let token = page
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok()?.strip_prefix("clarion_form="))
        .find_map(|rest| rest.split(';').next())
        .expect("the password form sets its CSRF cookie")
        .to_string();
    let response = client
        .post(format!("{base}{path}"))
        .header(COOKIE, format!("clarion_form={token}"))
        .form(&[
            ("csrf", token.as_str()),
            ("password", password),
            ("confirm", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "POST {path}");
    assert_eq!(response.headers()[LOCATION], "/");
}

/// A `clarion` command of the served installation; links it prints point at the server.
fn installation(db: &TestDb, served: &Served, prefix: &str) -> Command {
    let mut command = clarion(db);
    command
        .env("CLARION__REDIS__KEY_PREFIX", prefix)
        .env("CLARION__SERVER__PUBLIC_URL", served.base_url());
    command
}

/// One account per role, its password set through the link `clarion users create` prints.
async fn accounts(db: &TestDb, served: &Served, prefix: &str) -> Json {
    let client = crate::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut accounts = serde_json::Map::new();
    for role in ROLES {
        let email = format!("{role}@example.test");
        let password = format!("{role}-{}", uuid::Uuid::new_v4().simple());
        let (output, link, stderr) = run(installation(db, served, prefix)
            .args(["users", "create", "--email", &email, "--role", role]));
        assert!(output.status.success(), "{stderr}");
        set_password(&client, &served.base_url(), link.trim(), &password).await;
        accounts.insert(
            role.to_string(),
            json!({ "email": email, "password": password }),
        );
    }
    Json::Object(accounts)
}

/// The scenario scripts to run: every one, or those `CLARION_BROWSER_SCENARIOS` names.
fn scenarios() -> Vec<PathBuf> {
    let wanted: Option<Vec<String>> =
        std::env::var("CLARION_BROWSER_SCENARIOS")
            .ok()
            .map(|names| {
                names
                    .split(',')
                    .map(|name| name.trim().to_string())
                    .collect()
            });
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(browser_dir().join("scenarios"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "mjs"))
        .filter(|path| {
            let stem = path.file_stem().unwrap().to_string_lossy();
            wanted
                .as_ref()
                .is_none_or(|names| names.iter().any(|name| *name == stem))
        })
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty(), "no scenario matches {wanted:?}");
    scripts
}

async fn the_dashboard_works_in_a_real_browser(backend: Backend) {
    assert_tools_installed();
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (output, _, stderr) = run(clarion(&db).arg("migrate"));
    assert!(output.status.success(), "{stderr}");
    let prefix = format!("clarion-e2e-{}", uuid::Uuid::new_v4().simple());
    // Email goes to a real SMTP server, whose messages scenarios can read.
    let smtp = SmtpServer::start().await;
    let smtp_port = smtp.port.to_string();
    let served = serve(
        &db,
        dir.path(),
        &[
            ("CLARION__REDIS__KEY_PREFIX", prefix.as_str()),
            ("CLARION__EMAIL__SMTP__HOST", smtp.host()),
            ("CLARION__EMAIL__SMTP__PORT", smtp_port.as_str()),
            ("CLARION__EMAIL__SMTP__TLS", "none"),
        ],
    );
    let users = accounts(&db, &served, &prefix).await;
    let (output, key, stderr) = run(installation(&db, &served, &prefix)
        .args(["keys", "create", "--role", "admin", "--name", "browser"]));
    assert!(output.status.success(), "{stderr}");

    let backend_name = format!("{backend:?}").to_lowercase();
    let artifacts = target_dir().join("screenshots").join(&backend_name);
    // Screenshots of an earlier run must not pass for this one's.
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();

    let mut failures = Vec::new();
    for script in scenarios() {
        // The scenario's `clarion` commands reach the same installation as the server.
        let template = installation(&db, &served, &prefix);
        let mut node = Command::new("node");
        for (name, value) in template.get_envs() {
            match value {
                Some(value) => node.env(name, value),
                None => node.env_remove(name),
            };
        }
        node.current_dir(browser_dir())
            .arg(&script)
            .env("CLARION_BASE_URL", served.base_url())
            .env("CLARION_USERS", users.to_string())
            .env("CLARION_API_KEY", key.trim())
            .env("CLARION_BIN", template.get_program())
            .env("CLARION_BROWSER_NODE_MODULES", node_modules())
            .env("CLARION_CHROMIUM", chromium())
            .env("CLARION_ARTIFACTS", &artifacts)
            .env("CLARION_SMTP_DIR", smtp.folder());
        let output = tokio::task::spawn_blocking(move || node.output())
            .await
            .unwrap()
            .expect("node runs (install the Debian package nodejs)");
        let name = script.file_stem().unwrap().to_string_lossy().into_owned();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() {
            eprintln!("{backend_name}: scenario {name} passed");
        } else {
            failures.push(format!(
                "--- scenario {name} failed ({}) ---\n{text}",
                output.status
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} browser scenario(s) failed on {backend_name} (screenshots in {}):\n{}",
        failures.len(),
        artifacts.display(),
        failures.join("\n")
    );
    drop(served);
}

on_both_backends!(the_dashboard_works_in_a_real_browser);
