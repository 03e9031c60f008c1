//! Whom to trust: the cluster's trust bundle ([`Bundle`]) and the rustls
//! verifiers built on it.
//!
//! Both ends of a cluster connection check the peer's chain against the
//! bundle and that its leaf names a node (URI SAN `gridkv:node:ID`) with an
//! Ed25519 key. Neither checks the dialled host name or IP: containers and
//! pods move, a node's identity is its certified id, and the handshake
//! after TLS holds the peer to it.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};
use rustls::pki_types::TrustAnchor;
use webpki::{EndEntityCert, KeyUsage};

use super::error::TlsError;
use super::identity::CertInfo;

/// The CA certificates a node trusts (several during a rotation), parsed
/// into trust anchors once per load.
#[derive(Debug)]
pub(crate) struct Bundle {
    anchors: Vec<TrustAnchor<'static>>,
    subjects: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Bundle {
    /// Trust anchors from CA certificates (DER).
    pub(crate) fn new(cas: &[CertificateDer<'static>]) -> Result<Bundle, TlsError> {
        let mut anchors = Vec::with_capacity(cas.len());
        for ca in cas {
            let anchor = webpki::anchor_from_trusted_cert(ca).map_err(|error| {
                TlsError::Certificate {
                    what: "trust bundle",
                    reason: error.to_string(),
                }
            })?;
            anchors.push(anchor.to_owned());
        }
        let subjects = anchors
            .iter()
            .map(|anchor| DistinguishedName::from(anchor.subject.to_vec()))
            .collect();
        Ok(Bundle {
            anchors,
            subjects,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        })
    }

    /// Whether `leaf` (with the `intermediates` its holder sent) chains to
    /// one of the anchors and is valid at `now`. `usage` is the extended key
    /// usage required when the leaf names any.
    pub(crate) fn verify_chain(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: KeyUsage,
    ) -> Result<(), webpki::Error> {
        let cert = EndEntityCert::try_from(leaf)?;
        cert.verify_for_usage(
            self.algorithms.all,
            &self.anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map(|_| ())
    }

    /// As [`Bundle::verify_chain`], then the leaf must name a node and hold
    /// an Ed25519 key: what a cluster peer must show.
    fn verify_node(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: KeyUsage,
    ) -> Result<(), rustls::Error> {
        self.verify_chain(leaf, intermediates, now, usage)
            .map_err(pki_error)?;
        CertInfo::parse(leaf, "peer certificate")
            .and_then(|info| info.node())
            .map(|_| ())
            .map_err(|error| {
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    error,
                ))))
            })
    }

    fn verify_signature(
        &self,
        tls13: bool,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if tls13 {
            verify_tls13_signature(message, cert, dss, &self.algorithms)
        } else {
            verify_tls12_signature(message, cert, dss, &self.algorithms)
        }
    }
}

/// A webpki error as rustls reports it (and alerts the peer with).
fn pki_error(error: webpki::Error) -> rustls::Error {
    use webpki::Error as E;
    let error = match error {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertExpired { .. } => CertificateError::Expired,
        E::CertNotValidYet { .. } => CertificateError::NotValidYet,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(error)
}

/// The cluster's verifier, on both ends of a connection: the peer's chain
/// against the bundle, its leaf a node's with an Ed25519 key; client
/// certificates mandatory; host names ignored.
#[derive(Debug)]
pub(crate) struct NodeVerifier {
    pub(crate) bundle: Arc<Bundle>,
}

impl ClientCertVerifier for NodeVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.bundle.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.bundle
            .verify_node(end_entity, intermediates, now, KeyUsage::client_auth())
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.bundle.verify_signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.bundle.verify_signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.bundle.algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.bundle
            .verify_node(end_entity, intermediates, now, KeyUsage::server_auth())
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.bundle.verify_signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.bundle.verify_signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.bundle.algorithms.supported_schemes()
    }
}

/// For listeners other than the cluster's (RESP, HTTP): a client may
/// present a certificate, which must then chain to the bundle; its role is
/// for the listener to judge.
#[derive(Debug)]
pub(crate) struct OptionalClientVerifier {
    pub(crate) bundle: Arc<Bundle>,
}

impl ClientCertVerifier for OptionalClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.bundle.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.bundle
            .verify_chain(end_entity, intermediates, now, KeyUsage::client_auth())
            .map(|()| ClientCertVerified::assertion())
            .map_err(pki_error)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.bundle.verify_signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.bundle.verify_signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.bundle.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, and a leaf it signed with `uri` and an `algorithm` key.
    fn ca_and_leaf(
        uri: &str,
        algorithm: &'static rcgen::SignatureAlgorithm,
    ) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, format!("CA for {uri}"));
        let ca_der = ca.self_signed(&ca_key).unwrap().der().clone();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.subject_alt_names
            .push(rcgen::SanType::URI(uri.try_into().unwrap()));
        let leaf_der = leaf.signed_by(&key, &issuer).unwrap().der().clone();
        (ca_der, leaf_der)
    }

    fn verify(uri: &str, algorithm: &'static rcgen::SignatureAlgorithm) -> Result<(), rustls::Error> {
        let (ca, leaf) = ca_and_leaf(uri, algorithm);
        let verifier = NodeVerifier {
            bundle: Arc::new(Bundle::new(&[ca]).unwrap()),
        };
        let name = ServerName::try_from("anything").unwrap();
        let as_server = verifier
            .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
            .map(|_| ());
        let as_client = verifier
            .verify_client_cert(&leaf, &[], UnixTime::now())
            .map(|_| ());
        assert_eq!(as_server.is_ok(), as_client.is_ok());
        as_client
    }

    #[test]
    fn both_ends_accept_only_node_certificates_with_ed25519_keys() {
        assert!(verify("gridkv:node:a", &rcgen::PKCS_ED25519).is_ok());
        for (uri, algorithm, why) in [
            ("gridkv:operator:alice", &rcgen::PKCS_ED25519, "OperatorCertificate"),
            ("https://example.com", &rcgen::PKCS_ED25519, "NoNodeId"),
            ("gridkv:node:a", &rcgen::PKCS_ECDSA_P256_SHA256, "NotEd25519"),
        ] {
            let err = verify(uri, algorithm).unwrap_err();
            assert!(format!("{err:?}").contains(why), "{uri}: {err:?}");
        }
    }

    #[test]
    fn a_chain_to_no_anchor_of_the_bundle_is_an_unknown_issuer() {
        let (_, leaf) = ca_and_leaf("gridkv:node:a", &rcgen::PKCS_ED25519);
        let (other_ca, _) = ca_and_leaf("gridkv:node:b", &rcgen::PKCS_ED25519);
        let verifier = NodeVerifier {
            bundle: Arc::new(Bundle::new(&[other_ca]).unwrap()),
        };
        assert_eq!(
            verifier.verify_client_cert(&leaf, &[], UnixTime::now()).unwrap_err(),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }
}
