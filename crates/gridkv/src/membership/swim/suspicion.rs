//! Suspicion: marking members suspect, counting independent confirmations,
//! timing suspicions out to down, and refuting suspicions of this node.
//!
//! Suspicion timeouts follow Lifeguard: they start at
//! [`SwimConfig::suspicion_max`] and shrink towards
//! [`SwimConfig::suspicion_min`] as distinct members confirm, scaled by the
//! table size and this node's local health. A node that hears itself
//! suspected refutes by raising its incarnation, and raises its local
//! health too: being suspected suggests it is the slow one.
//!
//! [`SwimConfig::suspicion_max`]: crate::membership::SwimConfig::suspicion_max
//! [`SwimConfig::suspicion_min`]: crate::membership::SwimConfig::suspicion_min

use std::collections::BTreeSet;
use std::time::Duration;

use super::Swim;
use crate::id::{Generation, NodeId};
use crate::membership::member::{Liveness, RingState};
use crate::membership::signed::ClaimKind;
use crate::membership::wire::Update;

/// This node's timer for one suspicion of one member.
#[derive(Debug)]
pub(super) struct Suspicion {
    /// The incarnation suspected; news of a later one ends the suspicion.
    incarnation: u64,
    start: Duration,
    /// The timeout bounds, fixed when the suspicion starts.
    min: Duration,
    max: Duration,
    /// The first suspector and every distinct confirmer.
    suspectors: BTreeSet<NodeId>,
}

impl Suspicion {
    /// When the suspicion times out: `max` after its start with no
    /// confirmation, shrinking logarithmically to `min` at `needed`
    /// confirmations (Lifeguard).
    fn deadline(&self, needed: usize) -> Duration {
        let confirmations = self.suspectors.len().saturating_sub(1);
        let frac = ((confirmations + 1) as f64).ln() / ((needed + 1) as f64).ln();
        let span = self.max.saturating_sub(self.min).as_secs_f64() * frac.min(1.0);
        let timeout = self
            .max
            .saturating_sub(Duration::from_secs_f64(span))
            .max(self.min);
        self.start + timeout
    }
}

impl Swim {
    /// News about this node itself: refute anything but "alive" by raising
    /// the incarnation.
    pub(super) fn merge_own(&mut self, update: Update) {
        if update.identity.generation != self.me.identity.generation {
            self.step_past_previous_run(&update);
            return;
        }
        if self.me.liveness == Liveness::Left {
            return;
        }
        // A removal is refuted whatever its incarnation unless we already
        // came back as a joiner: a node that raised its incarnation while
        // away (refuting a suspicion it found queued) must still learn that
        // the majority took it off the ring.
        let removed = update.ring == RingState::Removed
            && (update.incarnation >= self.me.incarnation || self.me.ring != RingState::Joining);
        let refutes = removed
            || (update.incarnation >= self.me.incarnation && update.liveness != Liveness::Alive);
        if refutes {
            let previous = self.me.clone();
            self.me.incarnation = update
                .incarnation
                .max(self.me.incarnation)
                .saturating_add(1);
            if removed {
                // The majority took us off the ring while we were away: our
                // data is stale, so come back as a joiner that refills.
                self.me.ring = RingState::Joining;
                self.me.holds_slots = false;
                self.ring_dirty = true;
                let operator =
                    update.proof.as_ref().map(|p| p.kind) == Some(ClaimKind::Operator);
                let (id, g) = (self.me.identity.id, self.me.identity.generation);
                if operator {
                    // An operator's removal ends this run for good: come
                    // back as the next one, so that a replay of the removal
                    // (of this run) is older news everywhere.
                    self.me.identity.generation = Generation::new(g.get().saturating_add(1));
                    self.me.incarnation = 0;
                    self.saw_previous_run = true;
                } else {
                    self.came_back(id, g, self.me.incarnation);
                }
                self.changed(Some(previous), self.me.clone());
            }
            self.local_health = (self.local_health + 1).min(self.config.max_local_health);
            self.broadcasts.push(Update::of(&self.me));
        } else if update.incarnation > self.me.incarnation {
            self.me.incarnation = update.incarnation.saturating_add(1);
            self.broadcasts.push(Update::of(&self.me));
        } else if update.holds_slots && !self.me.holds_slots && self.me.ring == RingState::Joining {
            // A seed tells us our previous run held slots: keep them.
            self.saw_previous_run = true;
            let previous = self.me.clone();
            self.me.holds_slots = true;
            self.me.incarnation = self.me.incarnation.saturating_add(1);
            self.ring_dirty = true;
            self.broadcasts.push(Update::of(&self.me));
            self.changed(Some(previous), self.me.clone());
        }
    }

