//! One shard of the store: a hash table of entries plus the bookkeeping that
//! lives beside it (eviction queue, timers, digest leaves, counters).
//!
//! Everything here runs under the shard's lock, which the caller in
//! `store/mod.rs` holds; nothing here blocks, and every side structure is
//! kept proportional to the table.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use bytes::Bytes;
use hashbrown::HashTable;

use super::counters::{ReadCounters, WriteCounters};
use super::entry::{
    expired, ApplyOutcome, Condition, Entry, EntryData, RangeEntry, State, Watermark, Write,
    WriteOp,
};
use crate::hlc::Version;

mod counter_merge;
mod digest;
mod timer;

#[cfg(test)]
pub(crate) use digest::entry_digest;
pub(crate) use digest::Leaf;
use timer::{timer_for, Timer};

/// hashbrown takes its bucket index from the low bits of the hash and its
/// 7-bit tag from the top bits. All keys in a shard share the top bits of
/// their ring hash (that is how they were routed here), so the table gets a
/// remixed hash: multiplying by an odd constant keeps the low bits as random
/// as before and spreads every input bit into the top ones.
#[inline]
fn table_hash(hash: u64) -> u64 {
    hash.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Parts of a shard's range with a watermark of their own: finer parts
/// make fewer absent keys unknown, at 32 bytes each.
pub(crate) const FORGET_PARTS: usize = 16;

/// Result of one eviction step.
pub(crate) enum Evicted {
    /// Freed this many bytes.
    Freed(u64),
    /// Nothing evictable was found within the step budget.
    Nothing,
}

/// Per-shard limits, fixed at construction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Tombstone grace period in ms.
    pub grace_ms: u64,
    /// Bytes this shard's tombstones may hold before the oldest are
    /// collected early.
    pub tombstone_bytes: u64,
}

pub(crate) struct Shard {
    table: HashTable<Entry>,
    /// CLOCK queue of (hash, seq) of entries that may be evicted; an entry
    /// is in it at most once (`Entry::queued`).
    queue: VecDeque<(u64, u32)>,
    /// Min-heap of expiry deadlines.
    expiries: BinaryHeap<Reverse<Timer>>,
    /// Min-heap of tombstone collection deadlines: also the order in which
    /// tombstones are collected early when over their cap (oldest first).
    collections: BinaryHeap<Reverse<Timer>>,
    leaves: Box<[Leaf]>,
    /// Per part of the shard's range, what memory pressure made it forget.
    forgotten: [Watermark; FORGET_PARTS],
    leaf_shift: u32,
    limits: Limits,
    next_seq: u32,
    pub reads: ReadCounters,
    pub counts: WriteCounters,
}

impl Shard {
    /// A shard with `leaves` digest leaves; `leaf_bits` is the store-wide
    /// number of leaf bits (shard bits included).
    pub fn new(leaves: usize, leaf_bits: u32, limits: Limits) -> Self {
        Self {
            table: HashTable::new(),
            queue: VecDeque::new(),
            expiries: BinaryHeap::new(),
            collections: BinaryHeap::new(),
            leaves: vec![Leaf::default(); leaves].into_boxed_slice(),
            forgotten: [Watermark::default(); FORGET_PARTS],
            leaf_shift: 64 - leaf_bits,
            limits,
            next_seq: 0,
            reads: ReadCounters::default(),
            counts: WriteCounters::default(),
        }
    }

    /// Drops every entry (values, stubs and tombstones) and returns the
    /// bytes they were charged. Cumulative counters are kept; gauges and
    /// digests return to empty.
    pub fn clear(&mut self) -> u64 {
        let freed = self.counts.bytes;
        self.table = HashTable::new();
        self.queue = VecDeque::new();
        self.expiries = BinaryHeap::new();
        self.collections = BinaryHeap::new();
        self.leaves.iter_mut().for_each(|l| *l = Leaf::default());
        let c = &mut self.counts;
        c.bytes = 0;
        c.tombstone_bytes = 0;
        c.live = 0;
        c.evicted = 0;
        c.tombstones = 0;
        freed
    }

