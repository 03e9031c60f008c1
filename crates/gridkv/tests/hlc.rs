//! Property tests of the Hybrid Logical Clock through its public API.
//!
//! Every property drives [`Hlc`] on virtual time ([`ManualClock`]) (one
//! thread test also uses the system clock), and each one names the
//! implementation mistakes it exists to catch. The number of cases follows proptest's `PROPTEST_CASES` (default
//! 256); the expensive counter-overflow property runs a sixteenth of that.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use gridkv::hlc::{Clock, Hlc, HlcError, ManualClock, SystemClock, Timestamp, Version};
use gridkv::{Generation, NodeId};
use proptest::prelude::*;

/// Wall-clock readings the generators start from: a realistic epoch-ms
/// range (2001..2286), far from both 0 and the 48-bit limit.
const WALL_MIN: u64 = 1_000_000_000_000;
const WALL_MAX: u64 = 10_000_000_000_000;

/// One more than the largest logical counter.
const COUNTER_SPAN: u64 = 1 << Timestamp::LOGICAL_BITS;

fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("valid node id")
}

fn hlc_at(name: &str, wall_ms: u64) -> (Arc<ManualClock>, Hlc) {
    let clock = Arc::new(ManualClock::new(wall_ms));
    let hlc = Hlc::new(node(name), Generation::new(1), clock.clone());
    (clock, hlc)
}

/// Proptest's configuration (so `PROPTEST_CASES` still scales it) with the
/// case count divided by `divisor`, at least 4.
fn scaled_cases(divisor: u32) -> ProptestConfig {
    let base = ProptestConfig::default();
    ProptestConfig {
        cases: (base.cases / divisor).max(4),
        ..base
    }
}

/// The HLC rule, written independently of the implementation: the next
/// timestamp is the larger of the floor and one past the last, in packed
/// (physical << 16 | counter) form, so a full counter carries.
fn model_next(last: u64, floor: u64) -> u64 {
    floor.max(last + 1)
}

fn wall_floor(wall_ms: u64) -> u64 {
    Timestamp::new(wall_ms, 0).as_u64()
}

// ---------------------------------------------------------------------------
// Timestamp packing
// ---------------------------------------------------------------------------

proptest! {
    /// Packing round-trips and orders like the pair (physical, counter).
    /// Catches: swapped fields, a wrong shift, a counter that bleeds into
    /// the physical bits.
    #[test]
    fn timestamp_packs_and_orders_like_its_parts(
        p1 in 0..=Timestamp::MAX_PHYSICAL_MS,
        l1 in any::<u16>(),
        p2 in 0..=Timestamp::MAX_PHYSICAL_MS,
        l2 in any::<u16>(),
    ) {
        let a = Timestamp::new(p1, l1);
        let b = Timestamp::new(p2, l2);
        prop_assert_eq!((a.physical_ms(), a.logical()), (p1, l1));
        prop_assert_eq!(Timestamp::from_u64(a.as_u64()), a);
        prop_assert_eq!(a.cmp(&b), (p1, l1).cmp(&(p2, l2)));
    }
}

// ---------------------------------------------------------------------------
// Monotonicity
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// Wall clock forwards by this many ms.
    Forward(u64),
    /// Wall clock backwards by this many ms.
    Back(u64),
    /// A local event.
    Now,
    /// A remote timestamp `offset_ms` from the local wall clock (ahead when
    /// positive; some land beyond the drift bound), with this counter.
    Update(i64, u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..50).prop_map(Op::Forward),
        1 => (0u64..100_000).prop_map(Op::Forward),
        2 => (0u64..50).prop_map(Op::Back),
        1 => (0u64..100_000).prop_map(Op::Back),
        8 => Just(Op::Now),
        2 => (-10_000i64..6_000, any::<u16>()).prop_map(|(o, l)| Op::Update(o, l)),
        1 => (-10i64..10, prop_oneof![Just(0u16), Just(u16::MAX), any::<u16>()])
            .prop_map(|(o, l)| Op::Update(o, l)),
    ]
}

