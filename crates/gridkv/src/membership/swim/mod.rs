//! The SWIM state machine (sans-IO): probes, suspicion, dissemination,
//! joins, leaves and ring-state changes, driven by packets and time.
//!
//! [`Swim`] never touches a socket or a clock. The caller feeds it packets
//! ([`Swim::handle_packet`]) and the current time ([`Swim::handle_timers`],
//! at [`Swim::next_deadline`] at the latest), and carries out what it asks
//! for ([`Swim::poll_output`]): packets to send and events to publish. Time
//! is a [`Duration`] since any fixed origin, and all randomness comes from
//! the seed, so a simulation replays exactly.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use super::broadcast::Broadcasts;
use super::config::{SwimConfig, SwimConfigError};
use super::member::{Identity, Liveness, Member, RingState};
use super::wire::{Message, Packet, Update, WireError};
use crate::id::{Generation, NodeId};
use crate::rng::SplitMix64;

/// Most member-table entries one join reply or push-pull packet carries;
/// larger tables go in several packets.
const TABLE_CHUNK: usize = 1024;
/// Largest membership packet accepted, checked before decoding. A full
/// table chunk with the longest labels is about 640 KiB.
pub const MAX_PACKET_BYTES: usize = 1 << 20;
/// Most indirect probes run for others at once, and most duplicate-id
/// checks pending at once; requests beyond are dropped (the requester
/// treats silence as a failed probe).
const MAX_FORWARDS: usize = 256;

/// Something the state machine asks its driver to do.
// Events are rare and short-lived; boxing them would cost an allocation
// each for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `packet` to the member at `to` (one-way, control lane).
    Send {
        /// A cluster address, `host:port`.
        to: String,
        /// An encoded [`Packet`].
        packet: Bytes,
    },
    /// Publish a membership event.
    Event(MemberEvent),
}

/// A change in what this node knows about the cluster.
///
/// # Examples
///
/// ```
/// use gridkv::membership::{Liveness, MemberEvent};
///
/// fn describe(event: &MemberEvent) -> String {
///     match event {
///         MemberEvent::Changed { member, .. } if member.liveness == Liveness::Down => {
///             format!("{} is down", member.id())
///         }
///         MemberEvent::RingChanged { version } => format!("ring v{version}"),
///         other => format!("{other:?}"),
///     }
/// }
/// assert_eq!(describe(&MemberEvent::RingChanged { version: 3 }), "ring v3");
/// ```
#[allow(clippy::large_enum_variant)] // as for `Output`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// A member was seen for the first time (`previous` is `None`), or its
    /// liveness, ring state or generation changed. The local node's own
    /// ring-state changes are reported too.
    Changed {
        /// The state before, if it was known.
        previous: Option<Member>,
        /// The state now.
        member: Member,
    },
    /// A left or removed member was dropped from the table after
    /// [`SwimConfig::forget_after`].
    Forgotten {
        /// Its id.
        id: NodeId,
    },
    /// The set of ring members changed; see [`Swim::ring_members`].
    RingChanged {
        /// The ring's new version (local to this node, increasing).
        version: u64,
    },
    /// This node has joined: a member answered its join, or it has no seeds
    /// and is a one-node cluster.
    Joined,
    /// A seed refused this node's join: a live member already uses its id.
    /// The node should stop.
    JoinRefused {
        /// The address of the member holding the id.
        holder: String,
    },
    /// Gossip names a newer run of this node's own id: another process
    /// uses the same id.
    IdConflict {
        /// The other claimant.
        other: Identity,
    },
}

/// Who holds ring slots, as of one version. The replication layer builds
/// its rings from this.
///
/// - `placement`: the designated owners: normal and leaving members
///   (down or not, until removed), and restarts refilling their slots.
/// - `future`: who owns once pending changes finish: placement minus
///   leaving members, plus joining ones. Writes go to the owners in both.
/// - Reads are served only by members for which [`Member::serves_reads`]
///   holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RingMembers {
    /// Increases whenever either set changes.
    pub version: u64,
    /// Designated owners, sorted.
    pub placement: Vec<NodeId>,
    /// Owners after pending joins and leaves, sorted.
    pub future: Vec<NodeId>,
}

