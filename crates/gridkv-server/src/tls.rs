//! TLS on the client-facing listeners (`--resp-tls`, `--http-tls`):
//! rustls with the `ring` provider, TLS 1.3 only (redis-cli 6+ built
//! with OpenSSL 1.1.1 or later speaks it, as does every browser), the
//! node's certificate (or `--http-tls-cert`), and client certificates
//! checked against `--tls-ca` when asked for.
//!
//! A [`ServerTls`] keeps the configuration in force and
//! [`reload`](ServerTls::reload)s it from its files: new connections get
//! the new certificate; a reload that fails keeps the old one.
//!
//! [`TlsListener`] is the HTTP side: it hands axum connections whose
//! handshake is done, running handshakes beside the accept loop (each
//! bounded in time, and in number), so one slow client cannot stall the
//! listener.
//!
//! # Examples
//!
//! ```no_run
//! use gridkv_server::config::{CertKey, ClientCerts};
//! use gridkv_server::tls::{ServerTls, TlsSource};
//!
//! let tls = ServerTls::load(TlsSource {
//!     cert: CertKey { cert: "node.pem".into(), key: "node.key".into() },
//!     ca: Some("ca.pem".into()),
//!     client_certs: ClientCerts::Optional,
//!     alpn: Vec::new(),
//! })
//! .unwrap();
//! let acceptor = tls.acceptor(); // a tokio_rustls::TlsAcceptor
//! # let _ = acceptor;
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::{CertKey, ClientCerts};

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS handshakes the HTTP listener runs at once; past it, a new
/// connection ends the oldest handshake still running from the client
/// address that has the most, so clients that open connections and never
/// finish a handshake cannot lock others out (a health check needs only
/// to finish its own in time).
pub const MAX_HANDSHAKES: usize = 64;

