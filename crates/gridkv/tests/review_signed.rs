//! Review: attacks on signed membership by nodes that hold valid
//! certificates (issue 16 review). Seeds as the other simulations.

mod common;

use std::time::Duration;

use common::membership_sim::signed::{CLUSTER, own_claim, packet_from, sign, signed_cluster, vote};
use common::membership_sim::{Sim, name, seeds, with_seed};
use gridkv::Generation;
use gridkv::membership::signed::ClaimKind;
use gridkv::membership::wire::{ClockReading, Message, Packet, Update};
use gridkv::membership::{Liveness, RingState};

const S: Duration = Duration::from_secs(1);

/// Two members out of seven (valid certificates, a minority) vote to
/// remove every other member. At the victim, `removal_quorum` leaves the
/// members "removed with me" out of the count, so 2 voters out of
/// {victim, n1, n2} is a "majority": the victim takes itself off the ring,
/// which in the node layer clears its store.
#[test]
fn two_colluding_members_cannot_make_a_node_drop_itself() {
    for seed in seeds(2) {
        with_seed(seed, |seed| {
            let n = 7;
            let mut sim = signed_cluster(seed, n);
            let victim = 3;
            let colluders = [1, 2];
            let mut updates = Vec::new();
            for &c in &colluders {
                for t in 0..n {
                    if t != victim && !colluders.contains(&t) {
                        updates.push(vote(&sim, victim, c, t));
                    }
                }
            }
            for &c in &colluders {
                updates.push(vote(&sim, victim, c, victim));
            }
            let before = sim.swim(victim).local().clone();
            assert_eq!(before.ring, RingState::Normal);
            let p = packet_from(&sim, 1, updates);
            sim.inject(victim, Some(name(1)), &p).expect("decodes");
            let after = sim.swim(victim).local().clone();
            assert_eq!(
                (after.ring, after.holds_slots),
                (before.ring, before.holds_slots),
                "a minority of 2/{n} took n{victim} off the ring: {after:?}"
            );
        });
    }
}

/// After a legitimate majority removal and the node's return (joiner,
/// refilled, normal again), the old votes about the same run still count at
/// the node itself (about itself `min_inc` is 0 and old votes are kept): one
/// replayed vote removes it again, once it no longer is a joiner.
#[test]
fn a_replayed_vote_after_rejoining_does_not_remove_a_node_again() {
    for seed in seeds(2) {
        with_seed(seed, |seed| {
            let n = 5;
            let mut sim = signed_cluster(seed, n);
            let victim = 4;
            // A genuine majority (n0..n2) votes the victim's run off.
            let votes: Vec<Update> = (0..3).map(|by| vote(&sim, victim, by, victim)).collect();
            let p = packet_from(&sim, 0, votes.clone());
            sim.inject(victim, Some(name(0)), &p).expect("decodes");
            assert_eq!(sim.swim(victim).local().ring, RingState::Joining);
            // It refills and becomes normal again.
            sim.run_until(60 * S, |s| {
                s.converged() && s.swim(victim).local().ring == RingState::Normal
            })
            .expect("back to normal");
            sim.run_for(5 * S);
            assert_eq!(sim.swim(victim).local().ring, RingState::Normal);
            // One old vote, relayed by any member.
            let p = packet_from(&sim, 1, vec![votes[0].clone()]);
            sim.inject(victim, Some(name(1)), &p).expect("decodes");
            assert_eq!(
                sim.swim(victim).local().ring,
                RingState::Normal,
                "a replayed old vote removed n{victim} again"
            );
        });
    }
}

/// The verified-claims cache is keyed on the signed bytes and signature,
/// not on the certificate the claim carries: a claim seen once with a
/// valid certificate is accepted again with any certificate (here bytes
/// that are no certificate at all), without the expiry or trust-bundle
/// check a first sight makes. The same path keeps accepting a claim whose
/// certificate expired, or whose CA was dropped by a reload.
#[test]
fn a_verified_claim_with_another_certificate_is_checked_again() {
    for seed in seeds(1) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 3);
            // n1's claim as n0 already verified it (same content).
            let mut claim = own_claim(&sim, 1);
            sim.inject(0, Some(name(2)), &packet_from(&sim, 2, vec![claim.clone()]))
                .expect("decodes");
            let before = sim.swim(0).security_stats();
            claim.proof.as_mut().unwrap().certificate = Some(b"not a certificate".to_vec().into());
            sim.inject(0, Some(name(2)), &packet_from(&sim, 2, vec![claim]))
                .expect("decodes");
            let after = sim.swim(0).security_stats();
            assert!(
                after.forged + after.unverifiable > before.forged + before.unverifiable,
                "a claim carrying no valid certificate was accepted from the cache: \
                 {before:?} -> {after:?}"
            );
        });
    }
}

