//! SUBSCRIBE/UNSUBSCRIBE: `+` and `#`, `$` topics and leading wildcards, overlapping
//! subscriptions, UNSUBSCRIBE stopping delivery, SUBACK/UNSUBACK codes.

mod support;

use std::collections::BTreeSet;

use rumqttc::SubscribeReasonCode as Code4;
use support::*;

/// Topics under `base` and whether `+`/`#` filters match them.
fn wildcard_cases(base: &str) -> (Vec<String>, Vec<String>, BTreeSet<String>) {
    let filters = vec![format!("{base}/+/temp"), format!("{base}/house/#")];
    let matching = [
        "kitchen/temp",  // + one level
        "garage/temp",   // + one level
        "/temp",         // + matches an empty level
        "house",         // # matches the parent level
        "house/a",       // # one level
        "house/a/b/c",   // # many levels
        "house/x/temp2", // # many levels
    ];
    let not_matching = [
        "kitchen/temp/x", // + is one level only
        "temp",           // + needs a level
        "kitchen/temps",
        "houses",
        "house2/a",
        "a/house/b",
    ];
    let all: Vec<String> = matching.iter().chain(not_matching.iter()).map(|t| format!("{base}/{t}")).collect();
    let want = matching.iter().map(|t| format!("{base}/{t}")).collect();
    (filters, all, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_plus_and_hash_wildcards() {
    let broker = TestBroker::start();
    let base = unique_topic("wc4");
    let (filters, all, want) = wildcard_cases(&base);
    let (mut sub, _) = Mqtt4::connect(&broker, &unique_id("sub")).await;
    for f in &filters {
        sub.subscribe(f, 1).await;
    }
    // The control sees everything: once it has, the broker has routed everything.
    let (mut control, _) = Mqtt4::connect(&broker, &unique_id("ctl")).await;
    control.subscribe(&format!("{base}/#"), 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    for t in &all {
        publ.publish_acked(t, 1, false, t.as_str()).await;
    }
    assert_eq!(control.publishes(all.len()).await.len(), all.len());
    let got: BTreeSet<String> = sub.collect_publishes(QUIET, 100).await.into_iter().map(|p| p.topic).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_plus_and_hash_wildcards() {
    let broker = TestBroker::start();
    let base = unique_topic("wc5");
    let (filters, all, want) = wildcard_cases(&base);
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("sub")).await;
    for f in &filters {
        sub.subscribe(f, 1).await;
    }
    let (mut control, _) = Mqtt5::connect(&broker, &unique_id("ctl")).await;
    control.subscribe(&format!("{base}/#"), 1).await;
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("pub")).await;
    for t in &all {
        publ.publish_acked(t, 1, false, t.as_str()).await;
    }
    assert_eq!(control.publishes(all.len()).await.len(), all.len());
    let got: Vec<String> = sub.collect_publishes(QUIET, 100).await.iter().map(topic5).collect();
    assert_eq!(got.len(), want.len(), "each matching message once: {got:?}");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);
}

/// `#` and `+/x` do not match `$SYS/x`; `$SYS/#` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dollar_topics_not_matched_by_leading_wildcards() {
    let broker = TestBroker::start();
    let (mut hash, _) = Mqtt4::connect(&broker, &unique_id("hash")).await;
    hash.subscribe("#", 1).await;
    let (mut plus, _) = Mqtt5::connect(&broker, &unique_id("plus")).await;
    plus.subscribe("+/x", 1).await;
    let (mut plus_hash, _) = Mqtt4::connect(&broker, &unique_id("plushash")).await;
    plus_hash.subscribe("+/#", 1).await;
    let (mut dollar, _) = Mqtt4::connect(&broker, &unique_id("dollar")).await;
    dollar.subscribe("$SYS/#", 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;

    publ.publish_acked("$SYS/x", 1, false, "sys").await;
    let p = dollar.next_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("$SYS/x", &b"sys"[..]), "$SYS/# matches $SYS/x");

    // A normal topic matching all the wildcard filters: it must be the first (and only)
    // thing they receive.
    publ.publish_acked("norm/x", 1, false, "norm").await;
    let p = hash.next_publish().await;
    assert_eq!(p.topic, "norm/x", "# must not match $SYS/x");
    let p = plus.next_publish().await;
    assert_eq!(topic5(&p), "norm/x", "+/x must not match $SYS/x");
    let p = plus_hash.next_publish().await;
    assert_eq!(p.topic, "norm/x", "+/# must not match $SYS/x");
    hash.expect_no_publish(QUIET).await;
    plus.expect_no_publish(QUIET).await;
    plus_hash.expect_no_publish(QUIET).await;
    dollar.expect_no_publish(QUIET).await;
}

/// 5.0: a message matching several subscriptions of one client arrives once, at the
/// highest granted QoS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_overlapping_subscriptions_deliver_once_with_max_qos() {
    let broker = TestBroker::start();
    let base = unique_topic("ov5");
    let topic = format!("{base}/a");
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("sub")).await;
    sub.subscribe(&format!("{base}/+"), 1).await;
    sub.subscribe(&format!("{base}/#"), 2).await;
    sub.subscribe(&topic, 0).await;
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("pub")).await;
    // Same publisher, same topic: "one" then "two" in this order, each exactly once.
    publ.publish_acked(&topic, 2, false, "one").await;
    publ.publish_acked(&topic, 2, false, "two").await;
    let first = sub.next_publish().await;
    assert_eq!(&first.payload[..], b"one");
    assert_eq!(qos5_num(first.qos), 2, "the highest granted QoS of the matching subscriptions");
    let second = sub.next_publish().await;
    assert_eq!(&second.payload[..], b"two", "\"one\" must not arrive twice");
    sub.expect_no_publish(QUIET).await;
}

