//! What this node's coordinator has learnt of each peer from its own
//! requests: one score per peer (reachability now; its round-trip time
//! for ordering and speculative reads).
//!
//! Membership may call an owner alive while this node cannot reach it: in
//! a "bridge" partition (A reaches B and C, B and C cannot reach each
//! other) indirect probes keep everyone alive, and a coordinator that
//! trusted membership alone would wait out every operation's deadline on
//! the owner it cannot reach. Instead, every data request's outcome is
//! recorded here:
//! - an answer (any answer: a refusal is an answer) records its round
//!   trip and clears the peer's failures;
//! - a transport failure, or a request left unanswered for longer than
//!   the peer's usual (`slow_after`) when the operation ended without it,
//!   is a failure: the peer is *avoided* for a back-off that doubles with
//!   each failure in a row (100 ms up to 2 s). When it ends, exactly one
//!   request is let through (a half-open probe, claimed by
//!   [`PeerScores::sending`]): an answer restores the peer at once, a
//!   failure starts the next, doubled, back-off. Until then every other
//!   request to it is failed at once without being sent (a write keeps a
//!   hint for the owner);
//! - one outage is one observation: the failure of a request sent before
//!   the peer's last answer is stale (the peer answered since), and so is
//!   that of one sent before the last failure was counted (all requests
//!   outstanding when a peer went away time out together; they say once
//!   that it is away, not once each).
//!
//! Reads ask owners that are not avoided first, nearest first, and send
//! one more request when one is slower than its usual (a speculative
//! read); writes and reads that cannot reach their quorum without avoided
//! owners fail at once instead of waiting out their deadline. Avoidance
//! is local to this node, never gossiped: it says "I cannot reach it",
//! not "it is down".
//!
//! The table holds one entry per address this node's coordinator sent
//! to, bounded by [`MAX_PEERS`]: entries untouched for a minute are
//! dropped first.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::net::TransportError;

/// Most peers scored at once. Only members' addresses are ever asked, so
/// this is never reached in practice; it bounds the table regardless.
pub(crate) const MAX_PEERS: usize = 4096;

/// The first back-off after a failure; it doubles per failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A request dropped unanswered is a failure only past this age (and
/// past several of the peer's usual round trips): a loaded machine's
/// scheduling delays are not unreachability.
const SLOW_FLOOR: Duration = Duration::from_millis(200);
/// Bounds of the delay before a speculative read.
const SPECULATE_MIN: Duration = Duration::from_millis(5);
const SPECULATE_MAX: Duration = Duration::from_millis(100);
/// The delay before a speculative read to a peer with no round trip
/// measured yet.
const SPECULATE_UNKNOWN: Duration = Duration::from_millis(50);
/// A read leaves the static order of its owners for the nearest-first one
/// only when a peer it would not ask is this many times faster than one it
/// would...
pub(crate) const SWITCH_FACTOR: f64 = 1.5;
/// ...and this much faster in absolute terms (round trips inside one
/// datacenter differ by less).
pub(crate) const SWITCH_SLACK: Duration = Duration::from_millis(1);

/// A half-open probe whose outcome was never recorded (it cannot be: a
/// request records its outcome when dropped) lets another through after
/// this long, so a peer is never avoided for good.
const PROBE_LAPSE: Duration = Duration::from_secs(4);

#[derive(Debug)]
struct Score {
    /// Smoothed round trip, in microseconds (0: none measured yet).
    rtt_us: f64,
    /// Failures in a row.
    failures: u32,
    /// Until when the peer is avoided; once past (and no answer since),
    /// the peer is half-open: one probe is let through.
    avoid_until: Option<Instant>,
    /// When the last answer arrived: the failure of a request sent before
    /// it is stale.
    answered_at: Option<Instant>,
    /// When the last failure was counted: that of a request sent before
    /// it belongs to the same outage.
    failed_at: Option<Instant>,
    /// When the half-open probe in flight was sent.
    probe: Option<Instant>,
    /// When the last outcome was recorded.
    touched: Instant,
}

