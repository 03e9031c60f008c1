//! Why a transport operation failed: [`TransportError`], and what each
//! case says about whether the peer acted on a request.

use std::time::Duration;

use super::handshake::HandshakeError;
use super::queue::Limit;
use crate::config_error::ConfigError;

/// Why a transport operation failed.
///
/// A request that failed with [`Timeout`](TransportError::Timeout) or
/// [`ConnectionLost`](TransportError::ConnectionLost) may still have reached
/// the peer and been acted on: the outcome is unknown. The other errors mean
/// it was not delivered.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use gridkv::net::{Lane, Transport, TransportConfig, TransportError};
/// use gridkv::{Generation, NodeId};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let config = TransportConfig::new("demo", NodeId::new("a").unwrap(), Generation::new(1));
/// let (a, _incoming) = Transport::bind(config).await.unwrap();
/// // Nothing listens on port 1: the dial fails, and the link backs off.
/// match a.request("127.0.0.1:1", Lane::Data, Bytes::from_static(b"x")).await {
///     Err(TransportError::Unreachable { peer, .. }) => assert_eq!(peer, "127.0.0.1:1"),
///     other => panic!("expected unreachable, got {other:?}"),
/// }
/// a.shutdown().await;
/// # });
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No answer within the request's timeout.
    #[error("request to {peer} timed out after {after:?}")]
    Timeout {
        /// The peer's address.
        peer: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The connection broke while the request was pending.
    #[error("connection to {peer} lost: {reason}")]
    ConnectionLost {
        /// The peer's address.
        peer: String,
        /// How it broke.
        reason: String,
    },
    /// The peer could not be dialled; the transport waits `retry_in` before
    /// dialling again, and fails requests at once meanwhile.
    #[error("{peer} unreachable: {reason} (next dial in {retry_in:?})")]
    Unreachable {
        /// The peer's address.
        peer: String,
        /// Why the last dial failed.
        reason: String,
        /// Time left before the next dial.
        retry_in: Duration,
    },
    /// The peer answered the handshake with a refusal, or its handshake
    /// could not be read.
    #[error("handshake with {peer} failed: {error}")]
    Handshake {
        /// The peer's address.
        peer: String,
        /// What went wrong, in the words both sides log.
        error: HandshakeError,
    },
    /// A local bound is full; nothing was sent.
    #[error("backpressure: {limit} to {peer} at its limit")]
    Backpressure {
        /// The peer's address.
        peer: String,
        /// Which bound.
        limit: Limit,
    },
    /// Links to [`TransportConfig::max_links`](super::TransportConfig::max_links)
    /// peer addresses are open already: no link to this one was opened and
    /// nothing was sent. Links to other addresses keep working.
    #[error("no link to {peer}: {max} peer addresses have links already (max_links)")]
    TooManyLinks {
        /// The address refused a link.
        peer: String,
        /// The bound.
        max: usize,
    },
    /// The peer's inbound limits were full; its application never saw the
    /// request.
    #[error("{peer} is overloaded and refused the request")]
    Overloaded {
        /// The peer's address.
        peer: String,
    },
    /// The peer's application dropped the request without answering.
    #[error("{peer} dropped the request without answering")]
    NoAnswer {
        /// The peer's address.
        peer: String,
    },
    /// The peer answered with an error code this version does not know.
    #[error("{peer} answered with unknown error code {code}")]
    Remote {
        /// The peer's address.
        peer: String,
        /// The code.
        code: u16,
    },
    /// The message cannot fit in one frame.
    #[error("message of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// The frame's length, header included.
        len: usize,
        /// The frame limit.
        max: usize,
    },
    /// The transport is shutting down (or has shut down).
    #[error("transport is shutting down")]
    ShuttingDown,
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's reason.
        reason: String,
    },
}
