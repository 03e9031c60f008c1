//! Running one test: resolving servers, opening every connection before
//! the clock starts, handing out work, and Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::args::TestKind;
use super::client::{ClientReport, Connection, Tally, read_replies, run_client};
use super::error::BenchError;
use super::job::{Interrupt, Job};
use super::plan::{Auth, Plan};
use super::progress::Progress;
use super::summary::TestSummary;
use super::workload::{KeyRng, push_bulk};

/// A server as given to `--servers` and the address it resolved to.
#[derive(Debug, Clone)]
pub(super) struct Server {
    pub(super) name: Arc<str>,
    pub(super) addr: SocketAddr,
}

/// Resolves each server once, so a test with many clients does not repeat
/// the lookup per connection.
pub(super) async fn resolve(servers: &[String]) -> Result<Vec<Server>, BenchError> {
    let mut resolved = Vec::with_capacity(servers.len());
    for server in servers {
        let resolve_error = |source| BenchError::Resolve {
            server: server.clone(),
            source,
        };
        let addr = tokio::net::lookup_host(server.as_str())
            .await
            .map_err(resolve_error)?
            .next()
            .ok_or_else(|| {
                resolve_error(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no address found",
                ))
            })?;
        resolved.push(Server {
            name: server.as_str().into(),
            addr,
        });
    }
    Ok(resolved)
}

/// Runs one test: connects every client, lets them loose, merges what they
/// measured.
pub(super) async fn run_test(
    plan: &Plan,
    servers: &[Server],
    kind: TestKind,
    interrupt: &Arc<Interrupt>,
) -> Result<TestSummary, BenchError> {
    let connections = connect_all(plan, servers).await?;
    let mut value = Vec::with_capacity(plan.data_size + 16);
    push_bulk(&mut value, &vec![b'x'; plan.data_size]);
    let start = Instant::now();
    let job = Arc::new(Job {
        kind,
        pipeline: plan.pipeline,
        keyspace: plan.keyspace,
        read_ratio: plan.read_ratio,
        value,
        issued: AtomicU64::new(0),
        total: plan.budget.requests.unwrap_or(u64::MAX),
        deadline: plan.budget.duration.map(|d| start + d),
        done: AtomicU64::new(0),
        interrupt: Arc::clone(interrupt),
    });
    let progress = Progress::start(plan, kind, &job, start);
    let mut clients = JoinSet::new();
    for (index, (server, stream)) in connections.into_iter().enumerate() {
        let rng = KeyRng::for_client(plan.seed, index);
        clients.spawn(run_client(stream, server, Arc::clone(&job), rng));
    }
    let reports = tokio::select! {
        reports = collect(&mut clients) => reports,
        () = interrupt.abort.notified() => {
            progress.finish();
            return Err(BenchError::Interrupted);
        }
    };
    let elapsed = start.elapsed();
    progress.finish();
    Ok(TestSummary::new(plan, kind, elapsed, reports))
}

/// Opens `clients` connections, client i to server i mod len, all at once.
/// Any failure fails the test before it starts: a bench with fewer clients
/// than asked would measure something else.
async fn connect_all(
    plan: &Plan,
    servers: &[Server],
) -> Result<Vec<(Arc<str>, Box<dyn Connection>)>, BenchError> {
    // Spawned so the handshakes overlap; awaited in order so each result
    // keeps its client's index and server.
    let connecting: Vec<_> = (0..plan.clients)
        .map(|index| {
            let server = servers[index % servers.len()].clone();
            let (tls, auth) = (plan.tls.clone(), plan.auth.clone());
            let name = server.name.clone();
            let handle = tokio::spawn(async move { connect(&server, tls, auth).await });
            (name, handle)
        })
        .collect();
    let mut connections = Vec::with_capacity(plan.clients);
    for (name, handle) in connecting {
        let connected = handle.await.unwrap_or_else(|e| {
            Err(BenchError::Connect {
                server: name.to_string(),
                source: std::io::Error::other(e),
            })
        })?;
        connections.push((name, connected));
    }
    Ok(connections)
}

/// One connection to `server`: TCP, TLS over it with `tls`, and `AUTH`
/// first with `auth`.
async fn connect(
    server: &Server,
    tls: Option<Arc<rustls::ClientConfig>>,
    auth: Option<Auth>,
) -> Result<Box<dyn Connection>, BenchError> {
    let failed = |source: std::io::Error| BenchError::Connect {
        server: server.name.to_string(),
        source,
    };
    let tcp = TcpStream::connect(server.addr).await.map_err(failed)?;
    tcp.set_nodelay(true).map_err(failed)?;
    let mut stream: Box<dyn Connection> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let host = server
                .name
                .rsplit_once(':')
                .map_or(&*server.name, |(host, _)| host)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| failed(std::io::Error::other(e)))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(failed)?;
            Box::new(tls)
        }
    };
    if let Some(auth) = auth {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &auth.user {
            args.push(user.as_bytes());
        }
        args.push(auth.password.as_bytes());
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        stream.write_all(&out).await.map_err(failed)?;
        let mut input = BytesMut::with_capacity(256);
        let mut tally = Tally::default();
        read_replies(&mut stream, &mut input, 1, &mut tally, &server.name)
            .await
            .map_err(|e| failed(std::io::Error::other(e.to_string())))?;
        if tally.errors > 0 {
            return Err(BenchError::Auth {
                server: server.name.to_string(),
                reply: tally.first_error.unwrap_or_default(),
            });
        }
    }
    Ok(stream)
}

/// Waits for every client and gathers their reports.
pub(super) async fn collect(clients: &mut JoinSet<ClientReport>) -> Vec<ClientReport> {
    let mut reports = Vec::new();
    while let Some(joined) = clients.join_next().await {
        reports.push(joined.unwrap_or_else(|e| {
            let mut report = ClientReport::new();
            report.failure = Some(format!("client task ended abnormally: {e}"));
            report
        }));
    }
    reports
}
