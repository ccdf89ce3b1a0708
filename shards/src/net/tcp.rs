//! Plain TCP: the first [`Transport`]. Its detached form is the socket's descriptor.
//!
//! Used by the front's listeners and hand-off.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::{Attach, Detached, Transport};

/// A TCP connection on its shard.
pub struct Tcp(pub TcpStream);

impl Transport for Tcp {
    fn set_read_timeout(&self, d: Option<Duration>) {
        let _ = self.0.set_read_timeout(d);
    }

    fn shutdown(&self, how: Shutdown) {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: shutdown(2) on the descriptor this stream owns; an error (already shut
        // down or reset) is harmless and ignored.
        unsafe {
            libc::shutdown(self.0.as_raw_fd(), how);
        }
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.0.peer_addr().ok()
    }

    fn detach(self: Box<Self>) -> io::Result<Detached> {
        // glommio's stream closes its descriptor when dropped: hand over a duplicate.
        // SAFETY: dup(2) of a descriptor we own; the new descriptor is owned by the OwnedFd.
        let fd = unsafe { libc::dup(self.0.as_raw_fd()) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor returned by dup above, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Detached(Box::new(TcpFd(fd))))
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
        // SAFETY: the descriptor was handed over with ownership; it becomes the stream's.
        let stream = unsafe { TcpStream::from_raw_fd(self.0.into_raw_fd()) };
        Ok(Box::new(Tcp(stream)))
    }
}
