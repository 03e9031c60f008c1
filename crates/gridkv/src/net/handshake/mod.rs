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
//! Like the framing, the messages and the rules are sans-IO: messages are
//! encoded to and decoded from byte slices (one frame's payload each) and
//! the rules are pure functions, so every rule is tested without a socket.
//! Only `exchange` runs them over a connection.
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
//! On a TLS connection (see [`crate::net::tls`]) the peer's certificate
//! names its node id before either message is sent; [`check_certified`]
//! holds the hello and the reply to it.
//!
//! Both [`Hello`] and [`HelloReply::Accepted`] carry an `auth` field: opaque
//! bytes, at most [`MAX_AUTH_LEN`], empty for now. The security work will
//! define what goes in it (for example a key id, a nonce and a signature)
//! without changing the layout around it, so adding authentication needs no
//! protocol version bump. Opaque bytes were chosen over a typed
//! `Option<AuthField>`: postcard is not self-describing, so a typed field
//! would freeze its shape today, before anyone knows what it must hold.
//!
//! # Where each part lives
//!
//! - `wire`: what both messages share on the wire (magic, version, field
//!   limits) and the checks decoding applies;
//! - `hello`: the dialling node's [`Hello`];
//! - `reply`: the accepting node's [`HelloReply`], refusal codes included;
//! - `error`: [`RefusalReason`] and [`HandshakeError`], each worded for the
//!   side that reads it;
//! - `check`: this node's [`LocalIdentity`] and the rules of
//!   [`check_hello`] and, on TLS connections, [`check_certified`];
//! - `exchange`: each side's messages over a new connection, and the
//!   [`PeerInfo`](super::PeerInfo) they establish.

mod check;
mod error;
pub(crate) mod exchange;
mod hello;
mod reply;
mod wire;

pub use check::{check_certified, check_hello, LocalIdentity};
pub use error::{HandshakeError, IdMismatch, RefusalReason};
pub use hello::Hello;
pub use reply::HelloReply;
pub use wire::{MAGIC, MAX_AUTH_LEN, MAX_CLUSTER_NAME_LEN, PROTOCOL_VERSION};
