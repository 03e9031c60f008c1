//! The local store: sharded in-memory storage of versioned entries.
//!
//! Every node keeps its replicas here. The store knows nothing of the
//! network; it gives replication what it needs:
//!
//! - **Versioned writes.** [`Store::apply`] stores a set or delete only if
//!   its [`Version`](crate::hlc::Version) is newer than the stored one, atomically per key, and
//!   says what happened ([`ApplyOutcome`]).
//! - **Tombstones.** Deletes, and values whose TTL ran out, leave a
//!   tombstone with their version, so an older copy elsewhere cannot come
//!   back through repair. Tombstones are collected after a grace period.
//! - **A memory budget** with exact accounting (every overwrite, delete,
//!   expiry and eviction returns its bytes) and CLOCK eviction over values.
//! - **Ring ranges.** Shards are chosen by the top bits of the key's ring
//!   hash, so a ring range maps to a known run of shards; [`Store::scan`]
//!   enumerates a range in resumable batches and [`Store::digest`] returns
//!   an incrementally maintained digest of it for anti-entropy.
//!
//! # Eviction policy
//! Over budget, the store evicts by CLOCK (second chance) over each shard's
//! insertion-ordered queue, starting with the shard being written: a value
//! read since its last visit gets another round. An evicted value leaves a
//! *stub* (key and version, no value) that keeps the digests equal to the
//! other replicas' — otherwise anti-entropy would copy the value straight
//! back and evict something else, forever. Reads of a stub report
//! [`Lookup::Evicted`] so the caller fetches the value from another replica,
//! and a value arriving at the stub's version refills it. A stub that
//! comes round again unreferenced is dropped entirely. A value whose TTL
//! has run out is expired (turned into a tombstone) rather than evicted.
//!
//! Tombstones are never evicted, but they are bounded: they may hold at
//! most [`StoreConfig::max_tombstone_percent`] of the budget (a quarter by
//! default; deletes of keys that were never cached are ordinary cache
//! invalidation). Beyond it, the oldest tombstones of the shard are
//! collected before their grace period ends and counted in
//! [`StoreStats::tombstones_collected_early`]: memory stays bounded, and
//! only those keys lose their protection against resurrection.
//!
//! # Time
//! Expiry uses a [`CoarseClock`]: reads cost one atomic load, and the owner
//! of the store calls [`Store::tick`] periodically (the node does so every
//! millisecond or so) and [`Store::maintain`] to sweep expired values and
//! collect tombstones. Expiry reads are exact to within the tick period.

mod clock;
mod entry;
mod shard;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;

pub use clock::CoarseClock;
pub use entry::{
    ApplyOutcome, EntryData, Item, Lookup, RangeEntry, Write, WriteOp, ENTRY_OVERHEAD,
};

use crate::hlc::{Clock, SystemClock};
use crate::keyspace::{key_hash, RingRange};
use entry::State;
use shard::{Evicted, Leaf, Limits, Shard};

/// Configuration of a [`Store`].
///
/// # Examples
///
/// ```
/// use gridkv::store::StoreConfig;
///
/// let config = StoreConfig {
///     memory_budget: 64 << 20,
///     ..StoreConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// assert!(StoreConfig { shards: 48, ..config }.validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Number of shards; a power of two from 1 to 65,536. Default 64.
    pub shards: usize,
    /// Longest accepted key in bytes. Default 64 KiB.
    pub max_key_len: usize,
    /// Longest accepted value in bytes. Default 4 MiB, well under the
    /// transport's 16 MiB frame limit.
    pub max_value_len: usize,
    /// Bytes of keys, values and per-entry overhead ([`ENTRY_OVERHEAD`])
    /// the store may hold before it evicts. Default 1 GiB.
    pub memory_budget: u64,
    /// How long tombstones are kept, counted from their version's time (or
    /// expiry). It bounds how long a replica may be away and still be
    /// repaired without resurrecting deleted keys. Default 1 hour.
    pub tombstone_grace: Duration,
    /// Share of `memory_budget`, in percent (1 to 100), that tombstones may
    /// hold. Beyond it the oldest tombstones are collected before their
    /// grace period ends (counted as `tombstones_collected_early`), which
    /// bounds memory under delete-heavy load at the price of weaker
    /// protection against resurrection for those keys. Default 25.
    pub max_tombstone_percent: u8,
    /// Number of digest leaves over the whole ring; a power of two, at
    /// least `shards` and at most 2^24. Default 16,384.
    pub digest_leaves: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            shards: 64,
            max_key_len: 64 << 10,
            max_value_len: 4 << 20,
            memory_budget: 1 << 30,
            tombstone_grace: Duration::from_secs(3600),
            max_tombstone_percent: 25,
            digest_leaves: 16_384,
        }
    }
}

