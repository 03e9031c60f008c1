//! turmoil's simulated TCP behind the transport's socket seam.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;

use gridkv::net::io::{BoxFuture, Listener, Network, Stream};

/// turmoil's sockets behind the transport's seam.
pub struct SimNet;

struct SimListener(turmoil::net::TcpListener);

fn split(stream: turmoil::net::TcpStream) -> io::Result<Stream> {
    let peer_addr = stream.peer_addr()?;
    let (read, write) = stream.into_split();
    Ok(Stream {
        read: Box::new(read),
        write: Box::new(write),
        peer_addr,
    })
}

impl Network for SimNet {
    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(addr).await?;
            Ok(Box::new(SimListener(listener)) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Stream>> {
        Box::pin(async move { split(turmoil::net::TcpStream::connect(addr).await?) })
    }
}

impl Listener for SimListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<Stream>> {
        Box::pin(async move { split(self.0.accept().await?.0) })
    }
}
