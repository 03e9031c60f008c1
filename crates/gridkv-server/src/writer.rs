//! Writing one connection's replies: encoded into a buffer that is
//! flushed to the socket once [`FLUSH_AT`] bytes wait (or the pipeline is
//! answered), large bulks written straight from the value, and every byte
//! waiting accounted in [`ClientsMemory`](crate::clients::ClientsMemory)
//! so a client that does not read is closed at its bound rather than
//! holding the node's memory.
//!
//! A write waits for a slow reader (the socket's backpressure), except
//! that the client is closed when the registry picks it to free memory,
//! or 5 s after the server begins to shut down.
//!
//! The stream is any [`ClientStream`]: a TCP socket, or TLS over one
//! (`--resp-tls`); the bounds and accounting are the same.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::clients::ClientAccount;
use crate::limits::Limit;
use crate::resp::{Protocol, Reply};
use crate::shared::Shared;

/// Replies are written once this many bytes are waiting, even in the
/// middle of a pipeline or of one large reply.
pub(crate) const FLUSH_AT: usize = 64 << 10;
/// Initial size of the reply buffer.
const INITIAL: usize = 16 << 10;
/// How long a client that does not read may hold up shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a connection closed before its client asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Closed {
    /// The socket failed (or the client went away).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The client reached a bound.
    #[error("closed: exceeds {}", .0.name())]
    Limit(Limit),
    /// The server is shutting down and the client did not read its replies.
    #[error("closed at shutdown with replies unread")]
    Shutdown,
    /// A reply failed after part of it was written; the message is the
    /// error the client could not be sent.
    #[error("closed mid-reply: {0}")]
    MidReply(String),
}

impl From<Limit> for Closed {
    fn from(limit: Limit) -> Self {
        Closed::Limit(limit)
    }
}

/// A client connection's byte stream.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send {
    /// Writes what the stream takes at once, without waiting: `WouldBlock`
    /// if it would have to. The fast path of a reply that fits the
    /// socket's buffer: one system call, no future.
    fn try_write_now(&mut self, bytes: &[u8]) -> io::Result<usize>;
}

impl ClientStream for TcpStream {
    fn try_write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write(bytes)
    }
}

impl ClientStream for TlsStream<TcpStream> {
    /// TLS records are written by the stream's own future, so there is no
    /// synchronous path: every write takes the waiting one.
    fn try_write_now(&mut self, _bytes: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// One connection's socket and reply buffer.
pub(crate) struct Output<'a, S> {
    /// The client's socket (read from by the connection between replies).
    pub(crate) stream: &'a mut S,
    buf: BytesMut,
    /// Bytes of replies fetched but not yet encoded (an `MGET` batch, a
    /// group's replies), counted with the buffer against the bound.
    held: usize,
    /// Of `held`, bytes bounded another way (a group's replies: at most
    /// 64 values), counted for the node but not against the client's
    /// bound, so a pipeline of large GETs is not closed for it.
    exempt: usize,
    account: &'a ClientAccount<'a>,
    shared: &'a Shared,
    shutdown: &'a CancellationToken,
}

impl<'a, S: ClientStream> Output<'a, S> {
    pub(crate) fn new(
        stream: &'a mut S,
        account: &'a ClientAccount<'a>,
        shared: &'a Shared,
        shutdown: &'a CancellationToken,
    ) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(INITIAL),
            held: 0,
            exempt: 0,
            account,
            shared,
            shutdown,
        }
    }

    /// The per-client bound on replies not yet written.
    pub(crate) fn max_output(&self) -> usize {
        self.shared.memory.max_client_output() as usize
    }

    /// Sets the bytes held for replies not yet encoded.
    pub(crate) fn hold(&mut self, bytes: usize) -> Result<(), Closed> {
        self.held = bytes;
        self.exempt = 0;
        self.account()
    }

    /// Sets the bytes of a group's replies not yet encoded: bounded by the
    /// group's size, so counted for the node only.
    pub(crate) fn hold_group(&mut self, bytes: usize) -> Result<(), Closed> {
        self.held = bytes;
        self.exempt = bytes;
        self.account()
    }

    fn account(&self) -> Result<(), Closed> {
        Ok(self
            .account
            .set_output_exempt(self.buf.len() + self.held, self.exempt)?)
    }

    /// Queues `reply`, writing out what waits once it is [`FLUSH_AT`]
    /// bytes or more. A large bulk is written from the value itself.
    pub(crate) async fn reply(&mut self, reply: &Reply, protocol: Protocol) -> Result<(), Closed> {
        if let Reply::Bulk(value) = reply {
            return self.bulk(value).await;
        }
        reply.encode(protocol, &mut self.buf);
        if self.buf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Queues the header of an array of `len` items.
    pub(crate) fn array_header(&mut self, len: usize) {
        Reply::encode_array_header(len, &mut self.buf);
    }

    /// Queues one bulk string.
    pub(crate) async fn bulk(&mut self, value: &Bytes) -> Result<(), Closed> {
        if value.len() < FLUSH_AT {
            Reply::encode_bulk(value, &mut self.buf);
            if self.buf.len() >= FLUSH_AT {
                self.flush().await?;
            }
            return Ok(());
        }
        Reply::encode_bulk_header(value.len(), &mut self.buf);
        self.flush().await?;
        self.account
            .set_output_exempt(value.len() + self.held, self.exempt)?;
        write(self.stream, value, self.account, self.shared, self.shutdown).await?;
        self.buf.extend_from_slice(b"\r\n");
        self.account()
    }

    /// Writes out everything queued.
    pub(crate) async fn flush(&mut self) -> Result<(), Closed> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.account()?;
        let Output {
            stream,
            buf,
            account,
            shared,
            shutdown,
            ..
        } = self;
        write(&mut **stream, buf, account, shared, shutdown).await?;
        buf.clear();
        // A large reply's buffer is not kept for the rest of the connection.
        if buf.capacity() > 4 * FLUSH_AT {
            *buf = BytesMut::with_capacity(INITIAL);
        }
        self.account()
    }
}

/// Writes `bytes` to the socket: at once if the socket takes them, else
/// waiting for the client to read, unless the registry closes the client
/// or shutdown's grace runs out first.
async fn write<S: ClientStream>(
    stream: &mut S,
    bytes: &[u8],
    account: &ClientAccount<'_>,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Result<(), Closed> {
    shared
        .stats
        .net_output_bytes
        .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let mut done = 0;
    // The usual case, a reply the socket buffer takes whole, costs one
    // system call and no futures.
    while done < bytes.len() {
        match stream.try_write_now(&bytes[done..]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e.into()),
        }
    }
    if done == bytes.len() {
        return Ok(());
    }
    tokio::select! {
        // Flushed: TLS may hold the last record until asked.
        written = async {
            stream.write_all(&bytes[done..]).await?;
            stream.flush().await
        } => Ok(written?),
        // The registry's close is at once; shutdown's after a grace.
        () = async {
            account.closed().await;
            if shutdown.is_cancelled() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            }
        } => Err(if shutdown.is_cancelled() {
            Closed::Shutdown
        } else {
            Closed::Limit(Limit::ClientsMemory)
        }),
    }
}
