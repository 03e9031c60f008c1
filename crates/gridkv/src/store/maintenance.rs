//! Store maintenance: the sweep that expires values and collects
//! tombstones ([`Store::maintain`]).

use super::Store;

/// Work done by one [`Store::maintain`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Bytes returned to the budget.
    pub freed: u64,
    /// Whether due work remains (call again soon).
    pub more: bool,
}

/// Timers one [`Store::maintain`] call runs per shard, bounding lock holds.
const TIMERS_PER_SHARD: usize = 1024;

impl Store {
    /// Expires values whose TTL has run out and collects tombstones past
    /// their grace period, as of the last [`Store::tick`]. Each shard runs a
    /// bounded number of timers per call, so foreground work is never held
    /// up for long; `more` says whether to call again.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use gridkv::hlc::{ManualClock, Timestamp, Version};
    /// use gridkv::store::{Lookup, Store, StoreConfig, Write};
    ///
    /// let clock = Arc::new(ManualClock::new(1_000));
    /// let config = StoreConfig { tombstone_grace: Duration::from_secs(1), ..StoreConfig::default() };
    /// let store = Store::with_clock(config, clock.clone()).unwrap();
    /// let v = Version { ts: Timestamp::new(1_000, 0), ..Version::ZERO };
    /// store.apply(b"k", Write::delete(v)).unwrap();
    ///
    /// clock.set(2_000); // the grace period has passed
    /// store.tick();
    /// while store.maintain().more {}
    /// assert_eq!(store.get(b"k").unwrap(), Lookup::Missing);
    /// ```
    pub fn maintain(&self) -> Maintenance {
        let now = self.clock.now_ms();
        let mut report = Maintenance::default();
        for shard in self.shards.iter() {
            if !shard.0.read().has_due_timers(now) {
                continue;
            }
            let (delta, more) = shard.0.write().run_timers(now, TIMERS_PER_SHARD);
            self.charge(delta);
            report.freed += delta.unsigned_abs();
            report.more |= more;
        }
        report
    }
}
