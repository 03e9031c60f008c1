//! Quorum planning and tallying, with no I/O: which owners an operation
//! goes to, how many answers each set of them needs, and what the answers
//! add up to.
//!
//! A plan is data: owner sets, each with its required count, built from one
//! [`Placement`] snapshot. The coordinator ([`super::coordinator`]) sends
//! the requests a plan names, feeds the answers to a [`Tally`] (writes) or
//! counts them against the read set, and handles deadlines, re-stamping
//! and repair. Keeping the arithmetic here lets it be tested case by case,
//! as raft-rs keeps its majority and joint quorums apart from the node.
//!
//! - **Writes** need W of the current owners; while the ring changes, also
//!   enough of the owners after pending changes (joins, leaves) and, for a
//!   while after a change, of the owners before it, that a reader whose
//!   view is a step behind or ahead still meets the write
//!   ([`transition_quorum`]).
//! - **Sloppy writes** add a stand-in for each current owner known down.
//! - **Reads** ask the owners that serve reads, this node first, and need R
//!   answers.
//!
//! Per-datacenter placement adds its owner sets and consistency levels
//! here: each becomes one more [`OwnerSet`] with its own required count,
//! and the coordinator sends and tallies them as it does these.

use tokio::time::Instant;

use super::placement::Placement;
use super::wire::{DataResponse, RefusalCode};
use super::{level_sets, read_minimum_in, ConsistencyLevel, Error, ReadOptions, ReplicationConfig, WriteOptions};
use crate::log_limit::{self, LogLimit};
use crate::hlc::Version;
use crate::id::NodeId;
use crate::membership::{Liveness, RingState};
use crate::net::TransportError;
use crate::ring::Ring;
use crate::store::Lookup;

/// The owner sets an answer counts in: bit `i` for set `i` of a
/// [`WritePlan`].
pub(crate) type SetMask = u32;

/// Owners of a key on one ring, and how many of them must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerSet {
    /// In ring order, the primary first (reads: the order they are asked).
    pub(crate) owners: Vec<NodeId>,
    /// Answers needed from them.
    pub(crate) required: usize,
}

/// Where a write goes and what it needs to succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WritePlan {
    /// The current owners first (W of them, reachable or not: the set
    /// errors report), then the owners after pending changes and before
    /// the last change, each only when it differs from the sets before it.
    pub(crate) sets: Vec<OwnerSet>,
    /// Every owner of any set once, in set order (the order writes are
    /// sent), with the sets it counts in.
    pub(crate) owners: Vec<(NodeId, SetMask)>,
    /// For a sloppy write, each current owner known down with the node
    /// that keeps a hint for it in its stead.
    pub(crate) stand_ins: Vec<(NodeId, NodeId)>,
    /// W in force: the write quorum asked for, capped at the effective N.
    pub(crate) w: usize,
}

/// The owners of `hash` on `ring` for `replicas` copies (all of its
/// members, if it has fewer; the copies per datacenter, if it places
/// them so).
fn owners_on(ring: &Ring, hash: u64, replicas: usize) -> Vec<NodeId> {
    ring.preference_list(hash, replicas.min(ring.len()))
        .iter()
        .copied()
        .collect()
}

/// A quorum asked for, capped at the effective N (and at least 1, so an
/// empty ring still reports what was needed). Only the configured quorum
/// is capped (a node serves with fewer members than W or R only when it
/// runs alone, as it reports); one asked for per call is what the caller
/// gets, or an error.
fn capped(quorum: usize, n: usize) -> usize {
    quorum.min(n.max(1))
}

/// The consistency level in force, if any: the call's, else (unless the
/// call names a numeric quorum) the node's.
///
/// # Errors
///
/// [`Error::InvalidOptions`] for a numeric quorum beside a level, or with
/// copies per datacenter.
fn level_in_force(
    config: &ReplicationConfig,
    quorum: Option<usize>,
    asked: Option<ConsistencyLevel>,
    configured: Option<ConsistencyLevel>,
) -> Result<Option<ConsistencyLevel>, Error> {
    if asked.is_some_and(|l| l.is_local() || l == ConsistencyLevel::EachQuorum)
        && config.per_datacenter.is_empty()
    {
        return Err(Error::InvalidOptions(
            "LOCAL_ONE, LOCAL_QUORUM and EACH_QUORUM need copies per datacenter (replicas dc:n,...)",
        ));
    }
    match (quorum, asked) {
        (Some(_), Some(_)) => Err(Error::InvalidOptions(
            "name a consistency level or a quorum, not both",
        )),
        (Some(_), None) if !config.per_datacenter.is_empty() => Err(Error::InvalidOptions(
            "with copies per datacenter, name a consistency level, not a quorum",
        )),
        (Some(_), None) => Ok(None),
        (None, asked) => Ok(asked.or(configured)),
    }
}

/// The quorum in force: `asked` per call (never weakened: at most N, or
/// [`Error::InvalidOptions`]), else the configured one capped at `n`.
fn quorum_of(asked: Option<usize>, configured: usize, replicas: usize, n: usize) -> Result<usize, Error> {
    match asked {
        Some(q) if q > replicas => Err(Error::InvalidOptions(
            "a per-call quorum cannot exceed the replica count N",
        )),
        Some(q) => Ok(q),
        None => Ok(capped(configured, n)),
    }
}

