//! The work one test hands out to its clients (a shared counter, a
//! deadline) and the Ctrl-C flag they all watch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::args::TestKind;

/// Ctrl-C as seen by the bench: the first asks the clients to stop after
/// their in-flight batch, the second stops waiting for them.
#[derive(Debug, Default)]
pub(super) struct Interrupt {
    pub(super) stop: AtomicBool,
    pub(super) abort: Notify,
}

impl Interrupt {
    pub(super) async fn watch_ctrl_c(self: Arc<Self>) {
        // Without a signal handler there is nothing to watch; the bench
        // still runs, Ctrl-C just kills it the default way.
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        self.stop.store(true, Ordering::Relaxed);
        if tokio::signal::ctrl_c().await.is_ok() {
            // `notify_one` keeps a permit if nobody waits yet.
            self.abort.notify_one();
        }
    }
}

/// One test's shared state: what to send, how much, and how far it got.
/// Owned by the test; every client holds an `Arc` of it.
pub(super) struct Job {
    pub(super) kind: TestKind,
    pub(super) pipeline: usize,
    pub(super) keyspace: u64,
    pub(super) read_ratio: f64,
    /// The SET value, pre-encoded as a bulk string (`$<len>\r\n<data>\r\n`),
    /// so a SET copies it instead of formatting it.
    pub(super) value: Vec<u8>,
    /// Commands claimed so far. Clients claim batches from this one counter,
    /// so a test sends exactly `total` commands. It may pass `total` by a
    /// batch per client: harmless, and cheaper than a compare-and-swap loop.
    pub(super) issued: AtomicU64,
    /// `--requests`, or `u64::MAX` for none.
    pub(super) total: u64,
    /// When to stop sending new batches, with `--duration`.
    pub(super) deadline: Option<Instant>,
    /// Replies received so far, for the progress bar.
    pub(super) done: AtomicU64,
    pub(super) interrupt: Arc<Interrupt>,
}

impl Job {
    /// Claims up to `pipeline` commands for the next batch; 0 means stop.
    pub(super) fn claim(&self, now: Instant) -> usize {
        if self.interrupt.stop.load(Ordering::Relaxed)
            || self.deadline.is_some_and(|deadline| now >= deadline)
        {
            return 0;
        }
        if self.total == u64::MAX {
            return self.pipeline;
        }
        let want = self.pipeline as u64;
        let before = self.issued.fetch_add(want, Ordering::Relaxed);
        self.total.saturating_sub(before).min(want) as usize
    }
}

/// Aborts a background task when dropped, so no return path of [`run`]
/// leaves a ticker or a signal watcher behind.
pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
