//! Per-peer round-trip time estimation and adaptive request timeouts.
//!
//! An [`RttEstimator`] turns the round-trip times a node measures to one peer
//! into a smoothed RTT, an RTT variance and a request timeout, computed
//! exactly as TCP computes its retransmission timeout (RFC 6298) and clamped
//! between a configurable floor and ceiling ([`RttConfig`]).
//!
//! It is a plain state machine: it never reads a clock. The transport
//! measures each answered request and calls [`RttEstimator::observe`]; when a
//! request times out it calls [`RttEstimator::backoff`]. The same code
//! therefore runs on real time and under a deterministic simulation.

use std::time::Duration;

use crate::config_error::ConfigError;

/// The clock granularity `G` of RFC 6298: the estimator counts in whole
/// microseconds, so the variance term never adds less than one of them.
const GRANULARITY_US: u64 = 1;

/// SRTT and RTTVAR are kept in eighths of a microsecond, the fixed-point
/// trick of BSD and Linux TCP: with α = 1/8 and β = 1/4, whole-microsecond
/// integers would truncate every small correction to zero and leave SRTT
/// stuck up to 7 µs away from a steady RTT. Three fraction bits make the
/// divisions by 8 and 4 lose nothing that the reported microseconds show.
const FRACTION: u64 = 8;

/// Limits and starting point of the request timeout.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use gridkv::net::rtt::RttConfig;
///
/// let lan = RttConfig {
///     floor: Duration::from_millis(5),
///     ..RttConfig::default()
/// };
/// assert!(lan.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttConfig {
    /// The shortest timeout ever handed out, however fast the peer answers:
    /// it absorbs scheduler and allocator hiccups that no RTT sample shows.
    /// Must be greater than zero. Default 10 ms.
    pub floor: Duration,
    /// The longest timeout ever handed out, after backoffs included, so a
    /// request to a vanished peer fails in bounded time. Default 2 s.
    pub ceiling: Duration,
    /// The timeout before the first sample, when nothing is known about the
    /// peer. Must lie in `floor..=ceiling`. Default 500 ms.
    pub initial: Duration,
}

impl Default for RttConfig {
    /// Defaults sized for a cluster on one LAN or datacenter.
    fn default() -> Self {
        Self {
            floor: Duration::from_millis(10),
            ceiling: Duration::from_secs(2),
            initial: Duration::from_millis(500),
        }
    }
}

impl RttConfig {
    /// Checks `0 < floor <= initial <= ceiling`, naming the first field that
    /// breaks it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::net::rtt::RttConfig;
    ///
    /// let cfg = RttConfig { ceiling: Duration::from_millis(100), ..RttConfig::default() };
    /// assert_eq!(cfg.validate().unwrap_err().field, "ceiling");
    ///
    /// let bad = RttConfig { floor: Duration::ZERO, ..RttConfig::default() };
    /// let err = bad.validate().unwrap_err();
    /// assert_eq!((err.section, err.field), ("rtt", "floor"));
    /// assert!(err.to_string().contains("`floor`"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: String| Err(ConfigError::new("rtt", field, reason));
        if self.floor.is_zero() {
            return err("floor", "must be greater than zero".into());
        }
        if self.initial < self.floor {
            return err(
                "initial",
                format!("{:?} is below the floor, {:?}", self.initial, self.floor),
            );
        }
        if self.ceiling < self.initial {
            return err(
                "ceiling",
                format!("{:?} is below initial, {:?}", self.ceiling, self.initial),
            );
        }
        Ok(())
    }
}

/// SRTT and RTTVAR, in eighths of a microsecond (see [`FRACTION`]).
#[derive(Debug, Clone, Copy)]
struct Smoothed {
    srtt: u64,
    rttvar: u64,
}

