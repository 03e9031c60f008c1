//! Real `gridkv node` processes whose wall clocks are off (issue 15 §3),
//! through Debian's libfaketime: `LD_PRELOAD` of `libfaketime.so.1` with
//! `FAKETIME` (`+3s`, `-3s`, `+1h`) and `FAKETIME_DONT_FAKE_MONOTONIC=1`,
//! so tokio's timers keep the real monotonic clock. It works on the
//! dynamically linked test binary, not the static image.
//!
//! - Offsets 0, +3 s and −3 s: every overwrite of a key through the slow
//!   node succeeds and reads back as the latest from every node.
//! - One node an hour fast (default 5 s bound): it is fenced within
//!   seconds (`/health` 503 `clock_offset`, `/live` 200, writes through it
//!   answered `-TRYAGAIN clock offset ...`), and still stores and serves
//!   what the others coordinate.
//!
//! Measured (2 cores, optimized test build): 1,000 of 1,000 overwrites
//! through the −3 s node succeeded, each read back from all three nodes;
//! the +1 h node was fenced 1.4 s after it started (its ready line at 0.1 s) and refused writes from then on (see
//! docs/BENCHMARKS.md). Each test prints its figures on stderr.
//!
//! Without libfaketime the tests print why and pass, so the README's test
//! command works on a fresh machine; with `GRIDKV_REQUIRE_FAKETIME=1`
//! (which `.ci/run` sets after installing Debian's `faketime`) they fail
//! instead.

// Each test binary compiles the harness whole and uses part of it.
#[allow(dead_code)]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Cluster, Node, eventually};

/// Where Debian's `faketime` package puts the library.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Whether libfaketime is here; without it, says so (and fails under
/// `GRIDKV_REQUIRE_FAKETIME=1`).
fn faketime_available(test: &str) -> bool {
    if Path::new(LIBFAKETIME).exists() {
        return true;
    }
    let why = format!(
        "{test}: SKIPPED: {LIBFAKETIME} is missing (install Debian's `faketime` package: \
         apt-get install faketime)"
    );
    if std::env::var_os("GRIDKV_REQUIRE_FAKETIME").is_some_and(|v| v == "1") {
        panic!("{why}; GRIDKV_REQUIRE_FAKETIME=1 requires it");
    }
    eprintln!("{why}");
    false
}

