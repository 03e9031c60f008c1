//! Whole GridKV nodes in two and three datacenters under a deterministic
//! network simulation (turmoil): 50–150 ms between datacenters, frames
//! lost on the WAN links, and per schedule one datacenter-sized fault: a
//! datacenter cut off and healed, a datacenter lost, or a node joining in
//! one datacenter while another is cut off.
//!
//! Each key has one writer (the host named after it); every host reads
//! every key. The history checker runs per consistency level: a read the
//! levels promise to be fresh (any read for QUORUM/QUORUM and
//! EACH_QUORUM/LOCAL_QUORUM; a read in the writer's datacenter for
//! LOCAL_QUORUM/LOCAL_QUORUM) must return the newest value acknowledged
//! before it started, or a newer one some write attempted; any other read
//! may be stale, but only with a value some write attempted. After the
//! faults heal, every datacenter must serve every key's last acknowledged
//! value (cross-datacenter replication caught up).
//!
//! `GRIDKV_SIM_SEEDS=<n>` sets how many schedules each test runs (default
//! 2), `GRIDKV_SEED=<seed>` replays one; a failing schedule prints its seed.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::history::{History, Op};
use common::turmoil_net::SimNet;
use gridkv::hlc::Clock;
use gridkv::net::faults::LinkFaults;
use gridkv::{
    Consistency, ConsistencyLevel as L, Generation, GridKv, NodeId, ReplicaPlacement,
    ReplicationConfig, SwimConfig,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The cluster forms and fills before the workload starts: across a WAN
/// the first fills take longer (each of hundreds of pieces costs round
/// trips), and every join restarts the others' fills.
fn warm_up() -> Duration {
    if wan_latency() {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(6)
    }
}
/// Faults strike from the warm-up to here...
fn faults_end() -> Duration {
    warm_up() + Duration::from_secs(16)
}
/// ...then the workload runs on until here, and the catch-up check follows.
fn work_end() -> Duration {
    warm_up() + Duration::from_secs(22)
}
fn end() -> Duration {
    warm_up() + Duration::from_secs(39)
}

#[derive(Debug)]
struct SimClock;

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        1_700_000_000_000 + turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
    }
}

/// The datacenter-sized fault of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The last datacenter cut off from the others, then healed.
    CutOff,
    /// Every host of the last datacenter crashed, restarted at the end.
    Lost,
    /// The last datacenter cut off while a new host joins the first.
    JoinWhileCutOff,
}

#[derive(Debug, Clone, Copy)]
struct Levels {
    write: L,
    read: L,
}

impl Levels {
    /// Whether a read in datacenter `reader` of a key written in `writer`
    /// must be fresh: what the library says these levels guarantee with
    /// copies placed as `placement` (the claim under test).
    fn fresh(&self, placement: &ReplicaPlacement, reader: &str, writer: &str) -> bool {
        match gridkv::Guarantee::of(self.write, self.read, placement) {
            gridkv::Guarantee::Strong => true,
            gridkv::Guarantee::StrongWithinDatacenter => reader == writer,
            gridkv::Guarantee::Eventual => false,
        }
    }
}

struct Host {
    name: String,
    dc: String,
}

struct World {
    hosts: Vec<Host>,
    placement: ReplicaPlacement,
    levels: Levels,
    /// Per key: the writes and the reads that must be fresh.
    strict: Vec<History>,
    /// Per key: reads that may be stale, as (start, end, value).
    loose: Vec<Mutex<Vec<(Duration, Duration, u64)>>>,
    next: Vec<AtomicU64>,
    generations: Vec<AtomicU64>,
    loss: f64,
    /// One-way latency between each pair of datacenters.
    wan: Mutex<Vec<(String, String, Duration)>>,
    /// Keys written (the first `writers` hosts write).
    writers: usize,
    /// What each datacenter read of every key once the faults healed.
    caught_up: Mutex<Vec<String>>,
}

