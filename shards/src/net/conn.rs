//! A client connection's outbound side: the bounded outbox and the writer task that drains
//! it.
//!
//! Runs on the shard that owns the connection's session. Anything on that shard may append
//! packets to the outbox (acknowledgements from the reader, deliveries from the router);
//! the writer task wakes once, swaps the whole outbox out and writes it with one call, so a
//! connection is flushed once per executor tick however many messages arrived for it.
//!
//! The writer task exists only while the connection writes: the first packet queued (or a
//! close) spawns it, and the sweep retires it once a connection wrote nothing for a whole
//! sweep, so an idle connection holds no task of its own for its outbound side.
//!
//! Slow readers: past `max_outbound_buffer` (or when the shard's outboxes together pass
//! their share of `max_outbound_total`) QoS 0 messages are dropped for that connection
//! alone and counted; everything else is still queued up to twice the bound (QoS 1/2 are
//! bounded by the window), past which the connection is closed. A connection is closed
//! for slowness only when its socket accepts no byte for `stuck_timeout`. The outbox is
//! allocated while used and given back after a burst.
//!
//! A leaf below the engine: the front creates a connection's `Conn`; the engine's sessions
//! write PUBLISHes and acknowledgements into it, and its sweep retires idle writers.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{future::poll_fn, AsyncWriteExt};
use proto::{Packet, Properties, Props, Protocol, QoS};

use super::Socket;

/// How long a closing connection may take to flush its last packets to a client that does
/// not read before the socket is shut down anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// An outbox buffer larger than this is given back once the connection is idle (at the
/// sweep) or once it is four times larger than what it carried (the burst is over): idle
/// connections hold next to nothing, busy ones do not regrow their buffers every tick.
const KEEP_BUFFER: usize = 64 * 1024;
/// How long a closed connection's reader may drain what the client still sends (see
/// [`writer`]) before the socket is shut down anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// An outbox holding this much is behind (one that keeps up is flushed every tick): when the
/// shard's outboxes together are at their bound, QoS 0 is dropped for such outboxes only.
const LAGGING: usize = 64 * 1024;

/// The memory of all the outboxes of one shard (their buffers' capacity, the writers'
/// included), against its share of
/// `max_outbound_total`: one per shard, shared by its connections (never across shards).
#[derive(Debug)]
pub struct OutboxBudget {
    used: Cell<usize>,
    cap: usize,
    /// PUBLISH packets queued in this shard's outboxes, by QoS (a metric).
    pub sent: [Cell<u64>; 3],
    /// Bytes this shard's writers wrote to their sockets (a metric).
    pub written: Cell<u64>,
}

impl OutboxBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Rc<Self> {
        Rc::new(OutboxBudget { used: Cell::new(0), cap, sent: Default::default(), written: Cell::new(0) })
    }

    /// Bytes waiting in this shard's outboxes.
    pub fn used(&self) -> usize {
        self.used.get()
    }
}

/// Why a connection is being closed by the broker side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// Its outbox passed twice the limit with packets that cannot be dropped.
    SlowConsumer,
    /// Its socket accepted nothing, or it acknowledged nothing, for `stuck_timeout`.
    Stuck,
    /// Another connection took its session over.
    TakenOver,
    /// The broker is shutting down.
    Shutdown,
    /// The reader ended (client closed, protocol error, keep-alive).
    ReaderDone,
    /// A 3.1.1 publish could not be stored (3.1.1 has no negative acknowledgement).
    StoreFailed,
    /// Its credentials ended (a JWT's `exp` passed).
    Expired,
}

