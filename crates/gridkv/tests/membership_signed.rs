//! Signed membership, simulated: a cluster whose members sign every claim
//! (fake credentials, real Ed25519 signatures) forms, detects a crash,
//! removes the crashed node on a majority's signed votes and takes its
//! restart back; and forged, replayed, unsigned, stranger and misattributed
//! packets change nothing in any view and are counted.
//!
//! Every test runs from seeds (`GRIDKV_SIM_SEEDS` sets how many,
//! `GRIDKV_SEED` replays one) and prints the failing seed.

mod common;

use std::time::Duration;

use common::membership_sim::fake_creds::{FakeCa, FakeCreds};
use common::membership_sim::signed::{CLUSTER, own_claim, packet_from, sign, signed_cluster};
use common::membership_sim::{Sim, name, seeds, with_seed};
use gridkv::membership::signed::{ClaimKind, Removal, RemovalError};
use gridkv::membership::trust::CertRole;
use gridkv::membership::wire::{ClockReading, Message, Packet, Update, WireError};
use gridkv::membership::{Liveness, MembershipSecurityStats, RingState, SwimConfig};
use gridkv::{Generation, NodeId};

const S: Duration = Duration::from_secs(1);

/// Node `i`'s current state as node `viewer` knows it (unsigned).
fn known(sim: &Sim, viewer: usize, i: usize) -> Update {
    Update::of(sim.swim(viewer).member(&name(i)).expect("known member"))
}

type View = Vec<(String, u64, u64, Liveness, RingState, bool, String)>;

/// Every running node's view of every member.
fn views(sim: &Sim) -> Vec<View> {
    (0..sim.nodes.len())
        .filter(|&i| sim.nodes[i].running())
        .map(|i| {
            sim.swim(i)
                .members()
                .map(|m| {
                    (
                        m.id().to_string(),
                        m.identity.generation.get(),
                        m.incarnation,
                        m.liveness,
                        m.ring,
                        m.holds_slots,
                        m.identity.addr.clone(),
                    )
                })
                .collect()
        })
        .collect()
}

fn stats(sim: &Sim, i: usize) -> MembershipSecurityStats {
    sim.swim(i).security_stats()
}

/// Injects `packet` into node `to` as sent by `sender`, checks that no
/// view changes (then, or after the cluster runs on for a while) and
/// returns node `to`'s stats before and after.
fn attack(
    sim: &mut Sim,
    to: usize,
    sender: Option<NodeId>,
    packet: &[u8],
) -> (MembershipSecurityStats, MembershipSecurityStats) {
    let before_views = views(sim);
    let before = stats(sim, to);
    sim.inject(to, sender, packet).expect("the packet decodes");
    let after = stats(sim, to);
    assert_eq!(views(sim), before_views, "a view changed at once");
    sim.run_for(3 * S);
    assert_eq!(views(sim), before_views, "a view changed later");
    (before, after)
}

#[test]
fn signed_cluster_forms_detects_a_crash_removes_by_majority_and_takes_a_restart_back() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let n = 5;
            let mut sim = signed_cluster(seed, n);
            let victim = 4;
            let old_gen = sim.nodes[victim].generation;
            let last_alive = own_claim(&sim, victim);
            sim.crash(victim);
            let down = sim.run_until(20 * S, |s| {
                (0..victim).all(|i| matches!(s.view(i, victim), Some((Liveness::Down, ..))))
            });
            assert!(down.is_some(), "the crash was not detected");
            let suspected = sim
                .events_about(victim, Duration::ZERO)
                .any(|(_, _, m)| m.liveness == Liveness::Suspect);
            assert!(suspected, "nobody suspected the crashed node first");
            let removed = sim.run_until(90 * S, |s| {
                (0..victim).all(|i| matches!(s.view(i, victim), Some((_, RingState::Removed, g)) if g == old_gen))
            });
            assert!(
                removed.is_some(),
                "the crashed node was not removed everywhere: {:?}",
                (0..victim).map(|i| sim.view(i, victim)).collect::<Vec<_>>()
            );
            for i in 0..victim {
                assert_eq!(sim.swim(i).ring_members().placement.len(), n - 1);
            }
            // Its last "alive", replayed, does not bring it back.
            let p = packet_from(&sim, 1, vec![last_alive]);
            let (before, after) = attack(&mut sim, 0, Some(name(1)), &p);
            assert_eq!(after.stale, before.stale + 1);
            sim.start(victim);
            let back = sim.run_until(60 * S, |s| {
                s.converged() && (0..n).all(|i| s.swim(i).ring_members().placement.len() == n)
            });
            assert!(
                back.is_some(),
                "the restart did not rejoin: {:?}",
                sim.disagreements()
            );
            for i in 0..n {
                let st = stats(&sim, i);
                println!("n{i}: {st:?}");
                assert_eq!(st.forged, 0, "an honest cluster forged nothing (n{i})");
                assert_eq!(st.sender_mismatch, 0);
                assert!(st.signatures_checked > 0);
            }
        });
    }
}

