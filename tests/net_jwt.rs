//! JWTs as passwords (issue 13): HS256 from mosquitto_pub, ES256 signed here with ring,
//! RS256 signed by `openssl`; a bad signature, `alg: none`, an expired or not-yet-valid
//! token and a token for another client id refused (0x86 / 4); the ACL claims honoured;
//! a connection whose token expires disconnected with 0xA0.

mod wire;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use proto::{reason, Packet, Protocol, QoS};
use wire::{broker_toml, login, run_bounded, Raw};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// `header.claims`, ready to sign.
fn signing_input(alg: &str, claims: &str) -> String {
    format!("{}.{}", b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes()), b64(claims.as_bytes()))
}

fn hs256(secret: &str, claims: &str) -> String {
    let input = signing_input("HS256", claims);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!("{input}.{}", b64(ring::hmac::sign(&key, input.as_bytes()).as_ref()))
}

fn puback(c: &mut Raw, topic: &str, pkid: u16) -> u8 {
    c.publish(topic, b"x", QoS::AtLeastOnce, pkid);
    match c.recv() {
        Some(Packet::PubAck(a)) => a.reason,
        other => panic!("PUBACK for {topic}: {other:?}"),
    }
}

#[test]
fn hs256_tokens_from_mosquitto_pub_with_their_acl_claims_and_refusals() {
    let node = broker_toml(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.jwt]\nsecret = \"k3y\"\nclient_id_claim = \"cid\"\n",
    );
    let addr = node.local_addrs()[0];
    let exp = now() + 600;
    let good = hs256(
        "k3y",
        &format!(
            r#"{{"sub":"dev-1","cid":"dev-1","exp":{exp},"publish":["sensors/dev-1/#"],"subscribe":["cmd/dev-1"]}}"#
        ),
    );
    let port = addr.port().to_string();
    let publish = |token: &str, topic: &str| {
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-i",
            "dev-1",
            "-u",
            "ignored",
            "-P",
            token,
            "-V",
            "5",
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            "x",
        ];
        run_bounded("mosquitto_pub", &args, None, Duration::from_secs(30))
    };
    let out = publish(&good, "sensors/dev-1/temp");
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = publish(&good, "sensors/dev-2/temp");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Not authorized"), "the publish claim limits it");

    // Subscribing: the subscribe claim covers cmd/dev-1 only.
    let (mut c, code) = login(addr, Protocol::V5, "dev-1", None, Some(&good));
    assert_eq!(code, 0);
    assert_eq!(puback(&mut c, "sensors/dev-1/x", 1), 0);
    assert_eq!(puback(&mut c, "elsewhere", 2), reason::NOT_AUTHORIZED);
    c.subscribe("cmd/dev-1", QoS::AtLeastOnce);
    let f = proto::SubscribeFilter {
        filter: "cmd/#".into(),
        qos: QoS::AtLeastOnce,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    };
    c.send(&Packet::Subscribe(proto::Subscribe { pkid: 9, filters: vec![f], properties: Default::default() }));
    assert!(
        matches!(c.recv(), Some(Packet::SubAck(a)) if a.codes == [reason::NOT_AUTHORIZED]),
        "cmd/# is wider than the claim"
    );

    let refused = [
        ("another client id", hs256("k3y", &format!(r#"{{"sub":"dev-1","cid":"dev-9","exp":{exp}}}"#))),
        ("bad signature", hs256("wrong", &format!(r#"{{"sub":"dev-1","cid":"dev-1","exp":{exp}}}"#))),
        ("alg none", format!("{}.", signing_input("none", r#"{"sub":"dev-1","cid":"dev-1"}"#))),
        ("expired", hs256("k3y", &format!(r#"{{"sub":"dev-1","cid":"dev-1","exp":{}}}"#, now() - 10))),
        ("not valid yet", hs256("k3y", &format!(r#"{{"sub":"dev-1","cid":"dev-1","nbf":{}}}"#, now() + 600))),
    ];
    for (what, token) in &refused {
        assert_eq!(
            login(addr, Protocol::V5, "dev-1", None, Some(token)).1,
            reason::BAD_USER_NAME_OR_PASSWORD,
            "{what}"
        );
        assert_eq!(
            login(addr, Protocol::V4, "dev-1", Some("u"), Some(token)).1,
            reason::V4_BAD_USER_NAME_OR_PASSWORD,
            "{what}"
        );
    }
    // No token at all: not authorized (JWT listeners are not anonymous).
    assert_eq!(login(addr, Protocol::V5, "dev-1", None, None).1, reason::NOT_AUTHORIZED);
    node.stop();
    node.join().unwrap();
}

#[test]
fn es256_and_rs256_tokens_and_a_token_that_expires_while_connected() {
    let dir = tempfile::tempdir().unwrap();
    // ES256: a P-256 key made with ring, its public key written as SPKI PEM.
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    spki.extend_from_slice(ring::signature::KeyPair::public_key(&pair).as_ref());
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&spki)
    );
    let ec_pub = dir.path().join("ec.pub");
    std::fs::write(&ec_pub, pem).unwrap();
    let es256 = |claims: &str| {
        let input = signing_input("ES256", claims);
        format!("{input}.{}", b64(pair.sign(&rng, input.as_bytes()).unwrap().as_ref()))
    };
    // RS256: a key and a signature made by openssl.
    let rsa_key = dir.path().join("rsa.key");
    let rsa_pub = dir.path().join("rsa.pub");
    let limit = Duration::from_secs(60);
    assert!(run_bounded("openssl", &["genrsa", "-out", rsa_key.to_str().unwrap(), "2048"], None, limit)
        .status
        .success());
    assert!(run_bounded(
        "openssl",
        &["rsa", "-in", rsa_key.to_str().unwrap(), "-pubout", "-out", rsa_pub.to_str().unwrap()],
        None,
        limit
    )
    .status
    .success());
    let rs256 = |claims: &str| {
        let input = signing_input("RS256", claims);
        let file = dir.path().join("input");
        std::fs::write(&file, &input).unwrap();
        let out = run_bounded(
            "openssl",
            &["dgst", "-sha256", "-sign", rsa_key.to_str().unwrap(), file.to_str().unwrap()],
            None,
            limit,
        );
        assert!(out.status.success());
        format!("{input}.{}", b64(&out.stdout))
    };
    let node = broker_toml(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.jwt]\npublic_key = {ec_pub:?}\nusername_claim = \"device\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.jwt]\npublic_key = {rsa_pub:?}\n"
    ));
    let (ec, rsa) = (node.local_addrs()[0], node.local_addrs()[1]);
    let later = now() + 600;
    assert_eq!(login(ec, Protocol::V5, "e1", None, Some(&es256(&format!(r#"{{"device":"d1","exp":{later}}}"#)))).1, 0);
    assert_eq!(
        login(ec, Protocol::V5, "e2", None, Some(&es256(r#"{"sub":"no-device-claim"}"#))).1,
        reason::BAD_USER_NAME_OR_PASSWORD
    );
    let rsa_token = rs256(&format!(r#"{{"sub":"r1","exp":{later}}}"#));
    assert_eq!(login(rsa, Protocol::V5, "r1", None, Some(&rsa_token)).1, 0);
    // A token for one key does not pass the other's listener, nor with its alg swapped.
    assert_eq!(login(ec, Protocol::V5, "x", None, Some(&rsa_token)).1, reason::BAD_USER_NAME_OR_PASSWORD);

    // Expiring in two seconds: the connection is closed with 0xA0 (maximum connect time).
    let soon = rs256(&format!(r#"{{"sub":"brief","exp":{}}}"#, now() + 2));
    let (mut brief, code) = login(rsa, Protocol::V5, "brief", None, Some(&soon));
    assert_eq!(code, 0);
    match brief.recv_within(Duration::from_secs(15)) {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason::MAXIMUM_CONNECT_TIME),
        other => panic!("expected DISCONNECT 0xA0 when the token expired, got {other:?}"),
    }
    node.stop();
    node.join().unwrap();
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
}
