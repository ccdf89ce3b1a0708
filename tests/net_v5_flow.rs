//! MQTT 5.0 limits announced and honoured both ways: the CONNACK properties, the client's
//! Maximum Packet Size (too large messages are dropped for that client, not sent, and do
//! not block its window), and the broker's Receive Maximum (0x93 past it).

mod support;

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connack_announces_what_the_broker_supports() {
    let broker = TestBroker::start_with(|c| {
        c.limits.max_inflight = 32;
        c.limits.topic_alias_maximum = 10;
        c.limits.max_packet_size = 100_000;
    });
    let (_c, ack) = Mqtt5::connect(&broker, &unique_id("caps")).await;
    let p = ack.properties.expect("CONNACK properties");
    assert_eq!(p.receive_max, Some(32));
    assert_eq!(p.topic_alias_max, Some(10));
    assert_eq!(p.max_packet_size, Some(100_000));
    assert_eq!(p.retain_available, Some(1));
    assert_eq!(p.wildcard_subscription_available, Some(1));
    assert_eq!(p.subscription_identifiers_available, Some(1));
    assert_eq!(p.shared_subscription_available, Some(1));
    assert_eq!(p.max_qos, None, "absent: QoS 2 is supported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_larger_than_the_clients_maximum_are_dropped_for_it() {
    let broker = TestBroker::start();
    let topic = unique_topic("mps");
    let (mut small, _) = Mqtt5::connect_with(&broker, &unique_id("mps-small"), |o| {
        o.set_max_packet_size(Some(300));
    })
    .await;
    small.subscribe(&topic, 1).await;
    let (mut big, _) = Mqtt5::connect(&broker, &unique_id("mps-big")).await;
    big.subscribe(&topic, 1).await;
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("mps-pub")).await;
    for (qos, size) in [(1, 1000), (0, 1000), (1, 50), (0, 60)] {
        publ.publish_acked(&topic, qos, false, vec![b'x'; size]).await;
    }
    let sizes = |v: Vec<p5::Publish>| v.iter().map(|p| p.payload.len()).collect::<Vec<_>>();
    assert_eq!(sizes(small.collect_publishes(QUIET, 10).await), [50, 60], "only what fits");
    assert_eq!(sizes(big.collect_publishes(QUIET, 10).await), [1000, 1000, 50, 60]);
    // The dropped QoS 1 message holds no place in the small client's window.
    for _ in 0..3 {
        publ.publish_acked(&topic, 1, false, "after").await;
    }
    assert_eq!(small.publishes(3).await.len(), 3);
}

#[test]
fn receive_maximum_exceeded_gets_0x93() {
    use proto::{Packet, Protocol, QoS};
    let dir = tempfile::tempdir().unwrap();
    // Segment storage: acknowledgements wait for the commit, so they can pile up.
    let node = wire_broker(dir.path());
    let addr = node.local_addrs()[0];
    let mut c = wire::Raw::connect(addr, Protocol::V5, "rm-flood");
    // 40 QoS 1 publishes in one write: their acknowledgements wait for the commit, so past
    // the 4 announced the broker must refuse with Receive Maximum exceeded.
    flood(&mut c, 40, 1, QoS::AtLeastOnce);
    let seen = c.expect_closed();
    let refused = seen.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == 0x93));
    assert!(refused, "DISCONNECT 0x93 expected, saw {seen:?}");
    node.stop();
    node.join().unwrap();
}

