//! A node that loses ranges to a joiner and regains them later (the joiner
//! leaves or is removed) must not bring back what it held before: a key
//! deleted meanwhile, whose tombstone was collected, stays deleted. Real
//! nodes on loopback, four of them with N = 3 and a 2 s tombstone grace.
//!
//! Test names start with `cluster_` so nextest runs them one at a time.

mod common;

use common::cluster::wait_normal;

use std::time::Duration;

use gridkv::keyspace::key_hash;
use gridkv::{FillMode, GridKv, NodeId, RingState};
use tokio::time::{Instant, sleep, timeout};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// How long writes also go to the owners on the ring before a change
/// (the node's transition grace is 3 s), with a margin.
const PAST_TRANSITION: Duration = Duration::from_millis(3500);

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// A node with a 2 s tombstone grace, removed 8 s after it is found down,
/// and anti-entropy rare enough that no round runs during a test (each
/// phase here is then driven by ring changes alone).
async fn start(name: &str, seed: Option<&GridKv>, fill: FillMode) -> Result<GridKv> {
    let config = GridKv::builder(name)
        .seeds(seed.map(|s| s.advertised_addr().to_owned()))
        .fill(fill)
        .membership(gridkv::SwimConfig {
            remove_after: Duration::from_secs(8),
            ..gridkv::SwimConfig::lan()
        })
        .store(gridkv::store::StoreConfig {
            tombstone_grace: Duration::from_secs(2),
            ..Default::default()
        })
        .replication(gridkv::ReplicationConfig {
            anti_entropy_interval: Duration::from_secs(600),
            hint_ttl: Duration::from_millis(500),
            ..Default::default()
        })
        .build()?;
    Ok(GridKv::start(config).await?)
}

/// Four nodes, a to d, each normal in every view, past the transition of
/// the last join.
async fn four() -> Result<Vec<GridKv>> {
    let mut nodes = vec![start("a", None, FillMode::Automatic).await?];
    for name in ["b", "c", "d"] {
        let n = start(name, Some(&nodes[0]), FillMode::Automatic).await?;
        nodes.push(n);
        wait_normal(&nodes, name, nodes.len()).await;
    }
    sleep(PAST_TRANSITION).await;
    Ok(nodes)
}

