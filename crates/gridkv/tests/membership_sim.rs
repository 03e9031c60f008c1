//! Membership under faults, simulated: virtual time, a seeded network that
//! delays, loses, partitions and holds packets.
//!
//! Every test runs from seeds (`GRIDKV_SIM_SEEDS` sets how many,
//! `GRIDKV_SEED` replays one) and prints the failing seed.

mod common;

use std::time::Duration;

use common::membership_sim::{Sim, seeds, with_seed};
use gridkv::membership::{Liveness, MemberEvent, RingState, SwimConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

/// A cluster of `n` started through node 0, converged, with every member
/// normal in every view.
fn converged_cluster(seed: u64, n: usize) -> Sim {
    let mut sim = Sim::new(seed, n, SwimConfig::lan());
    sim.start_all(10 * MS);
    sim.run_until(60 * S, |s| {
        s.converged() && (0..n).all(|i| s.swim(i).ring_members().placement.len() == n)
    })
    .unwrap_or_else(|| panic!("{n} nodes did not converge (seed {seed})"));
    sim
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Nobody ever declared `j` down after `since`.
fn never_down(sim: &Sim, j: usize, since: Duration) -> bool {
    sim.events_about(j, since)
        .all(|(_, _, m)| m.liveness != Liveness::Down)
}

#[test]
fn joins_through_one_seed_converge_in_bounded_rounds() {
    // Rounds are probe intervals. Join news reaches everyone through the
    // seed's join replies and piggybacked gossip, in O(log n) rounds.
    for (n, max_rounds) in [(3usize, 5u32), (10, 8), (100, 15)] {
        for seed in seeds(3) {
            with_seed(seed, |seed| {
                let mut sim = Sim::new(seed, n, SwimConfig::lan());
                // Everyone starts at once, the seed first.
                sim.start(0);
                for i in 1..n {
                    sim.start(i);
                }
                let took = sim.run_until(60 * S, |s| s.converged()).expect("converges");
                let rounds = took.as_secs_f64() / sim.config.probe_interval.as_secs_f64();
                println!("{n} nodes: converged in {took:?} = {rounds:.1} rounds");
                assert!(
                    rounds <= max_rounds as f64,
                    "{n} nodes took {rounds:.1} rounds (bound {max_rounds}), seed {seed}"
                );
                // Every node sees every member as normal once filled.
                sim.run_for(2 * S);
                for i in 0..n {
                    assert_eq!(sim.swim(i).ring_members().placement.len(), n);
                }
            });
        }
    }
}

#[test]
fn crash_detection_meets_lan_bounds_at_p99() {
    let mut first_suspect = Vec::new();
    let mut first_down = Vec::new();
    let mut all_down = Vec::new();
    for seed in seeds(500) {
        with_seed(seed, |seed| {
            let mut sim = converged_cluster(seed, 10);
            let mut rng = StdRng::seed_from_u64(seed);
            // Crash at a random moment of a running cluster: past the first
            // probe round (in which every node probed the seed early), at a
            // random phase of the probe cycle.
            sim.run_for(Duration::from_micros(
                rng.random_range(2_000_000..12_000_000),
            ));
            let victim = rng.random_range(0..10);
            let t0 = sim.now;
            let r#gen = sim.nodes[victim].generation;
            sim.crash(victim);
            let took = sim.run_until(10 * S, |s| {
                (0..10)
                    .filter(|&i| i != victim)
                    .all(|i| matches!(s.view(i, victim), Some((Liveness::Down, ..))))
            });
            let took = took.unwrap_or_else(|| panic!("not everyone saw the crash, seed {seed}"));
            let first = |l: Liveness| {
                sim.events_about(victim, t0)
                    .find(|(_, _, m)| m.liveness == l && m.identity.generation.get() == r#gen)
                    .map(|(t, ..)| t - t0)
                    .expect("event")
            };
            first_suspect.push(first(Liveness::Suspect));
            first_down.push(first(Liveness::Down));
            all_down.push(took);
        });
    }
    for v in [&mut first_suspect, &mut first_down, &mut all_down] {
        v.sort();
    }
    let report = |name: &str, v: &[Duration]| {
        println!(
            "{name}: p50 {:?} p99 {:?} max {:?} over {} seeds",
            percentile(v, 0.5),
            percentile(v, 0.99),
            v[v.len() - 1],
            v.len()
        );
    };
    report("first suspicion", &first_suspect);
    report("first down", &first_down);
    report("down everywhere", &all_down);
    assert!(
        percentile(&first_suspect, 0.99) < S,
        "suspicion p99 over 1 s"
    );
    assert!(percentile(&first_down, 0.99) < 3 * S, "down p99 over 3 s");
}

#[test]
fn short_pause_refutes_long_pause_goes_down_and_comes_back() {
    for seed in seeds(20) {
        with_seed(seed, |seed| {
            let mut sim = converged_cluster(seed, 5);
            let t0 = sim.now;
            // Shorter than the suspicion timeout (0.8 s at least).
            sim.pause(2);
            sim.run_for(500 * MS);
            sim.resume(2);
            sim.run_for(10 * S);
            assert!(never_down(&sim, 2, t0), "a short pause was declared down");
            assert!(sim.converged());

            // Far longer than detection: down everywhere, then back.
            let t1 = sim.now;
            sim.pause(2);
            sim.run_until(10 * S, |s| {
                (0..5)
                    .filter(|&i| i != 2)
                    .all(|i| matches!(s.view(i, 2), Some((Liveness::Down, ..))))
            })
            .expect("the paused node is declared down");
            sim.resume(2);
            let back = sim.run_until(20 * S, |s| s.converged());
            assert!(back.is_some(), "the resumed node did not come back");
            // It kept its ring slots: down is not removal.
            assert!(
                sim.events_about(2, t1)
                    .all(|(_, _, m)| m.ring != RingState::Removed)
            );
        });
    }
}

#[test]
fn partition_only_the_majority_removes_then_views_converge() {
    for seed in seeds(10) {
        with_seed(seed, |seed| {
            let mut sim = converged_cluster(seed, 5);
            let t0 = sim.now;
            sim.partition(&[&[0, 1], &[2, 3, 4]]);
            // The minority side reaches few members, so its local health
            // rises and its suspicions last up to (1 + 8) × 2.2 s.
            sim.run_for(25 * S);
            for (i, j) in [(0, 2), (1, 4), (2, 0), (4, 1)] {
                assert_eq!(
                    sim.view(i, j).map(|v| v.0),
                    Some(Liveness::Down),
                    "n{i} about n{j}"
                );
            }
            // Past remove_after (30 s): the majority removes the minority;
            // the minority keeps everyone on its ring.
            sim.run_for(35 * S);
            for i in [2, 3, 4] {
                for j in [0, 1] {
                    assert_eq!(
                        sim.view(i, j).map(|v| v.1),
                        Some(RingState::Removed),
                        "majority n{i} should have removed n{j}"
                    );
                }
                assert_eq!(sim.swim(i).ring_members().placement.len(), 3);
            }
            for i in [0, 1] {
                assert_eq!(
                    sim.swim(i).ring_members().placement.len(),
                    5,
                    "minority n{i} shrank its ring"
                );
            }
            assert!(sim.events.iter().all(|(t, at, e)| {
                *t < t0
                    || *at >= 2
                    || !matches!(e, MemberEvent::Changed { member, .. } if member.ring == RingState::Removed)
            }));
            sim.heal();
            let took = sim.run_until(30 * S, |s| s.converged());
            assert!(took.is_some(), "views did not converge after the heal");
            // The removed side came back as joiners, refilled, and is normal.
            sim.run_for(5 * S);
            for i in 0..5 {
                assert_eq!(sim.swim(i).ring_members().placement.len(), 5, "n{i}");
            }
        });
    }
}

#[test]
fn ten_percent_loss_for_ten_minutes_declares_no_one_down() {
    for seed in seeds(10) {
        with_seed(seed, |seed| {
            let mut sim = converged_cluster(seed, 10);
            let t0 = sim.now;
            sim.loss = 0.10;
            sim.run_for(600 * S);
            let downs = sim
                .events
                .iter()
                .filter(|(t, _, e)| {
                    *t >= t0
                        && matches!(e, MemberEvent::Changed { member, .. } if member.liveness == Liveness::Down)
                })
                .count();
            let suspicions = sim
                .events
                .iter()
                .filter(|(t, _, e)| {
                    *t >= t0
                        && matches!(e, MemberEvent::Changed { member, .. } if member.liveness == Liveness::Suspect)
                })
                .count();
            println!("seed {seed}: {suspicions} suspicions, {downs} downs in 10 min at 10% loss");
            assert_eq!(downs, 0, "false positives under 10% loss");
            sim.loss = 0.0;
            assert!(sim.run_until(10 * S, |s| s.converged()).is_some());
        });
    }
}

#[test]
fn restart_under_the_same_id_is_accepted() {
    for seed in seeds(20) {
        with_seed(seed, |seed| {
            let mut sim = converged_cluster(seed, 5);
            // Restart before and after the crash is noticed.
            for gap in [50 * MS, 5 * S] {
                sim.crash(3);
                sim.run_for(gap);
                sim.start(3);
                let took = sim.run_until(10 * S, |s| s.converged());
                assert!(took.is_some(), "restart after {gap:?} not accepted");
            }
            // A restart of a member that held slots keeps them while it
            // refills, instead of moving its ranges elsewhere.
            sim.fill_delay = None;
            sim.crash(3);
            sim.run_for(5 * S);
            sim.start(3);
            sim.run_until(10 * S, |s| s.converged()).expect("rejoins");
            sim.run_for(2 * S);
            for i in 0..5 {
                let ring = sim.swim(i).ring_members();
                assert_eq!(ring.placement.len(), 5, "n{i}");
                assert_eq!(sim.view(i, 3).map(|v| v.1), Some(RingState::Joining));
                assert!(!sim.swim(i).member(&sim.nodes[3].id).unwrap().serves_reads());
            }
        });
    }
}

#[test]
fn duplicate_id_is_refused_and_the_holder_keeps_it() {
    for seed in seeds(20) {
        with_seed(seed, |seed| {
            let mut sim = converged_cluster(seed, 4);
            let holder_gen = sim.nodes[2].generation;
            let dup = sim.start_impostor(2, "10.9.9.9:7946");
            sim.run_for(3 * S);
            assert!(sim.swim(dup).is_refused(), "the duplicate was not refused");
            assert!(
                sim.events
                    .iter()
                    .any(|(_, at, e)| *at == dup && matches!(e, MemberEvent::JoinRefused { .. }))
            );
            for i in [0, 1, 3] {
                assert_eq!(
                    sim.view(i, 2),
                    Some((Liveness::Alive, RingState::Normal, holder_gen)),
                    "n{i}'s view of the holder"
                );
            }
        });
    }
}

#[test]
fn graceful_leave_is_left_not_down() {
    for seed in seeds(20) {
        with_seed(seed, |seed| {
            let mut sim = converged_cluster(seed, 5);
            let t0 = sim.now;
            sim.leave(4);
            sim.run_for(5 * S);
            for i in 0..4 {
                assert_eq!(
                    sim.view(i, 4).map(|v| (v.0, v.1)),
                    Some((Liveness::Left, RingState::Left))
                );
                assert_eq!(sim.swim(i).ring_members().placement.len(), 4);
            }
            assert!(
                sim.events_about(4, t0)
                    .all(|(_, _, m)| !matches!(m.liveness, Liveness::Suspect | Liveness::Down))
            );
        });
    }
}

#[test]
fn joining_becomes_normal_only_after_filling() {
    for seed in seeds(10) {
        with_seed(seed, |seed| {
            let mut sim = converged_cluster(seed, 4);
            sim.fill_delay = None;
            let mut sim5 = Sim::new(seed, 5, SwimConfig::lan());
            // Same four, plus a fifth that does not fill until told.
            sim5.start_all(10 * MS);
            sim5.run_until(30 * S, |s| s.converged()).unwrap();
            drop(sim);
            let mut sim = sim5;
            sim.fill_delay = None;
            sim.crash(4);
            sim.run_for(3 * S);
            sim.start(4);
            sim.nodes[4].generation += 0;
            sim.run_until(10 * S, |s| s.converged()).unwrap();
            sim.run_for(10 * S);
            let id4 = sim.nodes[4].id;
            for i in 0..5 {
                assert_eq!(
                    sim.view(i, 4).map(|v| v.1),
                    Some(RingState::Joining),
                    "n{i}"
                );
                assert!(sim.swim(i).ring_members().future.contains(&id4));
                assert!(!sim.swim(i).member(&id4).unwrap().serves_reads());
            }
            sim.with_node(4, |s, now| s.mark_filled(now));
            sim.run_for(2 * S);
            for i in 0..5 {
                assert_eq!(sim.view(i, 4).map(|v| v.1), Some(RingState::Normal), "n{i}");
                assert!(sim.swim(i).member(&id4).unwrap().serves_reads());
            }
        });
    }
}

/// Random crash, pause and partition schedules; after the faults end (and
/// crashed nodes restart), every view converges.
#[test]
fn random_fault_schedules_converge_after_faults_end() {
    for seed in seeds(500) {
        with_seed(seed, |seed| {
            let mut rng = StdRng::seed_from_u64(seed ^ 0xfa17);
            let n = rng.random_range(3..=7);
            let mut sim = converged_cluster(seed, n);
            sim.loss = rng.random_range(0.0..0.05);
            for _ in 0..rng.random_range(1..=4) {
                let victim = rng.random_range(1..n);
                match rng.random_range(0..4) {
                    0 => sim.crash(victim),
                    1 => sim.pause(victim),
                    2 => {
                        let cut = rng.random_range(1..n);
                        let left: Vec<usize> = (0..cut).collect();
                        let right: Vec<usize> = (cut..n).collect();
                        sim.partition(&[&left, &right]);
                    }
                    _ => {
                        if sim.nodes[victim].running() && !sim.nodes[victim].paused {
                            sim.leave(victim);
                        }
                    }
                }
                sim.run_for(Duration::from_millis(rng.random_range(100..40_000)));
            }
            // Faults end: heal, resume, restart whoever is stopped.
            sim.heal();
            sim.loss = 0.0;
            for i in 0..n {
                if sim.nodes[i].paused {
                    sim.resume(i);
                }
                if !sim.nodes[i].running() {
                    sim.start(i);
                }
            }
            let took = sim.run_until(60 * S, |s| s.converged());
            assert!(
                took.is_some(),
                "views did not converge within 60 s of the faults ending: {:#?}",
                sim.disagreements()
            );
        });
    }
}

/// Suspicions of healthy members raised by `by`, after `since`.
fn suspicions_by(sim: &Sim, by: usize, since: Duration) -> usize {
    sim.events
        .iter()
        .filter(|(t, at, e)| {
            *t >= since
                && *at == by
                && matches!(e, MemberEvent::Changed { member, .. }
                    if member.liveness == Liveness::Suspect && member.id() != sim.nodes[by].id)
        })
        .count()
}

/// Lifeguard: a node whose packets are slow (its probes time out because
/// *it* is slow) raises its local health and suspects others far less; no
/// healthy member is ever declared down because of it.
#[test]
fn slow_node_backs_off_instead_of_accusing_healthy_members() {
    for seed in seeds(5) {
        with_seed(seed, |seed| {
            let mut counts = Vec::new();
            for lifeguard in [true, false] {
                let mut config = SwimConfig::lan();
                if !lifeguard {
                    config.max_local_health = 0;
                }
                let mut sim = Sim::new(seed, 10, config);
                sim.start_all(10 * MS);
                sim.run_until(30 * S, |s| s.converged()).expect("converges");
                let t0 = sim.now;
                sim.slow.insert(9, 100 * MS);
                let mut max_health = 0;
                for _ in 0..60 {
                    sim.run_for(S);
                    max_health = max_health.max(sim.swim(9).local_health());
                }
                let by_slow = suspicions_by(&sim, 9, t0);
                println!(
                    "lifeguard {lifeguard}: slow node raised {by_slow} suspicions, health up to {max_health}"
                );
                if lifeguard {
                    assert!(max_health > 0, "local health never rose");
                    for j in 0..9 {
                        assert!(never_down(&sim, j, t0), "healthy n{j} declared down");
                    }
                }
                counts.push(by_slow);
            }
            assert!(
                counts[0] * 2 <= counts[1],
                "Lifeguard should at least halve the slow node's suspicions: {counts:?}"
            );
        });
    }
}

/// The same seed replays the same run, event for event (no unseeded
/// randomness, no iteration over randomly seeded hash maps).
#[test]
fn a_seed_replays_exactly() {
    let run = |seed| {
        let mut sim = converged_cluster(seed, 6);
        sim.loss = 0.05;
        sim.crash(2);
        sim.partition(&[&[0, 1], &[3, 4, 5]]);
        sim.run_for(10 * S);
        sim.heal();
        sim.start(2);
        sim.run_for(10 * S);
        (sim.events, sim.bytes_sent)
    };
    for seed in seeds(5) {
        with_seed(seed, |seed| {
            let (a, b) = (run(seed), run(seed));
            assert_eq!(a.0.len(), b.0.len());
            assert!(a == b, "two runs of one seed differ");
            assert!(
                run(seed + 1_000_000) != a,
                "different seeds gave identical runs"
            );
        });
    }
}

/// A node paused past `remove_after` is removed by the majority; when it
/// resumes it must learn that (even though it first refutes the suspicions
/// it finds queued) and come back as a joiner that refills, never straight
/// back to normal with stale data.
#[test]
fn removed_node_comes_back_as_joiner() {
    for seed in seeds(10) {
        with_seed(seed, |seed| {
            let mut sim = converged_cluster(seed, 5);
            sim.pause(2);
            sim.run_until(60 * S, |s| {
                (0..5)
                    .filter(|&i| i != 2)
                    .all(|i| matches!(s.view(i, 2), Some((_, RingState::Removed, _))))
            })
            .expect("the paused node is removed");
            let t1 = sim.now;
            sim.resume(2);
            sim.run_until(20 * S, |s| {
                s.converged() && (0..5).all(|i| s.swim(i).ring_members().placement.len() == 5)
            })
            .expect("the removed node rejoins and refills");
            let own: Vec<RingState> = sim
                .events_about(2, t1)
                .filter(|(_, at, _)| *at == 2)
                .map(|(_, _, m)| m.ring)
                .collect();
            assert!(
                own.contains(&RingState::Joining),
                "n2 never went back to joining: {own:?}"
            );
        });
    }
}

/// Forgotten (left) members are not re-created by other nodes' tables.
#[test]
fn forgotten_members_stay_forgotten() {
    for seed in seeds(5) {
        with_seed(seed, |seed| {
            let config = SwimConfig {
                remove_after: 3 * S,
                forget_after: 3 * S,
                push_pull_interval: S,
                ..SwimConfig::lan()
            };
            let mut sim = Sim::new(seed, 6, config);
            sim.start_all(10 * MS);
            sim.run_until(30 * S, |s| s.converged()).unwrap();
            sim.leave(5);
            sim.run_for(30 * S);
            let forgotten = sim
                .events
                .iter()
                .filter(|(_, _, e)| matches!(e, MemberEvent::Forgotten { .. }))
                .count();
            assert_eq!(forgotten, 5, "each of 5 nodes forgets the leaver once");
            for i in 0..5 {
                assert!(sim.view(i, 5).is_none(), "n{i} still lists the leaver");
            }
        });
    }
}
