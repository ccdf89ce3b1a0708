//! Writes the seed corpus: one valid packet of every type, in both protocol versions and in
//! the forms the spec allows (short and long acknowledgements and DISCONNECTs, PUBLISH at
//! each QoS with and without properties, ...), plus a few multi-packet streams, into
//! `corpus/decode/` and `corpus/roundtrip/`; and topic/filter pairs into `corpus/topic/`.
//!
//! Run from anywhere: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`. Every
//! packet is checked to decode back to itself before it is written, so a seed is always a
//! valid packet. Existing files of the same name are overwritten; files libFuzzer added are
//! left alone.

use std::fs;
use std::path::Path;

use proto::{
    read, Ack, AckKind, Auth, Bytes, BytesMut, ConnAck, Connect, Disconnect, LastWill, Packet, Properties, Props,
    Protocol, Publish, QoS, SubAck, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe,
};

/// One seed: a file name and the packets it holds, all encoded for one version.
struct Seed {
    name: String,
    protocol: Protocol,
    packets: Vec<Packet>,
}

fn props(f: impl FnOnce(&mut Properties)) -> Props {
    let mut p = Properties::default();
    f(&mut p);
    Props::from(p)
}

fn user(p: &mut Properties) {
    p.user_properties.push(("origin".into(), "seed".into()));
}

fn connect(protocol: Protocol, will: bool, with_props: bool) -> Packet {
    let v5 = protocol == Protocol::V5;
    let will = will.then(|| LastWill {
        topic: Bytes::from_static(b"clients/c1/status"),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: if v5 && with_props {
            props(|p| {
                p.will_delay_interval = Some(5);
                p.payload_format_indicator = Some(1);
                p.message_expiry_interval = Some(3600);
                p.content_type = Some("text/plain".into());
                p.response_topic = Some("clients/c1/reply".into());
                p.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
                user(p);
            })
        } else {
            Props::default()
        },
        mqtt31: false,
    });
    Packet::Connect(Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: "c1".into(),
        will,
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"secret")),
        properties: if v5 && with_props {
            props(|p| {
                p.session_expiry_interval = Some(120);
                p.receive_maximum = Some(32);
                p.maximum_packet_size = Some(65_536);
                p.topic_alias_maximum = Some(8);
                p.request_response_information = Some(1);
                p.request_problem_information = Some(0);
                p.authentication_method = Some("SCRAM-SHA-1".into());
                p.authentication_data = Some(Bytes::from_static(b"client-first"));
                user(p);
            })
        } else {
            Props::default()
        },
        mqtt31: false,
    })
}

fn connack(code: u8, session_present: bool, properties: Props) -> Packet {
    Packet::ConnAck(ConnAck { session_present, code, properties })
}

fn publish(qos: QoS, properties: Props) -> Packet {
    let mut p = Publish::new("sensors/room1/temp", qos, &b"21.5"[..]);
    if qos != QoS::AtMostOnce {
        p.pkid = 10;
    }
    p.retain = qos == QoS::AtLeastOnce;
    p.dup = qos == QoS::ExactlyOnce;
    p.properties = properties;
    Packet::Publish(p)
}

fn ack(kind: AckKind, reason: u8, properties: Props) -> Packet {
    let ack = Ack { pkid: 10, reason, properties };
    match kind {
        AckKind::PubAck => Packet::PubAck(ack),
        AckKind::PubRec => Packet::PubRec(ack),
        AckKind::PubRel => Packet::PubRel(ack),
        AckKind::PubComp => Packet::PubComp(ack),
    }
}

fn subscribe(protocol: Protocol, with_props: bool) -> Packet {
    let v5 = protocol == Protocol::V5;
    let mut options = SubscribeFilter::new("sensors/+/temp", QoS::ExactlyOnce);
    if v5 {
        options.no_local = true;
        options.retain_as_published = true;
        options.retain_handling = 2;
    }
    Packet::Subscribe(Subscribe {
        pkid: 11,
        filters: vec![
            SubscribeFilter::new("a/#", QoS::AtMostOnce),
            SubscribeFilter::new("$share/g1/jobs/+", QoS::AtLeastOnce),
            options,
        ],
        properties: if with_props {
            props(|p| {
                p.subscription_identifiers.push(300);
                user(p);
            })
        } else {
            Props::default()
        },
        mqtt31: false,
    })
}

