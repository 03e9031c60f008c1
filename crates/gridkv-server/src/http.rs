//! The HTTP admin endpoints:
//!
//! - `GET /health`: `200` once the node has joined and filled its ranges,
//!   `503` before that and while it leaves; a small JSON body says which.
//! - `GET /metrics`: Prometheus text format, every name prefixed `gridkv_`.
//! - `GET /cluster`: JSON: this node, the members as it sees them, and the
//!   ring's ownership summary.
//!
//! Each node renders its own figures (no global registry), so several
//! nodes in one process (the demo) report apart.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use gridkv::metrics::HistogramSnapshot;
use gridkv::{Liveness, RingState};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;

/// The admin router for one node.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/cluster", get(cluster))
        .route("/", get(index))
        .with_state(shared)
}

/// Serves the admin endpoints on `listener` until `cancel` fires.
pub async fn serve_http(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let app = router(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
    {
        tracing::warn!("HTTP admin server stopped: {e}");
    }
}

/// What `/health` reports.
pub fn health_status(shared: &Shared) -> (StatusCode, &'static str) {
    if shared.leaving.load(Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "leaving")
    } else if shared.node.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "joining")
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let (code, status) = health_status(&shared);
    let s = shared.node.replication_status();
    let body = json!({
        "status": status,
        "node": shared.node.id().to_string(),
        "replicas": s.replicas,
        "effective_replicas": s.effective_replicas,
        "effective_write_quorum": s.effective_write_quorum,
        "effective_read_quorum": s.effective_read_quorum,
        "replication_reduced": s.is_reduced(),
    });
    (code, axum::Json(body)).into_response()
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "GridKV admin: GET /health, /metrics (Prometheus), /cluster (JSON)\n",
    )
        .into_response()
}

async fn cluster(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(cluster_json(&shared)).into_response()
}

/// The `/cluster` document.
pub fn cluster_json(shared: &Shared) -> serde_json::Value {
    let node = &shared.node;
    let transport = node.transport();
    let members: Vec<_> = node
        .members()
        .iter()
        .map(|m| {
            let rtt = transport
                .rtt(&m.identity.addr)
                .and_then(|r| r.srtt)
                .map(|d| d.as_secs_f64() * 1000.0);
            json!({
                "id": m.identity.id.to_string(),
                "address": m.identity.addr,
                "state": m.liveness.as_str(),
                "ring_state": m.ring.as_str(),
                "datacenter": m.identity.datacenter,
                "incarnation": m.incarnation,
                "generation": m.identity.generation.get(),
                "rtt_ms": rtt,
                "self": m.identity.id == node.id(),
            })
        })
        .collect();
    let status = node.replication_status();
    json!({
        "node": {
            "id": node.id().to_string(),
            "address": node.advertised_addr(),
            "resp": shared.resp_addr.get().map(|a| a.to_string()),
            "ready": node.is_ready(),
            "leaving": shared.leaving.load(Relaxed),
        },
        "members": members,
        "ring": ring_summary(node, status.effective_replicas),
        "replication": {
            "replicas": status.replicas,
            "write_quorum": status.write_quorum,
            "read_quorum": status.read_quorum,
            "effective_replicas": status.effective_replicas,
            "effective_write_quorum": status.effective_write_quorum,
            "effective_read_quorum": status.effective_read_quorum,
        },
    })
}

/// Per placement node: the share of the hash ring it is the primary for,
/// and the share it holds a replica of (primary included).
fn ring_summary(node: &gridkv::GridKv, n: usize) -> serde_json::Value {
    let ring = node.ring();
    let mut primary = std::collections::BTreeMap::<String, f64>::new();
    let mut replica = std::collections::BTreeMap::<String, f64>::new();
    const RING: f64 = 18_446_744_073_709_551_616.0; // 2^64
    for (range, owners) in ring.ranges(n.max(1)) {
        let share = if range.is_full() {
            1.0
        } else {
            range.end.wrapping_sub(range.start) as f64 / RING
        };
        for (i, id) in owners.iter().enumerate() {
            if i == 0 {
                *primary.entry(id.to_string()).or_default() += share;
            }
            *replica.entry(id.to_string()).or_default() += share;
        }
    }
    let nodes: Vec<_> = ring
        .nodes()
        .iter()
        .map(|id| {
            let id = id.to_string();
            json!({
                "id": id,
                "primary_share": primary.get(&id).copied().unwrap_or(0.0),
                "replica_share": replica.get(&id).copied().unwrap_or(0.0),
            })
        })
        .collect();
    json!({
        "version": ring.version(),
        "vnodes_per_node": ring.vnodes(),
        "replicas": n,
        "nodes": nodes,
    })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(&shared),
    )
        .into_response()
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Prom(String);

