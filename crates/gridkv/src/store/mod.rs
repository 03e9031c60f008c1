//! The local store: sharded in-memory storage of versioned entries.
//!
//! Every node keeps its replicas here. The store knows nothing of the
//! network; it gives replication what it needs:
//!
//! - **Versioned writes.** [`Store::apply`] stores a set or delete only if
//!   its [`Version`] is newer than the stored one, atomically per key, and
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
//! [`StoreStats::tombstones_collected_early`]: memory stays bounded.
//!
//! # Memory pressure forgets values, never deletions or versions
//! Whatever memory pressure drops before its time — a stub dropped on its
//! second CLOCK visit, a tombstone collected early — raises a watermark
//! of its part of the range ([`Watermark`]: the highest version dropped,
//! until a grace period after it, as long as a tombstone would have lived;
//! 16 parts per shard). Under an active watermark:
//! - an absent key reads as [`Lookup::Forgotten`], never as missing: a
//!   coordinator does not let it win a read or count it as a reply below a
//!   newer answer, and the client sees a plain miss;
//! - nothing is installed for an absent key at a version not newer than
//!   the watermark, value or delete ([`ApplyOutcome::Forgotten`], not
//!   applied), and a live value over a tombstone under the watermark is
//!   refused too (an old delete held from before a newer one was
//!   forgotten): repair, hints, fills and anti-entropy cannot bring back a
//!   value that a forgotten delete or write overwrote, nor install an old
//!   tombstone that would read as the key's latest version, while a
//!   coordinator's new write re-stamps past it. A delete of a key the
//!   store holds is always taken.
//!
//! Fills carry the watermark of the range they copy
//! ([`Store::watermark`], [`Store::absorb_watermark`]). Counted in
//! [`StoreStats::forgotten`] and [`StoreStats::refused_forgotten`].
//!
//! # Time
//! Expiry uses a [`CoarseClock`]: reads cost one atomic load, and the owner
//! of the store calls [`Store::tick`] periodically and [`Store::maintain`]
//! to sweep expired values and collect tombstones (a node starts the task
//! in `maintenance` for both: a tick every 10 ms, a sweep every 100 ms).
//! Expiry reads are exact to within the tick period.
//!
//! # Files
//! This file holds the [`Store`] and its point reads and writes; beside it,
//! `config` ([`StoreConfig`]), `range` (scans and digests of ring ranges),
//! `maintenance` (the sweep and its task), `stats` (counters and the
//! audit), `entry` (what is stored per key, and [`Watermark`]), `shard`
//! (one shard's table, eviction queue, timers, digest leaves and
//! watermarks), `counters` (a shard's counters and gauges) and `clock`
//! ([`CoarseClock`]).

mod clock;
mod config;
pub mod counter;
mod counters;
mod entry;
pub(crate) mod maintenance;
mod range;
mod shard;
mod stats;

use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Arc;

use parking_lot::RwLock;

pub use clock::CoarseClock;
pub use config::StoreConfig;
pub use entry::{
    ApplyOutcome, Condition, EntryData, Item, Lookup, RangeEntry, Watermark, Write, WriteOp, ENTRY_OVERHEAD,
};
pub use maintenance::Maintenance;
pub use range::{RangeDigest, ScanBatch, ScanCursor};
pub use stats::{Audit, StoreStats};

use crate::config_error::ConfigError;
use crate::hlc::{Clock, SystemClock, Version};
use crate::keyspace::{key_hash, RingRange};
use entry::State;
use shard::{Evicted, Limits, Shard};

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
    /// The flush floor ([`Store::flush`]): nothing older is kept or taken.
    floor: parking_lot::Mutex<Version>,
    /// `floor`'s timestamp, read by every write without the lock.
    floor_ts: AtomicU64,
    /// Versions of conditional writes taken back lately ([`Store::retract`]),
    /// refused if they arrive again (a read repair that copied one before
    /// it was taken back), with when each was taken back; bounded.
    retracted: parking_lot::Mutex<Retracted>,
    /// `retracted.len()`, read by every write without the lock.
    retracted_len: AtomicUsize,
}

