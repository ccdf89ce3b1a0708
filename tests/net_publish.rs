//! PUBLISH QoS 0, 1 and 2 in both directions, QoS downgrade to the subscription's QoS,
//! exactly-once delivery, and ordering per publisher and topic.

mod support;

use support::*;

/// 3.1.1 both ways at QoS `q`: the publisher's exchange completes (PUBACK / PUBREC-PUBREL-
/// PUBCOMP) and the subscriber gets the message at QoS `q` with a packet id, and for QoS 2
/// the broker's PUBREL.
async fn roundtrip_v4(q: u8) {
    let broker = TestBroker::start();
    let topic = unique_topic(&format!("rt4q{q}"));
    let (mut sub, _) = Mqtt4::connect(&broker, &unique_id("sub")).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    sub.subscribe(&topic, q).await;
    publ.publish_acked(&topic, q, false, format!("payload q{q}")).await;
    let p = sub.next_publish().await;
    assert_eq!(p.topic, topic);
    assert_eq!(p.payload, format!("payload q{q}").as_bytes());
    assert_eq!(qos4_num(p.qos), q, "delivered at the published QoS");
    assert!(!p.retain && !p.dup);
    if q > 0 {
        assert_ne!(p.pkid, 0, "QoS > 0 delivery carries a packet id");
    }
    if q == 2 {
        sub.ev
            .wait_for("the broker's PUBREL", WAIT, |e| match e {
                rumqttc::Event::Incoming(rumqttc::Packet::PubRel(r)) if r.pkid == p.pkid => Some(()),
                _ => None,
            })
            .await;
    }
    // Exactly one copy.
    publ.publish_acked(&topic, q, false, "next").await;
    assert_eq!(&sub.next_publish().await.payload[..], b"next");
    sub.expect_no_publish(QUIET).await;
}