    /// News about this node's id under another generation: its previous
    /// run, unless it is a later one still alive (another process using
    /// the id, reported as a conflict).
    /// - An earlier generation: members still gossiping it have not all
    ///   taken this run in its place yet. This run steps its incarnation
    ///   past the one seen (if not already past) and gossips itself again.
    /// - A later generation that is gone (down, left, removed): the
    ///   previous run, started when the wall clock read later than it did
    ///   at this start (it stepped back), found after this node joined
    ///   (the join reply would have shown it, see `on_join_reply`).
    ///   Members holding it would ignore this run's lower generation until
    ///   they forget it, so this run takes the generation after it.
    ///
    /// Either way, the restart is noted (`saw_previous_run`): its previous
    /// run may have stamped versions ahead of this run's clock.
    fn step_past_previous_run(&mut self, update: &Update) {
        let seen = update.identity.generation;
        if seen < self.me.identity.generation {
            self.saw_previous_run = true;
            self.keep_previous_slots(update);
            if self.me.liveness != Liveness::Left && update.incarnation >= self.me.incarnation {
                self.me.incarnation = update.incarnation.saturating_add(1);
                self.broadcasts.push(Update::of(&self.me));
            }
            return;
        }
        let gone = matches!(update.liveness, Liveness::Down | Liveness::Left)
            || matches!(update.ring, RingState::Removed | RingState::Left);
        if !gone || self.me.liveness == Liveness::Left {
            self.report_conflict(&update.identity);
            return;
        }
        self.adopt_generation(Generation::new(seen.get().saturating_add(1)));
    }

    /// Counts another member's suspicion of one this node suspects too, if
    /// it names the same run and incarnation and more confirmations still
    /// shorten the timeout.
    pub(super) fn confirm_suspicion(&mut self, update: &Update) {
        if update.liveness != Liveness::Suspect {
            return;
        }
        let Some(by) = update.suspector else {
            return;
        };
        let Some(entry) = self.members.get_mut(&update.identity.id) else {
            return;
        };
        if entry.member.identity.generation != update.identity.generation {
            return;
        }
        let needed = self.config.suspicion_confirmations;
        if let Some(s) = &mut entry.suspicion {
            if s.incarnation == update.incarnation
                && s.suspectors.len() <= needed
                && s.suspectors.insert(by)
            {
                // Pass new confirmations on, so others shorten theirs too.
                self.broadcasts.push(update.clone());
            }
        }
    }

    /// Starts this node's timer for a suspicion of `id` at `incarnation`,
    /// or counts `by` towards the one running. The timeout bounds grow with
    /// the table (log10) and with this node's local health.
    pub(super) fn start_suspicion(
        &mut self,
        now: Duration,
        id: NodeId,
        incarnation: u64,
        by: NodeId,
    ) {
        let n = self.members.len() + 1;
        let scale = (n as f64).log10().max(1.0);
        let health = 1 + self.local_health;
        let (min, max) = match self.link(&id) {
            super::probe::Link::Lan => (self.config.suspicion_min, self.config.suspicion_max),
            super::probe::Link::Wan => (self.config.wan_suspicion_min, self.config.wan_suspicion_max),
        };
        let min = min.mul_f64(scale) * health;
        let max = max.mul_f64(scale) * health;
        let Some(entry) = self.members.get_mut(&id) else {
            return;
        };
        match &mut entry.suspicion {
            Some(s) if s.incarnation == incarnation => {
                s.suspectors.insert(by);
            }
            _ => {
                entry.suspicion = Some(Suspicion {
                    incarnation,
                    start: now,
                    min,
                    max,
                    suspectors: BTreeSet::from([by]),
                });
            }
        }
    }

    /// Marks `id` suspect because this node's probe failed.
    pub(super) fn suspect(&mut self, now: Duration, id: NodeId, generation: Generation) {
        let me = self.me.identity.id;
        let Some(entry) = self.members.get(&id) else {
            return;
        };
        let m = &entry.member;
        if m.identity.generation != generation || !m.liveness.is_reachable() {
            return;
        }
        let mut update = Update::of(m);
        update.liveness = Liveness::Suspect;
        update.suspector = Some(me);
        if m.liveness == Liveness::Suspect {
            // Our failed probe confirms a suspicion we heard of: count it and
            // pass it on, so others shorten their timeouts too.
            let incarnation = m.incarnation;
            let known = entry
                .suspicion
                .as_ref()
                .map(|s| (s.incarnation, s.suspectors.contains(&me)));
            match known {
                Some((inc, true)) if inc == incarnation => {}
                Some((inc, false)) if inc == incarnation => self.confirm_suspicion(&update),
                _ => {
                    self.start_suspicion(now, id, update.incarnation, me);
                    self.broadcasts.push(update);
                }
            }
            return;
        }
        tracing::debug!(node = %me, suspect = %id, "probe failed; suspecting");
        self.merge(now, update);
        if let Some(e) = self.members.get_mut(&id) {
            if let Some(s) = &mut e.suspicion {
                s.suspectors.insert(me);
            }
        }
    }

