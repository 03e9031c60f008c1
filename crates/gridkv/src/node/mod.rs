//! The node handle: [`GridKv`], cheap to clone, and what it owns: the
//! transport, the membership view the driver publishes, the coordinator of
//! data calls, and the node's tasks.
//!
//! - `config`: [`Config`] and its checked builder.
//! - `error`: why a start or a join fails.
//! - `driver`: the task that runs SWIM over the transport.
//! - `formation`: which node forms a cluster that starts all at once, and
//!   whether the node serves data calls ([`Readiness`]).
//! - `data`: the data operations (`set`, `get`, `delete`, ...).
//! - `load`: get-or-load with single-flight (`try_get_with`).
//! - `scan`: walking every key of the cluster (`scan`, `count_keys`).
//! - `update`: read-modify-writes (`set_if_absent`, `take`, `append`,
//!   ...), each a read then a conditional write.
//! - `clock`: this node's clock against the cluster's ([`ClockStatus`]),
//!   and what the driver does about it.
//! - `security`: whether cluster traffic is TLS, and its reloads.
//! - `start_log`: what the node says as it starts.
//!
//! The node starts, and awaits on shutdown, tasks owned elsewhere: the
//! replica's request loop (`replication::serve`), the fill and
//! anti-entropy driver (`replication::fill_driver`), hint delivery
//! (`replication::hint_delivery`) and store maintenance
//! (`store::maintenance`).

mod clock;
mod config;
mod data;
mod driver;
mod error;
mod formation;
mod links;
mod load;
mod security;
mod scan;
mod start_log;
mod status;
pub use status::KeyOwner;
mod update;
#[cfg(feature = "internals")]
mod internals;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use clock::ClockStatus;
pub use config::{Config, ConfigBuilder, FillMode};
pub use data::Ttl;
pub use load::{LoadError, LoadOptions, LoaderError};
pub use update::{ExpiryChange, Found};
pub use error::{JoinError, StartError};
pub use formation::{Forming, Readiness};
pub use links::{MembershipStats, LINK_SWEEP_INTERVAL};

use crate::hlc::Hlc;
use crate::id::NodeId;
use crate::membership::{Identity, Member, MemberEvent, RingMembers, RingState, Swim};
use crate::net::Transport;
use crate::replication::fill_driver::FillDriver;
use crate::replication::fill_schedule::FillSchedule;
use crate::replication::hints::{HintLimits, Hints};
use crate::replication::in_flight::{Finisher, Keeper};
use crate::replication::rebalance::Rebalancer;
use crate::replication::Placement;
use crate::replication::{
    hint_delivery, serve, Coordinator, Error, Replica, ReplicationStatus,
};
use crate::ring::Ring;
use crate::store::Store;
use driver::Driver;
use formation::Formation;

/// Where the node is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Joining,
    Joined,
    Refused(String),
    Stopped,
}

enum Command {
    Fill,
    /// The TLS material was reloaded: sign a new claim with it.
    Resign,
    /// An operator's signed removal, to verify, apply and gossip.
    Remove(
        Box<crate::membership::signed::Removal>,
        tokio::sync::oneshot::Sender<Result<(), crate::membership::signed::RemovalError>>,
    ),
    StartLeaving,
    Leave(tokio::sync::oneshot::Sender<()>),
}

/// Capacity of each event subscription; a subscriber that falls further
/// behind gets [`broadcast::error::RecvError::Lagged`] and skips ahead.
pub const EVENT_CAPACITY: usize = 1024;

/// How long [`GridKv::shutdown`] waits for its leave to go out.
const LEAVE_FLUSH: Duration = Duration::from_millis(500);

/// The longest [`GridKv::shutdown`] waits for the members gaining this
/// node's ranges to hold its data before it leaves anyway.
pub const HANDOFF_TIMEOUT: Duration = Duration::from_secs(30);

