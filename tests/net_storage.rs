//! Durable storage across restarts of an in-process broker on one data directory:
//! persistent sessions and subscriptions (with options), offline messages, messages in
//! flight, retained messages, wills, session expiry over the downtime, per-topic engines
//! and the per-topic offline switch. Each test stops the broker (graceful) and starts a
//! new one on the same directory; `tests/crash.rs` covers `kill -9`.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

/// A broker keeping its data in `dir`, with `tweak` applied to the storage settings.
fn broker_in(dir: &Path, tweak: impl FnOnce(&mut ringmq::StorageConfig)) -> TestBroker {
    TestBroker::start_with(|c| {
        c.storage.data_dir = dir.to_path_buf();
        c.storage.engine = ringmq::Engine::Segment;
        c.storage.fsync = ringmq::Fsync::Always;
        tweak(&mut c.storage);
    })
}

fn payloads(v: &[rumqttc::Publish]) -> Vec<String> {
    v.iter().map(|p| String::from_utf8(p.payload.to_vec()).unwrap()).collect()
}

/// A persistent session `id` subscribed to `filter` (QoS 1), then offline.
async fn subscribe_then_leave(broker: &TestBroker, id: &str, filter: &str) {
    let (mut sub, _) = persistent4(broker, id).await;
    sub.subscribe(filter, 1).await;
    drop(sub);
    broker.wait_connections(0, WAIT).await;
}

