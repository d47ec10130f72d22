//! Sending when things break, against the built binary on PostgreSQL and the local Redis: a
//! delivery worker killed in the middle of a campaign, and Redis losing the queue (the
//! installation's keys deleted) in the middle of one.
//!
//! Email goes to the `.eml` outbox, so what every recipient received is counted exactly: one
//! file per message, its `To` the recipient.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use clarion_e2e::{clarion, run};
use clarion_testkit::{Backend, TestDb};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value as Json, json};

/// A `clarion` process of a test. Dropping it kills it, so a failing test leaves nothing
/// running; its output goes to a log file whose end is printed when the test fails.
pub(crate) struct Process {
    name: &'static str,
    child: Child,
    pub(crate) log: PathBuf,
}

impl Process {
    /// Kills the process at once (SIGKILL): no batch is finished, nothing is settled.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Panics with the process's log if it exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited early ({status}); its log ends:\n{}",
                self.name,
                tail(&self.log)
            );
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, tail(&self.log));
        }
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A point in time a wait must end by.
pub(crate) struct Deadline {
    at: Instant,
    limit: Duration,
    what: &'static str,
}

impl Deadline {
    pub(crate) fn after(limit: Duration, what: &'static str) -> Self {
        Self {
            at: Instant::now() + limit,
            limit,
            what,
        }
    }

    /// Panics, saying what was awaited and where things stand, once the deadline passed.
    pub(crate) fn check(&self, state: impl FnOnce() -> String) {
        if Instant::now() > self.at {
            panic!(
                "{} did not happen within {:?}; {}",
                self.what,
                self.limit,
                state()
            );
        }
    }
}

/// One Clarion installation of a test: its own PostgreSQL database, Redis key prefix, outbox
/// and logs.
pub(crate) struct Installation {
    // Closed before the database is dropped.
    pub(crate) conn: DatabaseConnection,
    db: TestDb,
    prefix: String,
    dir: tempfile::TempDir,
}

