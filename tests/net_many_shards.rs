//! A node of 96 shards (past the 64 a bitmask could name), unpinned on this small
//! machine, routes messages between all of them: a wildcard subscriber on shard 95 and a
//! plain one on shard 70 get messages of topics owned by shards on both sides of 64.
//! A file of its own: starting 96 shards takes most of a minute on 2 cores, so it runs
//! alone rather than beside other tests.

mod support;

use support::*;

/// The shard a client id or topic belongs to on a node of `shards` shards over
/// `partitions` partitions.
fn shard_of(key: &str, partitions: u32, shards: usize) -> usize {
    shards::route::PartitionTable::new(partitions, shards).shard_of(key.as_bytes())
}

/// A key with `prefix` whose shard is `want`.
fn key_on(prefix: &str, want: usize, partitions: u32, shards: usize) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|k| shard_of(k, partitions, shards) == want)
        .unwrap_or_else(|| panic!("no key with prefix {prefix} on shard {want}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ninety_six_shards_route_between_all_of_them() {
    const SHARDS: usize = 96;
    const PARTS: u32 = 192;
    let broker = TestBroker::start_with(|c| {
        c.shards = SHARDS;
        c.partitions = PARTS;
        c.pin = false;
    });
    let pre = unique_topic("s96");
    // Subscribers whose sessions live on shards past 64, publishers on shards below.
    let (mut wild, _) = Mqtt5::connect(&broker, &key_on(&unique_id("wild"), 95, PARTS, SHARDS)).await;
    wild.subscribe(&format!("{pre}/#"), 1).await;
    let (mut plain, _) = Mqtt4::connect(&broker, &key_on(&unique_id("plain"), 70, PARTS, SHARDS)).await;
    let topics: Vec<String> =
        [3, 64, 65, 90, 95].iter().map(|s| key_on(&format!("{pre}/t"), *s, PARTS, SHARDS)).collect();
    for t in &topics {
        plain.subscribe(t, 1).await;
    }
    let (mut publ, _) = Mqtt4::connect(&broker, &key_on(&unique_id("pub"), 1, PARTS, SHARDS)).await;
    for t in &topics {
        publ.publish_acked(t, 1, false, t.as_bytes().to_vec()).await;
    }
    let mut got_wild: Vec<String> = wild.publishes(topics.len()).await.iter().map(topic5).collect();
    let mut got_plain: Vec<String> = plain.publishes(topics.len()).await.iter().map(|p| p.topic.clone()).collect();
    got_wild.sort();
    got_plain.sort();
    let mut want = topics.clone();
    want.sort();
    assert_eq!(got_wild, want, "the wildcard subscriber on shard 95 gets every owner's messages");
    assert_eq!(got_plain, want, "the plain subscriber on shard 70 gets each topic from its owner");
    wild.expect_no_publish(QUIET).await;
    let m = broker.metrics();
    assert_eq!(m.shards.len(), SHARDS);
}
