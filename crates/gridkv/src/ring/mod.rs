//! Consistent hashing with virtual nodes: which nodes hold which keys.
//!
//! A [`Ring`] is an immutable snapshot of placement built from the ring's
//! members (not from who is alive: a member that is down keeps its slots
//! until membership removes it) and a number of virtual nodes per member. A
//! key sits at [`key_hash`](crate::keyspace::key_hash) on the 64-bit ring;
//! its replicas are the first distinct members met clockwise from there
//! ([`Ring::preference_list`]). [`SharedRing`] holds the current snapshot
//! and swaps it atomically when membership changes.
//!
//! # Placement protocol
//!
//! Every process must place every key on the same nodes, so the following is
//! a protocol: changing any of it moves keys and needs a versioned migration.
//!
//! - **Label.** Virtual node `i` (`0 <= i < V`, `V` the ring's virtual nodes
//!   per member) of node `id` is labelled by the bytes
//!   `[len(id) as u8] ++ id ++ (i as u32).to_le_bytes()`. The length prefix
//!   and the fixed-width index make the label injective: two different
//!   `(id, i)` pairs never share a label.
//! - **Token.** The ring is cut into `V` strata of width
//!   `w = (2^64 - 1) / V` (integer division). Virtual node `i` lies in
//!   stratum `i`: its token is `i * w + xxh3_64(label) % w`
//!   ([`vnode_token`]). A token depends only on the node's id, the index and
//!   `V`, so adding or removing a member never moves another member's
//!   tokens: only the arcs next to the changed member's tokens change owner.
//!   Changing `V` itself re-places every key. Compared with unstratified tokens (`xxh3_64(label)`), stratifying
//!   measurably narrows the spread of the members' shares (every member has
//!   exactly one token per `1/V` of the ring); `docs/RING.md` has the
//!   measurements.
//! - **Order and collisions.** Virtual nodes are sorted by
//!   `(token, id bytes, index)`. A token owns the arc that ends at it,
//!   `(previous token, token]` (see [`RingRange`]); when several virtual
//!   nodes share a token, the first in that order owns the arc and the
//!   others own an empty arc, but they still follow it clockwise, in that
//!   order, when replicas are collected.
//! - **Keys.** A key with hash `h` belongs to the first token `>= h`,
//!   wrapping past `u64::MAX` to the smallest token. Its `n` replicas are the
//!   owners of the virtual nodes from there on, clockwise, skipping members
//!   already chosen.
//!
//! # Cost
//!
//! A ring of `T` tokens (members × `V`) stores, for every token, the next
//! `min(members, `[`Ring::MAX_REPLICAS`]`)` distinct members as 4-byte
//! indices, so [`Ring::preference_list`] is a binary search plus a slice:
//! O(log T) whatever `n`, and no allocation. 10 members of 150 virtual
//! nodes take about 70 KiB; 100 members about 1 MiB. Building a ring costs
//! O(T log T + T × `MAX_REPLICAS`) (0.14 ms for 10 × 150, 4 ms for
//! 100 × 150) and is done by membership, off the request path.

mod preference;
mod ranges;
mod shared;
mod topology;

pub use preference::{PreferenceIter, PreferenceList};
pub use topology::{Location, ReplicaPlacement, RACK_WALK};
pub(crate) use ranges::{cut, split, subdivide};
pub use shared::{RingGuard, SharedRing};

use std::fmt;

use xxhash_rust::xxh3::xxh3_64;

use crate::id::NodeId;
use crate::keyspace::RingRange;

/// Longest virtual-node label: length byte, longest id, 4-byte index.
const LABEL_MAX: usize = 1 + NodeId::MAX_LEN + 4;

/// The ring position of virtual node `index` of `node` on a ring with
/// `vnodes` virtual nodes per member (the [placement protocol](self)).
///
/// # Panics
///
/// If `index >= vnodes` (which also covers `vnodes == 0`).
///
/// # Examples
///
/// ```
/// use gridkv::ring::{vnode_token, Ring};
/// use gridkv::NodeId;
///
/// let node = NodeId::new("node-1").unwrap();
/// let ring = Ring::new(1, [node])?;
/// let first = vnode_token(&node, 0, Ring::DEFAULT_VNODES);
/// assert_eq!(ring.tokens().next(), Some((first, &node)));
/// // Virtual node i lies in the i-th of V equal strata of the ring.
/// let width = u64::MAX / u64::from(Ring::DEFAULT_VNODES);
/// assert_eq!(vnode_token(&node, 7, Ring::DEFAULT_VNODES) / width, 7);
/// # Ok::<(), gridkv::ring::RingError>(())
/// ```
pub fn vnode_token(node: &NodeId, index: u32, vnodes: u32) -> u64 {
    assert!(
        index < vnodes,
        "virtual node index {index} out of range for {vnodes} virtual nodes"
    );
    let id = node.as_bytes();
    let mut label = [0u8; LABEL_MAX];
    // A NodeId is at most MAX_LEN (55) bytes, so its length fits the byte.
    label[0] = id.len() as u8;
    label[1..=id.len()].copy_from_slice(id);
    label[1 + id.len()..][..4].copy_from_slice(&index.to_le_bytes());
    let width = u64::MAX / u64::from(vnodes);
    u64::from(index) * width + xxh3_64(&label[..id.len() + 5]) % width
}

