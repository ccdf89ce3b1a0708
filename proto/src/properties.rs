//! MQTT 5.0 properties (spec section 2.2.2): the [`Properties`] struct shared by every
//! packet, its decoder with per-packet validation, and its encoder.
//!
//! Decoding is told which packet (or the will inside a CONNECT) the properties belong to via
//! [`PacketKind`] and enforces:
//! - unknown property identifier, or one the spec does not allow in that packet:
//!   Malformed (5.0 section 2.2.2.2);
//! - a single-valued property given twice (and a second subscription identifier in
//!   SUBSCRIBE): Protocol;
//! - byte-valued flags (payload format indicator, request problem/response information,
//!   maximum QoS, the `*_available` flags) other than 0 or 1: Protocol;
//! - receive maximum, maximum packet size, topic alias or subscription identifier of 0:
//!   Protocol;
//! - authentication data without an authentication method: Protocol;
//! - a property length or value running past the frame or the property block: Malformed.
//!
//! Encoding writes whatever fields are set, in identifier order.
//!
//! Packets hold their properties as [`Props`]: nothing allocated when there are none (every
//! 3.1.1 packet and most 5.0 ones), so a decoded packet stays small and cheap to move; the
//! full [`Properties`] struct is boxed only when a property is present.

use std::ops::{Deref, DerefMut};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::{
    read_binary, read_string, read_u16, read_u32, read_u8, read_varint, varint_len, write_binary, write_string,
    write_u16, write_varint, MAX_VARINT,
};
use crate::Error;

/// Every MQTT 5.0 property. Absent = None / empty Vec. One struct serves every packet;
/// the decoder rejects (Error::Protocol) a property that the spec does not allow in that
/// packet, and a property given twice where the spec forbids it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01: 0 = unspecified bytes, 1 = UTF-8 payload.
    pub payload_format_indicator: Option<u8>,
    /// 0x02: seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03
    pub content_type: Option<String>,
    /// 0x08
    pub response_topic: Option<String>,
    /// 0x09
    pub correlation_data: Option<Bytes>,
    /// 0x0B (varint; PUBLISH may carry several, SUBSCRIBE one; 0 is a protocol error)
    pub subscription_identifiers: Vec<u32>,
    /// 0x11: seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12
    pub assigned_client_identifier: Option<String>,
    /// 0x13: seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15
    pub authentication_method: Option<String>,
    /// 0x16
    pub authentication_data: Option<Bytes>,
    /// 0x17: 0 or 1.
    pub request_problem_information: Option<u8>,
    /// 0x18: seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19: 0 or 1.
    pub request_response_information: Option<u8>,
    /// 0x1A
    pub response_information: Option<String>,
    /// 0x1C
    pub server_reference: Option<String>,
    /// 0x1F
    pub reason_string: Option<String>,
    /// 0x21 (0 is a protocol error)
    pub receive_maximum: Option<u16>,
    /// 0x22
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 (0 is a protocol error)
    pub topic_alias: Option<u16>,
    /// 0x24: 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25: 0 or 1.
    pub retain_available: Option<u8>,
    /// 0x26 (order kept, repeats allowed)
    pub user_properties: Vec<(String, String)>,
    /// 0x27 (0 is a protocol error)
    pub maximum_packet_size: Option<u32>,
    /// 0x28: 0 or 1.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29: 0 or 1.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A: 0 or 1.
    pub shared_subscription_available: Option<u8>,
}

