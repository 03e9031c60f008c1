//! The dialling node's first message, [`Hello`], and its wire form.

use serde::{Deserialize, Serialize};

use super::error::HandshakeError;
use super::wire::{
    check_len, check_text, malformed, strip_magic, take_all, MAGIC, MAX_AUTH_LEN,
    MAX_CLUSTER_NAME_LEN, PROTOCOL_VERSION,
};
use crate::net::frame::PRE_HANDSHAKE_MAX_FRAME;
use crate::{Generation, NodeId};

/// The largest encoded [`Hello`]: magic, version varint, and each bounded
/// field with its varint length, plus the generation varint.
const MAX_HELLO_LEN: usize =
    4 + 3 + (1 + MAX_CLUSTER_NAME_LEN) + (1 + NodeId::MAX_LEN) + 10 + (2 + MAX_AUTH_LEN);

// A connection reads the handshake under the pre-handshake frame limit.
const _: () = assert!(MAX_HELLO_LEN <= PRE_HANDSHAKE_MAX_FRAME);

/// The dialling node's first message: who it is and what it speaks.
///
/// Fields are plain data, as they travel: [`Hello::decode`] enforces only
/// what is needed to read it safely (magic, version, lengths), and
/// [`check_hello`](super::check_hello) decides whether to accept the peer, producing a
/// [`RefusalReason`](super::RefusalReason) to send back when not.
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
    /// The sender's node id; [`check_hello`](super::check_hello) validates it as a [`NodeId`].
    pub node_id: String,
    /// The sender's [`Generation`], raw.
    pub generation: u64,
    /// Authentication data, at most [`MAX_AUTH_LEN`] bytes; empty until the
    /// security work defines it (see the [module docs](super#room-for-authentication)).
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
    /// Whether to accept the peer is [`check_hello`](super::check_hello)'s decision; a decoding
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Node 1 of cluster `prod`, generation 100.
    fn a_hello() -> Hello {
        Hello::new("prod", NodeId::new("node-1").unwrap(), Generation::new(100))
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
        let mut bytes = a_hello().encode().unwrap();
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
        let mut hello = a_hello();
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
        let mut hello = a_hello();
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
        let mut hello = a_hello();
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
        let mut bytes = a_hello().encode().unwrap();
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
}
