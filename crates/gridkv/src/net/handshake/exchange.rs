//! The handshake run over a new connection: one function per side, and
//! what a successful one learns about the peer ([`PeerInfo`]).
//!
//! This is the one part of the handshake that does I/O. Timeouts and what a
//! failure costs (counters, logs, the error a caller sees) stay with the
//! link and the listener, which know which side they are.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::check::{check_certified, check_hello, LocalIdentity};
use super::error::{HandshakeError, IdMismatch};
use super::hello::Hello;
use super::reply::HelloReply;
use crate::net::frame::{encode_frame, FrameDecoder, PRE_HANDSHAKE_MAX_FRAME};
use crate::net::io::Stream;
use crate::{Generation, NodeId};

/// Who is at the other end of a connection, as its handshake said.
///
/// # Examples
///
/// ```
/// use gridkv::net::PeerInfo;
/// use gridkv::{Generation, NodeId};
///
/// let peer = PeerInfo {
///     node_id: NodeId::new("b")?,
///     generation: Generation::new(2),
///     addr: "10.0.0.2:7946".parse().unwrap(),
/// };
/// assert_eq!(peer.to_string(), "b@10.0.0.2:7946 (gen 2)");
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node id.
    pub node_id: NodeId,
    /// The peer's generation (changes when it restarts).
    pub generation: Generation,
    /// The peer's socket address on this connection.
    pub addr: SocketAddr,
}

impl std::fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (gen {})",
            self.node_id, self.addr, self.generation
        )
    }
}

/// The dialling side: sends our hello and reads the peer's reply, which
/// must name `certified` when the connection is TLS. Returns the peer and
/// whatever arrived after the reply.
pub(crate) async fn as_dialler(
    identity: &LocalIdentity,
    stream: &mut Stream,
    certified: Option<NodeId>,
) -> Result<(PeerInfo, BytesMut), HandshakeError> {
    let hello = identity.hello().encode()?;
    write_frame(&mut stream.write, &hello).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let reply = read_handshake_frame(&mut stream.read, &mut buf).await?;
    match HelloReply::decode(&reply)? {
        HelloReply::Accepted {
            node_id,
            generation,
            ..
        } => {
            if let Some(certified) = certified {
                if certified != node_id {
                    return Err(HandshakeError::IdentityMismatch(IdMismatch::boxed(certified, node_id)));
                }
            }
            let peer = PeerInfo {
                node_id,
                generation,
                addr: stream.peer_addr,
            };
            Ok((peer, buf))
        }
        HelloReply::Refused { reason } => Err(HandshakeError::Refused(reason)),
    }
}

/// The accepting side: reads the peer's hello, checks it (and, on a TLS
/// connection, that it claims the `certified` id), and answers. A hello
/// that fails to decode or to pass the checks is answered with the refusal
/// (best effort: the peer may be gone) before the error is returned.
/// Returns the peer and whatever arrived after its hello.
pub(crate) async fn as_acceptor(
    identity: &LocalIdentity,
    stream: &mut Stream,
    certified: Option<NodeId>,
) -> Result<(PeerInfo, BytesMut), HandshakeError> {
    let mut buf = BytesMut::with_capacity(1024);
    let frame = read_handshake_frame(&mut stream.read, &mut buf).await?;
    let hello = match Hello::decode(&frame) {
        Ok(hello) => hello,
        Err(error) => {
            if let Some(reason) = error.refusal() {
                let reply = HelloReply::Refused { reason }.encode()?;
                let _ = write_frame(&mut stream.write, &reply).await;
            }
            return Err(error);
        }
    };
    if let Err(reason) = check_hello(identity, &hello) {
        let reply = HelloReply::Refused {
            reason: reason.clone(),
        }
        .encode()?;
        let _ = write_frame(&mut stream.write, &reply).await;
        return Err(HandshakeError::Malformed {
            detail: format!("refused: {reason}"),
        });
    }
    let node_id = NodeId::new(&hello.node_id).map_err(HandshakeError::InvalidNodeId)?;
    if let Some(certified) = certified {
        if let Err(reason) = check_certified(certified, node_id) {
            let reply = HelloReply::Refused { reason }.encode()?;
            let _ = write_frame(&mut stream.write, &reply).await;
            return Err(HandshakeError::IdentityMismatch(IdMismatch::boxed(certified, node_id)));
        }
    }
    write_frame(&mut stream.write, &identity.accepted().encode()?).await?;
    let peer = PeerInfo {
        node_id,
        generation: Generation::new(hello.generation),
        addr: stream.peer_addr,
    };
    Ok((peer, buf))
}

/// Writes one handshake frame.
async fn write_frame(
    write: &mut (dyn AsyncWrite + Send + Unpin),
    payload: &[u8],
) -> Result<(), HandshakeError> {
    let mut out = BytesMut::new();
    encode_frame(payload, PRE_HANDSHAKE_MAX_FRAME, &mut out).map_err(|error| {
        HandshakeError::Malformed {
            detail: error.to_string(),
        }
    })?;
    // Flushed: under TLS the frame may otherwise wait in the session.
    write.write_all(&out).await.map_err(|e| io_failure("write", e))?;
    write.flush().await.map_err(|e| io_failure("write", e))
}

/// An I/O error during the handshake: a TLS failure when rustls raised it
/// (a TLS 1.3 client learns that the server refused its certificate only
/// when it next reads), a malformed exchange otherwise.
fn io_failure(what: &str, error: std::io::Error) -> HandshakeError {
    let detail = format!("{what} failed: {error}");
    if error
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
    {
        HandshakeError::Tls { detail }
    } else {
        HandshakeError::Malformed { detail }
    }
}

/// Reads one frame under the pre-handshake limit; whatever arrived after it
/// stays in `buf`.
async fn read_handshake_frame(
    read: &mut (dyn AsyncRead + Send + Unpin),
    buf: &mut BytesMut,
) -> Result<Bytes, HandshakeError> {
    let decoder = FrameDecoder::new(PRE_HANDSHAKE_MAX_FRAME);
    loop {
        match decoder.decode(buf) {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(error) => {
                return Err(HandshakeError::Malformed {
                    detail: error.to_string(),
                })
            }
        }
        buf.reserve(1024);
        match read.read_buf(buf).await {
            Ok(0) => {
                return Err(HandshakeError::Malformed {
                    detail: "connection closed during the handshake".to_owned(),
                })
            }
            Ok(_) => {}
            Err(error) => return Err(io_failure("read", error)),
        }
    }
}
