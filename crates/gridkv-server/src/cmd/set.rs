//! `SET key value [EX s | PX ms]` and `MSET key value...`: quorum writes
//! (W owners apply).
//!
//! `NX`, `XX`, `GET`, `KEEPTTL`, `EXAT` and `PXAT` are refused: they need
//! an atomic read-modify-write (see the [module docs](super)).

use std::time::Duration;

use bytes::Bytes;
use gridkv::{GridKv, WriteOptions};

use super::args::{is, parse_int};
use super::error::{ParseError, error_reply};
use super::many::{BATCH, failure, last_wins};
use crate::resp::Reply;

/// `SET key value [EX s | PX ms]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// `EX`/`PX`: the value expires after this long.
    pub ttl: Option<Duration>,
}

/// Options that need an atomic read-modify-write.
const CONDITIONAL: [&str; 6] = ["NX", "XX", "GET", "KEEPTTL", "EXAT", "PXAT"];

impl Set {
    pub(crate) fn parse(args: Vec<Bytes>) -> Result<Self, ParseError> {
        let mut ttl = None;
        let mut i = 3;
        while i < args.len() {
            let opt = &args[i];
            if is(opt, "EX") || is(opt, "PX") {
                let n = args
                    .get(i + 1)
                    .and_then(|a| parse_int(a))
                    .ok_or(ParseError::NotInteger)?;
                if n <= 0 {
                    return Err(ParseError::InvalidExpire);
                }
                if ttl.is_some() {
                    return Err(ParseError::Syntax);
                }
                let n = n as u64;
                ttl = Some(if is(opt, "EX") {
                    Duration::from_secs(n)
                } else {
                    Duration::from_millis(n)
                });
                i += 2;
            } else if CONDITIONAL.iter().any(|w| is(opt, w)) {
                return Err(ParseError::ConditionalSet(
                    String::from_utf8_lossy(opt).to_ascii_uppercase(),
                ));
            } else {
                return Err(ParseError::Syntax);
            }
        }
        let mut args = args.into_iter().skip(1);
        let (Some(key), Some(value)) = (args.next(), args.next()) else {
            return Err(ParseError::Arity("set"));
        };
        Ok(Set { key, value, ttl })
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let options = WriteOptions {
            ttl: self.ttl,
            ..WriteOptions::default()
        };
        let result = node.set_opts(&self.key, self.value, options).await;
        match result {
            Ok(()) => Reply::ok(),
            Err(e) => Reply::Error(error_reply(&e)),
        }
    }
}

/// `MSET key value [key value ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MSet {
    /// The pairs, in order.
    pub pairs: Vec<(Bytes, Bytes)>,
}

impl MSet {
    pub(crate) fn parse(args: Vec<Bytes>) -> Result<Self, ParseError> {
        if args.len() % 2 == 0 {
            return Err(ParseError::Arity("mset"));
        }
        let mut rest = args.into_iter().skip(1);
        let mut pairs = Vec::with_capacity(rest.len() / 2);
        while let (Some(k), Some(v)) = (rest.next(), rest.next()) {
            pairs.push((k, v));
        }
        Ok(MSet { pairs })
    }

    /// Writes through the library's bounded batch call, each key once
    /// with the value named last for it (as Redis), [`BATCH`] pairs at a
    /// time.
    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let pairs = last_wins(self.pairs);
        let mut results = Vec::with_capacity(pairs.len());
        for batch in pairs.chunks(BATCH) {
            results.extend(node.set_many(batch).await);
        }
        failure(&results, "MSET").unwrap_or_else(Reply::ok)
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

    fn set(words: &[&str]) -> Result<Set, ParseError> {
        Set::parse(args(words))
    }

    #[test]
    fn set_without_options() {
        let s = set(&["SET", "k", "v"]).unwrap();
        assert_eq!(
            (&s.key[..], &s.value[..], s.ttl),
            (&b"k"[..], &b"v"[..], None)
        );
    }

    #[test]
    fn set_ex_and_px_in_any_case() {
        assert_eq!(
            set(&["SET", "k", "v", "EX", "10"]).unwrap().ttl,
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            set(&["set", "k", "v", "px", "1500"]).unwrap().ttl,
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn set_option_errors() {
        assert_eq!(set(&["SET", "k", "v", "EX"]), Err(ParseError::NotInteger));
        assert_eq!(
            set(&["SET", "k", "v", "EX", "x"]),
            Err(ParseError::NotInteger)
        );
        assert_eq!(
            set(&["SET", "k", "v", "PX", "0"]),
            Err(ParseError::InvalidExpire)
        );
        assert_eq!(
            set(&["SET", "k", "v", "EX", "-5"]),
            Err(ParseError::InvalidExpire)
        );
        assert_eq!(
            set(&["SET", "k", "v", "EX", "1", "PX", "5"]),
            Err(ParseError::Syntax)
        );
        assert_eq!(set(&["SET", "k", "v", "BOGUS"]), Err(ParseError::Syntax));
    }

    #[test]
    fn set_conditional_options_are_refused_by_name() {
        for opt in CONDITIONAL {
            let lower = opt.to_ascii_lowercase();
            assert_eq!(
                set(&["SET", "k", "v", &lower]),
                Err(ParseError::ConditionalSet(opt.to_owned()))
            );
        }
        assert_eq!(
            ParseError::ConditionalSet("NX".into()).to_string(),
            "ERR SET NX is not supported: GridKV has no atomic conditional writes (last write wins)"
        );
    }

    #[test]
    fn mset_pairs_and_arity() {
        let m = MSet::parse(args(&["MSET", "a", "1", "b", "2"])).unwrap();
        assert_eq!(m.pairs.len(), 2);
        assert_eq!(&m.pairs[1].0[..], b"b");
        assert_eq!(
            MSet::parse(args(&["MSET", "a", "1", "b"])),
            Err(ParseError::Arity("mset"))
        );
    }
}
