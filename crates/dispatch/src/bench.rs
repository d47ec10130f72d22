//! Throughput benchmarks of both channels against local peers, for `clarion bench email`,
//! `clarion bench webhook` and `cargo run --release -p clarion-dispatch --example dispatch_bench`
//! (both).
//!
//! - Email: Postfix's `smtp-sink` (accepts and discards, writes nothing to disk) receives
//!   20 KB multipart messages from an [`EmailSender`] with a pool of 10 connections; in the
//!   same run Postfix's `smtp-source` sends the same number of messages of the same size over
//!   the same number of reused connections, as the baseline. The two alternate in three
//!   rounds so that load from elsewhere on the machine weighs on both alike.
//! - Webhook: an in-process actix-web receiver with keep-alive answers 204 to signed POSTs,
//!   in three rounds signed with the one `webhook.secret`, alternating with three rounds
//!   spread over several webhook endpoints, each with its own secrets (every other one
//!   mid-rotation, signing twice), timeout and extra header.
//!
//! Clarion's side runs on a current-thread Tokio runtime: on the 2-core development machine it
//! measured faster than the multi-thread one (fewer cross-thread wake-ups per SMTP round
//! trip).

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::process::{Child, Command};

use crate::{
    EmailConfig, EmailMessage, EmailSender, ListUnsubscribe, Sender, SigningKeys, SmtpConfig,
    WebhookConfig, WebhookMessage, WebhookSecret, WebhookSender,
};

/// Alternating rounds of Clarion and smtp-source in the email benchmark.
const ROUNDS: usize = 3;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Emails sent by Clarion, and again by smtp-source.
    pub email_messages: usize,
    /// SMTP connections, for Clarion's pool and smtp-source's sessions.
    pub email_connections: u32,
    /// Size of the rendered email body (text and HTML together), in bytes.
    pub email_bytes: usize,
    /// Webhook deliveries.
    pub webhook_deliveries: usize,
    /// Webhook requests in flight at once.
    pub webhook_concurrency: usize,
    /// Webhook endpoints of the per-endpoint run, each with its own secret (every other one
    /// mid-rotation, so signing twice), timeout and extra header; 0 skips that run.
    pub webhook_endpoints: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            email_messages: 50_000,
            email_connections: 10,
            email_bytes: 20 * 1024,
            webhook_deliveries: 100_000,
            webhook_concurrency: 64,
            webhook_endpoints: 8,
        }
    }
}

/// Email figures, or why they could not be taken.
#[derive(Debug, Clone)]
pub enum EmailFigures {
    /// Both runs completed.
    Measured {
        /// Messages per run.
        messages: usize,
        /// Connections per run.
        connections: u32,
        /// Clarion's rate, building and sending each message, in messages per second.
        rate: f64,
        /// Messages Clarion's sender failed to deliver (should be 0).
        failed: usize,
        /// MIME building and serialization alone, on one core, in messages per second.
        build_rate: f64,
        /// smtp-source's rate against the same sink, or why it could not run.
        baseline: Result<f64, String>,
    },
    /// The benchmark could not run, e.g. Postfix's tools are missing.
    Skipped {
        /// What is missing and how to get it.
        reason: String,
    },
}

/// Webhook figures.
#[derive(Debug, Clone)]
pub struct WebhookFigures {
    /// Deliveries sent.
    pub deliveries: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Deliveries per second, signing included: the best of the rounds, each with the one
    /// `webhook.secret` (the default endpoint, as before webhook endpoints existed).
    pub rate: f64,
    /// Deliveries that failed (should be 0), over every round of both kinds.
    pub failed: usize,
    /// Endpoints of the per-endpoint rounds (0: not run).
    pub endpoints: usize,
    /// The best rate of the rounds spread over `endpoints` endpoints with their own secrets,
    /// measured alternately with the default-endpoint rounds in the same run.
    pub per_endpoint_rate: Option<f64>,
}

