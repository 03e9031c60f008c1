//! Mutual TLS between real `gridkv node` processes: a cluster forms over
//! it, strangers are refused at the handshake, and the CA is rotated on a
//! running cluster under load without losing an operation.

// Each test binary compiles the harness whole and uses part of it.
#[allow(dead_code)]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use common::{Node, eventually};
use gridkv_server::cert::{KeyType, Pem, Subject, make_ca, make_leaf};

/// A directory of certificates for one test, removed when it passes.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `text` to `name` through a rename (as an operator's tooling
    /// should, so a reload never reads half a file).
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    /// Issues `id`'s certificate from `ca` into `<id>.pem` / `<id>.key`.
    fn node(&self, ca: &Pem, id: &str, from: SystemTime, days: u32) {
        let subject = Subject::Node {
            id: id.to_owned(),
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
        };
        let leaf = make_leaf(ca, &subject, from, days, KeyType::Ed25519).unwrap();
        // Key first: a reload between the two writes sees the old pair or
        // a mismatched one, which it refuses (keeping the old).
        self.write(&format!("{id}.key"), &leaf.key);
        self.write(&format!("{id}.pem"), &leaf.cert);
    }

    /// The `--tls-*` flags of node `id` with the bundle in `bundle.pem`.
    fn flags(&self, id: &str) -> Vec<String> {
        let p = |n: String| self.path(&n).display().to_string();
        vec![
            "--tls-ca".into(),
            p("bundle.pem".into()),
            "--tls-cert".into(),
            p(format!("{id}.pem")),
            "--tls-key".into(),
            p(format!("{id}.key")),
        ]
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn now() -> SystemTime {
    SystemTime::now() - Duration::from_secs(60)
}

fn start(pki: &Pki, id: &str, seed: Option<&Node>) -> Node {
    let mut args = pki.flags(id);
    if let Some(seed) = seed {
        args.extend(["--seeds".into(), seed.cluster.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start(id, &args)
}

fn wait_converged(nodes: &[&Node]) {
    for node in nodes {
        for other in nodes {
            eventually(
                &format!("{} to see {} alive and normal", node.id, other.id),
                Duration::from_secs(45),
                || match node.sees(&other.id)? {
                    (s, r) if s == "alive" && r == "normal" => Ok(()),
                    seen => Err(format!("{seen:?}")),
                },
            );
        }
    }
}

/// A metric's value in a node's `/metrics` (summed over its label sets
/// matching `labels`), or 0.
fn metric(node: &Node, name: &str, labels: &str) -> f64 {
    // A connection cut during a certificate reload reads as no value yet:
    // callers wait for the metric (`eventually`).
    let Ok((_, body)) = node.http_get("/metrics") else {
        return f64::NAN;
    };
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn sighup(node: &Node) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Sends SIGHUP to every node and waits until each has counted one more
/// successful reload.
fn reload_all(nodes: &[&Node]) {
    let before: Vec<f64> = nodes
        .iter()
        .map(|n| metric(n, "gridkv_tls_reloads_total", "result=\"ok\""))
        .collect();
    for node in nodes {
        sighup(node);
    }
    for (node, before) in nodes.iter().zip(before) {
        eventually(
            &format!("{} to reload its certificates", node.id),
            Duration::from_secs(20),
            || {
                let now = metric(node, "gridkv_tls_reloads_total", "result=\"ok\"");
                if now > before {
                    Ok(())
                } else {
                    Err(format!("reloads ok {now}; log:\n{}", node.log()))
                }
            },
        );
    }
}

#[test]
fn a_tls_cluster_forms_and_says_so() {
    let pki = Pki::new("forms");
    let ca = make_ca("ca", now(), 1).unwrap();
    pki.write("bundle.pem", &ca.cert);
    for id in ["n1", "n2"] {
        pki.node(&ca, id, now(), 1);
    }
    let n1 = start(&pki, "n1", None);
    let n2 = start(&pki, "n2", Some(&n1));
    wait_converged(&[&n1, &n2]);
    let view = n1.cluster_view().unwrap();
    assert_eq!(view["tls"], true, "{view}");
    let mut con = n1.con();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let got: String = redis::cmd("GET").arg("k").query(&mut n2.con()).unwrap();
    assert_eq!(got, "v");
    assert!(metric(&n1, "gridkv_tls_certificate_expiry_seconds", "") > 0.0);
}

/// What a stranger gets from a TLS node's cluster port: a plaintext node
/// seeded with it never joins, bytes that are not a TLS ClientHello are
/// answered with an alert or a close, and the node's members do not
/// change.
#[test]
fn a_plaintext_peer_is_refused_at_the_handshake() {
    let pki = Pki::new("plain");
    let ca = make_ca("ca", now(), 1).unwrap();
    pki.write("bundle.pem", &ca.cert);
    pki.node(&ca, "n1", now(), 1);
    let n1 = start(&pki, "n1", None);
    // A plaintext node (loopback, so it may run plaintext) seeded with the
    // TLS node: it never joins.
    let plain = Node::start("p1", &["--seeds", &n1.cluster.to_string()]);
    let mut raw = TcpStream::connect(n1.cluster).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Not a TLS ClientHello: the node must close, not serve.
    raw.write_all(&[
        0, 0, 0, 16, b'G', b'K', b'V', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ])
    .unwrap();
    let mut buf = [0u8; 64];
    let n = raw.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "the node answered a plaintext hello with {:?}",
        &buf[..n]
    );
    std::thread::sleep(Duration::from_secs(2));
    let view = n1.cluster_view().unwrap();
    let members = view["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "a plaintext node got in: {view}");
    assert!(metric(&n1, "gridkv_transport_tls_failures_total", "") >= 1.0);
    drop(plain);
}

/// The rotation an operator runs: trust old and new CAs, move every node
/// to a certificate from the new CA, then drop the old CA: all under load,
/// by SIGHUP, without a failed operation; a node restarted with a new
/// certificate joins, and one with an old-CA certificate is refused at the
/// end.
#[test]
fn ca_rotation_under_load_loses_no_operation() {
    let pki = Pki::new("rotate");
    let old = make_ca("old", now(), 1).unwrap();
    let new = make_ca("new", now(), 1).unwrap();
    pki.write("bundle.pem", &old.cert);
    for id in ["n1", "n2", "n3"] {
        pki.node(&old, id, now(), 1);
    }
    let n1 = start(&pki, "n1", None);
    let n2 = start(&pki, "n2", Some(&n1));
    let mut n3 = start(&pki, "n3", Some(&n1));
    wait_converged(&[&n1, &n2, &n3]);

    // Load: SET then GET of the value just written, through n1 and n2 in
    // turn (n3 restarts below), every failure counted.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let loaders: Vec<_> = [n1.resp, n2.resp]
        .into_iter()
        .enumerate()
        .map(|(t, addr)| {
            let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
            std::thread::spawn(move || {
                let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
                let mut con = client.get_connection().unwrap();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("k{t}-{}", i % 500);
                    let value = format!("v{i}");
                    let set: redis::RedisResult<()> =
                        redis::cmd("SET").arg(&key).arg(&value).query(&mut con);
                    let get: redis::RedisResult<Option<String>> =
                        redis::cmd("GET").arg(&key).query(&mut con);
                    match (set, get) {
                        (Ok(()), Ok(Some(v))) if v == value => {}
                        other => failed.lock().unwrap().push(format!("{key}: {other:?}")),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let settle = || std::thread::sleep(Duration::from_millis(1500));
    settle();

    // 1. Trust both CAs.
    pki.write("bundle.pem", &format!("{}{}", old.cert, new.cert));
    reload_all(&[&n1, &n2, &n3]);
    settle();
    // 2. Every node on a certificate from the new CA.
    for id in ["n1", "n2", "n3"] {
        pki.node(&new, id, now(), 1);
    }
    reload_all(&[&n1, &n2, &n3]);
    settle();
    // 3. A restarted node (new connections everywhere) joins with its new
    //    certificate.
    n3.terminate();
    assert!(
        n3.wait_exit(Duration::from_secs(30)).is_some(),
        "n3 did not leave"
    );
    let n3 = start(&pki, "n3", Some(&n1));
    wait_converged(&[&n1, &n2, &n3]);
    // 4. Drop the old CA.
    pki.write("bundle.pem", &new.cert);
    reload_all(&[&n1, &n2, &n3]);
    settle();

    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    let done = done.load(Ordering::Relaxed);
    assert!(done > 100, "only {done} operations ran");
    assert!(
        failed.is_empty(),
        "{} of {done} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );

    // A node still on an old-CA certificate (and trusting only the old
    // CA) is refused now.
    pki.node(&old, "n4", now(), 1);
    pki.write("old-bundle.pem", &old.cert);
    let mut flags = pki.flags("n4");
    flags[1] = pki.path("old-bundle.pem").display().to_string();
    flags.extend(["--seeds".into(), n1.cluster.to_string()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let n4 = Node::start("n4", &flags);
    std::thread::sleep(Duration::from_secs(3));
    let view = n1.cluster_view().unwrap();
    assert!(
        !view["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "n4"),
        "an old-CA node joined: {view}"
    );
    drop(n4);
}

/// A reload that reads a broken file keeps the certificates it had, and
/// says so in a metric.
#[test]
fn a_failed_reload_keeps_the_old_certificates() {
    let pki = Pki::new("broken");
    let ca = make_ca("ca", now(), 1).unwrap();
    pki.write("bundle.pem", &ca.cert);
    for id in ["n1", "n2"] {
        pki.node(&ca, id, now(), 1);
    }
    let n1 = start(&pki, "n1", None);
    pki.write("n1.pem", "not a certificate\n");
    sighup(&n1);
    eventually("a failed reload", Duration::from_secs(20), || match metric(
        &n1,
        "gridkv_tls_reloads_total",
        "result=\"failed\"",
    ) {
        v if v >= 1.0 => Ok(()),
        v => Err(format!("{v}")),
    });
    // Still serving with the old pair: a new node joins.
    let n2 = start(&pki, "n2", Some(&n1));
    wait_converged(&[&n1, &n2]);
}

/// `gridkv remove`: an operator's signed removal takes a dead member off
/// every node's ring at once; one signed by an operator of another CA is
/// refused and changes nothing.
#[test]
fn an_operator_removes_a_dead_member_and_a_stranger_cannot() {
    let pki = Pki::new("remove");
    let ca = make_ca("ca", now(), 1).unwrap();
    let other = make_ca("other", now(), 1).unwrap();
    pki.write("bundle.pem", &ca.cert);
    for id in ["n1", "n2", "n3"] {
        pki.node(&ca, id, now(), 1);
    }
    for (name, issuer) in [("ops", &ca), ("intruder", &other)] {
        let subject = Subject::Operator { name: name.into() };
        let leaf = make_leaf(issuer, &subject, now(), 1, KeyType::Ed25519).unwrap();
        pki.write(&format!("{name}.key"), &leaf.key);
        pki.write(&format!("{name}.pem"), &leaf.cert);
    }
    let n1 = start(&pki, "n1", None);
    let n2 = start(&pki, "n2", Some(&n1));
    let mut n3 = start(&pki, "n3", Some(&n1));
    wait_converged(&[&n1, &n2, &n3]);
    n3.kill();
    n1.wait_sees("n3", &["suspect", "down"], Duration::from_secs(20));

    let remove = |operator: &str| {
        let http = n1.http.to_string();
        let cert = pki.path(&format!("{operator}.pem")).display().to_string();
        let key = pki.path(&format!("{operator}.key")).display().to_string();
        common::run_to_exit(
            &[
                "remove",
                "n3",
                "--http",
                &http,
                "--operator-cert",
                &cert,
                "--operator-key",
                &key,
            ],
            Duration::from_secs(30),
        )
    };
    let (status, _, err) = remove("intruder");
    assert!(
        !status.success(),
        "a removal signed by another CA's operator was accepted"
    );
    assert!(err.contains("403"), "{err}");
    for node in [&n1, &n2] {
        let (_, ring) = node.sees("n3").unwrap();
        assert_ne!(
            ring, "removed",
            "{} removed n3 on a stranger's word",
            node.id
        );
    }

    let (status, out, err) = remove("ops");
    assert!(status.success(), "gridkv remove failed: {out}{err}");
    for node in [&n1, &n2] {
        eventually(
            &format!("{} to see n3 removed", node.id),
            Duration::from_secs(10),
            || match node.sees("n3") {
                Ok((_, ring)) if ring == "removed" => Ok(()),
                Err(e) if e.contains("not a member") => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
}
