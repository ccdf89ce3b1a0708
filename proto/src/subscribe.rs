//! SUBSCRIBE (MQTT 3.1.1 section 3.8, MQTT 5.0 section 3.8): [`Subscribe`] and its
//! per-filter [`SubscribeFilter`] with the subscription options byte.
//!
//! Decode enforces: packet identifier 0 is Protocol; V5 properties from the SUBSCRIBE set
//! (at most one subscription identifier); at least one filter (Protocol); filters are valid
//! UTF-8 without U+0000 (Malformed); options QoS 3 is Malformed; in V4 only the QoS bits may
//! be set (Malformed); in V5 reserved bits 6 and 7 must be clear (Malformed), retain handling
//! 3 is Protocol and No Local on a shared subscription is Protocol.
//!
//! Filter syntax ([`crate::topic::valid_filter`]) is not checked here: the broker answers an
//! invalid filter with a SUBACK failure code for that filter.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{frame_size, guarded, read_pkid, read_string, read_u8, write_fixed_header, write_string, write_u16};
use crate::properties::{PacketKind, Props};
use crate::{Error, Protocol, QoS};

/// One topic filter of a SUBSCRIBE and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFilter {
    /// The topic filter (possibly `$share/{group}/{filter}`).
    pub filter: String,
    /// Maximum QoS.
    pub qos: QoS,
    /// V5: don't send this client's own publications back to it.
    pub no_local: bool,
    /// V5: keep the retain flag as published when forwarding.
    pub retain_as_published: bool,
    /// V5: 0 = send retained on subscribe, 1 = only for a new subscription, 2 = never.
    pub retain_handling: u8,
}

impl SubscribeFilter {
    /// A filter with the given QoS and default (V4-compatible) options.
    pub fn new(filter: impl Into<String>, qos: QoS) -> SubscribeFilter {
        SubscribeFilter { filter: filter.into(), qos, no_local: false, retain_as_published: false, retain_handling: 0 }
    }

    fn read(buf: &mut Bytes, protocol: Protocol) -> Result<SubscribeFilter, Error> {
        let filter = read_string(buf)?;
        let options = read_u8(buf)?;
        let reserved = match protocol {
            Protocol::V4 => 0xfc,
            Protocol::V5 => 0xc0,
        };
        if options & reserved != 0 {
            return Err(Error::Malformed("reserved subscription option bits set"));
        }
        let qos = QoS::from_u8(options & 0x03).ok_or(Error::Malformed("subscription maximum QoS 3"))?;
        let retain_handling = (options >> 4) & 0x03;
        if retain_handling == 3 {
            return Err(Error::Protocol("retain handling 3"));
        }
        let no_local = options & 0x04 != 0;
        if no_local && filter.starts_with("$share/") {
            return Err(Error::Protocol("no local on a shared subscription"));
        }
        Ok(SubscribeFilter { filter, qos, no_local, retain_as_published: options & 0x08 != 0, retain_handling })
    }

    fn options(&self, protocol: Protocol) -> u8 {
        let mut options = self.qos as u8;
        if protocol == Protocol::V5 {
            options |= (self.retain_handling & 0x03) << 4;
            if self.no_local {
                options |= 0x04;
            }
            if self.retain_as_published {
                options |= 0x08;
            }
        }
        options
    }
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier (never 0).
    pub pkid: u16,
    /// The filters, at least one.
    pub filters: Vec<SubscribeFilter>,
    /// SUBSCRIBE properties (V5): subscription identifier and user properties.
    pub properties: Props,
}

impl Subscribe {
    pub(crate) fn read(mut buf: Bytes, protocol: Protocol) -> Result<Subscribe, Error> {
        let pkid = read_pkid(&mut buf)?;
        let properties = match protocol {
            Protocol::V4 => Props::default(),
            Protocol::V5 => Props::read(&mut buf, PacketKind::Subscribe)?,
        };
        let mut filters = Vec::new();
        while !buf.is_empty() {
            filters.push(SubscribeFilter::read(&mut buf, protocol)?);
        }
        if filters.is_empty() {
            return Err(Error::Protocol("SUBSCRIBE without topic filters"));
        }
        Ok(Subscribe { pkid, filters, properties })
    }

    fn remaining_len(&self, protocol: Protocol) -> usize {
        let mut len = 2;
        if protocol == Protocol::V5 {
            len += self.properties.wire_len();
        }
        len + self.filters.iter().map(|f| 2 + f.filter.len() + 1).sum::<usize>()
    }

    /// Encoded size of the whole frame.
    pub fn size(&self, protocol: Protocol) -> usize {
        frame_size(self.remaining_len(protocol))
    }

    /// Appends the encoding to `out`, returning the number of bytes written.
    /// V5-only options are dropped when encoding for V4.
    pub fn write(&self, protocol: Protocol, out: &mut BytesMut) -> Result<usize, Error> {
        guarded(out, |out| {
            write_fixed_header(out, 0x82, self.remaining_len(protocol))?;
            write_u16(out, self.pkid);
            if protocol == Protocol::V5 {
                self.properties.write(out)?;
            }
            for filter in &self.filters {
                write_string(out, &filter.filter)?;
                out.put_u8(filter.options(protocol));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &'static [u8], protocol: Protocol) -> Result<Subscribe, Error> {
        Subscribe::read(Bytes::from_static(bytes), protocol)
    }

    #[test]
    fn options_v5() {
        let s = read(b"\x00\x01\x00\x00\x01a\x2e", Protocol::V5).unwrap();
        assert_eq!(
            s.filters,
            vec![SubscribeFilter {
                filter: "a".into(),
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: 2,
            }]
        );
        let mut out = BytesMut::new();
        s.write(Protocol::V5, &mut out).unwrap();
        assert_eq!(&out[2..], b"\x00\x01\x00\x00\x01a\x2e");
    }

    #[test]
    fn option_errors() {
        use Protocol::{V4, V5};
        let malformed = |r: Result<Subscribe, Error>| matches!(r, Err(Error::Malformed(_)));
        let protocol = |r: Result<Subscribe, Error>| matches!(r, Err(Error::Protocol(_)));
        assert!(malformed(read(b"\x00\x01\x00\x01a\x04", V4)), "V4 no local bit");
        assert!(malformed(read(b"\x00\x01\x00\x01a\x03", V4)), "QoS 3");
        assert!(malformed(read(b"\x00\x01\x00\x00\x01a\x40", V5)), "bit 6");
        assert!(malformed(read(b"\x00\x01\x00\x00\x01a\x80", V5)), "bit 7");
        assert!(protocol(read(b"\x00\x01\x00\x00\x01a\x30", V5)), "retain handling 3");
        assert!(protocol(read(b"\x00\x01\x00", V5)), "no filters");
        assert!(protocol(read(b"\x00\x01", V4)), "no filters");
        assert!(protocol(read(b"\x00\x00\x00\x01a\x00", V4)), "pkid 0");
        assert!(malformed(read(b"\x00\x01\x00\x01a", V4)), "missing options");
        assert!(protocol(read(b"\x00\x01\x00\x00\x0a$share/g/a\x04", V5)), "shared no local");
        let two_ids = b"\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00";
        assert!(protocol(read(two_ids, V5)), "two subscription ids");
    }
}
