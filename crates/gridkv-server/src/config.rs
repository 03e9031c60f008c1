//! The `gridkv node` configuration: command-line flags, `GRIDKV_*`
//! environment variables and a TOML file, merged in that order of
//! precedence (a flag beats its variable, which beats the file, which
//! beats the default).
//!
//! | flag | variable | file key | default |
//! |---|---|---|---|
//! | `--id` | `GRIDKV_ID` | `id` | (required) |
//! | `--listen` | `GRIDKV_LISTEN` | `listen` | `127.0.0.1:7380` |
//! | `--advertise` | `GRIDKV_ADVERTISE` | `advertise` | the listen address |
//! | `--seeds` | `GRIDKV_SEEDS` | `seeds` | none (a one-node cluster) |
//! | `--resp` | `GRIDKV_RESP` | `resp` | `127.0.0.1:6380` |
//! | `--http` | `GRIDKV_HTTP` | `http` | `127.0.0.1:8080` |
//! | `--dc` | `GRIDKV_DC` | `dc` | `default` |
//! | `--replicas` | `GRIDKV_REPLICAS` | `replicas` | 3 (or per datacenter: `a:2,b:1`) |
//! | `--write-quorum` | `GRIDKV_WRITE_QUORUM` | `write_quorum` | 2 |
//! | `--read-quorum` | `GRIDKV_READ_QUORUM` | `read_quorum` | 2 |
//! | `--consistency` | `GRIDKV_CONSISTENCY` | `consistency` | `strong` (W + R > N required) |
//! | `--max-memory` | `GRIDKV_MAX_MEMORY` | `max_memory` | `1gb` |
//! | `--max-clients` | `GRIDKV_MAX_CLIENTS` | `max_clients` | 10000 |
//! | `--cluster` | `GRIDKV_CLUSTER` | `cluster` | `gridkv` |
//! | `--pipeline-order` | `GRIDKV_PIPELINE_ORDER` | `pipeline_order` | `strict` |
//! | `--max-clock-offset` | `GRIDKV_MAX_CLOCK_OFFSET` | `max_clock_offset` | `5s` |
//! | `--config` | `GRIDKV_CONFIG` | | none |
//!
//! Client limits (issue 15; see docs/SERVER.md, "Client limits"):
//!
//! | flag | variable | file key | default |
//! |---|---|---|---|
//! | `--max-command-bytes` | `GRIDKV_MAX_COMMAND_BYTES` | `max_command_bytes` | `512mb` |
//! | `--max-command-args` | `GRIDKV_MAX_COMMAND_ARGS` | `max_command_args` | 1048576 |
//! | `--max-bulk-bytes` | `GRIDKV_MAX_BULK_BYTES` | `max_bulk_bytes` | twice the store's value limit, at least `8mb` |
//! | `--max-inline-bytes` | `GRIDKV_MAX_INLINE_BYTES` | `max_inline_bytes` | `64kb` |
//! | `--max-client-output` | `GRIDKV_MAX_CLIENT_OUTPUT` | `max_client_output` | `64mb` |
//! | `--max-clients-memory` | `GRIDKV_MAX_CLIENTS_MEMORY` | `max_clients_memory` | `1gb` |
//!
//! Security (issue 16): TLS, client authentication and the admin token,
//! tabled in [`SecurityArgs`]' module (`--tls-ca`, `--tls-cert`,
//! `--tls-key`, `--insecure`, `--requirepass`, `--acl-file`, `--resp-tls`,
//! `--resp-tls-client-certs`, `--admin-token`, `--admin-token-file`,
//! `--http-tls`, `--http-tls-cert`, `--http-tls-key`).
//!
//! Datacenters (issue 18): `--rack`, `--write-consistency` and
//! `--read-consistency`, tabled in [`TopologyArgs`]' module.
//!
//! # Examples
//!
//! ```
//! use gridkv_server::config::{FileConfig, NodeArgs, ServerConfig};
//!
//! let file: FileConfig = toml::from_str(r#"
//!     id = "n1"
//!     replicas = 1
//!     write_quorum = 1
//!     read_quorum = 1
//!     max_memory = "64mb"
//! "#).unwrap();
//! let args = NodeArgs { resp: Some("127.0.0.1:0".into()), ..NodeArgs::default() };
//! let config = ServerConfig::merge(args, file).unwrap();
//! assert_eq!(config.resp, "127.0.0.1:0"); // from the flag
//! assert_eq!(config.max_memory, 64 << 20); // from the file
//! assert_eq!(config.http, "127.0.0.1:8080"); // the default
//! ```

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

mod pipeline;
mod security;
mod topology;

