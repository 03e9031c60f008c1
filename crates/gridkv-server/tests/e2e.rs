//! End to end: real `gridkv node` processes on loopback, spoken to with a
//! real Redis client (`redis`), raw sockets and HTTP.
//!
//! Tests that run several nodes are named `cluster_*`, so nextest runs them
//! one at a time (see `.config/nextest.toml`): their timing is real. The
//! one-node tests (N = W = R = 1) are independent and run in parallel.

// Each test binary compiles the harness whole and uses part of it.
#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Cluster, Node, ONE_COPY, eventually, one_node, run_to_exit};
use redis::{Connection, RedisResult, Value};

fn set(con: &mut Connection, key: impl redis::ToRedisArgs, value: impl redis::ToRedisArgs) {
    let reply: String = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query(con)
        .expect("SET");
    assert_eq!(reply, "OK");
}

fn get(con: &mut Connection, key: impl redis::ToRedisArgs) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query(con).expect("GET")
}

fn int(con: &mut Connection, args: &[&str]) -> i64 {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The error reply a command got, as the server wrote it (`ERR ...`).
fn error_of<T: std::fmt::Debug>(result: RedisResult<T>) -> String {
    let e = result.expect_err("an error reply");
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => panic!("not an error reply: {e}"),
    }
}

/// Everything a raw socket reads until the server closes it.
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the server closes the connection (read timed out or failed instead)");
    out
}

/// The value of an `INFO` field.
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_owned())
}

#[test]
fn ping_echo_get_set_del_exists_mget_mset() {
    let node = one_node();
    let mut con = node.con();

    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let msg: String = redis::cmd("PING")
        .arg("hello there")
        .query(&mut con)
        .unwrap();
    assert_eq!(msg, "hello there");
    let echo: Vec<u8> = redis::cmd("ECHO")
        .arg(&b"a\r\nb\0"[..])
        .query(&mut con)
        .unwrap();
    assert_eq!(echo, b"a\r\nb\0");

    assert_eq!(get(&mut con, "missing"), None);
    set(&mut con, "k", "v1");
    assert_eq!(get(&mut con, "k").as_deref(), Some(&b"v1"[..]));
    set(&mut con, "k", "v2");
    assert_eq!(get(&mut con, "k").as_deref(), Some(&b"v2"[..]));

    // Conditional writes: NX stores only an absent key, XX only a present
    // one; a refused one stores nothing. KEEPTTL is refused, clearly.
    let nx = |con: &mut redis::Connection, key: &str, value: &str, opt: &str| -> Value {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg(opt)
            .query(con)
            .unwrap()
    };
    assert_eq!(nx(&mut con, "nx-key", "v", "NX"), Value::Okay);
    assert_eq!(nx(&mut con, "nx-key", "w", "NX"), Value::Nil);
    assert_eq!(get(&mut con, "nx-key").as_deref(), Some(&b"v"[..]));
    assert_eq!(nx(&mut con, "xx-key", "v", "XX"), Value::Nil);
    assert_eq!(get(&mut con, "xx-key"), None);
    assert_eq!(nx(&mut con, "k", "v2", "XX"), Value::Okay);
    let e = error_of(
        redis::cmd("SET")
            .arg("k")
            .arg("other")
            .arg("KEEPTTL")
            .query::<Value>(&mut con),
    );
    assert!(e.starts_with("ERR SET KEEPTTL is not supported"), "{e}");
    assert_eq!(get(&mut con, "k").as_deref(), Some(&b"v2"[..]));
    let e = error_of(
        redis::cmd("SET")
            .arg("k")
            .arg("v")
            .arg("BOGUS")
            .query::<Value>(&mut con),
    );
    assert_eq!(e, "ERR syntax error");

    // Multi-key counts; EXISTS counts a key each time it is named, as Redis.
    set(&mut con, "a", "1");
    set(&mut con, "b", "2");
    assert_eq!(int(&mut con, &["EXISTS", "a", "b", "nope"]), 2);
    assert_eq!(int(&mut con, &["EXISTS", "a", "a", "a", "nope"]), 3);
    assert_eq!(int(&mut con, &["DEL", "a", "b", "nope"]), 2);
    assert_eq!(int(&mut con, &["DEL", "a", "b"]), 0);
    assert_eq!(int(&mut con, &["EXISTS", "a", "b"]), 0);

    let ok: String = redis::cmd("MSET")
        .arg(&["m1", "x", "m2", "y", "m3", "z"])
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["m1", "gone", "m2", "m3", "also-gone"])
        .query(&mut con)
        .unwrap();
    assert_eq!(
        values,
        vec![
            Some("x".into()),
            None,
            Some("y".into()),
            Some("z".into()),
            None
        ]
    );
    // An odd number of MSET arguments is an arity error, nothing stored.
    let e = error_of(
        redis::cmd("MSET")
            .arg(&["m4", "x", "m5"])
            .query::<Value>(&mut con),
    );
    assert!(e.contains("wrong number of arguments for 'mset'"), "{e}");
    assert_eq!(int(&mut con, &["EXISTS", "m4", "m5"]), 0);

    let e = error_of(redis::cmd("FLUSHEVERYTHING").query::<Value>(&mut con));
    assert!(e.starts_with("ERR unknown command"), "{e}");
    assert!(e.contains("FLUSHEVERYTHING"), "{e}");
    let e = error_of(redis::cmd("GET").query::<Value>(&mut con));
    assert!(e.contains("wrong number of arguments for 'get'"), "{e}");
    // Still usable after error replies.
    assert_eq!(get(&mut con, "m1").as_deref(), Some(&b"x"[..]));
}

