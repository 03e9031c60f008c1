//! Hint delivery: the task that offers the hints this node keeps (writes
//! for owners that were unreachable, see `hints`) to their owners, which
//! takes them once they are back.

use std::sync::Weak;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Coordinator;

/// How often waiting hints are offered to owners that are back.
const INTERVAL: Duration = Duration::from_millis(500);

/// Starts the task that delivers `coordinator`'s hints every [`INTERVAL`],
/// until `cancel` fires or the coordinator is dropped (it holds no strong
/// reference between rounds, so it does not keep the node alive).
pub(crate) fn spawn(coordinator: Weak<Coordinator>, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(INTERVAL) => {}
            }
            let Some(coordinator) = coordinator.upgrade() else {
                return;
            };
            if coordinator.hints.len() == 0 {
                continue;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = coordinator.deliver_hints() => {}
            }
        }
    })
}
