//! Commands on several keys: one reply for many results. If any key
//! failed, the whole reply is an error that says how many keys failed and
//! why the first one did (the writes that succeeded stay written).
//!
//! A key named more than once is read or written once, as Redis runs the
//! command atomically: `DEL k k` deletes `k` once and counts it once,
//! `EXISTS k k` and `MGET k k` answer for every position from one read
//! (so the positions cannot disagree), `MSET k a k b` leaves `b`.

use std::collections::HashMap;

use bytes::Bytes;
use gridkv::Error;

use super::error::error_reply;
use crate::resp::Reply;

/// Keys of a multi-key command handled per step: `DEL`, `EXISTS` and
/// `MSET` run their keys this many at a time, and `MGET` reads at most this
/// many per batch, so a command of a million keys holds a bounded number
/// of futures and values at once.
pub(crate) const BATCH: usize = 1024;

/// Keys of one multi-key command in flight at once, for the operations
/// the library has no batch call for (delete, exists).
const KEY_CONCURRENCY: usize = 128;

/// Runs the calls concurrently (at most [`KEY_CONCURRENCY`] at a time),
/// results in order.
/// (Taking the futures collected, not an iterator, keeps the iterator's
/// closure out of the connection task's state, which must be `Send` for
/// every lifetime.)
pub(crate) async fn bounded<F, T>(calls: Vec<F>) -> Vec<T>
where
    F: Future<Output = T>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter(calls)
        .buffered(KEY_CONCURRENCY)
        .collect()
        .await
}

/// A command's keys, each once in the order first named, and for every
/// position the index of its key among them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Distinct<'a> {
    /// Each key once.
    pub(crate) keys: Vec<&'a Bytes>,
    /// `keys[slots[i]]` is the key named at position `i`.
    pub(crate) slots: Vec<usize>,
}

impl<'a> Distinct<'a> {
    pub(crate) fn new(named: &'a [Bytes]) -> Self {
        if let [only] = named {
            return Self {
                keys: vec![only],
                slots: vec![0],
            };
        }
        let mut index: HashMap<&[u8], usize> = HashMap::with_capacity(named.len());
        let mut keys = Vec::with_capacity(named.len());
        let slots = named
            .iter()
            .map(|key| {
                *index.entry(&key[..]).or_insert_with(|| {
                    keys.push(key);
                    keys.len() - 1
                })
            })
            .collect();
        Self { keys, slots }
    }
}

/// `MSET`'s pairs with each key once, holding the value named last for it
/// (in the order the keys were first named).
pub(crate) fn last_wins(pairs: Vec<(Bytes, Bytes)>) -> Vec<(Bytes, Bytes)> {
    if pairs.len() < 2 {
        return pairs;
    }
    let mut index: HashMap<Bytes, usize> = HashMap::with_capacity(pairs.len());
    let mut kept: Vec<(Bytes, Bytes)> = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        match index.get(&key) {
            Some(&at) => kept[at].1 = value,
            None => {
                index.insert(key.clone(), kept.len());
                kept.push((key, value));
            }
        }
    }
    kept
}

/// The error reply for a multi-key command if any key failed: how many
/// failed, and why the first did (one key: that key's reply as is).
pub(crate) fn failure<T>(results: &[Result<T, Error>], name: &str) -> Option<Reply> {
    let first = results.iter().find_map(|r| r.as_ref().err())?;
    let reply = error_reply(first);
    if results.len() == 1 {
        return Some(Reply::Error(reply));
    }
    let failed = results.iter().filter(|r| r.is_err()).count();
    let (code, why) = reply.split_once(' ').unwrap_or(("ERR", &reply));
    Some(Reply::Error(format!(
        "{code} {name} failed for {failed} of {} keys (the others succeeded); first: {why}",
        results.len()
    )))
}

/// How many results are `Ok(true)`, or [`failure`]'s reply.
pub(crate) fn count(results: &[Result<bool, Error>], name: &str) -> Reply {
    failure(results, name).unwrap_or_else(|| {
        Reply::Integer(results.iter().filter(|r| matches!(r, Ok(true))).count() as i64)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn partial_failures_say_so() {
        let results: Vec<Result<bool, Error>> = vec![
            Ok(true),
            Err(Error::QuorumNotReached {
                answered: 1,
                required: 2,
            }),
            Ok(false),
        ];
        let Reply::Error(msg) = count(&results, "DEL") else {
            panic!("not an error");
        };
        assert!(
            msg.starts_with("NOQUORUM DEL failed for 1 of 3 keys"),
            "{msg}"
        );
        let ok: Vec<Result<bool, Error>> = vec![Ok(true), Ok(false), Ok(true)];
        assert_eq!(count(&ok, "DEL"), Reply::Integer(2));
        let one: Vec<Result<(), Error>> = vec![Err(Error::Backpressure)];
        assert!(matches!(
            failure(&one, "MSET"),
            Some(Reply::Error(m)) if m.starts_with("BUSY backpressure")
        ));
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn a_key_named_twice_is_one_key_with_two_positions() {
        let named = [b("a"), b("b"), b("a"), b("c"), b("b")];
        let d = Distinct::new(&named);
        assert_eq!(d.keys, vec![&named[0], &named[1], &named[3]]);
        assert_eq!(d.slots, vec![0, 1, 0, 2, 1]);
        let one = [b("k")];
        assert_eq!(Distinct::new(&one).slots, vec![0]);
    }

    #[test]
    fn mset_keeps_the_value_named_last_for_a_key() {
        let pairs = vec![(b("k"), b("a")), (b("j"), b("1")), (b("k"), b("b"))];
        assert_eq!(last_wins(pairs), vec![(b("k"), b("b")), (b("j"), b("1"))]);
        assert_eq!(last_wins(vec![(b("k"), b("a"))]), vec![(b("k"), b("a"))]);
    }

    #[tokio::test]
    async fn bounded_keeps_order() {
        let r = bounded(
            (0..5u64)
                .map(|i| async move {
                    tokio::time::sleep(Duration::from_millis(10 * (5 - i))).await;
                    i
                })
                .collect(),
        )
        .await;
        assert_eq!(r, vec![0, 1, 2, 3, 4]);
    }
}