/// Smoothed RTT, RTT variance and request timeout for one peer (RFC 6298).
///
/// The first sample `R` sets `SRTT = R` and `RTTVAR = R/2`; each later one
/// sets `RTTVAR = 3/4·RTTVAR + 1/4·|SRTT − R|`, then `SRTT = 7/8·SRTT +
/// 1/8·R`. The timeout is `SRTT + max(G, 4·RTTVAR)` with `G` = 1 µs,
/// clamped to `floor..=ceiling`; before any sample it is `initial`.
///
/// Arithmetic is on integer microseconds (with three fraction bits), never
/// floats: the result is the same on every platform, so a simulation replays
/// identically, and saturating operations mean that an absurd sample (a
/// stalled process, a bogus measurement, `Duration::MAX`) yields the ceiling
/// instead of a panic or a wrapped-around tiny timeout. Samples saturate at
/// about 73,000 years.
///
/// Each answer is matched to its request by id, so a sample is never
/// ambiguous and the half of Karn's algorithm that discards samples from
/// retransmissions has nothing to do; [`backoff`](Self::backoff) is the other
/// half.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use gridkv::net::rtt::{RttConfig, RttEstimator};
///
/// let mut rtt = RttEstimator::new(RttConfig::default())?;
/// assert_eq!(rtt.timeout(), Duration::from_millis(500)); // `initial`
/// rtt.observe(Duration::from_millis(4));
/// // 4 ms + 4 × 2 ms = 12 ms, above the 10 ms floor.
/// assert_eq!(rtt.timeout(), Duration::from_millis(12));
/// # Ok::<(), gridkv::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RttEstimator {
    config: RttConfig,
    smoothed: Option<Smoothed>,
    samples: u64,
    /// The timeout after consecutive [`backoff`](Self::backoff)s; `None`
    /// until a request times out and again after the next sample.
    backed_off: Option<Duration>,
}

