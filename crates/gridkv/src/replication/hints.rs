//! Hinted handoff: writes an owner missed, kept for it and delivered when
//! it is reachable again.
//!
//! A hint is the encoded write request, kept per owner in arrival order.
//! The store is bounded in count and bytes (a full store drops the new
//! hint, counted, and so does a put-back that no longer fits) and every
//! hint expires after a time shorter than the tombstone grace period, so a
//! hint can never carry a write past the point where its key's tombstone
//! may have been collected elsewhere. Expired hints are dropped whether or
//! not their owner is reachable, and so are all the hints of an owner that
//! has been out of the ring (left, removed or forgotten) for a short grace:
//! they could never be delivered, and would fill the store until every new
//! hint is refused ([`Hints::sweep`]). Hints count towards a write quorum
//! only in a sloppy quorum (a stand-in's hint, see `WriteOptions::sloppy`).

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

/// One owner's hints, oldest first, and since when the owner has been seen
/// out of the ring (by [`Hints::sweep`]), if it is.
#[derive(Debug, Default)]
struct Queue {
    hints: VecDeque<Hint>,
    out_since: Option<Instant>,
}

impl Queue {
    fn bytes(&self) -> usize {
        self.hints.iter().map(|h| h.body.len()).sum()
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_owner: BTreeMap<NodeId, Queue>,
    count: usize,
    bytes: usize,
    /// Hints dropped by [`Hints::requeue`] (no room left) and not yet
    /// reported by [`Hints::sweep`].
    unreported_drops: usize,
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
        inner
            .by_owner
            .entry(owner)
            .or_default()
            .hints
            .push_back(Hint {
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
            let Some(hint) = queue.hints.pop_front() else {
                break;
            };
            freed += hint.body.len();
            if hint.created.elapsed() > ttl {
                expired += 1;
            } else {
                out.push(hint);
            }
        }
        if queue.hints.is_empty() {
            inner.by_owner.remove(owner);
        }
        inner.count -= out.len() + expired;
        inner.bytes -= freed;
        (out, expired)
    }

    /// Puts undelivered hints back at the front of `owner`'s queue, with
    /// the age they had: a hint whose delivery keeps failing still expires
    /// a ttl after its write was kept, never after the tombstone grace.
    ///
    /// The store's bounds hold here too: new hints may have taken the room
    /// these had while they were out, so only the oldest that still fit go
    /// back; the others are dropped, and counted by the next
    /// [`Hints::sweep`].
    pub(crate) fn requeue(&self, owner: NodeId, hints: Vec<Hint>) {
        let mut inner = self.inner.lock();
        let mut fit = 0;
        let mut fit_bytes = 0;
        for hint in &hints {
            if inner.count + fit >= self.limits.max_hints
                || inner.bytes + fit_bytes + hint.body.len() > self.limits.max_bytes
            {
                break;
            }
            fit += 1;
            fit_bytes += hint.body.len();
        }
        let dropped = hints.len() - fit;
        inner.count += fit;
        inner.bytes += fit_bytes;
        inner.unreported_drops += dropped;
        if fit > 0 {
            let queue = inner.by_owner.entry(owner).or_default();
            for hint in hints.into_iter().take(fit).rev() {
                queue.hints.push_front(hint);
            }
        }
    }

    /// Drops the hints that can no longer be delivered, and returns how
    /// many it dropped (with those [`Hints::requeue`] dropped since the
    /// last sweep), for the caller to count:
    /// - every expired hint, whether or not its owner is reachable (an
    ///   owner that is down keeps its unexpired hints);
    /// - every hint of an owner that `in_ring` says is out of the ring
    ///   (it left, was removed, or is no longer a member) and has been on
    ///   every sweep for `grace`. The grace spares an owner that is out
    ///   only briefly in this node's view: one it has not heard of yet
    ///   (a stand-in may be asked to keep a hint for a node that joined a
    ///   moment ago), or a removed node that rejoins at once. A node that
    ///   restarts under the same id is still a member (a later
    ///   generation, joining): its hints stay, as writes are versioned and
    ///   a hint older than what it holds is simply superseded.
    ///
    /// Dropped hints are freed after the store's lock is released.
    pub(crate) fn sweep(&self, in_ring: impl Fn(&NodeId) -> bool, grace: Duration) -> usize {
        let now = Instant::now();
        let ttl = self.limits.ttl;
        let mut freed: Vec<VecDeque<Hint>> = Vec::new();
        let mut inner = self.inner.lock();
        let mut dropped = std::mem::take(&mut inner.unreported_drops);
        let (mut count, mut bytes) = (0, 0);
        inner.by_owner.retain(|owner, queue| {
            if in_ring(owner) {
                queue.out_since = None;
                let mut expired = VecDeque::new();
                while queue
                    .hints
                    .front()
                    .is_some_and(|h| now.saturating_duration_since(h.created) > ttl)
                {
                    let hint = queue.hints.pop_front().expect("checked above");
                    bytes += hint.body.len();
                    expired.push_back(hint);
                }
                count += expired.len();
                if !expired.is_empty() {
                    freed.push(expired);
                }
            } else {
                let since = *queue.out_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= grace {
                    count += queue.hints.len();
                    bytes += queue.bytes();
                    freed.push(std::mem::take(&mut queue.hints));
                }
            }
            !queue.hints.is_empty()
        });
        inner.count -= count;
        inner.bytes -= bytes;
        drop(inner);
        dropped += count;
        drop(freed);
        dropped
    }

    /// Hints held now.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().count
    }

