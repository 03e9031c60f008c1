//! Cluster transport building blocks.
//!
//! The transport (issue 3) is being built bottom-up from pure, sans-IO
//! pieces that membership and replication will share:
//!
//! - [`rtt`]: per-peer smoothed RTT and variance (RFC 6298) turned into a
//!   request timeout clamped between a floor and a ceiling.
//! - [`backoff`]: reconnect delays with exponential growth and full jitter
//!   from an injected, seedable source.
//!
//! The socket layer (connections, lanes, multiplexing, handshake, fault
//! hooks) is not here yet.

pub mod backoff;
pub mod rtt;
