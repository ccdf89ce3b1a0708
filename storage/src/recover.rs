//! Opening a segment log directory: finding its segments, validating them, cutting off
//! what does not validate, and reporting it all in a [`Recovery`].
//!
//! Rules, applied segment by segment in base-offset order:
//!
//! - A **sealed** segment (every one but the last) is trusted cheaply when its `.idx` file
//!   is intact, names the file's current length, ends below the next segment's base, and
//!   the last record it points at validates and ends exactly at the end of the file.
//!   Otherwise every record is validated and the index rewritten.
//! - The **last** segment is always validated record by record.
//! - Validation stops at the first record that is torn (runs past the end of the file) or
//!   corrupt (bad length, bad CRC, or an offset other than `base + n`, or not below the next
//!   segment's base). The file is truncated there (`set_len`) and the cut reported.
//! - The next offset is the last valid offset + 1, or the base in the file name for an
//!   empty segment. If a cut in the last segment removed records that still validated
//!   (a corrupt stretch with good records after it), their offsets are not reused: the log
//!   rolls to a new segment named after the highest of them + 1.
//!
//! Only the directory listing, the `.idx` files and the tails of sealed segments are read
//! for sealed segments, so opening costs one full scan of the active segment plus a little
//! per sealed one.

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::SegmentConfig;
use crate::error::{IoContext, Result};
use crate::index::{SparseIndex, Trailer};
use crate::record;
use crate::segment::{self, index_path, log_path, Active, Damage, Sealed};

/// What [`SegmentLog::open`](crate::SegmentLog::open) found and repaired.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Segment files in the log after recovery (the active one included).
    pub segments: usize,
    /// Records in the log after recovery.
    pub records: u64,
    /// Oldest offset the log holds.
    pub first_offset: u64,
    /// Offset the next append gets.
    pub next_offset: u64,
    /// Bytes cut off segment files, all segments together.
    pub truncated_bytes: u64,
    /// Each cut: which segment, where, how much, why.
    pub truncations: Vec<Truncation>,
    /// Sealed segments whose index had to be rebuilt by a full scan.
    pub indexes_rebuilt: usize,
    /// Offsets skipped so that offsets of records that validated but were cut off past a
    /// corrupt stretch are never handed out again.
    pub skipped_offsets: u64,
    /// Wall time of the whole open.
    pub elapsed: Duration,
}

/// One cut recovery made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Base offset of the segment.
    pub segment: u64,
    /// File position of the cut (the new file length).
    pub position: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// Why.
    pub cause: Damage,
}

/// The log as recovery leaves it.
pub(crate) struct Recovered {
    pub(crate) sealed: VecDeque<Sealed>,
    pub(crate) active: Active,
    pub(crate) report: Recovery,
    /// Offset the log must roll to, past cut records that still validated.
    pub(crate) jump_to: Option<u64>,
}

/// Lists segment base offsets in `dir`, removing leftovers of interrupted index writes and
/// index files whose segment is gone.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).ctx("list log directory", dir)? {
        let entry = entry.ctx("list log directory", dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".idx.tmp") {
            segment::remove_if_exists(&entry.path())?;
        } else if let Some(base) = parse_name(name, ".log") {
            bases.push(base);
        } else if let Some(base) = parse_name(name, ".idx") {
            indexes.push(base);
        }
    }
    bases.sort_unstable();
    for base in indexes {
        if bases.binary_search(&base).is_err() {
            segment::remove_if_exists(&index_path(dir, base))?;
        }
    }
    Ok(bases)
}

/// `00000000000000000042.log` -> 42.
fn parse_name(name: &str, suffix: &str) -> Option<u64> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// True if the last record the trailer names validates and ends the file.
fn tail_ok(file: &fs::File, path: &Path, t: &Trailer) -> Result<bool> {
    if t.next == t.base {
        return Ok(t.file_len == 0);
    }
    let start = u64::from(t.last_pos);
    let len = usize::try_from(t.file_len - start).unwrap_or(usize::MAX);
    if len > record::MAX_RECORD_LEN {
        return Ok(false);
    }
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, start).ctx("read segment tail", path)?;
    Ok(match record::decode(&buf) {
        Ok(view) => view.offset + 1 == t.next && view.encoded_len() == len,
        Err(_) => false,
    })
}

