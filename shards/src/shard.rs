//! A shard: one pinned executor's state and its routing.
//!
//! The shard owns its sessions, its local subscription trie, its copy of the interest
//! table (filter -> shards with subscribers), and the retained messages of the topics in
//! its partitions. Everything here runs on the shard's own thread; other shards reach it
//! only through the ingress/egress meshes (see [`crate::msg`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::channel_mesh::Senders;
use glommio::channels::local_channel::{LocalReceiver, LocalSender};
use proto::{Packet, Protocol, QoS, SubAck};

use crate::batch::Outgoing;
use crate::config::EngineConfig;
use crate::conn::OutboxBudget;
use crate::drops::DropCounters;
use crate::msg::{AckTo, Egress, Ingress, InterestItem, Message, Pos, SessionRef};
use crate::partition::PartitionTable;
use crate::pressure::{Flag, Waiting};
use crate::session::{EncodeCache, Queued, Session, SubOptions};
use crate::shared::{Group, Reshare};
use crate::store::{Admit, Deferred, Store};
use crate::trie::TopicTrie;

/// State shared by all shards of a node: touched per connection or per tick, never per
/// message.
#[derive(Debug, Default)]
pub struct NodeShared {
    /// Set when the node should stop (shared with signal handlers).
    pub shutdown: Arc<AtomicBool>,
    /// Open client connections on the whole node.
    pub connections: AtomicUsize,
    /// Shards still running.
    pub running: AtomicUsize,
    /// Messages evicted from the memory rings (summed from the shards at each sweep).
    pub evicted: AtomicU64,
    /// Messages handed to offline sessions that were gone from their logs (evicted, or
    /// deleted by retention) when the session came back.
    pub lost: AtomicU64,
    /// Per partition: its memory ring is full under `backpressure`, so publishes to it
    /// wait for their owner's acknowledgement. Written by the owner when that changes.
    pub pressure: Box<[Flag]>,
    /// How many partitions are under pressure (the publishers' cheap first check).
    pub pressured: AtomicUsize,
    /// Messages given up, by reason, summed from the shards at each sweep.
    pub drops: DropCounters,
}

/// Retained messages answering a subscription, each with the index of its filter.
pub type Retained = Vec<(u16, Arc<Message>)>;

/// One local subscription in the trie.
#[derive(Debug, Clone, Copy)]
pub struct LocalSub {
    /// Session slot.
    pub slot: u32,
    /// Its options.
    pub opts: SubOptions,
}

impl LocalSub {
    /// Sets the options of `slot`'s entry in `subs`, adding it if absent; true if added.
    pub fn upsert(subs: &mut Vec<LocalSub>, slot: u32, opts: SubOptions) -> bool {
        match subs.iter_mut().find(|s| s.slot == slot) {
            Some(s) => {
                s.opts = opts;
                false
            }
            None => {
                subs.push(LocalSub { slot, opts });
                true
            }
        }
    }
}

/// Interest in one filter, as seen by a shard that may own matching topics: how many
/// subscriptions each origin shard holds. Updates are +1/-1 per subscription, so they
/// commute: batches from different connections of one origin may arrive in any order and
/// the count still ends right.
#[derive(Debug)]
pub struct Interest {
    /// Shards with a positive count.
    pub mask: u64,
    counts: Box<[i64]>,
    /// Shared subscription groups over this filter, with their members per shard.
    pub groups: Vec<Group>,
}

impl Interest {
    fn new(shards: usize) -> Self {
        Interest { mask: 0, counts: vec![0; shards].into_boxed_slice(), groups: Vec::new() }
    }

    /// Adds `delta` to `origin`'s count. Returns true when the entry is now empty.
    fn apply(&mut self, origin: usize, delta: i64) -> bool {
        self.counts[origin] += delta;
        if self.counts[origin] > 0 {
            self.mask |= 1 << origin;
        } else {
            self.mask &= !(1u64 << origin);
        }
        self.is_empty()
    }

