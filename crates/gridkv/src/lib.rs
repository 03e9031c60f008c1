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
//! - [`net`]: the cluster transport: framed, multiplexed TCP with bounded
//!   queues, adaptive timeouts and reconnects.
//! - [`membership`]: SWIM gossip with Lifeguard: who is in the cluster, who
//!   is alive, and each member's ring state.
//! - [`replication`]: quorum writes and reads over the key's owners, with
//!   re-stamping past newer versions and read repair.
//! - [`node`]: the [`GridKv`] handle that runs a node.
//! - [`metrics`]: per-node latency histograms of data operations.
#![warn(missing_docs)]

mod config_error;
pub mod hlc;
pub mod id;
pub mod keyspace;
pub mod membership;
pub mod metrics;
pub mod net;
pub mod node;
pub mod replication;
pub mod ring;
pub mod rng;
pub mod store;

pub use config_error::ConfigError;
pub use hlc::{Hlc, Timestamp, Version};
pub use id::{Generation, NodeId, NodeIdError};
pub use membership::{Liveness, Member, MemberEvent, RingState, SwimConfig};
pub use node::{Config, ConfigBuilder, FillMode, GridKv, JoinError, StartError};
pub use replication::{Error, ReadOptions, ReplicationConfig, WriteOptions};

/// Compiles and runs the README's examples as doctests, so the quick start
/// stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
