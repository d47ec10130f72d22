//! What every handler shares: the database, the ingestion entry point, Redis, the queues, the
//! tracker, metrics and the configuration they came from.

use std::sync::Arc;
use std::time::Duration;

use clarion_campaign::{Worker, WorkerParts, overview::Totals, throttle::Throttle};
use clarion_contacts::Ingest;
use clarion_dispatch::{EmailSender, WebhookSender};
use clarion_model::{Timestamp, WorkspaceId};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;

use crate::{config::Settings, db, metrics::Metrics, recent::Recent};

/// What every handler shares.
pub struct AppState {
    pub db: DatabaseConnection,
    /// Where contacts and events are written: it keeps segment memberships and KPI roll-ups
    /// current.
    pub ingest: Ingest,
    pub settings: Settings,
    pub metrics: Metrics,
    pub redis: redis::aio::ConnectionManager,
    /// Signs the tracking links of messages and previews (`[tracking]` configuration).
    pub tracker: clarion_template::Tracker,
    /// The delivery queues (one per channel) that launches fill and workers drain.
    pub queues: clarion_campaign::Queues,
    /// Checks webhook endpoint URLs when they are saved and sends "send test" calls, under the
    /// same target policy as the delivery workers.
    pub webhooks: WebhookSender,
    /// Verifies and applies the email providers' bounce and complaint webhooks.
    pub providers: clarion_campaign::providers::Receiver,
    /// Where the tracking endpoints put opens and clicks, to be recorded in batches.
    pub hits: clarion_campaign::hits::HitQueue,
    /// Records opens and clicks in batches (flagging machines' by the `[engagement]`
    /// configuration): the consumer of `hits`, and the endpoints' fallback when Redis does
    /// not take a hit.
    pub recorder: clarion_campaign::hits::Recorder,
    /// The link tables of saved variant versions that `/t/l/` links point into.
    pub link_tables: clarion_campaign::engagement::LinkTables,
    /// The overview's slow figures (whole-table counts, the monthly trend) per workspace, kept
    /// for a while (see [`Recent::max_age`]).
    pub overview: OverviewCache,
    /// The dashboard's figures of large segments and finished runs, kept between views.
    pub pages: crate::dashboard::PageFigures,
    /// The dashboard's login counters (Redis) and the key that signs its one-time links.
    pub accounts: crate::accounts::Accounts,
}

impl AppState {
    /// Connects to the database (migrating it if configured) and sets up a Redis connection
    /// that is established on first use, so the server starts even while Redis is down and
    /// `/ready` says so.
    pub async fn connect(settings: Settings) -> anyhow::Result<Self> {
        let db = db::connect(&settings.database).await?;
        if settings.database.migrate_on_start {
            db::migrate(&db).await?;
        }
        let redis = connect_redis(settings.redis.url.expose_secret())?;
        let tracker = crate::tracking::tracker(&settings, &db).await?;
        clarion_dispatch::install_crypto_provider();
        let webhooks = WebhookSender::new(&settings.webhook)?;
        let machines = clarion_kpi::machine::MachineFilter::new(&settings.engagement)?;
        let queues = clarion_campaign::Queues::new(
            redis::Client::open(settings.redis.url.expose_secret())?,
            redis.clone(),
            &settings.redis.key_prefix,
            &settings.sending,
        );
        let ingest = ingest(&db, &settings);
        let providers = clarion_campaign::providers::Receiver::new(
            ingest.clone(),
            settings.bounces.clone(),
            settings.providers.clone(),
        )
        .with_queue(clarion_campaign::providers::queued::ReportQueue::new(
            queues.clone(),
        ));
        let accounts = crate::accounts::Accounts {
            limiter: crate::accounts::LoginLimiter::new(
                redis.clone(),
                &settings.redis.key_prefix,
                settings.dashboard.lockout(),
            ),
            links: crate::accounts::links::LinkSigner::new(
                crate::store::secrets::installation_secret(&db, crate::accounts::links::LINK_KEY)
                    .await?,
            ),
        };
        Ok(AppState {
            accounts,
            ingest: ingest.clone(),
            providers,
            db,
            settings,
            metrics: Metrics::new()?,
            redis,
            tracker,
            hits: clarion_campaign::hits::HitQueue::new(queues.clone()),
            recorder: clarion_campaign::hits::Recorder::new(ingest.clone(), machines),
            link_tables: clarion_campaign::engagement::LinkTables::default(),
            overview: OverviewCache::default(),
            pages: crate::dashboard::PageFigures::default(),
            queues,
            webhooks,
        })
    }

