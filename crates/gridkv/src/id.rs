//! Node identity: who a node is ([`NodeId`]) and which start of it is
//! running ([`Generation`]).
//!
//! A `NodeId` is chosen by the operator (`--id node-1`) and stays the same
//! across restarts; it names the node in membership, in the handshake, on the
//! ring and in every version it writes. A `Generation` is picked anew at every
//! start, so that two runs of the same node are never confused: a restarted
//! node's member entry supersedes the old one, and the versions it issues
//! never equal versions issued by its previous run.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Domain separator for [`NodeId::tag`], so that a node id's tag never
/// equals the ring hash of a key spelled the same way.
const TAG_SEED: u64 = 0x6772_6964_6b76_4944; // "gridkvID"

/// The identity of a node: a short operator-chosen name, stored inline.
///
/// `NodeId` is `Copy` (64 bytes, no heap), compares in O(1) in the common
/// case (a precomputed 64-bit tag is checked before the bytes), and orders by
/// its bytes, so every process sorts a set of ids the same way.
///
/// Valid ids are 1 to [`NodeId::MAX_LEN`] bytes of UTF-8 with no whitespace
/// or control characters, e.g. `node-1`, `cache-a.eu-west`, `10.0.0.7:7946`.
///
/// # Examples
///
/// ```
/// use gridkv::NodeId;
///
/// let a: NodeId = "node-1".parse()?;
/// let b = NodeId::new("node-2")?;
/// assert_eq!(a.as_str(), "node-1");
/// assert!(a < b);
/// assert!(NodeId::new("").is_err());
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
#[derive(Clone, Copy)]
pub struct NodeId {
    tag: u64,
    len: u8,
    bytes: [u8; NodeId::MAX_LEN],
}

/// Why a string is not a valid [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// The id is the empty string.
    #[error("node id is empty")]
    Empty,
    /// The id is longer than [`NodeId::MAX_LEN`] bytes.
    #[error("node id is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// Length of the rejected id in bytes.
        len: usize,
        /// The maximum length, [`NodeId::MAX_LEN`].
        max: usize,
    },
    /// The id contains whitespace or a control character.
    #[error("node id contains the invalid character {ch:?}")]
    InvalidChar {
        /// The first offending character.
        ch: char,
    },
}

impl NodeId {
    /// Longest id, in bytes. Chosen so that a `NodeId` is exactly 64 bytes.
    pub const MAX_LEN: usize = 55;

    /// Builds an id from an operator-supplied name, validating it.
    pub fn new(name: &str) -> Result<Self, NodeIdError> {
        if name.is_empty() {
            return Err(NodeIdError::Empty);
        }
        if name.len() > Self::MAX_LEN {
            return Err(NodeIdError::TooLong {
                len: name.len(),
                max: Self::MAX_LEN,
            });
        }
        if let Some(ch) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(NodeIdError::InvalidChar { ch });
        }
        let mut bytes = [0u8; Self::MAX_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Self {
            tag: xxh3_64_with_seed(name.as_bytes(), TAG_SEED),
            len: name.len() as u8,
            bytes,
        })
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ever built from a `&str` in `new`, so the bytes are valid UTF-8.
        std::str::from_utf8(self.as_bytes()).expect("NodeId holds valid UTF-8")
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// A 64-bit hash of the id, identical in every process and release.
    ///
    /// Versions carry this tag (not the whole id) as their tie-break, which
    /// keeps a write's version at 24 bytes. Two distinct ids
    /// share a tag with probability 2^-64 per pair; membership refuses a
    /// second id whose tag equals a member's, so the tie-break stays total.
    pub fn tag(&self) -> u64 {
        self.tag
    }
}

impl PartialEq for NodeId {
    fn eq(&self, other: &Self) -> bool {
        self.tag == other.tag && self.as_bytes() == other.as_bytes()
    }
}

impl Eq for NodeId {}

impl std::hash::Hash for NodeId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.tag);
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:?})", self.as_str())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for NodeId {
    type Error = NodeIdError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

/// Which start ("incarnation of the process") of a node this is.
///
/// Picked once per start from the wall clock in microseconds, so a restarted
/// node has a larger generation than its previous run unless the clock went
/// backwards by more than the restart took. Membership uses it to tell a
/// restart from a stale entry; versions use it as the last tie-break so a
/// restarted node never issues a version equal to one from a previous run,
/// even if its clock now reads earlier.
///
/// # Examples
///
/// ```
/// use gridkv::Generation;
///
/// let first = Generation::new(1);
/// let later = Generation::now();
/// assert!(later > first);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Generation(u64);

impl Generation {
    /// A generation with an explicit value (tests, simulations, restores).
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// A fresh generation from the current wall clock (microseconds since
    /// the Unix epoch).
    pub fn now() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Self(micros)
    }

    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_compact_and_copy() {
        assert_eq!(std::mem::size_of::<NodeId>(), 64);
        let a = NodeId::new("n1").unwrap();
        let b = a;
        assert_eq!(a, b);
    }

    #[test]
    fn validation_errors_are_typed() {
        assert_eq!(NodeId::new(""), Err(NodeIdError::Empty));
        let long = "x".repeat(NodeId::MAX_LEN + 1);
        assert_eq!(
            NodeId::new(&long),
            Err(NodeIdError::TooLong {
                len: NodeId::MAX_LEN + 1,
                max: NodeId::MAX_LEN
            })
        );
        assert!(NodeId::new(&"x".repeat(NodeId::MAX_LEN)).is_ok());
        assert_eq!(
            NodeId::new("a b"),
            Err(NodeIdError::InvalidChar { ch: ' ' })
        );
        assert_eq!(
            NodeId::new("a\u{7}"),
            Err(NodeIdError::InvalidChar { ch: '\u{7}' })
        );
        assert_eq!(NodeId::new("nœud-1").unwrap().as_str(), "nœud-1");
    }

    #[test]
    fn equality_and_order_follow_the_bytes() {
        let a = NodeId::new("a").unwrap();
        let ab = NodeId::new("ab").unwrap();
        let b = NodeId::new("b").unwrap();
        assert!(a < ab && ab < b);
        assert_ne!(a, ab);
        assert_eq!(a, NodeId::new("a").unwrap());
    }

    #[test]
    fn tag_is_stable_across_processes() {
        // A fixed vector: changing the tag function would change every
        // version's tie-break and must be a deliberate, versioned change.
        assert_eq!(NodeId::new("node-1").unwrap().tag(), 0xaa63_7f7a_c6fb_40f1);
        assert_ne!(
            NodeId::new("node-1").unwrap().tag(),
            NodeId::new("node-2").unwrap().tag()
        );
    }
}
