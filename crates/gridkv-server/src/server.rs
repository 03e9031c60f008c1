//! The RESP listener: accepts clients (up to a limit), reads pipelined
//! commands, runs them in order and writes the replies back in batches.
//! Within a pipeline, consecutive reads of distinct keys may run together;
//! a write runs alone, once everything before it has finished, so other
//! clients see one connection's writes in the order it sent them (see
//! [`PipelineOrder`]).
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

use crate::cmd::{Command, ParseError, authorize, multi, parse_gated};
use crate::limits::Limit;
use crate::resp::{Parser, Protocol, Reply};
use crate::session::Session;
use crate::shared::Shared;
use crate::writer::{ClientStream, Closed, Output};

/// Bytes read from the socket at a time (the buffer grows past it only for
/// one large bulk, bounded by [`Limits::max_bulk`](crate::resp::Limits)).
const READ_CHUNK: usize = 16 << 10;

/// Most pipelined commands run at once on one connection.
const MAX_GROUP: usize = 64;

/// A command as read from the client: parsed, or refused before it runs.
type Parsed = Result<Command, ParseError>;

pub use crate::config::PipelineOrder;

/// What a command does to the keys it names, for [`joins`]. Reads and
/// writes of exactly one key may overlap with their neighbours in a
/// pipeline; every other command (several keys, no key, a refusal) runs
/// alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access<'a> {
    /// Reads one key: `GET`, `EXISTS`, `TTL`, `PTTL`.
    Read(&'a [u8]),
    /// Writes one key: `SET`, `DEL`, `EXPIRE`, `PEXPIRE`, `PERSIST`.
    Write(&'a [u8]),
    /// Runs alone.
    Alone,
}

fn access(parsed: &Parsed) -> Access<'_> {
    let Ok(command) = parsed else {
        return Access::Alone;
    };
    let Some(key) = command.key() else {
        return Access::Alone;
    };
    match command {
        Command::Get(_) | Command::Exists(_) | Command::Ttl(_) => Access::Read(key),
        _ => Access::Write(key),
    }
}

/// Whether `next` may run together with the commands of `group` (all
/// sent before it, none finished): under `Strict` only single-key reads
/// of distinct keys run together, so no write overlaps any command before
/// it and no read overlaps a write before it; under `Relaxed`, any
/// single-key commands on distinct keys. Commands on one key never run
/// together, so a client always sees its own writes in order.
fn joins(group: &[Parsed], next: &Parsed, order: PipelineOrder) -> bool {
    if group.is_empty() {
        return true;
    }
    if group.len() >= MAX_GROUP {
        return false;
    }
    let Some(key) = overlapping_key(next, order) else {
        return false;
    };
    group
        .iter()
        .all(|g| overlapping_key(g, order).is_some_and(|k| k != key))
}

/// The key of a command that may overlap with others under `order`.
fn overlapping_key(parsed: &Parsed, order: PipelineOrder) -> Option<&[u8]> {
    match (order, access(parsed)) {
        (PipelineOrder::Strict, Access::Read(key)) => Some(key),
        (PipelineOrder::Relaxed, Access::Read(key) | Access::Write(key)) => Some(key),
        _ => None,
    }
}

