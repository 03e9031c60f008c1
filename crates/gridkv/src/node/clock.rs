//! The node's clock against the cluster's: what the membership driver
//! does with the clock monitor's view (correct the HLC, fence writes off,
//! lift a restart's write barrier), what [`GridKv::clock`] reports, and
//! the checks a write passes so that a node whose clock is far behind
//! stamps no tombstone already past its grace period and no value already
//! expired on arrival.
//!
//! The rules, in order of strength:
//!
//! - With a strict majority of the members sampled, the node stamps in
//!   the cluster's time (its wall clock minus its offset from their
//!   median), and compares remote timestamps against it.
//! - Beyond the bound from that median (over several samples, net of
//!   their uncertainty), it coordinates no write ([`Error::ClockOffset`]);
//!   it still serves reads and stores what others coordinate, stays alive
//!   in membership, and is not ready ([`GridKv::is_ready`]).
//! - Without such a majority nobody is fenced; but a node that knows a
//!   member it reaches is ahead of it by more than the bound refuses the
//!   writes that would be wrong there: a delete whose tombstone would live
//!   less than half its grace period on that member, a value whose TTL
//!   would be over on arrival ([`Error::ClockDrift`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::GridKv;
use crate::hlc::{Clock, Hlc};
use crate::membership::clock::ClockView;
use crate::replication::clock_gate::ClockGate;
use crate::replication::{Error, WriteData};

/// How often the driver re-reads the clock monitor's view.
pub(super) const CHECK_EVERY: Duration = Duration::from_millis(100);

/// A wall clock that moved this much more (or less) than monotonic time
/// between two checks was stepped (an operator, or NTP, set it).
pub(super) const STEP: i64 = 500;

/// What [`GridKv::clock`] reports: this node's clock against the
/// cluster's, and whether it holds writes.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let node = gridkv::GridKv::start(gridkv::GridKv::builder("c1").build()?).await?;
/// node.ready().await?;
/// let clock = node.clock();
/// assert!(!clock.fenced);
/// assert_eq!(clock.bound_ms, 5_000);
/// assert_eq!(clock.members, 1); // alone: nothing to compare with
/// node.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClockStatus {
    /// This node's offset from the median of the members it reaches, in
    /// ms (positive: ahead); `None` without a strict majority measured.
    pub offset_ms: Option<i64>,
    /// The uncertainty of `offset_ms` (half a round trip).
    pub uncertainty_ms: u64,
    /// At least how far this node is from the median, over several
    /// samples net of their uncertainty: what the bound is checked
    /// against. `None` until a majority has been sampled often enough.
    pub distance_ms: Option<u64>,
    /// The bound ([`ConfigBuilder::max_clock_offset`](super::ConfigBuilder::max_clock_offset)).
    pub bound_ms: u64,
    /// Beyond the bound: this node coordinates no write.
    pub fenced: bool,
    /// Members whose clocks count (this node, and every member neither
    /// left nor removed).
    pub members: usize,
    /// Of those, how many the estimate rests on.
    pub sampled: usize,
    /// While this restarted node's write barrier holds: how long it has
    /// left at most.
    pub restart_barrier: Option<Duration>,
}

/// The clock state the driver publishes for data calls and reports.
#[derive(Debug, Default)]
pub(super) struct NodeClock {
    pub(super) view: Mutex<ClockView>,
    /// How far, at least, a member this node reaches is ahead of the
    /// clock it stamps with, when no majority corrects it (else 0).
    pub(super) behind_ms: AtomicU64,
}

impl GridKv {
    /// This node's clock against the cluster's: its offset from the
    /// median of the members it reaches, measured on membership round
    /// trips, whether that is beyond the bound (the node then coordinates
    /// no write; [`Error::ClockOffset`]), and whether a restart's write
    /// barrier holds ([`Error::RestartBarrier`]).
    pub fn clock(&self) -> ClockStatus {
        let view = *self.inner.clock.view.lock();
        let gate = &self.inner.coordinator.clock_gate;
        ClockStatus {
            offset_ms: view.offset_ms,
            uncertainty_ms: view.uncertainty_ms,
            distance_ms: view.distance_ms,
            bound_ms: self.inner.coordinator.replica.hlc.max_drift_ms(),
            fenced: gate.fenced().is_some(),
            members: view.members.max(1),
            sampled: view.sampled.max(1),
            restart_barrier: gate.barrier_left(),
        }
    }

    /// Refuses a write this node must not stamp because a member it
    /// reaches is far ahead of its clock and no majority says which of
    /// them is right (see the module docs).
    pub(super) fn check_stamp(&self, data: &WriteData) -> Result<(), Error> {
        let behind = self.inner.clock.behind_ms.load(Ordering::Relaxed);
        if behind == 0 {
            return Ok(());
        }
        let grace = self.inner.coordinator.replica.store.config().tombstone_grace;
        let grace = grace.as_millis() as u64;
        let hlc = &self.inner.coordinator.replica.hlc;
        match data {
            None if behind >= grace / 2 => Err(Error::ClockDrift(format!(
                "a member's clock is at least {behind} ms ahead of this node's, and no \
                 majority of the members says which is right: a delete's tombstone would be \
                 collected there {} ms after it arrived instead of the {grace} ms grace period; \
                 not written",
                grace.saturating_sub(behind)
            ))),
            Some((_, Some(expires_at))) if *expires_at <= hlc.cluster_ms() + behind => {
                Err(self.expired_on_arrival(behind))
            }
            _ => Ok(()),
        }
    }

    /// Refuses an expiry at `expires_at` that a member far ahead would
    /// find past on arrival (see [`GridKv::check_stamp`]).
    pub(super) fn check_expiry(&self, expires_at: u64) -> Result<(), Error> {
        let behind = self.inner.clock.behind_ms.load(Ordering::Relaxed);
        if behind != 0 && expires_at <= self.inner.coordinator.replica.hlc.cluster_ms() + behind {
            return Err(self.expired_on_arrival(behind));
        }
        Ok(())
    }

    fn expired_on_arrival(&self, behind: u64) -> Error {
        Error::ClockDrift(format!(
            "a member's clock is at least {behind} ms ahead of this node's, and no majority \
             of the members says which is right: the value would have expired on arrival \
             there; not written"
        ))
    }
}

/// The membership driver's side: it tells the state machine its clocks
/// before every packet and timer, and acts on the monitor's view.
pub(super) struct ClockKeeper {
    /// The local wall clock, uncorrected: what the monitor measures.
    pub(super) wall: Arc<dyn Clock>,
    pub(super) hlc: Arc<Hlc>,
    pub(super) gate: Arc<ClockGate>,
    /// When the view was last read, and the wall clock then.
    pub(super) checked: Option<(Duration, u64)>,
}

