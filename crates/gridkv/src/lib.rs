//! GridKV: an embedded, distributed key-value cache.
//!
//! Applications embed a GridKV node; nodes find each other through seed
//! addresses and form a cluster with no external server. This crate holds the
//! parts every node runs locally:
//!
//! - [`id`]: who a node is ([`NodeId`]) and which start of it runs
//!   ([`Generation`]).
//! - [`hlc`]: Hybrid Logical Clock timestamps and the [`Version`] of every
//!   write (last-write-wins).
//! - [`keyspace`]: the 64-bit hash space keys live in ([`keyspace::key_hash`],
//!   [`keyspace::RingRange`]).
//! - [`ring`]: consistent hashing with virtual nodes: who owns which key.
//! - [`store`]: the sharded in-memory store with versions, TTLs, tombstones,
//!   a memory budget and incremental range digests.
//! - [`net`]: transport building blocks (RTT estimation, reconnect backoff);
//!   the transport itself is in progress.
//!
//! Membership, transport, replication and the `GridKv` node handle build on
//! these.
#![warn(missing_docs)]

pub mod hlc;
pub mod id;
pub mod keyspace;
pub mod membership;
pub mod net;
pub mod ring;
pub mod store;

pub use hlc::{Hlc, Timestamp, Version};
pub use id::{Generation, NodeId, NodeIdError};

/// Compiles and runs the README's examples as doctests, so the quick start
/// stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
