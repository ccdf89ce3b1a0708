//! Per-session quotas seen on the wire.

mod wire;

use proto::{reason, Packet, Props, Protocol, QoS, Subscribe, SubscribeFilter};
use wire::{broker, Raw};

fn sub_many(c: &mut Raw, filters: &[&str]) -> Vec<u8> {
    c.send(&Packet::Subscribe(Subscribe {
        pkid: 9,
        filters: filters
            .iter()
            .map(|f| SubscribeFilter {
                filter: (*f).into(),
                qos: QoS::AtLeastOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
            })
            .collect(),
        properties: Props::default(),
    }));
    match c.recv() {
        Some(Packet::SubAck(a)) => a.codes,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[test]
fn subscriptions_past_the_session_limit_are_refused_in_suback() {
    let node = broker(|c| c.limits.max_subscriptions = 3);
    let addr = node.local_addrs()[0];
    let mut v5 = Raw::connect(addr, Protocol::V5, "quota5");
    assert_eq!(sub_many(&mut v5, &["a", "b/+", "c/#", "d"]), vec![1, 1, 1, reason::QUOTA_EXCEEDED]);
    // Re-subscribing to a filter it holds is a replacement, not a new subscription.
    assert_eq!(sub_many(&mut v5, &["a"]), vec![1]);
    let mut v4 = Raw::connect(addr, Protocol::V4, "quota4");
    assert_eq!(sub_many(&mut v4, &["a", "b", "c", "d"]), vec![1, 1, 1, reason::V4_SUBACK_FAILURE]);
}