/// Every packet of `protocol`, named `{version}_{what}`.
fn packets(protocol: Protocol) -> Vec<(String, Packet)> {
    let v5 = protocol == Protocol::V5;
    let version = if v5 { "v5" } else { "v4" };
    let reason_string = || props(|p| p.reason_string = Some("because".into()));
    let codes = |codes: Vec<u8>| if v5 { codes } else { Vec::new() };
    let mut list: Vec<(&str, Packet)> = vec![
        ("connect_minimal", {
            let Packet::Connect(mut c) = connect(protocol, false, false) else { unreachable!() };
            c.username = None;
            c.password = None;
            c.client_id.clear();
            Packet::Connect(c)
        }),
        ("connect_will_user_password", connect(protocol, true, false)),
        ("connack_accepted", connack(0, false, Props::default())),
        ("connack_session_present", connack(0, true, Props::default())),
        ("connack_refused", connack(if v5 { 0x87 } else { 5 }, false, Props::default())),
        ("publish_qos0", publish(QoS::AtMostOnce, Props::default())),
        ("publish_qos1_retain", publish(QoS::AtLeastOnce, Props::default())),
        ("publish_qos2_dup", publish(QoS::ExactlyOnce, Props::default())),
        ("puback", ack(AckKind::PubAck, 0, Props::default())),
        ("pubrec", ack(AckKind::PubRec, 0, Props::default())),
        ("pubrel", ack(AckKind::PubRel, 0, Props::default())),
        ("pubcomp", ack(AckKind::PubComp, 0, Props::default())),
        ("subscribe", subscribe(protocol, false)),
        ("suback", Packet::SubAck(SubAck { pkid: 11, codes: vec![0, 1, 2, 0x80], properties: Props::default() })),
        (
            "unsubscribe",
            Packet::Unsubscribe(Unsubscribe {
                pkid: 12,
                filters: vec!["a/#".into(), "$share/g1/jobs/+".into()],
                properties: Props::default(),
            }),
        ),
        // MQTT 3.1.1 UNSUBACKs carry no reason codes.
        (
            "unsuback",
            Packet::UnsubAck(UnsubAck { pkid: 12, codes: codes(vec![0, 0x11]), properties: Props::default() }),
        ),
        ("pingreq", Packet::PingReq),
        ("pingresp", Packet::PingResp),
        ("disconnect", Packet::Disconnect(Disconnect::new(0))),
    ];
    if v5 {
        list.extend([
            ("connect_props_will_props", connect(protocol, true, true)),
            (
                "connack_props",
                connack(
                    0,
                    false,
                    props(|p| {
                        p.session_expiry_interval = Some(120);
                        p.assigned_client_identifier = Some("auto-1".into());
                        p.server_keep_alive = Some(30);
                        p.response_information = Some("resp/".into());
                        p.server_reference = Some("other:1883".into());
                        p.receive_maximum = Some(100);
                        p.topic_alias_maximum = Some(10);
                        p.maximum_qos = Some(1);
                        p.retain_available = Some(1);
                        p.maximum_packet_size = Some(1 << 20);
                        p.wildcard_subscription_available = Some(1);
                        p.subscription_identifier_available = Some(1);
                        p.shared_subscription_available = Some(0);
                        p.reason_string = Some("welcome".into());
                        user(p);
                    }),
                ),
            ),
            (
                "publish_qos0_props",
                publish(
                    QoS::AtMostOnce,
                    props(|p| {
                        p.payload_format_indicator = Some(1);
                        p.message_expiry_interval = Some(60);
                        p.content_type = Some("application/json".into());
                        p.response_topic = Some("reply/c1".into());
                        p.correlation_data = Some(Bytes::from_static(b"req-7"));
                        p.subscription_identifiers.extend([1, 300, 70_000]);
                        user(p);
                    }),
                ),
            ),
            ("publish_qos1_topic_alias", publish(QoS::AtLeastOnce, props(|p| p.topic_alias = Some(3)))),
            ("publish_qos2_props", publish(QoS::ExactlyOnce, props(user))),
            ("puback_reason", ack(AckKind::PubAck, 0x10, Props::default())),
            ("puback_reason_props", ack(AckKind::PubAck, 0x80, reason_string())),
            ("pubrec_reason", ack(AckKind::PubRec, 0x91, Props::default())),
            ("pubrec_reason_props", ack(AckKind::PubRec, 0x10, props(user))),
            ("pubrel_reason", ack(AckKind::PubRel, 0x92, Props::default())),
            ("pubrel_reason_props", ack(AckKind::PubRel, 0x92, reason_string())),
            ("pubcomp_reason", ack(AckKind::PubComp, 0x92, Props::default())),
            ("pubcomp_reason_props", ack(AckKind::PubComp, 0, reason_string())),
            ("subscribe_props", subscribe(protocol, true)),
            (
                "suback_props",
                Packet::SubAck(SubAck { pkid: 11, codes: vec![0, 1, 0x8f, 0x9e, 0xa2], properties: reason_string() }),
            ),
            (
                "unsubscribe_props",
                Packet::Unsubscribe(Unsubscribe { pkid: 12, filters: vec!["a/#".into()], properties: props(user) }),
            ),
            ("unsuback_props", Packet::UnsubAck(UnsubAck { pkid: 12, codes: vec![0x11], properties: reason_string() })),
            ("disconnect_reason", Packet::Disconnect(Disconnect::new(0x04))),
            (
                "disconnect_reason_props",
                Packet::Disconnect(Disconnect {
                    reason: 0x8b,
                    properties: props(|p| {
                        p.session_expiry_interval = Some(0);
                        p.server_reference = Some("other:1883".into());
                        p.reason_string = Some("shutting down".into());
                        user(p);
                    }),
                }),
            ),
            ("auth_success", Packet::Auth(Auth { reason: 0, properties: Props::default() })),
            (
                "auth_continue",
                Packet::Auth(Auth {
                    reason: 0x18,
                    properties: props(|p| {
                        p.authentication_method = Some("SCRAM-SHA-1".into());
                        p.authentication_data = Some(Bytes::from_static(b"server-first"));
                        p.reason_string = Some("continue".into());
                        user(p);
                    }),
                }),
            ),
            ("auth_reauthenticate", Packet::Auth(Auth { reason: 0x19, properties: Props::default() })),
        ]);
    }
    list.into_iter().map(|(what, packet)| (format!("{version}_{what}"), packet)).collect()
}

