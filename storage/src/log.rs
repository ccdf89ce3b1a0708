//! [`SegmentLog`]: the durable log of one partition, a directory of segment files.
//!
//! Owned by the shard that owns the partition and called only from it (`&mut self`
//! everywhere, no locks). Appends are encoded into a bounded write buffer and reach the
//! file at the latest when the buffer passes `write_buffer_bytes` or on
//! [`flush`](SegmentLog::flush); durability is the caller's to schedule through the
//! [`SyncPoint`] that `flush` returns (see [`crate::sync`]). Reads map segment files;
//! retention deletes whole sealed segments, oldest first.
//!
//! ```
//! use storage::{SegmentConfig, SegmentLog};
//!
//! let dir = tempfile::tempdir()?;
//! let (mut log, recovery) = SegmentLog::open(dir.path(), SegmentConfig::default())?;
//! assert_eq!(recovery.next_offset, 0);
//! let offset = log.append(1_700_000_000_000, 0, b"devices/1/telemetry", b"", b"21.5")?;
//! assert_eq!(offset, 0);
//! // Group commit: flush on the shard, fdatasync elsewhere, report back.
//! let point = log.flush()?;
//! point.sync()?;
//! log.mark_durable(point.upto());
//! assert_eq!(log.durable_offset(), 1);
//! let record = log.read(0)?.expect("just written");
//! assert_eq!(&record.payload[..], b"21.5");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::config::{SegmentConfig, MAX_INDEX_ENTRIES};
use crate::error::{Error, IoContext, Result};
use crate::record::{self, Record, RecordView};
use crate::recover::{self, Recovery};
use crate::segment::{self, Active, Sealed};
use crate::sync::{self, Pending, SyncFile, SyncPoint};

/// What [`SegmentLog::enforce_retention`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments: usize,
    /// Bytes deleted.
    pub bytes: u64,
    /// Records deleted.
    pub records: u64,
    /// The log's first offset afterwards.
    pub first_offset: u64,
}

/// Counters and sizes of a [`SegmentLog`], for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Segment files (the active one included).
    pub segments: usize,
    /// Bytes of records, buffered ones included.
    pub bytes: u64,
    /// Sealed segments currently mapped.
    pub mapped_segments: usize,
    /// Bytes in the write buffer.
    pub buffered_bytes: usize,
    /// Index entries of the active segment.
    pub active_index_entries: usize,
    /// Damaged stretches reads have skipped since open.
    pub corrupt_skips: u64,
    /// Sealed-segment indexes rebuilt by reads since open.
    pub indexes_rebuilt: u64,
}

