//! Membership across datacenters, simulated: WAN links get WAN timing,
//! so a slow, lossy WAN carries no false "down" while detection inside a
//! datacenter stays as fast as in a cluster of one; and a datacenter cut
//! off keeps its ring slots.
//!
//! Every test runs from seeds (`GRIDKV_SIM_SEEDS` sets how many,
//! `GRIDKV_SEED` replays one) and prints the failing seed.

mod common;

use std::time::Duration;

use common::membership_sim::{Sim, seeds, with_seed};
use gridkv::membership::{Liveness, MemberEvent, SwimConfig};

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

/// `a` nodes in datacenter `a` (0..a) and `b` in `b`, with one-way WAN
/// latency `wan` (±10%) and `loss` between them, converged.
fn two_datacenters(seed: u64, a: usize, b: usize, wan: Duration, loss: f64) -> Sim {
    let mut sim = Sim::new(seed, a + b, SwimConfig::lan());
    for i in a..a + b {
        sim.datacenters[i] = "b".into();
    }
    sim.wan = Some(((wan.mul_f64(0.9), wan.mul_f64(1.1)), loss));
    sim.start_all(10 * MS);
    let n = a + b;
    sim.run_until(120 * S, |s| {
        s.converged() && (0..n).all(|i| s.swim(i).ring_members().placement.len() == n)
    })
    .unwrap_or_else(|| panic!("{n} nodes did not converge (seed {seed})"));
    sim
}

fn downs_since(sim: &Sim, since: Duration) -> Vec<String> {
    sim.events
        .iter()
        .filter(|(t, _, _)| *t >= since)
        .filter_map(|(t, by, e)| match e {
            MemberEvent::Changed { member, .. } if member.liveness == Liveness::Down => {
                Some(format!("{t:?}: n{by} declared {} down", member.identity.id))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_lossy_150ms_wan_link_declares_no_one_down_in_ten_minutes() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let mut sim = two_datacenters(seed, 4, 4, 150 * MS, 0.05);
            let since = sim.now;
            let before = sim.bytes_sent.clone();
            sim.run_for(600 * S);
            let rate = |range: std::ops::Range<usize>| {
                let bytes: u64 = range.clone().map(|i| sim.bytes_sent[i] - before[i]).sum();
                bytes as f64 / range.len() as f64 / 600.0
            };
            println!(
                "membership bytes/s per node (seed {seed}): datacenter a {:.0}, b {:.0}",
                rate(0..4),
                rate(4..8)
            );
            let downs = downs_since(&sim, since);
            assert!(
                downs.is_empty(),
                "false downs across the WAN (seed {seed}): {downs:?}"
            );
            // The WAN links were seen as such: the probes timed them.
            let wan = sim
                .swim(0)
                .link_rtt(&sim.nodes[5].id)
                .expect("an RTT to a WAN member");
            assert!(wan >= 250 * MS, "RTT {wan:?} (seed {seed})");
        });
    }
}