impl Score {
    /// Whether no request may be sent to the peer at `now`: it is in its
    /// back-off, or half-open with its probe in flight.
    fn avoided(&self, now: Instant) -> bool {
        match self.avoid_until {
            None => false,
            Some(until) if until > now => true,
            Some(_) => self.probing(now),
        }
    }

    fn probing(&self, now: Instant) -> bool {
        self.probe
            .is_some_and(|sent| now.saturating_duration_since(sent) < PROBE_LAPSE)
    }

    /// The outcome of a request sent at `sent` is known: if it was the
    /// probe (or later), the probe is over.
    fn settle_probe(&mut self, sent: Instant) {
        if self.probe.is_some_and(|probe| sent >= probe) {
            self.probe = None;
        }
    }
}

/// A peer's score, as [`GridKv::peer_health`](crate::GridKv::peer_health)
/// reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerHealth {
    /// The peer's cluster address.
    pub addr: String,
    /// Smoothed round trip of its data requests, if any was answered.
    pub rtt: Option<Duration>,
    /// Failed or unanswered requests in a row.
    pub failures: u32,
    /// Whether this node avoids it now (and for how long yet).
    pub avoided_for: Option<Duration>,
}

/// The scores of every peer this node's coordinator asked.
#[derive(Debug, Default)]
pub(crate) struct PeerScores {
    scores: Mutex<HashMap<Box<str>, Score>>,
}

impl PeerScores {
    /// Whether a request to `addr` may be sent now; called just before
    /// sending it. `false` while the peer is avoided; once its back-off is
    /// over, `true` for exactly one caller (the half-open probe, whose
    /// outcome decides) until that request's outcome is recorded.
    pub(crate) fn sending(&self, addr: &str) -> bool {
        let now = Instant::now();
        let mut scores = self.scores.lock();
        let Some(score) = scores.get_mut(addr) else {
            return true;
        };
        match score.avoid_until {
            None => true,
            Some(until) if until > now => false,
            Some(_) if score.probing(now) => false,
            Some(_) => {
                score.probe = Some(now);
                true
            }
        }
    }

    /// Records an answer from `addr` after `rtt`.
    pub(crate) fn answered(&self, addr: &str, rtt: Duration) {
        let now = Instant::now();
        let mut scores = self.scores.lock();
        let score = entry(&mut scores, addr, now);
        let sample = rtt.as_micros() as f64;
        score.rtt_us = if score.rtt_us == 0.0 {
            sample
        } else {
            score.rtt_us * 0.8 + sample * 0.2
        };
        score.failures = 0;
        score.avoid_until = None;
        score.answered_at = Some(now);
        score.failed_at = None;
        score.probe = None;
        score.touched = now;
    }