/// Where a listener's TLS configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSource {
    /// The certificate chain and key presented.
    pub cert: CertKey,
    /// The CAs client certificates must chain to (needed unless
    /// `client_certs` is `None`).
    pub ca: Option<PathBuf>,
    /// Whether clients are asked for a certificate.
    pub client_certs: ClientCerts,
    /// ALPN protocols offered (`http/1.1` for the admin; none for RESP).
    pub alpn: Vec<Vec<u8>>,
}

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the material (a key that does not match the
    /// certificate, an unsupported algorithm, ...).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificates: {0}")]
    Verifier(String),
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Every certificate in a PEM file.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// A client configuration that trusts the CAs in `ca` (a PEM bundle) and
/// checks the server's name, as `redis-cli --tls --cacert` does, offering
/// the `alpn` protocols (none: none).
///
/// # Errors
///
/// [`TlsError`] naming the file, if it holds no usable certificate.
pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(|e| file_error(ca, e))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| file_error(ca, e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A server configuration from `source`'s files.
///
/// # Errors
///
/// [`TlsError`] naming the file at fault.
pub fn server_config(source: &TlsSource) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&source.cert.cert)?;
    let key = PrivateKeyDer::from_pem_file(&source.cert.key)
        .map_err(|e| file_error(&source.cert.key, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match (source.client_certs, &source.ca) {
        (ClientCerts::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Verifier(
                "asking for client certificates needs a CA bundle (--tls-ca)".into(),
            ));
        }
        (asked, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| file_error(ca, e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if asked == ClientCerts::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| file_error(&source.cert.cert, format!("with its key: {e}")))?;
    config.alpn_protocols = source.alpn.clone();
    Ok(config)
}

/// A listener's TLS configuration in force, reloadable.
#[derive(Debug)]
pub struct ServerTls {
    source: TlsSource,
    config: RwLock<Arc<rustls::ServerConfig>>,
}

impl ServerTls {
    /// Loads the configuration from `source`'s files.
    ///
    /// # Errors
    ///
    /// [`TlsError`].
    pub fn load(source: TlsSource) -> Result<ServerTls, TlsError> {
        let config = server_config(&source)?;
        Ok(ServerTls {
            source,
            config: RwLock::new(Arc::new(config)),
        })
    }

    /// An acceptor with the configuration in force.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.read().expect("tls lock").clone())
    }

    /// Re-reads the files; on failure the configuration in force stays.
    ///
    /// # Errors
    ///
    /// [`TlsError`], as [`ServerTls::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.source)?;
        *self.config.write().expect("tls lock") = Arc::new(config);
        Ok(())
    }

    /// Runs the server side of the handshake on `stream`, within
    /// [`HANDSHAKE_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// The handshake failed (a plaintext client, a refused certificate) or
    /// timed out.
    pub async fn handshake(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor().accept(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }
}

/// A TLS listener for axum: accepts TCP connections and hands over those
/// whose handshake succeeded. Failed handshakes are counted in `failures`
/// and logged at debug level.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener`, with `tls`'s configuration in force
    /// at each connection, until the returned listener is dropped.
    ///
    /// # Errors
    ///
    /// The listener's address cannot be read.
    pub fn new(
        listener: TcpListener,
        tls: Arc<ServerTls>,
        failures: Arc<std::sync::atomic::AtomicU64>,
    ) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        tokio::spawn(async move {
            let mut running = Handshakes::default();
            loop {
                let accepted = tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("HTTP accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if running.make_room() {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let (tls, tx, failures) = (tls.clone(), tx.clone(), failures.clone());
                let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let finished = done.clone();
                let task = tokio::spawn(async move {
                    let handshake = tls.handshake(stream).await;
                    finished.store(true, std::sync::atomic::Ordering::Relaxed);
                    match handshake {
                        Ok(stream) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Err(e) => {
                            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::debug!("HTTP TLS handshake with {peer} failed: {e}");
                        }
                    }
                });
                running.push(peer.ip(), task.abort_handle(), done);
            }
        });
        Ok(TlsListener { ready, local })
    }
}

/// The handshakes running, oldest first, with the client address each
/// came from.
#[derive(Default)]
struct Handshakes {
    running: std::collections::VecDeque<Handshake>,
}

struct Handshake {
    ip: std::net::IpAddr,
    task: tokio::task::AbortHandle,
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl Handshakes {
    /// Forgets the finished ones and, at [`MAX_HANDSHAKES`], ends the
    /// oldest handshake of the client address holding the most: one
    /// client opening connections fast ends its own first, not everyone
    /// else's. Whether one was ended.
    fn make_room(&mut self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.running
            .retain(|h| !h.task.is_finished() && !h.done.load(Relaxed));
        if self.running.len() < MAX_HANDSHAKES {
            return false;
        }
        let mut counts: std::collections::HashMap<std::net::IpAddr, usize> =
            std::collections::HashMap::new();
        for h in &self.running {
            *counts.entry(h.ip).or_default() += 1;
        }
        let Some(busiest) = counts.into_iter().max_by_key(|(_, n)| *n).map(|(ip, _)| ip) else {
            return false;
        };
        let Some(at) = self.running.iter().position(|h| h.ip == busiest) else {
            return false;
        };
        if let Some(h) = self.running.remove(at) {
            h.task.abort();
        }
        true
    }

    fn push(
        &mut self,
        ip: std::net::IpAddr,
        task: tokio::task::AbortHandle,
        done: Arc<std::sync::atomic::AtomicBool>,
    ) {
        self.running.push_back(Handshake { ip, task, done });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task ended (its runtime is stopping): nothing
            // more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a leaf it signed, written under a fresh directory:
    /// `ca.pem`, `leaf.pem`, `leaf.key`.
    fn pki(name: &str) -> PathBuf {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("gridkv-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let issuer = CertifiedIssuer::self_signed(ca, ca_key).unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        std::fs::write(dir.join("leaf.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("leaf.key"), key.serialize_pem()).unwrap();
        dir
    }

    fn source(dir: &Path, client_certs: ClientCerts) -> TlsSource {
        TlsSource {
            cert: CertKey {
                cert: dir.join("leaf.pem"),
                key: dir.join("leaf.key"),
            },
            ca: Some(dir.join("ca.pem")),
            client_certs,
            alpn: Vec::new(),
        }
    }

    fn current(tls: &ServerTls) -> Arc<rustls::ServerConfig> {
        tls.config.read().unwrap().clone()
    }

    #[test]
    fn a_reload_swaps_the_config_or_keeps_it() {
        let dir = pki("reload");
        let tls = ServerTls::load(source(&dir, ClientCerts::Required)).unwrap();
        let before = current(&tls);
        // A broken certificate file: refused, naming it; the old config stays.
        let good = std::fs::read(dir.join("leaf.pem")).unwrap();
        std::fs::write(dir.join("leaf.pem"), "not a certificate").unwrap();
        let e = tls.reload().unwrap_err().to_string();
        assert!(
            e.contains("leaf.pem") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        assert!(Arc::ptr_eq(&before, &current(&tls)));
        // Fixed: the next connection gets a new config.
        std::fs::write(dir.join("leaf.pem"), good).unwrap();
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &current(&tls)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_material_is_refused_with_its_file() {
        let dir = pki("bad");
        let other = pki("bad-other");
        // A key that is not the certificate's.
        let mut s = source(&dir, ClientCerts::None);
        s.cert.key = other.join("leaf.key");
        let e = server_config(&s).unwrap_err().to_string();
        assert!(e.contains("leaf.pem: with its key"), "{e}");
        // A missing file.
        let mut s = source(&dir, ClientCerts::None);
        s.cert.cert = dir.join("missing.pem");
        assert!(
            server_config(&s)
                .unwrap_err()
                .to_string()
                .contains("missing.pem")
        );
        // Client certificates without a CA.
        let mut s = source(&dir, ClientCerts::Optional);
        s.ca = None;
        assert!(matches!(server_config(&s), Err(TlsError::Verifier(_))));
        // The ALPN asked for.
        let mut s = source(&dir, ClientCerts::None);
        s.alpn = vec![b"http/1.1".to_vec()];
        let config = server_config(&s).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(other).unwrap();
    }
}
