//! loadgen over TLS, WebSocket and WebSocket over TLS, with a user name and password,
//! against an in-process RingMQ with such listeners (issue 13): every message arrives,
//! `conn` over TLS says each connection was a handshake, and a wrong password or an
//! unverifiable certificate is a clear error.

mod support;

use std::process::Output;

use support::text;

/// A CA and a server certificate for localhost, as PEM files in `dir`.
fn certs(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "loadgen test CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = p.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, server.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn node(text: &str) -> ringmq::Node {
    use clap::Parser;
    let file = ringmq::config::parse_file(text, "t.toml").unwrap();
    let mut s = ringmq::config::settings_from(&file, "t.toml", &ringmq::config::Cli::parse_from(["ringmq"])).unwrap();
    s.engine.shards = 2;
    s.engine.pin = false;
    ringmq::Node::start(s.engine).unwrap()
}

fn clean(out: &Output, j: &serde_json::Value) {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    assert!(j["sent"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["lost"], 0, "{j}");
    assert_eq!(j["unique"], j["expected"], "{j}");
}

#[test]
fn fan_in_over_tls_ws_and_wss_with_credentials_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certs(dir.path());
    // A password file made by mosquitto_passwd (mosquitto; .ci/run installs it).
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "").unwrap();
    let made = support::have("mosquitto_passwd")
        && support::output_within(std::process::Command::new("mosquitto_passwd").args([
            "-b",
            passwd.to_str().unwrap(),
            "bench",
            "secret",
        ]))
        .status
        .success();
    assert!(made || std::env::var_os("CI").is_none(), "CI must have mosquitto_passwd");
    let auth = if made { format!("password_file = {passwd:?}\n") } else { String::new() };
    let tls = format!("[listener.tls]\ncert = {cert:?}\nkey = {key:?}\n");
    let node = node(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n{tls}\n[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n{auth}{tls}"
    ));
    let a = node.local_addrs().to_vec();
    let ca = ca.to_str().unwrap();
    let common = ["fan-in", "--qos", "1", "--rate", "2000", "--duration", "1s", "--warmup", "300ms", "--threads", "2"];
    let cases: [(std::net::SocketAddr, Vec<&str>); 3] = [
        (a[0], vec!["--tls", "--ca", ca, "--server-name", "localhost"]),
        (a[1], vec!["--ws"]),
        (a[2], vec!["--wss", "--ca", ca, "--server-name", "localhost", "-u", "bench", "-P", "secret"]),
    ];
    for (addr, extra) in cases {
        let (out, j) = support::run(addr, &[&common[..], &extra].concat());
        clean(&out, &j);
        let transport = if extra.contains(&"--tls") {
            "tls"
        } else if extra.contains(&"--ws") {
            "ws"
        } else {
            "wss"
        };
        assert!(text(&out).contains(&format!("{transport}://{addr}")), "{}", text(&out));
    }
    // conn over TLS: every connection a handshake.
    let (out, _) = support::run(
        a[0],
        &[
            "conn",
            "--subscribers",
            "50",
            "--tls",
            "--ca",
            ca,
            "--server-name",
            "localhost",
            "--duration",
            "300ms",
            "--warmup",
            "0s",
        ],
    );
    assert!(
        text(&out).contains("connected 50 of 50") && text(&out).contains("each with a TLS handshake"),
        "{}",
        text(&out)
    );
    if made {
        let (out, _) = support::run(
            a[2],
            &[
                "fan-in",
                "--wss",
                "--ca",
                ca,
                "--server-name",
                "localhost",
                "-u",
                "bench",
                "-P",
                "wrong",
                "--rate",
                "100",
                "--duration",
                "200ms",
            ],
        );
        assert_ne!(out.status.code(), Some(0));
        assert!(text(&out).contains("bad user name or password"), "{}", text(&out));
    }
    // Clear errors: a certificate no CA given vouches for, and a name it does not carry.
    let (out, _) = support::run(
        a[0],
        &[
            "fan-in",
            "--tls",
            "--insecure",
            "--server-name",
            "localhost",
            "--rate",
            "100",
            "--duration",
            "200ms",
            "--warmup",
            "0s",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "--insecure accepts any certificate: {}", text(&out));
    let (out, _) = support::run(
        a[0],
        &["fan-in", "--tls", "--ca", ca, "--server-name", "elsewhere", "--rate", "100", "--duration", "200ms"],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out).contains("TLS handshake"), "{}", text(&out));
    node.stop();
    node.join().unwrap();
}
