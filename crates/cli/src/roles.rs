//! The background roles of a `clarion serve` process, beside the HTTP API: delivery workers
//! (loops per channel), the supervisor, the campaign scheduler with its trigger rounds, and the periodic segment sweep and trait
//! recomputation. Each is built from the shared [`AppState`] and stops when told to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clarion_campaign::schedule::fire::{Fired, Lease, Scheduler, SystemClock};
use clarion_campaign::trigger::fire::Triggers;
use clarion_campaign::{Worker, control};
use clarion_model::Channel;
use clarion_server::AppState;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

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

/// Records tracking hits (opens and clicks the endpoints queued) in batches until `stop`
/// turns true; the batch in hand is finished first. Counts go to this process's metrics.
pub fn spawn_recorder(state: &AppState, stop: &watch::Receiver<bool>) -> JoinHandle<()> {
    let hits = state.hits.clone();
    let recorder = state.recorder.clone();
    let metrics = state.metrics.clone();
    let name = format!("{}-hits", consumer_name());
    let stop = stop.clone();
    tokio::spawn(async move {
        let open = || {
            let hits = hits.clone();
            async move { hits.queue().await.cloned() }
        };
        let Some(consumer) = consumer_of("hit recorder", open, &name, &stop).await else {
            return;
        };
        let shutdown = stopped(stop);
        if let Err(error) = recorder
            .run(&consumer, shutdown, move |tally| {
                metrics.count_recorded(tally)
            })
            .await
        {
            tracing::error!(%error, "the hit recorder stopped; opens and clicks wait in Redis");
        }
    })
}

/// Writes the provider webhook requests the API queued (bounces and complaints) in batches
/// until `stop` turns true; the batch in hand is finished first.
pub fn spawn_report_writer(
    state: &AppState,
    stop: &watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let queue = state.providers.queue()?.clone();
    let writer = state.providers.report_writer();
    let name = format!("{}-provider-reports", consumer_name());
    let stop = stop.clone();
    Some(tokio::spawn(async move {
        let open = || {
            let queue = queue.clone();
            async move { queue.queue().await.cloned() }
        };
        let Some(consumer) = consumer_of("provider report writer", open, &name, &stop).await else {
            return;
        };
        let shutdown = stopped(stop);
        let report = |applied: &clarion_campaign::feedback::Applied| {
            tracing::debug!(
                recorded = applied.recorded,
                duplicates = applied.duplicates,
                unknown = applied.unknown,
                marked = applied.marked,
                "provider events written"
            );
        };
        if let Err(error) = writer.run(&consumer, shutdown, report).await {
            tracing::error!(%error, "the provider report writer stopped; bounces and complaints wait in Redis");
        }
    }))
}

