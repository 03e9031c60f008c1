//! One statistics snapshot of a node and its RESP server, taken once per
//! request and rendered two ways: as `INFO` text ([`crate::info`]) and as
//! Prometheus text for `/metrics` ([`crate::metrics`]). Both read the same
//! figures, so they cannot disagree about a moment.

use std::sync::Arc;
use std::time::Duration;

use gridkv::metrics::HistogramSnapshot;
use gridkv::net::TransportStats;
use gridkv::replication::{ReplicationStats, ReplicationStatus};
use gridkv::store::StoreStats;
use gridkv::{Liveness, Member, NodeId};

use crate::shared::{ServerCounters, Shared};

/// Everything `INFO` and `/metrics` show, read at one moment.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use gridkv_server::shared::Shared;
/// use gridkv_server::stats::Snapshot;
///
/// let node = gridkv::GridKv::start(gridkv::GridKv::builder("n1").build()?).await?;
/// let shared = Shared::new(node, 100);
/// let snapshot = Snapshot::take(&shared);
/// assert_eq!(snapshot.server.total_commands, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster address other nodes reach it on.
    pub cluster_addr: String,
    /// The RESP port (0 before the listener is bound).
    pub resp_port: u16,
    /// Time since the server started.
    pub uptime: Duration,
    /// Whether the node has joined and filled its ranges.
    pub ready: bool,
    /// The RESP server's counters.
    pub server: ServerCounters,
    /// Authentication and ACL refusals (issue 16).
    pub auth: crate::auth::AuthCounts,
    /// Most RESP clients at once.
    pub max_clients: usize,
    /// `--max-client-output`.
    pub max_client_output: u64,
    /// `--max-clients-memory`.
    pub max_clients_memory: u64,
    /// The local store's figures.
    pub store: StoreStats,
    /// Replication counters.
    pub replication: ReplicationStats,
    /// Replication factor and quorums, configured and in force.
    pub status: ReplicationStatus,
    /// The members this node knows.
    pub members: Arc<Vec<Member>>,
    /// This node as a member, if it knows itself yet.
    pub me: Option<Member>,
    /// Nodes that own ranges on the ring.
    pub placement_nodes: usize,
    /// Read latencies.
    pub reads: HistogramSnapshot,
    /// Write latencies.
    pub writes: HistogramSnapshot,
    /// Delete latencies.
    pub deletes: HistogramSnapshot,
    /// Reads answered from the local store without the network.
    pub local_reads: u64,
    /// Transport counters.
    pub transport: TransportStats,
    /// Smoothed round-trip time to each other member that has one.
    pub peer_rtts: Vec<PeerRtt>,
    /// This node's clock against the cluster's.
    pub clock: gridkv::ClockStatus,
    /// Indirect probes refused and links swept.
    pub membership: gridkv::MembershipStats,
    /// The cluster TLS material and its reloads; `None` when cluster
    /// traffic is plaintext.
    pub tls: Option<gridkv::TlsStatus>,
    /// The cross-datacenter streams that have writes waiting.
    pub remote_streams: Vec<gridkv::StreamStatus>,
}

/// The smoothed round-trip time to one peer (data lane).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRtt {
    /// The peer's id.
    pub id: NodeId,
    /// Its cluster address.
    pub addr: String,
    /// The smoothed RTT.
    pub srtt: Duration,
}

impl Snapshot {
    /// Reads every figure once.
    pub fn take(shared: &Shared) -> Snapshot {
        let node = &shared.node;
        let metrics = node.metrics();
        let members = node.members();
        let transport = node.transport();
        let node_id = node.id();
        let peer_rtts = members
            .iter()
            .filter(|m| m.identity.id != node_id)
            .filter_map(|m| {
                let srtt = transport.rtt(&m.identity.addr)?.srtt?;
                Some(PeerRtt {
                    id: m.identity.id,
                    addr: m.identity.addr.clone(),
                    srtt,
                })
            })
            .collect();
        Snapshot {
            me: node.member(&node_id),
            node_id,
            cluster_addr: node.advertised_addr().to_owned(),
            resp_port: shared.resp_addr.get().map_or(0, |a| a.port()),
            uptime: shared.started.elapsed(),
            ready: node.is_ready(),
            server: shared.stats.load(&shared.memory),
            auth: shared.acl.counters.load(),
            max_clients: shared.max_clients,
            max_client_output: shared.memory.max_client_output(),
            max_clients_memory: shared.memory.max_total(),
            store: node.store().stats(),
            replication: node.replication_stats(),
            remote_streams: node.remote_streams(),
            status: node.replication_status(),
            members,
            placement_nodes: node.ring().len(),
            reads: metrics.reads.snapshot(),
            writes: metrics.writes.snapshot(),
            deletes: metrics.deletes.snapshot(),
            local_reads: metrics
                .local_reads
                .load(std::sync::atomic::Ordering::Relaxed),
            transport: transport.stats(),
            peer_rtts,
            clock: node.clock(),
            membership: node.membership_stats(),
            tls: node.tls_status(),
        }
    }

    /// How many members have liveness `l`.
    pub fn members_in(&self, l: Liveness) -> usize {
        self.members.iter().filter(|m| m.liveness == l).count()
    }
}
