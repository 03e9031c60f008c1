//! Signed membership in the state machine: checking every claim a packet
//! carries, signing this node's own, counting votes to remove a member,
//! and operators' removals.
//!
//! With credentials ([`Swim::set_credentials`]) a packet is taken only if
//! its sender's own claim verifies (and, when the transport authenticated
//! the sender, names that node); each update it carries is taken only if
//! its signature verifies, and is relayed with that signature unchanged.
//! A member leaves the ring only on signed votes from a strict majority of
//! the placement ring, as this node counts it, or on an operator's signed
//! [`Removal`]. Without credentials nothing is checked, as before.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::Swim;
use crate::config_error::ConfigError;
use crate::id::{Generation, NodeId};
use crate::membership::keys::{MembershipSecurityStats, Refusal, Verifier};
use crate::membership::member::{Identity, Liveness, Member, RingState};
use crate::membership::signed::{ClaimKind, Removal, RemovalError};
use crate::membership::trust::Credentials;
use crate::membership::wire::{Message, Packet, Update, WireError};

/// Most votes kept about one run of one member.
const MAX_VOTERS: usize = 4096;

/// How long a placement ring this node held counts, once replaced, for
/// votes to remove this node (see `Swim::removal_quorum`).
const HELD_RING_KEEP: Duration = Duration::from_secs(300);

/// Most placement rings kept in [`Security::held`].
const MAX_HELD_RINGS: usize = 16;

/// A placement ring this node held, and until when (`None`: it still does).
#[derive(Debug)]
struct HeldRing {
    members: Vec<NodeId>,
    since: Duration,
    until: Option<Duration>,
}

/// This node's credentials and what it learnt checking others'.
pub(super) struct Security {
    creds: Arc<dyn Credentials>,
    verifier: Verifier,
    /// Signed votes to remove a member run: (target, generation) → voter →
    /// its vote.
    votes: BTreeMap<(NodeId, Generation), BTreeMap<NodeId, Update>>,
    /// The incarnation at which a member run last came back from a
    /// removal (as a joiner): votes about it from before do not count, and
    /// are not kept. Bounded as `votes`: one entry per run known.
    floors: BTreeMap<(NodeId, Generation), u64>,
    /// This node's own signed claim as a joiner when it last came back
    /// from a removal; see [`Swim::rejoin_claim`].
    rejoined: Option<Update>,
    /// The placement rings this node held lately, the current one last.
    held: VecDeque<HeldRing>,
    /// Per member run, the highest incarnation of this node's run its
    /// full table showed alive: its votes about this node from below it
    /// are outdated (it took this node back since), whoever replays them.
    alive_at: BTreeMap<(NodeId, Generation), u64>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("node", &self.creds.node_id())
            .field("verifier", &self.verifier)
            .field("votes", &self.votes.len())
            .finish_non_exhaustive()
    }
}

impl Swim {
    /// Turns signed membership on: from now on this node signs its claims
    /// with `creds` and refuses any claim that does not verify against the
    /// trust bundle `creds` checks certificates with (counted in
    /// [`Swim::security_stats`]). Call it before the first packet; every
    /// member of a cluster must have credentials, or none.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if the certificate names another id than this
    /// node's.
    pub fn set_credentials(&mut self, creds: Arc<dyn Credentials>) -> Result<(), ConfigError> {
        if creds.node_id() != self.me.identity.id {
            return Err(ConfigError::new(
                "membership",
                "credentials",
                "the certificate names another node id",
            ));
        }
        self.security = Some(Box::new(Security {
            creds,
            verifier: Verifier::default(),
            votes: BTreeMap::new(),
            floors: BTreeMap::new(),
            rejoined: None,
            held: VecDeque::new(),
            alive_at: BTreeMap::new(),
        }));
        Ok(())
    }

