//! The accepting node's answer, [`HelloReply`], and its wire form,
//! refusal codes included.

use serde::{Deserialize, Serialize};

use super::error::{HandshakeError, IdMismatch, RefusalReason};
use super::wire::{
    check_len, check_text, malformed, strip_magic, take_all, MAGIC, MAX_AUTH_LEN,
    MAX_CLUSTER_NAME_LEN,
};
use crate::{Generation, NodeId, NodeIdError};

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
    pub const IDENTITY_MISMATCH: u16 = 8;
}

/// The accepting node's answer to a [`Hello`](super::Hello).
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
            RefusalReason::IdentityMismatch(ids) => {
                postcard::to_allocvec(&(ids.certified.as_str(), ids.claimed.as_str()))
                    .map(|b| (code::IDENTITY_MISMATCH, b))
            }
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
            code::IDENTITY_MISMATCH => {
                let (certified, claimed): (&str, &str) = fields(body)?;
                RefusalReason::IdentityMismatch(IdMismatch::boxed(
                    NodeId::new(certified).map_err(HandshakeError::InvalidNodeId)?,
                    NodeId::new(claimed).map_err(HandshakeError::InvalidNodeId)?,
                ))
            }
            code => RefusalReason::Unknown { code },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame::PRE_HANDSHAKE_MAX_FRAME;

    fn round_trip_reply(reply: &HelloReply) -> HelloReply {
        HelloReply::decode(&reply.encode().unwrap()).unwrap()
    }

    #[test]
    fn every_reply_round_trips() {
        let replies = [
            HelloReply::Accepted {
                node_id: NodeId::new("node-1").unwrap(),
                generation: Generation::new(100),
                auth: Vec::new(),
            },
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
            RefusalReason::IdentityMismatch(IdMismatch::boxed(
                NodeId::new("node-2").unwrap(),
                NodeId::new("node-1").unwrap(),
            ))
            .into_reply(),
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
            assert!(reply.encode().unwrap().len() <= PRE_HANDSHAKE_MAX_FRAME);
        }
    }
}
