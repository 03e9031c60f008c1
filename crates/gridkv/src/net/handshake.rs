//! The handshake: the first message each way on a new connection.
//!
//! The dialling node sends a [`Hello`] saying what it is (magic bytes,
//! protocol version, cluster name, node id, generation); the accepting node
//! checks it with [`check_hello`] and answers with a [`HelloReply`]: either
//! [`Accepted`](HelloReply::Accepted) with its own identity, or
//! [`Refused`](HelloReply::Refused) with a typed [`RefusalReason`] that both
//! sides can log in the same words ("cluster name mismatch: expected prod,
//! got test"). Until the reply, the connection runs under
//! [`PRE_HANDSHAKE_MAX_FRAME`](super::frame::PRE_HANDSHAKE_MAX_FRAME); both
//! messages always fit in it.
//!
//! Like the framing, this is sans-IO: messages are encoded to and decoded
//! from byte slices (one frame's payload each) and the rules are pure
//! functions, so every rule is tested without a socket.
//!
//! # Encoding
//!
//! Both messages begin with the four [`MAGIC`] bytes, then postcard. A
//! [`Hello`] continues with its protocol version, so a node can tell a
//! stranger ("bad magic: not a GridKV peer") and a newer or older GridKV
//! ("protocol version mismatch") apart before parsing anything whose layout
//! may differ between versions. Decoding borrows the strings from the input,
//! checks their lengths, and only then copies them, so it never allocates
//! more than the input's size; it accepts exactly one encoding of each value
//! (no trailing bytes, no over-long varints), so a decoded `Hello` re-encodes
//! to the very bytes received.
//!
//! The [`HelloReply`] layout must stay decodable by every protocol version,
//! because a node has to understand a refusal from a node that speaks a
//! different version. That is why a refusal travels as a numeric code plus a
//! length-prefixed body: a reason added by a later version decodes here as
//! [`RefusalReason::Unknown`] instead of failing.
//!
//! # Room for authentication
//!
//! Both [`Hello`] and [`HelloReply::Accepted`] carry an `auth` field: opaque
//! bytes, at most [`MAX_AUTH_LEN`], empty for now. The security work will
//! define what goes in it (for example a key id, a nonce and a signature)
//! without changing the layout around it, so adding authentication needs no
//! protocol version bump. Opaque bytes were chosen over a typed
//! `Option<AuthField>`: postcard is not self-describing, so a typed field
//! would freeze its shape today, before anyone knows what it must hold.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Generation, NodeId, NodeIdError};

/// The first four bytes of every handshake message: "GKV1".
pub const MAGIC: [u8; 4] = *b"GKV1";

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Longest cluster name, in bytes.
pub const MAX_CLUSTER_NAME_LEN: usize = 64;

/// Longest `auth` field, in bytes: room for a certificate-free scheme (key
/// id, nonce, signature) with margin, while a whole handshake message stays
/// under a third of the pre-handshake frame limit.
pub const MAX_AUTH_LEN: usize = 1024;

/// The largest encoded [`Hello`]: magic, version varint, and each bounded
/// field with its varint length, plus the generation varint.
const MAX_HELLO_LEN: usize =
    4 + 3 + (1 + MAX_CLUSTER_NAME_LEN) + (1 + NodeId::MAX_LEN) + 10 + (2 + MAX_AUTH_LEN);

// A connection reads the handshake under the pre-handshake frame limit.
const _: () = assert!(MAX_HELLO_LEN <= super::frame::PRE_HANDSHAKE_MAX_FRAME);

/// Refusal codes on the wire. Never reuse or renumber one: peers of other
/// versions decode them.
mod code {
    pub const BAD_MAGIC: u16 = 1;
    pub const VERSION_MISMATCH: u16 = 2;
    pub const CLUSTER_MISMATCH: u16 = 3;
    pub const INVALID_NODE_ID: u16 = 4;
    pub const DUPLICATE_NODE_ID: u16 = 5;
    pub const SELF_CONNECTION: u16 = 6;
    pub const MALFORMED_HELLO: u16 = 7;
}

/// The dialling node's first message: who it is and what it speaks.
///
/// Fields are plain data, as they travel: [`Hello::decode`] enforces only
/// what is needed to read it safely (magic, version, lengths), and
/// [`check_hello`] decides whether to accept the peer, producing a
/// [`RefusalReason`] to send back when not.
///
/// # Examples
///
/// ```
/// use gridkv::net::handshake::{Hello, HandshakeError};
/// use gridkv::{Generation, NodeId};
///
/// let hello = Hello::new("prod", NodeId::new("node-1")?, Generation::new(7));
/// let bytes = hello.encode()?;
/// assert_eq!(&bytes[..4], b"GKV1");
/// assert_eq!(Hello::decode(&bytes)?, hello);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Always [`MAGIC`] from a GridKV node.
    pub magic: [u8; 4],
    /// The sender's [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// The cluster the sender belongs to, at most [`MAX_CLUSTER_NAME_LEN`]
    /// bytes.
    pub cluster: String,
    /// The sender's node id; [`check_hello`] validates it as a [`NodeId`].
    pub node_id: String,
    /// The sender's [`Generation`], raw.
    pub generation: u64,
    /// Authentication data, at most [`MAX_AUTH_LEN`] bytes; empty until the
    /// security work defines it (see the [module docs](self#room-for-authentication)).
    pub auth: Vec<u8>,
}

