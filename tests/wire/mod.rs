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
