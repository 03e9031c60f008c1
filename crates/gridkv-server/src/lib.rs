//! The `gridkv` server: a GridKV node run standalone, speaking the Redis
//! protocol (RESP2 and RESP3) so any Redis client and tool can use a
//! cluster, with an HTTP admin API, a one-command local cluster
//! (`gridkv demo`) and a load generator (`gridkv bench`).
//!
//! The library crate `gridkv` does not depend on anything here.
//!
//! - [`auth`]: RESP users, passwords and ACLs (`AUTH`, `--acl-file`).
//! - [`config`]: flags, `GRIDKV_*` variables and a TOML file, merged.
//! - [`resp`]: the RESP parser and the RESP2/RESP3 reply writer.
//! - [`cmd`]: the Redis commands, parsed then applied to the node's
//!   quorum API.
//! - [`session`]: one connection's state (protocol, name, id).
//! - [`shared`]: what the RESP and HTTP front ends share (node, counters).
//! - [`server`]: the RESP listener and per-client connections; `writer`
//!   writes a connection's replies.
//! - [`limits`] and [`clients`]: the bounds on one client and on all
//!   clients' memory, so a hostile client cannot exhaust a node.
//! - [`stats`]: one statistics snapshot, rendered by [`info`] (the `INFO`
//!   text) and [`metrics`] (the `/metrics` Prometheus text).
//! - [`http`]: `/health`, `/metrics`, `/cluster` (JSON), behind the
//!   admin token where it is needed.
//! - [`tls`]: TLS on the RESP and HTTP listeners.
//! - [`node`]: `gridkv node`, a node with both front ends; [`reload`]
//!   re-reads its certificates and ACL file on SIGHUP and on change.
//! - [`demo`]: `gridkv demo`.
//! - [`bench`](mod@bench): `gridkv bench`.
//! - [`cert`]: `gridkv cert`, the certificates of a secured cluster;
//!   [`remove`]: `gridkv remove`, an operator's signed removal.

pub mod auth;
pub mod bench;
pub mod cert;
pub mod clients;
pub mod cmd;
pub mod config;
pub mod demo;
pub mod http;
pub mod http_guard;
pub mod info;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod reload;
pub mod remove;
pub mod resp;
pub mod server;
pub mod session;
pub mod shared;
pub mod stats;
pub mod tls;
pub mod topology;
mod writer;
