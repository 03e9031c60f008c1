//! Starting `gridkv node` processes as a new user would: five at once,
//! each given the others as seeds; a node whose seeds never answer; weak
//! quorums; a node with no seeds.
//!
//! Real processes on loopback. Tests with real timing are named
//! `cluster_*` so nextest runs them one at a time. `GRIDKV_SEED=<seed>`
//! replays a run's choices (its start order), which a failure prints.

// Each test binary compiles the harness whole and uses part of it.
#[allow(dead_code)]
mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Node, eventually, run_to_exit};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The run's seed: `GRIDKV_SEED`, or a fresh one.
fn run_seed() -> u64 {
    std::env::var("GRIDKV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// `count` loopback addresses that were free a moment ago.
fn free_addrs(count: usize) -> Vec<String> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").to_string())
        .collect()
}

/// Starts `n1`..`nN` at once (in `order`), each with `--listen` on its
/// address and every other address as `--seeds`, plus `extra`.
fn start_at_once(addrs: &[String], order: &[usize], extra: &[&str]) -> Vec<Node> {
    let started: Mutex<Vec<(usize, Node)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for &i in order {
            let started = &started;
            s.spawn(move || {
                let seeds: Vec<&str> = addrs
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, a)| a.as_str())
                    .collect();
                let seeds = seeds.join(",");
                let mut args = vec!["--listen", addrs[i].as_str(), "--seeds", &seeds];
                args.extend_from_slice(extra);
                let node = Node::start(&format!("n{}", i + 1), &args);
                started.lock().unwrap().push((i, node));
            });
        }
    });
    let mut nodes = started.into_inner().unwrap();
    nodes.sort_by_key(|(i, _)| *i);
    nodes.into_iter().map(|(_, n)| n).collect()
}

/// `/health` of `node` as JSON, with its status code.
fn health(node: &Node) -> Result<(u16, serde_json::Value), String> {
    let (code, body) = node.http_get("/health").map_err(|e| e.to_string())?;
    let json = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok((code, json))
}

/// Five processes started at once, N=3 W=2 R=2. On each, a client sets its
/// own key as soon as a SET is acknowledged (retrying `TRYAGAIN` while the
/// cluster forms), then reads it through every other node: never nil.
/// Meanwhile no `/health` says ok with W or R below 2. Several fresh
/// clusters: the window in which each node acted as a cluster of its own
/// was about 0.2 s, and a history check found it in 4 runs of 10.
#[test]
fn cluster_five_processes_started_at_once_never_answer_nil_after_an_acknowledged_set() {
    let seed = run_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..3 {
        let addrs = free_addrs(5);
        let mut order: Vec<usize> = (0..5).collect();
        order.shuffle(&mut rng);
        let pause_ms = rng.random_range(0..5);
        let nodes = start_at_once(&addrs, &order, &[]);
        let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let done = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            // Every /health, polled until every writer is done.
            s.spawn(|| {
                while done.load(std::sync::atomic::Ordering::Relaxed) < nodes.len() {
                    for node in &nodes {
                        if let Ok((200, h)) = health(node)
                            && (h["effective_write_quorum"] != 2 || h["effective_read_quorum"] != 2)
                        {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{}: /health ok with {h}", node.id));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(pause_ms + 5));
                }
            });
            for (i, node) in nodes.iter().enumerate() {
                let (nodes, failures, done) = (&nodes, &failures, &done);
                s.spawn(move || {
                    let key = format!("r{round}-k{i}");
                    let value = format!("v{i}");
                    let started = Instant::now();
                    let mut con = node.con();
                    let mut refused = 0;
                    loop {
                        let set: redis::RedisResult<String> =
                            redis::cmd("SET").arg(&key).arg(&value).query(&mut con);
                        match set {
                            Ok(_) => break,
                            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                                refused += 1;
                                let _ = e;
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            Err(e) => {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("{key}: no SET acknowledged in 30 s: {e}"));
                                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                return;
                            }
                        }
                    }
                    let acked = started.elapsed();
                    for other in nodes.iter().filter(|o| o.id != node.id) {
                        let mut con = other.con();
                        // A read may fail while owners fill ranges they
                        // just gained; retried, it must find the value.
                        let mut got = None;
                        for _ in 0..100 {
                            match redis::cmd("GET")
                                .arg(&key)
                                .query::<Option<String>>(&mut con)
                            {
                                Ok(v) => {
                                    got = Some(v);
                                    break;
                                }
                                Err(_) => std::thread::sleep(Duration::from_millis(20)),
                            }
                        }
                        if got.as_ref() != Some(&Some(value.clone())) {
                            failures.lock().unwrap().push(format!(
                                "{key}: SET acknowledged by {} at {acked:?} after {refused} \
                                 refusals, then GET on {} answered {got:?}",
                                node.id, other.id
                            ));
                        }
                    }
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                });
            }
        });
        let failures = failures.into_inner().unwrap();
        assert!(
            failures.is_empty(),
            "seed {seed}, round {round} (start order {order:?}): {failures:#?}"
        );
    }
}

