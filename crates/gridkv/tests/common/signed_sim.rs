//! Claims and packets as members (or attackers holding their keys) sign
//! them, for the signed-membership simulations.

use std::time::Duration;

use gridkv::Generation;
use gridkv::membership::signed::{ClaimKind, Proof, signed_bytes};
use gridkv::membership::trust::Credentials;
use gridkv::membership::wire::{ClockReading, Message, Packet, Update};
use gridkv::membership::{Liveness, RingState, SwimConfig};

use super::fake_creds::FakeCreds;
use super::{Sim, name};

/// The cluster name every simulated signature covers.
pub const CLUSTER: &str = "sim";

const S: Duration = Duration::from_secs(1);

/// `update` signed by `creds` as `kind`, from run `generation` of the
/// signer (what a member, or an attacker holding that key, would send).
pub fn sign(creds: &FakeCreds, mut update: Update, kind: ClaimKind, generation: u64) -> Update {
    let generation = Generation::new(generation);
    let bytes = signed_bytes(CLUSTER, &update, kind, creds.id, generation);
    update.proof = Some(Proof {
        kind,
        signer: creds.id,
        signer_generation: generation,
        signature: creds.sign(&bytes),
        certificate: (kind != ClaimKind::About).then(|| creds.cert.clone().into()),
    });
    update
}

/// Node `i`'s current own claim, signed by it.
pub fn own_claim(sim: &Sim, i: usize) -> Update {
    let me = sim.swim(i).local();
    sign(
        &sim.creds(i),
        Update::of(me),
        ClaimKind::Own,
        me.identity.generation.get(),
    )
}

/// A packet from node `from` (its real, signed own claim) carrying
/// `updates`.
pub fn packet_from(sim: &Sim, from: usize, updates: Vec<Update>) -> Vec<u8> {
    Packet {
        from: own_claim(sim, from),
        message: Message::Ack { seq: 999_999 },
        updates,
        clock: ClockReading::default(),
    }
    .encode()
}

/// A signed vote by node `by` to remove node `target`'s run, as node
/// `viewer` knows that run.
pub fn vote(sim: &Sim, viewer: usize, by: usize, target: usize) -> Update {
    let mut v = Update::of(
        sim.swim(viewer)
            .member(&name(target))
            .expect("known member"),
    );
    v.liveness = Liveness::Down;
    v.ring = RingState::Removed;
    v.holds_slots = false;
    v.suspector = Some(name(by));
    sign(
        &sim.creds(by),
        v,
        ClaimKind::About,
        sim.nodes[by].generation,
    )
}

/// A signed cluster of `n`, converged, every member normal everywhere.
pub fn signed_cluster(seed: u64, n: usize) -> Sim {
    let mut sim = Sim::new_signed(seed, n, SwimConfig::lan());
    sim.start_all(Duration::from_millis(10));
    sim.run_until(60 * S, |s| {
        s.converged() && (0..n).all(|i| s.swim(i).ring_members().placement.len() == n)
    })
    .unwrap_or_else(|| {
        panic!(
            "signed cluster of {n} did not converge: {:?}",
            sim.disagreements()
        )
    });
    // Let the join gossip die down.
    sim.run_for(5 * S);
    sim
}
