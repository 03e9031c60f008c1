//! A cluster that is starting: nodes started all at once, each given the
//! others as seeds, form one cluster, and none acknowledges a write the
//! others will not see; data calls wait for the cluster (and fail with
//! `NotReady` naming what is missing), while a node with no seeds serves
//! at once.
//!
//! Real nodes on loopback. Test names start with `cluster_` so nextest runs
//! them one at a time. Their transports listen on sockets bound before any
//! node starts (so every node can be given the others' addresses with no
//! port race); `GRIDKV_SEED=<seed>` replays a run's choices, which a failure
//! prints.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridkv::net::io::{BoxFuture, Listener, Network, Stream, Tcp};
use gridkv::{Error, Forming, GridKv, Readiness, ReplicationConfig, SwimConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, sleep};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Real TCP whose listeners were bound before the nodes started: `bind`
/// hands out the one bound for that address.
struct PreBound {
    listeners: Mutex<HashMap<String, Box<dyn Listener>>>,
}

impl PreBound {
    /// Binds `count` loopback listeners; returns the network and their
    /// addresses.
    async fn bind(count: usize) -> io::Result<(Arc<PreBound>, Vec<String>)> {
        let mut listeners = HashMap::new();
        let mut addrs = Vec::new();
        for _ in 0..count {
            let listener = Tcp::default().bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?.to_string();
            addrs.push(addr.clone());
            listeners.insert(addr, listener);
        }
        let network = PreBound {
            listeners: Mutex::new(listeners),
        };
        Ok((Arc::new(network), addrs))
    }
}

impl Network for PreBound {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        let listener = self.listeners.lock().unwrap().remove(addr);
        Box::pin(async move {
            listener.ok_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, addr.to_owned()))
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move { Tcp::default().connect(addr).await })
    }
}

/// The run's seed: `GRIDKV_SEED`, or a fresh one.
fn run_seed() -> u64 {
    std::env::var("GRIDKV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// Starts one node per name, all at once, each given every other node's
/// address as its seeds (`seeds` overrides that per node when given).
async fn start_all(
    names: &[&str],
    mut configure: impl FnMut(gridkv::ConfigBuilder) -> gridkv::ConfigBuilder,
) -> Result<Vec<GridKv>> {
    let (network, addrs) = PreBound::bind(names.len()).await?;
    let mut starts = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let seeds: Vec<String> = addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a.clone())
            .collect();
        let config =
            configure(GridKv::builder(*name).listen(addrs[i].clone()).seeds(seeds)).build()?;
        let network = network.clone();
        starts.push(tokio::spawn(async move {
            GridKv::start_with(config, network).await
        }));
    }
    let mut nodes = Vec::new();
    for start in starts {
        nodes.push(start.await??);
    }
    Ok(nodes)
}

async fn shutdown(nodes: &[GridKv]) {
    for n in nodes {
        n.kill().await;
    }
}