    /// Bytes of hints held now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.inner.lock().bytes
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

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    const GRACE: Duration = Duration::from_secs(2);

    /// Issue 14, section 4: hints of an owner out of the ring can never be
    /// delivered; they go once it has been out for the grace, counted, and
    /// free their room. Other owners' hints stay.
    #[tokio::test(start_paused = true)]
    async fn hints_of_an_owner_out_of_the_ring_are_dropped_after_the_grace() {
        let hints = Hints::new(HintLimits {
            max_hints: 10,
            max_bytes: 100,
            ttl: Duration::from_secs(60),
        });
        let (gone, kept) = (node("gone"), node("kept"));
        assert!(hints.add(gone, Bytes::from_static(b"12")));
        assert!(hints.add(gone, Bytes::from_static(b"345")));
        assert!(hints.add(kept, Bytes::from_static(b"6")));
        let in_ring = |id: &NodeId| *id == kept;
        assert_eq!(hints.sweep(in_ring, GRACE), 0, "first seen out");
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(hints.sweep(in_ring, GRACE), 0, "within the grace");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(hints.sweep(in_ring, GRACE), 2);
        assert_eq!((hints.len(), hints.bytes()), (1, 1));
        assert_eq!(hints.owners(), [kept]);
        assert_eq!(hints.sweep(in_ring, GRACE), 0, "each drop counted once");
    }

    /// An owner back in the ring within the grace (a removed node that
    /// rejoins at once, or one this node had not heard of yet) keeps its
    /// hints, and a later departure gets a whole grace again.
    #[tokio::test(start_paused = true)]
    async fn an_owner_back_within_the_grace_keeps_its_hints() {
        let hints = Hints::new(limits());
        let a = node("a");
        assert!(hints.add(a, Bytes::from_static(b"w")));
        let (out, back) = (|_: &NodeId| false, |_: &NodeId| true);
        assert_eq!(hints.sweep(out, GRACE), 0);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(hints.sweep(back, GRACE), 0);
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert_eq!(hints.sweep(out, GRACE), 0, "out again: a new grace");
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(hints.sweep(out, GRACE), 0);
        assert_eq!(hints.len(), 1);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(hints.sweep(out, GRACE), 1);
        assert_eq!(hints.len(), 0);
    }

