//! MQTT over WebSocket (issue 13): a raw RFC 6455 client for the framing (a packet split
//! across frames, several packets in one frame, pings, closes) and for hostile inputs
//! (a request that is not an upgrade, a wrong path, subprotocol or origin, a text frame,
//! an unmasked frame, a frame over `max_packet_size`), each refused clearly and counted;
//! and paho-mqtt over TLS, ws:// and wss://.

mod support;
mod wire;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use proto::{Packet, Protocol, QoS};
use support::certs::TestCa;
use wire::{broker_toml, connect_packet, Raw};

const WAIT: Duration = Duration::from_secs(10);

/// Sends an upgrade request; the connection and the answer's head.
fn upgrade(addr: SocketAddr, path: &str, extra: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let head = read_head(&mut s);
    (s, head)
}

/// Reads an HTTP answer's head (to the blank line), byte by byte.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            // Signals reach test threads (the in-process broker's runtime uses them).
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            _ => break,
        }
        assert!(head.len() < 8192, "answer head too long");
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A masked client frame.
fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The next server frame: opcode and payload (None: the connection ended).
fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).ok()?;
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).ok()?;
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).ok()?;
    Some((h[0] & 0x0f, payload))
}

fn encode(p: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut b = BytesMut::new();
    p.write(protocol, &mut b).unwrap();
    b.to_vec()
}

/// Reads binary frames until `n` MQTT packets decoded.
fn packets(s: &mut TcpStream, protocol: Protocol, n: usize) -> Vec<Packet> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    while out.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} packets", out.len());
        match proto::read(&mut buf, protocol, 1 << 20) {
            Ok(p) => {
                out.push(p);
                continue;
            }
            Err(proto::Error::Incomplete(_)) => {}
            Err(e) => panic!("undecodable: {e}"),
        }
        let (op, payload) = read_frame(s).unwrap_or_else(|| panic!("closed after {} packets", out.len()));
        assert_eq!(op, 0x2, "MQTT comes in binary frames");
        buf.extend_from_slice(&payload);
    }
    out
}

/// The close frame's status code the broker ends with (after any other frames).
fn close_code(s: &mut TcpStream) -> u16 {
    for _ in 0..100 {
        match read_frame(s) {
            Some((0x8, p)) => return u16::from_be_bytes([p[0], p[1]]),
            Some(_) => {}
            None => panic!("closed without a close frame"),
        }
    }
    panic!("no close frame")
}

fn ws_node(extra_listener: &str, limits: &str) -> ringmq::Node {
    broker_toml(&format!(
        "{limits}\n[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n{extra_listener}\n[[listener]]\nbind = \"127.0.0.1:0\"\n"
    ))
}

#[test]
fn packets_split_across_frames_and_several_in_one_frame_pings_and_closes() {
    let node = ws_node("", "");
    let (ws, plain) = (node.local_addrs()[0], node.local_addrs()[1]);
    let (mut s, head) = upgrade(ws, "/mqtt", "Sec-WebSocket-Protocol: mqttv3.1, mqtt\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    assert!(head.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{head}");
    // CONNECT in two frames of one message (a continuation), then SUBSCRIBE and a
    // PUBLISH together in one frame.
    let connect = encode(&connect_packet(Protocol::V5, "ws-raw", true), Protocol::V5);
    let (a, b) = connect.split_at(5);
    s.write_all(&frame(0x2, false, a)).unwrap();
    s.write_all(&frame(0x0, true, b)).unwrap();
    assert!(matches!(packets(&mut s, Protocol::V5, 1)[0], Packet::ConnAck(ref c) if c.code == 0));
    let sub = proto::SubscribeFilter {
        filter: "ws/#".into(),
        qos: QoS::AtLeastOnce,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    };
    let mut both = encode(
        &Packet::Subscribe(proto::Subscribe { pkid: 1, filters: vec![sub], properties: Default::default() }),
        Protocol::V5,
    );
    let big = vec![7u8; 100_000];
    let publish = proto::Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "ws/big".into(),
        pkid: 0,
        payload: big.clone().into(),
        properties: Default::default(),
    };
    both.extend(encode(&Packet::Publish(publish), Protocol::V5));
    s.write_all(&frame(0x2, true, &both)).unwrap();
    // The SUBACK and the PUBLISH back, in either order (a PUBLISH may come first).
    let got = packets(&mut s, Protocol::V5, 2);
    assert_eq!(got.iter().filter(|p| matches!(p, Packet::SubAck(_))).count(), 1, "one SUBACK");
    let back = got.iter().any(|p| matches!(p, Packet::Publish(p) if p.payload[..] == big[..]));
    assert!(back, "the 100 kB PUBLISH came back whole");
    // A plain TCP client's message reaches the WebSocket one.
    let mut publ = Raw::connect(plain, Protocol::V4, "ws-plain-pub");
    publ.publish("ws/from-tcp", b"hello", QoS::AtLeastOnce, 3);
    assert!(matches!(publ.recv(), Some(Packet::PubAck(_))));
    assert!(matches!(&packets(&mut s, Protocol::V5, 1)[0], Packet::Publish(p) if &p.payload[..] == b"hello"));
    // A ping is answered with its payload; a close is echoed and the connection ends.
    s.write_all(&frame(0x9, true, b"are you there")).unwrap();
    assert_eq!(read_frame(&mut s), Some((0xa, b"are you there".to_vec())));
    s.write_all(&frame(0x8, true, &1000u16.to_be_bytes())).unwrap();
    assert_eq!(close_code(&mut s), 1000);
    node.stop();
    node.join().unwrap();
}

