//! `gridkv bench`: a load generator that speaks RESP2, like a small
//! `redis-benchmark`.
//!
//! It drives any server that speaks the Redis protocol: a GridKV node, a
//! whole GridKV cluster (connections are spread round-robin over
//! `--servers`), or a real `redis-server` to compare against.
//!
//! # How it measures
//!
//! Every client is a tokio task with its own TCP connection (`TCP_NODELAY`).
//! It sends `--pipeline` commands at once as RESP arrays of bulk strings,
//! reads that many replies, and records the round trip of the batch as the
//! latency of each request in it, as `redis-benchmark` does. Connections are
//! opened before the clock starts; each test opens its own. Clients take work
//! from one shared counter, so a test sends exactly `--requests` commands
//! however they divide among the clients (or runs for `--duration`).
//!
//! Keys are `key:<n>` with `n` uniform in `[0, --keyspace)`; values are
//! `--data-size` bytes of `x`. Each client draws its keys from its own
//! generator, seeded from `--seed` and its index, and every test restarts
//! the generators, so the `get` test reads the keys the `set` test wrote
//! before it. Running `get` alone against an empty server measures misses;
//! the summary counts them (null replies) so that is visible.
//!
//! # What counts
//!
//! *Requests* are the replies received; *errors* are the error replies among
//! them (a GridKV node answers `-ERR quorum not reached` when too few
//! replicas answer): they are counted and the first one is shown, and the
//! bench goes on. A client whose connection fails, or whose server sends a
//! malformed reply, stops; the summary says how many stopped and why, and
//! [`run`] returns [`BenchError::ClientsFailed`] after printing it, so a
//! script sees a non-zero exit status for a partial run. Ctrl-C stops the
//! running test after its in-flight batches, prints its summary and skips
//! the rest; a second Ctrl-C gives up at once.
//!
//! # Output
//!
//! On stdout, one line per test:
//!
//! ```text
//! SET: 98120.45 requests per second, p50=0.271 ms, p90=0.303 ms, p99=0.391 ms, p99.9=0.815 ms, max=2.031 ms (100000 requests, 0 errors, 0 misses, 1.019 s)
//! ```
//!
//! followed by indented detail lines only when there were error replies or
//! failed clients. With `--json` stdout holds one JSON object per test
//! instead, and nothing else. The progress bar goes to stderr, and only when
//! stderr is a terminal and `--quiet` is not given.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use gridkv::rng::{mix64, SplitMix64};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::ReadHalf;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// Largest bulk string a reply may carry, and the largest `--data-size`:
/// 512 MiB, Redis's own `proto-max-bulk-len` default.
const MAX_BULK: usize = 512 * 1024 * 1024;

/// Largest reply line (status, error, integer or length header) without its
/// CRLF. Real lines are a few dozen bytes; the cap keeps a server that never
/// sends CRLF from growing the read buffer without end.
const MAX_LINE: usize = 64 * 1024;

/// Largest element count of a reply array. The bench's own commands never get
/// arrays back; the cap only turns a corrupt header into an error.
const MAX_ARRAY: usize = 64 * 1024 * 1024;

/// Deepest nesting of reply arrays; the parser recurses, so this bounds its
/// stack.
const MAX_DEPTH: usize = 32;

/// Longest error message kept for the summary, in bytes.
const MAX_ERROR_MESSAGE: usize = 200;

/// How often the progress bar is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// Arguments of `gridkv bench`. Every flag can also be set through the
/// environment variable named in `--help` (`GRIDKV_BENCH_*`).
///
/// ```text
/// gridkv bench --servers 127.0.0.1:6380,127.0.0.1:6381 -c 50 -n 200000 -P 16
/// gridkv bench -t mixed --read-ratio 0.95 --duration 30 --json
/// ```
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Servers to load, as HOST:PORT, comma-separated; client i connects to
    /// server i mod (number of servers).
    #[arg(
        long,
        env = "GRIDKV_BENCH_SERVERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:6380",
        value_name = "HOST:PORT,..."
    )]
    pub servers: Vec<String>,

    /// Number of concurrent clients, each with its own connection.
    #[arg(short = 'c', long, env = "GRIDKV_BENCH_CLIENTS", default_value_t = 50)]
    pub clients: usize,

    /// Requests per test, shared among all clients [default: 100000, or
    /// no limit with --duration; with both, a test ends at whichever limit
    /// comes first].
    #[arg(short = 'n', long, env = "GRIDKV_BENCH_REQUESTS")]
    pub requests: Option<u64>,

    /// Size of each SET value, in bytes.
    #[arg(
        short = 'd',
        long,
        env = "GRIDKV_BENCH_DATA_SIZE",
        default_value_t = 100,
        value_name = "BYTES"
    )]
    pub data_size: usize,

    /// Commands each client sends before reading their replies.
    #[arg(short = 'P', long, env = "GRIDKV_BENCH_PIPELINE", default_value_t = 1)]
    pub pipeline: usize,

    /// Number of distinct keys: `key:<n>` with n uniform in [0, N).
    #[arg(
        short = 'r',
        long,
        env = "GRIDKV_BENCH_KEYSPACE",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub keyspace: u64,

    /// Tests to run, in order, comma-separated. `get` reads the keys an
    /// earlier `set` wrote; alone, on an empty server, it measures misses.
    #[arg(
        short = 't',
        long,
        env = "GRIDKV_BENCH_TESTS",
        value_delimiter = ',',
        default_value = "set,get"
    )]
    pub tests: Vec<TestKind>,

    /// Share of GETs in the `mixed` test (the rest are SETs), from 0 to 1.
    #[arg(
        long,
        env = "GRIDKV_BENCH_READ_RATIO",
        default_value_t = 0.9,
        value_name = "RATIO"
    )]
    pub read_ratio: f64,

    /// Run each test for this many seconds (see --requests).
    #[arg(long, env = "GRIDKV_BENCH_DURATION", value_name = "SECS")]
    pub duration: Option<f64>,

    /// Seed of the key choice, to repeat a run's exact key sequence (random
    /// if not given; the summary shows the one used).
    #[arg(long, env = "GRIDKV_BENCH_SEED")]
    pub seed: Option<u64>,

    /// No progress bar.
    #[arg(
        short = 'q',
        long,
        env = "GRIDKV_BENCH_QUIET",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub quiet: bool,

    /// Print one JSON object per test on stdout instead of the text summary.
    #[arg(
        long,
        env = "GRIDKV_BENCH_JSON",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub json: bool,
}

/// One test of a bench run: which commands its clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestKind {
    /// `SET key:<n> <value>`.
    Set,
    /// `GET key:<n>`.
    Get,
    /// GETs and SETs mixed at random, in the ratio of `--read-ratio`.
    Mixed,
}

impl TestKind {
    /// The test's name as given to `--tests` and shown in JSON: `set`, `get`
    /// or `mixed`.
    pub fn name(self) -> &'static str {
        match self {
            TestKind::Set => "set",
            TestKind::Get => "get",
            TestKind::Mixed => "mixed",
        }
    }

    /// The label that starts the test's text summary line: `SET`, `GET` or
    /// `MIXED`.
    fn label(self) -> &'static str {
        match self {
            TestKind::Set => "SET",
            TestKind::Get => "GET",
            TestKind::Mixed => "MIXED",
        }
    }
}