/// The wire form of a [`Hello`], borrowing from the input so that lengths
/// are checked before anything is copied.
#[derive(Serialize, Deserialize)]
struct HelloWire<'a> {
    magic: [u8; 4],
    protocol_version: u16,
    cluster: &'a str,
    node_id: &'a str,
    generation: u64,
    auth: &'a [u8],
}

impl Hello {
    /// A hello from this build: [`MAGIC`], [`PROTOCOL_VERSION`] and no
    /// authentication data.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::handshake::{Hello, MAGIC, PROTOCOL_VERSION};
    /// use gridkv::{Generation, NodeId};
    ///
    /// let hello = Hello::new("prod", NodeId::new("node-1")?, Generation::new(7));
    /// assert_eq!(hello.magic, MAGIC);
    /// assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    /// assert_eq!(hello.node_id, "node-1");
    /// assert!(hello.auth.is_empty());
    /// # Ok::<(), gridkv::NodeIdError>(())
    /// ```
    pub fn new(cluster: &str, node_id: NodeId, generation: Generation) -> Self {
        Self {
            magic: MAGIC,
            protocol_version: PROTOCOL_VERSION,
            cluster: cluster.to_owned(),
            node_id: node_id.as_str().to_owned(),
            generation: generation.get(),
            auth: Vec::new(),
        }
    }

    /// Encodes the hello as one frame's payload.
    ///
    /// Fields are written as they are (a test can send a wrong magic or
    /// version), but a field longer than its limit is refused with
    /// [`HandshakeError::FieldTooLong`]: the peer would reject it.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::handshake::{Hello, HandshakeError};
    /// use gridkv::{Generation, NodeId};
    ///
    /// let mut hello = Hello::new("prod", NodeId::new("node-1")?, Generation::new(7));
    /// assert!(hello.encode()?.len() < 64);
    ///
    /// hello.cluster = "x".repeat(65);
    /// assert_eq!(
    ///     hello.encode(),
    ///     Err(HandshakeError::FieldTooLong { field: "cluster name", len: 65, max: 64 })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode(&self) -> Result<Vec<u8>, HandshakeError> {
        check_len("cluster name", self.cluster.len(), MAX_CLUSTER_NAME_LEN)?;
        check_len("node id", self.node_id.len(), NodeId::MAX_LEN)?;
        check_len("auth", self.auth.len(), MAX_AUTH_LEN)?;
        let wire = HelloWire {
            magic: self.magic,
            protocol_version: self.protocol_version,
            cluster: &self.cluster,
            node_id: &self.node_id,
            generation: self.generation,
            auth: &self.auth,
        };
        postcard::to_allocvec(&wire).map_err(malformed)
    }

    /// Decodes a hello from one frame's payload.
    ///
    /// Checks, in order: the magic bytes ([`HandshakeError::BadMagic`]), the
    /// protocol version ([`HandshakeError::VersionMismatch`], before reading
    /// anything whose layout a different version may change), then the rest:
    /// field lengths, trailing bytes, and that the input is the one canonical
    /// encoding. Never panics on any input; allocates at most the input's
    /// size.
    ///
    /// Whether to accept the peer is [`check_hello`]'s decision; a decoding
    /// error maps to the refusal to send back with
    /// [`HandshakeError::refusal`].
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::handshake::{Hello, HandshakeError};
    ///
    /// assert_eq!(Hello::decode(b"GET / HTTP/1.1"), Err(HandshakeError::BadMagic));
    /// assert_eq!(
    ///     Hello::decode(b"GKV1\x02rest-in-an-unknown-layout"),
    ///     Err(HandshakeError::VersionMismatch { ours: 1, theirs: 2 })
    /// );
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Hello, HandshakeError> {
        let rest = strip_magic(bytes)?;
        let (version, _) = postcard::take_from_bytes::<u16>(rest).map_err(malformed)?;
        if version != PROTOCOL_VERSION {
            return Err(HandshakeError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: version,
            });
        }
        let wire: HelloWire<'_> = take_all(bytes)?;
        check_text("cluster name", wire.cluster, MAX_CLUSTER_NAME_LEN)?;
        check_len("node id", wire.node_id.len(), NodeId::MAX_LEN)?;
        check_len("auth", wire.auth.len(), MAX_AUTH_LEN)?;
        let hello = Hello {
            magic: wire.magic,
            protocol_version: wire.protocol_version,
            cluster: wire.cluster.to_owned(),
            node_id: wire.node_id.to_owned(),
            generation: wire.generation,
            auth: wire.auth.to_vec(),
        };
        // One value, one encoding: whatever the security work signs or
        // hashes later, a peer cannot vary the bytes of an accepted hello.
        if hello.encode()? != bytes {
            return Err(HandshakeError::Malformed {
                detail: "not the canonical encoding".to_owned(),
            });
        }
        Ok(hello)
    }
}