/// Issue 10: a client flooding QoS 2 past the Receive Maximum reads DISCONNECT 0x93 and
/// then the end of the stream, never a reset: the broker shuts its side for writing and
/// reads what the client still sends before it closes. The client writes on after the
/// DISCONNECT; a reset would fail those writes.
#[test]
fn qos2_flood_past_receive_maximum_reads_0x93_then_a_clean_close_issue_10() {
    use proto::{Packet, Protocol, QoS};
    use std::io::{ErrorKind, Read, Write};
    let node = wire::broker(|c| c.limits.max_inflight = 2);
    let addr = node.local_addrs()[0];
    for round in 0..3 {
        let mut c = wire::Raw::connect(addr, Protocol::V5, &format!("rm2-flood-{round}"));
        // 400 QoS 2 publishes (about 44 KB) in one write, never released: past the 2
        // announced, the broker refuses with 0x93 with most of them still unread.
        flood(&mut c, 400, 100, QoS::ExactlyOnce);
        let bye = (0..1000).find_map(|_| match c.recv() {
            Some(Packet::PubRec(_)) => None,
            Some(Packet::Disconnect(d)) => Some(Some(d.reason)),
            _ => Some(None),
        });
        assert_eq!(bye, Some(Some(0x93)), "round {round}: DISCONNECT 0x93 expected");
        c.stream.set_read_timeout(Some(wire::WAIT)).unwrap();
        let mut rest = [0u8; 256];
        match c.stream.read(&mut rest) {
            Ok(0) => {}
            Ok(n) => panic!("round {round}: {n} bytes after the DISCONNECT"),
            Err(e) => assert_ne!(e.kind(), ErrorKind::ConnectionReset, "round {round}: reset after the DISCONNECT"),
        }
        // Still read by the broker: these writes find no reset either.
        for _ in 0..2 {
            c.stream
                .write_all(b"\xc0\x00")
                .unwrap_or_else(|e| panic!("round {round}: write after the DISCONNECT: {e}"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    node.stop();
    node.join().unwrap();
}

#[path = "wire/mod.rs"]
mod wire;

fn wire_broker(dir: &std::path::Path) -> ringmq::Node {
    let dir = dir.to_path_buf();
    wire::broker(move |c| {
        c.limits.max_inflight = 4;
        c.storage.data_dir = dir;
        c.storage.engine = ringmq::Engine::Segment;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_information_only_when_requested_and_configured() {
    let broker = TestBroker::start_with(|c| c.response_information = Some("replies/".into()));
    let (_a, ack) = Mqtt5::connect_with(&broker, &unique_id("ri-ask"), |o| {
        o.set_request_response_info(Some(1));
    })
    .await;
    assert_eq!(ack.properties.and_then(|p| p.response_information).as_deref(), Some("replies/"));
    let (_b, ack) = Mqtt5::connect(&broker, &unique_id("ri-no")).await;
    assert_eq!(ack.properties.and_then(|p| p.response_information), None, "not asked for");
    let plain = TestBroker::start();
    let (_c, ack) = Mqtt5::connect_with(&plain, &unique_id("ri-none"), |o| {
        o.set_request_response_info(Some(1));
    })
    .await;
    assert_eq!(ack.properties.and_then(|p| p.response_information), None, "not configured");
}

/// Sends `n` publishes of `size` payload bytes at `qos` in one write (packet ids 1..=n).
fn flood(c: &mut wire::Raw, n: usize, size: usize, qos: proto::QoS) {
    use proto::{Packet, Protocol, QoS};
    let mut out = bytes::BytesMut::new();
    for i in 0..n {
        let p = Packet::Publish(proto::Publish {
            dup: false,
            qos,
            retain: false,
            topic: bytes::Bytes::from_static(b"flood/t"),
            pkid: if qos == QoS::AtMostOnce { 0 } else { i as u16 + 1 },
            properties: Default::default(),
            payload: bytes::Bytes::from(vec![b'x'; size]),
        });
        p.write(Protocol::V5, &mut out).unwrap();
    }
    c.send_bytes(&out);
}

#[test]
fn publish_rate_limits_disconnect_with_0x96() {
    use proto::{Packet, Protocol};
    let node = wire::broker(|c| {
        c.limits.max_publish_rate = 50;
        c.limits.max_publish_bytes_rate = 100_000;
    });
    let addr = node.local_addrs()[0];
    let gone = |c: &mut wire::Raw| {
        let seen = c.expect_closed();
        assert!(
            seen.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == 0x96)),
            "DISCONNECT 0x96 expected, saw {seen:?}"
        );
    };
    // Within both allowances: still connected (it answers a PING).
    let mut calm = wire::Raw::connect(addr, Protocol::V5, "rate-calm");
    flood(&mut calm, 20, 100, proto::QoS::AtMostOnce);
    calm.send(&Packet::PingReq);
    assert!(matches!(calm.recv(), Some(Packet::PingResp)));
    // Too many messages.
    let mut many = wire::Raw::connect(addr, Protocol::V5, "rate-many");
    flood(&mut many, 200, 10, proto::QoS::AtMostOnce);
    gone(&mut many);
    // Too many bytes in few messages.
    let mut big = wire::Raw::connect(addr, Protocol::V5, "rate-big");
    flood(&mut big, 10, 20_000, proto::QoS::AtMostOnce);
    gone(&mut big);
    node.stop();
    node.join().unwrap();
}

/// Subscribes (raw 5.0) to a filter past `max_topic_levels`; the SUBACK.
fn refused_suback(c: &mut wire::Raw) -> proto::SubAck {
    use proto::{Packet, Props, QoS, Subscribe, SubscribeFilter};
    let filter = "a/".repeat(20) + "z";
    let f = SubscribeFilter {
        filter,
        qos: QoS::AtLeastOnce,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    };
    c.send(&Packet::Subscribe(Subscribe { pkid: 3, filters: vec![f], properties: Props::default() }));
    match c.recv() {
        Some(Packet::SubAck(a)) => a,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[test]
fn failures_carry_reason_strings_unless_the_client_declines() {
    use proto::{Packet, Protocol};
    let node = wire::broker(|c| c.limits.max_topic_levels = 8);
    let addr = node.local_addrs()[0];
    // Problem information requested (the default): the refused SUBACK explains itself.
    let mut c = wire::Raw::connect(addr, Protocol::V5, "rs-yes");
    let a = refused_suback(&mut c);
    assert_eq!(a.codes, [0x8F]);
    assert_eq!(a.properties.reason_string.as_deref(), Some("topic filter invalid or not allowed"));
    // Request Problem Information = 0: no Reason String on the SUBACK [MQTT-3.1.2-29] ...
    let mut quiet = wire::Raw::open(addr, Protocol::V5);
    let Packet::Connect(mut connect) = wire::connect_packet(Protocol::V5, "rs-no", true) else { unreachable!() };
    connect.properties.request_problem_information = Some(0);
    quiet.send(&Packet::Connect(connect));
    assert!(matches!(quiet.recv(), Some(Packet::ConnAck(a)) if a.code == 0));
    let a = refused_suback(&mut quiet);
    assert_eq!(a.codes, [0x8F]);
    assert_eq!(a.properties.reason_string, None);
    // ... but a server DISCONNECT always has one: here a PUBREL for an unknown packet id
    // is fine (PUBCOMP 0x92), a second CONNECT is a protocol error.
    quiet.send(&Packet::PubRel(proto::Ack { pkid: 9, reason: 0, properties: Default::default() }));
    match quiet.recv() {
        Some(Packet::PubComp(a)) => {
            assert_eq!(a.reason, 0x92);
            assert_eq!(a.properties.reason_string, None, "declined: no Reason String on PUBCOMP");
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    quiet.send(&wire::connect_packet(Protocol::V5, "rs-no", true));
    let seen = quiet.expect_closed();
    let bye = seen.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.clone()),
        _ => None,
    });
    let bye = bye.unwrap_or_else(|| panic!("DISCONNECT expected, saw {seen:?}"));
    assert_eq!(bye.reason, 0x82);
    assert_eq!(bye.properties.reason_string.as_deref(), Some("protocol error"));
    // And with problem information, a PUBCOMP 0x92 names its reason.
    c.send(&Packet::PubRel(proto::Ack { pkid: 9, reason: 0, properties: Default::default() }));
    match c.recv() {
        Some(Packet::PubComp(a)) => {
            assert_eq!(a.properties.reason_string.as_deref(), Some("packet identifier not found"))
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    node.stop();
    node.join().unwrap();
}

#[test]
fn broker_assigns_topic_aliases_up_to_the_clients_maximum() {
    use proto::{Packet, Protocol, QoS};
    let node = wire::broker(|_| {});
    let addr = node.local_addrs()[0];
    let mut sub = wire::Raw::open(addr, Protocol::V5);
    let Packet::Connect(mut connect) = wire::connect_packet(Protocol::V5, "ta-sub", true) else { unreachable!() };
    connect.properties.topic_alias_maximum = Some(2);
    sub.send(&Packet::Connect(connect));
    assert!(matches!(sub.recv(), Some(Packet::ConnAck(a)) if a.code == 0));
    sub.subscribe("ta/#", QoS::AtMostOnce);
    // A subscriber that allows none gets full topics.
    let mut plain = wire::Raw::connect(addr, Protocol::V5, "ta-plain");
    plain.subscribe("ta/#", QoS::AtMostOnce);
    let mut publ = wire::Raw::connect(addr, Protocol::V4, "ta-pub");
    let topics = ["ta/1", "ta/1", "ta/2", "ta/3", "ta/1", "ta/2", "ta/3"];
    for t in topics {
        publ.publish(t, t.as_bytes(), QoS::AtMostOnce, 0);
    }
    let mut seen = Vec::new();
    for _ in topics {
        match sub.recv() {
            Some(Packet::Publish(p)) => seen.push((
                String::from_utf8(p.topic.to_vec()).unwrap(),
                p.properties.topic_alias,
                String::from_utf8(p.payload.to_vec()).unwrap(),
            )),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    // Topics on different owners may interleave: check what a client decoding them sees.
    let mut map = std::collections::HashMap::new();
    let mut alias_only = 0;
    for (i, (topic, alias, payload)) in seen.iter().enumerate() {
        let resolved = match (topic.is_empty(), alias) {
            (false, Some(a)) => {
                assert!(map.insert(*a, topic.clone()).is_none(), "publish {i}: alias {a} defined twice");
                topic.clone()
            }
            (false, None) => topic.clone(),
            (true, Some(a)) => {
                alias_only += 1;
                map.get(a).unwrap_or_else(|| panic!("publish {i}: alias {a} used before it was defined")).clone()
            }
            (true, None) => panic!("publish {i}: no topic and no alias"),
        };
        assert_eq!(&resolved, payload, "publish {i} resolves to its own topic");
        assert!(alias.is_none_or(|a| (1..=2).contains(&a)), "publish {i}: alias {alias:?} past the maximum 2");
    }
    assert_eq!(map.len(), 2, "both aliases assigned: {seen:?}");
    assert!(alias_only >= 2, "aliases were used: {seen:?}");
    assert!(seen.iter().any(|(t, a, _)| !t.is_empty() && a.is_none()), "the third topic went in full: {seen:?}");
    let mut plain_topics = Vec::new();
    for _ in topics {
        match plain.recv() {
            Some(Packet::Publish(p)) => {
                assert_eq!(p.properties.topic_alias, None);
                plain_topics.push(String::from_utf8(p.topic.to_vec()).unwrap());
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    plain_topics.sort();
    let mut want: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    want.sort();
    assert_eq!(plain_topics, want);
    node.stop();
    node.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_resolves_the_brokers_topic_aliases() {
    let broker = TestBroker::start();
    let topic = unique_topic("ta-rq");
    let (mut sub, _) = Mqtt5::connect_with(&broker, &unique_id("ta-rq"), |o| {
        o.set_topic_alias_max(Some(3));
    })
    .await;
    sub.subscribe(&format!("{topic}/#"), 1).await;
    let (mut publ, _) = Mqtt5::connect(&broker, &unique_id("ta-pub")).await;
    for i in 0..40u32 {
        publ.publish(&format!("{topic}/{}", i % 5), 1, false, i.to_string()).await;
    }
    publ.wait_acks(1, 40).await;
    let got = sub.publishes(40).await;
    let mut last = std::collections::HashMap::new();
    for p in &got {
        let i: u32 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
        assert_eq!(topic5(p), format!("{topic}/{}", i % 5), "message {i} on its own topic");
        if let Some(prev) = last.insert(i % 5, i) {
            assert!(prev < i, "per topic in order");
        }
    }
}

#[test]
fn payload_said_to_be_utf8_is_checked() {
    use proto::{Packet, Properties, Protocol, Publish, QoS};
    let node = wire::broker(|_| {});
    let addr = node.local_addrs()[0];
    let mut sub = wire::Raw::connect(addr, Protocol::V5, "pfi-sub");
    sub.subscribe("pfi/t", QoS::AtLeastOnce);
    let mut publ = wire::Raw::connect(addr, Protocol::V5, "pfi-pub");
    let publish = |qos: QoS, pkid: u16, payload: &'static [u8]| {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: "pfi/t".into(),
            pkid,
            properties: Properties { payload_format_indicator: Some(1), ..Default::default() }.into(),
            payload: bytes::Bytes::from_static(payload),
        })
    };
    publ.send(&publish(QoS::AtLeastOnce, 1, b"\xff\xfe not UTF-8"));
    match publ.recv() {
        Some(Packet::PubAck(a)) => {
            assert_eq!(a.reason, 0x99);
            assert_eq!(a.properties.reason_string.as_deref(), Some("payload format invalid: not UTF-8"));
        }
        other => panic!("expected PUBACK 0x99, got {other:?}"),
    }
    publ.send(&publish(QoS::AtLeastOnce, 2, "grüße".as_bytes()));
    assert!(matches!(publ.recv(), Some(Packet::PubAck(a)) if a.reason == 0));
    match sub.recv() {
        Some(Packet::Publish(p)) => {
            assert_eq!(&p.payload[..], "grüße".as_bytes(), "only the valid one is forwarded");
            assert_eq!(p.properties.payload_format_indicator, Some(1), "the indicator passes through");
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    // QoS 0 has no acknowledgement to refuse with: DISCONNECT 0x99.
    publ.send(&publish(QoS::AtMostOnce, 0, b"\xc3\x28"));
    let seen = publ.expect_closed();
    assert!(seen.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == 0x99)), "{seen:?}");
    assert_eq!(sub.recv_within(std::time::Duration::from_millis(300)), None, "nothing else forwarded");
    // A will said to be UTF-8 that is not: CONNACK 0x99.
    let Packet::Connect(mut connect) = wire::connect_packet(Protocol::V5, "pfi-will", true) else { unreachable!() };
    connect.will = Some(proto::LastWill {
        topic: "pfi/will".into(),
        payload: bytes::Bytes::from_static(b"\xff"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties { payload_format_indicator: Some(1), ..Default::default() }.into(),
    });
    let mut w = wire::Raw::open(addr, Protocol::V5);
    w.send(&Packet::Connect(connect));
    assert!(matches!(w.recv(), Some(Packet::ConnAck(a)) if a.code == 0x99));
    node.stop();
    node.join().unwrap();
}

/// A raw 5.0 CONNECT with `clean_start` and Session Expiry Interval `expiry`; the CONNACK.
fn connect_with_expiry(addr: std::net::SocketAddr, id: &str, clean: bool, expiry: u32) -> (wire::Raw, proto::ConnAck) {
    use proto::{Packet, Protocol};
    let mut c = wire::Raw::open(addr, Protocol::V5);
    let Packet::Connect(mut connect) = wire::connect_packet(Protocol::V5, id, clean) else { unreachable!() };
    connect.properties.session_expiry_interval = Some(expiry);
    c.send(&Packet::Connect(connect));
    match c.recv() {
        Some(Packet::ConnAck(a)) if a.code == 0 => (c, a),
        other => panic!("{id}: expected CONNACK, got {other:?}"),
    }
}

fn disconnect_with_expiry(c: &mut wire::Raw, expiry: u32) -> Vec<proto::Packet> {
    use proto::{Disconnect, Packet, Properties};
    let properties = Properties { session_expiry_interval: Some(expiry), ..Default::default() }.into();
    c.send(&Packet::Disconnect(Disconnect { reason: 0, properties }));
    c.expect_closed()
}

#[test]
fn session_expiry_set_on_disconnect_and_never_expiring() {
    use proto::Packet;
    let node = wire::broker(|_| {});
    let addr = node.local_addrs()[0];
    // 60 s at CONNECT, 0 on DISCONNECT: the session ends with the connection.
    let (mut c, _) = connect_with_expiry(addr, "se-zero", true, 60);
    disconnect_with_expiry(&mut c, 0);
    let (_c, ack) = connect_with_expiry(addr, "se-zero", false, 60);
    assert!(!ack.session_present, "expiry 0 on DISCONNECT ended the session");
    // 0 at CONNECT, then a non-zero one on DISCONNECT: a Protocol Error, session gone.
    let (mut c, _) = connect_with_expiry(addr, "se-raise", true, 0);
    let seen = disconnect_with_expiry(&mut c, 30);
    assert!(seen.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == 0x82)), "{seen:?}");
    let (_c, ack) = connect_with_expiry(addr, "se-raise", false, 60);
    assert!(!ack.session_present);
    // 0xFFFFFFFF: never expires, accepted as asked (no Session Expiry Interval in CONNACK).
    let (mut c, ack) = connect_with_expiry(addr, "se-never", true, u32::MAX);
    assert_eq!(ack.properties.session_expiry_interval, None);
    c.subscribe("se/t", proto::QoS::AtLeastOnce);
    disconnect_with_expiry(&mut c, u32::MAX);
    // Past two sweeps, the session and its subscription are still there.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let (mut c, ack) = connect_with_expiry(addr, "se-never", false, u32::MAX);
    assert!(ack.session_present);
    let mut publ = wire::Raw::connect(addr, proto::Protocol::V4, "se-pub");
    publ.publish("se/t", b"still", proto::QoS::AtMostOnce, 0);
    assert!(matches!(c.recv(), Some(Packet::Publish(p)) if &p.payload[..] == b"still"));
    node.stop();
    node.join().unwrap();
}

#[test]
fn client_topic_aliases_are_honoured_up_to_the_maximum() {
    use proto::{Packet, Properties, Protocol, Publish, QoS};
    let node = wire::broker(|c| c.limits.topic_alias_maximum = 4);
    let addr = node.local_addrs()[0];
    let mut sub = wire::Raw::connect(addr, Protocol::V4, "ca-sub");
    sub.subscribe("ca/#", QoS::AtMostOnce);
    let aliased = |topic: &'static str, alias: u16, payload: &'static [u8]| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.into(),
            pkid: 0,
            properties: Properties { topic_alias: Some(alias), ..Default::default() }.into(),
            payload: bytes::Bytes::from_static(payload),
        })
    };
    let mut publ = wire::Raw::connect(addr, Protocol::V5, "ca-pub");
    publ.send(&aliased("ca/x", 4, b"define"));
    publ.send(&aliased("", 4, b"use"));
    publ.send(&aliased("ca/y", 4, b"redefine"));
    publ.send(&aliased("", 4, b"use again"));
    let mut got = Vec::new();
    for _ in 0..4 {
        match sub.recv() {
            Some(Packet::Publish(p)) => got.push((String::from_utf8(p.topic.to_vec()).unwrap(), p.payload.to_vec())),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    got.sort();
    let mut want = vec![
        ("ca/x".to_string(), b"define".to_vec()),
        ("ca/x".to_string(), b"use".to_vec()),
        ("ca/y".to_string(), b"redefine".to_vec()),
        ("ca/y".to_string(), b"use again".to_vec()),
    ];
    want.sort();
    assert_eq!(got, want);
    // Past the maximum: DISCONNECT 0x94; an alias never defined: 0x82.
    publ.send(&aliased("ca/z", 5, b"too high"));
    let seen = publ.expect_closed();
    assert!(seen.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == 0x94)), "{seen:?}");
    let mut publ = wire::Raw::connect(addr, Protocol::V5, "ca-pub2");
    publ.send(&aliased("", 2, b"unknown"));
    let seen = publ.expect_closed();
    assert!(seen.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == 0x82)), "{seen:?}");
    node.stop();
    node.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_properties_pass_through_unchanged() {
    let broker = TestBroker::start();
    let topic = unique_topic("rr");
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("rr-sub")).await;
    sub.subscribe(&topic, 1).await;
    let (publ, _) = Mqtt5::connect(&broker, &unique_id("rr-pub")).await;
    let props = p5::PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some(format!("{topic}/reply")),
        correlation_data: Some(bytes::Bytes::from_static(b"\x00\x01req-42")),
        user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into()), ("b".into(), "".into())],
        ..Default::default()
    };
    publ.client.publish_with_properties(&topic, qos5(1), false, "{}", props.clone()).await.expect("publish queued");
    let p = sub.next_publish().await;
    let got = p.properties.expect("properties forwarded");
    assert_eq!(got.payload_format_indicator, props.payload_format_indicator);
    assert_eq!(got.content_type, props.content_type);
    assert_eq!(got.response_topic, props.response_topic);
    assert_eq!(got.correlation_data, props.correlation_data);
    assert_eq!(got.user_properties, props.user_properties, "in order, duplicates kept");
}

/// Issue 10: `server_keep_alive` caps a 5.0 client's keep-alive: a longer one is answered
/// with Server Keep Alive in CONNACK, a shorter one is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_keep_alive_is_announced_past_the_bound_issue_10() {
    let broker = TestBroker::start_with(|c| c.limits.server_keep_alive = Some(20));
    let (_long, ack) = Mqtt5::connect_with(&broker, &unique_id("ka-long"), |o| {
        o.set_keep_alive(Duration::from_secs(60));
    })
    .await;
    assert_eq!(ack.properties.and_then(|p| p.server_keep_alive), Some(20));
    let (_short, ack) = Mqtt5::connect_with(&broker, &unique_id("ka-short"), |o| {
        o.set_keep_alive(Duration::from_secs(10));
    })
    .await;
    assert_eq!(ack.properties.and_then(|p| p.server_keep_alive), None, "within the bound: the client's own");
}

/// Issue 10: a 5.0 client asking for no keep-alive (0) is given the bound and held to it:
/// silent, it is disconnected with 0x8D once 1.5 x the bound has passed.
#[test]
fn server_keep_alive_is_enforced_issue_10() {
    use proto::{Packet, Protocol};
    let node = wire::broker(|c| c.limits.server_keep_alive = Some(1));
    let addr = node.local_addrs()[0];
    let mut c = wire::Raw::open(addr, Protocol::V5);
    let mut connect = wire::connect_packet(Protocol::V5, "ka-none", true);
    if let Packet::Connect(p) = &mut connect {
        p.keep_alive = 0;
    }
    c.send(&connect);
    match c.recv() {
        Some(Packet::ConnAck(a)) => {
            assert_eq!(a.code, 0);
            assert_eq!(a.properties.server_keep_alive, Some(1), "0 is past every bound");
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let started = std::time::Instant::now();
    let seen = c.expect_closed();
    assert!(matches!(seen.last(), Some(Packet::Disconnect(d)) if d.reason == 0x8D), "{seen:?}");
    assert!(started.elapsed() >= Duration::from_millis(1400), "held to 1.5 x the bound, not less");
    node.stop();
    node.join().unwrap();
}

/// Issue 10: 3.1.1 has no Server Keep Alive, so a client asking for more than the bound
/// (or for none) is refused with return code 2, as Mosquitto refuses it; within the bound
/// it connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_keep_alive_past_server_keep_alive_is_refused_issue_10() {
    let broker = TestBroker::start_with(|c| c.limits.server_keep_alive = Some(20));
    let refused = Mqtt4::try_connect_with(&broker, &unique_id("ka4-long"), |o| {
        o.set_keep_alive(Duration::from_secs(60));
    })
    .await;
    match refused {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::BadClientId)
        }
        other => panic!("expected CONNACK return code 2, got {:?}", other.map(|(_, ack)| ack)),
    }
    let (_ok, ack) = Mqtt4::connect_with(&broker, &unique_id("ka4-short"), |o| {
        o.set_keep_alive(Duration::from_secs(20));
    })
    .await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
}