#[test]
fn detection_inside_a_datacenter_is_as_fast_as_without_a_wan() {
    // A member of a crashes; the other members of a detect it. The same
    // crash in a cluster of a alone is the reference, from the same seeds.
    let mut with_wan = Vec::new();
    let mut alone = Vec::new();
    for seed in seeds(40) {
        with_seed(seed, |seed| {
            for (wan, out) in [(true, &mut with_wan), (false, &mut alone)] {
                let mut sim = if wan {
                    two_datacenters(seed, 5, 5, 150 * MS, 0.05)
                } else {
                    two_datacenters(seed, 5, 0, MS, 0.0)
                };
                sim.run_for(5 * S);
                let crashed = 1 + (seed % 4) as usize;
                sim.crash(crashed);
                let id = sim.nodes[crashed].id;
                let down_everywhere = |s: &Sim| {
                    (0..5).filter(|&i| i != crashed).all(|i| {
                        s.view(i, crashed)
                            .is_some_and(|(l, ..)| l == Liveness::Down)
                    })
                };
                let took = sim
                    .run_until(60 * S, down_everywhere)
                    .unwrap_or_else(|| panic!("{id} never down in its datacenter (seed {seed})"));
                out.push(took);
            }
        });
    }
    with_wan.sort();
    alone.sort();
    let p = |v: &[Duration], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    println!(
        "down in its datacenter: with a WAN p50 {:?} p99 {:?}; alone p50 {:?} p99 {:?}",
        p(&with_wan, 0.5),
        p(&with_wan, 0.99),
        p(&alone, 0.5),
        p(&alone, 0.99)
    );
    // The WAN members add to the table (suspicion scales with log n) but
    // never slow the probing of the LAN ones.
    assert!(
        p(&with_wan, 0.5) <= p(&alone, 0.5).mul_f64(1.5),
        "p50 {:?} with a WAN vs {:?} alone",
        p(&with_wan, 0.5),
        p(&alone, 0.5)
    );
    assert!(p(&with_wan, 0.99) <= 4 * S, "p99 {:?}", p(&with_wan, 0.99));
}

#[test]
fn a_datacenter_cut_off_keeps_its_slots_until_its_own_timeout() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            // a holds a strict majority, so it may remove members: it
            // would remove b's after remove_after if they failed one by
            // one.
            let mut sim = two_datacenters(seed, 6, 3, 50 * MS, 0.0);
            let a: Vec<usize> = (0..6).collect();
            let b: Vec<usize> = (6..9).collect();
            sim.partition(&[&a, &b]);
            sim.run_for(sim.config.remove_after * 3);
            for &i in &a {
                for &j in &b {
                    let (liveness, ring, _) = sim.view(i, j).expect("a member");
                    assert_eq!(liveness, Liveness::Down, "n{i} sees n{j} (seed {seed})");
                    assert!(
                        sim.swim(i)
                            .ring_members()
                            .placement
                            .contains(&sim.nodes[j].id),
                        "n{i} removed n{j} ({ring:?}) while its datacenter was cut off (seed {seed})"
                    );
                }
            }
            sim.heal();
            sim.run_until(120 * S, |s| s.converged())
                .unwrap_or_else(|| panic!("no convergence after healing (seed {seed})"));
        });
    }
}

#[test]
fn a_member_failing_alone_in_a_live_datacenter_is_still_removed() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let mut sim = two_datacenters(seed, 4, 3, 50 * MS, 0.0);
            sim.crash(5);
            let gone = sim.nodes[5].id;
            let removed =
                |s: &Sim| (0..4).all(|i| !s.swim(i).ring_members().placement.contains(&gone));
            sim.run_until(sim.config.remove_after * 4, removed)
                .unwrap_or_else(|| panic!("{gone} never removed (seed {seed})"));
        });
    }
}

#[test]
fn a_datacenter_coming_back_node_by_node_keeps_the_slower_ones_for_a_while() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let mut sim = two_datacenters(seed, 6, 3, 50 * MS, 0.0);
            // All of b goes away (a power loss), for long.
            for j in 6..9 {
                sim.crash(j);
            }
            let remove_after = sim.config.remove_after;
            sim.run_for(remove_after * 3);
            // n6 comes back first; n7 and n8 are still away.
            sim.start(6);
            sim.run_for(remove_after / 2);
            for &j in &[7usize, 8] {
                let id = sim.nodes[j].id;
                assert!(
                    sim.swim(0).ring_members().placement.contains(&id),
                    "n{j} removed as soon as its datacenter was back (seed {seed})"
                );
            }
            // Down for remove_after since the datacenter came back: removed.
            let gone = |s: &Sim| {
                [7usize, 8]
                    .iter()
                    .all(|&j| !s.swim(0).ring_members().placement.contains(&s.nodes[j].id))
            };
            sim.run_until(remove_after * 3, gone)
                .unwrap_or_else(|| panic!("n7, n8 never removed (seed {seed})"));
        });
    }
}