/// Waits until every node's ring has `count` members.
async fn wait_ring(nodes: &[GridKv], count: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes.iter().all(|n| n.ring().len() == count) {
        assert!(Instant::now() < deadline, "{what}");
        sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no node holds a tombstone: the grace has passed and every
/// delete's tombstone is collected.
async fn wait_collected(nodes: &[GridKv]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while nodes.iter().any(|n| n.store().stats().tombstones > 0) {
        assert!(Instant::now() < deadline, "tombstones never collected");
        sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `node` owns `key` on its placement ring (N = 3).
fn owns(node: &GridKv, key: &str) -> bool {
    node.ring()
        .preference_list(key_hash(key.as_bytes()), 3)
        .contains(&node.id())
}

/// Whether `node`'s own store holds a live value for `key`.
fn holds(node: &GridKv, key: &str) -> bool {
    node.store()
        .get(key.as_bytes())
        .is_ok_and(|l| l.value().is_some())
}

/// The keys of `keys` that `node` holds a value for without owning them.
fn held_unowned<'a>(node: &GridKv, keys: &'a [String]) -> Vec<&'a str> {
    keys.iter()
        .map(String::as_str)
        .filter(|k| holds(node, k) && !owns(node, k))
        .collect()
}

/// Every key of `keys` is absent from every store, and reads of it
/// through every node return nil.
async fn assert_gone(nodes: &[GridKv], keys: &[String]) -> Result {
    let back: Vec<(NodeId, usize)> = nodes
        .iter()
        .map(|n| (n.id(), keys.iter().filter(|k| holds(n, k)).count()))
        .collect();
    assert!(
        back.iter().all(|(_, held)| *held == 0),
        "deleted keys held again: {back:?}"
    );
    for key in keys {
        for n in nodes {
            assert_eq!(
                n.get(key).await?,
                None,
                "{key} resurrected (read on {})",
                n.id()
            );
        }
    }
    Ok(())
}

async fn shutdown(nodes: &[GridKv]) {
    for n in nodes {
        timeout(Duration::from_secs(40), n.shutdown())
            .await
            .expect("bounded shutdown");
    }
}

/// The case: keys deleted while a node was not among their owners
/// (a joiner had taken them over), their tombstones collected, then the
/// joiner leaves and the node regains them. None may come back, and the
/// survivors end up holding exactly the same keys.
#[tokio::test]
async fn cluster_a_node_regaining_ranges_brings_back_no_deleted_key() -> Result {
    let mut nodes = four().await?;
    let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
    for key in &keys {
        nodes[0].set(key, "v").await?;
    }
    let e = start("e", Some(&nodes[0]), FillMode::Automatic).await?;
    nodes.push(e);
    wait_normal(&nodes, "e", 5).await;
    // Past the transition: deletes now reach only the owners on the ring
    // with e, not the old nodes that gave e their ranges.
    sleep(PAST_TRANSITION).await;
    let (deleted, kept) = keys.split_at(500);
    let moved = deleted
        .iter()
        .filter(|k| nodes[..4].iter().any(|n| !owns(n, k)) && owns(&nodes[4], k))
        .count();
    assert!(moved > 100, "e took over some deleted keys: {moved}");
    for key in deleted {
        nodes[1].delete(key).await?;
    }
    wait_collected(&nodes).await;

    // e leaves: the old nodes regain what they gave it.
    let e = nodes.pop().unwrap();
    timeout(Duration::from_secs(40), e.shutdown()).await?;
    wait_ring(&nodes, 4, "e never left").await;
    // No deleted key comes back at any point; once the ranges are
    // refilled, each other key is held by exactly its owners (the
    // survivors agree).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for n in &nodes {
            let back: Vec<&String> = deleted.iter().filter(|k| holds(n, k)).collect();
            assert!(
                back.is_empty(),
                "{} deleted keys held again by {}: {:?}",
                back.len(),
                n.id(),
                &back[..back.len().min(10)]
            );
        }
        let misplaced: Vec<(NodeId, &str)> = nodes
            .iter()
            .flat_map(|n| {
                kept.iter()
                    .filter(|k| holds(n, k) != owns(n, k))
                    .map(move |k| (n.id(), k.as_str()))
            })
            .collect();
        if misplaced.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} keys held by a node that does not own them, or missing from an owner: {:?}",
            misplaced.len(),
            &misplaced[..misplaced.len().min(10)]
        );
        sleep(Duration::from_millis(100)).await;
    }
    assert_gone(&nodes, deleted).await?;
    for key in kept {
        for n in &nodes {
            assert_eq!(n.get(key).await?.as_deref(), Some(&b"v"[..]), "{key}");
        }
    }
    shutdown(&nodes).await;
    Ok(())
}

