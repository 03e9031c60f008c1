//! Store maintenance: the sweep that expires values and collects
//! tombstones ([`Store::maintain`]), and the task that keeps a store's
//! coarse clock ticking and sweeps it, which the node starts with
//! [`spawn`] and stops through its cancellation token.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

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

/// How often the store's coarse clock is refreshed (expiry resolution).
const TICK: Duration = Duration::from_millis(10);
/// How often the store sweeps expired values and old tombstones.
const SWEEP: Duration = Duration::from_millis(100);
/// Most [`Store::maintain`] calls per sweep: bounded work per round, so the
/// worker running the sweep is not held from requests for long.
const SWEEP_CALLS: usize = 16;

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

/// Starts the task that ticks `store`'s coarse clock every [`TICK`] and
/// sweeps it every [`SWEEP`], until `cancel` fires. The caller keeps the
/// handle to wait for the task when it stops.
pub(crate) fn spawn(store: Arc<Store>, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut last_sweep = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            store.tick();
            if last_sweep.elapsed() >= SWEEP {
                last_sweep = Instant::now();
                for _ in 0..SWEEP_CALLS {
                    if !store.maintain().more {
                        break;
                    }
                }
            }
        }
    })
}
