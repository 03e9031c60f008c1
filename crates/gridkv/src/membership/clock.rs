//! The clock monitor: how far this node's wall clock is from the
//! cluster's, measured on membership round trips, and whether it is too
//! far for the node to stamp writes.
//!
//! Every membership packet carries its sender's wall clock
//! ([`ClockReading`](super::wire::ClockReading)). When an ack answers one
//! of this node's pings, the round trip gives a [`Sample`] of the peer's
//! offset (peer minus local), as CockroachDB's `RemoteClockMonitor` takes
//! them from heartbeats: the peer read its clock somewhere within the
//! round trip, so the offset is the reading minus the round trip's
//! midpoint, give or take half the round trip (the sample's uncertainty).
//!
//! The node is compared against the **median** of the members it reaches,
//! itself included, not against any one peer: with one node 3 s fast and
//! one 3 s slow, the median sits between them and both are within a 5 s
//! bound. The [`ClockView`] says
//!
//! - the node's offset from the median (the point estimate, from each
//!   member's latest sample), which the node subtracts from its wall clock
//!   to stamp versions in the cluster's time;
//! - whether the node is *beyond* the bound: a lower bound of its distance
//!   from the median, given each sample's uncertainty over the last
//!   [`MIN_SAMPLES`] samples of every member, exceeds it.
//!
//! Both need a strict majority of the members (left and removed ones do
//! not count, down ones do) to have been sampled, so a node that reaches
//! only a minority neither corrects its clock nor fences itself. With an
//! even number of members sampled and the middle two further apart than
//! the bound there is no telling which side is right: no estimate.
//!
//! Sans-IO like the rest of membership: [`Swim`](super::Swim) records
//! samples and readings as packets arrive, and computes the view on
//! demand.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::id::NodeId;

/// Samples of one peer kept, newest last.
const SAMPLES_KEPT: usize = 4;

/// Samples of a member needed before it counts towards a fence: a node
/// stops coordinating writes only on several consistent measurements,
/// never on one delayed ack.
pub const MIN_SAMPLES: usize = 3;

/// Samples older than this are ignored (a member probed that rarely is in
/// a table of thousands, where each round is long; its old samples still
/// count for this long).
pub const SAMPLE_LIFETIME: Duration = Duration::from_secs(120);

/// Slack added to every sample's uncertainty: wall clocks are read in
/// whole milliseconds, and a coarse clock may lag its tick.
const READ_SLACK_MS: u64 = 4;

/// One measurement of a peer's wall clock against this node's.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use gridkv::membership::clock::Sample;
///
/// // A ping left at local wall time 10_000; the ack came back 20 ms later
/// // carrying the peer's reading 13_010: the peer is about 3 s ahead.
/// let s = Sample::from_round_trip(10_000, Duration::from_millis(20), 13_010, Duration::ZERO);
/// assert_eq!(s.offset_ms, 3_000);
/// assert!(s.uncertainty_ms >= 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The peer's wall clock minus this node's, in milliseconds.
    pub offset_ms: i64,
    /// How far the true offset may be from `offset_ms`: half the round
    /// trip, plus the clocks' reading resolution.
    pub uncertainty_ms: u64,
    /// When it was taken (the state machine's time).
    pub at: Duration,
}

impl Sample {
    /// A sample from a round trip: this node's wall clock when the request
    /// left, the round trip's duration, and the peer's wall clock when it
    /// answered; taken at `at`.
    pub fn from_round_trip(sent_wall_ms: u64, rtt: Duration, peer_wall_ms: u64, at: Duration) -> Self {
        let half = rtt / 2;
        let midpoint = sent_wall_ms as i128 + half.as_millis() as i128;
        let offset = (peer_wall_ms as i128 - midpoint).clamp(i64::MIN as i128, i64::MAX as i128);
        Self {
            offset_ms: offset as i64,
            uncertainty_ms: (half.as_micros().div_ceil(1_000) as u64).saturating_add(READ_SLACK_MS),
            at,
        }
    }
}

