//! The cluster transport: framed, multiplexed TCP between nodes.
//!
//! [`Transport`] is what membership and replication use: requests with
//! answers matched by id, one-way messages, two lanes per peer (control and
//! data) on separate connections, bounded queues, adaptive timeouts, and
//! reconnects with backoff. It is built from one module per part, none
//! depending on one listed above it:
//!
//! - `transport`: the [`Transport`] handle, which binds, starts the tasks
//!   and ties the parts below together;
//! - `listener`: the accept loop and its inbound connection budget;
//! - `link` and `peer`: dialing, the per-peer lanes, reconnects with
//!   backoff, and the application's [`Peer`] handle on them;
//! - `conn`: one established connection's reader and writer, whichever
//!   side dialled; it knows the requests it completes (`pending`) but not
//!   the link that dialled it;
//! - `inbound`: [`Inbound`] requests and messages, [`Incoming`], and the
//!   [`Responder`] that answers;
//! - `config` and `error`: [`TransportConfig`] with its validation, and
//!   [`TransportError`].
//!
//! The pieces under them are sans-IO and tested on their own:
//!
//! - [`frame`]: length-delimited frames with a size limit checked from the
//!   prefix alone.
//! - [`handshake`]: the first message each way on a connection (magic,
//!   protocol version, cluster name, node id, generation); only its
//!   exchange over a new connection does I/O.
//! - [`envelope`]: what each frame after the handshake carries.
//! - [`rtt`]: per-peer smoothed RTT and variance (RFC 6298) turned into a
//!   request timeout clamped between a floor and a ceiling.
//! - [`backoff`]: reconnect delays with exponential growth and full jitter
//!   from an injected, seedable source.
//! - [`faults`]: per-link loss, delay and duplication for tests.
//! - [`io`]: the socket seam ([`io::Network`]), real TCP or a simulation.
//!
//! [`tls`] holds the node's certificates and runs mutual TLS under the
//! handshake when [`TransportConfig::tls`] is set.

pub mod backoff;
mod config;
mod conn;
pub mod envelope;
mod error;
pub mod faults;
pub mod frame;
pub mod handshake;
mod inbound;
pub mod io;
mod link;
mod listener;
mod peer;
mod pending;
mod queue;
pub mod rtt;
mod shared;
mod stats;
pub mod tls;
mod transport;

pub use config::TransportConfig;
pub use envelope::Lane;
pub use error::TransportError;
pub use handshake::exchange::PeerInfo;
pub use inbound::{Inbound, Incoming, Responder};
pub use peer::Peer;
pub use queue::Limit;
pub use rtt::RttSnapshot;
pub use stats::TransportStats;
pub use transport::Transport;
