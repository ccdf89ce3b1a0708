//! Raw-socket MQTT test client: `send` bytes or packets, `expect` what comes back.
//! Packets are built and parsed with our `proto` codec; malformed input is written as bytes.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use proto::{Connect, Packet, Props, Protocol, Publish, QoS, Subscribe, SubscribeFilter};

/// How long any single expectation waits.
pub const WAIT: Duration = Duration::from_secs(5);

/// Starts an in-process broker with 2 shards on an ephemeral loopback port.
pub fn broker(tweak: impl FnOnce(&mut ringmq::EngineConfig)) -> ringmq::Node {
    let _ = tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).with_test_writer().try_init();
    let mut cfg = ringmq::EngineConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        shards: 2,
        pin: false,
        ..Default::default()
    };
    tweak(&mut cfg);
    ringmq::Node::start(cfg).expect("broker starts")
}

/// Starts an in-process broker from the text of a config file (2 unpinned shards), as
/// the binary reads it: `[[listener]]` tables with their TLS, password and ACL files.
pub fn broker_toml(text: &str) -> ringmq::Node {
    use clap::Parser;
    let _ = tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).with_test_writer().try_init();
    let file = ringmq::config::parse_file(text, "test.toml").expect("config parses");
    let cli = ringmq::config::Cli::parse_from(["ringmq"]);
    let mut settings = ringmq::config::settings_from(&file, "test.toml", &cli).expect("config is valid");
    settings.engine.shards = 2;
    settings.engine.pin = false;
    ringmq::Node::start(settings.engine).expect("broker starts")
}

/// True when python3 with paho-mqtt is here; outside CI a test may skip without it (with
/// a notice), in CI it must be (`.ci/run` installs it).
pub fn have_paho() -> bool {
    let have = std::process::Command::new("python3")
        .args(["-c", "import paho.mqtt.client"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have {
        assert!(std::env::var_os("CI").is_none(), "CI must have python3 with paho-mqtt (see .ci/run)");
        eprintln!("skipped: python3 with paho-mqtt not installed (pip install paho-mqtt)");
    }
    have
}

/// A raw client.
pub struct Raw {
    pub stream: TcpStream,
    pub protocol: Protocol,
    buf: BytesMut,
}

impl Raw {
    /// A TCP connection, nothing sent yet.
    pub fn open(addr: SocketAddr, protocol: Protocol) -> Raw {
        Raw::try_open(addr, protocol).expect("connect")
    }

    /// A TCP connection, or the error connecting.
    pub fn try_open(addr: SocketAddr, protocol: Protocol) -> std::io::Result<Raw> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Raw { stream, protocol, buf: BytesMut::new() })
    }

    /// Connects and expects a successful CONNACK.
    pub fn connect(addr: SocketAddr, protocol: Protocol, client_id: &str) -> Raw {
        let mut c = Raw::open(addr, protocol);
        c.send(&connect_packet(protocol, client_id, true));
        match c.recv() {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, 0, "CONNACK refused: {a:?}"),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        c
    }

    pub fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        p.write(self.protocol, &mut out).expect("encodable");
        self.send_bytes(&out);
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        let _ = self.stream.write_all(b);
    }

    /// The next packet, or None when the broker closed the connection (or WAIT passed).
    pub fn recv(&mut self) -> Option<Packet> {
        self.recv_within(WAIT)
    }

    pub fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = Instant::now() + wait;
        loop {
            match proto::read(&mut self.buf, self.protocol, usize::MAX) {
                Ok(p) => return Some(p),
                Err(proto::Error::Incomplete(_)) => {}
                Err(e) => panic!("broker sent something undecodable: {e}"),
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
    }

    /// Reads until the broker closes the connection; returns what it sent before closing.
    /// Panics if the connection is still open after WAIT.
    pub fn expect_closed(&mut self) -> Vec<Packet> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            match proto::read(&mut self.buf, self.protocol, usize::MAX) {
                Ok(p) => {
                    seen.push(p);
                    continue;
                }
                Err(proto::Error::Incomplete(_)) => {}
                Err(e) => panic!("broker sent something undecodable: {e}"),
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("connection still open after {WAIT:?}; saw {seen:?}"));
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return seen,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("connection still open after {WAIT:?}; saw {seen:?}")
                }
                // Signals reach test threads (the in-process broker's runtime uses them).
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return seen,
            }
        }
    }

    pub fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.send(&Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![SubscribeFilter {
                filter: filter.into(),
                qos,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            }],
            properties: Props::default(),
        }));
        match self.recv() {
            Some(Packet::SubAck(a)) => assert!(a.codes[0] < 0x80, "SUBACK refused: {a:?}"),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, pkid: u16) {
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: bytes::Bytes::copy_from_slice(topic.as_bytes()),
            pkid,
            properties: Props::default(),
            payload: bytes::Bytes::copy_from_slice(payload),
        }));
    }
}

/// A CONNECT with a user name and password.
pub fn login_packet(protocol: Protocol, client_id: &str, user: Option<&str>, password: Option<&str>) -> Packet {
    let mut p = connect_packet(protocol, client_id, true);
    if let Packet::Connect(c) = &mut p {
        c.username = user.map(Into::into);
        c.password = password.map(|s| bytes::Bytes::copy_from_slice(s.as_bytes()));
    }
    p
}

/// Connects with a user name and password; the CONNACK's code.
pub fn login(
    addr: SocketAddr,
    protocol: Protocol,
    client_id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> (Raw, u8) {
    let mut c = Raw::open(addr, protocol);
    c.send(&login_packet(protocol, client_id, user, password));
    match c.recv() {
        Some(Packet::ConnAck(a)) => (c, a.code),
        other => panic!("{client_id}: expected CONNACK, got {other:?}"),
    }
}

/// Runs a command-line client with a bound: killed (and the test failed) past `limit`.
pub fn run_bounded(tool: &str, args: &[&str], stdin: Option<&str>, limit: Duration) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} ({e}): .ci/run installs it"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("{tool} {args:?} still running after {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn connect_packet(protocol: Protocol, client_id: &str, clean: bool) -> Packet {
    Packet::Connect(Connect {
        protocol,
        clean_start: clean,
        keep_alive: 60,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: Props::default(),
        mqtt31: false,
    })
}
