//! What a node knows of the cluster for placing data: the rings (current,
//! future, previous) and the member table, published as one snapshot.
//!
//! The coordinator plans every operation on one snapshot, and rebalancing
//! computes what to pull from one, so neither sees the rings of one change
//! with the member table of another.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;

use crate::id::NodeId;
use crate::membership::Member;
use crate::ring::Ring;

/// What the coordinator knows of the cluster: the placement ring, the ring
/// after pending changes, and the member table. Swapped as a whole when
/// membership changes.
#[derive(Debug)]
pub(crate) struct Placement {
    pub(crate) ring: Arc<Ring>,
    pub(crate) future: Arc<Ring>,
    pub(crate) members: BTreeMap<NodeId, Member>,
    /// Whether this node serves reads (the local-read fast path).
    pub(crate) local_serves_reads: bool,
    /// The placement ring before the last change, and until when writes
    /// also need a quorum of its owners.
    pub(crate) previous: Option<(Arc<Ring>, Instant)>,
    /// This node's datacenter: local consistency levels count owners there.
    pub(crate) datacenter: String,
}

impl Placement {
    pub(crate) fn empty() -> Self {
        let ring = Arc::new(Ring::empty());
        Self {
            future: ring.clone(),
            ring,
            members: BTreeMap::new(),
            local_serves_reads: false,
            previous: None,
            datacenter: String::new(),
        }
    }

    /// How `id` is reached from node `me`, or `None` if it is known
    /// unreachable (down, left, or not in the member table).
    pub(crate) fn target(&self, me: &NodeId, id: &NodeId) -> Option<Target<'_>> {
        if id == me {
            return Some(Target::Local);
        }
        let m = self.members.get(id)?;
        m.liveness
            .is_reachable()
            .then_some(Target::Remote(&m.identity.addr))
    }

    /// Whether `id` serves reads (joining members and members known down
    /// do not).
    pub(crate) fn serves_reads(&self, id: &NodeId) -> bool {
        self.members.get(id).is_some_and(Member::serves_reads)
    }
}

/// Where one node is reached: this node's own replica, or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    Local,
    Remote(&'a str),
}
