//! The on-disk record: a fixed 31-byte header written by hand, then topic, properties and
//! payload. Pure functions, no I/O; both logs and the benches use them.
//!
//! | at | field | type | meaning |
//! |---:|---|---|---|
//! | 0 | `len` | u32 LE | whole record length, header included |
//! | 4 | `crc` | u32 LE | CRC32C of bytes `8..len` (everything after this field) |
//! | 8 | `offset` | u64 LE | the record's offset in its log |
//! | 16 | `timestamp_ms` | u64 LE | milliseconds since the Unix epoch, as given to `append` |
//! | 24 | `flags` | u8 | bit 0 retain, bits 1-2 QoS (0..=2), bits 3-7 reserved (zero) |
//! | 25 | `topic_len` | u16 LE | topic bytes |
//! | 27 | `props_len` | u32 LE | property bytes (already-encoded MQTT 5 properties, or none) |
//! | 31 | topic, properties, payload | bytes | the payload takes the rest of `len` |
//!
//! [`decode`] borrows a [`RecordView`] from a byte slice after checking the length bounds
//! and the CRC. A slice that stops inside the record gives [`Error::Incomplete`] (a torn
//! tail); wrong lengths or a wrong CRC give [`Error::Corrupt`]. A record that fails either
//! is never handed out.

use bytes::{BufMut, Bytes};

use crate::error::{Corruption, Error, Result};

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 31;

/// Largest `len` the format accepts on decode, whatever the configured append bound: a
/// lowered `max_record_bytes` must not turn older, larger records into "corrupt" ones.
/// 1 GiB is far above MQTT's 256 MiB packet limit and far below `u32::MAX`.
pub const MAX_RECORD_LEN: usize = 1 << 30;

/// Flag bit: the PUBLISH had RETAIN set.
pub const RETAIN: u8 = 0x01;
/// Flag bits 1-2: the QoS of the PUBLISH.
pub const QOS_MASK: u8 = 0x06;
const QOS_SHIFT: u32 = 1;
const KNOWN_FLAGS: u8 = RETAIN | QOS_MASK;

/// Builds a flags byte from retain and QoS (0, 1 or 2; larger values are masked).
pub fn flags(retain: bool, qos: u8) -> u8 {
    u8::from(retain) | ((qos << QOS_SHIFT) & QOS_MASK)
}

/// Refuses reserved bits and QoS 3.
pub fn check_flags(flags: u8) -> Result<()> {
    if flags & !KNOWN_FLAGS != 0 || (flags & QOS_MASK) >> QOS_SHIFT == 3 {
        return Err(Error::InvalidFlags(flags));
    }
    Ok(())
}

/// Encoded length of a record with these field lengths.
pub fn encoded_len(topic_len: usize, props_len: usize, payload_len: usize) -> usize {
    HEADER_LEN + topic_len + props_len + payload_len
}

