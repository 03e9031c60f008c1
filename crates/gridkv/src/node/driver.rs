//! The membership driver: the task that feeds packets and time to the
//! sans-IO [`Swim`] state machine over the transport's control lane, and
//! carries out its outputs (sends, events, the ring and placement the
//! coordinator reads). It also runs first formation ([`Formation`]),
//! publishes whether the node serves data calls ([`Readiness`]), and
//! keeps the node's clock in step with the cluster's (`super::clock`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clock::{ClockKeeper, CHECK_EVERY, STEP};
use crate::hlc::Timestamp;
use crate::membership::wire::ClockReading;
use crate::replication::clock_gate::Fence;
use std::sync::atomic::Ordering;
use super::formation::{self, Formation, Readiness, Step};
use super::{Command, Inner, Phase, LEAVE_FLUSH};
use crate::log_limit::{self, LogLimit};
use crate::membership::{Liveness, MemberEvent, Output, RingState, Swim};
use crate::net::{Inbound, Lane, Transport};
use crate::replication::Placement;
use crate::ring::Ring;

/// How long after a placement change writes also need a quorum of the
/// previous owners: longer than a change takes to reach every node, so a
/// reader still on the old ring meets every write.
const TRANSITION_GRACE: Duration = Duration::from_secs(3);

/// The membership task: feeds packets and time to [`Swim`], carries out
/// its outputs.
pub(super) struct Driver {
    pub(super) swim: Swim,
    pub(super) origin: Instant,
    pub(super) transport: Transport,
    pub(super) shared: Weak<Inner>,
    pub(super) cancel: CancellationToken,
    pub(super) placement: Arc<ArcSwap<Placement>>,
    /// Bumped whenever the placement changes (wakes the rebalancer).
    pub(super) changes: watch::Sender<u64>,
    /// This node's clocks, and what holds its writes.
    pub(super) clock: ClockKeeper,
    pub(super) restart_noted: bool,
    /// First formation: whether this node forms the cluster.
    pub(super) formation: Formation,
    /// Whether the node becomes normal by itself once filled
    /// ([`FillMode::Automatic`](super::FillMode::Automatic)).
    pub(super) automatic: bool,
    /// `mark_filled` was asked for before any member owned ranges.
    pub(super) fill_requested: bool,
    /// The ring members this node needs before it serves data calls.
    pub(super) needed: usize,
    /// The replication in force last logged: `(N, W, R)`.
    pub(super) logged: Option<(usize, usize, usize)>,
    /// Closes links to addresses that are neither members nor seeds.
    pub(super) links: super::links::LinkSweep,
}

impl Driver {
    pub(super) fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    pub(super) async fn run(
        mut self,
        mut control: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut leave_done: Option<oneshot::Sender<()>> = None;
        loop {
            self.flush();
            if let Some(done) = leave_done.take() {
                // Give the leave packets a moment on the wire.
                let _ = tokio::time::timeout(LEAVE_FLUSH, self.wait_sent()).await;
                let _ = done.send(());
                return;
            }
            if self.swim.is_refused() {
                // Another live node holds our id: stop for good, releasing
                // the transport's sockets and every task.
                if let Some(shared) = self.shared.upgrade() {
                    shared
                        .closed
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                self.cancel.cancel();
                self.transport.shutdown().await;
                return;
            }
            let deadline = self.swim.next_deadline();
            let sleep = if deadline == Duration::MAX {
                Duration::from_secs(3600)
            } else {
                deadline.saturating_sub(self.now())
            };
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                command = commands.recv() => {
                    self.observe_clock();
                    match command {
                    Some(Command::Fill) => {
                        if self.formation.seen() {
                            let now = self.now();
                            self.swim.mark_filled(now);
                        } else {
                            // Nobody owns ranges yet: only the node that
                            // forms the cluster may become normal now.
                            self.fill_requested = true;
                        }
                    }
                    Some(Command::Remove(removal, done)) => {
                        let now = self.now();
                        let _ = done.send(self.swim.apply_removal(now, &removal));
                    }
                    Some(Command::Resign) => {
                        let now = self.now();
                        self.swim.trust_changed();
                        self.swim.resign(now);
                    }
                    Some(Command::StartLeaving) => {
                        let now = self.now();
                        self.swim.start_leaving(now);
                    }
                    Some(Command::Leave(done)) => {
                        let now = self.now();
                        self.swim.start_leaving(now);
                        self.swim.leave(now);
                        leave_done = Some(done);
                    }
                    None => return,
                }},
                inbound = control.recv() => {
                    let Some(inbound) = inbound else { return };
                    let now = self.now();
                    self.observe_clock();
                    // The sender is who the transport's handshake (with
                    // TLS, the peer's certificate) says it is.
                    let sender = Some(inbound.from.node_id);
                    if let Err(error) = self.swim.handle_packet_from(now, sender, &inbound.body) {
                        // Any sender can send these, one per packet.
                        static LIMIT: LogLimit = LogLimit::new(log_limit::EVERY);
                        if let Some(suppressed) = LIMIT.allow() {
                            tracing::warn!(from = %inbound.from, %error, suppressed, "bad membership packet");
                        }
                    }
                    // Under a steady stream of packets the sleep branch
                    // below may never be polled: run due timers here too.
                    if now >= self.swim.next_deadline() {
                        self.swim.handle_timers(now);
                    }
                }
                _ = tokio::time::sleep(sleep) => {
                    let now = self.now();
                    self.observe_clock();
                    self.swim.handle_timers(now);
                }
            }
        }
    }

