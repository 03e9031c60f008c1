//! Read-modify-writes across real nodes on loopback: `set_if_absent`
//! (`SET NX`), `take` (`GETDEL`), `set_if_present`, `swap` and the expiry
//! calls, each a quorum read then a write owners apply only if the key did
//! not change since.
//!
//! Test names start with `cluster_` so nextest runs them one at a time.

mod common;

use std::time::Duration;

use common::cluster::{cluster, shutdown};
use gridkv::replication::WriteOptions;
use gridkv::{Error, ExpiryChange, GridKv};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs `op` on every node at once, `per_node` times each, all started
/// together; their results, in no particular order.
async fn race<T, F, Fut>(nodes: &[GridKv], per_node: usize, op: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(GridKv, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(nodes.len() * per_node));
    let mut tasks = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for j in 0..per_node {
            let run = op(node.clone(), i * per_node + j);
            let start = start.clone();
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                run.await
            }));
        }
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("no panic"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_set_if_absent_stores_at_most_one_of_concurrent_adds() -> Result {
    let nodes = cluster(&["a", "b", "c"], &[]).await?;
    for round in 0..20 {
        let key = format!("add:{round}");
        let results = race(&nodes, 3, |node, who| {
            let key = key.clone();
            async move {
                let stored = node
                    .set_if_absent(&key, format!("writer{who}"), WriteOptions::default())
                    .await;
                (who, stored)
            }
        })
        .await;
        let winners: Vec<usize> = results
            .iter()
            .filter(|(_, stored)| matches!(stored, Ok(true)))
            .map(|(who, _)| *who)
            .collect();
        // N = 3, W = 2: two adds that both reached W owners would share
        // one, which applied one first and refused the other.
        assert!(winners.len() <= 1, "round {round}: {results:?}");
        for node in &nodes {
            let value = node.get(&key).await?;
            if let [winner] = winners[..] {
                assert_eq!(
                    value.as_deref(),
                    Some(format!("writer{winner}").as_bytes()),
                    "round {round}: the winner's value, on every node"
                );
            }
        }
        // Once stored, every later add is refused.
        assert!(
            !nodes[2]
                .set_if_absent(&key, "late", WriteOptions::default())
                .await?
                || winners.is_empty()
        );
    }
    // Uncontended, an add stores; after a delete, it stores again.
    assert!(
        nodes[0]
            .set_if_absent("solo", "1", WriteOptions::default())
            .await?
    );
    assert!(
        !nodes[1]
            .set_if_absent("solo", "2", WriteOptions::default())
            .await?
    );
    nodes[2].delete("solo").await?;
    assert!(
        nodes[1]
            .set_if_absent("solo", "3", WriteOptions::default())
            .await?
    );
    assert_eq!(nodes[0].get("solo").await?.as_deref(), Some(&b"3"[..]));
    shutdown(&nodes).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_take_hands_one_value_to_one_caller() -> Result {
    let nodes = cluster(&["a", "b", "c"], &[]).await?;
    for round in 0..20 {
        let key = format!("job:{round}");
        nodes[round % 3]
            .set(&key, format!("payload{round}"))
            .await?;
        let results = race(&nodes, 2, |node, _| {
            let key = key.clone();
            async move { node.take(&key).await }
        })
        .await;
        let taken: Vec<_> = results
            .iter()
            .filter(|r| matches!(r, Ok(Some(_))))
            .collect();
        assert!(taken.len() <= 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(_) | Err(Error::Contended { .. }))),
            "round {round}: {results:?}"
        );
        for node in &nodes {
            assert_eq!(
                node.get(&key).await?,
                None,
                "round {round}: taken means gone"
            );
        }
    }
    shutdown(&nodes).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_conditional_writes_and_expiry_calls() -> Result {
    let nodes = cluster(&["a", "b", "c"], &[]).await?;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let none = WriteOptions::default();

    // XX stores only over a live value.
    assert!(!a.set_if_present("xx", "1", none).await?);
    assert_eq!(b.get("xx").await?, None, "a refused XX writes nothing");
    a.set("xx", "1").await?;
    assert!(b.set_if_present("xx", "2", none).await?);
    assert_eq!(c.get("xx").await?.as_deref(), Some(&b"2"[..]));

    // SET GET answers what it replaced.
    assert_eq!(c.swap("swap", "1", none).await?, None);
    assert_eq!(a.swap("swap", "2", none).await?.as_deref(), Some(&b"1"[..]));
    assert_eq!(b.get("swap").await?.as_deref(), Some(&b"2"[..]));

    // Absolute expiries, in the future and past.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    a.set_opts("at", "v", none.expire_at_ms(now_ms + 60_000))
        .await?;
    let found = b.get_found("at").await?.expect("stored");
    assert_eq!(found.expires_at_ms, Some(now_ms + 60_000));
    assert!(c.expire_at("at", now_ms + 120_000).await?);
    assert_eq!(
        a.get_found("at").await?.unwrap().expires_at_ms,
        Some(now_ms + 120_000)
    );
    assert!(
        b.expire_at("at", now_ms - 1_000).await?,
        "a past time deletes"
    );
    assert_eq!(c.get("at").await?, None);
    assert!(
        !a.expire_at("at", now_ms + 1_000).await?,
        "nothing to expire"
    );

    // GETEX: read and change the expiry of the value read.
    c.set("ex", "v").await?;
    let value = a
        .get_and_expire("ex", ExpiryChange::In(Duration::from_secs(30)))
        .await?;
    assert_eq!(value.as_deref(), Some(&b"v"[..]));
    assert!(b.get_found("ex").await?.unwrap().expires_at_ms.is_some());
    b.get_and_expire("ex", ExpiryChange::Persist).await?;
    assert_eq!(c.get_found("ex").await?.unwrap().expires_at_ms, None);
    assert_eq!(
        a.get_and_expire("missing", ExpiryChange::Persist).await?,
        None
    );
    let past = ExpiryChange::AtMs(now_ms - 1);
    assert_eq!(
        b.get_and_expire("ex", past).await?.as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(a.get("ex").await?, None, "an expiry in the past deletes");

    // Both a ttl and an expiry time is refused.
    let both = none
        .ttl(Duration::from_secs(1))
        .expire_at_ms(now_ms + 5_000);
    assert!(matches!(
        a.set_opts("both", "v", both).await,
        Err(Error::InvalidOptions(_))
    ));
    shutdown(&nodes).await;
    Ok(())
}