#[test]
fn expiry_commands() {
    let node = one_node();
    let mut con = node.con();

    // SET EX / PX: TTL and PTTL count down from what was given.
    let _: () = redis::cmd("SET")
        .arg("ex")
        .arg("v")
        .arg("EX")
        .arg(100)
        .query(&mut con)
        .unwrap();
    let ttl = int(&mut con, &["TTL", "ex"]);
    assert!((98..=100).contains(&ttl), "TTL {ttl}");
    let pttl = int(&mut con, &["PTTL", "ex"]);
    assert!((90_000..=100_000).contains(&pttl), "PTTL {pttl}");
    let _: () = redis::cmd("SET")
        .arg("px")
        .arg("v")
        .arg("PX")
        .arg(50_000)
        .query(&mut con)
        .unwrap();
    let pttl = int(&mut con, &["PTTL", "px"]);
    assert!((40_000..=50_000).contains(&pttl), "PTTL {pttl}");
    let e = error_of(
        redis::cmd("SET")
            .arg("k")
            .arg("v")
            .arg("EX")
            .arg(0)
            .query::<Value>(&mut con),
    );
    assert!(e.contains("invalid expire time"), "{e}");
    let e = error_of(
        redis::cmd("SET")
            .arg("k")
            .arg("v")
            .arg("PX")
            .arg("soon")
            .query::<Value>(&mut con),
    );
    assert!(e.contains("not an integer"), "{e}");
    assert_eq!(get(&mut con, "k"), None);

    // -2: no such key; -1: no expiry.
    assert_eq!(int(&mut con, &["TTL", "missing"]), -2);
    assert_eq!(int(&mut con, &["PTTL", "missing"]), -2);
    set(&mut con, "plain", "v");
    assert_eq!(int(&mut con, &["TTL", "plain"]), -1);
    assert_eq!(int(&mut con, &["PTTL", "plain"]), -1);

    // A key set with PX 300 is gone soon after.
    let _: () = redis::cmd("SET")
        .arg("short")
        .arg("v")
        .arg("PX")
        .arg(300)
        .query(&mut con)
        .unwrap();
    let pttl = int(&mut con, &["PTTL", "short"]);
    assert!(pttl <= 300 && (pttl > 0 || pttl == -2), "PTTL {pttl}");
    eventually(
        "the PX 300 key to expire",
        Duration::from_secs(5),
        || match get(&mut con, "short") {
            None => Ok(()),
            Some(v) => Err(format!("still {v:?}")),
        },
    );
    assert_eq!(int(&mut con, &["TTL", "short"]), -2);
    assert_eq!(int(&mut con, &["EXISTS", "short"]), 0);

    // EXPIRE / PEXPIRE: 1 if the key exists, 0 if not.
    assert_eq!(int(&mut con, &["EXPIRE", "plain", "100"]), 1);
    let ttl = int(&mut con, &["TTL", "plain"]);
    assert!((98..=100).contains(&ttl), "TTL {ttl}");
    assert_eq!(int(&mut con, &["EXPIRE", "missing", "100"]), 0);
    assert_eq!(int(&mut con, &["PEXPIRE", "missing", "100"]), 0);
    assert_eq!(int(&mut con, &["TTL", "missing"]), -2);
    set(&mut con, "pex", "v");
    assert_eq!(int(&mut con, &["PEXPIRE", "pex", "300"]), 1);
    let pttl = int(&mut con, &["PTTL", "pex"]);
    assert!(pttl <= 300 && (pttl > 0 || pttl == -2), "PTTL {pttl}");
    eventually(
        "the PEXPIRE 300 key to expire",
        Duration::from_secs(5),
        || match get(&mut con, "pex") {
            None => Ok(()),
            Some(v) => Err(format!("still {v:?}")),
        },
    );
    let e = error_of(
        redis::cmd("EXPIRE")
            .arg("plain")
            .arg("ten")
            .query::<Value>(&mut con),
    );
    assert!(e.contains("not an integer"), "{e}");
    let e = error_of(
        redis::cmd("EXPIRE")
            .arg("plain")
            .arg(10)
            .arg("NX")
            .query::<Value>(&mut con),
    );
    assert!(e.contains("not supported"), "{e}");

    // A non-positive EXPIRE deletes the key, as Redis.
    set(&mut con, "doomed", "v");
    assert_eq!(int(&mut con, &["EXPIRE", "doomed", "0"]), 1);
    assert_eq!(get(&mut con, "doomed"), None);
    set(&mut con, "doomed", "v");
    assert_eq!(int(&mut con, &["PEXPIRE", "doomed", "-5"]), 1);
    assert_eq!(int(&mut con, &["EXISTS", "doomed"]), 0);
    assert_eq!(int(&mut con, &["EXPIRE", "doomed", "-1"]), 0);

    // The largest TTLs Redis takes: no overflow, the connection goes on.
    let _: () = redis::cmd("SET")
        .arg("forever")
        .arg("v")
        .arg("EX")
        .arg(i64::MAX)
        .query(&mut con)
        .unwrap();
    let ttl = int(&mut con, &["TTL", "forever"]);
    assert!(ttl > 1_000_000_000_000_000, "TTL {ttl}");
    assert_eq!(
        int(&mut con, &["PEXPIRE", "forever", &i64::MAX.to_string()]),
        1
    );
    let pttl = int(&mut con, &["PTTL", "forever"]);
    assert!(pttl > 1_000_000_000_000_000_000, "PTTL {pttl}");
    let ttl = int(&mut con, &["TTL", "forever"]);
    assert!(ttl > 1_000_000_000_000_000, "TTL {ttl}");

    // PERSIST: 1 when it removed a TTL, 0 for no TTL or no key.
    assert_eq!(int(&mut con, &["PERSIST", "ex"]), 1);
    assert_eq!(int(&mut con, &["TTL", "ex"]), -1);
    assert_eq!(get(&mut con, "ex").as_deref(), Some(&b"v"[..]));
    assert_eq!(int(&mut con, &["PERSIST", "ex"]), 0);
    assert_eq!(int(&mut con, &["PERSIST", "missing"]), 0);
    // A plain SET drops an earlier TTL.
    set(&mut con, "px", "w");
    assert_eq!(int(&mut con, &["TTL", "px"]), -1);
}

