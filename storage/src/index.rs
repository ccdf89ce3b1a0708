//! The sparse offset index of one segment and its `.idx` file.
//!
//! An entry `(relative offset u32, file position u32)` is added for the first record of a
//! segment and then for the first record at least `index_interval_bytes` past the previous
//! entry, so a lookup lands at most one interval before the record it wants and scans
//! forward. Entries always point at record boundaries the writer produced, which is what
//! lets a read skip a damaged stretch: it resumes at the next entry.
//!
//! The active segment's index lives only in memory (rebuilt by the recovery scan). When a
//! segment is sealed its index is written to `<base>.idx` (temp file, then rename; no fsync:
//! it can always be rebuilt) with a trailer that lets the next open trust the segment
//! without scanning it:
//!
//! | field | type |
//! |---|---|
//! | entries | n × (rel u32 LE, pos u32 LE) |
//! | magic | 8 bytes `RMQIDX01` |
//! | base offset | u64 LE |
//! | next offset (last record + 1) | u64 LE |
//! | segment file length | u64 LE |
//! | newest timestamp | u64 LE |
//! | position of the last record | u32 LE |
//! | CRC32C of everything before it | u32 LE |
//!
//! A file whose CRC, magic, base, ordering or bounds are wrong is ignored (and the segment
//! scanned instead); nothing here is ever a reason to refuse to open a log.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::record::{u32_at, u64_at};

const MAGIC: &[u8; 8] = b"RMQIDX01";
const ENTRY_LEN: usize = 8;
const TRAILER_LEN: usize = 8 + 8 + 8 + 8 + 8 + 4 + 4;

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Offset minus the segment's base offset.
    pub(crate) rel: u32,
    /// Byte position of that record in the segment file.
    pub(crate) pos: u32,
}

/// What a sealed segment's trailer says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub(crate) base: u64,
    pub(crate) next: u64,
    pub(crate) file_len: u64,
    pub(crate) max_ts: u64,
    pub(crate) last_pos: u32,
}

/// The in-memory sparse index of one segment.
#[derive(Debug, Default, Clone)]
pub(crate) struct SparseIndex {
    entries: Vec<Entry>,
    /// Position of the last entry, or `None` before the first record.
    last_pos: Option<u32>,
    interval: u32,
}

impl SparseIndex {
    pub(crate) fn new(interval: u32) -> SparseIndex {
        SparseIndex { entries: Vec::new(), last_pos: None, interval }
    }

    /// Notes a record at `pos`; adds an entry if it is the first or an interval has passed.
    pub(crate) fn observe(&mut self, rel: u32, pos: u32) {
        let due = match self.last_pos {
            None => true,
            Some(last) => pos - last >= self.interval,
        };
        if due {
            self.entries.push(Entry { rel, pos });
            self.last_pos = Some(pos);
        }
    }

    /// The entry to start scanning from for relative offset `rel`: the last one at or
    /// before it, or the start of the segment.
    pub(crate) fn lookup(&self, rel: u64) -> Entry {
        let i = self.entries.partition_point(|e| u64::from(e.rel) <= rel);
        if i == 0 {
            Entry { rel: 0, pos: 0 }
        } else {
            self.entries[i - 1]
        }
    }

