//! The link: everything about talking to one peer address on one lane.
//!
//! A node's own requests and one-way messages travel on the connections it
//! dialled, one per peer address and [`Lane`]. Each such [`Link`] holds the
//! send queue, the requests awaiting answers, the RTT estimate and the
//! reconnect backoff; its task dials when there is something to send, runs
//! the connection, fails everything pending at once when it breaks, and
//! backs off after failed dials. [`Links`] keeps a node's links by peer
//! address and starts their tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::config::TransportConfig;
use super::conn::{Conn, ConnEnd};
use super::envelope::{Envelope, Lane, ID_HEADER};
use super::error::TransportError;
use super::handshake::exchange::{self, PeerInfo};
use super::handshake::HandshakeError;
use super::io::Stream;
use super::pending::PendingRequests;
use super::queue::{Budget, BudgetGuard, Limit, PushError, SendQueue};
use super::rtt::RttSnapshot;
use super::shared::Shared;
use super::stats::Counters;
use super::tls;
use crate::rng::SplitMix64;
use crate::NodeId;

/// Where a link's task is.
enum LinkState {
    Idle,
    Connecting,
    Connected,
    Backoff {
        until: Instant,
        error: TransportError,
    },
}

/// Everything about talking to one peer address on one lane.
pub(crate) struct Link {
    addr: String,
    lane: Lane,
    queue: Arc<SendQueue>,
    /// Shared with the connection that carries the requests, which
    /// completes them.
    pending: Arc<PendingRequests>,
    in_flight: Arc<Budget>,
    state: Mutex<LinkState>,
    cut_backoff: Notify,
    /// Ends the link's task, connected or backing off, when the link is
    /// forgotten or the transport stops (a child of the transport's token).
    forgotten: CancellationToken,
    peer: Mutex<Option<PeerInfo>>,
    /// Set on a link never opened, because `max_links` addresses had links
    /// already (the bound): every call on it fails with
    /// [`TransportError::TooManyLinks`].
    refused: Option<usize>,
}

impl Link {
    fn new(
        addr: &str,
        lane: Lane,
        config: &TransportConfig,
        counters: &Arc<Counters>,
        cancel: &CancellationToken,
    ) -> Self {
        Self {
            addr: addr.to_owned(),
            lane,
            queue: Arc::new(SendQueue::new(
                config.queue_frames,
                config.queue_bytes,
                Arc::clone(counters),
            )),
            pending: Arc::new(PendingRequests::new(addr, config.rtt)),
            in_flight: Budget::new(config.max_in_flight, config.max_in_flight_bytes),
            state: Mutex::new(LinkState::Idle),
            cut_backoff: Notify::new(),
            forgotten: cancel.child_token(),
            peer: Mutex::new(None),
            refused: None,
        }
    }

    /// The peer's address.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// The RTT estimate to the peer on this lane.
    pub(crate) fn rtt(&self) -> RttSnapshot {
        self.pending.rtt()
    }

    /// Who answered the last handshake on this link, if any connection was
    /// ever made.
    pub(crate) fn peer(&self) -> Option<PeerInfo> {
        *self.peer.lock()
    }

