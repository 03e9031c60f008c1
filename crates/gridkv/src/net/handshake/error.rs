//! Why a handshake failed: [`RefusalReason`], what a refusing node sends,
//! and [`HandshakeError`], what either side logs; each worded from the side
//! that reads it.

use std::fmt;

use crate::{Generation, NodeId, NodeIdError};

/// A peer claimed another node id than the one its TLS certificate names
/// (boxed in [`RefusalReason`] and [`HandshakeError`]: two ids would make
/// every handshake result large).
///
/// # Examples
///
/// ```
/// use gridkv::net::handshake::IdMismatch;
/// use gridkv::NodeId;
///
/// let ids = IdMismatch::boxed(NodeId::new("y")?, NodeId::new("x")?);
/// assert_eq!((ids.certified.as_str(), ids.claimed.as_str()), ("y", "x"));
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMismatch {
    /// The id the peer's certificate names.
    pub certified: NodeId,
    /// The id its handshake claimed.
    pub claimed: NodeId,
}

impl IdMismatch {
    /// The pair, boxed as the error variants hold it.
    pub fn boxed(certified: NodeId, claimed: NodeId) -> Box<IdMismatch> {
        Box::new(IdMismatch { certified, claimed })
    }
}

/// Why a node refused a peer's `Hello`.
///
/// Displayed from the refusing node's side ("we" is the refuser); the
/// refused node sees it as [`HandshakeError::Refused`], which words it from
/// its own side.
///
/// # Examples
///
/// ```
/// use gridkv::net::handshake::{HandshakeError, RefusalReason};
///
/// let reason = RefusalReason::VersionMismatch { ours: 1, theirs: 2 };
/// assert_eq!(reason.to_string(), "protocol version mismatch: we speak 1, peer speaks 2");
/// assert_eq!(
///     HandshakeError::Refused(reason).to_string(),
///     "refused by peer: protocol version mismatch: peer speaks 1, we speak 2"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusalReason {
    /// The hello did not start with `MAGIC`.
    #[error("bad magic: not a GridKV peer")]
    BadMagic,
    /// The peers speak different protocol versions.
    #[error("protocol version mismatch: we speak {ours}, peer speaks {theirs}")]
    VersionMismatch {
        /// The refusing node's version.
        ours: u16,
        /// The refused node's version.
        theirs: u16,
    },
    /// The peers belong to different clusters.
    #[error("cluster name mismatch: expected {expected}, got {got}")]
    ClusterMismatch {
        /// The refusing node's cluster.
        expected: String,
        /// The cluster the refused node named.
        got: String,
    },
    /// The hello's node id is not a valid [`NodeId`]. The id itself is not
    /// echoed: the sender knows it, and it may be arbitrary bytes.
    #[error("invalid node id: {0}")]
    InvalidNodeId(NodeIdError),
    /// The peer claims the refusing node's own id, from another run.
    #[error("duplicate node id: {node_id} is this node (generation {ours}), the peer claims it with generation {theirs}")]
    DuplicateNodeId {
        /// The contested id: the refusing node's.
        node_id: NodeId,
        /// The refusing node's generation.
        ours: Generation,
        /// The generation the refused node named.
        theirs: Generation,
    },
    /// The peer is the refusing node itself (same id and generation).
    #[error("connection to self: the peer is this node")]
    SelfConnection,
    /// The hello could not be decoded. No detail travels: a correct peer's
    /// encoder never produces such a message, and the refusing node logs the
    /// [`HandshakeError`] itself.
    #[error("malformed hello: the handshake message could not be decoded")]
    MalformedHello,
    /// The hello claims another node id than the one the peer's TLS
    /// certificate names.
    #[error("identity mismatch: the peer's certificate names {}, its hello claims {}", .0.certified, .0.claimed)]
    IdentityMismatch(Box<IdMismatch>),
    /// A reason added by a later protocol version, known only by its code.
    #[error("refused for a reason this version does not know (code {code}); the peer runs a newer GridKV")]
    Unknown {
        /// The reason's wire code.
        code: u16,
    },
}

impl RefusalReason {
    /// This reason worded from the refused node's side.
    fn as_seen_by_peer(&self) -> PeerView<'_> {
        PeerView(self)
    }
}

/// A [`RefusalReason`] displayed from the refused node's side: "we" is the
/// node that was refused.
struct PeerView<'a>(&'a RefusalReason);

impl fmt::Display for PeerView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            RefusalReason::BadMagic => {
                f.write_str("bad magic: the peer did not recognise us as a GridKV node")
            }
            RefusalReason::VersionMismatch { ours, theirs } => write!(
                f,
                "protocol version mismatch: peer speaks {ours}, we speak {theirs}"
            ),
            RefusalReason::ClusterMismatch { expected, got } => write!(
                f,
                "cluster name mismatch: expected {expected}, got {got}"
            ),
            RefusalReason::InvalidNodeId(error) => write!(f, "our node id is invalid: {error}"),
            RefusalReason::DuplicateNodeId {
                node_id,
                ours,
                theirs,
            } => write!(
                f,
                "duplicate node id: {node_id} is already running (generation {ours}); we are generation {theirs}"
            ),
            RefusalReason::SelfConnection => {
                f.write_str("connection to self: we dialled our own address")
            }
            RefusalReason::IdentityMismatch(ids) => write!(
                f,
                "identity mismatch: our certificate names {}, our hello claimed {}",
                ids.certified, ids.claimed
            ),
            other => fmt::Display::fmt(other, f),
        }
    }
}