    /// Names the cluster in every signature this node makes and checks,
    /// so that a claim signed for one cluster is refused by another (empty
    /// by default).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a name longer than 255 bytes.
    pub fn set_cluster_name(&mut self, name: &str) -> Result<(), ConfigError> {
        if name.len() > Identity::MAX_LABEL {
            return Err(ConfigError::new(
                "membership",
                "cluster",
                "at most 255 bytes",
            ));
        }
        self.cluster = name.to_owned();
        Ok(())
    }

    /// Whether membership is signed (credentials were set).
    pub fn is_signed(&self) -> bool {
        self.security.is_some()
    }

    /// What signed membership refused and what it cost; all zero without
    /// credentials.
    pub fn security_stats(&self) -> MembershipSecurityStats {
        self.security
            .as_ref()
            .map(|s| s.verifier.stats)
            .unwrap_or_default()
    }

    /// Handles one packet from the network whose sender the transport
    /// authenticated as `authenticated` (`None`: not authenticated, as
    /// [`Swim::handle_packet`]). With credentials, a packet whose sender
    /// is another node is refused and counted
    /// ([`MembershipSecurityStats::sender_mismatch`]).
    ///
    /// # Errors
    ///
    /// [`WireError`] for a packet that does not decode; nothing is applied.
    pub fn handle_packet_from(
        &mut self,
        now: Duration,
        authenticated: Option<NodeId>,
        bytes: &[u8],
    ) -> Result<(), WireError> {
        let packet = Self::decode_bounded(bytes)?;
        self.handle(now, packet, authenticated);
        self.refresh_ring();
        Ok(())
    }

    /// Applies an operator's removal of one run of a node (see
    /// [`Removal::sign`]); it is gossiped on as signed. Without
    /// credentials it is applied unchecked, as any claim is.
    ///
    /// # Errors
    ///
    /// [`RemovalError::Refused`] when it does not verify, and
    /// [`RemovalError::Unknown`] when this node knows no such run.
    pub fn apply_removal(&mut self, now: Duration, removal: &Removal) -> Result<(), RemovalError> {
        let known = self
            .member(&removal.target)
            .is_some_and(|m| m.identity.generation == removal.generation);
        if !known {
            return Err(RemovalError::Unknown {
                target: removal.target,
                generation: removal.generation,
            });
        }
        let update = removal.to_update();
        if self.security.is_some() {
            self.check_claim(&update)
                .map_err(|r| RemovalError::Refused(format!("{r:?}")))?;
            self.merge(now, update);
        } else {
            let mut plain = self.effective(update);
            plain.proof = None;
            self.merge(now, plain);
        }
        self.refresh_ring();
        Ok(())
    }

    /// Checks one claim against the trust bundle (counting a refusal).
    fn check_claim(&mut self, update: &Update) -> Result<(), Refusal> {
        let now_ms = self.clock_reading.wall_ms;
        let cluster = &self.cluster;
        let Some(sec) = self.security.as_deref_mut() else {
            return Ok(());
        };
        sec.verifier.check(&*sec.creds, cluster, update, now_ms)
    }

    /// What a packet may be used for: with credentials, only a packet
    /// whose sender's own claim verifies (and names the authenticated
    /// sender), with the updates that verify; without, all of it, its
    /// signatures dropped.
    pub(super) fn admit(
        &mut self,
        mut packet: Packet,
        authenticated: Option<NodeId>,
    ) -> Option<Packet> {
        if self.security.is_none() {
            packet.from.proof = None;
            for u in packet.updates.iter_mut().chain(members_mut(&mut packet.message)) {
                u.proof = None;
            }
            return Some(packet);
        }
        if authenticated.is_some_and(|a| a != packet.from.identity.id) {
            if let Some(sec) = self.security.as_deref_mut() {
                sec.verifier.stats.sender_mismatch += 1;
            }
            return None;
        }
        let own = packet
            .from
            .proof
            .as_ref()
            .is_some_and(|p| p.kind == ClaimKind::Own);
        if !own {
            if let Some(sec) = self.security.as_deref_mut() {
                sec.verifier.stats.forged += 1;
            }
            return None;
        }
        if self.check_claim(&packet.from).is_err() {
            return None;
        }
        packet.updates = self.admit_all(std::mem::take(&mut packet.updates));
        match &mut packet.message {
            Message::JoinReply { members } | Message::PushPull { members, .. } => {
                *members = self.admit_all(std::mem::take(members));
            }
            _ => {}
        }
        Some(packet)
    }