#[test]
fn a_forged_removal_of_a_current_member_changes_nothing() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 4);
            // "n1 was removed", signed as if by n2 with a key that is not
            // n2's, relayed by n3 (whose own claim is genuine).
            let mut removal = known(&sim, 0, 1);
            removal.liveness = Liveness::Down;
            removal.ring = RingState::Removed;
            removal.suspector = Some(name(2));
            let mallory = FakeCa::new(seed + 1).creds(seed + 1, "n2", CertRole::Node);
            let forged = sign(
                &mallory,
                removal.clone(),
                ClaimKind::About,
                sim.nodes[2].generation,
            );
            for victim in [0, 1] {
                let p = packet_from(&sim, 3, vec![forged.clone()]);
                let (before, after) = attack(&mut sim, victim, Some(name(3)), &p);
                assert_eq!(after.forged, before.forged + 1, "not counted as forged");
            }
            // A genuine vote by one member alone is not a majority.
            let vote = sign(
                &sim.creds(2),
                removal,
                ClaimKind::About,
                sim.nodes[2].generation,
            );
            let p = packet_from(&sim, 2, vec![vote]);
            let (before, after) = attack(&mut sim, 0, Some(name(2)), &p);
            assert_eq!(after.removals_refused, before.removals_refused + 1);
        });
    }
}

#[test]
fn a_forged_alive_at_a_higher_incarnation_with_another_address_changes_nothing() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 4);
            let mut hijack = own_claim(&sim, 1);
            hijack.incarnation += 1;
            hijack.identity.addr = "10.66.6.6:7946".into();
            // Keeps n1's (public) certificate and signature: the
            // signature no longer covers the fields.
            let p = packet_from(&sim, 2, vec![hijack.clone()]);
            let (before, after) = attack(&mut sim, 0, Some(name(2)), &p);
            assert_eq!(after.forged, before.forged + 1);
            // Signed afresh by another key with n1's certificate.
            let mallory = FakeCa::new(seed).creds(seed + 7, "mallory", CertRole::Node);
            let stolen = FakeCreds {
                id: name(1),
                key: mallory.key.clone(),
                cert: sim.creds(1).cert.clone(),
                trusted: vec![].into(),
            };
            let mut bare = hijack;
            bare.proof = None;
            let resigned = sign(&stolen, bare, ClaimKind::Own, sim.nodes[1].generation);
            let p = packet_from(&sim, 2, vec![resigned]);
            let (before, after) = attack(&mut sim, 3, Some(name(2)), &p);
            assert_eq!(after.forged, before.forged + 1);
        });
    }
}

#[test]
fn a_stranger_announcing_itself_normal_changes_nothing() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 3);
            let stranger = NodeId::new("stranger").unwrap();
            let mut me = Update::of(sim.swim(0).local());
            me.identity.id = stranger;
            me.identity.generation = Generation::new(1);
            me.identity.addr = "10.66.0.1:7946".into();
            me.ring = RingState::Normal;
            me.incarnation = 3;
            let other_ca = FakeCa::new(seed ^ 0xdead).creds(seed, "stranger", CertRole::Node);
            let cases = [
                // A valid certificate from another CA: unverifiable.
                (
                    sign(&other_ca, me.clone(), ClaimKind::Own, 1),
                    "unverifiable",
                ),
                // No signature at all: forged.
                (me.clone(), "forged"),
                // Our CA's operator certificate is no node's: forged.
                (
                    sign(
                        &sim.ca
                            .clone()
                            .unwrap()
                            .creds(seed, "stranger", CertRole::Operator),
                        me.clone(),
                        ClaimKind::Own,
                        1,
                    ),
                    "forged",
                ),
            ];
            for (from, counter) in cases {
                for message in [
                    Message::Join,
                    Message::Ping {
                        seq: 1,
                        target: name(0),
                    },
                ] {
                    let p = Packet {
                        from: from.clone(),
                        message,
                        updates: vec![],
                        clock: ClockReading::default(),
                    }
                    .encode();
                    let (before, after) = attack(&mut sim, 0, Some(stranger), &p);
                    let (b, a) = match counter {
                        "unverifiable" => (before.unverifiable, after.unverifiable),
                        _ => (before.forged, after.forged),
                    };
                    assert_eq!(a, b + 1, "{counter} not counted");
                }
            }
            // Relayed by a member, the stranger's claim is refused too.
            let relayed = sign(&other_ca, me, ClaimKind::Own, 1);
            let p = packet_from(&sim, 1, vec![relayed]);
            let (before, after) = attack(&mut sim, 0, Some(name(1)), &p);
            assert_eq!(after.unverifiable, before.unverifiable + 1);
            assert!(sim.swim(0).member(&stranger).is_none());
        });
    }
}

