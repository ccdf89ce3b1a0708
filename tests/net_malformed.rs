//! Malformed and hostile input: the offending connection is closed (5.0: with the reason
//! code the spec names) and a healthy publisher/subscriber pair on the same broker keeps
//! exchanging QoS 1 messages unharmed.

mod wire;

use proto::{reason, Packet, Protocol, QoS};
use wire::{broker, Raw};

/// Runs `attack` against a broker while a healthy pair exchanges messages before and after,
/// and checks every healthy message arrives.
fn with_healthy_pair(tweak: impl FnOnce(&mut ringmq::EngineConfig), attack: impl FnOnce(std::net::SocketAddr)) {
    let node = broker(tweak);
    let addr = node.local_addrs()[0];
    let mut sub = Raw::connect(addr, Protocol::V4, "healthy-sub");
    sub.subscribe("healthy/t", QoS::AtLeastOnce);
    let mut publ = Raw::connect(addr, Protocol::V5, "healthy-pub");
    let mut pkid = 0;
    let mut exchange = |publ: &mut Raw, sub: &mut Raw| {
        for _ in 0..10 {
            pkid += 1;
            publ.publish("healthy/t", format!("m{pkid}").as_bytes(), QoS::AtLeastOnce, pkid);
            match publ.recv() {
                Some(Packet::PubAck(a)) => assert_eq!(a.pkid, pkid),
                other => panic!("healthy publisher expected PUBACK {pkid}, got {other:?}"),
            }
            match sub.recv() {
                Some(Packet::Publish(p)) => {
                    assert_eq!(&p.payload[..], format!("m{pkid}").as_bytes());
                    let ack = Packet::PubAck(proto::Ack { pkid: p.pkid, reason: 0, properties: Default::default() });
                    sub.send(&ack);
                }
                other => panic!("healthy subscriber expected message {pkid}, got {other:?}"),
            }
        }
    };
    exchange(&mut publ, &mut sub);
    attack(addr);
    exchange(&mut publ, &mut sub);
}

/// The last packet before the close must be a DISCONNECT with `code`.
fn assert_disconnect(seen: &[Packet], code: u8) {
    match seen.last() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, code, "DISCONNECT reason"),
        other => panic!("expected DISCONNECT 0x{code:02x} before close, got {other:?}"),
    }
}

const V5_CONNECT: &[u8] = b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x03bad";
const V4_CONNECT: &[u8] = b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03bad";

fn attack_v5(addr: std::net::SocketAddr, bytes: &[u8], code: u8) {
    let mut bad = Raw::open(addr, Protocol::V5);
    bad.send_bytes(V5_CONNECT);
    assert!(matches!(bad.recv(), Some(Packet::ConnAck(a)) if a.code == 0));
    bad.send_bytes(bytes);
    assert_disconnect(&bad.expect_closed(), code);
}

fn attack_v4(addr: std::net::SocketAddr, bytes: &[u8]) {
    let mut bad = Raw::open(addr, Protocol::V4);
    bad.send_bytes(V4_CONNECT);
    assert!(matches!(bad.recv(), Some(Packet::ConnAck(a)) if a.code == 0));
    bad.send_bytes(bytes);
    let seen = bad.expect_closed();
    assert!(seen.is_empty(), "3.1.1 gets no reply to a violation, got {seen:?}");
}

#[test]
fn random_bytes_instead_of_connect_close_the_connection() {
    with_healthy_pair(
        |_| {},
        |addr| {
            // A deterministic pseudo-random stream (xorshift), starting with a non-CONNECT type.
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut junk = vec![0x30u8];
            for _ in 0..4096 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                junk.push(x as u8);
            }
            let mut bad = Raw::open(addr, Protocol::V5);
            bad.send_bytes(&junk);
            assert!(bad.expect_closed().is_empty());
        },
    );
}

#[test]
fn remaining_length_past_the_limit_is_refused_from_the_header() {
    with_healthy_pair(
        |c| c.limits.max_packet_size = 1024,
        |addr| {
            // Announces 268 MB and sends only the header: refused without waiting for the body.
            attack_v5(addr, b"\x30\xff\xff\xff\x7f", reason::PACKET_TOO_LARGE);
            attack_v4(addr, b"\x30\xff\xff\xff\x7f");
        },
    );
}

#[test]
fn invalid_utf8_topic_is_malformed() {
    with_healthy_pair(
        |_| {},
        |addr| {
            attack_v5(addr, b"\x30\x06\x00\x02\xff\xfe\x00x", reason::MALFORMED_PACKET);
            attack_v4(addr, b"\x30\x05\x00\x02\xff\xfex");
        },
    );
}

#[test]
fn wildcard_in_publish_topic_is_refused() {
    with_healthy_pair(
        |_| {},
        |addr| {
            attack_v5(addr, b"\x30\x06\x00\x03a/#\x00", reason::TOPIC_NAME_INVALID);
            attack_v4(addr, b"\x30\x05\x00\x03a/+");
        },
    );
}

