//! Expiry: `EXPIRE`/`PEXPIRE key n`, `EXPIREAT`/`PEXPIREAT key time`,
//! `TTL`/`PTTL key`, `EXPIRETIME`/`PEXPIRETIME key`, `PERSIST key`.
//!
//! An expiry change applies to the value read only; a time not in the
//! future deletes that value (not one written since), as Redis deletes the
//! key. `EXPIRE ... NX|XX|GT|LT` is refused (see the [module docs](super)).

use std::time::Duration;

use bytes::Bytes;
use gridkv::GridKv;

use super::args::parse_int;
use super::error::{ParseError, error_reply};
use crate::resp::Reply;

/// The unit of a TTL given or answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `EXPIRE`, `TTL`.
    Seconds,
    /// `PEXPIRE`, `PTTL`.
    Millis,
}

/// `EXPIRE key seconds` or `PEXPIRE key ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expire {
    /// The key.
    pub key: Bytes,
    /// The TTL in `unit`; zero or less deletes the key, as in Redis.
    pub amount: i64,
    /// Seconds or milliseconds.
    pub unit: Unit,
}

impl Expire {
    pub(crate) fn parse(mut args: Vec<Bytes>, unit: Unit) -> Result<Self, ParseError> {
        if args.len() > 3 {
            return Err(ParseError::ConditionalExpire);
        }
        let amount = parse_int(&args[2]).ok_or(ParseError::NotInteger)?;
        Ok(Expire {
            key: args.swap_remove(1),
            amount,
            unit,
        })
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let result = if self.amount <= 0 {
            // As Redis: a TTL in the past deletes the key (the value read).
            node.take(&self.key).await.map(|taken| taken.is_some())
        } else {
            let n = self.amount as u64;
            let ttl = match self.unit {
                Unit::Millis => Duration::from_millis(n),
                Unit::Seconds => Duration::from_secs(n),
            };
            node.expire(&self.key, ttl).await
        };
        match result {
            Ok(existed) => Reply::Integer(i64::from(existed)),
            Err(e) => Reply::Error(error_reply(&e)),
        }
    }
}

/// `EXPIREAT key unix-seconds` or `PEXPIREAT key unix-ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpireAt {
    /// The key.
    pub key: Bytes,
    /// The time, in `unit` since the Unix epoch; not in the future:
    /// deletes the key.
    pub at: i64,
    /// Seconds or milliseconds.
    pub unit: Unit,
}

impl ExpireAt {
    pub(crate) fn parse(mut args: Vec<Bytes>, unit: Unit) -> Result<Self, ParseError> {
        if args.len() > 3 {
            return Err(ParseError::ConditionalExpire);
        }
        let at = parse_int(&args[2]).ok_or(ParseError::NotInteger)?;
        Ok(ExpireAt {
            key: args.swap_remove(1),
            at,
            unit,
        })
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let at = u64::try_from(self.at).unwrap_or(0);
        let ms = match self.unit {
            Unit::Millis => Some(at),
            Unit::Seconds => at.checked_mul(1000),
        };
        let Some(ms) = ms else {
            return Reply::error("ERR invalid expire time in 'expireat' command");
        };
        match node.expire_at(&self.key, ms).await {
            Ok(existed) => Reply::Integer(i64::from(existed)),
            Err(e) => Reply::Error(error_reply(&e)),
        }
    }
}

/// `EXPIRETIME key` or `PEXPIRETIME key`: when the key expires, in `unit`
/// since the Unix epoch; -2 for no key, -1 for no expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpireTime {
    /// The key.
    pub key: Bytes,
    /// Seconds or milliseconds.
    pub unit: Unit,
}

impl ExpireTime {
    pub(crate) fn parse(mut args: Vec<Bytes>, unit: Unit) -> Self {
        ExpireTime {
            key: args.swap_remove(1),
            unit,
        }
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        match node.get_found(&self.key).await {
            Ok(None) => Reply::Integer(-2),
            Ok(Some(found)) => match found.expires_at_ms {
                None => Reply::Integer(-1),
                Some(ms) => {
                    let ms = ms.min(i64::MAX as u64) as i64;
                    Reply::Integer(match self.unit {
                        Unit::Millis => ms,
                        Unit::Seconds => ms / 1000,
                    })
                }
            },
            Err(e) => Reply::Error(error_reply(&e)),
        }
    }
}

/// `TTL key` or `PTTL key`: -2 for no key, -1 for no expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ttl {
    /// The key.
    pub key: Bytes,
    /// What the answer counts.
    pub unit: Unit,
}

impl Ttl {
    pub(crate) fn parse(mut args: Vec<Bytes>, unit: Unit) -> Self {
        Ttl {
            key: args.swap_remove(1),
            unit,
        }
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        match node.ttl(&self.key).await {
            Ok(gridkv::Ttl::Missing) => Reply::Integer(-2),
            Ok(gridkv::Ttl::Persistent) => Reply::Integer(-1),
            Ok(gridkv::Ttl::ExpiresIn(left)) => {
                let ms = left.as_millis().min(i64::MAX as u128) as i64;
                Reply::Integer(match self.unit {
                    Unit::Millis => ms,
                    // Rounded to the nearest second, as Redis; saturating
                    // because a TTL set near i64::MAX ms would overflow.
                    Unit::Seconds => ms.saturating_add(500) / 1000,
                })
            }
            Err(e) => Reply::Error(error_reply(&e)),
        }
    }
}

/// `PERSIST key`: 1 if an expiry was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persist {
    /// The key.
    pub key: Bytes,
}

impl Persist {
    pub(crate) fn parse(mut args: Vec<Bytes>) -> Self {
        Persist {
            key: args.swap_remove(1),
        }
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        match node.persist(&self.key).await {
            Ok(removed) => Reply::Integer(i64::from(removed)),
            Err(e) => Reply::Error(error_reply(&e)),
        }
    }
}
