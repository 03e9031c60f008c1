//! What the store keeps per key, and the shapes of writes and reads.

use std::fmt;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;

use crate::hlc::{Timestamp, Version};

/// One write to apply to the store: a set or a delete, with its version.
///
/// The value is borrowed: [`Store::apply`](super::Store::apply) copies it
/// exactly once into storage it owns, so a value that arrived inside a
/// network buffer never keeps that buffer alive.
///
/// # Examples
///
/// ```
/// use gridkv::hlc::{Timestamp, Version};
/// use gridkv::store::Write;
///
/// let v = Version { ts: Timestamp::new(1_000, 0), ..Version::ZERO };
/// let set = Write::set(v, b"hello", None);
/// let del = Write::delete(v);
/// assert_eq!(set.version, del.version);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Write<'a> {
    /// The write's version; it is applied only over older versions.
    pub version: Version,
    /// When the value's expiry was last changed ([`Timestamp::ZERO`]: set
    /// with the value). An expiry change (`EXPIRE`, `PERSIST`) keeps the
    /// value's version and carries a newer stamp, so it applies to that
    /// exact version only: writes are ordered by `(version, expiry_stamp)`,
    /// and any newer set or delete wins over it everywhere.
    pub expiry_stamp: Timestamp,
    /// What the write does.
    pub op: WriteOp<'a>,
    /// Whether a [`WriteOp::Set`]'s value is a counter's state
    /// ([`counter`](super::counter)): copies at one version merge instead
    /// of one replacing the other.
    pub counter: bool,
}

/// The operation of a [`Write`].
#[derive(Clone, Copy, Debug)]
pub enum WriteOp<'a> {
    /// Store `value`, optionally expiring at an absolute time.
    Set {
        /// The value's bytes.
        value: &'a [u8],
        /// Absolute expiry in milliseconds since the Unix epoch (wall
        /// clock), or `None` to keep the value until overwritten.
        expires_at: Option<u64>,
    },
    /// Delete the key, leaving a tombstone for the grace period.
    Delete,
    /// The tombstone a value leaves when its TTL runs out, copied to
    /// another replica (repair, fills): absent there whatever its clock
    /// says, kept a grace period after `expired_at`.
    Expired {
        /// When the value's TTL ran out (ms since the Unix epoch).
        expired_at: u64,
    },
}

impl<'a> Write<'a> {
    /// A set of `value` at `version`, expiring at `expires_at` (ms) if given.
    pub fn set(version: Version, value: &'a [u8], expires_at: Option<u64>) -> Self {
        Self {
            version,
            expiry_stamp: Timestamp::ZERO,
            op: WriteOp::Set { value, expires_at },
            counter: false,
        }
    }

    /// A counter's `state` ([`Counter::encode`](super::counter::Counter::encode))
    /// at `version`, expiring at `expires_at` (ms) if given.
    pub fn counter(version: Version, state: &'a [u8], expires_at: Option<u64>) -> Self {
        Self {
            counter: true,
            ..Self::set(version, state, expires_at)
        }
    }

    /// A delete at `version`.
    pub fn delete(version: Version) -> Self {
        Self {
            version,
            expiry_stamp: Timestamp::ZERO,
            op: WriteOp::Delete,
            counter: false,
        }
    }

    /// This write with its expiry last changed at `stamp` (see
    /// [`Write::expiry_stamp`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::store::{Store, StoreConfig, Write};
    ///
    /// let store = Store::new(StoreConfig::default()).unwrap();
    /// let v = Version { ts: Timestamp::new(1_000, 0), ..Version::ZERO };
    /// store.apply(b"k", Write::set(v, b"v", Some(u64::MAX / 2))).unwrap();
    /// // PERSIST: the same value and version, no expiry, a newer stamp.
    /// let persist = Write::set(v, b"v", None).with_expiry_stamp(Timestamp::new(2_000, 0));
    /// assert!(store.apply(b"k", persist).unwrap().is_applied());
    /// assert_eq!(store.get(b"k").unwrap().into_item().unwrap().expires_at, None);
    /// ```
    pub fn with_expiry_stamp(mut self, stamp: Timestamp) -> Self {
        self.expiry_stamp = stamp;
        self
    }

