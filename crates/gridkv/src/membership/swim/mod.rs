//! The SWIM state machine (sans-IO): probes, suspicion, dissemination,
//! joins, leaves and ring-state changes, driven by packets and time.
//!
//! [`Swim`] never touches a socket or a clock. The caller feeds it packets
//! ([`Swim::handle_packet`]) and the current time ([`Swim::handle_timers`],
//! at [`Swim::next_deadline`] at the latest), and carries out what it asks
//! for ([`Swim::poll_output`]): packets to send and events to publish. Time
//! is a [`Duration`] since any fixed origin, and all randomness comes from
//! the seed, so a simulation replays exactly.
//!
//! This file holds the state, the public entry points and the packet
//! dispatch; each concern's `impl Swim` block is a file of its own:
//! `probe` (probe schedule, direct and indirect probes, acks),
//! `suspicion` (suspect, confirm, time out, refute), `gossip` (merging
//! updates, piggybacking, push-pull), `joins` (seeds, join answers, id
//! checks) and `ring` (ring states, leaving, removal, forgetting). Round
//! trips also measure peers' clocks ([`ClockMonitor`]): the driver tells
//! the state machine its clocks ([`Swim::observe_clock`]) and every packet
//! carries them.

mod gossip;
mod joins;
mod probe;
mod ring;
mod secure;
mod suspicion;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use self::joins::IdCheck;
use self::probe::{Forward, Probe};
pub use self::ring::RingMembers;
use self::secure::Security;
use self::suspicion::Suspicion;
use super::broadcast::Broadcasts;
use super::clock::{ClockMonitor, ClockView, Weighed};
use super::config::SwimConfig;
use super::member::{Identity, Liveness, Member};
use super::wire::{ClockReading, Message, Packet, Update, WireError};
use crate::config_error::ConfigError;
use crate::id::NodeId;
use crate::rng::SplitMix64;

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
    /// The set of ring members changed (who holds ring slots now and after
    /// pending changes).
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

/// One member in this node's table, with what this node times for it.
#[derive(Debug)]
struct Entry {
    member: Member,
    suspicion: Option<Suspicion>,
    /// When the member became left or removed.
    final_since: Option<Duration>,
    /// The smoothed round trip of this node's direct probes of it (`None`
    /// until one was answered).
    rtt: Option<Duration>,
    /// With signed membership: the signed claim that last set the entry,
    /// re-gossiped unchanged.
    claim: Option<Update>,
    /// With signed membership, for a restart of a member that held ring
    /// slots: the signed claim of its previous run, shown to it in the
    /// join reply so that it keeps those slots while it refills.
    previous_run: Option<Update>,
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
    /// Per link kind (LAN, WAN): the probe round's order and position.
    probe_order: [Vec<NodeId>; 2],
    probe_pos: [usize; 2],
    /// Probes in flight: at most one per link kind, so a slow WAN probe
    /// never holds up the probing of this node's own datacenter.
    probes: Vec<Probe>,
    /// Per datacenter with members: whether one of them was alive at the
    /// last sweep, and since when that has been so (see
    /// `remove_long_down`). One entry per label members carry.
    datacenters: BTreeMap<String, (bool, Duration)>,
    next_probe: Duration,
    forwards: BTreeMap<u64, Forward>,
    /// Indirect probes refused: their target was not a member's address.
    probe_requests_refused: u64,
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
    /// This node's clocks as of the last [`Swim::observe_clock`].
    clock_reading: ClockReading,
    clock: ClockMonitor,
    /// Credentials and verification state, with signed membership.
    security: Option<Box<Security>>,
    /// The cluster name signatures cover.
    cluster: String,
    /// The time of the last packet, timer or update handled.
    now: Duration,
}