#[test]
fn server_commands() {
    let node = one_node();
    let mut con = node.con();

    // DBSIZE counts this node's live keys: on one node with N = 1, every key.
    assert_eq!(int(&mut con, &["DBSIZE"]), 0);
    for i in 0..10 {
        set(&mut con, format!("key:{i}"), i);
    }
    set(&mut con, "key:0", "rewritten");
    assert_eq!(int(&mut con, &["DBSIZE"]), 10);
    assert_eq!(int(&mut con, &["DEL", "key:0", "key:1", "key:2"]), 3);
    assert_eq!(int(&mut con, &["DBSIZE"]), 7);

    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Replication",
        "# Cluster",
        "# Keyspace",
    ] {
        assert!(info.contains(section), "INFO lacks {section}:\n{info}");
    }
    assert_eq!(info_field(&info, "node_id").as_deref(), Some("n1"));
    assert_eq!(
        info_field(&info, "tcp_port"),
        Some(node.resp.port().to_string())
    );
    assert_eq!(info_field(&info, "replicas").as_deref(), Some("1"));
    assert_eq!(info_field(&info, "cluster_members").as_deref(), Some("1"));
    assert_eq!(
        info_field(&info, "db0").as_deref(),
        Some("keys=7,expires=0,avg_ttl=0")
    );
    let memory: String = redis::cmd("INFO").arg("memory").query(&mut con).unwrap();
    let headers: Vec<&str> = memory.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(headers, vec!["# Memory"], "{memory}");
    assert!(info_field(&memory, "used_memory").is_some(), "{memory}");
    assert_eq!(
        info_field(&memory, "maxmemory").as_deref(),
        Some("1073741824")
    );
    let none: String = redis::cmd("INFO")
        .arg("nosuchsection")
        .query(&mut con)
        .unwrap();
    assert_eq!(none, "");

    let count = int(&mut con, &["COMMAND", "COUNT"]);
    assert!(count > 10, "COMMAND COUNT {count}");
    let all: Vec<Value> = redis::cmd("COMMAND").query(&mut con).unwrap();
    assert_eq!(all.len() as i64, count);
    let names: BTreeSet<String> = all
        .iter()
        .map(|c| match c {
            Value::Array(fields) => redis::from_redis_value::<String>(&fields[0]).unwrap(),
            other => panic!("COMMAND entry {other:?}"),
        })
        .collect();
    for name in ["get", "set", "mget", "expire", "info"] {
        assert!(names.contains(name), "COMMAND lacks {name}: {names:?}");
    }
    let e = error_of(redis::cmd("COMMAND").arg("BOGUS").query::<Value>(&mut con));
    assert!(e.contains("unknown subcommand"), "{e}");

    let save: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query(&mut con)
        .unwrap();
    assert_eq!(save, vec!["save".to_owned(), String::new()]);
    let everything: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query(&mut con)
        .unwrap();
    assert!(
        everything.len() >= 4 && everything.len() % 2 == 0,
        "{everything:?}"
    );
    let pairs: Vec<(&str, &str)> = everything
        .chunks(2)
        .map(|p| (p[0].as_str(), p[1].as_str()))
        .collect();
    assert!(pairs.contains(&("databases", "1")), "{pairs:?}");
    assert!(pairs.contains(&("replicas", "1")), "{pairs:?}");
    assert!(pairs.contains(&("maxclients", "10000")), "{pairs:?}");
    let e = error_of(
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("save")
            .arg("")
            .query::<Value>(&mut con),
    );
    assert!(e.contains("only CONFIG GET"), "{e}");

    let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
    assert_eq!(name, None);
    let ok: String = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("e2e-client")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
    assert_eq!(name.as_deref(), Some("e2e-client"));
    let e = error_of(
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg("has space")
            .query::<Value>(&mut con),
    );
    assert!(e.contains("cannot contain spaces"), "{e}");
    // The name is per connection.
    let mut other = node.con();
    let name: Option<String> = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query(&mut other)
        .unwrap();
    assert_eq!(name, None);

    let ok: String = redis::cmd("SELECT").arg(0).query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    let e = error_of(redis::cmd("SELECT").arg(1).query::<Value>(&mut con));
    assert!(e.starts_with("ERR DB index is out of range"), "{e}");

    let hello: Vec<Value> = redis::cmd("HELLO").arg(2).query(&mut con).unwrap();
    assert_eq!(
        redis::from_redis_value::<String>(&hello[1]).unwrap(),
        "gridkv"
    );
    let e = error_of(redis::cmd("HELLO").arg(4).query::<Value>(&mut con));
    assert!(e.starts_with("NOPROTO"), "{e}");

    // QUIT answers OK, then the server closes the connection.
    let ok: String = redis::cmd("QUIT").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    assert!(redis::cmd("PING").query::<String>(&mut con).is_err());
    let mut raw = node.raw();
    raw.write_all(b"*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n")
        .unwrap();
    // The PING after QUIT in the same batch is not run.
    assert_eq!(read_until_closed(&mut raw), b"+OK\r\n");
}

