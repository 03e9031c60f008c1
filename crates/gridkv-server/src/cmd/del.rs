//! `DEL key...` and `EXISTS key...`: each answers how many of its keys
//! were there. The library has no batch delete or exists, so the keys run
//! through [`bounded`] (a bounded number in flight at once).

use bytes::Bytes;
use gridkv::GridKv;

use super::many::{bounded, count};
use crate::resp::Reply;

/// `DEL key [key ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Del {
    /// The keys.
    pub keys: Vec<Bytes>,
}

impl Del {
    pub(crate) fn parse(mut args: Vec<Bytes>) -> Self {
        args.remove(0);
        Del { keys: args }
    }

    pub(crate) async fn apply(self, node: &GridKv) -> Reply {
        let results = bounded(self.keys.iter().map(|k| node.delete(k)).collect()).await;
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
        let results = bounded(self.keys.iter().map(|k| node.exists(k)).collect()).await;
        count(&results, "EXISTS")
    }
}
