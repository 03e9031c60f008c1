//! When a node fills the ranges it gains and when it runs anti-entropy: a
//! sans-IO state machine, fed what happened (time passed, the placement
//! changed, a fill pass or an anti-entropy round finished) and asked what
//! to run and when to wake. No clock or socket inside, so its timing is
//! tested by hand; `fill_driver` runs it over the
//! [`Rebalancer`](super::rebalance::Rebalancer), as the node's driver runs
//! `Swim`.
//!
//! The schedule, from the node's join on:
//! - After each placement change, one fill pass. The first pass in a
//!   cluster of more than this node waits [`FillSchedule::SETTLE`] first, so
//!   the cluster has heard the node is joining and sends it new writes.
//! - A pass that was not complete is tried again after
//!   [`FillSchedule::RETRY`], or at once on the next change.
//! - Once filled, anti-entropy rounds follow one another, each after the
//!   configured interval jittered by ±25% (seeded), until the placement
//!   changes and a fill pass is due again.
//! - The driver sweeps ranges the node no longer owns after each complete
//!   pass and each round; a sweep that left entries too recent to drop
//!   asks for another [`FillSchedule::SWEEP_AGAIN`] later (while filled).

use std::time::Duration;

use crate::rng::SplitMix64;

/// What the driver should run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    /// A fill pass ([`Rebalancer::fill`](super::rebalance::Rebalancer::fill)).
    Fill,
    /// An anti-entropy round
    /// ([`Rebalancer::anti_entropy`](super::rebalance::Rebalancer::anti_entropy)).
    AntiEntropy,
    /// A sweep of ranges no longer owned
    /// ([`Rebalancer::drop_unowned`](super::rebalance::Rebalancer::drop_unowned)).
    Sweep,
}

/// Where the schedule is. Times are offsets from the driver's origin, as
/// `Swim` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A fill pass is due as soon as the driver asks.
    FillDue,
    /// Waiting until `until` for the cluster to hear this node is joining.
    Settling { until: Duration },
    /// A fill pass is running.
    Filling,
    /// The last pass was incomplete: the next is due at `until` (or at a
    /// placement change).
    Retrying { until: Duration },
    /// Filled: the next anti-entropy round is due at `until`.
    Filled { until: Duration },
    /// An anti-entropy round is running.
    Repairing,
}

/// The fill and anti-entropy schedule of one node (see the module docs).
#[derive(Debug)]
pub(crate) struct FillSchedule {
    state: State,
    /// Whether the first wait for the cluster to settle is done.
    settled: bool,
    /// The placement changed while a pass or round ran: a fill is due when
    /// it finishes.
    changed: bool,
    anti_entropy: Duration,
    /// Jitters the anti-entropy rounds (seeded: a simulation replays).
    rng: SplitMix64,
    /// When the next sweep is due, if the last one asked for another.
    sweep_at: Option<Duration>,
}

impl FillSchedule {
    /// How long a node waits after joining before it streams its ranges,
    /// so that the cluster has heard it is joining and sends it new writes.
    pub(crate) const SETTLE: Duration = Duration::from_millis(1000);

    /// How long after an incomplete fill pass the next one starts, unless
    /// the placement changes first.
    pub(crate) const RETRY: Duration = Duration::from_secs(1);

    /// How long after a sweep that left recent entries on ranges this node
    /// no longer owns the next one runs, unless a pass or round (each
    /// followed by a sweep) comes first.
    pub(crate) const SWEEP_AGAIN: Duration = super::rebalance::DROP_MARGIN;

    /// A schedule with a fill pass due, anti-entropy rounds every
    /// `anti_entropy` (jittered) once filled, and jitter drawn from `seed`.
    pub(crate) fn new(anti_entropy: Duration, seed: u64) -> Self {
        Self {
            state: State::FillDue,
            settled: false,
            changed: false,
            anti_entropy,
            rng: SplitMix64::new(seed),
            sweep_at: None,
        }
    }

    /// What to run at `now`, if anything is due; the driver reports its end
    /// with [`FillSchedule::fill_finished`] or
    /// [`FillSchedule::anti_entropy_finished`]. `alone`: whether this node
    /// is the only one on the placement ring (nothing to settle with).
    pub(crate) fn poll(&mut self, now: Duration, alone: bool) -> Option<Task> {
        match self.state {
            State::FillDue if !self.settled && !alone => {
                self.settled = true;
                self.state = State::Settling {
                    until: now + Self::SETTLE,
                };
                None
            }
            State::FillDue => self.start(Task::Fill),
            State::Settling { until } | State::Retrying { until } if now >= until => {
                self.start(Task::Fill)
            }
            State::Filled { until } if now >= until => self.start(Task::AntiEntropy),
            State::Filled { .. } if self.sweep_at.is_some_and(|at| now >= at) => {
                self.start(Task::Sweep)
            }
            _ => None,
        }
    }

