//! Shared helpers for the black-box tests: an in-process broker on an ephemeral port,
//! rumqttc 3.1.1 and 5.0 clients whose event loops run in a background task, raw sockets
//! speaking packets encoded by rumqttc's own codec, and waits that are always bounded.
//!
//! Every wait takes at most [`WAIT`] (or an explicit timeout) and panics with a message
//! naming the client and what it was waiting for; every loop is bounded in count.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a wait for something that must happen may take.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long to watch for something that must not happen (after a positive sync point).
pub const QUIET: Duration = Duration::from_millis(700);
/// Bound on the events one client's pump forwards.
const MAX_EVENTS: usize = 10_000_000;
/// Bound on the events a client keeps aside while waiting for another kind.
const MAX_BACKLOG: usize = 1_000_000;

/// A broker running in this process on 127.0.0.1 with an ephemeral port; stops on drop.
pub struct TestBroker {
    node: Option<ringmq::Node>,
    addr: SocketAddr,
}

impl TestBroker {
    /// A broker with the default limits, 2 unpinned shards.
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// A broker whose configuration `tweak` adjusts (after the test defaults are set).
    pub fn start_with(tweak: impl FnOnce(&mut ringmq::EngineConfig)) -> Self {
        let mut cfg = ringmq::EngineConfig {
            listen: vec!["127.0.0.1:0".parse().expect("loopback address")],
            shards: 2,
            pin: false,
            ..Default::default()
        };
        tweak(&mut cfg);
        let node = ringmq::Node::start(cfg).unwrap_or_else(|e| panic!("broker did not start: {e}"));
        let addr = node.local_addrs()[0];
        TestBroker { node: Some(node), addr }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Client connections the node currently counts.
    pub fn connections(&self) -> usize {
        self.node.as_ref().map_or(0, |n| n.connections())
    }

    /// Waits (bounded) until the node counts exactly `n` connections.
    pub async fn wait_connections(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for _ in 0..10_000 {
            if self.connections() == n {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("broker: expected {n} connections within {timeout:?}, it counts {}", self.connections());
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            node.stop();
            let _ = node.join();
        }
    }
}

/// A client id unique within this test process.
pub fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A topic prefix unique within this test process.
pub fn unique_topic(prefix: &str) -> String {
    unique_id(prefix)
}

/// rumqttc 3.1.1 QoS from a number.
pub fn qos4(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        2 => rumqttc::QoS::ExactlyOnce,
        _ => panic!("no QoS {q}"),
    }
}

/// rumqttc 5.0 QoS from a number.
pub fn qos5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS;
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => panic!("no QoS {q}"),
    }
}

/// The number of a 3.1.1 QoS.
pub fn qos4_num(q: rumqttc::QoS) -> u8 {
    q as u8
}

/// The number of a 5.0 QoS.
pub fn qos5_num(q: rumqttc::v5::mqttbytes::QoS) -> u8 {
    q as u8
}

/// Events of one client connection, as forwarded by its pump task, with the ones set
/// aside by earlier waits.
pub struct Events<E, Er> {
    who: String,
    rx: mpsc::UnboundedReceiver<Result<E, Er>>,
    backlog: VecDeque<E>,
}

impl<E: Debug, Er: Debug> Events<E, Er> {
    fn new(who: String, rx: mpsc::UnboundedReceiver<Result<E, Er>>) -> Self {
        Events { who, rx, backlog: VecDeque::new() }
    }

    fn keep(&mut self, ev: E) {
        assert!(self.backlog.len() < MAX_BACKLOG, "{}: too many unread events", self.who);
        self.backlog.push_back(ev);
    }

