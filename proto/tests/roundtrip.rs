//! Property tests: every packet type, with arbitrary valid fields, for MQTT 3.1.1 (V4-legal
//! fields only, no properties) and MQTT 5.0, survives write-then-read unchanged; every
//! strict prefix of an encoding is Incomplete and consumes nothing; `frame_len` and the
//! size helpers agree with the encoding; `Publish::pkid_offset` points at the packet id.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::Union;
use proto::{
    frame_len, read, Ack, Auth, Bytes, BytesMut, ConnAck, Connect, Disconnect, Error, LastWill, Packet, Properties,
    Protocol, Publish, QoS, SubAck, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe,
};

/// Where a property block sits; mirrors the spec's table independently of the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    Will,
    ConnAck,
    Publish,
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,12}"
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn flag() -> impl Strategy<Value = u8> {
    0u8..=1
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn pkid() -> impl Strategy<Value = u16> {
    1u16..=u16::MAX
}

/// A valid topic name: non-empty, no wildcards, no U+0000.
fn topic_name() -> impl Strategy<Value = String> {
    vec("[^\\x00+#/]{0,6}", 1..4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("topic names are non-empty", |t| !t.is_empty())
}

/// A topic filter: '+' levels, text levels and possibly a trailing '#'.
fn plain_filter() -> impl Strategy<Value = String> {
    (vec(prop_oneof![Just("+".to_string()), "[^\\x00+#/]{0,6}"], 0..4), any::<bool>()).prop_map(|(mut levels, hash)| {
        if hash || levels.is_empty() {
            levels.push("#".into());
        }
        levels.join("/")
    })
}

fn filter() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => plain_filter(),
        1 => ("[a-z0-9]{1,5}", plain_filter()).prop_map(|(g, f)| format!("$share/{g}/{f}")),
    ]
}

