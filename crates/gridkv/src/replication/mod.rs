//! Quorum replication: the coordinator that runs every data operation, and
//! the replica side that applies and serves them.
//!
//! - **Owners.** The replicas of a key are its first N distinct nodes on the
//!   placement ring (see [`RingMembers`](crate::membership::RingMembers)):
//!   designated owners, down or not. Only they count towards a quorum.
//!   Members joining the ring (pending owners) also receive every write for
//!   the ranges they will own.
//! - **Writes.** Any node coordinates: it stamps an HLC version and sends the
//!   write to every owner at once, and answers once W designated owners have
//!   *applied* it. A replica holding a newer version answers "superseded by
//!   v": the coordinator merges v into its clock and re-stamps, so clock skew
//!   cannot order a write acknowledged later before one acknowledged
//!   earlier. Superseded never counts as applied.
//! - **Reads.** Ask R designated owners that serve reads (the local node
//!   first), more if some fail; answer with the highest version (tombstones
//!   and expired values read as absent); repair owners that answered with
//!   something older, in the background.
//! - **Failure is indeterminate.** An error from a write means fewer than W
//!   owners were known to apply it, not that none did: a failed write may
//!   have reached some replicas and may appear later, as in every
//!   Dynamo-style store.
//!
//! Any node coordinates its own calls, instead of forwarding to the key's
//! first owner: that saves a network hop on every call from a non-owner, and
//! the superseded/re-stamp rule gives the ordering guarantee that a single
//! coordinator per key would.
//!
//! **Strong by default.** W + R > N, so every read quorum meets every write
//! quorum: [`ReplicationConfig::validate`] refuses anything weaker unless
//! it asks for [`Consistency::Eventual`] by name.
//!
//! **A cluster smaller than N**: the effective replication factor is the
//! number of placement members. A node given seeds serves no data call
//! until its ring holds at least max(W, R) members (and two), so W and R
//! are never cut down to fit; only a node started with no seeds (one
//! `cargo add gridkv` node) caps W and R at the members it has.
//! [`ReplicationStatus`] reports the configured and the effective values,
//! so the reduction is visible (the server shows it in `/health`,
//! `/cluster` and a metric).

pub(crate) mod clock_gate;
pub(crate) mod conditional;
pub(crate) mod coordinator;
pub(crate) mod fill_driver;
pub(crate) mod fill_schedule;
mod flush;
pub(crate) mod hint_delivery;
pub(crate) mod hints;
pub(crate) mod in_flight;
mod counter_slots;
mod incr;
mod keys;
mod level;
pub use level::{ConsistencyLevel, Guarantee};
pub(crate) use level::{fewest_acknowledging, level_sets, read_minimum_in};
pub mod lease;
mod lease_client;
pub use keys::ScanPage;
mod holdings;
pub(crate) mod peers;
mod placement;
mod pulled;
mod quorum;
pub(crate) mod rebalance;
pub(crate) mod remote_sender;
pub(crate) mod remote_stream;
pub use remote_stream::StreamStatus;
mod replica;
pub(crate) mod serve;
pub(crate) mod stats;
pub(crate) mod vouch;
pub mod wire;
mod wire_codec;
mod wire_decode;
mod wire_response;

pub(crate) use coordinator::Coordinator;
pub(crate) use holdings::Holdings;
pub(crate) use placement::Placement;
pub use rebalance::FillReport;
pub(crate) use replica::{Replica, WriteData};
pub use peers::PeerHealth;
pub use stats::ReplicationStats;

use std::time::Duration;

use crate::config_error::ConfigError;

