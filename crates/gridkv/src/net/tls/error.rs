//! Why TLS material was not loaded or not trusted: [`TlsError`].

use std::path::PathBuf;


/// Why TLS material (a trust bundle, a certificate chain, a key) could not
/// be loaded, or was refused.
///
/// A reload that fails with any of these keeps the material loaded before.
///
/// # Examples
///
/// ```
/// use gridkv::net::tls::{TlsError, TlsStore};
///
/// let err = TlsStore::from_pem(b"", b"", b"").unwrap_err();
/// assert_eq!(err, TlsError::Empty { what: "trust bundle", expected: "CERTIFICATE" });
/// assert_eq!(err.to_string(), "trust bundle: no CERTIFICATE found");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The PEM holds none of what was expected.
    #[error("{what}: no {expected} found")]
    Empty {
        /// Which input: `trust bundle`, `certificate chain`, `private key`.
        what: &'static str,
        /// The PEM section looked for.
        expected: &'static str,
    },
    /// The PEM could not be parsed.
    #[error("{what}: invalid PEM: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// What the parser found wrong.
        reason: String,
    },
    /// A certificate could not be parsed, or cannot serve as what it was
    /// given for (a CA certificate that is not a valid trust anchor).
    #[error("{what}: invalid certificate: {reason}")]
    Certificate {
        /// Which input.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The node certificate's public key is not Ed25519. Cluster
    /// certificates must be: membership signs its claims with that key.
    #[error("the node certificate's key is {found}; cluster certificates must be Ed25519")]
    NotEd25519 {
        /// The key's algorithm, as named in the certificate.
        found: String,
    },
    /// The private key could not be used (not PKCS#8, not Ed25519).
    #[error("the private key is not a PKCS#8 Ed25519 key: {reason}")]
    Key {
        /// What was wrong with it.
        reason: String,
    },
    /// The private key is not the one of the certificate.
    #[error("the private key does not match the node certificate's public key")]
    KeyMismatch,
    /// The certificate names no node: no URI SAN `gridkv:node:ID`.
    #[error("the certificate names no node id (expected a URI SAN gridkv:node:ID)")]
    NoNodeId,
    /// The certificate names several identities (URI SANs `gridkv:...`).
    #[error("the certificate names {count} gridkv identities; exactly one is allowed")]
    AmbiguousIdentity {
        /// How many `gridkv:` URIs it carries.
        count: usize,
    },
    /// The id in the certificate's URI SAN is not a valid node id.
    #[error("the certificate's identity {uri:?} is not valid: {reason}")]
    InvalidIdentity {
        /// The URI as found.
        uri: String,
        /// Why it is not valid.
        reason: String,
    },
    /// An operator's certificate (`gridkv:operator:NAME`) was given as a
    /// node's: operators sign removals, they are not members.
    #[error("the certificate is operator {name}'s, not a node's: it cannot be a node identity")]
    OperatorCertificate {
        /// The operator's name.
        name: String,
    },
    /// An operator's key was asked for and the certificate is not an
    /// operator's (`gridkv:operator:NAME`).
    #[error("the certificate is {found}'s, not an operator's (expected a URI SAN gridkv:operator:NAME)")]
    NotOperator {
        /// Whose it is.
        found: String,
    },
    /// The node certificate does not chain to the trust bundle, or is not
    /// valid now.
    #[error("the node certificate is not trusted by the bundle: {reason}")]
    Untrusted {
        /// Why (unknown issuer, expired, not yet valid, ...).
        reason: String,
    },
    /// A reload would change the node's id; an id is for the node's life.
    #[error("the new certificate names node {new}, this node is {old}; a reload cannot change the id")]
    IdChanged {
        /// The id loaded so far.
        old: String,
        /// The id the new certificate names.
        new: String,
    },
    /// The store was made from PEM bytes: there are no files to re-read.
    #[error("no files to reload from: this TLS store was made from PEM bytes")]
    NoFiles,
    /// This store's node certificate was replaced more often than it keeps
    /// certificates for membership; restart the node to rotate again.
    #[error("the node certificate was rotated {max} times since start; restart to rotate again")]
    RotationLimit {
        /// The bound.
        max: usize,
    },
    /// The node runs without TLS: there is nothing to reload.
    #[error("TLS is not enabled on this node")]
    NotEnabled,
    /// rustls refused to build a configuration from the material.
    #[error("rustls refused the configuration: {reason}")]
    Config {
        /// rustls's reason.
        reason: String,
    },
}

impl TlsError {
    pub(crate) fn config(error: rustls::Error) -> Self {
        TlsError::Config {
            reason: error.to_string(),
        }
    }
}
