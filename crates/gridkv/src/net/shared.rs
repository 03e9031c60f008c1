//! What a transport's tasks share: its configuration and identity, the
//! network it runs on, its counters and fault hooks, the application's
//! channels, and the token and tracker that stop and count its tasks.
//!
//! The links by peer address are not here: the link module keeps them, and
//! starts each link's task with this state, so the state depends on no
//! link.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::TransportConfig;
use super::faults::FaultInjector;
use super::handshake::LocalIdentity;
use super::inbound::{Inbound, Incoming};
use super::io::Network;
use super::stats::Counters;

/// State shared by a transport's tasks.
pub(crate) struct Shared {
    pub(crate) config: TransportConfig,
    pub(crate) identity: LocalIdentity,
    pub(crate) network: Arc<dyn Network>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) faults: FaultInjector,
    /// Where inbound traffic goes; taken at shutdown (and when the last
    /// handle drops) so the application's receivers end once the
    /// connections holding clones are gone.
    handlers: Mutex<Option<[mpsc::Sender<Inbound>; 2]>>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) runtime: tokio::runtime::Handle,
    epoch: Instant,
}

impl Shared {
    /// The shared state for a transport with a valid `config`, on the
    /// current tokio runtime, and the receiving ends of its channels.
    pub(crate) fn new(config: TransportConfig, network: Arc<dyn Network>) -> (Self, Incoming) {
        let (control_tx, control) = mpsc::channel(config.incoming_capacity);
        let (data_tx, data) = mpsc::channel(config.incoming_capacity);
        let shared = Self {
            identity: LocalIdentity {
                cluster: config.cluster.clone(),
                node_id: config.node_id,
                generation: config.generation,
            },
            faults: FaultInjector::new(config.seed),
            config,
            network,
            counters: Arc::new(Counters::default()),
            handlers: Mutex::new(Some([control_tx, data_tx])),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
            epoch: Instant::now(),
        };
        (shared, Incoming { control, data })
    }

    /// The application's channels, for a new connection; `None` once
    /// shutting down.
    pub(crate) fn handlers(&self) -> Option<[mpsc::Sender<Inbound>; 2]> {
        self.handlers.lock().clone()
    }

    /// Cancels every task and lets go of the application's channels.
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
        self.handlers.lock().take();
    }

    /// Nanoseconds since the transport started: ping tokens.
    pub(crate) fn ticks(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The instant a ping token from [`Shared::ticks`] stands for.
    pub(crate) fn instant_of(&self, ticks: u64) -> Instant {
        self.epoch + Duration::from_nanos(ticks)
    }
}
