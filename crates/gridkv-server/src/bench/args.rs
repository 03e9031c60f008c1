//! The flags of `gridkv bench` and the tests it can run.

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

    /// Authenticate every connection with `AUTH` (`--requirepass` or an
    /// ACL user's password).
    #[arg(
        short = 'a',
        long,
        env = "GRIDKV_BENCH_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,

    /// The ACL user to authenticate as (with `--password`; `default` if
    /// not given).
    #[arg(long, env = "GRIDKV_BENCH_USER", requires = "password")]
    pub user: Option<String>,

    /// Connect with TLS (a node started with `--resp-tls`), trusting the
    /// CAs in this PEM file; the certificate must name the server's host.
    #[arg(long, env = "GRIDKV_BENCH_CACERT", value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,

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
    pub(super) fn label(self) -> &'static str {
        match self {
            TestKind::Set => "SET",
            TestKind::Get => "GET",
            TestKind::Mixed => "MIXED",
        }
    }
}
