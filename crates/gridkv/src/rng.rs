//! The crate's one seeded random-number generator.
//!
//! Everything in GridKV that draws randomness (probe order, jitter of
//! timers and reconnects, fault injection, the server's load generator)
//! draws it from a [`SplitMix64`] seeded by its owner, so a seed printed by
//! a failing test replays the same draws, and the library needs no
//! random-number crate. It is statistically sound for jitter and sampling,
//! and not cryptographic.

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny, fast generator whose
/// whole state is one `u64`, so a seed fully determines its output.
///
/// # Examples
///
/// ```
/// use gridkv::rng::SplitMix64;
///
/// let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert_ne!(a.next_u64(), SplitMix64::new(8).next_u64());
/// assert!(a.below(10) < 10);
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

/// SplitMix64's increment: the golden ratio in 64 bits.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective 64-bit mixer, also useful on
/// its own to derive unrelated seeds from related numbers.
///
/// # Examples
///
/// ```
/// use gridkv::rng::mix64;
///
/// assert_ne!(mix64(1), mix64(2));
/// assert_eq!(mix64(1), mix64(1));
/// ```
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    /// A generator whose output is determined by `seed`. Every seed,
    /// including 0, gives a full-quality sequence.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::rng::SplitMix64;
    ///
    /// let mut rng = SplitMix64::new(0);
    /// assert_ne!(rng.next_u64(), rng.next_u64());
    /// ```
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next number; every `u64` equally likely.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::rng::SplitMix64;
    ///
    /// assert_eq!(SplitMix64::new(3).next_u64(), SplitMix64::new(3).next_u64());
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `[0, n)` for `n > 0` (multiply-shift: the bias is below
    /// `n / 2^64`, far under anything a test or bench can see); 0 for `n = 0`.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::rng::SplitMix64;
    ///
    /// let mut rng = SplitMix64::new(1);
    /// assert!((0..100).all(|_| rng.below(6) < 6));
    /// ```
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`, with 53 bits of precision.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::rng::SplitMix64;
    ///
    /// let u = SplitMix64::new(9).unit();
    /// assert!((0.0..1.0).contains(&u));
    /// ```
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_reference_sequence() {
        // The first outputs of seed 1234567 in Vigna's reference C code.
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
    }

    #[test]
    fn below_stays_in_range_and_reaches_both_ends() {
        let mut rng = SplitMix64::new(42);
        let draws: Vec<u64> = (0..10_000).map(|_| rng.below(10)).collect();
        assert!(draws.iter().all(|&d| d < 10));
        assert!(draws.contains(&0) && draws.contains(&9));
        assert_eq!(SplitMix64::new(1).below(0), 0);
    }
}