    /// The updates that verify, own claims first (they teach this node
    /// the keys that claims about others are checked with).
    fn admit_all(&mut self, updates: Vec<Update>) -> Vec<Update> {
        let (mut own, about): (Vec<Update>, Vec<Update>) = updates
            .into_iter()
            .partition(|u| u.proof.as_ref().is_some_and(|p| p.kind == ClaimKind::Own));
        own.extend(about);
        own.into_iter()
            .filter(|u| self.check_claim(u).is_ok())
            .collect()
    }

    /// Signs a claim this node made (with credentials, and if it is not
    /// signed yet): about itself as its own claim, about another as its
    /// claimer.
    pub(super) fn seal(&mut self, mut update: Update) -> Update {
        let me = (self.me.identity.id, self.me.identity.generation);
        let cluster = &self.cluster;
        let Some(sec) = self.security.as_deref_mut() else {
            return update;
        };
        if update.proof.is_some() {
            return update;
        }
        let kind = if (update.identity.id, update.identity.generation) == me {
            ClaimKind::Own
        } else {
            update.suspector = Some(me.0);
            ClaimKind::About
        };
        sec.verifier
            .seal(&*sec.creds, cluster, update, kind, me.1)
    }

    /// Signs everything a packet about to leave carries.
    pub(super) fn seal_packet(&mut self, packet: &mut Packet) {
        if self.security.is_none() {
            return;
        }
        packet.from = self.seal(packet.from.clone());
        let mut all: Vec<&mut Update> = packet.updates.iter_mut().collect();
        all.extend(members_mut(&mut packet.message));
        for u in all {
            if u.proof.is_none() {
                let sealed = self.seal(u.clone());
                *u = sealed;
            }
        }
    }

    /// The claim as it applies to the table: a claim about another keeps
    /// the identity this node knows for that run (the claimer vouches for
    /// its liveness, not its address); an operator's removal applies at
    /// the run's current incarnation.
    pub(super) fn effective(&self, mut update: Update) -> Update {
        let kind = update.proof.as_ref().map(|p| p.kind);
        if kind == Some(ClaimKind::Own) {
            return update;
        }
        let Some(known) = self.member(&update.identity.id) else {
            return update;
        };
        if known.identity.generation != update.identity.generation {
            return update;
        }
        update.identity = known.identity.clone();
        // A claim about another never raises its incarnation: only the
        // member does (one signed at u64::MAX - 1 would otherwise run its
        // refutations out of incarnations).
        update.incarnation = update.incarnation.min(known.incarnation);
        if kind == Some(ClaimKind::Operator) {
            update.incarnation = known.incarnation;
            update.holds_slots = false;
        }
        update
    }

