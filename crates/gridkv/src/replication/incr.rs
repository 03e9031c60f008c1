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
use std::time::Duration;

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

/// How many times an increment reads again after its write met a newer
/// version (a `SET` or `DEL` since its read, an evicted value, a flush).
const INCR_ATTEMPTS: u32 = 3;

/// This node's slot of one counter.
#[derive(Debug, Clone, Copy)]
struct Mine {
    /// The counter's version (its reset).
    reset: Version,
    serial: u64,
    p: u64,
    n: u64,
    /// When it was last added to.
    at: Instant,
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
    ///
    /// A remembered slot is the counter's only if the counter read holds
    /// it (`in_read`), or it was added to within `fresh_for` (less than a
    /// tombstone's grace: an increment just sent may not show in a read
    /// yet). Otherwise the key may have been deleted since and its
    /// tombstone collected, the counter started again at the same version:
    /// a fresh slot then, or the old totals would come back.
    fn add(
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

impl Coordinator {
    /// Adds `delta` to the counter at `key` and returns its value as this
    /// write left it (other nodes' concurrent increments may or may not be
    /// in it). A key holding a value that is not an integer is refused, as
    /// is a result past `i64`.
    pub(crate) async fn incr(&self, key: &[u8], delta: i64, opts: WriteOptions) -> Result<i64, Error> {
        // The newest version an owner answered above the counter an attempt
        // wrote: a SET or DEL since the read, an evicted value the read
        // could not see, the flush floor. The next attempt reads again and
        // counts after it.
        let mut after = Version::ZERO;
        for _ in 0..INCR_ATTEMPTS {
            match self.incr_once(key, delta, after, opts).await? {
                Ok(value) => return Ok(value),
                Err(current) => after = after.max(current),
            }
        }
        Err(Error::Contended {
            attempts: INCR_ATTEMPTS,
        })
    }

    /// One attempt of [`Coordinator::incr`]: its value, or the version
    /// that superseded the counter it wrote.
    async fn incr_once(
        &self,
        key: &[u8],
        delta: i64,
        after: Version,
        opts: WriteOptions,
    ) -> Result<Result<i64, Version>, Error> {
        let lookup = self.read(key, super::ReadOptions {
            timeout: opts.timeout,
            ..super::ReadOptions::default()
        })
        .await?;
        let floor = self.replica.store.floor().max(after);
        // The counter the increment adds to: the one stored, or one
        // started from what the key holds (see `counter_version`).
        let (version, mut counter, expires_at, stamp) = match lookup {
            Lookup::Live(item) if item.counter && item.version >= floor => {
                let counter = Counter::decode(&item.value)
                    .map_err(|e| Error::InvalidKey(e.to_string()))?;
                (item.version, counter, item.expires_at, item.expiry_stamp)
            }
            Lookup::Live(item) if item.version >= floor => {
                let base = std::str::from_utf8(&item.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(Error::NotAnInteger)?;
                let version = counter_version(item.version);
                (version, Counter::new(base), item.expires_at, item.expiry_stamp)
            }
            // Counted after the delete or expiry, after the last flush
            // (a counter below its floor would be refused), or after what
            // superseded the last attempt.
            Lookup::Dead { version, .. } => {
                (counter_version(version.max(floor)), Counter::new(0), None, Timestamp::ZERO)
            }
            _ => (counter_version(floor), Counter::new(0), None, Timestamp::ZERO),
        };
        let hlc = &self.replica.hlc;
        let node = Bytes::copy_from_slice(self.me.as_bytes());
        let generation = hlc.generation().get();
        let grace = self.replica.store.config().tombstone_grace;
        let in_read = |serial| {
            counter
                .slot(&SlotId {
                    node: node.clone(),
                    generation,
                    serial,
                })
                .is_some()
        };
        let mine = self.slots.inner.lock().add(key, version, delta, in_read, grace / 2, |serial, p, n| {
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
        Ok(result?.map(|()| value))
    }

    /// Sends a counter's state to the key's owners, at its own version
    /// (never re-stamped: it is one counter's state, merged where it
    /// lands). Short of W with an owner holding something newer: that
    /// version (`Err` inside), for the caller to count after.
    async fn write_counter(
        &self,
        key: &[u8],
        write: Write<'_>,
        opts: WriteOptions,
    ) -> Result<Result<(), Version>, Error> {
        self.check_key(key)?;
        let now = Instant::now();
        self.pass_write_barrier(&opts).await?;
        let deadline = now + opts.timeout.unwrap_or(self.config.timeout);
        let p = self.placement.load_full();
        let plan = WritePlan::new(&self.config, &p, &self.me, key_hash(key), &opts, now)?;
        self.reachable_quorum(&plan, &p)?;
        let tally = plan.tally(write.version);
        let tally = self.fan_out_plain(key, write, &plan, &p, deadline, tally).await?;
        match tally.superseded {
            _ if tally.satisfied() => Ok(Ok(())),
            Some(current) => Ok(Err(current)),
            None => Err(tally.failure(plan.w)),
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
