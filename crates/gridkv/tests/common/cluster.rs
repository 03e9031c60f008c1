//! Helpers for tests of real-socket clusters: cutting a node off at the
//! transport's fault hooks, waiting for a member to be normal everywhere,
//! starting a cluster of nodes (clocks skewed as asked) and stopping it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use gridkv::hlc::{Clock, SystemClock};
use gridkv::membership::{Liveness, RingState};
use gridkv::net::faults::LinkFaults;
use gridkv::{GridKv, NodeId};
use tokio::time::{Instant, sleep, timeout};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// Cuts node `victim` off from every other node (both directions, at the
/// transport's fault hooks), or heals that.
pub fn isolate(nodes: &[GridKv], victim: usize, on: bool) {
    for (i, n) in nodes.iter().enumerate() {
        for (j, other) in nodes.iter().enumerate() {
            if (i == victim) != (j == victim) {
                if on {
                    n.transport()
                        .faults()
                        .set(other.id(), LinkFaults::partitioned());
                } else {
                    n.transport().faults().clear(&other.id());
                }
            }
        }
    }
}

/// Waits until every node's ring has `count` members and sees `who` alive
/// and normal.
pub async fn wait_normal(nodes: &[GridKv], who: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes.iter().all(|n| {
        n.ring().len() == count
            && n.member(&NodeId::new(who).expect("a valid id"))
                .is_some_and(|m| m.ring == RingState::Normal && m.liveness == Liveness::Alive)
    }) {
        assert!(
            Instant::now() < deadline,
            "{who} never became normal everywhere"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// A clock `offset_ms` off the system clock.
#[derive(Debug)]
pub struct Skewed(pub i64);

impl Clock for Skewed {
    fn now_ms(&self) -> u64 {
        (SystemClock.now_ms() as i64 + self.0) as u64
    }
}

/// `names.len()` nodes joined through the first, all normal in every view.
pub async fn cluster(names: &[&str], clocks: &[i64]) -> Result<Vec<GridKv>> {
    cluster_with(names, clocks, gridkv::ReplicationConfig::default()).await
}

/// As [`cluster`], with a replication config.
pub async fn cluster_with(
    names: &[&str],
    clocks: &[i64],
    replication: gridkv::ReplicationConfig,
) -> Result<Vec<GridKv>> {
    let mut nodes: Vec<GridKv> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let seeds: Vec<String> = nodes
            .first()
            .map(|n| n.advertised_addr().to_owned())
            .into_iter()
            .collect();
        let skew = clocks.get(i).copied().unwrap_or(0);
        let config = GridKv::builder(*name)
            .seeds(seeds)
            .clock(Arc::new(Skewed(skew)))
            .replication(replication.clone())
            .build()?;
        nodes.push(GridKv::start(config).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = nodes.iter().all(|n| {
            n.ring().len() == names.len()
                && names.iter().all(|m| {
                    n.member(&id(m)).is_some_and(|m| {
                        m.liveness == Liveness::Alive && m.ring == RingState::Normal
                    })
                })
        });
        if ready {
            return Ok(nodes);
        }
        assert!(Instant::now() < deadline, "cluster did not form");
        sleep(Duration::from_millis(20)).await;
    }
}

pub async fn shutdown(nodes: &[GridKv]) {
    for n in nodes {
        timeout(Duration::from_secs(5), n.shutdown())
            .await
            .expect("bounded shutdown");
        assert_eq!(n.task_count(), 0);
    }
}
