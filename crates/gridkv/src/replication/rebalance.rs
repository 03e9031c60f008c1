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
//!   1 MiB) and pulled one at a time, which throttles the stream.
//! - A second pass compares range digests with the sources and re-streams
//!   any piece that still differs: writes that raced the first pass (from a
//!   coordinator that did not yet know this node was joining) are caught.
//! - A leaving node stays leaving until the digests of what it holds match
//!   on the members that gain its ranges (or a deadline passes).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;

use super::coordinator::Placement;
use super::replica::Replica;
use super::wire::{DataRequest, DataResponse};
use crate::id::NodeId;
use crate::keyspace::RingRange;
use crate::net::{Lane, Transport};
use crate::ring::Ring;
use crate::store::ScanCursor;

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
    /// The ring this node's data reflects (empty until the first fill).
    pub(crate) filled: Arc<Ring>,
    pub(crate) timeout: Duration,
}

/// `arc` cut at `ring`'s tokens, each piece with its owners on `ring` (one
/// piece with no owners if the ring is empty).
fn split(arc: RingRange, ring: &Ring, n: usize) -> Vec<(RingRange, Vec<NodeId>)> {
    if ring.is_empty() {
        return vec![(arc, Vec::new())];
    }
    let mut out = Vec::new();
    for (range, owners) in ring.ranges(n.min(ring.len())) {
        for (alo, ahi) in arc.intervals() {
            for (blo, bhi) in range.intervals() {
                let (lo, hi) = (alo.max(blo), ahi.min(bhi));
                if lo <= hi {
                    out.push((
                        RingRange::new(lo.wrapping_sub(1), hi),
                        owners.iter().copied().collect(),
                    ));
                }
            }
        }
    }
    out
}

/// A piece to pull and where from.
#[derive(Debug)]
struct Piece {
    range: RingRange,
    sources: Vec<(NodeId, String)>,
}

impl Rebalancer {
    /// The pieces this node gains, with their sources; `None` if some piece
    /// has owners other than this node but none of them serves reads now.
    fn gained(&self, p: &Placement) -> (Vec<Piece>, bool) {
        let target = &p.future;
        let n = self.replicas.min(target.len().max(1));
        let mut pieces = Vec::new();
        let mut complete = true;
        for (arc, _) in target.ranges_of(&self.me, n) {
            for (piece, current) in split(arc, &p.ring, self.replicas) {
                for (piece, previous) in split(piece, &self.filled, self.replicas) {
                    if current.contains(&self.me) && previous.contains(&self.me) {
                        continue;
                    }
                    let sources: Vec<(NodeId, String)> = current
                        .iter()
                        .filter(|id| **id != self.me)
                        .filter_map(|id| p.members.get(id))
                        .filter(|m| m.serves_reads())
                        .map(|m| (m.id(), m.identity.addr.clone()))
                        .take(self.sources)
                        .collect();
                    let others = current.iter().filter(|id| **id != self.me).count();
                    if sources.len() < self.sources.min(others) {
                        complete = false;
                    }
                    if !sources.is_empty() {
                        pieces.push(Piece {
                            range: piece,
                            sources,
                        });
                    }
                }
            }
        }
        (pieces, complete)
    }

    async fn ask(&self, addr: &str, body: Vec<u8>) -> Option<DataResponse> {
        let frame = self
            .transport
            .peer(addr)
            .request_with_timeout(Lane::Data, Bytes::from(body), self.timeout)
            .await
            .ok()?;
        DataResponse::decode(&frame).ok()
    }

    /// Streams `range` from `addr` into the local store.
    async fn stream(&self, addr: &str, range: RingRange, report: &mut FillReport) -> bool {
        let mut after: Option<ScanCursor> = None;
        loop {
            let Some(DataResponse::Batch { entries, next }) = self
                .ask(addr, DataRequest::encode_scan(range, after.as_ref()))
                .await
            else {
                return false;
            };
            for entry in &entries {
                if let Some(write) = entry.write() {
                    report.entries += 1;
                    report.bytes += entry.key.len() as u64;
                    if let crate::store::EntryData::Value { value, .. } = &entry.data {
                        report.bytes += value.len() as u64;
                    }
                    let _ = self.replica.store.apply(&entry.key, write);
                }
            }
            match next {
                Some(cursor) => after = Some(cursor),
                None => return true,
            }
        }
    }

    /// One fill pass: stream every gained piece, then re-stream the pieces
    /// whose digests still differ from a source's.
    pub(crate) async fn fill(&mut self) -> FillReport {
        let p = self.placement.load_full();
        let (pieces, mut complete) = self.gained(&p);
        let mut report = FillReport {
            pieces: pieces.len(),
            ..FillReport::default()
        };
        for piece in &pieces {
            for (_, addr) in &piece.sources {
                complete &= self.stream(addr, piece.range, &mut report).await;
            }
        }
        // Catch-up: writes that raced the first pass.
        for piece in &pieces {
            for (_, addr) in &piece.sources {
                let theirs = match self
                    .ask(addr, DataRequest::encode_digest(piece.range))
                    .await
                {
                    Some(DataResponse::Digest(d)) => d,
                    _ => {
                        complete = false;
                        continue;
                    }
                };
                if theirs != self.replica.store.digest(piece.range) {
                    complete &= self.stream(addr, piece.range, &mut report).await;
                }
            }
        }
        if complete {
            self.filled = p.future.clone();
        }
        report.complete = complete;
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

    #[test]
    fn split_covers_the_arc_exactly_once() {
        let nodes = ["a", "b", "c", "d"].map(|n| NodeId::new(n).unwrap());
        let ring = Ring::new(1, nodes).unwrap();
        let other = Ring::new(1, [nodes[0], nodes[1]]).unwrap();
        for (arc, _) in other.ranges(1).take(20) {
            let pieces = split(arc, &ring, 2);
            // Probe points: every piece's end lies in the arc, every point
            // of the arc in exactly one piece.
            for (piece, owners) in &pieces {
                assert!(arc.contains(piece.end));
                assert_eq!(owners.len(), 2);
            }
            for h in [arc.end, arc.start.wrapping_add(1)] {
                assert_eq!(
                    pieces.iter().filter(|(p, _)| p.contains(h)).count(),
                    1,
                    "{h}"
                );
            }
        }
        let empty = Ring::new(1, []).unwrap();
        assert_eq!(split(RingRange::FULL, &empty, 3).len(), 1);
    }
}
