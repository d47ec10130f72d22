//! Permanent failures, malformed payloads and requeueing dead letters.

use clarion_queue::{FailureKind, Outcome, Received};
use redis::AsyncCommands;

use crate::{SendEmail, TestQueue, job, test_config};

#[tokio::test]
async fn a_permanent_failure_goes_straight_to_the_dead_letters() {
    let q = TestQueue::new(test_config()).await;
    q.enqueue(&job(1)).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    let delivery = consumer.next_batch(10).await.unwrap().remove(0);

    let settled = consumer
        .dead_letter(&delivery, "550 mailbox unavailable")
        .await
        .unwrap();
    assert_eq!(settled.dead_lettered, 1);

    let dead = q.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, FailureKind::Permanent);
    assert_eq!(dead[0].error, "550 mailbox unavailable");
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(dead[0].source_id.as_ref(), Some(&delivery.id));
    assert_eq!(q.stats().await.unwrap().depth, 0);
}

#[tokio::test]
async fn malformed_payloads_are_dead_lettered_and_the_consumer_goes_on() {
    let q = TestQueue::new(test_config()).await;
    q.enqueue(&job(1)).await.unwrap();
    let mut redis = q.redis().await;
    let stream = &q.keys().stream;
    let _: String = redis
        .xadd(stream, "*", &[("p", "{\"delivery_id\":\"not a number\"}")])
        .await
        .unwrap();
    let _: String = redis.xadd(stream, "*", &[("other", "x")]).await.unwrap();
    q.enqueue(&job(2)).await.unwrap();

    let consumer = q.consumer("c1").await.unwrap();
    let mut handled = Vec::new();
    let stats = consumer
        .run_once(async |batch: Vec<Received<SendEmail>>| {
            handled.extend(batch.iter().map(|d| d.job.delivery_id));
            vec![Outcome::Ack; batch.len()]
        })
        .await
        .unwrap();

    assert_eq!(handled, vec![1, 2]);
    assert_eq!(stats.dead_lettered, 2);
    let dead = q.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d.kind == FailureKind::Malformed));
    assert!(
        dead[0].error.contains("payload does not decode as"),
        "{}",
        dead[0].error
    );
    assert!(dead[0].error.contains("invalid type"), "{}", dead[0].error);
    assert_eq!(dead[0].payload, "{\"delivery_id\":\"not a number\"}");
    assert!(
        dead[1].error.contains("no payload field"),
        "{}",
        dead[1].error
    );
    let after = q.stats().await.unwrap();
    assert_eq!((after.depth, after.pending), (0, 0));
}

#[tokio::test]
async fn requeued_dead_letters_run_again_with_fresh_attempts() {
    let q = TestQueue::new(test_config()).await;
    q.enqueue_batch(&[job(1), job(2)]).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    consumer
        .run_once(async |batch: Vec<Received<SendEmail>>| {
            vec![Outcome::dead_letter("webhook answered 410"); batch.len()]
        })
        .await
        .unwrap();
    let dead = q.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 2);

    // Paging: the second page starts after the first letter.
    let second_page = q.dead_letters(Some(&dead[0].id), 10).await.unwrap();
    assert_eq!(second_page, dead[1..].to_vec());

    let requeued = q
        .requeue_dead(&[dead[0].id.clone(), clarion_queue::EntryId::new("1-1")])
        .await
        .unwrap();
    assert_eq!(requeued, 1, "unknown ids are skipped");

    let batch = consumer.try_next_batch(10).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].job, job(1));
    assert_eq!(batch[0].attempt, 1);
    assert_eq!(q.stats().await.unwrap().dead, 1);

    assert_eq!(q.delete_dead(&[dead[1].id.clone()]).await.unwrap(), 1);
    assert_eq!(q.stats().await.unwrap().dead, 0);
}

#[tokio::test]
async fn a_dead_letter_cap_drops_the_oldest_letters() {
    let q = TestQueue::new(clarion_queue::QueueConfig {
        dead_letter_max_len: Some(100),
        ..test_config()
    })
    .await;
    let jobs: Vec<SendEmail> = (0..250).map(job).collect();
    q.enqueue_batch(&jobs).await.unwrap();
    let consumer = q.consumer("c1").await.unwrap();
    consumer
        .run_once(async |batch: Vec<Received<SendEmail>>| {
            vec![Outcome::dead_letter("410 gone"); batch.len()]
        })
        .await
        .unwrap();

    let mut redis = q.redis().await;
    let len: usize = redis.xlen(&q.keys().dead).await.unwrap();
    // Approximate trimming removes whole internal nodes only, so the length lands between
    // the cap and the cap plus one node.
    assert!((100..250).contains(&len), "dead-letter stream length {len}");
    let oldest = q.dead_letters(None, 1).await.unwrap().remove(0);
    assert!(
        oldest.decode::<SendEmail>().unwrap().delivery_id > 0,
        "the oldest went first"
    );
}