    fn start(&mut self, task: Task) -> Option<Task> {
        match task {
            Task::Fill => self.state = State::Filling,
            Task::AntiEntropy => self.state = State::Repairing,
            // Runs between rounds; the state (and its round) stays.
            Task::Sweep => self.sweep_at = None,
        }
        Some(task)
    }

    /// The placement changed: a fill pass is due, at once if the schedule
    /// was waiting, else when the running pass or round ends. While it
    /// settles, the pass to come reads the new placement anyway.
    pub(crate) fn placement_changed(&mut self) {
        match self.state {
            State::Retrying { .. } | State::Filled { .. } => self.state = State::FillDue,
            State::Filling | State::Repairing => self.changed = true,
            State::FillDue | State::Settling { .. } => {}
        }
    }

    /// A fill pass ended at `now`; `complete` if every gained piece was
    /// streamed from enough sources.
    pub(crate) fn fill_finished(&mut self, now: Duration, complete: bool) {
        self.state = if complete {
            self.next_round(now)
        } else if self.changed {
            State::FillDue
        } else {
            State::Retrying {
                until: now + Self::RETRY,
            }
        };
        self.changed = false;
    }

    /// A sweep ended at `now`; `again` if it left entries to drop later.
    /// Report it before the end of the pass or round it followed.
    pub(crate) fn sweep_finished(&mut self, now: Duration, again: bool) {
        self.sweep_at = again.then(|| now + Self::SWEEP_AGAIN);
    }

    /// An anti-entropy round ended at `now`.
    pub(crate) fn anti_entropy_finished(&mut self, now: Duration) {
        self.state = self.next_round(now);
        self.changed = false;
    }

    /// The next round, `anti_entropy` scaled by a factor in [0.75, 1.25)
    /// after `now` so the nodes' rounds spread out; or a fill if the
    /// placement changed meanwhile. The jitter is drawn either way, so the
    /// sequence of draws does not depend on when changes arrive.
    fn next_round(&mut self, now: Duration) -> State {
        let jitter = self.anti_entropy.mul_f64(0.75 + self.rng.unit() * 0.5);
        if self.changed {
            State::FillDue
        } else {
            State::Filled {
                until: now + jitter,
            }
        }
    }

