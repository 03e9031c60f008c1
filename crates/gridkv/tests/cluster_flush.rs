//! Versioned flush (`GridKv::flush`, Redis's `FLUSHALL`) across real nodes
//! on loopback: everything written before it is gone on every member, a
//! late write stamped before it is refused, a member that missed it is
//! named and learns it from anti-entropy, and writes after it are kept.
//!
//! Test names start with `cluster_` so nextest runs them one at a time.

mod common;

use std::time::Duration;

use common::cluster::{cluster_with, isolate, shutdown};
use gridkv::net::Lane;
use gridkv::replication::wire::{DataRequest, DataResponse};
use gridkv::store::Write;
use gridkv::{Error, ReplicationConfig};
use tokio::time::{Instant, sleep};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_flush_removes_everything_before_it_and_nothing_after() -> Result {
    let replication = ReplicationConfig {
        anti_entropy_interval: Duration::from_millis(300),
        ..ReplicationConfig::default()
    };
    let nodes = cluster_with(&["a", "b", "c"], &[], replication).await?;
    for i in 0..200 {
        nodes[i % 3].set(format!("k{i}"), "v").await?;
    }
    nodes[0].incr_by("n", 5).await?;
    let old_stamp = gridkv::hlc::Hlc::new(
        nodes[0].id(),
        gridkv::Generation::new(1),
        std::sync::Arc::new(gridkv::SystemClock),
    )
    .new_version();

    nodes[1].flush().await?;
    for node in &nodes {
        assert!(node.flush_floor_ms().is_some());
        assert_eq!(node.store().stats().live, 0, "{}: nothing left", node.id());
        let audit = node.store().audit();
        assert!(audit.is_consistent(), "{}: {audit:?}", node.id());
    }
    assert_eq!(nodes[2].count_keys().await?, 0);
    assert_eq!(nodes[0].get("k1").await?, None);

    // A late write stamped before the flush (a hint, a slow coordinator)
    // is refused by every replica.
    let late = DataRequest::encode_write(b"k1", &Write::set(old_stamp, b"late", None));
    for to in 1..3 {
        let frame = nodes[0]
            .transport()
            .peer(nodes[to].advertised_addr())
            .request_with_timeout(Lane::Data, late.clone().into(), Duration::from_secs(5))
            .await?;
        assert!(
            matches!(
                DataResponse::decode(&frame)?,
                DataResponse::Superseded { .. }
            ),
            "node {to} took a write from before the flush"
        );
    }
    assert_eq!(nodes[2].get("k1").await?, None);

    // Writes after the flush are kept, counters count from zero.
    nodes[2].set("k1", "after").await?;
    assert_eq!(nodes[0].get("k1").await?.as_deref(), Some(&b"after"[..]));
    assert_eq!(nodes[1].incr_by("n", 1).await?, 1);

    // A member cut off misses the next flush: named, and it catches up
    // from anti-entropy once it is back.
    isolate(&nodes, 2, true);
    let e = nodes[0].flush().await.unwrap_err();
    assert_eq!(
        e,
        Error::FlushIncomplete {
            missing: vec![nodes[2].id()]
        }
    );
    assert!(e.to_string().contains("flush not applied by c"), "{e}");
    assert_eq!(
        nodes[1]
            .get_opts("k1", gridkv::ReadOptions::local())
            .await?,
        None
    );
    isolate(&nodes, 2, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while nodes[2].store().floor() < nodes[0].store().floor() {
        assert!(Instant::now() < deadline, "c never learned the flush");
        sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(nodes[2].store().stats().live, 0);

    // A node that joins after the flush has its floor before it serves:
    // the batches it fills from carry it.
    let mut nodes = nodes;
    let config = gridkv::GridKv::builder("d")
        .seeds([nodes[0].advertised_addr().to_owned()])
        .build()?;
    nodes.push(gridkv::GridKv::start(config).await?);
    common::cluster::wait_normal(&nodes, "d", 4).await;
    nodes[3].ready().await?;
    assert_eq!(nodes[3].store().floor(), nodes[0].store().floor());
    assert_eq!(nodes[3].get("k1").await?, None);
    shutdown(&nodes).await;
    Ok(())
}
