//! A pure MQTT 3.1.1 and 5.0 codec for RingMQ: no I/O, no async runtime.
//!
//! Bytes go in through [`read`], which decodes one packet from the front of a [`BytesMut`]
//! and splits its frame off; packets go out through [`Packet::write`], which appends the
//! encoding to a [`BytesMut`]. Decoded `Bytes` fields (PUBLISH topic and payload, binary
//! properties, will payload, password) are zero-copy slices of the received frame.
//!
//! # Decode loop
//!
//! ```
//! use proto::{read, Error, Packet, Protocol, BytesMut};
//!
//! // Bytes as they arrive from a socket: a PINGREQ, then the first half of a PUBLISH.
//! let mut rx = BytesMut::from(&[0xc0, 0x00, 0x30, 0x07, 0x00, 0x03][..]);
//! let max_packet_size = 1 << 20;
//! let mut packets = Vec::new();
//! loop {
//!     match read(&mut rx, Protocol::V4, max_packet_size) {
//!         Ok(packet) => packets.push(packet),
//!         // Not a whole frame yet: nothing was consumed; read more bytes and retry.
//!         Err(Error::Incomplete(_)) => break,
//!         // Anything else is a protocol violation: answer with e.reason_code() and close.
//!         Err(e) => panic!("closing connection: {e} (reason {:#04x})", e.reason_code()),
//!     }
//! }
//! assert_eq!(packets, vec![Packet::PingReq]);
//! assert_eq!(rx.len(), 4);
//!
//! // The rest of the PUBLISH arrives.
//! rx.extend_from_slice(b"a/bhi");
//! let Ok(Packet::Publish(publish)) = read(&mut rx, Protocol::V4, max_packet_size) else {
//!     panic!("expected a PUBLISH");
//! };
//! assert_eq!(&publish.topic[..], b"a/b");
//! assert_eq!(&publish.payload[..], b"hi");
//! assert!(rx.is_empty());
//!
//! // Encoding appends to an output buffer.
//! let mut tx = BytesMut::new();
//! let written = Packet::Publish(publish).write(Protocol::V4, &mut tx)?;
//! assert_eq!(written, 9);
//! assert_eq!(&tx[..], b"\x30\x07\x00\x03a/bhi");
//! # Ok::<(), Error>(())
//! ```
//!
//! # Framing
//!
//! [`frame_len`] tells a reader how long the next frame is from its fixed header alone, and
//! rejects a frame larger than the connection's maximum packet size before its body is
//! buffered. [`read`] applies the same check.
//!
//! # Versions
//!
//! The connection's [`Protocol`] is passed to every call: it decides whether properties and
//! reason codes are on the wire. A CONNECT names its own version and is decoded whatever
//! the `protocol` argument says; encoding a CONNECT uses [`Connect::protocol`]. Fields that
//! MQTT 3.1.1 cannot carry (properties, ack reason codes, UNSUBACK codes) are ignored when
//! encoding for [`Protocol::V4`].

#![forbid(unsafe_code)]

mod ack;
mod auth;
mod codec;
mod connack;
mod connect;
mod disconnect;
mod error;
mod ping;
mod properties;
mod publish;
pub mod reason;
mod suback;
mod subscribe;
pub mod topic;
mod unsuback;
mod unsubscribe;

use bytes::Buf;
pub use bytes::{Bytes, BytesMut};

pub use ack::{Ack, AckKind};
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, LastWill};
pub use disconnect::Disconnect;
pub use error::Error;
pub use properties::{Properties, Props};
pub use publish::Publish;
pub use suback::SubAck;
pub use subscribe::{Subscribe, SubscribeFilter};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

/// The MQTT version spoken on a connection.
///
/// MQTT 3.1 (level 3, name "MQIsdp") is spoken as [`Protocol::V4`]: a CONNECT says so in
/// [`Connect::mqtt31`], and its packets are otherwise those of 3.1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl Protocol {
    /// The protocol level byte of a CONNECT for this version.
    pub fn level(self) -> u8 {
        match self {
            Protocol::V4 => 4,
            Protocol::V5 => 5,
        }
    }
}