/// Single packets of both versions, and the streams a session would send and receive.
fn seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for protocol in [Protocol::V4, Protocol::V5] {
        for (name, packet) in packets(protocol) {
            seeds.push(Seed { name, protocol, packets: vec![packet] });
        }
        let version = if protocol == Protocol::V5 { "v5" } else { "v4" };
        let find = |names: &[&str]| -> Vec<Packet> {
            let all = packets(protocol);
            let wanted = names.iter().map(|n| format!("{version}_{n}"));
            wanted.map(|n| all.iter().find(|(name, _)| *name == n).expect("seed name").1.clone()).collect()
        };
        seeds.push(Seed {
            name: format!("{version}_stream_client"),
            protocol,
            packets: find(&["connect_will_user_password", "subscribe", "publish_qos1_retain", "pubrec", "pingreq"]),
        });
        seeds.push(Seed {
            name: format!("{version}_stream_server"),
            protocol,
            packets: find(&["connack_accepted", "suback", "publish_qos2_dup", "pubrel", "pingresp", "disconnect"]),
        });
    }
    seeds
}

/// Valid encodings the encoder never writes: a V5 ack or DISCONNECT with reason 0 and an
/// empty property block, an AUTH with a reason and no property length.
const RAW: &[(&str, &[u8])] = &[
    ("v5_puback_reason0_empty_props", &[0x40, 0x04, 0x00, 0x0a, 0x00, 0x00]),
    ("v5_disconnect_reason0_empty_props", &[0xe0, 0x02, 0x00, 0x00]),
    ("v5_auth_reason_only", &[0xf0, 0x01, 0x18]),
];

/// Filter and topic pairs for the `topic` target, separated by 0xFF.
const TOPICS: &[(&str, &str, &str)] = &[
    ("plain", "sport/tennis/player1", "sport/tennis/player1"),
    ("plus", "sport/+/player1", "sport/tennis/player1"),
    ("hash", "sport/#", "sport"),
    ("dollar", "#", "$SYS/broker/uptime"),
    ("shared", "$share/group/a/+", "a/b"),
    ("empty_levels", "+/+", "/finance"),
];

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let packet_dirs = [root.join("decode"), root.join("roundtrip")];
    let topic_dir = root.join("topic");
    for dir in packet_dirs.iter().chain([&topic_dir]) {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }

    let mut count = 0;
    for seed in seeds() {
        let mut bytes = BytesMut::new();
        for packet in &seed.packets {
            packet.write(seed.protocol, &mut bytes).unwrap_or_else(|e| panic!("{}: {e}", seed.name));
        }
        let mut check = bytes.clone();
        for packet in &seed.packets {
            assert_eq!(read(&mut check, seed.protocol, usize::MAX).as_ref(), Ok(packet), "{}", seed.name);
        }
        assert!(check.is_empty(), "{}: bytes left over", seed.name);
        for dir in &packet_dirs {
            write(dir, &seed.name, &bytes);
        }
        count += 1;
    }
    for (name, bytes) in RAW {
        let mut check = BytesMut::from(*bytes);
        assert!(read(&mut check, Protocol::V5, usize::MAX).is_ok() && check.is_empty(), "{name}");
        for dir in &packet_dirs {
            write(dir, name, bytes);
        }
        count += 1;
    }
    for (name, filter, topic) in TOPICS {
        let mut bytes = filter.as_bytes().to_vec();
        bytes.push(0xff);
        bytes.extend_from_slice(topic.as_bytes());
        write(&topic_dir, name, &bytes);
    }
    println!("{count} packet seeds and {} topic seeds under {}", TOPICS.len(), root.display());
}
