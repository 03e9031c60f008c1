//! Latency histograms of a node's data operations.
//!
//! Each node owns its own histograms (no global registry: several nodes in
//! one process stay apart). Recording is two relaxed atomic adds and a
//! short bucket search; reading takes a [`HistogramSnapshot`], whose
//! buckets are cumulative in the way Prometheus expects, and which can
//! estimate percentiles.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use gridkv::metrics::LatencyHistogram;
//!
//! let h = LatencyHistogram::new();
//! for us in [100, 200, 300, 400, 20_000] {
//!     h.record(Duration::from_micros(us));
//! }
//! let s = h.snapshot();
//! assert_eq!(s.count, 5);
//! assert!(s.quantile(0.5) <= Duration::from_micros(500));
//! assert!(s.quantile(0.99) >= Duration::from_millis(10));
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (the last bucket, above
/// 10 s, is unbounded). Roughly 1-2.5-5 steps from 10 µs to 10 s.
pub const BUCKET_BOUNDS_US: [u64; 19] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

const BUCKETS: usize = BUCKET_BOUNDS_US.len() + 1;

/// A fixed-bucket latency histogram that many tasks record into at once.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one operation that took `elapsed`.
    pub fn record(&self, elapsed: Duration) {
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = BUCKET_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut counts = [0u64; BUCKETS];
        for (c, b) in counts.iter_mut().zip(&self.buckets) {
            *c = b.load(Relaxed);
        }
        HistogramSnapshot {
            count: counts.iter().sum(),
            counts,
            sum: Duration::from_micros(self.sum_us.load(Relaxed)),
        }
    }
}

/// The counts of a [`LatencyHistogram`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistogramSnapshot {
    /// Operations recorded.
    pub count: u64,
    /// Total time of the recorded operations.
    pub sum: Duration,
    counts: [u64; BUCKETS],
}

impl HistogramSnapshot {
    /// `(upper bound, operations at or under it)` for each bucket, ending
    /// with `(None, count)` for the unbounded one: Prometheus's cumulative
    /// `le` buckets.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let mut total = 0;
        self.counts.iter().enumerate().map(move |(i, c)| {
            total += c;
            (
                BUCKET_BOUNDS_US.get(i).map(|&us| Duration::from_micros(us)),
                total,
            )
        })
    }

    /// An estimate of the `q` quantile (0.0 to 1.0), interpolated within
    /// its bucket; zero when nothing was recorded. Answers above the last
    /// bound are reported as that bound.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 && seen + c >= rank {
                let low = if i == 0 { 0 } else { BUCKET_BOUNDS_US[i - 1] };
                let Some(&high) = BUCKET_BOUNDS_US.get(i) else {
                    return Duration::from_micros(low);
                };
                let within = (rank - seen) as f64 / c as f64;
                return Duration::from_micros(low + ((high - low) as f64 * within) as u64);
            }
            seen += c;
        }
        Duration::from_micros(*BUCKET_BOUNDS_US.last().unwrap_or(&0))
    }
}

/// Latencies of one node's data operations as its callers saw them
/// (quorum operations from the call to the answer, errors included).
/// Local reads answered from the store without the network
/// ([`ReadOptions::local`](crate::ReadOptions)) take well under a
/// microsecond and are only counted, in `local_reads`, not timed.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    /// Reads (`get`, `exists`, `ttl`, and the read half of `expire` and
    /// `persist`).
    pub reads: LatencyHistogram,
    /// Writes that set a value (`set`, and the write half of `expire` and
    /// `persist`).
    pub writes: LatencyHistogram,
    /// Deletes.
    pub deletes: LatencyHistogram,
    /// Reads answered by the local fast path.
    pub local_reads: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_take_their_upper_bound_inclusive() {
        let h = LatencyHistogram::new();
        h.record(Duration::from_micros(10));
        h.record(Duration::from_micros(11));
        h.record(Duration::from_secs(60));
        let s = h.snapshot();
        let cum: Vec<_> = s.cumulative().collect();
        assert_eq!(cum[0], (Some(Duration::from_micros(10)), 1));
        assert_eq!(cum[1], (Some(Duration::from_micros(25)), 2));
        assert_eq!(cum.last().unwrap(), &(None, 3));
        assert_eq!(cum[cum.len() - 2].1, 2);
        assert_eq!(s.sum, Duration::from_micros(60_000_021));
    }

    #[test]
    fn quantiles_fall_in_the_right_bucket() {
        let h = LatencyHistogram::new();
        for _ in 0..99 {
            h.record(Duration::from_micros(300));
        }
        h.record(Duration::from_millis(30));
        let s = h.snapshot();
        let p50 = s.quantile(0.5);
        assert!(p50 > Duration::from_micros(250) && p50 <= Duration::from_micros(500));
        assert!(s.quantile(0.99) <= Duration::from_micros(500));
        assert!(s.quantile(1.0) > Duration::from_millis(25));
        assert_eq!(
            LatencyHistogram::new().snapshot().quantile(0.5),
            Duration::ZERO
        );
    }
}