    /// Requests awaiting answers now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.in_use()
    }

    fn push_error(&self, shared: &Shared, error: PushError) -> TransportError {
        match error {
            PushError::Full(limit) => self.backpressure(shared, limit),
            PushError::Closed if shared.cancel.is_cancelled() => TransportError::ShuttingDown,
            PushError::Closed => TransportError::ConnectionLost {
                peer: self.addr.clone(),
                reason: "the link was forgotten".to_owned(),
            },
        }
    }

    fn backpressure(&self, shared: &Shared, limit: Limit) -> TransportError {
        shared.counters.backpressure.fetch_add(1, Relaxed);
        TransportError::Backpressure {
            peer: self.addr.clone(),
            limit,
        }
    }

    /// The checks shared by requests and one-way messages, for an envelope
    /// of `len` bytes (header and body): running, fits a frame, not backing
    /// off.
    fn check_sendable(&self, shared: &Shared, len: usize) -> Result<(), TransportError> {
        if shared.cancel.is_cancelled() {
            return Err(TransportError::ShuttingDown);
        }
        if let Some(max) = self.refused {
            return Err(TransportError::TooManyLinks {
                peer: self.addr.clone(),
                max,
            });
        }
        if len > shared.config.max_frame {
            return Err(TransportError::TooLarge {
                len,
                max: shared.config.max_frame,
            });
        }
        self.check_backoff()
    }

    /// While a failed dial's backoff runs, its error (with the time left).
    fn check_backoff(&self) -> Result<(), TransportError> {
        if let LinkState::Backoff { until, error } = &*self.state.lock() {
            let now = Instant::now();
            if now < *until {
                let mut error = error.clone();
                if let TransportError::Unreachable { retry_in, .. } = &mut error {
                    *retry_in = *until - now;
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// Queues a one-way message. `Ok` means queued, not delivered.
    pub(crate) fn send(&self, shared: &Shared, body: Bytes) -> Result<(), TransportError> {
        let envelope = Envelope::OneWay {
            lane: self.lane,
            body,
        };
        self.check_sendable(shared, envelope.encoded_len())?;
        self.queue
            .push(envelope)
            .map_err(|error| self.push_error(shared, error))
    }

    /// Sends a request and waits for its answer, for as long as `wait`
    /// says.
    pub(crate) async fn request(
        &self,
        shared: &Shared,
        body: Bytes,
        wait: Wait,
    ) -> Result<Bytes, TransportError> {
        self.check_sendable(shared, ID_HEADER + body.len())?;
        let budget = self
            .in_flight
            .try_acquire(body.len())
            .map_err(|limit| self.backpressure(shared, limit))?;
        let (id, rx) = self.pending.add();
        // From here on, however this future ends (answer, error, timeout,
        // or dropped by its caller), the guard withdraws the request.
        let _guard = PendingGuard {
            pending: &self.pending,
            id,
            _budget: budget,
        };
        self.queue
            .push(Envelope::Request {
                lane: self.lane,
                id,
                body,
            })
            .map_err(|error| self.push_error(shared, error))?;
        // A dial may have failed between the first check and the push, its
        // failure sweeping the pending map before this request joined it:
        // fail now rather than wait out the backoff (the writer skips the
        // queued frame, its id no longer pending once the guard drops).
        self.check_backoff()?;
        let timeout = match wait {
            Wait::Adaptive => self.pending.timeout(),
            Wait::For(timeout) => timeout,
            // No timer: the caller bounds the wait (and withdraws the
            // request by dropping this future).
            Wait::Caller => return rx.await.unwrap_or(Err(TransportError::ShuttingDown)),
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            // Every path that drops a pending entry's sender (an answer,
            // `fail_all`) sends first; dropped unsent only with the link.
            Ok(Err(_)) => Err(TransportError::ShuttingDown),
            Err(_) => {
                self.pending.timed_out();
                shared.counters.request_timeouts.fetch_add(1, Relaxed);
                Err(TransportError::Timeout {
                    peer: self.addr.clone(),
                    after: timeout,
                })
            }
        }
    }

    /// Fails every pending request with `error()` and drops what is queued.
    fn fail_all(&self, shared: &Shared, error: impl Fn() -> TransportError) {
        self.queue.clear();
        self.pending.fail_all(&shared.counters, error);
    }

    fn set_state(&self, state: LinkState) {
        *self.state.lock() = state;
    }

    fn cut_backoff(&self) {
        // Wakes only a task waiting now (registered before it entered the
        // backoff): no permit is left behind to skip a later backoff.
        if matches!(*self.state.lock(), LinkState::Backoff { .. }) {
            self.cut_backoff.notify_waiters();
        }
    }

    /// Closes the link and ends its task.
    fn forget(&self) {
        self.queue.close();
        self.forgotten.cancel();
    }
}

/// How long a request waits for its answer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// The lane's adaptive timeout (from its RTT estimate).
    Adaptive,
    /// An explicit timeout.
    For(Duration),
    /// No timer of its own: until the answer, or the connection's failure;
    /// the caller bounds it.
    Caller,
}

/// Withdraws a request and releases its share of the in-flight budget.
struct PendingGuard<'a> {
    pending: &'a PendingRequests,
    id: u64,
    _budget: BudgetGuard,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.pending.withdraw(self.id);
    }
}

