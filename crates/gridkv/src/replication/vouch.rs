//! Values nobody vouches for: the last copies of what memory pressure made
//! every other owner forget.
//!
//! An owner that collects a tombstone early (or drops an evicted value's
//! stub) raises its range's watermark, under which it refuses older values
//! and answers reads of absent keys `Forgotten` (see the store's
//! memory-pressure section). A replica that missed the delete (and its
//! hint) keeps the old value; reads do not serve it while the others'
//! watermarks last (too few answers count), but once they lapse it would
//! win again, and anti-entropy cannot tell it: nobody holds the delete.
//!
//! So a value is dropped when a read finds that every other owner forgot
//! the key's range above it and none holds that version or a newer one
//! ([`unvouched`]): it may be deleted or overwritten, and was already read
//! as a miss. Reads do this for the keys they read; for the rest,
//! anti-entropy notes the keys it could not install here because of this
//! node's watermark ([`Suspects`]), and a task reads each through the
//! coordinator, which drops the copies nobody vouches for.

use std::collections::{HashSet, VecDeque};
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Coordinator;
use crate::hlc::Version;
use crate::id::NodeId;
use crate::store::Lookup;

/// How often suspects are read.
const INTERVAL: Duration = Duration::from_secs(1);

/// Suspects kept at most; more are not noted until some are read (the
/// next anti-entropy round offers them again).
pub(crate) const MAX_SUSPECTS: usize = 1_024;

/// Key bytes the suspects may hold together (keys may be long).
pub(crate) const MAX_SUSPECT_BYTES: usize = 256 << 10;

/// Suspects read per round (each is one quorum read).
const PER_ROUND: usize = 64;

/// The owners holding a live value that no other answer vouches for,
/// with its version: every other answer is `Forgotten` at or above it.
/// `answers` must hold every owner's answer (see
/// `quorum::every_owner_answered`) to a read that found too few countable
/// answers (a miss for the caller): a value vouched for by an owner that
/// did not answer would otherwise be dropped.
pub(crate) fn unvouched(answers: &[(NodeId, Lookup)]) -> Vec<(NodeId, Version)> {
    if answers.len() < 2 {
        return Vec::new();
    }
    answers
        .iter()
        .filter_map(|(holder, l)| match l {
            Lookup::Live(item) => Some((*holder, item.version)),
            _ => None,
        })
        .filter(|(holder, v)| {
            answers.iter().all(|(other, l)| {
                other == holder || matches!(l, Lookup::Forgotten { below } if *below >= *v)
            })
        })
        .collect()
}

/// Keys whose value another owner offered this node but its watermark
/// refused: reading them finds out whether anybody still vouches for that
/// value. Bounded by [`MAX_SUSPECTS`] and [`MAX_SUSPECT_BYTES`], each key
/// at most once.
#[derive(Debug, Default)]
pub(crate) struct Suspects {
    inner: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    order: VecDeque<Bytes>,
    noted: HashSet<Bytes>,
    bytes: usize,
}

impl Suspects {
    /// Notes `key`; returns whether it was taken (not already noted, and
    /// room left).
    pub(crate) fn note(&self, key: &[u8]) -> bool {
        let mut q = self.inner.lock();
        if q.order.len() >= MAX_SUSPECTS
            || q.bytes + key.len() > MAX_SUSPECT_BYTES
            || q.noted.contains(key)
        {
            return false;
        }
        let key = Bytes::copy_from_slice(key);
        q.bytes += key.len();
        q.noted.insert(key.clone());
        q.order.push_back(key);
        true
    }

    /// Takes up to `max` suspects, oldest first.
    pub(crate) fn take(&self, max: usize) -> Vec<Bytes> {
        let mut q = self.inner.lock();
        let n = q.order.len().min(max);
        let taken: Vec<Bytes> = q.order.drain(..n).collect();
        for k in &taken {
            q.noted.remove(k);
            q.bytes -= k.len();
        }
        taken
    }
}

/// Starts the task that, every [`INTERVAL`], reads up to [`PER_ROUND`] of
/// the replica's suspects through `coordinator` (whose reads drop the
/// copies nobody vouches for), until `cancel` fires or the coordinator is
/// dropped.
pub(crate) fn spawn(coordinator: Weak<Coordinator>, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(INTERVAL) => {}
            }
            let Some(coordinator) = coordinator.upgrade() else {
                return;
            };
            for key in coordinator.replica.suspects.take(PER_ROUND) {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    // A failed read (an owner down) decides nothing: the
                    // next anti-entropy round notes the key again.
                    _ = coordinator.check(&key) => {}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Timestamp;
    use crate::store::Item;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn v(ms: u64) -> Version {
        Version {
            ts: Timestamp::new(ms, 0),
            ..Version::ZERO
        }
    }

    fn live(ms: u64) -> Lookup {
        Lookup::Live(Item {
            value: Bytes::from_static(b"old"),
            version: v(ms),
            expires_at: None,
            expiry_stamp: Timestamp::ZERO,
            counter: false,
        })
    }

    fn forgot(ms: u64) -> Lookup {
        Lookup::Forgotten { below: v(ms) }
    }

    #[test]
    fn a_value_every_other_owner_forgot_above_is_unvouched() {
        let answers = [(id("l"), live(10)), (id("s"), forgot(20)), (id("t"), forgot(10))];
        assert_eq!(unvouched(&answers), vec![(id("l"), v(10))]);
    }

    #[test]
    fn a_value_another_owner_holds_or_knows_newer_is_kept() {
        let rows = [
            ("another copy", [(id("l"), live(10)), (id("s"), forgot(20)), (id("t"), live(10))]),
            ("a stub of it", [(id("l"), live(10)), (id("s"), forgot(20)), (id("t"), Lookup::Evicted { version: v(10) })]),
            ("forgotten below it", [(id("l"), live(10)), (id("s"), forgot(9)), (id("t"), forgot(20))]),
            ("another owner missed it", [(id("l"), live(10)), (id("s"), forgot(20)), (id("t"), Lookup::Missing)]),
        ];
        for (name, answers) in rows {
            assert_eq!(unvouched(&answers), vec![], "{name}");
        }
        // Nobody forgot above it, or nobody else answered: nothing to drop.
        let answers = [(id("l"), live(10)), (id("s"), Lookup::Missing)];
        assert_eq!(unvouched(&answers), vec![]);
        assert_eq!(unvouched(&[(id("l"), live(10))]), vec![]);
    }

    #[test]
    fn suspects_are_bounded_and_noted_once() {
        let s = Suspects::default();
        assert!(s.note(b"a"));
        assert!(!s.note(b"a"));
        for i in 1..MAX_SUSPECTS {
            assert!(s.note(format!("k{i}").as_bytes()));
        }
        assert!(!s.note(b"one too many"));
        let first = s.take(2);
        assert_eq!(first[0], Bytes::from_static(b"a"));
        assert!(s.note(b"a"), "taken keys may be noted again");
        assert_eq!(s.take(usize::MAX).len(), MAX_SUSPECTS - 1);
        // Long keys are bounded by their bytes.
        let long = vec![b'x'; MAX_SUSPECT_BYTES / 2];
        assert!(s.note(&long));
        assert!(!s.note(&[b'y'; MAX_SUSPECT_BYTES / 2 + 1]));
        assert_eq!(s.take(usize::MAX), vec![Bytes::from(long)]);
    }
}