/// Where a property block sits, which decides the properties allowed in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PacketKind {
    Connect,
    /// The will properties inside a CONNECT payload.
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP allow the same set.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PacketKind {
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

const fn kinds(list: &[PacketKind]) -> u16 {
    let mut mask = 0;
    let mut i = 0;
    while i < list.len() {
        mask |= list[i].bit();
        i += 1;
    }
    mask
}

use PacketKind as K;

const PUBLISH_AND_WILL: u16 = kinds(&[K::Publish, K::Will]);
const WITH_REASON_STRING: u16 = kinds(&[K::ConnAck, K::Ack, K::SubAck, K::UnsubAck, K::Disconnect, K::Auth]);
const EVERYWHERE: u16 = kinds(&[
    K::Connect,
    K::Will,
    K::ConnAck,
    K::Publish,
    K::Ack,
    K::Subscribe,
    K::SubAck,
    K::Unsubscribe,
    K::UnsubAck,
    K::Disconnect,
    K::Auth,
]);

/// The packets in which property `id` may appear (spec table 2-4), None if `id` is unknown.
fn allowed_in(id: usize) -> Option<u16> {
    Some(match id {
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 => PUBLISH_AND_WILL,
        0x0B => kinds(&[K::Publish, K::Subscribe]),
        0x11 => kinds(&[K::Connect, K::ConnAck, K::Disconnect]),
        0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => K::ConnAck.bit(),
        0x15 | 0x16 => kinds(&[K::Connect, K::ConnAck, K::Auth]),
        0x17 | 0x19 => K::Connect.bit(),
        0x18 => K::Will.bit(),
        0x1C => kinds(&[K::ConnAck, K::Disconnect]),
        0x1F => WITH_REASON_STRING,
        0x21 | 0x22 | 0x27 => kinds(&[K::Connect, K::ConnAck]),
        0x23 => K::Publish.bit(),
        0x26 => EVERYWHERE,
        _ => return None,
    })
}

/// Stores a single-valued property, refusing a second occurrence.
fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::Protocol("property given more than once"));
    }
    *slot = Some(value);
    Ok(())
}

/// Reads a byte that the spec restricts to 0 or 1.
fn read_flag(buf: &mut Bytes, what: &'static str) -> Result<u8, Error> {
    match read_u8(buf)? {
        v @ (0 | 1) => Ok(v),
        _ => Err(Error::Protocol(what)),
    }
}

fn nonzero<T: PartialEq + Default>(value: T, what: &'static str) -> Result<T, Error> {
    if value == T::default() {
        Err(Error::Protocol(what))
    } else {
        Ok(value)
    }
}

impl Properties {
    /// True when no property is set (a V5 packet then encodes a property length of 0).
    pub fn is_empty(&self) -> bool {
        self == &Properties::default()
    }

    /// Reads a property length and the properties it covers from the front of `buf`.
    pub(crate) fn read(buf: &mut Bytes, kind: PacketKind) -> Result<Properties, Error> {
        let len = read_varint(buf)?;
        if len > buf.len() {
            return Err(Error::Malformed("property length runs past the end of the packet"));
        }
        let mut props = Properties::default();
        if len == 0 {
            return Ok(props);
        }
        let mut block = buf.split_to(len);
        while !block.is_empty() {
            props.read_one(&mut block, kind)?;
        }
        if props.authentication_data.is_some() && props.authentication_method.is_none() {
            return Err(Error::Protocol("authentication data without authentication method"));
        }
        Ok(props)
    }