/// Replication factor and quorums, validated at build time.
///
/// # Examples
///
/// ```
/// use gridkv::{Consistency, ReplicationConfig};
///
/// let config = ReplicationConfig { replicas: 5, write_quorum: 3, read_quorum: 3, ..Default::default() };
/// assert!(config.validate().is_ok());
/// let bad = ReplicationConfig { write_quorum: 4, ..Default::default() };
/// assert_eq!(bad.validate().unwrap_err().field, "write_quorum");
///
/// // W + R must exceed N, unless eventual consistency is asked for.
/// let weak = ReplicationConfig { write_quorum: 1, read_quorum: 1, ..Default::default() };
/// let err = weak.validate().unwrap_err();
/// assert_eq!(err.field, "consistency");
/// assert!(err.reason.contains("W=1 + R=1 <= N=3"), "{err}");
/// let eventual = ReplicationConfig { consistency: Consistency::Eventual, ..weak };
/// assert!(eventual.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// Copies of each key (N). Default 3.
    pub replicas: usize,
    /// Owners that must apply a write before it succeeds (W). Default 2.
    pub write_quorum: usize,
    /// Owners that must answer a read (R). Default 2.
    pub read_quorum: usize,
    /// How long an operation may take before it fails with
    /// [`Error::Timeout`], unless the call gives its own deadline.
    /// Default 2 s.
    pub timeout: Duration,
    /// How often a write superseded by a newer version on a replica is
    /// re-stamped and retried before it fails. Default 3.
    pub max_restamps: u32,
    /// Most hints (writes kept for an unreachable owner) held at once.
    /// Default 100,000.
    pub max_hints: usize,
    /// Most bytes of hints held at once. Default 64 MiB.
    pub max_hint_bytes: usize,
    /// How long a hint is kept before it is dropped; capped below half the
    /// store's tombstone grace period, so a hint never outlives the
    /// tombstones that protect its key. Default 10 minutes.
    pub hint_ttl: Duration,
    /// Time between anti-entropy rounds: each node compares the digests of
    /// the ranges it owns with their other owners and pulls what differs.
    /// Default 30 s.
    pub anti_entropy_interval: Duration,
    /// The most bytes (keys and values) per second this node pulls when it
    /// fills ranges it gained (join, restart, removal, a member leaving)
    /// or repairs them by anti-entropy; `None` for no limit. Streaming
    /// competes with foreground requests for the sources' CPU and the
    /// network, so a limit bounds their latency while a node fills, at
    /// the cost of a longer fill. Default 16 MiB/s; on a 2-core machine,
    /// 8 MiB/s or less kept foreground p99 during a join within 2× of
    /// its typical value before the join (docs/BENCHMARKS.md).
    pub fill_rate: Option<u64>,
    /// Whether W + R > N is required ([`Consistency::Strong`], the
    /// default) or weaker quorums are accepted
    /// ([`Consistency::Eventual`]). With consistency levels, strong asks
    /// for at least [`Guarantee::StrongWithinDatacenter`].
    pub consistency: Consistency,
    /// Copies per datacenter (`[("a", 2), ("b", 1)]`), sorted by name;
    /// empty for `replicas` copies on members of any datacenter. When set,
    /// `replicas` is their sum, and quorums are named by consistency
    /// levels, not numbers. Set both with
    /// [`ReplicationConfig::with_placement`].
    pub per_datacenter: Vec<(String, usize)>,
    /// The level of writes that name none; `None` for the numeric W
    /// (`write_quorum`). Default `LOCAL_QUORUM` with per-datacenter
    /// copies.
    pub write_consistency: Option<ConsistencyLevel>,
    /// The level of reads that name none; `None` for the numeric R.
    pub read_consistency: Option<ConsistencyLevel>,
}

/// The consistency a [`ReplicationConfig`] promises.
///
/// # Examples
///
/// ```
/// use gridkv::Consistency;
///
/// assert_eq!(Consistency::default(), Consistency::Strong);
/// assert_eq!("eventual".parse::<Consistency>(), Ok(Consistency::Eventual));
/// assert_eq!(Consistency::Strong.as_str(), "strong");
/// assert!("quorum".parse::<Consistency>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// W + R > N, enforced when the config is validated: every read quorum
    /// meets every write quorum, so a read sees the latest acknowledged
    /// write.
    #[default]
    Strong,
    /// Any W and R from 1 to N. With W + R <= N a read quorum can miss
    /// every owner that applied a write, so a read may answer an older
    /// value (or none) after a newer write was acknowledged, until read
    /// repair, hints or anti-entropy bring the owners level. Only when
    /// asked for by name.
    Eventual,
}

impl Consistency {
    /// The lowercase name used in flags, logs and `/cluster`.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Strong => "strong",
            Consistency::Eventual => "eventual",
        }
    }
}

impl std::fmt::Display for Consistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "strong" => Ok(Consistency::Strong),
            "eventual" => Ok(Consistency::Eventual),
            _ => Err(format!("{s:?}: expected strong or eventual")),
        }
    }
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            replicas: 3,
            write_quorum: 2,
            read_quorum: 2,
            timeout: Duration::from_secs(2),
            max_restamps: 3,
            anti_entropy_interval: Duration::from_secs(30),
            max_hints: 100_000,
            max_hint_bytes: 64 << 20,
            hint_ttl: Duration::from_secs(600),
            fill_rate: Some(16 << 20),
            consistency: Consistency::Strong,
            per_datacenter: Vec::new(),
            write_consistency: None,
            read_consistency: None,
        }
    }
}

