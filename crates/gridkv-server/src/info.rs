//! The `INFO` command's text: `# Section` headers and `field:value` lines,
//! as Redis writes them, so tools that read INFO find familiar fields.
//!
//! Sections: `server`, `clients`, `memory`, `stats`, `latencystats`,
//! `replication`, `cluster`, `keyspace`. `INFO` alone, `INFO all` and
//! `INFO everything` show them all; `INFO name` one. The figures come from
//! one [`Snapshot`], the same `/metrics` renders.

use std::fmt::Write;

use gridkv::Liveness;
use gridkv::metrics::HistogramSnapshot;

use crate::stats::Snapshot;

const SECTIONS: [&str; 8] = [
    "server",
    "clients",
    "memory",
    "stats",
    "latencystats",
    "replication",
    "cluster",
    "keyspace",
];

/// Renders the sections `filter` asks for (all of them for `None`).
pub fn render(snapshot: &Snapshot, filter: Option<&[u8]>) -> String {
    let filter = filter.map(|f| String::from_utf8_lossy(f).to_ascii_lowercase());
    let all = matches!(
        filter.as_deref(),
        None | Some("all" | "everything" | "default")
    );
    let mut out = String::new();
    for section in SECTIONS {
        if all || filter.as_deref() == Some(section) {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            write_section(snapshot, section, &mut out);
        }
    }
    out
}

fn latency_line(out: &mut String, name: &str, h: &HistogramSnapshot) {
    let _ = writeln!(
        out,
        "latency_percentiles_usec_{name}:p50={:.3},p99={:.3},p99.9={:.3}\r",
        h.quantile(0.5).as_secs_f64() * 1e6,
        h.quantile(0.99).as_secs_f64() * 1e6,
        h.quantile(0.999).as_secs_f64() * 1e6,
    );
}

fn write_section(s: &Snapshot, section: &str, out: &mut String) {
    let title = {
        let mut t = section.to_owned();
        t[..1].make_ascii_uppercase();
        t
    };
    let _ = writeln!(out, "# {title}\r");
    let mut line = |k: &str, v: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{k}:{v}\r");
    };
    let c = &s.server;
    match section {
        "server" => {
            line("gridkv_version", &env!("CARGO_PKG_VERSION"));
            line("redis_version", &"7.0.0");
            line("redis_mode", &"cluster");
            line("node_id", &s.node_id);
            line("process_id", &std::process::id());
            line("tcp_port", &s.resp_port);
            line("cluster_addr", &s.cluster_addr);
            line("uptime_in_seconds", &s.uptime.as_secs());
        }
        "clients" => {
            line("connected_clients", &c.connected_clients);
            line("maxclients", &s.max_clients);
            line("rejected_connections", &c.rejected_connections);
            line("clients_input_bytes", &c.clients_input_bytes);
            line("clients_output_bytes", &c.clients_output_bytes);
            line("clients_memory_peak", &c.clients_memory_peak);
            line("max_clients_memory", &s.max_clients_memory);
            line("max_client_output", &s.max_client_output);
        }
        "memory" => {
            line("used_memory", &s.store.bytes);
            line("used_memory_human", &human(s.store.bytes));
            line("maxmemory", &s.store.budget);
            line("maxmemory_human", &human(s.store.budget));
            line("maxmemory_policy", &"clock (approximate LRU)");
            line("evicted_keys", &s.store.evictions);
        }
        "stats" => {
            let r = &s.replication;
            line("total_connections_received", &c.total_connections);
            line("total_commands_processed", &c.total_commands);
            line("total_error_replies", &c.error_replies);
            line("total_net_input_bytes", &c.net_input_bytes);
            line("total_net_output_bytes", &c.net_output_bytes);
            line("rejected_connections", &c.rejected_connections);
            line("protocol_errors", &c.protocol_errors);
            line("parser_scanned_bytes", &c.parser_scanned_bytes);
            for limit in crate::limits::Limit::ALL {
                let name = format!("limit_exceeded_{}", limit.name().replace('-', "_"));
                line(&name, &c.limit_exceeded[limit as usize]);
            }
            line("acl_access_denied_auth", &s.auth.failures);
            line("acl_access_denied_cmd", &s.auth.denied_commands);
            line("acl_access_denied_key", &s.auth.denied_keys);
            line("noauth_refusals", &s.auth.noauth);
            line("keyspace_hits", &s.store.hits);
            line("keyspace_misses", &(s.store.gets - s.store.hits));
            line("expired_keys", &s.store.expirations);
            line("evicted_keys", &s.store.evictions);
            line("quorum_reads", &r.reads);
            line("quorum_writes", &r.writes);
            line("quorum_failures", &r.quorum_failures);
            line("restamped_writes", &r.restamps);
            line("read_repairs", &r.read_repairs);
            line("hints_pending", &r.hints_pending);
            line("hints_delivered", &r.hints_delivered);
            line("anti_entropy_bytes", &r.anti_entropy_bytes);
        }
        "latencystats" => {
            latency_line(out, "get", &s.reads);
            latency_line(out, "set", &s.writes);
            latency_line(out, "del", &s.deletes);
        }
        "replication" => {
            let st = &s.status;
            line("role", &"master");
            line("replicas", &st.replicas);
            line("write_quorum", &st.write_quorum);
            line("read_quorum", &st.read_quorum);
            line("effective_replicas", &st.effective_replicas);
            line("effective_write_quorum", &st.effective_write_quorum);
            line("effective_read_quorum", &st.effective_read_quorum);
            line("replication_reduced", &u8::from(st.is_reduced()));
        }
        "cluster" => {
            line("cluster_enabled", &0);
            line("cluster_ready", &u8::from(s.ready));
            line("cluster_members", &s.members.len());
            line("cluster_members_alive", &s.members_in(Liveness::Alive));
            line("cluster_members_suspect", &s.members_in(Liveness::Suspect));
            line("cluster_members_down", &s.members_in(Liveness::Down));
            line("cluster_placement_nodes", &s.placement_nodes);
            if let Some(me) = &s.me {
                line("ring_state", &me.ring.as_str());
                line("datacenter", &me.identity.datacenter);
            }
        }
        "keyspace" => {
            let _ = writeln!(out, "db0:keys={},expires=0,avg_ttl=0\r", s.store.live);
        }
        _ => {}
    }
}

/// `1.50M`-style sizes, as Redis's `*_human` fields.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(1536), "1.50K");
        assert_eq!(human(1 << 30), "1.00G");
    }
}
