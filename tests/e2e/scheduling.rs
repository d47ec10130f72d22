//! Schedules fired by real scheduler processes (`clarion serve --role scheduler`), on
//! PostgreSQL and the local Redis: tokio-cron-scheduler wakes them at the fire time, one of
//! two processes fires, and every member receives the campaign once.

use std::time::Duration;

use clarion_e2e::run;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value as Json, json};

use crate::sending::{Deadline, Installation, count_messages};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scheduler_processes_fire_a_one_off_schedule_once_at_its_time() {
    let inst = Installation::new().await;
    let (output, stdout, stderr) = run(inst
        .command(&[])
        .args(["keys", "create", "--role", "admin", "--name", "t"]));
    assert!(output.status.success(), "{stderr}");
    let key = stdout.lines().last().unwrap().trim().to_owned();

    let mut api = inst.serve("api", "api", &[]);
    let deadline = Deadline::after(Duration::from_secs(30), "the API listening");
    let port = loop {
        let log = std::fs::read_to_string(&api.log).unwrap();
        if let Some(rest) = log.split("listening on port ").nth(1) {
            let port: u16 = rest.split_whitespace().next().unwrap().parse().unwrap();
            break port;
        }
        api.assert_running();
        deadline.check(|| format!("log: {log}"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let client = crate::http_client().build().unwrap();
    let call = async |method: reqwest::Method, path: &str, body: Json| -> Json {
        let response = client
            .request(method, format!("http://127.0.0.1:{port}/api/v1{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Json = response.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    };
    let people: Vec<Json> = (0..5)
        .map(|i| json!({ "external_id": format!("s{i}"), "email": format!("s{i}@example.com") }))
        .collect();
    call(
        reqwest::Method::POST,
        "/contacts/batch",
        json!({ "contacts": people }),
    )
    .await;
    let segment = call(
        reqwest::Method::POST,
        "/segments",
        json!({"name": "All", "category": "demographic", "rule": { "attr": "external_id", "op": "exists" }}),
    )
    .await;
    let campaign = call(
        reqwest::Method::POST,
        "/campaigns",
        json!({
            "name": "Scheduled",
            "goal": { "event": "purchase", "window_hours": 168 },
            "holdout_percent": 0,
            "channels": ["email"],
            "targets": [{ "segment": segment["slug"], "variants": [{ "name": "Only", "email": {
                "subject": "Hello", "html": "<p>Hello</p>", "from": "Shop <news@shop.example>" } }] }],
        }),
    )
    .await;
    let id = campaign["id"].as_i64().unwrap();
    let at = chrono::Utc::now() + chrono::Duration::seconds(6);
    let saved = call(
        reqwest::Method::PUT,
        &format!("/campaigns/{id}/schedule"),
        json!({ "at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true) }),
    )
    .await;
    assert_eq!(saved["state"], "active", "{saved}");
    drop(api);

    // Two scheduler processes, started before the moment; a worker sends.
    let mut first = inst.serve("scheduler one", "scheduler", &[]);
    let mut second = inst.serve("scheduler two", "scheduler", &[]);
    let mut worker = inst.serve("worker", "worker", &[]);
    let deadline = Deadline::after(Duration::from_secs(60), "the scheduled campaign arriving");
    while count_messages(&inst.outbox()) < 5 {
        for process in [&mut first, &mut second, &mut worker] {
            process.assert_running();
        }
        deadline.check(|| format!("{} messages", count_messages(&inst.outbox())));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        chrono::Utc::now() >= at,
        "the campaign went out before its time"
    );
    // Both schedulers had their chance; nothing more arrives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count_messages(&inst.outbox()), 5);
    let backend = inst.conn.get_database_backend();
    let count = async |sql: &str| -> i64 {
        let row = inst
            .conn
            .query_one_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "n").unwrap()
    };
    assert_eq!(count("SELECT COUNT(*) AS n FROM campaign_runs").await, 1);
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM schedule_firings WHERE status = 'launched'").await,
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM campaign_schedules WHERE state = 'completed'").await,
        1
    );
}
