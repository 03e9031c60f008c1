//! Model-based property tests of the local store, through its public API
//! only.
//!
//! Two properties drive a [`Store`] with random operation sequences over a
//! small key space (keys at both length limits and just past them, versions
//! from a small range so that equal and crossing versions are common, TTLs
//! around the virtual clock, clock moves including backwards steps, sweeps,
//! scans and digests of random ring ranges):
//!
//! - **Exact model** (`store_matches_reference_model`): with a budget that
//!   never evicts, the store is deterministic, so a plain `BTreeMap` written
//!   from the documented semantics predicts every outcome, every lookup,
//!   every scan, every counter and gauge and every byte charged. Digests are
//!   checked three ways: their counts against the model, their additivity
//!   over split ranges, and their equality with a replica (sharded
//!   differently) fed the same writes in another order.
//! - **Budget invariants** (`small_budget_keeps_invariants`): with a budget
//!   of a few entries, eviction makes the store nondeterministic, so the
//!   model only tracks what must hold: tombstones of deletes are exact until
//!   their grace period ends, values read back are ones written at that
//!   version, an expired entry seen stored stays a tombstone for its grace
//!   period, outcomes agree with the versions known, the accounting equals
//!   a recount, a write that grows the store over budget leaves nothing
//!   evictable behind, and the budget holds except by what tombstones alone
//!   occupy (plus one entry).
//!
//! Writes are redelivered verbatim now and then (retries, repair), so
//! duplicates, refills of evicted stubs and stale writes are common.
//! The regression tests at the end are the minimal, deterministic forms of
//! what the properties found.
//!
//! The number of cases follows proptest's `PROPTEST_CASES` (default 256);
//! each sequence has up to 300 operations.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gridkv::Generation;
use gridkv::hlc::{Clock, ManualClock, Timestamp, Version};
use gridkv::keyspace::{RingRange, key_hash};
use gridkv::store::{
    ApplyOutcome, ENTRY_OVERHEAD, EntryData, Item, Lookup, RangeDigest, RangeEntry, Store,
    StoreConfig, StoreError, StoreStats, Write,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Virtual time the clock starts at.
const T0: u64 = 1_700_000_000_000;
/// Key and value limits of the stores under test (small, so that the
/// limits themselves are exercised).
const MAX_KEY: usize = 12;
const MAX_VALUE: usize = 40;
/// Largest charge a single entry can have.
const MAX_ENTRY: u64 = (ENTRY_OVERHEAD + MAX_KEY + MAX_VALUE) as u64;

/// The key space. Indices 0 and 1 are invalid (empty, one byte too long);
/// the rest are valid, among them keys of exactly the minimum and maximum
/// length.
fn key_pool() -> Vec<Vec<u8>> {
    let mut keys = vec![
        Vec::new(),
        vec![b'x'; MAX_KEY + 1],
        b"a".to_vec(),
        vec![b'k'; MAX_KEY],
        vec![0xff; MAX_KEY],
        vec![0; MAX_KEY],
        vec![0],
    ];
    keys.extend((0..13).map(|i| format!("key-{i}").into_bytes()));
    keys
}

const POOL_LEN: usize = 20;
const INVALID_KEYS: usize = 2;

fn expired(exp: Option<u64>, now: u64) -> bool {
    exp.is_some_and(|t| t <= now)
}

fn phys(v: Version) -> u64 {
    v.ts.physical_ms()
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// An expiry, relative to the store's (coarse) clock when the write is made.
#[derive(Clone, Copy, Debug)]
enum Expiry {
    Never,
    /// `now + delta` ms (negative: already expired).
    In(i64),
    /// Expires at the epoch (long past).
    Epoch,
    Max,
}

/// A point on the ring: near a key's hash, or a raw value.
#[derive(Clone, Copy, Debug)]
enum Point {
    Key(usize, i8),
    Raw(u64),
}

#[derive(Clone, Copy, Debug)]
struct RangeSpec {
    start: Point,
    end: Point,
}

#[derive(Clone, Debug)]
enum Op {
    Set {
        key: usize,
        version: Version,
        len: usize,
        fill: u8,
        expiry: Expiry,
    },
    Delete {
        key: usize,
        version: Version,
    },
    /// Delivers an earlier valid write again, unchanged (a retry, a
    /// repair, a replica catching up): picks the `n % len`-th write.
    Redeliver(usize),
    Get {
        key: usize,
    },
    /// Moves the clock source forwards.
    Advance(u64),
    /// Steps the clock source backwards.
    ClockBack(u64),
    Tick,
    Maintain,
    Scan {
        range: RangeSpec,
        max_entries: usize,
        max_bytes: usize,
    },
    Digest {
        range: RangeSpec,
        split: Point,
        shuffle: u64,
    },
}

fn version(ms: u64, logical: u16, writer: u64, generation: u64) -> Version {
    Version {
        ts: Timestamp::new(T0 + ms, logical),
        writer,
        generation: Generation::new(generation),
    }
}

/// Versions from a small space (64 of them, physical times within 16 ms of
/// the start), so that equal versions and versions crossing the clock are
/// common.
fn arb_version() -> impl Strategy<Value = Version> {
    (0u64..16, 0u16..2, 0u64..2, 1u64..=2).prop_map(|(ms, l, w, g)| version(ms, l, w, g))
}

fn arb_key() -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => 0..INVALID_KEYS,
        12 => INVALID_KEYS..POOL_LEN,
    ]
}

fn arb_len(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => Just(0),
        6 => 1..max,
        1 => Just(max),
        1 => Just(max + 1),
    ]
}

fn arb_expiry() -> impl Strategy<Value = Expiry> {
    prop_oneof![
        4 => Just(Expiry::Never),
        4 => (-3i64..25).prop_map(Expiry::In),
        1 => Just(Expiry::Epoch),
        1 => Just(Expiry::Max),
    ]
}

fn arb_point() -> impl Strategy<Value = Point> {
    prop_oneof![
        3 => (INVALID_KEYS..POOL_LEN, -1i8..=1).prop_map(|(k, d)| Point::Key(k, d)),
        2 => prop_oneof![
            Just(0u64),
            Just(1),
            Just(u64::MAX),
            Just(u64::MAX - 1),
            Just(1 << 63),
            Just((1 << 63) - 1),
            Just(1 << 60),
            any::<u64>(),
        ]
        .prop_map(Point::Raw),
        // Digest-leaf and shard boundaries (at most 2^7 leaves here).
        1 => (0u64..128, 57u32..64, any::<bool>())
            .prop_map(|(k, shift, before)| Point::Raw((k << shift).wrapping_sub(before as u64))),
    ]
}