/// Why a [`Ring`] could not be built.
///
/// # Examples
///
/// ```
/// use gridkv::ring::{Ring, RingError};
/// use gridkv::NodeId;
///
/// let a = NodeId::new("a").unwrap();
/// let err = Ring::with_vnodes(1, [a], 5_000).unwrap_err();
/// assert_eq!(err, RingError::TooManyVnodes { vnodes: 5_000, max: Ring::MAX_VNODES });
/// assert_eq!(
///     err.to_string(),
///     "5000 virtual nodes per member is more than the maximum of 4096"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The number of virtual nodes per member is zero.
    #[error("a ring needs at least one virtual node per member")]
    ZeroVnodes,
    /// The number of virtual nodes per member is above [`Ring::MAX_VNODES`].
    #[error("{vnodes} virtual nodes per member is more than the maximum of {max}")]
    TooManyVnodes {
        /// The rejected count.
        vnodes: u32,
        /// [`Ring::MAX_VNODES`].
        max: u32,
    },
    /// The same node id was given twice. Membership keeps one entry per id
    /// (a restarted node supersedes its old entry by generation), so a
    /// duplicate means two entries disagree about a node, which placement
    /// must not paper over.
    #[error("node {0} is listed twice")]
    DuplicateNode(NodeId),
    /// The replica counts cannot place keys ([`ReplicaPlacement::validate`]).
    #[error("replica placement: {0}")]
    Placement(String),
}

/// An immutable snapshot of key placement: members, their virtual nodes and
/// the replicas of every arc of the ring.
///
/// Build one with [`Ring::new`] or [`Ring::with_vnodes`] whenever the ring's
/// members change, and publish it through a [`SharedRing`]. The `version`
/// is the caller's (membership bumps it on every change); the ring only
/// carries it so that nodes can tell which placement they are using.
///
/// Two rings are equal when they have the same version, members, members'
/// locations, virtual nodes per member and replica placement (and so place
/// every key alike).
///
/// # Examples
///
/// ```
/// use gridkv::keyspace::key_hash;
/// use gridkv::ring::Ring;
/// use gridkv::NodeId;
///
/// let nodes = ["node-1", "node-2", "node-3"].map(|n| NodeId::new(n).unwrap());
/// let ring = Ring::new(7, nodes)?;
/// assert_eq!((ring.version(), ring.len()), (7, 3));
///
/// let h = key_hash(b"user:42");
/// let replicas = ring.preference_list(h, 2);
/// assert_eq!(replicas.len(), 2);
/// assert_eq!(replicas.primary(), ring.primary(h));
/// assert_ne!(replicas.get(0), replicas.get(1));
/// # Ok::<(), gridkv::ring::RingError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Ring {
    version: u64,
    vnodes: u32,
    /// Members, sorted by id bytes; placement tables refer to them by index.
    nodes: Box<[NodeId]>,
    /// Virtual-node tokens in ring order (ascending, ties kept).
    tokens: Box<[u64]>,
    /// The member (index into `nodes`) owning each token.
    owners: Box<[u32]>,
    /// For token position `p`, `successors[p * stride..][..stride]` are the
    /// first `stride` distinct members clockwise from `p`, starting with
    /// the owner of `p`.
    successors: Box<[u32]>,
    /// Replicas listed per token: `min(nodes.len(), MAX_REPLICAS)`, or
    /// the copies the placement keeps.
    stride: usize,
    /// Where each member runs, in the order of `nodes`.
    locations: Box<[Location]>,
    /// How many copies each datacenter holds.
    placement: ReplicaPlacement,
    /// For each bucket `b` of the hash space (its top [`INDEX_BITS`] bits),
    /// the number of tokens below the bucket's first hash; one more entry
    /// at the end. A lookup binary-searches only its bucket's tokens.
    index: Box<[u32]>,
}