#[derive(Debug)]
struct Entry {
    member: Member,
    suspicion: Option<Suspicion>,
    /// When the member became left or removed.
    final_since: Option<Duration>,
}

#[derive(Debug)]
struct Suspicion {
    incarnation: u64,
    start: Duration,
    min: Duration,
    max: Duration,
    /// The first suspector and every distinct confirmer.
    suspectors: BTreeSet<NodeId>,
}

impl Suspicion {
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

#[derive(Debug)]
enum ProbeStage {
    Direct,
    Indirect { expected_nacks: u32 },
}

#[derive(Debug)]
struct Probe {
    seq: u64,
    target: NodeId,
    generation: Generation,
    deadline: Duration,
    stage: ProbeStage,
    nacks: u32,
}

#[derive(Debug)]
struct Forward {
    requester: String,
    seq: u64,
    deadline: Duration,
}

#[derive(Debug)]
struct IdCheck {
    joiner: Update,
    holder: Identity,
    deadline: Duration,
}

/// The sequence numbers in `pending` whose deadline has passed.
fn expired<T>(
    pending: &BTreeMap<u64, T>,
    now: Duration,
    deadline: impl Fn(&T) -> Duration,
) -> Vec<u64> {
    pending
        .iter()
        .filter(|(_, p)| deadline(p) <= now)
        .map(|(seq, _)| *seq)
        .collect()
}

/// The SWIM membership protocol of one node, with Lifeguard's local health
/// and dynamic suspicion timeouts, a member table with ring states, and
/// joins through seeds.
///
/// # Examples
///
/// Two nodes, with the "network" being a loop that hands packets over:
///
/// ```
/// use std::time::Duration;
/// use gridkv::membership::{Identity, Liveness, Output, Swim, SwimConfig};
/// use gridkv::{Generation, NodeId};
///
/// let id = |s| Identity::new(NodeId::new(s).unwrap(), Generation::new(1), format!("{s}:1"));
/// let t0 = Duration::ZERO;
/// let mut a = Swim::new(id("a"), SwimConfig::lan(), vec![], 1, t0).unwrap();
/// let mut b = Swim::new(id("b"), SwimConfig::lan(), vec!["a:1".into()], 2, t0).unwrap();
///
/// let mut now = t0;
/// for _ in 0..50 {
///     now += Duration::from_millis(20);
///     for (node, other) in [(&mut a, "b:1"), (&mut b, "a:1")] {
///         node.handle_timers(now);
///         let _ = other;
///     }
///     // Deliver everything each node wants sent.
///     let mut to_a = vec![];
///     let mut to_b = vec![];
///     for (node, inbox) in [(&mut a, &mut to_b), (&mut b, &mut to_a)] {
///         while let Some(out) = node.poll_output() {
///             if let Output::Send { packet, .. } = out {
///                 inbox.push(packet);
///             }
///         }
///     }
///     for p in to_a { a.handle_packet(now, &p).unwrap(); }
///     for p in to_b { b.handle_packet(now, &p).unwrap(); }
/// }
/// assert!(b.is_joined());
/// assert_eq!(a.members().count(), 2);
/// assert!(a.members().all(|m| m.liveness == Liveness::Alive));
/// ```
#[derive(Debug)]
pub struct Swim {
    config: SwimConfig,
    me: Member,
    members: BTreeMap<NodeId, Entry>,
    seeds: Vec<String>,
    rng: SplitMix64,
    seq: u64,
    probe_order: Vec<NodeId>,
    probe_pos: usize,
    probe: Option<Probe>,
    next_probe: Duration,
    forwards: BTreeMap<u64, Forward>,
    id_checks: BTreeMap<u64, IdCheck>,
    broadcasts: Broadcasts,
    local_health: u32,
    next_push_pull: Duration,
    next_join: Duration,
    next_sweep: Duration,
    joined: bool,
    refused: bool,
    conflicts_seen: BTreeSet<(u64, String)>,
    outputs: VecDeque<Output>,
    ring: RingMembers,
    ring_dirty: bool,
    saw_previous_run: bool,
}

impl Swim {
    /// A node that has not joined yet. It joins through `seeds` (its own
    /// address among them is skipped); with no other seed it is a one-node
    /// cluster at once. Its ring state starts as joining: call
    /// [`Swim::mark_filled`] once its ranges are filled.
    ///
    /// # Errors
    ///
    /// The config's [`SwimConfigError`].
    pub fn new(
        identity: Identity,
        config: SwimConfig,
        seeds: Vec<String>,
        rng_seed: u64,
        now: Duration,
    ) -> Result<Swim, SwimConfigError> {
        config.validate()?;
        if identity.addr.len() > Identity::MAX_LABEL
            || identity.datacenter.len() > Identity::MAX_LABEL
        {
            return Err(SwimConfigError {
                field: "identity",
                reason: "address and datacenter must be at most 255 bytes",
            });
        }
        let seeds: Vec<String> = seeds.into_iter().filter(|s| *s != identity.addr).collect();
        let mut me = Member::new(identity);
        me.since = now;
        let mut swim = Swim {
            next_probe: now + config.probe_interval,
            next_push_pull: now + config.push_pull_interval,
            next_sweep: now + config.probe_interval,
            next_join: now,
            config,
            me,
            members: BTreeMap::new(),
            joined: seeds.is_empty(),
            seeds,
            rng: SplitMix64::new(rng_seed),
            seq: 0,
            probe_order: Vec::new(),
            probe_pos: 0,
            probe: None,
            forwards: BTreeMap::new(),
            id_checks: BTreeMap::new(),
            broadcasts: Broadcasts::default(),
            local_health: 0,
            refused: false,
            conflicts_seen: BTreeSet::new(),
            outputs: VecDeque::new(),
            ring: RingMembers::default(),
            ring_dirty: true,
            saw_previous_run: false,
        };
        if swim.joined {
            swim.outputs.push_back(Output::Event(MemberEvent::Joined));
        }
        swim.refresh_ring();
        Ok(swim)
    }

