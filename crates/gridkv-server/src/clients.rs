//! The node-wide account of what RESP clients hold in memory: each
//! client's input not yet parsed into a command and its replies not yet
//! written. One client may hold at most `--max-client-output` of replies;
//! all clients together at most `--max-clients-memory` of both, and past it
//! the heaviest client is closed (as Redis's `client-output-buffer-limit`
//! closes a client whose replies pile up), so a few clients that send
//! commands with large replies and never read cannot take the node's
//! memory.
//!
//! Updating a client's figures is two atomic additions, and none while
//! they stay under [`SMALL`] (4 KiB: a client's usual command and reply;
//! the totals are exact to within that per client). The registry's lock
//! is taken only when a client connects or leaves, or when the total is
//! over the bound and the heaviest client must be found.
//!
//! # Examples
//!
//! ```
//! use gridkv_server::clients::ClientsMemory;
//! use gridkv_server::limits::Limit;
//!
//! const K: u64 = 1 << 20;
//! let all = ClientsMemory::new(100 * K, 150 * K);
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let a = all.register(1, &shutdown);
//! let b = all.register(2, &shutdown);
//! assert_eq!(a.set_output(101 << 20), Err(Limit::ClientOutput));
//! a.set_output(90 << 20).unwrap();
//! // b pushes the total past 150 MiB; a is the heavier, so a is closed.
//! b.set_input(70 << 20).unwrap();
//! assert!(a.is_closed() && !b.is_closed());
//! drop(a);
//! assert_eq!(all.totals(), (70 * K, 0));
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::limits::Limit;

/// Figures below this many bytes are not recorded (see
/// [`ClientAccount::set_input`]).
pub const SMALL: u64 = 4 << 10;

/// One client's figures, shared between its connection and the registry.
#[derive(Debug, Default)]
struct ClientMem {
    input: AtomicU64,
    output: AtomicU64,
    /// Bytes counted as about to be freed since it was picked to close.
    marked: AtomicU64,
    /// Fires when the registry closes this client (or at shutdown: a
    /// child of the server's token).
    closed: CancellationToken,
}

impl ClientMem {
    fn held(&self) -> u64 {
        self.input.load(Relaxed) + self.output.load(Relaxed)
    }
}

/// Every RESP client's pending input and output on one node, and the
/// bounds on them (see the [module docs](self)).
#[derive(Debug)]
pub struct ClientsMemory {
    max_client_output: u64,
    max_total: u64,
    input: AtomicU64,
    output: AtomicU64,
    peak: AtomicU64,
    /// Bytes of clients picked to close that have not left yet: they do
    /// not count toward the bound, so one excess closes one client.
    closing: AtomicU64,
    registry: Mutex<HashMap<u64, Arc<ClientMem>>>,
    last_log: Mutex<Option<Instant>>,
}

impl ClientsMemory {
    /// An empty registry: each client may hold `max_client_output` bytes
    /// of replies, all together `max_total` bytes of input and output.
    pub fn new(max_client_output: u64, max_total: u64) -> Self {
        Self {
            max_client_output,
            max_total,
            input: AtomicU64::new(0),
            output: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            closing: AtomicU64::new(0),
            registry: Mutex::new(HashMap::new()),
            last_log: Mutex::new(None),
        }
    }

    /// The per-client bound on replies not yet written.
    pub fn max_client_output(&self) -> u64 {
        self.max_client_output
    }

    /// The node-wide bound.
    pub fn max_total(&self) -> u64 {
        self.max_total
    }

    /// Starts accounting for client `id`; its figures are removed when the
    /// returned account is dropped. [`ClientAccount::closed`] fires when
    /// the registry closes the client or when `shutdown` fires: the
    /// connection waits on one signal, not two, on every read.
    pub fn register(&self, id: u64, shutdown: &CancellationToken) -> ClientAccount<'_> {
        let mem = Arc::new(ClientMem {
            closed: shutdown.child_token(),
            ..ClientMem::default()
        });
        self.registry
            .lock()
            .expect("clients registry")
            .insert(id, mem.clone());
        ClientAccount { all: self, id, mem }
    }

    /// Input and output bytes all clients hold now.
    pub fn totals(&self) -> (u64, u64) {
        (self.input.load(Relaxed), self.output.load(Relaxed))
    }

    /// The most input and output bytes all clients held at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Relaxed)
    }

    /// After a change: if the node is over its bound, closes the heaviest
    /// client not already closing. `Err` when that is `me`.
    fn enforce(&self, me: u64) -> Result<(), Limit> {
        let total = self.input.load(Relaxed) + self.output.load(Relaxed);
        self.peak.fetch_max(total, Relaxed);
        if total.saturating_sub(self.closing.load(Relaxed)) <= self.max_total {
            return Ok(());
        }
        let registry = self.registry.lock().expect("clients registry");
        let heaviest = registry
            .iter()
            .filter(|(_, c)| !c.closed.is_cancelled())
            .max_by_key(|(_, c)| c.held());
        let Some((&id, victim)) = heaviest else {
            return Ok(());
        };
        let held = victim.held();
        victim.marked.store(held, Relaxed);
        self.closing.fetch_add(held, Relaxed);
        victim.closed.cancel();
        drop(registry);
        self.log_close(id, held);
        if id == me {
            Err(Limit::ClientsMemory)
        } else {
            Ok(())
        }
    }

    /// Logs a closed client, at most once a second (a flood of hostile
    /// clients must not flood the log).
    fn log_close(&self, id: u64, held: u64) {
        let mut last = self.last_log.lock().expect("clients log");
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            "closing RESP client {id} holding {held} bytes: all clients hold more than \
             max-clients-memory ({} bytes); further closes this second are not logged",
            self.max_total
        );
    }
}