    /// Records a failed (or abandoned, unanswered) request to `addr`, sent
    /// at `sent`. Not counted if stale (sent before the peer's last
    /// answer) or part of an outage already counted (sent before the
    /// last counted failure).
    pub(crate) fn failed(&self, addr: &str, sent: Instant) {
        let now = Instant::now();
        let mut scores = self.scores.lock();
        let score = entry(&mut scores, addr, now);
        score.settle_probe(sent);
        let seen = |at: Option<Instant>| at.is_some_and(|at| sent < at);
        if seen(score.answered_at) || seen(score.failed_at) {
            return;
        }
        score.failed_at = Some(now);
        score.failures = score.failures.saturating_add(1);
        let doublings = (score.failures - 1).min(16);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF);
        score.avoid_until = Some(now + backoff);
        score.touched = now;
    }

    /// Records the outcome of a request to `addr` sent at `sent`: an
    /// answer, a transport failure, or (`None`) a request abandoned
    /// unanswered, a failure only if it waited longer than
    /// [`PeerScores::slow_after`].
    pub(crate) fn record(
        &self,
        addr: &str,
        sent: Instant,
        outcome: Option<&Result<bytes::Bytes, TransportError>>,
    ) {
        let waited = sent.elapsed();
        match outcome {
            Some(Ok(_)) => self.answered(addr, waited),
            // Shed for load: it answered, it is just busy.
            Some(Err(TransportError::Backpressure { .. } | TransportError::Overloaded { .. })) => {
                self.settle(addr, sent);
            }
            Some(Err(_)) => self.failed(addr, sent),
            None if waited > self.slow_after(addr) => self.failed(addr, sent),
            None => self.settle(addr, sent),
        }
    }

    /// A request sent at `sent` ended saying nothing of the peer: a probe
    /// among them leaves the peer half-open for the next request.
    fn settle(&self, addr: &str, sent: Instant) {
        if let Some(score) = self.scores.lock().get_mut(addr) {
            score.settle_probe(sent);
        }
    }

    /// Whether `addr` is avoided now.
    pub(crate) fn avoided(&self, addr: &str) -> bool {
        let now = Instant::now();
        self.scores.lock().get(addr).is_some_and(|s| s.avoided(now))
    }

    /// How many peers are avoided now.
    pub(crate) fn avoided_count(&self) -> usize {
        let now = Instant::now();
        self.scores
            .lock()
            .values()
            .filter(|s| s.avoided(now))
            .count()
    }

    /// The order in which to ask `addrs` (indexes into it) for `r`
    /// answers: peers not avoided first, avoided ones last; `None` entries
    /// (this node itself) first of all. Among the others, the given
    /// (static) order, which puts the nearest datacenter first, holds
    /// unless a peer past the first `r` is clearly faster than one within
    /// them: at least [`SWITCH_FACTOR`] times faster and [`SWITCH_SLACK`]
    /// apart (a hysteresis, as Cassandra's dynamic snitch has, so that
    /// reads do not flap between owners whose round trips are alike). Then
    /// they go nearest first. A peer with no round trip measured yet keeps
    /// its place.
    pub(crate) fn rank(&self, addrs: &[Option<&str>], r: usize) -> Vec<(usize, bool)> {
        let now = Instant::now();
        let scores = self.scores.lock();
        // (index, avoided, round trip in µs; 0: this node; None: unknown)
        let mut ranked: Vec<(usize, bool, Option<u64>)> = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| match addr {
                None => (i, false, Some(0)),
                Some(addr) => match scores.get(*addr) {
                    None => (i, false, None),
                    Some(s) => (i, s.avoided(now), (s.rtt_us > 0.0).then_some(s.rtt_us as u64)),
                },
            })
            .collect();
        drop(scores);
        ranked.sort_by_key(|&(i, avoided, rtt)| (avoided, rtt != Some(0), i));
        let usable = ranked.iter().take_while(|(_, avoided, _)| !avoided).count();
        let r = r.min(usable);
        let slowest_in = ranked[..r].iter().filter_map(|e| e.2).max();
        let fastest_out = ranked[r..usable].iter().filter_map(|e| e.2).min();
        if let (Some(inside), Some(outside)) = (slowest_in, fastest_out) {
            let switch = outside as f64 * SWITCH_FACTOR + SWITCH_SLACK.as_micros() as f64;
            if (inside as f64) > switch {
                // Nearest first; unmeasured peers after measured ones.
                ranked[..usable].sort_by_key(|&(i, _, rtt)| (rtt.is_none(), rtt, i));
            }
        }
        ranked.into_iter().map(|(i, avoided, _)| (i, avoided)).collect()
    }

    /// How long a request to `addr` may go unanswered before it counts
    /// against the peer once its operation ends without it.
    pub(crate) fn slow_after(&self, addr: &str) -> Duration {
        let rtt = self.rtt(addr).unwrap_or_default();
        SLOW_FLOOR.max(rtt.saturating_mul(8))
    }

    /// How long to wait on `addr` before a read asks one more owner.
    pub(crate) fn speculate_after(&self, addr: &str) -> Duration {
        match self.rtt(addr) {
            Some(rtt) => rtt.saturating_mul(4).clamp(SPECULATE_MIN, SPECULATE_MAX),
            None => SPECULATE_UNKNOWN,
        }
    }

    fn rtt(&self, addr: &str) -> Option<Duration> {
        let scores = self.scores.lock();
        let s = scores.get(addr)?;
        (s.rtt_us > 0.0).then(|| Duration::from_micros(s.rtt_us as u64))
    }

    /// Every scored peer, by address.
    pub(crate) fn snapshot(&self) -> Vec<PeerHealth> {
        let now = Instant::now();
        let scores = self.scores.lock();
        let mut all: Vec<PeerHealth> = scores
            .iter()
            .map(|(addr, s)| PeerHealth {
                addr: addr.to_string(),
                rtt: (s.rtt_us > 0.0).then(|| Duration::from_micros(s.rtt_us as u64)),
                failures: s.failures,
                avoided_for: s
                    .avoid_until
                    .filter(|until| *until > now)
                    .map(|until| until - now),
            })
            .collect();
        all.sort_by(|a, b| a.addr.cmp(&b.addr));
        all
    }
}

