//! Configured limits, each enforced: connections, packet size, topic length and levels,
//! in-flight window, and the per-connection outbound buffer (slow subscribers).

mod support;

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_the_next_one() {
    let broker = TestBroker::start_with(|c| c.limits.max_connections = 3);
    let topic = unique_topic("maxc");
    let (mut a, _) = Mqtt4::connect(&broker, &unique_id("a")).await;
    let (mut b, _) = Mqtt5::connect(&broker, &unique_id("b")).await;
    let (c, _) = Mqtt4::connect(&broker, &unique_id("c")).await;

    match Mqtt5::try_connect_with(&broker, &unique_id("d5"), |_| {}).await {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, p5::ConnectReturnCode::QuotaExceeded, "5.0: CONNACK 0x97");
        }
        Err(e) => panic!("5.0: expected CONNACK 0x97, got {e:?}"),
        Ok(_) => panic!("5.0: a 4th connection was accepted with max_connections = 3"),
    }
    match Mqtt4::try_connect_with(&broker, &unique_id("d4"), |_| {}).await {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::ServiceUnavailable, "3.1.1: CONNACK 3");
        }
        Err(e) => panic!("3.1.1: expected CONNACK 3, got {e:?}"),
        Ok(_) => panic!("3.1.1: a 4th connection was accepted with max_connections = 3"),
    }

    // The admitted ones are unaffected.
    a.subscribe(&topic, 1).await;
    b.publish_acked(&topic, 1, false, "still fine").await;
    assert_eq!(&a.next_publish().await.payload[..], b"still fine");

    // A freed slot can be used again.
    c.disconnect().await;
    broker.wait_connections(2, WAIT).await;
    let (_d, ack) = Mqtt4::connect(&broker, &unique_id("d")).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
}