impl Prom {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP gridkv_{name} {help}");
        let _ = writeln!(self.0, "# TYPE gridkv_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "gridkv_{name} {value}");
        } else {
            let _ = writeln!(self.0, "gridkv_{name}{{{labels}}} {value}");
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }

    fn histogram(&mut self, name: &str, labels: &str, h: &HistogramSnapshot) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in h.cumulative() {
            let le = bound.map_or("+Inf".to_owned(), |d| format!("{}", d.as_secs_f64()));
            let _ = writeln!(
                self.0,
                "gridkv_{name}_bucket{{{labels}{sep}le=\"{le}\"}} {count}"
            );
        }
        self.sample(&format!("{name}_sum"), labels, h.sum.as_secs_f64());
        self.sample(&format!("{name}_count"), labels, h.count);
    }
}

/// The `/metrics` text.
pub fn render_metrics(shared: &Shared) -> String {
    let node = &shared.node;
    let mut p = Prom(String::with_capacity(8 << 10));
    let r = node.replication_stats();
    let s = node.store().stats();
    let status = node.replication_status();
    let m = node.metrics();

    p.one(
        "ready",
        "gauge",
        "1 once the node has joined and filled its ranges.",
        u8::from(node.is_ready()),
    );

    p.family(
        "operation_duration_seconds",
        "histogram",
        "Latency of data operations as callers saw them (errors included).",
    );
    p.histogram(
        "operation_duration_seconds",
        "op=\"read\"",
        &m.reads.snapshot(),
    );
    p.histogram(
        "operation_duration_seconds",
        "op=\"write\"",
        &m.writes.snapshot(),
    );
    p.histogram(
        "operation_duration_seconds",
        "op=\"delete\"",
        &m.deletes.snapshot(),
    );

    p.family(
        "operations_total",
        "counter",
        "Data operations answered, by kind and result.",
    );
    p.sample("operations_total", "op=\"read\",result=\"ok\"", r.reads);
    p.sample("operations_total", "op=\"write\",result=\"ok\"", r.writes);
    p.sample(
        "operations_total",
        "op=\"local_read\",result=\"ok\"",
        m.local_reads.load(Relaxed),
    );
    p.one(
        "quorum_failures_total",
        "counter",
        "Operations that failed for lack of a quorum or its deadline.",
        r.quorum_failures,
    );
    p.one(
        "restamped_writes_total",
        "counter",
        "Writes re-stamped because a replica held a newer version.",
        r.restamps,
    );
    p.one(
        "read_repairs_total",
        "counter",
        "Read-repair writes sent to stale owners.",
        r.read_repairs,
    );
    p.one(
        "hints_stored_total",
        "counter",
        "Hints stored for unreachable owners.",
        r.hints_stored,
    );
    p.one(
        "hints_delivered_total",
        "counter",
        "Hints delivered to their owner.",
        r.hints_delivered,
    );
    p.one(
        "hints_dropped_total",
        "counter",
        "Hints dropped (full, or expired).",
        r.hints_dropped,
    );
    p.one("hints_pending", "gauge", "Hints held now.", r.hints_pending);
    p.one(
        "anti_entropy_rounds_total",
        "counter",
        "Anti-entropy rounds run.",
        r.anti_entropy_rounds,
    );
    p.one(
        "anti_entropy_bytes_total",
        "counter",
        "Bytes anti-entropy exchanged.",
        r.anti_entropy_bytes,
    );
    p.one(
        "anti_entropy_entries_total",
        "counter",
        "Entries anti-entropy pulled.",
        r.anti_entropy_entries,
    );
    p.one(
        "rebalance_entries_total",
        "counter",
        "Entries received while filling gained ranges.",
        r.fill_entries,
    );
    p.one(
        "rebalance_bytes_total",
        "counter",
        "Bytes received while filling gained ranges.",
        r.fill_bytes,
    );

    p.one(
        "replicas_effective",
        "gauge",
        "Replication factor in force (below the configured one while the cluster is smaller).",
        status.effective_replicas,
    );
    p.one(
        "replicas_configured",
        "gauge",
        "Configured replication factor N.",
        status.replicas,
    );

    let members = node.members();
    p.family("members", "gauge", "Members this node knows, by liveness.");
    for l in [
        Liveness::Alive,
        Liveness::Suspect,
        Liveness::Down,
        Liveness::Left,
    ] {
        let c = members.iter().filter(|m| m.liveness == l).count();
        p.sample("members", &format!("state=\"{}\"", l.as_str()), c);
    }
    p.family("ring_members", "gauge", "Members by ring state.");
    for rs in [
        RingState::Joining,
        RingState::Normal,
        RingState::Leaving,
        RingState::Left,
        RingState::Removed,
    ] {
        let c = members.iter().filter(|m| m.ring == rs).count();
        p.sample(
            "ring_members",
            &format!("ring_state=\"{}\"", rs.as_str()),
            c,
        );
    }

    p.one(
        "store_bytes",
        "gauge",
        "Bytes the local store charges against its budget.",
        s.bytes,
    );
    p.one(
        "store_budget_bytes",
        "gauge",
        "The local store's memory budget.",
        s.budget,
    );
    p.family(
        "store_entries",
        "gauge",
        "Entries in the local store, by kind.",
    );
    p.sample("store_entries", "kind=\"live\"", s.live);
    p.sample("store_entries", "kind=\"tombstone\"", s.tombstones);
    p.sample("store_entries", "kind=\"evicted\"", s.evicted);
    p.one(
        "evictions_total",
        "counter",
        "Values evicted for memory.",
        s.evictions,
    );
    p.one(
        "expirations_total",
        "counter",
        "Values expired by their TTL.",
        s.expirations,
    );
    p.one(
        "keyspace_hits_total",
        "counter",
        "Local lookups that found a live value.",
        s.hits,
    );
    p.one(
        "keyspace_misses_total",
        "counter",
        "Local lookups that found none.",
        s.gets - s.hits,
    );

    let transport = node.transport();
    p.family(
        "peer_rtt_seconds",
        "gauge",
        "Smoothed round-trip time to each peer (data lane).",
    );
    for member in members.iter().filter(|m| m.identity.id != node.id()) {
        if let Some(srtt) = transport.rtt(&member.identity.addr).and_then(|r| r.srtt) {
            p.sample(
                "peer_rtt_seconds",
                &format!(
                    "peer=\"{}\",addr=\"{}\"",
                    label(&member.identity.id.to_string()),
                    label(&member.identity.addr)
                ),
                srtt.as_secs_f64(),
            );
        }
    }
    let t = transport.stats();
    p.one(
        "transport_bytes_sent_total",
        "counter",
        "Bytes sent to peers.",
        t.bytes_sent,
    );
    p.one(
        "transport_bytes_received_total",
        "counter",
        "Bytes received from peers.",
        t.bytes_received,
    );
    p.one(
        "transport_open_connections",
        "gauge",
        "Open peer connections.",
        t.open_connections,
    );
    p.one(
        "transport_dial_failures_total",
        "counter",
        "Failed dials to peers.",
        t.dial_failures,
    );

    let st = &shared.stats;
    p.one(
        "resp_connected_clients",
        "gauge",
        "RESP clients connected now.",
        st.connected_clients.load(Relaxed),
    );
    p.one(
        "resp_connections_total",
        "counter",
        "RESP clients accepted.",
        st.total_connections.load(Relaxed),
    );
    p.one(
        "resp_rejected_connections_total",
        "counter",
        "RESP clients refused at max_clients.",
        st.rejected_connections.load(Relaxed),
    );
    p.one(
        "resp_commands_total",
        "counter",
        "RESP commands run.",
        st.total_commands.load(Relaxed),
    );
    p.one(
        "resp_error_replies_total",
        "counter",
        "RESP error replies sent.",
        st.error_replies.load(Relaxed),
    );
    p.one(
        "resp_protocol_errors_total",
        "counter",
        "RESP connections closed for a protocol error.",
        st.protocol_errors.load(Relaxed),
    );
    p.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histograms_render_cumulative_buckets() {
        let h = gridkv::metrics::LatencyHistogram::new();
        h.record(std::time::Duration::from_micros(30));
        let mut p = Prom(String::new());
        p.histogram("x_seconds", "op=\"read\"", &h.snapshot());
        assert!(
            p.0.contains("gridkv_x_seconds_bucket{op=\"read\",le=\"0.000025\"} 0\n"),
            "{}",
            p.0
        );
        assert!(p
            .0
            .contains("gridkv_x_seconds_bucket{op=\"read\",le=\"0.00005\"} 1\n"));
        assert!(p
            .0
            .contains("gridkv_x_seconds_bucket{op=\"read\",le=\"+Inf\"} 1\n"));
        assert!(p.0.contains("gridkv_x_seconds_count{op=\"read\"} 1\n"));
    }
}
