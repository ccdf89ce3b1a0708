//! Engine configuration: the limits and defaults every shard enforces.
//!
//! Built once by the binary (from flags and the TOML file) and handed to every shard as an
//! `Arc`; shards only read it. Every limit has a bound and a reason.

use std::net::SocketAddr;
use std::time::Duration;

/// What the engine needs to run: listeners, shard and partition counts, and limits.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Addresses to listen on (each shard accepts on every one of them via SO_REUSEPORT).
    pub listen: Vec<SocketAddr>,
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
    /// Messages queued per session while offline or while its in-flight window is full;
    /// the oldest is dropped (and counted) when full.
    pub max_queued_messages: usize,
    /// Longest topic name or filter, in bytes.
    pub max_topic_length: usize,
    /// Most levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// Bytes waiting to be written to one connection; a subscriber past it is disconnected.
    pub max_outbound_buffer: usize,
    /// Topic aliases a 5.0 client may use towards the broker.
    pub topic_alias_maximum: u16,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// Longest session expiry interval granted, in seconds (u32::MAX means never expire).
    pub max_session_expiry: u32,
    /// Subscriptions one session may hold; past it SUBACK refuses the filter.
    pub max_subscriptions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100_000,
            // 1 MiB: generous for IoT payloads while bounding per-connection read buffers.
            max_packet_size: 1024 * 1024,
            // 64 matches common client defaults and keeps resend-on-reconnect short.
            max_inflight: 64,
            // 1000 messages per offline session bounds memory at ~1000 x message size.
            max_queued_messages: 1000,
            max_topic_length: 1024,
            max_topic_levels: 32,
            // 4 MiB: several max-size packets; beyond that the subscriber is not keeping up.
            max_outbound_buffer: 4 * 1024 * 1024,
            topic_alias_maximum: 64,
            connect_timeout: Duration::from_secs(10),
            max_session_expiry: u32::MAX,
            // Generous for backends, still a bound on one client's share of the tries.
            max_subscriptions: 10_000,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1883))],
            shards: 0,
            partitions: 64,
            pin: true,
            // 256 batches of up to 256 messages: deep enough to ride out bursts, small
            // enough that a stalled shard pushes back within milliseconds.
            channel_capacity: 256,
            limits: Limits::default(),
        }
    }
}
