//! How the node's cluster traffic is protected, as the server reports it:
//! TLS or plaintext (on loopback, or explicitly insecure), the loaded
//! certificates' expiry and reload counts, and reloading them.

use std::sync::Arc;

use super::{Config, GridKv};
use crate::config_error::ConfigError;
use crate::membership::Swim;
use crate::membership::signed::{Removal, RemovalError};
use crate::membership::trust::Credentials;
use crate::net::tls::{TlsError, TlsStatus, TlsStore};

/// Turns signed membership on when the node has TLS material: its claims
/// are signed with its certificate's key, and every claim it hears must
/// verify against the trust bundle (see `membership::trust`).
pub(super) fn sign_membership(swim: &mut Swim, config: &Config) -> Result<(), ConfigError> {
    swim.set_cluster_name(&config.transport.cluster)?;
    if let Some(store) = config.transport.tls.clone() {
        swim.set_credentials(Arc::new(store) as Arc<dyn Credentials>)?;
    }
    Ok(())
}

/// Cluster security (TLS state and reloads).
impl GridKv {
    /// Whether cluster connections are mutual TLS.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use gridkv::GridKv;
    ///
    /// let node = GridKv::start(GridKv::builder("a").build()?).await?;
    /// assert!(!node.tls_enabled()); // plaintext, on loopback
    /// assert!(!node.is_insecure());
    /// assert!(node.tls_status().is_none() && node.tls().is_none());
    /// assert!(node.reload_tls().is_err());
    /// node.shutdown().await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn tls_enabled(&self) -> bool {
        self.inner.transport.tls().is_some()
    }

    /// Whether cluster traffic is plaintext because
    /// [`ConfigBuilder::insecure`](crate::ConfigBuilder::insecure) allowed
    /// it (rather than because the node is on loopback). `false` with TLS.
    pub fn is_insecure(&self) -> bool {
        self.inner.insecure && !self.tls_enabled()
    }

    /// Re-reads the TLS files and makes the new material current for every
    /// cluster connection opened from now on (see
    /// [`TlsStore::reload`](crate::TlsStore::reload)); a failed reload
    /// keeps the material loaded before.
    ///
    /// # Errors
    ///
    /// [`TlsError::NotEnabled`] on a plaintext node; otherwise why the new
    /// material was refused.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        self.inner
            .transport
            .tls()
            .ok_or(TlsError::NotEnabled)?
            .reload()?;
        // Members relay this node's last signed claim; re-sign it with the
        // new certificate before the old CA is dropped anywhere.
        let _ = self.inner.commands.try_send(super::Command::Resign);
        Ok(())
    }

    /// The node's TLS material, for listeners that serve clients with the
    /// node's certificate ([`TlsStore::server_config`](crate::TlsStore::server_config));
    /// `None` on a plaintext node.
    pub fn tls(&self) -> Option<&TlsStore> {
        self.inner.transport.tls()
    }

    /// The loaded certificates' expiry and the reload counts; `None` on a
    /// plaintext node.
    pub fn tls_status(&self) -> Option<TlsStatus> {
        self.inner.transport.tls().map(|tls| tls.status())
    }

    /// Applies an operator's signed removal of one run of a member
    /// (`gridkv remove`; see
    /// [`Removal::sign`](crate::membership::signed::Removal::sign)): with
    /// TLS it must verify against the trust bundle (an operator
    /// certificate); it is gossiped on, and every member verifies it
    /// again.
    ///
    /// # Errors
    ///
    /// [`RemovalError`] when it does not verify or names a run this node
    /// does not know; [`RemovalError::Refused`] too when the node is
    /// stopping.
    pub async fn remove_member(&self, removal: Removal) -> Result<(), RemovalError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let stopping = || RemovalError::Refused("the node is stopping".to_owned());
        self.inner
            .commands
            .send(super::Command::Remove(Box::new(removal), done))
            .await
            .map_err(|_| stopping())?;
        result.await.map_err(|_| stopping())?
    }
}