    /// When [`FillSchedule::poll`] next has something to run:
    /// `Duration::ZERO` if at once, `Duration::MAX` while a pass or round
    /// runs (its end is reported, not timed).
    pub(crate) fn next_deadline(&self) -> Duration {
        match self.state {
            State::FillDue => Duration::ZERO,
            State::Filled { until } => self.sweep_at.map_or(until, |at| at.min(until)),
            State::Settling { until } | State::Retrying { until } => until,
            State::Filling | State::Repairing => Duration::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AE: Duration = Duration::from_secs(30);

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// A schedule past its first complete fill, alone (no settling).
    fn filled_at(now: Duration) -> FillSchedule {
        let mut s = FillSchedule::new(AE, 7);
        assert_eq!(s.poll(now, true), Some(Task::Fill));
        s.fill_finished(now, true);
        s
    }

    #[test]
    fn a_lone_node_fills_at_once() {
        let mut s = FillSchedule::new(AE, 1);
        assert_eq!(s.next_deadline(), Duration::ZERO);
        assert_eq!(s.poll(ms(5), true), Some(Task::Fill));
        assert_eq!(s.next_deadline(), Duration::MAX);
        assert_eq!(s.poll(ms(6), true), None, "one pass at a time");
    }

    #[test]
    fn the_first_fill_in_a_cluster_waits_to_settle_once() {
        let mut s = FillSchedule::new(AE, 1);
        assert_eq!(s.poll(ms(100), false), None);
        assert_eq!(s.next_deadline(), ms(100) + FillSchedule::SETTLE);
        // A change while settling: the pass to come reads it anyway.
        s.placement_changed();
        assert_eq!(s.next_deadline(), ms(100) + FillSchedule::SETTLE);
        assert_eq!(s.poll(ms(1099), false), None);
        assert_eq!(s.poll(ms(1100), false), Some(Task::Fill));
        s.fill_finished(ms(1500), true);
        // Later changes fill at once: the cluster has settled.
        s.placement_changed();
        assert_eq!(s.next_deadline(), Duration::ZERO);
        assert_eq!(s.poll(ms(1600), false), Some(Task::Fill));
    }

    #[test]
    fn a_node_alone_at_first_settles_when_others_appear() {
        let mut s = FillSchedule::new(AE, 1);
        assert_eq!(s.poll(ms(0), true), Some(Task::Fill));
        s.fill_finished(ms(10), true);
        s.placement_changed();
        assert_eq!(s.poll(ms(20), false), None);
        assert_eq!(s.next_deadline(), ms(20) + FillSchedule::SETTLE);
    }

    #[test]
    fn an_incomplete_pass_is_retried_after_a_second_or_at_a_change() {
        let mut s = FillSchedule::new(AE, 1);
        assert_eq!(s.poll(ms(0), true), Some(Task::Fill));
        s.fill_finished(ms(200), false);
        assert_eq!(s.next_deadline(), ms(200) + FillSchedule::RETRY);
        assert_eq!(s.poll(ms(1199), true), None);
        assert_eq!(s.poll(ms(1200), true), Some(Task::Fill));
        s.fill_finished(ms(1300), false);
        s.placement_changed();
        assert_eq!(s.poll(ms(1301), true), Some(Task::Fill));
    }

    #[test]
    fn anti_entropy_rounds_follow_a_fill_with_jitter() {
        let mut s = filled_at(ms(0));
        let mut at = Duration::ZERO;
        for _ in 0..100 {
            let due = s.next_deadline();
            assert!(due >= at + AE.mul_f64(0.75) && due < at + AE.mul_f64(1.25));
            assert_eq!(s.poll(due - ms(1), true), None);
            assert_eq!(s.poll(due, true), Some(Task::AntiEntropy));
            assert_eq!(s.next_deadline(), Duration::MAX);
            at = due + ms(50);
            s.anti_entropy_finished(at);
        }
    }

    #[test]
    fn jitter_is_seeded() {
        let (a, b, c) = (filled_at(ms(0)), filled_at(ms(0)), {
            let mut s = FillSchedule::new(AE, 8);
            s.poll(ms(0), true);
            s.fill_finished(ms(0), true);
            s
        });
        assert_eq!(a.next_deadline(), b.next_deadline());
        assert_ne!(a.next_deadline(), c.next_deadline());
    }

    #[test]
    fn a_sweep_that_left_recent_entries_runs_again_between_rounds() {
        let mut s = filled_at(ms(0));
        let round = s.next_deadline();
        assert!(round > FillSchedule::SWEEP_AGAIN, "a round is {round:?} away");
        // The sweep after the pass left entries too recent to drop.
        s.sweep_finished(ms(0), true);
        assert_eq!(s.next_deadline(), FillSchedule::SWEEP_AGAIN);
        assert_eq!(s.poll(FillSchedule::SWEEP_AGAIN - ms(1), true), None);
        assert_eq!(s.poll(FillSchedule::SWEEP_AGAIN, true), Some(Task::Sweep));
        // The round is still due when it was.
        assert_eq!(s.next_deadline(), round);
        s.sweep_finished(FillSchedule::SWEEP_AGAIN, false);
        assert_eq!(s.next_deadline(), round);
        assert_eq!(s.poll(round, true), Some(Task::AntiEntropy));
        // Not while a pass is retried (a complete one ends in a sweep).
        let mut s = FillSchedule::new(AE, 7);
        assert_eq!(s.poll(ms(0), true), Some(Task::Fill));
        s.sweep_finished(ms(0), true);
        let retry_at = FillSchedule::SWEEP_AGAIN - ms(500);
        s.fill_finished(retry_at, false);
        assert_eq!(s.poll(FillSchedule::SWEEP_AGAIN, true), None);
        assert_eq!(s.next_deadline(), retry_at + FillSchedule::RETRY);
    }

    #[test]
    fn a_change_ends_the_anti_entropy_wait() {
        let mut s = filled_at(ms(0));
        s.placement_changed();
        assert_eq!(s.next_deadline(), Duration::ZERO);
        assert_eq!(s.poll(ms(1), true), Some(Task::Fill));
    }

    #[test]
    fn a_change_during_a_pass_or_round_fills_again_after_it() {
        // During a complete pass: no anti-entropy wait, but the jitter is
        // still drawn, as it is without the change.
        let mut changed = FillSchedule::new(AE, 3);
        let mut quiet = FillSchedule::new(AE, 3);
        for s in [&mut changed, &mut quiet] {
            assert_eq!(s.poll(ms(0), true), Some(Task::Fill));
        }
        changed.placement_changed();
        changed.fill_finished(ms(10), true);
        quiet.fill_finished(ms(10), true);
        assert_eq!(changed.poll(ms(10), true), Some(Task::Fill));
        changed.fill_finished(ms(20), true);
        let due = quiet.next_deadline();
        assert_eq!(quiet.poll(due, true), Some(Task::AntiEntropy));
        quiet.anti_entropy_finished(due);
        assert_eq!(
            changed.next_deadline() - ms(20),
            quiet.next_deadline() - due,
            "both drew their second jitter"
        );

        // During an incomplete pass: no retry wait.
        let mut s = FillSchedule::new(AE, 3);
        s.poll(ms(0), true);
        s.placement_changed();
        s.fill_finished(ms(10), false);
        assert_eq!(s.poll(ms(10), true), Some(Task::Fill));

        // During an anti-entropy round.
        let mut s = filled_at(ms(0));
        let due = s.next_deadline();
        assert_eq!(s.poll(due, true), Some(Task::AntiEntropy));
        s.placement_changed();
        s.anti_entropy_finished(due + ms(5));
        assert_eq!(s.next_deadline(), Duration::ZERO);
        assert_eq!(s.poll(due + ms(5), true), Some(Task::Fill));
        // The change is spent: the next pass ends in a round, not a fill.
        s.fill_finished(due + ms(6), true);
        assert!(s.next_deadline() > due + ms(6));
    }
}
