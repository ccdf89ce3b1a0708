//! One MQTT connection of the load generator: connect (with an optional source address,
//! over TCP, TLS or WebSocket: [`crate::dial`]), the CONNECT/CONNACK exchange, and a writer task that drains an outbox so that every
//! task of the client (publisher schedule, acknowledgements, keep-alive pings) writes
//! whole frames through one place, flushed once per wake-up.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::dial::{Dial, Io};
use bytes::BytesMut;
use futures_lite::{future::poll_fn, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use proto::{ConnAck, Connect, Packet, Properties, Props, Protocol};

/// How long a CONNECT may wait for its CONNACK.
const CONNACK_WAIT: Duration = Duration::from_secs(10);
/// Bytes a client may have queued before its publisher waits for the writer.
pub const OUTBOX_HIGH: usize = 256 * 1024;

/// A socket read and written by different tasks; each poll borrows it only for the call.
#[derive(Clone)]
pub struct Sock(Rc<RefCell<Box<dyn Io>>>);

impl AsyncRead for Sock {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Sock {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

impl Sock {
    /// Sets the read timeout.
    pub fn set_read_timeout(&self, d: Option<Duration>) {
        self.0.borrow_mut().set_read_timeout(d);
    }
}

/// A connected client: its socket, protocol, and outbox.
pub struct Link {
    /// The socket.
    pub sock: Sock,
    /// Protocol.
    pub protocol: Protocol,
    /// Client id, for error messages.
    pub client_id: String,
    /// QoS 1/2 PUBLISHes the broker accepts unacknowledged: its 5.0 Receive Maximum, else
    /// the packet id space.
    pub receive_max: u16,
    out: RefCell<BytesMut>,
    writer_waker: Cell<Option<Waker>>,
    drained_waker: Cell<Option<Waker>>,
    closed: Cell<bool>,
    /// We closed it (sent DISCONNECT), rather than a failed write.
    closed_by_us: Cell<bool>,
}

/// The human name of a CONNACK code.
pub fn connack_reason(protocol: Protocol, code: u8) -> String {
    let name = match (protocol, code) {
        (Protocol::V4, 1) => "unacceptable protocol version",
        (Protocol::V4, 2) => "identifier rejected",
        (Protocol::V4, 3) => "server unavailable",
        (Protocol::V4, 4) => "bad user name or password",
        (Protocol::V4, 5) => "not authorized",
        (Protocol::V5, 0x80) => "unspecified error",
        (Protocol::V5, 0x81) => "malformed packet",
        (Protocol::V5, 0x82) => "protocol error",
        (Protocol::V5, 0x84) => "unsupported protocol version",
        (Protocol::V5, 0x85) => "client identifier not valid",
        (Protocol::V5, 0x86) => "bad user name or password",
        (Protocol::V5, 0x87) => "not authorized",
        (Protocol::V5, 0x88) => "server unavailable",
        (Protocol::V5, 0x89) => "server busy",
        (Protocol::V5, 0x8A) => "banned",
        (Protocol::V5, 0x8C) => "bad authentication method",
        (Protocol::V5, 0x97) => "quota exceeded",
        (Protocol::V5, 0x9F) => "connection rate exceeded",
        _ => "refused",
    };
    format!("0x{code:02x} ({name})")
}

/// Opens a connection (from `source` if given, over what `dial` says) and completes
/// CONNECT/CONNACK. Returns the link and the time from the first byte of the connection
/// (TLS handshake and WebSocket upgrade included) to CONNACK.
pub async fn connect(
    broker: SocketAddr,
    source: Option<IpAddr>,
    dial: &Dial,
    protocol: Protocol,
    client_id: &str,
    clean: bool,
    keep_alive: u16,
) -> Result<(Rc<Link>, Duration), String> {
    let started = Instant::now();
    let stream = crate::dial::open(broker, source, dial).await.map_err(|e| format!("{client_id}: {e}"))?;
    let sock = Sock(Rc::new(RefCell::new(stream)));
    let mut properties = Properties::default();
    if protocol == Protocol::V5 && !clean {
        properties.session_expiry_interval = Some(300);
    }
    let connect = Packet::Connect(Connect {
        protocol,
        clean_start: clean,
        keep_alive,
        client_id: client_id.to_owned(),
        will: None,
        username: dial.username.clone(),
        password: dial.password.as_ref().map(|p| bytes::Bytes::copy_from_slice(p.as_bytes())),
        properties: properties.into(),
        mqtt31: false,
    });
    let mut buf = BytesMut::new();
    connect.write(protocol, &mut buf).map_err(|e| format!("encode CONNECT: {e}"))?;
    let mut w = sock.clone();
    w.write_all(&buf).await.map_err(|e| format!("{client_id}: write CONNECT: {e}"))?;
    w.flush().await.map_err(|e| format!("{client_id}: write CONNECT: {e}"))?;
    sock.set_read_timeout(Some(CONNACK_WAIT));
    let mut rbuf = BytesMut::with_capacity(64);
    let ack = loop {
        match proto::read(&mut rbuf, protocol, usize::MAX) {
            Ok(Packet::ConnAck(a)) => break a,
            Ok(other) => return Err(format!("{client_id}: expected CONNACK, got {other:?}")),
            Err(proto::Error::Incomplete(_)) => {}
            Err(e) => return Err(format!("{client_id}: bad CONNACK: {e}")),
        }
        let mut chunk = [0u8; 256];
        let mut r = sock.clone();
        match r.read(&mut chunk).await {
            Ok(0) => return Err(format!("{client_id}: connection closed before CONNACK")),
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{client_id}: no CONNACK within {CONNACK_WAIT:?}: {e}")),
        }
    };
    let took = started.elapsed();
    let ConnAck { code, properties, .. } = ack;
    if code != 0 {
        return Err(format!("{client_id}: CONNACK refused: {}", connack_reason(protocol, code)));
    }
    let link = Rc::new(Link {
        sock,
        protocol,
        client_id: client_id.to_owned(),
        receive_max: properties.receive_maximum.unwrap_or(u16::MAX),
        out: RefCell::new(BytesMut::with_capacity(4096)),
        writer_waker: Cell::new(None),
        drained_waker: Cell::new(None),
        closed: Cell::new(false),
        closed_by_us: Cell::new(false),
    });
    glommio::spawn_local(writer(link.clone())).detach();
    if keep_alive > 0 {
        glommio::spawn_local(pinger(Rc::downgrade(&link), Duration::from_secs(u64::from(keep_alive)) / 2)).detach();
    }
    Ok((link, took))
}

impl Link {
    /// Appends bytes to the outbox via `fill` and wakes the writer.
    pub fn push(&self, fill: impl FnOnce(&mut BytesMut)) {
        fill(&mut self.out.borrow_mut());
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
    }

    /// Queues an encoded packet.
    pub fn send(&self, p: &Packet) {
        let protocol = self.protocol;
        self.push(|b| {
            let _ = p.write(protocol, b);
        });
    }

    /// Bytes queued and not yet handed to the socket.
    pub fn queued(&self) -> usize {
        self.out.borrow().len()
    }

    /// Waits until the outbox is below `level` (or the link closed).
    pub async fn drained_below(&self, level: usize) {
        poll_fn(|cx| {
            if self.queued() < level || self.closed.get() {
                return Poll::Ready(());
            }
            self.drained_waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// True once writing failed or the link was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// True once [`close`](Link::close) was called: the end of the connection is ours.
    pub fn closed_by_us(&self) -> bool {
        self.closed_by_us.get()
    }

    /// Sends DISCONNECT after what is queued and stops the writer.
    pub fn close(&self) {
        self.send(&Packet::Disconnect(proto::Disconnect { reason: 0, properties: Props::default() }));
        self.closed.set(true);
        self.closed_by_us.set(true);
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
    }
}

async fn writer(link: Rc<Link>) {
    let mut spare = BytesMut::with_capacity(4096);
    let mut sock = link.sock.clone();
    loop {
        let more = poll_fn(|cx| {
            let mut b = link.out.borrow_mut();
            if !b.is_empty() {
                spare.clear();
                std::mem::swap(&mut *b, &mut spare);
                return Poll::Ready(true);
            }
            if link.closed.get() {
                return Poll::Ready(false);
            }
            link.writer_waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        if !more {
            break;
        }
        // The flush: TLS and WebSocket may hold the end of a write.
        if sock.write_all(&spare).await.is_err() || sock.flush().await.is_err() {
            link.closed.set(true);
            break;
        }
        if let Some(w) = link.drained_waker.take() {
            w.wake();
        }
    }
    let _ = sock.close().await;
    if let Some(w) = link.drained_waker.take() {
        w.wake();
    }
}

/// Sends PINGREQ every half keep-alive while the link lives.
async fn pinger(link: std::rc::Weak<Link>, every: Duration) {
    loop {
        glommio::timer::sleep(every).await;
        match link.upgrade() {
            Some(l) if !l.is_closed() => l.send(&Packet::PingReq),
            _ => return,
        }
    }
}
