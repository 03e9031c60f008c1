//! Hinted handoff: writes an owner missed, kept for it and delivered when
//! it is reachable again.
//!
//! A hint is the encoded write request, kept per owner in arrival order.
//! The store is bounded in count and bytes (a full store drops the new
//! hint, counted) and every hint expires after a time shorter than the
//! tombstone grace period, so a hint can never carry a write past the point
//! where its key's tombstone may have been collected elsewhere. Hints count
//! towards a write quorum only in a sloppy quorum (a stand-in's hint, see
//! `WriteOptions::sloppy`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::stats::Counters;
use crate::id::NodeId;

/// Bounds of the hint store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HintLimits {
    pub(crate) max_hints: usize,
    pub(crate) max_bytes: usize,
    pub(crate) ttl: Duration,
}

/// One kept write: its encoded request, and when the write was first
/// kept (its expiry counts from then, however often delivery fails).
#[derive(Debug, Clone)]
pub(crate) struct Hint {
    pub(crate) body: Bytes,
    created: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    by_owner: BTreeMap<NodeId, VecDeque<Hint>>,
    count: usize,
    bytes: usize,
}

#[derive(Debug)]
pub(crate) struct Hints {
    limits: HintLimits,
    inner: Mutex<Inner>,
}

impl Hints {
    pub(crate) fn new(limits: HintLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Keeps `body` (an encoded write) for `owner`; false if the store is
    /// full.
    pub(crate) fn add(&self, owner: NodeId, body: Bytes) -> bool {
        let mut inner = self.inner.lock();
        if inner.count >= self.limits.max_hints || inner.bytes + body.len() > self.limits.max_bytes
        {
            return false;
        }
        inner.count += 1;
        inner.bytes += body.len();
        inner.by_owner.entry(owner).or_default().push_back(Hint {
            body,
            created: Instant::now(),
        });
        true
    }

    /// [`Hints::add`], counted in `counters` as stored or dropped.
    pub(crate) fn keep(&self, owner: NodeId, body: Bytes, counters: &Counters) -> bool {
        let stored = self.add(owner, body);
        Counters::add(
            if stored {
                &counters.hints_stored
            } else {
                &counters.hints_dropped
            },
            1,
        );
        stored
    }

    /// Owners with hints waiting.
    pub(crate) fn owners(&self) -> Vec<NodeId> {
        self.inner.lock().by_owner.keys().copied().collect()
    }

    /// Up to `max` of `owner`'s oldest unexpired hints, removed from the
    /// store; also returns how many expired ones were dropped.
    pub(crate) fn take(&self, owner: &NodeId, max: usize) -> (Vec<Hint>, usize) {
        let mut inner = self.inner.lock();
        let ttl = self.limits.ttl;
        let Some(queue) = inner.by_owner.get_mut(owner) else {
            return (Vec::new(), 0);
        };
        let mut out = Vec::new();
        let mut expired = 0;
        let mut freed = 0;
        while out.len() < max {
            let Some(hint) = queue.pop_front() else { break };
            freed += hint.body.len();
            if hint.created.elapsed() > ttl {
                expired += 1;
            } else {
                out.push(hint);
            }
        }
        if queue.is_empty() {
            inner.by_owner.remove(owner);
        }
        inner.count -= out.len() + expired;
        inner.bytes -= freed;
        (out, expired)
    }

    /// Puts undelivered hints back at the front of `owner`'s queue, with
    /// the age they had: a hint whose delivery keeps failing still expires
    /// a ttl after its write was kept, never after the tombstone grace.
    pub(crate) fn requeue(&self, owner: NodeId, hints: Vec<Hint>) {
        let mut inner = self.inner.lock();
        inner.count += hints.len();
        inner.bytes += hints.iter().map(|h| h.body.len()).sum::<usize>();
        let queue = inner.by_owner.entry(owner).or_default();
        for hint in hints.into_iter().rev() {
            queue.push_front(hint);
        }
    }

    /// Hints held now.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HintLimits {
        HintLimits {
            max_hints: 3,
            max_bytes: 10,
            ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn bounded_in_count_and_bytes_and_delivered_in_order() {
        let hints = Hints::new(limits());
        let a = NodeId::new("a").unwrap();
        assert!(hints.add(a, Bytes::from_static(b"1234")));
        assert!(hints.add(a, Bytes::from_static(b"5678")));
        assert!(
            !hints.add(a, Bytes::from_static(b"abc")),
            "over the byte bound"
        );
        assert!(hints.add(a, Bytes::from_static(b"ab")));
        assert!(!hints.add(a, Bytes::new()), "over the count bound");
        let (first, expired) = hints.take(&a, 2);
        assert_eq!((first.len(), expired), (2, 0));
        assert_eq!(&first[0].body[..], b"1234");
        hints.requeue(a, vec![first[1].clone()]);
        let (rest, _) = hints.take(&a, 10);
        assert_eq!(
            rest.iter().map(|h| &h.body[..]).collect::<Vec<_>>(),
            [&b"5678"[..], b"ab"]
        );
        assert_eq!(hints.len(), 0);
        assert!(hints.owners().is_empty());
    }

    /// Issue 14: a hint whose delivery keeps failing must not live past its
    /// ttl (else it could outlive the tombstone grace and resurrect a key).
    #[tokio::test(start_paused = true)]
    async fn a_requeued_hint_expires_a_ttl_after_it_was_first_kept() {
        let hints = Hints::new(limits());
        let a = NodeId::new("a").unwrap();
        assert!(hints.add(a, Bytes::from_static(b"w")));
        tokio::time::advance(Duration::from_secs(40)).await;
        let (failed, _) = hints.take(&a, 10);
        hints.requeue(a, failed);
        tokio::time::advance(Duration::from_secs(40)).await;
        let (left, expired) = hints.take(&a, 10);
        assert_eq!((left.len(), expired), (0, 1), "80 s after it was kept, past the 60 s ttl");
        assert_eq!(hints.len(), 0);
    }
}