    /// The first event (set aside or new) that `f` maps to Some, within `timeout`.
    /// Panics on timeout or when the connection fails first.
    pub async fn wait_for<T>(&mut self, what: &str, timeout: Duration, mut f: impl FnMut(&E) -> Option<T>) -> T {
        for i in 0..self.backlog.len() {
            if let Some(t) = f(&self.backlog[i]) {
                self.backlog.remove(i);
                return t;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for _ in 0..MAX_EVENTS {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => panic!("{}: timed out after {timeout:?} waiting for {what}", self.who),
                Ok(None) => panic!("{}: event stream ended while waiting for {what}", self.who),
                Ok(Some(Err(e))) => panic!("{}: connection failed while waiting for {what}: {e:?}", self.who),
                Ok(Some(Ok(ev))) => match f(&ev) {
                    Some(t) => return t,
                    None => self.keep(ev),
                },
            }
        }
        panic!("{}: too many events while waiting for {what}", self.who)
    }

    /// Watches for `dur`; panics if an event `f` maps to Some shows up (or was set aside),
    /// or if the connection fails meanwhile.
    pub async fn expect_none<T: Debug>(&mut self, what: &str, dur: Duration, mut f: impl FnMut(&E) -> Option<T>) {
        for ev in &self.backlog {
            if let Some(t) = f(ev) {
                panic!("{}: unexpected {what}: {t:?}", self.who);
            }
        }
        let deadline = tokio::time::Instant::now() + dur;
        for _ in 0..MAX_EVENTS {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return,
                Ok(None) => panic!("{}: event stream ended while checking that no {what} arrives", self.who),
                Ok(Some(Err(e))) => {
                    panic!("{}: connection failed while checking that no {what} arrives: {e:?}", self.who)
                }
                Ok(Some(Ok(ev))) => {
                    if let Some(t) = f(&ev) {
                        panic!("{}: unexpected {what}: {t:?}", self.who);
                    }
                    self.keep(ev);
                }
            }
        }
        panic!("{}: too many events while checking that no {what} arrives", self.who)
    }

    /// Everything `f` maps to Some that arrives until none came for `quiet` (the set-aside
    /// ones first). Bounded by `max` items and by `limit` overall.
    pub async fn collect<T>(
        &mut self,
        quiet: Duration,
        limit: Duration,
        max: usize,
        mut f: impl FnMut(&E) -> Option<T>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        let mut rest = VecDeque::new();
        while let Some(ev) = self.backlog.pop_front() {
            match f(&ev) {
                Some(t) if out.len() < max => out.push(t),
                _ => rest.push_back(ev),
            }
        }
        self.backlog = rest;
        let end = tokio::time::Instant::now() + limit;
        for _ in 0..MAX_EVENTS {
            if out.len() >= max {
                break;
            }
            let until = (tokio::time::Instant::now() + quiet).min(end);
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Err(_) => break,
                Ok(None) => break,
                Ok(Some(Err(e))) => panic!("{}: connection failed while collecting: {e:?}", self.who),
                Ok(Some(Ok(ev))) => match f(&ev) {
                    Some(t) => out.push(t),
                    None => self.keep(ev),
                },
            }
        }
        out
    }

    /// Waits for the connection to end and returns its error (events before it are set
    /// aside).
    pub async fn closed(&mut self, timeout: Duration) -> Er {
        let deadline = tokio::time::Instant::now() + timeout;
        for _ in 0..MAX_EVENTS {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => panic!("{}: connection still open after {timeout:?}", self.who),
                Ok(None) => panic!("{}: event stream ended without an error", self.who),
                Ok(Some(Err(e))) => return e,
                Ok(Some(Ok(ev))) => self.keep(ev),
            }
        }
        panic!("{}: too many events while waiting for the connection to close", self.who)
    }
}

// ---------------------------------------------------------------------------------------
// MQTT 3.1.1 (rumqttc)
// ---------------------------------------------------------------------------------------

