//! Reconnect delays: exponential backoff with full jitter.
//!
//! When a connection to a peer breaks, the transport asks a [`Backoff`] how
//! long to wait before each dial and resets it once a connection is up
//! again. Randomness comes through the small [`JitterSource`] trait, so a
//! simulation seeded with [`SplitMix64`] replays the same delays, and the
//! library needs no random-number crate.
//!
//! Why full jitter (`delay = uniform(0, min(max, base·multiplierⁿ))`) and
//! not decorrelated jitter (`delay = min(max, uniform(base, previous·3))`):
//! - When a node restarts, every peer loses its connection to it at the same
//!   instant and starts redialling; full jitter spreads those dials evenly
//!   over the whole window, which is what breaks up such a herd.
//! - The window is a function of the attempt count alone, so its growth and
//!   its cap are exact and testable, and the expected delay (half the window)
//!   grows with every attempt until the cap, for any multiplier above 1.
//!   Decorrelated jitter's delay is a random walk whose expected growth
//!   depends on the multiplier and on history.
//! - The first dial after a failure may come almost at once, which is what a
//!   brief blip wants; later windows are wide enough that an early draw
//!   costs little.

use std::time::Duration;

use crate::config_error::ConfigError;
use crate::rng::SplitMix64;

/// A source of uniformly distributed 64-bit random numbers.
///
/// Implement it over whatever generator the host uses; [`SplitMix64`] is
/// provided for seeded, reproducible runs. Seed each node differently (for
/// example from its node id and generation): nodes that draw the same jitter
/// redial in lockstep, which is what jitter is there to prevent.
///
/// # Examples
///
/// ```
/// use gridkv::net::backoff::JitterSource;
///
/// /// A counter: predictable, for a test that wants exact delays.
/// struct Counter(u64);
///
/// impl JitterSource for Counter {
///     fn next_u64(&mut self) -> u64 {
///         self.0 += 1;
///         self.0
///     }
/// }
///
/// assert_eq!(Counter(0).next_u64(), 1);
/// ```
pub trait JitterSource {
    /// The next random number; every value equally likely.
    fn next_u64(&mut self) -> u64;
}

impl JitterSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        SplitMix64::next_u64(self)
    }
}

/// How reconnect delays grow.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use gridkv::net::backoff::BackoffConfig;
///
/// let patient = BackoffConfig {
///     max: Duration::from_millis(500),
///     ..BackoffConfig::default()
/// };
/// assert!(patient.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// The window of the first delay after a reset: that delay is drawn
    /// from `0..=base`. Must be greater than zero. Default 50 ms.
    pub base: Duration,
    /// The widest window, whatever the number of attempts. Keep it well
    /// below the membership suspicion timeout: a peer that comes back (a
    /// restart, a healed partition) must be redialled before membership
    /// would suspect it only because this node was still waiting to dial.
    /// Must be at least `base`. Default 1 s.
    pub max: Duration,
    /// How much the window widens per attempt. Must be finite and greater
    /// than 1. Default 2.
    pub multiplier: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(50),
            max: Duration::from_secs(1),
            multiplier: 2.0,
        }
    }
}

impl BackoffConfig {
    /// Checks every field, naming the first invalid one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::net::backoff::BackoffConfig;
    ///
    /// let cfg = BackoffConfig { max: Duration::from_millis(10), ..BackoffConfig::default() };
    /// assert_eq!(cfg.validate().unwrap_err().field, "max");
    ///
    /// let bad = BackoffConfig { multiplier: 1.0, ..BackoffConfig::default() };
    /// let err = bad.validate().unwrap_err();
    /// assert_eq!((err.section, err.field), ("backoff", "multiplier"));
    /// assert!(err.to_string().contains("`multiplier`"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: String| Err(ConfigError::new("backoff", field, reason));
        if self.base.is_zero() {
            // A zero window would never widen: every redial immediate.
            return err("base", "must be greater than zero".into());
        }
        if self.max < self.base {
            return err(
                "max",
                format!("{:?} is below base, {:?}", self.max, self.base),
            );
        }
        if !(self.multiplier.is_finite() && self.multiplier > 1.0) {
            return err(
                "multiplier",
                format!("{} is not a finite number above 1", self.multiplier),
            );
        }
        Ok(())
    }
}

/// Reconnect delays for one peer: exponential growth, full jitter, a cap.
///
/// The n-th delay since the last [`reset`](Self::reset) (counting from 0)
/// is drawn uniformly from `0..=min(max, base·multiplierⁿ)`. Arithmetic is
/// on integer nanoseconds, saturating at about 584 years; the one
/// floating-point step (widening the window) is a single IEEE multiplication
/// and a saturating cast, exact and identical on every platform, so a seed
/// replays the same delays everywhere.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use gridkv::net::backoff::{Backoff, BackoffConfig};
/// use gridkv::rng::SplitMix64;
///
/// let mut backoff = Backoff::new(BackoffConfig::default())?;
/// let mut rng = SplitMix64::new(42);
/// assert!(backoff.next_delay(&mut rng) <= Duration::from_millis(50));
/// assert!(backoff.next_delay(&mut rng) <= Duration::from_millis(100));
/// assert!(backoff.next_delay(&mut rng) <= Duration::from_millis(200));
/// backoff.reset(); // connected
/// assert!(backoff.next_delay(&mut rng) <= Duration::from_millis(50));
/// # Ok::<(), gridkv::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    base_ns: u64,
    max_ns: u64,
    multiplier: f64,
    /// The window of the next delay, `0..=window_ns`.
    window_ns: u64,
    attempts: u64,
}

