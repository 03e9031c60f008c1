//! Which ranges this node's store holds in full, as of its last complete
//! fill: what a replica checks before it answers a read or a scan.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::id::NodeId;
use crate::keyspace::RingRange;
use crate::ring::Ring;

/// Which ranges this node's store holds in full, so that it answers reads
/// only for those. After a ring change a node may own ranges it has not
/// pulled yet (a down member was removed and this node now owns part of
/// its ranges), and a coordinator whose view is ahead of this node's may
/// ask it for a range it has never held: it refuses reads and scans there
/// ([`NotReady`](super::wire::RefusalCode::NotReady)) and coordinators ask
/// the next owner, so a read with R = 1 cannot miss an acknowledged write.
///
/// Remote reads and scans are always checked against the rings of the last
/// complete fill (a ring lookup, small next to a network round trip).
/// Local reads, which have already checked ownership on the placement in
/// force, skip the lookup while this node is filled for that placement.
#[derive(Debug)]
pub(crate) struct Holdings {
    /// This node.
    pub(crate) me: NodeId,
    replicas: usize,
    /// The rings of the last complete fill: the future ring it filled for,
    /// and the placement ring then in force (the fill pulls what this node
    /// owns on either and did not hold).
    filled: ArcSwap<(Arc<Ring>, Arc<Ring>)>,
    /// Until the first complete fill, and unless the store was emptied:
    /// reads are gated by whether the node serves reads at all (the first
    /// node of a cluster has nothing to pull).
    unfilled_start: AtomicBool,
    /// Bumped before and after the placement's rings change (so a reader
    /// that sees the new placement sees the bump).
    ring_epoch: AtomicU64,
    /// The `ring_epoch` the last complete fill was for.
    filled_epoch: AtomicU64,
    /// The `ring_epoch` just after the store was last emptied: a fill that
    /// began before it must not mark what it pulled before as held.
    forgot_at: AtomicU64,
    /// Serialises [`Holdings::mark_filled`] and [`Holdings::forget`].
    marking: parking_lot::Mutex<()>,
    /// The streams (range, source) that completed in fill passes for one
    /// epoch: a pass that fails part-way (a lost frame on a WAN link) does
    /// not start over, or under steady loss a fill of hundreds of streams
    /// would never complete whole. Emptied when the epoch moves (a ring
    /// change, or the store emptied). Bounded by the pieces of one fill.
    streamed: parking_lot::Mutex<(u64, std::collections::HashSet<(RingRange, NodeId)>)>,
}

impl Holdings {
    pub(crate) fn new(me: NodeId, replicas: usize) -> Self {
        Self {
            me,
            replicas,
            filled: ArcSwap::from_pointee(empty_rings()),
            unfilled_start: AtomicBool::new(true),
            ring_epoch: AtomicU64::new(0),
            filled_epoch: AtomicU64::new(0),
            forgot_at: AtomicU64::new(0),
            marking: parking_lot::Mutex::new(()),
            streamed: parking_lot::Mutex::new((0, Default::default())),
        }
    }

    /// Whether a fill for `epoch` already streamed `range` from `source`
    /// in full.
    pub(crate) fn streamed(&self, epoch: u64, range: RingRange, source: &NodeId) -> bool {
        let streamed = self.streamed.lock();
        streamed.0 == epoch && streamed.1.contains(&(range, *source))
    }

    /// Whether a fill for `epoch` streamed any of `range` already (what
    /// this node held there before must then not be cleared again).
    pub(crate) fn any_streamed(&self, epoch: u64, range: RingRange) -> bool {
        let streamed = self.streamed.lock();
        streamed.0 == epoch && streamed.1.iter().any(|(r, _)| *r == range)
    }

    /// Notes that a fill for `epoch` streamed `range` from `source` in
    /// full.
    pub(crate) fn note_streamed(&self, epoch: u64, range: RingRange, source: NodeId) {
        let mut streamed = self.streamed.lock();
        if streamed.0 != epoch {
            *streamed = (epoch, Default::default());
        }
        streamed.1.insert((range, source));
    }

