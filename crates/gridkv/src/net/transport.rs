//! The transport: persistent, multiplexed, bounded connections between
//! nodes.
//!
//! A [`Transport`] listens for peers and dials them on demand. Between two
//! nodes there is one connection per [`Lane`] in each direction: a node's
//! own requests and one-way messages travel on the connections it dialled,
//! and it answers requests on the connection they came in on. Each lane has
//! its own socket, queue and writer, so membership traffic (the control
//! lane) never waits behind a large value (the data lane).
//!
//! Who owns what:
//! - one *link* per peer address and lane holds the send queue, the pending
//!   requests (matched by id), the RTT estimate and the reconnect backoff;
//!   its task dials when there is something to send, runs the connection,
//!   and fails everything pending at once when it breaks;
//! - the accept task hands each inbound connection, after the handshake, to
//!   a connection task that delivers requests and messages to the
//!   application through [`Incoming`].
//!
//! Every queue and budget is bounded; when one is full the caller gets
//! [`TransportError::Backpressure`] (or the peer an `Overloaded` answer)
//! instead of memory growing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::{Backoff, BackoffConfig};
use super::conn::{instant_of, Conn, ConnEnd};
use super::envelope::{Envelope, ErrorCode, Lane};
use super::faults::FaultInjector;
use super::frame::{encode_frame, FrameDecoder, DEFAULT_MAX_FRAME, PRE_HANDSHAKE_MAX_FRAME};
use super::handshake::{
    check_hello, HandshakeError, Hello, HelloReply, LocalIdentity, MAX_CLUSTER_NAME_LEN,
};
use super::io::{Network, Stream, Tcp};
use super::queue::{Budget, BudgetGuard, Limit, PushError, SendQueue};
use super::rtt::{RttConfig, RttEstimator};
use super::stats::{Counters, TransportStats};
use crate::rng::SplitMix64;
use crate::{Generation, NodeId};

/// Bytes of envelope header in front of a request's body.
const REQUEST_HEADER: usize = 9;

/// How a transport behaves. Build one with [`TransportConfig::new`] and
/// adjust fields; [`Transport::bind`] validates it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use gridkv::net::TransportConfig;
/// use gridkv::{Generation, NodeId};
///
/// let mut config = TransportConfig::new("prod", NodeId::new("node-1")?, Generation::now());
/// config.listen = "0.0.0.0:7946".to_owned();
/// config.advertise = Some("10.0.0.5:7946".to_owned());
/// assert!(config.validate().is_ok());
///
/// config.heartbeat_interval = Duration::from_secs(10);
/// assert_eq!(config.validate().unwrap_err().field, "heartbeat_interval");
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The cluster's name; peers naming another are refused.
    pub cluster: String,
    /// This node's id.
    pub node_id: NodeId,
    /// This run's generation.
    pub generation: Generation,
    /// Where to listen, `host:port`. Port 0 picks a free port (see
    /// [`Transport::local_addr`]). Default `127.0.0.1:0`.
    pub listen: String,
    /// The address peers should dial, when it differs from the listen
    /// address (NAT, containers, `0.0.0.0`). Required when listening on an
    /// unspecified address.
    pub advertise: Option<String>,
    /// The largest frame, in bytes, after the handshake. Default 16 MiB.
    pub max_frame: usize,
    /// How long a dial may take to connect. Default 1 s.
    pub dial_timeout: Duration,
    /// How long either side waits for the other's handshake message.
    /// Default 1 s.
    pub handshake_timeout: Duration,
    /// A connection with nothing to send for this long sends a ping.
    /// Default 500 ms.
    pub heartbeat_interval: Duration,
    /// A connection on which nothing arrived for this long, or whose
    /// writes stalled this long, is closed as dead. Must exceed the
    /// heartbeat interval. Default 3 s.
    pub idle_timeout: Duration,
    /// Inbound connections accepted at once; more are closed on arrival.
    /// Default 1024.
    pub max_inbound_connections: usize,
    /// Frames queued to one peer per lane. Default 4096.
    pub queue_frames: usize,
    /// Bytes queued to one peer per lane. Default 64 MiB.
    pub queue_bytes: usize,
    /// Requests awaiting answers from one peer per lane. Default 1024.
    pub max_in_flight: usize,
    /// Request bytes awaiting answers from one peer per lane. Default
    /// 64 MiB.
    pub max_in_flight_bytes: usize,
    /// Requests and messages per lane delivered to [`Incoming`] and not yet
    /// received by the application. Default 4096.
    pub incoming_capacity: usize,
    /// Requests one inbound connection may have unanswered by this node's
    /// application; more are answered `Overloaded`. Default 1024.
    pub inbound_in_flight: usize,
    /// Request bytes one inbound connection may have unanswered. Default
    /// 64 MiB.
    pub inbound_in_flight_bytes: usize,
    /// Request timeout bounds, adapted per peer from measured RTTs.
    pub rtt: RttConfig,
    /// Reconnect delays after failed dials.
    pub backoff: BackoffConfig,
    /// Seeds reconnect jitter and fault injection, so a run replays.
    pub seed: u64,
}

