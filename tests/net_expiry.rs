//! MQTT 5.0 Message Expiry Interval: an expired message is not delivered, from an offline
//! queue, from the retained store or from the logs after a restart, and a forwarded
//! message carries the interval minus the time it waited.

mod support;

use std::time::Duration;

use support::*;

fn expiring(secs: u32) -> p5::PublishProperties {
    p5::PublishProperties {
        payload_format_indicator: None,
        message_expiry_interval: Some(secs),
        topic_alias: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
        subscription_identifiers: Vec::new(),
        content_type: None,
    }
}

async fn publish_expiring(c: &mut Mqtt5, topic: &str, retain: bool, payload: &str, secs: u32) {
    c.client
        .publish_with_properties(topic, qos5(1), retain, payload.to_owned(), expiring(secs))
        .await
        .expect("publish request queued");
    c.wait_acks(1, 1).await;
}

/// A persistent session `id` subscribes to `topic` and leaves; then "short" (expiry 1 s)
/// and "long" (60 s) are published to it.
async fn subscribe_leave_then_two_expiring(broker: &TestBroker, id: &str, topic: &str) {
    let (mut sub, _) = Mqtt5::connect_with(broker, id, persistent).await;
    sub.subscribe(topic, 1).await;
    sub.disconnect().await;
    let (mut publ, _) = Mqtt5::connect(broker, &unique_id("exp-pub")).await;
    publish_expiring(&mut publ, topic, false, "short", 1).await;
    publish_expiring(&mut publ, topic, false, "long", 60).await;
}

fn persistent(o: &mut rumqttc::v5::MqttOptions) {
    o.set_clean_start(false);
    set_expiry5(o, 3600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_offline_messages_are_dropped_and_the_rest_carry_less_time() {
    let broker = TestBroker::start();
    let topic = unique_topic("exp");
    let id = unique_id("exp-sub");
    subscribe_leave_then_two_expiring(&broker, &id, &topic).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (mut sub, ack) = Mqtt5::connect_with(&broker, &id, persistent).await;
    assert!(ack.session_present);
    let got = sub.collect_publishes(QUIET, 10).await;
    assert_eq!(got.len(), 1, "only the unexpired message: {got:?}");
    assert_eq!(&got[0].payload[..], b"long");
    let left = got[0].properties.as_ref().and_then(|p| p.message_expiry_interval);
    assert!(matches!(left, Some(s) if (55..=58).contains(&s)), "interval reduced by the wait: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_retained_message_is_not_delivered() {
    let broker = TestBroker::start();
    let topic = unique_topic("exp-ret");
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("exp-pub")).await;
    publish_expiring(&mut publ, &format!("{topic}/short"), true, "short", 1).await;
    publish_expiring(&mut publ, &format!("{topic}/long"), true, "long", 60).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("exp-sub")).await;
    sub.subscribe(&format!("{topic}/+"), 1).await;
    let got = sub.collect_publishes(QUIET, 10).await;
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, [b"long"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_keeps_counting_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("exp-st");
    let id = unique_id("exp-st");
    let start = |dir: &std::path::Path| {
        TestBroker::start_with(|c| {
            c.storage.data_dir = dir.to_path_buf();
            c.storage.engine = ringmq::Engine::Segment;
        })
    };
    {
        let broker = start(dir.path());
        subscribe_leave_then_two_expiring(&broker, &id, &topic).await;
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let broker = start(dir.path());
    let (mut sub, ack) = Mqtt5::connect_with(&broker, &id, persistent).await;
    assert!(ack.session_present);
    let got = sub.collect_publishes(QUIET, 10).await;
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, [b"long"], "the message that expired during the downtime is not replayed");
}
