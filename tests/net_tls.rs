//! TLS listeners with real clients (issue 13): mosquitto_pub/mosquitto_sub with a CA,
//! mTLS with client certificates (the CN as the user name, judged by an ACL; expired and
//! foreign certificates refused), `openssl s_client` for TLS 1.2/1.3, `min_version` and
//! ALPN `mqtt`, and hostile inputs (a handshake that stops, garbage instead of a
//! ClientHello) refused and counted while other clients keep their traffic.

mod support;
mod wire;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use proto::{Packet, Protocol, QoS};
use support::certs::{Pem, TestCa};
use wire::{broker_toml, run_bounded, Raw};

const LIMIT: Duration = Duration::from_secs(30);

fn tls_table(server: &Pem, extra: &str) -> String {
    format!("[listener.tls]\ncert = {:?}\nkey = {:?}\n{extra}", server.cert, server.key)
}

fn wait_metrics(node: &ringmq::Node, what: &str, f: impl Fn(&ringmq::ShardMetrics) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f(&node.metrics().total) {
        assert!(Instant::now() < deadline, "metrics never showed {what}: {:?}", node.metrics().total);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a Mosquitto client over TLS to `port` (with the CA, and a client certificate if
/// given) with `rest` after the connection arguments.
fn mosq_tls(tool: &str, port: u16, ca: &TestCa, client: Option<&Pem>, rest: &[&str]) -> std::process::Output {
    let mut args = vec!["-h".to_string(), "localhost".into(), "-p".into(), port.to_string(), "--cafile".into()];
    args.push(ca.ca().display().to_string());
    if let Some(c) = client {
        args.extend(["--cert".into(), c.cert.display().to_string(), "--key".into(), c.key.display().to_string()]);
    }
    args.extend(rest.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_bounded(tool, &args, None, LIMIT)
}

/// mosquitto_pub over TLS, 5.0, QoS 1, retained; its output.
fn mosq_pub(port: u16, ca: &TestCa, client: Option<&Pem>, topic: &str, message: &str) -> std::process::Output {
    mosq_tls("mosquitto_pub", port, ca, client, &["-V", "5", "-q", "1", "-r", "-t", topic, "-m", message])
}

/// mosquitto_sub over TLS for one (retained) message; what it printed.
fn mosq_sub_one(port: u16, ca: &TestCa, client: Option<&Pem>, filter: &str) -> String {
    let out = mosq_tls("mosquitto_sub", port, ca, client, &["-C", "1", "-W", "20", "-v", "-t", filter]);
    assert!(out.status.success(), "mosquitto_sub {filter}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

#[test]
fn mosquitto_clients_over_tls_and_mtls_with_the_certificate_as_user_name() {
    let ca = TestCa::new("RingMQ test CA");
    let server = ca.server("server", "localhost");
    let device = ca.client("device-7", "device-7");
    let expired = ca.expired_client("expired", "device-7");
    let foreign_ca = TestCa::new("Someone else");
    let foreign = foreign_ca.client("foreign", "device-7");
    let acl = ca.dir.path().join("acl");
    std::fs::write(&acl, "user device-7\ntopic readwrite devices/device-7/#\n").unwrap();
    let mtls = format!("ca = {:?}\nrequire_client_cert = true\n", ca.ca());
    let node = broker_toml(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n{}\n[[listener]]\nbind = \"127.0.0.1:0\"\nuse_identity_as_username = true\nacl_file = {acl:?}\n{}",
        tls_table(&server, ""),
        tls_table(&server, &mtls)
    ));
    let (tls, mutual) = (node.local_addrs()[0].port(), node.local_addrs()[1].port());

    // Server authentication only.
    let out = mosq_pub(tls, &ca, None, "tls/hello", "over tls");
    assert!(out.status.success(), "mosquitto_pub --cafile: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mosq_sub_one(tls, &ca, None, "tls/#"), "tls/hello over tls");

    // mTLS: no certificate, an expired one and a foreign CA's are refused.
    for (what, cert) in [("no certificate", None), ("expired", Some(&expired)), ("foreign CA", Some(&foreign))] {
        let out = mosq_pub(mutual, &ca, cert, "devices/device-7/t", "x");
        let said = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(!out.status.success() || said.contains("error"), "{what} got in: {said}");
    }
    wait_metrics(&node, "three TLS failures", |m| m.tls_failures >= 3);
    // The CN is the user name the ACL judges: its own topics yes, another's no.
    let out = mosq_pub(mutual, &ca, Some(&device), "devices/device-7/t", "from the device");
    assert!(out.status.success(), "device-7: {}", String::from_utf8_lossy(&out.stderr));
    let out = mosq_pub(mutual, &ca, Some(&device), "devices/device-8/t", "not mine");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Not authorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mosq_sub_one(mutual, &ca, Some(&device), "devices/device-7/#"), "devices/device-7/t from the device");
    node.stop();
    node.join().unwrap();
}

/// What `openssl s_client` negotiated with `port` when limited to `version`.
fn s_client(port: u16, ca: &TestCa, version: &str) -> String {
    let connect = format!("127.0.0.1:{port}");
    let ca = ca.ca();
    let args = ["s_client", "-connect", &connect, "-CAfile", ca.to_str().unwrap(), "-alpn", "mqtt", version];
    let out = run_bounded("openssl", &args, Some(""), LIMIT);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn openssl_negotiates_tls_1_2_and_1_3_with_alpn_mqtt_and_min_version_holds() {
    let ca = TestCa::new("RingMQ test CA");
    let server = ca.server("server", "localhost");
    let node = broker_toml(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n{}\n[[listener]]\nbind = \"127.0.0.1:0\"\n{}",
        tls_table(&server, ""),
        tls_table(&server, "min_version = \"1.3\"\n")
    ));
    let (any, only13) = (node.local_addrs()[0].port(), node.local_addrs()[1].port());
    let v12 = s_client(any, &ca, "-tls1_2");
    assert!(
        v12.contains("TLSv1.2") && v12.contains("ALPN protocol: mqtt") && v12.contains("Verify return code: 0"),
        "{v12}"
    );
    let v13 = s_client(any, &ca, "-tls1_3");
    assert!(v13.contains("TLSv1.3") && v13.contains("ALPN protocol: mqtt"), "{v13}");
    let refused = s_client(only13, &ca, "-tls1_2");
    assert!(!refused.contains("ALPN protocol: mqtt"), "TLS 1.2 accepted under min_version 1.3: {refused}");
    assert!(s_client(only13, &ca, "-tls1_3").contains("TLSv1.3"));
    node.stop();
    node.join().unwrap();
}

/// Reads until the broker closes the connection; what it sent (bounded by `limit`).
fn until_closed(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.checked_duration_since(Instant::now()).expect("the broker kept the connection open");
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("connection still open after {limit:?}")
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Reset: closed as well.
            Err(_) => return got,
        }
    }
}

#[test]
fn a_stalled_handshake_and_garbage_are_refused_and_counted_while_others_keep_their_traffic() {
    let ca = TestCa::new("RingMQ test CA");
    let server = ca.server("server", "localhost");
    let node = broker_toml(&format!(
        "[limits]\nconnect_timeout_ms = 1000\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n{}\n[[listener]]\nbind = \"127.0.0.1:0\"\n",
        tls_table(&server, "")
    ));
    let (tls, plain): (SocketAddr, SocketAddr) = (node.local_addrs()[0], node.local_addrs()[1]);
    // The start of a ClientHello, and nothing more.
    let mut stalled = TcpStream::connect(tls).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00]).unwrap();
    // HTTP where a ClientHello belongs.
    let mut garbage = TcpStream::connect(tls).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // Meanwhile a plain client's messages flow, and a TLS client gets in.
    let mut sub = Raw::connect(plain, Protocol::V4, "tls-steady-sub");
    sub.subscribe("steady/#", QoS::AtMostOnce);
    let mut publ = Raw::connect(plain, Protocol::V4, "tls-steady-pub");
    for i in 0..20u32 {
        publ.publish("steady/t", &i.to_be_bytes(), QoS::AtMostOnce, 0);
        assert!(matches!(sub.recv(), Some(Packet::Publish(p)) if p.payload[..] == i.to_be_bytes()), "message {i}");
    }
    let out = mosq_pub(tls.port(), &ca, None, "steady/tls", "still served");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(matches!(sub.recv(), Some(Packet::Publish(p)) if &p.payload[..] == b"still served"));
    // The garbage gets a TLS alert (or nothing) and the end; the stalled one ends by the
    // connect timeout.
    let answer = until_closed(&mut garbage, Duration::from_secs(30));
    assert!(answer.is_empty() || answer[0] == 0x15, "not an alert: {answer:?}");
    assert!(until_closed(&mut stalled, Duration::from_secs(30)).is_empty());
    wait_metrics(&node, "both failures counted", |m| m.tls_failures >= 2);
    node.stop();
    node.join().unwrap();
}

/// rumqttc (its rustls feature) over TLS with the test CA and ALPN `mqtt`, 3.1.1 and 5.0:
/// a QoS 1 message round trip each, and mTLS with a client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_over_tls_and_mtls_in_3_1_1_and_5_0() {
    let ca = TestCa::new("RingMQ test CA");
    let server = ca.server("server", "localhost");
    let device = ca.client("rq-device", "rq-device");
    let mtls = format!("ca = {:?}\nrequire_client_cert = true\n", ca.ca());
    let node = broker_toml(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n{}\n[[listener]]\nbind = \"127.0.0.1:0\"\n{}",
        tls_table(&server, ""),
        tls_table(&server, &mtls)
    ));
    let (tls, mutual) = (node.local_addrs()[0].port(), node.local_addrs()[1].port());
    let ca_pem = std::fs::read(ca.ca()).unwrap();
    let cert = (std::fs::read(&device.cert).unwrap(), std::fs::read(&device.key).unwrap());
    let alpn = Some(vec![b"mqtt".to_vec()]);
    let wait = Duration::from_secs(30);
    for (port, auth) in [(tls, None), (mutual, Some(cert))] {
        // 3.1.1
        let mut o = rumqttc::MqttOptions::new(format!("rq4-{port}"), "localhost", port);
        o.set_transport(rumqttc::Transport::tls(ca_pem.clone(), auth.clone(), alpn.clone()));
        let (c, mut el) = rumqttc::AsyncClient::new(o, 10);
        c.subscribe("rq/4", rumqttc::QoS::AtLeastOnce).await.unwrap();
        c.publish("rq/4", rumqttc::QoS::AtLeastOnce, false, "over tls 3.1.1").await.unwrap();
        let got = tokio::time::timeout(wait, async {
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => return p.payload,
                    Ok(_) => {}
                    Err(e) => panic!("rumqttc 3.1.1 over TLS on {port}: {e}"),
                }
            }
        })
        .await
        .expect("the message within 30 s");
        assert_eq!(&got[..], b"over tls 3.1.1");
        // 5.0
        let mut o = rumqttc::v5::MqttOptions::new(format!("rq5-{port}"), "localhost", port);
        o.set_transport(rumqttc::Transport::tls(ca_pem.clone(), auth.clone(), alpn.clone()));
        let (c, mut el) = rumqttc::v5::AsyncClient::new(o, 10);
        c.subscribe("rq/5", rumqttc::v5::mqttbytes::QoS::AtLeastOnce).await.unwrap();
        c.publish("rq/5", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, "over tls 5.0").await.unwrap();
        let got = tokio::time::timeout(wait, async {
            loop {
                match el.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::Publish(p))) => {
                        return p.payload
                    }
                    Ok(_) => {}
                    Err(e) => panic!("rumqttc 5.0 over TLS on {port}: {e}"),
                }
            }
        })
        .await
        .expect("the message within 30 s");
        assert_eq!(&got[..], b"over tls 5.0");
    }
    node.stop();
    node.join().unwrap();
}
