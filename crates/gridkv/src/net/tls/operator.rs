//! An operator's signing identity: the certificate (`gridkv:operator:NAME`,
//! Ed25519) and key that sign a removal (`gridkv remove`), which every node
//! verifies against its trust bundle.

use ed25519_dalek::{Signer, SigningKey};

use super::error::TlsError;
use super::identity::CertInfo;
use super::material::{certificates, ed25519_key};
use crate::membership::trust::{CertRole, CertifiedKey, Credentials, Untrusted};
use crate::NodeId;

/// An operator's certificate and key, for signing removals
/// ([`Removal::sign`](crate::membership::signed::Removal::sign)).
///
/// # Examples
///
/// ```
/// use gridkv::net::tls::{OperatorKey, TlsError};
///
/// // A node's files are refused: only operator certificates sign removals.
/// let err = OperatorKey::from_pem(b"", b"").unwrap_err();
/// assert!(matches!(err, TlsError::Empty { .. }));
/// ```
pub struct OperatorKey {
    name: NodeId,
    certificate: Vec<u8>,
    signing: SigningKey,
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl OperatorKey {
    /// Parses an operator certificate and its PKCS#8 Ed25519 key (PEM).
    /// Whether the certificate is trusted is each node's question.
    ///
    /// # Errors
    ///
    /// [`TlsError`]: unreadable PEM, a certificate that is not an
    /// operator's ([`TlsError::NotOperator`]) or not Ed25519, a key that is
    /// not the certificate's.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<OperatorKey, TlsError> {
        let chain = certificates(cert, "operator certificate")?;
        let info = CertInfo::parse(&chain[0], "operator certificate")?;
        let name = match &info.holder {
            Ok((CertRole::Operator, name)) => *name,
            Ok((CertRole::Node, id)) => {
                return Err(TlsError::NotOperator {
                    found: format!("node {id}"),
                });
            }
            Err(error) => return Err(error.clone()),
        };
        let public = info.ed25519.ok_or_else(|| TlsError::NotEd25519 {
            found: info.key_algorithm.clone(),
        })?;
        let (_, signing) = ed25519_key(key, "operator key", public)?;
        Ok(OperatorKey {
            name,
            certificate: chain[0].to_vec(),
            signing,
        })
    }

    /// The operator's name, as the certificate gives it.
    pub fn name(&self) -> NodeId {
        self.name
    }
}

/// Signs as the operator; it checks no certificate (nodes do that).
impl Credentials for OperatorKey {
    fn node_id(&self) -> NodeId {
        self.name
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    fn verify_certificate(&self, _der: &[u8], _now_ms: u64) -> Result<CertifiedKey, Untrusted> {
        Err(Untrusted(
            "an operator key signs removals; it verifies no certificate".to_owned(),
        ))
    }
}
