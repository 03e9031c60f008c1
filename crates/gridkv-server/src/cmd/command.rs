//! `COMMAND`, `COMMAND COUNT`, `COMMAND INFO name...` and `COMMAND DOCS`:
//! what clients and `redis-cli` ask to learn which commands exist.

use bytes::Bytes;

use super::args::is;
use super::error::ParseError;
use super::table::{self, COMMANDS, Spec};
use crate::resp::Reply;

/// A parsed `COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commands {
    /// `COMMAND`: every command.
    All,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND INFO name...`.
    Info(Vec<Bytes>),
    /// `COMMAND DOCS ...`: no docs (redis-cli asks, to show hints; it
    /// works without them).
    Docs,
}

impl Commands {
    pub(crate) fn parse(mut args: Vec<Bytes>) -> Result<Self, ParseError> {
        let Some(sub) = args.get(1) else {
            return Ok(Commands::All);
        };
        if is(sub, "COUNT") {
            Ok(Commands::Count)
        } else if is(sub, "INFO") {
            Ok(Commands::Info(args.split_off(2)))
        } else if is(sub, "DOCS") {
            Ok(Commands::Docs)
        } else {
            Err(ParseError::Refused(
                "ERR unknown subcommand of 'command'".into(),
            ))
        }
    }

    pub(crate) fn apply(self) -> Reply {
        match self {
            Commands::All => Reply::Array(COMMANDS.iter().map(info).collect()),
            Commands::Count => Reply::Integer(COMMANDS.len() as i64),
            Commands::Info(names) => Reply::Array(
                names
                    .iter()
                    .map(|n| table::find(n).map_or(Reply::NullArray, info))
                    .collect(),
            ),
            // A map of command to docs in RESP3, as Redis.
            Commands::Docs => Reply::Map(Vec::new()),
        }
    }
}

/// One command's entry: name, arity, flags (a set in RESP3, as Redis),
/// first key, last key, key step.
fn info(c: &Spec) -> Reply {
    Reply::Array(vec![
        Reply::bulk(c.name),
        Reply::Integer(c.arity),
        Reply::Set(c.flags.iter().map(|f| Reply::Simple((*f).into())).collect()),
        Reply::Integer(c.first_key),
        Reply::Integer(c.last_key),
        Reply::Integer(c.step),
    ])
}
