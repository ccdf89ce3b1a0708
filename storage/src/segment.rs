//! One segment of a [`SegmentLog`](crate::SegmentLog): the file `<base>.log` (base offset,
//! 20 digits) holding records with contiguous offsets from `base`, plus its sparse index.
//!
//! A segment is either [`Active`] (the one the log appends to: a file handle, a bounded
//! write buffer, the in-memory index, a mapping refreshed when the file has grown past it)
//! or [`Sealed`] (read-only: metadata always in memory, the mapping and the index loaded
//! on the first read and dropped again when the log evicts it to bound memory).
//!
//! This module also holds the two scans: [`scan_all`], which recovery runs to validate every
//! record of a segment, and [`visit_from`], which reads run from an index entry to the
//! records they want, skipping a damaged stretch to the next index entry.
//!
//! Mappings are sound because a segment file is only ever appended to by its owner: it is
//! truncated only while recovering (before anything maps it) or back to a length no mapping
//! has passed (after a failed write), and retention unlinks files, which leaves existing
//! mappings valid. Another process writing into the data directory breaks that promise.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};

use crate::error::{Corruption, Error, IoContext, Result};
use crate::index::{Entry, SparseIndex, Trailer};
use crate::record::{self, RecordView, HEADER_LEN};
use crate::sync::SyncFile;

/// Path of the segment file with base offset `base`.
pub(crate) fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Path of the index file with base offset `base`.
pub(crate) fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.idx"))
}

/// Maps the first `len` bytes of `file`; `None` for an empty file (which cannot be mapped).
pub(crate) fn map(file: &File, len: u64, path: &Path) -> Result<Option<Mmap>> {
    if len == 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| Error::InvalidConfig("segment larger than the address space"))?;
    // SAFETY: see the module documentation: nobody truncates a segment file below a length
    // a mapping covers while the mapping exists.
    let map = unsafe { MmapOptions::new().len(len).map(file) }.ctx("mmap segment", path)?;
    Ok(Some(map))
}

/// Why recovery cut a segment file short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The last record runs past the end of the file: a torn write.
    Torn,
    /// A record failed validation.
    Corrupt(Corruption),
}

/// What [`scan_all`] found in a segment.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Bytes of valid records from the start of the file.
    pub(crate) valid_len: u64,
    /// Offset after the last valid record (`base` if none).
    pub(crate) next: u64,
    pub(crate) max_ts: u64,
    pub(crate) last_pos: u32,
    pub(crate) index: SparseIndex,
    /// Why the scan ended before the end of `data`, if it did.
    pub(crate) stop: Option<Damage>,
}

/// Validates every record of `data` from position 0: bounds, CRC, offsets contiguous from
/// `base` and below `limit` (the next segment's base). Stops at the first failure.
pub(crate) fn scan_all(data: &[u8], base: u64, limit: u64, interval: u32) -> Scan {
    // Positions are u32 in the index: nothing past 4 GiB can be a valid record.
    let data = &data[..data.len().min(u32::MAX as usize)];
    let mut scan =
        Scan { valid_len: 0, next: base, max_ts: 0, last_pos: 0, index: SparseIndex::new(interval), stop: None };
    let mut pos = 0usize;
    while pos < data.len() {
        let view = match record::decode(&data[pos..]) {
            Ok(view) => view,
            Err(Error::Incomplete { .. }) => {
                scan.stop = Some(Damage::Torn);
                break;
            }
            Err(Error::Corrupt(c)) => {
                scan.stop = Some(Damage::Corrupt(c));
                break;
            }
            Err(_) => {
                scan.stop = Some(Damage::Corrupt(Corruption::BadBounds));
                break;
            }
        };
        if view.offset != scan.next || view.offset >= limit {
            scan.stop = Some(Damage::Corrupt(Corruption::BadOffset { expected: scan.next, found: view.offset }));
            break;
        }
        // Both fit: a segment holds fewer than 2^32 records, positions are below 4 GiB.
        scan.index.observe((view.offset - base) as u32, pos as u32);
        scan.last_pos = pos as u32;
        scan.max_ts = scan.max_ts.max(view.timestamp_ms);
        scan.next += 1;
        pos += view.encoded_len();
        scan.valid_len = pos as u64;
    }
    scan
}

/// Looks past a damaged stretch (from `pos`) for records that still validate, with offsets
/// from `expected` on, and returns the highest offset found. Recovery truncates them away
/// all the same, but must not hand their offsets out again: something may have seen them.
pub(crate) fn highest_survivor(data: &[u8], pos: usize, expected: u64) -> Option<u64> {
    let data = &data[..data.len().min(u32::MAX as usize)];
    // Each record takes at least a header, which bounds the offsets that can be present.
    let ceiling = expected + (data.len().saturating_sub(pos) / HEADER_LEN) as u64 + 1;
    let mut best = None;
    let mut p = pos + 1;
    while let Some((len, offset)) = record::peek(&data[p.min(data.len())..]) {
        let len = len as usize;
        let plausible = (expected..ceiling).contains(&offset) && len >= HEADER_LEN && len <= data.len() - p;
        if plausible {
            if let Ok(view) = record::decode(&data[p..]) {
                best = best.max(Some(view.offset));
                p += len;
                continue;
            }
        }
        p += 1;
    }
    best
}