    /// Adds `delta` to `origin`'s member count of group `key`. Returns true when the
    /// entry is now empty.
    fn apply_shared(&mut self, key: &str, origin: usize, delta: i64) -> bool {
        let shards = self.counts.len();
        let at = match self.groups.iter().position(|g| &*g.key == key) {
            Some(at) => at,
            None => {
                self.groups.push(Group::new(Arc::from(key), shards));
                self.groups.len() - 1
            }
        };
        if self.groups[at].apply(origin, delta) {
            self.groups.swap_remove(at);
        }
        self.is_empty()
    }

    fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.counts.iter().all(|c| *c == 0)
    }
}

/// Counters of one shard.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShardStats {
    /// Messages accepted at this shard as topic owner.
    pub published: u64,
    /// Messages handed to local sessions.
    pub delivered: u64,
    /// Connections closed for protocol errors.
    pub protocol_errors: u64,
    /// Subscribers disconnected for an outbox past twice its bound.
    pub slow_consumers: u64,
    /// Clients disconnected for making no progress for the stuck timeout.
    pub stuck: u64,
    /// Messages of shared groups dropped: no member left, or handed round too often.
    pub shared_dropped: u64,
    /// Messages that waited at a full memory ring (`backpressure`).
    pub held_back: u64,
}

/// The mutable state of a shard.
#[derive(Default)]
pub struct State {
    /// Client id -> session slot.
    pub sessions: HashMap<Arc<str>, u32>,
    /// Session slots.
    pub slots: Vec<Option<Session>>,
    free: Vec<u32>,
    next_generation: u64,
    /// Local subscriptions (not shared ones).
    pub local: TopicTrie<Vec<LocalSub>>,
    /// Members on this shard of each shared group (`$share/g/f`), in joining order.
    pub shared: HashMap<Arc<str>, Vec<LocalSub>>,
    /// Messages of shared groups waiting to be handed back to their owners.
    pub reshare: Vec<Reshare>,
    /// Sessions whose next replay page can be asked for now.
    pub replay_now: Vec<u32>,
    /// Wakes [`deferred_sends`] (a pending wake-up covers every later one).
    kick: Option<LocalSender<()>>,
    /// Messages waiting at full memory rings (`backpressure`), per partition, in arrival
    /// order, each with its publisher's acknowledgement if that waits too. Bounded by what
    /// publishers may have unacknowledged (their Receive Maximum) plus what was on its
    /// way when the ring filled.
    pub waiting: HashMap<u32, std::collections::VecDeque<Waiting>>,
    /// Wakes [`relieve_loop`].
    pub pressure_kick: Option<LocalSender<()>>,
    /// Interest: filter -> shards with subscribers.
    pub interest: TopicTrie<Interest>,
    /// Retained messages of the topics this shard owns.
    pub retained: HashMap<Bytes, Arc<Message>>,
    scratch: Vec<LocalSub>,
    /// Encoding buffers reused by every fan-out on this shard.
    cache: EncodeCache,
    /// Logs and persisted state of this shard's partitions.
    pub store: Store,
    /// Counters.
    pub stats: ShardStats,
    /// Counters as last added to the node's.
    reported: ShardStats,
    /// Evictions already added to the node's count.
    evicted_reported: u64,
}

impl State {
    /// Installs the wake-up channel of [`deferred_sends`].
    pub fn set_kick(&mut self, kick: LocalSender<()>) {
        self.kick = Some(kick);
    }

    /// Has [`deferred_sends`] ask for the next replay page of `slot` (once, however often
    /// this is called before it runs).
    pub fn replay_soon(&mut self, slot: u32) {
        if !self.replay_now.contains(&slot) {
            self.replay_now.push(slot);
        }
        self.kick();
    }

