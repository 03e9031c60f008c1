//! Rebalancing: a node pulls the ranges it gains when the ring changes
//! (it joins, a member leaves, a down member is removed, or it restarted
//! empty), from the owners that hold them now.
//!
//! - The ranges gained are those this node owns on the *future* ring but did
//!   not hold data for: not an owner on the current placement ring, or not
//!   one on the ring it last filled for (a restart holds slots but no data).
//! - Each gained piece is streamed from `N − W + 1` current owners that serve
//!   reads, so that every acknowledged write (applied by W of the N owners)
//!   is on at least one of them. Batches are bounded (4,096 entries or
//!   1 MiB) and pulled one at a time, paced to at most `fill_rate` bytes
//!   per second ([`super::ReplicationConfig::fill_rate`]).
//! - A second pass compares range digests with the sources and re-streams
//!   any piece that still differs: writes that raced the first pass (from a
//!   coordinator that did not yet know this node was joining) are caught.
//! - A leaving node stays leaving until the digests of what it holds match
//!   on the members that gain its ranges (or a deadline passes).
//!
//! What a node held on a range it lost must never come back when it
//! regains the range (a joiner that took it over is removed or leaves): a
//! key deleted meanwhile, whose tombstone was collected, would be
//! resurrected by the merge. Two rules keep it out:
//!
//! - **Dropped once the new owners hold it.** After each complete fill
//!   pass and each anti-entropy round ([`Rebalancer::drop_unowned`]), a
//!   node drops what it holds on ranges it owns on neither the placement
//!   nor the future ring, piece by piece, once every current owner of the
//!   piece answers that it holds it in full. From its last complete fill
//!   on, the node neither serves nor streams those ranges (see
//!   [`super::Holdings`]), so nothing it drops is needed for an
//!   acknowledged write; this also returns their memory. Entries written
//!   within [`DROP_MARGIN`] stay for a later sweep: a coordinator that
//!   already knows this node regains the range (its new owner left) may
//!   send it writes as a future owner before this node has heard of it,
//!   and those must be there when it refills.
//! - **Cleared before a refill.** What could not be dropped (an owner was
//!   down, or writes reached this node as a previous owner after the drop)
//!   is cleared by the fill pass that regains the piece, before streaming
//!   it: every entry written more than half the tombstone grace ago. Writes
//!   sent to this node as a new owner meanwhile are recent and stay; an
//!   old entry that is an acknowledged write comes back from the sources;
//!   and a kept entry is too recent for a newer version of its key to have
//!   been collected before the stream brings it, as long as the piece is
//!   streamed within half the grace of the clear (a slower pass counts as
//!   incomplete, and the next clears again).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;

use super::placement::Placement;
use super::replica::Replica;
use super::stats::Counters;
use super::wire::{DataRequest, DataResponse, RefusalCode};
use crate::id::NodeId;
use crate::keyspace::RingRange;
use crate::net::{Lane, Transport};
use crate::ring::{cut, split, subdivide, Ring};
use crate::store::{ScanCursor, Watermark};

/// What one fill pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FillReport {
    /// Pieces of ranges this node gained.
    pub pieces: usize,
    /// Entries received and applied (including ones already held).
    pub entries: u64,
    /// Bytes of keys and values received.
    pub bytes: u64,
    /// Whether every gained piece was streamed from enough sources.
    pub complete: bool,
    /// Entries held from before on gained pieces, cleared before the
    /// refill (see the module docs).
    pub cleared: u64,
}

/// How recent an entry on a range this node no longer owns may be and still
/// be kept by a sweep (dropped by a later one): a coordinator that already
/// knows this node regains the range may send it a write as a new owner
/// before this node has heard of the change (see the module docs).
pub(crate) const DROP_MARGIN: Duration = Duration::from_secs(10);

/// What one [`Rebalancer::drop_unowned`] sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DropReport {
    /// Pieces dropped.
    pub(crate) pieces: usize,
    /// Pieces holding entries that were kept: an owner could not be shown
    /// to hold them (down, unreachable, or still filling).
    pub(crate) kept: usize,
    /// Pieces dropped but for entries written within [`DROP_MARGIN`],
    /// left to a later sweep.
    pub(crate) recent: usize,
    /// Entries dropped.
    pub(crate) entries: u64,
    /// Bytes returned to the budget.
    pub(crate) bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Rebalancer {
    pub(crate) me: NodeId,
    pub(crate) replicas: usize,
    /// `N − W + 1`: sources per piece.
    pub(crate) sources: usize,
    pub(crate) transport: Transport,
    pub(crate) replica: Arc<Replica>,
    pub(crate) placement: Arc<ArcSwap<Placement>>,
    pub(crate) timeout: Duration,
    pub(crate) counters: Arc<Counters>,
    /// Paces what fills and anti-entropy pull (`fill_rate`).
    pub(crate) pace: Pace,
}

