//! Shared helpers for the black-box tests: an in-process broker on an ephemeral port,
//! rumqttc 3.1.1 and 5.0 clients whose event loops run in a background task, raw sockets
//! speaking packets encoded by rumqttc's own codec, and waits that are always bounded.
//!
//! Every wait takes at most [`WAIT`] (or an explicit timeout) and panics with a message
//! naming the client and what it was waiting for; every loop is bounded in count.

#![allow(dead_code)]

pub mod certs;
mod raw;
mod v4;
mod v5;

// Each test file uses some of these; the rest are unused there.
#[allow(unused_imports)]
pub use raw::*;
#[allow(unused_imports)]
pub use v4::*;
#[allow(unused_imports)]
pub use v5::*;

use std::collections::VecDeque;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// How long a wait for something that must happen may take.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long to watch for something that must not happen (after a positive sync point).
pub const QUIET: Duration = Duration::from_millis(700);
/// Bound on the events one client's pump forwards.
const MAX_EVENTS: usize = 10_000_000;
/// Bound on the events a client keeps aside while waiting for another kind.
const MAX_BACKLOG: usize = 1_000_000;

/// How long one in-process broker may live: a backstop for a test that hangs where no
/// helper's bounded wait catches it (each of those fails within a minute on its own).
/// Past it the test process says which test and aborts, instead of eating CI's limit.
pub const BROKER_LIFETIME: Duration = Duration::from_secs(150);
/// How long a stopping broker may take to join its shards.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// A broker running in this process on 127.0.0.1 with an ephemeral port; stops on drop.
pub struct TestBroker {
    node: Option<ringmq::Node>,
    addr: SocketAddr,
    /// Dropped with the broker: tells its watchdog the test is done.
    _alive: std::sync::mpsc::Sender<()>,
}

/// Aborts the test process if the broker of test `who` is still alive after `limit`.
fn watchdog(who: String, limit: Duration) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("watchdog: test {who} still running after {limit:?} (a hang); aborting");
            std::process::abort();
        }
    });
    tx
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
        let who = std::thread::current().name().unwrap_or("?").to_owned();
        TestBroker { node: Some(node), addr, _alive: watchdog(who, BROKER_LIFETIME) }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the broker recovered from its data directory at start.
    pub fn recovery(&self) -> ringmq::RecoveryReport {
        self.node.as_ref().map(|n| n.recovery()).unwrap_or_default()
    }

    /// (evicted from memory rings, offline messages lost) as the node counts them.
    pub fn offline_counters(&self) -> (u64, u64) {
        self.node.as_ref().map_or((0, 0), |n| n.offline_counters())
    }

    /// Messages the node gave up, by reason (counted each sweep, 500 ms).
    pub fn drops(&self) -> ringmq::Drops {
        self.node.as_ref().map(|n| n.drops()).unwrap_or_default()
    }

    /// Waits (bounded) until `f` holds for the node's drop counters; returns them.
    pub async fn wait_drops(&self, what: &str, timeout: Duration, f: impl Fn(&ringmq::Drops) -> bool) -> ringmq::Drops {
        poll_until(what, timeout, Duration::from_millis(50), || self.drops(), f).await
    }

    /// The node's metrics snapshot (each shard publishes every 100 ms).
    pub fn metrics(&self) -> ringmq::Snapshot {
        self.node.as_ref().map(|n| n.metrics()).unwrap_or_default()
    }

    /// Waits (bounded) until `f` holds for the node's metrics summed over its shards;
    /// returns the snapshot.
    pub async fn wait_metrics(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&ringmq::ShardMetrics) -> bool,
    ) -> ringmq::Snapshot {
        poll_until(what, timeout, Duration::from_millis(50), || self.metrics(), |m| f(&m.total)).await
    }

    /// Client connections the node currently counts.
    pub fn connections(&self) -> usize {
        self.node.as_ref().map_or(0, |n| n.connections())
    }

    /// Waits (bounded) until the node counts exactly `n` connections.
    pub async fn wait_connections(&self, n: usize, timeout: Duration) {
        let what = format!("{n} connections");
        poll_until(&what, timeout, Duration::from_millis(20), || self.connections(), |c| *c == n).await;
    }
}

/// Reads `get` every `every` until `ok` holds for what it read, and returns that; panics
/// naming `what` and the last reading once `timeout` has passed.
async fn poll_until<T: Debug>(
    what: &str,
    timeout: Duration,
    every: Duration,
    get: impl Fn() -> T,
    ok: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let v = get();
        if ok(&v) {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("broker: {what} not seen within {timeout:?}; last reading: {v:?}");
        }
        tokio::time::sleep(every).await;
    }
}

impl Drop for TestBroker {
    /// Stops the broker and joins its shards, within [`STOP_LIMIT`].
    fn drop(&mut self) {
        let Some(node) = self.node.take() else { return };
        node.stop();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(node.join());
        });
        if rx.recv_timeout(STOP_LIMIT).is_err() && !std::thread::panicking() {
            panic!("broker: shards still running {STOP_LIMIT:?} after stop");
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