    /// The ring of `members` at `version`, each placed at the location
    /// its member entry gives (the default one if it has none), copies
    /// placed as the node's replication config says.
    fn build_ring(
        &self,
        shared: &Inner,
        version: u64,
        members: &[crate::id::NodeId],
    ) -> Result<Ring, crate::ring::RingError> {
        let located = members.iter().map(|id| {
            let location = self
                .swim
                .member(id)
                .map(|m| m.identity.location())
                .unwrap_or_default();
            (*id, location)
        });
        let placement = shared.coordinator.config.placement();
        Ring::placed(version, located, Ring::DEFAULT_VNODES, &placement)
    }

    /// Whether a member of the placement ring now runs somewhere else
    /// than the ring places it.
    fn locations_moved(&self, shared: &Inner) -> bool {
        let ring = shared.ring.load();
        ring.nodes().iter().any(|id| {
            let now = self.swim.member(id).map(|m| m.identity.location());
            now.is_some_and(|l| Some(&l) != ring.location(id))
        })
    }

    /// Gives the coordinator the current rings and member table.
    fn publish_placement(&self, shared: &Inner) {
        let rm = shared.ring_members.load();
        let ring = shared.ring.load_full();
        let future = if rm.future == rm.placement {
            ring.clone()
        } else {
            match self.build_ring(shared, rm.version, &rm.future) {
                Ok(future) => Arc::new(future),
                Err(error) => {
                    tracing::error!(%error, "cannot build the future ring");
                    ring.clone()
                }
            }
        };
        let members = self.swim.members().map(|m| (m.id(), m.clone())).collect();
        let old = self.placement.load_full();
        let moved = |a: &Ring, b: &Ring| {
            a.nodes() != b.nodes() || a.nodes().iter().any(|id| a.location(id) != b.location(id))
        };
        let previous = if moved(&old.ring, &ring) && !old.ring.is_empty() {
            Some((old.ring.clone(), Instant::now() + TRANSITION_GRACE))
        } else {
            old.previous.clone()
        };
        let serves_reads = self.swim.local().serves_reads();
        shared
            .coordinator
            .replica
            .serves_reads
            .store(serves_reads, std::sync::atomic::Ordering::Release);
        let rings_changed = moved(&old.ring, &ring) || moved(&old.future, &future);
        if rings_changed {
            // Before and after the store (see `Holdings::ring_changed`).
            shared.coordinator.replica.holdings.ring_changed();
        }
        self.placement.store(Arc::new(Placement {
            ring,
            future,
            members,
            local_serves_reads: serves_reads,
            previous,
            datacenter: self.swim.local().identity.datacenter.clone(),
        }));
        if rings_changed {
            shared.coordinator.replica.holdings.ring_changed();
        }
        self.changes.send_modify(|v| *v += 1);
    }

    /// Waits until the transport has written what is queued (polling the
    /// queued-frame count; bounded by the caller).
    async fn wait_sent(&self) {
        while self.transport.stats().queued_frames > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Carries out the state machine's outputs, then takes the formation
    /// step they allow (which may produce more) and publishes readiness.
    fn flush(&mut self) {
        let mut changed = self.drain();
        if let Some(shared) = self.shared.upgrade() {
            self.check_clock(&shared);
            self.links.tick(&self.swim, &self.transport, &shared.links);
        }
        loop {
            let now = self.now();
            // Readiness is published while formation goes on, and once
            // more on the step that ends it.
            let settled = self.formation.settled();
            let step = self.formation_step(now);
            let joining = self.swim.local().ring == RingState::Joining;
            if step == Step::Form && joining && (self.automatic || self.fill_requested) {
                tracing::info!(
                    node = %self.swim.local().id(),
                    seeds = self.formation.seeds(),
                    "forming the cluster: this node is its first owner; the others fill from it"
                );
                self.swim.mark_filled(now);
                changed |= self.drain();
                continue;
            }
            if changed || !settled {
                self.publish_readiness(&step);
            }
            return;
        }
    }

    /// The formation step now; `Formed` before the node has joined is
    /// never returned (the formation waits for the join).
    fn formation_step(&mut self, now: Duration) -> Step {
        if !self.swim.is_joined() {
            return Step::Wait(formation::Forming::Seeds {
                heard: 0,
                seeds: self.formation.seeds(),
            });
        }
        let was_seen = self.formation.seen();
        let placement_empty = self.swim.ring_members().placement.is_empty();
        let step = self
            .formation
            .observe(now, self.swim.members(), placement_empty);
        if !was_seen && self.formation.seen() {
            if self.fill_requested && !self.automatic {
                tracing::info!(
                    node = %self.swim.local().id(),
                    "mark_filled came before the cluster formed: call it again once this node has filled"
                );
            }
            self.fill_requested = false;
            if let Some(shared) = self.shared.upgrade() {
                shared.formed.send_replace(true);
            }
        }
        step
    }

    /// Publishes whether data calls are served, and logs the replication
    /// in force when it changes.
    fn publish_readiness(&mut self, step: &Step) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let ring = self.swim.ring_members().placement.len();
        let readiness = formation::readiness(
            self.swim.is_joined(),
            self.formation.seeds(),
            step,
            ring,
            self.needed,
        );
        let serving = readiness == Readiness::Serving;
        if serving {
            let status = shared.status();
            let now = (
                status.effective_replicas,
                status.effective_write_quorum,
                status.effective_read_quorum,
            );
            if self.logged != Some(now) {
                self.logged = Some(now);
                let (n, w, r) = now;
                if status.is_reduced() {
                    tracing::warn!(
                        node = %shared.id,
                        ring,
                        "serving with fewer owners than configured: N={n} of {}, W={w}, R={r}",
                        status.replicas
                    );
                } else {
                    tracing::info!(node = %shared.id, ring, "serving: N={n}, W={w}, R={r}");
                }
            }
        }
        let mut stopped = false;
        shared.readiness.send_if_modified(|current| {
            stopped = *current == Readiness::Stopped;
            if *current == readiness || stopped {
                return false;
            }
            *current = readiness;
            true
        });
        if !stopped {
            shared
                .serving
                .store(serving, std::sync::atomic::Ordering::Release);
        }
    }

