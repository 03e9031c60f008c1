//! The `/metrics` text: Prometheus exposition format, every name prefixed
//! `gridkv_`, rendered from one [`Snapshot`] (the same `INFO` renders).
//!
//! Each node renders its own figures (no global registry), so several
//! nodes in one process (the demo) report apart.

use std::fmt::Write;

use gridkv::metrics::HistogramSnapshot;
use gridkv::{Liveness, RingState};

use crate::stats::Snapshot;

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

mod datacenters;
mod security;

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

/// The `/metrics` text for `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    let mut p = Prom(String::with_capacity(8 << 10));
    let r = &snapshot.replication;
    let s = &snapshot.store;
    let status = &snapshot.status;

    p.one(
        "ready",
        "gauge",
        "1 once the node has joined and filled its ranges.",
        u8::from(snapshot.ready),
    );

    p.family(
        "operation_duration_seconds",
        "histogram",
        "Latency of data operations as callers saw them (errors included).",
    );
    p.histogram("operation_duration_seconds", "op=\"read\"", &snapshot.reads);
    p.histogram(
        "operation_duration_seconds",
        "op=\"write\"",
        &snapshot.writes,
    );
    p.histogram(
        "operation_duration_seconds",
        "op=\"delete\"",
        &snapshot.deletes,
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
        snapshot.local_reads,
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
        "speculative_reads_total",
        "counter",
        "Reads that asked one more owner because one was slower than its usual.",
        r.speculative_reads,
    );
    p.one(
        "unreachable_fast_failures_total",
        "counter",
        "Operations failed at once: their quorum needed an owner this node cannot reach now.",
        r.fast_failures,
    );
    p.one(
        "peers_avoided",
        "gauge",
        "Peers this node avoids now after failed requests to them.",
        r.peers_avoided,
    );
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

    let members = &snapshot.members;
    p.family("members", "gauge", "Members this node knows, by liveness.");
    for l in [
        Liveness::Alive,
        Liveness::Suspect,
        Liveness::Down,
        Liveness::Left,
    ] {
        p.sample(
            "members",
            &format!("state=\"{}\"", l.as_str()),
            snapshot.members_in(l),
        );
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
        "store_forgotten_total",
        "counter",
        "Entries dropped before their time for memory (stubs, tombstones \
         collected early), whose versions their range's watermark keeps.",
        s.forgotten,
    );
    p.one(
        "store_refused_forgotten_total",
        "counter",
        "Writes of absent keys refused under their range's watermark (what \
         could have brought back a forgotten delete or overwrite).",
        s.refused_forgotten,
    );
    p.one(
        "store_unvouched_total",
        "counter",
        "Values dropped because every other owner had forgotten their \
         range above them (a delete or overwrite nobody could tell this \
         replica about any more).",
        s.unvouched,
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

    let clock = &snapshot.clock;
    p.one(
        "clock_offset_ms",
        "gauge",
        "This node's clock minus the median of the members it reaches, measured on \
         membership round trips (0 until a majority is measured).",
        clock.offset_ms.unwrap_or(0),
    );
    p.one(
        "clock_offset_uncertainty_ms",
        "gauge",
        "The uncertainty of gridkv_clock_offset_ms (half a round trip).",
        clock.uncertainty_ms,
    );
    p.one(
        "clock_offset_bound_ms",
        "gauge",
        "The bound past which the node coordinates no writes.",
        clock.bound_ms,
    );
    p.one(
        "clock_fenced",
        "gauge",
        "1 while this node's clock is beyond the bound from the cluster's median: it \
         coordinates no writes (it still serves reads and replicas).",
        u8::from(clock.fenced),
    );
    p.one(
        "clock_restart_barrier_seconds",
        "gauge",
        "While a restart's write barrier holds, how long it has left at most; 0 otherwise.",
        clock.restart_barrier.unwrap_or_default().as_secs_f64(),
    );
    p.family(
        "peer_rtt_seconds",
        "gauge",
        "Smoothed round-trip time to each peer (data lane).",
    );
    for peer in &snapshot.peer_rtts {
        p.sample(
            "peer_rtt_seconds",
            &format!(
                "peer=\"{}\",addr=\"{}\"",
                label(&peer.id.to_string()),
                label(&peer.addr)
            ),
            peer.srtt.as_secs_f64(),
        );
    }
    let t = &snapshot.transport;
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
    for (name, kind, help, value) in [
        (
            "transport_links",
            "gauge",
            "Peer addresses with a link now.",
            t.links,
        ),
        (
            "transport_links_refused_total",
            "counter",
            "Links refused: the max_links bound was reached.",
            t.links_refused,
        ),
        (
            "transport_backpressure_total",
            "counter",
            "Sends refused because a peer's queue or in-flight limit was full.",
            t.backpressure,
        ),
        (
            "transport_frame_errors_total",
            "counter",
            "Connections closed for a frame over the limit or one that did not decode.",
            t.frame_errors,
        ),
        (
            "transport_idle_timeouts_total",
            "counter",
            "Connections closed idle or with a stalled write.",
            t.idle_timeouts,
        ),
        (
            "membership_probe_requests_refused_total",
            "counter",
            "Indirect probes refused: the address named was not the member's this node knows.",
            snapshot.membership.probe_requests_refused,
        ),
        (
            "membership_links_closed_total",
            "counter",
            "Links the sweep closed: neither a member's nor a seed's address.",
            snapshot.membership.links_closed,
        ),
        (
            "replication_drift_skipped_total",
            "counter",
            "Versions from peers skipped: stamped past the cluster clock plus the drift bound.",
            snapshot.replication.drift_skipped,
        ),
    ] {
        p.one(name, kind, help, value);
    }

    let st = &snapshot.server;
    p.one(
        "resp_connected_clients",
        "gauge",
        "RESP clients connected now.",
        st.connected_clients,
    );
    p.one(
        "resp_connections_total",
        "counter",
        "RESP clients accepted.",
        st.total_connections,
    );
    p.one(
        "resp_rejected_connections_total",
        "counter",
        "RESP clients refused at max_clients.",
        st.rejected_connections,
    );
    p.one(
        "resp_commands_total",
        "counter",
        "RESP commands run.",
        st.total_commands,
    );
    p.one(
        "resp_error_replies_total",
        "counter",
        "RESP error replies sent.",
        st.error_replies,
    );
    p.one(
        "resp_protocol_errors_total",
        "counter",
        "RESP connections closed for a protocol error.",
        st.protocol_errors,
    );
    p.family(
        "resp_limit_exceeded_total",
        "counter",
        "RESP clients closed at a limit (the limit label names its flag).",
    );
    for limit in crate::limits::Limit::ALL {
        p.sample(
            "resp_limit_exceeded_total",
            &format!("limit=\"{}\"", limit.name()),
            st.limit_exceeded[limit as usize],
        );
    }
    p.one(
        "resp_clients_input_bytes",
        "gauge",
        "Bytes RESP clients sent that are not yet parsed into commands.",
        st.clients_input_bytes,
    );
    p.one(
        "resp_clients_output_bytes",
        "gauge",
        "Reply bytes held for RESP clients, not yet written.",
        st.clients_output_bytes,
    );
    p.one(
        "resp_clients_memory_peak_bytes",
        "gauge",
        "The most input and output bytes RESP clients held at once.",
        st.clients_memory_peak,
    );
    p.one(
        "resp_parser_scanned_bytes_total",
        "counter",
        "Bytes the RESP parser examined (about the bytes parsed, however they arrived).",
        st.parser_scanned_bytes,
    );
    security::render(&mut p, snapshot);
    datacenters::render(&mut p, snapshot);
    p.0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::shared::ServerCounters;

    /// A snapshot with every figure zero but the ones a test sets.
    fn snapshot() -> Snapshot {
        let status = gridkv::replication::ReplicationStatus {
            replicas: 3,
            write_quorum: 2,
            read_quorum: 2,
            effective_replicas: 1,
            effective_write_quorum: 1,
            effective_read_quorum: 1,
        };
        Snapshot {
            node_id: gridkv::NodeId::new("n1").unwrap(),
            cluster_addr: "127.0.0.1:7000".into(),
            resp_port: 6379,
            uptime: Duration::from_secs(5),
            ready: true,
            server: ServerCounters::default(),
            auth: Default::default(),
            max_clients: 10,
            max_client_output: 64 << 20,
            max_clients_memory: 1 << 30,
            store: Default::default(),
            replication: Default::default(),
            status,
            members: Arc::new(Vec::new()),
            me: None,
            placement_nodes: 1,
            reads: Default::default(),
            writes: Default::default(),
            deletes: Default::default(),
            local_reads: 0,
            transport: Default::default(),
            peer_rtts: Vec::new(),
            clock: gridkv::ClockStatus {
                offset_ms: Some(-12),
                fenced: true,
                bound_ms: 5_000,
                ..Default::default()
            },
            membership: gridkv::MembershipStats {
                probe_requests_refused: 4,
                links_closed: 2,
                security: Default::default(),
            },
            tls: None,
            remote_streams: Vec::new(),
        }
    }

    #[test]
    fn cluster_security_is_metrics() {
        let mut s = snapshot();
        assert!(render(&s).contains("gridkv_cluster_tls 0\n"));
        s.membership.security.forged = 3;
        s.membership.security.sender_mismatch = 2;
        s.transport.identity_mismatches = 4;
        let in_a_day = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 86_400;
        s.tls = Some(gridkv::TlsStatus {
            node_id: gridkv::NodeId::new("n1").unwrap(),
            certificates: vec![gridkv::CertExpiry {
                kind: gridkv::CertKind::Ca,
                subject: "CN=\"ca\"".into(),
                not_after_secs: in_a_day,
            }],
            reloads_ok: 2,
            reloads_failed: 1,
            last_error: None,
        });
        let prom = render(&s);
        for metric in [
            "gridkv_cluster_tls 1\n",
            "gridkv_membership_claims_refused_total{reason=\"forged\"} 3\n",
            "gridkv_membership_claims_refused_total{reason=\"sender_mismatch\"} 2\n",
            "gridkv_transport_identity_mismatches_total 4\n",
            "gridkv_tls_reloads_total{result=\"ok\"} 2\n",
            "gridkv_tls_reloads_total{result=\"failed\"} 1\n",
        ] {
            assert!(prom.contains(metric), "/metrics lacks {metric}:\n{prom}");
        }
        let line = prom
            .lines()
            .find(|l| {
                l.starts_with(
                    "gridkv_tls_certificate_expiry_seconds{kind=\"ca\",subject=\"CN=_ca_\"}",
                )
            })
            .unwrap_or_else(|| panic!("no CA expiry (quotes escaped):\n{prom}"));
        let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((86_000.0..=86_400.0).contains(&secs), "{line}");
    }

    #[test]
    fn link_and_probe_refusals_are_metrics() {
        let mut s = snapshot();
        s.transport.links = 3;
        s.transport.links_refused = 5;
        s.replication.drift_skipped = 6;
        let prom = render(&s);
        for metric in [
            "gridkv_transport_links 3",
            "gridkv_transport_links_refused_total 5",
            "gridkv_membership_probe_requests_refused_total 4",
            "gridkv_membership_links_closed_total 2",
            "gridkv_replication_drift_skipped_total 6",
        ] {
            assert!(prom.contains(metric), "/metrics lacks {metric}:\n{prom}");
        }
    }

    #[test]
    fn auth_refusals_are_metrics_and_info() {
        let mut s = snapshot();
        s.auth.failures = 3;
        s.auth.denied_keys = 4;
        s.auth.denied_commands = 5;
        s.auth.reload_failures = 1;
        s.server.tls_handshake_failures = 6;
        s.server.admin_refusals = 7;
        let prom = render(&s);
        for metric in [
            "gridkv_resp_auth_failures_total 3",
            "gridkv_resp_acl_denied_total{reason=\"key\"} 4",
            "gridkv_resp_acl_denied_total{reason=\"command\"} 5",
            "gridkv_acl_reloads_total{result=\"failed\"} 1",
            "gridkv_resp_tls_handshake_failures_total 6",
            "gridkv_http_admin_refusals_total 7",
        ] {
            assert!(prom.contains(metric), "/metrics lacks {metric}:\n{prom}");
        }
        let info = crate::info::render(&s, Some(b"stats"));
        assert!(info.contains("acl_access_denied_auth:3\r"), "{info}");
        assert!(info.contains("acl_access_denied_key:4\r"), "{info}");
    }

    #[test]
    fn the_clock_is_a_metric() {
        let prom = render(&snapshot());
        for metric in [
            "gridkv_clock_offset_ms -12",
            "gridkv_clock_fenced 1",
            "gridkv_clock_offset_bound_ms 5000",
            "gridkv_clock_restart_barrier_seconds 0",
        ] {
            assert!(prom.contains(metric), "/metrics lacks {metric}:\n{prom}");
        }
    }

    #[test]
    fn info_and_metrics_render_the_same_figures() {
        let mut s = snapshot();
        s.server.total_commands = 7;
        s.server.protocol_errors = 2;
        s.server.limit_exceeded[crate::limits::Limit::ClientOutput as usize] = 3;
        s.server.clients_output_bytes = 1234;
        s.store.live = 11;
        s.replication.writes = 5;
        let info = crate::info::render(&s, None);
        let prom = render(&s);
        for (field, metric) in [
            (
                "total_commands_processed:7\r",
                "gridkv_resp_commands_total 7",
            ),
            ("protocol_errors:2\r", "gridkv_resp_protocol_errors_total 2"),
            (
                "limit_exceeded_max_client_output:3\r",
                "gridkv_resp_limit_exceeded_total{limit=\"max-client-output\"} 3",
            ),
            (
                "clients_output_bytes:1234\r",
                "gridkv_resp_clients_output_bytes 1234",
            ),
            (
                "quorum_writes:5\r",
                "gridkv_operations_total{op=\"write\",result=\"ok\"} 5",
            ),
            ("db0:keys=11,", "gridkv_store_entries{kind=\"live\"} 11"),
            ("replication_reduced:1\r", "gridkv_replicas_configured 3"),
        ] {
            assert!(info.contains(field), "INFO lacks {field}:\n{info}");
            assert!(prom.contains(metric), "/metrics lacks {metric}:\n{prom}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histograms_render_cumulative_buckets() {
        let h = gridkv::metrics::LatencyHistogram::new();
        h.record(Duration::from_micros(30));
        let mut p = Prom(String::new());
        p.histogram("x_seconds", "op=\"read\"", &h.snapshot());
        assert!(
            p.0.contains("gridkv_x_seconds_bucket{op=\"read\",le=\"0.000025\"} 0\n"),
            "{}",
            p.0
        );
        assert!(p.0.contains("gridkv_x_seconds_bucket{op=\"read\",le=\"0.00005\"} 1\n"));
        assert!(p.0.contains("gridkv_x_seconds_bucket{op=\"read\",le=\"+Inf\"} 1\n"));
        assert!(p.0.contains("gridkv_x_seconds_count{op=\"read\"} 1\n"));
    }
}
