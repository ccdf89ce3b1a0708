//! Hostile clients: 1000 connections that never send CONNECT, send garbage, announce
//! oversized packets, stop half way through a CONNECT or a PUBLISH, while 50 healthy
//! clients (rumqttc) exchange QoS 1 messages. Every healthy message arrives, every hostile
//! connection is closed within a bound (the configured connect timeout, keep-alive, or at
//! once), and the broker's memory stays bounded.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::*;

const HOSTILE: usize = 1000;
const PAIRS: usize = 25;
const MESSAGES: usize = 200;

/// Resident memory of this process (the broker runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Opens one hostile connection of kind `k` and sends its bytes.
fn hostile(addr: SocketAddr, k: usize) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).ok()?;
    let bytes: Vec<u8> = match k % 5 {
        // Connects and never sends CONNECT.
        0 => Vec::new(),
        // Garbage.
        1 => vec![0xFF; 64],
        // A CONNECT header announcing 200 MB.
        2 => vec![0x10, 0xFF, 0xFF, 0xFF, 0x7F],
        // Half a 3.1.1 CONNECT, then nothing.
        3 => vec![0x10, 0x10, 0x00, 0x04, b'M', b'Q'],
        // A valid CONNECT (keep-alive 1 s), then a PUBLISH that never finishes.
        _ => {
            let mut b = vec![0x10, 14, 0x00, 0x04, b'M', b'Q', b'T', b'T', 4, 0x02, 0x00, 0x01, 0x00, 0x02, b'h', b'x'];
            b.extend_from_slice(&[0x30, 0xE8, 0x07, 0x00, 0x01, b'h', 1, 2, 3]);
            b
        }
    };
    s.write_all(&bytes).ok()?;
    Some(s)
}

/// Waits until the broker closes `s`; false if it is still open at `deadline`.
fn closed_by(mut s: TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 256];
    loop {
        let left = match deadline.checked_duration_since(Instant::now()) {
            Some(d) if !d.is_zero() => d,
            _ => return false,
        };
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_do_not_harm_healthy_clients() {
    let broker = TestBroker::start_with(|c| {
        c.limits.connect_timeout = Duration::from_secs(1);
        c.limits.max_packet_size = 64 * 1024;
    });
    let addr = broker.addr();
    let before = rss_kib();

    let attackers = tokio::task::spawn_blocking(move || {
        (0..HOSTILE).filter_map(|k| hostile(addr, k).map(|s| (k, s))).collect::<Vec<_>>()
    });

    let topic = unique_topic("hostile");
    let mut subs = Vec::new();
    for i in 0..PAIRS {
        let (mut s, _) = Mqtt4::connect(&broker, &unique_id("h-sub")).await;
        s.subscribe(&format!("{topic}/{i}"), 1).await;
        subs.push(s);
    }
    let mut pubs = Vec::new();
    for i in 0..PAIRS {
        let (p, _) = Mqtt4::connect(&broker, &unique_id("h-pub")).await;
        for n in 0..MESSAGES {
            p.publish(&format!("{topic}/{i}"), 1, false, format!("{n}")).await;
        }
        pubs.push(p);
    }
    let attackers = attackers.await.unwrap();
    assert_eq!(attackers.len(), HOSTILE, "every hostile connection was accepted by the kernel");
    for p in &mut pubs {
        p.wait_acks(1, MESSAGES).await;
    }
    for s in &mut subs {
        let got: Vec<usize> = s
            .publishes(MESSAGES)
            .await
            .iter()
            .map(|p| std::str::from_utf8(&p.payload).unwrap().parse().unwrap())
            .collect();
        assert_eq!(got, (0..MESSAGES).collect::<Vec<_>>(), "every healthy message, in order");
    }

    // Every hostile connection is closed: at once, after the 1 s connect timeout, or
    // after 1.5 x its 1 s keep-alive.
    let deadline = Instant::now() + Duration::from_secs(10);
    let open: Vec<usize> = tokio::task::spawn_blocking(move || {
        attackers.into_iter().filter_map(|(k, s)| (!closed_by(s, deadline)).then_some(k)).collect()
    })
    .await
    .unwrap();
    assert!(
        open.is_empty(),
        "{} hostile connections still open, e.g. kinds {:?}",
        open.len(),
        &open[..open.len().min(10)]
    );
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 256 * 1024, "memory grew by {grown} KiB");
    broker.wait_connections(2 * PAIRS, WAIT).await;
}
