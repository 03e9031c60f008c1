//! One shard of the store: a hash table of entries plus the bookkeeping that
//! lives beside it (eviction queue, timers, digest leaves, counters).
//!
//! Everything here runs under the shard's lock, which the caller in
//! `store/mod.rs` holds; nothing here blocks, and every side structure is
//! kept proportional to the table.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use super::entry::{expired, ApplyOutcome, Entry, EntryData, RangeEntry, State, Write, WriteOp};
use crate::hlc::Version;

/// hashbrown takes its bucket index from the low bits of the hash and its
/// 7-bit tag from the top bits. All keys in a shard share the top bits of
/// their ring hash (that is how they were routed here), so the table gets a
/// remixed hash: multiplying by an odd constant keeps the low bits as random
/// as before and spreads every input bit into the top ones.
#[inline]
fn table_hash(hash: u64) -> u64 {
    hash.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A key's contribution to its digest leaf. A version identifies one write,
/// so (ring position, version) identifies the stored state without hashing
/// the value.
#[inline]
pub(crate) fn entry_digest(hash: u64, version: &Version) -> u64 {
    let mut buf = [0u8; 32];
    buf[..8].copy_from_slice(&hash.to_le_bytes());
    buf[8..16].copy_from_slice(&version.ts.as_u64().to_le_bytes());
    buf[16..24].copy_from_slice(&version.writer.to_le_bytes());
    buf[24..].copy_from_slice(&version.generation.get().to_le_bytes());
    xxh3_64(&buf)
}

/// Digest of one leaf: an order-independent sum, so it updates in O(1)
/// when an entry is added, replaced or removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub sum: u64,
    pub count: u64,
}

impl Leaf {
    fn add(&mut self, hash: u64, version: &Version) {
        self.sum = self.sum.wrapping_add(entry_digest(hash, version));
        self.count += 1;
    }

    fn remove(&mut self, hash: u64, version: &Version) {
        self.sum = self.sum.wrapping_sub(entry_digest(hash, version));
        self.count -= 1;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// Turn a value whose TTL ran out into a tombstone.
    Expire,
    /// Remove a tombstone whose grace period is over.
    Collect,
}

/// A pending deadline. A timer is stale when the entry it names (by hash and
/// seq) no longer implies it; stale timers are dropped when popped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    deadline: u64,
    hash: u64,
    seq: u32,
    kind: TimerKind,
}

/// The timer an entry in its current state needs, if any.
fn timer_for(e: &Entry, grace_ms: u64) -> Option<Timer> {
    let (kind, deadline) = match e.state {
        State::Live | State::Evicted if e.expires_at != 0 => (TimerKind::Expire, e.expires_at),
        State::Live | State::Evicted => return None,
        State::Deleted | State::Expired => (TimerKind::Collect, e.collect_at(grace_ms)),
    };
    Some(Timer {
        deadline,
        hash: e.hash,
        seq: e.seq,
        kind,
    })
}

/// Counters updated under the shared (read) lock, hence atomics.
#[derive(Debug, Default)]
/// Only one counter is touched per lookup: hits are derived as gets minus
/// misses, because most lookups of a cache hit.
pub(crate) struct ReadCounters {
    pub gets: AtomicU64,
    pub misses: AtomicU64,
}

/// Counters and gauges updated under the exclusive lock.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WriteCounters {
    pub applied: u64,
    pub duplicates: u64,
    pub superseded: u64,
    pub evictions: u64,
    pub stubs_dropped: u64,
    pub expirations: u64,
    pub tombstones_collected: u64,
    pub bytes: u64,
    pub live: u64,
    pub evicted: u64,
    pub tombstones: u64,
}

impl WriteCounters {
    fn state_gauge(&mut self, state: State) -> &mut u64 {
        match state {
            State::Live => &mut self.live,
            State::Evicted => &mut self.evicted,
            State::Deleted | State::Expired => &mut self.tombstones,
        }
    }

