//! The node's TLS material, parsed and checked: the trust bundle, its own
//! chain and Ed25519 key, and the node id its certificate names.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, UnixTime};
use webpki::KeyUsage;

use super::error::TlsError;
use super::identity::CertInfo;
use super::status::{CertExpiry, CertKind};
use super::verify::Bundle;
use crate::NodeId;

/// The largest PEM file read: a bundle of a few hundred CAs fits; a file
/// past it is not TLS material.
pub const MAX_PEM_FILE: u64 = 1 << 20;

/// Where a node's TLS material lives; [`TlsStore::reload`](super::TlsStore::reload)
/// re-reads these files.
///
/// # Examples
///
/// ```
/// use gridkv::net::tls::TlsFiles;
///
/// let files = TlsFiles::new("/etc/gridkv/ca.pem", "/etc/gridkv/node.pem", "/etc/gridkv/node.key");
/// assert_eq!(files.key.to_str(), Some("/etc/gridkv/node.key"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The trust bundle: every CERTIFICATE in it is a trusted CA (several
    /// during a rotation).
    pub ca: PathBuf,
    /// The node's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The node's private key (PKCS#8, Ed25519).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The three paths.
    pub fn new(ca: impl Into<PathBuf>, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            ca: ca.into(),
            cert: cert.into(),
            key: key.into(),
        }
    }

    /// Reads the three files (each at most [`MAX_PEM_FILE`] bytes).
    pub(crate) fn read(&self) -> Result<[Vec<u8>; 3], TlsError> {
        Ok([read_pem_file(&self.ca)?, read_pem_file(&self.cert)?, read_pem_file(&self.key)?])
    }
}

/// Reads a PEM file of at most [`MAX_PEM_FILE`] bytes.
pub(crate) fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    let failed = |reason: String| TlsError::Read {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|error| failed(error.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| failed(error.to_string()))?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(failed(format!("larger than {MAX_PEM_FILE} bytes")));
    }
    Ok(bytes)
}

/// Every CERTIFICATE in `pem`; at least one.
pub(crate) fn certificates(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            what,
            reason: error.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            expected: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// Parses a PKCS#8 Ed25519 key (PEM) and checks it is the one of the
/// certificate whose public key is `public`.
pub(crate) fn ed25519_key(
    pem: &[u8],
    what: &'static str,
    public: [u8; 32],
) -> Result<(PrivatePkcs8KeyDer<'static>, SigningKey), TlsError> {
    let key = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what,
            expected: "PRIVATE KEY (PKCS#8)",
        },
        other => TlsError::Pem {
            what,
            reason: other.to_string(),
        },
    })?;
    let signing = SigningKey::from_pkcs8_der(key.secret_pkcs8_der()).map_err(|error| {
        TlsError::Key {
            reason: error.to_string(),
        }
    })?;
    if signing.verifying_key().to_bytes() != public {
        return Err(TlsError::KeyMismatch);
    }
    Ok((key, signing))
}

/// A node's TLS material, checked: its leaf names a node, holds an Ed25519
/// key matching the private key, and chains to the bundle now.
pub(crate) struct Material {
    pub(crate) node_id: NodeId,
    pub(crate) bundle: Arc<Bundle>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivatePkcs8KeyDer<'static>,
    pub(crate) signing: SigningKey,
    /// The leaf's expiry first, then each CA's.
    pub(crate) certificates: Vec<CertExpiry>,
}

impl Material {
    /// Parses and checks PEM bytes: the trust bundle, the node's chain
    /// (leaf first), its PKCS#8 key.
    pub(crate) fn parse(ca: &[u8], chain: &[u8], key: &[u8]) -> Result<Material, TlsError> {
        let cas = certificates(ca, "trust bundle")?;
        let chain = certificates(chain, "certificate chain")?;
        let leaf = CertInfo::parse(&chain[0], "node certificate")?;
        let (node_id, public) = leaf.node()?;
        let (key, signing) = ed25519_key(key, "private key", public)?;
        let bundle = Arc::new(Bundle::new(&cas)?);
        let now = UnixTime::now();
        for usage in [KeyUsage::server_auth(), KeyUsage::client_auth()] {
            bundle
                .verify_chain(&chain[0], &chain[1..], now, usage)
                .map_err(|error| TlsError::Untrusted {
                    reason: error.to_string(),
                })?;
        }
        let mut certificates = vec![CertExpiry {
            kind: CertKind::Node,
            subject: leaf.subject,
            not_after_secs: leaf.not_after_secs,
        }];
        for ca in &cas {
            let info = CertInfo::parse(ca, "trust bundle")?;
            certificates.push(CertExpiry {
                kind: CertKind::Ca,
                subject: info.subject,
                not_after_secs: info.not_after_secs,
            });
        }
        Ok(Material {
            node_id,
            bundle,
            chain,
            key,
            signing,
            certificates,
        })
    }
}
