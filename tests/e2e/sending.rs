//! Sending when things break, against the built binary on PostgreSQL and the local Redis: a
//! delivery worker killed in the middle of a campaign (five times), a launch killed while it
//! writes the audience, Redis losing the queue (the installation's keys deleted) in the
//! middle of a campaign, and a Redis server with an append-only file killed and restarted in
//! the middle of one.
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

/// One Clarion installation of a test: its own database (PostgreSQL unless said otherwise),
/// Redis key prefix, outbox and logs.
pub(crate) struct Installation {
    // Closed before the database is dropped.
    pub(crate) conn: DatabaseConnection,
    db: TestDb,
    prefix: String,
    dir: tempfile::TempDir,
    redis_url: String,
}

impl Installation {
    pub(crate) async fn new() -> Self {
        Self::on(Backend::Postgres).await
    }

    /// The installation on a database of `backend`.
    async fn on(backend: Backend) -> Self {
        let db = TestDb::new(backend).await;
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
            redis_url: clarion_testkit::redis_url(),
        }
    }

    /// The installation on the Redis server at `url` instead of the shared one.
    async fn with_redis(url: &str) -> Self {
        let mut install = Self::new().await;
        url.clone_into(&mut install.redis_url);
        install
    }

    pub(crate) fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    /// A `clarion` command of this installation, with `[sending]` settings changed.
    pub(crate) fn command(&self, sending: &[(&str, &str)]) -> Command {
        let mut command = clarion(&self.db);
        command
            .env("CLARION__REDIS__URL", &self.redis_url)
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
        self.serve_to(name, roles, sending, &self.outbox())
    }

    /// Starts `clarion serve --role ROLES` writing its emails to `outbox`.
    fn serve_to(
        &self,
        name: &'static str,
        roles: &str,
        sending: &[(&str, &str)],
        outbox: &Path,
    ) -> Process {
        let log = self
            .dir
            .path()
            .join(format!("{}.log", name.replace(' ', "-")));
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = self
            .command(sending)
            .env("CLARION__EMAIL__OUTBOX_DIR", outbox)
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
        let api = self.api(&[]).await;
        let id = api.create_campaign(contacts).await;
        let report = api
            .post(&format!("/campaigns/{id}/launch"), json!({}))
            .await;
        let queued = report["queued"].as_u64().unwrap();
        assert_eq!(queued, contacts as u64, "{report}");
        queued
    }

    /// Starts a `serve --role api` process with an admin key, once it listens.
    async fn api(&self, sending: &[(&str, &str)]) -> Api {
        let (output, stdout, stderr) = run(self
            .command(&[])
            .args(["keys", "create", "--role", "admin", "--name", "t"]));
        assert!(output.status.success(), "{stderr}");
        let key = stdout.lines().last().unwrap().trim().to_owned();

        let mut process = self.serve("api", "api", sending);
        let deadline = Deadline::after(Duration::from_secs(30), "the API listening");
        let port = loop {
            let log = std::fs::read_to_string(&process.log).unwrap();
            if let Some(rest) = log.split("listening on port ").nth(1) {
                let port: u16 = rest.split_whitespace().next().unwrap().parse().unwrap();
                break port;
            }
            process.assert_running();
            deadline.check(|| format!("log: {log}"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let client = crate::http_client()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        Api {
            process,
            base: format!("http://127.0.0.1:{port}/api/v1"),
            key,
            client,
        }
    }

    /// Delivery rows by status.    /// Delivery rows by status.
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

    /// The `n` a query of one row answers.
    async fn count(&self, sql: &str) -> i64 {
        let row = self
            .conn
            .query_one_raw(Statement::from_string(
                self.conn.get_database_backend(),
                sql,
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "n").unwrap()
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

/// A running `serve --role api` process and an admin key for it.
struct Api {
    process: Process,
    base: String,
    key: String,
    client: reqwest::Client,
}

impl Api {
    /// POSTs `body` to `path` and returns the answer, which must be a success.
    async fn post(&self, path: &str, body: Json) -> Json {
        let response = self.request(path, body).await.unwrap();
        let status = response.status();
        let body: Json = response.json().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    fn request(
        &self,
        path: &str,
        body: Json,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
    }

    /// Creates `contacts` contacts, a segment of them all and a campaign emailing it; returns
    /// the campaign's id.
    async fn create_campaign(&self, contacts: usize) -> i64 {
        let people: Vec<Json> = (0..contacts)
            .map(|i| json!({ "external_id": format!("p{i}"), "email": recipient(i) }))
            .collect();
        for chunk in people.chunks(10_000) {
            let report = self
                .post("/contacts/batch", json!({ "contacts": chunk }))
                .await;
            assert_eq!(report["rejected"], 0, "{report}");
        }
        let segment = self
            .post(
                "/segments",
                json!({
                    "name": "All",
                    "category": "demographic",
                    "rule": { "attr": "external_id", "op": "exists" },
                }),
            )
            .await;
        let campaign = self
            .post(
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
        campaign["id"].as_i64().unwrap()
    }
}

/// `sending.concurrency` as the shipped defaults set it: the messages one worker has in
/// flight (sent, outcome not recorded yet), which a kill may have sent without recording.
fn default_concurrency() -> usize {
    let defaults = config::Config::builder()
        .add_source(config::File::from_str(
            include_str!("../../config/default.toml"),
            config::FileFormat::Toml,
        ))
        .build()
        .unwrap();
    usize::try_from(defaults.get_int("sending.concurrency").unwrap()).unwrap()
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
#[derive(Default)]
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

    /// Messages beyond the first per recipient.
    fn extra(&self) -> usize {
        self.per_recipient
            .values()
            .map(|&n| n.saturating_sub(1))
            .sum()
    }

    /// Adds what `other` holds.
    fn add(&mut self, other: &Outbox) {
        for (recipient, n) in &other.per_recipient {
            *self.per_recipient.entry(recipient.clone()).or_default() += n;
        }
        self.incomplete += other.incomplete;
    }

    /// Recipients of this outbox who also received a message in `other`.
    fn also_in(&self, other: &Outbox) -> usize {
        self.per_recipient
            .keys()
            .filter(|r| other.per_recipient.contains_key(*r))
            .count()
    }
}

/// Only the timing of the take-over differs from the defaults: an abandoned delivery is
/// taken over after 5 s instead of 5 minutes, checked every second. Batch size, concurrency
/// and batches in flight, which decide how much a kill leaves unrecorded, are the defaults.
const TAKE_OVER_QUICKLY: [(&str, &str); 2] = [
    ("RECLAIM_AFTER_SECS", "5"),
    ("SUPERVISE_INTERVAL_SECS", "1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_mid_campaign_are_taken_over_and_everyone_gets_the_message() {
    const CONTACTS: usize = 20_000;
    const KILLS: usize = 5;
    // Each killed worker sends this many messages first (and the last one the rest).
    const SENT_BEFORE_KILL: usize = 2_500;
    const NAMES: [&str; KILLS + 1] = [
        "worker 1", "worker 2", "worker 3", "worker 4", "worker 5", "worker 6",
    ];
    let bound = default_concurrency();
    let install = Installation::new().await;
    let started = Instant::now();
    install.launch_campaign(CONTACTS).await;
    let launched = started.elapsed();

    // Each worker writes to an outbox of its own, so a message sent again after a kill is
    // told apart from one the killed worker wrote.
    let outboxes: Vec<PathBuf> = (0..=KILLS)
        .map(|i| {
            let dir = install.dir.path().join(format!("outbox-{i}"));
            std::fs::create_dir(&dir).unwrap();
            dir
        })
        .collect();
    for (name, outbox) in NAMES.iter().zip(&outboxes).take(KILLS) {
        let mut worker = install.serve_to(name, "worker,scheduler", &TAKE_OVER_QUICKLY, outbox);
        let deadline = Deadline::after(Duration::from_secs(60), "a worker sending its share");
        loop {
            let sent = count_messages(outbox);
            if sent >= SENT_BEFORE_KILL {
                break;
            }
            worker.assert_running();
            deadline.check(|| format!("{name} sent {sent} messages so far"));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        worker.kill();
    }
    let killed_at = Instant::now();
    let mut last = install.serve_to(
        NAMES[KILLS],
        "worker,scheduler",
        &TAKE_OVER_QUICKLY,
        &outboxes[KILLS],
    );
    install
        .wait_until_completed(&mut [&mut last], Duration::from_secs(90))
        .await;
    let recovered = killed_at.elapsed();
    drop(last);

    let statuses = install.statuses().await;
    assert_eq!(
        statuses,
        HashMap::from([("sent".to_owned(), CONTACTS as i64)]),
        "every delivery ends sent"
    );
    let read: Vec<Outbox> = outboxes.iter().map(|dir| Outbox::read(dir)).collect();
    let mut everyone = Outbox::default();
    for outbox in &read {
        assert_eq!(
            outbox.duplicated(),
            0,
            "a worker sent a message twice itself"
        );
        everyone.add(outbox);
    }
    let missing = everyone.missing(CONTACTS);
    assert!(
        missing.is_empty(),
        "{} recipients got nothing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // A kill's duplicates: recipients of the killed worker who got the message again from
    // a worker started after it.
    let mut later = Outbox::default();
    let mut duplicates = Vec::new();
    for outbox in read.iter().rev() {
        duplicates.push(outbox.also_in(&later));
        later.add(outbox);
    }
    duplicates.reverse();
    duplicates.pop();
    eprintln!(
        "duplicates after each of {KILLS} kills: {duplicates:?} (bound: sending.concurrency = {bound}); \
         {} recipients got more than one message, {} extra messages; incomplete files: {}; \
         launch {launched:?}, last kill to completion {recovered:?}",
        everyone.duplicated(),
        everyone.extra(),
        everyone.incomplete
    );
    for (kill, &duplicated) in duplicates.iter().enumerate() {
        assert!(
            duplicated <= bound,
            "after kill {}, {duplicated} recipients got the message again; at most \
             sending.concurrency = {bound} may: the messages in flight in the killed worker",
            kill + 1
        );
    }
    // Every extra message is one a kill explains. A recipient can be counted by two kills:
    // worker 1 sent and was killed before recording it, worker 2 took it over and was killed
    // the same way, worker 3 sent it a third time.
    assert_eq!(
        everyone.extra(),
        duplicates.iter().sum::<usize>(),
        "messages sent more than once that no kill explains"
    );
}

clarion_testkit::on_both_backends!(
    a_launch_killed_while_writing_the_audience_is_finished_by_another_process
);

async fn a_launch_killed_while_writing_the_audience_is_finished_by_another_process(
    backend: Backend,
) {
    const CONTACTS: usize = 20_000;
    // Small pages make the launch take many steps, so the kill lands half-way.
    const PAGE: &str = "250";
    let install = Installation::on(backend).await;
    let api = install.api(&[("LAUNCH_PAGE", PAGE)]).await;
    let campaign = api.create_campaign(CONTACTS).await;
    // A worker sends what the launch writes from the start.
    let mut worker = install.serve("worker", "worker", &[]);

    let launch = tokio::spawn(api.request(&format!("/campaigns/{campaign}/launch"), json!({})));
    let deadline = Deadline::after(Duration::from_secs(60), "the launch writing 2,000 rows");
    let written_at_kill = loop {
        let written = install.count("SELECT COUNT(*) AS n FROM deliveries").await;
        if written >= 2_000 {
            break written;
        }
        deadline.check(|| format!("{written} rows written"));
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    api.process.kill();
    assert!(
        launch.await.unwrap().is_err(),
        "the launch answered although its process was killed"
    );
    let written = install.count("SELECT COUNT(*) AS n FROM deliveries").await;
    assert!(
        written < CONTACTS as i64,
        "the launch wrote all {written} rows before it was killed (at {written_at_kill})"
    );
    let unfinished = install
        .count("SELECT COUNT(*) AS n FROM campaign_runs WHERE launch_cursor IS NOT NULL")
        .await;
    assert_eq!(unfinished, 1, "the run knows its launch did not finish");

    let mut scheduler = install.serve("scheduler", "scheduler", &TAKE_OVER_QUICKLY);
    install
        .wait_until_completed(&mut [&mut worker, &mut scheduler], Duration::from_secs(90))
        .await;
    drop((worker, scheduler));

    let rows = install.count("SELECT COUNT(*) AS n FROM deliveries").await;
    let members = install
        .count("SELECT COUNT(DISTINCT contact_id) AS n FROM deliveries")
        .await;
    assert_eq!(
        (rows, members),
        (CONTACTS as i64, CONTACTS as i64),
        "one delivery row per member"
    );
    let audience = install
        .count("SELECT audience + queued AS n FROM campaign_runs")
        .await;
    assert_eq!(
        audience,
        2 * CONTACTS as i64,
        "the run counts each member once"
    );
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
        "{} members got nothing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "{backend:?}: launch killed after {written} of {CONTACTS} rows; {} messages",
        outbox.per_recipient.values().sum::<usize>()
    );
    assert_eq!(outbox.duplicated(), 0, "no member gets the message twice");
    assert_eq!(outbox.incomplete, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_from_its_append_only_file_mid_campaign_loses_nothing() {
    const CONTACTS: usize = 5_000;
    let bound = default_concurrency();
    let mut redis = RedisServer::start();
    let install = Installation::with_redis(&redis.url()).await;
    install.launch_campaign(CONTACTS).await;

    // 500 a second: the campaign takes ten seconds, so Redis dies half-way.
    let sending = [
        ("EMAIL_PER_SECOND", "500"),
        ("RECLAIM_AFTER_SECS", "5"),
        ("SUPERVISE_INTERVAL_SECS", "1"),
    ];
    let mut worker = install.serve("worker", "worker,scheduler", &sending);
    let deadline = Deadline::after(Duration::from_secs(60), "1,500 messages sent");
    loop {
        let sent = count_messages(&install.outbox());
        if sent >= 1_500 {
            break;
        }
        worker.assert_running();
        deadline.check(|| format!("{sent} messages so far"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.restart();
    let restarted_at = Instant::now();
    let before_restart = count_messages(&install.outbox());
    assert!(
        before_restart < CONTACTS,
        "the campaign ended before Redis was restarted"
    );

    install
        .wait_until_completed(&mut [&mut worker], Duration::from_secs(90))
        .await;
    let recovered = restarted_at.elapsed();
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
        "duplicates after Redis was killed and restarted: {duplicated} (bound: \
         sending.concurrency = {bound}; {before_restart} messages before); restart to \
         completion {recovered:?}"
    );
    assert!(
        duplicated <= bound,
        "{duplicated} recipients got more than one message; at most {bound} may"
    );
    assert_eq!(outbox.incomplete, 0);
}

/// A private `redis-server` keeping an append-only file (fsync every second) in a directory
/// of its own, on a port of its own; killed at the end of the test.
struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // A port the system just handed out and took back is free for the server to bind.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Self {
            child: Self::spawn(dir.path(), port),
            port,
            dir,
        };
        server.wait_until_answering();
        server
    }

    fn spawn(dir: &Path, port: u16) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(dir)
            .stdout(File::create(dir.join("redis.log")).unwrap())
            .spawn()
            .unwrap()
    }

    /// Waits until the server answers (after loading its append-only file).
    fn wait_until_answering(&self) {
        let deadline = Deadline::after(Duration::from_secs(10), "redis-server answering");
        loop {
            let answered = redis::Client::open(self.url())
                .and_then(|client| client.get_connection())
                .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn));
            if answered.is_ok() {
                return;
            }
            deadline.check(|| format!("{answered:?}"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL: what it wrote in the last second may be lost) and
    /// starts it again on the same port and append-only file.
    fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Self::spawn(self.dir.path(), self.port);
        self.wait_until_answering();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