/// 3.1.1 allows extra copies for overlapping subscriptions, but the message must be
/// delivered respecting the highest granted QoS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_overlapping_subscriptions_respect_max_qos() {
    let broker = TestBroker::start();
    let base = unique_topic("ov4");
    let topic = format!("{base}/a");
    let (mut sub, _) = Mqtt4::connect(&broker, &unique_id("sub")).await;
    sub.subscribe(&format!("{base}/+"), 0).await;
    sub.subscribe(&format!("{base}/#"), 2).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    publ.publish_acked(&topic, 2, false, "one").await;
    let copies = sub.collect_publishes(QUIET, 10).await;
    assert!(!copies.is_empty(), "the message arrives");
    assert!(copies.iter().all(|p| &p.payload[..] == b"one"));
    assert!(copies.iter().any(|p| qos4_num(p.qos) == 2), "one copy at QoS 2: {copies:?}");
}

async fn unsubscribe_v4() {
    let broker = TestBroker::start();
    let topic = unique_topic("uns4");
    let (mut sub, _) = Mqtt4::connect(&broker, &unique_id("sub")).await;
    let (mut control, _) = Mqtt4::connect(&broker, &unique_id("ctl")).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    sub.subscribe(&topic, 1).await;
    sub.subscribe(&format!("{topic}/other"), 1).await;
    control.subscribe(&topic, 1).await;
    publ.publish_acked(&topic, 1, false, "before").await;
    assert_eq!(&sub.next_publish().await.payload[..], b"before");
    assert_eq!(&control.next_publish().await.payload[..], b"before");

    sub.unsubscribe(&topic).await;
    publ.publish_acked(&topic, 1, false, "after").await;
    assert_eq!(&control.next_publish().await.payload[..], b"after");
    sub.expect_no_publish(QUIET).await;
    // The other subscription of the same client is untouched.
    publ.publish_acked(&format!("{topic}/other"), 1, false, "other").await;
    assert_eq!(&sub.next_publish().await.payload[..], b"other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_unsubscribe_stops_delivery() {
    unsubscribe_v4().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_unsubscribe_stops_delivery() {
    let broker = TestBroker::start();
    let base = unique_topic("uns5");
    let filter = format!("{base}/+");
    let topic = format!("{base}/a");
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("sub")).await;
    let (mut control, _) = Mqtt5::connect(&broker, &unique_id("ctl")).await;
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("pub")).await;
    sub.subscribe(&filter, 1).await;
    control.subscribe(&filter, 1).await;
    publ.publish_acked(&topic, 1, false, "before").await;
    assert_eq!(&sub.next_publish().await.payload[..], b"before");
    assert_eq!(&control.next_publish().await.payload[..], b"before");

    sub.unsubscribe(&filter).await;
    publ.publish_acked(&topic, 1, false, "after").await;
    assert_eq!(&control.next_publish().await.payload[..], b"after");
    sub.expect_no_publish(QUIET).await;
}

/// 5.0 UNSUBACK for a filter the client never subscribed to: 0x11.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_unsuback_reports_no_subscription_existed() {
    let broker = TestBroker::start();
    let (mut c, _) = Mqtt5::connect(&broker, &unique_id("unsx")).await;
    c.client.unsubscribe(unique_topic("never")).await.expect("request queued");
    // rumqttc turns a non-success UNSUBACK into an error that ends its connection.
    match c.closed().await {
        rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::UnsubFail { reason }) => {
            assert_eq!(reason, p5::UnsubAckReason::NoSubscriptionExisted);
        }
        other => panic!("expected UNSUBACK 0x11, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_suback_codes() {
    let broker = TestBroker::start();
    let base = unique_topic("sa4");
    let (mut c, _) = Mqtt4::connect(&broker, &unique_id("c")).await;
    let codes = c
        .subscribe_many(&[
            (&format!("{base}/#/b"), 1),
            (&format!("{base}/+"), 2),
            (&format!("{base}/x"), 0),
            (&format!("{base}/a+/b"), 1),
            (&format!("{base}/#"), 1),
            (&format!("{base}/y#"), 0),
        ])
        .await;
    assert_eq!(
        codes,
        vec![
            Code4::Failure,
            Code4::Success(rumqttc::QoS::ExactlyOnce),
            Code4::Success(rumqttc::QoS::AtMostOnce),
            Code4::Failure,
            Code4::Success(rumqttc::QoS::AtLeastOnce),
            Code4::Failure,
        ]
    );
    // The granted ones are live.
    c.publish(&format!("{base}/x"), 0, false, "live").await;
    assert_eq!(&c.next_publish().await.payload[..], b"live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_suback_codes() {
    let broker = TestBroker::start();
    let base = unique_topic("sa5");
    let (mut c, _) = Mqtt5::connect(&broker, &unique_id("c")).await;
    // subscribe() asserts the granted QoS for each.
    c.subscribe(&format!("{base}/+"), 2).await;
    c.subscribe(&format!("{base}/#"), 1).await;
    c.subscribe(&format!("{base}/x"), 0).await;
    let reason = c.subscribe_refused("a/#/b", 1).await;
    assert_eq!(reason, p5::SubscribeReasonCode::TopicFilterInvalid, "0x8F for a malformed filter");
}