/// Options of a 3.1.1 client of `broker`: keep-alive 30 s, 1 MiB packets both ways.
pub fn opts4(broker: &TestBroker, id: &str) -> rumqttc::MqttOptions {
    let addr = broker.addr();
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

type Events4 = Events<rumqttc::Event, rumqttc::ConnectionError>;

/// A connected 3.1.1 client; its event loop runs in a task and stops at the first error
/// (no automatic reconnect). Dropping it drops the connection without DISCONNECT.
pub struct Mqtt4 {
    /// The request handle.
    pub client: rumqttc::AsyncClient,
    /// The client id used in CONNECT.
    pub id: String,
    /// The connection's events.
    pub ev: Events4,
    task: JoinHandle<()>,
}

async fn pump4(
    mut el: rumqttc::EventLoop,
    tx: mpsc::UnboundedSender<Result<rumqttc::Event, rumqttc::ConnectionError>>,
) {
    for _ in 0..MAX_EVENTS {
        let ev = el.poll().await;
        let failed = ev.is_err();
        if tx.send(ev).is_err() || failed {
            return;
        }
    }
}

impl Mqtt4 {
    /// Connects with the default options; panics when refused.
    pub async fn connect(broker: &TestBroker, id: &str) -> (Mqtt4, rumqttc::ConnAck) {
        Self::connect_with(broker, id, |_| {}).await
    }

    /// Connects with options `tweak` adjusts; panics when refused.
    pub async fn connect_with(
        broker: &TestBroker,
        id: &str,
        tweak: impl FnOnce(&mut rumqttc::MqttOptions),
    ) -> (Mqtt4, rumqttc::ConnAck) {
        match Self::try_connect_with(broker, id, tweak).await {
            Ok(c) => c,
            Err(e) => panic!("{id:?}: 3.1.1 connect failed: {e:?}"),
        }
    }

    /// Connects; the error when the broker refuses or the connection fails.
    pub async fn try_connect_with(
        broker: &TestBroker,
        id: &str,
        tweak: impl FnOnce(&mut rumqttc::MqttOptions),
    ) -> Result<(Mqtt4, rumqttc::ConnAck), rumqttc::ConnectionError> {
        let mut o = opts4(broker, id);
        tweak(&mut o);
        let (client, mut el) = rumqttc::AsyncClient::new(o, 64);
        let first = match tokio::time::timeout(WAIT, el.poll()).await {
            Ok(r) => r?,
            Err(_) => panic!("{id:?}: no CONNACK within {WAIT:?}"),
        };
        let connack = match first {
            rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(c)) => c,
            other => panic!("{id:?}: first event is not CONNACK: {other:?}"),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(pump4(el, tx));
        let who = format!("3.1.1 client {id:?}");
        Ok((Mqtt4 { client, id: id.to_owned(), ev: Events::new(who, rx), task }, connack))
    }

    /// Sends a PUBLISH (does not wait for its acknowledgement).
    pub async fn publish(&self, topic: &str, qos: u8, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, qos4(qos), retain, payload).await.expect("publish request queued");
    }

    /// Sends a PUBLISH and waits until it is done: written (QoS 0), PUBACK (QoS 1) or
    /// PUBCOMP (QoS 2). Only for a client with no other PUBLISH outstanding.
    pub async fn publish_acked(&mut self, topic: &str, qos: u8, retain: bool, payload: impl Into<Vec<u8>>) {
        self.publish(topic, qos, retain, payload).await;
        self.wait_acks(qos, 1).await;
    }

    /// Waits for `n` completions of this client's PUBLISHes of QoS `qos`.
    pub async fn wait_acks(&mut self, qos: u8, n: usize) {
        use rumqttc::{Event, Outgoing, Packet};
        for i in 0..n {
            let what = format!("acknowledgement {} of {n} (QoS {qos})", i + 1);
            self.ev
                .wait_for(&what, WAIT, |e| match (qos, e) {
                    (0, Event::Outgoing(Outgoing::Publish(_))) => Some(()),
                    (1, Event::Incoming(Packet::PubAck(_))) => Some(()),
                    (2, Event::Incoming(Packet::PubComp(_))) => Some(()),
                    _ => None,
                })
                .await;
        }
    }

    /// The next PUBLISH received.
    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        self.next_publish_within(WAIT).await
    }

    /// The next PUBLISH received within `timeout`.
    pub async fn next_publish_within(&mut self, timeout: Duration) -> rumqttc::Publish {
        self.ev
            .wait_for("a PUBLISH", timeout, |e| match e {
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Some(p.clone()),
                _ => None,
            })
            .await
    }

    /// The next `n` PUBLISHes received, in order.
    pub async fn publishes(&mut self, n: usize) -> Vec<rumqttc::Publish> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.next_publish().await);
        }
        v
    }

    /// Panics if a PUBLISH arrives within `dur`.
    pub async fn expect_no_publish(&mut self, dur: Duration) {
        self.ev
            .expect_none("PUBLISH", dur, |e| match e {
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Some(p.clone()),
                _ => None,
            })
            .await
    }

    /// PUBLISHes arriving until none came for `quiet` (at most `max`, at most 10 s).
    pub async fn collect_publishes(&mut self, quiet: Duration, max: usize) -> Vec<rumqttc::Publish> {
        self.ev
            .collect(quiet, Duration::from_secs(10), max, |e| match e {
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Some(p.clone()),
                _ => None,
            })
            .await
    }

    /// Subscribes to several filters in one SUBSCRIBE; returns the SUBACK codes.
    pub async fn subscribe_many(&mut self, filters: &[(&str, u8)]) -> Vec<rumqttc::SubscribeReasonCode> {
        let list: Vec<_> =
            filters.iter().map(|(f, q)| rumqttc::SubscribeFilter::new(f.to_string(), qos4(*q))).collect();
        self.client.subscribe_many(list).await.expect("subscribe request queued");
        let what = format!("SUBACK for {filters:?}");
        self.ev
            .wait_for(&what, WAIT, |e| match e {
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a)) => Some(a.return_codes.clone()),
                _ => None,
            })
            .await
    }

    /// Subscribes and asserts the broker granted `qos`.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) {
        let codes = self.subscribe_many(&[(filter, qos)]).await;
        assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Success(qos4(qos))], "{}: SUBACK for {filter:?}", self.id);
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub async fn unsubscribe(&mut self, filter: &str) {
        self.client.unsubscribe(filter).await.expect("unsubscribe request queued");
        let what = format!("UNSUBACK for {filter:?}");
        self.ev
            .wait_for(&what, WAIT, |e| match e {
                rumqttc::Event::Incoming(rumqttc::Packet::UnsubAck(_)) => Some(()),
                _ => None,
            })
            .await
    }

    /// Acknowledges a PUBLISH received with manual acks on.
    pub async fn ack(&self, p: &rumqttc::Publish) {
        self.client.ack(p).await.expect("ack request queued");
    }

    /// Waits for the connection to end; its error.
    pub async fn closed(&mut self) -> rumqttc::ConnectionError {
        self.ev.closed(WAIT).await
    }

    /// Sends DISCONNECT and waits until the broker closed the connection.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("disconnect request queued");
        self.ev.closed(WAIT).await;
    }

    /// Drops the connection without DISCONNECT (an abnormal close for the broker) and
    /// waits until the socket is gone.
    pub async fn kill(mut self) {
        self.task.abort();
        if tokio::time::timeout(WAIT, &mut self.task).await.is_err() {
            panic!("{}: event loop task did not stop", self.id);
        }
    }
}

