//! PUBLISH (MQTT 3.1.1 section 3.3, MQTT 5.0 section 3.3): the message packet, with the
//! zero-copy decode path and [`Publish::pkid_offset`] for the broker's encode-once fan-out.
//!
//! Decode enforces: QoS 3 and QoS 0 with DUP are Malformed (checked from the fixed header);
//! the topic is valid UTF-8 without U+0000 (Malformed) and without '+' or '#'
//! (TopicNameInvalid); an empty topic is TopicNameInvalid in V4 and a Protocol error in V5
//! unless a topic alias property is present; packet identifier 0 with QoS > 0 is Protocol;
//! V5 properties from the PUBLISH set. The payload is the rest of the frame.
//!
//! Topic and payload are `Bytes` slices of the frame; with no properties the decode path
//! allocates nothing.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{
    check_utf8, frame_size, guarded, read_binary, read_pkid, varint_len, write_binary, write_fixed_header, write_u16,
};
use crate::properties::{PacketKind, Props};
use crate::{Error, Protocol, QoS};

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Re-delivery flag (never set with QoS 0).
    pub dup: bool,
    /// Delivery QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// valid UTF-8 (checked on decode), no wildcards checked by the broker, may be empty in V5
    /// when a topic alias is set
    pub topic: Bytes,
    /// 0 for QoS 0; decode of QoS>0 with pkid 0 is Error::Protocol
    pub pkid: u16,
    /// PUBLISH properties (V5).
    pub properties: Props,
    /// zero-copy slice of the input buffer
    pub payload: Bytes,
}

/// Reads a topic name: valid UTF-8 without U+0000 (else Malformed) and without wildcards
/// (else TopicNameInvalid). Emptiness is left to the caller.
pub(crate) fn read_topic(buf: &mut Bytes) -> Result<Bytes, Error> {
    let topic = read_binary(buf)?;
    check_utf8(&topic)?;
    // '+' and '#' are ASCII, so they can't appear inside a multi-byte UTF-8 sequence.
    if topic.iter().any(|&b| b == b'+' || b == b'#') {
        return Err(Error::TopicNameInvalid);
    }
    Ok(topic)
}

impl Publish {
    /// A PUBLISH with no flags, no properties and packet identifier 0.
    pub fn new(topic: impl Into<Bytes>, qos: QoS, payload: impl Into<Bytes>) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.into(),
            pkid: 0,
            properties: Props::default(),
            payload: payload.into(),
        }
    }

    /// The topic as a string slice (None only if it was built from invalid UTF-8;
    /// decoded topics are always valid).
    pub fn topic_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.topic).ok()
    }

    /// Decodes a body whose first byte passed the fixed-header checks.
    pub(crate) fn read(first: u8, mut buf: Bytes, protocol: Protocol) -> Result<Publish, Error> {
        let qos = QoS::from_u8((first >> 1) & 0x03).ok_or(Error::Malformed("PUBLISH QoS 3"))?;
        let dup = first & 0x08 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(Error::Malformed("PUBLISH QoS 0 with DUP set"));
        }
        let topic = read_topic(&mut buf)?;
        let pkid = if qos == QoS::AtMostOnce { 0 } else { read_pkid(&mut buf)? };
        let properties = match protocol {
            Protocol::V4 => Props::default(),
            Protocol::V5 => Props::read(&mut buf, PacketKind::Publish)?,
        };
        if topic.is_empty() {
            match protocol {
                Protocol::V4 => return Err(Error::TopicNameInvalid),
                Protocol::V5 if properties.topic_alias.is_none() => {
                    return Err(Error::Protocol("empty topic without a topic alias"))
                }
                Protocol::V5 => {}
            }
        }
        Ok(Publish { dup, qos, retain: first & 0x01 != 0, topic, pkid, properties, payload: buf })
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        let mut len = 2 + self.topic.len() + self.payload.len();
        if self.qos != QoS::AtMostOnce {
            len += 2;
        }
        if protocol == Protocol::V5 {
            len += self.properties.wire_len();
        }
        len
    }

    /// Encoded size of the whole frame.
    pub fn size(&self, protocol: Protocol) -> usize {
        frame_size(self.remaining_len(protocol))
    }

    /// Byte offset inside the encoding written by `write` where the 2-byte packet id sits
    /// (None for QoS 0), so a shared encoding can be copied and patched per subscriber.
    pub fn pkid_offset(&self, protocol: Protocol) -> Option<usize> {
        if self.qos == QoS::AtMostOnce {
            return None;
        }
        Some(1 + varint_len(self.remaining_len(protocol)) + 2 + self.topic.len())
    }

    /// Appends the encoding to `out`, returning the number of bytes written.
    ///
    /// `pkid` is written as given for QoS > 0, even 0 (a placeholder to patch at
    /// [`Publish::pkid_offset`]); it is not written for QoS 0.
    pub fn write(&self, protocol: Protocol, out: &mut BytesMut) -> Result<usize, Error> {
        guarded(out, |out| {
            let mut first = 0x30 | ((self.qos as u8) << 1);
            if self.dup {
                first |= 0x08;
            }
            if self.retain {
                first |= 0x01;
            }
            write_fixed_header(out, first, self.remaining_len(protocol))?;
            write_binary(out, &self.topic)?;
            if self.qos != QoS::AtMostOnce {
                write_u16(out, self.pkid);
            }
            if protocol == Protocol::V5 {
                self.properties.write(out)?;
            }
            out.put_slice(&self.payload);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_copy_slices() {
        let frame = Bytes::from_static(b"\x00\x03a/b\x00\x05hello");
        let p = Publish::read(0x32, frame.clone(), Protocol::V4).unwrap();
        assert_eq!(p.qos, QoS::AtLeastOnce);
        assert_eq!(p.pkid, 5);
        assert_eq!(p.topic_str(), Some("a/b"));
        assert_eq!(&p.payload[..], b"hello");
        // Both point into the original frame.
        assert_eq!(p.topic.as_ptr(), frame[2..].as_ptr());
        assert_eq!(p.payload.as_ptr(), frame[7..].as_ptr());
    }

    #[test]
    fn empty_topic() {
        let v4 = Publish::read(0x30, Bytes::from_static(b"\x00\x00x"), Protocol::V4);
        assert_eq!(v4, Err(Error::TopicNameInvalid));
        let v5 = Publish::read(0x30, Bytes::from_static(b"\x00\x00\x00x"), Protocol::V5);
        assert!(matches!(v5, Err(Error::Protocol(_))));
        let v5 = Publish::read(0x30, Bytes::from_static(b"\x00\x00\x03\x23\x00\x01x"), Protocol::V5).unwrap();
        assert_eq!(v5.properties.topic_alias, Some(1));
        assert!(v5.topic.is_empty());
        assert_eq!(&v5.payload[..], b"x");
    }

    #[test]
    fn pkid_offset_and_size() {
        let mut p = Publish::new("t/x", QoS::ExactlyOnce, vec![7u8; 200]);
        p.pkid = 0xabcd;
        p.properties.message_expiry_interval = Some(5);
        for protocol in [Protocol::V4, Protocol::V5] {
            let mut out = BytesMut::new();
            let n = p.write(protocol, &mut out).unwrap();
            assert_eq!(n, p.size(protocol));
            let at = p.pkid_offset(protocol).unwrap();
            assert_eq!(&out[at..at + 2], &[0xab, 0xcd]);
        }
        assert_eq!(Publish::new("a", QoS::AtMostOnce, "").pkid_offset(Protocol::V5), None);
    }
}