pub use pipeline::PipelineOrder;
pub use security::{CertKey, ClientCerts, SecurityArgs, SecurityConfig, TlsFiles};
pub use topology::{ReplicasValue, TopologyArgs};

/// Default `--max-client-output`: replies one client may leave unread.
pub const DEFAULT_MAX_CLIENT_OUTPUT: u64 = 64 << 20;
/// Default `--max-clients-memory`: pending input and output of all
/// clients together.
pub const DEFAULT_MAX_CLIENTS_MEMORY: u64 = 1 << 30;

/// Flags of `gridkv node`. Every one is optional here so that the
/// environment and the config file can supply it; see the module docs.
#[derive(Debug, Clone, Default, Args)]
pub struct NodeArgs {
    /// This node's id: stable across restarts, unique in the cluster.
    #[arg(long, env = "GRIDKV_ID")]
    pub id: Option<String>,
    /// Cluster transport address to bind (port 0: any free port).
    #[arg(long, env = "GRIDKV_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Cluster address peers dial, if not the listen address.
    #[arg(long, env = "GRIDKV_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Seed addresses to join through, comma-separated (may include this
    /// node's own).
    #[arg(
        long,
        env = "GRIDKV_SEEDS",
        value_name = "HOST:PORT,...",
        value_delimiter = ','
    )]
    pub seeds: Option<Vec<String>>,
    /// Redis protocol (RESP) address to bind.
    #[arg(long, env = "GRIDKV_RESP", value_name = "HOST:PORT")]
    pub resp: Option<String>,
    /// HTTP admin address to bind (`/health`, `/metrics`, `/cluster`).
    #[arg(long, env = "GRIDKV_HTTP", value_name = "HOST:PORT")]
    pub http: Option<String>,
    /// Datacenter label.
    #[arg(long, env = "GRIDKV_DC", value_name = "NAME")]
    pub dc: Option<String>,
    /// Copies of each key: a count (`3`, on any members) or counts per
    /// datacenter (`a:2,b:1`).
    #[arg(long, env = "GRIDKV_REPLICAS", value_name = "N|DC:N,...")]
    pub replicas: Option<gridkv::ReplicaPlacement>,
    /// Owners that must apply a write (W).
    #[arg(long, env = "GRIDKV_WRITE_QUORUM", value_name = "W")]
    pub write_quorum: Option<usize>,
    /// Owners that must answer a read (R).
    #[arg(long, env = "GRIDKV_READ_QUORUM", value_name = "R")]
    pub read_quorum: Option<usize>,
    /// `strong` (default): W + R must exceed N, so reads see the latest
    /// acknowledged write. `eventual`: accept W + R <= N, where a read may
    /// miss an acknowledged write until repair.
    #[arg(long, env = "GRIDKV_CONSISTENCY", value_name = "strong|eventual")]
    pub consistency: Option<gridkv::Consistency>,
    /// Memory budget of the local store (`1073741824`, `512mb`, `1gb`);
    /// beyond it values are evicted.
    #[arg(long, env = "GRIDKV_MAX_MEMORY", value_name = "BYTES", value_parser = parse_bytes)]
    pub max_memory: Option<u64>,
    /// Most RESP clients connected at once; more are refused with an error.
    #[arg(long, env = "GRIDKV_MAX_CLIENTS", value_name = "N")]
    pub max_clients: Option<usize>,
    /// Cluster name: nodes of other clusters are refused.
    #[arg(long, env = "GRIDKV_CLUSTER", value_name = "NAME")]
    pub cluster: Option<String>,
    /// `strict`: other clients see a connection's pipelined commands take
    /// effect in the order sent, as with Redis. `relaxed`: pipelined writes
    /// on distinct keys run at once (faster) and may be seen out of order.
    #[arg(long, env = "GRIDKV_PIPELINE_ORDER", value_name = "ORDER", value_enum)]
    pub pipeline_order: Option<PipelineOrder>,
    /// Largest offset of this node's clock from the cluster's (`500ms`,
    /// `5s`, `1m`); beyond it the node coordinates no write until back.
    #[arg(long, env = "GRIDKV_MAX_CLOCK_OFFSET", value_name = "DURATION", value_parser = parse_duration)]
    pub max_clock_offset: Option<std::time::Duration>,
    /// TOML config file (keys as the flags, with `_` for `-`).
    #[arg(long, env = "GRIDKV_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    // Client limits (issue 15): what one RESP client may make the node hold.
    /// Most bytes in one RESP command, all arguments together (`512mb`).
    #[arg(long, env = "GRIDKV_MAX_COMMAND_BYTES", value_name = "BYTES", value_parser = parse_bytes)]
    pub max_command_bytes: Option<u64>,
    /// Most arguments in one RESP command (1048576).
    #[arg(long, env = "GRIDKV_MAX_COMMAND_ARGS", value_name = "N")]
    pub max_command_args: Option<usize>,
    /// Longest single argument (key or value) of a RESP command (default:
    /// twice the store's value limit, at least `8mb`).
    #[arg(long, env = "GRIDKV_MAX_BULK_BYTES", value_name = "BYTES", value_parser = parse_bytes)]
    pub max_bulk_bytes: Option<u64>,
    /// Longest inline (telnet-style) command (`64kb`).
    #[arg(long, env = "GRIDKV_MAX_INLINE_BYTES", value_name = "BYTES", value_parser = parse_bytes)]
    pub max_inline_bytes: Option<u64>,
    /// Most reply bytes one client may leave unread before it is closed
    /// (`64mb`).
    #[arg(long, env = "GRIDKV_MAX_CLIENT_OUTPUT", value_name = "BYTES", value_parser = parse_bytes)]
    pub max_client_output: Option<u64>,
    /// Most bytes all RESP clients may hold together (unparsed input and
    /// unread replies); past it the heaviest client is closed (`1gb`).
    #[arg(long, env = "GRIDKV_MAX_CLIENTS_MEMORY", value_name = "BYTES", value_parser = parse_bytes)]
    pub max_clients_memory: Option<u64>,

    // Security (issue 16).
    /// TLS, authentication and the admin token.
    #[command(flatten)]
    pub security: SecurityArgs,

    // Datacenters (issue 18).
    /// The rack and the default consistency levels.
    #[command(flatten)]
    pub topology: TopologyArgs,
}

