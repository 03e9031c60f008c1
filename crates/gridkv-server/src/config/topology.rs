//! The datacenter flags of `gridkv node`: the rack, how many copies each
//! datacenter holds (`--replicas a:2,b:1`), and the default consistency
//! levels.
//!
//! | flag | variable | file key | default |
//! |---|---|---|---|
//! | `--rack` | `GRIDKV_RACK` | `rack` | none |
//! | `--write-consistency` | `GRIDKV_WRITE_CONSISTENCY` | `write_consistency` | `local_quorum` with copies per datacenter, else W |
//! | `--read-consistency` | `GRIDKV_READ_CONSISTENCY` | `read_consistency` | `local_quorum` with copies per datacenter, else R |
//!
//! `--replicas` (in [`NodeArgs`](super::NodeArgs)) takes a count (`3`, on
//! any members) or counts per datacenter (`a:2,b:1`); with the latter,
//! `--write-quorum` and `--read-quorum` are refused: quorums are named by
//! levels.

use clap::Args;
use gridkv::{ConsistencyLevel, ReplicaPlacement};
use serde::Deserialize;

use super::{ConfigError, FileConfig, NodeArgs};

/// The datacenter flags, flattened into [`NodeArgs`].
#[derive(Debug, Clone, Default, Args)]
pub struct TopologyArgs {
    /// Rack or zone label: a key's copies in one datacenter go to
    /// distinct racks when the members name enough of them.
    #[arg(long, env = "GRIDKV_RACK", value_name = "NAME")]
    pub rack: Option<String>,
    /// Consistency level of writes that name none: `one`, `local_one`,
    /// `local_quorum`, `quorum`, `each_quorum` or `all`.
    #[arg(long, env = "GRIDKV_WRITE_CONSISTENCY", value_name = "LEVEL")]
    pub write_consistency: Option<ConsistencyLevel>,
    /// Consistency level of reads that name none (any but `each_quorum`).
    #[arg(long, env = "GRIDKV_READ_CONSISTENCY", value_name = "LEVEL")]
    pub read_consistency: Option<ConsistencyLevel>,
}

/// `replicas` in the config file: `3` or `"a:2,b:1"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ReplicasValue {
    /// A count, on any members.
    Count(usize),
    /// `"3"` or per-datacenter counts, `"a:2,b:1"`.
    Text(String),
}

/// The datacenter settings resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Topology {
    pub(super) rack: String,
    pub(super) replicas: ReplicaPlacement,
    pub(super) write_quorum: usize,
    pub(super) read_quorum: usize,
    pub(super) write_consistency: Option<ConsistencyLevel>,
    pub(super) read_consistency: Option<ConsistencyLevel>,
}

