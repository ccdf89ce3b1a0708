//! Transports and a connection's outbound side: the byte-stream seam every connection
//! runs over ([`Transport`], and [`Detached`], its sendable form for the hand-off to the
//! session's shard), plain TCP ([`tcp`], on the shard's `netpoll` readiness), TLS over
//! it ([`tls`]), WebSocket over either ([`ws`]), the PROXY protocol header a load balancer
//! puts first ([`proxy`]), the socket the
//! reader and writer of one connection share ([`Socket`]), the outbox and its writer task
//! ([`conn`]), and a connection's place under a connection limit ([`Admitted`]).
//!
//! A leaf below the engine: the front reads and hands off through it, the engine's
//! sessions write into the outbox; it knows MQTT only as far as encoding the packets it
//! is given.

pub mod conn;
pub mod proxy;
pub mod tcp;
pub mod tls;
pub mod ws;
mod x509;

use std::cell::RefCell;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};

pub use conn::{reason_props, CloseCause, Conn, OutboxBudget};

/// A connection's byte stream on the shard that serves it: what the handshake, the read
/// loop and the writer use, whatever carries the bytes (TCP, TLS over it, WebSocket over
/// either). Reads and writes are the futures-io traits; the rest is control.
pub trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Bounds each read: one that waits longer fails with `TimedOut` (keep-alive, and the
    /// CONNECT wait).
    fn set_read_timeout(&mut self, d: Option<Duration>);
    /// Shuts the stream down: pending reads and writes return at once (`Both`), or the
    /// peer reads to the end while it may still be read from (`Write`).
    fn shutdown(&mut self, how: Shutdown);
    /// The peer's address, when the transport knows one.
    fn peer_addr(&self) -> Option<SocketAddr>;
    /// Writes what the stream takes now, without waiting and without taking the place of
    /// the writer task's waiter (`WouldBlock` when nothing fits, or the transport cannot).
    /// For answers the read side owes the peer (WebSocket pongs and closes, TLS records).
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = buf;
        Err(io::ErrorKind::WouldBlock.into())
    }
    /// Who the peer's verified certificate names (TLS with client certificates), if any.
    fn identity(&self) -> Option<String> {
        None
    }
    /// Takes the connection off this shard, in a form that can be sent to another and
    /// attached there with all the state it needs (for TLS: the session after the
    /// handshake; for WebSocket: the framing state), not only a descriptor.
    fn detach(self: Box<Self>) -> io::Result<Detached>;
}

/// A transport on its way to another shard: sendable, with no runtime object inside.
pub trait Attach: Send + std::fmt::Debug {
    /// Makes it a live transport on the calling shard.
    fn attach(self: Box<Self>) -> io::Result<Box<dyn Transport>>;
}

/// A detached transport (see [`Transport::detach`]).
#[derive(Debug)]
pub struct Detached(pub Box<dyn Attach>);

impl Detached {
    /// Attaches it on the calling shard.
    pub fn attach(self) -> io::Result<Box<dyn Transport>> {
        self.0.attach()
    }
}

/// One transport shared by the reader and writer tasks of a connection. Each poll
/// borrows it only for the duration of the call; the poller keeps separate read and write
/// waiters, so a pending read and a pending write coexist.
#[derive(Clone)]
pub struct Socket(Rc<RefCell<Box<dyn Transport>>>);

impl Socket {
    /// Wraps a transport.
    pub fn new(t: Box<dyn Transport>) -> Self {
        Socket(Rc::new(RefCell::new(t)))
    }

    /// Sets the read timeout (keep-alive).
    pub fn set_read_timeout(&self, d: Option<Duration>) {
        self.0.borrow_mut().set_read_timeout(d);
    }

    /// Shuts the transport down both ways: pending reads and writes return at once.
    pub fn shutdown(&self) {
        self.0.borrow_mut().shutdown(Shutdown::Both);
    }

    /// Shuts the transport down for writing: the client reads to the end of the stream,
    /// and can still be read from.
    pub fn shutdown_write(&self) {
        self.0.borrow_mut().shutdown(Shutdown::Write);
    }

    /// The peer's address, if known.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.0.borrow().peer_addr()
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut **self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut **self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut **self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut **self.0.borrow_mut()).poll_close(cx)
    }
}

/// One admitted connection, counted against the node's and its listener's connection
/// limits until dropped.
#[derive(Debug)]
pub struct Admitted(Arc<AtomicUsize>, Option<Arc<AtomicUsize>>);

impl Admitted {
    /// Counts one more connection in `node` and `listener`; also returns how many each
    /// had before.
    pub fn count(node: &Arc<AtomicUsize>, listener: Option<&Arc<AtomicUsize>>) -> (Admitted, usize, usize) {
        let before = node.fetch_add(1, Ordering::Relaxed);
        let on_listener = listener.map_or(0, |l| l.fetch_add(1, Ordering::Relaxed));
        (Admitted(node.clone(), listener.cloned()), before, on_listener)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        if let Some(l) = &self.1 {
            l.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
