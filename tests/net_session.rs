//! Sessions: takeover by a second connection with the same client id, persistent sessions
//! (subscriptions kept, offline QoS 1/2 messages queued in order, bounded queue with the
//! oldest dropped, expiry) and the in-flight window resent with DUP after a reconnect.

mod support;

use std::time::Duration;

use support::*;

fn payloads4(v: &[rumqttc::Publish]) -> Vec<String> {
    v.iter().map(|p| String::from_utf8(p.payload.to_vec()).unwrap()).collect()
}

fn payloads5(v: &[p5::Publish]) -> Vec<String> {
    v.iter().map(|p| String::from_utf8(p.payload.to_vec()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_takeover_closes_old_connection_and_keeps_session() {
    let broker = TestBroker::start();
    let id = unique_id("tk5");
    let topic = unique_topic("tk5");
    let (mut first, _) = Mqtt5::connect_with(&broker, &id, |o| set_expiry5(o, 60)).await;
    first.subscribe(&topic, 1).await;

    let (mut second, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(false);
        set_expiry5(o, 60);
    })
    .await;
    assert!(ack.session_present, "the taken-over session is kept");
    // The reason code is checked on a raw socket below: rumqttc 0.24 cannot decode the
    // short DISCONNECT (`e0 01 8e`, no property length) and reports a plain close.
    first.closed().await;
    // The subscription is active for the new connection without resubscribing.
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("pub")).await;
    publ.publish_acked(&topic, 1, false, "to the new one").await;
    assert_eq!(&second.next_publish().await.payload[..], b"to the new one");
}

/// The taken-over 5.0 connection gets DISCONNECT with reason 0x8E, then the close. Read
/// on a raw socket (rumqttc 0.24 misreads the short form `e0 01 8e`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_takeover_sends_disconnect_reason_0x8e() {
    let broker = TestBroker::start();
    let id = unique_id("tkraw");
    let mut raw = Raw::connect(&broker).await;
    raw.send_connect5(&id, true, Some(60)).await;
    match raw.read_frame().await {
        Some((0x20, body)) => assert_eq!(body.get(1), Some(&0x00), "CONNACK success: {body:02x?}"),
        other => panic!("expected a CONNACK, got {other:02x?}"),
    }
    let (_second, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(false);
        set_expiry5(o, 60);
    })
    .await;
    assert!(ack.session_present);
    match raw.read_frame().await {
        Some((0xE0, body)) => assert_eq!(body.first(), Some(&0x8E), "DISCONNECT reason: {body:02x?}"),
        other => panic!("expected DISCONNECT 0x8E, got {other:02x?}"),
    }
    assert!(raw.read_frame().await.is_none(), "the connection is closed after the DISCONNECT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_takeover_closes_old_connection_and_keeps_session() {
    let broker = TestBroker::start();
    let id = unique_id("tk4");
    let topic = unique_topic("tk4");
    let (mut first, _) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    first.subscribe(&topic, 1).await;
    let (mut second, ack) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    assert!(ack.session_present);
    first.closed().await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    publ.publish_acked(&topic, 1, false, "to the new one").await;
    assert_eq!(&second.next_publish().await.payload[..], b"to the new one");
    broker.wait_connections(2, WAIT).await;
}

/// A takeover by a clean session also closes the old connection, and drops the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_takeover_with_clean_start_discards_session() {
    let broker = TestBroker::start();
    let id = unique_id("tkc");
    let topic = unique_topic("tkc");
    let (mut first, _) = Mqtt5::connect_with(&broker, &id, |o| set_expiry5(o, 60)).await;
    first.subscribe(&topic, 1).await;
    let (mut second, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(true);
        set_expiry5(o, 60);
    })
    .await;
    assert!(!ack.session_present);
    first.closed().await;
    published_and_seen(&broker, &topic).await;
    second.expect_no_publish(QUIET).await;
}

/// Publishes one QoS 1 message to `topic` and waits until a control subscriber has it: the
/// sync point after which any other subscriber to `topic` would have had it too.
async fn published_and_seen(broker: &TestBroker, topic: &str) {
    let (mut control, _) = Mqtt4::connect(broker, &unique_id("ctl")).await;
    control.subscribe(topic, 1).await;
    let (mut publ, _) = Mqtt4::connect(broker, &unique_id("pub")).await;
    publ.publish_acked(topic, 1, false, "x").await;
    assert_eq!(&control.next_publish().await.payload[..], b"x");
}

/// Issue 10 [MQTT-3.1.2-6]: a clean session lasts as long as its connection; a
/// clean_session=false connection taking it over gets session present 0 and none of its
/// subscriptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_clean_session_taken_over_by_persistent_connection_is_not_reused_issue_10() {
    let broker = TestBroker::start();
    let id = unique_id("tkclean4");
    let topic = unique_topic("tkclean4");
    let (mut first, _) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(true);
    })
    .await;
    first.subscribe(&topic, 1).await;
    let (mut second, ack) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    assert!(!ack.session_present, "a clean session is never resumed");
    first.closed().await;
    published_and_seen(&broker, &topic).await;
    second.expect_no_publish(QUIET).await;
}

