//! Dissemination: applying member updates to the table, piggybacking
//! queued updates on every packet sent, and full-table push-pull.
//!
//! Each update rides on about `λ·log10(n + 1)` packets; the periodic
//! push-pull with a random member (and a random down one) heals views that
//! gossip alone left apart, for example after a partition.

use std::time::Duration;

use bytes::Bytes;

use super::{Entry, Output, Swim};
use crate::membership::member::{Liveness, Member, RingState};
use crate::membership::signed::ClaimKind;
use crate::membership::wire::{Message, Packet, Update};

/// Most member-table entries one join reply or push-pull packet carries;
/// larger tables go in several packets.
const TABLE_CHUNK: usize = 1024;
/// Most bytes (estimated) of member states in one table packet, well
/// inside [`super::MAX_PACKET_BYTES`].
const TABLE_CHUNK_BYTES: usize = 640 * 1024;

/// About how many bytes `u` takes encoded (an upper estimate).
fn approx_size(u: &Update) -> usize {
    let proof = u.proof.as_ref().map_or(0, |p| {
        100 + p.signer.as_str().len() + p.certificate.as_ref().map_or(0, |c| c.len() + 4)
    });
    64 + u.identity.id.as_str().len()
        + u.identity.addr.len()
        + u.identity.datacenter.len()
        + u.identity.rack.len()
        + 64
        + proof
}

