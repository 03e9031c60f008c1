//! A coarse clock for expiry checks: one atomic load per read, no syscall.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::hlc::Clock;

/// Wall-clock milliseconds cached in an atomic and refreshed by
/// [`CoarseClock::tick`].
///
/// Reads ([`CoarseClock::now_ms`]) never call the operating system; the
/// owner of the store (the node's maintenance task, or a test driving
/// virtual time) calls `tick` periodically, and expiry is exact to within
/// that period. The cached time never goes backwards, so a value that has
/// expired stays expired even if the wall clock is stepped back.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use gridkv::hlc::ManualClock;
/// use gridkv::store::CoarseClock;
///
/// let source = Arc::new(ManualClock::new(1_000));
/// let coarse = CoarseClock::new(source.clone());
/// source.set(2_000);
/// assert_eq!(coarse.now_ms(), 1_000); // not refreshed yet
/// assert_eq!(coarse.tick(), 2_000);
/// source.set(1_500); // the wall clock steps back
/// assert_eq!(coarse.tick(), 2_000);
/// ```
#[derive(Debug)]
pub struct CoarseClock {
    source: Arc<dyn Clock>,
    cached: AtomicU64,
}

impl CoarseClock {
    /// A coarse view of `source`, read once now.
    pub fn new(source: Arc<dyn Clock>) -> Self {
        let now = source.now_ms();
        Self {
            source,
            cached: AtomicU64::new(now),
        }
    }

    /// The cached time in milliseconds since the Unix epoch.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.cached.load(Ordering::Relaxed)
    }

    /// Reads the source and returns the (monotonic) cached time.
    pub fn tick(&self) -> u64 {
        let now = self.source.now_ms();
        self.cached.fetch_max(now, Ordering::Relaxed).max(now)
    }

    /// The underlying clock.
    pub fn source(&self) -> &Arc<dyn Clock> {
        &self.source
    }
}
