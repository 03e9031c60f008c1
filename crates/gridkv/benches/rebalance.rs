//! Anti-entropy and rebalancing at scale, on a loopback cluster in one
//! process (2 worker threads).
//!
//!     cargo bench -p gridkv --bench rebalance
//!
//! - Anti-entropy: 3 nodes (N = 3) hold `GRIDKV_BENCH_KEYS` keys (default
//!   1,000,000; 16-byte values); 10 keys are changed on one node's store
//!   only; the bytes the other nodes' anti-entropy exchanges until they
//!   hold the change, against the dataset's size.
//! - Rebalancing: a fourth node joins while one caller keeps reading and
//!   writing; keys per second streamed into it, and the caller's p99
//!   before and during the join. `GRIDKV_BENCH_FILL_RATE` sets the fill
//!   rate limit in MiB/s (0 for none; default the library's, 16).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gridkv::hlc::{Timestamp, Version};
use gridkv::store::Write;
use gridkv::{GridKv, Liveness, ReplicationConfig, RingState};
use hdrhistogram::Histogram;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn start(name: &str, seed: Option<&GridKv>) -> GridKv {
    // `GRIDKV_BENCH_FILL_RATE`: the fill rate limit in MiB/s, 0 for none
    // (default: the library's default).
    let fill_rate = match std::env::var("GRIDKV_BENCH_FILL_RATE") {
        Ok(v) => match v.parse::<u64>().expect("GRIDKV_BENCH_FILL_RATE: MiB/s") {
            0 => None,
            mib => Some(mib << 20),
        },
        Err(_) => ReplicationConfig::default().fill_rate,
    };
    let replication = ReplicationConfig {
        anti_entropy_interval: Duration::from_secs(1),
        fill_rate,
        ..ReplicationConfig::default()
    };
    let mut b = GridKv::builder(name).replication(replication);
    if let Some(s) = seed {
        b = b.seeds([s.advertised_addr().to_owned()]);
    }
    GridKv::start(b.build().unwrap()).await.unwrap()
}

async fn wait_normal(nodes: &[GridKv], count: usize) {
    loop {
        let ok = nodes.iter().all(|n| {
            n.ring().len() == count
                && n.members()
                    .iter()
                    .all(|m| m.liveness == Liveness::Alive && m.ring == RingState::Normal)
        });
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn main() {
    let keys = env("GRIDKV_BENCH_KEYS", 1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let a = start("a", None).await;
        let b = start("b", Some(&a)).await;
        let c = start("c", Some(&a)).await;
        let mut nodes = vec![a, b, c];
        wait_normal(&nodes, 3).await;
        let load = Instant::now();
        let value = bytes::Bytes::from_static(b"0123456789abcdef");
        let batch: Vec<String> = (0..keys).map(|i| format!("key-{i:08}")).collect();
        for chunk in batch.chunks(256) {
            let pairs: Vec<(&String, bytes::Bytes)> = chunk.iter().map(|k| (k, value.clone())).collect();
            for r in nodes[0].set_many(&pairs).await {
                r.unwrap();
            }
        }
        println!("loaded {keys} keys in {:.1} s", load.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs(3)).await;

        // Anti-entropy: 10 keys changed on c's store only.
        let before: Vec<u64> = nodes.iter().map(|n| n.replication_stats().anti_entropy_bytes).collect();
        let rounds_before: Vec<u64> = nodes.iter().map(|n| n.replication_stats().anti_entropy_rounds).collect();
        use gridkv::hlc::Clock;
        let newer = Version {
            ts: Timestamp::new(gridkv::hlc::SystemClock.now_ms() + 1, 0),
            ..Version::ZERO
        };
        for i in 0..10 {
            nodes[2].store().apply(format!("key-{:08}", i * 997).as_bytes(), Write::set(newer, b"changed", None)).unwrap();
        }
        let t = Instant::now();
        loop {
            let done = nodes[..2].iter().all(|n| {
                (0..10).all(|i| {
                    n.store().get(format!("key-{:08}", i * 997).as_bytes()).unwrap().value().map(|v| &v[..]) == Some(&b"changed"[..])
                })
            });
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let spent: Vec<u64> = nodes.iter().zip(&before).map(|(n, b)| n.replication_stats().anti_entropy_bytes - b).collect();
        let rounds: Vec<u64> = nodes.iter().zip(&rounds_before).map(|(n, b)| n.replication_stats().anti_entropy_rounds - b).collect();
        let dataset = keys * (12 + 16);
        println!(
            "anti-entropy: 10 differing keys among {keys} repaired in {:.2} s; bytes exchanged per node {:?} over {:?} rounds (dataset {} MB); a and b: {:.4}% of the dataset",
            t.elapsed().as_secs_f64(), spent, rounds, dataset / 1_000_000,
            (spent[0] + spent[1]) as f64 / 2.0 / dataset as f64 * 100.0
        );

        // Rebalancing: d joins under a foreground caller.
        let stop = Arc::new(AtomicBool::new(false));
        let during = Arc::new(AtomicBool::new(false));
        let caller = {
            let node = nodes[0].clone();
            let (stop, during) = (stop.clone(), during.clone());
            tokio::spawn(async move {
                let mut before = Histogram::<u64>::new(3).unwrap();
                let mut while_joining = Histogram::<u64>::new(3).unwrap();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("key-{:08}", (i * 7919) % keys);
                    let t = Instant::now();
                    if i % 2 == 0 {
                        let _ = node.get(&key).await;
                    } else {
                        let _ = node.set(&key, "fg").await;
                    }
                    let h = if during.load(Ordering::Relaxed) { &mut while_joining } else { &mut before };
                    h.record(t.elapsed().as_micros() as u64).unwrap();
                    i += 1;
                }
                (before, while_joining)
            })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        during.store(true, Ordering::Relaxed);
        let t = Instant::now();
        let d = start("d", Some(&nodes[0])).await;
        nodes.push(d);
        wait_normal(&nodes, 4).await;
        let join = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        let (before, while_joining) = caller.await.unwrap();
        let filled = nodes[3].replication_stats().fill_entries;
        println!(
            "rebalancing: d streamed {filled} entries in {:.2} s from start to normal ({:.0} keys/s including 1 s settle); d holds {} keys ({:.2} of {keys})",
            join.as_secs_f64(),
            filled as f64 / join.as_secs_f64(),
            nodes[3].store().stats().live,
            nodes[3].store().stats().live as f64 / keys as f64
        );
        println!(
            "foreground caller (mixed get/set, 1 caller): p50 {} µs p99 {} µs before; p50 {} µs p99 {} µs during the join",
            before.value_at_quantile(0.5), before.value_at_quantile(0.99),
            while_joining.value_at_quantile(0.5), while_joining.value_at_quantile(0.99)
        );
        for n in &nodes {
            n.shutdown().await;
        }
    });
}