impl ReplicationConfig {
    /// Places copies as `placement` says: a total sets `replicas`; counts
    /// per datacenter set `per_datacenter` and `replicas` (their sum), and
    /// the read and write levels to `LOCAL_QUORUM` where none is named.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::{ConsistencyLevel, ReplicationConfig};
    ///
    /// let config = ReplicationConfig::default().with_placement("a:2,b:1".parse().unwrap());
    /// assert_eq!(config.replicas, 3);
    /// assert_eq!(config.write_consistency, Some(ConsistencyLevel::LocalQuorum));
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn with_placement(mut self, placement: crate::ring::ReplicaPlacement) -> Self {
        self.replicas = placement.total();
        match placement {
            crate::ring::ReplicaPlacement::Total(_) => self.per_datacenter.clear(),
            crate::ring::ReplicaPlacement::PerDatacenter(dcs) => {
                self.per_datacenter = dcs;
                // Not used beside levels, but kept valid for N.
                self.write_quorum = self.write_quorum.min(self.replicas);
                self.read_quorum = self.read_quorum.min(self.replicas);
                self.write_consistency.get_or_insert(ConsistencyLevel::LocalQuorum);
                self.read_consistency.get_or_insert(ConsistencyLevel::LocalQuorum);
            }
        }
        self
    }

    /// How copies are placed: `replicas` on any members, or the counts per
    /// datacenter.
    pub fn placement(&self) -> crate::ring::ReplicaPlacement {
        if self.per_datacenter.is_empty() {
            crate::ring::ReplicaPlacement::Total(self.replicas)
        } else {
            crate::ring::ReplicaPlacement::PerDatacenter(self.per_datacenter.clone())
        }
    }

    /// What the default write and read levels (or W and R) guarantee.
    pub fn guarantee(&self) -> Guarantee {
        let placement = self.placement();
        match (self.write_consistency, self.read_consistency) {
            (None, None) if self.write_quorum + self.read_quorum > self.replicas => Guarantee::Strong,
            (None, None) => Guarantee::Eventual,
            (w, r) => {
                // A numeric quorum beside a level (one datacenter only):
                // the level that asks at least as many.
                let as_level = |q: usize| {
                    if q >= self.replicas {
                        ConsistencyLevel::All
                    } else if q > self.replicas / 2 {
                        ConsistencyLevel::Quorum
                    } else {
                        ConsistencyLevel::One
                    }
                };
                let w = w.unwrap_or_else(|| as_level(self.write_quorum));
                let r = r.unwrap_or_else(|| as_level(self.read_quorum));
                Guarantee::of(w, r, &placement)
            }
        }
    }

