//! Reading a ring range: [`Store::scan`] enumerates it in resumable
//! batches ([`ScanCursor`], [`ScanBatch`]) and [`Store::digest`] sums its
//! incrementally kept digest leaves ([`RangeDigest`]), which is what
//! filling and anti-entropy exchange.

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

fn cursor_of(last: Option<&RangeEntry>, rel: impl Fn(u64) -> u64) -> ScanCursor {
    let last = last.expect("a batch that stops early holds an entry");
    ScanCursor {
        rel: rel(last.hash),
        key: last.key.clone(),
    }
}
