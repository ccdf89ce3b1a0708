//! Shared subscriptions (`$share/{group}/{filter}`) with 3.1.1 and 5.0 rumqttc clients:
//! each message to exactly one member, members on different shards, a leaving member's
//! unacknowledged messages handed to another, no retained messages, the hash strategies,
//! and No Local refused as a Protocol Error.

mod support;
mod wire;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use support::*;

/// `n` client ids, half on each of the test broker's two shards.
fn ids_across_shards(prefix: &str, n: usize) -> Vec<String> {
    let table = shards::route::PartitionTable::new(64, 2);
    let mut per_shard: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..1000 {
        let id = unique_id(prefix);
        let s = table.shard_of(id.as_bytes());
        if per_shard[s].len() < n.div_ceil(2) {
            per_shard[s].push(id);
        }
        if per_shard[0].len() + per_shard[1].len() >= n {
            break;
        }
    }
    let [a, b] = per_shard;
    a.into_iter().zip(b).flat_map(|(x, y)| [x, y]).take(n).collect()
}

fn seq(payload: &[u8]) -> u32 {
    std::str::from_utf8(payload).unwrap().parse().unwrap()
}

enum Member {
    V4(Mqtt4),
    V5(Mqtt5),
}

impl Member {
    async fn collect(&mut self, max: usize) -> Vec<(String, u32)> {
        match self {
            Member::V4(c) => {
                c.collect_publishes(QUIET, max).await.iter().map(|p| (p.topic.clone(), seq(&p.payload))).collect()
            }
            Member::V5(c) => {
                c.collect_publishes(QUIET, max).await.iter().map(|p| (topic5(p), seq(&p.payload))).collect()
            }
        }
    }
}

