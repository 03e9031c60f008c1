//! The node handle: [`GridKv`], its [`Config`], and the task that runs
//! membership over the transport.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hlc::{Clock, Hlc, SystemClock};
use crate::id::{Generation, NodeId};
use crate::membership::{
    Identity, Liveness, Member, MemberEvent, Output, RingMembers, RingState, Swim, SwimConfig,
};
use crate::net::{Inbound, Lane, Transport, TransportConfig, TransportError};
use crate::replication::coordinator::{Placement, WriteData};
use crate::replication::hints::{HintLimits, Hints};
use crate::replication::rebalance::Rebalancer;
use crate::replication::wire::{DataRequest, DataResponse, RefusalCode};
use crate::replication::{
    Coordinator, Error, ReadOptions, Replica, ReplicationConfig, ReplicationStatus, WriteOptions,
};
use crate::ring::Ring;
use crate::store::{Lookup, Store, StoreConfig};

/// A [`Config`] field that is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config `{field}`: {reason}")]
pub struct ConfigError {
    /// The field's name (as in [`ConfigBuilder`]'s methods).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Why [`GridKv::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The transport could not bind its listen address.
    #[error("cannot start the transport: {0}")]
    Transport(#[from] TransportError),
}

/// Why a node did not join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// A live member already uses this node's id; the node has stopped.
    #[error("node id {id} is already used by the live member at {holder}")]
    DuplicateId {
        /// This node's id.
        id: NodeId,
        /// The address of the member holding it.
        holder: String,
    },
    /// The node was shut down before it joined.
    #[error("the node shut down before joining")]
    ShuttingDown,
}

/// How a joining node's ranges get filled before it serves reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FillMode {
    /// Stream the ranges this node will own from their current owners,
    /// then become normal (see [`crate::replication`]'s rebalancing).
    #[default]
    Automatic,
    /// Stream as [`FillMode::Automatic`] does, but stay joining until
    /// [`GridKv::mark_filled`] is called.
    Manual,
}

/// A node's configuration; build it with [`GridKv::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id (stable across restarts).
    pub node_id: NodeId,
    /// This run's generation. Default: the wall clock at build time, so a
    /// restart is later.
    pub generation: Generation,
    /// The cluster's name; nodes of other clusters are refused.
    pub cluster: String,
    /// Where the cluster transport listens.
    pub listen: String,
    /// The address peers dial, if not the listen address.
    pub advertise: Option<String>,
    /// Seed addresses to join through (may include this node's own).
    pub seeds: Vec<String>,
    /// The datacenter label.
    pub datacenter: String,
    /// Membership timers.
    pub membership: SwimConfig,
    /// How the node's ranges are filled when it joins.
    pub fill: FillMode,
    /// Seeds the node's randomness (probe order, jitter), so a run replays.
    pub rng_seed: u64,
    /// Transport tuning; `cluster`, `node_id`, `generation`, `listen` and
    /// `advertise` are taken from this config.
    pub transport: TransportConfig,
    /// Replication factor, quorums and timeouts.
    pub replication: ReplicationConfig,
    /// The local store's bounds (key and value sizes, memory budget,
    /// tombstone grace).
    pub store: StoreConfig,
    /// The wall clock versions and expiries are read from (tests inject a
    /// skewed one).
    pub clock: Arc<dyn Clock>,
}

/// Builds a [`Config`], checking every field.
///
/// # Examples
///
/// ```
/// use gridkv::{GridKv, SwimConfig};
///
/// let config = GridKv::builder("node-1")
///     .cluster("prod")
///     .listen("127.0.0.1:0")
///     .seeds(["10.0.0.1:7946", "10.0.0.2:7946"])
///     .datacenter("eu-west-1a")
///     .membership(SwimConfig::wan())
///     .build()?;
/// assert_eq!(config.seeds.len(), 2);
///
/// let err = GridKv::builder("has space").build().unwrap_err();
/// assert_eq!(err.field, "node_id");
/// let err = GridKv::builder("n").listen("nowhere").build().unwrap_err();
/// assert_eq!(err.field, "listen");
/// # Ok::<(), gridkv::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder {
    node_id: String,
    generation: Option<Generation>,
    cluster: String,
    listen: String,
    advertise: Option<String>,
    seeds: Vec<String>,
    datacenter: String,
    membership: SwimConfig,
    fill: FillMode,
    rng_seed: Option<u64>,
    transport: Option<TransportConfig>,
    replication: ReplicationConfig,
    store: StoreConfig,
    clock: Arc<dyn Clock>,
}

impl ConfigBuilder {
    /// Replication factor and quorums (default N=3, W=2, R=2).
    pub fn replication(mut self, config: ReplicationConfig) -> Self {
        self.replication = config;
        self
    }