/// A record borrowed from a buffer (a mapped segment, a write buffer) or built from
/// borrowed parts for encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Offset in the log.
    pub offset: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Retain and QoS bits, see [`flags`].
    pub flags: u8,
    /// Topic name bytes.
    pub topic: &'a [u8],
    /// Encoded MQTT 5 properties, or empty.
    pub properties: &'a [u8],
    /// Application payload.
    pub payload: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// Bytes this record takes on disk.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self.topic.len(), self.properties.len(), self.payload.len())
    }

    /// The retain bit.
    pub fn retain(&self) -> bool {
        self.flags & RETAIN != 0
    }

    /// The QoS bits.
    pub fn qos(&self) -> u8 {
        (self.flags & QOS_MASK) >> QOS_SHIFT
    }

    /// Appends the encoding to `out` and returns its length. Checks the flags, the topic
    /// length (u16) and [`MAX_RECORD_LEN`]; a caller's tighter bound is the caller's job.
    pub fn encode<B: BufMut>(&self, out: &mut B) -> Result<usize> {
        check_flags(self.flags)?;
        let topic_len = u16::try_from(self.topic.len())
            .map_err(|_| Error::KeyTooLong { len: self.topic.len(), max: u16::MAX as usize })?;
        let len = self.encoded_len();
        if len > MAX_RECORD_LEN {
            return Err(Error::RecordTooLarge { size: len, max: MAX_RECORD_LEN });
        }
        // Both fit: len <= MAX_RECORD_LEN < u32::MAX.
        let props_len = self.properties.len() as u32;
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        header[8..16].copy_from_slice(&self.offset.to_le_bytes());
        header[16..24].copy_from_slice(&self.timestamp_ms.to_le_bytes());
        header[24] = self.flags;
        header[25..27].copy_from_slice(&topic_len.to_le_bytes());
        header[27..31].copy_from_slice(&props_len.to_le_bytes());
        let mut crc = crc32c::crc32c(&header[8..]);
        crc = crc32c::crc32c_append(crc, self.topic);
        crc = crc32c::crc32c_append(crc, self.properties);
        crc = crc32c::crc32c_append(crc, self.payload);
        header[4..8].copy_from_slice(&crc.to_le_bytes());
        out.put_slice(&header);
        out.put_slice(self.topic);
        out.put_slice(self.properties);
        out.put_slice(self.payload);
        Ok(len)
    }

    /// Copies the record into an owned [`Record`]: one allocation holding topic,
    /// properties and payload, which the three `Bytes` share.
    pub fn to_record(&self) -> Record {
        let mut body = Vec::with_capacity(self.topic.len() + self.properties.len() + self.payload.len());
        body.extend_from_slice(self.topic);
        body.extend_from_slice(self.properties);
        body.extend_from_slice(self.payload);
        let body = Bytes::from(body);
        let t = self.topic.len();
        let p = t + self.properties.len();
        Record {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            flags: self.flags,
            topic: body.slice(..t),
            properties: body.slice(t..p),
            payload: body.slice(p..),
        }
    }
}

/// An owned record, as reads hand it out. Cloning it clones three `Bytes` handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Offset in the log.
    pub offset: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Retain and QoS bits, see [`flags`].
    pub flags: u8,
    /// Topic name bytes.
    pub topic: Bytes,
    /// Encoded MQTT 5 properties, or empty.
    pub properties: Bytes,
    /// Application payload.
    pub payload: Bytes,
}

impl Record {
    /// Borrows the record as a view (for encoding or comparing).
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            flags: self.flags,
            topic: &self.topic,
            properties: &self.properties,
            payload: &self.payload,
        }
    }

    /// Bytes this record takes on disk (and the size the memory log charges for it).
    pub fn encoded_len(&self) -> usize {
        self.view().encoded_len()
    }

    /// The retain bit.
    pub fn retain(&self) -> bool {
        self.flags & RETAIN != 0
    }

    /// The QoS bits.
    pub fn qos(&self) -> u8 {
        (self.flags & QOS_MASK) >> QOS_SHIFT
    }
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}

pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

pub(crate) fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The `len` and `offset` fields of a header, unchecked; `None` if `buf` is shorter than a
/// header. Recovery uses it to look for surviving records past a damaged stretch.
pub(crate) fn peek(buf: &[u8]) -> Option<(u32, u64)> {
    (buf.len() >= HEADER_LEN).then(|| (u32_at(buf, 0), u64_at(buf, 8)))
}

