//! Store tests. Randomised ones run from a seed printed on failure; set
//! `GRIDKV_SEED` to replay one and `GRIDKV_SIM_SEEDS` to run more seeds.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::hlc::{Hlc, ManualClock, Timestamp, Version};
use crate::id::{Generation, NodeId};
use crate::keyspace::{key_hash, RingRange};

const T0: u64 = 1_700_000_000_000;

fn version(ms: u64, logical: u16) -> Version {
    Version {
        ts: Timestamp::new(ms, logical),
        writer: 7,
        generation: Generation::new(1),
    }
}

fn store_with(config: StoreConfig) -> (Store, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    (Store::with_clock(config, clock.clone()).unwrap(), clock)
}

fn store() -> (Store, Arc<ManualClock>) {
    store_with(StoreConfig::default())
}

/// Seeds to run: `GRIDKV_SEED` replays one; otherwise `GRIDKV_SIM_SEEDS`
/// (default `default`) seeds from a fixed base.
fn seeds(default: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("GRIDKV_SEED") {
        return vec![seed.parse().expect("GRIDKV_SEED is a u64")];
    }
    let n = std::env::var("GRIDKV_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (0..n).map(|i| 0x5eed_0000 + i).collect()
}

/// Runs `f` for every seed, naming the failing seed.
fn for_seeds(default: u64, f: impl Fn(u64)) {
    for seed in seeds(default) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(seed)));
        if let Err(e) = result {
            eprintln!("failed with seed {seed}; replay with GRIDKV_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
}

fn value_of(store: &Store, key: &[u8]) -> Option<Vec<u8>> {
    store.get(key).unwrap().value().map(|v| v.to_vec())
}

/// Recomputes the digest of `range` from a full scan.
fn digest_by_scan(store: &Store, range: RingRange) -> RangeDigest {
    let mut d = RangeDigest::default();
    let mut after = None;
    loop {
        let batch = store.scan(range, after.as_ref(), 1000, usize::MAX);
        for e in &batch.entries {
            d.hash = d.hash.wrapping_add(shard::entry_digest(e.hash, &e.version, e.expiry_stamp));
            d.count += 1;
        }
        match batch.next {
            Some(c) => after = Some(c),
            None => return d,
        }
    }
}

#[test]
fn newer_writes_win_older_are_superseded_equal_are_duplicates() {
    let (s, _) = store();
    let (v1, v2, v3) = (version(T0, 0), version(T0, 1), version(T0 + 1, 0));
    assert_eq!(
        s.apply(b"k", Write::set(v2, b"two", None)),
        Ok(ApplyOutcome::Applied { was_live: false })
    );
    assert_eq!(
        s.apply(b"k", Write::set(v1, b"one", None)),
        Ok(ApplyOutcome::Superseded { current: v2 })
    );
    assert_eq!(
        s.apply(b"k", Write::set(v2, b"two", None)),
        Ok(ApplyOutcome::Duplicate)
    );
    assert_eq!(value_of(&s, b"k").as_deref(), Some(&b"two"[..]));
    assert_eq!(
        s.apply(b"k", Write::delete(v3)),
        Ok(ApplyOutcome::Applied { was_live: true })
    );
    assert_eq!(
        s.get(b"k").unwrap(),
        Lookup::Dead {
            version: v3,
            expired_at: None,
            expiry_stamp: Timestamp::ZERO,
        }
    );
    // The tombstone keeps the older value from coming back.
    assert_eq!(
        s.apply(b"k", Write::set(v2, b"two", None)),
        Ok(ApplyOutcome::Superseded { current: v3 })
    );
    // Deleting a deleted key reports that nothing live was there.
    assert_eq!(
        s.apply(b"k", Write::delete(version(T0 + 2, 0))),
        Ok(ApplyOutcome::Applied { was_live: false })
    );
    // A delete of an unknown key still leaves a tombstone.
    s.apply(b"never", Write::delete(v3)).unwrap();
    assert_eq!(
        s.get(b"never").unwrap(),
        Lookup::Dead {
            version: v3,
            expired_at: None,
            expiry_stamp: Timestamp::ZERO,
        }
    );
    assert!(s.audit().is_consistent());
    let st = s.stats();
    assert_eq!((st.applied, st.superseded, st.duplicates), (4, 2, 1));
    assert_eq!((st.entries, st.tombstones, st.live), (2, 2, 0));
}

#[test]
fn bad_input_is_refused_and_touches_nothing() {
    let config = StoreConfig {
        max_key_len: 8,
        max_value_len: 16,
        ..StoreConfig::default()
    };
    let (s, _) = store_with(config);
    let v = version(T0, 0);
    s.apply(b"ok", Write::set(v, b"fine", None)).unwrap();
    let before = (s.stats(), s.used_bytes());
    assert_eq!(
        s.apply(b"", Write::set(v, b"x", None)),
        Err(StoreError::EmptyKey)
    );
    assert_eq!(
        s.apply(b"123456789", Write::set(v, b"x", None)),
        Err(StoreError::KeyTooLarge { len: 9, max: 8 })
    );
    assert_eq!(
        s.apply(b"ok", Write::set(version(T0 + 1, 0), &[0; 17], None)),
        Err(StoreError::ValueTooLarge { len: 17, max: 16 })
    );
    assert_eq!(s.get(b""), Err(StoreError::EmptyKey));
    assert_eq!(
        s.get(b"123456789"),
        Err(StoreError::KeyTooLarge { len: 9, max: 8 })
    );
    assert_eq!((s.stats(), s.used_bytes()), before);
    assert_eq!(value_of(&s, b"ok").as_deref(), Some(&b"fine"[..]));
    // Limits are inclusive.
    s.apply(b"12345678", Write::set(v, &[1; 16], None)).unwrap();
}

#[test]
fn config_errors_name_the_field() {
    let bad = |c: StoreConfig| Store::new(c).unwrap_err().field;
    let d = StoreConfig::default;
    assert_eq!(bad(StoreConfig { shards: 3, ..d() }), "shards");
    assert_eq!(bad(StoreConfig { shards: 0, ..d() }), "shards");
    assert_eq!(
        bad(StoreConfig {
            max_key_len: 0,
            ..d()
        }),
        "max_key_len"
    );
    assert_eq!(
        bad(StoreConfig {
            memory_budget: 0,
            ..d()
        }),
        "memory_budget"
    );
    assert_eq!(
        bad(StoreConfig {
            digest_leaves: 32,
            ..d()
        }),
        "digest_leaves"
    );
    assert_eq!(
        bad(StoreConfig {
            digest_leaves: 1000,
            ..d()
        }),
        "digest_leaves"
    );
    // One shard works (no shift overflow).
    let (s, _) = store_with(StoreConfig {
        shards: 1,
        digest_leaves: 1,
        ..d()
    });
    s.apply(b"a", Write::set(version(T0, 0), b"1", None))
        .unwrap();
    assert_eq!(value_of(&s, b"a").as_deref(), Some(&b"1"[..]));
    assert_eq!(s.digest(RingRange::FULL).count, 1);
}

#[test]
fn stored_values_do_not_pin_the_callers_buffer() {
    let (s, _) = store();
    let frame = bytes::Bytes::from(vec![7u8; 4096]);
    s.apply(b"k", Write::set(version(T0, 0), &frame[100..200], None))
        .unwrap();
    let got = s.get(b"k").unwrap().value().cloned().unwrap();
    assert_eq!(got.len(), 100);
    // The stored value is its own allocation, not a view into `frame`.
    let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    assert!(!frame_range.contains(&(got.as_ptr() as usize)));
    // Reads hand out the same allocation, without copying.
    let again = s.get(b"k").unwrap().value().cloned().unwrap();
    assert_eq!(got.as_ptr(), again.as_ptr());
}

#[test]
fn concurrent_writers_of_one_key_end_on_the_highest_version() {
    for_seeds(4, |seed| {
        let (s, _) = store();
        let s = &s;
        let threads = 4;
        let per_thread = 20_000u64;
        std::thread::scope(|scope| {
            for t in 0..threads {
                scope.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed ^ t);
                    for _ in 0..per_thread {
                        let ms = T0 + rng.random_range(0..1_000_000);
                        let v = Version {
                            ts: Timestamp::new(ms, 0),
                            writer: t,
                            generation: Generation::new(1),
                        };
                        let payload = v.ts.as_u64().to_le_bytes();
                        if rng.random_bool(0.2) {
                            s.apply(b"hot", Write::delete(v)).unwrap();
                        } else {
                            s.apply(b"hot", Write::set(v, &payload, None)).unwrap();
                        }
                    }
                });
            }
        });
        // Recompute the maximum the writers produced.
        let mut max: Option<(Version, bool)> = None;
        for t in 0..threads {
            let mut rng = StdRng::seed_from_u64(seed ^ t);
            for _ in 0..per_thread {
                let ms = T0 + rng.random_range(0..1_000_000);
                let v = Version {
                    ts: Timestamp::new(ms, 0),
                    writer: t,
                    generation: Generation::new(1),
                };
                let delete = rng.random_bool(0.2);
                if max.is_none_or(|(m, _)| v > m) {
                    max = Some((v, delete));
                }
            }
        }
        let (v, deleted) = max.unwrap();
        match s.get(b"hot").unwrap() {
            Lookup::Live(item) if !deleted => {
                assert_eq!(item.version, v);
                assert_eq!(item.value.as_ref(), v.ts.as_u64().to_le_bytes());
            }
            Lookup::Dead { version, .. } if deleted => assert_eq!(version, v),
            other => panic!("expected {v:?} (deleted: {deleted}), got {other:?}"),
        }
        assert!(s.audit().is_consistent());
    });
}