/// The TOML config file. Unknown keys are an error, so a typo is not
/// silently ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`NodeArgs::id`].
    pub id: Option<String>,
    /// See [`NodeArgs::listen`].
    pub listen: Option<String>,
    /// See [`NodeArgs::advertise`].
    pub advertise: Option<String>,
    /// See [`NodeArgs::seeds`]: a list, or one comma-separated string.
    pub seeds: Option<Seeds>,
    /// See [`NodeArgs::resp`].
    pub resp: Option<String>,
    /// See [`NodeArgs::http`].
    pub http: Option<String>,
    /// See [`NodeArgs::dc`].
    pub dc: Option<String>,
    /// See [`NodeArgs::replicas`]: `3` or `"a:2,b:1"`.
    pub replicas: Option<ReplicasValue>,
    /// See [`TopologyArgs::rack`].
    pub rack: Option<String>,
    /// See [`TopologyArgs::write_consistency`]: `"local_quorum"`, ...
    pub write_consistency: Option<String>,
    /// See [`TopologyArgs::read_consistency`].
    pub read_consistency: Option<String>,
    /// See [`NodeArgs::write_quorum`].
    pub write_quorum: Option<usize>,
    /// See [`NodeArgs::read_quorum`].
    pub read_quorum: Option<usize>,
    /// See [`NodeArgs::consistency`]: `"strong"` or `"eventual"`.
    pub consistency: Option<String>,
    /// See [`NodeArgs::max_memory`]: a number of bytes or a string with a
    /// unit.
    pub max_memory: Option<Bytes>,
    /// See [`NodeArgs::max_clients`].
    pub max_clients: Option<usize>,
    /// See [`NodeArgs::cluster`].
    pub cluster: Option<String>,
    /// See [`NodeArgs::pipeline_order`]: `"strict"` or `"relaxed"`.
    pub pipeline_order: Option<PipelineOrder>,
    /// See [`NodeArgs::max_clock_offset`]: a string such as `"5s"`.
    pub max_clock_offset: Option<String>,

    // Client limits (issue 15).
    /// See [`NodeArgs::max_command_bytes`].
    pub max_command_bytes: Option<Bytes>,
    /// See [`NodeArgs::max_command_args`].
    pub max_command_args: Option<usize>,
    /// See [`NodeArgs::max_bulk_bytes`].
    pub max_bulk_bytes: Option<Bytes>,
    /// See [`NodeArgs::max_inline_bytes`].
    pub max_inline_bytes: Option<Bytes>,
    /// See [`NodeArgs::max_client_output`].
    pub max_client_output: Option<Bytes>,
    /// See [`NodeArgs::max_clients_memory`].
    pub max_clients_memory: Option<Bytes>,

    // Security (issue 16): see [`SecurityArgs`].
    /// See [`SecurityArgs::tls_ca`].
    pub tls_ca: Option<PathBuf>,
    /// See [`SecurityArgs::tls_cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`SecurityArgs::tls_key`].
    pub tls_key: Option<PathBuf>,
    /// See [`SecurityArgs::insecure`].
    pub insecure: Option<bool>,
    /// See [`SecurityArgs::requirepass`].
    pub requirepass: Option<String>,
    /// See [`SecurityArgs::acl_file`].
    pub acl_file: Option<PathBuf>,
    /// See [`SecurityArgs::resp_tls`].
    pub resp_tls: Option<bool>,
    /// See [`SecurityArgs::resp_tls_client_certs`].
    pub resp_tls_client_certs: Option<ClientCerts>,
    /// See [`SecurityArgs::admin_token`].
    pub admin_token: Option<String>,
    /// See [`SecurityArgs::admin_token_file`].
    pub admin_token_file: Option<PathBuf>,
    /// See [`SecurityArgs::http_tls`].
    pub http_tls: Option<bool>,
    /// See [`SecurityArgs::http_tls_cert`].
    pub http_tls_cert: Option<PathBuf>,
    /// See [`SecurityArgs::http_tls_key`].
    pub http_tls_key: Option<PathBuf>,
}

