//! Runs the dispatch benchmarks and prints one line per figure:
//! `cargo run --release -p clarion-dispatch --example dispatch_bench`.
//!
//! Optional arguments: email message count, webhook delivery count, SMTP connections.

use clarion_dispatch::bench::{self, BenchOptions};

#[tokio::main]
async fn main() {
    clarion_dispatch::install_crypto_provider();
    let mut options = BenchOptions::default();
    let mut args = std::env::args().skip(1);
    if let Some(count) = args.next().and_then(|count| count.parse().ok()) {
        options.email_messages = count;
    }
    if let Some(count) = args.next().and_then(|count| count.parse().ok()) {
        options.webhook_deliveries = count;
    }
    if let Some(count) = args.next().and_then(|count| count.parse().ok()) {
        options.email_connections = count;
    }
    println!("{}", bench::run(&options).await);
}
