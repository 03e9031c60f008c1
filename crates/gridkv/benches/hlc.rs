//! HLC `now()` cost, next to the bare wall-clock read it is built on.
//!
//! Run with `cargo bench -p gridkv --bench hlc`. Standard library only: each
//! row is the median of several timed runs; the 2-thread rows run both
//! threads at once on the same clock (the contended case) and report the
//! per-thread cost and the aggregate throughput. The last column is the
//! ratio to the bare `SystemTime::now()` row with the same thread count.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use gridkv::hlc::{Clock, CoarseSystemClock, Hlc, ManualClock, SystemClock};
use gridkv::{Generation, NodeId};

/// Timed runs per row; the median is reported.
const RUNS: usize = 9;
/// Operations per thread per run.
const OPS: u64 = 2_000_000;
/// Target for single-threaded `Hlc::now()` on the system clock (issue 2).
const TARGET_NS: f64 = 30.0;

struct Row {
    name: &'static str,
    threads: usize,
    /// Median per-thread cost of one operation.
    ns_per_op: f64,
    /// Median aggregate operations per second over all threads.
    ops_per_sec: f64,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Runs `op` `OPS` times on each of `threads` threads at once, `RUNS` times.
fn bench<F>(name: &'static str, threads: usize, op: F) -> Row
where
    F: Fn() + Sync,
{
    // Warm-up: page in code and data, let the CPU clock up.
    for _ in 0..OPS / 4 {
        op();
    }
    let mut per_op = Vec::with_capacity(RUNS);
    let mut throughput = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let barrier = Barrier::new(threads);
        let elapsed: Vec<Duration> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let start = Instant::now();
                        for _ in 0..OPS {
                            op();
                        }
                        start.elapsed()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mean_ns = elapsed.iter().map(|d| d.as_nanos() as f64).sum::<f64>()
            / (threads as f64 * OPS as f64);
        let slowest = elapsed.iter().max().unwrap().as_secs_f64();
        per_op.push(mean_ns);
        throughput.push(threads as f64 * OPS as f64 / slowest);
    }
    Row {
        name,
        threads,
        ns_per_op: median(per_op),
        ops_per_sec: median(throughput),
    }
}

fn hlc_with(clock: Arc<dyn Clock>) -> Hlc {
    Hlc::new(NodeId::new("bench").unwrap(), Generation::now(), clock)
}

fn main() {
    // `cargo bench` passes `--bench` (and any filter); this harness runs
    // everything regardless.
    let system = hlc_with(Arc::new(SystemClock));
    let manual = hlc_with(Arc::new(ManualClock::new(1_700_000_000_000)));
    let coarse = hlc_with(Arc::new(CoarseSystemClock));

    let rows = [
        bench("SystemTime::now() (peer)", 1, || {
            black_box(SystemTime::now());
        }),
        bench("SystemClock::now_ms()", 1, || {
            black_box(SystemClock.now_ms());
        }),
        bench("Hlc::now() SystemClock", 1, || {
            black_box(system.now());
        }),
        bench("Hlc::now() ManualClock", 1, || {
            black_box(manual.now());
        }),
        bench("CoarseSystemClock::now_ms()", 1, || {
            black_box(CoarseSystemClock.now_ms());
        }),
        bench("Hlc::now() CoarseSystemClock", 1, || {
            black_box(coarse.now());
        }),
        bench("SystemTime::now() (peer)", 2, || {
            black_box(SystemTime::now());
        }),
        bench("Hlc::now() SystemClock", 2, || {
            black_box(system.now());
        }),
        bench("Hlc::now() ManualClock", 2, || {
            black_box(manual.now());
        }),
        bench("Hlc::now() CoarseSystemClock", 2, || {
            black_box(coarse.now());
        }),
    ];

    let peer = |threads: usize| {
        rows.iter()
            .find(|r| r.threads == threads && r.name.starts_with("SystemTime"))
            .map(|r| r.ns_per_op)
    };

    println!();
    println!("HLC now(): median of {RUNS} runs x {OPS} ops per thread");
    println!(
        "available parallelism: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "| {:<30} | {:>7} | {:>13} | {:>15} | {:>18} |",
        "operation", "threads", "ns/op/thread", "aggregate Mop/s", "vs SystemTime::now"
    );
    println!(
        "|{:-<32}|{:-<9}|{:-<15}|{:-<17}|{:-<20}|",
        "", "", "", "", ""
    );
    for r in &rows {
        let ratio =
            peer(r.threads).map_or(String::from("-"), |p| format!("{:.2}x", r.ns_per_op / p));
        println!(
            "| {:<30} | {:>7} | {:>13.1} | {:>15.1} | {:>18} |",
            r.name,
            r.threads,
            r.ns_per_op,
            r.ops_per_sec / 1e6,
            ratio
        );
    }
    println!();
    for name in ["Hlc::now() CoarseSystemClock", "Hlc::now() SystemClock"] {
        let row = rows
            .iter()
            .find(|r| r.threads == 1 && r.name == name)
            .expect("row exists");
        println!(
            "target: {name}, 1 thread <= {TARGET_NS} ns/op: {:.1} ns ({})",
            row.ns_per_op,
            if row.ns_per_op <= TARGET_NS {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    println!("command: cargo bench -p gridkv --bench hlc");
}
