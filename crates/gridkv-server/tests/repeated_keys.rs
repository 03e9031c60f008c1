//! A key named more than once in one command behaves as Redis documents
//! (issue 14, section 8): `DEL k k` deletes and counts `k` once,
//! `EXISTS k k` counts it at every position, `MGET k k` answers it at
//! every position, and `MSET k a k b` leaves `b`. Redis runs each of these
//! atomically, so the positions of one key never disagree and an earlier
//! value of an `MSET` is never seen: GridKV reads or writes such a key
//! once.
//!
//! Real `gridkv node` processes on loopback, three with N = 3, W = 2,
//! R = 2, so the keys of one command run concurrently over the network.

// Each test binary compiles the harness whole and uses part of it.
#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::Cluster;
use redis::Connection;

/// Commands each test sends while another client changes the key.
const ROUNDS: usize = 1000;

fn cluster() -> Cluster {
    Cluster::start(
        3,
        &[
            "--replicas",
            "3",
            "--write-quorum",
            "2",
            "--read-quorum",
            "2",
        ],
    )
}

fn int(con: &mut Connection, words: &[&str]) -> i64 {
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    cmd.query(con).unwrap_or_else(|e| panic!("{words:?}: {e}"))
}

/// Runs `change` on its own connection until `watch` returns, then
/// returns what `watch` returned.
fn while_changing<T>(
    cluster: &Cluster,
    mut change: impl FnMut(&mut Connection, usize) + Send + 'static,
    watch: impl FnOnce() -> T,
) -> T {
    let stop = Arc::new(AtomicBool::new(false));
    let mut con = cluster.node(1).con();
    let changing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut round = 0;
            while !stop.load(Ordering::SeqCst) {
                change(&mut con, round);
                round += 1;
            }
        })
    };
    let seen = watch();
    stop.store(true, Ordering::SeqCst);
    changing.join().expect("the changing client");
    seen
}

#[test]
fn del_counts_a_key_named_twice_once() {
    let cluster = cluster();
    let mut con = cluster.node(1).con();
    let _: () = redis::cmd("MSET")
        .arg(&["k", "v", "j", "w"])
        .query(&mut con)
        .unwrap();
    assert_eq!(int(&mut con, &["DEL", "k", "k"]), 1);
    assert_eq!(int(&mut con, &["DEL", "k", "k"]), 0);
    assert_eq!(int(&mut con, &["DEL", "k", "j", "k", "j", "nope"]), 1);
    // Pipelined, round after round: always once.
    let mut pipe = redis::pipe();
    for i in 0..ROUNDS {
        pipe.cmd("SET").arg(format!("d:{i}")).arg("v").ignore();
        pipe.cmd("DEL")
            .arg(format!("d:{i}"))
            .arg(format!("d:{i}"))
            .arg(format!("d:{i}"));
    }
    let counts: Vec<i64> = pipe.query(&mut con).unwrap();
    assert_eq!(counts, vec![1; ROUNDS]);
}

/// Positions one key takes in the `EXISTS` and `MGET` below.
const POSITIONS: usize = 32;

/// Sets and deletes `k` in turn.
fn toggle(con: &mut Connection, round: usize) {
    if round % 2 == 0 {
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg(format!("v{round}"))
            .query(con)
            .unwrap();
    } else {
        let _: i64 = redis::cmd("DEL").arg("k").query(con).unwrap();
    }
}

#[test]
fn exists_counts_every_position_of_a_key_from_one_read() {
    let cluster = cluster();
    let mut con = cluster.node(2).con();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    assert_eq!(int(&mut con, &["EXISTS", "k", "k", "nope", "k"]), 3);

    // Another client sets and deletes k meanwhile: all positions or none.
    let split = while_changing(&cluster, toggle, || {
        let mut split = Vec::new();
        for _ in 0..ROUNDS {
            let n: i64 = redis::cmd("EXISTS")
                .arg(vec!["k"; POSITIONS])
                .query(&mut con)
                .unwrap();
            if n != 0 && n != POSITIONS as i64 {
                split.push(n);
            }
        }
        split
    });
    assert!(
        split.is_empty(),
        "EXISTS of k at {POSITIONS} positions counted {split:?} in {} of {ROUNDS} rounds",
        split.len()
    );
}

#[test]
fn mget_answers_every_position_of_a_key_from_one_read() {
    let cluster = cluster();
    let mut con = cluster.node(2).con();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["k", "nope", "k"])
        .query(&mut con)
        .unwrap();
    assert_eq!(values, vec![Some("v".into()), None, Some("v".into())]);

    // Another client sets and deletes k meanwhile: one answer throughout.
    let split = while_changing(&cluster, toggle, || {
        let mut split = Vec::new();
        for _ in 0..ROUNDS {
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(vec!["k"; POSITIONS])
                .query(&mut con)
                .unwrap();
            if values.iter().any(|v| *v != values[0]) {
                split.push(values);
            }
        }
        split
    });
    assert!(
        split.is_empty(),
        "MGET of k at {POSITIONS} positions disagreed with itself in {} of {ROUNDS} rounds, \
         first: {:?}",
        split.len(),
        split[0]
    );
}

#[test]
fn mset_leaves_the_value_named_last_and_never_shows_an_earlier_one() {
    let cluster = cluster();
    let mut con = cluster.node(1).con();
    let _: () = redis::cmd("MSET")
        .arg(&["k", "a", "j", "1", "k", "b"])
        .query(&mut con)
        .unwrap();
    for node in &cluster.nodes {
        let v: Option<String> = redis::cmd("GET").arg("k").query(&mut node.con()).unwrap();
        assert_eq!(v.as_deref(), Some("b"), "on {}", node.id);
    }

    // One client sends `MSET m early<i> m late<i>` again and again; no
    // reader ever sees an `early` value (Redis applies MSET at once).
    let mut readers: Vec<Connection> = cluster.nodes.iter().map(|n| n.con()).collect();
    let early = while_changing(
        &cluster,
        |con, round| {
            let _: () = redis::cmd("MSET")
                .arg("m")
                .arg(format!("early{round}"))
                .arg("m")
                .arg(format!("late{round}"))
                .query(con)
                .unwrap();
        },
        || {
            let mut early = Vec::new();
            for round in 0..ROUNDS {
                let con = &mut readers[round % 3];
                let v: Option<String> = redis::cmd("GET").arg("m").query(con).unwrap();
                if let Some(v) = v.filter(|v| v.starts_with("early")) {
                    early.push(v);
                }
            }
            early
        },
    );
    assert!(
        early.is_empty(),
        "{} of {ROUNDS} reads saw a value MSET named before the last one: {:?}",
        early.len(),
        &early[..early.len().min(5)]
    );
    let last: Option<String> = redis::cmd("GET").arg("m").query(&mut readers[1]).unwrap();
    assert!(last.is_some_and(|v| v.starts_with("late")), "m ends late");
}
