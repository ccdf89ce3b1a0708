//! The engine's seams, each used by real clients: an installed `Authenticator` refuses
//! with the client's own CONNACK codes, an installed `Authorizer` is asked before a
//! PUBLISH is routed, a SUBSCRIBE filter accepted, a retained message delivered and a
//! will accepted; and `Node::metrics` counts what the node did.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ringmq::{Action, Authenticator, Authorizer, Credentials, Principal, Refusal};
use support::*;

/// Lets in users whose password is their user name reversed; "banned" is known but not
/// allowed; anonymous clients are refused.
#[derive(Debug)]
struct Reversed;

impl Authenticator for Reversed {
    fn authenticate(&self, c: &Credentials<'_>) -> Result<Principal, Refusal> {
        let user = c.username.ok_or(Refusal::NotAuthorized)?;
        let want: Vec<u8> = user.bytes().rev().collect();
        if c.password != Some(want.as_slice()) {
            return Err(Refusal::BadCredentials);
        }
        if user == "banned" {
            return Err(Refusal::NotAuthorized);
        }
        assert!(c.peer.is_some_and(|p| p.ip().is_loopback()), "the peer address reaches the authenticator");
        Ok(Principal::new(c.client_id, Some(user), c.peer))
    }
}

/// Denies by the topic's words: publishing to `*/secret/*`, subscribing to a filter
/// naming `secret`, receiving `*/private/*`, wills on `*/will/denied`.
#[derive(Debug)]
struct Words;

impl Authorizer for Words {
    fn allow(&self, who: &Principal, action: Action, topic: &str) -> bool {
        assert!(!who.client_id.is_empty());
        match action {
            Action::Publish => !topic.contains("/secret/"),
            Action::Subscribe => !topic.contains("secret"),
            Action::Read => !topic.contains("/private/"),
            Action::Will => !topic.contains("/will/denied"),
        }
    }
}

fn login4(o: &mut rumqttc::MqttOptions, user: &str, password: &str) {
    o.set_credentials(user, password);
}