/// A [`TransportConfig`] field that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid transport config `{field}`: {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// Why it is invalid.
    pub reason: String,
}

impl TransportConfig {
    /// Defaults for a LAN cluster, listening on `127.0.0.1:0`.
    pub fn new(cluster: &str, node_id: NodeId, generation: Generation) -> Self {
        Self {
            cluster: cluster.to_owned(),
            node_id,
            generation,
            listen: "127.0.0.1:0".to_owned(),
            advertise: None,
            max_frame: DEFAULT_MAX_FRAME,
            dial_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(3),
            max_inbound_connections: 1024,
            queue_frames: 4096,
            queue_bytes: 64 << 20,
            max_in_flight: 1024,
            max_in_flight_bytes: 64 << 20,
            incoming_capacity: 4096,
            inbound_in_flight: 1024,
            inbound_in_flight_bytes: 64 << 20,
            rtt: RttConfig::default(),
            backoff: BackoffConfig::default(),
            seed: node_id.tag() ^ generation.get(),
        }
    }

    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.cluster.is_empty()
            || self.cluster.len() > MAX_CLUSTER_NAME_LEN
            || self.cluster.chars().any(char::is_control)
        {
            return bad(
                "cluster",
                "must be 1 to 64 bytes with no control characters",
            );
        }
        if self.max_frame <= PRE_HANDSHAKE_MAX_FRAME || self.max_frame > u32::MAX as usize {
            return bad("max_frame", "must be above 4 KiB and at most 4 GiB - 1");
        }
        for (field, value) in [
            ("dial_timeout", self.dial_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return bad(field, "must be greater than zero");
            }
        }
        if self.heartbeat_interval >= self.idle_timeout {
            return bad(
                "heartbeat_interval",
                "must be shorter than idle_timeout, or idle connections are closed",
            );
        }
        for (field, value) in [
            ("max_inbound_connections", self.max_inbound_connections),
            ("queue_frames", self.queue_frames),
            ("queue_bytes", self.queue_bytes),
            ("max_in_flight", self.max_in_flight),
            ("max_in_flight_bytes", self.max_in_flight_bytes),
            ("incoming_capacity", self.incoming_capacity),
            ("inbound_in_flight", self.inbound_in_flight),
            ("inbound_in_flight_bytes", self.inbound_in_flight_bytes),
        ] {
            if value == 0 {
                return bad(field, "must be greater than zero");
            }
        }
        if let Err(error) = self.rtt.validate() {
            return bad("rtt", &error.to_string());
        }
        if let Err(error) = self.backoff.validate() {
            return bad("backoff", &error.to_string());
        }
        Ok(())
    }
}

/// Why a transport operation failed.
///
/// A request that failed with [`Timeout`](TransportError::Timeout) or
/// [`ConnectionLost`](TransportError::ConnectionLost) may still have reached
/// the peer and been acted on: the outcome is unknown. The other errors mean
/// it was not delivered.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use gridkv::net::{Lane, Transport, TransportConfig, TransportError};
/// use gridkv::{Generation, NodeId};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let config = TransportConfig::new("demo", NodeId::new("a").unwrap(), Generation::new(1));
/// let (a, _incoming) = Transport::bind(config).await.unwrap();
/// // Nothing listens on port 1: the dial fails, and the link backs off.
/// match a.request("127.0.0.1:1", Lane::Data, Bytes::from_static(b"x")).await {
///     Err(TransportError::Unreachable { peer, .. }) => assert_eq!(peer, "127.0.0.1:1"),
///     other => panic!("expected unreachable, got {other:?}"),
/// }
/// a.shutdown().await;
/// # });
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No answer within the request's timeout.
    #[error("request to {peer} timed out after {after:?}")]
    Timeout {
        /// The peer's address.
        peer: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The connection broke while the request was pending.
    #[error("connection to {peer} lost: {reason}")]
    ConnectionLost {
        /// The peer's address.
        peer: String,
        /// How it broke.
        reason: String,
    },
    /// The peer could not be dialled; the transport waits `retry_in` before
    /// dialling again, and fails requests at once meanwhile.
    #[error("{peer} unreachable: {reason} (next dial in {retry_in:?})")]
    Unreachable {
        /// The peer's address.
        peer: String,
        /// Why the last dial failed.
        reason: String,
        /// Time left before the next dial.
        retry_in: Duration,
    },
    /// The peer answered the handshake with a refusal, or its handshake
    /// could not be read.
    #[error("handshake with {peer} failed: {error}")]
    Handshake {
        /// The peer's address.
        peer: String,
        /// What went wrong, in the words both sides log.
        error: HandshakeError,
    },
    /// A local bound is full; nothing was sent.
    #[error("backpressure: {limit} to {peer} at its limit")]
    Backpressure {
        /// The peer's address.
        peer: String,
        /// Which bound.
        limit: Limit,
    },
    /// The peer's inbound limits were full; its application never saw the
    /// request.
    #[error("{peer} is overloaded and refused the request")]
    Overloaded {
        /// The peer's address.
        peer: String,
    },
    /// The peer's application dropped the request without answering.
    #[error("{peer} dropped the request without answering")]
    NoAnswer {
        /// The peer's address.
        peer: String,
    },
    /// The peer answered with an error code this version does not know.
    #[error("{peer} answered with unknown error code {code}")]
    Remote {
        /// The peer's address.
        peer: String,
        /// The code.
        code: u16,
    },
    /// The message cannot fit in one frame.
    #[error("message of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// The frame's length, header included.
        len: usize,
        /// The frame limit.
        max: usize,
    },
    /// The transport is shutting down (or has shut down).
    #[error("transport is shutting down")]
    ShuttingDown,
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's reason.
        reason: String,
    },
}

