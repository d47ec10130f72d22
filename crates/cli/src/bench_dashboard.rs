//! `clarion bench dashboard`: the server time of every main dashboard page, logged in as an
//! admin, over the generated population of `clarion bench segments` on PostgreSQL, and the
//! bytes the overview page transfers with its assets.
//!
//! Pages are a list of paths ([`PAGES`], or `--pages`), so pages added later are measured by
//! naming them. Times are taken by the client on the loopback interface, from sending the GET
//! to reading the last byte: the server's time plus a loopback round trip.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clarion_model::{DEFAULT_WORKSPACE, Role};
use clarion_server::{
    AppState, Application, Settings,
    accounts::{LinkPurpose, links, users},
};
use flate2::{Compression, write::GzEncoder};
use secrecy::SecretString;

use crate::bench_segments::prepare;

/// The main pages measured unless `--pages` names others. `{contact}` stands for a contact
/// with events (its external id), `{segment}` for the largest segment (its slug) and
/// `{campaign}` for the latest campaign; a page whose placeholder has nothing to stand for
/// (no campaign yet) is skipped, and says so.
pub const PAGES: &str = "/,/contacts,/contacts/{contact},/segments,/segments/{segment},/segments/{segment}/edit,/segments/crosstab,/campaigns,/campaigns/{campaign},/campaigns/{campaign}/report,/campaigns/{campaign}/schedule,/channels,/settings,/settings/suppressions,/users,/account/sessions";

/// What to measure.
pub struct DashboardBench {
    pub contacts: u64,
    pub iterations: usize,
    pub pages: Vec<String>,
    pub postgres_url: String,
    pub fresh: bool,
}

/// A client with the session cookie of a logged-in admin.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: Vec<String>,
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies.join("; ")
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        for header in response.headers().get_all("set-cookie") {
            let Some(pair) = header.to_str().ok().and_then(|text| text.split(';').next()) else {
                continue;
            };
            let name = pair.split('=').next().unwrap_or_default().to_string();
            self.cookies
                .retain(|kept| !kept.starts_with(&format!("{name}=")));
            self.cookies.push(pair.to_string());
        }
    }

    /// GETs `path`; status and body bytes as sent (no decompression).
    async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("accept-encoding", "gzip")
            .send()
            .await?;
        self.keep_cookies(&response);
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?.to_vec()))
    }

    /// Logs in through the login form.
    async fn login(&mut self, email: &str, password: &str) -> anyhow::Result<()> {
        let (_, form) = self.get("/login").await?;
        let form = String::from_utf8_lossy(&form);
        let marker = "name=\"csrf\" value=\"";
        let start = form.find(marker).context("no CSRF token on /login")? + marker.len();
        let csrf = &form[start..start + form[start..].find('"').context("csrf")?];
        let response = self
            .client
            .post(format!("{}/login", self.base))
            .header("cookie", self.cookie_header())
            .header("origin", &self.base)
            .form(&[
                ("email", email),
                ("password", password),
                ("csrf", csrf),
                ("next", "/"),
            ])
            .send()
            .await?;
        self.keep_cookies(&response);
        if response.status().as_u16() != 303 {
            bail!("login answered {}", response.status());
        }
        Ok(())
    }
}