/// Decodes the record at the front of `buf`, which may hold more after it.
///
/// Checks, in order: a length field is present, it lies in `HEADER_LEN..=MAX_RECORD_LEN`,
/// the whole record is present (else [`Error::Incomplete`]), the CRC matches, and topic
/// plus properties fit in the length.
pub fn decode(buf: &[u8]) -> Result<RecordView<'_>> {
    if buf.len() < 4 {
        return Err(Error::Incomplete { needed: HEADER_LEN - buf.len() });
    }
    let len_field = u32_at(buf, 0);
    let len = len_field as usize;
    if !(HEADER_LEN..=MAX_RECORD_LEN).contains(&len) {
        return Err(Error::Corrupt(Corruption::BadLength(len_field)));
    }
    if buf.len() < len {
        return Err(Error::Incomplete { needed: len - buf.len() });
    }
    let rec = &buf[..len];
    let stored = u32_at(rec, 4);
    let computed = crc32c::crc32c(&rec[8..]);
    if stored != computed {
        return Err(Error::Corrupt(Corruption::BadCrc { stored, computed }));
    }
    let topic_len = u16_at(rec, 25) as usize;
    let props_len = u32_at(rec, 27) as usize;
    let body = &rec[HEADER_LEN..];
    if topic_len + props_len > body.len() {
        return Err(Error::Corrupt(Corruption::BadBounds));
    }
    let (topic, rest) = body.split_at(topic_len);
    let (properties, payload) = rest.split_at(props_len);
    Ok(RecordView { offset: u64_at(rec, 8), timestamp_ms: u64_at(rec, 16), flags: rec[24], topic, properties, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordView<'static> {
        RecordView {
            offset: 42,
            timestamp_ms: 1_700_000_000_123,
            flags: flags(true, 1),
            topic: b"devices/7/telemetry",
            properties: &[0x01, 0x01],
            payload: b"hello",
        }
    }

    fn encoded(view: &RecordView<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        let n = view.encode(&mut out).unwrap();
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn roundtrip_keeps_every_field() {
        let view = sample();
        let buf = encoded(&view);
        assert_eq!(buf.len(), HEADER_LEN + 19 + 2 + 5);
        let back = decode(&buf).unwrap();
        assert_eq!(back, view);
        assert!(back.retain());
        assert_eq!(back.qos(), 1);
        let owned = back.to_record();
        assert_eq!(owned.view(), view);
        assert_eq!(owned.encoded_len(), buf.len());
    }

    #[test]
    fn encodes_into_bytes_mut_too() {
        let mut out = bytes::BytesMut::new();
        sample().encode(&mut out).unwrap();
        assert_eq!(&out[..], &encoded(&sample())[..]);
    }

    #[test]
    fn decode_ignores_bytes_after_the_record() {
        let mut buf = encoded(&sample());
        buf.extend_from_slice(&[0xAA; 10]);
        assert_eq!(decode(&buf).unwrap(), sample());
    }

    #[test]
    fn every_short_prefix_is_incomplete() {
        let buf = encoded(&sample());
        for cut in 0..buf.len() {
            let err = decode(&buf[..cut]).unwrap_err();
            assert!(err.is_incomplete(), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn every_flipped_bit_after_the_length_is_corrupt() {
        let buf = encoded(&sample());
        for byte in 4..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                let err = decode(&bad).unwrap_err();
                assert!(matches!(err, Error::Corrupt(_)), "byte {byte} bit {bit}: {err}");
            }
        }
    }

    #[test]
    fn length_out_of_bounds_is_corrupt() {
        let mut buf = encoded(&sample());
        buf[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(decode(&buf), Err(Error::Corrupt(Corruption::BadLength(3)))));
        buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&buf), Err(Error::Corrupt(Corruption::BadLength(_)))));
    }

    #[test]
    fn inner_lengths_past_the_record_are_corrupt_even_with_a_good_crc() {
        let mut buf = encoded(&sample());
        buf[27..31].copy_from_slice(&1000u32.to_le_bytes());
        let crc = crc32c::crc32c(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&buf), Err(Error::Corrupt(Corruption::BadBounds))));
    }

    #[test]
    fn encode_refuses_bad_flags_and_long_topics() {
        let mut view = sample();
        view.flags = 0x08;
        assert!(matches!(view.encode(&mut Vec::new()), Err(Error::InvalidFlags(0x08))));
        view.flags = flags(false, 3);
        assert!(matches!(view.encode(&mut Vec::new()), Err(Error::InvalidFlags(_))));
        let topic = vec![b'a'; 70_000];
        let view = RecordView { topic: &topic, ..sample() };
        assert!(matches!(view.encode(&mut Vec::new()), Err(Error::KeyTooLong { len: 70_000, .. })));
    }

    #[test]
    fn flags_helper_sets_bits() {
        assert_eq!(flags(false, 0), 0);
        assert_eq!(flags(true, 2), 0x05);
        assert!(check_flags(flags(true, 2)).is_ok());
    }
}