struct Inner {
    id: NodeId,
    transport: Transport,
    members: ArcSwap<Vec<Member>>,
    ring: ArcSwap<Ring>,
    ring_members: ArcSwap<RingMembers>,
    events: broadcast::Sender<MemberEvent>,
    phase: watch::Sender<Phase>,
    commands: mpsc::Sender<Command>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Shared with the hint task, which holds it weakly.
    coordinator: Arc<Coordinator>,
    /// Set when the node stops: data calls check it without the
    /// cancellation token's lock.
    closed: std::sync::atomic::AtomicBool,
    metrics: crate::metrics::NodeMetrics,
    /// Whether data calls are served, and if not, what is missing (the
    /// driver publishes it).
    readiness: watch::Sender<Readiness>,
    /// `readiness == Serving`, read by every data call without a lock.
    serving: std::sync::atomic::AtomicBool,
    /// Set once a member owns ranges in this node's view (or it formed the
    /// cluster): the fill driver starts then.
    formed: watch::Sender<bool>,
    /// Started with no seeds other than itself.
    standalone: bool,
    /// How long a data call waits for the node to serve (see
    /// [`ConfigBuilder::ready_timeout`]).
    ready_timeout: Duration,
    /// The loads `try_get_with` runs now, by key.
    loads: load::Loads,
    /// This node's clock against the cluster's, as the driver last saw it.
    clock: clock::NodeClock,
    /// Indirect probes refused and links swept (see `links`).
    links: links::LinkCounters,
    /// Plaintext off loopback was asked for ([`ConfigBuilder::insecure`]).
    insecure: bool,
}

impl Inner {
    fn placement_view(&self) -> Arc<Placement> {
        self.coordinator.placement.load_full()
    }

    /// The replication in force. A node given seeds serves no data call
    /// until its ring holds max(W, R) members, so its W and R are never
    /// the ring-capped ones; a standalone node's are.
    fn status(&self) -> ReplicationStatus {
        let mut status = self.coordinator.status();
        if !self.standalone {
            status.effective_write_quorum = status.write_quorum;
            status.effective_read_quorum = status.read_quorum;
        }
        status
    }

    fn rebalancer(&self) -> Rebalancer {
        let c = &self.coordinator;
        Rebalancer {
            me: self.id,
            replicas: c.config.replicas,
            // Enough former owners that one holds every acknowledged
            // write: N - W + 1, W being the fewest owners a write reaches.
            sources: c.config.replicas + 1
                - c.config.write_consistency.map_or(c.config.write_quorum, |level| {
                    crate::replication::fewest_acknowledging(level, &c.config.placement())
                        .min(c.config.replicas)
                }),
            transport: self.transport.clone(),
            replica: c.replica.clone(),
            placement: c.placement.clone(),
            timeout: c.config.timeout,
            counters: c.counters.clone(),
            pace: crate::replication::rebalance::Pace::new(c.config.fill_rate),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: stop without a leave (like a crash);
        // the transport stops when its own last handle drops.
        self.cancel.cancel();
    }
}

/// A running GridKv node: membership, and the data operations (quorum
/// reads and writes over the key's owners).
///
/// Cheap to clone; every clone is the same node. Dropping the last clone
/// stops the node without announcing a leave (peers see it fail); call
/// [`GridKv::shutdown`] for a graceful leave.
///
/// # Examples
///
/// A two-node cluster on loopback:
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use gridkv::GridKv;
///
/// let a = GridKv::start(GridKv::builder("a").build()?).await?;
/// let b = GridKv::start(
///     GridKv::builder("b").seeds([a.local_addr().to_string()]).build()?,
/// ).await?;
/// b.ready().await?; // joined, ranges filled, normal
///
/// // Wait until both see both.
/// let mut events = a.subscribe();
/// while a.members().len() < 2 {
///     events.recv().await?;
/// }
/// assert!(a.members().iter().any(|m| m.id().as_str() == "b"));
///
/// // Written through one node, read through the other (N=3 is capped at
/// // the two members there are; W=2 and R=2 are not).
/// a.set("user:1", "alice").await?;
/// assert_eq!(b.get("user:1").await?.as_deref(), Some(&b"alice"[..]));
/// assert!(b.delete("user:1").await?);
/// assert_eq!(a.get("user:1").await?, None);
///
/// b.shutdown().await;
/// a.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct GridKv {
    inner: Arc<Inner>,
    /// Consistency levels this handle uses where a call names none
    /// ([`GridKv::with_consistency`]).
    levels: status::Levels,
}