    /// Builds this process's delivery worker: the email sender (SMTP pool, or the `.eml` outbox
    /// while no relay is configured), the webhook sender (for endpoints, and for
    /// `sending.webhook_url` when `webhook.secret` is set), the tracker and the shared
    /// throttle.
    ///
    /// # Errors
    /// A sender whose configuration is unusable (the message names the setting).
    pub async fn delivery_worker(&self) -> anyhow::Result<Worker> {
        clarion_dispatch::install_crypto_provider();
        let settings = &self.settings;
        let email = EmailSender::new(&settings.email).await?;
        let webhook = Some(WebhookSender::new(&settings.webhook)?);
        let mailto = settings.tracking.unsubscribe_mailto.trim();
        Ok(Worker::new(WorkerParts {
            db: self.db.clone(),
            settings: settings.sending.clone(),
            tracker: self.tracker.clone(),
            email,
            webhook,
            unsubscribe_mailto: (!mailto.is_empty()).then(|| mailto.to_owned()),
            throttle: Throttle::new(self.redis.clone(), &settings.redis.key_prefix),
            ingest: self.ingest.clone(),
            bounces: settings.bounces.clone(),
        }))
    }

    /// PING, for readiness checks.
    pub async fn redis_ping(&self) -> redis::RedisResult<()> {
        let mut connection = self.redis.clone();
        redis::cmd("PING").query_async::<()>(&mut connection).await
    }
}

/// A lazily connecting Redis connection manager with bounded timeouts.
pub fn connect_redis(url: &str) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2);
    redis::aio::ConnectionManager::new_lazy_with_config(client, config)
}

/// The ingestion entry point the configuration describes: purchase traits follow every batch
/// with purchases or refunds, then (with `segments.realtime`) segment memberships, so rules on
/// traits see the batch's purchases; the KPI roll-ups always follow. The API and the CSV
/// import both use it.
pub fn ingest(db: &DatabaseConnection, settings: &Settings) -> Ingest {
    let mut ingest = Ingest::new(db.clone()).with_listener(std::sync::Arc::new(
        clarion_campaign::traits::TraitsListener::new(db.clone(), settings.traits.computation()),
    ));
    if settings.segments.realtime {
        ingest = ingest.with_listener(std::sync::Arc::new(
            clarion_segment::sweep::Memberships::new(db.clone()),
        ));
    }
    ingest.with_listener(std::sync::Arc::new(clarion_kpi::rollup::Rollups::new(
        db.clone(),
    )))
}

/// The overview page's slow figures per workspace, as last computed ([`Recent`]): whole-table
/// counts of contacts and events (most of a second at 10,000,000 events) and the monthly trend
/// of active customers, churn, buyers and revenue.
#[derive(Clone)]
pub struct OverviewCache(Recent<WorkspaceId, OverviewFigures>);

impl Default for OverviewCache {
    fn default() -> Self {
        OverviewCache(Recent::new("the overview's figures", 1024))
    }
}

/// What the overview shows of the whole workspace.
#[derive(Debug, Clone)]
pub struct OverviewFigures {
    pub totals: Totals,
    pub trend: clarion_kpi::trend::Trend,
}

impl OverviewCache {
    /// Months of the trend.
    pub const MONTHS: u32 = 12;

    /// The figures of `workspace` and when they were computed ([`Recent::get`]).
    ///
    /// # Errors
    /// Database failures of a computation made now.
    pub async fn get(
        &self,
        db: &DatabaseConnection,
        workspace: WorkspaceId,
    ) -> Result<(Arc<OverviewFigures>, Timestamp), clarion_campaign::CampaignError> {
        let db = db.clone();
        self.0
            .get(
                workspace,
                move || async move { compute(&db, workspace).await },
            )
            .await
    }

    /// Computes the figures of every workspace that has none yet (at start, so that the
    /// first view does not wait for them); a failure is logged and left to that view.
    pub async fn warm(&self, db: &DatabaseConnection) {
        let workspaces = match clarion_segment::sweep::workspace_ids(db).await {
            Ok(workspaces) => workspaces,
            Err(error) => {
                tracing::warn!(%error, "the overview's figures were not computed at start");
                return;
            }
        };
        for workspace in workspaces {
            self.0.warm(workspace, compute(db, workspace)).await;
        }
    }
}

async fn compute(
    db: &DatabaseConnection,
    workspace: WorkspaceId,
) -> Result<OverviewFigures, clarion_campaign::CampaignError> {
    Ok(OverviewFigures {
        totals: clarion_campaign::overview::totals(db, workspace).await?,
        trend: clarion_kpi::trend::monthly(db, workspace, OverviewCache::MONTHS, Timestamp::now())
            .await?,
    })
}
