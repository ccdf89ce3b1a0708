//! Sessions: what the broker remembers about a client id, online or not.
//!
//! A session lives on the shard of `hash(client_id)` and only that shard touches it. It
//! holds the subscriptions, the outbound in-flight window (QoS 1/2 messages sent and not
//! yet acknowledged), the queue of messages waiting for the window, the messages handed to
//! it while offline (as positions in their partition logs, not copies: read back from the
//! owners when the client returns), the inbound QoS 2 packet ids not yet released, and a
//! pending will.
//! Delivery encodes a PUBLISH once per (protocol, QoS, retain) per fan-out through
//! [`EncodeCache`] and copies the shared bytes into each connection's outbox.
//!
//! Flow control: the log is the buffer. A session keeps at most [`HOLD`] waiting messages
//! as shared copies; past that (and while offline) a message stored in a log is *parked*
//! by its position and read back as the window frees: from the memory ring through the
//! parked handle itself, from a segment log through its owner (the replay path). So a
//! subscriber slower than its publishers costs a few bytes per message, and the logs'
//! bounds (see `Store::admit`) decide what happens when they are full.
//!
//! Engine layer; owned by the session's shard, used by the engine's delivery and by the
//! front's client path on that shard only.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::Instant;

use proto::{Packet, Props, Protocol, QoS};

use crate::auth::{Action, Decisions, Principal};
use crate::config::{Engine, EngineConfig};
use crate::msg::{now_us, Message, Pos, ReplayPart, SubOptions};
use crate::net::Conn;
use crate::store::image::{SessionImage, WillImage};

mod encode;
mod replay;

pub use encode::{publish_packet, EncodeCache};
use encode::{write_publish, Written};
pub use replay::replay_page;

/// A message waiting to be sent to a session.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The message.
    pub msg: Arc<Message>,
    /// QoS to send it with.
    pub qos: QoS,
    /// Retain flag to send.
    pub retain: bool,
    /// Subscription identifiers to attach.
    pub sub_ids: Vec<u32>,
    /// Where the message sits in its partition log, if stored there.
    pub pos: Option<Pos>,
    /// The shared group (`$share/g/f`) it was given to this session by, if any: handed
    /// back to the group if the client leaves before acknowledging it.
    pub shared: Option<Arc<str>>,
}

/// Waiting messages a session keeps as shared copies (queued) before it parks the rest by
/// position: enough to keep a window of 64..1000 busy while the next page is read back.
pub const HOLD: usize = 1024;
/// Waiting messages that no log keeps (topics with `offline = false`, shared-group
/// messages, retained messages) a session holds at most; past it the new one is dropped and
/// counted (`unstored`).
pub const HOLD_UNSTORED: usize = 16 * 1024;

/// A message parked by position, oldest first.
#[derive(Debug, Clone)]
pub enum Parked {
    /// In a segment log: read back through the partition's owner.
    Log(Pos),
    /// In a memory ring: the handle keeps it (a connected subscriber under `backpressure`:
    /// the ring cannot give it up) or only watches it (offline, or `drop_oldest`: gone
    /// when the ring evicts it, then counted as lost).
    Ring(Pin, Pos),
}

impl Parked {
    /// Its position.
    pub fn pos(&self) -> Pos {
        match self {
            Parked::Log(p) | Parked::Ring(_, p) => *p,
        }
    }
}

/// How a parked memory-ring message is held.
#[derive(Debug, Clone)]
pub enum Pin {
    /// Kept alive: the ring sees a reader and does not evict it.
    Strong(Arc<Message>),
    /// Watched: the ring may evict it.
    Weak(Weak<Message>),
}

impl Pin {
    fn get(&self) -> Option<Arc<Message>> {
        match self {
            Pin::Strong(m) => Some(m.clone()),
            Pin::Weak(w) => w.upgrade(),
        }
    }

    fn weaken(&mut self) {
        if let Pin::Strong(m) = self {
            *self = Pin::Weak(Arc::downgrade(m));
        }
    }
}

/// A persistent session's progress through one partition log.
#[derive(Debug, Default, Clone)]
pub struct PartCursor {
    /// Offsets queued or in flight, not yet acknowledged by the client.
    pending: BTreeSet<u64>,
    /// One past the highest offset seen (where the cursor started, at first).
    seen: u64,
    /// Restored and not yet replayed: what the image said, kept until the replay is done.
    held: Option<(u64, Vec<u64>)>,
}

