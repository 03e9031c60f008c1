//! Cluster transport building blocks.
//!
//! - [`frame`]: length-delimited frames with a size limit checked from the
//!   prefix alone.
//! - [`handshake`]: the first message each way on a connection (magic,
//!   protocol version, cluster name, node id, generation).
//! - [`rtt`]: per-peer smoothed RTT and variance (RFC 6298) turned into a
//!   request timeout clamped between a floor and a ceiling.
//! - [`backoff`]: reconnect delays with exponential growth and full jitter
//!   from an injected, seedable source.

pub mod backoff;
pub mod frame;
pub mod handshake;
pub mod rtt;