/// The same for 5.0: a session with expiry 0 ends with its connection, so a Clean Start 0
/// connection taking it over starts a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_expiry_0_session_taken_over_by_clean_start_0_is_not_reused_issue_10() {
    let broker = TestBroker::start();
    let id = unique_id("tkclean5");
    let topic = unique_topic("tkclean5");
    let (mut first, _) = Mqtt5::connect(&broker, &id).await;
    first.subscribe(&topic, 1).await;
    let (mut second, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(false);
        set_expiry5(o, 60);
    })
    .await;
    assert!(!ack.session_present, "a session with expiry 0 is never resumed");
    first.closed().await;
    published_and_seen(&broker, &topic).await;
    second.expect_no_publish(QUIET).await;
}

/// 3.1.1 clean_session=false: the subscription survives a disconnect and the QoS 1 and 2
/// messages published meanwhile arrive in order on reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_persistent_session_delivers_offline_messages_in_order() {
    let broker = TestBroker::start();
    let id = unique_id("ps4");
    let topic = unique_topic("ps4");
    let (mut sub, _) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    sub.subscribe(&topic, 2).await;
    sub.disconnect().await;

    // The control is online: once it has everything, the owner has fanned it all out.
    let (mut control, _) = Mqtt4::connect(&broker, &unique_id("ctl")).await;
    control.subscribe(&topic, 2).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    let mut want = Vec::new();
    for i in 0..10 {
        let q = 1 + (i % 2) as u8;
        publ.publish_acked(&topic, q, false, format!("m{i}")).await;
        want.push((format!("m{i}"), q));
    }
    // QoS 0 is not queued for an offline session.
    publ.publish_acked(&topic, 0, false, "q0").await;
    assert_eq!(control.publishes(11).await.len(), 11);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (mut sub, ack) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    assert!(ack.session_present);
    let got: Vec<(String, u8)> = sub
        .publishes(want.len())
        .await
        .iter()
        .map(|p| (String::from_utf8(p.payload.to_vec()).unwrap(), qos4_num(p.qos)))
        .collect();
    assert_eq!(got, want, "offline messages, in order, at their QoS");
    // The subscription itself is still there.
    publ.publish_acked(&topic, 1, false, "online").await;
    assert_eq!(&sub.next_publish().await.payload[..], b"online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_persistent_session_delivers_offline_messages_in_order() {
    let broker = TestBroker::start();
    let id = unique_id("ps5");
    let topic = unique_topic("ps5");
    let (mut sub, _) = Mqtt5::connect_with(&broker, &id, |o| set_expiry5(o, 60)).await;
    sub.subscribe(&topic, 2).await;
    sub.disconnect().await;

    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("pub")).await;
    let mut want = Vec::new();
    for i in 0..10 {
        let q = 1 + (i % 2) as u8;
        publ.publish_acked(&topic, q, false, format!("m{i}")).await;
        want.push((format!("m{i}"), q));
    }
    let (mut sub, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(false);
        set_expiry5(o, 60);
    })
    .await;
    assert!(ack.session_present);
    let got: Vec<(String, u8)> = sub
        .publishes(want.len())
        .await
        .iter()
        .map(|p| (String::from_utf8(p.payload.to_vec()).unwrap(), qos5_num(p.qos)))
        .collect();
    assert_eq!(got, want, "offline messages, in order, at their QoS");
    publ.publish_acked(&topic, 1, false, "online").await;
    assert_eq!(&sub.next_publish().await.payload[..], b"online");
}

/// max_queued_messages = 5: of 20 messages published while offline, the last 5 arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queue_is_bounded_and_drops_the_oldest() {
    let broker = TestBroker::start_with(|c| c.limits.max_queued_messages = 5);
    let id = unique_id("bq");
    let topic = unique_topic("bq");
    let (mut sub, _) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    sub.subscribe(&topic, 1).await;
    sub.disconnect().await;
    // The control is online: once it has all 20, the owner has fanned every one out.
    let (mut control, _) = Mqtt4::connect(&broker, &unique_id("ctl")).await;
    control.subscribe(&topic, 1).await;

    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    for i in 0..20 {
        publ.publish(&topic, 1, false, format!("m{i}")).await;
    }
    publ.wait_acks(1, 20).await;
    assert_eq!(control.publishes(20).await.len(), 20);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (mut sub, ack) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    assert!(ack.session_present);
    let got = payloads4(&sub.collect_publishes(QUIET, 50).await);
    let want: Vec<String> = (15..20).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want, "exactly the newest 5, in order");
}