#[test]
fn a_replayed_old_update_changes_nothing_and_counts_as_stale() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 3);
            // n1 as it was when it joined: incarnation 0, joining.
            let mut old = known(&sim, 0, 1);
            assert!(old.incarnation > 0);
            old.incarnation = 0;
            old.ring = RingState::Joining;
            let replay = sign(&sim.creds(1), old, ClaimKind::Own, sim.nodes[1].generation);
            let p = packet_from(&sim, 2, vec![replay]);
            let (before, after) = attack(&mut sim, 0, Some(name(2)), &p);
            assert_eq!(after.stale, before.stale + 1);
            assert_eq!(after.forged, before.forged);
        });
    }
}

#[test]
fn a_replayed_old_removal_after_a_restart_changes_nothing() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 4);
            // A genuine removal vote by n0 for n3's first run...
            let mut removal = known(&sim, 0, 3);
            removal.liveness = Liveness::Down;
            removal.ring = RingState::Removed;
            removal.suspector = Some(name(0));
            let vote = |sim: &Sim, by: usize| {
                let mut r = removal.clone();
                r.suspector = Some(name(by));
                sign(
                    &sim.creds(by),
                    r,
                    ClaimKind::About,
                    sim.nodes[by].generation,
                )
            };
            let votes: Vec<Update> = (0..3).map(|i| vote(&sim, i)).collect();
            // ...n3 restarts under a new generation and rejoins.
            sim.crash(3);
            sim.start(3);
            sim.run_until(60 * S, |s| s.converged())
                .expect("restart rejoins");
            sim.run_for(5 * S);
            for to in [1, 3] {
                let p = packet_from(&sim, 2, votes.clone());
                let (before, after) = attack(&mut sim, to, Some(name(2)), &p);
                assert_eq!(after.stale, before.stale + 3, "at n{to}");
            }
        });
    }
}

#[test]
fn unsigned_updates_and_packets_are_refused() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 3);
            let mut down = known(&sim, 0, 1);
            down.liveness = Liveness::Down;
            down.suspector = Some(name(2));
            let p = packet_from(&sim, 2, vec![down.clone()]);
            let (before, after) = attack(&mut sim, 0, Some(name(2)), &p);
            assert_eq!(after.forged, before.forged + 1);
            // The whole packet unsigned, as a node without credentials sends.
            let p = Packet {
                from: Update::of(sim.swim(2).local()),
                message: Message::Ping {
                    seq: 1,
                    target: name(0),
                },
                updates: vec![down],
                clock: ClockReading::default(),
            }
            .encode();
            let (before, after) = attack(&mut sim, 0, Some(name(2)), &p);
            assert_eq!(after.forged, before.forged + 1);
            let _ = seed;
        });
    }
}

#[test]
fn a_packet_from_another_node_than_the_authenticated_one_is_refused() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 3);
            // n2's genuine packet saying n1 is down, but the transport
            // authenticated n1 as its sender.
            let mut down = known(&sim, 0, 1);
            down.liveness = Liveness::Down;
            down.suspector = Some(name(2));
            let down = sign(
                &sim.creds(2),
                down,
                ClaimKind::About,
                sim.nodes[2].generation,
            );
            let p = packet_from(&sim, 2, vec![down]);
            let (before, after) = attack(&mut sim, 0, Some(name(1)), &p);
            assert_eq!(after.sender_mismatch, before.sender_mismatch + 1);
            let _ = seed;
        });
    }
}

#[test]
fn a_claim_by_a_signer_whose_key_is_unknown_is_unverifiable() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 3);
            // n2's genuine key, but a run of n2 nobody has seen an own
            // claim from: its key is not known for that run.
            let mut down = known(&sim, 0, 1);
            down.liveness = Liveness::Down;
            down.suspector = Some(name(2));
            let down = sign(
                &sim.creds(2),
                down,
                ClaimKind::About,
                sim.nodes[2].generation + 5,
            );
            let p = packet_from(&sim, 2, vec![down]);
            let (before, after) = attack(&mut sim, 0, Some(name(2)), &p);
            assert_eq!(after.unverifiable, before.unverifiable + 1);
            let _ = seed;
        });
    }
}