/// An append-only log of records in segment files. See the [module docs](self).
#[derive(Debug)]
pub struct SegmentLog {
    dir: PathBuf,
    config: SegmentConfig,
    sealed: VecDeque<Sealed>,
    active: Active,
    /// Bytes of all sealed segments.
    sealed_bytes: u64,
    dir_sync: SyncFile,
    /// Rolled files and directory entries not yet covered by `mark_durable`.
    pending: Pending,
    durable: u64,
    /// Use counter for the least-recently-used unmapping of sealed segments.
    tick: u64,
    mapped: usize,
    corrupt_skips: u64,
    indexes_rebuilt: u64,
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`, recovering it as [`Recovery`] describes: torn or
    /// corrupt tails are cut off and reported, never served. Everything found is synced
    /// before this returns, so [`durable_offset`](SegmentLog::durable_offset) starts at
    /// [`next_offset`](SegmentLog::next_offset).
    pub fn open(dir: impl AsRef<Path>, config: SegmentConfig) -> Result<(SegmentLog, Recovery)> {
        let started = Instant::now();
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let recover::Recovered { sealed, active, mut report, jump_to } = recover::recover(&dir, &config)?;
        let dir_sync = sync::open_dir(&dir)?;
        let sealed_bytes = sealed.iter().map(|s| s.size).sum();
        let mut log = SegmentLog {
            dir,
            config,
            sealed,
            active,
            sealed_bytes,
            dir_sync,
            pending: Pending::default(),
            durable: 0,
            tick: 0,
            mapped: 0,
            corrupt_skips: 0,
            indexes_rebuilt: 0,
        };
        if let Some(next) = jump_to {
            report.skipped_offsets = next - log.active.next;
            log.roll(next)?;
            report.segments += 1;
        }
        // A crashed predecessor may have left the newest files in the page cache only.
        log.active.sync_file().file.sync_data().ctx("fdatasync", &log.active.path)?;
        if let Some(last) = log.sealed.back() {
            File::open(&last.path).and_then(|f| f.sync_data()).ctx("fdatasync", &last.path)?;
        }
        log.dir_sync.file.sync_all().ctx("fsync directory", &log.dir)?;
        log.pending = Pending::default();
        log.durable = log.active.next;
        report.first_offset = log.first_offset();
        report.next_offset = log.active.next;
        report.elapsed = started.elapsed();
        Ok((log, report))
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &SegmentConfig {
        &self.config
    }

    /// Oldest offset still held (the base of the oldest segment; records below were
    /// deleted by retention).
    pub fn first_offset(&self) -> u64 {
        self.sealed.front().map_or(self.active.base, |s| s.base)
    }

    /// Offset the next append gets.
    pub fn next_offset(&self) -> u64 {
        self.active.next
    }

    /// Every record below this offset is known to be on disk.
    pub fn durable_offset(&self) -> u64 {
        self.durable
    }

    /// Bytes of records held, buffered ones included.
    pub fn bytes(&self) -> u64 {
        self.sealed_bytes + self.active.len()
    }

    /// Sizes and counters for metrics.
    pub fn stats(&self) -> LogStats {
        LogStats {
            segments: self.sealed.len() + 1,
            bytes: self.bytes(),
            mapped_segments: self.mapped,
            buffered_bytes: self.active.buffered(),
            active_index_entries: self.active.index_entries(),
            corrupt_skips: self.corrupt_skips,
            indexes_rebuilt: self.indexes_rebuilt,
        }
    }

    fn check_failed(&self) -> Result<()> {
        if self.active.failed {
            return Err(Error::Failed);
        }
        Ok(())
    }

    /// Appends one record and returns its offset. The record sits in the write buffer
    /// until the buffer has passed `write_buffer_bytes` at a later append, or until
    /// [`flush`](SegmentLog::flush) (or a read that needs it) runs. Refuses records over
    /// `max_record_bytes`, topics over 65535 bytes and invalid flags, changing nothing.
    pub fn append(
        &mut self,
        timestamp_ms: u64,
        flags: u8,
        topic: &[u8],
        properties: &[u8],
        payload: &[u8],
    ) -> Result<u64> {
        self.check_failed()?;
        record::check_flags(flags)?;
        if topic.len() > u16::MAX as usize {
            return Err(Error::KeyTooLong { len: topic.len(), max: u16::MAX as usize });
        }
        let size = record::encoded_len(topic.len(), properties.len(), payload.len());
        if size > self.config.max_record_bytes {
            return Err(Error::RecordTooLarge { size, max: self.config.max_record_bytes });
        }
        // Make room first, so that an error leaves nothing half appended.
        if self.active.buffered() >= self.config.write_buffer_bytes {
            self.active.flush()?;
        }
        if self.active.len() > 0 && self.active.len() + size as u64 > self.config.segment_bytes {
            self.roll(self.active.next)?;
        }
        let offset = self.active.next;
        let view = RecordView { offset, timestamp_ms, flags, topic, properties, payload };
        self.active.append(&view)?;
        Ok(offset)
    }

    /// Seals the active segment and starts a new one with base offset `base`.
    fn roll(&mut self, base: u64) -> Result<()> {
        self.active.flush()?;
        let fresh = Active::create(&self.dir, base, self.config.index_interval_bytes, self.config.write_buffer_bytes)?;
        let old = std::mem::replace(&mut self.active, fresh);
        let sealed_next = old.next;
        self.tick += 1;
        let (sealed, file) = old.seal(self.config.index_interval_bytes, self.tick);
        // Records below `sealed_next` need the old file synced; records from `base` on need
        // the directory entry of the new one.
        self.pending.push_file(file, sealed_next);
        self.pending.push_dir(self.dir_sync.clone(), base + 1);
        self.sealed_bytes += sealed.size;
        if sealed.is_mapped() {
            self.mapped += 1;
        }
        self.sealed.push_back(sealed);
        self.evict_mappings(self.sealed.len() - 1);
        Ok(())
    }

    /// Writes the write buffer to the file (no fsync) and returns what must be synced for
    /// every record appended so far to be durable.
    pub fn flush(&mut self) -> Result<SyncPoint> {
        self.check_failed()?;
        self.active.flush()?;
        let mut files = Vec::new();
        self.pending.extend_into(&mut files);
        if self.durable < self.active.next {
            files.push(self.active.sync_file());
        }
        Ok(SyncPoint { files, upto: self.active.next })
    }

    /// Records below `upto` are on disk (a [`SyncPoint`] with that `upto` was synced).
    /// Never moves the bound backwards. An owner that never syncs (fsync policy `never`)
    /// may call it with [`next_offset`](SegmentLog::next_offset) after each flush, so
    /// rolled files are not kept open for a sync that will not come.
    pub fn mark_durable(&mut self, upto: u64) {
        self.durable = self.durable.max(upto.min(self.active.next));
        self.pending.release(self.durable);
    }

    /// Flush, sync on this thread, mark durable: for tests, tools and shutdown.
    pub fn sync(&mut self) -> Result<u64> {
        let point = self.flush()?;
        point.sync()?;
        self.mark_durable(point.upto());
        Ok(self.durable)
    }

    /// The record at `offset`, or `None` if it was deleted by retention, is not written
    /// yet, or was lost to damage.
    pub fn read(&mut self, offset: u64) -> Result<Option<Record>> {
        let mut out = Vec::with_capacity(1);
        self.read_range_into(offset, 1, usize::MAX, &mut out)?;
        Ok(out.pop().filter(|r| r.offset == offset))
    }

    /// Up to `max_records` records from offset `from` on (or from the first offset, if
    /// `from` was deleted), stopping before `max_bytes` of encoded records would be passed,
    /// but always at least one record if there is one.
    pub fn read_range(&mut self, from: u64, max_records: usize, max_bytes: usize) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        self.read_range_into(from, max_records, max_bytes, &mut out)?;
        Ok(out)
    }

    /// [`read_range`](SegmentLog::read_range) into a caller's vector (appended to);
    /// returns how many records were added.
    pub fn read_range_into(
        &mut self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<usize> {
        let from = from.max(self.first_offset());
        if max_records == 0 || from >= self.active.next {
            return Ok(0);
        }
        let mut taker = Taker { out, max_records, max_bytes, count: 0, bytes: 0 };
        let first = self.sealed.partition_point(|s| s.next <= from);
        for i in first..self.sealed.len() {
            self.map_sealed(i)?;
            let seg = &self.sealed[i];
            if let Some((data, index)) = seg.view() {
                self.corrupt_skips += segment::visit_from(data, index, seg.base, from, |v| taker.take(v));
            }
            if taker.full() {
                return Ok(taker.count);
            }
        }
        if self.active.flushed_next < self.active.next {
            self.check_failed()?;
            self.active.flush()?;
        }
        let base = self.active.base;
        let (data, index) = self.active.view()?;
        self.corrupt_skips += segment::visit_from(data, index, base, from, |v| taker.take(v));
        Ok(taker.count)
    }

    /// Maps sealed segment `i` if needed and marks it used.
    fn map_sealed(&mut self, i: usize) -> Result<()> {
        self.tick += 1;
        let seg = &mut self.sealed[i];
        if !seg.is_mapped() {
            if seg.map(self.tick)? {
                self.indexes_rebuilt += 1;
            }
            self.mapped += 1;
            self.evict_mappings(i);
        }
        self.sealed[i].touch(self.tick);
        Ok(())
    }

    /// Unmaps least recently used sealed segments (other than `keep`) past the bound.
    fn evict_mappings(&mut self, keep: usize) {
        while self.mapped > self.config.max_mapped_segments {
            let victim = (0..self.sealed.len())
                .filter(|&j| j != keep)
                .filter_map(|j| self.sealed[j].last_used().map(|t| (t, j)))
                .min();
            let Some((_, j)) = victim else { break };
            self.sealed[j].unmap();
            self.mapped -= 1;
        }
    }

    /// Deletes sealed segments, oldest first, while the log is over `retention_bytes` or the
    /// oldest segment's newest record is older than `retention_ms` before `now_ms`. The
    /// active segment is never deleted.
    pub fn enforce_retention(&mut self, now_ms: u64) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        while let Some(oldest) = self.sealed.front() {
            let over_size = self.config.retention_bytes.is_some_and(|max| self.bytes() > max);
            let too_old = self.config.retention_ms.is_some_and(|ms| oldest.max_ts.saturating_add(ms) < now_ms);
            if !over_size && !too_old {
                break;
            }
            oldest.delete_files()?;
            self.pending.forget(&oldest.path);
            report.segments += 1;
            report.bytes += oldest.size;
            report.records += oldest.next - oldest.base;
            self.sealed_bytes -= oldest.size;
            if oldest.is_mapped() {
                self.mapped -= 1;
            }
            self.sealed.pop_front();
        }
        report.first_offset = self.first_offset();
        Ok(report)
    }
}

impl Drop for SegmentLog {
    /// Best effort: buffered records reach the file (not the disk), so an owner that
    /// forgot to flush before a clean shutdown does not hand the same offsets out again.
    fn drop(&mut self) {
        if !self.active.failed {
            let _ = self.active.flush();
        }
    }
}

/// Collects records for a read within its bounds.
struct Taker<'a> {
    out: &'a mut Vec<Record>,
    max_records: usize,
    max_bytes: usize,
    count: usize,
    bytes: usize,
}

impl Taker<'_> {
    /// Takes `view` if it fits; returns whether to go on.
    fn take(&mut self, view: RecordView<'_>) -> bool {
        let len = view.encoded_len();
        if self.count > 0 && self.bytes + len > self.max_bytes {
            self.max_records = self.count;
            return false;
        }
        self.out.push(view.to_record());
        self.count += 1;
        self.bytes += len;
        !self.full()
    }

    fn full(&self) -> bool {
        self.count >= self.max_records || self.bytes >= self.max_bytes
    }
}