/// Who this node is, as the handshake needs it.
///
/// # Examples
///
/// ```
/// use gridkv::net::handshake::{check_hello, LocalIdentity};
/// use gridkv::{Generation, NodeId};
///
/// let me = LocalIdentity {
///     cluster: "prod".to_owned(),
///     node_id: NodeId::new("node-1")?,
///     generation: Generation::new(7),
/// };
/// let peer = LocalIdentity { node_id: NodeId::new("node-2")?, ..me.clone() };
/// assert_eq!(check_hello(&me, &peer.hello()), Ok(()));
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIdentity {
    /// The cluster this node belongs to; peers must name the same one.
    pub cluster: String,
    /// This node's id.
    pub node_id: NodeId,
    /// This run's generation.
    pub generation: Generation,
}

impl LocalIdentity {
    /// The hello this node sends when it dials a peer.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::handshake::LocalIdentity;
    /// use gridkv::{Generation, NodeId};
    ///
    /// let me = LocalIdentity {
    ///     cluster: "prod".to_owned(),
    ///     node_id: NodeId::new("node-1")?,
    ///     generation: Generation::new(7),
    /// };
    /// let hello = me.hello();
    /// assert_eq!((hello.cluster.as_str(), hello.generation), ("prod", 7));
    /// # Ok::<(), gridkv::NodeIdError>(())
    /// ```
    pub fn hello(&self) -> Hello {
        Hello::new(&self.cluster, self.node_id, self.generation)
    }

    /// The reply this node sends when [`check_hello`] accepted a peer.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::handshake::{HelloReply, LocalIdentity};
    /// use gridkv::{Generation, NodeId};
    ///
    /// let me = LocalIdentity {
    ///     cluster: "prod".to_owned(),
    ///     node_id: NodeId::new("node-1")?,
    ///     generation: Generation::new(7),
    /// };
    /// assert!(matches!(me.accepted(), HelloReply::Accepted { generation, .. } if generation.get() == 7));
    /// # Ok::<(), gridkv::NodeIdError>(())
    /// ```
    pub fn accepted(&self) -> HelloReply {
        HelloReply::Accepted {
            node_id: self.node_id,
            generation: self.generation,
            auth: Vec::new(),
        }
    }
}

/// Decides whether to accept a peer's hello.
///
/// Rules, in this order (the first that fails is the reason):
/// 1. the magic is [`MAGIC`];
/// 2. the protocol version is [`PROTOCOL_VERSION`];
/// 3. the cluster name equals ours;
/// 4. the node id is a valid [`NodeId`];
/// 5. the node id is not ours: with another generation it is a second node
///    running under our id ([`RefusalReason::DuplicateNodeId`]); with our
///    own generation it is this very node, reached through its own address
///    (a seed list that includes it) ([`RefusalReason::SelfConnection`]).
///
/// Whether the peer's id clashes with *another* member is for membership to
/// decide; the handshake only knows this node.
///
/// # Examples
///
/// ```
/// use gridkv::net::handshake::{check_hello, LocalIdentity, RefusalReason};
/// use gridkv::{Generation, NodeId};
///
/// let me = LocalIdentity {
///     cluster: "prod".to_owned(),
///     node_id: NodeId::new("node-1")?,
///     generation: Generation::new(7),
/// };
/// let stranger = LocalIdentity {
///     cluster: "test".to_owned(),
///     node_id: NodeId::new("node-2")?,
///     generation: Generation::new(3),
/// };
/// let refusal = check_hello(&me, &stranger.hello()).unwrap_err();
/// assert_eq!(refusal.to_string(), "cluster name mismatch: expected prod, got test");
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
pub fn check_hello(local: &LocalIdentity, hello: &Hello) -> Result<(), RefusalReason> {
    if hello.magic != MAGIC {
        return Err(RefusalReason::BadMagic);
    }
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(RefusalReason::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: hello.protocol_version,
        });
    }
    if hello.cluster != local.cluster {
        return Err(RefusalReason::ClusterMismatch {
            expected: local.cluster.clone(),
            got: hello.cluster.clone(),
        });
    }
    let peer = NodeId::new(&hello.node_id).map_err(RefusalReason::InvalidNodeId)?;
    if peer == local.node_id {
        let theirs = Generation::new(hello.generation);
        return Err(if theirs == local.generation {
            RefusalReason::SelfConnection
        } else {
            RefusalReason::DuplicateNodeId {
                node_id: local.node_id,
                ours: local.generation,
                theirs,
            }
        });
    }
    Ok(())
}

