//! Ring states: this node's own transitions (joining → normal → leaving →
//! left), the ring members derived from the table, and the removal and
//! forgetting of members that stay down or gone.
//!
//! Liveness is not placement: a down member keeps its ring slots until it
//! has been down for [`SwimConfig::remove_after`], and only a node that
//! reaches a strict majority of the ring's members removes others, so the
//! minority side of a partition never shrinks its ring.
//!
//! [`SwimConfig::remove_after`]: crate::membership::SwimConfig::remove_after

use std::collections::BTreeMap;
use std::time::Duration;

use super::{MemberEvent, Output, Swim};
use crate::id::NodeId;
use crate::membership::member::{Liveness, RingState};
use crate::membership::wire::{Message, Update};

/// Who holds ring slots, as of one version. The replication layer builds
/// its rings from this.
///
/// - `placement`: the designated owners: normal and leaving members
///   (down or not, until removed), and restarts refilling their slots.
/// - `future`: who owns once pending changes finish: placement minus
///   leaving members, plus joining ones. Writes go to the owners in both.
/// - Reads are served only by members for which [`Member::serves_reads`]
///   holds.
///
/// [`Member::serves_reads`]: crate::membership::Member::serves_reads
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RingMembers {
    /// Increases whenever either set changes.
    pub version: u64,
    /// Designated owners, sorted.
    pub placement: Vec<NodeId>,
    /// Owners after pending joins and leaves, sorted.
    pub future: Vec<NodeId>,
}

impl Swim {
    /// This node's ranges are filled: joining → normal.
    pub fn mark_filled(&mut self, now: Duration) {
        if self.me.ring == RingState::Joining {
            self.set_own_ring(now, RingState::Normal);
        }
    }

    /// Announces that this node is handing its ranges over (normal →
    /// leaving). It still owns them until [`Swim::leave`].
    pub fn start_leaving(&mut self, now: Duration) {
        if matches!(self.me.ring, RingState::Normal | RingState::Joining) {
            self.set_own_ring(now, RingState::Leaving);
        }
    }

    /// Leaves the cluster: the node is recorded as left (not failed) and
    /// the news is sent straight to up to eight reachable members, besides
    /// riding on any packet sent after. Stop the node once the outputs are
    /// sent.
    pub fn leave(&mut self, now: Duration) {
        if self.me.liveness == Liveness::Left {
            return;
        }
        self.now = self.now.max(now);
        let previous = self.me.clone();
        self.me.incarnation = self.me.incarnation.saturating_add(1);
        self.me.liveness = Liveness::Left;
        self.me.ring = RingState::Left;
        self.me.since = now;
        self.changed(Some(previous), self.me.clone());
        self.ring_dirty = true;
        let mut targets: Vec<String> = self
            .members
            .values()
            .filter(|e| e.member.liveness.is_reachable())
            .map(|e| e.member.identity.addr.clone())
            .collect();
        self.shuffle(&mut targets);
        targets.truncate(8);
        let me = Update::of(&self.me);
        for to in targets {
            self.send_raw(
                to,
                Message::PushPull {
                    members: vec![me.clone()],
                    reply: false,
                },
                Vec::new(),
            );
        }
        self.refresh_ring();
    }

    /// Moves this node's own ring state on and gossips it under a new
    /// incarnation.
    fn set_own_ring(&mut self, now: Duration, ring: RingState) {
        self.now = self.now.max(now);
        let previous = self.me.clone();
        self.me.incarnation = self.me.incarnation.saturating_add(1);
        self.me.ring = ring;
        if ring != RingState::Joining {
            self.me.holds_slots = false;
        }
        self.me.since = now;
        self.ring_dirty = true;
        self.broadcasts.push(Update::of(&self.me));
        self.changed(Some(previous), self.me.clone());
        self.refresh_ring();
    }