#[test]
fn ttl_expiry_reads_absent_then_becomes_a_tombstone() {
    let (s, clock) = store();
    let v = version(T0, 0);
    s.apply(b"k", Write::set(v, b"v", Some(T0 + 100))).unwrap();
    let Lookup::Live(item) = s.get(b"k").unwrap() else {
        panic!("live before expiry")
    };
    assert_eq!(item.expires_at, Some(T0 + 100));
    clock.set(T0 + 99);
    s.tick();
    assert!(value_of(&s, b"k").is_some());
    clock.set(T0 + 100);
    // Not ticked yet: the coarse clock still says T0 + 99.
    assert!(value_of(&s, b"k").is_some());
    s.tick();
    assert_eq!(
        s.get(b"k").unwrap(),
        Lookup::Dead {
            version: v,
            expired_at: Some(T0 + 100),
            expiry_stamp: Timestamp::ZERO,
        }
    );
    let used_before = s.used_bytes();
    let m = s.maintain();
    assert_eq!(m.freed, 1, "the value's byte is returned");
    assert_eq!(s.used_bytes(), used_before - 1);
    let st = s.stats();
    assert_eq!((st.expirations, st.tombstones, st.live), (1, 1, 0));
    // An older copy arriving later (repair from a stale replica) stays dead.
    assert_eq!(
        s.apply(b"k", Write::set(version(T0 - 5, 0), b"old", None)),
        Ok(ApplyOutcome::Superseded { current: v })
    );
    // The digest still counts the key at its version, as on replicas that
    // have not swept it yet.
    assert_eq!(s.digest(RingRange::FULL).count, 1);
    assert!(s.audit().is_consistent());
}

#[test]
fn tombstones_are_collected_after_the_grace_period() {
    let grace = Duration::from_secs(60);
    let (s, clock) = store_with(StoreConfig {
        tombstone_grace: grace,
        ..StoreConfig::default()
    });
    let grace_ms = grace.as_millis() as u64;
    s.apply(b"deleted", Write::delete(version(T0, 0))).unwrap();
    // Written long ago, expiring now: its tombstone must live a full grace
    // period after the expiry, not after the (old) version time.
    s.apply(
        b"expiring",
        Write::set(version(T0, 1), b"x", Some(T0 + 30_000)),
    )
    .unwrap();
    clock.set(T0 + grace_ms - 1);
    s.tick();
    s.maintain();
    assert_eq!(s.stats().tombstones, 2, "one deleted, one expired");
    clock.set(T0 + grace_ms);
    s.tick();
    s.maintain();
    assert_eq!(s.get(b"deleted").unwrap(), Lookup::Missing);
    assert!(matches!(s.get(b"expiring").unwrap(), Lookup::Dead { .. }));
    clock.set(T0 + 30_000 + grace_ms);
    s.tick();
    s.maintain();
    assert_eq!(s.get(b"expiring").unwrap(), Lookup::Missing);
    let st = s.stats();
    assert_eq!((st.entries, st.tombstones_collected, st.bytes), (0, 2, 0));
    assert_eq!(s.used_bytes(), 0);
    assert_eq!(s.digest(RingRange::FULL), RangeDigest::default());
}