/// What this node knows of one peer's clocks.
#[derive(Debug, Default)]
struct PeerClock {
    /// Round-trip samples, newest last, at most [`SAMPLES_KEPT`].
    samples: VecDeque<Sample>,
    /// The latest lower bound on how far the peer's wall clock is ahead of
    /// this node's: from a round trip (offset minus uncertainty) or from
    /// any packet (its reading minus this node's clock on arrival: the
    /// packet took some time to come, so the peer is at least that far
    /// ahead).
    lead_ms: Option<i64>,
    /// The highest HLC timestamp the peer vouched for, in this run of this
    /// node.
    floor: Option<u64>,
}

/// One member as the monitor weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weighed {
    /// The member.
    pub id: NodeId,
    /// Whether it is reachable (alive or suspect) in this node's view.
    pub reachable: bool,
    /// Whether it counts towards the majority at all (not left, not
    /// removed).
    pub counts: bool,
}

/// What the clock monitor concludes about this node's clock.
///
/// # Examples
///
/// ```
/// use gridkv::membership::clock::ClockView;
///
/// let alone = ClockView::default();
/// assert_eq!(alone.offset_ms, None);
/// assert!(!alone.beyond);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockView {
    /// Members whose clocks count: this node, and every member neither
    /// left nor removed (down ones too).
    pub members: usize,
    /// How many of them the estimate rests on: this node and the
    /// reachable members with a recent sample.
    pub sampled: usize,
    /// This node's offset from the median of the sampled members, in ms
    /// (positive: this node is ahead). `None` without a strict majority,
    /// or when an even split leaves the median undecided.
    pub offset_ms: Option<i64>,
    /// The uncertainty of `offset_ms`: that of the median member's sample.
    pub uncertainty_ms: u64,
    /// At least how far this node's clock is from the median, given every
    /// sample's uncertainty over the last [`MIN_SAMPLES`] samples of each
    /// member; `None` without a strict majority of members sampled that
    /// often.
    pub distance_ms: Option<u64>,
    /// Which side of the median `distance_ms` is on: this node is ahead.
    pub ahead: bool,
    /// `distance_ms` exceeds the bound: this node should not coordinate
    /// writes.
    pub beyond: bool,
    /// At least how far the reachable member with the fastest clock is
    /// ahead of this node's wall clock (0 if none is known to be ahead).
    pub lead_ms: u64,
}

/// Offsets of peers' clocks, measured on membership round trips, and the
/// view of this node's clock they give. Holds at most 4 samples for each
/// member in the table.
#[derive(Debug, Default)]
pub struct ClockMonitor {
    peers: BTreeMap<NodeId, PeerClock>,
}

impl ClockMonitor {
    /// Records a round-trip sample of `id`'s clock.
    pub fn sample(&mut self, id: NodeId, sample: Sample) {
        let peer = self.peers.entry(id).or_default();
        if peer.samples.len() == SAMPLES_KEPT {
            peer.samples.pop_front();
        }
        peer.samples.push_back(sample);
        peer.lead_ms = Some(sample.offset_ms.saturating_sub(sample.uncertainty_ms as i64));
    }

    /// Records a packet from `id`: its wall clock `wall_ms` (0: unknown),
    /// read when it sent the packet, this node's wall clock `local_ms` on
    /// arrival, and the HLC timestamp it vouches for (0: none).
    pub fn heard(&mut self, id: NodeId, wall_ms: u64, local_ms: u64, hlc: u64) {
        if wall_ms == 0 && hlc == 0 {
            return;
        }
        let peer = self.peers.entry(id).or_default();
        if wall_ms != 0 && local_ms != 0 {
            let lead = (wall_ms as i128 - local_ms as i128 - READ_SLACK_MS as i128)
                .clamp(i64::MIN as i128, i64::MAX as i128) as i64;
            peer.lead_ms = Some(lead);
        }
        if hlc != 0 {
            peer.floor = Some(peer.floor.unwrap_or(0).max(hlc));
        }
    }