/// Quality of service of a message or subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0.
    AtMostOnce = 0,
    /// QoS 1.
    AtLeastOnce = 1,
    /// QoS 2.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a wire value 0..=2; None for anything else.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// One MQTT control packet.
// The variants are unboxed by design (a fixed public API); CONNECT is the largest.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (type 1).
    Connect(Connect),
    /// CONNACK (type 2).
    ConnAck(ConnAck),
    /// PUBLISH (type 3).
    Publish(Publish),
    /// PUBACK (type 4).
    PubAck(Ack),
    /// PUBREC (type 5).
    PubRec(Ack),
    /// PUBREL (type 6).
    PubRel(Ack),
    /// PUBCOMP (type 7).
    PubComp(Ack),
    /// SUBSCRIBE (type 8).
    Subscribe(Subscribe),
    /// SUBACK (type 9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (type 10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (type 11).
    UnsubAck(UnsubAck),
    /// PINGREQ (type 12).
    PingReq,
    /// PINGRESP (type 13).
    PingResp,
    /// DISCONNECT (type 14).
    Disconnect(Disconnect),
    /// AUTH (type 15, MQTT 5.0 only).
    Auth(Auth),
}

impl Packet {
    /// Append the encoding to `out`. Returns the number of bytes written.
    /// Errors: StringTooLong for any string/binary > 65535 bytes, PayloadTooLarge.
    ///
    /// On error nothing is left appended to `out`.
    pub fn write(&self, protocol: Protocol, out: &mut BytesMut) -> Result<usize, Error> {
        match self {
            Packet::Connect(p) => p.write(protocol, out),
            Packet::ConnAck(p) => p.write(protocol, out),
            Packet::Publish(p) => p.write(protocol, out),
            Packet::PubAck(p) => p.write(AckKind::PubAck, protocol, out),
            Packet::PubRec(p) => p.write(AckKind::PubRec, protocol, out),
            Packet::PubRel(p) => p.write(AckKind::PubRel, protocol, out),
            Packet::PubComp(p) => p.write(AckKind::PubComp, protocol, out),
            Packet::Subscribe(p) => p.write(protocol, out),
            Packet::SubAck(p) => p.write(protocol, out),
            Packet::Unsubscribe(p) => p.write(protocol, out),
            Packet::UnsubAck(p) => p.write(protocol, out),
            Packet::PingReq => ping::write_pingreq(out),
            Packet::PingResp => ping::write_pingresp(out),
            Packet::Disconnect(p) => p.write(protocol, out),
            Packet::Auth(p) => p.write(protocol, out),
        }
    }
    /// Size in bytes of the frame [`Packet::write`] would produce for `protocol`.
    pub fn size(&self, protocol: Protocol) -> usize {
        match self {
            Packet::Connect(p) => p.size(protocol),
            Packet::ConnAck(p) => p.size(protocol),
            Packet::Publish(p) => p.size(protocol),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => p.size(protocol),
            Packet::Subscribe(p) => p.size(protocol),
            Packet::SubAck(p) => p.size(protocol),
            Packet::Unsubscribe(p) => p.size(protocol),
            Packet::UnsubAck(p) => p.size(protocol),
            Packet::PingReq | Packet::PingResp => 2,
            Packet::Disconnect(p) => p.size(protocol),
            Packet::Auth(p) => p.size(protocol),
        }
    }
}

/// Parses the fixed header: Ok(None) if incomplete, else (header length, remaining length),
/// refusing a frame over `max_packet_size`.
fn fixed_header(buf: &[u8], max_packet_size: usize) -> Result<Option<(usize, usize)>, Error> {
    let Some(length_bytes) = buf.get(1..) else {
        return Ok(None);
    };
    let Some((remaining, used)) = codec::parse_varint(length_bytes)? else {
        return Ok(None);
    };
    let header = 1 + used;
    let size = header + remaining;
    if size > max_packet_size {
        return Err(Error::PacketTooLarge { size, max: max_packet_size });
    }
    Ok(Some((header, remaining)))
}

