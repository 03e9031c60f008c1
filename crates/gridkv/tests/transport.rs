//! The transport on real loopback sockets: multiplexing, lanes, limits, and
//! every way a peer can fail (killed, restarted, silent, not reading,
//! partitioned, misbehaving), each ending in its typed error within its
//! timeout and leaving no task or connection behind.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gridkv::net::faults::LinkFaults;
use gridkv::net::frame::{FrameDecoder, PRE_HANDSHAKE_MAX_FRAME, encode_frame};
use gridkv::net::handshake::{Hello, HelloReply, LocalIdentity};
use gridkv::net::{Incoming, Lane, Limit, Transport, TransportConfig, TransportError};
use gridkv::{Generation, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

fn config(name: &str) -> TransportConfig {
    TransportConfig::new("prod", NodeId::new(name).unwrap(), Generation::new(1))
}

async fn start(config: TransportConfig) -> (Transport, Incoming) {
    Transport::bind(config).await.expect("bind")
}

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

/// Shuts the node down and checks nothing of it is left running.
async fn assert_clean_shutdown(node: &Transport) {
    timeout(Duration::from_secs(5), node.shutdown())
        .await
        .expect("shutdown is bounded in time");
    assert_eq!(node.task_count(), 0, "tasks left after shutdown");
    assert_eq!(node.stats().open_connections, 0, "connections left");
    assert_eq!(node.stats().queued_frames, 0, "frames left queued");
}

/// A request of `x` on the data lane with a long explicit timeout, in a task
/// of its own (so the test can act while it is pending).
fn spawn_request(
    peer: &gridkv::net::Peer,
    within: Duration,
) -> tokio::task::JoinHandle<Result<Bytes, TransportError>> {
    let peer = peer.clone();
    tokio::spawn(async move {
        peer.request_with_timeout(Lane::Data, Bytes::from_static(b"x"), within)
            .await
    })
}

fn addr(node: &Transport) -> String {
    node.local_addr().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_messages_on_both_lanes() {
    let (a, _a_in) = start(config("a")).await;
    let (b, b_in) = start(config("b")).await;
    echo(b_in);
    let peer = a.peer(&addr(&b));
    for lane in Lane::ALL {
        let answer = peer
            .request(lane, Bytes::from(format!("hi {lane}")))
            .await
            .unwrap();
        assert_eq!(answer, format!("hi {lane}"));
        assert_eq!(peer.node(lane).unwrap().node_id.as_str(), "b");
    }
    // One connection per lane, reused for every further request.
    for i in 0..100u32 {
        peer.request(Lane::Data, Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
    assert_eq!(a.stats().connections_dialled, 2);
    assert_eq!(b.stats().connections_accepted, 2);
    let rtt = a.rtt(&addr(&b)).unwrap();
    assert!(rtt.samples >= 1 && rtt.srtt.is_some());
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_in_flight_get_their_own_answers_in_any_order() {
    let (a, _a_in) = start(config("a")).await;
    let (b, mut b_in) = start(config("b")).await;
    // Collect 500 requests, then answer them in reverse order.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(inbound) = b_in.data.recv().await {
            held.push(inbound);
            if held.len() == 500 {
                while let Some(inbound) = held.pop() {
                    let answer = [&inbound.body[..], b"!"].concat();
                    inbound.reply.unwrap().respond(answer.into()).unwrap();
                }
            }
        }
    });
    let peer = a.peer(&addr(&b));
    let requests = (0..500u32).map(|i| {
        let peer = peer.clone();
        async move {
            let body = Bytes::from(i.to_string());
            let answer = peer
                .request_with_timeout(Lane::Data, body, Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(answer, format!("{i}!"));
        }
    });
    futures_join_all(requests).await;
    assert_eq!(a.stats().connections_dialled, 1);
    assert_eq!(peer.in_flight(Lane::Data), 0);
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

/// Joins futures without a `futures` dependency: one task each.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>)
where
    F: Future<Output = ()> + Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    for handle in handles {
        handle.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_requests_release_their_slot_and_late_answers_are_discarded() {
    let mut cfg = config("a");
    cfg.max_in_flight = 8;
    let (a, _a_in) = start(cfg).await;
    let (b, mut b_in) = start(config("b")).await;
    // b answers after 200 ms: too late for callers that gave up at 20 ms.
    tokio::spawn(async move {
        while let Some(inbound) = b_in.data.recv().await {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = inbound.reply.unwrap().respond(inbound.body);
            });
        }
    });
    let peer = a.peer(&addr(&b));
    for round in 0..3 {
        for _ in 0..8 {
            let request = peer.request_with_timeout(
                Lane::Data,
                Bytes::from_static(b"x"),
                Duration::from_secs(5),
            );
            // The caller's own deadline drops the future mid-request.
            assert!(timeout(Duration::from_millis(20), request).await.is_err());
        }
        assert_eq!(
            peer.in_flight(Lane::Data),
            0,
            "round {round}: slots released"
        );
    }
    // 24 late answers arrive and complete nothing.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.stats().late_responses, 24);
    // The connection is healthy: the next request is answered on it.
    let answer = peer
        .request_with_timeout(
            Lane::Data,
            Bytes::from_static(b"still here"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(answer, "still here");
    assert_eq!(a.stats().connections_dialled, 1);
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_messages_arrive_in_order() {
    let (a, _a_in) = start(config("a")).await;
    let (b, mut b_in) = start(config("b")).await;
    let peer = a.peer(&addr(&b));
    for i in 0..2000u32 {
        peer.send(Lane::Data, Bytes::from(i.to_be_bytes().to_vec()))
            .unwrap();
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for i in 0..2000u32 {
        let inbound = timeout(Duration::from_secs(5), b_in.data.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(inbound.reply.is_none());
        assert_eq!(
            inbound.body[..],
            i.to_be_bytes(),
            "message {i} out of order"
        );
    }
    // Queued faster than written, the frames were coalesced into far fewer
    // socket writes than frames. The writer counts a batch's frames once
    // its last write returns, which may be after the reader has them all.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a.stats().frames_sent < 2000 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = a.stats();
    assert!(
        stats.frames_sent >= 2000,
        "{} frames counted as sent",
        stats.frames_sent
    );
    assert!(
        stats.write_batches * 4 < stats.frames_sent,
        "{} frames in {} writes",
        stats.frames_sent,
        stats.write_batches
    );
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

/// Many callers each waiting on one request at a time, all on one worker
/// thread (as a node's RESP connections are): the writer lets the ready
/// callers queue their next requests before it writes, so requests share
/// socket writes instead of taking one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn requests_of_concurrent_callers_share_socket_writes() {
    let (a, _a_in) = start(config("a")).await;
    let (b, b_in) = start(config("b")).await;
    echo(b_in);
    let peer = a.peer(&addr(&b));
    peer.request(Lane::Data, Bytes::from_static(b"warm up"))
        .await
        .unwrap();
    let before = a.stats();
    let callers: Vec<_> = (0..32)
        .map(|c| {
            let peer = peer.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let body = Bytes::from(format!("{c}/{i}"));
                    let answer = peer.request(Lane::Data, body.clone()).await.unwrap();
                    assert_eq!(answer, body);
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let after = a.stats();
    let frames = after.frames_sent - before.frames_sent;
    let writes = after.write_batches - before.write_batches;
    assert!(frames >= 32 * 50, "{frames} frames sent");
    assert!(
        writes * 4 < frames,
        "{frames} frames in {writes} socket writes"
    );
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_mismatch_is_refused_with_the_same_words_on_both_sides() {
    let (prod, _prod_in) = start(config("a")).await;
    let mut test_cfg = config("b");
    test_cfg.cluster = "test".to_owned();
    let (test, _test_in) = start(test_cfg).await;
    let error = test
        .request(&addr(&prod), Lane::Data, Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    let TransportError::Handshake { error, .. } = &error else {
        panic!("expected a handshake error, got {error}");
    };
    assert_eq!(
        error.to_string(),
        "refused by peer: cluster name mismatch: expected prod, got test"
    );
    // The refusing side counts its failure just after sending the refusal.
    let deadline = Instant::now() + Duration::from_secs(5);
    while prod.stats().handshake_failures == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(prod.stats().handshake_failures, 1);
    assert_eq!(test.stats().handshake_failures, 1);

    // Another protocol version, from a hand-written peer.
    let mut stream = TcpStream::connect(prod.local_addr()).await.unwrap();
    let mut hello = Hello::new("prod", NodeId::new("future").unwrap(), Generation::new(1));
    hello.protocol_version = 2;
    write_frame(&mut stream, &hello.encode().unwrap()).await;
    let reply = read_frame(&mut stream).await.expect("a refusal");
    let HelloReply::Refused { reason } = HelloReply::decode(&reply).unwrap() else {
        panic!("refused");
    };
    assert_eq!(
        reason.to_string(),
        "protocol version mismatch: we speak 1, peer speaks 2"
    );
    assert_clean_shutdown(&prod).await;
    assert_clean_shutdown(&test).await;
}

async fn write_frame(stream: &mut TcpStream, payload: &[u8]) {
    let mut out = BytesMut::new();
    encode_frame(payload, usize::MAX, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
}

async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let decoder = FrameDecoder::new(PRE_HANDSHAKE_MAX_FRAME);
    let mut buf = BytesMut::new();
    loop {
        if let Some(frame) = decoder.decode(&mut buf).unwrap() {
            return Some(frame);
        }
        if stream.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// A hand-written peer that completes the handshake as `name`, then does
/// whatever the test wants with the raw socket.
async fn raw_peer_accepting(listener: &TcpListener, name: &str) -> TcpStream {
    let (mut stream, _) = listener.accept().await.unwrap();
    let hello = read_frame(&mut stream).await.unwrap();
    Hello::decode(&hello).unwrap();
    let me = LocalIdentity {
        cluster: "prod".to_owned(),
        node_id: NodeId::new(name).unwrap(),
        generation: Generation::new(9),
    };
    write_frame(&mut stream, &me.accepted().encode().unwrap()).await;
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_mid_request_fails_it_at_once() {
    let (a, _a_in) = start(config("a")).await;
    let (b, mut b_in) = start(config("b")).await;
    let b_addr = addr(&b);
    let peer = a.peer(&b_addr);
    let request = spawn_request(&peer, Duration::from_secs(30));
    // b has the request, then dies without answering.
    let inbound = b_in.data.recv().await.unwrap();
    let killed = Instant::now();
    std::mem::forget(inbound); // no NoAnswer error frame: a crash says nothing
    b.shutdown().await;
    let error = request.await.unwrap().unwrap_err();
    assert!(
        matches!(error, TransportError::ConnectionLost { .. }),
        "got {error}"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "failed at once, not at the timeout"
    );
    // The next request cannot dial: unreachable, and typed.
    let error = peer
        .request(Lane::Data, Bytes::from_static(b"y"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, TransportError::Unreachable { .. }),
        "got {error}"
    );
    assert_clean_shutdown(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_restarted_under_the_same_address_is_reached_again() {
    let mut a_cfg = config("a");
    // A long backoff, so only the restarted peer dialling us cuts it short.
    a_cfg.backoff.base = Duration::from_secs(20);
    a_cfg.backoff.max = Duration::from_secs(20);
    let (a, a_in) = start(a_cfg).await;
    echo(a_in);
    let (b, b_in) = start(config("b")).await;
    echo(b_in);
    let b_addr = addr(&b);
    let peer = a.peer(&b_addr);
    peer.request(Lane::Data, Bytes::from_static(b"1"))
        .await
        .unwrap();
    assert_eq!(
        peer.node(Lane::Data).unwrap().generation,
        Generation::new(1)
    );
    assert_clean_shutdown(&b).await;

    // Dialling fails while b is down; a backs off (for up to 20 s).
    let error = loop {
        match peer.request(Lane::Data, Bytes::from_static(b"2")).await {
            Err(error @ TransportError::Unreachable { .. }) => break error,
            Err(TransportError::ConnectionLost { .. }) => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    let TransportError::Unreachable { retry_in, .. } = error else {
        unreachable!()
    };
    assert!(
        retry_in > Duration::ZERO && retry_in <= Duration::from_secs(20),
        "{retry_in:?}"
    );

    // b comes back on the same port, with a new generation, and talks to a:
    // a stops backing off and reaches it at once.
    let mut b2_cfg = config("b");
    b2_cfg.generation = Generation::new(2);
    b2_cfg.listen = b_addr.clone();
    let (b2, b2_in) = start(b2_cfg).await;
    echo(b2_in);
    b2.request(&addr(&a), Lane::Data, Bytes::from_static(b"hello a"))
        .await
        .unwrap();
    let answer = timeout(Duration::from_secs(5), async {
        loop {
            match peer.request(Lane::Data, Bytes::from_static(b"3")).await {
                Ok(answer) => break answer,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
    .expect("reached within 5 s, not after the 20 s backoff");
    assert_eq!(answer, "3");
    assert_eq!(
        peer.node(Lane::Data).unwrap().generation,
        Generation::new(2)
    );
    assert!(a.stats().reconnects >= 1);
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_accepts_and_says_nothing_fails_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap().to_string();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            held.push(stream);
        }
    });
    let mut cfg = config("a");
    cfg.handshake_timeout = Duration::from_millis(300);
    let (a, _a_in) = start(cfg).await;
    let started = Instant::now();
    let error = a
        .request(&silent, Lane::Data, Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, TransportError::Handshake { .. }),
        "got {error}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "failed after the handshake timeout, took {took:?}"
    );
    hold.abort();
    assert_clean_shutdown(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_gets_backpressure_then_the_connection_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink = listener.local_addr().unwrap().to_string();
    let hold = tokio::spawn(async move {
        // Handshakes on every connection, then never reads again.
        let mut held = Vec::new();
        loop {
            held.push(raw_peer_accepting(&listener, "sink").await);
        }
    });
    let mut cfg = config("a");
    cfg.queue_bytes = 1 << 20;
    cfg.idle_timeout = Duration::from_millis(800);
    cfg.heartbeat_interval = Duration::from_millis(200);
    let (a, _a_in) = start(cfg).await;
    let peer = a.peer(&sink);
    let value = Bytes::from(vec![7u8; 256 * 1024]);
    let mut backpressured = false;
    let started = Instant::now();
    for _ in 0..200 {
        match peer.send(Lane::Data, value.clone()) {
            Ok(()) => tokio::time::sleep(Duration::from_millis(2)).await,
            Err(TransportError::Backpressure { limit, .. }) => {
                assert_eq!(limit, Limit::QueueBytes);
                backpressured = true;
                break;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(backpressured, "a full socket buffer ends in backpressure");
    // A request now waits behind the stalled queue; the stalled write (or
    // silence) closes the connection, failing it before its own timeout.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let result = peer
        .request_with_timeout(
            Lane::Control,
            Bytes::from_static(b"ping?"),
            Duration::from_secs(10),
        )
        .await;
    // The control lane has its own connection and the sink answers nothing:
    // it fails by the idle timeout, not after 10 s.
    assert!(
        matches!(result, Err(TransportError::ConnectionLost { .. })),
        "got {result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = a.stats();
    assert!(stats.idle_timeouts >= 1);
    assert!(stats.backpressure >= 1);
    hold.abort();
    assert_clean_shutdown(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_times_requests_out_and_heartbeats_close_the_connection() {
    let tune = |mut cfg: TransportConfig| {
        cfg.heartbeat_interval = Duration::from_millis(100);
        cfg.idle_timeout = Duration::from_millis(500);
        cfg
    };
    let (a, a_in) = start(tune(config("a"))).await;
    let (b, b_in) = start(tune(config("b"))).await;
    echo(a_in);
    echo(b_in);
    let peer = a.peer(&addr(&b));
    for _ in 0..20 {
        peer.request(Lane::Control, Bytes::from_static(b"warm"))
            .await
            .unwrap();
    }
    let timeout_before = peer.rtt(Lane::Control).timeout;
    assert!(
        timeout_before < Duration::from_millis(100),
        "adaptive timeout {timeout_before:?}"
    );
    let (a_id, b_id) = (a.node_id(), b.node_id());
    a.faults().set(b_id, LinkFaults::partitioned());
    b.faults().set(a_id, LinkFaults::partitioned());
    let started = Instant::now();
    let error = peer
        .request(Lane::Control, Bytes::from_static(b"lost"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, TransportError::Timeout { .. }),
        "got {error}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "the adaptive timeout, not the ceiling"
    );
    // Nothing arrives any more: heartbeats time the connections out.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Whichever side noticed first closed the connection.
    assert!(
        a.stats().idle_timeouts + b.stats().idle_timeouts >= 1,
        "{:?}",
        a.stats()
    );
    assert_eq!(a.stats().open_connections, 0);
    a.faults().clear_all();
    b.faults().clear_all();
    let answer = timeout(Duration::from_secs(5), async {
        loop {
            match peer
                .request(Lane::Control, Bytes::from_static(b"healed"))
                .await
            {
                Ok(answer) => break answer,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(answer, "healed");
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_or_garbled_frame_closes_only_that_connection() {
    let (b, b_in) = start(config("b")).await;
    echo(b_in);
    for garbage in [
        // A prefix over the 16 MiB limit.
        (32u32 << 20).to_be_bytes().to_vec(),
        // A frame whose envelope tag is unknown.
        vec![0, 0, 0, 1, 0xEE],
    ] {
        let mut stream = TcpStream::connect(b.local_addr()).await.unwrap();
        let hello = Hello::new("prod", NodeId::new("rogue").unwrap(), Generation::new(1));
        write_frame(&mut stream, &hello.encode().unwrap()).await;
        read_frame(&mut stream).await.unwrap();
        stream.write_all(&garbage).await.unwrap();
        let mut rest = Vec::new();
        let closed = timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "b closed the rogue connection");
    }
    assert_eq!(b.stats().frame_errors, 2);
    // Everyone else is still served.
    let (a, _a_in) = start(config("a")).await;
    let answer = a
        .request(&addr(&b), Lane::Data, Bytes::from_static(b"ok"))
        .await
        .unwrap();
    assert_eq!(answer, "ok");
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_are_capped() {
    let mut cfg = config("b");
    cfg.max_inbound_connections = 2;
    let (b, _b_in) = start(cfg).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(b.local_addr()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(b.local_addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let read = timeout(Duration::from_secs(2), third.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the third connection is closed"
    );
    assert_eq!(b.stats().inbound_rejected, 1);
    drop(held);
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_at_its_inbound_limit_answers_overloaded() {
    let (a, _a_in) = start(config("a")).await;
    let mut b_cfg = config("b");
    b_cfg.inbound_in_flight = 2;
    let (b, mut b_in) = start(b_cfg).await;
    let peer = a.peer(&addr(&b));
    let waiting: Vec<_> = (0..4)
        .map(|_| spawn_request(&peer, Duration::from_secs(10)))
        .collect();
    // b's application holds two requests unanswered; it refuses the rest.
    let first = b_in.data.recv().await.unwrap();
    let second = b_in.data.recv().await.unwrap();
    timeout(Duration::from_secs(5), async {
        while b.stats().inbound_overloaded < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the two requests over the limit are refused");
    let mut overloaded = 0;
    drop((first, second)); // unanswered: NoAnswer, at once
    let mut no_answer = 0;
    for handle in waiting {
        match handle.await.unwrap() {
            Err(TransportError::Overloaded { .. }) => overloaded += 1,
            Err(TransportError::NoAnswer { .. }) => no_answer += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((overloaded, no_answer), (2, 2));
    assert_eq!(b.stats().inbound_overloaded, 2);
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_in_flight_limit_refuses_at_once() {
    let mut a_cfg = config("a");
    a_cfg.max_in_flight = 3;
    let (a, _a_in) = start(a_cfg).await;
    let (b, mut b_in) = start(config("b")).await;
    let peer = a.peer(&addr(&b));
    let waiting: Vec<_> = (0..3)
        .map(|_| spawn_request(&peer, Duration::from_secs(10)))
        .collect();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(b_in.data.recv().await.unwrap());
    }
    let error = peer
        .request(Lane::Data, Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        TransportError::Backpressure {
            peer: addr(&b),
            limit: Limit::InFlightRequests
        }
    );
    for inbound in held {
        inbound
            .reply
            .unwrap()
            .respond(Bytes::from_static(b"done"))
            .unwrap();
    }
    for handle in waiting {
        assert_eq!(handle.await.unwrap().unwrap(), "done");
    }
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_messages_are_refused_before_sending() {
    let mut cfg = config("a");
    cfg.max_frame = 64 * 1024;
    let (a, _a_in) = start(cfg).await;
    let error = a
        .request("127.0.0.1:1", Lane::Data, Bytes::from(vec![0; 64 * 1024]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, TransportError::TooLarge { max: 65536, .. }),
        "got {error}"
    );
    assert_clean_shutdown(&a).await;
}

/// The frame limit counts each envelope's own header: one byte for a
/// one-way message, nine (tag and id) for a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frame_limit_counts_each_envelopes_own_header() {
    const MAX: usize = 64 * 1024;
    let mut cfg = config("a");
    cfg.max_frame = MAX;
    let (a, _a_in) = start(cfg).await;
    let mut cfg = config("b");
    cfg.max_frame = MAX;
    let (b, mut b_in) = start(cfg).await;
    let peer = a.peer(&addr(&b));
    // Exactly a frame: delivered.
    peer.send(Lane::Data, Bytes::from(vec![7; MAX - 1]))
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), b_in.data.recv())
        .await
        .expect("the message arrives")
        .unwrap();
    assert_eq!(got.body.len(), MAX - 1);
    assert!(got.reply.is_none());
    // One byte over: refused before sending, as a request just over.
    let over = peer
        .send(Lane::Data, Bytes::from(vec![7; MAX]))
        .unwrap_err();
    assert!(
        matches!(over, TransportError::TooLarge { len, max: MAX } if len == MAX + 1),
        "got {over}"
    );
    let over = peer
        .request(Lane::Data, Bytes::from(vec![7; MAX - 8]))
        .await
        .unwrap_err();
    assert!(
        matches!(over, TransportError::TooLarge { len, max: MAX } if len == MAX + 1),
        "got {over}"
    );
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_frames_reach_the_handler_twice_but_answer_once() {
    let (a, _a_in) = start(config("a")).await;
    let (b, mut b_in) = start(config("b")).await;
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    tokio::spawn({
        let seen = seen.clone();
        async move {
            while let Some(inbound) = b_in.data.recv().await {
                seen.lock().push(inbound.body.clone());
                let _ = inbound.reply.unwrap().respond(inbound.body);
            }
        }
    });
    let peer = a.peer(&addr(&b));
    peer.request(Lane::Data, Bytes::from_static(b"warm"))
        .await
        .unwrap();
    a.faults().set(
        b.node_id(),
        LinkFaults {
            duplicate: 1.0,
            ..LinkFaults::default()
        },
    );
    for i in 0..10u8 {
        assert_eq!(
            peer.request(Lane::Data, Bytes::from(vec![i]))
                .await
                .unwrap()[..],
            [i]
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen.lock().len(), 1 + 20, "each request delivered twice");
    // b answered each copy; the second answer completes nothing.
    assert_eq!(a.stats().late_responses, 10);
    assert!(a.stats().fault_duplicated >= 10);
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_links_keep_order_and_raise_the_rtt() {
    let (a, _a_in) = start(config("a")).await;
    let (b, b_in) = start(config("b")).await;
    echo(b_in);
    let peer = a.peer(&addr(&b));
    for _ in 0..5 {
        peer.request(Lane::Control, Bytes::from_static(b"warm"))
            .await
            .unwrap();
    }
    let fast = peer.rtt(Lane::Control).srtt.unwrap();
    a.faults().set(
        b.node_id(),
        LinkFaults {
            delay: Duration::from_millis(30),
            ..LinkFaults::default()
        },
    );
    for _ in 0..20 {
        peer.request_with_timeout(
            Lane::Control,
            Bytes::from_static(b"slow"),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    }
    let slow = peer.rtt(Lane::Control).srtt.unwrap();
    assert!(
        slow >= Duration::from_millis(25) && slow > fast * 2,
        "srtt {fast:?} -> {slow:?}"
    );
    assert!(peer.rtt(Lane::Control).timeout >= slow);
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_one_way_messages_keep_their_order() {
    let (a, _a_in) = start(config("a")).await;
    let (b, mut b_in) = start(config("b")).await;
    let peer = a.peer(&addr(&b));
    peer.request(Lane::Data, Bytes::from_static(b"connect"))
        .await
        .ok();
    a.faults().set(
        b.node_id(),
        LinkFaults {
            delay: Duration::from_millis(5),
            ..LinkFaults::default()
        },
    );
    for i in 0..200u32 {
        peer.send(Lane::Data, Bytes::from(i.to_be_bytes().to_vec()))
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 200 {
        let inbound = timeout(Duration::from_secs(5), b_in.data.recv())
            .await
            .unwrap()
            .unwrap();
        if inbound.reply.is_none() {
            got.push(u32::from_be_bytes(inbound.body[..].try_into().unwrap()));
        }
    }
    assert_eq!(got, (0..200).collect::<Vec<_>>());
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_frames_time_out_and_the_rest_get_through() {
    let (a, _a_in) = start(config("a")).await;
    let (b, b_in) = start(config("b")).await;
    echo(b_in);
    let peer = a.peer(&addr(&b));
    peer.request(Lane::Data, Bytes::from_static(b"connect"))
        .await
        .unwrap();
    a.faults().set(
        b.node_id(),
        LinkFaults {
            drop: 0.3,
            ..LinkFaults::default()
        },
    );
    let (mut ok, mut timed_out) = (0, 0);
    for i in 0..100u32 {
        match peer
            .request_with_timeout(
                Lane::Data,
                Bytes::from(i.to_be_bytes().to_vec()),
                Duration::from_millis(100),
            )
            .await
        {
            Ok(answer) => {
                assert_eq!(
                    answer[..],
                    i.to_be_bytes(),
                    "no answer completes another request"
                );
                ok += 1;
            }
            Err(TransportError::Timeout { .. }) => timed_out += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(ok > 40 && timed_out > 10, "ok {ok}, timed out {timed_out}");
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_resolved_and_unspecified_listen_needs_an_advertise_address() {
    let (b, b_in) = start(config("b")).await;
    echo(b_in);
    let (a, _a_in) = start(config("a")).await;
    let by_name = format!("localhost:{}", b.local_addr().port());
    assert_eq!(
        a.request(&by_name, Lane::Data, Bytes::from_static(b"dns"))
            .await
            .unwrap(),
        "dns"
    );

    let mut any = config("c");
    any.listen = "0.0.0.0:0".to_owned();
    let error = Transport::bind(any.clone()).await.unwrap_err();
    assert!(
        matches!(&error, TransportError::Config(e) if e.field == "advertise"),
        "got {error}"
    );
    any.advertise = Some("c.example:7000".to_owned());
    let (c, _c_in) = start(any).await;
    assert_eq!(c.advertised_addr(), "c.example:7000");
    assert!(c.local_addr().ip().is_unspecified() && c.local_addr().port() != 0);
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
    assert_clean_shutdown(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_in_one_process_keep_their_own_counters() {
    let (a, _a_in) = start(config("a")).await;
    let (b, b_in) = start(config("b")).await;
    let (c, _c_in) = start(config("c")).await;
    echo(b_in);
    a.request(&addr(&b), Lane::Data, Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert!(a.stats().frames_sent >= 1);
    assert!(b.stats().frames_received >= 1);
    assert_eq!(c.stats(), Default::default());
    for node in [&a, &b, &c] {
        assert_clean_shutdown(node).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_data_lane_never_delays_the_control_lane() {
    let mut b_cfg = config("b");
    b_cfg.incoming_capacity = 1;
    b_cfg.inbound_in_flight_bytes = 4 << 20;
    let (a, _a_in) = start(config("a")).await;
    let (b, b_in) = start(b_cfg).await;
    // b's application answers control requests but never takes data: the
    // data connection backs up into TCP flow control and a's queue.
    let Incoming { mut control, data } = b_in;
    tokio::spawn(async move {
        while let Some(inbound) = control.recv().await {
            let _ = inbound.reply.unwrap().respond(inbound.body);
        }
    });
    let peer = a.peer(&addr(&b));
    let value = Bytes::from(vec![1u8; 4 << 20]);
    let mut queued = 0;
    while peer.send(Lane::Data, value.clone()).is_ok() && queued < 64 {
        queued += 1;
    }
    assert!(queued >= 8, "{queued} values of 4 MiB queued");
    for _ in 0..50 {
        let started = Instant::now();
        peer.request_with_timeout(
            Lane::Control,
            Bytes::from_static(b"probe"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "a probe waited {:?} behind data",
            started.elapsed()
        );
    }
    drop(data);
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
}

#[test]
fn dropping_the_last_handle_stops_every_task() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let alive = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = alive();
        let (a, _a_in) = start(config("a")).await;
        let (b, b_in) = start(config("b")).await;
        echo(b_in);
        for lane in Lane::ALL {
            a.request(&addr(&b), lane, Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        assert!(
            alive() > before + 4,
            "accept loops, links and connections run"
        );
        drop((a, b));
        // The echo tasks end when their channels close with the transports.
        timeout(Duration::from_secs(5), async {
            while alive() > before {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} tasks still alive", alive() - before));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_peer_ends_its_links_and_shutdown_closes_incoming() {
    let (a, _a_in) = start(config("a")).await;
    let (b, mut b_in) = start(config("b")).await;
    let peer = a.peer(&addr(&b));
    let pending = spawn_request(&peer, Duration::from_secs(30));
    let held = b_in.data.recv().await.unwrap();
    let tasks = a.task_count();
    a.forget(&addr(&b));
    let error = pending.await.unwrap().unwrap_err();
    assert!(
        matches!(error, TransportError::ConnectionLost { .. }),
        "got {error}"
    );
    timeout(Duration::from_secs(5), async {
        while a.task_count() > tasks - 2 || a.stats().open_connections > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both link tasks and their connections end");
    // The stale handle fails; a fresh one dials again.
    assert!(peer.send(Lane::Data, Bytes::from_static(b"late")).is_err());
    drop(held);
    assert!(
        a.peer(&addr(&b))
            .send(Lane::Data, Bytes::from_static(b"fresh"))
            .is_ok()
    );
    assert_clean_shutdown(&a).await;
    assert_clean_shutdown(&b).await;
    // With b shut down, its application's receivers end.
    let end = timeout(Duration::from_secs(5), async {
        while b_in.data.recv().await.is_some() {}
        b_in.control.recv().await
    })
    .await
    .expect("incoming channels close at shutdown");
    assert!(end.is_none());
}
