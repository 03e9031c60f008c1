//! Restarts on real sockets: nodes that restarted together refill from
//! each other as well as from the members that kept their data.
//!
//! Test names start with `cluster_` so nextest runs them one at a time.

mod common;

use std::time::Duration;

use common::cluster::wait_normal;
use gridkv::replication::ReadOptions;
use gridkv::{GridKv, NodeId, RingState};
use tokio::time::{Instant, sleep};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn start_config(name: &str, seed: Option<&GridKv>) -> Result<gridkv::Config> {
    Ok(GridKv::builder(name)
        .seeds(seed.map(|s| s.advertised_addr().to_owned()))
        .membership(gridkv::SwimConfig {
            remove_after: Duration::from_secs(60),
            ..gridkv::SwimConfig::lan()
        })
        .build()?)
}

/// Three nodes (N = 3, W = 2: each piece is pulled from two sources); two
/// of them are killed and restarted at once. Each restarted node is one of
/// the other's two sources, and refuses scans while it refills: before a
/// refilling restart could serve as a source of what it holds, neither
/// fill ever completed and both stayed `joining` for good (the keys they
/// owned then had one readable copy, below R = 2). What the two lost is
/// lost; what the third node kept must be back on both.
#[tokio::test]
async fn cluster_two_nodes_restarted_together_refill_from_each_other() -> Result {
    let a = GridKv::start(start_config("a", None)?).await?;
    let mut nodes = vec![a];
    for name in ["b", "c"] {
        let n = GridKv::start(start_config(name, Some(&nodes[0]))?).await?;
        nodes.push(n);
        wait_normal(&nodes, name, nodes.len()).await;
    }
    for i in 0..300u32 {
        nodes[0].set(format!("k{i}"), format!("v{i}")).await?;
    }
    let c = nodes.pop().unwrap();
    let b = nodes.pop().unwrap();
    tokio::join!(b.kill(), c.kill());
    let (b, c) = tokio::join!(
        GridKv::start(start_config("b", Some(&nodes[0]))?),
        GridKv::start(start_config("c", Some(&nodes[0]))?)
    );
    nodes.push(b?);
    nodes.push(c?);
    // Both back as restarts holding their slots, both normal once filled.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let states: Vec<Vec<Option<RingState>>> = nodes
            .iter()
            .map(|n| {
                ["a", "b", "c"]
                    .iter()
                    .map(|m| n.member(&NodeId::new(m).unwrap()).map(|m| m.ring))
                    .collect()
            })
            .collect();
        if states
            .iter()
            .flatten()
            .all(|s| *s == Some(RingState::Normal))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted nodes never finished refilling: {states:?} \
             (entries filled: b {}, c {})",
            nodes[1].replication_stats().fill_entries,
            nodes[2].replication_stats().fill_entries,
        );
        sleep(Duration::from_millis(50)).await;
    }
    wait_normal(&nodes, "b", 3).await;
    wait_normal(&nodes, "c", 3).await;
    // Every key the surviving node kept is on both restarted nodes.
    for i in 0..300u32 {
        for n in &nodes[1..] {
            let local = n.get_opts(format!("k{i}"), ReadOptions::local()).await?;
            assert_eq!(
                local.as_deref(),
                Some(format!("v{i}").as_bytes()),
                "k{i} on {}",
                n.id()
            );
        }
    }
    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}