impl Backoff {
    /// A backoff with no attempts yet, after validating `config`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::net::backoff::{Backoff, BackoffConfig};
    ///
    /// assert!(Backoff::new(BackoffConfig::default()).is_ok());
    /// let bad = BackoffConfig { base: Duration::ZERO, ..BackoffConfig::default() };
    /// assert_eq!(Backoff::new(bad).unwrap_err().field, "base");
    /// ```
    pub fn new(config: BackoffConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let base_ns = nanos(config.base);
        Ok(Self {
            base_ns,
            max_ns: nanos(config.max),
            multiplier: config.multiplier,
            window_ns: base_ns,
            attempts: 0,
        })
    }

    /// The delay before the next dial, never above the configured `max`.
    /// Draws one number from `rng` and widens the window for the attempt
    /// after.
    ///
    /// # Examples
    ///
    /// A seed replays the same delays, and a `dyn` source works too:
    ///
    /// ```
    /// use gridkv::net::backoff::{Backoff, BackoffConfig, JitterSource};
    /// use gridkv::rng::SplitMix64;
    ///
    /// let run = |rng: &mut dyn JitterSource| {
    ///     let mut b = Backoff::new(BackoffConfig::default()).unwrap();
    ///     (0..5).map(|_| b.next_delay(&mut *rng)).collect::<Vec<_>>()
    /// };
    /// assert_eq!(run(&mut SplitMix64::new(9)), run(&mut SplitMix64::new(9)));
    /// ```
    pub fn next_delay(&mut self, rng: &mut (impl JitterSource + ?Sized)) -> Duration {
        // Multiply-shift maps 64 random bits onto 0..=window without a
        // division; its bias, one part in 2^64 / window, is far below
        // anything a timer can show.
        let draw = u128::from(rng.next_u64()) * (u128::from(self.window_ns) + 1);
        let delay = Duration::from_nanos((draw >> 64) as u64);
        // `as` saturates, and the `+ 1` keeps a tiny window growing when the
        // product rounds back to it.
        let wider = (self.window_ns as f64 * self.multiplier) as u64;
        self.window_ns = wider.max(self.window_ns.saturating_add(1)).min(self.max_ns);
        self.attempts = self.attempts.saturating_add(1);
        delay
    }

    /// Starts over from the `base` window: call it when a connection to the
    /// peer succeeds, whether we dialled or the peer connected to us.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use gridkv::net::backoff::{Backoff, BackoffConfig};
    /// use gridkv::rng::SplitMix64;
    ///
    /// let mut backoff = Backoff::new(BackoffConfig::default())?;
    /// let mut rng = SplitMix64::new(1);
    /// for _ in 0..10 {
    ///     backoff.next_delay(&mut rng);
    /// }
    /// backoff.reset();
    /// assert_eq!(backoff.attempts(), 0);
    /// assert!(backoff.next_delay(&mut rng) <= Duration::from_millis(50));
    /// # Ok::<(), gridkv::ConfigError>(())
    /// ```
    pub fn reset(&mut self) {
        self.window_ns = self.base_ns;
        self.attempts = 0;
    }

    /// How many delays were handed out since the last reset (saturating).
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::backoff::{Backoff, BackoffConfig};
    /// use gridkv::rng::SplitMix64;
    ///
    /// let mut backoff = Backoff::new(BackoffConfig::default())?;
    /// backoff.next_delay(&mut SplitMix64::new(1));
    /// assert_eq!(backoff.attempts(), 1);
    /// # Ok::<(), gridkv::ConfigError>(())
    /// ```
    pub fn attempts(&self) -> u64 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A source that always returns the same number: 0 draws the shortest
    /// delay, `u64::MAX` the longest, exposing the window itself.
    struct Fixed(u64);

    impl JitterSource for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn any_config() -> impl Strategy<Value = BackoffConfig> {
        let duration = prop_oneof![
            (1u64..10_000_000_000).prop_map(Duration::from_nanos),
            (1u64..u64::MAX).prop_map(Duration::from_secs),
            Just(Duration::MAX),
        ];
        let multiplier = prop_oneof![1.000_001f64..4.0, 4.0f64..1e300];
        (duration.clone(), duration, multiplier).prop_map(|(a, b, multiplier)| BackoffConfig {
            base: a.min(b),
            max: a.max(b),
            multiplier,
        })
    }

