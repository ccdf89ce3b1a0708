//! Wire primitives shared by every packet: the variable byte integer (remaining length,
//! property length, subscription identifier), big-endian u16/u32, UTF-8 strings and binary
//! data (both prefixed by a u16 length), and the fixed header.
//!
//! Readers work on a [`Bytes`] holding the rest of one frame: running out of bytes inside a
//! frame is [`Error::Malformed`] (the frame length is already known), never `Incomplete`.
//! Binary readers return zero-copy slices of that frame; string readers validate and copy.
//!
//! Writers append to a [`BytesMut`] and refuse, with [`Error::StringTooLong`], any string or
//! binary field longer than 65535 bytes instead of truncating its length prefix.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::Error;

/// Largest value a variable byte integer (4 bytes) can hold.
pub(crate) const MAX_VARINT: usize = 268_435_455;
/// Longest string or binary field (u16 length prefix).
pub(crate) const MAX_STRING_LEN: usize = 65_535;

/// Parses a variable byte integer from the front of a buffer that may be incomplete.
///
/// Returns `Ok(None)` when the buffer ends before the last byte of the integer,
/// `Ok(Some((value, bytes_used)))` otherwise. A fourth byte with its continuation bit set
/// is Malformed: the integer would need a fifth byte.
pub(crate) fn parse_varint(buf: &[u8]) -> Result<Option<(usize, usize)>, Error> {
    let mut value = 0usize;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // A last byte of 0 after a continuation is a longer encoding than needed
            // (e.g. 0x81 0x00 for 1), which MQTT 5.0 forbids [MQTT-1.5.5-1].
            if i > 0 && byte == 0 {
                return Err(Error::Malformed("variable byte integer not in its shortest form"));
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        Err(Error::Malformed("variable byte integer longer than 4 bytes"))
    } else {
        Ok(None)
    }
}

/// Number of bytes the variable byte integer encoding of `value` takes.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends `value` as a variable byte integer; values above 268435455 are PayloadTooLarge.
pub(crate) fn write_varint(out: &mut BytesMut, value: usize) -> Result<(), Error> {
    if value > MAX_VARINT {
        return Err(Error::PayloadTooLarge(value));
    }
    let mut rest = value;
    loop {
        // Truncation is intended: only the low 7 bits are kept.
        let mut byte = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if rest == 0 {
            return Ok(());
        }
    }
}

/// Appends a fixed header: the first byte (type and flags) and the remaining length.
pub(crate) fn write_fixed_header(out: &mut BytesMut, first_byte: u8, remaining: usize) -> Result<(), Error> {
    if remaining > MAX_VARINT {
        return Err(Error::PayloadTooLarge(remaining));
    }
    out.reserve(1 + varint_len(remaining) + remaining);
    out.put_u8(first_byte);
    write_varint(out, remaining)
}

/// Total frame length (fixed header included) for a packet body of `remaining` bytes.
pub(crate) fn frame_size(remaining: usize) -> usize {
    1 + varint_len(remaining) + remaining
}

