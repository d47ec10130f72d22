//! Enqueue, read and acknowledge.

use std::time::Duration;

use clarion_queue::{Outcome, Received};
use redis::AsyncCommands;

use crate::{SendEmail, TestQueue, job, test_config};

#[tokio::test]
async fn typed_jobs_come_back_as_they_were_enqueued() {
    let q = TestQueue::new(test_config()).await;
    let jobs: Vec<SendEmail> = (1..=3).map(job).collect();
    let ids = q.enqueue_batch(&jobs).await.unwrap();
    assert_eq!(ids.len(), 3);

    let consumer = q.consumer("c1").await.unwrap();
    let batch = consumer.next_batch(10).await.unwrap();

    let got: Vec<&SendEmail> = batch.iter().map(|d| &d.job).collect();
    assert_eq!(got, jobs.iter().collect::<Vec<_>>());
    assert_eq!(
        batch.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        ids,
        "deliveries carry the ids enqueue returned, in order"
    );
    assert!(
        batch
            .iter()
            .all(|d| d.attempt == 1 && d.last_error.is_none())
    );
}

#[tokio::test]
async fn single_enqueue_returns_the_entry_id() {
    let q = TestQueue::new(test_config()).await;
    let id = q.enqueue(&job(7)).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    let batch = consumer.try_next_batch(10).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].id, id);
    assert_eq!(batch[0].job, job(7));
}

#[tokio::test]
async fn reads_are_limited_to_the_batch_size_and_miss_nothing() {
    let q = TestQueue::new(test_config()).await;
    // More than one enqueue pipeline (chunk of 1,000) and many read batches.
    let jobs: Vec<SendEmail> = (0..2_500).map(job).collect();
    q.enqueue_batch(&jobs).await.unwrap();

    let consumer = q.consumer("c1").await.unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = consumer.try_next_batch(100).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 100);
        let ids: Vec<_> = batch.iter().map(|d| d.id.clone()).collect();
        seen.extend(batch.into_iter().map(|d| d.job.delivery_id));
        consumer.ack(&ids).await.unwrap();
    }
    assert_eq!(
        seen,
        (0..2_500).collect::<Vec<_>>(),
        "every job once, in order"
    );
}

#[tokio::test]
async fn acknowledged_jobs_are_never_delivered_again() {
    let q = TestQueue::new(test_config()).await;
    q.enqueue_batch(&[job(1), job(2)]).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    let batch = consumer.next_batch(10).await.unwrap();
    let ids: Vec<_> = batch.iter().map(|d| d.id.clone()).collect();

    assert_eq!(consumer.ack(&ids).await.unwrap(), 2);

    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.pending, stats.lag), (0, 0, 0));
    assert!(consumer.try_next_batch(10).await.unwrap().is_empty());
    let other = q.consumer("c2").await.unwrap();
    assert!(
        other
            .reclaim_idle(Duration::ZERO)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    assert_eq!(
        consumer.ack(&ids).await.unwrap(),
        0,
        "a second ack is harmless"
    );
}

#[tokio::test]
async fn settled_entries_are_trimmed_from_the_stream() {
    let q = TestQueue::new(test_config()).await;
    let jobs: Vec<SendEmail> = (0..1_000).map(job).collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    loop {
        let batch = consumer.try_next_batch(100).await.unwrap();
        if batch.is_empty() {
            break;
        }
        let ids: Vec<_> = batch.iter().map(|d| d.id.clone()).collect();
        consumer.ack(&ids).await.unwrap();
    }
    let mut redis = q.redis().await;
    let len: usize = redis.xlen(&q.keys().stream).await.unwrap();
    // Trimming frees whole internal nodes (100 entries by default), so a tail may remain.
    assert!(len <= 200, "stream still holds {len} settled entries");
    assert_eq!(q.stats().await.unwrap().depth, 0);
}