/// A trust bundle reload that drops a CA: claims certified by it verified
/// before (and are cached) but must be refused once `trust_changed` runs.
#[test]
fn a_claim_whose_ca_was_dropped_is_refused_after_trust_changed() {
    use common::membership_sim::fake_creds::FakeCa;
    use gridkv::NodeId;
    use gridkv::membership::trust::CertRole;
    for seed in seeds(2) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 3);
            let cluster_ca = sim.ca.clone().unwrap();
            let other_ca = FakeCa::new(seed ^ 0x0ca2);
            // n0's credentials trust both CAs, then only the cluster's.
            let mine = sim.creds(0);
            mine.set_trusted(vec![cluster_ca.verifying_key(), other_ca.verifying_key()]);
            sim.swim_mut(0).set_credentials(mine.clone()).unwrap();
            let stranger = other_ca.creds(seed, "outsider", CertRole::Node);
            let mut claim = Update::of(sim.swim(0).local());
            claim.identity.id = NodeId::new("outsider").unwrap();
            claim.identity.generation = Generation::new(1);
            claim.identity.addr = "10.66.0.9:7946".into();
            let packet = Packet {
                from: sign(&stranger, claim, ClaimKind::Own, 1),
                message: Message::Ack { seq: 7 },
                updates: vec![],
                clock: ClockReading::default(),
            }
            .encode();
            let refused = |sim: &Sim| sim.swim(0).security_stats().unverifiable;
            let from = Some(NodeId::new("outsider").unwrap());
            let r0 = refused(&sim);
            sim.inject(0, from, &packet).expect("decodes");
            assert_eq!(refused(&sim), r0, "trusted while its CA is in the bundle");
            mine.set_trusted(vec![cluster_ca.verifying_key()]);
            sim.swim_mut(0).trust_changed();
            sim.inject(0, from, &packet).expect("decodes");
            assert_eq!(
                refused(&sim),
                r0 + 1,
                "a claim whose CA was dropped still verified after trust_changed"
            );
            // Members certified by the cluster's CA are learnt again.
            sim.run_for(5 * S);
            assert!(sim.converged(), "{:?}", sim.disagreements());
        });
    }
}

/// Old votes about members that were removed and came back, replayed by
/// two colluders (of five), do not shrink the ring a node counts votes
/// about itself against: only members voting about it count to take
/// others out.
#[test]
fn replayed_votes_about_rejoined_members_do_not_shrink_a_restarted_nodes_count() {
    for seed in seeds(2) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 5);
            let v = 4;
            // n2, n3 and n4 (a majority) once removed n0 and n1, which came
            // back.
            let old: Vec<Update> = [0, 1]
                .iter()
                .flat_map(|&x| [2, 3, 4].map(|by| vote(&sim, x, by, x)))
                .collect();
            for x in [0, 1] {
                let p = packet_from(&sim, 2, old.clone());
                sim.inject(x, Some(name(2)), &p).expect("decodes");
            }
            sim.run_until(60 * S, |s| {
                s.converged()
                    && [0, 1]
                        .iter()
                        .all(|&x| s.swim(x).local().ring == RingState::Normal)
            })
            .expect("n0 and n1 back");
            let old_own = own_claim(&sim, v);
            sim.crash(v);
            sim.start(v);
            sim.run_until(60 * S, |s| {
                s.converged() && s.swim(v).local().in_placement()
            })
            .expect("the restart is back in the ring");
            let mut updates = vec![old_own];
            updates.extend(old);
            updates.extend([2, 3].map(|c| vote(&sim, v, c, v)));
            let before = sim.swim(v).local().ring;
            let p = packet_from(&sim, 2, updates);
            sim.inject(v, Some(name(2)), &p).expect("decodes");
            assert_eq!(
                sim.swim(v).local().ring,
                before,
                "2 of 5 colluders and replayed votes removed n{v}"
            );
        });
    }
}

/// A suspicion signed by a member at an incarnation near `u64::MAX` does
/// not raise the target's incarnation: the target's refutation stays
/// encodable and it stays in the ring.
#[test]
fn a_suspicion_at_a_huge_incarnation_does_not_exhaust_the_targets() {
    for seed in seeds(2) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 4);
            let target = 3;
            let mut claim = Update::of(sim.swim(0).member(&name(target)).unwrap());
            claim.liveness = Liveness::Suspect;
            claim.incarnation = u64::MAX - 1;
            claim.suspector = Some(name(1));
            let claim = sign(
                &sim.creds(1),
                claim,
                ClaimKind::About,
                sim.nodes[1].generation,
            );
            let p = packet_from(&sim, 1, vec![claim]);
            sim.inject(0, Some(name(1)), &p).expect("decodes");
            sim.run_for(120 * S);
            assert!(sim.converged(), "{:?}", sim.disagreements());
            assert!(sim.swim(target).local().incarnation < 1_000);
            for i in 0..4 {
                assert!(
                    sim.swim(i).ring_members().placement.contains(&name(target)),
                    "n{i} lost n{target}"
                );
            }
        });
    }
}