/// Everything one benchmark run measured. `Display` prints one line per figure.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Email through a pooled SMTP connection set.
    pub email: EmailFigures,
    /// Webhooks to a keep-alive receiver, or why they could not be measured.
    pub webhook: Result<WebhookFigures, String>,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.email)?;
        match &self.webhook {
            Ok(webhook) => write!(f, "{webhook}"),
            Err(reason) => write!(f, "webhook: not measured: {reason}"),
        }
    }
}

impl fmt::Display for EmailFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmailFigures::Measured {
                messages,
                connections,
                rate,
                failed,
                build_rate,
                baseline,
            } => {
                let baseline = match baseline {
                    Ok(baseline) => format!(
                        "smtp-source baseline: {} msg/s; {:.2}x",
                        thousands(*baseline),
                        rate / baseline
                    ),
                    Err(reason) => format!("smtp-source baseline not measured: {reason}"),
                };
                writeln!(
                    f,
                    "email via SMTP pool({connections}): {} msg/s ({baseline}); {messages} \
                     messages, {failed} failed",
                    thousands(*rate)
                )?;
                write!(
                    f,
                    "email MIME build alone: {} msg/s on one core",
                    thousands(*build_rate)
                )
            }
            EmailFigures::Skipped { reason } => write!(f, "email: not measured: {reason}"),
        }
    }
}

impl fmt::Display for WebhookFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "webhook to keep-alive receiver: {} deliveries/s ({} concurrent); {} deliveries, {} \
             failed",
            thousands(self.rate),
            self.concurrency,
            self.deliveries,
            self.failed
        )?;
        if let Some(per_endpoint) = self.per_endpoint_rate {
            write!(
                f,
                "\nwebhook to {} endpoints (own secrets, half rotating with two signatures): {} \
                 deliveries/s ({} concurrent); {:.2}x the single-secret rate above",
                self.endpoints,
                thousands(per_endpoint),
                self.concurrency,
                per_endpoint / self.rate.max(f64::EPSILON)
            )?;
        }
        Ok(())
    }
}

fn thousands(rate: f64) -> String {
    let whole = rate.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Runs both benchmarks, email first; the email part needs the Postfix tools `smtp-sink` and
/// `smtp-source` (Debian package `postfix`).
///
/// Clarion's side runs on a current-thread Tokio runtime of its own, on a separate thread, so
/// the figures do not depend on the caller's runtime. Call it from any Tokio runtime.
pub async fn run(options: &BenchOptions) -> BenchReport {
    let measured = on_own_runtime(options, |options| async move {
        let email = email(&options).await;
        let webhook = webhook(&options).await;
        BenchReport { email, webhook }
    })
    .await;
    measured.unwrap_or_else(|reason| BenchReport {
        email: EmailFigures::Skipped {
            reason: reason.clone(),
        },
        webhook: Err(reason),
    })
}

/// Runs the email benchmark alone, as [`run`] does.
pub async fn run_email(options: &BenchOptions) -> EmailFigures {
    on_own_runtime(options, |options| async move { email(&options).await })
        .await
        .unwrap_or_else(|reason| EmailFigures::Skipped { reason })
}

/// Runs the webhook benchmark alone, as [`run`] does.
pub async fn run_webhook(options: &BenchOptions) -> Result<WebhookFigures, String> {
    on_own_runtime(options, |options| async move { webhook(&options).await }).await?
}

/// Runs `measure` on a current-thread runtime on a thread of its own; an error says why the
/// runtime or its thread failed.
async fn on_own_runtime<T, F, Fut>(options: &BenchOptions, measure: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(BenchOptions) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    crate::install_crypto_provider();
    let options = options.clone();
    let measured = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("cannot start the benchmark runtime: {error}"))?;
        Ok(runtime.block_on(measure(options)))
    })
    .await;
    measured.unwrap_or_else(|error| Err(format!("the benchmark thread failed: {error}")))
}

