//! The version matrix: publisher 3.1.1/5.0 x subscriber 3.1.1/5.0 x QoS 0/1/2. Each case
//! checks the payload, topic and QoS that arrive, and that the publisher's exchange
//! completes.

mod support;

use support::*;

#[derive(Clone, Copy, Debug)]
enum V {
    V4,
    V5,
}

enum Client {
    V4(Mqtt4),
    V5(Mqtt5),
}

impl Client {
    async fn connect(broker: &TestBroker, v: V, role: &str) -> Client {
        match v {
            V::V4 => Client::V4(Mqtt4::connect(broker, &unique_id(role)).await.0),
            V::V5 => Client::V5(Mqtt5::connect(broker, &unique_id(role)).await.0),
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: u8) {
        match self {
            Client::V4(c) => c.subscribe(filter, qos).await,
            Client::V5(c) => c.subscribe(filter, qos).await,
        }
    }

    async fn publish_acked(&mut self, topic: &str, qos: u8, payload: &str) {
        match self {
            Client::V4(c) => c.publish_acked(topic, qos, false, payload).await,
            Client::V5(c) => c.publish_acked(topic, qos, false, payload).await,
        }
    }

    /// (topic, payload, QoS, retain) of the next PUBLISH.
    async fn next(&mut self) -> (String, Vec<u8>, u8, bool) {
        match self {
            Client::V4(c) => {
                let p = c.next_publish().await;
                (p.topic, p.payload.to_vec(), qos4_num(p.qos), p.retain)
            }
            Client::V5(c) => {
                let p = c.next_publish().await;
                (topic5(&p), p.payload.to_vec(), qos5_num(p.qos), p.retain)
            }
        }
    }

    async fn quiet(&mut self) {
        match self {
            Client::V4(c) => c.expect_no_publish(QUIET).await,
            Client::V5(c) => c.expect_no_publish(QUIET).await,
        }
    }
}

async fn case(publisher: V, subscriber: V, qos: u8) {
    let broker = TestBroker::start();
    let topic = format!("{}/{publisher:?}/to/{subscriber:?}/q{qos}", unique_topic("mx"));
    let payload = format!("{publisher:?} -> {subscriber:?} at QoS {qos}");
    let mut sub = Client::connect(&broker, subscriber, "sub").await;
    sub.subscribe(&topic, 2).await;
    let mut publ = Client::connect(&broker, publisher, "pub").await;
    publ.publish_acked(&topic, qos, &payload).await;
    let (t, p, q, retain) = sub.next().await;
    assert_eq!(t, topic);
    assert_eq!(p, payload.as_bytes());
    assert_eq!(q, qos, "a QoS 2 subscription gets the published QoS");
    assert!(!retain);
    sub.quiet().await;
}

macro_rules! matrix {
    ($($name:ident: $p:ident, $s:ident, $q:expr;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                case(V::$p, V::$s, $q).await;
            }
        )*
    };
}

matrix! {
    pub_v4_sub_v4_qos0: V4, V4, 0;
    pub_v4_sub_v4_qos1: V4, V4, 1;
    pub_v4_sub_v4_qos2: V4, V4, 2;
    pub_v4_sub_v5_qos0: V4, V5, 0;
    pub_v4_sub_v5_qos1: V4, V5, 1;
    pub_v4_sub_v5_qos2: V4, V5, 2;
    pub_v5_sub_v4_qos0: V5, V4, 0;
    pub_v5_sub_v4_qos1: V5, V4, 1;
    pub_v5_sub_v4_qos2: V5, V4, 2;
    pub_v5_sub_v5_qos0: V5, V5, 0;
    pub_v5_sub_v5_qos1: V5, V5, 1;
    pub_v5_sub_v5_qos2: V5, V5, 2;
}