    /// The local store's bounds.
    pub fn store(mut self, config: StoreConfig) -> Self {
        self.store = config;
        self
    }

    /// The wall clock for versions and expiries (default the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The cluster name (default `gridkv`).
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.cluster = name.into();
        self
    }

    /// The listen address, `host:port` (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// The advertised address, when peers must dial another address than
    /// the listen one (required for `0.0.0.0`).
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// Seed addresses (`host:port`; DNS names are resolved on every
    /// attempt).
    pub fn seeds<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.seeds = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// The datacenter label (default `default`).
    pub fn datacenter(mut self, dc: impl Into<String>) -> Self {
        self.datacenter = dc.into();
        self
    }

    /// Membership timers (default [`SwimConfig::lan`]).
    pub fn membership(mut self, config: SwimConfig) -> Self {
        self.membership = config;
        self
    }

    /// How ranges are filled on join (default [`FillMode::Automatic`]).
    pub fn fill(mut self, mode: FillMode) -> Self {
        self.fill = mode;
        self
    }

    /// An explicit generation (tests, restores); default the wall clock.
    pub fn generation(mut self, generation: Generation) -> Self {
        self.generation = Some(generation);
        self
    }

    /// Seeds the node's randomness (default: from the generation).
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Transport tuning (its identity and address fields are overwritten).
    pub fn transport(mut self, config: TransportConfig) -> Self {
        self.transport = Some(config);
        self
    }

    /// Checks every field and builds the config.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid field.
    pub fn build(self) -> Result<Config, ConfigError> {
        let err = |field, reason: String| ConfigError { field, reason };
        let node_id = NodeId::new(&self.node_id).map_err(|e| err("node_id", e.to_string()))?;
        check_addr(&self.listen).map_err(|r| err("listen", r))?;
        if let Some(a) = &self.advertise {
            check_addr(a).map_err(|r| err("advertise", r))?;
        }
        for s in &self.seeds {
            check_addr(s).map_err(|r| err("seeds", format!("{s:?}: {r}")))?;
        }
        if self.datacenter.is_empty() || self.datacenter.len() > Identity::MAX_LABEL {
            return Err(err("datacenter", "must be 1 to 255 bytes".into()));
        }
        self.membership.validate().map_err(|e| ConfigError {
            field: e.field,
            reason: e.reason.to_owned(),
        })?;
        self.replication
            .validate()
            .map_err(|(field, reason)| err(field, reason.to_owned()))?;
        self.store.validate().map_err(|e| ConfigError {
            field: e.field,
            reason: e.reason,
        })?;
        let generation = self.generation.unwrap_or_else(Generation::now);
        let mut transport = self
            .transport
            .unwrap_or_else(|| TransportConfig::new(&self.cluster, node_id, generation));
        transport.cluster = self.cluster.clone();
        transport.node_id = node_id;
        transport.generation = generation;
        transport.listen = self.listen.clone();
        transport.advertise = self.advertise.clone();
        let rng_seed = self.rng_seed.unwrap_or(generation.get());
        transport.seed = rng_seed;
        transport.validate().map_err(|e| ConfigError {
            field: if e.field == "cluster" {
                "cluster"
            } else {
                e.field
            },
            reason: e.reason.to_string(),
        })?;
        Ok(Config {
            node_id,
            generation,
            cluster: self.cluster,
            listen: self.listen,
            advertise: self.advertise,
            seeds: self.seeds,
            datacenter: self.datacenter,
            membership: self.membership,
            fill: self.fill,
            rng_seed,
            transport,
            replication: self.replication,
            store: self.store,
            clock: self.clock,
        })
    }
}

/// `host:port` with a numeric port.
fn check_addr(addr: &str) -> Result<(), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("expected host:port".into());
    };
    if host.is_empty() || addr.len() > Identity::MAX_LABEL {
        return Err("expected host:port".into());
    }
    port.parse::<u16>()
        .map(|_| ())
        .map_err(|_| format!("invalid port {port:?}"))
}

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

/// How long after a placement change writes also need a quorum of the
/// previous owners: longer than a change takes to reach every node, so a
/// reader still on the old ring meets every write.
const TRANSITION_GRACE: Duration = Duration::from_secs(3);

/// How long a node waits after joining before it streams its ranges, so
/// that the cluster has heard it is joining and sends it new writes.
const SETTLE: Duration = Duration::from_millis(1000);

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
    coordinator: Coordinator,
    /// Set when the node stops: data calls check it without the
    /// cancellation token's lock.
    closed: std::sync::atomic::AtomicBool,
    rng_seed: u64,
    metrics: crate::metrics::NodeMetrics,
}