/// Who is at the other end of a connection, as its handshake said.
///
/// # Examples
///
/// ```
/// use gridkv::net::PeerInfo;
/// use gridkv::{Generation, NodeId};
///
/// let peer = PeerInfo {
///     node_id: NodeId::new("b")?,
///     generation: Generation::new(2),
///     addr: "10.0.0.2:7946".parse().unwrap(),
/// };
/// assert_eq!(peer.to_string(), "b@10.0.0.2:7946 (gen 2)");
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node id.
    pub node_id: NodeId,
    /// The peer's generation (changes when it restarts).
    pub generation: Generation,
    /// The peer's socket address on this connection.
    pub addr: SocketAddr,
}

impl std::fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (gen {})",
            self.node_id, self.addr, self.generation
        )
    }
}

/// A request or one-way message from a peer, for the application.
///
/// Holding it holds a slot of the sending connection's inbound budget; drop
/// it (or answer) promptly.
///
/// # Examples
///
/// ```
/// use gridkv::net::Inbound;
///
/// /// An application loop: answer requests, count one-way messages.
/// async fn serve(mut data: tokio::sync::mpsc::Receiver<Inbound>) -> usize {
///     let mut messages = 0;
///     while let Some(inbound) = data.recv().await {
///         match inbound.reply {
///             Some(reply) => {
///                 let _ = reply.respond(inbound.body);
///             }
///             None => messages += 1,
///         }
///     }
///     messages
/// }
/// ```
#[derive(Debug)]
pub struct Inbound {
    /// Who sent it.
    pub from: PeerInfo,
    /// The lane it came on.
    pub lane: Lane,
    /// The message.
    pub body: Bytes,
    /// For a request: where the answer goes. `None` for a one-way message.
    pub reply: Option<Responder>,
    /// Holds a one-way message's share of the inbound budget while the
    /// application has it (a request's share travels in its responder).
    pub(crate) _budget: Option<BudgetGuard>,
}

/// Answers one inbound request. Dropping it unanswered sends the requester a
/// `NoAnswer` error at once, so it does not wait for its timeout.
///
/// # Examples
///
/// See [`Inbound`] and [`Transport`].
#[derive(Debug)]
pub struct Responder {
    queue: Arc<SendQueue>,
    peer: SocketAddr,
    lane: Lane,
    id: u64,
    max_frame: usize,
    armed: bool,
    _budget: BudgetGuard,
}

impl Responder {
    pub(crate) fn new(
        queue: Arc<SendQueue>,
        peer: SocketAddr,
        lane: Lane,
        id: u64,
        max_frame: usize,
        budget: BudgetGuard,
    ) -> Self {
        Self {
            queue,
            peer,
            lane,
            id,
            max_frame,
            armed: true,
            _budget: budget,
        }
    }