impl Installation {
    pub(crate) async fn new() -> Self {
        let db = TestDb::new(Backend::Postgres).await;
        let (output, _, stderr) = run(clarion(&db).arg("migrate"));
        assert!(output.status.success(), "{stderr}");
        let conn = Database::connect(&db.url).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("outbox")).unwrap();
        Self {
            conn,
            db,
            prefix: format!("clarion-e2e-{}", uuid::Uuid::new_v4().simple()),
            dir,
        }
    }

    pub(crate) fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    /// A `clarion` command of this installation, with `[sending]` settings changed.
    pub(crate) fn command(&self, sending: &[(&str, &str)]) -> Command {
        let mut command = clarion(&self.db);
        command
            .env("CLARION__REDIS__KEY_PREFIX", &self.prefix)
            .env("CLARION__EMAIL__OUTBOX_DIR", self.outbox())
            .env("CLARION__SERVER__PORT", "0");
        for (key, value) in sending {
            command.env(format!("CLARION__SENDING__{key}"), value);
        }
        command
    }

    /// Starts `clarion serve --role ROLES`.
    pub(crate) fn serve(
        &self,
        name: &'static str,
        roles: &str,
        sending: &[(&str, &str)],
    ) -> Process {
        let log = self
            .dir
            .path()
            .join(format!("{}.log", name.replace(' ', "-")));
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = self
            .command(sending)
            .args(["serve", "--role", roles])
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Process { name, child, log }
    }

    /// Launches a campaign emailing `contacts` new contacts, set up through the API of a
    /// `serve --role api` process that is stopped again; returns the deliveries queued.
    async fn launch_campaign(&self, contacts: usize) -> u64 {
        let (output, stdout, stderr) = run(self
            .command(&[])
            .args(["keys", "create", "--role", "admin", "--name", "t"]));
        assert!(output.status.success(), "{stderr}");
        let key = stdout.lines().last().unwrap().trim().to_owned();

        let mut api = self.serve("api", "api", &[]);
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
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let post = async |path: &str, body: Json| -> Json {
            let response = client
                .post(format!("http://127.0.0.1:{port}/api/v1{path}"))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Json = response.json().await.unwrap();
            assert!(status.is_success(), "POST {path}: {status} {body}");
            body
        };

        let people: Vec<Json> = (0..contacts)
            .map(|i| json!({ "external_id": format!("p{i}"), "email": recipient(i) }))
            .collect();
        for chunk in people.chunks(10_000) {
            let report = post("/contacts/batch", json!({ "contacts": chunk })).await;
            assert_eq!(report["rejected"], 0, "{report}");
        }
        let segment = post(
            "/segments",
            json!({
                "name": "All",
                "category": "demographic",
                "rule": { "attr": "external_id", "op": "exists" },
            }),
        )
        .await;
        let campaign = post(
            "/campaigns",
            json!({
                "name": "Fault test",
                "goal": { "event": "purchase", "window_hours": 168 },
                "holdout_percent": 0,
                "channels": ["email"],
                "targets": [{ "segment": segment["slug"], "variants": [{
                    "name": "Only",
                    "email": {
                        "subject": "Hello",
                        "html": "<p>Hello {{ contact.first_name|default('friend') }}</p>",
                        "from": "Shop <news@shop.example>",
                    },
                }] }],
            }),
        )
        .await;
        let id = campaign["id"].as_i64().unwrap();
        let report = post(&format!("/campaigns/{id}/launch"), json!({})).await;
        let queued = report["queued"].as_u64().unwrap();
        assert_eq!(queued, contacts as u64, "{report}");
        drop(api);
        queued
    }

    /// Delivery rows by status.
    async fn statuses(&self) -> HashMap<String, i64> {
        let rows = self
            .conn
            .query_all_raw(Statement::from_string(
                self.conn.get_database_backend(),
                "SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|row| {
                (
                    row.try_get("", "status").unwrap(),
                    row.try_get("", "n").unwrap(),
                )
            })
            .collect()
    }

    /// The status of the (only) run.
    async fn run_status(&self) -> String {
        let row = self
            .conn
            .query_one_raw(Statement::from_string(
                self.conn.get_database_backend(),
                "SELECT status FROM campaign_runs",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "status").unwrap()
    }

    /// Waits until the supervisor completed the run (nothing queued or being sent), while
    /// `processes` keep running.
    async fn wait_until_completed(&self, processes: &mut [&mut Process], limit: Duration) {
        let deadline = Deadline::after(limit, "the campaign completing");
        loop {
            if self.run_status().await == "completed" {
                return;
            }
            for process in processes.iter_mut() {
                process.assert_running();
            }
            let statuses = self.statuses().await;
            let files = count_messages(&self.outbox());
            deadline.check(|| format!("deliveries by status: {statuses:?}; {files} messages"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        // Leave nothing behind on the shared Redis server.
        let _ = delete_redis_keys(&self.prefix);
    }
}

fn recipient(i: usize) -> String {
    format!("p{i}@example.com")
}

/// Deletes every Redis key of the installation with this prefix (never the shared server's
/// other keys) and returns their names.
fn delete_redis_keys(prefix: &str) -> redis::RedisResult<Vec<String>> {
    let client = redis::Client::open(clarion_testkit::redis_url())?;
    let mut conn = client.get_connection()?;
    // Key names start with a hash tag, `{prefix:queue}:stream`, so match the prefix anywhere.
    let pattern = format!("*{prefix}*");
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)?;
        keys.extend(found);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    if !keys.is_empty() {
        redis::cmd("DEL").arg(&keys).query::<()>(&mut conn)?;
    }
    Ok(keys)
}

/// How many `.eml` files the outbox holds.
pub(crate) fn count_messages(outbox: &Path) -> usize {
    std::fs::read_dir(outbox)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
        })
        .count()
}

/// What the outbox holds: messages per recipient, and files whose header is incomplete (a
/// worker killed while writing them).
struct Outbox {
    per_recipient: HashMap<String, usize>,
    incomplete: usize,
}

