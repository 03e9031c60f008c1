//! Hinted handoff across real nodes on loopback: hints never leak (issue
//! 14, section 4). Hints kept for an owner that left the ring are dropped
//! within seconds, counted; an owner that is only down keeps them, and so
//! does one that restarts under the same id.
//!
//! Test names start with `cluster_` so nextest runs them one at a time.

mod common;

use common::cluster::isolate;

use std::time::Duration;

use gridkv::keyspace::key_hash;
use gridkv::{GridKv, Liveness, NodeId, RingState};
use tokio::time::{Instant, sleep, timeout};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// A node's config: anti-entropy off (an hour) so only hints can carry
/// missed writes, a short operation timeout so requests to a cut-off owner
/// become hints quickly, and members down for `remove_after` removed.
fn config(name: &str, seed: Option<&GridKv>, remove_after: Duration) -> Result<gridkv::Config> {
    Ok(GridKv::builder(name)
        .seeds(seed.map(|s| s.advertised_addr().to_owned()))
        .membership(gridkv::SwimConfig {
            remove_after,
            ..gridkv::SwimConfig::lan()
        })
        .replication(gridkv::ReplicationConfig {
            anti_entropy_interval: Duration::from_secs(3600),
            timeout: Duration::from_millis(500),
            ..Default::default()
        })
        .build()?)
}

/// Nodes `names` joined through the first, all normal in every view, and
/// past the join transition (whose guarding quorums need the old owners).
async fn cluster(names: &[&str], remove_after: Duration) -> Result<Vec<GridKv>> {
    let mut nodes: Vec<GridKv> = Vec::new();
    for name in names {
        let node = GridKv::start(config(name, nodes.first(), remove_after)?).await?;
        nodes.push(node);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes.iter().all(|n| {
        n.ring().len() == names.len()
            && names.iter().all(|m| {
                n.member(&id(m))
                    .is_some_and(|m| m.liveness == Liveness::Alive && m.ring == RingState::Normal)
            })
    }) {
        assert!(Instant::now() < deadline, "cluster did not form");
        sleep(Duration::from_millis(20)).await;
    }
    sleep(Duration::from_millis(3500)).await;
    Ok(nodes)
}

/// Writes `count` keys owned by `owner` (on `via`'s ring) through `via`,
/// while `owner` is cut off: each succeeds on the two other owners and
/// leaves a hint for `owner` on `via`. Returns the keys.
async fn write_missed_by(via: &GridKv, owner: &str, count: usize) -> Result<Vec<String>> {
    let keys: Vec<String> = (0..)
        .map(|i| format!("hinted{i}"))
        .filter(|k| {
            via.ring()
                .preference_list(key_hash(k.as_bytes()), 3)
                .contains(&id(owner))
        })
        .take(count)
        .collect();
    for key in &keys {
        via.set(key, "v").await?;
    }
    // The requests to the cut-off owner end at their 500 ms deadline and
    // become hints.
    let deadline = Instant::now() + Duration::from_secs(10);
    while via.replication_stats().hints_pending < count as u64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} hints kept",
            via.replication_stats().hints_pending
        );
        sleep(Duration::from_millis(50)).await;
    }
    Ok(keys)
}

