//! `SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms]`,
//! `SETNX`, `SETEX`, `PSETEX` and `MSET key value...`: quorum writes (W
//! owners apply).
//!
//! `NX`, `XX` and `GET` are read-modify-writes: a quorum read, then a write
//! that owners apply only if the key did not change since (see
//! [`gridkv::GridKv::set_if_absent`]). They are not locks: during a
//! partition two `SET NX` can both succeed. `KEEPTTL`, and `GET` together
//! with `NX` or `XX`, are refused.

use std::time::Duration;

use bytes::Bytes;
use gridkv::{GridKv, WriteOptions};

use super::args::{is, parse_int};
use super::error::{ParseError, error_reply};
use super::many::{BATCH, failure, last_wins};
use crate::resp::Reply;

/// When a written value expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetExpiry {
    /// `EX`/`PX`, `SETEX`/`PSETEX`: this long after the write.
    In(Duration),
    /// `EXAT`/`PXAT`: at this time, ms since the Unix epoch.
    AtMs(u64),
}

/// Whether a `SET` stores only if the key is absent or present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SetIf {
    /// Always (plain `SET`).
    #[default]
    Always,
    /// `NX`, `SETNX`: only if the key holds no live value.
    Absent,
    /// `XX`: only if it holds one.
    Present,
}

/// `SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms]`, and
/// `SETNX`, `SETEX`, `PSETEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// When the value expires (`None`: never).
    pub expiry: Option<SetExpiry>,
    /// `NX` or `XX`.
    pub only_if: SetIf,
    /// `GET`: answer the value replaced.
    pub get: bool,
    /// `SETNX`: answer 1 or 0 instead of OK or nil.
    pub integer_reply: bool,
}

impl Set {
    /// A plain `SET key value` with an expiry.
    fn plain(key: Bytes, value: Bytes, expiry: Option<SetExpiry>) -> Self {
        Set {
            key,
            value,
            expiry,
            only_if: SetIf::Always,
            get: false,
            integer_reply: false,
        }
    }

    pub(crate) fn parse(args: Vec<Bytes>) -> Result<Self, ParseError> {
        let mut expiry = None;
        let mut only_if = SetIf::Always;
        let mut get = false;
        let mut i = 3;
        while i < args.len() {
            let opt = &args[i];
            let unit = ["EX", "PX", "EXAT", "PXAT"]
                .into_iter()
                .find(|w| is(opt, w));
            if let Some(unit) = unit {
                let n = args
                    .get(i + 1)
                    .and_then(|a| parse_int(a))
                    .ok_or(ParseError::NotInteger)?;
                if n <= 0 {
                    return Err(ParseError::InvalidExpire("set"));
                }
                if expiry.is_some() {
                    return Err(ParseError::Syntax);
                }
                expiry = Some(expiry_of(unit, n as u64)?);
                i += 2;
            } else if is(opt, "NX") || is(opt, "XX") {
                if only_if != SetIf::Always {
                    return Err(ParseError::Syntax);
                }
                only_if = if is(opt, "NX") {
                    SetIf::Absent
                } else {
                    SetIf::Present
                };
                i += 1;
            } else if is(opt, "GET") {
                get = true;
                i += 1;
            } else if is(opt, "KEEPTTL") {
                return Err(ParseError::Refused(
                    "ERR SET KEEPTTL is not supported: read the TTL and set it with the value"
                        .into(),
                ));
            } else {
                return Err(ParseError::Syntax);
            }
        }
        if get && only_if != SetIf::Always {
            return Err(ParseError::Refused(
                "ERR SET GET with NX or XX is not supported".into(),
            ));
        }
        let mut args = args.into_iter().skip(1);
        let (Some(key), Some(value)) = (args.next(), args.next()) else {
            return Err(ParseError::Arity("set"));
        };
        Ok(Set {
            only_if,
            get,
            ..Set::plain(key, value, expiry)
        })
    }

    /// `SETNX key value`.
    pub(crate) fn parse_setnx(args: Vec<Bytes>) -> Self {
        let mut args = args.into_iter().skip(1);
        let (key, value) = (
            args.next().unwrap_or_default(),
            args.next().unwrap_or_default(),
        );
        Set {
            only_if: SetIf::Absent,
            integer_reply: true,
            ..Set::plain(key, value, None)
        }
    }