    /// Moves one entry between state gauges and applies a byte delta.
    fn transition(&mut self, from: Option<State>, to: Option<State>, bytes: i64) {
        if let Some(s) = from {
            *self.state_gauge(s) -= 1;
        }
        if let Some(s) = to {
            *self.state_gauge(s) += 1;
        }
        self.bytes = self.bytes.wrapping_add_signed(bytes);
    }
}

/// Result of one eviction step.
pub(crate) enum Evicted {
    /// Freed this many bytes.
    Freed(u64),
    /// Nothing evictable was found within the step budget.
    Nothing,
}

pub(crate) struct Shard {
    table: HashTable<Entry>,
    /// CLOCK queue of (hash, seq) of entries that may be evicted; an entry
    /// is in it at most once (`Entry::queued`).
    queue: VecDeque<(u64, u32)>,
    /// Min-heap of expiry and collection deadlines.
    timers: BinaryHeap<Reverse<Timer>>,
    leaves: Box<[Leaf]>,
    leaf_shift: u32,
    grace_ms: u64,
    next_seq: u32,
    pub reads: ReadCounters,
    pub counts: WriteCounters,
}

impl Shard {
    /// A shard with `leaves` digest leaves; `leaf_bits` is the store-wide
    /// number of leaf bits (shard bits included).
    pub fn new(leaves: usize, leaf_bits: u32, grace_ms: u64) -> Self {
        Self {
            table: HashTable::new(),
            queue: VecDeque::new(),
            timers: BinaryHeap::new(),
            leaves: vec![Leaf::default(); leaves].into_boxed_slice(),
            leaf_shift: 64 - leaf_bits,
            grace_ms,
            next_seq: 0,
            reads: ReadCounters::default(),
            counts: WriteCounters::default(),
        }
    }

