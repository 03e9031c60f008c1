//! The bounds that keep one careless or hostile RESP client from
//! exhausting a node, each with a name: the flag that sets it, the text of
//! the error that reports it and the `limit` label of
//! `gridkv_resp_limit_exceeded_total`.
//!
//! The parser enforces the first four ([`crate::resp::Limits`]); the
//! connection's output and the node-wide registry of client memory
//! ([`crate::clients`]) enforce the last two.
//!
//! # Examples
//!
//! ```
//! use gridkv_server::limits::{Limit, LimitCounters};
//!
//! let counters = LimitCounters::default();
//! counters.hit(Limit::ClientOutput);
//! assert_eq!(counters.load()[Limit::ClientOutput as usize], 1);
//! assert_eq!(Limit::ClientOutput.name(), "max-client-output");
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One bound on a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `--max-command-bytes`: all the bytes of one command.
    CommandBytes,
    /// `--max-command-args`: the arguments of one command.
    CommandArgs,
    /// `--max-bulk-bytes`: one argument.
    BulkBytes,
    /// `--max-inline-bytes`: one inline (telnet-style) command.
    InlineBytes,
    /// `--max-client-output`: one client's replies not yet written.
    ClientOutput,
    /// `--max-clients-memory`: every client's pending input and output on
    /// the node together; past it the heaviest client is closed.
    ClientsMemory,
}

impl Limit {
    /// Every limit, in the order of [`LimitCounters::load`].
    pub const ALL: [Limit; 6] = [
        Limit::CommandBytes,
        Limit::CommandArgs,
        Limit::BulkBytes,
        Limit::InlineBytes,
        Limit::ClientOutput,
        Limit::ClientsMemory,
    ];

    /// The flag's name without dashes in front (`max-command-bytes`), as
    /// errors, logs and the metric's label say it.
    pub fn name(self) -> &'static str {
        match self {
            Limit::CommandBytes => "max-command-bytes",
            Limit::CommandArgs => "max-command-args",
            Limit::BulkBytes => "max-bulk-bytes",
            Limit::InlineBytes => "max-inline-bytes",
            Limit::ClientOutput => "max-client-output",
            Limit::ClientsMemory => "max-clients-memory",
        }
    }
}

/// How often each [`Limit`] was reached (a connection closed for it).
#[derive(Debug, Default)]
pub struct LimitCounters([AtomicU64; 6]);

impl LimitCounters {
    /// Counts one client that reached `limit`.
    pub fn hit(&self, limit: Limit) {
        self.0[limit as usize].fetch_add(1, Relaxed);
    }

    /// The counts now, indexed by `Limit as usize`.
    pub fn load(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.0[i].load(Relaxed))
    }
}
