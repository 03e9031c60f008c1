//! The task that sends the cross-datacenter streams' batches
//! ([`super::remote_stream`]), one datacenter's at a time per datacenter
//! and datacenters side by side: every write of a batch goes to its owner
//! at once (they share the peer's connection, so a batch leaves in a few
//! frames' worth of syscalls), and a write that is not acknowledged
//! within the node's timeout, or whose owner is unreachable, becomes a
//! hint for it.

use std::sync::Weak;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::coordinator::Coordinator;
use super::placement::Target;
use super::remote_stream::{Outbound, RemoteStreams};
use super::wire::DataResponse;

/// How long the sender sleeps when no queue wakes it (a backstop: a
/// push always wakes it).
const IDLE: Duration = Duration::from_secs(1);

/// Starts the sender of `coordinator`'s streams; it ends with `cancel`
/// or when the coordinator is dropped. Each remote datacenter's batches
/// go one at a time, and datacenters side by side: one whose owners time
/// out never holds up the streams to the others.
pub(crate) fn spawn(coordinator: Weak<Coordinator>, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut sending = tokio::task::JoinSet::new();
        loop {
            let Some(c) = coordinator.upgrade() else {
                return;
            };
            // A batch for every datacenter with writes waiting and none
            // in flight (at most one per datacenter: `next_batch`).
            while let Some((dc, batch)) = c.remote.next_batch() {
                let c = c.clone();
                sending.spawn(async move {
                    c.send_remote(batch).await;
                    c.remote.batch_done(&dc);
                });
            }
            let streams = c.remote.clone();
            drop(c);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    sending.abort_all();
                    return;
                }
                _ = streams.ready.notified() => {}
                Some(_) = sending.join_next() => {}
                _ = tokio::time::sleep(IDLE) => {}
            }
        }
    })
}

impl Coordinator {
    /// Sends one batch; what is not acknowledged within the timeout
    /// becomes a hint.
    async fn send_remote(&self, batch: Vec<Outbound>) {
        let p = self.placement.load_full();
        let mut pending = FuturesUnordered::new();
        let mut waiting: Vec<Option<Outbound>> = Vec::with_capacity(batch.len());
        for (i, write) in batch.into_iter().enumerate() {
            match p.target(&self.me, &write.owner) {
                Some(Target::Remote(addr)) => {
                    let answer = self.request(addr, write.body.clone());
                    pending.push(async move { (i, answer.await) });
                    waiting.push(Some(write));
                }
                // Down, left, or (never: it is remote) this node.
                _ => {
                    self.hint_remote(write);
                    waiting.push(None);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        while let Ok(Some((i, answer))) = tokio::time::timeout_at(deadline, pending.next()).await {
            let write = waiting[i].take().expect("one answer per write");
            match answer {
                Ok(DataResponse::Applied { .. } | DataResponse::Superseded { .. }) => {
                    RemoteStreams::count(&self.remote.sent);
                }
                _ => self.hint_remote(write),
            }
        }
        // Unanswered by the deadline.
        for write in waiting.into_iter().flatten() {
            self.hint_remote(write);
        }
    }

    /// Queues `body` (an encoded write) for `owner`, in another
    /// datacenter, on that datacenter's stream; a hint if the stream is
    /// full.
    pub(super) fn queue_remote(&self, p: &super::Placement, owner: crate::id::NodeId, body: bytes::Bytes) {
        let dc = p.ring.location(&owner).map_or("", |l| l.datacenter.as_str());
        let queued = Outbound {
            owner,
            body,
            queued_at: tokio::time::Instant::now(),
        };
        if let Err(write) = self.remote.push(dc, queued) {
            self.hint_remote(write);
        }
    }

    /// Keeps `write` as a hint for its owner; if the hints are full, it is
    /// left to anti-entropy.
    pub(super) fn hint_remote(&self, write: Outbound) {
        if self.hints.keep(write.owner, write.body, &self.counters) {
            RemoteStreams::count(&self.remote.hinted);
        } else {
            RemoteStreams::count(&self.remote.overflowed);
        }
    }
}
