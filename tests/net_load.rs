//! Load: 200 rumqttc clients on a 2-shard broker exchange 100k QoS 1 messages; every
//! message arrives, once, in order per publisher.

mod wire;

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const PAIRS: usize = 100;
const PER_PUBLISHER: u32 = 1000;

fn opts(id: String, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(64);
    o
}

#[test]
fn two_hundred_clients_exchange_100k_qos1_messages_in_order() {
    exchange(|_| {}, PAIRS, PER_PUBLISHER);
}

/// Shard-to-shard channels of one batch: senders wait on full channels all the time, and
/// still nothing is lost, reordered or deadlocked.
#[test]
fn full_cross_shard_channels_push_back_without_loss() {
    exchange(|c| c.channel_capacity = 1, 20, 500);
}

fn exchange(tweak: impl FnOnce(&mut ringmq::EngineConfig), pairs: usize, per_publisher: u32) {
    let node = wire::broker(tweak);
    let port = node.local_addrs()[0].port();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let mut subscribers = Vec::new();
        let mut ready = Vec::new();
        for i in 0..pairs {
            let (client, mut events) = AsyncClient::new(opts(format!("load-sub-{i}"), port), 64);
            client.subscribe(format!("load/{i}/+"), QoS::AtLeastOnce).await.unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel();
            ready.push(rx);
            subscribers.push(tokio::spawn(async move {
                let _keep = client;
                let mut tx = Some(tx);
                let mut next = 0u32;
                while next < per_publisher {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            assert_eq!(p.topic, format!("load/{i}/data"));
                            let seq = u32::from_be_bytes(p.payload[..4].try_into().unwrap());
                            assert_eq!(seq, next, "subscriber {i}: out of order or lost");
                            next += 1;
                        }
                        Ok(_) => {}
                        Err(e) => panic!("subscriber {i}: {e}"),
                    }
                }
                next
            }));
        }
        for r in ready {
            r.await.expect("SUBACK");
        }
        let mut publishers = Vec::new();
        for i in 0..pairs {
            let (client, mut events) = AsyncClient::new(opts(format!("load-pub-{i}"), port), 64);
            publishers.push(tokio::spawn(async move {
                let sender = client.clone();
                let send = tokio::spawn(async move {
                    for seq in 0..per_publisher {
                        let mut payload = seq.to_be_bytes().to_vec();
                        payload.extend_from_slice(&[0u8; 28]);
                        sender.publish(format!("load/{i}/data"), QoS::AtLeastOnce, false, payload).await.unwrap();
                    }
                });
                let mut acked = 0;
                while acked < per_publisher {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                        Ok(_) => {}
                        Err(e) => panic!("publisher {i}: {e}"),
                    }
                }
                send.await.unwrap();
                acked
            }));
        }
        let all = async {
            for p in publishers {
                assert_eq!(p.await.unwrap(), per_publisher);
            }
            let mut total = 0;
            for s in subscribers {
                total += s.await.unwrap();
            }
            total
        };
        let total = tokio::time::timeout(Duration::from_secs(240), all).await.expect("load finished in time");
        assert_eq!(total as usize, pairs * per_publisher as usize);
    });
}
