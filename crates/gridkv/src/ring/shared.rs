//! The current ring of a node, replaced atomically when membership changes.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::Ring;

/// The ring a node currently places keys with.
///
/// Readers (every `get` and `set`) call [`load`](Self::load), which takes no
/// lock and does not contend with other readers or with the writer; the
/// writer (membership, when the ring's members change) builds a new [`Ring`]
/// off to the side and publishes it with [`store`](Self::store). A reader
/// sees either the old or the new snapshot, never a mix, and keeps the one
/// it loaded for as long as it holds it.
///
/// There is meant to be one writer: `store` does not compare versions, so
/// two racing writers could publish an older ring after a newer one.
///
/// # Examples
///
/// ```
/// use gridkv::ring::{Ring, SharedRing};
/// use gridkv::NodeId;
///
/// let a = NodeId::new("a").unwrap();
/// let b = NodeId::new("b").unwrap();
/// let shared = SharedRing::new(Ring::new(1, [a])?);
///
/// let before = shared.load_full();
/// shared.store(Ring::new(2, [a, b])?);
/// assert_eq!(shared.load().version(), 2);
/// assert_eq!(before.version(), 1); // an old snapshot stays valid
/// # Ok::<(), gridkv::ring::RingError>(())
/// ```
pub struct SharedRing {
    current: ArcSwap<Ring>,
}

impl SharedRing {
    /// Starts with `ring` as the current snapshot.
    pub fn new(ring: impl Into<Arc<Ring>>) -> Self {
        Self {
            current: ArcSwap::new(ring.into()),
        }
    }

    /// The current snapshot, for a short use such as placing one request.
    ///
    /// Cheaper than [`load_full`](Self::load_full) (usually no reference
    /// count is touched), but a thread should hold only a few guards at a
    /// time and should not keep one across an `.await` or a long
    /// computation: use `load_full` for that.
    #[inline]
    pub fn load(&self) -> RingGuard {
        RingGuard(self.current.load())
    }

    /// The current snapshot as an owned `Arc`, to keep for as long as needed.
    pub fn load_full(&self) -> Arc<Ring> {
        self.current.load_full()
    }

    /// Publishes `ring` as the current snapshot. Readers that loaded the
    /// previous one keep it until they drop it.
    pub fn store(&self, ring: impl Into<Arc<Ring>>) {
        self.current.store(ring.into());
    }
}

impl fmt::Debug for SharedRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedRing").field(&*self.load()).finish()
    }
}

/// A snapshot loaded from a [`SharedRing`]; dereferences to the [`Ring`].
///
/// Wraps the `arc_swap` guard so that type does not leak into GridKV's API.
///
/// # Examples
///
/// ```
/// use gridkv::keyspace::key_hash;
/// use gridkv::ring::{Ring, SharedRing};
/// use gridkv::NodeId;
///
/// let a = NodeId::new("a").unwrap();
/// let shared = SharedRing::new(Ring::new(1, [a])?);
/// let ring = shared.load();
/// assert_eq!(ring.primary(key_hash(b"k")), Some(&a));
/// # Ok::<(), gridkv::ring::RingError>(())
/// ```
pub struct RingGuard(Guard<Arc<Ring>>);

impl Deref for RingGuard {
    type Target = Ring;

    #[inline]
    fn deref(&self) -> &Ring {
        &self.0
    }
}

impl fmt::Debug for RingGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
