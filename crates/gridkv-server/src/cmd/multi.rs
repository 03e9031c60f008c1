//! `MULTI`, `EXEC`, `DISCARD`: an ordered batch of commands, run one after
//! another when `EXEC` comes, their replies in one array. Clients use it
//! without meaning a transaction: redis-py's default pipeline wraps its
//! commands in `MULTI`/`EXEC`, and Django's `set_many` and dogpile's
//! `set_multi` use that pipeline.
//!
//! **Not atomic, not isolated.** Other clients' commands interleave with
//! the batch's; a command that fails leaves the ones before it applied (its
//! error takes its place in the array). A command refused while queueing
//! (unknown, wrong arguments, not permitted) discards the whole batch at
//! `EXEC` (`-EXECABORT`), as in Redis. `WATCH` is refused: there is no
//! compare-and-set to build it on. `UNWATCH` answers `OK`.
//!
//! The queue is bounded: at most [`MAX_QUEUED`] commands and
//! [`MAX_QUEUED_BYTES`] of their arguments; past either, the batch is
//! discarded and the client told. `EXEC` holds the replies until the last
//! one: once they pass the client's output bound (`--max-client-output`),
//! the rest of the batch is not run and each answers an error saying so.

use bytes::Bytes;

use super::{Client, Command, Commands};
use crate::resp::Reply;
use crate::session::Session;
use crate::shared::Shared;

/// Most commands one `MULTI` queues.
pub const MAX_QUEUED: usize = 100_000;
/// Most bytes of arguments one `MULTI` queues.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

/// The commands queued since `MULTI`.
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    commands: Vec<Command>,
    bytes: usize,
    /// A command was refused while queueing: `EXEC` discards the batch.
    failed: bool,
}

impl Transaction {
    /// How many commands are queued.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Marks the batch failed: a command was refused while queueing.
    pub(crate) fn fail(&mut self) {
        self.failed = true;
    }
}

/// Whether `command`, sent while a batch is open, is queued (the others
/// run at once: `EXEC`, `DISCARD`, `MULTI`, `WATCH`, `UNWATCH`, `QUIT`).
pub(crate) fn queues(command: &Command) -> bool {
    !matches!(
        command,
        Command::Multi | Command::Exec | Command::Discard | Command::Unwatch | Command::Quit
    )
}

/// Queues `command` in the session's open batch; the reply (`QUEUED`, or
/// why the batch is discarded).
pub(crate) fn queue(session: &mut Session, command: Command) -> Reply {
    let Some(tx) = session.transaction.as_mut() else {
        unreachable!("queue is called inside MULTI only")
    };
    let bytes = weight(&command);
    if tx.commands.len() >= MAX_QUEUED || tx.bytes + bytes > MAX_QUEUED_BYTES {
        // Free what is held now: the batch will be discarded anyway.
        tx.commands = Vec::new();
        tx.bytes = 0;
        tx.failed = true;
        return Reply::error(format!(
            "ERR MULTI queue is full (at most {MAX_QUEUED} commands and \
             {MAX_QUEUED_BYTES} bytes): EXEC will discard the batch"
        ));
    }
    tx.bytes += bytes;
    tx.commands.push(command);
    Reply::Simple("QUEUED".into())
}

/// About how many bytes `command` holds: its keys and values, and a
/// little for the rest.
fn weight(command: &Command) -> usize {
    let mut bytes = 64;
    command.all_keys(|key| {
        bytes += key.len();
        true
    });
    let opt = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
    let all = |v: &[Bytes]| v.iter().map(Bytes::len).sum::<usize>();
    bytes
        + match command {
            Command::Set(c) | Command::SetNx(c) | Command::SetEx(c) | Command::PSetEx(c) => {
                c.value.len()
            }
            Command::MSet(mset) => mset.pairs.iter().map(|(_, v)| v.len()).sum(),
            Command::Echo(message) => message.len(),
            Command::Ping(ping) => opt(&ping.message),
            Command::Client(Client::SetName(name) | Client::SetInfo(_, name)) => opt(name),
            Command::Config(config) => all(&config.patterns),
            Command::Commands(Commands::Info(names)) => all(names),
            Command::Auth(auth) => auth.password.len() + opt(&auth.user),
            Command::Hello(hello) => {
                hello.auth.as_ref().map_or(0, |(u, p)| u.len() + p.len())
                    + hello.name.as_ref().map_or(0, opt)
            }
            Command::Keys(keys) => keys.pattern.as_bytes().len(),
            Command::Scan(scan) => scan.pattern.as_ref().map_or(0, |p| p.as_bytes().len()),
            _ => 0,
        }
}

