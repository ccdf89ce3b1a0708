//! Named regression tests: bugs known in other MQTT codecs (mqttbytes/rumqttc) that this
//! crate must not have, framing limits, decode rules from the spec, the spec's own
//! CONNECT examples, and the inputs the fuzz targets in `fuzz/` found.

use proto::topic::valid_filter;
use proto::{
    frame_len, read, reason, Ack, Auth, Bytes, BytesMut, Connect, Disconnect, Error, LastWill, Packet, Properties,
    Protocol, Publish, QoS, SubscribeFilter,
};

const MAX: usize = 1 << 20;

fn decode(bytes: &[u8], protocol: Protocol) -> Result<Packet, Error> {
    let mut buf = BytesMut::from(bytes);
    let result = read(&mut buf, protocol, MAX);
    if result.is_ok() {
        assert!(buf.is_empty(), "frame not fully consumed: {:02x?}", &buf[..]);
    }
    result
}

fn encode(packet: &Packet, protocol: Protocol) -> Result<Vec<u8>, Error> {
    let mut out = BytesMut::new();
    let result = packet.write(protocol, &mut out);
    if result.is_err() {
        assert!(out.is_empty(), "failed encode left {} bytes behind", out.len());
    }
    result.map(|n| {
        assert_eq!(n, out.len());
        out.to_vec()
    })
}

// ---- mqttbytes / rumqttc bugs ----

#[test]
fn empty_v5_disconnect_is_normal_disconnection() {
    let packet = decode(&[0xe0, 0x00], Protocol::V5).unwrap();
    assert_eq!(
        packet,
        Packet::Disconnect(Disconnect {
            reason: reason::NORMAL_DISCONNECTION,
            properties: Properties::default().into()
        })
    );
}

#[test]
fn short_v5_disconnect_keeps_reason_without_property_length() {
    let packet = decode(&[0xe0, 0x01, 0x8e], Protocol::V5).unwrap();
    assert_eq!(
        packet,
        Packet::Disconnect(Disconnect { reason: reason::SESSION_TAKEN_OVER, properties: Properties::default().into() })
    );
    // And it is the form we write.
    assert_eq!(encode(&packet, Protocol::V5).unwrap(), vec![0xe0, 0x01, 0x8e]);
}

#[test]
fn v5_ack_short_forms() {
    for (first, wrap) in [
        (0x40u8, Packet::PubAck as fn(Ack) -> Packet),
        (0x50, Packet::PubRec),
        (0x62, Packet::PubRel),
        (0x70, Packet::PubComp),
    ] {
        // Remaining length 2: reason 0.
        assert_eq!(decode(&[first, 0x02, 0x12, 0x34], Protocol::V5), Ok(wrap(Ack::new(0x1234))));
        // Remaining length 3: reason, no properties.
        let expected = wrap(Ack {
            pkid: 0x1234,
            reason: reason::PACKET_IDENTIFIER_NOT_FOUND,
            properties: Properties::default().into(),
        });
        assert_eq!(decode(&[first, 0x03, 0x12, 0x34, 0x92], Protocol::V5), Ok(expected));
        // Remaining length 4: reason and an empty property length.
        assert_eq!(
            decode(&[first, 0x04, 0x12, 0x34, 0x10, 0x00], Protocol::V5),
            Ok(wrap(Ack {
                pkid: 0x1234,
                reason: reason::NO_MATCHING_SUBSCRIBERS,
                properties: Properties::default().into()
            }))
        );
    }
}

