//! Whole nodes under turmoil with one or two clocks off: the clock monitor
//! compares each node with the median of the members it reaches.
//!
//! - One node 3 s fast and one 3 s slow (5 s bound): every node goes on
//!   coordinating writes. The slow node overwrites what the fast one wrote
//!   (re-stamping past it), and the overwrite wins everywhere. Before the
//!   clock monitor every one of those overwrites failed: the slow node's
//!   drift guard, measured against its own clock, refused the fast node's
//!   versions, so it could not re-stamp past them.
//! - One node an hour fast, or an hour slow: it stops coordinating writes
//!   (`Error::ClockOffset`) within seconds, still answers reads and stores
//!   what the others write, stays alive, and is not ready; the other
//!   nodes' writes all succeed. Once its clock is fixed it coordinates
//!   writes again by itself. Every key's history is checked throughout.
//!
//! Each run takes a seed (`GRIDKV_SEED` replays one), printed on failure.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::history::{History, Op};
use common::turmoil_net::SimNet;
use gridkv::hlc::Clock;
use gridkv::{Error, Generation, GridKv, Liveness, ReplicationConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HOSTS: usize = 5;
const HOUR: i64 = 3_600_000;
/// The workload starts once every host is on the ring, or after this.
const WARM_UP: Duration = Duration::from_secs(4);

/// Virtual wall clock: a fixed epoch plus simulated time, plus a skew the
/// test may change while the simulation runs.
#[derive(Debug)]
struct SimClock(Arc<AtomicI64>);

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default().as_millis() as i64;
        (1_700_000_000_000i64 + elapsed + self.0.load(Ordering::Relaxed)) as u64
    }
}

fn name(i: usize) -> String {
    format!("n{i}")
}

fn elapsed() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

fn seed() -> u64 {
    std::env::var("GRIDKV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xC10C)
}

async fn start(i: usize, seed: u64, skew: Arc<AtomicI64>) -> turmoil::Result<GridKv> {
    let replication = ReplicationConfig {
        timeout: Duration::from_millis(800),
        anti_entropy_interval: Duration::from_secs(2),
        ..ReplicationConfig::default()
    };
    let config = GridKv::builder(name(i))
        .cluster("sim")
        .listen("0.0.0.0:7000")
        .insecure()
        .advertise(format!("{}:7000", name(i)))
        .seeds(["n0:7000", "n1:7000"])
        .generation(Generation::new(1))
        .rng_seed(seed ^ ((i as u64) << 40))
        .clock(Arc::new(SimClock(skew)))
        .replication(replication)
        .build()?;
    let node = GridKv::start_with(config, Arc::new(SimNet)).await?;
    // Not `ready()`: a node whose clock is off is never ready.
    node.joined().await?;
    while (!node.is_serving() || node.ring().len() < HOSTS) && elapsed() < WARM_UP {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(node)
}

fn sim(seed: u64, secs: u64) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(secs))
        .min_message_latency(Duration::from_micros(200))
        .max_message_latency(Duration::from_millis(3))
        .build()
}

/// Runs `sim` to its end; a simulation error is a failure.
fn finish(mut sim: turmoil::Sim<'_>, seed: u64) {
    if let Err(e) = sim.run() {
        panic!("seed {seed} (replay: GRIDKV_SEED={seed}): simulation error: {e}");
    }
}

/// Overwrites the slow node makes of keys the fast node wrote first.
const ROUNDS: u64 = 60;

/// What the ±3 s run saw.
#[derive(Default)]
struct Overwrites {
    /// Round `r` written by the fast node.
    written: Vec<AtomicBool>,
    /// Round `r` overwritten (or failed) by the slow node.
    done: Vec<AtomicBool>,
    failures: Mutex<Vec<String>>,
    succeeded: AtomicU64,
}

