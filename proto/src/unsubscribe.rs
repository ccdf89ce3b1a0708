//! UNSUBSCRIBE (MQTT 3.1.1 section 3.10, MQTT 5.0 section 3.10).
//!
//! Decode enforces: packet identifier 0 is Protocol; V5 properties from the UNSUBSCRIBE set
//! (user properties only); at least one filter (Protocol); filters are valid UTF-8 without
//! U+0000 (Malformed). Filter syntax is the broker's call.

use bytes::{Bytes, BytesMut};

use crate::codec::{frame_size, guarded, read_pkid, read_string, write_fixed_header, write_string, write_u16};
use crate::properties::{PacketKind, Props};
use crate::{Error, Protocol};

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier (never 0).
    pub pkid: u16,
    /// The filters to remove, at least one.
    pub filters: Vec<String>,
    /// UNSUBSCRIBE properties (V5): user properties.
    pub properties: Props,
}

impl Unsubscribe {
    pub(crate) fn read(mut buf: Bytes, protocol: Protocol) -> Result<Unsubscribe, Error> {
        let pkid = read_pkid(&mut buf)?;
        let properties = match protocol {
            Protocol::V4 => Props::default(),
            Protocol::V5 => Props::read(&mut buf, PacketKind::Unsubscribe)?,
        };
        let mut filters = Vec::new();
        while !buf.is_empty() {
            filters.push(read_string(&mut buf)?);
        }
        if filters.is_empty() {
            return Err(Error::Protocol("UNSUBSCRIBE without topic filters"));
        }
        Ok(Unsubscribe { pkid, filters, properties })
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        let props = match protocol {
            Protocol::V4 => 0,
            Protocol::V5 => self.properties.wire_len(),
        };
        2 + props + self.filters.iter().map(|f| 2 + f.len()).sum::<usize>()
    }

    /// Encoded size of the whole frame.
    pub fn size(&self, protocol: Protocol) -> usize {
        frame_size(self.remaining_len(protocol))
    }

    /// Appends the encoding to `out`, returning the number of bytes written.
    pub fn write(&self, protocol: Protocol, out: &mut BytesMut) -> Result<usize, Error> {
        guarded(out, |out| {
            write_fixed_header(out, 0xa2, self.remaining_len(protocol))?;
            write_u16(out, self.pkid);
            if protocol == Protocol::V5 {
                self.properties.write(out)?;
            }
            for filter in &self.filters {
                write_string(out, filter)?;
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
        let u = Unsubscribe::read(Bytes::from_static(b"\x00\x02\x00\x01a\x00\x03b/#"), Protocol::V4).unwrap();
        assert_eq!(u.filters, vec!["a".to_string(), "b/#".to_string()]);
        assert!(matches!(
            Unsubscribe::read(Bytes::from_static(b"\x00\x02\x00"), Protocol::V5),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            Unsubscribe::read(Bytes::from_static(b"\x00\x02\x00\x05a"), Protocol::V4),
            Err(Error::Malformed(_))
        ));
        // Subscription identifier is not allowed in UNSUBSCRIBE: Malformed (5.0, 2.2.2.2).
        assert!(matches!(
            Unsubscribe::read(Bytes::from_static(b"\x00\x02\x02\x0b\x01\x00\x01a"), Protocol::V5),
            Err(Error::Malformed(_))
        ));
    }
}
