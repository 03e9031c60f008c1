//! Restarts and clocks on real sockets, in one process.
//!
//! - A restart under load: writes through the restarted node succeed
//!   again within a stated time, and fail before that only with errors
//!   that say why (`NotReady`, `RestartBarrier`), never `Timeout` with 0
//!   of 2 owners (the restart barrier outlasting the write's deadline, as
//!   it did before: about 3 s of instant `TIMEOUT`s).
//! - The same with a member down: the node cannot learn every member's
//!   clock, waits out the barrier, and says how long is left.
//! - A restart whose wall clock stepped back (its generation is older than
//!   its previous run's) joins at once, where it was refused, or ignored
//!   for ten minutes until the old entry was forgotten.
//! - Two nodes, one an hour behind: no majority says which clock is
//!   right, so nobody is fenced, but the slow node stamps no tombstone the
//!   other would collect at once, and no value already expired there.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::cluster::wait_normal;
use gridkv::hlc::{Clock, SystemClock};
use gridkv::store::Lookup;
use gridkv::{Error, Generation, GridKv, Liveness, NodeId, WriteOptions};
use tokio::time::{Instant, sleep, timeout};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// A clock `offset_ms` off the system clock.
#[derive(Debug)]
struct Skewed(i64);

impl Clock for Skewed {
    fn now_ms(&self) -> u64 {
        (SystemClock.now_ms() as i64 + self.0) as u64
    }
}

async fn start(
    name: &str,
    seed: Option<&GridKv>,
    generation: Option<Generation>,
) -> Result<GridKv> {
    let mut builder = GridKv::builder(name)
        .seeds(seed.map(|s| s.advertised_addr().to_owned()))
        .membership(gridkv::SwimConfig {
            remove_after: Duration::from_secs(60),
            ..gridkv::SwimConfig::lan()
        });
    if let Some(g) = generation {
        builder = builder.generation(g);
    }
    Ok(GridKv::start(builder.build()?).await?)
}

/// Three nodes a, b, c, all normal everywhere; c with `generation`.
async fn three(generation: Option<Generation>) -> Result<Vec<GridKv>> {
    let a = start("a", None, None).await?;
    let b = start("b", Some(&a), None).await?;
    let c = start("c", Some(&a), generation).await?;
    let nodes = vec![a, b, c];
    for n in ["a", "b", "c"] {
        wait_normal(&nodes, n, 3).await;
    }
    Ok(nodes)
}

async fn shutdown(nodes: &[GridKv]) {
    for n in nodes {
        timeout(Duration::from_secs(5), n.kill())
            .await
            .expect("bounded stop");
    }
}

/// Writes through `nodes` in a loop until `stop`: the load the restart
/// happens under. Counts successes.
fn load(
    nodes: Vec<GridKv>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for n in &nodes {
                if n.set(format!("load-{}", i % 500), i.to_string())
                    .await
                    .is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }
    })
}

/// What writes through a restarted node saw until the first success.
#[derive(Debug, Default)]
struct Restart {
    first_ok: Option<Duration>,
    not_ready: usize,
    barrier: Vec<u64>,
    other: Vec<String>,
}