/// `MULTI`: opens a batch.
pub(crate) fn multi(session: &mut Session) -> Reply {
    if session.transaction.is_some() {
        return Reply::error("ERR MULTI calls can not be nested");
    }
    session.transaction = Some(Transaction::default());
    Reply::ok()
}

/// `DISCARD`: drops the open batch.
pub(crate) fn discard(session: &mut Session) -> Reply {
    match session.transaction.take() {
        Some(_) => Reply::ok(),
        None => Reply::error("ERR DISCARD without MULTI"),
    }
}

/// `EXEC`: runs the batch, in order, one command at a time; their replies
/// in one array.
pub(crate) async fn exec(shared: &Shared, session: &mut Session) -> Reply {
    let Some(tx) = session.transaction.take() else {
        return Reply::error("ERR EXEC without MULTI");
    };
    if tx.failed {
        return Reply::error("EXECABORT Transaction discarded because of previous errors.");
    }
    // The replies are held until the last: bounded by the client's
    // output bound, past which the rest of the batch is not run.
    let bound = shared.memory.max_client_output() as usize;
    let mut held = 0usize;
    let mut replies = Vec::with_capacity(tx.commands.len());
    let mut commands = tx.commands.into_iter();
    for command in commands.by_ref() {
        let reply = Box::pin(command.apply(shared, session)).await;
        held += reply.payload_len() + 16;
        let over = held > bound;
        if reply.is_error() {
            shared
                .stats
                .error_replies
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        replies.push(reply);
        if over {
            break;
        }
    }
    let left = commands.len();
    if left > 0 {
        let why =
            format!("ERR not run: EXEC's replies passed the client output bound ({bound} bytes)");
        replies.extend((0..left).map(|_| Reply::error(why.clone())));
    }
    Reply::Array(replies)
}

/// `WATCH key...`: refused, with why.
pub(crate) fn watch_refused() -> super::ParseError {
    super::ParseError::Refused(
        "ERR WATCH is not supported: GridKV has no compare-and-set (MULTI/EXEC is an ordered \
         batch, not a transaction)"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(words: &[&str]) -> Command {
        Command::parse(
            words
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn queueing_is_bounded_and_a_full_queue_discards_the_batch() {
        let mut session = Session::new(1, "127.0.0.1:1".parse().unwrap());
        assert!(multi(&mut session) == Reply::ok());
        assert!(multi(&mut session).is_error(), "nested");
        let big = "v".repeat(1 << 20);
        let mut refused = None;
        for i in 0..=MAX_QUEUED_BYTES >> 20 {
            // SETEX's value counts as SET's does.
            let words = if i % 2 == 0 {
                vec!["SET".to_owned(), format!("k{i}"), big.clone()]
            } else {
                vec![
                    "SETEX".to_owned(),
                    format!("k{i}"),
                    "10".to_owned(),
                    big.clone(),
                ]
            };
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let reply = queue(&mut session, command(&words));
            if reply.is_error() {
                refused = Some(i);
                break;
            }
        }
        assert_eq!(
            refused,
            Some(63),
            "64 MiB hold 63 values of 1 MiB and their keys"
        );
        let tx = session.transaction.as_ref().unwrap();
        assert!(tx.failed && tx.is_empty());
        assert!(discard(&mut session) == Reply::ok());
        assert!(discard(&mut session).is_error(), "no batch open");
        assert!(!queues(&command(&["EXEC"])));
        assert!(queues(&command(&["GET", "k"])));
    }
}
