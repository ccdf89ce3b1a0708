//! Flow control with clients that flood: publishers send as fast as their own in-flight
//! window allows, knowing nothing of their subscribers, and a subscriber is slower than
//! them. Nothing the broker acknowledged may be lost for it, and it is not disconnected
//! for being slow (only for making no progress at all).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::*;
use tokio::sync::mpsc;

/// How long a whole flood scenario may take before the test fails, saying what it waited for.
const FLOOD_LIMIT: Duration = Duration::from_secs(60);

fn payload(publisher: u32, seq: u32, size: usize) -> Vec<u8> {
    let mut p = format!("{publisher:03} {seq:07} ").into_bytes();
    p.resize(size.max(p.len()), b'x');
    p
}

/// (publisher, seq) of a payload made by [`payload`].
fn parse(p: &[u8]) -> (u32, u32) {
    let s = std::str::from_utf8(&p[..12]).expect("payload prefix is text");
    (s[..3].parse().expect("publisher number"), s[4..11].parse().expect("sequence number"))
}

/// A 3.1.1 subscriber whose event loop is slowed on purpose: it pauses `pause` after every
/// `every` PUBLISHes it reads (and acknowledges: rumqttc acknowledges as it reads). Sends
/// every (publisher, seq) it receives; ends at the first connection error, which it sends.
struct SlowSub {
    rx: mpsc::UnboundedReceiver<Result<(u32, u32), String>>,
    client: rumqttc::AsyncClient,
}

impl SlowSub {
    async fn start(broker: &TestBroker, filter: &str, qos: u8, every: u32, pause: Duration) -> SlowSub {
        Self::start_as(broker, &unique_id("flow-sub"), true, filter, qos, every, pause).await
    }

    /// Like [`start`](SlowSub::start), with a client id and clean session flag of its own.
    async fn start_as(
        broker: &TestBroker,
        id: &str,
        clean: bool,
        filter: &str,
        qos: u8,
        every: u32,
        pause: Duration,
    ) -> SlowSub {
        let id = id.to_owned();
        let mut o = opts4(broker, &id);
        o.set_clean_session(clean);
        // The subscriber's own buffers must not be what limits it.
        o.set_inflight(100);
        let (client, mut el) = rumqttc::AsyncClient::new(o, 64);
        client.subscribe(filter, qos4(qos)).await.expect("subscribe queued");
        let (tx, rx) = mpsc::unbounded_channel();
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "{id}: no SUBACK within {WAIT:?}");
            let ev = tokio::time::timeout(WAIT, el.poll()).await;
            match ev {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)))) => break,
                // A resumed session's messages may come before the SUBACK.
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                    let _ = tx.send(Ok(parse(&p.payload)));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("{id}: connection failed before SUBACK: {e:?}"),
                Err(_) => panic!("{id}: no SUBACK within {WAIT:?}"),
            }
        }
        tokio::spawn(async move {
            let mut n = 0u32;
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if tx.send(Ok(parse(&p.payload))).is_err() {
                            return;
                        }
                        n += 1;
                        if n.is_multiple_of(every) {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(format!("{e:?}")));
                        return;
                    }
                }
            }
        });
        SlowSub { rx, client }
    }

    /// Receives until `expected` distinct messages are in or `limit` passes; panics on a
    /// connection error. Returns the distinct (publisher, seq) pairs and the duplicates.
    async fn receive(&mut self, expected: usize, limit: Duration) -> (BTreeSet<(u32, u32)>, usize) {
        let (got, dups, _) = self.receive_ordered(expected, limit, QUIET_END).await;
        (got, dups)
    }

    /// [`receive`](SlowSub::receive), also returning every message in arrival order; stops
    /// early once nothing arrived for `quiet`.
    async fn receive_ordered(
        &mut self,
        expected: usize,
        limit: Duration,
        quiet: Duration,
    ) -> (BTreeSet<(u32, u32)>, usize, Vec<(u32, u32)>) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = BTreeSet::new();
        let mut order = Vec::new();
        let mut dups = 0;
        while got.len() < expected {
            let until = deadline.min(tokio::time::Instant::now() + quiet);
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Err(_) => break,
                Ok(None) => panic!("slow subscriber: event loop ended after {} messages", got.len()),
                Ok(Some(Err(e))) => panic!("slow subscriber: disconnected after {} messages: {e}", got.len()),
                Ok(Some(Ok(m))) => {
                    order.push(m);
                    if !got.insert(m) {
                        dups += 1;
                    }
                }
            }
        }
        (got, dups, order)
    }
}