/// Why a handshake message could not be encoded or decoded, or why the peer
/// refused us. Every case ends the connection.
///
/// # Examples
///
/// ```
/// use gridkv::net::handshake::{HandshakeError, Hello, RefusalReason};
///
/// let error = Hello::decode(b"SSH-2.0-OpenSSH").unwrap_err();
/// assert_eq!(error.to_string(), "bad magic: not a GridKV peer");
/// // What to tell the peer before closing:
/// assert_eq!(error.refusal(), Some(RefusalReason::BadMagic));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The message did not start with `MAGIC`.
    #[error("bad magic: not a GridKV peer")]
    BadMagic,
    /// The peer's hello is of another protocol version.
    #[error("protocol version mismatch: we speak {ours}, peer speaks {theirs}")]
    VersionMismatch {
        /// Our `PROTOCOL_VERSION`.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// The message does not decode (truncated, bad varint, invalid UTF-8,
    /// not canonical, ...).
    #[error("malformed handshake message: {detail}")]
    Malformed {
        /// What the decoder found wrong.
        detail: String,
    },
    /// The message continues after its last field.
    #[error("handshake message has {count} trailing bytes")]
    TrailingBytes {
        /// How many bytes follow the message.
        count: usize,
    },
    /// A field is longer than its limit.
    #[error("{field} is {len} bytes long, the maximum is {max}")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length, in bytes.
        len: usize,
        /// Its limit, in bytes.
        max: usize,
    },
    /// A name that ends up in log messages contains a control character.
    #[error("{field} contains a control character")]
    ControlCharacter {
        /// Which field.
        field: &'static str,
    },
    /// The accepting peer's reply names an invalid node id.
    #[error("peer's node id is invalid: {0}")]
    InvalidNodeId(NodeIdError),
    /// The peer refused our hello.
    #[error("refused by peer: {}", .0.as_seen_by_peer())]
    Refused(RefusalReason),
    /// The TLS handshake failed (no certificate, one from an untrusted CA,
    /// expired, naming no node, a plaintext peer), or TLS failed during
    /// our handshake.
    #[error("TLS: {detail}")]
    Tls {
        /// What rustls or the certificate check said.
        detail: String,
    },
    /// The peer's handshake claims another node id than its TLS
    /// certificate names.
    #[error("identity mismatch: the peer's certificate names {}, its handshake claims {}", .0.certified, .0.claimed)]
    IdentityMismatch(Box<IdMismatch>),
}

impl HandshakeError {
    /// The refusal to send to the peer whose hello failed to decode with
    /// this error, or `None` for [`HandshakeError::Refused`] (a refusal is
    /// never answered) and [`HandshakeError::Tls`] (no channel is left to
    /// answer on).
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::handshake::{HandshakeError, Hello, RefusalReason};
    ///
    /// let error = Hello::decode(b"GKV1\x02").unwrap_err();
    /// assert_eq!(
    ///     error.refusal(),
    ///     Some(RefusalReason::VersionMismatch { ours: 1, theirs: 2 })
    /// );
    /// ```
    pub fn refusal(&self) -> Option<RefusalReason> {
        match self {
            HandshakeError::BadMagic => Some(RefusalReason::BadMagic),
            HandshakeError::VersionMismatch { ours, theirs } => {
                Some(RefusalReason::VersionMismatch {
                    ours: *ours,
                    theirs: *theirs,
                })
            }
            HandshakeError::InvalidNodeId(error) => {
                Some(RefusalReason::InvalidNodeId(error.clone()))
            }
            HandshakeError::Malformed { .. }
            | HandshakeError::TrailingBytes { .. }
            | HandshakeError::FieldTooLong { .. }
            | HandshakeError::ControlCharacter { .. } => Some(RefusalReason::MalformedHello),
            HandshakeError::IdentityMismatch(ids) => {
                Some(RefusalReason::IdentityMismatch(ids.clone()))
            }
            HandshakeError::Refused(_) | HandshakeError::Tls { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::handshake::Hello;

    #[test]
    fn decoding_errors_map_to_the_refusal_to_send() {
        assert_eq!(
            Hello::decode(b"nope").unwrap_err().refusal(),
            Some(RefusalReason::BadMagic)
        );
        let mut bytes = Hello::new("prod", NodeId::new("node-1").unwrap(), Generation::new(100))
            .encode()
            .unwrap();
        bytes.push(1);
        assert_eq!(
            Hello::decode(&bytes).unwrap_err().refusal(),
            Some(RefusalReason::MalformedHello)
        );
        assert_eq!(
            HandshakeError::Refused(RefusalReason::SelfConnection).refusal(),
            None
        );
    }
}