/// Five nodes started at once, N=3 W=2 R=2: each writes its own key as
/// soon as a write is acknowledged (retrying while the cluster forms),
/// then reads it through every other node at once. Every read returns the
/// value: no node acknowledged a write as a cluster of its own. Several
/// fresh clusters, since the window where each node acted alone was about
/// 0.2 s.
///
/// Nodes join in quick succession while the cluster forms (their fills
/// are empty), faster than gossip spreads each change; joint quorums cover
/// rings one change apart. Before nodes waited, on first serving, for the
/// ring to stop moving (`Forming::Moving`), a node could read through a
/// ring several changes behind the writer's, from owners the write never
/// reached: this failed once in three suite runs under load (seed
/// 2583756916497596970, round 0: a write acknowledged by `a` 2.0 s after
/// start, then `e` read nil).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_five_nodes_started_at_once_never_lose_an_acknowledged_write() -> Result {
    let seed = run_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let names = ["a", "b", "c", "d", "e"];
    for round in 0..4 {
        let nodes = start_all(&names, |b| b.rng_seed(rng.random())).await?;
        let started = Instant::now();
        let mut writers = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let node = node.clone();
            let others: Vec<GridKv> = nodes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, n)| n.clone())
                .collect();
            let key = format!("r{round}-k{i}");
            writers.push(tokio::spawn(async move {
                // Write as early as the node acknowledges anything.
                let value = format!("v{i}");
                loop {
                    match node.set(&key, value.clone()).await {
                        Ok(()) => break,
                        Err(Error::NotReady { .. } | Error::QuorumNotReached { .. }) => {
                            sleep(Duration::from_millis(5)).await;
                        }
                        Err(e) => return Err(format!("{}: set {key}: {e}", node.id())),
                    }
                    if started.elapsed() > Duration::from_secs(30) {
                        return Err(format!("{}: no write acknowledged in 30 s", node.id()));
                    }
                }
                let acked = started.elapsed();
                let status = node.replication_status();
                if status.effective_write_quorum < 2 {
                    return Err(format!(
                        "{}: acknowledged with W={} at {acked:?}",
                        node.id(),
                        status.effective_write_quorum
                    ));
                }
                // Then read it through every other node, all at once. A
                // read may fail while owners fill ranges they just gained
                // (they refuse to answer for what they do not hold yet):
                // it is retried, but it must never answer anything but
                // the value.
                let reads = others.iter().map(|other| {
                    let key = key.clone();
                    let other = other.clone();
                    async move {
                        let mut errors = 0;
                        loop {
                            match other.get(&key).await {
                                Err(e) if errors < 100 => {
                                    errors += 1;
                                    let _ = e;
                                    sleep(Duration::from_millis(20)).await;
                                }
                                got => return (other.id(), got, errors),
                            }
                        }
                    }
                });
                let mut read_errors = 0;
                for (reader, got, errors) in futures_util::future::join_all(reads).await {
                    read_errors += errors;
                    match got {
                        Ok(Some(v)) if v == value.as_bytes() => {}
                        other => {
                            return Err(format!(
                                "{key} acknowledged by {} at {acked:?}, then {reader} read {other:?}",
                                node.id()
                            ));
                        }
                    }
                }
                Ok((acked, read_errors))
            }));
        }
        let mut failures = Vec::new();
        let mut read_errors = 0;
        let mut acked = Vec::new();
        for w in writers {
            match w.await? {
                Ok((at, errors)) => {
                    acked.push(at);
                    read_errors += errors;
                }
                Err(e) => failures.push(e),
            }
        }
        acked.sort();
        eprintln!(
            "round {round}: writes first acknowledged after {:?} to {:?}; \
             {read_errors} reads failed and were retried",
            acked.first(),
            acked.last()
        );
        // One cluster formed: every node sees the same five-member ring
        // once they have all filled.
        let deadline = Instant::now() + Duration::from_secs(20);
        while nodes.iter().any(|n| n.ring().len() != names.len()) && Instant::now() < deadline {
            sleep(Duration::from_millis(20)).await;
        }
        let rings: Vec<usize> = nodes.iter().map(|n| n.ring().len()).collect();
        shutdown(&nodes).await;
        assert!(
            failures.is_empty(),
            "seed {seed}, round {round}: {failures:#?}"
        );
        assert!(
            rings.iter().all(|r| *r == names.len()),
            "seed {seed}, round {round}: rings {rings:?}"
        );
    }
    Ok(())
}

/// While the cluster forms, no node reports itself ready with fewer ring
/// members than W and R need, nor serves data with W or R cut down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_no_node_is_ready_before_its_quorums_can_be_met() -> Result {
    let seed = run_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let names = ["a", "b", "c", "d", "e"];
    let nodes = start_all(&names, |b| b.rng_seed(rng.random())).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = std::collections::BTreeSet::new();
    while Instant::now() < deadline && !nodes.iter().all(GridKv::is_ready) {
        for n in &nodes {
            // Serving first: the ring only grows while the cluster forms,
            // so a ring read after it is no smaller than when it served.
            let serving = n.is_serving();
            let ready = n.is_ready();
            let status = n.replication_status();
            let ring = n.ring().len();
            if serving && ring < 2 {
                seen.insert(format!("{} serving with a ring of {ring}", n.id()));
            }
            if ready && status.effective_write_quorum < 2 {
                seen.insert(format!("{} ready with {status:?}", n.id()));
            }
        }
        tokio::task::yield_now().await;
    }
    let all_ready = nodes.iter().all(GridKv::is_ready);
    shutdown(&nodes).await;
    assert!(seen.is_empty(), "seed {seed}: {seen:#?}");
    assert!(all_ready, "seed {seed}: not every node became ready");
    Ok(())
}