    #[inline]
    pub fn find(&self, hash: u64, key: &[u8]) -> Option<&Entry> {
        self.table
            .find(table_hash(hash), |e| e.hash == hash && *e.key == *key)
    }

    /// The part of the shard's range `hash` falls in (see [`Watermark`]).
    #[inline]
    fn part(&self, hash: u64) -> usize {
        let leaf = self.leaf_index(hash);
        leaf * FORGET_PARTS.min(self.leaves.len()) / self.leaves.len()
    }

    /// The watermark under which this shard may have forgotten `hash`'s
    /// key, if any is active at `now`.
    #[inline]
    pub fn forgotten(&self, hash: u64, now: u64) -> Option<Version> {
        self.forgotten[self.part(hash)].active(now)
    }

    /// Records that entry `e` is dropped before its time (see [`Watermark`]).
    fn forget(&mut self, e: &Entry, now: u64) {
        // As long as a tombstone would have protected it, counted from its
        // version or from its latest expiry change, whichever is later.
        let since_stamp = e.expiry_stamp.physical_ms().saturating_add(self.limits.grace_ms);
        let until = e.collect_at(self.limits.grace_ms).max(since_stamp);
        if until > now {
            let part = self.part(e.hash);
            self.forgotten[part].raise(e.version, until, now);
            self.counts.forgotten += 1;
        }
    }

    /// Raises the watermark of every part of the shard whose hashes meet
    /// `[lo, hi]` (a range filled from a replica that had forgotten
    /// entries of it: this one must not accept what that one would
    /// refuse).
    pub fn absorb_forgotten(&mut self, (lo, hi): (u64, u64), forgot: Watermark, now: u64) {
        let (first, last) = (self.part(lo), self.part(hi));
        for part in &mut self.forgotten[first..=last] {
            part.raise(forgot.below, forgot.until_ms, now);
        }
    }

    /// The highest active watermark over the parts meeting `[lo, hi]`.
    pub fn forgotten_in(&self, (lo, hi): (u64, u64), now: u64) -> Option<Watermark> {
        let (first, last) = (self.part(lo), self.part(hi));
        self.forgotten[first..=last]
            .iter()
            .filter(|f| f.active(now).is_some())
            .copied()
            .reduce(Watermark::merge)
    }

    #[inline]
    fn leaf_index(&self, hash: u64) -> usize {
        hash.checked_shr(self.leaf_shift).unwrap_or(0) as usize & (self.leaves.len() - 1)
    }

