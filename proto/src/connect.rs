//! CONNECT (MQTT 3.1.1 section 3.1, MQTT 5.0 section 3.1) and its will message,
//! [`LastWill`].
//!
//! Decode enforces: protocol name "MQTT" with level 4 or 5, or MQTT 3.1's "MQIsdp" with
//! level 3 (anything else is UnsupportedProtocolVersion with the level byte); reserved
//! connect flag bit 0 clear; will QoS and will retain clear without the will flag; will QoS
//! not 3; before 5.0 no password flag without the user name flag; a will topic that is a
//! valid topic name (TopicNameInvalid otherwise); V5 CONNECT and will properties from their
//! allowed sets; no bytes after the last field.
//!
//! MQTT 3.1 decodes as [`Protocol::V4`] with [`Connect::mqtt31`] set: its other packets are
//! those of 3.1.1, and only CONNECT (name, level) and CONNACK (no session present flag)
//! differ.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{
    expect_end, frame_size, guarded, read_binary, read_string, read_u16, read_u8, write_binary, write_fixed_header,
    write_string, write_u16,
};
use crate::properties::{PacketKind, Props};
use crate::publish::read_topic;
use crate::{Error, Protocol, QoS};

const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN_START: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;

/// The will message a CONNECT asks the server to publish if the connection drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Topic name (valid UTF-8, no wildcards, non-empty).
    pub topic: Bytes,
    /// Message payload.
    pub payload: Bytes,
    /// QoS to publish the will with.
    pub qos: QoS,
    /// Whether the will is published as a retained message.
    pub retain: bool,
    /// Will properties (V5): payload format, message expiry, content type, response topic,
    /// correlation data, user properties, will delay interval.
    pub properties: Props,
}

/// CONNECT: the first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The version named by the protocol level byte.
    pub protocol: Protocol,
    /// "clean session" in 3.1.1
    pub clean_start: bool,
    /// Keep alive in seconds (0 = off).
    pub keep_alive: u16,
    /// Client identifier, possibly empty.
    pub client_id: String,
    /// Will message, if the will flag is set.
    pub will: Option<LastWill>,
    /// User name, if the user name flag is set.
    pub username: Option<String>,
    /// Password, if the password flag is set.
    pub password: Option<Bytes>,
    /// CONNECT properties (V5).
    pub properties: Props,
    /// MQTT 3.1 (protocol name "MQIsdp", level 3); `protocol` is then [`Protocol::V4`].
    pub mqtt31: bool,
}

/// MQTT 3.1's protocol name.
const NAME_31: &[u8] = b"MQIsdp";

impl Connect {
    pub(crate) fn read(mut buf: Bytes) -> Result<Connect, Error> {
        let name = read_binary(&mut buf)?;
        let level = read_u8(&mut buf)?;
        let (protocol, mqtt31) = match (&name[..], level) {
            (b"MQTT", 4) => (Protocol::V4, false),
            (b"MQTT", 5) => (Protocol::V5, false),
            (NAME_31, 3) => (Protocol::V4, true),
            // An unknown name or level: refused with a CONNACK in the form the level names.
            _ => return Err(Error::UnsupportedProtocolVersion(level)),
        };
        let v5 = protocol == Protocol::V5;

        let flags = read_u8(&mut buf)?;
        if flags & FLAG_RESERVED != 0 {
            return Err(Error::Malformed("reserved connect flag set"));
        }
        let will_flag = flags & FLAG_WILL != 0;
        let will_retain = flags & FLAG_WILL_RETAIN != 0;
        let will_qos_bits = (flags >> 3) & 0x03;
        if !will_flag && (will_qos_bits != 0 || will_retain) {
            return Err(Error::Malformed("will QoS or retain set without the will flag"));
        }
        let will_qos = QoS::from_u8(will_qos_bits).ok_or(Error::Malformed("will QoS 3"))?;
        let username_flag = flags & FLAG_USERNAME != 0;
        let password_flag = flags & FLAG_PASSWORD != 0;
        if !v5 && password_flag && !username_flag {
            return Err(Error::Malformed("password flag without user name flag"));
        }

        let keep_alive = read_u16(&mut buf)?;
        let properties = if v5 { Props::read(&mut buf, PacketKind::Connect)? } else { Props::default() };
        let client_id = read_string(&mut buf)?;
        let will = if will_flag {
            let properties = if v5 { Props::read(&mut buf, PacketKind::Will)? } else { Props::default() };
            let topic = read_topic(&mut buf)?;
            if topic.is_empty() {
                return Err(Error::TopicNameInvalid);
            }
            let payload = read_binary(&mut buf)?;
            Some(LastWill { topic, payload, qos: will_qos, retain: will_retain, properties })
        } else {
            None
        };
        let username = if username_flag { Some(read_string(&mut buf)?) } else { None };
        let password = if password_flag { Some(read_binary(&mut buf)?) } else { None };
        expect_end(&buf)?;
        Ok(Connect {
            protocol,
            clean_start: flags & FLAG_CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
            mqtt31,
        })
    }

