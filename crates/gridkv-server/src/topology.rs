//! The HTTP admin's view of placement across datacenters: `GET
//! /placement?key=KEY` (a key's owners) and the per-datacenter summary of
//! `/cluster`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::shared::Shared;

/// `/placement`'s query.
#[derive(Debug, serde::Deserialize)]
pub struct PlacementQuery {
    key: Option<String>,
}

/// `GET /placement?key=KEY`: the key's owners in preference order, its
/// replicas only (never sloppy stand-ins), as
/// `{"key", "owners": [{"id", "dc", "rack", "state", "ring_state"}]}`.
pub async fn placement(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<PlacementQuery>,
) -> Response {
    let Some(key) = query.key else {
        let body = json!({"error": "give the key: /placement?key=KEY"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    };
    axum::Json(placement_json(&shared.node, &key)).into_response()
}

/// The `/placement` document of `key`.
pub fn placement_json(node: &gridkv::GridKv, key: &str) -> serde_json::Value {
    let owners: Vec<_> = node
        .owners(key)
        .into_iter()
        .map(|o| {
            json!({
                "id": o.id.to_string(),
                "dc": o.location.datacenter,
                "rack": o.location.rack,
                "state": o.liveness.map_or("unknown", |l| l.as_str()),
                "ring_state": o.ring.map_or("unknown", |r| r.as_str()),
            })
        })
        .collect();
    json!({
        "key": key,
        "replicas": node.replica_placement().to_string(),
        "owners": owners,
    })
}

/// Per datacenter: its members by state, the copies of each key it
/// holds, and whether any member there is reachable (a datacenter with
/// none is cut off or lost: its members keep their ring slots until an
/// operator removes them).
pub fn datacenters_json(node: &gridkv::GridKv) -> serde_json::Value {
    #[derive(Default)]
    struct Dc {
        members: usize,
        alive: usize,
        suspect: usize,
        down: usize,
        left: usize,
        racks: std::collections::BTreeSet<String>,
    }
    let mut dcs: BTreeMap<String, Dc> = BTreeMap::new();
    for m in node.members().iter() {
        let dc = dcs.entry(m.identity.datacenter.clone()).or_default();
        dc.members += 1;
        match m.liveness {
            gridkv::Liveness::Alive => dc.alive += 1,
            gridkv::Liveness::Suspect => dc.suspect += 1,
            gridkv::Liveness::Down => dc.down += 1,
            gridkv::Liveness::Left => dc.left += 1,
        }
        if !m.identity.rack.is_empty() {
            dc.racks.insert(m.identity.rack.clone());
        }
    }
    let placement = node.replica_placement();
    let here = node.location().datacenter;
    let streams = node.remote_streams();
    let list: Vec<_> = dcs
        .into_iter()
        .map(|(name, dc)| {
            json!({
                "name": name,
                "local": name == here,
                "members": dc.members,
                "alive": dc.alive,
                "suspect": dc.suspect,
                "down": dc.down,
                "left": dc.left,
                "racks": dc.racks.into_iter().collect::<Vec<_>>(),
                "copies": placement.in_datacenter(&name),
                "reachable": dc.alive + dc.suspect > 0,
                // The age of the oldest write this node has not yet
                // delivered there (0: none waiting).
                "lag_ms": streams
                    .iter()
                    .find(|s| s.datacenter == name)
                    .map_or(0, |s| s.lag.as_millis() as u64),
                "queued": streams.iter().find(|s| s.datacenter == name).map_or(0, |s| s.queued),
            })
        })
        .collect();
    let (write, read) = node.consistency_levels();
    json!({
        "replicas": placement.to_string(),
        "write_consistency": write.map(|l| l.as_str()),
        "read_consistency": read.map(|l| l.as_str()),
        "guarantee": node.guarantee().as_str(),
        "datacenters": list,
    })
}
