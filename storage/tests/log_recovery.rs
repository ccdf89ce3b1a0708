//! Segment log recovery: torn and corrupt tails of the active segment, corruption in the
//! middle of it, damage in sealed segments, and lost or bad index files. Every case checks
//! what is reported, that nothing failing its CRC is served, and where appends continue.

mod support;

use std::fs;

use storage::{Corruption, Damage, SegmentConfig, SegmentLog};
use support::*;

/// One big segment, so every record sits in the active one.
fn one_segment() -> SegmentConfig {
    SegmentConfig { segment_bytes: 1 << 20, ..small_config() }
}

fn synced_log(dir: &std::path::Path, config: SegmentConfig, n: u64) {
    let mut log = open_clean(dir, config);
    fill(&mut log, n);
    log.sync().unwrap();
}

#[test]
fn torn_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    synced_log(dir.path(), one_segment(), 100);
    let active = segment_files(dir.path()).pop().unwrap();
    let partial = encoded(100);
    append_bytes(&active, &partial[..partial.len() / 2]);

    let (mut log, rec) = SegmentLog::open(dir.path(), one_segment()).unwrap();
    assert_eq!(rec.truncated_bytes, (partial.len() / 2) as u64);
    assert_eq!(rec.truncations.len(), 1);
    assert_eq!(rec.truncations[0].cause, Damage::Torn);
    assert_eq!(rec.next_offset, 100);
    assert_eq!(rec.skipped_offsets, 0);
    assert_eq!(log.read_range(0, 1000, usize::MAX).unwrap().len(), 100);
    assert_eq!(log.append(100, 0, b"t", b"", b"after").unwrap(), 100);
    log.sync().unwrap();
    drop(log);
    let (mut log, rec) = SegmentLog::open(dir.path(), one_segment()).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(&log.read(100).unwrap().unwrap().payload[..], b"after");
}

#[test]
fn every_cut_of_the_last_record_recovers_the_ones_before() {
    let dir = tempfile::tempdir().unwrap();
    synced_log(dir.path(), one_segment(), 20);
    let active = segment_files(dir.path()).pop().unwrap();
    let full = fs::read(&active).unwrap();
    let (_, last_pos, last_len) = *layout(&active).last().unwrap();
    for cut in last_pos..last_pos + last_len {
        fs::write(&active, &full[..cut]).unwrap();
        let (mut log, rec) = SegmentLog::open(dir.path(), one_segment()).unwrap();
        assert_eq!(rec.next_offset, 19, "cut at {cut}");
        assert_eq!(rec.truncated_bytes, (cut - last_pos) as u64);
        assert_eq!(log.read_range(0, 100, usize::MAX).unwrap().len(), 19);
    }
}

#[test]
fn bit_flip_in_the_last_record_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    synced_log(dir.path(), one_segment(), 50);
    let active = segment_files(dir.path()).pop().unwrap();
    let (_, pos, len) = *layout(&active).last().unwrap();
    flip(&active, pos + len - 1);

    let (mut log, rec) = SegmentLog::open(dir.path(), one_segment()).unwrap();
    assert_eq!(rec.truncated_bytes, len as u64);
    assert!(matches!(rec.truncations[0].cause, Damage::Corrupt(Corruption::BadCrc { .. })), "{rec:?}");
    assert_eq!(rec.next_offset, 49);
    assert!(log.read(49).unwrap().is_none());
    check(&log.read(48).unwrap().unwrap(), 48);
    assert_eq!(log.append(49, 0, b"t", b"", b"again").unwrap(), 49);
}

#[test]
fn zeroed_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    synced_log(dir.path(), one_segment(), 10);
    let active = segment_files(dir.path()).pop().unwrap();
    append_bytes(&active, &[0u8; 4096]);
    let (_, rec) = SegmentLog::open(dir.path(), one_segment()).unwrap();
    assert_eq!(rec.truncated_bytes, 4096);
    assert_eq!(rec.truncations[0].cause, Damage::Corrupt(Corruption::BadLength(0)));
    assert_eq!(rec.next_offset, 10);
}

#[test]
fn corruption_mid_active_segment_never_reuses_offsets() {
    let dir = tempfile::tempdir().unwrap();
    synced_log(dir.path(), one_segment(), 100);
    let active = segment_files(dir.path()).pop().unwrap();
    let (offset, pos, _) = layout(&active)[50];
    assert_eq!(offset, 50);
    flip(&active, pos + 20);

    let (mut log, rec) = SegmentLog::open(dir.path(), one_segment()).unwrap();
    assert_eq!(rec.truncations.len(), 1);
    assert_eq!(rec.truncations[0].position, pos as u64, "cut where the damage starts");
    assert!(matches!(rec.truncations[0].cause, Damage::Corrupt(Corruption::BadCrc { .. })));
    // Records 51..99 still validated: their offsets are skipped, not handed out again.
    assert_eq!(rec.skipped_offsets, 50);
    assert_eq!(rec.next_offset, 100);
    assert_eq!(rec.records, 50);
    for i in 50..100 {
        assert!(log.read(i).unwrap().is_none(), "offset {i} was cut");
    }
    let got = log.read_range(0, 1000, usize::MAX).unwrap();
    assert_eq!(got.len(), 50);
    assert_eq!(log.append(0, 0, b"t", b"", b"new").unwrap(), 100);
    assert_eq!(log.read_range(40, 1000, usize::MAX).unwrap().iter().map(|r| r.offset).collect::<Vec<_>>(), {
        let mut v: Vec<u64> = (40..50).collect();
        v.push(100);
        v
    });
    // The skip survives a restart even before anything is appended past it.
    drop(log);
    let dir2 = tempfile::tempdir().unwrap();
    synced_log(dir2.path(), one_segment(), 30);
    let active = segment_files(dir2.path()).pop().unwrap();
    let (_, pos, _) = layout(&active)[10];
    flip(&active, pos + 20);
    let (log, rec) = SegmentLog::open(dir2.path(), one_segment()).unwrap();
    assert_eq!(rec.next_offset, 30);
    drop(log);
    let (log, rec) = SegmentLog::open(dir2.path(), one_segment()).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(log.next_offset(), 30, "the new segment's name carries the next offset");
}