    /// Checks the fields; the error names the first invalid one and why.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: &'static str| Err(ConfigError::new("replication", field, reason));
        if self.replicas == 0 || self.replicas > crate::ring::Ring::MAX_REPLICAS {
            return err("replicas", "must be 1 to 16");
        }
        if self.write_quorum == 0 || self.write_quorum > self.replicas {
            return err("write_quorum", "must be 1 to replicas");
        }
        if self.read_quorum == 0 || self.read_quorum > self.replicas {
            return err("read_quorum", "must be 1 to replicas");
        }
        if !self.per_datacenter.is_empty() {
            let placement = self.placement();
            if let Err(reason) = placement.validate() {
                return Err(ConfigError::new("replication", "per_datacenter", reason));
            }
            if placement.total() != self.replicas {
                return err("replicas", "must be the sum of the per-datacenter copies");
            }
            if self.write_consistency.is_none() || self.read_consistency.is_none() {
                return err(
                    "consistency",
                    "with copies per datacenter, quorums are named by consistency levels \
                     (read_consistency and write_consistency), not numbers",
                );
            }
        }
        let per_dc_only = |l: Option<ConsistencyLevel>| {
            l.is_some_and(|l| l.is_local() || l == ConsistencyLevel::EachQuorum)
        };
        if self.per_datacenter.is_empty()
            && (per_dc_only(self.write_consistency) || per_dc_only(self.read_consistency))
        {
            return err(
                "consistency",
                "LOCAL_ONE, LOCAL_QUORUM and EACH_QUORUM need copies per datacenter \
                 (replicas dc:n,...): with a total, copies are placed without regard to \
                 datacenters",
            );
        }
        if self.read_consistency == Some(ConsistencyLevel::EachQuorum) {
            return err("read_consistency", "EACH_QUORUM is for writes only");
        }
        let (n, w, r) = (self.replicas, self.write_quorum, self.read_quorum);
        let levels = self.write_consistency.is_some() || self.read_consistency.is_some();
        if levels {
            let guarantee = self.guarantee();
            if self.consistency == Consistency::Strong && guarantee == Guarantee::Eventual {
                return Err(ConfigError::new(
                    "replication",
                    "consistency",
                    "strong consistency needs write and read levels whose owners meet at \
                     least within a datacenter (for example LOCAL_QUORUM on both sides); \
                     these could miss an acknowledged write: raise a level, or ask for \
                     eventual consistency explicitly",
                ));
            }
        } else if self.consistency == Consistency::Strong && w + r <= n {
            return Err(ConfigError::new(
                "replication",
                "consistency",
                format!(
                    "strong consistency needs W + R > N, but W={w} + R={r} <= N={n}: a read \
                     could miss an acknowledged write; raise write_quorum or read_quorum, \
                     lower replicas, or ask for eventual consistency explicitly"
                ),
            ));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(3600) {
            return err("timeout", "must be positive and at most an hour");
        }
        if self.max_restamps > 100 {
            return err("max_restamps", "at most 100");
        }
        if self.hint_ttl > Duration::from_secs(7 * 24 * 3600) {
            return err("hint_ttl", "at most a week");
        }
        if self.anti_entropy_interval < Duration::from_millis(100)
            || self.anti_entropy_interval > Duration::from_secs(7 * 24 * 3600)
        {
            return err("anti_entropy_interval", "must be 100 ms to a week");
        }
        if self.fill_rate.is_some_and(|rate| rate < 64 << 10) {
            return err("fill_rate", "at least 64 KiB/s (or none for no limit)");
        }
        Ok(())
    }
}

/// The replication factor and quorums in force, next to the configured
/// ones: smaller when the cluster has fewer placement members than N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationStatus {
    /// Configured N.
    pub replicas: usize,
    /// Configured W.
    pub write_quorum: usize,
    /// Configured R.
    pub read_quorum: usize,
    /// N in force: `min(N, placement members)`.
    pub effective_replicas: usize,
    /// W in force: `min(W, effective N)`.
    pub effective_write_quorum: usize,
    /// R in force: `min(R, effective N)`.
    pub effective_read_quorum: usize,
}

impl ReplicationStatus {
    /// Whether the cluster is too small for the configured N.
    pub fn is_reduced(&self) -> bool {
        self.effective_replicas < self.replicas
    }
}

/// Per-call options for writes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use gridkv::replication::WriteOptions;
///
/// let all = WriteOptions::default().quorum(3).timeout(Duration::from_millis(200));
/// assert_eq!(all.quorum, Some(3));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Owners that must apply the write (default the node's W; capped at
    /// the effective N).
    pub quorum: Option<usize>,
    /// How long the call may take (default the node's timeout).
    pub timeout: Option<Duration>,
    /// A sloppy quorum ([`WriteOptions::sloppy`]). Default off.
    pub sloppy: bool,
    /// Expire the value this long after the write (default: never).
    /// Deletes refuse a TTL.
    pub ttl: Option<Duration>,
    /// Expire the value at this time, in milliseconds since the Unix epoch
    /// (the cluster's time): Redis's `EXAT`/`PXAT`. Not with `ttl`; deletes
    /// refuse it.
    pub expires_at_ms: Option<u64>,
    /// The consistency level to wait for (default the node's write level,
    /// or its W). Not with `quorum`.
    pub consistency: Option<ConsistencyLevel>,
}

impl WriteOptions {
    /// Waits for the owners consistency level `level` names.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::replication::WriteOptions;
    /// use gridkv::ConsistencyLevel;
    ///
    /// let opts = WriteOptions::default().consistency(ConsistencyLevel::EachQuorum);
    /// assert_eq!(opts.consistency, Some(ConsistencyLevel::EachQuorum));
    /// ```
    pub fn consistency(mut self, level: ConsistencyLevel) -> Self {
        self.consistency = Some(level);
        self
    }