fn arb_range() -> impl Strategy<Value = RangeSpec> {
    prop_oneof![
        4 => (arb_point(), arb_point()).prop_map(|(start, end)| RangeSpec { start, end }),
        // start == end: the whole ring, from anywhere.
        1 => arb_point().prop_map(|p| RangeSpec { start: p, end: p }),
    ]
}

fn arb_op(max_value: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (arb_key(), arb_version(), arb_len(max_value), any::<u8>(), arb_expiry()).prop_map(
            |(key, version, len, fill, expiry)| Op::Set { key, version, len, fill, expiry }
        ),
        10 => (arb_key(), arb_version()).prop_map(|(key, version)| Op::Delete { key, version }),
        8 => any::<usize>().prop_map(Op::Redeliver),
        15 => arb_key().prop_map(|key| Op::Get { key }),
        8 => prop_oneof![9 => 0u64..6, 1 => 6u64..2_000].prop_map(Op::Advance),
        1 => (1u64..50).prop_map(Op::ClockBack),
        8 => Just(Op::Tick),
        8 => Just(Op::Maintain),
        4 => (arb_range(), 0usize..6, 0usize..200).prop_map(|(range, max_entries, max_bytes)| {
            Op::Scan { range, max_entries, max_bytes }
        }),
        4 => (arb_range(), arb_point(), any::<u64>())
            .prop_map(|(range, split, shuffle)| Op::Digest { range, split, shuffle }),
    ]
}

/// The value a set writes: distinguishable between writes of one length.
fn value_bytes(len: usize, fill: u8) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

fn resolve_expiry(e: Expiry, now: u64) -> Option<u64> {
    match e {
        Expiry::Never => None,
        Expiry::In(d) => Some(now.saturating_add_signed(d)),
        Expiry::Epoch => Some(0),
        Expiry::Max => Some(u64::MAX),
    }
}

fn resolve_point(keys: &[Vec<u8>], p: Point) -> u64 {
    match p {
        Point::Key(k, d) => key_hash(&keys[k]).wrapping_add_signed(d as i64),
        Point::Raw(x) => x,
    }
}

fn resolve_range(keys: &[Vec<u8>], r: RangeSpec) -> RingRange {
    RingRange::new(resolve_point(keys, r.start), resolve_point(keys, r.end))
}

/// A write the test keeps (the store's [`Write`] borrows its value).
#[derive(Clone, Debug)]
enum OwnedWrite {
    Set {
        value: Vec<u8>,
        expires_at: Option<u64>,
    },
    Delete,
}

impl OwnedWrite {
    fn as_write(&self, version: Version) -> Write<'_> {
        match self {
            OwnedWrite::Set { value, expires_at } => Write::set(version, value, *expires_at),
            OwnedWrite::Delete => Write::delete(version),
        }
    }
}

/// Outcome of a write of `new` over a stored `current`, by the docs.
fn outcome_over(current: Version, new: Version, was_live: bool) -> ApplyOutcome {
    match new.cmp(&current) {
        std::cmp::Ordering::Less => ApplyOutcome::Superseded { current },
        std::cmp::Ordering::Equal => ApplyOutcome::Duplicate,
        std::cmp::Ordering::Greater => ApplyOutcome::Applied { was_live },
    }
}

fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.is_empty() {
        Err(StoreError::EmptyKey)
    } else if key.len() > MAX_KEY {
        Err(StoreError::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY,
        })
    } else {
        Ok(())
    }
}

fn check_write(key: &[u8], w: &OwnedWrite) -> Result<(), StoreError> {
    check_key(key)?;
    match w {
        OwnedWrite::Set { value, .. } if value.len() > MAX_VALUE => {
            Err(StoreError::ValueTooLarge {
                len: value.len(),
                max: MAX_VALUE,
            })
        }
        _ => Ok(()),
    }
}

/// Position of `hash` in the clockwise order of a scan of `range`.
fn scan_rank(range: RingRange, hash: u64) -> u64 {
    hash.wrapping_sub(range.start.wrapping_add(1))
}

/// Every entry of `range`, read through the cursor in batches; checks the
/// batch limits on the way.
fn scan_all(
    store: &Store,
    range: RingRange,
    max_entries: usize,
    max_bytes: usize,
) -> Result<Vec<RangeEntry>, TestCaseError> {
    let mut out = Vec::new();
    let mut after = None;
    for _ in 0..=POOL_LEN {
        let batch = store.scan(range, after.as_ref(), max_entries, max_bytes);
        prop_assert!(batch.entries.len() <= max_entries.max(1));
        if batch.entries.len() > 1 {
            let payload: usize = batch
                .entries
                .iter()
                .map(|e| {
                    e.key.len()
                        + match &e.data {
                            EntryData::Value { value, .. } => value.len(),
                            _ => 0,
                        }
                })
                .sum();
            prop_assert!(payload <= max_bytes, "batch of {payload} bytes");
        }
        out.extend(batch.entries);
        match batch.next {
            Some(c) => {
                prop_assert!(!out.is_empty(), "a cursor without entries");
                after = Some(c);
            }
            None => return Ok(out),
        }
    }
    Err(TestCaseError::fail("scan did not terminate"))
}