impl WritePlan {
    /// The plan of a write of the key with hash `hash`, coordinated by `me`
    /// on placement `p` at `now`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for a write quorum of 0, a numeric quorum
    /// with copies per datacenter, or a local level where this node's
    /// datacenter holds no copies; [`Error::QuorumNotReached`] on an empty
    /// ring.
    pub(crate) fn new(
        config: &ReplicationConfig,
        p: &Placement,
        me: &NodeId,
        hash: u64,
        opts: &WriteOptions,
        now: Instant,
    ) -> Result<Self, Error> {
        if opts.quorum == Some(0) {
            return Err(Error::InvalidOptions("write quorum must be at least 1"));
        }
        let level = level_in_force(config, opts.quorum, opts.consistency, config.write_consistency)?;
        let n = p.ring.copies(config.replicas);
        let w = quorum_of(opts.quorum, config.write_quorum, config.replicas, n)?;
        if n == 0 {
            return Err(Error::QuorumNotReached {
                answered: 0,
                required: w,
            });
        }
        // Joint quorums while the ring changes: the current owners, the
        // owners after pending changes, and, for a while after a change,
        // the owners before it.
        let mut lists = vec![(owners_on(&p.ring, hash, config.replicas), &p.ring)];
        let future = owners_on(&p.future, hash, config.replicas);
        if !same_members(&future, &lists[0].0) && !future.is_empty() {
            lists.push((future, &p.future));
        }
        let mut previous_list = None;
        if let Some((previous, _)) = p.previous.as_ref().filter(|(_, until)| now < *until) {
            let before = owners_on(previous, hash, config.replicas);
            if !before.is_empty() && lists.iter().all(|(s, _)| !same_members(s, &before)) {
                previous_list = Some(lists.len());
                lists.push((before, previous));
            }
        }
        // The current owners count in full: W of them (or the level's
        // sets), reachable or not. The other sets only guard readers whose
        // view is a step away, so each needs just enough to meet such a
        // reader's quorum.
        // Every owner of every list gets the write, counted or not (a
        // remote datacenter's owners under a local level, on each ring).
        let mut owners: Vec<(NodeId, SetMask)> = Vec::new();
        for (list, _) in &lists {
            for id in list {
                if owners.iter().all(|(o, _)| o != id) {
                    owners.push((*id, 0));
                }
            }
        }
        let mut sets: Vec<OwnerSet> = Vec::new();
        for (i, (list, ring)) in lists.into_iter().enumerate() {
            let list_sets = match level {
                None => vec![OwnerSet {
                    owners: list.clone(),
                    required: w,
                }],
                Some(level) => level_sets(level, &list, ring, &p.datacenter)?,
            };
            for set in list_sets {
                if i > 0 && sets.iter().any(|s| same_members(&s.owners, &set.owners)) {
                    continue;
                }
                let required = if i == 0 {
                    set.required
                } else {
                    let before_change = previous_list == Some(i);
                    let eligible = set
                        .owners
                        .iter()
                        .filter(|id| guards_transition(p, me, id, before_change))
                        .count();
                    let r = match config.read_consistency {
                        None => config.read_quorum.min(set.owners.len()),
                        Some(read) => read_minimum_in(read, set.owners.len(), list.len()),
                    };
                    transition_quorum(set.required, r, set.owners.len(), eligible)
                };
                sets.push(OwnerSet {
                    owners: set.owners,
                    required,
                });
            }
        }
        for (i, set) in sets.iter().enumerate() {
            for id in &set.owners {
                match owners.iter_mut().find(|(o, _)| o == id) {
                    Some((_, mask)) => *mask |= 1 << i,
                    None => owners.push((*id, 1 << i)),
                }
            }
        }
        let stand_ins = if opts.sloppy {
            stand_ins(p, me, hash, &sets[0].owners, &owners)
        } else {
            Vec::new()
        };
        let w = sets[0].required;
        Ok(Self {
            sets,
            owners,
            stand_ins,
            w,
        })
    }

    /// The sets the answer in `slot` counts in: slots past the owners are
    /// the stand-ins', whose acknowledgements count among the current
    /// owners only.
    pub(crate) fn sets_of(&self, slot: usize) -> SetMask {
        self.owners.get(slot).map_or(1, |(_, mask)| *mask)
    }

    /// The first owner set (current owners first) that cannot reach its
    /// quorum from the owners for which `usable` holds (and, for the
    /// current owners, the stand-ins), as `(usable, required)`; `None` if
    /// every set can.
    pub(crate) fn short_of(&self, usable: impl Fn(&NodeId) -> bool) -> Option<(usize, usize)> {
        self.sets.iter().enumerate().find_map(|(i, set)| {
            let mut have = set.owners.iter().filter(|id| usable(id)).count();
            if i == 0 {
                have += self.stand_ins.iter().filter(|(_, to)| usable(to)).count();
            }
            (have < set.required).then_some((have, set.required))
        })
    }

    /// A tally for one attempt of this write, stamped `mine`.
    pub(crate) fn tally(&self, mine: Version) -> Tally {
        let mut tally = Tally::new(self.sets.iter().map(|s| s.required).collect());
        tally.mine = Some(mine);
        tally
    }
}

/// For each of `current` known down (in order), a stand-in: the next
/// reachable node clockwise past every owner in `owners`, each used once.
fn stand_ins(
    p: &Placement,
    me: &NodeId,
    hash: u64,
    current: &[NodeId],
    owners: &[(NodeId, SetMask)],
) -> Vec<(NodeId, NodeId)> {
    let reachable = |id: &NodeId| p.target(me, id).is_some();
    let mut spare: Vec<NodeId> = p
        .ring
        .members_from(hash)
        .filter(|id| owners.iter().all(|(o, _)| o != *id))
        .filter(|id| reachable(id))
        .copied()
        .collect();
    // With copies per datacenter, a stand-in keeps the hint in the down
    // owner's datacenter.
    let per_dc = p.ring.placement().is_per_datacenter();
    let mut out = Vec::new();
    for owner in current.iter().filter(|id| !reachable(id)) {
        let dc = p.ring.location(owner).map(|l| l.datacenter.as_str());
        let pick = spare
            .iter()
            .position(|id| !per_dc || p.ring.location(id).map(|l| l.datacenter.as_str()) == dc);
        if let Some(i) = pick {
            out.push((*owner, spare.remove(i)));
        }
    }
    out
}

/// Whether an owner in a transitional owner set (the ring before or after
/// a change) must count toward that set's quorum: not once it has left or
/// been removed, and, in the ring before the change, not while it is down.
fn guards_transition(p: &Placement, me: &NodeId, id: &NodeId, before_change: bool) -> bool {
    if id == me {
        return true;
    }
    let Some(m) = p.members.get(id) else {
        return false;
    };
    let gone = matches!(m.ring, RingState::Left | RingState::Removed);
    let down = matches!(m.liveness, Liveness::Down | Liveness::Left);
    !(gone || (before_change && down))
}

/// How many owners of a transitional owner set (the ring before or after a
/// change) a write needs: enough that every read quorum of a reader with
/// that view meets it, `n − r + 1` where `n` is the set's size and `r` that
/// reader's read quorum (capped at `n`, as reads cap it), and never more
/// than the write quorum `w` itself. A two-owner set seen before a third
/// node joined, read with R = 2, needs one of its owners, not both: so one
/// owner crashing right after a join, before it is detected, fails no
/// write. Owners that cannot serve such a reader (left, or down in the ring
/// before the change; `eligible` excludes them) are not waited for.
fn transition_quorum(w: usize, read_quorum: usize, n: usize, eligible: usize) -> usize {
    let r = read_quorum.clamp(1, n.max(1));
    w.min(n + 1 - r).min(eligible)
}

