//! Probing: the shuffled round-robin probe schedule, direct and indirect
//! probes with their timeouts, indirect probes run for others, and acks.
//!
//! A probe that times out asks [`SwimConfig::indirect_probes`] alive
//! members to ping the target for it; helpers that do not even nack raise
//! Lifeguard's local health, since silence all round suggests this node is
//! the slow one. A probe that fails both stages hands the target to
//! suspicion.
//!
//! [`SwimConfig::indirect_probes`]: crate::membership::SwimConfig::indirect_probes

use std::time::Duration;

use super::{expired, Swim, MAX_FORWARDS};
use crate::id::{Generation, NodeId};
use crate::membership::clock::Sample;
use crate::membership::member::Liveness;
use crate::membership::wire::{ClockReading, Message};

/// Which answers a probe waits for.
#[derive(Debug)]
enum ProbeStage {
    /// The target's own ack to this node's ping.
    Direct,
    /// An ack relayed by a helper, or the helpers' nacks.
    Indirect { expected_nacks: u32 },
}

/// One of this node's probes in flight; there is at most one per link
/// kind.
#[derive(Debug)]
pub(super) struct Probe {
    seq: u64,
    target: NodeId,
    generation: Generation,
    /// The link kind it was started for (one probe per kind at a time).
    link: Link,
    pub(super) deadline: Duration,
    stage: ProbeStage,
    nacks: u32,
    /// When the ping left, and this node's wall clock then (0: unknown):
    /// the target's ack measures its clock.
    sent: (Duration, u64),
}

/// A ping this node runs for another member's indirect probe, under a
/// sequence number of its own.
#[derive(Debug)]
pub(super) struct Forward {
    /// Where the ack (or the nack) goes.
    requester: String,
    seq: u64,
    pub(super) deadline: Duration,
    /// Whom this node pings, when, and its wall clock then: the ack
    /// measures the target's clock as well.
    target: NodeId,
    sent: (Duration, u64),
}

/// A link's kind: inside this node's datacenter (LAN timing) or across a
/// WAN (longer probe timeouts and suspicion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    Lan = 0,
    Wan = 1,
}

impl Swim {
    /// Whether the link to `id` is a WAN link: the member is in another
    /// datacenter, or its smoothed probe round trip is above
    /// [`SwimConfig::wan_rtt_threshold`].
    ///
    /// [`SwimConfig::wan_rtt_threshold`]: crate::membership::SwimConfig::wan_rtt_threshold
    pub(super) fn link(&self, id: &NodeId) -> Link {
        let Some(e) = self.members.get(id) else {
            return Link::Lan;
        };
        let far = e.member.identity.datacenter != self.me.identity.datacenter
            || e.rtt.is_some_and(|rtt| rtt > self.config.wan_rtt_threshold);
        if far {
            Link::Wan
        } else {
            Link::Lan
        }
    }

    /// The smoothed round trip of this node's direct probes of member
    /// `id`, once one was answered.
    pub fn link_rtt(&self, id: &NodeId) -> Option<Duration> {
        self.members.get(id).and_then(|e| e.rtt)
    }

    /// Whether this node treats its link to member `id` as a WAN link
    /// (another datacenter, or a round trip above
    /// [`SwimConfig::wan_rtt_threshold`]).
    ///
    /// [`SwimConfig::wan_rtt_threshold`]: crate::membership::SwimConfig::wan_rtt_threshold
    pub fn is_wan_link(&self, id: &NodeId) -> bool {
        self.link(id) == Link::Wan
    }

    /// How long a probe of `id` waits for its ack, before local health
    /// scaling: the LAN timeout, or for a WAN link the WAN one (at least
    /// three of its round trips, up to eight times the WAN timeout).
    pub(super) fn probe_timeout(&self, id: &NodeId) -> Duration {
        match self.link(id) {
            Link::Lan => self.config.probe_timeout,
            Link::Wan => {
                let rtt = self.members.get(id).and_then(|e| e.rtt).unwrap_or_default();
                // A member answering ever more slowly does not stretch its
                // own timeout without bound.
                self.config.wan_probe_timeout.max(rtt * 3).min(self.config.wan_probe_timeout * 8)
            }
        }
    }

