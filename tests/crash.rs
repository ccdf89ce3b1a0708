//! `kill -9` at random moments: every QoS 1 message the broker acknowledged reaches the
//! persistent subscriber after a restart on the same data directory.
//!
//! The broker runs as a child process (`segment` storage, `fsync = always`). A publisher
//! (raw packets on our codec, so every PUBACK maps to exactly one sequence number) sends
//! numbered QoS 1 messages over several topics while the broker is killed, round after
//! round. The subscriber (rumqttc, persistent session) subscribes first and then stays
//! offline throughout, so every message it gets at the end comes back from the logs
//! through its session's cursors, across five restarts.

mod wire;

use std::collections::{BTreeSet, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use proto::{Packet, Protocol, QoS};

const ROUNDS: usize = 5;
/// Most messages published per round (the loop is also bounded in time).
const MAX_PER_ROUND: u64 = 20_000;
const TOPICS: u64 = 4;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The broker process; killed when dropped, so a failing test leaves nothing behind.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, port: u16) -> Broker {
    let config = dir.join("crash.toml");
    // Default flow control: no cap on what a session keeps parked in the logs.
    std::fs::write(&config, "[limits]\nmax_inflight = 1000\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .args(["--storage", "segment", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--fsync", "always", "--shards", "2", "--no-pin", "--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ringmq starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("broker exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "broker did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Broker(child)
}

/// A minimal pseudo-random source (no dependency): xorshift seeded from the clock.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Publishes numbered QoS 1 messages until the connection dies or the round's budget is
/// spent; returns the sequence numbers the broker acknowledged.
fn publish_until_dead(addr: SocketAddr, next_seq: &mut u64, budget: u64) -> Vec<u64> {
    // The broker may already be dead: then nothing was acknowledged this round.
    let Ok(mut c) = wire::Raw::try_open(addr, Protocol::V4) else { return Vec::new() };
    c.send(&wire::connect_packet(Protocol::V4, "crash-pub", true));
    match c.recv() {
        Some(Packet::ConnAck(a)) if a.code == 0 => {}
        // Killed before it answered: nothing was acknowledged this round.
        None => return Vec::new(),
        other => panic!("publisher: CONNACK refused: {other:?}"),
    }
    c.stream.set_nonblocking(true).unwrap();
    let mut inflight: HashMap<u16, u64> = HashMap::new();
    let mut acked = Vec::new();
    let mut buf = BytesMut::new();
    let mut pkid: u16 = 0;
    let end = *next_seq + budget;
    let deadline = Instant::now() + Duration::from_secs(10);
    'outer: while Instant::now() < deadline {
        // Keep at most 500 unacknowledged.
        while inflight.len() < 500 && *next_seq < end {
            pkid = pkid.checked_add(1).unwrap_or(1);
            let seq = *next_seq;
            let topic = format!("crash/{}", seq % TOPICS);
            let p = Packet::Publish(proto::Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: bytes::Bytes::from(topic),
                pkid,
                properties: Default::default(),
                payload: bytes::Bytes::copy_from_slice(&seq.to_be_bytes()),
            });
            let mut out = BytesMut::new();
            p.write(Protocol::V4, &mut out).unwrap();
            let mut written = 0;
            while written < out.len() {
                match c.stream.write(&out[written..]) {
                    Ok(0) => break 'outer,
                    Ok(n) => written += n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    Err(_) => break 'outer,
                }
            }
            inflight.insert(pkid, seq);
            *next_seq += 1;
        }
        let mut chunk = [0u8; 8192];
        match c.stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                if *next_seq >= end && inflight.is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(_) => break,
        }
        while let Ok(p) = proto::read(&mut buf, Protocol::V4, usize::MAX) {
            match p {
                Packet::PubAck(a) => {
                    let seq = inflight.remove(&a.pkid).unwrap_or_else(|| panic!("PUBACK for unknown id {}", a.pkid));
                    acked.push(seq);
                }
                other => panic!("publisher got {other:?}"),
            }
        }
    }
    acked
}

async fn subscriber(addr: SocketAddr, id: &str, manual: bool) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_clean_session(false);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_manual_acks(manual);
    o.set_inflight(100);
    rumqttc::AsyncClient::new(o, 1000)
}

/// Reads until no message came for `quiet`; the sequence numbers received. A dropped
/// connection is resumed (the session is persistent), a bounded number of times.
async fn drain(el: &mut rumqttc::EventLoop, quiet: Duration, max: usize) -> Vec<u64> {
    let mut got = Vec::new();
    let mut errors = 0;
    for _ in 0..max {
        match tokio::time::timeout(quiet, el.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                got.push(u64::from_be_bytes(p.payload[..8].try_into().unwrap()));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                errors += 1;
                eprintln!("subscriber connection error {errors}: {e}");
                if errors > 10 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = Rng(seed | 1);
    eprintln!("crash test seed {seed}");

    // The offline subscriber: subscribe once, then stay away until the end.
    let mut broker = start(dir.path(), port);
    {
        let (client, mut el) = subscriber(addr, "crash-offline", false).await;
        client.subscribe("crash/#", rumqttc::QoS::AtLeastOnce).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), el.poll()).await {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)))) => break,
                Ok(Ok(_)) => {}
                other => panic!("offline subscriber: no SUBACK: {other:?}"),
            }
        }
    }

    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut seq = 0u64;
    for round in 0..ROUNDS {
        if round > 0 {
            broker = start(dir.path(), port);
        }
        let kill_after = Duration::from_millis(100 + rng.next() % 400);
        let pid = broker.0.id();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(kill_after);
            // SAFETY: kill(2) on our own child's pid (not yet reaped: we wait below).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        });
        let mut s = seq;
        let got = tokio::task::spawn_blocking(move || {
            let got = publish_until_dead(addr, &mut s, MAX_PER_ROUND);
            (got, s)
        })
        .await
        .unwrap();
        seq = got.1;
        acked.extend(got.0);
        killer.join().unwrap();
        let status = broker.0.wait().unwrap();
        assert!(!status.success(), "round {round}: the broker was killed, not stopped: {status:?}");
    }
    assert!(acked.len() > 100, "the rounds acknowledged only {} messages", acked.len());
    eprintln!("{} messages published, {} acknowledged over {ROUNDS} rounds", seq, acked.len());

    let _broker = start(dir.path(), port);
    let (_client, mut el) = subscriber(addr, "crash-offline", false).await;
    let got: BTreeSet<u64> = drain(&mut el, Duration::from_secs(5), 10_000_000).await.into_iter().collect();
    let missing: Vec<u64> = acked.difference(&got).copied().take(20).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages missing after {ROUNDS} kill -9 rounds (received {}, highest {:?}), e.g. \
         {missing:?}",
        acked.difference(&got).count(),
        acked.len(),
        got.len(),
        got.last(),
    );
}