impl PartCursor {
    /// (seen, pending) as persisted.
    fn persisted(&self) -> (u64, Vec<u64>) {
        match &self.held {
            Some((seen, old)) => {
                let mut all: BTreeSet<u64> = old.iter().copied().collect();
                all.extend(self.pending.iter().copied());
                (*seen, all.into_iter().collect())
            }
            None => (self.seen, self.pending.iter().copied().collect()),
        }
    }
}

/// An outbound QoS 1/2 exchange not yet finished.
#[derive(Debug)]
pub enum Inflight {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Publish(Queued),
    /// PUBREL sent, waiting for PUBCOMP.
    Release,
}

/// A will message waiting for its delay to pass.
#[derive(Debug)]
pub struct PendingWill {
    /// The message to publish.
    pub msg: Arc<Message>,
    /// When.
    pub at: Instant,
}

/// A SUBSCRIBE whose SUBACK waits for the shards that own matching topics.
#[derive(Debug)]
pub struct PendingSubscribe {
    /// Packet id of the SUBSCRIBE.
    pub pkid: u16,
    /// SUBACK codes, one per filter.
    pub codes: Vec<u8>,
    /// Granted options per filter (None for refused filters).
    pub granted: Vec<Option<SubOptions>>,
    /// Shards that have not answered yet.
    pub remaining: usize,
    /// Retained messages collected so far, with the index of the filter they matched.
    pub retained: Vec<(u16, Arc<Message>)>,
    /// The connection the SUBACK goes to.
    pub conn_id: u64,
}

/// Per-session counters: every message given up, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionStats {
    /// Messages given up at the `max_queued_messages` cap (or kept for offline sessions
    /// by no rule: `offline = false`).
    pub dropped: u64,
    /// Messages no log keeps, dropped past [`HOLD_UNSTORED`] waiting.
    pub unstored: u64,
    /// QoS 0 messages dropped because the connection's outbox was full.
    pub outbox_full: u64,
    /// Messages dropped because their Message Expiry Interval passed before delivery.
    pub expired: u64,
    /// Messages dropped because they were larger than the client's Maximum Packet Size.
    pub oversize: u64,
    /// Messages handed to it while offline that were gone from their log when it came
    /// back (evicted from a memory ring, or deleted by retention).
    pub lost: u64,
}

/// What was last done with a session's counters: added to the node's, and logged.
#[derive(Debug, Default, Clone, Copy)]
pub struct Reports {
    /// Counters as last added to the node's.
    pub reported: SessionStats,
    /// Counters as last logged.
    pub logged: SessionStats,
    /// When the drops were last logged.
    pub logged_at: Option<Instant>,
}

/// The most a window's burst past `max_inflight` holds in flight, counted as that many
/// messages of the next one's size: a client reading fast gets many small messages in
/// flight, never many large ones (it buffers what it has not acknowledged).
pub const BURST_BYTES: usize = 1024 * 1024;

