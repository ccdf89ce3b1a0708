//! The typed messages shards send each other, and the message record they carry.
//!
//! Two meshes of bounded channels connect every pair of shards (see ARCHITECTURE.md):
//! *ingress* carries work towards an owner (a PUBLISH to its topic's owner, interest
//! updates, subscription requests, connection hand-offs); *egress* carries results back out
//! (deliveries to shards with subscribers, subscription replies). Egress receivers never
//! send to another shard, so a full channel can stall a sender but never deadlock the mesh.
//! Messages travel in batches (`Vec<_>`), one batch per destination per flush.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use proto::{Connect, Props, QoS};

use crate::config::Engine;

/// An application message as routed between shards: encoded once per
/// (protocol version, QoS) at each delivering shard, shared by reference everywhere else.
#[derive(Debug)]
pub struct Message {
    /// Topic name (valid UTF-8, no wildcards).
    pub topic: Bytes,
    /// Payload, a zero-copy slice of the publisher's read buffer.
    pub payload: Bytes,
    /// QoS the publisher sent it with.
    pub qos: QoS,
    /// Retain flag as published.
    pub retain: bool,
    /// 5.0 properties forwarded to subscribers (no topic alias, no subscription ids);
    /// one null pointer when empty, which keeps the record small on the hot path.
    pub properties: Props,
    /// Client id of the publisher (for No Local).
    pub publisher: Arc<str>,
    /// When the broker received it.
    pub received: Instant,
    /// Its topic is kept in a segment log: the owner appends it, and acknowledges it to
    /// the publisher once it is as durable as the fsync policy promises.
    pub durable: bool,
    /// Kept for offline persistent sessions (QoS 1/2), per the storage rules.
    pub offline: bool,
    /// Its memory ring, when full, holds the publishers back rather than drop what a
    /// connected subscriber has not read (`when_full = "backpressure"`).
    pub backpressure: bool,
}

impl Message {
    /// Placement as the storage rules decide it.
    pub fn place(&mut self, p: crate::config::Placement) {
        self.durable = p.durable;
        self.offline = p.offline;
        self.backpressure = p.when_full == crate::config::FullPolicy::Backpressure;
    }

    /// A copy of its own (the bytes stay shared): a holder that must not count as a
    /// reader of the original in its memory ring (a retained message, a message in flight
    /// to a session that went offline).
    pub fn detached(&self) -> Arc<Message> {
        Arc::new(Message {
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            qos: self.qos,
            retain: self.retain,
            properties: self.properties.clone(),
            publisher: self.publisher.clone(),
            received: self.received,
            durable: self.durable,
            offline: self.offline,
            backpressure: self.backpressure,
        })
    }
}

/// Names a session on its shard; `generation` tells a reused slot from the session a
/// request was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    /// Shard owning the session.
    pub shard: u16,
    /// Slot in that shard's session table.
    pub slot: u32,
    /// Generation of the session in that slot.
    pub generation: u64,
}

/// One filter of a subscription request sent to a shard that may own matching topics.
#[derive(Debug)]
pub struct InterestItem {
    /// Index of the filter in the SUBSCRIBE packet.
    pub index: u16,
    /// The filter.
    pub filter: String,
    /// A new subscription: add one to the sending shard's count for this filter.
    pub add_interest: bool,
    /// Send back the retained messages matching it.
    pub want_retained: bool,
}

/// A connection whose session lives on another shard, moved there after CONNECT.
#[derive(Debug)]
pub struct Handoff {
    /// The socket.
    pub fd: OwnedFd,
    /// The CONNECT packet already read.
    pub connect: Box<Connect>,
    /// Bytes read after the CONNECT.
    pub rest: Bytes,
    /// The connection's place under the node's connection limit.
    pub admitted: crate::accept::Admitted,
}

impl Message {
    /// Seconds left of its 5.0 Message Expiry Interval at `now` (None: it never expires;
    /// Some(0): expired, not to be delivered).
    pub fn expiry_left(&self, now: Instant) -> Option<u32> {
        let interval = self.properties.message_expiry_interval?;
        let waited = now.saturating_duration_since(self.received).as_secs();
        Some(u64::from(interval).saturating_sub(waited) as u32)
    }

    /// True once its Message Expiry Interval has passed.
    pub fn expired(&self, now: Instant) -> bool {
        self.expiry_left(now) == Some(0)
    }
}

/// Where a message sits in its partition's logs (a partition has one log per engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Partition.
    pub partition: u32,
    /// Which of its logs: the segment log (on disk) or the memory ring.
    pub engine: Engine,
    /// Offset in that log.
    pub offset: u64,
}

