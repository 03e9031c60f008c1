//! Counters: `INCR`, `DECR`, `INCRBY`, `DECRBY` (see
//! [`gridkv::GridKv::incr_by`]: convergent, so increments through
//! different nodes, concurrently or across a partition, are all kept).
//! `INCRBYFLOAT` is refused: a float cannot be split into per-node parts
//! that merge exactly.

use bytes::Bytes;
use gridkv::GridKv;

use super::args::parse_int;
use super::error::{ParseError, error_reply};
use crate::resp::Reply;

/// `INCR key`, `DECR key`, `INCRBY key n`, `DECRBY key n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incr {
    /// The key.
    pub key: Bytes,
    /// What to add (negative: subtract).
    pub delta: i64,
}

impl Incr {
    /// `INCR`/`DECR` (`by` is 1 or -1), or `INCRBY`/`DECRBY` (the third
    /// argument, negated for `DECRBY`: `negate`).
    pub(crate) fn parse(
        mut args: Vec<Bytes>,
        by: Option<i64>,
        negate: bool,
    ) -> Result<Self, ParseError> {
        let delta = match by {
            Some(by) => by,
            None => {
                let n = parse_int(&args[2]).ok_or(ParseError::NotInteger)?;
                if negate {
                    n.checked_neg()
                        .ok_or(ParseError::Refused("ERR decrement would overflow".into()))?
                } else {
                    n
                }
            }
        };
        Ok(Incr {
            key: args.swap_remove(1),
            delta,
        })
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        match node.incr_by(&self.key, self.delta).await {
            Ok(value) => Reply::Integer(value),
            Err(e) => Reply::Error(error_reply(&e)),
        }
    }
}

/// `INCRBYFLOAT`: refused, with why.
pub(crate) fn incrbyfloat_refused() -> ParseError {
    ParseError::Refused(
        "ERR INCRBYFLOAT is not supported: counters are integers that merge across nodes; \
         use INCRBY"
            .into(),
    )
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
    fn deltas() {
        let delta =
            |words: &[&str], by, negate| Incr::parse(args(words), by, negate).map(|i| i.delta);
        assert_eq!(delta(&["INCR", "k"], Some(1), false), Ok(1));
        assert_eq!(delta(&["DECR", "k"], Some(-1), false), Ok(-1));
        assert_eq!(delta(&["INCRBY", "k", "-7"], None, false), Ok(-7));
        assert_eq!(delta(&["DECRBY", "k", "7"], None, true), Ok(-7));
        assert_eq!(
            delta(&["INCRBY", "k", "x"], None, false),
            Err(ParseError::NotInteger)
        );
        assert!(delta(&["DECRBY", "k", &i64::MIN.to_string()], None, true).is_err());
    }
}
