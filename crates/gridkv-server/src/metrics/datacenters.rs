//! Datacenters: the cross-datacenter streams' lag and what became of the
//! writes they carry.

use super::{Prom, Snapshot, label};

/// Every datacenter metric.
pub(super) fn render(p: &mut Prom, snapshot: &Snapshot) {
    let here = snapshot
        .me
        .as_ref()
        .map_or("", |m| m.identity.datacenter.as_str());
    let mut remote: Vec<&str> = snapshot
        .members
        .iter()
        .map(|m| m.identity.datacenter.as_str())
        .filter(|dc| *dc != here)
        .collect();
    remote.sort_unstable();
    remote.dedup();
    p.family(
        "remote_lag_seconds",
        "gauge",
        "Per remote datacenter: the age of the oldest write this node has not yet delivered to it (0: none waiting).",
    );
    for dc in remote {
        let lag = snapshot
            .remote_streams
            .iter()
            .find(|s| s.datacenter == dc)
            .map_or(0.0, |s| s.lag.as_secs_f64());
        p.sample(
            "remote_lag_seconds",
            &format!("datacenter=\"{}\"", label(dc)),
            lag,
        );
    }
    p.family(
        "remote_writes_total",
        "counter",
        "Writes for owners in other datacenters, by outcome: sent (acknowledged), hinted (a full stream or an unreachable owner), overflowed (hints full too: left to anti-entropy).",
    );
    let r = &snapshot.replication;
    for (outcome, n) in [
        ("sent", r.remote_sent),
        ("hinted", r.remote_hinted),
        ("overflowed", r.remote_overflowed),
    ] {
        p.sample("remote_writes_total", &format!("outcome=\"{outcome}\""), n);
    }
}