#[test]
fn auth_round_trip() {
    let auth = Packet::Auth(Auth {
        reason: reason::CONTINUE_AUTHENTICATION,
        properties: Properties {
            authentication_method: Some("SCRAM-SHA-1".into()),
            authentication_data: Some(Bytes::from_static(b"client-first")),
            reason_string: Some("more".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        }
        .into(),
    });
    let bytes = encode(&auth, Protocol::V5).unwrap();
    assert_eq!(bytes[0], 0xf0);
    assert_eq!(decode(&bytes, Protocol::V5), Ok(auth));
}

#[test]
fn empty_auth_is_success() {
    assert_eq!(
        decode(&[0xf0, 0x00], Protocol::V5),
        Ok(Packet::Auth(Auth { reason: reason::SUCCESS, properties: Properties::default().into() }))
    );
    let success = Packet::Auth(Auth { reason: 0, properties: Properties::default().into() });
    assert_eq!(encode(&success, Protocol::V5).unwrap(), vec![0xf0, 0x00]);
}

#[test]
fn auth_is_not_mqtt_3_1_1() {
    assert!(matches!(decode(&[0xf0, 0x00], Protocol::V4), Err(Error::Malformed(_))));
}

const LONG: usize = 70_000;

#[test]
fn long_topic_rejected_on_encode() {
    let publish = Packet::Publish(Publish::new(vec![b'a'; LONG], QoS::AtMostOnce, "x"));
    for protocol in [Protocol::V4, Protocol::V5] {
        assert_eq!(encode(&publish, protocol), Err(Error::StringTooLong(LONG)));
    }
}

#[test]
fn long_user_property_rejected_on_encode() {
    let mut publish = Publish::new("t", QoS::AtLeastOnce, "x");
    publish.pkid = 1;
    publish.properties.user_properties = vec![("key".into(), "v".repeat(LONG))];
    let packet = Packet::Publish(publish);
    assert_eq!(encode(&packet, Protocol::V5), Err(Error::StringTooLong(LONG)));
    let disconnect = Packet::Disconnect(Disconnect {
        reason: 0,
        properties: Properties { user_properties: vec![("k".repeat(LONG), "v".into())], ..Properties::default() }
            .into(),
    });
    assert_eq!(encode(&disconnect, Protocol::V5), Err(Error::StringTooLong(LONG)));
}

#[test]
fn long_client_id_rejected_on_encode() {
    let connect = Packet::Connect(Connect {
        protocol: Protocol::V4,
        clean_start: true,
        keep_alive: 30,
        client_id: "c".repeat(LONG),
        will: None,
        username: None,
        password: None,
        properties: Properties::default().into(),
        mqtt31: false,
    });
    assert_eq!(encode(&connect, Protocol::V4), Err(Error::StringTooLong(LONG)));
}

#[test]
fn long_binary_rejected_on_encode() {
    let connect = Packet::Connect(Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 30,
        client_id: "c".into(),
        will: None,
        username: None,
        password: Some(Bytes::from(vec![0u8; LONG])),
        properties: Properties::default().into(),
        mqtt31: false,
    });
    assert_eq!(encode(&connect, Protocol::V5), Err(Error::StringTooLong(LONG)));
}

#[test]
fn exactly_65535_bytes_is_fine() {
    let publish = Packet::Publish(Publish::new(vec![b'a'; 65_535], QoS::AtMostOnce, "x"));
    let bytes = encode(&publish, Protocol::V4).unwrap();
    assert_eq!(decode(&bytes, Protocol::V4), Ok(publish));
}

// ---- framing ----

#[test]
fn oversized_remaining_length_rejected_from_five_bytes() {
    // Largest remaining length (268435455), only the fixed header buffered.
    let header = [0x30, 0xff, 0xff, 0xff, 0x7f];
    let too_large = Error::PacketTooLarge { size: 268_435_460, max: MAX };
    assert_eq!(frame_len(&header, MAX), Err(too_large.clone()));
    let mut buf = BytesMut::from(&header[..]);
    assert_eq!(read(&mut buf, Protocol::V5, MAX), Err(too_large));
    assert_eq!(buf.len(), 5, "nothing consumed");
}

#[test]
fn max_packet_size_counts_the_fixed_header() {
    // PUBLISH with remaining length 100: 102 bytes in all.
    let header = [0x30, 100];
    assert_eq!(frame_len(&header, 102), Ok(Some(102)));
    assert_eq!(frame_len(&header, 101), Err(Error::PacketTooLarge { size: 102, max: 101 }));
}

