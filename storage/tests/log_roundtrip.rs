//! Segment log: append, read and read_range across segment rolls, reopen, the sync
//! protocol, and a property test against a model.

mod support;

use proptest::prelude::*;
use storage::{Error, Log, SegmentConfig, SegmentLog, SyncPoint};
use support::*;

#[test]
fn append_read_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_clean(dir.path(), small_config());
    fill(&mut log, 300);
    let stats = log.stats();
    assert!(stats.segments >= 10, "expected several rolls, got {stats:?}");
    assert_eq!(segment_files(dir.path()).len(), stats.segments);
    // Every segment but the active one respects the size bound.
    for f in &segment_files(dir.path())[..stats.segments - 1] {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 1024 && len > 0, "{f:?} has {len} bytes");
    }
    assert_eq!(log.first_offset(), 0);
    assert_eq!(log.next_offset(), 300);
    for i in (0..300).rev() {
        check(&log.read(i).unwrap().expect("record present"), i);
    }
    assert!(log.read(300).unwrap().is_none());
    let all = read_all(&mut log, 0, 7);
    assert_eq!(all.len(), 300);
    for (i, r) in all.iter().enumerate() {
        check(r, i as u64);
    }
}

#[test]
fn read_range_respects_its_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_clean(dir.path(), small_config());
    fill(&mut log, 100);
    let got = log.read_range(10, 5, usize::MAX).unwrap();
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![10, 11, 12, 13, 14]);
    // A byte bound stops before the record that would pass it...
    let first_two: usize = got[..2].iter().map(|r| r.encoded_len()).sum();
    let got = log.read_range(10, 100, first_two + 1).unwrap();
    assert_eq!(got.len(), 2);
    // ...but one record is always returned.
    let got = log.read_range(10, 100, 1).unwrap();
    assert_eq!(got.len(), 1);
    assert!(log.read_range(100, 10, usize::MAX).unwrap().is_empty());
    assert!(log.read_range(5, 0, usize::MAX).unwrap().is_empty());
    // A range crossing segment boundaries is contiguous.
    let got = log.read_range(3, 90, usize::MAX).unwrap();
    assert_eq!(got.len(), 90);
    for (k, r) in got.iter().enumerate() {
        check(r, 3 + k as u64);
    }
}

#[test]
fn reads_see_buffered_appends() {
    let dir = tempfile::tempdir().unwrap();
    let config = SegmentConfig { write_buffer_bytes: 1 << 20, ..small_config() };
    let mut log = open_clean(dir.path(), config);
    log.append(5, 0, b"a", b"", b"x").unwrap();
    assert_eq!(log.stats().buffered_bytes, 33);
    assert_eq!(&log.read(0).unwrap().unwrap().payload[..], b"x");
    assert_eq!(log.stats().buffered_bytes, 0, "the read flushed the buffer");
}

#[test]
fn reopen_after_sync_returns_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open_clean(dir.path(), small_config());
        fill(&mut log, 250);
        assert_eq!(log.sync().unwrap(), 250);
    }
    let (mut log, rec) = SegmentLog::open(dir.path(), small_config()).unwrap();
    assert_eq!(rec.next_offset, 250);
    assert_eq!(rec.records, 250);
    assert_eq!(rec.first_offset, 0);
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(rec.indexes_rebuilt, 0, "sealed segments trusted through their index files");
    assert_eq!(rec.segments, segment_files(dir.path()).len());
    assert_eq!(log.durable_offset(), 250);
    let all = read_all(&mut log, 0, 50);
    assert_eq!(all.len(), 250);
    for (i, r) in all.iter().enumerate() {
        check(r, i as u64);
    }
    fill(&mut log, 260);
    check(&log.read(259).unwrap().unwrap(), 259);
}

