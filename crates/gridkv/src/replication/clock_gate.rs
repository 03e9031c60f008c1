//! Whether this node stamps writes now: the clock checks every write it
//! coordinates passes before it takes a version.
//!
//! Two things hold writes (reads, and this node's work as a replica, go
//! on regardless):
//!
//! - **The restart barrier.** A restarted node's clock may be behind
//!   versions its previous run stamped (that run's clock could have been
//!   pulled up to the drift bound ahead of the cluster's by faster
//!   peers). Its writes wait until its clock is past them: the node
//!   learns the cluster's clock from every member as it joins (each
//!   membership packet carries the sender's HLC), or, when a member is
//!   down and could hold a version nobody else merged, until the drift
//!   bound has passed since it started. A write that cannot wait that
//!   long within its deadline fails with [`Error::RestartBarrier`] naming
//!   how long is left.
//! - **The clock fence.** The clock monitor found this node's clock
//!   further from the median of the members it reaches than the bound
//!   (see `membership::clock`): it coordinates no write until its clock
//!   is back, and each one fails with [`Error::ClockOffset`] naming the
//!   offset.
//!
//! Once neither holds, the check is one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Error;
use crate::hlc::Hlc;

/// This node's clock is beyond the bound from the cluster's median.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fence {
    /// Its offset from the median, ms (positive: ahead).
    pub(crate) offset_ms: i64,
    /// At least how far it is, given the samples' uncertainty.
    pub(crate) distance_ms: u64,
    /// The bound.
    pub(crate) bound_ms: u64,
}

/// What holds writes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Holds {
    /// The restart barrier: writes wait until then, unless released first.
    barrier: Option<Instant>,
    fence: Option<Fence>,
}

/// The clock checks a write passes before it is stamped; shared by the
/// coordinator (which waits on it) and the membership driver (which sets
/// and lifts what holds writes).
#[derive(Debug)]
pub(crate) struct ClockGate {
    /// Set while nothing holds writes: the fast path.
    open: AtomicBool,
    holds: watch::Sender<Holds>,
    /// Moved past the barrier when it is passed, so that a wall clock
    /// stepping back later still stamps above it.
    hlc: Arc<Hlc>,
}

impl ClockGate {
    /// A gate that holds nothing, for a node stamping with `hlc`.
    pub(crate) fn new(hlc: Arc<Hlc>) -> Self {
        Self {
            open: AtomicBool::new(true),
            holds: watch::Sender::new(Holds::default()),
            hlc,
        }
    }

    fn update(&self, change: impl FnOnce(&mut Holds) -> bool) -> bool {
        let changed = self.holds.send_if_modified(|h| change(h));
        let holds = *self.holds.borrow();
        self.open.store(
            holds.barrier.is_none() && holds.fence.is_none(),
            Ordering::Release,
        );
        changed
    }

    /// Holds writes until `until` (the restart barrier), unless
    /// [`ClockGate::release_barrier`] comes first.
    pub(crate) fn hold_until(&self, until: Instant) {
        self.update(|h| {
            let later = h.barrier.is_none_or(|b| b < until);
            if later {
                h.barrier = Some(until);
            }
            later
        });
    }

    /// Lifts the restart barrier (the node's clock is past every version
    /// its previous run may have stamped). Returns whether one was held.
    pub(crate) fn release_barrier(&self) -> bool {
        let released = self.update(|h| h.barrier.take().is_some());
        if released {
            // Pin the clock at the cluster's time now, past the barrier.
            let _ = self.hlc.now();
        }
        released
    }

    /// How long the restart barrier has left, if one holds writes.
    pub(crate) fn barrier_left(&self) -> Option<Duration> {
        self.holds
            .borrow()
            .barrier
            .map(|until| until.saturating_duration_since(Instant::now()))
    }

    /// Fences writes off (`Some`) or lets them through again (`None`).
    /// Returns whether that changed anything.
    pub(crate) fn set_fence(&self, fence: Option<Fence>) -> bool {
        self.update(|h| {
            let changed = h.fence.is_some() != fence.is_some();
            h.fence = fence;
            changed
        })
    }

    /// Whether the clock fence holds writes.
    pub(crate) fn fenced(&self) -> Option<Fence> {
        self.holds.borrow().fence
    }

    /// Waits until nothing holds writes, for at most `budget`.
    ///
    /// # Errors
    ///
    /// [`Error::ClockOffset`] while fenced; [`Error::RestartBarrier`] if
    /// the barrier outlasts `budget` (at once: waiting would not help).
    pub(crate) async fn pass(&self, budget: Duration) -> Result<(), Error> {
        if self.open.load(Ordering::Acquire) {
            return Ok(());
        }
        let give_up = Instant::now() + budget;
        let mut holds = self.holds.subscribe();
        loop {
            let now = *holds.borrow_and_update();
            if let Some(f) = now.fence {
                return Err(Error::ClockOffset {
                    offset_ms: f.offset_ms,
                    distance_ms: f.distance_ms,
                    bound_ms: f.bound_ms,
                });
            }
            let Some(until) = now.barrier else {
                return Ok(());
            };
            if Instant::now() >= until {
                self.release_barrier();
                continue;
            }
            if until > give_up {
                let left = until.saturating_duration_since(Instant::now());
                return Err(Error::RestartBarrier {
                    remaining_ms: left.as_millis().max(1) as u64,
                });
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                changed = holds.changed() => {
                    if changed.is_err() {
                        return Err(Error::ShuttingDown);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::ManualClock;
    use crate::id::{Generation, NodeId};

    fn gate() -> ClockGate {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let hlc = Hlc::new(NodeId::new("g").unwrap(), Generation::new(1), clock);
        ClockGate::new(Arc::new(hlc))
    }

    #[tokio::test(start_paused = true)]
    async fn the_barrier_fails_fast_beyond_the_budget_and_waits_within_it() {
        let gate = gate();
        gate.hold_until(Instant::now() + Duration::from_secs(5));
        let e = gate.pass(Duration::from_secs(2)).await.unwrap_err();
        assert!(
            matches!(e, Error::RestartBarrier { remaining_ms } if (4_900..=5_000).contains(&remaining_ms)),
            "{e:?}"
        );
        tokio::time::advance(Duration::from_millis(3_500)).await;
        let started = Instant::now();
        gate.pass(Duration::from_secs(2)).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(1_400));
        assert_eq!(gate.barrier_left(), None);
        // Once passed, it is the fast path.
        assert!(gate.open.load(Ordering::Acquire));
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_barrier_lets_waiting_writes_through() {
        let gate = Arc::new(gate());
        gate.hold_until(Instant::now() + Duration::from_secs(1));
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pass(Duration::from_secs(2)).await }
        });
        tokio::task::yield_now().await;
        assert!(gate.release_barrier());
        assert!(!gate.release_barrier());
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_fence_refuses_until_lifted() {
        let gate = gate();
        let fence = Fence {
            offset_ms: 3_600_000,
            distance_ms: 3_599_990,
            bound_ms: 5_000,
        };
        assert!(gate.set_fence(Some(fence)));
        assert!(!gate.set_fence(Some(fence)));
        let e = gate.pass(Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(
            e,
            Error::ClockOffset {
                offset_ms: 3_600_000,
                distance_ms: 3_599_990,
                bound_ms: 5_000
            }
        );
        assert!(e.to_string().contains("+3600000 ms"), "{e}");
        assert!(gate.set_fence(None));
        gate.pass(Duration::from_secs(1)).await.unwrap();
    }
}