/// Calls `visit` with each valid record of `data` whose offset is at least `from`, in
/// order, until it returns false. Starts at the index entry at or before `from`. A record
/// that fails its CRC, or carries an offset other than the one its place calls for, is
/// never visited: the scan resumes at the next index entry. Returns how many damaged
/// stretches were skipped.
pub(crate) fn visit_from(
    data: &[u8],
    index: &SparseIndex,
    base: u64,
    from: u64,
    mut visit: impl FnMut(RecordView<'_>) -> bool,
) -> u64 {
    let start = index.lookup(from.saturating_sub(base));
    let mut pos = start.pos as usize;
    let mut expected = base + u64::from(start.rel);
    let mut skipped = 0;
    while pos < data.len() {
        match record::decode(&data[pos..]) {
            Ok(view) if view.offset == expected => {
                pos += view.encoded_len();
                expected += 1;
                if view.offset >= from && !visit(view) {
                    break;
                }
            }
            _ => {
                skipped += 1;
                match index.next_after(pos as u32) {
                    Some(Entry { rel, pos: next }) => {
                        pos = next as usize;
                        expected = base + u64::from(rel);
                    }
                    None => break,
                }
            }
        }
    }
    skipped
}

/// A sealed segment's mapping and index, present while it is being read.
#[derive(Debug)]
struct Mapped {
    map: Option<Mmap>,
    index: SparseIndex,
    last_used: u64,
}

/// A read-only segment.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) base: u64,
    /// Offset after its last record.
    pub(crate) next: u64,
    /// File length in bytes (all of it valid records).
    pub(crate) size: u64,
    /// Newest record timestamp, for retention by age.
    pub(crate) max_ts: u64,
    pub(crate) path: Arc<Path>,
    interval: u32,
    mapped: Option<Mapped>,
}

impl Sealed {
    /// A sealed segment described by a trustworthy trailer (or a fresh scan), unmapped.
    pub(crate) fn new(path: Arc<Path>, t: &Trailer, interval: u32) -> Sealed {
        Sealed { base: t.base, next: t.next, size: t.file_len, max_ts: t.max_ts, path, interval, mapped: None }
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.path.with_extension("idx")
    }

    pub(crate) fn trailer(&self, last_pos: u32) -> Trailer {
        Trailer { base: self.base, next: self.next, file_len: self.size, max_ts: self.max_ts, last_pos }
    }

    pub(crate) fn is_mapped(&self) -> bool {
        self.mapped.is_some()
    }

    pub(crate) fn last_used(&self) -> Option<u64> {
        self.mapped.as_ref().map(|m| m.last_used)
    }

    /// Marks the mapping as used at `tick` (for the log's least-recently-used eviction).
    pub(crate) fn touch(&mut self, tick: u64) {
        if let Some(m) = &mut self.mapped {
            m.last_used = tick;
        }
    }

    /// Maps the file and loads its index; an index that does not match is rebuilt from the
    /// mapped records (and rewritten, best effort). Returns true if it was rebuilt.
    pub(crate) fn map(&mut self, tick: u64) -> Result<bool> {
        if self.mapped.is_some() {
            return Ok(false);
        }
        let file = File::open(&self.path).ctx("open segment", &self.path)?;
        let map = map(&file, self.size, &self.path)?;
        let idx_path = self.index_path();
        let loaded = SparseIndex::load(&idx_path, self.base, self.interval)?;
        let (index, rebuilt) = match loaded {
            Some((index, t)) if t.next == self.next && t.file_len == self.size => (index, false),
            _ => {
                let data = map.as_deref().unwrap_or(&[]);
                let scan = scan_all(data, self.base, self.next, self.interval);
                // Best effort: a failed rewrite only means the next read rebuilds it again.
                let _ = scan.index.persist(&idx_path, &self.trailer(scan.last_pos));
                (scan.index, true)
            }
        };
        self.mapped = Some(Mapped { map, index, last_used: tick });
        Ok(rebuilt)
    }

    /// Hands over an already built mapping and index (when the active segment is sealed).
    fn set_mapped(&mut self, map: Option<Mmap>, index: SparseIndex, tick: u64) {
        self.mapped = Some(Mapped { map, index, last_used: tick });
    }

    pub(crate) fn unmap(&mut self) {
        self.mapped = None;
    }

    /// The mapped bytes and index, if mapped.
    pub(crate) fn view(&self) -> Option<(&[u8], &SparseIndex)> {
        self.mapped.as_ref().map(|m| (m.map.as_deref().unwrap_or(&[]), &m.index))
    }

