//! Tests of the state machine through its public entry points, and the
//! helpers that the concern files' tests share.

use super::*;
use crate::id::Generation;
use crate::membership::wire::Update;

pub(super) fn swim(name: &str, seeds: &[&str]) -> Swim {
    let id = Identity::new(
        NodeId::new(name).unwrap(),
        Generation::new(1),
        format!("{name}:1"),
    );
    let seeds = seeds.iter().map(|s| s.to_string()).collect();
    Swim::new(id, SwimConfig::lan(), seeds, 7, Duration::ZERO).unwrap()
}

#[test]
fn no_seeds_is_a_one_node_cluster_and_own_address_is_skipped() {
    let mut a = swim("a", &["a:1"]);
    assert!(a.is_joined());
    assert_eq!(a.poll_output(), Some(Output::Event(MemberEvent::Joined)));
    a.handle_timers(Duration::from_secs(5));
    // Nothing to send to: it never dials itself.
    while let Some(out) = a.poll_output() {
        assert!(!matches!(out, Output::Send { .. }), "{out:?}");
    }
}

/// `a`, knowing `x` and `y` (from a join reply sent by `x`).
pub(super) fn a_knowing_x_and_y() -> (Swim, Update, Update) {
    let mut a = swim("a", &["x:1"]);
    let x = Update::of(swim("x", &[]).local());
    let y = Update::of(swim("y", &[]).local());
    let reply = Packet {
        from: x.clone(),
        message: Message::JoinReply {
            members: vec![x.clone(), y.clone()],
        },
        updates: vec![],
        clock: Default::default(),
    };
    a.handle_packet(Duration::ZERO, &reply.encode()).unwrap();
    (a, x, y)
}

pub(super) fn sent(a: &mut Swim) -> Vec<(String, Packet)> {
    std::iter::from_fn(|| a.poll_output())
        .filter_map(|o| match o {
            Output::Send { to, packet } => Some((to, Packet::decode(&packet).unwrap())),
            _ => None,
        })
        .collect()
}

#[test]
fn oversized_packets_are_refused_before_decoding() {
    let mut a = swim("a", &[]);
    let huge = vec![WIRE_VERSION_FOR_TESTS; MAX_PACKET_BYTES + 1];
    assert_eq!(
        a.handle_packet(Duration::ZERO, &huge),
        Err(WireError::Invalid {
            field: "packet size"
        })
    );
}

const WIRE_VERSION_FOR_TESTS: u8 = super::super::wire::WIRE_VERSION;

#[test]
fn garbage_is_an_error_and_changes_nothing() {
    let mut a = swim("a", &[]);
    while a.poll_output().is_some() {}
    assert!(a.handle_packet(Duration::ZERO, b"\x01garbage").is_err());
    assert!(a.poll_output().is_none());
    assert_eq!(a.members().count(), 1);
}