/// Issue 10: a property not valid for its packet type is a Malformed Packet (0x81).
#[test]
fn property_not_valid_for_the_packet_is_malformed_issue_10() {
    with_healthy_pair(
        |_| {},
        |addr| {
            // PUBLISH carrying Session Expiry Interval (0x11).
            attack_v5(addr, b"\x30\x0a\x00\x01a\x05\x11\x00\x00\x00\x01x", reason::MALFORMED_PACKET);
            // CONNECT carrying Topic Alias (0x23): refused with CONNACK 0x81.
            let mut bad = Raw::open(addr, Protocol::V5);
            bad.send_bytes(b"\x10\x13\x00\x04MQTT\x05\x02\x00\x3c\x03\x23\x00\x01\x00\x03bad");
            match bad.expect_closed().as_slice() {
                [Packet::ConnAck(a)] => assert_eq!(a.code, reason::MALFORMED_PACKET),
                other => panic!("expected CONNACK 0x81, got {other:?}"),
            }
        },
    );
}

#[test]
fn qos1_with_packet_id_zero_is_a_protocol_error() {
    with_healthy_pair(
        |_| {},
        |addr| {
            attack_v5(addr, b"\x32\x07\x00\x01a\x00\x00\x00x", reason::PROTOCOL_ERROR);
            attack_v4(addr, b"\x32\x06\x00\x01a\x00\x00x");
        },
    );
}

#[test]
fn second_connect_is_a_protocol_error() {
    with_healthy_pair(
        |_| {},
        |addr| {
            attack_v5(addr, V5_CONNECT, reason::PROTOCOL_ERROR);
            attack_v4(addr, V4_CONNECT);
        },
    );
}

#[test]
fn truncated_packet_then_close_leaves_others_unharmed() {
    with_healthy_pair(
        |_| {},
        |addr| {
            let mut bad = Raw::open(addr, Protocol::V5);
            bad.send_bytes(V5_CONNECT);
            assert!(matches!(bad.recv(), Some(Packet::ConnAck(_))));
            bad.send_bytes(b"\x30\x20\x00\x05hea");
            drop(bad);
        },
    );
}

#[test]
fn connect_never_sent_is_closed_after_the_connect_timeout() {
    with_healthy_pair(
        |c| c.limits.connect_timeout = std::time::Duration::from_millis(300),
        |addr| {
            let mut idle = Raw::open(addr, Protocol::V4);
            let started = std::time::Instant::now();
            assert!(idle.expect_closed().is_empty());
            assert!(started.elapsed() >= std::time::Duration::from_millis(250), "closed before the timeout");
        },
    );
}

#[test]
fn v4_empty_client_id_without_clean_session_is_rejected() {
    let node = broker(|_| {});
    let mut c = Raw::open(node.local_addrs()[0], Protocol::V4);
    c.send(&wire::connect_packet(Protocol::V4, "", false));
    match c.recv() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, reason::V4_IDENTIFIER_REJECTED),
        other => panic!("expected CONNACK 2, got {other:?}"),
    }
    assert!(c.expect_closed().is_empty());
}

#[test]
fn unsupported_protocol_level_gets_return_code_1() {
    let node = broker(|_| {});
    let mut c = Raw::open(node.local_addrs()[0], Protocol::V4);
    c.send_bytes(b"\x10\x0f\x00\x04MQTT\x03\x02\x00\x3c\x00\x03bad");
    match c.recv() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, reason::V4_UNACCEPTABLE_PROTOCOL_VERSION),
        other => panic!("expected CONNACK 1, got {other:?}"),
    }
}

/// Issue 10: an unknown protocol name or level gets a CONNACK in the form the level names
/// (3.1/3.1.1: return code 1; 5.0 and up: 0x84), then the close.
#[test]
fn unknown_protocol_names_and_levels_get_a_connack_in_their_form_issue_10() {
    let node = broker(|_| {});
    let addr = node.local_addrs()[0];
    let cases: [(&[u8], Protocol, u8); 5] = [
        (b"\x10\x11\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x03bad", Protocol::V4, 1),
        (b"\x10\x0f\x00\x04MQTX\x04\x02\x00\x3c\x00\x03bad", Protocol::V4, 1),
        (b"\x10\x0f\x00\x04MQTT\x02\x02\x00\x3c\x00\x03bad", Protocol::V4, 1),
        (b"\x10\x10\x00\x04MQTX\x05\x02\x00\x3c\x00\x00\x03bad", Protocol::V5, 0x84),
        (b"\x10\x10\x00\x04MQTT\x06\x02\x00\x3c\x00\x00\x03bad", Protocol::V5, 0x84),
    ];
    for (connect, form, code) in cases {
        let mut c = Raw::open(addr, form);
        c.send_bytes(connect);
        match c.expect_closed().as_slice() {
            [Packet::ConnAck(a)] => assert_eq!((a.code, a.session_present), (code, false), "{connect:?}"),
            other => panic!("{connect:?}: expected one CONNACK {code:#04x} in the {form:?} form, got {other:?}"),
        }
    }
}