    /// Removes the segment's files (retention).
    pub(crate) fn delete_files(&self) -> Result<()> {
        remove_if_exists(&self.path)?;
        remove_if_exists(&self.index_path())
    }
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("remove", path),
        _ => Ok(()),
    }
}

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) base: u64,
    /// Offset the next append gets.
    pub(crate) next: u64,
    pub(crate) max_ts: u64,
    file: Arc<File>,
    pub(crate) path: Arc<Path>,
    /// Bytes in the file; the write buffer follows them.
    flushed_len: u64,
    /// Offset of the first record in the write buffer.
    pub(crate) flushed_next: u64,
    buf: Vec<u8>,
    buf_cap: usize,
    index: SparseIndex,
    last_pos: u32,
    map: Option<Mmap>,
    /// A failed write could not be undone: the file holds bytes past `flushed_len`.
    pub(crate) failed: bool,
}

impl Active {
    /// Creates an empty segment file (it must not exist yet).
    pub(crate) fn create(dir: &Path, base: u64, interval: u32, buf_cap: usize) -> Result<Active> {
        let path = log_path(dir, base);
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).open(&path).ctx("create segment", &path)?;
        let scan =
            Scan { valid_len: 0, next: base, max_ts: 0, last_pos: 0, index: SparseIndex::new(interval), stop: None };
        Ok(Active::recovered(file, Arc::from(path.as_path()), base, scan, buf_cap))
    }

    /// The active segment as recovery left it: `scan` describes the (already truncated) file.
    pub(crate) fn recovered(file: File, path: Arc<Path>, base: u64, scan: Scan, buf_cap: usize) -> Active {
        Active {
            base,
            next: scan.next,
            max_ts: scan.max_ts,
            file: Arc::new(file),
            path,
            flushed_len: scan.valid_len,
            flushed_next: scan.next,
            buf: Vec::with_capacity(buf_cap),
            buf_cap,
            index: scan.index,
            last_pos: scan.last_pos,
            map: None,
            failed: false,
        }
    }

    /// Bytes of the segment, buffered ones included.
    pub(crate) fn len(&self) -> u64 {
        self.flushed_len + self.buf.len() as u64
    }

    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn index_entries(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn sync_file(&self) -> SyncFile {
        SyncFile { file: Arc::clone(&self.file), path: Arc::clone(&self.path), dir: false }
    }

    /// Encodes `view` (whose offset must be `self.next`) into the write buffer.
    pub(crate) fn append(&mut self, view: &RecordView<'_>) -> Result<()> {
        debug_assert_eq!(view.offset, self.next);
        let pos = self.len();
        view.encode(&mut self.buf)?;
        // Both fit: the log rolls before a segment passes u32::MAX - max_record_bytes.
        self.index.observe((view.offset - self.base) as u32, pos as u32);
        self.last_pos = pos as u32;
        self.max_ts = self.max_ts.max(view.timestamp_ms);
        self.next += 1;
        Ok(())
    }

    /// Writes the buffer to the file (no fsync). On failure the bytes stay buffered and the
    /// file is cut back to its last good length; if even that fails, `failed` is set.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all_at(&self.buf, self.flushed_len) {
            if self.file.set_len(self.flushed_len).is_err() {
                self.failed = true;
            }
            return Err(e).ctx("write segment", &self.path);
        }
        self.flushed_len += self.buf.len() as u64;
        self.flushed_next = self.next;
        self.buf.clear();
        // One oversized record may have grown the buffer: give the memory back.
        if self.buf.capacity() > 2 * self.buf_cap {
            self.buf.shrink_to(self.buf_cap);
        }
        Ok(())
    }

    /// The flushed bytes (mapped, remapped if the file has grown) and the index. Records
    /// still in the write buffer are not visible: flush first.
    pub(crate) fn view(&mut self) -> Result<(&[u8], &SparseIndex)> {
        let mapped = self.map.as_ref().map_or(0, |m| m.len() as u64);
        if self.flushed_len > mapped {
            self.map = None;
            self.map = map(&self.file, self.flushed_len, &self.path)?;
        }
        Ok((self.map.as_deref().unwrap_or(&[]), &self.index))
    }

    /// Turns the (flushed) segment into a sealed one: writes its index file (best effort),
    /// keeps mapping and index for readers that follow the tail. Returns the file for the
    /// caller's pending sync list.
    pub(crate) fn seal(mut self, interval: u32, tick: u64) -> (Sealed, SyncFile) {
        debug_assert!(self.buf.is_empty());
        let sync = self.sync_file();
        let trailer = Trailer {
            base: self.base,
            next: self.next,
            file_len: self.flushed_len,
            max_ts: self.max_ts,
            last_pos: self.last_pos,
        };
        let mut sealed = Sealed::new(Arc::clone(&self.path), &trailer, interval);
        // Best effort: without the file the next open scans the segment instead.
        let _ = self.index.persist(&sealed.index_path(), &trailer);
        let fresh = match self.view() {
            Ok(_) => self.map.take(),
            Err(_) => None,
        };
        if fresh.is_some() || self.flushed_len == 0 {
            sealed.set_mapped(fresh, self.index, tick);
        }
        (sealed, sync)
    }
}