/// Hash-space buckets of a ring's lookup index: 2^12 of them, 16 KiB a
/// ring. With the default 150 virtual nodes that is under one token per
/// bucket up to 27 members, so a lookup is one or two comparisons.
const INDEX_BITS: u32 = 12;

/// The lookup index of `tokens` (ascending): see [`Ring`]'s `index`.
fn bucket_index(tokens: &[u64]) -> Box<[u32]> {
    let buckets = 1usize << INDEX_BITS;
    let mut index = Vec::with_capacity(buckets + 1);
    let mut p = 0usize;
    for b in 0..buckets {
        let first = (b as u64) << (64 - INDEX_BITS);
        while p < tokens.len() && tokens[p] < first {
            p += 1;
        }
        index.push(u32::try_from(p).expect("fewer than 2^32 tokens"));
    }
    index.push(u32::try_from(tokens.len()).expect("fewer than 2^32 tokens"));
    index.into_boxed_slice()
}

impl Ring {
    /// Virtual nodes per member unless configured otherwise (the spec's
    /// figure).
    pub const DEFAULT_VNODES: u32 = 150;

    /// Most virtual nodes per member accepted. Balance improves as the
    /// square root of the count (see `docs/RING.md`); far beyond a few
    /// hundred the tables only grow.
    pub const MAX_VNODES: u32 = 4096;

    /// Longest preference list a ring returns. Replication factors are
    /// single digits; the cap bounds the per-token table at
    /// `MAX_REPLICAS * 4` bytes however large the cluster.
    pub const MAX_REPLICAS: usize = 16;

    /// Builds the ring of `members` with [`Ring::DEFAULT_VNODES`] virtual
    /// nodes each. The order of `members` does not matter.
    ///
    /// An empty member set gives an empty ring, on which every preference
    /// list is empty.
    pub fn new(version: u64, members: impl IntoIterator<Item = NodeId>) -> Result<Ring, RingError> {
        Self::with_vnodes(version, members, Self::DEFAULT_VNODES)
    }

    /// The ring of no members (version 0), on which every preference list
    /// is empty: what a node holds before it knows any member.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::ring::Ring;
    ///
    /// assert_eq!(Ring::empty().len(), 0);
    /// ```
    pub fn empty() -> Ring {
        Self::new(0, []).expect("an empty ring is valid")
    }

    /// Builds the ring of `members` with `vnodes` virtual nodes each.
    ///
    /// Every node of a cluster must use the same `vnodes`: it is part of the
    /// [placement protocol](self).
    ///
    /// # Errors
    ///
    /// [`RingError::ZeroVnodes`], [`RingError::TooManyVnodes`], or
    /// [`RingError::DuplicateNode`] if a node id appears twice.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::ring::{Ring, RingError};
    /// use gridkv::NodeId;
    ///
    /// let a = NodeId::new("a").unwrap();
    /// let ring = Ring::with_vnodes(1, [a], 600)?;
    /// assert_eq!(ring.vnodes(), 600);
    /// assert_eq!(ring.tokens().count(), 600);
    /// assert_eq!(Ring::with_vnodes(1, [a], 0), Err(RingError::ZeroVnodes));
    /// assert_eq!(Ring::new(1, [a, a]), Err(RingError::DuplicateNode(a)));
    /// # Ok::<(), RingError>(())
    /// ```
    pub fn with_vnodes(
        version: u64,
        members: impl IntoIterator<Item = NodeId>,
        vnodes: u32,
    ) -> Result<Ring, RingError> {
        Self::placed(
            version,
            members.into_iter().map(|id| (id, Location::default())),
            vnodes,
            &ReplicaPlacement::Total(Self::MAX_REPLICAS),
        )
    }