#[test]
fn appends_are_refused_without_side_effects() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_clean(dir.path(), small_config());
    let big = vec![0u8; 1024];
    assert!(matches!(log.append(0, 0, b"t", b"", &big), Err(Error::RecordTooLarge { max: 1024, .. })));
    assert!(matches!(log.append(0, 0x10, b"t", b"", b""), Err(Error::InvalidFlags(0x10))));
    assert!(matches!(log.append(0, 0x06, b"t", b"", b""), Err(Error::InvalidFlags(0x06))));
    assert_eq!(log.next_offset(), 0);
    assert_eq!(log.append(0, 0, b"t", b"", b"ok").unwrap(), 0);
}

#[test]
fn invalid_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        SegmentConfig { segment_bytes: u64::from(u32::MAX), ..SegmentConfig::default() },
        SegmentConfig { index_interval_bytes: 0, ..SegmentConfig::default() },
        SegmentConfig { index_interval_bytes: 16, ..SegmentConfig::default() },
        SegmentConfig { max_record_bytes: 10, ..SegmentConfig::default() },
        SegmentConfig { max_mapped_segments: 0, ..SegmentConfig::default() },
    ] {
        assert!(matches!(SegmentLog::open(dir.path(), bad), Err(Error::InvalidConfig(_))));
    }
}

#[test]
fn sync_point_protocol() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_clean(dir.path(), small_config());
    assert!(log.flush().unwrap().is_empty(), "nothing written: nothing to sync");
    fill(&mut log, 3);
    assert_eq!(log.durable_offset(), 0);
    let point = log.flush().unwrap();
    assert_send(&point);
    assert_eq!(point.upto(), 3);
    assert_eq!(point.len(), 1, "only the active file");
    assert_eq!(log.durable_offset(), 0, "flush alone promises nothing");
    let point = std::thread::spawn(move || -> SyncPoint {
        point.sync().unwrap();
        point
    })
    .join()
    .unwrap();
    log.mark_durable(point.upto());
    assert_eq!(log.durable_offset(), 3);
    log.mark_durable(1);
    assert_eq!(log.durable_offset(), 3, "never moves backwards");
    log.mark_durable(1000);
    assert_eq!(log.durable_offset(), 3, "never past the next offset");

    // A roll adds the sealed file and the directory to the next points until synced.
    let segments = log.stats().segments;
    fill(&mut log, 60);
    assert!(log.stats().segments > segments + 1);
    let dropped = log.flush().unwrap();
    assert!(dropped.len() >= 4, "sealed files + directory + active: {}", dropped.len());
    drop(dropped);
    fill(&mut log, 61);
    let point = log.flush().unwrap();
    assert!(point.len() >= 4, "a dropped point leaves its files pending");
    point.sync().unwrap();
    log.mark_durable(point.upto());
    fill(&mut log, 62);
    let point = log.flush().unwrap();
    assert_eq!(point.len(), 1, "after a synced point only the active file is left");
    assert_eq!(log.sync().unwrap(), 62);
}

#[test]
fn mapped_segments_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let config = SegmentConfig { max_mapped_segments: 2, ..small_config() };
    let mut log = open_clean(dir.path(), config);
    fill(&mut log, 300);
    for i in 0..300 {
        check(&log.read(i).unwrap().unwrap(), i);
        assert!(log.stats().mapped_segments <= 2, "{:?}", log.stats());
    }
    // Random access across segments keeps working after evictions.
    for i in [5, 290, 17, 150, 3, 299] {
        check(&log.read(i).unwrap().unwrap(), i);
    }
}