    /// Wakes [`deferred_sends`]: never blocks, so handlers that must not send use it.
    pub fn kick(&self) {
        if let Some(k) = &self.kick {
            let _ = k.try_send(());
        }
    }

    /// The session in `slot` if it is still generation `generation`.
    pub fn session(&mut self, slot: u32, generation: u64) -> Option<&mut Session> {
        self.slots.get_mut(slot as usize)?.as_mut().filter(|s| s.generation == generation)
    }

    /// Creates a session for `client_id`.
    pub fn insert_session(&mut self, client_id: Arc<str>, protocol: Protocol) -> u32 {
        self.next_generation += 1;
        let s = Session::new(client_id.clone(), self.next_generation, protocol);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(s);
                slot
            }
            None => {
                self.slots.push(Some(s));
                (self.slots.len() - 1) as u32
            }
        };
        self.sessions.insert(client_id, slot);
        slot
    }
}

/// A shard.
pub struct Shard {
    /// This shard's index.
    pub id: usize,
    /// Number of shards.
    pub nshards: usize,
    /// The partition table (a copy per shard).
    pub table: PartitionTable,
    /// Configuration.
    pub cfg: Arc<EngineConfig>,
    /// Node-wide flags and counts.
    pub node: Arc<NodeShared>,
    /// Senders of the ingress mesh.
    pub ingress_tx: Senders<Vec<Ingress>>,
    /// Senders of the egress mesh.
    pub egress_tx: Senders<Vec<Egress>>,
    /// Mutable state; never borrowed across an await.
    pub st: RefCell<State>,
    /// Live connections on this shard.
    pub conns: Cell<usize>,
    /// Bytes waiting in this shard's outboxes, against its share of `max_outbound_total`.
    pub outbox: Rc<OutboxBudget>,
    next_conn_id: Cell<u64>,
}

impl Shard {
    /// A shard with empty state.
    pub fn new(
        id: usize,
        cfg: Arc<EngineConfig>,
        node: Arc<NodeShared>,
        ingress_tx: Senders<Vec<Ingress>>,
        egress_tx: Senders<Vec<Egress>>,
    ) -> Self {
        let nshards = ingress_tx.nr_consumers();
        let outbox = OutboxBudget::new(cfg.limits.max_outbound_total / nshards.max(1));
        Shard {
            id,
            nshards,
            table: PartitionTable::new(cfg.partitions, nshards),
            cfg,
            node,
            ingress_tx,
            egress_tx,
            st: RefCell::new(State::default()),
            conns: Cell::new(0),
            outbox,
            next_conn_id: Cell::new(0),
        }
    }

    /// A new connection id, unique on this shard.
    pub fn conn_id(&self) -> u64 {
        let id = self.next_conn_id.get() + 1;
        self.next_conn_id.set(id);
        id
    }

    /// An outgoing batch sized for this node.
    pub fn outgoing(&self) -> Outgoing {
        Outgoing::new(self.nshards)
    }

    /// The shard that owns `topic`.
    pub fn owner(&self, topic: &[u8]) -> usize {
        self.table.shard_of(topic)
    }

    /// The one partition whose topics can match `filter` (its inner filter, for a shared
    /// one), or None for a wildcard filter, which may match topics of every partition.
    pub fn plain_partition(&self, filter: &str) -> Option<u32> {
        let filter = crate::shared::inner(filter);
        (!filter.contains(['+', '#'])).then(|| self.table.partition_of(filter.as_bytes()))
    }

    /// Shards that may own topics matching `filter`: its owner for a plain filter,
    /// every shard for a wildcard one.
    pub fn targets(&self, filter: &str) -> Vec<usize> {
        match self.plain_partition(filter) {
            Some(p) => vec![self.table.shard_of_partition(p)],
            None => (0..self.nshards).collect(),
        }
    }

