//! RESP, the Redis serialization protocol: a [`Parser`] splits
//! client commands off a connection's buffer, and [`Reply`] writes answers
//! in RESP2 or RESP3 ([`Protocol`]), whichever the connection chose.

mod parse;
mod reply;

pub use parse::{Limits, Parser, ProtocolError, parse_command};
pub use reply::{Protocol, Reply};