    /// The order in which writes to one key apply: version, then expiry
    /// stamp.
    pub fn order(&self) -> (Version, Timestamp) {
        (self.version, self.expiry_stamp)
    }

    /// The write that recreates a tombstone elsewhere: a delete, or for a
    /// value whose TTL ran out, an expired tombstone, so that the receiver
    /// keeps it as long as this store does (a grace period after the
    /// expiry, not after the version) and reads it as absent even if its
    /// clock is behind this one's.
    pub fn tombstone(version: Version, expired_at: Option<u64>) -> Write<'static> {
        let op = match expired_at {
            Some(expired_at) => WriteOp::Expired { expired_at },
            None => WriteOp::Delete,
        };
        Write {
            version,
            expiry_stamp: Timestamp::ZERO,
            op,
            counter: false,
        }
    }

    /// The write that recreates what a read found: a live value (with its
    /// expiry stamp) or a tombstone; `None` for a lookup that holds nothing
    /// to send (missing, evicted, forgotten).
    pub fn of_lookup(lookup: &'a Lookup) -> Option<Write<'a>> {
        match lookup {
            Lookup::Live(item) => Some(item.write()),
            Lookup::Dead {
                version,
                expired_at,
                expiry_stamp,
            } => Some(Write::tombstone(*version, *expired_at).with_expiry_stamp(*expiry_stamp)),
            Lookup::Missing | Lookup::Evicted { .. } | Lookup::Forgotten { .. } => None,
        }
    }
}

/// What [`Store::apply`](super::Store::apply) did with a write.
///
/// # Examples
///
/// ```
/// use gridkv::hlc::{Timestamp, Version};
/// use gridkv::store::{ApplyOutcome, Store, StoreConfig, Write};
///
/// let store = Store::new(StoreConfig::default()).unwrap();
/// let (old, new) = (
///     Version { ts: Timestamp::new(1, 0), ..Version::ZERO },
///     Version { ts: Timestamp::new(2, 0), ..Version::ZERO },
/// );
/// let applied = store.apply(b"k", Write::set(new, b"v", None)).unwrap();
/// assert_eq!(applied, ApplyOutcome::Applied { was_live: false });
/// // Redelivery of the same write counts as applied (quorums rely on it)...
/// assert!(store.apply(b"k", Write::set(new, b"v", None)).unwrap().is_applied());
/// // ...a write older than the stored one does not.
/// let late = store.apply(b"k", Write::set(old, b"stale", None)).unwrap();
/// assert_eq!(late, ApplyOutcome::Superseded { current: new });
/// assert!(!late.is_applied());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The write is now the stored version of the key.
    Applied {
        /// Whether the key held an unexpired value before (evicted values
        /// count: they were live, just not kept here). A delete reports
        /// this as "was there anything to delete".
        was_live: bool,
    },
    /// The very same version was already stored (a retried or duplicated
    /// delivery). The write is in place, so replication counts it as
    /// applied.
    Duplicate,
    /// A newer version is stored; nothing changed.
    Superseded {
        /// The stored, newer version.
        current: Version,
    },
    /// Refused: the key's part of the range forgot entries up to `below`
    /// under memory pressure, and the write is a value not newer than
    /// that (it could be one a forgotten delete or overwrite replaced).
    /// Nothing is stored: the write does not count as applied, and a
    /// coordinator re-stamps past `below`.
    Forgotten {
        /// The part's watermark.
        below: Version,
    },
    /// Refused: the write's [`Condition`] does not hold here (a newer value
    /// or write is stored than the one the writer read). Nothing changed.
    Conflict {
        /// The stored, newer version.
        current: Version,
    },
}