    /// The options of the read a read-modify-write makes before it
    /// writes with these: the same deadline, and a level that meets the
    /// write's (`EACH_QUORUM` reads as `LOCAL_QUORUM`).
    pub(crate) fn matching_read(&self) -> ReadOptions {
        ReadOptions {
            timeout: self.timeout,
            consistency: self.consistency.map(|l| match l {
                ConsistencyLevel::EachQuorum => ConsistencyLevel::LocalQuorum,
                l => l,
            }),
            quorum: self.quorum,
            ..ReadOptions::default()
        }
    }

    /// A sloppy quorum, weaker than the default strict one: for each
    /// designated owner known to be down, the next reachable node on the
    /// ring past the key's owners keeps the write as a hint and delivers it
    /// when the owner is back, and its acknowledgement counts towards W.
    /// The write then succeeds while fewer than W owners are up, but until
    /// the hints are delivered fewer than W owners hold it: a read may miss
    /// it, and it is lost if a stand-in fails first, if the owners stay
    /// away longer than the hint lifetime (`hint_ttl`, capped below half
    /// the tombstone grace period), or if they are removed from the ring
    /// (hints go only to the owner they were kept for; the new owners fill
    /// from the surviving copies). Stand-ins count only among the current
    /// owners; while the ring changes, the quorums that guard readers with
    /// another view are still strict.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::replication::WriteOptions;
    ///
    /// assert!(WriteOptions::default().sloppy().sloppy);
    /// assert!(!WriteOptions::default().sloppy);
    /// ```
    pub fn sloppy(mut self) -> Self {
        self.sloppy = true;
        self
    }

    /// Expires the written value after `ttl`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::WriteOptions;
    ///
    /// let opts = WriteOptions::default().ttl(Duration::from_secs(30));
    /// assert_eq!(opts.ttl, Some(Duration::from_secs(30)));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Expires the value at `ms` since the Unix epoch
    /// ([`WriteOptions::expires_at_ms`]).
    pub fn expire_at_ms(mut self, ms: u64) -> Self {
        self.expires_at_ms = Some(ms);
        self
    }

    /// Requires `w` owners to apply the write.
    pub fn quorum(mut self, w: usize) -> Self {
        self.quorum = Some(w);
        self
    }

    /// Fails with [`Error::Timeout`] after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Per-call options for reads.
///
/// # Examples
///
/// ```
/// use gridkv::replication::ReadOptions;
///
/// let fast = ReadOptions::local();
/// assert!(fast.local);
/// assert_eq!(ReadOptions::default().quorum(3).quorum, Some(3));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Owners that must answer (default the node's R; capped at the
    /// effective N).
    pub quorum: Option<usize>,
    /// How long the call may take (default the node's timeout).
    pub timeout: Option<Duration>,
    /// Serve from the local store with no network when this node is an
    /// owner that serves reads; otherwise a read with R = 1. Weaker than a
    /// quorum read: it may miss the latest acknowledged write.
    pub local: bool,
    /// The consistency level to wait for (default the node's read level,
    /// or its R). Not with `quorum`; `EACH_QUORUM` is refused.
    pub consistency: Option<ConsistencyLevel>,
}

impl ReadOptions {
    /// An explicit local read (see [`ReadOptions::local`] the field).
    pub fn local() -> Self {
        Self {
            local: true,
            ..Self::default()
        }
    }

    /// Requires `r` owners to answer.
    pub fn quorum(mut self, r: usize) -> Self {
        self.quorum = Some(r);
        self
    }

    /// Waits for the owners consistency level `level` names.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::replication::ReadOptions;
    /// use gridkv::ConsistencyLevel;
    ///
    /// let opts = ReadOptions::default().consistency(ConsistencyLevel::LocalOne);
    /// assert_eq!(opts.consistency, Some(ConsistencyLevel::LocalOne));
    /// ```
    pub fn consistency(mut self, level: ConsistencyLevel) -> Self {
        self.consistency = Some(level);
        self
    }

