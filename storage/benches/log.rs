//! Segment log benchmarks: append throughput of 1 KiB records (flushed, not fsynced),
//! sequential `read_range` throughput, and the time to open (recover) a large log.
//!
//! `cargo bench -p storage --bench log -- --quick`
//!
//! The recovery benches build a log of `STORAGE_BENCH_RECOVERY_MB` MiB (default 1024) once,
//! under `target/storage-bench/`, and reuse it on later runs. They run with a warm page
//! cache: they measure the CPU side of recovery (CRC of the active segment, index and tail
//! checks of the sealed ones), not the disk.

use std::fs;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use storage::{record, Record, SegmentConfig, SegmentLog};

/// Payload bytes per record.
const PAYLOAD: usize = 1024;
/// Records per measured iteration.
const BATCH: u64 = 1000;
const TOPIC: &[u8] = b"devices/0042/telemetry";

fn bench_root() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let root = target.join("storage-bench");
    fs::create_dir_all(&root).expect("create bench directory");
    root
}

fn record_len() -> u64 {
    record::encoded_len(TOPIC.len(), 0, PAYLOAD) as u64
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(bench_root()).unwrap();
    // Retention keeps the disk use of a long run near 256 MiB.
    let config = SegmentConfig { retention_bytes: Some(256 << 20), ..SegmentConfig::default() };
    let (mut log, _) = SegmentLog::open(dir.path(), config).unwrap();
    let payload = vec![0xA5u8; PAYLOAD];
    let mut now = 1_700_000_000_000u64;
    let mut run = |log: &mut SegmentLog| {
        for _ in 0..BATCH {
            now += 1;
            black_box(log.append(now, record::flags(false, 1), TOPIC, b"", &payload).unwrap());
        }
        let point = log.flush().unwrap();
        // Policy `never`: nothing will sync, so let go of the rolled files.
        log.mark_durable(point.upto());
        log.enforce_retention(now).unwrap();
    };
    let mut group = c.benchmark_group("append_1KiB_flush");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("records", |b| b.iter(|| run(&mut log)));
    group.throughput(Throughput::Bytes(BATCH * record_len()));
    group.bench_function("bytes", |b| b.iter(|| run(&mut log)));
    group.finish();
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(bench_root()).unwrap();
    // 64 MiB in 16 MiB segments: reads cross sealed (mapped) segments and the active one.
    let config = SegmentConfig { segment_bytes: 16 << 20, ..SegmentConfig::default() };
    let (mut log, _) = SegmentLog::open(dir.path(), config).unwrap();
    let payload = vec![0x5Au8; PAYLOAD];
    let records = (64u64 << 20) / record_len();
    for i in 0..records {
        log.append(i, 0, TOPIC, b"", &payload).unwrap();
    }
    log.sync().unwrap();
    let mut cursor = 0u64;
    let mut out: Vec<Record> = Vec::with_capacity(BATCH as usize);
    let mut group = c.benchmark_group("read_range_1KiB");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("sequential", |b| {
        b.iter(|| {
            let mut got = 0;
            while got < BATCH as usize {
                if cursor >= log.next_offset() {
                    cursor = 0;
                }
                out.clear();
                let n = log.read_range_into(cursor, BATCH as usize - got, 1 << 20, &mut out).unwrap();
                cursor += n as u64;
                got += n;
                black_box(&out);
            }
        })
    });
    group.finish();
}

/// Builds (once) a log of `mb` MiB and returns its directory.
fn recovery_log(mb: u64) -> PathBuf {
    let dir = bench_root().join(format!("recovery-{mb}MiB"));
    let marker = dir.join("complete");
    if marker.exists() {
        return dir;
    }
    let _ = fs::remove_dir_all(&dir);
    let (mut log, _) = SegmentLog::open(&dir, SegmentConfig::default()).unwrap();
    let payload = vec![0x3Cu8; PAYLOAD];
    let records = (mb << 20) / record_len();
    for i in 0..records {
        log.append(i, 0, TOPIC, b"", &payload).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    fs::write(&marker, records.to_string()).unwrap();
    dir
}

fn recovery(c: &mut Criterion) {
    let mb: u64 = std::env::var("STORAGE_BENCH_RECOVERY_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let dir = recovery_log(mb);
    let mut group = c.benchmark_group(format!("recovery_{mb}MiB"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(mb << 20));
    group.bench_function("open", |b| {
        b.iter(|| {
            let (log, rec) = SegmentLog::open(&dir, SegmentConfig::default()).unwrap();
            assert_eq!(rec.truncated_bytes, 0);
            black_box(log.next_offset())
        })
    });
    // Worst case short of damage: every index file lost, every segment scanned.
    group.bench_function("open_rebuilding_indexes", |b| {
        b.iter_batched(
            || {
                for entry in fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.extension().is_some_and(|e| e == "idx") {
                        fs::remove_file(path).unwrap();
                    }
                }
            },
            |()| {
                let (log, rec) = SegmentLog::open(&dir, SegmentConfig::default()).unwrap();
                assert_eq!(rec.indexes_rebuilt + 1, rec.segments);
                black_box(log.next_offset())
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, append, read, recovery);
criterion_main!(benches);
