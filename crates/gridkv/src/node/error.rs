//! Why a node's life steps fail: [`StartError`] from
//! [`GridKv::start`](crate::GridKv::start), [`JoinError`] from
//! [`GridKv::joined`](crate::GridKv::joined). Kept apart from the config: a
//! bad config is one cause of a failed start among others (the transport's
//! bind), and a join fails for reasons no config check can see.

use crate::config_error::ConfigError;
use crate::id::NodeId;
use crate::net::TransportError;

/// Why [`GridKv::start`](crate::GridKv::start) failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The transport could not bind its listen address.
    #[error("cannot start the transport: {0}")]
    Transport(#[from] TransportError),
}

/// Why a node did not join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// A live member already uses this node's id; the node has stopped.
    #[error("node id {id} is already used by the live member at {holder}")]
    DuplicateId {
        /// This node's id.
        id: NodeId,
        /// The address of the member holding it.
        holder: String,
    },
    /// The node was shut down before it joined.
    #[error("the node shut down before joining")]
    ShuttingDown,
}