    /// The protocol name and level byte written.
    fn name_and_level(&self) -> (&'static str, u8) {
        if self.mqtt31 {
            ("MQIsdp", 3)
        } else {
            ("MQTT", self.protocol.level())
        }
    }

    fn remaining_len(&self) -> usize {
        let v5 = self.protocol == Protocol::V5;
        // Protocol name (2 + its length), level, flags, keep alive.
        let mut len = 2 + self.name_and_level().0.len() + 1 + 1 + 2;
        if v5 {
            len += self.properties.wire_len();
        }
        len += 2 + self.client_id.len();
        if let Some(will) = &self.will {
            if v5 {
                len += will.properties.wire_len();
            }
            len += 2 + will.topic.len() + 2 + will.payload.len();
        }
        if let Some(username) = &self.username {
            len += 2 + username.len();
        }
        if let Some(password) = &self.password {
            len += 2 + password.len();
        }
        len
    }

    /// Encoded size of the whole frame (the version is `self.protocol`).
    pub fn size(&self, _protocol: Protocol) -> usize {
        frame_size(self.remaining_len())
    }

    /// Appends the encoding to `out`, returning the number of bytes written.
    ///
    /// The version written is `self.protocol`, or 3.1 with `self.mqtt31` (a CONNECT names
    /// its own version);
    /// `_protocol` is there for symmetry with the other packets and is ignored.
    /// Errors: StringTooLong, PayloadTooLarge, and Protocol for a password without a user
    /// name in 3.1.1 (which the decoder would refuse).
    pub fn write(&self, _protocol: Protocol, out: &mut BytesMut) -> Result<usize, Error> {
        guarded(out, |out| self.encode(out))
    }

