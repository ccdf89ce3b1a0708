//! SUBACK (MQTT 3.1.1 section 3.9, MQTT 5.0 section 3.9): one return/reason code per
//! filter of the SUBSCRIBE being acknowledged.
//!
//! Decode enforces: packet identifier 0 is Protocol; V5 properties from the SUBACK set;
//! at least one code (Protocol). Code values are not checked.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{frame_size, guarded, read_pkid, write_fixed_header, write_u16};
use crate::properties::{PacketKind, Props};
use crate::{Error, Protocol};

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub pkid: u16,
    /// One code per filter: granted QoS, or a failure code (0x80 in V4).
    pub codes: Vec<u8>,
    /// SUBACK properties (V5): reason string and user properties.
    pub properties: Props,
}

impl SubAck {
    pub(crate) fn read(mut buf: Bytes, protocol: Protocol) -> Result<SubAck, Error> {
        let pkid = read_pkid(&mut buf)?;
        let properties = match protocol {
            Protocol::V4 => Props::default(),
            Protocol::V5 => Props::read(&mut buf, PacketKind::SubAck)?,
        };
        if buf.is_empty() {
            return Err(Error::Protocol("SUBACK without return codes"));
        }
        Ok(SubAck { pkid, codes: buf.to_vec(), properties })
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        let props = match protocol {
            Protocol::V4 => 0,
            Protocol::V5 => self.properties.wire_len(),
        };
        2 + props + self.codes.len()
    }

    /// Encoded size of the whole frame.
    pub fn size(&self, protocol: Protocol) -> usize {
        frame_size(self.remaining_len(protocol))
    }

    /// Appends the encoding to `out`, returning the number of bytes written.
    pub fn write(&self, protocol: Protocol, out: &mut BytesMut) -> Result<usize, Error> {
        guarded(out, |out| {
            write_fixed_header(out, 0x90, self.remaining_len(protocol))?;
            write_u16(out, self.pkid);
            if protocol == Protocol::V5 {
                self.properties.write(out)?;
            }
            out.put_slice(&self.codes);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode() {
        let s = SubAck::read(Bytes::from_static(&[0, 9, 0, 1, 0x80]), Protocol::V4).unwrap();
        assert_eq!(s.codes, vec![0, 1, 0x80]);
        let s = SubAck::read(Bytes::from_static(&[0, 9, 0, 2]), Protocol::V5).unwrap();
        assert_eq!(s.codes, vec![2]);
        assert!(matches!(SubAck::read(Bytes::from_static(&[0, 9, 0]), Protocol::V5), Err(Error::Protocol(_))));
        assert!(matches!(SubAck::read(Bytes::from_static(&[0, 9]), Protocol::V4), Err(Error::Protocol(_))));
    }
}