/// An admin with a password, made through an invitation link as a person would.
async fn admin(state: &AppState, password: &str) -> anyhow::Result<String> {
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let user = users::create(&state.db, DEFAULT_WORKSPACE, &email, "bench", Role::Admin).await?;
    let (token, _) = links::issue(
        &state.db,
        &state.accounts.links,
        user.id,
        LinkPurpose::Invite,
        Duration::from_secs(600),
        None,
    )
    .await?;
    links::redeem(&state.db, &state.accounts.links, &token, password, password).await?;
    Ok(email)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The assets a page loads: `href` and `src` under `/assets/`, except the license text the
/// footer links to.
fn assets(html: &str) -> Vec<String> {
    // minijinja writes `/` in attributes as `&#x2f;`.
    let html = html.replace("&#x2f;", "/");
    let mut found = Vec::new();
    for piece in html.split("=\"/assets/").skip(1) {
        let path = format!(
            "/assets/{}",
            &piece[..piece.find('"').unwrap_or(piece.len())]
        );
        if !found.contains(&path) && !path.ends_with(".txt") {
            found.push(path);
        }
    }
    found
}

/// Percent-encodes a path segment.
fn encode_path(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn gzipped(bytes: &[u8]) -> anyhow::Result<usize> {
    use std::io::Write as _;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?.len())
}

/// Runs the benchmark and prints one line per page.
pub async fn run(bench: DashboardBench, settings: &Settings) -> anyhow::Result<()> {
    let n = bench.contacts;
    println!("dashboard pages on PostgreSQL, {n} contacts");
    let name = format!("clarion_bench_segments_{n}");
    let db = prepare(&bench.postgres_url, bench.fresh, settings, &name, n, 10).await?;
    let stands_for = placeholders(&db).await?;
    db.close().await.ok();
    let mut settings = settings.clone();
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.database.url = SecretString::from(clarion_server::db::postgres_url_for_database(
        &bench.postgres_url,
        &name,
    ));
    settings.database.migrate_on_start = true;
    let state = AppState::connect(settings).await?;
    let password = "bench password 1234";
    let email = admin(&state, password).await?;
    let application = Application::from_state(state)?;
    let base = format!("http://127.0.0.1:{}", application.port());
    let handle = application.handle();
    let server = tokio::spawn(application.run_until_stopped());
    let mut browser = Browser {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .build()?,
        base,
        cookies: Vec::new(),
    };
    browser.login(&email, password).await?;
    let outcome = measure(&mut browser, &bench, &stands_for).await;
    handle.stop(true).await;
    server.await.ok();
    outcome
}

/// What the pages' placeholders stand for in this population.
async fn placeholders(
    db: &sea_orm::DatabaseConnection,
) -> anyhow::Result<Vec<(&'static str, Option<String>)>> {
    use sea_orm::ConnectionTrait as _;
    let mut out = Vec::new();
    for (name, sql) in [
        (
            "{contact}",
            "SELECT c.external_id AS v FROM contacts c WHERE c.id = (SELECT MIN(contact_id) FROM events)",
        ),
        (
            "{segment}",
            "SELECT slug AS v FROM segments ORDER BY member_count DESC, id LIMIT 1",
        ),
        (
            "{campaign}",
            "SELECT CAST(id AS TEXT) AS v FROM campaigns ORDER BY id DESC LIMIT 1",
        ),
    ] {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql.to_owned(),
            ))
            .await?;
        out.push((
            name,
            row.map(|row| row.try_get::<String>("", "v")).transpose()?,
        ));
    }
    Ok(out)
}

async fn measure(
    browser: &mut Browser,
    bench: &DashboardBench,
    stands_for: &[(&'static str, Option<String>)],
) -> anyhow::Result<()> {
    let mut over = Vec::new();
    'pages: for pattern in &bench.pages {
        let mut path = pattern.clone();
        for (name, value) in stands_for {
            if path.contains(name) {
                let Some(value) = value else {
                    println!("  GET {pattern}: skipped (nothing for {name} in this population)");
                    continue 'pages;
                };
                path = path.replace(name, &encode_path(value));
            }
        }
        let path = &path;
        let started = Instant::now();
        let (status, _) = browser.get(path).await?;
        let first = ms(started.elapsed());
        if status != 200 {
            bail!("GET {path} answered {status}");
        }
        let mut times = Vec::with_capacity(bench.iterations);
        for _ in 0..bench.iterations.max(1) {
            let started = Instant::now();
            browser.get(path).await?;
            times.push(ms(started.elapsed()));
        }
        times.sort_by(f64::total_cmp);
        let at =
            |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        let (p50, p95) = (at(0.5), at(0.95));
        println!("  GET {path}: p50 {p50:.1} ms, p95 {p95:.1} ms (first view {first:.1} ms)");
        if p95 >= 50.0 {
            over.push(path.clone());
        }
    }
    let (_, html) = browser.get("/").await?;
    let mut served = html.len();
    let mut compressed = gzipped(&html)?;
    let text = String::from_utf8_lossy(&html).into_owned();
    for asset in assets(&text) {
        let (status, bytes) = browser.get(&asset).await?;
        if status != 200 {
            bail!("GET {asset} answered {status}");
        }
        println!(
            "    {asset}: {} bytes as served, {} gzipped",
            bytes.len(),
            gzipped(&bytes)?
        );
        served += bytes.len();
        compressed += gzipped(&bytes)?;
    }
    println!(
        "  overview with its assets: {:.1} KB as served, {:.1} KB if gzipped (target < 200 KB)",
        served as f64 / 1000.0,
        compressed as f64 / 1000.0
    );
    if !over.is_empty() {
        println!("  over the 50 ms p95 target: {}", over.join(", "));
    }
    Ok(())
}
