//! The seam between the transport and the sockets it runs on.
//!
//! The transport never names a socket type: it binds and dials through a
//! [`Network`], which hands back each connection as a read half and a write
//! half. [`Tcp`] is the real one (tokio sockets, TCP_NODELAY, keep-alive,
//! DNS resolved again on every dial); a simulator or a fault-injecting test
//! network implements the same trait, so the same transport code runs on
//! both.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed future, as the object-safe [`Network`] and [`Listener`] return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One connection, split into halves so reading and writing proceed
/// independently.
pub struct Stream {
    /// Bytes from the peer.
    pub read: Box<dyn AsyncRead + Send + Unpin>,
    /// Bytes to the peer.
    pub write: Box<dyn AsyncWrite + Send + Unpin>,
    /// The peer's socket address.
    pub peer_addr: SocketAddr,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

/// Where connections come from: bind a listener, dial a peer.
///
/// # Examples
///
/// ```
/// use gridkv::net::io::{Network, Tcp};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let tcp = Tcp::default();
/// let listener = tcp.bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let target = addr.to_string();
/// let (dialled, accepted) = tokio::join!(tcp.connect(&target), listener.accept());
/// assert_eq!(dialled?.peer_addr, addr);
/// assert_eq!(accepted?.peer_addr.ip(), addr.ip());
/// # Ok::<(), std::io::Error>(())
/// # })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Network: Send + Sync + 'static {
    /// Listens on `addr` (`host:port`; port 0 picks a free one).
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>>;
    /// Opens a connection to `addr` (`host:port`; a host name is resolved
    /// on every call, so a peer that moved is found again).
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Stream>>;
}

/// A bound listener.
pub trait Listener: Send + Sync {
    /// The address actually bound (with the port chosen when 0 was asked).
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// The next inbound connection.
    fn accept(&self) -> BoxFuture<'_, io::Result<Stream>>;
}

/// Real TCP on tokio sockets: TCP_NODELAY (frames are flushed by the
/// writer's own batching, never held back by Nagle) and TCP keep-alive (so
/// the kernel, too, eventually notices a peer that vanished).
#[derive(Debug, Clone, Copy)]
pub struct Tcp {
    /// Idle time before the kernel's first keep-alive probe. Default 10 s;
    /// the transport's heartbeats notice a dead peer much sooner, this is
    /// the backstop.
    pub keepalive: Duration,
}

impl Default for Tcp {
    fn default() -> Self {
        Self {
            keepalive: Duration::from_secs(10),
        }
    }
}

impl Tcp {
    fn prepare(&self, stream: tokio::net::TcpStream) -> io::Result<Stream> {
        stream.set_nodelay(true)?;
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(self.keepalive)
            .with_interval(self.keepalive);
        socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
        let peer_addr = stream.peer_addr()?;
        let (read, write) = stream.into_split();
        Ok(Stream {
            read: Box::new(read),
            write: Box::new(write),
            peer_addr,
        })
    }
}

impl Network for Tcp {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TcpListener {
                listener,
                tcp: *self,
            }) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move {
            let mut last = None;
            for resolved in tokio::net::lookup_host(addr).await? {
                match tokio::net::TcpStream::connect(resolved).await {
                    Ok(stream) => return self.prepare(stream),
                    Err(error) => last = Some(error),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{addr} resolved to no address"),
                )
            }))
        })
    }
}

struct TcpListener {
    listener: tokio::net::TcpListener,
    tcp: Tcp,
}

impl Listener for TcpListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(async move {
            let (stream, _) = self.listener.accept().await?;
            self.tcp.prepare(stream)
        })
    }
}
