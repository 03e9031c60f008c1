//! Quorum operations on a 3-node cluster on loopback (one process), side by
//! side with a raw TCP ping-pong in the same run, and the same cluster again
//! with mutual TLS 1.3 on every cluster connection.
//!
//!     cargo bench -p gridkv --bench replication
//!
//! Two layouts, one after the other (`GRIDKV_BENCH_LAYOUT=separate` or
//! `shared` runs one):
//! - separate: each node on a tokio runtime of its own with one worker
//!   thread, as separate processes have; the raw peer's echo server on the
//!   second node's runtime, its client with the callers on the first's. Each
//!   hop between nodes wakes another thread, for the raw peer too.
//! - shared: the three nodes, the raw peer and every caller on one runtime
//!   of 2 workers. One scheduler and one I/O driver then serve all three
//!   nodes, so a replica's work queues behind the coordinator's and the
//!   other replica's, which no deployment of separate nodes has.
//!
//! Measured, in interleaved rounds (raw, cluster, raw, ...), medians
//! printed:
//! - raw RTT: one 16-byte frame echoed over TCP, one at a time;
//! - set (W = 2) and get (R = 2) latency with one caller, from a node that
//!   is an owner (every node is, N = 3 of 3), 100-byte values;
//! - throughput with 64 concurrent callers (half sets, half gets);
//! - a local read (R = 1 on an owner, no network) against `Store::get`.
//!
//! Two clusters run side by side on the same runtimes: one plaintext, one
//! with mutual TLS (Ed25519 certificates made with rcgen at start, set with
//! the builder's `.tls(TlsStore::from_pem(..))`). Each round measures both,
//! the plaintext one first in even rounds and the TLS one first in odd
//! rounds, and the TLS/plaintext ratios of the medians are printed.
//! `GRIDKV_BENCH_TLS=0` leaves the TLS cluster out.
//!
//! `GRIDKV_BENCH_ROUNDS` (default 3) and `GRIDKV_BENCH_SECS` (per round and
//! side, default 1) scale the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gridkv::net::Lane;
use gridkv::net::tls::TlsStore;
use gridkv::replication::ReadOptions;
use gridkv::{GridKv, Liveness, RingState};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../tests/common/certs.rs"]
mod certs;

#[path = "common/raw_echo.rs"]
mod raw_echo;
use raw_echo::raw_server;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn raw_rtt(addr: &str, secs: u64) -> Histogram<u64> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let frame = [7u8; 20];
    let mut answer = [0u8; 20];
    let mut h = Histogram::new(3).unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let t = Instant::now();
        stream.write_all(&frame).await.unwrap();
        stream.read_exact(&mut answer).await.unwrap();
        h.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    h
}

/// Round trips of the transport alone, between two of the nodes: a request
/// the peer's replica refuses at once (it does not decode), so what is
/// measured is the transport's path and not the store's.
async fn transport_rtt(from: &GridKv, to: &GridKv, secs: u64) -> Histogram<u64> {
    let peer = from.transport().peer(to.advertised_addr());
    let body = bytes::Bytes::from_static(b"not a data request");
    let mut h = Histogram::new(3).unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let t = Instant::now();
        // The node's deadline, not the lane's 10 ms RTO floor: a loaded
        // machine stalls longer than that, and a bench must not fail on it.
        peer.request_with_timeout(Lane::Data, body.clone(), Duration::from_secs(2))
            .await
            .unwrap();
        h.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    h
}

/// The builder of node `id`, with mutual TLS when `ca` is given.
fn builder(id: &str, ca: Option<&certs::Ca>) -> gridkv::ConfigBuilder {
    let b = GridKv::builder(id);
    match ca {
        Some(ca) => {
            let leaf = ca.node(id);
            let store =
                TlsStore::from_pem(ca.pem.as_bytes(), leaf.cert.as_bytes(), leaf.key.as_bytes())
                    .unwrap();
            b.tls(store)
        }
        None => b,
    }
}