fn config(world: &World, i: usize, generation: u64, seed: u64) -> gridkv::Config {
    let host = &world.hosts[i];
    let mut transport = gridkv::net::TransportConfig::new(
        "sim",
        NodeId::new(&host.name).unwrap(),
        Generation::new(generation),
    );
    transport.heartbeat_interval = Duration::from_millis(500);
    transport.idle_timeout = Duration::from_secs(3);
    let replication = ReplicationConfig {
        timeout: Duration::from_millis(1500),
        anti_entropy_interval: Duration::from_secs(3),
        consistency: Consistency::Eventual,
        write_consistency: Some(world.levels.write),
        read_consistency: Some(world.levels.read),
        ..ReplicationConfig::default()
    }
    .with_placement(world.placement.clone());
    let seeds: Vec<String> = ["a0", "b0"].iter().map(|h| format!("{h}:7000")).collect();
    GridKv::builder(host.name.clone())
        .cluster("sim")
        .listen("0.0.0.0:7000")
        .insecure()
        .advertise(format!("{}:7000", host.name))
        .seeds(seeds)
        .datacenter(host.dc.clone())
        .generation(Generation::new(generation))
        .rng_seed(seed ^ ((i as u64) << 40) ^ generation)
        .clock(Arc::new(SimClock))
        .membership(SwimConfig::lan())
        .replication(replication)
        .transport(transport)
        .build()
        .expect("valid config")
}

fn now() -> Duration {
    common::history::now()
}

