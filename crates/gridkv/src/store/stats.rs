//! What a store reports about itself: the [`StoreStats`] snapshot summed
//! over shards, and the [`Audit`] of its incremental bookkeeping against a
//! recount.

use std::sync::atomic::Ordering::Relaxed;

use super::{counters, Store};

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
    /// Entries dropped before their time (stubs of evicted values,
    /// tombstones collected early) whose version raised their range's
    /// "forgotten below" watermark.
    pub forgotten: u64,
    /// Writes of absent keys refused because they were not newer than
    /// their range's watermark (fills, repairs, hints and anti-entropy that
    /// could otherwise bring back what was forgotten).
    pub refused_forgotten: u64,
    /// Values dropped because every other owner had forgotten the key's
    /// range above them (`Store::forget_unvouched`):
    /// what may be a deleted or overwritten value that nobody can tell
    /// this replica about any more.
    pub unvouched: u64,
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

impl Store {
    /// Counters and gauges, summed over shards.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::store::{Store, StoreConfig, Write};
    /// use gridkv::hlc::Version;
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
            s.forgotten += c.forgotten;
            s.refused_forgotten += c.refused_forgotten;
            s.unvouched += c.unvouched;
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
            let gauges = |c: &counters::WriteCounters| {
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