/// Paces a stream to at most `rate` bytes per second: after each batch the
/// stream waits until the bytes received so far are within the rate. Idle
/// time does not bank a burst larger than one second's worth.
#[derive(Debug)]
pub(crate) struct Pace {
    rate: Option<u64>,
    /// When the bytes received so far are "paid for".
    next: parking_lot::Mutex<Option<tokio::time::Instant>>,
}

impl Pace {
    pub(crate) fn new(rate: Option<u64>) -> Self {
        Self {
            rate,
            next: parking_lot::Mutex::new(None),
        }
    }

    /// Accounts `bytes` just received; waits if over the rate.
    async fn take(&self, bytes: u64) {
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let now = tokio::time::Instant::now();
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let until = {
            let mut next = self.next.lock();
            let start = next
                .unwrap_or(now)
                .max(now.checked_sub(Duration::from_secs(1)).unwrap_or(now));
            let until = start + cost;
            *next = Some(until);
            until
        };
        if until > now {
            tokio::time::sleep_until(until).await;
        }
    }
}

/// Ranges holding at most this many entries are pulled whole by
/// anti-entropy; larger differing ranges are split and compared again.
/// Pieces a fill streams at once. Each is a few round trips to its
/// sources, so this bounds a fill's time across a WAN (hundreds of pieces
/// at 100 ms each, one at a time, would take minutes) while the fill rate
/// limit still bounds its bytes.
pub(crate) const FILL_CONCURRENCY: usize = 64;

const AE_LEAF_ENTRIES: u64 = 4;
/// Sub-ranges per split.
const AE_FANOUT: u64 = 8;
/// Deepest split (8^12 sub-ranges of one arc is far below one key each).
const AE_MAX_DEPTH: u32 = 12;
/// Bytes a digest request and answer cost on the wire, roughly.
const DIGEST_BYTES: u64 = 48;

/// A member a piece is pulled from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    id: NodeId,
    addr: String,
    /// A restart still refilling (see [`Member::refilling_restart`]),
    /// asked for what it holds: only by a node that is itself fresh, and
    /// only where too few members that serve reads own the piece.
    ///
    /// [`Member::refilling_restart`]: crate::membership::Member::refilling_restart
    refilling: bool,
}

/// A piece to pull and where from.
#[derive(Debug)]
struct Piece {
    range: RingRange,
    sources: Vec<Source>,
    /// Whether it has as many sources as it can have (`N − W + 1`, or
    /// every other current owner if fewer): what this node held there
    /// before may be cleared only then (see the module docs).
    full: bool,
}