/// Accepts RESP clients on `listener` until `cancel` fires; then waits for
/// open connections to finish the command they are running.
pub async fn serve_resp(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        let _ = shared.resp_addr.set(addr);
    }
    if shared.pipeline_order == PipelineOrder::Relaxed {
        tracing::warn!(
            "--pipeline-order relaxed: pipelined writes on distinct keys run at once, \
             so other clients may see them out of the order sent"
        );
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
            // A TLS client could not read a plaintext refusal: it is
            // closed without one.
            if shared.resp_tls.is_none() {
                tracker.spawn(refuse(stream));
            }
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
            session.user = shared.acl.current().initial_user();
            session.acl_generation = shared.acl.generation();
            let result = match &shared.resp_tls {
                None => connection(stream, &shared, &mut session, &cancel).await,
                // The handshake runs in the client's task, holding its
                // permit: handshakes are bounded as clients are.
                Some(tls) => match tls.handshake(stream).await {
                    Ok(stream) => connection(stream, &shared, &mut session, &cancel).await,
                    Err(e) => {
                        shared.stats.tls_handshake_failures.fetch_add(1, Relaxed);
                        tracing::debug!("RESP TLS handshake with {peer} failed: {e}");
                        Ok(())
                    }
                },
            };
            ended(&shared, peer, result);
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

/// Runs one command (or answers its refusal, or the gate's: see
/// [`authorize`]) and counts an error reply.
async fn run(shared: &Shared, session: &mut Session, parsed: Parsed) -> Reply {
    let reply = match authorize(&shared.acl, session, parsed) {
        Ok(command) if session.transaction.is_some() && multi::queues(&command) => {
            multi::queue(session, command)
        }
        Ok(command) => command.apply(shared, session).await,
        Err(refused) => {
            // Refused while queueing: `EXEC` discards the batch.
            if let Some(tx) = session.transaction.as_mut() {
                tx.fail();
            }
            refused
        }
    };
    if reply.is_error() {
        shared.stats.error_replies.fetch_add(1, Relaxed);
    }
    reply
}

/// Runs one command alone and queues its reply; `MGET` writes its reply
/// as it reads, in batches (see [`MGet::stream`]).
async fn run_alone<S: ClientStream>(
    shared: &Shared,
    session: &mut Session,
    parsed: Parsed,
    out: &mut Output<'_, S>,
) -> Result<(), Closed> {
    if session.transaction.is_none() && matches!(parsed, Ok(Command::MGet(_))) {
        let mget = match authorize(&shared.acl, session, parsed) {
            Ok(Command::MGet(mget)) => mget,
            Ok(_) => unreachable!("authorize returns the command it was given"),
            Err(refused) => {
                shared.stats.error_replies.fetch_add(1, Relaxed);
                return out.reply(&refused, session.protocol).await;
            }
        };
        let node = match session.consistency {
            Some(level) => shared.node.with_consistency(level),
            None => shared.node.clone(),
        };
        if let Some(error) = mget.stream(&node, out, session.protocol).await? {
            shared.stats.error_replies.fetch_add(1, Relaxed);
            out.reply(&error, session.protocol).await?;
        }
        return Ok(());
    }
    let reply = run(shared, session, parsed).await;
    out.reply(&reply, session.protocol).await
}

/// Serves one client until it leaves, sends what cannot be parsed, or
/// reaches a bound; the caller counts and logs how it ended.
async fn connection<S: ClientStream>(
    mut stream: S,
    shared: &Shared,
    session: &mut Session,
    cancel: &CancellationToken,
) -> Result<(), Closed> {
    let account = shared.memory.register(session.id, cancel);
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut parser = Parser::new();
    let mut scanned = 0;
    let mut out = Output::new(&mut stream, &account, shared, cancel);
    // A command parsed but held for the next group.
    let mut held: Option<Parsed> = None;
    // One wait for shutdown or the registry's close for the whole
    // connection: a fresh one per read registered and dropped a `Notified`
    // each time, about 300 instructions of every unpipelined command
    // (callgrind); a second one cost 600 more.
    let closed = account.closed();
    tokio::pin!(closed);
    let order = shared.pipeline_order;
    loop {
        // Whether commands may run at once at all (with replicas they wait
        // on the network); read once per batch of input.
        let concurrent = shared.node.replication_status().effective_replicas > 1;
        // Run every complete command in the buffer, in order: a group of
        // commands that may overlap at a time (see `joins`).
        loop {
            let mut group: Vec<Parsed> = Vec::new();
            let mut failure = None;
            loop {
                let parsed = match held.take() {
                    Some(parsed) => parsed,
                    None => match parser.next(&mut input, &shared.limits) {
                        Ok(Some(args)) => parse_gated(args),
                        Ok(None) => break,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    },
                };
                // Inside MULTI, commands are queued one by one, in order.
                let batching = session.transaction.is_some();
                if group.is_empty() || (concurrent && !batching && joins(&group, &parsed, order)) {
                    group.push(parsed);
                    if !concurrent {
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
                run_alone(shared, session, parsed, &mut out).await?;
                if closes {
                    return out.flush().await;
                }
            } else if !group.is_empty() {
                // Commands that may overlap (see `joins`): run at once,
                // answer in order.
                let runs = group.into_iter().map(|parsed| {
                    let mut own = session.clone();
                    async move {
                        let _permit = shared.grouped.acquire().await;
                        run(shared, &mut own, parsed).await
                    }
                });
                let replies = futures_util::future::join_all(runs).await;
                let mut pending: usize = replies.iter().map(Reply::payload_len).sum();
                out.hold_group(pending)?;
                for reply in &replies {
                    pending -= reply.payload_len();
                    out.hold_group(pending)?;
                    out.reply(reply, session.protocol).await?;
                }
            }
            if let Some(e) = failure {
                shared.stats.protocol_errors.fetch_add(1, Relaxed);
                shared.stats.error_replies.fetch_add(1, Relaxed);
                if let Some(limit) = e.limit() {
                    shared.stats.limits.hit(limit);
                    tracing::debug!("client {}: {e}", session.peer);
                }
                out.reply(&Reply::error(format!("ERR {e}")), session.protocol)
                    .await?;
                return out.flush().await;
            }
        }
        // Counted before the replies go out, so a client that reads them
        // then asks for the metric sees its command's bytes.
        shared
            .stats
            .parser_scanned_bytes
            .fetch_add(parser.scanned_bytes() - scanned, Relaxed);
        scanned = parser.scanned_bytes();
        out.flush().await?;
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        account.set_input(input.len())?;
        let n = tokio::select! {
            biased;
            () = &mut closed => {
                if cancel.is_cancelled() {
                    return Ok(());
                }
                // Between replies: the client can be told why (if its
                // socket takes the line at once).
                let why = format!(
                    "-ERR closed: all clients hold more than max-clients-memory ({}) \
                     and this client held the most\r\n",
                    shared.memory.max_total()
                );
                let _ = out.stream.try_write_now(why.as_bytes());
                return Err(Closed::Limit(Limit::ClientsMemory));
            }
            n = out.stream.read_buf(&mut input) => n?,
        };
        if n == 0 {
            return Ok(());
        }
        shared.stats.net_input_bytes.fetch_add(n as u64, Relaxed);
    }
}

/// Counts and logs how a connection ended, if it was not the client's
/// choice: a bound reached is a warning (at most one a second), a socket
/// error a debug line.
fn ended(shared: &Shared, peer: std::net::SocketAddr, result: Result<(), Closed>) {
    static LAST_WARNING: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    match result {
        Ok(()) => {}
        Err(Closed::Limit(limit)) => {
            shared.stats.limits.hit(limit);
            let mut last = LAST_WARNING.lock().expect("warning time");
            if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                *last = Some(std::time::Instant::now());
                tracing::warn!(
                    "closed RESP client {peer}: it reached {} \
                     (further closes this second are not logged)",
                    limit.name()
                );
            }
        }
        Err(e @ Closed::MidReply(_)) => tracing::warn!("client {peer}: {e}"),
        Err(e) => tracing::debug!("client {peer}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn parsed(line: &str) -> Parsed {
        Command::parse(
            line.split(' ')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect(),
        )
    }

    fn group(lines: &[&str]) -> Vec<Parsed> {
        lines.iter().map(|l| parsed(l)).collect()
    }

    #[test]
    fn strict_order_never_overlaps_a_write_with_anything_before_it() {
        let strict = PipelineOrder::Strict;
        for write in [
            "SET b 1",
            "DEL b",
            "EXPIRE b 10",
            "PEXPIRE b 10",
            "PERSIST b",
        ] {
            for before in [&["GET a"][..], &["SET a 1"], &["GET a", "GET c"]] {
                assert!(
                    !joins(&group(before), &parsed(write), strict),
                    "{write} after {before:?}"
                );
            }
        }
        // Nor a read with a write before it.
        for read in ["GET b", "EXISTS b", "TTL b", "PTTL b"] {
            assert!(
                !joins(&group(&["SET a 1"]), &parsed(read), strict),
                "{read}"
            );
            assert!(!joins(&group(&["GET c", "DEL a"]), &parsed(read), strict));
        }
    }

    #[test]
    fn strict_order_runs_reads_of_distinct_keys_together() {
        let strict = PipelineOrder::Strict;
        let reads = group(&["GET a", "EXISTS b", "TTL c"]);
        assert!(joins(&reads, &parsed("PTTL d"), strict));
        assert!(joins(&reads, &parsed("GET e"), strict));
        // The same key twice: in turn, so the second read is not older.
        assert!(!joins(&reads, &parsed("GET b"), strict));
        // Commands of several keys or none run alone.
        for alone in ["MGET x y", "EXISTS x y", "PING", "INFO"] {
            assert!(!joins(&reads, &parsed(alone), strict), "{alone}");
            assert!(
                !joins(&group(&[alone]), &parsed("GET z"), strict),
                "{alone}"
            );
        }
        assert!(!joins(&reads, &parsed("GET"), strict), "a refusal");
        // A group starts with anything.
        assert!(joins(&[], &parsed("SET a 1"), strict));
    }

    #[test]
    fn relaxed_order_overlaps_single_key_commands_on_distinct_keys() {
        let relaxed = PipelineOrder::Relaxed;
        let mixed = group(&["SET a 1", "GET b", "DEL c"]);
        assert!(joins(&mixed, &parsed("SET d 1"), relaxed));
        assert!(joins(&mixed, &parsed("EXPIRE e 5"), relaxed));
        assert!(!joins(&mixed, &parsed("GET a"), relaxed), "one key in turn");
        assert!(!joins(&mixed, &parsed("MSET x 1 y 2"), relaxed));
    }

    #[test]
    fn a_group_is_bounded() {
        let full: Vec<Parsed> = (0..MAX_GROUP)
            .map(|i| parsed(&format!("GET k{i}")))
            .collect();
        assert!(!joins(&full, &parsed("GET other"), PipelineOrder::Strict));
        assert!(joins(
            &full[1..],
            &parsed("GET other"),
            PipelineOrder::Strict
        ));
    }
}
