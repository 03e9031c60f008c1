//! Transport request/response against a raw tokio TCP ping-pong, the
//! physical limit, in the same program and runtime.
//!
//!     cargo bench -p gridkv --bench transport
//!
//! Two measurements, each run in interleaved rounds (raw, transport, raw,
//! ...) so machine noise hits both alike; the medians of the rounds and
//! their ratio are printed:
//!
//! - one request at a time: per-request latency in an HDR histogram, p50
//!   and p99 (and p99.9, max);
//! - 64 requests in flight on one connection: throughput. The raw peer
//!   writes 64 frames in one syscall and reads the 64 answers, the best a
//!   hand-written pipeline can do; the transport runs 64 tasks each issuing
//!   requests one after another, as callers do.
//!
//! The transport runs twice in each round, plaintext and mutual TLS 1.3
//! (certificates made with rcgen at start), and the TLS/plaintext ratio is
//! printed beside the transport/raw one.
//!
//! Messages are 16-byte bodies on the data lane. `GRIDKV_BENCH_ROUNDS`
//! (default 5) and `GRIDKV_BENCH_SECS` (per round and side, default 1) scale
//! the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gridkv::net::{Incoming, Lane, Transport, TransportConfig};
use gridkv::{Generation, NodeId};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../tests/common/certs.rs"]
mod certs;

#[path = "common/raw_echo.rs"]
mod raw_echo;
use raw_echo::raw_server;

const BODY: usize = 16;
const DEPTH: usize = 64;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn frame() -> Vec<u8> {
    let mut frame = (BODY as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&[7u8; BODY]);
    frame
}

async fn raw_sequential(addr: &str, secs: u64) -> Histogram<u64> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let frame = frame();
    let mut answer = vec![0u8; frame.len()];
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let start = Instant::now();
        stream.write_all(&frame).await.unwrap();
        stream.read_exact(&mut answer).await.unwrap();
        hist.record(start.elapsed().as_nanos() as u64).unwrap();
    }
    hist
}

async fn raw_pipelined(addr: &str, secs: u64) -> f64 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let batch: Vec<u8> = frame().repeat(DEPTH);
    let mut answers = vec![0u8; batch.len()];
    let mut done = 0u64;
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    while Instant::now() < end {
        stream.write_all(&batch).await.unwrap();
        stream.read_exact(&mut answers).await.unwrap();
        done += DEPTH as u64;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn echo(incoming: Incoming) {
    let mut data = incoming.data;
    tokio::spawn(async move {
        while let Some(inbound) = data.recv().await {
            if let Some(reply) = inbound.reply {
                let _ = reply.respond(inbound.body);
            }
        }
    });
}

/// A client and an echoing server, with mutual TLS when `ca` is given.
async fn transport_pair(ca: Option<&certs::Ca>) -> (Transport, Transport) {
    let config = |id| {
        let mut config =
            TransportConfig::new("bench", NodeId::new(id).unwrap(), Generation::new(1));
        config.tls = ca.map(|ca| {
            let leaf = ca.node(id);
            gridkv::net::tls::TlsStore::from_pem(
                ca.pem.as_bytes(),
                leaf.cert.as_bytes(),
                leaf.key.as_bytes(),
            )
            .unwrap()
        });
        config
    };
    let (client, _client_in) = Transport::bind(config("client")).await.unwrap();
    let (server, server_in) = Transport::bind(config("server")).await.unwrap();
    echo(server_in);
    (client, server)
}

async fn transport_sequential(client: &Transport, addr: &str, secs: u64) -> Histogram<u64> {
    let peer = client.peer(addr);
    let body = Bytes::from(vec![7u8; BODY]);
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let start = Instant::now();
        peer.request(Lane::Data, body.clone()).await.unwrap();
        hist.record(start.elapsed().as_nanos() as u64).unwrap();
    }
    hist
}

