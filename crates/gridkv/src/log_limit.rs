//! Rate limits for log lines a remote sender can cause one per packet or
//! request (an undecodable membership packet, a refused write): a hostile
//! or broken peer must not be able to flood the log.
//!
//! Each such site owns a `static` [`LogLimit`]: at most one line per
//! interval gets through, and that line carries the count of lines held
//! back since the previous one (`suppressed`), so nothing goes unseen.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The interval of every rate-limited site.
pub(crate) const EVERY: Duration = Duration::from_secs(10);

/// One log site's limit: at most one line per `interval`.
#[derive(Debug)]
pub(crate) struct LogLimit {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// When the last line got through.
    last: Option<Instant>,
    /// Lines held back since.
    suppressed: u64,
}

impl LogLimit {
    /// A limit of one line per `interval`, for a `static`.
    pub(crate) const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line may be logged now: `Some(n)` with the `n` lines held
    /// back since the last one, or `None` (counted) to hold this one back.
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let due = state
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            state.last = Some(now);
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed = state.suppressed.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_then_the_count_of_those_held_back() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.allow_at(t0), Some(0));
        for i in 1..=1_000 {
            assert_eq!(limit.allow_at(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(9)), None);
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(10)), Some(1_001));
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(25)), Some(1));
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(40)), Some(0));
    }
}
