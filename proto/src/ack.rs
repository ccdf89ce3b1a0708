//! PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 3.1.1 sections 3.4-3.7, MQTT 5.0 sections
//! 3.4-3.7): four packets with one layout, decoded into [`Ack`] and told apart by
//! [`AckKind`] (or the [`crate::Packet`] variant).
//!
//! Decode: packet identifier 0 is Protocol. In V4 the body is exactly the packet identifier.
//! In V5 a remaining length of 2 means reason 0 and no properties, 3 means a reason code
//! without properties, more means reason code and properties (the ack property set); in all
//! cases trailing bytes are Malformed. Reason codes are not checked against the per-packet
//! table: that is left to the receiver.
//!
//! Encode: short form (no reason byte) when V4, or V5 with reason 0 and no properties; a V5
//! non-zero reason without properties omits the property length.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{expect_end, frame_size, guarded, read_pkid, read_u8, write_fixed_header, write_u16};
use crate::properties::{PacketKind, Props};
use crate::{Error, Protocol};

/// PUBACK, PUBREC, PUBREL, PUBCOMP share this. reason 0 = success.
/// Encode: short form (no reason byte) when V4, or V5 with reason 0 and no properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Packet identifier of the PUBLISH being acknowledged (never 0).
    pub pkid: u16,
    /// Reason code (V5; always 0 when decoded from V4).
    pub reason: u8,
    /// Properties (V5): reason string and user properties.
    pub properties: Props,
}

/// Which of the four acknowledgement packets an [`Ack`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// PUBACK: QoS 1 acknowledgement.
    PubAck,
    /// PUBREC: QoS 2 part 1.
    PubRec,
    /// PUBREL: QoS 2 part 2.
    PubRel,
    /// PUBCOMP: QoS 2 part 3.
    PubComp,
}

impl AckKind {
    /// The first byte of the fixed header (PUBREL carries flags 0b0010).
    pub fn first_byte(self) -> u8 {
        match self {
            AckKind::PubAck => 0x40,
            AckKind::PubRec => 0x50,
            AckKind::PubRel => 0x62,
            AckKind::PubComp => 0x70,
        }
    }
}

impl Ack {
    /// An acknowledgement with reason 0 and no properties.
    pub fn new(pkid: u16) -> Ack {
        Ack { pkid, reason: 0, properties: Props::default() }
    }

    pub(crate) fn read(mut buf: Bytes, protocol: Protocol) -> Result<Ack, Error> {
        let pkid = read_pkid(&mut buf)?;
        let mut ack = Ack::new(pkid);
        if protocol == Protocol::V5 && !buf.is_empty() {
            ack.reason = read_u8(&mut buf)?;
            if !buf.is_empty() {
                ack.properties = Props::read(&mut buf, PacketKind::Ack)?;
            }
        }
        expect_end(&buf)?;
        Ok(ack)
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        match protocol {
            Protocol::V4 => 2,
            Protocol::V5 if self.properties.is_empty() => {
                if self.reason == 0 {
                    2
                } else {
                    3
                }
            }
            Protocol::V5 => 3 + self.properties.wire_len(),
        }
    }

    /// Encoded size of the whole frame.
    pub fn size(&self, protocol: Protocol) -> usize {
        frame_size(self.remaining_len(protocol))
    }

    /// Appends the encoding of this ack as packet `kind` to `out`, returning the number of
    /// bytes written.
    pub fn write(&self, kind: AckKind, protocol: Protocol, out: &mut BytesMut) -> Result<usize, Error> {
        guarded(out, |out| {
            let len = self.remaining_len(protocol);
            write_fixed_header(out, kind.first_byte(), len)?;
            write_u16(out, self.pkid);
            if len > 2 {
                out.put_u8(self.reason);
            }
            if len > 3 {
                self.properties.write(out)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &'static [u8], protocol: Protocol) -> Result<Ack, Error> {
        Ack::read(Bytes::from_static(bytes), protocol)
    }

    #[test]
    fn short_forms() {
        assert_eq!(read(&[0, 7], Protocol::V5), Ok(Ack::new(7)));
        let ack = read(&[0, 7, 0x10], Protocol::V5).unwrap();
        assert_eq!((ack.pkid, ack.reason), (7, 0x10));
        assert!(ack.properties.is_empty());
        let ack = read(&[0, 7, 0x80, 0], Protocol::V5).unwrap();
        assert_eq!((ack.pkid, ack.reason), (7, 0x80));
        assert_eq!(read(&[0, 7], Protocol::V4), Ok(Ack::new(7)));
    }

    #[test]
    fn errors() {
        assert!(matches!(read(&[0, 0], Protocol::V4), Err(Error::Protocol(_))));
        assert!(matches!(read(&[0, 0], Protocol::V5), Err(Error::Protocol(_))));
        assert!(matches!(read(&[0], Protocol::V4), Err(Error::Malformed(_))));
        assert!(matches!(read(&[0, 1, 0], Protocol::V4), Err(Error::Malformed(_))));
        assert!(matches!(read(&[0, 1, 0, 0, 9], Protocol::V5), Err(Error::Malformed(_))));
        // Topic alias is not an ack property.
        assert!(matches!(read(&[0, 1, 0, 3, 0x23, 0, 1], Protocol::V5), Err(Error::Malformed(_))));
    }

    #[test]
    fn encodings() {
        let mut out = BytesMut::new();
        let mut ack = Ack::new(0x0102);
        ack.write(AckKind::PubRel, Protocol::V5, &mut out).unwrap();
        assert_eq!(&out.split()[..], &[0x62, 2, 1, 2]);
        ack.reason = 0x92;
        ack.write(AckKind::PubComp, Protocol::V4, &mut out).unwrap();
        assert_eq!(&out.split()[..], &[0x70, 2, 1, 2]);
        ack.write(AckKind::PubComp, Protocol::V5, &mut out).unwrap();
        assert_eq!(&out.split()[..], &[0x70, 3, 1, 2, 0x92]);
        ack.properties.reason_string = Some("x".into());
        assert_eq!(ack.size(Protocol::V5), 10);
        ack.write(AckKind::PubAck, Protocol::V5, &mut out).unwrap();
        assert_eq!(&out.split()[..], &[0x40, 8, 1, 2, 0x92, 4, 0x1f, 0, 1, b'x']);
    }
}
