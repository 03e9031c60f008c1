//! Bounded send queues and in-flight budgets, in frames and in bytes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::envelope::Envelope;

/// Which bound refused a frame or a request.
///
/// # Examples
///
/// ```
/// use gridkv::net::Limit;
///
/// assert_eq!(Limit::QueueBytes.to_string(), "send queue bytes");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Too many frames queued to one peer.
    QueueFrames,
    /// Too many bytes queued to one peer.
    QueueBytes,
    /// Too many requests awaiting answers from one peer.
    InFlightRequests,
    /// Too many request bytes awaiting answers from one peer.
    InFlightBytes,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::QueueFrames => "send queue frames",
            Limit::QueueBytes => "send queue bytes",
            Limit::InFlightRequests => "in-flight requests",
            Limit::InFlightBytes => "in-flight request bytes",
        })
    }
}

/// A frame waiting for the writer, with the time it was queued (fault
/// injection delays count from it).
pub(crate) struct Outgoing {
    pub(crate) envelope: Envelope,
    pub(crate) queued_at: Instant,
}

struct QueueState {
    frames: VecDeque<Outgoing>,
    bytes: usize,
    closed: bool,
}

/// Frames waiting to be written to one connection, bounded in frames and in
/// bytes. One consumer at a time (the writer, or the link task waiting for
/// work while disconnected); any number of producers.
///
/// The writer takes everything queued in one go and writes it with as few
/// syscalls as it can: under load frames coalesce, and when traffic is light
/// a frame is written the moment it is queued.
pub(crate) struct SendQueue {
    state: Mutex<QueueState>,
    notify: Notify,
    max_frames: usize,
    max_bytes: usize,
    counters: Arc<super::stats::Counters>,
}

impl std::fmt::Debug for SendQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("SendQueue")
            .field("frames", &state.frames.len())
            .field("bytes", &state.bytes)
            .field("closed", &state.closed)
            .finish()
    }
}

/// Heartbeats and error answers may exceed the frame bound by this many, so
/// a full queue of data never silences the connection's liveness signals.
const CONTROL_SLACK: usize = 64;