impl Drop for Mqtt4 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// MQTT 5.0 (rumqttc::v5)
// ---------------------------------------------------------------------------------------

pub use rumqttc::v5::mqttbytes::v5 as p5;

/// Options of a 5.0 client of `broker`: keep-alive 30 s, 1 MiB maximum packet size.
pub fn opts5(broker: &TestBroker, id: &str) -> rumqttc::v5::MqttOptions {
    let addr = broker.addr();
    let mut o = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(Some(1 << 20));
    o
}

/// Sets the 5.0 session expiry interval in the options' CONNECT properties.
pub fn set_expiry5(o: &mut rumqttc::v5::MqttOptions, secs: u32) {
    let mut props = o.connect_properties().unwrap_or_default();
    props.session_expiry_interval = Some(secs);
    o.set_connect_properties(props);
}

type Events5 = Events<rumqttc::v5::Event, rumqttc::v5::ConnectionError>;

/// A connected 5.0 client; like [`Mqtt4`].
pub struct Mqtt5 {
    /// The request handle.
    pub client: rumqttc::v5::AsyncClient,
    /// The client id used in CONNECT.
    pub id: String,
    /// The connection's events.
    pub ev: Events5,
    task: JoinHandle<()>,
}

async fn pump5(
    mut el: rumqttc::v5::EventLoop,
    tx: mpsc::UnboundedSender<Result<rumqttc::v5::Event, rumqttc::v5::ConnectionError>>,
) {
    for _ in 0..MAX_EVENTS {
        let ev = el.poll().await;
        let failed = ev.is_err();
        if tx.send(ev).is_err() || failed {
            return;
        }
    }
}