/// Waits until every node in `nodes` sees `who` in `liveness`.
async fn until_seen(nodes: &[GridKv], who: &str, liveness: Liveness, within: Duration) {
    let deadline = Instant::now() + within;
    while !nodes
        .iter()
        .all(|n| n.member(&id(who)).is_some_and(|m| m.liveness == liveness))
    {
        assert!(
            Instant::now() < deadline,
            "{who} never seen {liveness} everywhere"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `node` holds no hint and has delivered or dropped `count`
/// (a batch out for delivery is neither pending nor counted yet).
async fn until_settled(node: &GridKv, count: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let s = node.replication_stats();
        if s.hints_pending == 0 && s.hints_delivered + s.hints_dropped >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "hints not settled: {} pending, {} delivered, {} dropped",
            s.hints_pending,
            s.hints_delivered,
            s.hints_dropped
        );
        sleep(Duration::from_millis(50)).await;
    }
}

async fn shutdown(nodes: &[GridKv]) {
    for n in nodes {
        timeout(Duration::from_secs(40), n.shutdown())
            .await
            .expect("bounded shutdown");
        assert_eq!(n.task_count(), 0);
    }
}

/// Issue 14, section 4: hints kept for an owner that is removed from the
/// ring can never be delivered; they must go (counted) within seconds, or
/// they fill the hint store until every new hint is refused.
#[tokio::test]
async fn cluster_hints_for_a_removed_owner_are_dropped_within_seconds() -> Result {
    let nodes = cluster(&["a", "b", "c", "d"], Duration::from_secs(3)).await?;
    isolate(&nodes, 3, true);
    write_missed_by(&nodes[0], "d", 40).await?;
    let kept = nodes[0].replication_stats().hints_pending;
    let dropped_before = nodes[0].replication_stats().hints_dropped;
    // d is suspected, found down, and removed after 3 s down.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes[..3].iter().all(|n| {
        n.member(&id("d"))
            .is_none_or(|m| m.ring == RingState::Removed)
    }) {
        assert!(Instant::now() < deadline, "d was never removed");
        sleep(Duration::from_millis(20)).await;
    }
    let removed_at = Instant::now();
    let pending = |n: &GridKv| n.replication_stats().hints_pending;
    while nodes[..3].iter().any(|n| pending(n) > 0) {
        assert!(
            removed_at.elapsed() < Duration::from_secs(5),
            "hints for d still pending 5 s after its removal: {:?}",
            nodes[..3].iter().map(pending).collect::<Vec<_>>()
        );
        sleep(Duration::from_millis(50)).await;
    }
    let dropped = nodes[0].replication_stats().hints_dropped - dropped_before;
    assert!(
        dropped >= kept,
        "{kept} hints were pending, {dropped} counted as dropped"
    );
    assert_eq!(nodes[0].replication_stats().hints_delivered, 0);
    isolate(&nodes, 3, false);
    nodes[3].kill().await;
    shutdown(&nodes[..3]).await;
    Ok(())
}

/// An owner that is down (or suspect) is still in the ring: its hints are
/// kept, well past the grace that owners out of the ring get, and
/// delivered when it is back.
#[tokio::test]
async fn cluster_hints_for_an_owner_down_but_in_the_ring_are_kept_and_delivered() -> Result {
    // Never removed while this test runs.
    let nodes = cluster(&["a", "b", "c"], Duration::from_secs(600)).await?;
    isolate(&nodes, 2, true);
    let keys = write_missed_by(&nodes[0], "c", 30).await?;
    until_seen(&nodes[..2], "c", Liveness::Down, Duration::from_secs(10)).await;
    // Several delivery rounds, twice the grace of an owner out of the ring.
    sleep(Duration::from_secs(5)).await;
    let stats = nodes[0].replication_stats();
    assert_eq!(
        (stats.hints_pending, stats.hints_dropped),
        (30, 0),
        "a down owner's hints must be kept"
    );
    isolate(&nodes, 2, false);
    until_settled(&nodes[0], 30, Duration::from_secs(15)).await;
    let stats = nodes[0].replication_stats();
    assert_eq!((stats.hints_delivered, stats.hints_dropped), (30, 0));
    for key in &keys {
        let held = nodes[2].store().get(key.as_bytes())?.into_value();
        assert_eq!(held.as_deref(), Some(&b"v"[..]), "{key} not on c");
    }
    shutdown(&nodes).await;
    Ok(())
}

/// A node that restarts under the same id (a later generation) is the same
/// owner: hints kept for its previous run still apply (writes are
/// versioned, so one older than what it holds is merely superseded), are
/// not dropped as if it had left, and are delivered once it is back.
#[tokio::test]
async fn cluster_hints_for_an_owner_that_restarts_are_delivered_to_its_new_run() -> Result {
    let mut nodes = cluster(&["a", "b", "c"], Duration::from_secs(600)).await?;
    isolate(&nodes, 2, true);
    let keys = write_missed_by(&nodes[0], "c", 30).await?;
    nodes[2].kill().await;
    isolate(&nodes, 2, false);
    let old = nodes.pop().expect("c");
    drop(old);
    until_seen(&nodes, "c", Liveness::Down, Duration::from_secs(10)).await;
    let c = GridKv::start(config("c", Some(&nodes[0]), Duration::from_secs(600))?).await?;
    nodes.push(c);
    until_settled(&nodes[0], 30, Duration::from_secs(20)).await;
    let stats = nodes[0].replication_stats();
    assert_eq!((stats.hints_delivered, stats.hints_dropped), (30, 0));
    for key in &keys {
        let held = nodes[2].store().get(key.as_bytes())?.into_value();
        assert_eq!(held.as_deref(), Some(&b"v"[..]), "{key} not on c");
    }
    shutdown(&nodes).await;
    Ok(())
}