    /// Applies `write` if it is newer than what is stored. Returns the
    /// outcome and the change in charged bytes.
    pub fn apply(
        &mut self,
        hash: u64,
        key: &[u8],
        write: &Write<'_>,
        condition: Option<Condition>,
        now: u64,
    ) -> (ApplyOutcome, i64) {
        let (state, value, expires_at) = match write.op {
            // 0 encodes "no expiry", so an expiry at the epoch becomes 1 ms
            // after it: long past either way.
            WriteOp::Set { value, expires_at } => {
                (State::Live, Some(value), expires_at.map_or(0, |t| t.max(1)))
            }
            WriteOp::Delete => (State::Deleted, None, 0),
            WriteOp::Expired { expired_at } => (State::Expired, None, expired_at.max(1)),
        };
        let leaf = self.leaf_index(hash);
        let grace = self.limits.grace_ms;
        // Only a live value can bring something back over a tombstone
        // held under the watermark: deletes of a held key are taken.
        let refused_below = match write.op {
            WriteOp::Set { expires_at, .. } if !expired(expires_at.unwrap_or(0), now) => self
                .forgotten[self.part(hash)]
                .active(now)
                .filter(|below| write.version <= *below),
            _ => None,
        };
        // Nothing at all is installed for an absent key under the
        // watermark, not even a delete: an old tombstone there would read
        // as the key's latest version (`Dead`), while a newer write of it
        // may be what this part forgot, and the read would let an older
        // value on another owner win.
        let absent_below = self.forgotten[self.part(hash)]
            .active(now)
            .filter(|below| write.version <= *below);
        if let Some(condition) = condition {
            let stored = self
                .table
                .find(table_hash(hash), |e| e.hash == hash && *e.key == *key)
                // An evicted stub holds nothing to keep: a key every owner
                // evicted reads absent, and `SET NX` (or `SET ... GET`) must
                // then be able to store it.
                .filter(|e| e.state != State::Evicted)
                .map(|e| {
                    let live = e.state == State::Live && !expired(e.expires_at, now);
                    ((e.version, e.expiry_stamp), live)
                });
            if let Some((order, live)) = stored {
                if !condition.holds(order, live) {
                    self.counts.superseded += 1;
                    return (ApplyOutcome::Conflict { current: order.0 }, 0);
                }
            }
        }
        if let WriteOp::Expired { .. } = write.op {
            // The tombstone of a value this store holds at the same version
            // and stamp: the value's TTL ran out where the write came from
            // (a clock ahead of this one); it is expired here too.
            let same = self
                .table
                .find(table_hash(hash), |e| e.hash == hash && *e.key == *key)
                .filter(|e| {
                    (e.version, e.expiry_stamp) == write.order()
                        && matches!(e.state, State::Live | State::Evicted)
                })
                .map(|e| e.seq);
            if let Some(seq) = same {
                self.counts.duplicates += 1;
                return (ApplyOutcome::Duplicate, self.expire(hash, seq, now));
            }
        }
        if write.counter {
            if let Some(merged) = self.merge_counter(hash, key, write, expires_at, now) {
                return merged;
            }
        }
        let found = self
            .table
            .find_mut(table_hash(hash), |e| e.hash == hash && *e.key == *key);

        let (outcome, from, to, timer, enqueue) = match found {
            Some(e) if write.order() < (e.version, e.expiry_stamp) => {
                self.counts.superseded += 1;
                return (ApplyOutcome::Superseded { current: e.version }, 0);
            }
            Some(e) if write.order() == (e.version, e.expiry_stamp) => {
                // A duplicate delivery. One case changes something: a value
                // evicted here comes back from another replica (read repair
                // or anti-entropy) at the same version.
                self.counts.duplicates += 1;
                let (State::Evicted, Some(v)) = (e.state, value) else {
                    return (ApplyOutcome::Duplicate, 0);
                };
                let before = e.charge();
                self.leaves[leaf].remove(e);
                e.value = Some(Bytes::copy_from_slice(v));
                e.state = State::Live;
                e.counter = write.counter;
                self.leaves[leaf].add(e);
                let after = e.charge();
                let delta = self
                    .counts
                    .account(Some((State::Evicted, before)), Some((State::Live, after)));
                return (ApplyOutcome::Duplicate, delta);
            }
            // A tombstone under the watermark may be an old delete that came
            // in after a newer one was forgotten: it must not let the value
            // that newer delete removed in over it.
            Some(e)
                if e.state.is_tombstone()
                    && refused_below.is_some_and(|below| e.version <= below) =>
            {
                let below = refused_below.expect("checked");
                self.counts.superseded += 1;
                self.counts.refused_forgotten += 1;
                return (ApplyOutcome::Forgotten { below }, 0);
            }
            Some(e) => {
                let was_live =
                    matches!(e.state, State::Live | State::Evicted) && !expired(e.expires_at, now);
                let from = (e.state, e.charge());
                self.leaves[leaf].remove(e);
                e.version = write.version;
                e.expiry_stamp = write.expiry_stamp;
                e.value = value.map(Bytes::copy_from_slice);
                e.expires_at = expires_at;
                e.state = state;
                e.counter = write.counter && state == State::Live;
                e.referenced.store(false, Relaxed);
                self.leaves[leaf].add(e);
                let enqueue = state == State::Live && !e.queued;
                e.queued |= enqueue;
                (
                    ApplyOutcome::Applied { was_live },
                    Some(from),
                    (state, e.charge()),
                    timer_for(e, grace),
                    enqueue.then_some(e.seq),
                )
            }
            // The key is absent, but this part of the range forgot entries
            // up to `below`: the key may have been deleted or overwritten
            // there. Only a newer write may create it (a coordinator's
            // write refused here re-stamps past it).
            None if absent_below.is_some() => {
                let below = absent_below.expect("checked");
                self.counts.superseded += 1;
                self.counts.refused_forgotten += 1;
                return (ApplyOutcome::Forgotten { below }, 0);
            }
            None => {
                let seq = self.next_seq;
                self.next_seq = self.next_seq.wrapping_add(1);
                let e = Entry {
                    key: key.into(),
                    value: value.map(Bytes::copy_from_slice),
                    version: write.version,
                    expiry_stamp: write.expiry_stamp,
                    hash,
                    expires_at,
                    seq,
                    state,
                    counter: write.counter && state == State::Live,
                    queued: state == State::Live,
                    referenced: AtomicBool::new(false),
                };
                let to = (state, e.charge());
                let timer = timer_for(&e, grace);
                let enqueue = e.queued.then_some(seq);
                self.leaves[leaf].add(&e);
                self.table
                    .insert_unique(table_hash(hash), e, |e| table_hash(e.hash));
                (
                    ApplyOutcome::Applied { was_live: false },
                    None,
                    to,
                    timer,
                    enqueue,
                )
            }
        };
        self.counts.applied += 1;
        let mut delta = self.counts.account(from, Some(to));
        if let Some(seq) = enqueue {
            self.enqueue(hash, seq);
        }
        if let Some(t) = timer {
            self.push_timer(t);
        }
        if to.0.is_tombstone() {
            delta += self.cap_tombstones(now);
        }
        (outcome, delta)
    }