/// Runs `encode` against `out`, undoing any partial output if it fails.
/// Returns the number of bytes appended.
pub(crate) fn guarded(
    out: &mut BytesMut,
    encode: impl FnOnce(&mut BytesMut) -> Result<(), Error>,
) -> Result<usize, Error> {
    let start = out.len();
    match encode(out) {
        Ok(()) => Ok(out.len() - start),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn need(buf: &Bytes, n: usize) -> Result<(), Error> {
    if buf.len() < n {
        Err(Error::Malformed("field runs past the end of the packet"))
    } else {
        Ok(())
    }
}

/// Reads one byte.
pub(crate) fn read_u8(buf: &mut Bytes) -> Result<u8, Error> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

/// Reads a big-endian two byte integer.
pub(crate) fn read_u16(buf: &mut Bytes) -> Result<u16, Error> {
    need(buf, 2)?;
    Ok(buf.get_u16())
}

/// Reads a big-endian four byte integer.
pub(crate) fn read_u32(buf: &mut Bytes) -> Result<u32, Error> {
    need(buf, 4)?;
    Ok(buf.get_u32())
}

/// Reads a variable byte integer that must lie entirely inside the frame.
pub(crate) fn read_varint(buf: &mut Bytes) -> Result<usize, Error> {
    match parse_varint(buf)? {
        Some((value, used)) => {
            buf.advance(used);
            Ok(value)
        }
        None => Err(Error::Malformed("variable byte integer runs past the end of the packet")),
    }
}

/// Reads a packet identifier, which must not be 0.
pub(crate) fn read_pkid(buf: &mut Bytes) -> Result<u16, Error> {
    match read_u16(buf)? {
        0 => Err(Error::Protocol("packet identifier 0")),
        pkid => Ok(pkid),
    }
}

/// Reads binary data: a u16 length and that many bytes (zero-copy).
pub(crate) fn read_binary(buf: &mut Bytes) -> Result<Bytes, Error> {
    let len = usize::from(read_u16(buf)?);
    need(buf, len)?;
    Ok(buf.split_to(len))
}

/// Checks the spec's rules for a UTF-8 encoded string: well-formed UTF-8 (which excludes
/// surrogates) and no U+0000.
pub(crate) fn check_utf8(raw: &[u8]) -> Result<&str, Error> {
    let s = std::str::from_utf8(raw).map_err(|_| Error::Malformed("invalid UTF-8 string"))?;
    if raw.contains(&0) {
        return Err(Error::Malformed("string contains U+0000"));
    }
    Ok(s)
}

/// Reads a UTF-8 string into an owned `String`.
pub(crate) fn read_string(buf: &mut Bytes) -> Result<String, Error> {
    let raw = read_binary(buf)?;
    Ok(check_utf8(&raw)?.to_owned())
}

/// Fails with Malformed if bytes are left over after all of a packet's fields were read.
pub(crate) fn expect_end(buf: &Bytes) -> Result<(), Error> {
    if buf.is_empty() {
        Ok(())
    } else {
        Err(Error::Malformed("unexpected bytes after the end of the packet"))
    }
}

/// Appends a big-endian two byte integer.
pub(crate) fn write_u16(out: &mut BytesMut, value: u16) {
    out.put_u16(value);
}

/// Appends binary data with its u16 length prefix; longer than 65535 is StringTooLong.
pub(crate) fn write_binary(out: &mut BytesMut, data: &[u8]) -> Result<(), Error> {
    if data.len() > MAX_STRING_LEN {
        return Err(Error::StringTooLong(data.len()));
    }
    out.put_u16(data.len() as u16);
    out.put_slice(data);
    Ok(())
}

/// Appends a UTF-8 string with its u16 length prefix; longer than 65535 is StringTooLong.
pub(crate) fn write_string(out: &mut BytesMut, s: &str) -> Result<(), Error> {
    write_binary(out, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries() {
        for value in [0usize, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MAX_VARINT] {
            let mut out = BytesMut::new();
            write_varint(&mut out, value).unwrap();
            assert_eq!(out.len(), varint_len(value), "length of {value}");
            assert_eq!(parse_varint(&out).unwrap(), Some((value, out.len())));
            // Every strict prefix is incomplete.
            for cut in 0..out.len() {
                assert_eq!(parse_varint(&out[..cut]).unwrap(), None);
            }
        }
    }

    #[test]
    fn varint_too_large() {
        let mut out = BytesMut::new();
        assert_eq!(write_varint(&mut out, MAX_VARINT + 1), Err(Error::PayloadTooLarge(MAX_VARINT + 1)));
        assert!(matches!(parse_varint(&[0xff, 0xff, 0xff, 0xff]), Err(Error::Malformed(_))));
        assert!(matches!(parse_varint(&[0x80, 0x80, 0x80, 0x80, 0x01]), Err(Error::Malformed(_))));
    }

    #[test]
    fn strings() {
        let mut out = BytesMut::new();
        write_string(&mut out, "héllo").unwrap();
        let mut buf = out.freeze();
        assert_eq!(read_string(&mut buf).unwrap(), "héllo");
        assert!(buf.is_empty());

        let mut bad = Bytes::from_static(&[0x00, 0x02, 0xc3, 0x28]);
        assert!(matches!(read_string(&mut bad), Err(Error::Malformed(_))));
        let mut nul = Bytes::from_static(&[0x00, 0x01, 0x00]);
        assert!(matches!(read_string(&mut nul), Err(Error::Malformed(_))));
        // UTF-8 encoded surrogate U+D800 is not allowed.
        let mut surrogate = Bytes::from_static(&[0x00, 0x03, 0xed, 0xa0, 0x80]);
        assert!(matches!(read_string(&mut surrogate), Err(Error::Malformed(_))));
        let mut short = Bytes::from_static(&[0x00, 0x05, b'a']);
        assert!(matches!(read_binary(&mut short), Err(Error::Malformed(_))));

        let long = "x".repeat(MAX_STRING_LEN + 1);
        let mut out = BytesMut::new();
        assert_eq!(write_string(&mut out, &long), Err(Error::StringTooLong(MAX_STRING_LEN + 1)));
        let max = "x".repeat(MAX_STRING_LEN);
        write_string(&mut out, &max).unwrap();
        assert_eq!(out.len(), MAX_STRING_LEN + 2);
    }

    #[test]
    fn guarded_rolls_back() {
        let mut out = BytesMut::from(&b"keep"[..]);
        let r = guarded(&mut out, |o| {
            o.put_slice(b"partial");
            Err(Error::StringTooLong(1))
        });
        assert_eq!(r, Err(Error::StringTooLong(1)));
        assert_eq!(&out[..], b"keep");
        assert_eq!(guarded(&mut out, |o| write_string(o, "ab")), Ok(4));
    }
}
