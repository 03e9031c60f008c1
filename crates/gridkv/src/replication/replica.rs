//! The replica side: applies writes and answers reads from the local store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::holdings::Holdings;
use super::wire::{DataRequest, DataResponse, RefusalCode};
use crate::hlc::Hlc;
use crate::id::NodeId;
use crate::keyspace::key_hash;
use crate::store::{ApplyOutcome, Condition, Store, Write};

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
    /// Keys whose value another owner offered but this node's watermark
    /// refused: read later to see whether anybody vouches for it.
    pub(crate) suspects: super::vouch::Suspects,
    /// Load leases of the keys this node is the primary of.
    pub(crate) leases: super::lease::Leases,
}

impl Replica {
    /// Applies a write stamped elsewhere (or here): merges its timestamp
    /// into the clock (refusing one too far ahead), then stores it if newer.
    ///
    /// "Too far ahead" is measured against the cluster's clock as this node
    /// estimates it (its wall clock corrected by its measured offset from
    /// the median; see `Hlc::cluster_ms`), not against its own wall clock:
    /// a node 3 s slow stores a write stamped by one 3 s fast, as both are
    /// within the bound of the cluster's middle. The merge does not read
    /// the local clock into the HLC (`Hlc::observe`), so a node whose clock
    /// is far off does not carry that reading into its clock by storing
    /// others' writes.
    pub(crate) fn apply(&self, key: &[u8], write: Write<'_>) -> DataResponse {
        self.apply_if(key, write, None)
    }

    /// [`Replica::apply`] of a write that applies only if `condition`
    /// holds for what the store holds (see [`Condition`]).
    pub(crate) fn apply_if(
        &self,
        key: &[u8],
        write: Write<'_>,
        condition: Option<Condition>,
    ) -> DataResponse {
        // An expiry change's stamp is a newer reading of the writer's clock
        // than its version: both are merged (and checked for drift).
        if let Err(e) = super::pulled::admit(&self.hlc, &self.counters, &write) {
            return DataResponse::Refused {
                code: RefusalCode::ClockDrift,
                reason: e.to_string(),
            };
        }
        let outcome = match condition {
            Some(condition) => self.store.apply_if(key, write, condition),
            None => self.store.apply(key, write),
        };
        tracing::trace!(
            target: "gridkv::keys",
            key = %String::from_utf8_lossy(key),
            version = %write.version,
            op = op_name(&write.op),
            outcome = ?outcome,
            "apply"
        );
        match outcome {
            Ok(ApplyOutcome::Applied { was_live }) => DataResponse::Applied { was_live },
            // The same version is in place: counts as applied. Whether a
            // value was there before is not known any more.
            Ok(ApplyOutcome::Duplicate) => DataResponse::Applied { was_live: false },
            Ok(ApplyOutcome::Superseded { current }) => DataResponse::Superseded { current },
            Ok(ApplyOutcome::Forgotten { below }) => DataResponse::Forgotten { below },
            Ok(ApplyOutcome::Conflict { current }) => DataResponse::Conflict { current },
            Err(e) => DataResponse::Refused {
                code: RefusalCode::Invalid,
                reason: e.to_string(),
            },
        }
    }