#[test]
fn a_claim_relayed_many_times_is_verified_once() {
    let seed = seeds(1)[0];
    with_seed(seed, |seed| {
        let mut sim = signed_cluster(seed, 3);
        let mut suspect = known(&sim, 0, 1);
        suspect.liveness = Liveness::Suspect;
        suspect.suspector = Some(name(2));
        let suspect = sign(
            &sim.creds(2),
            suspect,
            ClaimKind::About,
            sim.nodes[2].generation,
        );
        let p = packet_from(&sim, 2, vec![suspect]);
        let before = stats(&sim, 0);
        for _ in 0..10 {
            sim.inject(0, Some(name(2)), &p).unwrap();
        }
        let after = stats(&sim, 0);
        assert!(
            after.signatures_checked - before.signatures_checked <= 2,
            "{before:?} -> {after:?}"
        );
        assert!(after.verified_cache_hits - before.verified_cache_hits >= 18);
    });
}

#[test]
fn an_operator_removal_applies_everywhere_and_a_node_cannot_sign_one() {
    let seed = seeds(1)[0];
    with_seed(seed, |seed| {
        let mut sim = signed_cluster(seed, 4);
        let ca = sim.ca.clone().unwrap();
        let target = name(3);
        let generation = Generation::new(sim.nodes[3].generation);
        // A node's certificate does not make an operator.
        let fake = Removal::sign(CLUSTER, target, generation, &*sim.creds(1));
        let now = sim.now;
        let err = sim.swim_mut(0).apply_removal(now, &fake).unwrap_err();
        assert!(matches!(err, RemovalError::Refused(_)), "{err}");
        // Another cluster's name breaks the signature.
        let op = ca.creds(seed, "ops", CertRole::Operator);
        let elsewhere = Removal::sign("other", target, generation, &*op);
        assert!(sim.swim_mut(0).apply_removal(now, &elsewhere).is_err());
        // A removal of a run nobody knows.
        let unknown = Removal::sign(CLUSTER, target, Generation::new(999), &*op);
        assert!(matches!(
            sim.swim_mut(0).apply_removal(now, &unknown),
            Err(RemovalError::Unknown { .. })
        ));
        // The operator's removal, through the CLI's bytes.
        let removal = Removal::decode(&Removal::sign(CLUSTER, target, generation, &*op).encode())
            .expect("decodes");
        sim.crash(3);
        sim.with_node(0, |s, now| s.apply_removal(now, &removal).unwrap());
        let removed = sim.run_until(30 * S, |s| {
            (0..3).all(|i| matches!(s.view(i, 3), Some((_, RingState::Removed, _))))
        });
        assert!(
            removed.is_some(),
            "{:?}",
            (0..3).map(|i| sim.view(i, 3)).collect::<Vec<_>>()
        );
    });
}

#[test]
fn older_wire_versions_are_refused_with_a_typed_error() {
    let mut sim = Sim::new_signed(1, 1, SwimConfig::lan());
    sim.start(0);
    let mut p = packet_from(&sim, 0, vec![]);
    p[0] = 2;
    assert_eq!(sim.inject(0, None, &p), Err(WireError::Version { got: 2 }));
}

#[test]
fn a_signed_restart_keeps_its_slots_while_it_refills() {
    for seed in seeds(5) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 5);
            sim.fill_delay = None;
            sim.crash(3);
            sim.run_for(5 * S);
            sim.start(3);
            sim.run_until(10 * S, |s| s.converged()).expect("rejoins");
            sim.run_for(2 * S);
            for i in 0..5 {
                let ring = sim.swim(i).ring_members();
                assert_eq!(ring.placement.len(), 5, "n{i}: {ring:?}");
                assert_eq!(sim.view(i, 3).map(|v| v.1), Some(RingState::Joining));
            }
            assert!(sim.swim(3).local().refilling_restart());
            assert!(sim.swim(3).saw_previous_run());
        });
    }
}

#[test]
fn signed_partition_only_the_majority_removes_then_views_converge() {
    for seed in seeds(5) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 5);
            sim.partition(&[&[0, 1], &[2, 3, 4]]);
            sim.run_for(60 * S);
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
                    "minority n{i}"
                );
            }
            sim.heal();
            let took = sim.run_until(30 * S, |s| s.converged());
            assert!(
                took.is_some(),
                "no convergence after the heal: {:?}",
                sim.disagreements()
            );
            sim.run_for(5 * S);
            for i in 0..5 {
                let v: Vec<_> = (0..5).map(|j| sim.view(i, j)).collect();
                assert_eq!(
                    sim.swim(i).ring_members().placement.len(),
                    5,
                    "n{i}: {v:?} {:?}",
                    sim.swim(i).local()
                );
                assert_eq!(stats(&sim, i).forged, 0, "n{i}");
            }
        });
    }
}

