//! `DEL key...` and `EXISTS key...`: each answers how many of its keys
//! were there, as Redis counts: `DEL` each key once however often it is
//! named, `EXISTS` every position. A key named twice is deleted or read
//! once (see [`Distinct`]). The library has no batch delete or exists, so
//! the keys run through [`bounded`] (a bounded number in flight at once),
//! [`BATCH`] at a time.

use bytes::Bytes;
use gridkv::GridKv;

use super::many::{BATCH, Distinct, bounded, count, failure};
use crate::resp::Reply;

/// `DEL key [key ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Del {
    /// The keys (a key named twice is deleted and counted once, as in
    /// Redis).
    pub keys: Vec<Bytes>,
}

impl Del {
    pub(crate) fn parse(mut args: Vec<Bytes>) -> Self {
        args.remove(0);
        Del { keys: args }
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let distinct = Distinct::new(&self.keys);
        let mut results = Vec::with_capacity(distinct.keys.len());
        for batch in distinct.keys.chunks(BATCH) {
            results.extend(bounded(batch.iter().map(|k| node.delete(k)).collect()).await);
        }
        count(&results, "DEL")
    }
}

/// `EXISTS key [key ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exists {
    /// The keys (a key named twice counts twice, as in Redis).
    pub keys: Vec<Bytes>,
}

impl Exists {
    pub(crate) fn parse(mut args: Vec<Bytes>) -> Self {
        args.remove(0);
        Exists { keys: args }
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let distinct = Distinct::new(&self.keys);
        let mut results = Vec::with_capacity(distinct.keys.len());
        for batch in distinct.keys.chunks(BATCH) {
            results.extend(bounded(batch.iter().map(|k| node.exists(k)).collect()).await);
        }
        if let Some(e) = failure(&results, "EXISTS") {
            return e;
        }
        let there = distinct
            .slots
            .iter()
            .filter(|&&slot| matches!(results[slot], Ok(true)))
            .count();
        Reply::Integer(there as i64)
    }
}
