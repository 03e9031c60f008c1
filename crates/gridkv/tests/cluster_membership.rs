//! Membership of real nodes: real sockets, real time, on loopback.
//!
//! Test names start with `cluster_` so nextest runs them one at a time
//! (see `.config/nextest.toml`): their timing is real.

use std::time::Duration;

use gridkv::membership::{Liveness, MemberEvent, RingState};
use gridkv::net::faults::LinkFaults;
use gridkv::{FillMode, GridKv, JoinError, NodeId};
use tokio::time::{Instant, sleep, timeout};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

async fn node(id: &str, seeds: &[String]) -> Result<GridKv> {
    Ok(GridKv::start(GridKv::builder(id).seeds(seeds.iter().cloned()).build()?).await?)
}

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

/// Waits until `pred` holds for `node`'s member list, re-checking on every
/// event; fails after `limit`.
async fn wait_for(
    node: &GridKv,
    limit: Duration,
    what: &str,
    pred: impl Fn(&GridKv) -> bool,
) -> Duration {
    let start = Instant::now();
    let mut events = node.subscribe();
    loop {
        if pred(node) {
            return start.elapsed();
        }
        let left = limit.checked_sub(start.elapsed()).unwrap_or_else(|| {
            panic!(
                "{} did not see {what} within {limit:?}: {:#?}",
                node.id(),
                node.members()
            )
        });
        let _ = timeout(left.min(Duration::from_millis(100)), events.recv()).await;
    }
}

fn sees(node: &GridKv, who: &str, liveness: Liveness) -> bool {
    node.member(&id(who))
        .is_some_and(|m| m.liveness == liveness)
}

fn sees_all_alive(node: &GridKv, names: &[&str]) -> bool {
    names.iter().all(|n| {
        node.member(&id(n))
            .is_some_and(|m| m.liveness == Liveness::Alive && m.ring == RingState::Normal)
    })
}

async fn shutdown_clean(nodes: &[GridKv]) {
    for n in nodes {
        timeout(Duration::from_secs(5), n.shutdown())
            .await
            .expect("shutdown is bounded");
        assert_eq!(n.task_count(), 0, "{} left tasks behind", n.id());
    }
}

/// Nodes a, b and c, with b and c joined through a and a seeing both; the
/// seed list is returned for restarts.
async fn three_nodes() -> Result<(GridKv, GridKv, GridKv, Vec<String>)> {
    let a = node("a", &[]).await?;
    let seeds = vec![a.advertised_addr().to_owned()];
    let b = node("b", &seeds).await?;
    let c = node("c", &seeds).await?;
    wait_for(&a, Duration::from_secs(5), "b and c", |n| {
        sees_all_alive(n, &["b", "c"])
    })
    .await;
    Ok((a, b, c, seeds))
}

/// A free loopback port, for a seed that starts after the node naming it.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn cluster_nodes_join_through_a_seed_started_later() -> Result {
    // b and c start first, naming a seed that is not up yet; the seed names
    // itself (as a compose file would), which must be harmless.
    let seed_addr = free_addr();
    let seeds = vec![seed_addr.clone()];
    let b = node("b", &seeds).await?;
    let c = node("c", &seeds).await?;
    sleep(Duration::from_millis(1500)).await;
    assert!(
        timeout(Duration::from_millis(10), b.joined())
            .await
            .is_err(),
        "joined with no seed up"
    );
    let a = GridKv::start(
        GridKv::builder("a")
            .listen(seed_addr.clone())
            .seeds(seeds.clone())
            .build()?,
    )
    .await?;
    a.joined().await?;
    timeout(Duration::from_secs(5), b.joined()).await??;
    timeout(Duration::from_secs(5), c.joined()).await??;
    for n in [&a, &b, &c] {
        wait_for(n, Duration::from_secs(5), "all three normal", |n| {
            sees_all_alive(n, &["a", "b", "c"])
        })
        .await;
        assert_eq!(n.ring().len(), 3);
        assert_eq!(n.ring_members().placement.len(), 3);
    }
    shutdown_clean(&[a, b, c]).await;
    Ok(())
}

