//! The on-disk form of persistent state: a session's image and a retained message.
//!
//! Both are values in a partition's [`storage::StateStore`] (keys `s/{client id}` and
//! `r/{topic}`). A session image is a small hand-written little-endian encoding, versioned by
//! its first byte and checked field by field when read back; a retained message is one
//! storage record (CRC32C included). Messages themselves are never copied into an image:
//! what a session still has to receive is named by a cursor per partition log.
//!
//! A leaf: used by the store at recovery and by the engine's persistence.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use proto::{Props, QoS};

use crate::msg::{Message, SubOptions};

const VERSION: u8 = 2;
/// Images without the principal (read as they are).
const VERSION_1: u8 = 1;

/// A will as persisted with its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillImage {
    /// Topic.
    pub topic: Bytes,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Encoded 5.0 properties (a PUBLISH property block, empty when none).
    pub properties: Bytes,
    /// Will delay in seconds.
    pub delay: u32,
}

/// Everything that brings a persistent session back after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionImage {
    /// Client id.
    pub client_id: String,
    /// 4 for 3.1.1, 5 for 5.0.
    pub protocol: u8,
    /// Session expiry interval in seconds (u32::MAX: never).
    pub expiry: u32,
    /// Wall-clock milliseconds since the epoch when the session went offline, or when this
    /// image was written while it was online (a crash ends it then, at the latest).
    pub offline_since_ms: u64,
    /// Subscriptions: filter and options.
    pub subs: Vec<(String, SubOptions)>,
    /// Per partition: one past the highest offset the session has seen, and the offsets
    /// below it that it has not acknowledged yet (its offline queue and in-flight window,
    /// as references into the log).
    pub cursors: Vec<(u32, u64, Vec<u64>)>,
    /// Inbound QoS 2 packet ids received and not yet released.
    pub incoming_qos2: Vec<u16>,
    /// Outbound QoS 2 packet ids in the release phase (PUBREL sent, PUBCOMP awaited).
    pub releasing: Vec<u16>,
    /// The will, if the session still has one to publish.
    pub will: Option<WillImage>,
    /// Who its last connection was (user name, listener index): what judges its
    /// deliveries while it is offline, after a restart too.
    pub principal: Option<(Option<String>, u16)>,
}

/// Why an image could not be read back.
#[derive(Debug, PartialEq, Eq)]
pub struct BadImage(pub &'static str);

impl std::fmt::Display for BadImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad session image: {}", self.0)
    }
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

fn get_u8(b: &mut Bytes) -> Result<u8, BadImage> {
    (b.remaining() >= 1).then(|| b.get_u8()).ok_or(BadImage("truncated"))
}

fn get_u16(b: &mut Bytes) -> Result<u16, BadImage> {
    (b.remaining() >= 2).then(|| b.get_u16_le()).ok_or(BadImage("truncated"))
}

fn get_u32(b: &mut Bytes) -> Result<u32, BadImage> {
    (b.remaining() >= 4).then(|| b.get_u32_le()).ok_or(BadImage("truncated"))
}

fn get_u64(b: &mut Bytes) -> Result<u64, BadImage> {
    (b.remaining() >= 8).then(|| b.get_u64_le()).ok_or(BadImage("truncated"))
}

fn get_bytes(b: &mut Bytes) -> Result<Bytes, BadImage> {
    let n = get_u32(b)? as usize;
    if b.remaining() < n {
        return Err(BadImage("length runs past the end"));
    }
    Ok(b.split_to(n))
}

fn get_string(b: &mut Bytes) -> Result<String, BadImage> {
    String::from_utf8(get_bytes(b)?.to_vec()).map_err(|_| BadImage("string is not UTF-8"))
}

fn get_qos(b: &mut Bytes) -> Result<QoS, BadImage> {
    QoS::from_u8(get_u8(b)?).ok_or(BadImage("bad QoS"))
}

