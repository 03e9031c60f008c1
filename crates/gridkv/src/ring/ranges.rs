//! Cutting arcs of the hash space: by a ring's tokens, with the owners of
//! each piece ([`Ring::ranges_within`], [`split`], [`cut`]), or into equal
//! spans ([`subdivide`]).
//!
//! Rebalancing compares what a node owns on several rings (before, during
//! and after a change) piece by piece, and a replica checks that it holds
//! every piece of a range it is asked to scan: both need an arc cut where
//! any of the rings changes owners. Anti-entropy narrows a differing range
//! by equal spans.

use super::{PreferenceList, Ring};
use crate::id::NodeId;
use crate::keyspace::RingRange;

impl Ring {
    /// The parts of `arc` that fall on each of the ring's arcs, with the `n`
    /// replicas of each: [`Ring::ranges`] cut to `arc`. Found by binary
    /// search from the arc's start, so the cost grows with the number of
    /// parts, not with the ring's size. Parts come in ring order from the
    /// arc's start; an empty ring yields nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::keyspace::RingRange;
    /// use gridkv::ring::Ring;
    /// use gridkv::NodeId;
    ///
    /// let nodes = ["a", "b", "c"].map(|n| NodeId::new(n).unwrap());
    /// let ring = Ring::new(1, nodes)?;
    /// let arc = RingRange::new(1 << 60, 1 << 62);
    /// let parts = ring.ranges_within(arc, 2);
    /// // The parts tile the arc: each ends inside it, one at its end.
    /// assert!(parts.iter().all(|(part, _)| arc.contains(part.end)));
    /// assert_eq!(parts.last().unwrap().0.end, arc.end);
    /// assert!(parts.iter().all(|(_, replicas)| replicas.len() == 2));
    /// # Ok::<(), gridkv::ring::RingError>(())
    /// ```
    pub fn ranges_within(&self, arc: RingRange, n: usize) -> Vec<(RingRange, PreferenceList<'_>)> {
        let mut out = Vec::new();
        let tokens = &self.tokens;
        if tokens.is_empty() {
            return out;
        }
        // Each linear interval [lo, hi] of the arc is walked from the first
        // token at or past lo (the first of equal tokens: the one that owns
        // their arc). Position p covers (token[p - 1], token[p]]; position 0
        // also covers everything past the last token (it wraps).
        for (lo, hi) in arc.intervals() {
            let mut from = lo;
            let mut p = self.first_at_or_past(lo);
            loop {
                let (owner, to) = match tokens.get(p) {
                    Some(&t) => (p, t.min(hi)),
                    None => (0, hi),
                };
                if from <= to {
                    out.push((
                        RingRange::new(from.wrapping_sub(1), to),
                        self.list_at(owner, n),
                    ));
                }
                if to >= hi {
                    break;
                }
                from = from.max(to + 1);
                p += 1;
            }
        }
        out
    }
}

/// `range` cut into `parts` equal spans of the hash space.
pub(crate) fn subdivide(range: RingRange, parts: u64) -> Vec<RingRange> {
    let span: u128 = if range.is_full() {
        1u128 << 64
    } else {
        range.end.wrapping_sub(range.start) as u128
    };
    if span < parts as u128 {
        return vec![range];
    }
    (0..parts as u128)
        .map(|i| {
            let lo = range.start.wrapping_add((span * i / parts as u128) as u64);
            let hi = range
                .start
                .wrapping_add((span * (i + 1) / parts as u128) as u64);
            RingRange::new(lo, hi)
        })
        .collect()
}

/// `arc` cut at `ring`'s tokens, each piece with its owners on `ring` (one
/// piece with no owners if the ring is empty).
pub(crate) fn split(arc: RingRange, ring: &Ring, n: usize) -> Vec<(RingRange, Vec<NodeId>)> {
    if ring.is_empty() {
        return vec![(arc, Vec::new())];
    }
    ring.ranges_within(arc, n.min(ring.len()))
        .into_iter()
        .map(|(piece, owners)| (piece, owners.iter().copied().collect()))
        .collect()
}

