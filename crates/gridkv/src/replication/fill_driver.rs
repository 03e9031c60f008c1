//! The fill driver: the task that runs a node's [`FillSchedule`] over its
//! [`Rebalancer`]. It feeds the schedule the placement's changes and the
//! ends of fill passes and anti-entropy rounds, runs what the schedule says
//! is due, and otherwise sleeps until the schedule's next deadline. After
//! each complete pass and each round it drops what the node holds on
//! ranges it no longer owns, once their owners hold them
//! ([`Rebalancer::drop_unowned`]).

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
                            cleared = report.cleared,
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
                    if report.complete && !self.sweep(origin).await {
                        return;
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
                    if !self.sweep(origin).await {
                        return;
                    }
                    self.schedule.anti_entropy_finished(origin.elapsed());
                }
                Some(Task::Sweep) => {
                    if !self.sweep(origin).await {
                        return;
                    }
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

    /// Runs one [`Rebalancer::drop_unowned`] sweep and reports its end to
    /// the schedule; `false` if the token was cancelled meanwhile.
    async fn sweep(&mut self, origin: Instant) -> bool {
        let report = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return false,
            report = self.rebalancer.drop_unowned() => report,
        };
        if report.entries > 0 {
            tracing::info!(
                node = %self.rebalancer.me,
                pieces = report.pieces,
                entries = report.entries,
                bytes = report.bytes,
                kept = report.kept,
                "dropped ranges no longer owned"
            );
        } else if report.kept > 0 {
            tracing::debug!(
                node = %self.rebalancer.me,
                kept = report.kept,
                "ranges no longer owned kept: an owner cannot be shown to hold them"
            );
        }
        self.schedule
            .sweep_finished(origin.elapsed(), report.recent > 0);
        true
    }
}
