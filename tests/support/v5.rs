//! MQTT 5.0 test clients (rumqttc::v5) with bounded waits.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::*;

pub use rumqttc::v5::mqttbytes::v5 as p5;

/// Options of a 5.0 client of `broker`: keep-alive 30 s, 1 MiB maximum packet size.
pub fn opts5(broker: &TestBroker, id: &str) -> rumqttc::v5::MqttOptions {
    let addr = broker.addr();
    let mut o = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(Some(1 << 20));
    o
}

/// A QoS 1 will for 5.0 options, with a Will Delay Interval when `delay` is set.
pub fn will5(topic: &str, payload: &str, delay: Option<u32>) -> p5::LastWill {
    let props = delay.map(|d| p5::LastWillProperties {
        delay_interval: Some(d),
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
    });
    p5::LastWill::new(topic, payload, qos5(1), false, props)
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
        self.subscribe_with(filter, qos, p5::SubscribeProperties { id: None, user_properties: Vec::new() }).await
    }

    /// Subscribes with a 5.0 Subscription Identifier.
    pub async fn subscribe_with_id(&mut self, filter: &str, qos: u8, id: usize) {
        self.subscribe_with(filter, qos, p5::SubscribeProperties { id: Some(id), user_properties: Vec::new() }).await
    }

    async fn subscribe_with(&mut self, filter: &str, qos: u8, props: p5::SubscribeProperties) {
        self.client.subscribe_with_properties(filter, qos5(qos), props).await.expect("subscribe request queued");
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