    /// Counts a signed vote to remove a member run; whether a strict
    /// majority of the placement ring (as this node counts it) has now
    /// voted, so the removal applies. Votes are relayed as they come.
    pub(super) fn removal_vote(&mut self, vote: &Update) -> bool {
        let target = vote.identity.id;
        let g = vote.identity.generation;
        let Some(known) = self.member(&target) else {
            return false;
        };
        let (cur_gen, cur_inc, removed) = (
            known.identity.generation,
            known.incarnation,
            known.ring == RingState::Removed,
        );
        let Some(voter) = vote.suspector else {
            return false;
        };
        if self.member(&voter).is_none() {
            return false;
        }
        if target == self.me.identity.id && g < cur_gen {
            // A vote about this node's previous run: it was here before.
            self.saw_previous_run = true;
        }
        let Some(sec) = self.security.as_deref_mut() else {
            return true;
        };
        let floor = sec.floors.get(&(target, g)).copied().unwrap_or(0);
        if g != cur_gen || vote.incarnation < floor {
            // An earlier run, or this run before it came back from a
            // removal (a replay); a later run this node does not know yet
            // votes again once it does.
            if g < cur_gen || vote.incarnation < floor {
                sec.verifier.stats.stale += 1;
            }
            return false;
        }
        // About this node, votes count whatever their incarnation since it
        // last came back: one that raised its incarnation while cut off
        // must still learn that the majority took it off the ring (see
        // `Swim::merge_own`).
        let about_me = target == self.me.identity.id;
        let min_inc = if about_me { floor } else { cur_inc };
        sec.votes.retain(|(t, vg), _| *t != target || *vg == g);
        let votes = sec.votes.entry((target, g)).or_default();
        let new = votes
            .get(&voter)
            .is_none_or(|v| v.incarnation < vote.incarnation);
        if new && votes.len() < MAX_VOTERS {
            votes.insert(voter, vote.clone());
        }
        if vote.incarnation < min_inc {
            // The member refuted since: the vote no longer counts against
            // it (kept only to see who was removed together, see
            // `removal_quorum`).
            sec.verifier.stats.stale += 1;
            return false;
        }
        if new {
            self.broadcasts.push(vote.clone());
        }
        if removed {
            return false;
        }
        if self.removal_quorum(target, g, min_inc) {
            self.confirm_removal(target);
            return true;
        }
        if new && voter != self.me.identity.id {
            if let Some(sec) = self.security.as_deref_mut() {
                sec.verifier.stats.removals_refused += 1;
            }
        }
        false
    }

    /// Notes what a member's full table (`members`, sent by run `from`,
    /// whose own claim verified) shows of this node: the highest incarnation of
    /// this run it holds alive, by this node's own signed claim.
    pub(super) fn note_table_view(&mut self, from: (NodeId, Generation), members: &[Update]) {
        let me = (self.me.identity.id, self.me.identity.generation);
        let max = self.config.max_members;
        if self.member(&from.0).map(|m| m.identity.generation) != Some(from.1) {
            // Only the sender's current run speaks for it (a made-up older
            // run would fill the table).
            return;
        }
        let Some(sec) = self.security.as_deref_mut() else {
            return;
        };
        // One run per member: a restart's view replaces its previous run's.
        sec.alive_at.retain(|(id, g), _| *id != from.0 || *g == from.1);
        let seen = members
            .iter()
            .filter(|u| {
                (u.identity.id, u.identity.generation) == me
                    && u.liveness == Liveness::Alive
                    && u.ring != RingState::Removed
                    && u.proof.as_ref().is_some_and(|p| p.kind == ClaimKind::Own)
            })
            .map(|u| u.incarnation)
            .max();
        let Some(seen) = seen else {
            return;
        };
        if !sec.alive_at.contains_key(&from) && sec.alive_at.len() >= max {
            return;
        }
        let at = sec.alive_at.entry(from).or_default();
        *at = (*at).max(seen);
    }

    /// Notes that run `g` of `id` came back from a removal at incarnation
    /// `incarnation` (as a joiner that refills): the votes that removed it
    /// are dropped, and a replay of one no longer counts.
    pub(super) fn came_back(&mut self, id: NodeId, g: Generation, incarnation: u64) {
        if self.security.is_none() {
            return;
        }
        let rejoined = (id == self.me.identity.id).then(|| self.seal(Update::of(&self.me)));
        let Some(sec) = self.security.as_deref_mut() else {
            return;
        };
        if rejoined.is_some() {
            sec.rejoined = rejoined;
        }
        sec.floors.retain(|(t, fg), _| *t != id || *fg == g);
        let floor = sec.floors.entry((id, g)).or_default();
        *floor = (*floor).max(incarnation);
        let floor = *floor;
        if let Some(votes) = sec.votes.get_mut(&(id, g)) {
            votes.retain(|_, v| v.incarnation >= floor);
        }
    }

