//! Increments: the coordinator's side of convergent counters (see
//! [`store::counter`](crate::store::counter) for the state and its merge).
//!
//! An increment reads the key (a quorum read), adds to this node's own
//! slot of the counter it found, and writes the counter at that counter's
//! version, where owners merge it with their copies. This node's slot
//! totals come from its own memory (`counter_slots`), never from a read:
//! it is the slot's only writer, so it knows them best, and concurrent
//! increments through it take consecutive totals under one lock. A key it
//! has no memory of (never counted here, forgotten to bound the memory, or
//! counted before a restart) gets a fresh slot, so a lower total never
//! meets a higher one of the same slot.

use bytes::Bytes;
use tokio::time::Instant;

use super::coordinator::Coordinator;
use super::quorum::WritePlan;
use super::{Error, WriteOptions};
use crate::hlc::{Timestamp, Version};
use crate::keyspace::key_hash;
use crate::store::counter::{Counter, MAX_SLOTS, SlotId, counter_version};
use crate::store::{Lookup, Write};

/// How many times an increment reads again after its write met a newer
/// version (a `SET` or `DEL` since its read, an evicted value, a flush).
const INCR_ATTEMPTS: u32 = 3;

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
        let lookup = self.read(key, opts.matching_read()).await?;
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