proptest! {
    /// Any interleaving of wall-clock moves (either way) with `now()` and
    /// `update()` yields strictly increasing timestamps that are never
    /// behind the wall clock, and each equals what the HLC rule predicts.
    ///
    /// Catches: `last` instead of `last + 1` (repeats while the clock
    /// stands still or went back); returning the wall clock after a jump
    /// back; ignoring the wall clock (always `last + 1`, the clock would not
    /// follow time); `update` not advancing `last`, or adopting `remote`
    /// instead of `remote + 1`; `last()` out of step with what was handed out.
    #[test]
    fn every_timestamp_is_strictly_greater_than_the_previous(
        start in WALL_MIN..WALL_MAX,
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let (clock, hlc) = hlc_at("mono", start);
        let max_drift_ms = Hlc::DEFAULT_MAX_DRIFT.as_millis() as u64;
        let mut wall = start;
        let mut model = 0u64;
        let mut prev = Timestamp::ZERO;
        for op in ops {
            let got = match op {
                Op::Forward(ms) => {
                    wall += ms;
                    clock.set(wall);
                    continue;
                }
                Op::Back(ms) => {
                    wall -= ms;
                    clock.set(wall);
                    continue;
                }
                Op::Now => {
                    model = model_next(model, wall_floor(wall));
                    hlc.now()
                }
                Op::Update(offset, logical) => {
                    let remote = Timestamp::new(wall.saturating_add_signed(offset), logical);
                    let res = hlc.update(remote);
                    if remote.physical_ms() > wall + max_drift_ms {
                        prop_assert!(res.is_err(), "{remote:?} beyond drift was adopted");
                        prop_assert_eq!(hlc.last().as_u64(), model);
                        continue;
                    }
                    let got = res.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert!(got > remote, "update {remote:?} returned {got:?}");
                    model = model_next(model, wall_floor(wall).max(remote.as_u64() + 1));
                    got
                }
            };
            prop_assert!(got > prev, "{got:?} after {prev:?}");
            prop_assert!(got.physical_ms() >= wall, "{got:?} behind wall clock {wall}");
            prop_assert_eq!(got.as_u64(), model, "HLC rule broken: got {:?}", got);
            prop_assert_eq!(hlc.last(), got);
            prev = got;
        }
    }
}

// ---------------------------------------------------------------------------
// Send/receive causality between two or three nodes
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum NetOp {
    /// Real time passes for everyone.
    Tick(u64),
    /// One node's wall clock alone steps back (an NTP correction).
    Step(usize, u64),
    /// A local event on a node.
    Local(usize),
    /// `from` stamps a message to `to` and puts it in flight.
    Send(usize, usize),
    /// Deliver the in-flight message at this index (mod the queue length):
    /// messages are delayed and reordered.
    Deliver(usize),
}

/// Initial skew of each node's wall clock from real time: ±1.25 s.
const SKEW_MS: i64 = 1_250;
/// Total a node's clock may step back during a run: 2.5 s. With the skew,
/// any two wall clocks differ by at most 1.25 + 1.25 + 2.5 = 5 s, the
/// default drift bound, so every message is within it.
const STEP_BUDGET_MS: u64 = 2_500;

fn net_scenario() -> impl Strategy<Value = (Vec<i64>, Vec<NetOp>)> {
    (2usize..=3).prop_flat_map(|n| {
        let skews = prop::collection::vec(-SKEW_MS..=SKEW_MS, n);
        let op = prop_oneof![
            3 => (0u64..20).prop_map(NetOp::Tick),
            1 => (0..n, 0u64..1_000).prop_map(|(i, ms)| NetOp::Step(i, ms)),
            3 => (0..n).prop_map(NetOp::Local),
            4 => (0..n, 0..n).prop_map(|(a, b)| NetOp::Send(a, b)),
            4 => any::<usize>().prop_map(NetOp::Deliver),
        ];
        (skews, prop::collection::vec(op, 1..300))
    })
}

/// Node `i` issued `ts`: it must be above everything `i` received and
/// everything `i` issued before.
fn check_issued(
    received: &[Timestamp],
    issued: &mut [Timestamp],
    i: usize,
    ts: Timestamp,
) -> Result<(), TestCaseError> {
    prop_assert!(
        ts > received[i],
        "node {i} issued {ts:?} after receiving {:?}",
        received[i]
    );
    prop_assert!(
        ts > issued[i],
        "node {i} issued {ts:?} after {:?}",
        issued[i]
    );
    issued[i] = ts;
    Ok(())
}

