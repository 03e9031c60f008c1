//! The slots of the counters this node increments (see
//! [`incr`](super::incr)): per key, the slot it writes and its totals,
//! bounded, oldest forgotten first; and the run's serial sequence.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::Error;
use crate::hlc::Version;

/// How many keys' slots a node remembers; past that it forgets the
/// oldest (their next increment here takes a fresh slot).
pub(crate) const REMEMBERED_SLOTS: usize = 65_536;

/// This node's slot of one counter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mine {
    /// The counter's version (its reset).
    reset: Version,
    pub(crate) serial: u64,
    pub(crate) p: u64,
    pub(crate) n: u64,
    /// When it was last added to.
    at: Instant,
}

/// The slots this node writes, per key (bounded, oldest forgotten first),
/// and the run's serial sequence.
#[derive(Debug, Default)]
pub(crate) struct CounterSlots {
    pub(crate) inner: Mutex<SlotMemory>,
}

#[derive(Debug, Default)]
pub(crate) struct SlotMemory {
    slots: HashMap<Bytes, Mine>,
    order: VecDeque<Bytes>,
    next_serial: u64,
}

impl SlotMemory {
    /// This node's slot of `key`'s counter at `reset`, after adding
    /// `delta`, if `allowed` accepts the totals; remembered only then.
    ///
    /// A remembered slot is the counter's only if the counter read holds
    /// it (`in_read`), or it was added to within `fresh_for` (less than a
    /// tombstone's grace: an increment just sent may not show in a read
    /// yet). Otherwise the key may have been deleted since and its
    /// tombstone collected, the counter started again at the same version:
    /// a fresh slot then, or the old totals would come back.
    pub(crate) fn add(
        &mut self,
        key: &[u8],
        reset: Version,
        delta: i64,
        in_read: impl Fn(u64) -> bool,
        fresh_for: Duration,
        allowed: impl FnOnce(u64, u64, u64) -> Result<(), Error>,
    ) -> Result<Mine, Error> {
        let now = Instant::now();
        let known = self
            .slots
            .get(key)
            .filter(|m| m.reset == reset && (in_read(m.serial) || now - m.at < fresh_for))
            .copied();
        let mut mine = known.unwrap_or(Mine {
            reset,
            serial: self.next_serial,
            p: 0,
            n: 0,
            at: now,
        });
        mine.at = now;
        if delta >= 0 {
            mine.p = mine.p.saturating_add(delta as u64);
        } else {
            mine.n = mine.n.saturating_add(delta.unsigned_abs());
        }
        allowed(mine.serial, mine.p, mine.n)?;
        if known.is_none() {
            self.next_serial += 1;
        }
        let key = Bytes::copy_from_slice(key);
        if self.slots.insert(key.clone(), mine).is_none() {
            self.order.push_back(key);
            while self.slots.len() > REMEMBERED_SLOTS {
                let Some(old) = self.order.pop_front() else { break };
                self.slots.remove(&old);
            }
        }
        Ok(mine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Timestamp;

    #[test]
    fn slots_are_remembered_per_reset_and_bounded() {
        let mut memory = SlotMemory::default();
        let v1 = Version::ZERO;
        let v2 = Version {
            ts: Timestamp::new(5, 0),
            ..Version::ZERO
        };
        let ok = |_, _, _| Ok(());
        let fresh = Duration::from_secs(60);
        let add = |memory: &mut SlotMemory, key: &[u8], reset, delta| {
            memory.add(key, reset, delta, |_| false, fresh, ok)
        };
        let a = add(&mut memory, b"k", v1, 3).unwrap();
        let b = add(&mut memory, b"k", v1, -1).unwrap();
        assert_eq!((a.serial, b.serial, b.p, b.n), (0, 0, 3, 1));
        // Another reset: a fresh slot, counting from zero.
        let c = add(&mut memory, b"k", v2, 2).unwrap();
        assert_eq!((c.serial, c.p, c.n), (1, 2, 0));
        // A refused total is not remembered.
        let overflow = |_, _, _| Err(Error::Overflow);
        assert!(memory.add(b"k", v2, 5, |_| false, fresh, overflow).is_err());
        assert_eq!(add(&mut memory, b"k", v2, 1).unwrap().p, 3);
        // Not in the counter read and not added to lately: the key may
        // have been deleted and started again; a fresh slot.
        let stale = memory.add(b"k", v2, 1, |_| false, Duration::ZERO, ok).unwrap();
        assert_eq!((stale.p, stale.serial > c.serial), (1, true));
        let held = memory.add(b"k", v2, 1, |s| s == stale.serial, Duration::ZERO, ok).unwrap();
        assert_eq!((held.p, held.serial), (2, stale.serial), "the read holds it");
        let c = held;
        for i in 0..REMEMBERED_SLOTS {
            add(&mut memory, format!("other{i}").as_bytes(), v1, 1).unwrap();
        }
        assert_eq!(memory.slots.len(), REMEMBERED_SLOTS);
        // `k` was the oldest: forgotten, its next increment takes a new slot.
        let d = add(&mut memory, b"k", v2, 1).unwrap();
        assert_eq!((d.p, d.serial > c.serial), (1, true));
    }
}
