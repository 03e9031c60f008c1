//! The `INFO` command's text: `# Section` headers and `field:value` lines,
//! as Redis writes them, so tools that read INFO find familiar fields.
//!
//! Sections: `server`, `clients`, `memory`, `stats`, `latencystats`,
//! `replication`, `cluster`, `keyspace`. `INFO` alone, `INFO all` and
//! `INFO everything` show them all; `INFO name` one.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use gridkv::metrics::HistogramSnapshot;
use gridkv::Liveness;

use crate::shared::Shared;

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
pub fn render(shared: &Shared, filter: Option<&[u8]>) -> String {
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
            write_section(shared, section, &mut out);
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

fn write_section(shared: &Shared, section: &str, out: &mut String) {
    let node = &shared.node;
    let stats = &shared.stats;
    let title = {
        let mut t = section.to_owned();
        t[..1].make_ascii_uppercase();
        t
    };
    let _ = writeln!(out, "# {title}\r");
    let mut line = |k: &str, v: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{k}:{v}\r");
    };
    match section {
        "server" => {
            line("gridkv_version", &env!("CARGO_PKG_VERSION"));
            line("redis_version", &"7.0.0");
            line("redis_mode", &"cluster");
            line("node_id", &node.id());
            line("process_id", &std::process::id());
            line("tcp_port", &shared.resp_addr.get().map_or(0, |a| a.port()));
            line("cluster_addr", &node.advertised_addr());
            line("uptime_in_seconds", &shared.started.elapsed().as_secs());
        }
        "clients" => {
            line("connected_clients", &stats.connected_clients.load(Relaxed));
            line("maxclients", &shared.max_clients);
            line(
                "rejected_connections",
                &stats.rejected_connections.load(Relaxed),
            );
        }
        "memory" => {
            let s = node.store().stats();
            line("used_memory", &s.bytes);
            line("used_memory_human", &human(s.bytes));
            line("maxmemory", &s.budget);
            line("maxmemory_human", &human(s.budget));
            line("maxmemory_policy", &"clock (approximate LRU)");
            line("evicted_keys", &s.evictions);
        }
        "stats" => {
            let s = node.store().stats();
            let r = node.replication_stats();
            line(
                "total_connections_received",
                &stats.total_connections.load(Relaxed),
            );
            line(
                "total_commands_processed",
                &stats.total_commands.load(Relaxed),
            );
            line("total_error_replies", &stats.error_replies.load(Relaxed));
            line(
                "total_net_input_bytes",
                &stats.net_input_bytes.load(Relaxed),
            );
            line(
                "total_net_output_bytes",
                &stats.net_output_bytes.load(Relaxed),
            );
            line(
                "rejected_connections",
                &stats.rejected_connections.load(Relaxed),
            );
            line("protocol_errors", &stats.protocol_errors.load(Relaxed));
            line("keyspace_hits", &s.hits);
            line("keyspace_misses", &(s.gets - s.hits));
            line("expired_keys", &s.expirations);
            line("evicted_keys", &s.evictions);
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
            let m = node.metrics();
            latency_line(out, "get", &m.reads.snapshot());
            latency_line(out, "set", &m.writes.snapshot());
            latency_line(out, "del", &m.deletes.snapshot());
        }
        "replication" => {
            let s = node.replication_status();
            line("role", &"master");
            line("replicas", &s.replicas);
            line("write_quorum", &s.write_quorum);
            line("read_quorum", &s.read_quorum);
            line("effective_replicas", &s.effective_replicas);
            line("effective_write_quorum", &s.effective_write_quorum);
            line("effective_read_quorum", &s.effective_read_quorum);
            line("replication_reduced", &u8::from(s.is_reduced()));
        }
        "cluster" => {
            let members = node.members();
            let count = |l: Liveness| members.iter().filter(|m| m.liveness == l).count();
            line("cluster_enabled", &0);
            line("cluster_ready", &u8::from(node.is_ready()));
            line("cluster_members", &members.len());
            line("cluster_members_alive", &count(Liveness::Alive));
            line("cluster_members_suspect", &count(Liveness::Suspect));
            line("cluster_members_down", &count(Liveness::Down));
            line("cluster_placement_nodes", &node.ring().len());
            if let Some(me) = node.member(&node.id()) {
                line("ring_state", &me.ring.as_str());
                line("datacenter", &me.identity.datacenter);
            }
        }
        "keyspace" => {
            let s = node.store().stats();
            let _ = writeln!(out, "db0:keys={},expires=0,avg_ttl=0\r", s.live);
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