impl Swim {
    /// A node that has not joined yet. It joins through `seeds` (its own
    /// address among them is skipped); with no other seed it is a one-node
    /// cluster at once. Its ring state starts as joining: call
    /// [`Swim::mark_filled`] once its ranges are filled.
    ///
    /// # Errors
    ///
    /// The config's [`ConfigError`], or one for an `identity` label too
    /// long to gossip.
    pub fn new(
        identity: Identity,
        config: SwimConfig,
        seeds: Vec<String>,
        rng_seed: u64,
        now: Duration,
    ) -> Result<Swim, ConfigError> {
        config.validate()?;
        if identity.addr.len() > Identity::MAX_LABEL
            || identity.datacenter.len() > Identity::MAX_LABEL
            || identity.rack.len() > Identity::MAX_LABEL
        {
            return Err(ConfigError::new(
                "membership",
                "identity",
                "address, datacenter and rack must be at most 255 bytes",
            ));
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
            probe_order: [Vec::new(), Vec::new()],
            probe_pos: [0, 0],
            probes: Vec::new(),
            datacenters: BTreeMap::new(),
            forwards: BTreeMap::new(),
            probe_requests_refused: 0,
            id_checks: BTreeMap::new(),
            broadcasts: Broadcasts::default(),
            local_health: 0,
            refused: false,
            conflicts_seen: BTreeSet::new(),
            outputs: VecDeque::new(),
            ring: RingMembers::default(),
            ring_dirty: true,
            saw_previous_run: false,
            clock_reading: ClockReading::default(),
            clock: ClockMonitor::default(),
            security: None,
            cluster: String::new(),
            now,
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

    /// Tells the state machine this node's clocks, read just now: the
    /// packets it sends from now on carry them, and round trips are
    /// measured against them. A driver calls it before each
    /// [`Swim::handle_packet`] and [`Swim::handle_timers`]; one that never
    /// does sends zeros, which peers ignore.
    pub fn observe_clock(&mut self, reading: ClockReading) {
        self.clock_reading = reading;
    }

    /// What the round trips measured of this node's clock against the
    /// members it reaches at `now` (see [`ClockView`]), against a bound
    /// of `bound_ms`.
    pub fn clock_view(&self, now: Duration, bound_ms: u64) -> ClockView {
        self.clock.view(now, &self.weighed(), bound_ms)
    }

    /// The highest HLC timestamp every member vouched for, once every
    /// member that counts (neither left nor removed) is reachable and has
    /// sent one in this run: no version any of them merged is above it.
    pub fn clock_floor(&self) -> Option<u64> {
        self.clock.floor_of_all(&self.weighed())
    }

    /// This node's wall clock stepped by `step_ms` (forwards when
    /// positive), as its driver saw against monotonic time: the
    /// measurements taken against the old reading, and the pings still
    /// out, are moved to the new one.
    pub fn shift_clock(&mut self, step_ms: i64) {
        self.clock.shift(step_ms);
        self.shift_pending_probes(step_ms);
    }

    /// The clock monitor's records (samples per member).
    pub fn clock_monitor(&self) -> &ClockMonitor {
        &self.clock
    }

    /// Every other member as the clock monitor weighs it.
    fn weighed(&self) -> Vec<Weighed> {
        use super::member::RingState;
        self.members
            .values()
            .map(|e| Weighed {
                id: e.member.identity.id,
                reachable: e.member.liveness.is_reachable(),
                counts: e.member.liveness != Liveness::Left
                    && !matches!(e.member.ring, RingState::Left | RingState::Removed),
            })
            .collect()
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

    /// Indirect probes this node refused to run because the address they
    /// named was not the member's it knows (answered with a nack; no link
    /// opened).
    pub fn probe_requests_refused(&self) -> u64 {
        self.probe_requests_refused
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
        if let Some(p) = self.probes.iter().map(|p| p.deadline).min() {
            next = next.min(p);
        }
        if let Some(f) = self.forwards.values().map(|f| f.deadline).min() {
            next = next.min(f);
        }
        if let Some(c) = self.id_checks.values().map(|c| c.deadline).min() {
            next = next.min(c);
        }
        next
    }

    /// Handles one packet from the network.
    ///
    /// # Errors
    ///
    /// [`WireError`] for a packet that does not decode; nothing is applied.
    pub fn handle_packet(&mut self, now: Duration, bytes: &[u8]) -> Result<(), WireError> {
        self.handle_packet_from(now, None, bytes)
    }

    /// Decodes a packet no larger than [`MAX_PACKET_BYTES`].
    fn decode_bounded(bytes: &[u8]) -> Result<Packet, WireError> {
        if bytes.len() > MAX_PACKET_BYTES {
            return Err(WireError::Invalid {
                field: "packet size",
            });
        }
        Packet::decode(bytes)
    }

    /// Runs every timer due at `now`: probes and their timeouts, suspicion
    /// timeouts, push-pull, join retries, removal of long-down members and
    /// forgetting of old entries.
    pub fn handle_timers(&mut self, now: Duration) {
        self.now = self.now.max(now);
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
            self.push_pull();
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

    /// Applies a decoded packet: the sender's own state and the
    /// piggybacked updates first, then the message, which the concern it
    /// belongs to answers.
    fn handle(&mut self, now: Duration, packet: Packet, authenticated: Option<NodeId>) {
        self.now = self.now.max(now);
        if self.me.liveness == Liveness::Left || self.refused {
            return;
        }
        let Some(packet) = self.admit(packet, authenticated) else {
            return;
        };
        let from = packet.from;
        if from.identity.id == self.me.identity.id {
            self.on_own_id(&from, &packet.message);
            return;
        }
        if matches!(packet.message, Message::Join) && self.check_join_conflict(now, &from) {
            return;
        }
        let from_addr = from.identity.addr.clone();
        let (from_id, from_generation) = (from.identity.id, from.identity.generation);
        self.merge(now, from);
        if self.members.contains_key(&from_id) {
            let local = self.clock_reading.wall_ms;
            let (wall, hlc) = (packet.clock.wall_ms, packet.clock.hlc);
            self.clock.heard(from_id, wall, local, hlc);
        }
        for update in packet.updates {
            self.merge(now, update);
        }
        if let Message::PushPull { members, .. } | Message::JoinReply { members } = &packet.message
        {
            self.note_table_view((from_id, from_generation), members);
        }
        match packet.message {
            Message::Ping { seq, target } => {
                if target == self.me.identity.id {
                    self.send(from_addr, Message::Ack { seq });
                }
            }
            Message::Ack { seq } => {
                self.on_ack(now, seq, (from_id, from_generation), packet.clock);
            }
            Message::PingReq {
                seq,
                target,
                target_addr,
            } => self.on_ping_req(now, from_addr, seq, target, target_addr),
            Message::Nack { seq } => self.on_nack(seq),
            Message::Join => self.send_table(from_addr, false, true),
            Message::JoinReply { members } => self.on_join_reply(now, members),
            Message::JoinRefused { holder } => self.on_join_refused(holder),
            Message::PushPull { members, reply } => {
                self.on_push_pull(now, from_addr, members, reply);
            }
        }
    }

    /// Suspicion timeouts, removal of long-down members, forgetting.
    fn sweep(&mut self, now: Duration) {
        self.time_out_suspicions(now);
        self.remove_long_down(now);
        self.forget(now);
    }

    /// Publishes a change to one member (this node included).
    fn changed(&mut self, previous: Option<Member>, member: Member) {
        self.outputs
            .push_back(Output::Event(MemberEvent::Changed { previous, member }));
    }

    /// A fresh sequence number for a ping, an indirect probe or an id
    /// check.
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// `d` stretched by Lifeguard's local health: a node that is likely
    /// the slow one waits longer before judging others.
    fn scaled(&self, d: Duration) -> Duration {
        d * (1 + self.local_health)
    }

    /// `d` scaled by a random factor in [0.75, 1.25).
    fn jitter(&mut self, d: Duration) -> Duration {
        let f = 0.75 + self.rng.unit() * 0.5;
        d.mul_f64(f)
    }

    /// Fisher-Yates with this node's seeded RNG, so a run replays.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests;
