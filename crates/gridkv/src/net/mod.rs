//! The cluster transport: framed, multiplexed TCP between nodes.
//!
//! [`Transport`] is what membership and replication use: requests with
//! answers matched by id, one-way messages, two lanes per peer (control and
//! data) on separate connections, bounded queues, adaptive timeouts, and
//! reconnects with backoff. The pieces under it are sans-IO and tested on
//! their own:
//!
//! - [`frame`]: length-delimited frames with a size limit checked from the
//!   prefix alone.
//! - [`handshake`]: the first message each way on a connection (magic,
//!   protocol version, cluster name, node id, generation).
//! - [`envelope`]: what each frame after the handshake carries.
//! - [`rtt`]: per-peer smoothed RTT and variance (RFC 6298) turned into a
//!   request timeout clamped between a floor and a ceiling.
//! - [`backoff`]: reconnect delays with exponential growth and full jitter
//!   from an injected, seedable source.
//! - [`faults`]: per-link loss, delay and duplication for tests.
//! - [`io`]: the socket seam ([`io::Network`]), real TCP or a simulation.

pub mod backoff;
mod conn;
pub mod envelope;
pub mod faults;
pub mod frame;
pub mod handshake;
pub mod io;
mod queue;
pub mod rtt;
mod stats;
mod transport;

pub use envelope::Lane;
pub use queue::Limit;
pub use stats::TransportStats;
pub use transport::{
    ConfigError, Inbound, Incoming, Peer, PeerInfo, Responder, RttSnapshot, Transport,
    TransportConfig, TransportError,
};