impl Inner {
    fn placement_view(&self) -> Arc<Placement> {
        self.coordinator.placement.load_full()
    }

    fn rebalancer(&self) -> Rebalancer {
        let c = &self.coordinator;
        Rebalancer {
            me: self.id,
            replicas: c.config.replicas,
            sources: c.config.replicas - c.config.write_quorum + 1,
            transport: self.transport.clone(),
            replica: c.replica.clone(),
            placement: c.placement.clone(),
            timeout: c.config.timeout,
            counters: c.counters.clone(),
            rng: crate::rng::SplitMix64::new(self.rng_seed ^ 0xa5a5),
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
/// // Written through one node, read through the other (N=3, W=2, R=2 are
/// // capped at the two members there are).
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
        ConfigBuilder {
            node_id: node_id.into(),
            generation: None,
            cluster: "gridkv".to_owned(),
            listen: "127.0.0.1:0".to_owned(),
            advertise: None,
            seeds: Vec::new(),
            datacenter: "default".to_owned(),
            membership: SwimConfig::lan(),
            fill: FillMode::Automatic,
            rng_seed: None,
            transport: None,
            replication: ReplicationConfig::default(),
            store: StoreConfig::default(),
            clock: Arc::new(SystemClock),
        }
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
        Self::start_with(config, Arc::new(crate::net::io::Tcp::default())).await
    }

    /// As [`GridKv::start`], over any [`Network`](crate::net::io::Network):
    /// a simulator (the tests run whole clusters under turmoil), or a
    /// custom socket layer.
    ///
    /// # Errors
    ///
    /// As [`GridKv::start`].
    pub async fn start_with(
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
        let origin = Instant::now();
        let swim = Swim::new(
            identity,
            config.membership.clone(),
            config.seeds.clone(),
            config.rng_seed,
            Duration::ZERO,
        )
        .map_err(|e| ConfigError {
            field: e.field,
            reason: e.reason.to_owned(),
        })?;
        let store = Arc::new(
            Store::with_clock(config.store.clone(), config.clock.clone()).map_err(|e| {
                ConfigError {
                    field: e.field,
                    reason: e.reason,
                }
            })?,
        );
        let hlc = Arc::new(Hlc::new(
            config.node_id,
            config.generation,
            config.clock.clone(),
        ));
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
            hlc,
            hints: hints.clone(),
            counters: counters.clone(),
            serves_reads: std::sync::atomic::AtomicBool::new(false),
            stopped: std::sync::atomic::AtomicBool::new(false),
            holdings: crate::replication::Holdings::new(
                config.node_id,
                config.replication.replicas,
            ),
        });
        let placement = Arc::new(ArcSwap::from_pointee(Placement::empty()));
        let coordinator = Coordinator {
            me: config.node_id,
            transport: transport.clone(),
            replica: replica.clone(),
            config: config.replication.clone(),
            placement: placement.clone(),
            counters,
            hints,
            write_barrier: std::sync::atomic::AtomicU64::new(0),
        };
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (phase, _) = watch::channel(Phase::Joining);
        let (commands, command_rx) = mpsc::channel(16);
        let (changes_tx, changes_rx) = watch::channel(0u64);
        let inner = Arc::new(Inner {
            id: config.node_id,
            transport: transport.clone(),
            members: ArcSwap::from_pointee(swim.members().cloned().collect()),
            ring: ArcSwap::from_pointee(Ring::new(0, []).expect("an empty ring is valid")),
            ring_members: ArcSwap::from_pointee(RingMembers::default()),
            events,
            phase,
            commands,
            cancel: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            coordinator,
            closed: std::sync::atomic::AtomicBool::new(false),
            rng_seed: config.rng_seed,
            metrics: crate::metrics::NodeMetrics::default(),
        });
        let driver = Driver {
            swim,
            origin,
            transport,
            shared: Arc::downgrade(&inner),
            cancel: inner.cancel.clone(),
            placement,
            changes: changes_tx,
            started_ms: config.clock.now_ms(),
            restart_noted: false,
        };
        let membership = tokio::spawn(driver.run(incoming.control, command_rx));
        let data = tokio::spawn(serve_data(incoming.data, replica, inner.cancel.clone()));
        let rebalance = tokio::spawn(rebalance(
            inner.rebalancer(),
            changes_rx,
            inner.phase.subscribe(),
            inner.commands.clone(),
            config.fill,
            config.replication.anti_entropy_interval,
            inner.cancel.clone(),
        ));
        let hints = tokio::spawn(deliver_hints(Arc::downgrade(&inner), inner.cancel.clone()));
        inner
            .tasks
            .lock()
            .extend([membership, data, rebalance, hints]);
        Ok(GridKv { inner })
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
    /// [`EVENT_CAPACITY`] events; a slower subscriber skips ahead with
    /// `Lagged` and can re-read [`GridKv::members`].
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.inner.events.subscribe()
    }

    /// The placement ring: designated owners (see [`RingMembers`]).
    pub fn ring(&self) -> Arc<Ring> {
        self.inner.ring.load_full()
    }

    /// Who holds ring slots now and after pending changes, with the ring's
    /// version.
    pub fn ring_members(&self) -> Arc<RingMembers> {
        self.inner.ring_members.load_full()
    }

    /// The transport (for the replication layer and diagnostics).
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
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

    /// Whether this node is ready to serve: joined, its ranges filled, and
    /// normal on the ring (what `/health` reports).
    pub fn is_ready(&self) -> bool {
        self.inner.placement_view().local_serves_reads
    }

    /// Waits until [`GridKv::is_ready`]: the node has joined and filled its
    /// ranges. Data calls work before that too (any node coordinates), but a
    /// cluster still forming may have no normal owner yet and answer
    /// `QuorumNotReached`.
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
    /// [`HANDOFF_TIMEOUT`] for the handoff, about half a second for the
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

    /// Tasks this node still runs (the transport's plus membership's); 0
    /// after [`GridKv::shutdown`].
    pub fn task_count(&self) -> usize {
        let own = self
            .inner
            .tasks
            .lock()
            .iter()
            .filter(|t| !t.is_finished())
            .count();
        self.inner.transport.task_count() + own
    }
}

