//! Increments: the coordinator's side of convergent counters (see
//! [`store::counter`](crate::store::counter) for the state and its merge).
//!
//! An increment reads the key (a quorum read), adds to this node's own
//! slot of the counter it found, and writes the counter at that counter's
//! version, where owners merge it with their copies. This node's slot
//! totals come from its own memory ([`CounterSlots`]), never from a read:
//! it is the slot's only writer, so it knows them best, and concurrent
//! increments through it take consecutive totals under one lock. A key it
//! has no memory of (never counted here, forgotten to bound the memory, or
//! counted before a restart) gets a fresh slot, so a lower total never
//! meets a higher one of the same slot.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::coordinator::Coordinator;
use super::quorum::WritePlan;
use super::{Error, WriteOptions};
use crate::hlc::{Timestamp, Version};
use crate::keyspace::key_hash;
use crate::store::counter::{Counter, MAX_SLOTS, SlotId, counter_version};
use crate::store::{Lookup, Write};

/// How many keys' slots a node remembers; past that it forgets the
/// oldest (their next increment here takes a fresh slot).
pub(crate) const REMEMBERED_SLOTS: usize = 65_536;

/// This node's slot of one counter.
#[derive(Debug, Clone, Copy)]
struct Mine {
    /// The counter's version (its reset).
    reset: Version,
    serial: u64,
    p: u64,
    n: u64,
}

/// The slots this node writes, per key (bounded, oldest forgotten first),
/// and the run's serial sequence.
#[derive(Debug, Default)]
pub(crate) struct CounterSlots {
    inner: Mutex<SlotMemory>,
}

#[derive(Debug, Default)]
struct SlotMemory {
    slots: HashMap<Bytes, Mine>,
    order: VecDeque<Bytes>,
    next_serial: u64,
}

impl SlotMemory {
    /// This node's slot of `key`'s counter at `reset`, after adding
    /// `delta`, if `allowed` accepts the totals; remembered only then.
    fn add(
        &mut self,
        key: &[u8],
        reset: Version,
        delta: i64,
        allowed: impl FnOnce(u64, u64, u64) -> Result<(), Error>,
    ) -> Result<Mine, Error> {
        let known = self.slots.get(key).filter(|m| m.reset == reset).copied();
        let mut mine = known.unwrap_or(Mine {
            reset,
            serial: self.next_serial,
            p: 0,
            n: 0,
        });
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

impl Coordinator {
    /// Adds `delta` to the counter at `key` and returns its value as this
    /// write left it (other nodes' concurrent increments may or may not be
    /// in it). A key holding a value that is not an integer is refused, as
    /// is a result past `i64`.
    pub(crate) async fn incr(&self, key: &[u8], delta: i64, opts: WriteOptions) -> Result<i64, Error> {
        let lookup = self.read(key, super::ReadOptions {
            timeout: opts.timeout,
            ..super::ReadOptions::default()
        })
        .await?;
        // The counter the increment adds to: the one stored, or one
        // started from what the key holds (see `counter_version`).
        let (version, mut counter, expires_at, stamp) = match lookup {
            Lookup::Live(item) if item.counter => {
                let counter = Counter::decode(&item.value)
                    .map_err(|e| Error::InvalidKey(e.to_string()))?;
                (item.version, counter, item.expires_at, item.expiry_stamp)
            }
            Lookup::Live(item) => {
                let base = std::str::from_utf8(&item.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(Error::NotAnInteger)?;
                let version = counter_version(item.version);
                (version, Counter::new(base), item.expires_at, item.expiry_stamp)
            }
            // Counted after the delete, or after the last flush (a
            // counter below the flush's floor would be refused).
            Lookup::Dead { version, .. } => {
                let after = version.max(self.replica.store.floor());
                (counter_version(after), Counter::new(0), None, Timestamp::ZERO)
            }
            _ => {
                let after = self.replica.store.floor();
                (counter_version(after), Counter::new(0), None, Timestamp::ZERO)
            }
        };
        let hlc = &self.replica.hlc;
        let node = Bytes::copy_from_slice(self.me.as_bytes());
        let generation = hlc.generation().get();
        let mine = self.slots.inner.lock().add(key, version, delta, |serial, p, n| {
            let id = SlotId {
                node: node.clone(),
                generation,
                serial,
            };
            let theirs = counter.slot(&id).map_or((0, 0), |s| (s.p, s.n));
            if counter.slot(&id).is_none() && counter.slots().len() >= MAX_SLOTS {
                return Err(Error::CounterFull { slots: MAX_SLOTS });
            }
            let mut next = counter.clone();
            next.raise(&id, p.max(theirs.0), n.max(theirs.1));
            if i64::try_from(next.value()).is_err() {
                return Err(Error::Overflow);
            }
            Ok(())
        })?;
        let id = SlotId {
            node,
            generation,
            serial: mine.serial,
        };
        counter.raise(&id, mine.p, mine.n);
        let value = i64::try_from(counter.value()).map_err(|_| Error::Overflow)?;
        let state = counter.encode();
        self.check_value(&state)?;
        let write = Write::counter(version, &state, expires_at).with_expiry_stamp(stamp);
        let result = self.write_counter(key, write, opts).await;
        self.count(&result, &self.counters.writes);
        result.map(|()| value)
    }

    /// Sends a counter's state to the key's owners, at its own version
    /// (never re-stamped: it is one counter's state, merged where it
    /// lands). An owner holding something newer (a `SET` or `DEL` since
    /// the read) counts as done: the increment is ordered just before it.
    async fn write_counter(&self, key: &[u8], write: Write<'_>, opts: WriteOptions) -> Result<(), Error> {
        self.check_key(key)?;
        let now = Instant::now();
        self.pass_write_barrier(&opts).await?;
        let deadline = now + opts.timeout.unwrap_or(self.config.timeout);
        let p = self.placement.load_full();
        let plan = WritePlan::new(&self.config, &p, &self.me, key_hash(key), &opts, now)?;
        self.reachable_quorum(&plan, &p)?;
        let tally = plan.tally(write.version).superseded_applies();
        let tally = self.fan_out_plain(key, write, &plan, &p, deadline, tally).await?;
        if tally.satisfied() {
            Ok(())
        } else {
            Err(tally.failure(plan.w))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_remembered_per_reset_and_bounded() {
        let mut memory = SlotMemory::default();
        let v1 = Version::ZERO;
        let v2 = Version {
            ts: Timestamp::new(5, 0),
            ..Version::ZERO
        };
        let ok = |_, _, _| Ok(());
        let a = memory.add(b"k", v1, 3, ok).unwrap();
        let b = memory.add(b"k", v1, -1, ok).unwrap();
        assert_eq!((a.serial, b.serial, b.p, b.n), (0, 0, 3, 1));
        // Another reset: a fresh slot, counting from zero.
        let c = memory.add(b"k", v2, 2, ok).unwrap();
        assert_eq!((c.serial, c.p, c.n), (1, 2, 0));
        // A refused total is not remembered.
        assert!(memory.add(b"k", v2, 5, |_, _, _| Err(Error::Overflow)).is_err());
        assert_eq!(memory.add(b"k", v2, 1, ok).unwrap().p, 3);
        for i in 0..REMEMBERED_SLOTS {
            memory.add(format!("other{i}").as_bytes(), v1, 1, ok).unwrap();
        }
        assert_eq!(memory.slots.len(), REMEMBERED_SLOTS);
        // `k` was the oldest: forgotten, its next increment takes a new slot.
        let d = memory.add(b"k", v2, 1, ok).unwrap();
        assert_eq!((d.p, d.serial > c.serial), (1, true));
    }
}