    fn read_one(&mut self, buf: &mut Bytes, kind: PacketKind) -> Result<(), Error> {
        let id = read_varint(buf)?;
        let allowed = allowed_in(id).ok_or(Error::Malformed("unknown property identifier"))?;
        if allowed & kind.bit() == 0 {
            // 2.2.2.2: an identifier not valid for the packet type makes it malformed.
            return Err(Error::Malformed("property not allowed in this packet"));
        }
        match id {
            0x01 => {
                set_once(&mut self.payload_format_indicator, read_flag(buf, "payload format indicator must be 0 or 1")?)
            }
            0x02 => set_once(&mut self.message_expiry_interval, read_u32(buf)?),
            0x03 => set_once(&mut self.content_type, read_string(buf)?),
            0x08 => set_once(&mut self.response_topic, read_string(buf)?),
            0x09 => set_once(&mut self.correlation_data, read_binary(buf)?),
            0x0B => {
                let value = nonzero(read_varint(buf)?, "subscription identifier 0")?;
                if kind == PacketKind::Subscribe && !self.subscription_identifiers.is_empty() {
                    return Err(Error::Protocol("more than one subscription identifier"));
                }
                // A 4 byte variable byte integer always fits in a u32.
                let value = u32::try_from(value).map_err(|_| Error::Malformed("subscription identifier too large"))?;
                self.subscription_identifiers.push(value);
                Ok(())
            }
            0x11 => set_once(&mut self.session_expiry_interval, read_u32(buf)?),
            0x12 => set_once(&mut self.assigned_client_identifier, read_string(buf)?),
            0x13 => set_once(&mut self.server_keep_alive, read_u16(buf)?),
            0x15 => set_once(&mut self.authentication_method, read_string(buf)?),
            0x16 => set_once(&mut self.authentication_data, read_binary(buf)?),
            0x17 => set_once(
                &mut self.request_problem_information,
                read_flag(buf, "request problem information must be 0 or 1")?,
            ),
            0x18 => set_once(&mut self.will_delay_interval, read_u32(buf)?),
            0x19 => set_once(
                &mut self.request_response_information,
                read_flag(buf, "request response information must be 0 or 1")?,
            ),
            0x1A => set_once(&mut self.response_information, read_string(buf)?),
            0x1C => set_once(&mut self.server_reference, read_string(buf)?),
            0x1F => set_once(&mut self.reason_string, read_string(buf)?),
            0x21 => set_once(&mut self.receive_maximum, nonzero(read_u16(buf)?, "receive maximum 0")?),
            0x22 => set_once(&mut self.topic_alias_maximum, read_u16(buf)?),
            0x23 => set_once(&mut self.topic_alias, nonzero(read_u16(buf)?, "topic alias 0")?),
            0x24 => set_once(&mut self.maximum_qos, read_flag(buf, "maximum QoS must be 0 or 1")?),
            0x25 => set_once(&mut self.retain_available, read_flag(buf, "retain available must be 0 or 1")?),
            0x26 => {
                let key = read_string(buf)?;
                let value = read_string(buf)?;
                self.user_properties.push((key, value));
                Ok(())
            }
            0x27 => set_once(&mut self.maximum_packet_size, nonzero(read_u32(buf)?, "maximum packet size 0")?),
            0x28 => set_once(
                &mut self.wildcard_subscription_available,
                read_flag(buf, "wildcard subscription available must be 0 or 1")?,
            ),
            0x29 => set_once(
                &mut self.subscription_identifier_available,
                read_flag(buf, "subscription identifier available must be 0 or 1")?,
            ),
            0x2A => set_once(
                &mut self.shared_subscription_available,
                read_flag(buf, "shared subscription available must be 0 or 1")?,
            ),
            // allowed_in() returned Some, so the id is one of the arms above.
            _ => Err(Error::Malformed("unknown property identifier")),
        }
    }

    /// Length of the encoded properties, excluding the property length prefix.
    pub(crate) fn len(&self) -> usize {
        fn opt<T>(v: &Option<T>, size: impl Fn(&T) -> usize) -> usize {
            v.as_ref().map_or(0, |v| 1 + size(v))
        }
        let s = |v: &String| 2 + v.len();
        let b = |v: &Bytes| 2 + v.len();
        opt(&self.payload_format_indicator, |_| 1)
            + opt(&self.message_expiry_interval, |_| 4)
            + opt(&self.content_type, s)
            + opt(&self.response_topic, s)
            + opt(&self.correlation_data, b)
            + self.subscription_identifiers.iter().map(|&id| 1 + varint_len(id as usize)).sum::<usize>()
            + opt(&self.session_expiry_interval, |_| 4)
            + opt(&self.assigned_client_identifier, s)
            + opt(&self.server_keep_alive, |_| 2)
            + opt(&self.authentication_method, s)
            + opt(&self.authentication_data, b)
            + opt(&self.request_problem_information, |_| 1)
            + opt(&self.will_delay_interval, |_| 4)
            + opt(&self.request_response_information, |_| 1)
            + opt(&self.response_information, s)
            + opt(&self.server_reference, s)
            + opt(&self.reason_string, s)
            + opt(&self.receive_maximum, |_| 2)
            + opt(&self.topic_alias_maximum, |_| 2)
            + opt(&self.topic_alias, |_| 2)
            + opt(&self.maximum_qos, |_| 1)
            + opt(&self.retain_available, |_| 1)
            + self.user_properties.iter().map(|(k, v)| 1 + 2 + k.len() + 2 + v.len()).sum::<usize>()
            + opt(&self.maximum_packet_size, |_| 4)
            + opt(&self.wildcard_subscription_available, |_| 1)
            + opt(&self.subscription_identifier_available, |_| 1)
            + opt(&self.shared_subscription_available, |_| 1)
    }

