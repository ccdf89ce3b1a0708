//! DISCONNECT (MQTT 3.1.1 section 3.14, MQTT 5.0 section 3.14).
//!
//! Decode: V4 has an empty body (anything else is Malformed). V5: remaining length 0 means
//! reason 0 (normal disconnection) and no properties; 1 means a reason code without
//! properties; more means reason code and properties (the DISCONNECT set); trailing bytes
//! are Malformed.
//!
//! Encode: V4 and V5 with reason 0 and no properties write remaining length 0; V5 with a
//! reason and no properties writes only the reason byte.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{expect_end, frame_size, guarded, read_u8, write_fixed_header};
use crate::properties::{PacketKind, Props};
use crate::{Error, Protocol};

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Reason code (V5; 0 when decoded from V4).
    pub reason: u8,
    /// DISCONNECT properties (V5).
    pub properties: Props,
}

impl Disconnect {
    /// A DISCONNECT with the given reason and no properties.
    pub fn new(reason: u8) -> Disconnect {
        Disconnect { reason, properties: Props::default() }
    }

    pub(crate) fn read(mut buf: Bytes, protocol: Protocol) -> Result<Disconnect, Error> {
        let mut disconnect = Disconnect::new(0);
        if protocol == Protocol::V5 && !buf.is_empty() {
            disconnect.reason = read_u8(&mut buf)?;
            if !buf.is_empty() {
                disconnect.properties = Props::read(&mut buf, PacketKind::Disconnect)?;
            }
        }
        expect_end(&buf)?;
        Ok(disconnect)
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        match protocol {
            Protocol::V4 => 0,
            Protocol::V5 if !self.properties.is_empty() => 1 + self.properties.wire_len(),
            Protocol::V5 if self.reason != 0 => 1,
            Protocol::V5 => 0,
        }
    }

    /// Encoded size of the whole frame.
    pub fn size(&self, protocol: Protocol) -> usize {
        frame_size(self.remaining_len(protocol))
    }

    /// Appends the encoding to `out`, returning the number of bytes written.
    pub fn write(&self, protocol: Protocol, out: &mut BytesMut) -> Result<usize, Error> {
        guarded(out, |out| {
            let len = self.remaining_len(protocol);
            write_fixed_header(out, 0xe0, len)?;
            if len >= 1 {
                out.put_u8(self.reason);
            }
            if len > 1 {
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
    fn forms() {
        let read = |b: &'static [u8], p| Disconnect::read(Bytes::from_static(b), p);
        assert_eq!(read(&[], Protocol::V4), Ok(Disconnect::new(0)));
        assert_eq!(read(&[], Protocol::V5), Ok(Disconnect::new(0)));
        assert_eq!(read(&[0x8e], Protocol::V5), Ok(Disconnect::new(0x8e)));
        assert_eq!(read(&[0x04, 0], Protocol::V5), Ok(Disconnect::new(0x04)));
        assert!(matches!(read(&[0], Protocol::V4), Err(Error::Malformed(_))));
        assert!(matches!(read(&[0, 0, 0], Protocol::V5), Err(Error::Malformed(_))));
        // Session expiry is allowed, topic alias is not.
        let d = read(&[0, 5, 0x11, 0, 0, 0, 9], Protocol::V5).unwrap();
        assert_eq!(d.properties.session_expiry_interval, Some(9));
        assert!(matches!(read(&[0, 3, 0x23, 0, 1], Protocol::V5), Err(Error::Malformed(_))));

        let mut out = BytesMut::new();
        Disconnect::new(0).write(Protocol::V5, &mut out).unwrap();
        assert_eq!(&out.split()[..], &[0xe0, 0]);
        Disconnect::new(0x8e).write(Protocol::V5, &mut out).unwrap();
        assert_eq!(&out.split()[..], &[0xe0, 1, 0x8e]);
        Disconnect::new(0x8e).write(Protocol::V4, &mut out).unwrap();
        assert_eq!(&out.split()[..], &[0xe0, 0]);
    }
}