/// Checks `digest(range)` against the digests of the two halves of the
/// range split at `split` (when `split` splits it).
fn check_split(store: &Store, range: RingRange, split: u64) -> Result<(), TestCaseError> {
    if split == range.end || !range.contains(split) {
        return Ok(());
    }
    let whole = store.digest(range);
    let a = store.digest(RingRange::new(range.start, split));
    let b = store.digest(RingRange::new(split, range.end));
    prop_assert_eq!(
        whole,
        RangeDigest {
            hash: a.hash.wrapping_add(b.hash),
            count: a.count + b.count,
        },
        "digest of {:?} split at {:#x}",
        range,
        split
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Property 1: the exact reference model
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum MState {
    Live { value: Vec<u8>, exp: Option<u64> },
    Deleted,
    Expired { exp: u64 },
}

#[derive(Clone, Debug)]
struct MEntry {
    version: Version,
    state: MState,
}

impl MEntry {
    fn charge(&self, key: &[u8]) -> u64 {
        let value = match &self.state {
            MState::Live { value, .. } => value.len(),
            _ => 0,
        };
        (ENTRY_OVERHEAD + key.len() + value) as u64
    }

    /// When a tombstone may be collected: a grace period after its
    /// version's time, or after its expiry if that is later.
    fn collect_at(&self, grace: u64) -> Option<u64> {
        match self.state {
            MState::Live { .. } => None,
            MState::Deleted => Some(phys(self.version).saturating_add(grace)),
            MState::Expired { exp } => Some(phys(self.version).max(exp).saturating_add(grace)),
        }
    }
}

/// The documented semantics, written independently of the implementation.
struct Model {
    grace: u64,
    budget: u64,
    /// The coarse clock: the largest source reading at a tick.
    now: u64,
    entries: BTreeMap<Vec<u8>, MEntry>,
    counters: StoreStats,
}

impl Model {
    fn apply(
        &mut self,
        key: &[u8],
        version: Version,
        w: &OwnedWrite,
    ) -> Result<ApplyOutcome, StoreError> {
        check_write(key, w)?;
        let state = match w {
            // The store keeps an expiry at the epoch as 1 ms after it (0
            // means "none"): the same instant for every read.
            OwnedWrite::Set { value, expires_at } => MState::Live {
                value: value.clone(),
                exp: expires_at.map(|t| t.max(1)),
            },
            OwnedWrite::Delete => MState::Deleted,
        };
        let now = self.now;
        let outcome = match self.entries.get(key) {
            None => ApplyOutcome::Applied { was_live: false },
            Some(e) => {
                let was_live = matches!(e.state, MState::Live { exp, .. } if !expired(exp, now));
                outcome_over(e.version, version, was_live)
            }
        };
        match outcome {
            ApplyOutcome::Applied { .. } => {
                self.counters.applied += 1;
                self.entries.insert(key.to_vec(), MEntry { version, state });
            }
            ApplyOutcome::Duplicate => self.counters.duplicates += 1,
            ApplyOutcome::Superseded { .. } => self.counters.superseded += 1,
            ApplyOutcome::Forgotten { .. } => unreachable!("the unbounded model forgets nothing"),
            ApplyOutcome::Conflict { .. } => unreachable!("the model makes no conditional writes"),
        }
        Ok(outcome)
    }

    fn get(&mut self, key: &[u8]) -> Result<Lookup, StoreError> {
        check_key(key)?;
        self.counters.gets += 1;
        Ok(match self.entries.get(key) {
            None => Lookup::Missing,
            Some(MEntry {
                version,
                state: MState::Live { value, exp },
            }) if !expired(*exp, self.now) => {
                self.counters.hits += 1;
                Lookup::Live(Item {
                    value: Bytes::from(value.clone()),
                    version: *version,
                    expires_at: *exp,
                    expiry_stamp: Timestamp::ZERO,
                    counter: false,
                })
            }
            Some(e) => Lookup::Dead {
                version: e.version,
                expired_at: match &e.state {
                    MState::Live { exp, .. } => *exp,
                    MState::Expired { exp } => Some(*exp),
                    MState::Deleted => None,
                },
                expiry_stamp: Timestamp::ZERO,
            },
        })
    }

    /// Expires values whose TTL ran out and collects tombstones past their
    /// grace period; returns the bytes freed.
    fn maintain(&mut self) -> u64 {
        let now = self.now;
        let mut freed = 0;
        for e in self.entries.values_mut() {
            if let MState::Live {
                value,
                exp: Some(t),
            } = &e.state
            {
                if *t <= now {
                    freed += value.len() as u64;
                    e.state = MState::Expired { exp: *t };
                    self.counters.expirations += 1;
                }
            }
        }
        let grace = self.grace;
        let due: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter(|(_, e)| e.collect_at(grace).is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let e = self.entries.remove(&k).unwrap();
            freed += e.charge(&k);
            self.counters.tombstones_collected += 1;
        }
        freed
    }

    fn bytes(&self) -> u64 {
        self.entries.iter().map(|(k, e)| e.charge(k)).sum()
    }

    fn stats(&self) -> StoreStats {
        let live = self
            .entries
            .values()
            .filter(|e| matches!(e.state, MState::Live { .. }))
            .count() as u64;
        StoreStats {
            entries: self.entries.len() as u64,
            live,
            evicted: 0,
            tombstones: self.entries.len() as u64 - live,
            bytes: self.bytes(),
            budget: self.budget,
            ..self.counters
        }
    }

    /// What a scan of `range` must return, in order.
    fn scan(&self, range: RingRange) -> Vec<RangeEntry> {
        let mut out: Vec<RangeEntry> = self
            .entries
            .iter()
            .filter(|(k, _)| range.contains(key_hash(k)))
            .map(|(k, e)| RangeEntry {
                key: Bytes::from(k.clone()),
                hash: key_hash(k),
                version: e.version,
                expiry_stamp: Timestamp::ZERO,
                counter: false,
                data: match &e.state {
                    MState::Live { value, exp } if !expired(*exp, self.now) => EntryData::Value {
                        value: Bytes::from(value.clone()),
                        expires_at: *exp,
                    },
                    MState::Live { exp, .. } => EntryData::Tombstone { expired_at: *exp },
                    MState::Expired { exp } => EntryData::Tombstone {
                        expired_at: Some(*exp),
                    },
                    MState::Deleted => EntryData::Tombstone { expired_at: None },
                },
            })
            .collect();
        out.sort_by(|a, b| {
            (scan_rank(range, a.hash), &a.key).cmp(&(scan_rank(range, b.hash), &b.key))
        });
        out
    }
}

/// A store, its clock and the model, driven in lockstep.
struct Exact {
    keys: Vec<Vec<u8>>,
    source: Arc<ManualClock>,
    store: Store,
    model: Model,
    /// Every valid write made, for the replica comparison.
    log: Vec<(usize, Version, OwnedWrite)>,
}

impl Exact {
    fn new(config: StoreConfig) -> Self {
        let source = Arc::new(ManualClock::new(T0));
        let model = Model {
            grace: config.tombstone_grace.as_millis() as u64,
            budget: config.memory_budget,
            now: T0,
            entries: BTreeMap::new(),
            counters: StoreStats::default(),
        };
        let store = Store::with_clock(config, source.clone()).unwrap();
        Self {
            keys: key_pool(),
            source,
            store,
            model,
            log: Vec::new(),
        }
    }

    fn write(&mut self, key: usize, version: Version, w: OwnedWrite) -> Result<(), TestCaseError> {
        let k = &self.keys[key];
        let got = self.store.apply(k, w.as_write(version));
        let want = self.model.apply(k, version, &w);
        prop_assert_eq!(got, want, "apply {:?} at {:?} to key {}", w, version, key);
        if check_write(k, &w).is_ok() {
            self.log.push((key, version, w));
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Set {
                key,
                version,
                len,
                fill,
                expiry,
            } => {
                let w = OwnedWrite::Set {
                    value: value_bytes(*len, *fill),
                    expires_at: resolve_expiry(*expiry, self.model.now),
                };
                self.write(*key, *version, w)?;
            }
            Op::Delete { key, version } => self.write(*key, *version, OwnedWrite::Delete)?,
            Op::Redeliver(n) => {
                if !self.log.is_empty() {
                    let (key, version, w) = self.log[n % self.log.len()].clone();
                    self.write(key, version, w)?;
                }
            }
            Op::Get { key } => {
                let k = &self.keys[*key];
                prop_assert_eq!(self.store.get(k), self.model.get(k), "get key {}", key);
            }
            Op::Advance(ms) => self.source.advance(Duration::from_millis(*ms)),
            Op::ClockBack(ms) => self.source.set(self.source.now_ms() - ms),
            Op::Tick => {
                self.model.now = self.model.now.max(self.source.now_ms());
                prop_assert_eq!(self.store.tick(), self.model.now);
            }
            Op::Maintain => {
                let m = self.store.maintain();
                let freed = self.model.maintain();
                prop_assert_eq!(m.freed, freed, "bytes freed by maintain");
                prop_assert!(!m.more, "a few dozen timers fit in one call");
            }
            Op::Scan {
                range,
                max_entries,
                max_bytes,
            } => {
                let range = resolve_range(&self.keys, *range);
                let got = scan_all(&self.store, range, *max_entries, *max_bytes)?;
                prop_assert_eq!(got, self.model.scan(range), "scan of {:?}", range);
            }
            Op::Digest {
                range,
                split,
                shuffle,
            } => {
                let range = resolve_range(&self.keys, *range);
                let digest = self.store.digest(range);
                prop_assert_eq!(
                    digest.count,
                    self.model.scan(range).len() as u64,
                    "digest count of {:?}",
                    range
                );
                check_split(&self.store, range, resolve_point(&self.keys, *split))?;
                self.check_replica(range, *shuffle)?;
            }
        }
        self.check_invariants()
    }

    /// A replica sharded differently, fed the writes that produced the
    /// current state in another order (some twice), has the same digests.
    fn check_replica(&self, range: RingRange, seed: u64) -> Result<(), TestCaseError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let config = StoreConfig {
            shards: [1, 2, 8][rng.random_range(0..3)],
            digest_leaves: 8,
            max_key_len: MAX_KEY,
            max_value_len: MAX_VALUE,
            memory_budget: 1 << 40,
            ..StoreConfig::default()
        };
        let replica =
            Store::with_clock(config, Arc::new(ManualClock::new(self.model.now))).unwrap();
        // Writes to keys whose state here they explain: collected keys and
        // writes newer than what is stored now (a collected tombstone's
        // key may have taken an older write since) are left out.
        let mut writes: Vec<_> = self
            .log
            .iter()
            .filter(|(k, v, _)| {
                self.model
                    .entries
                    .get(&self.keys[*k])
                    .is_some_and(|e| *v <= e.version)
            })
            .collect();
        writes.shuffle(&mut rng);
        let again = rng.random_range(0..=writes.len());
        writes.extend_from_within(..again);
        for (k, v, w) in writes {
            replica.apply(&self.keys[*k], w.as_write(*v)).unwrap();
        }
        prop_assert_eq!(
            replica.digest(range),
            self.store.digest(range),
            "replica digest of {:?}",
            range
        );
        prop_assert_eq!(
            replica.digest(RingRange::FULL),
            self.store.digest(RingRange::FULL)
        );
        prop_assert!(replica.audit().is_consistent());
        Ok(())
    }

    fn check_invariants(&self) -> Result<(), TestCaseError> {
        let audit = self.store.audit();
        prop_assert!(audit.is_consistent(), "{:?}", audit);
        prop_assert_eq!(self.store.stats(), self.model.stats());
        prop_assert_eq!(self.store.used_bytes(), self.model.bytes());
        prop_assert_eq!(self.store.clock().now_ms(), self.model.now);
        Ok(())
    }

    /// Reads every key and the whole ring once more.
    fn check_all(&mut self) -> Result<(), TestCaseError> {
        for k in 0..self.keys.len() {
            self.step(&Op::Get { key: k })?;
        }
        let got = scan_all(&self.store, RingRange::FULL, 7, usize::MAX)?;
        prop_assert_eq!(got, self.model.scan(RingRange::FULL));
        prop_assert_eq!(
            self.store.digest(RingRange::FULL).count,
            self.model.entries.len() as u64
        );
        self.check_invariants()
    }
}

fn arb_exact_config() -> impl Strategy<Value = StoreConfig> {
    (
        prop_oneof![Just(1usize), Just(2), Just(4), Just(16)],
        prop_oneof![Just(1usize), Just(2), Just(8)],
        prop_oneof![Just(0u64), Just(3), Just(10), Just(40)],
    )
        .prop_map(|(shards, leaves_per_shard, grace)| StoreConfig {
            shards,
            digest_leaves: shards * leaves_per_shard,
            max_key_len: MAX_KEY,
            max_value_len: MAX_VALUE,
            memory_budget: 1 << 40,
            tombstone_grace: Duration::from_millis(grace),
            max_tombstone_percent: 100,
        })
}

fn run_exact(config: StoreConfig, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Exact::new(config);
    h.check_invariants()?;
    for op in ops {
        h.step(op)?;
    }
    h.check_all()
}

proptest! {
    /// With no eviction the store is deterministic: every outcome, read,
    /// scan, counter, gauge and byte equals the reference model's.
    #[test]
    fn store_matches_reference_model(
        config in arb_exact_config(),
        ops in proptest::collection::vec(arb_op(MAX_VALUE), 1..300),
    ) {
        run_exact(config, &ops)?;
    }
}

// ---------------------------------------------------------------------------
// Property 2: invariants under a small budget
// ---------------------------------------------------------------------------

/// What the test knows about a key while eviction may drop values.
#[derive(Clone, Debug)]
enum Known {
    /// A delete's tombstone: never evicted, so exact until collected.
    Deleted { version: Version },
    /// An expired value seen still stored: by the docs it is a tombstone
    /// now ("an expired entry also turns into a tombstone"; "tombstones are
    /// never evicted"), so it is exact too until collected.
    Expired { version: Version, exp: u64 },
    /// The last value applied, not expired when last seen. It may have been
    /// evicted to a stub, and if `maybe_gone` (an eviction may have run since
    /// it was last seen), the stub may have been dropped.
    Value {
        version: Version,
        exp: Option<u64>,
        maybe_gone: bool,
    },
}

/// One observation of a key, from a lookup or a scan.
#[derive(Debug)]
enum Seen {
    Missing,
    /// Absent, in a range that forgot entries up to this version.
    Forgotten(Version),
    Dead(Version),
    Evicted(Version),
    Live {
        version: Version,
        value: Bytes,
        exp: Option<u64>,
    },
}

impl From<Lookup> for Seen {
    fn from(l: Lookup) -> Self {
        match l {
            Lookup::Missing => Seen::Missing,
            Lookup::Forgotten { below } => Seen::Forgotten(below),
            Lookup::Dead { version, .. } => Seen::Dead(version),
            Lookup::Evicted { version } => Seen::Evicted(version),
            Lookup::Live(item) => Seen::Live {
                version: item.version,
                value: item.value,
                exp: item.expires_at,
            },
        }
    }
}

struct Budgeted {
    keys: Vec<Vec<u8>>,
    source: Arc<ManualClock>,
    store: Store,
    budget: u64,
    grace: u64,
    now: u64,
    known: HashMap<usize, Known>,
    /// Values written (applied or delivered again) per key and version.
    written: HashMap<(usize, Version), BTreeSet<Vec<u8>>>,
    /// Every valid write made, for redelivery.
    log: Vec<(usize, Version, OwnedWrite)>,
    /// Early tombstone collections already accounted for.
    early_seen: u64,
}

impl Budgeted {
    fn new(config: StoreConfig) -> Self {
        let source = Arc::new(ManualClock::new(T0));
        Self {
            keys: key_pool(),
            source: source.clone(),
            budget: config.memory_budget,
            grace: config.tombstone_grace.as_millis() as u64,
            now: T0,
            store: Store::with_clock(config, source).unwrap(),
            known: HashMap::new(),
            written: HashMap::new(),
            log: Vec::new(),
            early_seen: 0,
        }
    }

    /// Checks an observation of `key` against what is known, and learns
    /// from it.
    fn observe(&mut self, key: usize, seen: Seen) -> Result<(), TestCaseError> {
        let now = self.now;
        let ctx = format!(
            "key {key} seen as {seen:?}, known {:?}",
            self.known.get(&key)
        );
        match (self.known.get_mut(&key), seen) {
            (None, Seen::Missing | Seen::Forgotten(_)) => {}
            (None, _) => return Err(TestCaseError::fail(format!("unknown key present: {ctx}"))),
            (Some(Known::Deleted { version } | Known::Expired { version, .. }), Seen::Dead(v)) => {
                prop_assert_eq!(*version, v, "tombstone version: {}", ctx);
            }
            (
                Some(Known::Deleted { version } | Known::Expired { version, .. }),
                Seen::Forgotten(below),
            ) if self.store.stats().tombstones_collected_early > self.early_seen => {
                // Tombstones outgrew their cap and the oldest were
                // collected early, as documented and counted: each early
                // collection excuses one vanished tombstone. The delete is
                // not forgotten: the range's watermark covers it.
                let grace_over = phys(*version).saturating_add(self.grace) <= now;
                prop_assert!(
                    below >= *version || grace_over,
                    "a forgotten delete is not covered: {}",
                    ctx
                );
                self.early_seen += 1;
                self.known.remove(&key);
            }
            (Some(Known::Deleted { version } | Known::Expired { version, .. }), Seen::Missing)
                if self.store.stats().tombstones_collected_early > self.early_seen
                    && version.ts.physical_ms() + self.grace <= now =>
            {
                // Collected early, and its grace period is over anyway.
                self.early_seen += 1;
                self.known.remove(&key);
            }
            (Some(Known::Deleted { .. } | Known::Expired { .. }), _) => {
                return Err(TestCaseError::fail(format!(
                    "a tombstone vanished or changed before its grace period: {ctx}"
                )));
            }
            (
                Some(Known::Value {
                    version,
                    exp,
                    maybe_gone,
                }),
                seen,
            ) => {
                let is_expired = expired(*exp, now);
                match seen {
                    Seen::Missing => {
                        prop_assert!(*maybe_gone, "a value vanished without eviction: {}", ctx);
                        prop_assert!(
                            version.ts.physical_ms() + self.grace <= now,
                            "a dropped version is not covered by a watermark: {}",
                            ctx
                        );
                        self.known.remove(&key);
                    }
                    Seen::Forgotten(below) => {
                        prop_assert!(*maybe_gone, "a value vanished without eviction: {}", ctx);
                        let grace_over = phys(*version).saturating_add(self.grace) <= now;
                        prop_assert!(
                            below >= *version || grace_over,
                            "a dropped version is not covered: {}",
                            ctx
                        );
                        self.known.remove(&key);
                    }
                    Seen::Dead(v) => {
                        prop_assert!(v == *version && is_expired, "{}", ctx);
                        self.still_stored(key);
                    }
                    Seen::Evicted(v) => {
                        prop_assert!(v == *version && !is_expired, "{}", ctx);
                        *maybe_gone = false;
                    }
                    Seen::Live {
                        version: v,
                        value,
                        exp: e,
                    } => {
                        prop_assert!(v == *version && !is_expired && e == *exp, "{}", ctx);
                        let known_values = self.written.get(&(key, v));
                        prop_assert!(
                            known_values.is_some_and(|s| s.contains(&value[..])),
                            "a value never written at {:?}: {}",
                            v,
                            ctx
                        );
                        *maybe_gone = false;
                    }
                }
            }
        }
        Ok(())
    }

    /// Learns that `key` is still stored at its known version: a value
    /// that cannot have been dropped since, or, once expired, a tombstone.
    fn still_stored(&mut self, key: usize) {
        let now = self.now;
        if let Some(Known::Value {
            version,
            exp,
            maybe_gone,
        }) = self.known.get_mut(&key)
        {
            match *exp {
                Some(t) if t <= now => {
                    let version = *version;
                    self.known.insert(key, Known::Expired { version, exp: t });
                }
                _ => *maybe_gone = false,
            }
        }
    }

    fn write(&mut self, key: usize, version: Version, w: OwnedWrite) -> Result<(), TestCaseError> {
        let k = &self.keys[key];
        let used_before = self.store.used_bytes();
        let stats_before = self.store.stats();
        let got = self.store.apply(k, w.as_write(version));
        if let Err(e) = check_write(k, &w) {
            // Refused before anything is touched.
            prop_assert_eq!(got, Err(e));
            prop_assert_eq!(self.store.used_bytes(), used_before);
            prop_assert_eq!(self.store.stats(), stats_before);
            return Ok(());
        }
        let got = got.unwrap();
        self.log.push((key, version, w.clone()));
        let now = self.now;
        // A write of a key the store may have dropped can be refused by
        // its range's watermark, which is at least the write's version.
        let watermarked = match got {
            // Any write, a delete too: nothing is installed for a key the
            // store does not hold under its watermark.
            ApplyOutcome::Forgotten { below } => {
                prop_assert!(
                    stats_before.forgotten > 0 && below >= version,
                    "refused under a watermark that cannot be: {:?} at {:?}, below {:?}",
                    w,
                    version,
                    below
                );
                match self.known.get(&key) {
                    // Absent here (dropped): it stays unknown.
                    None => true,
                    Some(Known::Value { maybe_gone, .. }) => {
                        prop_assert!(*maybe_gone, "refused over a value it holds");
                        self.known.remove(&key);
                        true
                    }
                    // A tombstone under the watermark stays.
                    Some(Known::Deleted { version: v } | Known::Expired { version: v, .. }) => {
                        prop_assert!(*v <= below, "refused over a newer tombstone");
                        true
                    }
                }
            }
            _ => false,
        };
        let allowed: Vec<ApplyOutcome> = match self.known.get(&key) {
            _ if watermarked => vec![got],
            None => vec![ApplyOutcome::Applied { was_live: false }],
            Some(Known::Deleted { version: v } | Known::Expired { version: v, .. }) => {
                vec![outcome_over(*v, version, false)]
            }
            Some(Known::Value {
                version: v,
                exp,
                maybe_gone,
                ..
            }) => {
                let mut a = vec![outcome_over(*v, version, !expired(*exp, now))];
                if *maybe_gone {
                    a.push(ApplyOutcome::Applied { was_live: false });
                }
                a
            }
        };
        prop_assert!(
            allowed.contains(&got),
            "apply {:?} at {:?} to key {}: got {:?}, allowed {:?}, known {:?}",
            w,
            version,
            key,
            got,
            allowed,
            self.known.get(&key)
        );
        match got {
            ApplyOutcome::Applied { .. } => {
                let known = match &w {
                    OwnedWrite::Set { value, expires_at } => {
                        self.written
                            .entry((key, version))
                            .or_default()
                            .insert(value.clone());
                        Known::Value {
                            version,
                            exp: *expires_at,
                            maybe_gone: false,
                        }
                    }
                    OwnedWrite::Delete => Known::Deleted { version },
                };
                self.known.insert(key, known);
            }
            // Refused under a watermark: nothing changed (checked above).
            ApplyOutcome::Forgotten { .. } => {}
            ApplyOutcome::Conflict { .. } => unreachable!("no conditional writes here"),
            ApplyOutcome::Duplicate | ApplyOutcome::Superseded { .. } => {
                // The key is still stored at its version.
                self.still_stored(key);
                // A duplicate delivery refills an evicted stub with its value.
                if let (ApplyOutcome::Duplicate, OwnedWrite::Set { value, .. }) = (got, &w) {
                    self.written
                        .entry((key, version))
                        .or_default()
                        .insert(value.clone());
                }
            }
        }
        // Eviction may have turned any value into a stub and dropped it.
        for k in self.known.values_mut() {
            if let Known::Value { maybe_gone, .. } = k {
                *maybe_gone = true;
            }
        }
        // A write that grew the store and left it over budget must have
        // evicted every value and stub: only tombstones may exceed it.
        let used = self.store.used_bytes();
        if used > used_before && used > self.budget {
            let s = self.store.stats();
            prop_assert!(
                s.live == 0 && s.evicted == 0,
                "over budget ({} > {}) after a growing write with values left: {:?}",
                used,
                self.budget,
                s
            );
        }
        Ok(())
    }

    fn maintain(&mut self) -> Result<(), TestCaseError> {
        let m = self.store.maintain();
        prop_assert!(!m.more);
        let (now, grace) = (self.now, self.grace);
        let mut gone = Vec::new();
        for (key, k) in self.known.iter_mut() {
            match *k {
                Known::Deleted { version } => {
                    if phys(version).saturating_add(grace) <= now {
                        gone.push(*key);
                    }
                }
                Known::Expired { version, exp } => {
                    if phys(version).max(exp).saturating_add(grace) <= now {
                        gone.push(*key);
                    }
                }
                Known::Value {
                    version,
                    exp: Some(t),
                    maybe_gone,
                } if t <= now => {
                    // The sweep turns a stored value or stub into a
                    // tombstone, and collects it if its grace is over too.
                    if phys(version).max(t).saturating_add(grace) <= now {
                        gone.push(*key);
                    } else if !maybe_gone {
                        *k = Known::Expired { version, exp: t };
                    }
                }
                Known::Value { .. } => {}
            }
        }
        for key in gone {
            self.known.remove(&key);
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Set {
                key,
                version,
                len,
                fill,
                expiry,
            } => {
                let w = OwnedWrite::Set {
                    value: value_bytes(*len, *fill),
                    expires_at: resolve_expiry(*expiry, self.now),
                };
                self.write(*key, *version, w)?;
            }
            Op::Delete { key, version } => self.write(*key, *version, OwnedWrite::Delete)?,
            Op::Redeliver(n) => {
                if !self.log.is_empty() {
                    let (key, version, w) = self.log[n % self.log.len()].clone();
                    self.write(key, version, w)?;
                }
            }
            Op::Get { key } => {
                let k = &self.keys[*key];
                match self.store.get(k) {
                    Ok(l) => self.observe(*key, l.into())?,
                    Err(e) => prop_assert_eq!(Err(e), check_key(k)),
                }
            }
            Op::Advance(ms) => self.source.advance(Duration::from_millis(*ms)),
            Op::ClockBack(ms) => self.source.set(self.source.now_ms() - ms),
            Op::Tick => {
                self.now = self.now.max(self.source.now_ms());
                prop_assert_eq!(self.store.tick(), self.now);
            }
            Op::Maintain => self.maintain()?,
            Op::Scan {
                range,
                max_entries,
                max_bytes,
            } => {
                let range = resolve_range(&self.keys, *range);
                let got = scan_all(&self.store, range, *max_entries, *max_bytes)?;
                let want = scan_all(&self.store, RingRange::FULL, usize::MAX, usize::MAX)?
                    .into_iter()
                    .filter(|e| range.contains(e.hash))
                    .collect::<Vec<_>>();
                let mut want_sorted = want;
                want_sorted.sort_by(|a, b| {
                    (scan_rank(range, a.hash), &a.key).cmp(&(scan_rank(range, b.hash), &b.key))
                });
                prop_assert_eq!(got, want_sorted);
            }
            Op::Digest { range, split, .. } => {
                let range = resolve_range(&self.keys, *range);
                let count = scan_all(&self.store, range, usize::MAX, usize::MAX)?.len();
                prop_assert_eq!(self.store.digest(range).count, count as u64);
                check_split(&self.store, range, resolve_point(&self.keys, *split))?;
            }
        }
        self.check_invariants()
    }

    fn check_invariants(&mut self) -> Result<(), TestCaseError> {
        let audit = self.store.audit();
        prop_assert!(audit.is_consistent(), "{:?}", audit);
        let used = self.store.used_bytes();
        let stats = self.store.stats();
        prop_assert_eq!(stats.bytes, used);
        prop_assert_eq!(stats.live + stats.evicted + stats.tombstones, stats.entries);
        prop_assert!(stats.stubs_dropped <= stats.evictions);
        // The whole ring, as a scan sees it: every entry is one the test
        // knows, in a state it allows.
        let all = scan_all(&self.store, RingRange::FULL, usize::MAX, usize::MAX)?;
        prop_assert_eq!(all.len() as u64, stats.entries);
        prop_assert_eq!(self.store.digest(RingRange::FULL).count, stats.entries);
        let mut present = BTreeSet::new();
        let mut tombstone_bytes = 0;
        for e in all {
            let Some(key) = self.keys.iter().position(|k| k[..] == e.key[..]) else {
                return Err(TestCaseError::fail(format!("unknown key {:?}", e.key)));
            };
            prop_assert_eq!(e.hash, key_hash(&e.key));
            present.insert(key);
            let seen = match e.data {
                EntryData::Value { value, expires_at } => Seen::Live {
                    version: e.version,
                    value,
                    exp: expires_at,
                },
                EntryData::Evicted => Seen::Evicted(e.version),
                EntryData::Tombstone { .. } => {
                    // An upper bound of what tombstones occupy: an expired
                    // value not swept yet also reads as one.
                    tombstone_bytes += (ENTRY_OVERHEAD + e.key.len()) as u64;
                    Seen::Dead(e.version)
                }
            };
            self.observe(key, seen)?;
        }
        let absent: Vec<usize> = self
            .known
            .keys()
            .copied()
            .filter(|k| !present.contains(k))
            .collect();
        for key in absent {
            // Not scanned: what a read of it says (missing, or forgotten
            // under a watermark).
            let seen = self
                .store
                .get(&self.keys[key])
                .map_err(|e| TestCaseError::fail(format!("a known key fails to read: {e}")))?;
            self.observe(key, seen.into())?;
        }
        // Tombstones are never evicted; everything else is, down to the
        // budget (plus the entry being written).
        prop_assert!(
            used <= self.budget.max(tombstone_bytes) + MAX_ENTRY,
            "{} bytes used, budget {}, tombstones {}",
            used,
            self.budget,
            tombstone_bytes
        );
        Ok(())
    }
}

fn arb_budget_config() -> impl Strategy<Value = StoreConfig> {
    (
        prop_oneof![Just(1usize), Just(2), Just(4)],
        prop_oneof![Just(1usize), Just(4)],
        prop_oneof![Just(0u64), Just(3), Just(10), Just(40)],
        (ENTRY_OVERHEAD as u64)..(ENTRY_OVERHEAD as u64 * 12),
    )
        .prop_map(|(shards, leaves_per_shard, grace, budget)| StoreConfig {
            shards,
            digest_leaves: shards * leaves_per_shard,
            max_key_len: MAX_KEY,
            max_value_len: MAX_VALUE,
            memory_budget: budget,
            tombstone_grace: Duration::from_millis(grace),
            // The default: tombstones beyond a quarter of the budget are
            // collected early, which `observe` accepts when counted.
            max_tombstone_percent: 25,
        })
}

fn run_budgeted(config: StoreConfig, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Budgeted::new(config);
    for op in ops {
        h.step(op)?;
    }
    for key in 0..h.keys.len() {
        h.step(&Op::Get { key })?;
    }
    Ok(())
}

proptest! {
    /// Under memory pressure: accounting equals a recount, the budget holds
    /// except for tombstones, tombstones live out their grace period, and
    /// every value read back was written at the version it is read with.
    #[test]
    fn small_budget_keeps_invariants(
        config in arb_budget_config(),
        ops in proptest::collection::vec(arb_op(MAX_VALUE), 1..300),
    ) {
        run_budgeted(config, &ops)?;
    }
}

#[test]
fn key_pool_has_the_documented_shape() {
    let keys = key_pool();
    assert_eq!(keys.len(), POOL_LEN);
    assert!(keys[..INVALID_KEYS].iter().all(|k| check_key(k).is_err()));
    assert!(keys[INVALID_KEYS..].iter().all(|k| check_key(k).is_ok()));
    assert!(keys.iter().any(|k| k.len() == MAX_KEY));
    assert!(keys.iter().any(|k| k.len() == 1));
}

// ---------------------------------------------------------------------------
// Regressions: minimal, deterministic forms of what the properties found
// ---------------------------------------------------------------------------

/// A one-shard store with a tight budget and a long grace period.
fn tight_store(budget: u64) -> (Store, Arc<ManualClock>) {
    let source = Arc::new(ManualClock::new(T0));
    let config = StoreConfig {
        shards: 1,
        digest_leaves: 1,
        max_key_len: MAX_KEY,
        max_value_len: MAX_VALUE,
        memory_budget: budget,
        tombstone_grace: Duration::from_secs(60),
        max_tombstone_percent: 100,
    };
    (Store::with_clock(config, source.clone()).unwrap(), source)
}

/// An evicted value whose TTL has run out reads as a tombstone
/// (`Lookup::Dead`); it must stay one for the grace period, like every
/// expired entry ("tombstones are never evicted"), or an older copy from
/// another replica comes back through repair.
#[test]
fn an_expired_stub_is_a_tombstone_and_is_not_dropped() {
    let entry = ENTRY_OVERHEAD as u64 + 1;
    // Room for three one-byte keys and 50 bytes of values.
    let (store, clock) = tight_store(3 * entry + 50);
    let (old, v) = (version(0, 0, 0, 1), version(0, 1, 0, 1));
    store
        .apply(b"a", Write::set(v, &[1; 10], Some(T0 + 5)))
        .unwrap();
    store.apply(b"b", Write::set(v, &[2; 10], None)).unwrap();
    store.apply(b"c", Write::set(v, &[3; 40], None)).unwrap();
    assert_eq!(store.get(b"a"), Ok(Lookup::Evicted { version: v }));
    clock.set(T0 + 5);
    store.tick();
    assert_eq!(
        store.get(b"a"),
        Ok(Lookup::Dead {
            version: v,
            expired_at: Some(T0 + 5),
            expiry_stamp: Timestamp::ZERO
        })
    );
    // More writes make the store evict again, before any sweep has run.
    for k in [b"d", b"e", b"f"] {
        store.apply(k, Write::set(v, &[4; 10], None)).unwrap();
    }
    assert_eq!(
        store.get(b"a"),
        Ok(Lookup::Dead {
            version: v,
            expired_at: Some(T0 + 5),
            expiry_stamp: Timestamp::ZERO
        }),
        "the expired entry was dropped inside its grace period"
    );
    assert_eq!(
        store.apply(b"a", Write::set(old, b"stale", None)),
        Ok(ApplyOutcome::Superseded { current: v }),
        "an older copy came back"
    );
    assert!(store.audit().is_consistent());
}

/// Writes that do not grow the store (an empty value over a tombstone, a
/// value over one at least as large) still leave it over budget holding
/// values: only tombstones may keep the store over its budget.
#[test]
fn the_budget_holds_after_writes_that_do_not_grow_the_store() {
    let budget = ENTRY_OVERHEAD as u64;
    let (store, _) = tight_store(budget);
    let v2 = version(0, 10, 0, 1);
    // Each delete newer than the last: one at or under the watermark the
    // collected ones raise would be refused for a key the store lacks.
    for (i, k) in [b"d1", b"d2", b"d3"].into_iter().enumerate() {
        store
            .apply(k, Write::delete(version(0, i as u16, 0, 1)))
            .unwrap();
    }
    // Tombstones may hold at most `max_tombstone_percent` (here 100%) of
    // the budget: the oldest beyond it are collected early, and counted.
    let s = store.stats();
    assert_eq!((s.tombstones, s.tombstones_collected_early), (1, 2));
    for k in [b"d1", b"d2", b"d3"] {
        store.apply(k, Write::set(v2, b"", None)).unwrap();
    }
    let s = store.stats();
    assert!(
        store.used_bytes() <= budget || s.live + s.evicted == 0,
        "{} bytes used of a {budget}-byte budget, by values only: {s:?}",
        store.used_bytes()
    );
    assert!(store.audit().is_consistent());
}

/// `stats()` runs beside lookups (a metrics scrape during traffic): its
/// figures must be coherent (`hits <= gets`) and it must not overflow. Two
/// phases: only misses (a cold cache), then only hits (a hot one).
#[test]
fn stats_stay_coherent_under_concurrent_lookups() {
    use std::sync::atomic::{AtomicBool, Ordering};

    for key in [&b"miss"[..], b"hit"] {
        // A fresh store per phase, so the other phase's counts hide nothing.
        let store = Store::new(StoreConfig {
            shards: 1,
            digest_leaves: 1,
            ..StoreConfig::default()
        })
        .unwrap();
        store
            .apply(b"hit", Write::set(version(0, 0, 0, 1), b"v", None))
            .unwrap();
        let stop = AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            let (store, stop) = (&store, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = store.get(key);
                }
            });
            let start = std::time::Instant::now();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                while start.elapsed() < Duration::from_millis(250) {
                    let s = store.stats();
                    assert!(s.hits <= s.gets, "{s:?}");
                }
            }));
            stop.store(true, Ordering::Relaxed);
            result
        });
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}

/// A grace period too long for u64 milliseconds must be refused or
/// saturated, not wrapped: 2^64 ms + 384 ms silently became 384 ms.
#[test]
fn a_huge_tombstone_grace_is_not_truncated() {
    let source = Arc::new(ManualClock::new(T0));
    let config = StoreConfig {
        tombstone_grace: Duration::from_secs(18_446_744_073_709_552),
        ..StoreConfig::default()
    };
    let Ok(store) = Store::with_clock(config, source.clone()) else {
        return; // Refusing it is fine.
    };
    let v = version(0, 0, 0, 1);
    store.apply(b"k", Write::delete(v)).unwrap();
    source.advance(Duration::from_secs(3600));
    store.tick();
    store.maintain();
    assert_eq!(
        store.get(b"k"),
        Ok(Lookup::Dead {
            version: v,
            expired_at: None,
            expiry_stamp: Timestamp::ZERO
        })
    );
}
