//! The one error every configuration check returns: [`ConfigError`] names
//! the section, the field and why it was refused.
//!
//! Every config (node, membership, transport, store, replication, and the
//! transport's RTT and backoff bounds) has this same failure shape, so one
//! type carries them all and a nested check's error passes up unchanged:
//! the section says which config the field belongs to.

use std::borrow::Cow;

/// A configuration field that is out of range or otherwise refused.
///
/// Its message reads `invalid {section} config `{field}`: {reason}`.
///
/// # Examples
///
/// ```
/// let err = gridkv::GridKv::builder("node-1")
///     .listen("not an address")
///     .build()
///     .unwrap_err();
/// assert_eq!((err.section, err.field), ("node", "listen"));
/// assert!(err.to_string().starts_with("invalid node config `listen`: "));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {section} config `{field}`: {reason}")]
pub struct ConfigError {
    /// Which config the field belongs to: `node`, `membership`,
    /// `transport`, `store`, `replication`, `rtt` or `backoff`.
    pub section: &'static str,
    /// The field's name, as in its config struct or builder method.
    pub field: &'static str,
    /// Why it was refused.
    pub reason: Cow<'static, str>,
}

impl ConfigError {
    /// An error for `field` of the `section` config. A fixed reason is
    /// borrowed, a formatted one owned.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::ConfigError;
    ///
    /// let err = ConfigError::new("store", "shards", "must be a power of two");
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid store config `shards`: must be a power of two",
    /// );
    /// let err = ConfigError::new("store", "shards", format!("{} is too many", 1 << 20));
    /// assert_eq!(err.reason, "1048576 is too many");
    /// ```
    pub fn new(
        section: &'static str,
        field: &'static str,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            section,
            field,
            reason: reason.into(),
        }
    }
}