    fn delays(config: BackoffConfig, seed: u64, n: usize) -> Vec<Duration> {
        let mut backoff = Backoff::new(config).unwrap();
        let mut rng = SplitMix64::new(seed);
        (0..n).map(|_| backoff.next_delay(&mut rng)).collect()
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First output of the reference implementation for seed 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn window_doubles_from_base_to_max() {
        let mut backoff = Backoff::new(BackoffConfig::default()).unwrap();
        let longest: Vec<_> = (0..7)
            .map(|_| backoff.next_delay(&mut Fixed(u64::MAX)))
            .collect();
        let expected = [50, 100, 200, 400, 800, 1000, 1000].map(ms);
        assert_eq!(longest, expected);
        assert_eq!(backoff.attempts(), 7);
        assert_eq!(backoff.next_delay(&mut Fixed(0)), Duration::ZERO);
    }

    #[test]
    fn reset_returns_to_the_base_window() {
        let mut backoff = Backoff::new(BackoffConfig::default()).unwrap();
        for _ in 0..20 {
            backoff.next_delay(&mut Fixed(u64::MAX));
        }
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
        assert_eq!(backoff.next_delay(&mut Fixed(u64::MAX)), ms(50));
    }

    #[test]
    fn mean_delay_is_half_the_window_and_grows_until_the_cap() {
        const RUNS: u64 = 4_000;
        let mut sums = [Duration::ZERO; 8];
        for seed in 0..RUNS {
            for (sum, d) in sums
                .iter_mut()
                .zip(delays(BackoffConfig::default(), seed, 8))
            {
                *sum += d;
            }
        }
        let means = sums.map(|s| s / RUNS as u32);
        let windows = [50, 100, 200, 400, 800, 1000, 1000, 1000].map(ms);
        for (mean, window) in means.iter().zip(windows) {
            let half = window / 2;
            // Four thousand uniform draws: the standard error is under 1%.
            assert!(mean.abs_diff(half) < half / 20, "{means:?}");
        }
    }

    #[test]
    fn tiny_windows_still_grow() {
        let config = BackoffConfig {
            base: Duration::from_nanos(1),
            max: Duration::from_nanos(4),
            multiplier: 1.01,
        };
        let mut backoff = Backoff::new(config).unwrap();
        let longest: Vec<_> = (0..5)
            .map(|_| backoff.next_delay(&mut Fixed(u64::MAX)).as_nanos())
            .collect();
        assert_eq!(longest, [1, 2, 3, 4, 4]);
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(BackoffConfig::default().validate(), Ok(()));
        let d = BackoffConfig::default();
        let field = |cfg: BackoffConfig| cfg.validate().unwrap_err().field;
        assert_eq!(
            field(BackoffConfig {
                base: Duration::ZERO,
                ..d
            }),
            "base"
        );
        assert_eq!(
            field(BackoffConfig {
                max: d.base - Duration::from_nanos(1),
                ..d
            }),
            "max"
        );
        for multiplier in [1.0, 0.5, -2.0, f64::NAN, f64::INFINITY] {
            assert_eq!(field(BackoffConfig { multiplier, ..d }), "multiplier");
        }
        // A fixed window is allowed: max equal to base.
        assert_eq!(BackoffConfig { max: d.base, ..d }.validate(), Ok(()));
    }

    proptest! {
        #[test]
        fn every_delay_is_at_most_max(config in any_config(), seed: u64) {
            for d in delays(config, seed, 200) {
                prop_assert!(d <= config.max, "{d:?} > {:?}", config.max);
            }
        }

        #[test]
        fn delays_replay_from_a_seed(config in any_config(), seed: u64) {
            prop_assert_eq!(delays(config, seed, 32), delays(config, seed, 32));
        }

        #[test]
        fn after_reset_the_next_delay_is_within_the_base_window(
            config in any_config(),
            seed: u64,
            before in 0usize..100,
        ) {
            let mut backoff = Backoff::new(config).unwrap();
            let mut rng = SplitMix64::new(seed);
            for _ in 0..before {
                backoff.next_delay(&mut rng);
            }
            backoff.reset();
            prop_assert_eq!(backoff.attempts(), 0);
            prop_assert!(backoff.next_delay(&mut rng) <= config.base);
            prop_assert_eq!(backoff.next_delay(&mut Fixed(0)), Duration::ZERO);
        }

        /// The expected delay is half the window (`Fixed(u64::MAX)` draws
        /// the whole window), so this is "the expected delay grows until
        /// the cap, then stays there".
        #[test]
        fn window_grows_strictly_until_the_cap(config in any_config()) {
            // Windows are whole nanoseconds in a `u64`.
            let cap = config.max.min(Duration::from_nanos(u64::MAX));
            let mut backoff = Backoff::new(config).unwrap();
            let mut previous = backoff.next_delay(&mut Fixed(u64::MAX));
            prop_assert_eq!(previous, config.base.min(cap));
            for _ in 0..200 {
                let window = backoff.next_delay(&mut Fixed(u64::MAX));
                prop_assert!(window <= cap);
                prop_assert!(window > previous || window == cap, "{previous:?} -> {window:?}");
                previous = window;
            }
        }
    }
}