/// Honest votes that fell short of a majority (two of five voted, the
/// node refuted and both took it back), replayed later by a third member
/// with its own vote, do not remove the node: a voter's votes from before
/// its table showed the node alive again are outdated.
#[test]
fn old_honest_votes_replayed_with_a_colluders_do_not_remove_a_node() {
    for seed in seeds(2) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 5);
            let v = 4;
            let old: Vec<Update> = [0, 1].iter().map(|&by| vote(&sim, v, by, v)).collect();
            let p = packet_from(&sim, 0, old.clone());
            sim.inject(v, Some(name(0)), &p).expect("decodes");
            assert_eq!(sim.swim(v).local().ring, RingState::Normal);
            // A suspicion makes it refute; everyone takes it back, and full
            // tables carry that.
            let mut suspect = Update::of(sim.swim(0).member(&name(v)).unwrap());
            suspect.liveness = Liveness::Suspect;
            suspect.suspector = Some(name(0));
            let suspect = sign(
                &sim.creds(0),
                suspect,
                ClaimKind::About,
                sim.nodes[0].generation,
            );
            let p = packet_from(&sim, 0, vec![suspect]);
            sim.inject(v, Some(name(0)), &p).expect("decodes");
            sim.run_for(120 * S);
            assert!(sim.converged(), "{:?}", sim.disagreements());
            let mut replay = old;
            replay.push(vote(&sim, v, 2, v));
            let p = packet_from(&sim, 2, replay);
            sim.inject(v, Some(name(2)), &p).expect("decodes");
            assert_eq!(
                sim.swim(v).local().ring,
                RingState::Normal,
                "replayed old votes and one colluder removed n{v}"
            );
        });
    }
}

/// An operator's removal ends the run it names: the removed node comes
/// back as its next run, so a replay of the removal (as `POST /remove` or
/// gossiped to every member, the node itself included) changes nothing.
#[test]
fn a_replayed_operator_removal_does_not_remove_a_node_that_came_back() {
    use gridkv::membership::signed::{Proof, Removal, RemovalError};
    use gridkv::membership::trust::CertRole;
    for seed in seeds(2) {
        with_seed(seed, |seed| {
            let mut sim = signed_cluster(seed, 4);
            let v = 3;
            let op = sim
                .ca
                .clone()
                .unwrap()
                .creds(seed, "ops", CertRole::Operator);
            let removed_run = sim.nodes[v].generation;
            let removal = Removal::sign(CLUSTER, name(v), Generation::new(removed_run), &*op);
            sim.with_node(0, |s, now| s.apply_removal(now, &removal).unwrap());
            sim.run_until(60 * S, |s| {
                s.converged() && s.swim(v).local().ring == RingState::Normal
            })
            .unwrap_or_else(|| panic!("n3 back: {:?}", sim.disagreements()));
            let back = sim.swim(v).local().clone();
            assert!(back.identity.generation.get() > removed_run, "{back:?}");
            // Replayed at every member (as `POST /remove` would).
            for i in 0..3 {
                let mut res = None;
                sim.with_node(i, |s, now| res = Some(s.apply_removal(now, &removal)));
                let err = res.unwrap().unwrap_err();
                assert!(matches!(err, RemovalError::Unknown { .. }), "n{i}: {err}");
            }
            // And gossiped, to every member, the node itself included.
            let mut gossiped = Update::of(&back);
            gossiped.identity.generation = Generation::new(removed_run);
            gossiped.identity.addr = String::new();
            gossiped.identity.datacenter = String::new();
            gossiped.identity.public_key = None;
            gossiped.incarnation = 0;
            gossiped.liveness = Liveness::Down;
            gossiped.ring = RingState::Removed;
            gossiped.holds_slots = false;
            gossiped.suspector = None;
            gossiped.proof = Some(Proof {
                kind: ClaimKind::Operator,
                signer: removal.operator,
                signer_generation: Generation::new(0),
                signature: removal.signature,
                certificate: Some(removal.certificate.clone()),
            });
            for i in [0, 1, 3] {
                let p = packet_from(&sim, 2, vec![gossiped.clone()]);
                sim.inject(i, Some(name(2)), &p).expect("decodes");
                let now = sim.swim(v).local();
                assert_eq!(
                    (now.identity.generation, now.ring, now.incarnation),
                    (
                        back.identity.generation,
                        RingState::Normal,
                        back.incarnation
                    ),
                    "a replay through n{i} removed n{v} again"
                );
            }
            sim.run_for(30 * S);
            for i in 0..4 {
                assert!(
                    sim.swim(i).ring_members().placement.contains(&name(v)),
                    "n{i}"
                );
            }
        });
    }
}
