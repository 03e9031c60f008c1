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