/// The topic of a 5.0 PUBLISH as a string.
pub fn topic5(p: &p5::Publish) -> String {
    String::from_utf8(p.topic.to_vec()).expect("UTF-8 topic")
}

impl Mqtt5 {
    /// Connects with the default options; panics when refused.
    pub async fn connect(broker: &TestBroker, id: &str) -> (Mqtt5, p5::ConnAck) {
        Self::connect_with(broker, id, |_| {}).await
    }

    /// Connects with options `tweak` adjusts; panics when refused.
    pub async fn connect_with(
        broker: &TestBroker,
        id: &str,
        tweak: impl FnOnce(&mut rumqttc::v5::MqttOptions),
    ) -> (Mqtt5, p5::ConnAck) {
        match Self::try_connect_with(broker, id, tweak).await {
            Ok(c) => c,
            Err(e) => panic!("{id:?}: 5.0 connect failed: {e:?}"),
        }
    }

    /// Connects; the error when the broker refuses or the connection fails.
    pub async fn try_connect_with(
        broker: &TestBroker,
        id: &str,
        tweak: impl FnOnce(&mut rumqttc::v5::MqttOptions),
    ) -> Result<(Mqtt5, p5::ConnAck), rumqttc::v5::ConnectionError> {
        let mut o = opts5(broker, id);
        tweak(&mut o);
        let (client, mut el) = rumqttc::v5::AsyncClient::new(o, 64);
        let first = match tokio::time::timeout(WAIT, el.poll()).await {
            Ok(r) => r?,
            Err(_) => panic!("{id:?}: no CONNACK within {WAIT:?}"),
        };
        let connack = match first {
            rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(c)) => c,
            other => panic!("{id:?}: first event is not CONNACK: {other:?}"),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(pump5(el, tx));
        let who = format!("5.0 client {id:?}");
        Ok((Mqtt5 { client, id: id.to_owned(), ev: Events::new(who, rx), task }, connack))
    }

    /// Sends a PUBLISH (does not wait for its acknowledgement).
    pub async fn publish(&self, topic: &str, qos: u8, retain: bool, payload: impl Into<Vec<u8>>) {
        let payload: Vec<u8> = payload.into();
        self.client.publish(topic, qos5(qos), retain, payload).await.expect("publish request queued");
    }

    /// Sends a PUBLISH and waits until it is done (see [`Mqtt4::publish_acked`]).
    pub async fn publish_acked(&mut self, topic: &str, qos: u8, retain: bool, payload: impl Into<Vec<u8>>) {
        self.publish(topic, qos, retain, payload).await;
        self.wait_acks(qos, 1).await;
    }

    /// Waits for `n` completions of this client's PUBLISHes of QoS `qos`.
    pub async fn wait_acks(&mut self, qos: u8, n: usize) {
        use rumqttc::v5::Event;
        use rumqttc::Outgoing;
        for i in 0..n {
            let what = format!("acknowledgement {} of {n} (QoS {qos})", i + 1);
            self.ev
                .wait_for(&what, WAIT, |e| match (qos, e) {
                    (0, Event::Outgoing(Outgoing::Publish(_))) => Some(()),
                    (1, Event::Incoming(p5::Packet::PubAck(_))) => Some(()),
                    (2, Event::Incoming(p5::Packet::PubComp(_))) => Some(()),
                    _ => None,
                })
                .await;
        }
    }

    /// The next PUBLISH received.
    pub async fn next_publish(&mut self) -> p5::Publish {
        self.next_publish_within(WAIT).await
    }

    /// The next PUBLISH received within `timeout`.
    pub async fn next_publish_within(&mut self, timeout: Duration) -> p5::Publish {
        self.ev
            .wait_for("a PUBLISH", timeout, |e| match e {
                rumqttc::v5::Event::Incoming(p5::Packet::Publish(p)) => Some(p.clone()),
                _ => None,
            })
            .await
    }

