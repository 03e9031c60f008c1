//! The HTTP admin endpoints:
//!
//! - `GET /health`: `200` once the node serves commands and has joined and
//!   filled its ranges, `503` before that, while it leaves, and while its
//!   clock is beyond the bound from the cluster's (`clock_offset`: it
//!   serves reads but coordinates no writes; this is readiness, not
//!   liveness: the node is alive and recovers by itself when its clock
//!   does); a small JSON body says which, what is missing (`waiting_for`),
//!   and the clock's offset. It answers at once, whatever the node's
//!   state.
//! - `GET /live`: `200` whenever the process answers (liveness: an
//!   orchestrator restarts a node only when this fails; `/health` is
//!   readiness).
//! - `GET /metrics`: Prometheus text format, every name prefixed `gridkv_`.
//! - `GET /cluster`: JSON: this node, the members as it sees them, and the
//!   ring's ownership summary.
//!
//! `/metrics` is rendered by [`crate::metrics`] from one [`Snapshot`].
//!
//! Every request passes [`crate::http_guard`] first: `/cluster`,
//! `/metrics` and anything that could change state need the admin token
//! (`--admin-token`) where the tables there say so. With `--http-tls` the
//! listener speaks only TLS ([`crate::tls::TlsListener`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;
use crate::stats::Snapshot;

/// The admin router for one node.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/live", get(live))
        .route("/metrics", get(metrics))
        .route("/cluster", get(cluster))
        .route("/placement", get(crate::topology::placement))
        .route("/remove", axum::routing::post(crate::remove::endpoint))
        .route("/", get(index))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            crate::http_guard::guard,
        ))
        .with_state(shared)
}

/// Serves the admin endpoints on `listener` until `cancel` fires.
pub async fn serve_http(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        let _ = shared.http_addr.set(addr);
        if !addr.ip().is_loopback() && shared.admin_token.is_none() {
            tracing::warn!(
                "HTTP admin on {addr} (not loopback) without --admin-token: /cluster, /metrics \
                 and state-changing requests are refused (403)"
            );
        }
    }
    let app = router(shared.clone());
    let stopped = async move { cancel.cancelled().await };
    let served = match shared.http_tls.clone() {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        Some(tls) => {
            let failures = shared.stats.http_tls_handshake_failures.clone();
            match crate::tls::TlsListener::new(listener, tls, failures) {
                Ok(listener) => {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = served {
        tracing::warn!("HTTP admin server stopped: {e}");
    }
}

/// What `/health` reports.
pub fn health_status(shared: &Shared) -> (StatusCode, &'static str) {
    if shared.leaving.load(Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "leaving")
    } else if shared.node.clock().fenced {
        (StatusCode::SERVICE_UNAVAILABLE, "clock_offset")
    } else if shared.node.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "joining")
    }
}

/// Liveness: `200` while the process answers at all. A node that is
/// joining, leaving or fenced for its clock is alive (it recovers by
/// itself); only one that stopped answering should be restarted.
async fn live() -> &'static str {
    "alive\n"
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let (code, status) = health_status(&shared);
    let s = shared.node.replication_status();
    let clock = shared.node.clock();
    let body = json!({
        "status": status,
        "node": shared.node.id().to_string(),
        "serving": shared.node.is_serving(),
        "waiting_for": waiting_for(&shared.node),
        "consistency": shared.node.consistency().as_str(),
        "replicas": s.replicas,
        "effective_replicas": s.effective_replicas,
        "effective_write_quorum": s.effective_write_quorum,
        "effective_read_quorum": s.effective_read_quorum,
        "replication_reduced": s.is_reduced(),
        "clock": {
            "offset_ms": clock.offset_ms,
            "uncertainty_ms": clock.uncertainty_ms,
            "bound_ms": clock.bound_ms,
            "fenced": clock.fenced,
            "restart_barrier_ms": clock.restart_barrier.map(|d| d.as_millis() as u64),
        },
    });
    (code, axum::Json(body)).into_response()
}

/// What keeps the node from serving commands, in words; `None` once it
/// serves.
fn waiting_for(node: &gridkv::GridKv) -> Option<String> {
    match node.readiness() {
        gridkv::Readiness::Serving => None,
        other => Some(other.to_string()),
    }
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "GridKV admin: GET /health, /live, /metrics (Prometheus), /cluster (JSON), \
         /placement?key=KEY (JSON)\n",
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
    let health = node.peer_health();
    let members: Vec<_> = node
        .members()
        .iter()
        .map(|m| {
            let rtt = transport
                .rtt(&m.identity.addr)
                .and_then(|r| r.srtt)
                .map(|d| d.as_secs_f64() * 1000.0);
            // What this node's own data requests say of the member:
            // reachable or avoided, whatever membership says.
            let seen = health.iter().find(|h| h.addr == m.identity.addr).map(|h| {
                json!({
                    "data_rtt_ms": h.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    "failures": h.failures,
                    "avoided_for_ms": h.avoided_for.map(|d| d.as_millis() as u64),
                })
            });
            json!({
                "id": m.identity.id.to_string(),
                "address": m.identity.addr,
                "state": m.liveness.as_str(),
                "ring_state": m.ring.as_str(),
                "datacenter": m.identity.datacenter,
                "dc": m.identity.datacenter,
                "rack": m.identity.rack,
                "incarnation": m.incarnation,
                "generation": m.identity.generation.get(),
                "rtt_ms": rtt,
                "requests": seen,
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
            "serving": node.is_serving(),
            "waiting_for": waiting_for(node),
            "standalone": node.is_standalone(),
            "leaving": shared.leaving.load(Relaxed),
        },
        // Cluster traffic: mutual TLS with signed membership, or
        // plaintext (on loopback, or allowed by --insecure).
        "tls": node.tls_enabled(),
        "insecure": node.is_insecure(),
        // The last FLUSHALL/FLUSHDB this node applied (ms since the epoch).
        "flushed_at_ms": node.flush_floor_ms(),
        "members": members,
        "ring": ring_summary(node, status.effective_replicas),
        // Per datacenter: members by state, copies held, reachability.
        "placement": crate::topology::datacenters_json(node),
        "replication": {
            "replicas": status.replicas,
            "write_quorum": status.write_quorum,
            "read_quorum": status.read_quorum,
            "effective_replicas": status.effective_replicas,
            "effective_write_quorum": status.effective_write_quorum,
            "effective_read_quorum": status.effective_read_quorum,
            "reduced": status.is_reduced(),
            "consistency": node.consistency().as_str(),
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
        crate::metrics::render(&Snapshot::take(&shared)),
    )
        .into_response()
}