/// Whether two owner lists hold the same members.
fn same_members(a: &[NodeId], b: &[NodeId]) -> bool {
    a.len() == b.len() && a.iter().all(|id| b.contains(id))
}

/// The plan of a read of the key with hash `hash` by `me` on placement
/// `p`: the current owners that serve reads, this node first (its answer
/// costs no round trip), and R of them, capped at the effective N; 1 for
/// a [`ReadOptions::local`] read that could not be served locally.
///
/// # Errors
///
/// [`Error::InvalidOptions`] for a read quorum of 0.
pub(crate) fn read_plan(
    config: &ReplicationConfig,
    p: &Placement,
    me: &NodeId,
    hash: u64,
    opts: &ReadOptions,
) -> Result<OwnerSet, Error> {
    if opts.quorum == Some(0) {
        return Err(Error::InvalidOptions("read quorum must be at least 1"));
    }
    let level = level_in_force(config, opts.quorum, opts.consistency, config.read_consistency)?;
    let all = owners_on(&p.ring, hash, config.replicas);
    let n = all.len();
    let (mut owners, required) = match level {
        Some(ConsistencyLevel::EachQuorum) => {
            return Err(Error::InvalidOptions(
                "EACH_QUORUM is for writes; read with QUORUM or LOCAL_QUORUM",
            ))
        }
        // The level counts the key's owners, serving reads or not (a
        // joining owner's absence counts against the quorum, as it does
        // for R).
        Some(level) => {
            let set = level_sets(level, &all, &p.ring, &p.datacenter)?.remove(0);
            (set.owners, set.required)
        }
        None => (all, quorum_of(opts.quorum, config.read_quorum, config.replicas, n)?),
    };
    owners.retain(|id| p.serves_reads(id));
    // This node first, then its datacenter's owners, then the others,
    // each in ring order: the nearest first before any RTT is known.
    if let Some(i) = owners.iter().position(|id| id == me) {
        owners[..=i].rotate_right(1);
    }
    let local_first = |id: &NodeId| !(id == me || p.ring.in_datacenter(id, &p.datacenter));
    owners.sort_by_key(local_first);
    let required = if opts.local { 1 } else { required };
    Ok(OwnerSet { owners, required })
}

/// Whether `answered` answers are every owner's of `hash`: none is left
/// out of the read for being down or joining, and no ring change is
/// pending (the owners of the future ring could hold what these lack).
pub(crate) fn every_owner_answered(
    config: &ReplicationConfig,
    p: &Placement,
    hash: u64,
    answered: usize,
) -> bool {
    p.future.nodes() == p.ring.nodes()
        && answered == owners_on(&p.ring, hash, config.replicas).len()
}

/// The error of a read that ran out of owners to ask with `answered` of
/// `required` answers: [`Error::Backpressure`] when the `shed` owners
/// (overloaded) would have made up the quorum, else
/// [`Error::QuorumNotReached`].
pub(crate) fn read_failure(answered: usize, shed: usize, required: usize) -> Error {
    if shed > 0 && answered + shed >= required {
        Error::Backpressure
    } else {
        Error::QuorumNotReached { answered, required }
    }
}

/// Whether an answer says the owner (or the connection to it) shed the
/// request because it is overloaded.
pub(crate) fn is_shed(answer: &Result<DataResponse, TransportError>) -> bool {
    matches!(
        answer,
        Err(TransportError::Backpressure { .. })
            | Err(TransportError::Overloaded { .. })
            | Ok(DataResponse::Refused {
                code: RefusalCode::Overloaded,
                ..
            })
    )
}

/// The "answer" of an owner known to be down: not asked at all.
pub(crate) fn unreachable() -> TransportError {
    TransportError::Unreachable {
        peer: String::new(),
        reason: "down".to_owned(),
        retry_in: std::time::Duration::ZERO,
    }
}

/// Counts a write's answers against each owner set's quorum. `applied` is
/// the count in the first set (the current owners), the one errors report.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    required: Vec<usize>,
    per_set: Vec<usize>,
    applied: usize,
    /// Whether an owner that applied the write held a live value before.
    pub(crate) was_live: bool,
    /// The newest version an owner said supersedes this attempt's.
    pub(crate) superseded: Option<Version>,
    /// The newest version an owner holds that fails a conditional write's
    /// condition.
    pub(crate) conflict: Option<Version>,
    /// The plan's slots of the owners that applied the write (a lost
    /// conditional write is taken back from them).
    pub(crate) applied_slots: Vec<usize>,
    /// Per set, the owners that shed the write (overloaded).
    shed: Vec<usize>,
    /// This attempt's version.
    mine: Option<Version>,
    /// Whether an owner holding something newer counts as applied (an
    /// expiry change: see `Tally::superseded_applies`).
    superseded_applies: bool,
}

impl Tally {
    fn new(required: Vec<usize>) -> Self {
        Self {
            per_set: vec![0; required.len()],
            shed: vec![0; required.len()],
            required,
            ..Self::default()
        }
    }

    /// The error for a write that fell short: [`Error::Backpressure`] when
    /// the owners that shed it would have made up the shortfall (overload
    /// is the cause: retry later), else [`Error::QuorumNotReached`].
    pub(crate) fn failure(&self, w: usize) -> Error {
        let (answered, required) = self.shortfall(w);
        // Some set is short, and every short one only by what was shed.
        let mut short = self
            .per_set
            .iter()
            .zip(&self.required)
            .zip(&self.shed)
            .filter(|((have, need), _)| have < need)
            .peekable();
        let overloaded =
            short.peek().is_some() && short.all(|((have, need), shed)| have + shed >= *need);
        if overloaded {
            Error::Backpressure
        } else {
            Error::QuorumNotReached { answered, required }
        }
    }

    /// `(applied, required)` of the first owner set short of its quorum
    /// (the current owners first), for the error; `(applied, w)` if none.
    pub(crate) fn shortfall(&self, w: usize) -> (usize, usize) {
        self.per_set
            .iter()
            .zip(&self.required)
            .find(|(have, need)| have < need)
            .map_or((self.applied, w), |(&have, &need)| (have, need))
    }

