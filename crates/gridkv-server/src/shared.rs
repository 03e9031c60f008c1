//! What the RESP and HTTP front ends of one node share: the node, the
//! server's counters and its bounds. Both front ends read it; neither
//! owns it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use gridkv::GridKv;
use tokio::sync::Semaphore;

use crate::auth::AclStore;
use crate::clients::ClientsMemory;
use crate::config::{DEFAULT_MAX_CLIENT_OUTPUT, DEFAULT_MAX_CLIENTS_MEMORY, PipelineOrder};
use crate::limits::LimitCounters;
use crate::resp::Limits;
use crate::tls::ServerTls;

/// The HTTP admin's bearer token, kept as its SHA-256 so it is compared
/// in constant time whatever its length.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken([u8; 32]);

impl AdminToken {
    /// The token `token`.
    pub fn new(token: &str) -> AdminToken {
        AdminToken(crate::auth::sha256(token.as_bytes()))
    }

    /// Whether `offered` is the token (constant time).
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv_server::shared::AdminToken;
    ///
    /// let token = AdminToken::new("s3cret");
    /// assert!(token.matches("s3cret"));
    /// assert!(!token.matches("s3cre"));
    /// ```
    pub fn matches(&self, offered: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0
            .ct_eq(&crate::auth::sha256(offered.as_bytes()))
            .into()
    }
}

/// The token is never printed.
impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<hidden>)")
    }
}

/// Most pipelined commands run at once on the whole server. Well under
/// the transport's in-flight bound per peer (1,024): a write returns at W
/// while its request to the slowest owner is still in flight, so requests
/// outnumber running commands, and at 512 a saturated 3-node cluster shed
/// requests (`Overloaded`, failing writes) in `scripts/bench-vs-redis.sh`.
const MAX_GROUPED: usize = 128;

/// Server-wide counters (shown by `INFO` and `/metrics`).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Clients connected now.
    pub connected_clients: AtomicU64,
    /// Clients accepted since start.
    pub total_connections: AtomicU64,
    /// Clients refused because `max_clients` were connected.
    pub rejected_connections: AtomicU64,
    /// Commands run.
    pub total_commands: AtomicU64,
    /// Error replies sent.
    pub error_replies: AtomicU64,
    /// Connections closed for a protocol error.
    pub protocol_errors: AtomicU64,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
    /// Bytes the RESP parsers examined (about the bytes parsed, however
    /// they were split into reads).
    pub parser_scanned_bytes: AtomicU64,
    /// Clients closed at each [`Limit`](crate::limits::Limit).
    pub limits: LimitCounters,
    /// RESP clients whose TLS handshake failed (`--resp-tls`).
    pub tls_handshake_failures: AtomicU64,
    /// HTTP clients whose TLS handshake failed (`--http-tls`); shared with
    /// the listener's accept task.
    pub http_tls_handshake_failures: Arc<AtomicU64>,
    /// HTTP admin requests refused for a missing or wrong token (401) or
    /// because no token is configured (403).
    pub admin_refusals: AtomicU64,
}

/// [`ServerStats`] read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// Clients connected now.
    pub connected_clients: u64,
    /// Clients accepted since start.
    pub total_connections: u64,
    /// Clients refused because `max_clients` were connected.
    pub rejected_connections: u64,
    /// Commands run.
    pub total_commands: u64,
    /// Error replies sent.
    pub error_replies: u64,
    /// Connections closed for a protocol error.
    pub protocol_errors: u64,
    /// Bytes read from clients.
    pub net_input_bytes: u64,
    /// Bytes written to clients.
    pub net_output_bytes: u64,
    /// Bytes the RESP parsers examined.
    pub parser_scanned_bytes: u64,
    /// Clients closed at each limit, indexed by `Limit as usize`.
    pub limit_exceeded: [u64; 6],
    /// RESP TLS handshakes failed.
    pub tls_handshake_failures: u64,
    /// HTTP TLS handshakes failed.
    pub http_tls_handshake_failures: u64,
    /// HTTP admin requests refused (401/403).
    pub admin_refusals: u64,
    /// Input bytes all clients hold now (not yet parsed).
    pub clients_input_bytes: u64,
    /// Reply bytes all clients hold now (not yet written).
    pub clients_output_bytes: u64,
    /// The most input and output bytes all clients held at once.
    pub clients_memory_peak: u64,
}

