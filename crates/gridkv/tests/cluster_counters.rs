//! Convergent counters (`GridKv::incr_by`) across real nodes on loopback:
//! concurrent increments through every node, and increments on both sides
//! of a partition, are all kept; `SET`, `DEL` and TTLs reset them.
//!
//! Test names start with `cluster_` so nextest runs them one at a time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::cluster::{cluster, cluster_with, isolate, shutdown};
use gridkv::replication::{ReadOptions, WriteOptions};
use gridkv::{GridKv, Ttl};
use tokio::time::{Instant, sleep};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Waits until every node reads `key` as `want` with R = N (a read that
/// merges every copy and repairs those that differ).
async fn until_everywhere(nodes: &[GridKv], key: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut seen = Vec::new();
        for node in nodes {
            let all = ReadOptions::default().quorum(nodes.len());
            seen.push(node.get_opts(key, all).await.ok().flatten());
        }
        let want_bytes = want.to_string().into_bytes();
        if seen.iter().all(|v| v.as_deref() == Some(&want_bytes[..])) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key}: want {want}, nodes read {seen:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_concurrent_increments_through_every_node_are_all_kept() -> Result {
    let nodes = cluster(&["a", "b", "c"], &[]).await?;
    let acked = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut tasks = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for t in 0..4 {
            let (node, acked) = (node.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                for k in 0..40i64 {
                    let delta = if (k + t) % 3 == 0 { -2 } else { (i as i64) + 1 };
                    if node.incr_by("hits", delta).await.is_ok() {
                        acked.fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await?;
    }
    let total = acked.load(std::sync::atomic::Ordering::Relaxed);
    until_everywhere(&nodes, "hits", total).await;

    // SET resets the counter; later increments count from it.
    nodes[0].set("hits", "100").await?;
    assert_eq!(nodes[1].incr_by("hits", 5).await?, 105);
    assert_eq!(nodes[2].incr_by("hits", -10).await?, 95);
    // DEL removes it; the next increment counts from zero.
    assert!(nodes[1].delete("hits").await?);
    assert_eq!(nodes[2].get("hits").await?, None);
    assert_eq!(nodes[0].incr_by("hits", 3).await?, 3);
    // An increment keeps a TTL, and a value that is no integer is refused.
    nodes[0]
        .set_opts(
            "ttl",
            "1",
            WriteOptions::default().ttl(Duration::from_secs(60)),
        )
        .await?;
    assert_eq!(nodes[1].incr_by("ttl", 1).await?, 2);
    assert!(matches!(nodes[2].ttl("ttl").await?, Ttl::ExpiresIn(_)));
    // An expired counter starts again from zero, through any node (its
    // next version is above the expired one's).
    for (round, ttl_ms) in [(0, 300u64), (1, 300)] {
        assert_eq!(nodes[round].incr_by("limit", 5).await?, 5, "round {round}");
        assert!(
            nodes[1]
                .expire("limit", Duration::from_millis(ttl_ms))
                .await?
        );
        sleep(Duration::from_millis(ttl_ms + 200)).await;
        assert_eq!(nodes[2].get("limit").await?, None);
        assert_eq!(nodes[round].incr_by("limit", 1).await?, 1, "round {round}");
        assert_eq!(nodes[1].get("limit").await?.as_deref(), Some(&b"1"[..]));
        assert!(nodes[0].delete("limit").await?);
    }
    nodes[0]
        .set_opts(
            "z",
            "0",
            WriteOptions::default().ttl(Duration::from_millis(300)),
        )
        .await?;
    assert_eq!(nodes[1].incr_by("z", 1).await?, 1);
    sleep(Duration::from_millis(500)).await;
    assert_eq!(
        nodes[2].incr_by("z", 1).await?,
        1,
        "after the expiry, from zero"
    );
    assert_eq!(nodes[0].get("z").await?.as_deref(), Some(&b"1"[..]));
    nodes[0].set("text", "abc").await?;
    assert!(matches!(
        nodes[1].incr_by("text", 1).await,
        Err(gridkv::Error::NotAnInteger)
    ));
    nodes[0].set("big", i64::MAX.to_string()).await?;
    assert!(matches!(
        nodes[1].incr_by("big", 1).await,
        Err(gridkv::Error::Overflow)
    ));
    shutdown(&nodes).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_increments_on_both_sides_of_a_partition_are_all_kept() -> Result {
    // W = R = 1: each side of the partition keeps taking increments.
    let replication = gridkv::ReplicationConfig {
        write_quorum: 1,
        read_quorum: 1,
        consistency: gridkv::Consistency::Eventual,
        ..gridkv::ReplicationConfig::default()
    };
    let nodes = cluster_with(&["a", "b", "c"], &[], replication).await?;
    assert_eq!(nodes[0].incr_by("p", 10).await?, 10);
    until_everywhere(&nodes, "p", 10).await;
    isolate(&nodes, 2, true);
    let mut total = 10;
    for round in 0..20 {
        // The majority side and the isolated node, alternately.
        for (who, delta) in [(0, 2), (1, -1), (2, 5)] {
            if nodes[who].incr_by("p", delta).await.is_ok() {
                total += delta;
            }
        }
        if round == 0 {
            // The isolated node counts alone: it sees its own increments.
            assert_eq!(
                nodes[2]
                    .get_opts("p", ReadOptions::local())
                    .await?
                    .as_deref(),
                Some(&b"15"[..])
            );
        }
    }
    isolate(&nodes, 2, false);
    until_everywhere(&nodes, "p", total).await;
    assert_eq!(total, 10 + 20 * 6, "every increment was acknowledged");
    shutdown(&nodes).await;
    Ok(())
}