/// What a conditional write ([`Store::apply_if`](super::Store::apply_if))
/// requires of the stored key: a read-modify-write applies to the state it
/// read, so that it never undoes a write made since. `order` is what the
/// writer read: `(version, expiry stamp)` ([`Lookup::order`]), or zeros for
/// a key it found unknown.
///
/// # Examples
///
/// ```
/// use gridkv::hlc::{Timestamp, Version};
/// use gridkv::store::{ApplyOutcome, Condition, Store, StoreConfig, Write};
///
/// let store = Store::new(StoreConfig::default()).unwrap();
/// let v = |ms| Version { ts: Timestamp::new(ms, 0), ..Version::ZERO };
/// // SET NX read the key absent; another writer set it meanwhile.
/// store.apply(b"k", Write::set(v(2), b"theirs", None)).unwrap();
/// let nx = Condition::NoValueAfter(Condition::ABSENT);
/// let outcome = store.apply_if(b"k", Write::set(v(3), b"mine", None), nx).unwrap();
/// assert_eq!(outcome, ApplyOutcome::Conflict { current: v(2) });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Applies unless a live value newer than `order` is stored (tombstones
    /// and evicted stubs do not count): `SET NX` read the key absent.
    NoValueAfter((Version, Timestamp)),
    /// Applies unless anything newer than `order` is stored, a value or a
    /// tombstone: a write that replaces what was read and no other
    /// (`SET XX`, `SET GET`, `GETDEL`).
    Unchanged((Version, Timestamp)),
}

impl Condition {
    /// The order of a key the writer found unknown.
    pub const ABSENT: (Version, Timestamp) = (Version::ZERO, Timestamp::ZERO);

    /// Whether a key stored at `order`, live or not, lets the write apply.
    pub fn holds(&self, order: (Version, Timestamp), live: bool) -> bool {
        match *self {
            Condition::NoValueAfter(read) => !live || order <= read,
            Condition::Unchanged(read) => order <= read,
        }
    }
}

impl ApplyOutcome {
    /// Whether the write's version is now (or was already) stored.
    pub fn is_applied(&self) -> bool {
        matches!(self, ApplyOutcome::Applied { .. } | ApplyOutcome::Duplicate)
    }
}

/// A live value read from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The value (a reference-counted handle; reading copies nothing).
    pub value: Bytes,
    /// The version that wrote it.
    pub version: Version,
    /// Absolute expiry in ms, if any.
    pub expires_at: Option<u64>,
    /// When the expiry was last changed ([`Write::expiry_stamp`]).
    pub expiry_stamp: Timestamp,
    /// Whether `value` is a counter's state ([`counter`](super::counter));
    /// [`Item::user_value`] is then its integer.
    pub counter: bool,
}

impl Item {
    /// The write that recreates this item elsewhere (repair, expiry
    /// changes keep its version).
    pub fn write(&self) -> Write<'_> {
        let write = if self.counter {
            Write::counter(self.version, &self.value, self.expires_at)
        } else {
            Write::set(self.version, &self.value, self.expires_at)
        };
        write.with_expiry_stamp(self.expiry_stamp)
    }

    /// The value as a reader sees it: the bytes, or a counter's integer in
    /// decimal.
    pub fn user_value(self) -> Bytes {
        if !self.counter {
            return self.value;
        }
        match super::counter::Counter::decode(&self.value) {
            Ok(c) => Bytes::from(c.value().to_string()),
            Err(_) => self.value,
        }
    }
}

