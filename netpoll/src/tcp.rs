//! TCP on the thread's [`Poller`]: a connected [`Stream`] (futures-io reads and writes as
//! non-blocking syscalls, a read timeout, shutdown, and its descriptor back when it moves
//! to another thread) and a [`Listener`] that accepts them.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};

use crate::poller::{Poller, Registration, Way};

/// A TCP connection on its thread.
pub struct Stream {
    /// Dropped before the descriptor (fields drop in order): deregistered, then closed.
    reg: Registration,
    fd: OwnedFd,
    read_timeout: Option<Duration>,
}

impl Stream {
    /// Takes a connected socket onto the calling thread (made non-blocking here).
    pub fn new(fd: OwnedFd) -> io::Result<Stream> {
        socket2::SockRef::from(&fd).set_nonblocking(true)?;
        let reg = Poller::local()?.register(fd.as_raw_fd())?;
        Ok(Stream { reg, fd, read_timeout: None })
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Bounds each read: one that waits longer fails with `TimedOut`.
    pub fn set_read_timeout(&mut self, d: Option<Duration>) {
        self.read_timeout = d;
        self.reg.disarm_deadline();
    }

    /// Shuts the stream down; waiting reads and writes retry at once and see it.
    pub fn shutdown(&self, how: Shutdown) {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: shutdown(2) on the descriptor this stream owns; an error (already
        // shut down or reset) is harmless and ignored.
        unsafe {
            libc::shutdown(self.raw(), how);
        }
        self.reg.wake_all();
    }

    /// Writes what the socket takes now without waiting and without taking the place of
    /// a task waiting to write: `WouldBlock` when it takes nothing (the writer's next
    /// poll waits for room as usual).
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
            let n = unsafe {
                libc::send(self.raw(), buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            match io_result(n) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.reg.clear(Way::Write);
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        socket2::SockRef::from(&self.fd).peer_addr().ok().and_then(|a| a.as_socket())
    }

    /// Leaves this thread's poller and hands back the descriptor (to move the connection
    /// to another thread, where [`Stream::new`] takes it on).
    pub fn into_fd(self) -> OwnedFd {
        let Stream { reg, fd, .. } = self;
        drop(reg);
        fd
    }
}

/// The result of a non-blocking syscall that returns a byte count.
fn io_result(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            if self.reg.poll_ready(Way::Read, cx).is_ready() {
                // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
                let n = unsafe { libc::recv(self.raw(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
                match io_result(n) {
                    Ok(n) => {
                        // A short read emptied the socket: the next arrival is an edge.
                        if n > 0 && n < buf.len() {
                            self.reg.clear(Way::Read);
                        }
                        self.reg.disarm_deadline();
                        return Poll::Ready(Ok(n));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.reg.clear(Way::Read),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            if self.reg.take_timed_out() {
                return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
            if let Some(limit) = self.read_timeout {
                self.reg.arm_deadline(limit);
            }
            return Poll::Pending;
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            if self.reg.poll_ready(Way::Write, cx).is_pending() {
                return Poll::Pending;
            }
            // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
            let n = unsafe {
                libc::send(self.raw(), buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            match io_result(n) {
                Ok(n) => {
                    // A short write filled the socket: the next room is an edge.
                    if n < buf.len() {
                        self.reg.clear(Way::Write);
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.reg.clear(Way::Write),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shutdown(Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}

/// A bound, listening TCP socket on `addr` with `SO_REUSEPORT`, so that every thread can
/// listen on the same address and the kernel spreads connections between them.
pub fn listening_socket(addr: SocketAddr, backlog: i32) -> io::Result<socket2::Socket> {
    let domain = if addr.is_ipv6() { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let sk = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    sk.set_reuse_address(true)?;
    sk.set_reuse_port(true)?;
    sk.bind(&addr.into())?;
    sk.listen(backlog)?;
    Ok(sk)
}

/// A listening socket on its thread (non-blocking, registered in the thread's poller).
/// Dropping it deregisters, then closes the socket (fields drop in order).
pub struct Listener {
    reg: Registration,
    fd: OwnedFd,
}

impl Listener {
    /// Takes a bound, listening socket onto the calling thread.
    pub fn new(fd: OwnedFd) -> io::Result<Listener> {
        socket2::SockRef::from(&fd).set_nonblocking(true)?;
        let reg = Poller::local()?.register(fd.as_raw_fd())?;
        Ok(Listener { reg, fd })
    }

    /// The address it listens on (port 0 resolved).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket2::SockRef::from(&self.fd)
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
    }

    /// The next connection: a non-blocking socket with `TCP_NODELAY` set.
    pub async fn accept(&self) -> io::Result<Stream> {
        let fd = futures_lite::future::poll_fn(|cx| loop {
            if self.reg.poll_ready(Way::Read, cx).is_pending() {
                return Poll::Pending;
            }
            // SAFETY: accept4(2) without an address buffer; a negative result is an error.
            let fd = unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: a fresh descriptor from accept4, owned by nobody else.
                return Poll::Ready(Ok(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => self.reg.clear(Way::Read),
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => {}
                _ => return Poll::Ready(Err(e)),
            }
        })
        .await?;
        let _ = socket2::SockRef::from(&fd).set_nodelay(true);
        Stream::new(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::AsyncReadExt;
    use std::io::Write;
    use std::os::fd::{FromRawFd, IntoRawFd};
    use std::time::Instant;

    #[test]
    fn a_waiting_read_times_out_and_one_with_data_does_not() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
                // SAFETY: into_raw_fd hands over the descriptor.
                let mut s = Stream::new(unsafe { OwnedFd::from_raw_fd(b.into_raw_fd()) }).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200)));
                let mut buf = [0u8; 8];
                let started = Instant::now();
                let limit = async {
                    glommio::timer::sleep(Duration::from_secs(10)).await;
                    panic!("the read did not time out within 10 s");
                };
                let r = futures_lite::future::or(s.read(&mut buf), limit).await;
                assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
                assert!(started.elapsed() >= Duration::from_millis(200), "not before its deadline");
                // Data before the deadline: read, and the deadline is gone with it.
                a.write_all(b"ok").unwrap();
                assert_eq!(s.read(&mut buf).await.unwrap(), 2);
                assert_eq!(s.reg.poller.deadlines.get(), 0, "no deadline left armed");
                // The next wait arms a fresh deadline, and it times out again.
                let r = futures_lite::future::or(s.read(&mut buf), async {
                    glommio::timer::sleep(Duration::from_secs(10)).await;
                    panic!("the second read did not time out within 10 s");
                })
                .await;
                assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
                drop(s);
                drop(a);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
