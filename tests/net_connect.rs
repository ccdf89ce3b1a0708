//! CONNECT/CONNACK for 3.1.1 and 5.0 (session present flag, client id rules, credentials)
//! and keep-alive (PINGREQ/PINGRESP, enforcement), driven by rumqttc.

mod support;

use std::time::Duration;

use rumqttc::ConnectReturnCode;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_session_present_false_then_true_for_persistent_session() {
    let broker = TestBroker::start();
    let id = unique_id("v4sp");

    let (c, ack) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(!ack.session_present, "first persistent connect: no session yet");
    c.disconnect().await;

    let (c, ack) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    assert!(ack.session_present, "reconnect with clean_session=false must find the session");
    c.disconnect().await;

    // A clean session starts fresh and discards the stored one when it ends.
    let (c, ack) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(true);
    })
    .await;
    assert!(!ack.session_present, "clean_session=true never reports a present session");
    c.disconnect().await;

    let (c, ack) = Mqtt4::connect_with(&broker, &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    assert!(!ack.session_present, "the clean session discarded the old state");
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_present_false_then_true_for_persistent_session() {
    let broker = TestBroker::start();
    let id = unique_id("v5sp");

    let (c, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(true);
        set_expiry5(o, 60);
    })
    .await;
    assert_eq!(ack.code, p5::ConnectReturnCode::Success);
    assert!(!ack.session_present, "first connect: no session yet");
    c.disconnect().await;

    let (c, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(false);
        set_expiry5(o, 60);
    })
    .await;
    assert!(ack.session_present, "reconnect with clean_start=false within the expiry must find the session");
    c.disconnect().await;

    let (c, ack) = Mqtt5::connect_with(&broker, &id, |o| {
        o.set_clean_start(true);
        set_expiry5(o, 60);
    })
    .await;
    assert!(!ack.session_present, "clean_start=true discards the session");
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_empty_client_id_gets_an_assigned_identifier() {
    let broker = TestBroker::start();
    let (mut a, ack_a) = Mqtt5::connect(&broker, "").await;
    let (mut b, ack_b) = Mqtt5::connect(&broker, "").await;
    let assigned = |ack: &p5::ConnAck| {
        ack.properties
            .as_ref()
            .and_then(|p| p.assigned_client_identifier.clone())
            .expect("CONNACK of an empty client id carries an Assigned Client Identifier")
    };
    let (id_a, id_b) = (assigned(&ack_a), assigned(&ack_b));
    assert!(!id_a.is_empty() && !id_b.is_empty(), "assigned ids are not empty");
    assert_ne!(id_a, id_b, "two clients get different ids");

    // Both connections work side by side (neither took the other over).
    let topic = unique_topic("assigned");
    a.subscribe(&topic, 1).await;
    b.subscribe(&topic, 1).await;
    a.publish_acked(&topic, 1, false, "hello").await;
    for c in [&mut a, &mut b] {
        let p = c.next_publish().await;
        assert_eq!(&p.payload[..], b"hello");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_empty_client_id_with_clean_session_is_accepted() {
    let broker = TestBroker::start();
    let (mut a, ack_a) = Mqtt4::connect(&broker, "").await;
    let (mut b, ack_b) = Mqtt4::connect(&broker, "").await;
    assert_eq!(ack_a.code, ConnectReturnCode::Success);
    assert_eq!(ack_b.code, ConnectReturnCode::Success);
    assert!(!ack_a.session_present && !ack_b.session_present);

    let topic = unique_topic("anon4");
    a.subscribe(&topic, 1).await;
    b.subscribe(&topic, 1).await;
    b.publish_acked(&topic, 1, false, "x").await;
    for c in [&mut a, &mut b] {
        let p = c.next_publish().await;
        assert_eq!(&p.payload[..], b"x");
    }
}

/// rumqttc's options refuse an empty id with clean_session=false, so the CONNECT is
/// encoded with rumqttc's codec and sent on a plain socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_empty_client_id_with_persistent_session_is_refused_with_code_2() {
    let broker = TestBroker::start();
    let mut raw = Raw::connect(&broker).await;
    raw.send_connect(&raw_connect4("", false, 30)).await;
    match raw.read_packet().await {
        Some(rumqttc::Packet::ConnAck(ack)) => {
            assert_eq!(ack.code, ConnectReturnCode::BadClientId, "identifier rejected (0x02)");
            assert!(!ack.session_present);
        }
        other => panic!("expected a CONNACK, got {other:?}"),
    }
    assert!(raw.read_packet().await.is_none(), "the broker closes the connection after refusing it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_credentials_are_accepted() {
    let broker = TestBroker::start();
    let (mut c, ack) = Mqtt4::connect_with(&broker, &unique_id("cred"), |o| {
        o.set_credentials("user", "secret");
    })
    .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let topic = unique_topic("cred");
    c.subscribe(&topic, 0).await;
    c.publish(&topic, 0, false, "ok").await;
    assert_eq!(&c.next_publish().await.payload[..], b"ok");
}

async fn ping_v4(broker: &TestBroker) {
    let (mut c, _) = Mqtt4::connect_with(broker, &unique_id("ping4"), |o| {
        o.set_keep_alive(Duration::from_secs(1));
    })
    .await;
    let topic = unique_topic("ping4");
    c.subscribe(&topic, 1).await;
    for i in 0..3 {
        let what = format!("PINGRESP {}", i + 1);
        c.ev.wait_for(&what, Duration::from_secs(5), |e| match e {
            rumqttc::Event::Incoming(rumqttc::Packet::PingResp) => Some(()),
            _ => None,
        })
        .await;
    }
    // Several keep-alive intervals later the connection still carries messages.
    c.publish_acked(&topic, 1, false, "alive").await;
    assert_eq!(&c.next_publish().await.payload[..], b"alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_pingreq_gets_pingresp_and_connection_stays_up() {
    let broker = TestBroker::start();
    ping_v4(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_pingreq_gets_pingresp_and_connection_stays_up() {
    let broker = TestBroker::start();
    // rumqttc's 5.0 client refuses keep-alives under 5 s: one interval is enough here.
    let (mut c, _) = Mqtt5::connect_with(&broker, &unique_id("ping5"), |o| {
        o.set_keep_alive(Duration::from_secs(5));
    })
    .await;
    let topic = unique_topic("ping5");
    c.subscribe(&topic, 1).await;
    c.ev.wait_for("a PINGRESP", Duration::from_secs(8), |e| match e {
        rumqttc::v5::Event::Incoming(p5::Packet::PingResp(_)) => Some(()),
        _ => None,
    })
    .await;
    c.publish_acked(&topic, 1, false, "alive").await;
    assert_eq!(&c.next_publish().await.payload[..], b"alive");
}

/// A client that announced a 1 s keep-alive and then stays silent is disconnected (the
/// broker allows 1.5 x the keep-alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_disconnected_after_keep_alive() {
    let broker = TestBroker::start();
    let mut raw = Raw::connect(&broker).await;
    raw.send_connect(&raw_connect4(&unique_id("silent"), true, 1)).await;
    match raw.read_packet().await {
        Some(rumqttc::Packet::ConnAck(ack)) => assert_eq!(ack.code, ConnectReturnCode::Success),
        other => panic!("expected a CONNACK, got {other:?}"),
    }
    raw.read_until_closed(Duration::from_secs(6), 0).await;
}
