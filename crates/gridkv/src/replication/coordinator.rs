//! The coordinator: runs one data operation against a key's owners.
//!
//! It carries out the plans of [`super::quorum`] (which owners, how many
//! answers from each set): it sends the requests, keeps hints for owners
//! it cannot reach, waits until the deadline, re-stamps a write that a
//! newer version superseded, and repairs owners a read found stale.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::time::Instant;

use super::hints::Hints;
use super::in_flight::{AnswerFuture, Finisher, Request, Requests, WriteRequests};
use super::placement::Placement;
use super::placement::Target;
use super::peers::PeerScores;
use super::quorum::{
    every_owner_answered,
    counted, is_shed, read_failure, read_plan, resolve_evicted, unreachable, Tally, WritePlan,
};
use super::replica::Replica;
use super::stats::Counters;
use super::wire::{DataRequest, DataResponse, RefusalCode};
use super::{Error, ReadOptions, ReplicationConfig, ReplicationStatus, WriteOptions};
use crate::id::NodeId;
use crate::keyspace::key_hash;
use crate::net::{Lane, Transport, TransportError};
use crate::store::{Condition, Lookup, Write};

use super::replica::WriteData;

#[derive(Debug)]
pub(crate) struct Coordinator {
    pub(crate) me: NodeId,
    pub(crate) transport: Transport,
    pub(crate) replica: Arc<Replica>,
    pub(crate) config: ReplicationConfig,
    pub(crate) placement: Arc<ArcSwap<Placement>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) hints: Arc<Hints>,
    /// Carries writes' leftover requests to their end.
    pub(crate) finisher: Finisher,
    /// The clock checks a write passes before it is stamped: the restart
    /// barrier and the clock fence.
    pub(crate) clock_gate: Arc<super::clock_gate::ClockGate>,
    /// What this node's requests taught it about each peer.
    pub(crate) peers: Arc<PeerScores>,
    /// This node's slots of the counters it increments.
    pub(crate) slots: super::counter_slots::CounterSlots,
    /// Writes on their way to owners in other datacenters.
    pub(crate) remote: Arc<super::remote_stream::RemoteStreams>,
}

/// A data request on its way: records its outcome in the peer's score,
/// also when dropped unanswered (see [`PeerScores::record`]).
struct Pending {
    peer: crate::net::Peer,
    scores: Arc<PeerScores>,
    sent: Instant,
    done: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            self.scores.record(self.peer.addr(), self.sent, None);
        }
    }
}

/// What a conditional write did ([`Coordinator::write_if`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conditional {
    /// W owners applied it.
    Applied {
        /// Whether an owner that applied it held a live value before.
        was_live: bool,
    },
    /// Short of W, and some owner refused it on its condition.
    Conflict,
}

/// The tombstone a conditional write's read found (version, expiry stamp,
/// when its TTL ran out), put back where a write that lost is taken back.
pub(crate) type Restore = (crate::hlc::Version, crate::hlc::Timestamp, Option<u64>);

/// One write on its way to a key's owners: what [`Coordinator::fan_out`]
/// sends.
pub(super) struct Outgoing<'a> {
    pub(super) key: &'a [u8],
    pub(super) write: Write<'a>,
    /// Owners apply it only if this holds (a conditional write).
    pub(super) condition: Option<Condition>,
}

thread_local! {
    /// Per thread, a cached handle on the placement of the last node this
    /// thread read locally from (see [`Coordinator::read_local`]). It keeps
    /// that node's latest placement alive until the thread reads from
    /// another node or exits: memory only, no tasks or sockets.
    static LOCAL_PLACEMENT: std::cell::RefCell<Option<PlacementCache>> =
        const { std::cell::RefCell::new(None) };
}

type PlacementCache = arc_swap::Cache<Arc<ArcSwap<Placement>>, Arc<Placement>>;