/// A [`StoreConfig`] field that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid store config `{field}`: {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// Why it is invalid.
    pub reason: String,
}

impl StoreConfig {
    /// The longest accepted tombstone grace period: one year.
    pub const MAX_TOMBSTONE_GRACE: Duration = Duration::from_secs(365 * 24 * 3600);

    /// Checks every field, naming the first invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: String| Err(ConfigError { field, reason });
        if !self.shards.is_power_of_two() || self.shards > 1 << 16 {
            return err(
                "shards",
                format!("{} is not a power of two in 1..=65536", self.shards),
            );
        }
        if self.max_key_len == 0 {
            return err("max_key_len", "must be at least 1".into());
        }
        if self.memory_budget == 0 {
            return err("memory_budget", "must be at least 1 byte".into());
        }
        if self.tombstone_grace > Self::MAX_TOMBSTONE_GRACE {
            return err(
                "tombstone_grace",
                format!(
                    "{:?} is longer than the maximum, {:?}",
                    self.tombstone_grace,
                    Self::MAX_TOMBSTONE_GRACE
                ),
            );
        }
        if !(1..=100).contains(&self.max_tombstone_percent) {
            return err(
                "max_tombstone_percent",
                format!("{} is not in 1..=100", self.max_tombstone_percent),
            );
        }
        if !self.digest_leaves.is_power_of_two()
            || self.digest_leaves < self.shards
            || self.digest_leaves > 1 << 24
        {
            return err(
                "digest_leaves",
                format!(
                    "{} is not a power of two between shards ({}) and 2^24",
                    self.digest_leaves, self.shards
                ),
            );
        }
        Ok(())
    }
}

/// Bad input to the store. Nothing stored is touched when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Keys must not be empty.
    #[error("key is empty")]
    EmptyKey,
    /// The key is longer than the configured maximum.
    #[error("key is {len} bytes, the maximum is {max}")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The value is longer than the configured maximum.
    #[error("value is {len} bytes, the maximum is {max}")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// A point-in-time summary of a store's counters and gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Keys with an entry of any kind (values, stubs, tombstones).
    pub entries: u64,
    /// Entries holding a value (some may have expired but not been swept).
    pub live: u64,
    /// Stubs of evicted values.
    pub evicted: u64,
    /// Tombstones (deletes and expiries) awaiting collection.
    pub tombstones: u64,
    /// Bytes charged against the budget.
    pub bytes: u64,
    /// The budget.
    pub budget: u64,
    /// Lookups served.
    pub gets: u64,
    /// Lookups that found a live value.
    pub hits: u64,
    /// Writes that became the stored version.
    pub applied: u64,
    /// Writes whose version was already stored.
    pub duplicates: u64,
    /// Writes refused because a newer version was stored.
    pub superseded: u64,
    /// Values evicted for memory.
    pub evictions: u64,
    /// Stubs of evicted values dropped for memory.
    pub stubs_dropped: u64,
    /// Values turned into tombstones by their TTL.
    pub expirations: u64,
    /// Tombstones collected after their grace period.
    pub tombstones_collected: u64,
    /// Tombstones collected before their grace period ended, because
    /// tombstones reached `max_tombstone_percent` of the budget.
    pub tombstones_collected_early: u64,
}

/// Work done by one [`Store::maintain`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Bytes returned to the budget.
    pub freed: u64,
    /// Whether due work remains (call again soon).
    pub more: bool,
}

/// A digest of the entries on a ring range: equal ranges on two replicas
/// hold the same versions of the same keys (with overwhelming probability).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RangeDigest {
    /// Order-independent hash of (key position, version) over the range.
    pub hash: u64,
    /// Number of entries (values, stubs and tombstones) on the range.
    pub count: u64,
}

impl RangeDigest {
    fn add(&mut self, leaf: Leaf) {
        self.hash = self.hash.wrapping_add(leaf.sum);
        self.count += leaf.count;
    }
}

