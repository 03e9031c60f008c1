//! TLS on the client listeners against real `gridkv node` processes
//! (issue 16): `--resp-tls` with the node's certificate, optional and
//! required client certificates, redis-cli `--tls`, and `--http-tls`.
//! Certificates are made here with rcgen: a CA, an Ed25519 node
//! certificate naming `gridkv:node:n1` (what `gridkv cert node` makes),
//! client certificates, and another CA's.
//!
//! The redis-cli test needs `redis-cli` 6 or later built with TLS
//! (`apt install redis-tools`). Without it, it says so on stderr and
//! passes, unless `GRIDKV_REQUIRE_REDIS_CLI=1`.

// Each test binary compiles the harness whole and uses part of it.
#[allow(dead_code)]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Node, ONE_COPY, Resp, eventually};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    SignatureAlgorithm,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A CA that signs certificates into files of one directory.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("tls-tests")
            .join(format!("{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let issuer = CertifiedIssuer::self_signed(params, key).unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        Ca {
            issuer,
            dir,
            name: name.to_owned(),
        }
    }

    fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate named `file` (`file.pem`, `file.key`) for `hosts`,
    /// with the URI SAN `uri` if given, on a key of `alg`.
    fn issue(
        &self,
        file: &str,
        hosts: &[&str],
        uri: Option<&str>,
        alg: &'static SignatureAlgorithm,
    ) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{file} ({})", self.name));
        if let Some(uri) = uri {
            params
                .subject_alt_names
                .push(SanType::URI(uri.try_into().unwrap()));
        }
        let key = KeyPair::generate_for(alg).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    /// The node certificate of `n1`, as `gridkv cert node` makes it.
    fn node(&self) -> (PathBuf, PathBuf) {
        self.issue(
            "node",
            &["localhost", "127.0.0.1"],
            Some("gridkv:node:n1"),
            &rcgen::PKCS_ED25519,
        )
    }
}

