//! Latency by consistency level across two datacenters, in turmoil's
//! virtual time (deterministic: no machine noise).
//!
//! Datacenters a (a0..a2) and b (b0..b2), copies `a:2,b:1`, 50 ms one way
//! between them (100 ms round trip), injected by the transport's per-link
//! delay; hosts of one datacenter 0.2–2 ms apart. a0 runs set+get pairs at
//! each level and prints their p50 and p99, and the lag of its stream to b
//! (sampled every 10 ms while it writes at LOCAL_QUORUM). The reference is
//! a single-datacenter cluster of three nodes with two copies, W = R = 2:
//! what LOCAL_QUORUM waits for in a.
//!
//! Run: `cargo run --release -p gridkv --example dc_latency`.

#[path = "../tests/common/turmoil_net.rs"]
mod turmoil_net;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridkv::hlc::Clock;
use gridkv::net::faults::LinkFaults;
use gridkv::{
    ConsistencyLevel as L, Generation, GridKv, NodeId, ReplicaPlacement, ReplicationConfig,
    SwimConfig,
};

const ONE_WAY: Duration = Duration::from_millis(50);
const OPS: usize = 300;

#[derive(Debug)]
struct SimClock;

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        1_700_000_000_000 + turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
    }
}

type Results = Arc<Mutex<Vec<String>>>;

fn config(name: &str, dc: &str, two_dcs: bool) -> gridkv::Config {
    let replication = if two_dcs {
        ReplicationConfig::default().with_placement("a:2,b:1".parse::<ReplicaPlacement>().unwrap())
    } else {
        ReplicationConfig {
            replicas: 2,
            write_quorum: 2,
            read_quorum: 2,
            ..ReplicationConfig::default()
        }
    };
    GridKv::builder(name)
        .cluster("sim")
        .listen("0.0.0.0:7000")
        .insecure()
        .advertise(format!("{name}:7000"))
        .seeds(["a0:7000"])
        .datacenter(dc)
        .generation(Generation::new(1))
        .rng_seed(7)
        .clock(Arc::new(SimClock))
        .membership(SwimConfig::lan())
        .replication(replication)
        .build()
        .expect("valid config")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn measure(node: &GridKv, label: &str, results: &Results) -> turmoil::Result {
    let mut times = Vec::with_capacity(OPS);
    for i in 0..OPS {
        let start = tokio::time::Instant::now();
        node.set(format!("{label}:{i}"), "v").await?;
        node.get(format!("{label}:{i}")).await?;
        times.push(start.elapsed());
    }
    times.sort();
    results.lock().unwrap().push(format!(
        "| {label} | {:.1} | {:.1} |",
        percentile(&times, 0.5).as_secs_f64() * 1000.0,
        percentile(&times, 0.99).as_secs_f64() * 1000.0
    ));
    Ok(())
}

fn run(two_dcs: bool, results: Results) {
    let mut sim = turmoil::Builder::new()
        .rng_seed(1)
        .simulation_duration(Duration::from_secs(600))
        .min_message_latency(Duration::from_micros(200))
        .max_message_latency(Duration::from_millis(2))
        .build();
    let hosts: Vec<(String, &str)> = if two_dcs {
        ["a0", "a1", "a2", "b0", "b1", "b2"]
            .iter()
            .map(|h| (h.to_string(), if h.starts_with('a') { "a" } else { "b" }))
            .collect()
    } else {
        ["a0", "a1", "a2"]
            .iter()
            .map(|h| (h.to_string(), "a"))
            .collect()
    };
    let all = Arc::new(hosts.clone());
    for (name, dc) in hosts.iter().cloned() {
        let all = all.clone();
        let results = results.clone();
        sim.host(name.clone(), move || {
            let (name, dc, all, results) = (name.clone(), dc, all.clone(), results.clone());
            async move {
                let node =
                    GridKv::start_with(config(&name, dc, two_dcs), Arc::new(turmoil_net::SimNet))
                        .await?;
                for (other, other_dc) in all.iter() {
                    if *other_dc != dc {
                        let faults = LinkFaults {
                            delay: ONE_WAY,
                            ..LinkFaults::default()
                        };
                        node.transport().faults().set(NodeId::new(other).unwrap(), faults);
                    }
                }
                node.ready().await?;
                if name != "a0" {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return Ok(());
                }
                // Every member ready and in the ring.
                while node.ring().len() < all.len() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                if !two_dcs {
                    return measure(&node, "one datacenter, N=2 W=R=2", &results).await;
                }
                // The stream's lag, sampled while LOCAL_QUORUM writes run.
                let lags = Arc::new(Mutex::new(Vec::new()));
                let sampler = {
                    let (node, lags) = (node.clone(), lags.clone());
                    tokio::spawn(async move {
                        loop {
                            let lag = node.remote_streams().iter().map(|s| s.lag).max();
                            lags.lock().unwrap().push(lag.unwrap_or_default());
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    })
                };
                measure(&node, "LOCAL_QUORUM", &results).await?;
                sampler.abort();
                for level in [L::LocalOne, L::One, L::Quorum, L::EachQuorum, L::All] {
                    let levelled = node.with_consistency(level);
                    measure(&levelled, level.as_str(), &results).await?;
                }
                let mut lags = lags.lock().unwrap().clone();
                lags.sort();
                results.lock().unwrap().push(format!(
                    "stream lag to b while writing at LOCAL_QUORUM: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
                    percentile(&lags, 0.5).as_secs_f64() * 1000.0,
                    percentile(&lags, 0.99).as_secs_f64() * 1000.0,
                    lags.last().unwrap().as_secs_f64() * 1000.0,
                    lags.len()
                ));
                Ok(())
            }
        });
    }
    let done = results.clone();
    let want = if two_dcs { 7 } else { 1 };
    sim.client("wait", async move {
        while done.lock().unwrap().len() < want {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    });
    sim.run().expect("simulation");
}

fn main() {
    let results: Results = Arc::default();
    run(false, results.clone());
    run(true, results.clone());
    println!("| level (coordinator in a) | set+get p50 ms | p99 ms |");
    println!("|---|---|---|");
    for line in results.lock().unwrap().iter() {
        println!("{line}");
    }
}