    /// Routes a message to its topic's owner: in place when that is this shard. `ack` is
    /// the publisher's acknowledgement when it waits for the owner's append.
    pub fn route(&self, msg: Arc<Message>, ack: Option<AckTo>, out: &mut Outgoing) {
        let owner = self.owner(&msg.topic);
        if owner == self.id {
            self.accept_at_owner(msg, ack, out);
        } else {
            out.ingress(owner, Ingress::Publish(msg, ack));
        }
    }

    /// The owner's part of a PUBLISH: log append (segment topics) or memory ring (QoS 1/2
    /// of `memory` topics that offline sessions keep), retained store, then one copy to
    /// each shard with interest.
    pub fn accept_at_owner(&self, msg: Arc<Message>, ack: Option<AckTo>, out: &mut Outgoing) {
        let in_ring = !msg.durable && msg.offline && msg.qos != QoS::AtMostOnce;
        // Hashed again only when storage needs it: the QoS 0 path skips it.
        let partition = if msg.durable || msg.retain || in_ring { self.table.partition_of(&msg.topic) } else { 0 };
        let mut pos = None;
        if in_ring {
            let st = &mut *self.st.borrow_mut();
            if let Some(w) = st.waiting.get_mut(&partition) {
                // Others wait before it: behind them, in order.
                w.push_back((msg, ack));
                return;
            }
            match st.store.admit(partition, &msg) {
                Admit::Kept(p) => pos = Some(p),
                Admit::NotKept => {}
                Admit::Full => {
                    self.hold_back(st, partition, msg, ack);
                    return;
                }
            }
        }
        self.publish_at_owner(msg, ack, partition, pos, out);
    }

    /// The owner's part of a PUBLISH once its ring has taken it (or it needs none): log
    /// append (segment topics), acknowledgement, retained store, then one copy to each
    /// shard with interest.
    pub(crate) fn publish_at_owner(
        &self,
        msg: Arc<Message>,
        ack: Option<AckTo>,
        partition: u32,
        mut pos: Option<Pos>,
        out: &mut Outgoing,
    ) {
        let (mask, pos, picks) = {
            let st = &mut *self.st.borrow_mut();
            st.stats.published += 1;
            let mut code = proto::reason::SUCCESS;
            if msg.durable {
                match st.store.append(partition, &msg) {
                    Ok(p) => pos = Some(p),
                    Err(e) => {
                        tracing::error!(error = %e, "append failed");
                        st.store.stats.write_errors += 1;
                        code = proto::reason::UNSPECIFIED_ERROR;
                    }
                }
            }
            if msg.retain && code == proto::reason::SUCCESS {
                self.store_retained(st, partition, &msg);
            }
            let mut mask = 0u64;
            let mut picks: Vec<(usize, Arc<str>, u32)> = Vec::new();
            let strategy = self.cfg.shared_strategy;
            st.interest.matches(&msg.topic, |i| {
                mask |= i.mask;
                for g in &i.groups {
                    if let Some((d, index)) = g.pick(strategy, &msg) {
                        picks.push((d, g.key.clone(), index));
                    }
                }
            });
            if let Some(a) = ack {
                // Known here and free to say: this acknowledgement waited for its owner
                // anyway (a segment topic's commit, or a full memory ring).
                let nobody = code == proto::reason::SUCCESS && mask == 0 && picks.is_empty();
                st.store.defer(Deferred::Ack(a, if nobody { proto::reason::NO_MATCHING_SUBSCRIBERS } else { code }));
            }
            (mask, pos, picks)
        };
        if !picks.is_empty() {
            self.send_picks(&msg, pos, picks, out);
        }
        for d in 0..self.nshards {
            if mask & (1 << d) == 0 {
                continue;
            }
            if d == self.id {
                self.deliver_local(&msg, pos);
            } else {
                out.egress(d, Egress::Deliver(msg.clone(), pos));
            }
        }
    }

