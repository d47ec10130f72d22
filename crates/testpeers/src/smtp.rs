//! The SMTP peer: aiosmtpd with the recording handler of `python/smtp_recorder.py`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::{HOST, free_port};

/// Where the Python side of the SMTP peer lives.
pub(crate) const PYTHON_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python");

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The message as received (RFC 5322 bytes).
    pub raw: Vec<u8>,
}

/// How the test SMTP server behaves. Recipients whose local part starts with `defer` are
/// answered 450, with `reject` 550.
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

/// `python3 -m aiosmtpd` recording every accepted message; killed when dropped.
pub struct SmtpServer {
    /// The port it listens on at [`HOST`]; kept across [`SmtpServer::stop`] and
    /// [`SmtpServer::start_again`].
    pub port: u16,
    dir: tempfile::TempDir,
    options: SmtpOptions,
    child: Option<Child>,
}

impl SmtpServer {
    /// A plain SMTP server.
    pub async fn start() -> Self {
        Self::start_with(SmtpOptions::default()).await
    }

    pub async fn start_with(options: SmtpOptions) -> Self {
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
                    child: Some(child),
                };
            }
        }
        panic!("aiosmtpd did not start");
    }

    /// The host it listens on.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// Stops the server, dropping every connection; connections are refused until
    /// [`SmtpServer::start_again`]. What it received stays readable.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts a stopped server again on the same port, with the messages received so far.
    pub async fn start_again(&mut self) {
        self.stop().await;
        // The port may be busy for a moment after the old process died.
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let mut child = spawn_aiosmtpd(self.port, self.dir.path(), &self.options);
            if wait_until_serving(self.port, &mut child, &self.options).await {
                self.child = Some(child);
                return;
            }
        }
        panic!("aiosmtpd did not start again on port {}", self.port);
    }

    /// Stops the server, dropping every connection, and starts it again on the same port.
    pub async fn restart(&mut self) {
        self.start_again().await;
    }

    /// Everything received so far, in no particular order.
    pub fn received(&self) -> Vec<Received> {
        read_received(self.dir.path())
    }

    /// The folder where each accepted message is recorded as `<id>.eml` (the bytes received)
    /// and `<id>.json` (the envelope: `mail_from`, `rcpt_tos`; written last), for readers
    /// outside this crate such as the browser scenarios.
    pub fn folder(&self) -> &Path {
        self.dir.path()
    }
}

fn spawn_aiosmtpd(port: u16, dir: &Path, options: &SmtpOptions) -> Child {
    let mut command = Command::new("/usr/bin/python3");
    match (&options.starttls, &options.auth) {
        (Some((certificate, key)), Some((user, password))) => {
            command
                .arg(Path::new(PYTHON_DIR).join("smtp_auth_server.py"))
                .arg(port.to_string())
                .arg(dir)
                .args([certificate, key])
                .args([user, password]);
        }
        (starttls, None) => {
            command
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("{HOST}:{port}"));
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
        .env("PYTHONPATH", PYTHON_DIR)
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
        if let Ok(mut stream) = tokio::net::TcpStream::connect((HOST, port)).await {
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
