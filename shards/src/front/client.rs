//! A connected client on its session's shard: session attach and takeover, the read loop,
//! the handling of every packet a client sends, and what happens when it goes away (will,
//! session expiry).
//!
//! One task per connection reads and parses everything available, handles each packet
//! (routing PUBLISHes through an [`Outgoing`] batch), flushes the batch once, then reads
//! again. Its writer task (see [`crate::net::conn`]) runs beside it while it writes.
//!
//! Front layer: runs on the session's shard; started by the shard's `arrivals` task.

mod close;
mod reauth;
mod subscribe;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::AsyncReadExt;
use glommio::channels::local_channel::LocalReceiver;
use proto::{
    reason, Ack, ConnAck, Connect, Disconnect, Error as ProtoError, Packet, Properties, Protocol, Publish, QoS,
};

use super::rules::topic_within_limits;
use crate::auth::{Action, Decisions, Principal};
use crate::config::Limits;
use crate::engine::Shard;
use crate::metrics::Counters;
use crate::msg::{now_us, AckTo, Message, SessionRef};
use crate::net::{Admitted, CloseCause, Conn, Socket, Transport};
use crate::route::mesh::Handoff;
use crate::route::Outgoing;
use crate::show::short;

/// Smallest read asked of the socket: an idle connection keeps no more than this, so
/// 10^5 idle connections cost little memory.
const READ_MIN: usize = 64;
/// Largest single read; a busy connection's read size doubles towards it.
const READ_MAX: usize = 64 * 1024;
/// Most bytes read and dropped from a client after the broker closed on it (see
/// [`drain`]); the writer bounds the time it may take.
const DRAIN_MAX: usize = 64 * 1024;

/// Why a connection's read loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// DISCONNECT received (with its reason code).
    Disconnect(u8),
    /// Socket closed or failed.
    Closed,
    /// Keep-alive passed with nothing read.
    KeepAlive,
    /// A protocol violation, with the 5.0 reason code.
    Violation(u8),
    /// The broker closed it (takeover, slow consumer, shutdown).
    Server,
}

/// Payloads below this are copied out of the read buffer (with their topic, into one
/// allocation) so that a message kept in a queue or the retained store does not pin a
/// whole read buffer; larger ones were read into a buffer sized for them and stay
/// zero-copy.
const DETACH_BELOW: usize = 16 * 1024;

/// Topic and payload of a small message, moved into one right-sized allocation.
fn detach(topic: Bytes, payload: Bytes) -> (Bytes, Bytes) {
    if payload.len() >= DETACH_BELOW {
        return (topic, payload);
    }
    let mut b = BytesMut::with_capacity(topic.len() + payload.len());
    b.extend_from_slice(&topic);
    b.extend_from_slice(&payload);
    let b = b.freeze();
    (b.slice(..topic.len()), b.slice(topic.len()..))
}

/// A message built from a will.
fn will_message(c: &Connect, client_id: &Arc<str>) -> Option<(Arc<Message>, u32)> {
    let w = c.will.as_ref()?;
    let mut properties = w.properties.clone();
    let delay = properties.will_delay_interval.unwrap_or(0);
    if properties.will_delay_interval.is_some() {
        properties.will_delay_interval = None;
    }
    let msg = Message {
        topic: w.topic.clone(),
        payload: w.payload.clone(),
        qos: w.qos,
        retain: w.retain,
        properties,
        publisher: client_id.clone(),
        received: now_us(),
        durable: false,
        offline: true,
        backpressure: true,
    };
    Some((Arc::new(msg), delay))
}

/// The per-connection context of the read loop.
struct Client {
    shard: Rc<Shard>,
    conn: Rc<Conn>,
    protocol: Protocol,
    slot: u32,
    generation: u64,
    /// Expiry asked at CONNECT (a DISCONNECT may not raise it from 0).
    connect_expiry: u32,
    /// Client -> broker topic aliases.
    aliases: HashMap<u16, Bytes>,
    will: Option<(Arc<Message>, u32)>,
    out: Outgoing,
    /// When the last read completed: the receive time of what it brought.
    now: Instant,
    /// The same moment on the wall clock, microseconds since the epoch (what a message
    /// records as its receive time).
    now_us: u64,
    /// Who the connection authenticated as.
    principal: Arc<Principal>,
    /// The authorizer's answers for its PUBLISHes (made on the first one judged).
    decisions: Option<Box<Decisions>>,
    /// Publish rate limits, when configured.
    rate: RateLimit,
    /// The 5.0 enhanced authentication method of the CONNECT, if any.
    auth: Option<Arc<dyn crate::auth::AuthMethod>>,
    /// A re-authentication in progress.
    reauth: Option<Box<reauth::Reauth>>,
}