#[test]
fn protocol_errors_limits_and_inline_commands() {
    let node = one_node();

    // Inline commands, as typed into telnet.
    let mut raw = node.raw();
    raw.write_all(b"PING\r\nSET inline hello\r\nGET inline\r\n")
        .unwrap();
    let want = b"+PONG\r\n+OK\r\n$5\r\nhello\r\n";
    let mut got = vec![0u8; want.len()];
    raw.read_exact(&mut got).unwrap();
    assert_eq!(got, want);

    // Input that cannot be framed: an error reply, then the server closes.
    for bad in [
        &b"*1\r\n$x\r\n"[..],
        b"*1\r\n+PING\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nab\r\n",
    ] {
        let mut raw = node.raw();
        raw.write_all(bad).unwrap();
        let reply = String::from_utf8(read_until_closed(&mut raw)).unwrap();
        assert!(
            reply.starts_with("-ERR Protocol error") && reply.ends_with("\r\n"),
            "{bad:?} -> {reply:?}"
        );
        assert_eq!(
            reply.matches("\r\n").count(),
            1,
            "one reply only: {reply:?}"
        );
    }

    // A value over the store's 4 MiB limit (but under the parser's 8 MiB
    // bulk limit) is read, refused with an error reply, and not stored; the
    // connection stays usable.
    let mut con = node.con();
    let big = vec![b'x'; (4 << 20) + 1];
    let e = error_of(
        redis::cmd("SET")
            .arg("big")
            .arg(&big)
            .query::<Value>(&mut con),
    );
    assert!(e.starts_with("ERR value is 4194305 bytes"), "{e}");
    assert_eq!(get(&mut con, "big"), None);
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    // Exactly 4 MiB is accepted.
    let max = vec![b'y'; 4 << 20];
    set(&mut con, "max", &max);
    assert_eq!(get(&mut con, "max"), Some(max));

    // A bulk over 8 MiB (--max-bulk-bytes) is a protocol error naming the
    // limit as soon as its length is read:
    // the server answers and closes without waiting for the bytes.
    let mut raw = node.raw();
    raw.write_all(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$9437184\r\n")
        .unwrap();
    let reply = String::from_utf8(read_until_closed(&mut raw)).unwrap();
    assert_eq!(
        reply,
        "-ERR Protocol error: command exceeds max-bulk-bytes (8388608)\r\n"
    );

    // An oversize key: an error reply, the connection goes on.
    let long_key = vec![b'k'; (64 << 10) + 1];
    let e = error_of(
        redis::cmd("SET")
            .arg(&long_key)
            .arg("v")
            .query::<Value>(&mut con),
    );
    assert!(e.starts_with("ERR"), "{e}");
    let e = error_of(redis::cmd("SET").arg("").arg("v").query::<Value>(&mut con));
    assert!(e.contains("key is empty"), "{e}");
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");

    // Protocol errors show in INFO.
    let info: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
    assert_eq!(
        info_field(&info, "protocol_errors").as_deref(),
        Some("4"),
        "{info}"
    );
}

#[test]
fn max_clients_refuses_the_extra_connection() {
    let node = Cluster::start(1, &[ONE_COPY, &["--max-clients", "2"]].concat())
        .nodes
        .pop()
        .unwrap();
    let mut first = node.con();
    let mut second = node.con();
    for con in [&mut first, &mut second] {
        let pong: String = redis::cmd("PING").query(con).unwrap();
        assert_eq!(pong, "PONG");
    }
    let mut third = node.raw();
    let reply = String::from_utf8(read_until_closed(&mut third)).unwrap();
    assert_eq!(reply, "-ERR max number of clients reached\r\n");
    // The refused client is counted; the two admitted ones still work.
    let info: String = redis::cmd("INFO").arg("clients").query(&mut first).unwrap();
    assert_eq!(
        info_field(&info, "rejected_connections").as_deref(),
        Some("1"),
        "{info}"
    );
    assert_eq!(
        info_field(&info, "connected_clients").as_deref(),
        Some("2"),
        "{info}"
    );
    assert_eq!(
        info_field(&info, "maxclients").as_deref(),
        Some("2"),
        "{info}"
    );

    // Once one leaves, a new client is admitted.
    drop(second);
    eventually("a slot to free up", Duration::from_secs(10), || {
        let mut s = node.raw();
        s.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
        let mut reply = [0u8; 7];
        s.read_exact(&mut reply).map_err(|e| e.to_string())?;
        if &reply == b"+PONG\r\n" {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&reply).into_owned())
        }
    });
}

