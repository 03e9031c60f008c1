//! Walking the cluster's keys (`SCAN`, `KEYS`, a cluster-wide count).
//!
//! The cursor is a position on the ring's hash line, `0..=u64::MAX`: the
//! keys whose [`key_hash`](crate::keyspace::key_hash) is at or past it are
//! left to walk (0 starts, and a returned 0 ends). Each step walks the
//! piece of the line up to the end of the arc holding the cursor, asking R
//! of that arc's current owners for their keys there (keys, versions and
//! whether each is a value or a tombstone, no values), and merges their
//! answers: a key counts if its newest version among them is a value. With
//! `W + R > N`, every acknowledged write of a key is on one of the owners
//! asked, so a key present for the whole scan is returned at least once,
//! whatever the ring does meanwhile (the cursor names a position, not an
//! arc, and each step asks that position's owners of the moment).

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::time::Instant;

use super::coordinator::Coordinator;
use super::in_flight::{Request, Requests};
use super::placement::{Placement, Target};
use super::wire::{DataRequest, DataResponse, KeyEntry, MAX_BATCH_ENTRIES};
use super::Error;
use crate::hlc::{Timestamp, Version};
use crate::keyspace::RingRange;

/// One step of a cluster-wide key walk ([`GridKv::scan`](crate::GridKv::scan)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// Where the next step starts; 0 when the walk is done.
    pub cursor: u64,
    /// Keys with a live value, in ring order within the step.
    pub keys: Vec<Bytes>,
}

/// Most arcs one step walks, however few keys they hold: bounds a step's
/// time on a sparse cluster.
const MAX_ARCS_PER_STEP: usize = 64;

impl Coordinator {
    /// One step of the walk from `cursor`, about `count` keys (fewer when
    /// the walk ends or a step has walked [`MAX_ARCS_PER_STEP`] arcs, a few
    /// more when owners' answers overlap).
    pub(crate) async fn scan_keys(&self, cursor: u64, count: usize) -> Result<ScanPage, Error> {
        let count = count.clamp(1, MAX_BATCH_ENTRIES);
        let deadline = Instant::now() + self.config.timeout;
        let p = self.placement.load_full();
        if p.ring.is_empty() {
            return Err(Error::NotReady {
                missing: "the ring has no members yet".into(),
            });
        }
        let mut pos = cursor;
        let mut keys = Vec::new();
        for _ in 0..MAX_ARCS_PER_STEP {
            let mut hi = p.ring.arc_end_from(pos);
            if pos == 0 && hi == u64::MAX {
                // `(u64::MAX, u64::MAX]` would be the whole ring.
                hi = u64::MAX - 1;
            }
            // The owners a read of a key at `pos` would ask (the node's
            // read level: its datacenter's, for a local one).
            let plan = super::quorum::read_plan(&self.config, &p, &self.me, pos, &Default::default())?;
            let (owners, r) = (plan.owners, plan.required);
            let range = RingRange::new(pos.wrapping_sub(1), hi);
            let want = count.saturating_sub(keys.len()).max(1);
            let (found, covered) = self.scan_arc(&p, range, owners, r, want, deadline).await?;
            keys.extend(found);
            if covered == u64::MAX {
                return Ok(ScanPage { cursor: 0, keys });
            }
            pos = covered + 1;
            if keys.len() >= count {
                break;
            }
        }
        Ok(ScanPage { cursor: pos, keys })
    }