/// Total frame length (fixed header + remaining length) of the first frame in `buf`,
/// checking the limit from the fixed header alone. Ok(None) if the fixed header is incomplete.
///
/// Errors: PacketTooLarge when the frame would exceed `max_packet_size`, Malformed when the
/// remaining length needs a fifth byte.
pub fn frame_len(buf: &[u8], max_packet_size: usize) -> Result<Option<usize>, Error> {
    Ok(fixed_header(buf, max_packet_size)?.map(|(header, remaining)| header + remaining))
}

/// Checks the first byte of the fixed header: packet type and its flag bits.
fn check_first_byte(byte: u8, protocol: Protocol) -> Result<(), Error> {
    let flags = byte & 0x0f;
    match byte >> 4 {
        0 => Err(Error::Malformed("reserved packet type 0")),
        3 if (flags >> 1) & 0x03 == 3 => Err(Error::Malformed("PUBLISH QoS 3")),
        3 if flags & 0x0e == 0x08 => Err(Error::Malformed("PUBLISH QoS 0 with DUP set")),
        3 => Ok(()),
        6 | 8 | 10 if flags != 0b0010 => Err(Error::Malformed("fixed header flags must be 0010")),
        6 | 8 | 10 => Ok(()),
        15 if protocol == Protocol::V4 => Err(Error::Malformed("AUTH in MQTT 3.1.1")),
        _ if flags != 0 => Err(Error::Malformed("fixed header flags must be 0")),
        _ => Ok(()),
    }
}

/// Decode one packet from the front of `buf`. On success the frame's bytes are split off `buf`
/// (zero-copy: payload/topic/binary fields are `Bytes` slices of that frame).
/// On Err(Incomplete) nothing is consumed. `protocol` is the connection's version (a CONNECT is
/// decoded whatever `protocol` says, since it names its own version).
/// Fixed-header flag bits are validated (e.g. PUBREL/SUBSCRIBE/UNSUBSCRIBE must be 0b0010,
/// others 0; PUBLISH QoS 3 is malformed); reserved bits checked; packets a server never
/// receives (CONNACK, SUBACK ...) still decode (the broker itself rejects them) so the codec
/// serves clients too (loadgen).
///
/// Errors found in the fixed header (bad type or flags, PacketTooLarge, an over-long
/// remaining length) consume nothing. Once a whole frame is buffered it is split off `buf`
/// before its body is decoded, so a decode error consumes that frame. Any error other than
/// Incomplete means the connection should be closed.
pub fn read(buf: &mut BytesMut, protocol: Protocol, max_packet_size: usize) -> Result<Packet, Error> {
    let Some(&first) = buf.first() else {
        return Err(Error::Incomplete(2));
    };
    check_first_byte(first, protocol)?;
    let Some((header, remaining)) = fixed_header(buf, max_packet_size)? else {
        return Err(Error::Incomplete(1));
    };
    let total = header + remaining;
    if buf.len() < total {
        return Err(Error::Incomplete(total - buf.len()));
    }
    let mut body = buf.split_to(total).freeze();
    body.advance(header);
    decode(first, body, protocol)
}