    /// Pings the next member of each link kind in the probe order, unless
    /// a probe of that kind is still in flight.
    pub(super) fn start_probe(&mut self, now: Duration) {
        for link in [Link::Lan, Link::Wan] {
            if self.probes.iter().any(|p| p.link == link) {
                continue;
            }
            let Some(target) = self.next_probe_target(link) else {
                continue;
            };
            let (generation, addr) = {
                let m = &self.members[&target].member;
                (m.identity.generation, m.identity.addr.clone())
            };
            let seq = self.next_seq();
            self.probes.push(Probe {
                seq,
                target,
                generation,
                link,
                deadline: now + self.scaled(self.probe_timeout(&target)),
                stage: ProbeStage::Direct,
                nacks: 0,
                sent: (now, self.clock_reading.wall_ms),
            });
            self.send(addr, Message::Ping { seq, target });
        }
    }

    /// The next reachable member of `link`'s kind in this round; at the
    /// end of a round the reachable members of that kind are reshuffled
    /// into the next.
    fn next_probe_target(&mut self, link: Link) -> Option<NodeId> {
        let k = link as usize;
        for _ in 0..2 {
            while self.probe_pos[k] < self.probe_order[k].len() {
                let id = self.probe_order[k][self.probe_pos[k]];
                self.probe_pos[k] += 1;
                let reachable = self
                    .members
                    .get(&id)
                    .is_some_and(|e| e.member.liveness.is_reachable());
                if reachable && self.link(&id) == link {
                    return Some(id);
                }
            }
            // A round is over: reshuffle the reachable members.
            let mut order: Vec<NodeId> = self
                .members
                .iter()
                .filter(|(_, e)| e.member.liveness.is_reachable())
                .map(|(id, _)| *id)
                .filter(|id| self.link(id) == link)
                .collect();
            self.shuffle(&mut order);
            self.probe_order[k] = order;
            self.probe_pos[k] = 0;
        }
        None
    }

    pub(super) fn add_to_probe_order(&mut self, id: NodeId) {
        // At a random place in the rest of this round, so a new member is
        // probed within one round.
        let k = self.link(&id) as usize;
        let pos = self.probe_pos[k];
        if self.probe_order[k][pos..].contains(&id) {
            return;
        }
        let rest = self.probe_order[k].len() - pos;
        let at = pos + (self.rng.next_u64() % (rest as u64 + 1)) as usize;
        self.probe_order[k].insert(at, id);
    }

    /// Moves the probes whose deadline passed on: from direct to
    /// indirect, and from indirect to suspecting their target.
    pub(super) fn probe_timers(&mut self, now: Duration) {
        let due: Vec<u64> = self
            .probes
            .iter()
            .filter(|p| now >= p.deadline)
            .map(|p| p.seq)
            .collect();
        for seq in due {
            self.probe_timer(now, seq);
        }
    }

    fn probe_timer(&mut self, now: Duration, seq: u64) {
        let Some(i) = self.probes.iter().position(|p| p.seq == seq) else {
            return;
        };
        let probe = &self.probes[i];
        match probe.stage {
            ProbeStage::Direct => {
                let target = probe.target;
                let target_addr = self
                    .members
                    .get(&target)
                    .map(|e| e.member.identity.addr.clone())
                    .unwrap_or_default();
                // A LAN target's helpers are LAN members too: one across a
                // WAN could not even nack within a LAN probe's timeout, and
                // each silent helper raises this node's local health.
                let link = probe.link;
                let mut helpers: Vec<String> = self
                    .members
                    .iter()
                    .filter(|(id, e)| **id != target && e.member.liveness == Liveness::Alive)
                    .filter(|(id, _)| link == Link::Wan || self.link(id) == Link::Lan)
                    .map(|(_, e)| e.member.identity.addr.clone())
                    .collect();
                self.shuffle(&mut helpers);
                helpers.truncate(self.config.indirect_probes);
                let expected_nacks = helpers.len() as u32;
                for to in helpers {
                    self.send(
                        to,
                        Message::PingReq {
                            seq,
                            target,
                            target_addr: target_addr.clone(),
                        },
                    );
                }
                let deadline = now + self.scaled(self.probe_timeout(&target));
                let p = &mut self.probes[i];
                p.stage = ProbeStage::Indirect { expected_nacks };
                p.deadline = deadline;
            }
            ProbeStage::Indirect { expected_nacks } => {
                let missed = expected_nacks.saturating_sub(probe.nacks);
                let (target, generation) = (probe.target, probe.generation);
                self.probes.swap_remove(i);
                // Helpers that did not even nack suggest this node is the
                // one with the problem (Lifeguard).
                self.local_health = (self.local_health + missed).min(self.config.max_local_health);
                self.suspect(now, target, generation);
            }
        }
    }