proptest! {
    /// A timestamp received with `update()` is strictly smaller than the
    /// result of that `update()` and than everything the receiver issues
    /// afterwards, for any pairwise skew within the drift bound, with
    /// clocks stepping back, messages delayed and reordered, and causal
    /// chains through a third node. No in-bound message is ever refused.
    ///
    /// Catches: `update` that ignores the remote timestamp (the receiver,
    /// behind in wall time, would stamp later events below the message);
    /// one that adopts `remote` without the `+ 1` (equal, not greater);
    /// one that computes the result without storing it (the next `now()`
    /// falls back); a drift guard that is too strict (in-bound refusals).
    #[test]
    fn receive_happens_after_send((skews, ops) in net_scenario()) {
        let t0 = 1_700_000_000_000u64;
        let clocks: Vec<Arc<ManualClock>> = skews
            .iter()
            .map(|s| Arc::new(ManualClock::new(t0.saturating_add_signed(*s))))
            .collect();
        let nodes: Vec<Hlc> = clocks
            .iter()
            .enumerate()
            .map(|(i, c)| Hlc::new(node(&format!("n{i}")), Generation::new(1), c.clone()))
            .collect();
        // Per node: the largest timestamp it has received (everything it
        // issues from then on must be above it) and the last it issued.
        let mut received = vec![Timestamp::ZERO; nodes.len()];
        let mut issued = vec![Timestamp::ZERO; nodes.len()];
        let mut stepped = vec![0u64; nodes.len()];
        let mut in_flight: Vec<(usize, Timestamp)> = Vec::new();

        for op in ops {
            match op {
                NetOp::Tick(ms) => {
                    for c in &clocks {
                        c.advance(Duration::from_millis(ms));
                    }
                }
                NetOp::Step(i, ms) => {
                    let ms = ms.min(STEP_BUDGET_MS - stepped[i]);
                    stepped[i] += ms;
                    clocks[i].set(clocks[i].now_ms() - ms);
                }
                NetOp::Local(i) => {
                    let ts = nodes[i].now();
                    check_issued(&received, &mut issued, i, ts)?;
                }
                NetOp::Send(from, to) => {
                    let ts = nodes[from].now();
                    check_issued(&received, &mut issued, from, ts)?;
                    in_flight.push((to, ts));
                }
                NetOp::Deliver(k) => {
                    if in_flight.is_empty() {
                        continue;
                    }
                    let (to, msg) = in_flight.swap_remove(k % in_flight.len());
                    let got = nodes[to].update(msg).map_err(|e| {
                        TestCaseError::fail(format!("in-bound message refused: {e}"))
                    })?;
                    prop_assert!(got > msg, "update({msg:?}) on node {to} returned {got:?}");
                    check_issued(&received, &mut issued, to, got)?;
                    received[to] = received[to].max(msg);
                }
            }
        }
        // And the very next event on every node is still above all it got.
        for (i, hlc) in nodes.iter().enumerate() {
            check_issued(&received, &mut issued, i, hlc.now())?;
        }
    }
}

/// The textbook case, spelled out: the sender's clock is ahead, the
/// receiver's wall clock is behind the message and stays there.
#[test]
fn receiver_behind_in_wall_time_still_orders_after_the_message() {
    let (_ca, a) = hlc_at("a", 10_000);
    let (cb, b) = hlc_at("b", 7_000); // 3 s behind, within 5 s
    let msg = a.now();
    assert_eq!(msg, Timestamp::new(10_000, 0));
    let got = b.update(msg).unwrap();
    assert_eq!(got, Timestamp::new(10_000, 1));
    cb.advance(Duration::from_millis(1));
    for _ in 0..3 {
        assert!(b.now() > msg);
    }
    assert_eq!(b.last(), Timestamp::new(10_000, 4));
}

// ---------------------------------------------------------------------------
// Backward clock jumps
// ---------------------------------------------------------------------------

