//! A shard: one pinned executor's state.
//!
//! The shard owns its sessions, its local subscription trie, its copy of the interest
//! table (filter -> shards with subscribers), and the retained messages of the topics in
//! its partitions. Everything here runs on the shard's own thread; other shards reach it
//! only through the routing step and the meshes (see [`super::dispatch`]).
//!
//! This module holds the data; the modules beside it add the behaviour (`impl Shard`)
//! and import it, never the other way round.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use glommio::channels::local_channel::LocalSender;
use proto::Protocol;

use super::interest::{Interest, LocalSub};
use super::session::{EncodeCache, Session};
use crate::config::EngineConfig;
use crate::metrics::{Counters, DropCounters, ShardSlot};
use crate::msg::{AckTo, Message};
use crate::net::OutboxBudget;
use crate::route::mesh::{Handoff, Reshare};
use crate::route::{Mesh, Outgoing, Router, ShardSet};
use crate::store::Store;
use crate::trie::TopicTrie;

/// A flag on a cache line of its own (one writer: the partition's owner).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Flag(pub AtomicBool);

/// A message waiting at a full memory ring, with its publisher's acknowledgement if that
/// waits too.
pub type Waiting = (Arc<Message>, Option<AckTo>);

/// State shared by all shards of a node: touched per connection or per tick, never per
/// message.
#[derive(Debug, Default)]
pub struct NodeShared {
    /// Set when the node should stop (shared with signal handlers).
    pub shutdown: Arc<AtomicBool>,
    /// Open client connections on the whole node.
    pub connections: Arc<AtomicUsize>,
    /// Failing addresses (see [`crate::auth::throttle`]).
    pub throttle: crate::auth::throttle::Throttle,
    /// Open client connections per listener (by the index in the config's listeners).
    pub listener_connections: Vec<Arc<AtomicUsize>>,
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
    /// Each shard's metrics, published by that shard every tick.
    pub metrics: Box<[ShardSlot]>,
}

/// Retained messages answering a subscription, each with the index of its filter.
pub type Retained = Vec<(u16, Arc<Message>)>;

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

/// What the sweep counts as it walks the sessions (metrics gauges).
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// Sessions with a connection.
    pub online: u64,
    /// Sessions without one.
    pub offline: u64,
    /// Their subscriptions.
    pub subscriptions: u64,
    /// QoS 1/2 messages waiting for them, queued or parked.
    pub queued: u64,
}

/// The mutable state of a shard.
#[derive(Default)]
pub struct State {
    /// Client id -> session slot.
    pub sessions: HashMap<Arc<str>, u32>,
    /// Session slots (boxed: a free slot, and the table's spare capacity, cost a pointer,
    /// not a session).
    pub slots: Vec<Option<Box<Session>>>,
    pub(crate) free: Vec<u32>,
    next_generation: u64,
    /// Local subscriptions (not shared ones).
    pub local: TopicTrie<Vec<LocalSub>>,
    /// Members on this shard of each shared group (`$share/g/f`), in joining order.
    pub shared: HashMap<Arc<str>, Vec<LocalSub>>,
    /// Messages of shared groups waiting to be handed back to their owners.
    pub reshare: Vec<Reshare>,
    /// Sessions whose next replay page can be asked for now.
    pub replay_now: Vec<u32>,
    /// Wakes [`deferred_sends`](super::dispatch::deferred_sends) (a pending wake-up
    /// covers every later one).
    kick: Option<LocalSender<()>>,
    /// Connections handed to this shard, for the front to run (bounded; when full, the
    /// connection is closed).
    pub arrivals: Option<LocalSender<Box<Handoff>>>,
    /// Messages waiting at full memory rings (`backpressure`), per partition, in arrival
    /// order, each with its publisher's acknowledgement if that waits too. Bounded by what
    /// publishers may have unacknowledged (their Receive Maximum) plus what was on its
    /// way when the ring filled.
    pub waiting: HashMap<u32, VecDeque<Waiting>>,
    /// Wakes [`relieve_loop`](super::pressure::relieve_loop).
    pub pressure_kick: Option<LocalSender<()>>,
    /// Interest: filter -> shards with subscribers.
    pub interest: TopicTrie<Interest>,
    /// Retained messages of the topics this shard owns.
    pub retained: HashMap<Bytes, Arc<Message>>,
    /// Reused by each local delivery: the matching subscriptions.
    pub(crate) scratch: Vec<LocalSub>,
    /// Reused by each owner step: the shards with interest.
    pub(crate) fanout: ShardSet,
    /// Encoding buffers reused by every fan-out on this shard.
    pub(crate) cache: EncodeCache,
    /// Logs and persisted state of this shard's partitions.
    pub store: Store,
    /// Counters.
    pub stats: ShardStats,
    /// Counters as last added to the node's.
    pub(crate) reported: ShardStats,
    /// Evictions already added to the node's count.
    pub(crate) evicted_reported: u64,
    /// Session counts at the last sweep.
    pub(crate) gauges: Gauges,
}