    /// This node's own state.
    pub fn local(&self) -> &Member {
        &self.me
    }

    /// Every known member, this node first, then by id. Includes down, left
    /// and removed members until they are forgotten.
    pub fn members(&self) -> impl Iterator<Item = &Member> + '_ {
        std::iter::once(&self.me).chain(self.members.values().map(|e| &e.member))
    }

    /// One member's state (this node's own for its own id).
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        if *id == self.me.identity.id {
            return Some(&self.me);
        }
        self.members.get(id).map(|e| &e.member)
    }

    /// Whether a member has answered this node's join (or it needs none).
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Whether a seed refused this node (its id is in use).
    pub fn is_refused(&self) -> bool {
        self.refused
    }

    /// Whether this node has seen its own id under an earlier generation:
    /// it is a restart of a node the cluster knew (recently enough to still
    /// be in some member's table).
    pub fn saw_previous_run(&self) -> bool {
        self.saw_previous_run
    }

    /// Lifeguard's local health multiplier: 0 when this node's probes are
    /// answered, up to [`SwimConfig::max_local_health`] when they are not
    /// (this node is likely the slow one, so it waits longer).
    pub fn local_health(&self) -> u32 {
        self.local_health
    }

    /// The current ring members and their version.
    pub fn ring_members(&self) -> &RingMembers {
        &self.ring
    }

    /// The config in use.
    pub fn config(&self) -> &SwimConfig {
        &self.config
    }

    /// Updates queued for dissemination (for metrics).
    pub fn pending_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    /// The next output, if any. Drain after every call that takes `now`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The latest time by which [`Swim::handle_timers`] must run next.
    /// A node that has left or was refused has no timers
    /// ([`Duration::MAX`]).
    pub fn next_deadline(&self) -> Duration {
        if self.me.liveness == Liveness::Left || self.refused {
            return Duration::MAX;
        }
        let mut next = self
            .next_probe
            .min(self.next_push_pull)
            .min(self.next_sweep);
        if !self.joined && !self.refused {
            next = next.min(self.next_join);
        }
        if let Some(p) = &self.probe {
            next = next.min(p.deadline);
        }
        if let Some(f) = self.forwards.values().map(|f| f.deadline).min() {
            next = next.min(f);
        }
        if let Some(c) = self.id_checks.values().map(|c| c.deadline).min() {
            next = next.min(c);
        }
        next
    }

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

    /// Handles one packet from the network.
    ///
    /// # Errors
    ///
    /// [`WireError`] for a packet that does not decode; nothing is applied.
    pub fn handle_packet(&mut self, now: Duration, bytes: &[u8]) -> Result<(), WireError> {
        if bytes.len() > MAX_PACKET_BYTES {
            return Err(WireError::Invalid {
                field: "packet size",
            });
        }
        let packet = Packet::decode(bytes)?;
        self.handle(now, packet);
        self.refresh_ring();
        Ok(())
    }

    /// Runs every timer due at `now`: probes and their timeouts, suspicion
    /// timeouts, push-pull, join retries, removal of long-down members and
    /// forgetting of old entries.
    pub fn handle_timers(&mut self, now: Duration) {
        if self.me.liveness == Liveness::Left || self.refused {
            return;
        }
        self.probe_timers(now);
        if now >= self.next_probe {
            self.start_probe(now);
            self.next_probe = now + self.config.probe_interval * (1 + self.local_health);
        }
        self.forward_timers(now);
        self.id_check_timers(now);
        if now >= self.next_sweep {
            self.sweep(now);
            self.next_sweep = now + self.config.probe_interval / 2;
        }
        if now >= self.next_push_pull {
            self.push_pull(now);
            let interval = self.config.push_pull_interval * self.push_pull_scale();
            let jitter = self.jitter(interval);
            self.next_push_pull = now + jitter;
        }
        let lonely = !self
            .members
            .values()
            .any(|e| e.member.liveness.is_reachable());
        if (!self.joined || lonely) && now >= self.next_join {
            self.send_joins();
            let jitter = self.jitter(self.config.join_retry);
            self.next_join = now + jitter;
        }
        self.refresh_ring();
    }

    // ---- packets ----

    fn handle(&mut self, now: Duration, packet: Packet) {
        if self.me.liveness == Liveness::Left || self.refused {
            return;
        }
        let from = packet.from;
        if from.identity.id == self.me.identity.id {
            self.on_own_id(&from, &packet.message);
            return;
        }
        if matches!(packet.message, Message::Join) && self.check_join_conflict(now, &from) {
            return;
        }
        let from_addr = from.identity.addr.clone();
        self.merge(now, from);
        for update in packet.updates {
            self.merge(now, update);
        }
        match packet.message {
            Message::Ping { seq, target } => {
                if target == self.me.identity.id {
                    self.send(from_addr, Message::Ack { seq });
                }
            }
            Message::Ack { seq } => self.on_ack(now, seq),
            Message::PingReq {
                seq,
                target,
                target_addr,
            } => {
                if self.forwards.len() < MAX_FORWARDS {
                    let own = self.next_seq();
                    self.forwards.insert(
                        own,
                        Forward {
                            requester: from_addr,
                            seq,
                            // Nack before the requester gives up, so the
                            // nack counts (Lifeguard uses 80%).
                            deadline: now + self.scaled(self.config.probe_timeout).mul_f64(0.8),
                        },
                    );
                    self.send(target_addr, Message::Ping { seq: own, target });
                }
            }
            Message::Nack { seq } => {
                if let Some(p) = &mut self.probe {
                    if p.seq == seq {
                        p.nacks += 1;
                    }
                }
            }
            Message::Join => self.send_table(from_addr, false, true),
            Message::JoinReply { members } => {
                for update in members {
                    self.merge(now, update);
                }
                self.set_joined();
            }
            Message::JoinRefused { holder } => {
                if !self.joined {
                    self.refused = true;
                    self.outputs
                        .push_back(Output::Event(MemberEvent::JoinRefused { holder }));
                }
            }
            Message::PushPull { members, reply } => {
                for update in members {
                    self.merge(now, update);
                }
                if reply {
                    self.send_table(from_addr, false, false);
                }
                // A member answered: this node is part of a cluster.
                self.set_joined();
            }
        }
    }

    fn set_joined(&mut self) {
        if !self.joined {
            self.joined = true;
            self.outputs.push_back(Output::Event(MemberEvent::Joined));
        }
    }

    /// A packet signed with this node's own id: our own (a seed list that
    /// names us through another address), or another process using our id.
    fn on_own_id(&mut self, from: &Update, message: &Message) {
        if from.identity.generation == self.me.identity.generation {
            return;
        }
        if matches!(message, Message::Join) {
            // We are alive and hold this id: the newcomer is refused.
            let holder = self.me.identity.addr.clone();
            self.send_raw(
                from.identity.addr.clone(),
                Message::JoinRefused { holder },
                Vec::new(),
            );
        } else {
            self.report_conflict(&from.identity);
        }
    }

    fn report_conflict(&mut self, other: &Identity) {
        let key = (other.generation.get(), other.addr.clone());
        if self.conflicts_seen.len() < 64 && self.conflicts_seen.insert(key) {
            tracing::error!(
                id = %self.me.identity.id,
                other_addr = %other.addr,
                "another node uses this node's id"
            );
            self.outputs
                .push_back(Output::Event(MemberEvent::IdConflict {
                    other: other.clone(),
                }));
        }
    }

    /// A join from an id a live member already holds under another
    /// generation. Returns whether the join is held back: refused at once
    /// (an older generation), or until the holder has been probed.
    fn check_join_conflict(&mut self, now: Duration, joiner: &Update) -> bool {
        let id = joiner.identity.id;
        if self.id_checks.values().any(|c| c.joiner.identity.id == id) {
            return true;
        }
        let Some(entry) = self.members.get(&id) else {
            return false;
        };
        let holder = &entry.member;
        if holder.identity.generation == joiner.identity.generation
            || !holder.liveness.is_reachable()
            || matches!(holder.ring, RingState::Left | RingState::Removed)
        {
            return false;
        }
        if joiner.identity.generation < holder.identity.generation {
            let holder = holder.identity.addr.clone();
            self.send_raw(
                joiner.identity.addr.clone(),
                Message::JoinRefused { holder },
                Vec::new(),
            );
            return true;
        }
        if self.id_checks.len() >= MAX_FORWARDS {
            return true;
        }
        // A later generation: a restart, unless the holder still answers.
        let holder = holder.identity.clone();
        let seq = self.next_seq();
        let to = holder.addr.clone();
        self.id_checks.insert(
            seq,
            IdCheck {
                joiner: joiner.clone(),
                holder,
                deadline: now + self.scaled(self.config.probe_timeout) * 2,
            },
        );
        self.send(to, Message::Ping { seq, target: id });
        true
    }

    fn on_ack(&mut self, now: Duration, seq: u64) {
        if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
            self.probe = None;
            self.local_health = self.local_health.saturating_sub(1);
            return;
        }
        if let Some(f) = self.forwards.remove(&seq) {
            self.send(f.requester, Message::Ack { seq: f.seq });
            return;
        }
        if let Some(check) = self.id_checks.remove(&seq) {
            // Who answered was merged already; the holder's generation
            // still being the one we know means it is alive.
            let alive = self.members.get(&check.holder.id).is_some_and(|e| {
                e.member.identity.generation == check.holder.generation
                    && e.member.liveness.is_reachable()
            });
            if alive {
                tracing::warn!(
                    id = %check.holder.id,
                    holder = %check.holder.addr,
                    joiner = %check.joiner.identity.addr,
                    "join refused: a live member already uses this id"
                );
                self.send_raw(
                    check.joiner.identity.addr.clone(),
                    Message::JoinRefused {
                        holder: check.holder.addr,
                    },
                    Vec::new(),
                );
            } else {
                self.accept_join(now, check.joiner);
            }
        }
    }

    fn accept_join(&mut self, now: Duration, joiner: Update) {
        let addr = joiner.identity.addr.clone();
        self.merge(now, joiner);
        self.send_table(addr, false, true);
    }

    // ---- merging ----

    fn merge(&mut self, now: Duration, update: Update) {
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
                },
            );
            if reachable {
                self.add_to_probe_order(id);
            }
            self.broadcasts.push(update);
            self.ring_dirty = true;
            self.changed(None, member);
            return;
        };
        if !update.overrides(&entry.member) {
            self.confirm_suspicion(now, &update);
            return;
        }
        let previous = entry.member.clone();
        let restarted = update.identity.generation != previous.identity.generation;
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
        let mut gossip = update;
        gossip.holds_slots = member.holds_slots;
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

    /// News about this node itself: refute anything but "alive" by raising
    /// the incarnation.
    fn merge_own(&mut self, update: Update) {
        let gen = update.identity.generation;
        if gen != self.me.identity.generation {
            if gen > self.me.identity.generation {
                self.report_conflict(&update.identity);
            } else {
                self.saw_previous_run = true;
            }
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

    fn confirm_suspicion(&mut self, now: Duration, update: &Update) {
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
        let _ = now;
    }

    fn start_suspicion(&mut self, now: Duration, id: NodeId, incarnation: u64, by: NodeId) {
        let n = self.members.len() + 1;
        let scale = (n as f64).log10().max(1.0);
        let health = 1 + self.local_health;
        let min = self.config.suspicion_min.mul_f64(scale) * health;
        let max = self.config.suspicion_max.mul_f64(scale) * health;
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
    fn suspect(&mut self, now: Duration, id: NodeId, generation: Generation) {
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
                Some((inc, false)) if inc == incarnation => self.confirm_suspicion(now, &update),
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

    // ---- timers ----

    fn start_probe(&mut self, now: Duration) {
        if self.probe.is_some() {
            return;
        }
        let Some(target) = self.next_probe_target() else {
            return;
        };
        let (generation, addr) = {
            let m = &self.members[&target].member;
            (m.identity.generation, m.identity.addr.clone())
        };
        let seq = self.next_seq();
        self.probe = Some(Probe {
            seq,
            target,
            generation,
            deadline: now + self.scaled(self.config.probe_timeout),
            stage: ProbeStage::Direct,
            nacks: 0,
        });
        self.send(addr, Message::Ping { seq, target });
    }

    fn next_probe_target(&mut self) -> Option<NodeId> {
        for _ in 0..2 {
            while self.probe_pos < self.probe_order.len() {
                let id = self.probe_order[self.probe_pos];
                self.probe_pos += 1;
                if self
                    .members
                    .get(&id)
                    .is_some_and(|e| e.member.liveness.is_reachable())
                {
                    return Some(id);
                }
            }
            // A round is over: reshuffle the reachable members.
            let mut order: Vec<NodeId> = self
                .members
                .iter()
                .filter(|(_, e)| e.member.liveness.is_reachable())
                .map(|(id, _)| *id)
                .collect();
            self.shuffle(&mut order);
            self.probe_order = order;
            self.probe_pos = 0;
        }
        None
    }

    fn add_to_probe_order(&mut self, id: NodeId) {
        // At a random place in the rest of this round, so a new member is
        // probed within one round.
        if self.probe_order[self.probe_pos..].contains(&id) {
            return;
        }
        let rest = self.probe_order.len() - self.probe_pos;
        let at = self.probe_pos + (self.rng.next_u64() % (rest as u64 + 1)) as usize;
        self.probe_order.insert(at, id);
    }

    fn probe_timers(&mut self, now: Duration) {
        let Some(probe) = &self.probe else {
            return;
        };
        if now < probe.deadline {
            return;
        }
        match probe.stage {
            ProbeStage::Direct => {
                let (seq, target) = (probe.seq, probe.target);
                let target_addr = self
                    .members
                    .get(&target)
                    .map(|e| e.member.identity.addr.clone())
                    .unwrap_or_default();
                let mut helpers: Vec<String> = self
                    .members
                    .iter()
                    .filter(|(id, e)| **id != target && e.member.liveness == Liveness::Alive)
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
                let deadline = now + self.scaled(self.config.probe_timeout);
                if let Some(p) = &mut self.probe {
                    p.stage = ProbeStage::Indirect { expected_nacks };
                    p.deadline = deadline;
                }
            }
            ProbeStage::Indirect { expected_nacks } => {
                let missed = expected_nacks.saturating_sub(probe.nacks);
                let (target, generation) = (probe.target, probe.generation);
                self.probe = None;
                // Helpers that did not even nack suggest this node is the
                // one with the problem (Lifeguard).
                self.local_health = (self.local_health + missed).min(self.config.max_local_health);
                self.suspect(now, target, generation);
            }
        }
    }

    fn forward_timers(&mut self, now: Duration) {
        for seq in expired(&self.forwards, now, |f| f.deadline) {
            if let Some(f) = self.forwards.remove(&seq) {
                self.send(f.requester, Message::Nack { seq: f.seq });
            }
        }
    }

    fn id_check_timers(&mut self, now: Duration) {
        for seq in expired(&self.id_checks, now, |c| c.deadline) {
            if let Some(check) = self.id_checks.remove(&seq) {
                // The holder did not answer: the joiner is its restart.
                self.accept_join(now, check.joiner);
            }
        }
    }

    /// Suspicion timeouts, removal of long-down members, forgetting.
    fn sweep(&mut self, now: Duration) {
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
        if self.can_remove() {
            let remove_after = self.config.remove_after;
            let long_down: Vec<NodeId> = self
                .members
                .iter()
                .filter(|(_, e)| {
                    e.member.liveness == Liveness::Down
                        && e.member.ring != RingState::Removed
                        && now.saturating_sub(e.member.since) >= remove_after
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
            self.outputs
                .push_back(Output::Event(MemberEvent::Forgotten { id }));
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

    fn push_pull(&mut self, _now: Duration) {
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

    fn send_joins(&mut self) {
        for seed in self.seeds.clone() {
            self.send(seed, Message::Join);
        }
    }

    // ---- sending ----

    /// Sends the whole member table (this node included) in chunks.
    fn send_table(&mut self, to: String, reply: bool, join_reply: bool) {
        let all: Vec<Update> = self.members().map(Update::of).collect();
        let chunks = all.chunks(TABLE_CHUNK).count();
        for (i, chunk) in all.chunks(TABLE_CHUNK).enumerate() {
            let members = chunk.to_vec();
            let message = if join_reply {
                Message::JoinReply { members }
            } else {
                // One answer per exchange: only the last chunk asks.
                Message::PushPull {
                    members,
                    reply: reply && i + 1 == chunks,
                }
            };
            self.send_raw(to.clone(), message, Vec::new());
        }
    }

    /// Sends `message` with piggybacked gossip.
    ///
    /// A ping to a member this node suspects carries that suspicion
    /// (Lifeguard's buddy system), so the member can refute at once.
    fn send(&mut self, to: String, message: Message) {
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

    fn send_raw(&mut self, to: String, message: Message, updates: Vec<Update>) {
        let packet = Packet {
            from: Update::of(&self.me),
            message,
            updates,
        };
        self.outputs.push_back(Output::Send {
            to,
            packet: Bytes::from(packet.encode()),
        });
    }

    // ---- helpers ----

    fn set_own_ring(&mut self, now: Duration, ring: RingState) {
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

    fn changed(&mut self, previous: Option<Member>, member: Member) {
        self.outputs
            .push_back(Output::Event(MemberEvent::Changed { previous, member }));
    }

    fn refresh_ring(&mut self) {
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

    /// Full-table exchanges grow with the table, so above 32 members they
    /// slow down: ×(1 + ⌈log2(n / 32)⌉), like memberlist.
    fn push_pull_scale(&self) -> u32 {
        let n = self.members.len() + 1;
        if n <= 32 {
            return 1;
        }
        1 + (n as f64 / 32.0).log2().ceil() as u32
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn scaled(&self, d: Duration) -> Duration {
        d * (1 + self.local_health)
    }

    /// `d` scaled by a random factor in [0.75, 1.25).
    fn jitter(&mut self, d: Duration) -> Duration {
        let f = 0.75 + self.rng.unit() * 0.5;
        d.mul_f64(f)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn swim(name: &str, seeds: &[&str]) -> Swim {
        let id = Identity::new(
            NodeId::new(name).unwrap(),
            Generation::new(1),
            format!("{name}:1"),
        );
        let seeds = seeds.iter().map(|s| s.to_string()).collect();
        Swim::new(id, SwimConfig::lan(), seeds, 7, Duration::ZERO).unwrap()
    }

    #[test]
    fn no_seeds_is_a_one_node_cluster_and_own_address_is_skipped() {
        let mut a = swim("a", &["a:1"]);
        assert!(a.is_joined());
        assert_eq!(a.poll_output(), Some(Output::Event(MemberEvent::Joined)));
        a.handle_timers(Duration::from_secs(5));
        // Nothing to send to: it never dials itself.
        while let Some(out) = a.poll_output() {
            assert!(!matches!(out, Output::Send { .. }), "{out:?}");
        }
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

    /// `a`, knowing `x` and `y` (from a join reply sent by `x`).
    fn a_knowing_x_and_y() -> (Swim, Update, Update) {
        let mut a = swim("a", &["x:1"]);
        let x = Update::of(swim("x", &[]).local());
        let y = Update::of(swim("y", &[]).local());
        let reply = Packet {
            from: x.clone(),
            message: Message::JoinReply {
                members: vec![x.clone(), y.clone()],
            },
            updates: vec![],
        };
        a.handle_packet(Duration::ZERO, &reply.encode()).unwrap();
        (a, x, y)
    }

    fn sent(a: &mut Swim) -> Vec<(String, Packet)> {
        std::iter::from_fn(|| a.poll_output())
            .filter_map(|o| match o {
                Output::Send { to, packet } => Some((to, Packet::decode(&packet).unwrap())),
                _ => None,
            })
            .collect()
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

    #[test]
    fn oversized_packets_are_refused_before_decoding() {
        let mut a = swim("a", &[]);
        let huge = vec![WIRE_VERSION_FOR_TESTS; MAX_PACKET_BYTES + 1];
        assert_eq!(
            a.handle_packet(Duration::ZERO, &huge),
            Err(WireError::Invalid {
                field: "packet size"
            })
        );
    }

    const WIRE_VERSION_FOR_TESTS: u8 = super::super::wire::WIRE_VERSION;

    #[test]
    fn garbage_is_an_error_and_changes_nothing() {
        let mut a = swim("a", &[]);
        while a.poll_output().is_some() {}
        assert!(a.handle_packet(Duration::ZERO, b"\x01garbage").is_err());
        assert!(a.poll_output().is_none());
        assert_eq!(a.members().count(), 1);
    }
}
