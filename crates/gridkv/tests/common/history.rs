//! A history checker for single-key register histories in which failed
//! writes are "maybe applied".
//!
//! Every write writes a distinct, increasing integer, so versions order
//! like values. A read that starts after a write was acknowledged must
//! return that value or a newer one; and it may return only values whose
//! write started before the read ended (acknowledged, failed, or still in
//! flight: a failed write is indeterminate).
#![allow(dead_code)]

use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone)]
pub enum Op {
    /// A write of `value`; `ok` whether it was acknowledged.
    Write { value: u64, ok: bool },
    /// A read that returned `value` (0 = absent); failed reads are not
    /// recorded.
    Read { value: u64 },
}

#[derive(Debug, Clone)]
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
        let end = Instant::now();
        self.events.lock().unwrap().push(Event { start, end, op });
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
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
                out.push(format!(
                    "read returned {value} but {floor} was acknowledged before the read started"
                ));
            }
            if value != 0 {
                let written = events.iter().any(|w| {
                    matches!(w.op, Op::Write { value: v, .. } if v == value) && w.start < read.end
                });
                if !written {
                    out.push(format!("read returned {value}, which no write (yet) wrote"));
                }
            }
        }
        out
    }
}
