//! Building and running the HTTP server.

use std::net::TcpListener;
use std::time::Instant;

use actix_web::{
    App, HttpResponse, HttpServer, ResponseError,
    dev::{Server, Service as _},
    web,
};
use clarion_model::ErrorCode;

use crate::{config::Settings, error, routes, state::AppState};

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Connects, binds `server.host:server.port` (port 0 picks a free one) and prepares the
    /// server; [`Application::run_until_stopped`] runs it.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let state = AppState::connect(settings).await?;
        Self::from_state(state)
    }

    /// Prepares a server over an existing state (the CLI and tests share their pool with it).
    pub fn from_state(state: AppState) -> anyhow::Result<Self> {
        let address = format!(
            "{}:{}",
            state.settings.server.host, state.settings.server.port
        );
        let listener = TcpListener::bind(&address)
            .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
        let port = listener.local_addr()?.port();
        let workers = match state.settings.server.workers {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        let max_body = state.settings.server.max_body_bytes;
        let state = web::Data::new(state);
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_body)
                        .error_handler(error::json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(error::query_error))
                .app_data(web::PathConfig::default().error_handler(error::path_error))
                .wrap_fn(|req, srv| {
                    let started = Instant::now();
                    let method = req.method().to_string();
                    let route = req
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".to_string());
                    let state = req.app_data::<web::Data<AppState>>().cloned();
                    let call = srv.call(req);
                    async move {
                        let response = call.await?;
                        let status = response.status().as_u16();
                        let seconds = started.elapsed().as_secs_f64();
                        if let Some(state) = state {
                            state
                                .metrics
                                .http_requests
                                .with_label_values(&[
                                    method.as_str(),
                                    route.as_str(),
                                    &status.to_string(),
                                ])
                                .inc();
                            state
                                .metrics
                                .http_seconds
                                .with_label_values(&[method.as_str(), route.as_str()])
                                .observe(seconds);
                        }
                        tracing::debug!(%method, %route, status, ms = seconds * 1000.0, "request");
                        Ok(response)
                    }
                })
                .wrap_fn(|req, srv| {
                    let call = srv.call(req);
                    async move { Ok(crate::dashboard::error_pages_with_menu(call.await?)) }
                })
                .configure(routes::configure)
                .default_service(web::to(not_found))
        })
        .workers(workers)
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            state: shared,
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The state the handlers share, for roles that run beside the server in the same
    /// process (delivery workers, the supervisor, tests driving them).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// A handle that can stop the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

async fn not_found(request: actix_web::HttpRequest) -> HttpResponse {
    if let Some(allowed) = routes::docs::allowed_methods(request.path()) {
        return routes::docs::method_not_allowed(&allowed);
    }
    error::ApiError::new(
        ErrorCode::NotFound,
        "no such endpoint; the API reference is at /api/docs",
    )
    .error_response()
}
