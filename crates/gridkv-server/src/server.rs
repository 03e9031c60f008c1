//! The RESP listener: accepts clients (up to a limit), reads pipelined
//! commands, runs them in order and writes the replies back in batches.
//!
//! # Examples
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use gridkv_server::server::{serve_resp, Shared};
//!
//! let node = gridkv::GridKv::start(gridkv::GridKv::builder("n1").build()?).await?;
//! let shared = Arc::new(Shared::new(node, 10_000));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:6380").await?;
//! let cancel = tokio_util::sync::CancellationToken::new();
//! serve_resp(listener, shared, cancel).await;
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use gridkv::GridKv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::commands::{execute, Flow, Session};
use crate::resp::{parse_command, Limits, Reply};

/// Replies are written once this many bytes are waiting, even in the middle
/// of a pipeline, so a pipeline of large reads holds a bounded buffer.
const FLUSH_AT: usize = 64 << 10;
/// Bytes read from the socket at a time (the buffer grows past it only for
/// one large bulk, bounded by [`Limits::max_bulk`]).
const READ_CHUNK: usize = 16 << 10;

/// Most pipelined commands run at once on one connection.
const MAX_GROUP: usize = 64;
/// Most pipelined commands run at once on the whole server. Well under
/// the transport's in-flight bound per peer (1,024): a write returns at W
/// while its request to the slowest owner is still in flight, so requests
/// outnumber running commands, and at 512 a saturated 3-node cluster shed
/// requests (`Overloaded`, failing writes) in `scripts/bench-vs-redis.sh`.
const MAX_GROUPED: usize = 128;

/// Whether a command may run concurrently with the commands around it in
/// a pipeline: a single-key read or write (`GET`, `SET`, `DEL`, `EXISTS`
/// of one key). A group holds such commands on distinct keys only, so
/// running them at once cannot reorder anything a client could observe:
/// commands on the same key, and every other command, still run one after
/// another in the order sent. Only clusters with more than one copy group
/// commands (each waits for the network); a one-copy node answers from its
/// store at once.
fn groupable(args: &[Bytes]) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    let is = |w: &str| name.eq_ignore_ascii_case(w.as_bytes());
    match args.len() {
        2 => is("GET") || is("DEL") || is("EXISTS"),
        3 | 5 => is("SET"),
        _ => false,
    }
}

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
}

/// What the RESP and HTTP front ends of one node share.
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
    /// Set when the node begins to leave: `/health` turns 503.
    pub leaving: AtomicBool,
    /// The RESP address clients connect to (for INFO).
    pub resp_addr: std::sync::OnceLock<std::net::SocketAddr>,
    next_client_id: AtomicU64,
    clients: Arc<Semaphore>,
    /// Pipelined commands running concurrently, server-wide; beyond it a
    /// group waits (and its client with it) rather than overrunning the
    /// transport's in-flight bound, which would fail operations.
    grouped: Semaphore,
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
            // A bulk may be twice the value limit before the parser refuses
            // to buffer it; between the two the store refuses it with a
            // clear error and the connection stays usable.
            limits: Limits {
                max_bulk: max_value.saturating_mul(2).max(Limits::default().max_bulk),
                ..Limits::default()
            },
            leaving: AtomicBool::new(false),
            resp_addr: std::sync::OnceLock::new(),
            next_client_id: AtomicU64::new(1),
            clients: Arc::new(Semaphore::new(max_clients)),
            grouped: Semaphore::new(MAX_GROUPED),
        }
    }
}