/// The result of a [`Store::get`](super::Store::get).
///
/// Replication needs more than "value or nothing": a tombstone's version
/// must win over older values elsewhere, and an evicted value is not a
/// missing one.
///
/// # Examples
///
/// ```
/// use gridkv::hlc::{Timestamp, Version};
/// use gridkv::store::{Lookup, Store, StoreConfig, Write};
///
/// let store = Store::new(StoreConfig::default()).unwrap();
/// assert_eq!(store.get(b"k").unwrap(), Lookup::Missing);
///
/// let v1 = Version { ts: Timestamp::new(1, 0), ..Version::ZERO };
/// store.apply(b"k", Write::set(v1, b"v", None)).unwrap();
/// assert_eq!(store.get(b"k").unwrap().value().unwrap().as_ref(), b"v");
///
/// let v2 = Version { ts: Timestamp::new(2, 0), ..Version::ZERO };
/// store.apply(b"k", Write::delete(v2)).unwrap();
/// let dead = store.get(b"k").unwrap();
/// assert_eq!(dead, Lookup::Dead { version: v2, expired_at: None, expiry_stamp: Timestamp::ZERO });
/// // A replica answering with this beats an older value elsewhere.
/// assert!(dead.version() > Some(v1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing is known about the key here.
    Missing,
    /// The key has a live value.
    Live(Item),
    /// The key was deleted or has expired, at this version. Repair sends
    /// it on with [`Write::tombstone`].
    Dead {
        /// Version of the delete, or of the write whose TTL ran out.
        version: Version,
        /// When the TTL ran out, if that is how the key died.
        expired_at: Option<u64>,
        /// The expiry stamp of the write whose TTL ran out (zero for a
        /// delete).
        expiry_stamp: Timestamp,
    },
    /// The key's value at this version was evicted for memory; other
    /// replicas may still hold it.
    Evicted {
        /// The evicted value's version.
        version: Version,
    },
    /// The key is absent here, but memory pressure made this store forget
    /// entries of its range up to this version (see
    /// [`Store`](super::Store)'s memory-pressure section): the key may have
    /// been deleted or overwritten at a version this store no longer
    /// knows. Such an answer is neither a miss nor a value: it cannot win a
    /// read or drive a repair.
    Forgotten {
        /// The highest version forgotten in the key's range.
        below: Version,
    },
}

impl Lookup {
    /// The live value, if any.
    pub fn value(&self) -> Option<&Bytes> {
        match self {
            Lookup::Live(item) => Some(&item.value),
            _ => None,
        }
    }

    /// The live value, if any, taken out of the lookup (no reference-count
    /// traffic, unlike `value().cloned()`).
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::store::{Store, StoreConfig, Write};
    ///
    /// let store = Store::new(StoreConfig::default())?;
    /// let v = Version { ts: Timestamp::new(1, 0), ..Version::ZERO };
    /// store.apply(b"k", Write::set(v, b"v", None))?;
    /// assert_eq!(store.get(b"k")?.into_value().as_deref(), Some(&b"v"[..]));
    /// assert_eq!(store.get(b"other")?.into_value(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_value(self) -> Option<Bytes> {
        match self {
            Lookup::Live(item) => Some(item.user_value()),
            _ => None,
        }
    }

    /// The version known here (`None` if the key is unknown).
    pub fn version(&self) -> Option<Version> {
        match self {
            Lookup::Missing | Lookup::Forgotten { .. } => None,
            Lookup::Live(item) => Some(item.version),
            Lookup::Dead { version, .. } | Lookup::Evicted { version } => Some(*version),
        }
    }

    /// The live item, if any, taken out of the lookup.
    pub fn into_item(self) -> Option<Item> {
        match self {
            Lookup::Live(item) => Some(item),
            _ => None,
        }
    }

    /// Version and expiry stamp of what is known here, for ordering
    /// answers (`None` if nothing is known). An evicted stub's stamp is
    /// not reported: it counts as zero.
    pub fn order(&self) -> Option<(Version, Timestamp)> {
        match self {
            Lookup::Missing | Lookup::Forgotten { .. } => None,
            Lookup::Live(item) => Some((item.version, item.expiry_stamp)),
            Lookup::Dead {
                version,
                expiry_stamp,
                ..
            } => Some((*version, *expiry_stamp)),
            Lookup::Evicted { version } => Some((*version, Timestamp::ZERO)),
        }
    }
}