/// Writes through `node` (started at `started`) until one succeeds or
/// `limit` passes; then 50 more, which must all succeed.
async fn write_until_ok(node: &GridKv, started: Instant, limit: Duration) -> Result<Restart> {
    let mut seen = Restart::default();
    let mut i = 0;
    while started.elapsed() < limit {
        i += 1;
        match node.set(format!("r-{i}"), "v").await {
            Ok(()) => {
                seen.first_ok = Some(started.elapsed());
                break;
            }
            Err(Error::NotReady { .. }) => seen.not_ready += 1,
            Err(Error::RestartBarrier { remaining_ms }) => {
                seen.barrier.push(remaining_ms);
                // A client backs off a little, as TRYAGAIN asks.
                sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                seen.other.push(format!("{:?}: {e}", started.elapsed()));
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
    if seen.first_ok.is_some() {
        for j in 0..50 {
            node.set(format!("after-{j}"), "v").await?;
        }
    }
    Ok(seen)
}

#[tokio::test]
async fn cluster_a_restart_under_load_writes_again_within_two_seconds() -> Result {
    let mut nodes = three(None).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writers = load(nodes[..2].to_vec(), stop.clone(), done.clone());
    sleep(Duration::from_millis(500)).await;
    nodes[2].kill().await;
    let started = Instant::now();
    nodes[2] = start("c", Some(&nodes[0]), None).await?;
    let seen = write_until_ok(&nodes[2], started, Duration::from_secs(10)).await?;
    stop.store(true, Ordering::Relaxed);
    writers.await?;
    eprintln!(
        "restart under load ({} writes through the others meanwhile): {seen:?}",
        done.load(Ordering::Relaxed)
    );
    assert!(
        seen.other.is_empty(),
        "wrong errors before the first success: {seen:?}"
    );
    let first = seen
        .first_ok
        .expect("no write through the restarted node succeeded");
    assert!(
        first < Duration::from_secs(2),
        "first write through it after {first:?}: {seen:?}"
    );
    shutdown(&nodes).await;
    Ok(())
}

#[tokio::test]
async fn cluster_a_restart_with_a_member_down_waits_out_the_barrier_and_says_so() -> Result {
    let mut nodes = three(None).await?;
    nodes[1].kill().await;
    nodes[2].kill().await;
    let started = Instant::now();
    nodes[2] = start("c", Some(&nodes[0]), None).await?;
    let seen = write_until_ok(&nodes[2], started, Duration::from_secs(12)).await?;
    eprintln!("restart with b down: {seen:?}");
    assert!(seen.other.is_empty(), "wrong errors: {seen:?}");
    assert!(!seen.barrier.is_empty(), "the barrier never held: {seen:?}");
    // The barrier is the drift bound (5 s) from the start; each refusal
    // names at most that, and the time left shrinks.
    assert!(seen.barrier.iter().all(|ms| *ms <= 5_000), "{seen:?}");
    assert!(seen.barrier.windows(2).all(|w| w[1] <= w[0]), "{seen:?}");
    let first = seen
        .first_ok
        .expect("no write through the restarted node succeeded");
    assert!(
        first < Duration::from_secs(7),
        "first write after {first:?}: {seen:?}"
    );
    shutdown(&[nodes[0].clone(), nodes[2].clone()]).await;
    Ok(())
}

#[tokio::test]
async fn cluster_a_restart_after_the_clock_stepped_back_joins_at_once() -> Result {
    // Restarted while the others still see its previous run alive, and
    // once they have declared it down.
    for wait_down in [false, true] {
        let first_run = Generation::new(Generation::now().get() + 10_000_000);
        let mut nodes = three(Some(first_run)).await?;
        nodes[2].kill().await;
        if wait_down {
            let deadline = Instant::now() + Duration::from_secs(10);
            while nodes[0]
                .member(&id("c"))
                .is_some_and(|m| m.liveness != Liveness::Down)
            {
                assert!(Instant::now() < deadline, "c never went down");
                sleep(Duration::from_millis(50)).await;
            }
        }
        // Its wall clock now reads 3 s earlier than when it first started.
        let stepped_back = Generation::new(first_run.get() - 3_000_000);
        let started = Instant::now();
        nodes[2] = start("c", Some(&nodes[0]), Some(stepped_back)).await?;
        timeout(Duration::from_secs(5), nodes[2].joined())
            .await?
            .map_err(|e| format!("wait_down {wait_down}: {e}"))?;
        // Every member takes the new run in place of the old one.
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let replaced = nodes.iter().all(|n| {
                n.member(&id("c")).is_some_and(|m| {
                    m.identity.generation > first_run && m.liveness == Liveness::Alive
                })
            });
            if replaced {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "wait_down {wait_down}: the restart never replaced its previous run: {:?}",
                nodes[0].member(&id("c"))
            );
            sleep(Duration::from_millis(50)).await;
        }
        wait_normal(&nodes, "c", 3).await;
        let seen = write_until_ok(&nodes[2], started, Duration::from_secs(10)).await?;
        eprintln!("stepped-back restart (wait_down {wait_down}): {seen:?}");
        assert!(seen.first_ok.is_some() && seen.other.is_empty(), "{seen:?}");
        shutdown(&nodes).await;
    }
    Ok(())
}

#[tokio::test]
async fn cluster_a_node_an_hour_behind_stamps_no_dead_tombstone_or_value() -> Result {
    let a = start("a", None, None).await?;
    let config = GridKv::builder("b")
        .seeds([a.advertised_addr().to_owned()])
        .clock(Arc::new(Skewed(-3_600_000)))
        .build()?;
    let b = GridKv::start(config).await?;
    let nodes = [a.clone(), b.clone()];
    wait_normal(&nodes, "b", 2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.clock().sampled < 2 {
        assert!(Instant::now() < deadline, "b never measured a's clock");
        sleep(Duration::from_millis(20)).await;
    }
    // Two members an hour apart: nobody can tell which is right.
    assert!(!b.clock().fenced && !a.clock().fenced);
    assert_eq!(b.clock().offset_ms, None);
    // (The slow node refuses the fast one's versions, an hour ahead of
    // its clock: without a majority, its own writes are what go through.)
    b.set("k", "v").await?;
    let delete = b.delete("k").await;
    let ttl = WriteOptions::default().ttl(Duration::from_secs(60));
    let set = b.set_opts("t", "v", ttl).await;
    // Let a's store sweep what it would collect.
    sleep(Duration::from_millis(600)).await;
    let at_a = |key: &str| a.store().get(key.as_bytes()).unwrap();
    match &delete {
        Err(Error::ClockDrift(_)) => {}
        Ok(_) => assert!(
            matches!(
                at_a("k"),
                Lookup::Dead {
                    expired_at: None,
                    ..
                }
            ),
            "the delete's tombstone is gone from a already: {:?}",
            at_a("k")
        ),
        Err(e) => panic!("delete: {e}"),
    }
    match &set {
        Err(Error::ClockDrift(_)) => {}
        Ok(()) => assert!(
            matches!(at_a("t"), Lookup::Live(_)),
            "the value expired on arrival at a: {:?}",
            at_a("t")
        ),
        Err(e) => panic!("set: {e}"),
    }
    eprintln!("an hour behind, no majority: delete {delete:?}, set with TTL {set:?}");
    shutdown(&nodes).await;
    Ok(())
}
