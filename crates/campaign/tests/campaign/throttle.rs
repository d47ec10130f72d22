use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use clarion_campaign::throttle::Throttle;
use clarion_model::Channel;

fn redis_url() -> String {
    std::env::var("CLARION_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn throttle(prefix: &str) -> Throttle {
    let client = redis::Client::open(redis_url()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client)
        .await
        .expect("Redis at CLARION_TEST_REDIS_URL or 127.0.0.1:6379 (scripts/test starts one)");
    Throttle::new(conn, prefix)
}

fn second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Four workers, each with its own connection, send 600 messages each under a limit of 500
/// per second: in no second of the wall clock are more than 500 granted, and every message
/// is granted in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_share_one_limit_per_second() {
    let prefix = format!("clarion-test-{}", uuid::Uuid::new_v4().simple());
    let limit = 500;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let throttle = throttle(&prefix).await;
        tasks.push(tokio::spawn(async move {
            let mut grants: Vec<(u64, usize)> = Vec::new();
            let mut left = 600;
            while left > 0 {
                let part = left.min(150);
                let granted = throttle
                    .next_part(Channel::Email, part, limit)
                    .await
                    .unwrap();
                assert!(granted > 0 && granted <= part);
                // The second the grant was counted in: the key is chosen before the call,
                // so a grant near a boundary may land in the earlier second; record both.
                grants.push((second(), granted));
                left -= granted;
            }
            grants
        }));
    }
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    let mut total = 0;
    for task in tasks {
        for (second, granted) in task.await.unwrap() {
            *per_second.entry(second).or_default() += granted;
            total += granted;
        }
    }
    assert_eq!(total, 2400, "every message is granted in the end");
    // 2,400 messages at 500 per second need at least five distinct seconds.
    assert!(
        per_second.len() >= 5,
        "grants spread over {} seconds: {per_second:?}",
        per_second.len()
    );
    // A grant is recorded after the call returns, so one near a boundary may be recorded in
    // the next second; two adjacent seconds together never exceed twice the limit, and the
    // whole run never exceeds the limit times the seconds it spans.
    let seconds: Vec<_> = per_second.keys().copied().collect();
    let span = (seconds[seconds.len() - 1] - seconds[0] + 1) as usize;
    assert!(
        total <= limit as usize * span,
        "{total} granted over {span} seconds with a limit of {limit}/s: {per_second:?}"
    );
    for pair in seconds.windows(2) {
        let both = per_second[&pair[0]] + per_second[&pair[1]];
        assert!(both <= 2 * limit as usize, "{per_second:?}");
    }
}

/// Channels have separate allowances.
#[tokio::test]
async fn channels_are_throttled_separately() {
    let prefix = format!("clarion-test-{}", uuid::Uuid::new_v4().simple());
    let throttle = throttle(&prefix).await;
    // Start at the beginning of a second so both reservations fall in the same one.
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    tokio::time::sleep(std::time::Duration::from_millis(
        u64::from(1000 - into) + 20,
    ))
    .await;
    let email = throttle.reserve(Channel::Email, 10, 10).await.unwrap();
    let webhook = throttle.reserve(Channel::Webhook, 10, 10).await.unwrap();
    let more_email = throttle.reserve(Channel::Email, 5, 10).await.unwrap();
    assert_eq!((email, webhook, more_email), (10, 10, 0));
}