    /// Adds this node's own vote to a removal that a majority decided,
    /// if this node too sees the member down and holds ring slots: the
    /// more of the ring's members vote, the more of those that count the
    /// ring differently later (after joins and restarts) see a majority.
    fn confirm_removal(&mut self, target: NodeId) {
        let me = self.me.identity.id;
        if target == me || !self.me.in_placement() {
            return;
        }
        let Some(known) = self.member(&target) else {
            return;
        };
        if known.liveness != Liveness::Down || self.voted(target, known.identity.generation) {
            return;
        }
        let mut vote = Update::of(known);
        vote.ring = RingState::Removed;
        vote.holds_slots = false;
        let vote = self.seal(vote);
        let key = (target, vote.identity.generation);
        if let Some(sec) = self.security.as_deref_mut() {
            let votes = sec.votes.entry(key).or_default();
            if votes.len() < MAX_VOTERS {
                votes.insert(me, vote.clone());
                self.broadcasts.push(vote);
            }
        }
    }

    /// Whether a strict majority of the placement ring, as this node
    /// counts it (the target included), voted to remove run `g` of
    /// `target` at incarnation `min_inc` or later.
    ///
    /// About this node itself, the ring first loses, one by one, the other
    /// members that a strict majority of it (as it stands at that step)
    /// voted to remove: a node cut off with others, and removed with them
    /// by the majority side, may count them as members still (their
    /// refutations, which it sees, outdate the votes about them), and would
    /// otherwise never learn of its removal and rejoin. Every step needs a
    /// majority of the ring as it then stands, so members that are a
    /// minority of this node's ring cannot take anyone off it, itself
    /// included, whatever they vote.
    fn removal_quorum(&self, target: NodeId, g: Generation, min_inc: u64) -> bool {
        let Some(sec) = self.security.as_ref() else {
            return false;
        };
        let mut ring: BTreeMap<NodeId, Generation> = self
            .members()
            .filter(|m| m.in_placement())
            .map(|m| (m.id(), m.identity.generation))
            .collect();
        let me = self.me.identity.id;
        let votes_for = |id: NodeId, g: Generation, min_inc: u64| {
            let floor = sec.floors.get(&(id, g)).copied().unwrap_or(0);
            sec.votes.get(&(id, g)).map(move |votes| {
                votes
                    .iter()
                    .filter(move |(voter, v)| {
                        v.incarnation >= min_inc.max(floor)
                            && (id != me || {
                                let run = v.proof.as_ref().map(|p| (**voter, p.signer_generation));
                                run.and_then(|run| sec.alive_at.get(&run))
                                    .is_none_or(|alive| v.incarnation >= *alive)
                            })
                    })
                    .map(|(voter, _)| *voter)
            })
        };
        let majority = |ring: &BTreeMap<NodeId, Generation>, id: NodeId, g: Generation, min_inc| {
            let voters = votes_for(id, g, min_inc).map_or(0, |vs| {
                vs.filter(|v| *v != id && ring.contains_key(v)).count()
            });
            voters * 2 > ring.len()
        };
        if target == self.me.identity.id {
            // Only the members voting about this node count to take others
            // out: the voters that removed it with others, cut off
            // together; old votes about others (replayed, or from before
            // they came back) by anyone else do not shrink the count.
            let mine: Vec<NodeId> = votes_for(target, g, min_inc)
                .map(|vs| vs.collect())
                .unwrap_or_default();
            let majority = |ring: &BTreeMap<NodeId, Generation>, id: NodeId, g: Generation| {
                let voters = votes_for(id, g, 0).map_or(0, |vs| {
                    vs.filter(|v| *v != id && ring.contains_key(v) && mine.contains(v))
                        .count()
                });
                voters * 2 > ring.len()
            };
            // Only members with votes about them can leave the count.
            let candidates: Vec<(NodeId, Generation)> = ring
                .iter()
                .filter(|(id, g)| **id != target && sec.votes.contains_key(&(**id, **g)))
                .map(|(id, g)| (*id, *g))
                .collect();
            let mut left = true;
            while left {
                left = false;
                for &(id, g) in &candidates {
                    if ring.contains_key(&id) && majority(&ring, id, g) {
                        ring.remove(&id);
                        left = true;
                    }
                }
            }
        }
        if majority(&ring, target, g, min_inc) {
            return true;
        }
        // About this node, or a strict majority of a ring it held lately,
        // for as long as it takes to remove a member: the one the voters
        // counted, when members joined since (a restart the voters did not
        // know when they voted). Rings held briefly (while a cluster
        // forms) do not count.
        let (now, settled) = (self.now, self.config.remove_after);
        target == self.me.identity.id
            && sec.held.iter().any(|held| {
                let until = held.until.unwrap_or(now);
                now.saturating_sub(until) <= HELD_RING_KEEP
                    && until.saturating_sub(held.since) >= settled
                    && held.members.contains(&target)
                    && {
                        let ring: BTreeMap<NodeId, Generation> =
                            held.members.iter().map(|id| (*id, g)).collect();
                        majority(&ring, target, g, min_inc)
                    }
            })
    }

