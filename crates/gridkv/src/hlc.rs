//! Hybrid Logical Clock: versions that follow wall time, respect causality,
//! and never repeat.
//!
//! A [`Timestamp`] packs physical milliseconds since the Unix epoch into its
//! high 48 bits and a logical counter into its low 16 bits, so comparing two
//! timestamps is comparing two `u64`s. A [`Version`] adds the writer's
//! [`NodeId`] tag and [`Generation`], which makes the versions of any two
//! writes in the cluster totally ordered: last-write-wins needs nothing else.
//!
//! The clock source is a [`Clock`] trait object, so tests and simulations
//! run the same code on virtual time ([`ManualClock`]).
//!
//! A node stamps in the **cluster's time**: its wall clock minus its
//! offset from the median of the members it reaches, as the clock monitor
//! measured it ([`Hlc::set_offset`]; 0 until measured). The drift guard
//! compares remote timestamps with that time, not with the local clock:
//! a node 3 s slow accepts a write stamped by one 3 s fast, since both are
//! within the bound of the cluster's middle.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::id::{Generation, NodeId};

/// A source of wall-clock time in milliseconds since the Unix epoch.
///
/// Implementations must be cheap: the HLC reads it on every `now()`.
///
/// # Examples
///
/// A clock running a fixed offset ahead of the system's, to test skew:
///
/// ```
/// use gridkv::hlc::{Clock, SystemClock};
///
/// #[derive(Debug)]
/// struct Skewed(u64);
///
/// impl Clock for Skewed {
///     fn now_ms(&self) -> u64 {
///         SystemClock.now_ms() + self.0
///     }
/// }
///
/// assert!(Skewed(2_000).now_ms() >= SystemClock.now_ms() + 1_999);
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch. May jump backwards or forwards;
    /// the HLC stays monotonic regardless.
    fn now_ms(&self) -> u64;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// The operating system's wall clock read at the kernel's tick resolution
/// (1–4 ms on Linux, `CLOCK_REALTIME_COARSE`), about four times cheaper
/// than [`SystemClock`]: the clock nodes stamp versions with.
///
/// An HLC needs no finer physical time: within one tick its logical counter
/// orders events (65,536 per millisecond before it borrows from the next),
/// and causality and monotonicity never depend on the resolution. Other
/// platforms fall back to [`SystemClock`].
///
/// # Examples
///
/// ```
/// use gridkv::hlc::{Clock, CoarseSystemClock, SystemClock};
///
/// let coarse = CoarseSystemClock.now_ms();
/// let precise = SystemClock.now_ms();
/// assert!(precise.abs_diff(coarse) < 1_000);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct CoarseSystemClock;

impl Clock for CoarseSystemClock {
    fn now_ms(&self) -> u64 {
        #[cfg(target_os = "linux")]
        {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `clock_gettime` only writes the `timespec` we own and
            // pass by a valid pointer; the clock id is a Linux constant.
            let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
            if rc == 0 && ts.tv_sec >= 0 {
                return ts.tv_sec as u64 * 1_000 + ts.tv_nsec as u64 / 1_000_000;
            }
        }
        SystemClock.now_ms()
    }
}

