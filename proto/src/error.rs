//! The codec's single error type, [`Error`], and its mapping onto MQTT 5.0 reason codes
//! ([`Error::reason_code`]), so the broker can answer a bad packet with the right CONNACK or
//! DISCONNECT reason before closing the connection.

use crate::reason;

/// Everything that can go wrong while decoding or encoding a packet.
///
/// Decode errors other than [`Error::Incomplete`] mean the peer broke the protocol and the
/// connection should be closed (after a CONNACK/DISCONNECT carrying [`Error::reason_code`]
/// where the spec asks for one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not enough bytes yet; at least this many more are needed. Nothing was consumed.
    #[error("incomplete packet: {0} more bytes needed")]
    Incomplete(usize),
    /// Remaining length (from the fixed header, checked BEFORE the body is buffered) exceeds the limit.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge { size: usize, max: usize },
    /// The bytes do not form a valid packet (reason 0x81).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The packet is well formed but breaks a protocol rule (reason 0x82).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// CONNECT named a protocol other than MQTT 3.1 ("MQIsdp", level 3), 3.1.1 or 5.0
    /// ("MQTT", level 4 or 5): the level byte it named. Answered with 0x84 in the 5.0 form
    /// (level 5 and up), return code 1 in the 3.1.1 form (below).
    #[error("unsupported protocol version {0}")]
    UnsupportedProtocolVersion(u8),
    /// Wildcards in a PUBLISH (or will) topic, or an empty V4 topic (0x90).
    #[error("invalid topic name")]
    TopicNameInvalid,
    /// Encode only: a string or binary field longer than 65535 bytes.
    #[error("string of {0} bytes exceeds 65535")]
    StringTooLong(usize),
    /// Encode only: the remaining length would exceed 268435455 bytes.
    #[error("packet of {0} bytes exceeds the 268435455 byte limit")]
    PayloadTooLarge(usize),
}

impl Error {
    /// MQTT 5.0 reason code for this error (Incomplete -> none, i.e. 0x81 if asked).
    ///
    /// The encode-only errors map to 0x83 (implementation specific error) for
    /// [`Error::StringTooLong`] and 0x95 (packet too large) for [`Error::PayloadTooLarge`].
    pub fn reason_code(&self) -> u8 {
        match self {
            Error::Incomplete(_) | Error::Malformed(_) => reason::MALFORMED_PACKET,
            Error::PacketTooLarge { .. } | Error::PayloadTooLarge(_) => reason::PACKET_TOO_LARGE,
            Error::Protocol(_) => reason::PROTOCOL_ERROR,
            Error::UnsupportedProtocolVersion(_) => reason::UNSUPPORTED_PROTOCOL_VERSION,
            Error::TopicNameInvalid => reason::TOPIC_NAME_INVALID,
            Error::StringTooLong(_) => reason::IMPLEMENTATION_SPECIFIC_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes() {
        assert_eq!(Error::Malformed("x").reason_code(), 0x81);
        assert_eq!(Error::Incomplete(3).reason_code(), 0x81);
        assert_eq!(Error::Protocol("x").reason_code(), 0x82);
        assert_eq!(Error::UnsupportedProtocolVersion(3).reason_code(), 0x84);
        assert_eq!(Error::TopicNameInvalid.reason_code(), 0x90);
        assert_eq!(Error::PacketTooLarge { size: 10, max: 5 }.reason_code(), 0x95);
        assert_eq!(Error::PayloadTooLarge(1 << 30).reason_code(), 0x95);
        assert_eq!(Error::StringTooLong(70_000).reason_code(), 0x83);
    }
}