/// How long a receiver waits for the next message before it takes what it has: every
/// message is expected long before, so this only shortens a failing run.
const QUIET_END: Duration = Duration::from_secs(10);

/// A 3.1.1 publisher that sends `n` messages of `size` bytes to `topic` as fast as its
/// in-flight window of 100 allows (rumqttc's own flow control) and waits for the last
/// acknowledgement. Returns how many were acknowledged (QoS 1/2) or written (QoS 0).
async fn flood(broker: &TestBroker, number: u32, topic: String, qos: u8, n: u32, size: usize) -> u32 {
    flood_at(broker.addr(), number, topic, qos, n, size).await
}

/// [`flood`] against a broker known by its address (for spawned tasks).
async fn flood_at(addr: std::net::SocketAddr, number: u32, topic: String, qos: u8, n: u32, size: usize) -> u32 {
    let id = unique_id("flow-pub");
    let mut o = rumqttc::MqttOptions::new(&id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_inflight(100);
    let (client, mut el) = rumqttc::AsyncClient::new(o, 100);
    let sender = tokio::spawn(async move {
        for i in 0..n {
            client.publish(topic.clone(), qos4(qos), false, payload(number, i, size)).await.expect("publish queued");
        }
        client
    });
    let deadline = tokio::time::Instant::now() + FLOOD_LIMIT;
    let mut done = 0u32;
    while done < n {
        let ev = match tokio::time::timeout_at(deadline, el.poll()).await {
            Ok(ev) => ev,
            Err(_) => panic!("{id}: only {done} of {n} publishes completed within {FLOOD_LIMIT:?}"),
        };
        match ev {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) if qos == 1 => done += 1,
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubComp(_))) if qos == 2 => done += 1,
            Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(_))) if qos == 0 => done += 1,
            Ok(_) => {}
            Err(e) => panic!("{id}: publisher connection failed after {done} of {n}: {e:?}"),
        }
    }
    // Let a QoS 0 publisher's last packets leave before it is dropped.
    let client = sender.await.expect("sender task");
    if qos == 0 {
        let _ = client.disconnect().await;
        for _ in 0..100 {
            match tokio::time::timeout(Duration::from_secs(5), el.poll()).await {
                Ok(Ok(_)) => {}
                _ => break,
            }
        }
    }
    done
}

