//! Load leases: which node loads a missing key for the whole cluster
//! ([`GridKv::try_get_with`](crate::GridKv::try_get_with)).
//!
//! A key's primary owner keeps a small table of leases: the first node to
//! ask for a key's lease gets it for a bounded time and runs its loader;
//! the others are told how long it has left and wait for the value (or the
//! lease's end). A lease is advisory: it only saves loads. When the table
//! is full, or the primary cannot be reached, a caller loads without one.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::id::NodeId;

/// Most leases one node holds at a time.
pub(crate) const MAX_LEASES: usize = 65_536;

/// The longest lease granted.
pub(crate) const MAX_LEASE: Duration = Duration::from_secs(300);

/// The answer to a lease request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// The asker holds the lease (or the table was full: load anyway).
    Granted,
    /// Another node holds it for this much longer.
    Held(Duration),
}

/// A node's table of load leases, for the keys it is the primary of.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    table: Mutex<HashMap<Bytes, (NodeId, Instant)>>,
}

impl Leases {
    /// Grants `key`'s lease to `holder` for `ttl` (at most [`MAX_LEASE`]),
    /// unless another holder's lease runs; renewing one's own is granted.
    pub(crate) fn acquire(&self, key: &[u8], holder: NodeId, ttl: Duration) -> LeaseAnswer {
        let now = Instant::now();
        let mut table = self.table.lock();
        if let Some((owner, until)) = table.get(key) {
            if *until > now && *owner != holder {
                return LeaseAnswer::Held(*until - now);
            }
        }
        if table.len() >= MAX_LEASES && !table.contains_key(key) {
            table.retain(|_, (_, until)| *until > now);
            if table.len() >= MAX_LEASES {
                // Full of live leases: no coordination for this one.
                return LeaseAnswer::Granted;
            }
        }
        table.insert(Bytes::copy_from_slice(key), (holder, now + ttl.min(MAX_LEASE)));
        LeaseAnswer::Granted
    }

    /// Ends `holder`'s lease of `key`, if it holds it.
    pub(crate) fn release(&self, key: &[u8], holder: NodeId) {
        let mut table = self.table.lock();
        if table.get(key).is_some_and(|(owner, _)| *owner == holder) {
            table.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_holder_at_a_time_until_release_or_expiry() {
        let leases = Leases::default();
        let (a, b) = (NodeId::new("a").unwrap(), NodeId::new("b").unwrap());
        let ttl = Duration::from_secs(2);
        assert_eq!(leases.acquire(b"k", a, ttl), LeaseAnswer::Granted);
        assert_eq!(leases.acquire(b"k", a, ttl), LeaseAnswer::Granted, "a renewal");
        assert_eq!(leases.acquire(b"k", b, ttl), LeaseAnswer::Held(ttl));
        leases.release(b"k", b);
        assert!(matches!(leases.acquire(b"k", b, ttl), LeaseAnswer::Held(_)), "not b's to end");
        leases.release(b"k", a);
        assert_eq!(leases.acquire(b"k", b, ttl), LeaseAnswer::Granted);
        tokio::time::advance(ttl).await;
        assert_eq!(leases.acquire(b"k", a, ttl), LeaseAnswer::Granted, "b's ran out");
        assert_eq!(
            leases.acquire(b"x", a, Duration::from_secs(3600)),
            LeaseAnswer::Granted
        );
        assert_eq!(
            leases.acquire(b"x", b, ttl),
            LeaseAnswer::Held(MAX_LEASE),
            "capped"
        );
    }
}