/// Runs `gridkv node` with `flags` and the bind addresses set to port 0
/// (unless `flags` sets them), expecting a refusal whose message names
/// every word of `named`.
fn refused(flags: &[&str], named: &[&str]) {
    let mut args = vec!["node"];
    args.extend_from_slice(flags);
    for (flag, value) in [
        ("--listen", "127.0.0.1:0"),
        ("--resp", "127.0.0.1:0"),
        ("--http", "127.0.0.1:0"),
    ] {
        if !flags.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    let (status, stdout, stderr) = run_to_exit(&args, Duration::from_secs(30));
    assert!(!status.success(), "{args:?}: {status}");
    for word in named {
        assert!(
            stderr.contains(word),
            "{args:?}: stderr lacks {word:?}: {stderr}"
        );
    }
    assert!(!stdout.contains("gridkv ready"), "{args:?}: {stdout}");
}

#[test]
fn bad_flags_exit_nonzero_naming_the_setting() {
    refused(&[], &["--id", "GRIDKV_ID"]);
    refused(
        &["--id", "n1", "--write-quorum", "5"],
        &["write_quorum", "--write-quorum"],
    );
    refused(&["--id", "n1", "--resp", "not-an-address"], &["--resp"]);
}

/// A node that has not joined says so: `/health` 503, data commands an
/// error reply; and it still stops cleanly on SIGTERM.
#[test]
fn health_is_503_until_the_node_has_joined() {
    // A seed that accepts connections and never answers: the node can
    // never join.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let seed = silent.local_addr().unwrap().to_string();
    let mut node = Node::start("lonely", &["--seeds", &seed]);
    // Still not joined a while later.
    std::thread::sleep(Duration::from_secs(1));
    let (code, body) = node.http_get("/health").unwrap();
    assert_eq!(code, 503, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "joining", "{body}");
    // Not ready, but alive: an orchestrator must not restart it.
    let (code, body) = node.http_get("/live").unwrap();
    assert_eq!(code, 200, "{body}");
    let (_, metrics) = node.http_get("/metrics").unwrap();
    assert!(metrics.lines().any(|l| l == "gridkv_ready 0"), "{metrics}");
    let view = node.cluster_view().unwrap();
    assert_eq!(view["node"]["ready"], false, "{view}");

    let mut con = node.con();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    // Data commands wait for the node to serve, then say what is missing.
    let e = error_of(redis::cmd("SET").arg("k").arg("v").query::<Value>(&mut con));
    assert!(e.starts_with("TRYAGAIN not ready: not joined"), "{e}");
    let e = error_of(redis::cmd("GET").arg("k").query::<Value>(&mut con));
    assert!(e.starts_with("TRYAGAIN"), "{e}");

    node.terminate();
    let status = node
        .wait_exit(Duration::from_secs(35))
        .expect("exits within 35 s of SIGTERM");
    assert!(status.success(), "{status}");
    drop(silent);
}

/// Every node healthy, the admin endpoints, and data written on one node
/// read on the others: binary-safe, large, pipelined, multi-key, with TTLs.
#[test]
fn cluster_three_nodes_serve_every_key_from_every_node() {
    let c = Cluster::start(3, &[]);
    let ids: BTreeSet<String> = ["n1", "n2", "n3"].map(String::from).into();

    for node in &c.nodes {
        let (code, body) = node.http_get("/health").unwrap();
        assert_eq!(code, 200, "{}: {body}", node.id);
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["status"], "ok", "{body}");
        assert_eq!(health["effective_replicas"], 3, "{body}");

        let view = node.cluster_view().unwrap();
        assert_eq!(view["node"]["id"], node.id.as_str(), "{view}");
        let members = view["members"].as_array().unwrap();
        assert_eq!(members.len(), 3, "{view}");
        let seen: BTreeSet<String> = members
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(seen, ids);
        for m in members {
            assert!(m["address"].is_string(), "{m}");
            assert_eq!(m["state"], "alive", "{m}");
            assert_eq!(m["ring_state"], "normal", "{m}");
            assert_eq!(m["datacenter"], "default", "{m}");
            assert!(m["incarnation"].is_u64(), "{m}");
            // Null until a round trip was measured (and for the node itself).
            assert!(m["rtt_ms"].is_number() || m["rtt_ms"].is_null(), "{m}");
        }
        let addr_of = |id: &str| {
            members
                .iter()
                .find(|m| m["id"] == id)
                .and_then(|m| m["address"].as_str())
                .unwrap()
                .to_owned()
        };
        for other in &c.nodes {
            assert_eq!(addr_of(&other.id), other.cluster.to_string());
        }
    }

    // Data: written on node 1, read on nodes 3 and 2.
    let mut con1 = c.node(1).con();
    let mut con2 = c.node(2).con();
    let mut con3 = c.node(3).con();
    set(&mut con1, "greeting", "hello from n1");
    assert_eq!(
        get(&mut con3, "greeting").as_deref(),
        Some(&b"hello from n1"[..])
    );
    assert_eq!(
        get(&mut con2, "greeting").as_deref(),
        Some(&b"hello from n1"[..])
    );

    // Binary-safe keys and values: every byte value, CR LF and NUL inside.
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let every_byte_rev: Vec<u8> = (0..=255u8).rev().collect();
    let framing_key = b"k\r\n\0*1\r\n$3\r\n".to_vec();
    let framing_value = b"\r\n\0\r\n-ERR not an error\r\n$-1\r\n".to_vec();
    set(&mut con1, &every_byte, &every_byte_rev);
    set(&mut con1, &framing_key, &framing_value);
    set(&mut con1, "empty", "");
    for b in 0..=255u8 {
        set(&mut con1, &[b'b', b][..], &[b, b, b][..]);
    }
    for con in [&mut con3, &mut con2] {
        assert_eq!(get(&mut *con, &every_byte), Some(every_byte_rev.clone()));
        assert_eq!(get(&mut *con, &framing_key), Some(framing_value.clone()));
        assert_eq!(get(&mut *con, "empty"), Some(Vec::new()));
        for b in 0..=255u8 {
            assert_eq!(
                get(&mut *con, &[b'b', b][..]),
                Some(vec![b, b, b]),
                "byte {b}"
            );
        }
    }

    // 1 MiB, written on node 2, read on nodes 1 and 3.
    let mib: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(31) % 251) as u8)
        .collect();
    set(&mut con2, "mib", &mib);
    assert_eq!(get(&mut con1, "mib").as_ref(), Some(&mib));
    assert_eq!(get(&mut con3, "mib").as_ref(), Some(&mib));

    // A value over the store limit: an error, stored nowhere; the
    // connection goes on.
    let big = vec![b'z'; 5 << 20];
    let e = error_of(
        redis::cmd("SET")
            .arg("too-big")
            .arg(&big)
            .query::<Value>(&mut con1),
    );
    assert!(e.starts_with("ERR value is 5242880 bytes"), "{e}");
    for con in [&mut con1, &mut con2, &mut con3] {
        assert_eq!(get(&mut *con, "too-big"), None);
    }

    // A pipeline of 1,000 SETs then 1,000 GETs on node 3: replies in order.
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET").arg(format!("p:{i}")).arg(format!("v{i}"));
    }
    for i in 0..1000 {
        pipe.cmd("GET").arg(format!("p:{i}"));
    }
    let replies: Vec<Value> = pipe.query(&mut con3).unwrap();
    assert_eq!(replies.len(), 2000);
    for (i, r) in replies[..1000].iter().enumerate() {
        assert_eq!(r, &Value::Okay, "SET {i}");
    }
    for (i, r) in replies[1000..].iter().enumerate() {
        let v: String = redis::from_redis_value(r).unwrap();
        assert_eq!(v, format!("v{i}"), "GET {i}");
    }
    // Pipelined commands take effect in the order they were sent (reads
    // of distinct keys may run together); replies come back in order.
    let mut pipe = redis::pipe();
    for round in 0..20 {
        pipe.cmd("SET").arg("same").arg(format!("a{round}"));
        pipe.cmd("SET").arg(format!("other:{round}")).arg("x");
        pipe.cmd("GET").arg("same");
        pipe.cmd("SET").arg("same").arg(format!("b{round}"));
        pipe.cmd("GET").arg("same");
        pipe.cmd("DEL").arg("same");
        pipe.cmd("GET").arg("same");
        pipe.cmd("EXISTS").arg(format!("other:{round}"));
    }
    let replies: Vec<Value> = pipe.query(&mut con3).unwrap();
    for (round, r) in replies.chunks(8).enumerate() {
        let got: Vec<Option<String>> = r
            .iter()
            .map(|v| match v {
                Value::Nil => None,
                Value::Okay => Some("OK".into()),
                Value::Int(n) => Some(n.to_string()),
                other => Some(redis::from_redis_value::<String>(other).unwrap()),
            })
            .collect();
        let a = format!("a{round}");
        let b = format!("b{round}");
        let want = [
            Some("OK"),
            Some("OK"),
            Some(a.as_str()),
            Some("OK"),
            Some(b.as_str()),
            Some("1"),
            None,
            Some("1"),
        ];
        assert_eq!(got, want.map(|w| w.map(str::to_owned)), "round {round}");
    }

    // ... and read on node 1 in one MGET.
    let keys: Vec<String> = (0..1000).map(|i| format!("p:{i}")).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut con1).unwrap();
    let want: Vec<Option<String>> = (0..1000).map(|i| Some(format!("v{i}"))).collect();
    assert_eq!(values, want);

    // Multi-key commands and TTLs across nodes.
    let _: () = redis::cmd("MSET")
        .arg(&["x1", "1", "x2", "2"])
        .query(&mut con1)
        .unwrap();
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["x1", "nope", "x2"])
        .query(&mut con2)
        .unwrap();
    assert_eq!(values, vec![Some("1".into()), None, Some("2".into())]);
    assert_eq!(int(&mut con3, &["DEL", "x1", "x2", "nope"]), 2);
    assert_eq!(
        int(&mut con1, &["EXISTS", "x1", "x2", "greeting", "greeting"]),
        2
    );
    let _: () = redis::cmd("SET")
        .arg("t")
        .arg("v")
        .arg("EX")
        .arg(100)
        .query(&mut con2)
        .unwrap();
    let ttl = int(&mut con3, &["TTL", "t"]);
    assert!((98..=100).contains(&ttl), "TTL {ttl}");
    assert_eq!(int(&mut con1, &["PERSIST", "t"]), 1);
    assert_eq!(int(&mut con2, &["TTL", "t"]), -1);
    assert_eq!(int(&mut con3, &["PEXPIRE", "t", "300"]), 1);
    eventually("t to expire on every node", Duration::from_secs(5), || {
        for (n, con) in [&mut con1, &mut con2, &mut con3].into_iter().enumerate() {
            if let Some(v) = get(con, "t") {
                return Err(format!("n{} still has {v:?}", n + 1));
            }
        }
        Ok(())
    });

    // The metrics saw all of that.
    for node in &c.nodes {
        let (code, metrics) = node.http_get("/metrics").unwrap();
        assert_eq!(code, 200);
        assert!(
            metrics.contains("gridkv_operation_duration_seconds_bucket{op=\"read\",le="),
            "{metrics}"
        );
        assert!(
            metrics.contains("gridkv_operation_duration_seconds_bucket{op=\"write\",le="),
            "{metrics}"
        );
        assert!(
            metrics
                .lines()
                .any(|l| l == "gridkv_members{state=\"alive\"} 3"),
            "{metrics}"
        );
        assert!(metrics.lines().any(|l| l == "gridkv_ready 1"), "{metrics}");
    }
    let (_, metrics) = c.node(3).http_get("/metrics").unwrap();
    let commands: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gridkv_resp_commands_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        commands >= 2000,
        "node 3 ran the pipeline: {commands} commands"
    );
}