/// Why `gridkv bench` could not run, or did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// `--clients 0`.
    #[error("--clients must be at least 1")]
    ZeroClients,
    /// `--pipeline 0`.
    #[error("--pipeline must be at least 1")]
    ZeroPipeline,
    /// `--requests 0`.
    #[error("--requests must be at least 1")]
    ZeroRequests,
    /// `--keyspace 0`.
    #[error("--keyspace must be at least 1")]
    ZeroKeyspace,
    /// `--duration` is zero, negative, not a number or absurdly large.
    #[error("--duration must be a positive number of seconds, got {0}")]
    BadDuration(f64),
    /// `--read-ratio` is outside `[0, 1]`.
    #[error("--read-ratio must be between 0 and 1, got {0}")]
    BadReadRatio(f64),
    /// `--data-size` above what a bulk string may hold.
    #[error("--data-size {0} is above the 512 MiB limit of a bulk string")]
    DataTooLarge(usize),
    /// `--servers` or `--tests` lists nothing.
    #[error("--{0} lists nothing")]
    Empty(&'static str),
    /// A `--servers` entry does not resolve to an address.
    #[error("cannot resolve server {server:?}: {source}")]
    Resolve {
        /// The entry as given.
        server: String,
        /// What the resolver said.
        #[source]
        source: std::io::Error,
    },
    /// A client could not connect before a test started.
    #[error("cannot connect to {server}: {source}")]
    Connect {
        /// The server, as given to `--servers`.
        server: String,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// Some clients stopped during a test (lost connection or malformed
    /// reply). The summaries were printed and count only the replies that
    /// arrived.
    #[error(
        "{failed} client(s) stopped early (first: {first}); \
         the summary counts only the replies received"
    )]
    ClientsFailed {
        /// Clients that stopped, summed over all tests.
        failed: usize,
        /// Why the first of them stopped.
        first: String,
    },
    /// Ctrl-C. The test it stopped was summarised if it could finish its
    /// in-flight batches; later tests were skipped.
    #[error("interrupted")]
    Interrupted,
    /// Writing the summary to stdout failed (for instance a closed pipe).
    #[error("cannot write the summary: {0}")]
    Output(#[source] std::io::Error),
}

/// Runs `gridkv bench`: every test in `--tests`, one after the other, each
/// summarised on stdout as soon as it ends.
///
/// Returns an error for invalid arguments, an unreachable server, a client
/// that stopped during a test ([`BenchError::ClientsFailed`], after the
/// summary) or Ctrl-C. Error replies from the server are not errors here:
/// they are counted in the summary.
///
/// ```no_run
/// use clap::Parser;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     bench: gridkv_server::bench::BenchArgs,
/// }
///
/// # async fn example() -> Result<(), gridkv_server::bench::BenchError> {
/// let cli = Cli::parse_from(["bench", "--servers", "127.0.0.1:6380", "-n", "10000", "-q"]);
/// gridkv_server::bench::run(cli.bench).await
/// # }
/// ```
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    let plan = Plan::from_args(args)?;
    run_plan(&plan, &mut std::io::stdout()).await?.verdict()
}

/// The validated arguments.
#[derive(Debug)]
struct Plan {
    servers: Vec<String>,
    clients: usize,
    budget: PlanBudget,
    data_size: usize,
    pipeline: usize,
    keyspace: u64,
    tests: Vec<TestKind>,
    read_ratio: f64,
    seed: u64,
    progress: bool,
    json: bool,
}

/// How much work each test does: at least one of the two limits is set.
#[derive(Debug, Clone, Copy)]
struct PlanBudget {
    requests: Option<u64>,
    duration: Option<Duration>,
}

/// Requests per test when neither `--requests` nor `--duration` is given.
const DEFAULT_REQUESTS: u64 = 100_000;

impl Plan {
    fn from_args(args: BenchArgs) -> Result<Self, BenchError> {
        if args.clients == 0 {
            return Err(BenchError::ZeroClients);
        }
        if args.pipeline == 0 {
            return Err(BenchError::ZeroPipeline);
        }
        if args.keyspace == 0 {
            return Err(BenchError::ZeroKeyspace);
        }
        if args.data_size > MAX_BULK {
            return Err(BenchError::DataTooLarge(args.data_size));
        }
        if !(0.0..=1.0).contains(&args.read_ratio) {
            return Err(BenchError::BadReadRatio(args.read_ratio));
        }
        let duration = match args.duration {
            Some(secs) => match Duration::try_from_secs_f64(secs) {
                Ok(d) if !d.is_zero() => Some(d),
                _ => return Err(BenchError::BadDuration(secs)),
            },
            None => None,
        };
        let requests = match (args.requests, duration) {
            (Some(0), _) => return Err(BenchError::ZeroRequests),
            (None, None) => Some(DEFAULT_REQUESTS),
            (requests, _) => requests,
        };
        let budget = PlanBudget { requests, duration };
        let servers: Vec<String> = args
            .servers
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if servers.is_empty() {
            return Err(BenchError::Empty("servers"));
        }
        if args.tests.is_empty() {
            return Err(BenchError::Empty("tests"));
        }
        Ok(Plan {
            servers,
            clients: args.clients,
            budget,
            data_size: args.data_size,
            pipeline: args.pipeline,
            keyspace: args.keyspace,
            tests: args.tests,
            read_ratio: args.read_ratio,
            seed: args.seed.unwrap_or_else(random_seed),
            progress: !args.quiet && std::io::stderr().is_terminal(),
            json: args.json,
        })
    }

    /// The line printed above the text summaries.
    fn header(&self) -> String {
        let budget = match (self.budget.requests, self.budget.duration) {
            (Some(n), None) => format!("{n} requests per test"),
            (None, Some(d)) => format!("{} s per test", d.as_secs_f64()),
            (Some(n), Some(d)) => format!(
                "{} s or {n} requests per test, whichever ends first",
                d.as_secs_f64()
            ),
            (None, None) => unreachable!("Plan::from_args sets a limit"),
        };
        let mixed = if self.tests.contains(&TestKind::Mixed) {
            format!(", mixed test {:.0}% GET", self.read_ratio * 100.0)
        } else {
            String::new()
        };
        format!(
            "gridkv bench: {}; {} clients, pipeline {}, {}-byte values, keyspace {}, {budget}{mixed}, seed {}",
            self.servers.join(","),
            self.clients,
            self.pipeline,
            self.data_size,
            self.keyspace,
            self.seed
        )
    }
}

/// A seed that differs from run to run, without a dependency: std's
/// `RandomState` is seeded from the OS.
fn random_seed() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// What a whole run produced.
#[derive(Debug)]
struct Outcome {
    summaries: Vec<TestSummary>,
    interrupted: bool,
}

impl Outcome {
    /// The result of [`run`] once the summaries are out: error replies are
    /// fine, stopped clients and Ctrl-C are not.
    fn verdict(self) -> Result<(), BenchError> {
        if self.interrupted {
            return Err(BenchError::Interrupted);
        }
        let failed = self.summaries.iter().map(|s| s.failed_clients).sum();
        match self.summaries.into_iter().find_map(|s| s.first_failure) {
            Some(first) => Err(BenchError::ClientsFailed { failed, first }),
            None => Ok(()),
        }
    }
}

/// Runs every test of the plan, writing each summary to `out` as it ends.
async fn run_plan(plan: &Plan, out: &mut (dyn Write + Send)) -> Result<Outcome, BenchError> {
    let servers = resolve(&plan.servers).await?;
    let interrupt = Arc::new(Interrupt::default());
    let _signals = AbortOnDrop(tokio::spawn(Arc::clone(&interrupt).watch_ctrl_c()));
    if !plan.json {
        writeln!(out, "{}", plan.header()).map_err(BenchError::Output)?;
    }
    let mut summaries = Vec::with_capacity(plan.tests.len());
    for &kind in &plan.tests {
        let summary = run_test(plan, &servers, kind, &interrupt).await?;
        let text = if plan.json {
            summary.to_json()
        } else {
            summary.to_text()
        };
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .map_err(BenchError::Output)?;
        summaries.push(summary);
        if interrupt.stop.load(Ordering::Relaxed) {
            return Ok(Outcome {
                summaries,
                interrupted: true,
            });
        }
    }
    Ok(Outcome {
        summaries,
        interrupted: false,
    })
}