async fn transport_pipelined(client: &Transport, addr: &str, secs: u64) -> f64 {
    let peer = client.peer(addr);
    let body = Bytes::from(vec![7u8; BODY]);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..DEPTH)
        .map(|_| {
            let (peer, body, stop, done) = (peer.clone(), body.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    peer.request_with_timeout(Lane::Data, body.clone(), Duration::from_secs(5))
                        .await
                        .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn us(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

fn main() {
    let rounds = env("GRIDKV_BENCH_ROUNDS", 5) as usize;
    let secs = env("GRIDKV_BENCH_SECS", 1);
    // Both runtime flavours: on one thread every hop between client and
    // server is a poll, not a thread wakeup; on two workers (how a node
    // runs) wakeups across threads dominate small-message latency.
    println!("## current-thread runtime\n");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    run(&runtime, rounds, secs);
    println!("\n## multi-thread runtime, 2 workers\n");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    run(&runtime, rounds, secs);
}

/// One side's per-round figures.
#[derive(Default)]
struct Figures {
    p50: Vec<f64>,
    p99: Vec<f64>,
    p999: Vec<f64>,
    max: Vec<f64>,
    tput: Vec<f64>,
}

impl Figures {
    fn record(&mut self, hist: &Histogram<u64>) {
        self.p50.push(us(hist.value_at_quantile(0.5)));
        self.p99.push(us(hist.value_at_quantile(0.99)));
        self.p999.push(us(hist.value_at_quantile(0.999)));
        self.max.push(us(hist.max()));
    }

    fn latency_row(&self, name: &str) -> (f64, f64) {
        let (p50, p99) = (median(self.p50.clone()), median(self.p99.clone()));
        println!(
            "| {name:<13} | {p50:6.1} | {p99:6.1} | {:8.1} | {:6.0} |",
            median(self.p999.clone()),
            median(self.max.clone())
        );
        (p50, p99)
    }
}

fn run(runtime: &tokio::runtime::Runtime, rounds: usize, secs: u64) {
    let ca = certs::Ca::new("bench CA");
    runtime.block_on(async {
        let raw_addr = raw_server().await;
        let (client, server) = transport_pair(None).await;
        let (tls_client, tls_server) = transport_pair(Some(&ca)).await;
        let addr = server.local_addr().to_string();
        let tls_addr = tls_server.local_addr().to_string();
        // Warm up every path (connections, allocator, caches).
        raw_sequential(&raw_addr, 1).await;
        transport_sequential(&client, &addr, 1).await;
        transport_sequential(&tls_client, &tls_addr, 1).await;

        let (mut raw, mut plain, mut tls) =
            (Figures::default(), Figures::default(), Figures::default());
        for _ in 0..rounds {
            raw.record(&raw_sequential(&raw_addr, secs).await);
            plain.record(&transport_sequential(&client, &addr, secs).await);
            tls.record(&transport_sequential(&tls_client, &tls_addr, secs).await);
        }
        println!("one request at a time ({rounds} rounds x {secs} s each side, median of rounds)");
        println!("| path          | p50 µs | p99 µs | p99.9 µs | max µs |");
        println!("|---------------|-------:|-------:|---------:|-------:|");
        let (rp50, rp99) = raw.latency_row("raw tokio");
        let (gp50, gp99) = plain.latency_row("transport");
        let (tp50, tp99) = tls.latency_row("transport TLS");
        println!(
            "| plain / raw   | {:5.2}x | {:5.2}x |",
            gp50 / rp50,
            gp99 / rp99
        );
        println!(
            "| TLS / plain   | {:5.2}x | {:5.2}x |",
            tp50 / gp50,
            tp99 / gp99
        );

        for _ in 0..rounds {
            raw.tput.push(raw_pipelined(&raw_addr, secs).await);
            plain
                .tput
                .push(transport_pipelined(&client, &addr, secs).await);
            tls.tput
                .push(transport_pipelined(&tls_client, &tls_addr, secs).await);
        }
        let (rt, gt, tt) = (median(raw.tput), median(plain.tput), median(tls.tput));
        println!();
        println!("{DEPTH} requests in flight on one connection (median of rounds)");
        println!("| path          | requests/s |");
        println!("|---------------|-----------:|");
        println!("| raw tokio     | {rt:10.0} |");
        println!("| transport     | {gt:10.0} |");
        println!("| transport TLS | {tt:10.0} |");
        println!("| plain / raw   | {:9.2}x |", gt / rt);
        println!("| TLS / plain   | {:9.2}x |", tt / gt);
        let stats = client.stats();
        println!();
        println!(
            "client: {} frames in {} bytes sent in {} socket writes; {} connections dialled",
            stats.frames_sent, stats.bytes_sent, stats.write_batches, stats.connections_dialled
        );
        assert_eq!(tls_client.stats().tls_failures, 0);
        for node in [client, server, tls_client, tls_server] {
            node.shutdown().await;
        }
    });
}
