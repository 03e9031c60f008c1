//! The replica side: applies writes and answers reads from the local store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;

use super::wire::{DataRequest, DataResponse, RefusalCode};
use crate::hlc::Hlc;
use crate::id::NodeId;
use crate::keyspace::{key_hash, RingRange};
use crate::ring::Ring;
use crate::store::{ApplyOutcome, Store, Write};

/// This node's store and clock, as a replica.
#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) store: Arc<Store>,
    pub(crate) hlc: Arc<Hlc>,
    /// Whether this node serves reads (normal or leaving): until then its
    /// store may lack what it owns, so remote reads, scans and digests are
    /// refused rather than answered stale (a coordinator with an old view
    /// of a restarted node would otherwise count an empty answer).
    pub(crate) serves_reads: AtomicBool,
    /// Set when the node stops: requests still arriving before its
    /// connections close are refused, as a stopped node answers nothing.
    pub(crate) stopped: AtomicBool,
    /// What this node's store holds: see [`Holdings`].
    pub(crate) holdings: Holdings,
    /// Hints this node keeps for unreachable owners, its own and those it
    /// stands in for ([`DataRequest::Hinted`]).
    pub(crate) hints: Arc<super::hints::Hints>,
    pub(crate) counters: Arc<super::stats::Counters>,
}

