//! The validated arguments: what each test sends, how much, to whom.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use super::args::{BenchArgs, TestKind};
use super::error::BenchError;
use super::reply::MAX_BULK;

/// The `AUTH` every connection sends first: a user (if named) and the
/// password (not shown by `Debug`).
#[derive(Clone)]
pub(super) struct Auth {
    pub(super) user: Option<String>,
    pub(super) password: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The validated arguments.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) servers: Vec<String>,
    pub(super) clients: usize,
    pub(super) budget: PlanBudget,
    pub(super) data_size: usize,
    pub(super) pipeline: usize,
    pub(super) keyspace: u64,
    pub(super) tests: Vec<TestKind>,
    pub(super) read_ratio: f64,
    pub(super) seed: u64,
    pub(super) progress: bool,
    pub(super) json: bool,
    /// `AUTH` sent first on every connection.
    pub(super) auth: Option<Auth>,
    /// TLS on every connection, with this client configuration.
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
}

/// How much work each test does: at least one of the two limits is set.
#[derive(Debug, Clone, Copy)]
pub(super) struct PlanBudget {
    pub(super) requests: Option<u64>,
    pub(super) duration: Option<Duration>,
}

/// Requests per test when neither `--requests` nor `--duration` is given.
pub(super) const DEFAULT_REQUESTS: u64 = 100_000;

impl Plan {
    pub(super) fn from_args(args: BenchArgs) -> Result<Self, BenchError> {
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
        let tls = match &args.cacert {
            Some(ca) => Some(Arc::new(
                crate::tls::client_config(ca, &[]).map_err(|e| BenchError::Tls(e.to_string()))?,
            )),
            None => None,
        };
        let auth = args.password.map(|password| Auth {
            user: args.user,
            password,
        });
        Ok(Plan {
            auth,
            tls,
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
    pub(super) fn header(&self) -> String {
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