proptest! {
    /// After a jump back of up to a day, `now()` keeps counting up on the
    /// old physical time; once the wall clock is past it again, the clock
    /// follows wall time exactly, with counter 0.
    ///
    /// Catches: following the wall clock back (non-monotonic); staying on
    /// the counter forever once ahead (never resyncing to wall time); a
    /// resync that keeps the old counter instead of resetting it.
    #[test]
    fn backward_jump_keeps_order_and_then_resyncs(
        start in WALL_MIN..WALL_MAX,
        before in 1usize..50,
        back in 1u64..86_400_000,
        during in 1usize..200,
        past in 1u64..10_000,
    ) {
        let (clock, hlc) = hlc_at("jump", start);
        let mut prev = Timestamp::ZERO;
        for _ in 0..before {
            let ts = hlc.now();
            prop_assert!(ts > prev);
            prev = ts;
        }
        let high = prev;
        prop_assert_eq!(high, Timestamp::new(start, before as u16 - 1));

        // Jump back: the clock stays on `start` and counts up.
        clock.set(start - back);
        for i in 0..during {
            let ts = hlc.now();
            prop_assert!(ts > prev, "{ts:?} after {prev:?} at wall {}", start - back);
            let expect = high.as_u64() + 1 + i as u64;
            prop_assert_eq!(ts.as_u64(), expect);
            prev = ts;
        }
        // Wall time creeps back up to the old physical time, not past it:
        // still on the counter.
        clock.set(start);
        let ts = hlc.now();
        prop_assert_eq!(ts.as_u64(), prev.as_u64() + 1);
        prev = ts;
        // Past it: wall time again, counter 0.
        clock.set(prev.physical_ms() + past);
        let ts = hlc.now();
        prop_assert_eq!(ts, Timestamp::new(prev.physical_ms() + past, 0));
        prop_assert!(ts > prev);
    }
}

// ---------------------------------------------------------------------------
// Counter overflow
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(scaled_cases(16))]

    /// More than 65,536 `now()` calls within one millisecond carry into the
    /// physical part, never wrap, and stay strictly monotonic; the physical
    /// part runs ahead by exactly the number of full counters used. When
    /// the wall clock moves forward by less than that lead the clock stays
    /// on the counter; once it moves past it, it follows wall time again.
    ///
    /// Catches: a 16-bit counter that wraps to 0 on the same millisecond
    /// (goes backwards); saturating at `u16::MAX` (repeats); a carry of more
    /// or less than one millisecond; an overflow that panics.
    #[test]
    fn full_counter_carries_into_physical_time(
        wall in WALL_MIN..WALL_MAX,
        full in 1u64..=3,
        extra in 0u64..1_000,
    ) {
        let (clock, hlc) = hlc_at("burst", wall);
        let calls = full * COUNTER_SPAN + extra;
        let mut prev = hlc.now();
        prop_assert_eq!(prev, Timestamp::new(wall, 0));
        for _ in 1..calls {
            let ts = hlc.now();
            prop_assert!(ts > prev, "{ts:?} after {prev:?}");
            prop_assert_eq!(ts.as_u64(), prev.as_u64() + 1);
            prev = ts;
        }
        // Call k (0-based) is wall·2^16 + k: `full` whole counters carried.
        let k = calls - 1;
        prop_assert_eq!(prev.physical_ms(), wall + k / COUNTER_SPAN);
        prop_assert_eq!(u64::from(prev.logical()), k % COUNTER_SPAN);
        prop_assert_eq!(prev.physical_ms() - wall, full - u64::from(extra == 0));

        // Wall time reaches the clock's physical part: still on the counter.
        clock.set(prev.physical_ms());
        let ts = hlc.now();
        prop_assert_eq!(ts.as_u64(), prev.as_u64() + 1);
        // One millisecond past it: wall time again.
        clock.set(ts.physical_ms() + 1);
        prop_assert_eq!(hlc.now(), Timestamp::new(ts.physical_ms() + 1, 0));
    }
}