/// The environment that puts a node's wall clock `offset` away
/// (libfaketime's syntax: `+3s`, `-3s`, `+1h`), its monotonic clock real.
fn skewed(offset: &str) -> [(&str, &str); 3] {
    [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME", offset),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]
}

/// `/health` as `(code, document)`.
fn health(node: &Node) -> Result<(u16, serde_json::Value), String> {
    let (code, body) = node.http_get("/health").map_err(|e| e.to_string())?;
    let doc = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok((code, doc))
}

/// The node's measured clock offset from the cluster's median, in ms.
fn offset_ms(node: &Node) -> Result<i64, String> {
    let (_, doc) = health(node)?;
    doc["clock"]["offset_ms"]
        .as_i64()
        .ok_or_else(|| format!("no clock offset yet: {doc}"))
}

/// The node's live keys, from `/metrics`.
fn live_keys(node: &Node) -> Result<u64, String> {
    let (_, body) = node.http_get("/metrics").map_err(|e| e.to_string())?;
    body.lines()
        .find_map(|l| l.strip_prefix("gridkv_store_entries{kind=\"live\"} "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no gridkv_store_entries{kind=\"live\"} in /metrics".to_owned())
}

#[test]
fn cluster_nodes_3s_fast_and_3s_slow_take_every_overwrite() {
    if !faketime_available("cluster_nodes_3s_fast_and_3s_slow_take_every_overwrite") {
        return;
    }
    let first = Node::start("n1", &[]);
    let seed = first.cluster.to_string();
    let fast = Node::start_env("n2", &["--seeds", seed.as_str()], &skewed("+3s"));
    let slow = Node::start_env("n3", &["--seeds", seed.as_str()], &skewed("-3s"));
    let cluster = Cluster {
        nodes: vec![first, fast, slow],
    };
    cluster.wait_converged();
    // The clocks really are apart (else this test would prove nothing):
    // each skewed node measures itself about 3 s off the median, n1's.
    eventually(
        "n2 and n3 to measure themselves 3 s off",
        Duration::from_secs(30),
        || {
            let (fast, slow) = (offset_ms(cluster.node(2))?, offset_ms(cluster.node(3))?);
            if (2_000..4_000).contains(&fast) && (-4_000..-2_000).contains(&slow) {
                Ok(())
            } else {
                Err(format!("n2 {fast} ms, n3 {slow} ms"))
            }
        },
    );
    let mut writer = cluster.node(3).con();
    let mut readers: Vec<redis::Connection> = cluster.nodes.iter().map(Node::con).collect();
    let started = Instant::now();
    let mut ok = 0;
    for i in 0..1_000 {
        let value = format!("v{i}");
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg("skewed")
            .arg(&value)
            .query(&mut writer);
        if let Err(e) = set {
            panic!("overwrite {i} through the -3 s node failed after {ok} ok: {e}");
        }
        ok += 1;
        for (n, reader) in readers.iter_mut().enumerate() {
            let got: Option<String> = redis::cmd("GET")
                .arg("skewed")
                .query(reader)
                .unwrap_or_else(|e| panic!("GET through n{} after overwrite {i}: {e}", n + 1));
            assert_eq!(
                got.as_deref(),
                Some(value.as_str()),
                "n{} after overwrite {i}",
                n + 1
            );
        }
    }
    eprintln!(
        "clock_skew: {ok} of 1000 overwrites through the -3 s node ok, each read back from \
         all 3 nodes, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn cluster_a_node_an_hour_fast_is_fenced_and_still_a_replica() {
    if !faketime_available("cluster_a_node_an_hour_fast_is_fenced_and_still_a_replica") {
        return;
    }
    let first = Node::start("n1", &[]);
    let seed = first.cluster.to_string();
    let second = Node::start("n2", &["--seeds", seed.as_str()]);
    let started = Instant::now();
    let ahead = Node::start_env("n3", &["--seeds", seed.as_str()], &skewed("+1h"));
    let ready_line = started.elapsed();
    // Fenced within seconds: readiness says why, liveness stays up.
    let fenced = eventually(
        "n3's /health to be 503 clock_offset",
        Duration::from_secs(30),
        || {
            let (code, doc) = health(&ahead)?;
            if code == 503 && doc["status"] == "clock_offset" && doc["clock"]["fenced"] == true {
                Ok((
                    started.elapsed(),
                    doc["clock"]["offset_ms"].as_i64().unwrap_or(0),
                ))
            } else {
                Err(format!("{code} {doc}"))
            }
        },
    );
    let (fenced_after, offset) = fenced;
    assert!(
        (3_500_000..3_700_000).contains(&offset),
        "n3 measured {offset} ms off, not about an hour"
    );
    assert_eq!(
        ahead.http_get("/live").map(|(code, _)| code).ok(),
        Some(200)
    );
    // Writes through it are refused, naming the clock offset.
    let mut con = ahead.con();
    let refused = eventually(
        "a write through n3 to be refused for its clock",
        Duration::from_secs(10),
        || match redis::cmd("SET")
            .arg("fenced")
            .arg("x")
            .query::<()>(&mut con)
        {
            Err(e) if e.code() == Some("TRYAGAIN") && e.to_string().contains("clock offset") => {
                Ok(started.elapsed())
            }
            Err(e) => Err(format!("another error: {e}")),
            Ok(()) => Err("the write succeeded".to_owned()),
        },
    );
    // The others serve; their writes reach n3, which stores and serves them.
    for node in [&first, &second] {
        eventually(
            &format!("{} to be healthy", node.id),
            Duration::from_secs(30),
            || match node.health() {
                200 => Ok(()),
                code => Err(format!("/health {code}")),
            },
        );
    }
    let keys = 100;
    for (i, node) in [&first, &second].iter().cycle().take(keys).enumerate() {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(format!("v{i}"))
            .query(&mut node.con())
            .unwrap_or_else(|e| panic!("write k{i} through {}: {e}", node.id));
    }
    for (i, node) in [&second, &first, &ahead]
        .iter()
        .cycle()
        .take(keys)
        .enumerate()
    {
        let got: Option<String> = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query(&mut node.con())
            .unwrap_or_else(|e| panic!("read k{i} through {}: {e}", node.id));
        assert_eq!(got, Some(format!("v{i}")), "k{i} through {}", node.id);
    }
    eventually(
        "n3 to hold every key written through the others",
        Duration::from_secs(30),
        || match live_keys(&ahead)? {
            n if n >= keys as u64 => Ok(()),
            n => Err(format!("{n} live keys")),
        },
    );
    assert_eq!(
        health(&ahead).map(|(code, _)| code),
        Ok(503),
        "still fenced"
    );
    eprintln!(
        "clock_skew: the +1 h node printed its ready line {:.1} s after start, was fenced \
         ({offset} ms off) {:.1} s after start, refused writes from {:.1} s; {keys} of {keys} \
         writes through the others ok and held by it",
        ready_line.as_secs_f64(),
        fenced_after.as_secs_f64(),
        refused.as_secs_f64()
    );
}