    /// Notes that this node's placement ring is now `placement`.
    pub(super) fn held_ring(&mut self, placement: &[NodeId]) {
        let now = self.now;
        let Some(sec) = self.security.as_deref_mut() else {
            return;
        };
        if let Some(last) = sec.held.back_mut() {
            last.until.get_or_insert(now);
        }
        while sec.held.len() >= MAX_HELD_RINGS
            || sec
                .held
                .front()
                .and_then(|r| r.until)
                .is_some_and(|until| now.saturating_sub(until) > HELD_RING_KEEP)
        {
            sec.held.pop_front();
        }
        sec.held.push_back(HeldRing {
            members: placement.to_vec(),
            since: now,
            until: None,
        });
    }

    /// Whether this node already voted to remove run `g` of `id`.
    pub(super) fn voted(&self, id: NodeId, g: Generation) -> bool {
        self.security.as_ref().is_some_and(|s| {
            s.votes
                .get(&(id, g))
                .is_some_and(|v| v.contains_key(&self.me.identity.id))
        })
    }

    /// With signed membership, a restart learns that it keeps its
    /// previous run's slots from that run's (signed) state, as the members
    /// that knew the run work it out: relays cannot vouch for it, as they
    /// do unsigned by gossiping their own view of the restart.
    pub(super) fn keep_previous_slots(&mut self, previous: &Update) {
        let held = match previous.ring {
            RingState::Normal | RingState::Leaving => true,
            RingState::Joining => previous.holds_slots,
            RingState::Left | RingState::Removed => false,
        } && previous.liveness != Liveness::Left;
        if self.security.is_none()
            || !held
            || self.me.ring != RingState::Joining
            || self.me.holds_slots
        {
            return;
        }
        let before = self.me.clone();
        self.me.holds_slots = true;
        self.me.incarnation = self.me.incarnation.saturating_add(1);
        self.ring_dirty = true;
        self.broadcasts.push(Update::of(&self.me));
        self.changed(Some(before), self.me.clone());
    }

