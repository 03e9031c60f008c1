//! Data-lane answers of a replica (postcard): what it did with a write,
//! what it holds for a read, one batch of a scan, a range's digest, or a
//! refusal. Re-exported as [`super::wire::DataResponse`]; the requests
//! are in [`super::wire`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::wire_codec::{as_bytes, decode, encode, opt_as_bytes, slice_of, VersionWire, FIXED_FIELDS};
use super::wire_codec::DataWireError;
use crate::hlc::{Timestamp, Version};
use crate::store::{EntryData, Item, Lookup, RangeDigest, RangeEntry, ScanCursor, Watermark};

/// Most bytes of entries one scan batch carries (well under the frame
/// limit).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Most entries one scan batch carries.
pub const MAX_BATCH_ENTRIES: usize = 4096;

/// Why a replica refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum RefusalCode {
    /// The key or value is out of the replica's bounds.
    Invalid = 1,
    /// The write's timestamp is too far ahead of the replica's clock.
    ClockDrift = 2,
    /// The replica is shutting down.
    ShuttingDown = 3,
    /// The replica does not serve reads yet (joining, not filled): its
    /// answer could be stale.
    NotReady = 4,
    /// The replica is out of room for the request (its hints are full):
    /// overload, like a shed request.
    Overloaded = 5,
    /// A code this build does not know.
    Unknown = 0xffff,
}