/// Opens and validates one sealed segment whose successor starts at `limit`.
fn open_sealed(dir: &Path, base: u64, limit: u64, config: &SegmentConfig, report: &mut Recovery) -> Result<Sealed> {
    let interval = config.index_interval_bytes;
    let path = log_path(dir, base);
    let file = OpenOptions::new().read(true).write(true).open(&path).ctx("open segment", &path)?;
    let len = file.metadata().ctx("stat segment", &path)?.len();
    let shared: Arc<Path> = Arc::from(path.as_path());
    if let Some((_, t)) = SparseIndex::load(&index_path(dir, base), base, interval)? {
        if t.file_len == len && t.next <= limit && tail_ok(&file, &path, &t)? {
            return Ok(Sealed::new(shared, &t, interval));
        }
    }
    report.indexes_rebuilt += 1;
    let map = segment::map(&file, len, &path)?;
    let scan = segment::scan_all(map.as_deref().unwrap_or(&[]), base, limit, interval);
    drop(map);
    cut(&file, &path, base, len, scan.valid_len, scan.stop, report)?;
    let t = Trailer { base, next: scan.next, file_len: scan.valid_len, max_ts: scan.max_ts, last_pos: scan.last_pos };
    // Best effort: without the file the next open scans again.
    let _ = scan.index.persist(&index_path(dir, base), &t);
    Ok(Sealed::new(shared, &t, interval))
}

/// Truncates `file` to `valid` bytes if it is longer, and reports it.
fn cut(
    file: &fs::File,
    path: &Path,
    base: u64,
    len: u64,
    valid: u64,
    stop: Option<Damage>,
    report: &mut Recovery,
) -> Result<()> {
    if valid >= len {
        return Ok(());
    }
    file.set_len(valid).ctx("truncate segment", path)?;
    report.truncated_bytes += len - valid;
    report.truncations.push(Truncation {
        segment: base,
        position: valid,
        bytes: len - valid,
        cause: stop.unwrap_or(Damage::Torn),
    });
    Ok(())
}

/// Opens the last segment, validating every record.
fn open_active(dir: &Path, base: u64, config: &SegmentConfig, report: &mut Recovery) -> Result<(Active, Option<u64>)> {
    let path = log_path(dir, base);
    let file = OpenOptions::new().read(true).write(true).open(&path).ctx("open segment", &path)?;
    let len = file.metadata().ctx("stat segment", &path)?.len();
    let map = segment::map(&file, len, &path)?;
    let data = map.as_deref().unwrap_or(&[]);
    let scan = segment::scan_all(data, base, u64::MAX, config.index_interval_bytes);
    let survivor = match scan.stop {
        Some(_) => segment::highest_survivor(data, scan.valid_len as usize, scan.next),
        None => None,
    };
    drop(map);
    cut(&file, &path, base, len, scan.valid_len, scan.stop, report)?;
    // A stale index of this base (from before a crash) would describe other bytes.
    segment::remove_if_exists(&index_path(dir, base))?;
    let jump_to = survivor.map(|s| s + 1).filter(|&n| n > scan.next);
    let active = Active::recovered(file, Arc::from(path.as_path()), base, scan, config.write_buffer_bytes);
    Ok((active, jump_to))
}

/// Opens every segment in `dir` (creating the directory and a first segment if needed).
pub(crate) fn recover(dir: &Path, config: &SegmentConfig) -> Result<Recovered> {
    fs::create_dir_all(dir).ctx("create log directory", dir)?;
    let mut report = Recovery::default();
    let bases = list_segments(dir)?;
    let Some((&last, older)) = bases.split_last() else {
        let active = Active::create(dir, 0, config.index_interval_bytes, config.write_buffer_bytes)?;
        report.segments = 1;
        return Ok(Recovered { sealed: VecDeque::new(), active, report, jump_to: None });
    };
    let mut sealed = VecDeque::with_capacity(older.len());
    for (i, &base) in older.iter().enumerate() {
        let limit = bases[i + 1];
        let segment = open_sealed(dir, base, limit, config, &mut report)?;
        report.records += segment.next - segment.base;
        sealed.push_back(segment);
    }
    let (active, jump_to) = open_active(dir, last, config, &mut report)?;
    report.records += active.next - active.base;
    report.segments = bases.len();
    Ok(Recovered { sealed, active, report, jump_to })
}