    /// An owner in the ring but unreachable (down) keeps its unexpired
    /// hints; expired ones go without waiting for it to come back (delivery
    /// only looks at owners that are alive).
    #[tokio::test(start_paused = true)]
    async fn an_owner_in_the_ring_keeps_its_hints_until_they_expire() {
        let hints = Hints::new(limits());
        let a = node("a");
        assert!(hints.add(a, Bytes::from_static(b"old")));
        tokio::time::advance(Duration::from_secs(40)).await;
        assert!(hints.add(a, Bytes::from_static(b"new")));
        let in_ring = |_: &NodeId| true;
        assert_eq!(hints.sweep(in_ring, GRACE), 0);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(hints.sweep(in_ring, GRACE), 1, "70 s old, past the ttl");
        assert_eq!((hints.len(), hints.bytes()), (1, 3));
        let (left, expired) = hints.take(&a, 10);
        assert_eq!((&left[0].body[..], expired), (&b"new"[..], 0));
    }

    /// While a batch is out for delivery, new hints may take its room: a
    /// failed batch goes back only as far as the bounds allow (oldest
    /// first), and the rest is dropped and counted, never held over them.
    #[test]
    fn a_failed_batch_goes_back_only_within_the_bounds() {
        let hints = Hints::new(limits());
        let (a, b) = (node("a"), node("b"));
        assert!(hints.add(a, Bytes::from_static(b"1111")));
        assert!(hints.add(a, Bytes::from_static(b"2222")));
        let (batch, _) = hints.take(&a, 10);
        assert!(hints.add(b, Bytes::from_static(b"333")));
        assert!(hints.add(b, Bytes::from_static(b"44")));
        // 2 hints, 5 bytes held: room for one more hint, of 5 bytes.
        hints.requeue(a, batch);
        assert_eq!((hints.len(), hints.bytes()), (3, 9));
        let (back, _) = hints.take(&a, 10);
        assert_eq!(&back[0].body[..], b"1111", "the oldest went back");
        assert_eq!(back.len(), 1);
        assert_eq!(hints.sweep(|_: &NodeId| true, GRACE), 1, "the other, counted");
        assert_eq!(hints.sweep(|_: &NodeId| true, GRACE), 0);
    }

    /// However hints are added, taken, put back and swept, the store never
    /// holds more than its bounds, and its count and bytes match its
    /// queues.
    #[tokio::test(start_paused = true)]
    async fn the_bounds_hold_under_any_mix_of_operations() {
        let seed = std::env::var("GRIDKV_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(14u64);
        let mut rng = crate::rng::SplitMix64::new(seed);
        let limits = HintLimits {
            max_hints: 8,
            max_bytes: 40,
            ttl: Duration::from_secs(5),
        };
        let hints = Hints::new(limits);
        let owners = [node("a"), node("b"), node("c")];
        let mut out: Vec<(NodeId, Vec<Hint>)> = Vec::new();
        for step in 0..2000 {
            let owner = owners[rng.below(3) as usize];
            match rng.below(5) {
                0 | 1 => {
                    let len = rng.below(12) as usize;
                    hints.add(owner, Bytes::from(vec![0; len]));
                }
                2 => out.push((owner, hints.take(&owner, rng.below(4) as usize).0)),
                3 => {
                    if let Some((owner, batch)) = out.pop() {
                        hints.requeue(owner, batch);
                    }
                }
                _ => {
                    let gone = owners[rng.below(3) as usize];
                    hints.sweep(|id| *id != gone, GRACE);
                }
            }
            tokio::time::advance(Duration::from_millis(rng.below(400))).await;
            let inner = hints.inner.lock();
            let count: usize = inner.by_owner.values().map(|q| q.hints.len()).sum();
            let bytes: usize = inner.by_owner.values().map(Queue::bytes).sum();
            assert_eq!((inner.count, inner.bytes), (count, bytes), "seed {seed}, step {step}");
            assert!(
                count <= limits.max_hints && bytes <= limits.max_bytes,
                "seed {seed}, step {step}: {count} hints, {bytes} bytes"
            );
            assert!(inner.by_owner.values().all(|q| !q.hints.is_empty()));
        }
    }
}
