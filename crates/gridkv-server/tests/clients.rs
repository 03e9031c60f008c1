//! Real Redis clients against a real `gridkv node`: redis-py at its
//! current version with its default settings (RESP3 since redis-py 8),
//! and redis-rs in both RESP2 and RESP3, plus the RESP3 reply shapes on a
//! raw socket.
//!
//! The redis-py test needs `python3` with the `redis` module (8 or
//! later: `pip install 'redis>=8'`). Without them it says so on stderr and
//! passes, so the README's test command works on a fresh machine; with
//! `GRIDKV_REQUIRE_REDIS_PY=1` (which `.ci/run` sets after installing
//! redis-py) it fails instead, so a CI that lacks them says so.

// Each test binary compiles the harness whole and uses part of it.
#[allow(dead_code)]
mod common;

use std::io::{Read, Write};
use std::path::Path;

use common::one_node;
use redis::{Connection, ProtocolVersion, Value};

const REDIS_PY: &str = "pip install 'redis>=8'";

#[test]
fn redis_py_with_default_settings() {
    if !common::python_has("redis", "GRIDKV_REQUIRE_REDIS_PY", REDIS_PY) {
        return;
    }
    let node = one_node();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/redis_py_client.py");
    common::run_python(&script, &[node.resp.port().to_string()], REDIS_PY);
}

/// A redis-rs connection speaking `protocol`.
fn connect(node: &common::Node, protocol: ProtocolVersion) -> Connection {
    let query = match protocol {
        ProtocolVersion::RESP2 => "",
        ProtocolVersion::RESP3 => "?protocol=resp3",
    };
    let client = redis::Client::open(format!("redis://{}/{query}", node.resp)).expect("client");
    let con = client.get_connection().expect("connect");
    con.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    con
}

fn error_of<T: std::fmt::Debug>(result: redis::RedisResult<T>) -> String {
    let e = result.expect_err("an error reply");
    format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
}

/// The same scenario in either protocol: what a redis-rs user sees must
/// not depend on it, except where RESP3 has a type of its own.
fn redis_rs_scenario(protocol: ProtocolVersion) {
    let node = one_node();
    let mut con = connect(&node, protocol);
    let q = |con: &mut Connection, args: &[&str]| -> Value {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };

    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let _: () = redis::cmd("SET").arg("a").arg("1").query(&mut con).unwrap();
    let a: Option<String> = redis::cmd("GET").arg("a").query(&mut con).unwrap();
    assert_eq!(a.as_deref(), Some("1"));
    let missing = q(&mut con, &["GET", "missing"]);
    assert_eq!(missing, Value::Nil, "a missing key is a null in both");
    let _: () = redis::cmd("MSET")
        .arg("b")
        .arg("2")
        .arg("c")
        .arg("3")
        .query(&mut con)
        .unwrap();
    let many: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["a", "missing", "c"])
        .query(&mut con)
        .unwrap();
    assert_eq!(many, vec![Some("1".into()), None, Some("3".into())]);
    assert_eq!(q(&mut con, &["EXISTS", "a", "b", "missing"]), Value::Int(2));
    assert_eq!(q(&mut con, &["DEL", "a", "missing"]), Value::Int(1));
    assert_eq!(q(&mut con, &["EXPIRE", "b", "100"]), Value::Int(1));
    let Value::Int(ttl) = q(&mut con, &["TTL", "b"]) else {
        panic!("TTL is an integer");
    };
    assert!((99..=100).contains(&ttl), "{ttl}");
    assert_eq!(q(&mut con, &["TTL", "missing"]), Value::Int(-2));

    let info: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
    assert!(info.contains("node_id:n1"), "{info}");
    let config = q(&mut con, &["CONFIG", "GET", "databases"]);
    let hello = q(&mut con, &["HELLO"]);
    let command = q(&mut con, &["COMMAND", "INFO", "get", "nosuch"]);
    let info_raw = q(&mut con, &["INFO", "keyspace"]);
    let pair = (
        Value::BulkString(b"databases".to_vec()),
        Value::BulkString(b"1".to_vec()),
    );
    match protocol {
        ProtocolVersion::RESP2 => {
            assert_eq!(config, Value::Array(vec![pair.0, pair.1]));
            assert!(
                matches!(hello, Value::Array(ref f) if f.len() == 16),
                "{hello:?}"
            );
            assert!(
                matches!(&command, Value::Array(c) if c[1] == Value::Nil),
                "{command:?}"
            );
            assert!(matches!(info_raw, Value::BulkString(_)), "{info_raw:?}");
        }
        ProtocolVersion::RESP3 => {
            assert_eq!(config, Value::Map(vec![pair]));
            let Value::Map(fields) = &hello else {
                panic!("HELLO in RESP3 is a map: {hello:?}");
            };
            assert!(fields.contains(&(Value::BulkString(b"proto".to_vec()), Value::Int(3))));
            let Value::Array(entries) = &command else {
                panic!("{command:?}");
            };
            assert_eq!(entries[1], Value::Nil);
            assert!(
                matches!(&entries[0], Value::Array(e) if matches!(e[2], Value::Set(_))),
                "flags are a set in RESP3: {command:?}"
            );
            assert!(
                matches!(info_raw, Value::VerbatimString { .. }),
                "{info_raw:?}"
            );
        }
    }

    let e = error_of(redis::cmd("NOSUCH").query::<Value>(&mut con));
    assert!(e.starts_with("ERR unknown command"), "{e}");
    let e = error_of(redis::cmd("GET").query::<Value>(&mut con));
    assert!(e.contains("wrong number of arguments for 'get'"), "{e}");
    let e = error_of(
        redis::cmd("SET")
            .arg("k")
            .arg("v")
            .arg("KEEPTTL")
            .query::<Value>(&mut con),
    );
    assert!(e.contains("SET KEEPTTL is not supported"), "{e}");
    // The connection is still usable after errors.
    assert_eq!(q(&mut con, &["EXISTS", "c"]), Value::Int(1));
}

