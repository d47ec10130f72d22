//! `clarion traits`: computed traits (orders, revenue, RFM, historic and predicted CLV,
//! interest profiles) on demand.

use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use clarion_model::{DEFAULT_WORKSPACE, Timestamp};
use clarion_server::{Settings, db};

#[derive(Subcommand)]
pub enum TraitsCommand {
    /// Recompute every contact's traits, interests and CLV predictions now, with the
    /// `[traits]` settings, and print what came out and how long it took.
    Recompute {
        /// Compute as of this moment (RFC 3339) instead of now, e.g. to look at a historic
        /// data set such as Online Retail as of its last day.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Read every event again instead of starting from the stored traits (which a
        /// computation within a day of the last full one with the same settings does).
        #[arg(long)]
        full: bool,
    },
}

pub async fn run(command: TraitsCommand, settings: Settings) -> anyhow::Result<()> {
    match command {
        TraitsCommand::Recompute { at, full } => {
            let now = match at {
                Some(text) => Timestamp::parse(&text).with_context(|| format!("--at {text:?}"))?,
                None => Timestamp::now(),
            };
            let db = db::connect(&settings.database).await?;
            db::migrate(&db).await?;
            if full {
                clarion_segment::traits::require_full(&db, DEFAULT_WORKSPACE).await?;
            }
            let started = Instant::now();
            let done = clarion_campaign::traits::recompute(
                &db,
                DEFAULT_WORKSPACE,
                now,
                &settings.traits.computation(),
                &settings.traits.clv,
            )
            .await?;
            clarion_segment::sweep::sweep_all(&db).await?;
            let elapsed = started.elapsed();
            let summary = done.traits;
            println!(
                "traits recomputed as of {} in {:.2} s: {} contacts with purchases ({:.2} s, {}), \
                 {} with interests in {} (contact, category) scores ({:.2} s)",
                summary.computed_at,
                elapsed.as_secs_f64(),
                summary.contacts,
                summary.purchases_elapsed.as_secs_f64(),
                if summary.full {
                    "from every event"
                } else {
                    "the stored rows caught up"
                },
                summary.interest_contacts,
                summary.interest_scores,
                summary.interests_elapsed.as_secs_f64(),
            );
            for name in clarion_segment::traits::RFM_SEGMENTS {
                let members = summary.segments.get(name).copied().unwrap_or(0);
                let share = members as f64 * 100.0 / summary.contacts.max(1) as f64;
                println!("  {name:<20} {members:>9}  {share:>5.1} %");
            }
            let predictions = done.predictions;
            match (predictions.bg_nbd, predictions.gamma_gamma) {
                (Some(bg), gg) => {
                    let unit = format!("{:?}", settings.traits.clv.unit).to_lowercase();
                    println!(
                        "CLV predictions for {} buyers ({} with a repeat purchase day) in {:.2} s",
                        predictions.customers,
                        predictions.repeat_customers,
                        predictions.elapsed_ms as f64 / 1000.0
                    );
                    println!(
                        "  BG/NBD ({unit}): r = {:.4}, alpha = {:.4}, a = {:.4}, b = {:.4}, log-likelihood {:.2}",
                        bg.params.r,
                        bg.params.alpha,
                        bg.params.a,
                        bg.params.b,
                        bg.quality.log_likelihood
                    );
                    match gg {
                        Some(gg) => println!(
                            "  Gamma-Gamma on {} repeat buyers: p = {:.4}, q = {:.4}, gamma = {:.4}, log-likelihood {:.2}",
                            gg.quality.customers,
                            gg.params.p,
                            gg.params.q,
                            gg.params.gamma,
                            gg.quality.log_likelihood
                        ),
                        None => println!(
                            "  no order-value model: {}",
                            predictions.not_fitted.as_deref().unwrap_or("")
                        ),
                    }
                }
                (None, _) => println!(
                    "no CLV predictions for {} buyers: {}",
                    predictions.customers,
                    predictions.not_fitted.as_deref().unwrap_or("")
                ),
            }
            Ok(())
        }
    }
}
