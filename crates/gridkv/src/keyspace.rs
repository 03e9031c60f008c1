//! The 64-bit hash space that keys, ring tokens and store shards share.
//!
//! Every key is placed by [`key_hash`]: xxh3-64 of its bytes, unseeded, so the
//! same key hashes to the same point in every process, on every platform and
//! in every release (changing it would move every key and must be a
//! versioned protocol change). The ring and the store both speak in
//! [`RingRange`]s of this space, which is how a ring range maps to the store
//! shards and digests that hold it.

use xxhash_rust::xxh3::xxh3_64;

/// The ring position of a key: xxh3-64 of its bytes.
///
/// # Examples
///
/// ```
/// // Stable across processes and releases: this value is part of the
/// // protocol.
/// assert_eq!(gridkv::keyspace::key_hash(b"user:123"), 0xe7fe_84ba_d891_3b52);
/// ```
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// A clockwise arc of the 64-bit ring: the hashes `h` with
/// `start < h <= end`, wrapping past `u64::MAX` when `start >= end`.
///
/// As on Dynamo's ring, a token owns the arc that ends at it, so the range
/// owned by a virtual node at token `t` whose predecessor is at `p` is
/// `RingRange::new(p, t)`. `start == end` is the whole ring (the arc of the
/// only token on a one-token ring).
///
/// # Examples
///
/// ```
/// use gridkv::keyspace::RingRange;
///
/// let r = RingRange::new(10, 20);
/// assert!(!r.contains(10) && r.contains(11) && r.contains(20) && !r.contains(21));
///
/// let wrap = RingRange::new(u64::MAX - 1, 1);
/// assert!(wrap.contains(u64::MAX) && wrap.contains(0) && wrap.contains(1));
/// assert!(!wrap.contains(2));
///
/// assert!(RingRange::FULL.contains(12345));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RingRange {
    /// Exclusive start.
    pub start: u64,
    /// Inclusive end.
    pub end: u64,
}

impl RingRange {
    /// The whole ring.
    pub const FULL: RingRange = RingRange { start: 0, end: 0 };

    /// The arc `(start, end]`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// Whether the arc covers every hash.
    pub const fn is_full(&self) -> bool {
        self.start == self.end
    }

    /// Whether `hash` lies on the arc.
    #[inline]
    pub const fn contains(&self, hash: u64) -> bool {
        if self.start < self.end {
            self.start < hash && hash <= self.end
        } else if self.start > self.end {
            hash > self.start || hash <= self.end
        } else {
            true
        }
    }

    /// Splits the arc into at most two non-wrapping inclusive intervals
    /// `[lo, hi]`, in ring order. Useful to walk sorted structures.
    pub fn intervals(&self) -> impl Iterator<Item = (u64, u64)> + use<> {
        let (a, b) = if self.start < self.end {
            (Some((self.start + 1, self.end)), None)
        } else if self.start == self.end {
            // Full ring: start at start+1 and come back round to start.
            if self.start == u64::MAX {
                (Some((0, u64::MAX)), None)
            } else {
                (Some((self.start + 1, u64::MAX)), Some((0, self.start)))
            }
        } else {
            let first = if self.start == u64::MAX {
                None
            } else {
                Some((self.start + 1, u64::MAX))
            };
            (first, Some((0, self.end)))
        };
        a.into_iter().chain(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn intervals_cover_exactly_the_arc(start: u64, end: u64, h: u64) {
            let r = RingRange::new(start, end);
            let in_intervals = r.intervals().any(|(lo, hi)| lo <= h && h <= hi);
            prop_assert_eq!(in_intervals, r.contains(h));
        }

        #[test]
        fn intervals_are_disjoint_and_ordered(start: u64, end: u64) {
            let iv: Vec<_> = RingRange::new(start, end).intervals().collect();
            for (lo, hi) in &iv {
                prop_assert!(lo <= hi);
            }
            if iv.len() == 2 {
                prop_assert!(iv[1].1 < iv[0].0);
            }
        }
    }

    #[test]
    fn edges() {
        let r = RingRange::new(5, 5);
        assert!(r.is_full() && r.contains(5) && r.contains(0) && r.contains(u64::MAX));
        let top = RingRange::new(u64::MAX, 3);
        assert!(!top.contains(u64::MAX) && top.contains(0) && top.contains(3));
        assert_eq!(top.intervals().collect::<Vec<_>>(), vec![(0, 3)]);
    }
}
