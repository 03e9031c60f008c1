//! Data-lane messages between a coordinator and the replicas (postcard).
//!
//! A request is a write (set, delete, or a tombstone carried by repair) or a
//! read of one key; the answer says what the replica did or holds. Values
//! travel as borrowed slices on encode and as [`Bytes`] sliced out of the
//! received frame on decode, so a value is copied once, into the store.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use super::wire_codec::{DataWireError, DATA_WIRE_VERSION};
pub use super::wire_response::{
    DataResponse, KeyEntry, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, RefusalCode,
};
use super::wire_codec::{as_bytes, encode, VersionWire};
use crate::hlc::{Timestamp, Version};
use crate::id::NodeId;
use crate::keyspace::RingRange;
use crate::store::{Condition, ScanCursor, Write, WriteOp};



/// The wire form of a request (postcard), encoded here and decoded in
/// `wire_decode`.
#[derive(Serialize, Deserialize)]
pub(super) enum RequestWire<'a> {
    Set {
        #[serde(serialize_with = "as_bytes")]
        key: &'a [u8],
        version: VersionWire,
        #[serde(serialize_with = "as_bytes")]
        value: &'a [u8],
        expires_at: Option<u64>,
        expiry_stamp: u64,
    },
    Delete {
        #[serde(serialize_with = "as_bytes")]
        key: &'a [u8],
        version: VersionWire,
    },
    Read {
        #[serde(serialize_with = "as_bytes")]
        key: &'a [u8],
    },
    Scan {
        start: u64,
        end: u64,
        after: Option<(u64, &'a [u8])>,
        tombstones_only: bool,
    },
    Digest {
        start: u64,
        end: u64,
    },
    /// A write for `owner`, to keep as a hint (a sloppy quorum's fallback).
    Hinted {
        owner: &'a str,
        #[serde(serialize_with = "as_bytes")]
        write: &'a [u8],
    },
    /// The tombstone of a value whose TTL ran out.
    Expired {
        #[serde(serialize_with = "as_bytes")]
        key: &'a [u8],
        version: VersionWire,
        expired_at: u64,
        expiry_stamp: u64,
    },
    /// Drop the key's value if it is at `version`: no other owner vouches
    /// for it.
    Forget {
        #[serde(serialize_with = "as_bytes")]
        key: &'a [u8],
        version: VersionWire,
    },
    /// `Scan`, answered also by a restart that is still refilling.
    ScanRefilling {
        start: u64,
        end: u64,
        after: Option<(u64, &'a [u8])>,
    },
    /// `Digest`, answered also by a restart that is still refilling.
    DigestRefilling {
        start: u64,
        end: u64,
    },
    /// An encoded write (one of the variants above), applied only if the
    /// condition holds: `unchanged` tells `Condition::Unchanged` from
    /// `Condition::NoValueAfter`, of the order `(version, stamp)`.
    Conditional {
        #[serde(serialize_with = "as_bytes")]
        write: &'a [u8],
        unchanged: bool,
        version: VersionWire,
        stamp: u64,
    },
    /// The keys of a range (no values), for `SCAN`.
    ScanKeys {
        start: u64,
        end: u64,
        after: Option<(u64, &'a [u8])>,
        limit: u32,
    },
    /// Take back a conditional write that lost: (version, stamp,
    /// expired_at) of the tombstone to restore.
    Retract {
        #[serde(serialize_with = "as_bytes")]
        key: &'a [u8],
        version: VersionWire,
        restore: Option<(VersionWire, u64, Option<u64>)>,
    },
    /// A load lease: acquire (or release) `key`'s for `holder`.
    Lease {
        #[serde(serialize_with = "as_bytes")]
        key: &'a [u8],
        holder: &'a str,
        ttl_ms: u64,
        release: bool,
    },
    /// A flush at `floor`, or (`None`) a request for the replica's clock.
    Flush {
        floor: Option<VersionWire>,
    },
    /// `Set` of a counter's state.
    CounterSet {
        #[serde(serialize_with = "as_bytes")]
        key: &'a [u8],
        version: VersionWire,
        #[serde(serialize_with = "as_bytes")]
        state: &'a [u8],
        expires_at: Option<u64>,
        expiry_stamp: u64,
    },
}

/// A request to a replica, decoded. Keys and values are slices of the
/// received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataRequest {
    /// Apply a write if it is newer than what the replica holds.
    Write {
        /// The key.
        key: Bytes,
        /// The write's version.
        version: Version,
        /// What the write stores.
        op: WriteBody,
        /// When the expiry was last changed ([`Write::expiry_stamp`]).
        expiry_stamp: Timestamp,
    },
    /// Read one key.
    Read {
        /// The key.
        key: Bytes,
    },
    /// Stream a ring range: the next batch of entries after `after`.
    Scan {
        /// The range.
        range: RingRange,
        /// Where the previous batch stopped.
        after: Option<ScanCursor>,
        /// Send only tombstones (a receiver under memory pressure wants
        /// deletes, not values it would evict again).
        tombstones_only: bool,
        /// Answer even while this node is a restart still refilling: with
        /// what it holds, all of it written since it started (see
        /// [`DataRequest::encode_scan_of_refilling`]).
        refilling: bool,
    },
    /// The digest of a ring range.
    Digest {
        /// The range.
        range: RingRange,
        /// As for [`DataRequest::Scan`].
        refilling: bool,
    },
    /// Keep `write` (an encoded [`DataRequest::Write`]) as a hint for
    /// `owner`, unreachable now, and deliver it when it is back: this node
    /// stands in for it in a sloppy quorum.
    Hinted {
        /// The designated owner the write is for.
        owner: NodeId,
        /// The encoded write.
        write: Bytes,
    },
    /// Drop the key's value if it is still at `version`: a read found that
    /// every other owner had forgotten the key's range above it, so nobody
    /// can vouch for it any more ([`Store::forget_unvouched`]). Answered
    /// [`DataResponse::Applied`], `was_live` telling whether it was dropped.
    ///
    /// [`Store::forget_unvouched`]: crate::store::Store::forget_unvouched
    Forget {
        /// The key.
        key: Bytes,
        /// The version no other owner vouches for.
        version: Version,
    },
    /// Apply `write` (an encoded [`DataRequest::Write`]) only if
    /// `condition` holds for what the replica stores: a read-modify-write
    /// (`SET NX`, `GETDEL`, `APPEND`) applies to the state it read.
    /// Answered [`DataResponse::Conflict`] when it does not.
    Conditional {
        /// What the stored key must satisfy.
        condition: Condition,
        /// The encoded write.
        write: Bytes,
    },
    /// The keys of a range, at most `limit` after `after` (no values):
    /// what `SCAN` walks. Answered [`DataResponse::Keys`].
    ScanKeys {
        /// The range.
        range: RingRange,
        /// Where the previous batch stopped.
        after: Option<ScanCursor>,
        /// Most keys to answer.
        limit: u32,
    },
    /// Acquire (or, `release`, end) `holder`'s load lease of `key` for
    /// `ttl`, at the key's primary owner. Answered [`DataResponse::Lease`].
    Lease {
        /// The key.
        key: Bytes,
        /// Who asks.
        holder: NodeId,
        /// For how long.
        ttl: std::time::Duration,
        /// End the lease instead.
        release: bool,
    },
    /// Flush the store at `floor` ([`Store::flush`]), answered
    /// [`DataResponse::Applied`]; or, with `None`, answer this node's
    /// clock ([`DataResponse::Clock`]): the first step of a flush, which
    /// takes a floor above every version any member stamped.
    ///
    /// [`Store::flush`]: crate::store::Store::flush
    Flush {
        /// The floor.
        floor: Option<Version>,
    },
    /// Take back a conditional write at `version` that lost
    /// ([`Store::retract`](crate::store::Store::retract)): drop it if it
    /// is still stored, putting back the tombstone `restore` (version,
    /// expiry stamp, when its TTL ran out) the writer read. Answered
    /// [`DataResponse::Applied`], `was_live` telling whether it was there.
    Retract {
        /// The key.
        key: Bytes,
        /// The lost write's version.
        version: Version,
        /// The tombstone to put back.
        restore: Option<(Version, Timestamp, Option<u64>)>,
    },
}

/// What a decoded [`DataRequest::Write`] stores (an owned
/// [`WriteOp`], its value a slice of the received frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteBody {
    /// A value, with its absolute expiry in ms, if any.
    Set {
        /// The value.
        value: Bytes,
        /// Absolute expiry in ms.
        expires_at: Option<u64>,
    },
    /// A counter's state ([`Write::counter`]), with its absolute expiry.
    Counter {
        /// The encoded state.
        state: Bytes,
        /// Absolute expiry in ms.
        expires_at: Option<u64>,
    },
    /// A delete.
    Delete,
    /// The tombstone of a value whose TTL ran out at `expired_at`.
    Expired {
        /// When the TTL ran out (ms).
        expired_at: u64,
    },
}