impl SessionImage {
    /// Encodes the image.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(64 + self.client_id.len() + self.subs.len() * 32);
        out.put_u8(VERSION);
        put_bytes(&mut out, self.client_id.as_bytes());
        out.put_u8(self.protocol);
        out.put_u32_le(self.expiry);
        out.put_u64_le(self.offline_since_ms);
        out.put_u32_le(self.subs.len() as u32);
        for (filter, o) in &self.subs {
            put_bytes(&mut out, filter.as_bytes());
            out.put_u8(o.qos as u8);
            out.put_u8(u8::from(o.no_local) | u8::from(o.retain_as_published) << 1 | u8::from(o.sub_id.is_some()) << 2);
            out.put_u32_le(o.sub_id.unwrap_or(0));
        }
        out.put_u32_le(self.cursors.len() as u32);
        for (p, seen, pending) in &self.cursors {
            out.put_u32_le(*p);
            out.put_u64_le(*seen);
            out.put_u32_le(pending.len() as u32);
            for off in pending {
                out.put_u64_le(*off);
            }
        }
        out.put_u32_le(self.incoming_qos2.len() as u32);
        for id in &self.incoming_qos2 {
            out.put_u16_le(*id);
        }
        out.put_u32_le(self.releasing.len() as u32);
        for id in &self.releasing {
            out.put_u16_le(*id);
        }
        match &self.will {
            None => out.put_u8(0),
            Some(w) => {
                out.put_u8(1);
                put_bytes(&mut out, &w.topic);
                put_bytes(&mut out, &w.payload);
                out.put_u8(w.qos as u8);
                out.put_u8(u8::from(w.retain));
                put_bytes(&mut out, &w.properties);
                out.put_u32_le(w.delay);
            }
        }
        match &self.principal {
            None => out.put_u8(0),
            Some((user, listener)) => {
                out.put_u8(1);
                out.put_u16_le(*listener);
                match user {
                    None => out.put_u8(0),
                    Some(u) => {
                        out.put_u8(1);
                        put_bytes(&mut out, u.as_bytes());
                    }
                }
            }
        }
        out.to_vec()
    }

    /// Decodes an image written by [`SessionImage::encode`].
    pub fn decode(bytes: &[u8]) -> Result<SessionImage, BadImage> {
        let mut b = Bytes::copy_from_slice(bytes);
        let version = get_u8(&mut b)?;
        if version != VERSION && version != VERSION_1 {
            return Err(BadImage("unknown version"));
        }
        let client_id = get_string(&mut b)?;
        let protocol = get_u8(&mut b)?;
        if protocol != 4 && protocol != 5 {
            return Err(BadImage("bad protocol level"));
        }
        let expiry = get_u32(&mut b)?;
        let offline_since_ms = get_u64(&mut b)?;
        let n = get_u32(&mut b)? as usize;
        let mut subs = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let filter = get_string(&mut b)?;
            let qos = get_qos(&mut b)?;
            let flags = get_u8(&mut b)?;
            let id = get_u32(&mut b)?;
            let opts = SubOptions {
                qos,
                no_local: flags & 1 != 0,
                retain_as_published: flags & 2 != 0,
                sub_id: (flags & 4 != 0).then_some(id),
            };
            subs.push((filter, opts));
        }
        let n = get_u32(&mut b)? as usize;
        let mut cursors = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let (p, seen) = (get_u32(&mut b)?, get_u64(&mut b)?);
            let k = get_u32(&mut b)? as usize;
            let mut pending = Vec::with_capacity(k.min(4096));
            for _ in 0..k {
                pending.push(get_u64(&mut b)?);
            }
            cursors.push((p, seen, pending));
        }
        let n = get_u32(&mut b)? as usize;
        let mut incoming_qos2 = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            incoming_qos2.push(get_u16(&mut b)?);
        }
        let n = get_u32(&mut b)? as usize;
        let mut releasing = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            releasing.push(get_u16(&mut b)?);
        }
        let will = match get_u8(&mut b)? {
            0 => None,
            1 => Some(WillImage {
                topic: get_bytes(&mut b)?,
                payload: get_bytes(&mut b)?,
                qos: get_qos(&mut b)?,
                retain: get_u8(&mut b)? != 0,
                properties: get_bytes(&mut b)?,
                delay: get_u32(&mut b)?,
            }),
            _ => return Err(BadImage("bad will flag")),
        };
        let flag = if version == VERSION_1 { 0 } else { get_u8(&mut b)? };
        let principal = match flag {
            0 => None,
            1 => {
                let listener = get_u16(&mut b)?;
                let user = match get_u8(&mut b)? {
                    0 => None,
                    1 => Some(get_string(&mut b)?),
                    _ => return Err(BadImage("bad user name flag")),
                };
                Some((user, listener))
            }
            _ => return Err(BadImage("bad principal flag")),
        };
        if b.has_remaining() {
            return Err(BadImage("bytes after the image"));
        }
        Ok(SessionImage {
            client_id,
            protocol,
            expiry,
            offline_since_ms,
            subs,
            cursors,
            incoming_qos2,
            releasing,
            will,
            principal,
        })
    }
}