    /// Position of the first entry strictly after `pos`, with its relative offset.
    pub(crate) fn next_after(&self, pos: u32) -> Option<Entry> {
        let i = self.entries.partition_point(|e| e.pos <= pos);
        self.entries.get(i).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Encodes entries and trailer into the `.idx` layout.
    fn encode(&self, t: &Trailer) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ENTRY_LEN + TRAILER_LEN);
        for e in &self.entries {
            out.extend_from_slice(&e.rel.to_le_bytes());
            out.extend_from_slice(&e.pos.to_le_bytes());
        }
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&t.base.to_le_bytes());
        out.extend_from_slice(&t.next.to_le_bytes());
        out.extend_from_slice(&t.file_len.to_le_bytes());
        out.extend_from_slice(&t.max_ts.to_le_bytes());
        out.extend_from_slice(&t.last_pos.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses an `.idx` file's bytes; `None` if anything about it is off.
    fn decode(buf: &[u8], base: u64, interval: u32) -> Option<(SparseIndex, Trailer)> {
        if buf.len() < TRAILER_LEN || !(buf.len() - TRAILER_LEN).is_multiple_of(ENTRY_LEN) {
            return None;
        }
        let (body, crc) = buf.split_at(buf.len() - 4);
        if crc32c::crc32c(body) != u32_at(crc, 0) {
            return None;
        }
        let t_at = buf.len() - TRAILER_LEN;
        if &buf[t_at..t_at + 8] != MAGIC {
            return None;
        }
        let trailer = Trailer {
            base: u64_at(buf, t_at + 8),
            next: u64_at(buf, t_at + 16),
            file_len: u64_at(buf, t_at + 24),
            max_ts: u64_at(buf, t_at + 32),
            last_pos: u32_at(buf, t_at + 40),
        };
        if trailer.base != base || trailer.next < base {
            return None;
        }
        let mut index = SparseIndex::new(interval);
        for chunk in buf[..t_at].chunks_exact(ENTRY_LEN) {
            let e = Entry { rel: u32_at(chunk, 0), pos: u32_at(chunk, 4) };
            let ordered = match index.entries.last() {
                None => true,
                Some(p) => e.rel > p.rel && e.pos > p.pos,
            };
            let first_ok = !index.entries.is_empty() || (e.rel == 0 && e.pos == 0);
            if !ordered || !first_ok || u64::from(e.pos) >= trailer.file_len || base + u64::from(e.rel) >= trailer.next
            {
                return None;
            }
            index.entries.push(e);
            index.last_pos = Some(e.pos);
        }
        let empty = trailer.next == base;
        if empty != index.entries.is_empty() || (!empty && u64::from(trailer.last_pos) >= trailer.file_len) {
            return None;
        }
        Some((index, trailer))
    }

    /// Writes `path` through a temp file and a rename. Not synced: a lost or torn index is
    /// rebuilt by the next open.
    pub(crate) fn persist(&self, path: &Path, trailer: &Trailer) -> Result<()> {
        let tmp = path.with_extension("idx.tmp");
        let mut f = fs::File::create(&tmp).ctx("create index", &tmp)?;
        f.write_all(&self.encode(trailer)).ctx("write index", &tmp)?;
        drop(f);
        fs::rename(&tmp, path).ctx("rename index", path)
    }

    /// Reads and validates `path`; `Ok(None)` if it is missing or not trustworthy.
    pub(crate) fn load(path: &Path, base: u64, interval: u32) -> Result<Option<(SparseIndex, Trailer)>> {
        match fs::read(path) {
            Ok(buf) => Ok(SparseIndex::decode(&buf, base, interval)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx("read index", path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built() -> (SparseIndex, Trailer) {
        let mut idx = SparseIndex::new(100);
        // Records of 40 bytes: entries at positions 0, 120, 240, ...
        for i in 0..20u32 {
            idx.observe(i, i * 40);
        }
        let t = Trailer { base: 1000, next: 1020, file_len: 800, max_ts: 77, last_pos: 760 };
        (idx, t)
    }

    #[test]
    fn observe_is_sparse_and_lookup_rounds_down() {
        let (idx, _) = built();
        let positions: Vec<u32> = idx.entries.iter().map(|e| e.pos).collect();
        assert_eq!(positions, vec![0, 120, 240, 360, 480, 600, 720]);
        assert_eq!(idx.lookup(0).pos, 0);
        assert_eq!(idx.lookup(2).pos, 0);
        assert_eq!(idx.lookup(3), Entry { rel: 3, pos: 120 });
        assert_eq!(idx.lookup(19).pos, 720);
        assert_eq!(idx.lookup(1_000_000).pos, 720);
        assert_eq!(idx.next_after(120), Some(Entry { rel: 6, pos: 240 }));
        assert_eq!(idx.next_after(720), None);
    }

    #[test]
    fn encode_decode_roundtrip() {
        let (idx, t) = built();
        let buf = idx.encode(&t);
        let (back, tb) = SparseIndex::decode(&buf, 1000, 100).unwrap();
        assert_eq!(back.entries, idx.entries);
        assert_eq!(tb, t);
    }

    #[test]
    fn any_damage_is_rejected() {
        let (idx, t) = built();
        let buf = idx.encode(&t);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(SparseIndex::decode(&bad, 1000, 100).is_none(), "byte {i}");
        }
        assert!(SparseIndex::decode(&buf[..buf.len() - 1], 1000, 100).is_none());
        assert!(SparseIndex::decode(&buf, 999, 100).is_none(), "wrong base");
    }
}