/// The outbound half of a connection.
pub struct Conn {
    /// Protocol version negotiated at CONNECT.
    pub protocol: Protocol,
    /// Largest packet the client accepts (5.0 Maximum Packet Size), whole frame.
    pub max_packet_size: usize,
    /// Unique per shard, tells connections of one session apart.
    pub id: u64,
    sock: Socket,
    cap: usize,
    /// The writer's second buffer while it is not writing (swapped in at each take).
    spare: RefCell<BytesMut>,
    /// Capacity of the buffer the writer holds while it writes.
    writing: Cell<usize>,
    /// What this connection's buffers are charged to the shard's budget.
    charged: Cell<usize>,
    budget: Rc<OutboxBudget>,
    stuck_after: Duration,
    buf: RefCell<BytesMut>,
    waker: Cell<Option<Waker>>,
    /// This connection, for the writer task it spawns when there is something to write.
    me: Weak<Conn>,
    /// The writer task exists (spawned, not yet retired).
    writer_up: Cell<bool>,
    /// The writer took something since the last sweep.
    wrote: Cell<bool>,
    /// The sweep asked an idle writer to end.
    retire: Cell<bool>,
    closing: Cell<Option<CloseCause>>,
    /// The reader is done with the socket (it drained what it had to).
    reader_done: Cell<bool>,
    /// Acknowledgements of the client's QoS 1/2 publishes, in the order the PUBLISHes
    /// arrived; an entry waits (false) until its message is as durable as its storage
    /// promises. Bounded by the packet id space: a client cannot have more in flight.
    acks: RefCell<VecDeque<(u16, QoS, Option<u8>)>>,
    /// The 5.0 client accepts Reason Strings on acknowledgements (Request Problem
    /// Information not 0).
    pub problem_info: Cell<bool>,
    /// Topic aliases the broker may assign on this connection (the client's Topic Alias
    /// Maximum, capped by the broker's own); 0: none.
    pub alias_max: Cell<u16>,
    /// Aliases assigned, by topic: first come, first served until `alias_max` are taken;
    /// later topics go out in full.
    aliases: RefCell<HashMap<Bytes, u16>>,
}

/// Properties carrying the Reason String of a 5.0 failure `code` (none for success).
pub fn reason_props(code: u8) -> Props {
    match proto::reason::describe(code) {
        Some(text) => Properties { reason_string: Some(text.to_owned()), ..Default::default() }.into(),
        None => Props::default(),
    }
}

impl Conn {
    /// Properties of an acknowledgement with `code`: its Reason String when it is a 5.0
    /// failure and the client accepts problem information.
    pub fn ack_props(&self, code: u8) -> Props {
        if self.protocol == Protocol::V5 && self.problem_info.get() {
            reason_props(code)
        } else {
            Props::default()
        }
    }

    /// The alias of `topic` on this connection: (alias, already known to the client), or
    /// None when none is assigned and none is free. A new alias is only proposed:
    /// [`alias_sent`](Conn::alias_sent) records it once the PUBLISH defining it is out.
    pub fn alias_for(&self, topic: &Bytes) -> Option<(u16, bool)> {
        let aliases = self.aliases.borrow();
        if let Some(a) = aliases.get(topic) {
            return Some((*a, true));
        }
        let next = aliases.len() + 1;
        (next <= usize::from(self.alias_max.get())).then_some((next as u16, false))
    }

    /// The PUBLISH defining `alias` for `topic` was written.
    pub fn alias_sent(&self, topic: &Bytes, alias: u16) {
        self.aliases.borrow_mut().insert(topic.clone(), alias);
    }

    /// A SUBACK's properties: the Reason String of its first refused filter (5.0).
    pub fn suback_props(&self, codes: &[u8]) -> Props {
        codes.iter().find(|c| **c >= 0x80).map_or_else(Props::default, |c| self.ack_props(*c))
    }

    /// A server DISCONNECT with `code` and its Reason String (always allowed on DISCONNECT).
    pub fn disconnect(code: u8) -> Packet {
        Packet::Disconnect(proto::Disconnect { reason: code, properties: reason_props(code) })
    }

