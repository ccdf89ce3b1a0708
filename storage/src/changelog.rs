//! The state store's change log: the puts and deletes made since its last snapshot, as
//! CRC'd frames after a small header naming the snapshot generation they follow.
//!
//! Header (24 bytes): magic `RMQCHG01`, generation u64 LE, CRC32C of those 16 bytes u32 LE,
//! 4 zero bytes. A log is only ever created whole (temp file, fsync, rename, directory
//! fsync), so a bad header is damage, not a torn write, and is reported as an error.
//!
//! Frame, little endian:
//!
//! | at | field | type |
//! |---:|---|---|
//! | 0 | `len` (whole frame) | u32 |
//! | 4 | CRC32C of bytes `8..len` | u32 |
//! | 8 | sequence number | u64 |
//! | 16 | op: 1 put, 2 delete | u8 |
//! | 17 | `key_len` | u32 |
//! | 21 | key, then value (the rest of `len`; empty for a delete) | bytes |
//!
//! Owned by [`StateStore`](crate::StateStore); nothing else reads or writes these files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Corruption, Error, IoContext, Result};
use crate::record::{u32_at, u64_at, MAX_RECORD_LEN};
use crate::sync::SyncFile;

const MAGIC: &[u8; 8] = b"RMQCHG01";
/// Bytes of the file header.
pub(crate) const FILE_HEADER_LEN: u64 = 24;
/// Bytes of a frame header.
pub(crate) const FRAME_HEADER_LEN: usize = 21;

/// What a frame does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Put = 1,
    Delete = 2,
}

/// A decoded frame borrowing its key and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) seq: u64,
    pub(crate) op: Op,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

impl Frame<'_> {
    pub(crate) fn encoded_len(&self) -> usize {
        FRAME_HEADER_LEN + self.key.len() + self.value.len()
    }

    /// Appends the frame to `out`. The caller has bounded key and value lengths.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&(self.encoded_len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(self.op as u8);
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(self.key);
        out.extend_from_slice(self.value);
        let crc = crc32c::crc32c(&out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Decodes the frame at the front of `buf`: [`Error::Incomplete`] if it runs past the end,
/// [`Error::Corrupt`] if its length, CRC, op or key length are wrong.
pub(crate) fn decode(buf: &[u8]) -> Result<Frame<'_>> {
    if buf.len() < 4 {
        return Err(Error::Incomplete { needed: FRAME_HEADER_LEN - buf.len() });
    }
    let len_field = u32_at(buf, 0);
    let len = len_field as usize;
    if !(FRAME_HEADER_LEN..=MAX_RECORD_LEN).contains(&len) {
        return Err(Error::Corrupt(Corruption::BadLength(len_field)));
    }
    if buf.len() < len {
        return Err(Error::Incomplete { needed: len - buf.len() });
    }
    let frame = &buf[..len];
    let stored = u32_at(frame, 4);
    let computed = crc32c::crc32c(&frame[8..]);
    if stored != computed {
        return Err(Error::Corrupt(Corruption::BadCrc { stored, computed }));
    }
    let op = match frame[16] {
        1 => Op::Put,
        2 => Op::Delete,
        other => return Err(Error::Corrupt(Corruption::BadOp(other))),
    };
    let key_len = u32_at(frame, 17) as usize;
    if key_len > len - FRAME_HEADER_LEN {
        return Err(Error::Corrupt(Corruption::BadBounds));
    }
    let (key, value) = frame[FRAME_HEADER_LEN..].split_at(key_len);
    Ok(Frame { seq: u64_at(frame, 8), op, key, value })
}

fn file_header(generation: u64) -> [u8; FILE_HEADER_LEN as usize] {
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c::crc32c(&h[..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The generation a header names; `None` if it is not a valid header.
pub(crate) fn parse_header(buf: &[u8]) -> Option<u64> {
    let h = buf.get(..FILE_HEADER_LEN as usize)?;
    (&h[..8] == MAGIC && crc32c::crc32c(&h[..16]) == u32_at(h, 16)).then(|| u64_at(h, 8))
}

/// The open change log file with its write buffer.
#[derive(Debug)]
pub(crate) struct ChangeLog {
    file: Arc<File>,
    path: Arc<Path>,
    /// Bytes in the file (header included).
    flushed_len: u64,
    buf: Vec<u8>,
    buf_cap: usize,
    /// A failed write could not be undone.
    pub(crate) failed: bool,
}

impl ChangeLog {
    /// Writes a new, empty log for `generation` at `path` atomically: temp file, fsync,
    /// rename. The caller syncs the directory.
    pub(crate) fn create(path: &Path, generation: u64, buf_cap: usize) -> Result<ChangeLog> {
        let tmp = path.with_extension("log.tmp");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx("create change log", &tmp)?;
        file.write_all(&file_header(generation)).ctx("write change log", &tmp)?;
        file.sync_all().ctx("fsync change log", &tmp)?;
        fs::rename(&tmp, path).ctx("rename change log", path)?;
        Ok(ChangeLog::opened(file, path, FILE_HEADER_LEN, buf_cap))
    }

    /// A log opened by recovery, valid up to `len` bytes.
    pub(crate) fn opened(file: File, path: &Path, len: u64, buf_cap: usize) -> ChangeLog {
        ChangeLog {
            file: Arc::new(file),
            path: Arc::from(path),
            flushed_len: len,
            buf: Vec::with_capacity(buf_cap),
            buf_cap,
            failed: false,
        }
    }

    /// Bytes of the log, buffered ones included.
    pub(crate) fn len(&self) -> u64 {
        self.flushed_len + self.buf.len() as u64
    }

    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn push(&mut self, frame: &Frame<'_>) {
        frame.encode(&mut self.buf);
    }

    /// Writes buffered frames (no fsync); on failure they stay buffered and the file is cut
    /// back, or `failed` is set if even that fails.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all_at(&self.buf, self.flushed_len) {
            if self.file.set_len(self.flushed_len).is_err() {
                self.failed = true;
            }
            return Err(e).ctx("write change log", &self.path);
        }
        self.flushed_len += self.buf.len() as u64;
        self.buf.clear();
        if self.buf.capacity() > 2 * self.buf_cap {
            self.buf.shrink_to(self.buf_cap);
        }
        Ok(())
    }

    pub(crate) fn sync_file(&self) -> SyncFile {
        SyncFile { file: Arc::clone(&self.file), path: Arc::clone(&self.path), dir: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_roundtrip_and_damage() {
        let frame = Frame { seq: 9, op: Op::Put, key: b"session/abc", value: b"state" };
        let mut buf = Vec::new();
        frame.encode(&mut buf);
        assert_eq!(buf.len(), frame.encoded_len());
        assert_eq!(decode(&buf).unwrap(), frame);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).unwrap_err().is_incomplete());
        }
        for i in 4..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            assert!(matches!(decode(&bad), Err(Error::Corrupt(_))), "byte {i}");
        }
    }

    #[test]
    fn header_roundtrip() {
        let h = file_header(7);
        assert_eq!(parse_header(&h), Some(7));
        let mut bad = h;
        bad[9] ^= 1;
        assert_eq!(parse_header(&bad), None);
        assert_eq!(parse_header(&h[..10]), None);
    }
}
