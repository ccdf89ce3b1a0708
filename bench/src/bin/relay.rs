//! `relay`: a "dumb broker" on raw io_uring, the baseline row of RingMQ's benchmark table.
//!
//! It moves PUBLISH bytes the way a broker must (socket in, across cores, socket out) and
//! does none of a broker's work: no topics, sessions, QoS, retained messages or re-encoding.
//! It answers only what a client needs to start: CONNECT gets a success CONNACK in the
//! client's protocol version, SUBSCRIBE a SUBACK granting the requested QoS, PINGREQ a
//! PINGRESP. Every PUBLISH frame is forwarded byte for byte to every connection that has
//! subscribed to anything (the publisher too, if it subscribed). Nothing is acknowledged, so
//! clients must use QoS 0, and all of them one protocol version. The distance between its
//! figures and RingMQ's is the cost of being an MQTT broker.
//!
//! Threads, as in RingMQ: one glommio executor per core (pinned where allowed), each with its
//! own SO_REUSEPORT listener on the same address. The complete PUBLISH frames at the front
//! of a connection's read buffer are split off as one `Bytes` chunk, copied into the outbox
//! of each local subscriber, and sent to every other executor over a full mesh of bounded
//! channels. Mesh receivers only append to local outboxes and never send, so the mesh cannot
//! deadlock; a full channel makes the reader wait (backpressure). Each connection's writer
//! task swaps its outbox out and writes it in one call; a subscriber whose outbox passes
//! [`MAX_OUTBOX`] is disconnected.
//!
//! Run: `cargo run -p bench --release --bin relay -- --listen 127.0.0.1:1884 --threads 2`,
//! then e.g. `mosquitto_sub -p 1884 -t x & mosquitto_pub -p 1884 -t x -m hi`. Port 0 picks a
//! free port (printed at start). Stop it with Ctrl-C.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::mpsc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::future::poll_fn;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use netpoll::{listening_socket, Listener};
use proto::{ConnAck, Packet, Props, Protocol, SubAck};
use shards::net::tcp::Tcp;
use shards::net::Socket;

/// Smallest read asked of the socket; a larger pending frame asks for all it still needs.
const READ: usize = 16 * 1024;
/// Largest frame accepted: a bigger one closes the connection.
const MAX_FRAME: usize = 1 << 20;
/// Outbox size past which a subscriber counts as not keeping up and is disconnected.
const MAX_OUTBOX: usize = 16 << 20;
/// Chunks in flight per ordered pair of executors, as RingMQ's 256 batches per channel.
const CHANNEL_CAPACITY: usize = 256;
/// Fixed I/O buffer memory per executor: small, because locked memory is limited (8 MiB).
const IO_MEMORY: usize = 512 * 1024;
const USAGE: &str = "usage: relay [--listen ADDR:PORT (default 127.0.0.1:1884)] [--threads N (default: CPUs)]";

/// A connection's outbound bytes and the waker of its writer task.
struct Outbox {
    buf: RefCell<BytesMut>,
    waker: Cell<Option<Waker>>,
    closed: Cell<bool>,
    socket: Socket,
}