/// A server as given to `--servers` and the address it resolved to.
#[derive(Debug, Clone)]
struct Server {
    name: Arc<str>,
    addr: SocketAddr,
}

/// Resolves each server once, so a test with many clients does not repeat
/// the lookup per connection.
async fn resolve(servers: &[String]) -> Result<Vec<Server>, BenchError> {
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

/// Ctrl-C as seen by the bench: the first asks the clients to stop after
/// their in-flight batch, the second stops waiting for them.
#[derive(Debug, Default)]
struct Interrupt {
    stop: AtomicBool,
    abort: Notify,
}

impl Interrupt {
    async fn watch_ctrl_c(self: Arc<Self>) {
        // Without a signal handler there is nothing to watch; the bench
        // still runs, Ctrl-C just kills it the default way.
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        self.stop.store(true, Ordering::Relaxed);
        if tokio::signal::ctrl_c().await.is_ok() {
            // `notify_one` keeps a permit if nobody waits yet.
            self.abort.notify_one();
        }
    }
}

/// Aborts a background task when dropped, so no return path of [`run`]
/// leaves a ticker or a signal watcher behind.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One test's shared state: what to send, how much, and how far it got.
/// Owned by the test; every client holds an `Arc` of it.
struct Job {
    kind: TestKind,
    pipeline: usize,
    keyspace: u64,
    read_ratio: f64,
    /// The SET value, pre-encoded as a bulk string (`$<len>\r\n<data>\r\n`),
    /// so a SET copies it instead of formatting it.
    value: Vec<u8>,
    /// Commands claimed so far. Clients claim batches from this one counter,
    /// so a test sends exactly `total` commands. It may pass `total` by a
    /// batch per client: harmless, and cheaper than a compare-and-swap loop.
    issued: AtomicU64,
    /// `--requests`, or `u64::MAX` for none.
    total: u64,
    /// When to stop sending new batches, with `--duration`.
    deadline: Option<Instant>,
    /// Replies received so far, for the progress bar.
    done: AtomicU64,
    interrupt: Arc<Interrupt>,
}

impl Job {
    /// Claims up to `pipeline` commands for the next batch; 0 means stop.
    fn claim(&self, now: Instant) -> usize {
        if self.interrupt.stop.load(Ordering::Relaxed)
            || self.deadline.is_some_and(|deadline| now >= deadline)
        {
            return 0;
        }
        if self.total == u64::MAX {
            return self.pipeline;
        }
        let want = self.pipeline as u64;
        let before = self.issued.fetch_add(want, Ordering::Relaxed);
        self.total.saturating_sub(before).min(want) as usize
    }
}

/// Runs one test: connects every client, lets them loose, merges what they
/// measured.
async fn run_test(
    plan: &Plan,
    servers: &[Server],
    kind: TestKind,
    interrupt: &Arc<Interrupt>,
) -> Result<TestSummary, BenchError> {
    let connections = connect_all(servers, plan.clients).await?;
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
    servers: &[Server],
    clients: usize,
) -> Result<Vec<(Arc<str>, TcpStream)>, BenchError> {
    // Spawned so the handshakes overlap; awaited in order so each result
    // keeps its client's index and server.
    let connecting: Vec<_> = (0..clients)
        .map(|index| {
            let server = servers[index % servers.len()].clone();
            let handle = tokio::spawn(async move {
                let stream = TcpStream::connect(server.addr).await?;
                stream.set_nodelay(true)?;
                Ok::<_, std::io::Error>(stream)
            });
            (server.name, handle)
        })
        .collect();
    let mut connections = Vec::with_capacity(clients);
    for (name, handle) in connecting {
        let connected = handle
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match connected {
            Ok(stream) => connections.push((name, stream)),
            Err(source) => {
                return Err(BenchError::Connect {
                    server: name.to_string(),
                    source,
                })
            }
        }
    }
    Ok(connections)
}

/// Waits for every client and gathers their reports.
async fn collect(clients: &mut JoinSet<ClientReport>) -> Vec<ClientReport> {
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

/// The progress bar of one test, redrawn by a ticker task from the job's
/// counters so that clients never touch it.
struct Progress {
    bar: ProgressBar,
    _ticker: Option<AbortOnDrop>,
}

impl Progress {
    fn start(plan: &Plan, kind: TestKind, job: &Arc<Job>, start: Instant) -> Self {
        if !plan.progress {
            return Progress {
                bar: ProgressBar::hidden(),
                _ticker: None,
            };
        }
        let style = ProgressStyle::with_template("{prefix:>5} [{bar:40}] {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        // With a duration the bar shows time, otherwise requests.
        let requests = plan.budget.requests;
        let duration = plan.budget.duration;
        let len = match (duration, requests) {
            (Some(d), _) => d.as_millis() as u64,
            (None, n) => n.unwrap_or(DEFAULT_REQUESTS),
        };
        let bar = ProgressBar::new(len).with_style(style);
        bar.set_prefix(kind.label());
        let ticker = tokio::spawn({
            let bar = bar.clone();
            let job = Arc::clone(job);
            async move {
                let mut tick = tokio::time::interval(PROGRESS_TICK);
                loop {
                    tick.tick().await;
                    let done = job.done.load(Ordering::Relaxed);
                    let elapsed = start.elapsed();
                    let rate = per_second(done, elapsed);
                    let of = requests.map(|n| format!("/{n}")).unwrap_or_default();
                    match duration {
                        None => {
                            bar.set_position(done);
                            bar.set_message(format!("{done}{of} requests, {rate:.0}/s"));
                        }
                        Some(total) => {
                            bar.set_position(elapsed.as_millis() as u64);
                            bar.set_message(format!(
                                "{:.1}/{:.1} s, {done}{of} requests, {rate:.0}/s",
                                elapsed.as_secs_f64(),
                                total.as_secs_f64()
                            ));
                        }
                    }
                }
            }
        });
        Progress {
            bar,
            _ticker: Some(AbortOnDrop(ticker)),
        }
    }

    fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// What one client measured.
struct ClientReport {
    latency_us: Histogram<u64>,
    tally: Tally,
    failure: Option<String>,
}

impl ClientReport {
    fn new() -> Self {
        ClientReport {
            latency_us: new_histogram(),
            tally: Tally::default(),
            failure: None,
        }
    }
}

/// An empty latency histogram, in microseconds, 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    // Auto-resizing: it grows to the largest latency seen, instead of every
    // client paying up front for an hour's range.
    Histogram::new(3).expect("3 significant digits is within hdrhistogram's 0..=5")
}

/// Records `count` requests that took `took` each.
fn record_latency(latency_us: &mut Histogram<u64>, took: Duration, count: u64) {
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    // `record_n` grows the histogram to fit; `saturating_record_n` would
    // clamp instead, silently capping every latency at the current top.
    // Growing fails only past what a `usize` can index: clamp then.
    if latency_us.record_n(micros, count).is_err() {
        latency_us.saturating_record_n(micros, count);
    }
}

/// Counts of reply kinds that the summary reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tally {
    replies: u64,
    errors: u64,
    misses: u64,
    first_error: Option<String>,
}

impl Tally {
    fn count(&mut self, reply: &Reply<'_>) {
        self.replies += 1;
        match reply {
            Reply::Error(message) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(error_message(message));
                }
            }
            Reply::Bulk(None) => self.misses += 1,
            _ => {}
        }
    }

    fn merge(&mut self, other: Tally) {
        self.replies += other.replies;
        self.errors += other.errors;
        self.misses += other.misses;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// An error reply's message for the summary: lossy UTF-8, cut to
/// [`MAX_ERROR_MESSAGE`] bytes.
fn error_message(raw: &[u8]) -> String {
    let raw = &raw[..raw.len().min(MAX_ERROR_MESSAGE)];
    String::from_utf8_lossy(raw).into_owned()
}

/// Why a client stopped during a test.
#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error("connection to {server} failed: {source}")]
    Io {
        server: Arc<str>,
        source: std::io::Error,
    },
    #[error("{server} closed the connection with replies outstanding")]
    Closed { server: Arc<str> },
    #[error("{server} sent a malformed reply: {source}")]
    Protocol {
        server: Arc<str>,
        source: ProtocolError,
    },
}

/// One client: batches of commands out, replies in, until the job says stop
/// or the connection fails.
async fn run_client(
    mut stream: TcpStream,
    server: Arc<str>,
    job: Arc<Job>,
    mut rng: KeyRng,
) -> ClientReport {
    let mut report = ClientReport::new();
    let mut out = Vec::with_capacity(job.pipeline * (job.value.len() + 48));
    let mut input = BytesMut::with_capacity(16 * 1024);
    loop {
        let sent_at = Instant::now();
        let batch = job.claim(sent_at);
        if batch == 0 {
            break;
        }
        out.clear();
        for _ in 0..batch {
            let op = match job.kind {
                TestKind::Set => Op::Set,
                TestKind::Get => Op::Get,
                TestKind::Mixed if rng.chance(job.read_ratio) => Op::Get,
                TestKind::Mixed => Op::Set,
            };
            encode_command(&mut out, op, rng.below(job.keyspace), &job.value);
        }
        // Write and read at once: a batch of large values must not wait for
        // the socket's send buffer while the server waits for us to read.
        let (mut reader, mut writer) = stream.split();
        let sent = tokio::try_join!(
            async {
                writer
                    .write_all(&out)
                    .await
                    .map_err(|source| ClientError::Io {
                        server: Arc::clone(&server),
                        source,
                    })
            },
            read_replies(&mut reader, &mut input, batch, &mut report.tally, &server),
        );
        if let Err(e) = sent {
            report.failure = Some(e.to_string());
            break;
        }
        record_latency(&mut report.latency_us, sent_at.elapsed(), batch as u64);
        job.done.fetch_add(batch as u64, Ordering::Relaxed);
    }
    report
}

/// Reads exactly `count` replies into `tally`. Bytes after them stay in
/// `input` (no correct server sends any).
async fn read_replies(
    reader: &mut ReadHalf<'_>,
    input: &mut BytesMut,
    count: usize,
    tally: &mut Tally,
    server: &Arc<str>,
) -> Result<(), ClientError> {
    let mut left = count;
    while left > 0 {
        match parse_reply(input) {
            Ok(Some((reply, used))) => {
                tally.count(&reply);
                input.advance(used);
                left -= 1;
            }
            Ok(None) => {
                // `reserve` reuses the buffer's front once its replies are
                // consumed, so this allocates only while a reply is larger
                // than any before it.
                input.reserve(16 * 1024);
                let read = reader
                    .read_buf(input)
                    .await
                    .map_err(|source| ClientError::Io {
                        server: Arc::clone(server),
                        source,
                    })?;
                if read == 0 {
                    return Err(ClientError::Closed {
                        server: Arc::clone(server),
                    });
                }
            }
            Err(source) => {
                return Err(ClientError::Protocol {
                    server: Arc::clone(server),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// One test's results, in the shape of both the text and the JSON summary.
#[derive(Debug, Clone, Serialize)]
struct TestSummary {
    test: &'static str,
    #[serde(skip)]
    label: &'static str,
    requests: u64,
    errors: u64,
    misses: u64,
    first_error: Option<String>,
    failed_clients: usize,
    first_failure: Option<String>,
    seconds: f64,
    ops_per_sec: f64,
    latency_ms: Latency,
    servers: Vec<String>,
    clients: usize,
    pipeline: usize,
    data_size: usize,
    keyspace: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_ratio: Option<f64>,
    seed: u64,
}

impl TestSummary {
    fn new(plan: &Plan, kind: TestKind, elapsed: Duration, reports: Vec<ClientReport>) -> Self {
        let mut latency_us = new_histogram();
        let mut tally = Tally::default();
        let mut failed_clients = 0;
        let mut first_failure = None;
        for report in reports {
            latency_us
                .add(&report.latency_us)
                .expect("auto-resizing histograms of microseconds always merge");
            tally.merge(report.tally);
            if let Some(failure) = report.failure {
                failed_clients += 1;
                first_failure.get_or_insert(failure);
            }
        }
        TestSummary {
            test: kind.name(),
            label: kind.label(),
            requests: tally.replies,
            errors: tally.errors,
            misses: tally.misses,
            first_error: tally.first_error,
            failed_clients,
            first_failure,
            seconds: elapsed.as_secs_f64(),
            ops_per_sec: round2(per_second(tally.replies, elapsed)),
            latency_ms: Latency::from_histogram(&latency_us),
            servers: plan.servers.clone(),
            clients: plan.clients,
            pipeline: plan.pipeline,
            data_size: plan.data_size,
            keyspace: plan.keyspace,
            read_ratio: (kind == TestKind::Mixed).then_some(plan.read_ratio),
            seed: plan.seed,
        }
    }

    /// The text summary: one line, plus indented lines for error replies
    /// and failed clients when there were any.
    fn to_text(&self) -> String {
        let l = &self.latency_ms;
        let mut text = format!(
            "{}: {:.2} requests per second, p50={:.3} ms, p90={:.3} ms, p99={:.3} ms, \
             p99.9={:.3} ms, max={:.3} ms ({} requests, {} errors, {} misses, {:.3} s)",
            self.label,
            self.ops_per_sec,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            self.requests,
            self.errors,
            self.misses,
            self.seconds
        );
        if let Some(first) = &self.first_error {
            text.push_str(&format!(
                "\n  {}: {} error replies, first: {first}",
                self.label, self.errors
            ));
        }
        if let Some(first) = &self.first_failure {
            text.push_str(&format!(
                "\n  {}: {} of {} clients stopped early, first: {first}",
                self.label, self.failed_clients, self.clients
            ));
        }
        text
    }

    /// The JSON summary: one object on one line.
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a summary of plain fields always serializes")
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Latency {
    /// Reads the percentiles of a histogram of microseconds. An empty
    /// histogram gives zeros.
    fn from_histogram(us: &Histogram<u64>) -> Self {
        let max = us.max();
        // A quantile reports the top of its bucket, which can pass the
        // largest value recorded; the max is exact.
        let at = |q: f64| micros_to_ms(us.value_at_quantile(q).min(max));
        Latency {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: micros_to_ms(max),
        }
    }
}

/// Microseconds as milliseconds: exact to the three decimals shown.
fn micros_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// `count / elapsed`, or 0 for no time at all.
fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A command the bench sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Set,
    Get,
}

/// Appends one command for key `key:<key>` as a RESP array of bulk strings.
/// `value` is the SET value already encoded as a bulk string.
fn encode_command(out: &mut Vec<u8>, op: Op, key: u64, value: &[u8]) {
    match op {
        Op::Set => out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n"),
        Op::Get => out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n"),
    }
    let mut digits = [0u8; 20];
    let digits = decimal(key, &mut digits);
    out.push(b'$');
    out.extend_from_slice(decimal(
        (b"key:".len() + digits.len()) as u64,
        &mut [0u8; 20],
    ));
    out.extend_from_slice(b"\r\nkey:");
    out.extend_from_slice(digits);
    out.extend_from_slice(b"\r\n");
    if op == Op::Set {
        out.extend_from_slice(value);
    }
}

/// Appends `data` as a RESP bulk string. Binary-safe: the length prefix, not
/// the content, says where it ends.
fn push_bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(decimal(data.len() as u64, &mut [0u8; 20]));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Formats `n` in decimal into `buf`, without allocating.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The key and command choice of one client: the library's seeded
/// generator, so that a `--seed` names the same key sequence whatever
/// version of a dependency the binary was built with.
#[derive(Debug, Clone)]
struct KeyRng(SplitMix64);

impl KeyRng {
    /// The generator of client `index` under `seed`. The start is mixed,
    /// not offset: SplitMix64 streams whose states differ by a multiple of
    /// its increment are the same stream shifted.
    fn for_client(seed: u64, index: usize) -> Self {
        KeyRng(SplitMix64::new(mix64(seed ^ mix64(index as u64 + 1))))
    }

    /// Uniform in `[0, n)` for `n > 0`.
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    /// True with probability `p` (0 never, 1 always).
    fn chance(&mut self, p: f64) -> bool {
        self.0.unit() < p
    }
}

/// A RESP2 reply, borrowing its bytes from the read buffer.
#[derive(Debug, PartialEq, Eq)]
enum Reply<'a> {
    /// `+OK`.
    Simple(&'a [u8]),
    /// `-ERR ...`, without the `-`.
    Error(&'a [u8]),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nbar`, or `$-1` (None).
    Bulk(Option<&'a [u8]>),
    /// `*2\r\n...`, or `*-1` (None).
    Array(Option<Vec<Reply<'a>>>),
}

/// Why a reply cannot be parsed. The connection is then unusable: nothing
/// says where the next reply starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ProtocolError {
    #[error("unknown reply type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("bad number {0:?} in a reply header")]
    BadNumber(String),
    #[error("negative length {0} (only -1, for null, is allowed)")]
    NegativeLength(i64),
    #[error("bulk string of {0} bytes exceeds the 512 MiB limit")]
    BulkTooLarge(i64),
    #[error("array of {0} elements exceeds the limit of {MAX_ARRAY}")]
    ArrayTooLarge(i64),
    #[error("arrays nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("reply line ends in LF without CR")]
    BareLf,
    #[error("bulk string not followed by CRLF")]
    MissingCrlf,
}

/// Parses one reply from the front of `buf`: `Ok(None)` if it has not fully
/// arrived, otherwise the reply and how many bytes it took.
///
/// Never allocates for anything but arrays, and never on the word of a
/// length header: a bulk that claims 500 MiB costs only the bytes that came.
fn parse_reply(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    parse_at(buf, 0, 0)
}

/// Parses the reply starting at `start`; returns it and where it ends.
fn parse_at(
    buf: &[u8],
    start: usize,
    depth: usize,
) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    let Some(&tag) = buf.get(start) else {
        return Ok(None);
    };
    if !matches!(tag, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(ProtocolError::UnknownType(tag));
    }
    let Some((line, next)) = line_at(buf, start + 1)? else {
        return Ok(None);
    };
    let parsed = match tag {
        b'+' => (Reply::Simple(line), next),
        b'-' => (Reply::Error(line), next),
        b':' => (Reply::Integer(parse_int(line)?), next),
        b'$' => match parse_len(line)? {
            None => (Reply::Bulk(None), next),
            Some(len) if len > MAX_BULK => {
                return Err(ProtocolError::BulkTooLarge(len as i64));
            }
            Some(len) => {
                let end = next + len;
                let Some(crlf) = buf.get(end..end + 2) else {
                    return Ok(None);
                };
                if crlf != b"\r\n" {
                    return Err(ProtocolError::MissingCrlf);
                }
                (Reply::Bulk(Some(&buf[next..end])), end + 2)
            }
        },
        _ => match parse_len(line)? {
            None => (Reply::Array(None), next),
            Some(len) if len > MAX_ARRAY => {
                return Err(ProtocolError::ArrayTooLarge(len as i64));
            }
            Some(_) if depth >= MAX_DEPTH => return Err(ProtocolError::TooDeep),
            Some(len) => {
                // Capacity from the header only up to a small bound: the
                // elements themselves must arrive before they cost memory.
                let mut items = Vec::with_capacity(len.min(16));
                let mut at = next;
                for _ in 0..len {
                    let Some((item, end)) = parse_at(buf, at, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    at = end;
                }
                (Reply::Array(Some(items)), at)
            }
        },
    };
    Ok(Some(parsed))
}

/// The line starting at `start`, without its CRLF, and where the next one
/// starts.
fn line_at(buf: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = buf.get(start..).unwrap_or_default();
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) if lf == 0 || window[lf - 1] != b'\r' => Err(ProtocolError::BareLf),
        Some(lf) => Ok(Some((&rest[..lf - 1], start + lf + 1))),
        None if rest.len() > MAX_LINE + 1 => Err(ProtocolError::LineTooLong),
        None => Ok(None),
    }
}

/// A length header: `-1` is null, other negatives are errors.
fn parse_len(line: &[u8]) -> Result<Option<usize>, ProtocolError> {
    match parse_int(line)? {
        -1 => Ok(None),
        n if n < 0 => Err(ProtocolError::NegativeLength(n)),
        n => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
    }
}

/// A strict RESP integer: an optional `-`, then at least one digit, no sign
/// of `+`, no spaces, no overflow.
fn parse_int(line: &[u8]) -> Result<i64, ProtocolError> {
    let bad = || ProtocolError::BadNumber(error_message(&line[..line.len().min(32)]));
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        let d = i64::from(d - b'0');
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if negative {
                    n.checked_sub(d)
                } else {
                    n.checked_add(d)
                }
            })
            .ok_or_else(bad)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tokio::net::TcpListener;

    // ---- reply parser ----

    fn parse_all(input: &[u8]) -> (Reply<'_>, usize) {
        parse_reply(input)
            .expect("valid reply")
            .expect("complete reply")
    }

    #[test]
    fn parses_each_reply_type() {
        assert_eq!(parse_all(b"+OK\r\n"), (Reply::Simple(b"OK"), 5));
        assert_eq!(
            parse_all(b"-ERR quorum not reached\r\n"),
            (Reply::Error(b"ERR quorum not reached"), 25)
        );
        assert_eq!(parse_all(b":-42\r\n"), (Reply::Integer(-42), 6));
        assert_eq!(parse_all(b"$3\r\nbar\r\n"), (Reply::Bulk(Some(b"bar")), 9));
        assert_eq!(parse_all(b"$0\r\n\r\n"), (Reply::Bulk(Some(b"")), 6));
        assert_eq!(parse_all(b"$-1\r\n"), (Reply::Bulk(None), 5));
        assert_eq!(parse_all(b"*-1\r\n"), (Reply::Array(None), 5));
        assert_eq!(parse_all(b"*0\r\n"), (Reply::Array(Some(vec![])), 4));
        assert_eq!(
            parse_all(b"*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n"),
            (
                Reply::Array(Some(vec![
                    Reply::Integer(1),
                    Reply::Bulk(None),
                    Reply::Array(Some(vec![Reply::Simple(b"x")])),
                ])),
                21
            )
        );
    }

    #[test]
    fn bulk_strings_are_binary_safe() {
        let (reply, used) = parse_all(b"$6\r\na\r\n\0\xffb\r\n+next\r\n");
        assert_eq!(reply, Reply::Bulk(Some(b"a\r\n\0\xffb")));
        assert_eq!(used, 12);
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let whole: &[u8] = b"*4\r\n+OK\r\n-ERR x\r\n$5\r\nhello\r\n*2\r\n:7\r\n$-1\r\n";
        for cut in 0..whole.len() {
            assert_eq!(
                parse_reply(&whole[..cut]),
                Ok(None),
                "prefix of {cut} bytes"
            );
        }
        assert_eq!(parse_all(whole).1, whole.len());
    }

    #[test]
    fn rejects_malformed_replies() {
        use ProtocolError::*;
        let cases: &[(&[u8], ProtocolError)] = &[
            (b"?what\r\n", UnknownType(b'?')),
            (b"%1\r\n", UnknownType(b'%')),
            (b":12a\r\n", BadNumber("12a".into())),
            (b":\r\n", BadNumber(String::new())),
            (b":-\r\n", BadNumber("-".into())),
            (b":+5\r\n", BadNumber("+5".into())),
            (
                b":99999999999999999999\r\n",
                BadNumber("99999999999999999999".into()),
            ),
            (b"$-2\r\n", NegativeLength(-2)),
            (b"*-5\r\n", NegativeLength(-5)),
            (b"$536870913\r\n", BulkTooLarge(536_870_913)),
            (b"*67108865\r\n", ArrayTooLarge(67_108_865)),
            (b"$3\r\nbarXY", MissingCrlf),
            (b"+OK\n", BareLf),
            (b"\n", UnknownType(b'\n')),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_reply(input).as_ref(),
                Err(expected),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn extreme_integers_parse() {
        assert_eq!(
            parse_all(b":-9223372036854775808\r\n").0,
            Reply::Integer(i64::MIN)
        );
        assert_eq!(
            parse_all(b":9223372036854775807\r\n").0,
            Reply::Integer(i64::MAX)
        );
    }

    #[test]
    fn a_bulk_at_the_limit_waits_for_its_bytes() {
        // The header alone is accepted; the parser waits for the payload
        // without reserving it.
        assert_eq!(parse_reply(b"$536870912\r\nabc"), Ok(None));
    }

    #[test]
    fn lines_are_bounded() {
        let mut long = vec![b'+'];
        long.extend(std::iter::repeat_n(b'a', MAX_LINE + 2));
        assert_eq!(parse_reply(&long), Err(ProtocolError::LineTooLong));
        // Up to the limit, the line is just not complete yet.
        assert_eq!(parse_reply(&long[..MAX_LINE + 1]), Ok(None));
        let mut at_limit = long[..MAX_LINE + 1].to_vec();
        at_limit.extend_from_slice(b"\r\n");
        assert!(matches!(parse_all(&at_limit).0, Reply::Simple(s) if s.len() == MAX_LINE));
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| {
            let mut v = b"*1\r\n".repeat(depth);
            v.extend_from_slice(b":1\r\n");
            v
        };
        assert!(parse_reply(&nested(MAX_DEPTH)).unwrap().is_some());
        assert_eq!(
            parse_reply(&nested(MAX_DEPTH + 1)),
            Err(ProtocolError::TooDeep)
        );
    }

    // ---- encoding ----

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut value = Vec::new();
        push_bulk(&mut value, b"v\r\n\0");
        let mut out = Vec::new();
        encode_command(&mut out, Op::Set, 1234, &value);
        encode_command(&mut out, Op::Get, 0, &value);
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$8\r\nkey:1234\r\n$4\r\nv\r\n\0\r\n*2\r\n$3\r\nGET\r\n$5\r\nkey:0\r\n"
        );
        // What we send parses as RESP too.
        let (set, used) = parse_all(&out);
        assert_eq!(
            set,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"SET")),
                Reply::Bulk(Some(b"key:1234")),
                Reply::Bulk(Some(b"v\r\n\0")),
            ]))
        );
        assert_eq!(
            parse_all(&out[used..]).0,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"GET")),
                Reply::Bulk(Some(b"key:0"))
            ]))
        );
    }

    #[test]
    fn decimal_formats_like_display() {
        for n in [0, 7, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    // ---- key choice ----

    #[test]
    fn keys_stay_in_the_keyspace_and_cover_it() {
        let mut rng = KeyRng::for_client(7, 0);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[rng.below(10) as usize] += 1;
        }
        // Uniform: each of 10 keys near 1000.
        assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
        let mut one = KeyRng::for_client(7, 3);
        assert!((0..100).all(|_| one.below(1) == 0));
        let mut big = KeyRng::for_client(7, 3);
        assert!((0..1000).all(|_| big.below(u64::MAX) < u64::MAX));
    }

    #[test]
    fn a_seed_repeats_its_keys_and_clients_differ() {
        let draw = |seed, client| {
            let mut rng = KeyRng::for_client(seed, client);
            (0..32).map(|_| rng.below(1_000_000)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1, 0), draw(1, 0));
        assert_ne!(draw(1, 0), draw(1, 1));
        assert_ne!(draw(1, 0), draw(2, 0));
        // Not one stream shifted by a step (the trap of offset seeds).
        assert_ne!(draw(1, 0)[1..], draw(1, 1)[..31]);
        assert_ne!(draw(1, 1)[1..], draw(1, 0)[..31]);
    }

    #[test]
    fn chance_follows_the_ratio() {
        let mut rng = KeyRng::for_client(3, 0);
        let hits = (0..100_000).filter(|_| rng.chance(0.9)).count();
        assert!((89_000..91_000).contains(&hits), "{hits}");
        assert!((0..1000).all(|_| !rng.chance(0.0)));
        assert!((0..1000).all(|_| rng.chance(1.0)));
    }

    // ---- summary ----

    #[test]
    fn latency_reads_percentiles_in_ms() {
        let mut h = new_histogram();
        // 1..=999 µs and one outlier: 1000 values, so the k-th smallest is
        // the k/1000 quantile (exact below 1024 µs at 3 significant digits).
        for us in 1..=999 {
            h.record(us).unwrap();
        }
        h.record(250_000).unwrap();
        let l = Latency::from_histogram(&h);
        assert_eq!(l.p50, 0.5);
        assert_eq!(l.p90, 0.9);
        assert_eq!(l.p99, 0.99);
        assert_eq!(l.p999, 0.999);
        assert!((249.0..=250.2).contains(&l.max), "{}", l.max);
        assert_eq!(Latency::from_histogram(&new_histogram()).max, 0.0);
    }

    #[test]
    fn recording_grows_the_histogram_instead_of_clamping() {
        let mut h = new_histogram();
        record_latency(&mut h, Duration::from_micros(20), 99);
        record_latency(&mut h, Duration::from_millis(1500), 1);
        assert_eq!(h.len(), 100);
        let l = Latency::from_histogram(&h);
        assert_eq!(l.p50, 0.02);
        assert!((1499.0..=1501.0).contains(&l.max), "{}", l.max);
        // Merging histograms of different ranges keeps every value.
        let mut merged = new_histogram();
        let mut small = new_histogram();
        record_latency(&mut small, Duration::from_micros(5), 1);
        merged.add(&small).unwrap();
        merged.add(&h).unwrap();
        assert_eq!(merged.len(), 101);
        assert_eq!(merged.max(), h.max());
    }

    #[test]
    fn percentiles_never_pass_the_max() {
        let mut h = new_histogram();
        h.record_n(123_456, 10).unwrap();
        let l = Latency::from_histogram(&h);
        assert!(l.p50 <= l.max && l.p999 <= l.max);
    }

    fn summary() -> TestSummary {
        TestSummary {
            test: "set",
            label: "SET",
            requests: 100_000,
            errors: 3,
            misses: 0,
            first_error: Some("ERR quorum not reached".into()),
            failed_clients: 0,
            first_failure: None,
            seconds: 1.019_2,
            ops_per_sec: 98_120.45,
            latency_ms: Latency {
                p50: 0.271,
                p90: 0.303,
                p99: 0.391,
                p999: 0.815,
                max: 2.031,
            },
            servers: vec!["127.0.0.1:6380".into()],
            clients: 50,
            pipeline: 1,
            data_size: 100,
            keyspace: 10_000,
            read_ratio: None,
            seed: 42,
        }
    }

    #[test]
    fn text_summary_is_stable() {
        assert_eq!(
            summary().to_text(),
            "SET: 98120.45 requests per second, p50=0.271 ms, p90=0.303 ms, p99=0.391 ms, \
             p99.9=0.815 ms, max=2.031 ms (100000 requests, 3 errors, 0 misses, 1.019 s)\n  \
             SET: 3 error replies, first: ERR quorum not reached"
        );
    }

    #[test]
    fn json_summary_is_one_object() {
        let json = summary().to_json();
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["test"], "set");
        assert_eq!(v["requests"], 100_000);
        assert_eq!(v["errors"], 3);
        assert_eq!(v["ops_per_sec"], 98_120.45);
        assert_eq!(v["latency_ms"]["p999"], 0.815);
        assert_eq!(v["first_failure"], serde_json::Value::Null);
        assert!(v.get("read_ratio").is_none());
        assert!(v.get("label").is_none());
    }

    // ---- arguments ----

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    /// `gridkv bench <line>`, the line split at spaces.
    fn try_args(line: &str) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(line.split_whitespace()))
            .map(|cli| cli.bench)
    }

    fn args(line: &str) -> BenchArgs {
        try_args(line).expect("valid arguments")
    }

    #[test]
    fn defaults_match_the_docs() {
        let a = args("");
        assert_eq!(a.servers, ["127.0.0.1:6380"]);
        assert_eq!(
            (a.clients, a.requests, a.data_size, a.pipeline, a.keyspace),
            (50, None, 100, 1, 10_000)
        );
        assert_eq!(a.tests, [TestKind::Set, TestKind::Get]);
        assert_eq!(a.read_ratio, 0.9);
        assert_eq!(
            (a.duration, a.seed, a.quiet, a.json),
            (None, None, false, false)
        );
    }

    #[test]
    fn lists_and_short_flags_parse() {
        let a = args("--servers a:1,b:2 -c 3 -n 9 -d 4 -P 5 -r 6 -t mixed,get -q");
        assert_eq!(a.servers, ["a:1", "b:2"]);
        assert_eq!(
            (a.clients, a.requests, a.data_size, a.pipeline, a.keyspace),
            (3, Some(9), 4, 5, 6)
        );
        assert_eq!(a.tests, [TestKind::Mixed, TestKind::Get]);
        assert!(a.quiet);
        assert!(try_args("-t set,del").is_err());
        assert_eq!(args("--duration 1.5").duration, Some(1.5));
        assert!(args("--json").json);
    }

    #[test]
    fn requests_default_only_without_a_duration() {
        let budget = |line| {
            let b = Plan::from_args(args(line)).unwrap().budget;
            (b.requests, b.duration)
        };
        assert_eq!(budget(""), (Some(DEFAULT_REQUESTS), None));
        assert_eq!(budget("-n 7"), (Some(7), None));
        let two = Some(Duration::from_secs(2));
        assert_eq!(budget("--duration 2"), (None, two));
        assert_eq!(budget("--duration 2 -n 7"), (Some(7), two));
    }

    #[test]
    fn invalid_plans_are_refused() {
        let refuse = |line| Plan::from_args(args(line)).unwrap_err().to_string();
        assert_eq!(refuse("-c 0"), "--clients must be at least 1");
        assert_eq!(refuse("-P 0"), "--pipeline must be at least 1");
        assert_eq!(refuse("-n 0"), "--requests must be at least 1");
        assert_eq!(refuse("-r 0"), "--keyspace must be at least 1");
        assert_eq!(
            refuse("--duration 0"),
            "--duration must be a positive number of seconds, got 0"
        );
        assert!(refuse("--duration=-1").starts_with("--duration"));
        assert!(refuse("--duration NaN").starts_with("--duration"));
        assert_eq!(
            refuse("--read-ratio 1.5"),
            "--read-ratio must be between 0 and 1, got 1.5"
        );
        assert!(refuse("-d 536870913").contains("512 MiB"));
        assert_eq!(refuse("--servers ,"), "--servers lists nothing");
        assert!(Plan::from_args(args("-n 1 -c 1 -P 1")).is_ok());
    }

    // ---- end to end, against a fake server ----

    /// How the fake server answers.
    #[derive(Debug, Clone, Copy)]
    enum Fake {
        /// SET → `+OK`, GET → a bulk.
        Hits,
        /// SET → `+OK`, GET → `$-1`.
        Misses,
        /// Everything → `-ERR quorum not reached`.
        Errors,
        /// Answers like `Hits`, but drops a connection after this many
        /// commands.
        CloseAfter(u64),
        /// Answers `?` to everything.
        Garbage,
    }

    /// Commands and connections a fake server saw.
    #[derive(Debug, Default)]
    struct Seen {
        connections: AtomicU64,
        sets: AtomicU64,
        gets: AtomicU64,
    }

    /// A RESP server in-process, on 127.0.0.1 at some free port.
    async fn fake_server(mode: Fake) -> (String, Arc<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Seen::default());
        let counters = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Without it, Nagle and delayed ACKs add 40 ms to small replies.
                stream.set_nodelay(true).unwrap();
                counters.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve_fake(stream, mode, Arc::clone(&counters)));
            }
        });
        (addr, seen)
    }

    async fn serve_fake(mut stream: TcpStream, mode: Fake, seen: Arc<Seen>) {
        let mut input = BytesMut::new();
        let mut replies = Vec::new();
        let mut served = 0u64;
        loop {
            match stream.read_buf(&mut input).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            replies.clear();
            // Commands are RESP arrays too, so the reply parser reads them.
            while let Ok(Some((command, used))) = parse_reply(&input) {
                let Reply::Array(Some(parts)) = command else {
                    panic!("the bench sent a non-array");
                };
                let is_set = parts[0] == Reply::Bulk(Some(b"SET"));
                if is_set {
                    assert_eq!(parts.len(), 3);
                    seen.sets.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!(parts[0], Reply::Bulk(Some(b"GET")));
                    assert_eq!(parts.len(), 2);
                    seen.gets.fetch_add(1, Ordering::Relaxed);
                }
                input.advance(used);
                served += 1;
                let reply: &[u8] = match mode {
                    Fake::Errors => b"-ERR quorum not reached\r\n",
                    Fake::Garbage => b"?\r\n",
                    Fake::CloseAfter(n) if served > n => return,
                    _ if is_set => b"+OK\r\n",
                    Fake::Misses => b"$-1\r\n",
                    _ => b"$3\r\nbar\r\n",
                };
                replies.extend_from_slice(reply);
            }
            if stream.write_all(&replies).await.is_err() {
                return;
            }
        }
    }

    /// Runs `gridkv bench <line>` (always `-q`) with its output captured.
    async fn bench(line: &str) -> (Result<Outcome, BenchError>, String) {
        let plan = Plan::from_args(args(&format!("{line} -q"))).expect("valid plan");
        let mut out = Vec::new();
        let outcome = run_plan(&plan, &mut out).await;
        (outcome, String::from_utf8(out).unwrap())
    }

    #[tokio::test]
    async fn counts_exactly_the_requested_number() {
        let (addr, seen) = fake_server(Fake::Hits).await;
        // 1000 is no multiple of 4 clients × pipeline 7: the last batches
        // are partial.
        let (outcome, out) = bench(&format!("--servers {addr} -c 4 -n 1000 -P 7 -r 50")).await;
        let outcome = outcome.unwrap();
        assert!(!outcome.interrupted);
        let [set, get] = &outcome.summaries[..] else {
            panic!("two tests: {:?}", outcome.summaries);
        };
        for s in [set, get] {
            assert_eq!((s.requests, s.errors, s.misses), (1000, 0, 0), "{s:?}");
            assert_eq!(s.failed_clients, 0);
            assert!(s.ops_per_sec > 0.0 && s.latency_ms.max > 0.0);
        }
        assert_eq!((set.test, get.test), ("set", "get"));
        assert_eq!(seen.sets.load(Ordering::Relaxed), 1000);
        assert_eq!(seen.gets.load(Ordering::Relaxed), 1000);
        assert_eq!(seen.connections.load(Ordering::Relaxed), 8, "4 per test");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("gridkv bench: "));
        assert!(lines[1].starts_with("SET: ") && lines[1].contains("(1000 requests, 0 errors"));
        assert!(lines[2].starts_with("GET: "));
        outcome.verdict().unwrap();
    }

    #[tokio::test]
    async fn run_succeeds_against_a_healthy_server() {
        let (addr, seen) = fake_server(Fake::Hits).await;
        run(args(&format!(
            "--servers {addr} -c 2 -n 20 -t set -q --json"
        )))
        .await
        .unwrap();
        assert_eq!(seen.sets.load(Ordering::Relaxed), 20);
    }

    #[tokio::test]
    async fn error_replies_are_counted_not_fatal() {
        let (addr, _) = fake_server(Fake::Errors).await;
        let (outcome, out) = bench(&format!("--servers {addr} -c 3 -n 300 -P 4 -t set")).await;
        let outcome = outcome.unwrap();
        let s = &outcome.summaries[0];
        assert_eq!((s.requests, s.errors), (300, 300));
        assert_eq!(s.first_error.as_deref(), Some("ERR quorum not reached"));
        assert_eq!(s.failed_clients, 0);
        assert!(
            out.contains("SET: 300 error replies, first: ERR quorum not reached"),
            "{out}"
        );
        outcome.verdict().unwrap();
    }

    #[tokio::test]
    async fn misses_are_counted() {
        let (addr, _) = fake_server(Fake::Misses).await;
        let (outcome, _) = bench(&format!("--servers {addr} -c 2 -n 200 -t get")).await;
        let s = &outcome.unwrap().summaries[0];
        assert_eq!((s.requests, s.errors, s.misses), (200, 0, 200));
    }

    #[tokio::test]
    async fn mixed_follows_the_read_ratio() {
        let (addr, seen) = fake_server(Fake::Hits).await;
        let line = format!("--servers {addr} -c 4 -n 4000 -P 8 -t mixed --seed 9 --json");
        let (outcome, out) = bench(&line).await;
        let s = &outcome.unwrap().summaries[0];
        assert_eq!(s.requests, 4000);
        assert_eq!(s.read_ratio, Some(0.9));
        let gets = seen.gets.load(Ordering::Relaxed);
        assert_eq!(gets + seen.sets.load(Ordering::Relaxed), 4000);
        assert!((3400..3800).contains(&gets), "{gets} GETs of 4000");
        assert_eq!(out.lines().count(), 1, "JSON mode prints only summaries");
    }

    #[tokio::test]
    async fn clients_spread_over_servers() {
        let (a, seen_a) = fake_server(Fake::Hits).await;
        let (b, seen_b) = fake_server(Fake::Hits).await;
        let (outcome, _) = bench(&format!("--servers {a},{b} -c 5 -n 500 -t set")).await;
        assert_eq!(outcome.unwrap().summaries[0].requests, 500);
        assert_eq!(seen_a.connections.load(Ordering::Relaxed), 3);
        assert_eq!(seen_b.connections.load(Ordering::Relaxed), 2);
        let sets = seen_a.sets.load(Ordering::Relaxed) + seen_b.sets.load(Ordering::Relaxed);
        assert_eq!(sets, 500);
    }

    #[tokio::test]
    async fn duration_runs_until_the_deadline() {
        let (addr, _) = fake_server(Fake::Hits).await;
        let started = Instant::now();
        let (outcome, _) = bench(&format!("--servers {addr} -c 2 --duration 0.3 -t set")).await;
        let s = &outcome.unwrap().summaries[0];
        assert!(s.requests > 0);
        assert!((0.3..2.0).contains(&s.seconds), "{}", s.seconds);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn with_both_limits_the_first_one_ends_the_test() {
        let (addr, _) = fake_server(Fake::Hits).await;
        let line = format!("--servers {addr} -c 2 --duration 30 -n 50 -t set");
        let (outcome, _) = bench(&line).await;
        let s = &outcome.unwrap().summaries[0];
        assert_eq!(s.requests, 50);
        assert!(s.seconds < 10.0);
    }

    #[tokio::test]
    async fn a_lost_connection_stops_that_client_only() {
        let (addr, _) = fake_server(Fake::CloseAfter(10)).await;
        let (outcome, out) = bench(&format!("--servers {addr} -c 3 -n 1000 -t set")).await;
        let outcome = outcome.unwrap();
        let s = &outcome.summaries[0];
        assert_eq!(s.failed_clients, 3);
        assert_eq!(s.requests, 30, "10 replies from each connection");
        let failure = s.first_failure.as_deref().unwrap();
        assert!(failure.contains(&addr), "{failure}");
        assert!(out.contains("3 of 3 clients stopped early"), "{out}");
        match outcome.verdict() {
            Err(e @ BenchError::ClientsFailed { failed: 3, .. }) => {
                assert!(e.to_string().contains("3 client(s) stopped early"), "{e}");
            }
            other => panic!("expected ClientsFailed, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_malformed_reply_is_a_typed_failure() {
        let (addr, _) = fake_server(Fake::Garbage).await;
        let (outcome, _) = bench(&format!("--servers {addr} -c 1 -n 10 -t set")).await;
        let s = &outcome.unwrap().summaries[0];
        assert_eq!(s.requests, 0);
        let failure = s.first_failure.as_deref().unwrap();
        assert!(
            failure.contains("malformed reply: unknown reply type byte 0x3f"),
            "{failure}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_before_the_test() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let (outcome, _) = bench(&format!("--servers {addr} -c 2 -n 10")).await;
        match outcome {
            Err(e @ BenchError::Connect { .. }) => {
                let expected = format!("cannot connect to {addr}: ");
                assert!(e.to_string().starts_with(&expected), "{e}");
            }
            other => panic!("expected Connect, got {other:?}"),
        }
        let (outcome, _) = bench("--servers no-port-here").await;
        assert!(matches!(outcome, Err(BenchError::Resolve { .. })));
    }
}