/// Seeds in a config file: `["a:1", "b:2"]` or `"a:1,b:2"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Seeds {
    /// A TOML array.
    List(Vec<String>),
    /// A comma-separated string.
    Joined(String),
}

impl Seeds {
    fn into_vec(self) -> Vec<String> {
        match self {
            Seeds::List(v) => v,
            Seeds::Joined(s) => split_list(&s),
        }
    }
}

/// A byte count in a config file: `1048576` or `"1mb"`.
#[derive(Debug, Clone)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Bytes(n)),
            Raw::S(s) => parse_bytes(&s).map(Bytes).map_err(serde::de::Error::custom),
        }
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses a byte count: digits with an optional unit `b`, `kb`, `mb`,
/// `gb`, `tb` (powers of 1024, as Redis reads `maxmemory`; `k`/`m`/`g`/`t`
/// and `kib`/`mib`/`gib`/`tib` also accepted), case-insensitive.
///
/// # Examples
///
/// ```
/// use gridkv_server::config::parse_bytes;
///
/// assert_eq!(parse_bytes("512mb"), Ok(512 << 20));
/// assert_eq!(parse_bytes("1GB"), Ok(1 << 30));
/// assert_eq!(parse_bytes("4096"), Ok(4096));
/// assert!(parse_bytes("lots").is_err());
/// ```
///
/// # Errors
///
/// A message saying what was expected.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "{s:?}: expected a byte count such as 1073741824, 512mb or 1gb"
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a byte count such as 1073741824, 512mb or 1gb"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?}: too large"))
}

/// Parses a duration: a whole number with a unit `ms`, `s`, `m` or `h`
/// (`500ms`, `5s`, `2m`, `1h`), case-insensitive, spaces allowed between.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use gridkv_server::config::parse_duration;
///
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
/// assert_eq!(parse_duration("1 h"), Ok(Duration::from_secs(3600)));
/// assert!(parse_duration("5").unwrap_err().contains("unit"));
/// ```
///
/// # Errors
///
/// A message naming the input and what was expected.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let expected = "expected a whole number with a unit ms, s, m or h, such as 500ms or 5s";
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let ms_per: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(format!("{s:?}: no unit; {expected}")),
        _ => return Err(format!("{s:?}: {expected}")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?}: {expected}"))?;
    n.checked_mul(ms_per)
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("{s:?}: too large"))
}

/// The resolved configuration of one `gridkv node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Node id.
    pub id: String,
    /// Cluster transport bind address.
    pub listen: String,
    /// Address peers dial.
    pub advertise: Option<String>,
    /// Seeds.
    pub seeds: Vec<String>,
    /// RESP bind address.
    pub resp: String,
    /// HTTP admin bind address.
    pub http: String,
    /// Datacenter.
    pub dc: String,
    /// Rack (empty: none).
    pub rack: String,
    /// N, in all or per datacenter.
    pub replicas: gridkv::ReplicaPlacement,
    /// W (when no write level is named).
    pub write_quorum: usize,
    /// R (when no read level is named).
    pub read_quorum: usize,
    /// The default write level, if named.
    pub write_consistency: Option<gridkv::ConsistencyLevel>,
    /// The default read level, if named.
    pub read_consistency: Option<gridkv::ConsistencyLevel>,
    /// Strong (W + R > N enforced) or, when asked for, eventual.
    pub consistency: gridkv::Consistency,
    /// Store memory budget in bytes.
    pub max_memory: u64,
    /// Most RESP clients at once.
    pub max_clients: usize,
    /// Cluster name.
    pub cluster: String,
    /// How pipelined commands may overlap.
    pub pipeline_order: PipelineOrder,
    /// The clock-offset bound, if not the library's default.
    pub max_clock_offset: Option<std::time::Duration>,

    // Client limits (issue 15).
    /// What one RESP client may make the node hold.
    pub client_limits: ClientLimits,

    // Security (issue 16).
    /// TLS, authentication and the admin token.
    pub security: SecurityConfig,
}

