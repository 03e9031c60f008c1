//! The replica side: applies writes and answers reads from the local store.

use std::sync::Arc;

use bytes::Bytes;

use super::wire::{DataRequest, DataResponse, RefusalCode};
use crate::hlc::Hlc;
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

    /// Reads a key.
    pub(crate) fn read(&self, key: &[u8]) -> DataResponse {
        match self.store.get(key) {
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

/// What a write stores: `Some((value, expiry))` for a set, `None` for a
/// delete.
pub(crate) type WriteData = Option<(Bytes, Option<u64>)>;
