//! The requests of one operation to its owners, and what becomes of those
//! its caller stops waiting for.
//!
//! A write answers its caller once its quorum has; the requests still
//! running then (or when its deadline passes, or when the caller drops the
//! write) must still reach their owners, and an owner that does not take
//! its write gets a hint. One long-lived task, the [`Finisher`], carries
//! those leftovers to the end under their write's deadline, instead of a
//! task per write; requests carry no timer of their own (the caller's
//! deadline bounds them).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::hints::Hints;
use super::stats::Counters;
use super::wire::{DataResponse, RefusalCode};
use crate::id::NodeId;
use crate::net::TransportError;

/// What one owner said.
pub(super) type Answer = Result<DataResponse, TransportError>;

/// An owner's answer on its way.
pub(super) type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// Writes whose leftover requests the finisher runs at once, and as many
/// may wait for it in its channel; past that, a write's leftovers get a
/// task of their own.
const LEFTOVER_WRITES: usize = 4096;

/// One request to an owner.
pub(super) struct Request {
    /// An index the caller chose (which owner this is).
    slot: usize,
    answer: AnswerFuture,
    /// The write to keep as a hint for this owner if it does not take it.
    hint: Option<(NodeId, Bytes)>,
}

impl Request {
    pub(super) fn new(slot: usize, answer: AnswerFuture, hint: Option<(NodeId, Bytes)>) -> Self {
        Self { slot, answer, hint }
    }
}

/// Whether `answer` means the owner did not take its write: no answer (it
/// may still have applied it: the hint is then a harmless duplicate), or a
/// refusal because it is stopping (it will be back, or be replaced).
fn missed(answer: &Answer) -> bool {
    matches!(
        answer,
        Err(_)
            | Ok(DataResponse::Refused {
                code: RefusalCode::ShuttingDown,
                ..
            })
    )
}

/// Keeps hints for owners that missed their writes.
#[derive(Debug, Clone)]
pub(crate) struct Keeper {
    hints: Arc<Hints>,
    counters: Arc<Counters>,
}

impl Keeper {
    pub(crate) fn new(hints: Arc<Hints>, counters: Arc<Counters>) -> Self {
        Self { hints, counters }
    }

    fn keep(&self, hint: Option<(NodeId, Bytes)>) {
        if let Some((owner, body)) = hint {
            self.hints.keep(owner, body, &self.counters);
        }
    }
}

/// Requests polled by their caller: there are at most a few (one per
/// owner), so each wake-up polls them all.
#[derive(Default)]
pub(super) struct Requests {
    list: Vec<Request>,
}

impl Requests {
    pub(super) fn push(&mut self, request: Request) {
        self.list.push(request);
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The next answer, in completion order, with its slot; `None` when no
    /// request is left. A write an owner missed is kept as its hint.
    pub(super) async fn next(&mut self, keeper: &Keeper) -> Option<(usize, Answer)> {
        std::future::poll_fn(|cx| {
            for i in 0..self.list.len() {
                if let Poll::Ready(answer) = self.list[i].answer.as_mut().poll(cx) {
                    let request = self.list.swap_remove(i);
                    if missed(&answer) {
                        keeper.keep(request.hint);
                    }
                    return Poll::Ready(Some((request.slot, answer)));
                }
            }
            if self.list.is_empty() {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Runs the requests to their end, or to `deadline`; owners that had
    /// not answered by then get their hints.
    async fn finish(mut self, deadline: Instant, keeper: Keeper) {
        let drained = tokio::time::timeout_at(deadline, async {
            while self.next(&keeper).await.is_some() {}
        })
        .await;
        if drained.is_err() {
            for request in std::mem::take(&mut self.list) {
                keeper.keep(request.hint);
            }
        }
    }
}

/// A write's requests that must run to their end whatever becomes of the
/// write: handed to the [`Finisher`] when this is dropped (answered,
/// failed, timed out, or the caller's future dropped mid-write).
pub(super) struct WriteRequests<'a> {
    pub(super) requests: Requests,
    deadline: Instant,
    finisher: &'a Finisher,
}

impl<'a> WriteRequests<'a> {
    pub(super) fn new(deadline: Instant, finisher: &'a Finisher) -> Self {
        Self {
            requests: Requests::default(),
            deadline,
            finisher,
        }
    }
}

impl Drop for WriteRequests<'_> {
    fn drop(&mut self) {
        if !self.requests.is_empty() {
            let requests = std::mem::take(&mut self.requests);
            self.finisher.take(requests, self.deadline);
        }
    }
}

/// A write's leftover requests and their deadline.
struct Leftover {
    requests: Requests,
    deadline: Instant,
}

/// Finishes the leftover requests of writes (see the module's doc): the
/// sending half, held by the coordinator.
#[derive(Debug)]
pub(crate) struct Finisher {
    tx: mpsc::Sender<Leftover>,
    keeper: Keeper,
}

impl std::fmt::Debug for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leftover")
            .field("requests", &self.requests.len())
            .finish_non_exhaustive()
    }
}

impl Finisher {
    /// The finisher and the task that runs it, until `cancel` fires (then
    /// leftovers are dropped: the node is stopping, and its hints with it).
    pub(crate) fn start(keeper: Keeper, cancel: CancellationToken) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(LEFTOVER_WRITES);
        let task = tokio::spawn(run(rx, keeper.clone(), cancel));
        (Self { tx, keeper }, task)
    }

