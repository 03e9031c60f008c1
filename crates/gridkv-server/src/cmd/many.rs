//! Commands on several keys: one reply for many results. If any key
//! failed, the whole reply is an error that says how many keys failed and
//! why the first one did (the writes that succeeded stay written).

use gridkv::Error;

use super::error::error_reply;
use crate::resp::Reply;

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
