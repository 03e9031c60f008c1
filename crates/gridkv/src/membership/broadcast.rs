//! The dissemination queue: member updates waiting to ride on packets.
//!
//! One pending update per member (a newer one replaces the older), and one
//! per voter for votes to remove a member (each counts). Each
//! packet takes the updates sent the fewest times so far, newest first
//! among equals; an update is dropped after it has gone out `limit` times
//! (about `λ·log10(n + 1)`).

use std::collections::{BTreeMap, BTreeSet};

use super::member::RingState;
use super::wire::Update;
use crate::id::NodeId;

/// Which pending update a new one replaces: the member's, or for a vote
/// to remove it, that voter's.
type Key = (NodeId, Option<NodeId>);

fn key(update: &Update) -> Key {
    let voter = (update.ring == RingState::Removed)
        .then_some(update.suspector)
        .flatten();
    (update.identity.id, voter)
}

#[derive(Debug, Default)]
pub(crate) struct Broadcasts {
    items: BTreeMap<Key, Pending>,
    /// `(times sent, newest first, key)`: the next to send come first.
    order: BTreeSet<(u32, u64, Key)>,
    pushed: u64,
}

#[derive(Debug)]
struct Pending {
    update: Update,
    sent: u32,
    key: u64,
}

impl Broadcasts {
    /// Queues `update`, replacing any pending update about the same member.
    pub(crate) fn push(&mut self, update: Update) {
        let id = key(&update);
        if let Some(old) = self.items.remove(&id) {
            self.order.remove(&(old.sent, old.key, id));
        }
        self.pushed += 1;
        let key = u64::MAX - self.pushed;
        self.order.insert((0, key, id));
        self.items.insert(
            id,
            Pending {
                update,
                sent: 0,
                key,
            },
        );
    }

    /// Takes up to `max` updates for one packet, counting them as sent and
    /// dropping those sent `limit` times.
    pub(crate) fn take(&mut self, max: usize, limit: u32) -> Vec<Update> {
        let picked: Vec<(u32, u64, Key)> = self.order.iter().take(max).copied().collect();
        let mut out = Vec::with_capacity(picked.len());
        for key in picked {
            self.order.remove(&key);
            let (_, k, id) = key;
            let Some(item) = self.items.get_mut(&id) else {
                continue;
            };
            out.push(item.update.clone());
            item.sent += 1;
            if item.sent >= limit {
                self.items.remove(&id);
            } else {
                self.order.insert((item.sent, k, id));
            }
        }
        out
    }

    /// Updates still queued.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Generation;
    use crate::membership::{Identity, Member};

    fn update(name: &str, incarnation: u64) -> Update {
        let mut m = Member::new(Identity::new(
            NodeId::new(name).unwrap(),
            Generation::new(1),
            "h:1",
        ));
        m.incarnation = incarnation;
        Update::of(&m)
    }

    #[test]
    fn newer_update_replaces_and_each_goes_out_limit_times() {
        let mut q = Broadcasts::default();
        q.push(update("a", 1));
        q.push(update("a", 2));
        q.push(update("b", 1));
        assert_eq!(q.len(), 2);
        let first = q.take(1, 3);
        // Newest first among never-sent updates.
        assert_eq!(first[0].identity.id.as_str(), "b");
        let mut sent_a = 0;
        for _ in 0..10 {
            for u in q.take(8, 3) {
                if u.identity.id.as_str() == "a" {
                    assert_eq!(u.incarnation, 2);
                    sent_a += 1;
                }
            }
        }
        assert_eq!(sent_a, 3);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn least_sent_go_first() {
        let mut q = Broadcasts::default();
        q.push(update("a", 1));
        assert_eq!(q.take(1, 10).len(), 1);
        q.push(update("b", 1));
        // b was never sent, a once: b first.
        assert_eq!(q.take(1, 10)[0].identity.id.as_str(), "b");
    }
}
