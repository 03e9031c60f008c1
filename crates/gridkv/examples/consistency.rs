//! Per-call consistency and TTLs.
//!
//! Three nodes (N = 3 copies of each key by default, W = R = 2). Shows a
//! write every owner must apply, a fast local read, a quorum read, a TTL
//! and how a key's remaining time is reported.
//!
//! ```sh
//! cargo run -p gridkv --example consistency
//! ```

use std::time::Duration;

use gridkv::{GridKv, Liveness, ReadOptions, RingState, Ttl, WriteOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = GridKv::start(GridKv::builder("a").listen("127.0.0.1:0").build()?).await?;
    let seed = a.local_addr().to_string();
    let b = GridKv::start(
        GridKv::builder("b")
            .listen("127.0.0.1:0")
            .seeds([seed.clone()])
            .build()?,
    )
    .await?;
    let c = GridKv::start(
        GridKv::builder("c")
            .listen("127.0.0.1:0")
            .seeds([seed])
            .build()?,
    )
    .await?;
    // Ready means joined and filled; membership news then takes a few
    // gossip rounds to reach every node. Wait until each one sees all
    // three as normal members, so every write below goes to all owners.
    for node in [&a, &b, &c] {
        node.ready().await?;
    }
    for node in [&a, &b, &c] {
        while node
            .members()
            .iter()
            .filter(|m| m.liveness == Liveness::Alive && m.ring == RingState::Normal)
            .count()
            < 3
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The node's defaults: acknowledged once W = 2 owners applied it.
    a.set("greeting", "hello").await?;
    // Every owner must apply this one, within 500 ms.
    let all = WriteOptions::default()
        .quorum(3)
        .timeout(Duration::from_millis(500));
    a.set_opts("config:flags", "dark-mode", all).await?;

    // A quorum read (R = 2) sees every acknowledged write...
    let value = b.get("greeting").await?;
    println!("quorum read through b: {value:?}");
    // ...and a local read answers from this node's own copy when it holds
    // one (no network), at the risk of missing the latest write.
    let local = c.get_opts("config:flags", ReadOptions::local()).await?;
    println!("local read through c: {local:?}");

    // A TTL travels with the write; expired means absent on every owner.
    let session = WriteOptions::default().ttl(Duration::from_millis(300));
    a.set_opts("session:42", "token", session).await?;
    match b.ttl("session:42").await? {
        Ttl::ExpiresIn(left) => println!("session:42 expires in {left:?}"),
        other => println!("session:42: {other:?}"),
    }
    assert_eq!(b.ttl("greeting").await?, Ttl::Persistent);
    assert_eq!(b.ttl("nothing-here").await?, Ttl::Missing);
    tokio::time::sleep(Duration::from_millis(400)).await;
    println!("after 400 ms: {:?}", c.get("session:42").await?);

    // Deletes are versioned too: a delete wins over every older write.
    println!("deleted: {}", c.delete("greeting").await?);
    println!("greeting now: {:?}", a.get("greeting").await?);

    for node in [c, b, a] {
        node.shutdown().await;
    }
    Ok(())
}