    /// Encoded length including the property length prefix.
    pub(crate) fn wire_len(&self) -> usize {
        let len = self.len();
        varint_len(len) + len
    }

    /// Appends the property length and the properties.
    pub(crate) fn write(&self, out: &mut BytesMut) -> Result<(), Error> {
        write_varint(out, self.len())?;
        let byte = |out: &mut BytesMut, id: u8, v: Option<u8>| {
            if let Some(v) = v {
                out.put_u8(id);
                out.put_u8(v);
            }
        };
        let two = |out: &mut BytesMut, id: u8, v: Option<u16>| {
            if let Some(v) = v {
                out.put_u8(id);
                write_u16(out, v);
            }
        };
        let four = |out: &mut BytesMut, id: u8, v: Option<u32>| {
            if let Some(v) = v {
                out.put_u8(id);
                out.put_u32(v);
            }
        };
        let string = |out: &mut BytesMut, id: u8, v: &Option<String>| -> Result<(), Error> {
            if let Some(v) = v {
                out.put_u8(id);
                write_string(out, v)?;
            }
            Ok(())
        };
        let binary = |out: &mut BytesMut, id: u8, v: &Option<Bytes>| -> Result<(), Error> {
            if let Some(v) = v {
                out.put_u8(id);
                write_binary(out, v)?;
            }
            Ok(())
        };

        byte(out, 0x01, self.payload_format_indicator);
        four(out, 0x02, self.message_expiry_interval);
        string(out, 0x03, &self.content_type)?;
        string(out, 0x08, &self.response_topic)?;
        binary(out, 0x09, &self.correlation_data)?;
        for &id in &self.subscription_identifiers {
            if id as usize > MAX_VARINT {
                return Err(Error::Protocol("subscription identifier above 268435455"));
            }
            out.put_u8(0x0B);
            write_varint(out, id as usize)?;
        }
        four(out, 0x11, self.session_expiry_interval);
        string(out, 0x12, &self.assigned_client_identifier)?;
        two(out, 0x13, self.server_keep_alive);
        string(out, 0x15, &self.authentication_method)?;
        binary(out, 0x16, &self.authentication_data)?;
        byte(out, 0x17, self.request_problem_information);
        four(out, 0x18, self.will_delay_interval);
        byte(out, 0x19, self.request_response_information);
        string(out, 0x1A, &self.response_information)?;
        string(out, 0x1C, &self.server_reference)?;
        string(out, 0x1F, &self.reason_string)?;
        two(out, 0x21, self.receive_maximum);
        two(out, 0x22, self.topic_alias_maximum);
        two(out, 0x23, self.topic_alias);
        byte(out, 0x24, self.maximum_qos);
        byte(out, 0x25, self.retain_available);
        for (key, value) in &self.user_properties {
            out.put_u8(0x26);
            write_string(out, key)?;
            write_string(out, value)?;
        }
        four(out, 0x27, self.maximum_packet_size);
        byte(out, 0x28, self.wildcard_subscription_available);
        byte(out, 0x29, self.subscription_identifier_available);
        byte(out, 0x2A, self.shared_subscription_available);
        Ok(())
    }
}

