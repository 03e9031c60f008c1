//! Hostile or careless clients against a real `gridkv node` (issue 15):
//! each client limit reached over real TCP, with its error text, the
//! connection closed, its metric counted, and another client still served
//! while it happens. Memory is checked through the server's own gauges
//! (`gridkv_resp_clients_*_bytes`), not the process's RSS, so the tests
//! hold on any machine; `scripts/hostile-clients.py` measures RSS.

// Each test binary compiles the harness whole and uses part of it.
#[allow(dead_code)]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Node, ONE_COPY, eventually};

/// Limits small enough to reach quickly; the output bounds are the least
/// the node accepts with the store's 4 MiB value limit.
const LIMITS: &[&str] = &[
    "--max-command-bytes",
    "1mb",
    "--max-command-args",
    "1000",
    "--max-bulk-bytes",
    "64kb",
    "--max-inline-bytes",
    "1kb",
    "--max-client-output",
    "5mb",
    "--max-clients-memory",
    "8mb",
];

/// The output bounds of [`LIMITS`] alone, for tests that store 1 MB
/// values.
const OUTPUT_LIMITS: &[&str] = &["--max-client-output", "5mb", "--max-clients-memory", "8mb"];

fn node() -> Node {
    node_with(LIMITS)
}

/// Waits for `limit`'s counter to reach `n` (the server counts a close
/// just after the client sees it).
fn wait_hits(node: &Node, limit: &str, n: u64) {
    eventually(
        &format!("{limit} counted"),
        Duration::from_secs(10),
        || match limit_hits(node, limit) {
            got if got == n => Ok(()),
            got => Err(format!("{got} closes counted")),
        },
    );
}

fn node_with(limits: &[&str]) -> Node {
    let mut args = ONE_COPY.to_vec();
    args.extend_from_slice(limits);
    Node::start("n1", &args)
}

/// One figure from `/metrics` (0 when absent).
fn metric(node: &Node, series: &str) -> u64 {
    let (_, body) = node.http_get("/metrics").expect("/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

fn limit_hits(node: &Node, limit: &str) -> u64 {
    metric(
        node,
        &format!("gridkv_resp_limit_exceeded_total{{limit=\"{limit}\"}}"),
    )
}

/// Another client is served normally.
fn served(node: &Node) {
    let mut con = node.con();
    let pong: String = redis::cmd("PING").query(&mut con).expect("PING");
    assert_eq!(pong, "PONG");
}

/// Sends `input` and reads until the server closes: what it answered.
fn answer_then_close(node: &Node, input: &[u8]) -> String {
    let mut s = node.raw();
    s.write_all(input).expect("send");
    read_to_close(&mut s)
}

fn read_to_close(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        // A reset after the error line is a close too.
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("server neither answered nor closed: {e}"),
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Each parser limit: the error names it, the connection closes, the
/// metric counts it, and the node goes on serving others.
#[test]
fn each_command_limit_closes_only_its_client() {
    let node = node();
    let cases: [(&str, Vec<u8>); 4] = [
        // 1 MB of arguments, then one more announced past 1 MiB in all.
        ("max-command-bytes", {
            let arg = vec![b'x'; 64_000];
            let mut args: Vec<&[u8]> = vec![b"EXISTS"];
            args.extend(std::iter::repeat_n(arg.as_slice(), 16));
            let mut v = encode(&args);
            v[1..3].copy_from_slice(b"20");
            v.extend_from_slice(b"$64000\r\n");
            v
        }),
        ("max-command-args", b"*1001\r\n".to_vec()),
        ("max-bulk-bytes", b"*2\r\n$3\r\nGET\r\n$65537\r\n".to_vec()),
        ("max-inline-bytes", vec![b'a'; 1025]),
    ];
    for (limit, input) in cases {
        let before = limit_hits(&node, limit);
        let got = answer_then_close(&node, &input);
        assert!(
            got.starts_with("-ERR Protocol error: command exceeds ") && got.contains(limit),
            "{limit}: answered {got:?}"
        );
        wait_hits(&node, limit, before + 1);
        served(&node);
    }
    // The limits are what CONFIG GET says.
    let mut con = node.con();
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("max-*")
        .query(&mut con)
        .expect("CONFIG GET");
    let pairs: Vec<(&str, &str)> = config
        .chunks(2)
        .map(|p| (p[0].as_str(), p[1].as_str()))
        .collect();
    for want in [
        ("max-command-bytes", "1048576"),
        ("max-command-args", "1000"),
        ("max-bulk-bytes", "65536"),
        ("max-inline-bytes", "1024"),
        ("max-client-output", "5242880"),
        ("max-clients-memory", "8388608"),
    ] {
        assert!(pairs.contains(&want), "{want:?} not in {pairs:?}");
    }
}

/// A command trickled in 1 KiB pieces is parsed in time linear in its
/// size: the parser's scanned bytes stay close to the command's length.
#[test]
fn a_trickled_command_is_scanned_once() {
    let node = node_with(&[]);
    let keys: Vec<Vec<u8>> = (0..60_000)
        .map(|i| format!("key:{i:08}").into_bytes())
        .collect();
    let mut args: Vec<&[u8]> = vec![b"EXISTS"];
    args.extend(keys.iter().map(|k| k.as_slice()));
    let command = encode(&args);
    let before = metric(&node, "gridkv_resp_parser_scanned_bytes_total");
    let mut s = node.raw();
    s.set_nodelay(true).expect("nodelay");
    for piece in command.chunks(1024) {
        s.write_all(piece).expect("send");
    }
    let mut reply = [0u8; 4];
    s.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply, b":0\r\n");
    let scanned = metric(&node, "gridkv_resp_parser_scanned_bytes_total") - before;
    let pieces = command.len().div_ceil(1024) as u64;
    assert!(
        scanned <= command.len() as u64 + 22 * pieces + 1024,
        "scanned {scanned} bytes for a command of {} in {pieces} pieces",
        command.len()
    );
}

/// `MGET` of a 1 MB key named 50 times: a 50 MB reply, ten times the
/// client's output bound, streamed rather than built, so a reading client
/// gets it whole; a client that does not read holds the node to about one
/// value of memory, and does not hold up shutdown.
#[test]
fn large_mget_replies_stream_and_a_non_reader_stays_bounded() {
    let mut node = node_with(OUTPUT_LIMITS);
    let value = vec![b'v'; 1 << 20];
    let mut con = node.con();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut con)
        .expect("SET");
    let mget = |n: usize| {
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(std::iter::repeat_n(&b"big"[..], n));
        encode(&args)
    };
    let values: Vec<Vec<u8>> = redis::cmd("MGET")
        .arg(vec!["big"; 50])
        .query(&mut con)
        .expect("MGET of 50 MB");
    assert!(values.len() == 50 && values.iter().all(|v| *v == value));

    // A client that sends large MGETs and never reads.
    let mut idle = node.raw();
    let command = mget(100);
    for _ in 0..20 {
        idle.write_all(&command).expect("send");
    }
    let start = Instant::now();
    let mut most = 0;
    while start.elapsed() < Duration::from_secs(2) {
        most = most.max(metric(&node, "gridkv_resp_clients_output_bytes"));
        served(&node);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        most > 0 && most <= 5 << 20,
        "a client that does not read holds {most} bytes of replies"
    );
    assert_eq!(limit_hits(&node, "max-client-output"), 0);

    // It does not hold up shutdown for long.
    node.terminate();
    let status = node.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "still running or failed: {status:?}"
    );
    drop(idle);
}