    /// Fails with [`Error::Timeout`] after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Why a data operation failed.
///
/// A failed **write** is indeterminate: fewer than the required owners are
/// known to have applied it, but some may have, and the value may appear
/// later (by read repair or anti-entropy). Retry with the same intent, or
/// read to find out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Too few owners answered (reads) or applied the write (writes).
    #[error("quorum not reached: {answered} of {required} required owners")]
    QuorumNotReached {
        /// Owners that answered (or applied).
        answered: usize,
        /// Owners required.
        required: usize,
    },
    /// The deadline passed before enough owners answered.
    #[error("timed out with {answered} of {required} required owners")]
    Timeout {
        /// Owners that answered (or applied) in time.
        answered: usize,
        /// Owners required.
        required: usize,
    },
    /// Owners shed the request because they (or the connections to them)
    /// are overloaded, and had they taken it the quorum would have been
    /// met: overload, not missing owners, is why it failed. Retry later,
    /// with backoff. For a write this is indeterminate like any failure:
    /// the owners that did apply it keep it.
    #[error("backpressure: owners are overloaded; retry later")]
    Backpressure,
    /// The key is empty or too long.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The value is longer than the store accepts.
    #[error("value is {len} bytes, the maximum is {max}")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A per-call option is out of range.
    #[error("invalid option: {0}")]
    InvalidOptions(&'static str),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The node does not serve data calls yet (it has not joined, the
    /// cluster is still forming, or its ring has fewer members than the
    /// quorums need) and did not within the call's deadline. Nothing was
    /// read or written: retry later.
    #[error("not ready: {missing}")]
    NotReady {
        /// What is missing, in words.
        missing: String,
    },
    /// The operation needs a timestamp past one stamped by a clock further
    /// ahead of this node's than the drift bound allows (an expiry change
    /// of a value whose last change came from such a clock, or a write an
    /// owner holding such a version superseded, which would have to be
    /// re-stamped past it). Nothing was stamped past the bound; a write may
    /// have reached some owners, as any failed write.
    #[error("clock drift: {0}")]
    ClockDrift(String),
    /// This node restarted moments ago and stamps no write until its clock
    /// is past every version its previous run may have stamped: it learns
    /// the cluster's clock from the members as it joins, or, while a
    /// member is down, waits until the drift bound has passed since it
    /// started. A write waits for that within its deadline; this error
    /// says the wait would be longer. Nothing was written: retry after
    /// `remaining_ms`, or write through another node.
    #[error(
        "restart barrier: this node restarted and stamps no write until its clock \
         passes its previous run's; {remaining_ms} ms left at most"
    )]
    RestartBarrier {
        /// How long the barrier holds at most.
        remaining_ms: u64,
    },
    /// This node's clock is further from the median of the members it
    /// reaches than the bound allows (measured on membership round trips,
    /// over several samples, net of their uncertainty), so it coordinates
    /// no write until its clock is back within the bound. It still serves
    /// reads and stores writes other nodes coordinate. Nothing was
    /// written: write through another node, and fix this node's clock.
    #[error(
        "clock offset: this node's clock is {offset_ms:+} ms from the cluster's median \
         (at least {distance_ms} ms off, bound {bound_ms} ms); it coordinates no writes \
         until its clock is back within the bound"
    )]
    ClockOffset {
        /// This node's offset from the median, ms (positive: ahead).
        offset_ms: i64,
        /// At least how far off it is, given the measurements' uncertainty.
        distance_ms: u64,
        /// The bound (`ConfigBuilder::max_clock_offset`).
        bound_ms: u64,
    },
    /// A read-modify-write (`GridKv::append`, `GridKv::take`, ...) found
    /// the key changed between its read and its write on every attempt:
    /// other writers keep changing it. Its last write may have reached
    /// some owners (as any failed write); retry later.
    #[error("contended: the key changed between read and write {attempts} times; retry")]
    Contended {
        /// How many times it read and tried to write.
        attempts: u32,
    },
    /// An increment of a key whose value is not a decimal integer in the
    /// range of `i64` (nothing was written).
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// An increment whose result would pass the range of `i64` (nothing
    /// was written).
    #[error("increment or decrement would overflow")]
    Overflow,
    /// A flush (`GridKv::flush`) that some members did not apply (they
    /// were down or did not answer in time): the others did. Those named
    /// learn of it from anti-entropy once they are back; until then they
    /// may serve what they held. Retry to make sure.
    #[error("flush not applied by {}: the other members applied it; retry once they are back", missing.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", "))]
    FlushIncomplete {
        /// The members that did not apply it.
        missing: Vec<crate::id::NodeId>,
    },
    /// A counter incremented through more node runs than it keeps slots
    /// for: reset it (`SET` or delete it) to count again.
    #[error("the counter has {slots} slots, the most it keeps: reset it with SET or DEL")]
    CounterFull {
        /// The bound.
        slots: usize,
    },
}

impl Error {
    /// The error a caller sees for a key or value the store refused.
    pub(crate) fn from_store(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::ValueTooLarge { len, max } => {
                Error::ValueTooLarge { len, max }
            }
            other => Error::InvalidKey(other.to_string()),
        }
    }
}
