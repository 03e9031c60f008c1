//! The Redis commands GridKV answers, run against the node's quorum API.
//!
//! Reads and writes use the node's N/W/R. A failed operation becomes an
//! error reply whose first word says what happened, so clients can tell
//! them apart:
//!
//! | reply | meaning |
//! |---|---|
//! | `-NOQUORUM ...` | too few owners answered (reads) or applied (writes); a failed write is indeterminate: it may have reached some owners and appear later |
//! | `-TIMEOUT ...` | the deadline passed first (also indeterminate for writes) |
//! | `-BUSY ...` | owners are overloaded: retry later |
//! | `-SHUTDOWN ...` | the node is leaving |
//! | `-ERR ...` | a bad command, key or value (nothing was stored) |
//!
//! Commands that touch several keys (`DEL`, `EXISTS`, `MGET`, `MSET`) run
//! the keys concurrently; if any key fails the whole reply is an error
//! that says how many keys failed and why the first one did (the writes
//! that succeeded stay written).
//!
//! Not supported, with a clear error: `SET ... NX|XX|GET|KEEPTTL` and
//! `EXPIRE ... NX|XX|GT|LT` need an atomic read-modify-write, which a
//! last-write-wins store without consensus cannot give; emulating them
//! with a read then a write would break under concurrency without saying
//! so.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gridkv::Error;

use crate::resp::Reply;
use crate::server::Shared;

/// Per-connection state.
#[derive(Debug, Clone)]
pub struct Session {
    /// Client id (`CLIENT ID`).
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
}

impl Session {
    /// A new client's session.
    pub fn new(id: u64, peer: SocketAddr) -> Self {
        Self {
            id,
            peer,
            name: None,
        }
    }
}

/// Whether the connection goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// Flush the replies and close (`QUIT`).
    Close,
}

/// The error reply for a failed operation (see the module docs).
pub fn error_reply(e: &Error) -> String {
    match e {
        Error::QuorumNotReached { .. } => format!("NOQUORUM {e}"),
        Error::Timeout { .. } => format!("TIMEOUT {e}"),
        Error::Backpressure => format!("BUSY {e}"),
        Error::ShuttingDown => format!("SHUTDOWN {e}"),
        _ => format!("ERR {e}"),
    }
}

