//! The HTTP peer: an actix-web server that records requests and answers from a script.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

use crate::HOST;

/// One request as the webhook receiver got it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// What the receiver answers to a request.
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

struct ReceiverState {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Reply>>,
    otherwise: Mutex<Reply>,
}

/// An actix-web server on [`HOST`] that records every request and answers from a script of
/// replies, then with [`WebhookReceiver::answer_otherwise`]'s reply (204 unless changed).
/// Stopped when dropped.
pub struct WebhookReceiver {
    pub port: u16,
    state: Arc<ReceiverState>,
    handle: ServerHandle,
}

impl WebhookReceiver {
    pub fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind((HOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ReceiverState {
            requests: Mutex::default(),
            script: Mutex::new(script.into()),
            otherwise: Mutex::new(Reply::status(204)),
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

    /// The URL of `path` on this receiver, e.g. `url("/hooks")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{HOST}:{}{path}", self.port)
    }

    /// Adds `replies` to the end of the script.
    pub fn answer_next(&self, replies: Vec<Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// The reply to every request once the script is used up.
    pub fn answer_otherwise(&self, reply: Reply) {
        *self.state.otherwise.lock().unwrap() = reply;
    }

    /// Every request so far, in arrival order.
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
    let scripted = state.script.lock().unwrap().pop_front();
    let reply = scripted.unwrap_or_else(|| state.otherwise.lock().unwrap().clone());
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