    /// Whether every owner set has its quorum.
    pub(crate) fn satisfied(&self) -> bool {
        self.per_set
            .iter()
            .zip(&self.required)
            .all(|(have, need)| have >= need)
    }

    /// Whether `current` was stamped by this node's current run after
    /// this attempt's version: its HLC is monotonic, so a larger version
    /// from it was stamped later.
    fn overtaken_by_own(&self, current: Version) -> bool {
        self.mine.is_some_and(|mine| {
            current.writer == mine.writer && current.generation == mine.generation && current > mine
        })
    }

    /// This tally, for an expiry change of an existing version: an owner
    /// holding a newer write (or a later change) counts as applied, since
    /// ordering the change just before that write is a valid history, and
    /// the change must never be re-stamped past it.
    pub(crate) fn superseded_applies(mut self) -> Self {
        self.superseded_applies = true;
        self
    }

    /// Counts `answer`, from an owner (or stand-in) in `sets`.
    pub(crate) fn add(&mut self, sets: SetMask, answer: Result<DataResponse, TransportError>) {
        match answer {
            Ok(DataResponse::Applied { was_live }) => {
                for (i, count) in self.per_set.iter_mut().enumerate() {
                    if sets & (1 << i) != 0 {
                        *count += 1;
                    }
                }
                if sets & 1 != 0 {
                    self.applied += 1;
                    self.was_live |= was_live;
                }
            }
            Ok(DataResponse::Superseded { .. }) if self.superseded_applies => {
                self.add(sets, Ok(DataResponse::Applied { was_live: false }));
            }
            Ok(DataResponse::Superseded { current }) if self.overtaken_by_own(current) => {
                // A later write stamped by this same run of this node got
                // there first. It began after this one was stamped, so the
                // two are concurrent and ordering this one just before it
                // is a valid history: the owner holds a version at least
                // as new, which is what a later reader needs. (Re-stamping
                // instead would let writers hammering one key starve each
                // other into failures.)
                self.add(sets, Ok(DataResponse::Applied { was_live: false }));
            }
            Ok(DataResponse::Superseded { current }) => {
                self.superseded = self.superseded.max(Some(current));
            }
            Ok(DataResponse::Conflict { current }) => {
                self.conflict = self.conflict.max(Some(current));
            }
            // Refused under the owner's watermark: not applied (it holds
            // nothing for the key), and a re-stamp past the watermark is
            // what gets in. An expiry change cannot re-stamp: it fails
            // there.
            Ok(DataResponse::Forgotten { below }) if !self.superseded_applies => {
                self.superseded = self.superseded.max(Some(below));
            }
            Ok(DataResponse::Refused {
                code: RefusalCode::ClockDrift,
                reason,
            }) => {
                // One per write to that replica, as long as it refuses.
                static LIMIT: LogLimit = LogLimit::new(log_limit::EVERY);
                if let Some(suppressed) = LIMIT.allow() {
                    tracing::warn!(%reason, suppressed, "a replica refused a write: clock drift");
                }
            }
            answer if is_shed(&answer) => {
                for (i, count) in self.shed.iter_mut().enumerate() {
                    if sets & (1 << i) != 0 {
                        *count += 1;
                    }
                }
            }
            _ => {}
        }
    }
}

/// How many of a read's answers count towards R. An owner that forgot
/// entries of the key's range under memory pressure
/// ([`Lookup::Forgotten`]) may have forgotten this very key's newest
/// version: its answer counts only when another answer is newer than
/// everything it forgot (its own latest could then only be older).
pub(crate) fn counted(answers: &[(NodeId, Lookup)]) -> usize {
    let newest = answers.iter().filter_map(|(_, l)| l.version()).max();
    answers
        .iter()
        .filter(|(_, l)| match l {
            Lookup::Forgotten { below } => newest.is_some_and(|n| n > *below),
            _ => true,
        })
        .count()
}

/// Picks the newest answer and the owners that need repair, ordering
/// answers by version, then by expiry stamp (an `EXPIRE` or `PERSIST` of
/// that version). An evicted value is unavailable unless another owner
/// holds it at that version; it then reads as absent (a cache miss) and is
/// not repaired. Owners that forgot the key's range neither win nor are
/// repaired.
pub(crate) fn resolve_evicted(answers: Vec<(NodeId, Lookup)>) -> (Lookup, Vec<NodeId>) {
    let Some(newest) = answers.iter().filter_map(|(_, l)| l.version()).max() else {
        return (Lookup::Missing, Vec::new());
    };
    // Answers rank by (version, expiry stamp), then a tombstone above a
    // value of the same ones: the value's TTL ran out on an owner whose
    // clock is ahead, and it has expired everywhere, or is about to.
    let rank = |l: &Lookup| (l.order(), matches!(l, Lookup::Dead { .. }));
    // Among the answers at the newest version, the one that can be sent
    // on (not an evicted stub) with the highest rank.
    let winner = answers
        .iter()
        .map(|(_, l)| l)
        .filter(|l| l.version() == Some(newest) && !matches!(l, Lookup::Evicted { .. }))
        .max_by_key(|l| rank(l))
        .cloned();
    let Some(mut winner) = winner else {
        return (Lookup::Missing, Vec::new());
    };
    let top = rank(&winner);
    // A counter's copies at its version merge (each may hold increments
    // the others lack): the answer is their merge, and a copy that differs
    // from it is stale.
    let merged = match &mut winner {
        Lookup::Live(item) if item.counter => {
            let merged = merge_counters(&answers, item.version);
            if let Some(state) = &merged {
                item.value = state.clone();
            }
            merged
        }
        _ => None,
    };
    let stale = answers
        .iter()
        .filter(|(_, l)| match l {
            Lookup::Forgotten { .. } => false,
            // A stub of the winning version stays a stub: refilling it
            // would only evict something else.
            Lookup::Evicted { version } => *version < newest,
            Lookup::Live(item) if item.counter && merged.is_some() && item.version == newest => {
                Some(&item.value) != merged.as_ref()
            }
            _ => rank(l) < top,
        })
        .map(|(id, _)| *id)
        .collect();
    (winner, stale)
}