    /// Sends a message to the shards of the members its owner picked, one copy per shard.
    fn send_picks(
        &self,
        msg: &Arc<Message>,
        pos: Option<Pos>,
        mut picks: Vec<(usize, Arc<str>, u32)>,
        out: &mut Outgoing,
    ) {
        picks.sort_by_key(|p| p.0);
        let mut it = picks.into_iter().peekable();
        while let Some((d, key, index)) = it.next() {
            let mut mine = vec![(key, index)];
            while let Some((_, key, index)) = it.next_if(|p| p.0 == d) {
                mine.push((key, index));
            }
            if d == self.id {
                self.deliver_shared(msg, pos, mine, 0);
            } else {
                out.egress(d, Egress::DeliverShared { msg: msg.clone(), pos, picks: mine, hops: 0 });
            }
        }
    }

    /// Hands a message to every local session with a matching subscription: once per
    /// session, with the highest granted QoS and every matching subscription id.
    pub fn deliver_local(&self, msg: &Arc<Message>, pos: Option<Pos>) {
        let st = &mut *self.st.borrow_mut();
        let mut subs = std::mem::take(&mut st.scratch);
        subs.clear();
        st.local.matches(&msg.topic, |v| subs.extend_from_slice(v));
        subs.sort_by_key(|s| s.slot);
        let max_queued = self.cfg.limits.max_queued_messages;
        let mut cache = std::mem::take(&mut st.cache);
        cache.reset();
        let mut i = 0;
        while i < subs.len() {
            let slot = subs[i].slot;
            let mut qos: Option<QoS> = None;
            let mut rap = false;
            let mut sub_ids = Vec::new();
            while i < subs.len() && subs[i].slot == slot {
                let o = subs[i].opts;
                i += 1;
                if o.no_local {
                    let own = st.slots[slot as usize].as_ref().is_some_and(|s| *s.client_id == *msg.publisher);
                    if own {
                        continue;
                    }
                }
                qos = Some(qos.map_or(o.qos, |q| q.max(o.qos)));
                rap |= o.retain_as_published;
                sub_ids.extend(o.sub_id);
            }
            let (Some(granted), Some(Some(session))) = (qos, st.slots.get_mut(slot as usize)) else {
                continue;
            };
            st.stats.delivered += 1;
            let q = Queued {
                msg: msg.clone(),
                qos: msg.qos.min(granted),
                retain: rap && msg.retain,
                sub_ids,
                pos,
                shared: None,
            };
            session.deliver(q, &mut cache, max_queued);
        }
        st.scratch = subs;
        st.cache = cache;
    }

    /// The owner's part of a SUBSCRIBE: record the origin's interest and collect retained
    /// messages matching the filters.
    pub fn serve_subscribe(&self, origin: usize, items: &[InterestItem]) -> (Retained, Vec<(u32, u64)>) {
        let st = &mut *self.st.borrow_mut();
        let mut retained = Vec::new();
        // Partitions whose logs may hold topics matching any of the filters.
        let mut parts = std::collections::BTreeSet::new();
        for item in items {
            if st.store.persistent() {
                match self.plain_partition(&item.filter) {
                    Some(p) => {
                        parts.insert(p);
                    }
                    None => parts.extend(self.table.owned_by(self.id)),
                }
            }
            if item.add_interest {
                self.apply_interest(st, origin, &item.filter, 1);
            }
            if item.want_retained {
                let now = Instant::now();
                if item.filter.contains(['+', '#']) {
                    for (topic, msg) in &st.retained {
                        if !msg.expired(now)
                            && std::str::from_utf8(topic).is_ok_and(|t| proto::topic::matches(&item.filter, t))
                        {
                            retained.push((item.index, msg.clone()));
                        }
                    }
                } else if let Some(msg) = st.retained.get(item.filter.as_bytes()).filter(|m| !m.expired(now)) {
                    retained.push((item.index, msg.clone()));
                }
            }
        }
        let offsets = st.store.next_offsets(parts.into_iter());
        (retained, offsets)
    }