/// The membership task: feeds packets and time to [`Swim`], carries out
/// its outputs.
struct Driver {
    swim: Swim,
    origin: Instant,
    transport: Transport,
    shared: std::sync::Weak<Inner>,
    cancel: CancellationToken,
    placement: Arc<ArcSwap<Placement>>,
    /// Bumped whenever the placement changes (wakes the rebalancer).
    changes: watch::Sender<u64>,
    /// Wall-clock ms at start.
    started_ms: u64,
    restart_noted: bool,
}

impl Driver {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    async fn run(
        mut self,
        mut control: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut leave_done: Option<tokio::sync::oneshot::Sender<()>> = None;
        loop {
            self.flush();
            if let Some(done) = leave_done.take() {
                // Give the leave packets a moment on the wire.
                let _ = tokio::time::timeout(LEAVE_FLUSH, self.wait_sent()).await;
                let _ = done.send(());
                return;
            }
            if self.swim.is_refused() {
                // Another live node holds our id: stop for good, releasing
                // the transport's sockets and every task.
                if let Some(shared) = self.shared.upgrade() {
                    shared
                        .closed
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                self.cancel.cancel();
                self.transport.shutdown().await;
                return;
            }
            let deadline = self.swim.next_deadline();
            let sleep = if deadline == Duration::MAX {
                Duration::from_secs(3600)
            } else {
                deadline.saturating_sub(self.now())
            };
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                command = commands.recv() => match command {
                    Some(Command::Fill) => {
                        let now = self.now();
                        self.swim.mark_filled(now);
                    }
                    Some(Command::StartLeaving) => {
                        let now = self.now();
                        self.swim.start_leaving(now);
                    }
                    Some(Command::Leave(done)) => {
                        let now = self.now();
                        self.swim.start_leaving(now);
                        self.swim.leave(now);
                        leave_done = Some(done);
                    }
                    None => return,
                },
                inbound = control.recv() => {
                    let Some(inbound) = inbound else { return };
                    let now = self.now();
                    if let Err(error) = self.swim.handle_packet(now, &inbound.body) {
                        tracing::warn!(from = %inbound.from, %error, "bad membership packet");
                    }
                    // Under a steady stream of packets the sleep branch
                    // below may never be polled: run due timers here too.
                    if now >= self.swim.next_deadline() {
                        self.swim.handle_timers(now);
                    }
                }
                _ = tokio::time::sleep(sleep) => {
                    let now = self.now();
                    self.swim.handle_timers(now);
                }
            }
        }
    }

