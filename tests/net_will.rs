//! Will messages: published on an abnormal close, not after a normal DISCONNECT; the 5.0
//! will delay interval (after the delay, not before; cancelled by a reconnect within it;
//! cut short by the session's end).

mod support;

use std::time::{Duration, Instant};

use support::*;

fn will4(topic: &str, payload: &str) -> rumqttc::LastWill {
    rumqttc::LastWill::new(topic, payload, rumqttc::QoS::AtLeastOnce, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_will_published_on_abnormal_close() {
    let broker = TestBroker::start();
    let topic = unique_topic("will4");
    let (mut sub, _) = Mqtt4::connect(&broker, &unique_id("sub")).await;
    sub.subscribe(&topic, 1).await;
    let (w, _) = Mqtt4::connect_with(&broker, &unique_id("w"), |o| {
        o.set_last_will(will4(&topic, "gone"));
    })
    .await;
    w.kill().await;
    let p = sub.next_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), (topic.as_str(), &b"gone"[..]));
    assert_eq!(qos4_num(p.qos), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_published_on_abnormal_close() {
    let broker = TestBroker::start();
    let topic = unique_topic("will5");
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("sub")).await;
    sub.subscribe(&topic, 1).await;
    let (w, _) = Mqtt5::connect_with(&broker, &unique_id("w"), |o| {
        o.set_last_will(will5(&topic, "gone", None));
    })
    .await;
    w.kill().await;
    let p = sub.next_publish().await;
    assert_eq!((topic5(&p), &p.payload[..]), (topic.clone(), &b"gone"[..]));
}

/// W1 disconnects normally, then W2 (same will topic) dies: only W2's will arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_no_will_after_normal_disconnect() {
    let broker = TestBroker::start();
    let topic = unique_topic("nowill4");
    let (mut sub, _) = Mqtt4::connect(&broker, &unique_id("sub")).await;
    sub.subscribe(&topic, 1).await;
    let (w1, _) = Mqtt4::connect_with(&broker, &unique_id("w1"), |o| {
        o.set_last_will(will4(&topic, "w1"));
    })
    .await;
    let (w2, _) = Mqtt4::connect_with(&broker, &unique_id("w2"), |o| {
        o.set_last_will(will4(&topic, "w2"));
    })
    .await;
    w1.disconnect().await;
    w2.kill().await;
    let got: Vec<Vec<u8>> = sub.collect_publishes(QUIET, 10).await.iter().map(|p| p.payload.to_vec()).collect();
    assert_eq!(got, vec![b"w2".to_vec()], "only the abnormally closed client's will");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_no_will_after_normal_disconnect() {
    let broker = TestBroker::start();
    let topic = unique_topic("nowill5");
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("sub")).await;
    sub.subscribe(&topic, 1).await;
    let (w1, _) = Mqtt5::connect_with(&broker, &unique_id("w1"), |o| {
        o.set_last_will(will5(&topic, "w1", None));
    })
    .await;
    let (w2, _) = Mqtt5::connect_with(&broker, &unique_id("w2"), |o| {
        o.set_last_will(will5(&topic, "w2", None));
    })
    .await;
    w1.disconnect().await;
    w2.kill().await;
    let got: Vec<Vec<u8>> = sub.collect_publishes(QUIET, 10).await.iter().map(|p| p.payload.to_vec()).collect();
    assert_eq!(got, vec![b"w2".to_vec()], "only the abnormally closed client's will");
}

/// With a 2 s will delay (and a session that outlives it) the will comes after the delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_delay_interval_delays_the_will() {
    let broker = TestBroker::start();
    let topic = unique_topic("delay");
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("sub")).await;
    sub.subscribe(&topic, 1).await;
    let (w, _) = Mqtt5::connect_with(&broker, &unique_id("w"), |o| {
        set_expiry5(o, 60);
        o.set_last_will(will5(&topic, "late", Some(2)));
    })
    .await;
    let killed = Instant::now();
    w.kill().await;
    let p = sub.next_publish_within(Duration::from_secs(2) + WAIT).await;
    let after = killed.elapsed();
    assert_eq!(&p.payload[..], b"late");
    assert!(after >= Duration::from_millis(1900), "the will came {after:?} after the close, before its 2 s delay");
}

/// A reconnect within the will delay (persistent session) cancels the will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_delay_cancelled_by_reconnect() {
    let broker = TestBroker::start();
    let topic = unique_topic("cancel");
    let id = unique_id("w");
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("sub")).await;
    sub.subscribe(&topic, 1).await;
    let (w, _) = Mqtt5::connect_with(&broker, &id, |o| {
        set_expiry5(o, 60);
        o.set_last_will(will5(&topic, "should not", Some(3)));
    })
    .await;
    let killed = Instant::now();
    w.kill().await;
    let (_w, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(false);
        set_expiry5(o, 60);
    })
    .await;
    assert!(ack.session_present, "the session lives on");
    assert!(killed.elapsed() < Duration::from_millis(2500), "the reconnect took longer than this test allows for");
    // Watch until well past the delay.
    let until = Duration::from_millis(4500).saturating_sub(killed.elapsed());
    sub.expect_no_publish(until).await;
    // The subscriber is still served: the next thing it gets is this.
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("pub")).await;
    publ.publish_acked(&topic, 1, false, "control").await;
    assert_eq!(&sub.next_publish().await.payload[..], b"control");
}

/// The will is sent when the session ends, even if its delay is longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_sent_at_session_end_when_delay_is_longer() {
    let broker = TestBroker::start();
    let topic = unique_topic("short");
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("sub")).await;
    sub.subscribe(&topic, 1).await;
    let (w, _) = Mqtt5::connect_with(&broker, &unique_id("w"), |o| {
        set_expiry5(o, 1);
        o.set_last_will(will5(&topic, "session over", Some(600)));
    })
    .await;
    w.kill().await;
    let p = sub.next_publish_within(Duration::from_secs(1) + WAIT).await;
    assert_eq!(&p.payload[..], b"session over");
}
