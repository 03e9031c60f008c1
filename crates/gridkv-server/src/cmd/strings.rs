//! Read-modify-writes of one string: `GETDEL`, `GETEX`, and the reads
//! `STRLEN` and `TYPE`. `APPEND` is refused (see [`append_refused`]).
//!
//! Each reads the key with a quorum read; those that write then apply to
//! the value read only (see [`gridkv::GridKv::take`]): a value written
//! meanwhile is never deleted or overwritten by them, nor a deleted one
//! resurrected.

use std::time::Duration;

use bytes::Bytes;
use gridkv::{ExpiryChange, GridKv};

use super::args::{is, parse_int};
use super::error::{ParseError, error_reply};
use crate::resp::Reply;

/// `GETDEL key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetDel {
    /// The key.
    pub key: Bytes,
}

impl GetDel {
    pub(crate) fn parse(mut args: Vec<Bytes>) -> Self {
        GetDel {
            key: args.swap_remove(1),
        }
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        match node.take(&self.key).await {
            Ok(value) => Reply::bulk_or_null(value),
            Err(e) => Reply::Error(error_reply(&e)),
        }
    }
}

/// `GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetEx {
    /// The key.
    pub key: Bytes,
    /// The expiry to set; `None`: a plain read.
    pub change: Option<ExpiryChange>,
}

impl GetEx {
    pub(crate) fn parse(args: Vec<Bytes>) -> Result<Self, ParseError> {
        let change = match &args[2..] {
            [] => None,
            [word] if is(word, "PERSIST") => Some(ExpiryChange::Persist),
            [unit, n] => {
                let n = parse_int(n).ok_or(ParseError::NotInteger)?;
                if n <= 0 {
                    return Err(ParseError::InvalidExpire("getex"));
                }
                let n = n as u64;
                Some(if is(unit, "EX") {
                    ExpiryChange::In(Duration::from_secs(n))
                } else if is(unit, "PX") {
                    ExpiryChange::In(Duration::from_millis(n))
                } else if is(unit, "EXAT") {
                    ExpiryChange::AtMs(n.saturating_mul(1000))
                } else if is(unit, "PXAT") {
                    ExpiryChange::AtMs(n)
                } else {
                    return Err(ParseError::Syntax);
                })
            }
            _ => return Err(ParseError::Syntax),
        };
        let mut args = args;
        Ok(GetEx {
            key: args.swap_remove(1),
            change,
        })
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let result = match self.change {
            Some(change) => node.get_and_expire(&self.key, change).await,
            None => node.get(&self.key).await,
        };
        match result {
            Ok(value) => Reply::bulk_or_null(value),
            Err(e) => Reply::Error(error_reply(&e)),
        }
    }
}

/// `APPEND`: refused. Its write would hold the value it read; if it
/// reached some owners and failed on others (a key deleted meanwhile), it
/// could spread and bring the deleted value back, which GridKV never does.
pub(crate) fn append_refused() -> ParseError {
    ParseError::Refused(
        "ERR APPEND is not supported: a failed append could bring back a value deleted \
         meanwhile (GridKV has no atomic read-modify-write); GET, then SET the whole value"
            .into(),
    )
}

/// What `STRLEN` and `TYPE` answer about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Describe {
    /// `STRLEN key`: the value's length (0 if absent).
    Len,
    /// `TYPE key`: `string`, or `none` if absent.
    Type,
}

/// `STRLEN key` or `TYPE key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key.
    pub key: Bytes,
    /// What to answer.
    pub what: Describe,
}

impl KeyInfo {
    pub(crate) fn parse(mut args: Vec<Bytes>, what: Describe) -> Self {
        KeyInfo {
            key: args.swap_remove(1),
            what,
        }
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let value = match node.get(&self.key).await {
            Ok(value) => value,
            Err(e) => return Reply::Error(error_reply(&e)),
        };
        match (self.what, value) {
            (Describe::Len, value) => Reply::Integer(value.map_or(0, |v| v.len() as i64)),
            (Describe::Type, Some(_)) => Reply::Simple("string".into()),
            (Describe::Type, None) => Reply::Simple("none".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn getex_options() {
        let change = |words: &[&str]| GetEx::parse(args(words)).map(|g| g.change);
        assert_eq!(change(&["GETEX", "k"]), Ok(None));
        assert_eq!(
            change(&["GETEX", "k", "persist"]),
            Ok(Some(ExpiryChange::Persist))
        );
        assert_eq!(
            change(&["GETEX", "k", "EX", "3"]),
            Ok(Some(ExpiryChange::In(Duration::from_secs(3))))
        );
        assert_eq!(
            change(&["GETEX", "k", "pxat", "7"]),
            Ok(Some(ExpiryChange::AtMs(7)))
        );
        assert_eq!(
            change(&["GETEX", "k", "EXAT", "7"]),
            Ok(Some(ExpiryChange::AtMs(7000)))
        );
        assert_eq!(
            change(&["GETEX", "k", "EX", "0"]),
            Err(ParseError::InvalidExpire("getex"))
        );
        assert_eq!(change(&["GETEX", "k", "EX"]), Err(ParseError::Syntax));
        assert_eq!(
            change(&["GETEX", "k", "PERSIST", "1"]),
            Err(ParseError::Syntax)
        );
        assert_eq!(
            change(&["GETEX", "k", "EX", "x"]),
            Err(ParseError::NotInteger)
        );
    }
}
