//! Six real nodes in two datacenters, `--replicas a:2,b:1`: placement per
//! datacenter and rack, LOCAL_QUORUM through a whole datacenter's loss,
//! and the lost datacenter catching up once it is back.

#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use common::{Node, eventually};
use redis::Commands;

/// How long the restarted datacenter may take to serve every key written
/// while it was away (the promise this test states: fill on rejoin plus
/// hints, on a busy two-core machine).
const CATCH_UP: Duration = Duration::from_secs(60);

/// A LOCAL_QUORUM call through datacenter a while b is gone may take no
/// longer than this: one that waited for b would take the request
/// timeout (2 s) or the failure detector's seconds.
const NO_WAIT_FOR_REMOTE: Duration = Duration::from_millis(500);

fn start(id: &str, dc: &str, rack: &str, seed: Option<&Node>) -> Node {
    let seed = seed.map(|s| s.cluster.to_string());
    let mut args = vec!["--dc", dc, "--replicas", "a:2,b:1"];
    if !rack.is_empty() {
        args.extend(["--rack", rack]);
    }
    if let Some(seed) = &seed {
        args.extend(["--seeds", seed.as_str()]);
    }
    Node::start(id, &args)
}

fn converged(nodes: &[&Node], alive: &[&str]) {
    for node in nodes {
        eventually(
            &format!("{} to see {alive:?}", node.id),
            Duration::from_secs(60),
            || {
                if node.health() != 200 {
                    return Err("not healthy".into());
                }
                for id in alive {
                    let seen = node.sees(id)?;
                    if seen != ("alive".into(), "normal".into()) {
                        return Err(format!("{id} is {seen:?}"));
                    }
                }
                Ok(())
            },
        );
    }
}

/// The value of the sample `series` (name and labels) in `node`'s
/// `/metrics`; NaN if absent.
fn metric(node: &Node, series: &str) -> f64 {
    let (_, body) = node.http_get("/metrics").expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(f64::NAN)
}