    /// `SETEX key seconds value` (`millis`: `PSETEX key ms value`).
    pub(crate) fn parse_setex(args: Vec<Bytes>, millis: bool) -> Result<Self, ParseError> {
        let name = if millis { "psetex" } else { "setex" };
        let n = parse_int(&args[2]).ok_or(ParseError::NotInteger)?;
        if n <= 0 {
            return Err(ParseError::InvalidExpire(name));
        }
        let expiry = expiry_of(if millis { "PX" } else { "EX" }, n as u64)?;
        let mut args = args.into_iter();
        let key = args.nth(1).unwrap_or_default();
        let value = args.nth(1).unwrap_or_default();
        Ok(Set::plain(key, value, Some(expiry)))
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let mut options = WriteOptions::default();
        match self.expiry {
            Some(SetExpiry::In(ttl)) => options.ttl = Some(ttl),
            Some(SetExpiry::AtMs(at)) => options.expires_at_ms = Some(at),
            None => {}
        }
        let stored = match (self.only_if, self.get) {
            (SetIf::Always, true) => {
                return match node.swap(&self.key, self.value, options).await {
                    Ok(old) => Reply::bulk_or_null(old),
                    Err(e) => Reply::Error(error_reply(&e)),
                };
            }
            (SetIf::Always, false) => node
                .set_opts(&self.key, self.value, options)
                .await
                .map(|()| true),
            (SetIf::Absent, _) => node.set_if_absent(&self.key, self.value, options).await,
            (SetIf::Present, _) => node.set_if_present(&self.key, self.value, options).await,
        };
        match stored {
            Ok(stored) if self.integer_reply => Reply::Integer(i64::from(stored)),
            Ok(true) => Reply::ok(),
            Ok(false) => Reply::Null,
            Err(e) => Reply::Error(error_reply(&e)),
        }
    }
}

/// The expiry `n` of `unit` (`EX`, `PX`, `EXAT`, `PXAT`) names; times
/// past what milliseconds can hold saturate (never expire, in effect).
fn expiry_of(unit: &str, n: u64) -> Result<SetExpiry, ParseError> {
    Ok(match unit {
        "EX" => SetExpiry::In(Duration::from_secs(n)),
        "PX" => SetExpiry::In(Duration::from_millis(n)),
        "EXAT" => SetExpiry::AtMs(n.saturating_mul(1000)),
        _ => SetExpiry::AtMs(n),
    })
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
            (&s.key[..], &s.value[..], s.expiry, s.only_if, s.get),
            (&b"k"[..], &b"v"[..], None, SetIf::Always, false)
        );
    }

    #[test]
    fn set_expiries_in_any_case() {
        let expiry = |words: &[&str]| set(words).unwrap().expiry;
        assert_eq!(
            expiry(&["SET", "k", "v", "EX", "10"]),
            Some(SetExpiry::In(Duration::from_secs(10)))
        );
        assert_eq!(
            expiry(&["set", "k", "v", "px", "1500"]),
            Some(SetExpiry::In(Duration::from_millis(1500)))
        );
        assert_eq!(
            expiry(&["set", "k", "v", "exat", "2000000000"]),
            Some(SetExpiry::AtMs(2_000_000_000_000))
        );
        assert_eq!(
            expiry(&["set", "k", "v", "PXAT", "5"]),
            Some(SetExpiry::AtMs(5))
        );
    }

    #[test]
    fn set_conditions_and_get() {
        let s = set(&["SET", "k", "v", "nx", "EX", "5"]).unwrap();
        assert_eq!((s.only_if, s.get), (SetIf::Absent, false));
        assert_eq!(
            set(&["SET", "k", "v", "XX"]).unwrap().only_if,
            SetIf::Present
        );
        assert!(set(&["SET", "k", "v", "GET"]).unwrap().get);
        assert_eq!(set(&["SET", "k", "v", "NX", "XX"]), Err(ParseError::Syntax));
        for words in [
            &["SET", "k", "v", "NX", "GET"][..],
            &["SET", "k", "v", "KEEPTTL"],
        ] {
            let e = set(words).unwrap_err().to_string();
            assert!(
                e.starts_with("ERR SET ") && e.contains("not supported"),
                "{e}"
            );
        }
        let nx = Set::parse_setnx(args(&["SETNX", "k", "v"]));
        assert_eq!((nx.only_if, nx.integer_reply), (SetIf::Absent, true));
    }

    #[test]
    fn setex_and_psetex() {
        let s = Set::parse_setex(args(&["SETEX", "k", "10", "v"]), false).unwrap();
        assert_eq!(
            (&s.key[..], &s.value[..], s.expiry),
            (
                &b"k"[..],
                &b"v"[..],
                Some(SetExpiry::In(Duration::from_secs(10)))
            )
        );
        let s = Set::parse_setex(args(&["PSETEX", "k", "10", "v"]), true).unwrap();
        assert_eq!(s.expiry, Some(SetExpiry::In(Duration::from_millis(10))));
        assert_eq!(
            Set::parse_setex(args(&["SETEX", "k", "0", "v"]), false),
            Err(ParseError::InvalidExpire("setex"))
        );
        assert_eq!(
            ParseError::InvalidExpire("psetex").to_string(),
            "ERR invalid expire time in 'psetex' command"
        );
        assert_eq!(
            Set::parse_setex(args(&["SETEX", "k", "x", "v"]), false),
            Err(ParseError::NotInteger)
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
            Err(ParseError::InvalidExpire("set"))
        );
        assert_eq!(
            set(&["SET", "k", "v", "EX", "-5"]),
            Err(ParseError::InvalidExpire("set"))
        );
        assert_eq!(
            set(&["SET", "k", "v", "EX", "9223372036854775807"])
                .unwrap()
                .expiry,
            Some(SetExpiry::In(Duration::from_secs(i64::MAX as u64)))
        );
        assert_eq!(
            set(&["SET", "k", "v", "EX", "1", "PX", "5"]),
            Err(ParseError::Syntax)
        );
        assert_eq!(set(&["SET", "k", "v", "BOGUS"]), Err(ParseError::Syntax));
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