/// 5.0 session expiry 1 s: after 3 s away the session is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_expires() {
    let broker = TestBroker::start();
    let id = unique_id("exp");
    let topic = unique_topic("exp");
    let (mut sub, _) = Mqtt5::connect_with(&broker, &id, |o| set_expiry5(o, 1)).await;
    sub.subscribe(&topic, 1).await;
    sub.disconnect().await;
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("pub")).await;
    publ.publish_acked(&topic, 1, false, "queued then expired").await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (mut sub, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(false);
        set_expiry5(o, 1);
    })
    .await;
    assert!(!ack.session_present, "the session expired");
    // Neither the queued message nor the subscription survived.
    let (mut control, _) = Mqtt5::connect(&broker, &unique_id("ctl")).await;
    control.subscribe(&topic, 1).await;
    publ.publish_acked(&topic, 1, false, "after").await;
    assert_eq!(&control.next_publish().await.payload[..], b"after");
    sub.expect_no_publish(QUIET).await;
}

/// A session expiring in 60 s is still there after a short absence (the counterpart of
/// the test above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_survives_within_expiry() {
    let broker = TestBroker::start();
    let id = unique_id("noexp");
    let (c, _) = Mqtt5::connect_with(&broker, &id, |o| set_expiry5(o, 60)).await;
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_c, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(false);
        set_expiry5(o, 60);
    })
    .await;
    assert!(ack.session_present);
}

/// 5.0 session expiry 0 (the default): nothing survives the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_without_expiry_ends_with_connection() {
    let broker = TestBroker::start();
    let id = unique_id("zero");
    let (mut c, _) = Mqtt5::connect(&broker, &id).await;
    c.subscribe(&unique_topic("zero"), 1).await;
    c.disconnect().await;
    let (_c, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(false);
    })
    .await;
    assert!(!ack.session_present);
}

/// 3.1.1: QoS 1 messages delivered but not acknowledged are sent again, with DUP, after
/// the subscriber reconnects to its persistent session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_inflight_resent_with_dup_after_reconnect() {
    let broker = TestBroker::start();
    let id = unique_id("dup4");
    let topic = unique_topic("dup4");
    let (mut sub, _) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
        o.set_manual_acks(true);
    })
    .await;
    sub.subscribe(&topic, 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    for i in 0..3 {
        publ.publish_acked(&topic, 1, false, format!("m{i}")).await;
    }
    let first = sub.publishes(3).await;
    assert_eq!(payloads4(&first), ["m0", "m1", "m2"]);
    assert!(first.iter().all(|p| !p.dup));
    sub.kill().await;

    let (mut sub, ack) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    assert!(ack.session_present);
    let again = sub.publishes(3).await;
    assert_eq!(payloads4(&again), ["m0", "m1", "m2"], "resent in order");
    assert!(again.iter().all(|p| p.dup), "resent with DUP: {again:?}");
    assert!(again.iter().all(|p| qos4_num(p.qos) == 1));
    // Acknowledged now: nothing more.
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_inflight_resent_with_dup_after_reconnect() {
    let broker = TestBroker::start();
    let id = unique_id("dup5");
    let topic = unique_topic("dup5");
    let (mut sub, _) = Mqtt5::connect_with(&broker, &id, |o| {
        set_expiry5(o, 60);
        o.set_manual_acks(true);
    })
    .await;
    sub.subscribe(&topic, 1).await;
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("pub")).await;
    for i in 0..3 {
        publ.publish_acked(&topic, 1, false, format!("m{i}")).await;
    }
    let first = sub.publishes(3).await;
    assert_eq!(payloads5(&first), ["m0", "m1", "m2"]);
    sub.kill().await;

    let (mut sub, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(false);
        set_expiry5(o, 60);
    })
    .await;
    assert!(ack.session_present);
    let again = sub.publishes(3).await;
    assert_eq!(payloads5(&again), ["m0", "m1", "m2"], "resent in order");
    assert!(again.iter().all(|p| p.dup), "resent with DUP: {again:?}");
    sub.expect_no_publish(QUIET).await;
}

/// QoS 2 messages not yet received (no PUBREC) are resent with DUP too, and complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_qos2_inflight_resent_with_dup_after_reconnect() {
    let broker = TestBroker::start();
    let id = unique_id("dupq2");
    let topic = unique_topic("dupq2");
    let (mut sub, _) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
        o.set_manual_acks(true);
    })
    .await;
    sub.subscribe(&topic, 2).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    publ.publish_acked(&topic, 2, false, "once").await;
    let first = sub.next_publish().await;
    assert_eq!(&first.payload[..], b"once");
    sub.kill().await;

    let (mut sub, _) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    let again = sub.next_publish().await;
    assert_eq!(&again.payload[..], b"once");
    assert!(again.dup, "resent with DUP");
    assert_eq!(qos4_num(again.qos), 2);
    sub.ev
        .wait_for("the broker's PUBREL", WAIT, |e| match e {
            rumqttc::Event::Incoming(rumqttc::Packet::PubRel(r)) if r.pkid == again.pkid => Some(()),
            _ => None,
        })
        .await;
    sub.expect_no_publish(QUIET).await;
}
