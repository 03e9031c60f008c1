//! Versions from clocks off the cluster's, on real sockets, in one process.
//!
//! - DEL answers "was the key live" over every attempt: a delete that
//!   removed a live value in its first attempt, then was re-stamped past a
//!   newer tombstone, still answers 1.
//! - A far-future version (stamped by a node whose clock ran an hour
//!   fast) that anti-entropy would pull is skipped and counted, not
//!   installed; a write that would have to be re-stamped past it fails
//!   with `ClockDrift` at once instead of re-stamping in vain.

mod common;

use std::time::Duration;

use common::cluster::wait_normal;
use gridkv::hlc::{Clock, SystemClock, Timestamp, Version};
use gridkv::store::{Lookup, Write};
use gridkv::{Error, Generation, GridKv, NodeId};
use tokio::time::{Instant, sleep, timeout};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// Three nodes a, b, c (every key on all three), normal everywhere.
async fn three(replication: gridkv::ReplicationConfig) -> Result<Vec<GridKv>> {
    let mut nodes: Vec<GridKv> = Vec::new();
    for name in ["a", "b", "c"] {
        let config = GridKv::builder(name)
            .seeds(nodes.first().map(|n| n.advertised_addr().to_owned()))
            .replication(replication.clone())
            .build()?;
        nodes.push(GridKv::start(config).await?);
    }
    for n in ["a", "b", "c"] {
        wait_normal(&nodes, n, 3).await;
    }
    Ok(nodes)
}

async fn shutdown(nodes: &[GridKv]) {
    for n in nodes {
        timeout(Duration::from_secs(5), n.shutdown())
            .await
            .expect("bounded shutdown");
    }
}

/// A version stamped `ahead_ms` past the system clock by an outside node.
fn ahead(ahead_ms: u64) -> Version {
    let ts = Timestamp::new(SystemClock.now_ms() + ahead_ms, 0);
    Version::new(ts, &id("fast"), Generation::new(1))
}

#[tokio::test]
async fn cluster_del_answers_live_when_an_earlier_attempt_saw_it_live() -> Result {
    let nodes = three(gridkv::ReplicationConfig::default()).await?;
    nodes[0].set("k", "v").await?;
    // b and c hold a newer delete of k (a concurrent one, stamped by a
    // clock 1 s ahead: within the drift bound). a still holds the value.
    let newer = ahead(1_000);
    for n in &nodes[1..] {
        n.store().apply(b"k", Write::delete(newer))?;
    }
    assert!(matches!(nodes[0].store().get(b"k")?, Lookup::Live(_)));
    let restamps = nodes[0].replication_stats().restamps;
    // The first attempt deletes a's live value and is superseded on b and
    // c; the re-stamp finds tombstones everywhere.
    let was_live = nodes[0].delete("k").await?;
    assert!(
        nodes[0].replication_stats().restamps > restamps,
        "the delete was never re-stamped"
    );
    assert!(was_live, "a's live value was deleted in the first attempt");
    shutdown(&nodes).await;
    Ok(())
}

#[tokio::test]
async fn cluster_a_far_future_version_is_not_pulled_nor_stamped_past() -> Result {
    let replication = gridkv::ReplicationConfig {
        anti_entropy_interval: Duration::from_millis(300),
        ..Default::default()
    };
    let nodes = three(replication).await?;
    // b holds a version an hour ahead: written by a node whose clock ran
    // an hour fast. Anti-entropy on a and c would pull it.
    let far = ahead(3_600_000);
    nodes[1]
        .store()
        .apply(b"far", Write::set(far, b"future", None))?;
    let rounds: Vec<u64> = nodes
        .iter()
        .map(|n| n.replication_stats().anti_entropy_rounds)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes
        .iter()
        .zip(&rounds)
        .all(|(n, r)| n.replication_stats().anti_entropy_rounds >= r + 3)
    {
        assert!(Instant::now() < deadline, "anti-entropy did not run");
        sleep(Duration::from_millis(50)).await;
    }
    for n in [&nodes[0], &nodes[2]] {
        let held = n.store().get(b"far")?;
        assert!(
            matches!(held, Lookup::Missing),
            "{} installed the far-future version: {held:?}",
            n.id()
        );
        assert!(n.replication_stats().drift_skipped >= 1, "{}", n.id());
    }
    // Its clock was not dragged forward: its writes are still accepted.
    nodes[0].set("near", "v").await?;
    // With two owners holding it, a write of the key needs a re-stamp past
    // it: refused at once, not re-stamped in vain.
    nodes[2]
        .store()
        .apply(b"far", Write::set(far, b"future", None))?;
    let restamps = nodes[0].replication_stats().restamps;
    match nodes[0].set("far", "now").await {
        Err(Error::ClockDrift(_)) => {}
        other => panic!("a re-stamp past the bound: {other:?}"),
    }
    assert_eq!(nodes[0].replication_stats().restamps, restamps);
    shutdown(&nodes).await;
    Ok(())
}