fn placement(node: &Node, key: &str) -> serde_json::Value {
    let (code, body) = node
        .http_get(&format!("/placement?key={key}"))
        .expect("placement");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

#[test]
fn a_datacenter_lost_costs_the_other_nothing_and_catches_up_when_back() {
    // a's racks: a1 and a2 share r1, a3 is alone in r2, so each key's two
    // copies in a are on r1 and r2: a3 holds every key.
    let a1 = start("a1", "a", "r1", None);
    let a2 = start("a2", "a", "r1", Some(&a1));
    let a3 = start("a3", "a", "r2", Some(&a1));
    let mut b: Vec<Node> = ["b1", "b2", "b3"]
        .iter()
        .map(|id| start(id, "b", "", Some(&a1)))
        .collect();
    let ids = ["a1", "a2", "a3", "b1", "b2", "b3"];
    let everyone: Vec<&Node> = [&a1, &a2, &a3].into_iter().chain(b.iter()).collect();
    converged(&everyone, &ids);

    // Placement: two owners in a on distinct racks, one in b.
    for i in 0..100 {
        let key = format!("k{i}");
        let view = placement(&a2, &key);
        let owners = view["owners"].as_array().expect("owners");
        let in_dc = |dc: &str| owners.iter().filter(|o| o["dc"] == dc).count();
        assert_eq!((owners.len(), in_dc("a"), in_dc("b")), (3, 2, 1), "{view}");
        let racks: Vec<_> = owners
            .iter()
            .filter(|o| o["dc"] == "a")
            .map(|o| o["rack"].clone())
            .collect();
        assert_ne!(racks[0], racks[1], "copies in a share a rack: {view}");
        assert!(owners.iter().any(|o| o["id"] == "a3"), "{view}");
        // Every node agrees.
        assert_eq!(placement(&b[0], &key)["owners"], view["owners"]);
    }
    let view = a1.cluster_view().expect("cluster");
    let dcs = &view["placement"]["datacenters"];
    assert_eq!(
        view["placement"]["guarantee"], "strong within a datacenter, eventual across",
        "{view}"
    );
    assert_eq!(dcs.as_array().map(Vec::len), Some(2), "{view}");
    assert_eq!(dcs[0]["copies"], 2);
    assert_eq!(dcs[1]["copies"], 1);

    // Written in a, read in b: it arrives (asynchronously).
    let mut in_a = a1.con();
    let _: () = in_a.set("before", "1").expect("set");
    let mut in_b = b[0].con();
    eventually("b to get a's write", Duration::from_secs(10), || {
        let got: Option<String> = in_b.get("before").map_err(|e| e.to_string())?;
        (got.as_deref() == Some("1"))
            .then_some(())
            .ok_or(format!("{got:?}"))
    });
    let level: String = redis::cmd("GRIDKV.CONSISTENCY")
        .query(&mut in_a)
        .expect("level");
    assert_eq!(level, "LOCAL_QUORUM");
    // b's copy went through a1's stream to b.
    eventually(
        "a1's stream to deliver to b",
        Duration::from_secs(10),
        || {
            let sent = metric(&a1, "gridkv_remote_writes_total{outcome=\"sent\"}");
            (sent >= 1.0).then_some(()).ok_or(format!("sent {sent}"))
        },
    );
    assert!(metric(&a1, "gridkv_remote_lag_seconds{datacenter=\"b\"}") < 5.0);

    // All of b crashes.
    for node in &mut b {
        node.kill();
    }
    drop(in_b);
    let mut through = [a1.con(), a2.con(), a3.con()];
    let mut slowest = Duration::ZERO;
    let mut timings = Vec::new();
    for i in 0..600 {
        let con = &mut through[i % 3];
        let key = format!("while-away:{i}");
        let started = Instant::now();
        let _: () = con
            .set(&key, i)
            .unwrap_or_else(|e| panic!("LOCAL_QUORUM set {key} with b down: {e}"));
        let got: Option<i64> = con
            .get(&key)
            .unwrap_or_else(|e| panic!("LOCAL_QUORUM get {key} with b down: {e}"));
        assert_eq!(got, Some(i as i64), "{key}");
        let took = started.elapsed();
        slowest = slowest.max(took);
        timings.push(took);
    }
    timings.sort();
    eprintln!(
        "set+get through a with b down: p50 {:?}, p99 {:?}, max {slowest:?}",
        timings[timings.len() / 2],
        timings[timings.len() * 99 / 100]
    );
    assert!(
        slowest < NO_WAIT_FOR_REMOTE,
        "a LOCAL_QUORUM set+get took {slowest:?} with datacenter b down"
    );
    // Writes for b's owners became hints, not losses.
    let hinted: f64 = [&a1, &a2, &a3]
        .iter()
        .map(|n| metric(n, "gridkv_remote_writes_total{outcome=\"hinted\"}"))
        .sum();
    assert!(hinted >= 1.0, "no write for b was hinted");
    // b's members are down, not removed: still in placement.
    a1.wait_sees("b1", &["down"], Duration::from_secs(30));
    let owners = placement(&a1, "while-away:0")["owners"].clone();
    assert!(
        owners.as_array().unwrap().iter().any(|o| o["dc"] == "b"),
        "{owners}"
    );

    // b comes back (new runs, new addresses) and catches up.
    let restarted = Instant::now();
    let b: Vec<Node> = ["b1", "b2", "b3"]
        .iter()
        .map(|id| start(id, "b", "", Some(&a1)))
        .collect();
    let mut readers: Vec<redis::Connection> = b.iter().map(Node::con).collect();
    for con in &mut readers {
        let _: () = redis::cmd("GRIDKV.CONSISTENCY")
            .arg("local_one")
            .query(con)
            .expect("set level");
    }
    eventually(
        "b to serve every key written while it was away",
        CATCH_UP,
        || {
            for i in 0..600 {
                let key = format!("while-away:{i}");
                let got: Option<i64> = readers[i % 3].get(&key).map_err(|e| e.to_string())?;
                if got != Some(i as i64) {
                    return Err(format!("{key}: {got:?}"));
                }
            }
            Ok(())
        },
    );
    eprintln!(
        "b served every key {:?} after its restart",
        restarted.elapsed()
    );
}