    /// Builds the ring of `members`, each at its [`Location`], with
    /// `vnodes` virtual nodes each, placing copies as `placement` says
    /// (see [`ReplicaPlacement`] and the module docs of `ring/topology.rs`).
    ///
    /// With [`ReplicaPlacement::Total`] and no racks this is
    /// [`Ring::with_vnodes`]: a preference list of `n` is the first `n`
    /// distinct members clockwise. With per-datacenter counts a list holds
    /// at most the copies the placement keeps, whatever `n` asks.
    ///
    /// # Errors
    ///
    /// As [`Ring::with_vnodes`], and [`RingError::Placement`] for counts
    /// that [`ReplicaPlacement::validate`] refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::keyspace::key_hash;
    /// use gridkv::ring::{Location, ReplicaPlacement, Ring};
    /// use gridkv::NodeId;
    ///
    /// let member = |id: &str, dc: &str| (NodeId::new(id).unwrap(), Location::new(dc, ""));
    /// let members = [member("a1", "a"), member("a2", "a"), member("a3", "a"), member("b1", "b"), member("b2", "b")];
    /// let placement: ReplicaPlacement = "a:2,b:1".parse().unwrap();
    /// let ring = Ring::placed(1, members, Ring::DEFAULT_VNODES, &placement)?;
    /// let owners = ring.preference_list(key_hash(b"user:42"), 3);
    /// let in_dc = |dc: &str| owners.iter().filter(|id| ring.location(id).unwrap().datacenter == dc).count();
    /// assert_eq!((owners.len(), in_dc("a"), in_dc("b")), (3, 2, 1));
    /// # Ok::<(), gridkv::ring::RingError>(())
    /// ```
    pub fn placed(
        version: u64,
        members: impl IntoIterator<Item = (NodeId, Location)>,
        vnodes: u32,
        placement: &ReplicaPlacement,
    ) -> Result<Ring, RingError> {
        if vnodes == 0 {
            return Err(RingError::ZeroVnodes);
        }
        if vnodes > Self::MAX_VNODES {
            return Err(RingError::TooManyVnodes {
                vnodes,
                max: Self::MAX_VNODES,
            });
        }
        placement.validate().map_err(RingError::Placement)?;
        let mut members: Vec<(NodeId, Location)> = members.into_iter().collect();
        members.sort_unstable_by_key(|m| m.0);
        if let Some(pair) = members.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(RingError::DuplicateNode(pair[0].0));
        }
        let vnode_list = members
            .iter()
            .flat_map(|(node, _)| (0..vnodes).map(move |i| (vnode_token(node, i, vnodes), *node, i)))
            .collect();
        let locations = members.into_iter().map(|(_, l)| l).collect();
        Ok(Self::from_placed_tokens(
            version,
            vnodes,
            vnode_list,
            locations,
            placement.clone(),
        ))
    }

    /// Builds a ring from explicit `(token, node, index)` virtual nodes.
    ///
    /// Separate from [`Ring::with_vnodes`] so that tests can place tokens
    /// by hand, e.g. to force collisions, which xxh3 never produces in
    /// practice.
    #[cfg(test)]
    pub(crate) fn from_tokens(
        version: u64,
        vnodes: u32,
        vnode_list: Vec<(u64, NodeId, u32)>,
    ) -> Ring {
        let mut nodes: Vec<NodeId> = vnode_list.iter().map(|v| v.1).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let locations = vec![Location::default(); nodes.len()];
        let placement = ReplicaPlacement::Total(Self::MAX_REPLICAS);
        Self::from_placed_tokens(version, vnodes, vnode_list, locations, placement)
    }

    /// [`Ring::from_tokens`] with members' locations (in id order, one per
    /// member) and a placement.
    fn from_placed_tokens(
        version: u64,
        vnodes: u32,
        mut vnode_list: Vec<(u64, NodeId, u32)>,
        locations: Vec<Location>,
        placement: ReplicaPlacement,
    ) -> Ring {
        // The protocol's order: NodeId orders by its bytes.
        vnode_list.sort_unstable_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
        let mut nodes: Vec<NodeId> = vnode_list.iter().map(|v| v.1).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let owners: Vec<u32> = vnode_list
            .iter()
            .map(|v| {
                let index = nodes.binary_search(&v.1).expect("owner is a member");
                u32::try_from(index).expect("fewer than 2^32 members")
            })
            .collect();
        debug_assert_eq!(locations.len(), nodes.len());
        let tokens: Box<[u64]> = vnode_list.iter().map(|v| v.0).collect();
        let plain = !placement.is_per_datacenter()
            && locations.windows(2).all(|pair| pair[0].rack == pair[1].rack);
        let (successors, stride) = if plain {
            let stride = nodes.len().min(Self::MAX_REPLICAS);
            (successor_table(&owners, nodes.len(), stride), stride)
        } else {
            topology::placed_table(&owners, &locations, &placement)
        };
        Ring {
            version,
            vnodes,
            index: bucket_index(&tokens),
            tokens,
            successors,
            owners: owners.into_boxed_slice(),
            nodes: nodes.into_boxed_slice(),
            stride,
            locations: locations.into_boxed_slice(),
            placement,
        }
    }

    /// The version the caller gave this snapshot.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Virtual nodes per member.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The members, sorted by id.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the ring has no members.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether `node` is a member.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.nodes.binary_search(node).is_ok()
    }

    /// Where member `node` runs, or `None` if it is not a member.
    pub fn location(&self, node: &NodeId) -> Option<&Location> {
        let i = self.nodes.binary_search(node).ok()?;
        Some(&self.locations[i])
    }

    /// Whether member `node` runs in datacenter `dc`.
    #[inline]
    pub fn in_datacenter(&self, node: &NodeId, dc: &str) -> bool {
        self.location(node).is_some_and(|l| l.datacenter == dc)
    }

    /// How many copies each datacenter holds.
    pub fn placement(&self) -> &ReplicaPlacement {
        &self.placement
    }

    /// The copies of a key this ring holds: the placement's, capped by
    /// the members there are (per datacenter, for per-datacenter counts).
    pub fn copies(&self, n: usize) -> usize {
        match &self.placement {
            ReplicaPlacement::Total(_) => n.min(self.stride),
            ReplicaPlacement::PerDatacenter(_) => self.stride,
        }
    }

    /// Every virtual node as `(token, owner)`, in ring order.
    pub fn tokens(&self) -> impl ExactSizeIterator<Item = (u64, &NodeId)> + '_ {
        self.tokens
            .iter()
            .enumerate()
            .map(|(p, &token)| (token, self.owner(p)))
    }

    /// The first `n` distinct members clockwise from `key_hash`, primary
    /// first: the replicas of a key with that hash.
    ///
    /// Holds `min(n, self.len(), Ring::MAX_REPLICAS)` members. Costs one
    /// binary search over the tokens, whatever `n`, and never allocates.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::keyspace::key_hash;
    /// use gridkv::ring::Ring;
    /// use gridkv::NodeId;
    ///
    /// let nodes = ["a", "b", "c"].map(|n| NodeId::new(n).unwrap());
    /// let ring = Ring::new(1, nodes)?;
    /// let h = key_hash(b"k");
    /// // Asking for more replicas than members returns every member once.
    /// let mut all: Vec<_> = ring.preference_list(h, 5).iter().copied().collect();
    /// all.sort();
    /// assert_eq!(all, nodes);
    /// # Ok::<(), gridkv::ring::RingError>(())
    /// ```
    #[inline]
    pub fn preference_list(&self, key_hash: u64, n: usize) -> PreferenceList<'_> {
        // On an empty ring the position is 0 and the stride 0: an empty list.
        self.list_at(self.position(key_hash), n)
    }

    /// The primary replica of a key with hash `key_hash`, or `None` on an
    /// empty ring.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::keyspace::key_hash;
    /// use gridkv::ring::Ring;
    /// use gridkv::NodeId;
    ///
    /// let a = NodeId::new("a").unwrap();
    /// assert_eq!(Ring::new(1, [a])?.primary(key_hash(b"k")), Some(&a));
    /// assert_eq!(Ring::new(1, [])?.primary(key_hash(b"k")), None);
    /// # Ok::<(), gridkv::ring::RingError>(())
    /// ```
    #[inline]
    pub fn primary(&self, key_hash: u64) -> Option<&NodeId> {
        self.preference_list(key_hash, 1).primary()
    }

    /// Every member once, clockwise from `key_hash`: the members a key
    /// meets walking the ring, owners and beyond (stand-ins for owners
    /// that are down are picked from it). Walks up to every token.
    pub fn members_from(&self, key_hash: u64) -> impl Iterator<Item = &NodeId> + '_ {
        let start = self.position(key_hash);
        let len = self.tokens.len();
        let mut seen = vec![false; self.nodes.len()];
        (0..len).filter_map(move |k| {
            let p = (start + k) % len;
            let owner = self.owners[p] as usize;
            (!std::mem::replace(&mut seen[owner], true)).then(|| &self.nodes[owner])
        })
    }

    /// Every arc of the ring with the `n` replicas of the keys on it, in
    /// ring order.
    ///
    /// One item per virtual node that owns a non-empty arc, so the arcs
    /// cover the ring exactly once (a one-token ring yields `(t, t]`, which
    /// [`RingRange`] reads as the whole ring). Neighbouring arcs
    /// often share their replicas; callers that want coarser ranges can
    /// merge them.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::keyspace::key_hash;
    /// use gridkv::ring::Ring;
    /// use gridkv::NodeId;
    ///
    /// let nodes = ["a", "b", "c"].map(|n| NodeId::new(n).unwrap());
    /// let ring = Ring::new(1, nodes)?;
    /// let h = key_hash(b"user:42");
    /// let mut holding = ring.ranges(2).filter(|(range, _)| range.contains(h));
    /// let (_, replicas) = holding.next().unwrap();
    /// assert_eq!(replicas, ring.preference_list(h, 2));
    /// assert!(holding.next().is_none());
    /// # Ok::<(), gridkv::ring::RingError>(())
    /// ```
    pub fn ranges(&self, n: usize) -> impl Iterator<Item = (RingRange, PreferenceList<'_>)> + '_ {
        let last = self.tokens.len().saturating_sub(1);
        (0..self.tokens.len())
            // A virtual node that shares the previous one's token owns an
            // empty arc (the protocol's collision rule).
            .filter(|&p| p == 0 || self.tokens[p] != self.tokens[p - 1])
            .map(move |p| {
                let previous = self.tokens[if p == 0 { last } else { p - 1 }];
                (RingRange::new(previous, self.tokens[p]), self.list_at(p, n))
            })
    }

    /// The arcs for which `node` is one of the `n` replicas, with all their
    /// replicas: what the node must hold, and whom it shares each arc with.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::ring::Ring;
    /// use gridkv::NodeId;
    ///
    /// let nodes = ["a", "b", "c"].map(|n| NodeId::new(n).unwrap());
    /// let ring = Ring::new(1, nodes)?;
    /// // With 3 replicas on 3 nodes, every node holds every arc.
    /// assert_eq!(ring.ranges_of(&nodes[0], 3).count(), ring.ranges(3).count());
    /// assert!(ring.ranges_of(&nodes[0], 1).count() < ring.ranges(1).count());
    /// # Ok::<(), gridkv::ring::RingError>(())
    /// ```
    pub fn ranges_of<'a>(
        &'a self,
        node: &'a NodeId,
        n: usize,
    ) -> impl Iterator<Item = (RingRange, PreferenceList<'a>)> + 'a {
        self.ranges(n)
            .filter(move |(_, replicas)| replicas.contains(node))
    }

    /// The token position a key with hash `key_hash` belongs to: the first
    /// token `>= key_hash`, wrapping to 0.
    #[inline]
    fn position(&self, key_hash: u64) -> usize {
        let p = self.first_at_or_past(key_hash);
        if p == self.tokens.len() {
            0
        } else {
            p
        }
    }

    /// The end of the arc holding `h`, walking the hash space as a line
    /// from 0 to `u64::MAX`: the first token `>= h`, or `u64::MAX` past the
    /// last token (the wrapping arc's part before the wrap). `SCAN` walks
    /// the keys in these pieces.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::ring::Ring;
    /// use gridkv::NodeId;
    ///
    /// let ring = Ring::new(1, [NodeId::new("a").unwrap()])?;
    /// let (first, _) = ring.tokens().next().unwrap();
    /// assert_eq!(ring.arc_end_from(0), first);
    /// assert_eq!(ring.arc_end_from(first), first);
    /// assert_eq!(ring.arc_end_from(u64::MAX), u64::MAX);
    /// # Ok::<(), gridkv::ring::RingError>(())
    /// ```
    pub fn arc_end_from(&self, h: u64) -> u64 {
        self.tokens
            .get(self.first_at_or_past(h))
            .copied()
            .unwrap_or(u64::MAX)
    }

    /// The index of the first token `>= h` (the token count if none is).
    #[inline]
    fn first_at_or_past(&self, h: u64) -> usize {
        // Every token below the bucket's first hash is below `h`, and every
        // token at or past the next bucket's first hash is not: the answer
        // lies within the bucket.
        let b = (h >> (64 - INDEX_BITS)) as usize;
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        lo + self.tokens[lo..hi].partition_point(|&t| t < h)
    }

    #[inline]
    fn list_at(&self, position: usize, n: usize) -> PreferenceList<'_> {
        let start = position * self.stride;
        PreferenceList::new(
            &self.successors[start..start + n.min(self.stride)],
            &self.nodes,
        )
    }

    fn owner(&self, position: usize) -> &NodeId {
        &self.nodes[self.owners[position] as usize]
    }
}