#[test]
fn clock_one_node_3s_fast_and_one_3s_slow_all_coordinate_writes() {
    let seed = seed();
    let world = Arc::new(Overwrites {
        written: (0..ROUNDS).map(|_| AtomicBool::new(false)).collect(),
        done: (0..ROUNDS).map(|_| AtomicBool::new(false)).collect(),
        ..Overwrites::default()
    });
    let skews = [0, 0, 0, 3_000, -3_000];
    let mut sim = sim(seed, 60);
    for (i, skew) in skews.into_iter().enumerate() {
        let world = world.clone();
        sim.host(name(i).as_str(), move || {
            let world = world.clone();
            async move {
                let node = start(i, seed, Arc::new(AtomicI64::new(skew))).await?;
                match i {
                    3 => fast(&node, &world).await,
                    4 => slow(&node, &world).await,
                    _ => std::future::pending().await,
                }
                Ok(())
            }
        });
    }
    sim.client("check", {
        let world = world.clone();
        async move {
            while !world.done.iter().all(|d| d.load(Ordering::Acquire)) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        }
    });
    finish(sim, seed);
    let failures = world.failures.lock().unwrap();
    let ok = world.succeeded.load(Ordering::Relaxed);
    eprintln!("±3 s: {ok} of {ROUNDS} overwrites through the slow node succeeded");
    assert!(
        failures.is_empty(),
        "seed {seed} (replay: GRIDKV_SEED={seed}): {} of {ROUNDS} rounds failed, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(ok, ROUNDS);
}

/// The fast node writes each round's key, then waits for the slow node's
/// overwrite and checks it sees it.
async fn fast(node: &GridKv, world: &Overwrites) {
    for r in 0..ROUNDS {
        let key = format!("o{r}");
        while node.set(&key, "fast").await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        world.written[r as usize].store(true, Ordering::Release);
        while !world.done[r as usize].load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match node.get(&key).await {
            Ok(v) if v.as_deref() == Some(&b"slow"[..]) => {}
            // The overwrite failed: already reported.
            Ok(_) if !slow_succeeded(world, r) => {}
            other => world.failures.lock().unwrap().push(format!(
                "round {r}: the fast node read {other:?} after the overwrite"
            )),
        }
    }
}

fn slow_succeeded(world: &Overwrites, r: u64) -> bool {
    !world
        .failures
        .lock()
        .unwrap()
        .iter()
        .any(|f| f.starts_with(&format!("round {r}: overwrite")))
}

async fn slow(node: &GridKv, world: &Overwrites) {
    for r in 0..ROUNDS {
        while !world.written[r as usize].load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let key = format!("o{r}");
        match node.set(&key, "slow").await {
            Ok(()) => {
                world.succeeded.fetch_add(1, Ordering::Relaxed);
                let read = node.get(&key).await;
                if !matches!(&read, Ok(Some(v)) if v == &b"slow"[..]) {
                    world
                        .failures
                        .lock()
                        .unwrap()
                        .push(format!("round {r}: read through the slow node: {read:?}"));
                }
            }
            Err(e) => world
                .failures
                .lock()
                .unwrap()
                .push(format!("round {r}: overwrite through the slow node: {e}")),
        }
        world.done[r as usize].store(true, Ordering::Release);
    }
}

/// The wild node's clock is fixed at this time.
const FIXED_AT: Duration = Duration::from_secs(16);
/// From here on it must coordinate writes again.
const RECOVERED_BY: Duration = Duration::from_secs(18);
/// From here until [`FIXED_AT`] it must be fenced.
const FENCED_BY: Duration = Duration::from_secs(8);

/// Outcomes of one host's calls, by phase: fenced (before the fix) and
/// recovered (after [`RECOVERED_BY`]).
#[derive(Default, Debug)]
struct Tally {
    writes_ok: [u64; 2],
    writes_offset: [u64; 2],
    writes_other: [u64; 2],
    reads_ok: [u64; 2],
    reads_failed: [u64; 2],
    /// While it should be fenced, how often the node was (fenced, not
    /// ready, alive in n0's view), and the first time it was not.
    states_as_expected: u64,
    state_unexpected: Option<(Duration, bool, bool, bool)>,
    first_error: Option<String>,
    /// When the node was first seen fenced, and when first seen unfenced
    /// after its clock was fixed.
    fenced_at: Option<Duration>,
    recovered_at: Option<Duration>,
}

struct Wild {
    histories: Vec<History>,
    next: Vec<AtomicU64>,
    tallies: Vec<Mutex<Tally>>,
    nodes: Mutex<Vec<Option<GridKv>>>,
}

fn phase(t: Duration) -> Option<usize> {
    if t >= FENCED_BY && t < FIXED_AT {
        Some(0)
    } else if t >= RECOVERED_BY {
        Some(1)
    } else {
        None
    }
}

/// One host's workload: write its own key (increasing values, now and
/// then a delete), read a random key, tally by phase.
async fn workload(i: usize, node: GridKv, seed: u64, world: Arc<Wild>) {
    let mut rng = StdRng::seed_from_u64(seed ^ ((i as u64) << 8));
    loop {
        let t = elapsed();
        let value = world.next[i].fetch_add(1, Ordering::Relaxed);
        let delete = rng.random_bool(0.1);
        let at = if delete {
            world.histories[i].begin_delete(value)
        } else {
            world.histories[i].begin_write(value)
        };
        let result = if delete {
            node.delete(format!("k{i}")).await.map(|_| ())
        } else {
            node.set(format!("k{i}"), value.to_string()).await
        };
        world.histories[i].finish_write(at, result.is_ok());
        let j = rng.random_range(0..HOSTS);
        let start = common::history::now();
        let read = node.get(format!("k{j}")).await;
        if let Ok(v) = &read {
            let value = v
                .as_ref()
                .map(|b| std::str::from_utf8(b).unwrap().parse::<u64>().unwrap())
                .unwrap_or(0);
            world.histories[j].record(start, Op::Read { value });
        }
        if let Some(p) = phase(t).filter(|_| phase(elapsed()) == phase(t)) {
            let mut tally = world.tallies[i].lock().unwrap();
            match &result {
                Ok(()) => tally.writes_ok[p] += 1,
                Err(Error::ClockOffset { .. }) => tally.writes_offset[p] += 1,
                Err(e) => {
                    tally.writes_other[p] += 1;
                    tally
                        .first_error
                        .get_or_insert_with(|| format!("{t:?}: {e}"));
                }
            }
            if read.is_ok() {
                tally.reads_ok[p] += 1;
            } else {
                tally.reads_failed[p] += 1;
            }
            if p == 0 && i == HOSTS - 1 {
                let alive = world.nodes.lock().unwrap()[0].as_ref().is_some_and(|n0| {
                    n0.member(&node.id())
                        .is_some_and(|m| m.liveness == Liveness::Alive)
                });
                let state = (node.clock().fenced, node.is_ready(), alive);
                if state == (true, false, true) {
                    tally.states_as_expected += 1;
                } else {
                    let (f, r, a) = state;
                    tally.state_unexpected.get_or_insert((t, f, r, a));
                }
            }
        }
        if i == HOSTS - 1 {
            let fenced = node.clock().fenced;
            let mut tally = world.tallies[i].lock().unwrap();
            if fenced && tally.fenced_at.is_none() {
                tally.fenced_at = Some(t);
            }
            if !fenced && t >= FIXED_AT && tally.recovered_at.is_none() {
                tally.recovered_at = Some(t);
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..40))).await;
    }
}

