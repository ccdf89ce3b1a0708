//! MQTT 3.1 (protocol name "MQIsdp", level 3) clients, on raw packets and with the
//! Mosquitto command-line clients: connect (client ids past the 23 characters of the 3.1
//! spec accepted, as Mosquitto does; an empty one refused), a CONNACK without the session
//! present flag, and messages both ways with 3.1.1 clients (issue 10).

mod wire;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use proto::{reason, Packet, Protocol, QoS};
use wire::{broker, Raw};

/// A 3.1 client id longer than the 23 characters its spec allows.
const LONG_ID: &str = "mqtt31-client-id-of-forty-characters-xyz";

/// Opens a 3.1 connection and returns the raw CONNACK bytes it got.
fn connect31(addr: SocketAddr, id: &str, clean: bool) -> (Raw, Vec<u8>) {
    let mut c = Raw::open(addr, Protocol::V4);
    let mut p = wire::connect_packet(Protocol::V4, id, clean);
    if let Packet::Connect(connect) = &mut p {
        connect.mqtt31 = true;
    }
    let mut bytes = bytes::BytesMut::new();
    p.write(Protocol::V4, &mut bytes).unwrap();
    assert_eq!(&bytes[2..11], b"\x00\x06MQIsdp\x03", "a 3.1 CONNECT on the wire");
    c.send_bytes(&bytes);
    let ack = read_bytes(&mut c, 4);
    (c, ack)
}

/// The next `n` bytes from the broker exactly as sent (within the wait).
fn read_bytes(c: &mut Raw, n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut out = vec![0; n];
    c.stream.set_read_timeout(Some(wire::WAIT)).unwrap();
    c.stream.read_exact(&mut out).expect("bytes from the broker");
    out
}

fn expect_publish(c: &mut Raw, payload: &[u8]) -> proto::Publish {
    match c.recv() {
        Some(Packet::Publish(p)) => {
            assert_eq!(&p.payload[..], payload);
            p
        }
        other => panic!("expected PUBLISH {payload:?}, got {other:?}"),
    }
}

#[test]
fn mqtt31_clients_exchange_messages_with_311_clients_issue_10() {
    let node = broker(|_| {});
    let addr = node.local_addrs()[0];
    let (mut sub31, ack) = connect31(addr, LONG_ID, true);
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00], "CONNACK accepted, no session present flag");
    sub31.subscribe("m31/#", QoS::AtLeastOnce);
    let mut sub4 = Raw::connect(addr, Protocol::V4, "m311-sub");
    sub4.subscribe("m31/#", QoS::ExactlyOnce);
    // 3.1.1 -> 3.1, QoS 1.
    let mut pub4 = Raw::connect(addr, Protocol::V4, "m311-pub");
    pub4.publish("m31/a", b"from 3.1.1", QoS::AtLeastOnce, 1);
    assert!(matches!(pub4.recv(), Some(Packet::PubAck(a)) if a.pkid == 1));
    let p = expect_publish(&mut sub31, b"from 3.1.1");
    sub31.send(&Packet::PubAck(proto::Ack { pkid: p.pkid, reason: 0, properties: Default::default() }));
    expect_publish(&mut sub4, b"from 3.1.1");
    // 3.1 -> 3.1.1, QoS 2.
    let (mut pub31, _) = connect31(addr, "m31-pub", true);
    pub31.publish("m31/b", b"from 3.1", QoS::ExactlyOnce, 7);
    assert!(matches!(pub31.recv(), Some(Packet::PubRec(a)) if a.pkid == 7));
    pub31.send(&Packet::PubRel(proto::Ack { pkid: 7, reason: 0, properties: Default::default() }));
    assert!(matches!(pub31.recv(), Some(Packet::PubComp(a)) if a.pkid == 7));
    assert_eq!(expect_publish(&mut sub4, b"from 3.1").qos, QoS::ExactlyOnce);
    node.stop();
    node.join().unwrap();
}

#[test]
fn mqtt31_resumed_session_has_no_session_present_flag_issue_10() {
    let node = broker(|_| {});
    let addr = node.local_addrs()[0];
    let (mut c, ack) = connect31(addr, "m31-persistent", false);
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
    c.subscribe("m31p/t", QoS::AtLeastOnce);
    c.send(&Packet::Disconnect(proto::Disconnect { reason: 0, properties: Default::default() }));
    assert!(c.expect_closed().is_empty());
    // Published while the session is offline.
    let mut publ = Raw::connect(addr, Protocol::V4, "m31p-pub");
    publ.publish("m31p/t", b"kept", QoS::AtLeastOnce, 1);
    assert!(matches!(publ.recv(), Some(Packet::PubAck(_))));
    let (mut c, ack) = connect31(addr, "m31-persistent", false);
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00], "3.1 has no session present flag, even when resumed");
    expect_publish(&mut c, b"kept");
    node.stop();
    node.join().unwrap();
}

#[test]
fn mqtt31_empty_client_id_is_rejected_issue_10() {
    let node = broker(|_| {});
    let (mut c, ack) = connect31(node.local_addrs()[0], "", true);
    assert_eq!(ack, [0x20, 0x02, 0x00, reason::V4_IDENTIFIER_REJECTED]);
    assert!(c.expect_closed().is_empty());
    node.stop();
    node.join().unwrap();
}

/// Runs a Mosquitto command-line client; its output. Fails when it is missing:
/// `.ci/run` installs mosquitto-clients.
fn mosquitto(tool: &str, args: &[&str]) -> std::process::Output {
    let started = Instant::now();
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} ({e}): install mosquitto-clients (.ci/run does)"));
    assert!(started.elapsed() < Duration::from_secs(30));
    out
}

#[test]
fn mosquitto_clients_speak_mqtt31_issue_10() {
    let node = broker(|_| {});
    let addr = node.local_addrs()[0];
    let port = addr.port().to_string();
    let mut sub4 = Raw::connect(addr, Protocol::V4, "mosq31-sub4");
    sub4.subscribe("mosq31/t", QoS::AtLeastOnce);
    let common = ["-V", "mqttv31", "-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", "mosq31/t"];
    let mut args = common.to_vec();
    args.extend(["-i", LONG_ID, "-r", "-m", "hello 3.1"]);
    let out = mosquitto("mosquitto_pub", &args);
    assert!(out.status.success(), "mosquitto_pub -V mqttv31: {}", String::from_utf8_lossy(&out.stderr));
    expect_publish(&mut sub4, b"hello 3.1");
    // The retained message reaches a 3.1 subscriber: its SUBSCRIBE needs no timing.
    let mut args = common.to_vec();
    args.extend(["-i", "mosq31-sub", "-C", "1", "-W", "10"]);
    let out = mosquitto("mosquitto_sub", &args);
    assert!(out.status.success(), "mosquitto_sub -V mqttv31: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "hello 3.1");
    node.stop();
    node.join().unwrap();
}