/// For every token position, the first `stride` distinct owners clockwise
/// from it (the `successors` field of [`Ring`]).
///
/// Walking from each position separately could take O(V) per position (a
/// member may hold long runs of consecutive tokens), so the table is built
/// backwards instead: the list at `p` is `owners[p]` followed by the list at
/// `p + 1` without `owners[p]`. Only the last position, whose successor wraps
/// to 0, is walked. Total O(V * stride).
fn successor_table(owners: &[u32], members: usize, stride: usize) -> Box<[u32]> {
    let positions = owners.len();
    let mut table = vec![0u32; positions * stride];
    let Some(last) = positions.checked_sub(1) else {
        return table.into_boxed_slice();
    };

    let mut seen = vec![false; members];
    let mut filled = 0;
    for &owner in owners[last..].iter().chain(owners).take(positions) {
        if filled == stride {
            break;
        }
        if !std::mem::replace(&mut seen[owner as usize], true) {
            table[last * stride + filled] = owner;
            filled += 1;
        }
    }

    for p in (0..last).rev() {
        let (here, next) = table.split_at_mut((p + 1) * stride);
        let here = &mut here[p * stride..];
        here[0] = owners[p];
        // `next` holds `stride` distinct members; dropping owners[p] leaves
        // at least the `stride - 1` we need.
        let rest = next[..stride].iter().filter(|&&m| m != owners[p]);
        for (slot, &member) in here[1..].iter_mut().zip(rest) {
            *slot = member;
        }
    }
    table.into_boxed_slice()
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("version", &self.version)
            .field("vnodes", &self.vnodes)
            .field("nodes", &self.nodes)
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    /// The position by a binary search over every token, as before the
    /// bucket index.
    fn naive_position(ring: &Ring, h: u64) -> usize {
        let p = ring.tokens.partition_point(|&t| t < h);
        if p == ring.tokens.len() {
            0
        } else {
            p
        }
    }

    #[test]
    fn the_bucket_index_finds_what_a_full_search_finds() {
        let names: Vec<NodeId> = (0..7).map(|i| id(&format!("n{i}"))).collect();
        for vnodes in [1, 3, 150] {
            let ring = Ring::with_vnodes(1, names.iter().copied(), vnodes).unwrap();
            let mut probes = vec![0, 1, u64::MAX, u64::MAX - 1];
            for b in 0..(1u64 << INDEX_BITS) {
                let first = b << (64 - INDEX_BITS);
                probes.extend([first, first.wrapping_sub(1), first + 1]);
            }
            for &t in ring.tokens.iter() {
                probes.extend([t, t.wrapping_sub(1), t.wrapping_add(1)]);
            }
            for h in probes {
                assert_eq!(
                    ring.position(h),
                    naive_position(&ring, h),
                    "vnodes {vnodes}, hash {h:#x}"
                );
            }
        }
        // Colliding tokens and a one-token ring.
        let a = id("a");
        let ring = Ring::from_tokens(1, 2, vec![(7, a, 0), (7, id("b"), 0), (u64::MAX, a, 1)]);
        for h in [0, 6, 7, 8, u64::MAX - 1, u64::MAX] {
            assert_eq!(ring.position(h), naive_position(&ring, h), "hash {h:#x}");
        }
        let empty = Ring::new(1, []).unwrap();
        assert_eq!(empty.position(12345), 0);
    }

    /// The placement rule written as plainly as possible: sort, find the
    /// first token >= h, walk clockwise collecting distinct owners.
    fn reference_list(vnodes: &[(u64, NodeId, u32)], h: u64, n: usize) -> Vec<NodeId> {
        let mut sorted = vnodes.to_vec();
        sorted.sort_by(|a, b| (a.0, a.1.as_bytes(), a.2).cmp(&(b.0, b.1.as_bytes(), b.2)));
        let start = sorted.iter().position(|v| v.0 >= h).unwrap_or(0);
        let mut out: Vec<NodeId> = Vec::new();
        for k in 0..sorted.len() {
            let node = sorted[(start + k) % sorted.len()].1;
            if out.len() < n.min(Ring::MAX_REPLICAS) && !out.contains(&node) {
                out.push(node);
            }
        }
        out
    }

    #[test]
    fn label_is_length_prefixed_id_and_little_endian_index() {
        let node = id("node-1");
        let mut label = vec![6u8];
        label.extend_from_slice(b"node-1");
        label.extend_from_slice(&[3, 0, 0, 0]);
        let width = u64::MAX / 150;
        assert_eq!(
            vnode_token(&node, 3, 150),
            3 * width + xxh3_64(&label) % width
        );
        let longest = id(&"x".repeat(NodeId::MAX_LEN));
        let top = vnode_token(&longest, 4095, 4096);
        assert!(top >= 4095 * (u64::MAX / 4096));
    }

    #[test]
    fn one_token_per_stratum_per_member() {
        let ring = Ring::with_vnodes(1, [id("a"), id("b")], 8).unwrap();
        let width = u64::MAX / 8;
        for (p, (token, _)) in ring.tokens().enumerate() {
            assert_eq!(token / width, p as u64 / 2);
        }
    }

    #[test]
    fn colliding_tokens_go_to_the_smaller_id_then_the_smaller_index() {
        let (a, b, c) = (id("a"), id("b"), id("c"));
        // b's and a's vnodes collide at 100, and two of c's collide at 200.
        let ring = Ring::from_tokens(
            1,
            2,
            vec![
                (100, b, 0),
                (200, c, 1),
                (100, a, 0),
                (300, b, 1),
                (200, c, 0),
                (400, a, 1),
            ],
        );
        let owners: Vec<_> = ring.tokens().map(|(t, n)| (t, *n)).collect();
        assert_eq!(
            owners,
            vec![(100, a), (100, b), (200, c), (200, c), (300, b), (400, a)]
        );
        // a owns (400, 100]; b's vnode at 100 owns nothing but comes next.
        for h in [0, 50, 100, 401, u64::MAX] {
            assert_eq!(
                ring.preference_list(h, 3)
                    .iter()
                    .copied()
                    .collect::<Vec<_>>(),
                vec![a, b, c]
            );
        }
        assert_eq!(ring.primary(101), Some(&c));
        let ranges: Vec<_> = ring
            .ranges(1)
            .map(|(r, l)| (r.start, r.end, *l.primary().unwrap()))
            .collect();
        assert_eq!(
            ranges,
            vec![(400, 100, a), (100, 200, c), (200, 300, b), (300, 400, a)]
        );
    }

    #[test]
    fn insertion_order_does_not_change_collision_winners() {
        let (a, b) = (id("a"), id("b"));
        let forward = Ring::from_tokens(1, 1, vec![(7, a, 0), (7, b, 0)]);
        let backward = Ring::from_tokens(1, 1, vec![(7, b, 0), (7, a, 0)]);
        assert_eq!(forward, backward);
        assert_eq!(forward.primary(7), Some(&a));
    }

    #[test]
    fn a_single_token_owns_the_whole_ring() {
        let a = id("a");
        let ring = Ring::with_vnodes(1, [a], 1).unwrap();
        let ranges: Vec<_> = ring.ranges(3).collect();
        assert_eq!(ranges.len(), 1);
        assert!(ranges[0].0.is_full());
        assert_eq!(ranges[0].1.iter().collect::<Vec<_>>(), vec![&a]);
        // All tokens equal: the first owns everything, the rest nothing.
        let same = Ring::from_tokens(1, 2, vec![(9, id("b"), 0), (9, a, 1), (9, a, 0)]);
        let ranges: Vec<_> = same.ranges(2).collect();
        assert_eq!(ranges.len(), 1);
        assert!(ranges[0].0.is_full());
        assert_eq!(ranges[0].1.iter().collect::<Vec<_>>(), vec![&a, &id("b")]);
    }

    #[test]
    fn vnode_count_is_validated() {
        let a = id("a");
        assert_eq!(Ring::with_vnodes(1, [a], 0), Err(RingError::ZeroVnodes));
        assert_eq!(
            Ring::with_vnodes(1, [a], Ring::MAX_VNODES + 1),
            Err(RingError::TooManyVnodes {
                vnodes: Ring::MAX_VNODES + 1,
                max: Ring::MAX_VNODES
            })
        );
        assert!(Ring::with_vnodes(1, [a], Ring::MAX_VNODES).is_ok());
    }

    #[test]
    fn preference_lists_are_capped() {
        let nodes: Vec<_> = (0..20).map(|i| id(&format!("n{i}"))).collect();
        let ring = Ring::with_vnodes(1, nodes, 4).unwrap();
        assert_eq!(ring.preference_list(0, 100).len(), Ring::MAX_REPLICAS);
        assert_eq!(ring.preference_list(0, 0).len(), 0);
    }

    fn small_tokens() -> impl Strategy<Value = Vec<(u64, NodeId, u32)>> {
        // Tokens from a tiny range, so collisions are the common case.
        prop::collection::vec((0u64..24, 0usize..6, 0u32..4), 1..40).prop_map(|raw| {
            let mut seen = std::collections::HashSet::new();
            raw.into_iter()
                .map(|(t, n, i)| (t, id(&format!("n{n}")), i))
                // (node, index) names a virtual node: keep one token each.
                .filter(|v| seen.insert((v.1, v.2)))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn table_matches_the_plain_walk(vnodes in small_tokens(), h in 0u64..30, n in 0usize..8) {
            let ring = Ring::from_tokens(1, 4, vnodes.clone());
            let got: Vec<NodeId> = ring.preference_list(h, n).iter().copied().collect();
            prop_assert_eq!(got, reference_list(&vnodes, h, n));
        }

        #[test]
        fn ranges_partition_the_ring(vnodes in small_tokens(), h in 0u64..30, n in 0usize..8) {
            let ring = Ring::from_tokens(1, 4, vnodes);
            let holding: Vec<_> = ring.ranges(n).filter(|(r, _)| r.contains(h)).collect();
            prop_assert_eq!(holding.len(), 1);
            prop_assert_eq!(holding[0].1, ring.preference_list(h, n));
        }
    }
}