    /// Takes back a conditional write that lost (see
    /// [`Store::retract`](crate::store::Store::retract)).
    pub(crate) fn retract(
        &self,
        key: &[u8],
        version: crate::hlc::Version,
        restore: Option<(crate::hlc::Version, crate::hlc::Timestamp, Option<u64>)>,
    ) -> DataResponse {
        let restore = restore.map(|(version, stamp, expired_at)| {
            Write::tombstone(version, expired_at).with_expiry_stamp(stamp)
        });
        match self.store.retract(key, version, restore) {
            Ok(dropped) => DataResponse::Applied { was_live: dropped },
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
            Ok(lookup) => {
                tracing::trace!(
                    target: "gridkv::keys",
                    key = %String::from_utf8_lossy(key),
                    lookup = %brief(&lookup),
                    "read"
                );
                DataResponse::Value(lookup)
            }
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
        // A restart still refilling answers a fill that asks for what it
        // holds: all of it written since it started.
        let refilling = matches!(
            request,
            Ok(DataRequest::Scan {
                refilling: true,
                ..
            } | DataRequest::Digest {
                refilling: true,
                ..
            })
        ) && self.holdings.fresh();
        if matches!(
            request,
            Ok(DataRequest::Read { .. }
                | DataRequest::Scan { .. }
                | DataRequest::Digest { .. }
                | DataRequest::ScanKeys { .. })
        ) && !refilling
            && !self.serves_reads.load(Ordering::Acquire)
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
                ..
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
                let floor = self.store.floor();
                DataResponse::Batch {
                    entries: batch.entries,
                    next: batch.next,
                    watermark: self.store.watermark(range),
                    floor: (floor > crate::hlc::Version::ZERO).then_some(floor),
                }
            }
            Ok(DataRequest::Digest { range, .. }) => DataResponse::Digest(self.store.digest(range)),
            Ok(DataRequest::Hinted { owner, write }) => self.keep_hint(owner, write),
            Ok(DataRequest::Forget { key, version }) => {
                match self.store.forget_unvouched(&key, version) {
                    Ok(dropped) => DataResponse::Applied { was_live: dropped },
                    Err(e) => DataResponse::Refused {
                        code: RefusalCode::Invalid,
                        reason: e.to_string(),
                    },
                }
            }
            Ok(DataRequest::Write {
                key,
                version,
                op,
                expiry_stamp,
            }) => self.apply(&key, op.write(version, expiry_stamp)),
            Ok(DataRequest::ScanKeys { range, .. }) if !self.holdings.holds_range(range) => {
                not_filled()
            }
            Ok(DataRequest::ScanKeys {
                range,
                after,
                limit,
            }) => {
                let limit = (limit as usize).clamp(1, super::wire::MAX_BATCH_ENTRIES);
                // Bounded by the bytes of keys and values, as fills are: a
                // conservative bound on the keys sent.
                let batch = self.store.scan(range, after.as_ref(), limit, super::wire::MAX_BATCH_BYTES);
                let keys = batch
                    .entries
                    .into_iter()
                    .map(|e| super::wire::KeyEntry {
                        live: !matches!(e.data, crate::store::EntryData::Tombstone { .. }),
                        order: (e.version, e.expiry_stamp),
                        hash: e.hash,
                        key: e.key,
                    })
                    .collect();
                DataResponse::Keys {
                    keys,
                    next: batch.next,
                }
            }
            Ok(DataRequest::Retract {
                key,
                version,
                restore,
            }) => self.retract(&key, version, restore),
            Ok(DataRequest::Flush { floor: None }) => DataResponse::Clock(self.hlc.new_version()),
            Ok(DataRequest::Flush { floor: Some(floor) }) => {
                // The floor is a version of this cluster: merged into the
                // clock, so this node stamps above it from now on.
                let _ = self.hlc.update(floor.ts);
                let removed = self.store.flush(floor);
                tracing::info!(%floor, removed, "flushed");
                DataResponse::Applied {
                    was_live: removed > 0,
                }
            }
            Ok(DataRequest::Lease {
                key,
                holder,
                ttl,
                release,
            }) => {
                if release {
                    self.leases.release(&key, holder);
                    DataResponse::Lease(super::lease::LeaseAnswer::Granted)
                } else {
                    DataResponse::Lease(self.leases.acquire(&key, holder, ttl))
                }
            }
            Ok(DataRequest::Conditional { condition, write }) => match DataRequest::decode(&write) {
                Ok(DataRequest::Write {
                    key,
                    version,
                    op,
                    expiry_stamp,
                }) => self.apply_if(&key, op.write(version, expiry_stamp), Some(condition)),
                _ => DataResponse::Refused {
                    code: RefusalCode::Invalid,
                    reason: "a conditional request must hold a write".to_owned(),
                },
            },
        }
    }
}

/// The refusal of a read or scan of a range this node has not pulled yet.
/// A lookup in a trace line: its kind and version, not its value.
pub(crate) fn brief(lookup: &crate::store::Lookup) -> String {
    use crate::store::Lookup;
    match lookup {
        Lookup::Missing => "missing".to_owned(),
        Lookup::Live(item) => format!("live@{}", item.version),
        Lookup::Dead { version, .. } => format!("dead@{version}"),
        Lookup::Evicted { version } => format!("evicted@{version}"),
        Lookup::Forgotten { below } => format!("forgotten<{below:?}"),
    }
}

/// A write's operation in a trace line, without its value.
pub(crate) fn op_name(op: &crate::store::WriteOp<'_>) -> &'static str {
    use crate::store::WriteOp;
    match op {
        WriteOp::Set { .. } => "set",
        WriteOp::Delete => "delete",
        _ => "other",
    }
}

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
    use crate::ring::Ring;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
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
            suspects: Default::default(),
            leases: Default::default(),
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

    /// A scan carries what the source forgot of the range, through the
    /// wire, so that the replica it fills refuses what the source would.
    #[test]
    fn a_scan_carries_the_sources_watermark() {
        use crate::hlc::Timestamp;
        use crate::keyspace::RingRange;
        use crate::hlc::Version;
        use crate::store::Watermark;

        let me = id("a");
        let replica = replica(me);
        let alone = Arc::new(Ring::new(1, [me]).unwrap());
        replica
            .holdings
            .mark_filled(alone.clone(), alone, replica.holdings.epoch());
        let scan = |replica: &Replica| {
            let frame = Bytes::from(DataRequest::encode_scan(RingRange::FULL, None, false));
            let answer = Bytes::from(replica.handle(&frame).encode());
            match DataResponse::decode(&answer).unwrap() {
                DataResponse::Batch { watermark, .. } => watermark,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(scan(&replica), None);
        let forgot = Watermark {
            below: Version {
                ts: Timestamp::new(5_000, 0),
                ..Version::ZERO
            },
            until_ms: u64::MAX,
        };
        replica.store.absorb_watermark(RingRange::FULL, forgot);
        assert_eq!(scan(&replica), Some(forgot));
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
}