    /// Carries out every pending output; returns whether the members or
    /// the ring changed.
    fn drain(&mut self) -> bool {
        let mut members_changed = false;
        let mut ring_changed = false;
        while let Some(output) = self.swim.poll_output() {
            match output {
                Output::Send { to, packet } => {
                    if let Err(error) = self.transport.send(&to, Lane::Control, packet) {
                        // Probes time out on their own; nothing to retry.
                        tracing::trace!(%to, %error, "membership packet not sent");
                    }
                }
                Output::Event(event) => {
                    let Some(shared) = self.shared.upgrade() else {
                        continue;
                    };
                    match &event {
                        MemberEvent::Changed { member, previous } => {
                            members_changed = true;
                            let gone = member.liveness == Liveness::Left
                                || member.ring == RingState::Removed;
                            let me = member.id() == self.swim.local().id();
                            if gone && !me {
                                self.transport.forget(&member.identity.addr);
                            }
                            let generation = member.identity.generation;
                            if me && previous.as_ref().is_some_and(|p| p.identity.generation != generation) {
                                // Taken as it joined: the cluster knew a
                                // later run (its wall clock stepped back).
                                shared.coordinator.replica.hlc.set_generation(generation);
                            }
                            let was_serving =
                                previous.as_ref().is_some_and(|p| p.ring.serves_reads());
                            if me && was_serving && member.ring == RingState::Joining {
                                // The majority took this node off the ring
                                // while it was away: keys deleted meanwhile
                                // may have had their tombstones collected,
                                // so what it holds could resurrect them. It
                                // starts empty and refills, as a new node.
                                tracing::warn!(
                                    node = %member.id(),
                                    "removed from the ring while away: dropping local data and refilling"
                                );
                                shared.coordinator.replica.holdings.forget();
                                shared.coordinator.replica.store.clear();
                            }
                        }
                        MemberEvent::Forgotten { .. } => members_changed = true,
                        MemberEvent::RingChanged { .. } => ring_changed = true,
                        MemberEvent::Joined => {
                            shared.phase.send_replace(Phase::Joined);
                        }
                        MemberEvent::JoinRefused { holder } => {
                            tracing::error!(
                                id = %shared.id,
                                %holder,
                                "join refused: this node id is in use by a live member"
                            );
                            shared.phase.send_replace(Phase::Refused(holder.clone()));
                        }
                        MemberEvent::IdConflict { .. } => {}
                    }
                    let _ = shared.events.send(event);
                }
            }
        }
        let Some(shared) = self.shared.upgrade() else {
            return false;
        };
        if members_changed {
            shared
                .members
                .store(Arc::new(self.swim.members().cloned().collect()));
        }
        // A ring member that came back (a new run) in another datacenter
        // or rack places keys elsewhere: rebuild as for a ring change.
        let ring_changed = ring_changed || (members_changed && self.locations_moved(&shared));
        if ring_changed {
            let rm = self.swim.ring_members().clone();
            match self.build_ring(&shared, rm.version, &rm.placement) {
                Ok(ring) => shared.ring.store(Arc::new(ring)),
                Err(error) => tracing::error!(%error, "cannot build the ring"),
            }
            shared.ring_members.store(Arc::new(rm));
        }
        if members_changed || ring_changed {
            self.publish_placement(&shared);
        }
        if self.swim.saw_previous_run() && !self.restart_noted {
            self.restart_noted = true;
            self.hold_restart_writes(&shared);
        }
        members_changed || ring_changed
    }
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