/// A node whose seed never answers: PING, HELLO, INFO and `/health`
/// answer at once; a data command waits (a few seconds) for the node to
/// serve, then answers `-TRYAGAIN` saying what is missing.
#[test]
fn cluster_data_commands_answer_tryagain_after_waiting_while_ping_answers_at_once() {
    let dead = free_addrs(1).remove(0);
    let node = Node::start("lonely", &["--seeds", &dead]);
    let mut con = node.con();

    let started = Instant::now();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let hello: redis::Value = redis::cmd("HELLO").query(&mut con).unwrap();
    assert!(!matches!(hello, redis::Value::ServerError(_)), "{hello:?}");
    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    assert!(info.contains("# Replication") || !info.is_empty(), "{info}");
    let (code, h) = health(&node).unwrap();
    assert_eq!(code, 503, "{h}");
    assert_eq!(h["serving"], false, "{h}");
    assert!(
        h["waiting_for"].as_str().unwrap().contains("not joined"),
        "{h}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "PING, HELLO, INFO and /health took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let err = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<String>(&mut con)
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.code(), Some("TRYAGAIN"), "{err}");
    assert!(err.to_string().contains("not joined"), "{err}");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "waited {waited:?}"
    );
    let view = node.cluster_view().unwrap();
    assert_eq!(view["node"]["serving"], false, "{view}");
    assert_eq!(view["node"]["standalone"], false, "{view}");
}

/// W + R <= N is refused, naming the numbers and the way to ask for it;
/// asked for with `--consistency eventual`, it starts and says so in
/// `/cluster` and its log.
#[test]
fn weak_quorums_need_consistency_eventual_and_are_reported() {
    let weak = [
        "--replicas",
        "3",
        "--write-quorum",
        "1",
        "--read-quorum",
        "1",
    ];
    let mut args = vec!["node", "--id", "weak"];
    args.extend_from_slice(&weak);
    args.extend([
        "--listen",
        "127.0.0.1:0",
        "--resp",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ]);
    let (status, stdout, stderr) = run_to_exit(&args, Duration::from_secs(30));
    assert!(!status.success(), "{stdout}");
    assert!(stderr.contains("W=1 + R=1 <= N=3"), "{stderr}");
    assert!(stderr.contains("--consistency"), "{stderr}");

    let mut flags = weak.to_vec();
    flags.extend(["--consistency", "eventual"]);
    let node = Node::start("weak", &flags);
    let view = eventually("/cluster", Duration::from_secs(10), || node.cluster_view());
    assert_eq!(view["replication"]["consistency"], "eventual", "{view}");
    let log = eventually("the startup log", Duration::from_secs(10), || {
        let log = node.log();
        if log.contains("consistency eventual") {
            Ok(log)
        } else {
            Err(log)
        }
    });
    assert!(log.contains("W=1 R=1"), "{log}");
}

/// A node with no seeds serves at once, as a cluster of one: `/cluster`
/// and its log say it keeps one copy.
#[test]
fn a_node_without_seeds_serves_at_once_and_says_it_keeps_one_copy() {
    let node = Node::start("solo", &[]);
    let mut con = node.con();
    let ok: String = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    let view = node.cluster_view().unwrap();
    assert_eq!(view["node"]["standalone"], true, "{view}");
    assert_eq!(view["node"]["serving"], true, "{view}");
    assert_eq!(view["replication"]["consistency"], "strong", "{view}");
    assert_eq!(view["replication"]["reduced"], true, "{view}");
    assert_eq!(view["replication"]["effective_replicas"], 1, "{view}");
    let log = node.log();
    assert!(log.contains("no seeds: a one-node cluster"), "{log}");
}