/// Most retracted versions a store remembers, and for how long (ms).
const RETRACTED_MAX: usize = 4096;
const RETRACTED_MS: u64 = 60_000;

/// Versions taken back lately, in the order they were (to expire them),
/// and as a set (to look one up in O(1) on every write while any is held).
#[derive(Debug, Default)]
struct Retracted {
    order: std::collections::VecDeque<(Version, u64)>,
    set: std::collections::HashSet<Version>,
}

impl Retracted {
    /// Drops what expired by `now` (and the oldest past the bound).
    fn trim(&mut self, now: u64, room: usize) {
        while let Some(&(v, at)) = self.order.front() {
            if at + RETRACTED_MS > now && self.order.len() + room <= RETRACTED_MAX {
                break;
            }
            self.order.pop_front();
            self.set.remove(&v);
        }
    }
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

impl Store {
    /// A store on the system clock.
    ///
    /// # Errors
    ///
    /// The config's [`ConfigError`].
    pub fn new(config: StoreConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A store whose expiry and tombstone collection follow `clock`.
    ///
    /// # Errors
    ///
    /// The config's [`ConfigError`].
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
            floor: parking_lot::Mutex::new(Version::ZERO),
            floor_ts: AtomicU64::new(0),
            retracted: parking_lot::Mutex::new(Retracted::default()),
            retracted_len: AtomicUsize::new(0),
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
                    expiry_stamp: e.expiry_stamp,
                    counter: e.counter,
                }));
            }
            None => match shard.forgotten(hash, now) {
                Some(below) => Lookup::Forgotten { below },
                None => Lookup::Missing,
            },
            Some(e) if e.state == State::Evicted && !entry::expired(e.expires_at, now) => {
                Lookup::Evicted { version: e.version }
            }
            Some(e) => Lookup::Dead {
                version: e.version,
                expired_at: e.expires_at(),
                expiry_stamp: e.expiry_stamp,
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
        self.apply_checked(key, write, None)
    }

    /// Stores `write` as [`Store::apply`] does, if `condition` holds for
    /// what is stored ([`ApplyOutcome::Conflict`] otherwise), checked and
    /// applied under one lock.
    pub fn apply_if(
        &self,
        key: &[u8],
        write: Write<'_>,
        condition: Condition,
    ) -> Result<ApplyOutcome, StoreError> {
        self.apply_checked(key, write, Some(condition))
    }

    fn apply_checked(
        &self,
        key: &[u8],
        write: Write<'_>,
        condition: Option<Condition>,
    ) -> Result<ApplyOutcome, StoreError> {
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
        // A write from before a flush is one the flush removed. Checked
        // under the shard's lock: a flush raises the floor before it
        // sweeps the shards, so a write it did not sweep sees the floor.
        if write.version.ts.as_u64() <= self.floor_ts.load(Acquire) {
            let floor = *self.floor.lock();
            if write.version < floor {
                return Ok(ApplyOutcome::Superseded { current: floor });
            }
        }
        // A conditional write taken back: never again.
        if self.retracted_len.load(Acquire) > 0 && self.was_retracted(write.version, now) {
            return Ok(ApplyOutcome::Conflict {
                current: write.version,
            });
        }
        let (outcome, delta) = shard.apply(hash, key, &write, condition, now);
        // Checked after every write, not only growing ones: a write that
        // frees tombstone bytes may still leave values over the budget.
        if self.charge(delta) > self.config.memory_budget {
            self.evict_from(&mut shard, now);
            drop(shard);
            self.evict_elsewhere(index, now);
        }
        Ok(outcome)
    }

    /// Drops `key`'s value if it is still at `version` (live, or an evicted
    /// stub); returns whether it did. For a value no other owner vouches
    /// for: every other owner answered that memory pressure made it forget
    /// the key's range above `version`, so this copy may be a deleted or
    /// overwritten value that nobody can tell this replica about any more.
    /// Kept, it would be served again once their watermarks lapse; dropped,
    /// the key is at worst a cache miss. Unlike other early drops it
    /// raises no watermark (that would make values other owners hold in
    /// the range look unvouched in turn).
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::store::{Lookup, Store, StoreConfig, Write};
    ///
    /// let store = Store::new(StoreConfig::default()).unwrap();
    /// let v1 = Version { ts: Timestamp::new(1_000, 0), ..Version::ZERO };
    /// let v2 = Version { ts: Timestamp::new(2_000, 0), ..Version::ZERO };
    /// store.apply(b"k", Write::set(v2, b"new", None)).unwrap();
    /// // Another version than the one held: nothing is dropped.
    /// assert!(!store.forget_unvouched(b"k", v1).unwrap());
    /// assert!(store.forget_unvouched(b"k", v2).unwrap());
    /// assert!(!matches!(store.get(b"k").unwrap(), Lookup::Live(_)));
    /// assert_eq!(store.stats().unvouched, 1);
    /// ```
    pub fn forget_unvouched(&self, key: &[u8], version: Version) -> Result<bool, StoreError> {
        self.check_key(key)?;
        let hash = key_hash(key);
        let freed = self.shards[self.shard_index(hash)]
            .0
            .write()
            .forget_unvouched(hash, key, version);
        if let Some(bytes) = freed {
            self.charge(-(bytes as i64));
        }
        Ok(freed.is_some())
    }

    /// Adds `delta` to the used bytes; returns the new total.
    /// Flushes the store: removes every entry older than `floor` (values
    /// and tombstones), and from now on refuses every write older than it
    /// (as superseded), so that nothing written before the flush comes
    /// back: not a late write, a hint, a repair or a fill. A floor at or
    /// below the current one changes nothing. Returns how many entries it
    /// removed.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::store::{ApplyOutcome, Lookup, Store, StoreConfig, Write};
    ///
    /// let store = Store::new(StoreConfig::default()).unwrap();
    /// let v = |ms| Version { ts: Timestamp::new(ms, 0), ..Version::ZERO };
    /// store.apply(b"old", Write::set(v(1), b"x", None)).unwrap();
    /// store.apply(b"new", Write::set(v(3), b"y", None)).unwrap();
    /// assert_eq!(store.flush(v(2)), 1);
    /// assert_eq!(store.get(b"old").unwrap(), Lookup::Missing);
    /// assert!(store.get(b"new").unwrap().value().is_some());
    /// // A late write from before the flush is refused.
    /// let late = store.apply(b"old", Write::set(v(1), b"x", None)).unwrap();
    /// assert_eq!(late, ApplyOutcome::Superseded { current: v(2) });
    /// assert_eq!(store.floor(), v(2));
    /// ```
    pub fn flush(&self, floor: Version) -> u64 {
        {
            let mut current = self.floor.lock();
            if floor <= *current {
                return 0;
            }
            *current = floor;
            self.floor_ts.store(floor.ts.as_u64(), Release);
        }
        let mut removed = 0;
        for shard in self.shards.iter() {
            let (bytes, entries) = shard.0.write().remove_older(floor);
            removed += entries;
            self.charge(-(bytes as i64));
        }
        removed
    }

    /// The flush floor: every entry older was removed, and every write
    /// older is refused (`Version::ZERO` if the store was never flushed).
    pub fn floor(&self) -> Version {
        *self.floor.lock()
    }

    /// Takes back a conditional write that lost (`SET NX` refused by
    /// most owners, applied by this one first): drops the value stored at
    /// `version`, if that is still what is stored, and puts `restore` in
    /// its place, the tombstone the writer read (so that a delete it
    /// replaced is not forgotten); returns whether it dropped it. A write
    /// that lost must not spread over the one that won.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::store::{Lookup, Store, StoreConfig, Write};
    ///
    /// let store = Store::new(StoreConfig::default()).unwrap();
    /// let v = |ms| Version { ts: Timestamp::new(ms, 0), ..Version::ZERO };
    /// store.apply(b"k", Write::delete(v(1))).unwrap();
    /// store.apply(b"k", Write::set(v(2), b"lost", None)).unwrap();
    /// assert!(store.retract(b"k", v(2), Some(Write::delete(v(1)))).unwrap());
    /// assert!(matches!(store.get(b"k").unwrap(), Lookup::Dead { version, .. } if version == v(1)));
    /// ```
    pub fn retract(
        &self,
        key: &[u8],
        version: Version,
        restore: Option<Write<'_>>,
    ) -> Result<bool, StoreError> {
        self.check_key(key)?;
        let hash = key_hash(key);
        let now = self.clock.now_ms();
        {
            let mut retracted = self.retracted.lock();
            retracted.trim(now, 1);
            if retracted.set.insert(version) {
                retracted.order.push_back((version, now));
            }
            self.retracted_len.store(retracted.order.len(), Release);
        }
        let delta = self.shards[self.shard_index(hash)].0.write().retract(
            hash,
            key,
            version,
            restore.as_ref(),
            now,
        );
        if let Some(delta) = delta {
            self.charge(delta);
        }
        Ok(delta.is_some())
    }

    /// Whether `version` was taken back in the last [`RETRACTED_MS`].
    fn was_retracted(&self, version: Version, now: u64) -> bool {
        let mut retracted = self.retracted.lock();
        retracted.trim(now, 0);
        self.retracted_len.store(retracted.order.len(), Release);
        retracted.set.contains(&version)
    }

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

    /// The highest active "forgotten below" watermark over the parts of
    /// `range` (see the module's memory-pressure section), if any: what a
    /// replica filled from this store's `range` must not accept either.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::keyspace::RingRange;
    /// use gridkv::store::{Store, StoreConfig};
    ///
    /// let store = Store::new(StoreConfig::default()).unwrap();
    /// assert_eq!(store.watermark(RingRange::FULL), None);
    /// ```
    pub fn watermark(&self, range: RingRange) -> Option<Watermark> {
        let now = self.clock.now_ms();
        self.shard_segments(range)
            .filter_map(|(i, seg)| self.shards[i].0.read().forgotten_in(seg, now))
            .reduce(Watermark::merge)
    }

    /// Raises the watermark of every part of `range` to `watermark` (a
    /// fill or anti-entropy pass from a replica that forgot entries of
    /// `range` carries its watermark along).
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::hlc::{Timestamp, Version};
    /// use gridkv::keyspace::RingRange;
    /// use gridkv::store::{Lookup, Store, StoreConfig, Watermark, Write};
    ///
    /// let store = Store::new(StoreConfig::default()).unwrap();
    /// let forgot = Version { ts: Timestamp::new(5_000, 0), ..Version::ZERO };
    /// let watermark = Watermark { below: forgot, until_ms: u64::MAX };
    /// store.absorb_watermark(RingRange::FULL, watermark);
    /// // Absent keys are now unknown, and older writes cannot create them.
    /// assert_eq!(store.get(b"k").unwrap(), Lookup::Forgotten { below: forgot });
    /// let older = Version { ts: Timestamp::new(4_000, 0), ..Version::ZERO };
    /// assert!(!store.apply(b"k", Write::set(older, b"v", None)).unwrap().is_applied());
    /// ```
    pub fn absorb_watermark(&self, range: RingRange, watermark: Watermark) {
        let now = self.clock.now_ms();
        if watermark.active(now).is_none() {
            return;
        }
        for (i, seg) in self.shard_segments(range) {
            self.shards[i].0.write().absorb_forgotten(seg, watermark, now);
        }
    }

    /// The shards `range` meets, each with the part of `range` it holds.
    fn shard_segments(&self, range: RingRange) -> impl Iterator<Item = (usize, (u64, u64))> + '_ {
        range.intervals().flat_map(move |(lo, hi)| {
            (self.shard_index(lo)..=self.shard_index(hi)).map(move |i| {
                (i, (lo.max(self.shard_start(i)), hi.min(self.shard_end(i))))
            })
        })
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
}

#[cfg(test)]
mod tests;