/// Token buckets for `max_publish_rate` and `max_publish_bytes_rate`: each holds up to one
/// second's allowance and refills continuously.
struct RateLimit {
    msgs: f64,
    bytes: f64,
    at: Instant,
}

impl RateLimit {
    fn new(limits: &Limits, now: Instant) -> Self {
        RateLimit { msgs: f64::from(limits.max_publish_rate), bytes: limits.max_publish_bytes_rate as f64, at: now }
    }

    /// Takes one PUBLISH of `size` bytes; false when either limit is exceeded.
    fn take(&mut self, limits: &Limits, size: usize, now: Instant) -> bool {
        let (rate, byte_rate) = (f64::from(limits.max_publish_rate), limits.max_publish_bytes_rate as f64);
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        let mut ok = true;
        if rate > 0.0 {
            self.msgs = (self.msgs + dt * rate).min(rate) - 1.0;
            ok &= self.msgs >= 0.0;
        }
        if byte_rate > 0.0 {
            self.bytes = (self.bytes + dt * byte_rate).min(byte_rate) - size as f64;
            ok &= self.bytes >= 0.0;
        }
        ok
    }
}

/// Runs the connections handed to this shard (by any shard, this one included), each in
/// a task of its own; ends when the shard stops.
pub async fn arrivals(shard: Rc<Shard>, rx: LocalReceiver<Box<Handoff>>) {
    while let Some(h) = rx.recv().await {
        netpoll::spawn(run_handed_off(shard.clone(), h)).detach();
    }
}

/// Runs a connection handed over after its CONNECT: its transport attached here.
async fn run_handed_off(shard: Rc<Shard>, h: Box<Handoff>) {
    let h = *h;
    let stream = match h.stream.attach() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "handed-over connection could not be attached");
            return;
        }
    };
    let principal = Arc::new(h.principal);
    run_session(shard, stream, h.connect, h.rest, h.admitted, h.assigned, principal).await;
}

/// Runs a connection whose CONNECT was accepted, on its session's shard. This future is
/// what every connection holds for its whole life, so it keeps only the client, its
/// socket and its place under the limit: the set-up runs in a plain function, and the
/// end of the connection in a boxed future of its own.
async fn run_session(
    shard: Rc<Shard>,
    stream: Box<dyn Transport>,
    connect: Box<Connect>,
    rest: Bytes,
    admitted: Admitted,
    assigned: bool,
    principal: Arc<Principal>,
) {
    let (mut client, sock, rbuf) = setup(&shard, stream, connect, rest, assigned, principal);
    drop(shard);
    client.flush().await;
    let end = client.read_loop(sock.clone(), rbuf).await;
    Box::pin(client.finish(end)).await;
    if !matches!(end, End::Closed | End::Disconnect(_)) {
        // The broker closed first: the client may be sending still.
        Box::pin(drain(sock)).await;
    }
    client.conn.reader_finished();
    client.shard.conns.set(client.shard.conns.get() - 1);
    drop(admitted);
}