    /// Queues the answer.
    ///
    /// - A body too large for one frame is refused with
    ///   [`TransportError::TooLarge`]; the requester gets `NoAnswer`.
    /// - When the connection's send queue is full (the requester reads
    ///   answers slower than they are produced), the answer is refused with
    ///   [`TransportError::Backpressure`] and the requester gets
    ///   `Overloaded` at once instead of waiting for its timeout.
    /// - If the connection has closed meanwhile, the answer is dropped and
    ///   `Ok` returned: the requester has already failed.
    pub fn respond(mut self, body: Bytes) -> Result<(), TransportError> {
        let len = REQUEST_HEADER + body.len();
        if len > self.max_frame {
            return Err(TransportError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        let answer = Envelope::Response {
            lane: self.lane,
            id: self.id,
            body,
        };
        self.armed = false;
        match self.queue.push(answer) {
            Ok(()) | Err(PushError::Closed) => Ok(()),
            Err(PushError::Full(limit)) => {
                self.queue.push_control(Envelope::Error {
                    lane: self.lane,
                    id: self.id,
                    code: ErrorCode::Overloaded,
                });
                Err(TransportError::Backpressure {
                    peer: self.peer.to_string(),
                    limit,
                })
            }
        }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.armed {
            self.queue.push_control(Envelope::Error {
                lane: self.lane,
                id: self.id,
                code: ErrorCode::NoAnswer,
            });
        }
    }
}

/// Where inbound requests and messages arrive, one bounded channel per
/// lane, so a backlog of data never delays membership.
#[derive(Debug)]
pub struct Incoming {
    /// Control-lane traffic.
    pub control: mpsc::Receiver<Inbound>,
    /// Data-lane traffic.
    pub data: mpsc::Receiver<Inbound>,
}

/// What an RTT estimate says now ([`Transport::rtt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttSnapshot {
    /// Smoothed RTT; `None` before the first sample.
    pub srtt: Option<Duration>,
    /// RTT variance; `None` before the first sample.
    pub rttvar: Option<Duration>,
    /// The timeout the next request gets.
    pub timeout: Duration,
    /// Samples taken so far.
    pub samples: u64,
}

/// State shared by a transport's tasks.
pub(crate) struct Shared {
    pub(crate) config: TransportConfig,
    identity: LocalIdentity,
    network: Arc<dyn Network>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) faults: FaultInjector,
    links: RwLock<HashMap<String, [Arc<Link>; 2]>>,
    /// Where inbound traffic goes; taken at shutdown (and when the last
    /// handle drops) so the application's receivers end once the
    /// connections holding clones are gone.
    handlers: Mutex<Option<[mpsc::Sender<Inbound>; 2]>>,
    pub(crate) cancel: CancellationToken,
    tracker: TaskTracker,
    runtime: tokio::runtime::Handle,
    epoch: Instant,
    link_seq: AtomicU64,
}

impl Shared {
    /// The application's channels, for a new connection; `None` once
    /// shutting down.
    pub(crate) fn handlers(&self) -> Option<[mpsc::Sender<Inbound>; 2]> {
        self.handlers.lock().clone()
    }

    fn stop(&self) {
        self.cancel.cancel();
        self.handlers.lock().take();
    }

    /// Nanoseconds since the transport started: ping tokens.
    pub(crate) fn ticks(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn links(self: &Arc<Self>, addr: &str) -> [Arc<Link>; 2] {
        if let Some(links) = self.links.read().get(addr) {
            return links.clone();
        }
        let mut map = self.links.write();
        if let Some(links) = map.get(addr) {
            return links.clone();
        }
        let links = Lane::ALL.map(|lane| {
            let link = Arc::new(Link::new(
                addr,
                lane,
                &self.config,
                &self.counters,
                &self.cancel,
            ));
            let seed = self.config.seed
                ^ self
                    .link_seq
                    .fetch_add(1, Relaxed)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            self.tracker.spawn_on(
                run_link(Arc::clone(&link), Arc::clone(self), seed),
                &self.runtime,
            );
            link
        });
        map.insert(addr.to_owned(), links.clone());
        links
    }

    /// A peer dialled us: if we were backing off from dialling it, stop
    /// waiting (it is evidently up).
    fn peer_connected(&self, node_id: NodeId) {
        // In address order, not the map's (randomly seeded) order: the
        // links woken here run in this order, and a seeded simulation must
        // replay it.
        let mut all: Vec<(String, [Arc<Link>; 2])> = self
            .links
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

/// A running transport. Cheap to clone; the last clone dropped stops its
/// tasks (call [`Transport::shutdown`] to also wait for them).
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use gridkv::net::{Lane, Transport, TransportConfig};
/// use gridkv::{Generation, NodeId};
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
/// let config = |id| TransportConfig::new("demo", NodeId::new(id).unwrap(), Generation::new(1));
/// let (a, _a_incoming) = Transport::bind(config("a")).await?;
/// let (b, mut b_incoming) = Transport::bind(config("b")).await?;
///
/// // b answers every data request with its body reversed.
/// tokio::spawn(async move {
///     while let Some(inbound) = b_incoming.data.recv().await {
///         let answer: Vec<u8> = inbound.body.iter().rev().copied().collect();
///         inbound.reply.unwrap().respond(answer.into()).unwrap();
///     }
/// });
///
/// let b_addr = b.local_addr().to_string();
/// let answer = a.request(&b_addr, Lane::Data, Bytes::from_static(b"olleh")).await?;
/// assert_eq!(&answer[..], b"hello");
/// assert_eq!(a.peer(&b_addr).node(Lane::Data).map(|p| p.node_id.to_string()), Some("b".into()));
///
/// a.shutdown().await;
/// b.shutdown().await;
/// assert_eq!(a.task_count(), 0);
/// # Ok::<(), gridkv::net::TransportError>(())
/// # }).unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Transport {
    handle: Arc<Handle>,
}

/// Stops the tasks when the last [`Transport`] clone goes.
struct Handle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    advertised: String,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.handle.shared.config.node_id)
            .field("local_addr", &self.handle.local_addr)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Validates `config`, binds its listen address on real TCP and starts
    /// accepting peers. Must be called within a tokio runtime (with time and
    /// I/O enabled); the transport's tasks run on that runtime.
    pub async fn bind(config: TransportConfig) -> Result<(Transport, Incoming), TransportError> {
        Self::bind_with(config, Arc::new(Tcp::default())).await
    }