    /// Changes `origin`'s subscription count for `filter` (member count, for a shared
    /// group) by `delta`.
    pub fn apply_interest(&self, st: &mut State, origin: usize, filter: &str, delta: i64) {
        let n = self.nshards;
        match proto::topic::parse_shared(filter) {
            Some((_, inner)) => {
                st.interest.entry(inner, || Interest::new(n));
                st.interest.update(inner, |i| i.apply_shared(filter, origin, delta));
            }
            None => {
                st.interest.entry(filter, || Interest::new(n));
                st.interest.update(filter, |i| i.apply(origin, delta));
            }
        }
    }

    /// An owner answered a subscription request; the SUBACK goes out with the last answer.
    pub fn subscribe_answered(
        &self,
        to: SessionRef,
        req: u32,
        retained: Vec<(u16, Arc<Message>)>,
        offsets: Vec<(u32, u64)>,
    ) {
        let st = &mut *self.st.borrow_mut();
        let max_queued = self.cfg.limits.max_queued_messages;
        let Some(session) = st.session(to.slot, to.generation) else { return };
        session.start_cursors(&offsets);
        let Some(pending) = session.pending_subs.get_mut(&req) else { return };
        pending.retained.extend(retained);
        pending.remaining = pending.remaining.saturating_sub(1);
        if pending.remaining > 0 {
            return;
        }
        let Some(pending) = session.pending_subs.remove(&req) else { return };
        let properties = session.conn.as_ref().map_or_else(Default::default, |c| c.suback_props(&pending.codes));
        let suback = Packet::SubAck(SubAck { pkid: pending.pkid, codes: pending.codes, properties });
        let conn_id = pending.conn_id;
        if session.persist {
            // The SUBACK waits until the subscription (and where its cursors start) is on
            // disk: once a client has it, a restart does not lose what it subscribed to.
            self.persist_session(st, to.slot);
            st.store.defer(Deferred::Packet { to, conn_id, packet: suback });
        } else if let Some(conn) = session.conn.as_ref().filter(|c| c.id == conn_id) {
            conn.send(&suback);
        }
        let Some(session) = st.session(to.slot, to.generation) else { return };
        Self::deliver_retained(session, pending.retained, &pending.granted, max_queued);
    }

    fn deliver_retained(
        session: &mut Session,
        retained: Vec<(u16, Arc<Message>)>,
        granted: &[Option<SubOptions>],
        max_queued: usize,
    ) {
        let mut cache = EncodeCache::default();
        for (index, msg) in retained {
            let Some(Some(opts)) = granted.get(usize::from(index)) else { continue };
            cache.reset();
            let q = Queued {
                qos: msg.qos.min(opts.qos),
                retain: true,
                sub_ids: opts.sub_id.into_iter().collect(),
                msg,
                pos: None,
                shared: None,
            };
            session.deliver(q, &mut cache, max_queued);
        }
    }

    /// Adds (or updates the options of) a local subscription.
    pub fn add_local(&self, st: &mut State, slot: u32, filter: &str, opts: SubOptions) {
        LocalSub::upsert(st.local.entry(filter, Vec::new), slot, opts);
    }

    /// Removes a local subscription and withdraws its count from the shards that may own
    /// matching topics.
    pub fn remove_local(&self, st: &mut State, slot: u32, filter: &str, out: &mut Outgoing) {
        if crate::shared::is_shared(filter) {
            self.leave_group(st, slot, filter, out);
            return;
        }
        st.local.update(filter, |subs| {
            subs.retain(|s| s.slot != slot);
            subs.is_empty()
        });
        self.send_interest(st, filter, -1, out);
    }