/// The pieces `me` gains on placement `p`, with up to `sources` sources
/// each, and whether every piece has as many sources that serve reads as
/// it can have.
///
/// A piece is gained if `me` owns it (of `n` replicas) on the future ring,
/// or on the placement ring (a range a joiner is taking over is still read
/// here until the joiner is normal), and did not hold it: it was not a
/// current owner, or it owned it on neither ring of its last complete fill
/// (`filled`: the future and placement rings of that fill, see
/// [`super::Holdings`]). Sources are the other current owners
/// that serve reads; a piece with none is left out.
///
/// A `fresh` node (everything it holds was written since it started, see
/// [`super::Holdings::fresh`]) also takes, where too few owners serve
/// reads but at least one does, current owners that are restarts still
/// refilling: what they hold is all that is left of what they held (the
/// rest was lost with their process), so pulling it completes the piece.
/// Without them, two restarts that are each other's sources would each
/// wait for the other to be filled first, for ever. Where no owner serves
/// reads (every copy was lost), the piece still waits.
fn gained(
    me: &NodeId,
    n: usize,
    sources: usize,
    fresh: bool,
    filled: &(Arc<Ring>, Arc<Ring>),
    p: &Placement,
) -> (Vec<Piece>, bool) {
    let (filled_future, filled_placement) = filled;
    // What this node owns on the future ring, then what it owns on the
    // placement ring besides (a ring identical to the future one adds
    // nothing), each piece with its current owners.
    let arcs_of = |ring: &Ring| -> Vec<(RingRange, ())> {
        ring.ranges_of(me, n.min(ring.len().max(1)))
            .map(|(arc, _)| (arc, ()))
            .collect()
    };
    let mut owned = cut(arcs_of(&p.future), &p.ring, n, |(), current| current);
    if p.ring.nodes() != p.future.nodes() {
        let only_current = cut(arcs_of(&p.ring), &p.ring, n, |(), current| current);
        owned.extend(
            cut(only_current, &p.future, n, |current, future| {
                (!future.contains(me)).then_some(current)
            })
            .into_iter()
            .filter_map(|(piece, current)| current.map(|c| (piece, c))),
        );
    }
    // Held: owned on either ring of the last complete fill (cut at the
    // second only when it differs from the first).
    let mut held = cut(owned, filled_future, n, |current, before| {
        (current, before.contains(me))
    });
    if filled_placement.nodes() != filled_future.nodes() {
        held = cut(held, filled_placement, n, |(current, was), before| {
            (current, was || before.contains(me))
        });
    }
    let mut pieces = Vec::new();
    let mut complete = true;
    for (range, (current, was_held)) in held {
        if current.contains(me) && was_held {
            continue;
        }
        let others = || current.iter().filter(|id| *id != me).filter_map(|id| p.members.get(id));
        let source = |m: &crate::membership::Member, refilling| Source {
            id: m.id(),
            addr: m.identity.addr.clone(),
            refilling,
        };
        let mut from: Vec<Source> = others()
            .filter(|m| m.serves_reads())
            .map(|m| source(m, false))
            .take(sources)
            .collect();
        // Only beside an owner that kept its data: with every source a
        // restart, each acknowledged write of the piece may have been lost
        // (a read would miss it), so the piece waits for an owner that
        // serves reads (see the module docs).
        if fresh && !from.is_empty() && from.len() < sources {
            let more = sources - from.len();
            from.extend(
                others()
                    .filter(|m| m.refilling_restart())
                    .map(|m| source(m, true))
                    .take(more),
            );
        }
        let others = current.iter().filter(|id| *id != me).count();
        let full = from.len() >= sources.min(others);
        complete &= full;
        if !from.is_empty() {
            pieces.push(Piece {
                range,
                sources: from,
                full,
            });
        }
    }
    (pieces, complete)
}

/// The pieces of the ring `me` owns (of `n` replicas) on neither the
/// placement ring nor the future ring of `p`, each with its current owners
/// (none of them `me`). Empty while `me` is on neither ring: a node taken
/// off the ring empties its store as a whole.
fn unowned(me: &NodeId, n: usize, p: &Placement) -> Vec<(RingRange, Vec<NodeId>)> {
    if p.ring.is_empty() || !(p.ring.contains(me) || p.future.contains(me)) {
        return Vec::new();
    }
    let current = split(RingRange::FULL, &p.ring, n);
    cut(current, &p.future, n, |current, future| {
        (current, future.contains(me))
    })
    .into_iter()
    .filter(|(_, (current, future))| !future && !current.contains(me))
    .map(|(piece, (current, _))| (piece, current))
    .collect()
}

impl Rebalancer {
    /// The pieces this node gains, with their sources, and whether every
    /// piece has enough sources that serve reads now (see [`gained`]).
    fn gained(&self, p: &Placement) -> (Vec<Piece>, bool) {
        let filled = self.replica.holdings.filled();
        let fresh = self.replica.holdings.fresh();
        gained(&self.me, self.replicas, self.sources, fresh, &filled, p)
    }

    /// Whether `id` may still be pulled from, by the placement in force
    /// now (not the one a long round started with): it is in the ring and
    /// serves reads. A round that outlives a change (requests to a
    /// partitioned peer time out one by one) must not pull from a member
    /// removed meanwhile: its data may hold keys whose tombstones were
    /// collected while it was away.
    /// A source asked as a refilling restart may still be one.
    fn still_source(&self, id: &NodeId, refilling: bool) -> bool {
        let now = self.placement.load();
        now.ring.contains(id)
            && now
                .members
                .get(id)
                .is_some_and(|m| m.serves_reads() || (refilling && m.refilling_restart()))
    }

