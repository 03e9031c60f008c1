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
//!
//! # Layout
//!
//! [`args`](BenchArgs) are validated into a `plan`; `driver` runs each
//! test: it opens the connections, hands out the work of a `job`, and
//! runs one `client` task per connection, which sends the commands of
//! `workload` and reads answers with the `reply` parser; `progress` draws
//! the bar and `summary` renders each test's result.

mod args;
mod client;
mod driver;
mod error;
mod job;
mod plan;
mod progress;
mod reply;
mod summary;
mod workload;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use self::driver::{resolve, run_test};
use self::job::AbortOnDrop;
use self::job::Interrupt;
use self::plan::Plan;
use self::summary::TestSummary;

pub use args::{BenchArgs, TestKind};
pub use error::BenchError;

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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    use bytes::{Buf, BytesMut};
    use clap::Parser;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::plan::DEFAULT_REQUESTS;
    use super::reply::{Reply, parse_reply};
    use super::*;

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