    /// As [`Transport::bind`], over any [`Network`] (a simulator, a test
    /// network).
    pub async fn bind_with(
        config: TransportConfig,
        network: Arc<dyn Network>,
    ) -> Result<(Transport, Incoming), TransportError> {
        config.validate()?;
        let listener =
            network
                .bind(&config.listen)
                .await
                .map_err(|error| TransportError::Bind {
                    addr: config.listen.clone(),
                    reason: error.to_string(),
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|error| TransportError::Bind {
                addr: config.listen.clone(),
                reason: error.to_string(),
            })?;
        let advertised = match &config.advertise {
            Some(advertise) => advertise.clone(),
            None if local_addr.ip().is_unspecified() => {
                return Err(ConfigError {
                    field: "advertise",
                    reason: format!(
                        "required when listening on the unspecified address {local_addr}: peers cannot dial it"
                    ),
                }
                .into())
            }
            None => local_addr.to_string(),
        };
        let (control_tx, control) = mpsc::channel(config.incoming_capacity);
        let (data_tx, data) = mpsc::channel(config.incoming_capacity);
        let shared = Arc::new(Shared {
            identity: LocalIdentity {
                cluster: config.cluster.clone(),
                node_id: config.node_id,
                generation: config.generation,
            },
            faults: FaultInjector::new(config.seed),
            config,
            network,
            counters: Arc::new(Counters::default()),
            links: RwLock::new(HashMap::new()),
            handlers: Mutex::new(Some([control_tx, data_tx])),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
            epoch: Instant::now(),
            link_seq: AtomicU64::new(0),
        });
        shared
            .tracker
            .spawn(accept_loop(Arc::clone(&shared), listener));
        let transport = Transport {
            handle: Arc::new(Handle {
                shared,
                local_addr,
                advertised,
            }),
        };
        Ok((transport, Incoming { control, data }))
    }

    /// The address actually bound (with the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr
    }

    /// The address peers should dial: the configured advertise address, or
    /// the bound one.
    pub fn advertised_addr(&self) -> &str {
        &self.handle.advertised
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.handle.shared.config.node_id
    }

    /// A handle on the peer at `addr` (`host:port`; names are resolved on
    /// every dial). Keeping it saves a map lookup per request.
    pub fn peer(&self, addr: &str) -> Peer {
        Peer {
            shared: Arc::clone(&self.handle.shared),
            links: self.handle.shared.links(addr),
        }
    }

    /// Closes the links to `addr` and forgets them: pending requests fail
    /// with [`TransportError::ConnectionLost`], its connections close, its
    /// tasks end. Membership calls this for a member that left or was
    /// removed, so addresses of departed peers cost nothing. A later
    /// [`Transport::peer`] for the address starts afresh; a [`Peer`] handle
    /// kept from before fails its requests.
    pub fn forget(&self, addr: &str) {
        let removed = self.handle.shared.links.write().remove(addr);
        for link in removed.into_iter().flatten() {
            link.queue.close();
            link.forgotten.cancel();
        }
    }

    /// Sends a request to `addr` and waits for its answer, for at most the
    /// peer's adaptive timeout (see [`Peer::request`]).
    pub async fn request(
        &self,
        addr: &str,
        lane: Lane,
        body: Bytes,
    ) -> Result<Bytes, TransportError> {
        self.peer(addr).request(lane, body).await
    }

    /// Queues a one-way message to `addr` (see [`Peer::send`]).
    pub fn send(&self, addr: &str, lane: Lane, body: Bytes) -> Result<(), TransportError> {
        self.peer(addr).send(lane, body)
    }

    /// The RTT estimate to `addr` on the control lane, if this node ever
    /// talked to it.
    pub fn rtt(&self, addr: &str) -> Option<RttSnapshot> {
        let links = self.handle.shared.links.read();
        links
            .get(addr)
            .map(|links| links[Lane::Control.index()].rtt())
    }

    /// This transport's counters.
    pub fn stats(&self) -> TransportStats {
        self.handle.shared.counters.snapshot()
    }