async fn host(i: usize, seed: u64, world: Arc<World>) -> turmoil::Result {
    let generation = world.generations[i].fetch_add(1, Ordering::Relaxed) + 1;
    let node = GridKv::start_with(config(&world, i, generation, seed), Arc::new(SimNet)).await?;
    // Every WAN link's latency and loss, both ways (each side delays and
    // drops what it sends), in the transport's writer: turmoil's own link
    // latency is per message, not per stream.
    let wan = world.wan.lock().unwrap().clone();
    for (j, other) in world.hosts.iter().enumerate() {
        let mine = &world.hosts[i].dc;
        if j != i && other.dc != *mine {
            let delay = wan
                .iter()
                .find(|(a, b, _)| (a == mine && *b == other.dc) || (b == mine && *a == other.dc))
                .map_or(Duration::ZERO, |w| w.2);
            let faults = LinkFaults {
                drop: world.loss,
                delay,
                ..LinkFaults::default()
            };
            node.transport()
                .faults()
                .set(NodeId::new(&other.name).unwrap(), faults);
        }
    }
    if std::env::var("GRIDKV_TRACE_SIM").is_ok() {
        let n = node.clone();
        tokio::spawn(async move {
            for _ in 0..22 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let me = n.member(&n.id()).map(|m| m.ring);
                let view: Vec<String> = n
                    .members()
                    .iter()
                    .map(|m| format!("{}:{}/{}", m.identity.id, m.liveness, m.ring.as_str()))
                    .collect();
                eprintln!("  {} sees {view:?}", n.id());
                let st = n.replication_stats();
                eprintln!(
                    "{:?}: {} {} members {} ring {me:?} fill {} ae {} ts {:?}",
                    now(),
                    n.id(),
                    n.readiness(),
                    n.members().len(),
                    st.fill_entries,
                    st.anti_entropy_rounds,
                    n.transport_stats().request_timeouts
                );
            }
        });
    }
    if let Err(e) = node.ready().await {
        eprintln!("{:?}: {} not ready: {e}", now(), world.hosts[i].name);
        return Err(e.into());
    }
    if std::env::var("GRIDKV_TRACE_SIM").is_ok() {
        eprintln!("{:?}: {} ready", now(), world.hosts[i].name);
    }
    while now() < warm_up() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5151 ^ ((i as u64) << 8) ^ generation);
    let me = &world.hosts[i];
    while now() < work_end() {
        if i < world.writers {
            let value = world.next[i].fetch_add(1, Ordering::Relaxed);
            let at = world.strict[i].begin_write(value);
            let result = node.set(format!("k{i}"), value.to_string()).await;
            if std::env::var("GRIDKV_TRACE_SIM").is_ok() && result.is_err() {
                eprintln!("{:?}: {} write: {result:?}", now(), me.name);
            }
            world.strict[i].finish_write(at, result.is_ok());
        }
        let k = rng.random_range(0..world.writers);
        let start = now();
        if let Ok(v) = node.get(format!("k{k}")).await {
            let value = v.map_or(0, |b| {
                std::str::from_utf8(&b).unwrap().parse::<u64>().unwrap()
            });
            if world
                .levels
                .fresh(&world.placement, &me.dc, &world.hosts[k].dc)
            {
                world.strict[k].record(start, Op::Read { value });
            } else {
                world.loose[k].lock().unwrap().push((start, now(), value));
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..120))).await;
    }
    // Catch-up: every key's last acknowledged value, read here at
    // LOCAL_ONE until it arrives.
    let local = node.with_consistency(L::LocalOne);
    for k in 0..world.writers {
        let last = world.strict[k]
            .events()
            .iter()
            .filter_map(|e| match e.op {
                Op::Write { value, ok: true } => Some(value),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        loop {
            let got = local
                .get(format!("k{k}"))
                .await
                .ok()
                .flatten()
                .map(|b| std::str::from_utf8(&b).unwrap().parse::<u64>().unwrap())
                .unwrap_or(0);
            if got >= last {
                break;
            }
            if now() >= end() - Duration::from_secs(1) {
                world.caught_up.lock().unwrap().push(format!(
                    "{} ({}) still reads k{k} = {got}, {last} was acknowledged",
                    me.name, me.dc
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Stay up for the others' catch-up.
    while now() < end() - Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// One schedule; returns its violations.
fn run(seed: u64, dcs: &[(&str, usize, usize)], levels: Levels, fault: Fault) -> Vec<String> {
    if std::env::var("GRIDKV_TRACE_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("GRIDKV_TRACE_LOG").unwrap())
            .try_init();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut hosts: Vec<Host> = Vec::new();
    for (dc, count, _) in dcs {
        for n in 0..*count {
            hosts.push(Host {
                name: format!("{dc}{n}"),
                dc: (*dc).to_owned(),
            });
        }
    }
    let writers = hosts.len();
    let joiner = (fault == Fault::JoinWhileCutOff).then(|| {
        hosts.push(Host {
            name: format!("{}{}", dcs[0].0, dcs[0].1),
            dc: dcs[0].0.to_owned(),
        });
        hosts.len() - 1
    });
    let placement =
        ReplicaPlacement::per_datacenter(dcs.iter().map(|(dc, _, copies)| (*dc, *copies))).unwrap();
    let world = Arc::new(World {
        placement,
        levels,
        strict: (0..writers).map(|_| History::default()).collect(),
        loose: (0..writers).map(|_| Mutex::default()).collect(),
        next: (0..writers).map(|_| AtomicU64::new(1)).collect(),
        generations: (0..hosts.len()).map(|_| AtomicU64::new(0)).collect(),
        loss: if wan_latency() {
            rng.random_range(0.0..0.05)
        } else {
            0.0
        },
        writers,
        hosts,
        wan: Mutex::default(),
        caught_up: Mutex::default(),
    });
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(end() + Duration::from_secs(5))
        .min_message_latency(Duration::from_micros(200))
        .max_message_latency(Duration::from_millis(2))
        .build();
    let names: Vec<String> = world.hosts.iter().map(|h| h.name.clone()).collect();
    for (i, name) in names.iter().enumerate() {
        if Some(i) == joiner {
            continue;
        }
        let w = world.clone();
        sim.host(name.as_str(), move || host(i, seed, w.clone()));
    }
    sim.client("clock", async move {
        tokio::time::sleep(end()).await;
        Ok(())
    });
    // 50–150 ms between each pair of datacenters.
    for (x, (a, ..)) in dcs.iter().enumerate() {
        for (b, ..) in &dcs[x + 1..] {
            let drawn = Duration::from_millis(rng.random_range(50..=150));
            let latency = if wan_latency() { drawn } else { Duration::ZERO };
            world
                .wan
                .lock()
                .unwrap()
                .push(((*a).to_owned(), (*b).to_owned(), latency));
        }
    }
    let joiner_name = joiner.map(|j| names[j].clone());
    let in_dc = |dc: &str| -> Vec<String> {
        world
            .hosts
            .iter()
            .filter(|h| h.dc == dc && Some(&h.name) != joiner_name.as_ref())
            .map(|h| h.name.clone())
            .collect()
    };
    let last = dcs.last().unwrap().0;
    let (others, cut): (Vec<String>, Vec<String>) = world
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .filter(|n| Some(n) != joiner_name.as_ref())
        .partition(|n| !in_dc(last).contains(n));
    let fault_at = warm_up() + Duration::from_millis(rng.random_range(1000..4000));
    let heal_at = faults_end() - Duration::from_millis(rng.random_range(0..3000));
    let (mut struck, mut healed) = (false, false);
    loop {
        let elapsed = sim.elapsed();
        if !struck && elapsed >= fault_at && std::env::var("GRIDKV_SIM_NOFAULT").is_err() {
            struck = true;
            match fault {
                Fault::CutOff | Fault::JoinWhileCutOff => {
                    for a in &others {
                        for b in &cut {
                            sim.partition(a.as_str(), b.as_str());
                        }
                    }
                    if let Some(j) = joiner {
                        let w = world.clone();
                        let name = names[j].as_str();
                        sim.host(name, move || host(j, seed, w.clone()));
                        for b in &cut {
                            sim.partition(name, b.as_str());
                        }
                    }
                }
                Fault::Lost => {
                    for b in &cut {
                        sim.crash(b.as_str());
                    }
                }
            }
        }
        if struck && !healed && elapsed >= heal_at {
            healed = true;
            match fault {
                Fault::CutOff | Fault::JoinWhileCutOff => {
                    for a in others.iter().chain(&joiner_name) {
                        for b in &cut {
                            sim.repair(a.as_str(), b.as_str());
                        }
                    }
                }
                Fault::Lost => {
                    for b in &cut {
                        sim.bounce(b.as_str());
                    }
                }
            }
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return vec![format!("simulation error: {e}")],
        }
    }
    let mut out: Vec<String> = Vec::new();
    for k in 0..writers {
        out.extend(
            world.strict[k]
                .violations()
                .into_iter()
                .map(|v| format!("k{k}: {v}")),
        );
        let events = world.strict[k].events();
        for (start, end, value) in world.loose[k].lock().unwrap().iter() {
            let _ = start;
            let written = *value == 0
                || events.iter().any(|e| {
                    e.start <= *end && matches!(e.op, Op::Write { value: v, .. } if v == *value)
                });
            if !written {
                out.push(format!(
                    "k{k}: a stale read returned {value}, which no write wrote"
                ));
            }
        }
        let strict_reads = events
            .iter()
            .filter(|e| matches!(e.op, Op::Read { .. }))
            .count();
        let writes = events
            .iter()
            .filter(|e| matches!(e.op, Op::Write { ok: true, .. }))
            .count();
        if writes < 10 {
            out.push(format!(
                "k{k}: only {writes} acknowledged writes ({strict_reads} checked reads)"
            ));
        }
    }
    out.extend(world.caught_up.lock().unwrap().iter().cloned());
    out
}

/// Whether the datacenters are 50–150 ms apart (`GRIDKV_SIM_WAN=1`), or
/// as close as the hosts of one (the default: see the note on
/// `wan_latency_schedules`).
fn wan_latency() -> bool {
    std::env::var("GRIDKV_SIM_WAN").is_ok_and(|v| v == "1")
}

fn seeds(first: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("GRIDKV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let n = std::env::var("GRIDKV_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2u64);
    (first..first + n).collect()
}

fn schedules(first: u64, dcs: &[(&str, usize, usize)], levels: Levels, fault: Fault) {
    for seed in seeds(first) {
        let outcome = std::panic::catch_unwind(|| run(seed, dcs, levels, fault));
        match outcome {
            Ok(violations) if violations.is_empty() => {}
            Ok(violations) => panic!(
                "seed {seed} (replay: GRIDKV_SEED={seed}), {levels:?}, {fault:?}: {} violations, \
                 first: {:#?}",
                violations.len(),
                &violations[..violations.len().min(5)]
            ),
            Err(panic) => {
                eprintln!("seed {seed} failed (replay: GRIDKV_SEED={seed})");
                std::panic::resume_unwind(panic);
            }
        }
    }
}

const TWO: &[(&str, usize, usize)] = &[("a", 3, 2), ("b", 3, 1)];
const THREE: &[(&str, usize, usize)] = &[("a", 3, 2), ("b", 2, 1), ("c", 2, 1)];

#[test]
fn local_quorum_is_fresh_within_a_datacenter_through_a_cut_off() {
    let levels = Levels {
        write: L::LocalQuorum,
        read: L::LocalQuorum,
    };
    schedules(0xDC_0100, TWO, levels, Fault::CutOff);
}

#[test]
fn local_quorum_serves_through_a_lost_datacenter_which_then_catches_up() {
    let levels = Levels {
        write: L::LocalQuorum,
        read: L::LocalQuorum,
    };
    schedules(0xDC_0200, THREE, levels, Fault::Lost);
}

#[test]
fn a_join_while_a_datacenter_is_cut_off_loses_nothing() {
    let levels = Levels {
        write: L::LocalQuorum,
        read: L::LocalQuorum,
    };
    schedules(0xDC_0300, TWO, levels, Fault::JoinWhileCutOff);
}

#[test]
fn quorum_is_fresh_everywhere() {
    let levels = Levels {
        write: L::Quorum,
        read: L::Quorum,
    };
    schedules(0xDC_0400, TWO, levels, Fault::CutOff);
}

#[test]
fn each_quorum_writes_are_fresh_everywhere_at_local_quorum() {
    let levels = Levels {
        write: L::EachQuorum,
        read: L::LocalQuorum,
    };
    schedules(0xDC_0500, THREE, levels, Fault::CutOff);
}
