//! Engine configuration: the limits and defaults every shard enforces.
//!
//! Built once by the binary (from flags and the TOML file) and handed to every shard as an
//! `Arc`; shards only read it. Every limit has a bound and a reason.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{AuthMethod, Authenticator, Authorizer, Reload};
use crate::net::tls::TlsSource;
use crate::net::ws::WsSettings;

/// What the engine needs to run: listeners, shard and partition counts, and limits.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Plain MQTT listeners judged by the broker-wide `authenticator` and `authorizer`
    /// (each shard accepts on every address via SO_REUSEPORT). They come first among the
    /// node's listeners, before `listeners`.
    pub listen: Vec<SocketAddr>,
    /// Listeners with their own transport and access settings (`[[listener]]`).
    pub listeners: Vec<ListenerConfig>,
    /// Number of shards (pinned executors). 0 means one per CPU the process may use.
    pub shards: usize,
    /// Number of partitions topics and sessions hash into.
    pub partitions: u32,
    /// Pin each shard to one CPU.
    pub pin: bool,
    /// Batches one shard-to-shard channel holds before the sender waits (backpressure).
    pub channel_capacity: usize,
    /// Limits enforced per connection and session.
    pub limits: Limits,
    /// Where messages and state are kept.
    pub storage: StorageConfig,
    /// Sent as Response Information in CONNACK to 5.0 clients that ask for it (Request
    /// Response Information = 1): the base of the response topics they may use.
    pub response_information: Option<String>,
    /// How a shared subscription's group picks the member a message goes to.
    pub shared_strategy: SharedStrategy,
    /// MQTT 5.0 enhanced authentication methods, by name (none by default: a CONNECT
    /// naming a method is refused with 0x8C).
    pub auth_methods: Vec<Arc<dyn AuthMethod>>,
    /// Decides who a client is at CONNECT (None: everyone is let in, as themselves).
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// Decides what a client may publish, subscribe to, read retained and leave as a will
    /// (None: everything is allowed).
    pub authorizer: Option<Arc<dyn Authorizer>>,
}

impl EngineConfig {
    /// The authorizer judging clients of listener `i` (its own, or the broker-wide one).
    pub fn authorizer_for(&self, i: usize) -> Option<&Arc<dyn Authorizer>> {
        self.listeners.get(i).and_then(|l| l.authorizer.as_ref()).or(self.authorizer.as_ref())
    }

    /// The authenticator judging clients of listener `i` (its own, or the broker-wide one).
    pub fn authenticator_for(&self, i: usize) -> Option<&Arc<dyn Authenticator>> {
        self.listeners.get(i).and_then(|l| l.authenticator.as_ref()).or(self.authenticator.as_ref())
    }

    /// Every listener, `listen` first (as plain listeners), in the order
    /// [`crate::Node::local_addrs`] gives their addresses.
    pub fn all_listeners(&self) -> Vec<ListenerConfig> {
        let plain = self.listen.iter().map(|a| ListenerConfig::plain(*a));
        plain.chain(self.listeners.iter().cloned()).collect()
    }
}

/// What a listener speaks on top of TCP (and TLS, when it has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// MQTT straight on the stream.
    Mqtt,
    /// MQTT in WebSocket binary frames.
    WebSocket(WsSettings),
}

/// One listener: an address, its transport (TLS, WebSocket, PROXY protocol) and who may
/// connect through it and do what.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// MQTT or WebSocket.
    pub protocol: ListenerProtocol,
    /// TLS (None: plain).
    pub tls: Option<Arc<TlsSource>>,
    /// A PROXY protocol v1/v2 header comes first; its client address is the one used.
    pub proxy_protocol: bool,
    /// Connections this listener accepts at once (the node's limit applies too).
    pub max_connections: Option<usize>,
    /// Judges CONNECTs through this listener (None: the broker-wide authenticator).
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// Judges what its clients do (None: the broker-wide authorizer).
    pub authorizer: Option<Arc<dyn Authorizer>>,
    /// What SIGHUP (or a changed file) reads again: certificates, password and ACL files.
    pub reload: Vec<Arc<dyn Reload>>,
}

impl ListenerConfig {
    /// A plain MQTT listener with the broker-wide access settings.
    pub fn plain(bind: SocketAddr) -> Self {
        ListenerConfig {
            bind,
            protocol: ListenerProtocol::Mqtt,
            tls: None,
            proxy_protocol: false,
            max_connections: None,
            authenticator: None,
            authorizer: None,
            reload: Vec::new(),
        }
    }

    /// How the listener is named in logs: `mqtt+tls://0.0.0.0:8883`.
    pub fn name(&self) -> String {
        let scheme = match (&self.protocol, self.tls.is_some()) {
            (ListenerProtocol::Mqtt, false) => "mqtt",
            (ListenerProtocol::Mqtt, true) => "mqtts",
            (ListenerProtocol::WebSocket(_), false) => "ws",
            (ListenerProtocol::WebSocket(_), true) => "wss",
        };
        format!("{scheme}://{}", self.bind)
    }
}