    /// Pings run for others that went unanswered: the requester gets a
    /// nack, which tells it that this helper at least is reachable.
    pub(super) fn forward_timers(&mut self, now: Duration) {
        for seq in expired(&self.forwards, now, |f| f.deadline) {
            if let Some(f) = self.forwards.remove(&seq) {
                self.send(f.requester, Message::Nack { seq: f.seq });
            }
        }
    }

    /// Pings `target` on behalf of `requester` (an indirect probe), unless
    /// too many are running already. Only a member at the address this
    /// node knows it by is pinged: a request naming any other address (a
    /// stranger, a member's old address, a forged packet) opens no link
    /// and is answered with a nack at once, so the requester's Lifeguard
    /// accounting stays right (counted in
    /// [`Swim::probe_requests_refused`]).
    pub(super) fn on_ping_req(
        &mut self,
        now: Duration,
        requester: String,
        seq: u64,
        target: NodeId,
        target_addr: String,
    ) {
        let known = self
            .members
            .get(&target)
            .is_some_and(|e| e.member.identity.addr == target_addr);
        if !known {
            self.probe_requests_refused += 1;
            self.send(requester, Message::Nack { seq });
            return;
        }
        if self.forwards.len() < MAX_FORWARDS {
            let own = self.next_seq();
            self.forwards.insert(
                own,
                Forward {
                    requester,
                    seq,
                    // Nack before the requester gives up, so the
                    // nack counts (Lifeguard uses 80%).
                    deadline: now + self.scaled(self.probe_timeout(&target)).mul_f64(0.8),
                    target,
                    sent: (now, self.clock_reading.wall_ms),
                },
            );
            self.send(target_addr, Message::Ping { seq: own, target });
        }
    }

    /// A helper could not reach this node's probe target in time.
    pub(super) fn on_nack(&mut self, seq: u64) {
        if let Some(p) = self.probes.iter_mut().find(|p| p.seq == seq) {
            p.nacks += 1;
        }
    }

    /// An ack from `from` (its id and generation), carrying its clocks:
    /// to this node's probe, to a ping run for another (passed back to
    /// the requester), or to a duplicate-id check. An ack that comes
    /// straight from the member pinged measures its clock.
    pub(super) fn on_ack(
        &mut self,
        now: Duration,
        seq: u64,
        from: (NodeId, Generation),
        clock: ClockReading,
    ) {
        if let Some(i) = self.probes.iter().position(|p| p.seq == seq) {
            let p = self.probes.swap_remove(i);
            if p.target == from.0 {
                // Only a direct ack times the link itself.
                if matches!(p.stage, ProbeStage::Direct) {
                    self.note_rtt(from.0, now.saturating_sub(p.sent.0));
                }
                self.measure(now, from.0, p.sent, clock);
            }
            self.local_health = self.local_health.saturating_sub(1);
            return;
        }
        if let Some(f) = self.forwards.remove(&seq) {
            if f.target == from.0 {
                self.measure(now, from.0, f.sent, clock);
            }
            self.send(f.requester, Message::Ack { seq: f.seq });
            return;
        }
        self.on_id_check_ack(now, seq, from.1);
    }

    /// Moves the wall-clock readings of the pings still out by `step_ms`
    /// (see [`Swim::shift_clock`]).
    pub(super) fn shift_pending_probes(&mut self, step_ms: i64) {
        let shift = |sent: &mut (Duration, u64)| {
            if sent.1 != 0 {
                sent.1 = sent.1.saturating_add_signed(step_ms);
            }
        };
        for p in &mut self.probes {
            shift(&mut p.sent);
        }
        for f in self.forwards.values_mut() {
            shift(&mut f.sent);
        }
    }