    /// The fault-injection hooks of this node (frames it sends).
    pub fn faults(&self) -> &FaultInjector {
        &self.handle.shared.faults
    }

    /// Tasks this transport is running now (accept loop, one per link, one
    /// per connection or handshake in progress). Zero after
    /// [`Transport::shutdown`].
    pub fn task_count(&self) -> usize {
        self.handle.shared.tracker.len()
    }

    /// Stops accepting, closes every connection, fails everything pending
    /// with [`TransportError::ShuttingDown`], and waits until every task has
    /// ended. Bounded in time: no task waits on a peer once cancelled.
    pub async fn shutdown(&self) {
        let shared = &self.handle.shared;
        shared.stop();
        shared.tracker.close();
        shared.tracker.wait().await;
    }
}

/// A handle on one peer address: its two lanes' links.
///
/// # Examples
///
/// See [`Transport`].
#[derive(Clone)]
pub struct Peer {
    shared: Arc<Shared>,
    links: [Arc<Link>; 2],
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("addr", &self.links[0].addr)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Sends a request and waits for its answer, for at most the lane's
    /// adaptive timeout (smoothed RTT plus four variances, clamped to the
    /// configured floor and ceiling).
    ///
    /// Dropping the future (a caller's deadline, a `select!`) withdraws the
    /// request: its slot is released, a late answer is discarded, and the
    /// connection stays healthy.
    pub async fn request(&self, lane: Lane, body: Bytes) -> Result<Bytes, TransportError> {
        self.links[lane.index()]
            .request(&self.shared, body, None)
            .await
    }

    /// As [`Peer::request`] with an explicit timeout instead of the adaptive
    /// one.
    pub async fn request_with_timeout(
        &self,
        lane: Lane,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        self.links[lane.index()]
            .request(&self.shared, body, Some(timeout))
            .await
    }

    /// Queues a one-way message. `Ok` means queued, not delivered: it is
    /// lost if the connection breaks first.
    pub fn send(&self, lane: Lane, body: Bytes) -> Result<(), TransportError> {
        let link = &self.links[lane.index()];
        link.check_sendable(&self.shared, body.len())?;
        link.queue
            .push(Envelope::OneWay { lane, body })
            .map_err(|error| link.push_error(&self.shared, error))
    }

    /// The lane's RTT estimate.
    pub fn rtt(&self, lane: Lane) -> RttSnapshot {
        self.links[lane.index()].rtt()
    }

    /// Who answered the last handshake on this lane, if any connection was
    /// ever made.
    pub fn node(&self, lane: Lane) -> Option<PeerInfo> {
        *self.links[lane.index()].peer.lock()
    }

    /// Requests awaiting answers on the lane now.
    pub fn in_flight(&self, lane: Lane) -> usize {
        self.links[lane.index()].in_flight.in_use()
    }
}

enum LinkState {
    Idle,
    Connecting,
    Connected,
    Backoff {
        until: Instant,
        error: TransportError,
    },
}

struct Pending {
    tx: oneshot::Sender<Result<Bytes, TransportError>>,
    sent: Instant,
}

