//! Handle methods that reach past the public API, for the crate's own
//! tests, benches and the server: the local store (writes to it bypass
//! replication), the transport, the placement ring and the task count.
//! Compiled only with the `internals` cargo feature.

use std::sync::Arc;

use super::{Config, GridKv, StartError};
use crate::net::io::Network;
use crate::membership::RingMembers;
use crate::net::Transport;
use crate::ring::Ring;
use crate::store::Store;

/// Internals of the handle (feature `internals`).
impl GridKv {
    /// As [`GridKv::start`], over any [`Network`]: a simulator (the tests
    /// run whole clusters under turmoil), or a custom socket layer.
    ///
    /// # Errors
    ///
    /// As [`GridKv::start`].
    pub async fn start_with(
        config: Config,
        network: Arc<dyn Network>,
    ) -> Result<GridKv, StartError> {
        Self::launch(config, network).await
    }

    /// The placement ring: designated owners (see [`RingMembers`]).
    pub fn ring(&self) -> Arc<Ring> {
        self.inner.ring.load_full()
    }

    /// Who holds ring slots now and after pending changes, with the ring's
    /// version.
    pub fn ring_members(&self) -> Arc<RingMembers> {
        self.inner.ring_members.load_full()
    }

    /// The transport (for the replication layer and diagnostics).
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// Tasks this node still runs (the transport's plus the node's:
    /// membership, replica, store maintenance, fill, hints); 0 after
    /// [`GridKv::shutdown`].
    pub fn task_count(&self) -> usize {
        let own = self
            .inner
            .tasks
            .lock()
            .iter()
            .filter(|t| !t.is_finished())
            .count();
        self.inner.transport.task_count() + own
    }

    /// The local store (for metrics and diagnostics; writes to it bypass
    /// replication).
    pub fn store(&self) -> &Store {
        &self.inner.coordinator.replica.store
    }
}