#[test]
fn lost_active_segment_contents_continue_from_its_name() {
    let dir = tempfile::tempdir().unwrap();
    synced_log(dir.path(), small_config(), 100);
    let files = segment_files(dir.path());
    let active = files.last().unwrap();
    let base: u64 = active.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    assert!(base > 0);
    fs::write(active, b"").unwrap();
    let (log, rec) = SegmentLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(rec.next_offset, base);
    assert_eq!(log.next_offset(), base);
    assert_eq!(rec.truncated_bytes, 0, "an empty file has nothing to cut");
}

#[test]
fn corruption_inside_a_sealed_segment_is_skipped_not_served() {
    let dir = tempfile::tempdir().unwrap();
    synced_log(dir.path(), small_config(), 200);
    let files = segment_files(dir.path());
    let sealed = &files[2];
    let records = layout(sealed);
    assert!(records.len() >= 6, "need a segment with a few records");
    // Damage the second record: the index file and the tail stay valid, so open trusts the
    // segment and the damage is met by reads.
    let (bad, pos, _) = records[1];
    flip(sealed, pos + 25);
    let (mut log, rec) = SegmentLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(rec.next_offset, 200);
    assert!(log.read(bad).unwrap().is_none(), "a record failing its CRC is never served");
    let all = read_all(&mut log, 0, 1000);
    assert!(all.iter().all(|r| r.offset != bad));
    // Only records up to the next index entry are lost.
    let lost: Vec<u64> = (0..200).filter(|i| !all.iter().any(|r| r.offset == *i)).collect();
    assert!(!lost.is_empty() && lost.len() <= 3, "lost {lost:?}");
    assert!(lost.iter().all(|&i| i >= bad && i < records.last().unwrap().0));
    for r in &all {
        check(r, r.offset);
    }
    assert!(all.windows(2).all(|w| w[0].offset < w[1].offset));
    assert!(log.stats().corrupt_skips > 0);
}

#[test]
fn damaged_tail_of_a_sealed_segment_is_cut_at_open() {
    let dir = tempfile::tempdir().unwrap();
    synced_log(dir.path(), small_config(), 200);
    let files = segment_files(dir.path());
    let sealed = &files[1];
    let (last, pos, len) = *layout(sealed).last().unwrap();
    flip(sealed, pos + len - 2);
    let (mut log, rec) = SegmentLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(rec.indexes_rebuilt, 1);
    assert_eq!(rec.truncations.len(), 1);
    let base: u64 = sealed.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    assert_eq!(rec.truncations[0].segment, base);
    assert_eq!(rec.truncations[0].bytes, len as u64);
    assert_eq!(rec.next_offset, 200, "later segments are untouched");
    assert!(log.read(last).unwrap().is_none());
    check(&log.read(last + 1).unwrap().unwrap(), last + 1);
    assert_eq!(read_all(&mut log, 0, 1000).len(), 199);
    // The rewritten index is trusted next time.
    drop(log);
    let (_, rec) = SegmentLog::open(dir.path(), small_config()).unwrap();
    assert_eq!((rec.indexes_rebuilt, rec.truncated_bytes, rec.records), (0, 0, 199));
}

#[test]
fn lost_or_garbage_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    synced_log(dir.path(), small_config(), 150);
    let indexes = index_files(dir.path());
    let sealed = segment_files(dir.path()).len() - 1;
    assert_eq!(indexes.len(), sealed, "one index per sealed segment");
    fs::remove_file(&indexes[0]).unwrap();
    fs::write(&indexes[1], b"garbage").unwrap();
    flip(&indexes[2], 3);
    fs::write(dir.path().join("00000000000000000007.idx.tmp"), b"leftover").unwrap();
    fs::write(dir.path().join("00000000000000999999.idx"), b"orphan").unwrap();

    let (mut log, rec) = SegmentLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(rec.indexes_rebuilt, 3);
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(index_files(dir.path()).len(), sealed, "rebuilt, leftovers and orphans removed");
    assert!(!dir.path().join("00000000000000000007.idx.tmp").exists());
    let all = read_all(&mut log, 0, 1000);
    assert_eq!(all.len(), 150);
    for r in &all {
        check(r, r.offset);
    }
}

#[test]
fn index_lost_after_open_is_rebuilt_by_the_first_read() {
    let dir = tempfile::tempdir().unwrap();
    synced_log(dir.path(), small_config(), 100);
    let (mut log, _) = SegmentLog::open(dir.path(), small_config()).unwrap();
    fs::write(&index_files(dir.path())[0], b"x").unwrap();
    check(&log.read(1).unwrap().unwrap(), 1);
    assert_eq!(log.stats().indexes_rebuilt, 1);
}
