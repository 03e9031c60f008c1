//! What the server exports about the loaded TLS material: [`TlsStatus`],
//! with each certificate's expiry ([`CertExpiry`]) and the reload counts.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::NodeId;

/// Which certificate an expiry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// This node's own certificate (the leaf of its chain).
    Node,
    /// A CA of the trust bundle.
    Ca,
}

impl CertKind {
    /// `node` or `ca`, as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Node => "node",
            CertKind::Ca => "ca",
        }
    }
}

/// One loaded certificate and when it expires.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use gridkv::net::tls::{CertExpiry, CertKind};
///
/// let cert = CertExpiry { kind: CertKind::Ca, subject: "CN=ca".into(), not_after_secs: 10 * 86_400 };
/// assert_eq!(cert.days_left(UNIX_EPOCH + Duration::from_secs(86_400 / 2)), 9.5);
/// assert!(cert.days_left(UNIX_EPOCH + Duration::from_secs(11 * 86_400)) < 0.0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExpiry {
    /// The node's own, or a CA.
    pub kind: CertKind,
    /// The certificate's subject.
    pub subject: String,
    /// Its `notAfter`, in seconds since the Unix epoch.
    pub not_after_secs: i64,
}

impl CertExpiry {
    /// Days from `now` until it expires; negative once expired.
    pub fn days_left(&self, now: SystemTime) -> f64 {
        let now = match now.duration_since(UNIX_EPOCH) {
            Ok(since) => since.as_secs_f64(),
            Err(before) => -before.duration().as_secs_f64(),
        };
        (self.not_after_secs as f64 - now) / 86_400.0
    }
}

/// The TLS material a node runs with now, and how its reloads went.
///
/// # Examples
///
/// See [`TlsStore::status`](super::TlsStore::status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsStatus {
    /// The node id the certificate names.
    pub node_id: NodeId,
    /// The node's certificate first, then each trusted CA.
    pub certificates: Vec<CertExpiry>,
    /// Reloads that replaced the material.
    pub reloads_ok: u64,
    /// Reloads that failed (the material before them was kept).
    pub reloads_failed: u64,
    /// Why the last failed reload failed, if the last reload failed.
    pub last_error: Option<String>,
}