    fn encode(&self, out: &mut BytesMut) -> Result<(), Error> {
        let v5 = self.protocol == Protocol::V5;
        if !v5 && self.password.is_some() && self.username.is_none() {
            return Err(Error::Protocol("MQTT 3.1 and 3.1.1 do not allow a password without a user name"));
        }
        if self.mqtt31 && v5 {
            return Err(Error::Protocol("an MQTT 3.1 CONNECT is not a 5.0 one"));
        }
        let mut flags = 0;
        if self.clean_start {
            flags |= FLAG_CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | ((will.qos as u8) << 3);
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }

        let (name, level) = self.name_and_level();
        write_fixed_header(out, 0x10, self.remaining_len())?;
        write_string(out, name)?;
        out.put_u8(level);
        out.put_u8(flags);
        write_u16(out, self.keep_alive);
        if v5 {
            self.properties.write(out)?;
        }
        write_string(out, &self.client_id)?;
        if let Some(will) = &self.will {
            if v5 {
                will.properties.write(out)?;
            }
            write_binary(out, &will.topic)?;
            write_binary(out, &will.payload)?;
        }
        if let Some(username) = &self.username {
            write_string(out, username)?;
        }
        if let Some(password) = &self.password {
            write_binary(out, password)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A V4 CONNECT body: "MQTT", level 4, then `rest` (flags onward).
    fn body(level: u8, rest: &[u8]) -> Bytes {
        let mut v = vec![0, 4, b'M', b'Q', b'T', b'T', level];
        v.extend_from_slice(rest);
        Bytes::from(v)
    }

    #[test]
    fn minimal_v4() {
        let c = Connect::read(body(4, &[0x02, 0, 60, 0, 1, b'c'])).unwrap();
        assert_eq!(c.protocol, Protocol::V4);
        assert!(c.clean_start);
        assert_eq!(c.keep_alive, 60);
        assert_eq!(c.client_id, "c");
        assert_eq!(c.will, None);
        let mut out = BytesMut::new();
        assert_eq!(c.write(Protocol::V4, &mut out), Ok(15));
        assert_eq!(c.size(Protocol::V5), 15);
        assert_eq!(&out[2..], &body(4, &[0x02, 0, 60, 0, 1, b'c'])[..]);
    }

    #[test]
    fn flag_rules() {
        let bad = |flags: u8| Connect::read(body(4, &[flags, 0, 0, 0, 0]));
        assert!(matches!(bad(0x01), Err(Error::Malformed(_))), "reserved bit");
        assert!(matches!(bad(0x08), Err(Error::Malformed(_))), "will qos w/o will");
        assert!(matches!(bad(0x20), Err(Error::Malformed(_))), "will retain w/o will");
        assert!(matches!(bad(0x1c), Err(Error::Malformed(_))), "will qos 3");
        assert!(matches!(bad(0x40), Err(Error::Malformed(_))), "password w/o user");
        // V5 allows a password without a user name.
        let c = Connect::read(body(5, &[0x40, 0, 0, 0, 0, 0, 0, 2, b'p', b'w'])).unwrap();
        assert_eq!(c.username, None);
        assert_eq!(c.password, Some(Bytes::from_static(b"pw")));
    }

    /// An MQTT 3.1 CONNECT body: "MQIsdp", `level`, then `rest` (flags onward).
    fn body31(level: u8, rest: &[u8]) -> Bytes {
        let mut v = vec![0, 6];
        v.extend_from_slice(b"MQIsdp");
        v.push(level);
        v.extend_from_slice(rest);
        Bytes::from(v)
    }

    #[test]
    fn versions() {
        assert_eq!(Connect::read(body(3, &[0, 0, 0, 0, 0])), Err(Error::UnsupportedProtocolVersion(3)));
        assert_eq!(Connect::read(body(6, &[0, 0, 0, 0, 0])), Err(Error::UnsupportedProtocolVersion(6)));
        assert_eq!(Connect::read(body31(4, &[0, 0, 0, 0, 0])), Err(Error::UnsupportedProtocolVersion(4)));
        // An unknown name: refused like an unknown level, with the level it named.
        let wrong = Bytes::from_static(b"\x00\x04MQTX\x04\x00\x00\x00\x00\x00");
        assert_eq!(Connect::read(wrong), Err(Error::UnsupportedProtocolVersion(4)));
    }

    /// Issue 10: MQTT 3.1 is accepted, as 3.1.1 with `mqtt31` set, client ids past the 23
    /// characters of its spec included; it encodes back to the same bytes.
    #[test]
    fn mqtt31_issue_10() {
        let id = b"a-client-id-longer-than-23-characters";
        let mut rest = vec![0x02, 0, 30, 0, id.len() as u8];
        rest.extend_from_slice(id);
        let c = Connect::read(body31(3, &rest)).unwrap();
        assert_eq!((c.protocol, c.mqtt31, c.keep_alive), (Protocol::V4, true, 30));
        assert_eq!(c.client_id.as_bytes(), id);
        let mut out = BytesMut::new();
        let n = c.write(Protocol::V4, &mut out).unwrap();
        assert_eq!((n, c.size(Protocol::V4)), (out.len(), out.len()));
        assert_eq!(&out[2..], &body31(3, &rest)[..]);
        // The same flag rules as 3.1.1.
        assert!(matches!(Connect::read(body31(3, &[0x40, 0, 0, 0, 0])), Err(Error::Malformed(_))));
    }

    #[test]
    fn will_topic_checked() {
        // Will flag, will topic "a/#".
        let c = Connect::read(body(4, &[0x04, 0, 0, 0, 0, 0, 3, b'a', b'/', b'#', 0, 0]));
        assert_eq!(c, Err(Error::TopicNameInvalid));
        let c = Connect::read(body(4, &[0x04, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(c, Err(Error::TopicNameInvalid));
    }

    #[test]
    fn trailing_and_truncated() {
        let c = Connect::read(body(4, &[0x02, 0, 60, 0, 1, b'c', 0xff]));
        assert!(matches!(c, Err(Error::Malformed(_))));
        let c = Connect::read(body(4, &[0x82, 0, 60, 0, 1, b'c']));
        assert!(matches!(c, Err(Error::Malformed(_))), "missing user name");
    }

    #[test]
    fn encode_rejects_v4_password_without_username() {
        let c = Connect {
            protocol: Protocol::V4,
            clean_start: true,
            keep_alive: 0,
            client_id: String::new(),
            will: None,
            username: None,
            password: Some(Bytes::from_static(b"pw")),
            properties: Props::default(),
            mqtt31: false,
        };
        let mut out = BytesMut::new();
        assert!(matches!(c.write(Protocol::V4, &mut out), Err(Error::Protocol(_))));
        assert!(out.is_empty());
    }
}
