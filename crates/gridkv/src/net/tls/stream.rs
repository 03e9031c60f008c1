//! TLS over a transport [`Stream`]: the two halves joined into one
//! stream for rustls, the handshake run, the halves split again. Works
//! over any [`Network`](crate::net::io::Network), real TCP or simulated.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::identity::CertInfo;
use super::store::TlsStore;
use crate::net::handshake::HandshakeError;
use crate::net::io::Stream;
use crate::NodeId;

/// The name the dialler presents. Peers are verified by the id their
/// certificate names, never by host name, so every dial uses this one.
const SERVER_NAME: &str = "gridkv";

/// A [`Stream`]'s halves as one stream.
struct Joined {
    read: Box<dyn AsyncRead + Send + Unpin>,
    write: Box<dyn AsyncWrite + Send + Unpin>,
}

impl AsyncRead for Joined {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Joined {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.write.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_shutdown(cx)
    }
}

fn tls_error(error: impl std::fmt::Display) -> HandshakeError {
    HandshakeError::Tls {
        detail: error.to_string(),
    }
}

/// The id the peer's (already verified) leaf certificate names.
fn certified(certs: Option<&[rustls::pki_types::CertificateDer<'static>]>) -> Result<NodeId, HandshakeError> {
    let leaf = certs
        .and_then(|certs| certs.first())
        .ok_or_else(|| tls_error("the peer sent no certificate"))?;
    CertInfo::parse(leaf, "peer certificate")
        .and_then(|info| info.node())
        .map(|(id, _)| id)
        .map_err(tls_error)
}

fn split<S>(tls: S, peer_addr: std::net::SocketAddr) -> Stream
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(tls);
    Stream {
        read: Box::new(read),
        write: Box::new(write),
        peer_addr,
    }
}

/// The dialling side's TLS handshake, with the configuration current now.
/// Returns the encrypted stream and the id the peer's certificate names.
pub(crate) async fn connect(store: &TlsStore, stream: Stream) -> Result<(Stream, NodeId), HandshakeError> {
    let peer_addr = stream.peer_addr;
    let joined = Joined {
        read: stream.read,
        write: stream.write,
    };
    let name = ServerName::try_from(SERVER_NAME).map_err(tls_error)?;
    let tls = TlsConnector::from(store.client_config())
        .connect(name, joined)
        .await
        .map_err(tls_error)?;
    let peer = certified(tls.get_ref().1.peer_certificates())?;
    Ok((split(tls, peer_addr), peer))
}

/// The accepting side's TLS handshake, with the configuration current now.
/// Returns the encrypted stream and the id the peer's certificate names.
pub(crate) async fn accept(store: &TlsStore, stream: Stream) -> Result<(Stream, NodeId), HandshakeError> {
    let peer_addr = stream.peer_addr;
    let joined = Joined {
        read: stream.read,
        write: stream.write,
    };
    let tls = TlsAcceptor::from(store.cluster_server_config())
        .accept(joined)
        .await
        .map_err(tls_error)?;
    let peer = certified(tls.get_ref().1.peer_certificates())?;
    Ok((split(tls, peer_addr), peer))
}