async fn cluster(rts: &Runtimes, ca: Option<&certs::Ca>) -> Vec<GridKv> {
    let a = rts
        .of(0)
        .spawn(GridKv::start(builder("a", ca).build().unwrap()))
        .await
        .unwrap()
        .unwrap();
    let seed = a.advertised_addr().to_owned();
    let mut nodes = vec![a];
    for (i, name) in [(1, "b"), (2, "c")] {
        let config = builder(name, ca).seeds([seed.clone()]).build().unwrap();
        let n = rts
            .of(i)
            .spawn(GridKv::start(config))
            .await
            .unwrap()
            .unwrap();
        nodes.push(n);
    }
    loop {
        let ready = nodes.iter().all(|n| {
            n.ring().len() == 3
                && n.members()
                    .iter()
                    .all(|m| m.liveness == Liveness::Alive && m.ring == RingState::Normal)
        });
        if ready {
            return nodes;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const VALUE: [u8; 100] = [b'x'; 100];

async fn one_caller(node: &GridKv, secs: u64, set: bool) -> Histogram<u64> {
    let mut h = Histogram::new(3).unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut i = 0u64;
    while Instant::now() < end {
        let key = format!("key-{}", i % 10_000);
        let t = Instant::now();
        if set {
            node.set(key, &VALUE[..]).await.unwrap();
        } else {
            node.get(key).await.unwrap();
        }
        h.record(t.elapsed().as_nanos() as u64).unwrap();
        i += 1;
    }
    h
}

async fn throughput(nodes: &[GridKv], rts: &Runtimes, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..64u64 {
        let i = c as usize % nodes.len();
        let node = nodes[i].clone();
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(rts.of(i).spawn(async move {
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("key-{}", i % 10_000);
                let ok = if i % 2 == 0 {
                    node.set(key, &VALUE[..]).await.is_ok()
                } else {
                    node.get(key).await.is_ok()
                };
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += 64;
            }
        }));
    }
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let ops = done.load(Ordering::Relaxed);
    let elapsed = t.elapsed().as_secs_f64();
    for task in tasks {
        task.await.unwrap();
    }
    ops as f64 / elapsed
}

/// Local reads and store gets, nanoseconds per op (median of batches).
async fn local_reads(node: &GridKv, secs: u64) -> (f64, f64) {
    let keys: Vec<String> = (0..1000).map(|i| format!("key-{i}")).collect();
    let mut local = Vec::new();
    let mut store = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let t = Instant::now();
        for k in &keys {
            std::hint::black_box(node.get_opts(k, ReadOptions::local()).await.unwrap());
        }
        local.push(t.elapsed().as_nanos() as f64 / keys.len() as f64);
        let t = Instant::now();
        for k in &keys {
            std::hint::black_box(node.store().get(k.as_bytes()).unwrap());
        }
        store.push(t.elapsed().as_nanos() as f64 / keys.len() as f64);
    }
    (median(&mut local), median(&mut store))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// The runtimes of one layout (see the module docs): three of one worker
/// each (separate), or one of two (shared).
struct Runtimes {
    rts: Vec<tokio::runtime::Runtime>,
}

impl Runtimes {
    fn new(shared: bool) -> Self {
        let build = |workers: usize| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .unwrap()
        };
        let rts = if shared {
            vec![build(2)]
        } else {
            (0..3).map(|_| build(1)).collect()
        };
        Self { rts }
    }

    /// The runtime node `i` (and its callers) run on.
    fn of(&self, i: usize) -> tokio::runtime::Handle {
        self.rts[i % self.rts.len()].handle().clone()
    }
}

/// One cluster's figures, a value per round.
#[derive(Default)]
struct Side {
    trans50: Vec<f64>,
    set50: Vec<f64>,
    set99: Vec<f64>,
    get50: Vec<f64>,
    get99: Vec<f64>,
    tput: Vec<f64>,
}

/// Medians over the rounds of one side's figures.
struct Medians {
    trans50: f64,
    set50: f64,
    set99: f64,
    get50: f64,
    get99: f64,
    tput: f64,
}

impl Side {
    /// One round on `nodes`: transport RTT, set and get latency from the
    /// first node, then 64 callers spread over the three.
    async fn measure(&mut self, nodes: &[GridKv], rts: &Runtimes, secs: u64) {
        let tr = {
            let (from, to) = (nodes[0].clone(), nodes[1].clone());
            rts.of(0)
                .spawn(async move { transport_rtt(&from, &to, secs).await })
                .await
                .unwrap()
        };
        let s = {
            let node = nodes[0].clone();
            rts.of(0)
                .spawn(async move { one_caller(&node, secs, true).await })
                .await
                .unwrap()
        };
        let g = {
            let node = nodes[0].clone();
            rts.of(0)
                .spawn(async move { one_caller(&node, secs, false).await })
                .await
                .unwrap()
        };
        self.trans50.push(us(tr.value_at_quantile(0.5)));
        self.set50.push(us(s.value_at_quantile(0.5)));
        self.set99.push(us(s.value_at_quantile(0.99)));
        self.get50.push(us(g.value_at_quantile(0.5)));
        self.get99.push(us(g.value_at_quantile(0.99)));
        self.tput.push(throughput(nodes, rts, secs).await);
    }

    /// The last round, one line.
    fn last(&self) -> String {
        let n = self.set50.len() - 1;
        format!(
            "transport p50 {:.1} µs | set p50 {:.1} p99 {:.1} µs | get p50 {:.1} p99 {:.1} µs | {:.0} ops/s",
            self.trans50[n],
            self.set50[n],
            self.set99[n],
            self.get50[n],
            self.get99[n],
            self.tput[n]
        )
    }

    fn medians(mut self) -> Medians {
        Medians {
            trans50: median(&mut self.trans50),
            set50: median(&mut self.set50),
            set99: median(&mut self.set99),
            get50: median(&mut self.get50),
            get99: median(&mut self.get99),
            tput: median(&mut self.tput),
        }
    }
}

/// Fills the key space through the first node, so gets find values.
async fn fill(nodes: &[GridKv], rts: &Runtimes) {
    let a = nodes[0].clone();
    rts.of(0)
        .spawn(async move {
            for i in 0..10_000 {
                a.set(format!("key-{i}"), &VALUE[..]).await.unwrap();
            }
        })
        .await
        .unwrap();
}

async fn shutdown(nodes: Vec<GridKv>, rts: &Runtimes) {
    for (i, n) in nodes.into_iter().enumerate() {
        rts.of(i)
            .spawn(async move { n.shutdown().await })
            .await
            .unwrap();
    }
}

fn main() {
    let rounds = env("GRIDKV_BENCH_ROUNDS", 3);
    let secs = env("GRIDKV_BENCH_SECS", 1);
    let tls = env("GRIDKV_BENCH_TLS", 1) != 0;
    let layouts: &[bool] = match std::env::var("GRIDKV_BENCH_LAYOUT").as_deref() {
        Ok("separate") => &[false],
        Ok("shared") => &[true],
        _ => &[false, true],
    };
    for &shared in layouts {
        run(shared, rounds, secs, tls);
    }
}

fn run(shared: bool, rounds: u64, secs: u64, with_tls: bool) {
    let rts = Runtimes::new(shared);
    let main = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "\n=== layout {}: {}",
        if shared { "shared" } else { "separate" },
        if shared {
            "the three nodes, the raw peer and the callers on one runtime of 2 workers"
        } else {
            "each node on a runtime of its own, 1 worker each"
        }
    );
    let ca = with_tls.then(|| certs::Ca::new("bench CA"));
    main.block_on(async {
        let raw = rts.of(1).spawn(raw_server()).await.unwrap();
        let nodes = cluster(&rts, None).await;
        fill(&nodes, &rts).await;
        let tls_nodes = match &ca {
            Some(ca) => {
                let nodes = cluster(&rts, Some(ca)).await;
                assert!(nodes.iter().all(|n| n.transport().tls().is_some()));
                fill(&nodes, &rts).await;
                Some(nodes)
            }
            None => None,
        };
        let (mut raw50, mut raw99) = (vec![], vec![]);
        let (mut plain, mut tls) = (Side::default(), Side::default());
        let mut local = vec![];
        let mut store = vec![];
        for round in 0..rounds {
            // Every caller runs as a task on a node's runtime, as an
            // application's callers do, the raw peer's client too.
            let r = {
                let raw = raw.clone();
                rts.of(0)
                    .spawn(async move { raw_rtt(&raw, secs).await })
                    .await
                    .unwrap()
            };
            raw50.push(us(r.value_at_quantile(0.5)));
            raw99.push(us(r.value_at_quantile(0.99)));
            // Alternate which cluster goes first, so a drift in the
            // machine's load within a round favours neither.
            match &tls_nodes {
                Some(t) if round % 2 == 1 => {
                    tls.measure(t, &rts, secs).await;
                    plain.measure(&nodes, &rts, secs).await;
                }
                Some(t) => {
                    plain.measure(&nodes, &rts, secs).await;
                    tls.measure(t, &rts, secs).await;
                }
                None => plain.measure(&nodes, &rts, secs).await,
            }
            let (l, st) = {
                let node = nodes[1].clone();
                rts.of(1)
                    .spawn(async move { local_reads(&node, secs).await })
                    .await
                    .unwrap()
            };
            local.push(l);
            store.push(st);
            println!(
                "round {round}: raw p50 {:.1} µs | plain: {} | local {:.0} ns vs store {:.0} ns",
                raw50[round as usize],
                plain.last(),
                l,
                st
            );
            if tls_nodes.is_some() {
                println!("round {round}: TLS:   {}", tls.last());
            }
        }
        let (r50, r99) = (median(&mut raw50), median(&mut raw99));
        let (l, st) = (median(&mut local), median(&mut store));
        let p = plain.medians();
        println!("medians over {rounds} rounds of {secs} s:");
        println!("raw TCP RTT       p50 {r50:8.1} µs  p99 {r99:8.1} µs");
        println!(
            "transport RTT     p50 {:8.1} µs                 p50 = {:.2}× raw",
            p.trans50,
            p.trans50 / r50
        );
        println!(
            "set (W=2)         p50 {:8.1} µs  p99 {:8.1} µs  p50 = {:.2}× raw",
            p.set50,
            p.set99,
            p.set50 / r50
        );
        println!(
            "get (R=2)         p50 {:8.1} µs  p99 {:8.1} µs  p50 = {:.2}× raw",
            p.get50,
            p.get99,
            p.get50 / r50
        );
        println!(
            "64 callers        {:8.0} ops/s (half sets, half gets)",
            p.tput
        );
        println!(
            "local read        {l:8.0} ns  vs store get {st:.0} ns = {:.2}×",
            l / st
        );
        if tls_nodes.is_some() {
            let t = tls.medians();
            println!("mutual TLS, the same figures and TLS ÷ plaintext:");
            println!("| measure | plain | TLS | TLS ÷ plain |");
            println!("|---|---:|---:|---:|");
            for (name, a, b) in [
                ("transport RTT p50 (µs)", p.trans50, t.trans50),
                ("set W=2 p50 (µs)", p.set50, t.set50),
                ("set W=2 p99 (µs)", p.set99, t.set99),
                ("get R=2 p50 (µs)", p.get50, t.get50),
                ("get R=2 p99 (µs)", p.get99, t.get99),
                ("64 callers (ops/s)", p.tput, t.tput),
            ] {
                println!("| {name} | {a:.1} | {b:.1} | {:.2}× |", b / a);
            }
        }
        shutdown(nodes, &rts).await;
        if let Some(t) = tls_nodes {
            for n in &t {
                assert_eq!(n.transport().stats().tls_failures, 0);
            }
            shutdown(t, &rts).await;
        }
    });
}