/// Where a [`Store::scan`] stopped; pass it back to continue.
///
/// A cursor can cross the network ([`ScanCursor::parts`],
/// [`ScanCursor::from_parts`]): a replica streaming a range answers batch by
/// batch, and the receiver sends the cursor back for the next one.
///
/// # Examples
///
/// ```
/// use gridkv::store::ScanCursor;
///
/// let c = ScanCursor::from_parts(7, bytes::Bytes::from_static(b"k"));
/// assert_eq!(c.parts(), (7, &b"k"[..]));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanCursor {
    rel: u64,
    key: Bytes,
}

impl ScanCursor {
    /// The cursor's position: the last entry's ring offset from the range's
    /// start, and its key.
    pub fn parts(&self) -> (u64, &[u8]) {
        (self.rel, &self.key)
    }

    /// Rebuilds a cursor from [`ScanCursor::parts`]. A cursor that does not
    /// come from a scan of the same range only skips or repeats entries; it
    /// cannot corrupt anything.
    pub fn from_parts(rel: u64, key: Bytes) -> Self {
        Self { rel, key }
    }
}

/// One batch of a [`Store::scan`].
#[derive(Clone, Debug, Default)]
pub struct ScanBatch {
    /// Entries in clockwise order from the range's start (ties by key).
    pub entries: Vec<RangeEntry>,
    /// Where to continue, or `None` when the range is exhausted.
    pub next: Option<ScanCursor>,
}

/// Bytes a [`RangeEntry`] counts towards a scan batch's byte limit.
fn scan_size(e: &RangeEntry) -> usize {
    let value = match &e.data {
        EntryData::Value { value, .. } => value.len(),
        _ => 0,
    };
    e.key.len() + value + 48
}

/// Result of [`Store::audit`]: incremental bookkeeping against a recount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Audit {
    /// Bytes the store-wide budget counter holds.
    pub accounted_bytes: u64,
    /// Bytes recounted entry by entry.
    pub recounted_bytes: u64,
    /// Whether per-state gauges match the recount.
    pub gauges_match: bool,
    /// Digest leaves whose incremental value differs from a recount.
    pub leaves_differing: usize,
}

impl Audit {
    /// Whether every incremental figure equals its recount.
    pub fn is_consistent(&self) -> bool {
        self.accounted_bytes == self.recounted_bytes
            && self.gauges_match
            && self.leaves_differing == 0
    }
}

/// Keeps each shard's lock on its own cache lines, so that threads working
/// on neighbouring shards do not slow each other down.
#[repr(align(128))]
struct Padded<T>(T);