#[test]
fn redis_rs_resp2() {
    redis_rs_scenario(ProtocolVersion::RESP2);
}

#[test]
fn redis_rs_resp3() {
    redis_rs_scenario(ProtocolVersion::RESP3);
}

/// Sends `request` and reads exactly as many bytes as `want` holds.
fn exchange(raw: &mut std::net::TcpStream, request: &[u8], want: &[u8]) {
    raw.write_all(request).unwrap();
    let mut got = vec![0u8; want.len()];
    raw.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(want),
        "reply to {:?}",
        String::from_utf8_lossy(request)
    );
}

#[test]
fn resp3_shapes_on_the_wire() {
    let node = one_node();
    let mut raw = node.raw();
    // RESP2 until HELLO 3, per connection.
    exchange(&mut raw, b"GET nothing\r\n", b"$-1\r\n");
    raw.write_all(b"HELLO 3\r\n").unwrap();
    let mut head = [0u8; 4];
    raw.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"%8\r\n", "HELLO 3 answers an 8-field map");
    let mut other = node.raw();
    exchange(&mut other, b"GET nothing\r\n", b"$-1\r\n");

    // Drain the rest of HELLO's map, then probe each reply type.
    let mut rest = Vec::new();
    let mut byte = [0u8; 1];
    while !rest.ends_with(b"$7\r\nmodules\r\n*0\r\n") {
        raw.read_exact(&mut byte).unwrap();
        rest.push(byte[0]);
    }
    exchange(&mut raw, b"GET nothing\r\n", b"_\r\n");
    exchange(&mut raw, b"SET k v\r\n", b"+OK\r\n");
    exchange(&mut raw, b"MGET k nothing\r\n", b"*2\r\n$1\r\nv\r\n_\r\n");
    exchange(&mut raw, b"TTL k\r\n", b":-1\r\n");
    exchange(&mut raw, b"EXISTS k nothing\r\n", b":1\r\n");
    exchange(
        &mut raw,
        b"CONFIG GET databases\r\n",
        b"%1\r\n$9\r\ndatabases\r\n$1\r\n1\r\n",
    );
    exchange(&mut raw, b"COMMAND INFO nothing\r\n", b"*1\r\n_\r\n");
    exchange(&mut raw, b"COMMAND DOCS\r\n", b"%0\r\n");
    exchange(&mut raw, b"CLIENT GETNAME\r\n", b"_\r\n");
    exchange(
        &mut raw,
        b"HELLO 4\r\n",
        b"-NOPROTO unsupported protocol version\r\n",
    );
    raw.write_all(b"INFO keyspace\r\n").unwrap();
    let mut verbatim = [0u8; 1];
    raw.read_exact(&mut verbatim).unwrap();
    assert_eq!(&verbatim, b"=", "INFO is a verbatim string in RESP3");
}
