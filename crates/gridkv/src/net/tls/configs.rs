//! The rustls configurations made from the material: TLS 1.3 only, the
//! `ring` provider, no session resumption (every connection is verified
//! against the bundle loaded when it opens), and one small constructor for
//! listeners that serve browsers or Redis clients with a P-256 certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

use super::error::TlsError;
use super::material::{certificates, read_pem_file, Material};
use super::verify::{NodeVerifier, OptionalClientVerifier};

/// The configurations one load of the material yields.
pub(crate) struct Configs {
    /// Dialling a cluster peer.
    pub(crate) client: Arc<ClientConfig>,
    /// Accepting a cluster peer: client certificate required.
    pub(crate) cluster_server: Arc<ServerConfig>,
    /// Other listeners: client certificate optional.
    pub(crate) server: Arc<ServerConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_builder() -> Result<rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier>, TlsError> {
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::config)
}

/// No tickets, no cache: a resumed session would skip the chain check
/// against a bundle reloaded since.
fn without_resumption(mut config: ServerConfig) -> Arc<ServerConfig> {
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Arc::new(config)
}

impl Configs {
    pub(crate) fn new(material: &Material) -> Result<Configs, TlsError> {
        let key = || PrivateKeyDer::Pkcs8(material.key.clone_key());
        let verifier = Arc::new(NodeVerifier {
            bundle: Arc::clone(&material.bundle),
        });
        let mut client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::config)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_auth_cert(material.chain.clone(), key())
            .map_err(TlsError::config)?;
        client.resumption = Resumption::disabled();
        let cluster_server = server_builder()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(material.chain.clone(), key())
            .map_err(TlsError::config)?;
        let server = server_builder()?
            .with_client_cert_verifier(Arc::new(OptionalClientVerifier {
                bundle: Arc::clone(&material.bundle),
            }))
            .with_single_cert(material.chain.clone(), key())
            .map_err(TlsError::config)?;
        Ok(Configs {
            client: Arc::new(client),
            cluster_server: without_resumption(cluster_server),
            server: without_resumption(server),
        })
    }
}

/// A TLS 1.3 server configuration from a certificate chain (leaf first)
/// and its private key, in PEM, for listeners that serve clients other than
/// nodes: the key may be P-256 (browsers refuse Ed25519), RSA or Ed25519,
/// in PKCS#8, SEC1 or PKCS#1. No client certificates are asked for.
///
/// # Errors
///
/// [`TlsError`] for PEM that holds no certificate or key, or a key rustls
/// cannot use with the certificate.
///
/// # Examples
///
/// ```
/// let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
/// let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?.self_signed(&key)?;
/// let config = gridkv::net::tls::server_config_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())?;
/// assert!(config.alpn_protocols.is_empty());
///
/// let err = gridkv::net::tls::server_config_from_pem(cert.pem().as_bytes(), b"").unwrap_err();
/// assert_eq!(err.to_string(), "private key: no PRIVATE KEY found");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn server_config_from_pem(cert: &[u8], key: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert, "certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "private key",
            expected: "PRIVATE KEY",
        },
        other => TlsError::Pem {
            what: "private key",
            reason: other.to_string(),
        },
    })?;
    let config = server_builder()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::config)?;
    Ok(without_resumption(config))
}

/// As [`server_config_from_pem`], from files.
///
/// # Errors
///
/// As [`server_config_from_pem`], and [`TlsError::Read`] for a file that
/// cannot be read.
pub fn server_config_from_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_from_pem(&read_pem_file(cert)?, &read_pem_file(key)?)
}
