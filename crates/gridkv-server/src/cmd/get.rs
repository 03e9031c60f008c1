//! `GET key` and `MGET key...`: quorum reads (R owners answer).

use bytes::Bytes;
use gridkv::GridKv;

use super::error::error_reply;
use super::many::{Distinct, failure};
use crate::resp::Reply;

/// `GET key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    /// The key.
    pub key: Bytes,
}

impl Get {
    pub(crate) fn parse(mut args: Vec<Bytes>) -> Self {
        Get {
            key: args.swap_remove(1),
        }
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        match node.get(&self.key).await {
            Ok(v) => Reply::bulk_or_null(v),
            Err(e) => Reply::Error(error_reply(&e)),
        }
    }
}

/// `MGET key...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MGet {
    /// The keys, in order.
    pub keys: Vec<Bytes>,
}

impl MGet {
    pub(crate) fn parse(mut args: Vec<Bytes>) -> Self {
        args.remove(0);
        MGet { keys: args }
    }

    /// Reads through the library's bounded batch call, each key once: a
    /// key named twice answers the same value at both positions, as in
    /// Redis.
    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let distinct = Distinct::new(&self.keys);
        let results = node.get_many(&distinct.keys).await;
        if let Some(e) = failure(&results, "MGET") {
            return e;
        }
        Reply::Array(
            distinct
                .slots
                .iter()
                .map(|&slot| Reply::bulk_or_null(results[slot].as_ref().ok().cloned().flatten()))
                .collect(),
        )
    }
}
