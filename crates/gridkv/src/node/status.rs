//! What a node reports of itself (stats, replication in force, peers),
//! and the consistency levels one handle uses.

use super::GridKv;
use crate::id::NodeId;
use crate::keyspace::key_hash;
use crate::membership::{Liveness, RingState};
use crate::ring::Location;
use crate::replication::{
    Consistency, ConsistencyLevel, Guarantee, ReadOptions, ReplicationStatus, WriteOptions,
};

/// The levels a handle uses where a call names neither a level nor a
/// quorum; `None`: the node's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Levels {
    read: Option<ConsistencyLevel>,
    write: Option<ConsistencyLevel>,
}

/// One owner of a key, as [`GridKv::owners`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// The owner's id.
    pub id: NodeId,
    /// Where it runs.
    pub location: Location,
    /// Whether it is reachable, as the failure detector sees it (`None`:
    /// not in this node's member table).
    pub liveness: Option<Liveness>,
    /// What it does on the ring (`None`: not in the member table).
    pub ring: Option<RingState>,
}

impl GridKv {
    /// The owners of `key` on this node's placement ring, in preference
    /// order (the primary first): its replicas only, never the stand-ins a
    /// sloppy write may use. With copies per datacenter, each datacenter's
    /// share of them.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use gridkv::GridKv;
    ///
    /// let node = GridKv::start(GridKv::builder("o1").datacenter("eu").build()?).await?;
    /// node.ready().await?;
    /// let owners = node.owners("user:42");
    /// assert_eq!(owners.len(), 1);
    /// assert_eq!((owners[0].id, owners[0].location.datacenter.as_str()), (node.id(), "eu"));
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn owners(&self, key: impl AsRef<[u8]>) -> Vec<KeyOwner> {
        let p = self.inner.coordinator.placement.load_full();
        let n = self.inner.coordinator.config.replicas;
        p.ring
            .preference_list(key_hash(key.as_ref()), n)
            .iter()
            .map(|id| {
                let member = p.members.get(id);
                KeyOwner {
                    id: *id,
                    location: p.ring.location(id).cloned().unwrap_or_default(),
                    liveness: member.map(|m| m.liveness),
                    ring: member.map(|m| m.ring),
                }
            })
            .collect()
    }

    /// How copies are placed: a count on any members, or counts per
    /// datacenter.
    pub fn replica_placement(&self) -> crate::ring::ReplicaPlacement {
        self.inner.coordinator.config.placement()
    }

    /// The cross-datacenter streams with writes queued or in flight: per
    /// remote datacenter, the writes waiting and the lag (age of the
    /// oldest write not yet acknowledged). Empty when nothing is behind.
    pub fn remote_streams(&self) -> Vec<crate::replication::StreamStatus> {
        self.inner.coordinator.remote.status()
    }

    /// This node's location: its datacenter and rack.
    pub fn location(&self) -> Location {
        self.member(&self.id())
            .map(|m| m.identity.location())
            .unwrap_or_default()
    }
    /// A handle on the same node whose calls wait for consistency level
    /// `level` where they name neither a level nor a quorum: what a RESP
    /// connection's `GRIDKV.CONSISTENCY` sets. Reads at `EACH_QUORUM`
    /// (writes only) read at `LOCAL_QUORUM`, which meets such writes.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use gridkv::{ConsistencyLevel, GridKv};
    ///
    /// let node = GridKv::start(GridKv::builder("l1").build()?).await?;
    /// node.ready().await?;
    /// let all = node.with_consistency(ConsistencyLevel::All);
    /// all.set("k", "v").await?;
    /// assert_eq!(all.consistency_levels().0, Some(ConsistencyLevel::All));
    /// assert_eq!(node.consistency_levels(), (None, None));
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_consistency(&self, level: ConsistencyLevel) -> GridKv {
        let read = match level {
            ConsistencyLevel::EachQuorum => ConsistencyLevel::LocalQuorum,
            level => level,
        };
        GridKv {
            inner: self.inner.clone(),
            levels: Levels {
                read: Some(read),
                write: Some(level),
            },
        }
    }