/// Any combination of properties with valid values, before masking by packet.
fn all_properties() -> impl Strategy<Value = Properties> {
    let group1 = (
        prop::option::of(flag()),
        prop::option::of(any::<u32>()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(binary()),
        vec(1u32..=268_435_455, 0..3),
    );
    let group2 = (
        prop::option::of(any::<u32>()),
        prop::option::of(text()),
        prop::option::of(any::<u16>()),
        prop::option::of(text()),
        prop::option::of(binary()),
        prop::option::of(flag()),
        prop::option::of(any::<u32>()),
        prop::option::of(flag()),
    );
    let group3 = (
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(1u16..),
        prop::option::of(any::<u16>()),
        prop::option::of(1u16..),
        prop::option::of(flag()),
        prop::option::of(flag()),
    );
    let group4 = (
        vec((text(), text()), 0..3),
        prop::option::of(1u32..),
        prop::option::of(flag()),
        prop::option::of(flag()),
        prop::option::of(flag()),
    );
    (group1, group2, group3, group4).prop_map(|(g1, g2, g3, g4)| Properties {
        payload_format_indicator: g1.0,
        message_expiry_interval: g1.1,
        content_type: g1.2,
        response_topic: g1.3,
        correlation_data: g1.4,
        subscription_identifiers: g1.5,
        session_expiry_interval: g2.0,
        assigned_client_identifier: g2.1,
        server_keep_alive: g2.2,
        authentication_method: g2.3,
        authentication_data: g2.4,
        request_problem_information: g2.5,
        will_delay_interval: g2.6,
        request_response_information: g2.7,
        response_information: g3.0,
        server_reference: g3.1,
        reason_string: g3.2,
        receive_maximum: g3.3,
        topic_alias_maximum: g3.4,
        topic_alias: g3.5,
        maximum_qos: g3.6,
        retain_available: g3.7,
        user_properties: g4.0,
        maximum_packet_size: g4.1,
        wildcard_subscription_available: g4.2,
        subscription_identifier_available: g4.3,
        shared_subscription_available: g4.4,
    })
}

/// Clears every property the spec does not allow in `kind` (MQTT 5.0 table 2-4).
fn mask(mut p: Properties, kind: Kind) -> Properties {
    use Kind::*;
    let is = |kinds: &[Kind]| kinds.contains(&kind);
    if !is(&[Publish, Will]) {
        p.payload_format_indicator = None;
        p.message_expiry_interval = None;
        p.content_type = None;
        p.response_topic = None;
        p.correlation_data = None;
    }
    match kind {
        Publish => {}
        Subscribe => p.subscription_identifiers.truncate(1),
        _ => p.subscription_identifiers.clear(),
    }
    if !is(&[Connect, ConnAck, Disconnect]) {
        p.session_expiry_interval = None;
    }
    if kind != ConnAck {
        p.assigned_client_identifier = None;
        p.server_keep_alive = None;
        p.response_information = None;
        p.maximum_qos = None;
        p.retain_available = None;
        p.wildcard_subscription_available = None;
        p.subscription_identifier_available = None;
        p.shared_subscription_available = None;
    }
    if !is(&[Connect, ConnAck, Auth]) {
        p.authentication_method = None;
        p.authentication_data = None;
    }
    if kind != Connect {
        p.request_problem_information = None;
        p.request_response_information = None;
    }
    if kind != Will {
        p.will_delay_interval = None;
    }
    if !is(&[ConnAck, Disconnect]) {
        p.server_reference = None;
    }
    if !is(&[ConnAck, Ack, SubAck, UnsubAck, Disconnect, Auth]) {
        p.reason_string = None;
    }
    if !is(&[Connect, ConnAck]) {
        p.receive_maximum = None;
        p.topic_alias_maximum = None;
        p.maximum_packet_size = None;
    }
    if kind != Publish {
        p.topic_alias = None;
    }
    if p.authentication_method.is_none() {
        p.authentication_data = None;
    }
    p
}

/// Properties for `kind`: always empty for V4, masked arbitrary ones for V5.
fn properties(protocol: Protocol, kind: Kind) -> BoxedStrategy<Properties> {
    match protocol {
        Protocol::V4 => Just(Properties::default()).boxed(),
        Protocol::V5 => prop_oneof![
            1 => Just(Properties::default()),
            3 => all_properties().prop_map(move |p| mask(p, kind)),
        ]
        .boxed(),
    }
}

fn will(protocol: Protocol) -> impl Strategy<Value = LastWill> {
    (topic_name(), binary(), qos(), any::<bool>(), properties(protocol, Kind::Will)).prop_map(
        |(topic, payload, qos, retain, properties)| LastWill {
            topic: Bytes::from(topic),
            payload,
            qos,
            retain,
            properties: properties.into(),
        },
    )
}

fn connect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        prop::option::of(will(protocol)),
        prop::option::of(text()),
        prop::option::of(binary()),
        properties(protocol, Kind::Connect),
        any::<bool>(),
    )
        .prop_map(move |(clean_start, keep_alive, client_id, will, username, mut password, properties, v31)| {
            if protocol == Protocol::V4 && username.is_none() {
                password = None;
            }
            Packet::Connect(Connect {
                protocol,
                clean_start,
                keep_alive,
                client_id,
                will,
                username,
                password,
                properties: properties.into(),
                // MQTT 3.1 is 3.1.1 with another CONNECT name and level.
                mqtt31: v31 && protocol == Protocol::V4,
            })
        })
}

fn connack(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let code = match protocol {
        Protocol::V4 => (0u8..=5).boxed(),
        Protocol::V5 => any::<u8>().boxed(),
    };
    (any::<bool>(), code, properties(protocol, Kind::ConnAck)).prop_map(|(session_present, code, properties)| {
        Packet::ConnAck(ConnAck { session_present, code, properties: properties.into() })
    })
}

fn publish_packet(protocol: Protocol) -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        pkid(),
        properties(protocol, Kind::Publish),
        vec(any::<u8>(), 0..300),
    )
        .prop_map(|(dup, qos, retain, topic, empty_topic, pkid, properties, payload)| {
            let at_most_once = qos == QoS::AtMostOnce;
            // V5 may send an empty topic when a topic alias is present.
            let topic = if empty_topic && properties.topic_alias.is_some() { String::new() } else { topic };
            Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic: Bytes::from(topic),
                pkid: if at_most_once { 0 } else { pkid },
                properties: properties.into(),
                payload: Bytes::from(payload),
            }
        })
}