/// A node crashes (SIGKILL): with N = 3, W = 2, R = 2 the other two go on
/// serving reads and writes, and soon see it as suspect or down.
#[test]
fn cluster_survives_a_killed_node() {
    let mut c = Cluster::start(
        3,
        &[
            "--replicas",
            "3",
            "--write-quorum",
            "2",
            "--read-quorum",
            "2",
        ],
    );
    // No pause after the cluster converged: a crash inside the last join's
    // transition window must not fail writes either.
    {
        let mut con = c.node(3).con();
        for i in 0..100 {
            set(&mut con, format!("before:{i}"), i);
        }
    }
    c.node_mut(3).kill();

    // Right away, before anyone has noticed.
    let mut con1 = c.node(1).con();
    let mut con2 = c.node(2).con();
    let check = |con1: &mut Connection, con2: &mut Connection, round: &str| {
        for i in 0..100 {
            let want = i.to_string().into_bytes();
            assert_eq!(
                get(&mut *con1, format!("before:{i}")),
                Some(want.clone()),
                "{round}: n1 before:{i}"
            );
            assert_eq!(
                get(&mut *con2, format!("before:{i}")),
                Some(want),
                "{round}: n2 before:{i}"
            );
            set(&mut *con1, format!("{round}:a:{i}"), i);
            set(&mut *con2, format!("{round}:b:{i}"), i);
        }
        for i in 0..100 {
            let want = Some(i.to_string().into_bytes());
            assert_eq!(
                get(&mut *con2, format!("{round}:a:{i}")),
                want,
                "{round}: n2 reads n1's write {i}"
            );
            assert_eq!(
                get(&mut *con1, format!("{round}:b:{i}")),
                want,
                "{round}: n1 reads n2's write {i}"
            );
        }
    };
    check(&mut con1, &mut con2, "at-once");

    for node in [c.node(1), c.node(2)] {
        let when = Instant::now();
        let state = node.wait_sees("n3", &["suspect", "down"], Duration::from_secs(20));
        eprintln!("{} saw n3 {state} after {:?} more", node.id, when.elapsed());
    }
    eventually(
        "n1's metrics to count 2 alive",
        Duration::from_secs(20),
        || {
            let (_, m) = c.node(1).http_get("/metrics").map_err(|e| e.to_string())?;
            if m.lines().any(|l| l == "gridkv_members{state=\"alive\"} 2") {
                Ok(())
            } else {
                Err(m
                    .lines()
                    .filter(|l| l.starts_with("gridkv_members"))
                    .collect::<Vec<_>>()
                    .join("; "))
            }
        },
    );

    // And once they have.
    check(&mut con1, &mut con2, "after");
    assert_eq!(int(&mut con1, &["DEL", "before:0", "before:1"]), 2);
    assert_eq!(
        int(&mut con2, &["EXISTS", "before:0", "before:1", "before:2"]),
        1
    );
}