#[test]
fn an_expiry_in_the_past_reads_as_expired() {
    let (s, _) = store();
    s.apply(b"epoch", Write::set(version(T0, 0), b"v", Some(0)))
        .unwrap();
    s.apply(b"past", Write::set(version(T0, 0), b"v", Some(T0 - 1)))
        .unwrap();
    assert!(matches!(s.get(b"epoch").unwrap(), Lookup::Dead { .. }));
    assert!(matches!(s.get(b"past").unwrap(), Lookup::Dead { .. }));
    s.maintain();
    assert_eq!(s.stats().expirations, 2);
}

#[test]
fn overwriting_a_ttl_cancels_the_old_expiry() {
    let (s, clock) = store();
    s.apply(b"k", Write::set(version(T0, 0), b"a", Some(T0 + 10)))
        .unwrap();
    s.apply(b"k", Write::set(version(T0, 1), b"b", None))
        .unwrap();
    clock.set(T0 + 1_000);
    s.tick();
    s.maintain();
    assert_eq!(value_of(&s, b"k").as_deref(), Some(&b"b"[..]));
    assert_eq!(s.stats().expirations, 0);
}

#[test]
fn eviction_keeps_the_budget_and_prefers_cold_values() {
    let budget = 400_000;
    let (s, _) = store_with(StoreConfig {
        memory_budget: budget,
        shards: 8,
        digest_leaves: 64,
        ..StoreConfig::default()
    });
    let value = [0u8; 200];
    let hot: Vec<Vec<u8>> = (0..100).map(|i| format!("hot-{i}").into_bytes()).collect();
    let mut ms = T0;
    for k in &hot {
        ms += 1;
        s.apply(k, Write::set(version(ms, 0), &value, None))
            .unwrap();
    }
    for i in 0..20_000 {
        ms += 1;
        s.apply(
            format!("cold-{i}").as_bytes(),
            Write::set(version(ms, 0), &value, None),
        )
        .unwrap();
        assert!(s.used_bytes() <= budget, "over budget after write {i}");
        // The hot keys are read all the time.
        let _ = s.get(&hot[i % hot.len()]).unwrap();
    }
    let st = s.stats();
    assert!(st.evictions > 0 && st.stubs_dropped > 0);
    let hot_kept = hot.iter().filter(|k| value_of(&s, k).is_some()).count();
    assert!(hot_kept >= 95, "only {hot_kept} of 100 hot keys survived");
    assert!(s.audit().is_consistent());
}

#[test]
fn evicted_values_leave_stubs_that_refill_and_keep_digests() {
    let (s, _) = store_with(StoreConfig {
        memory_budget: 25_000,
        shards: 1,
        digest_leaves: 1,
        ..StoreConfig::default()
    });
    let value = [1u8; 1000];
    let mut versions = BTreeMap::new();
    for i in 0..30u64 {
        let key = format!("k{i:02}").into_bytes();
        let v = version(T0 + i, 0);
        s.apply(&key, Write::set(v, &value, None)).unwrap();
        versions.insert(key, v);
    }
    let stubs: Vec<_> = versions
        .iter()
        .filter(|(k, v)| s.get(k).unwrap() == Lookup::Evicted { version: **v })
        .collect();
    assert!(!stubs.is_empty(), "the budget forced evictions");
    assert_eq!(
        s.stats().stubs_dropped,
        0,
        "the budget is loose enough to keep stubs"
    );
    // Stubs keep their versions in the digest: it equals that of a replica
    // that holds every value.
    let (full, _) = store();
    for (k, v) in &versions {
        full.apply(k, Write::set(*v, &value, None)).unwrap();
    }
    assert_eq!(s.digest(RingRange::FULL), full.digest(RingRange::FULL));
    // A stub refills from another replica at the same version...
    let (k, v) = stubs[0];
    assert_eq!(
        s.apply(k, Write::set(*v, &value, None)),
        Ok(ApplyOutcome::Duplicate)
    );
    // ...and an older version cannot replace it.
    assert_eq!(
        s.apply(k, Write::set(version(T0 - 1, 0), b"old", None)),
        Ok(ApplyOutcome::Superseded { current: *v })
    );
    assert!(s.audit().is_consistent());
}

#[test]
fn tombstones_are_never_evicted() {
    let (s, _) = store_with(StoreConfig {
        memory_budget: 20_000,
        max_tombstone_percent: 100,
        shards: 1,
        digest_leaves: 1,
        ..StoreConfig::default()
    });
    for i in 0..100u64 {
        s.apply(
            format!("dead-{i}").as_bytes(),
            Write::delete(version(T0 + i, 0)),
        )
        .unwrap();
    }
    for i in 0..1_000u64 {
        s.apply(
            format!("live-{i}").as_bytes(),
            Write::set(version(T0 + i, 1), &[0; 100], None),
        )
        .unwrap();
    }
    for i in 0..100u64 {
        assert!(matches!(
            s.get(format!("dead-{i}").as_bytes()).unwrap(),
            Lookup::Dead { .. }
        ));
    }
    assert_eq!(s.stats().tombstones, 100);
    assert!(s.used_bytes() <= 20_000);
}

