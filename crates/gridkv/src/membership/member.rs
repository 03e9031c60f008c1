//! What a node knows about one member: who it is, whether it is alive, and
//! what it does on the ring.

use std::fmt;
use std::time::Duration;

use crate::id::{Generation, NodeId};

/// Who a member is: fixed for the life of one run (generation) of a node.
///
/// # Examples
///
/// ```
/// use gridkv::membership::Identity;
/// use gridkv::{Generation, NodeId};
///
/// let me = Identity::new(NodeId::new("a")?, Generation::new(1), "10.0.0.1:7946");
/// assert_eq!(me.datacenter, "default");
/// assert!(me.public_key.is_none());
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The node's id, stable across restarts.
    pub id: NodeId,
    /// Which run of the node this is; a restart has a larger one.
    pub generation: Generation,
    /// The cluster address peers dial (`host:port`).
    pub addr: String,
    /// The datacenter label (placement and routing use it).
    pub datacenter: String,
    /// The rack or zone label within the datacenter; empty when none was
    /// given. Placement puts a key's copies in one datacenter on distinct
    /// racks when it can.
    pub rack: String,
    /// The node's public signing key, once cluster traffic is signed.
    pub public_key: Option<[u8; 32]>,
}

impl Identity {
    /// Where the member runs, for placement.
    pub fn location(&self) -> crate::ring::Location {
        crate::ring::Location::new(&self.datacenter, &self.rack)
    }

    /// The longest address, datacenter and rack label accepted, in bytes.
    pub const MAX_LABEL: usize = 255;

    /// An identity in the `default` datacenter with no public key.
    pub fn new(id: NodeId, generation: Generation, addr: impl Into<String>) -> Self {
        Self {
            id,
            generation,
            addr: addr.into(),
            datacenter: "default".to_owned(),
            rack: String::new(),
            public_key: None,
        }
    }
}

/// Whether a member is reachable, as the failure detector sees it.
///
/// # Examples
///
/// ```
/// use gridkv::membership::Liveness;
///
/// assert!(Liveness::Suspect.is_reachable());
/// assert!(!Liveness::Down.is_reachable());
/// assert_eq!(Liveness::Left.to_string(), "left");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Liveness {
    /// Answering probes.
    Alive,
    /// A probe went unanswered; the member has until its suspicion timeout
    /// to refute.
    Suspect,
    /// Suspected for longer than the suspicion timeout: a failure.
    Down,
    /// Announced its own graceful departure: not a failure.
    Left,
}

impl Liveness {
    /// Alive or suspect: worth probing and sending to.
    pub fn is_reachable(self) -> bool {
        matches!(self, Liveness::Alive | Liveness::Suspect)
    }

    /// The lowercase name used in logs, `/cluster` and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Down => "down",
            Liveness::Left => "left",
        }
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member's place on the ring, separate from its liveness: a down member
/// keeps its ring slots until it is removed.
///
/// The member itself moves through `Joining → Normal → Leaving → Left`;
/// `Removed` is decided by the others after it has been down for
/// [`SwimConfig::remove_after`](super::SwimConfig::remove_after).
///
/// # Examples
///
/// ```
/// use gridkv::membership::RingState;
///
/// assert!(RingState::Normal.serves_reads());
/// assert!(!RingState::Joining.serves_reads());
/// assert!(RingState::Joining.receives_writes());
/// assert!(!RingState::Removed.receives_writes());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RingState {
    /// Receives writes for the ranges it will own; serves no reads until its
    /// data has been streamed ("filled").
    Joining,
    /// Owns its ranges and serves reads.
    Normal,
    /// Still owns its ranges while it hands them over.
    Leaving,
    /// Gone by its own choice; owns nothing.
    Left,
    /// Taken off the ring by the majority after being down too long.
    Removed,
}

impl RingState {
    /// Whether reads may be served by a member in this state.
    pub fn serves_reads(self) -> bool {
        matches!(self, RingState::Normal | RingState::Leaving)
    }

    /// Whether writes for its ranges are sent to a member in this state.
    pub fn receives_writes(self) -> bool {
        matches!(
            self,
            RingState::Joining | RingState::Normal | RingState::Leaving
        )
    }

    /// The lowercase name used in logs, `/cluster` and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RingState::Joining => "joining",
            RingState::Normal => "normal",
            RingState::Leaving => "leaving",
            RingState::Left => "left",
            RingState::Removed => "removed",
        }
    }
}

impl fmt::Display for RingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the member table.
///
/// # Examples
///
/// ```
/// use gridkv::membership::{Identity, Liveness, Member, RingState};
/// use gridkv::{Generation, NodeId};
///
/// let m = Member::new(Identity::new(NodeId::new("a")?, Generation::new(1), "h:1"));
/// assert_eq!((m.liveness, m.ring, m.incarnation), (Liveness::Alive, RingState::Joining, 0));
/// assert!(!m.serves_reads());
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Who it is.
    pub identity: Identity,
    /// Raised only by the member itself, to refute suspicion or announce a
    /// change of its ring state.
    pub incarnation: u64,
    /// Reachability as this node sees it.
    pub liveness: Liveness,
    /// Place on the ring.
    pub ring: RingState,
    /// Set when this member is a restart of one that held ring slots: it
    /// keeps those slots while it refills them, instead of moving its
    /// ranges to other nodes for the meantime.
    pub holds_slots: bool,
    /// When this node last saw the member's liveness change (time since the
    /// membership state machine started).
    pub since: Duration,
}

impl Member {
    /// A freshly seen member: alive, joining, incarnation 0.
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            incarnation: 0,
            liveness: Liveness::Alive,
            ring: RingState::Joining,
            holds_slots: false,
            since: Duration::ZERO,
        }
    }

    /// The member's id.
    pub fn id(&self) -> NodeId {
        self.identity.id
    }

    /// Whether reads may be sent to it now: reachable and in a ring state
    /// that serves reads.
    pub fn serves_reads(&self) -> bool {
        self.liveness.is_reachable() && self.ring.serves_reads()
    }

    /// Whether it is a restart still refilling the slots it holds,
    /// reachable now: it answers scans with what it was sent since it
    /// started, when asked for that (a fill's source of last resort).
    ///
    /// ```
    /// use gridkv::membership::{Identity, Member};
    /// use gridkv::{Generation, NodeId};
    ///
    /// let mut m = Member::new(Identity::new(NodeId::new("a")?, Generation::new(2), "h:1"));
    /// assert!(!m.refilling_restart()); // a joiner holds no slots yet
    /// m.holds_slots = true;
    /// assert!(m.refilling_restart());
    /// # Ok::<(), gridkv::NodeIdError>(())
    /// ```
    pub fn refilling_restart(&self) -> bool {
        self.liveness.is_reachable() && self.ring == RingState::Joining && self.holds_slots
    }

    /// Whether it holds ring slots (designated owner of its ranges): normal
    /// or leaving members, down or not, and restarts refilling their slots.
    pub fn in_placement(&self) -> bool {
        match self.ring {
            RingState::Normal | RingState::Leaving => self.liveness != Liveness::Left,
            RingState::Joining => self.holds_slots && self.liveness != Liveness::Left,
            RingState::Left | RingState::Removed => false,
        }
    }

    /// Whether it owns ranges once pending changes complete: placement
    /// minus leaving members, plus joining ones.
    pub fn in_future_placement(&self) -> bool {
        self.liveness != Liveness::Left
            && matches!(self.ring, RingState::Normal | RingState::Joining)
    }
}