/// The accepting node's answer to a [`Hello`].
///
/// # Examples
///
/// ```
/// use gridkv::net::handshake::{HelloReply, RefusalReason};
///
/// let reply = HelloReply::Refused {
///     reason: RefusalReason::VersionMismatch { ours: 1, theirs: 2 },
/// };
/// assert_eq!(HelloReply::decode(&reply.encode()?)?, reply);
/// # Ok::<(), gridkv::net::handshake::HandshakeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloReply {
    /// The peer is accepted; the connection carries messages from now on.
    Accepted {
        /// The accepting node's id.
        node_id: NodeId,
        /// The accepting node's generation.
        generation: Generation,
        /// Authentication data, at most [`MAX_AUTH_LEN`] bytes; empty until
        /// the security work defines it.
        auth: Vec<u8>,
    },
    /// The peer is refused; both sides close the connection.
    Refused {
        /// Why, in terms both sides can log.
        reason: RefusalReason,
    },
}

/// The wire form of a [`HelloReply`] (after the magic). A refusal is a code
/// and a length-prefixed body, so a reason this version does not know can
/// be skipped whole.
#[derive(Serialize, Deserialize)]
enum ReplyWire<'a> {
    Accepted {
        node_id: &'a str,
        generation: u64,
        auth: &'a [u8],
    },
    Refused {
        code: u16,
        body: &'a [u8],
    },
}

/// Mirror of [`NodeIdError`] for refusal bodies, kept here so that
/// `crate::id` does not depend on serde.
#[derive(Serialize, Deserialize)]
enum NodeIdErrorWire {
    Empty,
    TooLong { len: u64, max: u64 },
    InvalidChar { ch: char },
}

impl HelloReply {
    /// Encodes the reply as one frame's payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::handshake::{HelloReply, RefusalReason};
    ///
    /// let bytes = HelloReply::Refused { reason: RefusalReason::BadMagic }.encode()?;
    /// assert_eq!(&bytes[..4], b"GKV1");
    /// # Ok::<(), gridkv::net::handshake::HandshakeError>(())
    /// ```
    pub fn encode(&self) -> Result<Vec<u8>, HandshakeError> {
        let body;
        let wire = match self {
            HelloReply::Accepted {
                node_id,
                generation,
                auth,
            } => {
                check_len("auth", auth.len(), MAX_AUTH_LEN)?;
                ReplyWire::Accepted {
                    node_id: node_id.as_str(),
                    generation: generation.get(),
                    auth,
                }
            }
            HelloReply::Refused { reason } => {
                let (code, encoded) = reason.encode_body()?;
                body = encoded;
                ReplyWire::Refused { code, body: &body }
            }
        };
        postcard::to_extend(&wire, MAGIC.to_vec()).map_err(malformed)
    }

    /// Decodes a reply from one frame's payload.
    ///
    /// Rejects a wrong magic, trailing bytes, an invalid node id, and
    /// oversized or control-character-laden fields; a refusal code this
    /// version does not know becomes [`RefusalReason::Unknown`]. Never
    /// panics; allocates at most the input's size.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::handshake::{HandshakeError, HelloReply, LocalIdentity};
    /// use gridkv::{Generation, NodeId};
    ///
    /// let me = LocalIdentity {
    ///     cluster: "prod".to_owned(),
    ///     node_id: NodeId::new("node-1")?,
    ///     generation: Generation::new(7),
    /// };
    /// let reply = HelloReply::decode(&me.accepted().encode()?)?;
    /// assert_eq!(reply, me.accepted());
    /// assert_eq!(HelloReply::decode(b"HTTP/1.1 400"), Err(HandshakeError::BadMagic));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<HelloReply, HandshakeError> {
        match take_all(strip_magic(bytes)?)? {
            ReplyWire::Accepted {
                node_id,
                generation,
                auth,
            } => {
                check_len("auth", auth.len(), MAX_AUTH_LEN)?;
                Ok(HelloReply::Accepted {
                    node_id: NodeId::new(node_id).map_err(HandshakeError::InvalidNodeId)?,
                    generation: Generation::new(generation),
                    auth: auth.to_vec(),
                })
            }
            ReplyWire::Refused { code, body } => Ok(HelloReply::Refused {
                reason: RefusalReason::decode_body(code, body)?,
            }),
        }
    }
}

/// Why a node refused a peer's [`Hello`].
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
    /// The hello did not start with [`MAGIC`].
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
    /// A reason added by a later protocol version, known only by its code.
    #[error("refused for a reason this version does not know (code {code}); the peer runs a newer GridKV")]
    Unknown {
        /// The reason's wire code.
        code: u16,
    },
}