impl ServerStats {
    /// The counters now, with the client memory figures of `memory`.
    pub fn load(&self, memory: &ClientsMemory) -> ServerCounters {
        let (clients_input_bytes, clients_output_bytes) = memory.totals();
        ServerCounters {
            parser_scanned_bytes: self.parser_scanned_bytes.load(Relaxed),
            limit_exceeded: self.limits.load(),
            tls_handshake_failures: self.tls_handshake_failures.load(Relaxed),
            http_tls_handshake_failures: self.http_tls_handshake_failures.load(Relaxed),
            admin_refusals: self.admin_refusals.load(Relaxed),
            clients_input_bytes,
            clients_output_bytes,
            clients_memory_peak: memory.peak(),
            connected_clients: self.connected_clients.load(Relaxed),
            total_connections: self.total_connections.load(Relaxed),
            rejected_connections: self.rejected_connections.load(Relaxed),
            total_commands: self.total_commands.load(Relaxed),
            error_replies: self.error_replies.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            net_input_bytes: self.net_input_bytes.load(Relaxed),
            net_output_bytes: self.net_output_bytes.load(Relaxed),
        }
    }
}

/// What the RESP and HTTP front ends of one node share.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use gridkv_server::shared::Shared;
///
/// let node = gridkv::GridKv::start(gridkv::GridKv::builder("n1").build()?).await?;
/// let shared = Shared::new(node, 10_000);
/// assert_eq!(shared.max_clients, 10_000);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Shared {
    /// The node.
    pub node: GridKv,
    /// Counters.
    pub stats: ServerStats,
    /// When the server started.
    pub started: Instant,
    /// Most clients connected at once.
    pub max_clients: usize,
    /// Parser bounds.
    pub limits: Limits,
    /// Every client's pending input and output, and their bounds.
    pub memory: ClientsMemory,
    /// How pipelined commands may overlap (`--pipeline-order`).
    pub pipeline_order: PipelineOrder,
    /// Set when the node begins to leave: `/health` turns 503.
    pub leaving: AtomicBool,
    /// The RESP address clients connect to (for INFO).
    pub resp_addr: OnceLock<SocketAddr>,
    /// The HTTP admin's address (whether it is loopback decides what the
    /// admin token guards).
    pub http_addr: OnceLock<SocketAddr>,
    /// The RESP users and their rights (`--requirepass`, `--acl-file`).
    pub acl: AclStore,
    /// `--resp-tls`: the RESP listener's TLS.
    pub resp_tls: Option<Arc<ServerTls>>,
    /// `--http-tls`: the HTTP admin's TLS.
    pub http_tls: Option<Arc<ServerTls>>,
    /// `--admin-token`: what the HTTP admin asks for (see [`crate::http`]).
    pub admin_token: Option<AdminToken>,
    /// The next `CLIENT ID`.
    pub(crate) next_client_id: AtomicU64,
    /// One permit per connected client.
    pub(crate) clients: Arc<Semaphore>,
    /// Pipelined commands running concurrently, server-wide; beyond it a
    /// group waits (and its client with it) rather than overrunning the
    /// transport's in-flight bound, which would fail operations.
    pub(crate) grouped: Semaphore,
}

impl Shared {
    /// State for a node's front ends, with at most `max_clients` RESP
    /// clients at once.
    pub fn new(node: GridKv, max_clients: usize) -> Self {
        let max_value = node.store().config().max_value_len;
        Self {
            node,
            stats: ServerStats::default(),
            started: Instant::now(),
            max_clients,
            limits: crate::config::ClientLimits::default().resp(max_value),
            memory: ClientsMemory::new(DEFAULT_MAX_CLIENT_OUTPUT, DEFAULT_MAX_CLIENTS_MEMORY),
            pipeline_order: PipelineOrder::default(),
            leaving: AtomicBool::new(false),
            resp_addr: OnceLock::new(),
            http_addr: OnceLock::new(),
            acl: AclStore::open(),
            resp_tls: None,
            http_tls: None,
            admin_token: None,
            next_client_id: AtomicU64::new(1),
            clients: Arc::new(Semaphore::new(max_clients)),
            grouped: Semaphore::new(MAX_GROUPED),
        }
    }
}