impl Coordinator {
    pub(crate) fn status(&self) -> ReplicationStatus {
        let p = self.placement.load();
        let n = p.ring.copies(self.config.replicas);
        let placement = self.config.placement();
        // A level's count of owners, in this node's datacenter for a
        // local one, with every copy placed.
        let nominal = |level: Option<super::ConsistencyLevel>, numeric: usize| {
            level.map_or(numeric, |l| l.nominal(&placement, &p.datacenter))
        };
        let w = nominal(self.config.write_consistency, self.config.write_quorum);
        let r = nominal(self.config.read_consistency, self.config.read_quorum);
        ReplicationStatus {
            replicas: self.config.replicas,
            write_quorum: w,
            read_quorum: r,
            effective_replicas: n,
            effective_write_quorum: w.min(n),
            effective_read_quorum: r.min(n),
        }
    }

    pub(super) fn check_key(&self, key: &[u8]) -> Result<(), Error> {
        let max = self.replica.store.config().max_key_len;
        if key.is_empty() {
            return Err(Error::InvalidKey("key is empty".into()));
        }
        if key.len() > max {
            return Err(Error::InvalidKey(format!(
                "key is {} bytes, the maximum is {max}",
                key.len()
            )));
        }
        Ok(())
    }

    /// A request of `body` to `addr`, with no timer of its own: the
    /// operation's deadline bounds it. The caller polls it ([`Requests`]),
    /// so the common case needs no task of its own (each would cost a
    /// wake-up on another thread).
    ///
    /// Its outcome goes into the peer's score ([`PeerScores`]): an answer,
    /// a failure, or, dropped unanswered, a failure if it waited longer
    /// than the peer's usual.
    ///
    /// A peer avoided now (in its back-off, or half-open with its one
    /// probe out: [`PeerScores::sending`]) is not asked: the request fails
    /// at once, unrecorded (a write keeps a hint for the owner).
    pub(super) fn request(&self, addr: &str, body: Bytes) -> AnswerFuture {
        if !self.peers.sending(addr) {
            let avoided = TransportError::Unreachable {
                peer: addr.to_owned(),
                reason: "avoided after failed requests".to_owned(),
                retry_in: std::time::Duration::ZERO,
            };
            return Box::pin(std::future::ready(Err(avoided)));
        }
        let mut pending = Pending {
            peer: self.transport.peer(addr),
            scores: self.peers.clone(),
            sent: Instant::now(),
            done: false,
        };
        Box::pin(async move {
            let answer = pending.peer.request_untimed(Lane::Data, body).await;
            pending.done = true;
            pending
                .scores
                .record(pending.peer.addr(), pending.sent, Some(&answer));
            DataResponse::decode(&answer?).map_err(|e| TransportError::ConnectionLost {
                peer: pending.peer.addr().to_owned(),
                reason: format!("undecodable answer: {e}"),
            })
        })
    }

    /// Writes a set (`Some`) or delete (`None`) of `key`. Returns whether a
    /// live value was there before, as far as the owners that applied it
    /// know, in any attempt: a re-stamped write's first attempt may be the
    /// one that removed the live value.
    pub(crate) async fn write(
        &self,
        key: &[u8],
        data: WriteData,
        opts: WriteOptions,
    ) -> Result<bool, Error> {
        let result = self.write_inner(key, data, opts).await;
        self.count(&result, &self.counters.writes);
        result
    }

    pub(super) fn count<T>(&self, result: &Result<T, Error>, ok: &std::sync::atomic::AtomicU64) {
        match result {
            Ok(_) => Counters::add(ok, 1),
            Err(Error::QuorumNotReached { .. } | Error::Timeout { .. }) => {
                Counters::add(&self.counters.quorum_failures, 1);
            }
            Err(_) => {}
        }
    }

    /// Waits, within the write's deadline, until this node may stamp
    /// writes: its restart barrier passed and its clock within the bound
    /// of the cluster's (see [`ClockGate`](super::clock_gate::ClockGate)).
    /// One atomic load once nothing holds writes.
    pub(super) async fn pass_write_barrier(&self, opts: &WriteOptions) -> Result<(), Error> {
        let budget = opts.timeout.unwrap_or(self.config.timeout);
        self.clock_gate.pass(budget).await
    }

    async fn write_inner(
        &self,
        key: &[u8],
        data: WriteData,
        opts: WriteOptions,
    ) -> Result<bool, Error> {
        match self.write_attempts(key, data, None, opts).await? {
            Conditional::Applied { was_live } => Ok(was_live),
            Conditional::Conflict => unreachable!("an unconditional write has no conflict"),
        }
    }