impl RefusalReason {
    /// The wire code and body of this reason. Fields are tuples in a fixed
    /// order; a later version may append fields to a body (decoding ignores
    /// what follows the known ones).
    fn encode_body(&self) -> Result<(u16, Vec<u8>), HandshakeError> {
        let encoded = match self {
            RefusalReason::BadMagic => Ok((code::BAD_MAGIC, Vec::new())),
            RefusalReason::VersionMismatch { ours, theirs } => {
                postcard::to_allocvec(&(ours, theirs)).map(|b| (code::VERSION_MISMATCH, b))
            }
            RefusalReason::ClusterMismatch { expected, got } => {
                check_len("cluster name", expected.len(), MAX_CLUSTER_NAME_LEN)?;
                check_len("cluster name", got.len(), MAX_CLUSTER_NAME_LEN)?;
                postcard::to_allocvec(&(expected, got)).map(|b| (code::CLUSTER_MISMATCH, b))
            }
            RefusalReason::InvalidNodeId(error) => {
                let wire = match *error {
                    NodeIdError::Empty => NodeIdErrorWire::Empty,
                    NodeIdError::TooLong { len, max } => NodeIdErrorWire::TooLong {
                        len: len as u64,
                        max: max as u64,
                    },
                    NodeIdError::InvalidChar { ch } => NodeIdErrorWire::InvalidChar { ch },
                };
                postcard::to_allocvec(&wire).map(|b| (code::INVALID_NODE_ID, b))
            }
            RefusalReason::DuplicateNodeId {
                node_id,
                ours,
                theirs,
            } => postcard::to_allocvec(&(node_id.as_str(), ours.get(), theirs.get()))
                .map(|b| (code::DUPLICATE_NODE_ID, b)),
            RefusalReason::SelfConnection => Ok((code::SELF_CONNECTION, Vec::new())),
            RefusalReason::MalformedHello => Ok((code::MALFORMED_HELLO, Vec::new())),
            RefusalReason::Unknown { code } => Ok((*code, Vec::new())),
        };
        encoded.map_err(malformed)
    }

    fn decode_body(code: u16, body: &[u8]) -> Result<RefusalReason, HandshakeError> {
        fn fields<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, HandshakeError> {
            postcard::take_from_bytes(body)
                .map(|(fields, _appended)| fields)
                .map_err(malformed)
        }
        Ok(match code {
            code::BAD_MAGIC => RefusalReason::BadMagic,
            code::VERSION_MISMATCH => {
                let (ours, theirs) = fields(body)?;
                RefusalReason::VersionMismatch { ours, theirs }
            }
            code::CLUSTER_MISMATCH => {
                let (expected, got): (&str, &str) = fields(body)?;
                check_text("cluster name", expected, MAX_CLUSTER_NAME_LEN)?;
                check_text("cluster name", got, MAX_CLUSTER_NAME_LEN)?;
                RefusalReason::ClusterMismatch {
                    expected: expected.to_owned(),
                    got: got.to_owned(),
                }
            }
            code::INVALID_NODE_ID => RefusalReason::InvalidNodeId(match fields(body)? {
                NodeIdErrorWire::Empty => NodeIdError::Empty,
                NodeIdErrorWire::TooLong { len, max } => NodeIdError::TooLong {
                    len: usize::try_from(len).unwrap_or(usize::MAX),
                    max: usize::try_from(max).unwrap_or(usize::MAX),
                },
                NodeIdErrorWire::InvalidChar { ch } => NodeIdError::InvalidChar { ch },
            }),
            code::DUPLICATE_NODE_ID => {
                let (node_id, ours, theirs): (&str, u64, u64) = fields(body)?;
                RefusalReason::DuplicateNodeId {
                    node_id: NodeId::new(node_id).map_err(HandshakeError::InvalidNodeId)?,
                    ours: Generation::new(ours),
                    theirs: Generation::new(theirs),
                }
            }
            code::SELF_CONNECTION => RefusalReason::SelfConnection,
            code::MALFORMED_HELLO => RefusalReason::MalformedHello,
            code => RefusalReason::Unknown { code },
        })
    }

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
    /// The message did not start with [`MAGIC`].
    #[error("bad magic: not a GridKV peer")]
    BadMagic,
    /// The peer's hello is of another protocol version.
    #[error("protocol version mismatch: we speak {ours}, peer speaks {theirs}")]
    VersionMismatch {
        /// Our [`PROTOCOL_VERSION`].
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
}

impl HandshakeError {
    /// The refusal to send to the peer whose hello failed to decode with
    /// this error, or `None` for [`HandshakeError::Refused`] (a refusal is
    /// never answered).
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
            HandshakeError::Refused(_) => None,
        }
    }
}

fn malformed(error: postcard::Error) -> HandshakeError {
    HandshakeError::Malformed {
        detail: error.to_string(),
    }
}

/// The input after [`MAGIC`], or [`HandshakeError::BadMagic`].
fn strip_magic(bytes: &[u8]) -> Result<&[u8], HandshakeError> {
    match bytes.split_first_chunk::<4>() {
        Some((magic, rest)) if *magic == MAGIC => Ok(rest),
        _ => Err(HandshakeError::BadMagic),
    }
}

/// Decodes a `T` that must span all of `bytes`.
fn take_all<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, HandshakeError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(HandshakeError::TrailingBytes { count: rest.len() });
    }
    Ok(value)
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), HandshakeError> {
    if len > max {
        return Err(HandshakeError::FieldTooLong { field, len, max });
    }
    Ok(())
}

