//! `clarion`: runs the server, migrates the database, imports CSV, manages API keys and
//! dashboard users, computes traits and measures throughput.

mod bench;
mod bench_dashboard;
mod bench_feedback;
mod bench_kpi;
mod bench_segments;
mod bench_sending;
mod bench_tracking;
mod bench_triggers;
mod bench_waves;
mod campaign;
mod import;
mod keys;
mod roles;
mod traits;
mod users;

use clap::{Parser, Subcommand};
use clarion_model::DEFAULT_WORKSPACE;
use clarion_server::{AppState, Application, Settings, db, store, telemetry};

#[derive(Parser)]
#[command(name = "clarion", version, about = "Clarion: segmented campaign orchestration", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Clarion: the HTTP API, delivery workers and the scheduler (all three by default).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Import contacts or events from a CSV file (optionally gzip-compressed).
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Create dashboard users (the first admin), print reset links, list users.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Launch campaigns and follow, pause, resume, cancel or retry them.
    #[command(subcommand)]
    Campaign(campaign::CampaignCommand),
    /// Compute traits: RFM scores and segments, historic CLV, interest profiles.
    #[command(subcommand)]
    Traits(traits::TraitsCommand),
    /// Measure throughput on fresh databases (figures for the README and release notes).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(settings, &args.roles()).await,
        Command::Migrate => {
            let db = db::connect(&settings.database).await?;
            db::migrate(&db).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Import(command) => import::run(command, settings).await,
        Command::Keys(command) => keys::run(command, settings).await,
        Command::Users(command) => users::run(command, settings).await,
        Command::Traits(command) => traits::run(command, settings).await,
        Command::Campaign(command) => campaign::run(command, settings).await,
        Command::Bench(command) => bench::run(command, settings).await,
    }
}

/// What a `clarion serve` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// The HTTP API, tracking endpoints, documentation, health and metrics; the segment sweep.
    Api,
    /// Delivery workers (take jobs from the queues, render, send, record), the recorder
    /// of the opens and clicks the tracking endpoints queued, and the writer of the
    /// bounces and complaints the provider webhooks queued.
    Worker,
    /// The supervisor: completes finished campaigns and re-enqueues lost jobs.
    Scheduler,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Roles of this process; repeat or separate with commas (`--role api,worker`). All three
    /// when left out: one process runs everything.
    #[arg(long = "role", value_enum, value_delimiter = ',')]
    role: Vec<Role>,
}

impl ServeArgs {
    fn roles(&self) -> Vec<Role> {
        if self.role.is_empty() {
            vec![Role::Api, Role::Worker, Role::Scheduler]
        } else {
            self.role.clone()
        }
    }
}

async fn serve(settings: Settings, roles: &[Role]) -> anyhow::Result<()> {
    let public_url = settings.server.public_url.clone();
    let state = AppState::connect(settings).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    if roles.contains(&Role::Worker) {
        let worker = std::sync::Arc::new(state.delivery_worker().await?);
        tasks.extend(roles::spawn_workers(&state, worker, &stopped));
        tasks.push(roles::spawn_recorder(&state, &stopped));
        tasks.extend(roles::spawn_report_writer(&state, &stopped));
        tracing::info!("delivery workers, the hit recorder and the provider report writer started");
    }
    if roles.contains(&Role::Scheduler) {
        tasks.push(roles::spawn_supervisor(&state, &stopped));
        tasks.push(roles::spawn_scheduler(&state, &stopped));
        tasks.push(roles::spawn_triggers(&state, &stopped));
    }
    if !roles.contains(&Role::Api) {
        println!("Clarion is running as {roles:?}; stop it with Ctrl-C");
        shutdown_signal().await;
        tracing::info!("shutting down: finishing the batches in hand");
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        return Ok(());
    }
    if store::keys::list(&state.db, DEFAULT_WORKSPACE)
        .await?
        .is_empty()
    {
        println!(
            "No API key exists yet: create one with `clarion keys create --role admin` (shown once)."
        );
    }
    let sweeper = roles::spawn_sweeper(&state);
    let application = Application::from_state(state)?;
    // The overview's and large segments' slow figures (seconds at a million contacts) are
    // computed now, in the background, instead of at the first views after a start.
    let state = application.state();
    tokio::spawn(async move {
        state.overview.warm(&state.db).await;
        clarion_server::dashboard::PageFigures::warm(&state).await;
    });
    let handle = application.handle();
    tracing::info!(port = application.port(), %public_url, "Clarion is serving; API reference at /api/docs");
    println!(
        "Clarion is listening on port {} ({public_url}); API reference at {public_url}/api/docs",
        application.port()
    );
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests and batches in flight");
        let _ = stop.send(true);
        handle.stop(true).await;
    });
    application.run_until_stopped().await?;
    for task in tasks {
        let _ = task.await;
    }
    sweeper.abort();
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
