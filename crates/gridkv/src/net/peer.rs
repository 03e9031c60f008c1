//! [`Peer`]: the application's handle on one peer address, its two lanes'
//! links.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::envelope::Lane;
use super::error::TransportError;
use super::handshake::exchange::PeerInfo;
use super::link::{Link, Wait};
use super::rtt::RttSnapshot;
use super::shared::Shared;

/// A handle on one peer address: its two lanes' links.
///
/// # Examples
///
/// See [`Transport`](super::Transport).
#[derive(Clone)]
pub struct Peer {
    shared: Arc<Shared>,
    links: [Arc<Link>; 2],
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("addr", &self.links[0].addr())
            .finish_non_exhaustive()
    }
}

impl Peer {
    pub(crate) fn new(shared: Arc<Shared>, links: [Arc<Link>; 2]) -> Self {
        Self { shared, links }
    }

    /// Sends a request and waits for its answer, for at most the lane's
    /// adaptive timeout (smoothed RTT plus four variances, clamped to the
    /// configured floor and ceiling).
    ///
    /// Dropping the future (a caller's deadline, a `select!`) withdraws the
    /// request: its slot is released, a late answer is discarded, and the
    /// connection stays healthy.
    pub async fn request(&self, lane: Lane, body: Bytes) -> Result<Bytes, TransportError> {
        self.links[lane.index()]
            .request(&self.shared, body, Wait::Adaptive)
            .await
    }

    /// As [`Peer::request`] with an explicit timeout instead of the adaptive
    /// one.
    pub async fn request_with_timeout(
        &self,
        lane: Lane,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        self.links[lane.index()]
            .request(&self.shared, body, Wait::For(timeout))
            .await
    }

    /// As [`Peer::request`] with no timeout of its own: it ends with the
    /// answer, or when the connection fails or the transport shuts down —
    /// and never if the answer is lost on a live connection (a fault hook,
    /// a peer that drops it), holding its pending entry and in-flight slot
    /// meanwhile. The caller must bound it (`tokio::time::timeout_at`, a
    /// `select!`); dropping the future withdraws the request. For callers
    /// that wait on several requests under one deadline: no timer per
    /// request, and its timeouts are neither counted in
    /// [`TransportStats`](super::TransportStats) nor fed to the RTT
    /// estimate.
    pub(crate) async fn request_untimed(&self, lane: Lane, body: Bytes) -> Result<Bytes, TransportError> {
        self.links[lane.index()]
            .request(&self.shared, body, Wait::Caller)
            .await
    }

    /// Queues a one-way message. `Ok` means queued, not delivered: it is
    /// lost if the connection breaks first.
    pub fn send(&self, lane: Lane, body: Bytes) -> Result<(), TransportError> {
        self.links[lane.index()].send(&self.shared, body)
    }

    /// The address this handle dials.
    pub fn addr(&self) -> &str {
        self.links[0].addr()
    }

    /// The lane's RTT estimate.
    pub fn rtt(&self, lane: Lane) -> RttSnapshot {
        self.links[lane.index()].rtt()
    }

    /// Who answered the last handshake on this lane, if any connection was
    /// ever made.
    pub fn node(&self, lane: Lane) -> Option<PeerInfo> {
        self.links[lane.index()].peer()
    }

    /// Requests awaiting answers on the lane now.
    pub fn in_flight(&self, lane: Lane) -> usize {
        self.links[lane.index()].in_flight()
    }
}