    /// Gives the coordinator the current rings and member table.
    fn publish_placement(&self, shared: &Inner) {
        let rm = shared.ring_members.load();
        let ring = shared.ring.load_full();
        let future = if rm.future == rm.placement {
            ring.clone()
        } else {
            match Ring::new(rm.version, rm.future.iter().copied()) {
                Ok(future) => Arc::new(future),
                Err(error) => {
                    tracing::error!(%error, "cannot build the future ring");
                    ring.clone()
                }
            }
        };
        let members = self.swim.members().map(|m| (m.id(), m.clone())).collect();
        let old = self.placement.load_full();
        let previous = if old.ring.nodes() != ring.nodes() && !old.ring.is_empty() {
            Some((old.ring.clone(), Instant::now() + TRANSITION_GRACE))
        } else {
            old.previous.clone()
        };
        let serves_reads = self.swim.local().serves_reads();
        shared
            .coordinator
            .replica
            .serves_reads
            .store(serves_reads, std::sync::atomic::Ordering::Release);
        let rings_changed =
            old.ring.nodes() != ring.nodes() || old.future.nodes() != future.nodes();
        if rings_changed {
            // Before and after the store (see `Holdings::ring_changed`).
            shared.coordinator.replica.holdings.ring_changed();
        }
        self.placement.store(Arc::new(Placement {
            ring,
            future,
            members,
            local_serves_reads: serves_reads,
            previous,
        }));
        if rings_changed {
            shared.coordinator.replica.holdings.ring_changed();
        }
        self.changes.send_modify(|v| *v += 1);
    }

    /// Waits until the transport has written what is queued (polling the
    /// queued-frame count; bounded by the caller).
    async fn wait_sent(&self) {
        while self.transport.stats().queued_frames > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn flush(&mut self) {
        let mut members_changed = false;
        let mut ring_changed = false;
        while let Some(output) = self.swim.poll_output() {
            match output {
                Output::Send { to, packet } => {
                    if let Err(error) = self.transport.send(&to, Lane::Control, packet) {
                        // Probes time out on their own; nothing to retry.
                        tracing::trace!(%to, %error, "membership packet not sent");
                    }
                }
                Output::Event(event) => {
                    let Some(shared) = self.shared.upgrade() else {
                        continue;
                    };
                    match &event {
                        MemberEvent::Changed { member, previous } => {
                            members_changed = true;
                            let gone = member.liveness == Liveness::Left
                                || member.ring == RingState::Removed;
                            let me = member.id() == self.swim.local().id();
                            if gone && !me {
                                self.transport.forget(&member.identity.addr);
                            }
                            let was_serving =
                                previous.as_ref().is_some_and(|p| p.ring.serves_reads());
                            if me && was_serving && member.ring == RingState::Joining {
                                // The majority took this node off the ring
                                // while it was away: keys deleted meanwhile
                                // may have had their tombstones collected,
                                // so what it holds could resurrect them. It
                                // starts empty and refills, as a new node.
                                tracing::warn!(
                                    node = %member.id(),
                                    "removed from the ring while away: dropping local data and refilling"
                                );
                                shared.coordinator.replica.holdings.forget();
                                shared.coordinator.replica.store.clear();
                            }
                        }
                        MemberEvent::Forgotten { .. } => members_changed = true,
                        MemberEvent::RingChanged { .. } => ring_changed = true,
                        MemberEvent::Joined => {
                            shared.phase.send_replace(Phase::Joined);
                        }
                        MemberEvent::JoinRefused { holder } => {
                            tracing::error!(
                                id = %shared.id,
                                %holder,
                                "join refused: this node id is in use by a live member"
                            );
                            shared.phase.send_replace(Phase::Refused(holder.clone()));
                        }
                        MemberEvent::IdConflict { .. } => {}
                    }
                    let _ = shared.events.send(event);
                }
            }
        }
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        if members_changed {
            shared
                .members
                .store(Arc::new(self.swim.members().cloned().collect()));
        }
        if ring_changed {
            let rm = self.swim.ring_members().clone();
            match Ring::new(rm.version, rm.placement.iter().copied()) {
                Ok(ring) => shared.ring.store(Arc::new(ring)),
                Err(error) => tracing::error!(%error, "cannot build the ring"),
            }
            shared.ring_members.store(Arc::new(rm));
        }
        if members_changed || ring_changed {
            self.publish_placement(&shared);
        }
        if self.swim.saw_previous_run() && !self.restart_noted {
            self.restart_noted = true;
            let hlc = &shared.coordinator.replica.hlc;
            let until = self.started_ms + Hlc::DEFAULT_MAX_DRIFT.as_millis() as u64;
            tracing::info!(
                node = %shared.id,
                wait_ms = until.saturating_sub(hlc.clock().now_ms()),
                "restart of a known node: writes wait until the clock passes the previous run's"
            );
            shared.coordinator.hold_writes_until(until);
        }
    }
}

/// The rebalancing task: after each placement change, pulls the ranges
/// this node gains; a joining node becomes normal once they are in.
async fn rebalance(
    mut rebalancer: Rebalancer,
    mut changes: watch::Receiver<u64>,
    mut phase: watch::Receiver<Phase>,
    commands: mpsc::Sender<Command>,
    fill: FillMode,
    anti_entropy: Duration,
    cancel: CancellationToken,
) {
    // Nothing to fill before the node has joined (its view would be of a
    // cluster of one).
    loop {
        if *phase.borrow_and_update() == Phase::Joined {
            break;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            changed = phase.changed() => if changed.is_err() { return },
        }
    }
    let mut settled = false;
    loop {
        changes.borrow_and_update();
        let p = rebalancer.placement.load_full();
        let alone = p.ring.nodes().iter().all(|id| *id == rebalancer.me);
        if !settled && !alone {
            // Let the cluster hear that we are joining before streaming.
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(SETTLE) => {}
            }
            settled = true;
            changes.borrow_and_update();
        }
        let report = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            report = rebalancer.fill() => report,
        };
        if report.pieces > 0 {
            tracing::info!(
                node = %rebalancer.me,
                pieces = report.pieces,
                entries = report.entries,
                bytes = report.bytes,
                complete = report.complete,
                "filled gained ranges"
            );
        }
        let joining = rebalancer
            .placement
            .load()
            .members
            .get(&rebalancer.me)
            .is_some_and(|m| m.ring == RingState::Joining);
        if report.complete && joining && fill == FillMode::Automatic {
            let _ = commands.send(Command::Fill).await;
        }
        if !report.complete {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        // Filled: anti-entropy rounds until the placement changes again.
        loop {
            let jitter = rebalancer.jitter(anti_entropy);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() { return }
                    break;
                }
                _ = tokio::time::sleep(jitter) => {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return,
                        _ = rebalancer.anti_entropy() => {}
                    }
                }
            }
        }
    }
}