#[test]
fn five_byte_varint_is_malformed() {
    let bytes = [0x30, 0x80, 0x80, 0x80, 0x80, 0x01];
    assert!(matches!(frame_len(&bytes, usize::MAX), Err(Error::Malformed(_))));
    // Known malformed as soon as the fourth length byte shows a continuation bit.
    assert!(matches!(frame_len(&bytes[..5], usize::MAX), Err(Error::Malformed(_))));
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(read(&mut buf, Protocol::V4, usize::MAX), Err(Error::Malformed(_))));
}

#[test]
fn trailing_bytes_inside_a_frame_are_malformed() {
    for (bytes, protocol) in [
        (&[0xc0, 0x01, 0x00][..], Protocol::V4),                     // PINGREQ
        (&[0x40, 0x03, 0x00, 0x01, 0x00], Protocol::V4),             // PUBACK
        (&[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00], Protocol::V5), // PUBACK
        (&[0x20, 0x03, 0x00, 0x00, 0x00], Protocol::V4),             // CONNACK
        (&[0xe0, 0x01, 0x00], Protocol::V4),                         // DISCONNECT
        (&[0xe0, 0x03, 0x00, 0x00, 0x00], Protocol::V5),             // DISCONNECT
        (&[0xb0, 0x03, 0x00, 0x01, 0x00], Protocol::V4),             // UNSUBACK
    ] {
        assert!(matches!(decode(bytes, protocol), Err(Error::Malformed(_))), "{bytes:02x?}");
    }
}

// ---- PUBLISH rules ----

#[test]
fn publish_qos1_pkid_zero_is_protocol_error() {
    let bytes = [0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00];
    assert!(matches!(decode(&bytes, Protocol::V4), Err(Error::Protocol(_))));
    assert!(matches!(decode(&bytes, Protocol::V5), Err(Error::Protocol(_))));
}

#[test]
fn publish_wildcard_topic_is_topic_name_invalid() {
    for topic in [&b"a/+"[..], b"#", b"a/#", b"+/b"] {
        let mut bytes = vec![0x30, (2 + topic.len() + 1) as u8, 0x00, topic.len() as u8];
        bytes.extend_from_slice(topic);
        bytes.push(b'x');
        assert_eq!(decode(&bytes, Protocol::V4), Err(Error::TopicNameInvalid));
    }
}

#[test]
fn publish_invalid_utf8_topic_is_malformed() {
    let bytes = [0x30, 0x05, 0x00, 0x02, 0xc3, 0x28, b'x'];
    assert!(matches!(decode(&bytes, Protocol::V4), Err(Error::Malformed(_))));
    let nul = [0x30, 0x05, 0x00, 0x02, b'a', 0x00, b'x'];
    assert!(matches!(decode(&nul, Protocol::V5), Err(Error::Malformed(_))));
}

#[test]
fn publish_flag_rules() {
    // QoS 3.
    assert!(matches!(decode(&[0x36, 0x03, 0x00, 0x01, b't'], Protocol::V4), Err(Error::Malformed(_))));
    // QoS 0 with DUP.
    assert!(matches!(decode(&[0x38, 0x03, 0x00, 0x01, b't'], Protocol::V4), Err(Error::Malformed(_))));
    // Empty topic: V4 invalid, V5 only with a topic alias.
    assert_eq!(decode(&[0x30, 0x02, 0x00, 0x00], Protocol::V4), Err(Error::TopicNameInvalid));
    assert!(matches!(decode(&[0x30, 0x03, 0x00, 0x00, 0x00], Protocol::V5), Err(Error::Protocol(_))));
    let aliased = decode(&[0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x07], Protocol::V5);
    let Ok(Packet::Publish(p)) = aliased else {
        panic!("aliased publish: {aliased:?}");
    };
    assert_eq!((p.topic.len(), p.properties.topic_alias), (0, Some(7)));
}