async fn roundtrip_v5(q: u8) {
    let broker = TestBroker::start();
    let topic = unique_topic(&format!("rt5q{q}"));
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("sub")).await;
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("pub")).await;
    sub.subscribe(&topic, q).await;
    publ.publish_acked(&topic, q, false, format!("payload q{q}")).await;
    let p = sub.next_publish().await;
    assert_eq!(topic5(&p), topic);
    assert_eq!(p.payload, format!("payload q{q}").as_bytes());
    assert_eq!(qos5_num(p.qos), q, "delivered at the published QoS");
    assert!(!p.retain && !p.dup);
    if q > 0 {
        assert_ne!(p.pkid, 0, "QoS > 0 delivery carries a packet id");
    }
    if q == 2 {
        sub.ev
            .wait_for("the broker's PUBREL", WAIT, |e| match e {
                rumqttc::v5::Event::Incoming(p5::Packet::PubRel(r)) if r.pkid == p.pkid => Some(()),
                _ => None,
            })
            .await;
    }
    publ.publish_acked(&topic, q, false, "next").await;
    assert_eq!(&sub.next_publish().await.payload[..], b"next");
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_qos0_both_directions() {
    roundtrip_v4(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_qos1_both_directions() {
    roundtrip_v4(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_qos2_both_directions() {
    roundtrip_v4(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_qos0_both_directions() {
    roundtrip_v5(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_qos1_both_directions() {
    roundtrip_v5(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_qos2_both_directions() {
    roundtrip_v5(2).await;
}

/// Each subscriber gets min(published QoS, granted QoS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_qos_downgraded_to_subscription_qos() {
    let broker = TestBroker::start();
    let topic = unique_topic("down4");
    let mut subs = Vec::new();
    for granted in 0..3u8 {
        let (mut s, _) = Mqtt4::connect(&broker, &unique_id(&format!("sub{granted}"))).await;
        s.subscribe(&topic, granted).await;
        subs.push((granted, s));
    }
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    for published in [2u8, 1, 0] {
        publ.publish_acked(&topic, published, false, format!("q{published}")).await;
        for (granted, s) in subs.iter_mut() {
            let p = s.next_publish().await;
            assert_eq!(p.payload, format!("q{published}").as_bytes());
            assert_eq!(
                qos4_num(p.qos),
                published.min(*granted),
                "QoS {published} publish to a QoS {granted} subscription"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_qos_downgraded_to_subscription_qos() {
    let broker = TestBroker::start();
    let topic = unique_topic("down5");
    let mut subs = Vec::new();
    for granted in 0..3u8 {
        let (mut s, _) = Mqtt5::connect(&broker, &unique_id(&format!("sub{granted}"))).await;
        s.subscribe(&topic, granted).await;
        subs.push((granted, s));
    }
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("pub")).await;
    for published in [2u8, 1, 0] {
        publ.publish_acked(&topic, published, false, format!("q{published}")).await;
        for (granted, s) in subs.iter_mut() {
            let p = s.next_publish().await;
            assert_eq!(p.payload, format!("q{published}").as_bytes());
            assert_eq!(
                qos5_num(p.qos),
                published.min(*granted),
                "QoS {published} publish to a QoS {granted} subscription"
            );
        }
    }
}

/// Many QoS 2 messages in flight at once each arrive exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_burst_delivered_exactly_once() {
    let broker = TestBroker::start();
    let topic = unique_topic("eo");
    let (mut sub, _) = Mqtt4::connect(&broker, &unique_id("sub")).await;
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("pub")).await;
    sub.subscribe(&topic, 2).await;
    const N: usize = 50;
    for i in 0..N {
        publ.publish(&topic, 2, false, i.to_string()).await;
    }
    publ.wait_acks(2, N).await;
    let got: Vec<String> =
        sub.publishes(N).await.iter().map(|p| String::from_utf8(p.payload.to_vec()).unwrap()).collect();
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "every message once, in order");
    sub.expect_no_publish(QUIET).await;
}

/// 1000 QoS 1 messages from one publisher to one topic arrive complete and in order at
/// every one of several subscribers of both versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_kept_per_publisher_and_topic_at_every_subscriber() {
    let broker = TestBroker::start();
    let topic = unique_topic("order");
    const N: usize = 1000;
    let mut v4s = Vec::new();
    let mut v5s = Vec::new();
    for _ in 0..2 {
        let (mut s, _) = Mqtt4::connect(&broker, &unique_id("s4")).await;
        s.subscribe(&topic, 1).await;
        v4s.push(s);
        let (mut s, _) = Mqtt5::connect(&broker, &unique_id("s5")).await;
        s.subscribe(&topic, 1).await;
        v5s.push(s);
    }
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("pub")).await;
    let sender = publ.client.clone();
    let t = topic.clone();
    let feeder = tokio::spawn(async move {
        for i in 0..N {
            sender.publish(&t, rumqttc::QoS::AtLeastOnce, false, i.to_string()).await.expect("publish queued");
        }
    });
    publ.wait_acks(1, N).await;
    tokio::time::timeout(WAIT, feeder).await.expect("feeder finished").expect("feeder ok");
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    for s in v4s.iter_mut() {
        let got: Vec<String> =
            s.publishes(N).await.iter().map(|p| String::from_utf8(p.payload.to_vec()).unwrap()).collect();
        assert_eq!(got, want, "{}: order", s.id);
    }
    for s in v5s.iter_mut() {
        let got: Vec<String> =
            s.publishes(N).await.iter().map(|p| String::from_utf8(p.payload.to_vec()).unwrap()).collect();
        assert_eq!(got, want, "{}: order", s.id);
    }
}

/// Several publishers, each on its own topic, to one wildcard subscriber: each
/// publisher's messages arrive in its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_kept_per_publisher_through_a_wildcard() {
    let broker = TestBroker::start();
    let base = unique_topic("orderw");
    const PUBS: usize = 4;
    const N: usize = 250;
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("sub")).await;
    sub.subscribe(&format!("{base}/#"), 1).await;
    let mut pubs = Vec::new();
    for k in 0..PUBS {
        let (p, _) = Mqtt4::connect(&broker, &unique_id(&format!("pub{k}"))).await;
        pubs.push(p);
    }
    let mut feeders = Vec::new();
    for (k, p) in pubs.iter().enumerate() {
        let sender = p.client.clone();
        let topic = format!("{base}/p{k}");
        feeders.push(tokio::spawn(async move {
            for i in 0..N {
                sender.publish(&topic, rumqttc::QoS::AtLeastOnce, false, i.to_string()).await.expect("publish queued");
            }
        }));
    }
    for p in pubs.iter_mut() {
        p.wait_acks(1, N).await;
    }
    for f in feeders {
        tokio::time::timeout(WAIT, f).await.expect("feeder finished").expect("feeder ok");
    }
    let mut next = [0usize; PUBS];
    for p in sub.publishes(PUBS * N).await {
        let topic = topic5(&p);
        let k: usize = topic.rsplit('/').next().unwrap().trim_start_matches('p').parse().unwrap();
        let i: usize = String::from_utf8(p.payload.to_vec()).unwrap().parse().unwrap();
        assert_eq!(i, next[k], "publisher {k}: message {i} arrived when {} was expected", next[k]);
        next[k] += 1;
    }
    assert_eq!(next, [N; PUBS]);
}
