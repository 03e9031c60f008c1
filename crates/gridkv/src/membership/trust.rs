//! What signed membership needs from the node's credentials, and nothing
//! else: sign this node's claims, ship its certificate, and check another
//! node's certificate against the cluster's trust bundle.
//!
//! The membership state machine stays sans-IO and knows no X.509: the node
//! hands it an implementation backed by its TLS material (see
//! `crate::net::tls`), tests hand it a fake. A cluster running without TLS
//! (loopback or `insecure`) has no credentials: claims go unsigned and are
//! accepted unsigned, as before.

use std::fmt;

use crate::id::NodeId;

/// What a certificate's holder is: a node of the cluster (URI SAN
/// `gridkv:node:ID`) or an operator (`gridkv:operator:NAME`), whose signed
/// removals every node accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRole {
    /// A cluster node.
    Node,
    /// An operator (`gridkv remove`).
    Operator,
}

/// An Ed25519 public key that a trusted certificate binds to a node id (or
/// an operator's name).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CertifiedKey {
    /// The id (or operator name) the certificate names.
    pub node_id: NodeId,
    /// Whose certificate it is.
    pub role: CertRole,
    /// The certificate's Ed25519 public key.
    pub public_key: [u8; 32],
    /// When the certificate expires, in milliseconds since the Unix epoch.
    pub not_after_ms: u64,
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("node_id", &self.node_id)
            .field("role", &self.role)
            .field("not_after_ms", &self.not_after_ms)
            .finish_non_exhaustive()
    }
}

/// Why a certificate was not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("untrusted certificate: {0}")]
pub struct Untrusted(pub String);

/// A node's signing identity and the cluster's trust bundle, as membership
/// uses them.
///
/// Implementations must be cheap to call from the membership loop:
/// [`Credentials::verify_certificate`] may be called for every certificate
/// a packet carries, so callers cache by certificate bytes, but the check
/// itself should not block.
pub trait Credentials: Send + Sync + 'static {
    /// This node's id as its certificate names it.
    fn node_id(&self) -> NodeId;
    /// Signs `message` with this node's identity key (Ed25519).
    fn sign(&self, message: &[u8]) -> [u8; 64];
    /// This node's certificate (DER), carried in its own claims so that
    /// any receiver can learn its key.
    fn certificate(&self) -> &[u8];
    /// Checks a certificate (DER) against the trust bundle as it is now
    /// (several CAs during a rotation), at `now_ms` (Unix milliseconds),
    /// and returns the node id and key it certifies.
    ///
    /// # Errors
    ///
    /// [`Untrusted`] naming why: no chain to a trusted CA, expired, no node
    /// id, not an Ed25519 key.
    fn verify_certificate(&self, der: &[u8], now_ms: u64) -> Result<CertifiedKey, Untrusted>;
}
