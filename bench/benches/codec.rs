//! PUBLISH encode and decode with RingMQ's codec (`proto::Packet::write`, `proto::read`).
//!
//! The matrix is MQTT 3.1.1 and 5.0 × QoS 0 and 1 × 64 B and 1 KiB payloads, on the topic
//! `devices/1234/telemetry` with no 5.0 properties. One iteration handles a read buffer or an
//! outbox of [`FRAMES`] packets, as the broker's read loop and writer see them, and the
//! throughput is reported in packets (elements) per second:
//!
//! - `encode`: append [`FRAMES`] PUBLISH packets to a cleared, reused output buffer;
//! - `decode`: split and decode every frame of a buffer holding [`FRAMES`] PUBLISH frames
//!   (the buffer is copied outside the timing, just before each iteration, so it is warm in
//!   cache like a buffer just read into; dropping the decoded packets is inside).
//!
//! Run: `cargo bench -p bench --bench codec` (add e.g. `-- --warm-up-time 1
//! --measurement-time 2` for other timings, or a name filter such as `-- decode/v5`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use proto::{Bytes, BytesMut, Packet, Protocol, Publish, QoS};

/// Packets per iteration: about what one 64 KiB read holds of the 1 KiB case, and enough
/// that the per-iteration overhead of the measurement disappears for the 64 B case.
const FRAMES: usize = 32;
/// Limit handed to `proto::read`: far above every frame here, so it never refuses one.
const MAX_PACKET: usize = 1 << 20;

/// One case of the matrix.
struct Case {
    protocol: Protocol,
    qos: QoS,
    payload: usize,
}

impl Case {
    fn all() -> Vec<Case> {
        let mut cases = Vec::new();
        for protocol in [Protocol::V4, Protocol::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
                for payload in [64, 1024] {
                    cases.push(Case { protocol, qos, payload });
                }
            }
        }
        cases
    }

    fn name(&self) -> String {
        let version = match self.protocol {
            Protocol::V4 => "v311",
            Protocol::V5 => "v5",
        };
        format!("{version}/qos{}/{}B", self.qos as u8, self.payload)
    }

    /// The packets of one iteration; QoS 1 packets get distinct, non-zero packet ids.
    fn packets(&self) -> Vec<Packet> {
        let payload = Bytes::from(vec![0xa5u8; self.payload]);
        (0..FRAMES)
            .map(|i| {
                let mut p = Publish::new(Bytes::from_static(b"devices/1234/telemetry"), self.qos, payload.clone());
                if self.qos != QoS::AtMostOnce {
                    p.pkid = i as u16 + 1;
                }
                Packet::Publish(p)
            })
            .collect()
    }
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(FRAMES as u64));
    for case in Case::all() {
        let packets = case.packets();
        let capacity: usize = packets.iter().map(|p| p.size(case.protocol)).sum();
        let mut out = BytesMut::with_capacity(capacity);
        group.bench_function(BenchmarkId::from_parameter(case.name()), |b| {
            b.iter(|| {
                out.clear();
                for p in &packets {
                    if let Err(e) = p.write(case.protocol, &mut out) {
                        panic!("encode failed: {e}");
                    }
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(FRAMES as u64));
    for case in Case::all() {
        let mut wire = BytesMut::new();
        for p in case.packets() {
            if let Err(e) = p.write(case.protocol, &mut wire) {
                panic!("encode failed: {e}");
            }
        }
        let wire = wire.freeze();
        group.bench_function(BenchmarkId::from_parameter(case.name()), |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| {
                    let mut payload_bytes = 0;
                    while !buf.is_empty() {
                        match proto::read(&mut buf, case.protocol, MAX_PACKET) {
                            Ok(Packet::Publish(p)) => payload_bytes += p.payload.len(),
                            other => panic!("expected a PUBLISH, got {other:?}"),
                        }
                    }
                    black_box(payload_bytes)
                },
                // One fresh buffer per timed iteration: it is still in cache, as a buffer the
                // broker has just read into is. The timer costs well under 1 % of a routine.
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // 16 cases per group: short timings keep the whole file near half a minute.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(20);
    targets = encode, decode
}
criterion_main!(benches);