/// Attaches a new connection to its session and answers its CONNECT: the connection's
/// outbox and writer, the session (taken over or fresh), the CONNACK, the will, the
/// replay of what waited. Returns the client, its socket and its first read buffer.
fn setup(
    shard: &Rc<Shard>,
    stream: Box<dyn Transport>,
    connect: Box<Connect>,
    rest: Bytes,
    assigned: bool,
    principal: Arc<Principal>,
) -> (Client, Socket, BytesMut) {
    let limits = &shard.cfg.limits;
    let protocol = connect.protocol;
    let v5 = protocol == Protocol::V5;
    // Past `server_keep_alive` (0 is past every bound) a 5.0 client is told the bound and
    // held to it; 3.1/3.1.1 clients asking for more were refused at the handshake.
    let capped = limits.server_keep_alive.filter(|max| connect.keep_alive == 0 || connect.keep_alive > *max);
    let keep_alive = capped.unwrap_or(connect.keep_alive);
    let timeout = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    let sock = Socket::new(stream);
    sock.set_read_timeout(timeout);
    let client_max = match (v5, connect.properties.maximum_packet_size) {
        (true, Some(m)) => m as usize,
        _ => usize::MAX,
    };
    let conn = Conn::new(
        protocol,
        sock.clone(),
        limits.max_outbound_buffer,
        shard.outbox.clone(),
        limits.stuck_timeout,
        client_max,
        shard.conn_id(),
    );
    conn.problem_info.set(connect.properties.request_problem_information != Some(0));
    if v5 {
        let wanted = connect.properties.topic_alias_maximum.unwrap_or(0);
        conn.alias_max.set(wanted.min(limits.topic_alias_maximum));
    }
    shard.conns.set(shard.conns.get() + 1);

    let client_id = principal.client_id.clone();
    let connect_expiry = match protocol {
        Protocol::V4 if connect.clean_start => 0,
        Protocol::V4 => u32::MAX,
        Protocol::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
    };
    let expiry = connect_expiry.min(limits.max_session_expiry);
    let mut out = shard.outgoing();
    let (slot, generation, present) = attach(shard, &conn, &connect, &principal, expiry, &mut out);

    let mut props = Properties::default();
    if v5 {
        props.receive_maximum = Some(limits.max_inflight);
        props.maximum_packet_size = Some(limits.max_packet_size as u32);
        props.topic_alias_maximum = Some(limits.topic_alias_maximum);
        props.shared_subscription_available = Some(1);
        props.retain_available = Some(1);
        props.wildcard_subscription_available = Some(1);
        props.subscription_identifier_available = Some(1);
        props.server_keep_alive = capped;
        if expiry != connect_expiry {
            props.session_expiry_interval = Some(expiry);
        }
        if assigned {
            props.assigned_client_identifier = Some(client_id.to_string());
        }
        if connect.properties.request_response_information == Some(1) {
            props.response_information = shard.cfg.response_information.clone();
        }
        // Enhanced authentication succeeded in the handshake: the method, and its last data.
        props.authentication_method = connect.properties.authentication_method.clone();
        props.authentication_data = connect.properties.authentication_data.clone();
    }
    // A 3.1 CONNACK has no session present flag: its first byte is reserved.
    let session_present = present && !connect.mqtt31;
    conn.send(&Packet::ConnAck(ConnAck { session_present, code: reason::SUCCESS, properties: props.into() }));
    {
        let mut st = shard.st.borrow_mut();
        if let Some(s) = st.session(slot, generation) {
            s.resend_inflight();
            s.pump();
        }
    }
    tracing::info!(client_id = %short(&client_id), ?protocol, shard = shard.router.id, session_present = present, "client connected");

    let will = will_message(&connect, &client_id).map(|(m, delay)| (shard.placed(m), delay));
    {
        let st = &mut *shard.st.borrow_mut();
        if let Some(s) = st.session(slot, generation) {
            // The will's properties without Will Delay: the ones it is published with.
            s.will_image = will.as_ref().map(|(w, delay)| {
                Box::new(crate::store::image::WillImage {
                    topic: w.topic.clone(),
                    payload: w.payload.clone(),
                    qos: w.qos,
                    retain: w.retain,
                    properties: w.properties.to_publish_block().unwrap_or_default(),
                    delay: *delay,
                })
            });
            if s.persist {
                shard.persist_session(st, slot);
            }
        }
    }
    shard.request_replay(&mut shard.st.borrow_mut(), slot, &mut out);
    let client = Client {
        shard: shard.clone(),
        conn: conn.clone(),
        protocol,
        slot,
        generation,
        connect_expiry,
        aliases: HashMap::new(),
        will,
        out,
        now: Instant::now(),
        now_us: now_us(),
        principal,
        decisions: None,
        rate: RateLimit::new(&shard.cfg.limits, Instant::now()),
        auth: connect
            .properties
            .authentication_method
            .as_deref()
            .and_then(|name| shard.cfg.auth_methods.iter().find(|m| m.name() == name).cloned()),
        reauth: None,
    };
    let mut rbuf = BytesMut::new();
    rbuf.extend_from_slice(&rest);
    (client, sock, rbuf)
}