/// Rendered bodies of about `size` bytes together: one third text, two thirds HTML, ASCII
/// with short lines, like a typical newsletter.
pub fn sample_bodies(size: usize) -> (String, String) {
    let text_size = size / 3;
    let line = "Spring is here, and so is our sale: twenty percent off everything in store.\n";
    let text: String = line.chars().cycle().take(text_size).collect();
    let paragraph = "<p>Spring is here, and so is our sale: <b>20% off</b> everything.</p>\n";
    let html: String = paragraph.chars().cycle().take(size - text_size).collect();
    (text, html)
}

/// The benchmark's message number `index`, with the given bodies.
pub fn sample_email(index: usize, text: &str, html: &str) -> EmailMessage {
    EmailMessage {
        delivery_id: format!("bench-{index}"),
        campaign_id: Some("bench".to_owned()),
        from: "Clarion Bench <bench@clarion.example>".to_owned(),
        to: format!("customer{index}@customer.example"),
        reply_to: None,
        subject: "Our spring sale".to_owned(),
        text: Some(text.to_owned()),
        html: Some(html.to_owned()),
        list_unsubscribe: Some(ListUnsubscribe {
            url: format!("https://clarion.example/u/{index}"),
            mailto: None,
            one_click: true,
        }),
        headers: Vec::new(),
        dkim: None,
        return_path: None,
    }
}

async fn email(options: &BenchOptions) -> EmailFigures {
    let (Some(sink), Some(source)) = (find_tool("smtp-sink"), find_tool("smtp-source")) else {
        return EmailFigures::Skipped {
            reason: "smtp-sink and smtp-source not found: install the Debian package `postfix` \
                     (apt-get install postfix)"
                .to_owned(),
        };
    };
    let port = match free_port() {
        Ok(port) => port,
        Err(error) => {
            return EmailFigures::Skipped {
                reason: format!("no free port: {error}"),
            };
        }
    };
    let _sink = match start_sink(&sink, port).await {
        Ok(sink) => sink,
        Err(reason) => return EmailFigures::Skipped { reason },
    };

    let (text, html) = sample_bodies(options.email_bytes);
    let messages: Vec<EmailMessage> = (0..options.email_messages)
        .map(|index| sample_email(index, &text, &html))
        .collect();

    let sender = match EmailSender::new(&EmailConfig {
        smtp: Some(SmtpConfig {
            pool_size: options.email_connections,
            ..SmtpConfig::plain("127.0.0.1", port)
        }),
        ..EmailConfig::default()
    })
    .await
    {
        Ok(sender) => sender,
        Err(error) => {
            return EmailFigures::Skipped {
                reason: error.to_string(),
            };
        }
    };

    let build_started = Instant::now();
    let build_count = messages.len().min(5_000);
    for message in &messages[..build_count] {
        if let Err(error) = sender.prepare(message) {
            return EmailFigures::Skipped {
                reason: format!("cannot build the sample message: {error}"),
            };
        }
    }
    let build_rate = rate(build_count, build_started.elapsed());

    // Enough messages in flight that every pooled connection always has the next one ready.
    let concurrency = options.email_connections as usize * 4;
    // Rounds alternate between Clarion and smtp-source so that load from elsewhere on the
    // machine weighs on both alike; each side's rate is its total over all rounds.
    let rounds = ROUNDS.min(messages.len().max(1));
    let mut ours = Duration::ZERO;
    let mut failed = 0;
    let mut theirs: Result<Duration, String> = Ok(Duration::ZERO);
    for round in 0..rounds {
        let chunk =
            &messages[round * messages.len() / rounds..(round + 1) * messages.len() / rounds];
        let started = Instant::now();
        let outcomes = sender.send_many(chunk, concurrency).await;
        ours += started.elapsed();
        failed += outcomes.iter().filter(|outcome| outcome.is_err()).count();
        if let Ok(total) = &mut theirs {
            match smtp_source(&source, port, chunk.len(), options).await {
                Ok(elapsed) => *total += elapsed,
                Err(reason) => theirs = Err(reason),
            }
        }
    }
    sender.shutdown().await;

    EmailFigures::Measured {
        messages: options.email_messages,
        connections: options.email_connections,
        rate: rate(options.email_messages - failed, ours),
        failed,
        build_rate,
        baseline: theirs.map(|elapsed| rate(options.email_messages, elapsed)),
    }
}

