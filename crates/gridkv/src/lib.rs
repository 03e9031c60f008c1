//! GridKV: an embedded, distributed key-value cache.
//!
//! Applications embed a node; nodes find each other through seed
//! addresses and form a cluster with no external server: SWIM gossip for
//! membership, a consistent-hash ring for placement, N/W/R quorum
//! replication with read repair, hinted handoff and anti-entropy, Hybrid
//! Logical Clock versions with last-write-wins, TTLs and a bounded,
//! sharded in-memory store.
//!
//! The public API is the [`GridKv`] handle and what it takes and returns:
//! its [`Config`] (built with [`GridKv::builder`], with the parts
//! [`SwimConfig`], [`ReplicationConfig`] and [`StoreConfig`]), per-call
//! [`ReadOptions`] and [`WriteOptions`], the [`Error`] of a data operation
//! and the [`ConfigError`] of a configuration, member views ([`Member`],
//! [`MemberEvent`]) and statistics snapshots.
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use gridkv::{GridKv, ReadOptions, WriteOptions};
//!
//! let a = GridKv::start(GridKv::builder("a").listen("127.0.0.1:0").build()?).await?;
//! let seed = a.local_addr().to_string();
//! let b = GridKv::start(GridKv::builder("b").listen("127.0.0.1:0").seeds([seed]).build()?).await?;
//! a.ready().await?;
//! b.ready().await?;
//!
//! a.set_opts("greeting", "hello", WriteOptions::default().ttl(Duration::from_secs(60))).await?;
//! assert_eq!(b.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
//! assert!(b.get_opts("missing", ReadOptions::default().quorum(1)).await?.is_none());
//!
//! b.shutdown().await;
//! a.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # The `internals` feature
//!
//! The modules behind the handle (`net`, `store`, `ring`, `hlc`,
//! `membership`, `replication`, wire types, ...) are private. The cargo
//! feature `internals` makes them public, together with handle methods
//! that reach past replication (`GridKv::store`, `GridKv::transport`,
//! `GridKv::ring`, `GridKv::start_with` over a simulated network). It
//! exists for this crate's tests and benches and for the `gridkv` server;
//! it is not part of the stable API, and a write through it bypasses
//! replication.

/// Declares modules that are crate-private, or public with the
/// `internals` feature. Without the feature, the parts of their API that
/// only the tests, benches and server use are unused by design, hence the
/// allowance; with it (the workspace's builds and lints), private items are
/// still checked for dead code.
macro_rules! internal_modules {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        #[allow(dead_code, unused_imports)]
        mod $name;
    )*};
}

internal_modules!(
    hlc,
    id,
    keyspace,
    membership,
    metrics,
    net,
    node,
    replication,
    ring,
    rng,
    store
);

mod config_error;
mod log_limit;

pub use config_error::ConfigError;
pub use hlc::{Clock, SystemClock};
pub use id::{Generation, NodeId, NodeIdError};
pub use membership::signed::{ClaimKind, Proof, Removal, RemovalError};
pub use membership::trust::{CertRole, CertifiedKey, Credentials, Untrusted};
pub use membership::wire::WireError;
pub use membership::{
    Identity, Liveness, Member, MemberEvent, MembershipSecurityStats, RingState, SwimConfig,
};
pub use metrics::{HistogramSnapshot, LatencyHistogram, NodeMetrics};
pub use net::TransportStats;
pub use net::tls::{CertExpiry, CertKind, OperatorKey, TlsError, TlsFiles, TlsStatus, TlsStore};
pub use node::{
    ClockStatus, Config, ConfigBuilder, ExpiryChange, FillMode, Forming, Found, GridKv, JoinError,
    KeyOwner, LINK_SWEEP_INTERVAL, LoadError, LoadOptions, LoaderError, MembershipStats, Readiness,
    StartError, Ttl,
};
pub use replication::{
    Consistency, ConsistencyLevel, Error, FillReport, Guarantee, PeerHealth, ReadOptions,
    ReplicationConfig, ReplicationStats, ReplicationStatus, ScanPage, StreamStatus, WriteOptions,
};
pub use ring::{Location, ReplicaPlacement};
pub use store::{StoreConfig, StoreStats};

/// The cluster transport's settings and errors, as [`Config`] and
/// [`StartError`] expose them: dial backoff, RTT-based timeouts, per-peer
/// queue limits, and why a handshake was refused.
///
/// # Examples
///
/// ```
/// use gridkv::transport::TransportConfig;
/// use gridkv::{Generation, GridKv, NodeId};
///
/// // The identity and address fields are overwritten by the builder.
/// let id = NodeId::new("a").unwrap();
/// let mut transport = TransportConfig::new("my-cluster", id, Generation::new(1));
/// transport.queue_frames = 8_192;
/// let config = GridKv::builder("a")
///     .cluster("my-cluster")
///     .transport(transport)
///     .build()
///     .unwrap();
/// assert_eq!(config.transport.queue_frames, 8_192);
/// ```
pub mod transport {
    pub use crate::net::backoff::BackoffConfig;
    pub use crate::net::handshake::{HandshakeError, IdMismatch, RefusalReason};
    pub use crate::net::rtt::RttConfig;
    pub use crate::net::{Limit, TransportConfig, TransportError};
}

/// Compiles and runs the README's examples as doctests, so the quick start
/// stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