/// `addr`'s score, created if new; the table stays within [`MAX_PEERS`].
fn entry<'a>(scores: &'a mut HashMap<Box<str>, Score>, addr: &str, now: Instant) -> &'a mut Score {
    if !scores.contains_key(addr) {
        if scores.len() >= MAX_PEERS {
            let stale = Duration::from_secs(60);
            scores.retain(|_, s| now.saturating_duration_since(s.touched) < stale);
            if scores.len() >= MAX_PEERS {
                // All recent: forget the one untouched longest.
                if let Some(oldest) = scores
                    .iter()
                    .min_by_key(|(_, s)| s.touched)
                    .map(|(a, _)| a.clone())
                {
                    scores.remove(&oldest);
                }
            }
        }
        scores.insert(
            addr.into(),
            Score {
                rtt_us: 0.0,
                failures: 0,
                avoid_until: None,
                answered_at: None,
                failed_at: None,
                probe: None,
                touched: now,
            },
        );
    }
    scores.get_mut(addr).expect("inserted above")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure of a request sent now.
    fn fail(peers: &PeerScores, addr: &str) {
        peers.failed(addr, Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_doubling_and_one_answer_restores() {
        let peers = PeerScores::default();
        assert!(!peers.avoided("b"));
        fail(&peers, "b");
        assert!(peers.avoided("b"));
        tokio::time::advance(Duration::from_millis(101)).await;
        assert!(!peers.avoided("b"), "a half-open probe is let through");
        assert!(peers.sending("b"));
        fail(&peers, "b");
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(peers.avoided("b"), "the second back-off is 200 ms");
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(1)).await;
            fail(&peers, "b");
        }
        let left = peers.snapshot()[0].avoided_for.unwrap();
        assert!(left <= MAX_BACKOFF, "{left:?}");
        peers.answered("b", Duration::from_micros(300));
        assert!(!peers.avoided("b"));
        assert_eq!(peers.snapshot()[0].failures, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_sent_before_the_last_answer_is_stale() {
        let peers = PeerScores::default();
        let early = Instant::now();
        tokio::time::advance(Duration::from_millis(10)).await;
        peers.answered("b", Duration::from_millis(1));
        tokio::time::advance(Duration::from_millis(10)).await;
        // Sent before the answer arrived: it says nothing of the peer now.
        peers.failed("b", early);
        peers.record(
            "b",
            early,
            Some(&Err(TransportError::ConnectionLost {
                peer: "b".into(),
                reason: "reset".into(),
            })),
        );
        assert!(!peers.avoided("b"));
        assert_eq!(peers.snapshot()[0].failures, 0);
        // Sent after it: counts.
        fail(&peers, "b");
        assert!(peers.avoided("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_failures_from_one_outage_counts_once() {
        let peers = PeerScores::default();
        peers.answered("b", Duration::from_millis(1));
        tokio::time::advance(Duration::from_millis(1)).await;
        let sent = Instant::now();
        // 50 requests outstanding when b went away all time out together.
        tokio::time::advance(Duration::from_millis(500)).await;
        for _ in 0..50 {
            peers.record("b", sent, None);
        }
        assert_eq!(peers.snapshot()[0].failures, 1);
        let left = peers.snapshot()[0].avoided_for.unwrap();
        assert!(left <= FIRST_BACKOFF, "one back-off, not fifty: {left:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_back_off_exactly_one_probe_goes_and_decides() {
        let peers = PeerScores::default();
        assert!(peers.sending("b"), "an unknown peer is asked");
        fail(&peers, "b");
        assert!(!peers.sending("b"), "in its back-off");
        tokio::time::advance(FIRST_BACKOFF).await;
        // Half-open: one request is the probe, the others are held.
        let probe = Instant::now();
        assert!(peers.sending("b"));
        assert!(!peers.sending("b"));
        assert!(!peers.sending("b"));
        assert!(peers.avoided("b"), "avoided while its probe is out");
        // The probe fails: the next back-off is doubled.
        tokio::time::advance(Duration::from_millis(5)).await;
        peers.failed("b", probe);
        assert_eq!(peers.snapshot()[0].failures, 2);
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(!peers.sending("b"), "the second back-off is 200 ms");
        tokio::time::advance(FIRST_BACKOFF).await;
        // The next probe is answered: b is restored for everyone.
        let probe = Instant::now();
        assert!(peers.sending("b"));
        assert!(!peers.sending("b"));
        peers.record("b", probe, Some(&Ok(bytes::Bytes::new())));
        assert!(peers.sending("b") && peers.sending("b"));
        assert!(!peers.avoided("b"));
        // A probe dropped early says nothing: the next request probes.
        fail(&peers, "b");
        tokio::time::advance(FIRST_BACKOFF).await;
        let probe = Instant::now();
        assert!(peers.sending("b"));
        peers.record("b", probe, None);
        assert!(peers.sending("b"), "a new probe");
    }

    #[tokio::test(start_paused = true)]
    async fn reads_rank_reachable_nearest_first_and_self_before_all() {
        let peers = PeerScores::default();
        peers.answered("far", Duration::from_millis(5));
        peers.answered("near", Duration::from_micros(200));
        peers.answered("gone", Duration::from_micros(100));
        tokio::time::advance(Duration::from_millis(1)).await;
        fail(&peers, "gone");
        let addrs = [Some("gone"), Some("far"), None, Some("near"), Some("new")];
        // "far" (5 ms) would be asked while "near" (0.2 ms) waits: clearly
        // slower, so nearest first (unmeasured after measured).
        assert_eq!(
            peers.rank(&addrs, 2),
            vec![(2, false), (3, false), (1, false), (4, false), (0, true)],
            "self, then by round trip; avoided last"
        );
        // Asking all of them: the static order stands.
        assert_eq!(
            peers.rank(&addrs, 4),
            vec![(2, false), (1, false), (3, false), (4, false), (0, true)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reads_keep_their_owners_until_another_is_clearly_faster() {
        let peers = PeerScores::default();
        peers.answered("a", Duration::from_micros(900));
        peers.answered("b", Duration::from_micros(300));
        // 0.9 ms against 0.3 ms: three times faster, but within the slack.
        assert_eq!(peers.rank(&[Some("a"), Some("b")], 1)[0].0, 0);
        // A WAN owner first in the static order against a LAN one.
        peers.answered("wan", Duration::from_millis(150));
        assert_eq!(peers.rank(&[Some("wan"), Some("b")], 1)[0].0, 1);
        // Alike round trips never flip the order.
        peers.answered("c", Duration::from_millis(100));
        assert_eq!(peers.rank(&[Some("wan"), Some("c")], 1)[0].0, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_request_counts_only_once_slow() {
        let peers = PeerScores::default();
        peers.answered("b", Duration::from_millis(1));
        tokio::time::advance(Duration::from_millis(1)).await;
        let sent = Instant::now();
        tokio::time::advance(Duration::from_millis(20)).await;
        peers.record("b", sent, None);
        assert!(!peers.avoided("b"), "dropped early: the quorum came first");
        tokio::time::advance(Duration::from_millis(400)).await;
        peers.record("b", sent, None);
        assert!(peers.avoided("b"), "unanswered for 420 ms");
        let shed = Err(TransportError::Overloaded { peer: "c".into() });
        peers.record("c", Instant::now(), Some(&shed));
        assert!(!peers.avoided("c"), "shedding load is an answer");
    }

    #[test]
    fn the_table_is_bounded() {
        let peers = PeerScores::default();
        for i in 0..MAX_PEERS + 10 {
            peers.failed(&format!("10.0.0.{i}:7000"), Instant::now());
        }
        assert!(peers.snapshot().len() <= MAX_PEERS);
    }
}
