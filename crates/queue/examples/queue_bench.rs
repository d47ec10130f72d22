//! Measures the queue against the local Redis and prints one line per figure.
//!
//! Usage: `cargo run --release -p clarion-queue --example queue_bench [JOBS] [REDIS_URL]`
//! (defaults: 1,000,000 jobs, `$REDIS_URL` or redis://127.0.0.1:6379).

use clarion_queue::bench::{BenchOptions, run};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut options = BenchOptions::default();
    let mut args = std::env::args().skip(1);
    if let Some(jobs) = args.next() {
        options.jobs = jobs.replace(['_', ','], "").parse()?;
    }
    if let Some(url) = args.next().or_else(|| std::env::var("REDIS_URL").ok()) {
        options.redis_url = url;
    }
    let report = run(&options).await?;
    println!("{report}");
    Ok(())
}
