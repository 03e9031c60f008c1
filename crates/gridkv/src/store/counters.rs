//! A shard's counters and gauges: those updated under the shared (read)
//! lock, as atomics, and those updated under the exclusive one, with the
//! accounting that moves an entry between states.

use std::sync::atomic::AtomicU64;

use super::entry::State;

/// Counters updated under the shared (read) lock, hence atomics. Only one
/// is touched per hit: hits are derived as gets minus misses, because most
/// lookups of a cache hit.
#[derive(Debug, Default)]
pub(crate) struct ReadCounters {
    pub gets: AtomicU64,
    pub misses: AtomicU64,
}

/// Counters and gauges updated under the exclusive lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WriteCounters {
    pub applied: u64,
    pub duplicates: u64,
    pub superseded: u64,
    pub evictions: u64,
    pub stubs_dropped: u64,
    pub expirations: u64,
    pub tombstones_collected: u64,
    pub tombstones_collected_early: u64,
    /// Entries dropped before their time that raised a watermark.
    pub forgotten: u64,
    /// Writes of absent keys refused under a watermark.
    pub refused_forgotten: u64,
    /// Values dropped because no other owner vouched for them.
    pub unvouched: u64,
    pub bytes: u64,
    pub tombstone_bytes: u64,
    pub live: u64,
    pub evicted: u64,
    pub tombstones: u64,
}

impl WriteCounters {
    pub(crate) fn state_gauge(&mut self, state: State) -> &mut u64 {
        match state {
            State::Live => &mut self.live,
            State::Evicted => &mut self.evicted,
            State::Deleted | State::Expired => &mut self.tombstones,
        }
    }

    /// Moves one entry from `(state, charge)` to another (either may be
    /// absent: insert, remove) and returns the change in charged bytes.
    pub(crate) fn account(&mut self, from: Option<(State, u64)>, to: Option<(State, u64)>) -> i64 {
        let mut delta = 0i64;
        if let Some((state, charge)) = from {
            *self.state_gauge(state) -= 1;
            self.bytes -= charge;
            delta -= charge as i64;
            if state.is_tombstone() {
                self.tombstone_bytes -= charge;
            }
        }
        if let Some((state, charge)) = to {
            *self.state_gauge(state) += 1;
            self.bytes += charge;
            delta += charge as i64;
            if state.is_tombstone() {
                self.tombstone_bytes += charge;
            }
        }
        delta
    }
}