/// A session.
pub struct Session {
    /// The client id.
    pub client_id: Arc<str>,
    /// Generation of this slot's occupant.
    pub generation: u64,
    /// Protocol of the last connection.
    pub protocol: Protocol,
    /// Session expiry interval in seconds (u32::MAX: never; 0: ends with the connection).
    pub expiry: u32,
    /// Subscriptions by filter.
    pub subs: HashMap<String, SubOptions>,
    /// The live connection, if any.
    pub conn: Option<Rc<Conn>>,
    /// Who its connection authenticated as (set at each CONNECT).
    pub principal: Option<Arc<Principal>>,
    /// The authorizer's answers for its deliveries (made on the first one judged).
    pub decisions: Option<Box<Decisions>>,
    /// Outbound in-flight window by packet id, in send order.
    pub inflight: BTreeMap<u16, Inflight>,
    /// Send order of the in-flight packet ids (for resend in order).
    pub inflight_order: VecDeque<u16>,
    /// Receive window of the client: in flight at most this many, whatever the outbox holds.
    pub window: u16,
    /// In flight at most this many while the client's outbox keeps draining (see
    /// [`crate::config::Limits::max_inflight_burst`]); at least `window`.
    pub burst: u16,
    /// Messages waiting for the window or the client.
    pub queue: VecDeque<Queued>,
    /// Messages waiting by position, oldest first (past [`HOLD`], or while offline); read
    /// back as the window frees. With `queue`, capped by `max_queued_messages` when set.
    pub parked: VecDeque<Parked>,
    /// Inbound QoS 2 packet ids received and not yet released.
    pub incoming_qos2: BTreeSet<u16>,
    /// A will waiting for its delay.
    pub will: Option<PendingWill>,
    /// When the session ends if the client stays away.
    pub expires_at: Option<Instant>,
    /// SUBSCRIBEs waiting for other shards, by request number.
    pub pending_subs: HashMap<u32, PendingSubscribe>,
    /// Next request number.
    pub next_req: u32,
    next_pkid: u16,
    /// Counters.
    pub stats: SessionStats,
    /// Its image is kept on disk (expiry > 0 and persistence on).
    pub persist: bool,
    /// The image on disk is behind (cursors moved).
    pub dirty: bool,
    /// Per partition log: what the client has acknowledged.
    pub cursors: HashMap<u32, PartCursor>,
    /// The will of the live connection (or of the session, offline), as persisted.
    pub will_image: Option<Box<WillImage>>,
    /// What to read back from the logs once the client is back: restored cursors, pages
    /// left by an earlier answer.
    replay_plan: Option<Vec<ReplayPart>>,
    /// Replay answers still to come.
    replay_waiting: usize,
    /// How many messages at the front of the queue came from a replay (they keep their
    /// place ahead of live ones, and later pages go behind them).
    replay_front: usize,
    /// When the client last acknowledged an in-flight message, or the window last went
    /// from empty to busy: with messages in flight and no acknowledgement for the stuck
    /// timeout, the client makes no progress.
    pub last_ack: Instant,
    /// What was last reported of its counters (boxed, made on the first drop: most
    /// sessions never give anything up).
    pub reports: Option<Box<Reports>>,
}

impl Session {
    /// True when the session's principal may do `action` with `topic` (see
    /// [`crate::auth::Authorizer`]).
    pub fn may(&mut self, cfg: &EngineConfig, action: Action, topic: &[u8]) -> bool {
        let Some(who) = self.principal.as_deref() else { return true };
        let Some(authorizer) = cfg.authorizer_for(who.listener) else { return true };
        self.decisions.get_or_insert_with(Default::default).allowed(Some(authorizer), Some(who), action, topic)
    }

    /// The generation of the authorizer judging the session (None: none judges it).
    pub fn generation(&self, cfg: &EngineConfig) -> Option<u64> {
        cfg.authorizer_for(self.principal.as_deref()?.listener).map(|a| a.generation())
    }

    /// A fresh session.
    pub fn new(client_id: Arc<str>, generation: u64, protocol: Protocol) -> Self {
        Session {
            client_id,
            generation,
            protocol,
            expiry: 0,
            subs: HashMap::new(),
            conn: None,
            principal: None,
            decisions: None,
            inflight: BTreeMap::new(),
            inflight_order: VecDeque::new(),
            window: 1,
            burst: 1,
            queue: VecDeque::new(),
            parked: VecDeque::new(),
            incoming_qos2: BTreeSet::new(),
            will: None,
            expires_at: None,
            pending_subs: HashMap::new(),
            next_req: 0,
            next_pkid: 0,
            stats: SessionStats::default(),
            persist: false,
            dirty: false,
            cursors: HashMap::new(),
            will_image: None,
            replay_plan: None,
            replay_waiting: 0,
            replay_front: 0,
            last_ack: Instant::now(),
            reports: None,
        }
    }

    /// True when the client has had messages in flight for `timeout` without
    /// acknowledging any.
    pub fn stuck(&self, now: Instant, timeout: std::time::Duration) -> bool {
        !self.inflight.is_empty() && now.saturating_duration_since(self.last_ack) >= timeout
    }

    /// True when the segment-log message at `pos` is already queued or in flight.
    pub fn has_pending(&self, pos: Pos) -> bool {
        pos.engine == Engine::Segment
            && self.cursors.get(&pos.partition).is_some_and(|c| c.pending.contains(&pos.offset))
    }