/// Encodes a retained message as one storage record (its CRC guards the value).
pub fn encode_retained(msg: &Message, now_ms: u64) -> Result<Vec<u8>, proto::Error> {
    let props = msg.properties.to_publish_block()?;
    let view = storage::RecordView {
        offset: 0,
        timestamp_ms: now_ms,
        flags: storage::record::flags(true, msg.qos as u8),
        topic: &msg.topic,
        properties: &props,
        payload: &msg.payload,
    };
    let mut out = Vec::with_capacity(view.encoded_len());
    view.encode(&mut out).map_err(|_| proto::Error::Malformed("retained message too large to store"))?;
    Ok(out)
}

/// Builds a message from a stored record (a retained value or a log record).
/// `placement` is where the topic's messages go, per the storage rules.
pub fn message_from_record(
    r: &storage::Record,
    publisher: &Arc<str>,
    retain: bool,
    placement: crate::config::Placement,
) -> Option<Arc<Message>> {
    let qos = QoS::from_u8(r.qos())?;
    let properties = Props::from_publish_block(r.properties.clone()).ok()?;
    std::str::from_utf8(&r.topic).ok()?;
    let mut msg = Message {
        topic: r.topic.clone(),
        payload: r.payload.clone(),
        qos,
        retain,
        properties,
        publisher: publisher.clone(),
        // Received when it was stored: its expiry keeps counting across a restart.
        received: r.timestamp_ms.saturating_mul(1000),
        durable: false,
        offline: true,
        backpressure: true,
    };
    msg.place(placement);
    Some(Arc::new(msg))
}

/// Reads back a value written by [`encode_retained`].
pub fn decode_retained(value: &[u8], publisher: &Arc<str>) -> Option<Arc<Message>> {
    let view = storage::record::decode(value).ok()?;
    let placement =
        crate::config::Placement { durable: false, offline: true, when_full: crate::config::FullPolicy::Backpressure };
    message_from_record(&view.to_record(), publisher, true, placement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_roundtrip_and_damage() {
        let image = SessionImage {
            client_id: "dev-1".into(),
            protocol: 5,
            expiry: 3600,
            offline_since_ms: 1_700_000_000_000,
            subs: vec![
                (
                    "a/+".into(),
                    SubOptions { qos: QoS::AtLeastOnce, no_local: true, retain_as_published: false, sub_id: Some(7) },
                ),
                (
                    "b/#".into(),
                    SubOptions { qos: QoS::ExactlyOnce, no_local: false, retain_as_published: true, sub_id: None },
                ),
            ],
            cursors: vec![(3, 99, vec![4, 90]), (17, 0, vec![])],
            incoming_qos2: vec![1, 65535],
            releasing: vec![9],
            will: Some(WillImage {
                topic: Bytes::from_static(b"w"),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Bytes::new(),
                delay: 5,
            }),
            principal: Some((Some("alice".into()), 3)),
        };
        let bytes = image.encode();
        assert_eq!(SessionImage::decode(&bytes), Ok(image.clone()));
        // A version 1 image (before the principal) reads as one without it.
        let older = SessionImage { principal: None, ..image };
        let mut v1 = older.encode();
        assert_eq!(v1.pop(), Some(0));
        v1[0] = VERSION_1;
        assert_eq!(SessionImage::decode(&v1), Ok(older));
        for cut in 0..bytes.len() {
            assert!(SessionImage::decode(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SessionImage::decode(&longer).is_err());
    }
}