/// Random crash, pause, partition and leave schedules on a signed
/// cluster; after the faults end (and stopped nodes restart), every view
/// converges, and honest members never see a forged claim.
///
/// One outcome is a known limit, bounded rather than excused: a member
/// removed by the majority side of a partition that never learns it (it
/// counts a member in its ring that the voters did not: one that left or
/// crashed on their side and came back as a new run it saw directly). It
/// stays out of the others' rings, and refuses nothing, but does not
/// rejoin until restarted. About 1 in 110 schedules (9 of seeds 1..=1000;
/// it was 24 before the vote counting of issue 16's review); more than 1
/// in 100 (or one, for fewer seeds) fails, as does any other disagreement.
#[test]
fn signed_random_fault_schedules_converge_after_faults_end() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let seeds = seeds(40);
    let mut unlearnt = Vec::new();
    for &seed in &seeds {
        with_seed(seed, |seed| {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5167);
            let n = rng.random_range(3..=6);
            let mut sim = signed_cluster(seed, n);
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
            for i in 0..n {
                let st = stats(&sim, i);
                assert_eq!((st.forged, st.sender_mismatch), (0, 0), "n{i}: {st:?}");
            }
            if took.is_some() {
                return;
            }
            // Removed by the others, running, and not knowing it.
            let unaware = |j: usize| {
                sim.nodes[j].running()
                    && sim.swim(j).local().ring != RingState::Removed
                    && (0..n)
                        .any(|i| i != j && sim.view(i, j).map(|v| v.1) == Some(RingState::Removed))
            };
            let only_unaware = (0..n).all(|i| {
                (0..n).all(|j| {
                    i == j
                        || !sim.nodes[i].running()
                        || unaware(j)
                        || unaware(i)
                        || sim.view(i, j).map(|v| v.1) != Some(RingState::Removed)
                })
            });
            assert!(
                only_unaware && (0..n).any(unaware),
                "no convergence: {:#?}",
                sim.disagreements()
            );
            eprintln!(
                "seed {seed}: removed but unaware: {:?}",
                sim.disagreements()
            );
            for i in 0..n {
                let me = sim.swim(i).local();
                eprintln!(
                    "  n{i}: g{} i{} {:?}",
                    me.identity.generation, me.incarnation, me.ring
                );
            }
            unlearnt.push(seed);
        });
    }
    let allowed = (seeds.len() / 100).max(1);
    assert!(
        unlearnt.len() <= allowed,
        "{} of {} schedules left a removed member unaware (at most {allowed}): seeds {unlearnt:?}",
        unlearnt.len(),
        seeds.len()
    );
    if !unlearnt.is_empty() {
        eprintln!(
            "removed but unaware, seeds {unlearnt:?} (of {})",
            seeds.len()
        );
    }
}

/// Nodes removed by the majority side of a partition learn it at the heal
/// even when a member joined that side after the votes: each counts the
/// votes against the ring it held while cut off (the ring the voters
/// counted), not only against the larger one it learns at the heal.
#[test]
fn removed_nodes_learn_it_though_the_majority_grew_since() {
    for seed in seeds(3) {
        with_seed(seed, |seed| {
            let mut sim = Sim::new_signed(seed, 6, SwimConfig::lan());
            for i in 0..5 {
                sim.start(i);
                sim.run_for(Duration::from_millis(10));
            }
            sim.run_until(60 * S, |s| {
                s.converged() && (0..5).all(|i| s.swim(i).ring_members().placement.len() == 5)
            })
            .expect("five form");
            sim.run_for(5 * S);
            sim.partition(&[&[0, 1, 2, 5], &[3, 4]]);
            sim.run_until(180 * S, |s| {
                [0, 1, 2].iter().all(|&i| {
                    [3, 4]
                        .iter()
                        .all(|&j| s.view(i, j).map(|v| v.1) == Some(RingState::Removed))
                })
            })
            .expect("the majority removes n3 and n4");
            sim.start(5);
            sim.run_until(60 * S, |s| {
                [0, 1, 2, 5]
                    .iter()
                    .all(|&i| s.swim(i).ring_members().placement.contains(&name(5)))
            })
            .expect("n5 joins the majority side");
            sim.heal();
            let took = sim.run_until(60 * S, |s| s.converged());
            assert!(took.is_some(), "no convergence: {:?}", sim.disagreements());
        });
    }
}