/// The exact boundary: counter 65,535 is followed by the next millisecond,
/// counter 0; also through `update()`, whose `remote + 1` carries the same
/// way.
#[test]
fn counter_boundary_is_exact() {
    let (_clock, hlc) = hlc_at("edge", 5_000);
    for _ in 0..COUNTER_SPAN - 1 {
        hlc.now();
    }
    assert_eq!(hlc.last(), Timestamp::new(5_000, u16::MAX - 1));
    assert_eq!(hlc.now(), Timestamp::new(5_000, u16::MAX));
    assert_eq!(hlc.now(), Timestamp::new(5_001, 0));
    assert_eq!(hlc.now(), Timestamp::new(5_001, 1));

    let (_clock, rx) = hlc_at("rx", 5_000);
    let got = rx.update(Timestamp::new(5_002, u16::MAX)).unwrap();
    assert_eq!(got, Timestamp::new(5_003, 0));
}

// ---------------------------------------------------------------------------
// Drift rejection
// ---------------------------------------------------------------------------

/// A local history: wall-clock offsets from the start at which `now()` is
/// called (some behind the start, so the clock may be ahead of the wall).
fn history() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(-5_000i64..5_000, 0..30)
}

fn replay(hlc: &Hlc, clock: &ManualClock, start: u64, history: &[i64]) {
    for off in history {
        clock.set(start.saturating_add_signed(*off));
        hlc.now();
    }
}

proptest! {
    /// A remote timestamp more than the maximum drift ahead of the local
    /// wall clock is refused with the exact error, counted once, and
    /// leaves the clock as it was: `last()` is unchanged and the next
    /// `now()` equals that of a twin clock that never saw the message.
    /// The maximum drift is configurable with `with_max_drift`.
    ///
    /// Catches: adopting the far-future time (the whole point of the
    /// guard); refusing but still advancing `last` (or bumping it by one);
    /// wrong `ahead_ms`/`max_drift_ms`/`remote` in the error; not counting,
    /// or counting accepted updates; ignoring `with_max_drift`.
    #[test]
    fn too_far_ahead_is_refused_and_changes_nothing(
        start in WALL_MIN..WALL_MAX,
        hist in history(),
        wall_off in -5_000i64..5_000,
        max_drift_ms in 0u64..60_000,
        beyond in 1u64..1_000_000,
        logical in any::<u16>(),
        accepted_before in 0usize..3,
    ) {
        let clock = Arc::new(ManualClock::new(start));
        let twin_clock = Arc::new(ManualClock::new(start));
        let hlc = Hlc::new(node("guard"), Generation::new(1), clock.clone())
            .with_max_drift(Duration::from_millis(max_drift_ms));
        let twin = Hlc::new(node("guard"), Generation::new(1), twin_clock.clone())
            .with_max_drift(Duration::from_millis(max_drift_ms));
        replay(&hlc, &clock, start, &hist);
        replay(&twin, &twin_clock, start, &hist);
        let wall = start.saturating_add_signed(wall_off);
        clock.set(wall);
        twin_clock.set(wall);

        // Accepted updates (in the past) must not count as rejections.
        for _ in 0..accepted_before {
            let old = Timestamp::new(wall - 1, 0);
            prop_assert!(hlc.update(old).is_ok());
            prop_assert!(twin.update(old).is_ok());
        }
        prop_assert_eq!(hlc.drift_rejections(), 0);

        let remote = Timestamp::new(wall + max_drift_ms + beyond, logical);
        let before = hlc.last();
        let err = hlc.update(remote).unwrap_err();
        prop_assert_eq!(
            err,
            HlcError::DriftExceeded { remote, ahead_ms: max_drift_ms + beyond, max_drift_ms }
        );
        prop_assert_eq!(hlc.drift_rejections(), 1);
        prop_assert_eq!(hlc.last(), before);
        // Twice: counted twice, still nothing adopted.
        prop_assert!(hlc.update(remote).is_err());
        prop_assert_eq!(hlc.drift_rejections(), 2);
        prop_assert_eq!(hlc.last(), before);

        prop_assert_eq!(hlc.now(), twin.now());
        prop_assert_eq!(twin.drift_rejections(), 0);
    }

    /// At exactly the bound (any counter) and just inside it the remote
    /// timestamp is accepted, and the result is after it.
    ///
    /// Catches: `>=` instead of `>` in the guard; comparing the packed
    /// value (counter included) with the bound instead of milliseconds;
    /// measuring drift against the wrong base.
    #[test]
    fn at_the_bound_is_accepted(
        start in WALL_MIN..WALL_MAX,
        hist in history(),
        max_drift_ms in 0u64..60_000,
        inside in 0u64..3,
        logical in any::<u16>(),
    ) {
        let (clock, hlc) = hlc_at("bound", start);
        let hlc = hlc.with_max_drift(Duration::from_millis(max_drift_ms));
        replay(&hlc, &clock, start, &hist);
        clock.set(start);
        let remote = Timestamp::new(start + max_drift_ms.saturating_sub(inside), logical);
        let got = hlc.update(remote).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(got > remote);
        prop_assert_eq!(hlc.last(), got);
        prop_assert_eq!(hlc.drift_rejections(), 0);
    }
}

