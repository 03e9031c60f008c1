//! One test's summary: throughput and latency percentiles, as a text
//! line or a JSON object.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::TestKind;
use super::client::{ClientReport, Tally, new_histogram};
use super::plan::Plan;

/// One test's results, in the shape of both the text and the JSON summary.
#[derive(Debug, Clone, Serialize)]
pub(super) struct TestSummary {
    pub(super) test: &'static str,
    #[serde(skip)]
    pub(super) label: &'static str,
    pub(super) requests: u64,
    pub(super) errors: u64,
    pub(super) misses: u64,
    pub(super) first_error: Option<String>,
    pub(super) failed_clients: usize,
    pub(super) first_failure: Option<String>,
    pub(super) seconds: f64,
    pub(super) ops_per_sec: f64,
    pub(super) latency_ms: Latency,
    pub(super) servers: Vec<String>,
    pub(super) clients: usize,
    pub(super) pipeline: usize,
    pub(super) data_size: usize,
    pub(super) keyspace: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) read_ratio: Option<f64>,
    pub(super) seed: u64,
}

impl TestSummary {
    pub(super) fn new(
        plan: &Plan,
        kind: TestKind,
        elapsed: Duration,
        reports: Vec<ClientReport>,
    ) -> Self {
        let mut latency_us = new_histogram();
        let mut tally = Tally::default();
        let mut failed_clients = 0;
        let mut first_failure = None;
        for report in reports {
            latency_us
                .add(&report.latency_us)
                .expect("auto-resizing histograms of microseconds always merge");
            tally.merge(report.tally);
            if let Some(failure) = report.failure {
                failed_clients += 1;
                first_failure.get_or_insert(failure);
            }
        }
        TestSummary {
            test: kind.name(),
            label: kind.label(),
            requests: tally.replies,
            errors: tally.errors,
            misses: tally.misses,
            first_error: tally.first_error,
            failed_clients,
            first_failure,
            seconds: elapsed.as_secs_f64(),
            ops_per_sec: round2(per_second(tally.replies, elapsed)),
            latency_ms: Latency::from_histogram(&latency_us),
            servers: plan.servers.clone(),
            clients: plan.clients,
            pipeline: plan.pipeline,
            data_size: plan.data_size,
            keyspace: plan.keyspace,
            read_ratio: (kind == TestKind::Mixed).then_some(plan.read_ratio),
            seed: plan.seed,
        }
    }

    /// The text summary: one line, plus indented lines for error replies
    /// and failed clients when there were any.
    pub(super) fn to_text(&self) -> String {
        let l = &self.latency_ms;
        let mut text = format!(
            "{}: {:.2} requests per second, p50={:.3} ms, p90={:.3} ms, p99={:.3} ms, \
             p99.9={:.3} ms, max={:.3} ms ({} requests, {} errors, {} misses, {:.3} s)",
            self.label,
            self.ops_per_sec,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            self.requests,
            self.errors,
            self.misses,
            self.seconds
        );
        if let Some(first) = &self.first_error {
            text.push_str(&format!(
                "\n  {}: {} error replies, first: {first}",
                self.label, self.errors
            ));
        }
        if let Some(first) = &self.first_failure {
            text.push_str(&format!(
                "\n  {}: {} of {} clients stopped early, first: {first}",
                self.label, self.failed_clients, self.clients
            ));
        }
        text
    }

    /// The JSON summary: one object on one line.
    pub(super) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a summary of plain fields always serializes")
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(super) struct Latency {
    pub(super) p50: f64,
    pub(super) p90: f64,
    pub(super) p99: f64,
    p999: f64,
    pub(super) max: f64,
}

impl Latency {
    /// Reads the percentiles of a histogram of microseconds. An empty
    /// histogram gives zeros.
    fn from_histogram(us: &Histogram<u64>) -> Self {
        let max = us.max();
        // A quantile reports the top of its bucket, which can pass the
        // largest value recorded; the max is exact.
        let at = |q: f64| micros_to_ms(us.value_at_quantile(q).min(max));
        Latency {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: micros_to_ms(max),
        }
    }
}

/// Microseconds as milliseconds: exact to the three decimals shown.
fn micros_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// `count / elapsed`, or 0 for no time at all.
pub(super) fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::record_latency;

