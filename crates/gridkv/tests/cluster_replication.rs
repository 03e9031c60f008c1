//! Quorum replication across real nodes on loopback.
//!
//! Test names start with `cluster_` so nextest runs them one at a time.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::history::{History, Op};
use gridkv::hlc::{Clock, SystemClock};
use gridkv::net::faults::LinkFaults;
use gridkv::replication::{ReadOptions, WriteOptions};
use gridkv::{Error, GridKv, Liveness, NodeId, RingState};
use tokio::time::{sleep, timeout};

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

/// `names.len()` nodes joined through the first, all normal in every view.
async fn cluster(names: &[&str], clocks: &[i64]) -> Result<Vec<GridKv>> {
    let mut nodes: Vec<GridKv> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let seeds: Vec<String> = nodes
            .first()
            .map(|n| n.advertised_addr().to_owned())
            .into_iter()
            .collect();
        let skew = clocks.get(i).copied().unwrap_or(0);
        let config = GridKv::builder(*name)
            .seeds(seeds)
            .clock(Arc::new(Skewed(skew)))
            .build()?;
        nodes.push(GridKv::start(config).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = nodes.iter().all(|n| {
            n.ring().len() == names.len()
                && names.iter().all(|m| {
                    n.member(&id(m)).is_some_and(|m| {
                        m.liveness == Liveness::Alive && m.ring == RingState::Normal
                    })
                })
        });
        if ready {
            return Ok(nodes);
        }
        assert!(Instant::now() < deadline, "cluster did not form");
        sleep(Duration::from_millis(20)).await;
    }
}

async fn shutdown(nodes: &[GridKv]) {
    for n in nodes {
        timeout(Duration::from_secs(5), n.shutdown())
            .await
            .expect("bounded shutdown");
        assert_eq!(n.task_count(), 0);
    }
}

#[tokio::test]
async fn cluster_single_node_serves_with_reduced_replication() -> Result {
    let a = GridKv::start(GridKv::builder("solo").build()?).await?;
    a.joined().await?;
    let status = a.replication_status();
    assert!(status.is_reduced());
    assert_eq!(
        (status.effective_replicas, status.effective_write_quorum),
        (1, 1)
    );
    a.set("k", "v").await?;
    assert_eq!(a.get("k").await?.as_deref(), Some(&b"v"[..]));
    assert!(a.delete("k").await?);
    assert!(!a.delete("k").await?);
    assert_eq!(a.get("k").await?, None);
    shutdown(&[a]).await;
    Ok(())
}

