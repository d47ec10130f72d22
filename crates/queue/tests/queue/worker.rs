//! The long-running worker loop.

use std::time::Duration;

use clarion_queue::{Outcome, Received};
use tokio::sync::{mpsc, oneshot};

use crate::{SendEmail, TestQueue, job, test_config};

#[tokio::test]
async fn a_spawned_worker_processes_jobs_and_stops_on_shutdown() {
    let q = TestQueue::new(test_config()).await;
    let consumer = q.consumer("worker-1").await.unwrap();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();

    let worker = tokio::spawn(async move {
        consumer
            .run(
                async move |batch: Vec<Received<SendEmail>>| {
                    for delivery in &batch {
                        seen_tx.send(delivery.job.delivery_id).unwrap();
                    }
                    vec![Outcome::Ack; batch.len()]
                },
                async move {
                    let _ = stop_rx.await;
                },
            )
            .await
    });

    let jobs: Vec<_> = (0..25).map(job).collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 25 {
        seen.push(seen_rx.recv().await.unwrap());
    }
    stop_tx.send(()).unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker stops within the block time")
        .unwrap()
        .unwrap();

    seen.sort_unstable();
    assert_eq!(seen, (0..25).collect::<Vec<_>>());
    assert_eq!((stats.handled, stats.acked), (25, 25));
    assert_eq!(q.stats().await.unwrap().pending, 0);
}
