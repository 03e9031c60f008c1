//! Which addresses get cluster links (issue 15 §4): an indirect probe
//! naming a non-member address opens none, the number of links is bounded
//! (`max_links`), and the node's sweep closes links to addresses that are
//! neither members nor seeds.
//!
//! Real nodes and transports on loopback. The tests that start whole
//! nodes are named `cluster_*` so nextest runs them one at a time.

use std::time::Duration;

use bytes::Bytes;
use gridkv::membership::wire::{Message, Packet, Update};
use gridkv::net::{Incoming, Lane, Transport, TransportConfig, TransportError};
use gridkv::{Generation, GridKv, Identity, LINK_SWEEP_INTERVAL, Member, NodeId};
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep, timeout};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Answers every request on both lanes with its own body.
fn echo(incoming: Incoming) {
    let Incoming { control, data } = incoming;
    for mut rx in [control, data] {
        tokio::spawn(async move {
            while let Some(inbound) = rx.recv().await {
                if let Some(reply) = inbound.reply {
                    let _ = reply.respond(inbound.body);
                }
            }
        });
    }
}

/// Waits up to `within` for `done`, polling.
async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        sleep(Duration::from_millis(20)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_forged_ping_req_never_reaches_a_stranger() -> Result {
    let node = GridKv::start(GridKv::builder("victim-host").build()?).await?;
    node.ready().await?;
    // The stranger: a socket the test owns, that no member advertises.
    let stranger = TcpListener::bind("127.0.0.1:0").await?;
    let stranger_addr = stranger.local_addr()?.to_string();
    // The forger speaks the cluster protocol (same cluster name).
    let forger_id = NodeId::new("forger")?;
    let config = TransportConfig::new("gridkv", forger_id, Generation::new(1));
    let (forger, mut incoming) = Transport::bind(config).await?;
    let me = Member::new(Identity::new(
        forger_id,
        Generation::new(1),
        forger.advertised_addr(),
    ));
    for (seq, target) in [(41, "nobody"), (42, "victim-host")] {
        let packet = Packet {
            from: Update::of(&me),
            message: Message::PingReq {
                seq,
                target: NodeId::new(target)?,
                target_addr: stranger_addr.clone(),
            },
            updates: vec![],
            clock: Default::default(),
        };
        forger.send(
            node.advertised_addr(),
            Lane::Control,
            Bytes::from(packet.encode()),
        )?;
    }
    // The requester hears a nack for each, at once.
    let mut nacked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while nacked.len() < 2 {
        let inbound = timeout(deadline - Instant::now(), incoming.control.recv())
            .await?
            .ok_or("forger's incoming closed")?;
        if let Message::Nack { seq } = Packet::decode(&inbound.body)?.message {
            nacked.push(seq);
        }
    }
    nacked.sort_unstable();
    assert_eq!(nacked, [41, 42]);
    // Twice the probe timeout and more: a helper would have dialled by now.
    let accepted = timeout(Duration::from_secs(2), stranger.accept()).await;
    assert!(
        accepted.is_err(),
        "the node dialled the stranger address {stranger_addr}"
    );
    assert_eq!(node.membership_stats().probe_requests_refused, 2);
    assert!(!node.transport().link_addrs().contains(&stranger_addr));
    forger.shutdown().await;
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_links_new_links_fail_and_existing_ones_carry_traffic() -> Result {
    let config =
        |name: &str| TransportConfig::new("prod", NodeId::new(name).unwrap(), Generation::new(1));
    let mut peers = Vec::new();
    for name in ["p1", "p2", "p3"] {
        let (peer, incoming) = Transport::bind(config(name)).await?;
        echo(incoming);
        peers.push(peer);
    }
    let addr = |i: usize| peers[i].advertised_addr().to_owned();
    let mut bounded = config("bounded");
    bounded.max_links = 2;
    let (node, _incoming) = Transport::bind(bounded).await?;
    for i in 0..2 {
        let echoed = node
            .request(&addr(i), Lane::Data, Bytes::from_static(b"hi"))
            .await?;
        assert_eq!(&echoed[..], b"hi");
    }
    // A third address: refused by every entry point, nothing dialled.
    let refused = |e: &TransportError| matches!(e, TransportError::TooManyLinks { max: 2, peer } if *peer == addr(2));
    let err = node.try_peer(&addr(2)).unwrap_err();
    assert!(refused(&err), "{err:?}");
    let err = node
        .request(&addr(2), Lane::Data, Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(refused(&err), "{err:?}");
    let err = node
        .peer(&addr(2))
        .send(Lane::Control, Bytes::from_static(b"x"))
        .unwrap_err();
    assert!(refused(&err), "{err:?}");
    let stats = node.stats();
    assert_eq!((stats.links, stats.links_refused), (2, 3));
    assert_eq!(
        stats.connections_dialled, 2,
        "only the first two were dialled"
    );
    // The links there are keep working, on both lanes.
    for i in 0..2 {
        for lane in [Lane::Control, Lane::Data] {
            let echoed = node
                .request(&addr(i), lane, Bytes::from_static(b"again"))
                .await?;
            assert_eq!(&echoed[..], b"again");
        }
    }
    // Forgetting one makes room.
    node.forget(&addr(0));
    assert_eq!(node.stats().links, 1);
    let echoed = node
        .request(&addr(2), Lane::Data, Bytes::from_static(b"room"))
        .await?;
    assert_eq!(&echoed[..], b"room");
    node.shutdown().await;
    for peer in &peers {
        peer.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_the_sweep_closes_links_to_departed_non_members() -> Result {
    let a = GridKv::start(GridKv::builder("a").build()?).await?;
    let seeds = [a.advertised_addr().to_string()];
    let b = GridKv::start(GridKv::builder("b").seeds(seeds.clone()).build()?).await?;
    let c = GridKv::start(GridKv::builder("c").seeds(seeds).build()?).await?;
    for node in [&a, &b, &c] {
        node.ready().await?;
    }
    let (b_addr, c_addr) = (
        b.advertised_addr().to_owned(),
        c.advertised_addr().to_owned(),
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            let links = a.transport().link_addrs();
            links.contains(&b_addr) && links.contains(&c_addr)
        })
        .await,
        "a never linked to b and c: {:?}",
        a.transport().link_addrs()
    );
    // b leaves; a forgets its links on the news.
    b.shutdown().await;
    assert!(
        eventually(Duration::from_secs(10), || !a
            .transport()
            .link_addrs()
            .contains(&b_addr))
        .await,
        "a kept b's links after it left"
    );
    // A late request (a placement from before the leave) opens them again.
    let _ = a
        .transport()
        .peer(&b_addr)
        .send(Lane::Data, Bytes::from_static(b"late"));
    assert!(a.transport().link_addrs().contains(&b_addr));
    let closed_before = a.membership_stats().links_closed;
    // The sweep closes them within an interval, and keeps the member's.
    assert!(
        eventually(LINK_SWEEP_INTERVAL * 2 + Duration::from_secs(1), || {
            !a.transport().link_addrs().contains(&b_addr)
        })
        .await,
        "the sweep left the departed b's links open"
    );
    assert!(a.membership_stats().links_closed > closed_before);
    assert!(a.transport().link_addrs().contains(&c_addr));
    assert_eq!(
        a.transport().stats().links,
        a.transport().link_addrs().len() as u64
    );
    c.shutdown().await;
    a.shutdown().await;
    Ok(())
}
