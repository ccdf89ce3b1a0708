//! Encoding a PUBLISH for subscribers: once per (protocol, QoS, retain) per fan-out through
//! [`EncodeCache`], copied into each connection's outbox with its packet id patched in, or
//! encoded for one connection alone when it needs its own subscription ids or topic alias.
//!
//! Called by the session's delivery on the session's shard.

use bytes::BytesMut;
use proto::{Packet, Props, Protocol, Publish, QoS};

use super::Queued;
use crate::msg::Message;
use crate::net::Conn;

/// What became of a PUBLISH written to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// In the outbox.
    Yes,
    /// Larger than the client's Maximum Packet Size (or not encodable): not sent.
    TooLarge,
    /// A QoS 0 message and the outbox is full: dropped for this client.
    OutboxFull,
}

/// Writes one PUBLISH to a connection, from the shared encoding where possible; the
/// caller drops and counts what was not written.
pub(super) fn write_publish(conn: &Conn, q: &Queued, pkid: u16, dup: bool, cache: &mut EncodeCache) -> Written {
    let droppable = q.qos == QoS::AtMostOnce;
    let limit = conn.max_packet_size;
    if conn.protocol == Protocol::V5 && (!q.sub_ids.is_empty() || conn.alias_max.get() > 0) {
        // Encoded for this connection alone: its subscription ids, its topic alias.
        let mut out = BytesMut::new();
        let mut p = publish_packet(&q.msg, q.qos, q.retain, pkid, dup, Protocol::V5, &q.sub_ids);
        let alias = conn.alias_for(&q.msg.topic);
        if let Some((a, known)) = alias {
            p.properties.topic_alias = Some(a);
            if known {
                p.topic = bytes::Bytes::new();
            }
        }
        if Packet::Publish(p).write(Protocol::V5, &mut out).is_err() || out.len() > limit {
            return Written::TooLarge;
        }
        if droppable && conn.is_full() {
            return Written::OutboxFull;
        }
        if let Some((a, false)) = alias {
            conn.alias_sent(&q.msg.topic, a);
        }
        if conn.push_bytes(&out) {
            conn.count_publish(q.qos);
        }
        return Written::Yes;
    }
    let (bytes, at) = cache.get(&q.msg, conn.protocol, q.qos, q.retain);
    if bytes.is_empty() || bytes.len() > limit {
        return Written::TooLarge;
    }
    if droppable && conn.is_full() {
        return Written::OutboxFull;
    }
    if conn.push_publish(bytes, at, pkid, dup) {
        conn.count_publish(q.qos);
    }
    Written::Yes
}

/// Builds the PUBLISH sent to a subscriber.
pub fn publish_packet(
    msg: &Message,
    qos: QoS,
    retain: bool,
    pkid: u16,
    dup: bool,
    protocol: Protocol,
    sub_ids: &[u32],
) -> Publish {
    let mut properties = match protocol {
        Protocol::V5 => msg.properties.clone(),
        Protocol::V4 => Props::default(),
    };
    if protocol == Protocol::V5 && properties.message_expiry_interval.is_some() {
        // Forwarded with the time it waited taken off (MQTT 5.0, 3.3.2.3.3).
        properties.message_expiry_interval = msg.expiry_left(crate::msg::now_us()).map(|s| s.max(1));
    }
    if protocol == Protocol::V5 && !sub_ids.is_empty() {
        properties.subscription_identifiers = sub_ids.to_vec();
    }
    Publish {
        dup,
        qos,
        retain,
        topic: msg.topic.clone(),
        pkid: if qos == QoS::AtMostOnce { 0 } else { pkid.max(1) },
        properties,
        payload: msg.payload.clone(),
    }
}

/// Encodings of one message, made at most once per (protocol, QoS, retain) during a fan-out.
/// The buffers are kept between messages (the shard keeps one cache), so a fan-out
/// allocates nothing once they have grown to the message sizes in use.
#[derive(Default)]
pub struct EncodeCache {
    bufs: [BytesMut; 12],
    /// Per slot: encoded for the current message, and where its packet id sits.
    ready: [Option<Option<usize>>; 12],
}

impl EncodeCache {
    /// Forgets the encodings (before a different message); keeps the buffers.
    pub fn reset(&mut self) {
        self.ready = [None; 12];
    }

    /// The encoding of `msg` for this (protocol, QoS, retain), and where its packet id sits.
    pub fn get(&mut self, msg: &Message, protocol: Protocol, qos: QoS, retain: bool) -> (&[u8], Option<usize>) {
        let idx = (protocol == Protocol::V5) as usize * 6 + qos as usize * 2 + retain as usize;
        let buf = &mut self.bufs[idx];
        let at = *self.ready[idx].get_or_insert_with(|| {
            buf.clear();
            let p = publish_packet(msg, qos, retain, 1, false, protocol, &[]);
            let at = p.pkid_offset(protocol);
            if Packet::Publish(p).write(protocol, buf).is_err() {
                buf.clear();
            }
            at
        });
        (&self.bufs[idx], at)
    }
}
