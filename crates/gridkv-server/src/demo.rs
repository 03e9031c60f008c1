//! `gridkv demo`: a local cluster in one process, and a walk through it.
//!
//! Node `i` (from 0) serves RESP on `base + i`, HTTP admin on
//! `base + 1700 + i` and the cluster transport on `base + 1000 + i`; with
//! the default base 6380 that is RESP 6380.., HTTP 8080.., cluster 7380...
//! The walk-through writes a key through node 1's RESP port, reads it
//! through the last node's, stops one node and shows the others detect it
//! while reads are still served; then the cluster keeps serving until
//! Ctrl-C.

use std::time::{Duration, Instant};

use clap::Args;
use gridkv::Liveness;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::{FileConfig, NodeArgs, ServerConfig};
use crate::node::RunningNode;

/// Flags of `gridkv demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Nodes to start (1 to 16).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub nodes: u16,
    /// First RESP port; HTTP ports start at base + 1700, cluster ports at
    /// base + 1000.
    #[arg(long, default_value_t = 6380)]
    pub base_port: u16,
    /// Copies of each key (default: 3, or the node count if smaller).
    #[arg(long)]
    pub replicas: Option<usize>,
    /// Run the walk-through and exit instead of serving until Ctrl-C.
    #[arg(long)]
    pub no_wait: bool,
}

fn port(base: u16, offset: u16, i: u16) -> Result<u16, String> {
    base.checked_add(offset)
        .and_then(|p| p.checked_add(i))
        .ok_or_else(|| format!("--base-port {base} is too high for {} nodes", i + 1))
}

/// The config of demo node `i`.
///
/// # Errors
///
/// A message when the ports do not fit.
pub fn node_config(args: &DemoArgs, i: u16) -> Result<ServerConfig, String> {
    let n = usize::from(args.nodes);
    let replicas = args.replicas.unwrap_or(3).min(n);
    let quorum = replicas / 2 + 1;
    let seed = format!("127.0.0.1:{}", port(args.base_port, 1000, 0)?);
    let node = NodeArgs {
        id: Some(format!("node-{}", i + 1)),
        listen: Some(format!("127.0.0.1:{}", port(args.base_port, 1000, i)?)),
        seeds: Some(vec![seed]),
        resp: Some(format!("127.0.0.1:{}", port(args.base_port, 0, i)?)),
        http: Some(format!("127.0.0.1:{}", port(args.base_port, 1700, i)?)),
        replicas: Some(gridkv::ReplicaPlacement::Total(replicas)),
        write_quorum: Some(quorum),
        read_quorum: Some(quorum),
        max_memory: Some(256 << 20),
        cluster: Some("gridkv-demo".into()),
        ..NodeArgs::default()
    };
    ServerConfig::merge(node, FileConfig::default()).map_err(|e| e.to_string())
}

