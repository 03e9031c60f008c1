//! The listener: accepts peers' connections within the inbound connection
//! budget, runs the accepting side of the handshake, and serves each
//! connection (its requests reach the application through
//! [`Incoming`](super::Incoming); its answers go back on it).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Semaphore;

use super::conn::Conn;
use super::handshake::exchange::{self, PeerInfo};
use super::handshake::HandshakeError;
use super::io::{Listener, Stream};
use super::link::Links;
use super::queue::{Budget, SendQueue};
use super::shared::Shared;
use super::tls;

/// Accepts connections until the transport stops. Past
/// `max_inbound_connections` open at once, a new one is closed on arrival.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    links: Arc<Links>,
    listener: Box<dyn Listener>,
) {
    let slots = Arc::new(Semaphore::new(shared.config.max_inbound_connections));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(stream) => match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => {
                    let shared2 = Arc::clone(&shared);
                    let links = Arc::clone(&links);
                    shared.tracker.spawn(async move {
                        serve_inbound(&shared2, &links, stream).await;
                        drop(slot);
                    });
                }
                Err(_) => {
                    shared.counters.inbound_rejected.fetch_add(1, Relaxed);
                    tracing::warn!(peer = %stream.peer_addr, "inbound connection cap reached; closing");
                }
            },
            Err(error) => {
                // Typically out of file descriptors: wait rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::select! {
                    biased;
                    _ = shared.cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

/// The accepting side of the handshake, then the connection.
async fn serve_inbound(shared: &Arc<Shared>, links: &Links, stream: Stream) {
    let Some((stream, buf, peer)) = admit(shared, stream).await else {
        return;
    };
    let Some(handlers) = shared.handlers() else {
        return;
    };
    let config = &shared.config;
    shared.counters.connections_accepted.fetch_add(1, Relaxed);
    links.peer_connected(peer.node_id);
    let conn = Conn {
        shared: Arc::clone(shared),
        peer,
        queue: Arc::new(SendQueue::new(
            config.inbound_in_flight,
            config.queue_bytes,
            Arc::clone(&shared.counters),
        )),
        pending: None,
        stop: shared.cancel.clone(),
        handlers,
        inbound: Budget::new(config.inbound_in_flight, config.inbound_in_flight_bytes),
        read_burst: AtomicBool::new(false),
    };
    let queue = Arc::clone(&conn.queue);
    conn.run(stream.read, stream.write, buf).await;
    // Answers still owed go nowhere now.
    queue.close();
}

/// Runs the accepting side of the handshake on an accepted socket, TLS
/// first when configured, all within the handshake timeout: the one place
/// an inbound connection is established. `None` when it failed (counted
/// and logged here) or the transport is stopping.
async fn admit(shared: &Shared, stream: Stream) -> Option<(Stream, BytesMut, PeerInfo)> {
    let peer_addr = stream.peer_addr;
    let result = tokio::select! {
        biased;
        _ = shared.cancel.cancelled() => return None,
        result = tokio::time::timeout(shared.config.handshake_timeout, accept(shared, stream)) => result,
    };
    match result {
        Ok(Ok(admitted)) => Some(admitted),
        Ok(Err(error)) => {
            shared.counters.handshake_failed(&error);
            tracing::warn!(peer = %peer_addr, %error, "inbound handshake failed");
            None
        }
        Err(_) => {
            shared.counters.handshake_failures.fetch_add(1, Relaxed);
            tracing::warn!(peer = %peer_addr, "inbound handshake timed out");
            None
        }
    }
}

/// The TLS handshake (when configured), then ours.
async fn accept(
    shared: &Shared,
    stream: Stream,
) -> Result<(Stream, BytesMut, PeerInfo), HandshakeError> {
    let (mut stream, certified) = match &shared.config.tls {
        Some(tls) => {
            let (stream, id) = tls::stream::accept(tls, stream).await?;
            (stream, Some(id))
        }
        None => (stream, None),
    };
    let (peer, buf) = exchange::as_acceptor(&shared.identity, &mut stream, certified).await?;
    Ok((stream, buf, peer))
}
