//! The store's configuration: [`StoreConfig`], its defaults, and the
//! validation that names the first field out of range ([`ConfigError`]).

use std::time::Duration;

use crate::config_error::ConfigError;

/// Configuration of a node's local store: its memory budget, value size
/// limit and tombstone grace period.
///
/// # Examples
///
/// ```
/// use gridkv::store::StoreConfig;
///
/// let config = StoreConfig {
///     memory_budget: 64 << 20,
///     ..StoreConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// assert!(StoreConfig { shards: 48, ..config }.validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Number of shards; a power of two from 1 to 65,536. Default 64.
    pub shards: usize,
    /// Longest accepted key in bytes. Default 64 KiB.
    pub max_key_len: usize,
    /// Longest accepted value in bytes. Default 4 MiB, well under the
    /// transport's 16 MiB frame limit.
    pub max_value_len: usize,
    /// Bytes of keys, values and per-entry overhead (152 bytes an entry on 64-bit targets)
    /// the store may hold before it evicts. Default 1 GiB.
    pub memory_budget: u64,
    /// How long tombstones are kept, counted from their version's time (or
    /// expiry). It bounds how long a replica may be away and still be
    /// repaired without resurrecting deleted keys. Default 1 hour.
    pub tombstone_grace: Duration,
    /// Share of `memory_budget`, in percent (1 to 100), that tombstones may
    /// hold. Beyond it the oldest tombstones are collected before their
    /// grace period ends (counted as `tombstones_collected_early`), which
    /// bounds memory under delete-heavy load at the price of weaker
    /// protection against resurrection for those keys. Default 25.
    pub max_tombstone_percent: u8,
    /// Number of digest leaves over the whole ring; a power of two, at
    /// least `shards` and at most 2^24. Default 16,384.
    pub digest_leaves: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            shards: 64,
            max_key_len: 64 << 10,
            max_value_len: 4 << 20,
            memory_budget: 1 << 30,
            tombstone_grace: Duration::from_secs(3600),
            max_tombstone_percent: 25,
            digest_leaves: 16_384,
        }
    }
}

impl StoreConfig {
    /// The longest accepted tombstone grace period: one year.
    pub const MAX_TOMBSTONE_GRACE: Duration = Duration::from_secs(365 * 24 * 3600);

    /// Checks every field, naming the first invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: String| Err(ConfigError::new("store", field, reason));
        if !self.shards.is_power_of_two() || self.shards > 1 << 16 {
            return err(
                "shards",
                format!("{} is not a power of two in 1..=65536", self.shards),
            );
        }
        if self.max_key_len == 0 {
            return err("max_key_len", "must be at least 1".into());
        }
        if self.memory_budget == 0 {
            return err("memory_budget", "must be at least 1 byte".into());
        }
        if self.tombstone_grace > Self::MAX_TOMBSTONE_GRACE {
            return err(
                "tombstone_grace",
                format!(
                    "{:?} is longer than the maximum, {:?}",
                    self.tombstone_grace,
                    Self::MAX_TOMBSTONE_GRACE
                ),
            );
        }
        if !(1..=100).contains(&self.max_tombstone_percent) {
            return err(
                "max_tombstone_percent",
                format!("{} is not in 1..=100", self.max_tombstone_percent),
            );
        }
        if !self.digest_leaves.is_power_of_two()
            || self.digest_leaves < self.shards
            || self.digest_leaves > 1 << 24
        {
            return err(
                "digest_leaves",
                format!(
                    "{} is not a power of two between shards ({}) and 2^24",
                    self.digest_leaves, self.shards
                ),
            );
        }
        Ok(())
    }
}
