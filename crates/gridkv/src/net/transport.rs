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
//! Who owns what (each in its own module; this one ties them together):
//! - one *link* per peer address and lane (`link`) holds the send queue,
//!   the pending requests (matched by id, `pending`), the RTT estimate and
//!   the reconnect backoff; its task dials when there is something to
//!   send, runs the connection, and fails everything pending at once when
//!   it breaks; a [`Peer`] is the application's handle on an address's
//!   links;
//! - the accept task (`listener`) hands each inbound connection, after the
//!   handshake, to a connection task (`conn`) that delivers requests and
//!   messages to the application through [`Incoming`] (`inbound`), where a
//!   [`Responder`](super::Responder) answers each request;
//! - the configuration and its validation (`config`), the errors
//!   (`error`), and what the tasks share (`shared`).
//!
//! Every queue and budget is bounded; when one is full the caller gets
//! [`TransportError::Backpressure`] (or the peer an `Overloaded` answer)
//! instead of memory growing.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::config::TransportConfig;
use super::envelope::Lane;
use super::error::TransportError;
use super::faults::FaultInjector;
use super::inbound::Incoming;
use super::io::{Network, Tcp};
use super::link::Links;
use super::listener::accept_loop;
use super::peer::Peer;
use super::rtt::RttSnapshot;
use super::shared::Shared;
use super::stats::TransportStats;
use super::tls::TlsStore;
use crate::config_error::ConfigError;
use crate::NodeId;

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
    links: Arc<Links>,
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
                return Err(ConfigError::new(
                    "transport",
                    "advertise",
                    format!(
                        "required when listening on the unspecified address {local_addr}: peers cannot dial it"
                    ),
                )
                .into())
            }
            None => local_addr.to_string(),
        };
        let (shared, incoming) = Shared::new(config, network);
        let shared = Arc::new(shared);
        let links = Arc::new(Links::new());
        shared.tracker.spawn(accept_loop(
            Arc::clone(&shared),
            Arc::clone(&links),
            listener,
        ));
        let transport = Transport {
            handle: Arc::new(Handle {
                shared,
                links,
                local_addr,
                advertised,
            }),
        };
        Ok((transport, incoming))
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

    /// The TLS material connections use, when the transport runs TLS.
    pub fn tls(&self) -> Option<&TlsStore> {
        self.handle.shared.config.tls.as_ref()
    }

    /// A handle on the peer at `addr` (`host:port`; names are resolved on
    /// every dial). Keeping it saves a map lookup per request.
    ///
    /// When [`TransportConfig::max_links`] addresses have links already and
    /// `addr` is not one of them, no link is opened: the handle fails every
    /// call with [`TransportError::TooManyLinks`]. Use
    /// [`Transport::try_peer`] to learn that at once.
    pub fn peer(&self, addr: &str) -> Peer {
        let shared = &self.handle.shared;
        match self.handle.links.get(shared, addr) {
            Ok(links) => Peer::new(Arc::clone(shared), links),
            Err(_) => Peer::new(Arc::clone(shared), Links::refused(shared, addr)),
        }
    }

    /// As [`Transport::peer`], failing at once when no link to `addr` can
    /// be opened.
    ///
    /// # Errors
    ///
    /// [`TransportError::TooManyLinks`] when [`TransportConfig::max_links`]
    /// addresses have links already and `addr` is not one of them (counted
    /// in [`TransportStats::links_refused`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::{Transport, TransportConfig, TransportError};
    /// use gridkv::{Generation, NodeId};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let mut config = TransportConfig::new("demo", NodeId::new("a").unwrap(), Generation::new(1));
    /// config.max_links = 1;
    /// let (a, _incoming) = Transport::bind(config).await.unwrap();
    /// assert!(a.try_peer("127.0.0.1:1").is_ok());
    /// assert!(a.try_peer("127.0.0.1:1").is_ok()); // the same address: the same link
    /// assert!(matches!(
    ///     a.try_peer("127.0.0.1:2"),
    ///     Err(TransportError::TooManyLinks { max: 1, .. })
    /// ));
    /// assert_eq!((a.stats().links, a.stats().links_refused), (1, 1));
    /// a.shutdown().await;
    /// # });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_peer(&self, addr: &str) -> Result<Peer, TransportError> {
        let shared = &self.handle.shared;
        let links = self.handle.links.get(shared, addr)?;
        Ok(Peer::new(Arc::clone(shared), links))
    }

    /// Closes the links to `addr` and forgets them: pending requests fail
    /// with [`TransportError::ConnectionLost`], its connections close, its
    /// tasks end. Membership calls this for a member that left or was
    /// removed, so addresses of departed peers cost nothing. A later
    /// [`Transport::peer`] for the address starts afresh; a [`Peer`] handle
    /// kept from before fails its requests.
    pub fn forget(&self, addr: &str) {
        self.handle.links.forget(&self.handle.shared, addr);
    }

    /// Closes and forgets (as [`Transport::forget`]) the links to every
    /// address for which `keep` returns `false`; returns how many addresses
    /// that was. The node sweeps with it the links to addresses that are
    /// neither members nor seeds.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::{Transport, TransportConfig};
    /// use gridkv::{Generation, NodeId};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let config = TransportConfig::new("demo", NodeId::new("a").unwrap(), Generation::new(1));
    /// let (a, _incoming) = Transport::bind(config).await.unwrap();
    /// a.peer("127.0.0.1:1");
    /// a.peer("127.0.0.1:2");
    /// assert_eq!(a.retain_links(|addr| addr == "127.0.0.1:1"), 1);
    /// assert_eq!(a.link_addrs(), ["127.0.0.1:1"]);
    /// a.shutdown().await;
    /// # });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn retain_links(&self, keep: impl FnMut(&str) -> bool) -> usize {
        self.handle.links.retain(&self.handle.shared, keep)
    }

    /// The peer addresses this node has links to now, in order.
    pub fn link_addrs(&self) -> Vec<String> {
        self.handle.links.addrs()
    }

    /// Sends a request to `addr` and waits for its answer, for at most the
    /// peer's adaptive timeout (see [`Peer::request`]).
    pub async fn request(
        &self,
        addr: &str,
        lane: Lane,
        body: Bytes,
    ) -> Result<Bytes, TransportError> {
        self.try_peer(addr)?.request(lane, body).await
    }

    /// Queues a one-way message to `addr` (see [`Peer::send`]).
    pub fn send(&self, addr: &str, lane: Lane, body: Bytes) -> Result<(), TransportError> {
        self.try_peer(addr)?.send(lane, body)
    }

    /// The RTT estimate to `addr` on the control lane, if this node ever
    /// talked to it.
    pub fn rtt(&self, addr: &str) -> Option<RttSnapshot> {
        self.handle.links.rtt(addr)
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