/// A node keeps what it loses to a joiner while the joiner fills (it is a
/// source, and still an owner), and drops it once the joiner holds it,
/// returning its memory; no acknowledged write is lost.
#[tokio::test]
async fn cluster_ranges_no_longer_owned_are_dropped_once_their_new_owners_hold_them() -> Result {
    let mut nodes = four().await?;
    let keys: Vec<String> = (0..2000).map(|i| format!("k{i}")).collect();
    let value = vec![9u8; 512];
    for key in &keys {
        nodes[0].set(key, value.clone()).await?;
    }
    let before: Vec<(usize, u64)> = nodes
        .iter()
        .map(|n| {
            let held = keys.iter().filter(|k| holds(n, k)).count();
            (held, n.store().stats().bytes)
        })
        .collect();
    assert_eq!(
        before.iter().map(|(held, _)| held).sum::<usize>(),
        3 * keys.len(),
        "three copies of each key: {before:?}"
    );

    // e streams its ranges but stays joining until told otherwise.
    let e = start("e", Some(&nodes[0]), FillMode::Manual).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let joining = nodes.iter().all(|n| {
            n.member(&id("e"))
                .is_some_and(|m| m.ring == RingState::Joining)
        });
        // e owns 3/5 of the keys once it is on the ring.
        if joining && e.store().stats().live >= 1000 {
            break;
        }
        assert!(Instant::now() < deadline, "e never filled");
        sleep(Duration::from_millis(50)).await;
    }
    sleep(Duration::from_millis(500)).await;
    for (n, (held, _)) in nodes.iter().zip(&before) {
        let now = keys.iter().filter(|k| holds(n, k)).count();
        assert_eq!(now, *held, "{} dropped keys while e was filling", n.id());
    }

    e.mark_filled().await;
    nodes.push(e);
    wait_normal(&nodes, "e", 5).await;
    // Entries written in the last 10 s are dropped by the sweep after.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let unowned: Vec<usize> = nodes[..4]
            .iter()
            .map(|n| held_unowned(n, &keys).len())
            .collect();
        if unowned.iter().all(|u| *u == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keys no longer owned still held: {unowned:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    for (n, (held, bytes)) in nodes[..4].iter().zip(&before) {
        let now = keys.iter().filter(|k| holds(n, k)).count();
        let lost = (held - now) as u64;
        let stats = n.store().stats();
        println!(
            "{}: {held} keys -> {now}, {bytes} bytes -> {}",
            n.id(),
            stats.bytes
        );
        assert!(lost > 0, "{} gave e none of its keys", n.id());
        assert!(
            stats.bytes + lost * 512 <= *bytes,
            "{}: memory not returned ({bytes} -> {})",
            n.id(),
            stats.bytes
        );
        assert!(n.store().audit().is_consistent(), "{:?}", n.store().audit());
    }
    for key in &keys {
        for n in &nodes {
            assert_eq!(n.get(key).await?.as_deref(), Some(&value[..]), "{key}");
        }
    }
    shutdown(&nodes).await;
    Ok(())
}

/// What a node could not drop (writes reached it as a previous owner just
/// after the drop, and then the joiner crashed, so it can no longer be
/// shown to hold them) is cleared when the node regains the range, before
/// the refill: keys deleted meanwhile stay deleted.
#[tokio::test]
async fn cluster_a_node_regaining_ranges_it_could_not_drop_clears_them_before_the_refill() -> Result
{
    let mut nodes = four().await?;
    let e = start("e", Some(&nodes[0]), FillMode::Automatic).await?;
    nodes.push(e);
    wait_normal(&nodes, "e", 5).await;
    let normal_at = Instant::now();
    // Written during the transition: the old owners get them too, after
    // they dropped what they gave e.
    let mut late = Vec::new();
    while normal_at.elapsed() < Duration::from_millis(2000) {
        let key = format!("late-{}", late.len());
        nodes[late.len() % 4].set(&key, "old").await?;
        late.push(key);
    }
    let e = nodes.pop().unwrap();
    e.kill().await;
    let leftovers: usize = nodes.iter().map(|n| held_unowned(n, &late).len()).sum();
    assert!(
        leftovers > 0,
        "no copy of the {} late writes on an old owner",
        late.len()
    );
    // Past the transition: the deletes reach only the owners on the ring
    // with e (e is down: two of three answer).
    sleep(PAST_TRANSITION.saturating_sub(normal_at.elapsed())).await;
    for key in &late {
        nodes[0].delete(key).await?;
    }
    wait_collected(&nodes).await;
    let still: usize = nodes.iter().map(|n| held_unowned(n, &late).len()).sum();
    assert!(
        still > 0,
        "the copies are kept while e cannot be shown to hold them"
    );
    assert!(
        nodes.iter().all(|n| n.ring().len() == 5),
        "e removed before the tombstones were collected"
    );

    // e is removed: the old nodes regain its ranges.
    wait_ring(&nodes, 4, "e never removed").await;
    sleep(Duration::from_secs(2)).await;
    assert_gone(&nodes, &late).await?;
    for n in &nodes {
        assert_eq!(n.store().stats().live, 0, "{} holds a value", n.id());
    }
    shutdown(&nodes).await;
    Ok(())
}