fn missing(got: &BTreeSet<(u32, u32)>, publishers: u32, n: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for p in 0..publishers {
        for i in 0..n {
            if !got.contains(&(p, i)) {
                out.push((p, i));
                if out.len() >= 10 {
                    return out;
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_flood_slow_subscriber_loses_nothing() {
    // Default configuration; 20 000 QoS 1 messages from one publisher with a window of
    // 100, to a subscriber that is slower than the publisher.
    let broker = TestBroker::start();
    let topic = unique_topic("flow/q1");
    let mut sub = SlowSub::start(&broker, &topic, 1, 50, Duration::from_millis(2)).await;
    let n = 20_000;
    let acked = flood(&broker, 0, topic, 1, n, 64).await;
    assert_eq!(acked, n, "every publish acknowledged");
    let (got, _dups, order) = sub.receive_ordered(n as usize, FLOOD_LIMIT, QUIET_END).await;
    assert_eq!(got.len(), n as usize, "acknowledged messages lost; first missing: {:?}", missing(&got, 1, n));
    assert_in_order(&order);
    drop(sub.client);
}

/// One publisher's messages arrive in the order it sent them.
fn assert_in_order(order: &[(u32, u32)]) {
    if let Some(w) = order.windows(2).find(|w| w[0].0 == w[1].0 && w[0].1 >= w[1].1) {
        panic!("out of order: {:?} then {:?}", w[0], w[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_flood_segment_topic_slow_subscriber_loses_nothing_in_order() {
    // The same flood on a segment topic: what the subscriber cannot take is parked by log
    // position and read back from the log, behind what it already holds.
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start_with(|c| {
        c.storage.data_dir = dir.path().to_path_buf();
        c.storage.engine = ringmq::Engine::Segment;
        c.storage.fsync = ringmq::Fsync::Never;
    });
    let topic = unique_topic("flow/q1seg");
    let mut sub = SlowSub::start(&broker, &topic, 1, 50, Duration::from_millis(2)).await;
    let n = 10_000;
    assert_eq!(flood(&broker, 0, topic, 1, n, 64).await, n, "every publish acknowledged");
    let (got, _dups, order) = sub.receive_ordered(n as usize, FLOOD_LIMIT, QUIET_END).await;
    assert_eq!(got.len(), n as usize, "acknowledged messages lost; first missing: {:?}", missing(&got, 1, n));
    assert_in_order(&order);
    drop(sub.client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_burst_ten_publishers_one_subscriber_loses_nothing() {
    // Default configuration: the 64 MiB outbox holds the burst for a subscriber that
    // reads more slowly than ten publishers send; it is neither cut off nor losing any.
    let broker = TestBroker::start();
    let topic = unique_topic("flow/q0");
    let mut sub = SlowSub::start(&broker, &topic, 0, 1000, Duration::from_millis(2)).await;
    let (publishers, n) = (10u32, 10_000u32);
    let floods: Vec<_> =
        (0..publishers).map(|p| tokio::spawn(flood_at(broker.addr(), p, topic.clone(), 0, n, 64))).collect();
    for f in floods {
        assert_eq!(f.await.expect("publisher task"), n);
    }
    let total = (publishers * n) as usize;
    let (got, dups) = sub.receive(total, FLOOD_LIMIT).await;
    assert_eq!(dups, 0, "QoS 0 never comes twice");
    assert_eq!(got.len(), total, "QoS 0 messages lost; first missing: {:?}", missing(&got, publishers, n));
    let d = broker.drops();
    assert_eq!((d.outbox_full, d.stuck, d.slow_consumers), (0, 0, 0), "{d:?}");
    drop(sub.client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_segment_session_gets_every_acknowledged_message_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let segment = |c: &mut ringmq::EngineConfig| {
        c.storage.data_dir = dir.path().to_path_buf();
        c.storage.engine = ringmq::Engine::Segment;
        c.storage.fsync = ringmq::Fsync::Always;
    };
    let topic = unique_topic("flow/seg");
    let id = unique_id("flow-seg-sub");
    let n = 20_000;
    {
        let broker = TestBroker::start_with(segment);
        let (mut sub, _) = Mqtt4::connect_with(&broker, &id, |o| {
            o.set_clean_session(false);
        })
        .await;
        sub.subscribe(&topic, 1).await;
        drop(sub);
        broker.wait_connections(0, WAIT).await;
        assert_eq!(flood(&broker, 0, topic.clone(), 1, n, 64).await, n, "every publish acknowledged");
    }
    let broker = TestBroker::start_with(segment);
    let mut sub = SlowSub::start_as(&broker, &id, false, &topic, 1, 500, Duration::from_millis(1)).await;
    let (got, _dups) = sub.receive(n as usize, FLOOD_LIMIT).await;
    assert_eq!(got.len(), n as usize, "acknowledged messages lost; first missing: {:?}", missing(&got, 1, n));
    let d = broker.drops();
    assert_eq!((d.lost, d.queue_cap), (0, 0), "{d:?}");
    drop(sub.client);
}

/// Two topics in different partitions of a broker with 64 partitions.
fn two_partitions(prefix: &str) -> (String, String) {
    let part = |t: &str| shards::route::partition::hash(t.as_bytes()) % 64;
    let a = unique_topic(prefix);
    for i in 0..1000 {
        let b = format!("{a}/other{i}");
        if part(&b) != part(&a) {
            return (a, b);
        }
    }
    panic!("no second partition found")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_holds_publishers_and_loses_nothing() {
    // A 64 KiB ring holds ~200 of these messages; 5000 are published at a subscriber that
    // is far slower. With `backpressure` (the default) the publisher waits instead.
    let broker = TestBroker::start_with(|c| c.storage.memory_bytes = 64 * 1024);
    let (slow_topic, fast_topic) = two_partitions("flow/bp");
    let mut slow = SlowSub::start(&broker, &slow_topic, 1, 20, Duration::from_millis(5)).await;
    let mut fast = SlowSub::start(&broker, &fast_topic, 1, 1_000_000, Duration::ZERO).await;
    let n = 5000;
    let slow_pub = tokio::spawn(flood_at(broker.addr(), 0, slow_topic, 1, n, 200));
    // Meanwhile a publisher and subscriber on another partition go at their own pace.
    let fast_n = 2000;
    assert_eq!(flood(&broker, 1, fast_topic, 1, fast_n, 200).await, fast_n);
    let (fast_got, _) = fast.receive(fast_n as usize, FLOOD_LIMIT).await;
    assert_eq!(fast_got.len(), fast_n as usize, "the other partition's subscriber got everything");
    assert!(!slow_pub.is_finished(), "the slow topic's publisher is still held back");
    let (got, _dups) = slow.receive(n as usize, FLOOD_LIMIT).await;
    assert_eq!(slow_pub.await.expect("publisher task"), n);
    assert_eq!(got.len(), n as usize, "acknowledged messages lost; first missing: {:?}", missing(&got, 1, n));
    let d = broker.wait_drops("publishes held back", WAIT, |d| d.held_back > 0).await;
    assert_eq!((d.evicted, d.lost), (0, 0), "nothing given up: {d:?}");
    drop((slow.client, fast.client));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_gives_up_the_oldest_and_counts_them() {
    // Set by a rule for this test's topics; the broker-wide policy stays `backpressure`.
    let topic = unique_topic("flow/drop");
    let filter = format!("{topic}/#");
    let topic = format!("{topic}/t");
    let broker = TestBroker::start_with(|c| {
        c.storage.memory_bytes = 64 * 1024;
        c.storage.rules = vec![ringmq::StorageRule {
            filter,
            engine: None,
            offline: None,
            when_full: Some(ringmq::FullPolicy::DropOldest),
        }];
    });
    let mut slow = SlowSub::start(&broker, &topic, 1, 20, Duration::from_millis(5)).await;
    let n = 5000;
    // The publisher is never held back.
    assert_eq!(flood(&broker, 0, topic, 1, n, 200).await, n);
    let (got, dups, order) = slow.receive_ordered(n as usize, FLOOD_LIMIT, Duration::from_secs(3)).await;
    assert_eq!(dups, 0);
    let seqs: Vec<u32> = order.iter().map(|m| m.1).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "what arrives comes in order");
    let d = broker.wait_drops("the lost messages counted", WAIT, |d| d.lost + got.len() as u64 >= u64::from(n)).await;
    assert!(d.lost > 0 && d.evicted >= d.lost, "the ring gave the oldest up: {d:?}");
    assert_eq!(d.lost + got.len() as u64, u64::from(n), "every message delivered or counted: {d:?}");
    assert_eq!(d.held_back, 0, "{d:?}");
    drop(slow.client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_subscriber_that_never_acknowledges_is_disconnected() {
    let broker = TestBroker::start_with(|c| c.limits.stuck_timeout = Duration::from_secs(1));
    let topic = unique_topic("flow/stuck");
    let mut raw = Raw::connect(&broker).await;
    raw.send_connect(&raw_connect4(&unique_id("stuck"), true, 0)).await;
    assert!(matches!(raw.read_packet().await, Some(rumqttc::Packet::ConnAck(_))));
    let mut s = rumqttc::mqttbytes::v4::Subscribe::new(&topic, rumqttc::QoS::AtLeastOnce);
    s.pkid = 1;
    raw.send_subscribe(&s).await;
    assert!(matches!(raw.read_packet().await, Some(rumqttc::Packet::SubAck(_))));
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("stuck-pub")).await;
    for i in 0..10u32 {
        publ.publish_acked(&topic, 1, false, payload(0, i, 16)).await;
    }
    // It reads everything (so its socket is not what is stuck) and acknowledges nothing.
    let read = raw.read_until_closed(Duration::from_secs(10), 1 << 20).await;
    assert!(read > 0);
    let d = broker.wait_drops("a stuck disconnect", WAIT, |d| d.stuck == 1).await;
    assert_eq!(d.slow_consumers, 0, "{d:?}");
}