#[tokio::test]
async fn cluster_writes_on_one_node_read_on_every_other() -> Result {
    let nodes = cluster(&["a", "b", "c"], &[]).await?;
    assert!(!nodes[0].replication_status().is_reduced());
    for i in 0..50u32 {
        let key = format!("key-{i}");
        nodes[i as usize % 3]
            .set(&key, format!("value-{i}"))
            .await?;
    }
    for i in 0..50u32 {
        let key = format!("key-{i}");
        for n in &nodes {
            assert_eq!(
                n.get(&key).await?.as_deref(),
                Some(format!("value-{i}").as_bytes())
            );
        }
    }
    // Every key is on exactly N = 3 stores (one per node, all nodes here).
    for n in &nodes {
        assert_eq!(n.store().stats().live, 50);
    }
    // Deletes, TTLs, batch forms.
    assert!(nodes[1].delete("key-0").await?);
    assert_eq!(nodes[2].get("key-0").await?, None);
    assert!(!nodes[2].exists("key-0").await?);
    nodes[0]
        .set_with_ttl("short", "x", Duration::from_millis(300))
        .await?;
    let left = nodes[1]
        .ttl("short")
        .await?
        .expect("exists")
        .expect("has a ttl");
    assert!(left <= Duration::from_millis(300));
    assert!(nodes[2].persist("short").await?);
    assert_eq!(nodes[0].ttl("short").await?, Some(None));
    assert!(nodes[2].expire("short", Duration::from_millis(200)).await?);
    sleep(Duration::from_millis(400)).await;
    assert_eq!(nodes[1].get("short").await?, None, "expired everywhere");
    let results = nodes[0].set_many(&[("m1", "1"), ("m2", "2")]).await;
    assert!(results.iter().all(|r| r.is_ok()));
    let got = nodes[1].get_many(&["m1", "m2", "none"]).await;
    let got: Vec<Option<bytes::Bytes>> = got.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(got, vec![Some("1".into()), Some("2".into()), None]);
    // Bad input is a typed error and stores nothing.
    assert!(matches!(
        nodes[0].set("", "v").await,
        Err(Error::InvalidKey(_))
    ));
    let huge = vec![0u8; 5 << 20];
    assert!(matches!(
        nodes[0].set("big", huge).await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(nodes[1].get("big").await?, None);
    // A local read on an owner touches no network.
    assert_eq!(
        nodes[2]
            .get_with("m1", ReadOptions::local())
            .await?
            .as_deref(),
        Some(&b"1"[..])
    );
    shutdown(&nodes).await;
    Ok(())
}

#[tokio::test]
async fn cluster_one_owner_down_keeps_acknowledged_writes_readable() -> Result {
    let nodes = cluster(&["a", "b", "c"], &[]).await?;
    let history = Arc::new(History::default());
    nodes[2].kill().await;
    let writer = {
        let node = nodes[0].clone();
        let history = history.clone();
        tokio::spawn(async move {
            for value in 1..=200u64 {
                let start = Instant::now();
                let ok = node.set("register", value.to_string()).await.is_ok();
                history.record(start, Op::Write { value, ok });
            }
        })
    };
    let reader = {
        let node = nodes[1].clone();
        let history = history.clone();
        tokio::spawn(async move {
            for _ in 0..300 {
                let start = Instant::now();
                if let Ok(v) = node.get("register").await {
                    let value = v
                        .map(|b| std::str::from_utf8(&b).unwrap().parse().unwrap())
                        .unwrap_or(0);
                    history.record(start, Op::Read { value });
                }
            }
        })
    };
    writer.await?;
    reader.await?;
    let violations = history.violations();
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(history.len() > 300);
    assert_eq!(
        nodes[1].get("register").await?.as_deref(),
        Some(&b"200"[..])
    );
    shutdown(&nodes[..2]).await;
    Ok(())
}

#[tokio::test]
async fn cluster_two_of_three_owners_down_fails_with_quorum_not_reached() -> Result {
    let nodes = cluster(&["a", "b", "c"], &[]).await?;
    nodes[0].set("k", "v").await?;
    nodes[1].kill().await;
    nodes[2].kill().await;
    // Before and after the failures are detected.
    for _ in 0..2 {
        let w = nodes[0]
            .set_with(
                "k",
                "w",
                None,
                WriteOptions::default().timeout(Duration::from_millis(500)),
            )
            .await;
        assert!(
            matches!(
                w,
                Err(Error::QuorumNotReached {
                    answered: 1,
                    required: 2
                }) | Err(Error::Timeout {
                    answered: 1,
                    required: 2
                })
            ),
            "{w:?}"
        );
        let r = nodes[0]
            .get_with(
                "k",
                ReadOptions::default().timeout(Duration::from_millis(500)),
            )
            .await;
        assert!(
            matches!(
                r,
                Err(Error::QuorumNotReached { required: 2, .. })
                    | Err(Error::Timeout { required: 2, .. })
            ),
            "{r:?}"
        );
        sleep(Duration::from_secs(4)).await;
    }
    // An explicit local read still answers (weaker, and asked for).
    assert!(nodes[0]
        .get_with("k", ReadOptions::local())
        .await?
        .is_some());
    shutdown(&nodes[..1]).await;
    Ok(())
}

#[tokio::test]
async fn cluster_partitioned_owner_is_repaired_and_deletes_stay_deleted() -> Result {
    let nodes = cluster(&["a", "b", "c"], &[]).await?;
    nodes[0].set("doomed", "v1").await?;
    // Cut c off in both directions.
    for (i, n) in nodes.iter().enumerate() {
        for (j, other) in ["a", "b", "c"].iter().enumerate() {
            if (i == 2) != (j == 2) {
                n.transport()
                    .faults()
                    .set(id(other), LinkFaults::partitioned());
            }
        }
    }
    assert!(nodes[0].delete("doomed").await?);
    for n in &nodes {
        n.transport().faults().clear_all();
    }
    // c still holds the old value locally...
    assert!(nodes[2]
        .get_with("doomed", ReadOptions::local())
        .await?
        .is_some());
    // ...but a quorum read sees the tombstone and repairs c.
    let mut repaired = false;
    for _ in 0..50 {
        assert_eq!(nodes[2].get("doomed").await?, None);
        if nodes[2]
            .get_with("doomed", ReadOptions::local())
            .await?
            .is_none()
        {
            repaired = true;
            break;
        }
        sleep(Duration::from_millis(50)).await;
    }
    assert!(repaired, "read repair never reached c");
    shutdown(&nodes).await;
    Ok(())
}

#[tokio::test]
async fn cluster_concurrent_writers_converge_to_the_highest_version() -> Result {
    let nodes = cluster(&["a", "b", "c"], &[]).await?;
    let mut tasks = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let n = n.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..100 {
                let _ = n
                    .set(format!("k{}", round % 10), format!("{i}-{round}"))
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    // Every owner's copy: read each key locally everywhere, after repairs
    // from one quorum read per key.
    for k in 0..10 {
        let key = format!("k{k}");
        let agreed = nodes[0].get(&key).await?;
        let mut versions = Vec::new();
        for n in &nodes {
            let _ = n.get(&key).await?;
        }
        sleep(Duration::from_millis(100)).await;
        for n in &nodes {
            versions.push(n.store().get(key.as_bytes())?.version());
            assert_eq!(
                n.get_with(&key, ReadOptions::local()).await?,
                agreed,
                "{key} on {}",
                n.id()
            );
        }
        assert!(
            versions.windows(2).all(|w| w[0] == w[1]),
            "{key}: {versions:?}"
        );
    }
    shutdown(&nodes).await;
    Ok(())
}

#[tokio::test]
async fn cluster_clock_skew_never_orders_a_later_acknowledged_write_first() -> Result {
    // a runs 2 s ahead, c 2 s behind.
    let nodes = cluster(&["a", "b", "c"], &[2_000, 0, -2_000]).await?;
    for round in 0..20 {
        let key = format!("skew-{round}");
        // The fast node writes first, then the slow one, acknowledged in
        // that order: the slow node's write must win.
        nodes[0].set(&key, "from-fast").await?;
        nodes[2].set(&key, "from-slow").await?;
        for n in &nodes {
            assert_eq!(
                n.get(&key).await?.as_deref(),
                Some(&b"from-slow"[..]),
                "{key} at {}",
                n.id()
            );
        }
    }
    shutdown(&nodes).await;
    Ok(())
}
