//! Which cluster links a node keeps: the periodic sweep that closes links
//! to addresses that are neither members nor seeds, and the membership
//! counters it and the indirect-probe check keep ([`MembershipStats`]).
//!
//! Links are opened on demand, for any address a packet or a request
//! names; membership forgets a member's links when it leaves or is
//! removed, and this sweep catches the rest (a member forgotten while
//! down, an address a stale placement or a forged packet named).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

use super::GridKv;
use crate::membership::{Liveness, MembershipSecurityStats, RingState, Swim};
use crate::net::Transport;

/// How often the driver sweeps links to addresses that are neither
/// members nor seeds.
pub const LINK_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A snapshot of a node's membership counters
/// ([`GridKv::membership_stats`]). Both only grow.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let node = gridkv::GridKv::start(gridkv::GridKv::builder("ms1").build()?).await?;
/// let stats = node.membership_stats();
/// assert_eq!(stats.probe_requests_refused, 0);
/// assert_eq!(stats.links_closed, 0);
/// node.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MembershipStats {
    /// Indirect probes (PingReq) refused because the address they named
    /// was not the member's this node knows: answered with a nack, no link
    /// opened.
    pub probe_requests_refused: u64,
    /// Peer addresses whose links the sweep closed: neither a member's
    /// nor a seed's.
    pub links_closed: u64,
    /// What signed membership refused (all zero without TLS).
    pub security: MembershipSecurityStats,
}

/// The live counters behind [`MembershipStats`].
#[derive(Debug, Default)]
pub(super) struct LinkCounters {
    probe_requests_refused: AtomicU64,
    links_closed: AtomicU64,
    security: parking_lot::Mutex<MembershipSecurityStats>,
}

/// The driver's link sweep: the seeds it always keeps, and when it runs
/// next.
#[derive(Debug)]
pub(super) struct LinkSweep {
    seeds: Vec<String>,
    next: Instant,
}

impl LinkSweep {
    /// A sweep keeping links to `seeds`, first run one interval from now.
    pub(super) fn new(seeds: &[String]) -> Self {
        Self {
            seeds: seeds.to_vec(),
            next: Instant::now() + LINK_SWEEP_INTERVAL,
        }
    }

    /// Publishes the state machine's counters, and when the interval has
    /// passed, closes the links to addresses that are neither seeds nor
    /// members still in play (not left, not removed).
    pub(super) fn tick(&mut self, swim: &Swim, transport: &Transport, counters: &LinkCounters) {
        counters
            .probe_requests_refused
            .store(swim.probe_requests_refused(), Relaxed);
        *counters.security.lock() = swim.security_stats();
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + LINK_SWEEP_INTERVAL;
        let me = swim.local().id();
        let keep: HashSet<&str> = swim
            .members()
            .filter(|m| m.id() != me)
            .filter(|m| m.liveness != Liveness::Left && m.ring != RingState::Removed)
            .map(|m| m.identity.addr.as_str())
            .chain(self.seeds.iter().map(String::as_str))
            .collect();
        let closed = transport.retain_links(|addr| keep.contains(addr));
        if closed > 0 {
            counters.links_closed.fetch_add(closed as u64, Relaxed);
            tracing::debug!(closed, "closed links to addresses neither members nor seeds");
        }
    }
}

impl GridKv {
    /// This node's membership counters: indirect probes refused for naming
    /// a non-member address, and links the sweep closed (see
    /// [`MembershipStats`]).
    pub fn membership_stats(&self) -> MembershipStats {
        let c = &self.inner.links;
        MembershipStats {
            probe_requests_refused: c.probe_requests_refused.load(Relaxed),
            links_closed: c.links_closed.load(Relaxed),
            security: *c.security.lock(),
        }
    }
}
