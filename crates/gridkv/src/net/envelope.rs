//! The envelope: what every frame after the handshake carries.
//!
//! A frame's payload is one [`Envelope`]: a one-byte tag (message kind in
//! the low nibble, [`Lane`] in the high nibble), then a fixed-size header
//! for that kind, then the body, which the transport never looks into
//! (membership and replication encode their own messages in it).
//!
//! | kind       | header after the tag        | body            |
//! |------------|-----------------------------|-----------------|
//! | `Request`  | request id (u64 LE)         | the request     |
//! | `Response` | request id (u64 LE)         | the answer      |
//! | `Error`    | request id, code (u16 LE)   | empty           |
//! | `OneWay`   | none                        | the message     |
//! | `Ping`     | token (u64 LE)              | empty           |
//! | `Pong`     | token echoed (u64 LE)       | empty           |
//!
//! Fixed-width ids cost a few bytes over varints but keep encoding to two
//! stores and decoding branch-free on the hot path. Decoding never panics and
//! never copies: the body is a slice of the frame ([`Bytes`]). A tag or a
//! lane this version does not know is an error, which closes the connection:
//! the handshake's protocol version is what lets both sides add kinds.

use bytes::{BufMut, Bytes, BytesMut};

/// Which connection a message travels on.
///
/// Every pair of nodes keeps one connection per lane, so a 4 MiB value or a
/// rebalancing stream on the data lane never sits in front of a membership
/// probe: each lane has its own socket buffers, queue and writer.
///
/// # Examples
///
/// ```
/// use gridkv::net::envelope::Lane;
///
/// assert_eq!(Lane::ALL, [Lane::Control, Lane::Data]);
/// assert_eq!(Lane::Data.to_string(), "data");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Membership: probes, acks, gossip. Small messages, latency-critical.
    Control,
    /// Everything else: replication, repair, rebalancing.
    Data,
}

impl Lane {
    /// Both lanes, in wire order.
    pub const ALL: [Lane; 2] = [Lane::Control, Lane::Data];

    const fn bits(self) -> u8 {
        match self {
            Lane::Control => 0,
            Lane::Data => 1,
        }
    }

    const fn from_bits(bits: u8) -> Option<Lane> {
        match bits {
            0 => Some(Lane::Control),
            1 => Some(Lane::Data),
            _ => None,
        }
    }

    /// Index of the lane in [`Lane::ALL`].
    pub(crate) const fn index(self) -> usize {
        self.bits() as usize
    }
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lane::Control => "control",
            Lane::Data => "data",
        })
    }
}

/// Why a request got an [`Envelope::Error`] instead of an answer.
///
/// # Examples
///
/// ```
/// use gridkv::net::envelope::ErrorCode;
///
/// assert_eq!(ErrorCode::from_wire(1), ErrorCode::Overloaded);
/// assert_eq!(ErrorCode::from_wire(77), ErrorCode::Unknown(77));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The peer's inbound limits were full; nothing was handed to its
    /// application. Safe to retry elsewhere or later.
    Overloaded,
    /// The peer's application dropped the request without answering.
    NoAnswer,
    /// A code from a newer version.
    Unknown(u16),
}

impl ErrorCode {
    /// The code on the wire.
    pub const fn to_wire(self) -> u16 {
        match self {
            ErrorCode::Overloaded => 1,
            ErrorCode::NoAnswer => 2,
            ErrorCode::Unknown(code) => code,
        }
    }

    /// Reads a code from the wire; unknown ones are kept as such.
    pub const fn from_wire(code: u16) -> ErrorCode {
        match code {
            1 => ErrorCode::Overloaded,
            2 => ErrorCode::NoAnswer,
            code => ErrorCode::Unknown(code),
        }
    }
}

/// One message on a connection after the handshake.
///
/// # Examples
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use gridkv::net::envelope::{Envelope, Lane};
///
/// let request = Envelope::Request { lane: Lane::Data, id: 7, body: Bytes::from_static(b"get k") };
/// let mut buf = BytesMut::new();
/// request.encode(&mut buf);
/// assert_eq!(buf.len(), request.encoded_len());
/// assert_eq!(Envelope::decode(buf.freeze())?, request);
/// # Ok::<(), gridkv::net::envelope::EnvelopeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// A request awaiting an answer with the same id.
    Request {
        /// The lane of the request.
        lane: Lane,
        /// Chosen by the sender, unique per connection.
        id: u64,
        /// The request itself.
        body: Bytes,
    },
    /// The answer to request `id`.
    Response {
        /// The lane of the request answered.
        lane: Lane,
        /// The id of the request answered.
        id: u64,
        /// The answer.
        body: Bytes,
    },
    /// Request `id` failed at the peer before its application answered.
    Error {
        /// The lane of the request answered.
        lane: Lane,
        /// The id of the request answered.
        id: u64,
        /// Why.
        code: ErrorCode,
    },
    /// A message that gets no answer.
    OneWay {
        /// The lane of the message.
        lane: Lane,
        /// The message itself.
        body: Bytes,
    },
    /// A heartbeat; the peer answers with a [`Envelope::Pong`] of the same
    /// token.
    Ping {
        /// Echoed in the pong.
        token: u64,
    },
    /// The answer to a [`Envelope::Ping`].
    Pong {
        /// The ping's token.
        token: u64,
    },
}