    pub(super) async fn write_attempts(
        &self,
        key: &[u8],
        data: WriteData,
        conditional: Option<(Condition, Option<Restore>)>,
        opts: WriteOptions,
    ) -> Result<Conditional, Error> {
        let condition = conditional.map(|(c, _)| c);
        self.check_key(key)?;
        // The barrier's wait counts against the write's deadline.
        let now = Instant::now();
        self.pass_write_barrier(&opts).await?;
        if let Some((value, _)) = &data {
            self.check_value(value)?;
        }
        let deadline = now + opts.timeout.unwrap_or(self.config.timeout);
        let p = self.placement.load_full();
        let plan = WritePlan::new(&self.config, &p, &self.me, key_hash(key), &opts, now)?;
        self.reachable_quorum(&plan, &p)?;
        let mut attempt = 0;
        // Whether an owner applied some attempt over a live value: a later
        // attempt finds the earlier one's write (a tombstone) in its place.
        let mut was_live = false;
        loop {
            let version = self.replica.hlc.new_version();
            let write = match &data {
                Some((value, expires_at)) => Write::set(version, value, *expires_at),
                None => Write::delete(version),
            };
            let tally = self
                .fan_out(
                    Outgoing {
                        key,
                        write,
                        condition,
                    },
                    &plan,
                    &p,
                    deadline,
                    plan.tally(version),
                )
                .await?;
            tracing::trace!(
                target: "gridkv::keys",
                key = %String::from_utf8_lossy(key),
                %version,
                delete = data.is_none(),
                satisfied = tally.satisfied(),
                superseded = ?tally.superseded,
                "write"
            );
            was_live |= tally.was_live;
            if tally.satisfied() {
                return Ok(Conditional::Applied { was_live });
            }
            // A conditional write is never re-stamped: a second attempt
            // would meet the first one's value as a change since the read.
            // It is taken back, and the caller reads again.
            if tally.conflict.is_some() || (condition.is_some() && tally.superseded.is_some()) {
                Counters::add(&self.counters.conflicts, 1);
                let restore = conditional.and_then(|(_, r)| r);
                // From every owner, not only those that applied it: one
                // may have got it since from a read's repair, and each
                // refuses it from now on.
                let owners: Vec<usize> = (0..plan.owners.len()).collect();
                self.retract(key, version, restore, &owners, &plan, &p, deadline)
                    .await;
                return Ok(Conditional::Conflict);
            }
            match tally.superseded {
                Some(current) if attempt < self.config.max_restamps => {
                    // A replica holds a newer version (clock skew, or a
                    // concurrent write): move our clock past it and
                    // re-stamp, so this write, once acknowledged, is the
                    // newest. Past the drift bound this clock cannot
                    // follow: every re-stamp would be superseded again.
                    super::pulled::stamp_past(&self.replica.hlc, current.ts)?;
                    Counters::add(&self.counters.restamps, 1);
                    attempt += 1;
                }
                _ => return Err(tally.failure(plan.w)),
            }
        }
    }

    /// Fails at once (instead of at the deadline) a write whose quorum
    /// needs an owner this node cannot reach now: known down, or avoided
    /// after failed requests ([`PeerScores`]).
    pub(super) fn reachable_quorum(&self, plan: &WritePlan, p: &Placement) -> Result<(), Error> {
        let usable = |id: &NodeId| match p.target(&self.me, id) {
            Some(Target::Local) => true,
            Some(Target::Remote(addr)) => !self.peers.avoided(addr),
            None => false,
        };
        match plan.short_of(usable) {
            None => Ok(()),
            Some((answered, required)) => {
                Counters::add(&self.counters.fast_failures, 1);
                Err(Error::QuorumNotReached { answered, required })
            }
        }
    }