    /// How a message on `topic` read back from a log is delivered: the subscriptions
    /// matching it merged as live delivery merges them (highest QoS, retain as published
    /// if any asks for it, every subscription id); None when none matches.
    pub fn matching(&self, msg: &Message) -> Option<(QoS, bool, Vec<u32>)> {
        let topic = std::str::from_utf8(&msg.topic).ok()?;
        let mut out: Option<(QoS, bool, Vec<u32>)> = None;
        for (f, o) in &self.subs {
            // Shared groups are served to members online only, never read back.
            if crate::route::is_shared(f) || !proto::topic::matches(f, topic) {
                continue;
            }
            let m = out.get_or_insert((o.qos, false, Vec::new()));
            m.0 = m.0.max(o.qos);
            m.1 |= o.retain_as_published;
            m.2.extend(o.sub_id);
        }
        out.map(|(qos, rap, ids)| (msg.qos.min(qos), rap && msg.retain, ids))
    }

    /// A segment-log message reached the session: the cursor moves past it, and (QoS 1/2)
    /// it is pending until acknowledged.
    fn track(&mut self, q: &Queued) {
        let (true, Some(pos), qos) = (self.persist, q.pos, q.qos) else { return };
        if pos.engine != Engine::Segment {
            return;
        }
        let c = self.cursors.entry(pos.partition).or_insert(PartCursor { seen: pos.offset, ..Default::default() });
        c.seen = c.seen.max(pos.offset + 1);
        if qos != QoS::AtMostOnce {
            c.pending.insert(pos.offset);
        }
        self.dirty = true;
    }

    fn untrack(&mut self, pos: Option<Pos>) {
        let Some(pos) = pos.filter(|p| p.engine == Engine::Segment) else { return };
        if let Some(c) = self.cursors.get_mut(&pos.partition) {
            if c.pending.remove(&pos.offset) {
                self.dirty = true;
            }
        }
    }

