//! A shard's timers: expiries and tombstone collections.

use super::{Entry, State};

/// A pending deadline: an expiry (in the expiry heap) or a tombstone
/// collection (in the collection heap). A timer is stale when the entry it
/// names (by hash and seq) no longer implies it; stale timers are dropped
/// when popped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Timer {
    pub(super) deadline: u64,
    pub(super) hash: u64,
    pub(super) seq: u32,
}

/// The timer an entry in its current state needs, if any, and whether it is
/// a collection (true) or an expiry (false).
pub(super) fn timer_for(e: &Entry, grace_ms: u64) -> Option<(bool, Timer)> {
    let (collect, deadline) = match e.state {
        State::Live | State::Evicted if e.expires_at != 0 => (false, e.expires_at),
        State::Live | State::Evicted => return None,
        State::Deleted | State::Expired => (true, e.collect_at(grace_ms)),
    };
    Some((
        collect,
        Timer {
            deadline,
            hash: e.hash,
            seq: e.seq,
        },
    ))
}