/// Starts Postfix's `smtp-sink` on `127.0.0.1:port` (as `nobody` when running as root), for
/// benchmarks of a whole worker; the child is killed when dropped.
///
/// # Errors
/// The tool is missing (the message names the Debian package) or does not start.
pub async fn start_smtp_sink(port: u16) -> Result<Child, String> {
    let sink = find_tool("smtp-sink").ok_or_else(|| {
        "smtp-sink not found: install the Debian package `postfix` (apt-get install postfix)"
            .to_owned()
    })?;
    start_sink(&sink, port).await
}

async fn start_sink(sink: &Path, port: u16) -> Result<Child, String> {
    let mut command = Command::new(sink);
    if running_as_root() {
        // smtp-sink refuses to run as root without a user to switch to.
        command.args(["-u", "nobody"]);
    }
    let mut child = command
        .arg(format!("127.0.0.1:{port}"))
        .arg("1000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", sink.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{} exited with {status}", sink.display()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("{} did not listen on port {port}", sink.display()))
}

/// Runs smtp-source for `messages` messages and returns how long it took.
async fn smtp_source(
    source: &Path,
    port: u16,
    messages: usize,
    options: &BenchOptions,
) -> Result<Duration, String> {
    let started = Instant::now();
    let output = Command::new(source)
        .arg("-s")
        .arg(options.email_connections.to_string())
        .arg("-m")
        .arg(messages.to_string())
        .arg("-l")
        .arg(options.email_bytes.to_string())
        // Keep each session's connection for its next message, as Clarion's pool does.
        .arg("-d")
        .args([
            "-f",
            "bench@clarion.example",
            "-t",
            "customer@customer.example",
        ])
        .args(["-M", "clarion.example"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|error| format!("cannot run {}: {error}", source.display()))?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            source.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(elapsed)
}

async fn webhook(options: &BenchOptions) -> Result<WebhookFigures, String> {
    let receiver = receiver::Receiver::start().map_err(|error| error.to_string())?;
    let mut config = WebhookConfig::new(SecretString::from(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
    ));
    config.allow_loopback = true;
    let sender = WebhookSender::new(&config).map_err(|error| error.to_string())?;
    let body = br#"{"type":"campaign.message","campaign":"bench","contact":{"id":"c_1","email":"customer@customer.example"},"variant":"spring","text":"Spring is here, and so is our sale."}"#;
    let url = format!("http://127.0.0.1:{}/hooks/clarion", receiver.port);
    let single: Vec<WebhookMessage> = (0..options.webhook_deliveries)
        .map(|index| WebhookMessage {
            url: url.clone(),
            webhook_id: format!("msg_bench_{index}"),
            body: body.to_vec(),
            headers: Vec::new(),
            signing: None,
            timeout: None,
        })
        .collect();
    let endpoints = endpoint_keys(options.webhook_endpoints)?;
    let spread: Vec<WebhookMessage> = (0..options.webhook_deliveries)
        .filter(|_| !endpoints.is_empty())
        .map(|index| {
            let endpoint = index % endpoints.len();
            WebhookMessage {
                url: format!("{url}/{endpoint}"),
                webhook_id: format!("msg_bench_{index}"),
                body: body.to_vec(),
                headers: vec![("x-endpoint".to_owned(), endpoint.to_string())],
                signing: Some(Arc::clone(&endpoints[endpoint])),
                timeout: Some(Duration::from_secs(10)),
            }
        })
        .collect();

    // Alternating rounds, so that both kinds see the same load from the rest of the machine.
    let mut best = 0.0_f64;
    let mut best_spread: Option<f64> = None;
    let mut failed = 0;
    for _ in 0..ROUNDS {
        let (round_rate, round_failed) = send_round(&sender, &single, options).await;
        best = best.max(round_rate);
        failed += round_failed;
        if !spread.is_empty() {
            let (round_rate, round_failed) = attempt_round(&sender, &spread, options).await;
            best_spread = Some(best_spread.unwrap_or(0.0).max(round_rate));
            failed += round_failed;
        }
    }
    Ok(WebhookFigures {
        deliveries: options.webhook_deliveries,
        concurrency: options.webhook_concurrency,
        rate: best,
        failed,
        endpoints: endpoints.len(),
        per_endpoint_rate: best_spread,
    })
}

/// Sends one round; its rate of deliveries that succeeded, and how many failed.
async fn send_round(
    sender: &WebhookSender,
    messages: &[WebhookMessage],
    options: &BenchOptions,
) -> (f64, usize) {
    let started = Instant::now();
    let outcomes = sender
        .send_many(messages, options.webhook_concurrency)
        .await;
    let elapsed = started.elapsed();
    let failed = outcomes.iter().filter(|outcome| outcome.is_err()).count();
    (rate(messages.len() - failed, elapsed), failed)
}

/// Sends one round the way the delivery worker sends to endpoints ([`WebhookSender::
/// attempt_many`], keeping each receiver's answer for the endpoint's results).
async fn attempt_round(
    sender: &WebhookSender,
    messages: &[WebhookMessage],
    options: &BenchOptions,
) -> (f64, usize) {
    let started = Instant::now();
    let attempts = sender
        .attempt_many(messages, options.webhook_concurrency)
        .await;
    let elapsed = started.elapsed();
    let failed = attempts
        .iter()
        .filter(|attempt| attempt.result.is_err())
        .count();
    (rate(messages.len() - failed, elapsed), failed)
}

/// The secrets of `count` endpoints, generated from their number; every other one is
/// mid-rotation and signs with a second, older secret too.
fn endpoint_keys(count: usize) -> Result<Vec<Arc<SigningKeys>>, String> {
    (0..count)
        .map(|endpoint| {
            let key = |generation: usize| {
                WebhookSecret::from_key(
                    format!("bench endpoint {endpoint:04} key {generation} ..").as_bytes(),
                )
                .map_err(|error| error.to_string())
            };
            let previous = if endpoint % 2 == 1 {
                Some(key(0)?)
            } else {
                None
            };
            Ok(Arc::new(SigningKeys::rotating(key(1)?, previous)))
        })
        .collect()
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(1).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// The webhook receiver: actix-web on its own thread, answering 204 to every request.
mod receiver {
    use std::net::TcpListener;

    use actix_web::dev::ServerHandle;
    use actix_web::{App, HttpResponse, HttpServer, web};

    pub(super) struct Receiver {
        pub(super) port: u16,
        handle: ServerHandle,
    }

    impl Receiver {
        pub(super) fn start() -> std::io::Result<Self> {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = match HttpServer::new(|| {
                        App::new().default_service(web::to(|_body: web::Bytes| async {
                            HttpResponse::NoContent().finish()
                        }))
                    })
                    .workers(1)
                    .disable_signals()
                    .listen(listener)
                    {
                        Ok(server) => server.run(),
                        Err(error) => {
                            let _ = handle_tx.send(Err(error));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(server.handle()));
                    let _ = server.await;
                });
            });
            let handle = handle_rx
                .recv()
                .map_err(|_| std::io::Error::other("the receiver thread ended early"))??;
            Ok(Self { port, handle })
        }
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            // The stop command is sent when `stop` is called; nothing waits for the thread.
            drop(self.handle.stop(false));
        }
    }
}