#[tokio::test]
async fn cluster_crashed_node_is_suspected_then_down() -> Result {
    let a = node("a", &[]).await?;
    let seeds = vec![a.advertised_addr().to_owned()];
    let mut others = Vec::new();
    for name in ["b", "c", "d"] {
        others.push(node(name, &seeds).await?);
    }
    for n in std::iter::once(&a).chain(&others) {
        wait_for(n, Duration::from_secs(5), "everyone", |n| {
            sees_all_alive(n, &["a", "b", "c", "d"])
        })
        .await;
    }
    let mut events = a.subscribe();
    let victim = others.pop().unwrap();
    let t0 = Instant::now();
    victim.kill().await;
    let mut suspected = None;
    let down = loop {
        let event = timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("the crash is detected")?;
        if let MemberEvent::Changed { member, .. } = event {
            if member.id() == id("d") {
                match member.liveness {
                    Liveness::Suspect => suspected = suspected.or(Some(t0.elapsed())),
                    Liveness::Down => break t0.elapsed(),
                    _ => {}
                }
            }
        }
    };
    println!("suspected after {suspected:?}, down after {down:?}");
    // Real time on a shared machine: generous bounds (the LAN bounds are
    // asserted in the simulation, over 500 seeds).
    assert!(down < Duration::from_secs(6), "down after {down:?}");
    // Down is not removal: d keeps its ring slots.
    assert_eq!(a.ring().len(), 4);
    assert_eq!(a.member(&id("d")).unwrap().ring, RingState::Normal);
    let mut all = vec![a];
    all.extend(others);
    shutdown_clean(&all).await;
    Ok(())
}

#[tokio::test]
async fn cluster_graceful_leave_is_left_not_down() -> Result {
    let (a, b, c, _) = three_nodes().await?;
    let mut events = a.subscribe();
    c.shutdown().await;
    assert_eq!(c.task_count(), 0);
    wait_for(&a, Duration::from_secs(3), "c left", |n| {
        sees(n, "c", Liveness::Left)
    })
    .await;
    wait_for(&b, Duration::from_secs(3), "c left", |n| {
        sees(n, "c", Liveness::Left)
    })
    .await;
    while let Ok(event) = events.try_recv() {
        if let MemberEvent::Changed { member, .. } = event {
            if member.id() == id("c") {
                assert!(
                    !matches!(member.liveness, Liveness::Suspect | Liveness::Down),
                    "a graceful leave looked like a failure: {member:?}"
                );
            }
        }
    }
    assert_eq!(a.ring().len(), 2);
    shutdown_clean(&[a, b]).await;
    Ok(())
}

#[tokio::test]
async fn cluster_duplicate_id_is_refused() -> Result {
    let a = node("a", &[]).await?;
    let seeds = vec![a.advertised_addr().to_owned()];
    let b = node("b", &seeds).await?;
    wait_for(&a, Duration::from_secs(5), "b", |n| {
        sees_all_alive(n, &["b"])
    })
    .await;
    let b_gen = a.member(&id("b")).unwrap().identity.generation;
    // A second process calling itself b, elsewhere.
    let impostor = node("b", &seeds).await?;
    let refused = timeout(Duration::from_secs(5), impostor.joined()).await?;
    match refused {
        Err(JoinError::DuplicateId { holder, .. }) => assert_eq!(holder, b.advertised_addr()),
        other => panic!("expected a duplicate-id refusal, got {other:?}"),
    }
    // The holder keeps its id.
    sleep(Duration::from_millis(500)).await;
    let seen = a.member(&id("b")).unwrap();
    assert_eq!(
        (seen.identity.generation, seen.liveness),
        (b_gen, Liveness::Alive)
    );
    // A refused node stops on its own: no socket or task left.
    let start = Instant::now();
    while impostor.task_count() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the refused node kept running"
        );
        sleep(Duration::from_millis(20)).await;
    }
    impostor.kill().await;
    shutdown_clean(&[a, b]).await;
    Ok(())
}

