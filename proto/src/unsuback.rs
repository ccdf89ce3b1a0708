//! UNSUBACK (MQTT 3.1.1 section 3.11, MQTT 5.0 section 3.11).
//!
//! Decode: packet identifier 0 is Protocol. V4: the body is exactly the packet identifier
//! and `codes` is empty. V5: properties from the UNSUBACK set, then at least one reason code
//! (Protocol otherwise). Encoding for V4 drops codes and properties.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{expect_end, frame_size, guarded, read_pkid, write_fixed_header, write_u16};
use crate::properties::{PacketKind, Props};
use crate::{Error, Protocol};

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub pkid: u16,
    /// codes empty for V4
    pub codes: Vec<u8>,
    /// UNSUBACK properties (V5): reason string and user properties.
    pub properties: Props,
}

impl UnsubAck {
    pub(crate) fn read(mut buf: Bytes, protocol: Protocol) -> Result<UnsubAck, Error> {
        let pkid = read_pkid(&mut buf)?;
        let mut ack = UnsubAck { pkid, codes: Vec::new(), properties: Props::default() };
        match protocol {
            Protocol::V4 => expect_end(&buf)?,
            Protocol::V5 => {
                ack.properties = Props::read(&mut buf, PacketKind::UnsubAck)?;
                if buf.is_empty() {
                    return Err(Error::Protocol("UNSUBACK without reason codes"));
                }
                ack.codes = buf.to_vec();
            }
        }
        Ok(ack)
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        match protocol {
            Protocol::V4 => 2,
            Protocol::V5 => 2 + self.properties.wire_len() + self.codes.len(),
        }
    }

    /// Encoded size of the whole frame.
    pub fn size(&self, protocol: Protocol) -> usize {
        frame_size(self.remaining_len(protocol))
    }

    /// Appends the encoding to `out`, returning the number of bytes written.
    pub fn write(&self, protocol: Protocol, out: &mut BytesMut) -> Result<usize, Error> {
        guarded(out, |out| {
            write_fixed_header(out, 0xb0, self.remaining_len(protocol))?;
            write_u16(out, self.pkid);
            if protocol == Protocol::V5 {
                self.properties.write(out)?;
                out.put_slice(&self.codes);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode() {
        let v4 = UnsubAck::read(Bytes::from_static(&[0, 3]), Protocol::V4).unwrap();
        assert_eq!((v4.pkid, v4.codes.len()), (3, 0));
        assert!(matches!(UnsubAck::read(Bytes::from_static(&[0, 3, 0]), Protocol::V4), Err(Error::Malformed(_))));
        let v5 = UnsubAck::read(Bytes::from_static(&[0, 3, 0, 0, 0x11]), Protocol::V5).unwrap();
        assert_eq!(v5.codes, vec![0, 0x11]);
        assert!(matches!(UnsubAck::read(Bytes::from_static(&[0, 3, 0]), Protocol::V5), Err(Error::Protocol(_))));
    }
}