/// The state of one key as enumerated by [`Store::scan`](super::Store::scan).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeEntry {
    /// The key.
    pub key: Bytes,
    /// Its ring position ([`key_hash`](crate::keyspace::key_hash)).
    pub hash: u64,
    /// The stored version.
    pub version: Version,
    /// When the expiry was last changed ([`Write::expiry_stamp`]).
    pub expiry_stamp: Timestamp,
    /// What is stored at that version.
    pub data: EntryData,
    /// Whether a value is a counter's state.
    pub counter: bool,
}

impl RangeEntry {
    /// The write that recreates this entry on another replica, or `None`
    /// for an evicted value (which another replica has to supply).
    pub fn write(&self) -> Option<Write<'_>> {
        let write = match &self.data {
            EntryData::Value { value, expires_at } if self.counter => {
                Write::counter(self.version, value, *expires_at)
            }
            EntryData::Value { value, expires_at } => Write::set(self.version, value, *expires_at),
            EntryData::Tombstone { expired_at } => Write::tombstone(self.version, *expired_at),
            EntryData::Evicted => return None,
        };
        Some(write.with_expiry_stamp(self.expiry_stamp))
    }
}

/// The payload of a [`RangeEntry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryData {
    /// A live value.
    Value {
        /// The value.
        value: Bytes,
        /// Absolute expiry in ms, if any.
        expires_at: Option<u64>,
    },
    /// A delete or an expiry; must travel (see [`RangeEntry::write`]) so
    /// that older values elsewhere cannot come back.
    Tombstone {
        /// When the TTL ran out, if that is how the key died.
        expired_at: Option<u64>,
    },
    /// The value was evicted here; another replica has to supply it.
    Evicted,
}

/// What a store forgot of one part of its range under memory pressure: the
/// highest version among the entries it dropped before their time (stubs of
/// evicted values, tombstones collected early), and until when that matters
/// (a grace period after the newest of them: by then every replica has
/// seen them, as for any tombstone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermark {
    /// The highest version forgotten.
    pub below: Version,
    /// Wall-clock ms after which it no longer matters.
    pub until_ms: u64,
}

impl Watermark {
    /// The watermark, if it still protects anything at `now`.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::hlc::Version;
    /// use gridkv::store::Watermark;
    ///
    /// let w = Watermark { below: Version::ZERO, until_ms: 5_000 };
    /// assert_eq!(w.active(4_999), Some(Version::ZERO));
    /// assert_eq!(w.active(5_000), None);
    /// ```
    pub fn active(&self, now: u64) -> Option<Version> {
        (self.until_ms > now).then_some(self.below)
    }

    /// The watermark covering both: the higher version, the later end.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::store::Watermark;
    ///
    /// let v = |ms| Version { ts: Timestamp::new(ms, 0), ..Version::ZERO };
    /// let a = Watermark { below: v(5), until_ms: 100 };
    /// let b = Watermark { below: v(3), until_ms: 200 };
    /// assert_eq!(a.merge(b), Watermark { below: v(5), until_ms: 200 });
    /// ```
    pub fn merge(self, other: Watermark) -> Watermark {
        Watermark {
            below: self.below.max(other.below),
            until_ms: self.until_ms.max(other.until_ms),
        }
    }

    pub(crate) fn raise(&mut self, below: Version, until_ms: u64, now: u64) {
        if self.until_ms <= now {
            *self = Watermark::default();
        }
        self.below = self.below.max(below);
        self.until_ms = self.until_ms.max(until_ms);
    }
}

/// Lifecycle of a stored key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Holds a value (which may have expired but not been swept yet).
    Live,
    /// The value was dropped for memory; key and version remain so that
    /// digests stay equal to other replicas' and reads know to look
    /// elsewhere.
    Evicted,
    /// Deleted by a write.
    Deleted,
    /// Turned into a tombstone by its TTL.
    Expired,
}

impl State {
    pub(crate) fn is_tombstone(self) -> bool {
        matches!(self, State::Deleted | State::Expired)
    }
}