    /// Takes out the messages given by shared groups that are in flight or queued (their
    /// packet ids freed, no longer pending), to hand them to other members.
    pub fn take_shared(&mut self) -> Vec<Queued> {
        let mut out = Vec::new();
        let ids: Vec<u16> = self
            .inflight
            .iter()
            .filter(|(_, i)| matches!(i, Inflight::Publish(q) if q.shared.is_some()))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(Inflight::Publish(q)) = self.inflight.remove(&id) {
                out.push(q);
            }
        }
        self.inflight_order.retain(|id| self.inflight.contains_key(id));
        let (shared, kept): (VecDeque<Queued>, VecDeque<Queued>) =
            std::mem::take(&mut self.queue).into_iter().partition(|q| q.shared.is_some());
        self.queue = kept;
        self.replay_front = self.replay_front.min(self.queue.len());
        out.extend(shared);
        for q in &out {
            self.untrack(q.pos);
        }
        out
    }

    /// The session's image, for the state store.
    pub fn image(&self, now_ms: u64) -> SessionImage {
        SessionImage {
            client_id: self.client_id.to_string(),
            protocol: if self.protocol == Protocol::V5 { 5 } else { 4 },
            expiry: self.expiry,
            // 0: online when written (a crash ends it at an unknown time; the expiry then
            // counts from the restart).
            offline_since_ms: if self.conn.is_some() { 0 } else { now_ms },
            subs: self.subs.iter().map(|(f, o)| (f.clone(), *o)).collect(),
            cursors: self
                .cursors
                .iter()
                .map(|(p, c)| {
                    let (seen, pending) = c.persisted();
                    (*p, seen, pending)
                })
                .collect(),
            incoming_qos2: self.incoming_qos2.iter().copied().collect(),
            releasing: self
                .inflight_order
                .iter()
                .copied()
                .filter(|id| matches!(self.inflight.get(id), Some(Inflight::Release)))
                .collect(),
            will: self.will_image.as_deref().cloned(),
            principal: self
                .principal
                .as_ref()
                .map(|p| (p.username.as_deref().map(str::to_owned), u16::try_from(p.listener).unwrap_or(u16::MAX))),
        }
    }

    fn alloc_pkid(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid == 0 {
                self.next_pkid = 1;
            }
            if !self.inflight.contains_key(&self.next_pkid) {
                return Some(self.next_pkid);
            }
        }
        None
    }

    /// Hands a message to the session: written to the connection when online (QoS 0 at
    /// once, QoS 1/2 while the in-flight window has room), otherwise it waits (QoS 1/2
    /// only): queued as a copy while fewer than [`HOLD`] are queued and nothing is parked,
    /// else parked by its log position (see the module docs). `max_queued` (0: none) caps
    /// everything waiting, the oldest given up and counted.
    pub fn deliver(&mut self, q: Queued, cache: &mut EncodeCache, max_queued: usize) {
        if q.msg.properties.message_expiry_interval.is_some() && q.msg.expired(now_us()) {
            self.stats.expired += 1;
            return;
        }
        match (&self.conn, q.qos) {
            (Some(conn), QoS::AtMostOnce) => {
                let conn = conn.clone();
                self.count(write_publish(&conn, &q, 0, false, cache));
                self.track(&q);
            }
            (None, QoS::AtMostOnce) => {}
            // Offline messages switched off for this topic (storage rules).
            (None, _) if !q.msg.offline => self.stats.dropped += 1,
            (Some(_), _)
                if self.queue.is_empty()
                    && self.parked.is_empty()
                    && self.window_has_room(q.msg.size())
                    && !self.replay_incomplete() =>
            {
                self.track(&q);
                self.send_inflight(q, cache);
            }
            _ => {
                self.track(&q);
                self.wait(q, max_queued);
            }
        }
    }

    /// Online, and one more message of `len` bytes may go in flight: below the window, or
    /// below the burst while the connection's outbox keeps draining and the burst's
    /// messages stay within [`BURST_BYTES`] (as many more of this size).
    fn window_has_room(&self, len: usize) -> bool {
        let Some(conn) = &self.conn else { return false };
        let n = self.inflight.len();
        n < usize::from(self.window)
            || (n < usize::from(self.burst) && conn.keeps_up() && (n + 1).saturating_mul(len) <= BURST_BYTES)
    }

    /// Counts a delivery that did not reach the outbox.
    fn count(&mut self, w: Written) {
        match w {
            Written::Yes => {}
            Written::TooLarge => self.stats.oversize += 1,
            Written::OutboxFull => self.stats.outbox_full += 1,
        }
    }

    /// A QoS 1/2 message that cannot go out now waits: parked by position when it is in
    /// a log and the queue is long (or the client away, or others are parked before it:
    /// order), queued as a copy otherwise.
    fn wait(&mut self, q: Queued, max_queued: usize) {
        if max_queued > 0 {
            self.trim_to(max_queued - 1);
        }
        let park = q.shared.is_none() && (self.conn.is_none() || !self.parked.is_empty() || self.queue.len() >= HOLD);
        match q.pos {
            Some(pos) if park => {
                let p = match pos.engine {
                    Engine::Segment => Parked::Log(pos),
                    // Held by a connected subscriber whose ring holds publishers back;
                    // only watched otherwise.
                    Engine::Memory if self.conn.is_some() && q.msg.backpressure => {
                        Parked::Ring(Pin::Strong(q.msg), pos)
                    }
                    Engine::Memory => Parked::Ring(Pin::Weak(Arc::downgrade(&q.msg)), pos),
                };
                self.parked.push_back(p);
            }
            _ if self.queue.len() >= HOLD_UNSTORED => {
                self.stats.unstored += 1;
                self.untrack(q.pos);
            }
            _ => self.queue.push_back(q),
        }
    }

    /// Drops the oldest waiting messages (queued ones are older than parked ones) while
    /// queue and parked hold more than `max`; counted.
    fn trim_to(&mut self, max: usize) {
        while self.queue.len() + self.parked.len() > max {
            if let Some(old) = self.queue.pop_front() {
                self.replay_front = self.replay_front.saturating_sub(1);
                self.untrack(old.pos);
            } else if let Some(p) = self.parked.pop_front() {
                self.untrack(Some(p.pos()));
            }
            self.stats.dropped += 1;
        }
    }

    fn send_inflight(&mut self, q: Queued, cache: &mut EncodeCache) {
        let Some(pkid) = self.alloc_pkid() else {
            self.queue.push_front(q);
            return;
        };
        if let Some(conn) = &self.conn {
            let conn = conn.clone();
            let w = write_publish(&conn, &q, pkid, false, cache);
            if w != Written::Yes {
                // Too large for this client: dropped and counted, not left in the window.
                self.count(w);
                self.untrack(q.pos);
                return;
            }
        }
        if self.inflight.is_empty() {
            self.last_ack = Instant::now();
        }
        self.inflight.insert(pkid, Inflight::Publish(q));
        self.inflight_order.push_back(pkid);
    }

    /// Messages read back from the logs for this session: older than anything queued live,
    /// so they go in front of the queue (the queue's bound still drops the oldest).
    pub fn requeue_older(&mut self, items: Vec<Queued>, max_queued: usize) {
        let start = self.replay_front.min(self.queue.len());
        let behind = self.queue.split_off(start);
        for q in items {
            self.track(&q);
            self.queue.push_back(q);
        }
        self.replay_front = self.queue.len();
        self.queue.extend(behind);
        if max_queued > 0 {
            self.trim_to(max_queued);
        }
        self.pump();
    }

    /// Moves queued messages into the window while it has room and the client is online,
    /// taking parked memory-ring messages back into the queue as it drains.
    pub fn pump(&mut self) {
        let mut cache = EncodeCache::default();
        while self.window_has_room(0) {
            if self.queue.len() < HOLD / 2 && self.replay_plan.is_none() && self.replay_waiting == 0 {
                self.unpark_ring();
            }
            // While a replay is incomplete, newer (live) messages wait behind it.
            if self.replay_front == 0 && self.replay_incomplete() {
                break;
            }
            let Some(front) = self.queue.front() else { break };
            if front.qos != QoS::AtMostOnce && !self.window_has_room(front.msg.size()) {
                break;
            }
            let Some(q) = self.queue.pop_front() else { break };
            self.replay_front = self.replay_front.saturating_sub(1);
            if q.msg.properties.message_expiry_interval.is_some() && q.msg.expired(now_us()) {
                // Expired while it waited: dropped, and no longer holds the cursor back.
                self.stats.expired += 1;
                self.untrack(q.pos);
                continue;
            }
            if q.qos == QoS::AtMostOnce {
                if let Some(conn) = &self.conn {
                    let conn = conn.clone();
                    cache.reset();
                    let w = write_publish(&conn, &q, 0, false, &mut cache);
                    self.count(w);
                }
                continue;
            }
            cache.reset();
            self.send_inflight(q, &mut cache);
        }
    }

    /// Resends the in-flight window after a reconnect: PUBLISH with DUP, or PUBREL.
    pub fn resend_inflight(&mut self) {
        let Some(conn) = self.conn.clone() else { return };
        let mut cache = EncodeCache::default();
        for pkid in &self.inflight_order {
            match self.inflight.get(pkid) {
                Some(Inflight::Publish(q)) => {
                    cache.reset();
                    // A message that did not fit was never put in the window.
                    let _ = write_publish(&conn, q, *pkid, true, &mut cache);
                }
                Some(Inflight::Release) => {
                    conn.send(&Packet::PubRel(proto::Ack { pkid: *pkid, reason: 0, properties: Props::default() }));
                }
                None => {}
            }
        }
    }

    /// Drops `pkid` from the send order: O(1) in the usual case of acknowledgements in
    /// send order.
    fn forget_order(&mut self, pkid: u16) {
        if self.inflight_order.front() == Some(&pkid) {
            self.inflight_order.pop_front();
        } else {
            self.inflight_order.retain(|p| *p != pkid);
        }
    }

    /// A PUBACK (QoS 1) or PUBCOMP (QoS 2) from the client ends an exchange.
    /// Returns false when no such exchange was in flight.
    pub fn finish(&mut self, pkid: u16, expect_release: bool) -> bool {
        let ok = matches!(
            (self.inflight.get(&pkid), expect_release),
            (Some(Inflight::Release), true) | (Some(Inflight::Publish(Queued { qos: QoS::AtLeastOnce, .. })), false)
        );
        if ok {
            if let Some(Inflight::Publish(q)) = self.inflight.remove(&pkid) {
                self.untrack(q.pos);
            }
            self.last_ack = Instant::now();
            self.dirty = true;
            self.forget_order(pkid);
            self.pump();
        }
        ok
    }

    /// A PUBREC from the client: the message moves to the release phase.
    /// Returns false when no QoS 2 PUBLISH was in flight with that id.
    pub fn received(&mut self, pkid: u16, failed: bool) -> bool {
        match self.inflight.get(&pkid) {
            Some(Inflight::Publish(Queued { qos: QoS::ExactlyOnce, .. })) => {
                self.last_ack = Instant::now();
                // The client has the message either way: it no longer holds the cursor back.
                if let Some(Inflight::Publish(q)) = self.inflight.remove(&pkid) {
                    self.untrack(q.pos);
                }
                if failed {
                    self.forget_order(pkid);
                    self.pump();
                } else {
                    self.inflight.insert(pkid, Inflight::Release);
                    self.dirty = true;
                }
                true
            }
            Some(Inflight::Release) => true,
            _ => false,
        }
    }
}
