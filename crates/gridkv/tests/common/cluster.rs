//! Helpers for tests of real-socket clusters: cutting a node off at the
//! transport's fault hooks, waiting for a member to be normal everywhere.
#![allow(dead_code)]

use std::time::Duration;

use gridkv::membership::{Liveness, RingState};
use gridkv::net::faults::LinkFaults;
use gridkv::{GridKv, NodeId};
use tokio::time::{Instant, sleep};

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
