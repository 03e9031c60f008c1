//! Membership at scale, in the deterministic simulation (the membership
//! layer alone, virtual time, 0.2–1.5 ms one-way latency):
//!
//! - rounds (probe intervals) and time until a new node is seen by every
//!   member and sees every member, after it joins a converged cluster;
//! - time until a crashed node is first suspected, first declared down,
//!   and down in every view;
//! - gossip bytes sent per node per second in a steady cluster.
//!
//! `cargo bench -p gridkv --bench membership` (add `-- 10 100` to pick
//! sizes; default 10, 100 and 1000 nodes; `GRIDKV_SEED` picks the seed).

#[path = "../tests/common/membership_sim.rs"]
mod membership_sim;

use std::time::{Duration, Instant};

use gridkv::membership::{Liveness, RingState, SwimConfig};
use membership_sim::Sim;

const S: Duration = Duration::from_secs(1);

/// Runs in steps of `step` until `pred`, up to `limit`; the time taken.
fn run_until(
    sim: &mut Sim,
    step: Duration,
    limit: Duration,
    pred: impl Fn(&Sim) -> bool,
) -> Duration {
    let start = sim.now;
    while !pred(sim) {
        assert!(
            sim.now - start < limit,
            "no convergence within {limit:?} (seed {})",
            sim.seed
        );
        sim.run_for(step);
    }
    sim.now - start
}

fn all_see(sim: &Sim, j: usize, ok: impl Fn(Liveness, RingState) -> bool) -> bool {
    (0..sim.nodes.len())
        .filter(|&i| i != j && sim.nodes[i].running())
        .all(|i| sim.view(i, j).is_some_and(|(l, r, _)| ok(l, r)))
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 100, 1000]
    } else {
        sizes
    };
    let seed: u64 = std::env::var("GRIDKV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let config = SwimConfig::lan();
    let round = config.probe_interval;
    let step = round / 4;
    println!("membership simulation, LAN profile (probe {round:?}), seed {seed}");
    println!(
        "{:>6} | {:>22} | {:>10} | {:>10} | {:>14} | {:>16} | {:>8}",
        "nodes",
        "join: rounds (time)",
        "suspected",
        "first down",
        "down everywhere",
        "gossip B/node/s",
        "wall s"
    );
    for n in sizes {
        let wall = Instant::now();
        // n - 1 nodes form a cluster; node n - 1 joins it later.
        let mut sim = Sim::new(seed, n, config.clone());
        for i in 0..n - 1 {
            sim.start(i);
        }
        let everyone_normal = |sim: &Sim| {
            (0..sim.nodes.len())
                .filter(|&j| sim.nodes[j].running())
                .all(|j| {
                    all_see(sim, j, |l, r| {
                        l == Liveness::Alive && r == RingState::Normal
                    })
                })
        };
        run_until(&mut sim, round, 600 * S, everyone_normal);
        sim.run_for(10 * S);

        // Steady-state gossip volume over 20 s.
        let before: u64 = sim.bytes_sent.iter().sum();
        sim.run_for(20 * S);
        let bytes = sim.bytes_sent.iter().sum::<u64>() - before;
        let per_node = bytes as f64 / (n - 1) as f64 / 20.0;

        // A join.
        let new = n - 1;
        sim.start(new);
        let joined = run_until(&mut sim, step, 300 * S, |sim| {
            all_see(sim, new, |l, r| {
                l == Liveness::Alive && r == RingState::Normal
            }) && sim
                .swim(new)
                .members()
                .filter(|m| m.liveness == Liveness::Alive)
                .count()
                == n
        });

        // A crash.
        sim.run_for(5 * S);
        let victim = n / 2;
        let t0 = sim.now;
        sim.crash(victim);
        let everywhere = run_until(&mut sim, step, 120 * S, |sim| {
            all_see(sim, victim, |l, _| l == Liveness::Down)
        });
        let first = |l: Liveness| {
            sim.events_about(victim, t0)
                .find(|(_, _, m)| m.liveness == l)
                .map(|(t, ..)| t - t0)
                .unwrap_or_default()
        };
        println!(
            "{n:>6} | {:>8.1} ({:>10.2?}) | {:>10.2?} | {:>10.2?} | {:>14.2?} | {:>16.0} | {:>8.1}",
            joined.as_secs_f64() / round.as_secs_f64(),
            joined,
            first(Liveness::Suspect),
            first(Liveness::Down),
            everywhere,
            per_node,
            wall.elapsed().as_secs_f64()
        );
    }
}