impl RttEstimator {
    /// An estimator with no samples yet, after validating `config`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::net::rtt::{RttConfig, RttEstimator};
    ///
    /// assert!(RttEstimator::new(RttConfig::default()).is_ok());
    /// let bad = RttConfig { initial: Duration::from_millis(1), ..RttConfig::default() };
    /// assert_eq!(RttEstimator::new(bad).unwrap_err().field, "initial");
    /// ```
    pub fn new(config: RttConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            smoothed: None,
            samples: 0,
            backed_off: None,
        })
    }

    /// Feeds the round-trip time of one answered request. It also ends any
    /// [`backoff`](Self::backoff): the peer answers again.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::net::rtt::{RttConfig, RttEstimator};
    ///
    /// let mut rtt = RttEstimator::new(RttConfig::default())?;
    /// rtt.observe(Duration::from_millis(100));
    /// rtt.observe(Duration::from_millis(200));
    /// assert_eq!(rtt.srtt(), Some(Duration::from_micros(112_500)));
    /// assert_eq!(rtt.rttvar(), Some(Duration::from_micros(62_500)));
    /// # Ok::<(), gridkv::ConfigError>(())
    /// ```
    pub fn observe(&mut self, sample: Duration) {
        let r = u64::try_from(sample.as_micros().saturating_mul(u128::from(FRACTION)))
            .unwrap_or(u64::MAX);
        self.smoothed = Some(match self.smoothed {
            None => Smoothed {
                srtt: r,
                rttvar: r / 2,
            },
            // RFC 6298 updates RTTVAR first, with the old SRTT. Each sum is
            // a weighted mean of in-range values, so saturation only guards
            // the rounding at the very top of the range.
            Some(Smoothed { srtt, rttvar }) => Smoothed {
                rttvar: (rttvar - rttvar / 4).saturating_add(srtt.abs_diff(r) / 4),
                srtt: (srtt - srtt / 8).saturating_add(r / 8),
            },
        });
        self.samples = self.samples.saturating_add(1);
        self.backed_off = None;
    }

    /// The smoothed RTT in whole microseconds, or `None` before the first
    /// sample.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::net::rtt::{RttConfig, RttEstimator};
    ///
    /// let mut rtt = RttEstimator::new(RttConfig::default())?;
    /// assert_eq!(rtt.srtt(), None);
    /// rtt.observe(Duration::from_micros(250));
    /// assert_eq!(rtt.srtt(), Some(Duration::from_micros(250)));
    /// # Ok::<(), gridkv::ConfigError>(())
    /// ```
    pub fn srtt(&self) -> Option<Duration> {
        self.smoothed.map(|s| micros(s.srtt))
    }

    /// The RTT variance (mean deviation) in whole microseconds, or `None`
    /// before the first sample.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::net::rtt::{RttConfig, RttEstimator};
    ///
    /// let mut rtt = RttEstimator::new(RttConfig::default())?;
    /// assert_eq!(rtt.rttvar(), None);
    /// rtt.observe(Duration::from_micros(250));
    /// assert_eq!(rtt.rttvar(), Some(Duration::from_micros(125)));
    /// # Ok::<(), gridkv::ConfigError>(())
    /// ```
    pub fn rttvar(&self) -> Option<Duration> {
        self.smoothed.map(|s| micros(s.rttvar))
    }

    /// The timeout for the next request to this peer, always within
    /// `floor..=ceiling`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::net::rtt::{RttConfig, RttEstimator};
    ///
    /// let mut rtt = RttEstimator::new(RttConfig::default())?;
    /// rtt.observe(Duration::from_micros(30)); // loopback-fast
    /// assert_eq!(rtt.timeout(), Duration::from_millis(10)); // the floor
    /// rtt.observe(Duration::from_secs(60)); // a stalled peer
    /// assert_eq!(rtt.timeout(), Duration::from_secs(2)); // the ceiling
    /// # Ok::<(), gridkv::ConfigError>(())
    /// ```
    pub fn timeout(&self) -> Duration {
        if let Some(t) = self.backed_off {
            return t;
        }
        match self.smoothed {
            None => self.config.initial,
            Some(s) => micros(rto(s)).clamp(self.config.floor, self.config.ceiling),
        }
    }

    /// How many samples have been observed (saturating).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::net::rtt::{RttConfig, RttEstimator};
    ///
    /// let mut rtt = RttEstimator::new(RttConfig::default())?;
    /// rtt.observe(Duration::from_millis(1));
    /// rtt.observe(Duration::from_millis(2));
    /// assert_eq!(rtt.samples(), 2);
    /// # Ok::<(), gridkv::ConfigError>(())
    /// ```
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Records that a request timed out: doubles the timeout, up to the
    /// ceiling (Karn's backoff, RFC 6298 §5.5). A timeout says the estimate
    /// is too low, but no sample says by how much, so each further timeout
    /// doubles again; the next [`observe`](Self::observe) returns to the
    /// estimate.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::net::rtt::{RttConfig, RttEstimator};
    ///
    /// let mut rtt = RttEstimator::new(RttConfig::default())?;
    /// rtt.observe(Duration::from_millis(20)); // timeout 60 ms
    /// rtt.backoff();
    /// assert_eq!(rtt.timeout(), Duration::from_millis(120));
    /// rtt.backoff();
    /// assert_eq!(rtt.timeout(), Duration::from_millis(240));
    /// rtt.observe(Duration::from_millis(20));
    /// assert!(rtt.timeout() < Duration::from_millis(120));
    /// # Ok::<(), gridkv::ConfigError>(())
    /// ```
    pub fn backoff(&mut self) {
        self.backed_off = Some(self.timeout().saturating_mul(2).min(self.config.ceiling));
    }

    /// The estimate as it stands, for reports.
    pub(crate) fn snapshot(&self) -> RttSnapshot {
        RttSnapshot {
            srtt: self.srtt(),
            rttvar: self.rttvar(),
            timeout: self.timeout(),
            samples: self.samples(),
        }
    }
}

/// What an RTT estimate says now ([`Transport::rtt`](super::Transport::rtt)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttSnapshot {
    /// Smoothed RTT; `None` before the first sample.
    pub srtt: Option<Duration>,
    /// RTT variance; `None` before the first sample.
    pub rttvar: Option<Duration>,
    /// The timeout the next request gets.
    pub timeout: Duration,
    /// Samples taken so far.
    pub samples: u64,
}