/// Issue 10: a PUBACK/PUBREC that waits for the topic owner's commit anyway (a segment
/// topic) says 0x10 when no subscription matched; a memory topic's is sent at once, 0x00.
#[test]
fn no_matching_subscribers_on_segment_topics_issue_10() {
    use proto::{Ack, Packet, Protocol, QoS};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let node = wire::broker(move |c| {
        c.storage.data_dir = data;
        c.storage.engine = ringmq::Engine::Segment;
        let engine = Some(ringmq::Engine::Memory);
        c.storage.rules.push(ringmq::StorageRule { filter: "mem/#".into(), engine, offline: None, when_full: None });
    });
    let addr = node.local_addrs()[0];
    let mut publ = wire::Raw::connect(addr, Protocol::V5, "nms-pub");
    let reason_of = |c: &mut wire::Raw, topic: &str, qos: QoS, pkid: u16| {
        c.publish(topic, b"x", qos, pkid);
        match c.recv() {
            Some(Packet::PubAck(a) | Packet::PubRec(a)) if a.pkid == pkid => a.reason,
            other => panic!("{topic}: expected the acknowledgement of {pkid}, got {other:?}"),
        }
    };
    assert_eq!(reason_of(&mut publ, "nms/t", QoS::AtLeastOnce, 1), 0x10, "nobody subscribes");
    assert_eq!(reason_of(&mut publ, "nms/t", QoS::ExactlyOnce, 2), 0x10);
    publ.send(&Packet::PubRel(Ack { pkid: 2, reason: 0, properties: Default::default() }));
    assert!(matches!(publ.recv(), Some(Packet::PubComp(a)) if a.pkid == 2 && a.reason == 0));
    assert_eq!(reason_of(&mut publ, "mem/t", QoS::AtLeastOnce, 3), 0x00, "memory topic: not waited for");
    let mut sub = wire::Raw::connect(addr, Protocol::V4, "nms-sub");
    sub.subscribe("nms/#", QoS::AtMostOnce);
    assert_eq!(reason_of(&mut publ, "nms/t", QoS::AtLeastOnce, 4), 0x00, "a subscriber now");
    assert!(matches!(sub.recv(), Some(Packet::Publish(p)) if p.topic == "nms/t"));
    // 3.1.1 has no reason codes: a plain PUBACK.
    let mut publ4 = wire::Raw::connect(addr, Protocol::V4, "nms-pub4");
    assert_eq!(reason_of(&mut publ4, "void/t", QoS::AtLeastOnce, 1), 0x00);
    node.stop();
    node.join().unwrap();
}