// Client limits (issue 15): kept apart from the settings above.

/// The bounds on RESP clients (see [`crate::limits::Limit`]).
///
/// # Examples
///
/// ```
/// use gridkv_server::config::ClientLimits;
///
/// let limits = ClientLimits::default();
/// assert_eq!(limits.max_command_args, 1 << 20);
/// // The bulk bound follows the store's value limit unless set.
/// assert_eq!(limits.resp(4 << 20).max_bulk, 8 << 20);
/// assert_eq!(limits.resp(16 << 20).max_bulk, 32 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// `--max-command-bytes`.
    pub max_command_bytes: u64,
    /// `--max-command-args`.
    pub max_command_args: usize,
    /// `--max-bulk-bytes` (`None`: twice the value limit, at least 8 MiB).
    pub max_bulk_bytes: Option<u64>,
    /// `--max-inline-bytes`.
    pub max_inline_bytes: u64,
    /// `--max-client-output`.
    pub max_client_output: u64,
    /// `--max-clients-memory`.
    pub max_clients_memory: u64,
}

impl Default for ClientLimits {
    fn default() -> Self {
        let parser = crate::resp::Limits::default();
        Self {
            max_command_bytes: parser.max_command as u64,
            max_command_args: parser.max_args,
            max_bulk_bytes: None,
            max_inline_bytes: parser.max_inline as u64,
            max_client_output: DEFAULT_MAX_CLIENT_OUTPUT,
            max_clients_memory: DEFAULT_MAX_CLIENTS_MEMORY,
        }
    }
}

impl ClientLimits {
    /// The parser's bounds, for a store whose values may be `max_value`
    /// bytes.
    pub fn resp(&self, max_value: usize) -> crate::resp::Limits {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        crate::resp::Limits {
            // A bulk may be twice the value limit before the parser refuses
            // to buffer it; between the two the store refuses it with a
            // clear error and the connection stays usable.
            max_bulk: self
                .max_bulk_bytes
                .map_or_else(|| max_value.saturating_mul(2).max(8 << 20), size),
            max_args: self.max_command_args,
            max_inline: size(self.max_inline_bytes),
            max_command: size(self.max_command_bytes),
        }
    }

    fn merge(args: &NodeArgs, file: &FileConfig) -> Self {
        let d = Self::default();
        let bytes = |flag: Option<u64>, key: &Option<Bytes>| flag.or(key.as_ref().map(|b| b.0));
        Self {
            max_command_bytes: bytes(args.max_command_bytes, &file.max_command_bytes)
                .unwrap_or(d.max_command_bytes),
            max_command_args: args
                .max_command_args
                .or(file.max_command_args)
                .unwrap_or(d.max_command_args),
            max_bulk_bytes: bytes(args.max_bulk_bytes, &file.max_bulk_bytes),
            max_inline_bytes: bytes(args.max_inline_bytes, &file.max_inline_bytes)
                .unwrap_or(d.max_inline_bytes),
            max_client_output: bytes(args.max_client_output, &file.max_client_output)
                .unwrap_or(d.max_client_output),
            max_clients_memory: bytes(args.max_clients_memory, &file.max_clients_memory)
                .unwrap_or(d.max_clients_memory),
        }
    }

    /// Refuses bounds no client could live with: a reply of one largest
    /// value must fit in the output bound, and that in the node's.
    fn check(&self, max_value: usize) -> Result<(), ConfigError> {
        let floor = |setting: &str, value: u64, min: u64, why: &str| {
            if value < min {
                Err(ConfigError::new(
                    setting,
                    format!("{value} is below {min}: {why}"),
                ))
            } else {
                Ok(())
            }
        };
        floor(
            "max_command_args",
            self.max_command_args as u64,
            2,
            "a command has a name and an argument",
        )?;
        floor(
            "max_inline_bytes",
            self.max_inline_bytes,
            16,
            "an inline command needs room",
        )?;
        floor(
            "max_command_bytes",
            self.max_command_bytes,
            1024,
            "a command needs room",
        )?;
        floor(
            "max_bulk_bytes",
            self.max_bulk_bytes.unwrap_or(u64::MAX),
            1024,
            "a key needs room",
        )?;
        floor(
            "max_client_output",
            self.max_client_output,
            max_value as u64 + (64 << 10),
            "a reply of the largest value (the store's value limit) must fit",
        )?;
        floor(
            "max_clients_memory",
            self.max_clients_memory,
            self.max_client_output,
            "one client's replies must fit in what all clients may hold",
        )
    }
}

