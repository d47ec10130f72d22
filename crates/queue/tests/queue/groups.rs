//! Several consumers in one group: sharing work and taking over from dead workers.

use std::collections::HashSet;
use std::time::Duration;

use clarion_queue::{FailureKind, Outcome, QueueConfig, Received};

use crate::{SendEmail, TestQueue, job, test_config};

#[tokio::test]
async fn two_consumers_share_the_work_without_duplicates() {
    let q = TestQueue::new(test_config()).await;
    let jobs: Vec<SendEmail> = (0..500).map(job).collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let a = q.consumer("a").await.unwrap();
    let b = q.consumer("b").await.unwrap();

    let drain = async |consumer: &clarion_queue::Consumer<SendEmail>| {
        let mut seen = Vec::new();
        loop {
            let batch = consumer.try_next_batch(7).await.unwrap();
            if batch.is_empty() {
                return seen;
            }
            let ids: Vec<_> = batch.iter().map(|d| d.id.clone()).collect();
            seen.extend(batch.into_iter().map(|d| d.job.delivery_id));
            consumer.ack(&ids).await.unwrap();
            // Give the other consumer a turn.
            tokio::task::yield_now().await;
        }
    };
    let (seen_a, seen_b) = tokio::join!(drain(&a), drain(&b));

    assert!(!seen_a.is_empty() && !seen_b.is_empty(), "both got work");
    let all: HashSet<u64> = seen_a.iter().chain(&seen_b).copied().collect();
    assert_eq!(seen_a.len() + seen_b.len(), 500, "no job twice");
    assert_eq!(all, (0..500).collect());
}

#[tokio::test]
async fn jobs_of_a_dead_consumer_are_reclaimed_by_another() {
    let q = TestQueue::new(test_config()).await;
    q.enqueue_batch(&[job(1), job(2), job(3)]).await.unwrap();
    {
        let doomed = q.consumer("doomed").await.unwrap();
        let taken = doomed.next_batch(2).await.unwrap();
        assert_eq!(taken.len(), 2);
        // The worker dies here: dropped without settling anything.
    }
    let survivor = q.consumer("survivor").await.unwrap();

    let (none, _) = survivor
        .reclaim_idle(Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(
        none.is_empty(),
        "jobs in flight for less than min-idle stay put"
    );

    let (reclaimed, dead) = survivor.reclaim_idle(Duration::ZERO).await.unwrap();
    assert_eq!(dead, 0);
    let mut ids: Vec<u64> = reclaimed.iter().map(|d| d.job.delivery_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    assert!(
        reclaimed.iter().all(|d| d.attempt == 2),
        "the lost delivery counts as an attempt"
    );
    let reclaimed_ids: Vec<_> = reclaimed.iter().map(|d| d.id.clone()).collect();
    survivor.ack(&reclaimed_ids).await.unwrap();

    let rest = survivor.try_next_batch(10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].job, job(3));
}

#[tokio::test]
async fn run_once_takes_over_abandoned_jobs() {
    let q = TestQueue::new(QueueConfig {
        reclaim_min_idle: Duration::ZERO,
        ..test_config()
    })
    .await;
    q.enqueue_batch(&[job(1), job(2)]).await.unwrap();
    let doomed = q.consumer("doomed").await.unwrap();
    assert_eq!(doomed.next_batch(10).await.unwrap().len(), 2);
    drop(doomed);

    let survivor = q.consumer("survivor").await.unwrap();
    let stats = survivor
        .run_once(async |batch: Vec<Received<SendEmail>>| vec![Outcome::Ack; batch.len()])
        .await
        .unwrap();
    assert_eq!((stats.reclaimed, stats.acked), (2, 2));
    assert_eq!(q.stats().await.unwrap().depth, 0);
}

#[tokio::test]
async fn a_job_that_keeps_killing_workers_is_dead_lettered_as_abandoned() {
    let q = TestQueue::new(test_config()).await;
    q.enqueue(&job(13)).await.unwrap();
    let first = q.consumer("w0").await.unwrap();
    assert_eq!(first.next_batch(10).await.unwrap().len(), 1);

    // Attempts 2 and 3 (max_attempts) are reclaims by workers that die as well.
    for worker in ["w1", "w2"] {
        let consumer = q.consumer(worker).await.unwrap();
        let (batch, _) = consumer.reclaim_idle(Duration::ZERO).await.unwrap();
        assert_eq!(batch.len(), 1);
    }
    let last = q.consumer("w3").await.unwrap();
    let (batch, dead) = last.reclaim_idle(Duration::ZERO).await.unwrap();
    assert!(batch.is_empty());
    assert_eq!(dead, 1);

    let letters = q.dead_letters(None, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind, FailureKind::Abandoned);
    assert_eq!(letters[0].attempts, 4);
    assert_eq!(q.stats().await.unwrap().pending, 0);
}

#[tokio::test]
async fn a_consumer_cannot_retry_a_job_another_consumer_took_over() {
    let q = TestQueue::new(test_config()).await;
    q.enqueue(&job(1)).await.unwrap();
    let slow = q.consumer("slow").await.unwrap();
    let delivery = slow.next_batch(10).await.unwrap().remove(0);
    let other = q.consumer("other").await.unwrap();
    assert_eq!(other.reclaim_idle(Duration::ZERO).await.unwrap().0.len(), 1);

    let settled = slow.retry(&delivery, "late failure").await.unwrap();
    assert_eq!(
        settled.retried, 0,
        "the job now belongs to the other consumer"
    );
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.delayed, stats.pending), (0, 1));
}

#[tokio::test]
async fn consumers_that_exited_are_removed_but_not_those_holding_jobs() {
    let q = TestQueue::new(test_config()).await;
    q.enqueue_batch(&[job(1), job(2)]).await.unwrap();
    let holder = q.consumer("holder").await.unwrap();
    assert_eq!(holder.next_batch(1).await.unwrap().len(), 1);
    let exited = q.consumer("exited").await.unwrap();
    let done = exited.try_next_batch(1).await.unwrap().remove(0);
    exited.ack(&[done.id]).await.unwrap();
    assert_eq!(q.stats().await.unwrap().consumers, 2);

    assert_eq!(
        q.remove_idle_consumers(Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "nobody has been idle that long"
    );
    assert_eq!(q.remove_idle_consumers(Duration::ZERO).await.unwrap(), 1);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.consumers, stats.pending), (1, 1));
}