    /// A connection on socket `fd` whose outbox drops QoS 0 past `cap` bytes (or past the
    /// shard's `budget`), and that is stuck when its socket takes nothing for `stuck_after`.
    pub fn new(
        protocol: Protocol,
        sock: Socket,
        cap: usize,
        budget: Rc<OutboxBudget>,
        stuck_after: Duration,
        max_packet_size: usize,
        id: u64,
    ) -> Rc<Self> {
        Rc::new_cyclic(|me| Conn {
            protocol,
            max_packet_size,
            id,
            sock,
            cap,
            spare: RefCell::new(BytesMut::new()),
            writing: Cell::new(0),
            charged: Cell::new(0),
            budget,
            stuck_after,
            // Allocated on first use and grown to the connection's needs: idle connections
            // hold next to nothing.
            buf: RefCell::new(BytesMut::new()),
            waker: Cell::new(None),
            me: me.clone(),
            writer_up: Cell::new(false),
            wrote: Cell::new(false),
            retire: Cell::new(false),
            problem_info: Cell::new(true),
            alias_max: Cell::new(0),
            aliases: RefCell::new(HashMap::new()),
            closing: Cell::new(None),
            reader_done: Cell::new(false),
            acks: RefCell::new(VecDeque::new()),
        })
    }

    /// Acknowledges a QoS 1/2 publish now (`code` Some) or later (None, see
    /// [`Conn::ack_ready`]), keeping the order in which the publishes arrived (MQTT 4.6).
    /// Returns false when `max` acknowledgements already wait (the client ignores the
    /// Receive Maximum announced to it; 3.1.1 is bounded by the packet id space).
    pub fn ack_in_order(&self, pkid: u16, qos: QoS, code: Option<u8>, max: usize) -> bool {
        let mut acks = self.acks.borrow_mut();
        if acks.is_empty() {
            if let Some(code) = code {
                drop(acks);
                self.send_ack(pkid, qos, code);
                return true;
            }
        }
        if acks.len() >= max {
            return false;
        }
        acks.push_back((pkid, qos, code));
        true
    }

    /// The message with packet id `pkid` is stored (`code` 0) or failed: its
    /// acknowledgement, and every ready one behind it, go out.
    pub fn ack_ready(&self, pkid: u16, code: u8) {
        let mut acks = self.acks.borrow_mut();
        if let Some(e) = acks.iter_mut().find(|e| e.0 == pkid && e.2.is_none()) {
            e.2 = Some(code);
        }
        let mut ready = Vec::new();
        while let Some(&(pkid, qos, Some(code))) = acks.front() {
            acks.pop_front();
            ready.push((pkid, qos, code));
        }
        drop(acks);
        for (pkid, qos, code) in ready {
            self.send_ack(pkid, qos, code);
        }
    }

    fn send_ack(&self, pkid: u16, qos: QoS, code: u8) {
        if code >= 0x80 && self.protocol == Protocol::V4 {
            // 3.1.1 has no negative acknowledgement: the client will resend after
            // reconnecting.
            self.close(CloseCause::StoreFailed);
            return;
        }
        let ack = proto::Ack { pkid, reason: code, properties: self.ack_props(code) };
        self.send(&if qos == QoS::ExactlyOnce { Packet::PubRec(ack) } else { Packet::PubAck(ack) });
    }

    /// True once a close was asked for; nothing more is queued.
    pub fn is_closing(&self) -> bool {
        self.closing.get().is_some()
    }

    /// Why the connection is closing, if it is.
    pub fn close_cause(&self) -> Option<CloseCause> {
        self.closing.get()
    }

    /// Queues an encoded packet. Returns false (and closes the connection) when the
    /// outbox would pass its limit.
    pub fn push_bytes(&self, bytes: &[u8]) -> bool {
        self.push_with(bytes.len(), |b| b.extend_from_slice(bytes))
    }

    /// Counts a PUBLISH of `qos` queued for this connection (a metric of its shard).
    pub fn count_publish(&self, qos: QoS) {
        let c = &self.budget.sent[qos as usize];
        c.set(c.get() + 1);
    }

    /// Queues a shared PUBLISH encoding with its packet id (and DUP flag) patched in.
    pub fn push_publish(&self, encoded: &[u8], pkid_at: Option<usize>, pkid: u16, dup: bool) -> bool {
        self.push_with(encoded.len(), |b| {
            let start = b.len();
            b.extend_from_slice(encoded);
            if dup {
                b[start] |= 0x08;
            }
            if let Some(at) = pkid_at {
                b[start + at..start + at + 2].copy_from_slice(&pkid.to_be_bytes());
            }
        })
    }