/// A node given a seed that never answers does not serve as a cluster of
/// its own: a data call waits up to the ready timeout, then fails with
/// `NotReady` saying it has not joined.
#[tokio::test]
async fn cluster_a_node_that_reaches_no_seed_fails_data_calls_with_not_ready() -> Result {
    // A port that was bound and released: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let node = GridKv::start(
        GridKv::builder("lonely")
            .seeds([dead.to_string()])
            .ready_timeout(Duration::from_millis(800))
            .build()?,
    )
    .await?;
    assert_eq!(node.readiness(), Readiness::Joining { seeds: 1 });
    let started = Instant::now();
    let err = node.set("k", "v").await.unwrap_err();
    let waited = started.elapsed();
    let Error::NotReady { missing } = &err else {
        panic!("expected NotReady, got {err:?}");
    };
    assert!(missing.contains("not joined"), "{err}");
    assert!(waited >= Duration::from_millis(700), "waited {waited:?}");
    // A call's own timeout bounds its wait.
    let started = Instant::now();
    let quick = gridkv::ReadOptions::default().timeout(Duration::from_millis(100));
    assert!(matches!(
        node.get_opts("k", quick).await,
        Err(Error::NotReady { .. })
    ));
    assert!(started.elapsed() < Duration::from_millis(700));
    assert!(!node.is_ready());
    node.shutdown().await;
    assert_eq!(node.readiness(), Readiness::Stopped);
    Ok(())
}

/// Three nodes configured, one never started: the two that are up find
/// each other but wait for the missing seed; after the formation timeout
/// they form the cluster (the smaller id first) as a majority, and then
/// serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_dead_seed_delays_formation_but_does_not_block_it() -> Result {
    let (network, addrs) = PreBound::bind(3).await?;
    // `a` (the smallest id) never starts: its listener is simply closed.
    drop(network.listeners.lock().unwrap().remove(&addrs[0]));
    let membership = SwimConfig {
        join_retry: Duration::from_millis(200),
        ..SwimConfig::lan()
    };
    let mut nodes = Vec::new();
    for (i, name) in [(1, "b"), (2, "c")] {
        let seeds: Vec<String> = (0..3)
            .filter(|j| *j != i)
            .map(|j| addrs[j].clone())
            .collect();
        let config = GridKv::builder(name)
            .listen(addrs[i].clone())
            .seeds(seeds)
            .membership(membership.clone())
            .ready_timeout(Duration::from_millis(300))
            .build()?;
        nodes.push(GridKv::start_with(config, network.clone()).await?);
    }
    // Joined each other, but one seed of two is missing.
    let deadline = Instant::now() + Duration::from_secs(1);
    while nodes[0].readiness() != Readiness::Forming(Forming::Seeds { heard: 1, seeds: 2 })
        && Instant::now() < deadline
    {
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        nodes[0].readiness(),
        Readiness::Forming(Forming::Seeds { heard: 1, seeds: 2 })
    );
    let err = nodes[1].set("k", "v").await.unwrap_err();
    assert!(
        err.to_string().contains("1 of 2 seeds have answered"),
        "{err}"
    );
    // The formation timeout is ten join retries (2 s here).
    for n in &nodes {
        tokio::time::timeout(Duration::from_secs(15), n.ready()).await??;
    }
    nodes[1].set("k", "v").await?;
    assert_eq!(nodes[0].get("k").await?.as_deref(), Some(&b"v"[..]));
    shutdown(&nodes).await;
    Ok(())
}

/// A node with no seeds is a cluster of one at once: it serves with the
/// N, W and R one node can give, and says so.
#[tokio::test]
async fn cluster_a_node_without_seeds_serves_at_once_with_reduced_replication() -> Result {
    let node = GridKv::start(GridKv::builder("solo").build()?).await?;
    tokio::time::timeout(Duration::from_secs(5), node.ready()).await??;
    assert!(node.is_standalone());
    node.set("k", "v").await?;
    let status = node.replication_status();
    assert!(status.is_reduced());
    assert_eq!(
        (
            status.effective_replicas,
            status.effective_write_quorum,
            status.effective_read_quorum
        ),
        (1, 1, 1)
    );
    node.shutdown().await;
    Ok(())
}

/// Weaker than strong (W + R <= N) only when asked for by name.
#[test]
fn weak_quorums_are_refused_unless_eventual_consistency_is_asked_for() {
    let weak = ReplicationConfig {
        write_quorum: 1,
        read_quorum: 2,
        ..ReplicationConfig::default()
    };
    let err = GridKv::builder("n")
        .replication(weak.clone())
        .build()
        .unwrap_err();
    assert_eq!(err.field, "consistency");
    assert!(err.reason.contains("W=1 + R=2 <= N=3"), "{err}");
    let config = GridKv::builder("n")
        .replication(weak)
        .consistency(gridkv::Consistency::Eventual)
        .build()
        .expect("eventual accepts W + R <= N");
    assert_eq!(
        config.replication.consistency,
        gridkv::Consistency::Eventual
    );
}
