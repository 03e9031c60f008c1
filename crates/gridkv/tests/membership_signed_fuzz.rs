//! Fuzzing the membership decoder with signatures and certificates
//! present: intact packets round-trip, mutated ones decode to an error or
//! some packet (never a panic), and a node with credentials handles
//! whatever decodes without panicking or growing its table past its
//! bounds. Proptest prints the failing case and persists its seed.

mod common;

use bytes::Bytes;
use common::membership_sim::Sim;
use gridkv::membership::signed::{ClaimKind, MAX_CERT_BYTES, Proof, Removal};
use gridkv::membership::wire::{ClockReading, Message, Packet, Update, WireError};
use gridkv::membership::{Identity, Liveness, Member, RingState, SwimConfig};
use gridkv::{Generation, NodeId};
use proptest::prelude::*;

fn kind(k: u8) -> ClaimKind {
    match k % 3 {
        0 => ClaimKind::Own,
        1 => ClaimKind::About,
        _ => ClaimKind::Operator,
    }
}

#[allow(clippy::too_many_arguments)]
fn update(
    i: usize,
    incarnation: u64,
    liveness: u8,
    ring: u8,
    k: u8,
    signature: [u8; 64],
    cert: Option<Vec<u8>>,
) -> Update {
    let mut m = Member::new(Identity::new(
        NodeId::new(&format!("n{i}")).unwrap(),
        Generation::new(1 + i as u64),
        format!("10.0.0.{i}:7946"),
    ));
    m.incarnation = incarnation;
    m.liveness = [
        Liveness::Alive,
        Liveness::Suspect,
        Liveness::Down,
        Liveness::Left,
    ][liveness as usize % 4];
    m.ring = [
        RingState::Joining,
        RingState::Normal,
        RingState::Leaving,
        RingState::Left,
        RingState::Removed,
    ][ring as usize % 5];
    let mut u = Update::of(&m);
    if k % 2 == 1 {
        u.suspector = Some(NodeId::new("n0").unwrap());
    }
    u.proof = Some(Proof {
        kind: kind(k),
        signer: NodeId::new(&format!("n{}", k % 4)).unwrap(),
        signer_generation: Generation::new(u64::from(k)),
        signature,
        certificate: cert.map(Bytes::from),
    });
    u
}

fn arb_update() -> impl Strategy<Value = Update> {
    (
        0usize..6,
        0u64..1000,
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop::array::uniform32(any::<u8>()),
        prop::option::of(prop::collection::vec(any::<u8>(), 1..600)),
    )
        .prop_map(|(i, inc, l, r, k, half, cert)| {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&half);
            sig[32..].copy_from_slice(&half);
            update(i, inc, l, r, k, sig, cert)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn signed_packets_round_trip_and_mutations_never_panic(
        from in arb_update(),
        updates in prop::collection::vec(arb_update(), 0..8),
        push_pull in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let packet = Packet {
            from,
            message: if push_pull {
                Message::PushPull { members: updates.clone(), reply: true }
            } else {
                Message::Ping { seq: 1, target: NodeId::new("n0").unwrap() }
            },
            updates,
            clock: ClockReading::default(),
        };
        let bytes = packet.encode();
        prop_assert_eq!(Packet::decode(&bytes).unwrap(), packet);
        let mut mutated = bytes.clone();
        for (at, v) in &flips {
            let at = at.index(mutated.len());
            mutated[at] ^= v | 1;
        }
        let mut sim = Sim::new_signed(7, 2, SwimConfig::lan());
        sim.start(0);
        for candidate in [&bytes[..], &mutated[..], &bytes[..cut.index(bytes.len())]] {
            let _ = Packet::decode(candidate);
            let _ = Removal::decode(candidate);
            let _ = sim.inject(0, NodeId::new("n1").ok(), candidate);
        }
        // Nothing a forged packet carries gets into the table.
        prop_assert_eq!(sim.swim(0).members().count(), 1);
    }
}

#[test]
fn oversized_certificates_and_signatures_are_refused() {
    let big = update(1, 1, 0, 1, 0, [7; 64], Some(vec![1; MAX_CERT_BYTES + 1]));
    let packet = Packet {
        from: big,
        message: Message::Ack { seq: 1 },
        updates: vec![],
        clock: ClockReading::default(),
    };
    assert_eq!(
        Packet::decode(&packet.encode()),
        Err(WireError::Invalid {
            field: "certificate"
        })
    );
    let max = update(1, 1, 0, 1, 0, [7; 64], Some(vec![1; MAX_CERT_BYTES]));
    let ok = Packet {
        from: max,
        ..packet
    };
    assert!(Packet::decode(&ok.encode()).is_ok());
}
