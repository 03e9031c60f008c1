//! Hint delivery: the task that offers the hints this node keeps (writes
//! for owners that were unreachable, see `hints`) to their owners, which
//! takes them once they are back, and drops those that can no longer be
//! delivered (expired, or kept for an owner that left the ring).

use std::sync::Weak;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::stats::Counters;
use super::{Coordinator, Placement};
use crate::id::NodeId;
use crate::membership::Liveness;

/// How often waiting hints are offered to owners that are back.
const INTERVAL: Duration = Duration::from_millis(500);

/// How long an owner must have been out of the ring, as every round saw
/// it, before its hints are dropped (see [`Hints::sweep`]): with
/// [`INTERVAL`], they go within about 2.5 s of this node learning that the
/// owner left, was removed or was forgotten.
///
/// [`Hints::sweep`]: super::hints::Hints::sweep
pub(crate) const DEPARTED_GRACE: Duration = Duration::from_secs(2);

/// Starts the task that, every [`INTERVAL`], drops `coordinator`'s hints
/// that can no longer be delivered ([`drop_undeliverable`]) and delivers
/// the rest to owners that are back, until `cancel` fires or the
/// coordinator is dropped (it holds no strong reference between rounds, so
/// it does not keep the node alive).
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
            drop_undeliverable(&coordinator);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = coordinator.deliver_hints() => {}
            }
        }
    })
}

/// Drops `coordinator`'s expired hints and those of owners out of the ring
/// for [`DEPARTED_GRACE`], counted in `hints_dropped`. Returns how many.
pub(crate) fn drop_undeliverable(coordinator: &Coordinator) -> usize {
    let placement = coordinator.placement.load();
    let dropped = coordinator
        .hints
        .sweep(|owner| in_ring(&placement, owner), DEPARTED_GRACE);
    Counters::add(&coordinator.counters.hints_dropped, dropped as u64);
    dropped
}

/// Whether `owner` can still take hints: a member of `placement` that has
/// not left and is not removed (down or suspect members are still in the
/// ring; so is a restart of a member, joining under a later generation).
pub(crate) fn in_ring(placement: &Placement, owner: &NodeId) -> bool {
    placement
        .members
        .get(owner)
        .is_some_and(|m| m.liveness != Liveness::Left && m.ring.receives_writes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Generation;
    use crate::membership::{Identity, Member, RingState};

    fn member(name: &str, generation: u64, liveness: Liveness, ring: RingState) -> Member {
        let id = NodeId::new(name).unwrap();
        Member {
            liveness,
            ring,
            ..Member::new(Identity::new(id, Generation::new(generation), "h:1"))
        }
    }

    /// Which owners keep their hints: members that may still take them,
    /// down or not; not those that left, were removed or were forgotten.
    #[test]
    fn owners_down_or_restarted_are_in_the_ring_and_departed_ones_are_not() {
        let mut p = Placement::empty();
        let mut restarted = member("restarted", 2, Liveness::Alive, RingState::Joining);
        restarted.holds_slots = true;
        let members = [
            member("down", 1, Liveness::Down, RingState::Normal),
            member("suspect", 1, Liveness::Suspect, RingState::Normal),
            member("leaving", 1, Liveness::Alive, RingState::Leaving),
            member("joining", 1, Liveness::Down, RingState::Joining),
            restarted,
            member("left", 1, Liveness::Left, RingState::Left),
            member("left-mid-handoff", 1, Liveness::Left, RingState::Leaving),
            member("removed", 1, Liveness::Down, RingState::Removed),
        ];
        for m in members {
            p.members.insert(m.id(), m);
        }
        let kept: Vec<&str> = [
            "down",
            "suspect",
            "leaving",
            "joining",
            "restarted",
            "left",
            "left-mid-handoff",
            "removed",
            "forgotten",
        ]
        .into_iter()
        .filter(|name| in_ring(&p, &NodeId::new(name).unwrap()))
        .collect();
        assert_eq!(kept, ["down", "suspect", "leaving", "joining", "restarted"]);
    }
}