    /// The levels in force where a call names none, as `(write, read)`:
    /// this handle's ([`GridKv::with_consistency`]), else the node's
    /// (`None`: the numeric W or R).
    pub fn consistency_levels(&self) -> (Option<ConsistencyLevel>, Option<ConsistencyLevel>) {
        let config = &self.inner.coordinator.config;
        (
            self.levels.write.or(config.write_consistency),
            self.levels.read.or(config.read_consistency),
        )
    }

    /// What the node's default write and read levels (or W and R)
    /// guarantee a reader.
    pub fn guarantee(&self) -> Guarantee {
        self.inner.coordinator.config.guarantee()
    }

    /// `options` with this handle's write level, if it has one and the
    /// call names neither a level nor a quorum.
    pub(super) fn levelled_write(&self, mut options: WriteOptions) -> WriteOptions {
        if options.quorum.is_none() && options.consistency.is_none() {
            options.consistency = self.levels.write;
        }
        options
    }

    /// `options` with this handle's read level (see
    /// [`GridKv::levelled_write`]).
    pub(super) fn levelled_read(&self, mut options: ReadOptions) -> ReadOptions {
        if options.quorum.is_none() && options.consistency.is_none() {
            options.consistency = self.levels.read;
        }
        options
    }

    /// This node's cluster traffic: connections, frames and bytes, requests
    /// and their failures, per the transport's counters.
    pub fn transport_stats(&self) -> crate::net::TransportStats {
        self.inner.transport.stats()
    }

    /// This node's replication counters.
    pub fn replication_stats(&self) -> crate::replication::ReplicationStats {
        let c = &self.inner.coordinator;
        let mut stats = c.counters.snapshot();
        stats.hints_pending = c.hints.len() as u64;
        stats.peers_avoided = c.peers.avoided_count() as u64;
        stats.remote_sent = c.remote.sent.load(std::sync::atomic::Ordering::Relaxed);
        stats.remote_hinted = c.remote.hinted.load(std::sync::atomic::Ordering::Relaxed);
        stats.remote_overflowed = c.remote.overflowed.load(std::sync::atomic::Ordering::Relaxed);
        stats
    }

    /// What this node's own data requests taught it about each peer it
    /// asked: round trip, failures in a row, and whether it avoids the
    /// peer now (it could not reach it, whatever membership says; see
    /// [`PeerHealth`](crate::PeerHealth)).
    ///
    /// ```
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = gridkv::GridKv::start(gridkv::GridKv::builder("n1").build()?).await?;
    /// assert!(node.peer_health().is_empty()); // no peer asked yet
    /// # Ok(()) }
    /// ```
    pub fn peer_health(&self) -> Vec<crate::PeerHealth> {
        self.inner.coordinator.peers.snapshot()
    }

    /// The replication factor and quorums in force: N is smaller than
    /// configured while the ring has fewer members than N
    /// ([`ReplicationStatus::is_reduced`]). W and R are the configured ones
    /// for a node given seeds (it waits for enough members instead); a
    /// node started with no seeds caps them at its ring.
    pub fn replication_status(&self) -> ReplicationStatus {
        self.inner.status()
    }

    /// The consistency the node's configuration asked for: strong (W + R >
    /// N, the default) or, only when asked by name, eventual.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use gridkv::{Consistency, GridKv, ReplicationConfig};
    ///
    /// let weak = ReplicationConfig { write_quorum: 1, read_quorum: 1, ..Default::default() };
    /// let config = GridKv::builder("c1")
    ///     .replication(weak)
    ///     .consistency(Consistency::Eventual)
    ///     .build()?;
    /// let node = GridKv::start(config).await?;
    /// assert_eq!(node.consistency(), Consistency::Eventual);
    /// // No seeds: a cluster of one, with N, W and R capped at one node.
    /// assert!(node.is_standalone());
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn consistency(&self) -> Consistency {
        self.inner.coordinator.config.consistency
    }
}