    /// What keeps hints for owners that missed a write, for the requests
    /// a caller polls itself ([`Requests::next`]).
    pub(super) fn keeper(&self) -> &Keeper {
        &self.keeper
    }

    /// Carries `requests` to their end under `deadline`.
    fn take(&self, requests: Requests, deadline: Instant) {
        let leftover = Leftover { requests, deadline };
        if let Err(refused) = self.tx.try_send(leftover) {
            // Full (a burst of writes to a slow owner) or stopped: a task
            // of its own, if a runtime is still there.
            let leftover = match refused {
                mpsc::error::TrySendError::Full(l) | mpsc::error::TrySendError::Closed(l) => l,
            };
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let keeper = self.keeper.clone();
                runtime.spawn(leftover.requests.finish(leftover.deadline, keeper));
            }
        }
    }
}

async fn run(mut rx: mpsc::Receiver<Leftover>, keeper: Keeper, cancel: CancellationToken) {
    let mut running = FuturesUnordered::new();
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        // Running leftovers before new ones: a burst of arrivals must not
        // spend the task's budget on receiving while nothing finishes (the
        // deadlines would not fire). At most LEFTOVER_WRITES run at once;
        // past that the channel fills and writers fall back to a task each.
        tokio::select! {
            biased;
            _ = &mut cancelled => return,
            Some(()) = running.next(), if !running.is_empty() => {}
            leftover = rx.recv(), if running.len() < LEFTOVER_WRITES => match leftover {
                Some(l) => running.push(l.requests.finish(l.deadline, keeper.clone())),
                None => break,
            },
        }
    }
    while running.next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::time::Duration;

    use super::*;
    use crate::replication::hints::HintLimits;

    fn keeper() -> Keeper {
        let limits = HintLimits {
            max_hints: usize::MAX,
            max_bytes: usize::MAX,
            ttl: Duration::from_secs(600),
        };
        Keeper::new(Arc::new(Hints::new(limits)), Arc::default())
    }

    fn owner() -> NodeId {
        NodeId::new("b").unwrap()
    }

    /// One request whose answer `answer` gives.
    fn leftover(answer: AnswerFuture, deadline: Instant) -> Leftover {
        let mut requests = Requests::default();
        requests.push(Request::new(0, answer, Some((owner(), Bytes::from_static(b"w")))));
        Leftover { requests, deadline }
    }

    /// Under a sustained stream of leftovers (producers faster than one
    /// task's receive budget), the finisher still finishes what it holds:
    /// at most its channel and its running set are ever unfinished.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leftovers_finish_while_more_keep_arriving() {
        const PER_PRODUCER: usize = 40_000;
        const PRODUCERS: usize = 4;
        let (tx, rx) = mpsc::channel(LEFTOVER_WRITES);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(rx, keeper(), cancel.clone()));
        let finished = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|_| {
                let (tx, finished, sent) = (tx.clone(), finished.clone(), sent.clone());
                tokio::spawn(async move {
                    for _ in 0..PER_PRODUCER {
                        let finished = finished.clone();
                        let answer: AnswerFuture = Box::pin(async move {
                            finished.fetch_add(1, Relaxed);
                            Ok(DataResponse::Applied { was_live: false })
                        });
                        let deadline = Instant::now() + Duration::from_secs(60);
                        tx.send(leftover(answer, deadline)).await.unwrap();
                        sent.fetch_add(1, Relaxed);
                    }
                })
            })
            .collect();
        for p in producers {
            p.await.unwrap();
        }
        let (sent, done) = (sent.load(Relaxed), finished.load(Relaxed));
        assert!(
            done + 2 * LEFTOVER_WRITES >= sent,
            "{done} of {sent} leftovers finished while they arrived"
        );
        drop(tx);
        task.await.unwrap();
        assert_eq!(finished.load(Relaxed), PRODUCERS * PER_PRODUCER);
    }

    /// An owner that never answers gets its hint once the deadline passes,
    /// and one that refuses because it is stopping at once; one that
    /// applied the write gets none.
    #[tokio::test(start_paused = true)]
    async fn owners_that_miss_a_write_get_hints_at_the_deadline() {
        let keeper = keeper();
        let cancel = CancellationToken::new();
        let (finisher, task) = Finisher::start(keeper.clone(), cancel.clone());
        let deadline = Instant::now() + Duration::from_millis(100);
        let applied: AnswerFuture =
            Box::pin(async { Ok(DataResponse::Applied { was_live: false }) });
        finisher.take(leftover(applied, deadline).requests, deadline);
        let silent: AnswerFuture = Box::pin(std::future::pending());
        finisher.take(leftover(silent, deadline).requests, deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(keeper.hints.len(), 0, "no hint before the deadline");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(keeper.hints.len(), 1, "the silent owner's hint");
        let stopping: AnswerFuture = Box::pin(async {
            Ok(DataResponse::Refused {
                code: RefusalCode::ShuttingDown,
                reason: String::new(),
            })
        });
        let later = Instant::now() + Duration::from_secs(10);
        finisher.take(leftover(stopping, later).requests, later);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(keeper.hints.len(), 2, "the stopping owner's hint, at once");
        cancel.cancel();
        task.await.unwrap();
    }
}
