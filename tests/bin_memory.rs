//! Memory stays bounded when subscribers never read: 100 of them (half QoS 0, half QoS 1)
//! and a storm of publishers that flood QoS 0 and QoS 1 (each as fast as its own window
//! allows) to their topic. The broker runs as its own process so that its peak RSS is
//! measured alone, and it keeps serving others meanwhile.
//!
//! The stated bound (README, Flow control): the broker's RSS at start, plus the outboxes'
//! memory (`max_outbound_total`, 32 MiB here, plus 128 KiB per connection: 12.5 MiB),
//! plus the memory ring of each partition with lagging subscribers (`memory_bytes`, 8 MiB,
//! one partition here), plus per QoS 1 session what waits for it: at most 1024 shared
//! copies (~150 bytes each) and 32 bytes per parked message of the ring (~24 000 here).
//! That is 45 + 8 + 50 x 0.9 = 98 MiB; the test allows 128. Without the outbox bounds
//! the 100 outboxes alone (64 MiB each by default) would pass it many times over.

mod wire;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::{Protocol, QoS};
use wire::Raw;

/// What the broker may grow by over its RSS at start (see the module docs).
const BOUND_MIB: u64 = 128;
/// How long a new client may wait for the broker after the storm.
const BACKLOG_WAIT: Duration = Duration::from_secs(30);
/// How long the publishers flood.
const STORM: Duration = Duration::from_secs(6);

/// The broker process; killed when dropped.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(dir: &std::path::Path, port: u16) -> Broker {
    let config = dir.join("memory.toml");
    std::fs::write(
        &config,
        "[limits]\nmax_outbound_buffer = 1048576\nmax_outbound_total = 33554432\nstuck_timeout_ms = 120000\n\
         [storage]\nmemory_bytes = 8388608\n",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .args(["--shards", "2", "--no-pin", "--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ringmq starts");
    let broker = Broker(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "broker did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    broker
}

/// (VmRSS, VmHWM) of process `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A publisher flooding `topic` at `qos` for [`STORM`]: QoS 0 as fast as the socket takes
/// it, QoS 1 with at most 100 unacknowledged (a real client's window). Returns how many it
/// sent.
async fn storm(addr: SocketAddr, id: String, topic: String, qos: u8) -> u64 {
    let mut o = rumqttc::MqttOptions::new(&id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(60));
    o.set_inflight(100);
    let (client, mut el) = rumqttc::AsyncClient::new(o, 100);
    let q = if qos == 0 { rumqttc::QoS::AtMostOnce } else { rumqttc::QoS::AtLeastOnce };
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = sent.clone();
    let sender = tokio::spawn(async move {
        // Bounded in count as well as by the storm's time.
        for _ in 0..2_000_000 {
            if client.publish(topic.clone(), q, false, vec![b'x'; 200]).await.is_err() {
                break;
            }
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let _ = tokio::time::timeout(STORM, async { while el.poll().await.is_ok() {} }).await;
    sender.abort();
    let _ = sender.await;
    sent.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_subscribers_and_a_publisher_storm_stay_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = start(dir.path(), port);
    let pid = broker.0.id();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let topic = format!("storm/{}", std::process::id());
    // 100 subscribers that never read (nor acknowledge) a thing after their SUBACK.
    let readers: Vec<Raw> = (0..100)
        .map(|i| {
            let mut r = Raw::connect(addr, Protocol::V4, &format!("deaf-{i}"));
            r.subscribe(&topic, if i % 2 == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce });
            r
        })
        .collect();
    let (start_rss, _) = rss_kib(pid);
    let storms: Vec<_> =
        (0..16).map(|i| tokio::spawn(storm(addr, format!("storm-{i}"), topic.clone(), (i % 2) as u8))).collect();
    let mut sent = 0;
    for s in storms {
        sent += s.await.expect("storm task");
    }
    assert!(sent > 10_000, "the storm published only {sent} messages");
    // The broker still serves everyone else. What the storm left in the publishers' socket
    // buffers and the shard channels is fanned out first (a new connection's hand-off
    // queues behind it), so "at once" is seconds in a debug build: bounded at 30 s here.
    let t0 = Instant::now();
    let mut other = Raw::open(addr, Protocol::V5);
    other.send(&wire::connect_packet(Protocol::V5, "healthy", true));
    match other.recv_within(BACKLOG_WAIT) {
        Some(proto::Packet::ConnAck(a)) => assert_eq!(a.code, 0, "CONNACK refused: {a:?}"),
        got => panic!("healthy client: expected CONNACK within {BACKLOG_WAIT:?}, got {got:?}"),
    }
    let connected_after = t0.elapsed();
    other.subscribe("healthy/t", QoS::AtLeastOnce);
    let mut publ = Raw::connect(addr, Protocol::V5, "healthy-pub");
    publ.publish("healthy/t", b"still here", QoS::AtMostOnce, 0);
    match other.recv_within(BACKLOG_WAIT) {
        Some(proto::Packet::Publish(p)) => assert_eq!(&p.payload[..], b"still here"),
        got => panic!("healthy subscriber: expected its message, got {got:?}"),
    }
    eprintln!("a new client was served {connected_after:?} after the storm");
    let (_, peak) = rss_kib(pid);
    let grown_mib = peak.saturating_sub(start_rss) / 1024;
    eprintln!("broker RSS: {} MiB at start, peak {} MiB, {sent} messages published", start_rss / 1024, peak / 1024);
    assert!(grown_mib <= BOUND_MIB, "broker RSS grew by {grown_mib} MiB (bound {BOUND_MIB} MiB)");
    drop(readers);
}