/// The empty property set that an absent [`Props`] reads as.
static NONE: Properties = Properties {
    payload_format_indicator: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    subscription_identifiers: Vec::new(),
    session_expiry_interval: None,
    assigned_client_identifier: None,
    server_keep_alive: None,
    authentication_method: None,
    authentication_data: None,
    request_problem_information: None,
    will_delay_interval: None,
    request_response_information: None,
    response_information: None,
    server_reference: None,
    reason_string: None,
    receive_maximum: None,
    topic_alias_maximum: None,
    topic_alias: None,
    maximum_qos: None,
    retain_available: None,
    user_properties: Vec::new(),
    maximum_packet_size: None,
    wildcard_subscription_available: None,
    subscription_identifier_available: None,
    shared_subscription_available: None,
};

/// A packet's properties: one pointer, null when there are none. Reads through it see
/// [`Properties`] (all absent when null); a write through it allocates the set on first use.
#[derive(Clone, Default)]
pub struct Props(Option<Box<Properties>>);

impl Props {
    /// True when no property is set; O(1) when nothing was ever set.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|p| p.is_empty())
    }

    /// Reads a property block; an empty one (the common case) allocates nothing.
    pub(crate) fn read(buf: &mut Bytes, kind: PacketKind) -> Result<Props, Error> {
        if buf.first() == Some(&0) {
            buf.advance(1);
            return Ok(Props(None));
        }
        Ok(Props::from(Properties::read(buf, kind)?))
    }

    /// Encoded length including the property length prefix.
    pub(crate) fn wire_len(&self) -> usize {
        self.0.as_ref().map_or(1, |p| p.wire_len())
    }

    /// The PUBLISH property block as stored with a message (length prefix and properties,
    /// as on the wire); empty when there are none.
    pub fn to_publish_block(&self) -> Result<Bytes, Error> {
        if self.is_empty() {
            return Ok(Bytes::new());
        }
        let mut out = BytesMut::with_capacity(self.wire_len());
        self.write(&mut out)?;
        Ok(out.freeze())
    }

    /// Reads back a block made by [`Props::to_publish_block`], validated as PUBLISH
    /// properties.
    pub fn from_publish_block(mut block: Bytes) -> Result<Props, Error> {
        if block.is_empty() {
            return Ok(Props(None));
        }
        let props = Props::read(&mut block, PacketKind::Publish)?;
        if !block.is_empty() {
            return Err(Error::Malformed("bytes after the property block"));
        }
        Ok(props)
    }

    /// Appends the property length and the properties.
    pub(crate) fn write(&self, out: &mut BytesMut) -> Result<(), Error> {
        match &self.0 {
            None => {
                out.put_u8(0);
                Ok(())
            }
            Some(p) => p.write(out),
        }
    }
}

impl From<Properties> for Props {
    fn from(props: Properties) -> Props {
        Props(if props.is_empty() { None } else { Some(Box::new(props)) })
    }
}

impl Deref for Props {
    type Target = Properties;

    fn deref(&self) -> &Properties {
        self.0.as_deref().unwrap_or(&NONE)
    }
}

impl DerefMut for Props {
    fn deref_mut(&mut self) -> &mut Properties {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for Props {
    fn eq(&self, other: &Props) -> bool {
        **self == **other
    }
}

impl Eq for Props {}

impl std::fmt::Debug for Props {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], kind: PacketKind) -> Result<Properties, Error> {
        let mut buf = Bytes::copy_from_slice(bytes);
        let props = Properties::read(&mut buf, kind)?;
        assert!(buf.is_empty(), "property block not fully consumed");
        Ok(props)
    }

    #[test]
    fn empty() {
        assert!(Properties::default().is_empty());
        assert_eq!(decode(&[0], PacketKind::Publish), Ok(Properties::default()));
        let mut out = BytesMut::new();
        Properties::default().write(&mut out).unwrap();
        assert_eq!(&out[..], &[0]);
        let props = Properties { topic_alias: Some(1), ..Properties::default() };
        assert!(!props.is_empty());
    }