    #[inline]
    pub fn find(&self, hash: u64, key: &[u8]) -> Option<&Entry> {
        self.table
            .find(table_hash(hash), |e| e.hash == hash && e.key == key)
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
        now: u64,
    ) -> (ApplyOutcome, i64) {
        let (state, value, expires_at) = match write.op {
            // 0 encodes "no expiry", so an expiry at the epoch becomes 1 ms
            // after it: long past either way.
            WriteOp::Set { value, expires_at } => {
                (State::Live, Some(value), expires_at.map_or(0, |t| t.max(1)))
            }
            WriteOp::Delete => (State::Deleted, None, 0),
        };
        let leaf = self.leaf_index(hash);
        let grace = self.grace_ms;
        let found = self
            .table
            .find_mut(table_hash(hash), |e| e.hash == hash && e.key == key);

        let (outcome, bytes, from, to, timer, enqueue) = match found {
            Some(e) if write.version < e.version => {
                self.counts.superseded += 1;
                return (ApplyOutcome::Superseded { current: e.version }, 0);
            }
            Some(e) if write.version == e.version => {
                // A duplicate delivery. One case changes something: a value
                // evicted here comes back from another replica (read repair
                // or anti-entropy) at the same version.
                self.counts.duplicates += 1;
                match (e.state, value) {
                    (State::Evicted, Some(v)) => {
                        e.value = Some(Bytes::copy_from_slice(v));
                        e.state = State::Live;
                        self.counts.transition(
                            Some(State::Evicted),
                            Some(State::Live),
                            v.len() as i64,
                        );
                        return (ApplyOutcome::Duplicate, v.len() as i64);
                    }
                    _ => return (ApplyOutcome::Duplicate, 0),
                }
            }
            Some(e) => {
                let was_live =
                    matches!(e.state, State::Live | State::Evicted) && !expired(e.expires_at, now);
                let before = e.charge();
                let from = e.state;
                self.leaves[leaf].remove(hash, &e.version);
                e.version = write.version;
                e.value = value.map(Bytes::copy_from_slice);
                e.expires_at = expires_at;
                e.state = state;
                e.referenced.store(false, Relaxed);
                self.leaves[leaf].add(hash, &e.version);
                let enqueue = state == State::Live && !e.queued;
                e.queued |= enqueue;
                let bytes = e.charge() as i64 - before as i64;
                (
                    ApplyOutcome::Applied { was_live },
                    bytes,
                    Some(from),
                    state,
                    timer_for(e, grace),
                    enqueue.then_some(e.seq),
                )
            }
            None => {
                let seq = self.next_seq;
                self.next_seq = self.next_seq.wrapping_add(1);
                let e = Entry {
                    key: Bytes::copy_from_slice(key),
                    value: value.map(Bytes::copy_from_slice),
                    version: write.version,
                    hash,
                    expires_at,
                    seq,
                    state,
                    queued: state == State::Live,
                    referenced: AtomicBool::new(false),
                };
                let bytes = e.charge() as i64;
                let timer = timer_for(&e, grace);
                let enqueue = e.queued.then_some(seq);
                self.leaves[leaf].add(hash, &e.version);
                self.table
                    .insert_unique(table_hash(hash), e, |e| table_hash(e.hash));
                (
                    ApplyOutcome::Applied { was_live: false },
                    bytes,
                    None,
                    state,
                    timer,
                    enqueue,
                )
            }
        };
        self.counts.applied += 1;
        self.counts.transition(from, Some(to), bytes);
        if let Some(seq) = enqueue {
            self.enqueue(hash, seq);
        }
        if let Some(t) = timer {
            self.push_timer(t);
        }
        (outcome, bytes)
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

    fn push_timer(&mut self, t: Timer) {
        self.timers.push(Reverse(t));
        // Overwrites leave stale timers behind; rebuild from the table when
        // they dominate, so the heap stays proportional to the table.
        if self.timers.len() > 2 * self.table.len() + 64 {
            let grace = self.grace_ms;
            self.timers = self
                .table
                .iter()
                .filter_map(|e| timer_for(e, grace).map(Reverse))
                .collect();
        }
    }

    /// One CLOCK step sequence: walks at most `max_steps` queue items and
    /// evicts the first unreferenced one. A live value is evicted down to a
    /// stub (key and version stay, so digests still match other replicas);
    /// a stub that comes round again unreferenced is dropped entirely.
    /// Tombstones are never evicted.
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
                State::Live if expired(e.expires_at, now) => {
                    // Due to expire anyway: expire it now rather than evict
                    // something that is still wanted.
                    let freed = e.value.take().map_or(0, |v| v.len()) as u64;
                    e.state = State::Expired;
                    let timer = timer_for(e, self.grace_ms);
                    self.counts.expirations += 1;
                    self.counts.transition(
                        Some(State::Live),
                        Some(State::Expired),
                        -(freed as i64),
                    );
                    if let Some(t) = timer {
                        self.push_timer(t);
                    }
                    return Evicted::Freed(freed);
                }
                _ if e.referenced.swap(false, Relaxed) => {
                    e.queued = true;
                    self.queue.push_back((hash, seq));
                }
                State::Live => {
                    let freed = e.value.take().map_or(0, |v| v.len()) as u64;
                    e.state = State::Evicted;
                    e.queued = true;
                    self.queue.push_back((hash, seq));
                    self.counts.evictions += 1;
                    self.counts.transition(
                        Some(State::Live),
                        Some(State::Evicted),
                        -(freed as i64),
                    );
                    return Evicted::Freed(freed);
                }
                State::Evicted => {
                    let freed = self.remove(hash, seq);
                    self.counts.stubs_dropped += 1;
                    return Evicted::Freed(freed);
                }
            }
        }
        Evicted::Nothing
    }

    /// Removes the entry (hash, seq), returning its charge.
    fn remove(&mut self, hash: u64, seq: u32) -> u64 {
        let Ok(slot) = self
            .table
            .find_entry(table_hash(hash), |e| e.hash == hash && e.seq == seq)
        else {
            return 0;
        };
        let (e, _) = slot.remove();
        let leaf = self.leaf_index(hash);
        self.leaves[leaf].remove(hash, &e.version);
        let charge = e.charge();
        self.counts
            .transition(Some(e.state), None, -(charge as i64));
        charge
    }

    /// Runs due timers (at most `max`): expires values and collects
    /// tombstones. Returns the byte delta and whether due timers remain.
    pub fn run_timers(&mut self, now: u64, max: usize) -> (i64, bool) {
        let mut delta = 0i64;
        for _ in 0..max {
            let Some(&Reverse(t)) = self.timers.peek() else {
                return (delta, false);
            };
            if t.deadline > now {
                return (delta, false);
            }
            self.timers.pop();
            let grace = self.grace_ms;
            let Some(e) = self
                .table
                .find_mut(table_hash(t.hash), |e| e.hash == t.hash && e.seq == t.seq)
            else {
                continue;
            };
            if timer_for(e, grace) != Some(t) {
                continue;
            }
            match t.kind {
                TimerKind::Expire => {
                    let from = e.state;
                    let freed = e.value.take().map_or(0, |v| v.len()) as i64;
                    e.state = State::Expired;
                    let next = timer_for(e, grace);
                    self.counts.expirations += 1;
                    self.counts
                        .transition(Some(from), Some(State::Expired), -freed);
                    delta -= freed;
                    if let Some(n) = next {
                        self.push_timer(n);
                    }
                }
                TimerKind::Collect => {
                    delta -= self.remove(t.hash, t.seq) as i64;
                    self.counts.tombstones_collected += 1;
                }
            }
        }
        let more = self
            .timers
            .peek()
            .is_some_and(|Reverse(t)| t.deadline <= now);
        (delta, more)
    }

    /// Appends to `out` every entry with hash in `[lo, hi]` that sorts after
    /// `after` in the scan order `(rel(hash), key)`.
    pub fn collect(
        &self,
        lo: u64,
        hi: u64,
        rel: impl Fn(u64) -> u64,
        after: Option<(u64, &[u8])>,
        now: u64,
        out: &mut Vec<RangeEntry>,
    ) {
        for e in self.table.iter() {
            if e.hash < lo || e.hash > hi {
                continue;
            }
            if let Some((r, k)) = after {
                if (rel(e.hash), &e.key[..]) <= (r, k) {
                    continue;
                }
            }
            let data = match (e.state, &e.value) {
                (State::Live, Some(v)) if !expired(e.expires_at, now) => EntryData::Value {
                    value: v.clone(),
                    expires_at: e.expires_at(),
                },
                (State::Evicted, _) if !expired(e.expires_at, now) => EntryData::Evicted,
                _ => EntryData::Tombstone,
            };
            out.push(RangeEntry {
                key: e.key.clone(),
                hash: e.hash,
                version: e.version,
                data,
            });
        }
    }

    /// Digest of the entries with hash in `[lo, hi]`, all within one leaf.
    pub fn partial_leaf(&self, lo: u64, hi: u64) -> Leaf {
        let mut leaf = Leaf::default();
        for e in self.table.iter().filter(|e| lo <= e.hash && e.hash <= hi) {
            leaf.add(e.hash, &e.version);
        }
        leaf
    }

    /// The incremental digest of a leaf (shard-local index).
    pub fn leaf(&self, index: usize) -> Leaf {
        self.leaves[index]
    }

    /// Recomputes bytes, gauges and leaves from the table; returns
    /// (recounted counters, number of leaves that differ).
    pub fn recount(&self) -> (WriteCounters, usize) {
        let mut c = WriteCounters::default();
        let mut leaves = vec![Leaf::default(); self.leaves.len()];
        for e in self.table.iter() {
            c.transition(None, Some(e.state), e.charge() as i64);
            leaves[self.leaf_index(e.hash)].add(e.hash, &e.version);
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
}