/// Reads and drops what a client sends after the broker closed on it, until the client
/// closes too, [`DRAIN_MAX`] bytes, or the writer shuts the socket down after its grace:
/// closing a socket with unread bytes would reset the connection, and the client might
/// then never read the DISCONNECT telling it why.
async fn drain(mut sock: Socket) {
    // Allocated only now: a connection's future does not carry it all its life.
    let mut buf = vec![0; 4096];
    let mut left = DRAIN_MAX;
    while left > 0 {
        let want = left.min(buf.len());
        match sock.read(&mut buf[..want]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left -= n,
        }
    }
}

/// Attaches a connection to its session: takes over a connected one, starts fresh on
/// clean start. Returns (slot, generation, session present).
fn attach(
    shard: &Shard,
    conn: &Rc<Conn>,
    c: &Connect,
    principal: &Arc<Principal>,
    expiry: u32,
    out: &mut Outgoing,
) -> (u32, u64, bool) {
    let client_id = &principal.client_id;
    let mut guard = shard.st.borrow_mut();
    let st = &mut *guard;
    let mut wills = Vec::new();
    let mut present = false;
    let existing = st.sessions.get(client_id).copied();
    let slot = match existing {
        Some(slot) => {
            // A session that ends with its connection (3.1.1 clean session, 5.0 expiry 0)
            // is never resumed, not even by the connection taking it over [MQTT-3.1.2-6].
            let ends_with_conn = st.slots[slot as usize].as_ref().is_some_and(|s| s.expiry == 0);
            let fresh = c.clean_start || ends_with_conn;
            if fresh || expiry == 0 {
                shard.forget_session(st, client_id);
            }
            if let Some(s) = st.slots[slot as usize].as_mut() {
                if let Some(old) = s.conn.take() {
                    tracing::info!(client_id = %short(client_id), "session taken over");
                    let bye = Conn::disconnect(reason::SESSION_TAKEN_OVER);
                    old.close_with(CloseCause::TakenOver, (old.protocol == Protocol::V5).then_some(&bye));
                }
            }
            if fresh {
                if let Some(old) = shard.end_session(st, slot, out) {
                    wills.extend(old.will.map(|w| w.msg));
                }
                st.insert_session(client_id.clone(), c.protocol)
            } else {
                present = true;
                slot
            }
        }
        None => st.insert_session(client_id.clone(), c.protocol),
    };
    // 3.1.1 clients take any number in flight (their packet ids bound it); 5.0 clients
    // say how many (65535 when they do not).
    let client_max = match (c.protocol, c.properties.receive_maximum) {
        (Protocol::V5, Some(m)) => m,
        _ => u16::MAX,
    };
    let window = shard.cfg.limits.max_inflight.min(client_max).max(1);
    let burst = shard.cfg.limits.max_inflight_burst.min(client_max).max(window);
    // Subscriptions judged readable whole for another user are judged again.
    let same = st.slots[slot as usize].as_ref().and_then(|s| s.principal.as_deref()).is_some_and(|p| {
        p.username == principal.username && p.listener == principal.listener && p.grants == principal.grants
    });
    if !same {
        shard.close_local(st, slot);
    }
    let Some(s) = st.slots[slot as usize].as_mut() else { unreachable!("slot just attached") };
    // A new connection cancels a will still waiting for its delay.
    s.will = None;
    s.conn = Some(conn.clone());
    s.principal = Some(principal.clone());
    s.decisions = None;
    s.protocol = c.protocol;
    s.expiry = expiry;
    s.expires_at = None;
    s.window = window;
    s.burst = burst;
    // A kept session had expiry > 0, so it persisted already if the store does.
    s.persist = expiry > 0 && st.store.persistent();
    let generation = s.generation;
    // Back online: a member of its shared groups again.
    shard.join_groups(st, slot, out);
    for w in wills {
        shard.route(st, w, None, out);
    }
    drop(guard);
    (slot, generation, present)
}

