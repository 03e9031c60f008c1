//! Mutual TLS on the cluster transport, on real loopback sockets with
//! certificates made here (rcgen): nodes with different identities in one
//! process form a cluster over TLS; every kind of peer that must not get in
//! (plaintext, another CA, expired, another node's id, no node id, an
//! operator's certificate, a P-256 key) is refused at the handshake with
//! nothing delivered and the counters moved; a CA rotation reloads without
//! a restart and a broken reload keeps the old material.

#[path = "common/certs.rs"]
mod certs;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use certs::{Ca, Leaf, Spec, TempDir};
use gridkv::net::envelope::Envelope;
use gridkv::net::frame::{FrameDecoder, PRE_HANDSHAKE_MAX_FRAME, encode_frame};
use gridkv::net::handshake::{HandshakeError, Hello, HelloReply, IdMismatch, RefusalReason};
use gridkv::net::tls::{TlsError, TlsFiles, TlsStore};
use gridkv::net::{Incoming, Lane, Transport, TransportConfig, TransportError, TransportStats};
use gridkv::{Generation, GridKv, NodeId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep, timeout};

fn store(ca: &Ca, leaf: &Leaf) -> TlsStore {
    TlsStore::from_pem(ca.pem.as_bytes(), leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap()
}

fn tls_config(name: &str, tls: TlsStore) -> TransportConfig {
    let mut config = TransportConfig::new("prod", NodeId::new(name).unwrap(), Generation::new(1));
    config.tls = Some(tls);
    config
}

/// Counts what reaches the application, answering requests with their
/// body.
fn counting_echo(incoming: Incoming) -> Arc<AtomicUsize> {
    let delivered = Arc::new(AtomicUsize::new(0));
    let Incoming { control, data } = incoming;
    for mut rx in [control, data] {
        let delivered = Arc::clone(&delivered);
        tokio::spawn(async move {
            while let Some(inbound) = rx.recv().await {
                delivered.fetch_add(1, Ordering::SeqCst);
                if let Some(reply) = inbound.reply {
                    let _ = reply.respond(inbound.body);
                }
            }
        });
    }
    delivered
}

/// Waits (bounded) until `check` holds on the transport's counters.
async fn until_stats(node: &Transport, what: &str, check: impl Fn(&TransportStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check(&node.stats()) {
        assert!(Instant::now() < deadline, "{what}: {:?}", node.stats());
        sleep(Duration::from_millis(10)).await;
    }
}

/// A raw peer's server verifier: accepts any certificate (the raw peer is
/// the one under test's adversary, it trusts whatever it meets).
#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn chain_and_key(leaf: &Leaf) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (
        chain,
        PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
    )
}

/// A raw TLS client presenting `leaf`, trusting anything.
fn raw_client(leaf: &Leaf) -> Arc<ClientConfig> {
    let (chain, key) = chain_and_key(leaf);
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_client_auth_cert(chain, key)
            .unwrap();
    Arc::new(config)
}

fn frame(payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    encode_frame(payload, PRE_HANDSHAKE_MAX_FRAME, &mut out).unwrap();
    out
}

fn hello(id: &str) -> BytesMut {
    frame(
        &Hello::new("prod", NodeId::new(id).unwrap(), Generation::new(9))
            .encode()
            .unwrap(),
    )
}

/// A data-lane request frame, as a peer past the handshake would send.
fn data_request() -> BytesMut {
    let mut payload = BytesMut::new();
    Envelope::Request {
        lane: Lane::Data,
        id: 1,
        body: Bytes::from_static(b"write k=v"),
    }
    .encode(&mut payload);
    frame(&payload)
}

/// Sends a hello claiming `id` and a data request, then reads what comes
/// back until the peer closes: the reply to the hello, if any.
async fn raw_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    id: &str,
) -> Result<Option<HelloReply>, std::io::Error> {
    stream.write_all(&hello(id)).await?;
    stream.write_all(&data_request()).await?;
    stream.flush().await?;
    let mut buf = BytesMut::new();
    let decoder = FrameDecoder::new(PRE_HANDSHAKE_MAX_FRAME);
    let mut reply = None;
    loop {
        if reply.is_none() {
            if let Ok(Some(frame)) = decoder.decode(&mut buf) {
                reply = HelloReply::decode(&frame).ok();
            }
        }
        match timeout(Duration::from_secs(5), stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return Ok(reply),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return reply.map(Some).ok_or(error),
            Err(_) => panic!("the node kept a refused connection open"),
        }
    }
}

