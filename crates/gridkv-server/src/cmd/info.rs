//! `INFO [section]` and `DBSIZE`: what the node reports of itself.

use bytes::Bytes;

use crate::resp::Reply;
use crate::shared::Shared;
use crate::stats::Snapshot;

/// `INFO [section]`: text in `# Section` and `field:value` lines (a
/// verbatim string in RESP3, as Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The section asked for; `None`, `all`, `everything` or `default`:
    /// every section.
    pub section: Option<Bytes>,
}

impl Info {
    pub(crate) fn parse(args: Vec<Bytes>) -> Self {
        Info {
            section: args.into_iter().nth(1),
        }
    }

    pub(crate) fn apply(self, shared: &Shared) -> Reply {
        let snapshot = Snapshot::take(shared);
        Reply::Verbatim(crate::info::render(&snapshot, self.section.as_deref()).into())
    }
}

/// `DBSIZE`: keys with a live value on this node, its share of the
/// cluster's keys and its replicas of others (see docs/SERVER.md).
pub(crate) fn dbsize(shared: &Shared) -> Reply {
    Reply::Integer(shared.node.store().stats().live as i64)
}
