//! `GridKv::scan` (Redis's `SCAN`) and `count_keys` across real nodes on
//! loopback: every key present for the whole walk is returned, deleted
//! ones are not, and a node joining mid-walk changes neither.
//!
//! Test names start with `cluster_` so nextest runs them one at a time.

mod common;

use std::collections::HashSet;

use bytes::Bytes;
use common::cluster::{cluster, shutdown, wait_normal};
use gridkv::GridKv;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scan_returns_every_key_present_for_the_whole_walk() -> Result {
    let mut nodes = cluster(&["a", "b", "c"], &[]).await?;
    let total = 3_000;
    for i in 0..total {
        nodes[i % 3].set(format!("key:{i}"), "v").await?;
    }
    // Deleted before the walk: never returned.
    for i in (0..total).step_by(10) {
        nodes[(i + 1) % 3].delete(format!("key:{i}")).await?;
    }
    let present: HashSet<Bytes> = (0..total)
        .filter(|i| i % 10 != 0)
        .map(|i| Bytes::from(format!("key:{i}")))
        .collect();
    assert_eq!(nodes[1].count_keys().await?, present.len() as u64);

    let mut seen: HashSet<Bytes> = HashSet::new();
    let mut cursor = 0;
    let mut steps = 0;
    loop {
        // Each step through another node; a fourth joins mid-walk.
        let page = nodes[steps % nodes.len()].scan(cursor, 100).await?;
        steps += 1;
        seen.extend(page.keys);
        cursor = page.cursor;
        if steps == 5 {
            let config = GridKv::builder("d")
                .seeds([nodes[0].advertised_addr().to_owned()])
                .build()?;
            nodes.push(GridKv::start(config).await?);
            wait_normal(&nodes, "d", 4).await;
        }
        if cursor == 0 {
            break;
        }
    }
    assert!(steps > 5, "the walk took {steps} steps");
    let missing: Vec<_> = present.difference(&seen).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} keys never returned, e.g. {missing:?}",
        present.len() - seen.len().min(present.len())
    );
    let deleted: Vec<_> = seen.difference(&present).take(5).collect();
    assert!(deleted.is_empty(), "deleted keys returned: {deleted:?}");
    assert_eq!(nodes[3].count_keys().await?, present.len() as u64);
    shutdown(&nodes).await;
    Ok(())
}