impl RefusalCode {
    pub(super) fn from_u16(code: u16) -> Self {
        match code {
            1 => RefusalCode::Invalid,
            2 => RefusalCode::ClockDrift,
            3 => RefusalCode::ShuttingDown,
            4 => RefusalCode::NotReady,
            5 => RefusalCode::Overloaded,
            _ => RefusalCode::Unknown,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct EntryWire<'a> {
    #[serde(serialize_with = "as_bytes")]
    key: &'a [u8],
    hash: u64,
    version: VersionWire,
    /// `Some` for a value, `None` for a tombstone.
    #[serde(serialize_with = "opt_as_bytes")]
    value: Option<&'a [u8]>,
    /// The value's expiry, or the tombstone's time of expiry.
    expires_at: Option<u64>,
    expiry_stamp: u64,
    /// Whether the value is a counter's state.
    counter: bool,
}

#[derive(Serialize, Deserialize)]
enum ResponseWire<'a> {
    Applied {
        was_live: bool,
    },
    Superseded {
        current: VersionWire,
    },
    Missing,
    Live {
        #[serde(serialize_with = "as_bytes")]
        value: &'a [u8],
        version: VersionWire,
        expires_at: Option<u64>,
        expiry_stamp: u64,
    },
    Dead {
        version: VersionWire,
        expired_at: Option<u64>,
        expiry_stamp: u64,
    },
    Evicted {
        version: VersionWire,
    },
    Refused {
        code: u16,
        reason: &'a str,
    },
    Batch {
        #[serde(borrow)]
        entries: Vec<EntryWire<'a>>,
        next: Option<(u64, &'a [u8])>,
        /// The source's watermark over the scanned range: (below, until).
        watermark: Option<(VersionWire, u64)>,
        /// The source's flush floor, if it was flushed.
        floor: Option<VersionWire>,
    },
    Digest {
        hash: u64,
        count: u64,
    },
    Forgotten {
        below: VersionWire,
    },
    /// A write refused under the replica's watermark.
    RefusedForgotten {
        below: VersionWire,
    },
    /// A conditional write whose condition does not hold.
    Conflict {
        current: VersionWire,
    },
    /// Keys of a range, for `SCAN`.
    Keys {
        #[serde(borrow)]
        keys: Vec<KeyWire<'a>>,
        next: Option<(u64, &'a [u8])>,
    },
    /// A replica's clock (a flush's first step).
    Clock {
        now: VersionWire,
    },
    /// A lease answer: granted, or held by another for `wait_ms`.
    Lease {
        granted: bool,
        wait_ms: u64,
    },
    /// `Live` of a counter's state.
    LiveCounter {
        #[serde(serialize_with = "as_bytes")]
        state: &'a [u8],
        version: VersionWire,
        expires_at: Option<u64>,
        expiry_stamp: u64,
    },
}

#[derive(Serialize, Deserialize)]
struct KeyWire<'a> {
    #[serde(serialize_with = "as_bytes")]
    key: &'a [u8],
    hash: u64,
    version: VersionWire,
    expiry_stamp: u64,
    live: bool,
}

/// One key of a [`DataResponse::Keys`]: what a replica holds of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// The key.
    pub key: Bytes,
    /// Its ring position.
    pub hash: u64,
    /// The stored version and expiry stamp ([`Lookup::order`]).
    pub order: (Version, Timestamp),
    /// Whether it holds a value (live or evicted here), not a tombstone.
    pub live: bool,
}

/// A replica's answer, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataResponse {
    /// The write is now (or already was) the stored version.
    Applied {
        /// Whether a live value was there before.
        was_live: bool,
    },
    /// A newer version is stored; nothing changed.
    Superseded {
        /// The stored version.
        current: Version,
    },
    /// A write of a value not newer than what the replica forgot of the
    /// key's range under memory pressure ([`ApplyOutcome::Forgotten`]):
    /// refused, not applied.
    ///
    /// [`ApplyOutcome::Forgotten`]: crate::store::ApplyOutcome::Forgotten
    Forgotten {
        /// The replica's watermark there.
        below: Version,
    },
    /// A conditional write ([`DataRequest::Conditional`]) whose condition
    /// does not hold here: nothing changed.
    ///
    /// [`DataRequest::Conditional`]: super::wire::DataRequest::Conditional
    Conflict {
        /// The stored version that fails the condition.
        current: Version,
    },
    /// Keys of a range ([`DataRequest::ScanKeys`]), in scan order.
    ///
    /// [`DataRequest::ScanKeys`]: super::wire::DataRequest::ScanKeys
    Keys {
        /// The keys.
        keys: Vec<KeyEntry>,
        /// Where to continue, or `None` when the range is done.
        next: Option<ScanCursor>,
    },
    /// The answer to a [`DataRequest::Lease`].
    ///
    /// [`DataRequest::Lease`]: super::wire::DataRequest::Lease
    Lease(super::lease::LeaseAnswer),
    /// The answer to a read.
    Value(Lookup),
    /// The request was refused.
    Refused {
        /// Why.
        code: RefusalCode,
        /// Detail for logs.
        reason: String,
    },
    /// One batch of a scan (evicted values are left out: their holder
    /// cannot send them).
    Batch {
        /// The entries, in scan order.
        entries: Vec<RangeEntry>,
        /// Where to continue, or `None` when the range is done.
        next: Option<ScanCursor>,
        /// What the source forgot of the scanned range under memory
        /// pressure ([`Store::watermark`](crate::store::Store::watermark)):
        /// the receiver adopts it, so that it refuses what the source
        /// would.
        watermark: Option<Watermark>,
        /// The source's flush floor ([`Store::flush`](crate::store::Store::flush)),
        /// if it was flushed: the receiver flushes too before it takes the
        /// entries (so joiners and restarts learn of a flush as they fill).
        floor: Option<Version>,
    },
    /// A replica's clock: a version above every version it stamped.
    Clock(Version),
    /// A range's digest.
    Digest(RangeDigest),
}

