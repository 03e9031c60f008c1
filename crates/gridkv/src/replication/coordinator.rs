//! The coordinator: runs one data operation against a key's owners.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::time::Instant;

use super::hints::Hints;
pub(crate) use super::placement::Placement;
use super::replica::Replica;
use super::stats::Counters;
use super::wire::{DataRequest, DataResponse, RefusalCode};
use super::{Error, ReadOptions, ReplicationConfig, ReplicationStatus, WriteOptions};
use crate::hlc::Version;
use crate::id::NodeId;
use crate::keyspace::key_hash;
use crate::membership::Member;
use crate::net::{Lane, Transport, TransportError};
use crate::store::{Lookup, Write};

/// Where one owner is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Local,
    Remote(String),
}

pub(crate) use super::replica::WriteData;

#[derive(Debug)]
pub(crate) struct Coordinator {
    pub(crate) me: NodeId,
    pub(crate) transport: Transport,
    pub(crate) replica: Arc<Replica>,
    pub(crate) config: ReplicationConfig,
    pub(crate) placement: Arc<ArcSwap<Placement>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) hints: Arc<Hints>,
    /// Wall-clock ms before which this node stamps no write (see
    /// [`Coordinator::hold_writes_until`]); 0 for none.
    pub(crate) write_barrier: std::sync::atomic::AtomicU64,
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

/// One owner's answer: its slot (an index the caller chose), and what it
/// said.
type Answer = (usize, Result<DataResponse, TransportError>);

/// One request to an owner, as [`Coordinator::request`] builds it.
type RequestFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// The requests of one operation, polled by its caller. There are at most
/// a few (one per owner), so each wake-up polls them all.
struct InFlight {
    requests: Vec<RequestFuture>,
    /// Whether requests left when this is dropped run on in a task of
    /// their own (writes: every owner must get them) or are dropped
    /// (reads).
    finish_on_drop: bool,
}

impl InFlight {
    fn new(finish_on_drop: bool) -> Self {
        Self {
            requests: Vec::new(),
            finish_on_drop,
        }
    }

    fn push(&mut self, request: RequestFuture) {
        self.requests.push(request);
    }

    fn len(&self) -> usize {
        self.requests.len()
    }

    fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// The next answer, in completion order; `None` when none is left.
    async fn next(&mut self) -> Option<Answer> {
        std::future::poll_fn(|cx| {
            if self.requests.is_empty() {
                return Poll::Ready(None);
            }
            for i in 0..self.requests.len() {
                if let Poll::Ready(answer) = self.requests[i].as_mut().poll(cx) {
                    drop(self.requests.swap_remove(i));
                    return Poll::Ready(Some(answer));
                }
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finish_on_drop || self.requests.is_empty() {
            return;
        }
        // Also when the caller's future is dropped mid-write (a timeout
        // around it): the requests already started still reach their owners
        // and keep hints for those that fail.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut rest = InFlight {
            requests: std::mem::take(&mut self.requests),
            finish_on_drop: false,
        };
        runtime.spawn(async move { while rest.next().await.is_some() {} });
    }
}

impl Coordinator {
    pub(crate) fn status(&self) -> ReplicationStatus {
        let members = self.placement.load().ring.len();
        let n = self.config.replicas.min(members);
        ReplicationStatus {
            replicas: self.config.replicas,
            write_quorum: self.config.write_quorum,
            read_quorum: self.config.read_quorum,
            effective_replicas: n,
            effective_write_quorum: self.config.write_quorum.min(n),
            effective_read_quorum: self.config.read_quorum.min(n),
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), Error> {
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

    /// How an owner is reached, or `None` if it is known unreachable.
    fn target(&self, p: &Placement, id: &NodeId) -> Option<Target> {
        if *id == self.me {
            return Some(Target::Local);
        }
        let m = p.members.get(id)?;
        m.liveness
            .is_reachable()
            .then(|| Target::Remote(m.identity.addr.clone()))
    }

    /// Whether an owner in a transitional owner set (the ring before or
    /// after a change) must count toward that set's quorum: not once it
    /// has left or been removed, and, in the ring before the change, not
    /// while it is down.
    fn guards_transition(&self, p: &Placement, id: &NodeId, before_change: bool) -> bool {
        if *id == self.me {
            return true;
        }
        let Some(m) = p.members.get(id) else {
            return false;
        };
        let gone = matches!(
            m.ring,
            crate::membership::RingState::Left | crate::membership::RingState::Removed
        );
        let down = matches!(
            m.liveness,
            crate::membership::Liveness::Down | crate::membership::Liveness::Left
        );
        !(gone || (before_change && down))
    }

    fn serves_reads(&self, p: &Placement, id: &NodeId) -> bool {
        p.members.get(id).is_some_and(Member::serves_reads)
    }

    /// A request of `body` to `addr`, answering under `slot`; if it fails
    /// and `hint_for` names an owner, the write is kept as a hint for it.
    /// The caller polls it ([`InFlight`]), so the common case needs no task
    /// of its own (each would cost a wake-up on another thread).
    fn request(
        &self,
        addr: String,
        body: Bytes,
        timeout: Duration,
        slot: usize,
        hint_for: Option<NodeId>,
    ) -> RequestFuture {
        let transport = self.transport.clone();
        let hints = hint_for.map(|owner| (owner, self.hints.clone(), self.counters.clone()));
        Box::pin(async move {
            let hint_body = hints.as_ref().map(|_| body.clone());
            let answer = transport
                .peer(&addr)
                .request_with_timeout(Lane::Data, body, timeout)
                .await
                .and_then(|frame| {
                    DataResponse::decode(&frame).map_err(|e| TransportError::ConnectionLost {
                        peer: addr.clone(),
                        reason: format!("undecodable answer: {e}"),
                    })
                });
            // A write the owner did not get (it may still have applied it:
            // the hint is then a harmless duplicate), or refused because it
            // is stopping (it will be back, or be replaced).
            let missed = matches!(
                &answer,
                Err(_)
                    | Ok(DataResponse::Refused {
                        code: RefusalCode::ShuttingDown,
                        ..
                    })
            );
            if let (Some((owner, hints, counters)), Some(body), true) = (hints, hint_body, missed) {
                hints.keep(owner, body, &counters);
            }
            (slot, answer)
        })
    }

    /// Writes a set (`Some`) or delete (`None`) of `key`. Returns whether a
    /// live value was there before, as far as the owners that applied it
    /// know.
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

    fn count<T>(&self, result: &Result<T, Error>, ok: &std::sync::atomic::AtomicU64) {
        match result {
            Ok(_) => Counters::add(ok, 1),
            Err(Error::QuorumNotReached { .. } | Error::Timeout { .. }) => {
                Counters::add(&self.counters.quorum_failures, 1)
            }
            Err(_) => {}
        }
    }

    /// A restarted node's clock may be behind the versions its previous
    /// run stamped (that run's clock could have been pulled up to the drift
    /// limit ahead by faster peers). Its writes wait until the wall clock
    /// passes `ms`, so none is stamped below a version of the previous run,
    /// even one that only reached a replica that is unreachable now.
    pub(crate) fn hold_writes_until(&self, ms: u64) {
        self.write_barrier
            .fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits out the barrier of [`Coordinator::hold_writes_until`], if one
    /// is set (`Timeout` if it outlasts the write's deadline). Once the wall
    /// clock has passed it, the HLC is moved past it too (so a wall clock
    /// that later steps back still stamps above it) and it is cleared: no
    /// clock read per write after that.
    async fn pass_write_barrier(&self, opts: &WriteOptions) -> Result<(), Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let barrier = self.write_barrier.load(Relaxed);
        if barrier == 0 {
            return Ok(());
        }
        let now = self.replica.hlc.clock().now_ms();
        if now < barrier {
            let wait = Duration::from_millis(barrier - now);
            if wait > opts.timeout.unwrap_or(self.config.timeout) {
                return Err(Error::Timeout {
                    answered: 0,
                    required: opts.quorum.unwrap_or(self.config.write_quorum),
                });
            }
            tokio::time::sleep(wait).await;
        }
        let _ = self
            .replica
            .hlc
            .update(crate::hlc::Timestamp::new(barrier, 0));
        // A later barrier set meanwhile stays (the exchange then fails).
        let _ = self
            .write_barrier
            .compare_exchange(barrier, 0, Relaxed, Relaxed);
        Ok(())
    }

    async fn write_inner(
        &self,
        key: &[u8],
        data: WriteData,
        opts: WriteOptions,
    ) -> Result<bool, Error> {
        self.check_key(key)?;
        self.pass_write_barrier(&opts).await?;
        if let Some((value, _)) = &data {
            let max = self.replica.store.config().max_value_len;
            if value.len() > max {
                return Err(Error::ValueTooLarge {
                    len: value.len(),
                    max,
                });
            }
        }
        if opts.quorum == Some(0) {
            return Err(Error::InvalidOptions("write quorum must be at least 1"));
        }
        let deadline = Instant::now() + opts.timeout.unwrap_or(self.config.timeout);
        let p = self.placement.load_full();
        let n = self.config.replicas.min(p.ring.len());
        let w = opts
            .quorum
            .unwrap_or(self.config.write_quorum)
            .min(n.max(1));
        if n == 0 {
            return Err(Error::QuorumNotReached {
                answered: 0,
                required: w,
            });
        }
        let hash = key_hash(key);
        // Joint quorums while the ring changes: W of the current owners,
        // and W of the owners after pending changes (joins, leaves), and,
        // for a while after a change, W of the owners before it, so that a
        // reader whose view is a step behind or ahead still meets this write.
        let mut sets = vec![p
            .ring
            .preference_list(hash, n)
            .iter()
            .copied()
            .collect::<Vec<_>>()];
        let future_n = self.config.replicas.min(p.future.len());
        let future: Vec<NodeId> = p
            .future
            .preference_list(hash, future_n)
            .iter()
            .copied()
            .collect();
        if !same_members(&future, &sets[0]) && !future.is_empty() {
            sets.push(future);
        }
        let mut previous_set = None;
        if let Some(previous) = p
            .previous
            .as_ref()
            .filter(|(_, until)| Instant::now() < *until)
        {
            let previous_n = self.config.replicas.min(previous.0.len());
            let before: Vec<NodeId> = previous
                .0
                .preference_list(hash, previous_n)
                .iter()
                .copied()
                .collect();
            if !before.is_empty() && sets.iter().all(|s| !same_members(s, &before)) {
                previous_set = Some(sets.len());
                sets.push(before);
            }
        }
        // The current owners count in full: W of them, reachable or not.
        // The other sets only guard readers whose view is a step away, so
        // each needs just enough to meet such a reader's quorum.
        let required: Vec<usize> = sets
            .iter()
            .enumerate()
            .map(|(i, set)| {
                if i == 0 {
                    return w;
                }
                let eligible = set
                    .iter()
                    .filter(|id| self.guards_transition(&p, id, previous_set == Some(i)))
                    .count();
                transition_quorum(w, self.config.read_quorum, set.len(), eligible)
            })
            .collect();
        // Every owner of any set, with the sets it belongs to (bit i: set i).
        let mut owners: Vec<(NodeId, u8)> = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            for id in set {
                match owners.iter_mut().find(|(o, _)| o == id) {
                    Some((_, mask)) => *mask |= 1 << i,
                    None => owners.push((*id, 1 << i)),
                }
            }
        }

        // Sloppy quorums: a stand-in (the next reachable node clockwise past
        // every owner) for each current owner known to be down.
        let stand_ins: Vec<(NodeId, Target)> = if opts.sloppy {
            let down = sets[0]
                .iter()
                .filter(|id| self.target(&p, id).is_none())
                .copied();
            let mut spare = p
                .ring
                .preference_list(hash, p.ring.len())
                .iter()
                .filter(|id| owners.iter().all(|(o, _)| o != *id))
                .filter_map(|id| self.target(&p, id));
            down.filter_map(|owner| spare.next().map(|to| (owner, to)))
                .collect()
        } else {
            Vec::new()
        };

        let mut attempt = 0;
        loop {
            let version = self.replica.hlc.new_version();
            let write = match &data {
                Some((value, expires_at)) => Write::set(version, value, *expires_at),
                None => Write::delete(version),
            };
            // The encoded request is built only when some owner is remote
            // or needs a hint (a one-node cluster needs neither).
            let mut body: Option<Bytes> = None;
            let encoded = |body: &mut Option<Bytes>| {
                body.get_or_insert_with(|| Bytes::from(DataRequest::encode_write(key, &write)))
                    .clone()
            };
            // Requests still running when the caller has its answer (or
            // gives up) finish in the background: every owner gets the write.
            let mut in_flight = InFlight::new(true);
            let mut tally = Tally::new(required.clone());
            tally.mine = Some(version);
            // Owners known down whose write this node now keeps as a hint.
            let mut hinted_here: Vec<NodeId> = Vec::new();
            for (slot, (id, _)) in owners.iter().enumerate() {
                match self.target(&p, id) {
                    Some(Target::Local) => {
                        let response = self.replica.apply(key, write);
                        tally.add(owners[slot].1, Ok(response));
                    }
                    Some(Target::Remote(addr)) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        in_flight.push(self.request(
                            addr,
                            encoded(&mut body),
                            left,
                            slot,
                            Some(*id),
                        ));
                    }
                    None => {
                        if self.hints.keep(*id, encoded(&mut body), &self.counters) {
                            hinted_here.push(*id);
                        }
                        tally.add(owners[slot].1, Err(unreachable()));
                    }
                }
            }
            for (i, (owner, to)) in stand_ins.iter().enumerate() {
                // A stand-in's acknowledgement counts among the current
                // owners only (bit 0).
                match to {
                    // This node already keeps the hint (above): that is
                    // its stand-in's copy.
                    Target::Local => {
                        if hinted_here.contains(owner) {
                            tally.add(1, Ok(DataResponse::Applied { was_live: false }));
                        }
                    }
                    Target::Remote(addr) => {
                        let hinted =
                            Bytes::from(DataRequest::encode_hinted(owner, &encoded(&mut body)));
                        let left = deadline.saturating_duration_since(Instant::now());
                        let slot = owners.len() + i;
                        in_flight.push(self.request(addr.clone(), hinted, left, slot, None));
                    }
                }
            }
            // The sets an answer counts in: an owner's, or (past the owners)
            // a stand-in's.
            let sets_of = |slot: usize| owners.get(slot).map_or(1, |(_, mask)| *mask);
            while !tally.satisfied() && !in_flight.is_empty() {
                match tokio::time::timeout_at(deadline, in_flight.next()).await {
                    Ok(Some((slot, answer))) => tally.add(sets_of(slot), answer),
                    Ok(None) => break,
                    Err(_) => {
                        let (answered, required) = tally.shortfall(w);
                        return Err(Error::Timeout { answered, required });
                    }
                }
            }
            if tally.satisfied() {
                return Ok(tally.was_live);
            }
            match tally.superseded {
                Some(current) if attempt < self.config.max_restamps => {
                    // A replica holds a newer version (clock skew, or a
                    // concurrent write): move our clock past it and
                    // re-stamp, so this write, once acknowledged, is the
                    // newest.
                    let _ = self.replica.hlc.update(current.ts);
                    Counters::add(&self.counters.restamps, 1);
                    attempt += 1;
                }
                _ => return Err(tally.failure(w)),
            }
        }
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
            Ok(Lookup::Evicted { .. }) => Ok(Lookup::Missing),
            Ok(lookup) => Ok(lookup),
            Err(e) => Err(e.into()),
        })
    }