/// Accepts RESP clients on `listener` until `cancel` fires; then waits for
/// open connections to finish the command they are running.
pub async fn serve_resp(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        let _ = shared.resp_addr.set(addr);
    }
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!("RESP accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = shared.clients.clone().try_acquire_owned() else {
            shared.stats.rejected_connections.fetch_add(1, Relaxed);
            tracker.spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            shared.stats.total_connections.fetch_add(1, Relaxed);
            let _connected = Connected::new(&shared.stats.connected_clients);
            let id = shared.next_client_id.fetch_add(1, Relaxed);
            let mut session = Session::new(id, peer);
            if let Err(e) = connection(stream, &shared, &mut session, &cancel).await {
                tracing::debug!("client {peer}: {e}");
            }
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Counts a client as connected while it lives (a panicking connection
/// task still uncounts itself).
struct Connected<'a>(&'a AtomicU64);

impl<'a> Connected<'a> {
    fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Relaxed);
        Self(gauge)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

async fn refuse(mut stream: TcpStream) {
    let mut out = BytesMut::new();
    Reply::error(&mut out, "ERR max number of clients reached");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(&out)).await;
}

async fn connection(
    mut stream: TcpStream,
    shared: &Shared,
    session: &mut Session,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    // A command parsed but held for the next group.
    let mut held: Option<Vec<Bytes>> = None;
    loop {
        // Run every complete command in the buffer, in order: a group of
        // independent ones at a time (see `groupable`).
        loop {
            let mut group: Vec<Vec<Bytes>> = Vec::new();
            let mut failure = None;
            let concurrent = shared.node.replication_status().effective_replicas > 1;
            loop {
                let args = match held.take() {
                    Some(args) => args,
                    None => match parse_command(&mut input, &shared.limits) {
                        Ok(Some(args)) => args,
                        Ok(None) => break,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    },
                };
                let joins = group.is_empty()
                    || (concurrent
                        && group.len() < MAX_GROUP
                        && groupable(&args)
                        && groupable(&group[0])
                        && group.iter().all(|g| g[1] != args[1]));
                if joins {
                    group.push(args);
                    if !concurrent || !groupable(&group[0]) {
                        break;
                    }
                } else {
                    held = Some(args);
                    break;
                }
            }
            if group.is_empty() && failure.is_none() {
                break;
            }
            shared
                .stats
                .total_commands
                .fetch_add(group.len() as u64, Relaxed);
            if group.len() == 1 {
                if execute(shared, session, &group[0], &mut out).await == Flow::Close {
                    write_out(&mut stream, &mut out, shared).await?;
                    return Ok(());
                }
            } else if !group.is_empty() {
                // Independent keys: run at once, answer in order.
                let runs = group.iter().map(|args| {
                    let mut own = session.clone();
                    async move {
                        let _permit = shared.grouped.acquire().await;
                        let mut reply = BytesMut::new();
                        execute(shared, &mut own, args, &mut reply).await;
                        reply
                    }
                });
                for reply in futures_util::future::join_all(runs).await {
                    out.extend_from_slice(&reply);
                }
            }
            if let Some(e) = failure {
                shared.stats.protocol_errors.fetch_add(1, Relaxed);
                shared.stats.error_replies.fetch_add(1, Relaxed);
                Reply::error(&mut out, &format!("ERR {e}"));
                write_out(&mut stream, &mut out, shared).await?;
                return Ok(());
            }
            if out.len() >= FLUSH_AT {
                write_out(&mut stream, &mut out, shared).await?;
            }
        }
        if !out.is_empty() {
            write_out(&mut stream, &mut out, shared).await?;
        }
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        let n = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            n = stream.read_buf(&mut input) => n?,
        };
        if n == 0 {
            return Ok(());
        }
        shared.stats.net_input_bytes.fetch_add(n as u64, Relaxed);
    }
}

async fn write_out(
    stream: &mut TcpStream,
    out: &mut BytesMut,
    shared: &Shared,
) -> std::io::Result<()> {
    shared
        .stats
        .net_output_bytes
        .fetch_add(out.len() as u64, Relaxed);
    stream.write_all(out).await?;
    out.clear();
    // A large reply's buffer is not kept for the rest of the connection.
    if out.capacity() > 4 * FLUSH_AT {
        *out = BytesMut::with_capacity(READ_CHUNK);
    }
    Ok(())
}
