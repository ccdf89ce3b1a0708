//! The PUBLISH decode path allocates nothing when there are no properties: topic and
//! payload are slices of the frame. Integer-valued properties (a topic alias) cost exactly
//! one allocation, the boxed property set.
//! Kept in its own test binary so no other test allocates concurrently.

use std::alloc::System;

use proto::{read, BytesMut, Packet, Protocol, Publish, QoS};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn publish_decode_does_not_allocate() {
    for (protocol, with_props) in [(Protocol::V4, false), (Protocol::V5, false), (Protocol::V5, true)] {
        let mut publish = Publish::new("sensors/room1/temp", QoS::AtLeastOnce, vec![7u8; 512]);
        publish.pkid = 9;
        if with_props {
            publish.properties.topic_alias = Some(3);
            publish.properties.message_expiry_interval = Some(60);
        }
        let packet = Packet::Publish(publish);
        let mut buf = BytesMut::with_capacity(4096);
        for _ in 0..3 {
            packet.write(protocol, &mut buf).unwrap();
        }
        // The first split turns the buffer into a shared one (a one-off allocation).
        assert_eq!(read(&mut buf, protocol, usize::MAX).as_ref(), Ok(&packet));

        for _ in 0..2 {
            let region = Region::new(GLOBAL);
            let decoded = read(&mut buf, protocol, usize::MAX);
            let change = region.change();
            assert_eq!(decoded.as_ref(), Ok(&packet));
            assert_eq!(change.allocations, usize::from(with_props), "{protocol:?}: {change:?}");
            assert_eq!(change.reallocations, 0, "{protocol:?}: {change:?}");
        }
    }
}