/// `--tls-ca/--tls-cert/--tls-key` of `ca`'s node certificate, and `extra`.
fn start(ca: &Ca, extra: &[&str]) -> Node {
    let (cert, key) = ca.node();
    let mut args: Vec<String> = ONE_COPY.iter().map(|s| s.to_string()).collect();
    for (flag, path) in [
        ("--tls-ca", ca.ca_pem()),
        ("--tls-cert", cert),
        ("--tls-key", key),
    ] {
        args.push(flag.into());
        args.push(path.to_str().unwrap().into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start("n1", &args)
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A TLS 1.3 connection to `addr` trusting `ca`, presenting `client` if
/// given, with the handshake done (the server may still refuse the
/// client's certificate at the first read: TLS 1.3 sends that after).
fn tls_connect(
    addr: SocketAddr,
    ca: &Path,
    client: Option<&(PathBuf, PathBuf)>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(certs(cert), PrivateKeyDer::from_pem_file(key).unwrap())
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from("localhost").unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// `PING` over TLS: `Ok("+PONG")`, or why not.
fn tls_ping(node: &Node, ca: &Path, client: Option<&(PathBuf, PathBuf)>) -> Result<String, String> {
    let stream = tls_connect(node.resp, ca, client, &[]).map_err(|e| e.to_string())?;
    Resp::new(stream)
        .try_cmd(&["PING"])
        .map_err(|e| e.to_string())
}

fn metric(node: &Node, name: &str) -> String {
    let (_, text) = node.http_get("/metrics").unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn resp_tls_serves_tls_only_with_the_node_certificate() {
    let ca = Ca::new("ca");
    let node = start(&ca, &["--resp-tls", "--requirepass", "pw"]);
    let mut c = Resp::new(tls_connect(node.resp, &ca.ca_pem(), None, &[]).unwrap());
    // The certificate presented is the node's, signed by the CA.
    assert_eq!(c.cmd(&["GET", "k"]), "-NOAUTH Authentication required.");
    assert_eq!(c.cmd(&["AUTH", "pw"]), "+OK");
    assert_eq!(c.cmd(&["SET", "k", "over tls"]), "+OK");
    assert_eq!(c.cmd(&["GET", "k"]), "over tls");
    // A pipelined MGET of many keys streams its reply over TLS too.
    let keys: Vec<String> = (0..2000).map(|i| format!("k{i}")).collect();
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    let reply = c.cmd(&mget);
    assert_eq!(reply.matches("(nil)").count(), 2000, "{}", &reply[..200]);
    let info = c.cmd(&["INFO", "clients"]);
    assert!(info.contains("connected_clients:1"), "{info}");
    // A plaintext client gets nothing served.
    let mut plain = Resp::new(node.raw());
    if let Ok(reply) = plain.try_cmd(&["PING"]) {
        assert!(!reply.contains("PONG"), "plaintext was served: {reply}");
    }
    eventually(
        "the failed handshake to be counted",
        Duration::from_secs(10),
        || {
            let line = metric(&node, "gridkv_resp_tls_handshake_failures_total");
            (line == "gridkv_resp_tls_handshake_failures_total 1")
                .then_some(())
                .ok_or(line)
        },
    );
    // A client trusting another CA refuses the node.
    let other = Ca::new("other-ca");
    assert!(tls_connect(node.resp, &other.ca_pem(), None, &[]).is_err());
    // The TLS connection still works after all that.
    assert_eq!(c.cmd(&["PING"]), "+PONG");
}

#[test]
fn client_certificates_required_or_optional() {
    let ca = Ca::new("ca-clients");
    let other = Ca::new("other-clients");
    let good = ca.issue("client", &["client"], None, &rcgen::PKCS_ECDSA_P256_SHA256);
    let foreign = other.issue("client", &["client"], None, &rcgen::PKCS_ED25519);
    let required = start(&ca, &["--resp-tls", "--resp-tls-client-certs", "required"]);
    assert_eq!(
        tls_ping(&required, &ca.ca_pem(), Some(&good)),
        Ok("+PONG".into())
    );
    let no_cert = tls_ping(&required, &ca.ca_pem(), None);
    assert!(
        no_cert.is_err(),
        "served without a certificate: {no_cert:?}"
    );
    let wrong_ca = tls_ping(&required, &ca.ca_pem(), Some(&foreign));
    assert!(
        wrong_ca.is_err(),
        "served another CA's client: {wrong_ca:?}"
    );
    let optional = start(&ca, &["--resp-tls", "--resp-tls-client-certs", "optional"]);
    assert_eq!(tls_ping(&optional, &ca.ca_pem(), None), Ok("+PONG".into()));
    assert_eq!(
        tls_ping(&optional, &ca.ca_pem(), Some(&good)),
        Ok("+PONG".into())
    );
    let wrong_ca = tls_ping(&optional, &ca.ca_pem(), Some(&foreign));
    assert!(
        wrong_ca.is_err(),
        "served another CA's client: {wrong_ca:?}"
    );
}

#[test]
fn redis_cli_connects_with_tls() {
    let found = std::process::Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var("GRIDKV_REQUIRE_REDIS_CLI").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "redis-cli is missing and GRIDKV_REQUIRE_REDIS_CLI=1"
        );
        eprintln!(
            "SKIPPED redis_cli_connects_with_tls: redis-cli is missing (apt install redis-tools; \
             GRIDKV_REQUIRE_REDIS_CLI=1 makes this a failure)"
        );
        return;
    }
    let ca = Ca::new("ca-cli");
    let node = start(&ca, &["--resp-tls", "--requirepass", "pw"]);
    let port = node.resp.port().to_string();
    let ca_pem = ca.ca_pem();
    let cli = |auth: &[&str], command: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["--tls", "--cacert", ca_pem.to_str().unwrap()])
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(auth)
            .args(command)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    };
    let auth = ["-a", "pw", "--no-auth-warning"];
    assert_eq!(cli(&auth, &["SET", "cli", "tls"]), "OK");
    assert_eq!(cli(&auth, &["GET", "cli"]), "tls");
    assert_eq!(cli(&[], &["GET", "cli"]), "NOAUTH Authentication required.");
}

/// `GET path` over HTTPS: status line and the server's leaf certificate.
fn https_get(addr: SocketAddr, ca: &Path, path: &str) -> std::io::Result<(String, Vec<u8>)> {
    let mut tls = tls_connect(addr, ca, None, &[b"http/1.1"])?;
    let leaf = tls.conn.peer_certificates().unwrap()[0].to_vec();
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    Ok((text.lines().next().unwrap_or_default().to_owned(), leaf))
}

#[test]
fn http_tls_with_the_node_certificate_or_its_own() {
    let ca = Ca::new("ca-http");
    let node = start(&ca, &["--http-tls"]);
    let (status, leaf) = https_get(node.http, &ca.ca_pem(), "/health").unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        leaf,
        certs(&ca.dir.join("node.pem"))[0].to_vec(),
        "the node's"
    );
    // Plain HTTP is not served.
    let plain = node.http_get("/health");
    assert!(plain.is_err(), "plain HTTP was served: {plain:?}");
    // A P-256 certificate for browsers.
    let (cert, key) = ca.issue(
        "browser",
        &["localhost"],
        None,
        &rcgen::PKCS_ECDSA_P256_SHA256,
    );
    let own = start(
        &ca,
        &[
            "--http-tls",
            "--http-tls-cert",
            cert.to_str().unwrap(),
            "--http-tls-key",
            key.to_str().unwrap(),
        ],
    );
    let (status, leaf) = https_get(own.http, &ca.ca_pem(), "/live").unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(leaf, certs(&cert)[0].to_vec(), "its own");
}