/// A PUBLISH larger than max_packet_size closes that connection; others carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_publish_closes_only_that_connection() {
    let broker = TestBroker::start_with(|c| c.limits.max_packet_size = 1024);
    let topic = unique_topic("big");
    let (mut sub, _) = Mqtt4::connect(&broker, &unique_id("sub")).await;
    sub.subscribe(&topic, 1).await;
    let (mut healthy4, _) = Mqtt4::connect(&broker, &unique_id("ok4")).await;
    let (mut healthy5, ack) = Mqtt5::connect(&broker, &unique_id("ok5")).await;
    let announced = ack.properties.as_ref().and_then(|p| p.max_packet_size);
    assert_eq!(announced, Some(1024), "5.0 CONNACK announces the Maximum Packet Size");

    // rumqttc's 3.1.1 client does not know the broker's limit and sends it.
    let (mut big, _) = Mqtt4::connect(&broker, &unique_id("big")).await;
    big.publish(&topic, 1, false, vec![b'x'; 4096]).await;
    big.closed().await;

    healthy4.publish_acked(&topic, 1, false, "small 4").await;
    healthy5.publish_acked(&topic, 1, false, "small 5").await;
    let got: Vec<Vec<u8>> = sub.publishes(2).await.iter().map(|p| p.payload.to_vec()).collect();
    assert_eq!(got, vec![b"small 4".to_vec(), b"small 5".to_vec()], "the oversized message is not forwarded");
    sub.expect_no_publish(QUIET).await;
    // A packet right at the limit is fine: 1024 bytes = 3 (fixed header: type and a 2-byte
    // remaining length) + 2 + topic + 2 (packet id) + payload.
    let fits = 1024 - 3 - 2 - topic.len() - 2;
    healthy4.publish_acked(&topic, 1, false, vec![b'y'; fits]).await;
    assert_eq!(sub.next_publish().await.payload.len(), fits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_topic_limits_refuse_subscribe_in_suback() {
    let broker = TestBroker::start_with(|c| {
        c.limits.max_topic_length = 32;
        c.limits.max_topic_levels = 4;
    });
    let (mut c, _) = Mqtt4::connect(&broker, &unique_id("c")).await;
    let long_ok = "x".repeat(32);
    let too_long = "x".repeat(33);
    let codes =
        c.subscribe_many(&[("a/b/c/d", 1), ("a/b/c/d/e", 1), (&too_long, 1), (&long_ok, 0), ("a/+/+/#", 1)]).await;
    use rumqttc::SubscribeReasonCode as C;
    assert_eq!(
        codes,
        vec![
            C::Success(rumqttc::QoS::AtLeastOnce),
            C::Failure,
            C::Failure,
            C::Success(rumqttc::QoS::AtMostOnce),
            C::Success(rumqttc::QoS::AtLeastOnce),
        ],
        "4 levels and 32 bytes pass, 5 levels and 33 bytes are refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_topic_limits_refuse_subscribe_in_suback() {
    let broker = TestBroker::start_with(|c| {
        c.limits.max_topic_length = 32;
        c.limits.max_topic_levels = 4;
    });
    let (mut ok, _) = Mqtt5::connect(&broker, &unique_id("ok")).await;
    ok.subscribe("a/b/c/d", 1).await;
    ok.subscribe(&"x".repeat(32), 1).await;
    let (levels, _) = Mqtt5::connect(&broker, &unique_id("levels")).await;
    let reason = levels.subscribe_refused("a/b/c/d/e", 1).await;
    assert!(!matches!(reason, p5::SubscribeReasonCode::Success(_)), "5 levels refused: {reason:?}");
    let (length, _) = Mqtt5::connect(&broker, &unique_id("length")).await;
    let reason = length.subscribe_refused(&"x".repeat(33), 1).await;
    assert!(!matches!(reason, p5::SubscribeReasonCode::Success(_)), "33 bytes refused: {reason:?}");
}

/// Issue 10: with the level limit raised, filters and a topic of 10 000 levels are
/// subscribed, matched, unsubscribed and torn down without overflowing a shard's stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_level_filters_and_topics_issue_10() {
    let broker = TestBroker::start_with(|c| {
        c.limits.max_topic_length = 65_535;
        c.limits.max_topic_levels = 20_000;
    });
    let topic = vec!["a"; 10_000].join("/");
    let plus: Vec<&str> = (0..10_000).map(|i| if i % 2 == 0 { "a" } else { "+" }).collect();
    let plus = plus.join("/");
    let hash = format!("{}/#", vec!["a"; 9_999].join("/"));
    let (mut sub, _) = Mqtt4::connect(&broker, &unique_id("deep-sub")).await;
    let codes = sub.subscribe_many(&[(&topic, 1), (&plus, 1), (&hash, 1)]).await;
    assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Success(qos4(1)); 3]);
    let (mut control, _) = Mqtt4::connect(&broker, &unique_id("deep-ctl")).await;
    control.subscribe(&hash, 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("deep-pub")).await;
    publ.publish_acked(&topic, 1, false, "deep").await;
    let p = sub.next_publish().await;
    assert_eq!((p.topic.len(), &p.payload[..]), (topic.len(), &b"deep"[..]));
    assert_eq!(&control.next_publish().await.payload[..], b"deep");
    // Overlapping subscriptions of one session: one copy.
    sub.expect_no_publish(QUIET).await;
    for f in [&topic, &plus, &hash] {
        sub.unsubscribe(f).await;
    }
    publ.publish_acked(&topic, 1, false, "after").await;
    assert_eq!(&control.next_publish().await.payload[..], b"after");
    sub.expect_no_publish(QUIET).await;
    // The control's session ends with its connection: its deep filter leaves both tries.
    control.disconnect().await;
    broker.wait_connections(2, WAIT).await;
    publ.publish_acked(&topic, 1, false, "nobody").await;
}

/// A PUBLISH to a topic past the limits ends that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_past_topic_limits_closes_connection() {
    let broker = TestBroker::start_with(|c| {
        c.limits.max_topic_length = 32;
        c.limits.max_topic_levels = 4;
    });
    let (mut sub, _) = Mqtt4::connect(&broker, &unique_id("sub")).await;
    sub.subscribe("#", 1).await;
    let (mut deep, _) = Mqtt4::connect(&broker, &unique_id("deep")).await;
    deep.publish("a/b/c/d/e", 1, false, "deep").await;
    deep.closed().await;
    let (mut long, _) = Mqtt4::connect(&broker, &unique_id("long")).await;
    long.publish(&"x".repeat(33), 1, false, "long").await;
    long.closed().await;
    let (mut fine, _) = Mqtt4::connect(&broker, &unique_id("fine")).await;
    fine.publish_acked("a/b/c/d", 1, false, "fine").await;
    let p = sub.next_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("a/b/c/d", &b"fine"[..]));
}