/// How a shared subscription group (`$share/{group}/{filter}`) picks a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SharedStrategy {
    /// Each member in turn (per topic owner).
    #[default]
    RoundRobin,
    /// By a hash of the publisher's client id: one publisher's messages to one member.
    HashClientId,
    /// By a hash of the topic: one topic's messages to one member, in order.
    HashTopic,
}

/// A storage engine for the messages of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Engine {
    /// A bounded in-memory log per partition; gone at restart.
    Memory,
    /// Append-only segment files per partition under the data directory; survives restarts.
    Segment,
}

/// When a segment log's appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// fdatasync before PUBACK/PUBREC; one fsync covers every record of the same tick.
    Always,
    /// fdatasync at most this often; acknowledgements go out once the record is written
    /// to the OS (it survives a crash of the broker, not of the machine).
    Interval(Duration),
    /// The OS decides; acknowledgements as with `Interval`.
    Never,
}

/// What a partition's memory ring does when a new message would not fit and the oldest
/// one is still needed by a connected subscriber that has not read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullPolicy {
    /// The publishers wait: their acknowledgements are held and the broker stops reading
    /// from them until the slowest connected subscriber moves on. Nothing acknowledged is
    /// dropped. (Offline sessions never hold publishers back: for them the oldest go.)
    #[default]
    Backpressure,
    /// The oldest message is given up for every session that had not read it, and counted.
    DropOldest,
}

/// Where the messages of one topic go, from the storage rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Kept in the partition's segment log.
    pub durable: bool,
    /// Kept for offline persistent sessions (QoS 1/2).
    pub offline: bool,
    /// The memory ring's policy when full.
    pub when_full: FullPolicy,
}

/// One `[[storage.rule]]`: topics matching `filter` use `engine`, `offline` and
/// `when_full` (each unset means the broker-wide setting). The first matching rule wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRule {
    /// Topic filter (wildcards allowed).
    pub filter: String,
    /// Engine for matching topics.
    pub engine: Option<Engine>,
    /// Whether matching messages are kept for offline persistent sessions.
    pub offline: Option<bool>,
    /// The memory ring's policy when full, for matching topics.
    pub when_full: Option<FullPolicy>,
}

/// Storage: engines, durability, persistence, offline messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// Engine of topics no rule matches.
    pub engine: Engine,
    /// Directory of segment logs and persisted state.
    pub data_dir: PathBuf,
    /// fsync policy of segment logs and of persisted state.
    pub fsync: Fsync,
    /// Persist sessions, subscriptions and retained messages even when every topic is in
    /// memory. Always on when any topic uses the segment engine.
    pub persistence: bool,
    /// Keep QoS 1/2 messages for offline persistent sessions (broker-wide; rules override).
    pub offline: bool,
    /// Per-topic-filter rules, first match wins.
    pub rules: Vec<StorageRule>,
    /// A segment file is rolled when it passes this size.
    pub segment_bytes: u64,
    /// Oldest segments are deleted while a partition's log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Segments whose newest record is older than this are deleted.
    pub retention: Option<Duration>,
    /// Bytes of the in-memory log of one partition: what it holds of messages some
    /// subscriber still needs (what every subscriber has is released at once).
    pub memory_bytes: usize,
    /// What a full memory ring does (broker-wide; rules override).
    pub when_full: FullPolicy,
}

impl StorageConfig {
    /// Where a topic's messages go: the first matching rule decides, each unset part
    /// falling back to the broker-wide setting.
    pub fn placement(&self, topic: &str) -> Placement {
        let rule = self.rules.iter().find(|r| proto::topic::matches(&r.filter, topic));
        Placement {
            durable: rule.and_then(|r| r.engine).unwrap_or(self.engine) == Engine::Segment,
            offline: rule.and_then(|r| r.offline).unwrap_or(self.offline),
            when_full: rule.and_then(|r| r.when_full).unwrap_or(self.when_full),
        }
    }

    /// True when anything is written to the data directory.
    pub fn persistent(&self) -> bool {
        self.persistence
            || self.engine == Engine::Segment
            || self.rules.iter().any(|r| r.engine == Some(Engine::Segment))
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            engine: Engine::Memory,
            data_dir: PathBuf::from("ringmq-data"),
            // The safe choice: an acknowledged message is on disk.
            fsync: Fsync::Always,
            persistence: false,
            offline: true,
            rules: Vec::new(),
            // 64 MiB: few files per partition, and retention frees space in useful steps.
            segment_bytes: 64 * 1024 * 1024,
            retention_bytes: None,
            // 7 days.
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            // 64 MiB: a 1 -> 1 flood of 200 000 small QoS 1 messages behind a slow
            // subscriber fits several times over. Used only while a subscriber lags (what
            // everyone has is released), so the bound is 64 MiB per lagging partition.
            memory_bytes: 64 * 1024 * 1024,
            // Nothing acknowledged is dropped unless a rule says so.
            when_full: FullPolicy::Backpressure,
        }
    }
}