/// A node told to stop (SIGTERM) hands its ranges over, leaves and exits 0;
/// the others serve every key it held. N = 2 and R = 1, so a key reaches a
/// new owner only by that handoff, and a read asks one owner only.
#[test]
fn cluster_graceful_leave_hands_its_keys_over() {
    let mut c = Cluster::start(
        3,
        &[
            "--replicas",
            "2",
            "--write-quorum",
            "2",
            "--read-quorum",
            "1",
        ],
    );
    {
        let mut con = c.node(3).con();
        for i in 0..300 {
            set(&mut con, format!("k:{i}"), format!("v{i}"));
        }
    }
    let leaver = c.node_mut(3);
    leaver.terminate();
    let start = Instant::now();
    let status = leaver
        .wait_exit(Duration::from_secs(35))
        .unwrap_or_else(|| panic!("n3 still running 35 s after SIGTERM"));
    let exited = Instant::now();
    assert!(status.success(), "n3 exited with {status}");
    eprintln!("n3 left and exited in {:?}", start.elapsed());
    assert!(
        leaver.log().contains("signal received"),
        "n3 logged its leave: {}",
        leaver.log()
    );

    for node in [c.node(1), c.node(2)] {
        let mut con = node.con();
        for i in 0..300 {
            assert_eq!(
                get(&mut con, format!("k:{i}")),
                Some(format!("v{i}").into_bytes()),
                "{} k:{i}",
                node.id
            );
        }
    }
    for node in [c.node(1), c.node(2)] {
        eventually(
            &format!("{} to see n3 gone", node.id),
            Duration::from_secs(20),
            || match node.sees("n3") {
                Ok((state, ring)) if state == "left" || ring == "left" || ring == "removed" => {
                    Ok(())
                }
                Ok(seen) => Err(format!("{seen:?}")),
                // No longer listed at all.
                Err(e) if e.contains("is not a member") => Ok(()),
                Err(e) => Err(e),
            },
        );
        assert_eq!(node.health(), 200, "{} healthy", node.id);
    }
    // Writes need both remaining owners (W = 2): both are there, right
    // after n3 exited too. (Within the leave's transition window a write
    // also needs a quorum of the owners before the leave, which included
    // n3: an owner that has left is not waited for, so no write is refused.)
    let mut con1 = c.node(1).con();
    let mut con2 = c.node(2).con();
    for i in 0..100 {
        let key = format!("after:{i}");
        let reply: RedisResult<String> = redis::cmd("SET").arg(&key).arg(i).query(&mut con1);
        match reply {
            Ok(ok) => assert_eq!(ok, "OK"),
            Err(e) => panic!("SET {key} {:?} after n3 exited: {e}", exited.elapsed()),
        }
        assert_eq!(get(&mut con2, &key), Some(i.to_string().into_bytes()));
    }
}