    /// Tombstones are never evicted, but they must not grow without bound
    /// either (a stream of deletes of keys never cached is ordinary cache
    /// invalidation): over the cap, the oldest are collected before their
    /// grace period ends, and counted. Returns the byte delta.
    fn cap_tombstones(&mut self, now: u64) -> i64 {
        let mut delta = 0;
        while self.counts.tombstone_bytes > self.limits.tombstone_bytes
            && self.counts.tombstones > 1
        {
            let Some(Reverse(t)) = self.collections.pop() else {
                break;
            };
            if self.timer_is_current(true, t) {
                delta -= self.remove(t.hash, t.seq, Some(now)) as i64;
                self.counts.tombstones_collected_early += 1;
            }
        }
        delta
    }

    fn enqueue(&mut self, hash: u64, seq: u32) {
        self.queue.push_back((hash, seq));
        // Entries removed while queued leave stale items; drop them once
        // they could make the queue outgrow the table.
        if self.queue.len() > 2 * self.table.len() + 64 {
            let table = &self.table;
            self.queue.retain(|&(h, s)| {
                table
                    .find(table_hash(h), |e| e.hash == h && e.seq == s)
                    .is_some_and(|e| e.queued)
            });
        }
    }

    fn push_timer(&mut self, (collect, t): (bool, Timer)) {
        let heap = if collect {
            &mut self.collections
        } else {
            &mut self.expiries
        };
        heap.push(Reverse(t));
        // Overwrites leave stale timers behind; rebuild from the table when
        // they dominate, so the heaps stay proportional to the table.
        if heap.len() > 2 * self.table.len() + 64 {
            let grace = self.limits.grace_ms;
            let current = self
                .table
                .iter()
                .filter_map(|e| timer_for(e, grace))
                .filter(|(c, _)| *c == collect)
                .map(|(_, t)| Reverse(t));
            *heap = current.collect();
        }
    }

    /// Whether timer `t` (an expiry or a collection) still matches its
    /// entry.
    fn timer_is_current(&self, collect: bool, t: Timer) -> bool {
        self.table
            .find(table_hash(t.hash), |e| e.hash == t.hash && e.seq == t.seq)
            .and_then(|e| timer_for(e, self.limits.grace_ms))
            == Some((collect, t))
    }