impl Swim {
    /// Applies one member update (from a packet's sender, its piggyback,
    /// a table, or this node's own findings) if it overrides what the table
    /// holds, and queues it to be passed on. Older news may still confirm a
    /// suspicion.
    ///
    /// With signed membership, a claim this node made is signed first; a
    /// vote to remove a member applies only once a majority voted; and the
    /// entry keeps the signed claim, which is what is passed on.
    pub(super) fn merge(&mut self, now: Duration, update: Update) {
        self.now = self.now.max(now);
        let signed = self.security.is_some();
        let update = self.seal(update);
        let about = update.proof.as_ref().map(|p| p.kind) == Some(ClaimKind::About);
        if signed && about && update.ring == RingState::Removed && !self.removal_vote(&update) {
            return;
        }
        let claim = signed.then(|| update.clone());
        let update = if signed { self.effective(update) } else { update };
        if update.identity.id == self.me.identity.id {
            self.merge_own(update);
            return;
        }
        let id = update.identity.id;
        let Some(entry) = self.members.get_mut(&id) else {
            if self.members.len() + 1 >= self.config.max_members {
                return;
            }
            if update.liveness == Liveness::Left || update.ring == RingState::Removed {
                // News that a member we never knew (or already forgot) is
                // gone: nothing to do, and re-creating it would undo
                // forgetting.
                return;
            }
            let mut member = Member {
                identity: update.identity.clone(),
                incarnation: update.incarnation,
                liveness: update.liveness,
                ring: update.ring,
                holds_slots: update.holds_slots,
                since: now,
            };
            if member.liveness == Liveness::Suspect {
                // Not our suspicion to time: treat as alive news until we
                // probe it ourselves, but pass the suspicion on.
                member.liveness = Liveness::Alive;
            }
            let final_since = (member.liveness == Liveness::Left
                || member.ring == RingState::Removed)
                .then_some(now);
            let reachable = member.liveness.is_reachable();
            self.members.insert(
                id,
                Entry {
                    member: member.clone(),
                    suspicion: None,
                    final_since,
                    rtt: None,
                    claim: claim.clone(),
                    previous_run: None,
                },
            );
            if reachable {
                self.add_to_probe_order(id);
            }
            self.broadcasts.push(claim.unwrap_or(update));
            self.ring_dirty = true;
            self.changed(None, member);
            return;
        };
        if !update.overrides(&entry.member) {
            let (g, cg) = (update.identity.generation, entry.member.identity.generation);
            let current = &entry.member;
            let gone = current.ring == RingState::Removed || current.liveness == Liveness::Left;
            let says_gone = update.ring == RingState::Removed || update.liveness == Liveness::Left;
            let own = claim
                .as_ref()
                .and_then(|c| c.proof.as_ref())
                .is_some_and(|p| p.kind == ClaimKind::Own);
            let still_talking = own && g == cg && current.ring == RingState::Removed;
            // Older news, or "alive" about a run that is gone for good.
            let stale = g < cg
                || (g == cg && update.incarnation < current.incarnation)
                || (g == cg && gone && !says_gone);
            if still_talking {
                // A removed run still talking (it has not learnt of its
                // removal): not forgotten while it does, or it would come
                // back as a new member holding slots it never refilled.
                entry.final_since = Some(now);
            }
            if stale {
                self.note_stale();
            }
            self.confirm_suspicion(claim.as_ref().unwrap_or(&update));
            return;
        }
        let previous = entry.member.clone();
        let restarted = update.identity.generation != previous.identity.generation;
        if claim.is_some() {
            let before = std::mem::replace(&mut entry.claim, claim.clone());
            if restarted {
                // What the restart's join reply shows it of its previous
                // run (see `Swim::keep_previous_slots`).
                entry.previous_run = before.filter(|_| previous.in_placement());
            }
        }
        let member = &mut entry.member;
        member.holds_slots = update.holds_slots
            || (restarted && update.ring == RingState::Joining && previous.in_placement())
            || (!restarted && previous.holds_slots && update.ring == RingState::Joining);
        member.identity = update.identity.clone();
        member.incarnation = update.incarnation;
        member.ring = update.ring;
        if member.liveness != update.liveness || restarted {
            member.since = now;
        }
        member.liveness = update.liveness;
        if restarted {
            entry.suspicion = None;
        }
        if (member.liveness == Liveness::Left || member.ring == RingState::Removed)
            && entry.final_since.is_none()
        {
            entry.final_since = Some(now);
        }
        if member.ring != RingState::Removed && member.liveness != Liveness::Left {
            entry.final_since = None;
        }
        let member = member.clone();
        if !restarted && previous.ring == RingState::Removed && member.ring == RingState::Joining {
            self.came_back(id, member.identity.generation, member.incarnation);
        }
        match member.liveness {
            Liveness::Suspect => {
                let by = update.suspector.unwrap_or(update.identity.id);
                self.start_suspicion(now, id, member.incarnation, by);
            }
            _ => {
                if let Some(e) = self.members.get_mut(&id) {
                    e.suspicion = None;
                }
            }
        }
        if member.liveness.is_reachable() && !previous.liveness.is_reachable() {
            self.add_to_probe_order(id);
        }
        let gossip = match claim {
            // Relayed as signed: receivers work out the slots themselves.
            Some(claim) => claim,
            None => Update {
                holds_slots: member.holds_slots,
                ..update
            },
        };
        self.broadcasts.push(gossip);
        if previous.ring != member.ring
            || previous.liveness != member.liveness
            || previous.holds_slots != member.holds_slots
            || restarted
        {
            self.ring_dirty = true;
            self.changed(Some(previous), member);
        }
    }

    /// A push-pull exchange: merge the table, answer with ours if asked.
    pub(super) fn on_push_pull(
        &mut self,
        now: Duration,
        from: String,
        members: Vec<Update>,
        reply: bool,
    ) {
        for update in members {
            self.merge(now, update);
        }
        if reply {
            self.send_table(from, false, false);
        }
        // A member answered: this node is part of a cluster.
        self.set_joined();
    }

