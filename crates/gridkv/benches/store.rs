//! Store get/apply against its physical limit, side by side in one run.
//!
//! Peers: a bare 64-shard hashbrown table with foldhash behind parking_lot
//! locks (the same shape as the store with none of its bookkeeping) and
//! dashmap. Workload: 16-byte keys, 100-byte values, uniformly random keys,
//! 100k and 1M keys, 1 and 2 threads. Each (structure, operation) runs
//! several rounds, interleaved, and the median is reported with its ratio
//! to the bare map, so machine noise hits every peer alike.
//!
//! Run: `cargo bench -p gridkv --bench store` (`-- --quick` for a smoke run).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dashmap::DashMap;
use foldhash::fast::FixedState;
use gridkv::Generation;
use gridkv::hlc::{ManualClock, Timestamp, Version};
use gridkv::store::{Lookup, Store, StoreConfig, Write};
use hashbrown::HashTable;
use parking_lot::RwLock;
use std::hash::BuildHasher;

const VALUE_LEN: usize = 100;
const SHARDS: usize = 64;

/// The physical limit of a sharded map: one hash, one lock, one probe.
struct BareMap {
    shards: Vec<RwLock<HashTable<(Bytes, Bytes)>>>,
    hasher: FixedState,
}

impl BareMap {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
            hasher: FixedState::with_seed(7),
        }
    }

    /// The shard comes from bits below the top 7, which hashbrown uses as
    /// its tag: a shard chosen by the top bits would leave the tags of a
    /// shard's keys nearly all equal.
    #[inline]
    fn shard(&self, h: u64) -> usize {
        ((h << 7) >> 58) as usize
    }

    fn get(&self, key: &[u8]) -> Option<Bytes> {
        let h = self.hasher.hash_one(key);
        let shard = self.shards[self.shard(h)].read();
        shard.find(h, |(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn insert(&self, key: &[u8], value: &[u8]) {
        let h = self.hasher.hash_one(key);
        let mut shard = self.shards[self.shard(h)].write();
        let value = Bytes::copy_from_slice(value);
        match shard.find_mut(h, |(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => {
                let hasher = &self.hasher;
                shard.insert_unique(h, (Bytes::copy_from_slice(key), value), |(k, _)| {
                    hasher.hash_one(k)
                });
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Store,
    Bare,
    Dash,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Store => "gridkv Store",
            Kind::Bare => "bare hashbrown+foldhash",
            Kind::Dash => "dashmap",
        }
    }
}

struct Maps {
    store: Store,
    bare: BareMap,
    dash: DashMap<Bytes, Bytes, FixedState>,
    keys: Vec<[u8; 16]>,
}

fn key(i: usize) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("key:{i:012}").as_bytes());
    k
}

impl Maps {
    fn new(n: usize) -> Self {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let store = Store::with_clock(
            StoreConfig {
                memory_budget: 8 << 30,
                ..StoreConfig::default()
            },
            clock,
        )
        .unwrap();
        let maps = Self {
            store,
            bare: BareMap::new(),
            dash: DashMap::with_capacity_and_hasher_and_shard_amount(
                0,
                FixedState::with_seed(7),
                SHARDS,
            ),
            keys: (0..n).map(key).collect(),
        };
        let value = [7u8; VALUE_LEN];
        for k in &maps.keys {
            maps.apply(Kind::Store, k, &value, 1);
            maps.apply(Kind::Bare, k, &value, 1);
            maps.apply(Kind::Dash, k, &value, 1);
        }
        maps
    }

    #[inline]
    fn get(&self, kind: Kind, k: &[u8]) -> Option<Bytes> {
        match kind {
            Kind::Store => match self.store.get(k).unwrap() {
                Lookup::Live(item) => Some(item.value),
                _ => None,
            },
            Kind::Bare => self.bare.get(k),
            Kind::Dash => self.dash.get(k).map(|v| v.clone()),
        }
    }

    /// `ts` must grow with every write to a key, so that every store apply
    /// is a real overwrite (a superseded write would be cheaper than the
    /// peers' inserts and flatter the store).
    #[inline]
    fn apply(&self, kind: Kind, k: &[u8], value: &[u8], ts: u64) {
        match kind {
            Kind::Store => {
                // Versions come from the caller (replication stamps them);
                // a counter stands in for the HLC, measured separately.
                let v = Version {
                    ts: Timestamp::from_u64(ts),
                    writer: 1,
                    generation: Generation::new(1),
                };
                self.store.apply(k, Write::set(v, value, None)).unwrap();
            }
            Kind::Bare => self.bare.insert(k, value),
            Kind::Dash => {
                self.dash
                    .insert(Bytes::copy_from_slice(k), Bytes::copy_from_slice(value));
            }
        }
    }
}

/// Runs `ops` operations per thread on `threads` threads; returns ns/op
/// (wall time per operation per thread). Thread `t` uses the keys with
/// index `t` modulo `threads`, uniformly at random, so that versions need
/// no shared counter; `epoch` makes every run's versions newer than the
/// previous run's.
fn run(maps: &Maps, kind: Kind, write: bool, threads: usize, ops: usize, epoch: u64) -> f64 {
    let value = [9u8; VALUE_LEN];
    let n = maps.keys.len() as u64;
    let t_count = threads as u64;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                // xorshift: cheap, and the same key sequence for every peer.
                let mut x = (epoch % 7 + 1) ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let base = epoch * ops as u64 + 2;
                for i in 0..ops {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let index = x % n;
                    let k = &maps.keys[(index - index % t_count + t as u64).min(n - 1) as usize];
                    if write {
                        maps.apply(kind, k, &value, base + i as u64);
                    } else {
                        black_box(maps.get(kind, k));
                    }
                }
            });
        }
    });
    start.elapsed().as_nanos() as f64 / ops as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (sizes, rounds, ops): (Vec<usize>, usize, usize) = if quick {
        (vec![100_000], 3, 200_000)
    } else {
        (vec![100_000, 1_000_000], 7, 2_000_000)
    };
    // `GRIDKV_BENCH_KEYS=1000000` measures one size only.
    let sizes = match std::env::var("GRIDKV_BENCH_KEYS") {
        Ok(n) => vec![n.parse().expect("GRIDKV_BENCH_KEYS is a number")],
        Err(_) => sizes,
    };
    let kinds = [Kind::Bare, Kind::Store, Kind::Dash];
    println!("| keys | threads | op | structure | ns/op (per thread) | Mops/s (total) | vs bare |");
    println!("|---:|---:|---|---|---:|---:|---:|");
    let mut epoch = 0;
    for &n in &sizes {
        let maps = Maps::new(n);
        for threads in [1, 2] {
            for write in [false, true] {
                let mut samples = vec![Vec::new(); kinds.len()];
                for (i, &kind) in kinds.iter().enumerate().cycle().take(rounds * kinds.len()) {
                    epoch += 1;
                    samples[i].push(run(&maps, kind, write, threads, ops, epoch));
                }
                let medians: Vec<f64> = samples.into_iter().map(median).collect();
                for (i, &kind) in kinds.iter().enumerate() {
                    println!(
                        "| {n} | {threads} | {} | {} | {:.1} | {:.2} | {:.2}x |",
                        if write { "apply" } else { "get" },
                        kind.name(),
                        medians[i],
                        threads as f64 * 1e3 / medians[i],
                        medians[i] / medians[0],
                    );
                }
            }
        }
    }
}