impl WriteBody {
    /// The store write of this body at `version`.
    pub fn write(&self, version: Version, expiry_stamp: Timestamp) -> Write<'_> {
        let op = match self {
            WriteBody::Set { value, expires_at }
            | WriteBody::Counter {
                state: value,
                expires_at,
            } => WriteOp::Set {
                value,
                expires_at: *expires_at,
            },
            WriteBody::Delete => WriteOp::Delete,
            WriteBody::Expired { expired_at } => WriteOp::Expired {
                expired_at: *expired_at,
            },
        };
        Write {
            version,
            expiry_stamp,
            op,
            counter: matches!(self, WriteBody::Counter { .. }),
        }
    }
}

impl DataRequest {
    /// Encodes a write of `write` to `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::replication::wire::{DataRequest, WriteBody};
    /// use gridkv::store::Write;
    ///
    /// let v = Version { ts: Timestamp::new(5, 0), ..Version::ZERO };
    /// let frame = Bytes::from(DataRequest::encode_write(b"k", &Write::set(v, b"hello", None)));
    /// match DataRequest::decode(&frame).unwrap() {
    ///     DataRequest::Write { key, version, op: WriteBody::Set { value, .. }, .. } => {
    ///         assert_eq!((&key[..], version), (&b"k"[..], v));
    ///         assert_eq!(value, Bytes::from_static(b"hello"));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn encode_write(key: &[u8], write: &Write<'_>) -> Vec<u8> {
        let version = write.version.into();
        match write.op {
            WriteOp::Set { value, expires_at } if write.counter => encode(
                &RequestWire::CounterSet {
                    key,
                    version,
                    state: value,
                    expires_at,
                    expiry_stamp: write.expiry_stamp.as_u64(),
                },
                key.len() + value.len(),
            ),
            WriteOp::Set { value, expires_at } => encode(
                &RequestWire::Set {
                    key,
                    version,
                    value,
                    expires_at,
                    expiry_stamp: write.expiry_stamp.as_u64(),
                },
                key.len() + value.len(),
            ),
            WriteOp::Delete => encode(&RequestWire::Delete { key, version }, key.len()),
            WriteOp::Expired { expired_at } => encode(
                &RequestWire::Expired {
                    key,
                    version,
                    expired_at,
                    expiry_stamp: write.expiry_stamp.as_u64(),
                },
                key.len(),
            ),
        }
    }

    /// Whether the encoded request `frame` is a scan or a digest (a walk
    /// over a range, where the others touch one key), read from its first
    /// two bytes without decoding it: the format version, then postcard's
    /// variant index of `RequestWire`.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::keyspace::RingRange;
    /// use gridkv::replication::wire::DataRequest;
    ///
    /// assert!(DataRequest::is_bulk(&DataRequest::encode_digest(RingRange::FULL)));
    /// assert!(!DataRequest::is_bulk(&DataRequest::encode_read(b"k")));
    /// ```
    pub fn is_bulk(frame: &[u8]) -> bool {
        /// `RequestWire::Scan`, `RequestWire::Digest` and their
        /// `Refilling` forms.
        const SCAN: u8 = 3;
        const DIGEST: u8 = 4;
        const SCAN_REFILLING: u8 = 8;
        const DIGEST_REFILLING: u8 = 9;
        const SCAN_KEYS: u8 = 11;
        matches!(
            frame,
            [
                DATA_WIRE_VERSION,
                SCAN | DIGEST | SCAN_REFILLING | DIGEST_REFILLING | SCAN_KEYS,
                ..
            ]
        )
    }

    /// Encodes a read of `key`.
    pub fn encode_read(key: &[u8]) -> Vec<u8> {
        encode(&RequestWire::Read { key }, key.len())
    }

    /// Encodes a scan of `range` continuing after `after`, of every entry
    /// or only of tombstones.
    pub fn encode_scan(
        range: RingRange,
        after: Option<&ScanCursor>,
        tombstones_only: bool,
    ) -> Vec<u8> {
        let after = after.map(ScanCursor::parts);
        let payload = after.map_or(0, |(_, key)| key.len());
        encode(
            &RequestWire::Scan {
                start: range.start,
                end: range.end,
                after,
                tombstones_only,
            },
            payload,
        )
    }

    /// Encodes a scan of `range` continuing after `after`, that a restart
    /// still refilling answers too, with what it holds instead of
    /// refusing it (`NotReady`). Everything such a node holds was written
    /// since it started (it lost the rest), so it brings back nothing
    /// already forgotten; two restarts that are each other's sources pull
    /// from each other this way, where waiting for the other to be filled
    /// first would wait for ever.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gridkv::keyspace::RingRange;
    /// use gridkv::replication::wire::DataRequest;
    ///
    /// let frame = Bytes::from(DataRequest::encode_scan_of_refilling(RingRange::FULL, None));
    /// assert!(matches!(
    ///     DataRequest::decode(&frame).unwrap(),
    ///     DataRequest::Scan { refilling: true, tombstones_only: false, .. }
    /// ));
    /// ```
    pub fn encode_scan_of_refilling(range: RingRange, after: Option<&ScanCursor>) -> Vec<u8> {
        let after = after.map(ScanCursor::parts);
        let payload = after.map_or(0, |(_, key)| key.len());
        encode(
            &RequestWire::ScanRefilling {
                start: range.start,
                end: range.end,
                after,
            },
            payload,
        )
    }

    /// Encodes a digest request for `range` that a restart still
    /// refilling answers too (see [`DataRequest::encode_scan_of_refilling`]).
    pub fn encode_digest_of_refilling(range: RingRange) -> Vec<u8> {
        encode(
            &RequestWire::DigestRefilling {
                start: range.start,
                end: range.end,
            },
            0,
        )
    }

    /// Encodes a request to keep `write` (from [`DataRequest::encode_write`])
    /// as a hint for `owner`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::replication::wire::DataRequest;
    /// use gridkv::store::Write;
    /// use gridkv::NodeId;
    ///
    /// let v = Version { ts: Timestamp::new(5, 0), ..Version::ZERO };
    /// let write = DataRequest::encode_write(b"k", &Write::set(v, b"hello", None));
    /// let owner = NodeId::new("c").unwrap();
    /// let frame = Bytes::from(DataRequest::encode_hinted(&owner, &write));
    /// match DataRequest::decode(&frame).unwrap() {
    ///     DataRequest::Hinted { owner: o, write: w } => {
    ///         assert_eq!((o, &w[..]), (owner, &write[..]));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn encode_hinted(owner: &NodeId, write: &[u8]) -> Vec<u8> {
        let owner = owner.as_str();
        encode(
            &RequestWire::Hinted { owner, write },
            owner.len() + write.len(),
        )
    }

    /// Encodes a request to drop `key`'s value if it is still at
    /// `version` ([`DataRequest::Forget`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::replication::wire::DataRequest;
    ///
    /// let v = Version { ts: Timestamp::new(5, 0), ..Version::ZERO };
    /// let frame = Bytes::from(DataRequest::encode_forget(b"k", v));
    /// assert_eq!(
    ///     DataRequest::decode(&frame).unwrap(),
    ///     DataRequest::Forget { key: Bytes::from_static(b"k"), version: v }
    /// );
    /// ```
    pub fn encode_forget(key: &[u8], version: Version) -> Vec<u8> {
        encode(
            &RequestWire::Forget {
                key,
                version: version.into(),
            },
            key.len(),
        )
    }

    /// Encodes `write` (from [`DataRequest::encode_write`]), to apply only
    /// if `condition` holds ([`DataRequest::Conditional`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::replication::wire::DataRequest;
    /// use gridkv::store::{Condition, Write};
    ///
    /// let v = Version { ts: Timestamp::new(5, 0), ..Version::ZERO };
    /// let write = DataRequest::encode_write(b"k", &Write::set(v, b"v", None));
    /// let nx = Condition::NoValueAfter(Condition::ABSENT);
    /// let frame = Bytes::from(DataRequest::encode_conditional(&write, nx));
    /// assert_eq!(
    ///     DataRequest::decode(&frame).unwrap(),
    ///     DataRequest::Conditional { condition: nx, write: Bytes::from(write) }
    /// );
    /// ```
    pub fn encode_conditional(write: &[u8], condition: Condition) -> Vec<u8> {
        let (unchanged, (version, stamp)) = match condition {
            Condition::NoValueAfter(order) => (false, order),
            Condition::Unchanged(order) => (true, order),
        };
        encode(
            &RequestWire::Conditional {
                write,
                unchanged,
                version: version.into(),
                stamp: stamp.as_u64(),
            },
            write.len(),
        )
    }

    /// Encodes a [`DataRequest::ScanKeys`].
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gridkv::keyspace::RingRange;
    /// use gridkv::replication::wire::DataRequest;
    ///
    /// let frame = DataRequest::encode_scan_keys(RingRange::new(1, 9), None, 10);
    /// assert!(DataRequest::is_bulk(&frame));
    /// assert!(matches!(
    ///     DataRequest::decode(&Bytes::from(frame)).unwrap(),
    ///     DataRequest::ScanKeys { limit: 10, after: None, .. }
    /// ));
    /// ```
    pub fn encode_scan_keys(range: RingRange, after: Option<&ScanCursor>, limit: u32) -> Vec<u8> {
        let after = after.map(ScanCursor::parts);
        let payload = after.map_or(0, |(_, key)| key.len());
        encode(
            &RequestWire::ScanKeys {
                start: range.start,
                end: range.end,
                after,
                limit,
            },
            payload,
        )
    }

    /// Encodes a [`DataRequest::Lease`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use gridkv::replication::wire::DataRequest;
    /// use gridkv::NodeId;
    ///
    /// let a = NodeId::new("a").unwrap();
    /// let frame = DataRequest::encode_lease(b"k", &a, Duration::from_secs(3), false);
    /// assert!(matches!(
    ///     DataRequest::decode(&Bytes::from(frame)).unwrap(),
    ///     DataRequest::Lease { release: false, .. }
    /// ));
    /// ```
    pub fn encode_lease(
        key: &[u8],
        holder: &NodeId,
        ttl: std::time::Duration,
        release: bool,
    ) -> Vec<u8> {
        let holder = holder.as_str();
        encode(
            &RequestWire::Lease {
                key,
                holder,
                ttl_ms: ttl.as_millis().min(u128::from(u64::MAX)) as u64,
                release,
            },
            key.len() + holder.len(),
        )
    }

    /// Encodes a [`DataRequest::Flush`].
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gridkv::hlc::Version;
    /// use gridkv::replication::wire::DataRequest;
    ///
    /// let frame = Bytes::from(DataRequest::encode_flush(Some(Version::ZERO)));
    /// assert_eq!(
    ///     DataRequest::decode(&frame).unwrap(),
    ///     DataRequest::Flush { floor: Some(Version::ZERO) }
    /// );
    /// ```
    pub fn encode_flush(floor: Option<Version>) -> Vec<u8> {
        encode(
            &RequestWire::Flush {
                floor: floor.map(Into::into),
            },
            0,
        )
    }

    /// Encodes a [`DataRequest::Retract`].
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::replication::wire::DataRequest;
    ///
    /// let v = Version { ts: Timestamp::new(5, 0), ..Version::ZERO };
    /// let restore = Some((Version::ZERO, Timestamp::ZERO, None));
    /// let frame = Bytes::from(DataRequest::encode_retract(b"k", v, restore));
    /// assert_eq!(
    ///     DataRequest::decode(&frame).unwrap(),
    ///     DataRequest::Retract { key: Bytes::from_static(b"k"), version: v, restore }
    /// );
    /// ```
    pub fn encode_retract(
        key: &[u8],
        version: Version,
        restore: Option<(Version, Timestamp, Option<u64>)>,
    ) -> Vec<u8> {
        encode(
            &RequestWire::Retract {
                key,
                version: version.into(),
                restore: restore.map(|(v, stamp, at)| (v.into(), stamp.as_u64(), at)),
            },
            key.len(),
        )
    }

    /// Encodes a digest request for `range`.
    pub fn encode_digest(range: RingRange) -> Vec<u8> {
        encode(
            &RequestWire::Digest {
                start: range.start,
                end: range.end,
            },
            0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Generation;
    use crate::store::{Item, Lookup};

    /// Keys and values are written as postcard bytes, which are the same
    /// bytes as the sequence of `u8`s serde writes by default: nodes of
    /// builds on either side of that change talk to each other.
    #[test]
    fn byte_fields_keep_the_sequence_encoding() {
        #[derive(Serialize)]
        enum AsSequence<'a> {
            _Set,
            _Delete,
            Read { key: &'a [u8] },
        }
        let seq = postcard::to_allocvec(&AsSequence::Read { key: b"key" }).unwrap();
        assert_eq!(DataRequest::encode_read(b"key")[1..], seq[..]);
        assert_eq!(
            DataRequest::encode_read(b"key"),
            [DATA_WIRE_VERSION, 2, 3, b'k', b'e', b'y']
        );
        let item = Item {
            value: Bytes::from_static(b"value"),
            version: Version::ZERO,
            expires_at: None,
            expiry_stamp: Timestamp::new(7, 1),
            counter: false,
        };
        let live = DataResponse::Value(Lookup::Live(item));
        assert_eq!(
            DataResponse::decode(&Bytes::from(live.encode())).unwrap(),
            live
        );
    }

    /// `is_bulk` reads the variant index: every kind of request is
    /// classified, so reordering `RequestWire` cannot go unnoticed.
    #[test]
    fn bulk_requests_are_told_apart_without_decoding() {
        let version = Version {
            ts: Timestamp::from_u64(7),
            writer: 1,
            generation: Generation::new(1),
        };
        let set = DataRequest::encode_write(b"k", &Write::set(version, b"v", None));
        let delete = DataRequest::encode_write(b"k", &Write::delete(version));
        let owner = NodeId::new("b").unwrap();
        for (frame, bulk) in [
            (set.clone(), false),
            (delete, false),
            (DataRequest::encode_read(b"k"), false),
            (DataRequest::encode_hinted(&owner, &set), false),
            (DataRequest::encode_scan(RingRange::FULL, None, false), true),
            (
                DataRequest::encode_scan(RingRange::new(1, 9), None, true),
                true,
            ),
            (DataRequest::encode_digest(RingRange::new(3, 4)), true),
            (
                DataRequest::encode_scan_of_refilling(RingRange::new(1, 9), None),
                true,
            ),
            (
                DataRequest::encode_digest_of_refilling(RingRange::new(3, 4)),
                true,
            ),
            (
                DataRequest::encode_scan_keys(RingRange::new(3, 4), None, 5),
                true,
            ),
            (
                DataRequest::encode_retract(b"k", version, None),
                false,
            ),
            (
                DataRequest::encode_conditional(&set, crate::store::Condition::NoValueAfter(crate::store::Condition::ABSENT)),
                false,
            ),
        ] {
            let decoded = DataRequest::decode(&Bytes::from(frame.clone())).unwrap();
            assert_eq!(
                DataRequest::is_bulk(&frame),
                matches!(
                    decoded,
                    DataRequest::Scan { .. }
                        | DataRequest::Digest { .. }
                        | DataRequest::ScanKeys { .. }
                ),
                "{decoded:?}"
            );
            assert_eq!(DataRequest::is_bulk(&frame), bulk);
        }
        assert!(!DataRequest::is_bulk(&[]));
        assert!(!DataRequest::is_bulk(&[DATA_WIRE_VERSION + 1, 3]));
    }
}