    /// This node's wall clock stepped by `step_ms` (forwards when
    /// positive): every measurement against it moves the other way, so
    /// that what the samples say of the peers' clocks stays true.
    pub fn shift(&mut self, step_ms: i64) {
        for peer in self.peers.values_mut() {
            for s in &mut peer.samples {
                s.offset_ms = s.offset_ms.saturating_sub(step_ms);
            }
            peer.lead_ms = peer.lead_ms.map(|l| l.saturating_sub(step_ms));
        }
    }

    /// Forgets `id` (it left the member table).
    pub fn forget(&mut self, id: &NodeId) {
        self.peers.remove(id);
    }

    /// The samples kept of `id`, oldest first.
    pub fn samples(&self, id: &NodeId) -> impl Iterator<Item = &Sample> + '_ {
        self.peers.get(id).into_iter().flat_map(|p| p.samples.iter())
    }

    /// The highest HLC timestamp vouched for by every member that counts,
    /// if every one of them is reachable and has vouched for one; `None`
    /// otherwise (a member that is down may hold versions nobody else has
    /// merged).
    pub fn floor_of_all(&self, members: &[Weighed]) -> Option<u64> {
        let mut floor = 0;
        for m in members.iter().filter(|m| m.counts) {
            if !m.reachable {
                return None;
            }
            floor = floor.max(self.peers.get(&m.id)?.floor?);
        }
        Some(floor)
    }

    /// The view of this node's clock at `now`, against `bound_ms`, over
    /// `members` (every other member in the table).
    pub fn view(&self, now: Duration, members: &[Weighed], bound_ms: u64) -> ClockView {
        let fresh = |s: &&Sample| now.saturating_sub(s.at) <= SAMPLE_LIFETIME;
        let counted = members.iter().filter(|m| m.counts).count() + 1;
        let majority = |n: usize| n * 2 > counted;
        let mut latest: Vec<(i64, u64)> = vec![(0, 0)];
        let mut lows: Vec<i64> = vec![0];
        let mut highs: Vec<i64> = vec![0];
        let mut lead = 0u64;
        for m in members.iter().filter(|m| m.counts && m.reachable) {
            let Some(peer) = self.peers.get(&m.id) else {
                continue;
            };
            if let Some(l) = peer.lead_ms {
                lead = lead.max(l.max(0) as u64);
            }
            let recent: Vec<&Sample> = peer.samples.iter().rev().filter(fresh).collect();
            if let Some(s) = recent.first() {
                latest.push((s.offset_ms, s.uncertainty_ms));
            }
            if recent.len() >= MIN_SAMPLES {
                let window = &recent[..MIN_SAMPLES];
                let u = |s: &&Sample| s.uncertainty_ms as i64;
                let low = window.iter().map(|s| s.offset_ms.saturating_sub(u(s)));
                let high = window.iter().map(|s| s.offset_ms.saturating_add(u(s)));
                lows.push(low.min().unwrap_or(0));
                highs.push(high.max().unwrap_or(0));
            }
        }
        let mut view = ClockView {
            members: counted,
            sampled: latest.len(),
            lead_ms: lead,
            ..ClockView::default()
        };
        if majority(latest.len()) {
            latest.sort_unstable();
            let k = latest.len();
            let (lo, hi) = (latest[(k - 1) / 2], latest[k / 2]);
            if hi.0.abs_diff(lo.0) <= bound_ms {
                // The median of the others relative to this node; this
                // node's offset from it is its negation.
                let median = ((lo.0 as i128 + hi.0 as i128) / 2) as i64;
                view.offset_ms = Some(median.saturating_neg());
                view.uncertainty_ms = lo.1.max(hi.1);
            }
        }
        if majority(lows.len()) {
            lows.sort_unstable();
            highs.sort_unstable();
            let k = lows.len();
            // The widest the median can be: the lower middle of the lower
            // bounds, the upper middle of the upper bounds. This node (at
            // 0) is beyond the bound only if that whole range is.
            let (m_lo, m_hi) = (lows[(k - 1) / 2], highs[k / 2]);
            let distance = m_lo.max(m_hi.saturating_neg()).max(0) as u64;
            view.distance_ms = Some(distance);
            // The others' median is below this node's clock.
            view.ahead = m_hi < 0;
            view.beyond = distance > bound_ms;
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn alive(names: &[&str]) -> Vec<Weighed> {
        names
            .iter()
            .map(|n| Weighed {
                id: id(n),
                reachable: true,
                counts: true,
            })
            .collect()
    }

    /// A monitor with `rounds` samples of each named peer at the given
    /// offset, each with a 1 ms round trip.
    fn monitor(peers: &[(&str, i64)], rounds: usize) -> ClockMonitor {
        let mut m = ClockMonitor::default();
        for r in 0..rounds {
            for (name, offset) in peers {
                let at = Duration::from_millis(200 * r as u64);
                let sent = 1_700_000_000_000u64;
                let peer_wall = (sent as i64 + offset) as u64;
                m.sample(
                    id(name),
                    Sample::from_round_trip(sent, Duration::from_millis(1), peer_wall, at),
                );
            }
        }
        m
    }

    const BOUND: u64 = 5_000;
    const NOW: Duration = Duration::from_secs(1);

    #[test]
    fn one_fast_and_one_slow_node_are_both_within_the_median() {
        // Five nodes: this one (0), two at 0, one 3 s fast, one 3 s slow;
        // seen from each of them in turn.
        let clocks = [("a", 0i64), ("b", 0), ("c", 0), ("fast", 3_000), ("slow", -3_000)];
        for (me, mine) in clocks {
            let peers: Vec<(&str, i64)> = clocks
                .iter()
                .filter(|(n, _)| *n != me)
                .map(|(n, o)| (*n, o - mine))
                .collect();
            let names: Vec<&str> = peers.iter().map(|p| p.0).collect();
            let view = monitor(&peers, 3).view(NOW, &alive(&names), BOUND);
            assert!(!view.beyond, "{me}: {view:?}");
            assert_eq!(view.sampled, 5);
            let offset = view.offset_ms.unwrap();
            assert!((offset - mine).abs() <= 1, "{me}: {offset} vs {mine}");
        }
    }

    #[test]
    fn only_the_outlier_is_beyond_the_bound() {
        let hour = 3_600_000i64;
        let view = monitor(&[("a", -hour), ("b", -hour)], 3).view(NOW, &alive(&["a", "b"]), BOUND);
        assert!(view.beyond && view.ahead, "{view:?}");
        assert!(view.distance_ms.unwrap() > (hour as u64) - 10);
        assert!((view.offset_ms.unwrap() - hour).abs() <= 1);
        let view = monitor(&[("a", 0), ("h", hour)], 3).view(NOW, &alive(&["a", "h"]), BOUND);
        assert!(!view.beyond, "{view:?}");
        assert_eq!(view.offset_ms, Some(0));
        assert!(view.lead_ms > (hour as u64) - 10);
    }

    #[test]
    fn a_fence_needs_several_samples_and_a_majority() {
        let hour = 3_600_000i64;
        // Two samples each: an estimate, but no verdict yet.
        let view = monitor(&[("a", -hour), ("b", -hour)], 2).view(NOW, &alive(&["a", "b"]), BOUND);
        assert!(view.offset_ms.is_some());
        assert_eq!(view.distance_ms, None);
        assert!(!view.beyond);
        // Five members, only one other reached: a minority, no fence.
        let mut members = alive(&["a", "b", "c", "d"]);
        for m in &mut members[1..] {
            m.reachable = false;
        }
        let view = monitor(&[("a", -hour)], 3).view(NOW, &members, BOUND);
        assert!(!view.beyond, "{view:?}");
        assert_eq!(view.offset_ms, None);
        // Two members: an even split, nobody can tell who is wrong.
        let view = monitor(&[("a", -hour)], 3).view(NOW, &alive(&["a"]), BOUND);
        assert!(!view.beyond, "{view:?}");
        assert_eq!(view.offset_ms, None);
        // Left and removed members do not count.
        let mut members = alive(&["a", "gone1", "gone2"]);
        for m in &mut members[1..] {
            m.counts = false;
            m.reachable = false;
        }
        let view = monitor(&[("a", -hour)], 3).view(NOW, &members, BOUND);
        assert_eq!(view.members, 2);
    }

    #[test]
    fn the_round_trip_uncertainty_keeps_a_borderline_node_in() {
        // 5.2 s off by the point estimates, but each sample's round trip
        // was 1 s: the lower bound, 4.7 s, is within 5 s.
        let mut m = ClockMonitor::default();
        for r in 0..3 {
            for name in ["a", "b"] {
                let at = Duration::from_millis(200 * r);
                let s = Sample::from_round_trip(1_000_000, Duration::from_secs(1), 1_000_000 + 500 - 5_200, at);
                m.sample(id(name), s);
            }
        }
        let view = m.view(NOW, &alive(&["a", "b"]), BOUND);
        assert!(view.offset_ms.unwrap() >= 5_199, "{view:?}");
        assert!(!view.beyond, "{view:?}");
    }

    #[test]
    fn recovery_follows_the_clock_within_a_few_samples() {
        let hour = 3_600_000i64;
        let mut m = monitor(&[("a", -hour), ("b", -hour)], 3);
        let members = alive(&["a", "b"]);
        assert!(m.view(NOW, &members, BOUND).beyond);
        // The clock is fixed: one new sample from each lifts the fence
        // (the lower bound spans the old and the new readings).
        for name in ["a", "b"] {
            let s = Sample::from_round_trip(1_000_000, Duration::from_millis(1), 1_000_000, NOW);
            m.sample(id(name), s);
        }
        let view = m.view(NOW, &members, BOUND);
        assert!(!view.beyond, "{view:?}");
        assert!(view.offset_ms.unwrap().abs() <= 1);
    }

    #[test]
    fn a_step_of_the_local_clock_shifts_what_was_measured() {
        let hour = 3_600_000i64;
        // This node was an hour behind; its clock is stepped forward.
        let mut m = monitor(&[("a", hour), ("b", hour)], 3);
        let members = alive(&["a", "b"]);
        assert!(m.view(NOW, &members, BOUND).beyond);
        m.shift(hour);
        let view = m.view(NOW, &members, BOUND);
        assert!(!view.beyond, "{view:?}");
        assert!(view.offset_ms.unwrap().abs() <= 1, "{view:?}");
        assert!(view.lead_ms <= 10, "{view:?}");
    }

    #[test]
    fn old_samples_stop_counting() {
        let m = monitor(&[("a", 0), ("b", 0)], 3);
        let later = SAMPLE_LIFETIME + Duration::from_secs(5);
        let view = m.view(later, &alive(&["a", "b"]), BOUND);
        assert_eq!(view.sampled, 1);
        assert_eq!(view.offset_ms, None);
    }

    #[test]
    fn floors_count_only_when_every_member_vouched() {
        let mut m = ClockMonitor::default();
        let members = alive(&["a", "b"]);
        m.heard(id("a"), 1_000, 1_000, 50);
        assert_eq!(m.floor_of_all(&members), None);
        m.heard(id("b"), 1_000, 1_000, 70);
        assert_eq!(m.floor_of_all(&members), Some(70));
        m.heard(id("a"), 1_000, 1_000, 20); // floors only rise
        assert_eq!(m.floor_of_all(&members), Some(70));
        let mut down = members.clone();
        down[1].reachable = false;
        assert_eq!(m.floor_of_all(&down), None);
        down[1].counts = false;
        assert_eq!(m.floor_of_all(&down), Some(50));
    }

    #[test]
    fn a_packet_gives_a_lower_bound_on_a_lead() {
        let mut m = ClockMonitor::default();
        m.heard(id("a"), 5_000_000, 1_000_000, 0);
        let view = m.view(NOW, &alive(&["a"]), BOUND);
        assert!(view.lead_ms >= 3_999_000, "{view:?}");
        m.heard(id("a"), 0, 1_000_000, 0); // no reading: nothing changes
        assert!(m.view(NOW, &alive(&["a"]), BOUND).lead_ms >= 3_999_000);
    }
}