/// What `COMMAND` says of a command: name, arity (negative: at least),
/// flags, first key, last key, key step.
type CommandInfo = (&'static str, i64, &'static [&'static str], i64, i64, i64);

/// The commands `COMMAND` lists.
const COMMANDS: &[CommandInfo] = &[
    ("ping", -1, &["fast"], 0, 0, 0),
    ("echo", 2, &["fast"], 0, 0, 0),
    ("get", 2, &["readonly", "fast"], 1, 1, 1),
    ("set", -3, &["write"], 1, 1, 1),
    ("del", -2, &["write"], 1, -1, 1),
    ("exists", -2, &["readonly", "fast"], 1, -1, 1),
    ("expire", -3, &["write", "fast"], 1, 1, 1),
    ("pexpire", -3, &["write", "fast"], 1, 1, 1),
    ("ttl", 2, &["readonly", "fast"], 1, 1, 1),
    ("pttl", 2, &["readonly", "fast"], 1, 1, 1),
    ("persist", 2, &["write", "fast"], 1, 1, 1),
    ("mget", -2, &["readonly", "fast"], 1, -1, 1),
    ("mset", -3, &["write"], 1, -1, 2),
    ("dbsize", 1, &["readonly", "fast"], 0, 0, 0),
    ("info", -1, &["loading", "stale"], 0, 0, 0),
    ("command", -1, &["loading", "stale"], 0, 0, 0),
    ("config", -2, &["admin", "loading", "stale"], 0, 0, 0),
    ("client", -2, &["loading", "stale"], 0, 0, 0),
    ("select", 2, &["loading", "stale", "fast"], 0, 0, 0),
    ("hello", -1, &["fast", "loading", "stale"], 0, 0, 0),
    ("quit", -1, &["fast"], 0, 0, 0),
];

fn upper(name: &[u8]) -> [u8; 16] {
    let mut buf = [0u8; 16];
    if name.len() <= buf.len() {
        for (b, c) in buf.iter_mut().zip(name) {
            *b = c.to_ascii_uppercase();
        }
    }
    buf
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

fn parse_int(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

fn wrong_args(out: &mut BytesMut, name: &str) {
    Reply::error(
        out,
        &format!("ERR wrong number of arguments for '{name}' command"),
    );
}

/// Runs one command and appends its reply to `out`.
pub async fn execute(
    shared: &Shared,
    session: &mut Session,
    args: &[Bytes],
    out: &mut BytesMut,
) -> Flow {
    let before = out.len();
    let flow = dispatch(shared, session, args, out).await;
    if out.get(before) == Some(&b'-') {
        shared.stats.error_replies.fetch_add(1, Relaxed);
    }
    flow
}

async fn dispatch(
    shared: &Shared,
    session: &mut Session,
    args: &[Bytes],
    out: &mut BytesMut,
) -> Flow {
    let node = &shared.node;
    let Some(name) = args.first() else {
        return Flow::Continue;
    };
    let n = args.len();
    let cmd = upper(name);
    let cmd: &[u8] = &cmd[..name.len().min(16)];
    match cmd {
        b"GET" if n == 2 => match node.get(&args[1]).await {
            Ok(v) => Reply::bulk(out, v.as_deref()),
            Err(e) => Reply::error(out, &error_reply(&e)),
        },
        b"SET" if n >= 3 => set(shared, args, out).await,
        b"PING" if n <= 2 => match args.get(1) {
            Some(msg) => Reply::bulk(out, Some(msg)),
            None => Reply::simple(out, "PONG"),
        },
        b"ECHO" if n == 2 => Reply::bulk(out, Some(&args[1])),
        b"DEL" if n >= 2 => {
            let results = join_all(args[1..].iter().map(|k| node.delete(k)).collect()).await;
            match count_or_error(&results, "DEL") {
                Ok(c) => Reply::integer(out, c),
                Err(msg) => Reply::error(out, &msg),
            }
        }
        b"EXISTS" if n >= 2 => {
            let results = join_all(args[1..].iter().map(|k| node.exists(k)).collect()).await;
            match count_or_error(&results, "EXISTS") {
                Ok(c) => Reply::integer(out, c),
                Err(msg) => Reply::error(out, &msg),
            }
        }
        b"MGET" if n >= 2 => {
            let results = join_all(args[1..].iter().map(|k| node.get(k)).collect()).await;
            match failure(&results, "MGET") {
                Some(msg) => Reply::error(out, &msg),
                None => {
                    Reply::array(out, results.len());
                    for r in &results {
                        Reply::bulk(out, r.as_ref().ok().and_then(|v| v.as_deref()));
                    }
                }
            }
        }
        b"MSET" if n >= 3 && n % 2 == 1 => {
            let results = join_all(
                args[1..]
                    .chunks_exact(2)
                    .map(|kv| node.set(&kv[0], kv[1].clone()))
                    .collect(),
            )
            .await;
            match failure(&results, "MSET") {
                Some(msg) => Reply::error(out, &msg),
                None => Reply::ok(out),
            }
        }
        b"EXPIRE" | b"PEXPIRE" if n >= 3 => {
            let ms = cmd == b"PEXPIRE";
            expire(shared, &args[1], &args[2], ms, &args[3..], out).await
        }
        b"TTL" | b"PTTL" if n == 2 => match node.ttl(&args[1]).await {
            Ok(None) => Reply::integer(out, -2),
            Ok(Some(None)) => Reply::integer(out, -1),
            Ok(Some(Some(left))) => {
                let ms = left.as_millis().min(i64::MAX as u128) as i64;
                Reply::integer(
                    out,
                    if cmd == b"PTTL" {
                        ms
                    } else {
                        // Rounded to the nearest second, as Redis; saturating
                        // because a TTL set near i64::MAX ms would overflow.
                        ms.saturating_add(500) / 1000
                    },
                )
            }
            Err(e) => Reply::error(out, &error_reply(&e)),
        },
        b"PERSIST" if n == 2 => match node.persist(&args[1]).await {
            Ok(removed) => Reply::integer(out, i64::from(removed)),
            Err(e) => Reply::error(out, &error_reply(&e)),
        },
        b"DBSIZE" if n == 1 => {
            // Keys with a live value on this node: its share of the
            // cluster's keys and its replicas of others (see docs/SERVER.md).
            Reply::integer(out, node.store().stats().live as i64)
        }
        b"INFO" => {
            let text = crate::info::render(shared, args.get(1).map(|a| &a[..]));
            Reply::bulk(out, Some(text.as_bytes()));
        }
        b"COMMAND" => command(args, out),
        b"CONFIG" if n >= 2 => config(shared, args, out),
        b"CLIENT" if n >= 2 => client(session, args, out),
        b"SELECT" if n == 2 => {
            if parse_int(&args[1]) == Some(0) {
                Reply::ok(out)
            } else {
                Reply::error(
                    out,
                    "ERR DB index is out of range (GridKV has one database, 0)",
                )
            }
        }
        b"HELLO" => hello(shared, args, out),
        b"QUIT" => {
            Reply::ok(out);
            return Flow::Close;
        }
        _ => {
            let name = String::from_utf8_lossy(name);
            if COMMANDS.iter().any(|c| c.0.eq_ignore_ascii_case(&name)) {
                wrong_args(out, &name.to_ascii_lowercase());
            } else {
                let shown: String = name.chars().take(64).collect();
                Reply::error(out, &format!("ERR unknown command '{shown}'"));
            }
        }
    }
    Flow::Continue
}

/// Keys of one multi-key command in flight at once.
const KEY_CONCURRENCY: usize = 128;

/// Runs the calls concurrently (at most [`KEY_CONCURRENCY`] at a time),
/// results in order.
/// (Taking the futures collected, not an iterator, keeps the iterator's
/// closure out of the connection task's state, which must be `Send` for
/// every lifetime.)
async fn join_all<F, T>(calls: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter(calls)
        .buffered(KEY_CONCURRENCY)
        .collect()
        .await
}

/// The error reply for a multi-key command if any key failed: how many
/// failed, and why the first did (one key: that key's reply as is).
fn failure<T>(results: &[Result<T, Error>], name: &str) -> Option<String> {
    let first = results.iter().find_map(|r| r.as_ref().err())?;
    let reply = error_reply(first);
    if results.len() == 1 {
        return Some(reply);
    }
    let failed = results.iter().filter(|r| r.is_err()).count();
    let (code, why) = reply.split_once(' ').unwrap_or(("ERR", &reply));
    Some(format!(
        "{code} {name} failed for {failed} of {} keys (the others succeeded); first: {why}",
        results.len()
    ))
}

/// How many results are `Ok(true)`, or [`failure`]'s reply.
fn count_or_error(results: &[Result<bool, Error>], name: &str) -> Result<i64, String> {
    match failure(results, name) {
        Some(msg) => Err(msg),
        None => Ok(results.iter().filter(|r| matches!(r, Ok(true))).count() as i64),
    }
}

async fn set(shared: &Shared, args: &[Bytes], out: &mut BytesMut) {
    let mut ttl: Option<Duration> = None;
    let mut i = 3;
    while i < args.len() {
        let opt = &args[i];
        if is(opt, "EX") || is(opt, "PX") {
            let Some(n) = args.get(i + 1).and_then(|a| parse_int(a)) else {
                return Reply::error(out, "ERR value is not an integer or out of range");
            };
            if n <= 0 {
                return Reply::error(out, "ERR invalid expire time in 'set' command");
            }
            if ttl.is_some() {
                return Reply::error(out, "ERR syntax error");
            }
            let n = n as u64;
            ttl = Some(if is(opt, "EX") {
                Duration::from_secs(n)
            } else {
                Duration::from_millis(n)
            });
            i += 2;
        } else if ["NX", "XX", "GET", "KEEPTTL", "EXAT", "PXAT"]
            .iter()
            .any(|w| is(opt, w))
        {
            return Reply::error(
                out,
                &format!(
                    "ERR SET {} is not supported: GridKV has no atomic conditional writes (last write wins)",
                    String::from_utf8_lossy(opt).to_ascii_uppercase()
                ),
            );
        } else {
            return Reply::error(out, "ERR syntax error");
        }
    }
    let result = match ttl {
        Some(ttl) => {
            shared
                .node
                .set_with_ttl(&args[1], args[2].clone(), ttl)
                .await
        }
        None => shared.node.set(&args[1], args[2].clone()).await,
    };
    match result {
        Ok(()) => Reply::ok(out),
        Err(e) => Reply::error(out, &error_reply(&e)),
    }
}

async fn expire(
    shared: &Shared,
    key: &[u8],
    amount: &[u8],
    ms: bool,
    opts: &[Bytes],
    out: &mut BytesMut,
) {
    if !opts.is_empty() {
        return Reply::error(
            out,
            "ERR EXPIRE NX|XX|GT|LT is not supported: GridKV has no atomic conditional writes",
        );
    }
    let Some(n) = parse_int(amount) else {
        return Reply::error(out, "ERR value is not an integer or out of range");
    };
    let node = &shared.node;
    let result = if n <= 0 {
        // As Redis: a TTL in the past deletes the key.
        node.delete(key).await
    } else {
        let n = n as u64;
        let ttl = if ms {
            Duration::from_millis(n)
        } else {
            Duration::from_secs(n)
        };
        node.expire(key, ttl).await
    };
    match result {
        Ok(existed) => Reply::integer(out, i64::from(existed)),
        Err(e) => Reply::error(out, &error_reply(&e)),
    }
}

fn command(args: &[Bytes], out: &mut BytesMut) {
    let sub = args.get(1);
    match sub {
        None => {
            Reply::array(out, COMMANDS.len());
            for c in COMMANDS {
                command_info(out, c);
            }
        }
        Some(s) if is(s, "COUNT") => Reply::integer(out, COMMANDS.len() as i64),
        Some(s) if is(s, "INFO") => {
            Reply::array(out, args.len() - 2);
            for name in &args[2..] {
                match COMMANDS.iter().find(|c| is(name, c.0)) {
                    Some(c) => command_info(out, c),
                    None => out.extend_from_slice(b"*-1\r\n"),
                }
            }
        }
        // redis-cli asks for docs to show hints; it works without them.
        Some(s) if is(s, "DOCS") => Reply::array(out, 0),
        Some(_) => Reply::error(out, "ERR unknown subcommand of 'command'"),
    }
}

fn command_info(out: &mut BytesMut, c: &CommandInfo) {
    Reply::array(out, 6);
    Reply::bulk(out, Some(c.0.as_bytes()));
    Reply::integer(out, c.1);
    Reply::array(out, c.2.len());
    for f in c.2 {
        Reply::simple(out, f);
    }
    Reply::integer(out, c.3);
    Reply::integer(out, c.4);
    Reply::integer(out, c.5);
}

/// `*`/`?` glob match, as CONFIG GET patterns use.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((&p, rest)) => text.split_first().is_some_and(|(&t, tail)| {
            (p == b'?' || p.eq_ignore_ascii_case(&t)) && glob(rest, tail)
        }),
    }
}