async fn persistent4(broker: &TestBroker, id: &str) -> (Mqtt4, rumqttc::ConnAck) {
    Mqtt4::connect_with(broker, id, |o| {
        o.set_clean_session(false);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_and_subscription_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("st-off");
    let id = unique_id("st-sub");
    {
        let broker = broker_in(dir.path(), |_| {});
        subscribe_then_leave(&broker, &id, &format!("{topic}/+")).await;
        let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("st-pub")).await;
        for i in 0..20 {
            publ.publish_acked(&format!("{topic}/{}", i % 3), 1, false, format!("m{i}")).await;
        }
    }
    let broker = broker_in(dir.path(), |_| {});
    let (mut sub, ack) = persistent4(&broker, &id).await;
    assert!(ack.session_present, "the persistent session came back");
    let got = payloads(&sub.publishes(20).await);
    let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    let mut sorted = got.clone();
    sorted.sort_by_key(|s| s[1..].parse::<u32>().unwrap());
    assert_eq!(sorted, want, "every acknowledged message, once");
    // Per topic, in order.
    for t in 0..3 {
        let per: Vec<&String> = got.iter().filter(|s| s[1..].parse::<u32>().unwrap() % 3 == t).collect();
        let mut ordered = per.clone();
        ordered.sort_by_key(|s| s[1..].parse::<u32>().unwrap());
        assert_eq!(per, ordered, "topic {t} in order");
    }
    // The subscription itself is back: a new message arrives without resubscribing.
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("st-pub")).await;
    publ.publish_acked(&format!("{topic}/9"), 1, false, "after").await;
    assert_eq!(payloads(&[sub.next_publish().await]), ["after"]);
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_message_is_resent_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("st-infl");
    let id = unique_id("st-infl");
    {
        let broker = broker_in(dir.path(), |_| {});
        let (mut sub, _) = Mqtt4::connect_with(&broker, &id, |o| {
            o.set_clean_session(false);
            o.set_manual_acks(true);
        })
        .await;
        sub.subscribe(&topic, 1).await;
        let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("st-pub")).await;
        publ.publish_acked(&topic, 1, false, "unacked").await;
        publ.publish_acked(&topic, 1, false, "acked").await;
        let first = sub.next_publish().await;
        let second = sub.next_publish().await;
        assert_eq!(payloads(&[first.clone(), second.clone()]), ["unacked", "acked"]);
        sub.ack(&second).await;
        // Give the cursor time to reach the disk (it is written with the sweep).
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let broker = broker_in(dir.path(), |_| {});
    let (mut sub, ack) = persistent4(&broker, &id).await;
    assert!(ack.session_present);
    let again = payloads(&sub.collect_publishes(QUIET, 10).await);
    assert!(again.contains(&"unacked".to_owned()), "the unacknowledged message is delivered again: {again:?}");
    assert!(!again.contains(&"acked".to_owned()), "the acknowledged one is not: {again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_survives_a_restart_with_memory_topics() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("st-ret");
    {
        // Memory engine for messages, but persistence of state switched on.
        let broker = broker_in(dir.path(), |s| {
            s.engine = ringmq::Engine::Memory;
            s.persistence = true;
        });
        let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("st-pub")).await;
        publ.publish_acked(&topic, 1, true, "kept").await;
        publ.publish_acked(&format!("{topic}/gone"), 1, true, "x").await;
        publ.publish_acked(&format!("{topic}/gone"), 1, true, "").await;
    }
    let broker = broker_in(dir.path(), |s| {
        s.engine = ringmq::Engine::Memory;
        s.persistence = true;
    });
    let (mut sub, _) = Mqtt4::connect(&broker, &unique_id("st-sub")).await;
    sub.subscribe(&format!("{topic}/#"), 1).await;
    let got = sub.collect_publishes(QUIET, 10).await;
    assert_eq!(payloads(&got), ["kept"], "the retained message is back, the cleared one is not");
    assert!(got[0].retain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_options_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("st-opt");
    let id = unique_id("st-opt");
    let persistent = |o: &mut rumqttc::v5::MqttOptions| {
        o.set_clean_start(false);
        set_expiry5(o, 3600);
    };
    {
        let broker = broker_in(dir.path(), |_| {});
        let (mut c, _) = Mqtt5::connect_with(&broker, &id, persistent).await;
        let mut f = rumqttc::v5::mqttbytes::v5::Filter::new(&topic, qos5(1));
        f.nolocal = true;
        c.client.subscribe_many(vec![f]).await.expect("subscribe request queued");
        c.ev.wait_for("SUBACK", WAIT, |e| match e {
            rumqttc::v5::Event::Incoming(p5::Packet::SubAck(a)) => Some(a.return_codes.clone()),
            _ => None,
        })
        .await;
    }
    let broker = broker_in(dir.path(), |_| {});
    let (mut c, ack) = Mqtt5::connect_with(&broker, &id, persistent).await;
    assert!(ack.session_present);
    // No Local survived: its own message does not come back, another client's does.
    c.publish(&topic, 1, false, "own").await;
    let (mut other, _) = Mqtt5::connect(&broker, &unique_id("st-other")).await;
    other.publish_acked(&topic, 1, false, "other").await;
    let got = c.collect_publishes(QUIET, 10).await;
    let got: Vec<String> = got.iter().map(|p| String::from_utf8(p.payload.to_vec()).unwrap()).collect();
    assert_eq!(got, ["other"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_counts_the_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let (short, long) = (unique_id("st-exp1"), unique_id("st-exp2"));
    {
        let broker = broker_in(dir.path(), |_| {});
        for (id, expiry) in [(&short, 1), (&long, 3600)] {
            let (mut c, _) = Mqtt5::connect_with(&broker, id, |o| {
                o.set_clean_start(false);
                set_expiry5(o, expiry);
            })
            .await;
            c.subscribe(&unique_topic("st-exp"), 1).await;
            c.disconnect().await;
        }
        broker.wait_connections(0, WAIT).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let broker = broker_in(dir.path(), |_| {});
    for (id, present) in [(&short, false), (&long, true)] {
        let (_c, ack) = Mqtt5::connect_with(&broker, id, |o| {
            o.set_clean_start(false);
            set_expiry5(o, 3600);
        })
        .await;
        assert_eq!(ack.session_present, present, "{id}: session present after the downtime");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_will_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let will_topic = unique_topic("st-will");
    {
        let broker = broker_in(dir.path(), |_| {});
        let id = unique_id("st-will");
        let (c, _) = Mqtt5::connect_with(&broker, &id, |o| {
            o.set_clean_start(false);
            set_expiry5(o, 3600);
            o.set_last_will(will5(&will_topic, "went away", Some(2)));
        })
        .await;
        // Dropped without DISCONNECT: the will waits for its delay, then the broker stops.
        c.kill().await;
        broker.wait_connections(0, WAIT).await;
    }
    let broker = broker_in(dir.path(), |_| {});
    let (mut watcher, _) = Mqtt5::connect(&broker, &unique_id("st-watch")).await;
    watcher.subscribe(&will_topic, 1).await;
    let p = watcher.next_publish_within(Duration::from_secs(5)).await;
    assert_eq!(&p.payload[..], b"went away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_segment_topics_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let base = unique_topic("st-mix");
    let id = unique_id("st-mix");
    let rules = |s: &mut ringmq::StorageConfig| {
        s.engine = ringmq::Engine::Memory;
        s.rules = vec![ringmq::StorageRule {
            filter: format!("{base}/seg/#"),
            engine: Some(ringmq::Engine::Segment),
            offline: None,
            when_full: None,
        }];
    };
    {
        let broker = broker_in(dir.path(), rules);
        subscribe_then_leave(&broker, &id, &format!("{base}/#")).await;
        let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("st-pub")).await;
        publ.publish_acked(&format!("{base}/seg/a"), 1, false, "on disk").await;
        publ.publish_acked(&format!("{base}/mem/a"), 1, false, "in memory").await;
    }
    let broker = broker_in(dir.path(), rules);
    let (mut sub, ack) = persistent4(&broker, &id).await;
    assert!(ack.session_present);
    assert_eq!(payloads(&sub.collect_publishes(QUIET, 10).await), ["on disk"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_switched_off_per_topic() {
    let base = unique_topic("st-live");
    let broker = TestBroker::start_with(|c| {
        c.storage.rules = vec![ringmq::StorageRule {
            filter: format!("{base}/live/#"),
            engine: None,
            offline: Some(false),
            when_full: None,
        }];
    });
    let id = unique_id("st-live");
    subscribe_then_leave(&broker, &id, &format!("{base}/#")).await;
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("st-pub")).await;
    publ.publish_acked(&format!("{base}/live/a"), 1, false, "live only").await;
    publ.publish_acked(&format!("{base}/keep/a"), 1, false, "kept").await;
    let (mut sub, ack) = persistent4(&broker, &id).await;
    assert!(ack.session_present);
    assert_eq!(payloads(&sub.collect_publishes(QUIET, 10).await), ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_cannot_open_the_same_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = broker_in(dir.path(), |_| {});
    let mut cfg = ringmq::EngineConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        shards: 2,
        pin: false,
        ..Default::default()
    };
    cfg.storage.data_dir = dir.path().to_path_buf();
    cfg.storage.engine = ringmq::Engine::Segment;
    let err = ringmq::Node::start(cfg).err().expect("refused").to_string();
    assert!(err.contains("another ringmq"), "{err}");
}

/// Every segment file under `dir` with records in it.
fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for part in std::fs::read_dir(dir).unwrap().flatten() {
        let logs = part.path().join("log");
        let Ok(entries) = std::fs::read_dir(&logs) else { continue };
        for f in entries.flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "log") && f.metadata().unwrap().len() > 0 {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_log_tail_is_cut_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("st-dmg");
    let id = unique_id("st-dmg");
    {
        let broker = broker_in(dir.path(), |_| {});
        subscribe_then_leave(&broker, &id, &topic).await;
        let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("st-pub")).await;
        for i in 0..30 {
            publ.publish_acked(&topic, 1, false, format!("m{i:02}")).await;
        }
    }
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1, "one topic, one partition log: {files:?}");
    // Flip a bit inside the last record's payload, then append a torn half record.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0x10;
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&files[0], &bytes).unwrap();

    let broker = broker_in(dir.path(), |_| {});
    let report = broker.recovery();
    assert!(report.truncated_bytes > 7, "the damaged record and the torn tail are cut: {report:?}");
    assert_eq!(report.records, 29, "{report:?}");
    let (mut sub, ack) = persistent4(&broker, &id).await;
    assert!(ack.session_present);
    let got = payloads(&sub.collect_publishes(QUIET, 100).await);
    let want: Vec<String> = (0..29).map(|i| format!("m{i:02}")).collect();
    assert_eq!(got, want, "everything before the damage, nothing of it");
    // New messages continue after the cut, at fresh offsets.
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("st-pub")).await;
    publ.publish_acked(&topic, 1, false, "new").await;
    assert_eq!(payloads(&[sub.next_publish().await]), ["new"]);
}

/// A subscriber that acknowledges only once a whole window has come: under a
/// `max_queued_messages` cap smaller than the window, a next replay page asked for while
/// the last one still waits in the queue would push the cap past and drop what waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_pages_wait_for_room_under_the_cap_when_acks_lag() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("st-lag");
    let id = unique_id("st-lag");
    const N: usize = 300;
    {
        let broker = broker_in(dir.path(), |_| {});
        subscribe_then_leave(&broker, &id, &topic).await;
        let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("st-pub")).await;
        for i in 0..N {
            publ.publish(&topic, 1, false, format!("m{i:03}")).await;
        }
        publ.wait_acks(1, N).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Pages of 40 (the cap) against a window of 64: without acknowledgements the broker
    // fills the window from two pages and must not ask for a third before there is room.
    let broker = TestBroker::start_with(|c| {
        c.storage.data_dir = dir.path().to_path_buf();
        c.storage.engine = ringmq::Engine::Segment;
        c.limits.max_queued_messages = 40;
        c.limits.max_inflight = 64;
    });
    let mut raw = Raw::connect(&broker).await;
    let mut connect = rumqttc::mqttbytes::v4::Connect::new(id.clone());
    connect.clean_session = false;
    raw.send_connect(&connect).await;
    let (first, body) = raw.read_frame().await.expect("CONNACK");
    assert_eq!((first, body[0] & 1, body[1]), (0x20, 1, 0), "CONNACK with the session present");
    let mut got = Vec::new();
    let mut unacked = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(50);
    while got.len() < N {
        assert!(std::time::Instant::now() < deadline, "only {} of {N} replayed within 50 s", got.len());
        let (first, body) = raw.read_frame().await.expect("the broker closed the connection");
        assert_eq!(first & 0xF6, 0x32, "a QoS 1 PUBLISH, got {first:#04x}");
        let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let pkid = [body[2 + tlen], body[3 + tlen]];
        got.push(String::from_utf8(body[4 + tlen..].to_vec()).unwrap());
        unacked.push(pkid);
        // A full window, or the end: acknowledge everything at once.
        if unacked.len() == 64 || got.len() == N {
            let acks: Vec<u8> = unacked.drain(..).flat_map(|p| [0x40, 2, p[0], p[1]]).collect();
            raw.send_bytes(&acks).await;
        }
    }
    let want: Vec<String> = (0..N).map(|i| format!("m{i:03}")).collect();
    assert_eq!(got, want, "all {N}, in order");
    assert_eq!(broker.drops().queue_cap, 0, "{:?}", broker.drops());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_pages_through_a_backlog_larger_than_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("st-page");
    let id = unique_id("st-page");
    {
        let broker = TestBroker::start_with(|c| {
            c.storage.data_dir = dir.path().to_path_buf();
            c.storage.engine = ringmq::Engine::Segment;
            c.limits.max_queued_messages = 10_000;
        });
        subscribe_then_leave(&broker, &id, &topic).await;
        let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("st-pub")).await;
        for i in 0..300 {
            publ.publish(&topic, 1, false, format!("m{i:03}")).await;
        }
        publ.wait_acks(1, 300).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // After the restart the session's queue holds 40: the 300 come back in pages.
    let broker = TestBroker::start_with(|c| {
        c.storage.data_dir = dir.path().to_path_buf();
        c.storage.engine = ringmq::Engine::Segment;
        c.limits.max_queued_messages = 40;
    });
    let (mut sub, ack) = persistent4(&broker, &id).await;
    assert!(ack.session_present);
    let got = payloads(&sub.collect_publishes(Duration::from_secs(2), 1000).await);
    let want: Vec<String> = (0..300).map(|i| format!("m{i:03}")).collect();
    assert_eq!(got, want, "all 300, in order, none dropped by the small queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_before_a_restart_come_before_newer_ones() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("st-order");
    let id = unique_id("st-order");
    {
        let broker = broker_in(dir.path(), |_| {});
        subscribe_then_leave(&broker, &id, &topic).await;
        let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("st-pub")).await;
        for i in 0..5 {
            publ.publish_acked(&topic, 1, false, format!("m{i}")).await;
        }
    }
    let broker = broker_in(dir.path(), |_| {});
    // Published after the restart while the subscriber is still away: queued live.
    let (mut publ, _) = Mqtt4::connect(&broker, &unique_id("st-pub")).await;
    for i in 5..10 {
        publ.publish_acked(&topic, 1, false, format!("m{i}")).await;
    }
    let (mut sub, ack) = persistent4(&broker, &id).await;
    assert!(ack.session_present);
    let got = payloads(&sub.collect_publishes(QUIET, 100).await);
    let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want, "the replayed (older) messages first, in order");
}
