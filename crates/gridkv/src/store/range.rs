//! Ring ranges of the store: [`Store::scan`] enumerates one in resumable
//! batches ([`ScanCursor`], [`ScanBatch`]) and [`Store::digest`] sums its
//! incrementally kept digest leaves ([`RangeDigest`]), which is what
//! filling and anti-entropy exchange; `Store::remove_range` drops one (a
//! range this node no longer owns, or held before it regains it).

use bytes::Bytes;

use super::shard::Leaf;
use super::{EntryData, RangeEntry, Store};
use crate::keyspace::RingRange;

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

impl Store {
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
    /// use gridkv::hlc::Version;
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
}

/// What [`Store::remove_range`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeRemoval {
    /// Entries removed: values, stubs and tombstones.
    pub(crate) entries: u64,
    /// Bytes they were charged, returned to the budget.
    pub(crate) bytes: u64,
}

impl Store {
    /// Removes the entries on `range` (values, stubs of evicted values and
    /// tombstones) whose version was written before `written_before` (the
    /// physical part of its timestamp, in ms; `u64::MAX` removes them all),
    /// returning their memory: what this node holds on a range it no
    /// longer owns once the owners hold it, or held before it regains the
    /// range. Each shard the range crosses is scanned under its lock;
    /// digests, gauges and the memory charge stay exact.
    pub(crate) fn remove_range(&self, range: RingRange, written_before: u64) -> RangeRemoval {
        let mut removal = RangeRemoval::default();
        for (lo, hi) in range.intervals() {
            for i in self.shard_index(lo)..=self.shard_index(hi) {
                let seg_lo = lo.max(self.shard_start(i));
                let seg_hi = hi.min(self.shard_end(i));
                let (freed, removed) =
                    self.shards[i]
                        .0
                        .write()
                        .remove_range(seg_lo, seg_hi, written_before);
                if removed > 0 {
                    self.charge(-(freed as i64));
                    removal.entries += removed;
                    removal.bytes += freed;
                }
            }
        }
        removal
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
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::hlc::{ManualClock, Timestamp, Version};
    use crate::id::Generation;
    use crate::keyspace::key_hash;
    use crate::store::{Lookup, StoreConfig, Write};

    const T0: u64 = 1_700_000_000_000;

    fn version(ms: u64) -> Version {
        Version {
            ts: Timestamp::new(ms, 0),
            writer: 3,
            generation: Generation::new(1),
        }
    }

    /// Seeds to run: `GRIDKV_SEED` replays one; otherwise `GRIDKV_SIM_SEEDS`
    /// (default `default`) seeds from a fixed base.
    fn for_seeds(default: u64, f: impl Fn(u64)) {
        let seeds: Vec<u64> = match std::env::var("GRIDKV_SEED") {
            Ok(seed) => vec![seed.parse().expect("GRIDKV_SEED is a u64")],
            Err(_) => {
                let n = std::env::var("GRIDKV_SIM_SEEDS")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(default);
                (0..n).map(|i| 0x4a4e_0000 + i).collect()
            }
        };
        for seed in seeds {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(seed)));
            if let Err(e) = result {
                eprintln!("failed with seed {seed}; replay with GRIDKV_SEED={seed}");
                std::panic::resume_unwind(e);
            }
        }
    }

    /// A store of 16 shards on a small budget holding, from `seed`, live
    /// values, stubs of evicted ones, tombstones and values with a TTL,
    /// written at T0 + i ms for key i. Returns the store, its clock and the
    /// keys.
    fn populated(seed: u64) -> (Store, Arc<ManualClock>, Vec<Vec<u8>>) {
        let clock = Arc::new(ManualClock::new(T0 + 10_000));
        let config = StoreConfig {
            shards: 16,
            digest_leaves: 64,
            memory_budget: 256 << 10,
            tombstone_grace: Duration::from_secs(60),
            ..StoreConfig::default()
        };
        let store = Store::with_clock(config, clock.clone()).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let keys: Vec<Vec<u8>> = (0..3000).map(|i| format!("key-{i}").into_bytes()).collect();
        for (i, key) in keys.iter().enumerate() {
            let v = version(T0 + i as u64);
            let write = match rng.random_range(0..10) {
                0..=1 => Write::delete(v),
                2 => Write::set(v, b"ttl", Some(T0 + 20_000 + rng.random_range(0..5_000))),
                _ => Write::set(v, &[7u8; 200], None),
            };
            store.apply(key, write).unwrap();
        }
        (store, clock, keys)
    }

    fn random_range(rng: &mut StdRng) -> RingRange {
        match rng.random_range(0..4) {
            0 => RingRange::FULL,
            1 => {
                // Wrapping.
                let start = u64::MAX - rng.random_range(0..u64::MAX / 4);
                RingRange::new(start, rng.random_range(0..u64::MAX / 4))
            }
            _ => RingRange::new(rng.random(), rng.random()),
        }
    }

    #[test]
    fn removing_a_range_drops_exactly_its_entries_and_returns_their_memory() {
        for_seeds(24, |seed| {
            let (store, clock, keys) = populated(seed);
            let mut rng = StdRng::seed_from_u64(seed ^ 0xfeed);
            let range = random_range(&mut rng);
            let stubs = store.stats().evicted;
            assert!(stubs > 0, "the budget evicted some values ({seed})");
            let before: Vec<Lookup> = keys.iter().map(|k| store.get(k).unwrap()).collect();
            let (used, stats) = (store.used_bytes(), store.stats());
            let outside = |r: RingRange| {
                // The complement of `r`, unless `r` is the whole ring.
                (!r.is_full()).then(|| RingRange::new(r.end, r.start))
            };
            let kept_digest = outside(range).map(|r| store.digest(r));
            let in_range = keys
                .iter()
                .zip(&before)
                .filter(|(k, was)| range.contains(key_hash(k)) && was.version().is_some())
                .count() as u64;

            let removal = store.remove_range(range, u64::MAX);

            assert_eq!(removal.entries, in_range);
            assert_eq!(store.used_bytes(), used - removal.bytes);
            let after = store.stats();
            assert_eq!(
                after.live + after.evicted + after.tombstones + removal.entries,
                stats.live + stats.evicted + stats.tombstones
            );
            assert_eq!(store.digest(range), RangeDigest::default());
            assert_eq!(outside(range).map(|r| store.digest(r)), kept_digest);
            assert!(store.audit().is_consistent(), "{:?}", store.audit());
            for (key, was) in keys.iter().zip(&before) {
                let now = store.get(key).unwrap();
                if range.contains(key_hash(key)) {
                    assert_eq!(now.version(), None, "{key:?} kept");
                } else {
                    assert_eq!(&now, was, "{key:?} changed");
                }
            }
            // The queue and timers of the removed entries are skipped:
            // expiry, collection and eviction go on exactly.
            clock.set(T0 + 30_000);
            store.tick();
            while store.maintain().more {}
            assert!(store.audit().is_consistent(), "{:?}", store.audit());
            for (i, key) in keys.iter().enumerate() {
                // Older than what was there: accepted, as for a key never seen.
                store
                    .apply(key, Write::set(version(T0 - 1 - i as u64), &[1u8; 300], None))
                    .unwrap();
            }
            clock.set(T0 + 200_000);
            store.tick();
            while store.maintain().more {}
            assert!(store.audit().is_consistent(), "{:?}", store.audit());
            assert!(store.used_bytes() <= store.config().memory_budget);
        });
    }

    #[test]
    fn removing_what_was_written_before_a_time_keeps_newer_writes() {
        for_seeds(8, |seed| {
            let (store, _clock, keys) = populated(seed);
            let mut rng = StdRng::seed_from_u64(seed ^ 0xbeef);
            let range = random_range(&mut rng);
            let cut = T0 + rng.random_range(0..3000);
            let before: Vec<Lookup> = keys.iter().map(|k| store.get(k).unwrap()).collect();
            let used = store.used_bytes();
            let removal = store.remove_range(range, cut);
            let mut removed = 0;
            for (i, (key, was)) in keys.iter().zip(&before).enumerate() {
                let now = store.get(key).unwrap();
                if range.contains(key_hash(key)) && T0 + (i as u64) < cut {
                    // Absent (under a watermark if the store forgot some).
                    assert_eq!(now.version(), None, "{key:?} kept");
                    removed += u64::from(was.version().is_some());
                } else {
                    assert_eq!(&now, was, "{key:?} changed");
                }
            }
            assert_eq!(removal.entries, removed);
            assert_eq!(store.used_bytes(), used - removal.bytes);
            assert!(store.audit().is_consistent(), "{:?}", store.audit());
        });
    }
}
