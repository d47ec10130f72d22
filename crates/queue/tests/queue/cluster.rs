//! The queue on a real Redis Cluster of three nodes that the test starts and stops.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use clarion_queue::{FailureKind, Outcome, Queue, Received};
use redis::cluster::ClusterClient;

use crate::{SendEmail, job, test_config};

/// Three cluster nodes on free ports, killed when dropped.
struct Cluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    /// Holds the nodes' cluster configuration files.
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

/// A free port whose cluster-bus port (port + 10000) is free as well.
fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

async fn start_cluster() -> Cluster {
    let mut cluster = Cluster {
        nodes: Vec::new(),
        ports: Vec::new(),
        dir: tempfile::tempdir().unwrap(),
    };
    for _ in 0..3 {
        let port = free_port();
        let node = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(cluster.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (Debian package redis-server)");
        cluster.nodes.push(node);
        cluster.ports.push(port);
    }
    for port in &cluster.ports {
        wait_for(|| {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
            let mut conn = client.get_connection().ok()?;
            redis::cmd("PING").query::<String>(&mut conn).ok()
        })
        .await;
    }
    let addresses: Vec<String> = cluster
        .ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let created = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    for port in &cluster.ports {
        wait_for(|| {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
            let mut conn = client.get_connection().ok()?;
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).ok()?;
            info.contains("cluster_state:ok").then_some(())
        })
        .await;
    }
    cluster
}

/// Polls until `ready` answers, for at most ten seconds.
async fn wait_for<T>(mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(Instant::now() < deadline, "cluster did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_queue_works_on_a_redis_cluster() {
    let cluster = start_cluster().await;
    let nodes: Vec<String> = cluster
        .ports
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect();
    let client = ClusterClient::new(nodes).unwrap();
    let queue: Queue<SendEmail> =
        Queue::connect_cluster(client, "clarion", "emails", test_config())
            .await
            .unwrap();

    // The cluster itself agrees that all keys of the queue live in one slot.
    let mut any_node = redis::Client::open(format!("redis://127.0.0.1:{}", cluster.ports[0]))
        .unwrap()
        .get_connection()
        .unwrap();
    let slots: Vec<i64> = queue
        .keys()
        .all()
        .iter()
        .map(|key| {
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(*key)
                .query(&mut any_node)
                .unwrap()
        })
        .collect();
    assert!(slots.windows(2).all(|w| w[0] == w[1]), "{slots:?}");

    let jobs: Vec<SendEmail> = (0..50).map(job).collect();
    queue.enqueue_batch(&jobs).await.unwrap();
    let consumer = queue.consumer("c1").await.unwrap();
    let stats = consumer
        .run_once(async |batch: Vec<Received<SendEmail>>| {
            batch
                .iter()
                .map(|d| match d.job.delivery_id {
                    0 => Outcome::retry("timeout"),
                    1 => Outcome::dead_letter("bounced"),
                    _ => Outcome::Ack,
                })
                .collect()
        })
        .await
        .unwrap();
    assert_eq!(
        (stats.acked, stats.retried, stats.dead_lettered),
        (48, 1, 1)
    );

    let later = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(queue.promote_due_at(later).await.unwrap(), 1);
    let retried = consumer.next_batch(10).await.unwrap();
    assert_eq!(
        retried.len(),
        1,
        "the blocking read works through the cluster"
    );
    assert_eq!((retried[0].job.delivery_id, retried[0].attempt), (0, 2));

    let other = queue.consumer("c2").await.unwrap();
    let (reclaimed, _) = other.reclaim_idle(Duration::ZERO).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    other.ack(&[reclaimed[0].id.clone()]).await.unwrap();

    let dead = queue.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, FailureKind::Permanent);
    assert_eq!(queue.requeue_dead(&[dead[0].id.clone()]).await.unwrap(), 1);

    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.depth, stats.lag, stats.pending), (1, 1, 0));
    assert_eq!(
        (stats.dead, stats.retried_total, stats.dead_lettered_total),
        (0, 1, 1)
    );
}