fn ack(protocol: Protocol) -> impl Strategy<Value = Ack> {
    let reason = match protocol {
        Protocol::V4 => Just(0u8).boxed(),
        Protocol::V5 => prop_oneof![Just(0u8), any::<u8>()].boxed(),
    };
    (pkid(), reason, properties(protocol, Kind::Ack)).prop_map(|(pkid, reason, properties)| Ack {
        pkid,
        reason,
        properties: properties.into(),
    })
}

fn subscribe_filter(protocol: Protocol) -> impl Strategy<Value = SubscribeFilter> {
    (filter(), qos(), any::<bool>(), any::<bool>(), 0u8..=2).prop_map(
        move |(filter, qos, no_local, retain_as_published, retain_handling)| {
            let mut f = SubscribeFilter::new(filter, qos);
            if protocol == Protocol::V5 {
                f.no_local = no_local && !f.filter.starts_with("$share/");
                f.retain_as_published = retain_as_published;
                f.retain_handling = retain_handling;
            }
            f
        },
    )
}

fn subscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (pkid(), vec(subscribe_filter(protocol), 1..4), properties(protocol, Kind::Subscribe)).prop_map(
        |(pkid, filters, properties)| Packet::Subscribe(Subscribe { pkid, filters, properties: properties.into() }),
    )
}

fn suback(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let code = match protocol {
        Protocol::V4 => prop::sample::select(vec![0u8, 1, 2, 0x80]).boxed(),
        Protocol::V5 => any::<u8>().boxed(),
    };
    (pkid(), vec(code, 1..5), properties(protocol, Kind::SubAck))
        .prop_map(|(pkid, codes, properties)| Packet::SubAck(SubAck { pkid, codes, properties: properties.into() }))
}

fn unsubscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    (pkid(), vec(filter(), 1..4), properties(protocol, Kind::Unsubscribe)).prop_map(|(pkid, filters, properties)| {
        Packet::Unsubscribe(Unsubscribe { pkid, filters, properties: properties.into() })
    })
}

fn unsuback(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let codes = match protocol {
        Protocol::V4 => Just(Vec::new()).boxed(),
        Protocol::V5 => vec(any::<u8>(), 1..5).boxed(),
    };
    (pkid(), codes, properties(protocol, Kind::UnsubAck))
        .prop_map(|(pkid, codes, properties)| Packet::UnsubAck(UnsubAck { pkid, codes, properties: properties.into() }))
}

fn disconnect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let reason = match protocol {
        Protocol::V4 => Just(0u8).boxed(),
        Protocol::V5 => prop_oneof![Just(0u8), any::<u8>()].boxed(),
    };
    (reason, properties(protocol, Kind::Disconnect))
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties: properties.into() }))
}

fn auth() -> impl Strategy<Value = Packet> {
    (prop_oneof![Just(0u8), Just(0x18), Just(0x19), any::<u8>()], properties(Protocol::V5, Kind::Auth))
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties: properties.into() }))
}

/// Every packet type legal in `protocol`.
fn packet(protocol: Protocol) -> BoxedStrategy<Packet> {
    let mut arms = vec![
        connect(protocol).boxed(),
        connack(protocol).boxed(),
        publish_packet(protocol).prop_map(Packet::Publish).boxed(),
        ack(protocol).prop_map(Packet::PubAck).boxed(),
        ack(protocol).prop_map(Packet::PubRec).boxed(),
        ack(protocol).prop_map(Packet::PubRel).boxed(),
        ack(protocol).prop_map(Packet::PubComp).boxed(),
        subscribe(protocol).boxed(),
        suback(protocol).boxed(),
        unsubscribe(protocol).boxed(),
        unsuback(protocol).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(protocol).boxed(),
    ];
    if protocol == Protocol::V5 {
        arms.push(auth().boxed());
    }
    Union::new(arms).boxed()
}

fn protocol_and_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    prop_oneof![
        packet(Protocol::V4).prop_map(|p| (Protocol::V4, p)),
        packet(Protocol::V5).prop_map(|p| (Protocol::V5, p)),
    ]
}

