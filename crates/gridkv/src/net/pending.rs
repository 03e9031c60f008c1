//! Requests awaiting answers on one link, matched by id, and the round-trip
//! times their answers (and the link's pongs) measure.
//!
//! The link's callers add requests here; the connection carrying them
//! completes them as answers arrive. The table is its own piece so that a
//! connection depends on it alone, never on the link that dials.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::envelope::ErrorCode;
use super::error::TransportError;
use super::rtt::{RttConfig, RttEstimator, RttSnapshot};
use super::stats::Counters;

/// Where a request's answer goes.
pub(crate) type Answer = oneshot::Receiver<Result<Bytes, TransportError>>;

/// One request awaiting its answer.
struct Waiter {
    tx: oneshot::Sender<Result<Bytes, TransportError>>,
    sent: Instant,
}

/// The requests one link has sent and not yet seen answered, and the RTT
/// estimate their answers feed.
pub(crate) struct PendingRequests {
    /// The peer's address, named in the errors its answers become.
    addr: String,
    /// Hashed with foldhash, not std's SipHash: every request hashes its
    /// id four times (add, the writer's check, answer, withdraw), and SipHash
    /// was 140 instructions a time. The ids are ours, so flooding is no
    /// concern.
    waiting: Mutex<HashMap<u64, Waiter, foldhash::fast::RandomState>>,
    next_id: AtomicU64,
    rtt: Mutex<RttEstimator>,
}

impl PendingRequests {
    /// An empty table for the peer at `addr`. `rtt` must be valid (it is
    /// checked with the transport's config).
    pub(crate) fn new(addr: &str, rtt: RttConfig) -> Self {
        Self {
            addr: addr.to_owned(),
            waiting: Mutex::new(HashMap::default()),
            next_id: AtomicU64::new(0),
            rtt: Mutex::new(RttEstimator::new(rtt).expect("validated with the config")),
        }
    }

    /// Registers a request sent now: its id, and where its answer arrives.
    pub(crate) fn add(&self) -> (u64, Answer) {
        let id = self.next_id.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(
            id,
            Waiter {
                tx,
                sent: Instant::now(),
            },
        );
        (id, rx)
    }

    /// Forgets request `id`: its caller no longer waits.
    pub(crate) fn withdraw(&self, id: u64) {
        self.waiting.lock().remove(&id);
    }

    /// Whether request `id` still waits for an answer (the writer skips
    /// requests withdrawn while queued).
    pub(crate) fn is_pending(&self, id: u64) -> bool {
        self.waiting.lock().contains_key(&id)
    }

    /// An answer arrived for request `id`.
    pub(crate) fn complete(
        &self,
        id: u64,
        result: Result<Bytes, TransportError>,
        counters: &Counters,
    ) {
        let Some(waiter) = self.waiting.lock().remove(&id) else {
            counters.late_responses.fetch_add(1, Relaxed);
            return;
        };
        if result.is_ok() {
            self.rtt.lock().observe(waiter.sent.elapsed());
        }
        // The requester may have just given up; then nobody is listening.
        let _ = waiter.tx.send(result);
    }

    /// A pong came back for a ping sent at `sent`.
    pub(crate) fn observe_pong(&self, sent: Instant) {
        let now = Instant::now();
        if sent <= now {
            self.rtt.lock().observe(now - sent);
        }
    }

    /// The error a request gets when the peer answers with `code`.
    pub(crate) fn remote_error(&self, code: ErrorCode) -> TransportError {
        let peer = self.addr.clone();
        match code {
            ErrorCode::Overloaded => TransportError::Overloaded { peer },
            ErrorCode::NoAnswer => TransportError::NoAnswer { peer },
            ErrorCode::Unknown(code) => TransportError::Remote { peer, code },
        }
    }

    /// Fails every pending request with `error()`.
    pub(crate) fn fail_all(&self, counters: &Counters, error: impl Fn() -> TransportError) {
        let mut failed: Vec<(u64, Waiter)> = self.waiting.lock().drain().collect();
        // In request order, not the map's (randomly seeded) order: the
        // callers woken here run in this order, and a seeded simulation
        // must replay it.
        failed.sort_by_key(|(id, _)| *id);
        counters
            .requests_failed
            .fetch_add(failed.len() as u64, Relaxed);
        for (_, waiter) in failed {
            let _ = waiter.tx.send(Err(error()));
        }
    }

    /// The timeout the next request gets.
    pub(crate) fn timeout(&self) -> Duration {
        self.rtt.lock().timeout()
    }

    /// A request timed out: the next ones wait longer.
    pub(crate) fn timed_out(&self) {
        self.rtt.lock().backoff();
    }

    /// The RTT estimate now.
    pub(crate) fn rtt(&self) -> RttSnapshot {
        self.rtt.lock().snapshot()
    }
}