impl Client {
    /// Sends the batch: at once when the channels take it (no state kept), else in a boxed
    /// future that waits for room, so a connection's task does not carry a send's state
    /// between reads.
    async fn flush(&mut self) {
        if !self.out.try_flush(&self.shard.mesh) {
            Box::pin(self.out.flush(&self.shard.mesh)).await;
        }
    }

    fn v5(&self) -> bool {
        self.protocol == Protocol::V5
    }

    /// Unacknowledged QoS 1/2 publishes a client may have: the Receive Maximum announced
    /// to 5.0 clients (past it: 0x93), the packet id space for 3.1.1.
    fn max_pending_acks(&self) -> usize {
        if self.v5() {
            usize::from(self.shard.cfg.limits.max_inflight)
        } else {
            usize::from(u16::MAX)
        }
    }

    async fn read_loop(&mut self, mut stream: Socket, mut rbuf: BytesMut) -> End {
        let max = self.shard.cfg.limits.max_packet_size;
        // Adapts to the traffic: doubles after a read that filled it, halves after one that
        // used under a quarter.
        let mut read_size = READ_MIN;
        loop {
            let want;
            loop {
                // Decided before any await: a packet (or an error) is not kept in the
                // connection's task while it waits.
                let step = match proto::read(&mut rbuf, self.protocol, max) {
                    Ok(packet) => self.handle(packet).err(),
                    Err(ProtoError::Incomplete(n)) => {
                        want = n.clamp(read_size, READ_MAX);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(client_id = %short(&self.principal.client_id), error = %e, "protocol error");
                        let code = e.reason_code();
                        Some(End::Violation(if code < 0x80 { reason::MALFORMED_PACKET } else { code }))
                    }
                };
                if let Some(end) = step {
                    self.flush().await;
                    return end;
                }
                if self.out.is_full() {
                    self.flush().await;
                }
            }
            crate::engine::commit::commit_inline(&self.shard, &mut self.out);
            self.flush().await;
            if self.conn.is_closing() {
                return End::Server;
            }
            let len = rbuf.len();
            if len == 0 && rbuf.capacity() > 4 * read_size {
                // Idle again after a burst: give the large buffer back.
                rbuf = BytesMut::new();
            }
            rbuf.resize(len + want, 0);
            match stream.read(&mut rbuf[len..]).await {
                Ok(0) => {
                    rbuf.truncate(len);
                    return if self.conn.is_closing() { End::Server } else { End::Closed };
                }
                // Closed meanwhile (taken over, shut down): nothing more is handled.
                Ok(_) if self.conn.is_closing() => return End::Server,
                Ok(n) => {
                    self.now = Instant::now();
                    self.now_us = now_us();
                    rbuf.truncate(len + n);
                    if n == want {
                        read_size = (read_size * 2).min(READ_MAX);
                    } else if n < want / 4 {
                        read_size = (read_size / 2).max(READ_MIN);
                    }
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => return End::KeepAlive,
                Err(_) => return if self.conn.is_closing() { End::Server } else { End::Closed },
            }
        }
    }

    fn ack(&self, kind: fn(Ack) -> Packet, pkid: u16, code: u8) {
        self.conn.send(&kind(Ack { pkid, reason: code, properties: self.conn.ack_props(code) }));
    }

    /// Handles one packet; Err ends the connection.
    fn handle(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(a) => {
                self.acked_out(|s| s.finish(a.pkid, false));
                Ok(())
            }
            Packet::PubRec(a) => {
                let known = self.acked_out(|s| s.received(a.pkid, a.reason >= 0x80)).unwrap_or(false);
                if a.reason < 0x80 || !known {
                    let code = if known { reason::SUCCESS } else { reason::PACKET_IDENTIFIER_NOT_FOUND };
                    self.ack(Packet::PubRel, a.pkid, if self.v5() { code } else { 0 });
                }
                Ok(())
            }
            Packet::PubRel(a) => {
                let (known, persist) = self
                    .with_session(|s| {
                        s.dirty = true;
                        (s.incoming_qos2.remove(&a.pkid), s.persist)
                    })
                    .unwrap_or((false, false));
                let code = if known || !self.v5() { reason::SUCCESS } else { reason::PACKET_IDENTIFIER_NOT_FOUND };
                let pubcomp =
                    Packet::PubComp(Ack { pkid: a.pkid, reason: code, properties: self.conn.ack_props(code) });
                if known && persist {
                    // Forgotten on disk first: a restart must not take the next PUBLISH
                    // reusing this id for a resend.
                    let shard = self.shard.clone();
                    let st = &mut *shard.st.borrow_mut();
                    shard.persist_session(st, self.slot);
                    let to = SessionRef { shard: shard.router.id as u16, slot: self.slot, generation: self.generation };
                    st.store.defer(crate::store::Deferred::Packet { to, conn_id: self.conn.id, packet: pubcomp });
                } else {
                    self.conn.send(&pubcomp);
                }
                Ok(())
            }
            Packet::PubComp(a) => {
                self.acked_out(|s| s.finish(a.pkid, true));
                Ok(())
            }
            Packet::Subscribe(s) => {
                // No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
                if self.v5() && s.filters.iter().any(|f| f.no_local && crate::route::is_shared(&f.filter)) {
                    return Err(End::Violation(reason::PROTOCOL_ERROR));
                }
                self.on_subscribe(s);
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingReq => {
                self.conn.send(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(d) => self.on_disconnect(d),
            Packet::Connect(_) => Err(End::Violation(reason::PROTOCOL_ERROR)),
            Packet::Auth(a) => self.on_auth(a),
            // A server never receives the other packets.
            _ => Err(End::Violation(reason::PROTOCOL_ERROR)),
        }
    }

    fn with_session<R>(&self, f: impl FnOnce(&mut crate::engine::session::Session) -> R) -> Option<R> {
        let mut st = self.shard.st.borrow_mut();
        st.session(self.slot, self.generation).map(f)
    }

    /// Applies the client's acknowledgement of an outbound message; when that leaves the
    /// queue short and positions parked in segment logs, the next page is asked for.
    fn acked_out<R>(&self, f: impl FnOnce(&mut crate::engine::session::Session) -> R) -> Option<R> {
        let st = &mut *self.shard.st.borrow_mut();
        let s = st.session(self.slot, self.generation)?;
        let r = f(s);
        if s.wants_replay_page(self.shard.cfg.limits.max_queued_messages) {
            st.replay_soon(self.slot);
        }
        Some(r)
    }

    fn on_publish(&mut self, mut p: Publish) -> Result<(), End> {
        let counters = &self.shard.counters;
        Counters::bump(&counters.received[p.qos as usize]);
        counters.received_bytes.set(counters.received_bytes.get() + (p.topic.len() + p.payload.len()) as u64);
        let limits = &self.shard.cfg.limits;
        if limits.max_publish_rate > 0 || limits.max_publish_bytes_rate > 0 {
            let size = p.topic.len() + p.payload.len();
            if !self.rate.take(limits, size, self.now) {
                tracing::info!(client_id = %short(&self.principal.client_id), "publish rate limit exceeded");
                return Err(End::Violation(reason::MESSAGE_RATE_TOO_HIGH));
            }
        }
        // Reads go through Deref; writing only when a property is there keeps an empty
        // property set unallocated.
        if let Some(alias) = p.properties.topic_alias {
            p.properties.topic_alias = None;
            if !self.v5() || alias == 0 || alias > limits.topic_alias_maximum {
                return Err(End::Violation(reason::TOPIC_ALIAS_INVALID));
            }
            if p.topic.is_empty() {
                match self.aliases.get(&alias) {
                    Some(t) => p.topic = t.clone(),
                    None => return Err(End::Violation(reason::PROTOCOL_ERROR)),
                }
            } else {
                self.aliases.insert(alias, p.topic.clone());
            }
        }
        if !topic_within_limits(limits, &p.topic) {
            return Err(End::Violation(reason::TOPIC_NAME_INVALID));
        }
        if p.properties.payload_format_indicator == Some(1) && std::str::from_utf8(&p.payload).is_err() {
            // Said to be UTF-8 and is not: refused, never forwarded (5.0, 3.3.2.3.2).
            if p.qos == QoS::AtMostOnce {
                return Err(End::Violation(reason::PAYLOAD_FORMAT_INVALID));
            }
            let code = Some(reason::PAYLOAD_FORMAT_INVALID);
            if !self.conn.ack_in_order(p.pkid, p.qos, code, self.max_pending_acks()) {
                return Err(End::Violation(reason::RECEIVE_MAXIMUM_EXCEEDED));
            }
            return Ok(());
        }
        let authorizer = self.shard.cfg.authorizer_for(self.principal.listener);
        if authorizer.is_some()
            && !self.decisions.get_or_insert_with(Default::default).allowed(
                authorizer,
                Some(&self.principal),
                Action::Publish,
                &p.topic,
            )
        {
            Counters::bump(&self.shard.counters.acl_denied);
            tracing::debug!(client_id = %short(&self.principal.client_id), topic = %short(&String::from_utf8_lossy(&p.topic)), "publish not authorized");
            if p.qos == QoS::AtMostOnce {
                return Ok(());
            }
            // 3.1.1 has no negative acknowledgement: acknowledged and dropped, as Mosquitto
            // does; 5.0 is told 0x87.
            let code = if self.v5() { reason::NOT_AUTHORIZED } else { reason::SUCCESS };
            if !self.conn.ack_in_order(p.pkid, p.qos, Some(code), self.max_pending_acks()) {
                return Err(End::Violation(reason::RECEIVE_MAXIMUM_EXCEEDED));
            }
            return Ok(());
        }
        if p.qos == QoS::ExactlyOnce {
            let max = usize::from(limits.max_inflight);
            let state = self.with_session(|s| {
                if s.incoming_qos2.contains(&p.pkid) {
                    Some(true)
                } else if s.incoming_qos2.len() >= max {
                    None
                } else {
                    s.incoming_qos2.insert(p.pkid);
                    Some(false)
                }
            });
            match state.flatten() {
                // A resend of a message already received: acknowledge, do not forward again.
                Some(true) => {
                    self.conn.ack_in_order(p.pkid, p.qos, Some(reason::SUCCESS), usize::MAX);
                    return Ok(());
                }
                Some(false) => {}
                None if self.v5() => return Err(End::Violation(reason::RECEIVE_MAXIMUM_EXCEEDED)),
                None => return Err(End::Violation(reason::PROTOCOL_ERROR)),
            }
        }
        let mut properties = p.properties;
        if !properties.subscription_identifiers.is_empty() {
            properties.subscription_identifiers.clear();
        }
        let (topic, payload) = detach(p.topic, p.payload);
        let msg = self.shard.placed(Arc::new(Message {
            topic,
            payload,
            qos: p.qos,
            retain: p.retain,
            properties,
            publisher: self.principal.client_id.clone(),
            received: self.now_us,
            durable: false,
            offline: true,
            backpressure: true,
        }));
        let ack = match p.qos {
            QoS::AtMostOnce => None,
            // A segment topic, or a memory topic whose ring is full under backpressure:
            // acknowledged by the owner once it has taken the message.
            _ if msg.durable || (msg.offline && msg.backpressure && self.shard.must_wait(&msg.topic)) => {
                if !self.conn.ack_in_order(p.pkid, p.qos, None, self.max_pending_acks()) {
                    return Err(End::Violation(reason::RECEIVE_MAXIMUM_EXCEEDED));
                }
                let to =
                    SessionRef { shard: self.shard.router.id as u16, slot: self.slot, generation: self.generation };
                Some(AckTo { to, conn_id: self.conn.id, pkid: p.pkid, qos: p.qos })
            }
            _ => {
                if !self.conn.ack_in_order(p.pkid, p.qos, Some(reason::SUCCESS), self.max_pending_acks()) {
                    return Err(End::Violation(reason::RECEIVE_MAXIMUM_EXCEEDED));
                }
                None
            }
        };
        self.shard.route(&mut self.shard.st.borrow_mut(), msg, ack, &mut self.out);
        Ok(())
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Result<(), End> {
        if let Some(e) = d.properties.session_expiry_interval {
            if self.connect_expiry == 0 && e != 0 {
                return Err(End::Violation(reason::PROTOCOL_ERROR));
            }
            let max = self.shard.cfg.limits.max_session_expiry;
            self.with_session(|s| s.expiry = e.min(max));
        }
        Err(End::Disconnect(d.reason))
    }
}