/// A random mix of sets, deletes, TTLs, overwrites, clock moves, sweeps and
/// evictions; afterwards (and along the way) the incremental accounting
/// must equal a recount and the budget must hold.
#[test]
fn no_accounting_drift_under_millions_of_mixed_operations() {
    for_seeds(2, |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        let budget = 2_000_000;
        let (s, clock) = store_with(StoreConfig {
            memory_budget: budget,
            tombstone_grace: Duration::from_millis(500),
            shards: 16,
            digest_leaves: 256,
            ..StoreConfig::default()
        });
        let hlc = Hlc::new(NodeId::new("n").unwrap(), Generation::new(1), clock.clone());
        let max_value = 2_000;
        let ops = 1_000_000;
        let mut now = T0;
        for op in 0..ops {
            let key = format!("key-{}", rng.random_range(0..20_000u32));
            let v = if rng.random_bool(0.05) {
                // A stale write from a lagging replica.
                Version {
                    ts: Timestamp::new(now - rng.random_range(0..2_000), 0),
                    ..hlc.new_version()
                }
            } else {
                hlc.new_version()
            };
            match rng.random_range(0..10) {
                0..=1 => {
                    s.apply(key.as_bytes(), Write::delete(v)).unwrap();
                }
                2..=5 => {
                    let ttl = now + rng.random_range(1..300);
                    let len = rng.random_range(0..max_value);
                    s.apply(key.as_bytes(), Write::set(v, &vec![1; len], Some(ttl)))
                        .unwrap();
                }
                _ => {
                    let len = rng.random_range(0..max_value);
                    s.apply(key.as_bytes(), Write::set(v, &vec![2; len], None))
                        .unwrap();
                }
            }
            if op % 100 == 0 {
                now += rng.random_range(0..20);
                clock.set(now);
                s.tick();
                s.maintain();
            }
            if op % 200_000 == 0 {
                let audit = s.audit();
                assert!(audit.is_consistent(), "after {op} ops: {audit:?}");
            }
            // Tombstones are never evicted, so the budget holds up to what
            // tombstones alone occupy.
            let tomb = s.stats().tombstones * (ENTRY_OVERHEAD as u64 + 9);
            assert!(s.used_bytes() <= budget.max(tomb) + (max_value + 64 + ENTRY_OVERHEAD) as u64);
        }
        let audit = s.audit();
        assert!(audit.is_consistent(), "{audit:?}");
        let st = s.stats();
        assert!(
            st.evictions > 0 && st.expirations > 0 && st.tombstones_collected > 0,
            "{st:?}"
        );
    });
}

/// TTL-heavy churn on a virtual clock (the load that made the Go
/// implementation leak bytes until every write failed): the budget holds
/// within a few percent throughout, and once every TTL and grace period
/// has passed, every byte is back.
#[test]
fn budget_holds_under_ttl_churn_and_nothing_leaks() {
    let budget: u64 = 4 << 20;
    let grace = Duration::from_millis(200);
    let (s, clock) = store_with(StoreConfig {
        memory_budget: budget,
        tombstone_grace: grace,
        ..StoreConfig::default()
    });
    let hlc = Hlc::new(NodeId::new("n").unwrap(), Generation::new(1), clock.clone());
    let mut rng = StdRng::seed_from_u64(42);
    let mut now = T0;
    let mut peak = 0;
    // 50 writes per virtual millisecond with TTLs of 50-600 ms: about
    // 6 MB of values and tombstones at steady state against a 4 MiB budget.
    for i in 0..500_000u64 {
        let ttl = now + rng.random_range(50..600);
        let len = rng.random_range(50..150);
        let key = format!("session:{}", rng.random_range(0..200_000));
        s.apply(
            key.as_bytes(),
            Write::set(hlc.new_version(), &vec![0; len], Some(ttl)),
        )
        .unwrap();
        if i % 50 == 0 {
            now += 1;
            clock.set(now);
            s.tick();
            while s.maintain().more {}
        }
        peak = peak.max(s.used_bytes());
    }
    assert!(
        peak <= budget + budget / 50,
        "peak {peak} over budget {budget}"
    );
    let st = s.stats();
    assert!(st.expirations > 100_000 && st.evictions > 0, "{st:?}");
    assert!(s.audit().is_consistent());
    // Past every TTL and grace period, the store is empty and owes nothing.
    clock.set(now + 600 + grace.as_millis() as u64);
    s.tick();
    while s.maintain().more {}
    let st = s.stats();
    assert_eq!((st.entries, st.bytes, s.used_bytes()), (0, 0, 0), "{st:?}");
}

#[test]
fn digests_equal_a_recomputation_for_any_range() {
    for_seeds(3, |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        let (s, _) = store_with(StoreConfig {
            shards: 8,
            digest_leaves: 64,
            ..StoreConfig::default()
        });
        for i in 0..5_000u64 {
            let key = format!("k{}", rng.random_range(0..3_000));
            if rng.random_bool(0.2) {
                s.apply(key.as_bytes(), Write::delete(version(T0 + i, 0)))
                    .unwrap();
            } else {
                s.apply(key.as_bytes(), Write::set(version(T0 + i, 0), b"v", None))
                    .unwrap();
            }
        }
        assert_eq!(s.audit().leaves_differing, 0);
        let leaf = 1u64 << (64 - 6);
        let mut ranges = vec![
            RingRange::FULL,
            RingRange::new(12345, 12345),
            RingRange::new(leaf - 1, 5 * leaf - 1), // leaf-aligned
            RingRange::new(u64::MAX - leaf, leaf),  // wraps
            RingRange::new(u64::MAX, 0),
        ];
        for _ in 0..200 {
            ranges.push(RingRange::new(rng.random(), rng.random()));
        }
        for r in ranges {
            assert_eq!(s.digest(r), digest_by_scan(&s, r), "range {r:?}");
        }
    });
}

#[test]
fn replicas_with_the_same_writes_have_equal_digests() {
    for_seeds(3, |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut writes: Vec<(String, Version, bool)> = (0..2_000u64)
            .map(|i| {
                (
                    format!("k{}", rng.random_range(0..500)),
                    version(T0 + i, 0),
                    rng.random_bool(0.3),
                )
            })
            .collect();
        let (a, _) = store();
        let (b, _) = store();
        let apply = |s: &Store, w: &[(String, Version, bool)]| {
            for (k, v, del) in w {
                let write = if *del {
                    Write::delete(*v)
                } else {
                    Write::set(*v, b"x", None)
                };
                s.apply(k.as_bytes(), write).unwrap();
            }
        };
        apply(&a, &writes);
        // The other replica sees the same writes in another order, some twice.
        writes.reverse();
        writes.extend_from_within(..100);
        apply(&b, &writes);
        assert_eq!(a.digest(RingRange::FULL), b.digest(RingRange::FULL));
        let r = RingRange::new(rng.random(), rng.random());
        assert_eq!(a.digest(r), b.digest(r));
        // One differing key shows up in exactly the ranges that hold it.
        let h = key_hash(b"k0");
        b.apply(b"k0", Write::set(version(T0 + 99_999, 0), b"y", None))
            .unwrap();
        assert_ne!(a.digest(RingRange::FULL), b.digest(RingRange::FULL));
        assert_ne!(
            a.digest(RingRange::new(h - 1, h)),
            b.digest(RingRange::new(h - 1, h))
        );
        assert_eq!(
            a.digest(RingRange::new(h, h - 1)),
            b.digest(RingRange::new(h, h - 1))
        );
    });
}