    /// Adds `delta` to this shard's count for `filter` (its member count, for a shared
    /// group) at every shard that may own matching topics.
    pub fn send_interest(&self, st: &mut State, filter: &str, delta: i64, out: &mut Outgoing) {
        for t in self.targets(filter) {
            if t == self.id {
                self.apply_interest(st, self.id, filter, delta);
            } else {
                out.ingress(t, Ingress::Interest { origin: self.id as u16, filter: filter.to_owned(), delta });
            }
        }
    }

    /// Ends a session: its subscriptions go (what it held of shared groups goes to other
    /// members), its slot is freed.
    pub fn end_session(&self, st: &mut State, slot: u32, out: &mut Outgoing) -> Option<Session> {
        self.leave_groups(st, slot, out);
        let mut session = st.slots.get_mut(slot as usize)?.take()?;
        self.report_drops(&mut session, Instant::now());
        for filter in session.subs.keys() {
            self.remove_local(st, slot, filter, out);
        }
        if st.sessions.get(&session.client_id) == Some(&slot) {
            st.sessions.remove(&session.client_id);
        }
        if session.persist {
            self.forget_session(st, &session.client_id);
        }
        st.free.push(slot);
        Some(session)
    }

    /// Handles one batch from the ingress mesh.
    pub async fn on_ingress(self: &Rc<Self>, from: usize, batch: Vec<Ingress>) {
        let mut out = self.outgoing();
        for m in batch {
            match m {
                Ingress::Publish(msg, ack) => self.accept_at_owner(msg, ack, &mut out),
                Ingress::Subscribe { from: who, req, items } => {
                    let (retained, offsets) = self.serve_subscribe(from, &items);
                    out.egress(usize::from(who.shard), Egress::SubscribeDone { to: who, req, retained, offsets });
                }
                Ingress::Replay { to, parts, filters } => {
                    let (msgs, rest, lost) = self.serve_replay(&parts, &filters);
                    if usize::from(to.shard) == self.id {
                        self.replayed(to, msgs, rest, lost);
                    } else {
                        out.egress(usize::from(to.shard), Egress::Replayed { to, msgs, rest, lost });
                    }
                }
                Ingress::Interest { origin, filter, delta } => {
                    let st = &mut *self.st.borrow_mut();
                    self.apply_interest(st, usize::from(origin), &filter, delta);
                }
                Ingress::Reshare(r) => {
                    let st = &mut *self.st.borrow_mut();
                    self.pick_again(st, r, &mut out);
                }
                Ingress::Handoff(h) => {
                    glommio::spawn_local(crate::client::run_handed_off(self.clone(), h)).detach();
                }
            }
            if out.is_full() {
                out.flush(self).await;
            }
        }
        crate::store::commit_inline(self, &mut out);
        out.flush(self).await;
    }

    /// Handles one batch from the egress mesh. Never sends to another shard.
    pub fn on_egress(&self, batch: Vec<Egress>) {
        for m in batch {
            match m {
                Egress::Deliver(msg, pos) => self.deliver_local(&msg, pos),
                Egress::DeliverShared { msg, pos, picks, hops } => self.deliver_shared(&msg, pos, picks, hops),
                Egress::SubscribeDone { to, req, retained, offsets } => {
                    self.subscribe_answered(to, req, retained, offsets)
                }
                Egress::Acked(acks) => {
                    for (a, code) in acks {
                        self.acked(a, code);
                    }
                }
                Egress::Replayed { to, msgs, rest, lost } => self.replayed(to, msgs, rest, lost),
            }
        }
    }