/// A setting that is missing or invalid, named as flag, variable and file
/// key so whoever set it finds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} (--{flag}, {env}): {reason}", flag = setting.replace('_', "-"), env = format!("GRIDKV_{}", setting.to_ascii_uppercase()))]
pub struct ConfigError {
    /// The setting's config-file key (`write_quorum`, ...).
    pub setting: String,
    /// What is wrong.
    pub reason: String,
}

impl ConfigError {
    fn new(setting: &str, reason: impl Into<String>) -> Self {
        Self {
            setting: setting.to_owned(),
            reason: reason.into(),
        }
    }
}

impl ServerConfig {
    /// Loads the file named by `--config` (if any) and merges it under the
    /// flags and variables.
    ///
    /// # Errors
    ///
    /// [`ConfigError`]: an unreadable or invalid file, or an invalid value.
    pub fn load(args: NodeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| {
                    ConfigError::new("config", format!("{}: {}", path.display(), e.message()))
                })?
            }
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// Merges flags (and variables, which clap has already folded into
    /// them) over a parsed file, then checks the result.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first missing or invalid setting.
    pub fn merge(args: NodeArgs, file: FileConfig) -> Result<Self, ConfigError> {
        // Client limits (issue 15).
        let client_limits = ClientLimits::merge(&args, &file);
        // Security (issue 16).
        let security = SecurityConfig::merge(args.security.clone(), &file)?;
        // Datacenters (issue 18).
        let topology = topology::Topology::merge(&args, &file)?;
        let id = args.id.or(file.id).ok_or_else(|| {
            ConfigError::new("id", "required: every node needs a stable, unique id")
        })?;
        let config = ServerConfig {
            id,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:7380".into()),
            advertise: args.advertise.or(file.advertise),
            seeds: args
                .seeds
                .map(|v| {
                    v.into_iter()
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .or(file.seeds.map(Seeds::into_vec))
                .unwrap_or_default(),
            resp: args
                .resp
                .or(file.resp)
                .unwrap_or_else(|| "127.0.0.1:6380".into()),
            http: args
                .http
                .or(file.http)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            dc: args.dc.or(file.dc).unwrap_or_else(|| "default".into()),
            rack: topology.rack,
            replicas: topology.replicas,
            write_quorum: topology.write_quorum,
            read_quorum: topology.read_quorum,
            write_consistency: topology.write_consistency,
            read_consistency: topology.read_consistency,
            consistency: match (args.consistency, file.consistency) {
                (Some(c), _) => c,
                (None, Some(text)) => text
                    .parse()
                    .map_err(|reason: String| ConfigError::new("consistency", reason))?,
                (None, None) => gridkv::Consistency::Strong,
            },
            max_memory: args
                .max_memory
                .or(file.max_memory.map(|b| b.0))
                .unwrap_or(1 << 30),
            max_clients: args.max_clients.or(file.max_clients).unwrap_or(10_000),
            cluster: args
                .cluster
                .or(file.cluster)
                .unwrap_or_else(|| "gridkv".into()),
            pipeline_order: args
                .pipeline_order
                .or(file.pipeline_order)
                .unwrap_or_default(),
            max_clock_offset: match (args.max_clock_offset, file.max_clock_offset) {
                (Some(d), _) => Some(d),
                (None, Some(text)) => Some(
                    parse_duration(&text)
                        .map_err(|reason| ConfigError::new("max_clock_offset", reason))?,
                ),
                (None, None) => None,
            },
            client_limits,
            security,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        for (key, addr) in [("resp", &self.resp), ("http", &self.http)] {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|_| ConfigError::new(key, format!("{addr:?}: expected IP:PORT")))?;
        }
        if self.max_clients == 0 {
            return Err(ConfigError::new("max_clients", "must be at least 1"));
        }
        // Everything else is checked by the library's builder.
        let node = self.node_config()?;
        // Client limits (issue 15).
        self.client_limits.check(node.store.max_value_len)
    }

    /// The library config this server config describes.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting the library refused.
    pub fn node_config(&self) -> Result<gridkv::Config, ConfigError> {
        let replication = gridkv::ReplicationConfig {
            write_quorum: self.write_quorum,
            read_quorum: self.read_quorum,
            consistency: self.consistency,
            write_consistency: self.write_consistency,
            read_consistency: self.read_consistency,
            ..Default::default()
        }
        .with_placement(self.replicas.clone());
        let store = gridkv::store::StoreConfig {
            memory_budget: self.max_memory,
            ..Default::default()
        };
        let mut builder = gridkv::GridKv::builder(self.id.clone())
            .cluster(self.cluster.clone())
            .listen(self.listen.clone())
            .seeds(self.seeds.clone())
            .datacenter(self.dc.clone())
            .rack(self.rack.clone())
            .replication(replication)
            .store(store);
        if let Some(a) = &self.advertise {
            builder = builder.advertise(a.clone());
        }
        if let Some(bound) = self.max_clock_offset {
            builder = builder.max_clock_offset(bound);
        }
        if let Some(tls) = &self.security.tls {
            builder = builder.tls_files(gridkv::TlsFiles::new(&tls.ca, &tls.cert, &tls.key));
        }
        if self.security.insecure {
            builder = builder.insecure();
        }
        builder.build().map_err(|e| {
            if e.field == "tls" {
                // The library names its builder calls; name the flags.
                return ConfigError::new(
                    "tls_cert",
                    format!(
                        "{}; the flags: --tls-ca, --tls-cert and --tls-key (GRIDKV_TLS_CA, \
                         GRIDKV_TLS_CERT, GRIDKV_TLS_KEY), or --insecure (GRIDKV_INSECURE) \
                         for plaintext off loopback",
                        e.reason
                    ),
                );
            }
            let setting = match e.field {
                "node_id" => "id",
                "datacenter" => "dc",
                "memory_budget" => "max_memory",
                other => other,
            };
            ConfigError::new(setting, e.reason)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(id: &str) -> NodeArgs {
        NodeArgs {
            id: Some(id.into()),
            ..NodeArgs::default()
        }
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let file: FileConfig = toml::from_str(
            "id = \"from-file\"\nseeds = \"a:1, b:2\"\nreplicas = 5\nwrite_quorum = 3\nread_quorum = 3\ndc = \"eu\"",
        )
        .unwrap();
        let c = ServerConfig::merge(
            NodeArgs {
                replicas: Some(gridkv::ReplicaPlacement::Total(4)),
                ..args("from-flag")
            },
            file,
        )
        .unwrap();
        assert_eq!(c.id, "from-flag");
        assert_eq!(c.replicas, gridkv::ReplicaPlacement::Total(4));
        assert_eq!(c.write_quorum, 3);
        assert_eq!(c.seeds, vec!["a:1", "b:2"]);
        assert_eq!(c.dc, "eu");
        assert_eq!(c.cluster, "gridkv");
        assert_eq!(c.pipeline_order, PipelineOrder::Strict);
        let file: FileConfig = toml::from_str("pipeline_order = \"relaxed\"").unwrap();
        let c = ServerConfig::merge(args("n"), file).unwrap();
        assert_eq!(c.pipeline_order, PipelineOrder::Relaxed);
        assert!(toml::from_str::<FileConfig>("pipeline_order = \"loose\"").is_err());
    }

    #[test]
    fn errors_name_the_setting() {
        let e = ServerConfig::merge(NodeArgs::default(), FileConfig::default()).unwrap_err();
        assert_eq!(e.setting, "id");
        let e = ServerConfig::merge(
            NodeArgs {
                write_quorum: Some(4),
                ..args("n")
            },
            FileConfig::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "write_quorum");
        assert!(e.to_string().contains("--write-quorum"), "{e}");
        assert!(e.to_string().contains("GRIDKV_WRITE_QUORUM"), "{e}");
        let e = ServerConfig::merge(
            NodeArgs {
                resp: Some("localhost".into()),
                ..args("n")
            },
            FileConfig::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "resp");
        let e = ServerConfig::merge(
            NodeArgs {
                seeds: Some(vec!["nowhere".into()]),
                ..args("n")
            },
            FileConfig::default(),
        )
        .unwrap_err();
        assert_eq!(e.setting, "seeds");
        let e = ServerConfig::merge(args("bad id"), FileConfig::default()).unwrap_err();
        assert_eq!(e.setting, "id");
    }

    #[test]
    fn weak_quorums_need_consistency_eventual() {
        let weak = || NodeArgs {
            replicas: Some(gridkv::ReplicaPlacement::Total(3)),
            write_quorum: Some(1),
            read_quorum: Some(2),
            ..args("n")
        };
        let e = ServerConfig::merge(weak(), FileConfig::default()).unwrap_err();
        assert_eq!(e.setting, "consistency");
        let text = e.to_string();
        assert!(text.contains("W=1 + R=2 <= N=3"), "{text}");
        assert!(text.contains("--consistency"), "{text}");
        let c = ServerConfig::merge(
            NodeArgs {
                consistency: Some(gridkv::Consistency::Eventual),
                ..weak()
            },
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.consistency, gridkv::Consistency::Eventual);
        let file: FileConfig = toml::from_str("consistency = \"eventual\"").unwrap();
        let c = ServerConfig::merge(weak(), file).unwrap();
        assert_eq!(
            c.node_config().unwrap().replication.consistency,
            gridkv::Consistency::Eventual
        );
        let file: FileConfig = toml::from_str("consistency = \"maybe\"").unwrap();
        let e = ServerConfig::merge(args("n"), file).unwrap_err();
        assert_eq!(e.setting, "consistency");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let e = toml::from_str::<FileConfig>("id = \"n\"\nreplicaz = 3").unwrap_err();
        assert!(e.to_string().contains("replicaz"), "{e}");
    }

    #[test]
    fn clock_offset_bound_from_flag_file_or_default() {
        use std::time::Duration;
        let file: FileConfig = toml::from_str(r#"max_clock_offset = "250ms""#).unwrap();
        let config = ServerConfig::merge(args("n1"), file.clone()).unwrap();
        assert_eq!(config.max_clock_offset, Some(Duration::from_millis(250)));
        assert_eq!(
            config.node_config().unwrap().max_clock_offset,
            Duration::from_millis(250)
        );
        let flag = NodeArgs {
            max_clock_offset: Some(Duration::from_secs(2)),
            ..args("n1")
        };
        let config = ServerConfig::merge(flag, file).unwrap();
        assert_eq!(config.max_clock_offset, Some(Duration::from_secs(2)));
        let config = ServerConfig::merge(args("n1"), FileConfig::default()).unwrap();
        assert_eq!(config.max_clock_offset, None);
        assert_eq!(
            config.node_config().unwrap().max_clock_offset,
            gridkv::GridKv::builder("n1")
                .build()
                .unwrap()
                .max_clock_offset
        );
        // A bad file value and a zero bound name the setting.
        let bad: FileConfig = toml::from_str(r#"max_clock_offset = "soon""#).unwrap();
        let err = ServerConfig::merge(args("n1"), bad).unwrap_err();
        assert_eq!(err.setting, "max_clock_offset");
        assert!(err.to_string().contains("--max-clock-offset"), "{err}");
        let zero = NodeArgs {
            max_clock_offset: Some(Duration::ZERO),
            ..args("n1")
        };
        let err = ServerConfig::merge(zero, FileConfig::default()).unwrap_err();
        assert_eq!(err.setting, "max_clock_offset");
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        for (text, want) in [
            ("500ms", Duration::from_millis(500)),
            ("5s", Duration::from_secs(5)),
            ("5S", Duration::from_secs(5)),
            (" 2 m ", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "5",
            "s",
            "-1s",
            "1.5s",
            "5 sec",
            "5d",
            "99999999999999999999h",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.starts_with(&format!("{bad:?}")), "{bad}: {err}");
        }
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("18446744073709551615h")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("2k"), Ok(2048));
        assert_eq!(parse_bytes("3 MiB"), Ok(3 << 20));
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("-1mb").is_err());
        assert!(parse_bytes("99999999999tb").is_err());
        let f: FileConfig = toml::from_str("max_memory = 1024").unwrap();
        assert_eq!(f.max_memory.unwrap().0, 1024);
        let f: FileConfig = toml::from_str("max_memory = \"1kb\"").unwrap();
        assert_eq!(f.max_memory.unwrap().0, 1024);
    }

    // Client limits (issue 15).
    #[test]
    fn client_limits_merge_and_are_checked() {
        let c = ServerConfig::merge(args("n"), FileConfig::default()).unwrap();
        assert_eq!(c.client_limits, ClientLimits::default());
        assert_eq!(c.client_limits.resp(4 << 20).max_command, 512 << 20);
        let file: FileConfig =
            toml::from_str("max_command_bytes = \"2mb\"\nmax_clients_memory = \"2gb\"").unwrap();
        let c = ServerConfig::merge(
            NodeArgs {
                max_command_bytes: Some(3 << 20),
                max_bulk_bytes: Some(1 << 20),
                ..args("n")
            },
            file,
        )
        .unwrap();
        let limits = c.client_limits;
        assert_eq!(limits.max_command_bytes, 3 << 20, "the flag wins");
        assert_eq!(limits.max_clients_memory, 2 << 30);
        assert_eq!(limits.resp(4 << 20).max_bulk, 1 << 20);
        for (flags, setting) in [
            (
                NodeArgs {
                    max_client_output: Some(1 << 20),
                    ..args("n")
                },
                "max_client_output",
            ),
            (
                NodeArgs {
                    max_clients_memory: Some(32 << 20),
                    ..args("n")
                },
                "max_clients_memory",
            ),
            (
                NodeArgs {
                    max_command_args: Some(1),
                    ..args("n")
                },
                "max_command_args",
            ),
        ] {
            let e = ServerConfig::merge(flags, FileConfig::default()).unwrap_err();
            assert_eq!(e.setting, setting, "{e}");
        }
    }
}
