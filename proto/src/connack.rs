//! CONNACK (MQTT 3.1.1 section 3.2, MQTT 5.0 section 3.2): the server's answer to CONNECT.
//!
//! Decode enforces: acknowledge flags bits 7..1 clear (Malformed); V4 body exactly two bytes;
//! V5 properties from the CONNACK set; no trailing bytes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{expect_end, frame_size, guarded, read_u8, write_fixed_header};
use crate::properties::{PacketKind, Props};
use crate::{Error, Protocol};

/// CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// The server resumed an existing session.
    pub session_present: bool,
    /// code: 3.1.1 return code (0..=5) for V4, reason code for V5.
    pub code: u8,
    /// CONNACK properties (V5).
    pub properties: Props,
}

impl ConnAck {
    pub(crate) fn read(mut buf: Bytes, protocol: Protocol) -> Result<ConnAck, Error> {
        let flags = read_u8(&mut buf)?;
        if flags & 0xfe != 0 {
            return Err(Error::Malformed("reserved CONNACK flags set"));
        }
        let code = read_u8(&mut buf)?;
        let properties = match protocol {
            Protocol::V4 => Props::default(),
            Protocol::V5 => Props::read(&mut buf, PacketKind::ConnAck)?,
        };
        expect_end(&buf)?;
        Ok(ConnAck { session_present: flags & 0x01 != 0, code, properties })
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        match protocol {
            Protocol::V4 => 2,
            Protocol::V5 => 2 + self.properties.wire_len(),
        }
    }

    /// Encoded size of the whole frame.
    pub fn size(&self, protocol: Protocol) -> usize {
        frame_size(self.remaining_len(protocol))
    }

    /// Appends the encoding to `out`, returning the number of bytes written.
    pub fn write(&self, protocol: Protocol, out: &mut BytesMut) -> Result<usize, Error> {
        guarded(out, |out| {
            write_fixed_header(out, 0x20, self.remaining_len(protocol))?;
            out.put_u8(u8::from(self.session_present));
            out.put_u8(self.code);
            if protocol == Protocol::V5 {
                self.properties.write(out)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4() {
        let ack = ConnAck::read(Bytes::from_static(&[1, 0]), Protocol::V4).unwrap();
        assert!(ack.session_present);
        assert_eq!(ack.code, 0);
        let mut out = BytesMut::new();
        assert_eq!(ack.write(Protocol::V4, &mut out), Ok(4));
        assert_eq!(&out[..], &[0x20, 2, 1, 0]);
        assert!(matches!(ConnAck::read(Bytes::from_static(&[2, 0]), Protocol::V4), Err(Error::Malformed(_))));
        assert!(matches!(ConnAck::read(Bytes::from_static(&[0, 0, 0]), Protocol::V4), Err(Error::Malformed(_))));
    }

    #[test]
    fn v5() {
        let ack = ConnAck::read(Bytes::from_static(&[0, 0x87, 3, 0x24, 0, 0]), Protocol::V5);
        // 0x24 maximum QoS 0 takes one byte; the last 0 is trailing inside the properties:
        // property id 0 is unknown.
        assert!(matches!(ack, Err(Error::Malformed(_))));
        let ack = ConnAck::read(Bytes::from_static(&[0, 0x87, 2, 0x24, 1]), Protocol::V5).unwrap();
        assert_eq!(ack.code, 0x87);
        assert_eq!(ack.properties.maximum_qos, Some(1));
        // Topic alias is not a CONNACK property: a Malformed Packet (5.0, 2.2.2.2).
        let ack = ConnAck::read(Bytes::from_static(&[0, 0, 3, 0x23, 0, 1]), Protocol::V5);
        assert!(matches!(ack, Err(Error::Malformed(_))));
    }
}
