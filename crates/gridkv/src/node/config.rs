//! A node's configuration: [`Config`], its checked [`ConfigBuilder`], and
//! the [`FillMode`] of a join.

use std::sync::Arc;
use std::time::Duration;

use crate::config_error::ConfigError;
use crate::hlc::{Clock, SystemClock};
use crate::id::{Generation, NodeId};
use crate::membership::{Identity, SwimConfig};
use crate::net::tls::{TlsFiles, TlsStore};
use crate::net::TransportConfig;
use crate::replication::{Consistency, ReplicationConfig};
use crate::store::StoreConfig;

/// How a joining node's ranges get filled before it serves reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FillMode {
    /// Stream the ranges this node will own from their current owners,
    /// then become normal (rebalancing; see `docs/REPLICATION.md`).
    #[default]
    Automatic,
    /// Stream as [`FillMode::Automatic`] does, but stay joining until
    /// [`GridKv::mark_filled`](crate::GridKv::mark_filled) is called.
    Manual,
}

/// A node's configuration; build it with
/// [`GridKv::builder`](crate::GridKv::builder).
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id (stable across restarts).
    pub node_id: NodeId,
    /// This run's generation. Default: the wall clock at build time, so a
    /// restart is later. If the cluster knows a later run of this node id
    /// (the wall clock stepped back), the node takes the next generation as
    /// it joins.
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
    /// The rack or zone label (empty: none).
    pub rack: String,
    /// Membership timers.
    pub membership: SwimConfig,
    /// How the node's ranges are filled when it joins.
    pub fill: FillMode,
    /// Seeds the node's randomness (probe order, jitter), so a run replays.
    pub rng_seed: u64,
    /// Transport tuning; `cluster`, `node_id`, `generation`, `listen`,
    /// `advertise` and `tls` are taken from this config (`tls` from
    /// [`ConfigBuilder::tls`]).
    pub transport: TransportConfig,
    /// Replication factor, quorums and timeouts.
    pub replication: ReplicationConfig,
    /// The local store's bounds (key and value sizes, memory budget,
    /// tombstone grace).
    pub store: StoreConfig,
    /// The wall clock versions and expiries are read from (tests inject a
    /// skewed one).
    pub clock: Arc<dyn Clock>,
    /// How far this node's clock may be from the median of the members it
    /// reaches before it stops coordinating writes, and how far ahead of
    /// the cluster's clock a remote timestamp may be (the HLC's drift
    /// guard). Default 5 s.
    pub max_clock_offset: Duration,
    /// How long a data call made while the node does not serve yet (see
    /// [`GridKv::readiness`](crate::GridKv::readiness)) waits before it
    /// fails with [`Error::NotReady`](crate::Error::NotReady), unless the
    /// call gives its own timeout. Default 5 s.
    pub ready_timeout: Duration,
    /// Plaintext cluster traffic was allowed off loopback
    /// ([`ConfigBuilder::insecure`]). The TLS material, when given, is in
    /// [`TransportConfig::tls`](crate::net::TransportConfig).
    pub insecure: bool,
}

/// The default [`Config::ready_timeout`].
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a [`Config`], checking every field.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
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
/// let err = GridKv::builder("n").membership(SwimConfig { probe_timeout: Duration::ZERO, ..SwimConfig::lan() }).build().unwrap_err();
/// assert_eq!((err.section, err.field), ("membership", "probe_timeout"));
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
    rack: String,
    membership: SwimConfig,
    fill: FillMode,
    rng_seed: Option<u64>,
    transport: Option<TransportConfig>,
    replication: ReplicationConfig,
    store: StoreConfig,
    clock: Arc<dyn Clock>,
    consistency: Option<Consistency>,
    ready_timeout: Duration,
    max_clock_offset: Duration,
    tls: Option<TlsSource>,
    insecure: bool,
}

/// Where the builder's TLS material comes from.
#[derive(Debug, Clone)]
enum TlsSource {
    Store(TlsStore),
    Files(TlsFiles),
}

impl ConfigBuilder {
    /// A builder with every default, for a node called `node_id` (see
    /// [`GridKv::builder`](crate::GridKv::builder)).
    pub(super) fn new(node_id: String) -> Self {
        Self {
            node_id,
            generation: None,
            cluster: "gridkv".to_owned(),
            listen: "127.0.0.1:0".to_owned(),
            advertise: None,
            seeds: Vec::new(),
            datacenter: "default".to_owned(),
            rack: String::new(),
            membership: SwimConfig::lan(),
            fill: FillMode::Automatic,
            rng_seed: None,
            transport: None,
            replication: ReplicationConfig::default(),
            store: StoreConfig::default(),
            clock: Arc::new(SystemClock),
            consistency: None,
            ready_timeout: READY_TIMEOUT,
            max_clock_offset: crate::hlc::Hlc::DEFAULT_MAX_DRIFT,
            tls: None,
            insecure: false,
        }
    }