impl std::fmt::Debug for GridKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridKv")
            .field("id", &self.inner.id)
            .field("addr", &self.inner.transport.advertised_addr())
            .finish_non_exhaustive()
    }
}

impl GridKv {
    /// A config builder for a node called `node_id`.
    pub fn builder(node_id: impl Into<String>) -> ConfigBuilder {
        ConfigBuilder::new(node_id.into())
    }

    /// Binds the transport and starts membership. Returns at once; the node
    /// joins through its seeds in the background, retrying until it
    /// succeeds (see [`GridKv::joined`]). A node with no seeds (other than
    /// itself) is a one-node cluster.
    ///
    /// Must be called within a tokio runtime with time and I/O enabled.
    ///
    /// # Errors
    ///
    /// [`StartError`]: an invalid config or a listen address that cannot
    /// be bound.
    pub async fn start(config: Config) -> Result<GridKv, StartError> {
        Self::launch(config, Arc::new(crate::net::io::Tcp::default())).await
    }

    /// [`GridKv::start`] over a given socket layer.
    async fn launch(
        config: Config,
        network: Arc<dyn crate::net::io::Network>,
    ) -> Result<GridKv, StartError> {
        let (transport, incoming) = Transport::bind_with(config.transport.clone(), network).await?;
        let mut identity = Identity::new(
            config.node_id,
            config.generation,
            transport.advertised_addr().to_owned(),
        );
        identity.datacenter = config.datacenter.clone();
        identity.rack = config.rack.clone();
        let origin = Instant::now();
        let mut swim = Swim::new(
            identity,
            config.membership.clone(),
            config.seeds.clone(),
            config.rng_seed,
            Duration::ZERO,
        )?;
        // With TLS, membership is signed with the certificate's key.
        security::sign_membership(&mut swim, &config)?;
        let store = Arc::new(Store::with_clock(
            config.store.clone(),
            config.clock.clone(),
        )?);
        let hlc = Arc::new(
            Hlc::new(config.node_id, config.generation, config.clock.clone())
                .with_max_drift(config.max_clock_offset),
        );
        let clock_gate = Arc::new(crate::replication::clock_gate::ClockGate::new(hlc.clone()));
        let hints = Arc::new(Hints::new(HintLimits {
            max_hints: config.replication.max_hints,
            max_bytes: config.replication.max_hint_bytes,
            ttl: config
                .replication
                .hint_ttl
                .min(config.store.tombstone_grace / 2),
        }));
        let counters: Arc<crate::replication::stats::Counters> = Arc::default();
        let replica = Arc::new(Replica {
            store,
            hlc: hlc.clone(),
            hints: hints.clone(),
            counters: counters.clone(),
            serves_reads: std::sync::atomic::AtomicBool::new(false),
            stopped: std::sync::atomic::AtomicBool::new(false),
            holdings: crate::replication::Holdings::new(
                config.node_id,
                config.replication.replicas,
            ),
            suspects: Default::default(),
            leases: Default::default(),
        });
        let placement = Arc::new(ArcSwap::from_pointee(Placement::empty()));
        let cancel = CancellationToken::new();
        let keeper = Keeper::new(hints.clone(), counters.clone());
        let (finisher, finishing) = Finisher::start(keeper, cancel.clone());
        let coordinator = Coordinator {
            finisher,
            me: config.node_id,
            transport: transport.clone(),
            replica: replica.clone(),
            config: config.replication.clone(),
            placement: placement.clone(),
            counters,
            hints,
            clock_gate: clock_gate.clone(),
            peers: Default::default(),
            slots: Default::default(),
            remote: Default::default(),
        };
        let formation = Formation::new(
            config.node_id,
            transport.advertised_addr(),
            &config.seeds,
            config.membership.probe_interval * 3,
            config.membership.join_retry * 10,
        );
        let standalone = formation.standalone();
        let needed = formation::needed_owners(
            standalone,
            config.replication.write_quorum,
            config.replication.read_quorum,
        );
        start_log::log_start(&config, &formation, needed);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (phase, _) = watch::channel(Phase::Joining);
        let (commands, command_rx) = mpsc::channel(16);
        let (changes_tx, changes_rx) = watch::channel(0u64);
        let inner = Arc::new(Inner {
            loads: Default::default(),
            id: config.node_id,
            transport: transport.clone(),
            members: ArcSwap::from_pointee(swim.members().cloned().collect()),
            ring: ArcSwap::from_pointee(Ring::empty()),
            ring_members: ArcSwap::from_pointee(RingMembers::default()),
            events,
            phase,
            commands,
            cancel,
            tasks: Mutex::new(Vec::new()),
            coordinator: Arc::new(coordinator),
            closed: std::sync::atomic::AtomicBool::new(false),
            metrics: crate::metrics::NodeMetrics::default(),
            readiness: watch::Sender::new(Readiness::Joining {
                seeds: formation.seeds(),
            }),
            serving: std::sync::atomic::AtomicBool::new(false),
            formed: watch::Sender::new(false),
            standalone,
            ready_timeout: config.ready_timeout,
            clock: clock::NodeClock::default(),
            links: Default::default(),
            insecure: config.insecure,
        });
        let driver = Driver {
            swim,
            origin,
            transport,
            shared: Arc::downgrade(&inner),
            cancel: inner.cancel.clone(),
            placement,
            changes: changes_tx,
            clock: clock::ClockKeeper {
                wall: config.clock.clone(),
                hlc,
                gate: clock_gate,
                checked: None,
            },
            restart_noted: false,
            formation,
            automatic: config.fill == FillMode::Automatic,
            fill_requested: false,
            needed,
            logged: None,
            links: links::LinkSweep::new(&config.seeds),
        };
        let membership = tokio::spawn(driver.run(incoming.control, command_rx));
        let maintenance =
            crate::store::maintenance::spawn(replica.store.clone(), inner.cancel.clone());
        let data = serve::spawn(incoming.data, replica, inner.cancel.clone());
        let rebalance = spawn_fill(&inner, &config, changes_rx);
        let hints = hint_delivery::spawn(Arc::downgrade(&inner.coordinator), inner.cancel.clone());
        let c = Arc::downgrade(&inner.coordinator);
        let vouch = crate::replication::vouch::spawn(c.clone(), inner.cancel.clone());
        let remote = crate::replication::remote_sender::spawn(c, inner.cancel.clone());
        inner
            .tasks
            .lock()
            .extend([membership, data, maintenance, rebalance, hints, vouch, remote, finishing]);
        Ok(GridKv {
            inner,
            levels: status::Levels::default(),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The address the transport listens on (the real port when the config
    /// said 0).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.inner.transport.local_addr()
    }

    /// The address peers dial.
    pub fn advertised_addr(&self) -> &str {
        self.inner.transport.advertised_addr()
    }

    /// Every known member (this node first), as of the last change.
    pub fn members(&self) -> Arc<Vec<Member>> {
        self.inner.members.load_full()
    }

    /// One member's state.
    pub fn member(&self, id: &NodeId) -> Option<Member> {
        self.members().iter().find(|m| m.id() == *id).cloned()
    }

    /// Events from now on. Each subscription buffers up to
    /// `EVENT_CAPACITY` (1,024) events; a slower subscriber skips ahead with
    /// `Lagged` and can re-read [`GridKv::members`].
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.inner.events.subscribe()
    }

    /// Waits until the node has joined a cluster (at once for a node with
    /// no seeds).
    ///
    /// # Errors
    ///
    /// [`JoinError::DuplicateId`] when a seed refused the join (the node has
    /// stopped), [`JoinError::ShuttingDown`] when it stopped first.
    pub async fn joined(&self) -> Result<(), JoinError> {
        let mut phase = self.inner.phase.subscribe();
        loop {
            match &*phase.borrow_and_update() {
                Phase::Joined => return Ok(()),
                Phase::Refused(holder) => {
                    return Err(JoinError::DuplicateId {
                        id: self.inner.id,
                        holder: holder.clone(),
                    })
                }
                Phase::Stopped => return Err(JoinError::ShuttingDown),
                Phase::Joining => {}
            }
            if phase.changed().await.is_err() {
                return Err(JoinError::ShuttingDown);
            }
        }
    }

    /// Whether this node is ready: it serves data calls (see
    /// [`GridKv::readiness`]), it is normal on the ring with its ranges
    /// filled, and its clock is within the bound of the cluster's (see
    /// [`GridKv::clock`]; a node beyond it serves reads but coordinates no
    /// write). What `/health` reports. A node that is not ready is still
    /// alive: it answers probes and stores what others coordinate.
    pub fn is_ready(&self) -> bool {
        self.is_serving()
            && self.inner.placement_view().local_serves_reads
            && self.inner.coordinator.clock_gate.fenced().is_none()
    }

    /// Whether data calls run now, rather than wait (see
    /// [`GridKv::readiness`]). A node that is still filling its own ranges
    /// may already serve: any node coordinates, over the owners that are
    /// ready.
    pub fn is_serving(&self) -> bool {
        self.inner.serving.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether data calls run, and if not, what is missing: the node has
    /// not reached a seed, the cluster is still forming, or the ring has
    /// fewer members than the quorums need.
    ///
    /// A node given seeds serves only once it has joined a formed cluster
    /// whose ring holds at least max(W, R) members, and two: it never acts
    /// as a cluster of its own, nor cuts W or R down to the ring. A node
    /// started with no seeds is a cluster of one at once, with N, W and R
    /// capped at what one node can give ([`GridKv::replication_status`]
    /// says so). Data calls made while the node does not serve wait for
    /// it up to their deadline ([`ConfigBuilder::ready_timeout`] unless
    /// the call gives its own), then fail with [`Error::NotReady`].
    pub fn readiness(&self) -> Readiness {
        self.inner.readiness.borrow().clone()
    }

    /// Waits until [`GridKv::is_ready`]: the node serves data calls, has
    /// joined and filled its ranges.
    ///
    /// # Errors
    ///
    /// As [`GridKv::joined`].
    pub async fn ready(&self) -> Result<(), JoinError> {
        self.joined().await?;
        let mut events = self.subscribe();
        while !self.is_ready() {
            if self.is_closed() {
                return Err(JoinError::ShuttingDown);
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
        }
        Ok(())
    }

    /// With [`FillMode::Manual`]: this node's ranges are filled, so it goes
    /// from joining to normal and starts serving reads.
    pub async fn mark_filled(&self) {
        let _ = self.inner.commands.send(Command::Fill).await;
    }

    /// Leaves gracefully and stops: the node announces it is leaving,
    /// waits until the members that gain its ranges hold its data (compared
    /// by range digests; they pull it), is recorded as left (not failed),
    /// and releases every task and socket. Bounded in time: at most
    /// `HANDOFF_TIMEOUT` (30 s) for the handoff, about half a second for the
    /// leave to go out, plus the transport's shutdown.
    pub async fn shutdown(&self) {
        if self
            .inner
            .commands
            .send(Command::StartLeaving)
            .await
            .is_ok()
        {
            let deadline = Instant::now() + HANDOFF_TIMEOUT;
            // A rebalancer of its own, used only for the digest checks.
            let handoff = self.inner.rebalancer();
            while Instant::now() < deadline && !self.inner.cancel.is_cancelled() {
                let leaving = self
                    .inner
                    .placement_view()
                    .members
                    .get(&self.inner.id)
                    .is_some_and(|m| m.ring == RingState::Leaving);
                if leaving && handoff.handed_off().await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.inner.commands.send(Command::Leave(tx)).await.is_ok() {
            let _ = tokio::time::timeout(LEAVE_FLUSH * 2, rx).await;
        }
        self.stop().await;
    }

    /// Stops at once without announcing a leave: to the cluster this looks
    /// like a crash (tests, fatal errors).
    pub async fn kill(&self) {
        self.stop().await;
    }

    async fn stop(&self) {
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.stop_serving();
        self.inner
            .coordinator
            .replica
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
        self.inner.cancel.cancel();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
        self.inner.transport.shutdown().await;
        self.inner.phase.send_replace(Phase::Stopped);
    }

    /// Marks the node stopped for data calls: those waiting for it to
    /// serve fail at once.
    fn stop_serving(&self) {
        self.inner
            .serving
            .store(false, std::sync::atomic::Ordering::Release);
        self.inner.readiness.send_replace(Readiness::Stopped);
    }

    /// This node's store: live keys, tombstones, bytes, evictions.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = gridkv::GridKv::start(gridkv::GridKv::builder("s1").build()?).await?;
    /// node.ready().await?;
    /// node.set("k", "v").await?;
    /// assert_eq!(node.store_stats().live, 1);
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn store_stats(&self) -> crate::store::StoreStats {
        self.inner.coordinator.replica.store.stats()
    }

    /// Whether the node was started with no seeds other than itself: a
    /// cluster of its own that others may join through it.
    pub fn is_standalone(&self) -> bool {
        self.inner.standalone
    }

    /// Waits until the node serves data calls, up to `timeout` (the
    /// node's [`ConfigBuilder::ready_timeout`] if `None`). Every data call
    /// passes here first; once the node serves, it costs one atomic load.
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`] naming what is still missing after the wait;
    /// [`Error::ShuttingDown`] if the node stops.
    pub(crate) async fn until_serving(&self, timeout: Option<Duration>) -> Result<(), Error> {
        if self.is_serving() {
            return Ok(());
        }
        // Boxed: the slow path's state stays out of every caller's future.
        Box::pin(self.wait_serving(timeout.unwrap_or(self.inner.ready_timeout))).await
    }

    async fn wait_serving(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut readiness = self.inner.readiness.subscribe();
        loop {
            let missing = match &*readiness.borrow_and_update() {
                Readiness::Serving => return Ok(()),
                Readiness::Stopped => return Err(Error::ShuttingDown),
                other => other.to_string(),
            };
            match tokio::time::timeout_at(deadline, readiness.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::ShuttingDown),
                Err(_) => return Err(Error::NotReady { missing }),
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.inner.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// This node's operation latencies (see [`NodeMetrics`](crate::NodeMetrics)).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = gridkv::GridKv::start(gridkv::GridKv::builder("m1").build()?).await?;
    /// node.ready().await?;
    /// node.set("k", "v").await?;
    /// node.get("k").await?;
    /// assert_eq!(node.metrics().writes.snapshot().count, 1);
    /// assert_eq!(node.metrics().reads.snapshot().count, 1);
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn metrics(&self) -> &crate::metrics::NodeMetrics {
        &self.inner.metrics
    }
}

/// Starts the fill and anti-entropy driver once a member owns ranges in
/// this node's view (or it formed the cluster itself): before that there
/// is nothing to fill from, and a pass would "complete" against an empty
/// ring. A complete fill of a joining node marks it filled unless the
/// config asks for [`FillMode::Manual`].
fn spawn_fill(inner: &Inner, config: &Config, changes: watch::Receiver<u64>) -> JoinHandle<()> {
    let commands = inner.commands.clone();
    let automatic = config.fill == FillMode::Automatic;
    let fill = FillDriver {
        rebalancer: inner.rebalancer(),
        schedule: FillSchedule::new(
            config.replication.anti_entropy_interval,
            config.rng_seed ^ 0xa5a5,
        ),
        changes,
        on_filled: move || {
            let commands = commands.clone();
            async move {
                if automatic {
                    let _ = commands.send(Command::Fill).await;
                }
            }
        },
        cancel: inner.cancel.clone(),
    };
    let (formed, cancel) = (inner.formed.subscribe(), inner.cancel.clone());
    tokio::spawn(async move {
        if until_formed(formed, &cancel).await {
            fill.run().await;
        }
    })
}

/// Waits until a member owns ranges in this node's view; `false` if the
/// node stopped first.
async fn until_formed(mut formed: watch::Receiver<bool>, cancel: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => false,
        result = formed.wait_for(|formed| *formed) => result.is_ok(),
    }
}
