//! What the node counts, and the snapshot anyone may read: per-shard counters kept by
//! their shard without atomics ([`Counters`]), published each tick into the shard's slot
//! of the node ([`ShardSlot`], one writer, relaxed stores on cache lines of its own), and
//! summed into one [`Snapshot`] by `Node::metrics`; beside them the counters of messages
//! given up ([`DropCounters`], read as [`Drops`]).
//!
//! A leaf: the engine and the front count into it, the node reads it; it calls nobody.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Messages given up by the node, by reason, and the flow-control events beside them
/// (see the README's flow control section); summed from the shards at each sweep.
#[derive(Debug, Default)]
pub struct DropCounters {
    /// At the `max_queued_messages` cap, or for an offline session by `offline = false`.
    pub queue_cap: AtomicU64,
    /// Not kept by any log, past the session's hold of such messages.
    pub unstored: AtomicU64,
    /// QoS 0, for a connection whose outbox was full.
    pub outbox_full: AtomicU64,
    /// Message Expiry Interval passed before delivery.
    pub expired: AtomicU64,
    /// Larger than the client's Maximum Packet Size.
    pub oversize: AtomicU64,
    /// Clients disconnected for making no progress for `stuck_timeout`.
    pub stuck: AtomicU64,
    /// Clients disconnected for an outbox past twice its bound.
    pub slow_consumers: AtomicU64,
    /// Messages that waited at a full memory ring (`backpressure`): not drops.
    pub held_back: AtomicU64,
    /// Shared-group messages with no member left, or handed round too often.
    pub shared: AtomicU64,
}

/// A reading of the node's counters of messages given up, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    /// Evicted from a memory ring under `drop_oldest` (or watched by offline sessions only).
    pub evicted: u64,
    /// Waited for by a session and gone from its log when it was read back.
    pub lost: u64,
    /// Given up at the `max_queued_messages` cap, or offline under `offline = false`.
    pub queue_cap: u64,
    /// Kept by no log, past a session's hold of such messages.
    pub unstored: u64,
    /// QoS 0 dropped for a connection whose outbox was full.
    pub outbox_full: u64,
    /// Expired before delivery.
    pub expired: u64,
    /// Larger than the client's Maximum Packet Size.
    pub oversize: u64,
    /// Clients disconnected as stuck.
    pub stuck: u64,
    /// Clients disconnected for an outbox past twice its bound.
    pub slow_consumers: u64,
    /// Messages that waited at a full memory ring (publishers held back, nothing dropped).
    pub held_back: u64,
    /// Shared-group messages with no member left, or handed round too often.
    pub shared: u64,
}

/// Declares the metric values once: the struct, its order, and its names.
macro_rules! metric_values {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// One shard's metric values (or their sum over the node): counters since start and
        /// gauges at the last tick.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct ShardMetrics {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl ShardMetrics {
            /// Number of values.
            pub const COUNT: usize = [$(stringify!($name)),*].len();

            fn to_array(self) -> [u64; Self::COUNT] {
                [$(self.$name),*]
            }

            fn from_array(a: [u64; Self::COUNT]) -> Self {
                let [$($name),*] = a;
                ShardMetrics { $($name),* }
            }

            /// (name, value) pairs in declaration order: what an exporter walks.
            pub fn fields(&self) -> [(&'static str, u64); Self::COUNT] {
                [$((stringify!($name), self.$name)),*]
            }
        }
    };
}