/// `SRTT + max(G, 4·RTTVAR)` in eighths of a microsecond, saturating.
fn rto(s: Smoothed) -> u64 {
    let spread = s.rttvar.saturating_mul(4).max(GRANULARITY_US * FRACTION);
    s.srtt.saturating_add(spread)
}

/// A fixed-point value in eighths of a microsecond, as whole microseconds.
fn micros(eighths: u64) -> Duration {
    Duration::from_micros(eighths / FRACTION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn estimator(floor: Duration, initial: Duration, ceiling: Duration) -> RttEstimator {
        RttEstimator::new(RttConfig {
            floor,
            ceiling,
            initial,
        })
        .unwrap()
    }

    /// Wide open limits, so tests see the raw RFC 6298 arithmetic.
    fn unclamped() -> RttEstimator {
        estimator(Duration::from_nanos(1), ms(1), Duration::MAX)
    }

    /// Any duration, weighted towards realistic RTTs but reaching
    /// `Duration::MAX` and everything in between.
    fn any_sample() -> impl Strategy<Value = Duration> {
        prop_oneof![
            4 => (0u64..10_000_000).prop_map(Duration::from_micros),
            1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            1 => Just(Duration::MAX),
            1 => Just(Duration::ZERO),
        ]
    }

    /// A valid config with limits anywhere from nanoseconds to
    /// `Duration::MAX`.
    fn any_config() -> impl Strategy<Value = RttConfig> {
        prop::collection::vec(any_sample(), 3).prop_map(|mut d| {
            d.sort();
            RttConfig {
                floor: d[0].max(Duration::from_nanos(1)),
                initial: d[1].max(Duration::from_nanos(1)),
                ceiling: d[2].max(Duration::from_nanos(1)),
            }
        })
    }

    #[derive(Debug, Clone)]
    enum Event {
        Observe(Duration),
        Backoff,
    }

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            3 => any_sample().prop_map(Event::Observe),
            1 => Just(Event::Backoff),
        ]
    }

    #[test]
    fn before_any_sample_the_timeout_is_initial() {
        let rtt = RttEstimator::new(RttConfig::default()).unwrap();
        assert_eq!(rtt.timeout(), RttConfig::default().initial);
        assert_eq!((rtt.srtt(), rtt.rttvar(), rtt.samples()), (None, None, 0));
    }

    #[test]
    fn follows_rfc_6298_arithmetic() {
        let mut rtt = unclamped();
        rtt.observe(ms(100));
        assert_eq!(rtt.srtt(), Some(ms(100)));
        assert_eq!(rtt.rttvar(), Some(ms(50)));
        assert_eq!(rtt.timeout(), ms(300));
        // RTTVAR uses the old SRTT: 3/4·50 + 1/4·|100 − 200| = 62.5 ms;
        // SRTT = 7/8·100 + 1/8·200 = 112.5 ms; RTO = 112.5 + 4·62.5.
        rtt.observe(ms(200));
        assert_eq!(rtt.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(rtt.rttvar(), Some(Duration::from_micros(62_500)));
        assert_eq!(rtt.timeout(), Duration::from_micros(362_500));
        assert_eq!(rtt.samples(), 2);
    }

    #[test]
    fn granularity_keeps_the_timeout_above_a_zero_variance_srtt() {
        let mut rtt = unclamped();
        rtt.observe(Duration::ZERO);
        assert_eq!(rtt.timeout(), Duration::from_micros(1));
    }

    #[test]
    fn timeout_is_clamped_to_floor_and_ceiling() {
        let mut rtt = estimator(ms(10), ms(100), ms(200));
        rtt.observe(Duration::from_micros(20));
        assert_eq!(rtt.timeout(), ms(10));
        rtt.observe(Duration::from_secs(30));
        assert_eq!(rtt.timeout(), ms(200));
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling_and_a_sample_ends_it() {
        let mut rtt = estimator(ms(10), ms(100), ms(1000));
        rtt.backoff();
        assert_eq!(rtt.timeout(), ms(200), "backoff before any sample");
        rtt.observe(ms(50)); // 50 + 4·25 = 150 ms
        assert_eq!(rtt.timeout(), ms(150));
        let doubled: Vec<_> = (0..4)
            .map(|_| {
                rtt.backoff();
                rtt.timeout()
            })
            .collect();
        assert_eq!(doubled, [ms(300), ms(600), ms(1000), ms(1000)]);
        rtt.observe(ms(50));
        assert!(rtt.timeout() < ms(300), "{:?}", rtt.timeout());
    }

    #[test]
    fn a_jittery_peer_gets_a_longer_timeout_than_a_steady_one() {
        let (mut steady, mut jittery) = (unclamped(), unclamped());
        for i in 0..100 {
            steady.observe(ms(10));
            jittery.observe(if i % 2 == 0 { ms(5) } else { ms(15) });
        }
        assert!(jittery.timeout() > steady.timeout() + ms(10));
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(RttConfig::default().validate(), Ok(()));
        let field = |cfg: RttConfig| cfg.validate().unwrap_err().field;
        let d = RttConfig::default();
        assert_eq!(
            field(RttConfig {
                floor: Duration::ZERO,
                ..d
            }),
            "floor"
        );
        assert_eq!(
            field(RttConfig {
                initial: d.floor - Duration::from_nanos(1),
                ..d
            }),
            "initial"
        );
        assert_eq!(
            field(RttConfig {
                ceiling: d.initial - Duration::from_nanos(1),
                ..d
            }),
            "ceiling"
        );
        // The limits may coincide: a fixed timeout.
        assert_eq!(
            RttConfig {
                floor: ms(5),
                initial: ms(5),
                ceiling: ms(5)
            }
            .validate(),
            Ok(())
        );
    }

    proptest! {
        /// Also the "huge samples never panic" property: samples reach
        /// `Duration::MAX`, and overflow checks are on in tests.
        #[test]
        fn timeout_stays_within_floor_and_ceiling(
            config in any_config(),
            events in prop::collection::vec(any_event(), 0..64),
        ) {
            let mut rtt = RttEstimator::new(config).unwrap();
            for event in events {
                match event {
                    Event::Observe(d) => rtt.observe(d),
                    Event::Backoff => rtt.backoff(),
                }
                let t = rtt.timeout();
                prop_assert!(config.floor <= t && t <= config.ceiling, "{t:?} {config:?}");
            }
        }

        #[test]
        fn a_constant_rtt_converges_srtt_to_it_and_rttvar_to_zero(
            warmup in prop::collection::vec(
                (0u64..60_000_000).prop_map(Duration::from_micros), 0..16),
            r_us in 0u64..60_000_000,
        ) {
            let r = Duration::from_micros(r_us);
            let mut rtt = unclamped();
            for d in warmup {
                rtt.observe(d);
            }
            // The error shrinks by 7/8 per sample: 300 samples take 60 s
            // of error below one microsecond.
            for _ in 0..300 {
                rtt.observe(r);
            }
            prop_assert_eq!(rtt.srtt(), Some(r));
            prop_assert_eq!(rtt.rttvar(), Some(Duration::ZERO));
        }

        #[test]
        fn larger_variance_never_lowers_the_timeout(
            config in any_config(),
            srtt: u64,
            var_a: u64,
            var_b: u64,
        ) {
            let at = |rttvar| RttEstimator {
                smoothed: Some(Smoothed { srtt, rttvar }),
                ..RttEstimator::new(config).unwrap()
            }
            .timeout();
            let (lo, hi) = (var_a.min(var_b), var_a.max(var_b));
            prop_assert!(at(lo) <= at(hi));
        }

        #[test]
        fn backoff_never_lowers_the_timeout(
            config in any_config(),
            samples in prop::collection::vec(any_sample(), 0..8),
        ) {
            let mut rtt = RttEstimator::new(config).unwrap();
            for d in samples {
                rtt.observe(d);
            }
            let before = rtt.timeout();
            rtt.backoff();
            prop_assert!(rtt.timeout() >= before);
            prop_assert_eq!(rtt.timeout(), before.saturating_mul(2).min(config.ceiling));
        }
    }
}