impl Topology {
    /// Merges the flags over the file.
    pub(super) fn merge(args: &NodeArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let replicas = match (&args.replicas, &file.replicas) {
            (Some(r), _) => r.clone(),
            (None, Some(ReplicasValue::Count(n))) => ReplicaPlacement::Total(*n),
            (None, Some(ReplicasValue::Text(text))) => text
                .parse()
                .map_err(|reason: String| ConfigError::new("replicas", reason))?,
            (None, None) => ReplicaPlacement::Total(3),
        };
        let level =
            |flag: Option<ConsistencyLevel>, key: &Option<String>, name: &'static str| match (
                flag, key,
            ) {
                (Some(l), _) => Ok(Some(l)),
                (None, Some(text)) => text
                    .parse()
                    .map(Some)
                    .map_err(|reason: String| ConfigError::new(name, reason)),
                (None, None) => Ok(None),
            };
        let t = &args.topology;
        let write_consistency = level(
            t.write_consistency,
            &file.write_consistency,
            "write_consistency",
        )?;
        let read_consistency = level(
            t.read_consistency,
            &file.read_consistency,
            "read_consistency",
        )?;
        let write_quorum = args.write_quorum.or(file.write_quorum);
        let read_quorum = args.read_quorum.or(file.read_quorum);
        for (key, numeric, named) in [
            ("write_quorum", write_quorum, write_consistency.is_some()),
            ("read_quorum", read_quorum, read_consistency.is_some()),
        ] {
            if numeric.is_none() {
                continue;
            }
            if replicas.is_per_datacenter() {
                return Err(ConfigError::new(
                    key,
                    "with copies per datacenter (--replicas a:2,b:1), quorums are named by \
                     levels: use --write-consistency and --read-consistency",
                ));
            }
            if named {
                return Err(ConfigError::new(
                    key,
                    "give a numeric quorum or a consistency level, not both",
                ));
            }
        }
        Ok(Topology {
            rack: t
                .rack
                .clone()
                .or_else(|| file.rack.clone())
                .unwrap_or_default(),
            replicas,
            write_quorum: write_quorum.unwrap_or(2),
            read_quorum: read_quorum.unwrap_or(2),
            write_consistency,
            read_consistency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::ServerConfig;
    use super::*;

    fn merge(args: NodeArgs, file: &str) -> Result<ServerConfig, ConfigError> {
        let args = NodeArgs {
            id: Some("n1".into()),
            ..args
        };
        ServerConfig::merge(args, toml::from_str(file).unwrap())
    }

    #[test]
    fn per_datacenter_copies_name_levels_not_numbers() {
        let c = merge(
            NodeArgs::default(),
            "replicas = \"a:2,b:1\"\ndc = \"a\"\nrack = \"r1\"",
        )
        .unwrap();
        assert_eq!(c.replicas.to_string(), "a:2,b:1");
        assert_eq!(c.rack, "r1");
        let node = c.node_config().unwrap();
        assert_eq!(node.replication.replicas, 3);
        assert_eq!(
            node.replication.write_consistency,
            Some(ConsistencyLevel::LocalQuorum)
        );
        let numeric = NodeArgs {
            write_quorum: Some(2),
            replicas: Some("a:2,b:1".parse().unwrap()),
            ..NodeArgs::default()
        };
        assert_eq!(merge(numeric, "").unwrap_err().setting, "write_quorum");
        let weak = "dc = \"a\"\nreplicas = \"a:2,b:1\"\nwrite_consistency = \"local_one\"\nread_consistency = \"LOCAL_ONE\"";
        assert_eq!(
            merge(NodeArgs::default(), weak).unwrap_err().setting,
            "consistency"
        );
        let each_read = "dc = \"a\"\nreplicas = \"a:2,b:1\"\nread_consistency = \"each_quorum\"";
        assert_eq!(
            merge(NodeArgs::default(), each_read).unwrap_err().setting,
            "read_consistency"
        );
        assert_eq!(
            merge(NodeArgs::default(), "replicas = \"a:0\"")
                .unwrap_err()
                .setting,
            "replicas"
        );
        // A datacenter holding no copies cannot serve local levels; it may
        // coordinate at others.
        let elsewhere = "dc = \"c\"\nreplicas = \"a:2,b:1\"";
        assert_eq!(
            merge(NodeArgs::default(), elsewhere).unwrap_err().setting,
            "dc"
        );
        let coordinator = "dc = \"c\"\nreplicas = \"a:2,b:1\"\nwrite_consistency = \"quorum\"\nread_consistency = \"quorum\"";
        assert!(merge(NodeArgs::default(), coordinator).is_ok());
        // A total places copies without regard to datacenters: local
        // levels are refused.
        let local_total = "write_consistency = \"local_quorum\"\nread_consistency = \"quorum\"";
        assert_eq!(
            merge(NodeArgs::default(), local_total).unwrap_err().setting,
            "consistency"
        );
        // One datacenter: a count, levels or numbers, not both.
        let c = merge(
            NodeArgs::default(),
            "replicas = 5\nwrite_consistency = \"quorum\"\nread_consistency = \"quorum\"",
        )
        .unwrap();
        assert_eq!(c.replicas, ReplicaPlacement::Total(5));
        let both = "write_quorum = 2\nwrite_consistency = \"quorum\"";
        assert_eq!(
            merge(NodeArgs::default(), both).unwrap_err().setting,
            "write_quorum"
        );
    }
}