metric_values! {
    /// Client connections open on the shard (gauge).
    connections,
    /// Connections whose CONNECT the shard accepted (counter).
    connections_accepted,
    /// Connections refused at CONNECT (counter).
    connections_refused,
    /// Sessions with a connection (gauge).
    sessions_online,
    /// Sessions kept without a connection (gauge).
    sessions_offline,
    /// Subscriptions of the shard's sessions (gauge).
    subscriptions,
    /// Retained messages of the topics the shard owns (gauge).
    retained,
    /// QoS 1/2 messages waiting for the shard's sessions, queued or parked (gauge, at the
    /// last sweep).
    queued,
    /// PUBLISH packets received from clients, QoS 0 (counter).
    received_qos0,
    /// PUBLISH packets received from clients, QoS 1 (counter).
    received_qos1,
    /// PUBLISH packets received from clients, QoS 2 (counter).
    received_qos2,
    /// Topic and payload bytes of the PUBLISH packets received (counter).
    received_bytes,
    /// PUBLISH packets written to clients' outboxes, QoS 0 (counter).
    sent_qos0,
    /// PUBLISH packets written to clients' outboxes, QoS 1 (counter).
    sent_qos1,
    /// PUBLISH packets written to clients' outboxes, QoS 2 (counter).
    sent_qos2,
    /// Bytes written to clients' sockets (counter).
    sent_bytes,
    /// Messages accepted as topic owner (counter).
    published,
    /// Messages handed to local sessions (counter).
    delivered,
    /// Records appended to segment logs (counter).
    appends,
    /// Commits run (counter).
    commits,
    /// fsyncs run by commits and the interval task (counter).
    fsyncs,
    /// Time spent in those fsyncs, microseconds (counter).
    fsync_us,
    /// Appends or state writes that failed (counter).
    write_errors,
    /// fsyncs that failed (counter).
    sync_errors,
    /// Messages evicted from the shard's memory rings (counter).
    evicted,
    /// Connections closed for protocol errors (counter).
    protocol_errors,
    /// TLS handshakes that failed or did not finish within the connect timeout (counter).
    tls_failures,
    /// WebSocket upgrades refused, or closed before they finished (counter).
    ws_failures,
    /// PROXY protocol headers missing or malformed (counter).
    proxy_failures,
    /// CONNECTs refused for their credentials: bad user name or password, not authorized
    /// (counter).
    auth_failures,
    /// Actions the authorizer refused: PUBLISH, subscription filters, deliveries and
    /// retained messages left out (counter).
    acl_denied,
}

/// Counters kept by a shard on its own thread, without atomics (the hot ones: per
/// connection or per message).
#[derive(Debug, Default)]
pub struct Counters {
    /// CONNECTs accepted on this shard.
    pub connections_accepted: Cell<u64>,
    /// CONNECTs refused on this shard.
    pub connections_refused: Cell<u64>,
    /// See `tls_failures` of [`ShardMetrics`].
    pub tls_failures: Cell<u64>,
    /// See `ws_failures` of [`ShardMetrics`].
    pub ws_failures: Cell<u64>,
    /// See `proxy_failures` of [`ShardMetrics`].
    pub proxy_failures: Cell<u64>,
    /// CONNECTs refused for their credentials.
    pub auth_failures: Cell<u64>,
    /// Actions the authorizer refused.
    pub acl_denied: Cell<u64>,
    /// PUBLISH packets received, by QoS.
    pub received: [Cell<u64>; 3],
    /// Their topic and payload bytes.
    pub received_bytes: Cell<u64>,
}

impl Counters {
    /// Adds one to `c`.
    pub fn bump(c: &Cell<u64>) {
        c.set(c.get() + 1);
    }
}

/// One shard's published values: written by that shard each tick (relaxed stores, one
/// writer), read by anyone. On cache lines of its own.
#[derive(Debug)]
#[repr(align(64))]
pub struct ShardSlot([AtomicU64; ShardMetrics::COUNT]);

impl Default for ShardSlot {
    fn default() -> Self {
        ShardSlot(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl ShardSlot {
    /// Publishes `m` (from the owning shard only).
    pub fn store(&self, m: ShardMetrics) {
        for (slot, v) in self.0.iter().zip(m.to_array()) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// The last values published.
    pub fn load(&self) -> ShardMetrics {
        ShardMetrics::from_array(std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }
}

/// The node's metrics at one moment: each shard's last published values (at most one
/// tick, 100 ms, old), their sum, and the drop counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Per shard, by shard index.
    pub shards: Vec<ShardMetrics>,
    /// Summed over the shards.
    pub total: ShardMetrics,
    /// Messages given up, by reason.
    pub drops: Drops,
}

impl Snapshot {
    /// Gathers the slots' values.
    pub fn gather(slots: &[ShardSlot], drops: Drops) -> Snapshot {
        let shards: Vec<ShardMetrics> = slots.iter().map(ShardSlot::load).collect();
        let mut total = [0u64; ShardMetrics::COUNT];
        for s in &shards {
            for (t, v) in total.iter_mut().zip(s.to_array()) {
                *t += v;
            }
        }
        Snapshot { shards, total: ShardMetrics::from_array(total), drops }
    }
}
