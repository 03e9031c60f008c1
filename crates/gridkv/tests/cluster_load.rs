//! Get-or-load (`GridKv::try_get_with`) across real nodes on loopback:
//! many concurrent callers on every node cause one load per missing key;
//! a failing loader caches nothing and its error reaches its waiters; a
//! hanging one is bounded by the call's deadline.
//!
//! Test names start with `cluster_` so nextest runs them one at a time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use common::cluster::{cluster, shutdown};
use gridkv::{LoadError, LoadOptions};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_many_callers_on_every_node_load_a_missing_key_once() -> Result {
    let nodes = cluster(&["a", "b", "c"], &[]).await?;
    for round in 0..5 {
        let key = format!("profile:{round}");
        let calls = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(tokio::sync::Barrier::new(64));
        let mut tasks = Vec::new();
        for caller in 0..64 {
            let node = nodes[caller % 3].clone();
            let (key, calls, start) = (key.clone(), calls.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let loader = || async {
                    calls.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, std::io::Error>(Bytes::from("loaded"))
                };
                node.try_get_with(&key, LoadOptions::default(), loader)
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(&task.await??[..], b"loaded");
        }
        assert_eq!(
            calls.load(Relaxed),
            1,
            "round {round}: loads of one missing key"
        );
    }
    shutdown(&nodes).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failing_and_hanging_loaders_cache_nothing() -> Result {
    let nodes = cluster(&["a", "b", "c"], &[]).await?;
    // A failing loader: its error reaches the callers waiting on it, and
    // nothing is cached.
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (node, calls) = (nodes[0].clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let loader = || async {
                calls.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err::<Bytes, _>(std::io::Error::other("database down"))
            };
            node.try_get_with("fails", LoadOptions::default(), loader)
                .await
        }));
    }
    for task in tasks {
        let error = task.await?.unwrap_err();
        assert!(
            matches!(&error, LoadError::Loader(e) if e.to_string() == "database down"),
            "{error}"
        );
    }
    assert_eq!(calls.load(Relaxed), 1);
    assert_eq!(nodes[1].get("fails").await?, None, "an error is not cached");
    // The next caller loads again.
    let ok = || async { Ok::<_, std::io::Error>(Bytes::from("back")) };
    let v = nodes[2]
        .try_get_with("fails", LoadOptions::default(), ok)
        .await?;
    assert_eq!(&v[..], b"back");

    // A hanging loader is bounded by the deadline, and its lease does not
    // outlive it: another node loads right after.
    let hang = || async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, std::io::Error>(Bytes::new())
    };
    let short = LoadOptions::default().timeout(Duration::from_millis(300));
    let started = tokio::time::Instant::now();
    let error = nodes[0]
        .try_get_with("hangs", short, hang)
        .await
        .unwrap_err();
    assert!(matches!(error, LoadError::Timeout(_)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let ok = || async { Ok::<_, std::io::Error>(Bytes::from("after")) };
    let quick = LoadOptions::default().ttl(Duration::from_secs(60));
    let v = nodes[1].try_get_with("hangs", quick, ok).await?;
    assert_eq!(&v[..], b"after");
    assert!(matches!(
        nodes[2].ttl("hangs").await?,
        gridkv::Ttl::ExpiresIn(_)
    ));
    shutdown(&nodes).await;
    Ok(())
}