/// Everything about talking to one peer address on one lane.
pub(crate) struct Link {
    addr: String,
    lane: Lane,
    queue: Arc<SendQueue>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    in_flight: Arc<Budget>,
    rtt: Mutex<RttEstimator>,
    state: Mutex<LinkState>,
    cut_backoff: Notify,
    /// Ends the link's task, connected or backing off, when the link is
    /// forgotten or the transport stops (a child of the transport's token).
    forgotten: CancellationToken,
    peer: Mutex<Option<PeerInfo>>,
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
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            in_flight: Budget::new(config.max_in_flight, config.max_in_flight_bytes),
            rtt: Mutex::new(RttEstimator::new(config.rtt).expect("validated with the config")),
            state: Mutex::new(LinkState::Idle),
            cut_backoff: Notify::new(),
            forgotten: cancel.child_token(),
            peer: Mutex::new(None),
        }
    }

    fn rtt(&self) -> RttSnapshot {
        let rtt = self.rtt.lock();
        RttSnapshot {
            srtt: rtt.srtt(),
            rttvar: rtt.rttvar(),
            timeout: rtt.timeout(),
            samples: rtt.samples(),
        }
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

    /// Whether request `id` still waits for an answer (the writer skips
    /// requests withdrawn while queued).
    pub(crate) fn is_pending(&self, id: u64) -> bool {
        self.pending.lock().contains_key(&id)
    }

    fn backpressure(&self, shared: &Shared, limit: Limit) -> TransportError {
        shared.counters.backpressure.fetch_add(1, Relaxed);
        TransportError::Backpressure {
            peer: self.addr.clone(),
            limit,
        }
    }

    /// The checks shared by requests and one-way messages: running, fits a
    /// frame, not backing off.
    fn check_sendable(&self, shared: &Shared, body_len: usize) -> Result<(), TransportError> {
        if shared.cancel.is_cancelled() {
            return Err(TransportError::ShuttingDown);
        }
        let len = REQUEST_HEADER + body_len;
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

    async fn request(
        self: &Arc<Self>,
        shared: &Shared,
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Bytes, TransportError> {
        self.check_sendable(shared, body.len())?;
        let budget = self
            .in_flight
            .try_acquire(body.len())
            .map_err(|limit| self.backpressure(shared, limit))?;
        let id = self.next_id.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(
            id,
            Pending {
                tx,
                sent: Instant::now(),
            },
        );
        // From here on, however this future ends (answer, error, timeout,
        // or dropped by its caller), the guard withdraws the request.
        let _guard = PendingGuard {
            link: self,
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
        let timeout = timeout.unwrap_or_else(|| self.rtt.lock().timeout());
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            // Every path that drops a pending entry's sender (an answer,
            // `fail_all`) sends first; dropped unsent only with the link.
            Ok(Err(_)) => Err(TransportError::ShuttingDown),
            Err(_) => {
                self.rtt.lock().backoff();
                shared.counters.request_timeouts.fetch_add(1, Relaxed);
                Err(TransportError::Timeout {
                    peer: self.addr.clone(),
                    after: timeout,
                })
            }
        }
    }

    /// An answer arrived for request `id`.
    pub(crate) fn complete(&self, id: u64, result: Result<Bytes, TransportError>, shared: &Shared) {
        let Some(pending) = self.pending.lock().remove(&id) else {
            shared.counters.late_responses.fetch_add(1, Relaxed);
            return;
        };
        if result.is_ok() {
            self.rtt.lock().observe(pending.sent.elapsed());
        }
        // The requester may have just given up; then nobody is listening.
        let _ = pending.tx.send(result);
    }

    pub(crate) fn observe_pong(&self, token: u64, shared: &Shared) {
        let sent = instant_of(shared.epoch, token);
        let now = Instant::now();
        if sent <= now {
            self.rtt.lock().observe(now - sent);
        }
    }

    pub(crate) fn remote_error(&self, code: ErrorCode) -> TransportError {
        let peer = self.addr.clone();
        match code {
            ErrorCode::Overloaded => TransportError::Overloaded { peer },
            ErrorCode::NoAnswer => TransportError::NoAnswer { peer },
            ErrorCode::Unknown(code) => TransportError::Remote { peer, code },
        }
    }

    /// Fails every pending request with `error()` and drops what is queued.
    fn fail_all(&self, shared: &Shared, error: impl Fn() -> TransportError) {
        self.queue.clear();
        let mut failed: Vec<(u64, Pending)> = self.pending.lock().drain().collect();
        // In request order, not the map's (randomly seeded) order: the
        // callers woken here run in this order, and a seeded simulation
        // must replay it.
        failed.sort_by_key(|(id, _)| *id);
        shared
            .counters
            .requests_failed
            .fetch_add(failed.len() as u64, Relaxed);
        for (_, pending) in failed {
            let _ = pending.tx.send(Err(error()));
        }
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
}

struct PendingGuard<'a> {
    link: &'a Link,
    id: u64,
    _budget: BudgetGuard,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.link.pending.lock().remove(&self.id);
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
                    link: Some(Arc::clone(&link)),
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
                        })
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

/// Connects to `addr` and runs the dialler's side of the handshake.
async fn dial(shared: &Shared, addr: &str) -> Result<(Stream, BytesMut, PeerInfo), TransportError> {
    let unreachable = |reason: String| TransportError::Unreachable {
        peer: addr.to_owned(),
        reason,
        retry_in: Duration::ZERO,
    };
    let config = &shared.config;
    let mut stream =
        match tokio::time::timeout(config.dial_timeout, shared.network.connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(unreachable(format!("connect failed: {error}"))),
            Err(_) => {
                return Err(unreachable(format!(
                    "connect timed out after {:?}",
                    config.dial_timeout
                )))
            }
        };
    let handshake = async {
        let hello = shared.identity.hello().encode()?;
        write_frame(&mut stream.write, &hello).await?;
        let mut buf = BytesMut::with_capacity(1024);
        let reply = read_handshake_frame(&mut stream.read, &mut buf).await?;
        match HelloReply::decode(&reply)? {
            HelloReply::Accepted {
                node_id,
                generation,
                ..
            } => Ok((node_id, generation, buf)),
            HelloReply::Refused { reason } => Err(HandshakeError::Refused(reason)),
        }
    };
    let result = match tokio::time::timeout(config.handshake_timeout, handshake).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeError::Malformed {
            detail: format!("no handshake reply within {:?}", config.handshake_timeout),
        }),
    };
    match result {
        Ok((node_id, generation, buf)) => {
            let peer = PeerInfo {
                node_id,
                generation,
                addr: stream.peer_addr,
            };
            Ok((stream, buf, peer))
        }
        Err(error) => {
            shared.counters.handshake_failures.fetch_add(1, Relaxed);
            tracing::warn!(peer = %addr, %error, "handshake failed");
            Err(TransportError::Handshake {
                peer: addr.to_owned(),
                error,
            })
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: Box<dyn super::io::Listener>) {
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
                    shared.tracker.spawn(async move {
                        serve_inbound(&shared2, stream).await;
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
async fn serve_inbound(shared: &Arc<Shared>, mut stream: Stream) {
    let config = &shared.config;
    let peer_addr = stream.peer_addr;
    let mut buf = BytesMut::with_capacity(1024);
    let handshake = async {
        let frame = read_handshake_frame(&mut stream.read, &mut buf).await?;
        let hello = match Hello::decode(&frame) {
            Ok(hello) => hello,
            Err(error) => {
                if let Some(reason) = error.refusal() {
                    let reply = HelloReply::Refused { reason }.encode()?;
                    let _ = write_frame(&mut stream.write, &reply).await;
                }
                return Err(error);
            }
        };
        if let Err(reason) = check_hello(&shared.identity, &hello) {
            let reply = HelloReply::Refused {
                reason: reason.clone(),
            }
            .encode()?;
            let _ = write_frame(&mut stream.write, &reply).await;
            return Err(HandshakeError::Malformed {
                detail: format!("refused: {reason}"),
            });
        }
        write_frame(&mut stream.write, &shared.identity.accepted().encode()?).await?;
        let node_id = NodeId::new(&hello.node_id).map_err(HandshakeError::InvalidNodeId)?;
        Ok(PeerInfo {
            node_id,
            generation: Generation::new(hello.generation),
            addr: peer_addr,
        })
    };
    let result = tokio::select! {
        biased;
        _ = shared.cancel.cancelled() => return,
        result = tokio::time::timeout(config.handshake_timeout, handshake) => result,
    };
    let peer = match result {
        Ok(Ok(peer)) => peer,
        Ok(Err(error)) => {
            shared.counters.handshake_failures.fetch_add(1, Relaxed);
            tracing::warn!(peer = %peer_addr, %error, "inbound handshake failed");
            return;
        }
        Err(_) => {
            shared.counters.handshake_failures.fetch_add(1, Relaxed);
            tracing::warn!(peer = %peer_addr, "inbound handshake timed out");
            return;
        }
    };
    let Some(handlers) = shared.handlers() else {
        return;
    };
    shared.counters.connections_accepted.fetch_add(1, Relaxed);
    shared.peer_connected(peer.node_id);
    let conn = Conn {
        shared: Arc::clone(shared),
        peer,
        queue: Arc::new(SendQueue::new(
            config.inbound_in_flight,
            config.queue_bytes,
            Arc::clone(&shared.counters),
        )),
        link: None,
        stop: shared.cancel.clone(),
        handlers,
        inbound: Budget::new(config.inbound_in_flight, config.inbound_in_flight_bytes),
        read_burst: std::sync::atomic::AtomicBool::new(false),
    };
    let queue = Arc::clone(&conn.queue);
    conn.run(stream.read, stream.write, buf).await;
    // Answers still owed go nowhere now.
    queue.close();
}

/// Writes one handshake frame.
async fn write_frame(
    write: &mut (dyn AsyncWrite + Send + Unpin),
    payload: &[u8],
) -> Result<(), HandshakeError> {
    let mut out = BytesMut::new();
    encode_frame(payload, PRE_HANDSHAKE_MAX_FRAME, &mut out).map_err(|error| {
        HandshakeError::Malformed {
            detail: error.to_string(),
        }
    })?;
    write
        .write_all(&out)
        .await
        .map_err(|error| HandshakeError::Malformed {
            detail: format!("write failed: {error}"),
        })
}

/// Reads one frame under the pre-handshake limit; whatever arrived after it
/// stays in `buf`.
async fn read_handshake_frame(
    read: &mut (dyn AsyncRead + Send + Unpin),
    buf: &mut BytesMut,
) -> Result<Bytes, HandshakeError> {
    let decoder = FrameDecoder::new(PRE_HANDSHAKE_MAX_FRAME);
    loop {
        match decoder.decode(buf) {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(error) => {
                return Err(HandshakeError::Malformed {
                    detail: error.to_string(),
                })
            }
        }
        buf.reserve(1024);
        match read.read_buf(buf).await {
            Ok(0) => {
                return Err(HandshakeError::Malformed {
                    detail: "connection closed during the handshake".to_owned(),
                })
            }
            Ok(_) => {}
            Err(error) => {
                return Err(HandshakeError::Malformed {
                    detail: format!("read failed: {error}"),
                })
            }
        }
    }
}
