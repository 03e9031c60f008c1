//! A history checker for single-key register histories in which failed
//! writes are "maybe applied".
//!
//! Every write writes a distinct, increasing integer, so versions order
//! like values. A read that starts after a write was acknowledged must
//! return that value or a newer one; and it may return only values whose
//! write started before the read ended (acknowledged, failed, or still in
//! flight: a failed write is indeterminate).
//!
//! A delete is a write too (it takes the next value, and a read that finds
//! the key absent may be explained by it). Under memory pressure a cache
//! may forget a value: [`History::allowing_misses`] accepts absent reads,
//! but never an older value after a newer write or a delete.
#![allow(dead_code)]

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A point in time, comparable across every node of a test: simulated
/// time under turmoil (where each host's tokio clock has its own origin),
/// else time since the first call.
pub type Instant = Duration;

pub fn now() -> Instant {
    static BASE: OnceLock<std::time::Instant> = OnceLock::new();
    turmoil::sim_elapsed().unwrap_or_else(|| BASE.get_or_init(std::time::Instant::now).elapsed())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A write of `value`; `ok` whether it was acknowledged.
    Write { value: u64, ok: bool },
    /// A delete, ordered among the writes as `value`.
    Delete { value: u64, ok: bool },
    /// A read that returned `value` (0 = absent); failed reads are not
    /// recorded.
    Read { value: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub start: Instant,
    pub end: Instant,
    pub op: Op,
}

#[derive(Debug, Default)]
pub struct History {
    events: Mutex<Vec<Event>>,
    /// Whether a read may find the key absent whatever was written (a
    /// cache under memory pressure forgets values).
    misses_allowed: bool,
}

impl History {
    /// A history in which any read may miss (see the module doc).
    pub fn allowing_misses() -> Self {
        Self {
            misses_allowed: true,
            ..Self::default()
        }
    }

    pub fn record(&self, start: Instant, op: Op) {
        let end = now();
        self.events.lock().unwrap().push(Event { start, end, op });
    }

    /// Records a write as started (and so "maybe applied", should its
    /// caller never finish, e.g. crash); returns its index for
    /// [`History::finish_write`].
    pub fn begin_write(&self, value: u64) -> usize {
        self.begin(Op::Write { value, ok: false })
    }

    /// As [`History::begin_write`], for a delete ordered as `value`.
    pub fn begin_delete(&self, value: u64) -> usize {
        self.begin(Op::Delete { value, ok: false })
    }

    fn begin(&self, op: Op) -> usize {
        let start = now();
        let mut events = self.events.lock().unwrap();
        events.push(Event {
            start,
            // Unfinished: it may take effect at any time from now on.
            end: start + Duration::from_secs(1 << 30),
            op,
        });
        events.len() - 1
    }

    /// Records the outcome of a write begun with [`History::begin_write`].
    pub fn finish_write(&self, index: usize, ok: bool) {
        let mut events = self.events.lock().unwrap();
        let e = &mut events[index];
        e.end = now();
        if let Op::Write { ok: o, .. } | Op::Delete { ok: o, .. } = &mut e.op {
            *o = ok;
        }
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Every event so far, in the order recorded.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Every violation, described.
    pub fn violations(&self) -> Vec<String> {
        let events = self.events.lock().unwrap().clone();
        let describe = |v: u64| {
            events
                .iter()
                .find(|w| matches!(w.op, Op::Write { value, .. } | Op::Delete { value, .. } if value == v))
                .map(|w| format!("{w:?}"))
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for read in &events {
            let Op::Read { value } = read.op else {
                continue;
            };
            // The newest write or delete acknowledged before the read
            // started, and whether it was a delete.
            let (floor, floor_deleted) = events
                .iter()
                .filter(|w| w.end < read.start)
                .filter_map(|w| match w.op {
                    Op::Write { value, ok: true } => Some((value, false)),
                    Op::Delete { value, ok: true } => Some((value, true)),
                    _ => None,
                })
                .max()
                .unwrap_or((0, false));
            // Ops that may have taken effect before the read ended.
            let attempted = |e: &&Event| e.start <= read.end;
            if value == 0 {
                let explained = self.misses_allowed
                    || floor == 0
                    || floor_deleted
                    || events.iter().filter(attempted).any(
                        // `<=`: under virtual time both can fall in one tick.
                        |d| matches!(d.op, Op::Delete { value: v, .. } if v > floor),
                    );
                if !explained {
                    out.push(format!(
                        "read found the key absent but {floor} was acknowledged before the read \
                         started (read {read:?}; write of {floor}: {})",
                        describe(floor)
                    ));
                }
                continue;
            }
            if value < floor {
                out.push(format!(
                    "read returned {value} but {} {floor} was acknowledged before the read \
                     started (read {read:?}; write of {value}: {}; {floor}: {})",
                    if floor_deleted {
                        "a delete at"
                    } else {
                        "the write of"
                    },
                    describe(value),
                    describe(floor)
                ));
            }
            let written = events
                .iter()
                .filter(attempted)
                .any(|w| matches!(w.op, Op::Write { value: v, .. } if v == value));
            if !written {
                out.push(format!("read returned {value}, which no write (yet) wrote"));
            }
        }
        out
    }
}