#[test]
fn both_engines_behave_alike_behind_the_trait() {
    fn exercise(log: &mut dyn Log) {
        fill_dyn(log, 40);
        assert_eq!(log.next_offset(), 40);
        check(&log.read(39).unwrap().unwrap(), 39);
        let got = log.read_range(10, 3, usize::MAX).unwrap();
        assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![10, 11, 12]);
        assert!(log.read(40).unwrap().is_none());
    }
    fn fill_dyn(log: &mut dyn Log, n: u64) {
        for i in log.next_offset()..n {
            let flags = storage::record::flags(i.is_multiple_of(3), (i % 3) as u8);
            assert_eq!(log.append(i, flags, &topic(i), &properties(i), &payload(i)).unwrap(), i);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    exercise(&mut open_clean(dir.path(), small_config()));
    exercise(&mut storage::MemoryLog::new(1 << 20, 1024).unwrap());
}

#[derive(Debug, Clone)]
enum Op {
    Append { topic_len: usize, props_len: usize, payload_len: usize },
    Flush,
    Read(u64),
    Range { from: u64, max_records: usize, max_bytes: usize },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..40, 0usize..8, 0usize..300)
            .prop_map(|(topic_len, props_len, payload_len)| Op::Append { topic_len, props_len, payload_len }),
        1 => Just(Op::Flush),
        2 => (0u64..200).prop_map(Op::Read),
        2 => (0u64..200, 0usize..20, 1usize..2000)
            .prop_map(|(from, max_records, max_bytes)| Op::Range { from, max_records, max_bytes }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn behaves_like_a_vector(ops in proptest::collection::vec(op(), 1..120), segment_bytes in 200u64..2000) {
        let dir = tempfile::tempdir().unwrap();
        let config = SegmentConfig {
            segment_bytes,
            index_interval_bytes: 50,
            write_buffer_bytes: 100,
            max_record_bytes: 400,
            ..SegmentConfig::default()
        };
        let mut log = SegmentLog::open(dir.path(), config.clone()).unwrap().0;
        let mut model: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = Vec::new();
        for op in ops {
            match op {
                Op::Append { topic_len, props_len, payload_len } => {
                    let n = model.len() as u8;
                    let rec = (vec![n; topic_len], vec![n ^ 0x55; props_len], vec![n ^ 0xAA; payload_len]);
                    let off = log.append(u64::from(n), 0, &rec.0, &rec.1, &rec.2).unwrap();
                    prop_assert_eq!(off, model.len() as u64);
                    model.push(rec);
                }
                Op::Flush => {
                    log.sync().unwrap();
                }
                Op::Read(offset) => {
                    let got = log.read(offset).unwrap();
                    match model.get(offset as usize) {
                        Some(want) => {
                            let got = got.expect("present");
                            prop_assert_eq!((&got.topic[..], &got.properties[..], &got.payload[..]),
                                (&want.0[..], &want.1[..], &want.2[..]));
                        }
                        None => prop_assert!(got.is_none()),
                    }
                }
                Op::Range { from, max_records, max_bytes } => {
                    let got = log.read_range(from, max_records, max_bytes).unwrap();
                    let available = model.len().saturating_sub(from as usize);
                    if max_records == 0 || available == 0 {
                        prop_assert!(got.is_empty());
                    } else {
                        prop_assert!(!got.is_empty());
                        prop_assert!(got.len() <= max_records.min(available));
                        let bytes: usize = got.iter().map(|r| r.encoded_len()).sum();
                        prop_assert!(got.len() == 1 || bytes <= max_bytes);
                        for (k, r) in got.iter().enumerate() {
                            prop_assert_eq!(r.offset, from + k as u64);
                            prop_assert_eq!(&r.payload[..], &model[r.offset as usize].2[..]);
                        }
                    }
                }
                Op::Reopen => {
                    log.sync().unwrap();
                    drop(log);
                    let (reopened, rec) = SegmentLog::open(dir.path(), config.clone()).unwrap();
                    prop_assert_eq!(rec.truncated_bytes, 0);
                    prop_assert_eq!(rec.next_offset, model.len() as u64);
                    log = reopened;
                }
            }
        }
        log.sync().unwrap();
        let all = read_all(&mut log, 0, 13);
        prop_assert_eq!(all.len(), model.len());
    }
}

#[test]
fn drop_writes_the_buffer_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = SegmentConfig { write_buffer_bytes: 1 << 20, ..small_config() };
    let mut log = open_clean(dir.path(), config.clone());
    fill(&mut log, 5);
    assert!(log.stats().buffered_bytes > 0);
    drop(log);
    let (log, rec) = SegmentLog::open(dir.path(), config).unwrap();
    assert_eq!(rec.next_offset, 5, "offsets handed out before a clean drop are not reused");
    assert_eq!(log.next_offset(), 5);
}