    /// The live keys of `range` (a piece of the line, not wrapping) from
    /// `r` of `owners`, at most about `want`, and the last hash the answer
    /// covers.
    async fn scan_arc(
        &self,
        p: &Placement,
        range: RingRange,
        owners: Vec<crate::id::NodeId>,
        r: usize,
        want: usize,
        deadline: Instant,
    ) -> Result<(Vec<Bytes>, u64), Error> {
        let candidates = self.read_order(p, owners, r)?;
        let body = Bytes::from(DataRequest::encode_scan_keys(range, None, want as u32));
        let mut answers: Vec<(Vec<KeyEntry>, bool)> = Vec::with_capacity(r);
        let mut requests = Requests::default();
        let mut next = 0;
        while answers.len() < r {
            while answers.len() + requests.len() < r && next < candidates.len() {
                match p.target(&self.me, &candidates[next]) {
                    Some(Target::Local) => {
                        if let DataResponse::Keys { keys, next } = self.replica.handle(&body) {
                            answers.push((keys, next.is_some()));
                        }
                    }
                    Some(Target::Remote(addr)) => {
                        requests.push(Request::new(next, self.request(addr, body.clone()), None));
                    }
                    None => {}
                }
                next += 1;
            }
            if answers.len() >= r {
                break;
            }
            if requests.is_empty() {
                return Err(Error::QuorumNotReached {
                    answered: answers.len(),
                    required: r,
                });
            }
            match tokio::time::timeout_at(deadline, requests.next(self.finisher.keeper())).await {
                Ok(Some((_, Ok(DataResponse::Keys { keys, next })))) => {
                    answers.push((keys, next.is_some()));
                }
                Ok(Some(_)) => {}
                Ok(None) => unreachable!("a request is in flight"),
                Err(_) => {
                    return Err(Error::Timeout {
                        answered: answers.len(),
                        required: r,
                    })
                }
            }
        }
        Ok(merge(answers, range.end))
    }
}

/// Merges owners' answers for a piece of the line ending at `end`: the
/// keys whose newest version among them is a value, and the last hash all
/// of them cover (an owner that stopped at its limit covers only up to its
/// last key: the others' keys past that wait for the next step).
fn merge(answers: Vec<(Vec<KeyEntry>, bool)>, end: u64) -> (Vec<Bytes>, u64) {
    let cut = answers
        .iter()
        .filter(|(keys, truncated)| *truncated && !keys.is_empty())
        .filter_map(|(keys, _)| keys.last().map(|k| k.hash))
        .min();
    // Keys at the cut's own hash may be split between steps (ties of one
    // hash ordered by key): the step stops short of it, unless that would
    // leave it empty.
    let (covered, keep) = match cut {
        None => (end, end),
        Some(cut) => {
            let below = answers
                .iter()
                .flat_map(|(keys, _)| keys.iter())
                .any(|k| k.hash < cut);
            if below {
                (cut - 1, cut - 1)
            } else {
                (cut, cut)
            }
        }
    };
    let mut newest: BTreeMap<(u64, Bytes), ((Version, Timestamp), bool)> = BTreeMap::new();
    for key in answers.into_iter().flat_map(|(keys, _)| keys) {
        if key.hash > keep {
            continue;
        }
        let slot = newest
            .entry((key.hash, key.key))
            .or_insert((key.order, key.live));
        if key.order > slot.0 || (key.order == slot.0 && !key.live) {
            *slot = (key.order, key.live);
        }
    }
    let keys = newest
        .into_iter()
        .filter(|(_, (_, live))| *live)
        .map(|((_, key), _)| key)
        .collect();
    (keys, covered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, hash: u64, ms: u64, live: bool) -> KeyEntry {
        KeyEntry {
            key: Bytes::copy_from_slice(name.as_bytes()),
            hash,
            order: (
                Version {
                    ts: Timestamp::new(ms, 0),
                    ..Version::ZERO
                },
                Timestamp::ZERO,
            ),
            live,
        }
    }

    #[test]
    fn the_newest_version_decides_and_a_truncated_answer_bounds_the_step() {
        // Owner 1 deleted "b" after owner 2's value; owner 2 stopped at
        // its limit at hash 30.
        let one = vec![key("a", 10, 1, true), key("b", 20, 5, false), key("d", 40, 1, true)];
        let two = vec![key("a", 10, 1, true), key("b", 20, 3, true), key("c", 30, 1, true)];
        let (keys, covered) = merge(vec![(one.clone(), false), (two.clone(), true)], 100);
        assert_eq!(keys, vec![Bytes::from("a")], "b is deleted; c and d wait");
        assert_eq!(covered, 29);
        let (keys, covered) = merge(vec![(one, false), (two, false)], 100);
        assert_eq!(keys.len(), 3, "a, c, d");
        assert_eq!(covered, 100);
        // A truncated answer made of one hash only still moves on.
        let same = vec![key("x", 50, 1, true)];
        let (keys, covered) = merge(vec![(same, true)], 100);
        assert_eq!((keys.len(), covered), (1, 50));
    }
}