#[tokio::test]
async fn trimming_keeps_jobs_in_flight_and_jobs_not_yet_read() {
    let q = TestQueue::new(test_config()).await;
    let jobs: Vec<SendEmail> = (0..1_000).map(job).collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let slow = q.consumer("slow").await.unwrap();
    let held = slow.next_batch(1).await.unwrap().remove(0);
    assert_eq!(held.job, job(0));

    // Another worker settles most of the rest while the oldest job is still in flight.
    let fast = q.consumer("fast").await.unwrap();
    let mut settled = 0;
    while settled < 800 {
        let batch = fast.try_next_batch(100).await.unwrap();
        let ids: Vec<_> = batch.iter().map(|d| d.id.clone()).collect();
        settled += fast.ack(&ids).await.unwrap();
    }

    let (reclaimed, _) = fast.reclaim_idle(Duration::ZERO).await.unwrap();
    assert_eq!(reclaimed.len(), 1, "the job in flight survived the trims");
    assert_eq!(reclaimed[0].job, job(0));
    fast.ack(&[reclaimed[0].id.clone()]).await.unwrap();

    let mut rest = Vec::new();
    loop {
        let batch = fast.try_next_batch(100).await.unwrap();
        if batch.is_empty() {
            break;
        }
        let ids: Vec<_> = batch.iter().map(|d| d.id.clone()).collect();
        rest.extend(batch.into_iter().map(|d| d.job.delivery_id));
        fast.ack(&ids).await.unwrap();
    }
    assert_eq!(
        rest,
        (801..1_000).collect::<Vec<_>>(),
        "unread jobs survived too"
    );
}

#[tokio::test]
async fn a_blocking_read_returns_empty_after_the_block_time() {
    let q = TestQueue::new(test_config()).await;
    let consumer = q.consumer("c1").await.unwrap();
    let batch: Vec<Received<SendEmail>> = consumer.next_batch(10).await.unwrap();
    assert!(batch.is_empty());
}

#[tokio::test]
async fn run_once_drains_everything_and_settles_by_outcome() {
    let q = TestQueue::new(test_config()).await;
    let jobs: Vec<SendEmail> = (0..35).map(job).collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();

    let stats = consumer
        .run_once(async |batch: Vec<Received<SendEmail>>| {
            batch
                .iter()
                .map(|d| match d.job.delivery_id {
                    0 => Outcome::retry("smtp 451 try later"),
                    1 => Outcome::dead_letter("smtp 550 no such user"),
                    _ => Outcome::Ack,
                })
                .collect()
        })
        .await
        .unwrap();

    assert_eq!(stats.handled, 35);
    assert_eq!(stats.batches, 4, "batch size 10");
    assert_eq!(
        (stats.acked, stats.retried, stats.dead_lettered),
        (33, 1, 1)
    );
    let after = q.stats().await.unwrap();
    assert_eq!((after.depth, after.delayed, after.dead), (0, 1, 1));
}

#[tokio::test]
async fn a_handler_answering_the_wrong_number_of_outcomes_settles_nothing() {
    let q = TestQueue::new(test_config()).await;
    q.enqueue_batch(&[job(1), job(2)]).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    let err = consumer
        .run_once(async |_batch: Vec<Received<SendEmail>>| vec![Outcome::Ack])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        clarion_queue::Error::OutcomeCount {
            expected: 2,
            got: 1
        }
    ));
    assert_eq!(q.stats().await.unwrap().pending, 2, "left for a reclaim");
}

#[tokio::test]
async fn a_queue_whose_keys_redis_lost_works_again_after_re_enqueueing() {
    let q = TestQueue::new(test_config()).await;
    let consumer = q.consumer("c1").await.unwrap();
    q.enqueue(&job(1)).await.unwrap();
    // Redis restarted without persistence: the stream and its group are gone.
    let mut redis = q.redis().await;
    let _: () = redis.del(&q.keys().stream).await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.pending), (0, 0));

    // A reconciler re-enqueues what it knows is unfinished.
    q.enqueue(&job(1)).await.unwrap();
    let batch = consumer.next_batch(10).await.unwrap();
    assert_eq!(
        batch.len(),
        1,
        "the group is recreated and reads from the start"
    );
    assert_eq!(batch[0].job, job(1));
}

#[tokio::test]
async fn text_outside_ascii_survives_enqueue_retry_and_promotion() {
    let q = TestQueue::new(crate::test_config()).await;
    let tricky = SendEmail {
        delivery_id: 1,
        to: "zoë/\"quoted\"\\back@exämple.com \u{1F4E7}\n".to_owned(),
    };
    q.enqueue(&tricky).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    let first = consumer.next_batch(10).await.unwrap().remove(0);
    consumer.retry(&first, "état: échec").await.unwrap();
    let far = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    q.promote_due_at(far).await.unwrap();
    let again = consumer.try_next_batch(10).await.unwrap().remove(0);
    assert_eq!(again.job, tricky);
    assert_eq!(again.last_error.as_deref(), Some("état: échec"));
}
