//! Decoding of data-lane requests ([`DataRequest::decode`]): keys and
//! values come out as slices of the received frame.

use bytes::Bytes;

use super::wire::{DataRequest, RequestWire, WriteBody};
use super::wire_codec::{decode, slice_of, DataWireError};
use crate::hlc::Timestamp;
use crate::id::NodeId;
use crate::keyspace::RingRange;
use crate::store::{Condition, ScanCursor};

impl DataRequest {
    /// Decodes a request from a received frame (keys and values are
    /// slices of it).
    ///
    /// # Errors
    ///
    /// [`DataWireError`] for anything but a valid request.
    pub fn decode(frame: &Bytes) -> Result<DataRequest, DataWireError> {
        Ok(match decode::<RequestWire<'_>>(frame)? {
            RequestWire::Set {
                key,
                version,
                value,
                expires_at,
                expiry_stamp,
            } => DataRequest::Write {
                key: slice_of(frame, key),
                version: version.into(),
                op: WriteBody::Set {
                    value: slice_of(frame, value),
                    expires_at,
                },
                expiry_stamp: Timestamp::from_u64(expiry_stamp),
            },
            RequestWire::Expired {
                key,
                version,
                expired_at,
                expiry_stamp,
            } => DataRequest::Write {
                key: slice_of(frame, key),
                version: version.into(),
                op: WriteBody::Expired { expired_at },
                expiry_stamp: Timestamp::from_u64(expiry_stamp),
            },
            RequestWire::Delete { key, version } => DataRequest::Write {
                key: slice_of(frame, key),
                version: version.into(),
                op: WriteBody::Delete,
                expiry_stamp: Timestamp::ZERO,
            },
            RequestWire::Read { key } => DataRequest::Read {
                key: slice_of(frame, key),
            },
            RequestWire::Scan {
                start,
                end,
                after,
                tombstones_only,
            } => DataRequest::Scan {
                range: RingRange::new(start, end),
                after: after.map(|(rel, key)| ScanCursor::from_parts(rel, slice_of(frame, key))),
                tombstones_only,
                refilling: false,
            },
            RequestWire::ScanRefilling { start, end, after } => DataRequest::Scan {
                range: RingRange::new(start, end),
                after: after.map(|(rel, key)| ScanCursor::from_parts(rel, slice_of(frame, key))),
                tombstones_only: false,
                refilling: true,
            },
            RequestWire::Digest { start, end } => DataRequest::Digest {
                range: RingRange::new(start, end),
                refilling: false,
            },
            RequestWire::DigestRefilling { start, end } => DataRequest::Digest {
                range: RingRange::new(start, end),
                refilling: true,
            },
            RequestWire::Hinted { owner, write } => DataRequest::Hinted {
                owner: NodeId::new(owner)
                    .map_err(|e| DataWireError::Malformed(format!("owner: {e}")))?,
                write: slice_of(frame, write),
            },
            RequestWire::Forget { key, version } => DataRequest::Forget {
                key: slice_of(frame, key),
                version: version.into(),
            },
            RequestWire::Lease {
                key,
                holder,
                ttl_ms,
                release,
            } => DataRequest::Lease {
                key: slice_of(frame, key),
                holder: NodeId::new(holder)
                    .map_err(|e| DataWireError::Malformed(format!("holder: {e}")))?,
                ttl: std::time::Duration::from_millis(ttl_ms),
                release,
            },
            RequestWire::Flush { floor } => DataRequest::Flush {
                floor: floor.map(Into::into),
            },
            RequestWire::CounterSet {
                key,
                version,
                state,
                expires_at,
                expiry_stamp,
            } => DataRequest::Write {
                key: slice_of(frame, key),
                version: version.into(),
                op: WriteBody::Counter {
                    state: slice_of(frame, state),
                    expires_at,
                },
                expiry_stamp: Timestamp::from_u64(expiry_stamp),
            },
            RequestWire::ScanKeys {
                start,
                end,
                after,
                limit,
            } => DataRequest::ScanKeys {
                range: RingRange::new(start, end),
                after: after.map(|(rel, key)| ScanCursor::from_parts(rel, slice_of(frame, key))),
                limit,
            },
            RequestWire::Retract {
                key,
                version,
                restore,
            } => DataRequest::Retract {
                key: slice_of(frame, key),
                version: version.into(),
                restore: restore.map(|(v, stamp, at)| (v.into(), Timestamp::from_u64(stamp), at)),
            },
            RequestWire::Conditional {
                write,
                unchanged,
                version,
                stamp,
            } => {
                let order = (version.into(), Timestamp::from_u64(stamp));
                DataRequest::Conditional {
                    condition: if unchanged {
                        Condition::Unchanged(order)
                    } else {
                        Condition::NoValueAfter(order)
                    },
                    write: slice_of(frame, write),
                }
            }
        })
    }
}
