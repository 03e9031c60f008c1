//! How a transport is configured: [`TransportConfig`], its defaults, and
//! the validation that names the first field out of range
//! ([`ConfigError`]).

use std::time::Duration;

use super::backoff::BackoffConfig;
use super::frame::{DEFAULT_MAX_FRAME, PRE_HANDSHAKE_MAX_FRAME};
use super::handshake::MAX_CLUSTER_NAME_LEN;
use super::rtt::RttConfig;
use super::tls::TlsStore;
use crate::config_error::ConfigError;
use crate::{Generation, NodeId};

/// The default [`TransportConfig::max_links`]: peer addresses with links.
const DEFAULT_MAX_LINKS: usize = 4096;

/// The largest [`TransportConfig::max_links`] accepted: each address costs
/// two tasks and two queues, so a bound past this is a typo, not a plan.
const MAX_LINKS_LIMIT: usize = 1 << 20;

/// How a transport behaves. Build one with [`TransportConfig::new`] and
/// adjust fields; `Transport::bind` validates it.
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
///
/// config.heartbeat_interval = Duration::from_millis(500);
/// config.rtt.floor = Duration::ZERO;
/// let err = config.validate().unwrap_err();
/// assert_eq!((err.section, err.field), ("rtt", "floor"));
///
/// config.rtt = Default::default();
/// config.max_links = 0;
/// assert_eq!(config.validate().unwrap_err().field, "max_links");
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
    /// `Transport::local_addr`). Default `127.0.0.1:0`.
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
    /// Peer addresses this node keeps links to at once (each address has
    /// one link per lane). Opening one more fails with
    /// [`TransportError::TooManyLinks`](super::TransportError::TooManyLinks);
    /// the links there are keep working. Default 4096.
    pub max_links: usize,
    /// Frames queued to one peer per lane. Default 4096.
    pub queue_frames: usize,
    /// Bytes queued to one peer per lane. Default 64 MiB.
    pub queue_bytes: usize,
    /// Requests awaiting answers from one peer per lane. Default 1024.
    pub max_in_flight: usize,
    /// Request bytes awaiting answers from one peer per lane. Default
    /// 64 MiB.
    pub max_in_flight_bytes: usize,
    /// Requests and messages per lane delivered to `Incoming` and not yet
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
    /// Mutual TLS on every connection, both lanes: the node's certificate
    /// must name [`TransportConfig::node_id`]. `None` (the default) is
    /// plaintext, for loopback or explicitly insecure clusters.
    pub tls: Option<TlsStore>,
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
            max_links: DEFAULT_MAX_LINKS,
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
            tls: None,
        }
    }

    /// Checks every field; the error names the first one out of range. The
    /// nested [`RttConfig`] and [`BackoffConfig`] errors pass up unchanged,
    /// in their own `rtt` and `backoff` sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &'static str| Err(ConfigError::new("transport", field, reason));
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
            ("max_links", self.max_links),
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
        if self.max_links > MAX_LINKS_LIMIT {
            return bad("max_links", "must be at most 1,048,576");
        }
        if let Some(tls) = &self.tls {
            if tls.node_id() != self.node_id {
                return Err(ConfigError::new(
                    "transport",
                    "tls",
                    format!(
                        "the certificate names node {}, this node is {}",
                        tls.node_id(),
                        self.node_id
                    ),
                ));
            }
        }
        self.rtt.validate()?;
        self.backoff.validate()
    }
}