#[test]
fn publish_property_rules() {
    // Payload format indicator 2.
    let pfi = [0x30, 0x06, 0x00, 0x01, b't', 0x02, 0x01, 0x02];
    assert!(matches!(decode(&pfi, Protocol::V5), Err(Error::Protocol(_))));
    // Session expiry (0x11) is not a PUBLISH property: Malformed (5.0, 2.2.2.2).
    let sei = [0x30, 0x09, 0x00, 0x01, b't', 0x05, 0x11, 0, 0, 0, 1];
    assert!(matches!(decode(&sei, Protocol::V5), Err(Error::Malformed(_))));
    // Duplicate message expiry.
    let dup = [0x30, 0x0e, 0x00, 0x01, b't', 0x0a, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2];
    assert!(matches!(decode(&dup, Protocol::V5), Err(Error::Protocol(_))));
    // Unknown property id 0x7f.
    let unknown = [0x30, 0x06, 0x00, 0x01, b't', 0x02, 0x7f, 0x00];
    assert!(matches!(decode(&unknown, Protocol::V5), Err(Error::Malformed(_))));
    // Property length overrunning the frame.
    let overrun = [0x30, 0x05, 0x00, 0x01, b't', 0x09, 0x01];
    assert!(matches!(decode(&overrun, Protocol::V5), Err(Error::Malformed(_))));
}

// ---- SUBSCRIBE / UNSUBSCRIBE rules ----

#[test]
fn subscribe_with_bad_fixed_header_flags_is_malformed() {
    for first in [0x80u8, 0x81, 0x83, 0x8a] {
        let bytes = [first, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00];
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(matches!(read(&mut buf, Protocol::V4, MAX), Err(Error::Malformed(_))), "{first:#04x}");
    }
    // The right flags decode.
    let ok = decode(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01], Protocol::V4);
    let Ok(Packet::Subscribe(s)) = ok else { panic!("{ok:?}") };
    assert_eq!(s.filters, vec![SubscribeFilter::new("a", QoS::AtLeastOnce)]);
}

#[test]
fn subscribe_option_rules() {
    let sub = |options: u8, protocol| {
        let props: &[u8] = if protocol == Protocol::V5 { &[0] } else { &[] };
        let mut bytes = vec![0x82, (6 + props.len()) as u8, 0x00, 0x01];
        bytes.extend_from_slice(props);
        bytes.extend_from_slice(&[0x00, 0x01, b'a', options]);
        decode(&bytes, protocol)
    };
    assert!(matches!(sub(0x40, Protocol::V5), Err(Error::Malformed(_))));
    assert!(matches!(sub(0x80, Protocol::V5), Err(Error::Malformed(_))));
    assert!(matches!(sub(0x03, Protocol::V5), Err(Error::Malformed(_))));
    assert!(matches!(sub(0x30, Protocol::V5), Err(Error::Protocol(_))));
    assert!(matches!(sub(0x04, Protocol::V4), Err(Error::Malformed(_))));
    assert!(matches!(sub(0x20, Protocol::V4), Err(Error::Malformed(_))));
    assert!(sub(0x2e, Protocol::V5).is_ok());
    assert!(sub(0x02, Protocol::V4).is_ok());
}