impl Outbox {
    fn read(dir: &Path) -> Self {
        let mut outbox = Outbox {
            per_recipient: HashMap::new(),
            incomplete: 0,
        };
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|x| x != "eml") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let Some((header, _)) = text.split_once("\r\n\r\n") else {
                outbox.incomplete += 1;
                continue;
            };
            let field = |name: &str| {
                header.lines().find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    key.eq_ignore_ascii_case(name).then(|| value.trim())
                })
            };
            match (field("To"), field("X-Clarion-Delivery")) {
                (Some(to), Some(_)) => {
                    let address = to.trim_start_matches('<').trim_end_matches('>');
                    *outbox.per_recipient.entry(address.to_owned()).or_default() += 1;
                }
                _ => outbox.incomplete += 1,
            }
        }
        outbox
    }

    /// Recipients of `0..contacts` who received nothing.
    fn missing(&self, contacts: usize) -> Vec<String> {
        (0..contacts)
            .map(recipient)
            .filter(|r| !self.per_recipient.contains_key(r))
            .collect()
    }

    /// Recipients who received more than one message.
    fn duplicated(&self) -> usize {
        self.per_recipient.values().filter(|&&n| n > 1).count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_campaign_is_taken_over_and_everyone_gets_the_message() {
    const CONTACTS: usize = 20_000;
    const BATCH: usize = 200;
    // A worker runs `sending.batches_in_flight` consumer loops per channel, each handling one
    // batch at a time; this campaign only emails, so the killed worker had at most that many
    // batches in flight.
    const IN_FLIGHT_BATCHES: usize = 2;
    let install = Installation::new().await;
    let started = Instant::now();
    install.launch_campaign(CONTACTS).await;
    let launched = started.elapsed();

    let sending = [
        ("BATCH_SIZE", "200"),
        ("BATCHES_IN_FLIGHT", "2"),
        ("RECLAIM_AFTER_SECS", "3"),
        ("SUPERVISE_INTERVAL_SECS", "1"),
    ];
    let mut worker_a = install.serve("worker A", "worker", &sending);
    // Files appear a batch at a time, so the kill tends to land after a batch was written and
    // before it was recorded: the worst case, where the whole batch is sent again.
    let deadline = Deadline::after(Duration::from_secs(60), "worker A sending 3,000 messages");
    loop {
        let sent = count_messages(&install.outbox());
        if sent >= 3_000 {
            break;
        }
        worker_a.assert_running();
        deadline.check(|| format!("{sent} messages so far"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker_a.kill();
    let killed_at = Instant::now();
    let before_kill = count_messages(&install.outbox());
    assert!(
        before_kill < CONTACTS,
        "worker A sent everything before it was killed"
    );
    let left_sending = install.statuses().await.get("sending").copied();

    let mut worker_b = install.serve("worker B", "worker,scheduler", &sending);
    install
        .wait_until_completed(&mut [&mut worker_b], Duration::from_secs(90))
        .await;
    let recovered = killed_at.elapsed();
    drop(worker_b);

    let statuses = install.statuses().await;
    assert_eq!(
        statuses,
        HashMap::from([("sent".to_owned(), CONTACTS as i64)]),
        "every delivery ends sent"
    );
    let outbox = Outbox::read(&install.outbox());
    let missing = outbox.missing(CONTACTS);
    assert!(
        missing.is_empty(),
        "{} recipients got nothing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let duplicated = outbox.duplicated();
    eprintln!(
        "duplicates after kill: {duplicated} (worker A wrote {before_kill} messages, left {left_sending:?} deliveries sending, {} incomplete files); launch {launched:?}, kill to completion {recovered:?}",
        outbox.incomplete
    );
    let bound = BATCH * IN_FLIGHT_BATCHES;
    assert!(
        duplicated <= bound,
        "{duplicated} recipients got more than one message; at most {bound} may: \
         sending.batch_size {BATCH} × {IN_FLIGHT_BATCHES} batches in flight in the killed worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_the_queue_mid_campaign_is_repaired_by_the_supervisor() {
    const CONTACTS: usize = 5_000;
    let install = Installation::new().await;
    let started = Instant::now();
    install.launch_campaign(CONTACTS).await;
    let launched = started.elapsed();

    // 500 a second: the campaign takes ten seconds, so the queue is lost half-way.
    let sending = [
        ("EMAIL_PER_SECOND", "500"),
        ("SUPERVISE_INTERVAL_SECS", "1"),
    ];
    let mut worker = install.serve("worker", "worker,scheduler", &sending);
    let deadline = Deadline::after(Duration::from_secs(60), "1,000 messages sent");
    loop {
        let sent = count_messages(&install.outbox());
        if sent >= 1_000 {
            break;
        }
        worker.assert_running();
        deadline.check(|| format!("{sent} messages so far"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deleted = delete_redis_keys(&install.prefix).unwrap();
    let lost_at = Instant::now();
    let before_loss = count_messages(&install.outbox());
    assert!(
        deleted
            .iter()
            .any(|k| k.ends_with("deliveries-email}:stream")),
        "the email queue's stream was deleted: {deleted:?}"
    );
    assert!(
        before_loss < CONTACTS,
        "the campaign ended before the queue was lost"
    );

    install
        .wait_until_completed(&mut [&mut worker], Duration::from_secs(60))
        .await;
    let recovered = lost_at.elapsed();
    drop(worker);

    let statuses = install.statuses().await;
    assert_eq!(
        statuses,
        HashMap::from([("sent".to_owned(), CONTACTS as i64)]),
        "every delivery ends sent"
    );
    let outbox = Outbox::read(&install.outbox());
    let missing = outbox.missing(CONTACTS);
    assert!(
        missing.is_empty(),
        "{} recipients got nothing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let duplicated = outbox.duplicated();
    eprintln!(
        "duplicates after the queue was lost: {duplicated} ({before_loss} messages before, keys deleted: {}); launch {launched:?}, loss to completion {recovered:?}",
        deleted.len()
    );
    assert_eq!(
        duplicated, 0,
        "no worker died, so nobody gets a message twice"
    );
    assert_eq!(outbox.incomplete, 0);
}