impl DataResponse {
    /// Encodes the response.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gridkv::replication::wire::DataResponse;
    /// use gridkv::store::Lookup;
    ///
    /// let r = DataResponse::Value(Lookup::Missing);
    /// assert_eq!(DataResponse::decode(&Bytes::from(r.encode())).unwrap(), r);
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let wire = match self {
            DataResponse::Applied { was_live } => ResponseWire::Applied {
                was_live: *was_live,
            },
            DataResponse::Superseded { current } => ResponseWire::Superseded {
                current: (*current).into(),
            },
            DataResponse::Forgotten { below } => ResponseWire::RefusedForgotten {
                below: (*below).into(),
            },
            DataResponse::Conflict { current } => ResponseWire::Conflict {
                current: (*current).into(),
            },
            DataResponse::Keys { keys, next } => ResponseWire::Keys {
                keys: keys
                    .iter()
                    .map(|k| KeyWire {
                        key: &k.key,
                        hash: k.hash,
                        version: k.order.0.into(),
                        expiry_stamp: k.order.1.as_u64(),
                        live: k.live,
                    })
                    .collect(),
                next: next.as_ref().map(ScanCursor::parts),
            },
            DataResponse::Lease(answer) => match answer {
                super::lease::LeaseAnswer::Granted => ResponseWire::Lease {
                    granted: true,
                    wait_ms: 0,
                },
                super::lease::LeaseAnswer::Held(wait) => ResponseWire::Lease {
                    granted: false,
                    wait_ms: wait.as_millis().min(u128::from(u64::MAX)) as u64,
                },
            },
            DataResponse::Value(Lookup::Missing) => ResponseWire::Missing,
            DataResponse::Value(Lookup::Live(item)) if item.counter => ResponseWire::LiveCounter {
                state: &item.value,
                version: item.version.into(),
                expires_at: item.expires_at,
                expiry_stamp: item.expiry_stamp.as_u64(),
            },
            DataResponse::Value(Lookup::Live(item)) => ResponseWire::Live {
                value: &item.value,
                version: item.version.into(),
                expires_at: item.expires_at,
                expiry_stamp: item.expiry_stamp.as_u64(),
            },
            DataResponse::Value(Lookup::Dead {
                version,
                expired_at,
                expiry_stamp,
            }) => ResponseWire::Dead {
                version: (*version).into(),
                expired_at: *expired_at,
                expiry_stamp: expiry_stamp.as_u64(),
            },
            DataResponse::Value(Lookup::Evicted { version }) => ResponseWire::Evicted {
                version: (*version).into(),
            },
            DataResponse::Value(Lookup::Forgotten { below }) => ResponseWire::Forgotten {
                below: (*below).into(),
            },
            DataResponse::Refused { code, reason } => ResponseWire::Refused {
                code: *code as u16,
                reason,
            },
            DataResponse::Clock(now) => ResponseWire::Clock { now: (*now).into() },
            DataResponse::Batch {
                entries,
                next,
                watermark,
                floor,
            } => ResponseWire::Batch {
                watermark: watermark.map(|w| (w.below.into(), w.until_ms)),
                floor: floor.map(Into::into),
                entries: entries
                    .iter()
                    .filter_map(|e| {
                        let (value, expires_at) = match &e.data {
                            EntryData::Value { value, expires_at } => {
                                (Some(&value[..]), *expires_at)
                            }
                            EntryData::Tombstone { expired_at } => (None, *expired_at),
                            EntryData::Evicted => return None,
                        };
                        Some(EntryWire {
                            key: &e.key,
                            hash: e.hash,
                            version: e.version.into(),
                            value,
                            expires_at,
                            expiry_stamp: e.expiry_stamp.as_u64(),
                            counter: e.counter,
                        })
                    })
                    .collect(),
                next: next.as_ref().map(ScanCursor::parts),
            },
            DataResponse::Digest(d) => ResponseWire::Digest {
                hash: d.hash,
                count: d.count,
            },
        };
        let payload = match &wire {
            ResponseWire::Live { value, .. } => value.len(),
            ResponseWire::LiveCounter { state, .. } => state.len(),
            ResponseWire::Refused { reason, .. } => reason.len(),
            ResponseWire::Keys { keys, .. } => keys
                .iter()
                .map(|k| FIXED_FIELDS + k.key.len())
                .sum(),
            ResponseWire::Batch { entries, .. } => entries
                .iter()
                .map(|e| FIXED_FIELDS + e.key.len() + e.value.map_or(0, <[u8]>::len))
                .sum(),
            _ => 0,
        };
        encode(&wire, payload)
    }

    /// Decodes a response from a received frame.
    ///
    /// # Errors
    ///
    /// [`DataWireError`] for anything but a valid response.
    pub fn decode(frame: &Bytes) -> Result<DataResponse, DataWireError> {
        Ok(match decode::<ResponseWire<'_>>(frame)? {
            ResponseWire::Applied { was_live } => DataResponse::Applied { was_live },
            ResponseWire::Superseded { current } => DataResponse::Superseded {
                current: current.into(),
            },
            ResponseWire::Missing => DataResponse::Value(Lookup::Missing),
            ResponseWire::Live {
                value,
                version,
                expires_at,
                expiry_stamp,
            } => DataResponse::Value(Lookup::Live(Item {
                value: slice_of(frame, value),
                version: version.into(),
                expires_at,
                expiry_stamp: Timestamp::from_u64(expiry_stamp),
                counter: false,
            })),
            ResponseWire::Lease { granted, wait_ms } => DataResponse::Lease(if granted {
                super::lease::LeaseAnswer::Granted
            } else {
                super::lease::LeaseAnswer::Held(std::time::Duration::from_millis(wait_ms))
            }),
            ResponseWire::LiveCounter {
                state,
                version,
                expires_at,
                expiry_stamp,
            } => DataResponse::Value(Lookup::Live(Item {
                value: slice_of(frame, state),
                version: version.into(),
                expires_at,
                expiry_stamp: Timestamp::from_u64(expiry_stamp),
                counter: true,
            })),
            ResponseWire::Dead {
                version,
                expired_at,
                expiry_stamp,
            } => DataResponse::Value(Lookup::Dead {
                version: version.into(),
                expired_at,
                expiry_stamp: Timestamp::from_u64(expiry_stamp),
            }),
            ResponseWire::Forgotten { below } => DataResponse::Value(Lookup::Forgotten {
                below: below.into(),
            }),
            ResponseWire::RefusedForgotten { below } => DataResponse::Forgotten {
                below: below.into(),
            },
            ResponseWire::Keys { keys, next } => {
                if keys.len() > MAX_BATCH_ENTRIES {
                    return Err(DataWireError::Malformed("key batch too long".to_owned()));
                }
                DataResponse::Keys {
                    keys: keys
                        .into_iter()
                        .map(|k| KeyEntry {
                            key: slice_of(frame, k.key),
                            hash: k.hash,
                            order: (k.version.into(), Timestamp::from_u64(k.expiry_stamp)),
                            live: k.live,
                        })
                        .collect(),
                    next: next.map(|(rel, key)| ScanCursor::from_parts(rel, slice_of(frame, key))),
                }
            }
            ResponseWire::Conflict { current } => DataResponse::Conflict {
                current: current.into(),
            },
            ResponseWire::Evicted { version } => DataResponse::Value(Lookup::Evicted {
                version: version.into(),
            }),
            ResponseWire::Refused { code, reason } => DataResponse::Refused {
                code: RefusalCode::from_u16(code),
                reason: reason.to_owned(),
            },
            ResponseWire::Clock { now } => DataResponse::Clock(now.into()),
            ResponseWire::Batch {
                entries,
                next,
                watermark,
                floor,
            } => {
                if entries.len() > MAX_BATCH_ENTRIES {
                    return Err(DataWireError::Malformed("batch too long".to_owned()));
                }
                DataResponse::Batch {
                    entries: entries
                        .into_iter()
                        .map(|e| RangeEntry {
                            key: slice_of(frame, e.key),
                            hash: e.hash,
                            version: e.version.into(),
                            expiry_stamp: Timestamp::from_u64(e.expiry_stamp),
                            counter: e.counter && e.value.is_some(),
                            data: match e.value {
                                Some(value) => EntryData::Value {
                                    value: slice_of(frame, value),
                                    expires_at: e.expires_at,
                                },
                                None => EntryData::Tombstone {
                                    expired_at: e.expires_at,
                                },
                            },
                        })
                        .collect(),
                    next: next.map(|(rel, key)| ScanCursor::from_parts(rel, slice_of(frame, key))),
                    watermark: watermark.map(|(below, until_ms)| Watermark {
                        below: below.into(),
                        until_ms,
                    }),
                    floor: floor.map(Into::into),
                }
            }
            ResponseWire::Digest { hash, count } => {
                DataResponse::Digest(RangeDigest { hash, count })
            }
        })
    }
}
