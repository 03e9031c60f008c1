//! Ring benchmarks: `preference_list` latency and allocations, ring build
//! time, and the balance curve for 150/300/600 virtual nodes.
//!
//! `cargo bench -p gridkv --bench ring`. Std only: a timed loop over 1M
//! random key hashes, the median of several runs, and a counting global
//! allocator that makes the binary exit non-zero if the placement path
//! allocates. Output is Markdown, ready for docs/BENCHMARKS.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use gridkv::NodeId;
use gridkv::ring::{Ring, SharedRing};
use gridkv::rng::SplitMix64;

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter touches no memory the allocator hands out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            System.realloc(ptr, layout, new_size)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const OPS: usize = 1_000_000;
const RUNS: usize = 9;
const CURVE_SETS: u64 = 2_000;

/// `count` random names of 6 to 20 characters from `[a-z0-9]`.
fn random_names(seed: u64, count: usize) -> Vec<NodeId> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|_| {
            let len = 6 + (rng.next_u64() % 15) as usize;
            let name: String = (0..len)
                .map(|_| ALPHABET[(rng.next_u64() % 36) as usize] as char)
                .collect();
            NodeId::new(&name).unwrap()
        })
        .collect()
}

fn numbered(count: usize) -> Vec<NodeId> {
    (1..=count)
        .map(|i| NodeId::new(&format!("node-{i}")).unwrap())
        .collect()
}

struct Timing {
    median: f64,
    min: f64,
    max: f64,
    allocations: usize,
}

/// Runs `op` over every hash `RUNS` times; ns per call, and the allocations
/// made inside the timed loops.
fn time_per_op(hashes: &[u64], mut op: impl FnMut(u64) -> u64) -> Timing {
    let mut runs = Vec::with_capacity(RUNS);
    let mut allocations = 0;
    for _ in 0..RUNS {
        let mut checksum = 0u64;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let start = Instant::now();
        for &h in hashes {
            checksum = checksum.wrapping_add(op(black_box(h)));
        }
        let elapsed = start.elapsed();
        allocations += ALLOCATIONS.load(Ordering::Relaxed) - before;
        black_box(checksum);
        runs.push(elapsed.as_nanos() as f64 / hashes.len() as f64);
    }
    runs.sort_by(f64::total_cmp);
    Timing {
        median: runs[RUNS / 2],
        min: runs[0],
        max: runs[RUNS - 1],
        allocations,
    }
}

fn sum_tags<'a>(nodes: impl IntoIterator<Item = &'a NodeId>) -> u64 {
    nodes
        .into_iter()
        .fold(0u64, |acc, n| acc.wrapping_add(n.tag()))
}

/// Max over mean of the members' shares of the ring as primary, computed
/// exactly from the arcs (what 1M sampled keys approximate to ~0.3%).
fn max_over_mean(ring: &Ring) -> f64 {
    let mut shares = vec![0f64; ring.len()];
    for (range, owners) in ring.ranges(1) {
        let member = ring
            .nodes()
            .binary_search(owners.primary().unwrap())
            .unwrap();
        shares[member] += range.end.wrapping_sub(range.start) as f64;
    }
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    shares.iter().copied().fold(0.0, f64::max) / mean
}

fn main() {
    let mut rng = SplitMix64::new(0xbe9c);
    let hashes: Vec<u64> = (0..OPS).map(|_| rng.next_u64()).collect();
    let ring = Ring::new(1, numbered(10)).unwrap();
    let shared = SharedRing::new(ring.clone());
    // arc-swap sets up a per-thread slot on a thread's first load.
    drop(shared.load());

    let cases: [(&str, Timing); 4] = [
        (
            "`preference_list(h, 3)`, walk the 3 replicas",
            time_per_op(&hashes, |h| sum_tags(ring.preference_list(h, 3))),
        ),
        (
            "`preference_list(h, 1)`, walk the replica",
            time_per_op(&hashes, |h| sum_tags(ring.preference_list(h, 1))),
        ),
        (
            "`primary(h)`",
            time_per_op(&hashes, |h| ring.primary(h).unwrap().tag()),
        ),
        (
            "`SharedRing::load()` + `preference_list(h, 3)`",
            time_per_op(&hashes, |h| sum_tags(shared.load().preference_list(h, 3))),
        ),
    ];

    println!(
        "### Ring placement (10 nodes x 150 vnodes, {OPS} random key hashes, median of {RUNS} runs)\n"
    );
    println!("| operation | ns/op median | min | max | allocations in timed loops |");
    println!("|---|---:|---:|---:|---:|");
    let mut allocated = 0;
    for (name, t) in &cases {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {} |",
            t.median, t.min, t.max, t.allocations
        );
        allocated += t.allocations;
    }

    println!("\n### Ring build (median of 5)\n");
    println!("| members x vnodes | build time |");
    println!("|---|---:|");
    for (members, vnodes) in [(10, 150), (100, 150), (10, 600)] {
        let nodes = numbered(members);
        let mut runs: Vec<f64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                black_box(Ring::with_vnodes(1, nodes.iter().copied(), vnodes).unwrap());
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        println!("| {members} x {vnodes} | {:.2} ms |", runs[2]);
    }

    println!(
        "\n### Ring balance: max/mean primary share, 10 members, {CURVE_SETS} random name sets (seeds 0..{CURVE_SETS})\n"
    );
    println!("| vnodes | mean | p50 | p99 | worst (seed) | sets > 1.25 |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let sets: Vec<Vec<NodeId>> = (0..CURVE_SETS).map(|s| random_names(s, 10)).collect();
    for vnodes in [150, 300, 600] {
        let mut ratios: Vec<(f64, usize)> = sets
            .iter()
            .enumerate()
            .map(|(seed, names)| {
                let ring = Ring::with_vnodes(1, names.iter().copied(), vnodes).unwrap();
                (max_over_mean(&ring), seed)
            })
            .collect();
        ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n = ratios.len();
        let mean = ratios.iter().map(|r| r.0).sum::<f64>() / n as f64;
        let mut over: Vec<usize> = ratios.iter().filter(|r| r.0 > 1.25).map(|r| r.1).collect();
        over.sort_unstable();
        println!(
            "| {vnodes} | {mean:.3} | {:.3} | {:.3} | {:.3} ({}) | {} {:?} |",
            ratios[n / 2].0,
            ratios[n * 99 / 100].0,
            ratios[n - 1].0,
            ratios[n - 1].1,
            over.len(),
            over
        );
    }

    if allocated > 0 {
        eprintln!("error: the placement path allocated {allocated} times");
        std::process::exit(1);
    }
}
