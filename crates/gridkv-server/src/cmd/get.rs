//! `GET key` and `MGET key...`: quorum reads (R owners answer).

use bytes::Bytes;
use gridkv::GridKv;

use super::error::error_reply;
use super::many::{BATCH, Distinct, failure};
use crate::resp::{Protocol, Reply};
use crate::writer::{ClientStream, Closed, Output};

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
    /// Redis. Builds the whole reply: the server uses
    /// [`stream`](Self::stream).
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

    /// Reads the keys in batches and writes each batch's values as it
    /// goes, so the reply is never held whole: `MGET` of a 1 MB key named
    /// a million times holds one value, not a terabyte. A batch holds at
    /// most about half the client's output bound (sized from the values
    /// read so far), at most [`BATCH`] keys. A key named again later is
    /// kept until its last position, so every position of one key answers
    /// the same read, as in Redis; what is kept counts against the bound.
    ///
    /// Returns the error reply when the first batch fails (nothing is
    /// written yet). A later batch that fails cannot be answered with an
    /// error in the middle of the array: the connection is closed.
    pub(crate) async fn stream<S: ClientStream>(
        self,
        node: &GridKv,
        out: &mut Output<'_, S>,
        protocol: Protocol,
    ) -> Result<Option<Reply>, Closed> {
        let distinct = Distinct::new(&self.keys);
        let mut last_use = vec![0usize; distinct.keys.len()];
        for (position, &slot) in distinct.slots.iter().enumerate() {
            last_use[slot] = position;
        }
        let budget = (out.max_output() / 2).max(1);
        let max_value = node.store().config().max_value_len.max(1);
        let mut batch = (budget / max_value).clamp(1, BATCH);
        let mut values: Vec<Option<Bytes>> = vec![None; distinct.keys.len()];
        let mut fetched = 0;
        let mut held = 0;
        for (position, &slot) in distinct.slots.iter().enumerate() {
            if slot == fetched {
                let end = (fetched + batch).min(distinct.keys.len());
                let results = node.get_many(&distinct.keys[fetched..end]).await;
                if let Some(error) = failure(&results, "MGET") {
                    if position == 0 {
                        return Ok(Some(error));
                    }
                    let Reply::Error(message) = error else {
                        unreachable!("failure is an error reply")
                    };
                    return Err(Closed::MidReply(message));
                }
                let mut read = 0;
                for (at, result) in (fetched..end).zip(results) {
                    let value = result.ok().flatten();
                    read += value.as_ref().map_or(0, Bytes::len);
                    values[at] = value;
                }
                held += read;
                out.hold(held)?;
                batch = (budget / (read / (end - fetched)).max(1)).clamp(1, BATCH);
                fetched = end;
                if position == 0 {
                    out.array_header(distinct.slots.len());
                }
            }
            let value = if last_use[slot] == position {
                values[slot].take()
            } else {
                values[slot].clone()
            };
            match value {
                Some(v) => {
                    if last_use[slot] == position {
                        held -= v.len();
                        out.hold(held)?;
                    }
                    out.bulk(&v).await?;
                }
                None => out.reply(&Reply::Null, protocol).await?,
            }
        }
        Ok(None)
    }
}
