//! Delayed retries with backoff, and dead letters once attempts run out.

use std::time::{Duration, SystemTime};

use clarion_queue::{FailureKind, QueueConfig};
use redis::AsyncCommands;

use crate::{TestQueue, job, test_config};

#[tokio::test]
async fn a_retried_job_waits_in_the_delayed_set_until_due() {
    let q = TestQueue::new(QueueConfig {
        // Long enough that the job is surely not due while the test looks at it.
        backoff_base: Duration::from_secs(3600),
        backoff_max: Duration::from_secs(3600),
        ..test_config()
    })
    .await;
    q.enqueue(&job(1)).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    let first = consumer.next_batch(10).await.unwrap().remove(0);

    let settled = consumer.retry(&first, "connection reset").await.unwrap();
    assert_eq!(settled.retried, 1);

    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.pending, stats.delayed), (0, 0, 1));
    let mut redis = q.redis().await;
    let scored: Vec<(String, f64)> = redis
        .zrange_withscores(&q.keys().delayed, 0, -1)
        .await
        .unwrap();
    let due_ms = scored[0].1;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    assert!(
        (due_ms - now_ms - 3_600_000.0).abs() < 60_000.0,
        "due in about one hour (the backoff of attempt 1)"
    );

    assert_eq!(q.promote_due().await.unwrap(), 0, "not due yet");
    assert!(consumer.try_next_batch(10).await.unwrap().is_empty());

    let in_two_hours = SystemTime::now() + Duration::from_secs(7200);
    assert_eq!(q.promote_due_at(in_two_hours).await.unwrap(), 1);
    let again = consumer.try_next_batch(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job, job(1));
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].last_error.as_deref(), Some("connection reset"));
    assert_eq!(q.stats().await.unwrap().delayed, 0);
}

#[tokio::test]
async fn a_short_backoff_brings_the_job_back_through_next_batch() {
    let q = TestQueue::new(QueueConfig {
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
        ..test_config()
    })
    .await;
    q.enqueue(&job(1)).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    let first = consumer.next_batch(10).await.unwrap().remove(0);
    consumer.retry(&first, "timeout").await.unwrap();

    // next_batch promotes due retries before reading.
    let again = consumer.next_batch(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
}

#[tokio::test]
async fn a_job_failing_every_attempt_ends_in_the_dead_letters_with_its_errors() {
    let q = TestQueue::new(QueueConfig {
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
        ..test_config()
    })
    .await;
    let id = q.enqueue(&job(9)).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();

    let mut attempts = Vec::new();
    loop {
        let batch = consumer.next_batch(10).await.unwrap();
        let Some(delivery) = batch.into_iter().next() else {
            break;
        };
        attempts.push(delivery.attempt);
        let error = format!("smtp 451 on attempt {}", delivery.attempt);
        consumer.retry(&delivery, error).await.unwrap();
    }
    assert_eq!(attempts, vec![1, 2, 3], "max_attempts is 3");

    let dead = q.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.kind, FailureKind::Exhausted);
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.error, "smtp 451 on attempt 3");
    assert_eq!(
        letter.previous_error.as_deref(),
        Some("smtp 451 on attempt 2")
    );
    assert_eq!(letter.decode::<crate::SendEmail>().unwrap(), job(9));
    assert!(letter.source_id.is_some());
    assert_ne!(
        letter.source_id.as_ref(),
        Some(&id),
        "the job re-entered the stream"
    );
    let age = SystemTime::now()
        .duration_since(letter.failed_at.unwrap())
        .unwrap_or_default();
    assert!(age < Duration::from_secs(60));

    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.delayed, stats.dead), (0, 0, 1));
    assert_eq!((stats.retried_total, stats.dead_lettered_total), (2, 1));
}

#[tokio::test]
async fn retry_after_overrides_the_backoff() {
    let q = TestQueue::new(test_config()).await;
    q.enqueue(&job(1)).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    let first = consumer.next_batch(10).await.unwrap().remove(0);
    consumer
        .settle(vec![(
            first.receipt(),
            clarion_queue::Outcome::Retry {
                error: "429".to_owned(),
                after: Some(Duration::from_secs(600)),
            },
        )])
        .await
        .unwrap();
    let soon = SystemTime::now() + Duration::from_secs(300);
    assert_eq!(q.promote_due_at(soon).await.unwrap(), 0);
    let later = SystemTime::now() + Duration::from_secs(900);
    assert_eq!(q.promote_due_at(later).await.unwrap(), 1);
}

#[tokio::test]
async fn a_postponed_job_comes_back_without_using_an_attempt() {
    let q = TestQueue::new(QueueConfig {
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
        ..test_config()
    })
    .await;
    q.enqueue(&job(1)).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    let first = consumer.next_batch(10).await.unwrap().remove(0);
    consumer.retry(&first, "greylisted").await.unwrap();
    let second = consumer.next_batch(10).await.unwrap().remove(0);
    assert_eq!(second.attempt, 2);

    // Quiet hours: try again later, and that is not a failure.
    consumer
        .settle(vec![(
            second.receipt(),
            clarion_queue::Outcome::Postpone {
                after: Duration::from_secs(3600),
            },
        )])
        .await
        .unwrap();
    assert_eq!(q.promote_due().await.unwrap(), 0);
    let later = SystemTime::now() + Duration::from_secs(7200);
    assert_eq!(q.promote_due_at(later).await.unwrap(), 1);
    let third = consumer.try_next_batch(10).await.unwrap().remove(0);
    assert_eq!(third.attempt, 2, "the postponement used no attempt");
    assert_eq!(third.last_error.as_deref(), Some("greylisted"));
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.retried_total, stats.postponed_total), (1, 1));
}

#[tokio::test]
async fn jobs_enqueued_for_later_wait_until_due() {
    let q = TestQueue::new(test_config()).await;
    let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(
        q.enqueue_at(&[job(1), job(2)], in_an_hour).await.unwrap(),
        2
    );
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.delayed, stats.depth), (2, 0));

    let consumer = q.consumer("c1").await.unwrap();
    assert!(
        consumer.next_batch(10).await.unwrap().is_empty(),
        "not due yet"
    );
    let later = in_an_hour + Duration::from_secs(1);
    assert_eq!(q.promote_due_at(later).await.unwrap(), 2);
    let batch = consumer.try_next_batch(10).await.unwrap();
    let mut got: Vec<_> = batch
        .iter()
        .map(|d| (d.job.delivery_id, d.attempt))
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec![(1, 1), (2, 1)]);
    assert!(batch.iter().all(|d| d.last_error.is_none()));
}
