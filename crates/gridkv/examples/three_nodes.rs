//! Three nodes in one process, and the membership events one of them sees.
//!
//! Starts three nodes on loopback that find each other through the first,
//! prints what node `a` learns as the others join, as `c` leaves gracefully
//! and as `b` crashes, then stops.
//!
//! ```sh
//! cargo run -p gridkv --example three_nodes
//! ```

use std::time::Duration;

use gridkv::{GridKv, Liveness, MemberEvent};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::timeout;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = |id: &str, seeds: Vec<String>| {
        let config = GridKv::builder(id)
            .listen("127.0.0.1:0")
            .seeds(seeds)
            .build();
        async move {
            GridKv::start(config?)
                .await
                .map_err(Box::<dyn std::error::Error>::from)
        }
    };

    let a = start("a", vec![]).await?;
    let mut events = a.subscribe();
    let seed = a.local_addr().to_string();
    let b = start("b", vec![seed.clone()]).await?;
    let c = start("c", vec![seed]).await?;
    for node in [&a, &b, &c] {
        node.ready().await?;
    }
    println!("-- three nodes ready; a sees {} members", a.members().len());

    c.shutdown().await;
    println!("-- c left gracefully");
    b.kill().await;
    println!("-- b crashed");

    // Print what `a` hears until it has seen b down (or ten seconds pass).
    let watch = async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    print(&event);
                    if let MemberEvent::Changed { member, .. } = &event {
                        if member.id().as_str() == "b" && member.liveness == Liveness::Down {
                            return;
                        }
                    }
                }
                // A slow reader misses events; the member table stays true.
                Err(RecvError::Lagged(missed)) => println!("(missed {missed} events)"),
                Err(RecvError::Closed) => return,
            }
        }
    };
    if timeout(Duration::from_secs(10), watch).await.is_err() {
        println!("b not yet seen down after 10 s");
    }
    for m in a.members().iter() {
        println!("{:>3}: {:?}, {:?}", m.id().as_str(), m.liveness, m.ring);
    }
    a.shutdown().await;
    Ok(())
}

fn print(event: &MemberEvent) {
    match event {
        MemberEvent::Changed { previous, member } => println!(
            "event: {} {:?}/{:?} (was {:?})",
            member.id().as_str(),
            member.liveness,
            member.ring,
            previous.as_ref().map(|p| (p.liveness, p.ring)),
        ),
        MemberEvent::RingChanged { version } => println!("event: ring v{version}"),
        other => println!("event: {other:?}"),
    }
}
