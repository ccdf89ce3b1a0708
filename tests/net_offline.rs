//! Offline messages by reference: a session that is away keeps positions in its topics'
//! partition logs (the memory ring of a `memory` topic, the segment log of a `segment`
//! topic), not copies; they are read back when it returns. The memory ring's byte bound
//! evicts the oldest, segment retention deletes whole segments, and what an offline
//! session lost that way is counted, never served out of order.

mod support;

use std::time::Duration;

use support::*;

/// Sequence numbers of received payloads `"{seq:05} ..."`.
fn seqs(v: &[rumqttc::Publish]) -> Vec<u32> {
    v.iter().map(|p| std::str::from_utf8(&p.payload[..5]).unwrap().parse().unwrap()).collect()
}

fn payload(i: u32, size: usize) -> Vec<u8> {
    let mut p = format!("{i:05} ").into_bytes();
    p.resize(size, b'x');
    p
}

async fn persistent4(broker: &TestBroker, id: &str) -> (Mqtt4, rumqttc::ConnAck) {
    Mqtt4::connect_with(broker, id, |o| {
        o.set_clean_session(false);
    })
    .await
}

/// Subscribes a persistent session to `topic` (QoS 1), takes it offline, publishes `n`
/// messages of `size` bytes, waits for a sweep, and brings it back: returns what arrived.
async fn away_while_published(broker: &TestBroker, topic: &str, n: u32, size: usize) -> Vec<u32> {
    let id = unique_id("off-sub");
    let (mut sub, _) = persistent4(broker, &id).await;
    sub.subscribe(topic, 1).await;
    drop(sub);
    broker.wait_connections(0, WAIT).await;
    let (mut publ, _) = Mqtt4::connect(broker, &unique_id("off-pub")).await;
    for i in 0..n {
        publ.publish_acked(topic, 1, false, payload(i, size)).await;
    }
    // Counters and retention move with the sweep (500 ms).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (mut sub, ack) = persistent4(broker, &id).await;
    assert!(ack.session_present);
    seqs(&sub.collect_publishes(QUIET, n as usize + 1).await)
}

/// What arrived is the newest `got.len()` messages of `n`, in order, and the lost count
/// covers the rest.
fn assert_newest_in_order(got: &[u32], n: u32, lost: u64) {
    let first = n - got.len() as u32;
    assert_eq!(got, (first..n).collect::<Vec<_>>(), "the newest messages, in order, none twice");
    assert_eq!(lost, u64::from(first), "every message not delivered is counted as lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_ring_evicts_the_oldest_offline_messages_and_counts_them() {
    // A 64 KiB ring per partition holds about 55 messages of 1 KiB; the session's own
    // bound (1000 by default) would have kept all 200.
    let broker = TestBroker::start_with(|c| c.storage.memory_bytes = 64 * 1024);
    let topic = unique_topic("off-ring");
    let got = away_while_published(&broker, &topic, 200, 1024).await;
    assert!((30..=64).contains(&got.len()), "about 64 KiB of messages kept, got {}", got.len());
    let (evicted, lost) = broker.offline_counters();
    assert!(evicted >= 200 - 64, "evictions counted: {evicted}");
    assert_newest_in_order(&got, 200, lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_within_the_ring_all_arrive() {
    let broker = TestBroker::start();
    let topic = unique_topic("off-all");
    let got = away_while_published(&broker, &topic, 300, 100).await;
    assert_newest_in_order(&got, 300, broker.offline_counters().1);
    assert_eq!(got.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_deleted_by_retention_are_counted_for_the_offline_session() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(|c| {
        c.storage.data_dir = dir.path().to_path_buf();
        c.storage.engine = ringmq::Engine::Segment;
        c.storage.fsync = ringmq::Fsync::Never;
        c.storage.segment_bytes = 64 * 1024;
        c.storage.retention_bytes = Some(64 * 1024);
    });
    let topic = unique_topic("off-ret");
    let got = away_while_published(&broker, &topic, 400, 1024).await;
    assert!(!got.is_empty() && got.len() < 400, "retention deleted the oldest segments: {} left", got.len());
    assert_newest_in_order(&got, 400, broker.offline_counters().1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_messages_come_before_those_published_after_the_return() {
    let broker = TestBroker::start();
    let topic = unique_topic("off-order");
    let id = unique_id("off-sub");
    let (mut sub, _) = persistent4(&broker, &id).await;
    sub.subscribe(&topic, 1).await;
    drop(sub);
    broker.wait_connections(0, WAIT).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("off-pub")).await;
    for i in 0..500 {
        publ.publish_acked(&topic, 1, false, payload(i, 64)).await;
    }
    // The publisher goes on while the session comes back and its parked messages are read.
    let more = tokio::spawn(async move {
        for i in 500..1000 {
            publ.publish_acked(&topic, 1, false, payload(i, 64)).await;
        }
    });
    let (mut sub, _) = persistent4(&broker, &id).await;
    let got = seqs(&sub.publishes(1000).await);
    more.await.unwrap();
    assert_eq!(got, (0..1000).collect::<Vec<_>>(), "one order: parked first, then live");
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_messages_keep_their_subscription_identifiers() {
    let broker = TestBroker::start();
    let topic = unique_topic("off-subid");
    let id = unique_id("off-sub5");
    let connect = |o: &mut rumqttc::v5::MqttOptions| {
        o.set_clean_start(false);
        set_expiry5(o, 600);
    };
    let (mut sub, _) = Mqtt5::connect_with(&broker, &id, connect).await;
    sub.subscribe_with_id(&format!("{topic}/+"), 1, 7).await;
    sub.subscribe_with_id(&format!("{topic}/#"), 1, 9).await;
    drop(sub);
    broker.wait_connections(0, WAIT).await;
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("off-pub5")).await;
    publ.publish_acked(&format!("{topic}/a"), 1, false, "away").await;
    let (mut sub, ack) = Mqtt5::connect_with(&broker, &id, connect).await;
    assert!(ack.session_present);
    let p = sub.next_publish().await;
    let mut ids = p.properties.map(|p| p.subscription_identifiers).unwrap_or_default();
    ids.sort();
    assert_eq!(ids, [7, 9], "both matching subscriptions' identifiers");
}
