//! What a node says as it starts: the replication in force and how its
//! cluster traffic is protected.

use super::formation::Formation;
use super::Config;
use crate::replication::Consistency;

/// Logs the replication the node starts with, saying so when it is weaker
/// than configured (a standalone node) or than strong (eventual).
pub(super) fn log_start(config: &Config, formation: &Formation, needed: usize) {
    let r = &config.replication;
    let (n, w, rq) = (r.replicas, r.write_quorum, r.read_quorum);
    if let (Some(wl), Some(rl)) = (r.write_consistency, r.read_consistency) {
        tracing::info!(
            node = %config.node_id,
            datacenter = %config.datacenter,
            "replicas {}, writes {wl}, reads {rl}: {}",
            r.placement(),
            r.guarantee().as_str()
        );
    } else if r.consistency == Consistency::Eventual {
        tracing::warn!(
            node = %config.node_id,
            "consistency eventual (asked for): N={n} W={w} R={rq}; with W + R <= N a read may \
             miss an acknowledged write until repair brings the owners level"
        );
    } else {
        tracing::info!(node = %config.node_id, "consistency strong: N={n} W={w} R={rq}");
    }
    match &config.transport.tls {
        Some(tls) => {
            let status = tls.status();
            tracing::info!(
                node = %config.node_id,
                certificates = status.certificates.len(),
                "cluster traffic: mutual TLS 1.3, certificate names node {}",
                status.node_id
            );
        }
        None if config.insecure => tracing::warn!(
            node = %config.node_id,
            "cluster traffic: PLAINTEXT (insecure): anyone who reaches {} can read and \
             rewrite the cluster",
            config.listen
        ),
        None => tracing::info!(
            node = %config.node_id,
            "cluster traffic: plaintext on loopback ({})",
            config.listen
        ),
    }
    if formation.standalone() {
        tracing::warn!(
            node = %config.node_id,
            "no seeds: a one-node cluster; it keeps N=1 of {n} (W=1, R=1) until other nodes \
             join through it"
        );
    } else {
        tracing::info!(
            node = %config.node_id,
            seeds = formation.seeds(),
            "joining through seeds; data calls wait until the cluster has formed with at \
             least {needed} members"
        );
    }
}
