//! Mutual TLS for the cluster transport, and the node's certificates.
//!
//! Every cluster connection, both lanes, is TLS 1.3 (rustls, `ring`
//! provider) with a certificate on both ends. A node's certificate is
//! signed by the cluster's CA, holds an Ed25519 key (membership signs its
//! claims with it) and names the node in a URI SAN `gridkv:node:<ID>`;
//! operators' certificates name `gridkv:operator:<NAME>` and are refused
//! as node identities. Both ends check the peer's chain against the trust
//! bundle (every CA in the CA file: several during a rotation) and never
//! the dialled host or IP: the handshake that follows TLS holds the peer to
//! the id its certificate names.
//!
//! - `error`: [`TlsError`];
//! - `identity`: what a certificate says (URI SAN, key, expiry);
//! - `verify`: the trust bundle and the rustls verifiers on it;
//! - `material`: the files ([`TlsFiles`]) and the checked material;
//! - `configs`: the rustls configurations, and
//!   [`server_config_from_pem`] for listeners serving browsers;
//! - `store`: [`TlsStore`], the material loaded now, reloadable;
//! - `status`: [`TlsStatus`] and [`CertExpiry`], for metrics;
//! - `credentials`: the store as membership's
//!   [`Credentials`](crate::membership::trust::Credentials);
//! - `operator`: [`OperatorKey`], what signs `gridkv remove`;
//! - `stream`: the TLS handshake over a transport stream.

mod configs;
mod credentials;
mod error;
mod identity;
mod material;
mod operator;
mod status;
mod store;
pub(crate) mod stream;
mod verify;

pub use configs::{server_config_from_files, server_config_from_pem};
pub use error::TlsError;
pub use identity::{NODE_URI_PREFIX, OPERATOR_URI_PREFIX};
pub use material::{TlsFiles, MAX_PEM_FILE};
pub use operator::OperatorKey;
pub use status::{CertExpiry, CertKind, TlsStatus};
pub use store::{TlsStore, MAX_ROTATIONS};
