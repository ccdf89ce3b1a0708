//! Memory log: bounded by bytes with the oldest evicted and counted, zero-copy pushes,
//! refused records, offsets that keep counting.

mod support;

use bytes::Bytes;
use storage::{Error, Log, MemoryLog};
use support::*;

#[test]
fn eviction_keeps_the_newest_within_the_bound() {
    let mut log = MemoryLog::new(10_000, 1024).unwrap();
    fill(&mut log, 1000);
    assert_eq!(log.next_offset(), 1000);
    assert!(log.bytes() <= 10_000);
    assert!(log.evicted() > 0);
    assert_eq!(log.first_offset(), log.evicted());
    assert_eq!(log.len() as u64 + log.evicted(), 1000);
    assert!(MemoryLog::read(&log, log.first_offset() - 1).is_none());
    let first = log.first_offset();
    check(&MemoryLog::read(&log, first).unwrap(), first);
    check(&MemoryLog::read(&log, 999).unwrap(), 999);
    let all = read_all(&mut log, 0, 10);
    assert_eq!(all.len(), log.len());
    assert_eq!(all[0].offset, first);
    assert_eq!(log.durable_offset(), log.next_offset());
}

#[test]
fn push_shares_the_callers_bytes() {
    let mut log = MemoryLog::starting_at(500, 1 << 16, 1024).unwrap();
    let payload = Bytes::from_static(b"shared payload");
    let off = log.push(7, 0, Bytes::from_static(b"a/b"), Bytes::new(), payload.clone()).unwrap();
    assert_eq!(off, 500);
    let got = MemoryLog::read(&log, 500).unwrap();
    assert_eq!(got.payload.as_ptr(), payload.as_ptr(), "no copy");
    assert_eq!(log.first_offset(), 500);
}

#[test]
fn refused_records_change_nothing() {
    let mut log = MemoryLog::new(4096, 100).unwrap();
    assert!(matches!(Log::append(&mut log, 0, 0, b"t", b"", &[0u8; 100]), Err(Error::RecordTooLarge { .. })));
    assert!(matches!(Log::append(&mut log, 0, 0x80, b"t", b"", b""), Err(Error::InvalidFlags(0x80))));
    assert_eq!(log.next_offset(), 0);
    assert!(MemoryLog::<storage::Record>::new(10, 100).is_err(), "a record bound over the ring bound is refused");
}

#[test]
fn byte_bound_on_reads() {
    let mut log = MemoryLog::new(1 << 20, 1024).unwrap();
    fill(&mut log, 50);
    let one = MemoryLog::read(&log, 10).unwrap().encoded_len();
    assert_eq!(log.read_range(10, 100, 1).len(), 1);
    assert_eq!(log.read_range(10, 100, one).len(), 1);
    assert_eq!(log.read_range(10, 3, usize::MAX).len(), 3);
    assert!(log.read_range(50, 3, usize::MAX).is_empty());
}