    /// Turns the live or evicted entry (hash, seq) into an expired
    /// tombstone. Returns the byte delta.
    fn expire(&mut self, hash: u64, seq: u32, now: u64) -> i64 {
        let grace = self.limits.grace_ms;
        let leaf = self.leaf_index(hash);
        let Some(e) = self
            .table
            .find_mut(table_hash(hash), |e| e.hash == hash && e.seq == seq)
        else {
            return 0;
        };
        let from = (e.state, e.charge());
        // A counter's digest includes its state, which goes.
        let counter = e.counter;
        if counter {
            self.leaves[leaf].remove(e);
            e.counter = false;
        }
        e.value = None;
        e.state = State::Expired;
        if counter {
            self.leaves[leaf].add(e);
        }
        let to = (e.state, e.charge());
        let timer = timer_for(e, grace);
        self.counts.expirations += 1;
        let mut delta = self.counts.account(Some(from), Some(to));
        if let Some(t) = timer {
            self.push_timer(t);
        }
        delta += self.cap_tombstones(now);
        delta
    }

    /// One CLOCK step sequence: walks at most `max_steps` queue items and
    /// evicts the first unreferenced one. A live value is evicted down to a
    /// stub (key and version stay, so digests still match other replicas);
    /// a stub that comes round again unreferenced is dropped entirely.
    /// Tombstones are never evicted, and an entry whose TTL has run out is
    /// expired (becomes a tombstone) rather than evicted.
    pub fn evict(&mut self, max_steps: usize, now: u64) -> Evicted {
        for _ in 0..max_steps {
            let Some((hash, seq)) = self.queue.pop_front() else {
                return Evicted::Nothing;
            };
            let Some(e) = self
                .table
                .find_mut(table_hash(hash), |e| e.hash == hash && e.seq == seq)
            else {
                continue;
            };
            e.queued = false;
            match e.state {
                State::Deleted | State::Expired => continue,
                _ if expired(e.expires_at, now) => {
                    let delta = self.expire(hash, seq, now);
                    return Evicted::Freed(delta.unsigned_abs());
                }
                _ if e.referenced.swap(false, Relaxed) => {
                    e.queued = true;
                    self.queue.push_back((hash, seq));
                }
                State::Live => {
                    let before = e.charge();
                    if e.counter {
                        // Its digest includes its state, which goes.
                        let leaf = e.hash.checked_shr(self.leaf_shift).unwrap_or(0) as usize
                            & (self.leaves.len() - 1);
                        self.leaves[leaf].remove(e);
                        e.counter = false;
                        e.value = None;
                        self.leaves[leaf].add(e);
                    }
                    e.value = None;
                    e.state = State::Evicted;
                    e.queued = true;
                    let after = e.charge();
                    self.queue.push_back((hash, seq));
                    self.counts.evictions += 1;
                    let delta = self
                        .counts
                        .account(Some((State::Live, before)), Some((State::Evicted, after)));
                    return Evicted::Freed(delta.unsigned_abs());
                }
                State::Evicted => {
                    let freed = self.remove(hash, seq, Some(now));
                    self.counts.stubs_dropped += 1;
                    return Evicted::Freed(freed);
                }
            }
        }
        Evicted::Nothing
    }

    /// Removes the entry (hash, seq), returning its charge. `forgetting`
    /// (the time now) when it is dropped before its time, for memory: its
    /// version then raises its part's watermark.
    fn remove(&mut self, hash: u64, seq: u32, forgetting: Option<u64>) -> u64 {
        let Ok(slot) = self
            .table
            .find_entry(table_hash(hash), |e| e.hash == hash && e.seq == seq)
        else {
            return 0;
        };
        let (e, _) = slot.remove();
        if let Some(now) = forgetting {
            self.forget(&e, now);
        }
        let leaf = self.leaf_index(hash);
        self.leaves[leaf].remove(&e);
        let charge = e.charge();
        self.counts.account(Some((e.state, charge)), None);
        charge
    }

