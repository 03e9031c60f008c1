//! The replica side: applies writes and answers reads from the local store.

use std::sync::atomic::{AtomicU64, Ordering};
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
    pub(crate) serves_reads: std::sync::atomic::AtomicBool,
    /// Set when the node stops: requests still arriving before its
    /// connections close are refused, as a stopped node answers nothing.
    pub(crate) stopped: std::sync::atomic::AtomicBool,
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
/// its ranges): until the fill is done, it refuses reads there
/// ([`RefusalCode::NotReady`]) and coordinators ask the next owner, so a
/// read with R = 1 cannot miss an acknowledged write.
///
/// The check costs one atomic load while the node is filled for the
/// placement in force (the common case), and a ring lookup otherwise.
#[derive(Debug)]
pub(crate) struct Holdings {
    me: NodeId,
    replicas: usize,
    /// The rings of the last complete fill (empty before the first): the
    /// future ring it filled for, and the placement ring then in force. The
    /// store holds a key this node owns on either: it pulled the first's,
    /// and as a current owner it received every write of the second's. (A
    /// node that owned a range only on the second stays a holder even if
    /// it lost it meanwhile: it keeps data it no longer owns.)
    filled: ArcSwap<(Arc<Ring>, Arc<Ring>)>,
    /// Bumped when the placement's rings change.
    ring_epoch: AtomicU64,
    /// The `ring_epoch` the last complete fill was for.
    filled_epoch: AtomicU64,
}

impl Holdings {
    pub(crate) fn new(me: NodeId, replicas: usize) -> Self {
        Self {
            me,
            replicas,
            filled: ArcSwap::from_pointee(empty_rings()),
            ring_epoch: AtomicU64::new(0),
            filled_epoch: AtomicU64::new(0),
        }
    }

    /// Notes a change of the placement's rings (after publishing it): until
    /// a fill for it completes, reads are checked against the ring filled.
    pub(crate) fn ring_changed(&self) {
        self.ring_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The epoch a fill starting now is for (read before the placement).
    pub(crate) fn epoch(&self) -> u64 {
        self.ring_epoch.load(Ordering::Acquire)
    }

    /// The (future) ring this store was last filled for.
    pub(crate) fn filled(&self) -> Arc<Ring> {
        self.filled.load().0.clone()
    }

    /// Records a complete fill for the placement read after `epoch`: its
    /// future ring and its placement ring.
    pub(crate) fn mark_filled(&self, future: Arc<Ring>, placement: Arc<Ring>, epoch: u64) {
        self.filled.store(Arc::new((future, placement)));
        self.filled_epoch.store(epoch, Ordering::Release);
    }

    /// The store was emptied: it holds nothing until the next fill.
    pub(crate) fn forget(&self) {
        self.filled.store(Arc::new(empty_rings()));
        self.ring_changed();
    }

    fn settled(&self) -> bool {
        self.filled_epoch.load(Ordering::Acquire) == self.ring_epoch.load(Ordering::Acquire)
    }

    /// Whether the store holds the key with hash `hash` in full.
    #[inline]
    pub(crate) fn holds(&self, hash: u64) -> bool {
        if self.settled() {
            return true;
        }
        let filled = self.filled.load();
        let owns = |ring: &Ring| {
            ring.preference_list(hash, self.replicas.min(ring.len()))
                .contains(&self.me)
        };
        owns(&filled.0) || owns(&filled.1)
    }

    /// Whether the store holds all of `range` in full.
    fn holds_range(&self, range: RingRange) -> bool {
        if self.settled() {
            return true;
        }
        let filled = self.filled.load();
        let owns = |ring: &Ring| {
            !ring.is_empty()
                && super::rebalance::split(range, ring, self.replicas)
                    .iter()
                    .all(|(_, owners)| owners.contains(&self.me))
        };
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

    /// Reads a key; refused if the store does not hold its range yet.
    pub(crate) fn read(&self, key: &[u8]) -> DataResponse {
        let hash = key_hash(key);
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

    /// Answers one data-lane request.
    pub(crate) fn handle(&self, frame: &Bytes) -> DataResponse {
        if self.stopped.load(std::sync::atomic::Ordering::Acquire) {
            return DataResponse::Refused {
                code: RefusalCode::ShuttingDown,
                reason: "the node is stopping".to_owned(),
            };
        }
        let request = DataRequest::decode(frame);
        if matches!(
            request,
            Ok(DataRequest::Read { .. } | DataRequest::Scan { .. } | DataRequest::Digest { .. })
        ) && !self.serves_reads.load(std::sync::atomic::Ordering::Acquire)
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
            Ok(DataRequest::Read { key }) => self.read(&key),
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
            Ok(DataRequest::Hinted { owner, write }) => {
                let stored = self.hints.add(owner, write);
                let counter = if stored {
                    &self.counters.hints_stored
                } else {
                    &self.counters.hints_dropped
                };
                super::stats::Counters::add(counter, 1);
                if stored {
                    DataResponse::Applied { was_live: false }
                } else {
                    DataResponse::Refused {
                        code: RefusalCode::Invalid,
                        reason: "this node's hints are full".to_owned(),
                    }
                }
            }
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