/// A consumer named `name` of the queue `open` opens, trying again every 5 s while Redis
/// does not answer; `None` when `stop` turns true first.
// A plain closure returning an owning future: an async closure's future borrows the
// closure, which `tokio::spawn`'s `Send` check cannot see through.
async fn consumer_of<J, F>(
    what: &str,
    open: impl Fn() -> F,
    name: &str,
    stop: &watch::Receiver<bool>,
) -> Option<clarion_queue::Consumer<J>>
where
    J: serde::de::DeserializeOwned,
    F: Future<Output = Result<clarion_queue::Queue<J>, clarion_queue::Error>>,
{
    let mut stop = stop.clone();
    loop {
        match open().await {
            Ok(queue) => match queue.consumer(name.to_owned()).await {
                Ok(consumer) => return Some(consumer),
                Err(error) => {
                    tracing::warn!(%error, "the {what} cannot read the queue; trying again")
                }
            },
            Err(error) => tracing::warn!(%error, "the {what} cannot open the queue; trying again"),
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return None,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Completes when `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
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
                        resumed_launches = done.resumed_launches,
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

/// Runs the segment sweep every `segments.sweep_interval_secs`, and every
/// `traits.recompute_interval_minutes` recomputes traits and CLV predictions first. With several Clarion
/// processes on one Redis, a lock makes one of them do each job per interval.
pub fn spawn_sweeper(state: &AppState) -> JoinHandle<()> {
    let db = state.db.clone();
    let redis = state.redis.clone();
    let key_prefix = state.settings.redis.key_prefix.clone();
    let period = Duration::from_secs(state.settings.segments.sweep_interval_secs);
    let traits_period = Duration::from_secs(state.settings.traits.recompute_interval_minutes * 60);
    let computation = state.settings.traits.computation();
    let clv = state.settings.traits.clv;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut traits_due = Instant::now() + traits_period;
        loop {
            ticker.tick().await;
            if !traits_period.is_zero() && Instant::now() >= traits_due {
                traits_due = Instant::now() + traits_period;
                if take_lock(&redis, &format!("{key_prefix}:lock:traits"), traits_period).await {
                    if let Err(error) =
                        clarion_campaign::traits::recompute_all(&db, &computation, &clv).await
                    {
                        tracing::warn!(%error, "trait recomputation failed; trying again next interval");
                    }
                    continue;
                }
            }
            if take_lock(&redis, &format!("{key_prefix}:lock:segment-sweep"), period).await
                && let Err(error) = clarion_segment::sweep::sweep_all(&db).await
            {
                tracing::warn!(%error, "segment sweep failed; trying again next interval");
            }
        }
    })
}

/// Whether this process should do a periodic job now: it holds the job's Redis lock for a
/// little less than the period. Without Redis every process does the job (the database
/// keeps that correct; only the work is repeated).
async fn take_lock(redis: &redis::aio::ConnectionManager, key: &str, period: Duration) -> bool {
    let mut connection = redis.clone();
    let millis = u64::try_from(period.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_sub(100)
        .max(1);
    let taken: redis::RedisResult<Option<String>> = redis::cmd("SET")
        .arg(key)
        .arg(std::process::id())
        .arg("NX")
        .arg("PX")
        .arg(millis)
        .query_async(&mut connection)
        .await;
    match taken {
        Ok(taken) => taken.is_some(),
        Err(error) => {
            tracing::debug!(%error, key, "no lock (Redis does not answer); doing the job anyway");
            true
        }
    }
}

/// Runs the campaign scheduler until `stop` turns true: tokio-cron-scheduler wakes it at the
/// next fire time of any schedule (rebuilt from the tables at start and every
/// `scheduling.resync_interval_secs`, which also renews the firing lease), and each wake-up
/// fires the due slots if this process holds the lease. Fire times are computed by
/// clarion-campaign, daylight-saving changes included.
pub fn spawn_scheduler(state: &AppState, stop: &watch::Receiver<bool>) -> JoinHandle<()> {
    let settings = &state.settings;
    let lease = Lease::new(
        state.redis.clone(),
        &settings.redis.key_prefix,
        consumer_name(),
        Duration::from_secs(settings.scheduling.lease_secs),
    );
    let scheduler = Arc::new(Scheduler::new(
        state.db.clone(),
        state.queues.clone(),
        settings.sending.clone(),
        settings.scheduling.clone(),
        lease,
        Arc::new(SystemClock),
    ));
    let resync = Duration::from_secs(settings.scheduling.resync_interval_secs);
    let mut stop = stop.clone();
    tokio::spawn(async move {
        match drive(Arc::clone(&scheduler), resync).await {
            Ok(mut jobs) => {
                let _ = stop.wait_for(|stopped| *stopped).await;
                if let Err(error) = jobs.shutdown().await {
                    tracing::warn!(%error, "the scheduler's timer did not stop cleanly");
                }
                if let Err(error) = scheduler.lease().release().await {
                    tracing::debug!(%error, "the scheduler lease was not released; it runs out by itself");
                }
            }
            Err(error) => {
                tracing::error!(%error, "the campaign scheduler could not start; schedules will not fire from this process");
            }
        }
    })
}

/// Runs the trigger rounds until `stop` turns true: every `triggers.tick_ms`, if this process
/// holds the scheduler's lease, new segment entries become pending sends and due sends are
/// moved into deliveries and enqueued ([`Triggers`]).
pub fn spawn_triggers(state: &AppState, stop: &watch::Receiver<bool>) -> JoinHandle<()> {
    let settings = &state.settings;
    let lease = Lease::new(
        state.redis.clone(),
        &settings.redis.key_prefix,
        consumer_name(),
        Duration::from_secs(settings.scheduling.lease_secs),
    );
    let triggers = Triggers::new(
        state.db.clone(),
        state.queues.clone(),
        settings.triggers.clone(),
        Arc::new(SystemClock),
    );
    let mut stop = stop.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(triggers.tick());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                _ = ticker.tick() => {}
            }
            match triggers.tick_with(&lease).await {
                Ok(round) if round.entries + round.sent + round.skipped > 0 => tracing::debug!(
                    entries = round.entries,
                    sent = round.sent,
                    skipped = round.skipped,
                    enqueued = round.enqueued,
                    "trigger round"
                ),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "trigger round failed; trying again at the next tick")
                }
            }
        }
    })
}

/// The timer's state: the one-shot job armed for the next fire time.
struct Wake {
    jobs: JobScheduler,
    armed: tokio::sync::Mutex<Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>>,
}

/// Starts the timer: a repeated job that resyncs with the tables, and a first round at once
/// (slots missed while the process was down are handled by their catch-up policy).
async fn drive(
    scheduler: Arc<Scheduler>,
    resync: Duration,
) -> Result<JobScheduler, JobSchedulerError> {
    let jobs = JobScheduler::new().await?;
    let wake = Arc::new(Wake {
        jobs: jobs.clone(),
        armed: tokio::sync::Mutex::new(None),
    });
    let (s, w) = (Arc::clone(&scheduler), Arc::clone(&wake));
    jobs.add(Job::new_repeated_async(resync, move |_, _| {
        round(Arc::clone(&s), Arc::clone(&w))
    })?)
    .await?;
    jobs.start().await?;
    round(scheduler, wake).await;
    Ok(jobs)
}

/// One wake-up: fire what is due, then arm the timer for the next fire time.
fn round(
    scheduler: Arc<Scheduler>,
    wake: Arc<Wake>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        match scheduler.tick().await {
            Ok(fired) if fired != Fired::default() => tracing::info!(
                launched = fired.launched,
                skipped = fired.skipped,
                failed = fired.failed,
                taken = fired.taken,
                "schedules fired"
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "firing schedules failed; trying again at the next round")
            }
        }
        let next = match scheduler.next_wake().await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(%error, "cannot read the next fire time; trying again at the next round");
                return;
            }
        };
        let mut armed = wake.armed.lock().await;
        if armed.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        if let Some((_, job)) = armed.take() {
            let _ = wake.jobs.remove(&job).await;
        }
        let Some(at) = next else {
            return;
        };
        let delay = (at - scheduler.now()).to_std().unwrap_or(Duration::ZERO);
        let (s, w) = (Arc::clone(&scheduler), Arc::clone(&wake));
        let job = Job::new_one_shot_async(delay, move |_, _| {
            let (s, w) = (Arc::clone(&s), Arc::clone(&w));
            Box::pin(async move {
                // Free the slot first, so this round arms the next one.
                w.armed.lock().await.take();
                round(s, w).await;
            })
        });
        match job {
            Ok(job) => match wake.jobs.add(job).await {
                Ok(id) => *armed = Some((at, id)),
                Err(error) => tracing::warn!(%error, "cannot arm the scheduler's timer"),
            },
            Err(error) => tracing::warn!(%error, "cannot arm the scheduler's timer"),
        }
    })
}