    /// Encodes and queues a packet.
    pub fn send(&self, packet: &Packet) -> bool {
        if self.is_closing() {
            return false;
        }
        let mut b = self.buf.borrow_mut();
        let (before, cap) = (b.len(), b.capacity());
        match packet.write(self.protocol, &mut b) {
            Ok(_) if b.len() <= self.hard_cap() => {
                let grown = b.capacity() != cap;
                drop(b);
                self.queued_more(grown);
                true
            }
            Ok(_) => {
                b.truncate(before);
                drop(b);
                self.close(CloseCause::SlowConsumer);
                false
            }
            Err(e) => {
                b.truncate(before);
                tracing::debug!(error = %e, "packet not encodable, dropped");
                false
            }
        }
    }

    fn push_with(&self, len: usize, fill: impl FnOnce(&mut BytesMut)) -> bool {
        if self.is_closing() {
            return false;
        }
        let mut b = self.buf.borrow_mut();
        if b.len() + len > self.hard_cap() {
            drop(b);
            self.close(CloseCause::SlowConsumer);
            return false;
        }
        let cap = b.capacity();
        fill(&mut b);
        let grown = b.capacity() != cap;
        drop(b);
        self.queued_more(grown);
        true
    }

    /// Something was queued: the writer wakes, and the budget is charged again if the
    /// outbox grew (charged by what is allocated: only a growth changes it).
    fn queued_more(&self, grown: bool) {
        if grown {
            self.recharge();
        }
        self.wake();
    }

    /// Charges the shard's budget with what this connection's buffers have allocated
    /// now (outbox, spare, and what the writer holds): memory, not just queued bytes.
    fn recharge(&self) {
        let now = self.buf.borrow().capacity() + self.spare.borrow().capacity() + self.writing.get();
        let used = self.budget.used.get() + now;
        self.budget.used.set(used.saturating_sub(self.charged.replace(now)));
    }

    /// What the outbox may hold of packets that cannot be dropped (QoS 1/2 within the
    /// window, acknowledgements): twice the bound, then the connection is closed.
    fn hard_cap(&self) -> usize {
        self.cap.saturating_mul(2)
    }

    /// True when QoS 0 messages are dropped for this connection now: its outbox is at its
    /// bound, or the shard's outboxes together are at theirs and this one lags (holds
    /// `LAGGING` or more): a connection that keeps up is never punished for the others.
    pub fn is_full(&self) -> bool {
        let queued = self.buf.borrow().len();
        queued >= self.cap || (self.budget.used.get() >= self.budget.cap && queued >= LAGGING.min(self.cap))
    }

    /// Less than `LAGGING` waits unwritten: the client reads as fast as packets go out.
    pub fn keeps_up(&self) -> bool {
        self.buf.borrow().len() < LAGGING
    }

    /// Bytes waiting in the outbox.
    pub fn queued(&self) -> usize {
        self.buf.borrow().len()
    }

    /// Sends `last` (if any) after what is queued, then closes the socket.
    pub fn close_with(&self, cause: CloseCause, last: Option<&Packet>) {
        if self.is_closing() {
            return;
        }
        if let Some(p) = last {
            let mut b = self.buf.borrow_mut();
            // The final packet may pass the cap by its own size: it is the last one.
            let _ = p.write(self.protocol, &mut b);
        }
        self.close(cause);
    }

    /// Stops queueing; the writer flushes what is queued (for at most `CLOSE_GRACE`)
    /// and shuts the socket down, which ends the reader too. A slow or stuck consumer's
    /// socket is shut down at once: what is queued for it is dropped.
    pub fn close(&self, cause: CloseCause) {
        if self.closing.get().is_none() {
            self.closing.set(Some(cause));
            if matches!(cause, CloseCause::SlowConsumer | CloseCause::Stuck) {
                self.sock.shutdown();
            }
        }
        self.wake();
    }

    /// The reader will not read the socket again: the writer may shut it down.
    pub fn reader_finished(&self) {
        self.reader_done.set(true);
        self.wake();
    }

