//! Topic matching in `shards::trie::TopicTrie`, the structure behind every shard's local and
//! interest tries, with 10,000 filters.
//!
//! The filters (all distinct, `{i}` = 0..10,000) are a mix of kinds, by `i % 20`:
//!
//! | share | filter | kind |
//! |---|---|---|
//! | 60 % | `devices/{i}/telemetry` | exact |
//! | 15 % | `sites/{i}/+/telemetry` | single-level wildcard |
//! | 15 % | `devices/{i}/#` | multi-level wildcard |
//! | 10 % | `+/{i}/status` | leading wildcard: every topic walks this branch of the root |
//!
//! The topics ([`TOPICS`] of them, fixed pseudo-random draw) are telemetry, status, a
//! site's device telemetry, deep topics under a device, and topics nothing matches; see
//! [`topics`]. Benchmarks:
//!
//! - `topic_match/match_10k`: match every topic once (throughput: topics per second);
//! - `topic_match/insert_10k`: build a trie of the 10,000 filters from empty (throughput:
//!   filters per second; dropping the trie is outside the timing).
//!
//! Run: `cargo bench -p bench --bench topic_match`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shards::trie::TopicTrie;

/// Number of filters in the trie.
const FILTERS: usize = 10_000;
/// Topics matched per iteration: enough distinct ones that the trie's hot paths do not all
/// sit in L1, few enough that building them is instant.
const TOPICS: usize = 4096;

fn filters() -> Vec<String> {
    (0..FILTERS)
        .map(|i| match i % 20 {
            0..=11 => format!("devices/{i}/telemetry"),
            12..=14 => format!("sites/{i}/+/telemetry"),
            15..=17 => format!("devices/{i}/#"),
            _ => format!("+/{i}/status"),
        })
        .collect()
}

/// A fixed xorshift sequence: the same topics on every run, no dependency.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The topic mix, by share: 50 % device telemetry, 15 % device status, 15 % site device
/// telemetry, 10 % deep topics under a device, 10 % topics that match nothing. Ids are drawn
/// from 0..FILTERS, so each kind hits its filters for some ids and misses for others.
fn topics() -> Vec<Vec<u8>> {
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    (0..TOPICS)
        .map(|_| {
            let id = draw.below(FILTERS);
            let topic = match draw.below(20) {
                0..=9 => format!("devices/{id}/telemetry"),
                10..=12 => format!("devices/{id}/status"),
                13..=15 => format!("sites/{id}/dev{}/telemetry", draw.below(64)),
                16..=17 => format!("devices/{id}/telemetry/raw/{}", draw.below(8)),
                _ => format!("unknown/{id}/metrics"),
            };
            topic.into_bytes()
        })
        .collect()
}

fn build(filters: &[String]) -> TopicTrie<u32> {
    let mut trie = TopicTrie::new();
    for (i, f) in filters.iter().enumerate() {
        *trie.entry(f, || 0) = i as u32;
    }
    trie
}

fn topic_match(c: &mut Criterion) {
    let filters = filters();
    let topics = topics();
    let trie = build(&filters);
    assert_eq!(trie.len(), FILTERS, "the filters are distinct");
    let mut total = 0usize;
    for t in &topics {
        trie.matches(t, |_| total += 1);
    }
    // Printed once so a change of the mix shows up next to the figures.
    println!("topic_match: {TOPICS} topics match {total} filter values in all");

    let mut group = c.benchmark_group("topic_match");
    group.throughput(Throughput::Elements(TOPICS as u64));
    group.bench_function("match_10k", |b| {
        b.iter(|| {
            let mut hits = 0u64;
            for t in &topics {
                trie.matches(t, |v| hits += u64::from(*v));
            }
            black_box(hits)
        })
    });
    group.throughput(Throughput::Elements(FILTERS as u64));
    group.bench_function("insert_10k", |b| b.iter_with_large_drop(|| build(&filters)));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = topic_match
}
criterion_main!(benches);
