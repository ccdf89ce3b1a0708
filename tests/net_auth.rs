//! MQTT 5.0 enhanced authentication (AUTH): an unknown method is refused with 0x8C, and a
//! method plugged in through `EngineConfig::auth_methods` runs its challenge-response
//! exchange before CONNACK. The method here is a trivial one written for the test: the
//! broker sends a nonce, the client must answer it reversed.

#[path = "wire/mod.rs"]
mod wire;

use std::sync::Arc;

use proto::{Auth, Connect, Packet, Properties, Protocol, QoS};
use ringmq::{AuthMethod, AuthStep};

#[derive(Debug)]
struct Reverse;

impl AuthMethod for Reverse {
    fn name(&self) -> &str {
        "x-reverse"
    }

    fn start(&self, client_id: &str, data: Option<&[u8]>) -> (AuthStep, Vec<u8>) {
        if data != Some(b"hello".as_slice()) {
            return (AuthStep::Fail(0x87), Vec::new());
        }
        let nonce = format!("nonce-{client_id}").into_bytes();
        (AuthStep::Continue(nonce.clone()), nonce)
    }

    fn step(&self, state: &mut Vec<u8>, data: Option<&[u8]>) -> AuthStep {
        let mut want = state.clone();
        want.reverse();
        if data == Some(want.as_slice()) {
            AuthStep::Success(Some(b"welcome".to_vec()))
        } else {
            AuthStep::Fail(0x87)
        }
    }
}

fn broker() -> ringmq::Node {
    wire::broker(|c| c.auth_methods = vec![Arc::new(Reverse)])
}

fn connect_with_method(id: &str, method: &str, data: &[u8]) -> Packet {
    let props = Properties {
        authentication_method: Some(method.into()),
        authentication_data: Some(bytes::Bytes::copy_from_slice(data)),
        ..Default::default()
    };
    Packet::Connect(Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
        properties: props.into(),
        mqtt31: false,
    })
}

fn answer(method: &str, data: &[u8]) -> Packet {
    let props = Properties {
        authentication_method: Some(method.into()),
        authentication_data: Some(bytes::Bytes::copy_from_slice(data)),
        ..Default::default()
    };
    Packet::Auth(Auth { reason: 0x18, properties: props.into() })
}

/// Reads the challenge; returns its data.
fn challenge(c: &mut wire::Raw) -> Vec<u8> {
    match c.recv() {
        Some(Packet::Auth(a)) => {
            assert_eq!(a.reason, 0x18, "continue authentication");
            assert_eq!(a.properties.authentication_method.as_deref(), Some("x-reverse"));
            a.properties.authentication_data.as_deref().expect("challenge data").to_vec()
        }
        other => panic!("expected AUTH, got {other:?}"),
    }
}

#[test]
fn unknown_method_is_refused_with_0x8c() {
    let node = broker();
    let mut c = wire::Raw::open(node.local_addrs()[0], Protocol::V5);
    c.send(&connect_with_method("auth-unknown", "SCRAM-SHA-1", b"x"));
    match c.recv() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, 0x8C),
        other => panic!("expected CONNACK 0x8C, got {other:?}"),
    }
    node.stop();
    node.join().unwrap();
}

#[test]
fn challenge_response_succeeds_and_the_client_works() {
    let node = broker();
    let addr = node.local_addrs()[0];
    let mut c = wire::Raw::open(addr, Protocol::V5);
    c.send(&connect_with_method("auth-ok", "x-reverse", b"hello"));
    let mut nonce = challenge(&mut c);
    assert_eq!(nonce, b"nonce-auth-ok");
    nonce.reverse();
    c.send(&answer("x-reverse", &nonce));
    match c.recv() {
        Some(Packet::ConnAck(a)) => {
            assert_eq!(a.code, 0);
            assert_eq!(a.properties.authentication_method.as_deref(), Some("x-reverse"));
            assert_eq!(a.properties.authentication_data.as_deref(), Some(b"welcome".as_slice()));
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // Authenticated: an ordinary session.
    c.subscribe("auth/t", QoS::AtLeastOnce);
    c.publish("auth/t", b"hi", QoS::AtMostOnce, 0);
    match c.recv() {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"hi"),
        other => panic!("expected the PUBLISH, got {other:?}"),
    }
    node.stop();
    node.join().unwrap();
}

#[test]
fn wrong_answer_or_missing_data_is_not_authorized() {
    let node = broker();
    let addr = node.local_addrs()[0];
    let mut c = wire::Raw::open(addr, Protocol::V5);
    c.send(&connect_with_method("auth-bad", "x-reverse", b"hello"));
    challenge(&mut c);
    c.send(&answer("x-reverse", b"not it"));
    match c.recv() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, 0x87),
        other => panic!("expected CONNACK 0x87, got {other:?}"),
    }
    let mut c = wire::Raw::open(addr, Protocol::V5);
    c.send(&connect_with_method("auth-nodata", "x-reverse", b"bye"));
    match c.recv() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, 0x87),
        other => panic!("expected CONNACK 0x87, got {other:?}"),
    }
    node.stop();
    node.join().unwrap();
}

