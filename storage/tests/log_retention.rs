//! Segment log retention: by size, by age, never the active segment, and what reads and a
//! reopen see afterwards.

mod support;

use storage::{SegmentConfig, SegmentLog};
use support::*;

#[test]
fn retention_by_bytes_deletes_oldest_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = SegmentConfig { retention_bytes: Some(4096), ..small_config() };
    let mut log = open_clean(dir.path(), config.clone());
    fill(&mut log, 300);
    let before = log.bytes();
    let segments = log.stats().segments;
    assert!(before > 4096);
    let report = log.enforce_retention(0).unwrap();
    assert!(report.segments > 0);
    assert_eq!(log.stats().segments, segments - report.segments);
    assert_eq!(segment_files(dir.path()).len(), log.stats().segments, "files deleted");
    assert_eq!(index_files(dir.path()).len(), log.stats().segments - 1);
    assert_eq!(log.bytes(), before - report.bytes);
    assert!(log.bytes() <= 4096, "{} bytes left", log.bytes());
    // One segment fewer would have been within the bound only by deleting too much: the
    // bound is met by the smallest number of deletions.
    assert!(log.bytes() + 1024 > 4096);
    assert_eq!(report.first_offset, log.first_offset());
    assert_eq!(report.records, log.first_offset());
    assert!(log.read(0).unwrap().is_none());
    assert!(log.read(log.first_offset() - 1).unwrap().is_none());
    let first = log.first_offset();
    check(&log.read(first).unwrap().unwrap(), first);
    let from_zero = log.read_range(0, 5, usize::MAX).unwrap();
    assert_eq!(from_zero[0].offset, first, "a deleted start reads from the first offset");
    assert_eq!(log.next_offset(), 300);
    // Never synced, so every rolled file is pending, but not the deleted ones.
    let point = log.flush().unwrap();
    assert_eq!(point.len(), log.stats().segments + 1, "sealed files + active + directory");
    drop(point);

    log.sync().unwrap();
    drop(log);
    let (log, rec) = SegmentLog::open(dir.path(), config).unwrap();
    assert_eq!(rec.first_offset, first);
    assert_eq!(log.first_offset(), first);
    assert_eq!(rec.records, 300 - first);
}

#[test]
fn retention_by_age_uses_each_segments_newest_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let config = SegmentConfig { retention_ms: Some(5_000), ..small_config() };
    let mut log = open_clean(dir.path(), config);
    // Old records at t=1000, then new ones at t=10_000.
    for _ in 0..100 {
        log.append(1_000, 0, b"old", b"", &[0u8; 40]).unwrap();
    }
    let boundary = log.next_offset();
    for _ in 0..100 {
        log.append(10_000, 0, b"new", b"", &[0u8; 40]).unwrap();
    }
    // Nothing is old enough yet.
    assert_eq!(log.enforce_retention(5_999).unwrap().segments, 0);
    let report = log.enforce_retention(12_000).unwrap();
    assert!(report.segments > 0);
    let first = log.first_offset();
    assert!(first <= boundary, "no segment holding a new record was deleted");
    assert!(boundary - first < 30, "all-old segments went: first {first}, boundary {boundary}");
    let kept = log.read_range(0, 1000, usize::MAX).unwrap();
    assert!(kept.iter().filter(|r| r.timestamp_ms == 1_000).count() < 30);
    assert_eq!(kept.iter().filter(|r| r.timestamp_ms == 10_000).count(), 100);
    // Once the new records are old too, everything sealed goes, but not the active segment.
    let report = log.enforce_retention(100_000).unwrap();
    assert!(report.segments > 0);
    assert_eq!(log.stats().segments, 1);
    assert_eq!(log.next_offset(), 200);
}

#[test]
fn retention_never_deletes_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = SegmentConfig { retention_bytes: Some(0), retention_ms: Some(0), ..small_config() };
    let mut log = open_clean(dir.path(), config);
    fill(&mut log, 100);
    log.enforce_retention(u64::MAX).unwrap();
    assert_eq!(log.stats().segments, 1);
    assert_eq!(segment_files(dir.path()).len(), 1);
    let first = log.first_offset();
    assert!(first > 0 && first < 100);
    assert_eq!(log.read_range(0, 1000, usize::MAX).unwrap().len() as u64, 100 - first);
    assert_eq!(log.append(0, 0, b"t", b"", b"x").unwrap(), 100);
}

#[test]
fn unlimited_retention_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_clean(dir.path(), small_config());
    fill(&mut log, 200);
    assert_eq!(log.enforce_retention(u64::MAX).unwrap().segments, 0);
    assert_eq!(log.first_offset(), 0);
}
