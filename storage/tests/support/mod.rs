//! Helpers shared by the storage integration tests: small configurations, deterministic
//! records, and tools to look at and damage segment files the way a crash or a bad disk
//! would.
#![allow(dead_code)] // each test binary uses its own subset

use std::fs;
use std::path::{Path, PathBuf};

use storage::record::{self, RecordView};
use storage::{Log, SegmentConfig, SegmentLog};

/// Segments of 1 KiB and an index entry every 64 bytes: a few dozen records roll several
/// segments and every lookup uses the index.
pub fn small_config() -> SegmentConfig {
    SegmentConfig {
        segment_bytes: 1024,
        index_interval_bytes: 64,
        write_buffer_bytes: 256,
        max_record_bytes: 1024,
        ..SegmentConfig::default()
    }
}

/// Deterministic topic of record `i`.
pub fn topic(i: u64) -> Vec<u8> {
    format!("devices/{}/telemetry", i % 7).into_bytes()
}

/// Deterministic payload of record `i`, 10 to 60 bytes.
pub fn payload(i: u64) -> Vec<u8> {
    let len = 10 + (i * 37 % 51) as usize;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}

/// Deterministic properties of record `i`: empty for even `i`.
pub fn properties(i: u64) -> Vec<u8> {
    if i.is_multiple_of(2) {
        Vec::new()
    } else {
        vec![0x01, (i % 2) as u8]
    }
}

/// Appends records `next_offset()..n` with the deterministic fields above (timestamp = i).
pub fn fill(log: &mut impl Log, n: u64) {
    for i in log.next_offset()..n {
        let off = log
            .append(i, record::flags(i.is_multiple_of(3), (i % 3) as u8), &topic(i), &properties(i), &payload(i))
            .unwrap();
        assert_eq!(off, i);
    }
}

/// Asserts that `r` is the deterministic record `i`.
pub fn check(r: &storage::Record, i: u64) {
    assert_eq!(r.offset, i);
    assert_eq!(r.timestamp_ms, i);
    assert_eq!(r.flags, record::flags(i.is_multiple_of(3), (i % 3) as u8));
    assert_eq!(&r.topic[..], &topic(i)[..], "topic of {i}");
    assert_eq!(&r.properties[..], &properties(i)[..], "properties of {i}");
    assert_eq!(&r.payload[..], &payload(i)[..], "payload of {i}");
}

/// Opens a log in `dir` with `config`, asserting nothing was repaired.
pub fn open_clean(dir: &Path, config: SegmentConfig) -> SegmentLog {
    let (log, rec) = SegmentLog::open(dir, config).unwrap();
    assert_eq!(rec.truncated_bytes, 0, "{rec:?}");
    log
}

/// Segment files of a log directory, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Index files of a log directory.
pub fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    files.sort();
    files
}

/// (offset, position, length) of every record in a segment file, decoded with the public
/// record codec.
pub fn layout(path: &Path) -> Vec<(u64, usize, usize)> {
    let data = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let view: RecordView<'_> = record::decode(&data[pos..]).unwrap();
        out.push((view.offset, pos, view.encoded_len()));
        pos += view.encoded_len();
    }
    out
}

/// Flips one bit of the byte at `pos`.
pub fn flip(path: &Path, pos: usize) {
    let mut data = fs::read(path).unwrap();
    data[pos] ^= 0x20;
    fs::write(path, data).unwrap();
}

/// Appends raw bytes to a file.
pub fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

/// The encoding of record `offset` with the deterministic fields.
pub fn encoded(offset: u64) -> Vec<u8> {
    let (t, p, pl) = (topic(offset), properties(offset), payload(offset));
    let view = RecordView { offset, timestamp_ms: offset, flags: 0, topic: &t, properties: &p, payload: &pl };
    let mut out = Vec::new();
    view.encode(&mut out).unwrap();
    out
}

/// Every record from `from` on, read in batches of `batch`.
pub fn read_all(log: &mut impl Log, from: u64, batch: usize) -> Vec<storage::Record> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let got = log.read_range(next, batch, usize::MAX).unwrap();
        let Some(last) = got.last() else { break };
        next = last.offset + 1;
        out.extend(got);
    }
    out
}
