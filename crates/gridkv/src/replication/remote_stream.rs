//! The cross-datacenter streams: writes for owners in other datacenters
//! that a local consistency level does not wait for, queued per remote
//! datacenter and sent in batches by one task per node
//! ([`super::remote_sender`]).
//!
//! Each datacenter's queue is bounded ([`MAX_QUEUED`] writes,
//! [`MAX_QUEUED_BYTES`] bytes). A write that does not fit, or whose
//! owner is unreachable when its batch goes, is kept as a hint for the
//! owner (hints are bounded and expire: see `hints`); one that finds the
//! hints full too is counted and left to anti-entropy, which the remote
//! owners run against this datacenter every interval, digests first. The
//! lag of a datacenter, the age of its oldest write not yet acknowledged,
//! is in `ReplicationStats` and `/cluster`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::id::NodeId;

/// Most writes queued for one remote datacenter.
pub(crate) const MAX_QUEUED: usize = 100_000;
/// Most bytes of writes queued for one remote datacenter.
pub(crate) const MAX_QUEUED_BYTES: usize = 64 << 20;
/// Most remote datacenters streamed to (datacenter labels come from
/// members; this bounds the table whatever gossip says).
pub(crate) const MAX_DATACENTERS: usize = 64;
/// Most writes one batch takes from a queue.
pub(crate) const BATCH: usize = 256;

/// One write on its way to an owner in another datacenter.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    /// The owner it is for.
    pub(crate) owner: NodeId,
    /// The encoded write (a plain [`super::wire::DataRequest::Write`]).
    pub(crate) body: Bytes,
    /// When it was queued.
    pub(crate) queued_at: Instant,
}

#[derive(Debug, Default)]
struct Queue {
    writes: VecDeque<Outbound>,
    bytes: usize,
    /// When the oldest write of the batch being sent was queued.
    sending_since: Option<Instant>,
}

/// What one remote datacenter's stream holds and has done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    /// The datacenter.
    pub datacenter: String,
    /// Writes queued, not yet sent.
    pub queued: usize,
    /// How long the oldest write not yet acknowledged (queued, or in the
    /// batch being sent) has waited: the replication lag to it.
    pub lag: Duration,
}

/// The per-datacenter queues, and counters of what happened to writes.
#[derive(Debug, Default)]
pub(crate) struct RemoteStreams {
    queues: Mutex<BTreeMap<String, Queue>>,
    /// Wakes the sender.
    pub(crate) ready: Notify,
    /// Writes acknowledged by their remote owner.
    pub(crate) sent: AtomicU64,
    /// Writes that became hints (a full queue, or an owner unreachable).
    pub(crate) hinted: AtomicU64,
    /// Writes neither queued nor hinted: left to anti-entropy.
    pub(crate) overflowed: AtomicU64,
}

impl RemoteStreams {
    /// Queues `write` for `owner` in datacenter `dc`; gives it back if the
    /// queue is full (the caller keeps a hint instead).
    pub(crate) fn push(&self, dc: &str, write: Outbound) -> Result<(), Outbound> {
        let mut queues = self.queues.lock();
        if !queues.contains_key(dc) && queues.len() >= MAX_DATACENTERS {
            return Err(write);
        }
        let q = queues.entry(dc.to_owned()).or_default();
        if q.writes.len() >= MAX_QUEUED || q.bytes + write.body.len() > MAX_QUEUED_BYTES {
            return Err(write);
        }
        q.bytes += write.body.len();
        q.writes.push_back(write);
        drop(queues);
        self.ready.notify_one();
        Ok(())
    }

    /// Takes up to [`BATCH`] writes of one datacenter with writes queued
    /// (each in turn), marking the batch as being sent.
    pub(crate) fn next_batch(&self) -> Option<(String, Vec<Outbound>)> {
        let mut queues = self.queues.lock();
        let (dc, q) = queues
            .iter_mut()
            .filter(|(_, q)| !q.writes.is_empty() && q.sending_since.is_none())
            .min_by_key(|(_, q)| q.writes.front().map(|w| w.queued_at))?;
        let take = q.writes.len().min(BATCH);
        let batch: Vec<Outbound> = q.writes.drain(..take).collect();
        q.bytes -= batch.iter().map(|w| w.body.len()).sum::<usize>();
        q.sending_since = batch.first().map(|w| w.queued_at);
        Some((dc.clone(), batch))
    }

    /// The batch of `dc` is done (acknowledged, or hinted).
    pub(crate) fn batch_done(&self, dc: &str) {
        let mut queues = self.queues.lock();
        if let Some(q) = queues.get_mut(dc) {
            q.sending_since = None;
            if q.writes.is_empty() {
                queues.remove(dc);
            }
        }
        drop(queues);
        self.ready.notify_one();
    }

    /// Each remote datacenter with writes queued or being sent.
    pub(crate) fn status(&self) -> Vec<StreamStatus> {
        let now = Instant::now();
        self.queues
            .lock()
            .iter()
            .map(|(dc, q)| {
                let oldest = q.sending_since.or(q.writes.front().map(|w| w.queued_at));
                StreamStatus {
                    datacenter: dc.clone(),
                    queued: q.writes.len(),
                    lag: oldest.map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
                }
            })
            .collect()
    }

    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(owner: &str, len: usize) -> Outbound {
        Outbound {
            owner: NodeId::new(owner).unwrap(),
            body: Bytes::from(vec![0u8; len]),
            queued_at: Instant::now(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn queues_are_bounded_batched_and_report_their_lag() {
        let streams = RemoteStreams::default();
        for _ in 0..MAX_QUEUED {
            streams.push("b", write("b1", 1)).unwrap();
        }
        assert!(streams.push("b", write("b1", 1)).is_err(), "full by count");
        assert!(streams.push("c", write("c1", MAX_QUEUED_BYTES + 1)).is_err(), "full by bytes");
        tokio::time::advance(Duration::from_millis(300)).await;
        let (dc, batch) = streams.next_batch().unwrap();
        assert_eq!((dc.as_str(), batch.len()), ("b", BATCH));
        // One batch per datacenter at a time.
        assert!(streams.next_batch().is_none());
        let status = streams.status();
        assert_eq!(status[0].queued, MAX_QUEUED - BATCH);
        assert_eq!(status[0].lag, Duration::from_millis(300));
        streams.batch_done("b");
        assert!(streams.next_batch().is_some());
        for d in 0..MAX_DATACENTERS {
            let _ = streams.push(&format!("dc{d}"), write("x", 1));
        }
        assert!(streams.push("one-too-many", write("x", 1)).is_err());
    }
}