    /// Re-announces this node at a new incarnation, so that its claim,
    /// signed now, carries the certificate loaded now. After a certificate
    /// rotation the claim other members relay is otherwise the one signed
    /// with the old certificate, which receivers refuse once its CA leaves
    /// the trust bundle. Nothing else changes; without credentials, or once
    /// left, it does nothing.
    pub fn resign(&mut self, now: Duration) {
        if self.security.is_none() || self.me.liveness == Liveness::Left {
            return;
        }
        let before = self.me.clone();
        self.me.incarnation = self.me.incarnation.saturating_add(1);
        self.me.since = now;
        self.broadcasts.push(Update::of(&self.me));
        self.changed(Some(before), self.me.clone());
        // The kept joiner claim too, with the certificate loaded now.
        let rejoined = self
            .security
            .as_deref_mut()
            .and_then(|sec| sec.rejoined.take())
            .map(|mut claim| {
                claim.proof = None;
                self.seal(claim)
            });
        if let Some(sec) = self.security.as_deref_mut() {
            sec.rejoined = rejoined;
        }
    }

    /// Forgets every certificate verdict, learnt key and verified claim,
    /// after the trust bundle the credentials check with was reloaded: a
    /// claim whose CA was dropped stops verifying. Keys are learnt again
    /// from the next own claims members send; until then their claims
    /// about others are refused as unverifiable and come again by gossip.
    /// Without credentials it does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::membership::{Identity, Swim, SwimConfig};
    /// use gridkv::{Generation, NodeId};
    ///
    /// let me = Identity::new(NodeId::new("a").unwrap(), Generation::new(1), "a:1".to_owned());
    /// let mut swim = Swim::new(me, SwimConfig::lan(), vec![], 1, Duration::ZERO).unwrap();
    /// swim.trust_changed();
    /// assert_eq!(swim.security_stats().refused(), 0);
    /// ```
    pub fn trust_changed(&mut self) {
        if let Some(sec) = self.security.as_deref_mut() {
            sec.verifier.trust_changed();
        }
    }

    /// Counts a claim with a valid signature that is older than what this
    /// node knows.
    pub(super) fn note_stale(&mut self) {
        if let Some(sec) = self.security.as_deref_mut() {
            sec.verifier.stats.stale += 1;
        }
    }

    /// The signed claims a full table carries for one member: the claim
    /// that set its entry, and the votes to remove its current run that
    /// still apply (none once it came back at a later incarnation).
    pub(super) fn table_claims(&self, member: &Member, current: Update, out: &mut Vec<Update>) {
        let key = (member.identity.id, member.identity.generation);
        if let Some(votes) = self.security.as_ref().and_then(|s| s.votes.get(&key)) {
            let applies = |v: &Update| {
                member.ring == RingState::Removed || v.incarnation >= member.incarnation
            };
            out.extend(
                votes
                    .values()
                    .filter(|v| **v != current && applies(v))
                    .cloned(),
            );
        }
        out.push(current);
    }

    /// This node's claim as a joiner when it came back from its last
    /// removal, while it has moved on since (refilled, or refuted): a
    /// member that missed that claim still holds this run as removed, and
    /// takes it back only as a joiner; after this claim, the current one
    /// overrides it. Full tables carry it first for that reason.
    pub(super) fn rejoin_claim(&self) -> Option<Update> {
        let sec = self.security.as_ref()?;
        let claim = sec.rejoined.as_ref()?;
        (claim.identity.generation == self.me.identity.generation
            && claim.incarnation < self.me.incarnation)
            .then(|| claim.clone())
    }

    /// Drops the votes about a member this node forgot.
    pub(super) fn forget_votes(&mut self, id: NodeId) {
        if let Some(sec) = self.security.as_deref_mut() {
            sec.votes.retain(|(t, _), _| *t != id);
            sec.floors.retain(|(t, _), _| *t != id);
            sec.alive_at.retain(|(t, _), _| *t != id);
            // Its votes go too: a later run under the same id is a new
            // member, whose predecessor's votes must not count again.
            for votes in sec.votes.values_mut() {
                votes.remove(&id);
            }
        }
    }
}

/// The member lists a message carries.
fn members_mut(message: &mut Message) -> impl Iterator<Item = &mut Update> {
    match message {
        Message::JoinReply { members } | Message::PushPull { members, .. } => {
            Some(members.iter_mut())
        }
        _ => None,
    }
    .into_iter()
    .flatten()
}