    #[test]
    fn round_trip_all_connack_properties() {
        let props = Properties {
            session_expiry_interval: Some(0xffff_ffff),
            assigned_client_identifier: Some("id".into()),
            server_keep_alive: Some(30),
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(b"\x00\x01")),
            response_information: Some("resp".into()),
            server_reference: Some("other".into()),
            reason_string: Some("why".into()),
            receive_maximum: Some(10),
            topic_alias_maximum: Some(5),
            maximum_qos: Some(1),
            retain_available: Some(0),
            user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            maximum_packet_size: Some(1024),
            wildcard_subscription_available: Some(1),
            subscription_identifier_available: Some(0),
            shared_subscription_available: Some(1),
            ..Properties::default()
        };
        let mut out = BytesMut::new();
        props.write(&mut out).unwrap();
        assert_eq!(out.len(), props.wire_len());
        assert_eq!(decode(&out, PacketKind::ConnAck), Ok(props.clone()));
        // The same block is full of properties a PUBLISH may not carry.
        assert!(matches!(decode(&out, PacketKind::Publish), Err(Error::Malformed(_))));
    }

    #[test]
    fn validation() {
        // Duplicate topic alias.
        let dup = [6, 0x23, 0, 1, 0x23, 0, 2];
        assert!(matches!(decode(&dup, PacketKind::Publish), Err(Error::Protocol(_))));
        // Unknown id 0x04.
        assert!(matches!(decode(&[2, 0x04, 0], PacketKind::Publish), Err(Error::Malformed(_))));
        // Topic alias in CONNECT: not valid for the packet type, so Malformed (2.2.2.2).
        assert!(matches!(decode(&[3, 0x23, 0, 1], PacketKind::Connect), Err(Error::Malformed(_))));
        // Will delay allowed in will, not in CONNECT.
        let delay = [5, 0x18, 0, 0, 0, 9];
        assert_eq!(decode(&delay, PacketKind::Will).map(|p| p.will_delay_interval), Ok(Some(9)));
        assert!(matches!(decode(&delay, PacketKind::Connect), Err(Error::Malformed(_))));
        // Payload format indicator 2.
        assert!(matches!(decode(&[2, 0x01, 2], PacketKind::Publish), Err(Error::Protocol(_))));
        assert!(matches!(decode(&[2, 0x17, 2], PacketKind::Connect), Err(Error::Protocol(_))));
        // Zero values.
        assert!(matches!(decode(&[3, 0x23, 0, 0], PacketKind::Publish), Err(Error::Protocol(_))));
        assert!(matches!(decode(&[3, 0x21, 0, 0], PacketKind::Connect), Err(Error::Protocol(_))));
        assert!(matches!(decode(&[2, 0x0B, 0], PacketKind::Publish), Err(Error::Protocol(_))));
        // Several subscription identifiers: fine in PUBLISH, not in SUBSCRIBE.
        let ids = [4, 0x0B, 1, 0x0B, 2];
        assert_eq!(decode(&ids, PacketKind::Publish).map(|p| p.subscription_identifiers), Ok(vec![1, 2]));
        assert!(matches!(decode(&ids, PacketKind::Subscribe), Err(Error::Protocol(_))));
        // Authentication data needs a method.
        let data = [4, 0x16, 0, 1, 0xaa];
        assert!(matches!(decode(&data, PacketKind::Auth), Err(Error::Protocol(_))));
        // Property length past the end, value past the property length.
        assert!(matches!(decode(&[5, 0x23, 0, 1], PacketKind::Publish), Err(Error::Malformed(_))));
        assert!(matches!(decode(&[2, 0x23, 0, 1], PacketKind::Publish), Err(Error::Malformed(_))));
    }

    #[test]
    fn string_too_long() {
        let props = Properties { user_properties: vec![("k".into(), "v".repeat(70_000))], ..Properties::default() };
        let mut out = BytesMut::new();
        assert_eq!(props.write(&mut out), Err(Error::StringTooLong(70_000)));
    }
}