fn encode(packet: &Packet, protocol: Protocol) -> BytesMut {
    let mut out = BytesMut::new();
    let written = packet.write(protocol, &mut out).expect("valid packet encodes");
    assert_eq!(written, out.len());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn write_then_read((protocol, packet) in protocol_and_packet()) {
        let encoded = encode(&packet, protocol);
        prop_assert_eq!(packet.size(protocol), encoded.len());
        prop_assert_eq!(frame_len(&encoded, usize::MAX), Ok(Some(encoded.len())));

        // Followed by another frame: read takes exactly the first one.
        let mut buf = encoded.clone();
        buf.extend_from_slice(&[0xc0, 0x00]);
        let decoded = read(&mut buf, protocol, encoded.len());
        prop_assert_eq!(decoded, Ok(packet));
        prop_assert_eq!(&buf[..], &[0xc0, 0x00]);
    }

    #[test]
    fn prefixes_are_incomplete((protocol, packet) in protocol_and_packet()) {
        let encoded = encode(&packet, protocol);
        // One byte short, and every shorter prefix.
        for cut in (0..encoded.len()).rev() {
            let mut buf = BytesMut::from(&encoded[..cut]);
            match read(&mut buf, protocol, usize::MAX) {
                Err(Error::Incomplete(n)) => {
                    prop_assert!(n >= 1 && n <= encoded.len() - cut, "{} more of {}", n, cut);
                }
                other => prop_assert!(false, "prefix of {} bytes gave {:?}", cut, other),
            }
            prop_assert_eq!(&buf[..], &encoded[..cut], "nothing consumed");
        }
    }

    #[test]
    fn too_large_for_limit((protocol, packet) in protocol_and_packet()) {
        let encoded = encode(&packet, protocol);
        let max = encoded.len() - 1;
        let too_large = Err(Error::PacketTooLarge { size: encoded.len(), max });
        prop_assert_eq!(frame_len(&encoded, max), too_large.clone());
        // Refused from the fixed header alone: the body need not be there.
        let header_len = 1 + encoded[1..].iter().position(|b| b & 0x80 == 0).unwrap_or(0) + 1;
        let mut buf = BytesMut::from(&encoded[..header_len]);
        prop_assert_eq!(read(&mut buf, protocol, max).map(|_| ()), too_large.map(|_| ()));
        prop_assert_eq!(buf.len(), header_len);
    }

    #[test]
    fn pkid_offset_points_at_pkid(
        protocol in prop_oneof![Just(Protocol::V4), Just(Protocol::V5)],
        publish in prop_oneof![publish_packet(Protocol::V4), publish_packet(Protocol::V5)],
        new_pkid in pkid(),
    ) {
        let mut publish = publish;
        if protocol == Protocol::V4 {
            publish.properties = Properties::default().into();
            if publish.topic.is_empty() {
                publish.topic = Bytes::from_static(b"t");
            }
        }
        let encoded = encode(&Packet::Publish(publish.clone()), protocol);
        match publish.pkid_offset(protocol) {
            None => prop_assert_eq!(publish.qos, QoS::AtMostOnce),
            Some(at) => {
                prop_assert_ne!(publish.qos, QoS::AtMostOnce);
                prop_assert_eq!(&encoded[at..at + 2], &publish.pkid.to_be_bytes()[..]);
                // Patching the shared encoding gives the same packet with the new id.
                let mut patched = encoded.clone();
                patched[at..at + 2].copy_from_slice(&new_pkid.to_be_bytes());
                let decoded = read(&mut patched, protocol, usize::MAX);
                publish.pkid = new_pkid;
                prop_assert_eq!(decoded, Ok(Packet::Publish(publish)));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..64),
        v5 in any::<bool>(),
    ) {
        let protocol = if v5 { Protocol::V5 } else { Protocol::V4 };
        let mut buf = BytesMut::from(&bytes[..]);
        match read(&mut buf, protocol, 1024) {
            Err(Error::Incomplete(_)) => prop_assert_eq!(&buf[..], &bytes[..]),
            Ok(packet) => {
                // Whatever decodes re-encodes to something that decodes the same.
                let mut again = encode(&packet, protocol);
                prop_assert_eq!(read(&mut again, protocol, 1024), Ok(packet));
            }
            Err(_) => {}
        }
    }
}