    /// Folds a direct probe's round trip to `id` into its smoothed RTT
    /// (the weight TCP gives a new sample, 1/8).
    fn note_rtt(&mut self, id: NodeId, sample: Duration) {
        if let Some(e) = self.members.get_mut(&id) {
            e.rtt = Some(match e.rtt {
                None => sample,
                Some(rtt) => (rtt * 7 + sample) / 8,
            });
        }
    }

    /// Records a round trip to `id` that left at `sent` (time, wall
    /// clock) and came back now with `id`'s clocks.
    fn measure(&mut self, now: Duration, id: NodeId, sent: (Duration, u64), clock: ClockReading) {
        let (at, wall) = sent;
        if wall == 0 || !clock.has_wall() || !self.members.contains_key(&id) {
            return;
        }
        let sample = Sample::from_round_trip(wall, now.saturating_sub(at), clock.wall_ms, now);
        self.clock.sample(id, sample);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::membership::member::Liveness;
    use crate::membership::swim::tests::{a_knowing_x_and_y, sent};
    use crate::membership::wire::{Message, Packet, Update};
    use crate::NodeId;

    fn ping_req(from: &Update, target: NodeId, target_addr: &str) -> Vec<u8> {
        Packet {
            from: from.clone(),
            message: Message::PingReq {
                seq: 7,
                target,
                target_addr: target_addr.to_owned(),
            },
            updates: vec![],
            clock: Default::default(),
        }
        .encode()
    }

    #[test]
    fn an_indirect_probe_of_a_stranger_address_is_nacked_not_sent() {
        let (mut a, x, y) = a_knowing_x_and_y();
        let _ = sent(&mut a);
        let stranger = NodeId::new("stranger").unwrap();
        // An unknown id, and a member's id at an address it does not have.
        for (target, addr) in [(stranger, "10.9.9.9:1"), (y.identity.id, "10.9.9.9:2")] {
            a.handle_packet(Duration::ZERO, &ping_req(&x, target, addr))
                .unwrap();
            let out = sent(&mut a);
            assert!(
                out.iter().all(|(to, _)| to == &x.identity.addr),
                "a packet left for a non-member address: {out:?}"
            );
            assert!(
                out.iter()
                    .any(|(_, p)| matches!(p.message, Message::Nack { seq: 7 })),
                "no nack to the requester: {out:?}"
            );
        }
        assert_eq!(a.probe_requests_refused(), 2);
        // A member at its own address is pinged on the requester's behalf.
        let y_addr = y.identity.addr.clone();
        a.handle_packet(Duration::ZERO, &ping_req(&x, y.identity.id, &y_addr))
            .unwrap();
        let out = sent(&mut a);
        assert!(
            out.iter()
                .any(|(to, p)| to == &y_addr && matches!(p.message, Message::Ping { .. })),
            "the member was not pinged: {out:?}"
        );
        assert_eq!(a.probe_requests_refused(), 2);
    }

    #[test]
    fn flapping_news_does_not_starve_probes_of_others() {
        let (mut a, x, y) = a_knowing_x_and_y();
        let mut updates = Vec::new();
        for inc in 1..2000u64 {
            for liveness in [Liveness::Down, Liveness::Alive] {
                let mut u = y.clone();
                u.incarnation = inc + u64::from(liveness == Liveness::Alive);
                u.liveness = liveness;
                updates.push(u);
            }
        }
        let flood = Packet {
            from: x.clone(),
            message: Message::PushPull {
                members: updates,
                reply: false,
            },
            updates: vec![],
            clock: Default::default(),
        };
        a.handle_packet(Duration::ZERO, &flood.encode()).unwrap();
        let _ = sent(&mut a);
        let mut targets = Vec::new();
        let mut now = Duration::ZERO;
        while now < Duration::from_secs(3) {
            now += Duration::from_millis(10);
            a.handle_timers(now);
            for (_, p) in sent(&mut a) {
                if let Message::Ping { target, .. } = p.message {
                    targets.push(target);
                }
            }
        }
        assert!(
            targets.contains(&x.identity.id),
            "x never probed: {targets:?}"
        );
    }
}
