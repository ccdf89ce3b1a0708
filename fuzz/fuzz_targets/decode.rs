//! Fuzz target `decode`: arbitrary bytes through [`proto::read`], as the broker's read loop
//! feeds them, for both protocol versions.
//!
//! For each version the input is decoded twice: once from a buffer holding all of it, and
//! once as it would arrive from a socket, in chunks whose size the input's first byte picks.
//! Both must yield the same packets and end the same way. Along the way it checks what
//! `read` promises its caller:
//! - it never panics, and every `Ok` consumes exactly one frame of `frame_len` bytes, so the
//!   loop always ends;
//! - `Incomplete(n)` consumes nothing and asks for at least one byte; when the fixed header
//!   is complete, `n` is exactly what the frame still lacks;
//! - any other error consumes nothing (a bad fixed header) or exactly one frame (a bad body).
//!
//! Unbounded allocation is caught by libFuzzer's `-malloc_limit_mb` (see the README).

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{frame_len, read, BytesMut, Error, Packet, Protocol};

/// The connection's maximum packet size: small enough that a fuzzed remaining length is
/// refused from the fixed header, as the broker refuses one, large enough for every seed.
const MAX_PACKET_SIZE: usize = 16 * 1024;

/// How a run of `read` calls over a buffer ended.
#[derive(Debug, PartialEq)]
enum End {
    /// Out of bytes: the buffer holds this many bytes of an unfinished frame.
    Incomplete(usize),
    /// A protocol violation, which closes the connection.
    Failed(Error),
}

/// One `read` with its contract checked. `Err(None)` means Incomplete.
fn read_checked(buf: &mut BytesMut, protocol: Protocol) -> Result<Packet, Option<Error>> {
    let before = buf.len();
    let frame = frame_len(buf, MAX_PACKET_SIZE);
    let result = read(buf, protocol, MAX_PACKET_SIZE);
    let consumed = before - buf.len();
    match &result {
        Ok(_) => assert_eq!(frame, Ok(Some(consumed)), "Ok must consume exactly one frame"),
        Err(Error::Incomplete(n)) => {
            assert_eq!(consumed, 0, "Incomplete consumed {consumed} bytes");
            assert!(*n > 0, "Incomplete(0)");
            if let Ok(Some(total)) = frame {
                assert_eq!(before + n, total, "Incomplete({n}) with {before} of a {total} byte frame");
            }
        }
        Err(e) => {
            assert!(consumed == 0 || frame == Ok(Some(consumed)), "{e:?} consumed {consumed} of {frame:?}");
            // Every decode error has a reason code the broker can answer with.
            assert!(e.reason_code() >= 0x80, "{e:?} has reason code {:#04x}", e.reason_code());
        }
    }
    result.map_err(|e| match e {
        Error::Incomplete(_) => None,
        e => Some(e),
    })
}

/// Decodes every complete frame in `buf`, as the broker's read loop does.
fn drain(buf: &mut BytesMut, protocol: Protocol, packets: &mut Vec<Packet>) -> Option<Error> {
    loop {
        match read_checked(buf, protocol) {
            Ok(packet) => packets.push(packet),
            Err(None) => return None,
            Err(Some(e)) => return Some(e),
        }
    }
}

/// All of `data` in one buffer.
fn whole(data: &[u8], protocol: Protocol) -> (Vec<Packet>, End) {
    let mut buf = BytesMut::from(data);
    let mut packets = Vec::new();
    let end = match drain(&mut buf, protocol, &mut packets) {
        Some(e) => End::Failed(e),
        None => End::Incomplete(buf.len()),
    };
    (packets, end)
}

/// `data` arriving `chunk` bytes at a time, decoded after each arrival.
fn streamed(data: &[u8], protocol: Protocol, chunk: usize) -> (Vec<Packet>, End) {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        if let Some(e) = drain(&mut buf, protocol, &mut packets) {
            return (packets, End::Failed(e));
        }
    }
    (packets, End::Incomplete(buf.len()))
}

fuzz_target!(|data: &[u8]| {
    let chunk = 1 + usize::from(data.first().copied().unwrap_or(0) % 16);
    for protocol in [Protocol::V4, Protocol::V5] {
        let at_once = whole(data, protocol);
        let in_chunks = streamed(data, protocol, chunk);
        assert_eq!(at_once, in_chunks, "{protocol:?}: decoding in {chunk} byte chunks differs");
    }
});
