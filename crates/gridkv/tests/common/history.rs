//! A history checker for single-key register histories in which failed
//! writes are "maybe applied".
//!
//! Every write writes a distinct, increasing integer, so versions order
//! like values. A read that starts after a write was acknowledged must
//! return that value or a newer one; and it may return only values whose
//! write started before the read ended (acknowledged, failed, or still in
//! flight: a failed write is indeterminate).
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
}

impl History {
    pub fn record(&self, start: Instant, op: Op) {
        let end = now();
        self.events.lock().unwrap().push(Event { start, end, op });
    }

    /// Records a write as started (and so "maybe applied", should its
    /// caller never finish, e.g. crash); returns its index for
    /// [`History::finish_write`].
    pub fn begin_write(&self, value: u64) -> usize {
        let start = now();
        let mut events = self.events.lock().unwrap();
        events.push(Event {
            start,
            // Unfinished: it may take effect at any time from now on.
            end: start + Duration::from_secs(1 << 30),
            op: Op::Write { value, ok: false },
        });
        events.len() - 1
    }

    /// Records the outcome of a write begun with [`History::begin_write`].
    pub fn finish_write(&self, index: usize, ok: bool) {
        let mut events = self.events.lock().unwrap();
        let e = &mut events[index];
        e.end = now();
        if let Op::Write { ok: o, .. } = &mut e.op {
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
        let mut out = Vec::new();
        for read in &events {
            let Op::Read { value } = read.op else {
                continue;
            };
            // The newest write acknowledged before the read started.
            let floor = events
                .iter()
                .filter_map(|w| match w.op {
                    Op::Write { value, ok: true } if w.end < read.start => Some(value),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            if value < floor {
                let when = |v: u64| {
                    events
                        .iter()
                        .find(|w| matches!(w.op, Op::Write { value, .. } if value == v))
                        .map(|w| format!("{:?}", w))
                        .unwrap_or_default()
                };
                out.push(format!(
                    "read returned {value} but {floor} was acknowledged before the read started \
                     (read {read:?}; write of {value}: {}; write of {floor}: {})",
                    when(value),
                    when(floor)
                ));
            }
            if value != 0 {
                let written = events.iter().any(|w| {
                    // `<=`: under virtual time both can fall in one tick.
                    matches!(w.op, Op::Write { value: v, .. } if v == value) && w.start <= read.end
                });
                if !written {
                    out.push(format!("read returned {value}, which no write (yet) wrote"));
                }
            }
        }
        out
    }
}
