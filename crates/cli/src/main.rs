//! `clarion`: runs the server, migrates the database, imports CSV, manages API keys,
//! computes traits and measures throughput.

mod bench;
mod bench_segments;
mod import;
mod keys;
mod traits;

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
    /// Run the HTTP server (API, documentation, health and metrics).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Import contacts or events from a CSV file (optionally gzip-compressed).
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
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
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let db = db::connect(&settings.database).await?;
            db::migrate(&db).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Import(command) => import::run(command, settings).await,
        Command::Keys(command) => keys::run(command, settings).await,
        Command::Traits(command) => traits::run(command, settings).await,
        Command::Bench(command) => bench::run(command, settings).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let public_url = settings.server.public_url.clone();
    let state = AppState::connect(settings).await?;
    if store::keys::list(&state.db, DEFAULT_WORKSPACE)
        .await?
        .is_empty()
    {
        println!(
            "No API key exists yet: create one with `clarion keys create --role admin` (shown once)."
        );
    }
    let sweeper = clarion_server::realtime::spawn_sweeper(
        state.db.clone(),
        state.settings.segments.clone(),
        state.settings.traits.clone(),
        state.redis.clone(),
        state.settings.redis.key_prefix.clone(),
    );
    let application = Application::from_state(state)?;
    let handle = application.handle();
    tracing::info!(port = application.port(), %public_url, "Clarion is serving; API reference at /api/docs");
    println!(
        "Clarion is listening on port {} ({public_url}); API reference at {public_url}/api/docs",
        application.port()
    );
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
        handle.stop(true).await;
    });
    application.run_until_stopped().await?;
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
