//! Plain TCP: the first [`Transport`], a [`netpoll::Stream`] on the shard's poller; its
//! detached form is the socket's descriptor.
//!
//! Used by the front's listeners and hand-off.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use netpoll::Stream;

use super::{Attach, Detached, Transport};

/// A TCP connection on its shard.
pub struct Tcp(pub Stream);

impl Transport for Tcp {
    fn set_read_timeout(&mut self, d: Option<Duration>) {
        self.0.set_read_timeout(d);
    }

    fn shutdown(&mut self, how: Shutdown) {
        self.0.shutdown(how);
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.0.peer_addr()
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn detach(self: Box<Self>) -> io::Result<Detached> {
        Ok(Detached(Box::new(TcpFd(self.0.into_fd()))))
    }
}

impl AsyncRead for Tcp {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// A TCP connection between shards: its descriptor.
#[derive(Debug)]
struct TcpFd(OwnedFd);

impl Attach for TcpFd {
    fn attach(self: Box<Self>) -> io::Result<Box<dyn Transport>> {
        Ok(Box::new(Tcp(Stream::new(self.0)?)))
    }
}