/// A TLS node "a" of `ca`, counting what reaches its application.
async fn node_a(ca: &Ca) -> (Transport, Arc<AtomicUsize>) {
    let (a, incoming) = Transport::bind(tls_config("a", store(ca, &ca.node("a"))))
        .await
        .unwrap();
    (a, counting_echo(incoming))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tls_nodes_form_a_cluster_and_replicate() {
    let ca = Ca::new("cluster CA");
    let a = GridKv::start(
        GridKv::builder("a")
            .tls(store(&ca, &ca.node("a")))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let b = GridKv::start(
        GridKv::builder("b")
            .tls(store(&ca, &ca.node("b")))
            .seeds([a.local_addr().to_string()])
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    timeout(Duration::from_secs(20), b.ready())
        .await
        .unwrap()
        .unwrap();
    timeout(Duration::from_secs(20), a.ready())
        .await
        .unwrap()
        .unwrap();
    a.set("user:1", "alice").await.unwrap();
    assert_eq!(
        b.get("user:1").await.unwrap().as_deref(),
        Some(&b"alice"[..])
    );
    for node in [&a, &b] {
        assert!(node.tls_enabled() && !node.is_insecure());
        let stats = node.transport_stats();
        assert_eq!(
            (stats.tls_failures, stats.identity_mismatches),
            (0, 0),
            "{stats:?}"
        );
        assert!(stats.connections_accepted > 0 && stats.connections_dialled > 0);
        assert_eq!(node.tls_status().unwrap().certificates.len(), 2);
    }
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_plaintext_peer_is_refused_at_the_tls_handshake() {
    let ca = Ca::new("ca");
    let (a, delivered) = node_a(&ca).await;
    let mut raw = TcpStream::connect(a.local_addr()).await.unwrap();
    // A plaintext hello and a data request: nothing is served, no hello
    // reply comes back (the bytes are not TLS).
    assert!(!matches!(raw_exchange(&mut raw, "b").await, Ok(Some(_))));
    until_stats(&a, "tls failure counted", |s| s.tls_failures == 1).await;
    let stats = a.stats();
    assert_eq!(
        (stats.connections_accepted, stats.handshake_failures),
        (0, 1)
    );
    assert_eq!(delivered.load(Ordering::SeqCst), 0);

    // A plaintext transport dialling the TLS node fails too.
    let (plain, _incoming) = Transport::bind(TransportConfig::new(
        "prod",
        NodeId::new("b").unwrap(),
        Generation::new(1),
    ))
    .await
    .unwrap();
    let result = plain
        .request(
            &a.local_addr().to_string(),
            Lane::Data,
            Bytes::from_static(b"x"),
        )
        .await;
    assert!(
        matches!(result, Err(TransportError::Handshake { .. })),
        "{result:?}"
    );
    until_stats(&a, "second tls failure", |s| s.tls_failures == 2).await;
    assert_eq!(delivered.load(Ordering::SeqCst), 0);
    plain.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_tls_node_refuses_to_dial_a_plaintext_peer() {
    let ca = Ca::new("ca");
    let (a, _delivered) = node_a(&ca).await;
    let (plain, incoming) = Transport::bind(TransportConfig::new(
        "prod",
        NodeId::new("b").unwrap(),
        Generation::new(1),
    ))
    .await
    .unwrap();
    let delivered = counting_echo(incoming);
    let result = a
        .request(
            &plain.local_addr().to_string(),
            Lane::Data,
            Bytes::from_static(b"x"),
        )
        .await;
    assert!(
        matches!(result, Err(TransportError::Handshake { .. })),
        "{result:?}"
    );
    assert_eq!(delivered.load(Ordering::SeqCst), 0);
    assert_eq!(plain.stats().connections_accepted, 0);
    plain.shutdown().await;
    a.shutdown().await;
}

/// Connects to `a` with a raw TLS client presenting `leaf`, claims `id`,
/// and checks the connection was refused with nothing delivered and the
/// TLS failure counted.
async fn refused_at_tls(leaf: &Leaf, id: &str) {
    let ca = Ca::new("ca");
    let (a, delivered) = node_a(&ca).await;
    let tcp = TcpStream::connect(a.local_addr()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(raw_client(leaf));
    // TLS 1.3: the client finishes before the server checked its
    // certificate; the refusal arrives as an alert on the first read.
    if let Ok(mut tls) = connector
        .connect(ServerName::try_from("x").unwrap(), tcp)
        .await
    {
        let result = raw_exchange(&mut tls, id).await;
        assert!(!matches!(result, Ok(Some(_))), "{result:?}");
    }
    until_stats(&a, "tls failure counted", |s| s.tls_failures == 1).await;
    assert_eq!(a.stats().connections_accepted, 0);
    assert_eq!(delivered.load(Ordering::SeqCst), 0);
    a.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let other = Ca::new("another CA");
    refused_at_tls(&other.node("b"), "b").await;
}

/// As `refused_at_tls`, with a leaf from the node's own CA.
async fn refused_from_trusted_ca(spec: impl FnOnce(&Ca) -> Leaf) {
    let ca = Ca::new("ca");
    let (a, delivered) = node_a(&ca).await;
    let leaf = spec(&ca);
    let tcp = TcpStream::connect(a.local_addr()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(raw_client(&leaf));
    if let Ok(mut tls) = connector
        .connect(ServerName::try_from("x").unwrap(), tcp)
        .await
    {
        let result = raw_exchange(&mut tls, "b").await;
        assert!(!matches!(result, Ok(Some(_))), "{result:?}");
    }
    until_stats(&a, "tls failure counted", |s| s.tls_failures == 1).await;
    assert_eq!(a.stats().connections_accepted, 0);
    assert_eq!(delivered.load(Ordering::SeqCst), 0);
    a.shutdown().await;
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    // Signed by the CA the node trusts: only the dates are wrong.
    refused_from_trusted_ca(|ca| {
        ca.leaf(Spec {
            validity: Some(((2020, 1, 1), (2021, 1, 1))),
            ..Spec::node("b")
        })
    })
    .await;
}

#[tokio::test]
async fn a_certificate_without_a_node_uri_is_refused() {
    refused_from_trusted_ca(|ca| {
        ca.leaf(Spec {
            uris: Vec::new(),
            ..Spec::node("b")
        })
    })
    .await;
}

#[tokio::test]
async fn an_operator_certificate_is_refused_as_a_node() {
    refused_from_trusted_ca(|ca| {
        ca.leaf(Spec {
            uris: vec!["gridkv:operator:alice".to_owned()],
            ..Spec::node("b")
        })
    })
    .await;
}

#[tokio::test]
async fn a_p256_node_certificate_is_refused() {
    refused_from_trusted_ca(|ca| {
        ca.leaf(Spec {
            algorithm: &rcgen::PKCS_ECDSA_P256_SHA256,
            ..Spec::node("b")
        })
    })
    .await;
}

#[tokio::test]
async fn a_hello_claiming_another_id_than_the_certificate_is_refused() {
    let ca = Ca::new("ca");
    let (a, delivered) = node_a(&ca).await;
    // A valid certificate for "y"; the hello claims "x".
    let tcp = TcpStream::connect(a.local_addr()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(raw_client(&ca.node("y")));
    let mut tls = connector
        .connect(ServerName::try_from("x").unwrap(), tcp)
        .await
        .unwrap();
    let reply = raw_exchange(&mut tls, "x").await.unwrap();
    assert_eq!(
        reply,
        Some(HelloReply::Refused {
            reason: RefusalReason::IdentityMismatch(IdMismatch::boxed(
                NodeId::new("y").unwrap(),
                NodeId::new("x").unwrap(),
            ))
        })
    );
    until_stats(&a, "mismatch counted", |s| s.identity_mismatches == 1).await;
    let stats = a.stats();
    assert_eq!((stats.connections_accepted, stats.tls_failures), (0, 0));
    assert_eq!(delivered.load(Ordering::SeqCst), 0);
    a.shutdown().await;
}

/// A raw TLS server presenting `leaf` that accepts any client and answers
/// the hello as `reply_id`; returns its address.
async fn raw_server(leaf: &Leaf, reply_id: &'static str) -> std::net::SocketAddr {
    let (chain, key) = chain_and_key(leaf);
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = BytesMut::new();
                let decoder = FrameDecoder::new(PRE_HANDSHAKE_MAX_FRAME);
                loop {
                    if let Ok(Some(_hello)) = decoder.decode(&mut buf) {
                        break;
                    }
                    if !matches!(tls.read_buf(&mut buf).await, Ok(n) if n > 0) {
                        return;
                    }
                }
                let reply = HelloReply::Accepted {
                    node_id: NodeId::new(reply_id).unwrap(),
                    generation: Generation::new(3),
                    auth: Vec::new(),
                };
                let _ = tls.write_all(&frame(&reply.encode().unwrap())).await;
                let _ = tls.flush().await;
                let mut sink = Vec::new();
                let _ = tls.read_to_end(&mut sink).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_dialler_refuses_a_server_from_another_ca() {
    let ca = Ca::new("ca");
    let (a, _delivered) = node_a(&ca).await;
    let addr = raw_server(&Ca::new("another CA").node("b"), "b").await;
    let result = a
        .request(&addr.to_string(), Lane::Data, Bytes::from_static(b"x"))
        .await;
    assert!(
        matches!(
            &result,
            Err(TransportError::Handshake {
                error: HandshakeError::Tls { .. },
                ..
            })
        ),
        "{result:?}"
    );
    let stats = a.stats();
    assert_eq!((stats.tls_failures, stats.connections_dialled), (1, 0));
    a.shutdown().await;
}

#[tokio::test]
async fn the_dialler_refuses_a_reply_claiming_another_id_than_the_certificate() {
    let ca = Ca::new("ca");
    let (a, _delivered) = node_a(&ca).await;
    let addr = raw_server(&ca.node("y"), "x").await;
    let result = a
        .request(&addr.to_string(), Lane::Data, Bytes::from_static(b"x"))
        .await;
    match result {
        Err(TransportError::Handshake {
            error: HandshakeError::IdentityMismatch(ids),
            ..
        }) => assert_eq!((ids.certified.as_str(), ids.claimed.as_str()), ("y", "x")),
        other => panic!("expected an identity mismatch, got {other:?}"),
    }
    let stats = a.stats();
    assert_eq!(
        (stats.identity_mismatches, stats.connections_dialled),
        (1, 0)
    );
    a.shutdown().await;
}

#[test]
fn loading_refuses_what_cannot_be_a_node_identity() {
    let ca = Ca::new("ca");
    let load = |leaf: &Leaf| {
        TlsStore::from_pem(ca.pem.as_bytes(), leaf.cert.as_bytes(), leaf.key.as_bytes())
    };
    assert_eq!(load(&ca.node("n1")).unwrap().node_id().as_str(), "n1");
    let operator = ca.leaf(Spec {
        uris: vec!["gridkv:operator:alice".to_owned()],
        ..Spec::node("alice")
    });
    assert_eq!(
        load(&operator).unwrap_err(),
        TlsError::OperatorCertificate {
            name: "alice".to_owned()
        }
    );
    let anonymous = ca.leaf(Spec {
        uris: Vec::new(),
        ..Spec::node("n1")
    });
    assert_eq!(load(&anonymous).unwrap_err(), TlsError::NoNodeId);
    let two = ca.leaf(Spec {
        uris: vec!["gridkv:node:a".to_owned(), "gridkv:node:b".to_owned()],
        ..Spec::node("n1")
    });
    assert_eq!(
        load(&two).unwrap_err(),
        TlsError::AmbiguousIdentity { count: 2 }
    );
    let p256 = ca.leaf(Spec {
        algorithm: &rcgen::PKCS_ECDSA_P256_SHA256,
        ..Spec::node("n1")
    });
    let err = load(&p256).unwrap_err();
    assert_eq!(
        err,
        TlsError::NotEd25519 {
            found: "ECDSA".to_owned()
        }
    );
    assert!(err.to_string().contains("must be Ed25519"));
    let mixed = Leaf {
        cert: ca.node("n1").cert,
        key: ca.node("n1").key,
    };
    assert_eq!(load(&mixed).unwrap_err(), TlsError::KeyMismatch);
    let expired = ca.leaf(Spec {
        validity: Some(((2020, 1, 1), (2021, 1, 1))),
        ..Spec::node("n1")
    });
    assert!(matches!(load(&expired), Err(TlsError::Untrusted { .. })));
    let stranger = Ca::new("other").node("n1");
    assert!(matches!(load(&stranger), Err(TlsError::Untrusted { .. })));
    let node = ca.node("n1");
    assert!(matches!(
        TlsStore::from_pem(b"", node.cert.as_bytes(), node.key.as_bytes()),
        Err(TlsError::Empty {
            what: "trust bundle",
            ..
        })
    ));
}

#[test]
fn the_builder_refuses_a_certificate_naming_another_node() {
    let ca = Ca::new("ca");
    let err = GridKv::builder("a")
        .tls(store(&ca, &ca.node("b")))
        .build()
        .unwrap_err();
    assert_eq!((err.section, err.field), ("node", "tls"));
    assert!(
        err.reason.contains("names node b") && err.reason.contains("this node is a"),
        "{}",
        err.reason
    );

    let dir = TempDir::new("builder");
    let files = TlsFiles::new(
        dir.0.join("none.pem"),
        dir.0.join("none.pem"),
        dir.0.join("none.key"),
    );
    let err = GridKv::builder("a").tls_files(files).build().unwrap_err();
    assert_eq!((err.section, err.field), ("node", "tls"));
    assert!(err.reason.contains("none.pem"), "{}", err.reason);
}

/// Writes a node's files: the bundle (the given CAs), its chain and key.
fn write_files(dir: &TempDir, name: &str, cas: &[&Ca], leaf: &Leaf) -> TlsFiles {
    let bundle: String = cas.iter().map(|ca| ca.pem.as_str()).collect();
    TlsFiles::new(
        dir.write(&format!("{name}-ca.pem"), &bundle),
        dir.write(&format!("{name}.pem"), &leaf.cert),
        dir.write(&format!("{name}.key"), &leaf.key),
    )
}

async fn start_node(name: &str, files: TlsFiles, seeds: &[&GridKv]) -> GridKv {
    let config = GridKv::builder(name)
        .tls_files(files)
        .seeds(seeds.iter().map(|n| n.local_addr().to_string()))
        .build()
        .unwrap();
    GridKv::start(config).await.unwrap()
}

async fn sees_all(nodes: &[&GridKv], count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes.iter().all(|n| {
        n.members()
            .iter()
            .filter(|m| m.liveness == gridkv::Liveness::Alive)
            .count()
            == count
    }) {
        assert!(Instant::now() < deadline, "members never converged");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotation_reloads_without_a_restart() {
    let dir = TempDir::new("rotation");
    let (old, new) = (Ca::new("old CA"), Ca::new("new CA"));
    let a_files = write_files(&dir, "a", &[&old], &old.node("a"));
    let b_files = write_files(&dir, "b", &[&old], &old.node("b"));
    let a = start_node("a", a_files.clone(), &[]).await;
    let b = start_node("b", b_files, &[&a]).await;
    timeout(Duration::from_secs(20), b.ready())
        .await
        .unwrap()
        .unwrap();
    a.set("k", "before").await.unwrap();

    // c holds a certificate of the new CA: a, trusting only the old one,
    // refuses it.
    let c_files = write_files(&dir, "c", &[&old, &new], &new.node("c"));
    let c = start_node("c", c_files, &[&a]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.transport_stats().tls_failures == 0 {
        assert!(Instant::now() < deadline, "a never refused c");
        sleep(Duration::from_millis(20)).await;
    }
    assert!(a.member(&NodeId::new("c").unwrap()).is_none());

    // The overlap: both CAs in a's and b's bundles, reloaded in place.
    for (node, name) in [(&a, "a"), (&b, "b")] {
        let bundle = format!("{}{}", old.pem, new.pem);
        dir.write(&format!("{name}-ca.pem"), &bundle);
        node.reload_tls().unwrap();
        let status = node.tls_status().unwrap();
        assert_eq!((status.reloads_ok, status.reloads_failed), (1, 0));
        assert_eq!(status.certificates.len(), 3, "the node's and two CAs");
    }
    // c's join retries now get through; the old certificates still talk.
    timeout(Duration::from_secs(20), c.ready())
        .await
        .unwrap()
        .unwrap();
    sees_all(&[&a, &b, &c], 3).await;
    c.set("k", "after").await.unwrap();
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"after"[..]));

    // A broken bundle: the reload fails, the material before it stays.
    dir.write(
        "a-ca.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    let err = a.reload_tls().unwrap_err();
    assert!(
        matches!(err, TlsError::Pem { .. } | TlsError::Certificate { .. }),
        "{err:?}"
    );
    let status = a.tls_status().unwrap();
    assert_eq!((status.reloads_ok, status.reloads_failed), (1, 1));
    assert!(status.last_error.is_some());
    assert_eq!(status.certificates.len(), 3);
    // New connections still use the kept material: d, of the new CA, joins.
    let d_files = write_files(&dir, "d", &[&old, &new], &new.node("d"));
    let d = start_node("d", d_files, &[&a]).await;
    timeout(Duration::from_secs(20), d.ready())
        .await
        .unwrap()
        .unwrap();
    sees_all(&[&a, &b, &c, &d], 4).await;

    for node in [&d, &c, &b, &a] {
        node.shutdown().await;
    }
}

/// An operator removes a live member: it drops its data and comes back as
/// its next run (generation + 1), refills, and serves again; replaying the
/// removal then changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_removal_of_a_live_node_brings_it_back_as_its_next_run() {
    let ca = Ca::new("cluster CA");
    let start = |name: &'static str, seeds: Vec<String>| {
        GridKv::start(
            GridKv::builder(name)
                .tls(store(&ca, &ca.node(name)))
                .seeds(seeds)
                .build()
                .unwrap(),
        )
    };
    let a = start("a", vec![]).await.unwrap();
    let b = start("b", vec![a.local_addr().to_string()]).await.unwrap();
    let c = start("c", vec![a.local_addr().to_string()]).await.unwrap();
    for n in [&a, &b, &c] {
        timeout(Duration::from_secs(20), n.ready())
            .await
            .unwrap()
            .unwrap();
    }
    sees_all(&[&a, &b, &c], 3).await;
    a.set("k", "v").await.unwrap();
    let id = NodeId::new("c").unwrap();
    let before = c.member(&id).unwrap().identity.generation;
    let ops = ca.leaf(Spec {
        uris: vec!["gridkv:operator:ops".to_owned()],
        ..Spec::node("ops")
    });
    let operator = gridkv::OperatorKey::from_pem(ops.cert.as_bytes(), ops.key.as_bytes()).unwrap();
    let removal = gridkv::Removal::sign("gridkv", id, before, &operator);
    a.remove_member(removal.clone()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = c.member(&id).unwrap();
        let everywhere = [&a, &b].iter().all(|n| {
            n.member(&id).is_some_and(|m| {
                m.identity.generation == now.identity.generation
                    && m.ring == gridkv::RingState::Normal
            })
        });
        if now.identity.generation > before && now.ring == gridkv::RingState::Normal && everywhere {
            break;
        }
        assert!(Instant::now() < deadline, "c never came back: {now:?}");
        sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    let err = b.remove_member(removal).await.unwrap_err();
    assert!(matches!(err, gridkv::RemovalError::Unknown { .. }), "{err}");
    for n in [c, b, a] {
        n.shutdown().await;
    }
}