mod kind {
    pub const REQUEST: u8 = 0;
    pub const RESPONSE: u8 = 1;
    pub const ERROR: u8 = 2;
    pub const ONE_WAY: u8 = 3;
    pub const PING: u8 = 4;
    pub const PONG: u8 = 5;
}

/// Why a frame's payload is not an envelope. The connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The payload is shorter than its kind's header.
    #[error("truncated {kind} envelope: {len} bytes")]
    Truncated {
        /// The kind named by the tag.
        kind: &'static str,
        /// The payload's length.
        len: usize,
    },
    /// The tag names no kind or lane this version knows.
    #[error("unknown envelope tag {0:#04x}")]
    UnknownTag(u8),
    /// A ping or pong with bytes after its token.
    #[error("{kind} envelope has {count} trailing bytes")]
    TrailingBytes {
        /// The kind named by the tag.
        kind: &'static str,
        /// How many bytes follow the header.
        count: usize,
    },
}

/// The tag and a u64 id: the header in front of a request's or a response's
/// body.
pub(crate) const ID_HEADER: usize = 1 + 8;

impl Envelope {
    /// The number of bytes [`Envelope::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Envelope::Request { body, .. } | Envelope::Response { body, .. } => {
                ID_HEADER + body.len()
            }
            Envelope::Error { .. } => ID_HEADER + 2,
            Envelope::OneWay { body, .. } => 1 + body.len(),
            Envelope::Ping { .. } | Envelope::Pong { .. } => ID_HEADER,
        }
    }

    /// The header alone (everything but the body) and the body, so a
    /// writer can send a large body without copying it into its buffer.
    pub(crate) fn split_header(&self, dst: &mut BytesMut) -> Option<&Bytes> {
        match self {
            Envelope::Request { lane, id, body } => {
                dst.put_u8(kind::REQUEST | lane.bits() << 4);
                dst.put_u64_le(*id);
                Some(body)
            }
            Envelope::Response { lane, id, body } => {
                dst.put_u8(kind::RESPONSE | lane.bits() << 4);
                dst.put_u64_le(*id);
                Some(body)
            }
            Envelope::Error { lane, id, code } => {
                dst.put_u8(kind::ERROR | lane.bits() << 4);
                dst.put_u64_le(*id);
                dst.put_u16_le(code.to_wire());
                None
            }
            Envelope::OneWay { lane, body } => {
                dst.put_u8(kind::ONE_WAY | lane.bits() << 4);
                Some(body)
            }
            Envelope::Ping { token } => {
                dst.put_u8(kind::PING);
                dst.put_u64_le(*token);
                None
            }
            Envelope::Pong { token } => {
                dst.put_u8(kind::PONG);
                dst.put_u64_le(*token);
                None
            }
        }
    }

    /// Appends the envelope to `dst` (without a frame prefix).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        if let Some(body) = self.split_header(dst) {
            dst.put_slice(body);
        }
    }

    /// Reads an envelope from one frame's payload. The body shares the
    /// payload's memory. Never panics, whatever `payload` holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gridkv::net::envelope::{Envelope, EnvelopeError};
    ///
    /// assert_eq!(
    ///     Envelope::decode(Bytes::from_static(&[0x0f])),
    ///     Err(EnvelopeError::UnknownTag(0x0f))
    /// );
    /// assert!(matches!(
    ///     Envelope::decode(Bytes::from_static(&[0x00, 1, 2])),
    ///     Err(EnvelopeError::Truncated { kind: "request", len: 3 })
    /// ));
    /// ```
    pub fn decode(mut payload: Bytes) -> Result<Envelope, EnvelopeError> {
        let Some(&tag) = payload.first() else {
            return Err(EnvelopeError::Truncated {
                kind: "empty",
                len: 0,
            });
        };
        let lane = Lane::from_bits(tag >> 4).ok_or(EnvelopeError::UnknownTag(tag))?;
        let kind = tag & 0x0f;
        let name = match kind {
            kind::REQUEST => "request",
            kind::RESPONSE => "response",
            kind::ERROR => "error",
            kind::ONE_WAY => "one-way",
            kind::PING => "ping",
            kind::PONG => "pong",
            _ => return Err(EnvelopeError::UnknownTag(tag)),
        };
        if (kind == kind::PING || kind == kind::PONG) && lane != Lane::Control {
            return Err(EnvelopeError::UnknownTag(tag));
        }
        if kind == kind::ONE_WAY {
            return Ok(Envelope::OneWay {
                lane,
                body: payload.split_off(1),
            });
        }
        let len = payload.len();
        let header = if kind == kind::ERROR {
            ID_HEADER + 2
        } else {
            ID_HEADER
        };
        let truncated = EnvelopeError::Truncated { kind: name, len };
        let id_bytes = payload.get(1..ID_HEADER).ok_or(truncated)?;
        let id = u64::from_le_bytes(id_bytes.try_into().map_err(|_| truncated)?);
        if len < header {
            return Err(truncated);
        }
        let trailing = |count: usize| {
            if count == 0 {
                Ok(())
            } else {
                Err(EnvelopeError::TrailingBytes { kind: name, count })
            }
        };
        Ok(match kind {
            kind::REQUEST => Envelope::Request {
                lane,
                id,
                body: payload.split_off(ID_HEADER),
            },
            kind::RESPONSE => Envelope::Response {
                lane,
                id,
                body: payload.split_off(ID_HEADER),
            },
            kind::ERROR => {
                trailing(len - header)?;
                let code = u16::from_le_bytes([payload[ID_HEADER], payload[ID_HEADER + 1]]);
                Envelope::Error {
                    lane,
                    id,
                    code: ErrorCode::from_wire(code),
                }
            }
            kind::PING => {
                trailing(len - header)?;
                Envelope::Ping { token: id }
            }
            _ => {
                trailing(len - header)?;
                Envelope::Pong { token: id }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(envelope: Envelope) {
        let mut buf = BytesMut::new();
        envelope.encode(&mut buf);
        assert_eq!(buf.len(), envelope.encoded_len());
        assert_eq!(Envelope::decode(buf.freeze()), Ok(envelope));
    }

    #[test]
    fn every_kind_round_trips() {
        for lane in Lane::ALL {
            round_trip(Envelope::Request {
                lane,
                id: u64::MAX,
                body: Bytes::from_static(b"abc"),
            });
            round_trip(Envelope::Response {
                lane,
                id: 0,
                body: Bytes::new(),
            });
            round_trip(Envelope::Error {
                lane,
                id: 3,
                code: ErrorCode::Overloaded,
            });
            round_trip(Envelope::Error {
                lane,
                id: 3,
                code: ErrorCode::Unknown(999),
            });
            round_trip(Envelope::OneWay {
                lane,
                body: Bytes::from_static(b"x"),
            });
        }
        round_trip(Envelope::Ping { token: 42 });
        round_trip(Envelope::Pong { token: 42 });
    }

    #[test]
    fn layout_is_fixed() {
        let mut buf = BytesMut::new();
        Envelope::Request {
            lane: Lane::Data,
            id: 0x0102,
            body: Bytes::from_static(b"hi"),
        }
        .encode(&mut buf);
        assert_eq!(&buf[..], b"\x10\x02\x01\0\0\0\0\0\0hi");
    }

    #[test]
    fn bodies_are_not_copied() {
        let mut buf = BytesMut::new();
        Envelope::Response {
            lane: Lane::Control,
            id: 1,
            body: Bytes::from_static(b"answer"),
        }
        .encode(&mut buf);
        let frame = buf.freeze();
        let base = frame.as_ptr() as usize;
        let Ok(Envelope::Response { body, .. }) = Envelope::decode(frame) else {
            panic!("decodes as a response");
        };
        assert_eq!(body.as_ptr() as usize, base + ID_HEADER);
    }

    #[test]
    fn malformed_payloads_are_typed_errors() {
        let cases: &[(&[u8], EnvelopeError)] = &[
            (
                b"",
                EnvelopeError::Truncated {
                    kind: "empty",
                    len: 0,
                },
            ),
            (b"\x06", EnvelopeError::UnknownTag(0x06)),
            (b"\x20abc", EnvelopeError::UnknownTag(0x20)),
            (b"\x14\0\0\0\0\0\0\0\0", EnvelopeError::UnknownTag(0x14)),
            (
                b"\x01\0\0",
                EnvelopeError::Truncated {
                    kind: "response",
                    len: 3,
                },
            ),
            (
                b"\x02\0\0\0\0\0\0\0\0\x01",
                EnvelopeError::Truncated {
                    kind: "error",
                    len: 10,
                },
            ),
            (
                b"\x04\0\0\0\0\0\0\0\0x",
                EnvelopeError::TrailingBytes {
                    kind: "ping",
                    count: 1,
                },
            ),
        ];
        for (bytes, error) in cases {
            assert_eq!(
                Envelope::decode(Bytes::from_static(bytes)),
                Err(*error),
                "{bytes:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(20_000)
        ))]

        /// Arbitrary bytes decode or fail; whatever decodes re-encodes to the
        /// same bytes (one encoding per message).
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let payload = Bytes::from(bytes.clone());
            if let Ok(envelope) = Envelope::decode(payload) {
                let mut buf = BytesMut::new();
                envelope.encode(&mut buf);
                prop_assert_eq!(&buf[..], &bytes[..]);
            }
        }
    }
}