/// One key in a shard.
///
/// Laid out in order (`repr(C)`) so that what a lookup and a version check
/// read — hash, key, version — shares the entry's first cache line. Short
/// keys live inside the entry ([`KeyBuf`]), so finding one costs no extra
/// cache miss.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Entry {
    pub hash: u64,
    pub key: KeyBuf,
    pub version: Version,
    /// See [`Write::expiry_stamp`].
    pub expiry_stamp: Timestamp,
    /// `Some` exactly when `state` is `Live`.
    pub value: Option<Bytes>,
    /// Absolute expiry in ms; 0 means none.
    pub expires_at: u64,
    /// Identity of this entry within its shard (stable while the key is
    /// stored), used by the eviction queue and the timer heap to recognise
    /// stale references.
    pub seq: u32,
    pub state: State,
    /// Whether `value` is a counter's state.
    pub counter: bool,
    /// Whether the entry is in its shard's eviction queue.
    pub queued: bool,
    /// CLOCK reference bit, set by reads under the shared lock.
    pub referenced: AtomicBool,
}

impl Entry {
    /// Bytes this entry counts against the memory budget.
    pub fn charge(&self) -> u64 {
        (ENTRY_OVERHEAD + self.key.len() + self.value.as_ref().map_or(0, Bytes::len)) as u64
    }

    pub fn expires_at(&self) -> Option<u64> {
        (self.expires_at != 0).then_some(self.expires_at)
    }

    /// When a tombstone may be collected: a grace period after its version
    /// was written, or after its expiry if that is later (an entry written
    /// long ago that expires now must still outlive older copies elsewhere).
    pub fn collect_at(&self, grace_ms: u64) -> u64 {
        let since = match self.state {
            State::Expired => self.version.ts.physical_ms().max(self.expires_at),
            _ => self.version.ts.physical_ms(),
        };
        since.saturating_add(grace_ms)
    }
}

#[inline]
pub(crate) fn expired(expires_at: u64, now_ms: u64) -> bool {
    expires_at != 0 && expires_at <= now_ms
}

/// Fixed per-entry bytes charged to the memory budget on top of key and
/// value: the entry itself, its hash-table slot and control byte, and its
/// share of the eviction queue and timer heap.
pub const ENTRY_OVERHEAD: usize = size_of::<Entry>() + 48;

/// A stored key: inline up to [`KeyBuf::INLINE`] bytes (most cache keys),
/// boxed beyond. 24 bytes either way. Only scans hand keys out, as copies.
#[derive(Clone)]
pub(crate) enum KeyBuf {
    Inline {
        len: u8,
        bytes: [u8; KeyBuf::INLINE],
    },
    Heap(Box<[u8]>),
}

impl KeyBuf {
    pub const INLINE: usize = 22;
}

impl From<&[u8]> for KeyBuf {
    fn from(key: &[u8]) -> Self {
        if key.len() <= Self::INLINE {
            let mut bytes = [0; Self::INLINE];
            bytes[..key.len()].copy_from_slice(key);
            KeyBuf::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            KeyBuf::Heap(key.into())
        }
    }
}

impl std::ops::Deref for KeyBuf {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            KeyBuf::Inline { len, bytes } => &bytes[..*len as usize],
            KeyBuf::Heap(b) => b,
        }
    }
}

impl fmt::Debug for KeyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", Bytes::copy_from_slice(self))
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn entries_stay_compact() {
        assert_eq!(std::mem::size_of::<KeyBuf>(), 24);
        assert_eq!(std::mem::size_of::<Entry>(), 112);
    }

    #[test]
    fn keys_round_trip_inline_and_boxed() {
        for len in [0, 1, KeyBuf::INLINE, KeyBuf::INLINE + 1, 1000] {
            let key: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let buf = KeyBuf::from(&key[..]);
            assert_eq!(&*buf, &key[..]);
            assert_eq!(matches!(buf, KeyBuf::Inline { .. }), len <= KeyBuf::INLINE);
        }
    }
}