/// Every piece of `pieces` cut at `ring`'s tokens (see [`split`]), each
/// sub-piece carrying `merge` of what its piece carried and its owners on
/// `ring`.
pub(crate) fn cut<T: Clone, U>(
    pieces: Vec<(RingRange, T)>,
    ring: &Ring,
    n: usize,
    merge: impl Fn(T, Vec<NodeId>) -> U,
) -> Vec<(RingRange, U)> {
    let mut out = Vec::with_capacity(pieces.len());
    for (piece, carried) in pieces {
        for (sub, owners) in split(piece, ring, n) {
            out.push((sub, merge(carried.clone(), owners)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdivide_tiles_the_range() {
        for range in [
            RingRange::FULL,
            RingRange::new(10, 1_000_000),
            RingRange::new(u64::MAX - 5, 100),
        ] {
            let parts = subdivide(range, 8);
            assert_eq!(parts.len(), 8);
            assert_eq!(parts[0].start, range.start);
            assert_eq!(parts[7].end, range.end);
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
        }
        // Too narrow to split: kept whole.
        assert_eq!(
            subdivide(RingRange::new(5, 9), 8),
            vec![RingRange::new(5, 9)]
        );
    }

    /// `split` as it was first written, walking the whole ring: the
    /// oracle for the binary-searched one.
    fn split_by_scan(arc: RingRange, ring: &Ring, n: usize) -> Vec<(RingRange, Vec<NodeId>)> {
        let mut out = Vec::new();
        for (range, owners) in ring.ranges(n.min(ring.len())) {
            for (alo, ahi) in arc.intervals() {
                for (blo, bhi) in range.intervals() {
                    let (lo, hi) = (alo.max(blo), ahi.min(bhi));
                    if lo <= hi {
                        out.push((
                            RingRange::new(lo.wrapping_sub(1), hi),
                            owners.iter().copied().collect(),
                        ));
                    }
                }
            }
        }
        out
    }

    fn sorted(mut pieces: Vec<(RingRange, Vec<NodeId>)>) -> Vec<(u64, u64, Vec<NodeId>)> {
        let mut out: Vec<_> = pieces
            .drain(..)
            .map(|(r, owners)| (r.start, r.end, owners))
            .collect();
        out.sort();
        out
    }

    proptest::proptest! {
        /// Same pieces as a scan of the whole ring, for any arc, on rings
        /// with one token and with many, and on arcs that wrap or cover
        /// the whole ring.
        #[test]
        fn split_matches_a_scan_of_the_ring(
            start: u64,
            end: u64,
            members in 1usize..6,
            vnodes in 1u32..40,
            edge in 0usize..4,
        ) {
            let nodes: Vec<NodeId> = (0..members).map(|i| NodeId::new(&format!("n{i}")).unwrap()).collect();
            let ring = Ring::with_vnodes(1, nodes, vnodes).unwrap();
            let arc = match edge {
                0 => RingRange::new(start, end),
                1 => RingRange::new(start, start),
                2 => RingRange::FULL,
                _ => RingRange::new(u64::MAX, end),
            };
            for n in 1..=3 {
                proptest::prop_assert_eq!(sorted(split(arc, &ring, n)), sorted(split_by_scan(arc, &ring, n)));
            }
        }
    }

    proptest::proptest! {
        /// As above on rings with tokens placed by hand: colliding tokens,
        /// tokens at 0 and at `u64::MAX`, and arcs ending on them.
        #[test]
        fn split_matches_a_scan_with_colliding_and_extreme_tokens(
            picks in proptest::collection::vec((0usize..6, 0usize..3), 1..12),
            arc_ends in (0usize..6, 0usize..6),
        ) {
            let points = [0, 1, 1 << 40, u64::MAX / 2, u64::MAX - 1, u64::MAX];
            let nodes = ["a", "b", "c"].map(|n| NodeId::new(n).unwrap());
            let vnodes: Vec<(u64, NodeId, u32)> = picks
                .iter()
                .enumerate()
                .map(|(i, &(t, m))| (points[t], nodes[m], i as u32))
                .collect();
            let ring = Ring::from_tokens(1, picks.len() as u32, vnodes);
            let arc = RingRange::new(points[arc_ends.0], points[arc_ends.1]);
            for n in 1..=3 {
                proptest::prop_assert_eq!(sorted(split(arc, &ring, n)), sorted(split_by_scan(arc, &ring, n)));
            }
        }
    }

    #[test]
    fn split_matches_a_scan_at_token_edges() {
        let nodes = ["a", "b", "c"].map(|n| NodeId::new(n).unwrap());
        let ring = Ring::with_vnodes(1, nodes, 16).unwrap();
        let tokens: Vec<u64> = ring.tokens().map(|(t, _)| t).collect();
        for &t in &tokens {
            for arc in [
                RingRange::new(t, t.wrapping_add(1)),
                RingRange::new(t.wrapping_sub(1), t),
                RingRange::new(t, t),
                RingRange::new(0, t),
                RingRange::new(t, u64::MAX),
            ] {
                assert_eq!(
                    sorted(split(arc, &ring, 2)),
                    sorted(split_by_scan(arc, &ring, 2)),
                    "{arc:?}"
                );
            }
        }
    }

    #[test]
    fn split_covers_the_arc_exactly_once() {
        let nodes = ["a", "b", "c", "d"].map(|n| NodeId::new(n).unwrap());
        let ring = Ring::new(1, nodes).unwrap();
        let other = Ring::new(1, [nodes[0], nodes[1]]).unwrap();
        for (arc, _) in other.ranges(1).take(20) {
            let pieces = split(arc, &ring, 2);
            // Probe points: every piece's end lies in the arc, every point
            // of the arc in exactly one piece.
            for (piece, owners) in &pieces {
                assert!(arc.contains(piece.end));
                assert_eq!(owners.len(), 2);
            }
            for h in [arc.end, arc.start.wrapping_add(1)] {
                assert_eq!(
                    pieces.iter().filter(|(p, _)| p.contains(h)).count(),
                    1,
                    "{h}"
                );
            }
        }
        let empty = Ring::new(1, []).unwrap();
        assert_eq!(split(RingRange::FULL, &empty, 3).len(), 1);
    }
}