    /// The next `n` PUBLISHes received, in order.
    pub async fn publishes(&mut self, n: usize) -> Vec<p5::Publish> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.next_publish().await);
        }
        v
    }

    /// Panics if a PUBLISH arrives within `dur`.
    pub async fn expect_no_publish(&mut self, dur: Duration) {
        self.ev
            .expect_none("PUBLISH", dur, |e| match e {
                rumqttc::v5::Event::Incoming(p5::Packet::Publish(p)) => Some(p.clone()),
                _ => None,
            })
            .await
    }

    /// PUBLISHes arriving until none came for `quiet` (at most `max`, at most 10 s).
    pub async fn collect_publishes(&mut self, quiet: Duration, max: usize) -> Vec<p5::Publish> {
        self.ev
            .collect(quiet, Duration::from_secs(10), max, |e| match e {
                rumqttc::v5::Event::Incoming(p5::Packet::Publish(p)) => Some(p.clone()),
                _ => None,
            })
            .await
    }

    /// Subscribes and asserts the broker granted `qos`.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) {
        self.client.subscribe(filter, qos5(qos)).await.expect("subscribe request queued");
        let what = format!("SUBACK for {filter:?}");
        let codes = self
            .ev
            .wait_for(&what, WAIT, |e| match e {
                rumqttc::v5::Event::Incoming(p5::Packet::SubAck(a)) => Some(a.return_codes.clone()),
                _ => None,
            })
            .await;
        assert_eq!(codes, vec![p5::SubscribeReasonCode::Success(qos5(qos))], "{}: SUBACK for {filter:?}", self.id);
    }

    /// Subscribes to a filter the broker must refuse; returns the SUBACK reason code.
    /// rumqttc ends the connection on a refused subscription, so the client is spent.
    pub async fn subscribe_refused(mut self, filter: &str, qos: u8) -> p5::SubscribeReasonCode {
        self.client.subscribe(filter, qos5(qos)).await.expect("subscribe request queued");
        match self.ev.closed(WAIT).await {
            rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::SubFail { reason }) => reason,
            other => panic!("{}: expected a refused SUBACK for {filter:?}, got {other:?}", self.id),
        }
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub async fn unsubscribe(&mut self, filter: &str) {
        self.client.unsubscribe(filter).await.expect("unsubscribe request queued");
        let what = format!("UNSUBACK for {filter:?}");
        self.ev
            .wait_for(&what, WAIT, |e| match e {
                rumqttc::v5::Event::Incoming(p5::Packet::UnsubAck(_)) => Some(()),
                _ => None,
            })
            .await
    }

    /// Acknowledges a PUBLISH received with manual acks on.
    pub async fn ack(&self, p: &p5::Publish) {
        self.client.ack(p).await.expect("ack request queued");
    }

    /// Waits for the connection to end; its error.
    pub async fn closed(&mut self) -> rumqttc::v5::ConnectionError {
        self.ev.closed(WAIT).await
    }

    /// Sends DISCONNECT and waits until the broker closed the connection.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("disconnect request queued");
        self.ev.closed(WAIT).await;
    }

    /// Drops the connection without DISCONNECT and waits until the socket is gone.
    pub async fn kill(mut self) {
        self.task.abort();
        if tokio::time::timeout(WAIT, &mut self.task).await.is_err() {
            panic!("{}: event loop task did not stop", self.id);
        }
    }
}

impl Drop for Mqtt5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// Raw sockets with packets encoded by rumqttc's 3.1.1 codec
// ---------------------------------------------------------------------------------------

