//! Real peers for the tests: an SMTP server (aiosmtpd) and an HTTP webhook receiver
//! (actix-web), each started per test on its own port.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use clarion_dispatch::{EmailConfig, SmtpConfig};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One message as the SMTP server received it.
#[derive(Debug)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub raw: Vec<u8>,
}

/// How the test SMTP server behaves.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// Announce PIPELINING in the EHLO answer.
    pub pipelining: bool,
    /// Offer (and require) STARTTLS with this certificate and key (PEM files).
    pub starttls: Option<(PathBuf, PathBuf)>,
    /// Require AUTH with this user name and password after STARTTLS (needs `starttls`).
    pub auth: Option<(String, String)>,
    /// Speak TLS from the first byte ("SMTPS") with this certificate and key.
    pub implicit_tls: Option<(PathBuf, PathBuf)>,
}

/// `python3 -m aiosmtpd` with the recording handler of `smtp_recorder.py`.
pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    options: SmtpOptions,
    child: Child,
}

impl SmtpServer {
    pub async fn start() -> Self {
        Self::start_with(SmtpOptions::default()).await
    }

    pub async fn start_with(options: SmtpOptions) -> Self {
        clarion_dispatch::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        // Another test may take the port between our probe and aiosmtpd's bind; try again then.
        for _ in 0..5 {
            let port = free_port();
            let mut child = spawn_aiosmtpd(port, dir.path(), &options);
            if wait_until_serving(port, &mut child, &options).await {
                return Self {
                    port,
                    dir,
                    options,
                    child,
                };
            }
        }
        panic!("aiosmtpd did not start");
    }

    /// Stops the server, dropping every connection, and starts it again on the same port.
    pub async fn restart(&mut self) {
        self.child.kill().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let mut child = spawn_aiosmtpd(self.port, self.dir.path(), &self.options);
            if wait_until_serving(self.port, &mut child, &self.options).await {
                self.child = child;
                return;
            }
        }
        panic!("aiosmtpd did not restart on port {}", self.port);
    }

    /// Relay settings pointing at this server, plain SMTP, default pool.
    pub fn config(&self) -> EmailConfig {
        EmailConfig {
            smtp: Some(SmtpConfig::plain("127.0.0.1", self.port)),
            ..EmailConfig::default()
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        read_received(self.dir.path())
    }
}

fn spawn_aiosmtpd(port: u16, dir: &Path, options: &SmtpOptions) -> Child {
    let mut command = Command::new("/usr/bin/python3");
    match (&options.starttls, &options.auth) {
        (Some((certificate, key)), Some((user, password))) => {
            command
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/dispatch/smtp_auth_server.py"
                ))
                .arg(port.to_string())
                .arg(dir)
                .args([certificate, key])
                .args([user, password]);
        }
        (starttls, None) => {
            command
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"));
            if let Some((certificate, key)) = starttls {
                command
                    .arg("--tlscert")
                    .arg(certificate)
                    .arg("--tlskey")
                    .arg(key);
            }
            if let Some((certificate, key)) = &options.implicit_tls {
                command
                    .arg("--smtpscert")
                    .arg(certificate)
                    .arg("--smtpskey")
                    .arg(key);
            }
            command
                .args(["-c", "smtp_recorder.Recorder"])
                .arg(dir)
                .args(options.pipelining.then_some("pipelining"));
        }
        (None, Some(_)) => panic!("the AUTH test server needs a STARTTLS certificate"),
    }
    command
        .env(
            "PYTHONPATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dispatch"),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start /usr/bin/python3 with aiosmtpd (Debian package python3-aiosmtpd)")
}

fn read_received(dir: &Path) -> Vec<Received> {
    let mut received = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_some_and(|extension| extension == "json")
        {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            received.push(Received {
                mail_from: meta["mail_from"].as_str().unwrap().to_owned(),
                rcpt_tos: meta["rcpt_tos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|to| to.as_str().unwrap().to_owned())
                    .collect(),
                raw: std::fs::read(path.with_extension("eml")).unwrap(),
            });
        }
    }
    received
}

async fn wait_until_serving(port: u16, child: &mut Child, options: &SmtpOptions) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            // Over SMTPS the greeting comes only after a TLS handshake; accepting is enough.
            if options.implicit_tls.is_some() {
                return true;
            }
            let mut greeting = [0u8; 3];
            if stream.read_exact(&mut greeting).await.is_ok() && &greeting == b"220" {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// One request as the webhook receiver got it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// What the receiver answers to the next request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Reply>>,
}

/// An actix-web server on 127.0.0.1 that records every request and answers from a script of
/// replies (204 once the script is used up).
pub struct WebhookReceiver {
    pub port: u16,
    state: Arc<ReceiverState>,
    handle: ServerHandle,
}

impl WebhookReceiver {
    pub fn start(script: Vec<Reply>) -> Self {
        clarion_dispatch::install_crypto_provider();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ReceiverState {
            requests: Mutex::default(),
            script: Mutex::new(script.into()),
        });
        let data = web::Data::from(Arc::clone(&state));
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                        .default_service(web::to(record))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .unwrap()
                .run();
                handle_tx.send(server.handle()).unwrap();
                server.await.unwrap();
            });
        });
        Self {
            port,
            state,
            handle: handle_rx.recv().unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        // The stop command is sent when `stop` is called; waiting for it is not needed.
        drop(self.handle.stop(false));
    }
}

async fn record(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    state.requests.lock().unwrap().push(Recorded {
        path: request.path().to_owned(),
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| Reply::status(204));
    if !reply.delay.is_zero() {
        actix_web::rt::time::sleep(reply.delay).await;
    }
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap());
    for (name, value) in reply.headers {
        response.insert_header((name, value));
    }
    response.body(reply.body)
}
