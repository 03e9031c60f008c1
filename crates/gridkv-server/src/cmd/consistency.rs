//! `GRIDKV.CONSISTENCY [level|DEFAULT]`: the consistency level of the
//! connection's reads and writes.
//!
//! With a level (`ONE`, `LOCAL_ONE`, `LOCAL_QUORUM`, `QUORUM`,
//! `EACH_QUORUM`, `ALL`; any case, `_` optional), every later command of
//! the connection waits for the owners that level names (reads at
//! `EACH_QUORUM`, which is for writes, read at `LOCAL_QUORUM`). `DEFAULT`
//! goes back to the node's `--write-consistency` and `--read-consistency`
//! (or W and R). With no argument it answers the level in force: the
//! connection's, or the node's (`write=LEVEL read=LEVEL` when they
//! differ; `W=n R=n` when the node counts numbers).

use bytes::Bytes;
use gridkv::{ConsistencyLevel, GridKv};

use super::error::ParseError;
use crate::resp::Reply;
use crate::session::Session;

/// A parsed `GRIDKV.CONSISTENCY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetConsistency {
    /// Answer the level in force.
    Show,
    /// Use this level, or (`None`) the node's again.
    Set(Option<ConsistencyLevel>),
}

impl SetConsistency {
    pub(crate) fn parse(args: &[Bytes]) -> Result<Self, ParseError> {
        match args {
            [_] => Ok(SetConsistency::Show),
            [_, level] => {
                let text = std::str::from_utf8(level).map_err(|_| ParseError::Syntax)?;
                if text.eq_ignore_ascii_case("default") {
                    return Ok(SetConsistency::Set(None));
                }
                text.parse()
                    .map(|l| SetConsistency::Set(Some(l)))
                    .map_err(|reason: String| ParseError::Refused(format!("ERR {reason}").into()))
            }
            _ => Err(ParseError::Arity("gridkv.consistency")),
        }
    }

    pub(crate) fn apply(self, node: &GridKv, session: &mut Session) -> Reply {
        match self {
            SetConsistency::Set(level) => {
                session.consistency = level;
                Reply::ok()
            }
            SetConsistency::Show => {
                let shown = match session.consistency {
                    Some(level) => level.to_string(),
                    None => match node.consistency_levels() {
                        (Some(w), Some(r)) if w == r => w.to_string(),
                        (w, r) => {
                            let status = node.replication_status();
                            let name = |l: Option<ConsistencyLevel>, n: usize, numeric: &str| {
                                l.map_or_else(|| format!("{numeric}={n}"), |l| l.to_string())
                            };
                            let w = name(w, status.write_quorum, "W");
                            let r = name(r, status.read_quorum, "R");
                            match (w.contains('='), r.contains('=')) {
                                (true, true) => format!("{w} {r}"),
                                _ => format!("write={w} read={r}"),
                            }
                        }
                    },
                };
                Reply::Bulk(Bytes::from(shown))
            }
        }
    }
}