/// Members alternating 3.1.1 / 5.0, subscribed to `filter` at QoS 1.
async fn members(broker: &TestBroker, ids: &[String], filter: &str) -> Vec<Member> {
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if i % 2 == 0 {
            let (mut c, _) = Mqtt4::connect(broker, id).await;
            c.subscribe(filter, 1).await;
            out.push(Member::V4(c));
        } else {
            let (mut c, _) = Mqtt5::connect(broker, id).await;
            c.subscribe(filter, 1).await;
            out.push(Member::V5(c));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_goes_to_exactly_one_member_across_shards() {
    let broker = TestBroker::start();
    let topic = unique_topic("sh-one");
    let ids = ids_across_shards("sh-m", 4);
    let mut group = members(&broker, &ids, &format!("$share/g/{topic}/+")).await;
    // A plain subscriber beside the group gets everything.
    let (mut plain, _) = Mqtt4::connect(&broker, &unique_id("sh-plain")).await;
    plain.subscribe(&format!("{topic}/#"), 1).await;
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("sh-pub")).await;
    for i in 0..400u32 {
        publ.publish(&format!("{topic}/{}", i % 4), 1, false, i.to_string()).await;
    }
    publ.wait_acks(1, 400).await;
    let mut all = Vec::new();
    for (m, id) in group.iter_mut().zip(&ids) {
        let got = m.collect(1000).await;
        assert!(got.len() >= 50, "{id}: round robin gives every member its share, got {}", got.len());
        all.extend(got.into_iter().map(|(_, s)| s));
    }
    all.sort();
    assert_eq!(all, (0..400).collect::<Vec<_>>(), "every message to exactly one member");
    assert_eq!(plain.collect_publishes(QUIET, 1000).await.len(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_member_hands_its_unacknowledged_messages_to_another() {
    let broker = TestBroker::start();
    let topic = unique_topic("sh-leave");
    let filter = format!("$share/g/{topic}");
    let ids = ids_across_shards("sh-l", 2);
    // The member that never acknowledges, with a persistent session.
    let (mut lazy, _) = Mqtt4::connect_with(&broker, &ids[0], |o| {
        o.set_manual_acks(true);
        o.set_clean_session(false);
    })
    .await;
    lazy.subscribe(&filter, 1).await;
    let (mut busy, _) = Mqtt5::connect(&broker, &ids[1]).await;
    busy.subscribe(&filter, 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("sh-pub")).await;
    for i in 0..40u32 {
        publ.publish_acked(&topic, 1, false, i.to_string()).await;
    }
    let held: Vec<u32> = lazy.collect_publishes(QUIET, 100).await.iter().map(|p| seq(&p.payload)).collect();
    assert!(!held.is_empty(), "the lazy member got its share");
    let mut got: Vec<u32> = busy.collect_publishes(QUIET, 100).await.iter().map(|p| seq(&p.payload)).collect();
    assert_eq!(got.len() + held.len(), 40);
    // It leaves without acknowledging: its messages go to the other member.
    drop(lazy);
    broker.wait_connections(2, WAIT).await;
    got.extend(busy.collect_publishes(QUIET, 100).await.iter().map(|p| seq(&p.payload)));
    let got: BTreeSet<u32> = got.into_iter().collect();
    assert_eq!(got, (0..40).collect(), "the other member has every message");
    // While it is away, the group is the other member alone.
    for i in 40..50u32 {
        publ.publish_acked(&topic, 1, false, i.to_string()).await;
    }
    let later: Vec<u32> = busy.collect_publishes(QUIET, 100).await.iter().map(|p| seq(&p.payload)).collect();
    assert_eq!(later, (40..50).collect::<Vec<_>>());
    // Back (its session kept the subscription): a member again, and nothing of the group
    // was kept for it while away.
    let (mut back, ack) = Mqtt4::connect_with(&broker, &ids[0], |o| {
        o.set_clean_session(false);
    })
    .await;
    assert!(ack.session_present);
    back.expect_no_publish(QUIET).await;
    for i in 50..70u32 {
        publ.publish_acked(&topic, 1, false, i.to_string()).await;
    }
    let a = back.collect_publishes(QUIET, 100).await.len();
    let b = busy.collect_publishes(QUIET, 100).await.len();
    assert_eq!(a + b, 20);
    assert!(a > 0 && b > 0, "both members share again: {a} / {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_not_sent_to_shared_subscriptions() {
    let broker = TestBroker::start();
    let topic = unique_topic("sh-ret");
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("sh-pub")).await;
    publ.publish_acked(&topic, 1, true, "0").await;
    let (mut shared, _) = Mqtt5::connect(&broker, &unique_id("sh-r")).await;
    shared.subscribe(&format!("$share/g/{topic}"), 1).await;
    shared.expect_no_publish(QUIET).await;
    let (mut plain, _) = Mqtt4::connect(&broker, &unique_id("sh-plain")).await;
    plain.subscribe(&topic, 1).await;
    assert!(plain.next_publish().await.retain, "a plain subscription gets it");
    // Live messages still reach the group.
    publ.publish_acked(&topic, 1, false, "1").await;
    assert_eq!(seq(&shared.next_publish().await.payload), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_by_topic_keeps_each_topic_on_one_member_in_order() {
    let broker = TestBroker::start_with(|c| c.shared_strategy = shards::config::SharedStrategy::HashTopic);
    let topic = unique_topic("sh-hash");
    let ids = ids_across_shards("sh-h", 3);
    let mut group = members(&broker, &ids, &format!("$share/h/{topic}/#")).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("sh-pub")).await;
    for i in 0..120u32 {
        publ.publish(&format!("{topic}/{}", i % 8), 1, false, i.to_string()).await;
    }
    publ.wait_acks(1, 120).await;
    let mut owner_of: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    for (m, member) in group.iter_mut().enumerate() {
        let got = member.collect(1000).await;
        total += got.len();
        let mut last: HashMap<String, u32> = HashMap::new();
        for (t, s) in got {
            assert_eq!(*owner_of.entry(t.clone()).or_insert(m), m, "{t} went to two members");
            if let Some(prev) = last.insert(t.clone(), s) {
                assert!(prev < s, "{t}: {prev} then {s}");
            }
        }
    }
    assert_eq!(total, 120);
    assert_eq!(owner_of.len(), 8);
}

/// rumqttc reports only the closed connection, so this one speaks raw packets.
#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    use proto::{Packet, Props, Protocol, QoS, Subscribe, SubscribeFilter};
    let node = wire::broker(|_| {});
    let mut c = wire::Raw::connect(node.local_addrs()[0], Protocol::V5, "sh-nl");
    c.send(&Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: vec![SubscribeFilter {
            filter: "$share/g/sh-nl".into(),
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: false,
            retain_handling: 0,
        }],
        properties: Props::default(),
    }));
    let seen = c.expect_closed();
    assert!(
        seen.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == 0x82)),
        "DISCONNECT 0x82 expected, saw {seen:?}"
    );
    node.stop();
    node.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_and_plain_subscriptions_of_one_session_each_get_the_message() {
    let broker = TestBroker::start();
    let topic = unique_topic("sh-both");
    let (mut c, _) = Mqtt4::connect(&broker, &unique_id("sh-both")).await;
    c.subscribe(&format!("$share/g/{topic}"), 1).await;
    c.subscribe(&topic, 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("sh-pub")).await;
    publ.publish_acked(&topic, 1, false, "7").await;
    let got = c.collect_publishes(QUIET, 10).await;
    assert_eq!(got.len(), 2, "once for the group, once for the plain subscription");
    c.unsubscribe(&format!("$share/g/{topic}")).await;
    publ.publish_acked(&topic, 1, false, "8").await;
    assert_eq!(c.collect_publishes(QUIET, 10).await.len(), 1, "the group is gone");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_session_is_replaced_hands_its_messages_on() {
    let broker = TestBroker::start();
    let topic = unique_topic("sh-take");
    let filter = format!("$share/g/{topic}");
    let ids = ids_across_shards("sh-t", 2);
    let (mut lazy, _) = Mqtt4::connect_with(&broker, &ids[0], |o| {
        o.set_manual_acks(true);
    })
    .await;
    lazy.subscribe(&filter, 1).await;
    let (mut busy, _) = Mqtt4::connect(&broker, &ids[1]).await;
    busy.subscribe(&filter, 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("sh-pub")).await;
    for i in 0..30u32 {
        publ.publish_acked(&topic, 1, false, i.to_string()).await;
    }
    let held = lazy.collect_publishes(QUIET, 100).await.len();
    assert!(held > 0);
    // A clean-session connection with the same id takes over: the old session ends.
    let (_fresh, ack) = Mqtt4::connect(&broker, &ids[0]).await;
    assert!(!ack.session_present);
    let got: BTreeSet<u32> = busy.collect_publishes(QUIET, 100).await.iter().map(|p| seq(&p.payload)).collect();
    assert_eq!(got, (0..30).collect(), "the ended session's messages went to the other member");
}
