//! The RESP listener: accepts clients (up to a limit), reads pipelined
//! commands, runs them in order and writes the replies back in batches.
//!
//! # Examples
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use gridkv_server::server::serve_resp;
//! use gridkv_server::shared::Shared;
//!
//! let node = gridkv::GridKv::start(gridkv::GridKv::builder("n1").build()?).await?;
//! let shared = Arc::new(Shared::new(node, 10_000));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:6380").await?;
//! let cancel = tokio_util::sync::CancellationToken::new();
//! serve_resp(listener, shared, cancel).await;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cmd::{Command, ParseError};
use crate::resp::{Protocol, Reply, parse_command};
use crate::session::Session;
use crate::shared::Shared;

/// Replies are written once this many bytes are waiting, even in the middle
/// of a pipeline, so a pipeline of large reads holds a bounded buffer.
const FLUSH_AT: usize = 64 << 10;
/// Bytes read from the socket at a time (the buffer grows past it only for
/// one large bulk, bounded by [`Limits::max_bulk`](crate::resp::Limits)).
const READ_CHUNK: usize = 16 << 10;

/// Most pipelined commands run at once on one connection.
const MAX_GROUP: usize = 64;

/// A command as read from the client: parsed, or refused before it runs.
type Parsed = Result<Command, ParseError>;

/// The key of a command that may run concurrently with the commands
/// around it in a pipeline: one that touches a single key (`GET`, `SET`,
/// `DEL` of one key, ...; see [`Command::key`]). A group holds such
/// commands on distinct keys only, so running them at once cannot reorder
/// anything a client could observe: commands on the same key, and every
/// other command, still run one after another in the order sent. Only
/// clusters with more than one copy group commands (each waits for the
/// network); a one-copy node answers from its store at once.
fn group_key(parsed: &Parsed) -> Option<&[u8]> {
    parsed.as_ref().ok().and_then(Command::key)
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
    Reply::error("ERR max number of clients reached").encode(Protocol::Resp2, &mut out);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(&out)).await;
}

/// Runs one command (or answers its refusal) and counts an error reply.
async fn run(shared: &Shared, session: &mut Session, parsed: Parsed) -> Reply {
    let reply = match parsed {
        Ok(command) => command.apply(shared, session).await,
        Err(refused) => refused.into(),
    };
    if reply.is_error() {
        shared.stats.error_replies.fetch_add(1, Relaxed);
    }
    reply
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
    let mut held: Option<Parsed> = None;
    // One wait for cancellation for the whole connection: a fresh one per
    // read registered and dropped a `Notified` each time, about 300
    // instructions of every unpipelined command (callgrind).
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        // Whether commands on distinct keys may run at once (with replicas
        // they wait on the network); read once per batch of input.
        let concurrent = shared.node.replication_status().effective_replicas > 1;
        // Run every complete command in the buffer, in order: a group of
        // independent ones at a time (see `group_key`).
        loop {
            let mut group: Vec<Parsed> = Vec::new();
            let mut failure = None;
            loop {
                let parsed = match held.take() {
                    Some(parsed) => parsed,
                    None => match parse_command(&mut input, &shared.limits) {
                        Ok(Some(args)) => Command::parse(args),
                        Ok(None) => break,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    },
                };
                let joins = match (group.first().and_then(group_key), group_key(&parsed)) {
                    _ if group.is_empty() => true,
                    (Some(_), Some(key)) => {
                        concurrent
                            && group.len() < MAX_GROUP
                            && group.iter().all(|g| group_key(g) != Some(key))
                    }
                    _ => false,
                };
                if joins {
                    group.push(parsed);
                    if !concurrent || group_key(&group[0]).is_none() {
                        break;
                    }
                } else {
                    held = Some(parsed);
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
                let parsed = group.pop().expect("one command");
                let closes = matches!(&parsed, Ok(c) if c.closes());
                run(shared, session, parsed)
                    .await
                    .encode(session.protocol, &mut out);
                if closes {
                    write_out(&mut stream, &mut out, shared).await?;
                    return Ok(());
                }
            } else if !group.is_empty() {
                // Independent keys: run at once, answer in order.
                let runs = group.into_iter().map(|parsed| {
                    let mut own = session.clone();
                    async move {
                        let _permit = shared.grouped.acquire().await;
                        run(shared, &mut own, parsed).await
                    }
                });
                for reply in futures_util::future::join_all(runs).await {
                    reply.encode(session.protocol, &mut out);
                }
            }
            if let Some(e) = failure {
                shared.stats.protocol_errors.fetch_add(1, Relaxed);
                shared.stats.error_replies.fetch_add(1, Relaxed);
                Reply::error(format!("ERR {e}")).encode(session.protocol, &mut out);
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
            biased;
            _ = &mut cancelled => return Ok(()),
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