/// Limits enforced by the engine; all of them are configurable.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections the node accepts in total; past it, new ones are refused.
    pub max_connections: usize,
    /// Largest packet accepted from a client (whole frame), and announced in 5.0 CONNACK.
    pub max_packet_size: usize,
    /// Unacknowledged QoS 1/2 messages the broker has out to one client (5.0: capped further
    /// by the client's Receive Maximum) and the Receive Maximum it announces to clients.
    pub max_inflight: u16,
    /// How far the window to a client grows past `max_inflight` while messages wait for it
    /// and its outbox keeps draining (the client reads as fast as they go out): the extra
    /// slots are used only while less than 64 KiB waits unwritten, so a slow reader stays
    /// at `max_inflight`. 5.0: at most the client's Receive Maximum. At or below
    /// `max_inflight`: a fixed window.
    pub max_inflight_burst: u16,
    /// An optional cap on the messages waiting for one session (queued, or parked by log
    /// position); past it the oldest is given up and counted. 0: no cap (the default): the
    /// logs' retention is the bound.
    pub max_queued_messages: usize,
    /// Longest topic name or filter, in bytes.
    pub max_topic_length: usize,
    /// Most levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// Bytes waiting to be written to one connection. Past it, QoS 0 messages are dropped
    /// for that subscriber alone (counted); everything else is still queued up to twice
    /// the bound (QoS 1/2 are bounded by the in-flight window anyway), then the connection
    /// is closed.
    pub max_outbound_buffer: usize,
    /// Bytes waiting in all the outboxes of the node together (each shard has an equal
    /// share); past it, QoS 0 messages are dropped for the connections that lag (64 KiB or
    /// more waiting), never for those that keep up.
    pub max_outbound_total: usize,
    /// A connection that makes no progress for this long (its socket accepts no byte while
    /// the outbox holds some, or it acknowledges none of its in-flight messages) is
    /// disconnected. Being slow is not being stuck: any progress restarts the clock.
    pub stuck_timeout: Duration,
    /// Topic aliases a 5.0 client may use towards the broker.
    pub topic_alias_maximum: u16,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// Longest keep-alive granted, in seconds (None: the client's own). A 5.0 client asking
    /// for more, or for none (0), is told this one (Server Keep Alive) and held to it; a
    /// 3.1/3.1.1 client, which cannot be told, is refused (return code 2, as Mosquitto does).
    pub server_keep_alive: Option<u16>,
    /// Longest session expiry interval granted, in seconds (u32::MAX means never expire).
    pub max_session_expiry: u32,
    /// Subscriptions one session may hold; past it SUBACK refuses the filter.
    pub max_subscriptions: usize,
    /// PUBLISH packets per second one client may send (0: no limit); past it the client
    /// is disconnected (5.0: 0x96 message rate too high). Bursts of one second's worth pass.
    pub max_publish_rate: u32,
    /// PUBLISH bytes (topic and payload) per second one client may send (0: no limit).
    pub max_publish_bytes_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100_000,
            // 1 MiB: generous for IoT payloads while bounding per-connection read buffers.
            max_packet_size: 1024 * 1024,
            // 64 matches common client defaults and keeps resend-on-reconnect short.
            max_inflight: 64,
            max_inflight_burst: 1024,
            // No cap: a session keeps positions in the logs, whose retention bounds them.
            max_queued_messages: 0,
            max_topic_length: 1024,
            max_topic_levels: 32,
            // 64 MiB (nats-server's slow-consumer bound): a burst of 10 publishers to one
            // subscriber fits. Allocated only while used, given back when it drains.
            max_outbound_buffer: 64 * 1024 * 1024,
            // 1 GiB: sixteen full outboxes; bounds what many slow readers hold together.
            max_outbound_total: 1024 * 1024 * 1024,
            // Generous for slow links; a client that reads nothing for 30 s is stuck.
            stuck_timeout: Duration::from_secs(30),
            topic_alias_maximum: 64,
            connect_timeout: Duration::from_secs(10),
            // Off by default: a client's keep-alive is its own business.
            server_keep_alive: None,
            max_session_expiry: u32::MAX,
            // Generous for backends, still a bound on one client's share of the tries.
            max_subscriptions: 10_000,
            // Off by default: a broker-wide default rate would surprise more than protect.
            max_publish_rate: 0,
            max_publish_bytes_rate: 0,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1883))],
            listeners: Vec::new(),
            shards: 0,
            partitions: 64,
            pin: true,
            // 256 batches of up to 256 messages: deep enough to ride out bursts, small
            // enough that a stalled shard pushes back within milliseconds.
            channel_capacity: 256,
            limits: Limits::default(),
            storage: StorageConfig::default(),
            auth_methods: Vec::new(),
            authenticator: None,
            authorizer: None,
            response_information: None,
            shared_strategy: SharedStrategy::RoundRobin,
        }
    }
}