    /// Drops `key`'s value (or its evicted stub) if it is still at
    /// `version`: no other owner vouches for it (see
    /// [`Store::forget_unvouched`](super::Store::forget_unvouched)). It
    /// raises no watermark: that would make this shard's other absent keys
    /// of the part unknown, and values other owners hold there unvouched in
    /// turn. Returns the bytes freed, `None` if the key is not at that
    /// version.
    pub fn forget_unvouched(
        &mut self,
        hash: u64,
        key: &[u8],
        version: Version,
    ) -> Option<u64> {
        let e = self.find(hash, key)?;
        if e.version != version || !matches!(e.state, State::Live | State::Evicted) {
            return None;
        }
        let seq = e.seq;
        self.counts.unvouched += 1;
        Some(self.remove(hash, seq, None))
    }

    /// Drops the value at `version`, if that is what is stored, and puts
    /// `restore` (a tombstone) in its place; the byte delta, `None` if the
    /// value was not there. See [`Store::retract`](super::Store::retract).
    pub fn retract(
        &mut self,
        hash: u64,
        key: &[u8],
        version: Version,
        restore: Option<&Write<'_>>,
        now: u64,
    ) -> Option<i64> {
        let e = self.find(hash, key)?;
        if e.version != version || !matches!(e.state, State::Live | State::Evicted) {
            return None;
        }
        let seq = e.seq;
        let freed = self.remove(hash, seq, None) as i64;
        let added = restore.map_or(0, |w| self.apply(hash, key, w, None, now).1);
        Some(added - freed)
    }

    /// Whether any timer is due at `now` (checked under the shared lock,
    /// so that idle maintenance never takes the exclusive one).
    pub fn has_due_timers(&self, now: u64) -> bool {
        let due =
            |h: &BinaryHeap<Reverse<Timer>>| h.peek().is_some_and(|Reverse(t)| t.deadline <= now);
        due(&self.expiries) || due(&self.collections)
    }

    /// Runs due timers (at most `max`): expires values, then collects
    /// tombstones. Returns the byte delta and whether due timers remain.
    pub fn run_timers(&mut self, now: u64, max: usize) -> (i64, bool) {
        let mut delta = 0i64;
        let mut budget = max;
        while budget > 0 {
            let Some(&Reverse(t)) = self.expiries.peek() else {
                break;
            };
            if t.deadline > now {
                break;
            }
            self.expiries.pop();
            budget -= 1;
            if self.timer_is_current(false, t) {
                delta += self.expire(t.hash, t.seq, now);
            }
        }
        while budget > 0 {
            let Some(&Reverse(t)) = self.collections.peek() else {
                break;
            };
            if t.deadline > now {
                break;
            }
            self.collections.pop();
            budget -= 1;
            if self.timer_is_current(true, t) {
                delta -= self.remove(t.hash, t.seq, None) as i64;
                self.counts.tombstones_collected += 1;
            }
        }
        (delta, self.has_due_timers(now))
    }

    /// Appends to `out`, in the scan order `(rel(hash), key)`, the first
    /// `room` entries with hash in `[lo, hi]` that sort after `after`.
    pub fn collect(
        &self,
        (lo, hi): (u64, u64),
        rel: impl Fn(u64) -> u64,
        after: Option<(u64, &[u8])>,
        now: u64,
        room: usize,
        out: &mut Vec<RangeEntry>,
    ) {
        // Chosen by reference, then copied: only the `room` entries that
        // go into the batch are copied out, not every entry past the
        // cursor (a fill's later batches would copy the rest of the shard
        // again each time).
        let mut found: Vec<&Entry> = self
            .table
            .iter()
            .filter(|e| lo <= e.hash && e.hash <= hi)
            .filter(|e| after.is_none_or(|(r, k)| (rel(e.hash), &e.key[..]) > (r, k)))
            .collect();
        let order =
            |a: &&Entry, b: &&Entry| (rel(a.hash), &a.key[..]).cmp(&(rel(b.hash), &b.key[..]));
        if found.len() > room {
            found.select_nth_unstable_by(room, order);
            found.truncate(room);
        }
        found.sort_unstable_by(order);
        for e in found {
            let data = match (e.state, &e.value) {
                (State::Live, Some(v)) if !expired(e.expires_at, now) => EntryData::Value {
                    value: v.clone(),
                    expires_at: e.expires_at(),
                },
                (State::Evicted, _) if !expired(e.expires_at, now) => EntryData::Evicted,
                _ => EntryData::Tombstone {
                    expired_at: e.expires_at(),
                },
            };
            out.push(RangeEntry {
                key: Bytes::copy_from_slice(&e.key),
                hash: e.hash,
                version: e.version,
                expiry_stamp: e.expiry_stamp,
                counter: e.counter && matches!(data, EntryData::Value { .. }),
                data,
            });
        }
    }

