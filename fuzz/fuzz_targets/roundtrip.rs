//! Fuzz target `roundtrip`: every packet that decodes from arbitrary bytes must encode and
//! decode back to itself.
//!
//! For each protocol version the input is decoded frame by frame (as the broker does) and
//! each packet `p` is checked:
//! - `p.write(protocol)` succeeds (a decoded packet has no field the encoder may refuse),
//!   writes `p.size(protocol)` bytes, and reading those bytes gives `p` again and consumes
//!   them all; encoding that again gives the same bytes (the encoding is canonical);
//! - a PUBLISH's packet identifier sits at `pkid_offset`, and its property block survives
//!   `to_publish_block` / `from_publish_block` (how the broker stores it);
//! - encoding for the other version never panics, writes `size` bytes when it succeeds and
//!   leaves nothing behind when it fails, and what it writes decodes without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{read, BytesMut, Error, Packet, Props, Protocol, QoS};

/// The connection's maximum packet size on the first decode (see the `decode` target).
const MAX_PACKET_SIZE: usize = 16 * 1024;

/// Encodes `packet` for `protocol`, checking the size and the all-or-nothing output.
fn encode(packet: &Packet, protocol: Protocol) -> Result<BytesMut, Error> {
    let mut out = BytesMut::new();
    match packet.write(protocol, &mut out) {
        Ok(n) => {
            assert_eq!(n, out.len(), "{protocol:?}: write reported {n} bytes for {packet:?}");
            assert_eq!(n, packet.size(protocol), "{protocol:?}: size() disagrees with write for {packet:?}");
            Ok(out)
        }
        Err(e) => {
            assert!(out.is_empty(), "{protocol:?}: failed encode left {} bytes", out.len());
            Err(e)
        }
    }
}

fn check(packet: &Packet, protocol: Protocol) {
    let encoded = encode(packet, protocol).unwrap_or_else(|e| panic!("{protocol:?}: {e} encoding {packet:?}"));
    let mut again = encoded.clone();
    let decoded = read(&mut again, protocol, usize::MAX);
    assert_eq!(decoded.as_ref(), Ok(packet), "{protocol:?}: re-decode of {:02x?}", &encoded[..]);
    assert!(again.is_empty(), "{protocol:?}: {} bytes left after re-decode", again.len());
    let reencoded = encode(packet, protocol).expect("second encode");
    assert_eq!(encoded, reencoded, "{protocol:?}: encoding is not deterministic");

    if let Packet::Publish(publish) = packet {
        match publish.pkid_offset(protocol) {
            Some(at) => assert_eq!(&encoded[at..at + 2], &publish.pkid.to_be_bytes()),
            None => assert_eq!(publish.qos, QoS::AtMostOnce),
        }
        let block = publish.properties.to_publish_block().expect("a decoded property block encodes");
        assert_eq!(Props::from_publish_block(block).as_ref(), Ok(&publish.properties));
    }

    let other = match protocol {
        Protocol::V4 => Protocol::V5,
        Protocol::V5 => Protocol::V4,
    };
    if let Ok(mut bytes) = encode(packet, other) {
        // Fields the other version cannot carry are dropped, so only "no panic" is asked.
        let _ = read(&mut bytes, other, usize::MAX);
    }
}

fuzz_target!(|data: &[u8]| {
    for protocol in [Protocol::V4, Protocol::V5] {
        let mut buf = BytesMut::from(data);
        // Each Ok consumes a frame of at least two bytes, so this ends.
        while let Ok(packet) = read(&mut buf, protocol, MAX_PACKET_SIZE) {
            check(&packet, protocol);
        }
    }
});