    /// Recomputes [`RingMembers`] after a change that may move it, and
    /// announces a new version if either set changed.
    pub(super) fn refresh_ring(&mut self) {
        if !self.ring_dirty {
            return;
        }
        self.ring_dirty = false;
        let mut placement = Vec::new();
        let mut future = Vec::new();
        for m in self.members() {
            if m.in_placement() {
                placement.push(m.id());
            }
            if m.in_future_placement() {
                future.push(m.id());
            }
        }
        placement.sort();
        future.sort();
        if placement != self.ring.placement {
            self.held_ring(&placement);
        }
        if placement != self.ring.placement || future != self.ring.future || self.ring.version == 0
        {
            self.ring.version += 1;
            self.ring.placement = placement;
            self.ring.future = future;
            self.outputs
                .push_back(Output::Event(MemberEvent::RingChanged {
                    version: self.ring.version,
                }));
        }
    }

    /// Whether this node reaches a strict majority of the ring's members
    /// (itself included when it is one), so it may remove members.
    fn can_remove(&self) -> bool {
        let mut total = 0usize;
        let mut reachable = 0usize;
        if self.me.in_placement() {
            total += 1;
            reachable += 1;
        }
        for e in self.members.values() {
            if e.member.in_placement() {
                total += 1;
                if e.member.liveness == Liveness::Alive {
                    reachable += 1;
                }
            }
        }
        total > 0 && reachable * 2 > total
    }

    /// Notes, per datacenter, whether a member is alive and since when.
    fn note_datacenters(&mut self, now: Duration) {
        // A datacenter none of whose members is alive is cut off or lost,
        // not failing member by member: its members keep their slots much
        // longer (see `SwimConfig::datacenter_remove_after`). Once one is
        // alive again, the others' time down counts from then: a datacenter
        // coming back node by node does not lose the slower ones.
        let mut alive: BTreeMap<&str, bool> = BTreeMap::new();
        alive.insert(&self.me.identity.datacenter, true);
        for e in self.members.values() {
            let here = alive.entry(&e.member.identity.datacenter).or_default();
            *here |= e.member.liveness == Liveness::Alive;
        }
        let mut datacenters = BTreeMap::new();
        for (dc, up) in alive {
            let since = match self.datacenters.get(dc) {
                Some((was, since)) if *was == up => *since,
                // First seen: up since the start.
                None if up => Duration::ZERO,
                _ => now,
            };
            datacenters.insert(dc.to_owned(), (up, since));
        }
        self.datacenters = datacenters;
    }

    /// Members down for [`SwimConfig::remove_after`] leave the ring, if
    /// this node may remove them. With signed membership this node's
    /// removal is a signed vote, applied once a majority voted.
    ///
    /// [`SwimConfig::remove_after`]: crate::membership::SwimConfig::remove_after
    pub(super) fn remove_long_down(&mut self, now: Duration) {
        self.note_datacenters(now);
        if !self.can_remove() {
            return;
        }
        let after = |e: &super::Entry| match self.datacenters.get(&e.member.identity.datacenter) {
            Some((true, back)) => {
                let down_for = now.saturating_sub(e.member.since.max(*back));
                down_for >= self.config.remove_after
            }
            _ => now.saturating_sub(e.member.since) >= self.config.datacenter_remove_after,
        };
        let long_down: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, e)| {
                e.member.liveness == Liveness::Down
                    && e.member.ring != RingState::Removed
                    && after(e)
                    && !self.voted(e.member.identity.id, e.member.identity.generation)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in long_down {
            let mut update = Update::of(&self.members[&id].member);
            update.ring = RingState::Removed;
            update.holds_slots = false;
            tracing::info!(node = %self.me.identity.id, removed = %id, "down too long; removed from the ring");
            self.merge(now, update);
        }
    }

    /// Left and removed members are dropped after
    /// [`SwimConfig::forget_after`].
    ///
    /// [`SwimConfig::forget_after`]: crate::membership::SwimConfig::forget_after
    pub(super) fn forget(&mut self, now: Duration) {
        let forget_after = self.config.forget_after;
        let forgotten: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, e)| {
                e.final_since
                    .is_some_and(|t| now.saturating_sub(t) >= forget_after)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in forgotten {
            self.members.remove(&id);
            self.clock.forget(&id);
            self.forget_votes(id);
            self.outputs
                .push_back(Output::Event(MemberEvent::Forgotten { id }));
        }
    }
}
