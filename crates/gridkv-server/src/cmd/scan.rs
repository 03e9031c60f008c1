//! Walking the whole cluster's keys: `SCAN cursor [MATCH pattern] [COUNT
//! n] [TYPE type]`, `KEYS pattern` (bounded), and `GRIDKV.DBSIZE`, the
//! cluster's key count (`DBSIZE` counts this node's store: see `info`).
//!
//! The cursor is a position on the ring (see [`gridkv::GridKv::scan`]): it
//! survives reconnects and works through any node, and a key present for
//! the whole scan is returned at least once, as Redis promises. `KEYS`
//! walks the whole cluster at once and answers at most [`MAX_KEYS`] keys;
//! past that it answers an error naming `SCAN`.

use bytes::Bytes;
use gridkv::GridKv;

use super::args::{is, parse_int};
use super::error::{ParseError, error_reply};
use crate::auth::Glob;
use crate::resp::Reply;

/// Most keys `KEYS` answers.
pub const MAX_KEYS: usize = 100_000;

/// `SCAN`'s default `COUNT`, as Redis.
const DEFAULT_COUNT: usize = 10;

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Where to continue (0: from the start).
    pub cursor: u64,
    /// Keys to answer (`MATCH`), all if `None`.
    pub pattern: Option<Glob>,
    /// About how many keys to look at.
    pub count: usize,
    /// `TYPE`: whether string keys are wanted (the only type GridKV has).
    pub strings: bool,
}

impl Scan {
    pub(crate) fn parse(args: Vec<Bytes>) -> Result<Self, ParseError> {
        let cursor = std::str::from_utf8(&args[1])
            .ok()
            .and_then(|c| c.parse::<u64>().ok())
            .ok_or(ParseError::Refused("ERR invalid cursor".into()))?;
        let mut scan = Scan {
            cursor,
            pattern: None,
            count: DEFAULT_COUNT,
            strings: true,
        };
        let mut rest = args[2..].chunks(2);
        for pair in &mut rest {
            let [option, value] = pair else {
                return Err(ParseError::Syntax);
            };
            if is(option, "MATCH") {
                scan.pattern = Some(pattern(value)?);
            } else if is(option, "COUNT") {
                let n = parse_int(value).ok_or(ParseError::NotInteger)?;
                if n < 1 {
                    return Err(ParseError::Syntax);
                }
                scan.count = n as usize;
            } else if is(option, "TYPE") {
                scan.strings = is(value, "string");
            } else {
                return Err(ParseError::Syntax);
            }
        }
        Ok(scan)
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let page = match node.scan(self.cursor, self.count).await {
            Ok(page) => page,
            Err(e) => return Reply::Error(error_reply(&e)),
        };
        let keys = page
            .keys
            .into_iter()
            .filter(|k| self.strings && self.pattern.as_ref().is_none_or(|p| p.matches(k)))
            .map(Reply::Bulk)
            .collect();
        Reply::Array(vec![
            Reply::Bulk(Bytes::from(page.cursor.to_string())),
            Reply::Array(keys),
        ])
    }
}

fn pattern(value: &[u8]) -> Result<Glob, ParseError> {
    Glob::new(value).map_err(|e| ParseError::Refused(format!("ERR {e}").into()))
}

/// `KEYS pattern`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The keys to answer.
    pub pattern: Glob,
}

impl Keys {
    pub(crate) fn parse(args: Vec<Bytes>) -> Result<Self, ParseError> {
        Ok(Keys {
            pattern: pattern(&args[1])?,
        })
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let mut cursor = 0;
        let mut keys = Vec::new();
        loop {
            let page = match node.scan(cursor, gridkv::GridKv::SCAN_BATCH).await {
                Ok(page) => page,
                Err(e) => return Reply::Error(error_reply(&e)),
            };
            keys.extend(
                page.keys
                    .into_iter()
                    .filter(|k| self.pattern.matches(k))
                    .map(Reply::Bulk),
            );
            if keys.len() > MAX_KEYS {
                return Reply::error(format!(
                    "ERR KEYS would answer more than {MAX_KEYS} keys: walk them with SCAN"
                ));
            }
            cursor = page.cursor;
            if cursor == 0 {
                break;
            }
        }
        // A key may come twice (the ring changed under the walk).
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| match k {
            Reply::Bulk(b) => seen.insert(b.clone()),
            _ => true,
        });
        Reply::Array(keys)
    }
}

/// `FLUSHALL`/`FLUSHDB [ASYNC | SYNC]`: a versioned flush of the whole
/// cluster (see [`gridkv::GridKv::flush`]); `OK` once every member applied
/// it, else an error naming those that did not.
pub(crate) fn parse_flush(args: &[Bytes]) -> Result<(), ParseError> {
    match &args[1..] {
        [] => Ok(()),
        [mode] if is(mode, "ASYNC") || is(mode, "SYNC") => Ok(()),
        _ => Err(ParseError::Syntax),
    }
}

/// Runs a flush.
pub(crate) async fn flush(node: &GridKv) -> Reply {
    match node.flush().await {
        Ok(()) => Reply::ok(),
        Err(e) => Reply::Error(error_reply(&e)),
    }
}

/// `GRIDKV.DBSIZE`: the cluster's keys with a live value.
pub(crate) async fn cluster_dbsize(node: &GridKv) -> Reply {
    match node.count_keys().await {
        Ok(n) => Reply::Integer(n as i64),
        Err(e) => Reply::Error(error_reply(&e)),
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
    fn scan_options() {
        let s = Scan::parse(args(&["SCAN", "0"])).unwrap();
        assert_eq!(
            (s.cursor, s.count, s.strings, s.pattern),
            (0, 10, true, None)
        );
        let s = Scan::parse(args(&[
            "scan",
            "18446744073709551615",
            "match",
            "user:*",
            "COUNT",
            "500",
        ]))
        .unwrap();
        assert_eq!((s.cursor, s.count), (u64::MAX, 500));
        assert!(s.pattern.unwrap().matches(b"user:1"));
        assert!(
            !Scan::parse(args(&["SCAN", "0", "TYPE", "hash"]))
                .unwrap()
                .strings
        );
        assert_eq!(
            Scan::parse(args(&["SCAN", "x"])).unwrap_err().to_string(),
            "ERR invalid cursor"
        );
        assert_eq!(
            Scan::parse(args(&["SCAN", "-1"])).unwrap_err().to_string(),
            "ERR invalid cursor"
        );
        assert_eq!(
            Scan::parse(args(&["SCAN", "0", "COUNT", "0"])),
            Err(ParseError::Syntax)
        );
        assert_eq!(
            Scan::parse(args(&["SCAN", "0", "MATCH"])),
            Err(ParseError::Syntax)
        );
        assert_eq!(
            Scan::parse(args(&["SCAN", "0", "BOGUS", "1"])),
            Err(ParseError::Syntax)
        );
    }
}