/// One client's entry in [`ClientsMemory`], held by its connection.
#[derive(Debug)]
pub struct ClientAccount<'a> {
    all: &'a ClientsMemory,
    id: u64,
    mem: Arc<ClientMem>,
}

impl ClientAccount<'_> {
    /// Records that the client's unparsed input is now `bytes` (a figure
    /// under [`SMALL`] replacing one under it is not recorded).
    ///
    /// # Errors
    ///
    /// [`Limit::ClientsMemory`] when the node is over its bound and this
    /// client is the heaviest: close it.
    pub fn set_input(&self, bytes: usize) -> Result<(), Limit> {
        if !Self::set(&self.mem.input, &self.all.input, bytes as u64) {
            return Ok(());
        }
        self.all.enforce(self.id)
    }

    /// Records that the client's replies not yet written are now `bytes`.
    ///
    /// # Errors
    ///
    /// [`Limit::ClientOutput`] past the per-client bound, or
    /// [`Limit::ClientsMemory`] as [`set_input`](Self::set_input).
    pub fn set_output(&self, bytes: usize) -> Result<(), Limit> {
        self.set_output_exempt(bytes, 0)
    }

    /// As [`set_output`](Self::set_output), where `exempt` of the `bytes`
    /// are bounded another way (the replies of a pipeline's group, at most
    /// 64 values): counted toward the node's bound, not the client's.
    ///
    /// # Errors
    ///
    /// As [`set_output`](Self::set_output).
    pub fn set_output_exempt(&self, bytes: usize, exempt: usize) -> Result<(), Limit> {
        if !Self::set(&self.mem.output, &self.all.output, bytes as u64) {
            return Ok(());
        }
        if bytes.saturating_sub(exempt) as u64 > self.all.max_client_output {
            return Err(Limit::ClientOutput);
        }
        self.all.enforce(self.id)
    }

    /// Records `bytes`; `false` when the change was too small to record.
    fn set(mine: &AtomicU64, total: &AtomicU64, bytes: u64) -> bool {
        // A few KiB of input or replies, the usual case, are not worth
        // four atomic updates per command: the figures are exact to within
        // `SMALL` per client.
        if bytes < SMALL && mine.load(Relaxed) < SMALL {
            return false;
        }
        let old = mine.swap(bytes, Relaxed);
        if bytes >= old {
            total.fetch_add(bytes - old, Relaxed);
        } else {
            total.fetch_sub(old - bytes, Relaxed);
        }
        true
    }

    /// Whether the registry closed this client to free memory (or the
    /// server is shutting down).
    pub fn is_closed(&self) -> bool {
        self.mem.closed.is_cancelled()
    }

    /// Waits until the registry closes this client, or shutdown.
    pub async fn closed(&self) {
        self.mem.closed.cancelled().await;
    }
}

impl Drop for ClientAccount<'_> {
    fn drop(&mut self) {
        Self::set(&self.mem.input, &self.all.input, 0);
        Self::set(&self.mem.output, &self.all.output, 0);
        self.all
            .closing
            .fetch_sub(self.mem.marked.load(Relaxed), Relaxed);
        self.all
            .registry
            .lock()
            .expect("clients registry")
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = SMALL;

    fn n(k: u64) -> usize {
        (k * K) as usize
    }

    #[test]
    fn one_excess_closes_one_client() {
        let all = ClientsMemory::new(1000 * K, 100 * K);
        let clients: Vec<_> = (0..4)
            .map(|id| all.register(id, &CancellationToken::new()))
            .collect();
        clients[2].set_output(n(30)).unwrap();
        for c in &clients {
            c.set_input(n(20)).unwrap();
        }
        // 110 > 100: the heaviest (client 2, 50) is closed, once.
        assert!(clients[2].is_closed());
        clients[0].set_input(n(25)).unwrap();
        let closed = clients.iter().filter(|c| c.is_closed()).count();
        assert_eq!(closed, 1, "its bytes count as freed until it leaves");
        assert_eq!(all.peak(), 115 * K);
    }

    #[test]
    fn the_heaviest_is_told_when_it_is_itself() {
        let all = ClientsMemory::new(1000 * K, 100 * K);
        let a = all.register(1, &CancellationToken::new());
        let b = all.register(2, &CancellationToken::new());
        b.set_input(n(10)).unwrap();
        assert_eq!(a.set_output(n(101)), Err(Limit::ClientsMemory));
        drop(a);
        assert_eq!(all.totals(), (10 * K, 0));
        assert!(!b.is_closed());
    }

    #[test]
    fn exempt_bytes_count_for_the_node_only() {
        let all = ClientsMemory::new(10 * K, 100 * K);
        let a = all.register(1, &CancellationToken::new());
        a.set_output_exempt(n(50), n(45)).unwrap();
        assert_eq!(all.totals(), (0, 50 * K));
        assert_eq!(a.set_output_exempt(n(50), n(30)), Err(Limit::ClientOutput));
        assert_eq!(
            a.set_output_exempt(n(101), n(101)),
            Err(Limit::ClientsMemory)
        );
    }

    #[test]
    fn small_figures_are_not_recorded_but_a_fall_to_them_is() {
        let all = ClientsMemory::new(1000 * K, 100 * K);
        let a = all.register(1, &CancellationToken::new());
        a.set_input(100).unwrap();
        assert_eq!(all.totals(), (0, 0));
        a.set_input(n(2)).unwrap();
        a.set_input(100).unwrap();
        assert_eq!(all.totals(), (100, 0));
    }
}