    /// Periodic work: expired sessions end, delayed wills are published.
    pub fn sweep(&self, now: Instant, out: &mut Outgoing) {
        let mut wills = Vec::new();
        {
            let st = &mut *self.st.borrow_mut();
            let mut ended = Vec::new();
            let stuck_after = self.cfg.limits.stuck_timeout;
            for (slot, s) in st.slots.iter_mut().enumerate() {
                let Some(s) = s else { continue };
                self.report_drops(s, now);
                if let Some(c) = &s.conn {
                    c.trim_idle();
                    if s.stuck(now, stuck_after) {
                        // Messages in flight and not one acknowledged for the stuck timeout.
                        c.close(crate::conn::CloseCause::Stuck);
                    }
                    continue;
                }
                if s.will.as_ref().is_some_and(|w| w.at <= now) {
                    wills.extend(s.will.take().map(|w| w.msg));
                    s.will_image = None;
                    s.dirty = true;
                }
                if s.expires_at.is_some_and(|t| t <= now) {
                    ended.push(slot as u32);
                }
            }
            for slot in ended {
                if let Some(s) = self.end_session(st, slot, out) {
                    tracing::info!(client_id = %crate::show::short(&s.client_id), "session expired");
                    wills.extend(s.will.map(|w| w.msg));
                }
            }
            self.persist_dirty(st);
            st.store.release_rings();
            let evicted = st.store.evicted();
            self.node.evicted.fetch_add(evicted - st.evicted_reported, Ordering::Relaxed);
            st.evicted_reported = evicted;
            let (now_s, before) = (st.stats, st.reported);
            let d = &self.node.drops;
            d.stuck.fetch_add(now_s.stuck - before.stuck, Ordering::Relaxed);
            d.slow_consumers.fetch_add(now_s.slow_consumers - before.slow_consumers, Ordering::Relaxed);
            d.held_back.fetch_add(now_s.held_back - before.held_back, Ordering::Relaxed);
            d.shared.fetch_add(now_s.shared_dropped - before.shared_dropped, Ordering::Relaxed);
            st.reported = now_s;
        }
        // Next pages of replays, for online sessions that sent the previous page out.
        let more: Vec<u32> = {
            let st = self.st.borrow();
            st.slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().filter(|s| s.wants_replay_page()).map(|_| i as u32))
                .collect()
        };
        for slot in more {
            self.request_replay(slot, out);
        }
        for w in wills {
            self.route(w, None, out);
        }
    }
}

/// Sends what handlers that must not send (the egress handler) left to do: shared-group
/// messages to hand back, and the next replay page of sessions whose last page came back
/// with nothing left to send (so a replay that scans past records of other topics moves on
/// at once instead of a page per sweep).
pub async fn deferred_sends(shard: Rc<Shard>, wake: LocalReceiver<()>) {
    while wake.recv().await.is_some() {
        let mut out = shard.outgoing();
        shard.flush_reshare(&mut out);
        let slots = std::mem::take(&mut shard.st.borrow_mut().replay_now);
        for slot in slots {
            let wants = shard
                .st
                .borrow()
                .slots
                .get(slot as usize)
                .is_some_and(|s| s.as_ref().is_some_and(|s| s.wants_replay_page()));
            if wants {
                shard.request_replay(slot, &mut out);
            }
        }
        out.flush(&shard).await;
    }
}

/// How often a shard checks for shutdown.
pub const TICK: Duration = Duration::from_millis(100);
/// How often a shard walks its sessions for expiry and delayed wills: the precision of
/// both (they are given in whole seconds).
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);

impl NodeShared {
    /// True once shutdown was asked for.
    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::Interest;

    #[test]
    fn interest_counts_commute() {
        // Unsubscribe of one client overtaking the subscribe of another on the same origin.
        let mut i = Interest::new(3);
        assert!(!i.apply(1, -1), "a negative count is kept, not dropped");
        assert_eq!(i.mask, 0);
        assert!(i.apply(1, 1), "back to zero: empty");
        assert_eq!(i.mask, 0);
        assert!(!i.apply(1, 1));
        assert_eq!(i.mask, 0b010);
        assert!(!i.apply(2, 1));
        assert_eq!(i.mask, 0b110);
        assert!(!i.apply(1, -1));
        assert_eq!(i.mask, 0b100);
        assert!(i.apply(2, -1));
        assert_eq!(i.mask, 0);
    }
}