fn config(shared: &Shared, args: &[Bytes], out: &mut BytesMut) {
    if !is(&args[1], "GET") || args.len() < 3 {
        return Reply::error(
            out,
            "ERR GridKV supports only CONFIG GET; settings are given at start (flags, GRIDKV_* variables, config file)",
        );
    }
    let status = shared.node.replication_status();
    let store = shared.node.store().config();
    let values: [(&str, String); 9] = [
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("databases", "1".into()),
        ("maxmemory", store.memory_budget.to_string()),
        ("maxclients", shared.max_clients.to_string()),
        ("proto-max-bulk-len", shared.limits.max_bulk.to_string()),
        ("replicas", status.replicas.to_string()),
        ("write-quorum", status.write_quorum.to_string()),
        ("read-quorum", status.read_quorum.to_string()),
    ];
    let matches: Vec<&(&str, String)> = values
        .iter()
        .filter(|(k, _)| args[2..].iter().any(|p| glob(p, k.as_bytes())))
        .collect();
    Reply::array(out, matches.len() * 2);
    for (k, v) in matches {
        Reply::bulk(out, Some(k.as_bytes()));
        Reply::bulk(out, Some(v.as_bytes()));
    }
}

fn client(session: &mut Session, args: &[Bytes], out: &mut BytesMut) {
    let sub = &args[1];
    if is(sub, "SETNAME") && args.len() == 3 {
        if args[2].iter().any(|b| *b <= b' ' || *b > b'~') {
            return Reply::error(
                out,
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
        }
        session.name = (!args[2].is_empty()).then(|| args[2].clone());
        Reply::ok(out)
    } else if is(sub, "GETNAME") && args.len() == 2 {
        Reply::bulk(out, session.name.as_deref())
    } else if is(sub, "ID") && args.len() == 2 {
        Reply::integer(out, session.id as i64)
    } else if is(sub, "SETINFO") && args.len() == 4 {
        Reply::ok(out)
    } else if is(sub, "INFO") && args.len() == 2 {
        let name = session
            .name
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let line = format!("id={} addr={} name={name} db=0\n", session.id, session.peer);
        Reply::bulk(out, Some(line.as_bytes()))
    } else {
        Reply::error(
            out,
            &format!(
                "ERR unknown or unsupported subcommand '{}' of 'client'",
                String::from_utf8_lossy(sub)
            ),
        )
    }
}

fn hello(shared: &Shared, args: &[Bytes], out: &mut BytesMut) {
    if let Some(v) = args.get(1) {
        if parse_int(v) != Some(2) {
            return Reply::error(out, "NOPROTO this server speaks RESP2 only");
        }
    }
    let fields: [(&str, String); 7] = [
        ("server", "gridkv".into()),
        ("version", env!("CARGO_PKG_VERSION").into()),
        ("proto", "2".into()),
        ("id", "0".into()),
        ("mode", "cluster".into()),
        ("role", "master".into()),
        ("node", shared.node.id().to_string()),
    ];
    Reply::array(out, fields.len() * 2 + 2);
    for (k, v) in &fields {
        Reply::bulk(out, Some(k.as_bytes()));
        if *k == "proto" || *k == "id" {
            Reply::integer(out, v.parse().unwrap_or(0));
        } else {
            Reply::bulk(out, Some(v.as_bytes()));
        }
    }
    Reply::bulk(out, Some(b"modules"));
    Reply::array(out, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob(b"*", b"save"));
        assert!(glob(b"max*", b"maxmemory"));
        assert!(glob(b"SAVE", b"save"));
        assert!(glob(b"s?ve", b"save"));
        assert!(!glob(b"max*", b"save"));
        assert!(!glob(b"sav", b"save"));
    }

    #[test]
    fn error_codes_name_the_failure() {
        let e = Error::QuorumNotReached {
            answered: 1,
            required: 2,
        };
        assert!(error_reply(&e).starts_with("NOQUORUM quorum not reached: 1 of 2"));
        assert!(error_reply(&Error::Backpressure).starts_with("BUSY "));
        assert!(error_reply(&Error::ValueTooLarge { len: 9, max: 8 })
            .starts_with("ERR value is 9 bytes"));
    }

    #[test]
    fn partial_failures_say_so() {
        let results: Vec<Result<bool, Error>> = vec![
            Ok(true),
            Err(Error::QuorumNotReached {
                answered: 1,
                required: 2,
            }),
            Ok(false),
        ];
        let msg = count_or_error(&results, "DEL").unwrap_err();
        assert!(
            msg.starts_with("NOQUORUM DEL failed for 1 of 3 keys"),
            "{msg}"
        );
        let ok: Vec<Result<bool, Error>> = vec![Ok(true), Ok(false), Ok(true)];
        assert_eq!(count_or_error(&ok, "DEL"), Ok(2));
        let one: Vec<Result<(), Error>> = vec![Err(Error::Backpressure)];
        assert!(failure(&one, "MSET")
            .unwrap()
            .starts_with("BUSY backpressure"));
    }

    #[tokio::test]
    async fn join_all_keeps_order() {
        let r = join_all(
            (0..5u64)
                .map(|i| async move {
                    tokio::time::sleep(Duration::from_millis(10 * (5 - i))).await;
                    i
                })
                .collect(),
        )
        .await;
        assert_eq!(r, vec![0, 1, 2, 3, 4]);
    }
}