    /// Mutual TLS on the cluster transport with this material; the
    /// certificate must name this node's id. Several nodes in one process
    /// each take their own store.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::GridKv;
    /// use gridkv::net::tls::TlsStore;
    ///
    /// # fn certs(id: &str) -> Result<(String, String, String), Box<dyn std::error::Error>> {
    /// #     let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    /// #     let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    /// #     ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    /// #     let ca_pem = ca.self_signed(&ca_key)?.pem();
    /// #     let issuer = rcgen::Issuer::new(ca, ca_key);
    /// #     let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    /// #     let mut node = rcgen::CertificateParams::new(Vec::<String>::new())?;
    /// #     node.subject_alt_names.push(rcgen::SanType::URI(format!("gridkv:node:{id}").try_into()?));
    /// #     Ok((ca_pem, node.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
    /// # }
    /// let (ca, cert, key) = certs("node-1")?;
    /// let tls = TlsStore::from_pem(ca.as_bytes(), cert.as_bytes(), key.as_bytes())?;
    /// let config = GridKv::builder("node-1").listen("0.0.0.0:7946").advertise("10.0.0.5:7946").tls(tls.clone()).build()?;
    /// assert!(config.transport.tls.is_some());
    ///
    /// let err = GridKv::builder("node-2").tls(tls).build().unwrap_err();
    /// assert_eq!((err.section, err.field), ("node", "tls"));
    /// assert!(err.reason.contains("node-1") && err.reason.contains("node-2"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls(mut self, store: TlsStore) -> Self {
        self.tls = Some(TlsSource::Store(store));
        self
    }

    /// As [`ConfigBuilder::tls`], loading the material from files at
    /// [`ConfigBuilder::build`] (which reports a file that fails to load);
    /// [`GridKv::reload_tls`](crate::GridKv::reload_tls) re-reads them.
    pub fn tls_files(mut self, files: TlsFiles) -> Self {
        self.tls = Some(TlsSource::Files(files));
        self
    }

    /// Allows plaintext cluster traffic on addresses that are not loopback.
    /// Without TLS and without this, [`ConfigBuilder::build`] refuses a
    /// listen or advertise address other than 127.0.0.0/8, `::1` or
    /// `localhost`: anyone who reaches a plaintext cluster port can read
    /// and rewrite the cluster. For simulations, and networks that are
    /// private by other means.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::GridKv;
    ///
    /// let err = GridKv::builder("n").listen("0.0.0.0:7946").advertise("10.0.0.5:7946").build().unwrap_err();
    /// assert_eq!((err.section, err.field), ("node", "tls"));
    /// assert!(err.reason.contains("insecure"));
    ///
    /// let config = GridKv::builder("n").listen("0.0.0.0:7946").advertise("10.0.0.5:7946").insecure().build()?;
    /// assert!(config.insecure);
    /// assert!(GridKv::builder("n").listen("[::1]:7946").build().is_ok());
    /// # Ok::<(), gridkv::ConfigError>(())
    /// ```
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Replication factor and quorums (default N=3, W=2, R=2).
    pub fn replication(mut self, config: ReplicationConfig) -> Self {
        self.replication = config;
        self
    }

    /// The consistency asked for, over the one in
    /// [`ConfigBuilder::replication`]'s config whichever is called first.
    /// Strong (the default) requires W + R > N; eventual accepts weaker
    /// quorums and is reported as such in the startup log and by
    /// [`GridKv::consistency`](crate::GridKv::consistency).
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::{Consistency, GridKv, ReplicationConfig};
    ///
    /// let one_of_three = ReplicationConfig { write_quorum: 1, read_quorum: 1, ..Default::default() };
    /// let err = GridKv::builder("n").replication(one_of_three.clone()).build().unwrap_err();
    /// assert_eq!((err.section, err.field), ("replication", "consistency"));
    ///
    /// let config = GridKv::builder("n")
    ///     .consistency(Consistency::Eventual)
    ///     .replication(one_of_three)
    ///     .build()?;
    /// assert_eq!(config.replication.consistency, Consistency::Eventual);
    /// # Ok::<(), gridkv::ConfigError>(())
    /// ```
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = Some(consistency);
        self
    }

    /// How long a data call waits for the node to serve before it fails
    /// with [`Error::NotReady`](crate::Error::NotReady) (default 5 s; a
    /// call's own timeout takes precedence).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// How far this node's clock may be from the median of the members it
    /// reaches (measured on membership round trips) before it stops
    /// coordinating writes; also how far ahead of the cluster's clock a
    /// remote timestamp may be. Default 5 s; 10 ms to 1 h. Every node of
    /// a cluster should use the same bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::GridKv;
    ///
    /// let config = GridKv::builder("n").max_clock_offset(Duration::from_secs(2)).build()?;
    /// assert_eq!(config.max_clock_offset, Duration::from_secs(2));
    /// let err = GridKv::builder("n").max_clock_offset(Duration::ZERO).build().unwrap_err();
    /// assert_eq!(err.field, "max_clock_offset");
    /// # Ok::<(), gridkv::ConfigError>(())
    /// ```
    pub fn max_clock_offset(mut self, bound: Duration) -> Self {
        self.max_clock_offset = bound;
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

    /// The rack or zone label (default none): a key's copies in one
    /// datacenter go to distinct racks when the members name enough.
    pub fn rack(mut self, rack: impl Into<String>) -> Self {
        self.rack = rack.into();
        self
    }

    /// Places copies as `placement` says: `3` on any members, or `a:2,b:1`
    /// per datacenter (see [`ReplicationConfig::with_placement`]).
    pub fn replicas(mut self, placement: crate::ring::ReplicaPlacement) -> Self {
        self.replication = self.replication.with_placement(placement);
        self
    }

    /// The consistency level of writes that name none.
    pub fn write_consistency(mut self, level: crate::replication::ConsistencyLevel) -> Self {
        self.replication.write_consistency = Some(level);
        self
    }

    /// The consistency level of reads that name none.
    pub fn read_consistency(mut self, level: crate::replication::ConsistencyLevel) -> Self {
        self.replication.read_consistency = Some(level);
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

    /// Transport tuning (its identity, address and `tls` fields are
    /// overwritten: TLS is given with [`ConfigBuilder::tls`]).
    pub fn transport(mut self, config: TransportConfig) -> Self {
        self.transport = Some(config);
        self
    }

    /// Checks every field and builds the config.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid field: in the `node`
    /// section for the builder's own fields, in its own section (as its
    /// `validate` returned it) for a nested config's.
    pub fn build(self) -> Result<Config, ConfigError> {
        let err = |field, reason: String| ConfigError::new("node", field, reason);
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
        if self.rack.len() > Identity::MAX_LABEL {
            return Err(err("rack", "at most 255 bytes".into()));
        }
        if self.ready_timeout.is_zero() || self.ready_timeout > Duration::from_secs(3600) {
            return Err(err(
                "ready_timeout",
                "must be positive and at most an hour".into(),
            ));
        }
        if self.max_clock_offset < Duration::from_millis(10)
            || self.max_clock_offset > Duration::from_secs(3600)
        {
            return Err(err(
                "max_clock_offset",
                "must be 10 ms to an hour".into(),
            ));
        }
        let tls = match self.tls {
            Some(TlsSource::Store(store)) => Some(store),
            Some(TlsSource::Files(files)) => Some(
                TlsStore::from_files(files).map_err(|e| err("tls", e.to_string()))?,
            ),
            None => None,
        };
        check_security(&self.listen, self.advertise.as_deref(), tls.as_ref(), self.insecure)
            .map_err(|r| err("tls", r))?;
        if let Some(store) = &tls {
            if store.node_id() != node_id {
                return Err(err(
                    "tls",
                    format!("the certificate names node {}, this node is {node_id}", store.node_id()),
                ));
            }
        }
        self.membership.validate()?;
        if let crate::ring::ReplicaPlacement::PerDatacenter(_) = self.replication.placement() {
            let local = |l: Option<crate::replication::ConsistencyLevel>| l.is_some_and(|l| l.is_local());
            let here = self.replication.placement().in_datacenter(&self.datacenter);
            if here == 0 && (local(self.replication.write_consistency) || local(self.replication.read_consistency)) {
                return Err(err(
                    "datacenter",
                    format!(
                        "datacenter {:?} holds no copies ({}): a local consistency level \
                         cannot be served here; name {:?} in the replicas, or use ONE, \
                         QUORUM or ALL on this node",
                        self.datacenter,
                        self.replication.placement(),
                        self.datacenter
                    ),
                ));
            }
        }
        let mut replication = self.replication;
        if let Some(consistency) = self.consistency {
            replication.consistency = consistency;
        }
        replication.validate()?;
        self.store.validate()?;
        let generation = self.generation.unwrap_or_else(Generation::now);
        let mut transport = self
            .transport
            .unwrap_or_else(|| TransportConfig::new(&self.cluster, node_id, generation));
        transport.cluster = self.cluster.clone();
        transport.node_id = node_id;
        transport.generation = generation;
        transport.listen = self.listen.clone();
        transport.advertise = self.advertise.clone();
        transport.tls = tls;
        let rng_seed = self.rng_seed.unwrap_or(generation.get());
        transport.seed = rng_seed;
        transport.validate()?;
        // A value travels to its replicas in one frame (a write, a hint, a
        // fill or anti-entropy page holding one entry): a store that accepts
        // values the transport cannot carry acknowledges writes locally that
        // can never be replicated.
        let largest_entry = self.store.max_value_len + self.store.max_key_len + FRAME_OVERHEAD;
        if largest_entry > transport.max_frame {
            return Err(ConfigError::new(
                "store",
                "max_value_len",
                format!(
                    "a value of {} bytes with a key of {} does not fit the transport's \
                     max_frame of {} bytes (with {FRAME_OVERHEAD} bytes of framing): \
                     lower max_value_len or raise max_frame",
                    self.store.max_value_len, self.store.max_key_len, transport.max_frame
                ),
            ));
        }
        Ok(Config {
            node_id,
            generation,
            cluster: self.cluster,
            listen: self.listen,
            advertise: self.advertise,
            seeds: self.seeds,
            datacenter: self.datacenter,
            rack: self.rack,
            membership: self.membership,
            fill: self.fill,
            rng_seed,
            transport,
            replication,
            store: self.store,
            clock: self.clock,
            ready_timeout: self.ready_timeout,
            max_clock_offset: self.max_clock_offset,
            insecure: self.insecure,
        })
    }
}

/// Plaintext only on loopback, unless asked for: the reason to give when
/// neither TLS nor `insecure` covers the addresses.
fn check_security(
    listen: &str,
    advertise: Option<&str>,
    tls: Option<&TlsStore>,
    insecure: bool,
) -> Result<(), String> {
    if tls.is_some() || insecure {
        return Ok(());
    }
    for (what, addr) in [("listen", Some(listen)), ("advertise", advertise)] {
        if let Some(addr) = addr.filter(|addr| !is_loopback(addr)) {
            return Err(format!(
                "the {what} address {addr} is not loopback: cluster traffic must be \
                 authenticated; give TLS material (tls) or allow plaintext (insecure)"
            ));
        }
    }
    Ok(())
}

/// Whether `host:port` names a loopback host: 127.0.0.0/8, `::1`,
/// `localhost`.
fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Room a frame needs beside one entry's key and value: the request's
/// header, version, expiry and the page's own fields.
const FRAME_OVERHEAD: usize = 4096;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GridKv;

    #[test]
    fn a_value_limit_past_the_frame_limit_is_refused() {
        let store = StoreConfig {
            max_value_len: 32 << 20,
            ..StoreConfig::default()
        };
        let err = GridKv::builder("n1").store(store).build().unwrap_err();
        assert_eq!((err.section, err.field), ("store", "max_value_len"));
        assert!(err.reason.contains("max_frame"), "{}", err.reason);
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for addr in ["127.0.0.1:1", "127.8.9.10:1", "[::1]:1", "localhost:1", "LOCALHOST:1"] {
            assert!(is_loopback(addr), "{addr}");
        }
        for addr in ["0.0.0.0:1", "10.0.0.1:1", "[::]:1", "node-1:1", "localhost.evil:1"] {
            assert!(!is_loopback(addr), "{addr}");
        }
    }

    #[test]
    fn plaintext_off_loopback_needs_insecure() {
        let err = GridKv::builder("n1")
            .listen("127.0.0.1:0")
            .advertise("10.1.2.3:7946")
            .build()
            .unwrap_err();
        assert_eq!((err.section, err.field), ("node", "tls"));
        assert!(err.reason.contains("advertise address 10.1.2.3:7946"), "{}", err.reason);
        assert!(err.reason.contains("(tls)") && err.reason.contains("(insecure)"));
        assert!(GridKv::builder("n1").listen("localhost:0").build().is_ok());
        assert!(GridKv::builder("n1").listen("10.1.2.3:0").insecure().build().is_ok());
    }

    #[test]
    fn the_default_limits_fit_a_frame() {
        let config = GridKv::builder("n1").build().unwrap();
        assert!(
            config.store.max_value_len + config.store.max_key_len + FRAME_OVERHEAD
                <= config.transport.max_frame
        );
    }
}