    #[test]
    fn latency_reads_percentiles_in_ms() {
        let mut h = new_histogram();
        // 1..=999 µs and one outlier: 1000 values, so the k-th smallest is
        // the k/1000 quantile (exact below 1024 µs at 3 significant digits).
        for us in 1..=999 {
            h.record(us).unwrap();
        }
        h.record(250_000).unwrap();
        let l = Latency::from_histogram(&h);
        assert_eq!(l.p50, 0.5);
        assert_eq!(l.p90, 0.9);
        assert_eq!(l.p99, 0.99);
        assert_eq!(l.p999, 0.999);
        assert!((249.0..=250.2).contains(&l.max), "{}", l.max);
        assert_eq!(Latency::from_histogram(&new_histogram()).max, 0.0);
    }

    #[test]
    fn recording_grows_the_histogram_instead_of_clamping() {
        let mut h = new_histogram();
        record_latency(&mut h, Duration::from_micros(20), 99);
        record_latency(&mut h, Duration::from_millis(1500), 1);
        assert_eq!(h.len(), 100);
        let l = Latency::from_histogram(&h);
        assert_eq!(l.p50, 0.02);
        assert!((1499.0..=1501.0).contains(&l.max), "{}", l.max);
        // Merging histograms of different ranges keeps every value.
        let mut merged = new_histogram();
        let mut small = new_histogram();
        record_latency(&mut small, Duration::from_micros(5), 1);
        merged.add(&small).unwrap();
        merged.add(&h).unwrap();
        assert_eq!(merged.len(), 101);
        assert_eq!(merged.max(), h.max());
    }

    #[test]
    fn percentiles_never_pass_the_max() {
        let mut h = new_histogram();
        h.record_n(123_456, 10).unwrap();
        let l = Latency::from_histogram(&h);
        assert!(l.p50 <= l.max && l.p999 <= l.max);
    }

    fn summary() -> TestSummary {
        TestSummary {
            test: "set",
            label: "SET",
            requests: 100_000,
            errors: 3,
            misses: 0,
            first_error: Some("ERR quorum not reached".into()),
            failed_clients: 0,
            first_failure: None,
            seconds: 1.019_2,
            ops_per_sec: 98_120.45,
            latency_ms: Latency {
                p50: 0.271,
                p90: 0.303,
                p99: 0.391,
                p999: 0.815,
                max: 2.031,
            },
            servers: vec!["127.0.0.1:6380".into()],
            clients: 50,
            pipeline: 1,
            data_size: 100,
            keyspace: 10_000,
            read_ratio: None,
            seed: 42,
        }
    }

    #[test]
    fn text_summary_is_stable() {
        assert_eq!(
            summary().to_text(),
            "SET: 98120.45 requests per second, p50=0.271 ms, p90=0.303 ms, p99=0.391 ms, \
             p99.9=0.815 ms, max=2.031 ms (100000 requests, 3 errors, 0 misses, 1.019 s)\n  \
             SET: 3 error replies, first: ERR quorum not reached"
        );
    }

    #[test]
    fn json_summary_is_one_object() {
        let json = summary().to_json();
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["test"], "set");
        assert_eq!(v["requests"], 100_000);
        assert_eq!(v["errors"], 3);
        assert_eq!(v["ops_per_sec"], 98_120.45);
        assert_eq!(v["latency_ms"]["p999"], 0.815);
        assert_eq!(v["first_failure"], serde_json::Value::Null);
        assert!(v.get("read_ratio").is_none());
        assert!(v.get("label").is_none());
    }
}
