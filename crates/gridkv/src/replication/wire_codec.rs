//! The data wire's serialisation primitives: the format version byte,
//! postcard encode and decode, versions as varints, byte slices written
//! in one copy and read as slices of the received frame.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::hlc::{Timestamp, Version};
use crate::id::Generation;

/// The format this build writes and reads.
///
/// 2: writes, values, tombstones and scanned entries carry their expiry
/// stamp; a replica can answer that it forgot a key's range.
pub const DATA_WIRE_VERSION: u8 = 3;

/// Why a data-lane message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataWireError {
    /// Not valid postcard for the expected message.
    #[error("malformed data message: {0}")]
    Malformed(String),
    /// A format version this build does not read.
    #[error("data message version {got}, this node reads {DATA_WIRE_VERSION}")]
    Version {
        /// The version the message claims.
        got: u8,
    },
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct VersionWire {
    pub(super) ts: u64,
    pub(super) writer: u64,
    pub(super) generation: u64,
}

impl From<Version> for VersionWire {
    fn from(v: Version) -> Self {
        Self {
            ts: v.ts.as_u64(),
            writer: v.writer,
            generation: v.generation.get(),
        }
    }
}

impl From<VersionWire> for Version {
    fn from(v: VersionWire) -> Self {
        Version {
            ts: Timestamp::from_u64(v.ts),
            writer: v.writer,
            generation: Generation::new(v.generation),
        }
    }
}

/// Serialises a byte slice as bytes: its length, then one copy of it.
/// Serde's own impl for `[u8]` is a sequence, one `u8` at a time (the
/// encode of a 100-byte write was 4,000 instructions of it); postcard
/// writes both as the same bytes, so the wire format is unchanged and
/// decoding (which borrows bytes) is untouched.
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

pub(super) fn as_bytes<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    Raw(v).serialize(s)
}

pub(super) fn opt_as_bytes<S: serde::Serializer>(v: &Option<&[u8]>, s: S) -> Result<S::Ok, S::Error> {
    v.map(Raw).serialize(s)
}

/// Room for a message's fixed fields: the format version, the variant,
/// a version's three varints, an expiry and two lengths.
pub(super) const FIXED_FIELDS: usize = 64;

/// Encodes `wire`, whose keys and values add up to `payload` bytes: the
/// buffer is allocated once, not grown (and copied) as postcard extends it.
pub(super) fn encode<T: Serialize>(wire: &T, payload: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED_FIELDS + payload);
    out.push(DATA_WIRE_VERSION);
    // Plain data always serialises.
    postcard::to_extend(wire, out).expect("data messages always serialise")
}

pub(super) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DataWireError> {
    match bytes.first() {
        Some(&DATA_WIRE_VERSION) => {}
        Some(&got) => return Err(DataWireError::Version { got }),
        None => return Err(DataWireError::Malformed("empty".to_owned())),
    }
    let (wire, rest) = postcard::take_from_bytes(&bytes[1..])
        .map_err(|e| DataWireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DataWireError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(wire)
}

/// `sub` as a slice of `frame` (zero copy); `sub` must point into it.
pub(super) fn slice_of(frame: &Bytes, sub: &[u8]) -> Bytes {
    frame.slice_ref(sub)
}
