//! The same transport code under a deterministic network simulation
//! (turmoil): virtual time, simulated hosts, links that are held (every
//! segment delayed until released: a partition the sockets cannot see) and
//! hosts that crash and come back.
//!
//! Each run is seeded; a failure prints its seed. `GRIDKV_SIM_SEEDS=<n>`
//! runs more seeds (default 8), `GRIDKV_SEED=<seed>` replays one.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::turmoil_net::SimNet;
use gridkv::net::{Incoming, Lane, Transport, TransportConfig, TransportError};
use gridkv::{Generation, NodeId};
use tokio::time::Instant;

fn config(name: &str, generation: u64, seed: u64) -> TransportConfig {
    let mut config = TransportConfig::new(
        "sim",
        NodeId::new(name).unwrap(),
        Generation::new(generation),
    );
    config.listen = "0.0.0.0:7000".to_owned();
    config.advertise = Some(format!("{name}:7000"));
    config.heartbeat_interval = Duration::from_millis(200);
    config.idle_timeout = Duration::from_secs(1);
    config.seed = seed;
    config
}

fn echo(incoming: Incoming) {
    let mut data = incoming.data;
    tokio::spawn(async move {
        while let Some(inbound) = data.recv().await {
            if let Some(reply) = inbound.reply {
                let _ = reply.respond(inbound.body);
            }
        }
    });
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("GRIDKV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let n = std::env::var("GRIDKV_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8u64);
    (0..n).map(|i| 0x5EED_0000 + i).collect()
}

/// Runs `scenario` once per seed; a failing seed is printed before the
/// panic propagates.
fn for_each_seed(scenario: impl Fn(u64) -> turmoil::Result) {
    for seed in seeds() {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(seed)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("seed {seed} failed (replay: GRIDKV_SEED={seed}): {error}"),
            Err(panic) => {
                eprintln!("seed {seed} failed (replay: GRIDKV_SEED={seed})");
                std::panic::resume_unwind(panic);
            }
        }
    }
}

fn sim(seed: u64) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(120))
        .min_message_latency(Duration::from_micros(200))
        .max_message_latency(Duration::from_millis(2))
        .build()
}

async fn request(peer: &gridkv::net::Peer, body: &'static [u8]) -> Result<Bytes, TransportError> {
    peer.request(Lane::Data, Bytes::from_static(body)).await
}

#[test]
fn sim_held_link_times_out_closes_and_recovers() {
    for_each_seed(|seed| {
        let mut sim = sim(seed);
        sim.host("b", move || async move {
            let (b, incoming) =
                Transport::bind_with(config("b", 1, seed), Arc::new(SimNet)).await?;
            echo(incoming);
            std::future::pending::<()>().await;
            drop(b);
            Ok(())
        });
        sim.client("a", async move {
            let (a, _incoming) =
                Transport::bind_with(config("a", 1, seed), Arc::new(SimNet)).await?;
            let peer = a.peer("b:7000");
            for _ in 0..20 {
                assert_eq!(request(&peer, b"warm").await?, "warm");
            }
            let adaptive = peer.rtt(Lane::Data).timeout;
            assert!(
                adaptive < Duration::from_millis(100),
                "adaptive timeout {adaptive:?}"
            );

            // The link goes silent: segments are held, not refused.
            turmoil::hold("a", "b");
            let started = Instant::now();
            let error = request(&peer, b"held").await.unwrap_err();
            assert!(
                matches!(error, TransportError::Timeout { .. }),
                "got {error}"
            );
            assert!(started.elapsed() <= adaptive + Duration::from_millis(5));
            // Heartbeats stop arriving: the idle timeout closes the
            // connection, failing what is pending at once.
            let pending = tokio::spawn({
                let peer = peer.clone();
                async move {
                    peer.request_with_timeout(
                        Lane::Data,
                        Bytes::from_static(b"x"),
                        Duration::from_secs(30),
                    )
                    .await
                }
            });
            let error = pending.await.unwrap().unwrap_err();
            assert!(
                matches!(error, TransportError::ConnectionLost { .. }),
                "got {error}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "closed by the 1 s idle timeout"
            );
            assert!(a.stats().idle_timeouts >= 1);

            turmoil::release("a", "b");
            let healed = Instant::now();
            loop {
                match request(&peer, b"healed").await {
                    Ok(answer) => {
                        assert_eq!(answer, "healed");
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                assert!(
                    healed.elapsed() < Duration::from_secs(5),
                    "reconnects after the heal"
                );
            }
            a.shutdown().await;
            assert_eq!(a.task_count(), 0);
            Ok(())
        });
        sim.run()
    });
}

#[test]
fn sim_crashed_peer_fails_requests_and_its_restart_is_reached() {
    for_each_seed(|seed| {
        let mut sim = sim(seed);
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        sim.host("b", move || {
            let generation = generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            async move {
                let (b, incoming) =
                    Transport::bind_with(config("b", generation, seed), Arc::new(SimNet)).await?;
                echo(incoming);
                std::future::pending::<()>().await;
                drop(b);
                Ok(())
            }
        });
        sim.client("a", async move {
            let (a, _incoming) =
                Transport::bind_with(config("a", 1, seed), Arc::new(SimNet)).await?;
            let peer = a.peer("b:7000");
            assert_eq!(request(&peer, b"one").await?, "one");
            assert_eq!(
                peer.node(Lane::Data).unwrap().generation,
                Generation::new(1)
            );
            // Driven from the test below: wait until b is gone.
            let crashed = Instant::now();
            let error = loop {
                match request(&peer, b"two").await {
                    Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    Err(error) => break error,
                }
                assert!(
                    crashed.elapsed() < Duration::from_secs(10),
                    "the crash is noticed"
                );
            };
            assert!(
                matches!(
                    error,
                    TransportError::ConnectionLost { .. }
                        | TransportError::Timeout { .. }
                        | TransportError::Unreachable { .. }
                ),
                "got {error}"
            );
            loop {
                if let Ok(answer) = request(&peer, b"three").await {
                    assert_eq!(answer, "three");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert!(
                    crashed.elapsed() < Duration::from_secs(30),
                    "the restarted peer is reached"
                );
            }
            assert_eq!(
                peer.node(Lane::Data).unwrap().generation,
                Generation::new(2)
            );
            a.shutdown().await;
            assert_eq!(a.task_count(), 0);
            Ok(())
        });
        // Let the first exchange happen, crash b, bring it back.
        for _ in 0..200 {
            sim.step()?;
        }
        sim.crash("b");
        for _ in 0..2000 {
            sim.step()?;
        }
        sim.bounce("b");
        sim.run()
    });
}