/// Replies held past `--max-client-output` close the client: an MGET that
/// names eight 1 MB keys twice must keep all eight until their second
/// position (so both positions answer one read).
#[test]
fn replies_held_past_the_client_output_bound_close_the_client() {
    let node = node_with(OUTPUT_LIMITS);
    let mut con = node.con();
    let value = vec![b'v'; 1 << 20];
    let keys: Vec<String> = (0..8).map(|i| format!("big{i}")).collect();
    for key in &keys {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(&value)
            .query(&mut con)
            .expect("SET");
    }
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(keys.iter().map(|k| k.as_bytes()));
    args.extend(keys.iter().map(|k| k.as_bytes()));
    let got = answer_then_close(&node, &encode(&args));
    assert!(
        got.len() < 16 << 20,
        "the whole reply was sent ({} bytes)",
        got.len()
    );
    wait_hits(&node, "max-client-output", 1);
    served(&node);
    // Under the bound a key named twice is answered.
    let reply: Vec<Vec<u8>> = redis::cmd("MGET")
        .arg(&keys[..2])
        .arg(&keys[..2])
        .query(&mut con)
        .expect("MGET");
    assert_eq!(reply.len(), 4);
}

/// All clients together past `--max-clients-memory`: the heaviest is
/// closed, with an error naming the limit, and the others go on.
#[test]
fn the_heaviest_client_is_closed_past_the_node_bound() {
    let node = node_with(&["--max-client-output", "5mb", "--max-clients-memory", "6mb"]);
    // Two clients each send most of a 7 MB value and stop.
    let partial = |sent: usize| {
        let mut s = node.raw();
        s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$7000000\r\n")
            .expect("send");
        s.write_all(&vec![b'x'; sent]).expect("send");
        s
    };
    let mut heavy = partial(3_500_000);
    eventually(
        "the first client's input counted",
        Duration::from_secs(10),
        || match metric(&node, "gridkv_resp_clients_input_bytes") {
            n if n >= 3_500_000 => Ok(()),
            n => Err(format!("{n} bytes")),
        },
    );
    let light = partial(3_000_000);
    let got = read_to_close(&mut heavy);
    assert!(
        got.contains("max-clients-memory"),
        "the heaviest client was told {got:?}"
    );
    wait_hits(&node, "max-clients-memory", 1);
    served(&node);
    let held = metric(&node, "gridkv_resp_clients_input_bytes");
    assert!(held <= 6 << 20, "clients hold {held} bytes");
    drop(light);
}
