//! The records every layer passes around: an application message ([`Message`]), where it
//! is stored ([`Pos`]), who a session is ([`SessionRef`]), who waits for an
//! acknowledgement ([`AckTo`]), a subscription's granted options ([`SubOptions`]), and
//! what a replay asks for and gets back.
//!
//! A leaf: plain data, no runtime, nothing that cannot cross a thread. Every field of a
//! [`Message`] is valid in another process too (its receive time is wall-clock), so a
//! message can later travel between nodes as it is.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use proto::{Props, QoS};

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
    /// When the broker received it: microseconds since the Unix epoch (wall clock, so it
    /// keeps its meaning in a log record or on another node).
    pub received: u64,
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
    /// Bytes of topic and payload: what holding it costs, roughly.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }

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

impl Message {
    /// Seconds left of its 5.0 Message Expiry Interval at `now_us` (wall clock,
    /// microseconds since the epoch; None: it never expires; Some(0): expired, not to be
    /// delivered).
    pub fn expiry_left(&self, now_us: u64) -> Option<u32> {
        let interval = self.properties.message_expiry_interval?;
        let waited = now_us.saturating_sub(self.received) / 1_000_000;
        Some(u64::from(interval).saturating_sub(waited) as u32)
    }

    /// True once its Message Expiry Interval has passed.
    pub fn expired(&self, now_us: u64) -> bool {
        self.expiry_left(now_us) == Some(0)
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

/// Options of one subscription, as granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubOptions {
    /// Granted maximum QoS.
    pub qos: QoS,
    /// Do not deliver the session's own publications.
    pub no_local: bool,
    /// Keep the retain flag of forwarded messages.
    pub retain_as_published: bool,
    /// 5.0 subscription identifier.
    pub sub_id: Option<u32>,
}

/// The wall clock in microseconds since the Unix epoch: what [`Message::received`] holds.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