#[test]
fn scan_returns_each_key_of_the_range_once_in_ring_order() {
    for_seeds(3, |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        let (s, _) = store_with(StoreConfig {
            shards: 8,
            digest_leaves: 64,
            ..StoreConfig::default()
        });
        let keys: Vec<String> = (0..3_000).map(|i| format!("key-{i}")).collect();
        for (i, k) in keys.iter().enumerate() {
            s.apply(
                k.as_bytes(),
                Write::set(version(T0 + i as u64, 0), &[0; 64], None),
            )
            .unwrap();
        }
        for _ in 0..20 {
            let range = if rng.random_bool(0.2) {
                RingRange::new(rng.random(), 0).pipe_full()
            } else {
                RingRange::new(rng.random(), rng.random())
            };
            let expected: HashSet<&str> = keys
                .iter()
                .map(|k| k.as_str())
                .filter(|k| range.contains(key_hash(k.as_bytes())))
                .collect();
            let mut seen = Vec::new();
            let mut after = None;
            let mut churn = 0u64;
            loop {
                let batch = s.scan(range, after.as_ref(), rng.random_range(1..200), 4_000);
                assert!(batch.entries.len() <= 4_000 / 64 + 1);
                for e in &batch.entries {
                    seen.push((
                        e.hash.wrapping_sub(range.start.wrapping_add(1)),
                        e.key.clone(),
                    ));
                }
                // Writes to other keys between batches do not disturb it.
                churn += 1;
                let extra = format!("extra-{churn}");
                s.apply(extra.as_bytes(), Write::set(version(T0, 0), b"", None))
                    .unwrap();
                s.apply(extra.as_bytes(), Write::delete(version(T0, 1)))
                    .unwrap();
                match batch.next {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
            assert!(
                seen.windows(2).all(|w| w[0] < w[1]),
                "clockwise order, no repeats"
            );
            let got: HashSet<&str> = seen
                .iter()
                .map(|(_, k)| std::str::from_utf8(k).unwrap())
                .filter(|k| !k.starts_with("extra-"))
                .collect();
            assert_eq!(got, expected, "range {range:?}");
        }
    });
}

trait PipeFull {
    fn pipe_full(self) -> RingRange;
}

impl PipeFull for RingRange {
    /// The full ring starting at `start`.
    fn pipe_full(self) -> RingRange {
        RingRange::new(self.start, self.start)
    }
}

#[test]
fn scan_reports_tombstones_stubs_and_expired_values() {
    let (s, clock) = store();
    s.apply(b"live", Write::set(version(T0, 0), b"v", Some(T0 + 1_000)))
        .unwrap();
    s.apply(b"gone", Write::delete(version(T0, 1))).unwrap();
    s.apply(b"ttl", Write::set(version(T0, 2), b"v", Some(T0 + 10)))
        .unwrap();
    clock.set(T0 + 10);
    s.tick();
    let batch = s.scan(RingRange::FULL, None, 100, usize::MAX);
    let by_key: BTreeMap<_, _> = batch
        .entries
        .iter()
        .map(|e| (e.key.to_vec(), e.data.clone()))
        .collect();
    assert_eq!(
        by_key[&b"live"[..]],
        EntryData::Value {
            value: bytes::Bytes::from_static(b"v"),
            expires_at: Some(T0 + 1_000)
        }
    );
    assert_eq!(
        by_key[&b"gone"[..]],
        EntryData::Tombstone { expired_at: None }
    );
    assert_eq!(
        by_key[&b"ttl"[..]],
        EntryData::Tombstone {
            expired_at: Some(T0 + 10)
        }
    );
    assert!(batch.next.is_none());
}

/// Cache invalidation deletes keys that were never cached; their
/// tombstones must not grow without bound (DESIGN: bounded everything).
#[test]
fn tombstones_of_an_invalidation_stream_stay_within_their_cap() {
    let budget = 1 << 20;
    let (s, _) = store_with(StoreConfig {
        memory_budget: budget,
        shards: 16,
        digest_leaves: 16,
        ..StoreConfig::default()
    });
    for i in 0..100_000u64 {
        s.apply(
            format!("never-cached:{i}").as_bytes(),
            Write::delete(version(T0 + i, 0)),
        )
        .unwrap();
    }
    let st = s.stats();
    let cap = budget / 4;
    let slack = 16 * (ENTRY_OVERHEAD as u64 + 20);
    assert!(st.bytes <= cap + slack, "{st:?}");
    assert_eq!(st.tombstones + st.tombstones_collected_early, 100_000);
    // The newest tombstones are the ones kept.
    assert!(matches!(
        s.get(b"never-cached:99999").unwrap(),
        Lookup::Dead { .. }
    ));
    // The oldest were collected early: unknown now, not missing.
    assert!(matches!(
        s.get(b"never-cached:0").unwrap(),
        Lookup::Forgotten { .. }
    ));
    assert!(s.audit().is_consistent());
}

/// Memory pressure may collect a tombstone early, but never forget the
/// delete: a value older than it (a lagging replica's, sent by repair, a
/// hint, a fill or anti-entropy) is refused, the key reads as unknown
/// (neither a miss nor a value), and newer writes are accepted as ever.
/// Once a grace period has passed since the forgotten delete, the range is
/// as it would be had the tombstone lived its whole grace period.
#[test]
fn a_tombstone_collected_early_still_refuses_what_it_deleted() {
    let grace = Duration::from_secs(60);
    let (s, clock) = store_with(StoreConfig {
        memory_budget: 1 << 20,
        shards: 16,
        digest_leaves: 16,
        tombstone_grace: grace,
        ..StoreConfig::default()
    });
    s.apply(b"k", Write::delete(version(T0 - 1_000, 1))).unwrap();
    for i in 0..20_000u64 {
        let key = format!("invalidate:{i}");
        s.apply(key.as_bytes(), Write::delete(version(T0, 2)))
            .unwrap();
    }
    assert!(s.stats().tombstones_collected_early > 0);
    let Lookup::Forgotten { below } = s.get(b"k").unwrap() else {
        panic!("k's tombstone should be gone: {:?}", s.get(b"k"));
    };
    assert!(below >= version(T0 - 1_000, 1));
    let older = Write::set(version(T0 - 5_000, 0), b"old", None);
    assert!(!s.apply(b"k", older).unwrap().is_applied(), "delete undone");
    assert!(s.stats().refused_forgotten >= 1);
    assert!(
        s.apply(b"k", Write::set(version(T0 + 1, 0), b"new", None))
            .unwrap()
            .is_applied()
    );
    assert_eq!(value_of(&s, b"k").as_deref(), Some(&b"new"[..]));
    // A grace period after the newest forgotten delete, nothing is unknown.
    clock.set(T0 + grace.as_millis() as u64 + 1);
    s.tick();
    assert_eq!(s.get(b"other").unwrap(), Lookup::Missing);
    assert!(s.apply(b"other", older).unwrap().is_applied());
    assert!(s.audit().is_consistent());
}

/// An evicted value's stub dropped for memory takes its version with it;
/// the range's watermark keeps refusing anything older, so a read repair or
/// anti-entropy pass from a replica holding an overwritten value cannot
/// install it.
#[test]
fn a_dropped_stub_still_refuses_older_values() {
    let (s, _) = store_with(StoreConfig {
        memory_budget: 64 << 10,
        shards: 16,
        digest_leaves: 16,
        ..StoreConfig::default()
    });
    let value = [b'v'; 200];
    for i in 0..5_000u64 {
        let key = format!("k{i}");
        s.apply(key.as_bytes(), Write::set(version(T0, 5), &value, None))
            .unwrap();
    }
    let st = s.stats();
    assert!(st.stubs_dropped > 0 && st.forgotten > 0, "{st:?}");
    let forgotten: Vec<String> = (0..5_000u64)
        .map(|i| format!("k{i}"))
        .filter(|k| matches!(s.get(k.as_bytes()).unwrap(), Lookup::Forgotten { .. }))
        .collect();
    assert!(!forgotten.is_empty());
    for key in &forgotten {
        // The value overwritten by the forgotten version.
        let older = Write::set(version(T0, 4), b"overwritten", None);
        assert!(!s.apply(key.as_bytes(), older).unwrap().is_applied());
        assert!(value_of(&s, key.as_bytes()).is_none());
    }
    assert!(s.audit().is_consistent());
}

/// A value that expired on its source is sent on (repair, fills) as a
/// tombstone: a replica whose clock is behind the expiry must hold it as
/// absent, not as an empty live value.
#[test]
fn an_expired_value_arrives_absent_on_a_replica_whose_clock_is_behind() {
    let (a, clock_a) = store();
    let v = version(T0, 0);
    let expiry = T0 + 5_000;
    a.apply(b"k", Write::set(v, b"value", Some(expiry))).unwrap();
    clock_a.set(expiry + 1);
    a.tick();
    let Lookup::Dead { expired_at, .. } = a.get(b"k").unwrap() else {
        panic!("expired on a");
    };
    let batch = a.scan(RingRange::FULL, None, 10, usize::MAX);
    let dead = a.get(b"k").unwrap();
    for write in [batch.entries[0].write().unwrap(), Write::of_lookup(&dead).unwrap()] {
        let (b, _) = store();
        // Through the wire, as repair and fills send it.
        let frame = bytes::Bytes::from(
            crate::replication::wire::DataRequest::encode_write(b"k", &write),
        );
        let crate::replication::wire::DataRequest::Write {
            version,
            op,
            expiry_stamp,
            ..
        } = crate::replication::wire::DataRequest::decode(&frame).unwrap()
        else {
            panic!("a write");
        };
        b.apply(b"k", op.write(version, expiry_stamp)).unwrap();
        assert!(
            matches!(b.get(b"k").unwrap(), Lookup::Dead { expired_at: e, .. } if e == expired_at),
            "{:?}",
            b.get(b"k")
        );
        assert_eq!(b.get(b"k").unwrap().into_value(), None);
    }
}

/// A tombstone left by an expiry is kept a grace period after the expiry;
/// copied to another replica (rebalancing, repair) it must keep that
/// deadline, not fall back to one counted from its (older) version.
#[test]
fn an_expired_tombstone_travels_with_its_expiry() {
    let grace = Duration::from_secs(10);
    let config = StoreConfig {
        tombstone_grace: grace,
        ..StoreConfig::default()
    };
    let (a, clock_a) = store_with(config.clone());
    let (b, clock_b) = store_with(config);
    let v = version(T0, 0);
    let expiry = T0 + 60_000;
    a.apply(b"k", Write::set(v, b"value", Some(expiry)))
        .unwrap();
    for (clock, store) in [(&clock_a, &a), (&clock_b, &b)] {
        clock.set(expiry);
        store.tick();
    }
    a.maintain();
    let batch = a.scan(RingRange::FULL, None, 10, usize::MAX);
    assert_eq!(
        batch.entries[0].data,
        EntryData::Tombstone {
            expired_at: Some(expiry)
        }
    );
    b.apply(b"k", batch.entries[0].write().unwrap()).unwrap();
    assert_eq!(
        b.get(b"k").unwrap(),
        Lookup::Dead {
            version: v,
            expired_at: Some(expiry),
            expiry_stamp: Timestamp::ZERO,
        }
    );
    // Past version + grace, but not expiry + grace: still a tombstone, so a
    // stale replica's older value cannot come back.
    clock_b.set(expiry + 1);
    b.tick();
    b.maintain();
    assert_eq!(
        b.apply(b"k", Write::set(version(T0 - 1, 0), b"stale", None)),
        Ok(ApplyOutcome::Superseded { current: v })
    );
    clock_b.set(expiry + grace.as_millis() as u64);
    b.tick();
    b.maintain();
    assert_eq!(b.get(b"k").unwrap(), Lookup::Missing);
}

#[test]
fn an_expiry_change_applies_to_its_version_only() {
    let s = Store::new(StoreConfig::default()).unwrap();
    let (v1, v2) = (version(1_000, 0), version(2_000, 0));
    let stamp = |ms| Timestamp::new(ms, 0);
    s.apply(b"k", Write::set(v1, b"old", None)).unwrap();
    // EXPIRE of v1, stamped after v2 was written elsewhere.
    let expire = Write::set(v1, b"old", Some(u64::MAX / 4)).with_expiry_stamp(stamp(3_000));
    s.apply(b"k", Write::delete(v2)).unwrap();
    assert!(!s.apply(b"k", expire).unwrap().is_applied());
    assert_eq!(s.get(b"k").unwrap().version(), Some(v2), "the delete stays");

    // Over the version it read, the latest change wins, in any order.
    s.apply(b"j", Write::set(v1, b"v", Some(u64::MAX / 4))).unwrap();
    let persist = Write::set(v1, b"v", None).with_expiry_stamp(stamp(5_000));
    let earlier = Write::set(v1, b"v", Some(u64::MAX / 8)).with_expiry_stamp(stamp(4_000));
    assert!(s.apply(b"j", persist).unwrap().is_applied());
    assert!(!s.apply(b"j", earlier).unwrap().is_applied());
    let item = s.get(b"j").unwrap().into_item().unwrap();
    assert_eq!((item.expires_at, item.expiry_stamp), (None, stamp(5_000)));
    // A replica that missed the value gets it with its latest expiry.
    let fresh = Store::new(StoreConfig::default()).unwrap();
    assert!(fresh.apply(b"j", persist).unwrap().is_applied());
    assert_eq!(fresh.get(b"j").unwrap(), s.get(b"j").unwrap());
    // Replicas that differ only in the change differ in digest.
    let other = Store::new(StoreConfig::default()).unwrap();
    other.apply(b"j", Write::set(v1, b"v", Some(u64::MAX / 4))).unwrap();
    assert_ne!(
        fresh.digest(RingRange::FULL),
        other.digest(RingRange::FULL)
    );
    assert!(s.audit().is_consistent(), "{:?}", s.audit());
}


/// Review (issue 14): a value written long ago whose expiry was changed
/// just now (EXPIRE/PERSIST keep the version and carry a fresh stamp) is
/// evicted and its stub dropped. A replica that missed the change still
/// holds the same version with the old expiry; until a grace period after
/// the *change*, this store must refuse that stale copy, or read repair
/// and anti-entropy undo the acknowledged expiry change.
#[test]
fn a_dropped_stub_keeps_refusing_what_its_expiry_change_replaced() {
    let grace = Duration::from_secs(60);
    let (s, _) = store_with(StoreConfig {
        memory_budget: 64 << 10,
        shards: 1,
        digest_leaves: 16,
        tombstone_grace: grace,
        ..StoreConfig::default()
    });
    // Written three grace periods ago, everywhere.
    let old = version(T0 - 3 * grace.as_millis() as u64, 1);
    s.apply(b"k", Write::set(old, b"v", None)).unwrap();
    // EXPIRE k 30 now: same version, fresh stamp.
    let change = Write::set(old, b"v", Some(T0 + 30_000)).with_expiry_stamp(Timestamp::new(T0, 0));
    assert!(s.apply(b"k", change).unwrap().is_applied());
    // Memory pressure from other old keys (whose drops need no watermark)
    // evicts k's value and then drops its stub.
    let filler = [b'f'; 200];
    // (No reads of k meanwhile: a read would mark it referenced.)
    for i in 0..5_000u64 {
        let key = format!("filler{i}");
        s.apply(key.as_bytes(), Write::set(old, &filler, None)).unwrap();
    }
    assert!(s.stats().stubs_dropped > 0);
    let after_drop = s.get(b"k").unwrap();
    assert!(
        matches!(after_drop, Lookup::Missing | Lookup::Forgotten { .. }),
        "k still held: {after_drop:?}"
    );
    // The lagging replica's copy: the same version, without the change.
    let stale = Write::set(old, b"v", None);
    let outcome = s.apply(b"k", stale).unwrap();
    assert!(
        !outcome.is_applied(),
        "the expiry change (stamped {T0}) was forgotten without a watermark: \
         get after drop was {after_drop:?}, stale copy {outcome:?}"
    );
}

/// Review (issue 14): a delete (a hint, or anti-entropy from a replica
/// holding an older tombstone) older than the watermark is taken for an
/// absent key. It must not open the key to values the watermark refuses:
/// here the value that the forgotten (newer) delete removed.
#[test]
fn an_old_delete_under_a_watermark_does_not_let_older_values_back() {
    let grace = Duration::from_secs(60);
    let (s, _) = store_with(StoreConfig {
        memory_budget: 1 << 20,
        shards: 16,
        digest_leaves: 16,
        tombstone_grace: grace,
        ..StoreConfig::default()
    });
    // DEL k at T0-1000, acknowledged; its tombstone collected early.
    s.apply(b"k", Write::delete(version(T0 - 1_000, 1))).unwrap();
    for i in 0..20_000u64 {
        let key = format!("invalidate:{i}");
        s.apply(key.as_bytes(), Write::delete(version(T0, 2))).unwrap();
    }
    let Lookup::Forgotten { below } = s.get(b"k").unwrap() else {
        panic!("k's tombstone should be gone: {:?}", s.get(b"k"));
    };
    assert!(below >= version(T0 - 1_000, 1));
    // Later writes turn some tombstones back into values: room under the
    // tombstone cap again (the watermark is still active).
    for i in 0..2_000u64 {
        let key = format!("invalidate:{i}");
        s.apply(key.as_bytes(), Write::set(version(T0 + 1, 0), b"x", None))
            .unwrap();
    }
    assert!(matches!(s.get(b"k").unwrap(), Lookup::Forgotten { .. }));
    // An older delete arrives late (a hint queued before the value below
    // was written): refused, and the key still reads as unknown. Stored,
    // it would read as `Dead` at T0-5000, the key's latest version for a
    // coordinator, and a value at T0-3000 on another owner would win the
    // read (found by the history checker: an acknowledged DEL undone).
    let late = s.apply(b"k", Write::delete(version(T0 - 5_000, 1))).unwrap();
    assert!(matches!(late, ApplyOutcome::Forgotten { .. }), "{late:?}");
    assert!(
        matches!(s.get(b"k").unwrap(), Lookup::Forgotten { .. }),
        "an old tombstone reads as the key's latest version: {:?}",
        s.get(b"k")
    );
    // The value the forgotten delete removed, from a lagging replica.
    let deleted_value = Write::set(version(T0 - 3_000, 1), b"deleted", None);
    let outcome = s.apply(b"k", deleted_value).unwrap();
    assert!(
        !outcome.is_applied(),
        "the delete at T0-1000 is undone: k = {:?}",
        value_of(&s, b"k").map(String::from_utf8)
    );
}

/// Review (issue 14, section 8): an expired value's tombstone sent on
/// (repair, fills) to a replica whose clock is behind must arrive as
/// absent, also when that replica already holds the value at the same
/// version and stamp (today: a duplicate, and the value stays live).
#[test]
fn an_expired_tombstone_makes_a_held_value_absent_on_a_replica_whose_clock_is_behind() {
    let (b, _) = store();
    let v = version(T0 - 1_000, 0);
    let expiry = T0 + 5_000;
    b.apply(b"k", Write::set(v, b"value", Some(expiry))).unwrap();
    b.apply(b"k", Write::tombstone(v, Some(expiry))).unwrap();
    assert_eq!(
        b.get(b"k").unwrap().into_value(),
        None,
        "the value that expired elsewhere is still live here"
    );
}

#[test]
fn conditional_writes_apply_to_the_state_read() {
    let (s, _) = store();
    let t = Timestamp::ZERO;
    let set = |ms, v: &'static [u8]| Write::set(version(ms, 0), v, None);
    // NX: a newer live value blocks it; a newer tombstone does not.
    s.apply(b"k", set(2, b"theirs")).unwrap();
    let nx = Condition::NoValueAfter(Condition::ABSENT);
    assert_eq!(
        s.apply_if(b"k", set(3, b"mine"), nx).unwrap(),
        ApplyOutcome::Conflict {
            current: version(2, 0)
        }
    );
    s.apply(b"k", Write::delete(version(4, 0))).unwrap();
    assert!(s.apply_if(b"k", set(5, b"mine"), nx).unwrap().is_applied());
    // Unchanged: anything newer than the read blocks it, a delete too (a
    // write computed from the value read must not resurrect it).
    let read = Condition::Unchanged((version(5, 0), t));
    s.apply(b"k", Write::delete(version(6, 0))).unwrap();
    assert!(matches!(
        s.apply_if(b"k", set(7, b"xx"), read).unwrap(),
        ApplyOutcome::Conflict { .. }
    ));
    assert!(matches!(s.get(b"k").unwrap(), Lookup::Dead { .. }));
    // An expiry change of the value read is a change too.
    s.apply(b"e", set(1, b"v")).unwrap();
    let changed = Write::set(version(1, 0), b"v", Some(u64::MAX / 2))
        .with_expiry_stamp(Timestamp::new(2, 0));
    s.apply(b"e", changed).unwrap();
    let unchanged = Condition::Unchanged((version(1, 0), t));
    assert!(matches!(
        s.apply_if(b"e", Write::delete(version(3, 0)), unchanged).unwrap(),
        ApplyOutcome::Conflict { .. }
    ));
}

#[test]
fn a_retracted_write_puts_back_the_tombstone_it_replaced() {
    let (s, _) = store();
    s.apply(b"k", Write::delete(version(1, 0))).unwrap();
    s.apply(b"k", Write::set(version(3, 0), b"lost", None)).unwrap();
    // Another version than the one stored: nothing happens.
    assert!(!s.retract(b"k", version(2, 0), None).unwrap());
    let restore = Write::delete(version(1, 0));
    assert!(s.retract(b"k", version(3, 0), Some(restore)).unwrap());
    assert_eq!(
        s.get(b"k").unwrap(),
        Lookup::Dead {
            version: version(1, 0),
            expired_at: None,
            expiry_stamp: Timestamp::ZERO
        }
    );
    // The same write arriving again (a read's repair copied it before it
    // was taken back) is refused.
    let again = s.apply(b"k", Write::set(version(3, 0), b"lost", None)).unwrap();
    assert!(matches!(again, ApplyOutcome::Conflict { .. }), "{again:?}");
    // Without a tombstone to restore, the key is simply gone, and the
    // memory it held is released.
    s.apply(b"n", Write::set(version(4, 0), b"lost", None)).unwrap();
    assert!(s.retract(b"n", version(4, 0), None).unwrap());
    assert_eq!(s.get(b"n").unwrap(), Lookup::Missing);
    assert_eq!(s.stats().live, 0);
    let audit = s.audit();
    assert!(audit.is_consistent(), "accounting stays exact: {audit:?}");
}

#[test]
fn counter_copies_at_one_version_merge_and_digests_follow_their_slots() {
    use super::counter::{Counter, SlotId};
    let slot = |node: &str| SlotId {
        node: bytes::Bytes::copy_from_slice(node.as_bytes()),
        generation: 1,
        serial: 0,
    };
    let (a, _) = store();
    let (b, _) = store();
    let v = version(10, 0);
    let mut mine = Counter::new(0);
    mine.add(&slot("a"), 5);
    let mut theirs = Counter::new(0);
    theirs.add(&slot("b"), 3);
    let write = |c: &Counter| c.encode();
    let (sa, sb) = (write(&mine), write(&theirs));
    a.apply(b"k", Write::counter(v, &sa, None)).unwrap();
    b.apply(b"k", Write::counter(v, &sb, None)).unwrap();
    // Same version, different slots: the digests tell them apart.
    assert_ne!(a.digest(RingRange::FULL), b.digest(RingRange::FULL));
    // Each takes the other's copy: both merge to the same counter.
    assert!(a.apply(b"k", Write::counter(v, &sb, None)).unwrap().is_applied());
    assert!(b.apply(b"k", Write::counter(v, &sa, None)).unwrap().is_applied());
    assert_eq!(a.get(b"k").unwrap(), b.get(b"k").unwrap());
    assert_eq!(a.digest(RingRange::FULL), b.digest(RingRange::FULL));
    assert_eq!(&a.get(b"k").unwrap().into_value().unwrap()[..], b"8");
    // Again: a duplicate.
    assert_eq!(
        a.apply(b"k", Write::counter(v, &sb, None)).unwrap(),
        ApplyOutcome::Duplicate
    );
    // A newer write replaces the counter whole; an older counter loses.
    a.apply(b"k", Write::set(version(11, 0), b"2", None)).unwrap();
    assert_eq!(&a.get(b"k").unwrap().into_value().unwrap()[..], b"2");
    assert!(!a.apply(b"k", Write::counter(v, &sa, None)).unwrap().is_applied());
    // Expiry of a counter keeps the accounting exact.
    let (c, clock) = store();
    c.apply(b"t", Write::counter(v, &sa, Some(clock.now_ms() + 10))).unwrap();
    clock.advance(Duration::from_millis(20));
    c.tick();
    assert!(c.audit().is_consistent(), "{:?}", c.audit());
    assert!(a.audit().is_consistent() && b.audit().is_consistent());
}