    /// Suspects whose suspicion timed out become down; suspects with no
    /// timer yet get one.
    pub(super) fn time_out_suspicions(&mut self, now: Duration) {
        let needed = self.config.suspicion_confirmations;
        let timed_out: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, e)| {
                e.member.liveness == Liveness::Suspect
                    && e.suspicion
                        .as_ref()
                        .is_some_and(|s| s.deadline(needed) <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in timed_out {
            let mut update = Update::of(&self.members[&id].member);
            update.liveness = Liveness::Down;
            tracing::info!(node = %self.me.identity.id, down = %id, "suspicion timed out; down");
            self.merge(now, update);
        }
        // Suspicions we heard about but never timed ourselves (entries that
        // arrived suspect) get a timer from our first failed probe; a
        // suspect with no timer at all gets one now.
        let untimed: Vec<(NodeId, u64)> = self
            .members
            .iter()
            .filter(|(_, e)| e.member.liveness == Liveness::Suspect && e.suspicion.is_none())
            .map(|(id, e)| (*id, e.member.incarnation))
            .collect();
        for (id, inc) in untimed {
            self.start_suspicion(now, id, inc, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::swim::tests::{a_knowing_x_and_y, sent, swim};
    use crate::membership::swim::Output;
    use crate::membership::wire::{Message, Packet};

    fn suspicion(confirmers: usize) -> Suspicion {
        let mut suspectors = BTreeSet::new();
        for i in 0..=confirmers {
            suspectors.insert(NodeId::new(&format!("s{i}")).unwrap());
        }
        Suspicion {
            incarnation: 0,
            start: Duration::from_secs(10),
            min: Duration::from_millis(800),
            max: Duration::from_millis(1800),
            suspectors,
        }
    }

    #[test]
    fn suspicion_timeout_shrinks_from_max_to_min_with_confirmations() {
        let t = |c| suspicion(c).deadline(3) - Duration::from_secs(10);
        assert_eq!(t(0), Duration::from_millis(1800));
        assert!(t(1) < t(0) && t(2) < t(1) && t(3) < t(2));
        assert_eq!(t(3), Duration::from_millis(800));
        assert_eq!(t(10), Duration::from_millis(800));
    }

    #[test]
    fn own_suspicion_is_refuted_with_a_higher_incarnation() {
        let mut a = swim("a", &[]);
        let mut rumour = Update::of(a.local());
        rumour.liveness = Liveness::Suspect;
        let b = swim("b", &[]);
        let packet = Packet {
            from: Update::of(b.local()),
            message: Message::Ping {
                seq: 1,
                target: a.local().id(),
            },
            updates: vec![rumour],
            clock: Default::default(),
        };
        a.handle_packet(Duration::from_secs(1), &packet.encode())
            .unwrap();
        assert_eq!(a.local().incarnation, 1);
        assert_eq!(a.local().liveness, Liveness::Alive);
        assert_eq!(a.local_health(), 1, "having to refute raises local health");
        // The ack carries the refutation.
        let ack = std::iter::from_fn(|| a.poll_output())
            .find_map(|o| match o {
                Output::Send { packet, .. } => Some(Packet::decode(&packet).unwrap()),
                _ => None,
            })
            .unwrap();
        assert_eq!(ack.message, Message::Ack { seq: 1 });
        assert!(ack
            .updates
            .iter()
            .chain([&ack.from])
            .any(|u| u.identity.id == a.local().id()
                && u.incarnation == 1
                && u.liveness == Liveness::Alive));
    }

    #[test]
    fn own_failed_probe_of_a_suspect_is_gossiped_as_a_confirmation() {
        let (mut a, x, y) = a_knowing_x_and_y();
        let mut rumour = y.clone();
        rumour.liveness = Liveness::Suspect;
        rumour.suspector = Some(x.identity.id);
        let gossip = Packet {
            from: x.clone(),
            message: Message::Ack { seq: 0 },
            updates: vec![rumour],
            clock: Default::default(),
        };
        a.handle_packet(Duration::ZERO, &gossip.encode()).unwrap();
        // Nothing answers: a's probes of y (and x) fail.
        let mut confirmed = false;
        let mut now = Duration::ZERO;
        while now < Duration::from_secs(2) && !confirmed {
            now += Duration::from_millis(10);
            a.handle_timers(now);
            confirmed = sent(&mut a).iter().any(|(_, p)| {
                p.updates.iter().any(|u| {
                    u.identity.id == y.identity.id
                        && u.liveness == Liveness::Suspect
                        && u.suspector == Some(a.local().id())
                })
            });
        }
        assert!(confirmed, "a never passed on its own confirmation");
    }
}