/// A virtual clock that moves only when told to: for tests and simulations.
///
/// # Examples
///
/// ```
/// use gridkv::hlc::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_000);
/// clock.advance(std::time::Duration::from_millis(5));
/// assert_eq!(clock.now_ms(), 1_005);
/// clock.set(10); // jumps backwards are allowed, as on a real machine
/// assert_eq!(clock.now_ms(), 10);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `ms` milliseconds since the epoch.
    pub fn new(ms: u64) -> Self {
        Self(AtomicU64::new(ms))
    }

    /// Sets the reading (forwards or backwards).
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the reading forwards.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// An HLC timestamp: 48 bits of physical milliseconds, 16 bits of counter.
///
/// # Examples
///
/// ```
/// use gridkv::hlc::Timestamp;
///
/// let t = Timestamp::new(1_700_000_000_000, 3);
/// assert_eq!(t.physical_ms(), 1_700_000_000_000);
/// assert_eq!(t.logical(), 3);
/// assert!(Timestamp::new(5, 0) > Timestamp::new(4, u16::MAX));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// Bits of the logical counter.
    pub const LOGICAL_BITS: u32 = 16;
    /// Largest physical time representable (year 10889).
    pub const MAX_PHYSICAL_MS: u64 = (1 << (64 - Self::LOGICAL_BITS)) - 1;
    /// The smallest timestamp; older than any real write.
    pub const ZERO: Timestamp = Timestamp(0);

    /// Packs a physical time and a counter. Physical bits above 48 are
    /// dropped.
    pub const fn new(physical_ms: u64, logical: u16) -> Self {
        Self(((physical_ms & Self::MAX_PHYSICAL_MS) << Self::LOGICAL_BITS) | logical as u64)
    }

    /// Rebuilds a timestamp from [`Timestamp::as_u64`] (wire decoding).
    pub const fn from_u64(raw: u64) -> Self {
        Self(raw)
    }

    /// The packed representation.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The physical part, in milliseconds since the Unix epoch.
    pub const fn physical_ms(self) -> u64 {
        self.0 >> Self::LOGICAL_BITS
    }

    /// The logical counter.
    pub const fn logical(self) -> u16 {
        self.0 as u16
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.physical_ms(), self.logical())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The version of one write: when (HLC) and by whom (node tag, generation).
///
/// Ordered by timestamp, then writer tag, then generation, so the versions
/// of two different writes are never equal and every node orders them the
/// same way. A version fits in 24 bytes.
///
/// # Examples
///
/// ```
/// use gridkv::hlc::{Timestamp, Version};
/// use gridkv::{Generation, NodeId};
///
/// let a = NodeId::new("a")?;
/// let b = NodeId::new("b")?;
/// let v1 = Version::new(Timestamp::new(10, 0), &a, Generation::new(1));
/// let v2 = Version::new(Timestamp::new(10, 1), &b, Generation::new(1));
/// assert!(v2 > v1);
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    /// When the write was stamped.
    pub ts: Timestamp,
    /// [`NodeId::tag`] of the writer.
    pub writer: u64,
    /// [`Generation`] of the writer when it stamped the write.
    pub generation: Generation,
}

impl Version {
    /// The smallest version; older than any real write.
    pub const ZERO: Version = Version {
        ts: Timestamp::ZERO,
        writer: 0,
        generation: Generation::new(0),
    };

