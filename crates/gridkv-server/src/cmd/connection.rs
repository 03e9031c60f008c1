//! Connection commands with no state of their own: `PING [message]`,
//! `ECHO message`, `SELECT 0` (GridKV has one database) and `QUIT`.

use bytes::Bytes;

use super::args::parse_int;
use super::error::ParseError;
use crate::resp::Reply;

/// `PING [message]`: `PONG`, or the message back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// The message to send back.
    pub message: Option<Bytes>,
}

impl Ping {
    pub(crate) fn parse(args: Vec<Bytes>) -> Result<Self, ParseError> {
        if args.len() > 2 {
            return Err(ParseError::Arity("ping"));
        }
        Ok(Ping {
            message: args.into_iter().nth(1),
        })
    }

    pub(crate) fn apply(self) -> Reply {
        self.message
            .map_or_else(|| Reply::Simple("PONG".into()), Reply::Bulk)
    }
}

/// `ECHO message`.
pub(crate) fn parse_echo(mut args: Vec<Bytes>) -> Bytes {
    args.swap_remove(1)
}

/// `SELECT index`: only database 0 exists.
pub(crate) fn parse_select(args: &[Bytes]) -> Result<(), ParseError> {
    if parse_int(&args[1]) == Some(0) {
        Ok(())
    } else {
        Err(ParseError::Refused(
            "ERR DB index is out of range (GridKV has one database, 0)".into(),
        ))
    }
}
