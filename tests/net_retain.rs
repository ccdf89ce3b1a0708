//! Retained messages: set, replace, clear with an empty payload, delivered on subscribe
//! (through wildcards spanning both shards) with the retain flag set.

mod support;

use std::collections::BTreeMap;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_retained_set_replace_clear() {
    let broker = TestBroker::start();
    let base = unique_topic("ret4");
    let a = format!("{base}/a");
    let b = format!("{base}/b");
    // A live subscriber: once it has a message, the topic owner has stored it.
    let (mut live, _) = Mqtt4::connect(&broker, &unique_id("live")).await;
    live.subscribe(&format!("{base}/#"), 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;

    // Set.
    publ.publish_acked(&a, 1, true, "v1").await;
    let p = live.next_publish().await;
    assert_eq!(&p.payload[..], b"v1");
    assert!(!p.retain, "a message delivered to an existing subscription has retain = 0 in 3.1.1");
    let (mut n1, _) = Mqtt4::connect(&broker, &unique_id("n1")).await;
    n1.subscribe(&a, 2).await;
    let p = n1.next_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), (a.as_str(), &b"v1"[..]));
    assert!(p.retain, "retained delivery on subscribe has the retain flag");
    assert_eq!(qos4_num(p.qos), 1, "retained QoS 1 message to a QoS 2 subscription");
    n1.expect_no_publish(QUIET).await;

    // Replace.
    publ.publish_acked(&a, 1, true, "v2").await;
    assert_eq!(&live.next_publish().await.payload[..], b"v2");
    let (mut n2, _) = Mqtt4::connect(&broker, &unique_id("n2")).await;
    n2.subscribe(&a, 1).await;
    let got = n2.collect_publishes(QUIET, 10).await;
    assert_eq!(got.len(), 1, "only the latest retained message: {got:?}");
    assert_eq!(&got[0].payload[..], b"v2");
    assert!(got[0].retain);

    // Clear with an empty payload (another topic stays retained).
    publ.publish_acked(&b, 1, true, "keep").await;
    publ.publish_acked(&a, 1, true, "").await;
    let seen = live.publishes(2).await;
    assert!(seen.iter().any(|p| p.topic == a && p.payload.is_empty()), "the clearing message is delivered live");
    let (mut n3, _) = Mqtt4::connect(&broker, &unique_id("n3")).await;
    n3.subscribe(&format!("{base}/+"), 1).await;
    let got = n3.collect_publishes(QUIET, 10).await;
    let got: Vec<(String, Vec<u8>, bool)> = got.into_iter().map(|p| (p.topic, p.payload.to_vec(), p.retain)).collect();
    assert_eq!(got, vec![(b.clone(), b"keep".to_vec(), true)], "the cleared topic has no retained message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_retained_set_replace_clear() {
    let broker = TestBroker::start();
    let base = unique_topic("ret5");
    let a = format!("{base}/a");
    let (mut live, _) = Mqtt5::connect(&broker, &unique_id("live")).await;
    live.subscribe(&format!("{base}/#"), 1).await;
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("pub")).await;

    publ.publish_acked(&a, 1, true, "v1").await;
    let p = live.next_publish().await;
    assert!(!p.retain, "retain as published is off: live delivery has retain = 0");
    let (mut n1, _) = Mqtt5::connect(&broker, &unique_id("n1")).await;
    n1.subscribe(&a, 1).await;
    let p = n1.next_publish().await;
    assert_eq!((topic5(&p), &p.payload[..]), (a.clone(), &b"v1"[..]));
    assert!(p.retain, "retained delivery on subscribe has the retain flag");

    publ.publish_acked(&a, 1, true, "v2").await;
    assert_eq!(&live.next_publish().await.payload[..], b"v2");
    let (mut n2, _) = Mqtt5::connect(&broker, &unique_id("n2")).await;
    n2.subscribe(&a, 1).await;
    let got = n2.collect_publishes(QUIET, 10).await;
    assert_eq!(got.len(), 1, "only the latest retained message: {got:?}");
    assert_eq!(&got[0].payload[..], b"v2");

    publ.publish_acked(&a, 1, true, "").await;
    assert!(live.next_publish().await.payload.is_empty());
    let (mut n3, _) = Mqtt5::connect(&broker, &unique_id("n3")).await;
    n3.subscribe(&a, 1).await;
    n3.expect_no_publish(QUIET).await;
}

/// Many retained topics (hashing to both shards) all come back through `#`-style and
/// `+` filters, each once, with the retain flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_delivered_through_wildcards_across_shards() {
    let broker = TestBroker::start();
    let base = unique_topic("retw");
    const N: usize = 64;
    let (mut live, _) = Mqtt4::connect(&broker, &unique_id("live")).await;
    live.subscribe(&format!("{base}/#"), 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    for i in 0..N {
        publ.publish(&format!("{base}/t{i}"), 1, true, format!("p{i}")).await;
    }
    publ.wait_acks(1, N).await;
    assert_eq!(live.publishes(N).await.len(), N);

    let want: BTreeMap<String, String> = (0..N).map(|i| (format!("{base}/t{i}"), format!("p{i}"))).collect();
    for filter in [format!("{base}/#"), format!("{base}/+"), "#".to_string(), "+/+".to_string()] {
        let (mut s, _) = Mqtt4::connect(&broker, &unique_id("late")).await;
        s.subscribe(&filter, 1).await;
        let got = s.collect_publishes(QUIET, 2 * N).await;
        assert!(got.iter().all(|p| p.retain), "{filter}: every retained delivery has the retain flag");
        assert_eq!(got.len(), N, "{filter}: each retained message once");
        let got: BTreeMap<String, String> =
            got.into_iter().map(|p| (p.topic, String::from_utf8(p.payload.to_vec()).unwrap())).collect();
        assert_eq!(got, want, "{filter}");
    }
    let (mut s, _) = Mqtt5::connect(&broker, &unique_id("late5")).await;
    s.subscribe(&format!("{base}/#"), 1).await;
    let got = s.collect_publishes(QUIET, 2 * N).await;
    assert_eq!(got.len(), N, "5.0: each retained message once");
    assert!(got.iter().all(|p| p.retain));
}