    /// A version stamped at `ts` by `writer` in its `generation`.
    pub fn new(ts: Timestamp, writer: &NodeId, generation: Generation) -> Self {
        Self {
            ts,
            writer: writer.tag(),
            generation,
        }
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v{}@{:016x}/{}",
            self.ts,
            self.writer,
            self.generation.get()
        )
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Errors of [`Hlc::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HlcError {
    /// A remote timestamp is further ahead of the cluster's clock (as this
    /// node estimates it: [`Hlc::cluster_ms`]) than the configured maximum
    /// drift; it was not adopted.
    #[error(
        "remote timestamp {remote} is {ahead_ms} ms ahead of the cluster's clock \
         (maximum drift {max_drift_ms} ms); not adopted"
    )]
    DriftExceeded {
        /// The rejected timestamp.
        remote: Timestamp,
        /// How far ahead of the cluster's clock it was.
        ahead_ms: u64,
        /// The configured maximum.
        max_drift_ms: u64,
    },
}

/// A Hybrid Logical Clock owned by one node.
///
/// Lock-free: `now()` is one clock read and one compare-and-swap. Cheap to
/// share behind an `Arc`.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use gridkv::hlc::{Hlc, ManualClock, Timestamp};
/// use gridkv::{Generation, NodeId};
///
/// let clock = Arc::new(ManualClock::new(1_000));
/// let hlc = Hlc::new(NodeId::new("n1")?, Generation::new(1), clock.clone());
/// let a = hlc.now();
/// let b = hlc.now();
/// assert!(b > a); // strictly monotonic even though the clock did not move
///
/// // A message from a node whose clock is 2 ms ahead: causality is kept.
/// let after = hlc.update(Timestamp::new(1_002, 0)).unwrap();
/// assert!(after > Timestamp::new(1_002, 0));
///
/// // One 10 s ahead exceeds the default 5 s drift guard and is refused.
/// assert!(hlc.update(Timestamp::new(11_000, 0)).is_err());
/// assert_eq!(hlc.drift_rejections(), 1);
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
#[derive(Debug)]
pub struct Hlc {
    clock: Arc<dyn Clock>,
    last: AtomicU64,
    max_drift_ms: u64,
    node: NodeId,
    /// The [`Generation`] versions carry (a node may take a later one as
    /// it joins, before it stamps anything).
    generation: AtomicU64,
    /// This node's wall clock minus the cluster's, in ms.
    offset_ms: AtomicI64,
    drift_rejections: AtomicU64,
}

impl Hlc {
    /// Default bound on how far ahead of the local wall clock a remote
    /// timestamp may be.
    pub const DEFAULT_MAX_DRIFT: Duration = Duration::from_secs(5);

    /// A clock for `node` in its `generation`, reading `clock`.
    pub fn new(node: NodeId, generation: Generation, clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            last: AtomicU64::new(0),
            max_drift_ms: Self::DEFAULT_MAX_DRIFT.as_millis() as u64,
            node,
            generation: AtomicU64::new(generation.get()),
            offset_ms: AtomicI64::new(0),
            drift_rejections: AtomicU64::new(0),
        }
    }

    /// Sets the maximum drift accepted by [`Hlc::update`].
    pub fn with_max_drift(mut self, max_drift: Duration) -> Self {
        self.max_drift_ms = max_drift.as_millis() as u64;
        self
    }

    /// The node this clock stamps versions for.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The generation this clock stamps versions with.
    pub fn generation(&self) -> Generation {
        Generation::new(self.generation.load(Ordering::Acquire))
    }

    /// Stamps versions with `generation` from now on: for a node that
    /// found, as it joined, that the cluster knows a later run of it (its
    /// wall clock stepped back), before it stamps anything.
    pub fn set_generation(&self, generation: Generation) {
        self.generation.store(generation.get(), Ordering::Release);
    }

    /// The maximum drift [`Hlc::update`] accepts, in ms.
    pub fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }

    /// The clock source (the local wall clock, uncorrected).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Sets this node's offset from the cluster's clock, in ms (positive:
    /// this node's wall clock is ahead), as the clock monitor measured it.
    /// From now on the clock stamps, and checks remote timestamps, in the
    /// cluster's time. Timestamps already handed out stay ordered: the
    /// clock never goes back.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use gridkv::hlc::{Hlc, ManualClock, Timestamp};
    /// use gridkv::{Generation, NodeId};
    ///
    /// // This node's clock reads 1_000, the cluster's 4_000.
    /// let hlc = Hlc::new(NodeId::new("slow")?, Generation::new(1), Arc::new(ManualClock::new(1_000)));
    /// assert!(hlc.update(Timestamp::new(8_000, 0)).is_err()); // 7 s ahead of its clock
    /// hlc.set_offset(-3_000);
    /// assert_eq!(hlc.cluster_ms(), 4_000);
    /// assert!(hlc.update(Timestamp::new(8_000, 0)).is_ok()); // 4 s ahead of the cluster's
    /// # Ok::<(), gridkv::NodeIdError>(())
    /// ```
    pub fn set_offset(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    /// This node's offset from the cluster's clock (see [`Hlc::set_offset`]).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// The cluster's time as this node estimates it: its wall clock minus
    /// its offset, in ms since the Unix epoch.
    pub fn cluster_ms(&self) -> u64 {
        let wall = self.clock.now_ms() as i128;
        (wall - self.offset_ms() as i128).clamp(0, Timestamp::MAX_PHYSICAL_MS as i128) as u64
    }

    /// A timestamp strictly greater than every one this clock returned
    /// before, and at least the cluster's clock ([`Hlc::cluster_ms`]).
    ///
    /// If the wall clock went backwards, the counter advances instead; a full
    /// counter carries into the physical part (the clock runs ahead of wall
    /// time by a millisecond rather than wrapping).
    pub fn now(&self) -> Timestamp {
        let wall = Timestamp::new(self.cluster_ms(), 0).as_u64();
        self.advance_to(wall)
    }

    /// A fresh [`Version`] for a local write.
    pub fn new_version(&self) -> Version {
        Version {
            ts: self.now(),
            writer: self.node.tag(),
            generation: self.generation(),
        }
    }

    /// Merges a timestamp received from another node and returns a local
    /// timestamp greater than both it and every earlier local one.
    ///
    /// A remote timestamp more than the maximum drift ahead of the
    /// cluster's clock ([`Hlc::cluster_ms`]) is refused with
    /// [`HlcError::DriftExceeded`], counted, and leaves the clock
    /// unchanged: one node with a wild clock must not drag every other
    /// node's versions into the future.
    pub fn update(&self, remote: Timestamp) -> Result<Timestamp, HlcError> {
        let wall_ms = self.check(remote)?;
        // Strictly after the remote event (receive happens after send), and
        // never behind the wall clock.
        let floor = Timestamp::new(wall_ms, 0).as_u64().max(remote.as_u64() + 1);
        Ok(self.advance_to(floor))
    }

    /// Merges a timestamp received from another node, checked as
    /// [`Hlc::update`] checks it, without reading the local clock into
    /// the result: the clock moves past `remote`, and no further.
    ///
    /// What a replica does with the versions it stores. A node whose wall
    /// clock is far off (before the clock monitor has corrected it, or
    /// while it is fenced) thereby never carries its own wrong reading
    /// into its clock just by storing others' writes; its next `now()`
    /// still reads the clock, as any local event does.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use gridkv::hlc::{Hlc, ManualClock, Timestamp};
    /// use gridkv::{Generation, NodeId};
    ///
    /// let hlc = Hlc::new(NodeId::new("r")?, Generation::new(1), Arc::new(ManualClock::new(9_000)));
    /// hlc.observe(Timestamp::new(5_000, 0)).unwrap();
    /// assert_eq!(hlc.last(), Timestamp::new(5_000, 1));
    /// assert!(hlc.now() >= Timestamp::new(9_000, 0));
    /// # Ok::<(), gridkv::NodeIdError>(())
    /// ```
    pub fn observe(&self, remote: Timestamp) -> Result<(), HlcError> {
        self.check(remote)?;
        self.advance_to(remote.as_u64() + 1);
        Ok(())
    }

    /// A timestamp no lower than any this clock handed out or merged, nor
    /// than the cluster's clock now, read without advancing the clock:
    /// what a node vouches for in its membership packets.
    pub fn floor(&self) -> Timestamp {
        self.last().max(Timestamp::new(self.cluster_ms(), 0))
    }

    /// The drift guard: `remote` is at most the maximum drift ahead of the
    /// cluster's clock, which is returned.
    fn check(&self, remote: Timestamp) -> Result<u64, HlcError> {
        let wall_ms = self.cluster_ms();
        let remote_ms = remote.physical_ms();
        if remote_ms > wall_ms.saturating_add(self.max_drift_ms) {
            self.drift_rejections.fetch_add(1, Ordering::Relaxed);
            return Err(HlcError::DriftExceeded {
                remote,
                ahead_ms: remote_ms - wall_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        Ok(wall_ms)
    }

    /// How many remote timestamps [`Hlc::update`] refused.
    pub fn drift_rejections(&self) -> u64 {
        self.drift_rejections.load(Ordering::Relaxed)
    }

    /// The last timestamp handed out (or merged), without advancing.
    pub fn last(&self) -> Timestamp {
        Timestamp(self.last.load(Ordering::Acquire))
    }

    /// Moves `last` to `max(floor, last + 1)` and returns it. With the packed
    /// representation, `last + 1` on a full counter carries into the
    /// physical milliseconds, which is exactly the overflow rule we want.
    fn advance_to(&self, floor: u64) -> Timestamp {
        let mut last = self.last.load(Ordering::Acquire);
        loop {
            let next = if floor > last { floor } else { last + 1 };
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Timestamp(next),
                Err(actual) => last = actual,
            }
        }
    }
}