    /// Resolves once the reader is done with the socket.
    async fn reader_gone(&self) {
        poll_fn(|cx| {
            if self.reader_done.get() {
                return Poll::Ready(());
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// Resolves once a close was asked for.
    async fn closed(&self) {
        poll_fn(|cx| {
            if self.closing.get().is_some() {
                return Poll::Ready(());
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// Wakes the writer, or spawns it when it is not running.
    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        } else if !self.writer_up.get() {
            if let Some(me) = self.me.upgrade() {
                self.writer_up.set(true);
                self.retire.set(false);
                netpoll::spawn(writer(me)).detach();
            }
        }
    }

    /// Waits until there is something to write and takes it, leaving the spare buffer as
    /// the outbox. `Closed` when the connection is closing and nothing is left; `Retired`
    /// when the sweep found the writer idle and nothing came since.
    async fn take(&self) -> Take {
        poll_fn(|cx| {
            let mut b = self.buf.borrow_mut();
            if !b.is_empty() {
                let spare = std::mem::take(&mut *self.spare.borrow_mut());
                let data = std::mem::replace(&mut *b, spare);
                self.writing.set(data.capacity());
                self.wrote.set(true);
                self.retire.set(false);
                return Poll::Ready(Take::Data(data));
            }
            if self.closing.get().is_some() {
                return Poll::Ready(Take::Closed);
            }
            if self.retire.get() {
                self.writer_up.set(false);
                return Poll::Ready(Take::Retired);
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// The writer is done with `data`: it becomes the spare buffer, unless it is much
    /// larger than what it carried (`used` bytes): a burst is over.
    fn give_back(&self, mut data: BytesMut, used: usize) {
        data.clear();
        if data.capacity() > KEEP_BUFFER && data.capacity() / 4 > used {
            data = BytesMut::new();
        }
        *self.spare.borrow_mut() = data;
        self.writing.set(0);
        self.recharge();
    }

    /// From the sweep: gives back large buffers of a connection with nothing to write, and
    /// retires its writer task if it took nothing since the last sweep (the next packet
    /// spawns it again).
    pub fn trim_idle(&self) {
        if !self.wrote.replace(false) && self.writer_up.get() && self.closing.get().is_none() {
            self.retire.set(true);
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
        let mut b = self.buf.borrow_mut();
        if b.is_empty() && b.capacity() > KEEP_BUFFER {
            *b = BytesMut::new();
        }
        let mut spare = self.spare.borrow_mut();
        if spare.capacity() > KEEP_BUFFER {
            *spare = BytesMut::new();
        }
        drop((b, spare));
        self.recharge();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.budget.used.set(self.budget.used.get().saturating_sub(self.charged.get()));
    }
}

/// What the writer found in the outbox.
enum Take {
    Data(BytesMut),
    Closed,
    Retired,
}

/// How one write of the writer ended.
enum WriteEnd {
    Done,
    Failed,
    /// Not one byte taken for the stuck timeout.
    Stuck,
}

/// The writer task: drains the outbox into the socket until the connection closes or the
/// sweep retires it. A socket that takes no byte for the stuck timeout closes the
/// connection.
///
/// Then, when everything went out, it shuts the socket down for writing only and waits
/// (at most [`DRAIN_GRACE`]) for the reader to drain what the client still sends: a
/// socket closed with unread bytes resets the connection, and a client still writing
/// (a flood past the Receive Maximum) would see a broken pipe instead of the DISCONNECT
/// that says why.
async fn writer(conn: Rc<Conn>) {
    let mut stream = conn.sock.clone();
    let mut flushed = true;
    loop {
        let spare = match conn.take().await {
            Take::Data(spare) => spare,
            Take::Closed => break,
            Take::Retired => return,
        };
        let write = async {
            let mut at = 0;
            while at < spare.len() {
                let step = async { Some(stream.write(&spare[at..]).await) };
                let stall = async {
                    glommio::timer::sleep(conn.stuck_after).await;
                    None
                };
                match futures_lite::future::or(step, stall).await {
                    Some(Ok(n)) if n > 0 => {
                        at += n;
                        conn.budget.written.set(conn.budget.written.get() + n as u64);
                    }
                    Some(_) => return WriteEnd::Failed,
                    None => return WriteEnd::Stuck,
                }
            }
            // TLS and WebSocket may hold the end of it (a record, a frame): out it goes.
            let flush = async { Some(stream.flush().await) };
            let stall = async {
                glommio::timer::sleep(conn.stuck_after).await;
                None
            };
            match futures_lite::future::or(flush, stall).await {
                Some(Ok(())) => WriteEnd::Done,
                Some(Err(_)) => WriteEnd::Failed,
                None => WriteEnd::Stuck,
            }
        };
        let give_up = async {
            conn.closed().await;
            glommio::timer::sleep(CLOSE_GRACE).await;
            WriteEnd::Failed
        };
        let end = futures_lite::future::or(write, give_up).await;
        let used = spare.len();
        conn.give_back(spare, used);
        match end {
            WriteEnd::Done => {}
            WriteEnd::Failed => {
                conn.close(CloseCause::ReaderDone);
                flushed = false;
                break;
            }
            WriteEnd::Stuck => {
                conn.close(CloseCause::Stuck);
                flushed = false;
                break;
            }
        }
    }
    // A slow or stuck client's socket is already shut both ways (see Conn::close).
    if flushed && !matches!(conn.close_cause(), Some(CloseCause::SlowConsumer | CloseCause::Stuck)) {
        conn.sock.shutdown_write();
        let grace = async { glommio::timer::sleep(DRAIN_GRACE).await };
        futures_lite::future::or(conn.reader_gone(), grace).await;
    }
    conn.sock.shutdown();
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::io;
    use std::net::{Shutdown, SocketAddr};
    use std::pin::Pin;
    use std::rc::Rc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use futures_lite::{AsyncRead, AsyncWrite};
    use proto::Protocol;

    use super::{CloseCause, Conn, OutboxBudget};
    use crate::net::{Detached, Socket, Transport};

    /// A transport that takes every write at once and records it, and its shutdowns.
    #[derive(Default)]
    struct Tape {
        written: Rc<RefCell<Vec<u8>>>,
        shut: Rc<Cell<bool>>,
    }

    impl Transport for Tape {
        fn set_read_timeout(&mut self, _: Option<Duration>) {}
        fn shutdown(&mut self, _: Shutdown) {
            self.shut.set(true);
        }
        fn peer_addr(&self) -> Option<SocketAddr> {
            None
        }
        fn detach(self: Box<Self>) -> io::Result<Detached> {
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    impl AsyncRead for Tape {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut [u8]) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Tape {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.written.borrow_mut().extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Lets the spawned writer run its turn.
    async fn settle() {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }

    #[test]
    fn the_writer_exists_only_while_the_connection_writes() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let tape = Tape::default();
                let (written, shut) = (tape.written.clone(), tape.shut.clone());
                let sock = Socket::new(Box::new(tape));
                let budget = OutboxBudget::new(1 << 20);
                let conn = Conn::new(Protocol::V4, sock, 1 << 16, budget, Duration::from_secs(30), usize::MAX, 1);
                assert!(!conn.writer_up.get(), "no writer before anything is queued");
                assert!(conn.push_bytes(b"one"));
                assert!(conn.writer_up.get(), "the first packet spawns the writer");
                settle().await;
                assert_eq!(&written.borrow()[..], b"one");

                // The sweep after a write keeps the writer; the next one without a write retires it.
                conn.trim_idle();
                settle().await;
                assert!(conn.writer_up.get(), "retired although it wrote since the last sweep");
                conn.trim_idle();
                settle().await;
                assert!(!conn.writer_up.get(), "an idle writer is retired by the second sweep");
                assert_eq!(Rc::strong_count(&conn), 1, "the retired writer still holds the connection");

                // A packet after retirement spawns it again; a close flushes and shuts down.
                assert!(conn.push_bytes(b"two"));
                settle().await;
                assert_eq!(&written.borrow()[..], b"onetwo");
                conn.trim_idle();
                conn.trim_idle();
                settle().await;
                assert!(!conn.writer_up.get());
                conn.close_with(CloseCause::Shutdown, None);
                conn.reader_finished();
                settle().await;
                assert!(shut.get(), "a close of a connection without a writer did not shut it down");
                assert_eq!(Rc::strong_count(&conn), 1, "the writer did not end after the close");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
