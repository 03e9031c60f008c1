//! The fill driver: the task that runs a node's [`FillSchedule`] over its
//! [`Rebalancer`]. It feeds the schedule the placement's changes and the
//! ends of fill passes and anti-entropy rounds, runs what the schedule says
//! is due, and otherwise sleeps until the schedule's next deadline.

use std::future::Future;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fill_schedule::{FillSchedule, Task};
use super::rebalance::Rebalancer;
use crate::membership::RingState;

/// The rebalancing task of one node, from its join on: after each
/// placement change it pulls the ranges the node gains, and once they are
/// in it repairs them by anti-entropy.
pub(crate) struct FillDriver<F> {
    pub(crate) rebalancer: Rebalancer,
    pub(crate) schedule: FillSchedule,
    /// Bumped by the node whenever the placement changes.
    pub(crate) changes: watch::Receiver<u64>,
    /// Called after a complete pass while this node is still joining: its
    /// ranges are in, so it may become normal (the node decides, by its
    /// fill mode).
    pub(crate) on_filled: F,
    pub(crate) cancel: CancellationToken,
}

impl<F, Fut> FillDriver<F>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    /// Runs until the token is cancelled or the node drops its end of
    /// `changes`.
    pub(crate) async fn run(mut self) {
        let origin = Instant::now();
        loop {
            let now = origin.elapsed();
            let alone = {
                let p = self.rebalancer.placement.load();
                let me = self.rebalancer.me;
                p.ring.nodes().iter().all(|id| *id == me)
            };
            match self.schedule.poll(now, alone) {
                Some(Task::Fill) => {
                    // The pass reads the placement as of now or later.
                    self.changes.borrow_and_update();
                    let report = tokio::select! {
                        biased;
                        _ = self.cancel.cancelled() => return,
                        report = self.rebalancer.fill() => report,
                    };
                    if report.pieces > 0 {
                        tracing::info!(
                            node = %self.rebalancer.me,
                            pieces = report.pieces,
                            entries = report.entries,
                            bytes = report.bytes,
                            complete = report.complete,
                            "filled gained ranges"
                        );
                    }
                    let joining = self
                        .rebalancer
                        .placement
                        .load()
                        .members
                        .get(&self.rebalancer.me)
                        .is_some_and(|m| m.ring == RingState::Joining);
                    if report.complete && joining {
                        (self.on_filled)().await;
                    }
                    self.schedule
                        .fill_finished(origin.elapsed(), report.complete);
                }
                Some(Task::AntiEntropy) => {
                    tokio::select! {
                        biased;
                        _ = self.cancel.cancelled() => return,
                        _ = self.rebalancer.anti_entropy() => {}
                    }
                    self.schedule.anti_entropy_finished(origin.elapsed());
                }
                None => {
                    let sleep = self.schedule.next_deadline().saturating_sub(now);
                    tokio::select! {
                        biased;
                        _ = self.cancel.cancelled() => return,
                        changed = self.changes.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            self.schedule.placement_changed();
                        }
                        _ = tokio::time::sleep(sleep) => {}
                    }
                }
            }
        }
    }
}
