//! MQTT 3.1.1 test clients (rumqttc) with bounded waits.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::*;

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