    /// Reads `key`: the highest version among R owners' answers, with
    /// background repair of owners that answered older.
    pub(crate) async fn read(&self, key: &[u8], opts: ReadOptions) -> Result<Lookup, Error> {
        let result = self.read_inner(key, opts).await;
        self.count(&result, &self.counters.reads);
        result
    }

    async fn read_inner(&self, key: &[u8], opts: ReadOptions) -> Result<Lookup, Error> {
        self.check_key(key)?;
        if opts.quorum == Some(0) {
            return Err(Error::InvalidOptions("read quorum must be at least 1"));
        }
        // `ReadOptions::local`'s fast path ran before this, in the node
        // (`GridKv::lookup`): here it is a read with R = 1.
        let hash = key_hash(key);
        let deadline = Instant::now() + opts.timeout.unwrap_or(self.config.timeout);
        let p = self.placement.load_full();
        let n = self.config.replicas.min(p.ring.len());
        let mut r = opts.quorum.unwrap_or(self.config.read_quorum).min(n.max(1));
        // Owners that serve reads, this node first.
        let mut candidates: Vec<NodeId> = p
            .ring
            .preference_list(hash, n)
            .iter()
            .filter(|id| self.serves_reads(&p, id))
            .copied()
            .collect();
        if let Some(i) = candidates.iter().position(|id| *id == self.me) {
            candidates[..=i].rotate_right(1);
        }
        if opts.local {
            r = 1;
        }
        // Built on the first remote request (an answer from the local store
        // alone needs neither).
        let mut body: Option<Bytes> = None;
        // Reads change nothing: one the caller no longer waits for is
        // dropped, not finished.
        let mut in_flight = InFlight::new(false);
        let mut answers: Vec<(NodeId, Lookup)> = Vec::with_capacity(r);
        let mut next = 0;
        // Owners that shed the read (overloaded).
        let mut shed = 0;
        loop {
            // Keep r requests in flight while candidates remain.
            while answers.len() + in_flight.len() < r && next < candidates.len() {
                let id = candidates[next];
                match self.target(&p, &id) {
                    Some(Target::Local) => {
                        if let DataResponse::Value(lookup) = self.replica.read(key, hash) {
                            answers.push((id, lookup));
                        }
                    }
                    Some(Target::Remote(addr)) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let body = body
                            .get_or_insert_with(|| Bytes::from(DataRequest::encode_read(key)))
                            .clone();
                        in_flight.push(self.request(addr, body, left, next, None));
                    }
                    None => {}
                }
                next += 1;
            }
            if answers.len() >= r {
                break;
            }
            if in_flight.is_empty() {
                if shed > 0 && answers.len() + shed >= r {
                    // Overload is why: the owners that shed it would have
                    // made up the quorum.
                    return Err(Error::Backpressure);
                }
                return Err(Error::QuorumNotReached {
                    answered: answers.len(),
                    required: r,
                });
            }
            match tokio::time::timeout_at(deadline, in_flight.next()).await {
                Ok(Some((_, answer))) if is_shed(&answer) => shed += 1,
                Ok(Some((slot, answer))) => {
                    if let Ok(DataResponse::Value(lookup)) = answer {
                        answers.push((candidates[slot], lookup));
                    }
                }
                Ok(None) => unreachable!("a request is in flight"),
                Err(_) => {
                    return Err(Error::Timeout {
                        answered: answers.len(),
                        required: r,
                    })
                }
            }
        }
        let (result, stale) = resolve_evicted(answers);
        if !stale.is_empty() {
            self.repair(key, &result, &p, stale);
        }
        Ok(result)
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
            while let Some(body) = left.next() {
                let sent = self
                    .transport
                    .peer(&addr)
                    .request_with_timeout(Lane::Data, body.clone(), self.config.timeout)
                    .await;
                match sent.map(|frame| DataResponse::decode(&frame)) {
                    // Applied, or superseded by something newer: either
                    // way the owner no longer needs it.
                    Ok(Ok(DataResponse::Applied { .. } | DataResponse::Superseded { .. })) => {
                        delivered += 1;
                    }
                    // Stopping: it comes back (or is replaced); keep the rest.
                    Ok(Ok(DataResponse::Refused {
                        code: RefusalCode::ShuttingDown,
                        ..
                    })) => {
                        let mut rest = vec![body];
                        rest.extend(left);
                        self.hints.requeue(owner, rest);
                        break;
                    }
                    Ok(Ok(DataResponse::Refused { .. })) | Ok(Err(_)) => {
                        Counters::add(&self.counters.hints_dropped, 1);
                    }
                    _ => {
                        let mut rest = vec![body];
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

    /// Sends the winning version to owners that answered with older ones,
    /// in the background.
    fn repair(&self, key: &[u8], winner: &Lookup, p: &Placement, stale: Vec<NodeId>) {
        // The write that makes a replica match the winner; the store's own
        // tombstone rule covers deletes and expiries alike.
        let write = match winner {
            Lookup::Live(item) => Write::set(item.version, &item.value, item.expires_at),
            Lookup::Dead {
                version,
                expired_at,
            } => Write::tombstone(*version, *expired_at),
            Lookup::Missing | Lookup::Evicted { .. } => return,
        };
        let body = Bytes::from(DataRequest::encode_write(key, &write));
        Counters::add(&self.counters.read_repairs, stale.len() as u64);
        for id in stale {
            match self.target(p, &id) {
                Some(Target::Local) => {
                    let _ = self.replica.apply(key, write);
                }
                Some(Target::Remote(addr)) => {
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

/// Whether an answer says the owner (or the connection to it) shed the
/// request because it is overloaded.
fn is_shed(answer: &Result<DataResponse, TransportError>) -> bool {
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
fn unreachable() -> TransportError {
    TransportError::Unreachable {
        peer: String::new(),
        reason: "down".to_owned(),
        retry_in: Duration::ZERO,
    }
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

/// Counts a write's answers against each owner set's quorum. `applied` is
/// the count in the first set (the current owners), the one errors report.
#[derive(Debug, Default)]
struct Tally {
    required: Vec<usize>,
    per_set: Vec<usize>,
    applied: usize,
    was_live: bool,
    superseded: Option<Version>,
    /// Per set, the owners that shed the write (overloaded).
    shed: Vec<usize>,
    /// This attempt's version.
    mine: Option<Version>,
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
    fn failure(&self, w: usize) -> Error {
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
    fn shortfall(&self, w: usize) -> (usize, usize) {
        self.per_set
            .iter()
            .zip(&self.required)
            .find(|(have, need)| have < need)
            .map_or((self.applied, w), |(&have, &need)| (have, need))
    }

    fn satisfied(&self) -> bool {
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

    fn add(&mut self, sets: u8, answer: Result<DataResponse, TransportError>) {
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
            Ok(DataResponse::Refused {
                code: RefusalCode::ClockDrift,
                reason,
            }) => {
                tracing::warn!(%reason, "a replica refused a write: clock drift");
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

/// Picks the newest answer and the owners that need repair. An evicted
/// value is unavailable unless another owner holds it at that version; it
/// then reads as absent (a cache miss) and is not repaired.
fn resolve_evicted(answers: Vec<(NodeId, Lookup)>) -> (Lookup, Vec<NodeId>) {
    let newest = answers.iter().map(|(_, l)| l.version()).max().flatten();
    let Some(newest) = newest else {
        return (Lookup::Missing, Vec::new());
    };
    let winner = answers
        .iter()
        .map(|(_, l)| l)
        .find(|l| l.version() == Some(newest) && !matches!(l, Lookup::Evicted { .. }))
        .cloned();
    let Some(winner) = winner else {
        return (Lookup::Missing, Vec::new());
    };
    let stale = answers
        .iter()
        .filter(|(_, l)| l.version() < Some(newest))
        .map(|(id, _)| *id)
        .collect();
    (winner, stale)
}

#[cfg(test)]
mod tests {
    use super::{transition_quorum, DataResponse, Error, Tally, TransportError};

    fn shed() -> OwnerReply {
        Err(TransportError::Overloaded {
            peer: "b".to_owned(),
        })
    }

    fn applied() -> OwnerReply {
        Ok(DataResponse::Applied { was_live: false })
    }

    /// A tally of `answers` (each with the sets it counts in) against
    /// `required`, and its failure with write quorum `w`.
    fn failure(required: Vec<usize>, w: usize, answers: Vec<(u8, OwnerReply)>) -> Error {
        let mut tally = Tally::new(required);
        for (sets, answer) in answers {
            tally.add(sets, answer);
        }
        assert!(!tally.satisfied());
        tally.failure(w)
    }

    type OwnerReply = Result<DataResponse, TransportError>;

    #[test]
    fn a_shortfall_made_of_shed_requests_is_backpressure() {
        let lost = || Err(super::unreachable());
        let not_reached = |answered, required| Error::QuorumNotReached { answered, required };
        // W = 2 of three current owners: one applied, one shed, one lost.
        assert_eq!(
            failure(vec![2], 2, vec![(1, applied()), (1, shed()), (1, lost())]),
            Error::Backpressure
        );
        // A replica out of room for it refuses as overloaded: shed too.
        let full = Ok(DataResponse::Refused {
            code: super::RefusalCode::Overloaded,
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
}
