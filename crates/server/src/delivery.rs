//! The sending roles of a process: delivery workers (one loop per channel) and the
//! supervisor, built from the configuration and the shared [`AppState`].

use std::sync::Arc;
use std::time::Duration;

use clarion_campaign::{Worker, WorkerParts, control, throttle::Throttle};
use clarion_dispatch::{EmailSender, WebhookSender};
use clarion_model::Channel;
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::startup::AppState;

/// Builds this process's delivery worker: the email sender (SMTP pool, or the `.eml` outbox
/// while no relay is configured), the webhook sender when a secret is set, the tracker and
/// the shared throttle.
///
/// # Errors
/// A sender whose configuration is unusable (the message names the setting).
pub async fn worker(state: &AppState) -> anyhow::Result<Worker> {
    clarion_dispatch::install_crypto_provider();
    let settings = &state.settings;
    let email = EmailSender::new(&settings.email).await?;
    let webhook = if settings.webhook.secret.expose_secret().is_empty() {
        None
    } else {
        Some(WebhookSender::new(&settings.webhook)?)
    };
    let mailto = settings.tracking.unsubscribe_mailto.trim();
    Ok(Worker::new(WorkerParts {
        db: state.db.clone(),
        settings: settings.sending.clone(),
        tracker: state.tracker.clone(),
        email,
        webhook,
        unsubscribe_mailto: (!mailto.is_empty()).then(|| mailto.to_owned()),
        throttle: Throttle::new(state.redis.clone(), &settings.redis.key_prefix),
    }))
}

/// A name for this process's queue consumers, unique per host and process.
#[must_use]
pub fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "host".to_owned());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("{host}-{}", std::process::id())
}

/// Runs the delivery worker on both channels, `sending.batches_in_flight` consumers each,
/// until `stop` turns true.
pub fn spawn_workers(
    state: &AppState,
    worker: Arc<Worker>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let name = consumer_name();
    let loops = state.settings.sending.batches_in_flight;
    Channel::ALL
        .into_iter()
        .flat_map(|channel| (0..loops).map(move |i| (channel, i)))
        .map(|(channel, i)| {
            let mut stop = stop.clone();
            let queues = state.queues.clone();
            let worker = Arc::clone(&worker);
            let name = format!("{name}-{i}");
            tokio::spawn(async move {
                worker
                    .run(queues, channel, name, async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    })
                    .await;
            })
        })
        .collect()
}

/// Runs a supervision round every `sending.supervise_interval_secs` until `stop` turns true:
/// finished runs are completed, lost jobs enqueued again.
pub fn spawn_supervisor(state: &AppState, stop: &watch::Receiver<bool>) -> JoinHandle<()> {
    let db = state.db.clone();
    let queues = state.queues.clone();
    let settings = state.settings.sending.clone();
    let mut stop = stop.clone();
    tokio::spawn(async move {
        let interval = Duration::from_secs(settings.supervise_interval_secs);
        loop {
            match control::supervise(&db, &queues, &settings).await {
                Ok(done) if done != control::Supervised::default() => {
                    tracing::info!(
                        completed = done.completed,
                        requeued = done.requeued,
                        abandoned = done.abandoned,
                        failed = done.failed,
                        "supervision round"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "supervision round failed; trying again"),
            }
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    })
}
