//! AUTH (MQTT 5.0 section 3.15): extended authentication exchange. MQTT 3.1.1 has no AUTH:
//! packet type 15 is Malformed on a V4 connection and encoding AUTH for V4 is a Protocol
//! error.
//!
//! Decode: remaining length 0 means reason 0 (success) and no properties; 1 is accepted as a
//! reason code without properties; more means reason code and properties (the AUTH set);
//! trailing bytes are Malformed.
//!
//! Encode: reason 0 and no properties write remaining length 0, anything else writes the
//! reason code and the property length.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{expect_end, frame_size, guarded, read_u8, write_fixed_header};
use crate::properties::{PacketKind, Props};
use crate::{Error, Protocol};

/// AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// 0x00 success, 0x18 continue authentication, 0x19 re-authenticate.
    pub reason: u8,
    /// AUTH properties: authentication method and data, reason string, user properties.
    pub properties: Props,
}

impl Auth {
    pub(crate) fn read(mut buf: Bytes) -> Result<Auth, Error> {
        let mut auth = Auth { reason: 0, properties: Props::default() };
        if !buf.is_empty() {
            auth.reason = read_u8(&mut buf)?;
            if !buf.is_empty() {
                auth.properties = Props::read(&mut buf, PacketKind::Auth)?;
            }
        }
        expect_end(&buf)?;
        Ok(auth)
    }

    fn remaining_len(&self) -> usize {
        if self.reason == 0 && self.properties.is_empty() {
            0
        } else {
            1 + self.properties.wire_len()
        }
    }

    /// Encoded size of the whole frame (AUTH only exists in V5).
    pub fn size(&self, _protocol: Protocol) -> usize {
        frame_size(self.remaining_len())
    }

    /// Appends the encoding to `out`, returning the number of bytes written.
    /// Errors: Protocol for V4, which has no AUTH packet.
    pub fn write(&self, protocol: Protocol, out: &mut BytesMut) -> Result<usize, Error> {
        if protocol == Protocol::V4 {
            return Err(Error::Protocol("AUTH does not exist in MQTT 3.1.1"));
        }
        guarded(out, |out| {
            let len = self.remaining_len();
            write_fixed_header(out, 0xf0, len)?;
            if len > 0 {
                out.put_u8(self.reason);
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
        let read = |b: &'static [u8]| Auth::read(Bytes::from_static(b));
        assert_eq!(read(&[]).map(|a| a.reason), Ok(0));
        assert_eq!(read(&[0x18]).map(|a| a.reason), Ok(0x18));
        let a = read(&[0x19, 5, 0x15, 0, 2, b'm', b'1']).unwrap();
        assert_eq!(a.reason, 0x19);
        assert_eq!(a.properties.authentication_method.as_deref(), Some("m1"));
        assert!(matches!(read(&[0x18, 0, 1]), Err(Error::Malformed(_))));
        assert!(matches!(read(&[0x18, 2, 0x24, 1]), Err(Error::Malformed(_))));

        let mut out = BytesMut::new();
        a.write(Protocol::V5, &mut out).unwrap();
        assert_eq!(&out.split()[..], &[0xf0, 7, 0x19, 5, 0x15, 0, 2, b'm', b'1']);
        let cont = Auth { reason: 0x18, properties: Props::default() };
        cont.write(Protocol::V5, &mut out).unwrap();
        assert_eq!(&out.split()[..], &[0xf0, 2, 0x18, 0]);
        assert!(matches!(cont.write(Protocol::V4, &mut out), Err(Error::Protocol(_))));
        assert!(out.is_empty());
    }
}
