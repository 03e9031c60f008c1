//! `gridkv node`: one node with its RESP and HTTP front ends, until SIGINT
//! or SIGTERM; then a graceful leave (its ranges are handed to the other
//! owners first) and exit 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{NodeArgs, ServerConfig};
use crate::shared::{AdminToken, Shared};
use crate::tls::{ServerTls, TlsSource};

/// A node serving RESP and HTTP.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), String> {
/// use gridkv_server::config::{FileConfig, NodeArgs, ServerConfig};
/// use gridkv_server::node::RunningNode;
///
/// let args = NodeArgs { id: Some("n1".into()), resp: Some("127.0.0.1:0".into()),
///     http: Some("127.0.0.1:0".into()), listen: Some("127.0.0.1:0".into()), ..Default::default() };
/// let config = ServerConfig::merge(args, FileConfig::default()).map_err(|e| e.to_string())?;
/// let node = RunningNode::start(&config).await?;
/// println!("RESP on {}", node.resp_addr);
/// node.stop().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RunningNode {
    /// State shared with the front ends.
    pub shared: Arc<Shared>,
    /// Where RESP listens.
    pub resp_addr: SocketAddr,
    /// Where HTTP admin listens.
    pub http_addr: SocketAddr,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl RunningNode {
    /// Binds the RESP and HTTP addresses and starts the node (which joins
    /// through its seeds in the background).
    ///
    /// # Errors
    ///
    /// A message naming the address that could not be bound, or the
    /// setting the library refused.
    pub async fn start(config: &ServerConfig) -> Result<Self, String> {
        let node_config = config.node_config().map_err(|e| e.to_string())?;
        // Security (issue 16): users and certificates are read before
        // anything is bound, so a bad file stops the start.
        let security = &config.security;
        let acl = crate::auth::AclStore::new(security.auth.clone())
            .map_err(|e| format!("acl_file (--acl-file): {e}"))?;
        let ca = security.tls.as_ref().map(|t| t.ca.clone());
        let resp_tls = match security.resp_cert().filter(|_| security.resp_tls) {
            Some(cert) => Some(Arc::new(
                ServerTls::load(TlsSource {
                    cert,
                    ca: ca.clone(),
                    client_certs: security.resp_client_certs,
                    alpn: Vec::new(),
                })
                .map_err(|e| format!("resp_tls (--resp-tls): {e}"))?,
            )),
            None => None,
        };
        let http_tls = match security.http_cert().filter(|_| security.http_tls) {
            Some(cert) => Some(Arc::new(
                ServerTls::load(TlsSource {
                    cert,
                    ca: None,
                    client_certs: crate::config::ClientCerts::None,
                    alpn: vec![b"http/1.1".to_vec()],
                })
                .map_err(|e| format!("http_tls (--http-tls): {e}"))?,
            )),
            None => None,
        };
        let resp = TcpListener::bind(&config.resp)
            .await
            .map_err(|e| format!("resp (--resp): cannot bind {}: {e}", config.resp))?;
        let http = TcpListener::bind(&config.http)
            .await
            .map_err(|e| format!("http (--http): cannot bind {}: {e}", config.http))?;
        let node = gridkv::GridKv::start(node_config)
            .await
            .map_err(|e| format!("listen (--listen): {e}"))?;
        let resp_addr = resp.local_addr().map_err(|e| e.to_string())?;
        let http_addr = http.local_addr().map_err(|e| e.to_string())?;
        let max_value = node.store().config().max_value_len;
        let limits = &config.client_limits;
        let shared = Arc::new(Shared {
            pipeline_order: config.pipeline_order,
            limits: limits.resp(max_value),
            memory: crate::clients::ClientsMemory::new(
                limits.max_client_output,
                limits.max_clients_memory,
            ),
            acl,
            resp_tls,
            http_tls,
            admin_token: security.admin_token.as_deref().map(AdminToken::new),
            ..Shared::new(node, config.max_clients)
        });
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(crate::server::serve_resp(
            resp,
            shared.clone(),
            cancel.clone(),
        ));
        tasks.spawn(crate::http::serve_http(
            http,
            shared.clone(),
            cancel.clone(),
        ));
        Ok(Self {
            shared,
            resp_addr,
            http_addr,
            cancel,
            tasks,
        })
    }

    /// Re-reads what the front ends load from files: the ACL file (if
    /// any) and the RESP and HTTP certificates (if TLS is on). What fails
    /// to load keeps what is in force; each failure is one message, and
    /// each reload is logged. For SIGHUP.
    ///
    /// # Errors
    ///
    /// The messages of what failed, joined by `; `.
    pub fn reload(&self) -> Result<(), String> {
        let mut failed = Vec::new();
        if self.shared.acl.has_file() {
            if let Err(e) = self.shared.acl.reload() {
                failed.push(format!("acl_file: {e}"));
            }
        }
        for (name, tls) in [
            ("resp_tls", &self.shared.resp_tls),
            ("http_tls", &self.shared.http_tls),
        ] {
            if let Some(tls) = tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("{name}: certificate reloaded"),
                    Err(e) => {
                        tracing::warn!(
                            "{name}: reload failed, the certificate in force is kept: {e}"
                        );
                        failed.push(format!("{name}: {e}"));
                    }
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    /// Reloads everything this node reads from files (cluster TLS, then
    /// [`RunningNode::reload`]), logging each outcome
    /// with `why` (`SIGHUP`, `file change`).
    ///
    /// # Errors
    ///
    /// The failures, joined by `; ` (what failed kept what was in force).
    pub fn reload_all(&self, why: &str) -> Result<(), String> {
        let mut failed = Vec::new();
        let node = self.node();
        if node.tls_enabled() {
            match node.reload_tls() {
                Ok(()) => {
                    tracing::info!(%why, "cluster TLS: certificates and trust bundle reloaded");
                }
                Err(e) => {
                    tracing::warn!(%why, error = %e, "cluster TLS: reload failed, the material in force is kept");
                    failed.push(format!("tls: {e}"));
                }
            }
        }
        if let Err(e) = self.reload() {
            failed.push(e);
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    /// The node.
    pub fn node(&self) -> &gridkv::GridKv {
        &self.shared.node
    }

    /// The line `gridkv node` prints once everything is bound.
    pub fn ready_line(&self) -> String {
        format!(
            "gridkv ready: id={} cluster={} resp={} http={}",
            self.node().id(),
            self.node().local_addr(),
            self.resp_addr,
            self.http_addr
        )
    }

    /// Graceful stop: `/health` turns 503, the node hands its ranges to
    /// the other owners and leaves, then the front ends close.
    pub async fn stop(&self) {
        self.shared.leaving.store(true, Relaxed);
        self.shared.node.shutdown().await;
        self.close_front_ends().await;
    }

    /// Stops at once, as a crash would: no leave, no handoff.
    pub async fn kill(&self) {
        self.shared.leaving.store(true, Relaxed);
        self.shared.node.kill().await;
        self.close_front_ends().await;
    }

    async fn close_front_ends(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Logs to stderr; `GRIDKV_LOG` (or `RUST_LOG`) sets the filter, else
/// `default` (an `EnvFilter` directive such as
/// `warn,gridkv=info,gridkv_server=info`, what `gridkv node` uses).
pub fn init_logging(default: &str) {
    let filter = std::env::var("GRIDKV_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_owned());
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        // Colours only for a person at a terminal, not in files or
        // `docker logs` (NO_COLOR is honoured too).
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Waits for SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `gridkv node`.
///
/// # Errors
///
/// A message for an invalid configuration or an address that cannot be
/// bound (the process then exits non-zero).
pub async fn run(args: NodeArgs) -> Result<(), String> {
    init_logging("warn,gridkv=info,gridkv_server=info");
    let config = ServerConfig::load(args).map_err(|e| e.to_string())?;
    let running = RunningNode::start(&config).await?;
    println!("{}", running.ready_line());
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    // Until SIGTERM/Ctrl-C: reload the files on SIGHUP and when they
    // change.
    let mut hangup = crate::reload::Hangup::new();
    let mut watched = crate::reload::Watched::new(&config);
    let mut poll = tokio::time::interval(crate::reload::POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangup.recv() => {
                watched.read_now();
                let _ = running.reload_all("SIGHUP");
            }
            _ = poll.tick(), if !watched.is_empty() => {
                if watched.changed() {
                    let _ = running.reload_all("file change");
                }
            }
        }
    }
    tracing::info!("signal received: leaving the cluster (a second signal stops at once)");
    tokio::select! {
        _ = running.stop() => {}
        _ = signal() => {
            tracing::warn!("second signal: stopping without handoff");
            running.kill().await;
        }
    }
    Ok(())
}