/// How many of `n` queued QoS 1 messages a subscriber that never acknowledges receives:
/// what the broker lets it have in flight. Subscribed with `protocol` (5.0: announcing
/// `receive_max` if Some); the messages are published after the subscription.
fn unacknowledged_deliveries(
    node: &ringmq::Node,
    protocol: proto::Protocol,
    receive_max: Option<u16>,
    n: u16,
    size: usize,
) -> usize {
    use proto::{Packet, Protocol, QoS};
    let addr = node.local_addrs()[0];
    let topic = unique_topic("burst");
    let mut sub = wire::Raw::open(addr, protocol);
    let mut connect = wire::connect_packet(protocol, &unique_id("burst-sub"), true);
    if let (Packet::Connect(c), Some(m)) = (&mut connect, receive_max) {
        c.properties.receive_maximum = Some(m);
    }
    sub.send(&connect);
    assert!(matches!(sub.recv(), Some(Packet::ConnAck(a)) if a.code == 0), "subscriber CONNACK");
    sub.subscribe(&topic, QoS::AtLeastOnce);
    let mut publ = wire::Raw::connect(addr, Protocol::V4, &unique_id("burst-pub"));
    // A broker that stops reading fails the writes within the bound instead of hanging.
    publ.stream.set_write_timeout(Some(wire::WAIT)).unwrap();
    for pkid in 1..=n {
        publ.publish(&topic, &vec![b'm'; size], QoS::AtLeastOnce, pkid);
    }
    let mut got = 0;
    // Until nothing more comes for a second, and for at most 30 s in all.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Some(p) = sub.recv_within(Duration::from_secs(1)) {
        assert!(std::time::Instant::now() < deadline, "still receiving after 30 s ({got} so far)");
        assert!(matches!(p, Packet::Publish(_)), "only PUBLISHes expected, got {p:?}");
        got += 1;
        assert!(got <= usize::from(n), "more PUBLISHes than were published");
    }
    got
}