/// The default bound is 5 s: 5,000 ms ahead is taken, 5,001 ms is not.
#[test]
fn default_max_drift_is_five_seconds() {
    assert_eq!(Hlc::DEFAULT_MAX_DRIFT, Duration::from_secs(5));
    let (_clock, hlc) = hlc_at("default", 100_000);
    assert!(hlc.update(Timestamp::new(105_000, u16::MAX)).is_ok());
    assert_eq!(
        hlc.update(Timestamp::new(105_001, 0)),
        Err(HlcError::DriftExceeded {
            remote: Timestamp::new(105_001, 0),
            ahead_ms: 5_001,
            max_drift_ms: 5_000,
        })
    );
    assert_eq!(hlc.drift_rejections(), 1);
    // The error says what happened.
    let msg = hlc
        .update(Timestamp::new(200_000, 0))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("100000 ms ahead") && msg.contains("5000 ms"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------

fn version_parts() -> impl Strategy<Value = (u64, usize, u64)> {
    // A small timestamp range and few nodes/generations, so ties on the
    // leading fields (the interesting cases) are common.
    (0u64..8, 0usize..4, 0u64..3)
}

proptest! {
    /// Versions order exactly like (timestamp, writer tag, generation), and
    /// two versions are equal only if all three are.
    ///
    /// Catches: reordered fields in the derived `Ord` (generation before
    /// writer, writer before timestamp); a tie-break by `NodeId` bytes in
    /// one place and by tag in another; `Version::new` storing the wrong
    /// node or generation.
    #[test]
    fn versions_order_by_ts_then_writer_then_generation(
        (t1, n1, g1) in version_parts(),
        (t2, n2, g2) in version_parts(),
    ) {
        let names = ["a", "b", "node-1", "node-2"];
        let (id1, id2) = (node(names[n1]), node(names[n2]));
        let v1 = Version::new(Timestamp::from_u64(t1), &id1, Generation::new(g1));
        let v2 = Version::new(Timestamp::from_u64(t2), &id2, Generation::new(g2));
        prop_assert_eq!(v1.writer, id1.tag());
        prop_assert_eq!(v1.generation, Generation::new(g1));
        let key = |t: u64, id: &NodeId, g: u64| (t, id.tag(), g);
        prop_assert_eq!(v1.cmp(&v2), key(t1, &id1, g1).cmp(&key(t2, &id2, g2)));
        prop_assert_eq!(v1 == v2, (t1, n1, g1) == (t2, n2, g2));
    }

    /// Two nodes reading the same clock, and a node restarted with a new
    /// generation whose clock went back, issue identical timestamps but
    /// never an identical version; all of them are totally ordered.
    ///
    /// Catches: `new_version` stamping the wrong writer or generation, and
    /// anything that would let two writers' versions tie (which
    /// last-write-wins would resolve differently on different replicas).
    #[test]
    fn versions_of_different_writers_never_tie(
        start in WALL_MIN..WALL_MAX,
        calls in 1usize..100,
        restart_back in 0u64..10_000,
    ) {
        let clock = Arc::new(ManualClock::new(start));
        let a = Hlc::new(node("a"), Generation::new(7), clock.clone());
        let b = Hlc::new(node("b"), Generation::new(7), clock.clone());
        let mut versions = Vec::new();
        for _ in 0..calls {
            let (va, vb) = (a.new_version(), b.new_version());
            prop_assert_eq!(va.ts, vb.ts);
            prop_assert_ne!(va, vb);
            prop_assert_eq!(va.writer, node("a").tag());
            prop_assert_eq!(va.generation, Generation::new(7));
            versions.push(va);
            versions.push(vb);
        }
        // "a" restarts: new generation, fresh HLC state, clock stepped back.
        clock.set(start - restart_back);
        let a2 = Hlc::new(node("a"), Generation::new(8), clock.clone());
        for _ in 0..calls {
            let v = a2.new_version();
            prop_assert_eq!(v.generation, Generation::new(8));
            versions.push(v);
        }
        let n = versions.len();
        versions.sort();
        versions.dedup();
        prop_assert_eq!(versions.len(), n, "two writes share a version");
    }
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

/// Calls `now()` from `threads` threads at once; returns each thread's
/// timestamps.
fn hammer(hlc: &Hlc, threads: usize, per_thread: usize) -> Vec<Vec<Timestamp>> {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    (0..per_thread).map(|_| hlc.now()).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn assert_all_distinct_and_ordered(per_thread: &[Vec<Timestamp>]) -> Vec<Timestamp> {
    for seq in per_thread {
        assert!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "a thread saw its own timestamps go backwards"
        );
    }
    let mut all: Vec<Timestamp> = per_thread.iter().flatten().copied().collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "{} duplicate timestamps", n - all.len());
    all
}

/// Concurrent `now()` on a frozen clock (every call contends on the counter):
/// all distinct, and together they use exactly the timestamps
/// `wall.0 ..= wall.(n-1)` (carrying), none lost or skipped.
///
/// Catches: a load-then-store instead of a compare-and-swap (two threads
/// hand out the same timestamp); a CAS retry that skips or reuses values.
#[test]
fn concurrent_now_on_a_frozen_clock_is_distinct_and_dense() {
    let (_clock, hlc) = hlc_at("threads", 1_000_000);
    // One thread per core (at least 2), so the threads really overlap.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let per_thread = 500_000;
    let all = assert_all_distinct_and_ordered(&hammer(&hlc, threads, per_thread));
    let first = Timestamp::new(1_000_000, 0).as_u64();
    let total = (threads * per_thread) as u64;
    assert_eq!(all.first().unwrap().as_u64(), first);
    assert_eq!(all.last().unwrap().as_u64(), first + total - 1);
    assert_eq!(hlc.last().as_u64(), first + total - 1);
}

/// Concurrent `now()` on the system clock, with a thread also merging
/// remote timestamps: all distinct, each thread strictly increasing.
#[test]
fn concurrent_now_and_update_on_the_system_clock_are_distinct() {
    let hlc = Hlc::new(node("sys"), Generation::new(1), Arc::new(SystemClock));
    let barrier = Barrier::new(3);
    let per_thread: Vec<Vec<Timestamp>> = std::thread::scope(|s| {
        let mut handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    (0..100_000).map(|_| hlc.now()).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.push(s.spawn(|| {
            barrier.wait();
            (0..20_000)
                .map(|i| {
                    // A peer a little ahead of us.
                    let remote = Timestamp::new(SystemClock.now_ms() + (i % 3), 0);
                    hlc.update(remote).expect("within drift")
                })
                .collect()
        }));
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_all_distinct_and_ordered(&per_thread);
}

/// The coarse clock nodes stamp versions with follows the precise wall
/// clock to within a few kernel ticks and never runs backwards between
/// reads (absent a wall-clock step).
#[test]
fn coarse_system_clock_tracks_the_wall_clock() {
    use gridkv::hlc::{CoarseSystemClock, SystemClock};
    let mut last = CoarseSystemClock.now_ms();
    for _ in 0..1_000 {
        let precise = SystemClock.now_ms();
        let coarse = CoarseSystemClock.now_ms();
        assert!(coarse >= last, "coarse clock went from {last} to {coarse}");
        assert!(
            precise.abs_diff(coarse) <= 50,
            "coarse {coarse} vs precise {precise}"
        );
        last = coarse;
    }
}