/// A link's life: wait for something to send, dial, run the connection,
/// fail what was pending when it ends, back off after failed dials.
async fn run_link(link: Arc<Link>, shared: Arc<Shared>, seed: u64) {
    let mut backoff = Backoff::new(shared.config.backoff).expect("validated with the config");
    let mut rng = SplitMix64::new(seed);
    let mut dialled_before = false;
    loop {
        tokio::select! {
            biased;
            _ = link.forgotten.cancelled() => break,
            open = link.queue.wait_nonempty() => if !open { break },
        }
        link.set_state(LinkState::Connecting);
        if dialled_before {
            shared.counters.reconnects.fetch_add(1, Relaxed);
        }
        dialled_before = true;
        let dialled = tokio::select! {
            biased;
            _ = link.forgotten.cancelled() => break,
            dialled = dial(&shared, &link.addr) => dialled,
        };
        match dialled {
            Ok((stream, buf, peer)) => {
                let Some(handlers) = shared.handlers() else {
                    break;
                };
                backoff.reset();
                *link.peer.lock() = Some(peer);
                link.set_state(LinkState::Connected);
                shared.counters.connections_dialled.fetch_add(1, Relaxed);
                let conn = Conn {
                    shared: Arc::clone(&shared),
                    peer,
                    queue: Arc::clone(&link.queue),
                    pending: Some(Arc::clone(&link.pending)),
                    stop: link.forgotten.clone(),
                    handlers,
                    inbound: Budget::new(
                        shared.config.inbound_in_flight,
                        shared.config.inbound_in_flight_bytes,
                    ),
                    read_burst: std::sync::atomic::AtomicBool::new(false),
                };
                let end = conn.run(stream.read, stream.write, buf).await;
                link.set_state(LinkState::Idle);
                match end {
                    ConnEnd::Shutdown => break,
                    ConnEnd::Broken(reason) => {
                        link.fail_all(&shared, || TransportError::ConnectionLost {
                            peer: link.addr.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
            }
            Err(mut error) => {
                shared.counters.dial_failures.fetch_add(1, Relaxed);
                let delay = backoff.next_delay(&mut rng);
                if let TransportError::Unreachable { retry_in, .. } = &mut error {
                    *retry_in = delay;
                }
                tracing::debug!(peer = %link.addr, lane = %link.lane, %error, ?delay, "dial failed");
                // Waiting for a cut from before the state says `Backoff`, so
                // a peer that dials us at any moment of the backoff ends it.
                let cut = link.cut_backoff.notified();
                tokio::pin!(cut);
                cut.as_mut().enable();
                link.set_state(LinkState::Backoff {
                    until: Instant::now() + delay,
                    error: error.clone(),
                });
                link.fail_all(&shared, || error.clone());
                tokio::select! {
                    biased;
                    _ = link.forgotten.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut cut => backoff.reset(),
                }
                link.set_state(LinkState::Idle);
            }
        }
    }
    link.queue.close();
    if shared.cancel.is_cancelled() {
        link.fail_all(&shared, || TransportError::ShuttingDown);
    } else {
        link.fail_all(&shared, || TransportError::ConnectionLost {
            peer: link.addr.clone(),
            reason: "the link was forgotten".to_owned(),
        });
    }
}

/// Connects to `addr` and runs the dialler's side of the handshake (TLS
/// first when configured, both within the handshake timeout).
async fn dial(shared: &Shared, addr: &str) -> Result<(Stream, BytesMut, PeerInfo), TransportError> {
    let stream = connect(shared, addr).await?;
    let handshake_timeout = shared.config.handshake_timeout;
    let result = match tokio::time::timeout(handshake_timeout, handshake(shared, stream)).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeError::Malformed {
            detail: format!("no handshake reply within {handshake_timeout:?}"),
        }),
    };
    match result {
        Ok(dialled) => Ok(dialled),
        Err(error) => {
            shared.counters.handshake_failed(&error);
            tracing::warn!(peer = %addr, %error, "handshake failed");
            Err(TransportError::Handshake {
                peer: addr.to_owned(),
                error,
            })
        }
    }
}

/// The TLS handshake (when configured), then ours.
async fn handshake(
    shared: &Shared,
    stream: Stream,
) -> Result<(Stream, BytesMut, PeerInfo), HandshakeError> {
    let (mut stream, certified) = match &shared.config.tls {
        Some(tls) => {
            let (stream, id) = tls::stream::connect(tls, stream).await?;
            (stream, Some(id))
        }
        None => (stream, None),
    };
    let (peer, buf) = exchange::as_dialler(&shared.identity, &mut stream, certified).await?;
    Ok((stream, buf, peer))
}

/// Opens the socket to `addr`, within the dial timeout: the one place a
/// dialled connection is established.
async fn connect(shared: &Shared, addr: &str) -> Result<Stream, TransportError> {
    let unreachable = |reason: String| TransportError::Unreachable {
        peer: addr.to_owned(),
        reason,
        retry_in: Duration::ZERO,
    };
    let dial_timeout = shared.config.dial_timeout;
    match tokio::time::timeout(dial_timeout, shared.network.connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(unreachable(format!("connect failed: {error}"))),
        Err(_) => Err(unreachable(format!(
            "connect timed out after {dial_timeout:?}"
        ))),
    }
}

/// A transport's links, by peer address: two per address, one per lane.
pub(crate) struct Links {
    /// Looked up on every request; foldhash, as the pending table (the
    /// addresses are the members', not a client's).
    map: RwLock<HashMap<String, [Arc<Link>; 2], foldhash::fast::RandomState>>,
    /// Counts the links started, to give each its own jitter seed.
    seq: AtomicU64,
}

impl Links {
    pub(crate) fn new() -> Self {
        Self {
            map: RwLock::new(HashMap::default()),
            seq: AtomicU64::new(0),
        }
    }

    /// The links to `addr`, started (one task each) on first use; when
    /// `max_links` addresses have links already and `addr` is not one of
    /// them, [`TransportError::TooManyLinks`] (counted in `links_refused`).
    pub(crate) fn get(
        &self,
        shared: &Arc<Shared>,
        addr: &str,
    ) -> Result<[Arc<Link>; 2], TransportError> {
        if let Some(links) = self.map.read().get(addr) {
            return Ok(links.clone());
        }
        let mut map = self.map.write();
        if let Some(links) = map.get(addr) {
            return Ok(links.clone());
        }
        let max = shared.config.max_links;
        if map.len() >= max {
            shared.counters.links_refused.fetch_add(1, Relaxed);
            tracing::debug!(peer = %addr, max, "link refused: max_links reached");
            return Err(TransportError::TooManyLinks {
                peer: addr.to_owned(),
                max,
            });
        }
        let links = Lane::ALL.map(|lane| {
            let link = Arc::new(Link::new(
                addr,
                lane,
                &shared.config,
                &shared.counters,
                &shared.cancel,
            ));
            let seed = shared.config.seed
                ^ self
                    .seq
                    .fetch_add(1, Relaxed)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            shared.tracker.spawn_on(
                run_link(Arc::clone(&link), Arc::clone(shared), seed),
                &shared.runtime,
            );
            link
        });
        map.insert(addr.to_owned(), links.clone());
        shared.counters.links.fetch_add(1, Relaxed);
        Ok(links)
    }

    /// Links to `addr` that were never opened (no task, nothing stored):
    /// every call on them fails with [`TransportError::TooManyLinks`].
    pub(crate) fn refused(shared: &Shared, addr: &str) -> [Arc<Link>; 2] {
        Lane::ALL.map(|lane| {
            let mut link = Link::new(
                addr,
                lane,
                &shared.config,
                &shared.counters,
                &shared.cancel,
            );
            link.refused = Some(shared.config.max_links);
            link.queue.close();
            Arc::new(link)
        })
    }

    /// Closes and forgets the links to every address `keep` turns down;
    /// returns how many addresses that was.
    pub(crate) fn retain(&self, shared: &Shared, mut keep: impl FnMut(&str) -> bool) -> usize {
        let mut removed = Vec::new();
        self.map.write().retain(|addr, links| {
            let kept = keep(addr);
            if !kept {
                removed.push(links.clone());
            }
            kept
        });
        shared.counters.links.fetch_sub(removed.len() as u64, Relaxed);
        for link in removed.iter().flatten() {
            link.forget();
        }
        removed.len()
    }

    /// The addresses with links now, in order.
    pub(crate) fn addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self.map.read().keys().cloned().collect();
        addrs.sort();
        addrs
    }

    /// Closes the links to `addr` and forgets them.
    pub(crate) fn forget(&self, shared: &Shared, addr: &str) {
        let removed = self.map.write().remove(addr);
        if removed.is_some() {
            shared.counters.links.fetch_sub(1, Relaxed);
        }
        for link in removed.into_iter().flatten() {
            link.forget();
        }
    }

    /// The RTT estimate to `addr` on the control lane, if this node ever
    /// talked to it.
    pub(crate) fn rtt(&self, addr: &str) -> Option<RttSnapshot> {
        let links = self.map.read();
        links
            .get(addr)
            .map(|links| links[Lane::Control.index()].rtt())
    }

    /// A peer dialled us: if we were backing off from dialling it, stop
    /// waiting (it is evidently up).
    pub(crate) fn peer_connected(&self, node_id: NodeId) {
        // In address order, not the map's (randomly seeded) order: the
        // links woken here run in this order, and a seeded simulation must
        // replay it.
        let mut all: Vec<(String, [Arc<Link>; 2])> = self
            .map
            .read()
            .iter()
            .map(|(addr, links)| (addr.clone(), links.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, links) in &all {
            for link in links {
                if link.peer.lock().is_some_and(|peer| peer.node_id == node_id) {
                    link.cut_backoff();
                }
            }
        }
    }
}