impl Pos {
    /// In the partition's segment log.
    pub fn segment(partition: u32, offset: u64) -> Pos {
        Pos { partition, engine: Engine::Segment, offset }
    }

    /// In the partition's memory ring.
    pub fn memory(partition: u32, offset: u64) -> Pos {
        Pos { partition, engine: Engine::Memory, offset }
    }
}

/// Who gets the PUBACK/PUBREC of a message that waits for its log append.
#[derive(Debug, Clone, Copy)]
pub struct AckTo {
    /// The publisher's session.
    pub to: SessionRef,
    /// Its connection (a reconnected client resends instead).
    pub conn_id: u64,
    /// Packet id.
    pub pkid: u16,
    /// QoS 1 -> PUBACK, QoS 2 -> PUBREC.
    pub qos: QoS,
}

/// What a session asks one partition log to read back: the records it was handed while
/// offline (kept as offsets, not copies), or, for a session restored after a restart,
/// everything it may have missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPart {
    /// Partition.
    pub partition: u32,
    /// Which of its logs.
    pub engine: Engine,
    /// Records from here to the end of the log as recovered (restored sessions only).
    pub from: Option<u64>,
    /// These single records (below `from`, if any).
    pub pending: Vec<u64>,
}

/// A message read back for a replay.
#[derive(Debug)]
pub struct ReplayItem {
    /// The message.
    pub msg: Arc<Message>,
    /// Where it is stored.
    pub pos: Pos,
    /// Found by scanning a restored session's log tail (not asked for by offset): the
    /// session may have it already.
    pub scanned: bool,
}

/// Work sent towards an owner shard.
#[derive(Debug)]
pub enum Ingress {
    /// A PUBLISH for a topic the receiver owns, with its acknowledgement when that waits
    /// for the append.
    Publish(Arc<Message>, Option<AckTo>),
    /// Read back records of `parts` (owned by the receiver) for a session: those it was
    /// handed while offline, or, restored after a restart, those written before the restart
    /// that match `filters`.
    Replay {
        /// The session.
        to: SessionRef,
        /// Partitions and where to start.
        parts: Vec<ReplayPart>,
        /// The session's filters with their granted QoS.
        filters: Vec<(String, QoS)>,
    },
    /// Subscription filters: record interest and/or return retained messages.
    Subscribe {
        /// The subscribing session.
        from: SessionRef,
        /// Request number within that session.
        req: u32,
        /// The filters concerning the receiver.
        items: Vec<InterestItem>,
    },
    /// The origin shard's count of subscriptions to `filter` (or of members of the shared
    /// group `filter`) changes by `delta`: a subscription ended (-1), a shared group's
    /// member left (-1) or came back online (+1).
    Interest {
        /// The origin shard.
        origin: u16,
        /// The filter.
        filter: String,
        /// +1 or -1.
        delta: i64,
    },
    /// A message of a shared group handed back by a member that left: pick another.
    Reshare(crate::shared::Reshare),
    /// A connection for a session the receiver owns.
    Handoff(Handoff),
}

/// Results sent out from an owner shard.
#[derive(Debug)]
pub enum Egress {
    /// A message for the receiver's local subscribers, with its log position if stored.
    Deliver(Arc<Message>, Option<Pos>),
    /// A message for members of shared groups on the receiver: per group, the index of
    /// the member among the receiver's members.
    DeliverShared {
        /// The message.
        msg: Arc<Message>,
        /// Its log position.
        pos: Option<Pos>,
        /// (group key `$share/g/f`, member index).
        picks: Vec<(Arc<str>, u32)>,
        /// Times it was handed round already.
        hops: u8,
    },
    /// The reply to an [`Ingress::Subscribe`].
    SubscribeDone {
        /// The subscribing session.
        to: SessionRef,
        /// Its request number.
        req: u32,
        /// Retained messages, each with the index of the filter it matched.
        retained: Vec<(u16, Arc<Message>)>,
        /// Next offsets of the replier's partition logs that may hold matching topics:
        /// where a new persistent subscription's cursors start.
        offsets: Vec<(u32, u64)>,
    },
    /// Appends are durable (reason code 0) or failed: acknowledge these publishes.
    Acked(Vec<(AckTo, u8)>),
    /// Records read back for an [`Ingress::Replay`].
    Replayed {
        /// The session.
        to: SessionRef,
        /// Messages with their positions, in log order per partition.
        msgs: Vec<ReplayItem>,
        /// Where the owner stopped, for the next page.
        rest: Vec<ReplayPart>,
        /// Records asked for by offset that the log no longer holds (evicted from the
        /// memory ring, or deleted by retention).
        lost: u64,
    },
}