/// Which ranges this node's store holds in full, so that it answers reads
/// only for those. After a ring change a node may own ranges it has not
/// pulled yet (a down member was removed and this node now owns part of
/// its ranges), and a coordinator whose view is ahead of this node's may
/// ask it for a range it has never held: it refuses reads and scans there
/// ([`RefusalCode::NotReady`]) and coordinators ask the next owner, so a
/// read with R = 1 cannot miss an acknowledged write.
///
/// Remote reads and scans are always checked against the rings of the last
/// complete fill (a ring lookup, small next to a network round trip).
/// Local reads, which have already checked ownership on the placement in
/// force, skip the lookup while this node is filled for that placement.
#[derive(Debug)]
pub(crate) struct Holdings {
    me: NodeId,
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
        }
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
    fn holds_range(&self, range: RingRange) -> bool {
        self.owned_on_filled(|ring| {
            !ring.is_empty()
                && super::rebalance::split(range, ring, self.replicas)
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
    let empty = Arc::new(Ring::new(0, []).expect("an empty ring is valid"));
    (empty.clone(), empty)
}

impl Replica {
    /// Applies a write stamped elsewhere (or here): merges its timestamp
    /// into the clock (refusing one too far ahead), then stores it if newer.
    pub(crate) fn apply(&self, key: &[u8], write: Write<'_>) -> DataResponse {
        if let Err(e) = self.hlc.update(write.version.ts) {
            return DataResponse::Refused {
                code: RefusalCode::ClockDrift,
                reason: e.to_string(),
            };
        }
        match self.store.apply(key, write) {
            Ok(ApplyOutcome::Applied { was_live }) => DataResponse::Applied { was_live },
            // The same version is in place: counts as applied. Whether a
            // value was there before is not known any more.
            Ok(ApplyOutcome::Duplicate) => DataResponse::Applied { was_live: false },
            Ok(ApplyOutcome::Superseded { current }) => DataResponse::Superseded { current },
            Err(e) => DataResponse::Refused {
                code: RefusalCode::Invalid,
                reason: e.to_string(),
            },
        }
    }

    /// Reads a key whose [`key_hash`] is `hash`; refused if the store does
    /// not hold its range.
    pub(crate) fn read(&self, key: &[u8], hash: u64) -> DataResponse {
        if !self.holdings.holds(hash) {
            return not_filled();
        }
        match self.store.get_hashed(key, hash) {
            Ok(lookup) => DataResponse::Value(lookup),
            Err(e) => DataResponse::Refused {
                code: RefusalCode::Invalid,
                reason: e.to_string(),
            },
        }
    }

    /// Keeps `write` as a hint for `owner`, standing in for it in a sloppy
    /// quorum: it must be an encoded write, for another node.
    fn keep_hint(&self, owner: NodeId, write: Bytes) -> DataResponse {
        let refuse = |code, reason: &str| DataResponse::Refused {
            code,
            reason: reason.to_owned(),
        };
        if owner == self.holdings.me {
            return refuse(RefusalCode::Invalid, "a hint for this node itself");
        }
        if !matches!(DataRequest::decode(&write), Ok(DataRequest::Write { .. })) {
            return refuse(RefusalCode::Invalid, "a hint must hold a write");
        }
        if self.hints.keep(owner, write, &self.counters) {
            DataResponse::Applied { was_live: false }
        } else {
            refuse(RefusalCode::Overloaded, "this node's hints are full")
        }
    }

    /// Answers one data-lane request.
    pub(crate) fn handle(&self, frame: &Bytes) -> DataResponse {
        if self.stopped.load(Ordering::Acquire) {
            return DataResponse::Refused {
                code: RefusalCode::ShuttingDown,
                reason: "the node is stopping".to_owned(),
            };
        }
        let request = DataRequest::decode(frame);
        if matches!(
            request,
            Ok(DataRequest::Read { .. } | DataRequest::Scan { .. } | DataRequest::Digest { .. })
        ) && !self.serves_reads.load(Ordering::Acquire)
        {
            return DataResponse::Refused {
                code: RefusalCode::NotReady,
                reason: "not serving reads yet (joining)".to_owned(),
            };
        }
        match request {
            Err(e) => DataResponse::Refused {
                code: RefusalCode::Invalid,
                reason: e.to_string(),
            },
            Ok(DataRequest::Read { key }) => self.read(&key, key_hash(&key)),
            Ok(DataRequest::Scan { range, .. }) if !self.holdings.holds_range(range) => {
                not_filled()
            }
            Ok(DataRequest::Scan {
                range,
                after,
                tombstones_only,
            }) => {
                let mut batch = self.store.scan(
                    range,
                    after.as_ref(),
                    super::wire::MAX_BATCH_ENTRIES,
                    super::wire::MAX_BATCH_BYTES,
                );
                if tombstones_only {
                    batch
                        .entries
                        .retain(|e| matches!(e.data, crate::store::EntryData::Tombstone { .. }));
                }
                DataResponse::Batch {
                    entries: batch.entries,
                    next: batch.next,
                }
            }
            Ok(DataRequest::Digest { range }) => DataResponse::Digest(self.store.digest(range)),
            Ok(DataRequest::Hinted { owner, write }) => self.keep_hint(owner, write),
            Ok(DataRequest::Write { key, version, set }) => {
                let write = match &set {
                    Some((value, expires_at)) => Write::set(version, value, *expires_at),
                    None => Write::delete(version),
                };
                self.apply(&key, write)
            }
        }
    }
}

/// The refusal of a read or scan of a range this node has not pulled yet.
fn not_filled() -> DataResponse {
    DataResponse::Refused {
        code: RefusalCode::NotReady,
        reason: "this range is still being filled".to_owned(),
    }
}

/// What a write stores: `Some((value, expiry))` for a set, `None` for a
/// delete.
pub(crate) type WriteData = Option<(Bytes, Option<u64>)>;

#[cfg(test)]
mod tests {
    use super::*;

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

    fn replica(me: NodeId) -> Replica {
        let hlc = Arc::new(Hlc::new(
            me,
            crate::id::Generation::new(1),
            Arc::new(crate::hlc::SystemClock),
        ));
        Replica {
            store: Arc::new(Store::new(crate::store::StoreConfig::default()).unwrap()),
            hlc,
            serves_reads: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
            holdings: Holdings::new(me, 2),
            hints: Arc::new(super::super::hints::Hints::new(
                super::super::hints::HintLimits {
                    max_hints: 1,
                    max_bytes: 1 << 20,
                    ttl: std::time::Duration::from_secs(60),
                },
            )),
            counters: Arc::default(),
        }
    }

    fn refusal(response: DataResponse) -> Option<RefusalCode> {
        match response {
            DataResponse::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    #[test]
    fn reads_of_ranges_not_filled_are_refused() {
        let me = id("a");
        let replica = replica(me);
        let ring = Arc::new(Ring::new(1, [me, id("b"), id("c")]).unwrap());
        replica
            .holdings
            .mark_filled(ring.clone(), ring.clone(), replica.holdings.epoch());
        // A key this node does not own on the filled rings: a coordinator
        // whose view is ahead of this node's may still ask for it.
        let (mine, theirs) = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"]
            .iter()
            .fold((None, None), |(m, t), k| {
                let owned = ring
                    .preference_list(key_hash(k.as_bytes()), 2)
                    .contains(&me);
                if owned {
                    (m.or(Some(*k)), t)
                } else {
                    (m, t.or(Some(*k)))
                }
            });
        let (mine, theirs) = (mine.unwrap(), theirs.unwrap());
        let read = |k: &str| replica.handle(&Bytes::from(DataRequest::encode_read(k.as_bytes())));
        assert!(matches!(read(mine), DataResponse::Value(_)));
        assert_eq!(refusal(read(theirs)), Some(RefusalCode::NotReady));
    }

    #[test]
    fn hints_are_kept_only_when_they_hold_a_write_for_another_node() {
        let me = id("a");
        let replica = replica(me);
        let v = crate::hlc::Version {
            ts: crate::hlc::Timestamp::new(1, 0),
            ..crate::hlc::Version::ZERO
        };
        let write = DataRequest::encode_write(b"k", &Write::set(v, b"v", None));
        let hinted = |owner: &NodeId, body: &[u8]| {
            replica.handle(&Bytes::from(DataRequest::encode_hinted(owner, body)))
        };
        assert_eq!(refusal(hinted(&me, &write)), Some(RefusalCode::Invalid));
        let read = DataRequest::encode_read(b"k");
        assert_eq!(refusal(hinted(&id("b"), &read)), Some(RefusalCode::Invalid));
        assert!(matches!(
            hinted(&id("b"), &write),
            DataResponse::Applied { .. }
        ));
        assert_eq!(replica.hints.len(), 1);
        // Full (one hint at most here): overload, which counts as shed.
        assert_eq!(
            refusal(hinted(&id("c"), &write)),
            Some(RefusalCode::Overloaded)
        );
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