/// Decodes the body of a frame whose first byte has been checked.
fn decode(first: u8, body: Bytes, protocol: Protocol) -> Result<Packet, Error> {
    Ok(match first >> 4 {
        1 => Packet::Connect(Connect::read(body)?),
        2 => Packet::ConnAck(ConnAck::read(body, protocol)?),
        3 => Packet::Publish(Publish::read(first, body, protocol)?),
        4 => Packet::PubAck(Ack::read(body, protocol)?),
        5 => Packet::PubRec(Ack::read(body, protocol)?),
        6 => Packet::PubRel(Ack::read(body, protocol)?),
        7 => Packet::PubComp(Ack::read(body, protocol)?),
        8 => Packet::Subscribe(Subscribe::read(body, protocol)?),
        9 => Packet::SubAck(SubAck::read(body, protocol)?),
        10 => Packet::Unsubscribe(Unsubscribe::read(body, protocol)?),
        11 => Packet::UnsubAck(UnsubAck::read(body, protocol)?),
        12 => {
            ping::read(&body)?;
            Packet::PingReq
        }
        13 => {
            ping::read(&body)?;
            Packet::PingResp
        }
        14 => Packet::Disconnect(Disconnect::read(body, protocol)?),
        15 => Packet::Auth(Auth::read(body)?),
        _ => return Err(Error::Malformed("reserved packet type 0")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_from_u8() {
        assert_eq!(QoS::from_u8(0), Some(QoS::AtMostOnce));
        assert_eq!(QoS::from_u8(1), Some(QoS::AtLeastOnce));
        assert_eq!(QoS::from_u8(2), Some(QoS::ExactlyOnce));
        assert_eq!(QoS::from_u8(3), None);
        assert!(QoS::AtMostOnce < QoS::ExactlyOnce);
    }

    #[test]
    fn frame_len_cases() {
        assert_eq!(frame_len(&[], 100), Ok(None));
        assert_eq!(frame_len(&[0x30], 100), Ok(None));
        assert_eq!(frame_len(&[0x30, 0x80], 1000), Ok(None));
        assert_eq!(frame_len(&[0xc0, 0x00], 100), Ok(Some(2)));
        assert_eq!(frame_len(&[0x30, 0x80, 0x01], 1000), Ok(Some(131)));
        // Exactly at the limit is fine, one over is not.
        assert_eq!(frame_len(&[0x30, 0x7f], 129), Ok(Some(129)));
        assert_eq!(frame_len(&[0x30, 0x7f], 128), Err(Error::PacketTooLarge { size: 129, max: 128 }));
    }

    #[test]
    fn read_incomplete_header() {
        let mut buf = BytesMut::new();
        assert_eq!(read(&mut buf, Protocol::V4, 100), Err(Error::Incomplete(2)));
        let mut buf = BytesMut::from(&[0x30][..]);
        assert_eq!(read(&mut buf, Protocol::V4, 100), Err(Error::Incomplete(1)));
        let mut buf = BytesMut::from(&[0x30, 0x05, 0x00][..]);
        assert_eq!(read(&mut buf, Protocol::V4, 100), Err(Error::Incomplete(4)));
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn read_bad_first_byte() {
        for (bytes, protocol) in [
            (&[0x00, 0x00][..], Protocol::V4),
            (&[0x36, 0x00], Protocol::V4),
            (&[0x38, 0x00], Protocol::V4),
            (&[0x60, 0x02, 0x00, 0x01], Protocol::V4),
            (&[0x80, 0x00], Protocol::V5),
            (&[0xa0, 0x00], Protocol::V5),
            (&[0x41, 0x02, 0x00, 0x01], Protocol::V4),
            (&[0xc1, 0x00], Protocol::V4),
            (&[0xe2, 0x00], Protocol::V5),
            (&[0xf0, 0x00], Protocol::V4),
        ] {
            let mut buf = BytesMut::from(bytes);
            assert!(matches!(read(&mut buf, protocol, 100), Err(Error::Malformed(_))), "{bytes:02x?}");
            assert_eq!(buf.len(), bytes.len(), "nothing consumed for {bytes:02x?}");
        }
    }

    #[test]
    fn read_consumes_one_frame() {
        let mut buf = BytesMut::from(&[0xc0, 0x00, 0xd0, 0x00, 0xe0][..]);
        assert_eq!(read(&mut buf, Protocol::V4, 100), Ok(Packet::PingReq));
        assert_eq!(read(&mut buf, Protocol::V4, 100), Ok(Packet::PingResp));
        assert_eq!(read(&mut buf, Protocol::V4, 100), Err(Error::Incomplete(1)));
        assert_eq!(&buf[..], &[0xe0]);
    }
}