impl State {
    /// Installs the wake-up channel of [`deferred_sends`](super::dispatch::deferred_sends).
    pub fn set_kick(&mut self, kick: LocalSender<()>) {
        self.kick = Some(kick);
    }

    /// Has [`deferred_sends`](super::dispatch::deferred_sends) ask for the next replay page of `slot` (once, however often
    /// this is called before it runs).
    pub fn replay_soon(&mut self, slot: u32) {
        if !self.replay_now.contains(&slot) {
            self.replay_now.push(slot);
        }
        self.kick();
    }

    /// Wakes [`deferred_sends`](super::dispatch::deferred_sends): never blocks, so handlers that must not send use it.
    pub fn kick(&self) {
        if let Some(k) = &self.kick {
            let _ = k.try_send(());
        }
    }

    /// The session in `slot` if it is still generation `generation`.
    pub fn session(&mut self, slot: u32, generation: u64) -> Option<&mut Session> {
        self.slots.get_mut(slot as usize)?.as_deref_mut().filter(|s| s.generation == generation)
    }

    /// Creates a session for `client_id`.
    pub fn insert_session(&mut self, client_id: Arc<str>, protocol: Protocol) -> u32 {
        self.next_generation += 1;
        let s = Session::new(client_id.clone(), self.next_generation, protocol);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(Box::new(s));
                slot
            }
            None => {
                self.slots.push(Some(Box::new(s)));
                (self.slots.len() - 1) as u32
            }
        };
        self.sessions.insert(client_id, slot);
        slot
    }
}

/// A shard.
pub struct Shard {
    /// Where things live: this shard's index, the number of shards, the partition table.
    pub router: Router,
    /// Configuration.
    pub cfg: Arc<EngineConfig>,
    /// Node-wide flags and counts.
    pub node: Arc<NodeShared>,
    /// Senders of the two meshes.
    pub mesh: Mesh,
    /// Mutable state; never borrowed across an await.
    pub st: RefCell<State>,
    /// Live connections on this shard.
    pub conns: Cell<usize>,
    /// Bytes waiting in this shard's outboxes, against its share of `max_outbound_total`.
    pub outbox: Rc<OutboxBudget>,
    /// Hot counters (see [`crate::metrics`]).
    pub counters: Counters,
    /// Slow authentication checks (argon2) running on the blocking pool, at most
    /// [`crate::auth::throttle::SLOW_AT_ONCE`] at once.
    pub slow_auth: glommio::sync::Semaphore,
    next_conn_id: Cell<u64>,
}

impl Shard {
    /// A shard with empty state.
    pub fn new(id: usize, cfg: Arc<EngineConfig>, node: Arc<NodeShared>, mesh: Mesh) -> Self {
        let nshards = mesh.ingress.nr_consumers();
        let outbox = OutboxBudget::new(cfg.limits.max_outbound_total / nshards.max(1));
        let st = State { fanout: ShardSet::new(nshards), ..State::default() };
        Shard {
            router: Router::new(id, nshards, cfg.partitions),
            cfg,
            node,
            mesh,
            st: RefCell::new(st),
            conns: Cell::new(0),
            outbox,
            counters: Counters::default(),
            slow_auth: glommio::sync::Semaphore::new(crate::auth::throttle::SLOW_AT_ONCE as u64),
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
        Outgoing::new(self.router.nshards)
    }

    /// True once the node is stopping.
    pub fn stopping(&self) -> bool {
        self.node.stopping()
    }
}

impl NodeShared {
    /// True once shutdown was asked for.
    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }
}