    /// Sends a scan or digest request to `addr`. A source whose queue of
    /// them is full (`Overloaded`) is asked again a few times, 50 ms apart
    /// and doubling, before the request counts as failed: a failed scan
    /// makes the whole fill pass incomplete, and it is then run again. A
    /// request left unanswered (a frame lost on the way, as on a lossy WAN
    /// link) is sent again, twice at most: scans and digests change
    /// nothing, so asking twice is harmless.
    async fn ask(&self, addr: &str, body: Vec<u8>) -> Option<DataResponse> {
        let body = Bytes::from(body);
        let mut pause = Duration::from_millis(50);
        let mut retries = 4;
        let mut resends = 2;
        loop {
            let sent = self
                .transport
                .peer(addr)
                .request_with_timeout(Lane::Data, body.clone(), self.timeout)
                .await;
            let frame = match sent {
                Ok(frame) => frame,
                Err(crate::net::TransportError::Timeout { .. }) if resends > 0 => {
                    resends -= 1;
                    continue;
                }
                Err(_) => return None,
            };
            match DataResponse::decode(&frame).ok()? {
                DataResponse::Refused {
                    code: RefusalCode::Overloaded,
                    ..
                } if retries > 0 => {
                    retries -= 1;
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                answer => return Some(answer),
            }
        }
    }

    /// Streams `range` from `addr` into the local store (only tombstones
    /// if `tombstones_only`). Counts entries that changed the store.
    async fn stream(
        &self,
        addr: &str,
        range: RingRange,
        tombstones_only: bool,
        report: &mut FillReport,
    ) -> bool {
        self.stream_from(addr, false, range, tombstones_only, report)
            .await
    }

    /// [`Rebalancer::stream`], from a restart still refilling if
    /// `refilling` (asked for what it holds, see [`Source::refilling`]).
    async fn stream_from(
        &self,
        addr: &str,
        refilling: bool,
        range: RingRange,
        tombstones_only: bool,
        report: &mut FillReport,
    ) -> bool {
        let mut after: Option<ScanCursor> = None;
        // What the source forgot of the range: adopted once the stream is
        // done (its own entries, held there, are applied whatever it
        // forgot), so this store refuses what the source would.
        let mut forgot: Option<Watermark> = None;
        loop {
            let answer = self
                .ask(
                    addr,
                    if refilling {
                        DataRequest::encode_scan_of_refilling(range, after.as_ref())
                    } else {
                        DataRequest::encode_scan(range, after.as_ref(), tombstones_only)
                    },
                )
                .await;
            let Some(DataResponse::Batch {
                entries,
                next,
                watermark,
                floor,
            }) = answer
            else {
                tracing::debug!(node = %self.me, %addr, ?answer, "fill: the source did not stream the range");
                return false;
            };
            // The source was flushed: so is this node, before it takes
            // what the source holds (nothing older comes back).
            if let Some(floor) = floor {
                let _ = self.replica.hlc.update(floor.ts);
                self.replica.store.flush(floor);
            }
            let mut batch_bytes = 0;
            for entry in &entries {
                batch_bytes += entry.key.len() as u64;
                if let crate::store::EntryData::Value { value, .. } = &entry.data {
                    batch_bytes += value.len() as u64;
                }
                if let Some(write) = entry.write() {
                    // A version from a clock far ahead is skipped (and
                    // counted), as a replica refuses such a write.
                    if super::pulled::admit(&self.replica.hlc, &self.counters, &write).is_err() {
                        continue;
                    }
                    let outcome = self.replica.store.apply(&entry.key, write);
                    tracing::trace!(
                        target: "gridkv::keys",
                        key = %String::from_utf8_lossy(&entry.key),
                        version = %write.version,
                        op = super::replica::op_name(&write.op),
                        outcome = ?outcome,
                        "fill apply"
                    );
                    match outcome {
                        Ok(crate::store::ApplyOutcome::Applied { .. }) => report.entries += 1,
                        // A value this node's watermark refuses: perhaps
                        // one superseded by a delete or overwrite that no
                        // owner holds any more (see `vouch`).
                        Ok(crate::store::ApplyOutcome::Forgotten { .. })
                            if matches!(write.op, crate::store::WriteOp::Set { .. }) =>
                        {
                            self.replica.suspects.note(&entry.key);
                        }
                        _ => {}
                    }
                }
            }
            report.bytes += batch_bytes;
            self.pace.take(batch_bytes).await;
            forgot = match (forgot, watermark) {
                (Some(a), Some(b)) => Some(a.merge(b)),
                (a, b) => a.or(b),
            };
            match next {
                Some(cursor) => after = Some(cursor),
                None => {
                    if let Some(w) = forgot {
                        self.replica.store.absorb_watermark(range, w);
                    }
                    return true;
                }
            }
        }
    }

    /// Whether the local store is near its memory budget: values pulled in
    /// would only be evicted again, so anti-entropy pulls tombstones only
    /// (a value missing here is a cache miss that quorum reads cover; a
    /// missing tombstone could resurrect a key).
    fn under_memory_pressure(&self) -> bool {
        let stats = self.replica.store.stats();
        stats.bytes.saturating_mul(10) >= stats.budget.saturating_mul(9)
    }

    /// One fill pass: stream every gained piece, then re-stream the pieces
    /// whose digests still differ from a source's. Up to
    /// [`FILL_CONCURRENCY`] pieces at a time: each piece's streams are a
    /// few round trips, so across a WAN a fill of hundreds of pieces one
    /// after another would take minutes.
    pub(crate) async fn fill(&self) -> FillReport {
        use futures_util::stream::{self, StreamExt};
        // The epoch first: the placement loaded after it is at least as new.
        let epoch = self.replica.holdings.epoch();
        let p = self.placement.load_full();
        let (pieces, complete) = self.gained(&p);
        let mut report = FillReport {
            pieces: pieces.len(),
            complete,
            ..FillReport::default()
        };
        let pieces = &pieces;
        let firsts: Vec<FillReport> = stream::iter(0..pieces.len())
            .map(|i| self.fill_piece(&pieces[i], epoch))
            .buffer_unordered(FILL_CONCURRENCY)
            .collect()
            .await;
        // Catch-up: writes that raced the first pass.
        let catch_ups: Vec<FillReport> = stream::iter(0..pieces.len())
            .map(|i| self.catch_up_piece(&pieces[i]))
            .buffer_unordered(FILL_CONCURRENCY)
            .collect()
            .await;
        for part in firsts.iter().chain(&catch_ups) {
            report.entries += part.entries;
            report.bytes += part.bytes;
            report.cleared += part.cleared;
            report.complete &= part.complete;
        }
        if report.complete {
            self.replica
                .holdings
                .mark_filled(p.future.clone(), p.ring.clone(), epoch);
        }
        Counters::add(&self.counters.fill_entries, report.entries);
        Counters::add(&self.counters.fill_bytes, report.bytes);
        report
    }

    /// The first pass over one piece: clear what this node held there
    /// (once per fill), then stream it from each source not streamed yet
    /// for `epoch`.
    async fn fill_piece(&self, piece: &Piece, epoch: u64) -> FillReport {
        let mut report = FillReport {
            complete: true,
            ..FillReport::default()
        };
        let half_grace = self.replica.store.config().tombstone_grace.as_millis() as u64 / 2;
        let now_ms = || self.replica.store.clock().now_ms();
        // What this node held here before, unless too few sources can
        // bring back the acknowledged writes among it. (Once per fill:
        // not again over what an earlier pass for this epoch streamed in.)
        let holdings = &self.replica.holdings;
        let cleared_at = (piece.full
            && !holdings.any_streamed(epoch, piece.range)
            && piece.sources.iter().all(|s| self.still_source(&s.id, s.refilling)))
            .then(|| {
                let at = now_ms();
                let cleared = self
                    .replica
                    .store
                    .remove_range(piece.range, at.saturating_sub(half_grace));
                report.cleared += cleared.entries;
                at
            });
        // Entries kept (recent) must meet any newer version of their
        // key before it can have been collected.
        let kept = cleared_at.is_some() && self.replica.store.digest(piece.range).count > 0;
        for source in &piece.sources {
            if !self.still_source(&source.id, source.refilling) {
                report.complete = false;
                continue;
            }
            // Streamed in an earlier pass for this epoch: the catch-up
            // compares its digest again.
            if holdings.streamed(epoch, piece.range, &source.id) {
                continue;
            }
            let done = self
                .stream_from(&source.addr, source.refilling, piece.range, false, &mut report)
                .await;
            if done {
                holdings.note_streamed(epoch, piece.range, source.id);
            }
            report.complete &= done;
        }
        if let Some(at) = cleared_at.filter(|_| kept) {
            report.complete &= now_ms().saturating_sub(at) <= half_grace;
        }
        report
    }

    /// The catch-up over one piece: re-stream it from each source whose
    /// digest differs from this node's.
    async fn catch_up_piece(&self, piece: &Piece) -> FillReport {
        let mut report = FillReport {
            complete: true,
            ..FillReport::default()
        };
        for source in &piece.sources {
            if !self.still_source(&source.id, source.refilling) {
                report.complete = false;
                continue;
            }
            let ask = if source.refilling {
                DataRequest::encode_digest_of_refilling(piece.range)
            } else {
                DataRequest::encode_digest(piece.range)
            };
            let Some(DataResponse::Digest(theirs)) = self.ask(&source.addr, ask).await else {
                report.complete = false;
                continue;
            };
            if theirs != self.replica.store.digest(piece.range) {
                report.complete &= self
                    .stream_from(&source.addr, source.refilling, piece.range, false, &mut report)
                    .await;
            }
        }
        report
    }

    /// One anti-entropy round: for each range this node owns, compare
    /// digests with each other owner that serves reads, descend into the
    /// sub-ranges that differ, and pull the small ones that still differ.
    /// Only pulls: the other owners pull from this one in their rounds.
    /// Returns the bytes exchanged.
    pub(crate) async fn anti_entropy(&self) -> u64 {
        let p = self.placement.load_full();
        let n = self.replicas.min(p.ring.len());
        let mut bytes = 0;
        let mut entries = 0;
        let arcs: Vec<(RingRange, Vec<NodeId>)> = p
            .ring
            .ranges_of(&self.me, n)
            .map(|(range, owners)| (range, owners.iter().copied().collect()))
            .collect();
        for (range, owners) in arcs {
            for id in owners.iter().filter(|id| **id != self.me) {
                let Some(m) = p.members.get(id).filter(|m| m.serves_reads()) else {
                    continue;
                };
                let addr = m.identity.addr.clone();
                let mut pending = vec![(range, 0u32)];
                while let Some((range, depth)) = pending.pop() {
                    if !self.still_source(id, false) {
                        break;
                    }
                    bytes += DIGEST_BYTES;
                    let Some(DataResponse::Digest(theirs)) =
                        self.ask(&addr, DataRequest::encode_digest(range)).await
                    else {
                        break;
                    };
                    if theirs == self.replica.store.digest(range) {
                        continue;
                    }
                    if theirs.count <= AE_LEAF_ENTRIES || depth >= AE_MAX_DEPTH {
                        let mut report = FillReport::default();
                        let tombstones_only = self.under_memory_pressure();
                        self.stream(&addr, range, tombstones_only, &mut report)
                            .await;
                        bytes += report.bytes;
                        entries += report.entries;
                    } else {
                        pending.extend(
                            subdivide(range, AE_FANOUT)
                                .into_iter()
                                .map(|r| (r, depth + 1)),
                        );
                    }
                }
            }
        }
        Counters::add(&self.counters.anti_entropy_rounds, 1);
        Counters::add(&self.counters.anti_entropy_bytes, bytes);
        Counters::add(&self.counters.anti_entropy_entries, entries);
        bytes
    }

    /// Whether the replica at `addr` holds all of `range` in full: it
    /// answers a scan of the range only then (otherwise `NotReady`). The
    /// scan starts past the range's end, so the answer carries no entries.
    /// `None` if it did not answer.
    async fn holds_there(&self, addr: &str, range: RingRange) -> Option<bool> {
        let past_end = ScanCursor::from_parts(u64::MAX, Bytes::new());
        let answer = self
            .ask(addr, DataRequest::encode_scan(range, Some(&past_end), true))
            .await?;
        Some(matches!(answer, DataResponse::Batch { .. }))
    }

    /// Drops what this node holds on ranges it owns on neither the
    /// placement ring nor the future ring, piece by piece, once every
    /// current owner of the piece holds it in full (see the module docs).
    /// Runs only while the last complete fill is for the placement in
    /// force, and stops at a ring change: until this node has filled for
    /// the placement, it may still serve or stream what it held.
    pub(crate) async fn drop_unowned(&self) -> DropReport {
        let holdings = &self.replica.holdings;
        let epoch = holdings.epoch();
        let p = self.placement.load_full();
        let mut report = DropReport::default();
        if !holdings.filled_for(epoch) {
            return report;
        }
        let before = self
            .replica
            .store
            .clock()
            .now_ms()
            .saturating_sub(DROP_MARGIN.as_millis() as u64);
        // Owners that did not answer: not asked again in this sweep, so an
        // unreachable one costs one timeout, not one per piece.
        let mut silent: Vec<NodeId> = Vec::new();
        for (piece, owners) in unowned(&self.me, self.replicas, &p) {
            if self.replica.store.digest(piece).count == 0 {
                continue;
            }
            let mut held = !owners.is_empty();
            for id in &owners {
                let member = p
                    .members
                    .get(id)
                    .filter(|m| m.serves_reads() && !silent.contains(id));
                let Some(m) = member else {
                    held = false;
                    break;
                };
                match self.holds_there(&m.identity.addr, piece).await {
                    Some(true) => {}
                    Some(false) => {
                        held = false;
                        break;
                    }
                    None => {
                        silent.push(*id);
                        held = false;
                        break;
                    }
                }
            }
            // The placement may have changed while the owners answered.
            if !holdings.filled_for(epoch) {
                break;
            }
            if !held {
                report.kept += 1;
                continue;
            }
            let removed = self.replica.store.remove_range(piece, before);
            report.pieces += 1;
            report.entries += removed.entries;
            report.bytes += removed.bytes;
            if self.replica.store.digest(piece).count > 0 {
                report.recent += 1;
            }
        }
        report
    }

    /// For a leaving node: whether every member that gains one of this
    /// node's ranges holds (by digest) at least what this node holds there.
    pub(crate) async fn handed_off(&self) -> bool {
        let p = self.placement.load_full();
        let n = self.replicas.min(p.ring.len().max(1));
        for (arc, _) in p.ring.ranges_of(&self.me, n) {
            for (piece, future) in split(arc, &p.future, self.replicas) {
                for (piece, current) in split(piece, &p.ring, self.replicas) {
                    for id in future.iter().filter(|id| !current.contains(id)) {
                        let Some(m) = p.members.get(id) else { continue };
                        if !m.liveness.is_reachable() {
                            continue;
                        }
                        let ours = self.replica.store.digest(piece);
                        let addr = m.identity.addr.clone();
                        match self.ask(&addr, DataRequest::encode_digest(piece)).await {
                            Some(DataResponse::Digest(d)) if d == ours || ours.count == 0 => {}
                            _ => return false,
                        }
                    }
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{Identity, Liveness, Member, RingState};
    use crate::Generation;

    fn ring_of(members: &[NodeId]) -> Arc<Ring> {
        Arc::new(Ring::with_vnodes(1, members.iter().copied(), 16).unwrap())
    }

    /// Whether `me` is one of the `n` owners of `h` on `ring`.
    fn owns(ring: &Ring, me: &NodeId, h: u64, n: usize) -> bool {
        ring.preference_list(h, n.min(ring.len())).contains(me)
    }

    proptest::proptest! {
        /// `gained`, which works on ranges, against its definition point by
        /// point: for hashes at every piece edge and at random, `h` is in a
        /// piece exactly when `me` owns it on the future or the placement
        /// ring, and either is not a current owner or owned it on neither
        /// filled ring, and some other current owner can be pulled from;
        /// every source is such an owner.
        #[test]
        fn gained_pieces_match_their_definition(
            placement in proptest::collection::btree_set(0usize..7, 1..6),
            future in proptest::collection::btree_set(0usize..7, 1..6),
            filled_future in proptest::collection::btree_set(0usize..7, 0..6),
            filled_placement in proptest::collection::btree_set(0usize..7, 0..6),
            down in 0usize..7,
            probes in proptest::collection::vec(proptest::num::u64::ANY, 64),
        ) {
            let ids: Vec<NodeId> = (0..7).map(|i| NodeId::new(&format!("n{i}")).unwrap()).collect();
            let pick = |set: &std::collections::BTreeSet<usize>| -> Vec<NodeId> {
                set.iter().map(|&i| ids[i]).collect()
            };
            let me = ids[0];
            let (n, sources) = (3, 2);
            let mut members = std::collections::BTreeMap::new();
            for (i, id) in ids.iter().enumerate() {
                let mut m = Member::new(Identity::new(*id, Generation::new(1), format!("h{i}:1")));
                m.ring = RingState::Normal;
                // One member (perhaps) cannot be pulled from.
                if i == down {
                    m.liveness = Liveness::Down;
                }
                members.insert(*id, m);
            }
            let p = Placement {
                ring: ring_of(&pick(&placement)),
                future: ring_of(&pick(&future)),
                members,
                local_serves_reads: true,
                previous: None,
                datacenter: String::new(),
            };
            let filled = (ring_of(&pick(&filled_future)), ring_of(&pick(&filled_placement)));
            let (pieces, complete) = gained(&me, n, sources, false, &filled, &p);
            let readable = |id: &NodeId| p.members[id].serves_reads();
            let mut all_sources_enough = true;
            let mut check = |h: u64| {
                let current = p.ring.preference_list(h, n.min(p.ring.len()));
                let held = owns(&p.ring, &me, h, n)
                    && (owns(&filled.0, &me, h, n) || owns(&filled.1, &me, h, n));
                let wanted = (owns(&p.future, &me, h, n) || owns(&p.ring, &me, h, n)) && !held;
                let pullable: Vec<NodeId> = current
                    .iter()
                    .filter(|id| **id != me && readable(id))
                    .copied()
                    .collect();
                let others = current.iter().filter(|id| **id != me).count();
                if wanted && pullable.len() < sources.min(others) {
                    all_sources_enough = false;
                }
                let found: Vec<&Piece> = pieces.iter().filter(|piece| piece.range.contains(h)).collect();
                proptest::prop_assert!(found.len() <= 1, "pieces overlap at {h}");
                proptest::prop_assert_eq!(
                    !found.is_empty(),
                    wanted && !pullable.is_empty(),
                    "at {}: wanted {}, pullable {:?}", h, wanted, pullable
                );
                if let Some(piece) = found.first() {
                    let expected: Vec<NodeId> = pullable.iter().take(sources).copied().collect();
                    let got: Vec<NodeId> = piece.sources.iter().map(|s| s.id).collect();
                    proptest::prop_assert_eq!(got, expected);
                }
                Ok(())
            };
            // Every piece's edges, and both sides of every token of the
            // four rings: where the answer may change.
            let mut edges: Vec<u64> = pieces
                .iter()
                .flat_map(|piece| [piece.range.end, piece.range.start.wrapping_add(1)])
                .collect();
            for ring in [&p.ring, &p.future, &filled.0, &filled.1] {
                edges.extend(ring.tokens().flat_map(|(t, _)| [t, t.wrapping_add(1)]));
            }
            for h in edges.into_iter().chain(probes) {
                check(h)?;
            }
            // The token edges checked above meet every stretch between
            // tokens, so the fill is complete exactly when no wanted point
            // lacked sources.
            proptest::prop_assert_eq!(complete, all_sources_enough);
        }
    }

    proptest::proptest! {
        /// `unowned`, which works on ranges, against its definition point
        /// by point: `h` is in a piece exactly when `me` is on the placement
        /// or the future ring and owns `h` on neither, pieces never
        /// overlap, and each carries the owners of `h` on the placement
        /// ring.
        #[test]
        fn unowned_pieces_match_their_definition(
            placement in proptest::collection::btree_set(0usize..7, 0..6),
            future in proptest::collection::btree_set(0usize..7, 1..6),
            probes in proptest::collection::vec(proptest::num::u64::ANY, 64),
        ) {
            let ids: Vec<NodeId> = (0..7).map(|i| NodeId::new(&format!("n{i}")).unwrap()).collect();
            let pick = |set: &std::collections::BTreeSet<usize>| -> Vec<NodeId> {
                set.iter().map(|&i| ids[i]).collect()
            };
            let (me, n) = (ids[0], 3);
            let ring = if placement.is_empty() {
                Arc::new(Ring::empty())
            } else {
                ring_of(&pick(&placement))
            };
            let p = Placement {
                ring,
                future: ring_of(&pick(&future)),
                members: std::collections::BTreeMap::new(),
                local_serves_reads: true,
                previous: None,
                datacenter: String::new(),
            };
            let pieces = unowned(&me, n, &p);
            let on_a_ring = p.ring.contains(&me) || p.future.contains(&me);
            let mut edges: Vec<u64> = pieces
                .iter()
                .flat_map(|(piece, _)| [piece.end, piece.start.wrapping_add(1)])
                .collect();
            for ring in [&p.ring, &p.future] {
                edges.extend(ring.tokens().flat_map(|(t, _)| [t, t.wrapping_add(1)]));
            }
            for h in edges.into_iter().chain(probes) {
                let wanted = on_a_ring
                    && !p.ring.is_empty()
                    && !owns(&p.ring, &me, h, n)
                    && !owns(&p.future, &me, h, n);
                let found: Vec<_> = pieces.iter().filter(|(piece, _)| piece.contains(h)).collect();
                proptest::prop_assert!(found.len() <= 1, "pieces overlap at {h}");
                proptest::prop_assert_eq!(!found.is_empty(), wanted, "at {}", h);
                if let Some((_, owners)) = found.first() {
                    let expected: Vec<NodeId> =
                        p.ring.preference_list(h, n.min(p.ring.len())).iter().copied().collect();
                    proptest::prop_assert_eq!(owners, &expected);
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pace_holds_streams_to_the_rate() {
        // 1 MiB/s: ten 256 KiB batches take 2.5 s.
        let pace = Pace::new(Some(1 << 20));
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            pace.take(256 << 10).await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(2500) && took < Duration::from_millis(2600),
            "{took:?}"
        );
        // After a pause, up to a second's worth goes without waiting, and
        // no more.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let start = tokio::time::Instant::now();
        pace.take(512 << 10).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        pace.take(1 << 20).await;
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_millis(510),
            "{took:?}"
        );
        // No limit: no wait.
        let free = Pace::new(None);
        let start = tokio::time::Instant::now();
        free.take(1 << 30).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