fn one_node_an_hour_off(skew_ms: i64) {
    let seed = seed() ^ skew_ms as u64;
    let world = Arc::new(Wild {
        histories: (0..HOSTS).map(|_| History::default()).collect(),
        next: (0..HOSTS).map(|_| AtomicU64::new(1)).collect(),
        tallies: (0..HOSTS).map(|_| Mutex::default()).collect(),
        nodes: Mutex::new(vec![None; HOSTS]),
    });
    let wild = Arc::new(AtomicI64::new(skew_ms));
    let mut sim = sim(seed, 40);
    for i in 0..HOSTS {
        let world = world.clone();
        let skew = if i == HOSTS - 1 {
            wild.clone()
        } else {
            Arc::new(AtomicI64::new(0))
        };
        sim.host(name(i).as_str(), move || {
            let (world, skew) = (world.clone(), skew.clone());
            async move {
                let node = start(i, seed, skew).await?;
                world.nodes.lock().unwrap()[i] = Some(node.clone());
                workload(i, node, seed, world).await;
                Ok(())
            }
        });
    }
    sim.client("clock", {
        let wild = wild.clone();
        async move {
            tokio::time::sleep(FIXED_AT).await;
            wild.store(0, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(12)).await;
            Ok(())
        }
    });
    finish(sim, seed);
    let fail = |what: String| -> ! { panic!("seed {seed} (replay: GRIDKV_SEED={seed}): {what}") };
    for (k, h) in world.histories.iter().enumerate() {
        let v = h.violations();
        if !v.is_empty() {
            fail(format!(
                "k{k}: {} violations, first: {:#?}",
                v.len(),
                &v[..v.len().min(3)]
            ));
        }
    }
    let wild_tally = world.tallies[HOSTS - 1].lock().unwrap();
    eprintln!("clock {skew_ms:+} ms on n4: {wild_tally:?}");
    // Fenced: no write through it, every one refused as a clock offset;
    // its reads served; alive, not ready.
    if wild_tally.writes_ok[0] != 0
        || wild_tally.writes_other[0] != 0
        || wild_tally.writes_offset[0] < 20
    {
        fail(format!(
            "while its clock was off, n4's writes went: {wild_tally:?}"
        ));
    }
    if wild_tally.reads_failed[0] != 0 || wild_tally.reads_ok[0] < 20 {
        fail(format!("while fenced, n4's reads went: {wild_tally:?}"));
    }
    if wild_tally.state_unexpected.is_some() || wild_tally.states_as_expected < 20 {
        fail(format!(
            "n4 was not (fenced, not ready, alive) throughout: {wild_tally:?}"
        ));
    }
    // Recovered: every write through it succeeds again.
    if wild_tally.writes_ok[1] < 20 || wild_tally.writes_offset[1] + wild_tally.writes_other[1] != 0
    {
        fail(format!(
            "after its clock was fixed, n4's writes went: {wild_tally:?}"
        ));
    }
    for i in 0..HOSTS - 1 {
        let t = world.tallies[i].lock().unwrap();
        let failed =
            t.writes_offset[0] + t.writes_other[0] + t.writes_offset[1] + t.writes_other[1];
        if failed != 0 || t.writes_ok[0] < 20 {
            fail(format!(
                "n{i}'s writes failed while n4's clock was off: {t:?}"
            ));
        }
    }
}

#[test]
fn clock_one_node_an_hour_fast_is_fenced_then_recovers() {
    one_node_an_hour_off(HOUR);
}

#[test]
fn clock_one_node_an_hour_slow_is_fenced_then_recovers() {
    one_node_an_hour_off(-HOUR);
}