impl SendQueue {
    pub(crate) fn new(
        max_frames: usize,
        max_bytes: usize,
        counters: Arc<super::stats::Counters>,
    ) -> Self {
        Self {
            state: Mutex::new(QueueState {
                frames: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            notify: Notify::new(),
            max_frames,
            max_bytes,
            counters,
        }
    }

    /// Queues a data frame, or says which bound is full (or that the queue
    /// is closed). A single frame larger than the byte bound is accepted
    /// into an empty queue, so that any frame the peer accepts can be sent.
    pub(crate) fn push(&self, envelope: Envelope) -> Result<(), PushError> {
        let len = envelope.encoded_len();
        let state = self.state.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        if state.frames.len() >= self.max_frames {
            return Err(PushError::Full(Limit::QueueFrames));
        }
        if state.bytes > 0 && state.bytes + len > self.max_bytes {
            return Err(PushError::Full(Limit::QueueBytes));
        }
        self.enqueue(state, envelope, len);
        Ok(())
    }

    /// Queues a small control frame (ping, pong, error answer), ignoring the
    /// byte bound and allowing [`CONTROL_SLACK`] frames over the frame bound.
    /// Returns false when even that is full, or the queue is closed: the
    /// frame is dropped (and counted as backpressure).
    pub(crate) fn push_control(&self, envelope: Envelope) -> bool {
        let len = envelope.encoded_len();
        let state = self.state.lock();
        if state.closed || state.frames.len() >= self.max_frames + CONTROL_SLACK {
            drop(state);
            self.counters.backpressure.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.enqueue(state, envelope, len);
        true
    }

    fn enqueue(&self, mut state: MutexGuard<'_, QueueState>, envelope: Envelope, len: usize) {
        state.bytes += len;
        state.frames.push_back(Outgoing {
            envelope,
            queued_at: Instant::now(),
        });
        self.counters.queued_frames.fetch_add(1, Ordering::Relaxed);
        let first = state.frames.len() == 1;
        // The lock is released before waking the consumer, so it does not
        // wake into a held lock.
        drop(state);
        // Only the first frame of a batch needs to wake the consumer; the
        // rest are picked up with it.
        if first {
            self.notify.notify_one();
        }
    }

    /// Moves everything queued into `out`, waiting until there is something.
    /// Returns false, taking nothing, once the queue is closed.
    pub(crate) async fn take_all(&self, out: &mut VecDeque<Outgoing>) -> bool {
        loop {
            {
                let mut state = self.state.lock();
                if state.closed {
                    return false;
                }
                if !state.frames.is_empty() {
                    self.drain(&mut state, out);
                    return true;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Moves whatever is queued into `out`, without waiting.
    pub(crate) fn take_ready(&self, out: &mut VecDeque<Outgoing>) {
        self.drain(&mut self.state.lock(), out);
    }

    fn drain(&self, state: &mut QueueState, out: &mut VecDeque<Outgoing>) {
        let taken = state.frames.len();
        out.append(&mut state.frames);
        state.bytes = 0;
        self.counters
            .queued_frames
            .fetch_sub(taken as u64, Ordering::Relaxed);
    }

    /// Waits until something is queued (without taking it) or the queue is
    /// closed (returns false).
    pub(crate) async fn wait_nonempty(&self) -> bool {
        loop {
            {
                let state = self.state.lock();
                if state.closed {
                    return false;
                }
                if !state.frames.is_empty() {
                    // Leave a wakeup for the writer that will take them.
                    self.notify.notify_one();
                    return true;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Drops everything queued (the connection is gone).
    pub(crate) fn clear(&self) {
        self.clear_locked(&mut self.state.lock());
    }

    fn clear_locked(&self, state: &mut QueueState) {
        let dropped = state.frames.len();
        state.frames.clear();
        state.bytes = 0;
        self.counters
            .queued_frames
            .fetch_sub(dropped as u64, Ordering::Relaxed);
    }

    /// Drops everything and refuses further frames; wakes the consumer.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock();
        self.clear_locked(&mut state);
        state.closed = true;
        drop(state);
        self.notify.notify_one();
    }
}

impl Drop for SendQueue {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Why [`SendQueue::push`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// A bound is full.
    Full(Limit),
    /// The queue is closed: its link was forgotten or the transport stopped.
    Closed,
}

/// A count-and-bytes budget: requests in flight to a peer, or requests a
/// peer has handed to this node's application and not yet had answered.
#[derive(Debug)]
pub(crate) struct Budget {
    frames: AtomicUsize,
    bytes: AtomicUsize,
    max_frames: usize,
    max_bytes: usize,
    /// Wakes [`Budget::acquire`] callers when a reservation is released.
    released: Notify,
}

impl Budget {
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            frames: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_frames,
            max_bytes,
            released: Notify::new(),
        })
    }

    /// As [`Budget::try_acquire`], waiting for a release while the budget is
    /// full.
    pub(crate) async fn acquire(self: &Arc<Self>, bytes: usize) -> BudgetGuard {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before trying, so a release in between is not lost.
            released.as_mut().enable();
            if let Ok(guard) = self.try_acquire(bytes) {
                return guard;
            }
            released.await;
        }
    }

    /// Reserves one slot and `bytes`; released when the guard drops. As with
    /// the queue, one reservation larger than the byte bound fits an empty
    /// budget.
    pub(crate) fn try_acquire(self: &Arc<Self>, bytes: usize) -> Result<BudgetGuard, Limit> {
        // Compare-and-swap, so a caller about to be refused never inflates
        // the counts another caller sees.
        self.frames
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_frames).then_some(n + 1)
            })
            .map_err(|_| Limit::InFlightRequests)?;
        let reserved = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n == 0 || n + bytes <= self.max_bytes).then_some(n + bytes)
            });
        if reserved.is_err() {
            self.frames.fetch_sub(1, Ordering::AcqRel);
            self.released.notify_waiters();
            return Err(Limit::InFlightBytes);
        }
        Ok(BudgetGuard {
            budget: Arc::clone(self),
            bytes,
        })
    }

    /// Slots in use now.
    pub(crate) fn in_use(&self) -> usize {
        self.frames.load(Ordering::Acquire)
    }
}

/// One reservation in a [`Budget`].
#[derive(Debug)]
pub(crate) struct BudgetGuard {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        self.budget.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.frames.fetch_sub(1, Ordering::AcqRel);
        self.budget.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn one_way(len: usize) -> Envelope {
        Envelope::OneWay {
            lane: super::super::Lane::Data,
            body: Bytes::from(vec![0; len]),
        }
    }

    #[test]
    fn queue_bounds_frames_and_bytes() {
        let counters = Arc::new(super::super::stats::Counters::default());
        let queue = SendQueue::new(3, 100, counters.clone());
        // One frame over the byte bound fits an empty queue.
        queue.push(one_way(500)).unwrap();
        assert_eq!(
            queue.push(one_way(1)),
            Err(PushError::Full(Limit::QueueBytes))
        );
        queue.clear();
        for _ in 0..3 {
            queue.push(one_way(1)).unwrap();
        }
        assert_eq!(
            queue.push(one_way(1)),
            Err(PushError::Full(Limit::QueueFrames))
        );
        assert!(queue.push_control(Envelope::Ping { token: 1 }));
        assert_eq!(counters.queued_frames.load(Ordering::Relaxed), 4);
        queue.close();
        assert_eq!(counters.queued_frames.load(Ordering::Relaxed), 0);
        assert_eq!(queue.push(one_way(1)), Err(PushError::Closed));
        assert!(!queue.push_control(Envelope::Ping { token: 2 }));
        drop(queue);
        assert_eq!(counters.queued_frames.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn budget_releases_on_drop() {
        let budget = Budget::new(2, 10);
        let a = budget.try_acquire(8).unwrap();
        assert_eq!(budget.try_acquire(8).unwrap_err(), Limit::InFlightBytes);
        let b = budget.try_acquire(2).unwrap();
        assert_eq!(budget.try_acquire(0).unwrap_err(), Limit::InFlightRequests);
        drop((a, b));
        assert_eq!(budget.in_use(), 0);
        let _big = budget.try_acquire(1000).unwrap();
    }
}