#[test]
fn subscribe_and_unsubscribe_need_a_filter_and_a_pkid() {
    assert!(matches!(decode(&[0x82, 0x02, 0x00, 0x01], Protocol::V4), Err(Error::Protocol(_))));
    assert!(matches!(decode(&[0xa2, 0x02, 0x00, 0x01], Protocol::V4), Err(Error::Protocol(_))));
    assert!(matches!(decode(&[0xa2, 0x03, 0x00, 0x01, 0x00], Protocol::V5), Err(Error::Protocol(_))));
    assert!(matches!(decode(&[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00], Protocol::V4), Err(Error::Protocol(_))));
    assert!(matches!(decode(&[0xa2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a'], Protocol::V4), Err(Error::Protocol(_))));
    assert!(matches!(decode(&[0x40, 0x02, 0x00, 0x00], Protocol::V4), Err(Error::Protocol(_))));
}

// ---- CONNECT ----

/// MQTT 3.1.1 figure 3.6 variable header (`00 04 MQTT 04 CE 00 0A`: user name, password,
/// will QoS 1, will, clean session; keep alive 10) with a payload in spec order.
const CONNECT_V4: &[u8] = &[
    0x10, 45, // fixed header
    0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xce, 0x00, 0x0a, // variable header
    0x00, 0x08, b'c', b'l', b'i', b'e', b'n', b't', b'-', b'1', // client id
    0x00, 0x06, b'w', b'i', b'l', b'l', b'/', b't', // will topic
    0x00, 0x03, b'b', b'y', b'e', // will message
    0x00, 0x04, b'u', b's', b'e', b'r', // user name
    0x00, 0x04, b'p', b'a', b's', b's', // password
];

/// MQTT 5.0 section 3.1.2.12 variable header example (`... 05 CE 00 0A 05 11 00 00 00 0A`:
/// session expiry interval 10) with will properties (will delay 30) and the same payload.
const CONNECT_V5: &[u8] = &[
    0x10, 57, // fixed header
    0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xce, 0x00, 0x0a, // variable header
    0x05, 0x11, 0x00, 0x00, 0x00, 0x0a, // properties
    0x00, 0x08, b'c', b'l', b'i', b'e', b'n', b't', b'-', b'1', // client id
    0x05, 0x18, 0x00, 0x00, 0x00, 0x1e, // will properties
    0x00, 0x06, b'w', b'i', b'l', b'l', b'/', b't', // will topic
    0x00, 0x03, b'b', b'y', b'e', // will payload
    0x00, 0x04, b'u', b's', b'e', b'r', // user name
    0x00, 0x04, b'p', b'a', b's', b's', // password
];

fn expected_connect(protocol: Protocol) -> Connect {
    let v5 = protocol == Protocol::V5;
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 10,
        client_id: "client-1".into(),
        will: Some(LastWill {
            topic: Bytes::from_static(b"will/t"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties { will_delay_interval: v5.then_some(30), ..Properties::default() }.into(),
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"pass")),
        properties: Properties { session_expiry_interval: v5.then_some(10), ..Properties::default() }.into(),
        mqtt31: false,
    }
}

#[test]
fn spec_connect_v4_vector() {
    // A CONNECT names its own version: decoded the same whatever the connection says.
    for connection in [Protocol::V4, Protocol::V5] {
        let packet = decode(CONNECT_V4, connection).unwrap();
        assert_eq!(packet, Packet::Connect(expected_connect(Protocol::V4)));
    }
    let packet = Packet::Connect(expected_connect(Protocol::V4));
    assert_eq!(encode(&packet, Protocol::V4).unwrap(), CONNECT_V4);
}

#[test]
fn spec_connect_v5_vector() {
    let packet = decode(CONNECT_V5, Protocol::V4).unwrap();
    assert_eq!(packet, Packet::Connect(expected_connect(Protocol::V5)));
    assert_eq!(encode(&packet, Protocol::V5).unwrap(), CONNECT_V5);
}

#[test]
fn connect_protocol_name_and_level() {
    let mut v3 = CONNECT_V4.to_vec();
    v3[8] = 3;
    assert_eq!(decode(&v3, Protocol::V4), Err(Error::UnsupportedProtocolVersion(3)));
    let mut name = CONNECT_V4.to_vec();
    name[7] = b'X';
    // An unknown name is refused like an unknown level (the broker answers return code 1).
    assert_eq!(decode(&name, Protocol::V4), Err(Error::UnsupportedProtocolVersion(4)));
    // MQTT 3.1: "MQIsdp", level 3, decoded as 3.1.1 with mqtt31 set (issue 10).
    let mut mqisdp = vec![0x10, 14, 0x00, 0x06];
    mqisdp.extend_from_slice(b"MQIsdp");
    mqisdp.extend_from_slice(&[0x03, 0x02, 0x00, 0x0a, 0x00, 0x00]);
    match decode(&mqisdp, Protocol::V4) {
        Ok(Packet::Connect(c)) => assert!(c.mqtt31 && c.protocol == Protocol::V4 && c.keep_alive == 10, "{c:?}"),
        other => panic!("3.1 CONNECT: {other:?}"),
    }
    assert_eq!(encode(&decode(&mqisdp, Protocol::V4).unwrap(), Protocol::V4).unwrap(), mqisdp);
    mqisdp[10] = 4;
    assert_eq!(decode(&mqisdp, Protocol::V4), Err(Error::UnsupportedProtocolVersion(4)));
}

#[test]
fn connect_flag_rules() {
    let with_flags = |flags: u8| {
        let mut bytes = CONNECT_V4.to_vec();
        bytes[9] = flags;
        decode(&bytes, Protocol::V4)
    };
    assert!(matches!(with_flags(0xcf), Err(Error::Malformed(_))), "reserved bit");
    assert!(matches!(with_flags(0xde), Err(Error::Malformed(_))), "will QoS 3");
    // Without the will flag the will fields must be zero (0xca: will QoS 1, no will).
    assert!(matches!(with_flags(0xca), Err(Error::Malformed(_))), "will QoS w/o will");
    // Password without user name (0x4e) in 3.1.1.
    assert!(matches!(with_flags(0x4e), Err(Error::Malformed(_))), "password w/o user");
}

#[test]
fn connect_v5_will_properties_restricted() {
    // Replace the will delay (0x18) with a session expiry (0x11), not a will property.
    let mut bytes = CONNECT_V5.to_vec();
    let at = bytes.iter().position(|&b| b == 0x18).unwrap();
    bytes[at] = 0x11;
    assert!(matches!(decode(&bytes, Protocol::V5), Err(Error::Malformed(_))));
}

/// Issue 10: a property identifier not valid for its packet type makes a Malformed Packet
/// (5.0 section 2.2.2.2, reason 0x81), not a Protocol Error.
#[test]
fn property_not_valid_for_the_packet_is_malformed_issue_10() {
    // DISCONNECT carrying Topic Alias (0x23).
    let disconnect = [0xe0, 0x05, 0x00, 0x03, 0x23, 0x00, 0x01];
    let e = decode(&disconnect, Protocol::V5).unwrap_err();
    assert!(matches!(e, Error::Malformed(_)), "{e:?}");
    assert_eq!(e.reason_code(), 0x81);
    // PUBACK carrying Will Delay Interval (0x18).
    let puback = [0x40, 0x09, 0x00, 0x01, 0x00, 0x05, 0x18, 0, 0, 0, 1];
    assert!(matches!(decode(&puback, Protocol::V5), Err(Error::Malformed(_))));
    // Valid for the packet but given twice stays a Protocol Error.
    let twice = [0xe0, 0x0c, 0x00, 0x0a, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2];
    assert!(matches!(decode(&twice, Protocol::V5), Err(Error::Protocol(_))));
}

// ---- found by the fuzz targets (fuzz/), each with the input that found it ----

#[test]
fn fuzz_topic_shared_group_with_nul_is_not_a_valid_filter() {
    // `valid_filter` refused U+0000 in a plain filter and in the filter part of a shared
    // subscription, but not in its group name.
    let found = "$share/\0\0\0\0\0\0\0\u{12}$/s";
    assert!(!valid_filter(found));
    assert!(!valid_filter("$share/g\0/a"));
    assert!(valid_filter("$share/g/a"));
}

#[test]
fn varint_not_in_shortest_form_is_malformed() {
    // Found by the fuzzing notes: 0x81 0x00 encodes 1 in two bytes [MQTT-1.5.5-1].
    for protocol in [Protocol::V4, Protocol::V5] {
        let mut long_length = BytesMut::from(&[0xC0u8, 0x80, 0x00][..]);
        assert!(matches!(read(&mut long_length, protocol, usize::MAX), Err(Error::Malformed(_))), "{protocol:?}");
    }
    // The same value in its shortest form is fine: PINGREQ, remaining length 0.
    let mut short = BytesMut::from(&[0xC0u8, 0x00][..]);
    assert_eq!(read(&mut short, Protocol::V5, usize::MAX), Ok(Packet::PingReq));
    // A property length of 0x80 0x00 inside a 5.0 PUBACK.
    let mut props = BytesMut::from(&[0x40u8, 0x05, 0x00, 0x01, 0x00, 0x80, 0x00][..]);
    assert!(matches!(read(&mut props, Protocol::V5, usize::MAX), Err(Error::Malformed(_))));
}
