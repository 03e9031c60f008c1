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

use super::driver::Driver;
use super::GridKv;
use crate::hlc::{Clock, Hlc, Timestamp};
use crate::membership::clock::ClockView;
use crate::membership::wire::ClockReading;
use crate::replication::clock_gate::{ClockGate, Fence};
use crate::replication::{Error, WriteData};

/// How often the driver re-reads the clock monitor's view.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// A wall clock that moved this much more (or less) than monotonic time
/// between two checks was stepped (an operator, or NTP, set it).
const STEP: i64 = 500;

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
    view: Mutex<ClockView>,
    /// How far, at least, a member this node reaches is ahead of the
    /// clock it stamps with, when no majority corrects it (else 0).
    behind_ms: AtomicU64,
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

impl Driver {
    /// Tells the state machine this node's clocks now. It vouches for its
    /// HLC only once it has joined and no restart barrier holds (until
    /// then its clock may be behind what its previous run handed out).
    pub(super) fn observe_clock(&mut self) {
        let k = &self.clock;
        let vouches = self.swim.is_joined() && k.gate.barrier_left().is_none();
        let hlc = if vouches { k.hlc.floor().as_u64() } else { 0 };
        let reading = ClockReading {
            wall_ms: k.wall.now_ms(),
            hlc,
        };
        self.swim.observe_clock(reading);
    }

    /// Acts on the clock monitor's view at most every [`CHECK_EVERY`]:
    /// corrects the HLC to the cluster's time, fences writes off or lets
    /// them through, and lifts a restart's barrier once every member has
    /// vouched for its clock.
    pub(super) fn check_clock(&mut self, shared: &super::Inner) {
        let now = self.now();
        if self.clock.checked.is_some_and(|(t, _)| now < t + CHECK_EVERY) {
            return;
        }
        let wall = self.clock.wall.now_ms();
        if let Some((then, wall_then)) = self.clock.checked {
            let step = (wall as i64 - wall_then as i64) - (now - then).as_millis() as i64;
            if step.abs() > STEP {
                self.clock_stepped(shared, step);
            }
        }
        self.clock.checked = Some((now, wall));
        let k = &self.clock;
        let bound = k.hlc.max_drift_ms();
        let view = self.swim.clock_view(now, bound);
        if let Some(offset) = view.offset_ms {
            k.hlc.set_offset(offset);
        }
        let fence = view.beyond.then(|| {
            let distance = view.distance_ms.unwrap_or(0);
            let signed = if view.ahead {
                distance as i64
            } else {
                -(distance as i64)
            };
            Fence {
                offset_ms: view.offset_ms.unwrap_or(signed),
                distance_ms: distance,
                bound_ms: bound,
            }
        });
        if k.gate.set_fence(fence) {
            match fence {
                Some(f) => tracing::warn!(
                    node = %shared.id,
                    offset_ms = f.offset_ms,
                    distance_ms = f.distance_ms,
                    bound_ms = bound,
                    sampled = view.sampled,
                    members = view.members,
                    "clock beyond the bound from the cluster's median: this node coordinates no \
                     writes until its clock is back (it still serves reads and stores replicas)"
                ),
                None => tracing::info!(
                    node = %shared.id,
                    offset_ms = ?view.offset_ms,
                    "clock back within the bound from the cluster's median: coordinating writes"
                ),
            }
        }
        let behind = if view.offset_ms.is_some() {
            0
        } else {
            // Lower bounds against the raw wall clock, turned into ones
            // against the clock this node stamps with.
            (view.lead_ms as i64).saturating_add(k.hlc.offset_ms()).max(0) as u64
        };
        let behind = if behind > bound { behind } else { 0 };
        shared.clock.behind_ms.store(behind, Ordering::Relaxed);
        *shared.clock.view.lock() = view;
        if let Some(left) = k.gate.barrier_left() {
            if let Some(floor) = self.swim.clock_floor() {
                if k.hlc.update(Timestamp::from_u64(floor)).is_ok() && k.gate.release_barrier() {
                    tracing::info!(
                        node = %shared.id,
                        members = view.members,
                        left_ms = left.as_millis() as u64,
                        "restart write barrier lifted: every member told this node its clock"
                    );
                }
            }
        }
    }

    /// The wall clock stepped by `step_ms`: the cluster's time did not.
    /// The node's offset moves by the step (so it stamps on, in the
    /// cluster's time, without a jump), and so does every measurement
    /// taken against the old reading: a node whose clock was an hour off
    /// and is fixed coordinates writes again at once, one whose clock has
    /// just jumped is fenced at once, rather than a few probe rounds
    /// later (stamping an hour off meanwhile).
    fn clock_stepped(&mut self, shared: &super::Inner, step_ms: i64) {
        tracing::warn!(node = %shared.id, step_ms, "the wall clock stepped");
        let hlc = &self.clock.hlc;
        hlc.set_offset(hlc.offset_ms().saturating_add(step_ms));
        self.swim.shift_clock(step_ms);
    }

    /// Holds writes after a restart until the drift bound has passed since
    /// the node started, unless every member vouches for its clock first.
    pub(super) fn hold_restart_writes(&self, shared: &super::Inner) {
        let bound = Duration::from_millis(self.clock.hlc.max_drift_ms());
        let until = self.origin + bound;
        tracing::info!(
            node = %shared.id,
            at_most_ms = until
                .saturating_duration_since(tokio::time::Instant::now())
                .as_millis() as u64,
            "restart of a known node: writes wait until its clock passes the previous run's, \
             learned from every member as it joins (or the drift bound since it started)"
        );
        self.clock.gate.hold_until(until);
    }
}
