//! What a certificate says about its holder: the identity in its URI SAN
//! (`gridkv:node:ID` or `gridkv:operator:NAME`), its public key, and when
//! it expires. Parsing only; whether to trust it is `verify`'s question.

use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::error::TlsError;
use crate::membership::trust::CertRole;
use crate::NodeId;

/// The URI SAN prefix naming a node: `gridkv:node:<ID>`.
pub const NODE_URI_PREFIX: &str = "gridkv:node:";
/// The URI SAN prefix naming an operator: `gridkv:operator:<NAME>`.
pub const OPERATOR_URI_PREFIX: &str = "gridkv:operator:";

/// What one certificate says, parsed.
#[derive(Debug, Clone)]
pub(crate) struct CertInfo {
    /// The subject, for status and logs.
    pub(crate) subject: String,
    /// Whose it is, or why that cannot be told.
    pub(crate) holder: Result<(CertRole, NodeId), TlsError>,
    /// The Ed25519 public key, when the key is one.
    pub(crate) ed25519: Option<[u8; 32]>,
    /// The key's algorithm, for errors.
    pub(crate) key_algorithm: String,
    /// When it expires, in seconds since the Unix epoch.
    pub(crate) not_after_secs: i64,
}

impl CertInfo {
    /// Parses a certificate (DER).
    pub(crate) fn parse(der: &[u8], what: &'static str) -> Result<CertInfo, TlsError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|error| TlsError::Certificate {
                what,
                reason: error.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(TlsError::Certificate {
                what,
                reason: format!("{} bytes after the certificate", rest.len()),
            });
        }
        let spki = cert.public_key();
        let algorithm = &spki.algorithm.algorithm;
        let ed25519 = (*algorithm == OID_SIG_ED25519)
            .then(|| <[u8; 32]>::try_from(&spki.subject_public_key.data[..]).ok())
            .flatten();
        let key_algorithm = if *algorithm == OID_SIG_ED25519 {
            "Ed25519".to_owned()
        } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            "ECDSA".to_owned()
        } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
            "RSA".to_owned()
        } else {
            format!("an unknown algorithm ({algorithm})")
        };
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            holder: holder(&cert),
            ed25519,
            key_algorithm,
            not_after_secs: cert.validity().not_after.timestamp(),
        })
    }

    /// The node this certificate names, if it may serve as a cluster
    /// node's: a node identity and an Ed25519 key.
    pub(crate) fn node(&self) -> Result<(NodeId, [u8; 32]), TlsError> {
        match &self.holder {
            Ok((CertRole::Node, id)) => match self.ed25519 {
                Some(key) => Ok((*id, key)),
                None => Err(TlsError::NotEd25519 {
                    found: self.key_algorithm.clone(),
                }),
            },
            Ok((CertRole::Operator, name)) => Err(TlsError::OperatorCertificate {
                name: name.to_string(),
            }),
            Err(error) => Err(error.clone()),
        }
    }
}

/// The one `gridkv:` identity among the certificate's URI SANs.
fn holder(cert: &X509Certificate<'_>) -> Result<(CertRole, NodeId), TlsError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|error| TlsError::Certificate {
            what: "certificate",
            reason: format!("subject alternative names: {error}"),
        })?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with("gridkv:") => Some(*uri),
            _ => None,
        })
        .collect();
    let uri = match uris.as_slice() {
        [] => return Err(TlsError::NoNodeId),
        [uri] => *uri,
        more => return Err(TlsError::AmbiguousIdentity { count: more.len() }),
    };
    parse_identity(uri)
}

/// `gridkv:node:ID` or `gridkv:operator:NAME`.
fn parse_identity(uri: &str) -> Result<(CertRole, NodeId), TlsError> {
    let (role, name) = if let Some(id) = uri.strip_prefix(NODE_URI_PREFIX) {
        (CertRole::Node, id)
    } else if let Some(name) = uri.strip_prefix(OPERATOR_URI_PREFIX) {
        (CertRole::Operator, name)
    } else {
        return Err(TlsError::InvalidIdentity {
            uri: uri.to_owned(),
            reason: format!("expected {NODE_URI_PREFIX}ID or {OPERATOR_URI_PREFIX}NAME"),
        });
    };
    NodeId::new(name)
        .map(|id| (role, id))
        .map_err(|error| TlsError::InvalidIdentity {
            uri: uri.to_owned(),
            reason: error.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_parse_by_prefix() {
        assert_eq!(
            parse_identity("gridkv:node:n-1").unwrap(),
            (CertRole::Node, NodeId::new("n-1").unwrap())
        );
        assert_eq!(
            parse_identity("gridkv:operator:alice").unwrap(),
            (CertRole::Operator, NodeId::new("alice").unwrap())
        );
        assert!(matches!(
            parse_identity("gridkv:admin:x"),
            Err(TlsError::InvalidIdentity { .. })
        ));
        assert!(matches!(
            parse_identity("gridkv:node:"),
            Err(TlsError::InvalidIdentity { .. })
        ));
        assert!(matches!(
            parse_identity("gridkv:node:a b"),
            Err(TlsError::InvalidIdentity { .. })
        ));
    }
}