/// How often waiting hints are offered to owners that are back.
const HINT_DELIVERY: Duration = Duration::from_millis(500);

/// The hinted-handoff task.
async fn deliver_hints(inner: std::sync::Weak<Inner>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(HINT_DELIVERY) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        if inner.coordinator.hints.len() == 0 {
            continue;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = inner.coordinator.deliver_hints() => {}
        }
    }
}

/// How often the store's coarse clock is refreshed (expiry resolution).
const STORE_TICK: Duration = Duration::from_millis(10);
/// How often the store sweeps expired values and old tombstones.
const STORE_MAINTAIN: Duration = Duration::from_millis(100);

/// Bulk requests (fill and anti-entropy scans, digests) waiting for the
/// bulk task; one more is refused `Overloaded` (and asked again by the
/// puller, see `Rebalancer::ask`). Each puller has one request out to a
/// source at a time, so this holds one per member pulling at once.
const BULK_QUEUE: usize = 64;

/// The replica task: answers data-lane requests from the local store, and
/// keeps the store's clock and sweeping going. Scans and digests, which
/// walk whole ranges of the store, go to a task of their own, so that on a
/// runtime of more than one worker a get or set arriving meanwhile is not
/// queued behind one (on a single worker the walk still holds the thread).
async fn serve_data(
    mut data: mpsc::Receiver<Inbound>,
    replica: Arc<Replica>,
    cancel: CancellationToken,
) {
    let (bulk_tx, bulk_rx) = mpsc::channel(BULK_QUEUE);
    let bulk = tokio::spawn(serve_bulk(bulk_rx, replica.clone(), cancel.clone()));
    let mut tick = tokio::time::interval(STORE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_maintain = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            inbound = data.recv() => {
                let Some(inbound) = inbound else { break };
                if !DataRequest::is_bulk(&inbound.body) {
                    let response = replica.handle(&inbound.body);
                    answer(inbound, response);
                    continue;
                }
                let (inbound, code, reason) = match bulk_tx.try_send(inbound) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Full(inbound)) => {
                        (inbound, RefusalCode::Overloaded, "too many scans queued")
                    }
                    Err(mpsc::error::TrySendError::Closed(inbound)) => {
                        tracing::error!("the scan task has stopped; refusing scans");
                        (inbound, RefusalCode::ShuttingDown, "the scan task has stopped")
                    }
                };
                let reason = reason.to_owned();
                answer(inbound, DataResponse::Refused { code, reason });
            }
            _ = tick.tick() => {
                replica.store.tick();
                if last_maintain.elapsed() >= STORE_MAINTAIN {
                    last_maintain = Instant::now();
                    // Bounded work per round, so requests are not starved.
                    for _ in 0..16 {
                        if !replica.store.maintain().more {
                            break;
                        }
                    }
                }
            }
        }
    }
    drop(bulk_tx);
    let _ = bulk.await;
}

/// Answers the bulk requests [`serve_data`] hands over, one at a time.
async fn serve_bulk(
    mut bulk: mpsc::Receiver<Inbound>,
    replica: Arc<Replica>,
    cancel: CancellationToken,
) {
    loop {
        let inbound = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            inbound = bulk.recv() => match inbound {
                Some(inbound) => inbound,
                None => return,
            },
        };
        let response = replica.handle(&inbound.body);
        answer(inbound, response);
    }
}