/// The sharded in-memory store of one node. Shared by reference (`&self`
/// everywhere); wrap it in an `Arc` to share across tasks.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use gridkv::hlc::{Hlc, ManualClock};
/// use gridkv::store::{ApplyOutcome, Store, StoreConfig, Write};
/// use gridkv::{Generation, NodeId};
///
/// let clock = Arc::new(ManualClock::new(1_000_000));
/// let hlc = Hlc::new(NodeId::new("n1")?, Generation::new(1), clock.clone());
/// let store = Store::with_clock(StoreConfig::default(), clock.clone()).unwrap();
///
/// let v1 = hlc.new_version();
/// let v2 = hlc.new_version();
/// store.apply(b"k", Write::set(v2, b"new", None)).unwrap();
/// // The older write arrives late: it does not overwrite the newer one.
/// assert_eq!(
///     store.apply(b"k", Write::set(v1, b"old", None)).unwrap(),
///     ApplyOutcome::Superseded { current: v2 }
/// );
/// assert_eq!(store.get(b"k").unwrap().value().unwrap().as_ref(), b"new");
///
/// // A TTL is an absolute expiry in milliseconds.
/// store.apply(b"t", Write::set(hlc.new_version(), b"x", Some(1_000_500))).unwrap();
/// clock.set(1_000_500);
/// store.tick();
/// assert!(store.get(b"t").unwrap().value().is_none());
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
pub struct Store {
    shards: Box<[Padded<RwLock<Shard>>]>,
    /// `64 - log2(shards)`; `checked_shr` handles the one-shard case.
    shard_shift: u32,
    leaf_bits: u32,
    config: StoreConfig,
    clock: CoarseClock,
    used: AtomicU64,
    /// Next shard to evict from when the written shard has nothing left.
    evict_cursor: AtomicUsize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .field("used", &self.used.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// Queue items one eviction pass may visit before giving up on a shard.
const EVICT_STEPS: usize = 256;
/// Timers one [`Store::maintain`] call runs per shard, bounding lock holds.
const TIMERS_PER_SHARD: usize = 1024;

impl Store {
    /// A store on the system clock.
    pub fn new(config: StoreConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A store whose expiry and tombstone collection follow `clock`.
    pub fn with_clock(config: StoreConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        config.validate()?;
        let shard_bits = config.shards.trailing_zeros();
        let leaf_bits = config.digest_leaves.trailing_zeros();
        let per_shard = config.digest_leaves / config.shards;
        let limits = Limits {
            grace_ms: config.tombstone_grace.as_millis() as u64,
            tombstone_bytes: config.memory_budget / 100 * config.max_tombstone_percent as u64
                / config.shards as u64,
        };
        let shards = (0..config.shards)
            .map(|_| Padded(RwLock::new(Shard::new(per_shard, leaf_bits, limits))))
            .collect();
        Ok(Self {
            shards,
            shard_shift: 64 - shard_bits,
            leaf_bits,
            config,
            clock: CoarseClock::new(clock),
            used: AtomicU64::new(0),
            evict_cursor: AtomicUsize::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The coarse clock expiry is checked against.
    pub fn clock(&self) -> &CoarseClock {
        &self.clock
    }

    /// Refreshes the coarse clock from its source; returns the time.
    pub fn tick(&self) -> u64 {
        self.clock.tick()
    }

    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        hash.checked_shr(self.shard_shift).unwrap_or(0) as usize
    }

    /// First hash of shard `i`.
    fn shard_start(&self, i: usize) -> u64 {
        (i as u64).checked_shl(self.shard_shift).unwrap_or(0)
    }

    /// Last hash of shard `i`.
    fn shard_end(&self, i: usize) -> u64 {
        if i + 1 == self.shards.len() {
            u64::MAX
        } else {
            self.shard_start(i + 1) - 1
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), StoreError> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        if key.len() > self.config.max_key_len {
            return Err(StoreError::KeyTooLarge {
                len: key.len(),
                max: self.config.max_key_len,
            });
        }
        Ok(())
    }

    /// Looks `key` up. Values are returned without copying; expired values
    /// read as [`Lookup::Dead`].
    #[inline]
    pub fn get(&self, key: &[u8]) -> Result<Lookup, StoreError> {
        self.get_hashed(key, key_hash(key))
    }

    /// [`Store::get`] for a caller that has already hashed the key with
    /// [`key_hash`] (the coordinator's local reads), so it is hashed once.
    #[inline]
    pub(crate) fn get_hashed(&self, key: &[u8], hash: u64) -> Result<Lookup, StoreError> {
        self.check_key(key)?;
        let now = self.clock.now_ms();
        let shard = self.shards[self.shard_index(hash)].0.read();
        shard.reads.gets.fetch_add(1, Relaxed);
        let lookup = match shard.find(hash, key) {
            Some(e) if e.state == State::Live && !entry::expired(e.expires_at, now) => {
                // Only write the shared cache line when the bit changes.
                if !e.referenced.load(Relaxed) {
                    e.referenced.store(true, Relaxed);
                }
                return Ok(Lookup::Live(Item {
                    value: e.value.clone().unwrap_or_default(),
                    version: e.version,
                    expires_at: e.expires_at(),
                }));
            }
            None => Lookup::Missing,
            Some(e) if e.state == State::Evicted && !entry::expired(e.expires_at, now) => {
                Lookup::Evicted { version: e.version }
            }
            Some(e) => Lookup::Dead {
                version: e.version,
                expired_at: e.expires_at(),
            },
        };
        shard.reads.misses.fetch_add(1, Relaxed);
        Ok(lookup)
    }

    /// Stores `write` for `key` if its version is newer than the stored
    /// one. The key and value are copied once into the store.
    ///
    /// Invalid input is refused before anything is touched. If the write
    /// takes the store over its memory budget, values are evicted (see the
    /// module docs) before this returns.
    pub fn apply(&self, key: &[u8], write: Write<'_>) -> Result<ApplyOutcome, StoreError> {
        self.check_key(key)?;
        if let WriteOp::Set { value, .. } = write.op {
            if value.len() > self.config.max_value_len {
                return Err(StoreError::ValueTooLarge {
                    len: value.len(),
                    max: self.config.max_value_len,
                });
            }
        }
        let hash = key_hash(key);
        let now = self.clock.now_ms();
        let index = self.shard_index(hash);
        let mut shard = self.shards[index].0.write();
        let (outcome, delta) = shard.apply(hash, key, &write, now);
        // Checked after every write, not only growing ones: a write that
        // frees tombstone bytes may still leave values over the budget.
        if self.charge(delta) > self.config.memory_budget {
            self.evict_from(&mut shard, now);
            drop(shard);
            self.evict_elsewhere(index, now);
        }
        Ok(outcome)
    }

    /// Adds `delta` to the used bytes; returns the new total.
    fn charge(&self, delta: i64) -> u64 {
        if delta == 0 {
            // Same-size overwrites are common; skip the shared cache line.
            self.used.load(Relaxed)
        } else if delta > 0 {
            self.used.fetch_add(delta as u64, Relaxed) + delta as u64
        } else {
            self.used.fetch_sub(delta.unsigned_abs(), Relaxed) - delta.unsigned_abs()
        }
    }

    fn over_budget(&self) -> bool {
        self.used.load(Relaxed) > self.config.memory_budget
    }

    /// Evicts from one (locked) shard until under budget or it has nothing
    /// evictable left. Returns whether it freed anything.
    fn evict_from(&self, shard: &mut Shard, now: u64) -> bool {
        let mut freed_any = false;
        while self.over_budget() {
            match shard.evict(EVICT_STEPS, now) {
                Evicted::Freed(bytes) => {
                    self.charge(-(bytes as i64));
                    freed_any = true;
                }
                Evicted::Nothing => break,
            }
        }
        freed_any
    }

    /// Evicts round-robin from the other shards, one lock at a time, while
    /// still over budget; gives up after a full round that freed nothing.
    fn evict_elsewhere(&self, skip: usize, now: u64) {
        let n = self.shards.len();
        let mut idle = 0;
        while self.over_budget() && idle < n {
            let i = self.evict_cursor.fetch_add(1, Relaxed) % n;
            if i == skip {
                idle += 1;
                continue;
            }
            let freed = self.evict_from(&mut self.shards[i].0.write(), now);
            idle = if freed { 0 } else { idle + 1 };
        }
    }

    /// Expires values whose TTL has run out and collects tombstones past
    /// their grace period, as of the last [`Store::tick`]. Each shard runs a
    /// bounded number of timers per call, so foreground work is never held
    /// up for long; `more` says whether to call again.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use gridkv::hlc::{ManualClock, Timestamp, Version};
    /// use gridkv::store::{Lookup, Store, StoreConfig, Write};
    ///
    /// let clock = Arc::new(ManualClock::new(1_000));
    /// let config = StoreConfig { tombstone_grace: Duration::from_secs(1), ..StoreConfig::default() };
    /// let store = Store::with_clock(config, clock.clone()).unwrap();
    /// let v = Version { ts: Timestamp::new(1_000, 0), ..Version::ZERO };
    /// store.apply(b"k", Write::delete(v)).unwrap();
    ///
    /// clock.set(2_000); // the grace period has passed
    /// store.tick();
    /// while store.maintain().more {}
    /// assert_eq!(store.get(b"k").unwrap(), Lookup::Missing);
    /// ```
    pub fn maintain(&self) -> Maintenance {
        let now = self.clock.now_ms();
        let mut report = Maintenance::default();
        for shard in self.shards.iter() {
            if !shard.0.read().has_due_timers(now) {
                continue;
            }
            let (delta, more) = shard.0.write().run_timers(now, TIMERS_PER_SHARD);
            self.charge(delta);
            report.freed += delta.unsigned_abs();
            report.more |= more;
        }
        report
    }

    /// Enumerates the entries on `range` in clockwise order from its start,
    /// resuming after `after`, in batches of at most `max_entries` entries
    /// and about `max_bytes` bytes (always at least one entry).
    ///
    /// Each batch holds one shard lock at a time, scanning that shard.
    /// Entries present for the whole scan are returned exactly once; ones
    /// written meanwhile may or may not be.
    ///
    /// # Examples
    ///
    /// Streaming a range to another replica in bounded batches:
    ///
    /// ```
    /// use gridkv::keyspace::RingRange;
    /// use gridkv::store::{Store, StoreConfig, Write};
    /// use gridkv::Version;
    ///
    /// let source = Store::new(StoreConfig::default()).unwrap();
    /// let target = Store::new(StoreConfig::default()).unwrap();
    /// for i in 0..100u32 {
    ///     let key = format!("key-{i}");
    ///     source.apply(key.as_bytes(), Write::set(Version::ZERO, b"v", None)).unwrap();
    /// }
    /// let range = RingRange::FULL;
    /// let mut after = None;
    /// loop {
    ///     let batch = source.scan(range, after.as_ref(), 16, 64 << 10);
    ///     for entry in &batch.entries {
    ///         if let Some(write) = entry.write() {
    ///             target.apply(&entry.key, write).unwrap();
    ///         }
    ///     }
    ///     match batch.next {
    ///         Some(cursor) => after = Some(cursor),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(source.digest(range), target.digest(range));
    /// ```
    pub fn scan(
        &self,
        range: RingRange,
        after: Option<&ScanCursor>,
        max_entries: usize,
        max_bytes: usize,
    ) -> ScanBatch {
        let max_entries = max_entries.max(1);
        let base = range.start.wrapping_add(1);
        let rel = |h: u64| h.wrapping_sub(base);
        let after_key = after.map(|c| (c.rel, &c.key[..]));
        let now = self.clock.now_ms();
        let mut batch = ScanBatch::default();
        let mut bytes = 0usize;
        let mut found = Vec::new();
        for (lo, hi) in range.intervals() {
            for i in self.shard_index(lo)..=self.shard_index(hi) {
                let seg_lo = lo.max(self.shard_start(i));
                let seg_hi = hi.min(self.shard_end(i));
                if after_key.is_some_and(|(r, _)| rel(seg_hi) < r) {
                    continue;
                }
                found.clear();
                // The first `room` entries of the segment past the cursor,
                // in scan order.
                let room = max_entries - batch.entries.len();
                self.shards[i].0.read().collect(
                    (seg_lo, seg_hi),
                    rel,
                    after_key,
                    now,
                    room,
                    &mut found,
                );
                for e in found.drain(..) {
                    let size = scan_size(&e);
                    if !batch.entries.is_empty() && bytes + size > max_bytes {
                        batch.next = Some(cursor_of(batch.entries.last(), rel));
                        return batch;
                    }
                    bytes += size;
                    batch.entries.push(e);
                }
                if batch.entries.len() == max_entries {
                    batch.next = Some(cursor_of(batch.entries.last(), rel));
                    return batch;
                }
            }
        }
        batch
    }

    /// The digest of `range`, from incrementally maintained leaves; only
    /// the (at most four) leaves cut by the range's ends are recomputed, by
    /// scanning their shards.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::keyspace::{key_hash, RingRange};
    /// use gridkv::store::{Store, StoreConfig, Write};
    ///
    /// let a = Store::new(StoreConfig::default()).unwrap();
    /// let b = Store::new(StoreConfig::default()).unwrap();
    /// let v = Version { ts: Timestamp::new(1, 0), ..Version::ZERO };
    /// for s in [&a, &b] {
    ///     s.apply(b"x", Write::set(v, b"1", None)).unwrap();
    ///     s.apply(b"y", Write::set(v, b"2", None)).unwrap();
    /// }
    /// assert_eq!(a.digest(RingRange::FULL), b.digest(RingRange::FULL));
    ///
    /// // A newer write on one replica shows up in every range holding it.
    /// let newer = Version { ts: Timestamp::new(2, 0), ..Version::ZERO };
    /// b.apply(b"x", Write::set(newer, b"3", None)).unwrap();
    /// let h = key_hash(b"x");
    /// assert_ne!(a.digest(RingRange::new(h - 1, h)), b.digest(RingRange::new(h - 1, h)));
    /// assert_eq!(a.digest(RingRange::FULL).count, 2);
    /// ```
    pub fn digest(&self, range: RingRange) -> RangeDigest {
        let shift = 64 - self.leaf_bits;
        let per_shard = self.config.digest_leaves / self.shards.len();
        let mut digest = RangeDigest::default();
        for (lo, hi) in range.intervals() {
            let leaf_of = |h: u64| h.checked_shr(shift).unwrap_or(0) as usize;
            let (first, last) = (leaf_of(lo), leaf_of(hi));
            let mut leaf = first;
            while leaf <= last {
                let shard_index = leaf / per_shard;
                let shard = self.shards[shard_index].0.read();
                let shard_last = last.min((shard_index + 1) * per_shard - 1);
                while leaf <= shard_last {
                    let leaf_lo = (leaf as u64).checked_shl(shift).unwrap_or(0);
                    let leaf_hi = leaf_lo | (u64::MAX >> self.leaf_bits);
                    if lo <= leaf_lo && leaf_hi <= hi {
                        digest.add(shard.leaf(leaf % per_shard));
                    } else {
                        digest.add(shard.partial_leaf(lo.max(leaf_lo), hi.min(leaf_hi)));
                    }
                    leaf += 1;
                }
            }
        }
        digest
    }

    /// Drops every entry: values, stubs of evicted values and tombstones.
    /// For a node whose data can no longer be trusted (it was taken off the
    /// ring while away, so keys deleted meanwhile may have had their
    /// tombstones collected): it refills from the other owners instead.
    /// Cumulative counters (gets, applied, ...) are kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use gridkv::hlc::{Hlc, SystemClock};
    /// use gridkv::store::{Store, StoreConfig, Write};
    /// use gridkv::{Generation, NodeId};
    ///
    /// let store = Store::new(StoreConfig::default())?;
    /// let hlc = Hlc::new(NodeId::new("n")?, Generation::now(), Arc::new(SystemClock));
    /// store.apply(b"k", Write::set(hlc.new_version(), b"v", None))?;
    /// store.clear();
    /// assert!(store.get(b"k")?.value().is_none());
    /// assert_eq!(store.stats().bytes, 0);
    /// assert!(store.audit().is_consistent());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let freed = shard.0.write().clear();
            self.used.fetch_sub(freed, Relaxed);
        }
    }

    /// Counters and gauges, summed over shards.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::store::{Store, StoreConfig, Write};
    /// use gridkv::Version;
    ///
    /// let store = Store::new(StoreConfig::default()).unwrap();
    /// store.apply(b"k", Write::set(Version::ZERO, b"v", None)).unwrap();
    /// store.get(b"k").unwrap();
    /// store.get(b"absent").unwrap();
    /// let stats = store.stats();
    /// assert_eq!((stats.entries, stats.live, stats.gets, stats.hits), (1, 1, 2, 1));
    /// assert_eq!(stats.bytes, store.used_bytes());
    /// assert!(store.audit().is_consistent());
    /// ```
    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats {
            budget: self.config.memory_budget,
            ..StoreStats::default()
        };
        for shard in self.shards.iter() {
            let shard = shard.0.read();
            let c = shard.counts;
            s.entries += shard.len() as u64;
            s.live += c.live;
            s.evicted += c.evicted;
            s.tombstones += c.tombstones;
            s.bytes += c.bytes;
            // Misses first: a lookup counts its get before its miss, so
            // this order never sees more misses than gets.
            let misses = shard.reads.misses.load(Relaxed);
            let gets = shard.reads.gets.load(Relaxed);
            s.gets += gets;
            s.hits += gets.saturating_sub(misses);
            s.applied += c.applied;
            s.duplicates += c.duplicates;
            s.superseded += c.superseded;
            s.evictions += c.evictions;
            s.stubs_dropped += c.stubs_dropped;
            s.expirations += c.expirations;
            s.tombstones_collected += c.tombstones_collected;
            s.tombstones_collected_early += c.tombstones_collected_early;
        }
        s
    }

    /// Bytes currently charged against the memory budget.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Relaxed)
    }

    /// Recounts every entry and digest leaf and compares them with the
    /// incrementally kept figures. O(entries); for tests and diagnostics.
    /// Run it while no writes are in flight, or figures may differ by the
    /// writes that raced it.
    pub fn audit(&self) -> Audit {
        let mut recounted = 0;
        let mut gauges_match = true;
        let mut leaves_differing = 0;
        for shard in self.shards.iter() {
            let shard = shard.0.read();
            let (c, differing) = shard.recount();
            recounted += c.bytes;
            let gauges = |c: &shard::WriteCounters| {
                (c.bytes, c.tombstone_bytes, c.live, c.evicted, c.tombstones)
            };
            gauges_match &= gauges(&c) == gauges(&shard.counts);
            leaves_differing += differing;
        }
        Audit {
            accounted_bytes: self.used_bytes(),
            recounted_bytes: recounted,
            gauges_match,
            leaves_differing,
        }
    }
}

fn cursor_of(last: Option<&RangeEntry>, rel: impl Fn(u64) -> u64) -> ScanCursor {
    let last = last.expect("a batch that stops early holds an entry");
    ScanCursor {
        rel: rel(last.hash),
        key: last.key.clone(),
    }
}

#[cfg(test)]
mod tests;