#[tokio::test]
async fn cluster_restart_under_the_same_id_is_accepted() -> Result {
    let (a, b, c, seeds) = three_nodes().await?;
    let old_gen = a.member(&id("c")).unwrap().identity.generation;
    c.kill().await;
    // Restart at once, before anyone noticed the crash.
    let c2 = node("c", &seeds).await?;
    timeout(Duration::from_secs(5), c2.joined()).await??;
    for n in [&a, &b] {
        wait_for(n, Duration::from_secs(5), "c's new run", |n| {
            n.member(&id("c"))
                .is_some_and(|m| m.identity.generation > old_gen && m.liveness == Liveness::Alive)
        })
        .await;
    }
    shutdown_clean(&[a, b, c2]).await;
    Ok(())
}

#[tokio::test]
async fn cluster_joining_serves_no_reads_until_filled() -> Result {
    let a = node("a", &[]).await?;
    let b = GridKv::start(
        GridKv::builder("b")
            .seeds([a.advertised_addr().to_owned()])
            .fill(FillMode::Manual)
            .build()?,
    )
    .await?;
    b.joined().await?;
    sleep(Duration::from_millis(1000)).await;
    let seen = a.member(&id("b")).unwrap();
    assert_eq!(seen.ring, RingState::Joining);
    assert!(!seen.serves_reads());
    assert_eq!(a.ring().len(), 1, "a joining node holds no slots yet");
    assert!(a.ring_members().future.contains(&id("b")));
    b.mark_filled().await;
    wait_for(&a, Duration::from_secs(3), "b normal", |n| {
        sees_all_alive(n, &["b"])
    })
    .await;
    assert_eq!(a.ring().len(), 2);
    shutdown_clean(&[a, b]).await;
    Ok(())
}

#[tokio::test]
async fn cluster_ten_percent_loss_declares_no_one_down() -> Result {
    let a = node("a", &[]).await?;
    let seeds = vec![a.advertised_addr().to_owned()];
    let mut nodes = vec![a];
    for name in ["b", "c", "d", "e"] {
        nodes.push(node(name, &seeds).await?);
    }
    let names = ["a", "b", "c", "d", "e"];
    for n in &nodes {
        wait_for(n, Duration::from_secs(5), "everyone", |n| {
            sees_all_alive(n, &names)
        })
        .await;
    }
    let mut events: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();
    // 10% of frames lost on every link, both ways, at the transport hook.
    for n in &nodes {
        for other in names {
            if other != n.id().as_str() {
                n.transport().faults().set(
                    id(other),
                    LinkFaults {
                        drop: 0.10,
                        ..LinkFaults::default()
                    },
                );
            }
        }
    }
    sleep(Duration::from_secs(15)).await;
    for n in &nodes {
        n.transport().faults().clear_all();
    }
    for (n, rx) in nodes.iter().zip(&mut events) {
        while let Ok(event) = rx.try_recv() {
            if let MemberEvent::Changed { member, .. } = event {
                assert_ne!(
                    member.liveness,
                    Liveness::Down,
                    "{} declared down by {}",
                    member.id(),
                    n.id()
                );
            }
        }
    }
    shutdown_clean(&nodes).await;
    Ok(())
}

#[test]
fn invalid_config_names_the_field() {
    let cases: [(gridkv::ConfigBuilder, &str); 5] = [
        (GridKv::builder(""), "node_id"),
        (GridKv::builder("a").listen("127.0.0.1"), "listen"),
        (GridKv::builder("a").seeds(["host:99999"]), "seeds"),
        (GridKv::builder("a").datacenter(""), "datacenter"),
        (
            GridKv::builder("a").membership(gridkv::SwimConfig {
                probe_interval: Duration::ZERO,
                ..gridkv::SwimConfig::lan()
            }),
            "probe_interval",
        ),
    ];
    for (builder, field) in cases {
        assert_eq!(builder.build().unwrap_err().field, field);
    }
}