/// max_inflight = 2 with no burst: a subscriber holding 2 unacknowledged QoS 1 messages
/// gets no third until it acknowledges one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_max_inflight_holds_back_until_ack() {
    let broker = TestBroker::start_with(|c| {
        c.limits.max_inflight = 2;
        // A fixed window: no burst past it for a client that keeps up.
        c.limits.max_inflight_burst = 0;
    });
    let topic = unique_topic("infl4");
    let (mut sub, _) = Mqtt4::connect_with(&broker, &unique_id("sub"), |o| {
        o.set_manual_acks(true);
    })
    .await;
    sub.subscribe(&topic, 1).await;
    let (mut control, _) = Mqtt4::connect(&broker, &unique_id("ctl")).await;
    control.subscribe(&topic, 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    for i in 0..4 {
        publ.publish_acked(&topic, 1, false, format!("m{i}")).await;
    }
    assert_eq!(control.publishes(4).await.len(), 4);
    let first = sub.publishes(2).await;
    assert_eq!(first.iter().map(|p| &p.payload[..]).collect::<Vec<_>>(), [b"m0", b"m1"]);
    sub.expect_no_publish(QUIET).await;

    sub.ack(&first[0]).await;
    let third = sub.next_publish().await;
    assert_eq!(&third.payload[..], b"m2");
    sub.expect_no_publish(QUIET).await;
    sub.ack(&first[1]).await;
    sub.ack(&third).await;
    assert_eq!(&sub.next_publish().await.payload[..], b"m3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_max_inflight_holds_back_until_ack() {
    let broker = TestBroker::start_with(|c| {
        c.limits.max_inflight = 2;
        // A fixed window: no burst past it for a client that keeps up.
        c.limits.max_inflight_burst = 0;
    });
    let topic = unique_topic("infl5");
    let (mut sub, ack) = Mqtt5::connect_with(&broker, &unique_id("sub"), |o| {
        o.set_manual_acks(true);
    })
    .await;
    let announced = ack.properties.as_ref().and_then(|p| p.receive_max);
    assert_eq!(announced, Some(2), "CONNACK announces Receive Maximum = max_inflight");
    sub.subscribe(&topic, 1).await;
    let (mut control, _) = Mqtt5::connect(&broker, &unique_id("ctl")).await;
    control.subscribe(&topic, 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    for i in 0..3 {
        publ.publish_acked(&topic, 1, false, format!("m{i}")).await;
    }
    assert_eq!(control.publishes(3).await.len(), 3);
    let first = sub.publishes(2).await;
    assert_eq!(first.iter().map(|p| &p.payload[..]).collect::<Vec<_>>(), [b"m0", b"m1"]);
    sub.expect_no_publish(QUIET).await;
    sub.ack(&first[1]).await;
    assert_eq!(&sub.next_publish().await.payload[..], b"m2");
}

/// A subscriber on a raw socket with a tiny receive buffer: CONNECT and SUBSCRIBE (QoS 0),
/// then it stops reading.
async fn stalled_subscriber(broker: &TestBroker, topic: &str) -> Raw {
    let mut slow = Raw::connect_with_rcvbuf(broker, 4096).await;
    slow.send_connect(&raw_connect4(&unique_id("slow"), true, 0)).await;
    match slow.read_packet().await {
        Some(rumqttc::Packet::ConnAck(a)) => assert_eq!(a.code, rumqttc::ConnectReturnCode::Success),
        other => panic!("slow: expected CONNACK, got {other:?}"),
    }
    let mut s = rumqttc::mqttbytes::v4::Subscribe::new(topic, rumqttc::QoS::AtMostOnce);
    s.pkid = 1;
    slow.send_subscribe(&s).await;
    match slow.read_packet().await {
        Some(rumqttc::Packet::SubAck(a)) => {
            assert_eq!(a.return_codes, vec![rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtMostOnce)])
        }
        other => panic!("slow: expected SUBACK, got {other:?}"),
    }
    slow
}

const BURST_PAYLOAD: usize = 4096;
const BURST_ROUND: usize = 8;
/// 8 MiB: well past what the kernel buffers of the stalled connection (send buffer at
/// most tcp_wmem max, 4 MiB by default) plus its 64 KiB outbox hold.
const BURST_MESSAGES: usize = 2048;

/// Publishes the burst in rounds the healthy subscriber keeps up with, and checks it gets
/// every message in order.
async fn burst(publ: &mut Mqtt4, healthy: &mut Mqtt4, topic: &str) {
    let payload = vec![b'p'; BURST_PAYLOAD - 8];
    for round in 0..BURST_MESSAGES / BURST_ROUND {
        for k in 0..BURST_ROUND {
            let mut body = format!("{:08}", round * BURST_ROUND + k).into_bytes();
            body.extend_from_slice(&payload);
            publ.publish(topic, 1, false, body).await;
        }
        publ.wait_acks(1, BURST_ROUND).await;
        for k in 0..BURST_ROUND {
            let p = healthy.next_publish().await;
            let n: usize = std::str::from_utf8(&p.payload[..8]).unwrap().parse().unwrap();
            assert_eq!(n, round * BURST_ROUND + k, "healthy subscriber: message order");
        }
    }
}

/// While one QoS 0 subscriber does not read, a healthy subscriber on the same topic gets
/// every message of a burst; the stalled one's outbox stays at its bound (its QoS 0
/// messages are dropped for it alone, and counted), and it is not disconnected for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_does_not_hold_back_a_healthy_one() {
    let broker = TestBroker::start_with(|c| c.limits.max_outbound_buffer = 64 * 1024);
    let topic = unique_topic("slow");
    let mut slow = stalled_subscriber(&broker, &topic).await;
    let (mut healthy, _) = Mqtt4::connect(&broker, &unique_id("healthy")).await;
    healthy.subscribe(&topic, 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    burst(&mut publ, &mut healthy, &topic).await;
    let d = broker.wait_drops("QoS 0 drops for the full outbox", WAIT, |d| d.outbox_full > 0).await;
    assert_eq!((d.stuck, d.slow_consumers), (0, 0), "{d:?}");
    assert_eq!(broker.connections(), 3, "the slow subscriber stays connected");
    // What it reads now is bounded: the kernel buffers and its 64 KiB outbox, not the
    // 8 MiB burst.
    drop(publ);
    drop(healthy);
    let read = slow.read_until_quiet(Duration::from_millis(500), 6 << 20).await;
    assert!(read < BURST_MESSAGES * BURST_PAYLOAD, "{read} bytes");
}

/// A subscriber whose socket takes nothing is disconnected once the stuck timeout passes
/// with bytes waiting for it, without having to read anything first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_subscriber_is_disconnected_while_not_reading() {
    let broker = TestBroker::start_with(|c| {
        c.limits.max_outbound_buffer = 64 * 1024;
        c.limits.stuck_timeout = Duration::from_secs(1);
    });
    let topic = unique_topic("slowd");
    let slow = stalled_subscriber(&broker, &topic).await;
    let (mut healthy, _) = Mqtt4::connect(&broker, &unique_id("healthy")).await;
    healthy.subscribe(&topic, 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    assert_eq!(broker.connections(), 3);
    // Bursts until the stalled socket's kernel buffers are full (what fits there is not
    // stuck: it left the outbox), at most 8 (64 MiB).
    for _ in 0..8 {
        burst(&mut publ, &mut healthy, &topic).await;
        if broker.connections() == 2 {
            break;
        }
    }
    // Only the publisher and the healthy subscriber are left.
    broker.wait_connections(2, WAIT).await;
    let d = broker.wait_drops("a stuck disconnect", WAIT, |d| d.stuck == 1).await;
    assert_eq!(d.slow_consumers, 0, "{d:?}");
    drop(slow);
}
