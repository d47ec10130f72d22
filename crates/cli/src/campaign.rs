//! `clarion campaign`: launch a campaign and follow, pause, resume, cancel or retry it from
//! the command line, against the configured database and Redis.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use clarion_campaign::{control, deliveries, launch::launch, store};
use clarion_model::{CampaignId, DEFAULT_WORKSPACE, RunStatus};
use clarion_server::{AppState, Settings};

#[derive(Subcommand)]
pub enum CampaignCommand {
    /// Launch a draft campaign now: write its deliveries and enqueue them for the workers
    /// (`clarion serve` or `clarion serve --role worker` sends them).
    Launch {
        /// The campaign's id.
        id: i64,
        /// Keep printing the progress until every delivery is settled.
        #[arg(long)]
        follow: bool,
    },
    /// Print a launched campaign's progress (add --follow to keep printing it).
    Progress {
        id: i64,
        #[arg(long)]
        follow: bool,
    },
    /// Pause a sending campaign.
    Pause {
        id: i64,
        /// Why, shown with the campaign.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused campaign.
    Resume { id: i64 },
    /// Cancel a sending or paused campaign; queued deliveries are cancelled.
    Cancel { id: i64 },
    /// Send a campaign's failed deliveries again.
    Retry { id: i64 },
}

pub async fn run(command: CampaignCommand, settings: Settings) -> anyhow::Result<()> {
    let state = AppState::connect(settings).await?;
    let workspace = DEFAULT_WORKSPACE;
    match command {
        CampaignCommand::Launch { id, follow } => {
            let report = launch(
                &state.db,
                &state.queues,
                &state.settings.sending,
                workspace,
                CampaignId(id),
                None,
            )
            .await
            .with_context(|| format!("launching campaign {id}"))?;
            let suppressed: u64 = report.suppressed.values().sum();
            println!(
                "campaign {id} launched (run {}) in {} ms: {} contacts, {} deliveries queued, {} held out, {} suppressed {:?}",
                report.run_id,
                report.elapsed_ms,
                report.audience,
                report.queued,
                report.holdout,
                suppressed,
                report.suppressed
            );
            if report.enqueue_deferred > 0 {
                println!(
                    "{} jobs could not be enqueued (Redis failed); they stay queued in the database and are enqueued by the scheduler",
                    report.enqueue_deferred
                );
            }
            if follow {
                follow_progress(&state, id).await?;
            }
        }
        CampaignCommand::Progress { id, follow } => {
            if follow {
                follow_progress(&state, id).await?;
            } else {
                print_progress(&state, id).await?;
            }
        }
        CampaignCommand::Pause { id, reason } => {
            let reason = reason.unwrap_or_else(|| "paused from the command line".to_owned());
            let run = control::pause(&state.db, workspace, CampaignId(id), &reason).await?;
            println!("campaign {id}: run {} is {}", run.id, run.status.as_str());
        }
        CampaignCommand::Resume { id } => {
            let run = control::resume(&state.db, &state.queues, workspace, CampaignId(id)).await?;
            println!("campaign {id}: run {} is {}", run.id, run.status.as_str());
        }
        CampaignCommand::Cancel { id } => {
            let run = control::cancel(&state.db, workspace, CampaignId(id)).await?;
            println!("campaign {id}: run {} is {}", run.id, run.status.as_str());
        }
        CampaignCommand::Retry { id } => {
            let (run, retried) =
                control::retry_failed(&state.db, &state.queues, workspace, CampaignId(id), None)
                    .await?;
            println!(
                "campaign {id}: {retried} failed deliveries queued again; run {} is {}",
                run.id,
                run.status.as_str()
            );
        }
    }
    Ok(())
}

/// Prints the progress once; returns whether the run is still going.
async fn print_progress(state: &AppState, id: i64) -> anyhow::Result<bool> {
    let campaign = store::get(&state.db, DEFAULT_WORKSPACE, CampaignId(id))
        .await?
        .with_context(|| format!("campaign {id} does not exist"))?;
    let Some(progress) = deliveries::progress(&state.db, DEFAULT_WORKSPACE, &campaign).await?
    else {
        anyhow::bail!("campaign {id} has not been launched");
    };
    let count = |status: &str| progress.totals.get(status).copied().unwrap_or(0);
    let eta = progress
        .eta_seconds
        .map_or_else(|| "-".to_owned(), |s| format!("{s} s"));
    println!(
        "campaign {id} {}: sent {}, queued {}, sending {}, failed {}, suppressed {}, holdout {}, cancelled {}; {:.1}/s, time left {eta}{}",
        progress.run.status.as_str(),
        count("sent"),
        count("queued"),
        count("sending"),
        count("failed"),
        count("suppressed"),
        count("holdout"),
        count("cancelled"),
        progress.rate_per_second,
        progress
            .run
            .status_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
    );
    Ok(progress.run.status == RunStatus::Running)
}

async fn follow_progress(state: &AppState, id: i64) -> anyhow::Result<()> {
    while print_progress(state, id).await? {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}