    /// Starts a full-table exchange with one random alive member and one
    /// random down member.
    pub(super) fn push_pull(&mut self) {
        let mut alive: Vec<String> = Vec::new();
        let mut down: Vec<String> = Vec::new();
        for e in self.members.values() {
            match e.member.liveness {
                Liveness::Alive => alive.push(e.member.identity.addr.clone()),
                // Down and removed members too (until forgotten): if they
                // are alive behind a healed partition, the exchange tells
                // them, they refute, and the two sides merge again.
                Liveness::Down => down.push(e.member.identity.addr.clone()),
                _ => {}
            }
        }
        for list in [alive, down] {
            if list.is_empty() {
                continue;
            }
            let pick = (self.rng.next_u64() % list.len() as u64) as usize;
            self.send_table(list[pick].clone(), true, false);
        }
    }

    /// Full-table exchanges grow with the table, so above 32 members they
    /// slow down: ×(1 + ⌈log2(n / 32)⌉), like memberlist.
    pub(super) fn push_pull_scale(&self) -> u32 {
        let n = self.members.len() + 1;
        if n <= 32 {
            return 1;
        }
        1 + (n as f64 / 32.0).log2().ceil() as u32
    }

    /// Sends the whole member table (this node included) in chunks.
    ///
    /// With signed membership the table is the signed claims that set each
    /// entry, with the votes to remove each member; chunks are cut by
    /// size too, as certificates make claims larger.
    pub(super) fn send_table(&mut self, to: String, reply: bool, join_reply: bool) {
        let mut all: Vec<Update> = self.rejoin_claim().into_iter().collect();
        all.push(Update::of(&self.me));
        if self.security.is_some() {
            for e in self.members.values() {
                let current = e.claim.clone().unwrap_or_else(|| Update::of(&e.member));
                self.table_claims(&e.member, current, &mut all);
                if join_reply && e.member.identity.addr == to && e.member.ring == RingState::Joining {
                    all.extend(e.previous_run.clone());
                }
            }
        } else {
            all.extend(self.members.values().map(|e| Update::of(&e.member)));
        }
        let mut chunks: Vec<Vec<Update>> = Vec::new();
        let mut size = 0usize;
        for u in all {
            let bytes = approx_size(&u);
            match chunks.last_mut() {
                Some(c) if c.len() < TABLE_CHUNK && size + bytes <= TABLE_CHUNK_BYTES => {
                    c.push(u);
                    size += bytes;
                }
                _ => {
                    chunks.push(vec![u]);
                    size = bytes;
                }
            }
        }
        let count = chunks.len();
        for (i, members) in chunks.into_iter().enumerate() {
            let message = if join_reply {
                Message::JoinReply { members }
            } else {
                // One answer per exchange: only the last chunk asks.
                Message::PushPull {
                    members,
                    reply: reply && i + 1 == count,
                }
            };
            self.send_raw(to.clone(), message, Vec::new());
        }
    }

    /// Sends `message` with piggybacked gossip.
    ///
    /// A ping to a member this node suspects carries that suspicion
    /// (Lifeguard's buddy system), so the member can refute at once.
    pub(super) fn send(&mut self, to: String, message: Message) {
        let n = self.members.len() + 2;
        let limit = self.config.retransmit_mult * ((n as f64).log10().ceil() as u32).max(1);
        let mut updates = self.broadcasts.take(self.config.max_piggyback, limit);
        if let Message::Ping { target, .. } = &message {
            if let Some(e) = self.members.get(target) {
                if e.member.liveness == Liveness::Suspect
                    && !updates.iter().any(|u| u.identity.id == *target)
                {
                    let mut update = Update::of(&e.member);
                    update.suspector = Some(self.me.identity.id);
                    updates.push(update);
                }
            }
        }
        self.send_raw(to, message, updates);
    }

    /// Sends `message` with exactly `updates`, signed with this node's
    /// own state.
    pub(super) fn send_raw(&mut self, to: String, message: Message, updates: Vec<Update>) {
        let mut packet = Packet {
            from: Update::of(&self.me),
            message,
            updates,
            clock: self.clock_reading,
        };
        self.seal_packet(&mut packet);
        self.outputs.push_back(Output::Send {
            to,
            packet: Bytes::from(packet.encode()),
        });
    }
}
