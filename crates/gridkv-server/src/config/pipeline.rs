//! `--pipeline-order`: how a connection's pipelined commands may overlap.

/// How the pipelined commands of one connection may overlap (`gridkv node
/// --pipeline-order`). Replies always come back in the order sent; this
/// decides when each command's effects may become visible to other
/// clients.
///
/// Only clusters with more than one copy overlap commands at all (each
/// waits for the network); a one-copy node answers from its store at once
/// and runs every command in turn.
///
/// # Examples
///
/// ```
/// use gridkv_server::config::PipelineOrder;
///
/// assert_eq!(PipelineOrder::default(), PipelineOrder::Strict);
/// let relaxed: PipelineOrder = toml::from_str::<toml::Value>("o = \"relaxed\"").unwrap()["o"]
///     .clone()
///     .try_into()
///     .unwrap();
/// assert_eq!(relaxed, PipelineOrder::Relaxed);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PipelineOrder {
    /// As Redis, and as the same commands sent one by one: a command's
    /// effects become visible to other clients only after those of every
    /// command before it on the connection. A write starts once every
    /// earlier command has finished; consecutive single-key reads of
    /// distinct keys run together, after every earlier write has finished.
    #[default]
    Strict,
    /// Single-key commands on distinct keys run together, writes included:
    /// faster for pipelined writes, but another client may see a later
    /// write of the pipeline before an earlier one (a flag before the data
    /// it announces). Commands on one key keep their order.
    Relaxed,
}
