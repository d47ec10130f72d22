//! Queue figures match what happened.

use std::time::Duration;

use clarion_queue::QueueConfig;

use crate::{TestQueue, job, test_config};

#[tokio::test]
async fn stats_reflect_waiting_in_flight_delayed_and_dead_jobs() {
    let q = TestQueue::new(QueueConfig {
        backoff_base: Duration::from_secs(3600),
        backoff_max: Duration::from_secs(3600),
        ..test_config()
    })
    .await;
    let empty = q.stats().await.unwrap();
    assert_eq!(empty, clarion_queue::QueueStats::default());

    let jobs: Vec<_> = (0..10).map(job).collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    let batch = consumer.next_batch(4).await.unwrap();

    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.depth, stats.lag, stats.pending, stats.consumers),
        (10, 6, 4, 1)
    );

    consumer
        .ack(&[batch[0].id.clone(), batch[1].id.clone()])
        .await
        .unwrap();
    consumer.retry(&batch[2], "timeout").await.unwrap();
    consumer.dead_letter(&batch[3], "bounced").await.unwrap();

    let stats = q.stats().await.unwrap();
    assert_eq!(stats.depth, 6);
    assert_eq!(stats.lag, 6);
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.delayed, 1);
    assert_eq!(stats.dead, 1);
    assert_eq!(stats.retried_total, 1);
    assert_eq!(stats.dead_lettered_total, 1);

    // Lag stays right after deletions that happened behind the group's read position.
    let more = consumer.next_batch(3).await.unwrap();
    let ids: Vec<_> = more.iter().map(|d| d.id.clone()).collect();
    consumer.ack(&ids).await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.lag, stats.pending), (3, 3, 0));
}