/// Connects through the challenge-response exchange; the authenticated connection.
fn authenticated(addr: std::net::SocketAddr, id: &str) -> wire::Raw {
    let mut c = wire::Raw::open(addr, Protocol::V5);
    c.send(&connect_with_method(id, "x-reverse", b"hello"));
    let mut nonce = challenge(&mut c);
    nonce.reverse();
    c.send(&answer("x-reverse", &nonce));
    assert!(matches!(c.recv(), Some(Packet::ConnAck(a)) if a.code == 0));
    c
}

fn reauth(method: &str, data: &[u8]) -> Packet {
    let Packet::Auth(mut a) = answer(method, data) else { unreachable!() };
    a.reason = 0x19;
    Packet::Auth(a)
}

fn disconnect_reason(c: &mut wire::Raw) -> u8 {
    let seen = c.expect_closed();
    seen.iter()
        .find_map(|p| match p {
            Packet::Disconnect(d) => Some(d.reason),
            _ => None,
        })
        .unwrap_or_else(|| panic!("DISCONNECT expected, saw {seen:?}"))
}

#[test]
fn reauthentication_runs_the_method_again_while_the_session_goes_on() {
    let node = broker();
    let addr = node.local_addrs()[0];
    let mut c = authenticated(addr, "reauth-ok");
    c.subscribe("reauth/t", QoS::AtLeastOnce);
    c.send(&reauth("x-reverse", b"hello"));
    let mut nonce = challenge(&mut c);
    assert_eq!(nonce, b"nonce-reauth-ok");
    // Traffic goes on in the middle of the exchange.
    c.publish("reauth/t", b"during", QoS::AtMostOnce, 0);
    match c.recv() {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"during"),
        other => panic!("expected the PUBLISH, got {other:?}"),
    }
    nonce.reverse();
    c.send(&answer("x-reverse", &nonce));
    match c.recv() {
        Some(Packet::Auth(a)) => {
            assert_eq!(a.reason, 0x00, "re-authenticated");
            assert_eq!(a.properties.authentication_data.as_deref(), Some(b"welcome".as_slice()));
        }
        other => panic!("expected AUTH success, got {other:?}"),
    }
    // And again, failing this time: DISCONNECT with the method's reason code.
    c.send(&reauth("x-reverse", b"hello"));
    challenge(&mut c);
    c.send(&answer("x-reverse", b"wrong"));
    assert_eq!(disconnect_reason(&mut c), 0x87);
    node.stop();
    node.join().unwrap();
}

#[test]
fn reauthentication_without_the_connect_method_is_a_protocol_error() {
    let node = broker();
    let addr = node.local_addrs()[0];
    // No method at CONNECT: any AUTH is out of place.
    let mut plain = wire::Raw::connect(addr, Protocol::V5, "reauth-none");
    plain.send(&reauth("x-reverse", b"hello"));
    assert_eq!(disconnect_reason(&mut plain), 0x82);
    // Another method than the CONNECT's.
    let mut c = authenticated(addr, "reauth-other");
    c.send(&reauth("SCRAM-SHA-1", b"hello"));
    assert_eq!(disconnect_reason(&mut c), 0x82);
    // Continue without a re-authentication started.
    let mut c = authenticated(addr, "reauth-cont");
    c.send(&answer("x-reverse", b"x"));
    assert_eq!(disconnect_reason(&mut c), 0x82);
    node.stop();
    node.join().unwrap();
}