/// One RESP request; the reply as text (`OK`, `(nil)`, `(error) ...`).
async fn call(addr: std::net::SocketAddr, args: &[&str]) -> Result<String, String> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("{addr}: connect timed out"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut stream = BufReader::new(stream);
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream
        .get_mut()
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    let read = async {
        stream
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        let body = line.trim_end().to_owned();
        match body.split_at(body.len().min(1)) {
            ("+", s) => Ok(s.to_owned()),
            ("-", s) => Ok(format!("(error) {s}")),
            (":", s) => Ok(format!("(integer) {s}")),
            ("$", "-1") => Ok("(nil)".to_owned()),
            ("$", _) => {
                let mut value = String::new();
                stream
                    .read_line(&mut value)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("\"{}\"", value.trim_end()))
            }
            _ => Err(format!("unexpected reply {body:?}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| format!("{addr}: no reply within 5 s"))?
}

async fn wait_for(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > timeout {
            return Err(format!("{what}: not within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(start.elapsed())
}

/// Runs `gridkv demo`.
///
/// # Errors
///
/// A message when a port is taken or the cluster does not form.
pub async fn run(args: DemoArgs) -> Result<(), String> {
    // The walk-through speaks for itself: only warnings, unless GRIDKV_LOG
    // asks for more.
    crate::node::init_logging("warn");
    let n = args.nodes;
    println!("Starting a {n}-node GridKV cluster in this process...");
    let mut nodes = Vec::new();
    for i in 0..n {
        let config = node_config(&args, i)?;
        let node = RunningNode::start(&config)
            .await
            .map_err(|e| format!("{e} (another program uses this port? try --base-port)"))?;
        nodes.push(node);
    }
    let formed = wait_for("cluster formation", Duration::from_secs(30), || {
        nodes
            .iter()
            .all(|r| r.node().is_ready() && r.node().ring().len() == usize::from(n))
    })
    .await?;
    println!("Cluster formed in {:.1} s.\n", formed.as_secs_f64());
    for r in &nodes {
        println!(
            "  {:<8} RESP {}   HTTP http://{}   cluster {}",
            r.node().id(),
            r.resp_addr,
            r.http_addr,
            r.node().local_addr()
        );
    }
    let status = nodes[0].node().replication_status();
    println!(
        "\nEach key has {} copies; writes need {} and reads {} of them (N/W/R).",
        status.effective_replicas, status.effective_write_quorum, status.effective_read_quorum
    );
    println!("Connect with any Redis client, for example:");
    println!(
        "  redis-cli -p {} set hello world",
        nodes[0].resp_addr.port()
    );
    println!(
        "  redis-cli -p {} get hello",
        nodes[nodes.len() - 1].resp_addr.port()
    );
    println!("  curl http://{}/cluster", nodes[0].http_addr);

    println!("\n--- walk-through");
    let first = &nodes[0];
    let last = &nodes[nodes.len() - 1];
    let reply = call(
        first.resp_addr,
        &["SET", "demo:greeting", "hello from GridKV"],
    )
    .await?;
    println!(
        "{} > SET demo:greeting \"hello from GridKV\"   -> {reply}",
        first.node().id()
    );
    let reply = call(last.resp_addr, &["GET", "demo:greeting"]).await?;
    println!(
        "{} > GET demo:greeting                        -> {reply}",
        last.node().id()
    );

    if n >= 2 {
        let victim = &nodes[nodes.len() - 1];
        let victim_id = victim.node().id();
        println!("\nStopping {victim_id} abruptly (no leave, as a crash)...");
        victim.kill().await;
        let observer = &nodes[0];
        let detected = wait_for("failure detection", Duration::from_secs(30), || {
            observer
                .node()
                .member(&victim_id)
                .is_some_and(|m| m.liveness != Liveness::Alive)
        })
        .await?;
        let state = observer
            .node()
            .member(&victim_id)
            .map(|m| m.liveness.as_str())
            .unwrap_or("?");
        println!(
            "{} saw {victim_id} as {state} after {:.1} s.",
            observer.node().id(),
            detected.as_secs_f64()
        );
        let reply = call(observer.resp_addr, &["GET", "demo:greeting"]).await?;
        println!(
            "{} > GET demo:greeting                        -> {reply}",
            observer.node().id()
        );
        if n == 2 {
            println!(
                "(With 2 nodes and N=2, W=R=2, quorum operations fail until the node returns: an error above is expected.)"
            );
        } else {
            println!(
                "Reads are still served: {} of {} owners remain.",
                status.effective_replicas - 1,
                status.effective_replicas
            );
        }
    }

    let alive: Vec<&RunningNode> = if n >= 2 {
        nodes[..nodes.len() - 1].iter().collect()
    } else {
        nodes.iter().collect()
    };
    if args.no_wait {
        println!("\n--no-wait: stopping.");
    } else {
        println!(
            "\nThe cluster keeps serving on RESP ports {}. Press Ctrl-C to stop.",
            alive
                .iter()
                .map(|r| r.resp_addr.port().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        crate::node::signal().await;
        println!("\nStopping (graceful leave)...");
    }
    for r in alive.iter().rev() {
        r.stop().await;
    }
    println!("Stopped.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nodes: u16, base_port: u16) -> DemoArgs {
        DemoArgs {
            nodes,
            base_port,
            replicas: None,
            no_wait: true,
        }
    }

    #[test]
    fn ports_follow_the_documented_layout() {
        let c = node_config(&args(3, 6380), 2).unwrap();
        assert_eq!(c.resp, "127.0.0.1:6382");
        assert_eq!(c.http, "127.0.0.1:8082");
        assert_eq!(c.listen, "127.0.0.1:7382");
        assert_eq!(c.seeds, vec!["127.0.0.1:7380"]);
        assert_eq!(
            (c.replicas.total(), c.write_quorum, c.read_quorum),
            (3, 2, 2)
        );
        let one = node_config(&args(1, 6380), 0).unwrap();
        assert_eq!(
            (one.replicas.total(), one.write_quorum, one.read_quorum),
            (1, 1, 1)
        );
        assert!(node_config(&args(3, 65_000), 0).is_err());
    }
}
