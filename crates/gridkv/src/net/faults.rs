//! Fault injection per link: lose, delay or duplicate frames.
//!
//! Network simulators break whole TCP connections; SWIM and quorums must
//! also be tested against single lost, late or repeated messages. These
//! hooks act in the writer, on every frame this node sends to one peer
//! (both lanes, requests, answers and heartbeats alike), so they run the
//! same on real sockets and in a simulation. Delay keeps order: a delayed
//! frame holds back the frames behind it, as a slow link would.
//!
//! Set faults on both nodes for a symmetric effect; `drop: 1.0` on both
//! sides is a partition that leaves the sockets open, which only the
//! heartbeat timeout can notice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::rng::SplitMix64;
use crate::NodeId;

/// What happens to frames sent on one link.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use gridkv::net::faults::LinkFaults;
///
/// let flaky = LinkFaults { drop: 0.1, delay: Duration::from_millis(20), ..LinkFaults::default() };
/// assert!(!flaky.is_clean());
/// assert!(LinkFaults::default().is_clean());
/// assert_eq!(LinkFaults::partitioned().drop, 1.0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkFaults {
    /// Probability in `0.0..=1.0` that a frame is silently dropped.
    pub drop: f64,
    /// Probability in `0.0..=1.0` that a frame is sent twice.
    pub duplicate: f64,
    /// Added to every frame's time in the queue.
    pub delay: Duration,
}

impl LinkFaults {
    /// Every frame lost: a partition with the sockets left open.
    pub fn partitioned() -> Self {
        Self {
            drop: 1.0,
            ..Self::default()
        }
    }

    /// Whether this leaves frames alone.
    pub fn is_clean(&self) -> bool {
        self.drop <= 0.0 && self.duplicate <= 0.0 && self.delay.is_zero()
    }
}

/// The per-node table of [`LinkFaults`], keyed by the peer's node id, with
/// a seeded random source so a failing run replays.
///
/// # Examples
///
/// ```
/// use gridkv::net::faults::{FaultInjector, LinkFaults};
/// use gridkv::NodeId;
///
/// let faults = FaultInjector::new(7);
/// let peer = NodeId::new("node-2")?;
/// faults.set(peer, LinkFaults::partitioned());
/// assert_eq!(faults.get(&peer), Some(LinkFaults::partitioned()));
/// faults.clear(&peer);
/// assert_eq!(faults.get(&peer), None);
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
#[derive(Debug)]
pub struct FaultInjector {
    /// Fast path: no table lookup while no fault was ever set.
    any: AtomicBool,
    links: Mutex<HashMap<NodeId, LinkFaults>>,
    rng: Mutex<SplitMix64>,
}

impl FaultInjector {
    /// An empty table whose random draws start from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            any: AtomicBool::new(false),
            links: Mutex::new(HashMap::new()),
            rng: Mutex::new(SplitMix64::new(seed)),
        }
    }

    /// Applies `faults` to every frame sent to `peer` from now on (frames
    /// already written are not affected).
    pub fn set(&self, peer: NodeId, faults: LinkFaults) {
        let mut links = self.links.lock();
        if faults.is_clean() {
            links.remove(&peer);
        } else {
            links.insert(peer, faults);
        }
        self.any.store(!links.is_empty(), Ordering::Release);
    }

    /// Heals the link to `peer`.
    pub fn clear(&self, peer: &NodeId) {
        self.set(*peer, LinkFaults::default());
    }

    /// Heals every link.
    pub fn clear_all(&self) {
        self.links.lock().clear();
        self.any.store(false, Ordering::Release);
    }

    /// The faults in force on the link to `peer`, if any.
    pub fn get(&self, peer: &NodeId) -> Option<LinkFaults> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.links.lock().get(peer).copied()
    }

    /// Draws whether an event of probability `p` happens.
    pub(crate) fn roll(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits as a uniform float in [0, 1).
        let draw = self.rng.lock().unit();
        draw < p
    }
}