fn login5(o: &mut rumqttc::v5::MqttOptions, user: &str, password: &str) {
    o.set_credentials(user, password);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticator_refusals_in_each_protocol() {
    let broker = TestBroker::start_with(|c| c.authenticator = Some(Arc::new(Reversed)));
    let cases = [("alice", "wrong", Refusal::BadCredentials), ("banned", "dennab", Refusal::NotAuthorized)];
    for (user, password, why) in cases {
        let r5 = Mqtt5::try_connect_with(&broker, &unique_id("r5"), |o| login5(o, user, password)).await;
        let want5 = match why {
            Refusal::BadCredentials => p5::ConnectReturnCode::BadUserNamePassword,
            Refusal::NotAuthorized => p5::ConnectReturnCode::NotAuthorized,
        };
        match r5 {
            Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => assert_eq!(code, want5, "5.0 {user}"),
            Err(e) => panic!("5.0 {user}: expected CONNACK {want5:?}, got {e:?}"),
            Ok(_) => panic!("5.0 {user}: accepted"),
        }
        let r4 = Mqtt4::try_connect_with(&broker, &unique_id("r4"), |o| login4(o, user, password)).await;
        let want4 = match why {
            Refusal::BadCredentials => rumqttc::ConnectReturnCode::BadUserNamePassword,
            Refusal::NotAuthorized => rumqttc::ConnectReturnCode::NotAuthorized,
        };
        match r4 {
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => assert_eq!(code, want4, "3.1.1 {user}"),
            Err(e) => panic!("3.1.1 {user}: expected CONNACK {want4:?}, got {e:?}"),
            Ok(_) => panic!("3.1.1 {user}: accepted"),
        }
    }
    // Anonymous: refused too; good credentials: in, in either protocol, and working.
    assert!(Mqtt4::try_connect_with(&broker, &unique_id("anon"), |_| {}).await.is_err());
    let topic = unique_topic("authn");
    let (mut sub, _) = Mqtt5::connect_with(&broker, &unique_id("s"), |o| login5(o, "alice", "ecila")).await;
    sub.subscribe(&topic, 1).await;
    let (mut publ, _) = Mqtt4::connect_with(&broker, &unique_id("p"), |o| login4(o, "bob", "bob")).await;
    publ.publish_acked(&topic, 1, false, "authenticated").await;
    assert_eq!(&sub.next_publish().await.payload[..], b"authenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorizer_guards_publish_subscribe_retained_and_will() {
    let broker = TestBroker::start_with(|c| c.authorizer = Some(Arc::new(Words)));
    let pre = unique_topic("authz");
    let (mut watcher, _) = Mqtt5::connect(&broker, &unique_id("watch")).await;
    watcher.subscribe(&format!("{pre}/#"), 1).await;

    // PUBLISH: 5.0 is told 0x87 (rumqttc ends the connection on it); 3.1.1 is
    // acknowledged as Mosquitto does; neither message is routed.
    let (mut p5c, _) = Mqtt5::connect(&broker, &unique_id("p5")).await;
    p5c.publish(&format!("{pre}/secret/a"), 1, false, "no").await;
    match p5c.closed().await {
        rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::PubAckFail { reason }) => {
            assert_eq!(reason, p5::PubAckReason::NotAuthorized, "5.0 PUBACK 0x87")
        }
        other => panic!("5.0: expected PUBACK 0x87, got {other:?}"),
    }
    let (mut p4c, _) = Mqtt4::connect(&broker, &unique_id("p4")).await;
    p4c.publish_acked(&format!("{pre}/secret/b"), 1, false, "no").await;
    p4c.publish(&format!("{pre}/secret/c"), 0, false, "no").await;
    p4c.publish_acked(&format!("{pre}/open/a"), 1, false, "yes").await;
    let p = watcher.next_publish().await;
    assert_eq!(topic5(&p), format!("{pre}/open/a"), "only the allowed publish is routed");
    watcher.expect_no_publish(QUIET).await;

    // SUBSCRIBE: 5.0 SUBACK 0x87, 3.1.1 0x80.
    let (s5, _) = Mqtt5::connect(&broker, &unique_id("s5")).await;
    assert_eq!(s5.subscribe_refused(&format!("{pre}/secret/#"), 1).await, p5::SubscribeReasonCode::NotAuthorized);
    let (mut s4, _) = Mqtt4::connect(&broker, &unique_id("s4")).await;
    let codes = s4.subscribe_many(&[(&format!("{pre}/secret/#"), 1), (&format!("{pre}/open/#"), 1)]).await;
    assert_eq!(codes[0], rumqttc::SubscribeReasonCode::Failure, "3.1.1 SUBACK 0x80");
    assert_eq!(codes[1], rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce));

    // Retained and live: the topic denied to readers stays out of the subscription's
    // answer and of its deliveries; the allowed one comes.
    p4c.publish_acked(&format!("{pre}/private/r"), 1, true, "kept private").await;
    p4c.publish_acked(&format!("{pre}/public/r"), 1, true, "kept public").await;
    let (mut reader, _) = Mqtt5::connect(&broker, &unique_id("reader")).await;
    reader.subscribe(&format!("{pre}/private/#"), 1).await;
    reader.subscribe(&format!("{pre}/public/#"), 1).await;
    let p = reader.next_publish().await;
    assert_eq!((topic5(&p), p.retain), (format!("{pre}/public/r"), true));
    reader.expect_no_publish(QUIET).await;
    p4c.publish_acked(&format!("{pre}/private/r"), 1, false, "live private").await;
    p4c.publish_acked(&format!("{pre}/public/r"), 1, false, "live public").await;
    assert_eq!(&reader.next_publish().await.payload[..], b"live public");

    // Will: refused at CONNECT, 5.0 0x87 and 3.1.1 return code 5.
    let will_topic = format!("{pre}/will/denied");
    match Mqtt5::try_connect_with(&broker, &unique_id("w5"), |o| {
        o.set_last_will(will5(&will_topic, "x", None));
    })
    .await
    {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, p5::ConnectReturnCode::NotAuthorized)
        }
        other => panic!("5.0 will: expected CONNACK 0x87, got {:?}", other.map(|_| ())),
    }
    let will4 = rumqttc::LastWill::new(&will_topic, "x", rumqttc::QoS::AtLeastOnce, false);
    match Mqtt4::try_connect_with(&broker, &unique_id("w4"), |o| {
        o.set_last_will(will4);
    })
    .await
    {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::NotAuthorized)
        }
        other => panic!("3.1.1 will: expected CONNACK 5, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_node_did() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(|c| {
        c.storage.engine = ringmq::Engine::Segment;
        c.storage.data_dir = dir.path().to_path_buf();
    });
    let topic = unique_topic("metrics");
    let (mut sub, _) = Mqtt5::connect(&broker, &unique_id("msub")).await;
    sub.subscribe(&topic, 1).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("mpub")).await;
    for i in 0..40 {
        publ.publish_acked(&topic, 1, false, format!("q1 {i}")).await;
    }
    for i in 0..30 {
        publ.publish(&topic, 0, false, format!("q0 {i}")).await;
    }
    publ.publish_acked(&format!("{topic}/r"), 1, true, "retained").await;
    assert_eq!(sub.publishes(70).await.len(), 70);
    // A refused CONNECT: an unknown protocol level (CONNACK 0x84).
    let mut raw = Raw::connect(&broker).await;
    raw.send_bytes(&[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 9, 2, 0, 60, 0, 0]).await;
    assert!(raw.read_frame().await.is_some_and(|(first, _)| first == 0x20), "refused with a CONNACK");

    let m = broker
        .wait_metrics("the traffic counted", Duration::from_secs(20), |t| {
            t.received_qos1 == 41
                && t.received_qos0 == 30
                && t.sent_qos1 >= 40
                && t.sent_qos0 == 30
                && t.connections == 2
                && t.sessions_online == 2
                && t.subscriptions == 1
                && t.retained == 1
                && t.connections_refused >= 1
                && t.connections_accepted >= 2
                && t.appends >= 71
                && t.commits >= 1
                && t.fsyncs >= 1
        })
        .await;
    assert!(m.total.received_bytes >= 70 * topic.len() as u64, "{:?}", m.total);
    assert!(m.total.sent_bytes > m.total.received_bytes, "PUBLISHes and acknowledgements went out: {:?}", m.total);
    assert!(m.total.published >= 71 && m.total.delivered >= 70, "{:?}", m.total);
    assert_eq!(m.shards.len(), 2, "one entry per shard");
    let summed: u64 = m.shards.iter().map(|s| s.received_qos1).sum();
    assert_eq!(summed, m.total.received_qos1);
    assert_eq!(m.drops, broker.drops());
}
