//! Tests of the state machine through its public entry points, and the
//! helpers that the concern files' tests share.

use super::*;
use crate::id::Generation;
use crate::membership::member::RingState;
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

/// `me` (generation `generation`, already joined through `x`) hears, on
/// a packet from `x`, the piggybacked `rumour` about itself.
fn hear_about_self(generation: u64, rumour: impl FnOnce(&mut Update)) -> Swim {
    let (mut a, x, _) = a_knowing_x_and_y();
    a.me.identity.generation = Generation::new(generation);
    while a.poll_output().is_some() {}
    let mut update = Update::of(a.local());
    rumour(&mut update);
    let packet = Packet {
        from: x,
        message: Message::Ack { seq: 0 },
        updates: vec![update],
        clock: Default::default(),
    };
    a.handle_packet(Duration::from_secs(1), &packet.encode())
        .unwrap();
    a
}

/// Whether `a` gossips its own current state (after polling its outputs,
/// which it must not report as an id conflict).
fn gossips_itself(a: &mut Swim) -> bool {
    let me = Update::of(a.local());
    let outputs: Vec<Output> = std::iter::from_fn(|| a.poll_output()).collect();
    assert!(
        !outputs
            .iter()
            .any(|o| matches!(o, Output::Event(MemberEvent::IdConflict { .. }))),
        "its own previous run is no other process: {outputs:?}"
    );
    a.handle_timers(Duration::from_secs(2));
    sent(a)
        .iter()
        .flat_map(|(_, p)| p.updates.iter().chain([&p.from]))
        .any(|u| *u == me)
}

#[test]
fn a_previous_run_under_a_later_generation_seen_gone_is_stepped_past() {
    // The wall clock stepped back across the restart: the previous run
    // (generation 50) was declared down, this run took generation 10 and
    // joined through a seed that did not know the previous run. Members
    // holding generation 50 ignore generation 10 for good.
    for gone in [Liveness::Down, Liveness::Left] {
        let mut a = hear_about_self(10, |u| {
            u.identity.generation = Generation::new(50);
            u.incarnation = 3;
            u.liveness = gone;
        });
        assert!(a.saw_previous_run());
        assert!(
            a.local().identity.generation > Generation::new(50),
            "{gone:?}: {:?}",
            a.local()
        );
        assert!(gossips_itself(&mut a), "{gone:?}");
    }
    let mut a = hear_about_self(10, |u| {
        u.identity.generation = Generation::new(50);
        u.ring = RingState::Removed;
    });
    assert!(a.local().identity.generation > Generation::new(50));
    assert!(gossips_itself(&mut a));
}

#[test]
fn a_previous_run_under_an_earlier_generation_is_refuted() {
    // Gossip still carrying the previous run (generation 5), alive at a
    // higher incarnation than this run's, or already down.
    for liveness in [Liveness::Alive, Liveness::Suspect, Liveness::Down] {
        let mut a = hear_about_self(9, |u| {
            u.identity.generation = Generation::new(5);
            u.incarnation = 7;
            u.liveness = liveness;
        });
        assert!(a.saw_previous_run());
        assert_eq!(a.local().identity.generation, Generation::new(9));
        assert_eq!(a.local().liveness, Liveness::Alive);
        assert!(a.local().incarnation > 7, "{liveness:?}: {:?}", a.local());
        assert!(gossips_itself(&mut a), "{liveness:?}");
    }
}

#[test]
fn a_later_generation_alive_is_still_another_process() {
    let mut a = hear_about_self(10, |u| {
        u.identity.generation = Generation::new(50);
    });
    assert_eq!(a.local().identity.generation, Generation::new(10));
    let conflict = std::iter::from_fn(|| a.poll_output())
        .any(|o| matches!(o, Output::Event(MemberEvent::IdConflict { .. })));
    assert!(conflict);
}