/// Clients that open connections to the HTTPS admin and never finish a
/// handshake (more of them than it runs at once) do not lock out a health
/// check: a new connection ends the oldest unfinished handshake.
#[test]
fn idle_handshakes_do_not_lock_out_the_https_admin() {
    let ca = Ca::new("ca-idle");
    let node = start(&ca, &["--http-tls"]);
    let idle: Vec<std::net::TcpStream> = (0..2 * gridkv_server::tls::MAX_HANDSHAKES)
        .map(|_| std::net::TcpStream::connect(node.http).expect("connects"))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let (status, _) = https_get(node.http, &ca.ca_pem(), "/health").expect("a health check");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        started.elapsed() < gridkv_server::tls::HANDSHAKE_TIMEOUT / 2,
        "waited {:?} for idle handshakes to time out",
        started.elapsed()
    );
    drop(idle);
}

/// `gridkv remove --cacert` speaks HTTPS to an admin started with
/// `--http-tls` (it reads the cluster view, and names what it did not find).
#[test]
fn gridkv_remove_speaks_https_with_cacert() {
    let ca = Ca::new("ca-remove");
    let node = start(&ca, &["--http-tls"]);
    let (cert, key) = ca.issue(
        "ops",
        &[],
        Some("gridkv:operator:ops"),
        &rcgen::PKCS_ED25519,
    );
    let remove = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gridkv"))
            .args([
                "remove",
                "n9",
                "--http",
                &format!("localhost:{}", node.http.port()),
            ])
            .args(["--operator-cert", cert.to_str().unwrap()])
            .args(["--operator-key", key.to_str().unwrap()])
            .args(extra)
            .output()
            .expect("runs");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = remove(&["--cacert", ca.ca_pem().to_str().unwrap()]);
    assert!(err.contains("lists no member n9"), "{err}");
    // Without it, plain HTTP gets no answer from a TLS-only admin.
    let err = remove(&[]);
    assert!(!err.contains("lists no member"), "{err}");
}

/// `gridkv bench --cacert --password` loads a node that serves RESP over
/// TLS only and asks for a password; a wrong password stops it before the
/// test starts, naming the refusal.
#[test]
fn gridkv_bench_speaks_tls_and_auth() {
    let ca = Ca::new("ca-bench");
    let node = start(&ca, &["--resp-tls", "--requirepass", "pw"]);
    let server = format!("localhost:{}", node.resp.port());
    let bench = |password: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gridkv"))
            .args([
                "bench",
                "--servers",
                &server,
                "-c",
                "2",
                "-n",
                "200",
                "-t",
                "set,get",
            ])
            .args([
                "--cacert",
                ca.ca_pem().to_str().unwrap(),
                "--password",
                password,
            ])
            .args(["--quiet", "--json"])
            .output()
            .expect("runs")
    };
    let ok = bench("pw");
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for line in out.lines() {
        let summary: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(summary["errors"], 0, "{line}");
        assert!(summary["requests"].as_u64() >= Some(200), "{line}");
    }
    let wrong = bench("nope");
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(err.contains("refused AUTH"), "{err}");
}