    /// Notes a change of the placement's rings: called just before the new
    /// placement is published and again just after. A local read that sees
    /// the new placement then sees a moved epoch (and checks the filled
    /// rings), and a fill that reads the epoch after the second call loads
    /// that placement or a newer one.
    pub(crate) fn ring_changed(&self) {
        self.ring_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The epoch a fill starting now is for (read before the placement).
    pub(crate) fn epoch(&self) -> u64 {
        self.ring_epoch.load(Ordering::Acquire)
    }

    /// The rings of the last complete fill: future, then placement.
    pub(crate) fn filled(&self) -> (Arc<Ring>, Arc<Ring>) {
        let filled = self.filled.load();
        (filled.0.clone(), filled.1.clone())
    }

    /// Records a complete fill for the placement read after `epoch`: its
    /// future ring and its placement ring. Ignored for a fill that began
    /// before the store was last emptied.
    pub(crate) fn mark_filled(&self, future: Arc<Ring>, placement: Arc<Ring>, epoch: u64) {
        let _marking = self.marking.lock();
        if epoch < self.forgot_at.load(Ordering::Acquire) {
            return;
        }
        self.filled.store(Arc::new((future, placement)));
        self.unfilled_start.store(false, Ordering::Release);
        self.filled_epoch.store(epoch, Ordering::Release);
    }

    /// The store is about to be emptied: from now on it holds nothing
    /// until the next fill. Call before emptying it.
    pub(crate) fn forget(&self) {
        let _marking = self.marking.lock();
        self.unfilled_start.store(false, Ordering::Release);
        self.filled.store(Arc::new(empty_rings()));
        let now = self.ring_epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.forgot_at.store(now, Ordering::Release);
    }

    /// Whether everything in the store was written since this node started:
    /// no fill has completed yet and the store was never emptied. Such a
    /// node may answer a scan while it refills (it holds nothing from an
    /// earlier ownership that could bring a forgotten delete back), and may
    /// pull from another restart that is refilling too.
    pub(crate) fn fresh(&self) -> bool {
        self.unfilled_start.load(Ordering::Acquire)
    }

    /// Whether the last complete fill is for `epoch` and the rings have not
    /// changed since: the ranges held in full are those this node owns on
    /// the placement read after `epoch`, and no other range is served or
    /// streamed from its store.
    pub(crate) fn filled_for(&self, epoch: u64) -> bool {
        self.filled_epoch.load(Ordering::Acquire) == epoch
            && self.ring_epoch.load(Ordering::Acquire) == epoch
            && !self.unfilled_start.load(Ordering::Acquire)
    }

    fn settled(&self) -> bool {
        self.filled_epoch.load(Ordering::Acquire) == self.ring_epoch.load(Ordering::Acquire)
    }

    /// For a local read that has checked, on the placement in force, that
    /// this node owns the key: whether the store holds it (no lookup while
    /// the node is filled for that placement).
    #[inline]
    pub(crate) fn holds_owned(&self, hash: u64) -> bool {
        self.settled() || self.holds(hash)
    }

    /// Whether the store holds the key with hash `hash` in full.
    pub(crate) fn holds(&self, hash: u64) -> bool {
        self.owned_on_filled(|ring| {
            ring.preference_list(hash, self.replicas.min(ring.len()))
                .contains(&self.me)
        })
    }

    /// Whether the store holds all of `range` in full.
    pub(crate) fn holds_range(&self, range: RingRange) -> bool {
        self.owned_on_filled(|ring| {
            !ring.is_empty()
                && crate::ring::split(range, ring, self.replicas)
                    .iter()
                    .all(|(_, owners)| owners.contains(&self.me))
        })
    }

    /// Whether `owns` holds on either ring of the last complete fill
    /// (always, before the first).
    fn owned_on_filled(&self, owns: impl Fn(&Ring) -> bool) -> bool {
        if self.unfilled_start.load(Ordering::Acquire) {
            return true;
        }
        let filled = self.filled.load();
        owns(&filled.0) || owns(&filled.1)
    }
}

fn empty_rings() -> (Arc<Ring>, Arc<Ring>) {
    let empty = Arc::new(Ring::empty());
    (empty.clone(), empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::key_hash;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    /// A hash whose owners on `ring` (N = 2) include `me` or not.
    fn hash_owned(ring: &Ring, me: &NodeId, owned: bool) -> u64 {
        (0..)
            .map(|i: u64| key_hash(&i.to_le_bytes()))
            .find(|h| ring.preference_list(*h, 2).contains(me) == owned)
            .unwrap()
    }

    #[test]
    fn holdings_follow_fills_and_forgetting() {
        let me = id("a");
        let holdings = Holdings::new(me, 2);
        let ring = Arc::new(Ring::new(1, [me, id("b"), id("c")]).unwrap());
        let (mine, theirs) = (hash_owned(&ring, &me, true), hash_owned(&ring, &me, false));
        // Before any fill, reads are gated elsewhere (serves_reads).
        assert!(holdings.holds(theirs));
        holdings.ring_changed();
        let epoch = holdings.epoch();
        holdings.mark_filled(ring.clone(), ring.clone(), epoch);
        assert!(holdings.holds(mine) && !holdings.holds(theirs));
        // Settled: a local read that checked ownership skips the lookup.
        assert!(holdings.holds_owned(theirs));
        // A change not filled for yet: checked against the filled rings.
        holdings.ring_changed();
        assert!(holdings.holds_owned(mine) && !holdings.holds_owned(theirs));
        // Emptied: nothing is held, and a fill that began before cannot
        // mark it held again.
        let before = holdings.epoch();
        holdings.forget();
        assert!(!holdings.holds(mine));
        holdings.mark_filled(ring.clone(), ring.clone(), before);
        assert!(!holdings.holds(mine));
        holdings.mark_filled(ring.clone(), ring, holdings.epoch());
        assert!(holdings.holds(mine));
    }
}
