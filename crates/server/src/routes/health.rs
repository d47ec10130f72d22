//! Liveness, readiness and metrics.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics));
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

/// Answers while the process serves requests.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `ok` or what failed, per dependency.
    pub database: String,
    pub redis: String,
}

/// Answers 200 when the database and Redis both answer, 503 otherwise.
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let timeout = Duration::from_secs(2);
    let database = match tokio::time::timeout(timeout, state.db.ping()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            "unreachable".to_string()
        }
        Err(_) => "timed out".to_string(),
    };
    let redis = match tokio::time::timeout(timeout, state.redis_ping()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: redis check failed");
            "unreachable".to_string()
        }
        Err(_) => "timed out".to_string(),
    };
    let is_ready = database == "ok" && redis == "ok";
    let body = Readiness {
        status: if is_ready { "ready" } else { "not_ready" },
        database,
        redis,
    };
    if is_ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // Queue figures are read now; with Redis down the scrape still answers, without them.
    for channel in clarion_model::Channel::ALL {
        let stats = match state.queues.open(channel).await {
            Ok(queue) => queue.stats().await,
            Err(error) => Err(error),
        };
        match stats {
            Ok(stats) => {
                for (name, value) in [
                    ("depth", stats.depth),
                    ("lag", stats.lag),
                    ("pending", stats.pending),
                    ("delayed", stats.delayed),
                    ("dead", stats.dead),
                    ("retried", stats.retried_total),
                    ("dead_lettered", stats.dead_lettered_total),
                ] {
                    state
                        .metrics
                        .queue
                        .with_label_values(&[channel.as_str(), name])
                        .set(i64::try_from(value).unwrap_or(i64::MAX));
                }
            }
            Err(error) => tracing::debug!(%error, "queue figures unavailable for /metrics"),
        }
    }
    match state.metrics.render() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(text),
        Err(e) => actix_web::ResponseError::error_response(&crate::error::ApiError::internal(&e)),
    }
}