/// The merge of the live copies at `version` of a counter among `answers`,
/// encoded; `None` if one is malformed (the ordinary rules then pick one).
fn merge_counters(answers: &[(NodeId, Lookup)], version: Version) -> Option<bytes::Bytes> {
    use crate::store::counter::Counter;
    let mut merged: Option<Counter> = None;
    for (_, l) in answers {
        if let Lookup::Live(item) = l {
            if item.counter && item.version == version {
                let copy = Counter::decode(&item.value).ok()?;
                merged = Some(match merged {
                    Some(m) => m.merge(&copy),
                    None => copy,
                });
            }
        }
    }
    merged.map(|m| m.encode())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::hlc::Timestamp;
    use crate::membership::{Identity, Member};
    use crate::store::Item;
    use crate::Generation;

    type Reply = Result<DataResponse, TransportError>;

    fn id(name: char) -> NodeId {
        NodeId::new(&name.to_string()).unwrap()
    }

    fn ids(names: &str) -> Vec<NodeId> {
        names.chars().map(id).collect()
    }

    /// A ring of the members named by the letters of `names`, one token
    /// each: `a` at 100, `b` at 200, ... so that the owners of the key
    /// hashed at [`H`] are read off clockwise from `b`.
    fn ring(names: &str) -> Arc<Ring> {
        let tokens = names
            .chars()
            .map(|c| ((c as u64 - 'a' as u64 + 1) * 100, id(c), 0))
            .collect();
        Arc::new(Ring::from_tokens(1, 1, tokens))
    }

    /// The key every plan below is for: just past `a`'s token.
    const H: u64 = 150;

    /// The node planning (coordinating) in every case.
    fn me() -> NodeId {
        id('a')
    }

    /// The rings of one case, and how members `a` to `e` stand (normal
    /// and alive unless listed).
    #[derive(Clone, Copy)]
    struct View {
        ring: &'static str,
        future: &'static str,
        /// The ring before the last change, and whether writes still
        /// guard it.
        previous: Option<(&'static str, bool)>,
        down: &'static str,
        joining: &'static str,
        removed: &'static str,
    }

    const STEADY: View = View {
        ring: "abc",
        future: "abc",
        previous: None,
        down: "",
        joining: "",
        removed: "",
    };

    fn placement(v: View, now: Instant) -> Placement {
        let mut members = BTreeMap::new();
        for c in "abcde".chars() {
            let mut m = Member::new(Identity::new(id(c), Generation::new(1), format!("{c}:1")));
            m.ring = if v.joining.contains(c) {
                RingState::Joining
            } else if v.removed.contains(c) {
                RingState::Removed
            } else {
                RingState::Normal
            };
            if v.down.contains(c) {
                m.liveness = Liveness::Down;
            }
            members.insert(id(c), m);
        }
        Placement {
            ring: ring(v.ring),
            future: ring(v.future),
            members,
            local_serves_reads: true,
            previous: v.previous.map(|(names, active)| {
                let until = if active {
                    now + Duration::from_secs(1)
                } else {
                    now
                };
                (ring(names), until)
            }),
            datacenter: String::new(),
        }
    }

    fn config(replicas: usize, write_quorum: usize, read_quorum: usize) -> ReplicationConfig {
        ReplicationConfig {
            replicas,
            write_quorum,
            read_quorum,
            ..ReplicationConfig::default()
        }
    }

    /// What a write plan comes to, spelled with member letters: each set's
    /// owners and required count, each owner's set mask, and each
    /// `(down owner, stand-in)`.
    type Spelled = (Vec<(String, usize)>, Vec<(char, SetMask)>, Vec<String>);

    /// A case: its name, the configuration, the view, the options, and
    /// the plan expected.
    type WriteRow = (
        &'static str,
        ReplicationConfig,
        View,
        WriteOptions,
        Result<Spelled, Error>,
    );

    /// A case: its name, the configuration, the view, the options, and
    /// the owners asked (in order) with the answers needed.
    type ReadRow = (
        &'static str,
        ReplicationConfig,
        View,
        ReadOptions,
        Result<(&'static str, usize), Error>,
    );

    /// A case: its name, each owner's answer, the winner, and the owners
    /// to repair.
    type ResolveRow = (&'static str, Vec<(char, Lookup)>, Lookup, &'static str);

    fn spell(plan: &WritePlan) -> Spelled {
        let name = |id: &NodeId| id.as_str().chars().next().unwrap();
        let names = |owners: &[NodeId]| owners.iter().map(name).collect::<String>();
        (
            plan.sets
                .iter()
                .map(|s| (names(&s.owners), s.required))
                .collect(),
            plan.owners.iter().map(|(o, m)| (name(o), *m)).collect(),
            plan.stand_ins
                .iter()
                .map(|(o, s)| names(&[*o, *s]))
                .collect(),
        )
    }

    fn sets(sets: &[(&str, usize)]) -> Vec<(String, usize)> {
        sets.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    fn pairs(pairs: &[&str]) -> Vec<String> {
        pairs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn write_plans() {
        let sloppy = WriteOptions::default().sloppy();
        let q = |w| WriteOptions::default().quorum(w);
        let plain = WriteOptions::default();
        #[rustfmt::skip]
        let rows: Vec<WriteRow> = vec![
            ("normal: W of the three owners",
             config(3, 2, 2), STEADY, plain,
             Ok((sets(&[("bca", 2)]), vec![('b', 1), ('c', 1), ('a', 1)], vec![]))),
            ("joining node d: also W of the owners after the join",
             config(3, 2, 2), View { future: "abcd", joining: "d", ..STEADY }, plain,
             Ok((sets(&[("bca", 2), ("bcd", 2)]),
                 vec![('b', 3), ('c', 3), ('a', 1), ('d', 2)], vec![]))),
            ("leaving node b: also the owners once it is gone",
             config(3, 2, 2), View { ring: "abcd", future: "acd", ..STEADY }, plain,
             Ok((sets(&[("bcd", 2), ("cda", 2)]),
                 vec![('b', 1), ('c', 3), ('d', 3), ('a', 2)], vec![]))),
            ("just after c joined: one owner of the two before meets R = 2",
             config(3, 2, 2), View { previous: Some(("ab", true)), ..STEADY }, plain,
             Ok((sets(&[("bca", 2), ("ba", 1)]), vec![('b', 3), ('c', 1), ('a', 3)], vec![]))),
            ("the ring before the change, once it no longer needs guarding",
             config(3, 2, 2), View { previous: Some(("ab", false)), ..STEADY }, plain,
             Ok((sets(&[("bca", 2)]), vec![('b', 1), ('c', 1), ('a', 1)], vec![]))),
            ("R = 1 readers of the ring before need all its owners, but not a down one",
             config(3, 2, 1), View { previous: Some(("bd", true)), down: "d", ..STEADY }, plain,
             Ok((sets(&[("bca", 2), ("bd", 1)]),
                 vec![('b', 3), ('c', 1), ('a', 1), ('d', 2)], vec![]))),
            ("a removed owner after the change is not waited for",
             config(3, 3, 1), View { future: "abd", removed: "d", ..STEADY }, plain,
             Ok((sets(&[("bca", 3), ("bda", 2)]),
                 vec![('b', 3), ('c', 1), ('a', 3), ('d', 2)], vec![]))),
            ("capped N: two members for N = 3, W = 3",
             config(3, 3, 3), View { ring: "ab", future: "ab", ..STEADY }, plain,
             Ok((sets(&[("ba", 2)]), vec![('b', 1), ('a', 1)], vec![]))),
            ("a per-call quorum above N is refused, never weakened",
             config(3, 2, 2), STEADY, q(5),
             Err(Error::InvalidOptions("a per-call quorum cannot exceed the replica count N"))),
            ("a per-call quorum above a small ring is kept (and fails if unmet)",
             config(3, 2, 2), View { ring: "ab", future: "ab", ..STEADY }, q(3),
             Ok((sets(&[("ba", 3)]), vec![('b', 1), ('a', 1)], vec![]))),
            ("an empty ring",
             config(3, 2, 2), View { ring: "", future: "", ..STEADY }, plain,
             Err(Error::QuorumNotReached { answered: 0, required: 1 })),
            ("a quorum of zero",
             config(3, 2, 2), STEADY, q(0),
             Err(Error::InvalidOptions("write quorum must be at least 1"))),
            ("one owner down, strict: it still counts, no stand-in",
             config(3, 2, 2), View { ring: "abcde", future: "abcde", down: "c", ..STEADY }, plain,
             Ok((sets(&[("bcd", 2)]), vec![('b', 1), ('c', 1), ('d', 1)], vec![]))),
            ("one owner down, sloppy: the next node past the owners stands in",
             config(3, 2, 2), View { ring: "abcde", future: "abcde", down: "c", ..STEADY }, sloppy,
             Ok((sets(&[("bcd", 2)]), vec![('b', 1), ('c', 1), ('d', 1)], pairs(&["ce"])))),
            ("two owners down, sloppy: one stand-in each, in ring order",
             config(3, 2, 2), View { ring: "abcde", future: "abcde", down: "cd", ..STEADY }, sloppy,
             Ok((sets(&[("bcd", 2)]), vec![('b', 1), ('c', 1), ('d', 1)], pairs(&["ce", "da"])))),
            ("two owners down, sloppy, a spare down too: fewer stand-ins",
             config(3, 2, 2), View { ring: "abcde", future: "abcde", down: "cde", ..STEADY }, sloppy,
             Ok((sets(&[("bcd", 2)]), vec![('b', 1), ('c', 1), ('d', 1)], pairs(&["ca"])))),
            ("sloppy while d joins: an owner of any set is no stand-in",
             config(3, 2, 2), View { ring: "abce", future: "abcde", down: "c", joining: "d", ..STEADY }, sloppy,
             Ok((sets(&[("bce", 2), ("bcd", 2)]),
                 vec![('b', 3), ('c', 3), ('e', 1), ('d', 2)], pairs(&["ca"])))),
        ];
        let now = Instant::now();
        for (name, config, view, opts, expected) in rows {
            let p = placement(view, now);
            let plan = WritePlan::new(&config, &p, &me(), H, &opts, now);
            assert_eq!(
                plan.as_ref().map(spell).map_err(Clone::clone),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn stand_ins_count_among_the_current_owners_only() {
        let now = Instant::now();
        let view = View {
            ring: "abcde",
            future: "abcde",
            down: "c",
            ..STEADY
        };
        let p = placement(view, now);
        let opts = WriteOptions::default().sloppy();
        let plan = WritePlan::new(&config(3, 2, 2), &p, &me(), H, &opts, now).unwrap();
        // Slots 0..3 are the owners, slot 3 the stand-in.
        assert_eq!(plan.sets_of(1), 1);
        assert_eq!(plan.sets_of(3), 1);
        let mut tally = plan.tally(Version::ZERO);
        tally.add(plan.sets_of(0), applied());
        assert!(!tally.satisfied());
        tally.add(plan.sets_of(3), applied());
        assert!(tally.satisfied());
    }

    #[test]
    fn transitional_sets_need_only_what_meets_their_readers() {
        // N = 3, W = 2, R = 2 on three owners: the same as W.
        assert_eq!(transition_quorum(2, 2, 3, 3), 2);
        // The two-node ring before a third node joined: its readers read
        // both owners, so one applied copy meets them.
        assert_eq!(transition_quorum(2, 2, 2, 2), 1);
        // R = 1 readers need every owner, but never more than W.
        assert_eq!(transition_quorum(3, 1, 3, 3), 3);
        assert_eq!(transition_quorum(2, 1, 3, 3), 2);
        // Owners that left or are down are not waited for.
        assert_eq!(transition_quorum(2, 2, 3, 1), 1);
        // A one-owner view: that owner.
        assert_eq!(transition_quorum(2, 2, 1, 1), 1);
    }

    #[test]
    fn read_plans() {
        let q = |r| ReadOptions::default().quorum(r);
        let plain = ReadOptions::default();
        #[rustfmt::skip]
        let rows: Vec<ReadRow> = vec![
            ("normal: this node first, then ring order",
             config(3, 2, 2), STEADY, plain, Ok(("abc", 2))),
            ("not an owner: ring order",
             config(3, 2, 2), View { ring: "abcd", future: "abcd", ..STEADY }, plain, Ok(("bcd", 2))),
            ("a joining owner serves no reads",
             config(3, 2, 2), View { ring: "abcd", future: "abcd", joining: "c", ..STEADY }, plain,
             Ok(("bd", 2))),
            ("a down owner is not asked",
             config(3, 2, 2), View { down: "c", ..STEADY }, plain, Ok(("ab", 2))),
            ("a local read that could not be served locally: R = 1",
             config(3, 2, 2), STEADY, ReadOptions::local(), Ok(("abc", 1))),
            ("capped N: R = 3 of two members",
             config(3, 2, 3), View { ring: "ab", future: "ab", ..STEADY }, plain, Ok(("ab", 2))),
            ("a per-call quorum above N is refused, never weakened",
             config(3, 2, 2), STEADY, q(4),
             Err(Error::InvalidOptions("a per-call quorum cannot exceed the replica count N"))),
            ("a per-call quorum above a small ring is kept",
             config(3, 2, 2), View { ring: "ab", future: "ab", ..STEADY }, q(3), Ok(("ab", 3))),
            ("an empty ring: no owner, one answer needed",
             config(3, 2, 2), View { ring: "", future: "", ..STEADY }, plain, Ok(("", 1))),
            ("a quorum of zero",
             config(3, 2, 2), STEADY, q(0),
             Err(Error::InvalidOptions("read quorum must be at least 1"))),
        ];
        let now = Instant::now();
        for (name, config, view, opts, expected) in rows {
            let p = placement(view, now);
            let plan = read_plan(&config, &p, &me(), H, &opts).map(|set| {
                let owners: String = set.owners.iter().map(|id| id.as_str()).collect();
                (owners, set.required)
            });
            let expected = expected.map(|(owners, r)| (owners.to_owned(), r));
            assert_eq!(plan, expected, "{name}");
        }
    }

    #[test]
    fn read_failures() {
        let not_reached = |answered, required| Error::QuorumNotReached { answered, required };
        #[rustfmt::skip]
        let rows = [
            ("one of two answered, nothing shed", (1, 0, 2), not_reached(1, 2)),
            ("one answered, one shed: overload", (1, 1, 2), Error::Backpressure),
            ("none answered, all shed", (0, 2, 2), Error::Backpressure),
            ("one shed cannot make up two", (0, 1, 2), not_reached(0, 2)),
            ("no owner at all", (0, 0, 1), not_reached(0, 1)),
        ];
        for (name, (answered, shed, required), expected) in rows {
            assert_eq!(read_failure(answered, shed, required), expected, "{name}");
        }
    }

    fn shed() -> Reply {
        Err(TransportError::Overloaded {
            peer: "b".to_owned(),
        })
    }

    fn applied() -> Reply {
        Ok(DataResponse::Applied { was_live: false })
    }

    fn version(ms: u64, writer: u64) -> Version {
        Version {
            ts: Timestamp::new(ms, 0),
            writer,
            ..Version::ZERO
        }
    }

    /// A tally of `answers` (each with the sets it counts in) against
    /// `required`, and its failure with write quorum `w`.
    fn failure(required: Vec<usize>, w: usize, answers: Vec<(SetMask, Reply)>) -> Error {
        let mut tally = Tally::new(required);
        for (sets, answer) in answers {
            tally.add(sets, answer);
        }
        assert!(!tally.satisfied());
        tally.failure(w)
    }

    #[test]
    fn a_shortfall_made_of_shed_requests_is_backpressure() {
        let lost = || Err(unreachable());
        let not_reached = |answered, required| Error::QuorumNotReached { answered, required };
        // W = 2 of three current owners: one applied, one shed, one lost.
        assert_eq!(
            failure(vec![2], 2, vec![(1, applied()), (1, shed()), (1, lost())]),
            Error::Backpressure
        );
        // A replica out of room for it refuses as overloaded: shed too.
        let full = Ok(DataResponse::Refused {
            code: RefusalCode::Overloaded,
            reason: String::new(),
        });
        assert_eq!(
            failure(vec![2], 2, vec![(1, applied()), (1, full)]),
            Error::Backpressure
        );
        // Nothing shed: the owners are missing, not busy.
        assert_eq!(
            failure(vec![2], 2, vec![(1, applied()), (1, lost())]),
            not_reached(1, 2)
        );
        // W = 3: one shed request cannot make up two missing owners.
        assert_eq!(
            failure(vec![3], 3, vec![(1, applied()), (1, shed()), (1, lost())]),
            not_reached(1, 3)
        );
        // A transitional set (bit 1) short because its owner shed it.
        assert_eq!(
            failure(vec![1, 1], 1, vec![(1, applied()), (2, shed())]),
            Error::Backpressure
        );
        // One set short by a shed answer, another by a lost owner: retrying
        // later would not help the second (the error names the first short
        // set).
        assert_eq!(
            failure(
                vec![1, 1, 1],
                1,
                vec![(1, applied()), (2, shed()), (4, lost())]
            ),
            not_reached(0, 1)
        );
    }

    #[test]
    fn answers_count_alike_in_every_order() {
        // Current owners need 2, the owners after a join 1. Answers: an
        // owner of both sets, an owner of the current set, the joining
        // owner, and a current owner holding a newer version.
        let newer = version(20, 7);
        let answers: [(SetMask, fn() -> Reply); 4] = [
            (3, applied),
            (1, || Ok(DataResponse::Applied { was_live: true })),
            (2, applied),
            (1, || {
                Ok(DataResponse::Superseded {
                    current: version(20, 7),
                })
            }),
        ];
        // Every order of the four, built by inserting each answer at
        // every place of every order of those before it.
        let mut orders: Vec<Vec<usize>> = vec![vec![]];
        for i in 0..answers.len() {
            orders = orders
                .iter()
                .flat_map(|order| {
                    (0..=order.len()).map(move |at| {
                        let mut longer = order.clone();
                        longer.insert(at, i);
                        longer
                    })
                })
                .collect();
        }
        assert_eq!(orders.len(), 24);
        for order in orders {
            let mut tally = Tally::new(vec![2, 1]);
            tally.mine = Some(version(10, 1));
            for (k, &i) in order.iter().enumerate() {
                let (sets, answer) = &answers[i];
                tally.add(*sets, answer());
                // Only the first two applied it in the current set.
                let seen = &order[..=k];
                let expected = seen.contains(&0) && seen.contains(&1);
                assert_eq!(tally.satisfied(), expected, "{order:?} after {k}");
            }
            assert_eq!(tally.shortfall(2), (2, 2), "{order:?}");
            assert!(tally.was_live, "{order:?}");
            assert_eq!(tally.superseded, Some(newer), "{order:?}");
        }
    }

    #[test]
    fn superseded_answers() {
        let mine = version(10, 1);
        let superseded = |current| Ok(DataResponse::Superseded { current });
        #[rustfmt::skip]
        let rows = [
            ("another writer's newer version: re-stamp past it",
             version(11, 2), false, Some(version(11, 2))),
            ("a later write of this same run: counts as applied",
             version(11, 1), true, None),
            ("an older run of this node is not this run",
             Version { generation: Generation::new(9), ..version(11, 1) }, false,
             Some(Version { generation: Generation::new(9), ..version(11, 1) })),
        ];
        for (name, current, counts, restamp_past) in rows {
            let mut tally = Tally::new(vec![1]);
            tally.mine = Some(mine);
            tally.add(1, superseded(current));
            assert_eq!(tally.satisfied(), counts, "{name}");
            assert_eq!(tally.superseded, restamp_past, "{name}");
        }
        // Neither a drift refusal nor a lost owner counts for anything.
        let mut tally = Tally::new(vec![1]);
        tally.add(
            1,
            Ok(DataResponse::Refused {
                code: RefusalCode::ClockDrift,
                reason: "ahead".to_owned(),
            }),
        );
        tally.add(1, Err(unreachable()));
        assert_eq!(
            tally.failure(1),
            Error::QuorumNotReached {
                answered: 0,
                required: 1
            }
        );
    }

    #[test]
    fn shed_answers() {
        let refused = |code| {
            Ok(DataResponse::Refused {
                code,
                reason: String::new(),
            })
        };
        #[rustfmt::skip]
        let rows: [(&str, Reply, bool); 5] = [
            ("the connection's queue is full", shed(), true),
            ("the replica is out of room", refused(RefusalCode::Overloaded), true),
            ("the replica is stopping", refused(RefusalCode::ShuttingDown), false),
            ("the owner is down", Err(unreachable()), false),
            ("applied", applied(), false),
        ];
        for (name, answer, expected) in rows {
            assert_eq!(is_shed(&answer), expected, "{name}");
        }
    }

    #[test]
    fn a_forgetful_answer_counts_only_below_a_newer_one() {
        let live = |ms| {
            Lookup::Live(Item {
                value: bytes::Bytes::from_static(b"v"),
                version: version(ms, 1),
                expires_at: None,
                expiry_stamp: Timestamp::ZERO,
                counter: false,
            })
        };
        let forgot = |ms| Lookup::Forgotten {
            below: version(ms, 1),
        };
        #[rustfmt::skip]
        let rows: Vec<(&str, Vec<Lookup>, usize)> = vec![
            ("plain answers all count", vec![live(1), Lookup::Missing], 2),
            ("forgot alone: it may hide the newest version", vec![forgot(5)], 0),
            ("forgot beside an older value: it may hide a newer write",
             vec![forgot(5), live(4)], 1),
            ("forgot beside a newer value: it could only hold older", vec![forgot(5), live(6)], 2),
            ("forgot beside a miss: nothing known is newer", vec![forgot(5), Lookup::Missing], 1),
        ];
        for (name, answers, expected) in rows {
            let answers: Vec<_> = answers.into_iter().map(|l| (id('a'), l)).collect();
            assert_eq!(counted(&answers), expected, "{name}");
        }
    }

    #[test]
    fn the_newest_answer_wins_and_older_ones_are_repaired() {
        let live_stamped = |ms, stamp| {
            Lookup::Live(Item {
                value: bytes::Bytes::from_static(b"v"),
                version: version(ms, 1),
                expires_at: None,
                expiry_stamp: Timestamp::new(stamp, 0),
                counter: false,
            })
        };
        let live = |ms| live_stamped(ms, 0);
        let evicted = |ms| Lookup::Evicted {
            version: version(ms, 1),
        };
        let dead = |ms| Lookup::Dead {
            version: version(ms, 1),
            expired_at: None,
            expiry_stamp: Timestamp::ZERO,
        };
        let forgot = |ms| Lookup::Forgotten {
            below: version(ms, 1),
        };
        #[rustfmt::skip]
        let rows: Vec<ResolveRow> = vec![
            ("nobody knows the key", vec![('a', Lookup::Missing), ('b', Lookup::Missing)],
             Lookup::Missing, ""),
            ("the newest value; older and missing owners are repaired",
             vec![('a', live(1)), ('b', live(2)), ('c', Lookup::Missing)], live(2), "ac"),
            ("a delete is newest: it wins and is repaired",
             vec![('a', live(1)), ('b', dead(3))], dead(3), "a"),
            ("evicted, but another owner holds that version",
             vec![('a', evicted(2)), ('b', live(2)), ('c', live(1))], live(2), "c"),
            ("evicted and held nowhere else: a miss, nothing repaired",
             vec![('a', evicted(2)), ('b', live(1))], Lookup::Missing, ""),
            ("the latest expiry change of the newest version wins and is repaired",
             vec![('a', live_stamped(2, 5)), ('b', live_stamped(2, 9)), ('c', live(2))],
             live_stamped(2, 9), "ac"),
            ("an expiry change never beats a newer write",
             vec![('a', live_stamped(2, 9)), ('b', dead(3))], dead(3), "a"),
            ("an owner that forgot the range neither wins nor is repaired",
             vec![('a', forgot(9)), ('b', live(2)), ('c', live(1))], live(2), "c"),
        ];
        for (name, answers, winner, stale) in rows {
            let answers = answers.into_iter().map(|(c, l)| (id(c), l)).collect();
            assert_eq!(resolve_evicted(answers), (winner, ids(stale)), "{name}");
        }
    }

    /// Review (issue 14, section 8): a replica whose clock is behind still
    /// holds the value that expired on another at the same (version,
    /// stamp). The expired answer must win whichever arrives last; today
    /// the tie goes to the last answer, so the read's result depends on
    /// answer order and the lagging replica is never repaired.
    #[test]
    fn an_expired_answer_beats_a_live_one_of_the_same_version_in_any_order() {
        let v = version(2, 1);
        let live = Lookup::Live(Item {
            value: bytes::Bytes::from_static(b"v"),
            version: v,
            expires_at: Some(5),
            expiry_stamp: Timestamp::ZERO,
            counter: false,
        });
        let expired = Lookup::Dead {
            version: v,
            expired_at: Some(5),
            expiry_stamp: Timestamp::ZERO,
        };
        for answers in [
            vec![(id('a'), expired.clone()), (id('b'), live.clone())],
            vec![(id('b'), live.clone()), (id('a'), expired.clone())],
        ] {
            let (winner, _) = resolve_evicted(answers.clone());
            assert_eq!(winner, expired, "answers {answers:?}");
        }
    }

}