/// A plain TCP connection to the broker speaking 3.1.1 packets.
pub struct Raw {
    /// The socket.
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    /// Connects a socket.
    pub async fn connect(broker: &TestBroker) -> Raw {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(broker.addr()))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect");
        Raw { stream, buf: BytesMut::new() }
    }

    /// Connects a socket whose receive buffer is `size` bytes (set before connecting, so
    /// the kernel does not grow it).
    pub async fn connect_with_rcvbuf(broker: &TestBroker, size: u32) -> Raw {
        let sock = TcpSocket::new_v4().expect("socket");
        sock.set_recv_buffer_size(size).expect("SO_RCVBUF");
        let stream = tokio::time::timeout(WAIT, sock.connect(broker.addr()))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect");
        Raw { stream, buf: BytesMut::new() }
    }

    /// Writes bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes)).await.expect("write timed out").expect("write");
    }

    /// Writes a CONNECT.
    pub async fn send_connect(&mut self, c: &rumqttc::mqttbytes::v4::Connect) {
        let mut b = BytesMut::new();
        c.write(&mut b).expect("encode CONNECT");
        self.send_bytes(&b).await;
    }

    /// Writes a SUBSCRIBE.
    pub async fn send_subscribe(&mut self, s: &rumqttc::mqttbytes::v4::Subscribe) {
        let mut b = BytesMut::new();
        s.write(&mut b).expect("encode SUBSCRIBE");
        self.send_bytes(&b).await;
    }

    /// Writes a 5.0 CONNECT encoded by rumqttc's 5.0 codec.
    pub async fn send_connect5(&mut self, id: &str, clean_start: bool, session_expiry: Option<u32>) {
        let mut props = p5::ConnectProperties::new();
        props.session_expiry_interval = session_expiry;
        let c = p5::Connect { keep_alive: 30, client_id: id.to_owned(), clean_start, properties: Some(props) };
        let mut b = BytesMut::new();
        p5::Packet::Connect(c, None, None).write(&mut b).expect("encode 5.0 CONNECT");
        self.send_bytes(&b).await;
    }

    /// The next frame, whatever the protocol version, as (first byte, body); None at end of
    /// stream (a reset counts as the end too).
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        for _ in 0..1_000_000 {
            if let Some((header, len)) = frame_len(&self.buf) {
                if self.buf.len() >= header + len {
                    let frame = self.buf.split_to(header + len);
                    return Some((frame[0], frame[header..].to_vec()));
                }
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("raw: no complete packet from the broker within {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        panic!("raw: too many reads")
    }

    /// The next packet, or None at end of stream (a reset counts as the end too).
    pub async fn read_packet(&mut self) -> Option<rumqttc::Packet> {
        let deadline = tokio::time::Instant::now() + WAIT;
        for _ in 0..1_000_000 {
            match rumqttc::mqttbytes::v4::read(&mut self.buf, 1 << 24) {
                Ok(p) => return Some(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("raw: undecodable packet from the broker: {e:?}"),
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("raw: nothing from the broker within {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        panic!("raw: too many reads")
    }

    /// Reads and discards until the broker closes the connection (within `timeout`, at
    /// most `max_bytes`); returns the bytes read.
    pub async fn read_until_closed(&mut self, timeout: Duration, max_bytes: usize) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut total = self.buf.len();
        self.buf.clear();
        let mut chunk = vec![0u8; 64 * 1024];
        for _ in 0..10_000_000 {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("raw: connection still open after {timeout:?} ({total} bytes read)"),
                Ok(Ok(0)) | Ok(Err(_)) => return total,
                Ok(Ok(n)) => {
                    total += n;
                    assert!(
                        total <= max_bytes,
                        "raw: more than {max_bytes} bytes read and the connection is still open"
                    );
                }
            }
        }
        panic!("raw: too many reads")
    }
}

/// (fixed header length, remaining length) of the frame at the start of `buf`, once the
/// fixed header is complete.
fn frame_len(buf: &[u8]) -> Option<(usize, usize)> {
    let mut len = 0usize;
    for i in 0..4 {
        let b = *buf.get(1 + i)?;
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((2 + i, len));
        }
    }
    panic!("raw: remaining length longer than 4 bytes")
}

/// A raw 3.1.1 CONNECT.
pub fn raw_connect4(id: &str, clean_session: bool, keep_alive: u16) -> rumqttc::mqttbytes::v4::Connect {
    let mut c = rumqttc::mqttbytes::v4::Connect::new(id);
    c.clean_session = clean_session;
    c.keep_alive = keep_alive;
    c
}
