//! The replicas of a key, borrowed from a [`Ring`](super::Ring) snapshot.

use std::fmt;
use std::iter::FusedIterator;

use crate::id::NodeId;

/// The first distinct nodes clockwise from a key's position, primary first.
///
/// A view into tables the [`Ring`](super::Ring) precomputed when it was
/// built: creating, copying and iterating one never allocates. It borrows
/// the ring, so it lives as long as the snapshot it came from.
///
/// # Examples
///
/// ```
/// use gridkv::keyspace::key_hash;
/// use gridkv::ring::Ring;
/// use gridkv::NodeId;
///
/// let nodes = ["a", "b", "c", "d"].map(|n| NodeId::new(n).unwrap());
/// let ring = Ring::new(1, nodes)?;
/// let replicas = ring.preference_list(key_hash(b"user:42"), 3);
/// assert_eq!(replicas.len(), 3);
/// assert_eq!(replicas.primary(), ring.primary(key_hash(b"user:42")));
/// for node in replicas {
///     assert!(ring.contains(node));
/// }
/// # Ok::<(), gridkv::ring::RingError>(())
/// ```
#[derive(Clone, Copy)]
#[cfg_attr(
    not(feature = "internals"),
    allow(
        unnameable_types,
        reason = "no public item yields one; rustc counts the trait impls as reachable"
    )
)]
pub struct PreferenceList<'a> {
    /// Indices into `nodes`, in preference order.
    indices: &'a [u32],
    /// The ring's members, sorted by id.
    nodes: &'a [NodeId],
}

impl<'a> PreferenceList<'a> {
    pub(super) fn new(indices: &'a [u32], nodes: &'a [NodeId]) -> Self {
        Self { indices, nodes }
    }

    /// How many replicas the list holds.
    #[inline]
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the list is empty (only for an empty ring or `n == 0`).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The `i`-th replica, `0` being the primary.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&'a NodeId> {
        self.indices.get(i).map(|&n| &self.nodes[n as usize])
    }

    /// The primary replica: the owner of the key's arc.
    #[inline]
    pub fn primary(&self) -> Option<&'a NodeId> {
        self.get(0)
    }

    /// Whether `node` is one of the replicas.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.iter().any(|n| n == node)
    }

    /// The replicas in preference order.
    #[inline]
    pub fn iter(&self) -> PreferenceIter<'a> {
        PreferenceIter {
            indices: self.indices.iter(),
            nodes: self.nodes,
        }
    }
}

impl<'a> IntoIterator for PreferenceList<'a> {
    type Item = &'a NodeId;
    type IntoIter = PreferenceIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> IntoIterator for &PreferenceList<'a> {
    type Item = &'a NodeId;
    type IntoIter = PreferenceIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Two lists are equal when they name the same nodes in the same order, even
/// if they come from different snapshots.
impl PartialEq for PreferenceList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for PreferenceList<'_> {}

impl fmt::Debug for PreferenceList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over a [`PreferenceList`], primary first.
///
/// # Examples
///
/// ```
/// use gridkv::ring::Ring;
/// use gridkv::NodeId;
///
/// let nodes = ["a", "b", "c"].map(|n| NodeId::new(n).unwrap());
/// let ring = Ring::new(1, nodes)?;
/// let replicas = ring.preference_list(42, 3);
/// let mut iter = replicas.iter();
/// assert_eq!(iter.len(), 3);
/// assert_eq!(iter.next(), replicas.primary());
/// assert_eq!(iter.next_back(), replicas.get(2));
/// # Ok::<(), gridkv::ring::RingError>(())
/// ```
#[derive(Clone, Debug)]
#[cfg_attr(
    not(feature = "internals"),
    allow(
        unnameable_types,
        reason = "no public item yields one; rustc counts the trait impls as reachable"
    )
)]
pub struct PreferenceIter<'a> {
    indices: std::slice::Iter<'a, u32>,
    nodes: &'a [NodeId],
}

impl<'a> Iterator for PreferenceIter<'a> {
    type Item = &'a NodeId;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.indices.next().map(|&n| &self.nodes[n as usize])
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indices.size_hint()
    }
}

impl DoubleEndedIterator for PreferenceIter<'_> {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        self.indices.next_back().map(|&n| &self.nodes[n as usize])
    }
}

impl ExactSizeIterator for PreferenceIter<'_> {}

impl FusedIterator for PreferenceIter<'_> {}