/// A name from the peer that we will print: bounded, and free of control
/// characters, which could forge or garble log lines.
fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), HandshakeError> {
    check_len(field, text.len(), max)?;
    if text.chars().any(char::is_control) {
        return Err(HandshakeError::ControlCharacter { field });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(cluster: &str, node: &str, generation: u64) -> LocalIdentity {
        LocalIdentity {
            cluster: cluster.to_owned(),
            node_id: NodeId::new(node).unwrap(),
            generation: Generation::new(generation),
        }
    }

    fn me() -> LocalIdentity {
        identity("prod", "node-1", 100)
    }

    fn round_trip_reply(reply: &HelloReply) -> HelloReply {
        HelloReply::decode(&reply.encode().unwrap()).unwrap()
    }

    #[test]
    fn hello_has_a_fixed_layout() {
        let hello = Hello::new("c", NodeId::new("n").unwrap(), Generation::new(300));
        // magic, version 1, "c", "n", varint 300, empty auth.
        assert_eq!(
            hello.encode().unwrap(),
            b"GKV1\x01\x01c\x01n\xac\x02\x00".to_vec()
        );
    }

    #[test]
    fn hello_round_trips_at_every_limit() {
        let hello = Hello {
            magic: MAGIC,
            protocol_version: PROTOCOL_VERSION,
            cluster: "c".repeat(MAX_CLUSTER_NAME_LEN),
            node_id: "n".repeat(NodeId::MAX_LEN),
            generation: u64::MAX,
            auth: vec![0xA5; MAX_AUTH_LEN],
        };
        let bytes = hello.encode().unwrap();
        assert_eq!(Hello::decode(&bytes), Ok(hello.clone()));
        // With the longest version varint too, the bound is exact.
        let longest = Hello {
            protocol_version: u16::MAX,
            ..hello
        };
        assert_eq!(longest.encode().unwrap().len(), MAX_HELLO_LEN);
    }

    #[test]
    fn magic_is_checked_before_anything_else() {
        assert_eq!(Hello::decode(b""), Err(HandshakeError::BadMagic));
        assert_eq!(Hello::decode(b"GKV"), Err(HandshakeError::BadMagic));
        let mut bytes = me().hello().encode().unwrap();
        bytes[3] = b'2';
        assert_eq!(Hello::decode(&bytes), Err(HandshakeError::BadMagic));
        // Even when the rest would not decode either.
        assert_eq!(
            Hello::decode(b"GKV2\xff\xff\xff\xff"),
            Err(HandshakeError::BadMagic)
        );
    }

    #[test]
    fn another_version_is_named_without_parsing_the_rest() {
        let mut hello = me().hello();
        hello.protocol_version = 2;
        let mut bytes = hello.encode().unwrap();
        bytes.truncate(5); // a v2 layout we cannot read: nothing after the version
        assert_eq!(
            Hello::decode(&bytes),
            Err(HandshakeError::VersionMismatch { ours: 1, theirs: 2 })
        );
        assert!(matches!(
            Hello::decode(b"GKV1"),
            Err(HandshakeError::Malformed { .. })
        ));
    }

    #[test]
    fn oversized_fields_are_rejected_both_ways() {
        let mut hello = me().hello();
        hello.node_id = "n".repeat(NodeId::MAX_LEN + 1);
        assert_eq!(
            hello.encode(),
            Err(HandshakeError::FieldTooLong {
                field: "node id",
                len: 56,
                max: 55
            })
        );
        // Forge the same message by hand: decode refuses it too.
        let wire = HelloWire {
            magic: MAGIC,
            protocol_version: 1,
            cluster: "prod",
            node_id: &hello.node_id,
            generation: 1,
            auth: &[],
        };
        let bytes = postcard::to_allocvec(&wire).unwrap();
        assert!(matches!(
            Hello::decode(&bytes),
            Err(HandshakeError::FieldTooLong {
                field: "node id",
                ..
            })
        ));
        let auth = vec![0; MAX_AUTH_LEN + 1];
        let wire = HelloWire {
            auth: &auth,
            node_id: "n",
            ..wire
        };
        assert!(matches!(
            Hello::decode(&postcard::to_allocvec(&wire).unwrap()),
            Err(HandshakeError::FieldTooLong { field: "auth", .. })
        ));
        let cluster = "c".repeat(MAX_CLUSTER_NAME_LEN + 1);
        let wire = HelloWire {
            cluster: &cluster,
            auth: &[],
            ..wire
        };
        assert!(matches!(
            Hello::decode(&postcard::to_allocvec(&wire).unwrap()),
            Err(HandshakeError::FieldTooLong {
                field: "cluster name",
                ..
            })
        ));
    }

    #[test]
    fn a_string_length_beyond_the_input_fails_without_allocating() {
        // Claims a cluster name of 2^31 bytes; postcard checks the remaining
        // input before borrowing, so this is a plain decoding error.
        let bytes = b"GKV1\x01\x80\x80\x80\x80\x08";
        assert!(matches!(
            Hello::decode(bytes),
            Err(HandshakeError::Malformed { .. })
        ));
    }

    #[test]
    fn control_characters_in_the_cluster_name_are_rejected() {
        let mut hello = me().hello();
        hello.cluster = "prod\x1b[2J".to_owned();
        let bytes = hello.encode().unwrap();
        assert_eq!(
            Hello::decode(&bytes),
            Err(HandshakeError::ControlCharacter {
                field: "cluster name"
            })
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = me().hello().encode().unwrap();
        bytes.push(0);
        assert_eq!(
            Hello::decode(&bytes),
            Err(HandshakeError::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn only_the_canonical_encoding_is_accepted() {
        // Generation 1 as a two-byte varint (0x81 0x00) instead of 0x01.
        let canonical = Hello::new("c", NodeId::new("n").unwrap(), Generation::new(1))
            .encode()
            .unwrap();
        assert_eq!(&canonical[9..], b"\x01\x00");
        let mut padded = canonical[..9].to_vec();
        padded.extend_from_slice(b"\x81\x00\x00");
        assert_eq!(
            Hello::decode(&padded),
            Err(HandshakeError::Malformed {
                detail: "not the canonical encoding".to_owned()
            })
        );
    }

    #[test]
    fn accepts_a_peer_of_the_same_cluster() {
        assert_eq!(
            check_hello(&me(), &identity("prod", "node-2", 5).hello()),
            Ok(())
        );
    }

    #[test]
    fn refuses_bad_magic() {
        let mut hello = identity("prod", "node-2", 5).hello();
        hello.magic = *b"HTTP";
        let reason = check_hello(&me(), &hello).unwrap_err();
        assert_eq!(reason, RefusalReason::BadMagic);
        assert_eq!(reason.to_string(), "bad magic: not a GridKV peer");
    }

    #[test]
    fn refuses_another_version_with_both_numbers() {
        let mut hello = identity("prod", "node-2", 5).hello();
        hello.protocol_version = 2;
        let reason = check_hello(&me(), &hello).unwrap_err();
        assert_eq!(
            reason.to_string(),
            "protocol version mismatch: we speak 1, peer speaks 2"
        );
        assert_eq!(
            HandshakeError::Refused(reason).to_string(),
            "refused by peer: protocol version mismatch: peer speaks 1, we speak 2"
        );
    }

    #[test]
    fn refuses_another_cluster_in_the_same_words_on_both_sides() {
        let reason = check_hello(&me(), &identity("test", "node-2", 5).hello()).unwrap_err();
        assert_eq!(
            reason,
            RefusalReason::ClusterMismatch {
                expected: "prod".to_owned(),
                got: "test".to_owned()
            }
        );
        assert_eq!(
            reason.to_string(),
            "cluster name mismatch: expected prod, got test"
        );
        let seen = HelloReply::decode(&HelloReply::Refused { reason }.encode().unwrap()).unwrap();
        let HelloReply::Refused { reason } = seen else {
            panic!("a refusal decodes as a refusal");
        };
        assert_eq!(
            HandshakeError::Refused(reason).to_string(),
            "refused by peer: cluster name mismatch: expected prod, got test"
        );
    }

    #[test]
    fn refuses_an_invalid_node_id() {
        for (node_id, error) in [
            ("", NodeIdError::Empty),
            ("a b", NodeIdError::InvalidChar { ch: ' ' }),
            ("a\u{0}", NodeIdError::InvalidChar { ch: '\u{0}' }),
        ] {
            let mut hello = me().hello();
            hello.node_id = node_id.to_owned();
            // It decodes (validity is the check's job) and is then refused.
            let hello = Hello::decode(&hello.encode().unwrap()).unwrap();
            assert_eq!(
                check_hello(&me(), &hello),
                Err(RefusalReason::InvalidNodeId(error))
            );
        }
        let mut hello = me().hello();
        hello.node_id = "n".repeat(NodeId::MAX_LEN + 1);
        assert!(matches!(
            check_hello(&me(), &hello),
            Err(RefusalReason::InvalidNodeId(NodeIdError::TooLong { .. }))
        ));
    }

    #[test]
    fn refuses_our_own_id_from_another_run() {
        let reason = check_hello(&me(), &identity("prod", "node-1", 99).hello()).unwrap_err();
        assert_eq!(
            reason,
            RefusalReason::DuplicateNodeId {
                node_id: NodeId::new("node-1").unwrap(),
                ours: Generation::new(100),
                theirs: Generation::new(99)
            }
        );
        assert_eq!(
            reason.to_string(),
            "duplicate node id: node-1 is this node (generation 100), the peer claims it with generation 99"
        );
        assert_eq!(
            HandshakeError::Refused(reason).to_string(),
            "refused by peer: duplicate node id: node-1 is already running (generation 100); we are generation 99"
        );
    }

    #[test]
    fn refuses_a_connection_to_itself() {
        assert_eq!(
            check_hello(&me(), &me().hello()),
            Err(RefusalReason::SelfConnection)
        );
    }

    #[test]
    fn rules_apply_in_order() {
        // With the version and the cluster both wrong, the version is
        // reported; with the magic wrong as well, the magic is.
        let mut hello = identity("test", "node-2", 5).hello();
        hello.protocol_version = 9;
        assert!(matches!(
            check_hello(&me(), &hello),
            Err(RefusalReason::VersionMismatch { .. })
        ));
        hello.magic = [0; 4];
        assert_eq!(check_hello(&me(), &hello), Err(RefusalReason::BadMagic));
    }

    #[test]
    fn every_reply_round_trips() {
        let replies = [
            me().accepted(),
            HelloReply::Accepted {
                node_id: NodeId::new("n").unwrap(),
                generation: Generation::new(u64::MAX),
                auth: vec![1; MAX_AUTH_LEN],
            },
            RefusalReason::BadMagic.into_reply(),
            RefusalReason::VersionMismatch {
                ours: 1,
                theirs: u16::MAX,
            }
            .into_reply(),
            RefusalReason::ClusterMismatch {
                expected: "prod".to_owned(),
                got: String::new(),
            }
            .into_reply(),
            RefusalReason::InvalidNodeId(NodeIdError::Empty).into_reply(),
            RefusalReason::InvalidNodeId(NodeIdError::TooLong { len: 99, max: 55 }).into_reply(),
            RefusalReason::InvalidNodeId(NodeIdError::InvalidChar { ch: '\u{7}' }).into_reply(),
            RefusalReason::DuplicateNodeId {
                node_id: NodeId::new("node-1").unwrap(),
                ours: Generation::new(1),
                theirs: Generation::new(2),
            }
            .into_reply(),
            RefusalReason::SelfConnection.into_reply(),
            RefusalReason::MalformedHello.into_reply(),
            RefusalReason::Unknown { code: 999 }.into_reply(),
        ];
        for reply in replies {
            assert_eq!(round_trip_reply(&reply), reply);
        }
    }

    impl RefusalReason {
        fn into_reply(self) -> HelloReply {
            HelloReply::Refused { reason: self }
        }
    }

    #[test]
    fn a_reason_from_a_later_version_decodes_as_unknown() {
        // Code 42 with a body this version cannot interpret.
        let wire = ReplyWire::Refused {
            code: 42,
            body: b"\x05later",
        };
        let bytes = postcard::to_extend(&wire, MAGIC.to_vec()).unwrap();
        let reply = HelloReply::decode(&bytes).unwrap();
        assert_eq!(reply, RefusalReason::Unknown { code: 42 }.into_reply());
        let HelloReply::Refused { reason } = reply else {
            unreachable!()
        };
        assert_eq!(
            HandshakeError::Refused(reason).to_string(),
            "refused by peer: refused for a reason this version does not know (code 42); the peer runs a newer GridKV"
        );
    }

    #[test]
    fn a_later_version_may_append_fields_to_a_refusal() {
        let body = postcard::to_allocvec(&(1u16, 2u16, "extra")).unwrap();
        let wire = ReplyWire::Refused {
            code: code::VERSION_MISMATCH,
            body: &body,
        };
        let bytes = postcard::to_extend(&wire, MAGIC.to_vec()).unwrap();
        assert_eq!(
            HelloReply::decode(&bytes),
            Ok(RefusalReason::VersionMismatch { ours: 1, theirs: 2 }.into_reply())
        );
    }

    #[test]
    fn a_reply_with_an_invalid_node_id_is_rejected() {
        let wire = ReplyWire::Accepted {
            node_id: "two words",
            generation: 1,
            auth: &[],
        };
        let bytes = postcard::to_extend(&wire, MAGIC.to_vec()).unwrap();
        assert_eq!(
            HelloReply::decode(&bytes),
            Err(HandshakeError::InvalidNodeId(NodeIdError::InvalidChar {
                ch: ' '
            }))
        );
    }

    #[test]
    fn a_refusal_naming_a_control_character_cluster_is_rejected() {
        let body = postcard::to_allocvec(&("prod", "\x1b[31mred")).unwrap();
        let wire = ReplyWire::Refused {
            code: code::CLUSTER_MISMATCH,
            body: &body,
        };
        let bytes = postcard::to_extend(&wire, MAGIC.to_vec()).unwrap();
        assert_eq!(
            HelloReply::decode(&bytes),
            Err(HandshakeError::ControlCharacter {
                field: "cluster name"
            })
        );
    }

    #[test]
    fn decoding_errors_map_to_the_refusal_to_send() {
        assert_eq!(
            Hello::decode(b"nope").unwrap_err().refusal(),
            Some(RefusalReason::BadMagic)
        );
        let mut bytes = me().hello().encode().unwrap();
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

    #[test]
    fn both_messages_fit_the_pre_handshake_frame_limit() {
        let longest_refusal = RefusalReason::ClusterMismatch {
            expected: "e".repeat(MAX_CLUSTER_NAME_LEN),
            got: "g".repeat(MAX_CLUSTER_NAME_LEN),
        }
        .into_reply();
        let longest_accept = HelloReply::Accepted {
            node_id: NodeId::new(&"n".repeat(NodeId::MAX_LEN)).unwrap(),
            generation: Generation::new(u64::MAX),
            auth: vec![0; MAX_AUTH_LEN],
        };
        for reply in [longest_refusal, longest_accept] {
            assert!(reply.encode().unwrap().len() <= super::super::frame::PRE_HANDSHAKE_MAX_FRAME);
        }
    }
}
