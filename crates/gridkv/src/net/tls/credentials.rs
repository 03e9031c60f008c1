//! [`TlsStore`] as membership's [`Credentials`]: signs with the node's
//! Ed25519 key and checks other nodes' (and operators') certificates
//! against the trust bundle loaded now.

use std::time::Duration;

use ed25519_dalek::Signer;
use rustls::pki_types::{CertificateDer, UnixTime};
use webpki::KeyUsage;

use super::identity::CertInfo;
use super::store::TlsStore;
use crate::membership::trust::{CertifiedKey, Credentials, Untrusted};
use crate::NodeId;

/// A claim is signed with the key of the load current at the call, and
/// [`Credentials::certificate`] returns that load's leaf: a reload between
/// the two calls makes one claim carry the new certificate with the old
/// key's signature, which receivers refuse; the next claim is whole.
///
/// # Examples
///
/// ```
/// use gridkv::membership::trust::{CertRole, Credentials};
/// use gridkv::net::tls::TlsStore;
///
/// # let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
/// # let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
/// # ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
/// # let ca_cert = ca.self_signed(&ca_key)?;
/// # let issuer = rcgen::Issuer::new(ca, ca_key);
/// # let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
/// # let mut node = rcgen::CertificateParams::new(Vec::<String>::new())?;
/// # node.subject_alt_names.push(rcgen::SanType::URI("gridkv:node:a".try_into()?));
/// # let cert = node.signed_by(&key, &issuer)?;
/// let store = TlsStore::from_pem(ca_cert.pem().as_bytes(), cert.pem().as_bytes(), key.serialize_pem().as_bytes())?;
/// let signature = store.sign(b"alive at 3");
/// let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
/// let certified = store.verify_certificate(store.certificate(), now_ms)?;
/// assert_eq!((certified.node_id.as_str(), certified.role), ("a", CertRole::Node));
/// let key = ed25519_dalek::VerifyingKey::from_bytes(&certified.public_key)?;
/// assert!(key.verify_strict(b"alive at 3", &ed25519_dalek::Signature::from_bytes(&signature)).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl Credentials for TlsStore {
    fn node_id(&self) -> NodeId {
        TlsStore::node_id(self)
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.loaded().signing.sign(message).to_bytes()
    }

    fn certificate(&self) -> &[u8] {
        self.leaf(self.loaded().leaf_slot)
    }

    fn verify_certificate(&self, der: &[u8], now_ms: u64) -> Result<CertifiedKey, Untrusted> {
        let untrusted = |reason: String| Untrusted(reason);
        let now = UnixTime::since_unix_epoch(Duration::from_millis(now_ms));
        self.loaded()
            .bundle
            .verify_chain(&CertificateDer::from(der), &[], now, KeyUsage::client_auth())
            .map_err(|error| untrusted(error.to_string()))?;
        let info = CertInfo::parse(der, "certificate").map_err(|e| untrusted(e.to_string()))?;
        let (role, node_id) = info.holder.map_err(|e| untrusted(e.to_string()))?;
        let public_key = info.ed25519.ok_or_else(|| {
            untrusted(format!(
                "the key is {}; certificates must be Ed25519",
                info.key_algorithm
            ))
        })?;
        Ok(CertifiedKey {
            node_id,
            role,
            public_key,
            not_after_ms: u64::try_from(info.not_after_secs)
                .unwrap_or(0)
                .saturating_mul(1000),
        })
    }
}