#[test]
fn hostile_upgrades_and_frames_are_refused_clearly_and_counted() {
    let node = ws_node("allowed_origins = [\"https://app.example\"]\n", "[limits]\nmax_packet_size = 4096\n");
    let (ws, plain) = (node.local_addrs()[0], node.local_addrs()[1]);
    let origin = "Origin: https://app.example\r\n";
    // Not an upgrade: 426.
    let mut s = TcpStream::connect(ws).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 426"));
    let refusals = [
        ("/other", format!("{origin}Sec-WebSocket-Protocol: mqtt\r\n"), "404"),
        ("/mqtt", format!("{origin}Sec-WebSocket-Protocol: chat\r\n"), "400"),
        ("/mqtt", "Origin: https://evil.example\r\nSec-WebSocket-Protocol: mqtt\r\n".to_string(), "403"),
    ];
    for (path, extra, status) in &refusals {
        let (_, head) = upgrade(ws, path, extra);
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{path} {extra}: {head}");
    }
    // Frames: text (1003), unmasked (1002), over max_packet_size (1009).
    let hostile: [(Vec<u8>, u16); 3] = [
        (frame(0x1, true, b"text"), 1003),
        (vec![0x82, 0x02, 0x10, 0x00], 1002),
        (frame(0x2, true, &[0u8; 5000]), 1009),
    ];
    for (bytes, want) in hostile {
        let (mut s, head) = upgrade(ws, "/mqtt", &format!("{origin}Sec-WebSocket-Protocol: mqtt\r\n"));
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s.write_all(&bytes).unwrap();
        assert_eq!(close_code(&mut s), want);
    }
    // Every other client kept its traffic.
    let mut sub = Raw::connect(plain, Protocol::V4, "ws-hostile-sub");
    sub.subscribe("calm/#", QoS::AtMostOnce);
    let mut publ = Raw::connect(plain, Protocol::V4, "ws-hostile-pub");
    publ.publish("calm/t", b"fine", QoS::AtMostOnce, 0);
    assert!(matches!(sub.recv(), Some(Packet::Publish(p)) if &p.payload[..] == b"fine"));
    let deadline = Instant::now() + WAIT;
    while node.metrics().total.ws_failures < 4 {
        assert!(Instant::now() < deadline, "refused upgrades not counted: {:?}", node.metrics().total);
        std::thread::sleep(Duration::from_millis(50));
    }
    node.stop();
    node.join().unwrap();
}

#[test]
fn paho_over_tls_ws_and_wss() {
    if !wire::have_paho() {
        return;
    }
    let ca = TestCa::new("RingMQ test CA");
    let server = ca.server("server", "localhost");
    let tls = format!("[listener.tls]\ncert = {:?}\nkey = {:?}\n", server.cert, server.key);
    let node = broker_toml(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n{tls}\n[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n{tls}"
    ));
    let ports: Vec<String> = node.local_addrs().iter().map(|a| a.port().to_string()).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho/transports.py");
    let ca_file = ca.ca();
    let args = [script, ca_file.to_str().unwrap(), &ports[0], &ports[1], &ports[2]];
    let out = wire::run_bounded("python3", &args, None, Duration::from_secs(120));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "paho over TLS and WebSocket:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("6 passed, 0 failed"), "{text}");
    node.stop();
    node.join().unwrap();
}