/// The window grows past `max_inflight` (up to `max_inflight_burst`) while the client reads
/// everything sent: one busy subscriber is not bound to 64 messages per round trip. A 5.0
/// client's Receive Maximum stays the cap; `max_inflight_burst = 0` keeps the window fixed.
#[test]
fn the_window_bursts_past_max_inflight_up_to_the_clients_receive_maximum() {
    use proto::Protocol;
    let node = wire::broker(|c| {
        c.limits.max_inflight = 16;
        c.limits.max_inflight_burst = 200;
    });
    assert_eq!(unacknowledged_deliveries(&node, Protocol::V4, None, 300, 1), 200, "3.1.1: up to the burst");
    assert_eq!(unacknowledged_deliveries(&node, Protocol::V5, None, 300, 1), 200, "5.0 without a Receive Maximum");
    assert_eq!(unacknowledged_deliveries(&node, Protocol::V5, Some(10), 300, 1), 10, "5.0: its Receive Maximum");
    assert_eq!(unacknowledged_deliveries(&node, Protocol::V5, Some(100), 300, 1), 100, "5.0: its Receive Maximum");
    // 16 KiB messages: the burst holds at most 1 MiB of them (64), the window its 16.
    let big = unacknowledged_deliveries(&node, Protocol::V4, None, 300, 16 * 1024);
    assert!((16..=64).contains(&big), "{big} messages of 16 KiB in flight");
    node.stop();
    node.join().unwrap();
    let node = wire::broker(|c| {
        c.limits.max_inflight = 16;
        c.limits.max_inflight_burst = 0;
    });
    assert_eq!(unacknowledged_deliveries(&node, Protocol::V4, None, 300, 1), 16, "a fixed window of max_inflight");
    node.stop();
    node.join().unwrap();
}