impl Outbox {
    /// Appends forwarded frames, or disconnects a subscriber that is too far behind.
    fn push(&self, frames: &[u8]) {
        if self.closed.get() {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        if buf.len() + frames.len() > MAX_OUTBOX {
            drop(buf);
            self.close();
            self.socket.shutdown();
            return;
        }
        buf.extend_from_slice(frames);
        drop(buf);
        self.wake();
    }

    /// Appends one encoded control packet.
    fn packet(&self, packet: &Packet, protocol: Protocol) {
        if packet.write(protocol, &mut self.buf.borrow_mut()).is_ok() {
            self.wake();
        }
    }

    fn close(&self) {
        self.closed.set(true);
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// One executor's state: its subscribers and its senders to the other executors.
struct Local {
    subscribers: RefCell<Vec<Rc<Outbox>>>,
    peers: Senders<Bytes>,
}

impl Local {
    fn deliver(&self, frames: &[u8]) {
        for s in self.subscribers.borrow().iter() {
            s.push(frames);
        }
    }

    /// Delivers a chunk read here to the local subscribers and to every other executor.
    async fn forward(&self, chunk: Bytes) {
        self.deliver(&chunk);
        for peer in (0..self.peers.nr_consumers()).filter(|p| *p != self.peers.peer_id()) {
            // Err only when the peer has gone away, which happens only at exit.
            let _ = self.peers.send_to(peer, chunk.clone()).await;
        }
    }
}

/// Length of the complete PUBLISH frames at the front of `buf`.
fn publish_run(buf: &[u8]) -> usize {
    let mut at = 0;
    while buf.get(at).is_some_and(|first| first >> 4 == 3) {
        match proto::frame_len(&buf[at..], MAX_FRAME) {
            Ok(Some(len)) if at + len <= buf.len() => at += len,
            _ => break,
        }
    }
    at
}

/// Reads and answers a connection until it closes or breaks the protocol.
async fn read_loop(local: &Local, out: &Rc<Outbox>) {
    let mut socket = out.socket.clone();
    let mut buf = BytesMut::with_capacity(READ);
    let mut protocol = None;
    let mut subscribed = false;
    loop {
        let mut want = READ;
        loop {
            let run = if protocol.is_some() { publish_run(&buf) } else { 0 };
            if run > 0 {
                local.forward(buf.split_to(run).freeze()).await;
                continue;
            }
            let version = protocol.unwrap_or(Protocol::V4);
            match (proto::read(&mut buf, version, MAX_FRAME), protocol) {
                (Ok(Packet::Connect(c)), None) => {
                    protocol = Some(c.protocol);
                    let ack = ConnAck { session_present: false, code: 0, properties: Props::default() };
                    out.packet(&Packet::ConnAck(ack), c.protocol);
                }
                (Ok(_), None) | (Ok(Packet::Disconnect(_)), _) => return,
                (Ok(Packet::Subscribe(s)), _) => {
                    let codes = s.filters.iter().map(|f| f.qos as u8).collect();
                    let ack = SubAck { pkid: s.pkid, codes, properties: Props::default() };
                    out.packet(&Packet::SubAck(ack), version);
                    // After the SUBACK, so no forwarded frame can come before it.
                    if !subscribed {
                        subscribed = true;
                        local.subscribers.borrow_mut().push(out.clone());
                    }
                }
                (Ok(Packet::PingReq), _) => out.packet(&Packet::PingResp, version),
                (Ok(_), _) => {}
                (Err(proto::Error::Incomplete(need)), _) => {
                    want = want.max(need);
                    break;
                }
                (Err(_), _) => return,
            }
        }
        let len = buf.len();
        buf.resize(len + want, 0);
        match socket.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.truncate(len + n),
        }
    }
}

/// Drains the outbox until the connection closes; the bytes queued before a normal close
/// are still written.
async fn write_loop(out: Rc<Outbox>) {
    let mut socket = out.socket.clone();
    let mut spare = BytesMut::with_capacity(READ);
    loop {
        let closed = poll_fn(|cx| {
            if !out.buf.borrow().is_empty() {
                return Poll::Ready(false);
            }
            if out.closed.get() {
                return Poll::Ready(true);
            }
            out.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        if closed {
            return;
        }
        std::mem::swap(&mut *out.buf.borrow_mut(), &mut spare);
        if socket.write_all(&spare).await.is_err() {
            out.close();
            return;
        }
        spare.clear();
    }
}

async fn connection(local: Rc<Local>, stream: netpoll::Stream) {
    let socket = Socket::new(Box::new(Tcp(stream)));
    let out = Rc::new(Outbox { buf: RefCell::default(), waker: Cell::new(None), closed: Cell::new(false), socket });
    let writer = glommio::spawn_local(write_loop(out.clone()));
    read_loop(&local, &out).await;
    local.subscribers.borrow_mut().retain(|s| !Rc::ptr_eq(s, &out));
    out.close();
    writer.await;
}

/// One executor: listen, join the mesh, serve the mesh and the connections forever.
async fn shard(addr: SocketAddr, mesh: MeshBuilder<Bytes, Full>, report: mpsc::Sender<Result<SocketAddr, String>>) {
    // SAFETY: into_raw_fd hands over ownership of the listening socket's descriptor.
    let listener = match listening_socket(addr, 1024)
        .and_then(|sk| Listener::new(unsafe { OwnedFd::from_raw_fd(sk.into_raw_fd()) }))
    {
        Ok(l) => l,
        Err(e) => {
            let _ = report.send(Err(format!("cannot listen on {addr}: {e}")));
            return;
        }
    };
    let _ = report.send(listener.local_addr().map_err(|e| format!("listener address: {e}")));
    let Ok((peers, mut receivers)) = mesh.join().await else { return };
    let local = Rc::new(Local { subscribers: RefCell::default(), peers });
    for (_, rx) in receivers.streams() {
        let local = local.clone();
        glommio::spawn_local(async move {
            while let Some(chunk) = rx.recv().await {
                local.deliver(&chunk);
            }
        })
        .detach();
    }
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(connection(local.clone(), stream)).detach();
            }
            // Out of descriptors or a transient error: back off instead of spinning.
            Err(_) => glommio::timer::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Starts executor `i`, pinned to a CPU when the system allows it, and waits until it
/// listens. An executor that cannot start pinned (its report sender is dropped unused) is
/// started again unbound.
fn start(i: usize, addr: SocketAddr, mesh: &MeshBuilder<Bytes, Full>) -> (SocketAddr, ExecutorJoinHandle<()>) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut why = String::new();
    for placement in [Placement::Fixed(i % cpus), Placement::Unbound] {
        let (report, listening) = mpsc::channel();
        let mesh = mesh.clone();
        let spawned = LocalExecutorBuilder::new(placement)
            .name(&format!("relay-{i}"))
            .io_memory(IO_MEMORY)
            .spawn(move || shard(addr, mesh, report));
        match spawned.map(|handle| (listening.recv(), handle)) {
            Ok((Ok(Ok(bound)), handle)) => return (bound, handle),
            Ok((Ok(Err(e)), _)) => fail(&e),
            Ok((Err(_), _)) => why = "it stopped while starting".into(),
            Err(e) => why = e.to_string(),
        }
    }
    fail(&format!("cannot start executor {i}: {why}"))
}

fn fail(message: &str) -> ! {
    eprintln!("relay: {message}");
    std::process::exit(1);
}

fn parse_args() -> Result<(SocketAddr, usize), String> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 1884));
    let mut threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--threads" => threads = value()?.parse().ok().filter(|n| *n > 0).ok_or("--threads: a number >= 1")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok((listen, threads))
}

fn main() {
    let (listen, threads) = parse_args().unwrap_or_else(|e| fail(&format!("{e}\n{USAGE}")));
    shards::check_io_uring().unwrap_or_else(|e| fail(&e));
    let mesh = MeshBuilder::full(threads, CHANNEL_CAPACITY);
    // Executor 0 binds first, so that port 0 is resolved once and the others share the port.
    let (bound, first) = start(0, listen, &mesh);
    let mut handles = vec![first];
    handles.extend((1..threads).map(|i| start(i, bound, &mesh).1));
    println!("relay listening on {bound} with {threads} executors");
    for h in handles {
        let _ = h.join();
    }
    fail("the executors stopped");
}