    /// Digest of the entries with hash in `[lo, hi]`, all within one leaf.
    pub fn partial_leaf(&self, lo: u64, hi: u64) -> Leaf {
        let mut leaf = Leaf::default();
        for e in self.table.iter().filter(|e| lo <= e.hash && e.hash <= hi) {
            leaf.add(e);
        }
        leaf
    }

    /// The incremental digest of a leaf (shard-local index).
    pub fn leaf(&self, index: usize) -> Leaf {
        self.leaves[index]
    }

    /// Recomputes the gauges and leaves from the table; returns the
    /// recounted gauges (counters left at zero) and the number of leaves
    /// that differ from the incremental ones.
    pub fn recount(&self) -> (WriteCounters, usize) {
        let mut c = WriteCounters::default();
        let mut leaves = vec![Leaf::default(); self.leaves.len()];
        for e in self.table.iter() {
            c.account(None, Some((e.state, e.charge())));
            leaves[self.leaf_index(e.hash)].add(e);
        }
        let differing = leaves
            .iter()
            .zip(self.leaves.iter())
            .filter(|(a, b)| a != b)
            .count();
        (c, differing)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Removes every entry (value, stub or tombstone) with hash in
    /// `[lo, hi]` whose version was written before `written_before`
    /// (physical ms; `u64::MAX` removes them all), keeping the digest
    /// leaves and gauges exact. Returns the bytes freed and the entries
    /// removed. The eviction queue and the timer heaps keep items for the
    /// removed entries (skipped when popped, as for any removed entry)
    /// until they would outgrow the table, then are rebuilt from it.
    pub fn remove_range(&mut self, lo: u64, hi: u64, written_before: u64) -> (u64, u64) {
        self.remove_where(|e| {
            lo <= e.hash && e.hash <= hi && e.version.ts.physical_ms() < written_before
        })
    }

    /// Removes every entry older than `floor` (a flush); (bytes, entries).
    pub fn remove_older(&mut self, floor: Version) -> (u64, u64) {
        self.remove_where(|e| e.version < floor)
    }

    /// Removes the entries `doomed` picks; (bytes freed, entries removed).
    fn remove_where(&mut self, doomed: impl Fn(&Entry) -> bool) -> (u64, u64) {
        let (mut freed, mut removed) = (0u64, 0u64);
        let leaf_shift = self.leaf_shift;
        let leaf_mask = self.leaves.len() - 1;
        let (leaves, counts) = (&mut self.leaves, &mut self.counts);
        self.table.retain(|e| {
            if !doomed(e) {
                return true;
            }
            let leaf = e.hash.checked_shr(leaf_shift).unwrap_or(0) as usize & leaf_mask;
            leaves[leaf].remove(e);
            let charge = e.charge();
            counts.account(Some((e.state, charge)), None);
            freed += charge;
            removed += 1;
            false
        });
        if removed > 0 {
            let bound = 2 * self.table.len() + 64;
            if self.queue.len() > bound {
                let table = &self.table;
                self.queue.retain(|&(h, s)| {
                    table
                        .find(table_hash(h), |e| e.hash == h && e.seq == s)
                        .is_some_and(|e| e.queued)
                });
            }
            let grace = self.limits.grace_ms;
            for (collect, heap) in [(false, &mut self.expiries), (true, &mut self.collections)] {
                if heap.len() > bound {
                    *heap = self
                        .table
                        .iter()
                        .filter_map(|e| timer_for(e, grace))
                        .filter(|(c, _)| *c == collect)
                        .map(|(_, t)| Reverse(t))
                        .collect();
                }
            }
        }
        (freed, removed)
    }
}