/// Sends `response` to the requester of `inbound`, if it awaits one.
fn answer(inbound: Inbound, response: DataResponse) {
    if let Some(reply) = inbound.reply {
        let _ = reply.respond(response.encode().into());
    }
}

/// The data operations.
impl GridKv {
    /// Stores `value` under `key` on the key's owners (W of N must apply it).
    ///
    /// # Errors
    ///
    /// [`Error`]; a failed write is indeterminate (see [`Error`]).
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<bytes::Bytes>,
    ) -> Result<(), Error> {
        self.set_with(key, value, None, WriteOptions::default())
            .await
    }

    /// As [`GridKv::set`], expiring after `ttl`.
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`].
    pub async fn set_with_ttl(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<bytes::Bytes>,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.set_with(key, value, Some(ttl), WriteOptions::default())
            .await
    }

    /// A set with an optional TTL and per-call options.
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`].
    pub async fn set_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<bytes::Bytes>,
        ttl: Option<Duration>,
        options: WriteOptions,
    ) -> Result<(), Error> {
        let expires_at = ttl.map(|ttl| self.expiry(ttl));
        self.write(key.as_ref(), Some((value.into(), expires_at)), options)
            .await
            .map(|_| ())
    }

    /// The value of `key` (quorum read; `None` if absent, deleted or
    /// expired).
    ///
    /// # Errors
    ///
    /// [`Error`]: never a partial result.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<bytes::Bytes>, Error> {
        self.get_with(key, ReadOptions::default()).await
    }

    /// A read with per-call options ([`ReadOptions::local`] for a local
    /// read).
    ///
    /// # Errors
    ///
    /// As [`GridKv::get`].
    pub async fn get_with(
        &self,
        key: impl AsRef<[u8]>,
        options: ReadOptions,
    ) -> Result<Option<bytes::Bytes>, Error> {
        let key = key.as_ref();
        if options.local && !self.is_closed() {
            // Answered before any future of the network path is built.
            if let Some(result) = self.inner.coordinator.read_local(key) {
                self.count_local_read();
                return Ok(result?.into_value());
            }
        }
        Ok(self.read_remote(key, options).await?.into_value())
    }

    /// Deletes `key`; returns whether a live value was there (as far as the
    /// owners that applied the delete know).
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`].
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        self.delete_with(key, WriteOptions::default()).await
    }

    /// A delete with per-call options.
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`].
    pub async fn delete_with(
        &self,
        key: impl AsRef<[u8]>,
        options: WriteOptions,
    ) -> Result<bool, Error> {
        self.write(key.as_ref(), None, options).await
    }

    /// Whether `key` has a live value.
    ///
    /// # Errors
    ///
    /// As [`GridKv::get`].
    pub async fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        Ok(self.get(key).await?.is_some())
    }

    /// The time `key` has left: `None` if absent, `Some(None)` if it has no
    /// expiry.
    ///
    /// # Errors
    ///
    /// As [`GridKv::get`].
    pub async fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Option<Option<Duration>>, Error> {
        let now = self.inner.coordinator.replica.hlc.clock().now_ms();
        Ok(
            match self.lookup(key.as_ref(), ReadOptions::default()).await? {
                Lookup::Live(item) => Some(
                    item.expires_at
                        .map(|at| Duration::from_millis(at.saturating_sub(now))),
                ),
                _ => None,
            },
        )
    }

    /// Sets `key` to expire after `ttl`; returns whether it existed. A read
    /// then a write of the same value at a new version: a concurrent write
    /// of the key wins if it is stamped later.
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`].
    pub async fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool, Error> {
        let expires_at = self.expiry(ttl);
        self.rewrite_expiry(key.as_ref(), Some(expires_at)).await
    }

    /// Removes `key`'s expiry; returns whether it had one (as Redis's
    /// `PERSIST`). A key that is absent or never expires is not written.
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`].
    pub async fn persist(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        self.rewrite_expiry(key.as_ref(), None).await
    }

    /// Reads several keys at once; one result per key, in order. At most
    /// [`GridKv::MANY_IN_FLIGHT`] of them are in flight at a time.
    pub async fn get_many<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Vec<Result<Option<bytes::Bytes>, Error>> {
        let keys = keys
            .iter()
            .map(|k| bytes::Bytes::copy_from_slice(k.as_ref()));
        self.fan_out(keys, |node, key| async move { node.get(key).await })
            .await
    }

    /// Writes several keys at once; one result per pair, in order. At most
    /// [`GridKv::MANY_IN_FLIGHT`] of them are in flight at a time.
    pub async fn set_many<K: AsRef<[u8]>, V: Clone + Into<bytes::Bytes>>(
        &self,
        pairs: &[(K, V)],
    ) -> Vec<Result<(), Error>> {
        let pairs = pairs.iter().map(|(k, v)| {
            let value: bytes::Bytes = v.clone().into();
            (bytes::Bytes::copy_from_slice(k.as_ref()), value)
        });
        self.fan_out(pairs, |node, (key, value)| async move {
            node.set(key, value).await
        })
        .await
    }

    /// How many operations of one [`GridKv::get_many`] or
    /// [`GridKv::set_many`] run at once.
    pub const MANY_IN_FLIGHT: usize = 64;

    /// Runs `op` on every item, each in a task of its own, at most
    /// [`GridKv::MANY_IN_FLIGHT`] at a time; results in the items' order.
    async fn fan_out<T, R, Fut>(
        &self,
        items: impl Iterator<Item = T>,
        op: impl Fn(GridKv, T) -> Fut,
    ) -> Vec<Result<R, Error>>
    where
        Fut: std::future::Future<Output = Result<R, Error>> + Send + 'static,
        R: Send + 'static,
    {
        let mut running = std::collections::VecDeque::with_capacity(Self::MANY_IN_FLIGHT);
        let mut out = Vec::with_capacity(items.size_hint().0);
        let finish = |joined: Result<Result<R, Error>, tokio::task::JoinError>| {
            joined.unwrap_or(Err(Error::ShuttingDown))
        };
        for item in items {
            if running.len() == Self::MANY_IN_FLIGHT {
                let first: tokio::task::JoinHandle<_> =
                    running.pop_front().expect("the window is full");
                out.push(finish(first.await));
            }
            running.push_back(tokio::spawn(op(self.clone(), item)));
        }
        for task in running {
            out.push(finish(task.await));
        }
        out
    }

    /// This node's replication counters.
    pub fn replication_stats(&self) -> crate::replication::ReplicationStats {
        let mut stats = self.inner.coordinator.counters.snapshot();
        stats.hints_pending = self.inner.coordinator.hints.len() as u64;
        stats
    }

    /// The replication factor and quorums in force (smaller than
    /// configured while the cluster has fewer members than N).
    pub fn replication_status(&self) -> ReplicationStatus {
        self.inner.coordinator.status()
    }

    /// The local store (for metrics and diagnostics; writes to it bypass
    /// replication).
    pub fn store(&self) -> &Store {
        &self.inner.coordinator.replica.store
    }

    fn is_closed(&self) -> bool {
        self.inner.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    fn expiry(&self, ttl: Duration) -> u64 {
        let now = self.inner.coordinator.replica.hlc.clock().now_ms();
        now.saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64)
    }

    async fn write(
        &self,
        key: &[u8],
        data: WriteData,
        options: WriteOptions,
    ) -> Result<bool, Error> {
        if self.is_closed() {
            return Err(Error::ShuttingDown);
        }
        let histogram = match data {
            Some(_) => &self.inner.metrics.writes,
            None => &self.inner.metrics.deletes,
        };
        let started = Instant::now();
        let result = Box::pin(self.inner.coordinator.write(key, data, options)).await;
        histogram.record(started.elapsed());
        result
    }

    fn count_local_read(&self) {
        self.inner
            .metrics
            .local_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// This node's operation latencies (see [`crate::metrics`]).
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

    async fn lookup(&self, key: &[u8], options: ReadOptions) -> Result<Lookup, Error> {
        if options.local && !self.is_closed() {
            if let Some(result) = self.inner.coordinator.read_local(key) {
                self.count_local_read();
                return result;
            }
        }
        self.read_remote(key, options).await
    }

    /// A read past the local fast path (already tried, or not asked for).
    async fn read_remote(&self, key: &[u8], options: ReadOptions) -> Result<Lookup, Error> {
        if self.is_closed() {
            return Err(Error::ShuttingDown);
        }
        // Boxed: the network path's state is large, and callers' futures
        // stay small.
        let started = Instant::now();
        let result = Box::pin(self.inner.coordinator.read(key, options)).await;
        self.inner.metrics.reads.record(started.elapsed());
        result
    }

    /// Writes `key`'s live value back with expiry `expires_at`; returns
    /// whether it did. Nothing is written for an absent key, nor when
    /// removing the expiry of one that has none.
    async fn rewrite_expiry(&self, key: &[u8], expires_at: Option<u64>) -> Result<bool, Error> {
        match self.lookup(key, ReadOptions::default()).await? {
            Lookup::Live(item) if expires_at.is_some() || item.expires_at.is_some() => {
                self.write(key, Some((item.value, expires_at)), WriteOptions::default())
                    .await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