    pub(super) fn check_value(&self, value: &[u8]) -> Result<(), Error> {
        let max = self.replica.store.config().max_value_len;
        if value.len() > max {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max,
            });
        }
        Ok(())
    }

    /// [`Coordinator::fan_out`] of an unconditional write.
    pub(super) async fn fan_out_plain(
        &self,
        key: &[u8],
        write: Write<'_>,
        plan: &WritePlan,
        p: &Placement,
        deadline: Instant,
        tally: Tally,
    ) -> Result<Tally, Error> {
        let out = Outgoing {
            key,
            write,
            condition: None,
        };
        self.fan_out(out, plan, p, deadline, tally).await
    }

    /// Sends `write` to every owner of `plan` (hints for those known down,
    /// stand-ins for a sloppy quorum) and counts answers into `tally` until
    /// every owner set has its quorum or no request is left. Requests still
    /// running then finish in the background: every owner gets the write.
    pub(super) async fn fan_out(
        &self,
        out: Outgoing<'_>,
        plan: &WritePlan,
        p: &Placement,
        deadline: Instant,
        mut tally: Tally,
    ) -> Result<Tally, Error> {
        let Outgoing {
            key,
            write,
            condition,
        } = out;
        let write = &write;
        // The encoded request is built only when some owner is remote or
        // needs a hint (a one-node cluster needs neither). Hints and
        // stand-ins keep the plain write: the condition is checked by the
        // owners that answer now, and once applied anywhere the write is an
        // ordinary version that repair carries on.
        let mut body: Option<Bytes> = None;
        let encoded = |body: &mut Option<Bytes>| {
            body.get_or_insert_with(|| Bytes::from(DataRequest::encode_write(key, write)))
                .clone()
        };
        let mut conditional: Option<Bytes> = None;
        let to_owner = |body: &mut Option<Bytes>, conditional: &mut Option<Bytes>| match condition
        {
            None => encoded(body),
            Some(c) => conditional
                .get_or_insert_with(|| {
                    Bytes::from(DataRequest::encode_conditional(&encoded(body), c))
                })
                .clone(),
        };
        let mut in_flight = WriteRequests::new(deadline, &self.finisher);
        // Owners known down whose write this node now keeps as a hint.
        let mut hinted_here: Vec<NodeId> = Vec::new();
        let applied = |answer: &Result<DataResponse, TransportError>| {
            matches!(answer, Ok(DataResponse::Applied { .. }))
        };
        for (slot, (id, sets)) in plan.owners.iter().enumerate() {
            // An owner in another datacenter that this write's level does
            // not wait for gets it through its datacenter's stream.
            if *sets == 0 && condition.is_none() && !p.ring.in_datacenter(id, &p.datacenter) {
                self.queue_remote(p, *id, encoded(&mut body));
                continue;
            }
            match p.target(&self.me, id) {
                Some(Target::Local) => {
                    let response = Ok(self.replica.apply_if(key, *write, condition));
                    if applied(&response) {
                        tally.applied_slots.push(slot);
                    }
                    tally.add(*sets, response);
                }
                Some(Target::Remote(addr)) => {
                    let request_body = to_owner(&mut body, &mut conditional);
                    let answer = self.request(addr, request_body);
                    // A request left unanswered at the end becomes a hint,
                    // of the plain write. A conditional write keeps none:
                    // it counts only where its condition was checked, and
                    // one that lost must not arrive later.
                    let hint = condition.is_none().then(|| (*id, encoded(&mut body)));
                    in_flight.requests.push(Request::new(slot, answer, hint));
                }
                None => {
                    if condition.is_none() && self.hints.keep(*id, encoded(&mut body), &self.counters)
                    {
                        hinted_here.push(*id);
                    }
                    tally.add(*sets, Err(unreachable()));
                }
            }
        }
        for (i, (owner, to)) in plan.stand_ins.iter().enumerate() {
            let slot = plan.owners.len() + i;
            match p.target(&self.me, to) {
                // This node already keeps the hint (above): that is its
                // stand-in's copy.
                Some(Target::Local) if hinted_here.contains(owner) => {
                    let applied = Ok(DataResponse::Applied { was_live: false });
                    tally.add(plan.sets_of(slot), applied);
                }
                Some(Target::Remote(addr)) => {
                    let hinted =
                        Bytes::from(DataRequest::encode_hinted(owner, &encoded(&mut body)));
                    let answer = self.request(addr, hinted);
                    in_flight.requests.push(Request::new(slot, answer, None));
                }
                // This node's hints are full; or (never: the plan picks
                // reachable stand-ins) no way to the stand-in.
                Some(Target::Local) | None => {}
            }
        }
        while !tally.satisfied() && !in_flight.requests.is_empty() {
            let next = in_flight.requests.next(self.finisher.keeper());
            match tokio::time::timeout_at(deadline, next).await {
                Ok(Some((slot, answer))) => {
                    if applied(&answer) {
                        tally.applied_slots.push(slot);
                    }
                    tally.add(plan.sets_of(slot), answer);
                }
                Ok(None) => break,
                Err(_) => {
                    let (answered, required) = tally.shortfall(plan.w);
                    return Err(Error::Timeout { answered, required });
                }
            }
        }
        Ok(tally)
    }

    /// A local read, if this node is an owner of `key` that serves reads:
    /// no network, no allocation, no clone of the placement.
    pub(crate) fn read_local(&self, key: &[u8]) -> Option<Result<Lookup, Error>> {
        let hash = key_hash(key);
        let owner = |p: &Placement| {
            let n = self.config.replicas.min(p.ring.len());
            p.local_serves_reads
                && p.ring.preference_list(hash, n).contains(&self.me)
                && self.replica.holdings.holds_owned(hash)
        };
        // The placement through this thread's cache of it: checking that
        // the cached one is current is a plain load, where an `ArcSwap`
        // load costs a fence and a compare-and-swap, a third of a store get.
        let owner = LOCAL_PLACEMENT.with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                let cached = slot
                    .as_ref()
                    .is_some_and(|c| std::ptr::eq(c.arc_swap(), &*self.placement));
                let cache = if cached {
                    slot.as_mut().expect("checked above")
                } else {
                    slot.insert(arc_swap::Cache::new(self.placement.clone()))
                };
                owner(cache.load())
            }
            Err(_) => owner(&self.placement.load()),
        });
        if !owner {
            return None;
        }
        Some(match self.replica.store.get_hashed(key, hash) {
            Ok(Lookup::Evicted { .. } | Lookup::Forgotten { .. }) => Ok(Lookup::Missing),
            Ok(lookup) => Ok(lookup),
            Err(e) => Err(Error::from_store(e)),
        })
    }

    /// Reads `key`: the highest version among R owners' answers, with
    /// background repair of owners that answered older.
    pub(crate) async fn read(&self, key: &[u8], opts: ReadOptions) -> Result<Lookup, Error> {
        let result = self.read_inner(key, opts).await;
        self.count(&result, &self.counters.reads);
        result
    }

    /// A read of `key` on the node's own behalf (not counted as a client
    /// read): one that finds a value nobody vouches for drops it (see
    /// [`vouch`](super::vouch)).
    pub(crate) async fn check(&self, key: &[u8]) -> Result<Lookup, Error> {
        self.read_inner(key, ReadOptions::default()).await
    }

    async fn read_inner(&self, key: &[u8], opts: ReadOptions) -> Result<Lookup, Error> {
        self.check_key(key)?;
        // `ReadOptions::local`'s fast path ran before this, in the node
        // (`GridKv::lookup`): here it is a read with R = 1.
        let hash = key_hash(key);
        let deadline = Instant::now() + opts.timeout.unwrap_or(self.config.timeout);
        let p = self.placement.load_full();
        let plan = read_plan(&self.config, &p, &self.me, hash, &opts)?;
        let r = plan.required;
        let candidates = self.read_order(&p, plan.owners, r)?;
        // Built on the first remote request (an answer from the local store
        // alone needs neither).
        let mut body: Option<Bytes> = None;
        // Reads change nothing: one the caller no longer waits for is
        // dropped, not finished.
        let mut in_flight = Requests::default();
        let mut answers: Vec<(NodeId, Lookup)> = Vec::with_capacity(r);
        let mut next = 0;
        // Owners that shed the read (overloaded).
        let mut shed = 0;
        // One more request than needed once an owner is slower than its
        // usual (a speculative read), and when that may happen.
        let mut extra = 0;
        let mut speculate_at: Option<Instant> = None;
        loop {
            // Keep r requests in flight while candidates remain. (Answers
            // of owners that forgot the key's range may not count: see
            // `counted`.)
            while counted(&answers) + in_flight.len() < r + extra && next < candidates.len() {
                let id = candidates[next];
                match p.target(&self.me, &id) {
                    Some(Target::Local) => {
                        if let DataResponse::Value(lookup) = self.replica.read(key, hash) {
                            answers.push((id, lookup));
                        }
                    }
                    Some(Target::Remote(addr)) => {
                        let body = body
                            .get_or_insert_with(|| Bytes::from(DataRequest::encode_read(key)))
                            .clone();
                        in_flight.push(Request::new(next, self.request(addr, body), None));
                        if extra == 0 {
                            let at = Instant::now() + self.peers.speculate_after(addr);
                            speculate_at = Some(speculate_at.map_or(at, |t| t.min(at)));
                        }
                    }
                    None => {}
                }
                next += 1;
            }
            if counted(&answers) >= r {
                break;
            }
            if in_flight.is_empty() {
                // Every owner that could answer did, and some had
                // forgotten the key's range: for the caller, a miss.
                if answers.len() + shed >= r
                    && answers
                        .iter()
                        .any(|(_, l)| matches!(l, Lookup::Forgotten { .. }))
                {
                    // Every owner answered: a value the others forgot
                    // above, and none holds, is nobody's to vouch for.
                    if every_owner_answered(&self.config, &p, hash, answers.len()) {
                        self.forget_unvouched(key, &p, &answers);
                    }
                    return Ok(Lookup::Missing);
                }
                return Err(read_failure(counted(&answers), shed, r));
            }
            // Until the deadline, or until it is time for a speculative
            // read (once, and only if an owner is left to ask).
            let speculate = speculate_at.filter(|_| extra == 0 && next < candidates.len());
            let wake = speculate.map_or(deadline, |at| at.min(deadline));
            match tokio::time::timeout_at(wake, in_flight.next(self.finisher.keeper())).await {
                Err(_) if wake < deadline => {
                    extra = 1;
                    Counters::add(&self.counters.speculative_reads, 1);
                }
                Ok(Some((_, answer))) if is_shed(&answer) => shed += 1,
                Ok(Some((slot, answer))) => {
                    if let Ok(DataResponse::Value(lookup)) = answer {
                        answers.push((candidates[slot], lookup));
                    }
                }
                Ok(None) => unreachable!("a request is in flight"),
                Err(_) => {
                    return Err(Error::Timeout {
                        answered: counted(&answers),
                        required: r,
                    })
                }
            }
        }
        tracing::trace!(
            target: "gridkv::keys",
            key = %String::from_utf8_lossy(key),
            answers = ?answers
                .iter()
                .map(|(id, l)| format!("{id}:{}", super::replica::brief(l)))
                .collect::<Vec<_>>(),
            "read answers"
        );
        let (result, stale) = resolve_evicted(answers);
        if !stale.is_empty() {
            self.repair(key, &result, &p, stale);
        }
        Ok(result)
    }

    /// The order in which a read asks `owners` (this node first, then
    /// reachable owners nearest first, avoided ones last), or a fast
    /// failure if fewer than `r` of them can be reached now.
    pub(super) fn read_order(
        &self,
        p: &Placement,
        owners: Vec<NodeId>,
        r: usize,
    ) -> Result<Vec<NodeId>, Error> {
        let targets: Vec<Option<Target<'_>>> =
            owners.iter().map(|id| p.target(&self.me, id)).collect();
        let addrs: Vec<Option<&str>> = targets
            .iter()
            .map(|t| match t {
                Some(Target::Remote(addr)) => Some(*addr),
                _ => None,
            })
            .collect();
        let ranked = self.peers.rank(&addrs, r);
        let usable = ranked
            .iter()
            .filter(|(i, avoided)| targets[*i].is_some() && !avoided)
            .count();
        if usable < r {
            Counters::add(&self.counters.fast_failures, 1);
            return Err(Error::QuorumNotReached {
                answered: usable,
                required: r,
            });
        }
        Ok(ranked.into_iter().map(|(i, _)| owners[i]).collect())
    }

    /// Delivers waiting hints to owners that are reachable again. Returns
    /// how many were delivered.
    pub(crate) async fn deliver_hints(&self) -> usize {
        let p = self.placement.load_full();
        let mut delivered = 0;
        for owner in self.hints.owners() {
            let Some(m) = p.members.get(&owner) else {
                continue;
            };
            if m.liveness != crate::membership::Liveness::Alive {
                continue;
            }
            let addr = m.identity.addr.clone();
            let (batch, expired) = self.hints.take(&owner, 256);
            Counters::add(&self.counters.hints_dropped, expired as u64);
            let mut left = batch.into_iter();
            while let Some(hint) = left.next() {
                let sent = self
                    .transport
                    .peer(&addr)
                    .request_with_timeout(Lane::Data, hint.body.clone(), self.config.timeout)
                    .await;
                match sent.map(|frame| DataResponse::decode(&frame)) {
                    // Applied, or superseded by something newer: either
                    // way the owner no longer needs it.
                    // (Refused under a watermark: it would be every time.)
                    Ok(Ok(
                        DataResponse::Applied { .. }
                        | DataResponse::Superseded { .. }
                        | DataResponse::Forgotten { .. },
                    )) => {
                        delivered += 1;
                    }
                    // Stopping: it comes back (or is replaced); keep the rest.
                    Ok(Ok(DataResponse::Refused {
                        code: RefusalCode::ShuttingDown,
                        ..
                    })) => {
                        let mut rest = vec![hint];
                        rest.extend(left);
                        self.hints.requeue(owner, rest);
                        break;
                    }
                    Ok(Ok(DataResponse::Refused { .. })) | Ok(Err(_)) => {
                        Counters::add(&self.counters.hints_dropped, 1);
                    }
                    _ => {
                        let mut rest = vec![hint];
                        rest.extend(left);
                        self.hints.requeue(owner, rest);
                        break;
                    }
                }
            }
        }
        Counters::add(&self.counters.hints_delivered, delivered as u64);
        delivered
    }

    /// Drops, on the owners holding them, the values of `key` that no other
    /// owner vouches for (see [`vouch`](super::vouch)), in the background.
    fn forget_unvouched(&self, key: &[u8], p: &Placement, answers: &[(NodeId, Lookup)]) {
        for (id, version) in super::vouch::unvouched(answers) {
            tracing::trace!(
                target: "gridkv::keys",
                key = %String::from_utf8_lossy(key),
                %id,
                %version,
                "forget unvouched"
            );
            match p.target(&self.me, &id) {
                Some(Target::Local) => {
                    let _ = self.replica.store.forget_unvouched(key, version);
                }
                Some(Target::Remote(addr)) => {
                    let peer = self.transport.peer(addr);
                    let body = Bytes::from(DataRequest::encode_forget(key, version));
                    let timeout = self.config.timeout;
                    tokio::spawn(async move {
                        let _ = peer.request_with_timeout(Lane::Data, body, timeout).await;
                    });
                }
                None => {}
            }
        }
    }

    /// Sends the winning version to owners that answered with older ones,
    /// in the background.
    fn repair(&self, key: &[u8], winner: &Lookup, p: &Placement, stale: Vec<NodeId>) {
        // The write that makes a replica match the winner; the store's own
        // tombstone rule covers deletes and expiries alike.
        let Some(write) = Write::of_lookup(winner) else {
            return;
        };
        let body = Bytes::from(DataRequest::encode_write(key, &write));
        Counters::add(&self.counters.read_repairs, stale.len() as u64);
        tracing::trace!(
            target: "gridkv::keys",
            key = %String::from_utf8_lossy(key),
            version = %write.version,
            ?stale,
            "repair"
        );
        for id in stale {
            match p.target(&self.me, &id) {
                Some(Target::Local) => {
                    let _ = self.replica.apply(key, write);
                }
                Some(Target::Remote(addr)) => {
                    let addr = addr.to_owned();
                    let transport = self.transport.clone();
                    let body = body.clone();
                    let timeout = self.config.timeout;
                    tokio::spawn(async move {
                        let _ = transport
                            .peer(&addr)
                            .request_with_timeout(Lane::Data, body, timeout)
                            .await;
                    });
                }
                None => {}
            }
        }
    }
}
